//! The key bar at the bottom and the `?` overlay listing every key.

use super::{centered, truncate, ScreenState, Theme, TraceInfo};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;

/// Every key of the trace screen, as the overlay and the README list them.
pub const TRACE_KEYS: &[(&str, &str)] = &[
    (
        "q  Ctrl-C",
        "quit, detaching cleanly: the traced process runs on",
    ),
    ("Esc", "detach, and pick another process"),
    ("p", "pause the display (capture goes on; a key redraws)"),
    ("s", "cycle the sort: recent, progress, rate, size, name"),
    ("/", "filter by name; Enter keeps the filter, Esc clears it"),
    ("Tab  Shift-Tab", "move the focus: files, relations, log"),
    ("↑ ↓  PgUp PgDn", "scroll the focused panel"),
    (
        "Home End",
        "first / last rows of the focused panel (log: oldest / newest)",
    ),
    ("l", "show or hide the log panel"),
    (
        "w",
        "show or hide the waits panel: wait events sampled, last 10 s and since attach",
    ),
    ("?", "show or hide this help"),
];

pub const PICKER_KEYS: &[(&str, &str)] = &[
    ("type", "filter by pid, type, user, database or activity"),
    ("Backspace", "edit the filter"),
    ("↑ ↓  PgUp PgDn", "choose a process"),
    ("Enter", "attach to it"),
    ("Esc", "clear the filter; quit when it is empty"),
    ("q  Ctrl-C", "quit (q only while the filter is empty)"),
];

pub fn draw_keybar(f: &mut Frame, area: Rect, st: &ScreenState, exited: bool, th: &Theme) {
    let keys: Vec<(&str, &str)> = if st.editing_filter {
        vec![("Enter", "keep filter"), ("Esc", "clear filter")]
    } else {
        let mut k = vec![("q", "quit"), ("Esc", "picker")];
        if !exited {
            k.push(("p", if st.paused { "resume" } else { "pause" }));
        }
        k.extend([
            ("s", "sort"),
            ("/", "filter"),
            ("Tab", "focus"),
            ("l", "log"),
            ("?", "help"),
        ]);
        k
    };
    let mut spans = Vec::new();
    let mut used = 0;
    for (key, what) in keys {
        let n = key.chars().count() + what.chars().count() + 3;
        if used + n > area.width as usize {
            break;
        }
        used += n;
        spans.push(Span::styled(key.to_string(), th.key()));
        spans.push(Span::raw(format!(" {what}  ")));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn key_lines<'a>(keys: &[(&'a str, &'a str)], th: &Theme, w: usize) -> Vec<Line<'a>> {
    keys.iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:>15}  "), th.key()),
                Span::raw(truncate(what, w.saturating_sub(17))),
            ])
        })
        .collect()
}

pub fn draw(f: &mut Frame, area: Rect, info: &TraceInfo, _st: &ScreenState, th: &Theme) {
    let r = centered(area, 86, 22);
    let w = r.width.saturating_sub(2) as usize;
    let mut lines = vec![Line::from(Span::styled("Keys", th.title()))];
    lines.extend(key_lines(TRACE_KEYS, th, w));
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled("Panels", th.title())));
    lines.push(Line::from("▶ the file and relation read or written last."));
    lines.push(Line::from(
        "coverage: a cell per slice; · unread, ░▒▓ partly, █ fully read.",
    ));
    if !info.limitations.is_empty() {
        lines.push(Line::from(""));
        lines.push(Line::from(Span::styled(
            format!("Attached via {}; what it cannot see:", info.methods),
            th.title(),
        )));
        for l in &info.limitations {
            lines.push(Line::from(Span::styled(format!("  {l}"), th.warn())));
        }
    }
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(th.border_focused())
        .title(Span::styled(" Help — ? or Esc closes ", th.title()));
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block),
        r,
    );
}

pub fn draw_picker_help(f: &mut Frame, area: Rect, th: &Theme) {
    let r = centered(area, 76, 10);
    let w = r.width.saturating_sub(2) as usize;
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(th.border_focused())
        .title(Span::styled(" Picker keys — ? closes ", th.title()));
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(key_lines(PICKER_KEYS, th, w)).block(block),
        r,
    );
}
