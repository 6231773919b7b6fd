//! The whole operation's ETA, across its phases: the current phase's rest at its own rate,
//! plus what is known of the phases still to come: their size from the counters (the
//! tuples an index build spooled, the heap blocks a `VACUUM` has yet to scan) and their
//! rate as learned earlier in this run (a `VACUUM`'s index and heap passes repeat); where
//! this run has not shown a phase's rate yet, a prior rate from [`PRIORS`] stands in, and
//! the ETA is said to be `inferred`.
//!
//! A `VACUUM` is modelled on its heap scan: each block scanned brings dead tuples, and the
//! passes over the indexes and the heap that they cost come in proportion, so the time of
//! the passes so far per block scanned is charged to every block still to scan. A
//! `CREATE INDEX` (btree) is a scan, a sort and a load of the same tuples; a `CLUSTER` is a
//! scan, a sort and a write of them, then its index rebuilds (whose number the counters do
//! not say: the rebuild under way is timed by the new heap's read position, when seen).

use super::{Reading, Unit};

/// One stretch of a phase, from the first sample that showed it to the first that did not.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Spell {
    phase: String,
    secs: f64,
    /// Units moved forward in it (a counter going back, the next index of a pass, is not
    /// counted as negative work).
    moved: u64,
    unit: Option<Unit>,
    /// The time `moved` was counted over: from the first sample that gave the spell's
    /// figure to the last one, less the stretches where the counter went back. Not
    /// `secs`: the work before the first sample (and after the last) is not in `moved`.
    /// None in a state stored before it was kept.
    #[serde(default)]
    counted_secs: Option<f64>,
}

/// The phases run so far, timed.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Ledger {
    closed: Vec<Spell>,
    open: Option<Open>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Open {
    phase: String,
    since: u64,
    last_ts: u64,
    last_done: Option<u64>,
    moved: u64,
    unit: Option<Unit>,
    /// The first and the last sample `moved` counts from and to since the counter last
    /// went back (None before a figure in `unit`, and in a state stored before it was
    /// kept)...
    #[serde(default)]
    counted: Option<(u64, u64)>,
    /// ...and the seconds counted before that.
    #[serde(default)]
    counted_before: f64,
}

impl Open {
    /// Seconds `moved` was counted over, up to `now`.
    fn counted_secs(&self, now: u64) -> f64 {
        let from = match self.counted {
            Some((from, _)) => from,
            // Nothing counted yet: no time either.
            None if self.moved == 0 => now,
            None => self.since,
        };
        self.counted_before + now.saturating_sub(from) as f64 / 1e9
    }
}

impl Ledger {
    /// A sample (or file evidence) of the operation at `ts`.
    ///
    /// A phase's length runs from halfway between the last sample before it and the first
    /// that showed it; its rate is its work between its first and last samples over the
    /// time between them. Its work before its first sample is not counted, so neither is
    /// that time: over its length, a phase sampled every second would be rated a quarter
    /// short when first rated (1.5 s of work in 2 s). The same where its counter goes back
    /// (a new pass, from zero, or a first sample that still showed the last command's
    /// figures): the work since is counted from the sample after, and so is the time.
    pub fn observe(&mut self, phase: Option<&str>, done: Option<u64>, unit: Option<Unit>, ts: u64) {
        let phase = phase.unwrap_or("");
        let same = self.open.as_ref().is_some_and(|o| o.phase == phase);
        if !same {
            // The phase changed somewhere between its last sample and this one: halfway
            // is the best guess (samples come an interval apart, more on a loaded host,
            // and a short phase would otherwise be charged a whole interval).
            let mut at = ts;
            if let Some(o) = self.open.take() {
                at = o.last_ts + ts.saturating_sub(o.last_ts) / 2;
                let counted_secs = match o.counted {
                    Some((from, to)) => {
                        Some(o.counted_before + to.saturating_sub(from) as f64 / 1e9)
                    }
                    None if o.moved == 0 => Some(o.counted_before),
                    None => None,
                };
                self.closed.push(Spell {
                    phase: o.phase,
                    secs: at.saturating_sub(o.since) as f64 / 1e9,
                    moved: o.moved,
                    unit: o.unit,
                    counted_secs,
                });
            }
            self.open = Some(Open {
                phase: phase.to_string(),
                since: at,
                last_ts: ts,
                last_done: done,
                moved: 0,
                unit,
                counted: done.map(|_| (ts, ts)),
                counted_before: 0.0,
            });
            return;
        }
        let Some(o) = self.open.as_mut() else {
            return;
        };
        let mut went_back = false;
        if o.unit == unit {
            if let (Some(a), Some(b)) = (o.last_done, done) {
                o.moved += b.saturating_sub(a);
                went_back = b < a;
            }
        } else if o.moved == 0 {
            // Figures in another unit (file evidence after a sample without any): counted
            // from this one on.
            o.unit = unit;
            o.counted = None;
            o.counted_before = 0.0;
        }
        if done.is_some() && o.unit == unit {
            o.counted = match o.counted {
                Some((from, to)) if went_back => {
                    o.counted_before += to.saturating_sub(from) as f64 / 1e9;
                    Some((ts, ts))
                }
                Some((from, _)) => Some((from, ts)),
                None if o.moved == 0 => Some((ts, ts)),
                None => None,
            };
        }
        o.last_done = done.or(o.last_done);
        o.last_ts = o.last_ts.max(ts);
    }

    /// Seconds spent in phases `f` accepts, the open one up to `now`.
    fn time_in(&self, now: u64, f: impl Fn(&str) -> bool) -> f64 {
        let open = self
            .open
            .as_ref()
            .filter(|o| f(&o.phase))
            .map_or(0.0, |o| now.saturating_sub(o.since) as f64 / 1e9);
        self.closed
            .iter()
            .filter(|s| f(&s.phase))
            .map(|s| s.secs)
            .sum::<f64>()
            + open
    }

    /// Units per second over every spell of `phase` in `unit`, the open one included;
    /// None before [`MIN_LEARN_S`] of it.
    fn rate(&self, phase: &str, unit: Unit, now: u64) -> Option<f64> {
        self.rate_after(phase, unit, now, MIN_LEARN_S)
    }

    /// [`Ledger::rate`] once `phase` has been counted `min_s` in all.
    fn rate_after(&self, phase: &str, unit: Unit, now: u64, min_s: f64) -> Option<f64> {
        let mut secs = 0.0;
        let mut moved = 0u64;
        for s in self
            .closed
            .iter()
            .filter(|s| s.phase == phase && s.unit == Some(unit))
        {
            secs += s.counted_secs.unwrap_or(s.secs);
            moved += s.moved;
        }
        if let Some(o) = self
            .open
            .as_ref()
            .filter(|o| o.phase == phase && o.unit == Some(unit))
        {
            secs += o.counted_secs(now);
            moved += o.moved;
        }
        (secs >= min_s && moved > 0).then(|| moved as f64 / secs)
    }

    /// The mean length of the finished spells of `phase`.
    fn mean_secs(&self, phase: &str) -> Option<f64> {
        let (n, secs) = self
            .closed
            .iter()
            .filter(|s| s.phase == phase)
            .fold((0u32, 0.0), |(n, t), s| (n + 1, t + s.secs));
        (n > 0).then(|| secs / f64::from(n))
    }

    /// Seconds into the open phase.
    fn in_phase(&self, now: u64) -> f64 {
        self.open
            .as_ref()
            .map_or(0.0, |o| now.saturating_sub(o.since) as f64 / 1e9)
    }
}

/// Below this much time, a phase's rate is not learned (as `MIN_RATE_NS` for the line).
const MIN_LEARN_S: f64 = 2.0;
/// A `VACUUM`'s heap scan, over all its stretches between index passes.
const MIN_SCAN_S: f64 = 0.25;

/// Prior rates for phases this run has not timed yet, in their unit per second: an order
/// of magnitude, measured on a laptop-class machine with PostgreSQL 16 (an int4 btree
/// build of 10 M rows: 3 M tuples/s sorted in memory, 2 M tuples/s loaded; a `CLUSTER`
/// writes ~1 M tuples/s). Only ever the smaller part of an ETA: the phase under way,
/// timed, dominates until these phases start and are timed in turn.
pub const PRIORS: &[(&str, f64)] = &[
    ("sort tuples", 3_000_000.0),
    ("load tuples", 2_000_000.0),
    ("write tuples", 1_000_000.0),
    // A btree build's sort and load of one heap block's tuples, before their number is known.
    ("sort and load blocks", 20_000.0),
];

fn prior(what: &str) -> f64 {
    PRIORS
        .iter()
        .find(|(w, _)| *w == what)
        .map_or(1.0, |(_, r)| *r)
}

/// What the counters say beyond `done`/`total`, for the phases to come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Extra {
    /// Heap blocks of the relation, and how many scanned (`VACUUM`, `CLUSTER`).
    pub heap_blocks: Option<u64>,
    pub heap_scanned: Option<u64>,
    /// Tuples to sort and load (a btree build's spool, a `CLUSTER`'s tuples scanned).
    pub tuples: Option<u64>,
    /// A `VACUUM`'s index passes done (`index_vacuum_count`), and its dead-item store:
    /// (filled, capacity), in tuples before 17 and in bytes from 17 (a pass comes each
    /// time it fills).
    pub index_passes: Option<u64>,
    pub dead_items: Option<(u64, u64)>,
    /// A `CLUSTER`'s (`VACUUM FULL`'s) index rebuilds done (`index_rebuild_count`), and
    /// the indexes of the table (from the catalog: the counters do not say).
    pub rebuilt: Option<u64>,
    pub indexes: Option<u64>,
}

/// The whole operation's ETA, and whether any of it is modelled rather than timed.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Eta {
    pub secs: f64,
    pub inferred: bool,
}

/// The ETA at `now`, given the reading, the phases timed so far and the current phase's
/// rate (`None` while it has run too briefly).
pub fn estimate(r: &Reading, ledger: &Ledger, rate: Option<f64>, now: u64) -> Option<Eta> {
    let phase = r.phase.as_deref().unwrap_or("");
    let current = rate;
    // The current phase's rest at its rate, or at the rate it had in an earlier spell.
    let rate = rate.or_else(|| ledger.rate(phase, r.unit?, now));
    let rest = match (r.done, r.total, rate) {
        (Some(d), Some(t), Some(v)) if v > 0.0 => Some(t.saturating_sub(d) as f64 / v),
        _ => None,
    };
    let timed = |secs: f64| {
        Some(Eta {
            secs,
            inferred: false,
        })
    };
    let modelled = |secs: f64| {
        Some(Eta {
            secs,
            inferred: true,
        })
    };
    match r.operation {
        // Tables differ in size: tables per second says nothing of the time left.
        "pg_dump" => None,
        "vacuum" | "autovacuum" => vacuum(r, ledger, rest, now),
        "create index" | "reindex" => {
            let spool = |tuples: u64| tuples as f64 / prior("load tuples");
            match phase {
                "building index: scanning table" => {
                    let blocks = r.total? as f64;
                    modelled(rest? + blocks / prior("sort and load blocks"))
                }
                "building index: sorting live tuples" | "building index: sorting dead tuples" => {
                    let n = r.extra.tuples?;
                    let sort = rest.unwrap_or_else(|| {
                        (n as f64 / prior("sort tuples") - ledger.in_phase(now)).max(0.0)
                    });
                    modelled(sort + spool(n))
                }
                _ => timed(rest?),
            }
        }
        "cluster" | "vacuum full" => {
            // The tuples the scan will have read, from its share of the heap so far.
            let tuples = || {
                let (n, b, s) = (r.extra.tuples?, r.extra.heap_blocks?, r.extra.heap_scanned?);
                (s > 0).then(|| n as f64 * b as f64 / s as f64)
            };
            let sorts = r.operation == "cluster";
            let after_scan = |n: f64| {
                let sort = if sorts { n / prior("sort tuples") } else { 0.0 };
                let write = if sorts {
                    n / prior("write tuples")
                } else {
                    0.0
                };
                sort + write
            };
            // Each index still to rebuild, before any rebuild is timed: a btree build of
            // the tuples, sorted and loaded.
            let rebuilds = |n: f64| {
                let k = r.extra.indexes.unwrap_or(0) as f64;
                k * (n / prior("sort tuples") + n / prior("load tuples"))
            };
            match phase {
                "seq scanning heap" => {
                    modelled(rest? + tuples().map_or(0.0, |n| after_scan(n) + rebuilds(n)))
                }
                "sorting tuples" => {
                    let n = r.extra.tuples? as f64;
                    let sort = (n / prior("sort tuples") - ledger.in_phase(now)).max(0.0);
                    modelled(sort + n / prior("write tuples") + rebuilds(n))
                }
                "writing new heap" => {
                    let (done, n) = (r.done?, r.extra.tuples?);
                    let v = rate.unwrap_or(prior("write tuples"));
                    let secs = n.saturating_sub(done) as f64 / v + rebuilds(n as f64);
                    if rate.is_some() && r.extra.indexes.unwrap_or(0) == 0 {
                        timed(secs)
                    } else {
                        modelled(secs)
                    }
                }
                "rebuilding index" => {
                    // Every rebuild reads the whole new heap: each one still to come
                    // after this one is another read of it at this one's pace. After
                    // the first, only this one's pace: the phase's rate over all of
                    // them would lend this one an earlier, quicker rebuild's.
                    let v = if r.extra.rebuilt.unwrap_or(0) == 0 {
                        rate
                    } else {
                        current
                    }
                    .filter(|&v| v > 0.0)?;
                    let (done, total) = (r.done?, r.total?);
                    let own = total.saturating_sub(done) as f64 / v;
                    let after = match (r.extra.indexes, r.extra.rebuilt) {
                        (Some(n), Some(k)) => n.saturating_sub(k + 1),
                        _ => 0,
                    };
                    let each = total as f64 / v;
                    let secs = own + after as f64 * each;
                    if after > 0 {
                        modelled(secs)
                    } else {
                        modelled(own)
                    }
                }
                _ => modelled(rest?),
            }
        }
        _ => timed(rest?),
    }
}

fn vacuum(r: &Reading, ledger: &Ledger, rest: Option<f64>, now: u64) -> Option<Eta> {
    let phase = r.phase.as_deref().unwrap_or("");
    let (total, scanned) = (r.extra.heap_blocks?, r.extra.heap_scanned?);
    let left = total.saturating_sub(scanned) as f64;
    // A scan cut into short stretches by index passes is timed over all of them, from
    // less time than a phase on its own: the passes, not the scan, are most of the run.
    let scan_rate = ledger.rate_after("scanning heap", Unit::Blocks, now, MIN_SCAN_S)?;
    let scan = left / scan_rate;
    let in_pass = PASSES.contains(&phase);
    // The heap pass, as long as those before it; the first one, at least as long as it
    // has run (its counter is no share of its work: it counts to the blocks scanned).
    let heap_pass = || {
        ledger.mean_secs("vacuuming heap").unwrap_or_else(|| {
            if phase == "vacuuming heap" {
                ledger.in_phase(now)
            } else {
                0.0
            }
        })
    };
    // A pass under way: its own rest (as long as the index passes before it; the first
    // timed by the index's read position, which moves unevenly), and the heap pass
    // after an index pass.
    let own = || match phase {
        "vacuuming indexes" => {
            let own = ledger
                .mean_secs(phase)
                .map(|mean| (mean - ledger.in_phase(now)).max(0.0))
                .or(rest);
            own.unwrap_or(0.0) + heap_pass()
        }
        _ => (heap_pass() - ledger.in_phase(now)).max(0.0),
    };
    // (seconds, whether passes to come, timed in this run, are in them)
    let (secs, passes) = match passes_ahead(r, scanned, left, in_pass) {
        // The passes still to come, each as long as those so far: an index pass reads
        // the whole index whatever the items (one per store-full, the last one after the
        // scan), a heap pass the blocks with items (its share of the items to come).
        Some(stores) => {
            let index = ledger.mean_secs("vacuuming indexes").unwrap_or(0.0);
            let heap = heap_pass();
            let secs = scan + stores.ceil() * index + stores * heap;
            (secs, stores > 0.0 && index + heap > 0.0)
        }
        // No store to count passes by: the passes so far, per block scanned, are what
        // each block still to scan will bring.
        None => {
            let passes = ledger.time_in(now, |p| PASSES.contains(&p));
            let per_block = if scanned > 0 {
                passes / scanned as f64
            } else {
                0.0
            };
            (scan + left * per_block, per_block > 0.0)
        }
    };
    match phase {
        "scanning heap" => Some(Eta {
            secs,
            inferred: passes,
        }),
        _ if in_pass => Some(Eta {
            secs: own() + secs,
            inferred: true,
        }),
        _ => rest.map(|secs| Eta {
            secs,
            inferred: false,
        }),
    }
}

const PASSES: [&str; 2] = ["vacuuming indexes", "vacuuming heap"];

/// The store-fulls of dead items still to come, a fraction for the last one (after the
/// scan): the items the blocks left will bring, at the rate the blocks scanned brought
/// them, over the store's capacity; none while the scan has found no dead items. The items
/// of a pass under way (still in the store) are not counted. None without the store's
/// figures.
fn passes_ahead(r: &Reading, scanned: u64, left: f64, in_pass: bool) -> Option<f64> {
    let (filled, cap) = r.extra.dead_items.filter(|&(_, c)| c > 0)?;
    let done = r.extra.index_passes?;
    if scanned == 0 {
        return None;
    }
    // The store is emptied after the heap pass: in an index pass its items are this
    // pass's, and in the heap pass the count of passes already says them.
    let (pending, found) = match r.phase.as_deref() {
        Some("vacuuming heap") => (0, done.saturating_mul(cap)),
        _ if in_pass => (0, done.saturating_add(1).saturating_mul(cap)),
        _ => (filled, done.saturating_mul(cap).saturating_add(filled)),
    };
    let to_come = pending as f64 + found as f64 / scanned as f64 * left;
    Some(to_come / cap as f64)
}

#[cfg(test)]
mod tests {
    use super::super::{Source, Want};
    use super::*;

    const S: u64 = 1_000_000_000;

    fn reading(
        op: &'static str,
        phase: &str,
        done: u64,
        total: Option<u64>,
        unit: Unit,
    ) -> Reading {
        Reading {
            operation: op,
            relid: None,
            phase: Some(phase.into()),
            phase_number: None,
            phases_total: None,
            done: Some(done),
            total,
            unit: Some(unit),
            source: Source::Memory,
            want: Want::Nothing,
            note: None,
            extra: Extra::default(),
            dump_table: None,
        }
    }

    #[test]
    fn vacuum_charges_passes_to_the_blocks_left() {
        let mut l = Ledger::default();
        // 100 blocks/s scanning; after 200 blocks a 1 s index pass and a 1 s heap pass.
        l.observe(Some("scanning heap"), Some(0), Some(Unit::Blocks), 0);
        l.observe(Some("scanning heap"), Some(200), Some(Unit::Blocks), 2 * S);
        l.observe(Some("vacuuming indexes"), None, None, 2 * S);
        l.observe(Some("vacuuming indexes"), None, None, 3 * S);
        l.observe(Some("vacuuming heap"), Some(0), Some(Unit::Blocks), 3 * S);
        l.observe(Some("vacuuming heap"), Some(200), Some(Unit::Blocks), 4 * S);
        l.observe(Some("scanning heap"), Some(200), Some(Unit::Blocks), 4 * S);
        l.observe(Some("scanning heap"), Some(300), Some(Unit::Blocks), 5 * S);
        let mut r = reading("vacuum", "scanning heap", 300, Some(1000), Unit::Blocks);
        r.extra = Extra {
            heap_blocks: Some(1000),
            heap_scanned: Some(300),
            ..Default::default()
        };
        let e = estimate(&r, &l, Some(100.0), 5 * S).unwrap();
        // 700 blocks at 100/s, plus 2 s of passes per 300 blocks scanned.
        assert!((e.secs - (7.0 + 700.0 * 2.0 / 300.0)).abs() < 1e-6, "{e:?}");
        assert!(e.inferred);
        // In the second index pass: as long as the first, its heap pass as long as the
        // first, then the scan's rest.
        l.observe(Some("scanning heap"), Some(300), Some(Unit::Blocks), 6 * S);
        l.observe(Some("vacuuming indexes"), None, None, 6 * S);
        let mut r = reading("vacuum", "vacuuming indexes", 0, None, Unit::Bytes);
        r.extra = Extra {
            heap_blocks: Some(1000),
            heap_scanned: Some(400),
            ..Default::default()
        };
        r.done = None;
        let e = estimate(&r, &l, None, 6 * S + S / 2).unwrap();
        // The scan's rate over both spells: 300 blocks in 4 s.
        let per_block = 2.5 / 400.0;
        assert!(
            (e.secs - (0.5 + 1.0 + 600.0 / 75.0 + 600.0 * per_block)).abs() < 1e-6,
            "{e:?}"
        );
    }

    #[test]
    fn vacuum_counts_the_passes_to_come() {
        let mut l = Ledger::default();
        // 100 blocks/s; the store (1000 items) fills every 200 blocks (5 items a block):
        // a 2 s index pass and a 1 s heap pass each time.
        l.observe(Some("scanning heap"), Some(0), Some(Unit::Blocks), 0);
        l.observe(Some("scanning heap"), Some(200), Some(Unit::Blocks), 2 * S);
        l.observe(Some("vacuuming indexes"), None, None, 2 * S);
        l.observe(Some("vacuuming indexes"), None, None, 4 * S);
        l.observe(Some("vacuuming heap"), Some(0), Some(Unit::Blocks), 4 * S);
        l.observe(Some("vacuuming heap"), Some(0), Some(Unit::Blocks), 5 * S);
        l.observe(Some("scanning heap"), Some(200), Some(Unit::Blocks), 5 * S);
        l.observe(Some("scanning heap"), Some(300), Some(Unit::Blocks), 6 * S);
        let mut r = reading("vacuum", "scanning heap", 300, Some(1000), Unit::Blocks);
        r.extra = Extra {
            heap_blocks: Some(1000),
            heap_scanned: Some(300),
            index_passes: Some(1),
            dead_items: Some((500, 1000)),
            ..Default::default()
        };
        let e = estimate(&r, &l, Some(100.0), 6 * S).unwrap();
        // 700 blocks at 100/s; 500 items in the store and 3500 to come: 4 passes of 3 s,
        // the last one after the scan.
        assert!((e.secs - (7.0 + 4.0 * 3.0)).abs() < 1e-6, "{e:?}");
        assert!(e.inferred);
        // Half a second into the next index pass (its items out of the count): its rest,
        // its heap pass, the scan's rest and 3 passes for the 3000 items to come.
        l.observe(Some("scanning heap"), Some(400), Some(Unit::Blocks), 7 * S);
        l.observe(Some("vacuuming indexes"), None, None, 7 * S);
        r.phase = Some("vacuuming indexes".into());
        r.extra.heap_scanned = Some(400);
        r.extra.dead_items = Some((1000, 1000));
        let e = estimate(&r, &l, None, 7 * S + S / 2).unwrap();
        assert!(
            (e.secs - (1.5 + 1.0 + 6.0 + 3.0 * 3.0)).abs() < 1e-6,
            "{e:?}"
        );
        // No store figures (a garbled read): no count of passes, none invented.
        r.extra.dead_items = Some((5, 0));
        assert!(estimate(&r, &l, None, 7 * S + S / 2).is_some());
    }

    #[test]
    fn cluster_counts_the_rebuilds_to_come() {
        let l = Ledger::default();
        // Half through the second of three rebuilds, reading the new heap at 10 bytes/s.
        let mut r = reading("cluster", "rebuilding index", 50, Some(100), Unit::Bytes);
        r.extra.rebuilt = Some(1);
        let e = estimate(&r, &l, Some(10.0), 10 * S).unwrap();
        // Without the catalog's count: this rebuild's rest only.
        assert!((e.secs - 5.0).abs() < 1e-9, "{e:?}");
        r.extra.indexes = Some(3);
        let e = estimate(&r, &l, Some(10.0), 10 * S).unwrap();
        // Its rest, then one more read of the new heap at its pace.
        assert!((e.secs - 15.0).abs() < 1e-9, "{e:?}");
        assert!(e.inferred);
        // No rate of its own yet: none (an earlier, quicker rebuild's pace is no guide).
        assert_eq!(estimate(&r, &l, None, 10 * S), None);
    }

    #[test]
    fn index_build_adds_the_sort_and_load() {
        let mut l = Ledger::default();
        l.observe(
            Some("building index: scanning table"),
            Some(0),
            Some(Unit::Blocks),
            0,
        );
        let r = reading(
            "create index",
            "building index: scanning table",
            250,
            Some(1000),
            Unit::Blocks,
        );
        let e = estimate(&r, &l, Some(100.0), 3 * S).unwrap();
        assert!((e.secs - (7.5 + 1000.0 / 20_000.0)).abs() < 1e-9);
        l.observe(
            Some("building index: scanning table"),
            Some(1000),
            Some(Unit::Blocks),
            10 * S,
        );
        l.observe(
            Some("building index: sorting live tuples"),
            None,
            None,
            10 * S,
        );
        let mut r = reading(
            "create index",
            "building index: sorting live tuples",
            0,
            None,
            Unit::Tuples,
        );
        r.done = None;
        r.extra.tuples = Some(6_000_000);
        let e = estimate(&r, &l, None, 11 * S).unwrap();
        assert!((e.secs - (1.0 + 3.0)).abs() < 1e-9, "{e:?}");
        let r = reading(
            "create index",
            "building index: loading tuples in tree",
            10,
            Some(110),
            Unit::Tuples,
        );
        assert_eq!(
            estimate(&r, &l, Some(10.0), 12 * S),
            Some(Eta {
                secs: 10.0,
                inferred: false
            })
        );
    }

    #[test]
    fn a_phase_is_rated_over_the_samples_that_counted_it() {
        // Samples a second apart. Phase b starts at 10.4 s and runs at 100 blocks/s: its
        // first sample, at 11 s, already shows 60 done.
        let mut l = Ledger::default();
        l.observe(Some("a"), Some(0), Some(Unit::Blocks), 9 * S);
        l.observe(Some("a"), Some(50), Some(Unit::Blocks), 10 * S);
        l.observe(Some("b"), Some(60), Some(Unit::Blocks), 11 * S);
        l.observe(Some("b"), Some(160), Some(Unit::Blocks), 12 * S);
        l.observe(Some("b"), Some(260), Some(Unit::Blocks), 13 * S);
        let r = reading("copy", "b", 260, Some(1000), Unit::Blocks);
        // The line's own rate not ready: the ledger's, 200 blocks from 11 s to 13 s (not
        // over the 2.5 s from halfway between 10 s and 11 s, 80/s, an ETA of 9.25 s).
        let e = estimate(&r, &l, None, 13 * S).unwrap();
        assert!((e.secs - 7.4).abs() < 1e-9, "{e:?}");
        // Its length is still timed from halfway.
        assert!((l.in_phase(13 * S) - 2.5).abs() < 1e-9);
        // Closed, it lends that rate to its next spell, and its length is 10.5 s to 13.5 s.
        l.observe(Some("c"), None, None, 14 * S);
        l.observe(Some("b"), Some(0), Some(Unit::Blocks), 15 * S);
        assert_eq!(l.mean_secs("b"), Some(3.0));
        let r = reading("copy", "b", 0, Some(300), Unit::Blocks);
        let e = estimate(&r, &l, None, 15 * S).unwrap();
        assert!((e.secs - 3.0).abs() < 1e-9, "{e:?}");
    }

    #[test]
    fn a_counter_going_back_is_counted_from_the_sample_after() {
        // The first sample still shows the last command's figures (500 done); the scan
        // starts from zero at 10.4 s at 100 blocks/s, sampled every second.
        let mut l = Ledger::default();
        l.observe(Some("scan"), Some(500), Some(Unit::Blocks), 10 * S);
        l.observe(Some("scan"), Some(60), Some(Unit::Blocks), 11 * S);
        l.observe(Some("scan"), Some(160), Some(Unit::Blocks), 12 * S);
        l.observe(Some("scan"), Some(260), Some(Unit::Blocks), 13 * S);
        let r = reading("copy", "scan", 260, Some(1000), Unit::Blocks);
        // 200 blocks from 11 s to 13 s, not in the 3 s from 10 s (66.7/s).
        let e = estimate(&r, &l, None, 13 * S).unwrap();
        assert!((e.secs - 7.4).abs() < 1e-9, "{e:?}");
        // The first pass runs on to 900 at 19 s; a second one, from zero, is at 50 at 20 s:
        // the time between is not counted, neither is its work.
        l.observe(Some("scan"), Some(900), Some(Unit::Blocks), 19 * S);
        l.observe(Some("scan"), Some(50), Some(Unit::Blocks), 20 * S);
        l.observe(Some("scan"), Some(250), Some(Unit::Blocks), 22 * S);
        let r = reading("copy", "scan", 250, Some(1000), Unit::Blocks);
        let e = estimate(&r, &l, None, 22 * S).unwrap();
        // 200 + 640 + 200 blocks in 2 + 6 + 2 s.
        assert!((e.secs - 750.0 / 104.0).abs() < 1e-9, "{e:?}");
    }

    #[test]
    fn figures_from_files_are_rated_from_the_first_one() {
        // A COPY without counters: its first sample has no figure; the file's read position
        // comes at the next tick (100 bytes by 1 s), then 100 bytes/s.
        let mut l = Ledger::default();
        l.observe(None, None, None, 0);
        l.observe(None, Some(100), Some(Unit::Bytes), S);
        l.observe(None, Some(200), Some(Unit::Bytes), 2 * S);
        l.observe(None, Some(300), Some(Unit::Bytes), 3 * S);
        let mut r = reading("copy", "", 300, Some(1000), Unit::Bytes);
        r.phase = None;
        let e = estimate(&r, &l, None, 3 * S).unwrap();
        // 200 bytes in the 2 s they were counted over, not in the 3 s since the start.
        assert!((e.secs - 7.0).abs() < 1e-9, "{e:?}");
    }

    #[test]
    fn a_phase_seen_before_lends_its_rate() {
        let mut l = Ledger::default();
        l.observe(Some("a"), Some(0), Some(Unit::Bytes), 0);
        l.observe(Some("a"), Some(300), Some(Unit::Bytes), 3 * S);
        l.observe(Some("b"), None, None, 3 * S);
        l.observe(Some("b"), None, None, 4 * S);
        l.observe(Some("a"), Some(0), Some(Unit::Bytes), 4 * S);
        let r = reading("copy", "a", 100, Some(400), Unit::Bytes);
        // Not timed long enough in this spell: every spell's together, 300 in 3.1 s.
        let e = estimate(&r, &l, None, 4 * S + S / 10).unwrap();
        assert!((e.secs - 3.1).abs() < 1e-9, "{e:?}");
        assert_eq!(estimate(&r, &Ledger::default(), None, S), None);
    }
}
