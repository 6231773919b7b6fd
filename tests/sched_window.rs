//! The scheduler times shown for an interval fit in that interval: the kernel starts
//! counting when the tracer attaches, and attaching the USDT probes (Debian's PG15 has
//! them) takes a while, during which the traced backend runs. What it ran then belongs to
//! no window shown: a first interval of 1.1 s once said "cpu 0.93s, run queue 1.108s".

mod support;

use pg_trace::output::record::Record;
use support::trace::{spawn_trace_every, spawn_trace_with};
use support::Cluster;

#[test]
fn sched_times_fit_their_window() {
    let majors = support::majors();
    if !majors.contains(&15) {
        support::skip(
            "sched_window",
            "needs PostgreSQL 15 (Debian's, with USDT probes, whose attach is the slow one)",
        );
        return;
    }
    let c = Cluster::start(15);
    let b = c.hold_backend("postgres");
    let pid = b.pid;
    // On a CPU the whole time pg_trace attaches, and after, until cancelled.
    let busy = run_until_cancelled(b.client, "DO $$BEGIN LOOP PERFORM 1; END LOOP; END$$");
    let mut t = spawn_trace_with(pid, "auto", &[]);
    t.wait_for("two intervals of the backend's scheduler times", |rs| {
        rs.iter()
            .filter(|r| matches!(r, Record::Waits(w) if w.pid == pid && w.scope == "interval" && w.cpu_s.is_some()))
            .count()
            >= 2
    });
    let records = t.finish();
    cancel(&c, pid, busy);
    let attach = records.iter().find_map(|r| match r {
        Record::Attach(a) => Some(a.backend.clone()),
        _ => None,
    });
    eprintln!("attached with {attach:?}");
    let mut checked = 0;
    for w in records.iter().filter_map(|r| match r {
        Record::Waits(w) if w.pid == pid && w.cpu_s.is_some() => Some(w),
        _ => None,
    }) {
        let sum = w.cpu_s.unwrap_or(0.0) + w.off_cpu_s.unwrap_or(0.0) + w.runqueue_s.unwrap_or(0.0);
        eprintln!(
            "{} at {:.2}s: cpu {:?} off {:?} run queue {:?} = {sum:.3}s in {:.3}s",
            w.scope, w.ts, w.cpu_s, w.off_cpu_s, w.runqueue_s, w.window_s
        );
        // pg_trace's own delay between its reading and its tick (a loaded 2-core host).
        assert!(
            sum <= w.window_s * 1.05 + 0.1,
            "{} record at {:.2}s: {sum:.3}s of scheduler time in a {:.3}s window: {w:?}",
            w.scope,
            w.ts,
            w.window_s
        );
        checked += 1;
    }
    assert!(checked >= 2, "{checked} waits records with scheduler times");
    check_followers(&c);
}

/// A parallel query's workers, followed from the attach: each worker's records (sampled
/// and measured by the kernel, merged) fit their windows too.
fn check_followers(c: &Cluster) {
    c.execute(
        "postgres",
        "CREATE TABLE p AS SELECT g FROM generate_series(1, 200000) g; ANALYZE p",
    );
    let b = c.hold_backend("postgres");
    let pid = b.pid;
    let mut client = b.client;
    client
        .batch_execute(
            "SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0; \
             SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0",
        )
        .unwrap();
    // Minutes of work in the workers (a query that ends closes the connection, the
    // leader exits and pg_trace with it): cancelled once the records are in.
    let busy = run_until_cancelled(
        client,
        "SELECT count(*) FROM p, generate_series(1, 5000) s WHERE md5(g::text || s::text) < 'z'",
    );
    // One-second intervals: a worker sampled from the tick after it was found (as it
    // was) is a second behind its kernel times, far beyond the slack below.
    let mut t = spawn_trace_every(pid, "auto", 1000, &[]);
    t.wait_for("two intervals of a worker's scheduler times", |rs| {
        rs.iter()
            .filter(|r| matches!(r, Record::Waits(w) if w.pid != pid && w.scope == "interval" && w.cpu_s.is_some()))
            .count()
            >= 4
    });
    let records = t.finish();
    cancel(c, pid, busy);
    let mut checked = 0;
    for w in records.iter().filter_map(|r| match r {
        Record::Waits(w) if w.pid != pid && w.cpu_s.is_some() => Some(w),
        _ => None,
    }) {
        let sum = w.cpu_s.unwrap_or(0.0) + w.off_cpu_s.unwrap_or(0.0) + w.runqueue_s.unwrap_or(0.0);
        eprintln!(
            "worker {} {} at {:.2}s: {sum:.3}s in {:.3}s ({} samples)",
            w.pid, w.scope, w.ts, w.window_s, w.samples
        );
        // The sampler takes a worker up a moment after the kernel does.
        assert!(
            sum <= w.window_s * 1.1 + 0.3,
            "worker {} {} record at {:.2}s: {sum:.3}s of scheduler time in a {:.3}s window: {w:?}",
            w.pid,
            w.scope,
            w.ts,
            w.window_s
        );
        // And a worker sampled alive in a window was measured in it (the kernel's times
        // of a worker that exited were forgotten before they were read).
        assert!(
            sum >= 0.5 * w.samples as f64 / w.hz.max(1.0),
            "worker {} {} record at {:.2}s: {} samples but {sum:.3}s of scheduler time",
            w.pid,
            w.scope,
            w.ts,
            w.samples
        );
        checked += 1;
    }
    assert!(
        checked >= 4,
        "{checked} worker waits records with scheduler times"
    );
}

type Busy = std::thread::JoinHandle<(postgres::Client, Result<(), String>)>;

/// Runs `sql` on `client` in a thread that keeps the connection open after it ends.
fn run_until_cancelled(mut client: postgres::Client, sql: &'static str) -> Busy {
    std::thread::spawn(move || {
        let r = client
            .batch_execute(sql)
            .map_err(|e| match e.as_db_error() {
                Some(d) => d.message().to_string(),
                None => e.to_string(),
            });
        (client, r)
    })
}

/// Cancels the query and checks it was still running: one that had ended would have
/// left some of the records above without a busy backend behind them.
fn cancel(c: &Cluster, pid: i32, busy: Busy) {
    c.execute("postgres", &format!("SELECT pg_cancel_backend({pid})"));
    let (_client, r) = busy.join().unwrap();
    let e = r.expect_err("the busy query ended before it was cancelled");
    assert!(e.contains("cancel"), "the busy query failed: {e}");
}
