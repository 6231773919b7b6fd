//! The relations panel: per relation, across its segments and forks, how far through it the
//! process is, how fast, when it will be done, and a coverage strip — one cell per slice of
//! the relation, shaded by how much of it was read: a sequential scan fills from the left,
//! an index scan scatters.

use super::files::{compact_bytes, compact_rate, progress};
use super::{human_duration, truncate, Focus, ScreenState, Sort, Theme, TraceInfo};
use crate::model::{Model, RelState};
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Row, Table};
use ratatui::Frame;

/// One cell of the strip for a slice `frac` read: blank, light, medium, dark, full.
pub fn shade(frac: f32) -> char {
    if frac <= 0.0 {
        '·'
    } else if frac < 0.34 {
        '░'
    } else if frac < 0.67 {
        '▒'
    } else if frac < 1.0 {
        '▓'
    } else {
        '█'
    }
}

/// The coverage strip of `width` cells. Costs one pass over the relation's bitmap
/// (≤ 2^20 bits), whatever the event rate; only visible rows are drawn.
pub fn strip(r: &RelState, width: usize) -> String {
    let size = r.size.unwrap_or(0).max(r.highest);
    r.coverage
        .slices(size, width)
        .into_iter()
        .map(shade)
        .collect()
}

/// Relations are listed once read or written while attached: a backend has dozens of
/// catalog files open that it is not working on.
fn matches(st: &ScreenState, r: &RelState) -> bool {
    r.touched() && (st.matches(&r.id.label) || st.matches(&r.id.path))
}

pub fn rows<'m>(model: &'m Model, st: &ScreenState) -> Vec<&'m RelState> {
    let mut v: Vec<&RelState> = model
        .relations
        .values()
        .filter(|r| matches(st, r))
        .collect();
    let pct = |r: &RelState| r.percent().unwrap_or(-1.0);
    match st.sort {
        Sort::Recent => v.sort_by(|a, b| b.last_ns.cmp(&a.last_ns).then(a.id.path.cmp(&b.id.path))),
        Sort::Progress => {
            v.sort_by(|a, b| pct(b).total_cmp(&pct(a)).then(a.id.path.cmp(&b.id.path)))
        }
        Sort::Rate => v.sort_by(|a, b| {
            b.rate_bps
                .total_cmp(&a.rate_bps)
                .then(a.id.path.cmp(&b.id.path))
        }),
        Sort::Size => v.sort_by(|a, b| b.size.cmp(&a.size).then(a.id.path.cmp(&b.id.path))),
        Sort::Name => v.sort_by(|a, b| a.id.label.cmp(&b.id.label)),
    }
    v
}

pub fn visible_count(model: &Model, st: &ScreenState) -> usize {
    model.relations.values().filter(|r| matches(st, r)).count()
}

pub fn draw(
    f: &mut Frame,
    area: Rect,
    model: &Model,
    _info: &TraceInfo,
    st: &ScreenState,
    th: &Theme,
) {
    let all = rows(model, st);
    let current = model.current_relation().map(|r| r.id.path.as_str());
    let wide = area.width >= 120;
    let inner_w = area.width.saturating_sub(2) as usize;
    let inner_h = area.height.saturating_sub(3) as usize;
    let skip = st.scroll_relations.min(all.len().saturating_sub(inner_h));
    let longest = all
        .iter()
        .map(|r| r.id.label.chars().count())
        .max()
        .unwrap_or(8);
    // Fixed columns: mark, kind, size, done, progress, rate, ETA (+ read when wide).
    // Narrow: no kind column (an index shows as `name → table` anyway) and the percentage
    // without a bar (the coverage strip is the bar).
    let show_kind = area.width >= 100;
    let bar_w: usize = if wide { 18 } else { 5 };
    let fixed =
        1 + if show_kind { 6 } else { 0 } + 7 + 7 + bar_w + 8 + 7 + if wide { 12 } else { 0 };
    let spacing = 7 + 2 * usize::from(wide) + usize::from(show_kind);
    let obj_w = longest
        .clamp(12, 40)
        .min(inner_w.saturating_sub(fixed + spacing + 14).max(8));
    let strip_w = inner_w.saturating_sub(fixed + spacing + obj_w);
    let body: Vec<Row> = all
        .iter()
        .skip(skip)
        .take(inner_h)
        .map(|r| {
            let is_current = current == Some(r.id.path.as_str());
            let mut cells = vec![
                Cell::from(if is_current { "▶" } else { " " }),
                Cell::from(truncate(&r.id.label, obj_w)),
            ];
            if show_kind {
                cells.push(Cell::from(r.id.kind.unwrap_or("?")));
            }
            cells.extend([
                Cell::from(r.size.map(compact_bytes).unwrap_or_else(|| "?".into())),
                Cell::from(compact_bytes(
                    r.coverage.touched_bytes().min(r.size.unwrap_or(u64::MAX)),
                )),
            ]);
            if wide {
                cells.push(Cell::from(compact_bytes(r.bytes_read)));
                // Shared-buffer hits (USDT): a scan served from memory is not the disk's.
                cells.push(Cell::from(
                    r.hit_ratio()
                        .map(|h| format!("{:.0}%", h * 100.0))
                        .unwrap_or_else(|| "-".into()),
                ));
            }
            let bar = progress(r.percent(), bar_w, th);
            let bar = if r.estimate {
                super::files::estimated(bar)
            } else {
                bar
            };
            cells.push(Cell::from(bar));
            // A relation being built reads nothing: its rate is what is written, marked.
            cells.push(Cell::from(if r.bytes_read == 0 && r.bytes_written > 0 {
                match compact_rate(r.write_rate_bps) {
                    none if none == "-" => none,
                    w => format!("w{w}"),
                }
            } else {
                compact_rate(r.progress_bps())
            }));
            // A scan completed from shared buffers has nothing left to wait for.
            let eta = r.eta_s().filter(|_| r.completed_ns.is_none());
            cells.push(Cell::from(
                eta.map(human_duration).unwrap_or_else(|| "-".into()),
            ));
            // `· 16 % from shared buffers` before the strip: the percent's other half.
            // Half the strip at most: the strip is the picture of the scan.
            let note = r
                .shared_buffers_note_within((strip_w / 2).saturating_sub(3))
                .map(|n| format!("· {n} "))
                .unwrap_or_default();
            let rest = strip_w.saturating_sub(note.chars().count());
            cells.push(Cell::from(Line::from(vec![
                Span::raw(note),
                Span::styled(strip(r, rest), th.strip()),
            ])));
            let style = if is_current {
                th.current()
            } else {
                Style::default()
            };
            Row::new(cells).style(style)
        })
        .collect();
    let mut header = vec!["", "relation"];
    if show_kind {
        header.push("kind");
    }
    header.extend(["size", "done"]);
    if wide {
        header.extend(["read", "hit"]);
    }
    header.extend(["%", "rate", "ETA", "coverage"]);
    let mut widths = vec![Constraint::Length(1), Constraint::Length(obj_w as u16)];
    if show_kind {
        widths.push(Constraint::Length(6));
    }
    widths.extend([Constraint::Length(7), Constraint::Length(7)]);
    if wide {
        widths.extend([Constraint::Length(8), Constraint::Length(4)]);
    }
    widths.extend([
        Constraint::Length(bar_w as u16),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Fill(1),
    ]);
    let idle = model.relations.values().filter(|r| !r.touched()).count();
    let title = format!(
        " Relations: {} worked on{}{} ",
        all.len(),
        if idle > 0 {
            format!(", {idle} open but untouched")
        } else {
            String::new()
        },
        if skip > 0 {
            format!("  ↑{skip}")
        } else {
            String::new()
        }
    );
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(if st.focus == Focus::Relations {
            th.border_focused()
        } else {
            th.border()
        })
        .title(Span::styled(title, th.title()));
    f.render_widget(
        Table::new(body, widths)
            .header(Row::new(header).style(th.header_row()))
            .column_spacing(1)
            .block(block),
        area,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shades() {
        assert_eq!(shade(0.0), '·');
        assert_eq!(shade(0.2), '░');
        assert_eq!(shade(0.5), '▒');
        assert_eq!(shade(0.9), '▓');
        assert_eq!(shade(1.0), '█');
    }
}
