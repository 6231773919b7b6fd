//! Where the time goes, from the kernel, on real clusters (root, eBPF): scheduler times
//! against /proc/PID/schedstat, I/O latency split into page cache and disk on a cold and
//! a warm scan, and exact wait transitions from a hardware watchpoint against the number
//! of sleeps the backend did and a 100 Hz sample of `pg_stat_activity`.
//!
//! Majors: 15 (Debian's) and 17 (npm), or `PG_TRACE_TEST_MAJORS`. One cluster per major,
//! shared by the three checks.

mod support;

use pg_trace::output::record::{Record, WaitsRecord};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};
use support::trace::{spawn_trace_env, spawn_trace_with, Trace};
use support::Cluster;

fn test_majors() -> Vec<u32> {
    if std::env::var("PG_TRACE_TEST_MAJORS").is_ok_and(|s| !s.trim().is_empty()) {
        support::majors()
    } else {
        vec![15, 17]
    }
}

fn waits(r: &Record) -> Option<&WaitsRecord> {
    match r {
        Record::Waits(w) => Some(w),
        _ => None,
    }
}

/// The traced process's since-attach records (each follower has its own).
fn totals(records: &[Record]) -> Vec<WaitsRecord> {
    let leader = records.iter().find_map(|r| match r {
        Record::Attach(a) => Some(a.pid),
        _ => None,
    });
    records
        .iter()
        .filter_map(waits)
        .filter(|w| w.scope == "total" && Some(w.pid) == leader)
        .cloned()
        .collect()
}

/// A parallel query's workers get their own kernel times: a `waits` record per worker
/// with its time on a CPU, which the leader's does not include.
fn check_followers(c: &Cluster) {
    let mut b = c.hold_backend("postgres");
    b.client
        .batch_execute(
            "SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0; \
             SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0; \
             SET parallel_leader_participation = off",
        )
        .unwrap();
    let mut t = spawn_trace_with(b.pid, "ebpf", &["--no-usdt"]);
    t.wait_ready();
    // Long enough (a few seconds over two workers) for pg_trace to follow the workers
    // while they run.
    b.client
        .batch_execute(
            "SELECT count(*) FROM t a, generate_series(1, 100) g \
             WHERE md5(a.pad || g::text) LIKE 'ab%'",
        )
        .unwrap();
    two_more_totals(&mut t);
    let records = t.finish();
    let leader = b.pid;
    let followers: Vec<WaitsRecord> = records
        .iter()
        .filter_map(waits)
        .filter(|w| w.scope == "total" && w.pid != leader && w.cpu_s.is_some())
        .cloned()
        .collect();
    let busiest = followers
        .iter()
        .map(|w| w.cpu_s.unwrap_or(0.0))
        .fold(0.0, f64::max);
    let leader_cpu = totals(&records).pop().and_then(|w| w.cpu_s).unwrap_or(0.0);
    eprintln!(
        "PG{}: leader cpu {leader_cpu:.3}s, followers' busiest {busiest:.3}s ({} records)",
        c.major,
        followers.len()
    );
    assert!(
        busiest > 0.3,
        "PG{}: no follower with its own CPU time: {followers:?}",
        c.major
    );
    // The leader only gathers (parallel_leader_participation off): far less than a worker.
    assert!(
        leader_cpu < busiest,
        "PG{}: leader {leader_cpu} s, busiest worker {busiest} s",
        c.major
    );
}

/// (time on a CPU, time waiting on a run queue) in seconds, from /proc/PID/schedstat.
fn schedstat(pid: i32) -> (f64, f64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).expect("schedstat");
    let v: Vec<u64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();
    (v[0] as f64 / 1e9, v[1] as f64 / 1e9)
}

/// Waits until pg_trace has written `n` more total-scope waits records than now: what
/// they say is then as of after this call.
fn two_more_totals(t: &mut Trace) -> WaitsRecord {
    let have = totals(&t.records()).len();
    t.wait_for("two more waits records", |r| totals(r).len() >= have + 2);
    totals(&t.records()).pop().unwrap()
}

/// Asked for without eBPF: one clear line, a failure, no trace.
fn check_refusals(pid: i32) {
    for flag in ["--io-latency", "--exact-waits"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pg_trace"))
            .args([
                "-p",
                &pid.to_string(),
                "--no-tui",
                "--backend",
                "procfs",
                flag,
            ])
            .args(["--duration", "5"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flag} with procfs: {err}");
        assert!(err.contains(flag) && err.contains("eBPF"), "{flag}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// `old`: the scheduler program of kernels before 5.18 (forced in a debug build), which
/// reads the state from the task: it must load, measure the same, and be said.
fn check_sched(c: &Cluster, old: bool) {
    let mut b = c.hold_backend("postgres");
    if !old {
        check_refusals(b.pid);
    }
    let env: &[(&str, &str)] = if old {
        &[("PG_TRACE_TEST_SCHED_TASK_STATE", "1")]
    } else {
        &[]
    };
    let mut t = spawn_trace_env(b.pid, "ebpf", 200, &["--no-usdt"], env);
    t.wait_ready();
    let said = t
        .records()
        .iter()
        .find_map(|r| match r {
            Record::Attach(a) => Some(a.limitations.clone()),
            _ => None,
        })
        .expect("an attach record");
    assert_eq!(
        said.iter().any(|l| l.contains("before 5.18")),
        old || kernel_version() < (5, 18),
        "PG{}: {said:?}",
        c.major
    );
    // Idle (waiting for the client): what pg_trace says now holds until the work starts.
    let before = two_more_totals(&mut t);
    let (run0, rq0) = schedstat(b.pid);
    b.client
        .batch_execute(
            "SELECT count(*) FROM generate_series(1, 3000000); SELECT pg_sleep(0.3); \
             SELECT count(*) FROM generate_series(1, 3000000);",
        )
        .unwrap();
    let (run1, rq1) = schedstat(b.pid);
    let after = two_more_totals(&mut t);
    let records = t.finish();
    let cpu = after.cpu_s.unwrap() - before.cpu_s.unwrap();
    let rq = after.runqueue_s.unwrap() - before.runqueue_s.unwrap();
    let (want_cpu, want_rq) = (run1 - run0, rq1 - rq0);
    eprintln!(
        "PG{}{}: cpu {cpu:.3}s (schedstat {want_cpu:.3}s), run queue {rq:.3}s ({want_rq:.3}s)",
        c.major,
        if old { " (old program)" } else { "" }
    );
    assert!(want_cpu > 0.2, "the workload used {want_cpu}s of CPU");
    assert!(
        (cpu - want_cpu).abs() <= 0.05 * want_cpu + 0.02,
        "PG{}: cpu {cpu} vs schedstat {want_cpu}",
        c.major
    );
    assert!(
        (rq - want_rq).abs() <= 0.25 * want_rq + 0.03,
        "PG{}: run queue {rq} vs schedstat {want_rq}",
        c.major
    );
    // The slept 0.3 s is off CPU; and every interval adds up to its window.
    assert!(after.off_cpu_s.unwrap() - before.off_cpu_s.unwrap() >= 0.28);
    // Since attach, the states add up to the time traced (an interval's own figures can
    // be off by pg_trace's own scheduling delay between its last read and its tick).
    let last = totals(&records).pop().unwrap();
    let sum = last.cpu_s.unwrap() + last.off_cpu_s.unwrap() + last.runqueue_s.unwrap();
    assert!(
        (sum - last.window_s).abs() <= 0.05 * last.window_s + 0.15,
        "PG{}: {last:?} does not add up",
        c.major
    );
}

/// The running kernel's (major, minor).
fn kernel_version() -> (u32, u32) {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut it = r
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// Drops every segment of a relation's main fork from the page cache (written out first).
fn drop_from_page_cache(c: &Cluster, rel: &str) {
    let rows = c.psql("postgres", &format!("SELECT pg_relation_filepath('{rel}')"));
    let path = c.datadir.join(rows[0][0].as_ref().unwrap());
    let mut seg = 0;
    loop {
        let p = if seg == 0 {
            path.clone()
        } else {
            path.with_file_name(format!(
                "{}.{seg}",
                path.file_name().unwrap().to_string_lossy()
            ))
        };
        let Ok(f) = std::fs::File::open(&p) else {
            break;
        };
        // Dirty pages (the shutdown checkpoint just wrote them) are not dropped: write
        // them out first.
        f.sync_all().expect("fsync");
        // SAFETY: posix_fadvise on an fd we own, whole file.
        let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0, "fadvise {}", p.display());
        seg += 1;
    }
}

/// A scan from the last block to the first (a backward index scan): every heap block is
/// one pread64 of its own, and the kernel's readahead, which looks behind a read for a
/// forward stream, reads no more than asked (going forward, or in random order, it soon
/// finds cached blocks behind a read and reads ahead: a cold random scan still comes
/// about 40 % from the page cache).
const SCAN: &str = "SET enable_seqscan = off; SET enable_bitmapscan = off; \
                    SELECT sum(length(pad)) FROM (SELECT pad FROM t WHERE k >= 0 \
                    ORDER BY k DESC) s";

/// The read row of public.t's main fork after one scan by a fresh backend.
fn traced_scan(c: &Cluster) -> pg_trace::output::record::IoLatencyRow {
    let mut b = c.hold_backend("postgres");
    let mut t = spawn_trace_with(b.pid, "ebpf", &["--no-usdt", "--io-latency"]);
    t.wait_ready();
    b.client.batch_execute(SCAN).unwrap();
    two_more_totals(&mut t);
    let records = t.finish();
    // 5.18+: the program that takes the state from the tracepoint, so no limitation
    // about it (older kernels: the old program, said).
    let att = records
        .iter()
        .find_map(|r| match r {
            Record::Attach(a) => Some(a),
            _ => None,
        })
        .expect("an attach record");
    let old_note = att.limitations.iter().find(|l| l.contains("before 5.18"));
    assert_eq!(
        old_note.is_some(),
        kernel_version() < (5, 18),
        "PG{}: {:?}",
        c.major,
        att.limitations
    );
    let last = totals(&records).pop().expect("a waits record");
    last.io_latency
        .iter()
        .find(|r| r.relation == "public.t" && r.fork.as_deref() == Some("main") && r.op == "read")
        .cloned()
        .unwrap_or_else(|| panic!("PG{}: no read row for public.t: {last:?}", c.major))
}

fn check_io_latency(c: &mut Cluster) {
    c.execute(
        "postgres",
        "CREATE TABLE t (k int, pad text); \
         INSERT INTO t SELECT k, repeat('x', 400) FROM generate_series(1, 20000) k; \
         CREATE INDEX ON t (k);",
    );
    c.execute("postgres", "VACUUM ANALYZE t");
    c.execute("postgres", "CHECKPOINT");
    // Cold: nothing in shared buffers (restart), nothing in the page cache (fadvise).
    // One scan: a read waited for the device when its thread submitted a bio during it,
    // or slept in D state (the state the kernel passes to the tracepoint, 5.18+). On this
    // VM reads at 70-90 µs sometimes never sleep (the hypervisor answers during the
    // notify): by the D state alone, 85 % of them counted as page-cache hits.
    c.restart();
    drop_from_page_cache(c, "t");
    let cold = traced_scan(c);
    // Warm: shared buffers empty again, the page cache full of it.
    c.restart();
    let warm = traced_scan(c);
    eprintln!("PG{}: cold {cold:?}\nPG{}: warm {warm:?}", c.major, c.major);
    assert!(cold.count >= 300 && warm.count >= 300, "{cold:?} {warm:?}");
    let (cs, ws) = (
        cold.page_cache_share.unwrap(),
        warm.page_cache_share.unwrap(),
    );
    assert!(
        cs < 0.2,
        "PG{}: the cold scan's reads were not seen waiting for the device \
         ({:.0} % counted as page-cache hits, p50 {} µs): neither a bio submitted by \
         the reader nor a D-state sleep was seen during them: {cold:?}",
        c.major,
        cs * 100.0,
        cold.p50_us
    );
    assert!(
        ws > 0.9,
        "PG{}: warm scan not from the page cache: {warm:?}",
        c.major
    );
    assert!(cold.p50_us > warm.p50_us, "{cold:?} {warm:?}");
}

/// The backend's wait event every 10 ms from `pg_stat_activity`, until `stop`: the
/// sampled profile the exact one is compared with, as (wait_event, samples).
fn sample_waits(
    c: &Cluster,
    pid: i32,
    stop: &std::sync::atomic::AtomicBool,
) -> std::collections::BTreeMap<String, u64> {
    let mut client = c.connect("postgres");
    let q = client
        .prepare("SELECT coalesce(wait_event, 'CPU') FROM pg_stat_activity WHERE pid = $1")
        .unwrap();
    let mut counts = std::collections::BTreeMap::new();
    let mut next = Instant::now();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let ev: String = client.query_one(&q, &[&pid]).unwrap().get(0);
        *counts.entry(ev).or_insert(0) += 1;
        next += Duration::from_millis(10);
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    counts
}

fn check_exact_waits(c: &Cluster) {
    const SLEEPS: u64 = 12;
    let mut b = c.hold_backend("postgres");
    let mut t = spawn_trace_with(b.pid, "ebpf", &["--no-usdt", "--exact-waits"]);
    t.wait_ready();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let sampled = std::thread::scope(|s| {
        let sampler = s.spawn(|| sample_waits(c, b.pid, &stop));
        // Each pg_sleep timed from the backend itself: on a loaded host a sleep's wake-up
        // waits for a CPU, still in the wait (what the watchpoint measures), so the
        // oracle is the sleeps as the backend lived them, not 0.1 s each.
        b.client
            .batch_execute(&format!(
                "CREATE TEMP TABLE slept (s float8); \
                 DO $$ DECLARE t0 timestamptz; s float8 := 0; BEGIN \
                 FOR i IN 1..{SLEEPS} LOOP t0 := clock_timestamp(); PERFORM pg_sleep(0.1); \
                 s := s + extract(epoch FROM clock_timestamp() - t0); \
                 PERFORM count(*) FROM generate_series(1, 200000); END LOOP; \
                 INSERT INTO slept VALUES (s); END $$;"
            ))
            .unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        sampler.join().unwrap()
    });
    let slept: f64 = b
        .client
        .query_one("SELECT s FROM slept", &[])
        .unwrap()
        .get(0);
    two_more_totals(&mut t);
    let records = t.finish();
    let last = totals(&records).pop().unwrap();
    let exact = last.exact.expect("exact waits on");
    let sleep = exact
        .iter()
        .find(|e| e.wait_event == "PgSleep")
        .unwrap_or_else(|| panic!("PG{}: no PgSleep in {exact:?}", c.major));
    assert_eq!(sleep.wait_event_type, "Timeout");
    // One wait per sleep; pg_sleep waits again, at once, when its latch timer fires a
    // hair before the clock it then checks says the time is up (its loop in misc.c), so
    // a sleep may show as two waits back to back: never fewer waits than sleeps.
    assert!(
        (SLEEPS..=SLEEPS + 3).contains(&sleep.count),
        "PG{}: {} PgSleep waits for {SLEEPS} sleeps: {exact:?}",
        c.major,
        sleep.count
    );
    // The waits lie inside the timed sleeps (clock reads and the call around each).
    assert!(
        slept >= 0.1 * SLEEPS as f64 && sleep.seconds <= slept + 0.01,
        "PG{}: {sleep:?} in sleeps of {slept:.3}s",
        c.major
    );
    assert!(
        sleep.seconds >= slept - 0.03,
        "PG{}: {sleep:?} in sleeps of {slept:.3}s",
        c.major
    );
    // The sampled profile of the same run: PgSleep seconds within sampling error.
    let sampled_sleep = *sampled.get("PgSleep").unwrap_or(&0) as f64 / 100.0;
    eprintln!(
        "PG{}: exact PgSleep {:.3}s in {} waits (timed by the backend: {slept:.3}s); \
         sampled {sampled_sleep:.2}s ({sampled:?})",
        c.major, sleep.seconds, sleep.count
    );
    assert!(
        (sleep.seconds - sampled_sleep).abs() < 0.25,
        "PG{}: exact {sleep:?} vs sampled {sampled:?}",
        c.major
    );
}

#[test]
fn where_the_time_goes() {
    let threads: Vec<_> = test_majors()
        .into_iter()
        .map(|m| {
            (
                m,
                std::thread::spawn(move || {
                    let mut c = Cluster::start(m);
                    check_sched(&c, false);
                    check_sched(&c, true);
                    check_exact_waits(&c);
                    check_io_latency(&mut c);
                    check_followers(&c);
                }),
            )
        })
        .collect();
    let failed: Vec<u32> = threads
        .into_iter()
        .filter_map(|(m, t)| t.join().is_err().then_some(m))
        .collect();
    assert!(failed.is_empty(), "failed on majors {failed:?}");
}
