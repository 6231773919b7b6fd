//! The kernel's rows of the waits panel: time on a CPU, off it (and of that in D state),
//! and waiting for one, for the last interval and since attach; the slowest relations by
//! read latency (`--io-latency`), with their page-cache share; the exact waits of the last
//! interval (`--exact-waits`). Pure: lines from the model, for whichever panel holds them.

use super::{truncate, Theme};
use crate::model::sched::SchedTimes;
use crate::model::Model;
use crate::trace::IoOp;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

/// Relations listed by read latency.
const SLOWEST: usize = 3;

fn times_line(label: &str, t: &SchedTimes, theme: &Theme) -> Line<'static> {
    let all = (t.running_ns + t.off_cpu_ns() + t.runqueue_ns).max(1) as f64;
    let pct = |ns: u64| 100.0 * ns as f64 / all;
    Line::from(vec![
        Span::styled(format!("{label:<12}"), theme.label()),
        Span::styled(format!("CPU {:>3.0}%", pct(t.running_ns)), theme.value()),
        Span::raw(format!(
            "  off-CPU {:>3.0}% (D {:.0}%)",
            pct(t.off_cpu_ns()),
            pct(t.blocked_ns)
        )),
        Span::raw(format!("  run queue {:.0}%", pct(t.runqueue_ns))),
    ])
}

/// The rows, at most `width` wide; empty when the kernel measured nothing.
pub fn lines(model: &Model, theme: &Theme, width: usize) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    let pid = model.leader;
    if let Some(t) = model.sched.interval(pid) {
        out.push(times_line("last tick", &t, theme));
    }
    if let Some(t) = model.sched.total(pid) {
        out.push(times_line("since start", &t, theme));
    }
    let mut reads: Vec<_> = model
        .io_latency
        .total()
        .into_iter()
        .filter(|r| r.op == IoOp::Read)
        .collect();
    reads.sort_by(|a, b| b.p99_us.total_cmp(&a.p99_us));
    let lw = width.saturating_sub(64).max(8);
    for r in reads.iter().take(SLOWEST) {
        let cache = r
            .page_cache_share
            .map(|c| format!("{:>3.0}% page cache", c * 100.0))
            .unwrap_or_else(|| "page cache ?".into());
        let s = format!(
            "{:<lw$} {:>7} reads p50 {:>8.1}µs p99 {:>8.1}µs {cache}",
            truncate(&crate::text::visible(&r.relation), lw),
            r.count,
            r.p50_us,
            r.p99_us
        );
        out.push(Line::from(truncate(&s, width)));
    }
    let major = model.exact_waits.major.unwrap_or(0);
    let mut exact: Vec<_> = model.exact_waits.interval().iter().collect();
    exact.sort_by_key(|(_, c)| std::cmp::Reverse(c.ns));
    for (&info, c) in exact.iter().take(SLOWEST) {
        let name = crate::process::status::waits::describe(major, info)
            .map(|(class, ev)| format!("{class}/{ev}"))
            .unwrap_or_else(|| format!("{info:#x}"));
        let s = format!(
            "exact {:<24} {:>5} waits {:>8.3}s",
            truncate(&name, 24),
            c.count,
            c.ns as f64 / 1e9
        );
        out.push(Line::from(truncate(&s, width)));
    }
    out
}

/// The rows in a bordered box of their own (until they join the waits panel).
pub fn draw(f: &mut Frame, area: Rect, model: &Model, theme: &Theme) {
    let rows = lines(model, theme, area.width.saturating_sub(2) as usize);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border())
        .title(Span::styled(" CPU and I/O latency ", theme.title()));
    f.render_widget(Paragraph::new(rows).block(block), area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{Event, EventKind};

    struct NoNames;
    impl crate::model::Namer for NoNames {
        fn name(&mut self, path: &str) -> crate::model::Named {
            crate::model::Named {
                relpath: Some(path.to_string()),
                class: "other",
                label: path.to_string(),
                relation: None,
            }
        }
        fn relation_size(&mut self, _: &crate::model::RelInfo) -> Option<u64> {
            None
        }
        fn file_size(&mut self, _: &str) -> Option<u64> {
            None
        }
    }

    #[test]
    fn rows_from_a_scripted_model() {
        let mut m = Model::new(7, 1 << 30);
        let mut n = NoNames;
        assert!(lines(&m, &Theme::mono(), 100).is_empty());
        let ev = |ts, kind| Event {
            ts_ns: ts,
            pid: 7,
            kind,
        };
        m.apply(
            &ev(
                1,
                EventKind::Open {
                    syscall: crate::trace::Syscall::Openat,
                    dirfd: None,
                    path: "base/5/16384".into(),
                    flags: 0,
                    fd: 9,
                },
            ),
            &mut n,
        );
        m.apply(
            &ev(
                2,
                EventKind::SchedTimes {
                    running_ns: 400,
                    runqueue_ns: 100,
                    sleeping_ns: 300,
                    blocked_ns: 200,
                },
            ),
            &mut n,
        );
        m.apply(
            &ev(
                3,
                EventKind::IoLatency {
                    op: IoOp::Read,
                    syscall_nr: 17,
                    fd: 9,
                    latency_ns: 900_000,
                    result: 8192,
                    disk: Some(true),
                    owner: None,
                },
            ),
            &mut n,
        );
        m.tick(10, &mut n);
        let text: Vec<String> = lines(&m, &Theme::mono(), 100)
            .iter()
            .map(|l| l.spans.iter().map(|s| s.content.to_string()).collect())
            .collect();
        assert!(text[0].contains("CPU  40%"), "{text:?}");
        assert!(text[0].contains("off-CPU  50% (D 20%)"), "{text:?}");
        assert!(text[2].contains("base/5/16384"), "{text:?}");
        assert!(text[2].contains("0% page cache"), "{text:?}");
    }
}
