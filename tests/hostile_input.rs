//! Parsers never panic on random, truncated or corrupted input. proptest runs a bounded
//! number of cases per parser in every CI run (PROPTEST_CASES raises it locally).

use pg_trace::pgdata::{control, page, path, relmap, xact};
use pg_trace::process::fds::parse_fdinfo;
use pg_trace::text::{excerpt, visible};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn valid_control(version: u32) -> Vec<u8> {
    let mut b = vec![0u8; 8192];
    b[8..12].copy_from_slice(&version.to_le_bytes());
    b[216..220].copy_from_slice(&8192u32.to_le_bytes());
    b[220..224].copy_from_slice(&131072u32.to_le_bytes());
    b[228..232].copy_from_slice(&(16u32 << 20).to_le_bytes());
    let off = if version >= 1800 { 292 } else { 288 };
    let crc = crc32c::crc32c(&b[..off]);
    b[off..off + 4].copy_from_slice(&crc.to_le_bytes());
    b
}

fn valid_relmap(size: usize, n: u32) -> Vec<u8> {
    let mut b = vec![0u8; size];
    b[0..4].copy_from_slice(&0x592717u32.to_le_bytes());
    b[4..8].copy_from_slice(&n.to_le_bytes());
    let off = size - if size == 512 { 8 } else { 4 };
    let crc = crc32c::crc32c(&b[..off]);
    b[off..off + 4].copy_from_slice(&crc.to_le_bytes());
    b
}

/// A plausible heap page whose line pointers and tuple headers are random.
fn page_with(lps: &[u32], body: &[u8], lower: u16, upper: u16) -> Vec<u8> {
    let mut p = vec![0u8; 8192];
    for (i, w) in lps.iter().enumerate().take(200) {
        p[24 + i * 4..28 + i * 4].copy_from_slice(&w.to_le_bytes());
    }
    let start = 8192 - body.len().min(4096);
    p[start..].copy_from_slice(&body[..body.len().min(4096)]);
    p[12..14].copy_from_slice(&lower.to_le_bytes());
    p[14..16].copy_from_slice(&upper.to_le_bytes());
    p[16..18].copy_from_slice(&8192u16.to_le_bytes());
    p[18..20].copy_from_slice(&0x2004u16.to_le_bytes());
    p
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn control_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..9000)) {
        let _ = control::parse_control(&bytes);
        let _ = control::parse_pg_version(&bytes);
    }

    #[test]
    fn control_with_flipped_byte_is_rejected(v in prop::sample::select(vec![1201u32, 1300, 1700, 1800]), at in 0usize..288, bit in 0u8..8) {
        let mut b = valid_control(v);
        prop_assert!(control::parse_control(&b).is_ok());
        b[at] ^= 1 << bit;
        prop_assert!(control::parse_control(&b).is_err());
    }

    #[test]
    fn control_truncated(len in 0usize..296) {
        prop_assert!(control::parse_control(&valid_control(1300)[..len]).is_err());
    }

    #[test]
    fn relmap_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = relmap::parse_relmap(&bytes);
    }

    #[test]
    fn relmap_corruption_detected(size in prop::sample::select(vec![512usize, 524]), n in 0u32..62, at in 0usize..500, bit in 0u8..8) {
        let mut b = valid_relmap(size, n);
        prop_assert_eq!(relmap::parse_relmap(&b).unwrap().len() <= n as usize, true);
        b[at] ^= 1 << bit;
        prop_assert!(relmap::parse_relmap(&b).is_err());
    }

    #[test]
    fn relmap_absurd_count(size in prop::sample::select(vec![512usize, 524]), n in 65u32..) {
        prop_assert!(relmap::parse_relmap(&valid_relmap(size, n)).is_err());
    }

    #[test]
    fn page_walk_never_panics(
        lps in proptest::collection::vec(any::<u32>(), 0..200),
        body in proptest::collection::vec(any::<u8>(), 0..4096),
        lower in any::<u16>(),
        upper in any::<u16>(),
        natts in 0usize..40,
        len in 0usize..300,
    ) {
        let p = page_with(&lps, &body, lower, upper);
        if let Ok(true) = page::check_page(&p, 8192) {
            for t in page::heap_tuples(&p) {
                prop_assert!(t.raw.len() >= page::SIZEOF_HEAP_TUPLE_HEADER);
                let _ = t.fixed_prefix(natts, len);
                let _ = t.att_is_null(natts);
                let _ = t.data();
            }
        }
        // Whatever the header says, walking must not panic.
        for t in page::heap_tuples(&body) {
            let _ = t.fixed_prefix(natts, len);
        }
    }

    #[test]
    fn random_page_bytes(bytes in proptest::collection::vec(any::<u8>(), 8192..=8192)) {
        let _ = page::check_page(&bytes, 8192);
        for t in page::heap_tuples(&bytes) {
            let _ = t.fixed_prefix(18, 116);
        }
    }

    #[test]
    fn clog_never_panics(seg in proptest::collection::vec(any::<u8>(), 0..1024), xid in any::<u32>(), bs in prop::sample::select(vec![1024u32, 8192, 32768])) {
        let _ = xact::status_in_segment(&seg, xid, bs);
        let (s, byte, shift) = xact::clog_position(xid, bs);
        prop_assert!(byte < (bs * xact::SLRU_PAGES_PER_SEGMENT) as usize);
        prop_assert!(shift <= 6);
        prop_assert!(s <= 0xFFFF);
    }

    #[test]
    fn classify_never_panics(s in "\\PC{0,80}", wal in prop::sample::select(vec![1u32 << 20, 16 << 20, 1 << 30])) {
        let c = path::classify(&s, wal);
        let _ = c.class_name();
        let _ = pg_trace::pgdata::RelFileSegment::parse(&s, 1663, 5);
        let _ = parse_fdinfo(&s);
    }

    #[test]
    fn classify_structured(
        dir in prop::sample::select(vec!["base/5/", "global/", "pg_tblspc/16400/PG_15_202209061/5/", "base/pgsql_tmp/", "pg_wal/", "pg_xact/", "pg_wal/archive_status/"]),
        name in "[0-9a-zA-Z_.t]{0,40}",
    ) {
        let _ = path::classify(&format!("{dir}{name}"), 16 << 20);
    }

    #[test]
    fn relation_names_round_trip(rfn in 1u32.., seg in 0u32..10000, fork in 0usize..4, temp in proptest::option::of(0u32..1000)) {
        let suffix = ["", "_fsm", "_vm", "_init"][fork];
        let t = temp.map(|b| format!("t{b}_")).unwrap_or_default();
        let s = if seg == 0 { String::new() } else { format!(".{seg}") };
        let name = format!("base/16384/{t}{rfn}{suffix}{s}");
        match path::classify(&name, 16 << 20) {
            path::PathClass::Relation(r) | path::PathClass::TempRelation(r) => {
                prop_assert_eq!(r.locator.rel_number, rfn);
                prop_assert_eq!(r.segment, seg);
                prop_assert_eq!(r.locator.backend, temp);
                prop_assert_eq!(r.locator.db_oid, 16384);
                prop_assert_eq!(r.relpath("PG_15_202209061"), name);
            }
            other => prop_assert!(false, "{name}: {other:?}"),
        }
    }

    /// Whatever PG_VERSION holds, the error is one short line with no control character.
    #[test]
    fn pg_version_errors_are_short_and_inert(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Err(e) = control::parse_pg_version(&bytes) {
            let e = e.to_string();
            prop_assert!(e.chars().count() < 200, "{}", e);
            prop_assert!(!e.chars().any(|c| c.is_control()), "{:?}", e);
        }
        let x = excerpt::escape(&bytes);
        prop_assert!(x.chars().count() <= excerpt::MAX_CHARS * 10 + 1);
        prop_assert!(!x.chars().any(|c| c.is_control()), "{:?}", x);
    }

    /// No control, bidi or invisible format character survives `text::visible`: the result
    /// is one line; a string without them comes back unchanged; the escaping is reversible
    /// enough that different hidden characters stay told apart.
    #[test]
    fn visible_text_is_one_inert_line(s in any::<String>(), printable in "[a-zA-Zß表é .\\\"0-9]{0,30}") {
        let v = visible::visible(&s);
        prop_assert!(!v.chars().any(|c| c.is_control() || visible::is_hidden(c)), "{:?}", v);
        prop_assert!(!v.contains('\n') && !v.contains('\r'));
        for c in ['\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}',
                  '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{85}', '\u{9b}', '\u{7f}'] {
            prop_assert!(!v.contains(c));
        }
        if !s.chars().any(|c| c.is_control() || visible::is_hidden(c)) {
            prop_assert_eq!(&*v, s.as_str());
        }
        prop_assert_eq!(&*visible::visible(&printable), printable.as_str());
        // excerpt quotes through the same function, capped.
        let x = excerpt::escape(s.as_bytes());
        prop_assert!(!x.chars().any(|c| c.is_control() || visible::is_hidden(c)), "{:?}", x);
    }

    /// A path built of `..`, `.` and names, relative or under the data directory, is inside
    /// exactly when climbing it step by step never leaves the data directory's level, and
    /// what comes back never holds a `..`.
    #[test]
    fn relative_to_never_leaves_the_data_directory(
        parts in proptest::collection::vec(prop::sample::select(vec!["..", ".", "base", "1", "1259", "pg"]), 0..12),
        absolute in any::<bool>(),
    ) {
        let root = PathBuf::from("/data/pg");
        let joined = parts.join("/");
        let given = if absolute { root.join(&joined) } else { PathBuf::from(&joined) };
        let got = path::relative_to(&given, std::slice::from_ref(&root), &[]);
        // Climb it by hand, from the data directory (depth 2 below /).
        let mut stack: Vec<&str> = vec!["data", "pg"];
        for p in &parts {
            match *p {
                "." => {}
                ".." => { stack.pop(); }
                n => stack.push(n),
            }
        }
        let inside = stack.len() >= 2 && stack[..2] == ["data", "pg"];
        prop_assert_eq!(got.is_some(), inside, "{:?} -> {:?}", given, got);
        if let Some(r) = got {
            prop_assert!(!Path::new(&r).components().any(|c| c == std::path::Component::ParentDir), "{}", r);
            prop_assert_eq!(r, stack[2..].join("/"));
        }
    }
}
