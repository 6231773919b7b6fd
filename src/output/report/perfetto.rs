//! The report as Chrome trace-event JSON (`{"traceEvents":[...]}`), which the Perfetto UI
//! (ui.perfetto.dev) and chrome://tracing open. One track group per process (`M`
//! metadata names each process and thread); complete slices (`X`, with `dur`) for
//! queries, lock waits, backup phases, verdicts, wait events and `-d` system calls;
//! counters (`C`) for throughput, position and backup bytes. `ts` and `dur` are
//! microseconds since attach.
//!
//! A process's system calls are on its own tid. Every other kind of slice is on a
//! thread of its own, numbered above any pid Linux hands out ([`SYNTHETIC`]), so that
//! slices of different kinds, which need not nest, never share a track.

use super::timeline::Timeline;
use crate::trace::Pid;
use serde::Serialize;
use serde_json::{json, Value};
use std::io::{self, Write};

/// Above `PID_MAX_LIMIT` (2^22): a synthetic tid is never a real thread's.
const SYNTHETIC: i64 = 1 << 30;

#[derive(Debug, Clone, Copy)]
enum Lane {
    Queries = 1,
    LockWaits = 2,
    Backup = 3,
    Verdict = 4,
    Wait = 5,
}

impl Lane {
    fn name(self) -> &'static str {
        match self {
            Lane::Queries => "queries",
            Lane::LockWaits => "lock waits",
            Lane::Backup => "backup phase",
            Lane::Verdict => "verdict",
            Lane::Wait => "wait event",
        }
    }

    fn tid(self, pid: Pid) -> i64 {
        SYNTHETIC + i64::from(pid) * 8 + self as i64
    }
}

/// The whole file, typed: what the trace-event format asks for and nothing else.
#[derive(Serialize)]
struct TraceFile {
    #[serde(rename = "traceEvents")]
    trace_events: Vec<TraceEvent>,
    #[serde(rename = "displayTimeUnit")]
    display_time_unit: &'static str,
}

#[derive(Serialize)]
struct TraceEvent {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cat: Option<&'static str>,
    ph: &'static str,
    ts: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    dur: Option<f64>,
    pid: i64,
    tid: i64,
    #[serde(skip_serializing_if = "Value::is_null")]
    args: Value,
}

fn us(s: f64) -> f64 {
    (s * 1e6).max(0.0)
}

struct Events {
    v: Vec<TraceEvent>,
    /// Threads named so far.
    named: std::collections::BTreeSet<(i64, i64)>,
}

impl Events {
    fn meta(&mut self, what: &'static str, pid: i64, tid: i64, name: String) {
        self.v.push(TraceEvent {
            name: what.to_string(),
            cat: None,
            ph: "M",
            ts: 0.0,
            dur: None,
            pid,
            tid,
            args: json!({ "name": name }),
        });
    }

    fn thread(&mut self, pid: Pid, tid: i64, name: &str) {
        if self.named.insert((i64::from(pid), tid)) {
            self.meta("thread_name", i64::from(pid), tid, name.to_string());
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn slice(
        &mut self,
        cat: &'static str,
        pid: Pid,
        tid: i64,
        name: &str,
        start: f64,
        dur_s: f64,
        args: Value,
    ) {
        self.v.push(TraceEvent {
            name: name.to_string(),
            cat: Some(cat),
            ph: "X",
            ts: us(start),
            dur: Some(us(dur_s)),
            pid: i64::from(pid),
            tid,
            args,
        });
    }

    fn lane(&mut self, pid: Pid, lane: Lane) -> i64 {
        let tid = lane.tid(pid);
        self.thread(pid, tid, lane.name());
        tid
    }

    fn counter(&mut self, pid: Pid, name: String, ts: f64, args: Value) {
        self.v.push(TraceEvent {
            name,
            cat: Some("counter"),
            ph: "C",
            ts: us(ts),
            dur: None,
            pid: i64::from(pid),
            tid: i64::from(pid),
            args,
        });
    }
}

/// Write the trace-event JSON of `tl`.
pub fn write(out: &mut dyn Write, tl: &Timeline) -> io::Result<()> {
    serde_json::to_writer(out, &file(tl)).map_err(io::Error::other)
}

fn file(tl: &Timeline) -> TraceFile {
    let mut e = Events {
        v: Vec::new(),
        named: Default::default(),
    };
    let (_, end) = tl.range();
    // The traced process: the attach record's, else the first one seen (0 when none).
    let main = tl
        .pid()
        .or_else(|| tl.processes.keys().next().copied())
        .unwrap_or(0);
    for (&pid, what) in &tl.processes {
        let name = if pid == main {
            format!("pid {pid}: {what}")
        } else {
            format!("pid {pid} ({what})")
        };
        e.meta("process_name", i64::from(pid), i64::from(pid), name);
    }
    if !tl.processes.contains_key(&main) {
        e.meta(
            "process_name",
            i64::from(main),
            i64::from(main),
            format!("pid {main}"),
        );
    }
    for q in &tl.queries {
        let tid = e.lane(q.pid, Lane::Queries);
        let dur = q.duration_s.unwrap_or((end - q.start).max(0.0));
        e.slice(
            "query",
            q.pid,
            tid,
            &q.text,
            q.start,
            dur,
            json!({ "query": q.text, "still_running": q.duration_s.is_none() }),
        );
    }
    if tl.queries.is_empty() {
        // Without USDT: the query of the status samples, while active.
        for q in &tl.active_queries {
            let tid = e.lane(main, Lane::Queries);
            e.slice(
                "query",
                main,
                tid,
                &q.label,
                q.start,
                (q.end - q.start).max(0.0),
                json!({ "query": q.label, "from": "status samples" }),
            );
        }
    }
    for l in &tl.lock_waits {
        let tid = e.lane(l.pid, Lane::LockWaits);
        let dur = l.duration_s.unwrap_or((end - l.start).max(0.0));
        e.slice(
            "lock_wait",
            l.pid,
            tid,
            &format!("{} on {}", l.mode, l.object),
            l.start,
            dur,
            json!({ "mode": l.mode, "object": l.object, "still_waiting": l.duration_s.is_none() }),
        );
    }
    for (lane, spans, cat) in [
        (Lane::Backup, &tl.backup_phases, "backup_phase"),
        (Lane::Verdict, &tl.verdicts, "verdict"),
        (Lane::Wait, &tl.waits, "wait_event"),
    ] {
        for s in spans {
            let tid = e.lane(main, lane);
            e.slice(
                cat,
                main,
                tid,
                &s.label,
                s.start,
                (s.end - s.start).max(0.0),
                if s.detail.is_empty() {
                    Value::Null
                } else {
                    json!({ "detail": s.detail })
                },
            );
        }
    }
    for s in &tl.syscalls {
        let tid = i64::from(s.pid);
        e.thread(s.pid, tid, &format!("pid {} system calls", s.pid));
        // A record of line mode says when a call was seen, not how long it took.
        e.slice(
            "syscall",
            s.pid,
            tid,
            &s.name,
            s.ts,
            0.0,
            json!({ "object": s.object, "bytes": s.bytes, "result": s.result }),
        );
    }
    for r in &tl.relations {
        for p in &r.points {
            e.counter(
                main,
                format!("read rate: {}", r.label),
                p.ts,
                json!({ "bytes_per_s": finite(p.rate_bps) }),
            );
            if let Some(pc) = p.percent {
                e.counter(
                    main,
                    format!("position %: {}", r.label),
                    p.ts,
                    json!({ "percent": finite(pc) }),
                );
            }
        }
    }
    for b in &tl.backup {
        e.counter(
            main,
            "backup streamed".to_string(),
            b.ts,
            json!({ "bytes": b.streamed }),
        );
        e.counter(
            main,
            "backup rate".to_string(),
            b.ts,
            json!({ "bytes_per_s": finite(b.rate_bps) }),
        );
    }
    TraceFile {
        trace_events: e.v,
        display_time_unit: "ms",
    }
}

/// A counter value that serde writes as a number (never `null`).
fn finite(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}
