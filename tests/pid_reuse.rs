//! Pid identity on real clusters, with every backend: a traced backend is terminated and
//! its pid forced onto a new process at once (`clone3` with `set_tid`), which then works
//! visibly (a shell holding a marker file open, re-opening it, waiting on `sleep`).
//! pg_trace must report the exit within one interval and never a word about the new
//! process: no `-d` event of the pid after its exit, no file, no status sampled from it.
//! And a backend that goes away while pg_trace attaches (paused at a known step by the
//! debug-build hook `PG_TRACE_TEST_PAUSE`) gives exactly `pid N exited while attaching`,
//! exit status 1, even when its pid has been taken by then.
//!
//! PostgreSQL 15 from Debian (USDT probes) for all five backends; the embedded 18 for the
//! four that need no probes.

mod support;

use pg_trace::process::identity::Identity;
use serde_json::Value;
use std::ffi::CString;
use std::io::BufRead;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::Cluster;

const BIN: &str = env!("CARGO_BIN_EXE_pg_trace");
/// pg_trace's display interval in these runs.
const INTERVAL: Duration = Duration::from_millis(300);

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `struct clone_args` of linux/sched.h (the fields up to `cgroup`, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// A process we made with a chosen pid: killed and reaped on drop.
struct Impostor {
    pid: i32,
}

impl Drop for Impostor {
    fn drop(&mut self) {
        // SAFETY: kill and waitpid on the child this test created and has not reaped.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

/// Starts `sh -c script` with pid exactly `pid`, retrying while the pid is still taken
/// (the backend's zombie not yet reaped by the postmaster). Err: why this kernel will not.
fn spawn_with_pid(pid: i32, script: &str, within: Duration) -> Result<Impostor, String> {
    let sh = CString::new("/bin/sh").unwrap();
    let args = [
        CString::new("sh").unwrap(),
        CString::new("-c").unwrap(),
        CString::new(script).unwrap(),
    ];
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let tid = [pid as libc::pid_t];
    let start = Instant::now();
    loop {
        let cl = CloneArgs {
            exit_signal: libc::SIGCHLD as u64,
            set_tid: tid.as_ptr() as u64,
            set_tid_size: 1,
            ..Default::default()
        };
        // SAFETY: clone3 with a valid clone_args of the size passed and no CLONE_VM: the
        // child is a copy of this thread that only calls execv (async-signal-safe, with
        // argv built before the clone) and _exit.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &cl as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        if rc == 0 {
            // SAFETY: see above; execv only returns on failure.
            unsafe {
                libc::execv(sh.as_ptr(), argv.as_ptr());
                libc::_exit(127);
            }
        }
        if rc > 0 {
            assert_eq!(rc as i32, pid, "clone3 gave another pid than set_tid asked");
            return Ok(Impostor { pid });
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(format!("clone3 with set_tid = {pid}: {e}"));
        }
        if start.elapsed() > within {
            return Err(format!("pid {pid} still taken after {within:?}"));
        }
        std::thread::yield_now();
    }
}

/// The impostor's work: a marker file held open on fd 9, re-opened and read, and a
/// `sleep` child waited for, over and over. Any of it in pg_trace's output is a leak.
fn impostor_script(marker: &Path) -> String {
    let m = marker.display();
    format!("exec 9<{m}; while :; do read l < {m}; sleep 0.05; done")
}

/// A new postgres backend given `pid`: `ns_last_pid` set to the pid before it, then a
/// connection, until the postmaster's fork lands on it (other forks on the host may come
/// first). Err: why not.
fn backend_with_pid(c: &Cluster, pid: i32, within: Duration) -> Result<postgres::Client, String> {
    let start = Instant::now();
    let mut tries = 0;
    loop {
        tries += 1;
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string())
            .map_err(|e| format!("/proc/sys/kernel/ns_last_pid: {e}"))?;
        let mut client = c.connect("postgres");
        let got: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .map_err(|e| e.to_string())?
            .get(0);
        if got == pid {
            return Ok(client);
        }
        drop(client);
        if start.elapsed() > within {
            return Err(format!(
                "{tries} connections in {within:?}, none given pid {pid} (other forks on the host)"
            ));
        }
    }
}

/// A backend with the old pid, querying over and over (its query text, status and
/// reads would all be visible) until `stop`.
fn busy_backend(
    mut client: postgres::Client,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = client.simple_query(
                "SELECT 'impostor_query', count(*) FROM pg_class, pg_attribute WHERE pg_sleep(0) IS NOT NULL",
            );
        }
    })
}

/// A running `pg_trace --format json -d`, its lines kept with their arrival times.
struct Run {
    child: Child,
    lines: Arc<Mutex<Vec<(Instant, String)>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Run {
    fn spawn(pid: i32, backend: &str, pause: Option<String>) -> Run {
        let pid = pid.to_string();
        let interval = INTERVAL.as_millis().to_string();
        let args = [
            "-p",
            &pid,
            "--no-tui",
            "--format",
            "json",
            "-d",
            "--interval",
            &interval,
            "--backend",
            backend,
        ];
        Run::spawn_args(&args, pause)
    }

    fn spawn_args(args: &[&str], pause: Option<String>) -> Run {
        let mut cmd = Command::new(BIN);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        if let Some(p) = pause {
            cmd.env("PG_TRACE_TEST_PAUSE", p);
        }
        let mut child = cmd.spawn().expect("spawn pg_trace");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        Run {
            child,
            lines,
            reader: Some(reader),
        }
    }

    fn wait_for(&mut self, what: &str, f: impl Fn(&Value) -> bool) {
        let t = Instant::now();
        loop {
            if self.values().iter().any(&f) {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                let mut err = String::new();
                let _ =
                    std::io::Read::read_to_string(self.child.stderr.as_mut().unwrap(), &mut err);
                panic!("pg_trace exited ({st}) while waiting for {what}: {err}");
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn values(&self) -> Vec<Value> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .map(|(_, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l}: {e}")))
            .collect()
    }

    /// Waits (polling) for pg_trace to end: its status, stderr, and every line with the
    /// instant it arrived.
    fn end(mut self, within: Duration) -> Ended {
        let t = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if t.elapsed() > within {
                // SAFETY: kill(2) on our own child, not yet reaped.
                unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
                let _ = self.child.wait();
                panic!("pg_trace did not end within {within:?}");
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let ended = Instant::now();
        if let Some(r) = self.reader.take() {
            r.join().unwrap();
        }
        let mut stderr = String::new();
        let _ = std::io::Read::read_to_string(self.child.stderr.as_mut().unwrap(), &mut stderr);
        let lines = std::mem::take(&mut *self.lines.lock().unwrap());
        Ended {
            status,
            stderr,
            ended,
            lines,
        }
    }
}

struct Ended {
    status: std::process::ExitStatus,
    stderr: String,
    /// When we saw pg_trace gone.
    ended: Instant,
    lines: Vec<(Instant, String)>,
}

impl Ended {
    fn values(&self) -> Vec<(Instant, Value)> {
        self.lines
            .iter()
            .map(|(t, l)| {
                (
                    *t,
                    serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l}: {e}")),
                )
            })
            .collect()
    }
}

/// Ends `pid` with pg_terminate_backend from another session; returns once its pidfd
/// says so, with that instant.
fn terminate(c: &Cluster, pid: i32, id: &Identity) -> Instant {
    c.execute("postgres", &format!("SELECT pg_terminate_backend({pid})"));
    let t = Instant::now();
    while id.is_alive() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "backend {pid} did not exit"
        );
        std::thread::yield_now();
    }
    Instant::now()
}

fn marker_in(c: &Cluster, tag: &str) -> PathBuf {
    let dir = tempfile::Builder::new()
        .prefix("pg_trace-impostor-")
        .tempdir_in(c.base_dir())
        .unwrap()
        .keep();
    let m = dir.join(format!("impostor-{tag}"));
    std::fs::write(&m, "impostor\n").unwrap();
    m
}

/// What takes the pid of the traced backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Taker {
    /// A shell (clone3 with set_tid: exact).
    Shell,
    /// A new backend of the same cluster, same binary and probes, running queries: what
    /// happens in production (ns_last_pid, retried).
    Backend,
}

/// One traced backend, ended, its pid reused; see the module documentation. False when
/// the pid could not be forced (said with `support::skip`).
fn reuse_after_exit(c: &Cluster, backend: &str, taker: Taker) -> bool {
    let what = format!(
        "PostgreSQL {} --backend {backend}, pid taken by {taker:?}",
        c.major
    );
    let held = c.hold_backend("postgres");
    let pid = held.pid;
    let id = Identity::open(pid).unwrap();
    let mut run = Run::spawn(pid, backend, None);
    run.wait_for("the first interval", |v| v["type"] == "stats");
    let marker = marker_in(c, backend);
    let dead = terminate(c, pid, &id);
    drop(held);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let taken = match taker {
        Taker::Shell => spawn_with_pid(pid, &impostor_script(&marker), Duration::from_secs(10))
            .map(|i| (Some(i), None)),
        Taker::Backend => backend_with_pid(c, pid, Duration::from_secs(10))
            .map(|b| (None, Some(busy_backend(b, Arc::clone(&stop))))),
    };
    let (shell, busy) = match taken {
        Ok(t) => t,
        Err(why) => {
            support::skip(&format!("pid reuse, {what}"), &why);
            let _ = run.end(Duration::from_secs(20));
            return false;
        }
    };
    let reused = Instant::now();
    let out = run.end(Duration::from_secs(20));
    // The impostor held the pid all along: had pg_trace looked at the pid, it was there.
    assert!(
        support::process_alive(pid),
        "{what}: the impostor died early"
    );
    drop(shell);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(b) = busy {
        b.join().unwrap();
    }
    assert!(
        out.status.success(),
        "{what}: pg_trace failed: {}",
        out.stderr
    );
    let all = out
        .lines
        .iter()
        .map(|(_, l)| l.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!(
        "{what}: pid {pid} reused {:?} after its exit; pg_trace ended {:?} after the exit",
        reused - dead,
        out.ended.saturating_duration_since(dead)
    );

    // Nothing of the impostor: its marker file (held open, re-read) appears nowhere.
    assert!(
        !all.contains("impostor"),
        "{what}: the impostor was reported:\n{all}"
    );
    let values = out.values();
    // The exit, once, as a `-d` event; after it no event and no live status of the pid.
    let exits: Vec<usize> = values
        .iter()
        .enumerate()
        .filter(|(_, (_, v))| v["event"] == "exit" && v["pid"] == pid)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        exits.len(),
        1,
        "{what}: one exit event for pid {pid}:\n{all}"
    );
    let exit_at = exits[0];
    for (_, v) in &values[exit_at + 1..] {
        assert!(
            !(v["type"] == "syscall" && v["pid"] == pid),
            "{what}: an event of pid {pid} after its exit: {v}"
        );
        if v["type"] == "status" {
            assert_eq!(
                v["leader_exited"], true,
                "{what}: a live status after the exit: {v}"
            );
        }
    }
    // No status sampled from the impostor, before the exit record either (a sample taken
    // between the exit and its notice): it waits for `sleep` in wait4, postgres never does.
    for (_, v) in values.iter().filter(|(_, v)| v["type"] == "status") {
        let text = v.to_string();
        assert!(
            !text.contains("wait4")
                && !text.contains("do_wait")
                && !text.contains("clock_nanosleep"),
            "{what}: a status of the impostor: {v}"
        );
    }
    let summary = values
        .iter()
        .find(|(_, v)| v["type"] == "summary")
        .unwrap_or_else(|| panic!("{what}: no summary:\n{all}"));
    assert_eq!(summary.1["exited"], true, "{what}: {}", summary.1);
    // Within one interval of the exit: counted in pg_trace's own intervals (a `stats`
    // record each), not in wall time, which a loaded 2-core machine stretches.
    let noticed = summary.0.saturating_duration_since(dead);
    eprintln!("{what}: the summary came {noticed:?} after the exit");
    let intervals_between = values[..exit_at]
        .iter()
        .filter(|(at, v)| *at > dead && v["type"] == "stats")
        .count();
    assert!(
        intervals_between <= 1,
        "{what}: {intervals_between} intervals passed between the exit and its record ({noticed:?})"
    );
    true
}

/// A backend that exits while pg_trace is paused at `point` of its attach, its pid taken
/// by another process before pg_trace goes on.
fn vanish_while_attaching(c: &Cluster, backend: &str, point: &str) -> bool {
    let what = format!(
        "PostgreSQL {} --backend {backend}, exit at {point:?}",
        c.major
    );
    let held = c.hold_backend("postgres");
    let pid = held.pid;
    vanish_at(c, held, &what, point, |pause| {
        Run::spawn(pid, backend, Some(pause))
    })
}

/// `pg_trace catalog|resolve|ps|probes -p PID` whose process exits (and its pid is
/// taken) right after pg_trace pinned it: the same one line.
fn vanish_during_command(c: &Cluster, command: &[&str]) -> bool {
    let what = format!("PostgreSQL {}: pg_trace {}", c.major, command.join(" "));
    let held = c.hold_backend("postgres");
    let pid = held.pid.to_string();
    let mut args = vec![command[0], "-p", &pid];
    args.extend_from_slice(&command[1..]);
    vanish_at(c, held, &what, "pinned", |pause| {
        Run::spawn_args(&args, Some(pause))
    })
}

/// pg_trace started by `spawn` (given the `PG_TRACE_TEST_PAUSE` value) on `held`'s
/// backend, which exits while pg_trace waits at `point`; see [`vanish_while_attaching`].
fn vanish_at(
    c: &Cluster,
    held: support::HeldBackend,
    what: &str,
    point: &str,
    spawn: impl FnOnce(String) -> Run,
) -> bool {
    let pid = held.pid;
    let id = Identity::open(pid).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("pg_trace-pause-")
        .tempdir_in(c.base_dir())
        .unwrap();
    let fifo = dir.path().join("pause");
    let cpath = CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(cpath.as_ptr(), 0o600) }, 0);
    let mut run = spawn(format!("{point}:{}", fifo.display()));
    // A non-blocking open for writing fails (ENXIO) until pg_trace opens the FIFO to read,
    // which it does at `point`.
    let t = Instant::now();
    let writer = loop {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
        {
            Ok(f) => break f,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                if let Ok(Some(_)) = run.child.try_wait() {
                    let out = run.end(Duration::from_secs(1));
                    panic!("{what}: pg_trace ended before {point:?}: {}", out.stderr);
                }
                assert!(
                    t.elapsed() < Duration::from_secs(30),
                    "{what}: never reached {point:?}"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("{what}: {}: {e}", fifo.display()),
        }
    };
    terminate(c, pid, &id);
    drop(held);
    let marker = marker_in(c, &format!("{pid}-{point}"));
    let impostor = match spawn_with_pid(pid, &impostor_script(&marker), Duration::from_secs(10)) {
        Ok(i) => i,
        Err(why) => {
            support::skip(&format!("exit while attaching, {what}"), &why);
            drop(writer);
            let _ = run.end(Duration::from_secs(20));
            return false;
        }
    };
    drop(writer);
    let out = run.end(Duration::from_secs(20));
    drop(impostor);
    assert_eq!(
        out.stderr,
        format!("pg_trace: error: pid {pid} exited while attaching\n"),
        "{what}"
    );
    assert_eq!(out.status.code(), Some(1), "{what}");
    assert!(
        out.lines.is_empty(),
        "{what}: records written: {:?}",
        out.lines
    );
    true
}

fn every_backend(major: u32, backends: &[&str]) {
    if !is_root() {
        support::skip("pid reuse", "needs root (attaching, clone3 with set_tid)");
        return;
    }
    let c = Cluster::start(major);
    for b in backends {
        if !reuse_after_exit(&c, b, Taker::Shell) {
            return;
        }
        // Best effort (other forks on the host may keep taking the pid): skipped loudly.
        reuse_after_exit(&c, b, Taker::Backend);
        for point in ["located", "attached"] {
            if !vanish_while_attaching(&c, b, point) {
                return;
            }
        }
    }
    for command in [&["catalog"][..], &["resolve", "base"], &["ps"], &["probes"]] {
        if !vanish_during_command(&c, command) {
            return;
        }
    }
}

/// Debian's PostgreSQL 15, built with USDT probes: every backend.
#[test]
fn pg15_every_backend() {
    every_backend(15, &["ebpf", "usdt", "ptrace", "procfs", "auto"]);
}

/// An embedded PostgreSQL 18 (no probes): the syscall backends, and auto.
#[test]
fn pg18_syscall_backends() {
    every_backend(18, &["ebpf", "ptrace", "procfs", "auto"]);
}
