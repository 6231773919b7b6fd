//! The /proc backend: no attach at all, for hosts where BPF and ptrace are forbidden.
//! Each poll reads `/proc/PID/fd`, `fdinfo` (file positions), the files' sizes and
//! `/proc/PID/io`. It cannot see `pread` offsets (they leave the file position alone), nor
//! files opened and closed between two polls.

use super::{monotonic_ns, Event, EventKind, Pid, Tracer, TracerStats};
use std::collections::BTreeSet;

/// One /proc look at a process: a FileState per open regular file or directory.
/// Also what every backend emits at attach, so files opened before we came are named.
pub fn snapshot(pid: Pid, out: &mut Vec<Event>) -> std::io::Result<()> {
    let files = crate::process::open_files(pid)?;
    let ts = monotonic_ns();
    for f in files {
        let size = std::fs::metadata(format!("/proc/{pid}/fd/{}", f.fd))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        out.push(Event {
            ts_ns: ts,
            pid,
            kind: EventKind::FileState {
                fd: f.fd,
                path: f.path.to_string_lossy().into_owned(),
                pos: f.pos,
                flags: f.flags,
                size,
            },
        });
    }
    Ok(())
}

/// `/proc/PID/io`: rchar, wchar, read_bytes, write_bytes.
pub fn parse_proc_io(text: &str) -> Option<(u64, u64, u64, u64)> {
    let mut v = [None; 4];
    for line in text.lines() {
        let (k, val) = line.split_once(':')?;
        let slot = match k {
            "rchar" => 0,
            "wchar" => 1,
            "read_bytes" => 2,
            "write_bytes" => 3,
            _ => continue,
        };
        v[slot] = val.trim().parse().ok();
    }
    Some((v[0]?, v[1]?, v[2]?, v[3]?))
}

/// `/proc/PID/syscall` shows the arguments of a syscall the process is blocked in (e.g. a
/// pread64 waiting for the disk): a sample of exactly where it reads. It is reported as a
/// zero-byte read so it moves the position without counting bytes twice.
pub fn sampled_read(pid: Pid, text: &str) -> Option<Event> {
    let mut it = text.split_whitespace();
    let nr: i64 = it.next()?.parse().ok()?;
    let args: Vec<u64> = it
        .take(6)
        .filter_map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
        .collect();
    let (syscall, offset) = match nr {
        0 => (super::Syscall::Read, None),
        17 => (super::Syscall::Pread64, Some(*args.get(3)?)),
        _ => return None,
    };
    Some(Event {
        ts_ns: monotonic_ns(),
        pid,
        kind: EventKind::Read {
            syscall,
            fd: i32::try_from(*args.first()?).ok()?,
            offset,
            requested: *args.get(2)?,
            result: 0,
        },
    })
}

pub struct ProcfsTracer {
    pids: BTreeSet<Pid>,
    events: u64,
}

impl ProcfsTracer {
    pub fn attach(pids: &[Pid]) -> anyhow::Result<ProcfsTracer> {
        for &pid in pids {
            std::fs::read_dir(format!("/proc/{pid}/fd")).map_err(|e| {
                anyhow::anyhow!("cannot read /proc/{pid}/fd: {e} (pg_trace must run as root)")
            })?;
        }
        Ok(ProcfsTracer {
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
        self.pids.insert(pid);
        Ok(())
    }

    fn remove_pid(&mut self, pid: Pid) {
        self.pids.remove(&pid);
    }

    fn poll(&mut self, out: &mut Vec<Event>) -> anyhow::Result<()> {
        let before = out.len();
        let mut gone = Vec::new();
        for &pid in &self.pids {
            if snapshot(pid, out).is_err() {
                gone.push(pid);
                continue;
            }
            if let Some(ev) = std::fs::read_to_string(format!("/proc/{pid}/syscall"))
                .ok()
                .and_then(|t| sampled_read(pid, &t))
            {
                out.push(ev);
            }
            if let Some((rchar, wchar, read_bytes, write_bytes)) =
                std::fs::read_to_string(format!("/proc/{pid}/io"))
                    .ok()
                    .and_then(|t| parse_proc_io(&t))
            {
                out.push(Event {
                    ts_ns: monotonic_ns(),
                    pid,
                    kind: EventKind::IoCounters {
                        rchar,
                        wchar,
                        read_bytes,
                        write_bytes,
                    },
                });
            }
        }
        for pid in gone {
            // Without a parent's wait status the exit code is unknown.
            self.pids.remove(&pid);
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

    #[test]
    fn syscall_sample() {
        let e = sampled_read(7, "17 0x17 0x7f00 0x2000 0x40002000 0x0 0x0 0x7ffd 0x7f12").unwrap();
        assert!(matches!(
            e.kind,
            EventKind::Read {
                fd: 0x17,
                offset: Some(0x40002000),
                requested: 0x2000,
                result: 0,
                ..
            }
        ));
        assert!(sampled_read(7, "running").is_none());
        assert!(sampled_read(7, "232 0x5 0x1").is_none());
    }

    #[test]
    fn proc_io() {
        let t = "rchar: 10\nwchar: 20\nsyscr: 1\nsyscw: 2\nread_bytes: 4096\nwrite_bytes: 0\ncancelled_write_bytes: 0\n";
        assert_eq!(parse_proc_io(t), Some((10, 20, 4096, 0)));
        assert_eq!(parse_proc_io("rchar: x"), None);
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
