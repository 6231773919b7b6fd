//! The /proc backend: no attach at all, for hosts where BPF and ptrace are forbidden.
//! Each poll reads `/proc/PID/fd`, `fdinfo` (file positions), the files' sizes and
//! `/proc/PID/io`; a sampler thread looks at `/proc/PID/syscall` about a thousand times a
//! second to catch the process inside a read, which is the only evidence /proc gives of
//! *which* file it reads (PostgreSQL reads relation files with pread, which leaves the
//! file position alone). Files opened and closed between two polls are missed.

use super::{monotonic_ns, Event, EventKind, Pid, Syscall, Tracer, TracerStats};
use crate::process::identity::Identity;
use crate::process::proc::{self, SyscallFile, SyscallNow};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One /proc look at a process: a FileState per open regular file or directory.
/// Also what every backend emits at attach, so files opened before we came are named.
pub fn snapshot(pid: Pid, out: &mut Vec<Event>) -> std::io::Result<()> {
    let files = crate::process::open_files(pid)?;
    let ts = monotonic_ns();
    for f in files {
        out.push(Event {
            ts_ns: ts,
            pid,
            kind: EventKind::FileState {
                fd: f.fd,
                path: f.path.to_string_lossy().into_owned(),
                pos: f.pos,
                flags: f.flags,
                size: f.size,
            },
        });
    }
    Ok(())
}

/// What one look at `/proc/PID/syscall` says about a read: the kernel shows a system
/// call's arguments only while the process sleeps in it (a pread64 waiting for the disk),
/// so each one is a sample of exactly which file is read, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadSeen {
    pub syscall: Syscall,
    pub fd: i32,
    pub offset: Option<u64>,
    pub requested: Option<u64>,
}

pub fn read_seen(now: SyscallNow) -> Option<ReadSeen> {
    let SyscallNow::In { nr, args } = now else {
        return None;
    };
    // x86-64 and arm64 pass preadv's offset whole in its fourth argument (pos_l).
    let (syscall, offset, requested) = match libc::c_long::try_from(nr).ok()? {
        libc::SYS_read => (Syscall::Read, None, Some(args[2])),
        libc::SYS_pread64 => (Syscall::Pread64, Some(args[3]), Some(args[2])),
        libc::SYS_readv => (Syscall::Readv, None, None),
        libc::SYS_preadv => (Syscall::Preadv, Some(args[3]), None),
        libc::SYS_preadv2 => (Syscall::Preadv2, Some(args[3]), None),
        _ => return None,
    };
    Some(ReadSeen {
        syscall,
        fd: i32::try_from(args[0]).ok()?,
        offset,
        requested,
    })
}

/// How often the sampler looks. A read is visible only while the process sleeps in it, so
/// the chance of catching one grows with the rate; one look costs about 4 µs of our CPU
/// (the file is held open and re-read) and nothing of the tracee's: the kernel answers
/// from the saved registers of a sleeping task and says "running" for a running one.
const SAMPLE_EVERY: Duration = Duration::from_millis(1);
/// Distinct reads kept between two polls: memory stays bounded if polls stall.
const SAMPLES_KEPT: usize = 4096;

/// One read in flight as the samples saw it: the read, how many looks saw it, when first.
type Seen = (ReadSeen, u32, u64);

#[derive(Default)]
struct Samples {
    pids: BTreeSet<Pid>,
    /// By (pid, fd, offset): one blocked read seen by several looks is one read.
    seen: BTreeMap<(Pid, i32, Option<u64>), Seen>,
}

/// The thread that samples `/proc/PID/syscall` between polls.
struct Sampler {
    shared: Arc<Mutex<Samples>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(pids: &BTreeSet<Pid>) -> Sampler {
        let shared = Arc::new(Mutex::new(Samples {
            pids: pids.clone(),
            ..Default::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (sh, st) = (Arc::clone(&shared), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("procfs-sampler".into())
            .spawn(move || sample_loop(&sh, &st))
            .ok();
        Sampler {
            shared,
            stop,
            thread,
        }
    }

    fn set_pids(&self, pids: &BTreeSet<Pid>) {
        if let Ok(mut s) = self.shared.lock() {
            s.pids = pids.clone();
            // What a pid that left was caught reading is no one's now.
            s.seen.retain(|(p, ..), _| pids.contains(p));
        }
    }

    /// The reads of `pid` seen since the last drain, one event each (oldest first).
    fn drain(&self, pid: Pid, out: &mut Vec<Event>) {
        let Ok(mut s) = self.shared.lock() else {
            return;
        };
        let mut v: Vec<_> = s
            .seen
            .range((pid, i32::MIN, None)..=(pid, i32::MAX, Some(u64::MAX)))
            .map(|(k, v)| (*k, *v))
            .collect();
        for (k, _) in &v {
            s.seen.remove(k);
        }
        drop(s);
        v.sort_by_key(|(_, (_, _, ts))| *ts);
        for ((pid, ..), (r, hits, ts)) in v {
            out.push(Event {
                ts_ns: ts,
                pid,
                kind: EventKind::ReadSample {
                    syscall: r.syscall,
                    fd: r.fd,
                    offset: r.offset,
                    requested: r.requested,
                    hits,
                },
            });
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop();
    }
}

fn sample_loop(shared: &Mutex<Samples>, stop: &AtomicBool) {
    // Each pid's file is opened once, when the pid joins: once its process is gone the file
    // only fails, and opening the path again could land on a process that took the pid.
    let mut files: HashMap<Pid, Option<SyscallFile>> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let pids = match shared.lock() {
            Ok(s) => s.pids.clone(),
            Err(_) => return,
        };
        files.retain(|p, _| pids.contains(p));
        let mut caught = Vec::new();
        for &pid in &pids {
            let file = files.entry(pid).or_insert_with(|| SyscallFile::open(pid));
            match file.as_ref().map(SyscallFile::read) {
                Some(Some(now)) => {
                    if let Some(r) = read_seen(now) {
                        caught.push((pid, r));
                    }
                }
                // Gone: the poll notices the exit; this pid is not looked at again.
                Some(None) => *file = None,
                None => {}
            }
        }
        if !caught.is_empty() {
            let ts = monotonic_ns();
            if let Ok(mut s) = shared.lock() {
                for (pid, r) in caught {
                    let key = (pid, r.fd, r.offset);
                    if let Some(e) = s.seen.get_mut(&key) {
                        e.1 = e.1.saturating_add(1);
                    } else if s.seen.len() < SAMPLES_KEPT {
                        s.seen.insert(key, (r, 1, ts));
                    }
                }
            }
        }
        std::thread::sleep(SAMPLE_EVERY);
    }
}

/// What one poll adds for a process besides its files: the I/O counters.
fn sample_kernel(pid: Pid, out: &mut Vec<Event>) {
    let Some(handle) = proc::open(pid) else {
        return;
    };
    if let Some(io) = proc::io_of(&handle) {
        out.push(Event {
            ts_ns: monotonic_ns(),
            pid,
            kind: EventKind::IoCounters {
                rchar: io.rchar,
                wchar: io.wchar,
                read_bytes: io.read_bytes,
                write_bytes: io.write_bytes,
            },
        });
    }
}

pub struct ProcfsTracer {
    pids: BTreeSet<Pid>,
    /// Each pid pinned: a poll's reads count only if their process is alive after them.
    ids: std::collections::BTreeMap<Pid, crate::process::identity::Identity>,
    events: u64,
    sampler: Sampler,
}

impl ProcfsTracer {
    pub fn attach(pids: &[Pid]) -> anyhow::Result<ProcfsTracer> {
        let ids = pids
            .iter()
            .map(|&p| Ok((p, Identity::open(p)?)))
            .collect::<anyhow::Result<_>>()?;
        for &pid in pids {
            crate::process::fds::check_readable(pid).map_err(|e| {
                // Capabilities are the answer to a refusal only; a vanished process is said
                // by the caller (session::backend::while_attaching).
                let hint = match e.kind() {
                    std::io::ErrorKind::PermissionDenied => format!(
                        " (another user's process needs CAP_SYS_PTRACE and \
                         CAP_DAC_READ_SEARCH: {})",
                        crate::process::proc::SETCAP_HINT
                    ),
                    _ => String::new(),
                };
                anyhow::anyhow!("cannot read /proc/{pid}/fd: {e}{hint}")
            })?;
        }
        let pids: BTreeSet<Pid> = pids.iter().copied().collect();
        Ok(ProcfsTracer {
            sampler: Sampler::start(&pids),
            ids,
            pids,
            events: 0,
        })
    }
}

impl Tracer for ProcfsTracer {
    fn name(&self) -> &'static str {
        "procfs"
    }

    fn add_pid(&mut self, pid: Pid) -> anyhow::Result<()> {
        self.ids.insert(pid, Identity::open(pid)?);
        self.pids.insert(pid);
        self.sampler.set_pids(&self.pids);
        Ok(())
    }

    fn remove_pid(&mut self, pid: Pid) {
        self.pids.remove(&pid);
        self.ids.remove(&pid);
        self.sampler.set_pids(&self.pids);
    }

    fn poll(&mut self, out: &mut Vec<Event>) -> anyhow::Result<()> {
        let before = out.len();
        let mut gone = Vec::new();
        for &pid in &self.pids {
            let mark = out.len();
            if snapshot(pid, out).is_err() {
                gone.push(pid);
                continue;
            }
            // The samples after the files they name, before the rchar growth that is put
            // only on files they show being read.
            self.sampler.drain(pid, out);
            sample_kernel(pid, out);
            if !self.ids.get(&pid).is_some_and(Identity::is_alive) {
                // Read by pid: maybe from whoever has it now. Not a word of it.
                out.truncate(mark);
                gone.push(pid);
            }
        }
        if !gone.is_empty() {
            self.pids.retain(|p| !gone.contains(p));
            self.sampler.set_pids(&self.pids);
        }
        for pid in gone {
            // Without a parent's wait status the exit code is unknown.
            self.ids.remove(&pid);
            out.push(Event {
                ts_ns: monotonic_ns(),
                pid,
                kind: EventKind::Exit {
                    code: None,
                    signal: None,
                },
            });
        }
        self.events += (out.len() - before) as u64;
        Ok(())
    }

    fn stats(&self) -> TracerStats {
        TracerStats {
            events: self.events,
            lost: Vec::new(),
        }
    }

    fn detach(&mut self) {
        self.pids.clear();
        self.sampler.stop();
    }

    fn limitations(&self) -> Vec<String> {
        vec![
            "/proc polling: reads are counted per process (rchar) and put on a file only when a sample of /proc/PID/syscall caught the process reading it; the rest is shown as unattributed reads (estimates); files opened and closed between two polls are missed".into(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now(text: &str) -> SyscallNow {
        proc::parse_syscall(text.as_bytes()).unwrap()
    }

    #[test]
    fn syscall_sample() {
        let line = format!(
            "{} 0x17 0x7f00 0x2000 0x40002000 0x0 0x0 0x7ffd 0x7f12",
            libc::SYS_pread64
        );
        assert_eq!(
            read_seen(now(&line)),
            Some(ReadSeen {
                syscall: Syscall::Pread64,
                fd: 0x17,
                offset: Some(0x40002000),
                requested: Some(0x2000),
            })
        );
        // PostgreSQL 17+ reads combined blocks with preadv: the sizes are in its memory.
        let line = format!(
            "{} 0x9 0x7f00 0x10 0x20000 0x0 0x0 0x7ffd 0x7f12",
            libc::SYS_preadv
        );
        assert_eq!(
            read_seen(now(&line)),
            Some(ReadSeen {
                syscall: Syscall::Preadv,
                fd: 9,
                offset: Some(0x20000),
                requested: None,
            })
        );
        let line = format!(
            "{} 0x5 0x7f00 0x100 0x0 0x0 0x0 0x7ffd 0x7f12",
            libc::SYS_read
        );
        assert!(matches!(
            read_seen(now(&line)),
            Some(ReadSeen {
                offset: None,
                fd: 5,
                ..
            })
        ));
        assert!(read_seen(now("running")).is_none());
        assert!(read_seen(now("-1 0x7ffd 0x7f12")).is_none());
        let line = format!(
            "{} 0x5 0x1 0x0 0x0 0x0 0x0 0x7ffd 0x7f12",
            libc::SYS_epoll_wait
        );
        assert!(read_seen(now(&line)).is_none());
        // A hostile fd number (beyond i32) is no read.
        let line = format!(
            "{} 0xffffffffff 0x1 0x0 0x0 0x0 0x0 0x7ffd 0x7f12",
            libc::SYS_pread64
        );
        assert!(read_seen(now(&line)).is_none());
    }

    /// The sampler catches a thread of ours asleep in read(2) on an empty pipe, by its fd.
    #[test]
    fn sampler_catches_a_blocked_read() {
        let mut fds = [0i32; 2];
        // SAFETY: pipe(2) writes two fds into the array we own.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let (rfd, wfd) = (fds[0], fds[1]);
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            // SAFETY: gettid takes no arguments and cannot fail.
            tx.send(unsafe { libc::syscall(libc::SYS_gettid) } as Pid)
                .unwrap();
            let mut b = [0u8; 1];
            // SAFETY: reads one byte into a buffer we own from the pipe we created.
            unsafe { libc::read(rfd, b.as_mut_ptr().cast(), 1) }
        });
        let tid = rx.recv().unwrap();
        let mut sampler = Sampler::start(&[tid].into_iter().collect());
        let t = std::time::Instant::now();
        let mut seen = Vec::new();
        while t.elapsed() < Duration::from_secs(10) {
            sampler.drain(tid, &mut seen);
            if seen
                .iter()
                .any(|e| matches!(e.kind, EventKind::ReadSample { fd, syscall: Syscall::Read, .. } if fd == rfd))
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        sampler.stop();
        // SAFETY: one byte from a local into the pipe's write end, which we own.
        unsafe { libc::write(wfd, b"x".as_ptr().cast(), 1) };
        assert_eq!(reader.join().unwrap(), 1);
        // SAFETY: closing the two fds pipe(2) gave us, once.
        unsafe {
            libc::close(rfd);
            libc::close(wfd);
        }
        assert!(
            seen.iter().all(|e| e.pid == tid),
            "only the sampled thread: {seen:?}"
        );
        assert!(
            seen.iter()
                .any(|e| matches!(e.kind, EventKind::ReadSample { fd, .. } if fd == rfd)),
            "the blocked read was never sampled: {seen:?}"
        );
    }

    #[test]
    fn snapshot_of_self_names_open_file() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), vec![0u8; 12345]).unwrap();
        let f = std::fs::File::open(tmp.path()).unwrap();
        let mut ev = Vec::new();
        snapshot(std::process::id() as Pid, &mut ev).unwrap();
        let hit = ev.iter().any(|e| {
            matches!(&e.kind, EventKind::FileState { path, size: Some(12345), pos: Some(0), .. } if path == &tmp.path().to_string_lossy())
        });
        assert!(hit, "{ev:?}");
        drop(f);
    }
}
