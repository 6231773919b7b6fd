use super::layout::{slot_layout, walsnd_layout};
use super::*;
use crate::process::server_backup::xlog::{byte_pos_to_end_rec_ptr, byte_pos_to_rec_ptr};

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}
fn put64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

#[test]
fn walsnd_of_a_pid_on_every_major() {
    for major in 12..=18 {
        let l = walsnd_layout(major).unwrap();
        let mut b = vec![0u8; l.array + 3 * l.stride];
        let base = l.array + 2 * l.stride;
        put32(&mut b, base + l.pid, 4242);
        put32(&mut b, base + l.state, 3);
        put64(&mut b, base + l.sent, 0x3000060);
        put64(&mut b, base + l.write, 0x3000000);
        put64(&mut b, base + l.flush, 0x2000000);
        put64(&mut b, base + l.write_lag, 1500);
        put64(&mut b, base + l.flush_lag, u64::MAX); // -1
        let w = find_walsnd(&b, &l, 4242).unwrap();
        assert_eq!(w.state, "streaming");
        assert_eq!(
            (w.sent, w.write, w.flush, w.replay),
            (Some(0x3000060), Some(0x3000000), Some(0x2000000), None)
        );
        assert_eq!((w.write_lag_us, w.flush_lag_us), (Some(1500), None));
        assert_eq!(find_walsnd(&b, &l, 4243), None);
        assert_eq!(find_walsnd(&b, &l, 0), None);
        put32(&mut b, base + l.state, 9);
        assert_eq!(find_walsnd(&b, &l, 4242), None, "state out of range");
        assert_eq!(find_walsnd(&b[..l.array - 1], &l, 4242), None);
    }
}

#[test]
fn slot_held_by_a_pid() {
    for major in 12..=18 {
        let l = slot_layout(major).unwrap();
        let mut b = vec![0u8; 3 * l.stride];
        let base = l.stride;
        b[base + l.in_use] = 1;
        put32(&mut b, base + l.active_pid, 77);
        b[base + l.name..base + l.name + 4].copy_from_slice(b"sub1");
        put32(&mut b, base + l.database, 5);
        put64(&mut b, base + l.restart_lsn, 0x1000);
        put64(&mut b, base + l.confirmed_flush, 0x2000);
        let s = find_slot(&b, &l, 77).unwrap();
        assert_eq!(
            (s.name.as_str(), s.logical, s.restart_lsn, s.confirmed_flush),
            ("sub1", true, Some(0x1000), Some(0x2000))
        );
        // A name no server accepts never becomes a path.
        b[base + l.name..base + l.name + 4].copy_from_slice(b"../x");
        assert_eq!(find_slot(&b, &l, 77), None);
        b[base + l.name..base + l.name + 4].copy_from_slice(b"sub1");
        b[base + l.in_use] = 0;
        assert_eq!(find_slot(&b, &l, 77), None);
    }
}

#[test]
fn insert_position_as_pg_current_wal_insert_lsn() {
    let (seg, blck) = (16 << 20, 8192);
    // The first byte after the segment's long header, and after the first page.
    assert_eq!(byte_pos_to_rec_ptr(0, seg, blck), Some(40));
    assert_eq!(byte_pos_to_rec_ptr(8152, seg, blck), Some(8192 + 24));
    assert_eq!(byte_pos_to_rec_ptr(8151, seg, blck), Some(8191));
    // A whole segment of usable bytes is the next segment's first record.
    let usable = (seg / blck) * (blck - 24) - 16;
    assert_eq!(byte_pos_to_rec_ptr(usable, seg, blck), Some(seg + 40));
    assert_eq!(byte_pos_to_rec_ptr(1, 3 << 20, blck), None);
    assert_eq!(byte_pos_to_rec_ptr(1, seg, 100), None);
    assert_eq!(byte_pos_to_rec_ptr(u64::MAX, seg, blck), None);
    // The end of the WAL written stops at a page or segment boundary, not past the next
    // page's header; elsewhere the two agree.
    assert_eq!(byte_pos_to_end_rec_ptr(0, seg, blck), Some(0));
    assert_eq!(byte_pos_to_end_rec_ptr(8152, seg, blck), Some(8192));
    assert_eq!(
        byte_pos_to_end_rec_ptr(8152 + 8168, seg, blck),
        Some(2 * 8192)
    );
    assert_eq!(byte_pos_to_end_rec_ptr(8151, seg, blck), Some(8191));
    assert_eq!(byte_pos_to_end_rec_ptr(8153, seg, blck), Some(8192 + 25));
    assert_eq!(byte_pos_to_end_rec_ptr(usable, seg, blck), Some(seg));
    assert_eq!(
        byte_pos_to_end_rec_ptr(usable + 1, seg, blck),
        Some(seg + 41)
    );
}

#[test]
fn spill_names() {
    assert!(spill::is_spill_name("xid-745-lsn-0-1000000.spill"));
    assert!(spill::is_spill_name("xid-745-lsn-1A-FF000000.spill"));
    for n in [
        "state",
        "xid-745-lsn-0.spill",
        "xid--lsn-0-1.spill",
        "xid-7a-lsn-0-1.spill",
        "xid-745-lsn-0-1.spill.tmp",
    ] {
        assert!(!spill::is_spill_name(n), "{n}");
    }
    let s = spill::tally([
        ("state", 200),
        ("xid-1-lsn-0-1000000.spill", 100),
        ("xid-1-lsn-0-2000000.spill", 50),
    ]);
    assert_eq!((s.files, s.bytes), (2, 150));
}

proptest::proptest! {
    #[test]
    fn any_bytes_decode(b in proptest::collection::vec(proptest::num::u8::ANY, 0..600), pid in 1i32..5, major in 12u32..19) {
        let _ = find_walsnd(&b, &walsnd_layout(major).unwrap(), pid);
        let _ = find_slot(&b, &slot_layout(major).unwrap(), pid);
    }

    #[test]
    fn any_position_converts(pos in proptest::num::u64::ANY, seg_shift in 18u32..32, blck_shift in 8u32..18) {
        let _ = byte_pos_to_rec_ptr(pos, 1 << seg_shift, 1 << blck_shift);
    }
}

#[test]
fn samples_recorded_before_walsenders_read_back() {
    use crate::process::status::StatusSample;
    let old = StatusSample {
        pid: 7,
        major: 16,
        ..Default::default()
    };
    let json = serde_json::to_string(&old).unwrap();
    assert!(!json.contains("walsender"), "{json}");
    let back: StatusSample = serde_json::from_str(&json).unwrap();
    assert_eq!(back.walsender, None);
    let mut new = old;
    new.walsender = Some(WalSenderSample {
        state: "streaming".into(),
        sent: Some(1),
        ..Default::default()
    });
    let back: StatusSample = serde_json::from_str(&serde_json::to_string(&new).unwrap()).unwrap();
    assert_eq!(back, new);
}
