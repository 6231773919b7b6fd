//! What "where the time goes" costs the traced process, in paired runs (each traced run
//! next to an untraced or less traced one, medians, ratios printed):
//!
//! 1. the scheduler tracepoints on a context-switch-heavy workload: a pipe ping-pong
//!    between the two threads of a child process, traced by the eBPF tracer with and
//!    without its scheduler programs (both with the syscall program, so that the ratio is
//!    the scheduler programs' alone); budget 1.02×;
//! 2. the watchpoint of `--exact-waits`, per wait transition: a backend answering many
//!    `SELECT 1` (each a ClientRead wait begun and ended), under `pg_trace --backend ebpf`
//!    with and without `--exact-waits`.
//!
//! The I/O latency cost on the cache-warm scan is a row of `trace_overhead`.
//!
//!     cargo bench --bench kernel_time
//!     PG_TRACE_BENCH_REPS=9 PG_TRACE_BENCH_ROUNDS=200000 cargo bench --bench kernel_time
//!     PG_TRACE_BENCH_SCHED_ONLY=1 cargo bench --bench kernel_time   # part 1 only

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pg_trace::trace::ebpf::EbpfTracer;
use pg_trace::trace::Tracer;

const BIN: &str = env!("CARGO_BIN_EXE_pg_trace");
const CHILD_ENV: &str = "PG_TRACE_PINGPONG_ROUNDS";

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A pipe's read and write ends.
fn pipe() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let mut fds = [0i32; 2];
    // SAFETY: pipe(2) writes two new fds into the array we own.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    // SAFETY: both fds were just created and are owned by nobody else.
    unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    }
}

/// The child: two threads pass a byte back and forth through two pipes `rounds` times
/// (two context switches per round), after a byte on stdin; prints the seconds taken.
fn ping_pong_child(rounds: u64) {
    let mut go = [0u8; 1];
    std::io::stdin().read_exact(&mut go).unwrap();
    let (mut a_r, mut a_w) = pipe();
    let (mut b_r, mut b_w) = pipe();
    let t = Instant::now();
    let other = std::thread::spawn(move || {
        let mut buf = [0u8; 1];
        for _ in 0..rounds {
            a_r.read_exact(&mut buf).unwrap();
            b_w.write_all(&buf).unwrap();
        }
    });
    let mut buf = [7u8; 1];
    for _ in 0..rounds {
        a_w.write_all(&buf).unwrap();
        b_r.read_exact(&mut buf).unwrap();
    }
    other.join().unwrap();
    println!("{}", t.elapsed().as_secs_f64());
}

/// One ping-pong run, in a fresh child; `trace`: with the eBPF tracer (and `sched`: its
/// scheduler programs) on it. Seconds, and the tracer's programs' run time in
/// nanoseconds as the kernel counts it (BPF statistics; None when it does not), and
/// the scheduler programs' own (run time ns, runs). `other`: trace that process instead of
/// the ping-pong (what the programs cost the switches they only filter out).
fn ping_pong(
    rounds: u64,
    trace: Option<bool>,
    other: Option<i32>,
) -> (f64, Option<u64>, Option<(u64, u64)>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, rounds.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = other.unwrap_or(child.id() as i32);
    let mut tracer = trace.map(|sched| {
        let mut t = EbpfTracer::attach(&[pid]).expect("eBPF (run as root)");
        if !sched {
            t.stop_scheduler_times();
        }
        t
    });
    child.stdin.take().unwrap().write_all(b"g").unwrap();
    let mut line = String::new();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    // Drained while it runs, as pg_trace would.
    let mut events = Vec::new();
    std::thread::scope(|s| {
        let reader = s.spawn(|| out.read_line(&mut line).unwrap());
        let mut polls = 0u32;
        while !reader.is_finished() {
            if let Some(t) = tracer.as_mut() {
                events.clear();
                let _ = t.poll(&mut events);
                // A tick a second (pg_trace's default interval) reads the times.
                polls += 1;
                if polls % 10 == 0 {
                    t.kernel_times(&mut events);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    child.wait().unwrap();
    let run_ns = tracer.as_ref().and_then(|t| match t.probe_cost() {
        pg_trace::trace::cost::ProbeCost::Measured(r) => Some(r.run_time_ns),
        _ => None,
    });
    let sched = tracer.as_ref().and_then(|t| t.scheduler_program_cost());
    drop(tracer);
    (line.trim().parse().unwrap(), run_ns, sched)
}

fn sched_bench(reps: usize, rounds: u64) {
    let (mut without, mut with, mut untraced) = (Vec::new(), Vec::new(), Vec::new());
    // The programs' own run time (kernel BPF statistics): less noisy than wall time on a
    // shared host, though it leaves out the trampoline's entry and exit.
    let (mut prog_without, mut prog_with) = (Vec::new(), Vec::new());
    // The scheduler programs alone: ns per round trip, ns per run.
    let (mut sched_round, mut sched_run) = (Vec::new(), Vec::new());
    let mut filtered_round = Vec::new();
    // An idle process to trace while the ping-pong runs untraced.
    let mut idle = Command::new("sleep").arg("1000000").spawn().unwrap();
    for _ in 0..reps {
        untraced.push(ping_pong(rounds, None, None).0);
        if let (_, _, Some((ns, _))) = ping_pong(rounds, Some(true), Some(idle.id() as i32)) {
            filtered_round.push(ns as f64 / rounds as f64);
        }
        let (t, p, _) = ping_pong(rounds, Some(false), None);
        without.push(t);
        prog_without.extend(p.map(|p| p as f64));
        let (t, p, s) = ping_pong(rounds, Some(true), None);
        with.push(t);
        prog_with.extend(p.map(|p| p as f64));
        if let Some((ns, runs)) = s {
            sched_round.push(ns as f64 / rounds as f64);
            sched_run.push(ns as f64 / runs.max(1) as f64);
        }
    }
    let ratios: Vec<f64> = with.iter().zip(&without).map(|(a, b)| a / b).collect();
    let (u, wo, w) = (median(untraced), median(without), median(with));
    println!(
        "scheduler tracepoints, pipe ping-pong of {rounds} rounds (2 switches each), median of {reps}:"
    );
    println!(
        "  untraced                              {:>8.1} ms",
        u * 1e3
    );
    println!(
        "  eBPF tracer, no scheduler programs    {:>8.1} ms  {:.3}x untraced",
        wo * 1e3,
        wo / u
    );
    println!(
        "  eBPF tracer with scheduler programs   {:>8.1} ms  {:.3}x untraced",
        w * 1e3,
        w / u
    );
    println!(
        "  scheduler programs alone: median paired ratio {:.3}x (budget 1.02x); {:.0} ns per switch",
        median(ratios),
        (w - wo) / (2.0 * rounds as f64) * 1e9
    );
    if !prog_with.is_empty() && !prog_without.is_empty() {
        let (pw, pwo) = (median(prog_with), median(prog_without));
        println!(
            "  BPF run time per round (kernel statistics): {:.0} ns with, {:.0} ns without: \
             the scheduler programs {:.0} ns per switch, {:.3}x of the untraced round",
            pw / rounds as f64,
            pwo / rounds as f64,
            (pw - pwo) / (2.0 * rounds as f64),
            1.0 + (pw - pwo) / 1e9 / u
        );
    }
    if !sched_round.is_empty() {
        // Every switch and wakeup of the machine runs them, traced or not: the figure
        // per round includes the other processes' switches meanwhile.
        let (r, n) = (median(sched_round), median(sched_run));
        println!(
            "  scheduler programs' own run time (kernel statistics, all switches of the machine): \
             {:.0} ns per round, {:.0} ns per switch, {:.1} ns per run; {:.3}x of the untraced round",
            r,
            r / 2.0,
            n,
            1.0 + r / 1e9 / (u / rounds as f64)
        );
    }
    let _ = idle.kill();
    let _ = idle.wait();
    if !filtered_round.is_empty() {
        println!(
            "  ... with the ping-pong not traced (another process is): {:.0} ns per round: \
             the part of the above that every switch pays, traced or not",
            median(filtered_round)
        );
    }
}

fn exact_waits_bench(reps: usize) {
    let major = env_num("PG_TRACE_BENCH_MAJOR", 15) as u32;
    let queries = env_num("PG_TRACE_BENCH_QUERIES", 5000);
    let c = support::Cluster::start(major);
    let mut held = c.hold_backend("postgres");
    let pid = held.pid;
    let mut run = || {
        let t = Instant::now();
        for _ in 0..queries {
            held.client.simple_query("SELECT 1").unwrap();
        }
        t.elapsed().as_secs_f64()
    };
    let trace = |exact: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(["-p", &pid.to_string(), "--no-tui", "--format", "json"])
            .args(["--backend", "ebpf", "--no-usdt", "--interval", "200"]);
        if exact {
            cmd.arg("--exact-waits");
        }
        let mut ch = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Everything is on once the first interval is out (stdout is flushed per
        // interval).
        let mut out = std::io::BufReader::new(ch.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("\"type\":\"stats\"") {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "pg_trace ended early"
            );
        }
        (ch, out)
    };
    let stop = |(mut ch, mut out): (std::process::Child, std::io::BufReader<_>)| {
        // SAFETY: SIGINT to a child we spawned and have not reaped.
        unsafe { libc::kill(ch.id() as i32, libc::SIGINT) };
        let mut rest = String::new();
        out.read_to_string(&mut rest).unwrap();
        assert!(ch.wait().unwrap().success());
        // Waits begun (each one, a start and an end: two transitions).
        rest.lines()
            .rfind(|l| l.contains("\"type\":\"waits\"") && l.contains("\"scope\":\"total\""))
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .and_then(|v| {
                v["exact"].as_array().map(|a| {
                    a.iter()
                        .map(|e| e["count"].as_u64().unwrap_or(0))
                        .sum::<u64>()
                })
            })
            .unwrap_or(0)
    };
    let (mut plain, mut exact, mut waits) = (Vec::new(), Vec::new(), 0);
    for _ in 0..reps {
        let t = trace(false);
        plain.push(run());
        stop(t);
        let t = trace(true);
        exact.push(run());
        waits = stop(t);
    }
    let (p, e) = (median(plain), median(exact));
    let transitions = (2 * waits).max(1) as f64;
    println!(
        "exact waits, PostgreSQL {major}, {queries} x SELECT 1 (a ClientRead wait each), median of {reps}:"
    );
    println!(
        "  pg_trace --backend ebpf               {:>8.1} ms",
        p * 1e3
    );
    println!(
        "  ... --exact-waits                     {:>8.1} ms  {:.2}x",
        e * 1e3,
        e / p
    );
    println!(
        "  {waits} waits seen in the last run: {:.1} µs per wait transition",
        (e - p) / transitions * 1e6
    );
}

fn main() {
    if let Ok(rounds) = std::env::var(CHILD_ENV) {
        ping_pong_child(rounds.parse().unwrap());
        return;
    }
    if !std::env::args().any(|a| a == "--bench") {
        println!("kernel_time: benchmark only runs under `cargo bench`");
        return;
    }
    let reps = env_num("PG_TRACE_BENCH_REPS", 7) as usize;
    sched_bench(reps, env_num("PG_TRACE_BENCH_ROUNDS", 100_000));
    // PG_TRACE_BENCH_SCHED_ONLY=1: the scheduler part alone (no cluster).
    if env_num("PG_TRACE_BENCH_SCHED_ONLY", 0) == 0 {
        exact_waits_bench(reps.min(5));
    }
}
