//! The /proc backend: no attach at all, for hosts where BPF and ptrace are forbidden.
//! Each poll reads `/proc/PID/fd`, `fdinfo` (file positions), the files' sizes and
//! `/proc/PID/io`. It cannot see `pread` offsets (they leave the file position alone), nor
//! files opened and closed between two polls.

use super::{monotonic_ns, Event, EventKind, Pid, Tracer, TracerStats};
use crate::process::identity::Identity;
use crate::process::proc::{self, SyscallNow};
use std::collections::BTreeSet;

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

/// `/proc/PID/syscall` shows the arguments of a syscall the process is blocked in (e.g. a
/// pread64 waiting for the disk): a sample of exactly where it reads. It is reported as a
/// zero-byte read so it moves the position without counting bytes twice.
pub fn sampled_read(pid: Pid, now: SyscallNow) -> Option<Event> {
    let SyscallNow::In { nr, args } = now else {
        return None;
    };
    let (syscall, offset) = match libc::c_long::try_from(nr).ok()? {
        libc::SYS_read => (super::Syscall::Read, None),
        libc::SYS_pread64 => (super::Syscall::Pread64, Some(args[3])),
        _ => return None,
    };
    Some(Event {
        ts_ns: monotonic_ns(),
        pid,
        kind: EventKind::Read {
            syscall,
            fd: i32::try_from(args[0]).ok()?,
            offset,
            requested: args[2],
            result: 0,
        },
    })
}

/// What one poll adds for a process besides its files: a sampled read and the I/O counters.
fn sample_kernel(pid: Pid, out: &mut Vec<Event>) {
    let Some(handle) = proc::open(pid) else {
        return;
    };
    if let Some(ev) = proc::syscall_of(&handle).and_then(|now| sampled_read(pid, now)) {
        out.push(ev);
    }
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
}

impl ProcfsTracer {
    pub fn attach(pids: &[Pid]) -> anyhow::Result<ProcfsTracer> {
        let ids = pids
            .iter()
            .map(|&p| Ok((p, Identity::open(p)?)))
            .collect::<anyhow::Result<_>>()?;
        for &pid in pids {
            crate::process::fds::check_readable(pid).map_err(|e| {
                // Root is the answer to a refusal only; a vanished process is said by the
                // caller (session::backend::while_attaching).
                let hint = match e.kind() {
                    std::io::ErrorKind::PermissionDenied => " (pg_trace must run as root)",
                    _ => "",
                };
                anyhow::anyhow!("cannot read /proc/{pid}/fd: {e}{hint}")
            })?;
        }
        Ok(ProcfsTracer {
            ids,
            pids: pids.iter().copied().collect(),
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
        Ok(())
    }

    fn remove_pid(&mut self, pid: Pid) {
        self.pids.remove(&pid);
        self.ids.remove(&pid);
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
            sample_kernel(pid, out);
            if !self.ids.get(&pid).is_some_and(Identity::is_alive) {
                // Read by pid: maybe from whoever has it now. Not a word of it.
                out.truncate(mark);
                gone.push(pid);
            }
        }
        for pid in gone {
            // Without a parent's wait status the exit code is unknown.
            self.pids.remove(&pid);
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
    }

    fn limitations(&self) -> Vec<String> {
        vec![
            "/proc polling: pread offsets are invisible (only file positions and sizes), and files opened and closed between two polls are missed".into(),
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
        let e = sampled_read(7, now(&line)).unwrap();
        assert!(matches!(
            e.kind,
            EventKind::Read {
                syscall: super::super::Syscall::Pread64,
                fd: 0x17,
                offset: Some(0x40002000),
                requested: 0x2000,
                result: 0,
            }
        ));
        let line = format!(
            "{} 0x5 0x7f00 0x100 0x0 0x0 0x0 0x7ffd 0x7f12",
            libc::SYS_read
        );
        assert!(matches!(
            sampled_read(7, now(&line)).unwrap().kind,
            EventKind::Read {
                offset: None,
                fd: 5,
                ..
            }
        ));
        assert!(sampled_read(7, now("running")).is_none());
        assert!(sampled_read(7, now("-1 0x7ffd 0x7f12")).is_none());
        let line = format!(
            "{} 0x5 0x1 0x0 0x0 0x0 0x0 0x7ffd 0x7f12",
            libc::SYS_epoll_wait
        );
        assert!(sampled_read(7, now(&line)).is_none());
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
