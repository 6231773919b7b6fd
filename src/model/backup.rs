//! A base backup's phase and progress: exact from the walsender's progress counters in
//! shared memory (13+), or inferred from its system calls (12, or `--no-memory`):
//! a directory walk without reads is the size estimate, reads of data files are the
//! streaming, polling `pg_wal/archive_status` is the wait for archiving, reads of WAL
//! segments are the WAL transfer (basebackup.c: the WAL is sent last). Without a server estimate
//! (`--no-estimate-size`) the total is our own walk of the data directory.

use crate::process::progress::BASEBACKUP_PHASES;
use crate::process::status::StatusSample;
use crate::trace::{Event, EventKind};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Memory,
    Inferred,
    /// Copier mode: the bytes a copier read of the files our walk says a backup copies.
    Files,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Memory => "memory",
            Source::Inferred => "inferred",
            Source::Files => "files",
        }
    }
}

/// How the backup is taken: a walsender streaming it (`pg_basebackup`), or the low-level
/// API (`pg_backup_start`, any tool copies the files, `pg_backup_stop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    Basebackup,
    LowLevel,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Basebackup => "basebackup",
            Method::LowLevel => "low-level",
        }
    }
}

/// The server's side of a running low-level backup, as far as it could be read: the
/// `server_backup` of the `backup` record. Fed by [`crate::model::Model::server_backup`].
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServerBackupView {
    /// `0/2000028`.
    pub start_lsn: Option<String>,
    pub label: Option<String>,
    /// Unix seconds.
    pub started_at: Option<f64>,
    /// The session that started it.
    pub pid: Option<i32>,
    /// Its phase as the server sees it (`process::server_backup::PHASE_*`).
    pub phase: Option<String>,
    /// `start 0/2000028, label "nightly" (inferred), session 4242 (inferred), since …`.
    pub details: Option<String>,
}

/// Phases of a low-level backup, in the spirit of `pg_stat_progress_basebackup`'s, by
/// the same numbers where they mean the same.
pub const LOW_LEVEL_PHASES: &[(i64, &str)] = &[
    (0, "initializing"),
    (1, "waiting for checkpoint to finish"),
    (3, "copying database files"),
    (4, "waiting for wal archiving to finish"),
    (6, "done"),
];

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BackupState {
    pub source: Source,
    pub method: Method,
    /// Copier mode: the copier's process name.
    pub copier: Option<String>,
    /// Copier mode: files read to their walked size, and files to copy.
    pub files_done: Option<u64>,
    pub files_total: Option<u64>,
    /// Copier mode: files read past their walked size (they grew during the copy).
    pub files_grew: u64,
    /// Copier mode: what holds the copier back (`model::copier::Limiter`).
    pub limiter: Option<super::copier::Limiter>,
    /// Copier mode: progress per tablespace (the data directory first).
    pub per_tablespace: Vec<super::copier::TablespaceProgress>,
    /// Copier mode: its processes followed (pid, name).
    pub copier_processes: Vec<(crate::trace::Pid, String)>,
    /// The server's side of a low-level backup (see `Model::server_backup`).
    pub server_backup: Option<ServerBackupView>,
    /// pg_stat_progress_basebackup.phase as a number (0..=5).
    pub phase: i64,
    /// The server's estimate (`backup_total`); None with --no-estimate-size.
    pub server_total: Option<u64>,
    /// Our own walk of the data directory, used when the server has no estimate.
    pub walked_total: Option<u64>,
    pub streamed: u64,
    pub tablespaces_total: Option<u64>,
    pub tablespaces_streamed: Option<u64>,
    /// Bytes per second over the last interval (smoothed): the throughput shown.
    pub rate_bps: f64,
    /// The current phase as first seen: (phase, since, streamed then). The ETA's rate is
    /// the phase's since then: a throttled backup streams in bursts, and an interval's
    /// rate swings around the limit (its ETA missed the end by a third to a half).
    phase_clock: Option<(i64, u64, u64)>,
    /// Bytes per second since `phase_clock`, once the phase has run `MIN_PHASE_NS`.
    pub phase_rate_bps: Option<f64>,
    /// Phases in the order they were seen.
    pub phases_seen: Vec<i64>,
    /// The backup ended (progress reporting stopped, or the manifest was finished).
    pub ended: bool,
    /// The file being streamed (inferred mode: the data file read last).
    pub current_file: Option<String>,
    /// Inferred mode: something beyond the syscalls says a backup runs (the title, the
    /// command, the backup history file). Without it the next sample forgets the state.
    pub confirmed: bool,
    last_streamed: u64,
    last_tick_ns: Option<u64>,
    stats_without_reads: u64,
    /// Tablespaces in the order their files were first read ("": the data directory).
    tablespaces_seen: Vec<String>,
}

/// A phase's words for a backup taken by `method`.
pub fn phase_name_of(method: Method, phase: i64) -> String {
    match method {
        Method::Basebackup => phase_name(phase),
        Method::LowLevel => LOW_LEVEL_PHASES
            .iter()
            .find(|(n, _)| *n == phase)
            .map(|(_, s)| s.to_string())
            .unwrap_or_else(|| phase.to_string()),
    }
}

pub fn phase_name(phase: i64) -> String {
    usize::try_from(phase)
        .ok()
        .and_then(|i| BASEBACKUP_PHASES.get(i))
        .map(|s| s.to_string())
        .unwrap_or_else(|| phase.to_string())
}

impl BackupState {
    pub fn new(source: Source) -> BackupState {
        BackupState {
            source,
            method: Method::Basebackup,
            copier: None,
            files_done: None,
            files_total: None,
            files_grew: 0,
            limiter: None,
            per_tablespace: Vec::new(),
            copier_processes: Vec::new(),
            server_backup: None,
            phase: 0,
            server_total: None,
            walked_total: None,
            streamed: 0,
            tablespaces_total: None,
            tablespaces_streamed: None,
            rate_bps: 0.0,
            phase_clock: None,
            phase_rate_bps: None,
            phases_seen: vec![0],
            ended: false,
            current_file: None,
            confirmed: false,
            last_streamed: 0,
            last_tick_ns: None,
            stats_without_reads: 0,
            tablespaces_seen: Vec::new(),
        }
    }

    /// A low-level backup copied by `copier` (copier mode), in its copying phase.
    pub fn copier(copier: &str) -> BackupState {
        let mut b = BackupState::new(Source::Files);
        b.method = Method::LowLevel;
        b.copier = Some(copier.to_string());
        b.confirmed = true;
        b.enter(3);
        b
    }

    pub fn phase_name(&self) -> String {
        phase_name_of(self.method, self.phase)
    }

    /// Worth showing: read from memory, or some phase beyond "initializing" inferred (a
    /// walsender is followed from attach in case it starts a backup), or a copier.
    pub fn started(&self) -> bool {
        self.source != Source::Inferred || self.phases_seen.len() > 1
    }

    /// A low-level backup's phase from the server's side, by its words: the copier's
    /// copying phase gives way to the server's start and stop phases and its end.
    pub fn low_level_phase(&mut self, words: &str) {
        if let Some(&(n, _)) = LOW_LEVEL_PHASES.iter().find(|(_, w)| *w == words) {
            self.enter(n);
        }
    }

    fn enter(&mut self, phase: i64) {
        if phase != self.phase {
            self.phase = phase;
            self.phases_seen.push(phase);
        }
    }

    /// A memory sample of the walsender. Returns false when it carries no backup progress.
    pub fn apply_sample(&mut self, s: &StatusSample) -> bool {
        if s.progress_command.as_deref() != Some("basebackup") || s.progress_params.len() < 5 {
            // Progress reporting ends with the backup.
            if self.source == Source::Memory && self.phase >= 3 {
                self.ended = true;
            }
            return false;
        }
        if self.source != Source::Memory || self.ended {
            // A new backup on the same connection, or memory took over from inference.
            *self = BackupState::new(Source::Memory);
        }
        let p = &s.progress_params;
        self.enter(p[0]);
        self.server_total = u64::try_from(p[1]).ok();
        self.streamed = u64::try_from(p[2]).unwrap_or(0);
        self.tablespaces_total = u64::try_from(p[3]).ok();
        self.tablespaces_streamed = u64::try_from(p[4]).ok();
        true
    }

    /// One event of the walsender, with the path of the fd it touched when known.
    pub fn apply_event(&mut self, ev: &Event, fd_path: Option<&str>) {
        // A copier's progress is folded by `model::copier`, not guessed from its calls.
        if self.source == Source::Files {
            return;
        }
        match &ev.kind {
            // The manifest's temporary file goes last: the end, whatever the source.
            EventKind::Unlink { path, .. } if path.contains("pgsql_tmp") && self.phase >= 3 => {
                self.ended = true;
                return;
            }
            // do_pg_backup_stop writes the backup history file once the data files are
            // sent: the server is in phase 4 from here, whatever our last sample said.
            EventKind::Open { path, fd, .. } if *fd >= 0 && is_backup_history(path) => {
                self.confirmed = true;
                if self.phase == 3 || (self.source == Source::Inferred && self.phase < 4) {
                    self.enter(4);
                }
                return;
            }
            EventKind::Exit { .. } if self.source == Source::Memory => {
                if self.phase >= 4 {
                    self.ended = true;
                }
                return;
            }
            // Whatever the source, reads name the file being streamed.
            EventKind::Read { result, .. } if *result > 0 => {
                if let Some(rel) = fd_path.map(relative).filter(|r| is_streamed_file(r)) {
                    // Once per file, not per 32 KiB read.
                    if self.current_file.as_deref() != Some(rel) {
                        self.current_file = Some(rel.to_string());
                    }
                    let spc = tablespace_of(rel);
                    if !is_wal_segment(rel)
                        && self.tablespaces_seen.last().map(String::as_str) != Some(spc)
                    {
                        self.tablespaces_seen.push(spc.to_string());
                    }
                }
            }
            _ => {}
        }
        if self.source != Source::Inferred {
            return;
        }
        match &ev.kind {
            // The backup manifest's temporary file, then the backup-start WAL record: the
            // backup has begun and waits for its checkpoint next.
            EventKind::Open { path, fd, .. }
                if *fd >= 0 && self.phase == 0 && path.contains("pgsql_tmp") =>
            {
                self.enter(1);
            }
            EventKind::Write { result, .. }
                if *result > 0 && self.phase == 0 && fd_path.is_some_and(is_wal_segment) =>
            {
                self.enter(1);
            }
            EventKind::Stat { path, .. } => {
                let p = path.as_deref().or(fd_path).unwrap_or("");
                if p.contains("archive_status/") {
                    if self.phase >= 3 && self.phase < 4 {
                        self.enter(4);
                    }
                } else if self.phase < 3 {
                    self.stats_without_reads += 1;
                    // A walk of more than a handful of entries with no reads: estimating.
                    if self.stats_without_reads > 16 {
                        self.enter(2);
                    }
                }
            }
            EventKind::Read { result, .. } if *result > 0 => {
                let Some(p) = fd_path else { return };
                let rel = relative(p);
                if !is_streamed_file(rel) {
                    return;
                }
                if is_wal_segment(rel) {
                    if self.phase >= 3 {
                        self.enter(5);
                        self.streamed += *result as u64;
                    }
                    return;
                }
                if self.phase < 3 {
                    self.enter(3);
                }
                if self.phase == 3 {
                    self.streamed += *result as u64;
                    // The walsender sends one tablespace after the other.
                    self.tablespaces_streamed =
                        Some(self.tablespaces_seen.len().saturating_sub(1) as u64);
                }
            }
            EventKind::Exit { .. } if self.phase >= 3 => self.ended = true,
            _ => {}
        }
    }

    /// The denominator: the server's estimate, else our walk.
    pub fn total(&self) -> Option<u64> {
        self.server_total.or(self.walked_total)
    }

    pub fn percent(&self) -> Option<f64> {
        // A copier that exits early has not copied everything: its bytes say how much.
        if self.ended && self.phase >= 3 && self.source != Source::Files {
            return Some(100.0);
        }
        let total = self.total()?;
        if total == 0 {
            return None;
        }
        if self.phase >= 4 {
            return Some(100.0);
        }
        let pct = 100.0 * self.streamed as f64 / total as f64;
        // A copier's bytes are counted per file up to the walked size: exact.
        if self.source == Source::Files {
            return Some(pct.min(100.0));
        }
        // Our own walk is an estimate: never claim completion before the server does.
        let cap = if self.server_total.is_some() {
            100.0
        } else {
            99.9
        };
        Some(pct.min(cap))
    }

    pub fn eta_s(&self) -> Option<f64> {
        if self.ended {
            return Some(0.0);
        }
        let total = self.total()?;
        let rate = self.phase_rate_bps.filter(|_| self.phase == 3)?;
        Some(total.saturating_sub(self.streamed) as f64 / rate)
    }

    /// Bytes per second since the current phase was first seen (None in its first
    /// seconds, or when nothing streamed).
    pub fn phase_rate_bps(&self) -> Option<f64> {
        self.phase_rate_bps
    }

    pub fn tick(&mut self, now_ns: u64) {
        if let Some(t) = self.last_tick_ns {
            let dt = now_ns.saturating_sub(t) as f64 / 1e9;
            if dt > 0.0 {
                let r = self.streamed.saturating_sub(self.last_streamed) as f64 / dt;
                self.rate_bps = if self.rate_bps == 0.0 {
                    r
                } else {
                    0.5 * self.rate_bps + 0.5 * r
                };
            }
        }
        self.last_tick_ns = Some(now_ns);
        self.last_streamed = self.streamed;
        let clock = match self.phase_clock {
            Some(c) if c.0 == self.phase && self.streamed >= c.2 => c,
            _ => (self.phase, now_ns, self.streamed),
        };
        self.phase_clock = Some(clock);
        let dt = now_ns.saturating_sub(clock.1);
        self.phase_rate_bps = (dt >= MIN_PHASE_NS)
            .then(|| (self.streamed - clock.2) as f64 / (dt as f64 / 1e9))
            .filter(|&r| r > 0.0);
    }
}

/// A phase's rate is not trusted before it has run this long (its first moments are a
/// checkpoint's end, buffers filling).
const MIN_PHASE_NS: u64 = 2_000_000_000;

fn relative(p: &str) -> &str {
    p.trim_start_matches("./")
}

/// A file whose reads are backup content (not the manifest's temp file, not the 296-byte
/// pg_control read of recent minors).
fn is_streamed_file(rel: &str) -> bool {
    !rel.contains("pgsql_tmp") && !rel.ends_with("global/pg_control")
}

/// Which tablespace a streamed file belongs to, as a key: the walsender reads a
/// tablespace through its location's absolute path (`<location>/PG_16_.../...`), or
/// `pg_tblspc/<oid>/...`; anything else is the data directory ("").
pub fn tablespace_of(rel: &str) -> &str {
    if let Some(rest) = rel.strip_prefix("pg_tblspc/") {
        let oid_len = rest.find('/').unwrap_or(rest.len());
        return &rel[..10 + oid_len];
    }
    if rel.starts_with('/') {
        if let Some(i) = rel.find("/PG_") {
            return &rel[..i];
        }
    }
    ""
}

/// `pg_wal/000000010000000000000002.00000028.backup`.
pub fn is_backup_history(p: &str) -> bool {
    let name = p.rsplit('/').next().unwrap_or(p);
    let Some(stem) = name.strip_suffix(".backup") else {
        return false;
    };
    p.contains("pg_wal/")
        && stem.len() == 33
        && stem.as_bytes()[24] == b'.'
        && stem
            .bytes()
            .filter(|&b| b != b'.')
            .all(|b| b.is_ascii_hexdigit())
}

/// `pg_wal/000000010000000000000003`.
pub fn is_wal_segment(p: &str) -> bool {
    let name = p.rsplit('/').next().unwrap_or(p);
    p.contains("pg_wal/") && name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind) -> Event {
        Event {
            ts_ns: 1,
            pid: 1,
            kind,
        }
    }

    #[test]
    fn inferred_phase_sequence() {
        use crate::trace::Syscall;
        let mut b = BackupState::new(Source::Inferred);
        for _ in 0..20 {
            b.apply_event(
                &ev(EventKind::Stat {
                    syscall: Syscall::Lstat,
                    dirfd: None,
                    fd: None,
                    path: Some("base/5/1259".into()),
                    result: 0,
                }),
                None,
            );
        }
        let read = |n| {
            ev(EventKind::Read {
                syscall: Syscall::Pread64,
                fd: 5,
                offset: Some(0),
                requested: 32768,
                result: n,
            })
        };
        b.apply_event(&read(32768), Some("./base/5/1259"));
        b.apply_event(
            &ev(EventKind::Stat {
                syscall: Syscall::Stat,
                dirfd: None,
                fd: None,
                path: Some("pg_wal/archive_status/000000010000000000000002.done".into()),
                result: -2,
            }),
            None,
        );
        b.apply_event(&read(32768), Some("pg_wal/000000010000000000000002"));
        assert_eq!(b.phases_seen, vec![0, 2, 3, 4, 5]);
        assert_eq!(b.streamed, 65536);
        b.walked_total = Some(65536 * 4);
        assert_eq!(b.percent(), Some(100.0));
    }

    #[test]
    fn memory_samples_and_end() {
        let mut b = BackupState::new(Source::Inferred);
        let mut s = StatusSample {
            progress_command: Some("basebackup".into()),
            progress_params: vec![3, -1, 1000, 1, 0],
            ..Default::default()
        };
        assert!(b.apply_sample(&s));
        assert_eq!(b.source, Source::Memory);
        assert_eq!(b.server_total, None);
        b.walked_total = Some(2000);
        assert_eq!(b.percent(), Some(50.0));
        b.tick(0);
        s.progress_params[2] = 1500;
        b.apply_sample(&s);
        b.tick(1_000_000_000);
        assert_eq!(b.rate_bps, 500.0);
        // The phase's rate is not trusted in its first two seconds.
        assert_eq!(b.eta_s(), None);
        s.progress_params[2] = 1600;
        b.apply_sample(&s);
        b.tick(3_000_000_000);
        // 600 bytes in the phase's 3 s, whatever the last interval's burst.
        assert_eq!(b.phase_rate_bps(), Some(200.0));
        assert_eq!(b.eta_s(), Some(2.0));
        s.progress_command = None;
        assert!(!b.apply_sample(&s));
        assert!(b.ended);
        assert_eq!(b.percent(), Some(100.0));
        assert!(is_backup_history(
            "pg_wal/000000010000000000000002.00000028.backup"
        ));
        assert!(!is_backup_history("pg_wal/000000010000000000000002"));
        assert_eq!(
            tablespace_of("pg_tblspc/16385/PG_15_1/5/16390"),
            "pg_tblspc/16385"
        );
        assert_eq!(tablespace_of("/srv/spc/PG_15_1/5/16390"), "/srv/spc");
        assert_eq!(tablespace_of("base/5/1259"), "");
    }
}
