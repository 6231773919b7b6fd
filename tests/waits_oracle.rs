//! The wait profile against the extensions it replaces, on PostgreSQL 15 with Debian's
//! `postgresql-15-pg-wait-sampling` and `postgresql-15-pg-stat-kcache` preloaded: one
//! backend, one mixed workload (a lock wait, `pg_sleep`, a scan from disk and from the page
//! cache, a CPU-bound query, a client reading a COPY slowly), one window.
//!
//! - Every wait event's share within 3 percentage points of `pg_wait_sampling_profile`
//!   for that pid (both at 100 Hz). Debian's pg_wait_sampling is 1.1.4, which does not
//!   count samples without a wait event (CPU; upstream 1.1.5 added them, as pg_trace
//!   counts them): shares are compared over the waiting samples.
//! - CPU per query (by query id) within 10 % of pg_stat_kcache's user+system time, for
//!   the queries that used at least 0.3 s of CPU (below, one sample period is a sizeable
//!   part of the figure).

mod support;

use pg_trace::output::record::WaitsRecord;
use std::collections::HashMap;
use std::io::Read;
use std::time::Duration;
use support::trace::{attach, spawn_trace_every, waits};
use support::Cluster;

const LIBS: [&str; 3] = ["pg_wait_sampling", "pg_stat_statements", "pg_stat_kcache"];

/// Drop a file's pages from the page cache, so the next scan reads the disk.
fn evict(path: &std::path::Path) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    // SAFETY: a valid fd of a file we opened; advice has no memory effects.
    let r = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(r, 0, "posix_fadvise on {}", path.display());
}

#[test]
fn wait_profile_and_cpu_match_the_extensions() {
    let lib = support::bin_dir(15).join("../lib");
    if let Some(missing) = LIBS.iter().find(|l| !lib.join(format!("{l}.so")).is_file()) {
        support::skip(
            "waits_oracle",
            &format!(
                "{missing}.so not in {}: install postgresql-15-pg-wait-sampling and \
                 postgresql-15-pg-stat-kcache (scripts/setup.sh)",
                lib.display()
            ),
        );
        return;
    }
    let c = Cluster::start_with(
        15,
        &[
            (
                "shared_preload_libraries",
                "pg_wait_sampling,pg_stat_statements,pg_stat_kcache",
            ),
            ("pg_wait_sampling.profile_period", "10"),
            ("pg_wait_sampling.profile_pid", "on"),
            ("compute_query_id", "on"),
            ("shared_buffers", "16MB"),
        ],
    );
    c.execute(
        "postgres",
        "CREATE EXTENSION pg_wait_sampling; CREATE EXTENSION pg_stat_statements; \
         CREATE EXTENSION pg_stat_kcache; CREATE TABLE lk (a int); \
         CREATE TABLE big AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 120000) g;",
    );
    // Written out, so its pages can be dropped from the page cache.
    c.execute("postgres", "CHECKPOINT");
    let path = c.psql("postgres", "SELECT pg_relation_filepath('big')")[0][0]
        .clone()
        .unwrap();
    let big = c.datadir.join(path);

    let mut t = c.hold_backend("postgres");
    let mut other = c.connect("postgres");
    // Polled every 50 ms, so that pg_trace's window ends soon after the Ctrl-C.
    let mut trace = spawn_trace_every(t.pid, "procfs", 50, &["--sample-hz", "100"]);
    // The sampler runs from before the attach record: the window starts here for both,
    // give or take the reset's round trip.
    trace.wait_for("the attach record", |r| {
        r.iter().any(|r| attach(r).is_some())
    });
    other
        .batch_execute(
            "SELECT pg_wait_sampling_reset_profile(); SELECT pg_stat_kcache_reset(); \
             SELECT pg_stat_statements_reset();",
        )
        .unwrap();

    // 1. A lock wait: another session holds the table for 2 s.
    let mut holder = c.hold_backend("postgres");
    holder
        .client
        .batch_execute("BEGIN; LOCK TABLE lk IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let release = std::thread::spawn(move || {
        // The workload's pacing: how long the lock is held.
        std::thread::sleep(Duration::from_millis(2000));
        holder.client.batch_execute("COMMIT").unwrap();
        holder
    });
    t.client
        .batch_execute("BEGIN; LOCK TABLE lk IN ACCESS SHARE MODE; COMMIT")
        .unwrap();
    drop(release.join().unwrap());
    // 2. Sleeping.
    t.client.batch_execute("SELECT pg_sleep(2)").unwrap();
    // 3. Scans from disk until pg_wait_sampling has seen one wait for a read (the
    //    kernel's read-ahead leaves few reads to wait for, on a fast disk none in a scan),
    //    then two from the page cache.
    let disk_read_seen = |other: &mut postgres::Client| -> bool {
        other
            .query_one(
                "SELECT coalesce(sum(count), 0)::bigint FROM pg_wait_sampling_profile \
                 WHERE pid = $1 AND event = 'DataFileRead'",
                &[&t.pid],
            )
            .unwrap()
            .get::<_, i64>(0)
            > 0
    };
    let mut cold = 0;
    while cold < 30 && (cold == 0 || !disk_read_seen(&mut other)) {
        evict(&big);
        t.client.batch_execute("SELECT count(*) FROM big").unwrap();
        cold += 1;
    }
    eprintln!("{cold} scans from disk");
    for _ in 0..2 {
        t.client.batch_execute("SELECT count(*) FROM big").unwrap();
    }
    // 4. On CPU.
    t.client
        .batch_execute("SELECT sum(length(md5(g::text))) FROM generate_series(1, 1500000) g")
        .unwrap();
    // 5. A client reading 12 MB at about 8 MB/s: the backend waits to write.
    let mut copy = t
        .client
        .copy_out("COPY (SELECT g, pad FROM big LIMIT 50000) TO STDOUT")
        .unwrap();
    let mut buf = [0u8; 16384];
    let mut since_pause = 0;
    loop {
        let n = copy.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        since_pause += n;
        // The throttle: 2 ms per 16 kB read.
        if since_pause >= buf.len() {
            since_pause = 0;
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    drop(copy);

    let theirs: HashMap<(String, String), i64> = other
        .query(
            "SELECT event_type, event, sum(count)::bigint FROM pg_wait_sampling_profile \
             WHERE pid = $1 GROUP BY 1, 2",
            &[&t.pid],
        )
        .unwrap()
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    // Ends pg_trace's window right after pg_wait_sampling's.
    let records = trace.finish();
    let kcache: HashMap<i64, f64> = other
        .query(
            "SELECT queryid, sum(plan_user_time + plan_system_time + exec_user_time \
             + exec_system_time) FROM pg_stat_kcache() WHERE top GROUP BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let ours: &WaitsRecord = records
        .iter()
        .rev()
        .filter_map(waits)
        .find(|w| w.pid == t.pid && w.scope == "total")
        .expect("a total waits record for the traced backend");

    let their_total: i64 = theirs.values().sum();
    let our_cpu = ours
        .events
        .iter()
        .find(|e| e.wait_event_type.is_none())
        .map_or(0, |e| e.samples);
    let our_total = ours.samples - our_cpu;
    assert!(
        their_total > 300,
        "pg_wait_sampling saw {their_total} samples"
    );
    eprintln!(
        "pg_wait_sampling: {their_total} waiting samples; pg_trace: {our_total} (+{our_cpu} CPU)"
    );
    let mut keys: Vec<(String, String)> = theirs.keys().cloned().collect();
    for e in &ours.events {
        if let (Some(c), Some(n)) = (&e.wait_event_type, &e.wait_event) {
            if !keys.contains(&(c.clone(), n.clone())) {
                keys.push((c.clone(), n.clone()));
            }
        }
    }
    let mut bad = Vec::new();
    for k in &keys {
        let their = *theirs.get(k).unwrap_or(&0) as f64 / their_total as f64;
        let our = ours
            .events
            .iter()
            .find(|e| {
                e.wait_event_type.as_ref() == Some(&k.0) && e.wait_event.as_ref() == Some(&k.1)
            })
            .map_or(0.0, |e| e.samples as f64 / our_total.max(1) as f64);
        eprintln!(
            "{:>10}:{:<20} pg_wait_sampling {:5.1}%  pg_trace {:5.1}%",
            k.0,
            k.1,
            100.0 * their,
            100.0 * our
        );
        if (their - our).abs() > 0.03 {
            bad.push(k.clone());
        }
    }
    assert!(bad.is_empty(), "shares off by more than 3 points: {bad:?}");
    for (name, want) in [
        ("Lock", "relation"),
        ("Timeout", "PgSleep"),
        ("IO", "DataFileRead"),
        ("Client", "ClientWrite"),
    ] {
        assert!(
            theirs.contains_key(&(name.to_string(), want.to_string())),
            "the workload must show {name}:{want}: {theirs:?}"
        );
    }

    let mut compared = 0;
    for q in &ours.queries {
        let Some(id) = q.query_id else { continue };
        let Some(&want) = kcache.get(&id) else {
            continue;
        };
        if want < 0.3 {
            continue;
        }
        let got = q
            .cpu_s
            .expect("CPU measured for the traced backend's queries");
        eprintln!(
            "query {id} {:?}: pg_stat_kcache {want:.3} s, pg_trace {got:.3} s",
            q.query
        );
        assert!(
            (got - want).abs() <= 0.1 * want,
            "CPU of {:?}: pg_trace {got:.3} s, pg_stat_kcache {want:.3} s",
            q.query
        );
        compared += 1;
    }
    assert!(
        compared >= 1,
        "no query used 0.3 s of CPU: {kcache:?} {:?}",
        ours.queries
    );
}
