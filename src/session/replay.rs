//! `pg_trace replay FILE`: a recording played through the same session and the same
//! loops' output as live, without root, PostgreSQL or the data directory. The session is
//! a replay session (no process), its namer answers from the recording, its clock is set
//! to each recorded step's time, and each tick applies the recorded status sample: the
//! model does exactly what it did live.

use super::record::format::{self, FrameInfo};
use super::record::names::RecordedNamer;
use super::record::{parse_frame, Header, Item, Walked};
use super::summary::write_summary;
use super::{Replay, Replayed, Session};
use crate::model::lines::shows_syscall;
use crate::model::Model;
use crate::output::record::Record;
use crate::output::trace as out;
use crate::output::Format;
use crate::pgdata::backup_size::Plan;
use crate::trace::replay::{Clock, ManualClock, ReplayTracer};
use crate::trace::usdt::UsdtStatus;
use crate::trace::Event;
use anyhow::{Context, Result};
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An opened recording: its facts and where its frames are.
pub struct Recording {
    /// Its format's version.
    pub version: u32,
    pub header: Header,
    pub frames: Vec<FrameInfo>,
    /// The replay checkpoints stored in the file (format 3), in time order.
    pub checkpoints: Vec<FrameInfo>,
    /// Why the frames stop before the end of the file, if they do.
    pub cut: Option<String>,
    src: Box<dyn format::Source + Send>,
    /// The zstd stream of the frames read last (format 4 continues one across frames).
    dec: Option<format::StreamDecoder>,
    pub path: PathBuf,
}

impl Recording {
    pub fn open(path: &Path) -> Result<Recording> {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Recording::from_source(Box::new(std::io::BufReader::new(file)), path)
    }

    pub fn from_source(mut src: Box<dyn format::Source + Send>, path: &Path) -> Result<Recording> {
        let o = format::open(src.as_mut()).with_context(|| path.display().to_string())?;
        let header: Header = serde_json::from_slice(&o.header)
            .with_context(|| format!("{}: a damaged recording header", path.display()))?;
        Ok(Recording {
            version: o.version,
            header,
            frames: o.frames,
            checkpoints: o.checkpoints,
            cut: o.cut,
            src,
            dec: None,
            path: path.to_path_buf(),
        })
    }

    /// The items of frame `i`.
    pub fn items(&mut self, i: usize) -> Result<Vec<Item>> {
        let f = *self.frames.get(i).context("no such frame")?;
        let read = format::read_frame_with(
            self.src.as_mut(),
            &self.frames,
            i,
            &mut self.dec,
            self.version,
        )?;
        parse_frame(&read).with_context(|| format!("the frame at byte {}", f.offset))
    }

    /// Stored checkpoint `i`, checked against the frames it points into: a damaged one
    /// is an error, for the caller to play from an earlier point instead.
    pub fn stored(&mut self, i: usize) -> Result<super::checkpoints::Stored> {
        let f = *self.checkpoints.get(i).context("no such checkpoint")?;
        let raw = format::read_checkpoint(self.src.as_mut(), &f)?;
        let s: super::checkpoints::Stored = rmp_serde::from_slice(&raw)
            .with_context(|| format!("a damaged checkpoint at byte {}", f.offset))?;
        let frame = s.cp.frame;
        let prev = frame
            .checked_sub(1)
            .map(|i| self.frames.get(i).map(|d| d.offset));
        let agrees = s.high == f.first_at
            && s.cp.at <= s.high
            && frame <= self.frames.len()
            && (frame < self.frames.len() || s.cp.skip == 0)
            && match prev {
                None => s.prev_offset.is_none(),
                Some(d) => d.is_some() && d == s.prev_offset,
            };
        if !agrees {
            anyhow::bail!(
                "the checkpoint at byte {} does not agree with the frames",
                f.offset
            );
        }
        Ok(s)
    }

    /// The latest stored checkpoint at or before `to`, by the index's times.
    pub fn stored_at_or_before(&self, to: u64) -> Option<usize> {
        self.checkpoints.iter().rposition(|c| c.first_at <= to)
    }

    /// The time span recorded (session clock, ns).
    pub fn span(&self) -> (u64, u64) {
        let end = self.frames.last().map_or(0, |f| f.last_at);
        (self.header.start_ns, end.max(self.header.start_ns))
    }
}

/// What one step of a replay was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Batch(u64),
    /// A tick is due at this time: its status is queued; the caller ticks (line mode
    /// prints its interval, the TUI logs and draws).
    Tick(u64),
    Finish(u64),
    End(u64),
}

impl Step {
    pub fn at(self) -> u64 {
        match self {
            Step::Batch(a) | Step::Tick(a) | Step::Finish(a) | Step::End(a) => a,
        }
    }
}

/// A recording being played into a replay session (which the caller holds: line mode, or
/// the TUI's app).
pub struct Player {
    pub clock: ManualClock,
    namer: RecordedNamer,
    pub rec: Recording,
    next_frame: usize,
    items: VecDeque<Item>,
    /// Why the replay stopped before the recording's end (a damaged frame), said once.
    pub error: Option<String>,
    /// The time of the last step played.
    pub at: u64,
    /// Items taken from the frame in `items` (frame `next_frame - 1`).
    consumed: usize,
    /// Ticks played so far.
    pub ticks: u64,
    /// A ring dump's carried walk total, for the next tick without one.
    carried: Option<Walked>,
    /// Notes read, to be said with the next step.
    notes: Vec<String>,
    /// Copier mode: the plan's parts read so far, for the tick it came at.
    plan: Option<Plan>,
}

/// A replay between two steps, to seek back to: where the player is in the file, the
/// names it has been given, the session's state (see [`Session::replay_state`]).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// The time of the last step played.
    pub at: u64,
    pub(super) frame: usize,
    pub(super) skip: usize,
    ticks: u64,
    carried: Option<Walked>,
    notes: Vec<String>,
    plan: Option<Plan>,
    answers: super::record::names::Answers,
    state: super::ReplayState,
}

/// The tracer's name as recorded: one of pg_trace's own, else leaked once (a replay is
/// opened a few times at most; the session wants a `&'static str`).
fn static_name(name: &str) -> &'static str {
    const NAMES: [&str; 8] = [
        "ebpf",
        "usdt",
        "ptrace",
        "procfs",
        "ebpf+usdt",
        "procfs+usdt",
        "ptrace+usdt",
        "replay",
    ];
    NAMES
        .into_iter()
        .find(|n| *n == name)
        .unwrap_or_else(|| Box::leak(name.to_string().into_boxed_str()))
}

impl Player {
    /// Open a recording and the replay session it plays into.
    pub fn open(path: &Path) -> Result<(Player, Session)> {
        Ok(Player::new(Recording::open(path)?))
    }

    pub fn new(rec: Recording) -> (Player, Session) {
        let h = &rec.header;
        let clock = ManualClock::starting_at(h.start_ns);
        let shared: Arc<dyn Clock> = Arc::new(clock.clone());
        let namer = RecordedNamer::default();
        let mut session = Session::replay(Replay {
            pid: h.pid,
            title: h.title.clone(),
            datadir: PathBuf::from(&h.datadir),
            major: h.major,
            segment_bytes: h.segment_bytes,
            namer: Box::new(namer.clone()),
            tracer: Box::new(ReplayTracer::new(Vec::new(), shared.clone())),
            clock: shared,
        });
        session.tracer_name = static_name(&h.backend);
        session.limitations = h.limitations.clone();
        session.usdt = UsdtStatus {
            active: h.usdt.active,
            reason: h.usdt.reason.clone(),
            probes: h.usdt.probes.clone(),
        };
        session.recorded_usdt_cost = h.usdt.cost.clone();
        session.memory_note = h.memory_note.clone();
        match (&h.copier_name, h.copier) {
            (Some(name), true) => session.model.start_copier(name),
            (None, true) => session.notes.push(
                "a copier-mode recording from an older pg_trace: the copier's plan and process states were not recorded"
                    .into(),
            ),
            _ => {}
        }
        let p = Player {
            at: h.start_ns,
            clock,
            namer,
            rec,
            next_frame: 0,
            items: VecDeque::new(),
            error: None,
            consumed: 0,
            ticks: 0,
            carried: None,
            notes: Vec::new(),
            plan: None,
        };
        (p, session)
    }

    /// A ring dump that starts with the state from before its window: restore it (the
    /// stored checkpoint before its first frame), for the caller to restore its place
    /// from. One that cannot be read is said, and the window plays from an empty state.
    pub fn start_at_base(&mut self, session: &mut Session) -> Option<super::checkpoints::Stored> {
        if !self.rec.header.ring.as_ref().is_some_and(|r| r.base) {
            return None;
        }
        let r = self.rec.stored(0).and_then(|s| {
            if s.cp.frame != 0 {
                anyhow::bail!("it does not start the dump");
            }
            self.restore(&s.cp, session)?;
            Ok(s)
        });
        match r {
            Ok(s) => Some(s),
            Err(e) => {
                session.notes.push(format!(
                    "{}: the state from before the ring's window is damaged ({e:#}): the window plays without it",
                    self.rec.path.display()
                ));
                None
            }
        }
    }

    /// Forget the frames played so far, when it stands between frames with nothing of
    /// one pending: for the replay behind a ring, which never seeks back and would
    /// otherwise keep a frame's place for every second of a run of days.
    pub fn forget_played(&mut self) {
        if self.items.is_empty() && self.next_frame == self.rec.frames.len() {
            self.rec.frames.clear();
            self.rec.dec = None;
            self.next_frame = 0;
            self.consumed = 0;
        }
    }

    fn pop(&mut self) -> Option<Item> {
        let i = self.items.pop_front()?;
        self.consumed += 1;
        Some(i)
    }

    /// Where the replay stands now, `session` included: take it between steps, after
    /// the caller has handled the last one (a tick ticked).
    pub fn checkpoint(&self, session: &Session) -> Checkpoint {
        let (frame, skip) = if self.items.is_empty() {
            (self.next_frame, 0)
        } else {
            (self.next_frame - 1, self.consumed)
        };
        Checkpoint {
            at: self.at,
            frame,
            skip,
            ticks: self.ticks,
            carried: self.carried,
            notes: self.notes.clone(),
            plan: self.plan.clone(),
            answers: self.namer.snapshot(),
            state: session.replay_state(),
        }
    }

    /// Back (or on) to `cp`: the file position, the names and the session as they were.
    pub fn restore(&mut self, cp: &Checkpoint, session: &mut Session) -> Result<()> {
        // Checked before anything changes: a stored checkpoint may be damaged, and the
        // caller then plays from an earlier one.
        if cp.frame > self.rec.frames.len() {
            anyhow::bail!("a checkpoint past the recording's frames");
        }
        let mut items = VecDeque::new();
        if cp.skip > 0 {
            let v = self.rec.items(cp.frame)?;
            if v.len() < cp.skip {
                anyhow::bail!("a checkpoint past its frame's items");
            }
            items.extend(v);
        }
        self.items = items;
        self.error = None;
        self.next_frame = cp.frame;
        self.consumed = 0;
        if cp.skip > 0 {
            self.next_frame = cp.frame + 1;
            for _ in 0..cp.skip {
                self.pop();
            }
        }
        self.namer.restore(cp.answers.clone());
        session.restore_replay_state(cp.state.clone());
        self.at = cp.at;
        self.ticks = cp.ticks;
        self.carried = cp.carried;
        self.notes = cp.notes.clone();
        self.plan = cp.plan.clone();
        self.clock.set(cp.at);
        Ok(())
    }

    fn fill(&mut self) -> bool {
        while self.items.is_empty() {
            if self.error.is_some() || self.next_frame >= self.rec.frames.len() {
                return false;
            }
            match self.rec.items(self.next_frame) {
                Ok(v) => {
                    self.items.extend(v);
                    self.consumed = 0;
                }
                Err(e) => {
                    self.error = Some(format!("{}: {e:#}", self.rec.path.display()));
                    return false;
                }
            }
            self.next_frame += 1;
        }
        true
    }

    /// The time of the next step, names loaded on the way; None at the end.
    pub fn peek_at(&mut self) -> Option<u64> {
        loop {
            if !self.fill() {
                return None;
            }
            match self.items.front()? {
                Item::Names { .. } => {
                    if let Some(Item::Names { answers }) = self.pop() {
                        answers.into_iter().for_each(|a| self.namer.push(a));
                    }
                }
                Item::Carried { .. } => {
                    if let Some(Item::Carried { walked }) = self.pop() {
                        self.carried = walked.or(self.carried);
                    }
                }
                Item::Notes { .. } => {
                    if let Some(Item::Notes { notes }) = self.pop() {
                        self.notes.extend(notes);
                    }
                }
                Item::PlanPart { .. } => {
                    if let Some(Item::PlanPart {
                        files,
                        tablespaces,
                        truncated,
                    }) = self.pop()
                    {
                        let p = self.plan.get_or_insert_with(Plan::default);
                        p.files.extend(files);
                        if let Some(t) = tablespaces {
                            p.tablespaces = t;
                        }
                        p.truncated |= truncated;
                    }
                }
                i => return i.at(),
            }
        }
    }

    /// Play the next step. `each` sees every event before and after it is applied.
    pub fn step(
        &mut self,
        session: &mut Session,
        each: &mut dyn FnMut(&Model, &Event, bool) -> Result<()>,
    ) -> Result<Option<Step>> {
        if self.peek_at().is_none() {
            return Ok(None);
        }
        let Some(item) = self.pop() else {
            return Ok(None);
        };
        // The names given during this step, and the notes said after it, come after it
        // in the file.
        while self.fill()
            && matches!(
                self.items.front(),
                Some(Item::Names { .. } | Item::Notes { .. })
            )
        {
            match self.pop() {
                Some(Item::Names { answers }) => {
                    answers.into_iter().for_each(|a| self.namer.push(a))
                }
                Some(Item::Notes { notes }) => self.notes.extend(notes),
                _ => {}
            }
        }
        session.notes.append(&mut self.notes);
        let step = match item {
            Item::Batch { at, events } => {
                self.clock.set(at);
                session.replay_batch(events.0, each)?;
                Step::Batch(at)
            }
            Item::Tick {
                at,
                status,
                walked,
                waits,
                copier,
            } => {
                self.clock.set(at);
                let walked = walked.or_else(|| self.carried.take());
                let plan = if copier.as_ref().is_some_and(|c| c.plan) {
                    self.plan.take()
                } else {
                    None
                };
                session.replay_tick_input(Replayed {
                    status,
                    walked,
                    waits,
                    copier: copier.map(|c| *c),
                    plan,
                });
                self.ticks += 1;
                Step::Tick(at)
            }
            Item::Finish { at } => {
                self.clock.set(at);
                session.finish()?;
                Step::Finish(at)
            }
            Item::End { at } => {
                self.clock.set(at);
                Step::End(at)
            }
            Item::Names { .. }
            | Item::Carried { .. }
            | Item::Notes { .. }
            | Item::PlanPart { .. } => unreachable!("peek_at loads these"),
        };
        self.at = step.at();
        Ok(Some(step))
    }
}

/// How fast line mode replays: `--speed N` times real time, or as fast as it can.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    Times(f64),
    Max,
}

impl Speed {
    pub fn parse(s: &str) -> Result<Speed> {
        if s == "max" {
            return Ok(Speed::Max);
        }
        let n: f64 = s
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite() && *n > 0.0 && *n <= 1e6)
            .with_context(|| format!("--speed {s}: give a positive number or max"))?;
        Ok(Speed::Times(n))
    }
}

pub struct ReplayOptions {
    pub path: PathBuf,
    pub format: Format,
    pub debug: bool,
    pub speed: Speed,
}

/// Line mode's place in its output: what a seek in line mode restores beside the session.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct LinePlace {
    pub(super) last_print: u64,
    pub(super) first: bool,
    pub(super) finished: bool,
    pub(super) ended: bool,
}

impl LinePlace {
    pub fn new(session: &Session) -> LinePlace {
        LinePlace {
            last_print: session.start_ns,
            first: true,
            finished: false,
            ended: false,
        }
    }
}

/// Play one step as line mode does, printing to `w`: false at the end.
pub fn line_step<W: Write>(
    p: &mut Player,
    session: &mut Session,
    place: &mut LinePlace,
    w: &mut W,
    format: Format,
    debug: bool,
    note: &mut dyn FnMut(String),
) -> Result<bool> {
    let step = p.step(session, &mut |model, ev, applied| {
        if debug && shows_syscall(ev, applied) {
            out::write_syscall(&mut *w, model, ev, format)?;
        }
        Ok(())
    })?;
    let Some(step) = step else {
        return Ok(false);
    };
    match step {
        Step::Tick(at) => {
            session.tick(at);
            for n in session.take_notes() {
                note(n);
            }
            super::line::write_interval(
                &mut *w,
                session,
                place.last_print,
                at,
                format,
                place.first,
            )?;
            place.first = false;
            place.last_print = at;
        }
        Step::Finish(_) => place.finished = true,
        Step::End(at) => {
            for n in session.take_notes() {
                note(n);
            }
            write_summary(&mut *w, &session.model, at, format)?;
            place.ended = true;
            return Ok(false);
        }
        Step::Batch(_) => {}
    }
    Ok(true)
}

/// The end of line mode: the summary as of the last step when the recording has none
/// (cut, or stopped).
fn line_end<W: Write>(
    p: &mut Player,
    session: &mut Session,
    place: &LinePlace,
    w: &mut W,
    format: Format,
    note: &mut dyn FnMut(String),
) -> Result<()> {
    if let Some(e) = &p.error {
        note(format!("{e}: replayed up to there"));
    }
    if !place.ended {
        if !place.finished {
            session.finish()?;
        }
        write_summary(&mut *w, &session.model, p.at, format)?;
    }
    w.flush()?;
    Ok(())
}

/// Line mode over a recording: what live line mode printed (wall-clock fields aside).
pub fn line(
    opts: &ReplayOptions,
    w: &mut impl Write,
    note: &mut dyn FnMut(String),
    stop: &std::sync::atomic::AtomicBool,
) -> Result<()> {
    let rec = Recording::open(&opts.path)?;
    if let Some(c) = &rec.cut {
        note(format!(
            "{}: {c}: replaying up to there",
            opts.path.display()
        ));
    }
    let (mut p, mut session) = Player::new(rec);
    let mut place = LinePlace::new(&session);
    if let Some(s) = p.start_at_base(&mut session) {
        place = line_place(s.line, &mut session);
    }
    for n in session.take_notes() {
        note(n);
    }
    super::line::write_attach(w, &session, opts.format)?;
    // Paced from the first step played (a ring dump's window starts late).
    let start = p.at;
    let wall = Instant::now();
    loop {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        if let (Speed::Times(x), Some(at)) = (opts.speed, p.peek_at()) {
            let due = Duration::from_secs_f64(at.saturating_sub(start) as f64 / 1e9 / x);
            if let Some(wait) = due.checked_sub(wall.elapsed()) {
                std::thread::sleep(wait.min(Duration::from_millis(200)));
                continue;
            }
        }
        if !line_step(
            &mut p,
            &mut session,
            &mut place,
            w,
            opts.format,
            opts.debug,
            note,
        )? {
            break;
        }
    }
    line_end(&mut p, &mut session, &place, w, opts.format, note)
}

/// The JSON records line mode prints from recording time `to` on (the steps before `to`
/// played without printing), reached straight from the start (`every` None) or, with
/// checkpoints taken every `every` ns during a first pass through the whole recording,
/// from the latest checkpoint at or before `to` (a seek, as the TUI does). With it, the
/// time of the checkpoint used. The two must print the same.
pub fn records_from(
    path: &Path,
    to: u64,
    every: Option<u64>,
) -> Result<(Vec<Record>, Option<u64>)> {
    let (mut p, mut session) = Player::open(path)?;
    let mut place = LinePlace::new(&session);
    if let Some(s) = p.start_at_base(&mut session) {
        place = line_place(s.line, &mut session);
    }
    let format = Format::Json;
    let mut used = None;
    if let Some(every) = every {
        let mut cps = super::checkpoints::Checkpoints::every(every);
        cps.push(p.checkpoint(&session), place);
        let mut sink = std::io::sink();
        while line_step(
            &mut p,
            &mut session,
            &mut place,
            &mut sink,
            format,
            false,
            &mut |_| {},
        )? {
            if cps.due(p.at) {
                cps.push(p.checkpoint(&session), place);
            }
        }
        // Strictly before: a checkpoint may be between two steps at the same time, and
        // steps at `to` are printed. The first (nothing played) is always before.
        let (cp, at) = cps
            .at_or_before(to.saturating_sub(1))
            .or(cps.first())
            .context("no checkpoint")?;
        p.restore(cp, &mut session)?;
        place = *at;
        used = Some(cp.at);
    }
    Ok((print_from(&mut p, &mut session, place, to)?, used))
}

/// As [`records_from`], from the latest checkpoint stored in the file before `to`
/// (none: from the start), with its time.
pub fn records_from_stored(path: &Path, to: u64) -> Result<(Vec<Record>, Option<u64>)> {
    let (mut p, mut session) = Player::open(path)?;
    let mut place = LinePlace::new(&session);
    let mut used = None;
    if let Some(i) = p.rec.stored_at_or_before(to.saturating_sub(1)) {
        let s = p.rec.stored(i)?;
        p.restore(&s.cp, &mut session)?;
        place = line_place(s.line, &mut session);
        used = Some(s.high);
    } else if let Some(s) = p.start_at_base(&mut session) {
        place = line_place(s.line, &mut session);
    }
    Ok((print_from(&mut p, &mut session, place, to)?, used))
}

/// Line mode's place from a stored checkpoint, and the session made line mode's: the
/// state is the TUI's (the recorder plays as the TUI does), whose wait profile's interval
/// is never restarted; line mode restarts it after each interval it prints.
fn line_place(place: LinePlace, session: &mut Session) -> LinePlace {
    if !place.first {
        session.model.waits.next_interval();
    }
    place
}

/// Play on to `to` without printing, then print the rest as line mode's JSON.
fn print_from(
    p: &mut Player,
    session: &mut Session,
    mut place: LinePlace,
    to: u64,
) -> Result<Vec<Record>> {
    let format = Format::Json;
    let mut sink = std::io::sink();
    while p.peek_at().is_some_and(|at| at < to) {
        if !line_step(
            p,
            session,
            &mut place,
            &mut sink,
            format,
            false,
            &mut |_| {},
        )? {
            break;
        }
    }
    let mut buf = Vec::new();
    if !place.ended {
        while line_step(p, session, &mut place, &mut buf, format, false, &mut |_| {})? {}
        line_end(p, session, &place, &mut buf, format, &mut |_| {})?;
    }
    let records = buf
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).context("a replayed record"))
        .collect::<Result<Vec<Record>>>()?;
    Ok(records)
}

/// The records `pg_trace replay FILE --no-tui --format json --speed max` prints.
pub fn replay_records(path: &Path) -> Result<Vec<Record>> {
    let opts = ReplayOptions {
        path: path.to_path_buf(),
        format: Format::Json,
        debug: false,
        speed: Speed::Max,
    };
    let mut buf = Vec::new();
    let stop = std::sync::atomic::AtomicBool::new(false);
    line(&opts, &mut buf, &mut |_| {}, &stop)?;
    buf.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).context("a replayed record"))
        .collect()
}

/// `pg_trace replay FILE --no-tui`: on stdout, notes on stderr.
pub fn run_line(opts: &ReplayOptions) -> Result<()> {
    let stop = super::stop_flag()?;
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(crate::text::safe::SafeText::new(stdout.lock()));
    let mut note = |n: String| eprintln!("pg_trace: {}", crate::text::visible(&n));
    line(opts, &mut w, &mut note, &stop)
}
