//! What the wait profile costs (issue 14, part 6), on Debian's PostgreSQL 15:
//!
//! 1. pg_trace's side: `pg_trace ps --waits` sampling 100 pgbench backends (rate-limited
//!    to 1000 transactions/s in all, so their queries keep changing) at 100 Hz. Its CPU
//!    (utime+stime of the reaped child) over an 11 s window minus a 1 s window, over the 10 s
//!    between them: the steady cost, startup (symbols, the first scan) apart; printed as a
//!    share of one core against the 1 % budget.
//! 2. The backends' side: pgbench select-only TPS (8 clients) with and without
//!    `ps --waits` sampling them, in `PG_TRACE_BENCH_PAIRS` pairs (default 4; the order
//!    within a pair alternated) in the same run; the median paired ratio and its spread.
//!
//! `PG_TRACE_BENCH_BASELINE=/path/to/older/pg_trace` measures that binary too, alternated
//! with this one `PG_TRACE_BENCH_REPS` times (default 1) over the same backends: a
//! before/after in the same run.
//!
//! Run:
//!
//!     cargo bench --bench waits_cost
//!     PG_TRACE_BENCH_SECS=20 cargo bench --bench waits_cost

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_pg_trace");
const BUDGET: f64 = 0.01;

fn pgbench(c: &support::Cluster, args: &[&str]) -> Command {
    let mut cmd = Command::new(c.bin_dir().join("pgbench"));
    cmd.args(["-h"])
        .arg(&c.sockdir)
        .args(["-p", &c.port.to_string(), "-U", "postgres", "-n"])
        .args(args)
        .arg("postgres");
    cmd
}

/// Run `pg_trace ps --waits SECS` (the binary `bin`) to its end; its CPU seconds (user +
/// system).
fn waits_cpu(c: &support::Cluster, bin: &str, secs: f64) -> f64 {
    let children = || {
        // SAFETY: rusage is plain data, filled by getrusage.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: a valid pointer to our own rusage.
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    };
    let before = children();
    // The only child reaped meanwhile: the difference is its CPU.
    let status = Command::new(bin)
        .args([
            "ps",
            "--waits",
            &secs.to_string(),
            "--sample-hz",
            "100",
            "--pgdata",
        ])
        .arg(&c.datadir)
        .stdout(Stdio::null())
        .status()
        .expect("run pg_trace");
    assert!(status.success(), "pg_trace ps --waits failed");
    children() - before
}

fn tps(out: &std::process::Output) -> f64 {
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            let l = l.trim_start();
            let v = l.strip_prefix("tps = ")?;
            v.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no tps in pgbench output: {text}"))
}

fn main() {
    // `cargo test --all-targets` runs this binary too: measure only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("waits_cost: benchmark only runs under `cargo bench`");
        return;
    }
    let secs: u64 = std::env::var("PG_TRACE_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let mut c = support::Cluster::start_with(15, &[("max_connections", "130")]);
    let init = pgbench(&c, &["-i", "-s", "2"])
        .output()
        .expect("pgbench -i");
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );

    // 1. pg_trace's CPU with 100 backends (and a baseline binary's, alternated).
    let baseline = std::env::var("PG_TRACE_BENCH_BASELINE").ok();
    let reps: u64 = std::env::var("PG_TRACE_BENCH_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let bins: Vec<&str> = std::iter::once(BIN).chain(baseline.as_deref()).collect();
    let total = (secs + 12) * reps * bins.len() as u64;
    let mut load: Child = pgbench(
        &c,
        &[
            "-S",
            "-c",
            "100",
            "-j",
            "2",
            "-R",
            "1000",
            "-T",
            &total.to_string(),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("pgbench");
    support::status::wait_until("100 pgbench backends", Duration::from_secs(30), || {
        c.psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbench'",
        )[0][0]
            .as_deref()
            .and_then(|v| v.parse::<u32>().ok())
            .is_some_and(|n| n >= 100)
    });
    let mut steady: Vec<Vec<f64>> = vec![Vec::new(); bins.len()];
    for _ in 0..reps {
        for (i, bin) in bins.iter().enumerate() {
            let short = waits_cpu(&c, bin, 1.0);
            let long = waits_cpu(&c, bin, 1.0 + secs as f64);
            steady[i].push((long - short).max(0.0) / secs as f64);
        }
    }
    let _ = load.kill();
    let _ = load.wait();
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let pct = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{:.2}", 100.0 * x))
            .collect::<Vec<_>>()
    };
    let now = median(&steady[0]);
    println!(
        "waits_cost: 100 backends at 100 Hz: pg_trace {:.2} % of one core steady (median of \
         {reps}: {:?} %; {secs} s windows), budget {:.0} %: {}",
        100.0 * now,
        pct(&steady[0]),
        100.0 * BUDGET,
        if now <= BUDGET { "ok" } else { "OVER" }
    );
    if let Some(b) = &baseline {
        let before = median(&steady[1]);
        println!(
            "waits_cost: baseline {b}: {:.2} % ({:?} %), this build {:.2}x of it",
            100.0 * before,
            pct(&steady[1]),
            now / before.max(1e-9)
        );
    }

    // 2. The backends' throughput with and without sampling.
    let run = |sampled: bool| -> f64 {
        let sampler = sampled.then(|| {
            Command::new(BIN)
                .args(["ps", "--waits", &(secs + 5).to_string(), "--pgdata"])
                .arg(&c.datadir)
                .stdout(Stdio::null())
                .spawn()
                .expect("spawn pg_trace")
        });
        let out = pgbench(&c, &["-S", "-c", "8", "-j", "2", "-T", &secs.to_string()])
            .output()
            .expect("pgbench");
        if let Some(mut s) = sampler {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(s.id() as i32, libc::SIGINT) };
            let _ = s.wait();
        }
        tps(&out)
    };
    // Pairs, each run without next to one with, the order alternated from pair to pair
    // (the VM's speed drifts over a run): the ratio of each pair, their median and spread.
    let pairs: usize = std::env::var("PG_TRACE_BENCH_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
        .max(1);
    let (mut without, mut with, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..pairs {
        let (a, b) = if i % 2 == 0 {
            let a = run(false);
            (a, run(true))
        } else {
            let b = run(true);
            (run(false), b)
        };
        without.push(a);
        with.push(b);
        ratios.push(b / a);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (lo, hi) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), &r| (l.min(r), h.max(r)));
    println!(
        "waits_cost: pgbench -S -c 8 TPS: {:.0} without, {:.0} with sampling at 100 Hz: \
         median paired ratio {:.3} ({pairs} pairs, {:.3}..{:.3}; runs without {:?}, with {:?})",
        mean(&without),
        mean(&with),
        median(&ratios),
        lo,
        hi,
        without.iter().map(|v| v.round()).collect::<Vec<_>>(),
        with.iter().map(|v| v.round()).collect::<Vec<_>>()
    );
    c.stop();
}
