//! The tracer's side of "where the time goes": which of the scheduler, I/O latency and
//! watchpoint programs run, and how their output joins the tracer's poll.

use super::{io_latency, sched, wait_watch, EbpfTracer};
use crate::trace::{monotonic_ns, Event, EventKind, Pid};

#[derive(Default)]
pub(super) struct KernelTime {
    /// Which scheduler program was loaded (None before the load).
    pub(super) variant: Option<sched::Variant>,
    pub(super) sched: Option<sched::SchedWatch>,
    /// The bench's empty program on sched_switch, when asked for.
    pub(super) empty: Option<libbpf_rs::Link>,
    pub(super) io: Option<io_latency::IoLatencyWatch>,
    pub(super) waits: Option<wait_watch::WaitWatch>,
    /// Why something is not measured, for `limitations`.
    pub(super) notes: Vec<String>,
    /// Lost records already reported: (I/O latency, wait transitions, garbled).
    reported: [u64; 3],
    garbled: u64,
}

impl KernelTime {
    pub(super) fn detach(&mut self) {
        self.empty = None;
        if let Some(s) = self.sched.as_mut() {
            s.detach();
        }
        if let Some(i) = self.io.as_mut() {
            i.detach();
        }
        if let Some(w) = self.waits.as_mut() {
            w.detach();
        }
    }
}

impl EbpfTracer {
    /// The scheduler programs, on by default; their failure only leaves the CPU figures
    /// unmeasured (said in the limitations).
    pub(super) fn attach_sched(&mut self) {
        if super::own_pid_namespace().is_some() {
            self.kernel.notes.push(
                "scheduler times: not measured when pg_trace runs in a PID namespace of its own"
                    .into(),
            );
            return;
        }
        if !sched::kernel_keeps_sched_info() {
            self.kernel.notes.push(
                "scheduler times: not measured (this kernel keeps no per-task scheduler \
                 accounting: CONFIG_SCHED_INFO)"
                    .into(),
            );
            return;
        }
        let Some(skel) = self.skel.as_mut() else {
            return;
        };
        let variant = self.kernel.variant.unwrap_or(sched::Variant::TaskState);
        // Every thread's record before the programs run (they never open a window).
        for &pid in &self.pids {
            sched::SchedWatch::seed(skel, pid);
        }
        match sched::SchedWatch::attach(skel, variant) {
            Ok(w) => {
                if variant == sched::Variant::TaskState {
                    self.kernel.notes.push(sched::TASK_STATE_NOTE.into());
                }
                self.kernel.sched = Some(w);
            }
            Err(e) => self.kernel.notes.push(format!("{e:#}")),
        }
    }

    /// Detaches the scheduler programs (for the benchmark that measures what they cost).
    pub fn stop_scheduler_times(&mut self) {
        if let Some(mut w) = self.kernel.sched.take() {
            w.detach();
        }
    }

    /// The kernel's BPF statistics of the scheduler program alone: (run time ns,
    /// runs), summed; None when they are not attached or the kernel does not count (for
    /// the benchmark that measures what they cost).
    pub fn scheduler_program_cost(&self) -> Option<(u64, u64)> {
        self.kernel.sched.as_ref()?;
        if self.run_time_stats.unmeasured().is_some() {
            return None;
        }
        let skel = self.skel.as_ref()?;
        let progs = [
            &skel.progs.pgt_sched_switch,
            &skel.progs.pgt_sched_switch_old,
        ];
        let (ns, runs, _) = crate::trace::libbpf::prog_counters_of(progs.into_iter());
        Some((ns, runs))
    }

    /// The kernel's BPF statistics of the `block_bio_queue` program of `--io-latency`:
    /// (run time ns, runs); None when it is not attached or the kernel does not count (for
    /// the benchmark that measures what it costs every bio of the machine).
    pub fn bio_program_cost(&self) -> Option<(u64, u64)> {
        self.kernel.io.as_ref()?;
        if self.run_time_stats.unmeasured().is_some() {
            return None;
        }
        let skel = self.skel.as_ref()?;
        if !skel.progs.pgt_bio_queue.autoload() {
            return None;
        }
        let progs = [&skel.progs.pgt_bio_queue];
        let (ns, runs, _) = crate::trace::libbpf::prog_counters_of(progs.into_iter());
        Some((ns, runs))
    }

    /// Whether the scheduler program is the old one (kernels before 5.18), which reads
    /// the state a thread left in from the task (see `sched.rs`).
    pub fn scheduler_reads_task_state(&self) -> bool {
        self.kernel.variant == Some(sched::Variant::TaskState)
    }

    /// For the benchmark: an empty program on sched_switch, loaded by
    /// [`EbpfTracer::attach_with_empty_sched_program`]; its run time under the BPF
    /// statistics is their own clock reads and the dispatch, the floor of any program
    /// there. (run time ns, runs); None when not loaded or not counted.
    pub fn empty_program_cost(&self) -> Option<(u64, u64)> {
        self.kernel.empty.as_ref()?;
        if self.run_time_stats.unmeasured().is_some() {
            return None;
        }
        let skel = self.skel.as_ref()?;
        let progs = [&skel.progs.pgt_sched_switch_empty];
        let (ns, runs, _) = crate::trace::libbpf::prog_counters_of(progs.into_iter());
        Some((ns, runs))
    }

    /// Attaches the loaded empty program (see [`Self::empty_program_cost`]).
    pub(super) fn attach_empty(&mut self) -> anyhow::Result<()> {
        let skel = self.skel()?;
        let link = skel.progs.pgt_sched_switch_empty.attach()?;
        self.kernel.empty = Some(link);
        Ok(())
    }

    /// Before `pid` is traced (see [`sched::SchedWatch::seed`]).
    pub(super) fn seed_sched(&mut self, pid: Pid) {
        if let (Some(_), Some(skel)) = (self.kernel.sched.as_ref(), self.skel.as_mut()) {
            sched::SchedWatch::seed(skel, pid);
        }
    }

    pub(super) fn forget_sched(&mut self, pid: Pid) {
        if let (Some(w), Some(skel)) = (self.kernel.sched.as_ref(), self.skel.as_ref()) {
            w.forget(skel, pid);
        }
    }

    pub(super) fn enable_io_latency_watch(&mut self) -> anyhow::Result<()> {
        if self.kernel.io.is_some() {
            return Ok(());
        }
        let classified = self.kernel.sched.is_some();
        let skel = self
            .skel
            .as_mut()
            .filter(|_| !self.detached)
            .ok_or_else(|| anyhow::anyhow!("eBPF: the tracer is detached"))?;
        self.kernel.io = Some(io_latency::IoLatencyWatch::attach(skel, classified)?);
        if !classified {
            self.kernel.notes.push(
                "--io-latency: page cache and disk not told apart (no scheduler programs)".into(),
            );
        }
        Ok(())
    }

    pub(super) fn watch_wait_event_at(&mut self, pid: Pid, addr: u64) -> anyhow::Result<()> {
        if self.kernel.waits.is_some() {
            anyhow::bail!("--exact-waits: one backend is watched already");
        }
        let skel = self.skel()?;
        self.kernel.waits = Some(wait_watch::WaitWatch::attach(skel, pid, addr)?);
        Ok(())
    }

    /// The scheduler times of every traced process, as of now (a map walk over the traced
    /// threads, a few system calls: once per tick, not per poll).
    pub(super) fn read_kernel_times(&mut self, out: &mut Vec<Event>) {
        if let (Some(w), Some(skel)) = (self.kernel.sched.as_ref(), self.skel.as_ref()) {
            w.read(skel, &self.pids, out);
        }
    }

    /// The scheduler times of one traced process, as of now (one that has exited, before
    /// they are forgotten).
    pub(super) fn read_sched_of(&self, pid: Pid, out: &mut Vec<Event>) {
        if let (Some(w), Some(skel)) = (self.kernel.sched.as_ref(), self.skel.as_ref()) {
            w.read(skel, &[pid], out);
        }
    }

    /// After the events ring buffer: the timed calls and wait transitions, then what
    /// could not be delivered.
    pub(super) fn poll_kernel_time(&mut self, out: &mut Vec<Event>) {
        if let Some(io) = self.kernel.io.as_ref() {
            self.kernel.garbled += io.drain(out);
        }
        if let Some(w) = self.kernel.waits.as_ref() {
            self.kernel.garbled += w.drain(out);
        }
        let Some(bss) = self.skel.as_ref().and_then(|s| s.maps.bss_data.as_deref()) else {
            return;
        };
        let counts = [bss.io_lat_lost, bss.wait_trans_lost, self.kernel.garbled];
        let causes = [
            "I/O latency records dropped (ring buffer full)",
            "wait transitions dropped (ring buffer full)",
            "garbled record",
        ];
        let pid = self.pids.first().copied().unwrap_or(0);
        for i in 0..3 {
            if counts[i] > self.kernel.reported[i] {
                out.push(Event {
                    ts_ns: monotonic_ns(),
                    pid,
                    kind: EventKind::Lost {
                        cause: causes[i].to_string(),
                        count: counts[i] - self.kernel.reported[i],
                    },
                });
                self.kernel.reported[i] = counts[i];
            }
        }
    }
}
