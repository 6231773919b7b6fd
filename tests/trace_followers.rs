//! Processes that work for the traced backend are followed: parallel workers (their files
//! shown under the leader) and, on PostgreSQL 18 with io_method=worker, the io workers that
//! perform its reads (attributed by the owner of the AIO handle they execute; the two-session
//! case is in pg18_io_workers.rs).

mod support;

use pg_trace::output::record::{FileRecord, Record};
use support::trace::{file, progress, spawn_trace_with};
use support::Cluster;

/// Run a query on a held backend while `pg_trace --backend ebpf` follows it; Ctrl-C after.
fn trace_query(c: &Cluster, setup: &str, query: &'static str) -> (i32, Vec<Record>) {
    trace_query_with(c, setup, query, &[])
}

fn trace_query_with(
    c: &Cluster,
    setup: &str,
    query: &'static str,
    extra: &[&str],
) -> (i32, Vec<Record>) {
    let mut held = c.hold_backend("postgres");
    held.client.batch_execute(setup).unwrap();
    let mut trace = spawn_trace_with(held.pid, "ebpf", extra);
    trace.wait_ready();
    let n: i64 = held.client.query_one(query, &[]).unwrap().get(0);
    assert!(n > 0);
    (held.pid, trace.finish())
}

#[test]
fn parallel_workers_are_followed() {
    let mut c = Cluster::start_with(
        15,
        &[("shared_buffers", "16MB"), ("max_worker_processes", "8")],
    );
    c.execute(
        "postgres",
        "CREATE TABLE par AS SELECT g, repeat(md5(g::text), 4) AS pad FROM generate_series(1, 1500000) g",
    );
    c.execute("postgres", "CHECKPOINT");
    c.restart();
    let rel = c.psql("postgres", "SELECT pg_relation_filepath('par')")[0][0]
        .clone()
        .unwrap();
    // Recorded too: the followers are in the file, and the replay shows them.
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("par.pgtrace");
    let (leader, records) = trace_query_with(
        &c,
        "SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0;
         SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0;",
        "SELECT count(*) FROM par WHERE length(md5(pad)) > 0",
        &["--record", rec.to_str().unwrap()],
    );
    let worker_files: Vec<&FileRecord> = records
        .iter()
        .filter_map(file)
        .filter(|r| r.relation.as_deref() == Some(rel.as_str()) && r.parallel_worker)
        .collect();
    assert!(!worker_files.is_empty(), "no parallel worker read {rel}");
    let worker_pids: std::collections::BTreeSet<i32> = worker_files.iter().map(|r| r.pid).collect();
    assert!(!worker_pids.contains(&leader));
    assert!(worker_files.iter().any(|r| r.bytes_read > 0));
    let progress = records
        .iter()
        .rev()
        .filter_map(progress)
        .find(|r| r.relation == rel)
        .expect("progress of the parallel scan");
    assert_eq!(progress.name.as_deref(), Some("par"));
    eprintln!(
        "parallel: workers {worker_pids:?} followed; {} bytes read in all",
        progress.bytes_read
    );
    let replayed = pg_trace::session::replay::replay_records(&rec).unwrap();
    let replayed_workers: Vec<&FileRecord> = replayed
        .iter()
        .filter_map(file)
        .filter(|r| r.relation.as_deref() == Some(rel.as_str()) && r.parallel_worker)
        .collect();
    let pids: std::collections::BTreeSet<i32> = replayed_workers.iter().map(|r| r.pid).collect();
    assert_eq!(pids, worker_pids, "the replay's parallel workers");
    let bytes = |v: &[&FileRecord]| v.iter().map(|r| r.bytes_read).max();
    assert_eq!(bytes(&replayed_workers), bytes(&worker_files));
}

#[test]
fn io_worker_reads_are_attributed_on_18() {
    if !support::majors().contains(&18) {
        support::skip(
            "io_worker_reads_are_attributed_on_18",
            "PG_TRACE_TEST_MAJORS excludes 18",
        );
        return;
    }
    let mut c = Cluster::start_with(18, &[("shared_buffers", "16MB"), ("io_method", "worker")]);
    c.execute(
        "postgres",
        "CREATE TABLE aio AS SELECT g, repeat(md5(g::text), 4) AS pad FROM generate_series(1, 1500000) g",
    );
    c.execute("postgres", "CHECKPOINT");
    c.restart();
    let rel = c.psql("postgres", "SELECT pg_relation_filepath('aio')")[0][0]
        .clone()
        .unwrap();
    let (_, records) = trace_query(
        &c,
        "SET max_parallel_workers_per_gather = 0",
        "SELECT count(*) FROM aio WHERE length(md5(pad)) > 0",
    );
    let io: Vec<&FileRecord> = records
        .iter()
        .filter_map(file)
        .filter(|r| r.relation.as_deref() == Some(rel.as_str()) && r.io_worker)
        .collect();
    assert!(!io.is_empty(), "no io worker read of {rel} attributed");
    assert!(io.iter().any(|r| r.bytes_read > 0));
    // io workers' reads of other relations are not ours: none may show up.
    assert!(records
        .iter()
        .filter_map(file)
        .filter(|r| r.io_worker && r.class == "relation")
        .all(|r| r.relation.as_deref() == Some(rel.as_str()) || r.bytes_read == 0));
    eprintln!("io workers: {} file records of {rel}", io.len());
}
