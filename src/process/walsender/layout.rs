//! Where a walsender's figures sit in shared memory, per major (x86_64). Read from each
//! major's `src/include/replication/walsender_private.h` and `slot.h`; the live test
//! checks every offset against `pg_stat_replication` and `pg_replication_slots`.
//!
//! `WalSndCtlData` ("Wal Sender Ctl"): `SyncRepQueue[3]` (SHM_QUEUE or dlist_head, 16
//! bytes each) 0, `lsn[3]` 48, `sync_standbys_defined` (or `_status`) 72, then 12–15
//! `walsnds[]` at 80; 16 adds `wal_flush_cv` and `wal_replay_cv` (ConditionVariable, 12
//! bytes, 4-aligned), `walsnds[]` at 104; 17+ adds `wal_confirm_rcv_cv`, `walsnds[]` at 112.
//!
//! `WalSnd`, the same head in every major: `pid` 0, `state` 4, `sentPtr` 8, `needreload`
//! 16, `write` 24, `flush` 32, `apply` 40, `writeLag` 48, `flushLag` 56, `applyLag` 64.
//! Its tail (mutex, latch, sync priority, `replyTime`, 16+ `kind`) came and went: 104
//! bytes in 12, 16 and 17; 96 in 13–15 and 18. The sizes were measured on live servers
//! (the structure's ShmemIndex size is `walsnds` + max_wal_senders × `sizeof(WalSnd)`,
//! and a second walsender's pid sits one stride after the first's).
//!
//! `ReplicationSlotCtlData` ("ReplicationSlot Ctl") is the array of `ReplicationSlot`:
//! `mutex` 0, `in_use` 1, `active_pid` 4, then `data` (ReplicationSlotPersistentData) at
//! 24: `name` +0 (NAMEDATALEN 64), `database` +64, `restart_lsn` +80, `confirmed_flush` +88
//! (12) or +96 (13+, after `invalidated_at` / `invalidated`). Its size grew with nearly
//! every major: 240, 248, 264, 264, 264, 280, 288 bytes for 12..=18 (measured likewise,
//! ShmemIndex size over max_replication_slots).

/// Offsets inside "Wal Sender Ctl" and one `WalSnd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalSndLayout {
    /// `offsetof(WalSndCtlData, walsnds)`.
    pub array: usize,
    /// `sizeof(WalSnd)`.
    pub stride: usize,
    pub pid: usize,
    pub state: usize,
    pub sent: usize,
    pub write: usize,
    pub flush: usize,
    pub apply: usize,
    pub write_lag: usize,
    pub flush_lag: usize,
    pub apply_lag: usize,
}

/// Offsets inside "ReplicationSlot Ctl" and one `ReplicationSlot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLayout {
    /// `sizeof(ReplicationSlot)`.
    pub stride: usize,
    pub in_use: usize,
    pub active_pid: usize,
    pub name: usize,
    pub database: usize,
    pub restart_lsn: usize,
    pub confirmed_flush: usize,
}

/// NAMEDATALEN.
pub const NAME_LEN: usize = 64;

const fn walsnd(array: usize, stride: usize) -> WalSndLayout {
    WalSndLayout {
        array,
        stride,
        pid: 0,
        state: 4,
        sent: 8,
        write: 24,
        flush: 32,
        apply: 40,
        write_lag: 48,
        flush_lag: 56,
        apply_lag: 64,
    }
}

pub fn walsnd_layout(major: u32) -> Option<WalSndLayout> {
    Some(match major {
        12 => walsnd(80, 104),
        13..=15 => walsnd(80, 96),
        16 => walsnd(104, 104),
        17 => walsnd(112, 104),
        18 => walsnd(112, 96),
        _ => return None,
    })
}

const fn slot(stride: usize, confirmed_flush: usize) -> SlotLayout {
    SlotLayout {
        stride,
        in_use: 1,
        active_pid: 4,
        name: 24,
        database: 24 + 64,
        restart_lsn: 24 + 80,
        confirmed_flush: 24 + confirmed_flush,
    }
}

pub fn slot_layout(major: u32) -> Option<SlotLayout> {
    Some(match major {
        12 => slot(SLOT_STRIDE[0], 88),
        13..=18 => slot(SLOT_STRIDE[(major - 12) as usize], 96),
        _ => return None,
    })
}

/// `sizeof(ReplicationSlot)` for 12..=18.
const SLOT_STRIDE: [usize; 7] = [240, 248, 264, 264, 264, 280, 288];
