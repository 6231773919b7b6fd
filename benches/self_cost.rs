//! What pg_trace itself costs while it traces a busy backend: its CPU (share of one core)
//! and its peak resident memory, measured from outside (`/proc/PID/stat` utime+stime over
//! the traced window, `/proc/PID/status` VmHWM), next to what it says of itself in its
//! `stats` records (`self_cpu`, `self_rss_bytes`, `probe_ns_per_s`), on a cache-warm
//! `count(*)` run over and over by one backend of Debian's PostgreSQL 15 (USDT probes).
//!
//!     cargo bench --bench self_cost
//!     PG_TRACE_BENCH_MODES=ebpf,auto PG_TRACE_BENCH_SECS=8 cargo bench --bench self_cost
//!
//! Budgets (issue 12): ≤ 5 % of one core at 300k events/s, peak RSS ≤ 64 MiB with
//! ebpf+usdt. Each mode is measured twice: on the scanning backend, and on an idle one
//! (what pg_trace costs per interval whatever the rate: status sampling, catalog checks).
//! The difference over the difference in events is the cost per event; the projection to
//! 300k events/s is idle + 300k × per event.

#[path = "../tests/support/mod.rs"]
mod support;

use pg_trace::output::record::Record;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pg_trace");
const BUDGET_CPU: f64 = 0.05;
const BUDGET_RATE: f64 = 300_000.0;
const BUDGET_RSS: u64 = 64 << 20;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// utime + stime of a process, in seconds.
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the ")" that ends the command name: state is field 3; utime, stime 14, 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / hz
}

fn status_kib(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

struct Row {
    mode: String,
    events_per_s: f64,
    cpu: f64,
    self_cpu: Option<f64>,
    probe_ns_per_s: Option<f64>,
    hwm: u64,
    rss_said: Option<u64>,
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("self_cost: benchmark only runs under `cargo bench`");
        return;
    }
    let secs = env_num("PG_TRACE_BENCH_SECS", 6);
    let rows = env_num("PG_TRACE_BENCH_ROWS", 2_000_000);
    let modes: Vec<String> = std::env::var("PG_TRACE_BENCH_MODES")
        .unwrap_or_else(|_| "ebpf,auto".into())
        .split(',')
        .map(str::to_string)
        .collect();
    let c = support::Cluster::start_with(
        15,
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
    let held = c.hold_backend("postgres");
    let pid = held.pid;
    // The scans run on their own thread for the whole bench: the backend stays busy.
    let stop = Arc::new(AtomicBool::new(false));
    let scanner = {
        let stop = Arc::clone(&stop);
        let mut client = held.client;
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                client.query_one("SELECT count(*) FROM scan", &[]).unwrap();
            }
        })
    };
    std::thread::sleep(Duration::from_secs(2)); // the page cache warms

    let idle = c.hold_backend("postgres");
    // PG_TRACE_BENCH_BASELINE=PATH: another pg_trace binary (an older build) measured in
    // turn with this one, mode by mode, so that the machine's drift hits both alike.
    let baseline = std::env::var("PG_TRACE_BENCH_BASELINE").ok();
    let bins: Vec<(&str, &str)> = std::iter::once(("", BIN))
        .chain(baseline.as_deref().map(|b| (" (baseline)", b)))
        .collect();
    let mut out = Vec::new();
    for mode in &modes {
        for (tag, bin) in &bins {
            // A baseline older than --probe-cost turns the statistics on by itself (and
            // does not know the flag).
            let flag = tag.is_empty();
            let mut busy = measure(bin, pid, mode, secs, flag);
            let quiet = measure(bin, idle.pid, mode, secs, flag);
            busy.mode = format!("{mode}{tag}");
            out.push((busy, quiet));
        }
    }
    stop.store(true, Ordering::Relaxed);
    scanner.join().unwrap();

    println!(
        "\npg_trace's own cost, PostgreSQL 15, cache-warm count(*) of {rows} rows in a loop, \
         {secs} s window after attach:\n"
    );
    println!(
        "| backend | events/s | CPU (outside) | self_cpu (said) | idle backend: CPU | ns per event | at 300k events/s | probe time (said) | peak RSS | self_rss_bytes (said) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (r, q) in &out {
        // CPU = fixed (per interval: status sample, catalog checks) + per event × rate.
        let per_event = if r.events_per_s > q.events_per_s {
            (r.cpu - q.cpu).max(0.0) * 1e9 / (r.events_per_s - q.events_per_s)
        } else {
            f64::NAN
        };
        let projected = q.cpu + per_event * BUDGET_RATE / 1e9;
        let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1 << 20) as f64);
        let hwm = r.hwm.max(q.hwm);
        println!(
            "| {} | {:.0}k | {:.1} % | {} | {:.2} % | {:.0} | {:.1} % {} | {} | {} {} | {} |",
            r.mode,
            r.events_per_s / 1000.0,
            r.cpu * 100.0,
            r.self_cpu
                .map_or("-".into(), |c| format!("{:.1} %", c * 100.0)),
            q.cpu * 100.0,
            per_event,
            projected * 100.0,
            if projected <= BUDGET_CPU {
                "ok"
            } else {
                "OVER"
            },
            r.probe_ns_per_s
                .map_or("-".into(), |n| format!("{:.1} % of a core", n / 1e7)),
            mib(hwm),
            if hwm <= BUDGET_RSS { "ok" } else { "OVER" },
            r.rss_said.map_or("-".into(), mib),
        );
    }
}

/// pg_trace (`bin`) `--backend mode` on `pid` for `secs` after its first interval;
/// `probe_cost`: with `--probe-cost` (the probes' run time is measured only with the
/// kernel's statistics on).
fn measure(bin: &str, pid: i32, mode: &str, secs: u64, probe_cost: bool) -> Row {
    let mut child = Command::new(bin)
        .args(["-p", &pid.to_string(), "--no-tui", "--format", "json"])
        .args(["--interval", "1000", "--backend", mode])
        .args(probe_cost.then_some("--probe-cost"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let child_pid = child.id();
    let records: Arc<Mutex<Vec<(Instant, Record)>>> = Arc::default();
    let reader = {
        let sink = Arc::clone(&records);
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(r) = serde_json::from_str::<Record>(&line) {
                    sink.lock().unwrap().push((Instant::now(), r));
                }
            }
        })
    };
    let stats_seen = |n: usize| {
        records
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, r)| matches!(r, Record::Stats(_)))
            .count()
            >= n
    };
    let t = Instant::now();
    while !stats_seen(1) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{mode}: never attached"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The window starts after attach (catalog read, BPF load: once per session).
    let (t0, cpu0) = (Instant::now(), cpu_s(child_pid));
    let n0 = records.lock().unwrap().len();
    // PG_TRACE_BENCH_PERF=DIR: a `perf record` of pg_trace over the window, per mode.
    match std::env::var("PG_TRACE_BENCH_PERF") {
        Ok(dir) => {
            let st = Command::new("perf")
                .args([
                    "record",
                    "-q",
                    "-F",
                    "499",
                    "-g",
                    "-p",
                    &child_pid.to_string(),
                ])
                .arg("-o")
                .arg(format!("{dir}/perf-{mode}-{pid}.data"))
                .args(["--", "sleep", &secs.to_string()])
                .stderr(Stdio::null())
                .status();
            assert!(st.is_ok_and(|s| s.success()), "perf record failed");
        }
        Err(_) => std::thread::sleep(Duration::from_secs(secs)),
    }
    let (t1, cpu1) = (Instant::now(), cpu_s(child_pid));
    let hwm = status_kib(child_pid, "VmHWM:") * 1024;
    // SAFETY: kill(2) on the pid of our child, not yet reaped.
    unsafe { libc::kill(child_pid as i32, libc::SIGINT) };
    child.wait().unwrap();
    reader.join().unwrap();
    let recs = records.lock().unwrap();
    let window: Vec<_> = recs[n0..]
        .iter()
        .filter(|(at, _)| *at <= t1)
        .filter_map(|(_, r)| match r {
            Record::Stats(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    let avg = |f: &dyn Fn(&pg_trace::output::record::StatsRecord) -> Option<f64>| {
        let v: Vec<f64> = window.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let wall = (t1 - t0).as_secs_f64();
    Row {
        mode: mode.to_string(),
        events_per_s: avg(&|s| Some(s.events_per_s)).unwrap_or(0.0),
        cpu: (cpu1 - cpu0) / wall,
        self_cpu: avg(&|s| s.self_cpu),
        probe_ns_per_s: avg(&|s| s.probe_ns_per_s),
        hwm,
        rss_said: window.iter().filter_map(|s| s.self_rss_bytes).max(),
    }
}
