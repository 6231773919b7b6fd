//! The waits panel (`w`): where the traced process's time went, from sampling its wait
//! event: a bar per event for the last 10 s and since attach (CPU is "no wait event
//! set"), its top queries, and the kernel's rows (CPU, off-CPU and run-queue time; the
//! slowest relations by read latency, `ui/sched.rs`), shown as not measured without eBPF.

use super::{truncate, Theme};
use crate::model::waits::{ProcWaits, Profile};
use crate::model::Model;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

/// Event rows at most.
const EVENTS: usize = 8;

fn label(k: &crate::model::waits::EventKey) -> String {
    match k {
        Some(e) => format!("{}:{}", e.class, e.name),
        None => "CPU".into(),
    }
}

fn bar(share: f64, width: usize) -> String {
    let full = ((share.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    format!(
        "{}{} {:>3.0}%",
        "█".repeat(full),
        "·".repeat(width - full),
        100.0 * share
    )
}

pub fn lines(model: &Model, theme: &Theme, width: usize) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    let Some(p): Option<&ProcWaits> = model.waits.procs.get(&model.leader) else {
        out.push(Line::from(if model.waits.hz > 0.0 {
            "no sample yet".to_string()
        } else {
            "not sampled (no memory reading, a replay, or a copier)".to_string()
        }));
        return out;
    };
    let recent = p.recent.profile();
    let total = &p.total;
    let lw = 26.min(width / 3).max(8);
    let bw = (width.saturating_sub(lw + 2 + 2 * 6) / 2).clamp(4, 30);
    out.push(Line::from(format!(
        "{:<lw$}  {:<w$}  {}",
        format!("{} Hz", model.waits.hz),
        "last 10 s",
        "since attach",
        w = bw + 5
    )));
    let share = |p: &Profile, k: &crate::model::waits::EventKey| {
        p.events.get(k).copied().unwrap_or(0) as f64 / p.samples.max(1) as f64
    };
    let mut keys: Vec<_> = Profile::ranked(&total.events)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for (k, _) in Profile::ranked(&recent.events) {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    for k in keys.iter().take(EVENTS) {
        out.push(Line::from(format!(
            "{:<lw$}  {}  {}",
            truncate(&label(k), lw),
            bar(share(&recent, k), bw),
            bar(share(total, k), bw)
        )));
    }
    for (_, q) in total.ranked_queries().into_iter().take(2) {
        let top = Profile::ranked(&q.events)
            .first()
            .map(|(k, n)| {
                format!(
                    "{} {:.0}%",
                    label(k),
                    100.0 * *n as f64 / q.samples.max(1) as f64
                )
            })
            .unwrap_or_default();
        let cpu = q
            .cpu_ns
            .map(|n| format!(", {:.2} s CPU", n as f64 / 1e9))
            .unwrap_or_default();
        let head = format!("{} samples{cpu}, {top}: ", q.samples);
        let text = q.text.as_deref().unwrap_or("");
        out.push(Line::from(format!(
            "query: {head}{}",
            truncate(text, width.saturating_sub(head.len() + 8))
        )));
    }
    let kernel = super::sched::lines(model, theme, width);
    if kernel.is_empty() {
        for what in ["CPU / off-CPU / run-queue", "slowest reads by relation"] {
            out.push(Line::from(vec![
                Span::raw(format!("{what:<lw$}  ")),
                Span::raw("not measured"),
            ]));
        }
    } else {
        out.extend(kernel.into_iter().take(KERNEL_ROWS));
    }
    out
}

/// The kernel's rows at most (scheduler times, the slowest relations by latency).
const KERNEL_ROWS: usize = 6;

/// The rows the kernel's part takes: two "not measured" rows until it measures.
fn kernel_rows(model: &Model) -> usize {
    if model.sched.total(model.leader).is_none() && model.io_latency.is_empty() {
        2
    } else {
        KERNEL_ROWS
    }
}

/// Rows the panel wants (its border included).
pub fn height(model: &Model) -> u16 {
    let events = model.waits.procs.get(&model.leader).map_or(0, |p| {
        p.total
            .events
            .len()
            .max(p.recent.profile().events.len())
            .min(EVENTS)
    });
    (events + 2 + 2 + 1 + kernel_rows(model)) as u16
}

pub fn draw(f: &mut Frame, area: Rect, model: &Model, theme: &Theme) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(" waits (sampled wait events; w hides) ")
        .title_style(theme.title())
        .border_style(theme.border());
    let inner = block.inner(area);
    f.render_widget(block, area);
    let l = lines(model, theme, inner.width as usize);
    f.render_widget(Paragraph::new(l), inner);
}
