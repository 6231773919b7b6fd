//! The report as plain text for a ticket: the same facts as the HTML page, as tables.
//! Every string from the trace goes through `text::visible`: a name or query cannot
//! drive the terminal it is pasted from, nor forge a row.

use super::timeline::{share_label, Timeline};
use super::{pct, peak_rate, secs, time_by_label};
use crate::text::{human_bytes, human_duration, human_rate, visible};
use std::fmt::Write;

/// Columns of a table, each as wide as its widest cell; the last left unpadded.
fn table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    let n = head.len();
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, c) in cells.enumerate() {
            if i + 1 == n {
                s.push_str(c);
            } else {
                let _ = write!(s, "{c:<width$}  ", width = w[i]);
            }
        }
        out.push_str("  ");
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(out, &mut head.iter().copied());
    for r in rows {
        line(out, &mut r.iter().map(String::as_str));
    }
}

fn v(s: &str) -> String {
    visible(s).into_owned()
}

/// The whole summary.
pub fn render(tl: &Timeline) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "pg_trace report{}",
        tl.pid().map(|p| format!(": pid {p}")).unwrap_or_default()
    );
    o.push('\n');
    match &tl.attach {
        Some(a) => {
            let _ = writeln!(o, "Traced:       pid {}, {}", a.pid, v(&a.title));
            let _ = writeln!(o, "PostgreSQL:   {}", a.major);
            let _ = writeln!(o, "Data dir:     {}", v(&a.datadir));
            let _ = writeln!(o, "Traced with:  {}", v(&a.backend));
            if a.usdt.active {
                let _ = writeln!(o, "USDT probes:  {}", v(&a.usdt.probes.join(", ")));
            } else {
                let _ = writeln!(
                    o,
                    "USDT probes:  off{}",
                    a.usdt
                        .reason
                        .as_deref()
                        .map(|r| format!(": {}", v(r)))
                        .unwrap_or_default()
                );
            }
            for l in &a.limitations {
                let _ = writeln!(o, "Limitation:   {}", v(l));
            }
        }
        None => o.push_str("Traced:       unknown (no attach record)\n"),
    }
    if let (Some(s), Some(e)) = (tl.start, tl.end) {
        let _ = writeln!(
            o,
            "When:         {} to {} after attach ({}); no wall-clock time in the trace",
            secs(s),
            secs(e),
            human_duration(e - s)
        );
    }
    if tl.out_of_range > 0 {
        let _ = writeln!(
            o,
            "Left out:     {} records whose time cannot be placed",
            tl.out_of_range
        );
    }

    if !tl.verdicts.is_empty() {
        o.push_str("\nVerdicts over time\n");
        let rows: Vec<Vec<String>> = tl
            .verdicts
            .iter()
            .map(|s| vec![secs(s.start), secs(s.end), v(&s.detail)])
            .collect();
        table(&mut o, &["from", "to", "verdict"], &rows);
    }

    if !tl.relations.is_empty() {
        o.push_str("\nRelations\n");
        let rows: Vec<Vec<String>> = super::by_bytes(tl)
            .into_iter()
            .map(|r| {
                let l = &r.last;
                vec![
                    l.size.map_or("-".into(), human_bytes),
                    format!("{}{}", pct(l.percent), if l.estimate { "~" } else { "" }),
                    pct(l.coverage.map(|c| c * 100.0)),
                    human_bytes(l.bytes_read),
                    human_bytes(l.bytes_written),
                    human_rate(peak_rate(r)),
                    human_bytes(l.from_shared_buffers_bytes),
                    format!(
                        "{}{}",
                        v(&r.label),
                        r.kind
                            .as_deref()
                            .map(|k| format!(" ({})", v(k)))
                            .unwrap_or_default()
                    ),
                ]
            })
            .collect();
        table(
            &mut o,
            &[
                "size",
                "position",
                "coverage",
                "read",
                "written",
                "peak rate",
                "in sh. buffers",
                "relation",
            ],
            &rows,
        );
    }

    if let Some(b) = tl.backup.last() {
        if b.method == "basebackup" {
            o.push_str("\nBase backup\n");
        } else {
            let _ = writeln!(
                o,
                "\nBackup ({}){}",
                v(&b.method),
                b.copier
                    .as_deref()
                    .map(|c| format!(", copied by {}", v(c)))
                    .unwrap_or_default()
            );
        }
        let rows: Vec<Vec<String>> = tl
            .backup_phases
            .iter()
            .map(|p| vec![secs(p.start), secs(p.end), v(&p.label)])
            .collect();
        table(&mut o, &["from", "to", "phase"], &rows);
        let _ = writeln!(
            o,
            "  last seen: {}, {}{} ({}){}",
            v(&b.phase),
            human_bytes(b.streamed),
            b.total
                .map(|t| format!(" of {}", human_bytes(t)))
                .unwrap_or_default(),
            pct(b.percent),
            if b.ended { ", ended" } else { "" }
        );
    }

    if !tl.waits.is_empty() {
        o.push_str("\nWait events (status samples)\n");
        let rows: Vec<Vec<String>> = time_by_label(&tl.waits)
            .into_iter()
            .map(|(w, s)| vec![secs(s), v(&w)])
            .collect();
        table(&mut o, &["time", "wait event"], &rows);
    }
    if let Some(w) = &tl.wait_total {
        let _ = writeln!(
            o,
            "\nWait profile since attach ({} samples at {} Hz)",
            w.samples, w.hz
        );
        let rows: Vec<Vec<String>> = w
            .events
            .iter()
            .map(|e| {
                vec![
                    pct(Some(e.share * 100.0)),
                    format!("{:.2} s", e.seconds),
                    v(&share_label(e)),
                ]
            })
            .collect();
        table(&mut o, &["share", "seconds", "wait event"], &rows);
    }

    if !tl.queries.is_empty() {
        o.push_str("\nQueries\n");
        let rows: Vec<Vec<String>> = tl
            .queries
            .iter()
            .map(|q| {
                vec![
                    q.pid.to_string(),
                    secs(q.start),
                    q.duration_s
                        .map_or("running".into(), |d| format!("{d:.3} s")),
                    v(&q.text),
                ]
            })
            .collect();
        table(&mut o, &["pid", "from", "ran", "query"], &rows);
    }
    if tl.queries.is_empty() && !tl.active_queries.is_empty() {
        o.push_str("\nQueries (status samples)\n");
        let rows: Vec<Vec<String>> = tl
            .active_queries
            .iter()
            .map(|q| vec![secs(q.start), secs(q.end), v(&q.label)])
            .collect();
        table(&mut o, &["from", "to", "query"], &rows);
    }
    if !tl.lock_waits.is_empty() {
        o.push_str("\nLock waits\n");
        let rows: Vec<Vec<String>> = tl
            .lock_waits
            .iter()
            .map(|l| {
                vec![
                    l.pid.to_string(),
                    secs(l.start),
                    l.duration_s
                        .map_or("waiting".into(), |d| format!("{d:.3} s")),
                    v(&l.mode),
                    v(&l.object),
                ]
            })
            .collect();
        table(&mut o, &["pid", "from", "waited", "mode", "on"], &rows);
    }

    let counts = super::syscall_counts(tl);
    if !counts.is_empty() {
        o.push_str("\nSystem calls (-d)\n");
        let rows: Vec<Vec<String>> = counts
            .iter()
            .map(|(n, c, b)| vec![c.to_string(), human_bytes(*b), v(n)])
            .collect();
        table(&mut o, &["count", "bytes asked", "call"], &rows);
    }

    o.push_str("\nEvents\n");
    if let Some(n) = tl.events.or(tl.summary.as_ref().map(|s| s.events)) {
        let _ = writeln!(o, "  received: {n}");
    }
    for (why, n) in &tl.lost {
        let _ = writeln!(o, "  lost ({}): {n}", v(why));
    }
    match &tl.summary {
        Some(s) if s.exited => {
            let _ = writeln!(
                o,
                "  the process exited{}{}",
                s.exit_code
                    .map(|c| format!(" with code {c}"))
                    .unwrap_or_default(),
                s.exit_signal
                    .map(|c| format!(" on signal {c}"))
                    .unwrap_or_default()
            );
        }
        Some(_) => o.push_str("  pg_trace stopped; the process was still running\n"),
        None => o.push_str("  no summary record: the trace was cut short\n"),
    }
    o
}
