//! Transaction status from the `pg_xact` SLRU buffers in shared memory (`slru.h`,
//! `clog.c`): a transaction committed since the last checkpoint is committed here, while
//! `pg_xact` on disk may still say "in progress" for minutes.
//!
//! The SLRU's shared state is one ShmemIndex allocation (`SimpleLruInit`), named "clog"
//! in 12, "Xact" in 13–16 and "transaction" in 17+. Its header points at per-slot arrays
//! in the same allocation: page buffers, page status, page number. Status bits only move
//! forward (in progress → committed/aborted), so a copy a moment old can only say "in
//! progress" where the truth is "committed": the caller then trusts disk, never worse.

use super::memory::{maps, shmem_index_lookup, MemError, Pid, ProcMem};
use std::collections::HashMap;

/// Where the fields of `SlruSharedData` are, per major (x86_64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlruLayout {
    pub keys: &'static [&'static str],
    pub num_slots: usize,
    pub page_buffer: usize,
    pub page_status: usize,
    pub page_number: usize,
    /// `int` (12–16) or `int64` (17+) page numbers.
    pub page_number_size: usize,
}

/// 12–16: `{LWLock *ControlLock; int num_slots; char **page_buffer; SlruPageStatus
/// *page_status; bool *page_dirty; int *page_number; ...}`. 17 dropped `ControlLock` for
/// bank locks and widened page numbers to `int64`.
pub fn slru_layout(major: u32) -> Option<SlruLayout> {
    let old = SlruLayout {
        keys: &[],
        num_slots: 8,
        page_buffer: 16,
        page_status: 24,
        page_number: 40,
        page_number_size: 4,
    };
    match major {
        12 => Some(SlruLayout {
            keys: &["clog"],
            ..old
        }),
        13..=16 => Some(SlruLayout {
            keys: &["Xact"],
            ..old
        }),
        17 | 18 => Some(SlruLayout {
            keys: &["transaction"],
            num_slots: 0,
            page_buffer: 8,
            page_status: 16,
            page_number: 32,
            page_number_size: 8,
        }),
        _ => None,
    }
}

/// `SLRU_PAGE_VALID`, `SLRU_PAGE_WRITE_IN_PROGRESS`: the buffer's bytes are the page.
const SLRU_PAGE_VALID: u32 = 2;
const SLRU_PAGE_WRITE_IN_PROGRESS: u32 = 3;
/// More slots than any configuration allows (17's `transaction_buffers` max is 131072).
const MAX_SLOTS: u64 = 1 << 17;

/// The slot arrays' addresses, decoded from the header and checked against the allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlruHeader {
    pub num_slots: usize,
    pub page_buffer: u64,
    pub page_status: u64,
    pub page_number: u64,
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Decode and validate the header of an allocation at `[loc, loc + size)`: every array it
/// points at must lie inside the allocation. Pure, for hostile bytes.
pub fn decode_header(b: &[u8], l: &SlruLayout, loc: u64, size: u64) -> Option<SlruHeader> {
    let n = u64::from(u32::from_ne_bytes(
        b.get(l.num_slots..l.num_slots + 4)?.try_into().ok()?,
    ));
    if n == 0 || n > MAX_SLOTS {
        return None;
    }
    let end = loc.checked_add(size)?;
    let inside =
        |addr: u64, len: u64| addr >= loc && addr.checked_add(len).is_some_and(|e| e <= end);
    let h = SlruHeader {
        num_slots: n as usize,
        page_buffer: u64_at(b, l.page_buffer)?,
        page_status: u64_at(b, l.page_status)?,
        page_number: u64_at(b, l.page_number)?,
    };
    (inside(h.page_buffer, n * 8)
        && inside(h.page_status, n * 4)
        && inside(h.page_number, n * l.page_number_size as u64))
    .then_some(h)
}

/// Which slot holds `page`, from copies of the status and page-number arrays. Pure.
pub fn slot_of(status: &[u8], numbers: &[u8], width: usize, page: u64) -> Option<usize> {
    let n = status.len() / 4;
    (0..n).find(|&i| {
        let st = status
            .get(i * 4..i * 4 + 4)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_ne_bytes);
        let num = numbers
            .get(i * width..i * width + width)
            .map(|s| match width {
                8 => s.try_into().ok().map(i64::from_ne_bytes),
                _ => s.try_into().ok().map(|x| i64::from(i32::from_ne_bytes(x))),
            });
        matches!(st, Some(SLRU_PAGE_VALID | SLRU_PAGE_WRITE_IN_PROGRESS))
            && num.flatten() == i64::try_from(page).ok()
    })
}

/// The clog SLRU of one cluster as a process maps it.
pub struct XactBuffers {
    mem: ProcMem,
    layout: SlruLayout,
    header: SlruHeader,
    /// Allocation bounds, for the page pointers.
    loc: u64,
    size: u64,
    blcksz: usize,
    /// Pages copied since the last [`XactBuffers::forget`]; None: not in memory.
    pages: HashMap<u64, Option<Vec<u8>>>,
}

impl XactBuffers {
    pub fn open(pid: Pid, major: u32, blcksz: usize) -> Result<XactBuffers, MemError> {
        let layout = slru_layout(major).ok_or_else(|| MemError::Layout {
            pid,
            what: format!("no pg_xact SLRU layout for PostgreSQL {major}"),
        })?;
        let mem = ProcMem::open(pid)?;
        let maps = maps(pid)?;
        let mut last = None;
        for key in layout.keys {
            match shmem_index_lookup(&mem, &maps, key) {
                Ok((loc, size)) => {
                    let b = mem.read_vec(loc, 64)?;
                    if let Some(header) = decode_header(&b, &layout, loc, size) {
                        return Ok(XactBuffers {
                            mem,
                            layout,
                            header,
                            loc,
                            size,
                            blcksz,
                            pages: HashMap::new(),
                        });
                    }
                    last = Some(MemError::Layout {
                        pid,
                        what: format!(
                            "the {key:?} SLRU header does not look like PostgreSQL {major}'s"
                        ),
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(MemError::Layout {
            pid,
            what: "no pg_xact SLRU".into(),
        }))
    }

    /// Drop the copied pages: the next lookups see the server's current state.
    pub fn forget(&mut self) {
        self.pages.clear();
    }

    /// The two status bits of `xid` when its clog page is in memory.
    pub fn status_bits(&mut self, xid: u32) -> Result<Option<u8>, MemError> {
        let per_page = self.blcksz as u64 * 4;
        let page = u64::from(xid) / per_page;
        if !self.pages.contains_key(&page) {
            let copy = self.copy_page(page)?;
            self.pages.insert(page, copy);
        }
        let Some(Some(bytes)) = self.pages.get(&page) else {
            return Ok(None);
        };
        let within = u64::from(xid) % per_page;
        let byte = bytes.get((within / 4) as usize).copied();
        Ok(byte.map(|b| (b >> ((within % 4) * 2)) & 3))
    }

    fn arrays(&self) -> Result<(Vec<u8>, Vec<u8>), MemError> {
        let n = self.header.num_slots;
        let status = self.mem.read_vec(self.header.page_status, n * 4)?;
        let numbers = self
            .mem
            .read_vec(self.header.page_number, n * self.layout.page_number_size)?;
        Ok((status, numbers))
    }

    /// Copy the page from its slot, then check the slot still holds it: a slot reused
    /// for another page mid-copy gives None (disk then).
    fn copy_page(&self, page: u64) -> Result<Option<Vec<u8>>, MemError> {
        let width = self.layout.page_number_size;
        let (status, numbers) = self.arrays()?;
        let Some(slot) = slot_of(&status, &numbers, width, page) else {
            return Ok(None);
        };
        let ptr = self
            .mem
            .read_u64(self.header.page_buffer + slot as u64 * 8)?;
        let end = self.loc + self.size;
        if ptr < self.loc
            || ptr
                .checked_add(self.blcksz as u64)
                .map_or(true, |e| e > end)
        {
            return Ok(None);
        }
        let bytes = self.mem.read_vec(ptr, self.blcksz)?;
        let (status2, numbers2) = self.arrays()?;
        if slot_of(&status2, &numbers2, width, page) != Some(slot) {
            return Ok(None);
        }
        Ok(Some(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checked_against_allocation() {
        let l = slru_layout(15).unwrap();
        let mut b = vec![0u8; 64];
        b[8..12].copy_from_slice(&16u32.to_ne_bytes());
        b[16..24].copy_from_slice(&0x1100u64.to_ne_bytes());
        b[24..32].copy_from_slice(&0x1200u64.to_ne_bytes());
        b[40..48].copy_from_slice(&0x1300u64.to_ne_bytes());
        let h = decode_header(&b, &l, 0x1000, 0x10000).unwrap();
        assert_eq!(h.num_slots, 16);
        assert!(decode_header(&b, &l, 0x2000, 0x10000).is_none());
        b[8..12].copy_from_slice(&0u32.to_ne_bytes());
        assert!(decode_header(&b, &l, 0x1000, 0x10000).is_none());
        assert_eq!(slru_layout(17).unwrap().keys, ["transaction"]);
    }

    #[test]
    fn slots_found_by_page() {
        let st: Vec<u8> = [0u32, 2, 3, 1]
            .iter()
            .flat_map(|s| s.to_ne_bytes())
            .collect();
        let n32: Vec<u8> = [7i32, 7, 9, 11]
            .iter()
            .flat_map(|s| s.to_ne_bytes())
            .collect();
        assert_eq!(slot_of(&st, &n32, 4, 7), Some(1));
        assert_eq!(slot_of(&st, &n32, 4, 9), Some(2));
        assert_eq!(slot_of(&st, &n32, 4, 11), None); // being read in
        let n64: Vec<u8> = [7i64, 5, 9, 11]
            .iter()
            .flat_map(|s| s.to_ne_bytes())
            .collect();
        assert_eq!(slot_of(&st, &n64, 8, 5), Some(1));
        assert_eq!(slot_of(&st[..5], &n64[..3], 8, 5), None);
    }

    proptest::proptest! {
        #[test]
        fn garbage_headers_never_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..80), loc in proptest::num::u64::ANY, size in proptest::num::u64::ANY) {
            for m in 12..=18 {
                let _ = decode_header(&b, &slru_layout(m).unwrap(), loc, size);
            }
            let _ = slot_of(&b, &b, 8, 3);
            let _ = slot_of(&b, &b, 4, 3);
        }
    }
}
