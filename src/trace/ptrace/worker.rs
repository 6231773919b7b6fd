//! The tracer thread: the only thread that makes ptrace requests (the kernel ties tracees
//! to the thread that seized them). It waits for stops with `waitpid(-1, __WALL |
//! __WNOTHREAD)`, handles each at once and resumes the tracee, and between stops takes
//! commands from the [`super::PtraceTracer`] handle, which wakes it out of `waitpid` with a
//! thread-directed real-time signal (see `super::wake_signal`).
//!
//! The stop path does no blocking work: a `PTRACE_GETREGS`, at most two `process_vm_readv`
//! of the tracee's memory, a send on an unbounded channel (capped by a counter: beyond the
//! cap events are dropped and counted), and the resume. It never waits for the UI.

use std::collections::HashMap;
use std::ffi::c_int;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::trace::{monotonic_ns, Event, EventKind, Pid};

use super::decode::{self, Entry, Problem};
use super::remote::ProcessMemory;
use super::sys::{self, Wait, SYSCALL_STOP_SIG};
use super::{LostCause, Shared, QUEUE_CAP};

/// How long the detach of everything may wait for tracees to stop (one in uninterruptible
/// sleep on a hung disk may not stop for a long time). Past it the thread exits and the
/// kernel detaches what is left, exactly as if we had been killed.
pub const DETACH_TIMEOUT: Duration = Duration::from_secs(2);

pub enum Command {
    Add {
        pid: Pid,
        ack: Sender<Result<(), String>>,
    },
    Remove {
        pid: Pid,
        ack: Sender<()>,
    },
    Detach {
        ack: Sender<()>,
    },
}

/// Where a tracee is between its syscall-entry and syscall-exit stops.
enum InSyscall {
    /// A syscall that makes no event: only its number, to keep entry and exit paired.
    Other(u64),
    Traced(Entry),
}

impl InSyscall {
    fn nr(&self) -> u64 {
        match self {
            InSyscall::Other(nr) => *nr,
            InSyscall::Traced(e) => e.nr,
        }
    }
}

#[derive(Default)]
struct Tracee {
    in_syscall: Option<InSyscall>,
    /// Detach at the next stop (PTRACE_INTERRUPT has been sent to cause one).
    detach: bool,
    /// Sent once the tracee is detached or gone.
    acks: Vec<Sender<()>>,
    /// In a group-stop (SIGSTOP and the like): a stop of its own, not one of ours.
    group_stopped: bool,
}

pub struct Worker {
    tracees: HashMap<Pid, Tracee>,
    events: Sender<Event>,
    shared: Arc<Shared>,
    commands: Receiver<Command>,
    /// Reused buffer for strings and iovec arrays read from the tracee.
    scratch: Vec<u8>,
    problems: Vec<Problem>,
    /// Detaching from everything: until when we wait for the tracees to stop.
    detach_deadline: Option<Instant>,
    detach_acks: Vec<Sender<()>>,
}

/// Blocks every signal in the calling (tracer) thread except `wake`, SIGCHLD and the
/// synchronous ones, so that only our wake-up interrupts `waitpid`, and the program's own
/// signal handlers (Ctrl-C...) run on its other threads.
///
/// SIGCHLD stays unblocked on purpose: every ptrace stop sends one to this thread, and with
/// the default disposition an unblocked SIGCHLD is discarded as it is sent. Blocked here, it
/// would instead be queued to the process and wake another thread of the program per stop.
pub fn prepare_thread(wake: c_int) {
    // SAFETY: sigset_t is plain data initialised by sigfillset before use; sigdelset and
    // pthread_sigmask only read/write the sets we own and the calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for sig in [
            wake,
            libc::SIGCHLD,
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGFPE,
            libc::SIGILL,
            libc::SIGTRAP,
            libc::SIGABRT,
            libc::SIGSYS,
        ] {
            libc::sigdelset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

impl Worker {
    pub fn new(events: Sender<Event>, shared: Arc<Shared>, commands: Receiver<Command>) -> Self {
        Worker {
            tracees: HashMap::new(),
            events,
            shared,
            commands,
            scratch: Vec::with_capacity(16 * 1024),
            problems: Vec::new(),
            detach_deadline: None,
            detach_acks: Vec::new(),
        }
    }

    /// The thread's main loop; returns once detached from everything.
    pub fn run(mut self) {
        loop {
            self.drain_commands();
            if let Some(deadline) = self.detach_deadline {
                if self.tracees.is_empty() || Instant::now() >= deadline {
                    break;
                }
            } else if self.tracees.is_empty() {
                // Nothing to wait for: sleep until the next command.
                match self.commands.recv() {
                    Ok(cmd) => self.command(cmd),
                    Err(_) => break,
                }
                continue;
            }
            match sys::wait_any() {
                Ok(Wait::Status(pid, status)) => self.on_status(pid, status),
                Ok(Wait::Interrupted) => {}
                Ok(Wait::NoChildren) => {
                    // The kernel says we trace nothing: they are gone without a report.
                    for (_, t) in self.tracees.drain() {
                        ack_all(t.acks);
                    }
                }
                Err(e) => {
                    // Cannot happen with valid arguments. Without waitpid no stop can be
                    // handled: end the thread at once, and the kernel detaches everything.
                    self.fatal(format!("waitpid failed: {}", e.desc()));
                    break;
                }
            }
        }
        // Whatever is left (deadline passed) the kernel detaches when this thread exits.
        ack_all(std::mem::take(&mut self.detach_acks));
        for (_, t) in self.tracees.drain() {
            ack_all(t.acks);
        }
    }

    fn drain_commands(&mut self) {
        loop {
            match self.commands.try_recv() {
                Ok(cmd) => self.command(cmd),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    // The handle is gone without detaching (it always does in Drop, so
                    // this is a leak or a bug): never keep tracing for nobody.
                    if self.detach_deadline.is_none() {
                        self.start_detach_all();
                    }
                    return;
                }
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Add { pid, ack } => {
                let r = if self.detach_deadline.is_some() {
                    Err("the ptrace tracer is detaching".to_string())
                } else {
                    self.add(pid)
                };
                let _ = ack.send(r);
            }
            Command::Remove { pid, ack } => match self.tracees.get_mut(&pid) {
                Some(t) => {
                    t.acks.push(ack);
                    if !t.detach {
                        t.detach = true;
                        // Its next stop (this one, or an earlier one already queued)
                        // detaches it. ESRCH: it is dying and its exit will be reported.
                        let _ = sys::interrupt(pid);
                    }
                }
                None => {
                    let _ = ack.send(());
                }
            },
            Command::Detach { ack } => {
                self.detach_acks.push(ack);
                if self.detach_deadline.is_none() {
                    self.start_detach_all();
                }
            }
        }
    }

    fn add(&mut self, pid: Pid) -> Result<(), String> {
        if pid <= 0 {
            return Err(format!("no process {pid}"));
        }
        if let Some(t) = self.tracees.get_mut(&pid) {
            // Already traced. If a remove is pending, this add cancels it: the stop its
            // interrupt causes is handled like any other.
            if t.detach {
                t.detach = false;
                ack_all(std::mem::take(&mut t.acks));
            }
            return Ok(());
        }
        if crate::process::proc::parent_pid(pid) == Some(std::process::id() as Pid) {
            // Its exit would be collected by our waitpid and never reach its real parent
            // (the kernel treats a tracer in the parent's thread group as the parent).
            return Err(format!(
                "pid {pid} is a child of pg_trace itself: tracing it would take its exit \
                 status from its parent"
            ));
        }
        match sys::seize(pid) {
            Ok(()) => {}
            Err(nix::errno::Errno::ESRCH) => return Err(format!("no process {pid}")),
            Err(nix::errno::Errno::EPERM) => {
                return Err(format!(
                    "ptrace refused for pid {pid}: Operation not permitted (is it already \
                     traced, or does yama ptrace_scope forbid it?)"
                ))
            }
            Err(e) => return Err(format!("ptrace refused for pid {pid}: {}", e.desc())),
        }
        self.tracees.insert(pid, Tracee::default());
        // Seized tracees run on untouched; the stop this causes is where we turn on
        // syscall stops (PTRACE_SYSCALL). ESRCH: it died meanwhile, its exit will come.
        let _ = sys::interrupt(pid);
        Ok(())
    }

    fn start_detach_all(&mut self) {
        self.detach_deadline = Some(Instant::now() + DETACH_TIMEOUT);
        for (&pid, t) in self.tracees.iter_mut() {
            if !t.detach {
                t.detach = true;
                let _ = sys::interrupt(pid);
            }
        }
    }

    fn fatal(&self, msg: String) {
        if let Ok(mut f) = self.shared.fatal.lock() {
            f.get_or_insert(msg);
        }
    }

    /// Queues an event, or counts it lost if `QUEUE_CAP` events are waiting for `poll`
    /// (this thread is the only producer, so the check cannot race another send).
    fn emit(&self, pid: Pid, kind: EventKind) {
        if self.shared.queued.load(Ordering::Relaxed) >= QUEUE_CAP {
            self.shared.count_lost(LostCause::QueueFull);
            return;
        }
        self.emit_always(pid, kind);
    }

    /// Queues an event whatever the queue length: for the one Exit of each tracee.
    fn emit_always(&self, pid: Pid, kind: EventKind) {
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        let ev = Event {
            ts_ns: monotonic_ns(),
            pid,
            kind,
        };
        if self.events.send(ev).is_err() {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// One `waitpid` report.
    fn on_status(&mut self, pid: Pid, status: c_int) {
        if !self.tracees.contains_key(&pid) {
            // Already detached (a report that raced the detach), or a child of this thread
            // we never had: nothing of ours to resume.
            return;
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            let kind = if libc::WIFEXITED(status) {
                EventKind::Exit {
                    code: Some(libc::WEXITSTATUS(status)),
                    signal: None,
                }
            } else {
                EventKind::Exit {
                    code: None,
                    signal: Some(libc::WTERMSIG(status)),
                }
            };
            self.emit_always(pid, kind);
            if let Some(t) = self.tracees.remove(&pid) {
                ack_all(t.acks);
            }
            return;
        }
        if !libc::WIFSTOPPED(status) {
            return;
        }
        let sig = libc::WSTOPSIG(status);
        let event = status >> 16;
        // What to do with the stop: the signal to pass on, and whether the tracee is in a
        // group-stop (to be kept stopped with PTRACE_LISTEN rather than resumed).
        let (deliver, group_stop) = if sig == SYSCALL_STOP_SIG {
            self.on_syscall_stop(pid);
            (0, false)
        } else if event == libc::PTRACE_EVENT_STOP {
            // Under PTRACE_SEIZE both our PTRACE_INTERRUPT and a group-stop report
            // PTRACE_EVENT_STOP; the kernel reports the stopping signal (SIGSTOP, SIGTSTP,
            // SIGTTIN, SIGTTOU) while a group-stop is in effect, else SIGTRAP. Neither is a
            // signal to deliver.
            (0, sig != libc::SIGTRAP)
        } else if event != 0 {
            // Another PTRACE_EVENT_* (we enable none): nothing to deliver.
            (0, false)
        } else {
            // Signal-delivery-stop: pass the signal on, always. PostgreSQL lives on SIGUSR1
            // latches, SIGINT cancels and SIGALRM timeouts.
            (sig, false)
        };
        let Some(t) = self.tracees.get_mut(&pid) else {
            return;
        };
        if t.group_stopped != group_stop {
            t.group_stopped = group_stop;
            self.shared.set_group_stopped(pid, group_stop);
        }
        if t.detach {
            // A group-stopped tracee stays stopped after the detach: the kernel restores
            // the group-stop, as it would for any process stopped by SIGSTOP.
            let _ = sys::detach(pid, deliver);
            if let Some(t) = self.tracees.remove(&pid) {
                ack_all(t.acks);
            }
            return;
        }
        let r = if group_stop {
            sys::listen(pid)
        } else {
            sys::resume_syscall(pid, deliver)
        };
        if let Err(e) = r {
            if e != nix::errno::Errno::ESRCH {
                // ESRCH: killed (SIGKILL) while stopped; its exit will be reported.
                self.fatal(format!("ptrace could not resume pid {pid}: {}", e.desc()));
            }
        }
    }

    /// A syscall-entry or syscall-exit stop.
    fn on_syscall_stop(&mut self, pid: Pid) {
        let Ok(regs) = sys::getregs(pid) else {
            return; // killed while stopped
        };
        let Some(t) = self.tracees.get_mut(&pid) else {
            return;
        };
        // x86_64 sets rax to -ENOSYS on syscall entry, so a stop whose rax is anything else
        // is an exit. Entry and exit stops strictly alternate; this only resynchronises if
        // one was somehow missed.
        let looks_like_entry = regs.rax as i64 == -(libc::ENOSYS as i64);
        let is_exit = match &t.in_syscall {
            None => false,
            Some(s) => !(looks_like_entry && s.nr() != regs.orig_rax),
        };
        if is_exit {
            if let Some(InSyscall::Traced(entry)) = t.in_syscall.take() {
                if let Some(kind) = decode::finish(&entry, regs.rax as i64) {
                    self.emit(pid, kind);
                }
            }
            return;
        }
        if !looks_like_entry {
            // An exit whose entry we never saw: nothing to pair it with.
            t.in_syscall = None;
            return;
        }
        let nr = regs.orig_rax;
        if !decode::interesting(nr) {
            t.in_syscall = Some(InSyscall::Other(nr));
            return;
        }
        let args = [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9];
        self.problems.clear();
        let entry = decode::capture(
            nr,
            args,
            &mut ProcessMemory { pid },
            &mut self.scratch,
            &mut self.problems,
        );
        for p in &self.problems {
            self.shared.count_lost(match p {
                Problem::PathTooLong => LostCause::PathTooLong,
                Problem::Unreadable => LostCause::Unreadable,
            });
        }
        if let Some(t) = self.tracees.get_mut(&pid) {
            t.in_syscall = Some(InSyscall::Traced(entry));
        }
    }
}

fn ack_all(acks: Vec<Sender<()>>) {
    for a in acks {
        let _ = a.send(());
    }
}
