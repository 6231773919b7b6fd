//! Heap pages and tuple headers (`bufpage.h`, `itemid.h`, `htup_details.h`), identical in
//! PostgreSQL 12–18. Everything is bounds-checked: a page may be torn or corrupt.

use super::bytes::{u16_at, u32_at};

pub const SIZE_OF_PAGE_HEADER_DATA: usize = 24;
pub const SIZEOF_HEAP_TUPLE_HEADER: usize = 23;
pub const PG_PAGE_LAYOUT_VERSION: u16 = 4;

pub const LP_UNUSED: u32 = 0;
pub const LP_NORMAL: u32 = 1;
pub const LP_REDIRECT: u32 = 2;
pub const LP_DEAD: u32 = 3;

pub const HEAP_HASNULL: u16 = 0x0001;
pub const HEAP_XMAX_KEYSHR_LOCK: u16 = 0x0010;
pub const HEAP_XMAX_EXCL_LOCK: u16 = 0x0040;
pub const HEAP_XMAX_LOCK_ONLY: u16 = 0x0080;
pub const HEAP_XMIN_COMMITTED: u16 = 0x0100;
pub const HEAP_XMIN_INVALID: u16 = 0x0200;
pub const HEAP_XMAX_COMMITTED: u16 = 0x0400;
pub const HEAP_XMAX_INVALID: u16 = 0x0800;
pub const HEAP_XMAX_IS_MULTI: u16 = 0x1000;
pub const HEAP_XMAX_SHR_LOCK: u16 = HEAP_XMAX_EXCL_LOCK | HEAP_XMAX_KEYSHR_LOCK;
pub const HEAP_NATTS_MASK: u16 = 0x07FF;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    #[error("page is {0} bytes, block size is {1}")]
    WrongSize(usize, usize),
    #[error("bad page header: {0}")]
    Header(String),
}

/// One tuple as found on a page; `data` starts at the tuple header.
#[derive(Debug, Clone, Copy)]
pub struct HeapTuple<'a> {
    pub lp: u16,
    pub xmin: u32,
    pub xmax: u32,
    pub infomask: u16,
    pub infomask2: u16,
    pub hoff: usize,
    pub raw: &'a [u8],
}

impl<'a> HeapTuple<'a> {
    pub fn natts(&self) -> usize {
        usize::from(self.infomask2 & HEAP_NATTS_MASK)
    }

    /// NULL test for 0-based attribute `i`; a set bit in `t_bits` means NOT NULL.
    pub fn att_is_null(&self, i: usize) -> bool {
        if i >= self.natts() {
            return true;
        }
        if self.infomask & HEAP_HASNULL == 0 {
            return false;
        }
        match self.raw.get(SIZEOF_HEAP_TUPLE_HEADER + i / 8) {
            Some(b) => b & (1 << (i % 8)) == 0,
            None => true,
        }
    }

    /// The user data area (`tuple + t_hoff`).
    pub fn data(&self) -> &'a [u8] {
        self.raw.get(self.hoff..).unwrap_or(&[])
    }

    /// The fixed-width, NOT NULL prefix of a catalog row: the first `natts` columns must all
    /// be present and `len` bytes must be there, or the tuple is not the row we think it is.
    pub fn fixed_prefix(&self, natts: usize, len: usize) -> Option<&'a [u8]> {
        if (0..natts).any(|i| self.att_is_null(i)) {
            return None;
        }
        self.data().get(..len)
    }
}

/// `HEAP_XMAX_IS_LOCKED_ONLY`: xmax only locked the row, it did not delete or update it.
pub fn xmax_is_locked_only(infomask: u16) -> bool {
    infomask & HEAP_XMAX_LOCK_ONLY != 0
        || infomask & (HEAP_XMAX_IS_MULTI | HEAP_XMAX_SHR_LOCK) == HEAP_XMAX_EXCL_LOCK
}

/// Validate a page header; `Ok(false)` for a new (all-zero) page that holds nothing.
pub fn check_page(page: &[u8], blcksz: usize) -> Result<bool, PageError> {
    if page.len() != blcksz {
        return Err(PageError::WrongSize(page.len(), blcksz));
    }
    let field = |off| usize::from(u16_at(page, off).unwrap_or(0));
    let (lower, upper, special) = (field(12), field(14), field(16));
    if upper == 0 {
        // PageIsNew: never initialised (relation extended, page not yet written).
        return Ok(false);
    }
    let size_version = field(18);
    if size_version & 0xFF00 != blcksz & 0xFF00 && !(blcksz == 65536 && size_version & 0xFF00 == 0)
    {
        return Err(PageError::Header(format!(
            "page size field {:#06x} does not match block size {blcksz}",
            size_version
        )));
    }
    if size_version & 0xFF != usize::from(PG_PAGE_LAYOUT_VERSION) {
        return Err(PageError::Header(format!(
            "layout version {}",
            size_version & 0xFF
        )));
    }
    if lower < SIZE_OF_PAGE_HEADER_DATA || lower > upper || upper > special || special > blcksz {
        return Err(PageError::Header(format!(
            "pd_lower {lower}, pd_upper {upper}, pd_special {special}"
        )));
    }
    Ok(true)
}

/// The LP_NORMAL tuples of a heap page whose header passed [`check_page`]. Line pointers
/// that point outside the tuple area or are too short to hold a header are skipped.
pub fn heap_tuples(page: &[u8]) -> impl Iterator<Item = HeapTuple<'_>> {
    let lower = usize::from(u16_at(page, 12).unwrap_or(0));
    let special = usize::from(u16_at(page, 16).unwrap_or(0)).min(page.len());
    let count = lower.saturating_sub(SIZE_OF_PAGE_HEADER_DATA) / 4;
    (0..count).filter_map(move |i| {
        let w = u32_at(page, SIZE_OF_PAGE_HEADER_DATA + i * 4)?;
        let (off, flags, len) = (
            (w & 0x7FFF) as usize,
            (w >> 15) & 3,
            ((w >> 17) & 0x7FFF) as usize,
        );
        if flags != LP_NORMAL || len < SIZEOF_HEAP_TUPLE_HEADER || off < lower {
            return None;
        }
        let end = off.checked_add(len)?;
        if end > special {
            return None;
        }
        let raw = page.get(off..end)?;
        let hoff = usize::from(*raw.get(22)?);
        if hoff < SIZEOF_HEAP_TUPLE_HEADER || hoff > len {
            return None;
        }
        Some(HeapTuple {
            lp: u16::try_from(i + 1).ok()?,
            xmin: u32_at(raw, 0)?,
            xmax: u32_at(raw, 4)?,
            infomask2: u16_at(raw, 18)?,
            infomask: u16_at(raw, 20)?,
            hoff,
            raw,
        })
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Build a heap page holding the given tuple bodies (data areas), all with no NULLs.
    pub(crate) fn synth_page(blcksz: usize, bodies: &[(u32, u32, u16, Vec<u8>)]) -> Vec<u8> {
        let mut p = vec![0u8; blcksz];
        let mut upper = blcksz;
        let mut lower = SIZE_OF_PAGE_HEADER_DATA;
        for (xmin, xmax, infomask, body) in bodies {
            let len = 24 + body.len();
            upper = (upper - len) & !7;
            let t = &mut p[upper..upper + len];
            t[0..4].copy_from_slice(&xmin.to_le_bytes());
            t[4..8].copy_from_slice(&xmax.to_le_bytes());
            t[18..20].copy_from_slice(&40u16.to_le_bytes()); // natts
            t[20..22].copy_from_slice(&infomask.to_le_bytes());
            t[22] = 24;
            t[24..].copy_from_slice(body);
            let w = (upper as u32) | (LP_NORMAL << 15) | ((len as u32) << 17);
            p[lower..lower + 4].copy_from_slice(&w.to_le_bytes());
            lower += 4;
        }
        p[12..14].copy_from_slice(&(lower as u16).to_le_bytes());
        p[14..16].copy_from_slice(&(upper as u16).to_le_bytes());
        p[16..18].copy_from_slice(&(blcksz as u16).to_le_bytes());
        p[18..20].copy_from_slice(&((blcksz as u16 & 0xFF00) | 4).to_le_bytes());
        p
    }

    #[test]
    fn walks_tuples() {
        let p = synth_page(
            8192,
            &[
                (5, 0, HEAP_XMAX_INVALID, vec![7; 40]),
                (6, 9, 0, vec![8; 16]),
            ],
        );
        assert!(check_page(&p, 8192).unwrap());
        let t: Vec<_> = heap_tuples(&p).collect();
        assert_eq!(t.len(), 2);
        assert_eq!((t[0].xmin, t[0].lp, t[0].data()[0]), (5, 1, 7));
        assert_eq!((t[1].xmax, t[1].data().len()), (9, 16));
        assert!(t[0].fixed_prefix(10, 40).is_some());
        assert!(t[0].fixed_prefix(10, 41).is_none());
    }

    #[test]
    fn rejects_bad_headers() {
        assert!(!check_page(&vec![0u8; 8192], 8192).unwrap());
        let mut p = synth_page(8192, &[]);
        p[12] = 2; // pd_lower below the header
        assert!(check_page(&p, 8192).is_err());
        assert!(check_page(&p[..100], 8192).is_err());
    }

    #[test]
    fn lock_only() {
        assert!(xmax_is_locked_only(HEAP_XMAX_LOCK_ONLY));
        assert!(xmax_is_locked_only(HEAP_XMAX_EXCL_LOCK));
        assert!(!xmax_is_locked_only(
            HEAP_XMAX_EXCL_LOCK | HEAP_XMAX_IS_MULTI
        ));
        assert!(!xmax_is_locked_only(0));
    }
}
