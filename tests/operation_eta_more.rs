//! The whole operation's ETA on real clusters for the kinds tests/operation_eta.rs does
//! not run (same measure, same style: a steady run paced by a throttle the test controls,
//! some ten seconds long, every major in parallel): `REINDEX` and a `CLUSTER` with three
//! index rebuilds paced by `pg_sleep` in index expressions, a `VACUUM` whose heap scan
//! stops for index passes (the smallest `maintenance_work_mem`), and an autovacuum worker
//! on a table of its own, paced by its cost-delay reloptions. The ETA shown when a quarter
//! of the run has passed, added to that record's time, must land within 15 % of the run's
//! length of its real end; each kind's error is printed. The progress views are sampled
//! over SQL beside pg_trace, to check that each run is the kind of run it is meant to be
//! (a `CLUSTER` that sorts, a `VACUUM` with index passes).

mod support;

use std::time::{Duration, Instant};
use support::eta::{collect, paced, run, Poll, Run};
use support::trace::spawn_trace_every;
use support::Cluster;

/// Rows of the table `REINDEX` rebuilds, `pg_sleep(0.1)` every 500 rows: ten seconds.
const PACED: i64 = 50_000;
/// Rows of the table `CLUSTER` rewrites, `pg_sleep(0.1)` every 2000 rows in each of two
/// expression indexes: five seconds a rebuild.
const CLUSTERED: i64 = 100_000;
/// Rows of the table autovacuum reads, paced a block at a time.
const AUTO_ROWS: i64 = 200_000;

/// The `VACUUM` with index passes, by major: dead tuples (one int column each, 226 a
/// block), `maintenance_work_mem`, and the cost-based delay (delay, limit) that makes it
/// some ten seconds. Before 17 the dead-tuple array holds 174,762 tuples in 1 MB: 1 M dead
/// tuples make 5 stops and the last pass; from 17 the TidStore takes some 60 kB for 36
/// blocks of them, and 64 kB is allowed: 50,000 make 6 stops and the last pass. The index
/// is partial (one row in 100): each pass reads all of it, but its work is a small part of
/// the run, which the cost-based delay paces (a full index's pass is mostly CPU, which the
/// other majors' runs beside it on a loaded machine stretch unevenly).
fn passes_setup(major: u32) -> (i64, &'static str, &'static str, u32) {
    if major >= 17 {
        (50_000, "64kB", "20ms", 1)
    } else {
        (1_000_000, "1MB", "10ms", 10)
    }
}

fn check(major: u32) {
    let c = Cluster::start_with(
        major,
        &[
            ("autovacuum", "on"),
            ("autovacuum_naptime", "1"),
            ("max_parallel_maintenance_workers", "0"),
            ("max_parallel_workers_per_gather", "0"),
            // Few buffers: every scan of a table goes through a ring and reads its file,
            // so that each index rebuild of the CLUSTER is seen reading the new heap
            // (with the heap in shared buffers only the first one would be).
            ("shared_buffers", "2MB"),
            // A page read or dirtied costs as much as one found in a buffer: the delay
            // paces every block alike.
            ("vacuum_cost_page_miss", "1"),
            ("vacuum_cost_page_dirty", "0"),
        ],
    );
    let (dead, mwm, delay, limit) = passes_setup(major);
    c.execute(
        "postgres",
        &format!(
            "{}{}CREATE TABLE r (id int, pad text) WITH (autovacuum_enabled = off); \
             INSERT INTO r SELECT g, repeat('x', 60) FROM generate_series(1, {PACED}) g; \
             CREATE INDEX r_slow ON r ((slow(id))); \
             CREATE TABLE k (id int, pad text) WITH (autovacuum_enabled = off); \
             INSERT INTO k SELECT g, 'x' FROM generate_series(1, {CLUSTERED}) g; \
             CREATE INDEX k_id ON k (id); \
             CREATE INDEX k_a ON k ((slower(id))); \
             CREATE INDEX k_b ON k ((slower(id) + 1)); \
             CREATE UNLOGGED TABLE p (id int) WITH (autovacuum_enabled = off, vacuum_truncate = off); \
             CREATE INDEX p_id ON p (id) WHERE id % 100 = 0; \
             CREATE TABLE a (id int, pad text) WITH (autovacuum_enabled = off, vacuum_truncate = off); \
             INSERT INTO a SELECT g, 'x' FROM generate_series(1, {AUTO_ROWS}) g; \
             DELETE FROM a WHERE id % 10 = 0",
            paced("slow", 500, 0.1), paced("slower", 2000, 0.1),
        ),
    );
    // Dead tuples of an aborted insert, their index entries in: on its own, since a
    // ROLLBACK in the string above would take every command before it along.
    c.execute(
        "postgres",
        &format!("BEGIN; INSERT INTO p SELECT g FROM generate_series(1, {dead}) g; ROLLBACK"),
    );
    let mut held = c.hold_backend("postgres");
    let pid = held.pid;
    held.client
        .batch_execute("SET trace_sort = off; SET eta.pace = 'on'")
        .unwrap();
    let mut t = spawn_trace_every(pid, "ebpf", 50, &[]);
    t.wait_ready();
    let mut errors: Vec<(&str, f64)> = Vec::new();
    let mut note =
        |what: &'static str, r: &Run| errors.push((what, r.error(&format!("PG{major} {what}"))));

    // REINDEX: the expression index's scan paced, then its sort and load.
    let r = run(
        &mut t,
        &mut held.client,
        pid,
        "reindex",
        "REINDEX INDEX r_slow",
    );
    note("REINDEX", &r);
    assert!(
        r.ops
            .iter()
            .any(|o| o.phase.as_deref() == Some("building index: scanning table")),
        "PG{major}: {:?}",
        r.ops
    );

    // CLUSTER: a sequential scan and a sort (the index scan priced out), the new heap
    // written, then three index rebuilds: the plain one quick, the two paced ones five
    // seconds each. The ETA in the first paced rebuild must count the second.
    let poll = Poll::start(
        &c,
        "SELECT phase, index_rebuild_count::text FROM pg_stat_progress_cluster",
    );
    held.client
        .batch_execute("SET enable_indexscan = off")
        .unwrap();
    let r = run(
        &mut t,
        &mut held.client,
        pid,
        "cluster",
        "CLUSTER k USING k_id",
    );
    held.client.batch_execute("RESET enable_indexscan").unwrap();
    let seen = poll.stop();
    // The phases seen, by the view sampled over SQL or by pg_trace: the sort and the
    // write are over in a moment, and either may miss them on a loaded machine.
    let phases: Vec<&str> = seen
        .iter()
        .filter_map(|r| r[0].as_deref())
        .chain(r.ops.iter().filter_map(|o| o.phase.as_deref()))
        .collect();
    // A sequential scan is the sorting path (an index scan writes as it reads, in
    // "index scanning heap").
    for want in ["seq scanning heap", "rebuilding index"] {
        assert!(
            phases.contains(&want),
            "PG{major} CLUSTER: the progress view never said {want:?}: {seen:?}"
        );
    }
    assert!(
        !phases.contains(&"index scanning heap"),
        "PG{major} CLUSTER: not sorted: {seen:?}"
    );
    if !phases.contains(&"writing new heap") {
        eprintln!("PG{major} CLUSTER: \"writing new heap\" too brief to be sampled");
    }
    let rebuilt = seen
        .iter()
        .filter_map(|r| r[1].as_deref()?.parse::<u32>().ok())
        .max();
    assert!(
        rebuilt >= Some(2),
        "PG{major} CLUSTER: rebuilds counted {rebuilt:?}: {seen:?}"
    );
    note("CLUSTER", &r);

    // VACUUM with index passes: the heap scan stops each time the dead items fill
    // maintenance_work_mem, for a pass over the index and one over the heap.
    let poll = Poll::start(
        &c,
        "SELECT index_vacuum_count::text FROM pg_stat_progress_vacuum \
         WHERE relid = 'p'::regclass",
    );
    held.client
        .batch_execute(&format!(
            "SET maintenance_work_mem = '{mwm}'; SET vacuum_cost_delay = '{delay}'; \
             SET vacuum_cost_limit = {limit}"
        ))
        .unwrap();
    // (VACUUM cannot share a query string with other commands.)
    let r = run(&mut t, &mut held.client, pid, "vacuum", "VACUUM p");
    let passes = poll
        .stop()
        .iter()
        .filter_map(|r| r[0].as_deref()?.parse::<u32>().ok())
        .max()
        .unwrap_or(0);
    eprintln!("PG{major} VACUUM: {passes} index passes seen in the progress view");
    // The last pass ends with the view's row: the count seen is of the stops in the scan.
    assert!(
        passes >= 2,
        "PG{major} VACUUM: the heap scan stopped {passes} times for the indexes"
    );
    note("VACUUM (index passes)", &r);
    t.finish();
    drop(held);

    // autovacuum: a worker on the table whose autovacuum is switched on, traced from the
    // moment its progress row appears.
    c.execute(
        "postgres",
        "ALTER TABLE a SET (autovacuum_enabled = on, autovacuum_vacuum_threshold = 0, \
         autovacuum_vacuum_scale_factor = 0, autovacuum_analyze_threshold = 2000000000, \
         autovacuum_vacuum_cost_delay = 6, autovacuum_vacuum_cost_limit = 1)",
    );
    let mut watcher = c.connect("postgres");
    let worker = |w: &mut postgres::Client| -> Option<i32> {
        w.query_opt(
            "SELECT pid FROM pg_stat_progress_vacuum WHERE relid = 'a'::regclass",
            &[],
        )
        .unwrap()
        .map(|row| row.get(0))
    };
    let t0 = Instant::now();
    let wpid = loop {
        if let Some(p) = worker(&mut watcher) {
            break p;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "PG{major}: no autovacuum worker on a after 60 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut t = spawn_trace_every(wpid, "ebpf", 50, &[]);
    t.wait_ready();
    while worker(&mut watcher) == Some(wpid) {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "PG{major}: the autovacuum of a still runs after 120 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = collect(&mut t, 0, wpid, "autovacuum", Some("a"));
    note("AUTOVACUUM", &r);
    if support::process_alive(wpid) {
        t.finish();
    } else {
        // The worker is gone and pg_trace with it.
        let _ = t.child.wait();
    }

    for (what, err) in errors {
        assert!(
            err <= 0.15,
            "PG{major} {what}: the ETA at a quarter of the run missed its end by {:.0} % of it",
            err * 100.0
        );
    }
}

#[test]
fn eta_at_a_quarter_lands_near_the_end_more_kinds() {
    support::on_every_major_at_most(4, check);
}
