//! Every PostgreSQL process on the host, grouped by cluster: what the process picker shows.
//! Pure parsers (process title, `/proc/PID/stat`, `/proc/PID/io`, `postmaster.pid`) and a
//! thin sampler that reads `/proc` and turns counter deltas into CPU % and I/O rates.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

pub type Pid = i32;

/// What a postgres process title says (`postgres: alice sales [local] SELECT`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Title {
    /// `client backend`, `walsender`, `checkpointer`, `autovacuum worker`, `postmaster`...
    pub backend_type: String,
    pub user: Option<String>,
    pub database: Option<String>,
    /// `[local]` or `10.0.0.5(41234)`.
    pub host: Option<String>,
    /// The rest: `SELECT`, `idle`, `sending backup "nightly"`, `streaming 0/3000148`.
    pub activity: String,
    /// `cluster_name`, when set (`postgres: 15/main: checkpointer`).
    pub cluster_name: Option<String>,
}

/// Auxiliary and background processes, by the title prefix PostgreSQL gives them.
const AUX: &[&str] = &[
    "checkpointer",
    "background writer",
    "walwriter",
    "autovacuum launcher",
    "autovacuum worker",
    "logical replication launcher",
    "logical replication worker",
    "logical replication apply worker",
    "logical replication tablesync worker",
    "logical replication parallel apply worker",
    "parallel worker",
    "stats collector",
    "archiver",
    "startup",
    "walreceiver",
    "walsummarizer",
    "wal summarizer",
    "logger",
    "io worker",
    "slotsync worker",
    "TimescaleDB",
];

fn is_host(tok: &str) -> bool {
    tok == "[local]" || (tok.ends_with(')') && tok.contains('('))
}

/// Parse a process title (`/proc/PID/cmdline` with NULs as spaces). `None` when it is not
/// a postgres process title at all.
pub fn parse_title(raw: &str) -> Option<Title> {
    let t = raw.trim();
    let Some(rest) = t.strip_prefix("postgres: ") else {
        // The postmaster keeps its command line: `/usr/lib/postgresql/15/bin/postgres -D ...`.
        let exe = t.split_whitespace().next()?;
        let base = exe.rsplit('/').next().unwrap_or(exe);
        return (base == "postgres" || base == "postmaster").then(|| Title {
            backend_type: "postmaster".into(),
            activity: t.to_string(),
            ..Title::default()
        });
    };
    let mut rest = rest.trim();
    let mut cluster_name = None;
    // `cluster_name: title`: the name has no spaces and ends with ": ". A client title can
    // hold ": " too (in the query text) but never in its first word.
    if let Some((first, after)) = rest.split_once(": ") {
        if !first.contains(' ') && !first.is_empty() {
            cluster_name = Some(first.to_string());
            rest = after;
        }
    }
    let mut title = Title {
        cluster_name,
        ..Title::default()
    };
    for aux in AUX {
        if let Some(after) = rest.strip_prefix(aux) {
            if after.is_empty() || after.starts_with(' ') {
                title.backend_type = (*aux).to_string();
                title.activity = after.trim().to_string();
                if *aux == "autovacuum worker" && !title.activity.is_empty() {
                    title.database = Some(title.activity.clone());
                }
                return Some(title);
            }
        }
    }
    let (kind, rest) = match rest.strip_prefix("walsender ") {
        Some(r) => ("walsender", r),
        None => ("client backend", rest),
    };
    title.backend_type = kind.into();
    // `user [database] host activity...`: the host token ends the connection part.
    let toks: Vec<&str> = rest.split(' ').collect();
    let Some(h) = toks.iter().take(3).position(|t| is_host(t)) else {
        // No host: a background worker with its own title.
        title.backend_type = "background worker".into();
        title.activity = rest.to_string();
        return Some(title);
    };
    if h >= 1 {
        title.user = Some(toks[0].to_string());
    }
    if h == 2 {
        title.database = Some(toks[1].to_string());
    }
    title.host = Some(toks[h].to_string());
    title.activity = toks[h + 1..].join(" ").trim().to_string();
    Some(title)
}

/// The fields of `/proc/PID/stat` the picker needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub state: char,
    pub ppid: Pid,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
}

pub fn parse_stat(text: &str) -> Option<Stat> {
    // The command may hold spaces and parentheses: fields start after the last ')'.
    let rest = text.get(text.rfind(')')? + 1..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] = state (field 3), [1] = ppid, [11] = utime (14), [12] = stime (15).
    let state = f.first()?.chars().next()?;
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(Stat {
        state,
        ppid,
        cpu_ticks: utime.saturating_add(stime),
    })
}

/// `rchar` and `wchar` of `/proc/PID/io`: bytes through read/write syscalls, page cache
/// hits included (what PostgreSQL reads mostly comes from there).
pub fn parse_io(text: &str) -> Option<(u64, u64)> {
    let mut r = None;
    let mut w = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("rchar:") {
            r = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("wchar:") {
            w = v.trim().parse().ok();
        }
    }
    Some((r?, w?))
}

/// The port, fourth line of `postmaster.pid`.
pub fn parse_postmaster_pid(text: &str) -> Option<u16> {
    text.lines().nth(3)?.trim().parse().ok()
}

/// What `/proc/PID/syscall` says the process is doing: in a system call (its number),
/// running in user space, or blocked outside one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallNow {
    In(u64),
    Running,
    Blocked,
}

pub fn parse_proc_syscall(text: &str) -> Option<SyscallNow> {
    match text.split_whitespace().next()? {
        "running" => Some(SyscallNow::Running),
        "-1" => Some(SyscallNow::Blocked),
        n => n.parse().ok().map(SyscallNow::In),
    }
}

/// x86_64 numbers of the system calls a waiting or working PostgreSQL process sits in.
pub fn syscall_name(nr: u64) -> Option<&'static str> {
    if !cfg!(target_arch = "x86_64") {
        return None;
    }
    Some(match nr {
        0 => "read",
        1 => "write",
        3 => "close",
        7 => "poll",
        8 => "lseek",
        17 => "pread64",
        18 => "pwrite64",
        19 => "readv",
        20 => "writev",
        23 => "select",
        35 => "nanosleep",
        44 => "sendto",
        45 => "recvfrom",
        46 => "sendmsg",
        47 => "recvmsg",
        61 => "wait4",
        64 => "semget",
        65 => "semop",
        74 => "fsync",
        75 => "fdatasync",
        202 => "futex",
        220 => "semtimedop",
        230 => "clock_nanosleep",
        232 => "epoll_wait",
        257 => "openat",
        270 => "pselect6",
        271 => "ppoll",
        277 => "sync_file_range",
        281 => "epoll_pwait",
        295 => "preadv",
        296 => "pwritev",
        327 => "preadv2",
        328 => "pwritev2",
        426 => "io_uring_enter",
        441 => "epoll_pwait2",
        _ => return None,
    })
}

pub fn state_name(c: char) -> &'static str {
    match c {
        'R' => "running",
        'S' => "sleeping",
        'D' => "disk wait",
        'T' => "stopped",
        't' => "traced",
        'Z' => "zombie",
        'X' => "dead",
        'I' => "idle",
        _ => "?",
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PgProcess {
    pub pid: Pid,
    pub title: Title,
    pub state: char,
    /// Percent of one core since the previous sample (None on the first).
    pub cpu: Option<f64>,
    /// Bytes/s read and written through syscalls since the previous sample (None on the
    /// first, or when /proc/PID/io is not readable).
    pub read_bps: Option<f64>,
    pub write_bps: Option<f64>,
    /// From the server's shared memory (root, supported major): what `pg_stat_activity`
    /// would say. None when it could not be read; the title is all there is then.
    pub memory: Option<MemStatus>,
}

/// One process's row of the offline `pg_stat_activity` (`pg_trace ps`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemStatus {
    pub backend_type: Option<String>,
    /// `active`, `idle`, `idle in transaction`, ...
    pub state: Option<String>,
    /// `Timeout:PgSleep`
    pub wait: Option<String>,
    pub query: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PgCluster {
    pub postmaster: Pid,
    /// From the postmaster's working directory (root) or its `-D` argument.
    pub datadir: Option<PathBuf>,
    pub port: Option<u16>,
    pub major: Option<u32>,
    /// The postmaster first, then its children by pid.
    pub processes: Vec<PgProcess>,
}

impl PgCluster {
    /// `/var/lib/postgresql/15/main :5432 PG 15`
    pub fn label(&self) -> String {
        let dir = self
            .datadir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| {
                format!("postmaster {} (data directory unreadable)", self.postmaster)
            });
        let mut s = dir;
        if let Some(p) = self.port {
            s.push_str(&format!("  port {p}"));
        }
        if let Some(m) = self.major {
            s.push_str(&format!("  PostgreSQL {m}"));
        }
        s
    }
}

/// What one sample remembers of a process for the next: when, CPU ticks, (rchar, wchar).
type Counters = (u64, u64, Option<(u64, u64)>);

/// Samples /proc; keeps the previous counters so that the next sample has rates.
#[derive(Default)]
pub struct Lister {
    prev: HashMap<Pid, Counters>,
    /// Status readers by postmaster pid, kept between samples (finding the array costs a
    /// search of the shared memory index). A reader that fails is dropped and retried.
    readers: HashMap<Pid, crate::process::status::StatusReader>,
    /// When opening or reading a postmaster's status last failed (monotonic ns): opening
    /// scans shared memory on the caller's thread, so a failing cluster is retried only
    /// every `READER_RETRY_NS`, not every sample.
    failed: HashMap<Pid, u64>,
}

const READER_RETRY_NS: u64 = 10_000_000_000;

/// Whether a postmaster whose reader last failed at `failed_at` may be tried again `now`.
fn may_retry(failed_at: Option<u64>, now: u64) -> bool {
    match failed_at {
        None => true,
        Some(t) => now.saturating_sub(t) >= READER_RETRY_NS,
    }
}

/// Every status slot of a cluster, read as its postmaster maps shared memory.
fn memory_rows(
    reader: &mut crate::process::status::StatusReader,
) -> Option<HashMap<Pid, MemStatus>> {
    use crate::process::status::StatusSample;
    let mut out = HashMap::new();
    for (e, q) in reader.entries().ok()? {
        let mut s = StatusSample {
            pid: e.pid,
            major: reader.major,
            ..Default::default()
        };
        reader.fill(&mut s, &e, q);
        // A process that exits between the two reads just has no wait event.
        let _ = reader.fill_wait(&mut s);
        let wait = match (&s.wait_event_type, &s.wait_event) {
            (Some(t), Some(e)) => Some(format!("{t}:{e}")),
            _ => None,
        };
        out.insert(
            s.pid,
            MemStatus {
                backend_type: s.backend_type,
                state: s.state,
                wait,
                query: s.query,
            },
        );
    }
    Some(out)
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn read_title(pid: Pid) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    // A title is short; a hostile or huge command line is cut, not copied whole.
    let raw = &raw[..raw.len().min(4096)];
    Some(
        String::from_utf8_lossy(raw)
            .replace('\0', " ")
            .trim()
            .to_string(),
    )
}

fn datadir_of(postmaster: Pid, title: &Title) -> Option<PathBuf> {
    if let Ok(cwd) = std::fs::read_link(format!("/proc/{postmaster}/cwd")) {
        if cwd.join("PG_VERSION").exists() {
            return Some(cwd);
        }
    }
    // Unprivileged: the -D argument of the command line, if absolute.
    let toks: Vec<&str> = title.activity.split_whitespace().collect();
    let i = toks.iter().position(|t| *t == "-D")?;
    let d = Path::new(toks.get(i + 1)?);
    d.is_absolute().then(|| d.to_path_buf())
}

impl Lister {
    pub fn new() -> Lister {
        Lister::default()
    }

    /// Every postgres process now, grouped by cluster (clusters ordered by data directory).
    pub fn sample(&mut self) -> Vec<PgCluster> {
        let now = crate::process::clock::monotonic_ns();
        let hz = clock_ticks();
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        struct Raw {
            pid: Pid,
            title: Title,
            stat: Stat,
            io: Option<(u64, u64)>,
        }
        let mut raws = Vec::new();
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<Pid>().ok()) else {
                continue;
            };
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let comm = comm.trim();
            if comm != "postgres" && comm != "postmaster" {
                continue;
            }
            let Some(title) = read_title(pid).and_then(|t| parse_title(&t)) else {
                continue;
            };
            let Some(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| parse_stat(&s))
            else {
                continue;
            };
            let io = std::fs::read_to_string(format!("/proc/{pid}/io"))
                .ok()
                .and_then(|s| parse_io(&s));
            raws.push(Raw {
                pid,
                title,
                stat,
                io,
            });
        }
        let pids: std::collections::HashSet<Pid> = raws.iter().map(|r| r.pid).collect();
        let mut clusters: BTreeMap<Pid, PgCluster> = BTreeMap::new();
        let mut next_prev = HashMap::new();
        // Postmasters: postgres processes whose parent is not one.
        for r in raws.iter().filter(|r| !pids.contains(&r.stat.ppid)) {
            let datadir = datadir_of(r.pid, &r.title);
            let port = datadir.as_ref().and_then(|d| {
                std::fs::read_to_string(d.join("postmaster.pid"))
                    .ok()
                    .and_then(|t| parse_postmaster_pid(&t))
            });
            let major = datadir.as_ref().and_then(|d| {
                std::fs::read_to_string(d.join("PG_VERSION"))
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
            });
            clusters.insert(
                r.pid,
                PgCluster {
                    postmaster: r.pid,
                    datadir,
                    port,
                    major,
                    processes: Vec::new(),
                },
            );
        }
        for r in &raws {
            let prev = self.prev.get(&r.pid);
            let (cpu, rd, wr) = match prev {
                Some(&(t0, ticks0, io0)) if now > t0 => {
                    let dt = (now - t0) as f64 / 1e9;
                    let cpu = r.stat.cpu_ticks.saturating_sub(ticks0) as f64 / hz / dt * 100.0;
                    let (rd, wr) = match (io0, r.io) {
                        (Some((r0, w0)), Some((r1, w1))) => (
                            Some(r1.saturating_sub(r0) as f64 / dt),
                            Some(w1.saturating_sub(w0) as f64 / dt),
                        ),
                        _ => (None, None),
                    };
                    (Some(cpu), rd, wr)
                }
                _ => (None, None, None),
            };
            next_prev.insert(r.pid, (now, r.stat.cpu_ticks, r.io));
            let owner = if clusters.contains_key(&r.pid) {
                r.pid
            } else {
                r.stat.ppid
            };
            if let Some(c) = clusters.get_mut(&owner) {
                c.processes.push(PgProcess {
                    pid: r.pid,
                    title: r.title.clone(),
                    state: r.stat.state,
                    cpu,
                    read_bps: rd,
                    write_bps: wr,
                    memory: None,
                });
            }
        }
        self.prev = next_prev;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let live: std::collections::HashSet<Pid> = clusters.keys().copied().collect();
        self.readers.retain(|pm, _| live.contains(pm));
        self.failed.retain(|pm, _| live.contains(pm));
        for c in clusters.values_mut().filter(|_| root) {
            let Some(major) = c.major.filter(|m| (12..=18).contains(m)) else {
                continue;
            };
            if let std::collections::hash_map::Entry::Vacant(v) = self.readers.entry(c.postmaster) {
                if !may_retry(self.failed.get(&c.postmaster).copied(), now) {
                    continue;
                }
                match crate::process::status::StatusReader::open(c.postmaster, major) {
                    Ok(r) => {
                        v.insert(r);
                    }
                    Err(_) => {
                        self.failed.insert(c.postmaster, now);
                        continue;
                    }
                }
            }
            let rows = self.readers.get_mut(&c.postmaster).and_then(memory_rows);
            let Some(mut rows) = rows else {
                self.readers.remove(&c.postmaster);
                self.failed.insert(c.postmaster, now);
                continue;
            };
            self.failed.remove(&c.postmaster);
            for p in &mut c.processes {
                p.memory = rows.remove(&p.pid);
            }
        }
        let mut out: Vec<PgCluster> = clusters.into_values().collect();
        for c in &mut out {
            let pm = c.postmaster;
            c.processes.sort_by_key(|p| (p.pid != pm, p.pid));
        }
        out.sort_by(|a, b| {
            a.datadir
                .cmp(&b.datadir)
                .then(a.postmaster.cmp(&b.postmaster))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_backends() {
        let t = parse_title("postgres: alice sales [local] SELECT").unwrap();
        assert_eq!(t.backend_type, "client backend");
        assert_eq!(t.user.as_deref(), Some("alice"));
        assert_eq!(t.database.as_deref(), Some("sales"));
        assert_eq!(t.host.as_deref(), Some("[local]"));
        assert_eq!(t.activity, "SELECT");
        let t =
            parse_title("postgres: 15/main: bob shop 10.1.2.3(51234) idle in transaction").unwrap();
        assert_eq!(t.cluster_name.as_deref(), Some("15/main"));
        assert_eq!(t.database.as_deref(), Some("shop"));
        assert_eq!(t.activity, "idle in transaction");
    }

    #[test]
    fn walsenders() {
        let t = parse_title("postgres: walsender rep [local] sending backup \"nightly\"").unwrap();
        assert_eq!(t.backend_type, "walsender");
        assert_eq!(t.user.as_deref(), Some("rep"));
        assert_eq!(t.database, None);
        assert_eq!(t.activity, "sending backup \"nightly\"");
        let t = parse_title("postgres: walsender postgres postgres [local] idle").unwrap();
        assert_eq!(t.database.as_deref(), Some("postgres"));
        assert_eq!(t.activity, "idle");
    }

    #[test]
    fn auxiliary_and_postmaster() {
        assert_eq!(
            parse_title("postgres: checkpointer ").unwrap().backend_type,
            "checkpointer"
        );
        let t = parse_title("postgres: autovacuum worker shop").unwrap();
        assert_eq!(t.backend_type, "autovacuum worker");
        assert_eq!(t.database.as_deref(), Some("shop"));
        assert_eq!(
            parse_title("postgres: parallel worker for PID 42")
                .unwrap()
                .activity,
            "for PID 42"
        );
        let t = parse_title("/usr/lib/postgresql/15/bin/postgres -D /srv/pg").unwrap();
        assert_eq!(t.backend_type, "postmaster");
        assert_eq!(parse_title("bash -c x"), None);
        assert_eq!(parse_title(""), None);
        assert_eq!(
            parse_title("postgres: my custom worker")
                .unwrap()
                .backend_type,
            "background worker"
        );
    }

    #[test]
    fn stat_io_pidfile() {
        let s =
            parse_stat("42 (post gres) R 7 42 42 0 -1 4194560 1 0 0 0 150 25 0 0 20 0 1").unwrap();
        assert_eq!(
            s,
            Stat {
                state: 'R',
                ppid: 7,
                cpu_ticks: 175
            }
        );
        assert_eq!(parse_stat("42 (x) R"), None);
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_io("rchar: 10\nwchar: 20\nsyscr: 1\n"), Some((10, 20)));
        assert_eq!(parse_io("rchar: x"), None);
        assert_eq!(
            parse_postmaster_pid("123\n/srv/pg\n1700000000\n5433\n/tmp\n"),
            Some(5433)
        );
        assert_eq!(parse_postmaster_pid("123\n"), None);
    }

    #[test]
    fn proc_syscall() {
        assert_eq!(
            parse_proc_syscall("232 0x5 0x7ffd 0x1 0xffffffff 0x0 0x0 0x7ffd 0x7f12\n"),
            Some(SyscallNow::In(232))
        );
        assert_eq!(parse_proc_syscall("running\n"), Some(SyscallNow::Running));
        assert_eq!(
            parse_proc_syscall("-1 0x7ffd 0x7f12\n"),
            Some(SyscallNow::Blocked)
        );
        assert_eq!(parse_proc_syscall(""), None);
        assert_eq!(parse_proc_syscall("x"), None);
        assert_eq!(syscall_name(232), Some("epoll_wait"));
        assert_eq!(syscall_name(99_999), None);
    }

    #[test]
    fn failed_readers_wait_ten_seconds() {
        let t0 = 5_000_000_000;
        assert!(may_retry(None, t0));
        assert!(!may_retry(Some(t0), t0));
        assert!(!may_retry(Some(t0), t0 + READER_RETRY_NS - 1));
        assert!(may_retry(Some(t0), t0 + READER_RETRY_NS));
        // A clock that went backwards (it should not) does not unlock retries early.
        assert!(!may_retry(Some(t0), t0 - 1));
    }

    #[test]
    fn sample_does_not_panic() {
        let mut l = Lister::new();
        let _ = l.sample();
        let _ = l.sample();
    }
}
