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

pub use crate::text::{compact_bytes, compact_rate};

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

/// `▕████░░ ~61%`: the percentage of a guessed figure (procfs backend), same width.
pub fn estimated(mut line: Line<'_>) -> Line<'_> {
    if let Some(last) = line.spans.last_mut() {
        if last.content.ends_with('%') {
            last.content = format!("{:>5}", format!("~{}", last.content.trim_start())).into();
        }
    }
    line
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

/// What the cells of one frame depend on besides their row.
struct Ctx<'a> {
    model: &'a Model,
    /// The file read or written last: marked.
    current: Option<(crate::trace::Pid, i32)>,
    now_ns: u64,
    th: &'a Theme,
    /// 120 columns or more: offset, read and written too.
    wide: bool,
    /// Followers have files open (or the screen is wide): whose file it is.
    show_pid: bool,
    /// The flexible columns, sized from what the fixed ones leave.
    obj_w: u16,
    bar_w: u16,
}

/// One column of the files table: its header, when it is shown, its width (the object and
/// the bar flex: 0 until sized), and its cell.
struct Column {
    header: &'static str,
    shown: fn(&Ctx) -> bool,
    width: fn(&Ctx) -> u16,
    /// Sized from what is left, not fixed.
    flex: bool,
    cell: fn(&Ctx, &FileEntry) -> Cell<'static>,
}

fn always(_: &Ctx) -> bool {
    true
}

fn wide(c: &Ctx) -> bool {
    c.wide
}

fn bytes_or(v: Option<u64>, none: &str) -> Cell<'static> {
    Cell::from(v.map(compact_bytes).unwrap_or_else(|| none.into()))
}

const COLUMNS: &[Column] = &[
    Column {
        header: "",
        shown: always,
        width: |_| 1,
        flex: false,
        // The current file is marked, not only highlighted: it shows without colour.
        cell: |c, f| {
            Cell::from(if c.current == Some((f.pid, f.fd)) {
                "▶"
            } else {
                " "
            })
        },
    },
    Column {
        header: "fd",
        shown: always,
        width: |_| 4,
        flex: false,
        cell: |_, f| Cell::from(f.fd.to_string()),
    },
    Column {
        header: "pid",
        shown: |c| c.show_pid,
        width: |_| 8,
        flex: false,
        cell: |c, f| {
            Cell::from(if f.pid == c.model.leader {
                f.pid.to_string()
            } else if f.via_io_worker {
                format!("{}io", f.pid)
            } else {
                format!("{}w", f.pid)
            })
        },
    },
    Column {
        header: "object",
        shown: always,
        width: |c| c.obj_w,
        flex: true,
        cell: |c, f| Cell::from(truncate(label(f), c.obj_w as usize)),
    },
    Column {
        header: "fork",
        shown: always,
        width: |_| 6,
        flex: false,
        cell: |_, f| Cell::from(fork_segment(f)),
    },
    Column {
        header: "size",
        shown: always,
        width: |_| 7,
        flex: false,
        cell: |_, f| bytes_or(f.size, "?"),
    },
    Column {
        header: "offset",
        shown: wide,
        width: |_| 7,
        flex: false,
        // A directory's position is a readdir cookie, not an offset.
        // A relation file's position is not progress: only reads say where it is.
        cell: |_, f| bytes_or(f.offset().filter(|_| f.size.is_some()), "-"),
    },
    Column {
        header: "read",
        shown: wide,
        width: |_| 7,
        flex: false,
        cell: |_, f| Cell::from(compact_bytes(f.bytes_read)),
    },
    Column {
        header: "written",
        shown: wide,
        width: |_| 7,
        flex: false,
        cell: |_, f| Cell::from(compact_bytes(f.bytes_written)),
    },
    Column {
        header: "progress",
        shown: always,
        width: |c| c.bar_w,
        flex: true,
        // Untouched since attach: the position is wherever smgr's size probe (lseek to
        // the end) left it, not progress.
        cell: |c, f| {
            if f.named.relation.is_some() && !f.read_since_attach() {
                return Cell::from(Span::styled("not read since attach", c.th.label()));
            }
            let pct = if f.last_ns == 0 { None } else { f.percent() };
            let bar = progress(pct, c.bar_w as usize, c.th);
            Cell::from(if f.estimate { estimated(bar) } else { bar })
        },
    },
    Column {
        header: "rate",
        shown: always,
        width: |_| 8,
        flex: false,
        cell: |_, f| Cell::from(compact_rate(f.rate_bps)),
    },
    Column {
        header: "last op",
        shown: always,
        width: |c| if c.wide { 16 } else { 13 },
        flex: false,
        cell: |c, f| {
            Cell::from(match f.last_op {
                Some(op) => format!(
                    "{} {}",
                    op.name(),
                    human_age(c.now_ns.saturating_sub(f.last_ns))
                ),
                None => "-".into(),
            })
        },
    },
];

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
    let inner_h = area.height.saturating_sub(3) as usize;
    let skip = st.scroll_files.min(rows_all.len().saturating_sub(inner_h));
    let wide = area.width >= 120;
    let mut ctx = Ctx {
        model,
        current,
        now_ns: info.now_ns,
        th,
        wide,
        show_pid: wide || model.files.keys().any(|(p, _)| *p != model.leader),
        obj_w: 0,
        bar_w: 0,
    };
    let cols: Vec<&Column> = COLUMNS.iter().filter(|c| (c.shown)(&ctx)).collect();
    // Fixed columns first; then the object gets what it needs (up to 48 cells) and the
    // progress bar the rest.
    let fixed: usize = cols
        .iter()
        .filter(|c| !c.flex)
        .map(|c| (c.width)(&ctx) as usize)
        .sum();
    let inner_w = area.width.saturating_sub(2) as usize;
    let avail = inner_w.saturating_sub(fixed + cols.len() - 1);
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
    ctx.obj_w = obj_w as u16;
    ctx.bar_w = bar_w as u16;
    let body: Vec<Row> = rows_all
        .iter()
        .skip(skip)
        .take(inner_h)
        .map(|fe| {
            let cells: Vec<Cell> = cols.iter().map(|c| (c.cell)(&ctx, fe)).collect();
            let style = if current == Some((fe.pid, fe.fd)) {
                th.current()
            } else {
                Style::default()
            };
            Row::new(cells).style(style)
        })
        .collect();
    let mut widths: Vec<Constraint> = cols
        .iter()
        .map(|c| Constraint::Length((c.width)(&ctx)))
        .collect();
    if avail > obj_w + bar_w + 1 {
        widths.push(Constraint::Fill(1));
    }
    let header: Vec<&str> = cols.iter().map(|c| c.header).collect();
    let title = format!(
        " Files: {} open{}{}  sort {}{} ",
        model.files.len(),
        if rows_all.len() != model.files.len() {
            format!(", {} shown", rows_all.len())
        } else {
            String::new()
        },
        // The /proc backend's bytes that no sample tied to a file.
        model
            .credit
            .unattributed
            .map(|u| format!(", {}", crate::model::credit::short_words(u)))
            .unwrap_or_default(),
        st.sort.name(),
        if skip > 0 {
            format!("  ↑{skip}")
        } else {
            String::new()
        },
    );
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(if st.focus == Focus::Files {
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
