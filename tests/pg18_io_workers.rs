//! PostgreSQL 18 with io_method=worker: the `io worker N` processes read data files for
//! every backend of the cluster. A read is credited to the traced backend only when the
//! AIO handle the worker is executing is owned by that backend (or one of its parallel
//! workers) — never because the backend happens to have the same relation open.
//! io_method=sync on 18, and older majors, are traced as before.

mod support;

use std::time::Duration;

use pg_trace::output::record::{FileRecord, ProgressRecord, Record};
use pg_trace::process::aio::{io_method, IoMethod};
use support::status::wait_until;
use support::trace::{file, progress, spawn_trace, stats, Trace};
use support::Cluster;

/// Rows of the scanned table: about 100 MB, well over shared_buffers (16MB), so a scan
/// reads from the file through a ring of buffers.
const ROWS: i64 = 600_000;

fn cluster(major: u32, io_method: Option<&str>) -> (Cluster, String) {
    let mut conf = vec![
        ("shared_buffers", "16MB"),
        ("max_parallel_workers_per_gather", "0"),
    ];
    if let Some(m) = io_method {
        conf.push(("io_method", m));
    }
    let mut c = Cluster::start_with(major, &conf);
    c.execute(
        "postgres",
        &format!(
            "CREATE TABLE aio AS SELECT g, repeat(md5(g::text), 4) AS pad \
             FROM generate_series(1, {ROWS}) g"
        ),
    );
    c.execute("postgres", "CHECKPOINT");
    c.restart();
    let rel = c.psql("postgres", "SELECT pg_relation_filepath('aio')")[0][0]
        .clone()
        .unwrap();
    (c, rel)
}

const SCAN: &str = "SELECT count(*) FROM aio WHERE length(md5(pad)) > 0";

/// Attached, and the followers (io workers) picked up: they are looked for once per
/// interval, so a few intervals after the first one.
fn wait_followed(trace: &mut Trace) {
    trace.wait_ready();
    trace.wait_for("three intervals", |r| {
        r.iter().filter(|r| stats(r).is_some()).count() >= 3
    });
}

fn rel_files<'a>(records: &'a [Record], rel: &str) -> Vec<&'a FileRecord> {
    records
        .iter()
        .filter_map(file)
        .filter(|r| r.relation.as_deref() == Some(rel))
        .collect()
}

fn last_progress<'a>(records: &'a [Record], rel: &str) -> Option<&'a ProgressRecord> {
    records
        .iter()
        .rev()
        .filter_map(progress)
        .find(|r| r.relation == rel)
}

fn needs_18(what: &str) -> bool {
    if support::majors().contains(&18) {
        return true;
    }
    support::skip(what, "PG_TRACE_TEST_MAJORS excludes 18");
    false
}

/// Session A scanned the table before the attach (its file is open) and now sleeps;
/// session B scans it while A is traced. A is credited none of B's reads.
#[test]
fn idle_session_is_credited_nothing() {
    if !needs_18("idle_session_is_credited_nothing") {
        return;
    }
    let (c, rel) = cluster(18, Some("worker"));
    let mut a = c.hold_backend("postgres");
    let n: i64 = a.client.query_one(SCAN, &[]).unwrap().get(0);
    assert_eq!(n, ROWS);
    let a_pid = a.pid;
    let sleeper = std::thread::spawn(move || {
        a.client.batch_execute("SELECT pg_sleep(25)").unwrap();
    });
    wait_until("session A in pg_sleep", Duration::from_secs(20), || {
        c.psql(
            "postgres",
            &format!("SELECT wait_event FROM pg_stat_activity WHERE pid = {a_pid}"),
        )
        .first()
        .and_then(|r| r[0].clone())
        .as_deref()
            == Some("PgSleep")
    });
    // B is traced too: what its trace is credited through io workers is what A's could
    // wrongly have been (and proves the reads went through io workers at all).
    let mut b = c.hold_backend("postgres");
    let mut trace = spawn_trace(a_pid, "ebpf");
    let mut trace_b = spawn_trace(b.pid, "ebpf");
    wait_followed(&mut trace);
    wait_followed(&mut trace_b);
    for _ in 0..2 {
        let n: i64 = b.client.query_one(SCAN, &[]).unwrap().get(0);
        assert_eq!(n, ROWS);
    }
    wait_followed_intervals(&mut trace, 2);
    wait_followed_intervals(&mut trace_b, 2);
    let records = trace.finish();
    let records_b = trace_b.finish();
    sleeper.join().unwrap();

    let b_io = io_worker_bytes(&records_b, &rel);
    assert!(
        b_io > 10 << 20,
        "B credited only {b_io} bytes through io workers"
    );
    let credited: u64 = rel_files(&records, &rel)
        .iter()
        .map(|f| f.bytes_read)
        .max()
        .unwrap_or(0);
    assert_eq!(
        credited, 0,
        "session A credited {credited} bytes of B's scan"
    );
    if let Some(p) = last_progress(&records, &rel) {
        assert_eq!(p.bytes_read, 0, "A credited B's reads: {p:?}");
        assert_eq!(p.percent, None, "A shown progress on B's scan: {p:?}");
    }
    eprintln!("idle session: io workers read {b_io} bytes for B, A credited 0 bytes");
}

/// Bytes credited through io workers' files: the last record of each (pid, fd) (file
/// records are cumulative).
fn io_worker_bytes(records: &[Record], rel: &str) -> u64 {
    let mut last = std::collections::BTreeMap::new();
    for f in rel_files(records, rel).into_iter().filter(|f| f.io_worker) {
        last.insert((f.pid, f.fd), f.bytes_read);
    }
    last.values().sum()
}

/// `n` more intervals after the ones seen so far.
fn wait_followed_intervals(trace: &mut Trace, n: usize) {
    let seen = trace
        .records()
        .iter()
        .filter(|r| stats(r).is_some())
        .count();
    trace.wait_for("more intervals", |r| {
        r.iter().filter(|r| stats(r).is_some()).count() >= seen + n
    });
}

/// Trace one scan; the last progress record of the table.
fn traced_scan(c: &Cluster, rel: &str) -> (Vec<Record>, ProgressRecord) {
    let mut b = c.hold_backend("postgres");
    let mut trace = spawn_trace(b.pid, "ebpf");
    wait_followed(&mut trace);
    let n: i64 = b.client.query_one(SCAN, &[]).unwrap().get(0);
    assert_eq!(n, ROWS);
    wait_followed_intervals(&mut trace, 2);
    let records = trace.finish();
    let p = last_progress(&records, rel)
        .unwrap_or_else(|| panic!("no progress record of {rel}"))
        .clone();
    (records, p)
}

/// The traced session's own scan, read by io workers, is credited to it and ends at 100 %.
#[test]
fn scan_through_io_workers_is_credited_and_complete() {
    if !needs_18("scan_through_io_workers_is_credited_and_complete") {
        return;
    }
    let (mut c, rel) = cluster(18, Some("worker"));
    assert_eq!(
        io_method(c.postmaster_pid()).unwrap(),
        Some(IoMethod::Worker)
    );
    let size: u64 = c.psql("postgres", "SELECT pg_relation_size('aio')")[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    for run in 0..3 {
        // Cold: blocks left in shared buffers by the previous scan are not read again,
        // and a percent from reads cannot pass the first of them.
        if run > 0 {
            c.restart();
        }
        let (records, p) = traced_scan(&c, &rel);
        let io_bytes = io_worker_bytes(&records, &rel);
        eprintln!(
            "run {run}: {rel} {:?} % of {size} bytes, {} bytes read ({io_bytes} by io workers)",
            p.percent, p.bytes_read
        );
        assert!(io_bytes > 0, "run {run}: no io worker read credited");
        assert_eq!(p.percent, Some(100.0), "run {run}: scan ended at {p:?}");
        // Blocks found in shared buffers are not read: at most the whole table.
        assert!(p.bytes_read <= size, "run {run}: {} > {size}", p.bytes_read);
        assert!(
            p.bytes_read > size / 2,
            "run {run}: only {} read",
            p.bytes_read
        );
    }
}

/// Without io workers (io_method=sync on 18; 15) the backend reads itself: as before.
#[test]
fn sync_reads_are_unchanged() {
    let mut cases = Vec::new();
    if support::majors().contains(&18) {
        cases.push((18, Some("sync")));
    }
    if let Some(&m) = support::majors().iter().find(|&&m| m <= 17) {
        cases.push((m, None));
    }
    if cases.is_empty() {
        support::skip("sync_reads_are_unchanged", "no major selected");
        return;
    }
    for (major, method) in cases {
        let (c, rel) = cluster(major, method);
        // The server's io_method, read from memory: `sync` on 18, nothing before.
        assert_eq!(
            io_method(c.postmaster_pid()).ok().flatten(),
            method.map(|_| IoMethod::Sync),
            "{major}"
        );
        let (records, p) = traced_scan(&c, &rel);
        assert_eq!(p.percent, Some(100.0), "{major}: scan ended at {p:?}");
        assert!(
            records.iter().filter_map(file).all(|f| !f.io_worker),
            "{major} {method:?}: io worker records without io workers"
        );
        eprintln!(
            "{major} io_method={method:?}: {} bytes read, 100 %",
            p.bytes_read
        );
    }
}

/// A parallel scan: the handles of the parallel workers are ours from their first read
/// (their lock group leader is the traced backend), not only once they are followed.
#[test]
fn parallel_workers_reads_through_io_workers() {
    if !needs_18("parallel_workers_reads_through_io_workers") {
        return;
    }
    let (c, rel) = cluster(18, Some("worker"));
    let size: u64 = c.psql("postgres", "SELECT pg_relation_size('aio')")[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    let mut b = c.hold_backend("postgres");
    b.client
        .batch_execute(
            "SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0;
             SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;",
        )
        .unwrap();
    let mut trace = spawn_trace(b.pid, "ebpf");
    wait_followed(&mut trace);
    let n: i64 = b.client.query_one(SCAN, &[]).unwrap().get(0);
    assert_eq!(n, ROWS);
    wait_followed_intervals(&mut trace, 2);
    let records = trace.finish();
    let p = last_progress(&records, &rel).expect("progress of the parallel scan");
    eprintln!(
        "parallel: {} of {size} bytes, {:?} %, coverage {:?}",
        p.bytes_read, p.percent, p.coverage
    );
    // Cold: every block is read once, by someone of ours, through io workers or not.
    assert_eq!(p.coverage, Some(1.0), "{p:?}");
    assert!(p.bytes_read >= size, "{p:?}");
}

/// With `--io-latency`, the io workers' reads for the traced backend are timed into its
/// own `waits` records (the relation's read row), as their bytes are credited to it; no io
/// worker keeps a row of the table for itself.
#[test]
fn io_worker_reads_are_timed_for_their_owner() {
    if !needs_18("io_worker_reads_are_timed_for_their_owner") {
        return;
    }
    let (c, rel) = cluster(18, Some("worker"));
    let mut b = c.hold_backend("postgres");
    let mut trace = support::trace::spawn_trace_with(b.pid, "ebpf", &["--io-latency"]);
    wait_followed(&mut trace);
    let n: i64 = b.client.query_one(SCAN, &[]).unwrap().get(0);
    assert_eq!(n, ROWS);
    wait_followed_intervals(&mut trace, 2);
    let records = trace.finish();
    let workers: std::collections::BTreeSet<i32> = rel_files(&records, &rel)
        .into_iter()
        .filter(|f| f.io_worker)
        .map(|f| f.pid)
        .filter(|&p| p != b.pid)
        .collect();
    assert!(
        io_worker_bytes(&records, &rel) > 0,
        "no io worker read credited"
    );
    let totals = |pid: i32| {
        records.iter().rev().find_map(|r| match r {
            Record::Waits(w) if w.scope == "total" && w.pid == pid => Some(w.clone()),
            _ => None,
        })
    };
    let aio_read = |w: &pg_trace::output::record::WaitsRecord| {
        w.io_latency
            .iter()
            .find(|r| r.relation.contains("aio") && r.op == "read")
            .cloned()
    };
    let mine = totals(b.pid).expect("the backend's waits record");
    let row = aio_read(&mine).unwrap_or_else(|| panic!("no read row of aio: {mine:?}"));
    eprintln!("backend's read row of aio: {row:?}; io workers {workers:?}");
    // 100 MB in reads of up to io_combine_limit (128 kB): hundreds of calls.
    assert!(row.count >= 100, "{row:?}");
    for w in &workers {
        if let Some(t) = totals(*w) {
            assert!(aio_read(&t).is_none(), "io worker {w} kept a row: {t:?}");
        }
    }
}
