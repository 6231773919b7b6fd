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
    /// A walsender's positions, lags, slot and spill files; only on `walsender`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub walsender: Option<Box<WalSenderRecord>>,
}

/// What a walsender's `operation` record carries beyond the line: what
/// `pg_stat_replication` and `pg_replication_slots` show, from shared memory. LSNs as
/// `X/X`; `*_behind` in bytes before the insert position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalSenderRecord {
    /// `startup`, `catchup`, `streaming`, `stopping` (`pg_stat_replication.state`).
    pub state: String,
    pub insert_lsn: Option<String>,
    pub sent_lsn: Option<String>,
    pub write_lsn: Option<String>,
    pub flush_lsn: Option<String>,
    pub replay_lsn: Option<String>,
    pub sent_behind: Option<u64>,
    pub write_behind: Option<u64>,
    pub flush_behind: Option<u64>,
    pub replay_behind: Option<u64>,
    pub write_lag_s: Option<f64>,
    pub flush_lag_s: Option<f64>,
    pub replay_lag_s: Option<f64>,
    pub slot: Option<String>,
    pub logical: bool,
    pub restart_lsn: Option<String>,
    pub confirmed_flush_lsn: Option<String>,
    pub confirmed_behind: Option<u64>,
    /// Spill files in `pg_replslot/<slot>/` now, and the most seen at once.
    pub spill_files: Option<u64>,
    pub spill_bytes: Option<u64>,
    pub spill_bytes_peak: Option<u64>,
}

impl WalSenderRecord {
    pub fn of(
        w: &crate::process::walsender::WalSenderSample,
        peak: Option<crate::process::walsender::spill::Spill>,
    ) -> WalSenderRecord {
        use crate::process::server_backup::lsn;
        let behind = |at: Option<u64>| Some(w.insert?.saturating_sub(at?));
        let secs = |us: Option<i64>| us.map(|u| u as f64 / 1e6);
        let slot = w.slot.as_ref();
        let spill = slot.and_then(|s| s.spill);
        WalSenderRecord {
            state: w.state.clone(),
            insert_lsn: w.insert.map(lsn),
            sent_lsn: w.sent.map(lsn),
            write_lsn: w.write.map(lsn),
            flush_lsn: w.flush.map(lsn),
            replay_lsn: w.replay.map(lsn),
            sent_behind: behind(w.sent),
            write_behind: behind(w.write),
            flush_behind: behind(w.flush),
            replay_behind: behind(w.replay),
            write_lag_s: secs(w.write_lag_us),
            flush_lag_s: secs(w.flush_lag_us),
            replay_lag_s: secs(w.replay_lag_us),
            slot: slot.map(|s| s.name.clone()),
            logical: slot.is_some_and(|s| s.logical),
            restart_lsn: slot.and_then(|s| s.restart_lsn).map(lsn),
            confirmed_flush_lsn: slot.and_then(|s| s.confirmed_flush).map(lsn),
            confirmed_behind: slot.and_then(|s| behind(s.confirmed_flush)),
            spill_files: spill.map(|s| s.files),
            spill_bytes: spill.map(|s| s.bytes),
            spill_bytes_peak: peak.map(|s| s.bytes),
        }
    }
}
