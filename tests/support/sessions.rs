//! Whole scripted sessions for the non-root tier (tests/app_*.rs): events a real run would
//! produce, replayed through the real loops on a scripted clock, with scripted keys and a
//! screen that keeps every frame. No root, no PostgreSQL, no terminal, no sleeping.

#![allow(dead_code)]

use super::scripted::{ev, open, pread, FakeNamer, MIB, PID, SEG, T0};
use pg_trace::process::status::StatusSample;
use pg_trace::session::tui::{Display, KeySource};
use pg_trace::session::{Replay, Session};
use pg_trace::trace::replay::{Clock, ManualClock, ReplayTracer};
use pg_trace::trace::{Event, EventKind};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

pub const MS: u64 = 1_000_000;
pub const SEC: u64 = 1_000_000_000;
/// PostgreSQL-epoch microseconds of T0 in the scripts' status samples.
const T0_PG_US: i64 = 800_000_000_000_000;

/// A scripted run: what the process was, and what it did.
pub struct Script {
    pub title: &'static str,
    pub events: Vec<Event>,
}

/// Through NDJSON and back, as a recording would be: the replay tracer reads what the
/// `Event` type writes.
fn ndjson(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A replay session of `script` on a clock starting at T0.
pub fn session(script: &Script) -> (Session, ManualClock) {
    let clock = ManualClock::starting_at(T0);
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let text = ndjson(&script.events);
    let tracer = ReplayTracer::from_ndjson(text.as_bytes(), shared.clone()).unwrap();
    let s = Session::replay(Replay {
        pid: PID,
        title: script.title.into(),
        datadir: "/var/lib/postgresql/15/main".into(),
        major: 15,
        segment_bytes: SEG,
        namer: Box::new(FakeNamer),
        tracer: Box::new(tracer),
        clock: shared,
    });
    (s, clock)
}

fn status(ts: u64, f: impl FnOnce(&mut StatusSample)) -> Event {
    let mut s = StatusSample {
        pid: PID,
        major: 15,
        backend_type: Some("client backend".into()),
        state: Some("active".into()),
        sampled_at_us: T0_PG_US + ((ts - T0) / 1000) as i64,
        ..StatusSample::default()
    };
    s.kernel.state = Some('R');
    f(&mut s);
    ev(
        ts,
        EventKind::Status {
            sample: Box::new(s),
        },
    )
}

fn exit(ts: u64) -> Event {
    ev(
        ts,
        EventKind::Exit {
            code: Some(0),
            signal: None,
        },
    )
}

/// A sequential scan of sales.orders (1.5 GiB: segment 0, then segment 1) at 320 MiB/s,
/// with a status sample every second; the backend exits at the end.
pub fn scan() -> Script {
    const QUERY: &str = "SELECT count(*) FROM sales.orders";
    let mut events = vec![open(T0, 24, "base/16385/16388")];
    let chunk = 32 * MIB;
    let mut t = T0;
    let mut pos = 0;
    while pos < SEG + SEG / 2 {
        t += 100 * MS;
        if pos == SEG {
            events.push(open(t, 25, "base/16385/16388.1"));
        }
        let (fd, off) = if pos < SEG {
            (24, pos)
        } else {
            (25, pos - SEG)
        };
        events.push(pread(t + 1, fd, off, chunk));
        pos += chunk;
        if (t - T0) % SEC == 0 {
            events.push(status(t + 2, |s| {
                s.query = Some(QUERY.into());
                s.wait_event_type = Some("IO".into());
                s.wait_event = Some("DataFileRead".into());
                s.kernel.state = Some('D');
                s.kernel.wchan = Some("folio_wait_bit_common".into());
                s.title = Some("postgres: alice shop [local] SELECT".into());
            }));
        }
    }
    events.push(ev(t + 50 * MS, EventKind::Close { fd: 24 }));
    events.push(ev(t + 50 * MS, EventKind::Close { fd: 25 }));
    events.push(exit(t + 100 * MS));
    Script {
        title: "postgres: alice shop [local] SELECT",
        events,
    }
}

/// A base backup throttled by --max-rate 4 MB/s: the walsender streams sales.orders' first
/// segment in 256 kB reads, its progress counters say phase 3 and the throttle wait;
/// after 5 s the client goes away and the walsender exits.
pub fn throttled_backup() -> Script {
    let mut events = vec![open(T0, 30, "base/16385/16388")];
    let total: i64 = 64 << 20;
    let mut streamed: i64 = 0;
    let mut t = T0;
    for i in 0..80u64 {
        t += 62_500 * 1000; // 16 reads a second of 256 kB: 4 MiB/s
        events.push(pread(t, 30, i * 256 * 1024, 256 * 1024));
        streamed += 256 * 1024;
        if i % 8 == 7 {
            let done = streamed;
            events.push(status(t + 1, |s| {
                s.backend_type = Some("walsender".into());
                s.query = Some("BASE_BACKUP ( LABEL 'nightly', PROGRESS, MAX_RATE 4096)".into());
                s.wait_event_type = Some("Timeout".into());
                s.wait_event = Some("BaseBackupThrottle".into());
                s.progress_command = Some("basebackup".into());
                s.progress_params = vec![3, total, done, 1, 0];
                s.kernel.state = Some('S');
                s.kernel.syscall = Some(libc::SYS_epoll_wait);
                s.title =
                    Some("postgres: walsender postgres [local] sending backup \"nightly\"".into());
            }));
        }
    }
    events.push(exit(t + 300 * MS));
    Script {
        title: "postgres: walsender postgres [local] sending backup \"nightly\"",
        events,
    }
}

/// An UPDATE waiting for a lock on sales.orders held by pid 5151, then granted; it reads
/// a little and the backend exits.
pub fn lock_wait() -> Script {
    let mut events = Vec::new();
    for i in 0..3u64 {
        events.push(status(T0 + i * SEC + MS, |s| {
            s.query = Some("UPDATE sales.orders SET paid = true WHERE id = 7".into());
            s.wait_event_type = Some("Lock".into());
            s.wait_event = Some("relation".into());
            s.lock_relation = Some("sales.orders".into());
            s.lock_holders = vec![5151];
            s.kernel.state = Some('S');
            s.kernel.syscall = Some(libc::SYS_epoll_wait);
        }));
    }
    let t = T0 + 3 * SEC + 200 * MS;
    events.push(open(t, 24, "base/16385/16388"));
    events.push(pread(t + MS, 24, 0, 8192));
    events.push(status(t + 2 * MS, |s| {
        s.query = Some("UPDATE sales.orders SET paid = true WHERE id = 7".into());
    }));
    events.push(exit(t + 500 * MS));
    Script {
        title: "postgres: alice shop [local] UPDATE waiting",
        events,
    }
}

/// Keys typed at scripted times; waiting for one moves the clock.
pub struct ScriptedKeys {
    clock: ManualClock,
    keys: VecDeque<(u64, TermEvent)>,
}

pub fn key(c: char) -> TermEvent {
    TermEvent::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

impl ScriptedKeys {
    /// `(ns after T0, event)`, in order.
    pub fn new(clock: &ManualClock, keys: Vec<(u64, TermEvent)>) -> ScriptedKeys {
        ScriptedKeys {
            clock: clock.clone(),
            keys: keys.into_iter().map(|(at, k)| (T0 + at, k)).collect(),
        }
    }
}

impl KeySource for ScriptedKeys {
    fn next(&mut self, wait: Duration) -> anyhow::Result<Option<TermEvent>> {
        let now = self.clock.now_ns();
        let until = now + wait.as_nanos() as u64;
        match self.keys.front() {
            Some(&(at, _)) if at <= until => {
                self.clock
                    .sleep(Duration::from_nanos(at.saturating_sub(now)));
                Ok(self.keys.pop_front().map(|k| k.1))
            }
            _ => {
                self.clock.sleep(wait);
                Ok(None)
            }
        }
    }
    fn ready(&mut self) -> anyhow::Result<Option<TermEvent>> {
        let now = self.clock.now_ns();
        if self.keys.front().is_some_and(|&(at, _)| at <= now) {
            return Ok(self.keys.pop_front().map(|k| k.1));
        }
        Ok(None)
    }
}

/// A `TestBackend` that keeps every frame, headed by its time and size.
pub struct Frames {
    pub terminal: Terminal<TestBackend>,
    clock: ManualClock,
    pub frames: Vec<String>,
}

impl Frames {
    pub fn new(clock: &ManualClock, w: u16, h: u16) -> Frames {
        Frames {
            terminal: Terminal::new(TestBackend::new(w, h)).unwrap(),
            clock: clock.clone(),
            frames: Vec::new(),
        }
    }
}

impl Display for Frames {
    type B = TestBackend;
    fn terminal(&mut self) -> &mut Terminal<TestBackend> {
        &mut self.terminal
    }
    fn resized(&mut self, w: u16, h: u16) {
        self.terminal.backend_mut().resize(w, h);
    }
    fn drawn(&mut self) {
        let buf = self.terminal.backend().buffer();
        let (w, h) = (buf.area.width, buf.area.height);
        let t = (self.clock.now_ns() - T0) as f64 / 1e9;
        let mut text = format!("── frame {} at {t:.3}s, {w}x{h} ──\n", self.frames.len());
        for y in 0..h {
            let line: String = (0..w).map(|x| buf[(x, y)].symbol()).collect();
            text.push_str(line.trim_end());
            text.push('\n');
        }
        self.frames.push(text);
    }
}

/// Reads in the first interval, then more reads after the last tick in the same poll as
/// the exit (no close: the exit closes every file). The last interval's files must still
/// be reported.
pub fn reads_then_exit() -> Script {
    let mut events = vec![
        open(T0, 24, "base/16385/16388"),
        pread(T0 + 100 * MS, 24, 0, 8 * MIB),
    ];
    events.push(open(T0 + 1_050 * MS, 25, "base/16385/16388.1"));
    events.push(pread(T0 + 1_060 * MS, 25, 0, 4 * MIB));
    events.push(pread(T0 + 1_070 * MS, 25, 4 * MIB, 4 * MIB));
    events.push(exit(T0 + 1_080 * MS));
    Script {
        title: "postgres: alice shop [local] SELECT",
        events,
    }
}
