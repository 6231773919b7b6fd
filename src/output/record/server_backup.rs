//! `pg_trace ps`: the server's side of a low-level backup, when one runs.

use serde::{Deserialize, Serialize};

/// One record before the `process` records when a low-level backup runs (or a session is
/// inside its stop function). Built from `process::server_backup::ServerBackup`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LowLevelBackupRecord {
    pub method: String,
    pub running: u32,
    pub exclusive: bool,
    pub phase: String,
    pub phase_source: String,
    pub start_lsn: Option<String>,
    pub label: Option<String>,
    pub label_source: Option<String>,
    pub started_at: Option<String>,
    pub age_s: Option<f64>,
    pub pid: Option<i32>,
    pub pid_source: Option<String>,
    pub archive: Option<ArchiveRecord>,
}

/// The archiver's backlog and its last archived and failed WAL files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchiveRecord {
    pub ready: u64,
    pub oldest_ready: Option<String>,
    pub oldest_ready_age_s: Option<f64>,
    pub last_archived: Option<String>,
    pub last_failed: Option<String>,
}
