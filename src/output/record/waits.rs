//! The `waits` record: where a traced process's time went, per interval and since attach.
//! Two sources fill it: sampling the backend's `wait_event_info` from shared memory
//! (`events`, `queries`), and the kernel (scheduler times, I/O latency per relation).

use crate::trace::Pid;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitsRecord {
    pub ts: f64,
    pub pid: Pid,
    /// `interval` (the last interval) or `total` (since attach).
    pub scope: String,
    /// Sampling rate of `wait_event_info`.
    pub hz: f64,
    pub samples: u64,
    pub window_s: f64,
    /// From the scheduler: null when not measured.
    pub cpu_s: Option<f64>,
    pub off_cpu_s: Option<f64>,
    /// The part of `off_cpu_s` in uninterruptible sleep (D state: mostly the device).
    pub uninterruptible_s: Option<f64>,
    pub runqueue_s: Option<f64>,
    pub events: Vec<WaitShare>,
    pub queries: Vec<QueryWaits>,
    pub io_latency: Vec<IoLatencyRow>,
    /// `--exact-waits`: every wait of the scope, from a watchpoint; null when off.
    pub exact: Option<Vec<ExactWait>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExactWait {
    pub wait_event_type: String,
    pub wait_event: String,
    /// Waits that began in the scope.
    pub count: u64,
    pub seconds: f64,
    /// Of `window_s`, 0–1.
    pub share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitShare {
    /// Null for time on CPU (no wait event set).
    pub wait_event_type: Option<String>,
    pub wait_event: Option<String>,
    pub samples: u64,
    pub share: f64,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryWaits {
    /// The server's query id where it has one (14+, `compute_query_id`), else null.
    pub query_id: Option<i64>,
    pub query: Option<String>,
    pub samples: u64,
    /// Seconds on a CPU while this query was active (the process's CPU clock between
    /// samples); null when not measured (cluster-wide profiles).
    #[serde(default)]
    pub cpu_s: Option<f64>,
    pub top_waits: Vec<WaitShare>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IoLatencyRow {
    pub relation: String,
    pub fork: Option<String>,
    /// `read`, `write` or `fsync`.
    pub op: String,
    pub count: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Share of these calls served from the page cache; null when it cannot be told.
    pub page_cache_share: Option<f64>,
}
