//! How long from the command to the TUI's first full frame: `pg_trace -p PID` in a real
//! terminal (a private tmux server, 120×40) attached to an idle backend of a cluster of
//! 1,000 relations (Debian's PostgreSQL 15, so the default `auto` attaches eBPF and the
//! USDT probes). The frame is "full" when the header's second line (`via … elapsed …`) and
//! the panels' titles and the key line are on screen: the TUI draws it from /proc, the
//! backend's memory and the catalog while BPF and the USDT probes are attached on a thread
//! (`via attaching…`); "tracer live" is when the header names the method with nothing
//! still attaching. `PG_TRACE_BENCH_BASELINE=PATH` times another build's first frame in
//! turn with this one (before/after on a noisy machine).
//!
//!     cargo bench --bench tui_first_frame
//!     PG_TRACE_BENCH_REPS=9 PG_TRACE_BENCH_RELATIONS=1000 cargo bench --bench tui_first_frame
//!
//! tmux itself takes time to start a pane's command and to show what it printed: the same
//! loop timing `sh -c 'echo ready'` is printed as the floor, and subtracted. Budget
//! (issue 12): 300 ms.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pg_trace");
const BUDGET: Duration = Duration::from_millis(300);

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("run tmux")
    }

    fn capture(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned()
    }

    /// Runs `cmd` in the pane (replacing what ran there) and times until `done(screen)`.
    fn time_until(&self, cmd: &str, done: impl Fn(&str) -> bool) -> Duration {
        self.times_until(cmd, &[&done])[0]
    }

    /// [`Tmux::time_until`] for several conditions at once: when each first held.
    fn times_until(&self, cmd: &str, done: &[&dyn Fn(&str) -> bool]) -> Vec<Duration> {
        self.run(&["send-keys", "-t", "t", "q"]);
        let t = Instant::now();
        self.run(&["respawn-pane", "-k", "-t", "t", cmd]);
        let mut at: Vec<Option<Duration>> = vec![None; done.len()];
        loop {
            let screen = self.capture();
            let now = t.elapsed();
            for (slot, f) in at.iter_mut().zip(done) {
                if slot.is_none() && f(&screen) {
                    *slot = Some(now);
                }
            }
            if at.iter().all(Option::is_some) {
                return at.into_iter().flatten().collect();
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "no frame after 30 s:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("tui_first_frame: benchmark only runs under `cargo bench`");
        return;
    }
    let reps = env_num("PG_TRACE_BENCH_REPS", 7) as usize;
    let n = env_num("PG_TRACE_BENCH_RELATIONS", 1000);
    let c = support::Cluster::start(15);
    c.execute(
        "postgres",
        &format!(
            "DO $$ BEGIN FOR i IN 1..{n} LOOP \
             EXECUTE format('CREATE TABLE rel_%s (id int)', i); END LOOP; END $$"
        ),
    );
    c.execute("postgres", "CHECKPOINT");
    let rels: i64 = c.psql(
        "postgres",
        "SELECT count(*) FROM pg_class WHERE relfilenode <> 0 OR relkind IN ('r','i','t','m','S')",
    )[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    let held = c.hold_backend("postgres");

    let tmux = Tmux {
        socket: format!("pg_trace-bench-{}", std::process::id()),
    };
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "120",
        "-y",
        "40",
        "sleep 600",
    ]);
    tmux.run(&["set-option", "-g", "remain-on-exit", "on"]);

    let floor = median(
        (0..reps)
            .map(|_| tmux.time_until("sh -c 'echo ready; sleep 600'", |s| s.contains("ready")))
            .collect(),
    );
    let full = |s: &str| {
        s.contains("via ") && s.contains("Relations") && s.contains("Files") && s.contains("q quit")
    };
    // PG_TRACE_BENCH_BASELINE=PATH: another pg_trace binary (an older build) timed in
    // turn with this one, run for run, so that the machine's drift hits both alike.
    let baseline = std::env::var("PG_TRACE_BENCH_BASELINE").ok();
    let mut rows = Vec::new();
    for (label, args, method) in [
        ("pg_trace -p PID (auto: ebpf+usdt)", "", "ebpf+usdt"),
        ("pg_trace -p PID --backend ebpf", "--backend ebpf", "ebpf"),
        (
            "pg_trace -p PID --backend procfs",
            "--backend procfs",
            "procfs",
        ),
    ] {
        let cmd = format!("{BIN} -p {} {args}", held.pid);
        let base_cmd = baseline
            .as_ref()
            .map(|b| format!("{b} -p {} {args}", held.pid));
        // The tracer live: the header names it, with nothing still attaching.
        let live_at = format!("via {method} ");
        let live = |s: &str| full(s) && s.contains(&live_at) && !s.contains("attaching");
        // One untimed run: the binary and the catalog files in the page cache.
        tmux.time_until(&cmd, full);
        if let Some(b) = &base_cmd {
            tmux.time_until(b, full);
        }
        let (mut first, mut to_live, mut base) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..reps {
            let t = tmux.times_until(&cmd, &[&full, &live]);
            first.push(t[0]);
            to_live.push(t[1]);
            if let Some(b) = &base_cmd {
                base.push(tmux.time_until(b, full));
            }
        }
        rows.push((
            label,
            median(first),
            median(to_live),
            (!base.is_empty()).then(|| median(base)),
        ));
    }
    tmux.run(&["send-keys", "-t", "t", "q"]);

    println!(
        "\nFirst full TUI frame, PostgreSQL 15, {rels} relations in pg_class with storage ({n} tables \
         created), 120x40 tmux pane, median of {reps}; minus tmux's own start ({:.0} ms):\n",
        ms(floor)
    );
    println!(
        "| command | first full frame | budget 300 ms | tracer live (header names it) | baseline binary: first frame |"
    );
    println!("|---|---|---|---|---|");
    for (label, first, live, base) in rows {
        let net = first.saturating_sub(floor);
        println!(
            "| `{label}` | {:.0} ms | {} | {:.0} ms | {} |",
            ms(net),
            if net <= BUDGET { "ok" } else { "OVER" },
            ms(live.saturating_sub(floor)),
            base.map_or("-".to_string(), |b| format!(
                "{:.0} ms",
                ms(b.saturating_sub(floor))
            )),
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
