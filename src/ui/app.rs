//! The event loop: poll the tracer (never blocking on it), fold events into the model,
//! redraw once per tick whatever the event rate, and turn keys into actions.

use super::log::{Level, LogRing};
use super::picker::{self, PickerState};
use super::terminal::Guard;
use super::{draw_trace, Focus, ScreenState, Theme, TraceInfo};
use crate::cli::BackendChoice;
use crate::process::list::{parse_postmaster_pid, Lister, PgCluster};
use crate::session::{self, Session};
use crate::trace::{monotonic_ns, Pid};
use anyhow::Result;
use ratatui::crossterm::event::{
    Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub struct Options {
    /// None: start in the picker.
    pub pid: Option<Pid>,
    pub backend: BackendChoice,
    /// The redraw tick.
    pub interval: Duration,
    /// `--no-usdt`, `--usdt-probes`.
    pub usdt: crate::trace::usdt::UsdtConfig,
    /// `--no-memory`: no status from shared memory.
    pub no_memory: bool,
    /// `-d`: every syscall in the log panel.
    pub debug: bool,
    /// `--duration`: quit (status 0) after this long, as line mode does.
    pub duration: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    /// Back to the picker (the trace is detached).
    Picker,
    Attach(Pid),
}

/// How often the picker re-reads /proc: rates over shorter windows jitter.
const PICKER_REFRESH: Duration = Duration::from_secs(1);
/// How often the tracer is drained between ticks, and keys are looked at.
const POLL_EVERY: Duration = Duration::from_millis(50);

fn ctrl_c(k: &KeyEvent) -> bool {
    k.modifiers.contains(KeyModifiers::CONTROL) && matches!(k.code, KeyCode::Char('c'))
}

/// One trace: the session and what the screen shows of it.
pub struct TraceApp {
    pub session: Session,
    pub st: ScreenState,
    pub log: LogRing,
    debug: bool,
    /// Capture ended: the process exited, or the tracer failed.
    finished: bool,
    error: Option<String>,
    ended_ns: Option<u64>,
    proc_state: Option<String>,
    /// When `proc_state` last changed: "sleeping in epoll_wait for 12s".
    proc_state_since: u64,
    /// Richer activity (query text, base backup phase) and a diagnosis ("stalled 12 s:
    /// waiting for a lock"), for whoever computes them at tick time; shown in the
    /// activity line and under the header.
    pub status: Option<String>,
    pub verdict: Option<String>,
    title_now: Option<String>,
    port: Option<u16>,
    /// What the log last said of the verdict and the backup phase: it logs changes.
    logged_verdict: Option<&'static str>,
    logged_phase: Option<i64>,
}

/// `/proc/PID/stat` state, the system call it is in (`/proc/PID/syscall`, root only) or
/// else the kernel function it sleeps in: `sleeping in epoll_wait`, `disk wait
/// (folio_wait_bit_common)`.
fn proc_state(pid: Pid) -> Option<String> {
    let now = crate::process::proc::Activity::read(pid)?;
    Some(now.words(|w| super::truncate(w, 32)))
}

impl TraceApp {
    pub fn new(mut session: Session, debug: bool) -> TraceApp {
        let mut log = LogRing::new();
        let now = session.start_ns;
        log.push(
            now,
            Level::Info,
            format!(
                "attached to pid {} via {}",
                session.pid, session.tracer_name
            ),
        );
        for n in session
            .take_notes()
            .into_iter()
            .chain(session.limitations.iter().cloned())
        {
            log.push(now, Level::Warn, n);
        }
        TraceApp {
            st: ScreenState::default(),
            log,
            debug,
            finished: false,
            error: None,
            ended_ns: None,
            proc_state: proc_state(session.pid),
            proc_state_since: session.start_ns,
            status: None,
            verdict: None,
            title_now: None,
            logged_verdict: None,
            logged_phase: None,
            port: std::fs::read_to_string(session.dd.root.join("postmaster.pid"))
                .ok()
                .and_then(|t| parse_postmaster_pid(&t)),
            session,
        }
    }

    /// Drain the tracer into the model (and the log); notice the end of the process.
    pub fn poll(&mut self) {
        if self.finished {
            return;
        }
        let log = &mut self.log;
        let debug = self.debug;
        let r = self.session.poll(|m, ev, applied| {
            log.record(m, ev, applied, debug);
            Ok(())
        });
        if let Err(e) = r {
            let msg = format!("{e:#}");
            self.log.push(
                monotonic_ns(),
                Level::Error,
                format!("capture stopped: {msg}"),
            );
            self.error = Some(msg);
            self.end();
        } else if self.session.model.leader_exited() {
            let _ = self.session.finish();
            self.end();
        }
    }

    fn end(&mut self) {
        self.session.detach();
        self.finished = true;
        self.ended_ns = Some(monotonic_ns());
        self.proc_state = None;
    }

    pub fn tick(&mut self, now: u64) {
        if self.finished {
            return;
        }
        self.session.tick(now);
        self.log_changes(now);
        let st = proc_state(self.session.pid);
        if st != self.proc_state {
            self.proc_state = st;
            self.proc_state_since = now;
        }
        self.title_now = crate::process::proc::process_title(self.session.pid);
    }

    /// Notes from the session, verdict changes and backup phase changes go to the log.
    fn log_changes(&mut self, now: u64) {
        for n in self.session.take_notes() {
            self.log.push(now, Level::Warn, n);
        }
        let model = &self.session.model;
        if let Some(v) = model.status.as_ref().map(|s| &s.verdict) {
            if self.logged_verdict != Some(v.name()) {
                self.logged_verdict = Some(v.name());
                self.log.push(now, Level::Info, format!("now {v}"));
            }
        }
        if let Some(b) = model.backup.as_ref().filter(|b| b.started()) {
            if self.logged_phase != Some(b.phase) {
                self.logged_phase = Some(b.phase);
                self.log.push(
                    now,
                    Level::Info,
                    format!("backup phase: {}", b.phase_name()),
                );
            }
        }
    }

    pub fn info(&self) -> TraceInfo {
        let now = self.ended_ns.unwrap_or_else(monotonic_ns);
        TraceInfo {
            pid: self.session.pid,
            title: self.session.title.clone(),
            title_now: self.title_now.clone(),
            datadir: self.session.dd.root.display().to_string(),
            port: self.port,
            major: self.session.dd.major,
            methods: self.session.tracer_name.to_string(),
            limitations: {
                let mut l = self.session.limitations.clone();
                if let Some(why) = self
                    .session
                    .usdt
                    .reason
                    .as_ref()
                    .filter(|_| !self.session.usdt.active)
                {
                    l.push(format!("no USDT: {why}"));
                }
                if let Some(n) = &self.session.memory_note {
                    l.push(n.clone());
                }
                l
            },
            elapsed_s: now.saturating_sub(self.session.start_ns) as f64 / 1e9,
            events_per_s: if self.finished {
                0.0
            } else {
                self.session.events_per_s
            },
            now_ns: now,
            start_ns: self.session.start_ns,
            proc_state: self.proc_state.as_ref().map(|s| {
                // Running changes too fast for a duration to mean anything.
                let held = now.saturating_sub(self.proc_state_since);
                if s == "running" || held < 1_000_000_000 {
                    s.clone()
                } else {
                    format!("{s} for {}", super::human_age(held))
                }
            }),
            status: self.status.clone(),
            verdict: self.verdict.clone(),
            error: self.error.clone(),
        }
    }

    pub fn key(&mut self, k: KeyEvent) -> Action {
        let a = handle_trace_key(&mut self.st, k);
        // Keys scroll blindly (End jumps far); bring the offsets back to the last row, so
        // that the next Up moves at once.
        let m = &self.session.model;
        let last = |n: usize| n.saturating_sub(1);
        self.st.scroll_files = self
            .st
            .scroll_files
            .min(last(super::files::rows(m, &self.st).len()));
        self.st.scroll_relations = self
            .st
            .scroll_relations
            .min(last(super::relations::rows(m, &self.st).len()));
        self.st.scroll_log = self.st.scroll_log.min(last(self.log.len()));
        a
    }
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

pub struct PickerApp {
    lister: Lister,
    pub clusters: Vec<PgCluster>,
    pub st: PickerState,
    sampled: Option<Instant>,
}

impl PickerApp {
    pub fn new() -> PickerApp {
        let mut lister = Lister::new();
        let clusters = lister.sample();
        let root = crate::process::proc::is_root();
        PickerApp {
            lister,
            clusters,
            st: PickerState {
                note: (!root).then(|| "not root: attaching needs sudo".to_string()),
                ..PickerState::default()
            },
            sampled: Some(Instant::now()),
        }
    }

    fn tick(&mut self) {
        if self.sampled.map_or(true, |t| t.elapsed() >= PICKER_REFRESH) {
            self.clusters = self.lister.sample();
            self.sampled = Some(Instant::now());
        }
    }

    pub fn key(&mut self, k: KeyEvent) -> Action {
        handle_picker_key(&self.clusters, &mut self.st, k)
    }
}

impl Default for PickerApp {
    fn default() -> Self {
        PickerApp::new()
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

enum Screen {
    Picker(Box<PickerApp>),
    Trace(Box<TraceApp>),
}

/// The TUI: the picker (no pid) or a trace, until q, Ctrl-C, SIGTERM or SIGHUP.
pub fn run(opts: Options) -> Result<()> {
    // SAFETY: tcgetpgrp and getpgrp only read the calling process's terminal state.
    let (fg, own) = unsafe { (libc::tcgetpgrp(libc::STDOUT_FILENO), libc::getpgrp()) };
    if fg != own {
        anyhow::bail!(
            "the TUI needs the terminal's foreground: run pg_trace in the foreground, or use --no-tui"
        );
    }
    let stop = session::stop_flag()?;
    // Attach before taking the terminal: a bad pid is a one-line error on a sane screen.
    let first = match opts.pid {
        Some(pid) => Some(open_session(pid, &opts)?),
        None => None,
    };
    let theme = Theme::from_env();
    let mut guard = Guard::enter()?;
    let mut screen = match first {
        Some(s) => Screen::Trace(Box::new(TraceApp::new(s, opts.debug))),
        None => Screen::Picker(Box::default()),
    };
    let result = event_loop(&mut guard, &mut screen, &opts, &stop, &theme);
    if let Screen::Trace(t) = &mut screen {
        t.session.detach();
    }
    drop(guard);
    result
}

fn draw(guard: &mut Guard, screen: &Screen, theme: &Theme) -> Result<()> {
    guard.terminal.draw(|f| match screen {
        Screen::Trace(t) => {
            let info = t.info();
            draw_trace(f, &t.session.model, &info, &t.log, &t.st, theme);
        }
        Screen::Picker(p) => picker::draw(f, &p.clusters, &p.st, theme),
    })?;
    Ok(())
}

fn event_loop(
    guard: &mut Guard,
    screen: &mut Screen,
    opts: &Options,
    stop: &AtomicBool,
    theme: &Theme,
) -> Result<()> {
    let mut next_tick = Instant::now();
    let started = Instant::now();
    let keys = super::keys::Keys::start();
    loop {
        if stop.load(Ordering::Relaxed) || opts.duration.is_some_and(|d| started.elapsed() >= d) {
            return Ok(());
        }
        if super::terminal::worker_panicked() {
            anyhow::bail!("a pg_trace worker thread panicked (message above); detached");
        }
        if super::keys::hung_up() {
            anyhow::bail!("the terminal hung up; detached");
        }
        if let Screen::Trace(t) = screen {
            t.poll();
        }
        let now = Instant::now();
        if now >= next_tick {
            let paused = match screen {
                Screen::Trace(t) => {
                    t.tick(monotonic_ns());
                    t.st.paused
                }
                Screen::Picker(p) => {
                    p.tick();
                    false
                }
            };
            if !paused {
                draw(guard, screen, theme)?;
            }
            next_tick = now + opts.interval;
        }
        let wait = next_tick
            .saturating_duration_since(Instant::now())
            .min(POLL_EVERY);
        let Some(mut ev) = keys.next(wait)? else {
            continue;
        };
        // Every key already typed, then one redraw.
        loop {
            match ev {
                TermEvent::Key(k) if k.kind != KeyEventKind::Release => {
                    let action = match screen {
                        Screen::Trace(t) => t.key(k),
                        Screen::Picker(p) => p.key(k),
                    };
                    match action {
                        Action::None => {}
                        Action::Quit => return Ok(()),
                        Action::Picker => {
                            let was = match screen {
                                Screen::Trace(t) => Some(t.session.pid),
                                Screen::Picker(_) => None,
                            };
                            // Detach before listing: the picker must not show a traced state.
                            if let Screen::Trace(t) = screen {
                                t.session.detach();
                            }
                            *screen = Screen::Picker(Box::default());
                            if let Screen::Picker(p) = screen {
                                p.st.selected = was;
                            }
                        }
                        Action::Attach(pid) => {
                            if let Screen::Picker(p) = screen {
                                p.st.message = Some(format!("attaching to pid {pid}…"));
                            }
                            draw(guard, screen, theme)?;
                            match open_session(pid, opts) {
                                Ok(s) => {
                                    *screen = Screen::Trace(Box::new(TraceApp::new(s, opts.debug)));
                                    next_tick = Instant::now();
                                }
                                Err(e) => {
                                    if let Screen::Picker(p) = screen {
                                        p.st.message = Some(format!("pid {pid}: {e:#}"));
                                    }
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
            match keys.ready()? {
                Some(next) => ev = next,
                None => break,
            }
        }
        draw(guard, screen, theme)?;
    }
}

fn open_session(pid: Pid, opts: &Options) -> Result<Session> {
    let mut s = Session::open_with(pid, opts.backend, &opts.usdt)?;
    if opts.no_memory {
        s.disable_memory();
    }
    Ok(s)
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
