//! `pg_trace ps`: every process of a cluster from shared memory, an offline
//! `pg_stat_activity`.

use crate::output::record::{self, ProcessRecord, ProgressRow, Record};
use crate::output::Format;
use crate::pgdata::Catalog;
use crate::process::progress;
use crate::process::server_backup::ServerBackup;
use crate::process::status::layout::ProgressCommand;
use crate::process::status::StatusSample;
use crate::text::visible;
use anyhow::Result;
use std::io::Write;

/// Seconds between the Unix epoch and PostgreSQL's (2000-01-01).
pub const PG_EPOCH_UNIX_S: i64 = 946_684_800;

/// Seconds since a PostgreSQL timestamp (µs since 2000-01-01).
pub fn age_s(pg_us: i64) -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    (now - (PG_EPOCH_UNIX_S as f64 + pg_us as f64 / 1e6)).max(0.0)
}

pub fn database_name(catalog: Option<&Catalog>, oid: Option<u32>) -> Option<String> {
    let oid = oid?;
    Some(
        catalog
            .and_then(|c| c.database(oid))
            .map(|d| d.name.clone())
            .unwrap_or_else(|| format!("database {oid}")),
    )
}

/// The progress row of a sample, as the view shows it.
pub fn progress_value(s: &StatusSample) -> Option<ProgressRow> {
    let cmd = ProgressCommand::from_name(s.progress_command.as_deref()?)?;
    Some(progress::render(
        cmd,
        s.major,
        s.progress_target.unwrap_or(0),
        &s.progress_params,
    ))
}

pub fn record(s: &StatusSample, catalog: Option<&Catalog>) -> ProcessRecord {
    ProcessRecord {
        pid: s.pid,
        ns_pid: None,
        backend_type: s.backend_type.clone(),
        state: s.state.clone(),
        database: database_name(catalog, s.database_oid),
        wait_event_type: s.wait_event_type.clone(),
        wait_event: s.wait_event.clone(),
        query: s.query.clone(),
        blocked_by: s.lock_holders.clone(),
        lock_relation: s.lock_relation_oid.map(|oid| {
            catalog
                .zip(s.database_oid)
                .and_then(|(c, db)| c.by_oid(db, oid))
                .map(|r| r.qualified())
                .unwrap_or_else(|| format!("relation {oid}"))
        }),
        xact_age_s: s.xact_start_us.map(age_s),
        state_age_s: s.state_start_us.map(age_s),
        progress: progress_value(s),
    }
}

pub fn write(
    w: &mut impl Write,
    rows: &[(StatusSample, ProcessRecord)],
    format: Format,
) -> Result<()> {
    match format {
        Format::Json => {
            for (_, v) in rows {
                record::write(w, &Record::Process(v.clone()))?;
            }
        }
        Format::Text => {
            writeln!(
                w,
                "{:>8}  {:<24} {:<20} {:<12} {:<28} QUERY / PROGRESS",
                // A server in a container: host pids, then in parentheses its own.
                if rows.iter().any(|(_, v)| v.ns_pid.is_some()) {
                    "PID (IN ITS NAMESPACE)"
                } else {
                    "PID"
                },
                "TYPE",
                "STATE",
                "DATABASE",
                "WAIT"
            )?;
            for (s, v) in rows {
                let wait = match (&s.wait_event_type, &s.wait_event) {
                    (Some(t), Some(e)) => format!("{}:{}", visible(t), visible(e)),
                    _ => String::new(),
                };
                let mut tail = s
                    .query
                    .as_deref()
                    .unwrap_or("")
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                if let Some(p) = progress_text(s) {
                    tail = format!("[{p}] {tail}");
                }
                // A container's process: its host pid, then the pid it has inside.
                let pid = match v.ns_pid {
                    Some(n) => format!("{} ({n})", v.pid),
                    None => v.pid.to_string(),
                };
                writeln!(
                    w,
                    "{:>8}  {:<24} {:<20} {:<12} {:<28} {}",
                    pid,
                    visible(s.backend_type.as_deref().unwrap_or("?")),
                    visible(s.state.as_deref().unwrap_or("")),
                    visible(v.database.as_deref().unwrap_or("")),
                    wait,
                    truncate(&visible(&tail), 100)
                )?;
            }
        }
    }
    Ok(())
}

/// `basebackup: streaming database files 40%` and the like.
pub fn progress_text(s: &StatusSample) -> Option<String> {
    let cmd = ProgressCommand::from_name(s.progress_command.as_deref()?)?;
    let phase = progress::phase_name(cmd, &s.progress_params);
    let mut t = cmd.name().to_string();
    if let Some(p) = phase {
        t = format!("{t}: {p}");
    }
    if cmd == ProgressCommand::BaseBackup {
        let total = s.progress_params.get(1).copied().unwrap_or(-1);
        let done = s.progress_params.get(2).copied().unwrap_or(0);
        if total > 0 {
            t = format!("{t} {:.1}%", 100.0 * done as f64 / total as f64);
        }
    }
    Some(t)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The `server_backup` record of a low-level backup.
pub fn server_backup_record(b: &ServerBackup, now_us: i64) -> record::LowLevelBackupRecord {
    record::LowLevelBackupRecord {
        method: "low-level".into(),
        running: b.running,
        exclusive: b.exclusive,
        phase: b.phase.clone(),
        phase_source: b.phase_source.clone(),
        start_lsn: b.start_lsn.clone(),
        label: b.label.clone(),
        label_source: b.label_source.clone(),
        started_at: b.started_at(),
        age_s: b.age_s(now_us),
        pid: b.pid,
        pid_source: b.pid_source.clone(),
        archive: b.archive.as_ref().map(|a| record::ArchiveRecord {
            ready: a.ready,
            oldest_ready: a.oldest_ready.clone(),
            oldest_ready_age_s: a.oldest_ready_age_s,
            last_archived: a.last_archived.clone(),
            last_failed: a.last_failed.clone(),
        }),
    }
}

/// A low-level backup, before the process list: one record, or two lines of text.
pub fn write_server_backup(w: &mut impl Write, b: &ServerBackup, format: Format) -> Result<()> {
    let now = crate::process::status::unix_now_us();
    match format {
        Format::Json => record::write(w, &Record::ServerBackup(server_backup_record(b, now)))?,
        Format::Text => {
            writeln!(w, "{}: {}", b.headline(now), b.details())?;
            if let Some(a) = b.archive_line() {
                writeln!(w, "  {a}")?;
            }
        }
    }
    Ok(())
}
