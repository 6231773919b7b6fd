//! Per relation, across its segments and forks: how far through it the process is.

use super::coverage::Coverage;
use super::files::{smooth, RelIdentity, RelInfo};
use crate::pgdata::path::Fork;
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq)]
pub struct RelState {
    pub id: RelIdentity,
    /// Main fork size, all segments.
    pub size: Option<u64>,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Where in the main fork (segments laid end to end) the last read ended.
    pub position: Option<u64>,
    /// The furthest point any read of the main fork reached.
    pub highest: u64,
    pub reads: u64,
    pub segments: BTreeSet<u32>,
    pub forks: BTreeSet<&'static str>,
    pub first_ns: u64,
    pub last_ns: u64,
    pub pending_bytes: u64,
    pub rate_bps: f64,
    /// Which parts of the main fork were read.
    pub coverage: Coverage,
    pub(crate) size_checked_ns: u64,
}

impl RelState {
    pub fn new(r: &RelInfo, size: Option<u64>, ts: u64) -> RelState {
        RelState {
            id: r.id.clone(),
            size,
            bytes_read: 0,
            bytes_written: 0,
            position: None,
            highest: 0,
            reads: 0,
            segments: BTreeSet::new(),
            forks: BTreeSet::new(),
            first_ns: ts,
            last_ns: 0,
            pending_bytes: 0,
            rate_bps: 0.0,
            coverage: Coverage::new(),
            size_checked_ns: ts,
        }
    }

    pub fn record_read(&mut self, r: &RelInfo, start: u64, n: u64, ts: u64, seg_bytes: u64) {
        self.bytes_read += n;
        self.reads += 1;
        self.pending_bytes += n;
        self.last_ns = ts;
        self.forks.insert(r.fork.as_str());
        if r.fork == Fork::Main {
            self.segments.insert(r.segment);
            let begin = u64::from(r.segment) * seg_bytes + start;
            let end = begin + n;
            self.coverage.mark(begin, n);
            self.position = Some(end);
            self.highest = self.highest.max(end);
            // A read past the size we knew means the relation grew (or we never knew).
            if self.size.is_some_and(|s| s < end) {
                self.size = Some(end);
            }
        }
    }

    pub(crate) fn tick(&mut self, dt_ns: u64) {
        self.rate_bps = smooth(self.rate_bps, self.pending_bytes, dt_ns);
        if dt_ns > 0 {
            self.pending_bytes = 0;
        }
    }

    /// Position of the last read within the whole relation, in percent.
    pub fn percent(&self) -> Option<f64> {
        let size = self.size.filter(|&s| s > 0)?;
        Some((self.position? as f64 * 100.0 / size as f64).min(100.0))
    }

    /// Seconds to the end at the current rate.
    pub fn eta_s(&self) -> Option<f64> {
        let left = self.size?.saturating_sub(self.position?);
        (self.rate_bps > 1.0).then(|| left as f64 / self.rate_bps)
    }
}
