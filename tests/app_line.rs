//! Line mode, whole: scripted sessions replayed through the real loop on a scripted
//! clock, every line snapshotted (text and NDJSON). No root, no PostgreSQL, no sleeping.
//! Update: INSTA_UPDATE=always cargo test --test app_line, then review the diff.

#[path = "support/scripted.rs"]
mod scripted;
#[path = "support/sessions.rs"]
mod sessions;

use pg_trace::output::Format;
use pg_trace::session::line::{line_loop, Pace};
use sessions::Script;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// The whole output of line mode on `script`, and the notes it gave.
fn run(script: &Script, format: Format, debug: bool) -> String {
    let (mut s, _clock) = sessions::session(script);
    let mut out = Vec::new();
    let mut notes = Vec::new();
    let pace = Pace {
        interval: Duration::from_secs(1),
        // A safety net: every script ends with the tracee's exit or runs out well before.
        duration: Some(Duration::from_secs(30)),
        format,
        debug,
    };
    line_loop(pace, &mut s, &AtomicBool::new(false), &mut out, &mut |n| {
        notes.push(n)
    })
    .unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    String::from_utf8(out).unwrap()
}

/// Every JSON line is one object with a type.
fn check_ndjson(out: &str) {
    for l in out.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["type"].is_string(), "{l}");
    }
}

#[test]
fn scan_across_two_segments_text() {
    let out = run(&sessions::scan(), Format::Text, false);
    assert!(out.contains("seg 1"), "{out}");
    assert!(out.contains("pg_trace: pid 4242 exited"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn scan_across_two_segments_json() {
    let out = run(&sessions::scan(), Format::Json, false);
    check_ndjson(&out);
    insta::assert_snapshot!(out);
}

#[test]
fn scan_with_every_syscall() {
    let out = run(&sessions::scan(), Format::Text, true);
    assert!(out.contains("pread64(fd=25 → sales.orders.1"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn throttled_base_backup_text() {
    let out = run(&sessions::throttled_backup(), Format::Text, false);
    assert!(out.contains("throttled by --max-rate"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn throttled_base_backup_json() {
    let out = run(&sessions::throttled_backup(), Format::Json, false);
    check_ndjson(&out);
    insta::assert_snapshot!(out);
}

#[test]
fn lock_wait_then_exit_text() {
    let out = run(&sessions::lock_wait(), Format::Text, false);
    assert!(out.contains("held by pid 5151"), "{out}");
    insta::assert_snapshot!(out);
}

#[test]
fn lock_wait_then_exit_json() {
    let out = run(&sessions::lock_wait(), Format::Json, false);
    check_ndjson(&out);
    insta::assert_snapshot!(out);
}

/// Issue 11 item 3: reads after the last tick, then the exit, in one poll: the final
/// interval reports the files they touched, final figures, every time.
#[test]
fn last_interval_reports_files_of_exited_backend() {
    for _ in 0..4 {
        let out = run(&sessions::reads_then_exit(), Format::Json, false);
        check_ndjson(&out);
        let recs: Vec<serde_json::Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        // The last interval: the records after the last-but-one stats record.
        let stats: Vec<usize> = recs
            .iter()
            .enumerate()
            .filter(|(_, r)| r["type"] == "stats")
            .map(|(i, _)| i)
            .collect();
        let from = stats.iter().rev().nth(1).map_or(0, |i| i + 1);
        let last = &recs[from..];
        let seg1 = last
            .iter()
            .find(|r| r["type"] == "file" && r["fd"] == 25)
            .unwrap_or_else(|| panic!("no file record for fd 25 in the last interval: {out}"));
        assert_eq!(seg1["bytes_read"], 8 * 1024 * 1024, "{out}");
        assert!(
            last.iter().any(|r| r["type"] == "progress"),
            "no progress in the last interval: {out}"
        );
    }
}
