//! The `operation` record: a long command's phase, progress, rate and ETA, per interval.

use crate::trace::Pid;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationRecord {
    pub ts: f64,
    pub pid: Pid,
    /// `create index`, `reindex`, `vacuum`, `autovacuum`, `cluster`, `vacuum full`, `copy`,
    /// `analyze`, `query`, `pg_dump`, `basebackup`, `walsender`.
    pub operation: String,
    pub relation: Option<String>,
    pub schema: Option<String>,
    pub name: Option<String>,
    pub phase: Option<String>,
    pub phase_number: Option<u32>,
    pub phases_total: Option<u32>,
    pub done: Option<u64>,
    pub total: Option<u64>,
    /// `blocks`, `bytes`, `tuples`, `tables`.
    pub unit: Option<String>,
    pub percent: Option<f64>,
    pub rate: Option<f64>,
    /// The whole operation's ETA, the phases to come included.
    pub eta_s: Option<f64>,
    /// `memory`, `files`, `inferred`.
    pub source: String,
    /// The current phase's ETA.
    #[serde(default)]
    pub phase_eta_s: Option<f64>,
    /// `memory`, `files`, `inferred`: `inferred` when `eta_s` models phases to come.
    #[serde(default)]
    pub eta_source: Option<String>,
    /// Bytes of WAL the traced process wrote itself since the operation began.
    #[serde(default)]
    pub wal_bytes: Option<u64>,
    /// `pg_dump`: the current table's tuples copied (14+), its read position and size.
    #[serde(default)]
    pub table_tuples: Option<u64>,
    #[serde(default)]
    pub table_read: Option<u64>,
    #[serde(default)]
    pub table_size: Option<u64>,
}
