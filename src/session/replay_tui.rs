//! The TUI over a recording: the live trace screen, played from the file at 1× to 100×,
//! with keys to pause (space), seek ±10 s (←/→), ±1 min (shift+←/→, PgUp/PgDn), to the
//! start or end (Home/End) and change speed (+/-). A seek restores the latest checkpoint
//! at or before its target (taken as the replay plays, see `checkpoints.rs`) when that is
//! back or further on than where the replay is, and plays the rest at full speed without
//! drawing.

use super::checkpoints::Checkpoints;
use super::replay::{Player, Step};
use super::tui::AppPlace;
use super::tui::{Display, KeySource, TraceApp};
use crate::trace::replay::{Clock, SystemClock};
use crate::ui::{draw_trace, Theme};
use anyhow::Result;
use ratatui::crossterm::event::{Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const SEC: u64 = 1_000_000_000;
/// The speeds `+` and `-` step through.
const SPEEDS: [f64; 7] = [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0];

/// Where the replay is, and how it moves.
pub struct Replayer {
    path: PathBuf,
    checkpoints: Checkpoints<AppPlace>,
    player: Player,
    pub app: TraceApp,
    /// The replay's time (session clock, ns).
    pub pos: u64,
    pub start: u64,
    pub end: u64,
    pub paused: bool,
    speed: usize,
    /// The recording has no more steps.
    pub done: bool,
    /// Seeks that restored a checkpoint stored in the file.
    pub stored_used: u64,
}

impl Replayer {
    pub fn open(path: &Path) -> Result<Replayer> {
        Replayer::open_with(path, None)
    }

    /// `every`: checkpoints this far apart in recording time (default: from its length).
    pub fn open_with(path: &Path, every: Option<u64>) -> Result<Replayer> {
        let (mut player, mut session) = Player::open(path)?;
        let (mut start, end) = player.rec.span();
        let base = player.start_at_base(&mut session);
        let mut app = TraceApp::new(session, false);
        if let Some(s) = base {
            // A ring dump: its window starts here, what came before is in the state.
            app.restore_place(s.app);
            start = s.high;
        }
        if let Some(c) = &player.rec.cut {
            app.note(format!("{}: {c}: replaying up to there", path.display()));
        }
        let mut checkpoints = match every {
            Some(ns) => Checkpoints::every(ns),
            None => Checkpoints::for_span(end - start),
        };
        checkpoints.push(player.checkpoint(&app.session), app.place());
        Ok(Replayer {
            checkpoints,
            path: path.to_path_buf(),
            player,
            app,
            pos: start,
            start,
            end,
            paused: false,
            speed: 0,
            done: false,
            stored_used: 0,
        })
    }

    pub fn speed(&self) -> f64 {
        SPEEDS[self.speed]
    }

    /// Play on from here to `to`, every step, taking checkpoints in memory as it goes and
    /// using none (what a seek must match).
    pub fn play_straight_to(&mut self, to: u64) {
        self.play_to(to);
    }

    /// Play every step up to `to` (never beyond the recording's end).
    fn play_to(&mut self, to: u64) {
        let to = to.min(self.end);
        while let Some(at) = self.player.peek_at() {
            if at > to {
                break;
            }
            let log = &mut self.app.log;
            let r = self
                .player
                .step(&mut self.app.session, &mut |m, ev, applied| {
                    log.record(m, ev, applied, false);
                    Ok(())
                });
            match r {
                Ok(Some(Step::Tick(at))) => {
                    self.app.tick(at);
                    if self.checkpoints.due(at) {
                        let cp = self.player.checkpoint(&self.app.session);
                        self.checkpoints.push(cp, self.app.place());
                    }
                }
                Ok(Some(Step::End(_))) | Ok(None) => {
                    self.done = true;
                    break;
                }
                Ok(Some(_)) => {}
                Err(e) => {
                    self.app.note(format!("replay stopped: {e:#}"));
                    self.done = true;
                    break;
                }
            }
        }
        if self.player.peek_at().is_none() {
            self.done = true;
        }
        if let Some(e) = self.player.error.take() {
            self.app.note(format!("{e}: replayed up to there"));
        }
        self.pos = self.pos.max(to);
        self.player.clock.set(self.pos);
    }

    /// Go to `to`: from the latest checkpoint at or before it when that is back or
    /// ahead of here, else on from here.
    pub fn seek(&mut self, to: u64) -> Result<()> {
        let to = to.clamp(self.start, self.end);
        let here = self.player.at;
        let in_memory = self.checkpoints.at_or_before(to).map(|(cp, _)| cp.at);
        if let Some(i) = self.player.rec.stored_at_or_before(to) {
            let at = self.player.rec.checkpoints[i].first_at;
            if in_memory.map_or(true, |m| at > m)
                && (to < self.pos || at > here)
                && self.restore_stored(i, in_memory)
            {
                self.play_to(to);
                return Ok(());
            }
        }
        if let Some((cp, place)) = self
            .checkpoints
            .at_or_before(to)
            .filter(|(cp, _)| to < self.pos || cp.at > here)
        {
            self.player.restore(cp, &mut self.app.session)?;
            self.app.restore_place(place.clone());
            self.pos = cp.at;
            self.done = false;
        } else if to < self.pos {
            // No checkpoint before it (none is ever missing: the start is one).
            let st = std::mem::take(&mut self.app.st);
            let mut fresh = Replayer::open_with(&self.path, None)?;
            fresh.app.st = st;
            fresh.paused = self.paused;
            fresh.speed = self.speed;
            *self = fresh;
        }
        self.play_to(to);
        Ok(())
    }

    /// Restore stored checkpoint `i`, or an earlier one still later than `floor` (the
    /// best in memory) when it is damaged: whether one was.
    fn restore_stored(&mut self, i: usize, floor: Option<u64>) -> bool {
        let mut i = Some(i);
        while let Some(j) = i {
            let at = self.player.rec.checkpoints[j].first_at;
            if floor.is_some_and(|f| at <= f) {
                return false;
            }
            let r = self.player.rec.stored(j).and_then(|s| {
                self.player.restore(&s.cp, &mut self.app.session)?;
                Ok(s)
            });
            match r {
                Ok(s) => {
                    self.app.restore_place(s.app);
                    if let Some(c) = &self.player.rec.cut {
                        // Said first by a replay from the start; the recorder that stored
                        // the checkpoint did not know of the cut.
                        let text = format!("{}: {c}: replaying up to there", self.path.display());
                        self.app
                            .log
                            .prepend(self.start, crate::ui::log::Level::Warn, text);
                    }
                    self.pos = s.cp.at;
                    self.done = false;
                    self.stored_used += 1;
                    return true;
                }
                Err(e) => {
                    self.app.note(format!(
                        "a stored checkpoint is damaged ({e:#}): played from an earlier point"
                    ));
                    i = j.checked_sub(1);
                }
            }
        }
        false
    }

    /// How many checkpoints it has taken (for tests).
    pub fn checkpoints(&self) -> usize {
        self.checkpoints.len()
    }

    /// A replay key, if it is one: handled.
    fn key(&mut self, code: KeyCode, mods: KeyModifiers) -> Result<bool> {
        let shift = mods.contains(KeyModifiers::SHIFT);
        let back = |s: u64, d: u64| s.saturating_sub(d);
        match code {
            KeyCode::Char(' ') => self.paused = !self.paused,
            KeyCode::Left => self.seek(back(self.pos, if shift { 60 } else { 10 } * SEC))?,
            KeyCode::Right => self.seek(self.pos + if shift { 60 } else { 10 } * SEC)?,
            KeyCode::PageUp => self.seek(back(self.pos, 60 * SEC))?,
            KeyCode::PageDown => self.seek(self.pos + 60 * SEC)?,
            KeyCode::Home => self.seek(self.start)?,
            KeyCode::End => self.seek(self.end)?,
            KeyCode::Char('+') => self.speed = (self.speed + 1).min(SPEEDS.len() - 1),
            KeyCode::Char('-') => self.speed = self.speed.saturating_sub(1),
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub fn draw(&self, display: &mut impl Display, theme: &Theme) -> Result<()> {
        let mut info = self.app.info();
        info.methods = format!(
            "{}, replay {}/{} {}×{}",
            info.methods,
            crate::text::human_duration(self.pos.saturating_sub(self.start) as f64 / 1e9),
            crate::text::human_duration(self.end.saturating_sub(self.start) as f64 / 1e9),
            self.speed(),
            if self.paused {
                " paused"
            } else if self.done {
                " ended"
            } else {
                ""
            }
        );
        info.now_ns = self.pos;
        info.elapsed_s = self.pos.saturating_sub(self.start) as f64 / 1e9;
        display.terminal().draw(|f| {
            draw_trace(
                f,
                &self.app.session.model,
                &info,
                &self.app.log,
                &self.app.st,
                theme,
            )
        })?;
        display.drawn();
        Ok(())
    }
}

/// `pg_trace replay FILE` on a terminal.
pub fn run(file: &Path, interval_ms: u64) -> Result<()> {
    let stop = super::stop_flag()?;
    let mut r = Replayer::open(file)?;
    let theme = Theme::from_env();
    let mut guard = super::terminal::Guard::enter()?;
    let mut keys = super::keys::Keys::start();
    event_loop(
        &mut guard,
        &mut keys,
        &mut r,
        Duration::from_millis(interval_ms),
        &stop,
        &theme,
        &SystemClock,
    )
}

/// The loop: play at the speed chosen on `clock` (the wall clock live), draw every
/// `interval`, handle keys; q quits.
pub fn event_loop(
    display: &mut impl Display,
    keys: &mut impl KeySource,
    r: &mut Replayer,
    interval: Duration,
    stop: &AtomicBool,
    theme: &Theme,
    clock: &dyn Clock,
) -> Result<()> {
    let mut wall = clock.now_ns();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if let Some(why) = display.broken() {
            anyhow::bail!(why);
        }
        let now = clock.now_ns();
        if !r.paused && !r.done {
            let ahead = (now.saturating_sub(wall) as f64 * r.speed()) as u64;
            r.play_to(r.pos.saturating_add(ahead));
        }
        wall = now;
        r.draw(display, theme)?;
        let Some(mut ev) = keys.next(interval)? else {
            continue;
        };
        loop {
            match ev {
                TermEvent::Key(k) if k.kind != KeyEventKind::Release => {
                    let replay_key = r.key(k.code, k.modifiers)?;
                    let quit = !replay_key
                        && matches!(
                            r.app.key(k),
                            crate::ui::actions::Action::Quit | crate::ui::actions::Action::Picker
                        );
                    if quit {
                        return Ok(());
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
    }
}
