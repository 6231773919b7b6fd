//! Keys to actions: what each key does to the screen state, and what it asks of the loop
//! that owns the session (quit, back to the picker, attach). Pure, so the key map is
//! tested without a terminal.

use super::picker::{self, PickerState};
use super::{Focus, ScreenState};
use crate::process::list::PgCluster;
use crate::trace::Pid;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    /// Back to the picker (the trace is detached).
    Picker,
    Attach(Pid),
}

fn ctrl_c(k: &KeyEvent) -> bool {
    k.modifiers.contains(KeyModifiers::CONTROL) && matches!(k.code, KeyCode::Char('c'))
}

/// Keys of the trace screen. Pure, so the key map is tested without a terminal.
pub fn handle_trace_key(st: &mut ScreenState, k: KeyEvent) -> Action {
    if ctrl_c(&k) {
        return Action::Quit;
    }
    if st.editing_filter {
        match k.code {
            KeyCode::Enter => st.editing_filter = false,
            KeyCode::Esc => {
                st.editing_filter = false;
                st.filter.clear();
            }
            KeyCode::Backspace => {
                st.filter.pop();
            }
            KeyCode::Char(c) if st.filter.chars().count() < 64 => st.filter.push(c),
            _ => {}
        }
        st.scroll_files = 0;
        st.scroll_relations = 0;
        return Action::None;
    }
    if st.show_help {
        match k.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Char('?') | KeyCode::Esc => st.show_help = false,
            _ => {}
        }
        return Action::None;
    }
    let page = 10;
    match k.code {
        KeyCode::Char('q') => return Action::Quit,
        // Esc first drops a filter, then leaves for the picker (detaching).
        KeyCode::Esc if !st.filter.is_empty() => st.filter.clear(),
        KeyCode::Esc => return Action::Picker,
        KeyCode::Char('p') => st.paused = !st.paused,
        KeyCode::Char('s') => st.sort = st.sort.next(),
        KeyCode::Char('/') => st.editing_filter = true,
        KeyCode::Char('?') => st.show_help = true,
        KeyCode::Char('w') => st.show_waits = !st.show_waits,
        KeyCode::Char('l') => {
            st.show_log = !st.show_log;
            if !st.show_log && st.focus == Focus::Log {
                st.focus = Focus::Files;
            }
        }
        KeyCode::Tab => {
            st.focus = match st.focus {
                Focus::Files => Focus::Relations,
                Focus::Relations if st.show_log => Focus::Log,
                _ => Focus::Files,
            }
        }
        KeyCode::BackTab => {
            st.focus = match st.focus {
                Focus::Files if st.show_log => Focus::Log,
                Focus::Files => Focus::Relations,
                Focus::Relations => Focus::Files,
                Focus::Log => Focus::Relations,
            }
        }
        KeyCode::Up => scroll(st, -1),
        KeyCode::Down => scroll(st, 1),
        KeyCode::PageUp => scroll(st, -page),
        KeyCode::PageDown => scroll(st, page),
        KeyCode::Home => match st.focus {
            Focus::Files => st.scroll_files = 0,
            Focus::Relations => st.scroll_relations = 0,
            Focus::Log => st.scroll_log = usize::MAX / 2,
        },
        KeyCode::End => match st.focus {
            Focus::Log => st.scroll_log = 0,
            Focus::Files => st.scroll_files = usize::MAX / 2,
            Focus::Relations => st.scroll_relations = usize::MAX / 2,
        },
        _ => {}
    }
    Action::None
}

/// Down moves towards later rows; in the log, later means newer (`scroll_log` counts back).
fn scroll(st: &mut ScreenState, delta: isize) {
    let apply = |v: &mut usize, d: isize| {
        *v = if d < 0 {
            v.saturating_sub(d.unsigned_abs())
        } else {
            v.saturating_add(d as usize).min(usize::MAX / 2)
        }
    };
    match st.focus {
        Focus::Files => apply(&mut st.scroll_files, delta),
        Focus::Relations => apply(&mut st.scroll_relations, delta),
        Focus::Log => apply(&mut st.scroll_log, -delta),
    }
}

/// Keys of the picker: printable keys type into the filter.
pub fn handle_picker_key(clusters: &[PgCluster], st: &mut PickerState, k: KeyEvent) -> Action {
    st.message = None;
    if ctrl_c(&k) {
        return Action::Quit;
    }
    if st.show_help {
        if matches!(k.code, KeyCode::Char('?') | KeyCode::Esc) {
            st.show_help = false;
        }
        return Action::None;
    }
    match k.code {
        KeyCode::Char('q') if st.filter.is_empty() => return Action::Quit,
        KeyCode::Char('?') => st.show_help = true,
        KeyCode::Esc if st.filter.is_empty() => return Action::Quit,
        KeyCode::Esc => st.filter.clear(),
        KeyCode::Backspace => {
            st.filter.pop();
        }
        KeyCode::Char(c) if st.filter.chars().count() < 64 => {
            st.filter.push(c);
        }
        KeyCode::Up => picker::move_selection(clusters, st, -1),
        KeyCode::Down => picker::move_selection(clusters, st, 1),
        KeyCode::PageUp => picker::move_selection(clusters, st, -10),
        KeyCode::PageDown => picker::move_selection(clusters, st, 10),
        KeyCode::Home => picker::move_selection(clusters, st, isize::MIN / 2),
        KeyCode::End => picker::move_selection(clusters, st, isize::MAX / 2),
        KeyCode::Enter => {
            if let Some(pid) = picker::selected_pid(clusters, st) {
                return Action::Attach(pid);
            }
        }
        _ => {}
    }
    Action::None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn trace_keys() {
        let mut st = ScreenState::default();
        assert_eq!(
            handle_trace_key(&mut st, key(KeyCode::Char('s'))),
            Action::None
        );
        assert_eq!(st.sort, super::super::Sort::Progress);
        handle_trace_key(&mut st, key(KeyCode::Char('/')));
        handle_trace_key(&mut st, key(KeyCode::Char('q')));
        assert_eq!(st.filter, "q", "q types into the filter while editing it");
        handle_trace_key(&mut st, key(KeyCode::Enter));
        assert!(!st.editing_filter);
        handle_trace_key(&mut st, key(KeyCode::Char('l')));
        handle_trace_key(&mut st, key(KeyCode::Tab));
        handle_trace_key(&mut st, key(KeyCode::Tab));
        assert_eq!(st.focus, Focus::Log);
        handle_trace_key(&mut st, key(KeyCode::Char('l')));
        assert_eq!(st.focus, Focus::Files);
        assert_eq!(handle_trace_key(&mut st, key(KeyCode::Esc)), Action::None);
        assert!(st.filter.is_empty());
        assert_eq!(handle_trace_key(&mut st, key(KeyCode::Esc)), Action::Picker);
        assert_eq!(
            handle_trace_key(
                &mut st,
                KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)
            ),
            Action::Quit
        );
        assert_eq!(
            handle_trace_key(&mut st, key(KeyCode::Char('q'))),
            Action::Quit
        );
    }

    #[test]
    fn picker_keys() {
        let mut st = PickerState::default();
        assert_eq!(
            handle_picker_key(&[], &mut st, key(KeyCode::Char('w'))),
            Action::None
        );
        assert_eq!(
            handle_picker_key(&[], &mut st, key(KeyCode::Char('q'))),
            Action::None
        );
        assert_eq!(st.filter, "wq");
        assert_eq!(
            handle_picker_key(&[], &mut st, key(KeyCode::Enter)),
            Action::None
        );
        assert_eq!(
            handle_picker_key(&[], &mut st, key(KeyCode::Esc)),
            Action::None
        );
        assert_eq!(
            handle_picker_key(&[], &mut st, key(KeyCode::Esc)),
            Action::Quit
        );
    }
}
