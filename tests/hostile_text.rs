//! A schema, a table, a query text and an application name full of escape sequences
//! (clear screen, set window title), newlines and a bidi override: every text form of
//! pg_trace (`catalog`, `resolve`, `ps`, a line-mode trace) keeps each record on one line
//! and lets no control byte reach the terminal; the names show escaped.

mod support;

use std::process::{Command, Output};
use support::Cluster;

const BIN: &str = env!("CARGO_BIN_EXE_pg_trace");
const SCHEMA: &str = "s\u{1b}[2J";
/// A newline followed by what would pass for a second `catalog` row.
const TABLE: &str = "t\u{1b}]0;PWNED\u{7}\nbase/1/99999 table postgres FORGED\u{202e}x";

fn assert_inert(what: &str, out: &Output) {
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let bad: Vec<u8> = bytes
            .iter()
            .copied()
            .filter(|&b| (b < 0x20 && b != b'\n') || b == 0x7f)
            .collect();
        assert!(bad.is_empty(), "{what} {stream}: control bytes {bad:?}");
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !text.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c)
                || pg_trace::text::visible::is_hidden(c) && c != '\n'),
            "{what} {stream}: a C1 or bidi character: {text}"
        );
        for line in text.lines() {
            assert!(
                !line.starts_with("base/1/99999"),
                "{what} {stream}: a forged row: {text}"
            );
        }
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run pg_trace")
}

#[test]
fn hostile_names_stay_one_inert_line_in_every_text_form() {
    let c = Cluster::start(15);
    let d = c.datadir.to_str().unwrap().to_string();
    let qt = format!("\"{SCHEMA}\".\"{TABLE}\"");
    c.execute(
        "postgres",
        &format!(
            "CREATE SCHEMA \"{SCHEMA}\"; CREATE TABLE {qt} AS SELECT g FROM generate_series(1, 3000) g; CHECKPOINT"
        ),
    );
    let escaped_table = r"t\x1b]0;PWNED\x07\nbase/1/99999 table postgres FORGED\u{202e}x";
    let escaped_schema = r"s\x1b[2J";

    let catalog = run(&["catalog", "--pgdata", &d]);
    assert!(catalog.status.success());
    assert_inert("catalog", &catalog);
    let text = String::from_utf8_lossy(&catalog.stdout);
    assert!(
        text.contains(&format!("{escaped_schema}.{escaped_table}")),
        "{text}"
    );

    let path: String = c.psql(
        "postgres",
        &format!("SELECT pg_relation_filepath('{}')", qt.replace('\'', "''")),
    )[0][0]
        .clone()
        .unwrap();
    let resolve = run(&["resolve", "--pgdata", &d, &path]);
    assert!(resolve.status.success(), "{resolve:?}");
    assert_inert("resolve", &resolve);
    assert_eq!(String::from_utf8_lossy(&resolve.stdout).lines().count(), 1);
    assert!(String::from_utf8_lossy(&resolve.stdout).contains(escaped_table));

    let mut held = c.hold_backend("postgres");
    let pid = held.pid;
    held.client
        .batch_execute("SET application_name = 'app\u{1b}]0;PWNED\u{7}'")
        .unwrap();
    let query = format!(
        "SELECT count(*) FROM {qt} WHERE pg_sleep(0.002) IS NOT NULL /* \u{1b}[2J\n\u{202e} */"
    );
    let scan = std::thread::spawn(move || -> Result<i64, postgres::Error> {
        held.client.query_one(query.as_str(), &[]).map(|r| r.get(0))
    });
    // `ps` once the scan shows in shared memory.
    let t = std::time::Instant::now();
    loop {
        let ps = run(&["ps", "--pgdata", &d]);
        assert!(ps.status.success(), "{ps:?}");
        assert_inert("ps", &ps);
        let text = String::from_utf8_lossy(&ps.stdout);
        if text.contains("client backend") {
            assert!(
                text.contains(r#"SELECT count(*) FROM "s\x1b[2J"."t\x1b]0;PWNED\x07 base"#),
                "{text}"
            );
            break;
        }
        if scan.is_finished() || t.elapsed().as_secs() > 30 {
            panic!("the scan never showed: {text} {:?}", scan.join());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let trace = run(&["-p", &pid.to_string(), "--no-tui", "--duration", "2"]);
    assert_inert("line-mode trace", &trace);
    assert!(trace.status.success(), "{trace:?}");
    assert_eq!(scan.join().unwrap().unwrap(), 3000);
}
