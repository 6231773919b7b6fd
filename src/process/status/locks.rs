//! Which lock a waiting backend wants and who holds it, from the shared lock table,
//! without per-major PGPROC layouts beyond the pid: the waiter's PGPROC holds a pointer
//! (`waitLock`) to a `LOCK` whose `LOCKTAG` matches its wait event, found by scanning the
//! PGPROC for a shared-memory pointer to such a tag. The LOCK's `procLocks` list then
//! leads to every `PROCLOCK`, whose `holdMask` says whether its PGPROC holds the lock.
//! Every pointer is checked to lie in the main segment and every PROCLOCK to point back
//! at the LOCK, so a wrong guess yields nothing rather than garbage.
//!
//! Layouts (`storage/lock.h`, the same in 12–18 on x86_64):
//! `LOCKTAG {u32 field1, field2, field3; u16 field4; u8 locktag_type, lockmethodid}` (16),
//! `LOCK {LOCKTAG tag; LOCKMASK grantMask, waitMask; list procLocks; ...}`, the list head
//! at 24 with `next` at +8 (both SHM_QUEUE, up to 15, and dlist_node, 16+, are
//! `{prev, next}`); `PROCLOCK {LOCK *myLock; PGPROC *myProc; PGPROC *groupLeader;
//! LOCKMASK holdMask, releaseMask; node lockLink; node procLink}`, `lockLink` at 32.

use crate::process::memory::{MemError, Pid, ProcMem};
use crate::process::status::layout::pgproc_offsets;

pub const LOCKTAG_RELATION: u8 = 0;
const DEFAULT_LOCKMETHOD: u8 = 1;
const USER_LOCKMETHOD: u8 = 2;
const LOCK_PROCLOCKS: u64 = 24;
const PROCLOCK_HOLDMASK: u64 = 24;
const PROCLOCK_LOCKLINK: u64 = 32;
const MAX_HOLDERS_WALKED: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockTag {
    pub field1: u32,
    pub field2: u32,
    pub field3: u32,
    pub field4: u16,
    pub locktag_type: u8,
    pub lockmethodid: u8,
}

pub fn decode_tag(b: &[u8; 16]) -> LockTag {
    let u = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    LockTag {
        field1: u(0),
        field2: u(4),
        field3: u(8),
        field4: u16::from_ne_bytes([b[12], b[13]]),
        locktag_type: b[14],
        lockmethodid: b[15],
    }
}

/// Whether a tag is plausibly the lock a process with this wait event waits for.
pub fn tag_matches(tag: &LockTag, wait_event_info: u32) -> bool {
    let want_type = (wait_event_info & 0xFFFF) as u8;
    tag.locktag_type == want_type
        && matches!(tag.lockmethodid, DEFAULT_LOCKMETHOD | USER_LOCKMETHOD)
        && (want_type != LOCKTAG_RELATION
            || (tag.field2 != 0 && tag.field3 == 0 && tag.field4 == 0))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwaitedLock {
    pub lock: u64,
    pub tag: LockTag,
    pub holders: Vec<Pid>,
}

fn in_seg(seg: (u64, u64), p: u64, len: u64) -> bool {
    p >= seg.0 && p.checked_add(len).is_some_and(|e| e <= seg.1) && p % 8 == 0
}

/// The lock `waiter` (whose PGPROC is at `proc_ptr`) waits for, and its holders.
pub fn awaited_lock(
    mem: &ProcMem,
    seg: (u64, u64),
    major: u32,
    proc_ptr: u64,
    waiter: Pid,
    wait_event_info: u32,
) -> Option<AwaitedLock> {
    let (pid_off, wait_off) = pgproc_offsets(major)?;
    let pgproc = mem.read_vec(proc_ptr, wait_off as usize).ok()?;
    for off in (0..pgproc.len().saturating_sub(8)).step_by(8) {
        let p = u64::from_ne_bytes(pgproc[off..off + 8].try_into().ok()?);
        if p == proc_ptr || !in_seg(seg, p, 40) {
            continue;
        }
        let mut tb = [0u8; 16];
        if mem.read(p, &mut tb).is_err() {
            continue;
        }
        let tag = decode_tag(&tb);
        if !tag_matches(&tag, wait_event_info) {
            continue;
        }
        if let Ok(holders) = holders(mem, seg, p, pid_off, waiter) {
            return Some(AwaitedLock {
                lock: p,
                tag,
                holders,
            });
        }
    }
    None
}

/// Walk the LOCK's procLocks list; each PROCLOCK must point back at the lock.
fn holders(
    mem: &ProcMem,
    seg: (u64, u64),
    lock: u64,
    pid_off: u64,
    waiter: Pid,
) -> Result<Vec<Pid>, MemError> {
    let bad = || MemError::Layout {
        pid: mem.pid,
        what: "not a lock".into(),
    };
    let head = lock + LOCK_PROCLOCKS;
    let mut node = mem.read_u64(head + 8)?;
    let mut out = Vec::new();
    let mut steps = 0;
    while node != head {
        steps += 1;
        if steps > MAX_HOLDERS_WALKED || !in_seg(seg, node, 16) || node < PROCLOCK_LOCKLINK {
            return Err(bad());
        }
        let proclock = node - PROCLOCK_LOCKLINK;
        if mem.read_u64(proclock)? != lock {
            return Err(bad());
        }
        let proc = mem.read_u64(proclock + 8)?;
        let hold = mem.read_u32(proclock + PROCLOCK_HOLDMASK)?;
        if in_seg(seg, proc, pid_off + 4) && hold != 0 {
            let pid = mem.read_u32(proc + pid_off)? as i32;
            if pid > 0 && pid != waiter && !out.contains(&pid) {
                out.push(pid);
            }
        }
        node = mem.read_u64(node + 8)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relation_tag() {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&5u32.to_ne_bytes());
        b[4..8].copy_from_slice(&16384u32.to_ne_bytes());
        b[15] = 1;
        let t = decode_tag(&b);
        assert_eq!((t.field1, t.field2), (5, 16384));
        assert!(tag_matches(&t, 0x03000000));
        assert!(!tag_matches(&t, 0x03000005));
        b[15] = 9;
        assert!(!tag_matches(&decode_tag(&b), 0x03000000));
    }
}
