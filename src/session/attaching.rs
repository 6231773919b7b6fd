//! The TUI's attach off its own thread: loading and verifying the BPF programs and
//! registering the USDT uprobes take from a few hundred ms to seconds, and the first frame
//! must not wait for them. The session draws from /proc, its memory and the catalog at
//! once (the /proc fd walk seeds the files already open), while this thread attaches
//! and hands each tracer over as it goes live ([`Step`]s through a channel, drained by the
//! session's poll); until the first one, a [`Waiting`] tracer stands in.

use super::backend::{attach_steps, Step};
use crate::cli::BackendChoice;
use crate::process::identity::{ExitedWhileAttaching, Identity};
use crate::trace::usdt::UsdtConfig;
use crate::trace::{Event, Pid, Tracer, TracerStats};
use anyhow::{anyhow, Result};
use std::sync::mpsc::{channel, Receiver, TryRecvError};

/// What the attach thread says, in order: steps, then once how it ended.
pub enum Msg {
    Step(Step),
    /// Every step done (Ok), or why the attach failed: then the session stops capturing.
    Done(Result<()>),
}

/// An attach under way on its thread.
pub struct Pending {
    rx: Receiver<Msg>,
}

/// What the thread needs to know of the session's target.
pub struct Target {
    pub identity: Identity,
    pub backend: BackendChoice,
    pub major: u32,
    pub usdt: UsdtConfig,
    pub memory: bool,
    pub copier: bool,
}

impl Pending {
    /// Starts the attach of `t` on a thread of its own.
    pub fn spawn(t: Target) -> Result<Pending> {
        let (tx, rx) = channel();
        std::thread::Builder::new()
            .name("pg_trace-attach".into())
            .spawn(move || {
                let pid = t.identity.pid();
                // Lets tests/tui_tmux.rs see the first frame before any tracer is live.
                super::backend::test_pause("deferred");
                let r = attach_steps(
                    t.backend,
                    pid,
                    t.major,
                    &t.usdt,
                    t.memory,
                    t.copier,
                    // A session gone (the user quit, or picked another process) drops
                    // what was attached for it, which detaches it.
                    &mut |s| drop(tx.send(Msg::Step(s))),
                );
                // Every step worked by pid: about our process only if it still runs.
                let r = if t.identity.is_running() {
                    r
                } else {
                    Err(ExitedWhileAttaching { pid }.into())
                };
                let _ = tx.send(Msg::Done(r));
            })
            .map_err(|e| anyhow!("cannot start the attach thread: {e}"))?;
        Ok(Pending { rx })
    }

    /// What the thread has said since the last call; `Done` last if it is over.
    pub fn take(&mut self) -> Vec<Msg> {
        let mut v = Vec::new();
        loop {
            match self.rx.try_recv() {
                Ok(m) => {
                    let done = matches!(m, Msg::Done(_));
                    v.push(m);
                    if done {
                        break;
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    // It panicked (the panic hook has said why).
                    v.push(Msg::Done(Err(anyhow!("the attach thread stopped"))));
                    break;
                }
            }
        }
        v
    }
}

/// Stands in for the tracer until the attach thread hands one over: no events, no pids.
pub struct Waiting;

/// How the header names the capture until a tracer is live.
pub const ATTACHING: &str = "attaching…";

impl Tracer for Waiting {
    fn name(&self) -> &'static str {
        ATTACHING
    }
    fn add_pid(&mut self, pid: Pid) -> Result<()> {
        anyhow::bail!("pid {pid}: still attaching")
    }
    fn remove_pid(&mut self, _pid: Pid) {}
    fn poll(&mut self, _out: &mut Vec<Event>) -> Result<()> {
        Ok(())
    }
    fn stats(&self) -> TracerStats {
        TracerStats::default()
    }
    fn detach(&mut self) {}
}
