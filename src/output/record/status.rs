//! The records read from a process's status: `status` and `backup` of a trace, and
//! `process` of `pg_trace ps`.

use crate::model::stall::Verdict;
use crate::trace::Pid;
use serde::{Deserialize, Serialize};

/// A `pg_stat_progress_*` row: an object with `view` first, then the view's columns. Kept
/// as JSON until the process layer gives it a type of its own.
pub type ProgressRow = serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusRecord {
    pub ts: f64,
    pub pid: Pid,
    pub backend_type: Option<String>,
    pub state: Option<String>,
    pub database: Option<String>,
    pub wait_event_type: Option<String>,
    pub wait_event: Option<String>,
    pub query: Option<String>,
    pub xact_age_s: Option<f64>,
    pub state_age_s: Option<f64>,
    pub progress: Option<ProgressRow>,
    pub verdict: String,
    pub verdict_kind: String,
    pub verdict_detail: Verdict,
    pub kernel_state: Option<String>,
    pub wchan: Option<String>,
    pub syscall: Option<String>,
    pub syscall_for_s: Option<f64>,
    pub since_io_s: Option<f64>,
    pub send_queue: Option<u64>,
    pub memory_error: Option<String>,
    pub leader_exited: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupRecord {
    pub ts: f64,
    pub phase: String,
    pub phase_number: i64,
    pub total: Option<u64>,
    pub total_source: Option<String>,
    pub streamed: u64,
    pub percent: Option<f64>,
    pub tablespaces_total: Option<u64>,
    pub tablespaces_streamed: Option<u64>,
    pub rate_bps: f64,
    pub eta_s: Option<f64>,
    pub source: String,
    pub ended: bool,
    pub current_file: Option<String>,
    pub phases_seen: Vec<String>,
    pub method: String,
    pub copier: Option<String>,
    pub files_done: Option<u64>,
    pub files_total: Option<u64>,
    pub files_grew: u64,
    pub limiter: Option<String>,
    pub per_tablespace: Vec<TablespaceRow>,
    pub copier_processes: Vec<CopierProcess>,
    pub server_backup: Option<ServerBackupRecord>,
}

/// A copier's progress in one tablespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TablespaceRow {
    pub tablespace: String,
    pub bytes_total: u64,
    pub bytes_done: u64,
    pub files_total: u64,
    pub files_done: u64,
}

/// One process of a copier (the copier itself, its workers and children).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopierProcess {
    pub pid: Pid,
    pub name: String,
}

/// The server's side of a running low-level backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerBackupRecord {
    pub start_lsn: Option<String>,
    pub label: Option<String>,
    /// ISO 8601 UTC, as in the `server_backup` record.
    pub started_at: Option<String>,
    pub pid: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// The host's pid (what `kill`, `/proc` and `pg_trace -p` take).
    pub pid: Pid,
    /// The pid the server's own namespace gives it (what `pg_stat_activity` shows inside
    /// its container), only when that differs from `pid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ns_pid: Option<Pid>,
    pub backend_type: Option<String>,
    pub state: Option<String>,
    pub database: Option<String>,
    pub wait_event_type: Option<String>,
    pub wait_event: Option<String>,
    pub query: Option<String>,
    pub blocked_by: Vec<Pid>,
    pub lock_relation: Option<String>,
    pub xact_age_s: Option<f64>,
    pub state_age_s: Option<f64>,
    pub progress: Option<ProgressRow>,
}
