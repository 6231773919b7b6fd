//! What tracing costs, as cumulative counters read on the caller's timer: the kernel's
//! run-time statistics of pg_trace's own BPF programs, and pg_trace's own CPU time and
//! resident memory. The model turns two readings into rates (`model::cost`).

/// Cumulative run time and run count of our BPF programs since they were loaded (the
/// kernel counts them only while BPF statistics are enabled, see `libbpf::RunTimeStats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProbeRuntime {
    pub run_time_ns: u64,
    pub runs: u64,
    /// Of `runs`, those of USDT programs: each also paid a uprobe trap the kernel does not
    /// count as program run time.
    pub usdt_runs: u64,
}

/// `--probe-cost`: whether tracers attached from now on turn the kernel's BPF run-time
/// statistics on (host-wide, while they run). Off by default.
pub use super::libbpf::set_probe_cost;

/// What a tracer can say about the run time of its probes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeCost {
    /// Not a BPF tracer (ptrace, /proc polling, replay): there is no program run time.
    /// ptrace's cost is the time the backend spends stopped, which no counter gives.
    NotBpf,
    /// BPF programs run, but the kernel does not time them; why.
    Unmeasured(String),
    /// BPF programs run untimed by choice: the kernel's statistics are off (their clock
    /// reads would cost every BPF program of the host) and `--probe-cost` was not given.
    Off,
    Measured(ProbeRuntime),
}

impl ProbeCost {
    /// Two tracers run side by side (ebpf + usdt): the sum, and unmeasured if either part
    /// with BPF programs is (a partial sum would understate the cost).
    pub fn combine(self, other: ProbeCost) -> ProbeCost {
        use ProbeCost::*;
        match (self, other) {
            (NotBpf, x) | (x, NotBpf) => x,
            (Unmeasured(why), _) | (_, Unmeasured(why)) => Unmeasured(why),
            (Off, _) | (_, Off) => Off,
            (Measured(a), Measured(b)) => Measured(ProbeRuntime {
                run_time_ns: a.run_time_ns.saturating_add(b.run_time_ns),
                runs: a.runs.saturating_add(b.runs),
                usdt_runs: a.usdt_runs.saturating_add(b.usdt_runs),
            }),
        }
    }
}

/// pg_trace's own CPU time (all threads) and resident memory now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OwnUsage {
    pub cpu_ns: Option<u64>,
    pub rss_bytes: Option<u64>,
}

/// Reads [`OwnUsage`]. The CPU time comes from `CLOCK_PROCESS_CPUTIME_ID` (the utime +
/// stime of `/proc/self/stat`, at nanosecond rather than clock-tick resolution: a 10 ms
/// tick would make a 1 s interval's share jump by whole per cents); the resident set from
/// `/proc/self/statm`.
pub fn own_usage() -> OwnUsage {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec owned by this frame.
    let cpu_ns = (unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } == 0)
        .then(|| {
            let s = u64::try_from(ts.tv_sec).ok()?;
            let ns = u64::try_from(ts.tv_nsec).ok()?;
            s.checked_mul(1_000_000_000)?.checked_add(ns)
        })
        .flatten();
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let rss_bytes = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| statm_rss_bytes(&s, u64::try_from(page).ok()?));
    OwnUsage { cpu_ns, rss_bytes }
}

/// The resident set of a `/proc/PID/statm` line (its second field, in pages), in bytes.
pub fn statm_rss_bytes(statm: &str, page_size: u64) -> Option<u64> {
    let pages: u64 = statm.split_ascii_whitespace().nth(1)?.parse().ok()?;
    pages.checked_mul(page_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm() {
        assert_eq!(
            statm_rss_bytes("6000 2500 700 100 0 900 0\n", 4096),
            Some(2500 * 4096)
        );
        assert_eq!(statm_rss_bytes("6000", 4096), None);
        assert_eq!(statm_rss_bytes("6000 x", 4096), None);
        assert_eq!(statm_rss_bytes("1 18446744073709551615", 4096), None);
    }

    #[test]
    fn own_usage_reads_something() {
        let u = own_usage();
        assert!(u.cpu_ns.is_some());
        assert!(u.rss_bytes.unwrap() > 0);
    }

    #[test]
    fn combining() {
        let m = |ns, runs, usdt_runs| {
            ProbeCost::Measured(ProbeRuntime {
                run_time_ns: ns,
                runs,
                usdt_runs,
            })
        };
        assert_eq!(m(10, 2, 0).combine(m(5, 1, 1)), m(15, 3, 1));
        assert_eq!(ProbeCost::NotBpf.combine(m(1, 1, 0)), m(1, 1, 0));
        assert_eq!(
            ProbeCost::NotBpf.combine(ProbeCost::NotBpf),
            ProbeCost::NotBpf
        );
        assert_eq!(
            m(1, 1, 0).combine(ProbeCost::Unmeasured("off".into())),
            ProbeCost::Unmeasured("off".into())
        );
    }
}
