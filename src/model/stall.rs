//! Why is it not moving? A verdict from the latest status sample (wait event, backend
//! state, kernel state, current syscall and how long it has been in it, socket send
//! queue) and the event stream (time since the last I/O, the file read last). Pure.

use crate::process::status::StatusSample;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Bytes queued on a socket beyond which an unmoving sender is waiting for its client.
const SEND_QUEUE_FULL: u64 = 64 * 1024;
/// I/O this recent counts as "reading now".
pub(super) const RECENT_IO_NS: u64 = 2_000_000_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Exited,
    /// SIGSTOP, or a debugger holds it.
    Stopped,
    /// Reading data files; `from_disk` when the kernel or the wait event says it waits for
    /// the device rather than copying from the page cache.
    Reading {
        file: Option<String>,
        from_disk: bool,
    },
    /// Writing files (a bulk load, a sort spilling to temp files...).
    Writing {
        file: Option<String>,
    },
    /// pg_basebackup --max-rate.
    Throttled,
    /// Its socket is full and the client is not reading.
    ClientNotReading {
        queued: Option<u64>,
        for_s: Option<f64>,
    },
    WaitingForCheckpoint,
    /// archive_command slow or failing.
    WaitingForWalArchive,
    WaitingOnLock {
        lock: String,
        relation: Option<String>,
        holders: Vec<i32>,
        /// True when `holders` are only the sessions with an open transaction in the same
        /// database, not read from the lock table.
        holders_guessed: bool,
    },
    IdleInTransaction {
        for_s: Option<f64>,
    },
    Idle,
    /// In pg_sleep; `between_reads_of` when it read that file in the last seconds (a query
    /// that paces itself, or sleeps per row, is still getting through its scan).
    Sleeping {
        between_reads_of: Option<String>,
    },
    RunningOnCpu,
    Waiting {
        wait_event_type: String,
        wait_event: String,
    },
    /// Blocked in a system call with nothing else to say.
    InSyscall {
        name: String,
        for_s: Option<f64>,
    },
    Unknown,
}

impl Verdict {
    /// A stable one-word name for scripts.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Exited => "exited",
            Verdict::Stopped => "stopped",
            Verdict::Reading { .. } => "reading",
            Verdict::Writing { .. } => "writing",
            Verdict::Throttled => "throttled",
            Verdict::ClientNotReading { .. } => "client_not_reading",
            Verdict::WaitingForCheckpoint => "waiting_for_checkpoint",
            Verdict::WaitingForWalArchive => "waiting_for_wal_archive",
            Verdict::WaitingOnLock { .. } => "waiting_on_lock",
            Verdict::IdleInTransaction { .. } => "idle_in_transaction",
            Verdict::Idle => "idle",
            Verdict::Sleeping { .. } => "sleeping",
            Verdict::RunningOnCpu => "running_on_cpu",
            Verdict::Waiting { .. } => "waiting",
            Verdict::InSyscall { .. } => "in_syscall",
            Verdict::Unknown => "unknown",
        }
    }
}

impl Verdict {
    /// Whether this is a stall worth a warning: not moving, for a reason the user may want
    /// to act on. Reading, writing, a self-paced scan's sleep between reads, running on
    /// CPU and idling are progress or rest, not stalls.
    pub fn is_stall(&self) -> bool {
        !matches!(
            self,
            Verdict::Reading { .. }
                | Verdict::Writing { .. }
                | Verdict::Sleeping {
                    between_reads_of: Some(_)
                }
                | Verdict::RunningOnCpu
                | Verdict::Idle
                | Verdict::Unknown
        )
    }

    /// Whether there is anything to say at all.
    pub fn is_known(&self) -> bool {
        !matches!(self, Verdict::Unknown)
    }
}

fn dur(s: Option<f64>) -> String {
    s.map(|s| format!(" for {}", crate::text::human_duration(s)))
        .unwrap_or_default()
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Exited => write!(f, "exited"),
            Verdict::Stopped => write!(f, "stopped (SIGSTOP or a debugger)"),
            Verdict::Reading { file, from_disk } => {
                write!(
                    f,
                    "{}",
                    if *from_disk {
                        "reading from disk"
                    } else {
                        "reading"
                    }
                )?;
                if let Some(file) = file {
                    write!(f, " {file}")?;
                }
                Ok(())
            }
            Verdict::Writing { file } => {
                write!(f, "writing")?;
                if let Some(file) = file {
                    write!(f, " {file}")?;
                }
                Ok(())
            }
            Verdict::Throttled => write!(f, "throttled by --max-rate"),
            Verdict::ClientNotReading { queued, for_s } => {
                write!(f, "blocked sending to a client that is not reading")?;
                if let Some(q) = queued {
                    write!(f, " ({} queued)", crate::text::human_bytes(*q))?;
                }
                write!(f, "{}", dur(*for_s))
            }
            Verdict::WaitingForCheckpoint => write!(f, "waiting for a checkpoint to finish"),
            Verdict::WaitingForWalArchive => {
                write!(
                    f,
                    "waiting for WAL archiving (archive_command slow or failing)"
                )
            }
            Verdict::WaitingOnLock {
                lock,
                relation,
                holders,
                holders_guessed,
            } => {
                write!(f, "waiting on a {lock} lock")?;
                if let Some(r) = relation {
                    write!(f, " on {r}")?;
                }
                let list = holders
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                match (holders.is_empty(), holders_guessed) {
                    (true, _) => write!(f, ", holder unknown"),
                    (false, false) => write!(f, " held by pid {list}"),
                    (false, true) => write!(
                        f,
                        ", holder unknown (open transactions in this database: pid {list})"
                    ),
                }
            }
            Verdict::IdleInTransaction { for_s } => {
                write!(f, "idle in transaction{}", dur(*for_s))
            }
            Verdict::Idle => write!(f, "idle, waiting for the client's next command"),
            Verdict::Sleeping { between_reads_of } => {
                write!(f, "sleeping (pg_sleep)")?;
                if let Some(file) = between_reads_of {
                    write!(f, " between reads of {file}")?;
                }
                Ok(())
            }
            Verdict::RunningOnCpu => write!(f, "running on CPU"),
            Verdict::Waiting {
                wait_event_type,
                wait_event,
            } => write!(f, "waiting: {wait_event_type} {wait_event}"),
            Verdict::InSyscall { name, for_s } => write!(f, "in {name}{}", dur(*for_s)),
            Verdict::Unknown => write!(f, "unknown"),
        }
    }
}

/// Everything the verdict looks at.
#[derive(Debug, Clone, Default)]
pub struct Inputs<'a> {
    pub sample: Option<&'a StatusSample>,
    pub exited: bool,
    /// Nanoseconds since the last read/write/send event, if any was seen.
    pub since_io_ns: Option<u64>,
    /// The file read or written last, named.
    pub current_file: Option<String>,
    /// Its last operation was a write.
    pub last_io_write: bool,
    /// The file read last, and the file written last: what an IO wait for a read, or a
    /// write, is about (the file touched last may be the other kind: a `CLUSTER` reads
    /// the old heap and writes the new one in turns).
    pub read_file: Option<String>,
    pub written_file: Option<String>,
    /// How long the process has been in its current system call.
    pub syscall_for_s: Option<f64>,
    /// pg_stat_progress_basebackup.phase number, from memory or inferred.
    pub backup_phase: Option<i64>,
    /// A relation named for a lock wait, when known.
    pub lock_relation: Option<String>,
    pub lock_holders: Vec<i32>,
    /// Seconds in the current backend state.
    pub state_for_s: Option<f64>,
}

/// The name of the call a stalled postgres sits in, or `syscall NR`.
pub fn syscall_name(nr: i64) -> String {
    u64::try_from(nr)
        .ok()
        .and_then(crate::process::proc::syscall_name)
        .map_or_else(|| format!("syscall {nr}"), str::to_string)
}

pub fn verdict(i: &Inputs<'_>) -> Verdict {
    if i.exited {
        return Verdict::Exited;
    }
    let s = i.sample;
    let kstate = s.and_then(|s| s.kernel.state);
    if matches!(kstate, Some('T' | 't')) {
        return Verdict::Stopped;
    }
    let wtype = s.and_then(|s| s.wait_event_type.as_deref());
    let wname = s.and_then(|s| s.wait_event.as_deref()).unwrap_or("");
    let recent_io = i.since_io_ns.is_some_and(|n| n <= RECENT_IO_NS);
    let queued = s.and_then(|s| s.kernel.send_queue);
    let sending_call = s.and_then(|s| s.kernel.syscall).is_some_and(|n| {
        matches!(
            n,
            libc::SYS_write
                | libc::SYS_poll
                | libc::SYS_sendto
                | libc::SYS_epoll_wait
                | libc::SYS_epoll_pwait
                | libc::SYS_select
        )
    });
    match (wtype, wname) {
        (Some("IPC"), "CheckpointDone" | "CheckpointStart") => {
            return Verdict::WaitingForCheckpoint
        }
        (Some("IPC"), "BackupWaitWalArchive") => return Verdict::WaitingForWalArchive,
        (Some("Timeout"), "BaseBackupThrottle") => return Verdict::Throttled,
        (Some("Client"), "ClientWrite") => {
            return Verdict::ClientNotReading {
                queued,
                for_s: i.syscall_for_s,
            }
        }
        (Some("Lock"), lock) => {
            return Verdict::WaitingOnLock {
                lock: lock.to_string(),
                relation: i.lock_relation.clone(),
                holders: if i.lock_holders.is_empty() {
                    s.map(|s| s.open_xacts.clone()).unwrap_or_default()
                } else {
                    i.lock_holders.clone()
                },
                holders_guessed: i.lock_holders.is_empty(),
            }
        }
        // Between statements: the I/O of the last one, a moment ago, is over.
        (Some("Client"), "ClientRead") => match s.and_then(|s| s.state.as_deref()) {
            Some("idle") => return Verdict::Idle,
            Some("idle in transaction" | "idle in transaction (aborted)") => {
                return Verdict::IdleInTransaction {
                    for_s: i.state_for_s,
                }
            }
            _ => {}
        },
        // An auxiliary process (or a walsender) idle in its main loop, waiting for work:
        // the log line it wrote a moment ago is not what it is doing.
        (Some("Activity"), event) if i.backup_phase.is_none() => {
            return Verdict::Waiting {
                wait_event_type: "Activity".into(),
                wait_event: event.to_string(),
            }
        }
        (Some("Timeout"), "PgSleep") => {
            return Verdict::Sleeping {
                between_reads_of: i
                    .current_file
                    .clone()
                    .filter(|_| recent_io && !i.last_io_write),
            }
        }
        _ => {}
    }
    // The phase a backup is in says more than an unnamed wait event.
    match i.backup_phase {
        Some(1) => return Verdict::WaitingForCheckpoint,
        Some(4) => return Verdict::WaitingForWalArchive,
        _ => {}
    }
    if wtype == Some("IO") {
        // IO events are named for what they do: DataFileRead, BaseBackupRead, WalRead...;
        // writes, extends, syncs and flushes are writing; anything else is just a wait.
        let w = wname;
        if w.contains("Read") || w.contains("Prefetch") {
            return Verdict::Reading {
                file: i.read_file.clone(),
                from_disk: true,
            };
        }
        if [
            "Write", "Extend", "Sync", "Flush", "Truncate", "Fill", "Zero", "Init",
        ]
        .iter()
        .any(|k| w.contains(k))
        {
            return Verdict::Writing {
                file: i.written_file.clone(),
            };
        }
        return Verdict::Waiting {
            wait_event_type: "IO".into(),
            wait_event: w.to_string(),
        };
    }
    // Without a wait event (or without memory): a full socket and a sender blocked in a
    // send path, with no I/O for a while.
    if queued.is_some_and(|q| q >= SEND_QUEUE_FULL) && sending_call && !recent_io {
        return Verdict::ClientNotReading {
            queued,
            for_s: i.syscall_for_s,
        };
    }
    if recent_io && i.current_file.is_some() && i.last_io_write {
        return Verdict::Writing {
            file: i.current_file.clone(),
        };
    }
    if recent_io && i.current_file.is_some() {
        return Verdict::Reading {
            file: i.current_file.clone(),
            from_disk: kstate == Some('D'),
        };
    }
    if kstate == Some('D') {
        return Verdict::Reading {
            file: i.current_file.clone(),
            from_disk: true,
        };
    }
    match s.and_then(|s| s.state.as_deref()) {
        Some("idle in transaction" | "idle in transaction (aborted)") => {
            return Verdict::IdleInTransaction {
                for_s: i.state_for_s,
            }
        }
        Some("idle") => return Verdict::Idle,
        _ => {}
    }
    if kstate == Some('R') {
        return Verdict::RunningOnCpu;
    }
    if let (Some(t), false) = (wtype, wname.is_empty()) {
        return Verdict::Waiting {
            wait_event_type: t.to_string(),
            wait_event: wname.to_string(),
        };
    }
    if let Some(nr) = s.and_then(|s| s.kernel.syscall) {
        return Verdict::InSyscall {
            name: syscall_name(nr),
            for_s: i.syscall_for_s,
        };
    }
    Verdict::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(wt: &str, w: &str, state: &str, k: char) -> StatusSample {
        let mut s = StatusSample {
            state: (!state.is_empty()).then(|| state.to_string()),
            ..Default::default()
        };
        if !wt.is_empty() {
            s.wait_event_type = Some(wt.into());
            s.wait_event = Some(w.into());
        }
        s.kernel.state = Some(k);
        s
    }

    #[test]
    fn verdicts() {
        let v = |s: &StatusSample, io: Option<u64>| {
            verdict(&Inputs {
                sample: Some(s),
                since_io_ns: io,
                current_file: Some("base/5/16384 (public.t)".into()),
                ..Default::default()
            })
        };
        assert_eq!(
            v(
                &sample("Timeout", "BaseBackupThrottle", "active", 'S'),
                None
            ),
            Verdict::Throttled
        );
        assert_eq!(
            v(&sample("Timeout", "PgSleep", "active", 'S'), None),
            Verdict::Sleeping {
                between_reads_of: None
            }
        );
        let sleepy = sample("Timeout", "PgSleep", "active", 'S');
        let paced = verdict(&Inputs {
            sample: Some(&sleepy),
            since_io_ns: Some(1_000_000),
            current_file: Some("base/5/16384 (sales.orders)".into()),
            ..Default::default()
        });
        assert_eq!(
            paced.to_string(),
            "sleeping (pg_sleep) between reads of base/5/16384 (sales.orders)"
        );
        assert!(matches!(
            v(&sample("Lock", "relation", "active", 'S'), None),
            Verdict::WaitingOnLock { .. }
        ));
        assert!(matches!(
            v(&sample("", "", "active", 'R'), Some(1000)),
            Verdict::Reading {
                from_disk: false,
                ..
            }
        ));
        assert_eq!(
            v(&sample("", "", "active", 'R'), None),
            Verdict::RunningOnCpu
        );
        assert_eq!(v(&sample("", "", "active", 'T'), None), Verdict::Stopped);
        assert_eq!(
            v(&sample("Client", "ClientRead", "idle", 'S'), Some(1000)),
            Verdict::Idle,
            "a backend whose query ended a moment ago"
        );
        // A checkpointer back in its main loop a second after writing its log line.
        assert_eq!(
            v(&sample("Activity", "CheckpointerMain", "", 'S'), Some(1000)).to_string(),
            "waiting: Activity CheckpointerMain"
        );
        assert!(matches!(
            v(
                &sample("Client", "ClientRead", "idle in transaction", 'S'),
                None
            ),
            Verdict::IdleInTransaction { .. }
        ));
        let mut s = sample("", "", "", 'S');
        s.kernel.send_queue = Some(1 << 20);
        s.kernel.syscall = Some(libc::SYS_epoll_wait);
        assert!(matches!(v(&s, None), Verdict::ClientNotReading { .. }));
        assert_eq!(
            verdict(&Inputs {
                backup_phase: Some(1),
                ..Default::default()
            }),
            Verdict::WaitingForCheckpoint
        );
        assert_eq!(verdict(&Inputs::default()), Verdict::Unknown);
        // A CHECKPOINT (or CREATE DATABASE) waiting for the checkpointer.
        for w in ["CheckpointDone", "CheckpointStart"] {
            assert_eq!(
                v(&sample("IPC", w, "active", 'S'), None),
                Verdict::WaitingForCheckpoint
            );
        }
        // IO waits: reads read, writes and syncs write, the rest is a wait.
        assert!(matches!(
            v(&sample("IO", "DataFileRead", "active", 'D'), None),
            Verdict::Reading {
                from_disk: true,
                ..
            }
        ));
        for w in ["WALSync", "WALWrite", "DataFileExtend", "BufFileWrite"] {
            assert!(
                matches!(
                    v(&sample("IO", w, "active", 'D'), None),
                    Verdict::Writing { .. }
                ),
                "{w}"
            );
        }
        assert!(matches!(
            v(&sample("IO", "IO #99", "active", 'S'), None),
            Verdict::Waiting { .. }
        ));
        // Reading one file and writing another in turns (a CLUSTER): each wait names the
        // file of its kind, not the one touched last.
        let (old_heap, new_heap) = ("base/5/16384 (public.t)", "base/5/16391 (new heap)");
        for (w, want) in [
            (
                "DataFileRead",
                Verdict::Reading {
                    file: Some(old_heap.into()),
                    from_disk: true,
                },
            ),
            (
                "DataFileExtend",
                Verdict::Writing {
                    file: Some(new_heap.into()),
                },
            ),
        ] {
            let s = sample("IO", w, "active", 'D');
            let got = verdict(&Inputs {
                sample: Some(&s),
                since_io_ns: Some(1000),
                current_file: Some(new_heap.into()),
                last_io_write: true,
                read_file: Some(old_heap.into()),
                written_file: Some(new_heap.into()),
                ..Default::default()
            });
            assert_eq!(got, want, "{w}");
        }
        let busy = sample("", "", "active", 'R');
        assert!(matches!(
            verdict(&Inputs {
                sample: Some(&busy),
                since_io_ns: Some(1),
                current_file: Some("base/pgsql_tmp/pgsql_tmp1.0".into()),
                last_io_write: true,
                ..Default::default()
            }),
            Verdict::Writing { .. }
        ));
        assert!(Verdict::WaitingOnLock {
            lock: "relation".into(),
            relation: Some("public.t".into()),
            holders: vec![42],
            holders_guessed: false
        }
        .to_string()
        .contains("held by pid 42"));
    }
}
