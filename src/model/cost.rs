//! What tracing costs, as rates: two cumulative readings (the kernel's run time of our
//! BPF programs, pg_trace's own CPU time) a tick apart give the rates shown in the header
//! and the `stats` record. Pure: the session reads the counters.

use crate::trace::cost::{OwnUsage, ProbeCost, ProbeRuntime};

/// The rates of the last interval. Each is None when it cannot be measured (not a BPF
/// backend, BPF statistics off, no earlier reading yet): never a made-up number.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cost {
    /// Nanoseconds of BPF program run time per second of wall time (all CPUs).
    pub probe_ns_per_s: Option<f64>,
    pub probe_runs_per_s: Option<f64>,
    /// Of those, USDT program runs: each also paid a uprobe trap not in `probe_ns_per_s`.
    pub usdt_runs_per_s: Option<f64>,
    /// pg_trace's own CPU time per second of wall time: 1.0 is one core.
    pub self_cpu: Option<f64>,
    pub self_rss_bytes: Option<u64>,
    /// Whether the tracer runs BPF programs at all (false: the probe fields have no
    /// meaning, rather than being unknown).
    pub bpf: bool,
    /// The BPF programs run untimed by choice (no `--probe-cost`).
    #[serde(default)]
    pub probe_off: bool,
}

/// The previous reading, and the rates it gave.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct CostMeter {
    last: Option<(u64, Option<ProbeRuntime>, Option<u64>)>,
    pub now: Option<Cost>,
}

/// Readings closer together than this give no rate (the counters' granularity would
/// dominate it).
const MIN_DT_NS: u64 = 10_000_000;

impl CostMeter {
    /// Folds one reading taken at `now_ns`. The first one only sets the baseline (and the
    /// resident memory, which needs none).
    pub fn fold(&mut self, now_ns: u64, probes: &ProbeCost, own: OwnUsage) {
        let runtime = match probes {
            ProbeCost::Measured(r) => Some(*r),
            _ => None,
        };
        let mut cost = Cost {
            self_rss_bytes: own.rss_bytes,
            bpf: !matches!(probes, ProbeCost::NotBpf),
            probe_off: matches!(probes, ProbeCost::Off),
            ..Cost::default()
        };
        if let Some((t0, r0, cpu0)) = self.last {
            let dt = now_ns.saturating_sub(t0);
            if dt < MIN_DT_NS {
                return;
            }
            let per_s = |a: u64, b: u64| Some(b.checked_sub(a)? as f64 * 1e9 / dt as f64);
            if let (Some(a), Some(b)) = (r0, runtime) {
                cost.probe_ns_per_s = per_s(a.run_time_ns, b.run_time_ns);
                cost.probe_runs_per_s = per_s(a.runs, b.runs);
                cost.usdt_runs_per_s = per_s(a.usdt_runs, b.usdt_runs);
            }
            if let (Some(a), Some(b)) = (cpu0, own.cpu_ns) {
                // CPU ns per wall ns is the share of one core.
                cost.self_cpu = per_s(a, b).map(|ns| ns / 1e9);
            }
        }
        self.last = Some((now_ns, runtime, own.cpu_ns));
        self.now = Some(cost);
    }
}

impl Cost {
    /// `probes 0.8% cpu (310k runs/s), self 3.1% cpu 42 MiB`: the probes' run time as a
    /// share of one core (`probes ?` when BPF runs untimed, `probes untimed
    /// (--probe-cost)` when by choice, nothing for a backend without BPF), then pg_trace's
    /// own CPU and memory. `-` for a rate not known yet.
    pub fn words(&self) -> String {
        let mut out = String::new();
        if self.bpf {
            match (self.probe_ns_per_s, self.probe_runs_per_s) {
                (Some(ns), Some(runs)) => {
                    out = format!(
                        "probes {} cpu ({} runs/s), ",
                        percent_of_core(ns),
                        count(runs)
                    )
                }
                _ if self.probe_off => out.push_str("probes untimed (--probe-cost), "),
                _ => out.push_str("probes ?, "),
            }
        }
        out.push_str("self ");
        match self.self_cpu {
            Some(f) => out.push_str(&percent_of_core(f * 1e9)),
            None => out.push('-'),
        }
        out.push_str(" cpu");
        if let Some(b) = self.self_rss_bytes {
            out.push(' ');
            out.push_str(&crate::text::human_bytes(b));
        }
        out
    }

    /// The header's short form: `probes 0.8%  self 3.1% 42M` (`probes ?` when BPF runs
    /// untimed, `probes off` when by choice; no probes part without BPF).
    pub fn compact(&self) -> String {
        let mut out = String::new();
        if self.bpf {
            out.push_str("probes ");
            match self.probe_ns_per_s {
                Some(ns) => out.push_str(&percent_of_core(ns)),
                None if self.probe_off => out.push_str("off"),
                None => out.push('?'),
            }
            out.push_str("  ");
        }
        out.push_str("self ");
        match self.self_cpu {
            Some(f) => out.push_str(&percent_of_core(f * 1e9)),
            None => out.push('-'),
        }
        if let Some(b) = self.self_rss_bytes {
            out.push(' ');
            out.push_str(&crate::text::compact_bytes(b));
        }
        out
    }
}

/// `310k`, `1.2k`, `950`.
fn count(n: f64) -> String {
    if n >= 10_000.0 {
        format!("{:.0}k", n / 1000.0)
    } else if n >= 1000.0 {
        format!("{:.1}k", n / 1000.0)
    } else {
        format!("{n:.0}")
    }
}

/// `8.0 ms/s` of probe time as the share of one core it is: `0.8%`.
pub fn percent_of_core(ns_per_s: f64) -> String {
    let p = ns_per_s / 1e7;
    if p >= 10.0 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(ns: u64, runs: u64, usdt_runs: u64) -> ProbeCost {
        ProbeCost::Measured(ProbeRuntime {
            run_time_ns: ns,
            runs,
            usdt_runs,
        })
    }

    fn own(cpu_ns: u64, rss: u64) -> OwnUsage {
        OwnUsage {
            cpu_ns: Some(cpu_ns),
            rss_bytes: Some(rss),
        }
    }

    #[test]
    fn rates_from_two_readings() {
        let mut m = CostMeter::default();
        m.fold(1_000_000_000, &measured(0, 0, 0), own(5_000_000, 1 << 20));
        let c = m.now.clone().unwrap();
        assert_eq!(c.probe_ns_per_s, None);
        assert_eq!(c.self_cpu, None);
        assert_eq!(c.self_rss_bytes, Some(1 << 20));
        // Two seconds later: 8 ms of probe time, 40k runs (10k USDT), 100 ms of CPU.
        m.fold(
            3_000_000_000,
            &measured(8_000_000, 40_000, 10_000),
            own(105_000_000, 2 << 20),
        );
        let c = m.now.clone().unwrap();
        assert_eq!(c.probe_ns_per_s, Some(4_000_000.0));
        assert_eq!(c.probe_runs_per_s, Some(20_000.0));
        assert_eq!(c.usdt_runs_per_s, Some(5_000.0));
        assert_eq!(c.self_cpu, Some(0.05));
        assert_eq!(c.self_rss_bytes, Some(2 << 20));
        assert!(c.bpf);
    }

    #[test]
    fn never_a_fake_number() {
        let mut m = CostMeter::default();
        let off = ProbeCost::Unmeasured("statistics off".into());
        m.fold(0, &off, own(0, 4096));
        m.fold(1_000_000_000, &off, own(1_000, 4096));
        let c = m.now.clone().unwrap();
        assert_eq!(c.probe_ns_per_s, None);
        assert_eq!(c.probe_runs_per_s, None);
        assert!(c.bpf);
        assert!(!c.probe_off);
        assert!(c.self_cpu.is_some());

        // Off by choice: no figure either, and said so.
        let mut m = CostMeter::default();
        m.fold(0, &ProbeCost::Off, own(0, 4096));
        m.fold(1_000_000_000, &ProbeCost::Off, own(1_000, 4096));
        let c = m.now.clone().unwrap();
        assert_eq!((c.probe_ns_per_s, c.probe_runs_per_s), (None, None));
        assert!(c.bpf && c.probe_off);
        assert_eq!(
            c.words(),
            "probes untimed (--probe-cost), self 0.0% cpu 4.0 KiB"
        );
        assert_eq!(c.compact(), "probes off  self 0.0% 4.0K");

        let mut m = CostMeter::default();
        m.fold(0, &ProbeCost::NotBpf, own(0, 4096));
        m.fold(1_000_000_000, &ProbeCost::NotBpf, own(0, 4096));
        let c = m.now.clone().unwrap();
        assert!(!c.bpf);
        assert_eq!(c.probe_runs_per_s, None);

        // Counters that go backwards (a reload) give no rate, not a huge one.
        let mut m = CostMeter::default();
        m.fold(0, &measured(100, 100, 0), own(10, 1));
        m.fold(1_000_000_000, &measured(50, 50, 0), own(5, 1));
        let c = m.now.clone().unwrap();
        assert_eq!(c.probe_ns_per_s, None);
        assert_eq!(c.self_cpu, None);
    }

    #[test]
    fn readings_too_close_are_skipped() {
        let mut m = CostMeter::default();
        m.fold(0, &measured(0, 0, 0), own(0, 1));
        m.fold(1_000, &measured(1000, 1, 0), own(1000, 1));
        assert_eq!(m.now.clone().unwrap().probe_ns_per_s, None);
        m.fold(1_000_000_000, &measured(1000, 1, 0), own(1000, 1));
        assert_eq!(m.now.unwrap().probe_ns_per_s, Some(1000.0));
    }

    #[test]
    fn words() {
        let c = Cost {
            probe_ns_per_s: Some(8_000_000.0),
            probe_runs_per_s: Some(310_000.0),
            usdt_runs_per_s: Some(0.0),
            self_cpu: Some(0.031),
            self_rss_bytes: Some(42 << 20),
            bpf: true,
            probe_off: false,
        };
        assert_eq!(
            c.words(),
            "probes 0.8% cpu (310k runs/s), self 3.1% cpu 42.0 MiB"
        );
        assert_eq!(c.compact(), "probes 0.8%  self 3.1% 42.0M");
        let c = Cost {
            bpf: true,
            ..Cost::default()
        };
        assert_eq!(c.words(), "probes ?, self - cpu");
        let c = Cost {
            self_cpu: Some(0.5),
            ..Cost::default()
        };
        assert_eq!(c.words(), "self 50% cpu");
    }

    #[test]
    fn percent() {
        assert_eq!(percent_of_core(8_000_000.0), "0.8%");
        assert_eq!(percent_of_core(250_000_000.0), "25%");
    }
}
