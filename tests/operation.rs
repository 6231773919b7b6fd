//! The operation line on real clusters, one per major: for CREATE INDEX (a sort that
//! spills), ANALYZE, VACUUM with two index passes, CLUSTER and COPY FROM a file, the
//! phases pg_trace reports contain, in order, those the progress view showed when sampled
//! over SQL from a second connection during the same run, and nothing the server's view
//! cannot say; where the view does not exist (COPY on 12–13) the source file's position is
//! followed instead. The ETA shown when 25 % is done lands within 15 % of the real end on
//! a paced, steady run (CREATE INDEX, ANALYZE, VACUUM, COPY, DELETE). A DELETE, which has no
//! view, is followed through its scan of the table: the relation and its size are what the
//! server reports afterwards, and the scan is seen to its end.
//!
//! The statements that call a function per row (CREATE INDEX, COPY, DELETE) are paced by the
//! wall clock, not by sleeps that add up: row `id`, read in the order of the ids, is not
//! passed before `id` steps after the statement began (see [`paced`]). Seven clusters on two
//! cores stretch each sleep's wake-up and each row's CPU, unevenly over the run: sleeps
//! that add up (4 ms every 100 rows, once) run slower in one stretch than in another, and
//! the ETA taken from the first quarter is then off by as much. A deadline makes up a late
//! wake-up or a slow stretch at the next sleep, so the paced part takes the same time
//! however loaded the machine; what the load still moves is the unpaced rest (a CREATE
//! INDEX's sort and load, some 0.1 s of its 8.4 s on a quiet machine). VACUUM and ANALYZE
//! are paced by the cost-based delay, sleeps that add up: the majors meet before each timed
//! statement (see [`Meeting`]), so that none starts one while another still loads its
//! tables or builds an index, which would slow its first quarter and not the rest.
//!
//! One pg_trace (`--backend ebpf --interval 50`) follows one backend through every statement. The SQL
//! sampler polls every 50 ms; of what it saw, a phase is compared only when its polls span
//! longer than pg_trace's longest gap between two samples in that run (on a loaded machine
//! that gap exceeds the interval): a phase that long cannot fall between pg_trace's
//! samples, a shorter one may be missed by either side, which the comparison allows.

mod support;

use pg_trace::output::record::{OperationRecord, Record};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use support::trace::{operation, spawn_trace_every, stats, status, Trace};
use support::Cluster;

const ROWS: i64 = 200_000;

/// Where the majors' checks wait for each other before a timed statement: the load the
/// others put on the machine is then the same over the whole statement (the same paced
/// statement on every cluster), not one that ends or begins a second into it.
struct Meeting {
    state: Mutex<Attendance>,
    all_here: Condvar,
}

struct Attendance {
    /// The checks still running.
    parties: usize,
    arrived: usize,
    round: u64,
}

impl Attendance {
    fn all_here(&mut self, m: &Meeting) {
        self.arrived = 0;
        self.round += 1;
        m.all_here.notify_all();
    }
}

static MEETING: Meeting = Meeting {
    state: Mutex::new(Attendance {
        parties: 0,
        arrived: 0,
        round: 0,
    }),
    all_here: Condvar::new(),
};

impl Meeting {
    fn lock(&self) -> MutexGuard<'_, Attendance> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for every check still running to come here too.
    fn meet(&self, major: u32, before: &str) {
        let mut a = self.lock();
        let round = a.round;
        a.arrived += 1;
        if a.arrived >= a.parties {
            a.all_here(self);
            return;
        }
        let since = Instant::now();
        while a.round == round {
            assert!(
                since.elapsed() < Duration::from_secs(300),
                "PG{major}: the other majors did not come before {before} in 300 s"
            );
            a = self
                .all_here
                .wait_timeout(a, Duration::from_secs(1))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// One check's place at the meetings, given up when it ends, passed or failed: the others
/// do not wait for it after that.
struct Party;

impl Drop for Party {
    fn drop(&mut self) {
        let mut a = MEETING.lock();
        a.parties = a.parties.saturating_sub(1);
        if a.arrived > 0 && a.arrived >= a.parties {
            a.all_here(&MEETING);
        }
    }
}

/// SQL creating `name(int)`, an immutable function that, on every `every`-th value `v`,
/// sleeps until `v * step_us` microseconds after the statement began (not at all when
/// that moment has passed): a statement calling it on the ids in order passes them at a
/// steady pace set by the wall clock, `ROWS * step_us` in all, however late a wake-up or
/// slow a stretch of rows on a loaded machine (the next deadline makes up for it).
fn paced(name: &str, every: u32, step_us: u32) -> String {
    format!(
        "CREATE FUNCTION {name}(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS \
         $$ BEGIN IF $1 % {every} = 0 THEN \
         PERFORM pg_sleep_until(statement_timestamp() + $1 * interval '{step_us} microseconds'); \
         END IF; RETURN $1; END $$; "
    )
}

/// The server's own vocabulary for a view: every quoted literal of its definition (its
/// phase and command words), plus the btree build's subphase names.
fn vocabulary(c: &Cluster, view: &str) -> Vec<String> {
    let def = c.psql(
        "postgres",
        &format!("SELECT pg_get_viewdef('{view}'::regclass)"),
    );
    let def = def[0][0].clone().unwrap();
    let mut words: Vec<String> = def
        .split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    if view == "pg_stat_progress_create_index" {
        for row in c.psql(
            "postgres",
            "SELECT 'building index: ' || pg_indexam_progress_phasename(403, i) \
             FROM generate_series(0, 10) i WHERE pg_indexam_progress_phasename(403, i) IS NOT NULL",
        ) {
            words.push(row[0].clone().unwrap());
        }
    }
    words
}

/// Polls `column` of `view` for `pid` every 50 ms until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<Vec<(Instant, Option<String>)>>,
}

impl Sampler {
    fn start(c: &Cluster, view: &str, column: &str, pid: i32) -> Sampler {
        let mut client = c.connect("postgres");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let sql = format!("SELECT {column}::text FROM {view} WHERE pid = $1");
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let rows = client
                    .query(&sql, &[&pid])
                    .expect("sample the progress view");
                seen.push((Instant::now(), rows.first().map(|r| r.get::<_, String>(0))));
                std::thread::sleep(Duration::from_millis(50));
            }
            seen
        });
        Sampler { stop, handle }
    }

    /// The phases seen, in order, each run once, keeping only those seen over a span
    /// longer than `gap_s` (pg_trace's longest time between two of its samples in the run:
    /// a phase lasting longer cannot fall between them).
    fn stop(self, gap_s: f64) -> Vec<String> {
        self.stop_raw(gap_s).0
    }

    /// [`Sampler::stop`], and every phase seen, each run once.
    fn stop_raw(self, gap_s: f64) -> (Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let seen = self.handle.join().unwrap();
        let mut runs: Vec<(String, Instant, Instant)> = Vec::new();
        for (at, phase) in seen {
            match (phase, runs.last_mut()) {
                (Some(p), Some(last)) if last.0 == p => last.2 = at,
                (Some(p), _) => runs.push((p, at, at)),
                (None, _) => {}
            }
        }
        let raw = runs.iter().map(|r| r.0.clone()).collect();
        let mut out: Vec<String> = Vec::new();
        for (p, from, to) in runs {
            if (to - from).as_secs_f64() > gap_s + 0.02 && out.last() != Some(&p) {
                out.push(p);
            }
        }
        (out, raw)
    }
}

/// Whether `sub` appears in `seq` in order (not necessarily adjacent).
fn in_order(sub: &[String], seq: &[String]) -> bool {
    let mut it = seq.iter();
    sub.iter().all(|s| it.any(|x| x == s))
}

/// One statement run on the traced backend: its operation records, and when it began
/// and ended as pg_trace's clock says: halfway between the last interval without it and
/// the first with it, and between the last with it and the first without (an interval
/// apart on a quiet machine, 50 ms, several hundred on a loaded one).
struct Run {
    ops: Vec<OperationRecord>,
    start_ts: f64,
    end_ts: f64,
    /// The longest time between two of pg_trace's intervals during the run.
    gap_s: f64,
}

impl Run {
    fn phases(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in self.ops.iter().filter_map(|o| o.phase.clone()) {
            if out.last() != Some(&p) {
                out.push(p);
            }
        }
        out
    }

    /// The ETA shown when 25 % was first reached, against the real end: the error as a
    /// share of the whole run.
    fn eta_error(&self, what: &str) -> f64 {
        if std::env::var("OPERATION_DEBUG").is_ok() {
            for o in &self.ops {
                eprintln!(
                    "  {what} {:.3} {:?} {:?}/{:?} rate {:?} eta {:?}",
                    o.ts, o.phase, o.done, o.total, o.rate, o.eta_s
                );
            }
        }
        let start = self.start_ts;
        let at = self
            .ops
            .iter()
            .find(|o| o.percent.is_some_and(|p| p >= 25.0) && o.eta_s.is_some())
            .unwrap_or_else(|| panic!("{what}: no ETA at 25 %: {:?}", self.ops));
        let predicted = at.ts + at.eta_s.unwrap();
        let err = (predicted - self.end_ts).abs() / (self.end_ts - start);
        eprintln!(
            "{what}: 25 % at {:.2}s, ETA {:.2}s → {predicted:.2}s, real end {:.2}s (started {start:.2}s): error {:.1} %",
            at.ts,
            at.eta_s.unwrap(),
            self.end_ts,
            err * 100.0
        );
        err
    }
}

/// The first status record of `pid` from record `from` on that shows it idle.
fn idle_at(r: &[Record], from: usize, pid: i32) -> Option<usize> {
    let idle =
        |x: &Record| status(x).is_some_and(|s| s.pid == pid && s.state.as_deref() == Some("idle"));
    r.iter().skip(from).position(idle).map(|i| from + i)
}

/// Runs `sql` on the traced backend and waits for pg_trace's first interval after it.
///
/// Its records are those after pg_trace has seen the backend idle before it: the last
/// statement's (on a loaded machine pg_trace's ticks, and so its records, come late) are
/// not this one's, and pg_trace does not take two statements for one (two CREATE INDEX
/// on one table, with no sample between them, are one operation to it).
fn run(t: &mut Trace, client: &mut postgres::Client, pid: i32, kind: &str, sql: &str) -> Run {
    let mark = t.records().len();
    t.wait_for(
        &format!("pg_trace to see the backend idle before {sql}"),
        |r| idle_at(r, mark, pid).is_some(),
    );
    let from = idle_at(&t.records(), mark, pid).unwrap() + 1;
    client
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    // The statement has returned: the next intervals' status samples show no operation.
    t.wait_for(&format!("an interval after {sql}"), |r| {
        let r = &r[from.min(r.len())..];
        let last_op = r
            .iter()
            .rposition(|x| operation(x).is_some_and(|o| o.pid == pid && o.operation == kind));
        let Some(last_op) = last_op else {
            return false;
        };
        // Two intervals without it: the first one may still carry a sample taken before.
        r[last_op..].iter().filter(|x| stats(x).is_some()).count() >= 2
    });
    let r = t.records();
    let r = &r[from..];
    let is_op = |x: &Record| operation(x).is_some_and(|o| o.pid == pid && o.operation == kind);
    let ops: Vec<OperationRecord> = r
        .iter()
        .filter(|x| is_op(x))
        .filter_map(operation)
        .cloned()
        .collect();
    let (first, last) = (ops.first().unwrap().ts, ops.last().unwrap().ts);
    // Each interval's records end with its stats record (the idle one's is the first).
    let ticks: Vec<f64> = r.iter().filter_map(stats).map(|s| s.ts).collect();
    let before = ticks.iter().rev().find(|&&ts| ts < first).unwrap();
    let after = ticks.iter().find(|&&ts| ts > last).unwrap();
    let gap_s = ticks.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    Run {
        ops,
        start_ts: (before + first) / 2.0,
        end_ts: (last + after) / 2.0,
        gap_s,
    }
}

/// pg_trace's phases against the SQL-sampled ones and the view's vocabulary.
fn compare(major: u32, what: &str, run: &Run, sampled: &[String], vocab: &[String]) {
    let ours = run.phases();
    eprintln!(
        "PG{major} {what}: pg_trace {ours:?}, SQL {sampled:?} (phases over {:.0} ms)",
        run.gap_s * 1000.0
    );
    if std::env::var("OPERATION_DEBUG").is_ok() {
        for o in &run.ops {
            eprintln!("  {:.3} {:?} {:?}/{:?}", o.ts, o.phase, o.done, o.total);
        }
    }
    assert!(!ours.is_empty(), "PG{major} {what}: no phase reported");
    assert!(
        in_order(sampled, &ours),
        "PG{major} {what}: pg_trace's phases {ours:?} miss or reorder the view's {sampled:?}"
    );
    for p in &ours {
        assert!(
            vocab.contains(p),
            "PG{major} {what}: phase {p:?} is not one the server can report ({vocab:?})"
        );
    }
    // The phase is the counters'; figures from files where they say nothing.
    for o in &run.ops {
        assert!(
            o.source == "memory" || o.source == "inferred",
            "PG{major} {what}: {o:?}"
        );
    }
}

fn check(major: u32) {
    // First: whatever fails after this, the others stop waiting for this check.
    let _party = Party;
    let mut c = Cluster::start_with(
        major,
        &[
            ("autovacuum", "off"),
            ("max_parallel_maintenance_workers", "0"),
        ],
    );
    let dir = c.make_dir("copy");
    let file = dir.join("rows.tsv");
    c.execute(
        "postgres",
        &format!(
            // slow: 8.4 s for the ids of t (CREATE INDEX, CLUSTER's rebuild) or of the file
            // (COPY); pace: 10 s for the DELETE's.
            "{}{}CREATE TABLE t (id int, pad text) WITH (autovacuum_enabled = off); \
             INSERT INTO t SELECT g, 'x' FROM generate_series(1, {ROWS}) g; \
             CREATE TABLE c (id int CHECK (slow(id) = id), pad text); \
             COPY (SELECT g, repeat('y', 100) FROM generate_series(1, {ROWS}) g) TO '{}'",
            paced("slow", 500, 42),
            paced("pace", 500, 50),
            file.display()
        ),
    );
    let file_size = std::fs::metadata(&file).unwrap().len();
    let mut held = c.hold_backend("postgres");
    let pid = held.pid;
    held.client
        .batch_execute("SET maintenance_work_mem = '1MB'")
        .unwrap();
    // eBPF alone: the per-block USDT probe would slow the paced statements down.
    let mut t = spawn_trace_every(pid, "ebpf", 50, &[]);
    t.wait_ready();
    let mut etas = Vec::new();

    MEETING.meet(major, "VACUUM");
    // VACUUM of the freshly loaded table, before it has indexes: a heap scan paced by the
    // cost-based delay, 10 ms a block.
    held.client
        .batch_execute(
            "SET vacuum_cost_delay = '10ms'; SET vacuum_cost_limit = 1; \
             SET vacuum_cost_page_dirty = 0",
        )
        .unwrap();
    let r = run(&mut t, &mut held.client, pid, "vacuum", "VACUUM t");
    etas.push(("VACUUM", r.eta_error(&format!("PG{major} VACUUM"))));
    held.client
        .batch_execute(
            "RESET vacuum_cost_delay; RESET vacuum_cost_limit; RESET vacuum_cost_page_dirty; \
             CREATE INDEX t_id ON t (id)",
        )
        .unwrap();

    MEETING.meet(major, "ANALYZE");
    // ANALYZE (13+): paced by the cost-based delay, a block at a time.
    if major >= 13 {
        let vocab = vocabulary(&c, "pg_stat_progress_analyze");
        let s = Sampler::start(&c, "pg_stat_progress_analyze", "phase", pid);
        let r = run(
            &mut t,
            &mut held.client,
            pid,
            "analyze",
            "SET vacuum_cost_delay = '10ms'; SET vacuum_cost_limit = 1; ANALYZE t; \
             RESET vacuum_cost_delay; RESET vacuum_cost_limit",
        );
        compare(major, "ANALYZE", &r, &s.stop(r.gap_s), &vocab);
        assert!(r
            .ops
            .iter()
            .any(|o| o.relation.as_deref() == Some("public.t")));
        etas.push(("ANALYZE", r.eta_error(&format!("PG{major} ANALYZE"))));
    } else {
        support::skip(
            &format!("PG{major} ANALYZE phases"),
            "pg_stat_progress_analyze exists from 13",
        );
    }

    MEETING.meet(major, "CREATE INDEX");
    // CREATE INDEX on a slow expression: a paced scan, then a sort that spills.
    let vocab = vocabulary(&c, "pg_stat_progress_create_index");
    let s = Sampler::start(&c, "pg_stat_progress_create_index", "phase", pid);
    let r = run(
        &mut t,
        &mut held.client,
        pid,
        "create index",
        "SET trace_sort = off; CREATE INDEX t_slow ON t ((slow(id)))",
    );
    compare(major, "CREATE INDEX", &r, &s.stop(r.gap_s), &vocab);
    let phases = r.phases();
    assert!(
        phases.iter().any(|p| p == "building index: scanning table"),
        "PG{major}: {phases:?}"
    );
    etas.push((
        "CREATE INDEX",
        r.eta_error(&format!("PG{major} CREATE INDEX")),
    ));
    let spilled: i64 = c.psql(
        "postgres",
        "SELECT temp_files FROM pg_stat_database WHERE datname = 'postgres'",
    )[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        spilled > 0,
        "PG{major}: the index build's sort did not spill"
    );

    let vocab = vocabulary(&c, "pg_stat_progress_vacuum");

    // VACUUM with two index passes: more dead tuples than maintenance_work_mem holds.
    held.client
        .batch_execute("DELETE FROM t WHERE id % 10 <> 0")
        .unwrap();
    if major >= 17 {
        // 17's TID store packs a block's dead tuples in a few bytes: 64kB, the least it
        // allows, still fills before the table's 900 blocks are scanned.
        held.client
            .batch_execute("SET maintenance_work_mem = '64kB'")
            .unwrap();
    }
    held.client
        .batch_execute("SET vacuum_cost_delay = '2ms'; SET vacuum_cost_limit = 20")
        .unwrap();
    let s = Sampler::start(&c, "pg_stat_progress_vacuum", "phase", pid);
    let r = run(&mut t, &mut held.client, pid, "vacuum", "VACUUM t");
    let (sampled, raw) = s.stop_raw(r.gap_s);
    compare(major, "VACUUM", &r, &sampled, &vocab);
    let passes = raw.iter().filter(|p| *p == "vacuuming indexes").count();
    assert!(
        passes >= 2,
        "PG{major}: the server showed {passes} index passes: {raw:?}"
    );
    held.client
        .batch_execute(
            "RESET vacuum_cost_delay; RESET vacuum_cost_limit; SET maintenance_work_mem = '1MB'",
        )
        .unwrap();

    // CLUSTER: scan, sort, write, then rebuild both indexes (the slow one paced).
    let vocab = vocabulary(&c, "pg_stat_progress_cluster");
    let s = Sampler::start(&c, "pg_stat_progress_cluster", "phase", pid);
    let r = run(
        &mut t,
        &mut held.client,
        pid,
        "cluster",
        "CLUSTER t USING t_id",
    );
    compare(major, "CLUSTER", &r, &s.stop(r.gap_s), &vocab);
    assert!(
        r.phases().iter().any(|p| p == "rebuilding index"),
        "PG{major}: {:?}",
        r.phases()
    );

    MEETING.meet(major, "COPY");
    // COPY FROM a file, paced by a CHECK calling the slow function.
    let copy = format!("COPY c FROM '{}'", file.display());
    if major >= 14 {
        let vocab = vocabulary(&c, "pg_stat_progress_copy");
        let s = Sampler::start(&c, "pg_stat_progress_copy", "command", pid);
        let r = run(&mut t, &mut held.client, pid, "copy", &copy);
        compare(major, "COPY", &r, &s.stop(r.gap_s), &vocab);
        for o in &r.ops {
            assert_eq!(o.unit.as_deref(), Some("bytes"), "PG{major}: {o:?}");
            assert_eq!(o.total, Some(file_size), "PG{major}: {o:?}");
        }
        etas.push(("COPY", r.eta_error(&format!("PG{major} COPY"))));
    } else {
        // No view: the source file's read position, of its size.
        let r = run(&mut t, &mut held.client, pid, "copy", &copy);
        let with_figures: Vec<&OperationRecord> =
            r.ops.iter().filter(|o| o.done.is_some()).collect();
        assert!(!with_figures.is_empty(), "PG{major}: COPY: {:?}", r.ops);
        for o in &with_figures {
            assert_eq!(o.source, "files", "PG{major}: {o:?}");
            assert_eq!(o.total, Some(file_size), "PG{major}: {o:?}");
            assert!(o.done.unwrap() <= file_size, "PG{major}: {o:?}");
            assert_eq!(o.relation.as_deref(), Some("public.c"), "PG{major}: {o:?}");
        }
        let max = with_figures.iter().filter_map(|o| o.done).max().unwrap();
        assert!(
            max * 10 >= file_size * 9,
            "PG{major}: read to {max} of {file_size}"
        );
        etas.push(("COPY", r.eta_error(&format!("PG{major} COPY (files)"))));
    }
    let records = t.finish();
    assert!(records.iter().any(|r| matches!(r, Record::Summary(_))));
    drop(held);

    // A long DELETE (`query`): no progress view; its scan of c, from a cold cache, read
    // by the backend (or its io workers) and followed by pg_trace. Paced by the clock
    // (the row of id n not before 50 µs × n), so that neither the other majors' tests
    // ending nor a loaded stretch changes its pace.
    c.restart();
    let mut held = c.hold_backend("postgres");
    let pid = held.pid;
    let mut t = spawn_trace_every(pid, "ebpf", 50, &[]);
    t.wait_ready();
    MEETING.meet(major, "DELETE");
    let r = run(
        &mut t,
        &mut held.client,
        pid,
        "query",
        "DELETE FROM c WHERE pace(id) % 2 = 0",
    );
    let size: u64 = c.psql("postgres", "SELECT pg_relation_size('c')")[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    let with_figures: Vec<&OperationRecord> = r.ops.iter().filter(|o| o.done.is_some()).collect();
    if std::env::var("OPERATION_DEBUG").is_ok() {
        for o in &r.ops {
            eprintln!(
                "  DELETE {:.3} {:?}/{:?} {:?} {:?}",
                o.ts, o.done, o.total, o.rate, o.eta_s
            );
        }
    }
    assert!(!with_figures.is_empty(), "PG{major}: DELETE: {:?}", r.ops);
    for o in &with_figures {
        assert_eq!(o.relation.as_deref(), Some("public.c"), "PG{major}: {o:?}");
        assert_eq!(
            (o.unit.as_deref(), o.source.as_str()),
            (Some("bytes"), "files"),
            "PG{major}: {o:?}"
        );
        assert_eq!(
            o.total,
            Some(size),
            "PG{major}: the server says {size} bytes: {o:?}"
        );
        assert!(o.done.unwrap() <= size, "PG{major}: {o:?}");
    }
    let last = with_figures.last().unwrap().done.unwrap();
    assert!(
        last * 10 >= size * 9,
        "PG{major}: the DELETE's scan seen to {last} of {size} bytes"
    );
    etas.push(("DELETE", r.eta_error(&format!("PG{major} DELETE"))));
    t.finish();
    for (what, err) in etas {
        assert!(
            err <= 0.15,
            "PG{major} {what}: the ETA at 25 % missed the real end by {:.0} % of the run",
            err * 100.0
        );
    }
}

#[test]
fn operation_phases_and_eta_on_every_major() {
    MEETING.lock().parties = support::majors().len();
    support::on_every_major(check);
}
