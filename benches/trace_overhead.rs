//! What tracing costs the traced backend: the same cache-warm sequential scan untraced,
//! under `pg_trace --backend ebpf` (also with `--io-latency`), `--backend usdt`, `auto` (ebpf + usdt), `--backend
//! ptrace`, `--backend procfs`, and under strace, a few repetitions each; prints medians
//! and ratios to untraced.
//!
//!     cargo bench --bench trace_overhead
//!     PG_TRACE_BENCH_ROWS=2000000 PG_TRACE_BENCH_REPS=5 cargo bench --bench trace_overhead
//!     PG_TRACE_BENCH_MODES=ebpf,usdt cargo bench --bench trace_overhead   # those rows only
//!
//! On a shared machine whose load drifts, `PG_TRACE_BENCH_PAIRED=1` also scans untraced
//! right before each traced row and prints each row's ratio to that adjacent baseline.
//!
//! `PG_TRACE_BENCH_BASELINE_BIN=/path/to/older/pg_trace` adds that binary's rows to the same
//! run, to compare two builds on a machine whose load drifts.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pg_trace");

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn wait_attached(child: &mut Child, pid: i32, how: &str) {
    // Attachment is visible from outside: ptrace/strace set TracerPid; for the others we wait
    // for pg_trace's first output line (it prints the attach record once attached).
    let t = Instant::now();
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let traced = !status.contains("TracerPid:\t0");
        if (how == "ptrace" || how == "strace") && traced {
            return;
        }
        if how != "ptrace" && how != "strace" && t.elapsed() > Duration::from_millis(1500) {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "{how}: tracer exited early"
        );
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{how}: never attached"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("trace_overhead: benchmark only runs under `cargo bench`");
        return;
    }
    let rows = env_num("PG_TRACE_BENCH_ROWS", 2_000_000);
    let reps = env_num("PG_TRACE_BENCH_REPS", 5) as usize;
    let major = env_num("PG_TRACE_BENCH_MAJOR", 15) as u32;
    let c = support::Cluster::start_with(
        major,
        &[
            ("shared_buffers", "16MB"),
            ("synchronize_seqscans", "off"),
            ("max_parallel_workers_per_gather", "0"),
            ("jit", "off"),
        ],
    );
    c.execute(
        "postgres",
        &format!(
            "CREATE TABLE scan AS SELECT g, md5(g::text) AS m FROM generate_series(1, {rows}) g"
        ),
    );
    c.execute("postgres", "VACUUM ANALYZE scan");
    let size: i64 = c.psql("postgres", "SELECT pg_relation_size('scan')")[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    let mut held = c.hold_backend("postgres");
    let pid = held.pid;
    let mut scan = || {
        let t = Instant::now();
        let n: i64 = held
            .client
            .query_one("SELECT count(*) FROM scan", &[])
            .unwrap()
            .get(0);
        assert_eq!(n as u64, rows);
        t.elapsed()
    };
    for _ in 0..2 {
        scan(); // warm the page cache
    }
    let argv = |words: &[&str]| Some(words.iter().map(|w| w.to_string()).collect::<Vec<_>>());
    let p = pid.to_string();
    // A second binary (an earlier build) measured in the same run, row after row, so
    // a refactor's effect on overhead is not lost in this machine's drift.
    let other_bin = std::env::var("PG_TRACE_BENCH_BASELINE_BIN").ok();
    let pg_trace_with = |bin: &str, backend| {
        argv(&[
            bin,
            "-p",
            &p,
            "--no-tui",
            "--format",
            "json",
            "--backend",
            backend,
        ])
    };
    let pg_trace = |backend| pg_trace_with(BIN, backend);
    // The flight recorder on top (issue 13: it may add at most 0.01x).
    let rec_dir = tempfile::tempdir().unwrap();
    let recording = |backend: &'static str| {
        let mut v = pg_trace(backend).unwrap();
        v.push("--force".into());
        v.push("--record".into());
        v.push(
            rec_dir
                .path()
                .join(format!("{backend}.pgtrace"))
                .to_string_lossy()
                .into_owned(),
        );
        Some(v)
    };
    let mut modes: Vec<(String, Option<Vec<String>>)> = vec![
        ("untraced".into(), None),
        ("pg_trace --backend ebpf".into(), pg_trace("ebpf")),
        ("pg_trace --backend ebpf --io-latency".into(), {
            let mut v = pg_trace("ebpf").unwrap();
            v.push("--io-latency".into());
            Some(v)
        }),
        ("pg_trace --backend usdt".into(), pg_trace("usdt")),
        (
            "pg_trace --backend auto (ebpf+usdt)".into(),
            pg_trace("auto"),
        ),
        (
            "pg_trace --backend ebpf --record FILE".into(),
            recording("ebpf"),
        ),
        (
            "pg_trace --backend auto (ebpf+usdt) --record FILE".into(),
            recording("auto"),
        ),
        ("pg_trace --backend ptrace".into(), pg_trace("ptrace")),
        ("pg_trace --backend procfs".into(), pg_trace("procfs")),
        (
            "strace -e trace=openat,close,read,pread64,lseek".into(),
            argv(&[
                "strace",
                "-f",
                "-e",
                "trace=openat,close,read,pread64,lseek",
                "-p",
                &p,
                "-o",
                "/dev/null",
            ]),
        ),
    ];
    if let Some(other) = &other_bin {
        for backend in ["ebpf", "usdt", "auto", "ptrace", "procfs"] {
            modes.push((
                format!("baseline binary --backend {backend}"),
                pg_trace_with(other, backend),
            ));
        }
    }
    // Rows whose name contains one of these words (untraced always runs: it is the base).
    let only: Option<Vec<String>> = std::env::var("PG_TRACE_BENCH_MODES")
        .ok()
        .map(|s| s.split(',').map(|w| w.trim().to_string()).collect());
    let modes: Vec<_> = modes
        .into_iter()
        .filter(|(name, cmd)| {
            cmd.is_none()
                || only
                    .as_ref()
                    .map_or(true, |o| o.iter().any(|w| name.contains(w.as_str())))
        })
        .collect();
    let paired = std::env::var_os("PG_TRACE_BENCH_PAIRED").is_some();
    let mut results = Vec::new();
    // The tracer's own CPU (user + system ticks) over the timed scans.
    let mut cpus: Vec<u64> = Vec::new();
    let mut baselines: Vec<Option<Duration>> = Vec::new();
    for (name, cmd) in &modes {
        baselines
            .push((paired && cmd.is_some()).then(|| median((0..reps).map(|_| scan()).collect())));
        let mut child = cmd.as_ref().map(|argv| {
            let mut ch = Command::new(&argv[0])
                .args(&argv[1..])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            wait_attached(
                &mut ch,
                pid,
                if name.contains("ptrace") {
                    "ptrace"
                } else if name.starts_with("strace") {
                    "strace"
                } else {
                    "other"
                },
            );
            ch
        });
        let cpu0 = child.as_ref().map_or(0, |c| cpu_ticks(c.id()));
        let times: Vec<Duration> = (0..reps).map(|_| scan()).collect();
        let cpu = child
            .as_ref()
            .map_or(0, |c| cpu_ticks(c.id()))
            .saturating_sub(cpu0);
        cpus.push(cpu);
        if let Some(ch) = child.as_mut() {
            // SAFETY: SIGINT to a child we spawned and have not reaped.
            unsafe { libc::kill(ch.id() as i32, libc::SIGINT) };
            let st = ch.wait().unwrap();
            assert!(st.success() || name.starts_with("strace"), "{name}: {st}");
        }
        results.push((name.to_string(), median(times)));
    }
    let base = results[0].1.as_secs_f64();
    let preads = size as f64 / 8192.0;
    println!(
        "trace overhead, PostgreSQL {major}, cache-warm seq scan of {} MiB ({} pread64 per scan, {:.0}k/s untraced), median of {reps}:",
        size >> 20,
        preads as u64,
        preads / base / 1000.0
    );
    let tick_ms = 1000.0 / clk_tck();
    for (((name, d), pair), cpu) in results.iter().zip(&baselines).zip(&cpus) {
        print!(
            "  {name:<50} {:>8.1} ms  {:.2}x  tracer CPU {:>6.1} ms/scan",
            d.as_secs_f64() * 1e3,
            d.as_secs_f64() / base,
            *cpu as f64 * tick_ms / reps as f64
        );
        match pair {
            Some(b) => println!(
                "   (untraced just before: {:.1} ms, {:.2}x)",
                b.as_secs_f64() * 1e3,
                d.as_secs_f64() / b.as_secs_f64()
            ),
            None => println!(),
        }
    }
    // Each row's ratio: to its adjacent untraced run when paired (this machine's load
    // drifts), else to the first.
    let row = |n: &str| {
        let i = results.iter().position(|(name, _)| name == n)?;
        let d = results[i].1.as_secs_f64();
        Some(baselines[i].map_or(d / base, |b| d / b.as_secs_f64()))
    };
    for (plain, rec) in [
        (
            "pg_trace --backend ebpf",
            "pg_trace --backend ebpf --record FILE",
        ),
        (
            "pg_trace --backend auto (ebpf+usdt)",
            "pg_trace --backend auto (ebpf+usdt) --record FILE",
        ),
    ] {
        if let (Some(a), Some(b)) = (row(plain), row(rec)) {
            println!(
                "  recording adds {:+.3}x to `{plain}` (budget +0.01x)",
                b - a
            );
        }
        let cpu = |n: &str| {
            let i = results.iter().position(|(name, _)| name == n)?;
            Some(cpus[i] as f64 * tick_ms / reps as f64)
        };
        if let (Some(a), Some(b)) = (cpu(plain), cpu(rec)) {
            println!(
                "  recording adds {:+.1} ms of pg_trace CPU per scan to `{plain}`",
                b - a
            );
        }
    }
    // The recorder's budget, paired: `--backend ebpf` without and with `--record`,
    // alternated, each pair's ratio of the backend's CPU time per scan and of wall time.
    let pairs = env_num("PG_TRACE_BENCH_RECORD_PAIRS", 6) as usize;
    if pairs == 0
        || only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|w| w == "record"))
    {
        return;
    }
    let mut one = |cmd: &[String]| {
        let mut ch = Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pg_trace");
        wait_attached(&mut ch, pid, "other");
        let (mut cpu, mut wall) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let c0 = backend_cpu_ns(pid);
            wall.push(scan().as_secs_f64());
            cpu.push(backend_cpu_ns(pid).saturating_sub(c0) as f64);
        }
        // SAFETY: SIGINT to a child we spawned and have not reaped.
        unsafe { libc::kill(ch.id() as i32, libc::SIGINT) };
        let _ = ch.wait();
        (median_f(cpu), median_f(wall))
    };
    let plain = pg_trace("ebpf").unwrap();
    let rec = recording("ebpf").unwrap();
    let (mut cpu_r, mut wall_r, mut cpu_ms) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..pairs {
        // Alternate which goes first, so that a drift does not favour one side.
        let (a, b) = if i % 2 == 0 {
            let a = one(&plain);
            (a, one(&rec))
        } else {
            let b = one(&rec);
            (one(&plain), b)
        };
        cpu_r.push(b.0 / a.0);
        wall_r.push(b.1 / a.1);
        cpu_ms.push((a.0 / 1e6, b.0 / 1e6));
    }
    let range = |v: &[f64]| {
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lo, hi)
    };
    let (clo, chi) = range(&cpu_r);
    let (wlo, whi) = range(&wall_r);
    println!(
        "recording, {pairs} alternated pairs of `--backend ebpf` without and with `--record` \
         ({reps} scans each, medians):"
    );
    let (cilo, cihi) = support::stats::median_interval(&cpu_r);
    let (wilo, wihi) = support::stats::median_interval(&wall_r);
    println!(
        "  the backend's CPU time per scan: with/without {:.3}x median (95 % interval of the \
         median {cilo:.3}-{cihi:.3}; range {clo:.3}-{chi:.3}; budget +0.01x); ms per scan \
         {cpu_ms:.1?}",
        median_f(cpu_r.clone())
    );
    println!(
        "  wall time per scan: with/without {:.3}x median (95 % interval {wilo:.3}-{wihi:.3}; \
         range {wlo:.3}-{whi:.3})",
        median_f(wall_r.clone())
    );
}

/// The backend's own time on a CPU, in ns (`/proc/PID/schedstat`'s first field): what the
/// tracer's probes, which run in the backend's context, add to; unlike wall time, it does
/// not move with what else runs on the machine (the recorder's work is in pg_trace's
/// threads, on whatever CPU is free).
fn backend_cpu_ns(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's closing parenthesis: utime and stime are the 12th
    // and 13th of them (fields 14 and 15 of the line).
    let rest = s.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}
