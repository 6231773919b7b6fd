//! pg_trace's own cost in the `stats` record, on real servers: the run time of its BPF
//! programs from the kernel's statistics (syscall programs, and USDT programs on Debian's
//! PostgreSQL 15 built with --enable-dtrace), its CPU and its memory; null probe fields
//! for a backend without BPF, and without `--probe-cost` (the statistics stay off); with
//! it, the statistics switched on by an fd that dies with it.

mod support;

use pg_trace::output::record::{Record, StatsRecord};
use std::time::{Duration, Instant};
use support::trace::{attach, spawn_trace_with, stats, Trace};
use support::Cluster;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn nproc() -> f64 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as f64
}

/// A table of ~1,700 blocks, scanned with no parallelism and no synchronized scans.
fn cluster(major: u32) -> Cluster {
    let c = Cluster::start_with(
        major,
        &[
            ("shared_buffers", "64MB"),
            ("synchronize_seqscans", "off"),
            ("max_parallel_workers_per_gather", "0"),
            ("jit", "off"),
        ],
    );
    c.execute(
        "postgres",
        "CREATE TABLE t AS SELECT g, md5(g::text) AS pad FROM generate_series(1, 100000) g",
    );
    c
}

/// Whether pg_trace holds the fd of BPF_ENABLE_STATS (`anon_inode:bpf-stats`).
fn holds_stats_fd(pid: u32) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten().any(|e| {
                std::fs::read_link(e.path())
                    .is_ok_and(|l| l.to_string_lossy().contains("bpf-stats"))
            })
        })
        .unwrap_or(false)
}

fn sysctl_stats() -> String {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").unwrap_or_default()
}

/// The common checks of a stats record of a live session.
fn check_self(s: &StatsRecord, what: &str) {
    let cpu = s
        .self_cpu
        .unwrap_or_else(|| panic!("{what}: no self_cpu in {s:?}"));
    assert!(
        (0.0..=2.0 * nproc()).contains(&cpu),
        "{what}: self_cpu {cpu} out of [0, 2·nproc]"
    );
    let rss = s.self_rss_bytes.expect("self_rss_bytes");
    assert!(rss > 1 << 20, "{what}: self_rss_bytes {rss}");
}

/// Scans `t` on the traced backend until a stats record after the first scan says what
/// `want` looks for; returns it.
fn scan_until(
    held: &mut support::HeldBackend,
    tr: &mut Trace,
    what: &str,
    want: impl Fn(&StatsRecord) -> bool,
) -> StatsRecord {
    let t = Instant::now();
    loop {
        let seen = tr.records().len();
        let n: i64 = held
            .client
            .query_one("SELECT count(*) FROM t", &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 100_000);
        // The stats of an interval that saw this scan: those written after it.
        tr.wait_for("a stats record after the scan", |r| {
            r[seen.min(r.len())..].iter().any(|r| stats(r).is_some())
        });
        if let Some(s) = tr.records()[seen..]
            .iter()
            .filter_map(stats)
            .find(|s| want(s))
        {
            return s.clone();
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{what}: no stats record as wanted; last: {:?}",
            tr.records().iter().rev().find_map(stats)
        );
    }
}

/// pg_trace with `--probe-cost`.
fn run(pid: i32, backend: &str) -> Trace {
    run_with(pid, backend, &["--probe-cost"])
}

fn run_with(pid: i32, backend: &str, extra: &[&str]) -> Trace {
    let before = sysctl_stats();
    let mut tr = spawn_trace_with(pid, backend, extra);
    tr.wait_ready();
    assert!(
        tr.records().iter().filter_map(attach).next().is_some(),
        "no attach record"
    );
    assert_eq!(sysctl_stats(), before, "pg_trace changed the sysctl");
    tr
}

fn finish(tr: Trace) -> Vec<Record> {
    let before = sysctl_stats();
    let records = tr.finish();
    // The statistics were the fd's: the sysctl was never touched, and the fd died with
    // the process (finish() reaped it).
    assert_eq!(sysctl_stats(), before);
    records
}

/// eBPF alone, then eBPF + USDT, on the same scan of Debian's PG15.
#[test]
fn probe_cost_with_ebpf_and_usdt_on_pg15() {
    let name = "probe_cost_with_ebpf_and_usdt_on_pg15";
    if !is_root() {
        support::skip(name, "eBPF needs root");
        return;
    }
    if !support::majors().contains(&15) {
        support::skip(name, "PG_TRACE_TEST_MAJORS excludes 15");
        return;
    }
    let c = cluster(15);
    let mut held = c.hold_backend("postgres");

    let mut tr = run(held.pid, "ebpf");
    assert!(
        holds_stats_fd(tr.child.id()),
        "pg_trace does not hold a BPF_ENABLE_STATS fd"
    );
    let s = scan_until(&mut held, &mut tr, "ebpf", |s| {
        s.probe_runs_per_s.is_some_and(|r| r > 0.0) && s.probe_ns_per_s.is_some_and(|n| n > 0.0)
    });
    check_self(&s, "ebpf");
    assert_eq!(s.usdt_runs_per_s, Some(0.0), "no USDT under --backend ebpf");
    let pid = tr.child.id();
    finish(tr);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());

    // auto = ebpf + usdt: the USDT programs' runs are counted (one buffer__read__done
    // per block of the scan at least) and are part of the total.
    let mut tr = run(held.pid, "auto");
    let att = tr.records().iter().find_map(attach).cloned().unwrap();
    assert!(att.usdt.active, "USDT not active on Debian's PG15: {att:?}");
    let s = scan_until(&mut held, &mut tr, "ebpf+usdt", |s| {
        s.usdt_runs_per_s.is_some_and(|r| r > 0.0)
    });
    check_self(&s, "ebpf+usdt");
    let usdt = s.usdt_runs_per_s.unwrap();
    let all = s.probe_runs_per_s.unwrap();
    assert!(all >= usdt, "usdt runs {usdt} not within all runs {all}");
    assert!(s.probe_ns_per_s.is_some_and(|n| n > 0.0), "{s:?}");
    // Summed over the session, the USDT runs cover the blocks of every scan.
    let blocks: f64 = c.psql(
        "postgres",
        "SELECT relpages FROM pg_class WHERE relname = 't'",
    )[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    let records = finish(tr);
    let total_usdt: f64 = {
        // Each record's rate times its interval (200 ms), roughly.
        records
            .iter()
            .filter_map(stats)
            .filter_map(|s| s.usdt_runs_per_s)
            .sum::<f64>()
            * 0.2
    };
    assert!(
        total_usdt > blocks * 0.5,
        "USDT runs ~{total_usdt:.0} for scans of {blocks} blocks"
    );
}

/// An npm build (no USDT): eBPF's probe cost; /proc polling has none, only its own.
#[test]
fn probe_cost_with_ebpf_and_none_with_procfs() {
    let name = "probe_cost_with_ebpf_and_none_with_procfs";
    if !is_root() {
        support::skip(name, "eBPF needs root");
        return;
    }
    let Some(major) = support::majors().into_iter().filter(|&m| m != 15).max() else {
        support::skip(name, "PG_TRACE_TEST_MAJORS has no major but 15");
        return;
    };
    let c = cluster(major);
    let mut held = c.hold_backend("postgres");

    // Without --probe-cost the statistics stay off: no fd, and no figure unless the
    // sysctl was already on (someone else's choice, then used).
    let mut tr = run_with(held.pid, "ebpf", &[]);
    assert!(
        !holds_stats_fd(tr.child.id()),
        "BPF statistics turned on without --probe-cost"
    );
    let s = scan_until(&mut held, &mut tr, "ebpf, no --probe-cost", |s| {
        s.self_cpu.is_some() && s.events > 0
    });
    if sysctl_stats().trim() == "1" {
        support::skip(
            name,
            "kernel.bpf_stats_enabled is 1 on this host: the default's null probe fields \
             cannot be checked",
        );
    } else {
        assert_eq!(
            (s.probe_ns_per_s, s.probe_runs_per_s, s.usdt_runs_per_s),
            (None, None, None),
            "a probe cost without --probe-cost"
        );
    }
    finish(tr);

    let mut tr = run(held.pid, "ebpf");
    assert!(
        holds_stats_fd(tr.child.id()),
        "--probe-cost: no BPF_ENABLE_STATS fd"
    );
    let s = scan_until(&mut held, &mut tr, "ebpf", |s| {
        s.probe_runs_per_s.is_some_and(|r| r > 0.0) && s.probe_ns_per_s.is_some_and(|n| n > 0.0)
    });
    check_self(&s, "ebpf");
    finish(tr);

    let mut tr = run(held.pid, "procfs");
    assert!(!holds_stats_fd(tr.child.id()), "procfs enabled BPF stats");
    let s = scan_until(&mut held, &mut tr, "procfs", |s| s.self_cpu.is_some());
    check_self(&s, "procfs");
    assert_eq!(
        (s.probe_ns_per_s, s.probe_runs_per_s, s.usdt_runs_per_s),
        (None, None, None),
        "procfs runs no BPF"
    );
    finish(tr);
}
