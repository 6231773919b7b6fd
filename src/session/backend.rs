//! Which capture method to attach with: `--backend` as asked, or for `auto` the best
//! syscall tracer that works (eBPF, else /proc polling) plus USDT probes when the binary
//! has them. Why a method was passed over is said once.
//!
//! `auto` never picks ptrace: it stops the backend twice per system call (6.6× slower on a
//! cache-warm scan), and a default must never slow a production backend. ptrace is there
//! when asked for, and then its cost is said at attach (the tracer's limitations). A
//! method our capabilities cannot use is passed over before it is tried, with the
//! capability it lacks as the reason.

use super::usdt_cost::UsdtCost;
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

    fn attach(self, pid: Pid) -> Result<Box<dyn Tracer + Send>> {
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
        Ok(attach_with(
            choice,
            pid,
            major,
            &UsdtConfig::default(),
            true,
            false,
            &mut note,
        )?
        .tracer)
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
/// attached, not yet confirmed; "deferred": the TUI's attach thread, before it attaches) until the test that made the FIFO closes its end. Opening
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
) -> Result<(SyscallMethod, Box<dyn Tracer + Send>)> {
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
/// ones will cost it when it is busy (`memory`: whether its counters may be read). The
/// cost, when it was computed, comes back with the tracer for the attach record.
fn attach_usdt(
    pid: Pid,
    major: u32,
    usdt: &UsdtConfig,
    memory: bool,
    note: &mut dyn FnMut(String),
) -> Result<(UsdtTracer, Option<UsdtCost>)> {
    may_use_bpf().map_err(|why| anyhow!("USDT unavailable: {why}"))?;
    // Only probes the binary offers will go on; without any, the attach below says why.
    let offered = crate::trace::usdt::discover(pid).unwrap_or_default();
    let going_on: Vec<&str> = (usdt.probes.names().into_iter())
        .filter(|w| offered.iter().any(|(o, _)| o == w))
        .collect();
    let mut cost = None;
    if memory && super::usdt_cost::fires_per_access(&going_on) {
        // Unreadable counters (another user's process without CAP_SYS_PTRACE, a binary
        // without the symbol) leave the cost unsaid; the attach itself goes on.
        if let Ok(rate) = super::usdt_cost::accesses_per_s(pid) {
            let c = super::usdt_cost::cost(rate, &going_on);
            if let Some(n) = super::usdt_cost::cost_note(pid, &c) {
                note(n);
            }
            cost = Some(c);
        }
    }
    Ok((UsdtTracer::attach(pid, major, &usdt.probes)?, cost))
}

/// One step of an attach, in the order they happen: the tracer that feeds events first
/// (the syscall tracer, or USDT alone for `--backend usdt`), then, for `auto`, USDT
/// joining it or why not. Notes (fallbacks, the USDT cost) come on the way.
pub enum Step {
    Note(String),
    /// Live from now on; `usdt` says whether USDT is in it (`--backend usdt`) or why not,
    /// when no [`Step::Usdt`] follows.
    Tracer {
        tracer: Box<dyn Tracer + Send>,
        usdt: Option<UsdtStatus>,
        cost: Option<UsdtCost>,
    },
    /// USDT probes to run beside the tracer already live, together named `name`.
    Usdt {
        tracer: Box<UsdtTracer>,
        status: UsdtStatus,
        cost: Option<UsdtCost>,
        name: &'static str,
    },
    /// `auto` carries on without USDT: why.
    UsdtOff(UsdtStatus),
}

/// The attach as [`Step`]s given to `step` as each is done (on the attach thread of a TUI,
/// so that the first frame does not wait for BPF verification and uprobe registration).
/// `copier`: the traced process is a copier of the data directory (no USDT, its children
/// followed from their fork).
pub fn attach_steps(
    choice: BackendChoice,
    pid: Pid,
    major: u32,
    usdt: &UsdtConfig,
    memory: bool,
    copier: bool,
    step: &mut dyn FnMut(Step),
) -> Result<()> {
    if copier {
        if choice == BackendChoice::Usdt {
            bail!("pid {pid} is a copier (not PostgreSQL): it has no USDT probes");
        }
        let mut note = |n: String| step(Step::Note(n));
        let mut t = match Plan::from(choice) {
            Plan::Only(m) => m.attach(pid)?,
            _ => best_syscall_tracer(pid, &mut note)?.1,
        };
        if let Err(e) = t.follow_forks() {
            note(format!(
                "copier mode: {e}: a child is found at the next poll, and reads it makes \
                 before that are missed"
            ));
        }
        step(Step::Tracer {
            tracer: t,
            usdt: Some(UsdtStatus::off("copier mode: not a PostgreSQL binary")),
            cost: None,
        });
        return Ok(());
    }
    match Plan::from(choice) {
        Plan::UsdtOnly => {
            if !usdt.enabled {
                bail!("--backend usdt and --no-usdt contradict each other");
            }
            let mut note = |n: String| step(Step::Note(n));
            let (t, cost) = attach_usdt(pid, major, usdt, memory, &mut note)?;
            let status = t.status();
            step(Step::Tracer {
                tracer: Box::new(t),
                usdt: Some(status),
                cost,
            });
        }
        Plan::Auto => {
            let mut note = |n: String| step(Step::Note(n));
            let (method, sys) = best_syscall_tracer(pid, &mut note)?;
            let name = sys.name();
            step(Step::Tracer {
                tracer: sys,
                usdt: None,
                cost: None,
            });
            if !usdt.enabled {
                step(Step::UsdtOff(UsdtStatus::off("disabled with --no-usdt")));
                return Ok(());
            }
            let mut notes = Vec::new();
            let r = attach_usdt(pid, major, usdt, memory, &mut |n| notes.push(n));
            for n in notes {
                step(Step::Note(n));
            }
            match r {
                Ok((u, cost)) => step(Step::Usdt {
                    status: u.status(),
                    tracer: Box::new(u),
                    cost,
                    name: method.with_usdt(),
                }),
                Err(e) => {
                    let why = format!("{e:#}");
                    step(Step::Note(format!("{why}; carrying on with {name} alone")));
                    step(Step::UsdtOff(UsdtStatus::off(why)));
                }
            }
        }
        Plan::Only(method) => {
            let sys = method.attach(pid)?;
            let why = format!("not used with --backend {}", sys.name());
            step(Step::Tracer {
                tracer: sys,
                usdt: Some(UsdtStatus::off(why)),
                cost: None,
            });
        }
    }
    Ok(())
}

/// The quick refusals of an explicit `--backend`, checked before an attach is put on a
/// thread (the TUI's): a missing capability, a binary without probes, contradicting
/// options are one line on a sane screen, not a capture that stops once drawn. `auto`
/// falls back instead, so it has none.
pub fn preflight(choice: BackendChoice, pid: Pid, usdt: &UsdtConfig) -> Result<()> {
    match Plan::from(choice) {
        Plan::UsdtOnly => {
            if !usdt.enabled {
                bail!("--backend usdt and --no-usdt contradict each other");
            }
            may_use_bpf().map_err(|why| anyhow!("USDT unavailable: {why}"))?;
            crate::trace::usdt::discover(pid)?;
        }
        Plan::Only(SyscallMethod::Ebpf) => {
            may_use_bpf().map_err(|why| anyhow!("eBPF unavailable: {why}"))?;
        }
        Plan::Only(_) | Plan::Auto => {}
    }
    Ok(())
}

/// What an attach gave, all steps folded.
pub struct Attached {
    pub tracer: Box<dyn Tracer>,
    pub usdt: UsdtStatus,
    pub cost: Option<UsdtCost>,
}

impl Attached {
    /// Folds one step into what is attached so far (None before the first tracer).
    /// Notes go to `note`.
    pub fn fold(
        so_far: Option<Attached>,
        step: Step,
        note: &mut dyn FnMut(String),
    ) -> Option<Attached> {
        match (so_far, step) {
            (so_far, Step::Note(n)) => {
                note(n);
                so_far
            }
            (_, Step::Tracer { tracer, usdt, cost }) => Some(Attached {
                tracer,
                usdt: usdt.unwrap_or_else(|| UsdtStatus::off("attaching…")),
                cost,
            }),
            (
                Some(a),
                Step::Usdt {
                    tracer,
                    status,
                    cost,
                    name,
                },
            ) => Some(Attached {
                tracer: Box::new(Combined::new(name, vec![a.tracer, tracer])),
                usdt: status,
                cost,
            }),
            (Some(a), Step::UsdtOff(status)) => Some(Attached { usdt: status, ..a }),
            // USDT news before any tracer: not produced by `attach_steps`.
            (None, Step::Usdt { .. } | Step::UsdtOff(_)) => None,
        }
    }
}

/// `--backend usdt`: USDT alone, or one clear error. `auto`: the syscall tracer plus USDT
/// when the binary has probes (else it says once why not and carries on). An explicit
/// syscall backend runs alone. `memory`: false for `--no-memory` (the backend's buffer
/// counters are then not read to say what USDT will cost). `copier`: see [`attach_steps`].
pub fn attach_with(
    choice: BackendChoice,
    pid: Pid,
    major: u32,
    usdt: &UsdtConfig,
    memory: bool,
    copier: bool,
    note: &mut dyn FnMut(String),
) -> Result<Attached> {
    let mut so_far = None;
    attach_steps(choice, pid, major, usdt, memory, copier, &mut |s| {
        so_far = Attached::fold(so_far.take(), s, note);
    })?;
    so_far.ok_or_else(|| anyhow!("no tracer attached"))
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
