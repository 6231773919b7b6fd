//! The log panel: files opened and closed, errors, lost events, followers, exit; with `-d`
//! every syscall. A bounded ring: memory does not grow with the length of the trace.

use super::{human_bytes, truncate, Focus, ScreenState, Theme, TraceInfo};
use crate::model::Model;
use crate::trace::{Event, EventKind};
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;
use std::collections::VecDeque;

/// Lines kept; older ones are dropped (and counted).
pub const LOG_CAPACITY: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Level {
    Info,
    Warn,
    Error,
    Syscall,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogLine {
    pub ts_ns: u64,
    pub level: Level,
    pub text: String,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct LogRing {
    lines: VecDeque<LogLine>,
    pub dropped: u64,
}

impl LogRing {
    pub fn new() -> LogRing {
        LogRing::default()
    }

    pub fn push(&mut self, ts_ns: u64, level: Level, text: String) {
        if self.lines.len() >= LOG_CAPACITY {
            self.lines.pop_front();
            self.dropped += 1;
        }
        self.lines.push_back(LogLine { ts_ns, level, text });
    }

    /// `text` as if it had been pushed before every line here.
    pub fn prepend(&mut self, ts_ns: u64, level: Level, text: String) {
        if self.dropped > 0 || self.lines.len() >= LOG_CAPACITY {
            self.dropped += 1;
        } else {
            self.lines.push_front(LogLine { ts_ns, level, text });
        }
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &LogLine> {
        self.lines.iter()
    }

    /// Log what `ev` means, called before (`applied` false) and after the model applied it:
    /// a close is named before the model forgets its fd, an open after it learnt it.
    pub fn record(&mut self, model: &Model, ev: &Event, applied: bool, debug: bool) {
        if debug && crate::model::lines::shows_syscall(ev, applied) {
            // The panel stamps its own time, so the text starts at the pid.
            let text = crate::model::lines::syscall_text(model, ev);
            self.push(ev.ts_ns, Level::Syscall, text);
        }
        let who = |pid: i32| {
            if pid == model.leader {
                String::new()
            } else {
                format!(" [pid {pid}]")
            }
        };
        match (&ev.kind, applied) {
            (EventKind::Open { fd, path, .. }, true) if *fd >= 0 => {
                let label = model
                    .files
                    .get(&(ev.pid, *fd))
                    .map(|f| f.named.label.clone())
                    .unwrap_or_else(|| path.clone());
                let seg = model
                    .files
                    .get(&(ev.pid, *fd))
                    .map(super::files::fork_segment)
                    .filter(|s| !s.is_empty() && s != "main")
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default();
                self.push(
                    ev.ts_ns,
                    Level::Info,
                    format!("open  fd {fd} {label}{seg}{}", who(ev.pid)),
                );
            }
            (EventKind::Open { fd, path, .. }, true) if *fd < 0 && *fd != -libc::ENOENT => {
                self.push(
                    ev.ts_ns,
                    Level::Error,
                    format!(
                        "open {path} failed: {}{}",
                        errno_name(-*fd as i64),
                        who(ev.pid)
                    ),
                );
            }
            (EventKind::Close { fd }, false) => {
                if let Some(f) = model.files.get(&(ev.pid, *fd)) {
                    let mut s = format!("close fd {fd} {}", f.named.label);
                    let seg = super::files::fork_segment(f);
                    if !seg.is_empty() && seg != "main" {
                        s.push_str(&format!(" ({seg})"));
                    }
                    if f.bytes_read > 0 {
                        s.push_str(&format!(", read {}", human_bytes(f.bytes_read)));
                    }
                    if f.bytes_written > 0 {
                        s.push_str(&format!(", wrote {}", human_bytes(f.bytes_written)));
                    }
                    s.push_str(&who(ev.pid));
                    self.push(ev.ts_ns, Level::Info, s);
                }
            }
            (
                EventKind::Read {
                    syscall,
                    fd,
                    result,
                    ..
                }
                | EventKind::Write {
                    syscall,
                    fd,
                    result,
                    ..
                },
                true,
            ) if *result < 0 => {
                let label = model
                    .files
                    .get(&(ev.pid, *fd))
                    .map(|f| f.named.label.clone())
                    .unwrap_or_else(|| format!("fd {fd}"));
                self.push(
                    ev.ts_ns,
                    Level::Error,
                    format!(
                        "{} {label}: {}{}",
                        syscall.name(),
                        errno_name(-*result),
                        who(ev.pid)
                    ),
                );
            }
            (EventKind::Lost { cause, count }, true) => {
                self.push(
                    ev.ts_ns,
                    Level::Warn,
                    format!("lost {count} events: {cause}"),
                );
            }
            (EventKind::NewFollower { role, .. }, true) => {
                let what = match role {
                    crate::trace::FollowerRole::ParallelWorker => "parallel worker",
                    crate::trace::FollowerRole::IoWorker => "io worker",
                    crate::trace::FollowerRole::CopierChild => "copier's child",
                };
                self.push(
                    ev.ts_ns,
                    Level::Info,
                    format!("following {what} pid {}", ev.pid),
                );
            }
            (EventKind::Exit { code, signal }, true) => {
                let how = match (code, signal) {
                    (_, Some(s)) => format!("killed by signal {s}"),
                    (Some(c), _) => format!("exit code {c}"),
                    _ => "exited".into(),
                };
                let lvl = if signal.is_some() || code.is_some_and(|c| c != 0) {
                    Level::Warn
                } else {
                    Level::Info
                };
                self.push(ev.ts_ns, lvl, format!("pid {} exited: {how}", ev.pid));
            }
            _ => {}
        }
    }
}

fn errno_name(e: i64) -> String {
    let name = match e as i32 {
        libc::EIO => "EIO",
        libc::ENOENT => "ENOENT",
        libc::EACCES => "EACCES",
        libc::EINTR => "EINTR",
        libc::EAGAIN => "EAGAIN",
        libc::ENOSPC => "ENOSPC",
        libc::EBADF => "EBADF",
        libc::EMFILE => "EMFILE",
        libc::EPERM => "EPERM",
        _ => return format!("errno {e}"),
    };
    name.to_string()
}

pub fn draw(
    f: &mut Frame,
    area: Rect,
    log: &LogRing,
    info: &TraceInfo,
    st: &ScreenState,
    th: &Theme,
) {
    let h = area.height.saturating_sub(2) as usize;
    let w = area.width.saturating_sub(2) as usize;
    let back = st.scroll_log.min(log.len().saturating_sub(h));
    // Newest at the bottom; scrolling goes back in time.
    let lines: Vec<&LogLine> = log.iter().rev().skip(back).take(h).collect();
    let text: Vec<Line> = lines
        .into_iter()
        .rev()
        .map(|l| {
            let t = l.ts_ns.saturating_sub(info.start_ns) as f64 / 1e9;
            let style = match l.level {
                Level::Info => th.value().remove_modifier(ratatui::style::Modifier::BOLD),
                Level::Warn => th.warn(),
                Level::Error => th.bad(),
                Level::Syscall => th.label(),
            };
            Line::from(vec![
                Span::styled(format!("{t:9.3}s "), th.label()),
                Span::styled(truncate(&l.text, w.saturating_sub(11)), style),
            ])
        })
        .collect();
    let title = format!(
        " Log: {} lines{}{} ",
        log.len(),
        if log.dropped > 0 {
            format!(", {} older dropped", log.dropped)
        } else {
            String::new()
        },
        if back > 0 {
            format!("  ↑{back}")
        } else {
            String::new()
        }
    );
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(if st.focus == Focus::Log {
            th.border_focused()
        } else {
            th.border()
        })
        .title(Span::styled(title, th.title()));
    f.render_widget(Paragraph::new(text).block(block), area);
}
