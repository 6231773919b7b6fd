//! Scheduler times per traced process: the cumulative [`EventKind::SchedTimes`] the eBPF
//! tracer reads from the kernel, kept as of the last two ticks, so that a view shows the
//! last interval (the difference) and the total since attach.
//!
//! [`EventKind::SchedTimes`]: crate::trace::EventKind::SchedTimes

use crate::trace::Pid;
use std::collections::BTreeMap;

/// Nanoseconds by scheduler state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SchedTimes {
    /// On a CPU.
    pub running_ns: u64,
    /// Runnable, waiting for a CPU.
    pub runqueue_ns: u64,
    /// Asleep, interruptible (S): waiting for a client, a latch, a timeout.
    pub sleeping_ns: u64,
    /// Uninterruptible sleep (D): mostly waiting for the device.
    pub blocked_ns: u64,
}

impl SchedTimes {
    /// Off CPU: asleep, either way.
    pub fn off_cpu_ns(&self) -> u64 {
        self.sleeping_ns.saturating_add(self.blocked_ns)
    }

    fn since(&self, earlier: &SchedTimes) -> SchedTimes {
        SchedTimes {
            running_ns: self.running_ns.saturating_sub(earlier.running_ns),
            runqueue_ns: self.runqueue_ns.saturating_sub(earlier.runqueue_ns),
            sleeping_ns: self.sleeping_ns.saturating_sub(earlier.sleeping_ns),
            blocked_ns: self.blocked_ns.saturating_sub(earlier.blocked_ns),
        }
    }

    /// Each figure never goes back (a reading that races a context switch may be a few
    /// microseconds ahead of the next one).
    fn max(&self, o: &SchedTimes) -> SchedTimes {
        SchedTimes {
            running_ns: self.running_ns.max(o.running_ns),
            runqueue_ns: self.runqueue_ns.max(o.runqueue_ns),
            sleeping_ns: self.sleeping_ns.max(o.sleeping_ns),
            blocked_ns: self.blocked_ns.max(o.blocked_ns),
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SchedFold {
    latest: BTreeMap<Pid, SchedTimes>,
    /// As of the last tick, and of the one before.
    at_tick: BTreeMap<Pid, SchedTimes>,
    before_tick: BTreeMap<Pid, SchedTimes>,
}

impl SchedFold {
    pub fn apply(&mut self, pid: Pid, t: SchedTimes) {
        let e = self.latest.entry(pid).or_default();
        *e = e.max(&t);
    }

    pub fn tick(&mut self) {
        self.before_tick = std::mem::replace(&mut self.at_tick, self.latest.clone());
    }

    /// The processes measured as of the last tick.
    pub fn pids(&self) -> impl Iterator<Item = Pid> + '_ {
        self.at_tick.keys().copied()
    }

    /// Since attach, as of the last tick; None when never measured.
    pub fn total(&self, pid: Pid) -> Option<SchedTimes> {
        self.at_tick.get(&pid).copied()
    }

    /// Between the last two ticks.
    pub fn interval(&self, pid: Pid) -> Option<SchedTimes> {
        let now = self.at_tick.get(&pid)?;
        Some(now.since(&self.before_tick.get(&pid).copied().unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(r: u64, q: u64, s: u64, d: u64) -> SchedTimes {
        SchedTimes {
            running_ns: r,
            runqueue_ns: q,
            sleeping_ns: s,
            blocked_ns: d,
        }
    }

    #[test]
    fn interval_and_total() {
        let mut f = SchedFold::default();
        assert_eq!(f.total(1), None);
        f.apply(1, t(10, 1, 5, 2));
        f.tick();
        assert_eq!(f.interval(1), Some(t(10, 1, 5, 2)));
        f.apply(1, t(30, 2, 5, 10));
        // A late reading a little behind: nothing goes back.
        f.apply(1, t(29, 2, 5, 10));
        f.tick();
        assert_eq!(f.total(1), Some(t(30, 2, 5, 10)));
        assert_eq!(f.interval(1), Some(t(20, 1, 0, 8)));
        assert_eq!(f.interval(1).unwrap().off_cpu_ns(), 8);
        f.tick();
        assert_eq!(f.interval(1), Some(t(0, 0, 0, 0)));
    }
}
