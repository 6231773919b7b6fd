//! Copier mode: a process that is not PostgreSQL (tar, rsync, cp, pgBackRest, Barman,
//! WAL-G) copying a data directory, usually between `pg_backup_start` and
//! `pg_backup_stop`. Its progress is measured against our own walk of what a backup must
//! copy ([`Plan`]): bytes read from those files, each counted up to its size at walk
//! time, and files read to that size. Pure: reads and kernel samples in, numbers out.

use crate::pgdata::backup_size::Plan;
use crate::trace::Pid;
use std::collections::{BTreeMap, HashMap, VecDeque};

/// What holds a copier back, judged from its processes' kernel state.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Limiter {
    /// A reader waits for the device (D state).
    Disk,
    /// Its compressor (gzip, zstd... a child) is busy on the CPU.
    CompressionCpu,
    /// Blocked writing into a pipe whose reader does not keep up.
    Pipe,
    /// Blocked sending on a socket whose peer does not keep up.
    Network,
    /// Blocked writing (pipe or socket, not told apart by the kernel's wait channel).
    Output,
    /// Sleeping between reads (`rsync --bwlimit`, `pv -L` upstream, a rate limit).
    Throttled,
    /// Stopped by a signal (SIGSTOP, a debugger, a pacing tool like cpulimit).
    Stopped,
    /// On the CPU itself (checksums, encryption, copying from the page cache).
    Cpu,
}

impl Limiter {
    /// A stable word for scripts (`limiter` in the `backup` record).
    pub fn name(self) -> &'static str {
        match self {
            Limiter::Disk => "disk",
            Limiter::CompressionCpu => "compression_cpu",
            Limiter::Pipe => "pipe",
            Limiter::Network => "network",
            Limiter::Output => "output",
            Limiter::Throttled => "throttled",
            Limiter::Stopped => "stopped",
            Limiter::Cpu => "cpu",
        }
    }

    /// For people.
    pub fn words(self) -> &'static str {
        match self {
            Limiter::Disk => "disk (reads wait for the device)",
            Limiter::CompressionCpu => "compression CPU",
            Limiter::Pipe => "the pipe it writes to (its reader is not keeping up)",
            Limiter::Network => "the network (the peer is not reading)",
            Limiter::Output => "its output (the consumer is not reading)",
            Limiter::Throttled => "throttling (sleeps between reads)",
            Limiter::Stopped => "stopped by a signal",
            Limiter::Cpu => "CPU (the copier itself)",
        }
    }
}

/// One process of the copier, sampled from /proc once per interval.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcSample {
    pub pid: Pid,
    pub comm: String,
    pub state: Option<char>,
    pub wchan: Option<String>,
    /// The system call it is blocked in, by number, and its arguments (from
    /// `/proc/PID/syscall`: registers, not memory).
    pub syscall: Option<i64>,
    pub args: Option<[u64; 6]>,
    pub cpu_ticks: Option<u64>,
}

/// Compressors a copier pipes through (tar's `-z`/`-I`, pgBackRest's own is in-process).
const COMPRESSORS: &[&str] = &[
    "gzip", "pigz", "zstd", "pzstd", "xz", "pixz", "lz4", "bzip2", "pbzip2", "lzop", "brotli",
];

fn is_write_syscall(n: i64) -> bool {
    [
        libc::SYS_write,
        libc::SYS_writev,
        libc::SYS_pwrite64,
        libc::SYS_sendto,
        libc::SYS_sendmsg,
        libc::SYS_sendfile,
        libc::SYS_splice,
        libc::SYS_vmsplice,
    ]
    .contains(&n)
}

/// A sleep: nanosleep, or select/poll on no fds at all (glibc's `select(0, ...)` is how
/// rsync's `--bwlimit` sleeps, as pselect6 with nfds 0).
fn is_sleep(s: &ProcSample) -> bool {
    let Some(n) = s.syscall else {
        return false;
    };
    let arg = |i: usize| s.args.map(|a| a[i]);
    if [libc::SYS_nanosleep, libc::SYS_clock_nanosleep].contains(&n) {
        return true;
    }
    if [libc::SYS_select, libc::SYS_pselect6].contains(&n) {
        return arg(0) == Some(0);
    }
    if [libc::SYS_poll, libc::SYS_ppoll].contains(&n) {
        return arg(1) == Some(0);
    }
    false
}

/// The limiter of one interval. `readers`: pids that read data-directory files lately;
/// `cpu_share`: per pid, the share of the interval it spent on the CPU (0..1) when known.
pub fn judge(
    samples: &[ProcSample],
    readers: &[Pid],
    cpu_share: &HashMap<Pid, f64>,
) -> Option<Limiter> {
    let busy =
        |s: &ProcSample| s.state == Some('R') || cpu_share.get(&s.pid).is_some_and(|&c| c >= 0.5);
    if samples
        .iter()
        .any(|s| s.state == Some('D') && (readers.contains(&s.pid) || readers.is_empty()))
    {
        return Some(Limiter::Disk);
    }
    if samples
        .iter()
        .any(|s| COMPRESSORS.contains(&s.comm.as_str()) && busy(s))
    {
        return Some(Limiter::CompressionCpu);
    }
    if let Some(s) = samples
        .iter()
        .find(|s| s.state == Some('S') && s.syscall.is_some_and(is_write_syscall))
    {
        let w = s.wchan.as_deref().unwrap_or("");
        return Some(if w.contains("pipe") {
            Limiter::Pipe
        } else if w.contains("sk_stream") || w.contains("tcp") || w.contains("sock") {
            Limiter::Network
        } else {
            Limiter::Output
        });
    }
    if samples.iter().any(|s| matches!(s.state, Some('T' | 't'))) {
        return Some(Limiter::Stopped);
    }
    if samples.iter().any(|s| s.state == Some('S') && is_sleep(s)) {
        return Some(Limiter::Throttled);
    }
    if samples.iter().any(|s| readers.contains(&s.pid) && busy(s)) {
        return Some(Limiter::Cpu);
    }
    None
}

/// Verdicts kept: the limiter shown is the most frequent of the last few intervals.
const VERDICTS_KEPT: usize = 8;
/// Reads pending before the walk is done, by path (bounded).
const PENDING_KEPT: usize = 100_000;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TablespaceProgress {
    /// "" for the data directory, `pg_tblspc/<oid>` otherwise.
    pub key: String,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub files_total: u64,
    pub files_done: u64,
}

/// The copier's progress over the data directory.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Copier {
    /// The copier's process name (`tar`, `rsync`...).
    pub name: String,
    plan: Option<Plan>,
    index: HashMap<String, usize>,
    /// Bytes counted per planned file (never beyond its walked size).
    done: Vec<u64>,
    /// Bytes read per planned file, all of them (a file that grew reads past its size).
    read: Vec<u64>,
    grew: Vec<bool>,
    /// Reads that came before the walk finished.
    pending: HashMap<String, u64>,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub files_total: u64,
    pub files_done: u64,
    /// Files read past their size at walk time (they grew during the copy).
    pub files_grew: u64,
    /// Bytes read from data-directory files the backup does not need (pg_wal...).
    pub bytes_unplanned: u64,
    pub tablespaces: Vec<TablespaceProgress>,
    /// The path (relative to the data directory) read last, and its name.
    pub current_file: Option<String>,
    /// Per pid: when it last read a data-directory file.
    last_read_ns: BTreeMap<Pid, u64>,
    last_cpu: HashMap<Pid, u64>,
    /// The last intervals' verdicts (None: nothing held it back).
    verdicts: VecDeque<Option<Limiter>>,
    pub limiter: Option<Limiter>,
    /// Every process of the copier seen (pid, name), the copier first.
    pub processes: BTreeMap<Pid, String>,
}

impl Copier {
    pub fn new(name: &str) -> Copier {
        Copier {
            name: name.to_string(),
            ..Copier::default()
        }
    }

    /// The walk is done: what must be copied. Reads seen so far are counted now.
    pub fn set_plan(&mut self, plan: Plan) {
        self.index = plan
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.rel.clone(), i))
            .collect();
        self.done = vec![0; plan.files.len()];
        self.read = vec![0; plan.files.len()];
        self.grew = vec![false; plan.files.len()];
        self.tablespaces = plan
            .tablespaces
            .iter()
            .map(|k| TablespaceProgress {
                key: k.clone(),
                ..TablespaceProgress::default()
            })
            .collect();
        for f in &plan.files {
            if let Some(t) = self.tablespaces.get_mut(f.tablespace) {
                t.bytes_total = t.bytes_total.saturating_add(f.size);
                t.files_total += 1;
                // Nothing to read in an empty file: done from the start.
                if f.size == 0 {
                    t.files_done += 1;
                }
            }
        }
        self.bytes_total = plan.bytes();
        self.files_total = plan.files.len() as u64;
        self.files_done = plan.files.iter().filter(|f| f.size == 0).count() as u64;
        self.plan = Some(plan);
        for (rel, n) in std::mem::take(&mut self.pending) {
            self.credit(&rel, n, None);
        }
    }

    pub fn planned(&self) -> bool {
        self.plan.is_some()
    }

    /// `n` bytes read by `pid` from `rel` (relative to the data directory).
    pub fn read(&mut self, pid: Pid, rel: &str, n: u64, ts_ns: u64) {
        self.last_read_ns.insert(pid, ts_ns);
        if self.current_file.as_deref() != Some(rel) {
            self.current_file = Some(rel.to_string());
        }
        self.credit(rel, n, None);
    }

    /// Polling (/proc fdinfo) saw `pid` at position `pos` of `rel`: at least that much of
    /// it has been read.
    pub fn position(&mut self, pid: Pid, rel: &str, pos: u64, ts_ns: u64) {
        if pos > 0 {
            self.last_read_ns.insert(pid, ts_ns);
        }
        self.credit(rel, 0, Some(pos));
    }

    fn credit(&mut self, rel: &str, n: u64, at_least: Option<u64>) {
        let Some(plan) = &self.plan else {
            // Looked up before inserting: a read of a file already pending (most of
            // them) allocates nothing.
            let add = |p: &mut u64| *p = p.saturating_add(n).max(at_least.unwrap_or(0));
            if let Some(p) = self.pending.get_mut(rel) {
                add(p);
            } else if self.pending.len() < PENDING_KEPT {
                add(self.pending.entry(rel.to_string()).or_default());
            }
            return;
        };
        let Some(&i) = self.index.get(rel) else {
            self.bytes_unplanned = self.bytes_unplanned.saturating_add(n);
            return;
        };
        let f = &plan.files[i];
        let before = self.done[i];
        // Counts and positions come from the tracee's calls: saturating, never trusted.
        self.read[i] = self.read[i].saturating_add(n).max(at_least.unwrap_or(0));
        if self.read[i] > f.size && !self.grew[i] {
            self.grew[i] = true;
            self.files_grew += 1;
        }
        let now = self.read[i].min(f.size);
        if now == before {
            return;
        }
        self.done[i] = now;
        self.bytes_done += now - before;
        let finished = now == f.size;
        if finished {
            self.files_done += 1;
        }
        if let Some(t) = self.tablespaces.get_mut(f.tablespace) {
            t.bytes_done += now - before;
            if finished {
                t.files_done += 1;
            }
        }
    }

    /// Once per interval: the copier's processes as /proc shows them.
    pub fn sample(&mut self, samples: &[ProcSample], now_ns: u64, interval_ns: u64) {
        // Ticks per second: USER_HZ is 100 on every Linux architecture pg_trace runs on.
        let interval_ticks = interval_ns as f64 / 1e9 * 100.0;
        for s in samples {
            if self.processes.len() < 256 || self.processes.contains_key(&s.pid) {
                self.processes.insert(s.pid, s.comm.clone());
            }
        }
        let mut share = HashMap::new();
        for s in samples {
            if let Some(c) = s.cpu_ticks {
                if let Some(prev) = self.last_cpu.insert(s.pid, c) {
                    if interval_ticks > 0.0 {
                        share.insert(s.pid, c.saturating_sub(prev) as f64 / interval_ticks);
                    }
                }
            }
        }
        let recent = 2 * interval_ns.max(100_000_000);
        let readers: Vec<Pid> = self
            .last_read_ns
            .iter()
            .filter(|(_, &t)| t.saturating_add(recent) >= now_ns)
            .map(|(&p, _)| p)
            .collect();
        if self.verdicts.len() == VERDICTS_KEPT {
            self.verdicts.pop_front();
        }
        self.verdicts.push_back(judge(samples, &readers, &share));
        let mut counts: BTreeMap<Limiter, usize> = BTreeMap::new();
        for v in self.verdicts.iter().flatten() {
            *counts.entry(*v).or_default() += 1;
        }
        self.limiter = counts
            .into_iter()
            .max_by_key(|&(l, n)| (n, std::cmp::Reverse(l)))
            .map(|(l, _)| l);
    }

    /// Everything the walk asked for was read.
    pub fn complete(&self) -> bool {
        self.planned() && self.bytes_done >= self.bytes_total && self.files_done >= self.files_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgdata::backup_size::PlannedFile;

    fn plan() -> Plan {
        Plan {
            files: vec![
                PlannedFile {
                    rel: "base/5/1259".into(),
                    size: 100,
                    tablespace: 0,
                },
                PlannedFile {
                    rel: "PG_VERSION".into(),
                    size: 0,
                    tablespace: 0,
                },
                PlannedFile {
                    rel: "pg_tblspc/16400/PG_15_1/5/16401".into(),
                    size: 50,
                    tablespace: 1,
                },
            ],
            tablespaces: vec!["".into(), "pg_tblspc/16400".into()],
            truncated: false,
        }
    }

    #[test]
    fn progress_by_file_and_tablespace() {
        let mut c = Copier::new("tar");
        c.read(1, "base/5/1259", 60, 1);
        c.set_plan(plan());
        assert_eq!((c.bytes_done, c.bytes_total), (60, 150));
        assert_eq!((c.files_done, c.files_total), (1, 3));
        c.read(1, "base/5/1259", 60, 2);
        assert_eq!(c.bytes_done, 100, "never past the walked size");
        assert_eq!(c.files_done, 2);
        assert_eq!(c.files_grew, 1);
        c.read(1, "pg_wal/000000010000000000000001", 10, 3);
        assert_eq!(c.bytes_unplanned, 10);
        c.position(2, "pg_tblspc/16400/PG_15_1/5/16401", 50, 4);
        assert!(c.complete());
        // Hostile figures saturate.
        c.read(1, "pg_wal/x", u64::MAX, 5);
        c.read(1, "base/5/1259", u64::MAX, 5);
        c.position(1, "base/5/1259", u64::MAX, 5);
        assert_eq!(c.bytes_done, 150);
        assert_eq!(c.tablespaces[1].bytes_done, 50);
        assert_eq!(c.tablespaces[1].files_done, 1);
    }

    fn s(pid: Pid, comm: &str, state: char, syscall: Option<i64>, wchan: &str) -> ProcSample {
        ProcSample {
            pid,
            comm: comm.into(),
            state: Some(state),
            wchan: Some(wchan.into()),
            syscall,
            args: Some([0; 6]),
            cpu_ticks: None,
        }
    }

    #[test]
    fn limiters() {
        let none = HashMap::new();
        let w = Some(libc::SYS_write);
        assert_eq!(
            judge(&[s(1, "tar", 'D', None, "")], &[1], &none),
            Some(Limiter::Disk)
        );
        assert_eq!(
            judge(
                &[
                    s(1, "tar", 'S', w, "pipe_write"),
                    s(2, "gzip", 'R', None, "")
                ],
                &[1],
                &none
            ),
            Some(Limiter::CompressionCpu)
        );
        assert_eq!(
            judge(&[s(1, "tar", 'S', w, "pipe_write")], &[1], &none),
            Some(Limiter::Pipe)
        );
        assert_eq!(
            judge(
                &[s(1, "rsync", 'S', w, "sk_stream_wait_memory")],
                &[1],
                &none
            ),
            Some(Limiter::Network)
        );
        assert_eq!(
            judge(
                &[s(
                    1,
                    "rsync",
                    'S',
                    Some(libc::SYS_clock_nanosleep),
                    "hrtimer"
                )],
                &[1],
                &none
            ),
            Some(Limiter::Throttled)
        );
        assert_eq!(
            judge(&[s(1, "cp", 'T', None, "")], &[1], &none),
            Some(Limiter::Stopped)
        );
        let mut c = Copier::new("tar");
        for _ in 0..3 {
            c.sample(&[s(1, "tar", 'D', None, "")], 1, 1);
        }
        c.sample(&[s(1, "tar", 'S', w, "pipe_write")], 2, 1);
        assert_eq!(c.limiter, Some(Limiter::Disk));
        // Old verdicts age out, even when nothing holds it back now.
        for _ in 0..VERDICTS_KEPT {
            c.sample(&[s(1, "tar", 'S', Some(libc::SYS_read), "")], 3, 1);
        }
        assert_eq!(c.limiter, None);
        let mut select = s(
            1,
            "rsync",
            'S',
            Some(libc::SYS_pselect6),
            "poll_schedule_timeout",
        );
        assert_eq!(
            judge(&[select.clone()], &[1], &none),
            Some(Limiter::Throttled)
        );
        select.args = Some([5, 1, 2, 0, 0, 0]);
        assert_eq!(judge(&[select], &[1], &none), None);
    }
}
