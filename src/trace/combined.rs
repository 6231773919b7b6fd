//! Several tracers as one: `auto` runs the syscall tracer (eBPF, ptrace or /proc) and the
//! USDT tracer side by side. Each poll merges their batches by timestamp (each batch is
//! already oldest first), so the model sees one stream.

use super::{Event, Pid, Tracer, TracerStats};

pub struct Combined {
    name: &'static str,
    parts: Vec<Box<dyn Tracer>>,
    batches: Vec<Vec<Event>>,
}

impl Combined {
    /// `name` is what the session reports, e.g. "ebpf+usdt".
    pub fn new(name: &'static str, parts: Vec<Box<dyn Tracer>>) -> Combined {
        let batches = parts.iter().map(|_| Vec::new()).collect();
        Combined {
            name,
            parts,
            batches,
        }
    }
}

/// Merges sorted runs into `out` (moving the events), stable: on equal timestamps the
/// earlier run goes first. Leaves the runs empty, their capacity kept.
///
/// The runs are appended, then stably sorted by time: the sort finds the sorted runs as
/// they are and merges them in linear time, with one scratch buffer per call instead of
/// a comparison of every run's head per event.
pub fn merge_by_time(runs: &mut [Vec<Event>], out: &mut Vec<Event>) {
    let start = out.len();
    out.reserve(runs.iter().map(Vec::len).sum());
    for r in runs.iter_mut() {
        out.append(r);
    }
    out[start..].sort_by_key(|e| e.ts_ns);
}

impl Tracer for Combined {
    fn name(&self) -> &'static str {
        self.name
    }

    /// Followers join every part. A follower one part could take is followed (the session
    /// then announces it); an error only when no part could.
    fn add_pid(&mut self, pid: Pid) -> anyhow::Result<()> {
        let mut first_err = None;
        let mut any_ok = false;
        for p in &mut self.parts {
            match p.add_pid(pid) {
                Ok(()) => any_ok = true,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) if !any_ok => Err(e),
            _ => Ok(()),
        }
    }

    fn remove_pid(&mut self, pid: Pid) {
        for p in &mut self.parts {
            p.remove_pid(pid);
        }
    }

    fn poll(&mut self, out: &mut Vec<Event>) -> anyhow::Result<()> {
        for (p, batch) in self.parts.iter_mut().zip(self.batches.iter_mut()) {
            p.poll(batch)?;
        }
        if self.batches.iter().filter(|b| !b.is_empty()).count() <= 1 {
            for b in &mut self.batches {
                out.append(b);
            }
        } else {
            merge_by_time(&mut self.batches, out);
        }
        Ok(())
    }

    fn stats(&self) -> TracerStats {
        let mut s = TracerStats::default();
        for p in &self.parts {
            let ps = p.stats();
            s.events += ps.events;
            s.lost.extend(ps.lost);
        }
        s
    }

    fn detach(&mut self) {
        for p in &mut self.parts {
            p.detach();
        }
    }

    fn attributes_io_workers(&self) -> bool {
        self.parts.iter().any(|p| p.attributes_io_workers())
    }

    fn io_uring_capture(&self) -> Result<(), String> {
        // The syscall tracer's answer: the USDT part never sees io_uring requests.
        let mut why = None;
        for p in &self.parts {
            match p.io_uring_capture() {
                Ok(()) => return Ok(()),
                Err(e) => {
                    why.get_or_insert(e);
                }
            }
        }
        Err(why.unwrap_or_else(|| "no tracer".into()))
    }

    fn follow_forks(&mut self) -> anyhow::Result<()> {
        let mut first_err = None;
        for p in &mut self.parts {
            match p.follow_forks() {
                Ok(()) => return Ok(()),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| anyhow::anyhow!("no tracer to follow forks")))
    }

    fn enable_io_latency(&mut self) -> anyhow::Result<()> {
        let mut first_err = None;
        for p in &mut self.parts {
            match p.enable_io_latency() {
                Ok(()) => return Ok(()),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| anyhow::anyhow!("--io-latency: no tracer")))
    }

    fn watch_wait_event(&mut self, pid: Pid, addr: u64) -> anyhow::Result<()> {
        let mut first_err = None;
        for p in &mut self.parts {
            match p.watch_wait_event(pid, addr) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| anyhow::anyhow!("--exact-waits: no tracer")))
    }

    fn limitations(&self) -> Vec<String> {
        // Said once even when both parts have it (e.g. BPF statistics off).
        let mut v: Vec<String> = Vec::new();
        for l in self.parts.iter().flat_map(|p| p.limitations()) {
            if !v.contains(&l) {
                v.push(l);
            }
        }
        v
    }

    fn stopped_by_signal(&self, pid: Pid) -> bool {
        self.parts.iter().any(|p| p.stopped_by_signal(pid))
    }

    fn kernel_times(&mut self, out: &mut Vec<Event>) {
        for p in &mut self.parts {
            p.kernel_times(out);
        }
    }

    fn probe_cost(&self) -> super::cost::ProbeCost {
        self.parts.iter().map(|p| p.probe_cost()).fold(
            super::cost::ProbeCost::NotBpf,
            super::cost::ProbeCost::combine,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::EventKind;

    fn ev(ts: u64, pid: Pid) -> Event {
        Event {
            ts_ns: ts,
            pid,
            kind: EventKind::Close { fd: 3 },
        }
    }

    #[test]
    fn merges_stably_by_time() {
        let mut runs = vec![
            vec![ev(1, 1), ev(5, 1), ev(5, 1), ev(9, 1)],
            vec![ev(0, 2), ev(5, 2), ev(10, 2)],
        ];
        let mut out = Vec::new();
        merge_by_time(&mut runs, &mut out);
        let got: Vec<(u64, Pid)> = out.iter().map(|e| (e.ts_ns, e.pid)).collect();
        assert_eq!(
            got,
            [(0, 2), (1, 1), (5, 1), (5, 1), (5, 2), (9, 1), (10, 2)]
        );
        assert!(runs.iter().all(Vec::is_empty));
    }
}
