//! `pg_filenode.map` (`src/backend/utils/cache/relmapper.c`): OID -> relfilenode for the
//! mapped catalogs, whose pg_class.relfilenode is 0.

use super::bytes::u32_at;
use super::PgDataError;
use std::collections::HashMap;
use std::path::Path;

pub const RELMAPPER_FILEMAGIC: u32 = 0x0059_2717;

/// The two on-disk layouts; the file size tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelmapLayout {
    pub file_size: usize,
    pub max_mappings: usize,
    pub crc_offset: usize,
}

/// PG12–15: 62 mappings, CRC at 504, 4 bytes of padding.
pub const RELMAP_PG12: RelmapLayout = RelmapLayout {
    file_size: 512,
    max_mappings: 62,
    crc_offset: 504,
};
/// PG16–18: 64 mappings, CRC at 520, no padding.
pub const RELMAP_PG16: RelmapLayout = RelmapLayout {
    file_size: 524,
    max_mappings: 64,
    crc_offset: 520,
};

pub type RelMap = HashMap<u32, u32>;

pub fn parse_relmap(buf: &[u8]) -> Result<RelMap, PgDataError> {
    let layout = match buf.len() {
        512 => RELMAP_PG12,
        524 => RELMAP_PG16,
        n => {
            return Err(PgDataError::corrupt(
                "pg_filenode.map",
                format!("{n} bytes, expected 512 or 524"),
            ))
        }
    };
    let magic = u32_at(buf, 0).unwrap_or(0);
    if magic != RELMAPPER_FILEMAGIC {
        return Err(PgDataError::corrupt(
            "pg_filenode.map",
            format!("bad magic {magic:#x}"),
        ));
    }
    let stored = u32_at(buf, layout.crc_offset).unwrap_or(0);
    let computed = crc32c::crc32c(&buf[..layout.crc_offset]);
    if stored != computed {
        return Err(PgDataError::corrupt(
            "pg_filenode.map",
            format!("CRC mismatch (stored {stored:08x}, computed {computed:08x})"),
        ));
    }
    let n = u32_at(buf, 4).unwrap_or(u32::MAX) as usize;
    if n > layout.max_mappings {
        return Err(PgDataError::corrupt(
            "pg_filenode.map",
            format!("{n} mappings, at most {}", layout.max_mappings),
        ));
    }
    Ok((0..n)
        .filter_map(|i| {
            let off = 8 + i * 8;
            Some((u32_at(buf, off)?, u32_at(buf, off + 4)?))
        })
        .collect())
}

/// Read and parse a map file. Up to PG15 the server overwrites the file in place, so a read
/// racing a write can see a torn file: a CRC failure is retried a few times before it counts.
pub fn read_relmap(path: &Path) -> Result<RelMap, PgDataError> {
    let mut last = None;
    for attempt in 0..5 {
        if attempt > 0 {
            std::thread::sleep(std::time::Duration::from_millis(2 << attempt));
        }
        let buf = super::read_capped(path, RELMAP_PG16.file_size as u64)?;
        match parse_relmap(&buf) {
            Ok(m) => return Ok(m),
            Err(e) => last = Some(e),
        }
    }
    Err(last
        .unwrap_or_else(|| PgDataError::corrupt("pg_filenode.map", "unreadable"))
        .at(path))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn synth(layout: RelmapLayout, entries: &[(u32, u32)]) -> Vec<u8> {
        let mut b = vec![0u8; layout.file_size];
        b[0..4].copy_from_slice(&RELMAPPER_FILEMAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&(entries.len() as u32).to_le_bytes());
        for (i, (o, f)) in entries.iter().enumerate() {
            b[8 + i * 8..12 + i * 8].copy_from_slice(&o.to_le_bytes());
            b[12 + i * 8..16 + i * 8].copy_from_slice(&f.to_le_bytes());
        }
        let crc = crc32c::crc32c(&b[..layout.crc_offset]);
        b[layout.crc_offset..layout.crc_offset + 4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    #[test]
    fn both_layouts() {
        for l in [RELMAP_PG12, RELMAP_PG16] {
            let m = parse_relmap(&synth(l, &[(1259, 16420), (1249, 1249)])).unwrap();
            assert_eq!(m[&1259], 16420);
            assert_eq!(m.len(), 2);
        }
    }

    #[test]
    fn torn_or_wrong() {
        let mut b = synth(RELMAP_PG16, &[(1259, 1259)]);
        b[12] ^= 0x40;
        assert!(parse_relmap(&b).is_err());
        assert!(parse_relmap(&b[..500]).is_err());
        let mut too_many = synth(RELMAP_PG12, &[]);
        too_many[4..8].copy_from_slice(&63u32.to_le_bytes());
        let crc = crc32c::crc32c(&too_many[..504]);
        too_many[504..508].copy_from_slice(&crc.to_le_bytes());
        assert!(parse_relmap(&too_many).is_err());
    }
}
