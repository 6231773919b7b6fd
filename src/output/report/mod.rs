//! `pg_trace report`: a trace's records turned into something to read later, away from
//! the host: one self-contained HTML page (`html.rs`, charts by plotters in
//! `charts.rs`), a plain-text summary for a ticket (`text.rs`), or Chrome trace-event
//! JSON for the Perfetto UI (`perfetto.rs`). All three render the same fold of the
//! records (`timeline.rs`). Pure: records in, bytes out.

pub mod charts;
pub mod html;
pub mod perfetto;
pub mod text;
pub mod timeline;

use crate::output::record::Record;
use std::collections::BTreeMap;
use std::io::{self, Write};
pub use timeline::{Span, Timeline};

/// What `pg_trace report` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Html,
    Text,
    Perfetto,
}

/// Render `records` (a trace, as line mode's JSON has them) in `format`.
pub fn write(out: &mut dyn Write, records: &[Record], format: ReportFormat) -> io::Result<()> {
    let t = Timeline::from_records(records);
    match format {
        ReportFormat::Html => out.write_all(html::render(&t).as_bytes()),
        ReportFormat::Text => out.write_all(text::render(&t).as_bytes()),
        ReportFormat::Perfetto => perfetto::write(out, &t),
    }
}

/// Start and end of each time something held.
type Intervals = Vec<(f64, f64)>;

/// Spans grouped by label, the label that held longest first; past `max` rows the rest
/// are one row, `other`.
pub fn band_rows(spans: &[Span], max: usize) -> Vec<charts::BandRow> {
    // Per label: seconds held, and when.
    let mut by: BTreeMap<&str, (f64, Intervals)> = BTreeMap::new();
    for s in spans {
        let e = by.entry(&s.label).or_default();
        e.0 += (s.end - s.start).max(0.0);
        e.1.push((s.start, s.end));
    }
    let mut rows: Vec<(&str, (f64, Intervals))> = by.into_iter().collect();
    rows.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0).then(a.0.cmp(b.0)));
    let mut out: Vec<charts::BandRow> = Vec::new();
    for (i, (label, (_, spans))) in rows.into_iter().enumerate() {
        if i < max {
            out.push(charts::BandRow {
                label: label.to_string(),
                spans,
            });
        } else if i == max {
            out.push(charts::BandRow {
                label: "other".to_string(),
                spans,
            });
        } else if let Some(last) = out.last_mut() {
            last.spans.extend(spans);
        }
    }
    out
}

/// Seconds spent under each label, longest first.
pub fn time_by_label(spans: &[Span]) -> Vec<(String, f64)> {
    let mut by: BTreeMap<&str, f64> = BTreeMap::new();
    for s in spans {
        *by.entry(&s.label).or_default() += (s.end - s.start).max(0.0);
    }
    let mut v: Vec<(String, f64)> = by.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// A relation's read rate: the highest of its samples.
pub fn peak_rate(r: &timeline::RelationSeries) -> f64 {
    r.points
        .iter()
        .map(|p| p.rate_bps)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max)
}

/// The relations, the most bytes read and written first (then in the order seen).
pub fn by_bytes(tl: &Timeline) -> Vec<&timeline::RelationSeries> {
    let mut v: Vec<_> = tl.relations.iter().collect();
    v.sort_by_key(|r| std::cmp::Reverse(r.last.bytes_read.saturating_add(r.last.bytes_written)));
    v
}

/// Per system call (or event kind) of `-d`: how many, and the bytes they asked for; the
/// most frequent first.
pub fn syscall_counts(tl: &Timeline) -> Vec<(String, u64, u64)> {
    let mut by: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for s in &tl.syscalls {
        let e = by.entry(&s.name).or_default();
        e.0 += 1;
        e.1 = e.1.saturating_add(s.bytes.unwrap_or(0));
    }
    let mut v: Vec<(String, u64, u64)> = by
        .into_iter()
        .map(|(k, (n, b))| (k.to_string(), n, b))
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// Seconds, as a report writes them: `12.3 s`.
pub fn secs(s: f64) -> String {
    format!("{s:.1} s")
}

/// A percentage of 0–100 (or a share of 0–1 with `share`), `-` when unknown.
pub fn pct(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite())
        .map_or_else(|| "-".to_string(), |v| format!("{v:.1} %"))
}

#[cfg(test)]
mod tests;

/// A coverage strip's parts from a relation's last progress record, in percent of its
/// size: blocks read, blocks passed because shared buffers held them, the rest not seen.
/// Empty when its size is not known.
pub fn coverage_parts(p: &crate::output::record::ProgressRecord) -> Vec<(String, f64)> {
    let Some(size) = p.size.filter(|s| *s > 0) else {
        return Vec::new();
    };
    let covered = p
        .coverage
        .filter(|c| c.is_finite())
        .unwrap_or(0.0)
        .clamp(0.0, 1.0)
        * 100.0;
    let shared = (p.from_shared_buffers_bytes as f64 / size as f64 * 100.0).clamp(0.0, covered);
    vec![
        ("read".to_string(), covered - shared),
        ("in shared buffers".to_string(), shared),
        ("not seen".to_string(), 100.0 - covered),
    ]
}
