//! Lines decided once and drawn by every view: a base backup's progress and the `-d`
//! syscall line. The TUI and line mode both take them from here, so the two never
//! disagree on what is said or in which order.

use super::backup::BackupState;
use super::{FileEntry, Model};
use crate::pgdata::relfile::Fork;
use crate::text::{human_bytes, human_duration};
use crate::trace::{Event, EventKind};

/// A base backup's progress, the parts every view shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BackupLine {
    /// `memory` (progress counters) or `inferred` (from the syscalls).
    #[serde(with = "crate::model::sstr")]
    pub source: crate::model::sstr::Static,
    pub phase: String,
    pub streamed: u64,
    pub total: Option<u64>,
    pub percent: Option<f64>,
    /// Bytes per second; None before anything moved.
    pub rate_bps: Option<u64>,
    pub eta_s: Option<f64>,
    /// (1-based tablespace being streamed, tablespaces in all).
    pub tablespace: Option<(u64, u64)>,
    pub file: Option<String>,
    /// Copier mode: (files done, files to copy).
    pub files: Option<(u64, u64)>,
    /// Copier mode: the copier's name, and what holds it back.
    pub copier: Option<String>,
    #[serde(with = "crate::model::sstr::opt")]
    pub limiter: Option<crate::model::sstr::Static>,
    /// A low-level backup's server side: `server: start 0/2000028, label "x" (inferred), …`.
    pub server: Option<String>,
    /// Copier mode, more than one tablespace: `pg_tblspc/16400 4.0 MiB of 8.0 MiB` each.
    pub per_tablespace: Vec<String>,
}

impl BackupLine {
    pub fn of(b: &BackupState) -> BackupLine {
        BackupLine {
            source: b.source.name(),
            phase: b.phase_name(),
            streamed: b.streamed,
            total: b.total(),
            percent: b.percent(),
            rate_bps: (b.rate_bps > 0.0).then_some(b.rate_bps as u64),
            eta_s: b.eta_s(),
            tablespace: match (b.tablespaces_total, b.tablespaces_streamed) {
                (Some(t), Some(s)) => Some(((s + 1).min(t), t)),
                _ => None,
            },
            file: b.current_file.clone(),
            files: b.files_done.zip(b.files_total),
            copier: b.copier.clone(),
            limiter: b.limiter.map(|l| l.words()),
            server: b
                .server_backup
                .as_ref()
                .and_then(|s| s.details.clone())
                .filter(|d| !d.is_empty())
                .map(|d| format!("server: {d}")),
            per_tablespace: if b.per_tablespace.len() > 1 {
                b.per_tablespace
                    .iter()
                    .map(|t| {
                        format!(
                            "{} {} of {}",
                            if t.key.is_empty() {
                                "data directory"
                            } else {
                                &t.key
                            },
                            human_bytes(t.bytes_done),
                            human_bytes(t.bytes_total)
                        )
                    })
                    .collect()
            } else {
                Vec::new()
            },
        }
    }

    /// `, 120 of 980 files, limited by disk` (copier mode).
    fn copier_parts(&self) -> String {
        let mut l = String::new();
        if let Some((d, t)) = self.files {
            l.push_str(&format!(", {d} of {t} files"));
        }
        if let Some(w) = self.limiter {
            l.push_str(&format!(", limited by {w}"));
        }
        l
    }

    /// `backup` or `tar backup`.
    fn what(&self) -> String {
        match &self.copier {
            Some(c) => format!("{c} backup"),
            None => "backup".to_string(),
        }
    }

    fn amount(&self) -> String {
        self.amount_saying(human_bytes(self.streamed))
    }

    /// `6.0 MiB streamed of 64.0 MiB (9.4%)` when `streamed` says so.
    fn amount_saying(&self, streamed: String) -> String {
        let mut l = streamed;
        if let Some(t) = self.total {
            l.push_str(&format!(" of {}", human_bytes(t)));
        }
        if let Some(p) = self.percent {
            l.push_str(&format!(" ({p:.1}%)"));
        }
        l
    }

    fn rate(&self) -> String {
        self.rate_bps
            .map(|r| format!(", {}/s", human_bytes(r)))
            .unwrap_or_default()
    }

    fn eta(&self) -> String {
        self.eta_s
            .map(|e| format!(", ETA {}", human_duration(e)))
            .unwrap_or_default()
    }

    fn tablespace(&self) -> String {
        self.tablespace
            .map(|(n, t)| format!(", tablespace {n} of {t}"))
            .unwrap_or_default()
    }

    /// One line for a narrow screen, most important first (it is cut at the edge):
    /// phase, bytes and percent, rate, ETA, tablespace, file.
    pub fn compact(&self) -> String {
        let mut l = format!("{} {}: {}", self.what(), self.phase, self.amount());
        l.push_str(&self.rate());
        l.push_str(&self.eta());
        l.push_str(&self.copier_parts());
        l.push_str(&self.tablespace());
        if let Some(f) = &self.file {
            l.push_str(&format!(", {f}"));
        }
        if let Some(s) = &self.server {
            l.push_str(&format!("; {s}"));
        }
        l
    }

    /// Line mode's line: where the numbers come from, then everything.
    pub fn full(&self) -> String {
        let mut l = format!(
            "{} ({}): {}, {}",
            self.what(),
            self.source,
            self.phase,
            self.amount_saying(format!(
                "{} {}",
                human_bytes(self.streamed),
                if self.copier.is_some() {
                    "read"
                } else {
                    "streamed"
                }
            ))
        );
        l.push_str(&self.tablespace());
        l.push_str(&self.rate());
        l.push_str(&self.eta());
        l.push_str(&self.copier_parts());
        if !self.per_tablespace.is_empty() {
            l.push_str(&format!(" ({})", self.per_tablespace.join(", ")));
        }
        if let Some(f) = &self.file {
            l.push_str(&format!(", file {f}"));
        }
        if let Some(s) = &self.server {
            l.push_str(&format!("; {s}"));
        }
        l
    }
}

/// `sales.orders.3`, `sales.orders_fsm`: the object with its fork and segment suffixes.
pub fn file_object(f: &FileEntry) -> String {
    match &f.named.relation {
        Some(r) => {
            let mut s = r.id.label.clone();
            if r.fork != Fork::Main {
                s.push('_');
                s.push_str(r.fork.as_str());
            }
            if r.segment > 0 {
                s.push_str(&format!(".{}", r.segment));
            }
            s
        }
        None => f.named.label.clone(),
    }
}

/// One decoded I/O syscall of `-d`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyscallLine {
    #[serde(with = "crate::model::sstr")]
    pub name: crate::model::sstr::Static,
    pub fd: i32,
    /// `pread64(fd=23 → sales.orders.3, 8192 @ 1073733632) = 8192`
    pub text: String,
    pub offset: Option<u64>,
    pub bytes: Option<u64>,
    pub result: Option<i64>,
}

/// The `-d` line of an open, close, read, write or seek, its fd named; None for other
/// events (they are shown as their event record).
pub fn syscall_line(model: &Model, ev: &Event) -> Option<SyscallLine> {
    let obj = |fd: i32| {
        model
            .files
            .get(&(ev.pid, fd))
            .map(file_object)
            .unwrap_or_else(|| "?".into())
    };
    Some(match &ev.kind {
        EventKind::Open {
            syscall,
            path,
            fd,
            flags,
            ..
        } => SyscallLine {
            name: syscall.name(),
            fd: *fd,
            text: format!(
                "{}(\"{path}\" → {}, flags={flags:#o}) = {fd}",
                syscall.name(),
                obj(*fd)
            ),
            offset: None,
            bytes: None,
            result: Some(i64::from(*fd)),
        },
        EventKind::Close { fd } => SyscallLine {
            name: "close",
            fd: *fd,
            text: format!("close(fd={fd} → {})", obj(*fd)),
            offset: None,
            bytes: None,
            result: None,
        },
        EventKind::Read {
            syscall,
            fd,
            offset,
            requested,
            result,
        }
        | EventKind::IoWorkerRead {
            syscall,
            fd,
            offset,
            requested,
            result,
            ..
        }
        | EventKind::Write {
            syscall,
            fd,
            offset,
            requested,
            result,
        } => {
            let at = offset.map(|o| format!(" @ {o}")).unwrap_or_default();
            SyscallLine {
                name: syscall.name(),
                fd: *fd,
                text: format!(
                    "{}(fd={fd} → {}, {requested}{at}) = {result}",
                    syscall.name(),
                    obj(*fd)
                ),
                offset: *offset,
                bytes: Some(*requested),
                result: Some(*result),
            }
        }
        EventKind::Seek {
            fd,
            offset,
            whence,
            result,
        } => {
            let whence = match *whence {
                0 => "SEEK_SET",
                1 => "SEEK_CUR",
                2 => "SEEK_END",
                _ => "?",
            };
            SyscallLine {
                name: "lseek",
                fd: *fd,
                text: format!(
                    "lseek(fd={fd} → {}, {offset}, {whence}) = {result}",
                    obj(*fd)
                ),
                offset: u64::try_from(*offset).ok(),
                bytes: None,
                result: Some(*result),
            }
        }
        _ => return None,
    })
}

/// Whether `-d` shows this event at this moment: a close before it is applied (its fd
/// still has a name), everything else after (an open shows what it opened). File-state
/// and status samples are not syscalls (a live session samples status outside the
/// tracer; a replay gets them from the recording, and shows them no more than live).
pub fn shows_syscall(ev: &Event, applied: bool) -> bool {
    let is_close = matches!(ev.kind, EventKind::Close { .. });
    let sample = matches!(
        ev.kind,
        EventKind::FileState { .. }
            | EventKind::Status { .. }
            | EventKind::SchedTimes { .. }
            | EventKind::IoLatency { .. }
            | EventKind::WaitTransition { .. }
    );
    !sample && is_close != applied
}

/// The `-d` text of any event without its timestamp: `PID pread64(...) = 8192`, or for
/// events that are not file syscalls (stat, send, exit...) `PID {event as JSON}`.
pub fn syscall_text(model: &Model, ev: &Event) -> String {
    match syscall_line(model, ev) {
        Some(l) => format!("{} {}", ev.pid, l.text),
        None => {
            let v = serde_json::to_value(&ev.kind).unwrap_or(serde_json::Value::Null);
            format!("{} {v}", ev.pid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::backup::Source;

    #[test]
    fn the_two_backup_lines_share_their_parts() {
        let mut b = BackupState::new(Source::Memory);
        b.phase = 3;
        b.streamed = 3 << 20;
        b.server_total = Some(12 << 20);
        b.rate_bps = 1048576.0;
        b.phase_rate_bps = Some(1048576.0);
        b.tablespaces_total = Some(2);
        b.tablespaces_streamed = Some(0);
        b.current_file = Some("base/5/1259".into());
        let l = BackupLine::of(&b);
        assert_eq!(
            l.compact(),
            "backup streaming database files: 3.0 MiB of 12.0 MiB (25.0%), 1.0 MiB/s, ETA 9s, tablespace 1 of 2, base/5/1259"
        );
        assert_eq!(
            l.full(),
            "backup (memory): streaming database files, 3.0 MiB streamed of 12.0 MiB (25.0%), tablespace 1 of 2, 1.0 MiB/s, ETA 9s, file base/5/1259"
        );
    }

    #[test]
    fn a_copier_line_says_files_and_limiter() {
        use crate::model::copier::{Limiter, TablespaceProgress};
        let mut b = BackupState::copier("tar");
        b.streamed = 3 << 20;
        b.walked_total = Some(12 << 20);
        b.rate_bps = 1048576.0;
        b.phase_rate_bps = Some(1048576.0);
        b.files_done = Some(120);
        b.files_total = Some(980);
        b.limiter = Some(Limiter::Pipe);
        b.current_file = Some("base/5/16384".into());
        b.per_tablespace = vec![
            TablespaceProgress {
                key: String::new(),
                bytes_total: 8 << 20,
                bytes_done: 3 << 20,
                ..TablespaceProgress::default()
            },
            TablespaceProgress {
                key: "pg_tblspc/16400".into(),
                bytes_total: 4 << 20,
                ..TablespaceProgress::default()
            },
        ];
        let l = BackupLine::of(&b);
        assert_eq!(
            l.compact(),
            "tar backup copying database files: 3.0 MiB of 12.0 MiB (25.0%), 1.0 MiB/s, ETA 9s, 120 of 980 files, limited by the pipe it writes to (its reader is not keeping up), base/5/16384"
        );
        assert_eq!(
            l.full(),
            "tar backup (files): copying database files, 3.0 MiB read of 12.0 MiB (25.0%), 1.0 MiB/s, ETA 9s, 120 of 980 files, limited by the pipe it writes to (its reader is not keeping up) (data directory 3.0 MiB of 8.0 MiB, pg_tblspc/16400 0 B of 4.0 MiB), file base/5/16384"
        );
    }
}
