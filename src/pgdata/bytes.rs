//! Bounds-checked little-endian reads: every byte we decode comes from disk or another
//! process and may be truncated or hostile, so nothing here indexes without checking.

pub fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(off..off.checked_add(2)?)?.try_into().ok()?,
    ))
}

pub fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}

pub fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// A `NameData` (char[NAMEDATALEN]): NUL-padded, and not necessarily NUL-terminated when
/// the name uses all 63 bytes plus a stray terminator-less 64th.
pub fn name_at(b: &[u8], off: usize) -> Option<String> {
    let raw = b.get(off..off.checked_add(64)?)?;
    let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
    Some(String::from_utf8_lossy(&raw[..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_bounds_is_none() {
        let b = [1u8, 2, 3];
        assert_eq!(u16_at(&b, 1), Some(0x0302));
        assert_eq!(u32_at(&b, 0), None);
        assert_eq!(u64_at(&b, usize::MAX), None);
        assert_eq!(name_at(&b, 0), None);
    }

    #[test]
    fn name_without_terminator() {
        let mut b = vec![b'x'; 64];
        assert_eq!(name_at(&b, 0).unwrap().len(), 64);
        b[3] = 0;
        assert_eq!(name_at(&b, 0).unwrap(), "xxx");
    }
}
