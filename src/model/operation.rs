//! The operation line: what a long command of the traced process is doing, phase k of n,
//! done of total in its unit, its rate and ETA. From the server's own progress counters
//! (`pg_stat_progress_*`, read from memory) where a view exists, else from what the model
//! saw the process do to files (a `COPY`'s source file on 12–13, the index a `VACUUM`
//! pass reads, a spilled sort's temp files).
//!
//! The rate is per phase: each phase is timed from the first sample that showed it, so a
//! fast scan does not lend its speed to a slow sort. `phase_eta_s` is the current phase's
//! rest at that rate; `eta_s` is the whole operation's, the phases to come included
//! (`eta`).

pub mod eta;
mod evidence;
pub mod pg_dump;
pub mod walsender;

use super::files::RelIdentity;
use crate::process::progress::{self, ProgressValue};
use crate::process::status::StatusSample;
use crate::version::ProgressCommand;

/// The unit of `done` and `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Unit {
    Blocks,
    Bytes,
    Tuples,
    Tables,
}

impl Unit {
    pub fn name(self) -> &'static str {
        match self {
            Unit::Blocks => "blocks",
            Unit::Bytes => "bytes",
            Unit::Tuples => "tuples",
            Unit::Tables => "tables",
        }
    }
}

/// Where the figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Source {
    /// The server's progress counters, read from its memory.
    Memory,
    /// File positions and sizes the model saw.
    Files,
    /// The query text and the files together, no counter.
    Inferred,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Memory => "memory",
            Source::Files => "files",
            Source::Inferred => "inferred",
        }
    }
}

/// What one status sample says of the operation, before files and rates.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reading {
    #[serde(with = "crate::model::sstr")]
    pub operation: crate::model::sstr::Static,
    /// The relation the command works on (`pg_class` OID), when the counters name one.
    pub relid: Option<u32>,
    pub phase: Option<String>,
    /// 1-based position of the phase in the view's list, and the list's length.
    pub phase_number: Option<u32>,
    pub phases_total: Option<u32>,
    pub done: Option<u64>,
    pub total: Option<u64>,
    pub unit: Option<Unit>,
    pub source: Source,
    /// What file evidence would fill `done`/`total` in this phase.
    pub want: Want,
    /// Counters the figures do not carry, in words (`2 indexes rebuilt`).
    pub note: Option<String>,
    /// Counters for the phases to come (`eta`); a pg_dump's current table's tuples.
    pub extra: eta::Extra,
    /// The table a pg_dump `COPY` copies, (schema, name).
    pub dump_table: Option<(String, String)>,
}

/// File evidence asked for where the counters say nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Want {
    Nothing,
    /// A `VACUUM` index pass: the index of the table read last, its position.
    IndexPass,
    /// A sort that spilled: its temp files, read back of written.
    SortTempFiles,
    /// A `COPY FROM` file without counters: the file read, its position of its size.
    CopySource,
    /// `ANALYZE` without counters: the table's file, its highest block read.
    SampledTable,
    /// `CLUSTER` reading the old heap in index order: where in it the last read was.
    OldHeap,
    /// `CLUSTER`/`VACUUM FULL` rebuilding an index: the new heap (not in the catalog until
    /// commit, read by each index build from the front), its read position of its size.
    NewHeap,
    /// A pg_dump `COPY`: the table's place among those dumped, its read position.
    Dump,
    /// A long `UPDATE`/`DELETE`/`INSERT … SELECT`/`CREATE TABLE … AS`: the table read
    /// last, its read position; the relation written and the WAL written, in words.
    Statement,
}

/// A counter as a count: negative (unknown, or garbage from memory) is none.
fn count(v: Option<&ProgressValue>) -> Option<u64> {
    match v {
        Some(ProgressValue::Num(n)) => u64::try_from(*n).ok(),
        _ => None,
    }
}

fn word(v: Option<&ProgressValue>) -> Option<String> {
    match v {
        Some(ProgressValue::Word(w)) => Some(w.to_string()),
        Some(ProgressValue::Text(t)) => Some(t.clone()),
        Some(ProgressValue::Num(n)) => Some(n.to_string()),
        _ => None,
    }
}

/// 1-based position of `raw` in a view's phase list of `n`.
fn position(raw: i64, n: usize) -> (Option<u32>, Option<u32>) {
    let num = usize::try_from(raw)
        .ok()
        .filter(|&i| i < n)
        .map(|i| i as u32 + 1);
    (num, Some(n as u32))
}

/// `done` of `total` when both are known and sane (done past total is shown as is: the
/// server's totals are estimates, a relation can grow during a scan).
fn pair(
    done: Option<u64>,
    total: Option<u64>,
    unit: Unit,
) -> (Option<u64>, Option<u64>, Option<Unit>) {
    (done, total.filter(|&t| t > 0), done.map(|_| unit))
}

/// The first word(s) of a query, upper-cased, comments and blanks skipped.
fn leading_words(q: &str, n: usize) -> Vec<String> {
    let mut rest = q.trim_start();
    loop {
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.split_once('\n').map_or("", |(_, b)| b).trim_start();
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.split_once("*/").map_or("", |(_, b)| b).trim_start();
        } else {
            break;
        }
    }
    rest.split(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .filter(|w| !w.is_empty())
        .take(n)
        .map(|w| w.to_ascii_uppercase())
        .collect()
}

/// What the sample says, or None when the process runs no long operation we know.
pub fn reading(s: &StatusSample) -> Option<Reading> {
    if let Some(r) = pg_dump::reading(s) {
        return Some(r);
    }
    let cmd = s
        .progress_command
        .as_deref()
        .and_then(ProgressCommand::from_name);
    let Some(cmd) = cmd else {
        return inferred(s);
    };
    let relid = s.progress_target.filter(|&r| r != 0);
    let row = progress::row(cmd, s.major, relid.unwrap_or(0), &s.progress_params);
    let g = |n: &str| row.get(n);
    let p = |i: usize| s.progress_params.get(i).copied().unwrap_or(0);
    let mut r = Reading {
        operation: "",
        relid,
        phase: None,
        phase_number: None,
        phases_total: None,
        done: None,
        total: None,
        unit: None,
        source: Source::Memory,
        want: Want::Nothing,
        note: None,
        extra: eta::Extra::default(),
        dump_table: None,
    };
    match cmd {
        ProgressCommand::Vacuum => {
            r.operation = if s.backend_type.as_deref() == Some("autovacuum worker") {
                "autovacuum"
            } else {
                "vacuum"
            };
            r.phase = word(g("phase"));
            (r.phase_number, r.phases_total) = position(p(0), progress::VACUUM_PHASES.len());
            let total = count(g("heap_blks_total"));
            r.extra.heap_blocks = total;
            r.extra.heap_scanned = count(g("heap_blks_scanned"));
            r.extra.index_passes = count(g("index_vacuum_count"));
            let dead = |filled: &str, cap: &str| Some((count(g(filled))?, count(g(cap))?));
            r.extra.dead_items = dead("num_dead_tuples", "max_dead_tuples")
                .or_else(|| dead("dead_tuple_bytes", "max_dead_tuple_bytes"));
            match r.phase.as_deref() {
                Some("scanning heap") => {
                    (r.done, r.total, r.unit) =
                        pair(count(g("heap_blks_scanned")), total, Unit::Blocks)
                }
                Some("vacuuming heap") => {
                    (r.done, r.total, r.unit) =
                        pair(count(g("heap_blks_vacuumed")), total, Unit::Blocks)
                }
                Some("vacuuming indexes" | "cleaning up indexes") => r.want = Want::IndexPass,
                _ => {}
            }
        }
        ProgressCommand::Analyze => {
            r.operation = "analyze";
            r.phase = word(g("phase"));
            (r.phase_number, r.phases_total) = position(p(0), progress::ANALYZE_PHASES.len());
            match r.phase.as_deref() {
                Some("acquiring sample rows") => {
                    (r.done, r.total, r.unit) = pair(
                        count(g("sample_blks_scanned")),
                        count(g("sample_blks_total")),
                        Unit::Blocks,
                    )
                }
                Some("acquiring inherited sample rows") => {
                    (r.done, r.total, r.unit) = pair(
                        count(g("child_tables_done")),
                        count(g("child_tables_total")),
                        Unit::Tables,
                    )
                }
                _ => {}
            }
        }
        ProgressCommand::Cluster => {
            r.operation = match word(g("command")).as_deref() {
                Some("VACUUM FULL") => "vacuum full",
                _ => "cluster",
            };
            r.phase = word(g("phase"));
            (r.phase_number, r.phases_total) = position(p(1), progress::CLUSTER_PHASES.len());
            r.extra = eta::Extra {
                heap_blocks: count(g("heap_blks_total")),
                heap_scanned: count(g("heap_blks_scanned")),
                tuples: count(g("heap_tuples_scanned")),
                rebuilt: count(g("index_rebuild_count")),
                ..Default::default()
            };
            match r.phase.as_deref() {
                Some("seq scanning heap") => {
                    (r.done, r.total, r.unit) = pair(
                        count(g("heap_blks_scanned")),
                        count(g("heap_blks_total")),
                        Unit::Blocks,
                    )
                }
                // An index scan's order says nothing of how far it is: tuples so far.
                Some("index scanning heap") => {
                    (r.done, r.unit) = (count(g("heap_tuples_scanned")), Some(Unit::Tuples));
                    r.want = Want::OldHeap;
                }
                // Each rebuild scans the new heap front to back: its read position.
                Some("rebuilding index") => {
                    r.note =
                        count(g("index_rebuild_count")).map(|n| format!("{n} indexes rebuilt"));
                    r.want = Want::NewHeap;
                }
                // Only live tuples are sorted and written: the scanned count would
                // overstate the total.
                Some("writing new heap") => {
                    (r.done, r.unit) = (count(g("heap_tuples_written")), Some(Unit::Tuples))
                }
                Some("sorting tuples") => r.want = Want::SortTempFiles,
                _ => {}
            }
        }
        ProgressCommand::CreateIndex => {
            r.operation = match word(g("command")).as_deref() {
                Some("REINDEX" | "REINDEX CONCURRENTLY") => "reindex",
                _ => "create index",
            };
            r.phase = word(g("phase"));
            (r.phase_number, r.phases_total) = position(p(9), progress::CREATEIDX_PHASES.len());
            r.extra.tuples = count(g("tuples_total")).filter(|&n| n > 0);
            let blocks = || {
                pair(
                    count(g("blocks_done")),
                    count(g("blocks_total")),
                    Unit::Blocks,
                )
            };
            let tuples = || {
                pair(
                    count(g("tuples_done")),
                    count(g("tuples_total")),
                    Unit::Tuples,
                )
            };
            match r.phase.as_deref() {
                Some(ph) if ph.contains("sorting") => {
                    r.want = Want::SortTempFiles;
                }
                Some(
                    "building index: loading tuples in tree" | "building index: loading tuples",
                ) => (r.done, r.total, r.unit) = tuples(),
                Some("index validation: scanning index") => (r.done, r.total, r.unit) = tuples(),
                Some(ph) if ph.starts_with("building index") || ph.contains("scanning table") => {
                    // A build without subphases (gist, gin, brin) still counts blocks.
                    if count(g("blocks_total")).unwrap_or(0) > 0 {
                        (r.done, r.total, r.unit) = blocks();
                    } else if count(g("tuples_total")).unwrap_or(0) > 0 {
                        (r.done, r.total, r.unit) = tuples();
                    }
                }
                _ => {}
            }
        }
        ProgressCommand::Copy => {
            r.operation = "copy";
            // The view has no phase column: its `command` is what it says of the step.
            r.phase = word(g("command"));
            (r.phase_number, r.phases_total) = (Some(1), Some(1));
            let total = count(g("bytes_total")).filter(|&t| t > 0);
            if total.is_some() {
                (r.done, r.total, r.unit) = pair(count(g("bytes_processed")), total, Unit::Bytes);
            } else {
                (r.done, r.unit) = (count(g("tuples_processed")), Some(Unit::Tuples));
            }
        }
        // The backup line has its own state (model::backup): see `Model::operation_view`.
        ProgressCommand::BaseBackup => return None,
    }
    Some(r)
}

/// No counters (a view the major lacks, or none at all): what the query text says,
/// with file evidence to come.
fn inferred(s: &StatusSample) -> Option<Reading> {
    if s.state.as_deref() != Some("active") {
        return None;
    }
    let words = leading_words(s.query.as_deref()?, 64);
    let w = |i: usize| words.get(i).map(String::as_str);
    let has = |x: &str| words.iter().any(|y| y == x);
    let (operation, want) = match (w(0), w(1)) {
        (Some("COPY"), _) if has("FROM") => ("copy", Want::CopySource),
        (Some("ANALYZE" | "ANALYSE"), _) => ("analyze", Want::SampledTable),
        (Some("UPDATE" | "DELETE"), _) => ("query", Want::Statement),
        (Some("INSERT"), _) if has("SELECT") => ("query", Want::Statement),
        (Some("CREATE"), _) if has("TABLE") && has("AS") => ("query", Want::Statement),
        _ => return None,
    };
    Some(Reading {
        operation,
        relid: None,
        phase: None,
        phase_number: None,
        phases_total: None,
        done: None,
        total: None,
        unit: None,
        source: Source::Files,
        want,
        note: None,
        extra: eta::Extra::default(),
        dump_table: None,
    })
}

/// The operation line's figures, as every view shows them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OperationView {
    #[serde(with = "crate::model::sstr")]
    pub operation: crate::model::sstr::Static,
    /// `schema.name`, the label of the relation worked on.
    pub relation: Option<String>,
    pub schema: Option<String>,
    pub name: Option<String>,
    pub phase: Option<String>,
    pub phase_number: Option<u32>,
    pub phases_total: Option<u32>,
    pub done: Option<u64>,
    pub total: Option<u64>,
    pub unit: Option<Unit>,
    pub percent: Option<f64>,
    /// `unit`s per second in the current phase.
    pub rate: Option<f64>,
    /// Seconds until the whole operation ends, the phases to come included.
    pub eta_s: Option<f64>,
    /// Seconds until the current phase ends at `rate`.
    pub phase_eta_s: Option<f64>,
    /// Where `eta_s` comes from: `source`'s when every part of it is timed in this run,
    /// `inferred` when phases to come are modelled.
    pub eta_source: Option<Source>,
    pub source: Source,
    /// Bytes the traced process itself wrote to WAL files since the operation began (the
    /// WAL writer's and other backends' writes are not its).
    pub wal_bytes: Option<u64>,
    /// pg_dump: the current table's tuples copied (14+), its read position and size.
    pub table_tuples: Option<u64>,
    pub table_read: Option<u64>,
    pub table_size: Option<u64>,
    /// File evidence in words (`index t_pkey`, `temp files 12 MiB written`).
    pub detail: Option<String>,
}

impl OperationView {
    /// `create index public.t: building index: scanning table (3/10) 1200/4425 blocks
    /// 27.1%, 800 blocks/s, ETA 4s`.
    pub fn line(&self) -> String {
        let mut s = self.operation.to_string();
        if let Some(r) = &self.relation {
            s.push(' ');
            s.push_str(r);
        }
        if let Some(p) = &self.phase {
            s.push_str(": ");
            s.push_str(p);
        }
        if let (Some(k), Some(n)) = (self.phase_number, self.phases_total) {
            if n > 1 {
                s.push_str(&format!(" (phase {k}/{n})"));
            }
        }
        s.push_str(&self.figures(true));
        if let Some(d) = &self.detail {
            s.push_str(&format!(" [{d}]"));
        }
        s
    }

    /// ` 1200 of 4425 blocks = 27.1%, 800 blocks/s, ETA 4s`, or empty; the percentage
    /// only when asked (a progress bar says it).
    pub fn figures(&self, percent: bool) -> String {
        let Some(unit) = self.unit else {
            return String::new();
        };
        let amount = |v: u64| match unit {
            Unit::Bytes => crate::text::human_bytes(v),
            _ => v.to_string(),
        };
        let mut s = String::new();
        if let Some(d) = self.done {
            s.push(' ');
            s.push_str(&amount(d));
            match self.total {
                Some(t) if unit == Unit::Bytes => s.push_str(&format!(" of {}", amount(t))),
                Some(t) => s.push_str(&format!(" of {} {}", amount(t), unit.name())),
                None if unit != Unit::Bytes => s.push_str(&format!(" {}", unit.name())),
                None => {}
            }
        }
        if let Some(p) = self.percent.filter(|_| percent) {
            s.push_str(&format!(" = {p:.1}%"));
        }
        if let Some(r) = self.rate.filter(|r| *r > 0.0) {
            match unit {
                Unit::Bytes => s.push_str(&format!(", {}/s", crate::text::human_bytes(r as u64))),
                _ => s.push_str(&format!(", {r:.0} {}/s", unit.name())),
            }
        }
        if let Some(e) = self.eta_s {
            s.push_str(&format!(", ETA {}", crate::text::human_duration(e)));
        }
        s
    }
}

/// Below this much time in a phase its rate is not trusted: samples come an interval apart
/// (later on a loaded host), and a rate over a few of them is mostly their jitter.
const MIN_RATE_NS: u64 = 2_000_000_000;

/// Samples kept of the current phase for its rate.
const TRAIL_MAX: usize = 512;

/// The operation across samples: which one, its phases, per-phase timing.
/// A pg_dump's rate is over this much of the recent past...
const DUMP_WINDOW_NS: u64 = 10_000_000_000;
/// ...and not trusted over less than this.
const DUMP_MIN_NS: u64 = 2_000_000_000;

/// What tells one statement from the next in a backend's status: when it became active
/// (`st_state_start_timestamp`, set at each statement a client sends), and for `CREATE
/// INDEX` the index being built (its progress row's `index_relid`, 0 until the index
/// exists). Either unknown in a sample proves nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Statement {
    pub started_us: Option<i64>,
    pub index_oid: Option<u32>,
}

impl Statement {
    pub fn of(s: &StatusSample) -> Statement {
        let index_oid = (s.progress_command.as_deref() == Some("create_index"))
            .then(|| s.progress_params.get(6).copied())
            .flatten()
            .and_then(|v| u32::try_from(v).ok())
            .filter(|&v| v != 0);
        Statement {
            started_us: s.state_start_us,
            index_oid,
        }
    }

    fn continued_by(&self, later: &Statement) -> bool {
        let differ =
            |a: Option<i64>, b: Option<i64>| matches!((a, b), (Some(x), Some(y)) if x != y);
        !differ(self.started_us, later.started_us)
            && !differ(
                self.index_oid.map(i64::from),
                later.index_oid.map(i64::from),
            )
    }

    /// What a later sample of the same statement adds (the index, once it exists).
    fn learn(&mut self, later: &Statement) {
        self.started_us = self.started_us.or(later.started_us);
        self.index_oid = self.index_oid.or(later.index_oid);
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OperationState {
    pub reading: Reading,
    pub db: Option<u32>,
    /// The relation worked on, named once.
    pub relation: Option<RelIdentity>,
    /// Phases in the order seen.
    pub phases_seen: Vec<String>,
    /// Where the current phase (and unit) was first seen: (ts, done).
    phase_start: (u64, Option<u64>),
    /// (ts, done) of the samples since `phase_start`, thinned to a bounded length: the
    /// rate is taken over the latest three quarters of the phase, past its start-up.
    trail: Vec<(u64, u64)>,
    pub last_ts: u64,
    pub since_ns: u64,
    /// The phases run so far, timed, for the whole operation's ETA.
    pub ledger: eta::Ledger,
    /// The indexes of the table a `CLUSTER`/`VACUUM FULL` rebuilds, from the catalog.
    pub indexes: Option<u64>,
    /// Which statement runs it: a second command of the same kind on the same relation
    /// (two `CREATE INDEX` on one table in a migration script) is another operation.
    #[serde(default)]
    pub statement: Statement,
    /// A pg_dump the catalog could not place (it selects or reorders tables): never
    /// placed for the rest of its table, even once pg_dump itself has exited while its
    /// backend still sends the last rows.
    pub dump_unplaced: bool,
    /// A pg_dump's bytes done over the whole dump (the heaps of the tables before the
    /// current one, and the current one's read position), as (ts, bytes), over the last
    /// `DUMP_WINDOW_NS`: carried from table to table (each is its own progress row).
    #[serde(default)]
    pub dump_trail: std::collections::VecDeque<(u64, u64)>,
}

impl OperationState {
    pub fn new(r: Reading, db: Option<u32>, ts: u64) -> OperationState {
        let mut st = OperationState {
            phase_start: (ts, r.done),
            trail: r.done.map(|d| (ts, d)).into_iter().collect(),
            phases_seen: Vec::new(),
            reading: r.clone(),
            db,
            relation: None,
            dump_unplaced: false,
            dump_trail: Default::default(),
            last_ts: ts,
            since_ns: ts,
            ledger: eta::Ledger::default(),
            indexes: None,
            statement: Statement::default(),
        };
        st.note_phase();
        st.observe(ts);
        st
    }

    /// Whether a sample's reading continues this operation (same command, same relation).
    /// A pg_dump's whole ETA: `done` of `all` heap bytes at `now`, added to the trail;
    /// the rest at the rate over the trail's window, once it spans `DUMP_MIN_NS`.
    pub fn dump_eta(&mut self, now: u64, done: u64, all: u64) -> Option<f64> {
        if self.dump_trail.back().is_some_and(|&(_, b)| done < b) {
            // Went back: another dump, or the sizes changed under it.
            self.dump_trail.clear();
        }
        self.dump_trail.push_back((now, done));
        while self.dump_trail.len() > 2
            && self
                .dump_trail
                .front()
                .is_some_and(|&(t, _)| now.saturating_sub(t) > DUMP_WINDOW_NS)
        {
            self.dump_trail.pop_front();
        }
        let (&(t0, b0), &(t1, b1)) = (self.dump_trail.front()?, self.dump_trail.back()?);
        let dt = t1.checked_sub(t0).filter(|&d| d >= DUMP_MIN_NS)? as f64 / 1e9;
        let rate = (b1 - b0) as f64 / dt;
        (rate > 0.0).then(|| ((all.saturating_sub(done) as f64 / rate) * 10.0).round() / 10.0)
    }

    /// Whether a sample's reading continues this operation: same command, same relation,
    /// and not another statement.
    pub fn same(&self, r: &Reading, stmt: &Statement) -> bool {
        self.reading.operation == r.operation
            && self.reading.relid == r.relid
            && self.statement.continued_by(stmt)
    }

    fn observe(&mut self, ts: u64) {
        let r = &self.reading;
        self.ledger.observe(r.phase.as_deref(), r.done, r.unit, ts);
    }

    fn note_phase(&mut self) {
        if let Some(p) = &self.reading.phase {
            if self.phases_seen.last() != Some(p) {
                self.phases_seen.push(p.clone());
            }
        }
    }

    /// A later sample of the same operation.
    pub fn update(&mut self, mut r: Reading, ts: u64) {
        if r.want != Want::Nothing && r.unit.is_none() && r.phase == self.reading.phase {
            // This phase's figures come from files at the tick: the last ones stand until
            // then (and its clock keeps running).
            (r.done, r.total, r.unit) = (self.reading.done, self.reading.total, self.reading.unit);
        }
        // A counter going back is a new pass (or the first sample of the command still
        // showed the last command's counters): its clock starts again.
        let went_back = matches!((r.done, self.reading.done), (Some(a), Some(b)) if a < b);
        let new_phase = r.phase != self.reading.phase || r.unit != self.reading.unit || went_back;
        self.reading = r;
        if new_phase {
            self.phase_start = (ts, self.reading.done);
            self.trail.clear();
        } else if self.phase_start.1.is_none() {
            self.phase_start.1 = self.reading.done;
        }
        if let Some(d) = self.reading.done {
            self.follow(ts, d);
        }
        self.last_ts = ts;
        self.note_phase();
        self.observe(ts);
    }

    /// File evidence came in for the current phase (its `done` figures replace none).
    pub fn evidence(&mut self, done: u64, total: Option<u64>, unit: Unit, source: Source) {
        let r = &mut self.reading;
        // The next index of a pass, or a new run of a sort, starts from the front again.
        let went_back = r.done.is_some_and(|d| done < d) && r.unit == Some(unit);
        if r.unit != Some(unit) || went_back {
            self.phase_start = (self.last_ts, Some(done));
            self.trail.clear();
        } else if self.phase_start.1.is_none() {
            self.phase_start.1 = Some(done);
        }
        r.done = Some(done);
        r.total = total.filter(|&t| t > 0);
        r.unit = Some(unit);
        self.ledger
            .observe(r.phase.as_deref(), r.done, r.unit, self.last_ts);
        let ts = self.last_ts;
        self.follow(ts, done);
        let r = &mut self.reading;
        // Counters for the phase and files for the figure: said as inferred.
        r.source = match r.source {
            Source::Memory | Source::Inferred if source == Source::Files => Source::Inferred,
            _ => source,
        };
    }

    fn follow(&mut self, ts: u64, done: u64) {
        match self.trail.last_mut() {
            Some(last) if last.0 == ts => last.1 = done,
            _ => self.trail.push((ts, done)),
        }
        if self.trail.len() > TRAIL_MAX {
            // Every other sample: the trail keeps its span at half the resolution.
            let mut i = 0;
            self.trail.retain(|_| {
                i += 1;
                i % 2 == 1
            });
        }
    }

    /// Units per second in the current phase: over its latest three quarters once it has
    /// run [`MIN_RATE_NS`] (a phase's first moments, catalog reads and buffers filling,
    /// are not its pace), from its first sample when the trail says nothing.
    pub fn rate(&self) -> Option<f64> {
        let (t0, d0) = self.phase_start;
        let dt = self.last_ts.checked_sub(t0).filter(|&d| d >= MIN_RATE_NS)?;
        let done = self.reading.done?;
        let from = t0 + dt / 4;
        let (t1, d1) = self
            .trail
            .iter()
            .find(|(t, _)| *t >= from)
            .copied()
            .filter(|&(t, _)| t < self.last_ts)
            .unwrap_or((t0, d0?));
        let moved = done.checked_sub(d1)?;
        Some(moved as f64 / ((self.last_ts - t1) as f64 / 1e9))
    }

    pub fn view(&self, detail: Option<String>) -> OperationView {
        let r = &self.reading;
        let percent = match (r.done, r.total) {
            (Some(d), Some(t)) if t > 0 => Some((d as f64 * 100.0 / t as f64).min(100.0)),
            _ => None,
        };
        let rate = self.rate();
        let tenths = |s: f64| (s * 10.0).round() / 10.0;
        let phase_eta_s = match (r.done, r.total, rate) {
            (Some(d), Some(t), Some(v)) if v > 0.0 => {
                Some(tenths((t.saturating_sub(d)) as f64 / v))
            }
            _ => None,
        };
        let whole = if self.indexes.is_some() {
            let mut r = r.clone();
            r.extra.indexes = self.indexes;
            eta::estimate(&r, &self.ledger, rate, self.last_ts)
        } else {
            eta::estimate(r, &self.ledger, rate, self.last_ts)
        };
        let rel = self.relation.as_ref();
        OperationView {
            operation: r.operation,
            relation: rel.map(|i| i.label.clone()),
            schema: rel.and_then(|i| i.schema.clone()),
            name: rel.and_then(|i| i.name.clone()),
            phase: r.phase.clone(),
            phase_number: r.phase_number,
            phases_total: r.phases_total,
            done: r.done,
            total: r.total,
            unit: r.unit,
            percent: percent.map(|p| (p * 10.0).round() / 10.0),
            rate: rate.map(|v| (v * 10.0).round() / 10.0),
            eta_s: whole.map(|e| tenths(e.secs)),
            phase_eta_s,
            eta_source: whole.map(|e| {
                if e.inferred {
                    Source::Inferred
                } else {
                    r.source
                }
            }),
            source: r.source,
            wal_bytes: None,
            table_tuples: r.extra.tuples.filter(|_| r.operation == "pg_dump"),
            table_read: None,
            table_size: None,
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(cmd: &str, params: &[(usize, i64)]) -> StatusSample {
        let mut p = vec![0i64; 20];
        for &(i, v) in params {
            p[i] = v;
        }
        StatusSample {
            pid: 1,
            major: 16,
            state: Some("active".into()),
            backend_type: Some("client backend".into()),
            progress_command: Some(cmd.into()),
            progress_target: Some(16384),
            progress_params: p,
            ..Default::default()
        }
    }

    #[test]
    fn a_second_statement_on_the_same_table_is_another_operation() {
        let mut m = crate::model::Model::new(1, 1 << 30);
        let build = |started: i64, index: i64, blocks: i64| {
            let mut s = sample(
                "create_index",
                &[(0, 1), (6, index), (9, 2), (15, 100), (16, blocks)],
            );
            s.state_start_us = Some(started);
            s
        };
        // The first build: its index oid appears after the first sample (0 until the
        // index exists); the same statement goes on.
        m.operation_sample(&build(1_000, 0, 10), 1_000_000_000);
        m.operation_sample(&build(1_000, 20_001, 40), 2_000_000_000);
        let first_since = m.operation.as_ref().unwrap().since_ns;
        assert_eq!(first_since, 1_000_000_000);
        assert_eq!(
            m.operation.as_ref().unwrap().statement.index_oid,
            Some(20_001)
        );
        // The next statement, sent right after: same command, same table, no sample in
        // between. A new operation, timed from its own first sample.
        m.operation_sample(&build(9_000, 20_002, 5), 3_000_000_000);
        assert_eq!(m.operation.as_ref().unwrap().since_ns, 3_000_000_000);
        // Two statements in one query string share a start: the index tells them apart.
        m.operation_sample(&build(9_000, 20_003, 7), 4_000_000_000);
        assert_eq!(m.operation.as_ref().unwrap().since_ns, 4_000_000_000);
        // A sample that does not say (no start read) proves nothing.
        let mut s = build(0, 20_003, 9);
        s.state_start_us = None;
        m.operation_sample(&s, 5_000_000_000);
        assert_eq!(m.operation.as_ref().unwrap().since_ns, 4_000_000_000);
    }

    #[test]
    fn create_index_phases_and_units() {
        let r = reading(&sample(
            "create_index",
            &[(0, 1), (8, 403), (9, 2), (10, 2), (15, 100), (16, 25)],
        ))
        .unwrap();
        assert_eq!(r.operation, "create index");
        assert_eq!(r.phase.as_deref(), Some("building index: scanning table"));
        assert_eq!((r.phase_number, r.phases_total), (Some(3), Some(10)));
        assert_eq!(
            (r.done, r.total, r.unit),
            (Some(25), Some(100), Some(Unit::Blocks))
        );
        let r = reading(&sample(
            "create_index",
            &[(0, 3), (8, 403), (9, 2), (10, 5), (11, 1000), (12, 10)],
        ))
        .unwrap();
        assert_eq!(r.operation, "reindex");
        assert_eq!(
            (r.done, r.total, r.unit),
            (Some(10), Some(1000), Some(Unit::Tuples))
        );
        let r = reading(&sample(
            "create_index",
            &[(0, 1), (8, 403), (9, 2), (10, 3)],
        ))
        .unwrap();
        assert_eq!(r.want, Want::SortTempFiles);
        assert_eq!(r.done, None);
    }

    #[test]
    fn vacuum_cluster_copy_analyze() {
        let mut s = sample("vacuum", &[(0, 1), (1, 200), (2, 50)]);
        s.backend_type = Some("autovacuum worker".into());
        let r = reading(&s).unwrap();
        assert_eq!(
            (r.operation, r.phase.as_deref()),
            ("autovacuum", Some("scanning heap"))
        );
        assert_eq!((r.done, r.total), (Some(50), Some(200)));
        let r = reading(&sample("vacuum", &[(0, 2), (1, 200), (2, 200)])).unwrap();
        assert_eq!((r.want, r.done), (Want::IndexPass, None));
        let r = reading(&sample("cluster", &[(0, 1), (1, 6), (7, 2)])).unwrap();
        assert_eq!(r.note.as_deref(), Some("2 indexes rebuilt"));
        let r = reading(&sample("cluster", &[(0, 2), (1, 1), (5, 10), (6, 4)])).unwrap();
        assert_eq!(
            (r.operation, r.done, r.total),
            ("vacuum full", Some(4), Some(10))
        );
        let r = reading(&sample("copy", &[(0, 10), (1, 40), (2, 3), (4, 1), (5, 1)])).unwrap();
        assert_eq!(
            (r.phase.as_deref(), r.done, r.total, r.unit),
            (Some("COPY FROM"), Some(10), Some(40), Some(Unit::Bytes))
        );
        let r = reading(&sample("copy", &[(2, 7), (4, 1), (5, 3)])).unwrap();
        assert_eq!(
            (r.done, r.total, r.unit),
            (Some(7), None, Some(Unit::Tuples))
        );
        let r = reading(&sample("analyze", &[(0, 1), (1, 30), (2, 3)])).unwrap();
        assert_eq!(
            (r.phase.as_deref(), r.done, r.total),
            (Some("acquiring sample rows"), Some(3), Some(30))
        );
        let r = reading(&sample("vacuum", &[(0, 1), (1, -5), (2, -1)])).unwrap();
        assert_eq!((r.done, r.total), (None, None));
    }

    #[test]
    fn inferred_from_query_text() {
        let mut s = sample("none", &[]);
        s.progress_command = None;
        s.query = Some("/* load */ copy t from '/tmp/x.csv'".into());
        assert_eq!(reading(&s).unwrap().want, Want::CopySource);
        s.query = Some("analyze t".into());
        assert_eq!(reading(&s).unwrap().operation, "analyze");
        s.query = Some("select 1".into());
        assert_eq!(reading(&s), None);
        s.query = Some("copy t to stdout".into());
        assert_eq!(reading(&s), None);
        for q in [
            "DELETE FROM t WHERE a < 5",
            "update t set a = 1",
            "INSERT INTO u SELECT * FROM t",
            "create unlogged table u as select * from t",
        ] {
            s.query = Some(q.into());
            assert_eq!(reading(&s).map(|r| r.operation), Some("query"), "{q}");
        }
        s.query = Some("INSERT INTO u VALUES (1)".into());
        assert_eq!(reading(&s), None);
        s.state = Some("idle".into());
        s.query = Some("analyze t".into());
        assert_eq!(reading(&s), None);
    }

    #[test]
    fn rate_and_eta_per_phase() {
        const S: u64 = 1_000_000_000;
        // Figures from files keep their clock across samples that carry none.
        let mut s = sample("copy", &[]);
        (s.progress_command, s.query) = (None, Some("COPY t FROM '/x'".into()));
        let mut st = OperationState::new(reading(&s).unwrap(), None, 0);
        st.evidence(0, Some(1000), Unit::Bytes, Source::Files);
        for i in 1..=4u64 {
            // (a rate needs two seconds of the phase)
            st.update(reading(&s).unwrap(), i * S);
            st.evidence(i * 100, Some(1000), Unit::Bytes, Source::Files);
        }
        let v = st.view(None);
        assert_eq!(
            (v.rate, v.eta_s, v.source),
            (Some(100.0), Some(6.0), Source::Files)
        );
        let r = |ph: i64, done: i64| {
            reading(&sample(
                "vacuum",
                &[(0, ph), (1, 1000), (2, done), (3, done)],
            ))
            .unwrap()
        };
        let mut st = OperationState::new(r(1, 0), Some(5), 0);
        st.update(r(1, 250), 5 * S);
        let v = st.view(None);
        assert_eq!(
            (v.percent, v.rate, v.eta_s),
            (Some(25.0), Some(50.0), Some(15.0))
        );
        // A new phase starts its own clock: no rate until it has run a while.
        st.update(r(3, 900), 6 * S);
        assert_eq!(st.view(None).rate, None);
        st.update(r(3, 925), 7 * S);
        assert_eq!(st.view(None).rate, None);
        st.update(r(3, 950), 8 * S);
        assert_eq!(st.view(None).phase_eta_s, Some(2.0));
        assert_eq!(st.phases_seen, ["scanning heap", "vacuuming heap"]);
        assert!(st.view(None).line().contains("950 of 1000 blocks = 95.0%"));
        // A counter that goes back starts the phase's clock again.
        st.update(r(3, 10), 9 * S);
        st.update(r(3, 110), 11 * S);
        assert_eq!(st.view(None).rate, Some(50.0));
    }

    #[test]
    fn rate_leaves_the_phase_start_up_out() {
        const S: u64 = 1_000_000_000;
        let r = |done: i64| reading(&sample("copy", &[(0, done), (1, 100_000), (4, 1)])).unwrap();
        // A slow first second (10/s), then 100/s.
        let mut st = OperationState::new(r(0), None, 0);
        st.update(r(10), S);
        for i in 2..=4u64 {
            st.update(r(10 + 100 * (i as i64 - 1)), i * S);
        }
        assert_eq!(st.view(None).rate, Some(100.0));
    }

    proptest::proptest! {
        #[test]
        fn any_counters_read(params in proptest::collection::vec(proptest::num::i64::ANY, 0..25), cmd in 0usize..6) {
            let names = ["vacuum", "analyze", "cluster", "create_index", "copy", "basebackup"];
            let mut s = sample(names[cmd], &[]);
            s.progress_params = params;
            if let Some(r) = reading(&s) {
                let mut st = OperationState::new(r.clone(), None, 0);
                st.update(r, 2_000_000_000);
                let _ = st.view(None).line();
            }
        }
    }

    #[test]
    fn a_dump_eta_runs_across_tables_at_the_byte_rate() {
        const S: u64 = 1_000_000_000;
        let mut s = sample("copy", &[]);
        (s.progress_command, s.query) = (None, Some("COPY public.a (id) TO stdout;".into()));
        s.application_name = Some("pg_dump".into());
        let mut st = OperationState::new(
            crate::model::operation::pg_dump::reading(&s).unwrap(),
            None,
            0,
        );
        // 1 MB/s of 10 MB: nothing in the first 2 s, then the rest at that rate.
        assert_eq!(st.dump_eta(0, 0, 10_000_000), None);
        assert_eq!(st.dump_eta(S, 1_000_000, 10_000_000), None);
        assert_eq!(st.dump_eta(2 * S, 2_000_000, 10_000_000), Some(8.0));
        assert_eq!(st.dump_eta(4 * S, 4_000_000, 10_000_000), Some(6.0));
        // Going back (another dump) starts over.
        assert_eq!(st.dump_eta(5 * S, 100, 10_000_000), None);
    }
}
