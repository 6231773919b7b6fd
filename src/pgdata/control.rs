//! `global/pg_control` (ControlFileData) and `PG_VERSION`.
//!
//! Offsets per `src/include/catalog/pg_control.h`; the CRC moved from 288 to 292 in
//! PG18 when `default_char_signedness` was added.

use super::bytes::{u32_at, u64_at};
use super::PgDataError;
use crate::text::excerpt;

pub const PG_CONTROL_FILE_SIZE: usize = 8192;
/// `sizeof(ControlFileData)` is 296 in every supported major; anything shorter is truncated.
const CONTROL_MIN_LEN: usize = 296;

/// The majors whose layouts this crate knows.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlData {
    pub system_identifier: u64,
    pub pg_control_version: u32,
    pub catalog_version_no: u32,
    pub state: u32,
    pub next_xid: u32,
    pub oldest_xid: u32,
    pub blcksz: u32,
    pub relseg_size: u32,
    pub xlog_blcksz: u32,
    pub xlog_seg_size: u32,
    pub data_checksum_version: u32,
}

impl ControlData {
    /// Bytes per relation segment file (`RELSEG_SIZE * BLCKSZ`, 1 GiB by default).
    pub fn segment_bytes(&self) -> u64 {
        u64::from(self.relseg_size) * u64::from(self.blcksz)
    }
}

/// Parse and CRC-check pg_control.
pub fn parse_control(buf: &[u8]) -> Result<ControlData, PgDataError> {
    if buf.len() < CONTROL_MIN_LEN {
        return Err(PgDataError::corrupt(
            "pg_control",
            format!("{} bytes, expected at least {CONTROL_MIN_LEN}", buf.len()),
        ));
    }
    let version = u32_at(buf, 8).unwrap_or(0);
    let crc_off = match version {
        1201 | 1300 | 1700 => 288,
        1800 => 292,
        v => {
            return Err(PgDataError::Unsupported(format!(
                "pg_control version {v} (this build knows PostgreSQL 12-18: 1201, 1300, 1700, 1800)"
            )))
        }
    };
    let stored = u32_at(buf, crc_off).unwrap_or(0);
    let computed = crc32c::crc32c(&buf[..crc_off]);
    if stored != computed {
        return Err(PgDataError::corrupt(
            "pg_control",
            format!("CRC mismatch (stored {stored:08x}, computed {computed:08x})"),
        ));
    }
    let field = |off| u32_at(buf, off).unwrap_or(0);
    let cd = ControlData {
        system_identifier: u64_at(buf, 0).unwrap_or(0),
        pg_control_version: version,
        catalog_version_no: field(12),
        state: field(16),
        next_xid: field(64),
        oldest_xid: field(84),
        blcksz: field(216),
        relseg_size: field(220),
        xlog_blcksz: field(224),
        xlog_seg_size: field(228),
        data_checksum_version: field(252),
    };
    // BLCKSZ must be a power of two between 1 kB and 32 kB (configure's choices); anything
    // else would make every later page computation nonsense.
    if !cd.blcksz.is_power_of_two() || !(1024..=32768).contains(&cd.blcksz) {
        return Err(PgDataError::corrupt(
            "pg_control",
            format!("implausible block size {}", cd.blcksz),
        ));
    }
    if cd.relseg_size == 0 || !cd.xlog_seg_size.is_power_of_two() {
        return Err(PgDataError::corrupt(
            "pg_control",
            format!(
                "implausible segment sizes (relseg {}, wal {})",
                cd.relseg_size, cd.xlog_seg_size
            ),
        ));
    }
    Ok(cd)
}

/// `PG_VERSION` holds `"<major>\n"`. Whatever else it holds is quoted short and escaped.
pub fn parse_pg_version(buf: &[u8]) -> Result<u32, PgDataError> {
    let not_a_version = || {
        PgDataError::corrupt(
            "PG_VERSION",
            format!("{} is not a version", excerpt::quote(buf)),
        )
    };
    let text = std::str::from_utf8(buf)
        .map_err(|_| not_a_version())?
        .trim();
    // 9.x clusters say "9.6"; they are out of scope but deserve a precise message.
    let major: u32 = text
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .ok_or_else(not_a_version)?;
    if text.contains('.') || !crate::version::SUPPORTED.contains(&major) {
        return Err(PgDataError::Unsupported(format!(
            "PostgreSQL {} (supported: {} to {})",
            excerpt::escape(text.as_bytes()),
            crate::version::SUPPORTED.start(),
            crate::version::SUPPORTED.end()
        )));
    }
    Ok(major)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn synth(version: u32, blcksz: u32) -> Vec<u8> {
        let mut b = vec![0u8; PG_CONTROL_FILE_SIZE];
        b[8..12].copy_from_slice(&version.to_le_bytes());
        b[12..16].copy_from_slice(&202209061u32.to_le_bytes());
        b[216..220].copy_from_slice(&blcksz.to_le_bytes());
        b[220..224].copy_from_slice(&131072u32.to_le_bytes());
        b[228..232].copy_from_slice(&(16u32 << 20).to_le_bytes());
        let crc_off = if version >= 1800 { 292 } else { 288 };
        let crc = crc32c::crc32c(&b[..crc_off]);
        b[crc_off..crc_off + 4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    #[test]
    fn parses_both_crc_positions() {
        for v in [1201, 1300, 1700, 1800] {
            let cd = parse_control(&synth(v, 8192)).unwrap();
            assert_eq!(cd.blcksz, 8192);
            assert_eq!(cd.segment_bytes(), 1 << 30);
        }
    }

    #[test]
    fn rejects_bad_crc_version_and_short() {
        let mut b = synth(1300, 8192);
        b[216] ^= 1;
        assert!(matches!(
            parse_control(&b),
            Err(PgDataError::Corrupt { .. })
        ));
        assert!(matches!(
            parse_control(&synth(1100, 8192)),
            Err(PgDataError::Unsupported(_))
        ));
        assert!(parse_control(&b[..100]).is_err());
    }

    #[test]
    fn pg_version_file() {
        assert_eq!(parse_pg_version(b"15\n").unwrap(), 15);
        assert!(matches!(
            parse_pg_version(b"9.6\n"),
            Err(PgDataError::Unsupported(_))
        ));
        assert!(matches!(
            parse_pg_version(b"19\n"),
            Err(PgDataError::Unsupported(_))
        ));
        assert!(parse_pg_version(b"\xff\xfe").is_err());
        let e = parse_pg_version(&[b'\n'; 10_000]).unwrap_err().to_string();
        assert!(e.len() < 300, "{e}");
        assert_eq!(
            parse_pg_version(b"9.\x1b[2J").unwrap_err().to_string(),
            r"unsupported PostgreSQL 9.\x1b[2J (supported: 12 to 18)"
        );
    }
}
