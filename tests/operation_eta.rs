//! The whole operation's ETA on real clusters, one kind at a time, every major in parallel:
//! a steady run paced by a throttle the test controls (the cost-based delay for `VACUUM`
//! and `ANALYZE`, `pg_sleep` in an index expression for `CREATE INDEX` and the index
//! rebuild of `VACUUM FULL`, in a CHECK for `COPY`, in the WHERE of a `DELETE`, MAX_RATE
//! for a base backup), each some ten seconds long. The ETA shown when a quarter of the run
//! has passed (the first `operation` record from then on that has one), added to that
//! record's time, must land within 15 % of the run's length of its real end: the first
//! interval after the last record of the operation. Each kind's error is printed.
//!
//! A `DELETE` also checks the WAL the backend wrote (`wal_bytes`) against the server's
//! insert position moved by the statement, with the WAL writer kept asleep and segments not
//! zero-filled, so that the backend writes the statement's WAL itself.
//!
//! `REINDEX`, `CLUSTER` with index rebuilds, `VACUUM` with index passes and autovacuum are
//! measured the same way in tests/operation_eta_more.rs (helpers in tests/support/eta.rs).

mod support;

use support::eta::{collect, number, paced, run, Run};
use support::status::{BackupOpts, Replication};
use support::trace::spawn_trace_every;
use support::Cluster;

/// Rows of the table `VACUUM` and `ANALYZE` read, paced a block at a time.
const ROWS: i64 = 200_000;
/// Rows of the tables paced by `pg_sleep` every 500 rows: few, and few long sleeps, so
/// that what a loaded machine stretches (the rows' CPU, each sleep's wake-up) is small
/// beside the sleeps.
const PACED: i64 = 50_000;

fn check(major: u32) {
    let mut c = Cluster::start_with(
        major,
        &[
            ("autovacuum", "off"),
            ("max_parallel_maintenance_workers", "0"),
            ("max_parallel_workers_per_gather", "0"),
            // The DELETE's WAL is the backend's own: no WAL writer flushing it, no
            // segment zero-filled on creation.
            ("wal_writer_delay", "10000ms"),
            ("wal_init_zero", "off"),
            ("wal_buffers", "1MB"),
        ],
    );
    let dir = c.make_dir("copy");
    let file = dir.join("rows.tsv");
    c.execute(
        "postgres",
        &format!(
            "{}{}CREATE TABLE t (id int, pad text) WITH (autovacuum_enabled = off); \
             INSERT INTO t SELECT g, 'x' FROM generate_series(1, {ROWS}) g; \
             CREATE TABLE v (id int, pad text) WITH (autovacuum_enabled = off); \
             INSERT INTO v SELECT g, repeat('x', 60) FROM generate_series(1, {PACED}) g; \
             CREATE INDEX v_slow ON v ((slow(id))); \
             CREATE TABLE c (id int CHECK (slow(id) = id), pad text); \
             COPY (SELECT g, repeat('y', 100) FROM generate_series(1, {PACED}) g) TO '{}'",
            paced("slow", 500, 0.1),
            paced("pace", 500, 0.12),
            file.display()
        ),
    );
    let mut held = c.hold_backend("postgres");
    let pid = held.pid;
    held.client
        .batch_execute(
            "SET maintenance_work_mem = '1MB'; SET trace_sort = off; SET eta.pace = 'on'",
        )
        .unwrap();
    let mut t = spawn_trace_every(pid, "ebpf", 50, &[]);
    t.wait_ready();
    let mut errors: Vec<(&str, f64)> = Vec::new();
    let mut note =
        |what: &'static str, r: &Run| errors.push((what, r.error(&format!("PG{major} {what}"))));

    // VACUUM: the heap scan, paced by the cost-based delay, a sleep a block. The table has no index yet:
    // an index pass (or 12's first cleanup scan of an index) is a phase whose size the
    // counters do not give before it starts, which the ETA cannot foresee.
    held.client
        .batch_execute(
            "SET vacuum_cost_delay = '5ms'; SET vacuum_cost_limit = 1; \
             SET vacuum_cost_page_dirty = 0",
        )
        .unwrap();
    let r = run(&mut t, &mut held.client, pid, "vacuum", "VACUUM t");
    held.client
        .batch_execute(
            "RESET vacuum_cost_delay; RESET vacuum_cost_limit; RESET vacuum_cost_page_dirty",
        )
        .unwrap();
    note("VACUUM", &r);

    // ANALYZE (13+: the view), paced the same way.
    if major >= 13 {
        let r = run(
            &mut t,
            &mut held.client,
            pid,
            "analyze",
            "SET vacuum_cost_delay = '10ms'; SET vacuum_cost_limit = 1; ANALYZE t; \
             RESET vacuum_cost_delay; RESET vacuum_cost_limit",
        );
        note("ANALYZE", &r);
    } else {
        support::skip(
            &format!("PG{major} ANALYZE ETA"),
            "no pg_stat_progress_analyze before 13, and its sample is read from shared buffers: no file evidence to time",
        );
    }

    // VACUUM FULL: a quick rewrite, then the expression index's rebuild, paced.
    let r = run(
        &mut t,
        &mut held.client,
        pid,
        "vacuum full",
        "VACUUM FULL v",
    );
    note("VACUUM FULL", &r);
    assert!(
        r.ops
            .iter()
            .any(|o| o.phase.as_deref() == Some("rebuilding index")),
        "PG{major}: {:?}",
        r.ops
    );

    // CREATE INDEX: a scan paced by the expression, then a spilling sort and the load.
    let r = run(
        &mut t,
        &mut held.client,
        pid,
        "create index",
        "CREATE INDEX v_slow2 ON v ((slow(id)))",
    );
    note("CREATE INDEX", &r);
    assert!(
        r.ops
            .iter()
            .any(|o| o.phase.as_deref() == Some("building index: scanning table")),
        "PG{major}: {:?}",
        r.ops
    );

    // COPY FROM a file, paced by the CHECK.
    let r = run(
        &mut t,
        &mut held.client,
        pid,
        "copy",
        &format!("COPY c FROM '{}'", file.display()),
    );
    note("COPY", &r);
    t.finish();
    drop(held);

    // DELETE (`query`): from a cold cache, so that its scan of c is read from the file.
    c.restart();
    let mut held = c.hold_backend("postgres");
    let pid = held.pid;
    held.client.batch_execute("SET eta.pace = 'on'").unwrap();
    let mut t = spawn_trace_every(pid, "ebpf", 50, &[]);
    t.wait_ready();
    let lsn0 = c.psql("postgres", "SELECT pg_current_wal_insert_lsn()::text")[0][0]
        .clone()
        .unwrap();
    let r = run(
        &mut t,
        &mut held.client,
        pid,
        "query",
        "DELETE FROM c WHERE pace(id) % 2 = 0",
    );
    let moved = number(
        &c,
        &format!("SELECT (pg_current_wal_insert_lsn() - '{lsn0}'::pg_lsn)::bigint"),
    ) as u64;
    note("DELETE", &r);
    let wal = r.ops.iter().filter_map(|o| o.wal_bytes).max().unwrap_or(0);
    eprintln!(
        "PG{major} DELETE: the backend wrote {wal} bytes of WAL, the insert position moved {moved}"
    );
    // The backend writes the statement's WAL itself when the WAL buffers fill: all of it
    // but what is still in them (1 MB) at its last interval, and what the WAL writer
    // wrote if it woke once in the run (1 MB at most); a partial page is written again
    // at each flush.
    assert!(
        moved > 4 << 20
            && wal + (2 << 20) + (64 << 10) >= moved
            && wal as f64 <= moved as f64 * 1.05,
        "PG{major} DELETE: the backend wrote {wal} bytes of WAL, the server's insert position moved {moved}"
    );
    t.finish();
    drop(held);

    // A base backup, throttled to about ten seconds of the data directory.
    let size = number(
        &c,
        "SELECT sum(pg_database_size(oid))::bigint FROM pg_database",
    ) as u64;
    let rate_kb = u32::try_from((size / 1024 / 10).max(32)).unwrap();
    let repl = Replication::connect(&c);
    let ws = repl.walsender;
    let mut t = spawn_trace_every(ws, "ebpf", 50, &[]);
    t.wait_ready();
    let from = t.records().len();
    let bb = repl.base_backup(
        major,
        BackupOpts {
            max_rate_kb: Some(rate_kb),
            estimate: true,
            ..Default::default()
        },
    );
    bb.finish().expect("base backup");
    let r = collect(&mut t, from, ws, "basebackup", None);
    note("BASE BACKUP", &r);
    t.finish();

    for (what, err) in errors {
        assert!(
            err <= 0.15,
            "PG{major} {what}: the ETA at a quarter of the run missed its end by {:.0} % of it",
            err * 100.0
        );
    }
}

#[test]
fn eta_at_a_quarter_lands_near_the_end() {
    support::on_every_major_at_most(4, check);
}
