//! Scheduler times of a traced process's threads on a real kernel (run as root): a thread
//! created after the attach is counted from its start, and one that exits before the
//! reading keeps its CPU time in its process's figures.
//!
//! The process is this test binary, re-executed with `PG_TRACE_SCHED_CHILD` set
//! (`child_threads_helper`): after a byte on stdin (the tracer attached by then), a thread
//! spins for 0.3 s of CPU and exits; then a second thread and the main thread block on
//! stdin, until the next byte. PostgreSQL backends are single-threaded, but a PG18 backend
//! with io_method=io_uring has io-wq threads that come and go like these.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pg_trace::trace::ebpf::EbpfTracer;
use pg_trace::trace::{Event, EventKind, Pid, Tracer};

const CHILD_ENV: &str = "PG_TRACE_SCHED_CHILD";
const SPIN: Duration = Duration::from_millis(300);

#[test]
fn child_threads_helper() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let mut stdin = std::io::stdin();
    let mut go = [0u8; 1];
    stdin.read_exact(&mut go).unwrap();
    // CPU time, not wall time: the thread's own clock.
    std::thread::spawn(|| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        let mut x = 0u64;
        loop {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
            // SAFETY: clock_gettime writes the timespec we own.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            if Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32) >= SPIN {
                break;
            }
        }
    })
    .join()
    .unwrap();
    let sleeper = std::thread::spawn(move || {
        let mut b = [0u8; 1];
        let _ = std::io::stdin().read_exact(&mut b);
    });
    println!("ready");
    std::io::stdout().flush().unwrap();
    sleeper.join().unwrap();
}

fn times(events: &[Event], pid: Pid) -> Option<[f64; 4]> {
    events.iter().rev().find_map(|e| match e.kind {
        EventKind::SchedTimes {
            running_ns,
            runqueue_ns,
            sleeping_ns,
            blocked_ns,
        } if e.pid == pid => {
            Some([running_ns, runqueue_ns, sleeping_ns, blocked_ns].map(|n| n as f64 / 1e9))
        }
        _ => None,
    })
}

#[test]
fn threads_born_and_gone_after_the_attach_are_counted() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_threads_helper",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as Pid;
    let mut tracer = EbpfTracer::attach(&[pid])
        .unwrap_or_else(|e| panic!("eBPF tracer must load (tests run as root with BPF): {e:#}"));
    let attached = Instant::now();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"g").unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    // (libtest may print the test's name on the same line first.)
    while !line.contains("ready") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the child ended early"
        );
    }
    let ready = Instant::now();
    // Both threads asleep on stdin now: let them sleep a while.
    std::thread::sleep(Duration::from_millis(400));
    let mut events = Vec::new();
    tracer.kernel_times(&mut events);
    let (slept, traced) = (
        ready.elapsed().as_secs_f64(),
        attached.elapsed().as_secs_f64(),
    );
    stdin.write_all(b"x").unwrap();
    drop(stdin);
    assert!(child.wait().unwrap().success());
    let [run, rq, s, d] =
        times(&events, pid).unwrap_or_else(|| panic!("no scheduler times: {events:?}"));
    eprintln!(
        "running {run:.3}s, run queue {rq:.3}s, S {s:.3}s, D {d:.3}s; traced {traced:.3}s, \
         both threads asleep for {slept:.3}s"
    );
    // The spinning thread had exited: its CPU time is its process's.
    assert!(
        run >= 0.9 * SPIN.as_secs_f64(),
        "running {run:.3}s, the exited thread spun {SPIN:?}"
    );
    // The sleeper, created after the attach, counts from its start beside the main thread.
    assert!(
        s >= 2.0 * 0.9 * slept,
        "S {s:.3}s: two threads slept {slept:.3}s each"
    );
    // Windows none longer than the trace: the main thread's, the spinner's, the
    // sleeper's, and libtest's own thread if it ran the test on one of its own.
    let sum = run + rq + s + d;
    assert!(
        sum <= traced * 4.0 + 0.05,
        "{sum:.3}s of scheduler time in {traced:.3}s of at most four threads"
    );
}
