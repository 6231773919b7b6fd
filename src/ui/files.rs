//! The files panel: every file the traced processes have open, what it is, where they are
//! in it, how fast they move, and what they did last.

use super::{human_age, truncate, Focus, ScreenState, Sort, Theme, TraceInfo};
use crate::model::{FileEntry, Model};
use crate::pgdata::relfile::Fork;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Row, Table};
use ratatui::Frame;

/// `300.5M`, `8.0K`, `512B`: table cells are narrow.
pub fn compact_bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}B")
    } else if v >= 100.0 {
        format!("{v:.0}{}", U[i])
    } else {
        format!("{v:.1}{}", U[i])
    }
}

pub fn compact_rate(bps: f64) -> String {
    if bps < 0.5 {
        "-".into()
    } else {
        format!("{}/s", compact_bytes(bps as u64))
    }
}

/// `▕██████░░░░ 61%`: a bar of `width` cells and the percentage.
pub fn progress<'a>(pct: Option<f64>, width: usize, th: &Theme) -> Line<'a> {
    let Some(p) = pct else {
        return Line::from(Span::styled("-".to_string(), th.label()));
    };
    let p = p.clamp(0.0, 100.0);
    let bar = width.saturating_sub(5);
    let full = ((p / 100.0) * bar as f64).round() as usize;
    let mut spans = Vec::new();
    if bar > 0 {
        spans.push(Span::styled("█".repeat(full.min(bar)), th.bar_done()));
        spans.push(Span::styled("░".repeat(bar - full.min(bar)), th.bar_todo()));
    }
    spans.push(Span::raw(format!("{:>4}%", p.floor() as u64)));
    Line::from(spans)
}

/// `main.3`, `fsm`, `vm.1`; empty for files that are not relation forks.
pub fn fork_segment(f: &FileEntry) -> String {
    match &f.named.relation {
        Some(r) => {
            let fork = if r.fork == Fork::Main {
                "main"
            } else {
                r.fork.as_str()
            };
            if r.segment > 0 {
                format!("{fork}.{}", r.segment)
            } else {
                fork.to_string()
            }
        }
        None => String::new(),
    }
}

/// The object; the data directory itself has an empty relative path.
pub fn label(f: &FileEntry) -> &str {
    if f.named.label.is_empty() {
        "(data directory)"
    } else {
        &f.named.label
    }
}

fn matches(st: &ScreenState, f: &FileEntry) -> bool {
    st.matches(&f.named.label) || st.matches(&f.path)
}

/// The rows in display order.
pub fn rows<'m>(model: &'m Model, st: &ScreenState) -> Vec<&'m FileEntry> {
    let mut v: Vec<&FileEntry> = model.files.values().filter(|f| matches(st, f)).collect();
    let key_pct = |f: &FileEntry| f.percent().unwrap_or(-1.0);
    match st.sort {
        Sort::Recent => v.sort_by(|a, b| {
            b.last_ns
                .cmp(&a.last_ns)
                .then(b.opened_ns.cmp(&a.opened_ns))
                .then(a.fd.cmp(&b.fd))
        }),
        Sort::Progress => v.sort_by(|a, b| key_pct(b).total_cmp(&key_pct(a)).then(a.fd.cmp(&b.fd))),
        Sort::Rate => v.sort_by(|a, b| b.rate_bps.total_cmp(&a.rate_bps).then(a.fd.cmp(&b.fd))),
        Sort::Size => v.sort_by(|a, b| b.size.cmp(&a.size).then(a.fd.cmp(&b.fd))),
        Sort::Name => v.sort_by(|a, b| {
            a.named
                .label
                .cmp(&b.named.label)
                .then(fork_segment(a).cmp(&fork_segment(b)))
        }),
    }
    v
}

pub fn draw(
    f: &mut Frame,
    area: Rect,
    model: &Model,
    info: &TraceInfo,
    st: &ScreenState,
    th: &Theme,
) {
    let rows_all = rows(model, st);
    let current = model.current_file().map(|c| (c.pid, c.fd));
    let wide = area.width >= 120;
    let followers = model.files.keys().any(|(p, _)| *p != model.leader);
    let inner_h = area.height.saturating_sub(3) as usize;
    let skip = st.scroll_files.min(rows_all.len().saturating_sub(inner_h));
    let focused = st.focus == Focus::Files;
    let title = format!(
        " Files: {} open{}  sort {}{} ",
        model.files.len(),
        if rows_all.len() != model.files.len() {
            format!(", {} shown", rows_all.len())
        } else {
            String::new()
        },
        st.sort.name(),
        if skip > 0 {
            format!("  ↑{skip}")
        } else {
            String::new()
        },
    );
    let show_pid = followers || wide;
    // Fixed columns; then the object gets what it needs (up to 48 cells) and the progress
    // bar the rest.
    let last_w: usize = if wide { 16 } else { 13 };
    let fixed =
        1 + 4 + if show_pid { 8 } else { 0 } + 6 + 7 + if wide { 21 } else { 0 } + 8 + last_w;
    let ncols = 8 + if show_pid { 1 } else { 0 } + if wide { 3 } else { 0 };
    let inner_w = area.width.saturating_sub(2) as usize;
    let avail = inner_w.saturating_sub(fixed + ncols - 1);
    let longest = rows_all
        .iter()
        .map(|f| f.named.label.chars().count())
        .max()
        .unwrap_or(8);
    let min_bar = if avail >= 60 { 16 } else { 10 };
    let obj_max = if avail >= 80 { 48 } else { 32 };
    let obj_w = longest
        .clamp(12, obj_max)
        .min(avail.saturating_sub(min_bar));
    // What a wide terminal has left over stays blank at the right rather than stretching
    // the columns apart.
    let bar_w = avail.saturating_sub(obj_w).min(50);
    let mut header = vec!["", "fd"];
    if show_pid {
        header.push("pid");
    }
    header.extend(["object", "fork", "size"]);
    if wide {
        header.extend(["offset", "read", "written"]);
    }
    header.extend(["progress", "rate", "last op"]);
    let body: Vec<Row> = rows_all
        .iter()
        .skip(skip)
        .take(inner_h)
        .map(|fe| {
            let is_current = current == Some((fe.pid, fe.fd));
            let mark = if is_current { "▶" } else { " " };
            let mut cells: Vec<Cell> = vec![Cell::from(mark), Cell::from(fe.fd.to_string())];
            if show_pid {
                let pid = if fe.pid == model.leader {
                    fe.pid.to_string()
                } else if fe.via_io_worker {
                    format!("{}io", fe.pid)
                } else {
                    format!("{}w", fe.pid)
                };
                cells.push(Cell::from(pid));
            }
            cells.push(Cell::from(truncate(label(fe), obj_w)));
            cells.push(Cell::from(fork_segment(fe)));
            cells.push(Cell::from(
                fe.size.map(compact_bytes).unwrap_or_else(|| "?".into()),
            ));
            if wide {
                // A directory's position is a readdir cookie, not an offset.
                let off = fe
                    .last_offset
                    .map(|o| o + fe.last_len)
                    .or(fe.pos)
                    .filter(|_| fe.size.is_some());
                cells.push(Cell::from(
                    off.map(compact_bytes).unwrap_or_else(|| "-".into()),
                ));
                cells.push(Cell::from(compact_bytes(fe.bytes_read)));
                cells.push(Cell::from(compact_bytes(fe.bytes_written)));
            }
            // Untouched since attach: the position is wherever smgr's size probe (lseek
            // to the end) left it, not progress.
            let pct = if fe.last_ns == 0 { None } else { fe.percent() };
            cells.push(Cell::from(progress(pct, bar_w, th)));
            cells.push(Cell::from(compact_rate(fe.rate_bps)));
            let last = match fe.last_op {
                Some(op) => format!(
                    "{} {}",
                    op.name(),
                    human_age(info.now_ns.saturating_sub(fe.last_ns))
                ),
                None => "-".into(),
            };
            cells.push(Cell::from(last));
            let style = if is_current {
                th.current()
            } else {
                Style::default()
            };
            Row::new(cells).style(style)
        })
        .collect();
    // Fixed columns first; the object takes what is left.
    let mut widths = vec![Constraint::Length(1), Constraint::Length(4)];
    if show_pid {
        widths.push(Constraint::Length(8));
    }
    widths.push(Constraint::Length(obj_w as u16));
    widths.push(Constraint::Length(6));
    widths.push(Constraint::Length(7));
    if wide {
        widths.extend([
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(7),
        ]);
    }
    widths.extend([
        Constraint::Length(bar_w as u16),
        Constraint::Length(8),
        Constraint::Length(last_w as u16),
    ]);
    if avail > obj_w + bar_w + 1 {
        widths.push(Constraint::Fill(1));
    }
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(if focused {
            th.border_focused()
        } else {
            th.border()
        })
        .title(Span::styled(
            truncate(&title, area.width.saturating_sub(2) as usize),
            th.title(),
        ));
    let table = Table::new(body, widths)
        .header(Row::new(header).style(th.header_row()))
        .column_spacing(1)
        .block(block);
    f.render_widget(table, area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact() {
        assert_eq!(compact_bytes(512), "512B");
        assert_eq!(compact_bytes(8192), "8.0K");
        assert_eq!(compact_bytes(315_097_088), "300M");
        assert_eq!(compact_rate(0.0), "-");
    }
}
