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

static SERVERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A private tmux server (its own socket), killed on drop: only the server we started.
///
/// pg_trace runs under `sh -c '...; echo $? > status'` in the pane: the shell reaps it and
/// records its exit status. (tmux 3.3a's own `#{pane_dead_status}` sometimes never
/// arrives: the server leaves the exited process a zombie.)
struct Tmux {
    socket: String,
    dir: tempfile::TempDir,
}

impl Tmux {
    fn new() -> Tmux {
        let t = Tmux {
            // Tests of this file run in parallel: one server each.
            socket: format!(
                "pg_trace-test-{}-{}",
                std::process::id(),
                SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
            dir: tempfile::tempdir().expect("temp dir"),
        };
        // The pane's first command idles until remain-on-exit is set (the screen of an
        // exited pg_trace stays for capture-pane); each test step then respawns it.
        t.run(&[
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
        t.run(&["set-option", "-g", "remain-on-exit", "on"]);
        t.run(&["set-window-option", "-g", "remain-on-exit", "on"]);
        t
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

    fn status_file(&self) -> std::path::PathBuf {
        self.dir.path().join("status")
    }

    /// Run `pg_trace ARGS` in the pane, replacing whatever runs there.
    fn start(&self, args: &str) {
        let _ = std::fs::remove_file(self.status_file());
        let cmd = format!("{BIN} {args}; echo $? > {}", self.status_file().display());
        self.run(&["respawn-pane", "-k", "-t", "t", &cmd]);
    }

    /// [`Tmux::start`] with `env` (`NAME=VALUE`) in its environment.
    fn start_env(&self, env: &str, args: &str) {
        let _ = std::fs::remove_file(self.status_file());
        let cmd = format!(
            "env {env} {BIN} {args}; echo $? > {}",
            self.status_file().display()
        );
        self.run(&["respawn-pane", "-k", "-t", "t", &cmd]);
    }

    /// The pid of pg_trace: the child of the pane's shell.
    fn pg_trace_pid(&self) -> i32 {
        let out = self.run(&["display-message", "-p", "-t", "t", "#{pane_pid}"]);
        let shell = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let kids = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
            .expect("children of the pane's shell");
        kids.split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("pg_trace runs in the pane")
    }

    fn capture(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned()
    }

    /// `Some(status)` once pg_trace has exited (128+N when killed by signal N).
    fn exit_status(&self) -> Option<i32> {
        let s = std::fs::read_to_string(self.status_file()).ok()?;
        s.strip_suffix('\n')?.parse().ok()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// Wait for pg_trace to exit; its status.
fn wait_exit(tmux: &Tmux, what: &str) -> i32 {
    let t = Instant::now();
    loop {
        if let Some(st) = tmux.exit_status() {
            return st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "pg_trace did not exit after {what}:\n{}",
            tmux.capture()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The percentage on the relations row of `name`, if the screen shows one.
fn percent_of(screen: &str, name: &str) -> Option<f64> {
    // The first row naming it with a percentage: the relations panel comes first. Its last
    // percentage is the progress (a wide screen shows the shared-buffer hit ratio before).
    screen.lines().filter(|l| l.contains(name)).find_map(|l| {
        l.split_whitespace()
            .rev()
            .find_map(|t| t.strip_suffix('%')?.parse().ok())
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
        if let Some(st) = tmux.exit_status() {
            panic!("pg_trace exited ({st}) while waiting for {what}; screen:\n{screen}");
        }
        assert!(
            t.elapsed() < timeout,
            "timed out waiting for {what}; screen:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The first frame does not wait for the tracer: with the attach thread held (debug
/// builds: `PG_TRACE_TEST_PAUSE=deferred:FIFO`), the screen is up, says `attaching…` and
/// names the files the backend already has open (the /proc fd walk); once released, the
/// header names the tracer and the backend's reads reach the screen.
fn first_frame_before_the_tracer(tmux: &Tmux, c: &Cluster) {
    let mut held = c.hold_backend("postgres");
    let pid = held.pid;
    // A relation file open in the backend before pg_trace comes (it keeps its fds).
    held.client
        .batch_execute("SELECT count(*) FROM slow")
        .unwrap();
    let fifo = tmux.dir.path().join("deferred");
    let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
    tmux.start_env(
        &format!("PG_TRACE_TEST_PAUSE=deferred:{}", fifo.display()),
        &format!("-p {pid} --backend ebpf"),
    );
    let screen = wait_for(
        "a first frame while attaching",
        tmux,
        Duration::from_secs(30),
        |s| (s.contains("via attaching…") && s.contains("Files:")).then(|| s.to_string()),
    );
    assert!(
        screen.contains("public.slow"),
        "the open files are not on the first frame:\n{screen}"
    );
    // Let the attach go on: the writer's open and close are the thread's EOF.
    drop(std::fs::OpenOptions::new().write(true).open(&fifo).unwrap());
    wait_for("the tracer live", tmux, Duration::from_secs(30), |s| {
        (s.contains("via ebpf ") && !s.contains("attaching")).then_some(())
    });
    // Events flow: a table opened only now is seen through the tracer.
    held.client
        .batch_execute("CREATE TABLE later AS SELECT 1 AS x; SELECT count(*) FROM later")
        .unwrap();
    wait_for("public.later", tmux, Duration::from_secs(30), |s| {
        s.contains("public.later").then_some(())
    });
    tmux.run(&["send-keys", "-t", "t", "q"]);
    assert_eq!(wait_exit(tmux, "q after attaching"), 0);
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
    tmux.start(&format!("-p {pid}"));
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
    let status = wait_exit(&tmux, "q");
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

    // A traced backend that exits: the summary stays up until q.
    let victim = c.hold_backend("postgres");
    let vpid = victim.pid;
    tmux.start(&format!("-p {vpid}"));
    wait_for(
        "the trace of the second backend",
        &tmux,
        Duration::from_secs(30),
        |s| (s.contains(&format!("pg_trace pid {vpid}")) && s.contains("Files:")).then_some(()),
    );
    drop(victim); // the client goes away, and so does its backend
    let summary = wait_for("the exit summary", &tmux, Duration::from_secs(30), |s| {
        s.contains("Process exited").then(|| s.to_string())
    });
    assert!(summary.contains(&format!("pid {vpid} ")), "{summary}");
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        tmux.exit_status(),
        None,
        "pg_trace must wait for q after the summary"
    );
    tmux.run(&["send-keys", "-t", "t", "q"]);
    assert_eq!(wait_exit(&tmux, "q after the summary"), 0);

    first_frame_before_the_tracer(&tmux, &c);

    // The picker: no -p. Type the backend's pid to filter, Enter attaches, Esc comes back;
    // SIGTERM ends it with status 0 and the terminal restored.
    tmux.start("");
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
    let pg_trace_pid = tmux.pg_trace_pid();
    // SAFETY: kill(2) on the pg_trace this test started in the pane.
    assert_eq!(unsafe { libc::kill(pg_trace_pid, libc::SIGTERM) }, 0);
    let status = wait_exit(&tmux, "SIGTERM");
    assert_eq!(status, 0, "exit status after SIGTERM:\n{}", tmux.capture());
    let after = tmux.capture();
    assert!(
        !after.contains("pick a PostgreSQL"),
        "screen not restored:\n{after}"
    );
    let one: i32 = held.client.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);

    // The terminal goes away under a ptrace-attached TUI (an ssh session dropped): pg_trace
    // must notice, detach and exit, not spin on a dead terminal with the backend traced.
    tmux.start(&format!("-p {pid} --backend ptrace"));
    wait_for(
        "the ptrace trace screen",
        &tmux,
        Duration::from_secs(30),
        |s| (s.contains(&format!("pg_trace pid {pid}")) && s.contains("via ptrace")).then_some(()),
    );
    let pg_trace_pid = tmux.pg_trace_pid();
    // The tracer is pg_trace's ptrace thread.
    let traced = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let tracer = traced
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .map(str::trim)
        .unwrap_or("0");
    assert!(
        std::path::Path::new(&format!("/proc/{pg_trace_pid}/task/{tracer}")).exists(),
        "not ptrace-attached by pg_trace {pg_trace_pid}:\n{traced}"
    );
    tmux.run(&["kill-server"]);
    let gone = support::wait_process_gone(pg_trace_pid, Duration::from_secs(15));
    if !gone {
        // Do not leave it spinning (and attached) after the test.
        // SAFETY: kill(2) on the pg_trace this test started.
        unsafe { libc::kill(pg_trace_pid, libc::SIGKILL) };
    }
    assert!(gone, "pg_trace still runs after its terminal hung up");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(
        status.contains("TracerPid:\t0"),
        "still traced after the hangup:\n{status}"
    );
    let one: i32 = held.client.query_one("SELECT 1", &[]).unwrap().get(0);
    assert_eq!(one, 1);
}

/// A table, schema and query named with escape sequences (clear screen, set the window
/// title), a newline and a bidi override: the TUI shows them escaped; the pane's title is
/// not changed and the screen is not cleared (its first line is still pg_trace's header).
#[test]
fn tui_shows_hostile_names_inert() {
    let c = Cluster::start(15);
    let schema = "s\u{1b}[2J";
    let table = "t\u{1b}]0;PWNED\u{7}\nx\u{202e}y";
    let qt = format!("\"{schema}\".\"{table}\"");
    c.execute(
        "postgres",
        &format!("CREATE SCHEMA \"{schema}\"; CREATE TABLE {qt} AS SELECT g FROM generate_series(1, 4000) g; CHECKPOINT"),
    );
    let mut held = c.hold_backend("postgres");
    let pid = held.pid;
    held.client
        .batch_execute("SET application_name = 'app\u{1b}]0;PWNED\u{7}'")
        .unwrap();
    let query = format!(
        "SELECT count(*) FROM {qt} WHERE pg_sleep(0.003) IS NOT NULL /* \u{1b}]0;PWNED\u{7}\u{1b}[2J */"
    );
    let q = std::thread::spawn(move || {
        held.client
            .query_one(query.as_str(), &[])
            .map(|r| r.get::<_, i64>(0))
    });
    let tmux = Tmux::new();
    tmux.run(&["select-pane", "-t", "t", "-T", "ORIGINAL"]);
    tmux.start(&format!("-p {pid}"));
    let escaped = r"s\x1b[2J.t\x1b]0;PWNED\x07\nx\u{202e}y";
    let screen = wait_for(
        "the escaped table name",
        &tmux,
        Duration::from_secs(60),
        |s| s.contains(&escaped[..20]).then(|| s.to_string()),
    );
    // Several frames drawn with the names on screen.
    std::thread::sleep(Duration::from_millis(1500));
    let screen2 = tmux.capture();
    let title = tmux.run(&["display-message", "-p", "-t", "t", "#{pane_title}"]);
    assert_eq!(
        String::from_utf8_lossy(&title.stdout).trim(),
        "ORIGINAL",
        "the pane title was changed; screen:\n{screen2}"
    );
    for s in [&screen, &screen2] {
        let first = s.lines().next().unwrap_or("");
        assert!(
            first.starts_with(&format!("pg_trace pid {pid}")),
            "the header is gone:\n{s}"
        );
        assert!(!s.contains('\u{202e}') && !s.contains('\u{1b}'), "{s}");
    }
    assert!(screen2.contains(r"s\x1b[2J"), "{screen2}");
    tmux.run(&["send-keys", "-t", "t", "q"]);
    assert_eq!(wait_exit(&tmux, "q"), 0);
    assert_eq!(q.join().unwrap().unwrap(), 4000);
}
