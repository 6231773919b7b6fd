//! The process picker: every PostgreSQL process on the host, grouped by cluster; type to
//! filter, Enter to attach.

use super::{truncate, truncate_left, Theme};
use crate::process::list::{state_name, PgCluster, PgProcess};
use ratatui::layout::{Constraint, Layout};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PickerState {
    pub filter: String,
    /// The chosen process, kept by pid across refreshes.
    pub selected: Option<i32>,
    /// Why the last attach failed, shown until the next key.
    pub message: Option<String>,
    pub show_help: bool,
    /// A standing note under the title (not running as root, say).
    pub note: Option<String>,
}

/// The backend type as `pg_stat_activity` spells it when shared memory was readable, else
/// as the title suggests.
fn backend_type(p: &PgProcess) -> &str {
    match p.memory.as_ref().and_then(|m| m.backend_type.as_deref()) {
        // The view shows a background worker's bgw_type, which only the title carries.
        Some("background worker") | None => &p.title.backend_type,
        Some(t) => t,
    }
}

/// What it is doing: a client backend's query text from shared memory (the title only
/// says `SELECT`), else the title's activity; with the wait event when it waits.
pub fn activity(p: &PgProcess) -> String {
    let Some(m) = &p.memory else {
        return p.title.activity.clone();
    };
    let query = m
        .query
        .as_deref()
        .map(|q| q.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|q| !q.is_empty());
    let mut out = match (backend_type(p), m.state.as_deref(), query) {
        ("client backend", Some("active"), Some(q)) => q,
        ("client backend", Some(st), Some(q)) if st.starts_with("idle in") => format!("{st}: {q}"),
        _ => p.title.activity.clone(),
    };
    if let Some(w) = &m.wait {
        out = format!("[{w}] {out}");
    }
    out
}

fn who(p: &PgProcess) -> String {
    match (&p.title.user, &p.title.database) {
        (Some(u), Some(d)) => format!("{u}@{d}"),
        (Some(u), None) => u.clone(),
        (None, Some(d)) => d.clone(),
        _ => String::new(),
    }
}

fn matches(filter: &str, c: &PgCluster, p: &PgProcess) -> bool {
    if filter.is_empty() {
        return true;
    }
    let f = filter.to_lowercase();
    let hay = format!(
        "{} {} {} {} {}",
        p.pid,
        backend_type(p),
        who(p),
        activity(p),
        c.label()
    )
    .to_lowercase();
    hay.contains(&f)
}

/// The processes that pass the filter, in display order, as (cluster, process) indexes.
pub fn visible(clusters: &[PgCluster], st: &PickerState) -> Vec<(usize, usize)> {
    let mut v = Vec::new();
    for (ci, c) in clusters.iter().enumerate() {
        for (pi, p) in c.processes.iter().enumerate() {
            if matches(&st.filter, c, p) {
                v.push((ci, pi));
            }
        }
    }
    v
}

/// The selected process, or the first one a trace is most likely wanted for: the first
/// active client backend or walsender, else the first row.
pub fn selected_pid(clusters: &[PgCluster], st: &PickerState) -> Option<i32> {
    let vis = visible(clusters, st);
    let pid_at = |&(c, p): &(usize, usize)| clusters[c].processes[p].pid;
    if let Some(s) = st.selected {
        if vis.iter().any(|x| pid_at(x) == s) {
            return Some(s);
        }
    }
    // A pid typed in full is the one wanted, even if it is a substring of others.
    if let Ok(typed) = st.filter.trim().parse::<i32>() {
        if vis.iter().any(|x| pid_at(x) == typed) {
            return Some(typed);
        }
    }
    vis.iter()
        .find(|&&(c, p)| {
            let pr = &clusters[c].processes[p];
            matches!(backend_type(pr), "client backend" | "walsender")
                && !pr.title.activity.starts_with("idle")
        })
        .or(vis.first())
        .map(pid_at)
}

/// Move the selection by `delta` rows among the visible processes.
pub fn move_selection(clusters: &[PgCluster], st: &mut PickerState, delta: isize) {
    let vis = visible(clusters, st);
    if vis.is_empty() {
        return;
    }
    let cur = selected_pid(clusters, st);
    let i = vis
        .iter()
        .position(|&(c, p)| Some(clusters[c].processes[p].pid) == cur)
        .unwrap_or(0) as isize;
    let j = (i + delta).clamp(0, vis.len() as isize - 1) as usize;
    let (c, p) = vis[j];
    st.selected = Some(clusters[c].processes[p].pid);
}

/// A cluster's row: its label, and a low-level backup when one runs
/// (`…  PostgreSQL 15  — low-level backup running, 2h10m`).
/// `now_us`: Unix µs, for the backup's age.
pub fn cluster_line(c: &PgCluster, now_us: i64) -> String {
    match &c.server_backup {
        Some(b) => format!("{}  — {}", c.label(), b.headline(now_us)),
        None => c.label(),
    }
}

fn rate(v: Option<f64>) -> String {
    match v {
        Some(b) if b >= 0.5 => super::files::compact_rate(b),
        Some(_) => "0".into(),
        None => "-".into(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// One column of the process list: a fixed width (the last, the activity, takes the rest
/// of the line), how it is aligned, the gap before it, and its cell. `cut` columns hold
/// text of any length and are cut to their width; the others are short by nature.
struct Column {
    header: &'static str,
    width: usize,
    align: Align,
    gap: &'static str,
    cut: bool,
    cell: fn(&PgProcess) -> String,
}

fn cpu(p: &PgProcess) -> String {
    p.cpu
        .map(|c| format!("{c:.0}"))
        .unwrap_or_else(|| "-".into())
}

const PID: Column = Column {
    header: "pid",
    width: 7,
    align: Align::Right,
    gap: "",
    cut: false,
    cell: |p| p.pid.to_string(),
};

const CPU: Column = Column {
    header: "cpu%",
    width: 5,
    align: Align::Right,
    gap: " ",
    cut: false,
    cell: cpu,
};

/// 110 columns or more: the full state name, reads and writes apart.
const WIDE: &[Column] = &[
    PID,
    Column {
        header: "type",
        width: 20,
        align: Align::Left,
        gap: " ",
        cut: true,
        cell: |p| backend_type(p).to_string(),
    },
    Column {
        header: "user@database",
        width: 24,
        align: Align::Left,
        gap: " ",
        cut: true,
        cell: who,
    },
    Column {
        header: "state",
        width: 9,
        align: Align::Left,
        gap: " ",
        cut: false,
        cell: |p| state_name(p.state).to_string(),
    },
    CPU,
    Column {
        header: "top wait (10 s)",
        width: 20,
        align: Align::Left,
        gap: " ",
        cut: true,
        cell: |p| p.top_wait.clone().unwrap_or_else(|| "-".into()),
    },
    Column {
        header: "read/s",
        width: 9,
        align: Align::Right,
        gap: " ",
        cut: false,
        cell: |p| rate(p.read_bps),
    },
    Column {
        header: "write/s",
        width: 9,
        align: Align::Right,
        gap: " ",
        cut: false,
        cell: |p| rate(p.write_bps),
    },
];

/// Narrower: the state letter, reads and writes together.
const NARROW: &[Column] = &[
    PID,
    Column {
        header: "type",
        width: 17,
        align: Align::Left,
        gap: " ",
        cut: true,
        cell: |p| backend_type(p).to_string(),
    },
    Column {
        header: "user@database",
        width: 16,
        align: Align::Left,
        gap: " ",
        cut: true,
        cell: who,
    },
    Column {
        header: "S",
        width: 2,
        align: Align::Left,
        gap: " ",
        cut: false,
        cell: |p| p.state.to_string(),
    },
    Column { gap: "", ..CPU },
    Column {
        header: "io/s",
        width: 8,
        align: Align::Right,
        gap: " ",
        cut: false,
        cell: |p| {
            rate(match (p.read_bps, p.write_bps) {
                (Some(r), Some(w)) => Some(r + w),
                _ => None,
            })
        },
    },
];

/// One line of the list: the columns, then the activity in what is left (`aw` cells).
fn line(cols: &[Column], cells: impl Fn(&Column) -> String, last: &str) -> String {
    let mut out = String::new();
    for c in cols {
        let v = cells(c);
        let v = if c.cut { truncate(&v, c.width) } else { v };
        out.push_str(c.gap);
        match c.align {
            Align::Left => out.push_str(&format!("{v:<w$}", w = c.width)),
            Align::Right => out.push_str(&format!("{v:>w$}", w = c.width)),
        }
    }
    out.push(' ');
    out.push_str(last);
    out
}

pub fn draw(f: &mut Frame, clusters: &[PgCluster], st: &PickerState, th: &Theme) {
    draw_panels(f, clusters, st, th);
    super::scrub(f.buffer_mut());
}

fn draw_panels(f: &mut Frame, clusters: &[PgCluster], st: &PickerState, th: &Theme) {
    let area = f.area();
    if super::too_small(f, area) {
        return;
    }
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(area);
    let nprocs: usize = clusters.iter().map(|c| c.processes.len()).sum();
    let mut l1 = vec![
        Span::styled("pg_trace ", th.title()),
        Span::raw(format!(
            "— pick a PostgreSQL process ({} in {} cluster{})",
            nprocs,
            clusters.len(),
            if clusters.len() == 1 { "" } else { "s" }
        )),
    ];
    if clusters.is_empty() {
        l1.push(Span::styled("  no PostgreSQL process found", th.warn()));
    }
    if let Some(n) = &st.note {
        l1.push(Span::styled(format!("  {n}"), th.warn()));
    }
    let l2 = Line::from(vec![
        Span::styled("filter ", th.label()),
        Span::styled(format!("{}▏", st.filter), th.warn()),
    ]);
    f.render_widget(
        Paragraph::new(vec![super::inert(Line::from(l1)), super::inert(l2)]),
        head,
    );

    let w = body.width.saturating_sub(2) as usize;
    let cols = if w >= 110 { WIDE } else { NARROW };
    // The activity gets the rest of the line, less one cell at the right edge.
    let fixed: usize = cols.iter().map(|c| c.gap.len() + c.width).sum::<usize>() + 2;
    let aw = w.saturating_sub(fixed);
    let header = line(cols, |c| c.header.to_string(), "activity");
    let sel = selected_pid(clusters, st);
    let now_us = crate::process::status::unix_now_us();
    let mut lines = Vec::new();
    let mut sel_line = 0usize;
    for c in clusters {
        let procs: Vec<&PgProcess> = c
            .processes
            .iter()
            .filter(|p| matches(&st.filter, c, p))
            .collect();
        if procs.is_empty() {
            continue;
        }
        lines.push(Line::from(Span::styled(
            truncate_left(&cluster_line(c, now_us), w),
            th.group(),
        )));
        for p in procs {
            // A container's process: the pid column is the host's; its own namespace's
            // leads the activity.
            let act = match p.ns_pid {
                Some(n) => format!("(ns pid {n}) {}", activity(p)),
                None => activity(p),
            };
            let text = line(cols, |c| (c.cell)(p), &truncate(&act, aw));
            let is_sel = sel == Some(p.pid);
            if is_sel {
                sel_line = lines.len();
            }
            let style = if is_sel {
                th.selected()
            } else {
                ratatui::style::Style::default()
            };
            lines.push(Line::from(Span::styled(
                format!("{:<w$}", truncate(&text, w)),
                style,
            )));
        }
    }
    // The column header stays; the list scrolls to keep the selection in view.
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(th.border());
    let inner = block.inner(body);
    f.render_widget(block, body);
    let [head_row, list] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
    f.render_widget(
        Paragraph::new(Line::from(Span::styled(
            truncate(&header, w),
            th.header_row(),
        ))),
        head_row,
    );
    let scroll = (sel_line + 1).saturating_sub(list.height as usize);
    f.render_widget(
        Paragraph::new(lines).scroll((scroll.min(u16::MAX as usize) as u16, 0)),
        list,
    );
    let foot_line = match &st.message {
        Some(m) => Line::from(Span::styled(truncate(m, foot.width as usize), th.bad())),
        None => Line::from(vec![
            Span::styled("Enter", th.key()),
            Span::raw(" attach  "),
            Span::styled("↑↓", th.key()),
            Span::raw(" choose  "),
            Span::styled("type", th.key()),
            Span::raw(" filter  "),
            Span::styled("Esc", th.key()),
            Span::raw(" clear/quit  "),
            Span::styled("?", th.key()),
            Span::raw(" help"),
        ]),
    };
    f.render_widget(Paragraph::new(foot_line), foot);
    if st.show_help {
        super::help::draw_picker_help(f, area, th);
    }
}
