//! How long from the command to the TUI's first full frame: `pg_trace -p PID` in a real
//! terminal (a private tmux server, 120×40) attached to an idle backend of a cluster of
//! 1,000 relations (Debian's PostgreSQL 15, so the default `auto` attaches eBPF and the
//! USDT probes). The frame is "full" when the header's second line (`via … elapsed …`) and
//! the panels' titles and the key line are on screen: the TUI draws everything in one frame, after the
//! attach (catalog read, BPF load, probe attach) and the first status sample.
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
        self.run(&["send-keys", "-t", "t", "q"]);
        let t = Instant::now();
        self.run(&["respawn-pane", "-k", "-t", "t", cmd]);
        loop {
            let screen = self.capture();
            if done(&screen) {
                return t.elapsed();
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
    let mut rows = Vec::new();
    for (label, args) in [
        ("pg_trace -p PID (auto: ebpf+usdt)", String::new()),
        (
            "pg_trace -p PID --backend ebpf",
            "--backend ebpf".to_string(),
        ),
        (
            "pg_trace -p PID --backend procfs",
            "--backend procfs".to_string(),
        ),
    ] {
        let cmd = format!("{BIN} -p {} {args}", held.pid);
        // One untimed run: the binary and the catalog files in the page cache.
        tmux.time_until(&cmd, full);
        let times: Vec<Duration> = (0..reps).map(|_| tmux.time_until(&cmd, full)).collect();
        rows.push((label, median(times)));
    }
    tmux.run(&["send-keys", "-t", "t", "q"]);

    println!(
        "\nFirst full TUI frame, PostgreSQL 15, {rels} relations in pg_class with storage ({n} tables \
         created), 120x40 tmux pane, median of {reps}:\n"
    );
    println!(
        "| command | command to first frame | minus tmux's own ({:.0} ms) | budget 300 ms |",
        ms(floor)
    );
    println!("|---|---|---|---|");
    for (label, t) in rows {
        let net = t.saturating_sub(floor);
        println!(
            "| `{label}` | {:.0} ms | {:.0} ms | {} |",
            ms(t),
            ms(net),
            if net <= BUDGET { "ok" } else { "OVER" }
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
