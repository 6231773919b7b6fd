//! The TUI in a real terminal: tmux runs `pg_trace -p PID` against a backend scanning a
//! table; the screen names the table and shows its percentage growing; `q` exits 0 and the
//! backend finishes its query with the right answer.

mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};
use support::Cluster;

const BIN: &str = env!("CARGO_BIN_EXE_pg_trace");
/// Rows of ~1.9 KiB: four to a page, ~20 MiB in all, scanned with a sleep per row.
const ROWS: i64 = 10_000;

/// A private tmux server (its own socket), killed on drop: only the server we started.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Tmux {
        Tmux {
            socket: format!("pg_trace-test-{}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn capture(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned()
    }

    /// `Some(status)` once the pane's command has exited.
    fn dead_status(&self) -> Option<i32> {
        let out = self.run(&[
            "display-message",
            "-p",
            "-t",
            "t",
            "#{pane_dead} #{pane_dead_status}",
        ]);
        let s = String::from_utf8_lossy(&out.stdout);
        let mut it = s.split_whitespace();
        (it.next() == Some("1")).then(|| it.next().and_then(|v| v.parse().ok()).unwrap_or(-1))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// The percentage on the relations row of `name`, if the screen shows one.
fn percent_of(screen: &str, name: &str) -> Option<f64> {
    // The first row naming it with a percentage: the relations panel comes first.
    screen.lines().filter(|l| l.contains(name)).find_map(|l| {
        l.split_whitespace()
            .filter_map(|t| t.strip_suffix('%'))
            .find_map(|t| t.parse().ok())
    })
}

fn wait_for<T>(
    what: &str,
    tmux: &Tmux,
    timeout: Duration,
    mut f: impl FnMut(&str) -> Option<T>,
) -> T {
    let t = Instant::now();
    loop {
        let screen = tmux.capture();
        if let Some(v) = f(&screen) {
            return v;
        }
        if let Some(st) = tmux.dead_status() {
            panic!("pg_trace exited ({st}) while waiting for {what}; screen:\n{screen}");
        }
        assert!(
            t.elapsed() < timeout,
            "timed out waiting for {what}; screen:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn tui_follows_a_scan_and_quits_cleanly() {
    let mut c = Cluster::start_with(
        15,
        &[
            ("shared_buffers", "16MB"),
            ("synchronize_seqscans", "off"),
            ("max_parallel_workers_per_gather", "0"),
        ],
    );
    c.execute(
        "postgres",
        &format!("CREATE TABLE slow AS SELECT g, repeat(md5(g::text), 60) AS pad FROM generate_series(1, {ROWS}) g"),
    );
    c.execute("postgres", "CHECKPOINT");
    // Blocks of the new table can sit in shared buffers and would never be read: start empty.
    c.restart();
    let mut held = c.hold_backend("postgres");
    let pid = held.pid;
    let q = std::thread::spawn(move || {
        // ~1.9 KiB per row, a 0.5 ms nap per row: several seconds to read ~20 MiB.
        let n: i64 = held
            .client
            .query_one(
                "SELECT count(*) FROM slow WHERE pg_sleep(0.0005) IS NOT NULL",
                &[],
            )
            .expect("scan")
            .get(0);
        (n, held)
    });
    let tmux = Tmux::new();
    // The pane's first command idles until remain-on-exit is set; then pg_trace replaces it.
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
    tmux.run(&["set-window-option", "-g", "remain-on-exit", "on"]);
    let cmd = format!("{BIN} -p {pid}");
    tmux.run(&["respawn-pane", "-k", "-t", "t", &cmd]);
    let first = wait_for(
        "public.slow with a percentage",
        &tmux,
        Duration::from_secs(60),
        |s| percent_of(s, "public.slow"),
    );
    let later = wait_for(
        "the percentage to grow",
        &tmux,
        Duration::from_secs(60),
        |s| percent_of(s, "public.slow").filter(|&p| p > first),
    );
    eprintln!("public.slow: {first}% then {later}%");
    let screen = tmux.capture();
    assert!(screen.contains(&format!("pid {pid}")), "{screen}");
    assert!(screen.contains("client backend"), "{screen}");
    tmux.run(&["send-keys", "-t", "t", "q"]);
    let t = Instant::now();
    let status = loop {
        if let Some(st) = tmux.dead_status() {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "pg_trace did not exit on q:\n{}",
            tmux.capture()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        status,
        0,
        "pg_trace exit status; screen:\n{}",
        tmux.capture()
    );
    // The terminal was given back: the alternate screen is gone.
    let after = tmux.capture();
    assert!(
        !after.contains("Relations:"),
        "screen not restored:\n{after}"
    );
    let (n, mut held) = q.join().expect("query thread");
    assert_eq!(n, ROWS);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("TracerPid:\t0"), "still traced:\n{status}");
    let one: i32 = held.client.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);

    // The picker: no -p. Type the backend's pid to filter, Enter attaches, Esc comes back;
    // SIGTERM ends it with status 0 and the terminal restored.
    tmux.run(&["respawn-pane", "-k", "-t", "t", &format!("exec {BIN}")]);
    let datadir = c.datadir.display().to_string();
    wait_for(
        "the picker with our cluster",
        &tmux,
        Duration::from_secs(30),
        |s| {
            (s.contains("pick a PostgreSQL process")
                && s.contains(&datadir)
                && s.contains("client backend"))
            .then_some(())
        },
    );
    tmux.run(&["send-keys", "-t", "t", "-l", &pid.to_string()]);
    wait_for("the filtered list", &tmux, Duration::from_secs(10), |s| {
        s.contains(&format!("filter {pid}")).then_some(())
    });
    tmux.run(&["send-keys", "-t", "t", "Enter"]);
    wait_for(
        "the trace screen from the picker",
        &tmux,
        Duration::from_secs(30),
        |s| {
            (s.contains(&format!("pg_trace pid {pid} client backend")) && s.contains("Files:"))
                .then_some(())
        },
    );
    tmux.run(&["send-keys", "-t", "t", "Escape"]);
    wait_for("the picker again", &tmux, Duration::from_secs(10), |s| {
        s.contains("pick a PostgreSQL process").then_some(())
    });
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status.contains("TracerPid:\t0"),
        "still traced after Esc:\n{status}"
    );
    let out = tmux.run(&["display-message", "-p", "-t", "t", "#{pane_pid}"]);
    let pg_trace_pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    // SAFETY: kill(2) on the pane's process: the pg_trace we exec'd there.
    assert_eq!(unsafe { libc::kill(pg_trace_pid, libc::SIGTERM) }, 0);
    let t = Instant::now();
    let status = loop {
        if let Some(st) = tmux.dead_status() {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "pg_trace ignored SIGTERM:\n{}",
            tmux.capture()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status, 0, "exit status after SIGTERM:\n{}", tmux.capture());
    let after = tmux.capture();
    assert!(
        !after.contains("pick a PostgreSQL"),
        "screen not restored:\n{after}"
    );
    let one: i32 = held.client.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);
}
