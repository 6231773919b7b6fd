//! The backup fields of `XLogCtlInsert`, the first member of `XLogCtlData` (`xlog.c`),
//! whose ShmemIndex entry "XLOG Ctl" is its address. x86_64, per major:
//!
//! ```text
//!   0 slock_t insertpos_lck; 8 uint64 CurrBytePos; 16 uint64 PrevBytePos;
//!  24 char pad[PG_CACHE_LINE_SIZE = 128];
//! 152 XLogRecPtr RedoRecPtr;
//! 12–14: 160 bool forcePageWrites; 161 bool fullPageWrites;
//!        164 ExclusiveBackupState exclusiveBackupState; 168 int nonExclusiveBackups;
//!        176 XLogRecPtr lastBackupStart;
//! 15+:   160 bool forcePageWrites; 161 bool fullPageWrites; 164 int runningBackups;
//!        168 XLogRecPtr lastBackupStart;
//! ```
//!
//! Later majors dropped `forcePageWrites`, which moved nothing: `int` aligns to 4 after
//! one or two bools. The live tests check `lastBackupStart` against what the start function returned
//! on every major.

use crate::process::memory::{maps, shmem_index_lookup, MemError, Pid, ProcMem};

/// Offsets inside `XLogCtlData` of the fields read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XlogLayout {
    pub redo: usize,
    /// `exclusiveBackupState` (12–14 only).
    pub exclusive_state: Option<usize>,
    /// `runningBackups` (15+) or `nonExclusiveBackups` (12–14).
    pub running: usize,
    pub last_backup_start: usize,
}

impl XlogLayout {
    /// Bytes to read to cover every field.
    pub fn span(&self) -> usize {
        self.last_backup_start + 8
    }
}

pub fn layout(major: u32) -> Option<XlogLayout> {
    match major {
        12..=14 => Some(XlogLayout {
            redo: 152,
            exclusive_state: Some(164),
            running: 168,
            last_backup_start: 176,
        }),
        15..=18 => Some(XlogLayout {
            redo: 152,
            exclusive_state: None,
            running: 164,
            last_backup_start: 168,
        }),
        _ => None,
    }
}

/// `ExclusiveBackupState`: NONE, STARTING, IN_PROGRESS, STOPPING.
const EXCLUSIVE_BACKUP_STOPPING: u32 = 3;
/// A count above MAX_BACKENDS (2^18 - 1) is not a count of backups.
const MAX_RUNNING: u32 = 1 << 18;

/// `Insert.CurrBytePos`: the insert position in usable bytes (page headers not counted).
pub const CURR_BYTE_POS: usize = 8;

/// `SizeOfXLogShortPHD` and `SizeOfXLogLongPHD` (MAXALIGNed page headers).
const SHORT_PHD: u64 = 24;
const LONG_PHD: u64 = 40;

/// `XLogBytePosToRecPtr`: a byte position (headers skipped) as an LSN, for WAL segments of
/// `seg` bytes and pages of `blck` bytes: where the next record would start, past the
/// header of a page not begun yet (`pg_current_wal_insert_lsn()`). None for sizes no server
/// has (from a torn or hostile pg_control) or a position whose LSN overflows.
pub fn byte_pos_to_rec_ptr(pos: u64, seg: u64, blck: u64) -> Option<u64> {
    to_lsn(pos, seg, blck, false)
}

/// `XLogBytePosToEndRecPtr`: the same position as the end of the WAL written up to it. At a
/// page boundary it is the boundary itself, not past the next page's header: a walsender
/// that has sent everything is then 0 bytes behind, not a page header's 24.
pub fn byte_pos_to_end_rec_ptr(pos: u64, seg: u64, blck: u64) -> Option<u64> {
    to_lsn(pos, seg, blck, true)
}

fn to_lsn(pos: u64, seg: u64, blck: u64, end: bool) -> Option<u64> {
    let sane = |v: u64, lo: u64, hi: u64| v.is_power_of_two() && (lo..=hi).contains(&v);
    if !sane(blck, 1024, 65536) || !sane(seg, 1 << 20, 1 << 30) || seg < blck {
        return None;
    }
    let usable_page = blck - SHORT_PHD;
    let usable_seg = (seg / blck) * usable_page - (LONG_PHD - SHORT_PHD);
    let full_segs = pos / usable_seg;
    let mut left = pos % usable_seg;
    let offset = if left < blck - LONG_PHD {
        if end && left == 0 {
            0
        } else {
            left + LONG_PHD
        }
    } else {
        left -= blck - LONG_PHD;
        let full_pages = left / usable_page;
        left %= usable_page;
        if end && left == 0 {
            (full_pages + 1) * blck
        } else {
            (full_pages + 1) * blck + left + SHORT_PHD
        }
    };
    full_segs.checked_mul(seg)?.checked_add(offset)
}

/// What the fields say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XlogBackupState {
    /// Backups running: the non-exclusive count, plus one for an exclusive backup.
    pub running: u32,
    /// An exclusive backup is starting, in progress or stopping (12–14).
    pub exclusive: bool,
    /// `lastBackupStart`: 0 when no backup ran since the server started.
    pub last_backup_start: u64,
    /// `Insert.RedoRecPtr`, the current redo point.
    pub redo: u64,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(
        b.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Decode the start of `XLogCtlData`; None when the bytes cannot be these fields: a
/// count out of range, an unknown exclusive state, no redo point (a running server
/// always has one), or a backup start after the current redo point (the start is some
/// checkpoint's redo, and redo points only move forward). Pure, for hostile bytes.
pub fn decode(b: &[u8], l: &XlogLayout) -> Option<XlogBackupState> {
    let redo = u64_at(b, l.redo)?;
    let last = u64_at(b, l.last_backup_start)?;
    let count = u32_at(b, l.running)?;
    let excl = match l.exclusive_state {
        Some(o) => u32_at(b, o)?,
        None => 0,
    };
    if count > MAX_RUNNING || excl > EXCLUSIVE_BACKUP_STOPPING || redo == 0 || last > redo {
        return None;
    }
    Some(XlogBackupState {
        running: count + u32::from(excl != 0),
        exclusive: excl != 0,
        last_backup_start: last,
        redo,
    })
}

/// "XLOG Ctl" of one cluster as a process maps it.
pub struct XlogReader {
    mem: ProcMem,
    layout: XlogLayout,
    addr: u64,
}

impl XlogReader {
    pub fn open(pid: Pid, major: u32) -> Result<XlogReader, MemError> {
        let layout = layout(major).ok_or_else(|| MemError::Layout {
            pid,
            what: format!("no XLogCtl layout for PostgreSQL {major}"),
        })?;
        let mem = ProcMem::open(pid)?;
        let maps = maps(pid)?;
        let (addr, size) = shmem_index_lookup(&mem, &maps, "XLOG Ctl")?;
        if size < layout.span() as u64 {
            return Err(MemError::Layout {
                pid,
                what: format!("\"XLOG Ctl\" is {size} bytes: not PostgreSQL {major}'s"),
            });
        }
        Ok(XlogReader { mem, layout, addr })
    }

    /// `Insert.CurrBytePos` now (one aligned 8-byte word: never torn).
    pub fn curr_byte_pos(&self) -> Result<u64, MemError> {
        self.mem.read_u64(self.addr + CURR_BYTE_POS as u64)
    }

    /// The fields now. They change under WAL insertion locks, which are not taken here:
    /// two reads that agree are one state.
    pub fn read(&self) -> Result<XlogBackupState, MemError> {
        let n = self.layout.span();
        let mut prev = self.mem.read_vec(self.addr, n)?;
        for _ in 0..10 {
            let b = self.mem.read_vec(self.addr, n)?;
            let same = |o: usize, w: usize| b.get(o..o + w) == prev.get(o..o + w);
            let l = &self.layout;
            if same(l.running, 4)
                && same(l.last_backup_start, 8)
                && l.exclusive_state.map_or(true, |o| same(o, 4))
            {
                return decode(&b, l).ok_or_else(|| MemError::Layout {
                    pid: self.mem.pid,
                    what: "\"XLOG Ctl\" does not hold a WAL insert state".into(),
                });
            }
            prev = b;
        }
        Err(MemError::Layout {
            pid: self.mem.pid,
            what: "\"XLOG Ctl\" kept changing".into(),
        })
    }
}
