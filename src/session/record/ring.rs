//! Ring mode (`--keep 15m`): the last minutes of a recording, compressed frames in memory,
//! written out on demand. Frames older than the window are played, as they leave it, by a
//! replay behind the ring (the same replay a file's stored checkpoints come from): its
//! state is the session's at the start of the window. A dump begins with that state as a
//! stored checkpoint its replay starts from, so the dump replays the window exactly as the
//! live session showed it: the files opened hours before, the wait profile and the
//! relation totals since attach, a copier's plan and the files it has copied.

use super::mem::MemFile;
use super::{format, Header, RingInfo};
use crate::session::checkpoints;
use anyhow::Result;
use format::Frame;
use std::collections::VecDeque;
use std::path::PathBuf;

/// Whatever the window, the ring holds at most this much compressed (the oldest frames go
/// first): a burst of events cannot grow it without bound.
pub const MAX_RING_BYTES: usize = 256 << 20;

pub struct Ring {
    keep_ns: u64,
    max_bytes: usize,
    /// Each with whether it ends between two steps.
    frames: VecDeque<(Frame, bool)>,
    bytes: usize,
    behind: Option<Behind>,
    /// Why the replay behind stopped: dumps from then on start with what they hold.
    behind_failed: Option<String>,
    path: PathBuf,
    force: bool,
    pub dump_on_stall: bool,
    dumps: u32,
}

/// The replay of the frames that left the ring.
struct Behind {
    writer: Box<checkpoints::Writer>,
    mem: MemFile,
    /// Frames let go but not played yet (cut inside a step, played with the frame that
    /// ends it): a dump holds them before its window.
    unplayed: Vec<Frame>,
}

impl Ring {
    /// A ring for the session whose facts are `header`.
    pub fn new(
        keep: std::time::Duration,
        path: PathBuf,
        force: bool,
        dump_on_stall: bool,
        header: &Header,
    ) -> Result<Ring> {
        let json = serde_json::to_vec(header)?;
        let (behind, behind_failed) = match checkpoints::Writer::behind(&json, &path) {
            Ok((writer, mem)) => (
                Some(Behind {
                    writer: Box::new(writer),
                    mem,
                    unplayed: Vec::new(),
                }),
                None,
            ),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        Ok(Ring {
            keep_ns: u64::try_from(keep.as_nanos()).unwrap_or(u64::MAX),
            max_bytes: MAX_RING_BYTES,
            frames: VecDeque::new(),
            bytes: 0,
            behind,
            behind_failed,
            path,
            force,
            dump_on_stall,
            dumps: 0,
        })
    }

    /// For tests: a smaller byte bound.
    pub fn with_max_bytes(mut self, n: usize) -> Ring {
        self.max_bytes = n;
        self
    }

    /// A frame, `step_end` when it ends between two steps.
    pub fn push(&mut self, f: Frame, step_end: bool) -> Result<()> {
        let newest = f.last_at;
        self.bytes += f.payload.len();
        self.frames.push_back((f, step_end));
        while let Some((old, _)) = self.frames.front() {
            let too_old = newest.saturating_sub(old.last_at) > self.keep_ns;
            if !(too_old || self.bytes > self.max_bytes) || self.frames.len() == 1 {
                break;
            }
            let (old, step_end) = self.frames.pop_front().expect("checked above");
            self.bytes -= old.payload.len();
            self.let_go(old, step_end);
        }
        Ok(())
    }

    /// Into the replay behind: played at once when it ends a step.
    fn let_go(&mut self, f: Frame, step_end: bool) {
        let Some(b) = self.behind.as_mut() else {
            return;
        };
        let r = b.mem.frame(&f).and_then(|info| {
            b.writer
                // It stores nothing as it plays: the items' size does not matter.
                .frame_written(info, f.payload.len() as u64, 0, step_end)
                .map(|_| ())
        });
        match r {
            Ok(()) if step_end => {
                b.unplayed.clear();
                b.writer.forget_played();
                b.mem.drop_frames();
            }
            Ok(()) => b.unplayed.push(f),
            Err(e) => {
                self.behind = None;
                self.behind_failed = Some(format!("{e:#}"));
            }
        }
    }

    /// Compressed bytes held, and the time they span.
    pub fn extent(&self) -> (usize, u64) {
        let span = match (self.frames.front(), self.frames.back()) {
            (Some((a, _)), Some((b, _))) => b.last_at.saturating_sub(a.first_at),
            _ => 0,
        };
        (self.bytes, span)
    }

    /// Bytes the replay behind holds beside its state (frames not played yet), and the
    /// frames it keeps a place for.
    pub fn behind_held(&self) -> (usize, usize) {
        self.behind
            .as_ref()
            .map_or((0, 0), |b| (b.mem.held(), b.writer.frames_held()))
    }

    pub fn dump(&mut self, header: &Header, reason: &str) -> Result<Option<PathBuf>> {
        let Some((first, _)) = self.frames.front() else {
            return Ok(None);
        };
        // A state that cannot be stored leaves this dump without it, not unwritten.
        let (base, unplayed, lost): (Option<Frame>, &[Frame], _) = match &self.behind {
            Some(b) => match b.writer.base() {
                Ok(f) => (f, &b.unplayed, None),
                Err(e) => (None, &[], Some(format!("{e:#}"))),
            },
            None => (None, &[], self.behind_failed.clone()),
        };
        let mut h = header.clone();
        h.ring = Some(RingInfo {
            keep_s: self.keep_ns as f64 / 1e9,
            reason: reason.to_string(),
            base: base.is_some(),
            lost: lost.clone(),
        });
        if base.is_none() && lost.is_some() {
            // Nothing from before the window: its times count from its first frame.
            h.start_ns = unplayed.first().unwrap_or(first).first_at;
        }
        let json = serde_json::to_vec(&h)?;
        // Never over an earlier dump (or anything else) unless --force.
        let path = loop {
            let p = super::numbered(&self.path, self.dumps);
            self.dumps += 1;
            if self.force || !p.exists() {
                break p;
            }
            if self.dumps > 10_000 {
                anyhow::bail!(
                    "no free name for a ring dump next to {}",
                    self.path.display()
                );
            }
        };
        let mut w = format::FileWriter::create(&path, self.force, &json)?;
        if let Some(b) = &base {
            w.checkpoint(b)?;
        }
        for f in unplayed.iter().chain(self.frames.iter().map(|(f, _)| f)) {
            w.frame(f)?;
        }
        w.close()?;
        Ok(Some(path))
    }
}
