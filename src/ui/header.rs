//! The top lines: who is traced, how, for how long and how fast; then what it is doing.

use super::{human_age, human_duration, truncate, truncate_left, ScreenState, Theme, TraceInfo};
use crate::model::Model;
use crate::process::list::{parse_title, Title};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

pub fn height(model: &Model, info: &TraceInfo, _width: u16) -> u16 {
    3 + super::operation::height(model)
        + u16::from(!info.limitations.is_empty())
        + u16::from(verdict(model).is_some())
}

/// The verdict line the model drew from the status sample; `true` when the model calls
/// it a stall (a warning colour).
fn verdict(model: &Model) -> Option<(String, bool)> {
    let v = &model.status.as_ref()?.verdict;
    v.is_known().then(|| (v.to_string(), v.is_stall()))
}

/// What the process is doing, from its own status: a base backup's phase and bytes, or
/// the query with its state and wait event.
fn status_activity(model: &Model) -> Option<String> {
    if let Some(b) = model.backup.as_ref().filter(|b| b.started()) {
        return Some(crate::model::lines::BackupLine::of(b).compact());
    }
    let s = &model.status.as_ref()?.sample;
    let q = s
        .query
        .as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty())?;
    let mut out = q.split_whitespace().collect::<Vec<_>>().join(" ");
    if let (Some(t), Some(e)) = (&s.wait_event_type, &s.wait_event) {
        out = format!("[{t}:{e}] {out}");
    }
    if let Some(st) = &s.state {
        out = format!("({st}) {out}");
    }
    Some(out)
}

fn title_of(info: &TraceInfo) -> Title {
    let t = info.title_now.as_deref().unwrap_or(&info.title);
    parse_title(t).unwrap_or_else(|| Title {
        backend_type: "process".into(),
        activity: t.to_string(),
        ..Title::default()
    })
}

fn eps(n: f64) -> String {
    if n >= 10_000.0 {
        format!("{:.0}k", n / 1000.0)
    } else if n >= 1000.0 {
        format!("{:.1}k", n / 1000.0)
    } else {
        format!("{n:.0}")
    }
}

pub fn draw(
    f: &mut Frame,
    area: Rect,
    model: &Model,
    info: &TraceInfo,
    st: &ScreenState,
    th: &Theme,
) {
    let w = area.width as usize;
    let t = title_of(info);
    let mut who = String::new();
    match (&t.user, &t.database) {
        (Some(u), Some(d)) => who = format!("{u}@{d}"),
        (Some(u), None) => who = u.clone(),
        (None, Some(d)) => who = d.clone(),
        _ => {}
    }
    if let Some(h) = &t.host {
        if !who.is_empty() {
            who.push(' ');
        }
        who.push_str(h);
    }
    let mut l1 = vec![
        Span::styled("pg_trace ", th.title()),
        Span::styled(format!("pid {}", info.pid), th.value()),
        Span::raw(" "),
        Span::styled(t.backend_type.clone(), th.value()),
    ];
    if !who.is_empty() {
        l1.push(Span::raw(format!("  {who}")));
    }
    let used: usize = l1.iter().map(|s| s.content.chars().count()).sum();
    let cluster = match info.port {
        Some(p) => format!("  PG {} :{p}  ", info.major),
        None => format!("  PG {}  ", info.major),
    };
    let room = w.saturating_sub(used + cluster.len());
    l1.push(Span::styled(cluster, th.label()));
    l1.push(Span::raw(truncate_left(&info.datadir, room)));

    let lost: u64 = model.lost.values().sum();
    let mut l2 = vec![
        Span::styled("via ", th.label()),
        Span::styled(info.methods.clone(), th.value()),
        Span::styled("  elapsed ", th.label()),
        Span::raw(human_duration(info.elapsed_s)),
        Span::styled("  events ", th.label()),
        Span::raw(format!("{} ({}/s)", model.events, eps(info.events_per_s))),
        Span::styled("  lost ", th.label()),
        Span::styled(
            lost.to_string(),
            if lost > 0 { th.bad() } else { th.value() },
        ),
    ];
    if st.paused {
        l2.push(Span::styled("  PAUSED", th.warn()));
    }
    if !st.filter.is_empty() || st.editing_filter {
        l2.push(Span::styled("  filter ", th.label()));
        let cursor = if st.editing_filter { "▏" } else { "" };
        l2.push(Span::styled(format!("{}{cursor}", st.filter), th.warn()));
    }
    // Last: on a narrow screen it is what gets cut. Live sessions only.
    if let Some(c) = &model.cost.now {
        l2.push(Span::raw("  "));
        l2.push(Span::styled(c.compact(), th.label()));
    }

    // The activity: the status sample's (query text, backup phase), else USDT's query,
    // else the process title's; then the process state and the last syscall with its age.
    let mut l3 = vec![Span::styled("doing ", th.label())];
    let what = status_activity(model)
        .or_else(|| usdt_query(model))
        .unwrap_or_else(|| {
            if t.activity.is_empty() {
                "-".into()
            } else {
                t.activity.clone()
            }
        });
    l3.push(Span::styled(what, th.value()));
    if let Some(s) = &info.proc_state {
        l3.push(Span::styled("  state ", th.label()));
        l3.push(Span::raw(s.clone()));
    }
    if let Some(cf) = model.current_file() {
        l3.push(Span::styled("  last ", th.label()));
        let op = cf.last_op.map(|o| o.name()).unwrap_or("?");
        l3.push(Span::raw(format!(
            "{op} {} {} ago",
            cf.named.label,
            human_age(info.now_ns.saturating_sub(cf.last_ns))
        )));
    }
    if let Some(e) = &info.error {
        l3.push(Span::styled(format!("  capture stopped: {e}"), th.bad()));
    }
    let mut lines = vec![Line::from(l1), Line::from(l2), Line::from(l3)];
    lines.extend(super::operation::line(model, w, th));
    if !info.limitations.is_empty() {
        let text = info.limitations.join("; ");
        lines.push(Line::from(vec![
            Span::styled("note ", th.label()),
            Span::styled(truncate(&text, w.saturating_sub(5)), th.warn()),
        ]));
    }
    if let Some((v, stall)) = verdict(model) {
        let style = if stall { th.bad() } else { th.value() };
        lines.push(Line::from(vec![
            Span::styled(if stall { "⚠ " } else { "→ " }, style),
            Span::styled(truncate(&v, w.saturating_sub(2)), style),
        ]));
    }
    let lines: Vec<Line> = lines.into_iter().map(super::inert).collect();
    f.render_widget(Paragraph::new(lines), area);
}

/// The query the leader runs now, as USDT saw it (`query__start`, or `statement__status`
/// for the extended protocol), on one line.
fn usdt_query(model: &Model) -> Option<String> {
    let q = model.queries.iter().rev().find(|q| q.pid == model.leader)?;
    (q.done_ns.is_none() && !q.text.trim().is_empty())
        .then(|| q.text.split_whitespace().collect::<Vec<_>>().join(" "))
}
