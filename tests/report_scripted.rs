//! `pg_trace report` on whole scripted sessions: the line-mode JSON of a two-segment scan,
//! a throttled base backup and a lock wait, made by the real loop on a scripted clock,
//! rendered in every format. The report says what line mode said. No root, no PostgreSQL.

#[path = "support/scripted.rs"]
mod scripted;
#[path = "support/sessions.rs"]
mod sessions;

use pg_trace::output::record::Record;
use pg_trace::output::report::{self, ReportFormat};
use pg_trace::output::Format;
use pg_trace::session::line::{line_loop, Pace};
use sessions::Script;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// The records line mode writes for `script`.
fn records(script: &Script) -> Vec<Record> {
    let (mut s, _clock) = sessions::session(script);
    let mut out = Vec::new();
    let pace = Pace {
        interval: Duration::from_secs(1),
        duration: Some(Duration::from_secs(30)),
        format: Format::Json,
        debug: false,
    };
    line_loop(pace, &mut s, &AtomicBool::new(false), &mut out, &mut |_| {}).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn render(r: &[Record], f: ReportFormat) -> String {
    let mut out = Vec::new();
    report::write(&mut out, r, f).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn a_scan_across_two_segments() {
    let r = records(&sessions::scan());
    let text = render(&r, ReportFormat::Text);
    for want in [
        "pid 4242, postgres: alice shop [local] SELECT",
        "reading from disk base/16385/16388 (sales.orders)",
        "1.5 GiB  100.0 %",
        "sales.orders (table)",
        "IO: DataFileRead",
        "the process exited with code 0",
    ] {
        assert!(text.contains(want), "no {want:?} in\n{text}");
    }
    let html = render(&r, ReportFormat::Html);
    for want in [
        "sales.orders",
        "position in the relation",
        "Coverage strips",
    ] {
        assert!(html.contains(want), "no {want:?} in the HTML");
    }
    let pf: serde_json::Value = serde_json::from_str(&render(&r, ReportFormat::Perfetto)).unwrap();
    let ev = pf["traceEvents"].as_array().unwrap();
    assert!(ev
        .iter()
        .any(|e| e["ph"] == "C" && e["name"] == "read rate: sales.orders"));
    assert!(ev
        .iter()
        .any(|e| e["cat"] == "query" && e["name"] == "SELECT count(*) FROM sales.orders"));
}

#[test]
fn a_throttled_base_backup() {
    let r = records(&sessions::throttled_backup());
    let text = render(&r, ReportFormat::Text);
    for want in [
        "throttled by --max-rate",
        "streaming database files",
        "of 64.0 MiB",
        "Timeout: BaseBackupThrottle",
    ] {
        assert!(text.contains(want), "no {want:?} in\n{text}");
    }
    let pf: serde_json::Value = serde_json::from_str(&render(&r, ReportFormat::Perfetto)).unwrap();
    let ev = pf["traceEvents"].as_array().unwrap();
    assert!(ev
        .iter()
        .any(|e| e["cat"] == "backup_phase" && e["name"] == "streaming database files"));
    assert!(ev.iter().any(|e| e["name"] == "backup streamed"));
}

#[test]
fn a_lock_wait() {
    let r = records(&sessions::lock_wait());
    let text = render(&r, ReportFormat::Text);
    assert!(
        text.contains("waiting on a relation lock on sales.orders held by pid 5151"),
        "{text}"
    );
    assert!(text.contains("Lock: relation"), "{text}");
}
