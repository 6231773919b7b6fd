//! A walsender's side of replication, from shared memory, without a connection: its
//! `WalSnd` slot in "Wal Sender Ctl" (state, sent position, the standby's reported write,
//! flush and replay positions and the server's lag measurements — what
//! `pg_stat_replication` shows), the replication slot it holds in "ReplicationSlot Ctl"
//! (name, logical or physical, `restart_lsn`, `confirmed_flush`), the end of the WAL inserted
//! (`XLogCtl->Insert.CurrBytePos`, as `pg_current_wal_insert_lsn()` converts it, except at
//! a page boundary, which that function gives past the next page's header: a walsender
//! that has sent everything is 0 bytes behind),
//! and, for a logical slot, the transactions decoding spilled to `pg_replslot/<slot>/`.
//!
//! The pure parts ([`find_walsnd`], [`find_slot`], [`spill::tally`]) take bytes; [`Reader`]
//! is the I/O shell. Layouts per major in [`layout`].

pub mod layout;
pub mod spill;

use crate::process::memory::{maps, shmem_index_lookup, MemError, Pid, ProcMem};
use crate::process::server_backup::XlogReader;
use layout::{SlotLayout, WalSndLayout, NAME_LEN};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `WalSndState` as `pg_stat_replication.state` spells it.
pub const STATES: [&str; 5] = ["startup", "backup", "catchup", "streaming", "stopping"];

/// What one look at a walsender found. LSNs as numbers; None where the server has none
/// (InvalidXLogRecPtr: a client that reported no replay position, say).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalSenderSample {
    /// One of [`STATES`].
    pub state: String,
    pub sent: Option<u64>,
    pub write: Option<u64>,
    pub flush: Option<u64>,
    pub replay: Option<u64>,
    /// The server's lag measurements, µs; None for -1 (none measured, or caught up).
    pub write_lag_us: Option<i64>,
    pub flush_lag_us: Option<i64>,
    pub replay_lag_us: Option<i64>,
    /// The end of the WAL inserted, at the same read (see the module's note).
    pub insert: Option<u64>,
    /// The replication slot this walsender holds, when it holds one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<SlotSample>,
}

/// A replication slot as shared memory holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotSample {
    pub name: String,
    /// A logical slot (it belongs to a database).
    pub logical: bool,
    pub restart_lsn: Option<u64>,
    pub confirmed_flush: Option<u64>,
    /// Spill files of a logical slot: count and bytes (None when the directory could
    /// not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spill: Option<spill::Spill>,
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

fn lsn(v: u64) -> Option<u64> {
    (v != 0).then_some(v)
}

/// A lag in µs; -1 is "none". Anything below, or above a day, is not a lag the server
/// measured: read as none.
fn lag(v: u64) -> Option<i64> {
    let v = v as i64;
    (0..=86_400_000_000).contains(&v).then_some(v)
}

/// The slot of `pid` in the bytes of "Wal Sender Ctl". Pure: None when no slot has that
/// pid or its state is not a `WalSndState`.
pub fn find_walsnd(b: &[u8], l: &WalSndLayout, pid: Pid) -> Option<WalSenderSample> {
    let n = b.len().checked_sub(l.array)? / l.stride;
    (0..n).find_map(|i| {
        let base = l.array + i * l.stride;
        let at = |o: usize| base + o;
        if u32_at(b, at(l.pid))? != pid as u32 || pid <= 0 {
            return None;
        }
        let state = STATES.get(u32_at(b, at(l.state))? as usize)?;
        Some(WalSenderSample {
            state: state.to_string(),
            sent: lsn(u64_at(b, at(l.sent))?),
            write: lsn(u64_at(b, at(l.write))?),
            flush: lsn(u64_at(b, at(l.flush))?),
            replay: lsn(u64_at(b, at(l.apply))?),
            write_lag_us: lag(u64_at(b, at(l.write_lag))?),
            flush_lag_us: lag(u64_at(b, at(l.flush_lag))?),
            replay_lag_us: lag(u64_at(b, at(l.apply_lag))?),
            insert: None,
            slot: None,
        })
    })
}

/// A slot name as `ReplicationSlotValidateName` allows it: `[a-z0-9_]`, 1 to 63 bytes,
/// NUL-terminated. Anything else is not a slot name (and never becomes a path).
fn slot_name(b: &[u8]) -> Option<String> {
    let end = b.iter().position(|&c| c == 0)?;
    let name = &b[..end];
    let ok = !name.is_empty()
        && name
            .iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_');
    ok.then(|| String::from_utf8_lossy(name).into_owned())
}

/// The in-use slot whose `active_pid` is `pid`, in the bytes of "ReplicationSlot Ctl".
pub fn find_slot(b: &[u8], l: &SlotLayout, pid: Pid) -> Option<SlotSample> {
    if pid <= 0 || l.stride == 0 {
        return None;
    }
    (0..b.len() / l.stride).find_map(|i| {
        let at = |o: usize| i * l.stride + o;
        if *b.get(at(l.in_use))? != 1 || u32_at(b, at(l.active_pid))? != pid as u32 {
            return None;
        }
        Some(SlotSample {
            name: slot_name(b.get(at(l.name)..at(l.name) + NAME_LEN)?)?,
            logical: u32_at(b, at(l.database))? != 0,
            restart_lsn: lsn(u64_at(b, at(l.restart_lsn))?),
            confirmed_flush: lsn(u64_at(b, at(l.confirmed_flush))?),
            spill: None,
        })
    })
}

/// Structures bigger than this are not read whole (max_wal_senders and
/// max_replication_slots are at most 262143; a few thousand are plenty in practice).
const MAX_ENTRY: u64 = 4 << 20;

/// One cluster's walsender structures, as a process of it maps them.
pub struct Reader {
    mem: ProcMem,
    walsnd: (u64, u64, WalSndLayout),
    slots: Option<(u64, u64, SlotLayout)>,
    xlog: Option<XlogReader>,
    segment_bytes: u64,
    xlog_blcksz: u64,
    pgdata: PathBuf,
}

impl Reader {
    /// Through the memory of `via` (any process of the cluster), for the cluster at
    /// `pgdata` with pg_control's WAL segment and page sizes.
    pub fn open(
        via: Pid,
        major: u32,
        pgdata: &Path,
        segment_bytes: u64,
        xlog_blcksz: u64,
    ) -> Result<Reader, MemError> {
        let layout_err = |what: String| MemError::Layout { pid: via, what };
        let wl = layout::walsnd_layout(major)
            .ok_or_else(|| layout_err(format!("no WalSnd layout for PostgreSQL {major}")))?;
        let mem = ProcMem::open(via)?;
        let m = maps(via)?;
        let (addr, size) = shmem_index_lookup(&mem, &m, "Wal Sender Ctl")?;
        if size < (wl.array + wl.stride) as u64 || size > MAX_ENTRY {
            return Err(layout_err(format!(
                "\"Wal Sender Ctl\" is {size} bytes: not PostgreSQL {major}'s"
            )));
        }
        let slots = layout::slot_layout(major).and_then(|sl| {
            let (a, s) = shmem_index_lookup(&mem, &m, "ReplicationSlot Ctl").ok()?;
            (s >= sl.stride as u64 && s <= MAX_ENTRY).then_some((a, s, sl))
        });
        Ok(Reader {
            mem,
            walsnd: (addr, size, wl),
            slots,
            xlog: XlogReader::open(via, major).ok(),
            segment_bytes,
            xlog_blcksz,
            pgdata: pgdata.to_path_buf(),
        })
    }

    /// The walsender `pid` (as the server numbers it), its slot, the insert position and
    /// its spill files. `Ok(None)`: no walsender has that pid (not one, or not yet).
    pub fn read(&self, pid: Pid) -> Result<Option<WalSenderSample>, MemError> {
        let (addr, size, l) = &self.walsnd;
        let b = self.mem.read_vec(*addr, *size as usize)?;
        let Some(mut w) = find_walsnd(&b, l, pid) else {
            return Ok(None);
        };
        w.insert = self.xlog.as_ref().and_then(|x| {
            let pos = x.curr_byte_pos().ok()?;
            crate::process::server_backup::xlog::byte_pos_to_end_rec_ptr(
                pos,
                self.segment_bytes,
                self.xlog_blcksz,
            )
        });
        if let Some((a, s, sl)) = &self.slots {
            let b = self.mem.read_vec(*a, *s as usize)?;
            w.slot = find_slot(&b, sl, pid);
        }
        if let Some(slot) = w.slot.as_mut().filter(|s| s.logical) {
            slot.spill = spill::read(&self.pgdata.join("pg_replslot").join(&slot.name));
        }
        Ok(Some(w))
    }
}

/// A walsender followed across samples: the reader opened once, reopened after a
/// failure, never retried more than once a second.
#[derive(Default)]
pub struct Follow {
    reader: Option<Reader>,
    failed_at: Option<std::time::Instant>,
}

impl Follow {
    /// The walsender `pid` now, or None (not one, or its memory unreadable).
    pub fn sample(
        &mut self,
        pid: Pid,
        major: u32,
        pgdata: &Path,
        segment_bytes: u64,
        xlog_blcksz: u64,
    ) -> Option<WalSenderSample> {
        if self.reader.is_none() {
            if self
                .failed_at
                .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1))
            {
                return None;
            }
            match Reader::open(pid, major, pgdata, segment_bytes, xlog_blcksz) {
                Ok(r) => self.reader = Some(r),
                Err(_) => {
                    self.failed_at = Some(std::time::Instant::now());
                    return None;
                }
            }
        }
        // The server numbers its processes in its own pid namespace.
        let server_pid = crate::process::ns::ns_pid(pid).unwrap_or(pid);
        match self.reader.as_ref()?.read(server_pid) {
            Ok(w) => w,
            Err(_) => {
                self.reader = None;
                self.failed_at = Some(std::time::Instant::now());
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
