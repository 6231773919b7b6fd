//! What is shown once the traced process has exited: what it read, in one box, until `q`.

use super::{centered, human_bytes, human_duration, truncate, ScreenState, Theme, TraceInfo};
use crate::model::Model;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;

pub fn lines(model: &Model, info: &TraceInfo, width: usize) -> Vec<Line<'static>> {
    let leader = model.procs.get(&model.leader);
    let how = match leader.map(|p| (p.exit_code, p.exit_signal)) {
        Some((_, Some(s))) => format!("killed by signal {s}"),
        Some((Some(c), None)) => format!("exit code {c}"),
        _ => "exited".into(),
    };
    let lost: u64 = model.lost.values().sum();
    let mut out = vec![
        Line::from(format!(
            "pid {} {how} after {} of tracing.",
            info.pid,
            human_duration(info.elapsed_s)
        )),
        Line::from(format!(
            "{} events, {lost} lost; {} files seen.",
            model.events, model.files_seen
        )),
        Line::from(""),
    ];
    let mut rels: Vec<_> = model
        .relations
        .values()
        .filter(|r| r.bytes_read + r.bytes_written > 0)
        .collect();
    rels.sort_by_key(|r| std::cmp::Reverse(r.bytes_read + r.bytes_written));
    if rels.is_empty() {
        out.push(Line::from(
            "No relation was read or written while attached.",
        ));
    }
    let lw = width.saturating_sub(34).max(8);
    for r in rels {
        let reached = r
            .percent()
            .map(|p| format!("{p:.1}%"))
            .unwrap_or_else(|| "?".into());
        let written = if r.bytes_written > 0 {
            format!(" wrote {}", human_bytes(r.bytes_written))
        } else {
            String::new()
        };
        let s = format!(
            "{:<lw$} read {:>10} reached {reached:>6}{written}",
            truncate(&r.id.label, lw),
            human_bytes(r.bytes_read),
        );
        out.push(Line::from(truncate(&s, width)));
    }
    out
}

pub fn draw(
    f: &mut Frame,
    area: Rect,
    model: &Model,
    info: &TraceInfo,
    _st: &ScreenState,
    th: &Theme,
) {
    let w = area.width.saturating_sub(4).min(96);
    let body = lines(model, info, w.saturating_sub(2) as usize);
    let h = (body.len() as u16 + 4).min(area.height);
    let r = centered(area, w, h);
    let mut text = body;
    text.push(Line::from(""));
    text.push(Line::from(vec![
        Span::styled("q", th.key()),
        Span::raw(" quit   "),
        Span::styled("Esc", th.key()),
        Span::raw(" pick another process"),
    ]));
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(th.warn())
        .title(Span::styled(" Process exited — summary ", th.warn()));
    f.render_widget(Clear, r);
    f.render_widget(Paragraph::new(text).block(block), r);
}
