//! What the per-block USDT probes will cost a backend, said before they go on: its rate of
//! buffer accesses from its own `pgBufferUsage` counters (read twice through
//! `/proc/PID/mem`, which does not stop or slow it), times the measured cost of one probe.

use crate::process::memory::{load_bias, maps, MemError, ProcMem, Symbols};
use crate::trace::Pid;
use std::time::{Duration, Instant};

/// What one per-block probe hit costs the backend, in ns: docs/overhead.md measured ebpf+usdt
/// at 1.25× an untraced cache-warm scan of 16,667 blocks in 88 ms, ~1.3 µs per block (the
/// uprobe trap ~0.65 µs, fetching the arguments ~0.35 µs, the ring-buffer record ~0.1 µs).
pub const NS_PER_PROBE: f64 = 1300.0;

/// From this many buffer accesses per second the cost is said (13 % at 1.3 µs each).
pub const BUSY_ACCESSES_PER_S: f64 = 100_000.0;

/// How long apart the two samples are: long enough to see a busy backend's rate, short
/// enough not to hold up the attach.
const SAMPLE: Duration = Duration::from_millis(100);

/// The probes that fire on every buffer access, hit or miss (the smgr ones fire per miss).
const PER_ACCESS: [&str; 2] = ["buffer__read__start", "buffer__read__done"];

/// `BufferUsage` starts with `int64 shared_blks_hit, shared_blks_read, shared_blks_dirtied,
/// shared_blks_written, local_blks_hit, local_blks_read` in every major 12–18.
const BUFFER_USAGE_HEAD: usize = 48;

/// Buffer accesses (hits and reads, shared and local) counted in the head of a
/// `BufferUsage`.
fn accesses(head: &[u8; BUFFER_USAGE_HEAD]) -> u64 {
    let field = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&head[i * 8..i * 8 + 8]);
        // Counters are never negative; a torn or hostile value counts as none.
        u64::try_from(i64::from_ne_bytes(b)).unwrap_or(0)
    };
    [0, 1, 4, 5]
        .iter()
        .fold(0u64, |a, &i| a.saturating_add(field(i)))
}

/// The backend's buffer accesses per second over [`SAMPLE`].
pub fn accesses_per_s(pid: Pid) -> Result<f64, MemError> {
    let syms = Symbols::load(pid)?;
    let at = syms.get("pgBufferUsage").ok_or_else(|| MemError::Layout {
        pid,
        what: "no pgBufferUsage symbol".into(),
    })?;
    let addr = at.wrapping_add(load_bias(pid, &maps(pid)?, &syms)?);
    let mem = ProcMem::open(pid)?;
    let read = || -> Result<(u64, Instant), MemError> {
        let mut head = [0u8; BUFFER_USAGE_HEAD];
        mem.read(addr, &mut head)?;
        Ok((accesses(&head), Instant::now()))
    };
    let (a, t0) = read()?;
    std::thread::sleep(SAMPLE);
    let (b, t1) = read()?;
    Ok(rate(a, b, t1.duration_since(t0)))
}

fn rate(a: u64, b: u64, dt: Duration) -> f64 {
    let s = dt.as_secs_f64();
    if s <= 0.0 {
        return 0.0;
    }
    b.saturating_sub(a) as f64 / s
}

/// Whether any of `probes` fires on every buffer access (else the rate is not worth
/// sampling).
pub fn fires_per_access(probes: &[&str]) -> bool {
    probes.iter().any(|p| PER_ACCESS.contains(p))
}

/// What the per-access probes about to be attached will cost a backend, from its rate.
#[derive(Debug, Clone, PartialEq)]
pub struct UsdtCost {
    /// Buffer accesses per second (hits and reads), over [`SAMPLE`].
    pub accesses_per_s: f64,
    /// The per-access probes going on.
    pub per_access: Vec<String>,
    /// What they cost per access, in ns ([`NS_PER_PROBE`] each).
    pub ns_per_access: f64,
    /// How much slower the backend is expected to run at this pace: 1.26 is 26 %.
    pub slowdown: f64,
}

impl UsdtCost {
    /// Whether it is worth saying before the attach (a busy backend).
    pub fn busy(&self) -> bool {
        !self.per_access.is_empty() && self.accesses_per_s >= BUSY_ACCESSES_PER_S
    }

    /// For the `attach` record.
    pub fn record(&self) -> crate::output::record::UsdtCostRecord {
        crate::output::record::UsdtCostRecord {
            accesses_per_s: self.accesses_per_s,
            per_access_probes: self.per_access.clone(),
            ns_per_access: self.ns_per_access,
            slowdown: self.slowdown,
            warned: self.busy(),
        }
    }
}

/// What `probes` (the ones about to be attached) will cost at `rate` accesses per second.
pub fn cost(rate: f64, probes: &[&str]) -> UsdtCost {
    let per_access: Vec<String> = probes
        .iter()
        .filter(|p| PER_ACCESS.contains(p))
        .map(|p| p.to_string())
        .collect();
    let ns_per_access = NS_PER_PROBE * per_access.len() as f64;
    UsdtCost {
        accesses_per_s: rate,
        slowdown: 1.0 + rate * ns_per_access / 1e9,
        per_access,
        ns_per_access,
    }
}

/// The warning before the attach, when the backend is busy enough for it to matter.
pub fn cost_note(pid: Pid, c: &UsdtCost) -> Option<String> {
    if !c.busy() {
        return None;
    }
    Some(format!(
        "USDT: pid {pid} makes {:.0}k buffer accesses/s, and {} costs ~{:.1} µs per access \
         (docs/overhead.md): expect it to run ~{:.2}x slower at this pace \
         (--no-usdt or --backend ebpf avoids it)",
        c.accesses_per_s / 1000.0,
        c.per_access.join(" + "),
        c.ns_per_access / 1000.0,
        c.slowdown,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(v: [i64; 6]) -> [u8; BUFFER_USAGE_HEAD] {
        let mut h = [0u8; BUFFER_USAGE_HEAD];
        for (i, x) in v.iter().enumerate() {
            h[i * 8..i * 8 + 8].copy_from_slice(&x.to_ne_bytes());
        }
        h
    }

    #[test]
    fn accesses_are_hits_and_reads() {
        // Dirtied and written blocks were accessed already: not counted again.
        assert_eq!(accesses(&head([10, 5, 99, 99, 2, 1])), 18);
        assert_eq!(
            accesses(&head([-1, i64::MAX, 0, 0, i64::MAX, i64::MAX])),
            u64::MAX
        );
        assert_eq!(rate(100, 50_100, Duration::from_millis(100)), 500_000.0);
        assert_eq!(rate(100, 50, Duration::from_millis(100)), 0.0);
        assert_eq!(rate(1, 2, Duration::ZERO), 0.0);
    }

    #[test]
    fn said_only_for_busy_backends_and_per_access_probes() {
        let default = ["buffer__read__done", "query__start"];
        assert_eq!(cost_note(7, &cost(99_000.0, &default)), None);
        assert_eq!(cost_note(7, &cost(1e6, &["query__start"])), None);
        assert!(!fires_per_access(&[
            "query__start",
            "smgr__md__read__start"
        ]));
        assert!(fires_per_access(&default));
        let c = cost(200_000.0, &default);
        assert!((c.slowdown - 1.26).abs() < 1e-9, "{c:?}");
        let r = c.record();
        assert!(r.warned && r.ns_per_access == 1300.0, "{r:?}");
        assert!(!cost(50_000.0, &default).record().warned);
        let n = cost_note(7, &c).unwrap();
        assert!(n.contains("pid 7 makes 200k buffer accesses/s"), "{n}");
        assert!(n.contains("~1.26x slower"), "{n}");
        let n = cost_note(7, &cost(200_000.0, &PER_ACCESS)).unwrap();
        assert!(
            n.contains("~2.6 µs per access") && n.contains("~1.52x"),
            "{n}"
        );
    }

    #[test]
    fn own_process_has_no_buffer_usage() {
        // The test binary is not postgres: a clear error, not a rate.
        let e = accesses_per_s(std::process::id() as Pid).unwrap_err();
        assert!(e.to_string().contains("pgBufferUsage"), "{e}");
    }
}
