//! The records of a trace folded into what a report draws: per relation and per backup a
//! series of samples, and spans (verdicts, wait events, backup phases, queries, lock
//! waits) with a start and an end. Pure: records in, series out.
//!
//! A record's `ts` is seconds since attach. The records come from a file that may be
//! hostile: a `ts` that is negative, beyond [`MAX_TS`] or out of order is not drawn but
//! counted in [`Timeline::out_of_range`], and no figure read here sizes an allocation.

use crate::output::record::{
    AttachRecord, BackupRecord, ProgressRecord, Record, SummaryRecord, WaitShare, WaitsRecord,
};
use crate::trace::Pid;
use std::collections::BTreeMap;

/// Ten years in seconds: a trace stamp beyond it is damage, not a long trace.
pub const MAX_TS: f64 = 10.0 * 365.0 * 86_400.0;

/// What a report shows of a trace.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Timeline {
    pub attach: Option<AttachRecord>,
    /// The first and last `ts` of the trace's records (seconds since attach).
    pub start: Option<f64>,
    pub end: Option<f64>,
    /// Every relation read or written, in the order first seen.
    pub relations: Vec<RelationSeries>,
    pub backup: Vec<BackupPoint>,
    /// Phases of a base backup (or copier), as the backup records said them.
    pub backup_phases: Vec<Span>,
    /// The verdict over time: `label` is `verdict_kind`, `detail` the verdict's first words.
    pub verdicts: Vec<Span>,
    /// The wait event over time, from the status samples.
    pub waits: Vec<Span>,
    /// The `waits` records of scope `interval`, in order.
    pub wait_intervals: Vec<WaitsRecord>,
    /// The last `waits` record of scope `total`.
    pub wait_total: Option<WaitsRecord>,
    /// USDT's query records.
    pub queries: Vec<QuerySpan>,
    /// The query of the status samples while the process was active (`label` its text):
    /// what there is of queries without USDT.
    pub active_queries: Vec<Span>,
    pub lock_waits: Vec<LockSpan>,
    /// `-d` records: one per system call or other event.
    pub syscalls: Vec<SyscallPoint>,
    /// Every process seen, with what it is (the traced one's title, "parallel worker"...).
    pub processes: BTreeMap<Pid, String>,
    pub summary: Option<SummaryRecord>,
    /// From the last `stats` record.
    pub events: Option<u64>,
    pub lost: BTreeMap<String, u64>,
    /// Records of a trace whose `ts` could not be placed (negative, beyond ten years).
    pub out_of_range: u64,
    /// Records that are not part of a trace (`catalog`, `ps`, `probes` output).
    pub foreign: u64,
}

/// One relation's progress records.
#[derive(Debug, Clone, PartialEq)]
pub struct RelationSeries {
    /// Its main-fork path: the key of `progress` records.
    pub key: String,
    /// Its label (`sales.orders`, `orders_pkey → sales.orders`).
    pub label: String,
    pub kind: Option<String>,
    pub points: Vec<RelationPoint>,
    /// The last record: the `final` one when the trace ended cleanly.
    pub last: ProgressRecord,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RelationPoint {
    pub ts: f64,
    pub percent: Option<f64>,
    pub coverage: Option<f64>,
    pub rate_bps: f64,
    pub bytes_read: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackupPoint {
    pub ts: f64,
    /// `basebackup` or `low-level`.
    pub method: String,
    /// Copier mode: the copier's name.
    pub copier: Option<String>,
    pub phase: String,
    pub streamed: u64,
    pub total: Option<u64>,
    pub percent: Option<f64>,
    pub rate_bps: f64,
    pub ended: bool,
}

/// Something that held from `start` to `end` (seconds since attach).
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub label: String,
    pub detail: String,
    pub start: f64,
    pub end: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QuerySpan {
    pub pid: Pid,
    pub text: String,
    pub start: f64,
    /// Null while it ran past the end of the trace.
    pub duration_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LockSpan {
    pub pid: Pid,
    pub mode: String,
    pub object: String,
    pub start: f64,
    /// Null when still waiting at the end of the trace.
    pub duration_s: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyscallPoint {
    pub ts: f64,
    pub pid: Pid,
    /// The system call (`pread64`) or the event's kind (`stat`, `exit`).
    pub name: String,
    /// The file's label or path, when known.
    pub object: Option<String>,
    pub bytes: Option<u64>,
    pub result: Option<i64>,
}

impl Timeline {
    /// Fold a trace's records, in the order written.
    pub fn from_records(records: &[Record]) -> Timeline {
        let mut f = Fold::default();
        for r in records {
            f.record(r);
        }
        f.finish()
    }

    /// Start and end of the trace, never empty (a trace of one instant spans a second).
    pub fn range(&self) -> (f64, f64) {
        let s = self.start.unwrap_or(0.0);
        let e = self.end.unwrap_or(s);
        if e > s {
            (s, e)
        } else {
            (s, s + 1.0)
        }
    }

    /// The traced process's pid: the attach record's, else the summary's.
    pub fn pid(&self) -> Option<Pid> {
        self.attach
            .as_ref()
            .map(|a| a.pid)
            .or(self.summary.as_ref().map(|s| s.pid))
    }
}

/// A wait event in words: `IO: DataFileRead`, or `no wait event` when none is set.
pub fn wait_label(kind: Option<&str>, event: Option<&str>) -> String {
    match (kind, event) {
        (Some(k), Some(e)) => format!("{k}: {e}"),
        (Some(k), None) => k.to_string(),
        (None, Some(e)) => e.to_string(),
        (None, None) => "no wait event".to_string(),
    }
}

/// The label of one share of a wait profile (`None` type: on CPU).
pub fn share_label(w: &WaitShare) -> String {
    match (&w.wait_event_type, &w.wait_event) {
        (None, None) => "CPU (no wait event)".to_string(),
        (k, e) => wait_label(k.as_deref(), e.as_deref()),
    }
}

#[derive(Default)]
struct Fold {
    t: Timeline,
    relation_index: BTreeMap<String, usize>,
    query_index: BTreeMap<(Pid, u64, String), usize>,
    lock_index: BTreeMap<(Pid, u64, String, String), usize>,
    verdicts: Samples,
    waits: Samples,
    phases: Samples,
    active: Samples,
}

/// Labelled samples, merged into spans: a label holds from its sample until the next
/// sample with another label.
#[derive(Default)]
struct Samples {
    spans: Vec<Span>,
}

impl Samples {
    fn push(&mut self, ts: f64, label: &str, detail: &str) {
        if let Some(last) = self.spans.last_mut() {
            last.end = last.end.max(ts);
            if last.label == label {
                return;
            }
        }
        self.spans.push(Span {
            label: label.to_string(),
            detail: detail.to_string(),
            start: ts,
            end: ts,
        });
    }

    /// The last span lasts to the end of the trace.
    fn finish(mut self, end: Option<f64>) -> Vec<Span> {
        if let (Some(last), Some(end)) = (self.spans.last_mut(), end) {
            last.end = last.end.max(end);
        }
        self.spans
    }
}

/// A `ts` that can be placed on a time axis.
fn placeable(ts: f64) -> bool {
    ts.is_finite() && (0.0..=MAX_TS).contains(&ts)
}

/// The key of a sample's start time: whole nanoseconds (a query's `ts` is the same in
/// every record of it).
fn ts_key(ts: f64) -> u64 {
    (ts * 1e9) as u64
}

/// A duration only when it is one.
fn duration(d: Option<f64>) -> Option<f64> {
    d.filter(|d| placeable(*d))
}

impl Fold {
    fn seen(&mut self, ts: f64) -> bool {
        if !placeable(ts) {
            self.t.out_of_range += 1;
            return false;
        }
        self.t.start = Some(self.t.start.map_or(ts, |s| s.min(ts)));
        self.t.end = Some(self.t.end.map_or(ts, |e| e.max(ts)));
        true
    }

    fn process(&mut self, pid: Pid, what: &str) {
        self.t
            .processes
            .entry(pid)
            .or_insert_with(|| what.to_string());
    }

    fn record(&mut self, r: &Record) {
        match r {
            Record::Attach(a) => {
                // The traced process is named by its title, over anything said before.
                self.t.processes.insert(a.pid, a.title.clone());
                if self.t.attach.is_none() {
                    self.t.attach = Some(a.clone());
                }
            }
            Record::File(f) => {
                if !self.seen(f.ts) {
                    return;
                }
                let what = if f.io_worker {
                    "io worker"
                } else if f.parallel_worker {
                    "parallel worker"
                } else {
                    "process"
                };
                self.process(f.pid, what);
            }
            Record::Progress(p) => {
                if self.seen(p.ts) {
                    self.progress(p);
                }
            }
            Record::Query(q) => {
                if !self.seen(q.ts) {
                    return;
                }
                self.process(q.pid, "process");
                let key = (q.pid, ts_key(q.ts), q.text.clone());
                let span = QuerySpan {
                    pid: q.pid,
                    text: q.text.clone(),
                    start: q.ts,
                    duration_s: duration(q.duration_s),
                };
                match self.query_index.get(&key) {
                    Some(&i) => self.t.queries[i] = span,
                    None => {
                        self.query_index.insert(key, self.t.queries.len());
                        self.t.queries.push(span);
                    }
                }
            }
            Record::LockWait(l) => {
                if !self.seen(l.ts) {
                    return;
                }
                self.process(l.pid, "process");
                let key = (l.pid, ts_key(l.ts), l.mode.clone(), l.object.clone());
                let span = LockSpan {
                    pid: l.pid,
                    mode: l.mode.clone(),
                    object: l.object.clone(),
                    start: l.ts,
                    duration_s: duration(l.duration_s),
                };
                match self.lock_index.get(&key) {
                    Some(&i) => self.t.lock_waits[i] = span,
                    None => {
                        self.lock_index.insert(key, self.t.lock_waits.len());
                        self.t.lock_waits.push(span);
                    }
                }
            }
            Record::Stats(s) => {
                if self.seen(s.ts) {
                    self.t.events = Some(s.events);
                    self.t.lost = s.lost.clone();
                }
            }
            Record::Syscall(s) => {
                if !self.seen(s.ts) {
                    return;
                }
                self.process(s.pid, "process");
                self.t.syscalls.push(SyscallPoint {
                    ts: s.ts,
                    pid: s.pid,
                    name: s.syscall.clone(),
                    object: s.object.clone().or(s.path.clone()),
                    bytes: s.bytes,
                    result: s.result,
                });
            }
            Record::SyscallEvent(e) => {
                if !self.seen(e.ts) {
                    return;
                }
                self.process(e.pid, "process");
                // The event's own fields, as written: its kind is the `event` field.
                let v = serde_json::to_value(&e.event).unwrap_or_default();
                let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
                self.t.syscalls.push(SyscallPoint {
                    ts: e.ts,
                    pid: e.pid,
                    name: field("event").unwrap_or_else(|| "event".to_string()),
                    object: field("path"),
                    bytes: v.get("bytes").and_then(|x| x.as_u64()),
                    result: v.get("result").and_then(|x| x.as_i64()),
                });
            }
            Record::Status(s) => {
                if !self.seen(s.ts) {
                    return;
                }
                let what = s.backend_type.as_deref().unwrap_or("process");
                self.process(s.pid, what);
                self.verdicts.push(s.ts, &s.verdict_kind, &s.verdict);
                let w = wait_label(s.wait_event_type.as_deref(), s.wait_event.as_deref());
                self.waits.push(s.ts, &w, "");
                let q = match (s.state.as_deref(), s.query.as_deref()) {
                    (Some("active" | "fastpath function call"), Some(q)) => q,
                    _ => "",
                };
                self.active.push(s.ts, q, "");
            }
            Record::Backup(b) => {
                if self.seen(b.ts) {
                    self.backup(b);
                }
            }
            Record::Waits(w) => {
                if !self.seen(w.ts) {
                    return;
                }
                self.process(w.pid, "process");
                if w.scope == "total" {
                    self.t.wait_total = Some(w.clone());
                } else {
                    self.t.wait_intervals.push(w.clone());
                }
            }
            Record::Summary(s) => {
                self.process(s.pid, "process");
                self.t.summary = Some(s.clone());
            }
            // The operation line's phases are drawn from the same counters' `status` records.
            Record::Operation(o) => {
                if self.seen(o.ts) {
                    self.process(o.pid, "process");
                }
            }
            Record::Relation(_)
            | Record::Path(_)
            | Record::Process(_)
            | Record::ServerBackup(_)
            | Record::Probe(_)
            | Record::Probes(_) => self.t.foreign += 1,
        }
    }

    fn progress(&mut self, p: &ProgressRecord) {
        let point = RelationPoint {
            ts: p.ts,
            percent: p.percent.filter(|x| x.is_finite()),
            coverage: p.coverage.filter(|x| x.is_finite()),
            rate_bps: p.rate_bps,
            bytes_read: p.bytes_read,
        };
        match self.relation_index.get(&p.relation) {
            Some(&i) => {
                let s = &mut self.t.relations[i];
                s.points.push(point);
                s.label = p.object.clone();
                s.kind = p.kind.clone();
                s.last = p.clone();
            }
            None => {
                self.relation_index
                    .insert(p.relation.clone(), self.t.relations.len());
                self.t.relations.push(RelationSeries {
                    key: p.relation.clone(),
                    label: p.object.clone(),
                    kind: p.kind.clone(),
                    points: vec![point],
                    last: p.clone(),
                });
            }
        }
    }

    fn backup(&mut self, b: &BackupRecord) {
        self.phases.push(b.ts, &b.phase, &b.method);
        self.t.backup.push(BackupPoint {
            ts: b.ts,
            method: b.method.clone(),
            copier: b.copier.clone(),
            phase: b.phase.clone(),
            streamed: b.streamed,
            total: b.total,
            percent: b.percent.filter(|x| x.is_finite()),
            rate_bps: b.rate_bps,
            ended: b.ended,
        });
    }

    fn finish(mut self) -> Timeline {
        let end = self.t.end;
        self.t.verdicts = self.verdicts.finish(end);
        self.t.waits = self.waits.finish(end);
        self.t.backup_phases = self.phases.finish(end);
        self.t.active_queries = self.active.finish(end);
        self.t.active_queries.retain(|s| !s.label.is_empty());
        self.t
    }
}
