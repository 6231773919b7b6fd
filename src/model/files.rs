//! Per open file: what it is, where the process is in it, how much it moved.

use crate::pgdata::relfile::{Fork, RelFileLocator};
use crate::trace::{FollowerRole, Pid, Syscall};
use std::sync::Arc;

/// Which relation a file belongs to, as the namer found it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RelIdentity {
    /// The relation's files: what groups its forks and segments.
    pub locator: RelFileLocator,
    /// Its main-fork path, as `pg_relation_filepath()` prints it.
    pub path: String,
    /// `sales.orders`, or `base/5/98765 (not in catalog yet)`.
    pub label: String,
    pub schema: Option<String>,
    pub name: Option<String>,
    #[serde(with = "crate::model::sstr::opt")]
    pub kind: Option<crate::model::sstr::Static>,
    /// The table an index or TOAST table serves, `schema.name`.
    pub table: Option<String>,
    pub known: bool,
}

/// A relation file: its relation, and which fork and segment of it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RelInfo {
    pub id: RelIdentity,
    pub fork: Fork,
    pub segment: u32,
}

/// A path, named.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Named {
    /// Relative to the data directory, when inside the cluster.
    pub relpath: Option<String>,
    /// `relation`, `temp_relation`, `temp_file`, `wal`, `slru`, `control`, `other`.
    #[serde(with = "crate::model::sstr")]
    pub class: crate::model::sstr::Static,
    /// What the UI shows: `sales.orders`, `orders_pkey → sales.orders`, `temp file 2`,
    /// `WAL 000000010000000A000000F3`, or the path.
    pub label: String,
    /// Shared, so that the per-read path clones a pointer, not the strings.
    pub relation: Option<Arc<RelInfo>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OpCounts {
    pub reads: u64,
    pub writes: u64,
    pub seeks: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FileEntry {
    pub pid: Pid,
    pub fd: i32,
    pub path: String,
    pub named: Named,
    /// Opened by an io worker (PG18 io_method=worker) on behalf of backends.
    pub via_io_worker: bool,
    /// Opened by a parallel worker of the traced leader.
    pub via_parallel_worker: bool,
    /// The file position (what the next plain read continues from), when known.
    pub pos: Option<u64>,
    /// Where the last read or write started, and its length.
    pub last_offset: Option<u64>,
    pub last_len: u64,
    /// The furthest byte reached by any read or write.
    pub highest: u64,
    pub size: Option<u64>,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub ops: OpCounts,
    pub errors: u64,
    pub last_op: Option<Syscall>,
    pub opened_ns: u64,
    pub last_ns: u64,
    /// When it was last read, and last written (0: never).
    pub last_read_ns: u64,
    pub last_write_ns: u64,
    /// Bytes moved since the last tick, and the smoothed rate.
    pub pending_bytes: u64,
    pub(crate) rate_window: Window,
    pub rate_bps: f64,
    pub(crate) size_checked_ns: u64,
    /// Its figures are guessed (the procfs backend credits `rchar` growth to a file).
    pub estimate: bool,
}

/// Exponential smoothing with a ~3 s time constant: steady enough to read, quick enough
/// to show a stall within seconds.
/// The first rate waits for this much time with data: a burst right after attach (a
/// throttled base backup reads 512 KiB at once, then sleeps) is not the pace.
const FIRST_WINDOW_NS: u64 = 1_000_000_000;

/// Time over which `pending` units have accumulated, for [`smooth`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Window {
    ns: u64,
    started: bool,
}

/// Fold `pending` units seen over the window plus `dt_ns` into an exponentially smoothed
/// rate per second (3 s time constant). The first value is the plain average over at
/// least [`FIRST_WINDOW_NS`] from the first data; smoothing from zero would understate the
/// rate (and overstate the ETA) for several seconds.
pub(crate) fn smooth(rate: f64, pending: &mut u64, w: &mut Window, dt_ns: u64) -> f64 {
    if !w.started && *pending == 0 {
        w.ns = 0;
        return rate;
    }
    w.ns = w.ns.saturating_add(dt_ns);
    if w.ns == 0 || (!w.started && w.ns < FIRST_WINDOW_NS) {
        return rate;
    }
    let dt = w.ns as f64 / 1e9;
    let sample = *pending as f64 / dt;
    *pending = 0;
    w.ns = 0;
    if !w.started {
        w.started = true;
        return sample;
    }
    let alpha = 1.0 - (-dt / 3.0).exp();
    rate + alpha * (sample - rate)
}

impl FileEntry {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pid: Pid,
        fd: i32,
        path: &str,
        named: Named,
        role: Option<FollowerRole>,
        ts: u64,
        pos: Option<u64>,
        size: Option<u64>,
    ) -> FileEntry {
        FileEntry {
            pid,
            fd,
            path: path.to_string(),
            named,
            via_io_worker: role == Some(FollowerRole::IoWorker),
            via_parallel_worker: role == Some(FollowerRole::ParallelWorker),
            pos,
            last_offset: None,
            last_len: 0,
            highest: 0,
            size,
            bytes_read: 0,
            bytes_written: 0,
            ops: OpCounts::default(),
            errors: 0,
            last_op: None,
            opened_ns: ts,
            last_ns: 0,
            last_read_ns: 0,
            last_write_ns: 0,
            pending_bytes: 0,
            rate_window: Default::default(),
            rate_bps: 0.0,
            size_checked_ns: ts,
            estimate: false,
        }
    }

    pub fn record_read(&mut self, sc: Syscall, start: u64, n: u64, ts: u64) {
        self.bytes_read += n;
        self.ops.reads += 1;
        self.last_read_ns = ts;
        self.touch(sc, start, n, ts);
    }

    pub fn record_write(&mut self, sc: Syscall, start: u64, n: u64, ts: u64) {
        self.bytes_written += n;
        self.ops.writes += 1;
        self.last_write_ns = ts;
        self.touch(sc, start, n, ts);
        // What was just written is in the file: a size stat'ed before it (a temp file
        // opened empty, re-read once a second) is not its size any more.
        let end = start.saturating_add(n);
        if n > 0 && self.size.map_or(true, |s| s < end) {
            self.size = Some(end);
        }
    }

    fn touch(&mut self, sc: Syscall, start: u64, n: u64, ts: u64) {
        self.last_offset = Some(start);
        self.last_len = n;
        self.highest = self.highest.max(start + n);
        self.last_op = Some(sc);
        self.last_ns = ts;
        self.pending_bytes += n;
    }

    pub(crate) fn tick(&mut self, dt_ns: u64) {
        self.rate_bps = smooth(
            self.rate_bps,
            &mut self.pending_bytes,
            &mut self.rate_window,
            dt_ns,
        );
    }

    /// Whether a read or write of it was seen since attach.
    pub fn read_since_attach(&self) -> bool {
        self.last_offset.is_some()
    }

    /// Where the process is in the file: the end of its last read or write. A relation
    /// file's position says nothing (PostgreSQL reads with pread; the position is where
    /// smgr's `lseek(SEEK_END)` size probe left it); that of a file read with read() (WAL,
    /// temp files) is where the next read starts.
    pub fn offset(&self) -> Option<u64> {
        match self.last_offset {
            Some(o) => Some(o.saturating_add(self.last_len)),
            None if self.named.relation.is_none() => self.pos,
            None => None,
        }
    }

    /// Percent of the file below the furthest point reached.
    pub fn percent(&self) -> Option<f64> {
        let size = self.size.filter(|&s| s > 0)?;
        let at = self.offset()?;
        Some((at as f64 * 100.0 / size as f64).min(100.0))
    }
}
