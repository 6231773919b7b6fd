//! I/O latency per relation, fork and operation (`--io-latency`): each timed call's
//! latency in an HDR histogram, for the last interval and since attach, with how many of
//! the calls never waited for the device (served by the page cache); for all the traced
//! processes together and for each of them (the `waits` record is per process).

use crate::trace::{IoOp, Pid};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;

/// Highest latency kept exactly enough: an hour, in nanoseconds (longer ones are clamped).
const HIGHEST_NS: u64 = 3_600_000_000_000;
/// Distinct (relation, fork, op) kept; calls on any more are counted under `other files`.
const CELLS_KEPT: usize = 256;
const OTHER: &str = "other files";

/// What a call is counted under: (relation label, fork, op), borrowed, so that a call on
/// a file already counted allocates nothing (this runs once per timed system call).
pub type Key<'a> = (&'a str, Option<&'static str>, IoOp);

/// Per relation label, per (fork, op): looked up by `&str`, the label copied only once.
type Cells = BTreeMap<String, BTreeMap<(Option<&'static str>, IoOp), Cell>>;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Cell {
    #[serde(with = "hist_serde")]
    hist: Histogram<u32>,
    sum_ns: u64,
    /// Calls told apart, and of those the ones that never waited for the device.
    classified: u64,
    cached: u64,
}

impl Cell {
    fn new() -> Option<Cell> {
        Some(Cell {
            hist: Histogram::new_with_bounds(1, HIGHEST_NS, 2).ok()?,
            sum_ns: 0,
            classified: 0,
            cached: 0,
        })
    }

    fn record(&mut self, latency_ns: u64, disk: Option<bool>) {
        self.hist.saturating_record(latency_ns.clamp(1, HIGHEST_NS));
        self.sum_ns = self.sum_ns.saturating_add(latency_ns);
        if let Some(d) = disk {
            self.classified += 1;
            if !d {
                self.cached += 1;
            }
        }
    }
}

/// One line of the table: what a view shows.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatencyRow {
    pub relation: String,
    #[serde(with = "crate::model::sstr::opt")]
    pub fork: Option<crate::model::sstr::Static>,
    pub op: IoOp,
    pub count: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Seconds spent in these calls.
    pub total_s: f64,
    pub page_cache_share: Option<f64>,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Map {
    #[serde(with = "cells_serde")]
    cells: Cells,
    /// Cells in `cells`, all labels together.
    len: usize,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Scopes {
    total: Map,
    current: Map,
    last: Map,
    /// Ticks in a row with no call.
    idle_ticks: u32,
}

impl Scopes {
    fn record(&mut self, key: Key, latency_ns: u64, disk: Option<bool>) {
        record_in(&mut self.total, key, latency_ns, disk);
        record_in(&mut self.current, key, latency_ns, disk);
    }

    fn tick(&mut self) {
        self.idle_ticks = if self.current.len == 0 {
            self.idle_ticks.saturating_add(1)
        } else {
            0
        };
        self.last = std::mem::take(&mut self.current);
    }
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct IoLatency {
    all: Scopes,
    per_pid: BTreeMap<Pid, Scopes>,
}

/// A histogram as its recorded (value, count) pairs: what a replay's checkpoint keeps.
mod hist_serde {
    use super::{Histogram, HIGHEST_NS};
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &Histogram<u32>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(
            h.iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value())),
        )
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Histogram<u32>, D::Error> {
        let pairs = Vec::<(u64, u32)>::deserialize(d)?;
        let mut h = Histogram::new_with_bounds(1, HIGHEST_NS, 2).map_err(D::Error::custom)?;
        for (v, n) in pairs {
            h.saturating_record_n(v.clamp(1, HIGHEST_NS), n);
        }
        Ok(h)
    }
}

/// [`Cells`] with their `&'static str` forks: a list per label.
mod cells_serde {
    use super::{Cell, Cells, IoOp};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    #[derive(Serialize)]
    struct Out<'a>(
        &'a str,
        #[serde(with = "crate::model::sstr::opt_keyed")]
        &'a BTreeMap<(Option<&'static str>, IoOp), Cell>,
    );

    #[derive(Deserialize)]
    struct In(
        String,
        #[serde(with = "crate::model::sstr::opt_keyed")]
        BTreeMap<(Option<&'static str>, IoOp), Cell>,
    );

    pub fn serialize<S: Serializer>(c: &Cells, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(c.iter().map(|(k, v)| Out(k, v)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Cells, D::Error> {
        Ok(Vec::<In>::deserialize(d)?
            .into_iter()
            .map(|In(k, v)| (k, v))
            .collect())
    }
}

/// A process with no timed call for this many ticks in a row is forgotten (parallel
/// workers come and go, each with its own table).
const FORGET_TICKS: u32 = 30;

fn record_in(map: &mut Map, key: Key, latency_ns: u64, disk: Option<bool>) {
    let (label, fork, op) = key;
    if let Some(cell) = map
        .cells
        .get_mut(label)
        .and_then(|c| c.get_mut(&(fork, op)))
    {
        cell.record(latency_ns, disk);
        return;
    }
    // A new cell: past the cap, the call goes to `other files`.
    let (label, fork) = if map.len >= CELLS_KEPT {
        (OTHER, None)
    } else {
        (label, fork)
    };
    let cells = match map.cells.get_mut(label) {
        Some(c) => c,
        None => map.cells.entry(label.to_string()).or_default(),
    };
    if let Some(cell) = cells.get_mut(&(fork, op)) {
        cell.record(latency_ns, disk);
        return;
    }
    let Some(mut cell) = Cell::new() else {
        return;
    };
    cell.record(latency_ns, disk);
    cells.insert((fork, op), cell);
    map.len += 1;
}

fn rows_of(map: &Map) -> Vec<LatencyRow> {
    let mut v: Vec<LatencyRow> = (map.cells.iter())
        .flat_map(|(rel, c)| c.iter().map(move |((fork, op), c)| (rel, fork, op, c)))
        .filter(|(_, _, _, c)| !c.hist.is_empty())
        .map(|(rel, fork, op, c)| LatencyRow {
            relation: rel.clone(),
            fork: *fork,
            op: *op,
            count: c.hist.len(),
            p50_us: c.hist.value_at_quantile(0.5) as f64 / 1e3,
            p99_us: c.hist.value_at_quantile(0.99) as f64 / 1e3,
            total_s: c.sum_ns as f64 / 1e9,
            page_cache_share: (c.classified > 0).then(|| c.cached as f64 / c.classified as f64),
        })
        .collect();
    // Where the most time went first.
    v.sort_by(|a, b| b.total_s.total_cmp(&a.total_s));
    v
}

impl IoLatency {
    /// A call of `pid` (the process it is credited to).
    pub fn record(&mut self, pid: Pid, key: Key, latency_ns: u64, disk: Option<bool>) {
        self.all.record(key, latency_ns, disk);
        self.per_pid
            .entry(pid)
            .or_default()
            .record(key, latency_ns, disk);
    }

    pub fn tick(&mut self) {
        self.all.tick();
        for s in self.per_pid.values_mut() {
            s.tick();
        }
        self.per_pid.retain(|_, s| s.idle_ticks < FORGET_TICKS);
    }

    pub fn is_empty(&self) -> bool {
        self.all.total.len == 0
    }

    /// The last interval's rows, most time first, all processes together.
    pub fn interval(&self) -> Vec<LatencyRow> {
        rows_of(&self.all.last)
    }

    /// Since attach, all processes together.
    pub fn total(&self) -> Vec<LatencyRow> {
        rows_of(&self.all.total)
    }

    /// The processes with calls of their own (not forgotten yet).
    pub fn pids(&self) -> impl Iterator<Item = Pid> + '_ {
        self.per_pid.keys().copied()
    }

    /// `pid`'s last interval (empty when it had none).
    pub fn interval_of(&self, pid: Pid) -> Vec<LatencyRow> {
        self.per_pid
            .get(&pid)
            .map(|s| rows_of(&s.last))
            .unwrap_or_default()
    }

    /// `pid`'s calls since attach.
    pub fn total_of(&self, pid: Pid) -> Vec<LatencyRow> {
        self.per_pid
            .get(&pid)
            .map(|s| rows_of(&s.total))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(rel: &str) -> Key<'_> {
        (rel, Some("main"), IoOp::Read)
    }

    #[test]
    fn percentiles_and_page_cache_share() {
        let mut l = IoLatency::default();
        for _ in 0..95 {
            l.record(1, key("public.t"), 4_000, Some(false));
        }
        for _ in 0..5 {
            l.record(1, key("public.t"), 900_000, Some(true));
        }
        l.tick();
        let r = &l.interval()[0];
        assert_eq!(r.count, 100);
        assert!((r.p50_us - 4.0).abs() < 0.1, "{r:?}");
        assert!((r.p99_us - 900.0).abs() < 10.0, "{r:?}");
        assert_eq!(r.page_cache_share, Some(0.95));
        l.tick();
        assert!(l.interval().is_empty());
        assert_eq!(l.total()[0].count, 100);
        // Unclassified calls say nothing about the page cache.
        l.record(1, key("public.u"), 10, None);
        assert_eq!(
            l.total()
                .iter()
                .find(|r| r.relation == "public.u")
                .unwrap()
                .page_cache_share,
            None
        );
    }

    #[test]
    fn each_process_apart_and_together() {
        let mut l = IoLatency::default();
        l.record(1, key("public.t"), 4_000, Some(false));
        l.record(2, key("public.t"), 8_000, Some(true));
        l.record(2, key("public.u"), 8_000, Some(true));
        l.tick();
        assert_eq!(l.interval().iter().map(|r| r.count).sum::<u64>(), 3);
        assert_eq!(l.interval_of(1).len(), 1);
        assert_eq!(l.interval_of(2).iter().map(|r| r.count).sum::<u64>(), 2);
        assert!(l.interval_of(3).is_empty());
        assert_eq!(l.pids().collect::<Vec<_>>(), [1, 2]);
        // A process quiet for long is forgotten; the whole keeps its calls.
        for _ in 0..FORGET_TICKS {
            l.record(1, key("public.t"), 4_000, None);
            l.tick();
        }
        assert_eq!(l.pids().collect::<Vec<_>>(), [1]);
        assert_eq!(
            l.total().iter().map(|r| r.count).sum::<u64>(),
            3 + FORGET_TICKS as u64
        );
        assert_eq!(l.total_of(1)[0].count, 1 + FORGET_TICKS as u64);
    }

    #[test]
    fn cells_are_capped() {
        let mut l = IoLatency::default();
        for i in 0..CELLS_KEPT + 10 {
            l.record(1, key(&format!("r{i}")), 1000, None);
        }
        let rows = l.total();
        assert_eq!(rows.len(), CELLS_KEPT + 1);
        assert_eq!(rows.iter().find(|r| r.relation == OTHER).unwrap().count, 10);
        // Zero and huge latencies are clamped, not refused.
        l.record(1, key("r0"), 0, None);
        l.record(1, key("r0"), u64::MAX, None);
    }
}
