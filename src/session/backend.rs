//! Which capture method to attach with: `--backend` as asked, or for `auto` the best
//! syscall tracer that works (eBPF, else /proc polling) plus USDT probes when the binary
//! has them. Why a method was passed over is said once.
//!
//! `auto` never picks ptrace: it stops the backend twice per system call (6.6× slower on a
//! cache-warm scan), and a default must never slow a production backend. ptrace is there
//! when asked for, and then its cost is said at attach (the tracer's limitations). A
//! method our capabilities cannot use is passed over before it is tried, with the
//! capability it lacks as the reason.

use crate::cli::BackendChoice;
use crate::pgdata::DataDir;
use crate::process::identity::{ExitedWhileAttaching, Identity};
use crate::process::proc::may_use_bpf;
use crate::trace::combined::Combined;
use crate::trace::usdt::{UsdtConfig, UsdtStatus, UsdtTracer};
use crate::trace::{Pid, Tracer};
use anyhow::{anyhow, bail, Result};

/// The syscall tracers, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallMethod {
    Ebpf,
    Ptrace,
    Procfs,
}

impl SyscallMethod {
    /// What `auto` tries, in order: never ptrace (see the module documentation).
    const FALLBACK_ORDER: [SyscallMethod; 2] = [SyscallMethod::Ebpf, SyscallMethod::Procfs];

    fn attach(self, pid: Pid) -> Result<Box<dyn Tracer>> {
        Ok(match self {
            SyscallMethod::Ebpf => {
                may_use_bpf().map_err(|why| anyhow!("eBPF unavailable: {why}"))?;
                Box::new(crate::trace::ebpf::EbpfTracer::attach(&[pid])?)
            }
            SyscallMethod::Ptrace => Box::new(crate::trace::ptrace::PtraceTracer::attach(&[pid])?),
            SyscallMethod::Procfs => Box::new(crate::trace::procfs::ProcfsTracer::attach(&[pid])?),
        })
    }

    /// How the fallback is said: "…; falling back to /proc polling".
    fn said(self) -> &'static str {
        match self {
            SyscallMethod::Ebpf => "eBPF",
            SyscallMethod::Ptrace => "ptrace",
            SyscallMethod::Procfs => "/proc polling",
        }
    }

    /// The name of this method joined with USDT probes.
    fn with_usdt(self) -> &'static str {
        match self {
            SyscallMethod::Ebpf => "ebpf+usdt",
            SyscallMethod::Ptrace => "ptrace+usdt",
            SyscallMethod::Procfs => "procfs+usdt",
        }
    }
}

/// What `--backend` asks for, decided once from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// USDT probes alone, or a clear error.
    UsdtOnly,
    /// The best syscall tracer that attaches, plus USDT when the binary has probes.
    Auto,
    /// One syscall tracer alone.
    Only(SyscallMethod),
}

impl From<BackendChoice> for Plan {
    fn from(c: BackendChoice) -> Plan {
        match c {
            BackendChoice::Auto => Plan::Auto,
            BackendChoice::Usdt => Plan::UsdtOnly,
            BackendChoice::Ebpf => Plan::Only(SyscallMethod::Ebpf),
            BackendChoice::Ptrace => Plan::Only(SyscallMethod::Ptrace),
            BackendChoice::Procfs => Plan::Only(SyscallMethod::Procfs),
        }
    }
}

/// Try each method in turn for `auto`; say once on stderr why each fallback happened.
/// USDT with the defaults; see [`attach_with`].
pub fn attach(choice: BackendChoice, pid: Pid) -> Result<Box<dyn Tracer>> {
    let id = Identity::open(pid)?;
    while_attaching(&id, || {
        let major = DataDir::from_pid(pid)?.major;
        let mut note = |n: String| eprintln!("pg_trace: {n}");
        Ok(attach_with(choice, pid, major, &UsdtConfig::default(), true, &mut note)?.0)
    })
}

/// Runs the steps of an attach to the process `id` pins (locate its data directory,
/// attach the tracer, take the first snapshot...), each of which works by pid. It ends
/// - attached, when the process is still running afterwards: every step was then about
///   it, and its exit is still to come, so the tracer will see it (see
///   [`Identity::is_running`]);
/// - `pid N exited while attaching` when it is not, whatever the steps said on the way
///   (a missing `/proc` file, a refusal that looks like a permission problem, an attach
///   to whoever took the pid): what was attached is dropped, which detaches it;
/// - the steps' own error otherwise.
pub fn while_attaching<T>(id: &Identity, steps: impl FnOnce() -> Result<T>) -> Result<T> {
    let r = steps();
    test_pause("attached");
    if id.is_running() {
        return r;
    }
    drop(r);
    Err(ExitedWhileAttaching { pid: id.pid() }.into())
}

/// Debug builds only: with `PG_TRACE_TEST_PAUSE=POINT:FIFO` the attach stops at `point`
/// ("pinned": `catalog`, `resolve`, `ps` or `probes -p` has pinned its process;
/// "located": the data directory found, nothing attached; "attached": everything
/// attached, not yet confirmed) until the test that made the FIFO closes its end. Opening
/// the FIFO blocks until the test opens it for writing, which tells the test we are
/// there: no sleeps on either side. Lets tests/pid_reuse.rs end the process at exactly
/// that step. Compiled out of release builds.
pub fn test_pause(point: &str) {
    #[cfg(debug_assertions)]
    if let Some(v) = std::env::var_os("PG_TRACE_TEST_PAUSE") {
        let v = v.to_string_lossy();
        if let Some(path) = v.strip_prefix(point).and_then(|r| r.strip_prefix(':')) {
            if let Ok(mut f) = std::fs::File::open(path) {
                let mut rest = Vec::new();
                let _ = std::io::Read::read_to_end(&mut f, &mut rest);
            }
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = point;
}

/// The best syscall tracer that attaches; why a method was passed over goes to `note`
/// (the TUI owns the terminal: no stderr there).
fn best_syscall_tracer(
    pid: Pid,
    note: &mut dyn FnMut(String),
) -> Result<(SyscallMethod, Box<dyn Tracer>)> {
    let mut methods = SyscallMethod::FALLBACK_ORDER.iter().copied().peekable();
    while let Some(m) = methods.next() {
        match m.attach(pid) {
            Ok(t) => return Ok((m, t)),
            Err(e) => match methods.peek() {
                Some(next) => note(format!("{e:#}; falling back to {}", next.said())),
                None => return Err(e),
            },
        }
    }
    unreachable!("FALLBACK_ORDER is not empty")
}

/// USDT probes for `pid`, after checking we may load them and saying what the per-block
/// ones will cost it when it is busy (`memory`: whether its counters may be read).
fn attach_usdt(
    pid: Pid,
    major: u32,
    usdt: &UsdtConfig,
    memory: bool,
    note: &mut dyn FnMut(String),
) -> Result<UsdtTracer> {
    may_use_bpf().map_err(|why| anyhow!("USDT unavailable: {why}"))?;
    // Only probes the binary offers will go on; without any, the attach below says why.
    let offered = crate::trace::usdt::discover(pid).unwrap_or_default();
    let going_on: Vec<&str> = (usdt.probes.names().into_iter())
        .filter(|w| offered.iter().any(|(o, _)| o == w))
        .collect();
    if memory && super::usdt_cost::fires_per_access(&going_on) {
        // Unreadable counters (another user's process without CAP_SYS_PTRACE, a binary
        // without the symbol) leave the cost unsaid; the attach itself goes on.
        if let Ok(rate) = super::usdt_cost::accesses_per_s(pid) {
            if let Some(n) = super::usdt_cost::cost_note(pid, rate, &going_on) {
                note(n);
            }
        }
    }
    UsdtTracer::attach(pid, major, &usdt.probes)
}

/// `--backend usdt`: USDT alone, or one clear error. `auto`: the syscall tracer plus USDT
/// when the binary has probes (else it says once why not and carries on). An explicit
/// syscall backend runs alone. `memory`: false for `--no-memory` (the backend's buffer
/// counters are then not read to say what USDT will cost).
pub fn attach_with(
    choice: BackendChoice,
    pid: Pid,
    major: u32,
    usdt: &UsdtConfig,
    memory: bool,
    note: &mut dyn FnMut(String),
) -> Result<(Box<dyn Tracer>, UsdtStatus)> {
    match Plan::from(choice) {
        Plan::UsdtOnly => {
            if !usdt.enabled {
                bail!("--backend usdt and --no-usdt contradict each other");
            }
            let t = attach_usdt(pid, major, usdt, memory, note)?;
            let status = t.status();
            Ok((Box::new(t), status))
        }
        Plan::Auto => {
            let (method, sys) = best_syscall_tracer(pid, note)?;
            if !usdt.enabled {
                return Ok((sys, UsdtStatus::off("disabled with --no-usdt")));
            }
            match attach_usdt(pid, major, usdt, memory, note) {
                Ok(u) => {
                    let status = u.status();
                    let both = Combined::new(method.with_usdt(), vec![sys, Box::new(u)]);
                    Ok((Box::new(both), status))
                }
                Err(e) => {
                    let why = format!("{e:#}");
                    note(format!("{why}; carrying on with {} alone", sys.name()));
                    Ok((sys, UsdtStatus::off(why)))
                }
            }
        }
        Plan::Only(method) => {
            let sys = method.attach(pid)?;
            let why = format!("not used with --backend {}", sys.name());
            Ok((sys, UsdtStatus::off(why)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_choice_has_a_plan() {
        assert_eq!(Plan::from(BackendChoice::Auto), Plan::Auto);
        assert_eq!(Plan::from(BackendChoice::Usdt), Plan::UsdtOnly);
        assert_eq!(
            Plan::from(BackendChoice::Ptrace),
            Plan::Only(SyscallMethod::Ptrace)
        );
        assert_eq!(SyscallMethod::Procfs.with_usdt(), "procfs+usdt");
        // A default that never slows a backend: ptrace only when asked.
        assert!(!SyscallMethod::FALLBACK_ORDER.contains(&SyscallMethod::Ptrace));
        assert_eq!(SyscallMethod::FALLBACK_ORDER[0], SyscallMethod::Ebpf);
    }
}
