//! The live terminal UI. Rendering is pure: each panel draws a [`Model`] plus plain data
//! ([`TraceInfo`], [`ScreenState`]) into a ratatui frame, so that tests render scripted
//! models into a `TestBackend`. Keys map to actions (`actions`); the loop that owns the
//! session and the terminal lives above, in `session::tui`.

pub mod actions;
pub mod files;
pub mod header;
pub mod help;
pub mod log;
pub mod operation;
pub mod picker;
pub mod relations;
pub mod sched;
pub mod summary;
pub mod theme;
pub mod waits;

use crate::model::Model;
use crate::trace::Pid;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::Paragraph;
use ratatui::Frame;
pub use theme::Theme;

/// Which panel the arrows scroll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Focus {
    #[default]
    Files,
    Relations,
    Log,
}

/// The order of the files and relations panels; `s` cycles through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sort {
    /// Most recently read or written first: the current file is on top.
    #[default]
    Recent,
    /// Furthest through first.
    Progress,
    Rate,
    Size,
    Name,
}

impl Sort {
    pub fn next(self) -> Sort {
        match self {
            Sort::Recent => Sort::Progress,
            Sort::Progress => Sort::Rate,
            Sort::Rate => Sort::Size,
            Sort::Size => Sort::Name,
            Sort::Name => Sort::Recent,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Sort::Recent => "recent",
            Sort::Progress => "progress",
            Sort::Rate => "rate",
            Sort::Size => "size",
            Sort::Name => "name",
        }
    }
}

/// What the user has chosen to see; everything the keys change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScreenState {
    pub focus: Focus,
    pub sort: Sort,
    /// Case-insensitive substring of object labels and paths.
    pub filter: String,
    /// `/` was pressed: keys go to the filter until Enter or Esc.
    pub editing_filter: bool,
    pub paused: bool,
    pub show_log: bool,
    /// The waits panel (`w`).
    pub show_waits: bool,
    pub show_help: bool,
    /// First row shown, per panel (files, relations, log counted from the newest).
    pub scroll_files: usize,
    pub scroll_relations: usize,
    pub scroll_log: usize,
}

impl ScreenState {
    pub fn matches(&self, text: &str) -> bool {
        self.filter.is_empty() || text.to_lowercase().contains(&self.filter.to_lowercase())
    }
}

/// Everything about the traced process the model does not hold: from the session and its
/// status samples. What the process does and whether it is stalled come from the model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceInfo {
    pub pid: Pid,
    /// The process title at attach (`postgres: alice shop [local] SELECT`).
    pub title: String,
    /// The title now, when it could be re-read (the activity changes as the query runs).
    pub title_now: Option<String>,
    pub datadir: String,
    /// From `postmaster.pid`.
    pub port: Option<u16>,
    pub major: u32,
    /// `ebpf`, `ptrace`, `procfs` (several joined with `+`).
    pub methods: String,
    /// What the methods cannot see, and why.
    pub limitations: Vec<String>,
    pub elapsed_s: f64,
    pub events_per_s: f64,
    /// The clock the ages of last operations are measured against (same clock as events).
    pub now_ns: u64,
    /// Start of the session: log times are relative to it.
    pub start_ns: u64,
    /// `/proc/PID/stat` state and wchan now: `running`, `disk wait (folio_wait_bit)`.
    pub proc_state: Option<String>,
    /// A tracer error that ended capture; the screen stays up to show what was seen.
    pub error: Option<String>,
}

pub use crate::text::{human_age, human_bytes, human_duration, human_rate};

/// Cut to `width` display cells (one per char here), with `…` when cut. Outside text is
/// made inert first ([`crate::text::visible`]): every panel's names pass through here.
pub fn truncate(s: &str, width: usize) -> String {
    let s = &*crate::text::visible(s);
    let n = s.chars().count();
    if n <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// Keep the end, which tells paths apart: `…/15/main`.
pub fn truncate_left(s: &str, width: usize) -> String {
    let s = &*crate::text::visible(s);
    let n = s.chars().count();
    if n <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out = String::from("…");
    out.extend(s.chars().skip(n - (width - 1)));
    out
}

/// `line` with every span's text made inert, for lines built from outside text without
/// [`truncate`].
pub fn inert(line: Line<'_>) -> Line<'_> {
    let spans = line
        .spans
        .into_iter()
        .map(|mut sp| {
            if let std::borrow::Cow::Owned(v) = crate::text::visible(&sp.content) {
                sp.content = v.into();
            }
            sp
        })
        .collect::<Vec<_>>();
    Line { spans, ..line }
}

/// Defence in depth after a frame is laid out: a cell that still holds a control or an
/// invisible format character (text that reached a widget without [`truncate`] or
/// [`inert`]) shows `?` instead, so nothing in the buffer can drive the terminal.
pub fn scrub(buf: &mut ratatui::buffer::Buffer) {
    for cell in buf.content.iter_mut() {
        if cell.symbol().chars().any(crate::text::visible::is_hidden) {
            cell.set_symbol("?");
        }
    }
}

/// Below this the screen says so instead of drawing panels.
pub const MIN_WIDTH: u16 = 40;
pub const MIN_HEIGHT: u16 = 10;

pub fn too_small(f: &mut Frame, area: Rect) -> bool {
    if area.width >= MIN_WIDTH && area.height >= MIN_HEIGHT {
        return false;
    }
    let msg = format!(
        "terminal too small ({}x{}); q quits",
        area.width, area.height
    );
    f.render_widget(
        Paragraph::new(Line::from(msg)).wrap(ratatui::widgets::Wrap { trim: true }),
        area,
    );
    true
}

/// The whole trace screen: header, relations, files, optional log, key bar, overlays.
pub fn draw_trace(
    f: &mut Frame,
    model: &Model,
    info: &TraceInfo,
    log: &log::LogRing,
    st: &ScreenState,
    theme: &Theme,
) {
    draw_trace_panels(f, model, info, log, st, theme);
    scrub(f.buffer_mut());
}

fn draw_trace_panels(
    f: &mut Frame,
    model: &Model,
    info: &TraceInfo,
    log: &log::LogRing,
    st: &ScreenState,
    theme: &Theme,
) {
    let area = f.area();
    if too_small(f, area) {
        return;
    }
    let rel_rows = relations::visible_count(model, st) as u16;
    let header_h = header::height(model, info, area.width);
    let [head, body, keys] = Layout::vertical([
        Constraint::Length(header_h),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(area);
    header::draw(f, head, model, info, st, theme);
    // Relations get what they need up to a third of the body; files the rest; the log,
    // when shown, shares the bottom with files.
    let rel_h = (rel_rows + 3).clamp(4, (body.height / 3).max(4));
    let [rel_area, rest] =
        Layout::vertical([Constraint::Length(rel_h), Constraint::Min(3)]).areas(body);
    relations::draw(f, rel_area, model, info, st, theme);
    let rest = if st.show_waits {
        let h = waits::height(model).min(rest.height.saturating_sub(3).max(3));
        let [waits_area, rest] =
            Layout::vertical([Constraint::Length(h), Constraint::Min(3)]).areas(rest);
        waits::draw(f, waits_area, model, theme);
        rest
    } else {
        rest
    };
    if st.show_log {
        let [files_area, log_area] =
            Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(rest);
        files::draw(f, files_area, model, info, st, theme);
        log::draw(f, log_area, log, info, st, theme);
    } else {
        files::draw(f, rest, model, info, st, theme);
    }
    help::draw_keybar(f, keys, st, model.leader_exited(), theme);
    if model.leader_exited() {
        summary::draw(f, body, model, info, st, theme);
    }
    if st.show_help {
        help::draw(f, area, info, st, theme);
    }
}

/// A centred rectangle of at most `w`×`h` inside `area`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_is_char_safe() {
        assert_eq!(truncate("orders_pkey → sales.orders", 14), "orders_pkey →…");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(truncate("abc", 0), "");
        assert_eq!(
            truncate_left("/var/lib/postgresql/15/main", 10),
            "…l/15/main"
        );
        assert_eq!(human_age(3_000_000), "3ms");
        assert_eq!(human_age(1_250_000_000), "1.2s");
        assert_eq!(human_rate(0.0), "-");
    }

    #[test]
    fn outside_text_is_inert_on_screen() {
        assert_eq!(
            truncate("t\x1b]0;PWNED\x07\nx", 40),
            r"t\x1b]0;PWNED\x07\nx"
        );
        assert_eq!(truncate_left("a\u{202e}b", 3), "…}b");
        let l = inert(Line::from(vec![
            ratatui::text::Span::raw("x\x1b[2J"),
            ratatui::text::Span::raw("表"),
        ]));
        assert_eq!(l.spans[0].content, r"x\x1b[2J");
        assert_eq!(l.spans[1].content, "表");
        let mut buf = ratatui::buffer::Buffer::empty(Rect::new(0, 0, 4, 1));
        buf[(0, 0)].set_symbol("\x1b");
        buf[(1, 0)].set_symbol("\u{202e}");
        buf[(2, 0)].set_symbol("ß");
        scrub(&mut buf);
        let row: String = (0..4).map(|x| buf[(x, 0)].symbol().to_string()).collect();
        assert_eq!(row, "??ß ");
    }
}
