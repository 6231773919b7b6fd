use super::*;
use crate::process::status::PG_EPOCH_UNIX_US;

fn sample(pid: Pid, state: &str, query: &str, wait: Option<&str>) -> StatusSample {
    StatusSample {
        pid,
        major: 15,
        backend_type: Some("client backend".into()),
        state: Some(state.into()),
        query: Some(query.into()),
        wait_event: wait.map(str::to_string),
        wait_event_type: wait.map(|_| "IPC".into()),
        state_start_us: Some(1_000_000),
        ..Default::default()
    }
}

fn xlog(running: u32) -> XlogBackupState {
    XlogBackupState {
        running,
        exclusive: false,
        last_backup_start: 0x0000_0001_0200_0028,
        redo: 0x0000_0001_0200_0028,
    }
}

#[test]
fn xlog_fields_per_major() {
    let l15 = xlog::layout(15).unwrap();
    let mut b = vec![0u8; 256];
    b[152..160].copy_from_slice(&0x3000_0028u64.to_ne_bytes());
    b[164..168].copy_from_slice(&2u32.to_ne_bytes());
    b[168..176].copy_from_slice(&0x2000_0028u64.to_ne_bytes());
    let x = xlog::decode(&b, &l15).unwrap();
    assert_eq!((x.running, x.exclusive), (2, false));
    assert_eq!(lsn(x.last_backup_start), "0/20000028");
    // The same bytes as 12–14: nonExclusiveBackups is at 168 (a huge "count").
    assert!(xlog::decode(&b, &xlog::layout(13).unwrap()).is_none());
    let l13 = xlog::layout(13).unwrap();
    let mut b = vec![0u8; 256];
    b[152..160].copy_from_slice(&0x3000_0028u64.to_ne_bytes());
    b[164..168].copy_from_slice(&2u32.to_ne_bytes()); // IN_PROGRESS
    b[168..172].copy_from_slice(&1u32.to_ne_bytes());
    b[176..184].copy_from_slice(&0x3000_0028u64.to_ne_bytes());
    let x = xlog::decode(&b, &l13).unwrap();
    assert_eq!((x.running, x.exclusive), (2, true));
    // A start after the redo point, an unknown state, no redo: refused.
    b[176..184].copy_from_slice(&0x4000_0028u64.to_ne_bytes());
    assert!(xlog::decode(&b, &l13).is_none());
    b[176..184].copy_from_slice(&0u64.to_ne_bytes());
    b[164..168].copy_from_slice(&7u32.to_ne_bytes());
    assert!(xlog::decode(&b, &l13).is_none());
    assert!(xlog::decode(&[0u8; 256], &l15).is_none());
    assert!(xlog::layout(11).is_none() && xlog::layout(19).is_none());
}

#[test]
fn calls_and_labels_from_query_text() {
    assert_eq!(call_of("SELECT pg_backup_start('x')"), Some(Call::Start));
    assert_eq!(
        call_of("select PG_START_BACKUP ('x', false, false)"),
        Some(Call::Start)
    );
    assert_eq!(
        call_of("SELECT * FROM pg_backup_stop(true)"),
        Some(Call::Stop)
    );
    assert_eq!(call_of("select pg_stop_backup(false)"), Some(Call::Stop));
    assert_eq!(call_of("SELECT my_pg_backup_start('x')"), None);
    assert_eq!(call_of("SELECT 'pg_backup_start'"), None);
    assert_eq!(
        parse_label("SELECT pg_backup_start('nightly', true)").as_deref(),
        Some("nightly")
    );
    assert_eq!(
        parse_label("select pg_start_backup( 'it''s', false, false)").as_deref(),
        Some("it's")
    );
    assert_eq!(
        parse_label("SELECT pg_backup_start(label => 'l1', fast => true)").as_deref(),
        Some("l1")
    );
    assert_eq!(
        parse_label("SELECT pg_backup_start(E'e1')").as_deref(),
        Some("e1")
    );
    assert_eq!(parse_label("SELECT pg_backup_start($1)"), None);
    assert_eq!(parse_label("SELECT pg_backup_start('unterminated"), None);
}

#[test]
fn phases() {
    // Inside the start call.
    let s = [sample(10, "active", "SELECT pg_backup_start('a')", None)];
    let b = assess(Some(&xlog(1)), &s, None, None).unwrap();
    assert_eq!((b.phase.as_str(), b.pid), (PHASE_CHECKPOINT, Some(10)));
    // Holding it, idle.
    let s = [
        sample(10, "idle", "SELECT pg_backup_start('a', true)", None),
        sample(11, "active", "SELECT 1", None),
    ];
    let b = assess(Some(&xlog(1)), &s, None, None).unwrap();
    assert_eq!(b.phase, PHASE_COPYING);
    assert_eq!(b.phase_source, SOURCE_MEMORY);
    assert_eq!(b.label.as_deref(), Some("a"));
    assert_eq!(b.pid, Some(10));
    assert_eq!(b.start_lsn.as_deref(), Some("1/2000028"));
    assert_eq!(b.started_at_us, Some(PG_EPOCH_UNIX_US + 1_000_000));
    assert_eq!(b.started_at().as_deref(), Some("2000-01-01T00:00:01Z"));
    // Inside the stop call, the counter already down.
    let s = [sample(
        10,
        "active",
        "SELECT * FROM pg_backup_stop()",
        Some("BackupWaitWalArchive"),
    )];
    let b = assess(Some(&xlog(0)), &s, None, None).unwrap();
    assert_eq!(
        (b.phase.as_str(), b.phase_source.as_str()),
        (PHASE_ARCHIVE, SOURCE_MEMORY)
    );
    let s = [sample(10, "active", "SELECT pg_stop_backup(false)", None)];
    let b = assess(Some(&xlog(0)), &s, None, None).unwrap();
    assert_eq!(
        (b.phase.as_str(), b.phase_source.as_str()),
        (PHASE_ARCHIVE, SOURCE_INFERRED)
    );
    // Finished: the stop call returned.
    let s = [sample(10, "idle", "SELECT * FROM pg_backup_stop()", None)];
    assert!(assess(Some(&xlog(0)), &s, None, None).is_none());
    // A failed start leaves its text, but the counter says nothing runs.
    let s = [sample(10, "idle", "SELECT pg_backup_start('a')", None)];
    assert!(assess(Some(&xlog(0)), &s, None, None).is_none());
}

#[test]
fn exclusive_backup_from_backup_label() {
    let label = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
                 CHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: pg_start_backup\n\
                 BACKUP FROM: primary\nSTART TIME: 2026-12-02 07:01:02 UTC\nLABEL: weekly\n\
                 START TIMELINE: 1\n";
    let (l, start, t) = parse_backup_label(label);
    assert_eq!(l.as_deref(), Some("weekly"));
    assert_eq!(start, Some(0x0200_0028));
    assert_eq!(t.map(iso_utc).as_deref(), Some("2026-12-02T07:01:02Z"));
    let x = XlogBackupState {
        exclusive: true,
        ..xlog(1)
    };
    let s = [sample(10, "idle", "SELECT pg_start_backup('weekly')", None)];
    let b = assess(Some(&x), &s, Some(label), None).unwrap();
    assert_eq!(b.pid, None, "an exclusive backup is held by no session");
    assert_eq!(b.label_source.as_deref(), Some(SOURCE_FILES));
    assert_eq!(parse_pg_time("2026-12-02 07:01:02 CET"), None);
}

#[test]
fn archive_backlog_and_titles() {
    let a = archive_of_names([
        ("000000010000000000000005.ready", Some(3.0)),
        ("000000010000000000000004.ready", Some(9.0)),
        ("000000010000000000000003.done", Some(20.0)),
        ("000000010000000000000002.done", Some(30.0)),
    ]);
    assert_eq!(a.ready, 2);
    assert_eq!(a.oldest_ready.as_deref(), Some("000000010000000000000004"));
    assert_eq!(a.oldest_ready_age_s, Some(9.0));
    assert_eq!(a.last_archived.as_deref(), Some("000000010000000000000003"));
    let (l, f) = parse_archiver_title("postgres: archiver   failed on 000000010000000000000004");
    assert_eq!((l, f.as_deref()), (None, Some("000000010000000000000004")));
    let (l, f) =
        parse_archiver_title("postgres: 15/main: archiver last was 00000001000000000000000A");
    assert_eq!((l.as_deref(), f), (Some("00000001000000000000000A"), None));
}

#[test]
fn iso_dates() {
    assert_eq!(iso_utc(0), "1970-01-01T00:00:00Z");
    assert_eq!(iso_utc(951_782_400_000_000), "2000-02-29T00:00:00Z");
    let t = parse_pg_time("2024-02-29 23:59:59 UTC").unwrap();
    assert_eq!(iso_utc(t), "2024-02-29T23:59:59Z");
    assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
    assert_eq!(lsn(0x16_B374_D848), "16/B374D848");
}

proptest::proptest! {
    /// Garbage from memory, query texts and files never panics.
    #[test]
    fn hostile_bytes_never_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..300), us in proptest::num::i64::ANY) {
        for m in 12..=18 {
            let _ = xlog::decode(&b, &xlog::layout(m).unwrap());
        }
        let s = String::from_utf8_lossy(&b).into_owned();
        let _ = call_of(&s);
        let _ = parse_label(&s);
        let _ = parse_label(&format!("select pg_backup_start({s}"));
        let _ = parse_backup_label(&s);
        let _ = parse_archiver_title(&s);
        let _ = parse_pg_time(&s);
        let _ = iso_utc(us);
        let _ = archive_of_names([(s.as_str(), Some(1.0))]);
        let q = sample(1, "active", &s, Some("BackupWaitWalArchive"));
        let _ = assess(None, &[q], Some(&s), None);
    }
}

#[test]
fn watched_to_the_end() {
    let mut w = Watch::default();
    let s = [sample(10, "idle", "SELECT pg_backup_start('a')", None)];
    let b = w.observe(assess(Some(&xlog(1)), &s, None, None)).unwrap();
    assert!(b
        .headline(PG_EPOCH_UNIX_US + 61_000_000)
        .starts_with("low-level backup running, 1m00s"));
    assert_eq!(b.details(), "start 1/2000028, label \"a\" (inferred), session 10 (inferred), since 2000-01-01T00:00:01Z");
    let s = [sample(
        10,
        "active",
        "SELECT pg_backup_stop()",
        Some("BackupWaitWalArchive"),
    )];
    let b = w.observe(assess(Some(&xlog(0)), &s, None, None)).unwrap();
    assert_eq!(
        (b.phase.as_str(), b.label.as_deref()),
        (PHASE_ARCHIVE, Some("a"))
    );
    let b = w.observe(None).unwrap();
    assert_eq!(b.phase, PHASE_DONE);
    assert!(w.observe(None).is_none());
}

#[test]
fn a_base_backup_is_not_a_low_level_one() {
    let walsender = StatusSample {
        backend_type: Some("walsender".into()),
        ..sample(
            7,
            "active",
            "BASE_BACKUP ( LABEL 'nightly', PROGRESS)",
            None,
        )
    };
    // pg_basebackup alone: the counter says 1, and it is its walsender's.
    assert!(assess(Some(&xlog(1)), std::slice::from_ref(&walsender), None, None).is_none());
    // A low-level backup held by a session beside it: one of the two is reported.
    let holder = sample(8, "idle", "select pg_backup_start('x')", None);
    let b = assess(Some(&xlog(2)), &[walsender.clone(), holder], None, None).unwrap();
    assert_eq!((b.running, b.pid), (1, Some(8)));
    // A walsender streaming WAL is no backup.
    let streaming = StatusSample {
        query: Some("START_REPLICATION 0/3000000".into()),
        ..walsender
    };
    assert_eq!(
        assess(Some(&xlog(1)), &[streaming], None, None).map(|b| b.running),
        Some(1)
    );
}
