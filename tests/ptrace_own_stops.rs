//! Issue 11 item 9: under ptrace the backend sits in pg_trace's own syscall stops many
//! times a second; those stops are pg_trace's, not the process's state, and no status
//! record may say the backend is stopped (`T`/`t`, "stopped (SIGSTOP or a debugger)");
//! a real SIGSTOP still is.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use support::trace::{spawn_trace, status};
use support::Cluster;

/// The one-letter state of /proc/PID/stat, read from outside.
fn proc_state(pid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?.1.trim_start().chars().next()
}

fn own_stops_hidden(major: u32) {
    let c = Cluster::start_with(major, &[("max_parallel_workers_per_gather", "0")]);
    c.execute(
        "postgres",
        "CREATE TABLE t AS SELECT g, md5(g::text) AS pad FROM generate_series(1, 200000) g",
    );
    let mut held = c.hold_backend("postgres");
    let pid = held.pid;
    let mut trace = spawn_trace(pid, "ptrace");
    trace.wait_ready();

    // Watch the backend from outside while it scans: it must really be caught in
    // tracing stops, or the test proves nothing.
    let done = Arc::new(AtomicBool::new(false));
    let caught = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (done, caught) = (Arc::clone(&done), Arc::clone(&caught));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if matches!(proc_state(pid), Some('t')) {
                    caught.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::yield_now();
            }
        })
    };
    // Scans until pg_trace has written enough status records of the busy backend.
    let mut scans = 0;
    loop {
        held.client
            .simple_query("SELECT count(*) FROM t WHERE length(pad) > 0")
            .unwrap();
        scans += 1;
        let busy = trace
            .records()
            .iter()
            .filter_map(status)
            .filter(|s| s.pid == pid)
            .count();
        if busy >= 15 && caught.load(Ordering::Relaxed) > 0 {
            break;
        }
        assert!(
            scans < 2000,
            "PG {major}: {busy} status records and {} caught stops after {scans} scans",
            caught.load(Ordering::Relaxed)
        );
    }
    done.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    let own_stops_end = trace.records().len();

    // A stop of its own (kill -STOP) is the backend's state, and said so.
    // SAFETY: kill(2) on a backend of a cluster this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    trace.wait_for("the SIGSTOP to be reported", |r| {
        r[own_stops_end..]
            .iter()
            .filter_map(status)
            .any(|s| s.pid == pid && s.verdict.contains("stopped"))
    });
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let n: Vec<postgres::SimpleQueryMessage> = held.client.simple_query("SELECT 1").unwrap();
    assert!(!n.is_empty(), "PG {major}: the backend works after SIGCONT");
    let records = trace.finish();
    let records = &records[..own_stops_end];

    let statuses: Vec<_> = records
        .iter()
        .filter_map(status)
        .filter(|s| s.pid == pid)
        .collect();
    assert!(statuses.len() >= 15, "PG {major}: {statuses:?}");
    for s in &statuses {
        assert!(
            !matches!(s.kernel_state.as_deref(), Some("T" | "t")),
            "PG {major}: pg_trace's own stop reported as the backend's state: {s:?}"
        );
        assert!(
            !s.verdict.contains("stopped"),
            "PG {major}: pg_trace's own stop reported as the verdict: {s:?}"
        );
    }
}

#[test]
fn ptrace_own_stops_are_not_the_backends_state() {
    let want = support::majors();
    for major in [15, 18] {
        if want.contains(&major) {
            own_stops_hidden(major);
        } else {
            support::skip(
                &format!("ptrace own stops on PostgreSQL {major}"),
                "not in PG_TRACE_TEST_MAJORS",
            );
        }
    }
}
