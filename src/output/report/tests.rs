use super::timeline::MAX_TS;
use super::*;

/// Records from NDJSON lines.
fn recs(lines: &[&str]) -> Vec<Record> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn attach() -> String {
    r#"{"type":"attach","pid":4242,"title":"postgres: alice shop [local] SELECT","backend":"ebpf","limitations":["one"],"usdt":{"active":false,"reason":"no probes","probes":[]},"datadir":"/d","major":15}"#.to_string()
}

fn status(ts: f64, kind: &str, wait: Option<(&str, &str)>) -> String {
    let (wt, we) = match wait {
        Some((t, e)) => (format!("\"{t}\""), format!("\"{e}\"")),
        None => ("null".into(), "null".into()),
    };
    format!(
        r#"{{"type":"status","ts":{ts},"pid":4242,"backend_type":"client backend","state":"active","database":"shop","wait_event_type":{wt},"wait_event":{we},"query":"q","xact_age_s":null,"state_age_s":null,"progress":null,"verdict":"{kind} now","verdict_kind":"{kind}","verdict_detail":{{"verdict":"idle"}},"kernel_state":null,"wchan":null,"syscall":null,"syscall_for_s":null,"since_io_s":null,"send_queue":null,"memory_error":null,"leader_exited":false}}"#
    )
}

fn progress(ts: f64, rel: &str, object: &str, percent: f64, rate: f64, fin: bool) -> String {
    format!(
        r#"{{"type":"progress","ts":{ts},"relation":"{rel}","object":"{object}","schema":"s","name":"n","kind":"table","table":null,"known":true,"size":1000,"position":10,"highest":10,"percent":{percent},"estimate":false,"bytes_read":{br},"bytes_written":0,"reads":1,"segments":[0],"forks":["main"],"rate_bps":{rate},"eta_s":null,"blocks_hit":0,"blocks_read":0,"hit_ratio":null,"blocks_per_s":0.0,"last_block":null,"coverage_blocks":1,"coverage":{cov},"smgr_blocks_read":0,"smgr_blocks_written":0,"from_shared_buffers_bytes":100{fin}}}"#,
        br = (percent * 10.0) as u64,
        cov = percent / 100.0,
        fin = if fin { r#","final":true"# } else { "" }
    )
}

fn backup(ts: f64, phase: &str, streamed: u64) -> String {
    format!(
        r#"{{"type":"backup","ts":{ts},"phase":"{phase}","phase_number":3,"total":1000,"total_source":"server","streamed":{streamed},"percent":null,"tablespaces_total":1,"tablespaces_streamed":0,"rate_bps":10.0,"eta_s":null,"source":"memory","ended":false,"current_file":null,"phases_seen":[],"method":"basebackup","copier":null,"files_done":null,"files_total":null,"files_grew":0,"limiter":null,"per_tablespace":[],"copier_processes":[],"server_backup":null}}"#
    )
}

fn query(ts: f64, text: &str, done: Option<f64>) -> String {
    format!(
        r#"{{"type":"query","ts":{ts},"pid":4242,"phase":"start","text":"{text}","truncated":false,"done":{},"duration_s":{}}}"#,
        done.is_some(),
        done.map_or("null".to_string(), |d| d.to_string())
    )
}

#[test]
fn verdicts_and_waits_merge_into_spans_that_last_to_the_end() {
    let s = [
        attach(),
        status(1.0, "reading", Some(("IO", "DataFileRead"))),
        status(2.0, "reading", Some(("IO", "DataFileRead"))),
        status(3.0, "sleeping", Some(("Timeout", "PgSleep"))),
        status(4.0, "reading", None),
        r#"{"type":"summary","pid":4242,"exited":false,"exit_code":null,"exit_signal":null,"events":12,"lost":{},"relations":4}"#.into(),
    ];
    let lines: Vec<&str> = s.iter().map(String::as_str).collect();
    let t = Timeline::from_records(&recs(&lines));
    let v: Vec<(&str, f64, f64)> = t
        .verdicts
        .iter()
        .map(|s| (s.label.as_str(), s.start, s.end))
        .collect();
    assert_eq!(
        v,
        [
            ("reading", 1.0, 3.0),
            ("sleeping", 3.0, 4.0),
            ("reading", 4.0, 4.0)
        ]
    );
    assert_eq!(t.verdicts[0].detail, "reading now");
    let w: Vec<&str> = t.waits.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(w, ["IO: DataFileRead", "Timeout: PgSleep", "no wait event"]);
    assert_eq!((t.start, t.end), (Some(1.0), Some(4.0)));
    // Active all along, the same query: one span.
    let q: Vec<(&str, f64, f64)> = t
        .active_queries
        .iter()
        .map(|s| (s.label.as_str(), s.start, s.end))
        .collect();
    assert_eq!(q, [("q", 1.0, 4.0)]);
    assert_eq!(t.pid(), Some(4242));
    assert_eq!(t.processes[&4242], "postgres: alice shop [local] SELECT");
    assert_eq!(
        time_by_label(&t.verdicts),
        [("reading".to_string(), 2.0), ("sleeping".to_string(), 1.0)]
    );
}

#[test]
fn relations_keep_their_order_and_their_last_record() {
    let s = [
        attach(),
        progress(1.0, "base/5/1", "public.a", 10.0, 5.0, false),
        progress(1.0, "base/5/2", "public.b", 50.0, 9.0, false),
        progress(2.0, "base/5/1", "public.a", 40.0, 7.0, false),
        progress(3.0, "base/5/1", "public.a", 100.0, 0.0, true),
    ];
    let lines: Vec<&str> = s.iter().map(String::as_str).collect();
    let t = Timeline::from_records(&recs(&lines));
    let keys: Vec<&str> = t.relations.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["base/5/1", "base/5/2"]);
    let a = &t.relations[0];
    let pcts: Vec<Option<f64>> = a.points.iter().map(|p| p.percent).collect();
    assert_eq!(pcts, [Some(10.0), Some(40.0), Some(100.0)]);
    assert!(a.last.r#final);
    assert_eq!(peak_rate(a), 7.0);
    // 100 % covered, 10 % of it (100 of 1000 bytes) passed in shared buffers.
    let parts = coverage_parts(&a.last);
    assert_eq!(parts[0], ("read".to_string(), 90.0));
    assert_eq!(parts[1], ("in shared buffers".to_string(), 10.0));
    assert_eq!(parts[2], ("not seen".to_string(), 0.0));
}

#[test]
fn a_query_seen_twice_is_one_span_updated() {
    let s = [
        attach(),
        query(1.5, "SELECT 1", None),
        query(1.5, "SELECT 1", Some(2.0)),
        query(4.0, "SELECT 1", None),
    ];
    let lines: Vec<&str> = s.iter().map(String::as_str).collect();
    let t = Timeline::from_records(&recs(&lines));
    assert_eq!(t.queries.len(), 2);
    assert_eq!(t.queries[0].duration_s, Some(2.0));
    assert_eq!(t.queries[1].duration_s, None);
}

#[test]
fn backup_phases_follow_the_records() {
    let s = [
        attach(),
        backup(1.0, "waiting for checkpoint to finish", 0),
        backup(2.0, "streaming database files", 100),
        backup(3.0, "streaming database files", 300),
    ];
    let lines: Vec<&str> = s.iter().map(String::as_str).collect();
    let t = Timeline::from_records(&recs(&lines));
    let p: Vec<(&str, f64, f64)> = t
        .backup_phases
        .iter()
        .map(|s| (s.label.as_str(), s.start, s.end))
        .collect();
    assert_eq!(
        p,
        [
            ("waiting for checkpoint to finish", 1.0, 2.0),
            ("streaming database files", 2.0, 3.0)
        ]
    );
    assert_eq!(t.backup.iter().map(|b| b.streamed).sum::<u64>(), 400);
}

#[test]
fn times_that_cannot_be_placed_are_counted_not_drawn() {
    let s = [
        attach(),
        status(-1.0, "reading", None),
        status(MAX_TS * 2.0, "reading", None),
        status(5.0, "idle", None),
        r#"{"type":"probes","binary":"/b","count":0,"reason":null}"#.into(),
    ];
    let lines: Vec<&str> = s.iter().map(String::as_str).collect();
    let t = Timeline::from_records(&recs(&lines));
    assert_eq!(t.out_of_range, 2);
    assert_eq!(t.foreign, 1);
    assert_eq!(t.verdicts.len(), 1);
    assert_eq!(t.range(), (5.0, 6.0));
}

#[test]
fn band_rows_keep_the_longest_and_merge_the_rest() {
    let spans: Vec<Span> = (0..5)
        .map(|i| Span {
            label: format!("l{i}"),
            detail: String::new(),
            start: 0.0,
            end: f64::from(i + 1),
        })
        .collect();
    let rows = band_rows(&spans, 2);
    let labels: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(labels, ["l4", "l3", "other"]);
    assert_eq!(rows[2].spans.len(), 3);
}

#[test]
fn every_format_renders_an_empty_trace() {
    let r = recs(&[&attach()]);
    for f in [
        ReportFormat::Html,
        ReportFormat::Text,
        ReportFormat::Perfetto,
    ] {
        let mut out = Vec::new();
        write(&mut out, &r, f).unwrap();
        assert!(!out.is_empty(), "{f:?}");
    }
}

#[test]
fn perfetto_has_a_slice_per_span_and_names_its_tracks() {
    let s = [
        attach(),
        status(1.0, "reading", Some(("IO", "DataFileRead"))),
        backup(1.0, "streaming database files", 100),
        query(1.5, "SELECT 1", Some(0.5)),
        progress(2.0, "base/5/1", "public.a", 40.0, 7.0, false),
    ];
    let lines: Vec<&str> = s.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    write(&mut out, &recs(&lines), ReportFormat::Perfetto).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let ev = v["traceEvents"].as_array().unwrap();
    let has = |ph: &str, cat: &str| {
        ev.iter()
            .any(|e| e["ph"] == ph && (cat.is_empty() || e["cat"] == cat))
    };
    assert!(has("M", ""));
    assert!(has("X", "query") && has("X", "backup_phase") && has("X", "verdict"));
    assert!(has("C", "counter"));
    let q = ev.iter().find(|e| e["cat"] == "query").unwrap();
    assert_eq!(
        (q["ts"].as_f64(), q["dur"].as_f64()),
        (Some(1.5e6), Some(0.5e6))
    );
    assert!(ev.iter().all(|e| e["ph"] != "X" || e["dur"].is_number()));
}

#[test]
fn html_escapes_what_the_trace_says() {
    let hostile = r#"<script>alert(1)</script>\u001b[2J"#;
    let s = [
        attach().replace("postgres: alice", hostile),
        progress(1.0, "base/5/1", hostile, 10.0, 5.0, false),
        query(1.5, hostile, None),
    ];
    let lines: Vec<&str> = s.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    write(&mut out, &recs(&lines), ReportFormat::Html).unwrap();
    let html = String::from_utf8(out).unwrap();
    assert!(!html.contains("<script"), "raw markup from the trace");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;\\x1b[2J"));
    assert!(!html.contains('\u{1b}'));
}

#[test]
fn system_calls_of_d_are_points_counted_by_name() {
    let s = [
        attach(),
        r#"{"type":"syscall","ts":1.0,"pid":4242,"syscall":"pread64","fd":30,"path":"base/1/2","object":"public.t","offset":0,"bytes":8192,"result":8192}"#.into(),
        r#"{"type":"syscall","ts":1.1,"pid":4243,"syscall":"pread64","fd":30,"path":"base/1/2","object":"public.t","offset":0,"bytes":8192,"result":8192}"#.into(),
        r#"{"event":"stat","syscall":"newfstatat","dirfd":null,"fd":null,"path":"base/1/3","result":0,"type":"syscall","ts":1.2,"pid":4242}"#.to_string(),
    ];
    let lines: Vec<&str> = s.iter().map(String::as_str).collect();
    let t = Timeline::from_records(&recs(&lines));
    assert_eq!(t.syscalls.len(), 3);
    assert_eq!(t.syscalls[2].name, "stat");
    assert_eq!(t.syscalls[2].object.as_deref(), Some("base/1/3"));
    assert_eq!(
        syscall_counts(&t),
        [
            ("pread64".to_string(), 2, 16384),
            ("stat".to_string(), 1, 0)
        ]
    );
    // A worker seen only in its system calls is a process of its own.
    assert_eq!(t.processes.len(), 2);
    let mut out = Vec::new();
    write(&mut out, &recs(&lines), ReportFormat::Perfetto).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let x: Vec<&serde_json::Value> = v["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["cat"] == "syscall")
        .collect();
    assert_eq!(x.len(), 3);
    assert!(x.iter().all(|e| e["ph"] == "X" && e["tid"] == e["pid"]));
}
