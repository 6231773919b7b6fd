//! The ptrace backend: follows one or a few processes syscall by syscall.
//!
//! Safe for the tracee by construction (docs/design.md, principle 4):
//! - `PTRACE_SEIZE`, never `PTRACE_ATTACH` (no SIGSTOP to collect: a tracer that dies early
//!   cannot leave the backend frozen in state T), with `PTRACE_O_TRACESYSGOOD` and never
//!   `PTRACE_O_EXITKILL`: if pg_trace is SIGKILLed the kernel detaches and the backend runs
//!   on. Syscall stops are turned on by a `PTRACE_INTERRUPT` and `PTRACE_SYSCALL`.
//! - Every signal the tracee receives is passed back on; group-stops (SIGSTOP, SIGTSTP...)
//!   are kept with `PTRACE_LISTEN`; our own `PTRACE_INTERRUPT` stop is never taken for a
//!   signal.
//! - Memory is only read (`process_vm_readv`, bounded); nothing is injected, no seccomp
//!   filter is installed, no register is written.
//! - Each stop is handled at once on a dedicated thread and never waits for the UI: events
//!   go to an unbounded channel capped by a counter, beyond which they are dropped and
//!   counted ("queue full").
//!
//! An event is made at the syscall's exit stop (so it carries the result) and stamped then;
//! path and iovec arguments are read at the entry stop, while they are sure to be valid.
//!
//! [`PtraceTracer`] is a handle on that thread: commands (add, remove, detach) go over a
//! channel, and a thread-directed real-time signal interrupts the thread's `waitpid` so
//! that it reads them at once; see [`worker`] for the stop loop.

mod decode;
mod remote;
mod sys;
mod worker;

use std::ffi::c_int;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use super::{monotonic_ns, Event, EventKind, Pid, Tracer, TracerStats};
use worker::{Command, Worker};

/// Events waiting for `poll` beyond which new ones are dropped and counted.
const QUEUE_CAP: usize = 1 << 18;
/// How often a command is re-signalled while its ack is awaited (covers the window in which
/// the wake-up lands just before the thread enters `waitpid`).
const KICK_INTERVAL: Duration = Duration::from_millis(10);
const ADD_TIMEOUT: Duration = Duration::from_secs(5);
const REMOVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longer than [`worker::DETACH_TIMEOUT`], after which the thread gives up by itself.
const DETACH_WAIT: Duration = Duration::from_secs(5);

/// Why events were lost; the labels are shown and recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LostCause {
    QueueFull = 0,
    PathTooLong = 1,
    Unreadable = 2,
}

const LOST_CAUSES: [LostCause; 3] = [
    LostCause::QueueFull,
    LostCause::PathTooLong,
    LostCause::Unreadable,
];

impl LostCause {
    fn label(self) -> &'static str {
        match self {
            LostCause::QueueFull => "queue full",
            LostCause::PathTooLong => "path too long (truncated)",
            LostCause::Unreadable => "tracee memory unreadable",
        }
    }
}

/// State shared by the handle and the tracer thread; lock-free on the stop path.
struct Shared {
    /// Events sent and not yet polled.
    queued: AtomicUsize,
    lost: [AtomicU64; LOST_CAUSES.len()],
    /// Why the thread stopped tracing on its own, if it did.
    fatal: Mutex<Option<String>>,
    /// Tracees in a group-stop (stopped by a signal, kept so with PTRACE_LISTEN): their
    /// `t` state is theirs, not one of our syscall stops. Touched only on group-stop
    /// transitions, never on the syscall stop path.
    group_stopped: Mutex<Vec<Pid>>,
}

impl Shared {
    fn set_group_stopped(&self, pid: Pid, on: bool) {
        let mut g = self.group_stopped.lock().unwrap_or_else(|e| e.into_inner());
        g.retain(|&p| p != pid);
        if on {
            g.push(pid);
        }
    }

    fn count_lost(&self, cause: LostCause) {
        self.lost[cause as usize].fetch_add(1, Ordering::Relaxed);
    }
}

/// Follows processes with ptrace. Create with [`PtraceTracer::attach`]; dropping it
/// detaches (also while unwinding from a panic).
pub struct PtraceTracer {
    commands: Option<Sender<Command>>,
    events: Receiver<Event>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// The tracer thread's kernel tid, for the wake-up signal.
    tid: Pid,
    wake: c_int,
    /// The pid `Lost` events are reported under.
    first_pid: Option<Pid>,
    delivered: u64,
    reported_lost: [u64; LOST_CAUSES.len()],
    failure_reported: bool,
}

impl PtraceTracer {
    /// Starts the tracer thread and seizes every pid in `pids`. Fails (detaching from any
    /// already seized) with a one-line reason if one cannot be traced.
    pub fn attach(pids: &[Pid]) -> anyhow::Result<PtraceTracer> {
        if pids.is_empty() {
            bail!("ptrace: no process to attach to");
        }
        // Yama's refusal, said in its own words before PTRACE_SEIZE fails with EPERM.
        ptrace_available().map_err(|why| anyhow!("ptrace: {why}"))?;
        let wake = wake_signal().map_err(|e| anyhow!(e))?;
        let (cmd_tx, cmd_rx) = mpsc::channel();
        let (ev_tx, ev_rx) = mpsc::channel();
        let (tid_tx, tid_rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            queued: AtomicUsize::new(0),
            lost: Default::default(),
            fatal: Mutex::new(None),
            group_stopped: Mutex::new(Vec::new()),
        });
        let worker = Worker::new(ev_tx, Arc::clone(&shared), cmd_rx);
        let thread = std::thread::Builder::new()
            .name("pg_trace-ptrace".into())
            .spawn(move || {
                worker::prepare_thread(wake);
                let _ = tid_tx.send(sys::gettid());
                worker.run();
            })
            .context("cannot start the ptrace thread")?;
        let tid = tid_rx
            .recv()
            .map_err(|_| anyhow!("the ptrace thread died at start"))?;
        let mut tracer = PtraceTracer {
            commands: Some(cmd_tx),
            events: ev_rx,
            shared,
            thread: Some(thread),
            tid,
            wake,
            first_pid: None,
            delivered: 0,
            reported_lost: [0; LOST_CAUSES.len()],
            failure_reported: false,
        };
        for &pid in pids {
            // On error `tracer` is dropped here, which detaches from those already seized.
            tracer.add_pid(pid)?;
        }
        Ok(tracer)
    }

    /// Wakes the tracer thread out of `waitpid` so that it reads its commands.
    fn kick(&self) {
        if let Some(t) = &self.thread {
            if !t.is_finished() {
                // A tid is only reused after the thread is gone; the check above keeps the
                // window tiny, and the signal's handler does nothing in any of our threads.
                let _ = sys::tgkill_self(self.tid, self.wake);
            }
        }
    }

    /// Sends `cmd` and waits for its ack, re-waking the thread every `KICK_INTERVAL`.
    fn call<T>(&self, cmd: Command, ack: &Receiver<T>, limit: Duration) -> Option<T> {
        self.commands.as_ref()?.send(cmd).ok()?;
        let start = Instant::now();
        loop {
            self.kick();
            match ack.recv_timeout(KICK_INTERVAL) {
                Ok(v) => return Some(v),
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) if start.elapsed() >= limit => return None,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }
}

impl Tracer for PtraceTracer {
    fn name(&self) -> &'static str {
        "ptrace"
    }

    fn stopped_by_signal(&self, pid: Pid) -> bool {
        let g = self
            .shared
            .group_stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        g.contains(&pid)
    }

    fn add_pid(&mut self, pid: Pid) -> anyhow::Result<()> {
        let (tx, rx) = mpsc::channel();
        match self.call(Command::Add { pid, ack: tx }, &rx, ADD_TIMEOUT) {
            Some(Ok(())) => {
                self.first_pid.get_or_insert(pid);
                Ok(())
            }
            Some(Err(e)) => Err(anyhow!(e)),
            None if self.thread.is_none() => bail!("ptrace: already detached"),
            None => bail!("ptrace: the tracer thread did not answer when adding pid {pid}"),
        }
    }

    fn remove_pid(&mut self, pid: Pid) {
        let (tx, rx) = mpsc::channel();
        // Acked once detached. A tracee that does not stop in time (uninterruptible sleep)
        // is detached at its next stop, after we return.
        let _ = self.call(Command::Remove { pid, ack: tx }, &rx, REMOVE_TIMEOUT);
    }

    fn poll(&mut self, out: &mut Vec<Event>) -> anyhow::Result<()> {
        let mut n = 0;
        while let Ok(ev) = self.events.try_recv() {
            out.push(ev);
            n += 1;
        }
        self.shared.queued.fetch_sub(n, Ordering::Relaxed);
        self.delivered += n as u64;
        for cause in LOST_CAUSES {
            let now = self.shared.lost[cause as usize].load(Ordering::Relaxed);
            let before = &mut self.reported_lost[cause as usize];
            if now > *before {
                out.push(Event {
                    ts_ns: monotonic_ns(),
                    pid: self.first_pid.unwrap_or(0),
                    kind: EventKind::Lost {
                        cause: cause.label().to_string(),
                        count: now - *before,
                    },
                });
                *before = now;
            }
        }
        if !self.failure_reported {
            let fatal = self.shared.fatal.lock().ok().and_then(|f| f.clone());
            let died = self.thread.as_ref().is_some_and(|t| t.is_finished());
            if fatal.is_some() || died {
                self.failure_reported = true;
                bail!(
                    "ptrace: tracing stopped: {}",
                    fatal.unwrap_or_else(|| "the tracer thread ended unexpectedly".into())
                );
            }
        }
        Ok(())
    }

    fn stats(&self) -> TracerStats {
        TracerStats {
            events: self.delivered,
            lost: LOST_CAUSES
                .iter()
                .filter_map(|&c| {
                    let n = self.shared.lost[c as usize].load(Ordering::Relaxed);
                    (n > 0).then(|| (c.label().to_string(), n))
                })
                .collect(),
        }
    }

    fn detach(&mut self) {
        if self.thread.is_none() {
            return;
        }
        let (tx, rx) = mpsc::channel();
        let _ = self.call(Command::Detach { ack: tx }, &rx, DETACH_WAIT);
        self.commands = None;
        let Some(thread) = self.thread.take() else {
            return;
        };
        // The thread exits right after its ack; make sure it is gone before returning.
        let start = Instant::now();
        while !thread.is_finished() && start.elapsed() < DETACH_WAIT {
            let _ = sys::tgkill_self(self.tid, self.wake);
            std::thread::sleep(KICK_INTERVAL);
        }
        if thread.is_finished() {
            // Err: the thread panicked; the kernel detached its tracees when it ended.
            let _ = thread.join();
        }
    }

    fn limitations(&self) -> Vec<String> {
        vec![
            "ptrace: each syscall of the backend stops twice: expect it to run several times \
             slower (6.6x on a cache-warm scan, docs/overhead.md; eBPF costs ~1.05x)"
                .into(),
            "ptrace: read/write/readv/writev offsets come from the tracked file position; \
             writes to sockets show as write, not send"
                .into(),
            "ptrace: child processes are not followed; parallel workers are added by pid".into(),
        ]
    }
}

impl Drop for PtraceTracer {
    fn drop(&mut self) {
        self.detach();
    }
}

/// Whether ptrace can be used here: Err with the reason if Yama forbids it.
pub fn ptrace_available() -> Result<(), String> {
    use crate::process::proc;
    scope_verdict(
        proc::ptrace_scope(),
        proc::has_capability(proc::CAP_SYS_PTRACE),
    )
}

/// `scope`: kernel.yama.ptrace_scope (None: no Yama); `cap`: we hold CAP_SYS_PTRACE.
fn scope_verdict(scope: Option<u32>, cap: bool) -> Result<(), String> {
    match scope {
        Some(3) => Err(
            "ptrace is disabled on this host: kernel.yama.ptrace_scope = 3 \
                        (only a reboot lowers it)"
                .into(),
        ),
        Some(2) if !cap => Err(
            "kernel.yama.ptrace_scope = 2 allows only CAP_SYS_PTRACE to \
                                attach: run as root, or see `setcap` in docs/usage.md"
                .into(),
        ),
        Some(1) if !cap => Err(
            "kernel.yama.ptrace_scope = 1 allows only a parent process or \
                                CAP_SYS_PTRACE to attach: run as root, or see `setcap` in \
                                docs/usage.md"
                .into(),
        ),
        _ => Ok(()),
    }
}

/// Does nothing: it exists so that the signal interrupts `waitpid` (EINTR) in the tracer
/// thread, which is the only thread it is ever sent to.
extern "C" fn on_wake(_: c_int) {}

/// The real-time signal that wakes tracer threads, installed once per process: the highest
/// one with the default disposition (nobody else uses it), with a no-op handler and without
/// SA_RESTART, so that a blocked `waitpid` returns EINTR.
fn wake_signal() -> Result<c_int, String> {
    static WAKE: OnceLock<Result<c_int, String>> = OnceLock::new();
    WAKE.get_or_init(|| {
        for sig in (libc::SIGRTMIN()..=libc::SIGRTMAX()).rev() {
            // SAFETY: sigaction structs are plain data, zeroed then filled; the first call
            // only reads the current disposition, the second installs a handler that is
            // async-signal-safe (it does nothing). OnceLock makes this run once.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) != 0
                    || old.sa_sigaction != libc::SIG_DFL
                {
                    continue;
                }
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = on_wake as extern "C" fn(c_int) as usize;
                sa.sa_flags = 0;
                libc::sigemptyset(&mut sa.sa_mask);
                if libc::sigaction(sig, &sa, std::ptr::null_mut()) == 0 {
                    return Ok(sig);
                }
            }
        }
        Err("ptrace: no free real-time signal to wake the tracer thread with".into())
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yama_scope() {
        assert!(scope_verdict(None, false).is_ok());
        assert!(scope_verdict(Some(0), false).is_ok());
        assert!(scope_verdict(Some(1), true).is_ok());
        assert!(scope_verdict(Some(2), true).is_ok());
        assert!(scope_verdict(Some(1), false).is_err());
        assert!(scope_verdict(Some(2), false).is_err());
        let e = scope_verdict(Some(3), true).unwrap_err();
        assert!(e.contains("ptrace_scope = 3"), "{e}");
    }

    #[test]
    fn wake_signal_is_stable_and_real_time() {
        let a = wake_signal().unwrap();
        assert_eq!(wake_signal().unwrap(), a);
        assert!((libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&a));
    }
}
