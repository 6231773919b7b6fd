//! Issue 11 item 6: the /proc backend names only a file the backend is reading. A backend
//! that has catalogs and an index open (opened after the table, so they are the files
//! "opened last") scans a user table under `--backend procfs`: no byte goes to a file it
//! did not read, and the table's bytes are either credited to it (marked as an estimate)
//! or reported as unattributed reads (marked as an estimate too).

mod support;

use std::io::BufRead;

use support::trace::{attach, file, progress, spawn_trace, stats};
use support::Cluster;

/// Majors 12–14, 15 (Debian's build is the same major) and 18 (read streams, AIO).
const MAJORS: [u32; 3] = [13, 15, 18];
const ROWS: i64 = 1_500_000;

fn relpath(c: &Cluster, rel: &str) -> String {
    c.psql("postgres", &format!("SELECT pg_relation_filepath('{rel}')"))[0][0]
        .clone()
        .unwrap()
}

/// Drop the table's pages from the page cache (this file's only), so that some of its
/// preads wait for the disk, where a /proc/PID/syscall sample can catch them.
fn evict(c: &Cluster, rel_path: &str) {
    use std::os::fd::AsRawFd;
    for seg in 0.. {
        let name = if seg == 0 {
            rel_path.to_string()
        } else {
            format!("{rel_path}.{seg}")
        };
        let Ok(f) = std::fs::File::open(c.datadir.join(name)) else {
            break;
        };
        // SAFETY: advice on a file we opened read-only; it only drops clean cached pages.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
}

fn credit(major: u32) {
    // PG 18 reads through io workers by default; the backend's own rchar is what this
    // test is about, so it reads for itself.
    let mut conf = vec![
        ("shared_buffers", "16MB"),
        ("max_parallel_workers_per_gather", "0"),
        ("synchronize_seqscans", "off"),
    ];
    if major >= 18 {
        conf.push(("io_method", "sync"));
    }
    let c = Cluster::start_with(major, &conf);
    c.execute(
        "postgres",
        &format!(
            "CREATE TABLE t AS SELECT g, repeat(md5(g::text), 4) AS pad \
             FROM generate_series(1, {ROWS}) g; \
             CREATE INDEX t_g ON t (g); CREATE TABLE other (x int)"
        ),
    );
    c.execute("postgres", "VACUUM ANALYZE t");
    let table = relpath(&c, "t");
    let index = relpath(&c, "t_g");
    let size: u64 = c.psql("postgres", "SELECT pg_relation_size('t')")[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    let mut held = c.hold_backend("postgres");
    let pid = held.pid;
    // The table first, then the index and catalogs: those are the files opened last, which
    // the old attribution credited. The plan of the scan is made once, so that planning
    // the traced query reads no catalog from disk.
    held.client
        .batch_execute(
            "SELECT count(*) FROM t WHERE g < 0; \
             SET enable_seqscan = off; SET enable_bitmapscan = off; \
             SELECT pad FROM t WHERE g = 5; \
             RESET enable_seqscan; RESET enable_bitmapscan; \
             SELECT count(*) FROM pg_tablespace; SELECT count(*) FROM other; \
             SELECT count(*) FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid; \
             EXPLAIN SELECT count(*) FROM t WHERE length(md5(pad)) > 0",
        )
        .unwrap();
    evict(&c, &table);
    let mut trace = spawn_trace(pid, "procfs");
    trace.wait_ready();
    let n: i64 = held
        .client
        .query_one("SELECT count(*) FROM t WHERE length(md5(pad)) > 0", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, ROWS);
    // One more interval after the scan, so that its last rchar growth is in.
    let seen = trace.records().len();
    trace.wait_for("an interval after the scan", |r| {
        r.len() > seen && r[seen..].iter().any(|r| stats(r).is_some())
    });
    let records = trace.finish();
    assert_eq!(records.iter().find_map(attach).unwrap().backend, "procfs");

    let files: Vec<_> = records.iter().filter_map(file).collect();
    // The scene is what the test says: catalogs and the index were open.
    assert!(
        files
            .iter()
            .any(|f| f.relation.as_deref() == Some(index.as_str())),
        "PG {major}: the index is not open"
    );
    assert!(
        files
            .iter()
            .any(|f| f.schema.as_deref() == Some("pg_catalog")),
        "PG {major}: no catalog open"
    );
    for f in &files {
        if f.relation.as_deref() == Some(table.as_str()) {
            if f.bytes_read > 0 {
                assert!(
                    f.estimate,
                    "PG {major}: credited but not an estimate: {f:?}"
                );
            }
        } else {
            assert_eq!(
                f.bytes_read, 0,
                "PG {major}: bytes credited to a file the scan did not read: {f:?}"
            );
        }
        if f.relation.as_deref() == Some(index.as_str()) {
            assert!(!f.read_since_attach, "PG {major}: {f:?}");
            assert_eq!((f.offset, f.percent), (None, None), "PG {major}: {f:?}");
        }
    }
    let mut table_bytes = 0;
    for p in records.iter().filter_map(progress) {
        if p.relation == table {
            if p.bytes_read > 0 {
                assert!(p.estimate, "PG {major}: {p:?}");
            }
            table_bytes = table_bytes.max(p.bytes_read);
        } else {
            assert_eq!(p.bytes_read, 0, "PG {major}: {p:?}");
        }
    }
    let last = records
        .iter()
        .filter_map(stats)
        .next_back()
        .expect("stats record");
    let un = last
        .unattributed
        .as_ref()
        .unwrap_or_else(|| panic!("PG {major}: no unattributed reads in {last:?}"));
    assert!(un.estimate, "PG {major}: {un:?}");
    // Every byte of the table was read through the backend's rchar once: on the table or
    // unattributed, never lost (nor, above, put elsewhere).
    assert!(
        table_bytes + un.bytes_read >= size * 9 / 10,
        "PG {major}: table {size} bytes, credited {table_bytes}, unattributed {}",
        un.bytes_read
    );
    assert!(
        table_bytes <= size,
        "PG {major}: more credited than the table has: {table_bytes} > {size}"
    );
    eprintln!(
        "PG {major}: table of {size} bytes: {table_bytes} credited on samples, {} unattributed",
        un.bytes_read
    );

    // The text output says it too, as an estimate.
    let mut text = std::process::Command::new(env!("CARGO_BIN_EXE_pg_trace"))
        .args(["-p", &pid.to_string(), "--no-tui", "--backend", "procfs"])
        .args(["--interval", "200", "--duration", "30"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(text.stdout.take().unwrap()).lines();
    // Attached once its first interval is out.
    assert!(lines.next().is_some(), "PG {major}: no text output");
    let n: i64 = held
        .client
        .query_one("SELECT count(*) FROM t WHERE length(md5(pad)) > 0", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, ROWS);
    let said = lines
        .map_while(Result::ok)
        .find(|l| l.trim_start().starts_with("unattributed reads: ~"));
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    unsafe { libc::kill(text.id() as i32, libc::SIGINT) };
    assert!(text.wait().unwrap().success());
    let said = said.unwrap_or_else(|| panic!("PG {major}: no unattributed line in the text"));
    assert!(said.contains("(estimate"), "PG {major}: {said}");
    drop(held);
}

#[test]
fn procfs_credits_only_files_being_read() {
    let want = support::majors();
    for major in MAJORS {
        if want.contains(&major) {
            credit(major);
        } else {
            support::skip(
                &format!("procfs credit on PostgreSQL {major}"),
                "not in PG_TRACE_TEST_MAJORS",
            );
        }
    }
}

/// The TUI says it too: the files panel's title carries the unattributed bytes, marked `~`.
#[test]
fn the_tui_shows_unattributed_reads() {
    use pg_trace::trace::EventKind;
    use pg_trace::ui::{draw_trace, log::LogRing, ScreenState, Theme};
    use support::scripted::{self, ev, open, PID, T0};
    let mut m = pg_trace::model::Model::new(PID, scripted::SEG);
    scripted::apply(&mut m, open(T0, 24, "base/16385/16388"));
    let io = |rchar| EventKind::IoCounters {
        rchar,
        wchar: 0,
        read_bytes: 0,
        write_bytes: 0,
    };
    scripted::apply(&mut m, ev(T0 + 1, io(1000)));
    scripted::apply(&mut m, ev(T0 + 2, io(1000 + 300 * scripted::MIB)));
    scripted::tick(&mut m, T0 + 3);
    let mut info = scripted::info(T0 + 3);
    info.methods = "procfs".into();
    let mut term = ratatui::Terminal::new(ratatui::backend::TestBackend::new(120, 30)).unwrap();
    term.draw(|f| {
        draw_trace(
            f,
            &m,
            &info,
            &LogRing::new(),
            &ScreenState::default(),
            &Theme::mono(),
        )
    })
    .unwrap();
    let screen = term.backend().to_string();
    assert!(screen.contains("~300.0 MiB read unattributed"), "{screen}");
    // Nothing was credited to the open table without a sample.
    assert_eq!(m.files[&(PID, 24)].bytes_read, 0);
}
