//! The report as one self-contained HTML page: inline CSS, inline SVG charts, no script,
//! no font or anything else fetched, so that it opens from a mail attachment. Markup is
//! built by maud, which escapes every string it is given: text from the trace (names,
//! queries, titles) cannot become markup. The charts' SVG is the one thing put in
//! unescaped; plotters escapes the labels inside it.

use super::charts::{self, BandRow, Series};
use super::timeline::{share_label, Timeline};
use super::{band_rows, pct, peak_rate, secs, time_by_label};
use crate::text::{human_bytes, human_duration, human_rate, visible};
use maud::{html, Markup, PreEscaped, DOCTYPE};

const CSS: &str = "
body { font-family: sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
code, .q { font-family: monospace; white-space: pre-wrap; overflow-wrap: anywhere; }
td.n { white-space: nowrap; }
.note { color: #666; font-size: 0.9em; }
figure { margin: 0.5em 0; }
";

/// Rows shown in a table of queries, lock waits or verdicts; the rest are counted.
const MAX_TABLE_ROWS: usize = 200;

/// Text from the trace, made visible (control characters written out); maud escapes it.
fn t(s: &str) -> String {
    visible(s).into_owned()
}

fn chart(svg: Result<String, String>) -> Markup {
    match svg {
        Ok(svg) => html! { figure { (PreEscaped(svg)) } },
        Err(e) => html! { p.note { (e) } },
    }
}

fn more(shown: usize, total: usize) -> Markup {
    html! {
        @if total > shown {
            p.note { (total - shown) " more not shown (see --format text or perfetto)." }
        }
    }
}

/// The whole page.
pub fn render(tl: &Timeline) -> String {
    let title = match tl.pid() {
        Some(pid) => format!("pg_trace report: pid {pid}"),
        None => "pg_trace report".to_string(),
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                h1 { (title) }
                (traced(tl))
                (verdicts(tl))
                (backup(tl))
                (relations(tl))
                (waits(tl))
                (queries(tl))
                (syscalls(tl))
                (events(tl))
            }
        }
    }
    .into_string()
}

fn traced(tl: &Timeline) -> Markup {
    let (s, e) = (tl.start, tl.end);
    html! {
        h2 { "What was traced" }
        @match &tl.attach {
            Some(a) => {
                table {
                    tr { th { "pid" } td { (a.pid) } }
                    tr { th { "process title" } td.q { (t(&a.title)) } }
                    tr { th { "PostgreSQL" } td { (a.major) } }
                    tr { th { "data directory" } td.q { (t(&a.datadir)) } }
                    tr { th { "traced with" } td { (t(&a.backend)) } }
                    tr {
                        th { "USDT probes" }
                        td {
                            @if a.usdt.active { (t(&a.usdt.probes.join(", "))) }
                            @else { "off" @if let Some(r) = &a.usdt.reason { ": " (t(r)) } }
                        }
                    }
                    tr {
                        th { "limitations" }
                        td {
                            @if a.limitations.is_empty() { "none said" }
                            ul { @for l in &a.limitations { li { (t(l)) } } }
                        }
                    }
                }
            }
            None => p.note { "The trace has no attach record: what was traced is not known." }
        }
        table {
            tr {
                th { "from" }
                td { @match s { Some(s) => (secs(s)), None => "-" } " after attach" }
            }
            tr {
                th { "to" }
                td { @match e { Some(e) => (secs(e)), None => "-" } " after attach" }
            }
            @if let (Some(s), Some(e)) = (s, e) {
                tr { th { "traced for" } td { (human_duration(e - s)) } }
            }
        }
        p.note { "Times are seconds since pg_trace attached; line mode's JSON holds no wall-clock time." }
        @if tl.out_of_range > 0 {
            p.note { (tl.out_of_range) " records with a time that cannot be placed (negative or beyond ten years) are left out." }
        }
    }
}

fn verdicts(tl: &Timeline) -> Markup {
    let x = tl.range();
    html! {
        h2 { "Verdicts over time" }
        @if tl.verdicts.is_empty() {
            p.note { "No status records: no verdict." }
        } @else {
            (chart(charts::bands("verdict", x, &band_rows(&tl.verdicts, charts::MAX_ROWS))))
            table {
                tr { th { "from" } th { "to" } th { "verdict" } }
                @for v in tl.verdicts.iter().take(MAX_TABLE_ROWS) {
                    tr { td.n { (secs(v.start)) } td.n { (secs(v.end)) } td.q { (t(&v.detail)) } }
                }
            }
            (more(MAX_TABLE_ROWS, tl.verdicts.len()))
        }
    }
}

/// The relations with the most bytes read first, as many as a chart holds.
fn busiest(tl: &Timeline) -> Vec<&super::timeline::RelationSeries> {
    let mut v = super::by_bytes(tl);
    v.truncate(charts::MAX_SERIES);
    v
}

fn relations(tl: &Timeline) -> Markup {
    let x = tl.range();
    let top = busiest(tl);
    let series = |f: &dyn Fn(&super::timeline::RelationPoint) -> Option<f64>| -> Vec<Series> {
        top.iter()
            .map(|r| Series {
                label: r.label.clone(),
                points: r
                    .points
                    .iter()
                    .filter_map(|p| Some((p.ts, f(p)?)))
                    .collect(),
            })
            .collect()
    };
    html! {
        h2 { "Relations" }
        @if tl.relations.is_empty() {
            p.note { "No relation was read or written." }
        } @else {
            table {
                tr {
                    th { "relation" } th { "kind" } th { "size" } th { "position" }
                    th { "coverage" } th { "read" } th { "written" } th { "peak rate" }
                    th { "from shared buffers" }
                }
                @for r in super::by_bytes(tl).into_iter().take(MAX_TABLE_ROWS) {
                    tr {
                        td.q { (t(&r.label)) }
                        td { (t(r.kind.as_deref().unwrap_or("-"))) }
                        td.n { (r.last.size.map_or("-".into(), human_bytes)) }
                        td.n { (pct(r.last.percent)) @if r.last.estimate { " (estimate)" } }
                        td.n { (pct(r.last.coverage.map(|c| c * 100.0))) }
                        td.n { (human_bytes(r.last.bytes_read)) }
                        td.n { (human_bytes(r.last.bytes_written)) }
                        td.n { (human_rate(peak_rate(r))) }
                        td.n { (human_bytes(r.last.from_shared_buffers_bytes)) }
                    }
                }
            }
            (more(MAX_TABLE_ROWS, tl.relations.len()))
            @if tl.relations.len() > top.len() {
                p.note { "The charts show the " (top.len()) " relations with the most bytes." }
            }
            (chart(charts::lines("position in the relation", x, "percent of its size", Some(100.0), &series(&|p| p.percent))))
            (chart(charts::lines("throughput", x, "MiB/s", None, &series(&|p| Some(p.rate_bps / 1048576.0)))))
            (chart(charts::lines("coverage: distinct blocks touched", x, "percent of its size", Some(100.0), &series(&|p| p.coverage.map(|c| c * 100.0)))))
            h3 { "Coverage strips" }
            p.note {
                "What the last progress record of each relation says: the share of its blocks read, "
                "the share passed because shared buffers held it, and the rest, not seen. "
                "Which blocks they were is not in the records."
            }
            @for r in &top {
                @let parts = super::coverage_parts(&r.last);
                @if parts.is_empty() {
                    p.note { (t(&r.label)) ": size not known, no strip." }
                } @else {
                    (chart(charts::strip(&r.label, &parts)))
                }
            }
        }
    }
}

fn backup(tl: &Timeline) -> Markup {
    let x = tl.range();
    if tl.backup.is_empty() {
        return html! {};
    }
    let mib = |b: u64| b as f64 / 1048576.0;
    let streamed = Series {
        label: "streamed".into(),
        points: tl.backup.iter().map(|b| (b.ts, mib(b.streamed))).collect(),
    };
    let total = Series {
        label: "total".into(),
        points: tl
            .backup
            .iter()
            .filter_map(|b| Some((b.ts, mib(b.total?))))
            .collect(),
    };
    let rate = Series {
        label: "rate".into(),
        points: tl
            .backup
            .iter()
            .map(|b| (b.ts, b.rate_bps / 1048576.0))
            .collect(),
    };
    let last = tl.backup.last();
    html! {
        @if let Some(b) = last {
            h2 {
                @if b.method == "basebackup" { "Base backup" } @else { "Backup (" (t(&b.method)) ")" }
                @if let Some(c) = &b.copier { ", copied by " (t(c)) }
            }
        }
        (chart(charts::bands("backup phase", x, &band_rows(&tl.backup_phases, charts::MAX_ROWS))))
        table {
            tr { th { "from" } th { "to" } th { "phase" } }
            @for p in &tl.backup_phases {
                tr { td.n { (secs(p.start)) } td.n { (secs(p.end)) } td { (t(&p.label)) } }
            }
        }
        @if let Some(b) = last {
            p {
                "Last seen: " (t(&b.phase)) ", " (human_bytes(b.streamed))
                @if let Some(total) = b.total { " of " (human_bytes(total)) }
                " (" (pct(b.percent)) ")"
                @if b.ended { ", ended" }
                "."
            }
        }
        (chart(charts::lines("backup bytes", x, "MiB", None, &[streamed, total])))
        (chart(charts::lines("backup rate", x, "MiB/s", None, &[rate])))
    }
}

fn waits(tl: &Timeline) -> Markup {
    let x = tl.range();
    let profile: Vec<BandRow> = wait_profile_rows(tl);
    html! {
        h2 { "Wait events" }
        @if tl.waits.is_empty() {
            p.note { "No status records: no wait event." }
        } @else {
            (chart(charts::bands("wait event (status samples)", x, &band_rows(&tl.waits, charts::MAX_ROWS))))
            table {
                tr { th { "wait event" } th { "time (status samples)" } }
                @for (w, s) in time_by_label(&tl.waits).into_iter().take(MAX_TABLE_ROWS) {
                    tr { td { (t(&w)) } td.n { (secs(s)) } }
                }
            }
        }
        @if !profile.is_empty() {
            (chart(charts::bands("wait profile (most sampled event per interval)", x, &profile)))
        }
        @if let Some(w) = &tl.wait_total {
            h3 { "Wait profile since attach" }
            p.note { (w.samples) " samples at " (w.hz) " Hz over " (secs(w.window_s)) "." }
            table {
                tr { th { "wait event" } th { "share" } th { "seconds" } }
                @for e in &w.events {
                    tr { td { (t(&share_label(e))) } td.n { (pct(Some(e.share * 100.0))) } td.n { (format!("{:.2}", e.seconds)) } }
                }
            }
            @if !w.io_latency.is_empty() {
                table {
                    tr { th { "relation" } th { "fork" } th { "op" } th { "calls" } th { "p50 µs" } th { "p99 µs" } th { "from page cache" } }
                    @for l in &w.io_latency {
                        tr {
                            td.q { (t(&l.relation)) } td { (t(l.fork.as_deref().unwrap_or("-"))) } td { (t(&l.op)) }
                            td.n { (l.count) } td.n { (format!("{:.1}", l.p50_us)) } td.n { (format!("{:.1}", l.p99_us)) }
                            td.n { (pct(l.page_cache_share.map(|s| s * 100.0))) }
                        }
                    }
                }
            }
        }
    }
}

/// From the `waits` records of each interval: the most sampled event held over the
/// interval's window.
fn wait_profile_rows(tl: &Timeline) -> Vec<BandRow> {
    let spans: Vec<super::Span> = tl
        .wait_intervals
        .iter()
        .filter_map(|w| {
            let top = w.events.iter().max_by_key(|e| e.samples)?;
            Some(super::Span {
                label: share_label(top),
                detail: String::new(),
                start: (w.ts - w.window_s).max(0.0),
                end: w.ts,
            })
        })
        .collect();
    band_rows(&spans, charts::MAX_ROWS)
}

fn queries(tl: &Timeline) -> Markup {
    html! {
        @if tl.queries.is_empty() && !tl.active_queries.is_empty() {
            h2 { "Queries (status samples)" }
            table {
                tr { th { "from" } th { "to" } th { "query" } }
                @for q in tl.active_queries.iter().take(MAX_TABLE_ROWS) {
                    tr { td.n { (secs(q.start)) } td.n { (secs(q.end)) } td.q { (t(&q.label)) } }
                }
            }
            (more(MAX_TABLE_ROWS, tl.active_queries.len()))
        }
        @if !tl.queries.is_empty() {
            h2 { "Queries" }
            table {
                tr { th { "pid" } th { "from" } th { "ran" } th { "query" } }
                @for q in tl.queries.iter().take(MAX_TABLE_ROWS) {
                    tr {
                        td.n { (q.pid) } td.n { (secs(q.start)) }
                        td.n { @match q.duration_s { Some(d) => (format!("{d:.3} s")), None => "still running" } }
                        td.q { (t(&q.text)) }
                    }
                }
            }
            (more(MAX_TABLE_ROWS, tl.queries.len()))
        }
        @if !tl.lock_waits.is_empty() {
            h2 { "Lock waits" }
            table {
                tr { th { "pid" } th { "from" } th { "waited" } th { "mode" } th { "on" } }
                @for l in tl.lock_waits.iter().take(MAX_TABLE_ROWS) {
                    tr {
                        td.n { (l.pid) } td.n { (secs(l.start)) }
                        td.n { @match l.duration_s { Some(d) => (format!("{d:.3} s")), None => "still waiting" } }
                        td { (t(&l.mode)) } td.q { (t(&l.object)) }
                    }
                }
            }
            (more(MAX_TABLE_ROWS, tl.lock_waits.len()))
        }
    }
}

fn syscalls(tl: &Timeline) -> Markup {
    let counts = super::syscall_counts(tl);
    html! {
        @if !counts.is_empty() {
            h2 { "System calls (-d)" }
            table {
                tr { th { "call" } th { "count" } th { "bytes asked" } }
                @for (name, n, bytes) in counts.iter().take(MAX_TABLE_ROWS) {
                    tr { td { (t(name)) } td.n { (n) } td.n { (human_bytes(*bytes)) } }
                }
            }
            (more(MAX_TABLE_ROWS, counts.len()))
        }
    }
}

fn events(tl: &Timeline) -> Markup {
    html! {
        h2 { "Events" }
        table {
            tr { th { "events received" } td.n { @match tl.events.or(tl.summary.as_ref().map(|s| s.events)) { Some(n) => (n), None => "-" } } }
            @for (why, n) in &tl.lost { tr { th { "lost: " (t(why)) } td.n { (n) } } }
            @if let Some(s) = &tl.summary {
                tr {
                    th { "at the end" }
                    td {
                        @if s.exited {
                            "the process exited"
                            @if let Some(c) = s.exit_code { " with code " (c) }
                            @if let Some(sig) = s.exit_signal { " on signal " (sig) }
                        } @else { "pg_trace stopped; the process was still running" }
                    }
                }
            }
            @if tl.summary.is_none() {
                tr { th { "at the end" } td { "no summary record: the trace was cut short" } }
            }
            tr { th { "processes" } td { @for (pid, what) in &tl.processes { (pid) " (" (t(what)) ") " } } }
        }
    }
}
