//! `pg_trace report` on real traces: a paced sequential scan of a table whose name is
//! markup, and a base backup throttled by MAX_RATE, each captured with line mode's JSON
//! on one cluster. The HTML report is opened in headless Chromium: its screenshot is not
//! blank, and its DOM holds the relation's name (as text, not markup), the backup's
//! phase and the charts' axis labels. The Perfetto JSON is checked against the
//! trace-event format, and the text report holds the same facts.

mod support;

use pg_trace::output::record::Record;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::status::{BackupOpts, Replication};
use support::Cluster;

const BIN: &str = env!("CARGO_BIN_EXE_pg_trace");
/// Markup in a relation's name: the report must show it, never run it.
const TABLE: &str = "orders <b>&amp;</b>";

/// A line-mode trace written to a file, as a user captures one.
struct Capture {
    child: Child,
    path: PathBuf,
}

impl Capture {
    fn start(pid: i32, path: &Path) -> Capture {
        let out = File::create(path).unwrap();
        let child = Command::new(BIN)
            .args(["-p", &pid.to_string(), "--no-tui", "--format", "json"])
            .args(["--interval", "200"])
            .stdout(out)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pg_trace");
        Capture {
            child,
            path: path.to_path_buf(),
        }
    }

    fn records(&self) -> Vec<Record> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        // The last line may still be on its way.
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn wait_for(&mut self, what: &str, f: impl Fn(&[Record]) -> bool) {
        let t = Instant::now();
        while !f(&self.records()) {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("pg_trace exited ({st}) while waiting for {what}");
            }
            assert!(
                t.elapsed() < Duration::from_secs(90),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ctrl-C: pg_trace writes its last interval and summary, and exits 0.
    fn finish(self) {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let out = self.child.wait_with_output().expect("wait pg_trace");
        assert!(
            out.status.success(),
            "pg_trace failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn report(input: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(BIN)
        .arg("report")
        .arg(input)
        .args(args)
        .output()
        .expect("run pg_trace report");
    assert!(
        out.status.success(),
        "pg_trace report {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run headless Chromium on `args`, killed if it has not finished in two minutes.
fn chromium(dir: &Path, args: &[String]) -> Vec<u8> {
    let profile = dir.join("chromium-profile");
    let mut child = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium: not installed? scripts/setup.sh installs Debian's chromium");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut v).map(|_| v)
    });
    let t = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if t.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {args:?} did not finish in two minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "chromium {args:?}: {status}");
    reader.join().unwrap().unwrap()
}

/// Pixels that are not the white page, and those with a colour (charts), of a PNG.
fn pixels(png_path: &Path) -> (usize, usize, usize) {
    let decoder = png::Decoder::new(std::io::BufReader::new(File::open(png_path).unwrap()));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("PNG size")];
    let info = reader.next_frame(&mut buf).expect("PNG frame");
    let channels = info.color_type.samples();
    assert!(channels >= 3, "{:?}", info.color_type);
    let data = &buf[..info.buffer_size()];
    let (mut total, mut ink, mut colour) = (0, 0, 0);
    for px in data.chunks_exact(channels) {
        total += 1;
        let (r, g, b) = (px[0], px[1], px[2]);
        if r < 245 || g < 245 || b < 245 {
            ink += 1;
        }
        if r.max(g).max(b) - r.min(g).min(b) > 80 {
            colour += 1;
        }
    }
    (total, ink, colour)
}

/// The HTML report of `capture` rendered by Chromium: (visible DOM, screenshot's pixels).
fn render_html(dir: &Path, capture: &Path, name: &str) -> String {
    let html = dir.join(format!("{name}.html"));
    report(capture, &["-o", html.to_str().unwrap()]);
    let page = std::fs::read_to_string(&html).unwrap();
    // Self-contained: nothing to fetch, nothing to run.
    for bad in [
        "<script", "<link", "<img", "<iframe", "src=", "@import", "url(",
    ] {
        assert!(!page.contains(bad), "{name}: the page has {bad}");
    }
    let url = format!("file://{}", html.display());
    let png = dir.join(format!("{name}.png"));
    chromium(
        dir,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1100,2400".into(),
            url.clone(),
        ],
    );
    let (total, ink, colour) = pixels(&png);
    assert!(
        ink * 50 > total,
        "{name}: the screenshot is nearly blank ({ink} of {total} pixels not white)"
    );
    assert!(
        colour > 2000,
        "{name}: no chart drawn ({colour} coloured pixels)"
    );
    let dom = chromium(dir, &["--dump-dom".into(), url]);
    String::from_utf8_lossy(&dom).into_owned()
}

/// The trace-event format: `traceEvents`, each event with a valid `ph`, numeric `ts`,
/// `pid`, `tid`; `X` with a `dur`; `B`/`E` balanced per thread. Returns the events.
fn check_trace_events(path: &Path) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).expect("Perfetto JSON parses");
    let events = v["traceEvents"]
        .as_array()
        .expect("a traceEvents array")
        .clone();
    assert!(!events.is_empty());
    let mut open: HashMap<(i64, i64), i64> = HashMap::new();
    for e in &events {
        let ph = e["ph"].as_str().unwrap_or_else(|| panic!("no ph: {e}"));
        assert!(
            ["B", "E", "X", "i", "I", "C", "M", "b", "e", "n", "s", "t", "f", "P", "O", "N", "D"]
                .contains(&ph),
            "bad ph: {e}"
        );
        assert!(e["ts"].is_number(), "ts: {e}");
        let pid = e["pid"].as_i64().unwrap_or_else(|| panic!("pid: {e}"));
        let tid = e["tid"].as_i64().unwrap_or_else(|| panic!("tid: {e}"));
        assert!(e["name"].is_string(), "name: {e}");
        match ph {
            "X" => assert!(
                e["dur"].as_f64().is_some_and(|d| d >= 0.0),
                "X without dur: {e}"
            ),
            "B" => *open.entry((pid, tid)).or_default() += 1,
            "E" => {
                let n = open.entry((pid, tid)).or_default();
                *n -= 1;
                assert!(*n >= 0, "E before B on {pid}/{tid}");
            }
            "C" => assert!(e["args"].is_object(), "C without args: {e}"),
            _ => {}
        }
    }
    assert!(open.values().all(|&n| n == 0), "B/E unbalanced: {open:?}");
    events
}

fn has(events: &[serde_json::Value], ph: &str, cat: &str) -> bool {
    events.iter().any(|e| e["ph"] == ph && e["cat"] == cat)
}

/// A sequential scan paced by a sleep per row, traced from its start to its end.
fn paced_scan(c: &mut Cluster, dir: &Path) -> PathBuf {
    c.execute(
        "postgres",
        &format!(
            "CREATE SCHEMA sales; CREATE TABLE sales.\"{TABLE}\" AS \
             SELECT g, repeat('x', 1000) AS pad FROM generate_series(1, 3000) g; CHECKPOINT"
        ),
    );
    // Every block read from the file, none found in shared buffers.
    c.restart();
    let held = c.hold_backend("postgres");
    let path = dir.join("scan.ndjson");
    let mut cap = Capture::start(held.pid, &path);
    cap.wait_for("the first interval", |r| {
        r.iter().any(|r| matches!(r, Record::Stats(_)))
    });
    let mut client = held.client;
    let n: i64 = client
        .query_one(
            format!("SELECT count(*) FROM sales.\"{TABLE}\" WHERE pg_sleep(0.0005) IS NOT NULL")
                .as_str(),
            &[],
        )
        .expect("paced scan")
        .get(0);
    assert_eq!(n, 3000);
    cap.wait_for("the scan at its end", |r| {
        r.iter().any(|r| match r {
            Record::Progress(p) => {
                p.name.as_deref() == Some(TABLE) && p.percent.is_some_and(|x| x >= 99.0)
            }
            _ => false,
        })
    });
    cap.finish();
    path
}

/// A base backup throttled to 1 MB/s, traced while it streams.
fn throttled_backup(c: &Cluster, dir: &Path) -> PathBuf {
    let r = Replication::connect(c);
    let path = dir.join("backup.ndjson");
    let mut cap = Capture::start(r.walsender, &path);
    cap.wait_for("the first interval", |r| {
        r.iter().any(|r| matches!(r, Record::Stats(_)))
    });
    let bb = r.base_backup(
        c.major,
        BackupOpts {
            max_rate_kb: Some(1024),
            estimate: true,
            ..Default::default()
        },
    );
    cap.wait_for("streaming, throttled", |r| {
        // A few intervals of it, for the charts to draw.
        let streaming = r
            .iter()
            .filter(|r| match r {
                Record::Backup(b) => b.phase == "streaming database files" && b.streamed > 0,
                _ => false,
            })
            .count()
            >= 4;
        let throttled = r.iter().any(|r| match r {
            Record::Status(s) => s.verdict_kind == "throttled",
            _ => false,
        });
        streaming && throttled
    });
    cap.finish();
    bb.cancel(c);
    path
}

#[test]
fn report_of_a_paced_scan_and_a_throttled_backup() {
    // One major: what is tested is the report, which reads records, not the server.
    let majors = support::majors();
    let major = if majors.contains(&16) {
        16
    } else {
        *majors.last().unwrap()
    };
    let mut c = Cluster::start(major);
    let dir = tempfile::Builder::new()
        .prefix("pg_trace-report-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let d = dir.path();
    let scan = paced_scan(&mut c, d);
    let backup = throttled_backup(&c, d);
    drop(c);

    // The scan: the table's name as text (escaped once more in the dumped DOM), the
    // verdicts and the axes.
    let dom = render_html(d, &scan, "scan");
    let shown = "orders &lt;b&gt;&amp;amp;&lt;/b&gt;";
    assert!(dom.contains(shown), "PG{major}: no {shown} in the DOM");
    assert!(
        !dom.contains("<b>&amp;</b>"),
        "PG{major}: the name became markup"
    );
    for label in [
        "seconds since attach",
        "percent of its size",
        "MiB/s",
        "Verdicts over time",
        "Coverage strips",
        "percent of the relation's size",
    ] {
        assert!(dom.contains(label), "PG{major}: scan: no {label:?}");
    }

    // The backup: its phase, as a band label and in the table.
    let dom = render_html(d, &backup, "backup");
    for label in [
        "streaming database files",
        "backup phase",
        "throttled",
        "seconds since attach",
        "MiB",
    ] {
        assert!(dom.contains(label), "PG{major}: backup: no {label:?}");
    }

    // Perfetto: the format, and what each trace must hold.
    let pf = d.join("scan.json");
    report(&scan, &["--format", "perfetto", "-o", pf.to_str().unwrap()]);
    let ev = check_trace_events(&pf);
    assert!(has(&ev, "C", "counter") && has(&ev, "X", "verdict"));
    // The query: from USDT, else from the status samples.
    assert!(
        ev.iter().any(|e| e["cat"] == "query"
            && e["name"]
                .as_str()
                .is_some_and(|n| n.contains("pg_sleep(0.0005)"))),
        "PG{major}: no query slice"
    );
    assert!(ev
        .iter()
        .any(|e| e["ph"] == "M" && e["name"] == "process_name"));
    let pf = d.join("backup.json");
    report(
        &backup,
        &["--format", "perfetto", "-o", pf.to_str().unwrap()],
    );
    let ev = check_trace_events(&pf);
    assert!(
        has(&ev, "X", "backup_phase"),
        "PG{major}: no backup phase slice"
    );
    assert!(ev
        .iter()
        .any(|e| e["ph"] == "C" && e["name"] == "backup streamed"));

    // Text: the same facts, for a ticket.
    let text = String::from_utf8(report(&scan, &["--format", "text"]).stdout).unwrap();
    assert!(
        text.contains(&format!("sales.\"{TABLE}\"")) || text.contains(TABLE),
        "{text}"
    );
    assert!(text.contains("Verdicts over time"), "{text}");
    let text = String::from_utf8(report(&backup, &["--format", "text"]).stdout).unwrap();
    assert!(text.contains("streaming database files"), "{text}");
}
