//! The wait profile written out: `waits` records (line mode each interval, `ps --waits`)
//! and the text table of `ps --waits`.

use crate::model::waits::HashMap;
use crate::model::waits::{EventKey, Profile, QueryKey};
use crate::output::record::{QueryWaits, Record, WaitShare, WaitsRecord};
use crate::text::visible;
use crate::trace::Pid;
use std::io::{self, Write};

/// Waits kept per query in a record.
const TOP_WAITS: usize = 5;
/// Queries kept per record.
const QUERIES: usize = 20;

fn shares(events: &HashMap<EventKey, u64>, of: u64, s_per_sample: f64) -> Vec<WaitShare> {
    Profile::ranked(events)
        .into_iter()
        .map(|(k, n)| WaitShare {
            wait_event_type: k.as_ref().map(|e| e.class.clone()),
            wait_event: k.as_ref().map(|e| e.name.clone()),
            samples: n,
            share: n as f64 / of.max(1) as f64,
            seconds: n as f64 * s_per_sample,
        })
        .collect()
}

/// One scope of one process as a `waits` record; the kernel's fields are left empty.
pub fn record(p: &Profile, pid: Pid, ts: f64, scope: &str, hz: f64) -> WaitsRecord {
    let window_s = p.window_s(hz);
    let per = window_s / p.samples.max(1) as f64;
    WaitsRecord {
        ts,
        pid,
        scope: scope.to_string(),
        hz,
        samples: p.samples,
        window_s,
        cpu_s: None,
        off_cpu_s: None,
        uninterruptible_s: None,
        runqueue_s: None,
        events: shares(&p.events, p.samples, per),
        queries: p
            .ranked_queries()
            .into_iter()
            .take(QUERIES)
            .map(|(k, q)| QueryWaits {
                query_id: match k {
                    QueryKey::Id(id) => Some(*id),
                    QueryKey::Text(_) => None,
                },
                query: q.text.as_deref().map(str::to_string),
                samples: q.samples,
                cpu_s: q.cpu_ns.map(|n| n as f64 / 1e9),
                top_waits: {
                    let mut v = shares(&q.events, q.samples, per);
                    v.truncate(TOP_WAITS);
                    v
                },
            })
            .collect(),
        io_latency: Vec::new(),
        exact: None,
    }
}

/// `Timeout:PgSleep` or `CPU`.
pub fn event_label(k: &EventKey) -> String {
    match k {
        Some(e) => format!("{}:{}", e.class, e.name),
        None => "CPU".to_string(),
    }
}

/// A profile's events as `Timeout:PgSleep 80%, CPU 20%` (the first `n`).
pub fn top_line(p: &Profile, n: usize) -> String {
    Profile::ranked(&p.events)
        .into_iter()
        .take(n)
        .map(|(k, c)| {
            format!(
                "{} {:.0}%",
                event_label(&k),
                100.0 * c as f64 / p.samples.max(1) as f64
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The text table of `ps --waits`: one block per process, its events then its queries.
pub fn write_text(
    out: &mut impl Write,
    rows: &[(Pid, String, &Profile)],
    hz: f64,
    secs: f64,
) -> io::Result<()> {
    writeln!(
        out,
        "wait profile: {} processes, {secs:.1} s at {hz} Hz (CPU: no wait event set)",
        rows.len()
    )?;
    for (pid, what, p) in rows {
        writeln!(out, "\n{pid:>7}  {}  {} samples", visible(what), p.samples)?;
        for (k, n) in Profile::ranked(&p.events) {
            let share = n as f64 / p.samples.max(1) as f64;
            writeln!(
                out,
                "         {:<32} {:>6.1}%  {:>8.2} s",
                visible(&event_label(&k)),
                100.0 * share,
                share * p.window_s(hz)
            )?;
        }
        for (k, q) in p.ranked_queries().into_iter().take(5) {
            let id = match k {
                QueryKey::Id(id) => format!("query id {id}"),
                QueryKey::Text(_) => "query".to_string(),
            };
            let text: String = q.text.as_deref().unwrap_or("").chars().take(60).collect();
            writeln!(
                out,
                "         {id}: {} ({} samples): {}",
                visible(&text),
                q.samples,
                visible(&top_line(
                    &Profile {
                        samples: q.samples,
                        events: q.events.clone(),
                        ..Default::default()
                    },
                    3
                ))
            )?;
        }
    }
    Ok(())
}

/// Line mode, each interval: per sampled process (the leader first) its `waits` records,
/// interval then total, the leader's completed with what the kernel measured (scheduler
/// times, I/O latency, exact waits); the kernel's alone when nothing was sampled. In text
/// one line each. Nothing before the first round or reading.
pub fn write_interval(
    out: &mut impl Write,
    model: &crate::model::Model,
    since: u64,
    now: u64,
    ts: f64,
    format: crate::output::Format,
) -> io::Result<()> {
    let w = &model.waits;
    let leader = model.leader;
    let order = w
        .procs
        .get_key_value(&leader)
        .into_iter()
        .chain(w.procs.iter().filter(|(p, _)| **p != leader));
    let start = model.first_ns.unwrap_or(now);
    let kernel_of = |pid| super::kernel_time::waits_records(model, pid, start, since, now);
    for (pid, p) in order {
        match format {
            crate::output::Format::Json => {
                // Interval then total, as the sampled records come.
                let mut kernel = kernel_of(*pid).into_iter();
                for (scope, prof) in [("interval", &p.interval), ("total", &p.total)] {
                    let mut r = record(prof, *pid, ts, scope, w.hz);
                    if let Some(Record::Waits(k)) = kernel.next() {
                        merge_kernel(&mut r, k);
                    }
                    super::record::write(&mut *out, &Record::Waits(r))?;
                }
            }
            crate::output::Format::Text => {
                if p.interval.samples == 0 {
                    continue;
                }
                writeln!(
                    out,
                    "waits: pid {pid}: {} (since attach: {})",
                    visible(&top_line(&p.interval, 3)),
                    visible(&top_line(&p.total, 3))
                )?;
            }
        }
    }
    if format == crate::output::Format::Json {
        // Measured by the kernel, not sampled (sampling off, or a process it missed).
        for pid in super::kernel_time::measured_pids(model) {
            if w.procs.contains_key(&pid) {
                continue;
            }
            for r in kernel_of(pid) {
                super::record::write(&mut *out, &r)?;
            }
        }
    }
    Ok(())
}

/// The kernel's fields of the same scope, into the sampled record.
fn merge_kernel(r: &mut WaitsRecord, k: WaitsRecord) {
    // The kernel counts from the session's start, the sampler from its first round (a
    // moment later, once it has found the process's slot in shared memory): the record
    // covers the longer of the two, or its CPU time would not fit its window.
    r.window_s = r.window_s.max(k.window_s);
    r.cpu_s = k.cpu_s;
    r.off_cpu_s = k.off_cpu_s;
    r.uninterruptible_s = k.uninterruptible_s;
    r.runqueue_s = k.runqueue_s;
    r.io_latency = k.io_latency;
    r.exact = k.exact;
}
