//! The TUI loop: poll the tracer (never blocking on it), fold events into the model,
//! redraw once per tick whatever the event rate, and turn keys into actions. It owns the
//! session; `ui` only draws and maps keys. The loop takes its screen ([`Display`]), its
//! keys ([`KeySource`]) and its clock, so whole sessions are run scripted in tests.

use super::keys::Keys;
use super::terminal::Guard;
use super::Session;
use crate::cli::BackendChoice;
use crate::process::list::{parse_postmaster_pid, Lister, PgCluster};
use crate::process::proc::Activity;
use crate::process::status::kernel::KernelState;
use crate::trace::replay::{Clock, SystemClock};
use crate::trace::Pid;
use crate::ui::actions::{handle_picker_key, handle_trace_key, Action};
use crate::ui::log::{Level, LogRing};
use crate::ui::picker::{self, PickerState};
use crate::ui::{draw_trace, ScreenState, Theme, TraceInfo};
use anyhow::Result;
use ratatui::backend::{Backend, CrosstermBackend};
use ratatui::crossterm::event::{Event as TermEvent, KeyEvent, KeyEventKind};
use ratatui::Terminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
    /// `--record FILE`: record the session given with -p.
    pub record: Option<super::record::RecordOptions>,
    /// `--io-latency`, `--exact-waits`.
    pub kernel: super::kernel_time::KernelOptions,
    /// `--sample-hz`: the wait profile's sampling rate.
    pub sample_hz: f64,
}

/// How often the picker re-reads /proc: rates over shorter windows jitter.
const PICKER_REFRESH: Duration = Duration::from_secs(1);
/// How often the tracer is drained between ticks, and keys are looked at.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// Where frames go: the terminal live, a `TestBackend` in tests.
pub trait Display {
    type B: Backend;
    fn terminal(&mut self) -> &mut Terminal<Self::B>;
    /// The window is now `w`×`h` (a live terminal resizes itself on the next draw).
    fn resized(&mut self, _w: u16, _h: u16) {}
    /// A frame was drawn (tests keep every one).
    fn drawn(&mut self) {}
    /// Why the screen can no longer be used, if it cannot: the loop then detaches.
    fn broken(&self) -> Option<&'static str> {
        None
    }
}

impl Display for Guard {
    type B = CrosstermBackend<std::io::Stdout>;
    fn terminal(&mut self) -> &mut Terminal<Self::B> {
        &mut self.terminal
    }
    fn broken(&self) -> Option<&'static str> {
        if super::terminal::worker_panicked() {
            return Some("a pg_trace worker thread panicked (message above); detached");
        }
        super::keys::hung_up().then_some("the terminal hung up; detached")
    }
}

/// Where keys come from: the terminal live, a script in tests.
pub trait KeySource {
    /// The next terminal event, waiting at most `wait` (on the loop's clock).
    fn next(&mut self, wait: Duration) -> Result<Option<TermEvent>>;
    /// An event already typed, without waiting.
    fn ready(&mut self) -> Result<Option<TermEvent>>;
}

impl KeySource for Keys {
    fn next(&mut self, wait: Duration) -> Result<Option<TermEvent>> {
        Keys::next(self, wait)
    }
    fn ready(&mut self) -> Result<Option<TermEvent>> {
        Keys::ready(self)
    }
}

/// The process state a status sample saw, in the process layer's words: `running`,
/// `sleeping in epoll_wait`, `disk wait (folio_wait_bit_common)`.
fn proc_state(k: &KernelState) -> Option<String> {
    let state = k.state?;
    // Running changes too fast for where it was to mean anything.
    let running = state == 'R';
    let a = Activity {
        state,
        syscall: k
            .syscall
            .and_then(|n| u64::try_from(n).ok())
            .filter(|_| !running),
        wchan: k.wchan.clone().filter(|_| !running),
    };
    Some(a.words(|w| crate::ui::truncate(w, 32)))
}

/// One trace: the session and what the screen shows of it.
/// [`TraceApp::place`].
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct AppPlace {
    log: LogRing,
    finished: bool,
    error: Option<String>,
    ended_ns: Option<u64>,
    proc_state: Option<String>,
    proc_state_since: u64,
    title_now: Option<String>,
    #[serde(with = "crate::model::sstr::opt")]
    logged_verdict: Option<crate::model::sstr::Static>,
    logged_phase: Option<i64>,
    said_limits: Vec<String>,
}

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
    title_now: Option<String>,
    port: Option<u16>,
    /// What the log last said of the verdict and the backup phase: it logs changes.
    logged_verdict: Option<&'static str>,
    logged_phase: Option<i64>,
    /// Limitations already in the log (a tracer that joins later says only its own).
    said_limits: Vec<String>,
}

impl TraceApp {
    pub fn new(mut session: Session, debug: bool) -> TraceApp {
        let mut log = LogRing::new();
        let now = session.start_ns;
        let said = if session.tracing() {
            format!(
                "attached to pid {} via {}",
                session.pid, session.tracer_name
            )
        } else {
            format!("attaching to pid {}…", session.pid)
        };
        log.push(now, Level::Info, said);
        for n in session
            .take_notes()
            .into_iter()
            .chain(session.limitations.iter().cloned())
        {
            log.push(now, Level::Warn, n);
        }
        let port = session
            .datadir()
            .and_then(|dd| std::fs::read_to_string(dd.root.join("postmaster.pid")).ok())
            .and_then(|t| parse_postmaster_pid(&t));
        TraceApp {
            st: ScreenState::default(),
            log,
            debug,
            finished: false,
            error: None,
            ended_ns: None,
            proc_state: None,
            proc_state_since: session.start_ns,
            title_now: None,
            logged_verdict: None,
            logged_phase: None,
            port,
            said_limits: session.limitations.clone(),
            session,
        }
    }

    fn now(&self) -> u64 {
        self.session.clock.now_ns()
    }

    /// What the app keeps beside its session (the log, what it said last): a replay's
    /// checkpoint holds it, the screen state aside (the user's, not the recording's).
    pub fn place(&self) -> AppPlace {
        AppPlace {
            log: self.log.clone(),
            finished: self.finished,
            error: self.error.clone(),
            ended_ns: self.ended_ns,
            proc_state: self.proc_state.clone(),
            proc_state_since: self.proc_state_since,
            title_now: self.title_now.clone(),
            logged_verdict: self.logged_verdict,
            logged_phase: self.logged_phase,
            said_limits: self.said_limits.clone(),
        }
    }

    pub fn restore_place(&mut self, p: AppPlace) {
        self.log = p.log;
        self.finished = p.finished;
        self.error = p.error;
        self.ended_ns = p.ended_ns;
        self.proc_state = p.proc_state;
        self.proc_state_since = p.proc_state_since;
        self.title_now = p.title_now;
        self.logged_verdict = p.logged_verdict;
        self.logged_phase = p.logged_phase;
        self.said_limits = p.said_limits;
    }

    /// A warning in the log (a replay's cut, say).
    pub fn note(&mut self, text: String) {
        let now = self.now();
        self.log.push(now, Level::Warn, text);
    }

    /// Drain the tracer into the model (and the log); notice the end of the process.
    pub fn poll(&mut self) {
        if self.finished {
            return;
        }
        let log = &mut self.log;
        let debug = self.debug;
        let was = self.session.tracer_name;
        let r = self.session.poll(|m, ev, applied| {
            log.record(m, ev, applied, debug);
            Ok(())
        });
        if self.session.tracer_name != was {
            // A tracer the attach thread handed over: said as an attach at start is.
            let now = self.now();
            let s = &self.session;
            self.log.push(
                now,
                Level::Info,
                format!("attached to pid {} via {}", s.pid, s.tracer_name),
            );
            for n in s
                .limitations
                .iter()
                .filter(|l| !self.said_limits.contains(l))
            {
                self.log.push(now, Level::Warn, n.clone());
            }
            self.said_limits = s.limitations.clone();
        }
        for n in self.session.take_notes() {
            let now = self.now();
            self.log.push(now, Level::Warn, n);
        }
        if let Err(e) = r {
            let msg = format!("{e:#}");
            let now = self.now();
            self.log
                .push(now, Level::Error, format!("capture stopped: {msg}"));
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
        self.ended_ns = Some(self.now());
        self.proc_state = None;
    }

    pub fn tick(&mut self, now: u64) {
        if self.finished {
            return;
        }
        self.session.tick(now);
        self.log_changes(now);
        let sample = self.session.model.status.as_ref().map(|v| &v.sample);
        let st = sample.and_then(|s| proc_state(&s.kernel));
        if st != self.proc_state {
            self.proc_state = st;
            self.proc_state_since = now;
        }
        self.title_now = sample.and_then(|s| s.title.clone());
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
        let now = self.ended_ns.unwrap_or_else(|| self.now());
        let s = &self.session;
        let mut limitations = s.limitations.clone();
        if let Some(why) = (s.usdt.reason.as_ref()).filter(|_| !s.usdt.active && !s.attaching()) {
            limitations.push(format!("no USDT: {why}"));
        }
        if let Some(n) = &s.memory_note {
            limitations.push(n.clone());
        }
        TraceInfo {
            pid: s.pid,
            title: s.title.clone(),
            title_now: self.title_now.clone(),
            datadir: s.datadir.display().to_string(),
            port: self.port,
            major: s.major,
            methods: if s.attaching() && s.tracing() {
                format!("{} (attaching…)", s.tracer_name)
            } else {
                s.tracer_name.to_string()
            },
            limitations,
            elapsed_s: now.saturating_sub(s.start_ns) as f64 / 1e9,
            events_per_s: if self.finished { 0.0 } else { s.events_per_s },
            now_ns: now,
            start_ns: s.start_ns,
            proc_state: self.proc_state.as_ref().map(|st| {
                // Running changes too fast for a duration to mean anything.
                let held = now.saturating_sub(self.proc_state_since);
                if st == "running" || held < 1_000_000_000 {
                    st.clone()
                } else {
                    format!("{st} for {}", crate::text::human_age(held))
                }
            }),
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
            .min(last(crate::ui::files::rows(m, &self.st).len()));
        self.st.scroll_relations = self
            .st
            .scroll_relations
            .min(last(crate::ui::relations::rows(m, &self.st).len()));
        self.st.scroll_log = self.st.scroll_log.min(last(self.log.len()));
        a
    }
}

pub struct PickerApp {
    lister: Lister,
    pub clusters: Vec<PgCluster>,
    pub st: PickerState,
    sampled_ns: u64,
    /// The top-wait column: every readable cluster's wait events, sampled.
    waits: super::waits::ClusterWaits,
    sample_hz: f64,
}

impl PickerApp {
    pub fn new(now_ns: u64) -> PickerApp {
        PickerApp::with_waits(now_ns, 0.0)
    }

    /// A picker whose top-wait column samples every readable cluster at `hz` (0: off).
    pub fn with_waits(now_ns: u64, hz: f64) -> PickerApp {
        let mut lister = Lister::new();
        let clusters = lister.sample();
        let mut p = PickerApp {
            lister,
            clusters,
            st: PickerState {
                note: crate::process::proc::picker_note(),
                ..PickerState::default()
            },
            sampled_ns: now_ns,
            waits: super::waits::ClusterWaits::default(),
            sample_hz: hz,
        };
        if hz > 0.0 {
            p.waits.update(&mut p.clusters, hz);
        }
        p
    }

    fn tick(&mut self, now_ns: u64) {
        if now_ns.saturating_sub(self.sampled_ns) >= PICKER_REFRESH.as_nanos() as u64 {
            self.clusters = self.lister.sample();
            if self.sample_hz > 0.0 {
                self.waits.update(&mut self.clusters, self.sample_hz);
            }
            self.sampled_ns = now_ns;
        }
    }

    pub fn key(&mut self, k: KeyEvent) -> Action {
        handle_picker_key(&self.clusters, &mut self.st, k)
    }
}

pub enum Screen {
    Picker(Box<PickerApp>),
    Trace(Box<TraceApp>),
}

/// What the loop needs besides its screen, keys and clock.
pub struct Pace {
    pub interval: Duration,
    pub duration: Option<Duration>,
    pub debug: bool,
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
    let stop = super::stop_flag()?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut open = |pid: Pid| open_session(pid, &opts);
    // Attach before taking the terminal: a bad pid is a one-line error on a sane screen.
    let first = match opts.pid {
        Some(pid) => Some(open(pid)?),
        None => None,
    };
    let theme = Theme::from_env();
    let mut guard = Guard::enter()?;
    let mut screen = match first {
        Some(s) => Screen::Trace(Box::new(TraceApp::new(s, opts.debug))),
        None => Screen::Picker(Box::new(PickerApp::with_waits(
            clock.now_ns(),
            opts.sample_hz,
        ))),
    };
    let pace = Pace {
        interval: opts.interval,
        duration: opts.duration,
        debug: opts.debug,
    };
    let mut keys = Keys::start();
    let result = event_loop(
        &mut guard,
        &mut keys,
        &mut screen,
        &pace,
        &stop,
        &theme,
        clock.as_ref(),
        &mut open,
    );
    let mut recorded = None;
    if let Screen::Trace(t) = &mut screen {
        t.session.detach();
        recorded = Some(t.session.end_recording(clock.now_ns()));
    }
    drop(guard);
    match recorded {
        Some(Ok(Some(p))) => eprintln!("pg_trace: recorded to {}", p.display()),
        Some(Err(e)) => eprintln!("pg_trace: {}", crate::text::visible(&format!("{e:#}"))),
        _ => {}
    }
    result
}

fn draw(display: &mut impl Display, screen: &Screen, theme: &Theme) -> Result<()> {
    display.terminal().draw(|f| match screen {
        Screen::Trace(t) => {
            let info = t.info();
            draw_trace(f, &t.session.model, &info, &t.log, &t.st, theme);
        }
        Screen::Picker(p) => picker::draw(f, &p.clusters, &p.st, theme),
    })?;
    display.drawn();
    Ok(())
}

/// The loop itself. `open` attaches to a pid the picker chose.
#[allow(clippy::too_many_arguments)]
pub fn event_loop(
    display: &mut impl Display,
    keys: &mut impl KeySource,
    screen: &mut Screen,
    pace: &Pace,
    stop: &AtomicBool,
    theme: &Theme,
    clock: &dyn Clock,
    open: &mut dyn FnMut(Pid) -> Result<Session>,
) -> Result<()> {
    let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let started = clock.now_ns();
    let mut next_tick = started;
    loop {
        let now = clock.now_ns();
        if stop.load(Ordering::Relaxed)
            || pace
                .duration
                .is_some_and(|d| now.saturating_sub(started) >= ns(d))
        {
            return Ok(());
        }
        if let Some(why) = display.broken() {
            anyhow::bail!(why);
        }
        if let Screen::Trace(t) = screen {
            t.poll();
        }
        let now = clock.now_ns();
        if now >= next_tick {
            let paused = match screen {
                Screen::Trace(t) => {
                    t.tick(now);
                    t.st.paused
                }
                Screen::Picker(p) => {
                    p.tick(now);
                    false
                }
            };
            if !paused {
                draw(display, screen, theme)?;
            }
            next_tick = now.saturating_add(ns(pace.interval));
        }
        let wait = Duration::from_nanos(next_tick.saturating_sub(clock.now_ns())).min(POLL_EVERY);
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
                            // The trace's sampling rate carries over to the picker's column.
                            let mut hz = 0.0;
                            if let Screen::Trace(t) = screen {
                                hz = t.session.model.waits.hz;
                                t.session.detach();
                            }
                            let mut p = PickerApp::with_waits(clock.now_ns(), hz);
                            p.st.selected = was;
                            *screen = Screen::Picker(Box::new(p));
                        }
                        Action::Attach(pid) => {
                            if let Screen::Picker(p) = screen {
                                p.st.message = Some(format!("attaching to pid {pid}…"));
                            }
                            draw(display, screen, theme)?;
                            match open(pid) {
                                Ok(s) => {
                                    *screen = Screen::Trace(Box::new(TraceApp::new(s, pace.debug)));
                                    next_tick = clock.now_ns();
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
                TermEvent::Resize(w, h) => display.resized(w, h),
                _ => {}
            }
            match keys.ready()? {
                Some(next) => ev = next,
                None => break,
            }
        }
        draw(display, screen, theme)?;
    }
}

fn open_session(pid: Pid, opts: &Options) -> Result<Session> {
    // A recording's header says how the session attached: so, when recording, the attach
    // is made before the first frame; otherwise on a thread, so the first frame never waits.
    let record = opts.record.as_ref().filter(|_| opts.pid == Some(pid));
    // The opt-in kernel probes are enabled on a live tracer: they too attach first.
    let mut s = if record.is_some() || opts.kernel.io_latency || opts.kernel.exact_waits {
        Session::open_with(pid, opts.backend, &opts.usdt, !opts.no_memory)?
    } else {
        Session::open_deferred(pid, opts.backend, &opts.usdt, !opts.no_memory)?
    };
    s.enable_kernel(&opts.kernel)?;
    s.start_wait_sampling(opts.sample_hz);
    // Only the process given with -p is recorded, not one picked later.
    if let Some(r) = record {
        s.record(r)?;
        s.notes.push(super::record::started_note(r));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_line_comes_from_the_sample() {
        let mut k = KernelState {
            state: Some('S'),
            wchan: Some("do_epoll_wait".into()),
            ..KernelState::default()
        };
        assert_eq!(proc_state(&k).unwrap(), "sleeping (do_epoll_wait)");
        k.syscall = Some(libc::SYS_epoll_wait);
        assert_eq!(proc_state(&k).unwrap(), "sleeping in epoll_wait");
        k.state = Some('R');
        assert_eq!(proc_state(&k).unwrap(), "running");
        assert_eq!(proc_state(&KernelState::default()), None);
    }
}
