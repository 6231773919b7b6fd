//! The records of a trace in line mode (`pg_trace -p PID --format json`).

use crate::trace::{EventKind, Pid, QueryPhase};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttachRecord {
    pub pid: Pid,
    pub title: String,
    pub backend: String,
    pub limitations: Vec<String>,
    pub usdt: UsdtRecord,
    pub datadir: String,
    pub major: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsdtRecord {
    pub active: bool,
    pub reason: Option<String>,
    pub probes: Vec<String>,
    /// What the per-block probes were expected to cost the backend, from its buffer
    /// accesses sampled before they went on; None when not computed.
    #[serde(default)]
    pub cost: Option<UsdtCostRecord>,
}

/// `usdt.cost` of the attach record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsdtCostRecord {
    pub accesses_per_s: f64,
    pub per_access_probes: Vec<String>,
    pub ns_per_access: f64,
    pub slowdown: f64,
    pub warned: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    pub ts: f64,
    pub pid: Pid,
    pub fd: i32,
    pub path: String,
    pub relpath: Option<String>,
    pub class: String,
    pub object: String,
    pub schema: Option<String>,
    pub name: Option<String>,
    pub kind: Option<String>,
    pub table: Option<String>,
    pub fork: Option<String>,
    pub segment: Option<u32>,
    pub relation: Option<String>,
    pub known: Option<bool>,
    /// Null until a read or write of it was seen since attach.
    pub offset: Option<u64>,
    /// False until then; offset and percent are null (a relation file's position is not
    /// progress).
    #[serde(default = "yes")]
    pub read_since_attach: bool,
    /// The figures are guessed (procfs backend).
    #[serde(default)]
    pub estimate: bool,
    pub highest: u64,
    pub pos: Option<u64>,
    pub size: Option<u64>,
    pub percent: Option<f64>,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub reads: u64,
    pub writes: u64,
    pub rate_bps: f64,
    pub last_op: Option<String>,
    pub io_worker: bool,
    pub parallel_worker: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressRecord {
    pub ts: f64,
    pub relation: String,
    pub object: String,
    pub schema: Option<String>,
    pub name: Option<String>,
    pub kind: Option<String>,
    pub table: Option<String>,
    pub known: bool,
    pub size: Option<u64>,
    pub position: Option<u64>,
    pub highest: u64,
    pub percent: Option<f64>,
    /// Some of the figures are guessed (procfs backend).
    #[serde(default)]
    pub estimate: bool,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub reads: u64,
    pub segments: Vec<u32>,
    pub forks: Vec<String>,
    pub rate_bps: f64,
    /// Bytes written per second (moving average), only for a relation written to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_rate_bps: Option<f64>,
    pub eta_s: Option<f64>,
    pub blocks_hit: u64,
    pub blocks_read: u64,
    pub hit_ratio: Option<f64>,
    pub blocks_per_s: f64,
    pub last_block: Option<u32>,
    pub coverage_blocks: u64,
    pub coverage: Option<f64>,
    pub smgr_blocks_read: u64,
    pub smgr_blocks_written: u64,
    /// Main-fork bytes counted as passed because shared buffers held them: a sequential
    /// scan finds them there and never reads them from the file.
    #[serde(default)]
    pub from_shared_buffers_bytes: u64,
    /// The query ended short of the end, and shared memory could not be read to tell
    /// whether the rest was in shared buffers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rest_may_be_in_shared_buffers: bool,
    /// Present (and true) only in the records written at the end.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub r#final: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueryRecord {
    pub ts: f64,
    pub pid: Pid,
    pub phase: QueryPhase,
    pub text: String,
    pub truncated: bool,
    pub done: bool,
    pub duration_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockWaitRecord {
    pub ts: f64,
    pub pid: Pid,
    pub waiting: bool,
    pub duration_s: Option<f64>,
    pub mode: String,
    pub locktag_type: u8,
    pub locktag: [u32; 4],
    pub object: String,
    pub relation: Option<String>,
    pub schema: Option<String>,
    pub name: Option<String>,
    pub kind: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsRecord {
    pub ts: f64,
    pub events: u64,
    pub events_per_s: f64,
    pub lost: BTreeMap<String, u64>,
    pub files_open: u64,
    pub sorts: u64,
    pub sorts_external: u64,
    /// The /proc backend only (null otherwise): bytes read that no evidence ties to a file.
    #[serde(default)]
    pub unattributed: Option<UnattributedReads>,
    /// Nanoseconds of run time of pg_trace's BPF programs per second of wall time, from
    /// the kernel's BPF statistics; null when not measured (see docs/json.md).
    #[serde(default)]
    pub probe_ns_per_s: Option<f64>,
    #[serde(default)]
    pub probe_runs_per_s: Option<f64>,
    /// Of `probe_runs_per_s`, USDT probe runs (each also costs a uprobe trap).
    #[serde(default)]
    pub usdt_runs_per_s: Option<f64>,
    /// pg_trace's own CPU, as a fraction of one core.
    #[serde(default)]
    pub self_cpu: Option<f64>,
    #[serde(default)]
    pub self_rss_bytes: Option<u64>,
}

/// Bytes the traced processes read (`/proc/PID/io` rchar) that no sample of
/// `/proc/PID/syscall` tied to a file: pg_trace does not know which file they came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnattributedReads {
    pub bytes_read: u64,
    /// Always true: like every /proc figure, an estimate.
    pub estimate: bool,
}

/// `deny_unknown_fields`: a non-I/O event also says `"type":"syscall"`, and must not be
/// read as this record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyscallRecord {
    pub ts: f64,
    pub pid: Pid,
    pub syscall: String,
    pub fd: i32,
    pub path: Option<String>,
    pub object: Option<String>,
    pub offset: Option<u64>,
    pub bytes: Option<u64>,
    pub result: Option<i64>,
}

/// With `-d`, an event that is not an I/O system call: its own fields (`event` first), then
/// `type`, `ts` and `pid`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyscallEventRecord {
    #[serde(flatten)]
    pub event: EventKind,
    #[serde(rename = "type")]
    pub tag: SyscallTag,
    pub ts: f64,
    pub pid: Pid,
}

/// The `"type": "syscall"` of a [`SyscallEventRecord`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyscallTag {
    #[default]
    #[serde(rename = "syscall")]
    Syscall,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryRecord {
    pub pid: Pid,
    pub exited: bool,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    pub events: u64,
    pub lost: BTreeMap<String, u64>,
    pub relations: u64,
}

fn yes() -> bool {
    true
}
