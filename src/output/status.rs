//! The status and backup records of line mode, and their text lines.

use crate::model::backup::BackupState;
use crate::model::status::StatusView;
use crate::model::Model;
use crate::output::ps::progress_value;
use crate::output::record::{BackupRecord, Record, StatusRecord};

pub fn status_record(model: &Model, v: &StatusView, ts: f64) -> Record {
    let s = &v.sample;
    Record::Status(StatusRecord {
        ts,
        pid: s.pid,
        backend_type: s.backend_type.clone(),
        state: s.state.clone(),
        database: s.database.clone(),
        wait_event_type: s.wait_event_type.clone(),
        wait_event: s.wait_event.clone(),
        query: s.query.clone(),
        xact_age_s: s.xact_start_us.map(|t| s.age_s(t)),
        state_age_s: s.state_start_us.map(|t| s.age_s(t)),
        progress: progress_value(s),
        verdict: v.verdict.to_string(),
        verdict_kind: v.verdict.name().to_string(),
        verdict_detail: v.verdict.clone(),
        kernel_state: s.kernel.state.map(|c| c.to_string()),
        wchan: s.kernel.wchan.clone(),
        syscall: s
            .kernel
            .syscall
            .map(|n| crate::model::stall::syscall_name(n).to_string()),
        syscall_for_s: v
            .syscall_since_ns
            .map(|t| v.ts_ns.saturating_sub(t) as f64 / 1e9),
        since_io_s: v.since_io_s,
        send_queue: s.kernel.send_queue,
        memory_error: s.error.clone(),
        leader_exited: model.leader_exited(),
    })
}

pub fn backup_record(b: &BackupState, ts: f64) -> Record {
    let total_source = if b.server_total.is_some() {
        Some("server")
    } else if b.walked_total.is_some() {
        Some("walked")
    } else {
        None
    };
    Record::Backup(BackupRecord {
        ts,
        phase: b.phase_name().to_string(),
        phase_number: b.phase,
        total: b.total(),
        total_source: total_source.map(str::to_string),
        streamed: b.streamed,
        percent: b.percent(),
        tablespaces_total: b.tablespaces_total,
        tablespaces_streamed: b.tablespaces_streamed,
        rate_bps: b.rate_bps,
        eta_s: b.eta_s(),
        source: b.source.name().to_string(),
        ended: b.ended,
        current_file: b.current_file.clone(),
        phases_seen: b
            .phases_seen
            .iter()
            .map(|p| crate::model::backup::phase_name_of(b.method, *p))
            .collect(),
        method: b.method.name().to_string(),
        copier: b.copier.clone(),
        files_done: b.files_done,
        files_total: b.files_total,
        files_grew: b.files_grew,
        limiter: b.limiter.map(|l| l.name().to_string()),
        per_tablespace: b
            .per_tablespace
            .iter()
            .map(|t| crate::output::record::TablespaceRow {
                tablespace: if t.key.is_empty() {
                    "data_directory".to_string()
                } else {
                    t.key.clone()
                },
                bytes_total: t.bytes_total,
                bytes_done: t.bytes_done,
                files_total: t.files_total,
                files_done: t.files_done,
            })
            .collect(),
        copier_processes: b
            .copier_processes
            .iter()
            .map(|(pid, name)| crate::output::record::CopierProcess {
                pid: *pid,
                name: name.clone(),
            })
            .collect(),
        server_backup: b.server_backup.as_ref().map(|s| {
            crate::output::record::ServerBackupRecord {
                start_lsn: s.start_lsn.clone(),
                label: s.label.clone(),
                started_at: s
                    .started_at
                    .map(|t| crate::process::server_backup::iso_utc((t * 1e6) as i64)),
                pid: s.pid,
            }
        }),
    })
}

/// `status: active, IO:DataFileRead, verdict: reading from disk base/5/16384 (public.t)`
pub fn status_line(v: &StatusView) -> String {
    let s = &v.sample;
    let mut parts = Vec::new();
    if let Some(t) = &s.backend_type {
        parts.push(t.clone());
    }
    if let Some(st) = &s.state {
        parts.push(st.clone());
    }
    if let (Some(t), Some(e)) = (&s.wait_event_type, &s.wait_event) {
        parts.push(format!("wait {t}:{e}"));
    }
    let mut line = format!("status: {}", parts.join(", "));
    if !parts.is_empty() {
        line.push_str("; ");
    } else {
        line = "status: ".into();
    }
    line.push_str(&format!("verdict: {}", v.verdict));
    line
}
