//! Per relation, across its segments and forks: how far through it the process is.

use super::coverage::Coverage;
use super::files::{smooth, RelIdentity, RelInfo};
use crate::pgdata::relfile::Fork;
use crate::trace::BlockProbe;
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
    pub(crate) rate_window: super::files::Window,
    pub(crate) blocks_window: super::files::Window,
    pub rate_bps: f64,
    /// Which parts of the main fork were read.
    pub coverage: Coverage,
    pub(crate) size_checked_ns: u64,
    /// USDT `buffer__read__done`, all forks (as pg_statio counts them): blocks found in
    /// shared buffers, and blocks that had to be read.
    pub blocks_hit: u64,
    pub blocks_read: u64,
    /// USDT smgr probes: blocks read from / written to the files.
    pub smgr_blocks_read: u64,
    pub smgr_blocks_written: u64,
    /// The last main-fork block a USDT probe named.
    pub last_block: Option<u32>,
    pub pending_blocks: u64,
    /// Block accesses per second (hits and misses).
    pub blocks_per_s: f64,
    /// Some of its reads are guessed (the procfs backend credits `rchar` growth).
    pub estimate: bool,
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
            rate_window: Default::default(),
            blocks_window: Default::default(),
            rate_bps: 0.0,
            coverage: Coverage::new(),
            size_checked_ns: ts,
            blocks_hit: 0,
            blocks_read: 0,
            smgr_blocks_read: 0,
            smgr_blocks_written: 0,
            last_block: None,
            pending_blocks: 0,
            blocks_per_s: 0.0,
            estimate: false,
        }
    }

    /// Blocks named by a USDT probe. Only `buffer__read__done` counts accesses (every
    /// access fires it once); the others (attached on request) add coverage and I/O counts.
    #[allow(clippy::too_many_arguments)]
    pub fn record_block(
        &mut self,
        r: &RelInfo,
        probe: BlockProbe,
        block: u32,
        nblocks: u32,
        hit: Option<bool>,
        write: bool,
        ts: u64,
        block_bytes: u64,
    ) {
        self.last_ns = ts;
        self.forks.insert(r.fork.as_str());
        let n = u64::from(nblocks);
        match probe {
            BlockProbe::BufferReadDone => {
                self.pending_blocks += n;
                match hit {
                    Some(true) => self.blocks_hit += n,
                    _ => self.blocks_read += n,
                }
            }
            BlockProbe::SmgrReadDone => self.smgr_blocks_read += n,
            BlockProbe::SmgrWriteDone => self.smgr_blocks_written += n,
            _ => {}
        }
        if r.fork == Fork::Main && !(write && probe == BlockProbe::BufferReadDone) {
            let begin = u64::from(block) * block_bytes;
            let end = begin + n * block_bytes;
            self.coverage.mark(begin, n * block_bytes);
            self.last_block = Some(block.saturating_add(nblocks.saturating_sub(1)));
            self.position = Some(end);
            self.highest = self.highest.max(end);
            if self.size.is_some_and(|s| s < end) {
                self.size = Some(end);
            }
        }
    }

    /// Read or written through syscalls, or accessed through the buffer manager (USDT).
    pub fn touched(&self) -> bool {
        self.bytes_read + self.bytes_written + self.blocks_hit + self.blocks_read > 0
    }

    /// Share of block accesses found in shared buffers.
    pub fn hit_ratio(&self) -> Option<f64> {
        let total = self.blocks_hit + self.blocks_read;
        (total > 0).then(|| self.blocks_hit as f64 / total as f64)
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
        self.rate_bps = smooth(
            self.rate_bps,
            &mut self.pending_bytes,
            &mut self.rate_window,
            dt_ns,
        );
        self.blocks_per_s = smooth(
            self.blocks_per_s,
            &mut self.pending_blocks,
            &mut self.blocks_window,
            dt_ns,
        );
    }

    /// Position of the last read within the whole relation, in percent.
    pub fn percent(&self) -> Option<f64> {
        let size = self.size.filter(|&s| s > 0)?;
        Some((self.position? as f64 * 100.0 / size as f64).min(100.0))
    }

    /// Seconds to the end at the current rate.
    pub fn eta_s(&self) -> Option<f64> {
        let left = self.size?.saturating_sub(self.position?);
        let rate = self.progress_bps();
        (rate > 1.0).then(|| left as f64 / rate)
    }

    /// How fast the position moves: bytes read through syscalls, or, seen only through
    /// USDT, block accesses (a sequential scan touches each block once).
    pub fn progress_bps(&self) -> f64 {
        if self.rate_bps > 1.0 || self.blocks_per_s <= 0.0 {
            self.rate_bps
        } else {
            self.blocks_per_s * super::coverage::BLOCK as f64
        }
    }
}
