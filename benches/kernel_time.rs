//! What "where the time goes" costs the traced process, in paired runs (each traced run
//! next to an untraced or less traced one, medians, ratios printed):
//!
//! 1. the scheduler tracepoints on a context-switch-heavy workload: a pipe ping-pong
//!    between the two threads of a child process, traced by the eBPF tracer with and
//!    without its scheduler programs (both with the syscall program, so that the ratio is
//!    the scheduler programs' alone), in wall time with the BPF statistics off (as
//!    pg_trace runs by default); then, with the statistics on for that part only, the
//!    program's run time net of an empty program attached to the same tracepoint in the
//!    same run (the statistics' own clock reads); budget 1.02×;
//! 2. the `block_bio_queue` program of `--io-latency`, which runs for every bio of the
//!    machine: O_DIRECT 4 KiB reads of a file by an untraced process (each one bio), with
//!    the tracer's I/O latency programs attached and not (another process traced), in
//!    wall time, and the program's own run time from the BPF statistics;
//! 3. the watchpoint of `--exact-waits`, per wait transition: a backend answering many
//!    `SELECT 1` (each a ClientRead wait begun and ended), under `pg_trace --backend ebpf`
//!    with and without `--exact-waits`.
//!
//! The I/O latency cost on the cache-warm scan is a row of `trace_overhead`.
//!
//!     cargo bench --bench kernel_time
//!     PG_TRACE_BENCH_REPS=9 PG_TRACE_BENCH_ROUNDS=200000 cargo bench --bench kernel_time
//!     PG_TRACE_BENCH_SCHED_ONLY=1 cargo bench --bench kernel_time   # parts 1 and 2 only

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

/// How a ping-pong run is traced.
#[derive(Clone, Copy, PartialEq)]
enum Traced {
    No,
    /// The eBPF tracer without its scheduler programs (the syscall program only).
    NoSched,
    /// The eBPF tracer with them.
    Sched,
    /// With them, plus an empty program on sched_switch: the floor of a program's run
    /// time there under the BPF statistics (their clock reads, the dispatch).
    SchedAndEmpty,
}

/// What the kernel's BPF statistics counted in one run: (run time ns, runs) of the
/// scheduler program and of the empty one.
type ProgCounts = (Option<(u64, u64)>, Option<(u64, u64)>);

/// One ping-pong run, in a fresh child, traced as `how`. Seconds, and (with the BPF
/// statistics on) the programs' counts. `other`: trace that process instead of the
/// ping-pong (what the programs cost the switches they only filter out).
fn ping_pong(rounds: u64, how: Traced, other: Option<i32>) -> (f64, ProgCounts) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, rounds.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = other.unwrap_or(child.id() as i32);
    let mut tracer = match how {
        Traced::No => None,
        Traced::SchedAndEmpty => {
            Some(EbpfTracer::attach_with_empty_sched_program(&[pid]).expect("eBPF (run as root)"))
        }
        Traced::NoSched | Traced::Sched => {
            let mut t = EbpfTracer::attach(&[pid]).expect("eBPF (run as root)");
            if how == Traced::NoSched {
                t.stop_scheduler_times();
            }
            Some(t)
        }
    };
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
    let counts = tracer.as_ref().map_or((None, None), |t| {
        (t.scheduler_program_cost(), t.empty_program_cost())
    });
    drop(tracer);
    (line.trim().parse().unwrap(), counts)
}

/// Net of the empty program: the scheduler program's run time beyond the floor, per
/// round, and per run (ours, the empty one's).
fn net_of_floor(counts: ProgCounts, rounds: u64) -> Option<(f64, f64, f64)> {
    let ((ns, runs), (ens, eruns)) = (counts.0?, counts.1?);
    let per_run = ns as f64 / runs.max(1) as f64;
    let floor = ens as f64 / eruns.max(1) as f64;
    Some((
        (per_run - floor) * runs as f64 / rounds as f64,
        per_run,
        floor,
    ))
}

fn bpf_stats_sysctl_on() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|s| s.trim() == "1")
}

fn sched_bench(reps: usize, rounds: u64) {
    // 1. Wall time with the BPF statistics off, as pg_trace runs by default.
    pg_trace::trace::cost::set_probe_cost(false);
    let sysctl = bpf_stats_sysctl_on();
    let (mut without, mut with, mut untraced) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        untraced.push(ping_pong(rounds, Traced::No, None).0);
        without.push(ping_pong(rounds, Traced::NoSched, None).0);
        with.push(ping_pong(rounds, Traced::Sched, None).0);
    }
    let ratios: Vec<f64> = with.iter().zip(&without).map(|(a, b)| a / b).collect();
    let (u, wo, w) = (median(untraced), median(without), median(with));
    println!(
        "scheduler tracepoints, pipe ping-pong of {rounds} rounds (2 switches each), median of {reps}:"
    );
    println!(
        "  wall time, BPF statistics {}:",
        if sysctl {
            "ON (kernel.bpf_stats_enabled=1 on this host)"
        } else {
            "off (pg_trace's default)"
        }
    );
    println!(
        "  untraced                              {:>8.1} ms ({:.2} µs per round)",
        u * 1e3,
        u / rounds as f64 * 1e6
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
    let (lo, hi) = support::stats::median_interval(&ratios);
    println!(
        "  scheduler programs alone: median paired ratio {:.3}x (95 % interval of the median \
         {lo:.3}-{hi:.3}; budget 1.02x); {:.0} ns per switch",
        median(ratios.clone()),
        (w - wo) / (2.0 * rounds as f64) * 1e9
    );

    // 2. The programs' own run time from the BPF statistics (on for this part only),
    // net of an empty program on the same tracepoint in the same run: the statistics'
    // own clock reads and the dispatch, which pg_trace does not pay by default.
    pg_trace::trace::cost::set_probe_cost(true);
    let (mut net_round, mut ours_run, mut floor_run) = (Vec::new(), Vec::new(), Vec::new());
    let mut filtered = (Vec::new(), Vec::new());
    // An idle process to trace while the ping-pong runs untraced.
    let mut idle = Command::new("sleep").arg("1000000").spawn().unwrap();
    for _ in 0..reps {
        if let Some((r, o, f)) =
            net_of_floor(ping_pong(rounds, Traced::SchedAndEmpty, None).1, rounds)
        {
            net_round.push(r);
            ours_run.push(o);
            floor_run.push(f);
        }
        if let Some((r, o, f)) = net_of_floor(
            ping_pong(rounds, Traced::SchedAndEmpty, Some(idle.id() as i32)).1,
            rounds,
        ) {
            filtered.0.push(r);
            filtered.1.push(o - f);
        }
    }
    pg_trace::trace::cost::set_probe_cost(false);
    let _ = idle.kill();
    let _ = idle.wait();
    if net_round.is_empty() {
        println!("  (no BPF statistics: enabling them needs CAP_SYS_ADMIN)");
        return;
    }
    let (r, o, f) = (median(net_round), median(ours_run), median(floor_run));
    println!("  run time under BPF statistics (every switch of the machine runs the program):");
    println!(
        "  per run: {o:.1} ns ours, {f:.1} ns an empty program (the floor: the statistics' \
         own clock reads and the dispatch): {:.1} ns net",
        o - f
    );
    println!(
        "  net per round: {r:.0} ns, {:.0} ns per switch: {:.4}x of the untraced round \
         (budget 1.02x)",
        r / 2.0,
        1.0 + r / 1e9 / (u / rounds as f64)
    );
    if !filtered.0.is_empty() {
        println!(
            "  ... with the ping-pong not traced (another process is): {:.0} ns net per round, \
             {:.1} ns net per run: what every switch pays, traced or not",
            median(filtered.0),
            median(filtered.1)
        );
    }
}

/// A file of `mib` MiB under target/, written and synced once.
fn bio_file(mib: usize) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("bio-bench.dat");
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == (mib << 20) as u64) {
        return path;
    }
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0x5au8; 1 << 20];
    for _ in 0..mib {
        f.write_all(&block).unwrap();
    }
    f.sync_all().unwrap();
    path
}

/// `reads` O_DIRECT 4 KiB reads at pseudo-random aligned offsets of `path` (each goes to
/// the device as one bio): seconds taken.
fn direct_reads(path: &std::path::Path, reads: u64) -> f64 {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .unwrap();
    let blocks = f.metadata().unwrap().len() / 4096;
    let layout = std::alloc::Layout::from_size_align(4096, 4096).unwrap();
    // SAFETY: a non-zero size; freed below with the same layout.
    let buf = unsafe { std::alloc::alloc(layout) };
    assert!(!buf.is_null());
    let mut x = 0x9e3779b97f4a7c15u64;
    let t = Instant::now();
    for _ in 0..reads {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let off = (x % blocks) * 4096;
        // SAFETY: `buf` holds 4096 writable bytes, aligned for O_DIRECT.
        let n = unsafe { libc::pread(f.as_raw_fd(), buf.cast(), 4096, off as libc::off_t) };
        assert_eq!(
            n,
            4096,
            "O_DIRECT read: {}",
            std::io::Error::last_os_error()
        );
    }
    let secs = t.elapsed().as_secs_f64();
    // SAFETY: allocated above with `layout`, not used after.
    unsafe { std::alloc::dealloc(buf, layout) };
    secs
}

fn bio_bench(reps: usize) {
    let reads = env_num("PG_TRACE_BENCH_BIO_READS", 20_000);
    let path = bio_file(256);
    let mut idle = Command::new("sleep").arg("1000000").spawn().unwrap();
    let traced = |io_latency: bool| {
        let mut t = EbpfTracer::attach(&[idle.id() as i32]).expect("eBPF (run as root)");
        if io_latency {
            t.enable_io_latency().expect("--io-latency programs");
        }
        t
    };
    pg_trace::trace::cost::set_probe_cost(false);
    let (mut off, mut on, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps {
        let t = traced(false);
        let a = direct_reads(&path, reads);
        drop(t);
        let t = traced(true);
        let b = direct_reads(&path, reads);
        drop(t);
        off.push(a);
        on.push(b);
        ratios.push(b / a);
    }
    let (a, b) = (median(off), median(on));
    println!("block_bio_queue (--io-latency), {reads} O_DIRECT 4 KiB reads by an untraced process, median of {reps}:");
    println!(
        "  I/O latency programs off  {:>8.1} ms ({:.1} µs per read)",
        a * 1e3,
        a / reads as f64 * 1e6
    );
    let (lo, hi) = support::stats::median_interval(&ratios);
    println!(
        "  I/O latency programs on   {:>8.1} ms; median paired ratio {:.3}x (95 % interval \
         {lo:.3}-{hi:.3})",
        b * 1e3,
        median(ratios)
    );
    // The program's own time per bio, with the statistics on for this part only.
    pg_trace::trace::cost::set_probe_cost(true);
    let mut per_run = Vec::new();
    let mut runs_per_read = Vec::new();
    for _ in 0..reps.min(3) {
        let t = traced(true);
        direct_reads(&path, reads);
        if let Some((ns, runs)) = t.bio_program_cost() {
            per_run.push(ns as f64 / runs.max(1) as f64);
            runs_per_read.push(runs as f64 / reads as f64);
        }
    }
    pg_trace::trace::cost::set_probe_cost(false);
    let _ = idle.kill();
    let _ = idle.wait();
    if per_run.is_empty() {
        println!("  (no BPF statistics, or no block_bio_queue program on this kernel)");
        return;
    }
    let (ns, rpr) = (median(per_run), median(runs_per_read));
    println!(
        "  run time under BPF statistics: {ns:.1} ns per run (their own clock reads included), \
         {:.2} runs per read: {:.4}x of a read",
        rpr,
        1.0 + ns * 1e-9 * rpr / (a / reads as f64)
    );
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
    bio_bench(reps);
    // PG_TRACE_BENCH_SCHED_ONLY=1: the kernel parts alone (no cluster).
    if env_num("PG_TRACE_BENCH_SCHED_ONLY", 0) == 0 {
        exact_waits_bench(reps.min(5));
    }
}
