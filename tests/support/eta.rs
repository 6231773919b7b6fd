//! ETA accuracy runs: an operation as pg_trace saw it, and the ETA it showed at a quarter
//! of it against its real end (tests/operation_eta*.rs).

use super::trace::{operation, stats, status, Trace};
use super::Cluster;
use pg_trace::output::record::{OperationRecord, Record};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One run, as pg_trace saw it.
pub struct Run {
    pub ops: Vec<OperationRecord>,
    pub start: f64,
    pub end: f64,
}

impl Run {
    /// The ETA at a quarter of the run against its real end, as a share of the run.
    pub fn error(&self, what: &str) -> f64 {
        if std::env::var("OPERATION_DEBUG").is_ok() {
            for o in &self.ops {
                eprintln!(
                    "  {what}: {:.2} {:?} {:?}/{:?} rate {:?} eta {:?} phase eta {:?}",
                    o.ts, o.phase, o.done, o.total, o.rate, o.eta_s, o.phase_eta_s
                );
            }
        }
        let dur = self.end - self.start;
        let quarter = self.start + dur / 4.0;
        let at = self
            .ops
            .iter()
            .find(|o| o.ts >= quarter && o.eta_s.is_some())
            .unwrap_or_else(|| {
                panic!(
                    "{what}: no ETA from {quarter:.2}s on (run {:.2}s..{:.2}s): {:?}",
                    self.start, self.end, self.ops
                )
            });
        assert!(
            at.ts <= self.start + dur * 0.35,
            "{what}: the first ETA from a quarter on came at {:.2}s, {:.0} % into the run",
            at.ts,
            (at.ts - self.start) * 100.0 / dur
        );
        let predicted = at.ts + at.eta_s.unwrap();
        let err = (predicted - self.end).abs() / dur;
        eprintln!(
            "{what}: ran {:.2}s..{:.2}s ({dur:.1}s); at {:.2}s ({:?} {:?}/{:?} {:?}) ETA {:.1}s ({:?}) → {predicted:.2}s: error {:.1} % of the run",
            self.start,
            self.end,
            at.ts,
            at.phase,
            at.done,
            at.total,
            at.unit,
            at.eta_s.unwrap(),
            at.eta_source,
            err * 100.0
        );
        err
    }
}

/// Waits for the first two intervals after the last `kind` record of `pid` since record
/// `from` (or for pg_trace to end, the traced process gone), once the caller knows the
/// operation is over; the run from its first record to the first interval after its last.
/// With `relation`, only the records of the relation of that name count.
pub fn collect(t: &mut Trace, from: usize, pid: i32, kind: &str, relation: Option<&str>) -> Run {
    let is_op = |x: &Record| {
        operation(x).is_some_and(|o| {
            o.pid == pid
                && o.operation == kind
                && relation.map_or(true, |n| o.name.as_deref() == Some(n))
        })
    };
    // An interval's end: a stats record, or the status saying the process exited.
    let ends = |x: &Record| {
        stats(x)
            .map(|s| s.ts)
            .or_else(|| status(x).filter(|s| s.leader_exited).map(|s| s.ts))
    };
    let t0 = Instant::now();
    loop {
        let r = t.records();
        let r = &r[from.min(r.len())..];
        let over = r
            .iter()
            .rposition(is_op)
            .is_some_and(|last| r[last..].iter().filter(|x| stats(x).is_some()).count() >= 2);
        let gone = matches!(t.child.try_wait(), Ok(Some(_)));
        if over || gone {
            if gone {
                // Its last lines may still be on their way through the reader thread.
                std::thread::sleep(Duration::from_millis(200));
            }
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "timed out waiting for two intervals after the {kind}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = t.records();
    let r = &r[from..];
    let last = r
        .iter()
        .rposition(is_op)
        .unwrap_or_else(|| panic!("no {kind} record of {pid}"));
    let ops: Vec<OperationRecord> = r
        .iter()
        .filter(|x| is_op(x))
        .filter_map(operation)
        .cloned()
        .collect();
    Run {
        start: ops[0].ts,
        end: r[last + 1..]
            .iter()
            .find_map(ends)
            .unwrap_or_else(|| panic!("no interval after the last {kind} record")),
        ops,
    }
}

/// Runs `sql` on the traced backend; its run.
pub fn run(t: &mut Trace, client: &mut postgres::Client, pid: i32, kind: &str, sql: &str) -> Run {
    let from = t.records().len();
    client
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("{sql}: {}", super::describe_pg_error(&e)));
    collect(t, from, pid, kind, None)
}

pub fn number(c: &Cluster, sql: &str) -> i64 {
    c.psql("postgres", sql)[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap()
}

/// A query run over and over on its own connection (a progress view, sampled over SQL
/// beside pg_trace), its distinct rows in the order first seen.
pub struct Poll {
    stop: Arc<AtomicBool>,
    rows: Arc<Mutex<Vec<Vec<Option<String>>>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Poll {
    pub fn start(c: &Cluster, sql: &str) -> Poll {
        let mut client = c.connect("postgres");
        let sql = sql.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let rows = Arc::new(Mutex::new(Vec::new()));
        let (s, out) = (Arc::clone(&stop), Arc::clone(&rows));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let msgs = client
                    .simple_query(&sql)
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                for m in msgs {
                    if let postgres::SimpleQueryMessage::Row(row) = m {
                        let row: Vec<Option<String>> = (0..row.len())
                            .map(|i| row.get(i).map(str::to_owned))
                            .collect();
                        let mut out = out.lock().unwrap();
                        if !out.contains(&row) {
                            out.push(row);
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Poll { stop, rows, thread }
    }

    /// The rows seen so far.
    pub fn rows(&self) -> Vec<Vec<Option<String>>> {
        self.rows.lock().unwrap().clone()
    }

    pub fn stop(self) -> Vec<Vec<Option<String>>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("poll thread");
        self.rows.lock().unwrap().clone()
    }
}

/// SQL creating `name(int)`, an immutable function that sleeps `sleep_s` on every
/// `every`-th value while the session's `eta.pace` is `on`: what paces a statement that
/// calls it per row, so that its ETA can be checked against its real end.
pub fn paced(name: &str, every: u32, sleep_s: f64) -> String {
    format!(
        "CREATE FUNCTION {name}(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS \
         $$ BEGIN IF $1 % {every} = 0 AND current_setting('eta.pace', true) = 'on' THEN \
         PERFORM pg_sleep({sleep_s}); END IF; RETURN $1; END $$; "
    )
}
