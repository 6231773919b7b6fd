//! Transaction status from `pg_xact` (clog.c) and the tuple visibility rule built on it.
//!
//! The rule is "latest committed version": a simplification of HeapTupleSatisfiesMVCC that
//! needs no snapshot. Hint bits are trusted first, pg_xact second. On-disk pg_xact lags the
//! server until a checkpoint, so an XID it calls in progress may in fact have committed;
//! such tuples come back as [`Visibility::Pending`] and the catalog keeps them as a fallback.

use super::catalog::Overlay;
use super::page::{
    xmax_is_locked_only, HeapTuple, HEAP_XMAX_COMMITTED, HEAP_XMAX_INVALID, HEAP_XMAX_IS_MULTI,
    HEAP_XMIN_COMMITTED, HEAP_XMIN_INVALID,
};
use std::collections::HashMap;
use std::path::PathBuf;

pub const INVALID_TRANSACTION_ID: u32 = 0;
pub const BOOTSTRAP_TRANSACTION_ID: u32 = 1;
pub const FROZEN_TRANSACTION_ID: u32 = 2;
pub const FIRST_NORMAL_TRANSACTION_ID: u32 = 3;
pub const SLRU_PAGES_PER_SEGMENT: u32 = 32;
const CLOG_XACTS_PER_BYTE: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XidStatus {
    InProgress,
    Committed,
    Aborted,
    SubCommitted,
}

/// Where one XID's two status bits live: (segment number, byte in segment, bit shift).
pub fn clog_position(xid: u32, blcksz: u32) -> (u32, usize, u32) {
    let per_page = blcksz * CLOG_XACTS_PER_BYTE;
    let page = xid / per_page;
    let seg = page / SLRU_PAGES_PER_SEGMENT;
    let byte = (page % SLRU_PAGES_PER_SEGMENT) as usize * blcksz as usize
        + ((xid % per_page) / CLOG_XACTS_PER_BYTE) as usize;
    (seg, byte, (xid % CLOG_XACTS_PER_BYTE) * 2)
}

/// Status of `xid` in the bytes of its segment file; past the end means not yet written.
pub fn status_in_segment(segment: &[u8], xid: u32, blcksz: u32) -> XidStatus {
    let (_, byte, shift) = clog_position(xid, blcksz);
    match segment.get(byte).map(|b| (b >> shift) & 3) {
        Some(1) => XidStatus::Committed,
        Some(2) => XidStatus::Aborted,
        Some(3) => XidStatus::SubCommitted,
        _ => XidStatus::InProgress,
    }
}

/// `TransactionIdPrecedes` for normal XIDs: modulo-2^32 comparison.
pub fn xid_precedes(a: u32, b: u32) -> bool {
    if a < FIRST_NORMAL_TRANSACTION_ID || b < FIRST_NORMAL_TRANSACTION_ID {
        return a < b;
    }
    (a.wrapping_sub(b) as i32) < 0
}

pub trait XidLookup {
    fn status(&mut self, xid: u32) -> XidStatus;
}

/// pg_xact of one data directory, segment files read lazily and kept for the lookup's life.
pub struct Clog {
    dir: PathBuf,
    blcksz: u32,
    oldest_xid: u32,
    segments: HashMap<u32, Option<Vec<u8>>>,
}

impl Clog {
    pub fn new(datadir: &std::path::Path, blcksz: u32, oldest_xid: u32) -> Clog {
        Clog {
            dir: datadir.join("pg_xact"),
            blcksz,
            oldest_xid,
            segments: HashMap::new(),
        }
    }
}

impl XidLookup for Clog {
    fn status(&mut self, xid: u32) -> XidStatus {
        match xid {
            INVALID_TRANSACTION_ID => return XidStatus::Aborted,
            BOOTSTRAP_TRANSACTION_ID | FROZEN_TRANSACTION_ID => return XidStatus::Committed,
            _ => {}
        }
        let (seg, _, _) = clog_position(xid, self.blcksz);
        let dir = &self.dir;
        // A larger file is not a segment: do not slurp it.
        let max = u64::from(SLRU_PAGES_PER_SEGMENT) * u64::from(self.blcksz);
        let data = self
            .segments
            .entry(seg)
            .or_insert_with(|| super::read_capped(&dir.join(format!("{seg:04X}")), max).ok());
        match data {
            Some(bytes) => status_in_segment(bytes, xid, self.blcksz),
            // Truncated away: older than the freeze horizon, so it committed long ago (its
            // tuples should be frozen anyway). A missing segment above the horizon is one
            // the server has not written yet.
            None if xid_precedes(xid, self.oldest_xid) => XidStatus::Committed,
            None => XidStatus::InProgress,
        }
    }
}

/// Transaction status from memory first (the server's `pg_xact` SLRU buffers, current),
/// from disk second (pages not in memory were written before they were evicted, so disk
/// is current for them).
pub struct MemoryFirst<'a> {
    memory: &'a mut dyn Overlay,
    disk: &'a mut Clog,
    /// Transactions found still running: when one ends, names may change with no page
    /// changing (a commit only sets clog bits).
    pub open: std::collections::BTreeSet<u32>,
}

impl<'a> MemoryFirst<'a> {
    pub fn new(memory: &'a mut dyn Overlay, disk: &'a mut Clog) -> MemoryFirst<'a> {
        MemoryFirst {
            memory,
            disk,
            open: Default::default(),
        }
    }
}

impl XidLookup for MemoryFirst<'_> {
    fn status(&mut self, xid: u32) -> XidStatus {
        match xid {
            INVALID_TRANSACTION_ID => return XidStatus::Aborted,
            BOOTSTRAP_TRANSACTION_ID | FROZEN_TRANSACTION_ID => return XidStatus::Committed,
            _ => {}
        }
        let s = match self.memory.xid_status(xid) {
            Some(s) => s,
            None => self.disk.status(xid),
        };
        if matches!(s, XidStatus::InProgress | XidStatus::SubCommitted) {
            self.open.insert(xid);
        }
        s
    }
}

/// The status two clog bits encode (`TRANSACTION_STATUS_*`).
pub fn status_from_bits(bits: u8) -> XidStatus {
    match bits & 3 {
        1 => XidStatus::Committed,
        2 => XidStatus::Aborted,
        3 => XidStatus::SubCommitted,
        _ => XidStatus::InProgress,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    Visible,
    Invisible,
    /// Inserted by a transaction that has not committed as far as the disk knows, and not
    /// deleted: a relation being created or rewritten right now, or a commit the server has
    /// not checkpointed yet.
    Pending,
}

pub fn tuple_visibility(t: &HeapTuple<'_>, clog: &mut impl XidLookup) -> Visibility {
    let m = t.infomask;
    let xmin_pending = if m & HEAP_XMIN_COMMITTED != 0 {
        false // includes HEAP_XMIN_FROZEN
    } else if m & HEAP_XMIN_INVALID != 0 {
        return Visibility::Invisible;
    } else {
        match clog.status(t.xmin) {
            XidStatus::Committed => false,
            XidStatus::Aborted => return Visibility::Invisible,
            XidStatus::InProgress | XidStatus::SubCommitted => true,
        }
    };
    let deleted = if m & HEAP_XMAX_INVALID != 0 || t.xmax == 0 || xmax_is_locked_only(m) {
        false
    } else if m & HEAP_XMAX_IS_MULTI != 0 {
        // An updating multixact needs pg_multixact; catalogs practically never have one.
        false
    } else if m & HEAP_XMAX_COMMITTED != 0 {
        true
    } else {
        clog.status(t.xmax) == XidStatus::Committed
    };
    match (xmin_pending, deleted) {
        (_, true) => Visibility::Invisible,
        (true, false) => Visibility::Pending,
        (false, false) => Visibility::Visible,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgdata::page::tests::synth_page;
    use crate::pgdata::page::{heap_tuples, HEAP_XMAX_LOCK_ONLY};

    struct Fixed(HashMap<u32, XidStatus>);
    impl XidLookup for Fixed {
        fn status(&mut self, xid: u32) -> XidStatus {
            *self.0.get(&xid).unwrap_or(&XidStatus::InProgress)
        }
    }

    #[test]
    fn clog_bits() {
        // xid 5: page 0, byte 1, shift 2.
        assert_eq!(clog_position(5, 8192), (0, 1, 2));
        assert_eq!(clog_position(1 << 20, 8192), (1, 0, 0));
        let seg = [0u8, 0b0000_0100];
        assert_eq!(status_in_segment(&seg, 5, 8192), XidStatus::Committed);
        assert_eq!(status_in_segment(&seg, 4, 8192), XidStatus::InProgress);
        assert_eq!(status_in_segment(&seg, 99999, 8192), XidStatus::InProgress);
    }

    #[test]
    fn wraparound_order() {
        assert!(xid_precedes(100, 200));
        assert!(xid_precedes(u32::MAX - 5, 10));
        assert!(!xid_precedes(10, u32::MAX - 5));
    }

    #[test]
    fn visibility_rule() {
        use XidStatus::*;
        let mut clog = Fixed(HashMap::from([
            (10, Committed),
            (11, Aborted),
            (12, InProgress),
        ]));
        let p = synth_page(
            8192,
            &[
                (10, 0, HEAP_XMAX_INVALID, vec![0; 8]),    // live
                (10, 10, 0, vec![0; 8]),                   // deleted, committed
                (11, 0, 0, vec![0; 8]),                    // aborted insert
                (12, 0, 0, vec![0; 8]),                    // in-progress insert
                (10, 12, 0, vec![0; 8]),                   // delete in progress
                (10, 10, HEAP_XMAX_LOCK_ONLY, vec![0; 8]), // only locked
                (99, 0, HEAP_XMIN_COMMITTED | HEAP_XMIN_INVALID, vec![0; 8]), // frozen
                (10, 0, HEAP_XMIN_INVALID, vec![0; 8]),    // hinted invalid
            ],
        );
        let got: Vec<_> = heap_tuples(&p)
            .map(|t| tuple_visibility(&t, &mut clog))
            .collect();
        use Visibility::*;
        assert_eq!(
            got,
            [Visible, Invisible, Invisible, Pending, Visible, Visible, Visible, Invisible]
        );
    }
}
