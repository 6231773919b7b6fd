//! `--duration` is honoured under a flood of events: line mode stops draining at the
//! deadline and exits, however many events are still coming. A backend scans a table held
//! in shared buffers in a loop (hundreds of thousands of buffer accesses and system calls
//! a second, USDT on Debian's PostgreSQL 15); a `--duration 2` trace of it must be gone
//! within a bound derived from the duration (it once took 17 s, draining a ring that
//! refilled faster than it was read). A correctness check of the deadline, not a speed test:
//! the bound is generous (duration + 5 s, from the attach record to the exit).

mod support;

use pg_trace::output::record::Record;
use std::time::{Duration, Instant};
use support::trace::{attach, spawn_trace_with, stats, summary};
use support::Cluster;

const DURATION_S: u64 = 2;
const SLACK: Duration = Duration::from_secs(5);

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn duration_is_honoured_under_a_flood_of_events() {
    if !is_root() {
        support::skip("--duration under load", "needs root for eBPF and USDT");
        return;
    }
    // PG15 is Debian's, with USDT probes: the most events per scanned block.
    let majors = support::majors();
    let Some(major) = majors
        .iter()
        .copied()
        .find(|&m| m == 15)
        .or(majors.first().copied())
    else {
        support::skip("--duration under load", "no PostgreSQL major to test");
        return;
    };
    let c = Cluster::start_with(
        major,
        &[("max_parallel_workers_per_gather", "0"), ("jit", "off")],
    );
    c.execute(
        "postgres",
        // One row per block, 400 blocks: all in shared buffers, every access a hit.
        "CREATE TABLE warm (g int, pad char(700)) WITH (fillfactor = 10);
         INSERT INTO warm SELECT g, md5(g::text) FROM generate_series(1, 400) g",
    );
    let mut held = c.hold_backend("postgres");
    let pid = held.pid;
    let busy = std::thread::spawn(move || {
        // Until it is cancelled below.
        let _ = held.client.batch_execute(
            "DO $$ BEGIN FOR i IN 1..100000000 LOOP PERFORM count(*) FROM warm; END LOOP; END $$",
        );
    });
    let started = Instant::now();
    while c
        .psql(
            "postgres",
            &format!("SELECT 1 FROM pg_stat_activity WHERE pid = {pid} AND state = 'active'"),
        )
        .is_empty()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the loop never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut tr = spawn_trace_with(pid, "auto", &["--duration", &DURATION_S.to_string()]);
    tr.wait_for("the attach record", |r| {
        r.iter().any(|r| attach(r).is_some())
    });
    let attached = Instant::now();
    let bound = Duration::from_secs(DURATION_S) + SLACK;
    let status = loop {
        if let Some(st) = tr.child.try_wait().unwrap() {
            break st;
        }
        if attached.elapsed() > bound {
            let _ = tr.child.kill();
            let _ = tr.child.wait();
            let events: Vec<f64> = tr
                .records()
                .iter()
                .filter_map(stats)
                .map(|s| s.events_per_s)
                .collect();
            c.execute("postgres", &format!("SELECT pg_cancel_backend({pid})"));
            let _ = busy.join();
            panic!(
                "--duration {DURATION_S}: still running {bound:?} after the attach record \
                 (events/s per interval: {events:?})"
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = attached.elapsed();
    c.execute("postgres", &format!("SELECT pg_cancel_backend({pid})"));
    busy.join().unwrap();
    assert!(status.success(), "pg_trace failed: {status}");
    // Its last lines may still be in the reader thread.
    tr.wait_for("the summary", |r| r.iter().any(|r| summary(r).is_some()));
    let records: Vec<Record> = tr.records();
    let rates: Vec<f64> = records
        .iter()
        .filter_map(stats)
        .map(|s| s.events_per_s)
        .collect();
    // The last interval ends at the deadline, not after a drain that outlived it.
    let last_ts = records
        .iter()
        .filter_map(stats)
        .map(|s| s.ts)
        .fold(0.0, f64::max);
    assert!(
        last_ts < DURATION_S as f64 + SLACK.as_secs_f64(),
        "last interval at {last_ts} s"
    );
    eprintln!(
        "--duration {DURATION_S} on PG{major}: exited {took:?} after the attach record; \
         events/s per interval {rates:?}"
    );
}
