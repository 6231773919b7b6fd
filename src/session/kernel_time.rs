//! `--io-latency` and `--exact-waits` at attach: what they need from the process, and for
//! the watchpoints what they will cost, said before they go on.

use crate::process::memory::ProcMem;
use crate::process::status::StatusReader;
use crate::trace::{monotonic_ns, Pid, Tracer};
use anyhow::{anyhow, Result};
use std::time::{Duration, Instant};

/// The opt-in kernel measurements asked for on the command line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelOptions {
    pub io_latency: bool,
    pub exact_waits: bool,
}

/// What one watchpoint trap costs the traced process, as measured on the VM this was
/// developed on (1 M writes under `perf stat -e mem:ADDR:w` took 15 s; bare metal is
/// reported at 0.2–0.3 µs). See docs/overhead.md for the bench.
pub const TRAP_COST_US: f64 = 15.0;

/// How long the wait event is watched by sampling before the watchpoint goes on.
const RATE_WINDOW: Duration = Duration::from_millis(300);
const RATE_STEP: Duration = Duration::from_millis(1);

/// The watchpoints went on: what to say, and the value in force when they did.
pub struct WatchStart {
    pub note: String,
    pub value: u32,
    pub ts_ns: u64,
}

/// Changes of the word at `addr` in `pid` seen by reading it every millisecond over
/// `window`: a lower bound of its write rate (waits shorter than a millisecond can start
/// and end unseen), per second.
pub fn transition_rate(mem: &ProcMem, addr: u64, window: Duration) -> Result<f64> {
    let start = Instant::now();
    let mut last = mem.read_u32(addr)?;
    let mut changes = 0u64;
    while start.elapsed() < window {
        std::thread::sleep(RATE_STEP);
        let v = mem.read_u32(addr)?;
        if v != last {
            changes += 1;
            last = v;
        }
    }
    Ok(changes as f64 / start.elapsed().as_secs_f64().max(1e-3))
}

/// What `rate` transitions a second will cost at [`TRAP_COST_US`] each, in words.
pub fn cost_note(pid: Pid, rate: f64) -> String {
    let share = rate * TRAP_COST_US / 1e6 * 100.0;
    format!(
        "--exact-waits: pid {pid} changed its wait event about {rate:.0} times/s over the last \
         {} ms (sampled every ms: at least that); each write now traps, ~{TRAP_COST_US:.0} µs \
         here: expect about {share:.1} % of a CPU more for it",
        RATE_WINDOW.as_millis()
    )
}

/// Finds `pid`'s wait_event_info, says what watching it will cost, and puts a watchpoint
/// on it through `tracer`.
pub fn exact_waits(pid: Pid, major: u32, tracer: &mut dyn Tracer) -> Result<WatchStart> {
    let mut reader = StatusReader::open(pid, major)
        .map_err(|e| anyhow!("--exact-waits: cannot read pid {pid}'s memory ({e})"))?;
    let (addr, _) = reader
        .wait_event_address(pid)
        .map_err(|e| anyhow!("--exact-waits: pid {pid}: {e}"))?
        .ok_or_else(|| {
            anyhow!("--exact-waits: pid {pid} has no PGPROC (no wait event to watch)")
        })?;
    let mem = ProcMem::open(pid).map_err(|e| anyhow!("--exact-waits: pid {pid}: {e}"))?;
    let rate = transition_rate(&mem, addr, RATE_WINDOW)
        .map_err(|e| anyhow!("--exact-waits: pid {pid}: {e}"))?;
    let note = cost_note(pid, rate);
    tracer.watch_wait_event(pid, addr)?;
    // Read after the watchpoint is on: any later write is seen by it.
    let value = mem
        .read_u32(addr)
        .map_err(|e| anyhow!("--exact-waits: pid {pid}: {e}"))?;
    Ok(WatchStart {
        note,
        value,
        ts_ns: monotonic_ns(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_said_in_percent_of_a_cpu() {
        let n = cost_note(7, 1000.0);
        assert!(n.contains("1000 times/s"), "{n}");
        assert!(n.contains("1.5 % of a CPU"), "{n}");
    }
}
