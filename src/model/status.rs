//! The leader's status in the model: each status sample is kept with the time it has
//! been in its current syscall, feeds the base backup, and is judged (see [`super::stall`])
//! against the event stream: time since the last I/O, the file read last.

use super::stall::{verdict, Inputs, Verdict};
use crate::process::status::StatusSample;

/// The latest status of the traced process and what it means.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StatusView {
    pub sample: StatusSample,
    pub ts_ns: u64,
    /// Since when it has been in its current system call (same number as last sample).
    pub syscall_since_ns: Option<u64>,
    /// Seconds since the last read/write/send when the verdict was made.
    pub since_io_s: Option<f64>,
    pub verdict: Verdict,
}

impl super::Model {
    /// A status sample of the leader: keep it, feed a backup, judge.
    pub(crate) fn apply_status(&mut self, s: &StatusSample, ts: u64) {
        if s.pid != self.leader {
            return;
        }
        let syscall_since_ns = match (&self.status, s.kernel.syscall) {
            (Some(prev), Some(nr)) if prev.sample.kernel.syscall == Some(nr) => {
                prev.syscall_since_ns.or(Some(prev.ts_ns))
            }
            (_, Some(_)) => Some(ts),
            _ => None,
        };
        let has_progress = self
            .backup
            .get_or_insert_with(|| super::backup::BackupState::new(super::backup::Source::Inferred))
            .apply_sample(s);
        if !has_progress
            && self
                .backup
                .as_ref()
                .is_some_and(|b| b.source == super::backup::Source::Inferred)
            && !self.expect_backup
        {
            // Nothing says this process runs a backup.
            self.backup = None;
        }
        if !has_progress {
            let says_backup = s
                .title
                .as_deref()
                .is_some_and(|t| t.contains("sending backup"))
                || s.query
                    .as_deref()
                    .is_some_and(|q| q.trim_start().starts_with("BASE_BACKUP"));
            if let Some(b) = self.backup.as_mut() {
                if says_backup {
                    b.confirmed = true;
                } else if b.source == super::backup::Source::Inferred && !b.confirmed {
                    // Some other walsender work (logical decoding reads catalogs, say)
                    // looked like a backup: forget it.
                    *b = super::backup::BackupState::new(super::backup::Source::Inferred);
                }
            }
        }
        self.operation_sample(s, ts);
        self.status = Some(StatusView {
            sample: s.clone(),
            ts_ns: ts,
            syscall_since_ns,
            since_io_s: None,
            verdict: Verdict::Unknown,
        });
        self.judge(ts);
    }

    /// Bookkeeping every event needs: the time of the last I/O, backup inference, the
    /// verdict of a process that exited.
    pub(crate) fn status_after_event(&mut self, ev: &crate::trace::Event) {
        use crate::trace::EventKind;
        if ev.pid != self.leader {
            // Parallel workers read for the leader; io workers (PG18) for every backend,
            // so only their reads whose AIO handle is ours count.
            let ours = match &ev.kind {
                EventKind::Read { fd, result, .. } => {
                    *result > 0
                        && self
                            .files
                            .get(&(ev.pid, *fd))
                            .is_some_and(|f| !f.via_io_worker)
                }
                EventKind::IoWorkerRead { owner, result, .. } => {
                    *result > 0 && self.owner_is_ours(*owner)
                }
                _ => false,
            };
            if ours {
                self.last_io_ns = self.last_io_ns.max(ev.ts_ns);
            }
            return;
        }
        match &ev.kind {
            EventKind::Read { result, .. }
            | EventKind::Write { result, .. }
            | EventKind::Send { result, .. }
                if *result > 0 =>
            {
                self.last_io_ns = self.last_io_ns.max(ev.ts_ns)
            }
            _ => {}
        }
        if self.expect_backup && self.backup.is_none() {
            self.backup = Some(super::backup::BackupState::new(
                super::backup::Source::Inferred,
            ));
        }
        // Per event: the path is borrowed, not copied (files and backup are disjoint fields).
        if let Some(b) = self.backup.as_mut() {
            let fd_path = match &ev.kind {
                EventKind::Read { fd, .. }
                | EventKind::Write { fd, .. }
                | EventKind::Stat { fd: Some(fd), .. } => {
                    self.files.get(&(ev.pid, *fd)).map(|f| f.path.as_str())
                }
                _ => None,
            };
            b.apply_event(ev, fd_path);
        }
        if matches!(ev.kind, EventKind::Exit { .. }) {
            self.judge(ev.ts_ns);
        }
    }

    /// Recompute the verdict at `now`.
    pub fn judge(&mut self, now: u64) {
        // The verdict is the traced process's: its own file while it does I/O; a
        // follower's (a parallel worker sorting while the leader waits on it) only when
        // it does none, and then said to be the worker's.
        let leader = self.leader;
        let own_recent = self
            .files
            .values()
            .filter(|f| f.pid == leader && f.last_ns > 0)
            .max_by_key(|f| f.last_ns)
            .filter(|f| f.last_ns + super::stall::RECENT_IO_NS > now);
        let current = own_recent.or_else(|| self.current_file());
        let last_io_write = current.is_some_and(|f| f.last_op.is_some_and(|s| s.is_write()));
        // Relative to the data directory as pg_relation_filepath() prints it, whether the
        // fd was seen opened (relative) or found at attach (absolute, from /proc).
        let label = |f: &crate::model::FileEntry| {
            let path = f
                .named
                .relpath
                .as_deref()
                .unwrap_or(&f.path)
                .trim_start_matches("./");
            let mut l = match &f.named.relation {
                Some(r) => format!("{path} ({})", r.id.label),
                None => path.to_string(),
            };
            if f.pid != leader {
                let who = if f.via_parallel_worker {
                    "parallel worker"
                } else if f.via_io_worker {
                    "io worker"
                } else {
                    "pid"
                };
                l.push_str(&format!(", by {who} {}", f.pid));
            }
            l
        };
        let current_file = current.map(label);
        // An IO wait names its kind of file: DataFile* a relation, WAL* a WAL segment,
        // BufFile* a temp file; the file of that kind touched last that way is the one.
        let classes: &[&str] = match self
            .status
            .as_ref()
            .and_then(|v| v.sample.wait_event.as_deref())
        {
            Some(w) if w.starts_with("DataFile") => &["relation", "temp_relation"],
            Some(w) if w.starts_with("WAL") => &["wal"],
            Some(w) if w.starts_with("BufFile") => &["temp_file"],
            _ => &[],
        };
        let read_file = self.last_file(false, classes).map(label);
        let written_file = self.last_file(true, classes).map(label);
        let backup_phase = self.backup.as_ref().filter(|b| !b.ended).map(|b| b.phase);
        // A streaming backup also writes its manifest: what it streams is what it reads.
        let backup_file = self
            .backup
            .as_ref()
            .filter(|b| !b.ended && matches!(b.phase, 3 | 5))
            .and_then(|b| b.current_file.clone());
        let last_io_write = last_io_write && backup_file.is_none();
        let read_file = backup_file.clone().or(read_file);
        let current_file = backup_file.or(current_file);
        let exited = self.leader_exited();
        let since_io_ns = (self.last_io_ns > 0).then(|| now.saturating_sub(self.last_io_ns));
        let Some(view) = self.status.as_mut() else {
            return;
        };
        let s = &view.sample;
        let inputs = Inputs {
            sample: Some(s),
            exited,
            since_io_ns,
            current_file,
            last_io_write,
            read_file,
            written_file,
            syscall_for_s: view
                .syscall_since_ns
                .map(|t| now.saturating_sub(t) as f64 / 1e9),
            backup_phase,
            lock_relation: s.lock_relation.clone(),
            lock_holders: s.lock_holders.clone(),
            state_for_s: s.state_start_us.map(|t| s.age_s(t)),
        };
        view.verdict = verdict(&inputs);
        view.since_io_s = since_io_ns.map(|n| n as f64 / 1e9);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(wt: &str, w: &str, state: &str, k: char) -> StatusSample {
        let mut s = StatusSample {
            pid: 10,
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

    /// Names every path as itself; sizes unknown.
    struct PlainNamer;

    impl crate::model::Namer for PlainNamer {
        fn name(&mut self, path: &str) -> crate::model::Named {
            crate::model::Named {
                relpath: Some(path.into()),
                class: "other",
                label: path.into(),
                relation: None,
            }
        }
        fn relation_size(&mut self, _: &crate::model::RelInfo) -> Option<u64> {
            None
        }
        fn file_size(&mut self, _: &str) -> Option<u64> {
            None
        }
    }

    #[test]
    fn model_folds_samples_and_reads_into_verdicts() {
        use crate::model::Model;
        use crate::trace::{Event, EventKind, Syscall};
        let ev = |ts: u64, kind: EventKind| Event {
            ts_ns: ts,
            pid: 10,
            kind,
        };
        let mut m = Model::new(10, 1 << 30);
        let mut n = PlainNamer;
        let mut lock = sample("Lock", "relation", "active", 'S');
        lock.pid = 10;
        lock.lock_relation = Some("public.t".into());
        lock.lock_holders = vec![11];
        m.apply(
            &ev(
                1,
                EventKind::Status {
                    sample: Box::new(lock),
                },
            ),
            &mut n,
        );
        let v = &m.status.as_ref().unwrap().verdict;
        assert_eq!(
            v.to_string(),
            "waiting on a relation lock on public.t held by pid 11"
        );
        assert!(m.backup.is_none(), "a client backend runs no backup");
        // A read, then a sample with no wait: reading that file.
        let open = EventKind::Open {
            syscall: Syscall::Openat,
            dirfd: None,
            path: "base/5/1259".into(),
            flags: 0,
            fd: 7,
        };
        m.apply(&ev(2_000_000_000, open), &mut n);
        let read = EventKind::Read {
            syscall: Syscall::Pread64,
            fd: 7,
            offset: Some(0),
            requested: 8192,
            result: 8192,
        };
        m.apply(&ev(2_100_000_000, read), &mut n);
        let mut busy = sample("", "", "active", 'R');
        busy.pid = 10;
        m.apply(
            &ev(
                2_500_000_000,
                EventKind::Status {
                    sample: Box::new(busy.clone()),
                },
            ),
            &mut n,
        );
        assert_eq!(
            m.status.as_ref().unwrap().verdict,
            Verdict::Reading {
                file: Some("base/5/1259".into()),
                from_disk: false
            }
        );
        // Ten seconds later, still on CPU with no I/O.
        m.apply(
            &ev(
                12_500_000_000,
                EventKind::Status {
                    sample: Box::new(busy),
                },
            ),
            &mut n,
        );
        assert_eq!(m.status.as_ref().unwrap().verdict, Verdict::RunningOnCpu);
        m.apply(
            &ev(
                13_000_000_000,
                EventKind::Exit {
                    code: Some(0),
                    signal: None,
                },
            ),
            &mut n,
        );
        assert_eq!(m.status.as_ref().unwrap().verdict, Verdict::Exited);
    }

    #[test]
    fn a_walsender_reading_files_is_a_backup_only_when_something_says_so() {
        use crate::model::Model;
        use crate::trace::{Event, EventKind, Syscall};
        let run = |title: &str| {
            let mut m = Model::new(10, 1 << 30);
            m.expect_backup = true;
            let mut n = PlainNamer;
            let ev = |ts: u64, kind: EventKind| Event {
                ts_ns: ts,
                pid: 10,
                kind,
            };
            let open = EventKind::Open {
                syscall: Syscall::Openat,
                dirfd: None,
                path: "base/5/1259".into(),
                flags: 0,
                fd: 7,
            };
            m.apply(&ev(1, open), &mut n);
            let read = EventKind::Read {
                syscall: Syscall::Pread64,
                fd: 7,
                offset: Some(0),
                requested: 8192,
                result: 8192,
            };
            m.apply(&ev(2, read), &mut n);
            assert!(m.backup.as_ref().unwrap().started());
            let mut s = sample("", "", "active", 'S');
            s.title = Some(title.into());
            m.apply(
                &ev(
                    3,
                    EventKind::Status {
                        sample: Box::new(s),
                    },
                ),
                &mut n,
            );
            m.backup.as_ref().unwrap().started()
        };
        assert!(run(
            "postgres: walsender postgres [local] sending backup \"x\""
        ));
        assert!(!run("postgres: walsender repl [local] START_REPLICATION"));
    }
}
