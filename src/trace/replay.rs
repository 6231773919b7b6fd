//! Replay: events from NDJSON (one serde [`Event`] per line) handed on as if captured,
//! each once the clock has reached its timestamp. With a [`ManualClock`] the loops run a
//! scripted session deterministically, without root, PostgreSQL or a live process.

use super::{Event, Pid, Tracer, TracerStats};
use anyhow::{Context, Result};
use std::collections::VecDeque;
use std::io::BufRead;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The time the loops run on: the system's monotonic clock live, a scripted one in
/// tests. `sleep` is how a loop waits, so a scripted clock simply moves on.
pub trait Clock: Send + Sync {
    /// Nanoseconds on the clock events are stamped with (CLOCK_MONOTONIC live).
    fn now_ns(&self) -> u64;
    fn sleep(&self, d: Duration);
}

/// The real one: `CLOCK_MONOTONIC`, as the tracers stamp events.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ns(&self) -> u64 {
        super::monotonic_ns()
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// A clock that only moves when slept on or told to: whole runs are reproducible to the
/// nanosecond.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    ns: Arc<AtomicU64>,
}

impl ManualClock {
    pub fn starting_at(ns: u64) -> ManualClock {
        ManualClock {
            ns: Arc::new(AtomicU64::new(ns)),
        }
    }
    /// Jump to `ns` (a replay seeks).
    pub fn set(&self, ns: u64) {
        self.ns.store(ns, Ordering::SeqCst);
    }
    pub fn advance(&self, d: Duration) {
        let d = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.ns.fetch_add(d, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.ns.load(Ordering::SeqCst)
    }
    fn sleep(&self, d: Duration) {
        self.advance(d);
    }
}

/// Hands on recorded events in order, each when the clock reaches it.
pub struct ReplayTracer {
    events: VecDeque<Event>,
    clock: Arc<dyn Clock>,
    handed: u64,
}

impl ReplayTracer {
    pub fn new(events: Vec<Event>, clock: Arc<dyn Clock>) -> ReplayTracer {
        let mut events = events;
        // A recording merges several sources; the model wants them oldest first.
        events.sort_by_key(|e| e.ts_ns);
        ReplayTracer {
            events: events.into(),
            clock,
            handed: 0,
        }
    }

    /// One [`Event`] per line; blank lines are skipped. A line that is not an event is an
    /// error naming its line number: a damaged recording is said, not half-replayed.
    pub fn from_ndjson(input: impl BufRead, clock: Arc<dyn Clock>) -> Result<ReplayTracer> {
        let mut events = Vec::new();
        for (i, line) in input.lines().enumerate() {
            let line = line.with_context(|| format!("reading line {}", i + 1))?;
            if line.trim().is_empty() {
                continue;
            }
            let ev: Event = serde_json::from_str(&line)
                .with_context(|| format!("line {}: not an event", i + 1))?;
            events.push(ev);
        }
        Ok(ReplayTracer::new(events, clock))
    }

    /// Events not handed on yet.
    pub fn remaining(&self) -> usize {
        self.events.len()
    }
}

impl Tracer for ReplayTracer {
    fn name(&self) -> &'static str {
        "replay"
    }
    /// Followers are whatever the recording holds: nothing to attach to.
    fn add_pid(&mut self, _pid: Pid) -> Result<()> {
        Ok(())
    }
    fn remove_pid(&mut self, _pid: Pid) {}
    fn poll(&mut self, out: &mut Vec<Event>) -> Result<()> {
        let now = self.clock.now_ns();
        while self.events.front().is_some_and(|e| e.ts_ns <= now) {
            if let Some(ev) = self.events.pop_front() {
                self.handed += 1;
                out.push(ev);
            }
        }
        Ok(())
    }
    fn stats(&self) -> TracerStats {
        TracerStats {
            events: self.handed,
            lost: Vec::new(),
        }
    }
    fn detach(&mut self) {}
    fn limitations(&self) -> Vec<String> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::EventKind;

    fn ev(ts_ns: u64) -> Event {
        Event {
            ts_ns,
            pid: 7,
            kind: EventKind::Close { fd: 3 },
        }
    }

    #[test]
    fn events_come_when_the_clock_reaches_them() {
        let clock = ManualClock::starting_at(100);
        let text = [ev(150), ev(100), ev(300)]
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect::<Vec<_>>()
            .join("\n\n");
        let mut t = ReplayTracer::from_ndjson(text.as_bytes(), Arc::new(clock.clone())).unwrap();
        let mut out = Vec::new();
        t.poll(&mut out).unwrap();
        assert_eq!(out.iter().map(|e| e.ts_ns).collect::<Vec<_>>(), [100]);
        clock.sleep(Duration::from_nanos(100));
        t.poll(&mut out).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(t.remaining(), 1);
        assert_eq!(t.stats().events, 2);
    }

    #[test]
    fn a_damaged_line_is_an_error_with_its_number() {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::default());
        let text = format!("{}\n{{\"ts_ns\":", serde_json::to_string(&ev(1)).unwrap());
        let e = ReplayTracer::from_ndjson(text.as_bytes(), clock)
            .err()
            .unwrap();
        assert!(
            format!("{e:#}").starts_with("line 2: not an event"),
            "{e:#}"
        );
    }
}
