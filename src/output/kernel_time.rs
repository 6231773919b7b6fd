//! The kernel's share of the `waits` record, per interval and since attach: scheduler
//! times (`cpu_s`, `off_cpu_s`, `runqueue_s`), I/O latency per relation (`io_latency`)
//! and exact waits (`exact`). The sampled profile (`hz`, `samples`, `events`, `queries`)
//! is left empty here.

use super::record::{ExactWait, IoLatencyRow, Record, WaitsRecord};
use crate::model::exact_waits::ExactCell;
use crate::model::io_latency::LatencyRow;
use crate::model::Model;
use std::collections::BTreeMap;

fn latency_rows(rows: Vec<LatencyRow>) -> Vec<IoLatencyRow> {
    rows.into_iter()
        .map(|r| IoLatencyRow {
            relation: r.relation,
            fork: r.fork.map(str::to_string),
            op: r.op.name().to_string(),
            count: r.count,
            p50_us: r.p50_us,
            p99_us: r.p99_us,
            page_cache_share: r.page_cache_share,
        })
        .collect()
}

fn exact_rows(major: u32, cells: &BTreeMap<u32, ExactCell>, window_s: f64) -> Vec<ExactWait> {
    let mut v: Vec<ExactWait> = cells
        .iter()
        .filter(|(_, c)| c.count > 0 || c.ns > 0)
        .map(|(&info, c)| {
            let (class, name) = crate::process::status::waits::describe(major, info)
                .unwrap_or(("unknown", format!("{info:#010x}")));
            let seconds = c.ns as f64 / 1e9;
            ExactWait {
                wait_event_type: class.to_string(),
                wait_event: name,
                count: c.count,
                seconds,
                share: if window_s > 0.0 {
                    (seconds / window_s).min(1.0)
                } else {
                    0.0
                },
            }
        })
        .collect();
    v.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    v
}

/// The processes the kernel measured something of: the leader first.
pub fn measured_pids(model: &Model) -> Vec<crate::trace::Pid> {
    let mut v: Vec<_> = model.sched.pids().chain(model.io_latency.pids()).collect();
    if !model.exact_waits.is_empty() {
        v.push(model.leader);
    }
    v.sort_unstable_by_key(|&p| (p != model.leader, p));
    v.dedup();
    v
}

/// `pid`'s `waits` records for the interval `since..now` and since attach (`ts` and the
/// total window counted from `start`), or none when the kernel measured nothing of it.
/// Exact waits are the leader's only (the watchpoint is on its `wait_event_info`).
pub fn waits_records(
    model: &Model,
    pid: crate::trace::Pid,
    start: u64,
    since: u64,
    now: u64,
) -> Vec<Record> {
    let exact_on = pid == model.leader && !model.exact_waits.is_empty();
    let io_total = model.io_latency.total_of(pid);
    if model.sched.total(pid).is_none() && io_total.is_empty() && !exact_on {
        return Vec::new();
    }
    let ts = now.saturating_sub(start) as f64 / 1e9;
    // A follower's times count from when it was followed.
    let start = model
        .procs
        .get(&pid)
        .map_or(start, |p| start.max(p.seen_ns));
    let major = model.exact_waits.major.unwrap_or(0);
    let mut out = Vec::with_capacity(2);
    for total in [false, true] {
        let window_s = if total {
            now.saturating_sub(start) as f64 / 1e9
        } else {
            now.saturating_sub(since.max(start)) as f64 / 1e9
        };
        let t = if total {
            model.sched.total(pid)
        } else {
            model.sched.interval(pid)
        };
        let io = if total {
            io_total.clone()
        } else {
            model.io_latency.interval_of(pid)
        };
        let exact = exact_on.then(|| {
            let cells = if total {
                model.exact_waits.total()
            } else {
                model.exact_waits.interval()
            };
            exact_rows(major, cells, window_s)
        });
        out.push(Record::Waits(WaitsRecord {
            ts,
            pid,
            scope: if total { "total" } else { "interval" }.to_string(),
            hz: 0.0,
            samples: 0,
            window_s,
            cpu_s: t.map(|t| t.running_ns as f64 / 1e9),
            off_cpu_s: t.map(|t| t.off_cpu_ns() as f64 / 1e9),
            uninterruptible_s: t.map(|t| t.blocked_ns as f64 / 1e9),
            runqueue_s: t.map(|t| t.runqueue_ns as f64 / 1e9),
            events: Vec::new(),
            queries: Vec::new(),
            io_latency: latency_rows(io),
            exact,
        }));
    }
    out
}

/// The same, as one text line per interval (and a line per slowest relation).
pub fn waits_text(model: &Model, since: u64, now: u64) -> Vec<String> {
    let mut lines = Vec::new();
    let pid = model.leader;
    if let Some(t) = model.sched.interval(pid) {
        let s = |ns: u64| ns as f64 / 1e9;
        lines.push(format!(
            "  cpu {:.2}s  off-cpu {:.2}s (D {:.2}s)  run queue {:.3}s  in {:.1}s",
            s(t.running_ns),
            s(t.off_cpu_ns()),
            s(t.blocked_ns),
            s(t.runqueue_ns),
            s(now.saturating_sub(since))
        ));
    }
    for r in model.io_latency.interval().into_iter().take(5) {
        let cache = r
            .page_cache_share
            .map(|c| format!(", {:.0}% page cache", c * 100.0))
            .unwrap_or_default();
        lines.push(format!(
            "  {} {} {}: {} calls, p50 {:.1}µs p99 {:.1}µs{cache}",
            r.op.name(),
            crate::text::visible(&r.relation),
            r.fork.unwrap_or("-"),
            r.count,
            r.p50_us,
            r.p99_us
        ));
    }
    lines
}
