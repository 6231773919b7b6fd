//! The ptrace backend on real PostgreSQL backends (root only): what it sees, and that the
//! traced backend never notices: signals still arrive, SIGSTOP/SIGCONT still work, and a
//! SIGKILLed pg_trace leaves the backend running and untraced.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pg_trace::trace::ptrace::PtraceTracer;
use pg_trace::trace::{Event, EventKind, Syscall, Tracer};
use support::{majors, process_alive, Cluster};

/// Set (to the backend pid) in the environment of the child process of
/// `sigkill_of_the_tracer_leaves_the_backend_running`.
const CHILD_ENV: &str = "PG_TRACE_PTRACE_TEST_CHILD_PID";
const CHILD_ATTACHED: &str = "PG_TRACE_CHILD_ATTACHED";
const CHILD_EVENTS: &str = "PG_TRACE_CHILD_EVENTS";

type Rows = Vec<Vec<Option<String>>>;

fn require_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        support::skip("trace_ptrace", "ptrace tests must run as root");
        return false;
    }
    true
}

/// A field of /proc/PID/status.
fn status_field(pid: i32, field: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .strip_prefix(':')
                .map(|v| v.trim().to_string())
        })
}

fn tracer_pid(pid: i32) -> Option<i32> {
    status_field(pid, "TracerPid")?.parse().ok()
}

/// The one-letter state of /proc/PID/stat (R, S, D, T stopped, t tracing stop, Z...).
fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// Polls `cond` every 10 ms until it holds; panics with `what` after `timeout`.
fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn db_error(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => e.to_string(),
    }
}

fn rows(msgs: &[postgres::SimpleQueryMessage]) -> Rows {
    msgs.iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

/// A query running on its own thread; the client comes back from `join`.
struct Running {
    result: Receiver<Result<Rows, String>>,
    thread: JoinHandle<postgres::Client>,
}

fn run_in_thread(mut client: postgres::Client, sql: &str) -> Running {
    let (tx, rx) = mpsc::channel();
    let sql = sql.to_string();
    let thread = std::thread::spawn(move || {
        let r = client
            .simple_query(&sql)
            .map(|m| rows(&m))
            .map_err(|e| db_error(&e));
        let _ = tx.send(r);
        client
    });
    Running { result: rx, thread }
}

impl Running {
    fn wait(self, timeout: Duration, what: &str) -> (Result<Rows, String>, postgres::Client) {
        let r = self
            .result
            .recv_timeout(timeout)
            .unwrap_or_else(|e| panic!("{what}: no result within {timeout:?} ({e})"));
        (r, self.thread.join().expect("query thread panicked"))
    }

    fn finished(&self) -> bool {
        !matches!(self.result.try_recv(), Err(TryRecvError::Empty))
    }
}

/// Waits until backend `pid` is running a statement containing `needle`.
fn wait_active(c: &Cluster, pid: i32, needle: &str) {
    let sql = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid} AND state = 'active' \
         AND position('{needle}' in query) > 0"
    );
    wait_until(
        Duration::from_secs(30),
        &format!("backend {pid} to run {needle}"),
        || c.psql("postgres", &sql)[0][0].as_deref() == Some("1"),
    );
}

/// Whether `pid` is traced by a thread of process `tracer` (TracerPid is the tracing
/// thread's id), or, with `tracer` 0, not traced at all.
fn traced_by(pid: i32, tracer: i32) -> bool {
    match tracer_pid(pid) {
        Some(0) => tracer == 0,
        Some(tid) => {
            tracer != 0 && std::path::Path::new(&format!("/proc/{tracer}/task/{tid}")).exists()
        }
        None => false,
    }
}

fn wait_traced_by(pid: i32, tracer: i32) {
    wait_until(
        Duration::from_secs(10),
        &format!("backend {pid} to be traced by process {tracer} (0: untraced)"),
        || traced_by(pid, tracer),
    );
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: kill(2) on a process this test started (a backend of its own cluster, or its
    // own child process).
    let r = unsafe { libc::kill(pid, sig) };
    assert_eq!(
        r,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

/// The backend answers and is no longer traced.
fn assert_fine_and_untraced(client: &mut postgres::Client, pid: i32) {
    wait_traced_by(pid, 0);
    assert!(process_alive(pid), "backend {pid} died");
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .unwrap_or_else(|e| panic!("backend {pid} no longer answers: {}", db_error(&e)))
        .get(0);
    assert_eq!(one, 1);
    assert!(
        matches!(proc_state(pid), Some('S' | 'R' | 'D')),
        "backend {pid} in state {:?}",
        proc_state(pid)
    );
}

fn our_pid() -> i32 {
    std::process::id() as i32
}

#[test]
fn reads_of_a_new_table_are_seen() {
    if !require_root() {
        return;
    }
    for major in majors() {
        // PG18 reads through io workers by default; the backend must read itself here.
        let conf: &[(&str, &str)] = if major >= 18 {
            &[("io_method", "sync")]
        } else {
            &[]
        };
        let cluster = Cluster::start_with(major, conf);
        let mut held = cluster.hold_backend("postgres");
        let pid = held.pid;
        let mut tracer = PtraceTracer::attach(&[pid]).expect("attach");
        wait_traced_by(pid, our_pid());

        // No parallel workers: this backend must do all the reading itself.
        held.client
            .batch_execute("SET max_parallel_workers_per_gather = 0")
            .expect("SET");
        held.client
            .batch_execute(
                "CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1,200000) g",
            )
            .expect("CREATE TABLE AS");
        let n: i64 = held
            .client
            .query_one("SELECT count(*) FROM t", &[])
            .expect("count")
            .get(0);
        assert_eq!(n, 200000);
        let row = held
            .client
            .query_one(
                "SELECT pg_relation_filepath('t'), pg_relation_size('t')",
                &[],
            )
            .expect("filepath");
        let path: String = row.get(0);
        let size: i64 = row.get(1);
        let nblocks = (size / 8192) as u64;

        // Every event of a syscall is sent before the tracee resumes from it, so the reads
        // of the count are already queued; poll until they are all in.
        let mut events: Vec<Event> = Vec::new();
        let mut analysis = analyse(&events, pid, &path);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            tracer.poll(&mut events).expect("poll");
            analysis = analyse(&events, pid, &path);
            if analysis.blocks.len() as u64 * 2 >= nblocks {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let stats = tracer.stats();
        assert!(stats.events >= events.len() as u64 / 2, "{stats:?}");
        assert!(
            !events
                .iter()
                .any(|e| matches!(&e.kind, EventKind::Lost { cause, .. } if cause == "queue full")),
            "events lost: {:?}",
            stats.lost
        );

        assert!(
            analysis.opened,
            "PostgreSQL {major}: no open of {path} among {} events",
            events.len()
        );
        assert!(
            !analysis.reads.is_empty(),
            "PostgreSQL {major}: no reads of {path}"
        );
        for &(sc, offset, requested, result) in &analysis.reads {
            let offset = offset.unwrap_or_else(|| panic!("{sc:?} of {path} without offset"));
            assert!(
                offset % 8192 == 0 && requested % 8192 == 0 && requested > 0,
                "PostgreSQL {major}: {sc:?} of {requested} bytes at {offset}"
            );
            assert_eq!(result, requested as i64, "PostgreSQL {major}: short read");
            assert!(
                offset + requested <= size as u64,
                "read past the end of {path}"
            );
            if major < 17 {
                assert_eq!(sc, Syscall::Pread64);
            } else {
                assert!(matches!(sc, Syscall::Pread64 | Syscall::Preadv), "{sc:?}");
            }
        }
        assert!(
            analysis.reads.iter().any(|r| r.0 == Syscall::Pread64),
            "PostgreSQL {major}: no pread64 of {path}"
        );
        // Blocks still in shared buffers after the CREATE are not read again: most are.
        assert!(
            analysis.blocks.len() as u64 * 2 >= nblocks,
            "PostgreSQL {major}: {} of {nblocks} blocks read",
            analysis.blocks.len()
        );
        eprintln!(
            "PostgreSQL {major}: {} events, {} reads of {path} covering {} of {nblocks} blocks",
            events.len(),
            analysis.reads.len(),
            analysis.blocks.len()
        );

        tracer.detach();
        assert_fine_and_untraced(&mut held.client, pid);
    }
}

#[derive(Default)]
struct Analysis {
    opened: bool,
    /// (syscall, offset, requested, result) of every read of the file.
    reads: Vec<(Syscall, Option<u64>, u64, i64)>,
    blocks: BTreeSet<u64>,
}

/// Follows fds through open/dup/close to find the reads of `path`.
fn analyse(events: &[Event], pid: i32, path: &str) -> Analysis {
    let mut a = Analysis::default();
    let mut fds: HashMap<i32, String> = HashMap::new();
    let is_path = |p: &str| p == path || p.ends_with(&format!("/{path}"));
    for e in events.iter().filter(|e| e.pid == pid) {
        match &e.kind {
            EventKind::Open { path: p, fd, .. } if *fd >= 0 => {
                if is_path(p) {
                    a.opened = true;
                }
                fds.insert(*fd, p.clone());
            }
            EventKind::Close { fd } => {
                fds.remove(fd);
            }
            EventKind::Dup { old_fd, new_fd, .. } => {
                if let Some(p) = fds.get(old_fd).cloned() {
                    fds.insert(*new_fd, p);
                }
            }
            EventKind::Read {
                syscall,
                fd,
                offset,
                requested,
                result,
            } if fds.get(fd).is_some_and(|p| is_path(p)) => {
                a.reads.push((*syscall, *offset, *requested, *result));
                if let Some(o) = offset {
                    for b in o / 8192..(o + requested) / 8192 {
                        a.blocks.insert(b);
                    }
                }
            }
            _ => {}
        }
    }
    a
}

#[test]
fn signals_are_passed_through() {
    if !require_root() {
        return;
    }
    let cluster = Cluster::start(15);
    let held = cluster.hold_backend("postgres");
    let pid = held.pid;
    let mut tracer = PtraceTracer::attach(&[pid]).expect("attach");
    wait_traced_by(pid, our_pid());

    // SIGINT from pg_cancel_backend must reach the backend sleeping in pg_sleep.
    let q = run_in_thread(held.client, "SELECT pg_sleep(30)");
    wait_active(&cluster, pid, "pg_sleep(30)");
    let start = Instant::now();
    let r = cluster.psql("postgres", &format!("SELECT pg_cancel_backend({pid})"));
    assert_eq!(r[0][0].as_deref(), Some("t"));
    let (r, mut client) = q.wait(Duration::from_secs(10), "pg_sleep(30) after the cancel");
    let err = r.expect_err("pg_sleep(30) was not cancelled");
    assert!(
        err.contains("canceling statement due to user request"),
        "unexpected error: {err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "cancel took {:?}",
        start.elapsed()
    );

    // SIGALRM of statement_timeout.
    client
        .batch_execute("SET statement_timeout = '200ms'")
        .expect("SET");
    let start = Instant::now();
    let err = client
        .simple_query("SELECT pg_sleep(5)")
        .map(drop)
        .map_err(|e| db_error(&e))
        .expect_err("pg_sleep(5) did not time out");
    assert!(
        err.contains("canceling statement due to statement timeout"),
        "unexpected error: {err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "timeout took {:?}",
        start.elapsed()
    );
    client
        .batch_execute("RESET statement_timeout")
        .expect("RESET");

    // Still traced, and the tracer saw the backend's syscalls.
    assert!(traced_by(pid, our_pid()));
    let mut events = Vec::new();
    tracer.poll(&mut events).expect("poll");
    assert!(
        events.iter().any(|e| e.pid == pid),
        "no events from backend {pid}"
    );
    tracer.detach();
    assert_fine_and_untraced(&mut client, pid);
}

/// Runs as a child process of `sigkill_of_the_tracer_leaves_the_backend_running` (and
/// does nothing otherwise): traces the backend until it is SIGKILLed.
#[test]
fn ptrace_child_tracer() {
    let Ok(pid) = std::env::var(CHILD_ENV) else {
        return;
    };
    let pid: i32 = pid.parse().expect("pid");
    let mut tracer = PtraceTracer::attach(&[pid]).expect("attach in child");
    println!("{CHILD_ATTACHED}");
    let mut events = Vec::new();
    let mut announced = false;
    // Bounded, in case the parent dies before killing us.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(300) {
        events.clear();
        tracer.poll(&mut events).expect("poll in child");
        if !announced && events.iter().any(|e| e.pid == pid) {
            println!("{CHILD_EVENTS}");
            announced = true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sigkill_of_the_tracer_leaves_the_backend_running() {
    if !require_root() {
        return;
    }
    let cluster = Cluster::start(15);
    let held = cluster.hold_backend("postgres");
    let pid = held.pid;
    let q = run_in_thread(
        held.client,
        "SELECT count(*) FROM generate_series(1, 30000000)",
    );
    wait_active(&cluster, pid, "generate_series(1, 30000000)");

    let mut child = Command::new(std::env::current_exe().expect("current_exe"))
        .args([
            "--exact",
            "ptrace_child_tracer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the child tracer");
    let child_pid = child.id() as i32;
    let (tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().expect("child stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Wait until the child traces the backend and has seen its syscalls.
    let start = Instant::now();
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains(CHILD_EVENTS)) {
        match lines.recv_timeout(Duration::from_millis(100)) {
            Ok(l) => seen.push(l),
            Err(_) => {
                if let Ok(Some(st)) = child.try_wait() {
                    panic!("child tracer exited ({st}) before tracing: {seen:?}");
                }
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "child tracer not ready after 30 s: {seen:?}"
                );
            }
        }
    }
    assert!(seen.iter().any(|l| l.contains(CHILD_ATTACHED)));
    assert!(traced_by(pid, child_pid), "backend not traced by the child");
    assert!(
        !q.finished(),
        "the query ended before the tracer was killed: the test proves nothing"
    );

    kill(child_pid, libc::SIGKILL);
    let st = child.wait().expect("wait for the child tracer");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(libc::SIGKILL)
    );
    wait_traced_by(pid, 0);

    let (r, mut client) = q.wait(Duration::from_secs(300), "count(*) of 30000000 rows");
    let rows = r.unwrap_or_else(|e| panic!("the traced query failed: {e}"));
    assert_eq!(rows, vec![vec![Some("30000000".to_string())]]);
    assert_fine_and_untraced(&mut client, pid);
}

#[test]
fn group_stop_and_continue() {
    if !require_root() {
        return;
    }
    const SQL: &str = "SELECT sum(g) FROM generate_series(1, 20000000) g";
    const SUM: &str = "200000010000000";
    let cluster = Cluster::start(15);
    let held = cluster.hold_backend("postgres");
    let pid = held.pid;
    let mut tracer = PtraceTracer::attach(&[pid]).expect("attach");
    wait_traced_by(pid, our_pid());
    let stopped = || matches!(proc_state(pid), Some('T' | 't'));
    let mut events = Vec::new();

    // SIGSTOP and SIGCONT while traced: the backend stops, resumes, and finishes right.
    let q = run_in_thread(held.client, SQL);
    wait_active(&cluster, pid, "generate_series(1, 20000000)");
    kill(pid, libc::SIGSTOP);
    wait_until(Duration::from_secs(10), "the backend to stop", stopped);
    // Stopped it stays (the tracer keeps it in its group-stop and keeps working).
    let hold = Instant::now();
    while hold.elapsed() < Duration::from_millis(300) {
        tracer.poll(&mut events).expect("poll while stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        stopped(),
        "backend resumed by itself: {:?}",
        proc_state(pid)
    );
    assert!(
        !q.finished(),
        "the query finished while the backend was stopped"
    );
    kill(pid, libc::SIGCONT);
    wait_until(Duration::from_secs(10), "the backend to resume", || {
        !stopped()
    });
    let (r, client) = q.wait(Duration::from_secs(120), "the query after SIGCONT");
    assert_eq!(
        r.expect("query after SIGSTOP/SIGCONT"),
        vec![vec![Some(SUM.into())]]
    );
    assert!(traced_by(pid, our_pid()));

    // Detach while the backend is stopped: it stays stopped, untraced, and SIGCONT resumes it.
    let q = run_in_thread(client, SQL);
    wait_active(&cluster, pid, "generate_series(1, 20000000)");
    kill(pid, libc::SIGSTOP);
    wait_until(Duration::from_secs(10), "the backend to stop", stopped);
    tracer.detach();
    wait_traced_by(pid, 0);
    wait_until(Duration::from_secs(10), "state T after the detach", || {
        proc_state(pid) == Some('T')
    });
    assert!(
        !q.finished(),
        "the query finished while the backend was stopped"
    );
    kill(pid, libc::SIGCONT);
    let (r, mut client) = q.wait(
        Duration::from_secs(120),
        "the query after detach and SIGCONT",
    );
    assert_eq!(r.expect("query after detach"), vec![vec![Some(SUM.into())]]);
    assert_fine_and_untraced(&mut client, pid);
}

#[test]
fn attach_errors_are_one_line() {
    if !require_root() {
        return;
    }
    // A pid that does not exist.
    let gone = {
        let mut c = Command::new("true").spawn().expect("spawn true");
        let pid = c.id() as i32;
        c.wait().expect("wait");
        pid
    };
    let e = PtraceTracer::attach(&[gone])
        .err()
        .expect("attach to a dead pid")
        .to_string();
    assert_eq!(e, format!("no process {gone}"));
    // A process that is already traced.
    let cluster = Cluster::start(15);
    let mut held = cluster.hold_backend("postgres");
    let mut first = PtraceTracer::attach(&[held.pid]).expect("attach");
    let e = PtraceTracer::attach(&[held.pid])
        .err()
        .expect("second attach")
        .to_string();
    assert_eq!(
        e,
        format!(
            "ptrace refused for pid {}: Operation not permitted (is it already traced, or \
             does yama ptrace_scope forbid it?)",
            held.pid
        )
    );
    // Ourselves (the kernel refuses to trace our own thread group).
    assert!(PtraceTracer::attach(&[our_pid()]).is_err());
    // A failed attach of several pids leaves none of them traced.
    first.detach();
    let e = PtraceTracer::attach(&[held.pid, gone])
        .err()
        .expect("partial attach");
    assert_eq!(e.to_string(), format!("no process {gone}"));
    assert_fine_and_untraced(&mut held.client, held.pid);
    // add_pid / remove_pid on a live tracer.
    let other = cluster.hold_backend("postgres");
    let mut tracer = PtraceTracer::attach(&[held.pid]).expect("attach");
    tracer.add_pid(other.pid).expect("add_pid");
    wait_traced_by(other.pid, our_pid());
    tracer.remove_pid(other.pid);
    wait_traced_by(other.pid, 0);
    assert!(traced_by(held.pid, our_pid()));
    drop(tracer);
    assert_fine_and_untraced(&mut held.client, held.pid);
}

/// CPU time (user + system, in clock ticks) used so far by thread `tid` of this process.
fn thread_cpu_ticks(tid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
        .unwrap_or_else(|e| panic!("thread {tid}: {e}"));
    let fields: Vec<&str> = stat[stat.rfind(')').expect("stat") + 2..]
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// The tracer thread sleeps while there is nothing to do (tracee idle, or gone).
fn assert_idle(tid: i32, what: &str) {
    let before = thread_cpu_ticks(tid);
    std::thread::sleep(Duration::from_millis(500));
    let used = thread_cpu_ticks(tid) - before;
    assert!(
        used <= 2,
        "tracer thread used {used} ticks in 500 ms {what}"
    );
}

#[test]
fn exit_is_reported_and_the_tracer_idles() {
    if !require_root() {
        return;
    }
    let cluster = Cluster::start(15);
    let held = cluster.hold_backend("postgres");
    let pid = held.pid;
    let mut tracer = PtraceTracer::attach(&[pid]).expect("attach");
    wait_traced_by(pid, our_pid());
    // TracerPid is the tracing thread: ours.
    let tid = tracer_pid(pid).expect("TracerPid");
    assert_idle(tid, "while the backend waits for its client");

    // The client goes: the backend exits 0, is reported, and is reaped by the postmaster
    // (a tracer that does not collect the exit would leave it a zombie).
    drop(held.client);
    let mut events = Vec::new();
    wait_until(Duration::from_secs(10), "the Exit event", || {
        tracer.poll(&mut events).expect("poll");
        events
            .iter()
            .any(|e| e.pid == pid && matches!(e.kind, EventKind::Exit { .. }))
    });
    let exit = events
        .iter()
        .find(|e| e.pid == pid && matches!(e.kind, EventKind::Exit { .. }))
        .expect("exit");
    assert_eq!(
        exit.kind,
        EventKind::Exit {
            code: Some(0),
            signal: None
        }
    );
    assert!(
        support::wait_process_gone(pid, Duration::from_secs(10)),
        "backend {pid} still there"
    );
    wait_until(Duration::from_secs(10), "the backend to be reaped", || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    });
    assert_idle(tid, "with nothing left to trace");
    assert_eq!(
        cluster.psql("postgres", "SELECT 1")[0][0].as_deref(),
        Some("1")
    );
    tracer.detach();
    tracer.detach(); // idempotent
}

#[test]
fn drop_while_unwinding_detaches() {
    if !require_root() {
        return;
    }
    let cluster = Cluster::start(15);
    let mut held = cluster.hold_backend("postgres");
    let pid = held.pid;
    let r = std::panic::catch_unwind(|| {
        let _tracer = PtraceTracer::attach(&[pid]).expect("attach");
        wait_traced_by(pid, our_pid());
        panic!("boom while tracing");
    });
    assert!(r.is_err());
    // Detached by Drop during the unwinding, before catch_unwind returned.
    assert_eq!(tracer_pid(pid), Some(0));
    assert_fine_and_untraced(&mut held.client, pid);
}

/// Real-time signals (which PostgreSQL does not use, but a tracee may get) are passed on
/// as they are, and the tracee's exit status still reaches its parent.
#[test]
fn real_time_signals_pass_through() {
    if !require_root() {
        return;
    }
    const INNER: &str =
        "trap 'echo got; exit 7' RTMIN+3; echo ready $$; while :; do sleep 0.05; done";
    // The traced shell is the child of another shell, which reports its exit status.
    let mut outer = Command::new("bash")
        .args([
            "-c",
            "bash -c \"$0\" & wait $!; echo inner exited $?",
            INNER,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn bash");
    let (tx, lines) = mpsc::channel();
    let stdout = outer.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = || {
        lines
            .recv_timeout(Duration::from_secs(10))
            .expect("a line from the shells")
    };
    let ready = next();
    let pid: i32 = ready
        .strip_prefix("ready ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected line {ready:?}"));
    let mut tracer = PtraceTracer::attach(&[pid]).expect("attach");
    wait_traced_by(pid, our_pid());
    kill(pid, libc::SIGRTMIN() + 3);
    assert_eq!(
        next(),
        "got",
        "the real-time signal did not reach the traced shell"
    );
    assert_eq!(
        next(),
        "inner exited 7",
        "the parent did not get the exit status"
    );
    assert!(outer.wait().expect("wait").success());
    let mut events = Vec::new();
    wait_until(Duration::from_secs(10), "the Exit event", || {
        tracer.poll(&mut events).expect("poll");
        events.iter().any(|e| {
            e.pid == pid
                && e.kind
                    == EventKind::Exit {
                        code: Some(7),
                        signal: None,
                    }
        })
    });
}

/// Our own children are refused: their exit status would never reach us as their parent.
#[test]
fn own_children_are_refused() {
    if !require_root() {
        return;
    }
    let mut child = Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep");
    let pid = child.id() as i32;
    let e = PtraceTracer::attach(&[pid])
        .err()
        .expect("attach to own child");
    assert!(e.to_string().contains("child of pg_trace"), "{e}");
    assert_eq!(tracer_pid(pid), Some(0));
    kill(pid, libc::SIGKILL);
    child.wait().expect("wait");
}
