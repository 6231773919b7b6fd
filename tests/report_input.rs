//! `pg_trace report` on input it must not trust: records full of markup, control
//! characters and absurd numbers never break the HTML (no `<` that is not the page's own
//! tag), the text or the Perfetto JSON (property-tested on the renderer); files that are
//! not a trace (empty, binary, cut short, foreign records, an endless line, a directory)
//! are one error line and a non-zero exit, never a panic. No PostgreSQL, no root.

use pg_trace::output::record::Record;
use pg_trace::output::report::{self, ReportFormat};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_pg_trace");

/// The tags a report's page is made of: its own markup and plotters' SVG.
const TAGS: &[&str] = &[
    "!DOCTYPE", "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "ul",
    "li", "table", "tr", "th", "td", "figure", "svg", "rect", "text", "line", "polyline",
    "polygon", "path", "circle", "g",
];

/// Every `<` opens or closes one of [`TAGS`].
fn only_own_tags(html: &str) -> Result<(), String> {
    for (i, _) in html.match_indices('<') {
        let rest = &html[i + 1..];
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '!')
            .collect();
        let after = rest[name.len()..].chars().next();
        if !TAGS.contains(&name.as_str()) || !matches!(after, Some(' ' | '>' | '/' | '\n')) {
            return Err(format!(
                "a '<' that is not the page's: {:?}",
                &html[i..(i + 60).min(html.len())]
            ));
        }
    }
    Ok(())
}

fn attach(s: &str, n: f64) -> Value {
    json!({"type":"attach","pid":(n.abs() as i64 % 4_000_000) as i32,"title":s,"backend":s,"limitations":[s],
           "usdt":{"active":n > 0.0,"reason":s,"probes":[s]},"datadir":s,"major":15})
}

fn status(s: &str, ts: f64) -> Value {
    json!({"type":"status","ts":ts,"pid":1,"backend_type":s,"state":s,"database":s,
           "wait_event_type":s,"wait_event":s,"query":s,"xact_age_s":ts,"state_age_s":null,
           "progress":{"view":s},"verdict":s,"verdict_kind":s,"verdict_detail":{"verdict":"idle"},
           "kernel_state":s,"wchan":s,"syscall":s,"syscall_for_s":ts,"since_io_s":null,
           "send_queue":null,"memory_error":s,"leader_exited":false})
}

fn progress(s: &str, ts: f64, n: f64) -> Value {
    json!({"type":"progress","ts":ts,"relation":s,"object":s,"schema":s,"name":s,"kind":s,
           "table":s,"known":true,"size":n.abs() as u64,"position":0,"highest":0,"percent":n,
           "estimate":false,"bytes_read":n.abs() as u64,"bytes_written":0,"reads":1,"segments":[0],
           "forks":[s],"rate_bps":n,"eta_s":n,"blocks_hit":0,"blocks_read":0,"hit_ratio":n,
           "blocks_per_s":n,"last_block":null,"coverage_blocks":1,"coverage":n,
           "smgr_blocks_read":0,"smgr_blocks_written":0,"from_shared_buffers_bytes":n.abs() as u64})
}

fn backup(s: &str, ts: f64, n: f64) -> Value {
    json!({"type":"backup","ts":ts,"phase":s,"phase_number":3,"total":n.abs() as u64,
           "total_source":s,"streamed":n.abs() as u64,"percent":n,"tablespaces_total":1,
           "tablespaces_streamed":0,"rate_bps":n,"eta_s":null,"source":s,"ended":false,
           "current_file":s,"phases_seen":[s],"method":s,"copier":s,"files_done":null,
           "files_total":null,"files_grew":0,"limiter":s,"per_tablespace":[],
           "copier_processes":[],"server_backup":null})
}

fn others(s: &str, ts: f64, n: f64) -> Vec<Value> {
    vec![
        json!({"type":"query","ts":ts,"pid":2,"phase":"start","text":s,"truncated":false,
               "done":true,"duration_s":n}),
        json!({"type":"lock_wait","ts":ts,"pid":2,"waiting":false,"duration_s":n,"mode":s,
               "locktag_type":0,"locktag":[1,2,0,0],"object":s,"relation":s,"schema":s,
               "name":s,"kind":s}),
        json!({"type":"syscall","ts":ts,"pid":3,"syscall":s,"fd":3,"path":s,"object":s,
               "offset":0,"bytes":n.abs() as u64,"result":0}),
        json!({"type":"waits","ts":ts,"pid":1,"scope":"total","hz":n,"samples":3,"window_s":n,
               "cpu_s":null,"off_cpu_s":null,"runqueue_s":null,
               "events":[{"wait_event_type":s,"wait_event":s,"samples":3,"share":n,"seconds":n}],
               "queries":[],"io_latency":[{"relation":s,"fork":s,"op":s,"count":1,"p50_us":n,
               "p99_us":n,"page_cache_share":n}]}),
        json!({"type":"waits","ts":ts,"pid":1,"scope":"interval","hz":n,"samples":3,
               "window_s":n,"cpu_s":null,"off_cpu_s":null,"runqueue_s":null,
               "events":[{"wait_event_type":s,"wait_event":s,"samples":3,"share":n,"seconds":n}],
               "queries":[],"io_latency":[]}),
        json!({"type":"stats","ts":ts,"events":1,"events_per_s":n,"lost":{s:1},"files_open":1,
               "sorts":0,"sorts_external":0}),
        json!({"type":"summary","pid":1,"exited":true,"exit_code":1,"exit_signal":null,
               "events":1,"lost":{s:2},"relations":1}),
    ]
}

fn records(values: Vec<Value>) -> Vec<Record> {
    values
        .into_iter()
        .map(|v| serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}")))
        .collect()
}

fn render(r: &[Record], f: ReportFormat) -> String {
    let mut out = Vec::new();
    report::write(&mut out, r, f).unwrap();
    String::from_utf8(out).unwrap()
}

/// Text full of what could be markup, an escape or a forged line.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        "[<>&\"'/a-z =;\\x00-\\x1f\\x7f\u{80}-\u{9f}\u{202e}]{0,40}",
        Just("</svg><script>alert(1)</script>".to_string()),
        Just("<!-- x --><![CDATA[ ]]>".to_string()),
        any::<String>(),
    ]
}

fn number() -> impl Strategy<Value = f64> {
    prop_oneof![
        -1e300f64..1e300,
        -10.0f64..200.0,
        Just(0.0),
        Just(f64::MAX),
        Just(f64::MIN_POSITIVE),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn hostile_records_never_break_a_report(
        s in hostile(), t in hostile(), ts in number(), ts2 in number(), n in number()
    ) {
        let mut v = vec![attach(&s, n), status(&s, ts), status(&t, ts2), progress(&s, ts, n),
                         progress(&s, ts2, -n), backup(&t, ts, n), backup(&s, ts2, n)];
        v.extend(others(&s, ts, n));
        v.extend(others(&t, ts2, n));
        let r = records(v);

        let html = render(&r, ReportFormat::Html);
        if let Err(e) = only_own_tags(&html) {
            return Err(TestCaseError::fail(e));
        }
        prop_assert!(!html.chars().any(|c| c.is_control() && c != '\n'), "a control character in the HTML");

        let text = render(&r, ReportFormat::Text);
        prop_assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "a control character in the text");

        let pf: Value = serde_json::from_str(&render(&r, ReportFormat::Perfetto)).unwrap();
        for e in pf["traceEvents"].as_array().unwrap() {
            prop_assert!(e["ts"].is_number() && e["pid"].is_number() && e["tid"].is_number(), "{}", e);
            prop_assert!(e["ph"] != "X" || e["dur"].is_number(), "{}", e);
        }
    }
}

/// `pg_trace report ARGS`: exit status and stderr.
fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One error line naming the problem, exit status 1, no panic.
fn refused(args: &[&str], says: &str) {
    let (code, err) = run(args);
    assert_eq!(code, 1, "{args:?}: {err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(err.starts_with("pg_trace: error: "), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert!(err.contains(says), "{args:?}: want {says:?} in {err}");
}

fn file(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn files_that_are_not_a_trace_are_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good: String = [
        attach("postgres: x", 7.0),
        status("idle", 1.0),
        json!({"type":"summary","pid":7,"exited":false,"exit_code":null,"exit_signal":null,
               "events":1,"lost":{},"relations":0}),
    ]
    .iter()
    .map(|v| format!("{v}\n"))
    .collect();
    let ok = file(d, "ok.ndjson", good.as_bytes());
    let out = d.join("ok.html");
    let (code, err) = run(&["report", &ok, "-o", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");

    refused(&["report", &d.join("missing").to_string_lossy()], "missing");
    refused(&["report", &file(d, "empty", b"")], "is empty");
    refused(
        &[
            "report",
            &file(d, "zstd", b"\x28\xb5\x2f\xfd\x00\x01\x1b[2J"),
        ],
        "is not a trace pg_trace reads",
    );
    let cut = &good.as_bytes()[..good.len() - 20];
    refused(&["report", &file(d, "cut", cut)], "line 3: cut short");
    refused(
        &["report", &file(d, "foreign", b"{\"type\":\"nope\"}\n")],
        "line 1: not a pg_trace record",
    );
    refused(
        &[
            "report",
            &file(
                d,
                "ps",
                b"{\"type\":\"probes\",\"binary\":\"/b\",\"count\":0,\"reason\":null}\n",
            ),
        ],
        "no attach record",
    );
    let mut long = b"{\"type\":\"".to_vec();
    long.extend(std::iter::repeat_n(b'x', 3 << 20));
    refused(&["report", &file(d, "long", &long)], "longer than");
    refused(&["report", d.to_str().unwrap()], "");
    refused(&["report", &ok, "--format", "json"], "--format json");
    refused(&["report", &ok, "-o", &ok], "the trace itself");
    refused(
        &["catalog", "--pgdata", "/nonexistent", "--format", "html"],
        "only `pg_trace report`",
    );
    // Nothing was written over the trace.
    assert_eq!(std::fs::read_to_string(&ok).unwrap(), good);
}
