//! Seeking in a replay: the replayed state is captured every so often of recording time
//! as it plays ([`Player::checkpoint`](super::replay::Player::checkpoint)), so a seek
//! restores the nearest checkpoint at or before its target and plays only the rest. The
//! model only folds forward; without these a seek back plays from the start.

use super::record::format::{self, Frame, FrameInfo, FRAME_HEADER_LEN};
use super::replay::{Checkpoint, LinePlace, Player, Step};
use super::tui::{AppPlace, TraceApp};

/// At most this many are kept: a long recording gets them further apart.
pub const MAX_CHECKPOINTS: u64 = 720;
/// At least this much recording time apart.
pub const MIN_EVERY_NS: u64 = 5_000_000_000;

/// Checkpoints in time order, each with what the caller keeps beside the session (the
/// TUI's log, line mode's place in its output).
pub struct Checkpoints<X> {
    every_ns: u64,
    list: Vec<(Checkpoint, X)>,
}

impl<X> Checkpoints<X> {
    /// For a recording spanning `span_ns`.
    pub fn for_span(span_ns: u64) -> Checkpoints<X> {
        Checkpoints::every(MIN_EVERY_NS.max(span_ns / MAX_CHECKPOINTS))
    }

    pub fn every(every_ns: u64) -> Checkpoints<X> {
        Checkpoints {
            every_ns: every_ns.max(1),
            list: Vec::new(),
        }
    }

    /// Whether a checkpoint at `at` is wanted: the first, or `every` after the last.
    pub fn due(&self, at: u64) -> bool {
        self.list
            .last()
            .map_or(true, |(c, _)| at >= c.at.saturating_add(self.every_ns))
    }

    /// Keep `cp`, if it is later than the last kept (a replay played again after a seek
    /// back passes the same points again).
    pub fn push(&mut self, cp: Checkpoint, x: X) {
        if self.list.last().map_or(true, |(c, _)| cp.at > c.at) {
            self.list.push((cp, x));
        }
    }

    /// The latest checkpoint at or before `to`.
    pub fn at_or_before(&self, to: u64) -> Option<&(Checkpoint, X)> {
        let i = self.list.partition_point(|(c, _)| c.at <= to);
        i.checked_sub(1).map(|i| &self.list[i])
    }

    pub fn first(&self) -> Option<&(Checkpoint, X)> {
        self.list.first()
    }

    /// The time of the latest checkpoint.
    pub fn last_at(&self) -> Option<u64> {
        self.list.last().map(|(c, _)| c.at)
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Stored checkpoints are at least this much recording time apart...
pub const STORED_EVERY_NS: u64 = 10_000_000_000;
/// ...and this many bytes of items (uncompressed) apart: what a replay plays from one to
/// a seek's target, about 0.2 s of its time (a throttled backup's items replay at ~80 MB/s,
/// a scan's faster). A slow recording (a throttled backup, an idle backend) stores them
/// minutes apart, not every 10 s: a backup's were more than a quarter of its file.
pub const STORED_EVERY_ITEM_BYTES: u64 = 16 << 20;

/// A replay's state as a recording stores it (`PTCK`, format 3): the player's and the
/// session's ([`Checkpoint`]), the TUI's place and line mode's, so that either restores
/// it as if it had played there.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Stored {
    pub cp: Checkpoint,
    pub app: AppPlace,
    pub line: LinePlace,
    /// The offset of the frame before the one it resumes in (none: it resumes in the
    /// first), checked on reading: the one it resumes in may not be written yet.
    pub prev_offset: Option<u64>,
    /// The latest step time played up to it, its time in the index: a recording's step
    /// times are not always in order (a drain can be stamped before the tick that came
    /// before it), and a seek to `t` may use it only if nothing at or after `t` was played.
    pub high: u64,
}

/// What storing checkpoints cost a recorder.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriterStats {
    pub count: u64,
    /// Bytes in the file (frame headers included).
    pub bytes: u64,
    /// Time spent playing the recording behind the recorder (ns).
    pub replay_ns: u64,
    /// Time spent encoding and compressing the checkpoints (ns).
    pub encode_ns: u64,
}

/// A recorder's checkpoints: a replay of the file as it is written, played a frame at a
/// time right after the frame, exactly as `pg_trace replay` plays it (the TUI's steps,
/// its log and ticks), its state stored every [`STORED_EVERY_NS`] of recording time and
/// [`STORED_EVERY_ITEM_BYTES`] of items (and as many bytes of frames as the last took). The
/// state stored is a replay's, so restoring it replays exactly as a straight replay does;
/// the live session's own state (its namer, its cost meter, its process) is not one.
pub struct Writer {
    player: Player,
    app: TraceApp,
    line: LinePlace,
    every_ns: u64,
    by_bytes: bool,
    last_at: Option<u64>,
    /// ...and at least as many bytes of frames apart as the last one took: a recording
    /// whose state is large next to its events (a copier's plan of a million files) gets
    /// them further apart, never more checkpoint than events.
    last_size: u64,
    bytes_since: u64,
    /// Bytes of items (uncompressed) since the last one.
    items_since: u64,
    start: u64,
    /// The latest step time played so far.
    high: u64,
    /// The last whole checkpoint written (its offset, bytes and compressed size): the
    /// next ones are stored against it while that keeps them under half its size.
    base: Option<(u64, Vec<u8>, usize)>,
    /// The bytes of the whole one just given to the recorder, until it says where it went.
    pending: Option<(Vec<u8>, usize)>,
    deltas: u32,
    pub stats: WriterStats,
    /// A frame was given to it (its frames may since have been forgotten).
    given: bool,
}

/// At most this many checkpoints are stored against one whole one.
const MAX_DELTAS: u32 = 32;
/// A whole checkpoint larger than this (a copier's plan of a million files) is no base:
/// the recorder would hold it in memory, and zstd would hash it for every delta.
const MAX_BASE_BYTES: usize = 8 << 20;

impl Writer {
    /// For the recording being written to `path` (its header written already).
    pub fn open(path: &std::path::Path) -> anyhow::Result<Writer> {
        let (player, session) = Player::open(path)?;
        Ok(Writer::playing(player, session))
    }

    /// For a ring: a replay of the frames the ring lets go, read from memory, that stores
    /// nothing as it plays; [`Writer::base`] is its state at the start of the window.
    pub fn behind(
        header: &[u8],
        path: &std::path::Path,
    ) -> anyhow::Result<(Writer, super::record::mem::MemFile)> {
        let (mem, reader) = super::record::mem::MemFile::new(header)?;
        let rec = super::replay::Recording::from_source(Box::new(reader), path)?;
        let (player, session) = Player::new(rec);
        let mut w = Writer::playing(player, session);
        w.every_ns = u64::MAX;
        w.by_bytes = false;
        Ok((w, mem))
    }

    /// The state played so far as a whole stored checkpoint that resumes in the first
    /// frame of a file holding the frames not played yet (a ring dump's base). None when
    /// nothing was played, or when it stands inside a frame (never, between steps).
    pub fn base(&self) -> anyhow::Result<Option<Frame>> {
        if !self.given {
            return Ok(None);
        }
        let mut stored = self.stored();
        if stored.cp.skip != 0 {
            return Ok(None);
        }
        stored.cp.frame = 0;
        stored.prev_offset = None;
        let raw = rmp_serde::to_vec_named(&stored)?;
        Frame::compress(stored.high, stored.high, 0, &raw).map(Some)
    }

    /// Frames it keeps a place for.
    pub fn frames_held(&self) -> usize {
        self.player.rec.frames.len()
    }

    /// Forget the frames played (a ring's replay behind: they are gone from memory).
    pub fn forget_played(&mut self) {
        self.player.forget_played();
    }

    fn playing(player: Player, session: super::Session) -> Writer {
        let start = session.start_ns;
        let app = TraceApp::new(session, false);
        let line = LinePlace::new(&app.session);
        // A test's or a study's schedule, without the size rule.
        let every = std::env::var("PG_TRACE_CHECKPOINT_EVERY_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(|ms| ms.saturating_mul(1_000_000));
        Writer {
            player,
            app,
            line,
            every_ns: every.unwrap_or(STORED_EVERY_NS),
            by_bytes: every.is_none(),
            last_at: None,
            last_size: 0,
            bytes_since: 0,
            items_since: 0,
            start,
            high: start,
            base: None,
            pending: None,
            deltas: 0,
            stats: WriterStats::default(),
            given: false,
        }
    }

    /// Frame `info` (`bytes` compressed, `raw` bytes of items) was written; `step_end`:
    /// it ends between two steps (a frame cut by size may end in a step's names, which the
    /// next one has). Plays what is written and gives the checkpoint to store after it, if
    /// one is due.
    pub fn frame_written(
        &mut self,
        info: FrameInfo,
        bytes: u64,
        raw: u64,
        step_end: bool,
    ) -> anyhow::Result<Option<Frame>> {
        self.player.rec.frames.push(info);
        self.given = true;
        self.bytes_since += bytes;
        self.items_since += raw;
        if !step_end {
            return Ok(None);
        }
        let t = std::time::Instant::now();
        let mut due = None;
        while self.player.peek_at().is_some() {
            let log = &mut self.app.log;
            let step = self
                .player
                .step(&mut self.app.session, &mut |m, ev, applied| {
                    log.record(m, ev, applied, false);
                    Ok(())
                })?;
            if let Some(s) = step {
                self.high = self.high.max(s.at());
            }
            match step {
                Some(Step::Tick(at)) => {
                    self.app.tick(at);
                    self.line.last_print = at;
                    self.line.first = false;
                    let after = self.last_at.unwrap_or(self.start);
                    if at >= after.saturating_add(self.every_ns)
                        && (!self.by_bytes
                            || (self.bytes_since >= self.last_size
                                && self.items_since >= STORED_EVERY_ITEM_BYTES))
                    {
                        due = Some(self.stored());
                        self.last_at = Some(at);
                        self.bytes_since = 0;
                        self.items_since = 0;
                    }
                }
                Some(Step::Finish(_)) => self.line.finished = true,
                Some(Step::End(_)) | None => break,
                Some(Step::Batch(_)) => {}
            }
        }
        if let Some(e) = self.player.error.take() {
            anyhow::bail!("{e}");
        }
        self.stats.replay_ns += t.elapsed().as_nanos() as u64;
        let Some(stored) = due else {
            return Ok(None);
        };
        let t = std::time::Instant::now();
        let raw = rmp_serde::to_vec_named(&stored)?;
        let items = u32::try_from(stored.cp.frame).unwrap_or(u32::MAX);
        let delta = match &self.base {
            Some((at, base, whole)) if self.deltas < MAX_DELTAS => {
                let mut payload = at.to_le_bytes().to_vec();
                payload.extend_from_slice(&format::compress_with(&raw, base)?);
                Some(payload).filter(|p| p.len() * 2 <= *whole)
            }
            _ => None,
        };
        let frame = match delta {
            Some(payload) => {
                self.deltas += 1;
                Frame {
                    first_at: stored.high,
                    last_at: stored.high,
                    items,
                    payload,
                    cont: true,
                }
            }
            None => {
                let f = Frame::compress(stored.high, stored.high, items, &raw)?;
                self.pending = (raw.len() <= MAX_BASE_BYTES).then_some((raw, f.payload.len()));
                self.base = None;
                f
            }
        };
        self.stats.encode_ns += t.elapsed().as_nanos() as u64;
        let size = (FRAME_HEADER_LEN + frame.payload.len()) as u64;
        self.stats.count += 1;
        self.stats.bytes += size;
        self.last_size = size;
        Ok(Some(frame))
    }

    /// The checkpoint just given was written at `info`: a whole one is the base of the
    /// next ones.
    pub fn stored_at(&mut self, info: FrameInfo) {
        if let Some((raw, whole)) = self.pending.take() {
            self.base = Some((info.offset, raw, whole));
            self.deltas = 0;
        }
    }

    /// Store one every `ns` of recording time, whatever their size.
    pub fn every(&mut self, ns: u64) {
        self.every_ns = ns.max(1);
        self.by_bytes = false;
    }

    fn stored(&self) -> Stored {
        let cp = self.player.checkpoint(&self.app.session);
        let prev_offset = (cp.frame.checked_sub(1))
            .and_then(|i| self.player.rec.frames.get(i))
            .map(|f| f.offset);
        Stored {
            cp,
            app: self.app.place(),
            line: self.line,
            prev_offset,
            high: self.high,
        }
    }
}
