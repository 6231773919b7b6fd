//! Capture: attach to processes and turn what they do into [`Event`]s.

pub mod combined;
pub mod cost;
pub mod ebpf;
pub mod event;
pub mod follow;
mod libbpf;
pub mod procfs;
pub mod ptrace;
pub mod replay;
pub mod usdt;

pub use event::{
    monotonic_ns, BlockIo, BlockProbe, Event, EventKind, FollowerRole, IoOp, Pid, QueryPhase,
    Syscall,
};

/// Counters every tracer keeps; shown in the header and in JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TracerStats {
    pub events: u64,
    /// Lost events by cause, e.g. ("ring buffer full", 12).
    pub lost: Vec<(String, u64)>,
}

/// One capture method. The main loop owns it and calls `poll` on a timer: tracers never
/// call back into the model and never block the traced process on us.
pub trait Tracer {
    /// "ebpf", "ptrace", "procfs", "replay".
    fn name(&self) -> &'static str;
    /// Start following one more process (a parallel worker, an io worker).
    fn add_pid(&mut self, pid: Pid) -> anyhow::Result<()>;
    /// Stop following a process (it exited, or it is no longer a follower).
    fn remove_pid(&mut self, pid: Pid);
    /// Move every event captured since the last call into `out`, oldest first; non-blocking.
    fn poll(&mut self, out: &mut Vec<Event>) -> anyhow::Result<()>;
    fn stats(&self) -> TracerStats;
    /// Detach from everything; also done on drop. Idempotent.
    fn detach(&mut self);
    /// Whether it can tell whose reads a PG18 io worker performs ([`EventKind::IoWorkerRead`]).
    /// Io workers read for the whole cluster: a tracer that cannot tell is not given them.
    fn attributes_io_workers(&self) -> bool {
        false
    }
    /// Whether requests a traced process submits through io_uring are seen (as reads and
    /// writes on its descriptors), else why not. They pass no read system call: PostgreSQL
    /// 18 with io_method=io_uring reads its data files that way.
    fn io_uring_capture(&self) -> Result<(), String> {
        Err(format!(
            "the {} tracer does not see io_uring requests",
            self.name()
        ))
    }
    /// Trace every child a traced process forks from its first instruction (copier mode:
    /// a worker that starts reading the moment it forks). An error when the tracer can
    /// only find children by polling.
    fn follow_forks(&mut self) -> anyhow::Result<()> {
        anyhow::bail!("{} finds children only by polling", self.name())
    }
    /// What this tracer cannot see, shown once (e.g. "/proc polling: pread offsets are
    /// invisible, only file positions and sizes").
    fn limitations(&self) -> Vec<String> {
        Vec::new()
    }
    /// Whether a traced process is stopped by a signal of its own (SIGSTOP, SIGTSTP…)
    /// rather than by the tracer: only a tracer that stops processes can tell.
    fn stopped_by_signal(&self, _pid: Pid) -> bool {
        false
    }
    /// Time every read, write and sync call of the traced processes from entry to exit
    /// ([`EventKind::IoLatency`]; `--io-latency`).
    fn enable_io_latency(&mut self) -> anyhow::Result<()> {
        anyhow::bail!(
            "--io-latency needs the eBPF backend ({} cannot time calls)",
            self.name()
        )
    }
    /// Watch every write of `pid`'s `wait_event_info`, at `addr` in its address space
    /// ([`EventKind::WaitTransition`]; `--exact-waits`).
    fn watch_wait_event(&mut self, _pid: Pid, _addr: u64) -> anyhow::Result<()> {
        anyhow::bail!("--exact-waits needs the eBPF backend, not {}", self.name())
    }
    /// The cumulative times the kernel keeps per traced process ([`EventKind::SchedTimes`]),
    /// as of now; called once per tick (a map walk and a few system calls each time: not
    /// at every poll).
    fn kernel_times(&mut self, _out: &mut Vec<Event>) {}
    /// The run time of this tracer's BPF programs so far, cumulative (read by the caller
    /// once an interval: a few syscalls).
    fn probe_cost(&self) -> cost::ProbeCost {
        cost::ProbeCost::NotBpf
    }
}
