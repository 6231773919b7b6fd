//! The server's side of a low-level backup (`pg_backup_start` … copy with any tool …
//! `pg_backup_stop`; `pg_start_backup`/`pg_stop_backup` in 12–14), without a connection:
//!
//! - **whether one runs, and where it started**, from the WAL control structure in shared
//!   memory (`XLogCtlData`, the ShmemIndex entry "XLOG Ctl"): `Insert.runningBackups` (15+)
//!   or `Insert.exclusiveBackupState` + `Insert.nonExclusiveBackups` (12–14), and
//!   `Insert.lastBackupStart`, the redo point of the checkpoint the latest backup started
//!   from (what the start function returned). Layouts per major in [`xlog`].
//! - **which session holds it, its label and since when**, inferred from the sessions'
//!   query texts (`PgBackendStatus`): nothing in shared memory names the holder of a
//!   non-exclusive backup (`sessionBackupState` is backend-local). An exclusive backup
//!   (12–14) is held by no session; its `backup_label` file says label and start time.
//! - **the phase**, in the words of `pg_stat_progress_basebackup`: a session inside the
//!   start function is `waiting for checkpoint to finish`; inside the stop function,
//!   `waiting for wal archiving to finish` (the stop function has already decremented the
//!   counter then, so this phase is seen from the session, not the counter); otherwise a
//!   running backup is `copying database files`. `done` is for a watcher that saw it end.
//! - **the archiver** while the stop function waits: `pg_wal/archive_status/*.ready`
//!   (the backlog), the newest `.done`, and the archiver's title (`failed on X`,
//!   `last was X`), which every major sets.
//!
//! The pure parts ([`xlog::decode`], [`assess`], [`parse_label`], [`parse_backup_label`],
//! [`archive_of_names`]) take bytes or strings; [`read`] is the I/O shell.

pub mod xlog;

use crate::process::memory::{MemError, Pid};
use crate::process::status::StatusSample;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub use xlog::{XlogBackupState, XlogLayout, XlogReader};

/// `pg_stat_progress_basebackup`'s words for the phases a low-level backup has.
pub const PHASE_CHECKPOINT: &str = "waiting for checkpoint to finish";
pub const PHASE_COPYING: &str = "copying database files";
pub const PHASE_ARCHIVE: &str = "waiting for wal archiving to finish";
pub const PHASE_DONE: &str = "done";

/// Where a value came from: `memory` (shared memory says so), `inferred` (from a
/// session's query text or the absence of a wait event), `files` (`backup_label`,
/// `archive_status`, a process title).
pub const SOURCE_MEMORY: &str = "memory";
pub const SOURCE_INFERRED: &str = "inferred";
pub const SOURCE_FILES: &str = "files";

/// A low-level backup as the server sees it, as far as readable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerBackup {
    /// Backups running by the server's count (exclusive one included, 12–14). 0 while the
    /// stop function waits for archiving (it decrements first).
    pub running: u32,
    /// An exclusive backup (12–14 `pg_start_backup(label, false, true)`), held by no session.
    pub exclusive: bool,
    /// One of the `PHASE_*` words.
    pub phase: String,
    /// `memory` when a wait event or the counter says it, else `inferred`.
    pub phase_source: String,
    /// `Insert.lastBackupStart` as `X/X`: the latest backup's start (its checkpoint's redo).
    pub start_lsn: Option<String>,
    pub label: Option<String>,
    /// `inferred` (from the start call's query text) or `files` (`backup_label`).
    pub label_source: Option<String>,
    /// Unix microseconds: when the start function returned (the session's state change)
    /// or was called (still inside it), or `backup_label`'s START TIME.
    pub started_at_us: Option<i64>,
    /// The session holding the backup (or inside its start or stop function).
    pub pid: Option<Pid>,
    /// Always `inferred` when `pid` is set: read from query texts.
    pub pid_source: Option<String>,
    /// The archiver's state while the stop function waits for it (and whenever read).
    pub archive: Option<ArchiveState>,
}

/// What the archiver has left to do and has done.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArchiveState {
    /// `pg_wal/archive_status/*.ready`: files waiting to be archived.
    pub ready: u64,
    /// The oldest of them (by name: segments sort in WAL order).
    pub oldest_ready: Option<String>,
    /// Seconds since the oldest `.ready` file was written.
    pub oldest_ready_age_s: Option<f64>,
    /// The archiver's title `last was X`, else the newest `.done` file.
    pub last_archived: Option<String>,
    /// The archiver's title `failed on X`.
    pub last_failed: Option<String>,
}

impl ServerBackup {
    /// Seconds since it started, at `now_us` (Unix µs).
    pub fn age_s(&self, now_us: i64) -> Option<f64> {
        self.started_at_us
            .map(|t| (now_us.saturating_sub(t) as f64 / 1e6).max(0.0))
    }

    /// `started_at` as ISO 8601 UTC.
    pub fn started_at(&self) -> Option<String> {
        self.started_at_us.map(iso_utc)
    }

    /// One line for a list: `low-level backup running, 2h10m`, `low-level backup
    /// stopping: waiting for wal archiving to finish, 3 WAL files not archived`.
    pub fn headline(&self, now_us: i64) -> String {
        let age = self
            .age_s(now_us)
            .map(|a| format!(", {}", crate::text::human_duration(a)))
            .unwrap_or_default();
        let many = if self.running > 1 {
            format!(" ({} backups)", self.running)
        } else {
            String::new()
        };
        match self.phase.as_str() {
            PHASE_COPYING => format!("low-level backup running{age}{many}"),
            PHASE_CHECKPOINT => format!("low-level backup starting: {PHASE_CHECKPOINT}{age}"),
            PHASE_ARCHIVE => {
                let backlog = self
                    .archive
                    .as_ref()
                    .map(|a| format!(", {} WAL file(s) not archived", a.ready))
                    .unwrap_or_default();
                format!("low-level backup stopping: {PHASE_ARCHIVE}{backlog}")
            }
            other => format!("low-level backup {other}"),
        }
    }

    /// What is known of it: `start 0/2000028, label "nightly" (inferred), session 4242
    /// (inferred), since 2026-12-02T07:01:02Z`. Text from outside made visible.
    pub fn details(&self) -> String {
        let mut parts = Vec::new();
        if let Some(l) = &self.start_lsn {
            parts.push(format!("start {l}"));
        }
        if let Some(l) = &self.label {
            let src = self.label_source.as_deref().unwrap_or(SOURCE_INFERRED);
            parts.push(format!("label \"{}\" ({src})", crate::text::visible(l)));
        }
        if let Some(p) = self.pid {
            parts.push(format!("session {p} (inferred)"));
        } else if self.exclusive {
            parts.push("exclusive (no session)".into());
        }
        if let Some(t) = self.started_at() {
            parts.push(format!("since {t}"));
        }
        parts.join(", ")
    }

    /// `wal archiving: 3 .ready (oldest 00000001000000000000000A, 1m02s), last archived
    /// …, last failed …`, when read.
    pub fn archive_line(&self) -> Option<String> {
        let a = self.archive.as_ref()?;
        let mut t = format!("wal archiving: {} .ready", a.ready);
        if let Some(o) = &a.oldest_ready {
            t.push_str(&format!(" (oldest {}", crate::text::visible(o)));
            if let Some(age) = a.oldest_ready_age_s {
                t.push_str(&format!(", {}", crate::text::human_duration(age)));
            }
            t.push(')');
        }
        if let Some(l) = &a.last_archived {
            t.push_str(&format!(", last archived {}", crate::text::visible(l)));
        }
        if let Some(f) = &a.last_failed {
            t.push_str(&format!(", last failed {}", crate::text::visible(f)));
        }
        Some(t)
    }

    /// The same backup, seen to end.
    pub fn done(mut self) -> ServerBackup {
        self.phase = PHASE_DONE.into();
        self.running = 0;
        self
    }
}

/// Follows one cluster's backup over samples: once seen, its end is `done` (once), as
/// the progress view's last phase would be.
#[derive(Debug, Default, Clone)]
pub struct Watch {
    last: Option<ServerBackup>,
}

impl Watch {
    /// This sample's backup, or the one seen before, `done`, when it is gone.
    pub fn observe(&mut self, now: Option<ServerBackup>) -> Option<ServerBackup> {
        match now {
            Some(mut b) => {
                // The stop phase no longer shows the label and start time: keep them.
                if let Some(prev) = &self.last {
                    if b.label.is_none() && b.start_lsn == prev.start_lsn {
                        b.label = prev.label.clone();
                        b.label_source = prev.label_source.clone();
                    }
                    if b.started_at_us.is_none() && b.start_lsn == prev.start_lsn {
                        b.started_at_us = prev.started_at_us;
                    }
                }
                self.last = Some(b.clone());
                Some(b)
            }
            None => self
                .last
                .take()
                .filter(|b| b.phase != PHASE_DONE)
                .map(ServerBackup::done),
        }
    }
}

/// `X/X`, as PostgreSQL prints an LSN.
pub fn lsn(v: u64) -> String {
    format!("{:X}/{:X}", v >> 32, v & 0xffff_ffff)
}

/// Unix microseconds as `2026-12-02T07:01:02Z`; read from memory, so any value: one
/// outside chrono's range is written as the number it is.
pub fn iso_utc(us: i64) -> String {
    chrono::DateTime::from_timestamp(us.div_euclid(1_000_000), 0).map_or_else(
        || format!("{us} µs since 1970"),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

/// Which backup function a query calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Start,
    Stop,
}

/// Whether `query` calls the start or the stop function (any major's name), by the
/// function name followed by `(`. Case-insensitive; a name inside a string literal or
/// comment may fool it, which is why what it feeds is marked `inferred`.
pub fn call_of(query: &str) -> Option<Call> {
    let q = query.to_ascii_lowercase();
    let has = |name: &str| {
        q.match_indices(name).any(|(i, _)| {
            let before = q[..i].chars().next_back();
            let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
            !before.is_some_and(ident) && q[i + name.len()..].trim_start().starts_with('(')
        })
    };
    if has("pg_backup_stop") || has("pg_stop_backup") {
        Some(Call::Stop)
    } else if has("pg_backup_start") || has("pg_start_backup") {
        Some(Call::Start)
    } else {
        None
    }
}

/// The label of a start call: its first argument when it is a string literal
/// (`pg_backup_start('nightly', fast => true)`, `label => 'x'`, `E'…'` taken as written).
/// None for a parameter (`$1`) or anything else.
pub fn parse_label(query: &str) -> Option<String> {
    let lower = query.to_ascii_lowercase();
    let at = ["pg_backup_start", "pg_start_backup"]
        .iter()
        .filter_map(|n| lower.find(n).map(|i| i + n.len()))
        .min()?;
    let rest = query
        .get(at..)?
        .trim_start()
        .strip_prefix('(')?
        .trim_start();
    let rest = match rest.to_ascii_lowercase().strip_prefix("label") {
        Some(after) => {
            let after = after.trim_start();
            if !(after.starts_with("=>") || after.starts_with(":=")) {
                return None;
            }
            let skip = 2;
            // Same length in both spellings: ASCII lowering keeps byte offsets.
            let off = rest.len() - after.len() + skip;
            rest.get(off..)?.trim_start()
        }
        None => rest,
    };
    let rest = rest
        .strip_prefix('E')
        .or_else(|| rest.strip_prefix('e'))
        .filter(|r| r.starts_with('\''))
        .unwrap_or(rest);
    let mut chars = rest.strip_prefix('\'')?.chars().peekable();
    let mut out = String::new();
    while let Some(c) = chars.next() {
        if c == '\'' {
            if chars.peek() == Some(&'\'') {
                chars.next();
                out.push('\'');
            } else {
                return Some(out);
            }
        } else {
            out.push(c);
        }
        // MAXPGPATH bounds a label (1024); a longer "label" is not one.
        if out.len() > 1024 {
            return None;
        }
    }
    None
}

/// What `backup_label` says: `(label, start LSN, start time as Unix µs)`, each when
/// parseable. Written by an exclusive backup (12–14) into the data directory.
pub fn parse_backup_label(text: &str) -> (Option<String>, Option<u64>, Option<i64>) {
    let mut label = None;
    let mut start = None;
    let mut time = None;
    for line in text.lines().take(64) {
        if let Some(v) = line.strip_prefix("LABEL: ") {
            label = Some(v.to_string());
        } else if let Some(v) = line.strip_prefix("START WAL LOCATION: ") {
            start = parse_lsn(v.split_whitespace().next().unwrap_or(""));
        } else if let Some(v) = line.strip_prefix("START TIME: ") {
            time = parse_pg_time(v);
        }
    }
    (label, start, time)
}

/// `X/X` to a number.
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.split_once('/')?;
    let hi = u32::from_str_radix(hi, 16).ok()?;
    let lo = u32::from_str_radix(lo, 16).ok()?;
    Some((u64::from(hi) << 32) | u64::from(lo))
}

/// `2026-12-02 07:01:02 UTC` (backup_label's `%Y-%m-%d %H:%M:%S %Z`) as Unix µs; only a
/// UTC/GMT zone is understood (another zone's offset is not knowable from its name).
pub fn parse_pg_time(s: &str) -> Option<i64> {
    let mut it = s.split_whitespace();
    let (date, clock, zone) = (it.next()?, it.next()?, it.next()?);
    if !matches!(zone, "UTC" | "GMT" | "Etc/UTC") {
        return None;
    }
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let t: Vec<i64> = clock
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let (&[y, m, dd], &[hh, mm, ss]) = (d.as_slice(), t.as_slice()) else {
        return None;
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&dd) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let y = y - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + dd - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400) + hh * 3600 + mm * 60 + ss) * 1_000_000)
}

/// The archiver's title activity: `(last archived, last failed)`.
pub fn parse_archiver_title(title: &str) -> (Option<String>, Option<String>) {
    let word = |after: &str| {
        title
            .find(after)
            .and_then(|i| title[i + after.len()..].split_whitespace().next())
            .map(str::to_string)
    };
    (word("last was "), word("failed on "))
}

/// The backlog from the names in `archive_status` (with each file's age in seconds).
/// Pure; `.ready` oldest by name, `.done` newest by age.
pub fn archive_of_names<'a>(
    entries: impl IntoIterator<Item = (&'a str, Option<f64>)>,
) -> ArchiveState {
    let mut a = ArchiveState::default();
    let mut newest_done: Option<(f64, &str)> = None;
    for (name, age) in entries {
        if let Some(wal) = name.strip_suffix(".ready") {
            a.ready += 1;
            if a.oldest_ready.as_deref().map_or(true, |o| wal < o) {
                a.oldest_ready = Some(wal.to_string());
                a.oldest_ready_age_s = age;
            }
        } else if let Some(wal) = name.strip_suffix(".done") {
            let age = age.unwrap_or(f64::MAX);
            if newest_done.map_or(true, |(a0, _)| age < a0) {
                newest_done = Some((age, wal));
            }
        }
    }
    a.last_archived = newest_done.map(|(_, w)| w.to_string());
    a
}

/// `archive_status` of a data directory, and the archiver's title when `archiver` is
/// given. Bounded: at most 100,000 entries are looked at.
pub fn archive_state(pgdata: &Path, archiver: Option<Pid>) -> Option<ArchiveState> {
    let dir = std::fs::read_dir(pgdata.join("pg_wal/archive_status")).ok()?;
    let now = std::time::SystemTime::now();
    let entries: Vec<(String, Option<f64>)> = dir
        .flatten()
        .take(100_000)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let age = e
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| now.duration_since(t).ok())
                .map(|d| d.as_secs_f64());
            Some((name, age))
        })
        .collect();
    let mut a = archive_of_names(entries.iter().map(|(n, a)| (n.as_str(), *a)));
    if let Some(t) = archiver.and_then(crate::process::proc::process_title) {
        let (last, failed) = parse_archiver_title(&t);
        a.last_archived = last.or(a.last_archived);
        a.last_failed = failed;
    }
    Some(a)
}

/// The archiver among a postmaster's children, by its title.
pub fn archiver_of(postmaster: Pid) -> Option<Pid> {
    crate::process::proc::children(postmaster)
        .into_iter()
        .find(|&p| crate::process::proc::process_title(p).is_some_and(|t| t.contains("archiver")))
}

/// Unix µs of a status timestamp (µs since 2000-01-01).
fn unix_us(pg_us: i64) -> i64 {
    crate::process::status::PG_EPOCH_UNIX_US.saturating_add(pg_us)
}

/// The backup from the counter, the sessions and the files, or None when no backup runs
/// and no session is inside a stop function. Pure: `label_file` is `backup_label`'s
/// text, `archive` what [`archive_state`] read.
pub fn assess(
    xlog: Option<&XlogBackupState>,
    sessions: &[StatusSample],
    label_file: Option<&str>,
    archive: Option<ArchiveState>,
) -> Option<ServerBackup> {
    let client = |s: &&StatusSample| {
        s.backend_type
            .as_deref()
            .map_or(true, |t| t == "client backend")
    };
    let calling = |call: Call| {
        sessions
            .iter()
            .filter(client)
            .filter(move |s| s.query.as_deref().and_then(call_of) == Some(call))
    };
    let active = |s: &&StatusSample| s.state.as_deref() == Some("active");
    let stopping = calling(Call::Stop)
        .filter(active)
        .max_by_key(|s| s.state_start_us);
    let starting = calling(Call::Start)
        .filter(active)
        .max_by_key(|s| s.state_start_us);
    // A session whose last statement was the start call and that is no longer running it:
    // the holder, presumably (it may have failed; then the counter says 0 and it is not
    // looked at).
    let holder = calling(Call::Start)
        .filter(|s| !active(s))
        .max_by_key(|s| s.state_start_us);
    // The counter counts pg_basebackup's backups too, each run by a walsender inside
    // BASE_BACKUP: those are not low-level backups (their walsender shows its own
    // progress), and are taken off.
    let base_backups = sessions
        .iter()
        .filter(|s| {
            s.backend_type.as_deref() == Some("walsender")
                && s.query.as_deref().is_some_and(|q| {
                    q.trim_start()
                        .to_ascii_uppercase()
                        .starts_with("BASE_BACKUP")
                })
        })
        .count() as u32;
    let exclusive = xlog.is_some_and(|x| x.exclusive);
    let running = xlog.map_or(0, |x| {
        // The exclusive one (12–14) is a low-level backup whatever walsenders run.
        let shared = x.running.saturating_sub(u32::from(x.exclusive));
        shared.saturating_sub(base_backups) + u32::from(x.exclusive)
    });
    if running == 0 && stopping.is_none() && starting.is_none() {
        return None;
    }
    let (phase, phase_source, session) = if let Some(s) = stopping {
        let waits = s.wait_event.as_deref() == Some("BackupWaitWalArchive");
        let src = if waits {
            SOURCE_MEMORY
        } else {
            SOURCE_INFERRED
        };
        (PHASE_ARCHIVE, src, Some(s))
    } else if let Some(s) = starting {
        (PHASE_CHECKPOINT, SOURCE_INFERRED, Some(s))
    } else {
        let src = if xlog.is_some() {
            SOURCE_MEMORY
        } else {
            SOURCE_INFERRED
        };
        (PHASE_COPYING, src, if exclusive { None } else { holder })
    };
    let mut b = ServerBackup {
        running,
        exclusive,
        phase: phase.into(),
        phase_source: phase_source.into(),
        start_lsn: xlog
            .filter(|x| x.last_backup_start != 0)
            .map(|x| lsn(x.last_backup_start)),
        label: None,
        label_source: None,
        started_at_us: None,
        pid: session.map(|s| s.pid),
        pid_source: session.map(|_| SOURCE_INFERRED.into()),
        archive,
    };
    if let Some(s) = session {
        if let Some(l) = s.query.as_deref().and_then(parse_label) {
            b.label = Some(l);
            b.label_source = Some(SOURCE_INFERRED.into());
        }
        // Idle after the start call: its state changed when the call returned, right
        // after the checkpoint, when the backup's START TIME is taken. Inside the start
        // call: when it was called. Inside the stop call the start is not known here.
        if phase != PHASE_ARCHIVE {
            b.started_at_us = s.state_start_us.map(unix_us);
        }
    }
    if exclusive {
        if let Some(text) = label_file {
            let (label, _, time) = parse_backup_label(text);
            if label.is_some() {
                b.label = label;
                b.label_source = Some(SOURCE_FILES.into());
            }
            b.started_at_us = time.or(b.started_at_us);
        }
    }
    Some(b)
}

/// Read it all for the cluster at `pgdata`, through the memory of `via` (any of its
/// processes), with the sessions' status `samples` already read. `Ok(None)`: no backup.
/// The counter is optional: when shared memory cannot be read the sessions still say
/// the start and stop phases (marked `inferred`).
pub fn read(
    pgdata: &Path,
    via: Pid,
    postmaster: Option<Pid>,
    major: u32,
    samples: &[StatusSample],
) -> Result<Option<ServerBackup>, MemError> {
    let x = XlogReader::open(via, major).and_then(|r| r.read());
    let x = match x {
        Ok(x) => Some(x),
        Err(e @ MemError::Gone(_)) => return Err(e),
        Err(_) => None,
    };
    Ok(assess_files(pgdata, postmaster, x.as_ref(), samples))
}

/// [`assess`] with `backup_label` and `archive_status` read from `pgdata` (the files
/// only when they matter: an exclusive backup, a backup running).
pub fn assess_files(
    pgdata: &Path,
    postmaster: Option<Pid>,
    x: Option<&XlogBackupState>,
    samples: &[StatusSample],
) -> Option<ServerBackup> {
    let label = x
        .filter(|x| x.exclusive)
        .and_then(|_| read_small(&pgdata.join("backup_label")));
    let mut b = assess(x, samples, label.as_deref(), None)?;
    b.archive = archive_state(pgdata, postmaster.and_then(archiver_of));
    Some(b)
}

/// A small text file (backup_label is a few hundred bytes), capped.
fn read_small(p: &Path) -> Option<String> {
    use std::io::Read;
    let mut s = Vec::new();
    std::fs::File::open(p)
        .ok()?
        .take(8192)
        .read_to_end(&mut s)
        .ok()?;
    Some(String::from_utf8_lossy(&s).into_owned())
}

#[cfg(test)]
mod tests;
