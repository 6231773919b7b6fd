//! Ring mode (`--keep 15m`): the last minutes of a recording, compressed frames in memory,
//! written out on demand. Frames older than the window are folded into a base: what a
//! replay of the rest needs from before it (the open files, the followers, the latest
//! status, the latest answer to every name question), written first in every dump, so a
//! dump replays on its own.

use super::names::{Answers, NameAnswer};
use super::{format, Header, Item, ItemRef, RingInfo, Walked};
use crate::trace::{Event, EventKind, Pid};
use anyhow::Result;
use format::Frame;
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

/// Whatever the window, the ring holds at most this much compressed (the oldest frames go
/// first): a burst of events cannot grow it without bound.
pub const MAX_RING_BYTES: usize = 256 << 20;

pub struct Ring {
    keep_ns: u64,
    max_bytes: usize,
    frames: VecDeque<Frame>,
    bytes: usize,
    base: Base,
    path: PathBuf,
    force: bool,
    pub dump_on_stall: bool,
    dumps: u32,
}

/// The state at the start of the oldest frame kept.
#[derive(Default)]
struct Base {
    at: Option<u64>,
    answers: Answers,
    files: BTreeMap<(Pid, i32), Event>,
    followers: BTreeMap<Pid, Event>,
    status: Option<Event>,
    /// The backup walk's total, once it came.
    walked: Option<Walked>,
}

impl Ring {
    pub fn new(
        keep: std::time::Duration,
        path: PathBuf,
        force: bool,
        dump_on_stall: bool,
    ) -> Result<Ring> {
        Ok(Ring {
            keep_ns: u64::try_from(keep.as_nanos()).unwrap_or(u64::MAX),
            max_bytes: MAX_RING_BYTES,
            frames: VecDeque::new(),
            bytes: 0,
            base: Base::default(),
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

    pub fn push(&mut self, f: Frame) -> Result<()> {
        let newest = f.last_at;
        self.bytes += f.payload.len();
        self.frames.push_back(f);
        while let Some(old) = self.frames.front() {
            let too_old = newest.saturating_sub(old.last_at) > self.keep_ns;
            if !(too_old || self.bytes > self.max_bytes) || self.frames.len() == 1 {
                break;
            }
            let old = self.frames.pop_front().expect("checked above");
            self.bytes -= old.payload.len();
            self.base.fold(&old)?;
        }
        Ok(())
    }

    /// Compressed bytes held, and the time they span.
    pub fn extent(&self) -> (usize, u64) {
        let span = match (self.frames.front(), self.frames.back()) {
            (Some(a), Some(b)) => b.last_at.saturating_sub(a.first_at),
            _ => 0,
        };
        (self.bytes, span)
    }

    pub fn dump(&mut self, header: &Header, reason: &str) -> Result<Option<PathBuf>> {
        let Some(first) = self.frames.front() else {
            return Ok(None);
        };
        let start = self.base.at.map_or(first.first_at, |_| first.first_at);
        let base = self.base.frame(start)?;
        let mut h = header.clone();
        h.ring = Some(RingInfo {
            keep_s: self.keep_ns as f64 / 1e9,
            reason: reason.to_string(),
        });
        if base.is_some() {
            // Interval times of the dump count from its first event.
            h.start_ns = start;
        }
        let json = serde_json::to_vec(&h)?;
        let frames: Vec<&Frame> = base.iter().chain(self.frames.iter()).collect();
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
        format::write_whole(&path, self.force, &json, &frames)?;
        Ok(Some(path))
    }
}

impl Base {
    fn fold(&mut self, f: &Frame) -> Result<()> {
        let raw = Frame::decompress(&f.payload)?;
        for item in super::parse_items(&raw)? {
            match item {
                Item::Batch { events, .. } => events.0.into_iter().for_each(|e| self.event(e)),
                Item::Names { answers } => answers.into_iter().for_each(|a| self.answers.push(a)),
                Item::Tick { status, walked, .. } => {
                    if status.is_some() {
                        self.status = status;
                    }
                    if walked.is_some() {
                        self.walked = walked;
                    }
                }
                Item::Carried { walked } => {
                    if walked.is_some() {
                        self.walked = walked;
                    }
                }
                // Not carried: a ring dump of copier mode has no plan from before it.
                Item::Finish { .. }
                | Item::End { .. }
                | Item::Notes { .. }
                | Item::PlanPart { .. } => {}
            }
        }
        self.answers.keep_latest();
        self.at = Some(f.last_at);
        Ok(())
    }

    fn event(&mut self, e: Event) {
        match &e.kind {
            EventKind::Open { fd, .. } if *fd >= 0 => {
                self.files.insert((e.pid, *fd), e);
            }
            EventKind::FileState { fd, .. } => {
                self.files.insert((e.pid, *fd), e);
            }
            EventKind::Close { fd } => {
                self.files.remove(&(e.pid, *fd));
            }
            EventKind::Dup { old_fd, new_fd, .. } => {
                if let Some(mut o) = self.files.get(&(e.pid, *old_fd)).cloned() {
                    match &mut o.kind {
                        EventKind::Open { fd, .. } | EventKind::FileState { fd, .. } => {
                            *fd = *new_fd
                        }
                        _ => {}
                    }
                    self.files.insert((e.pid, *new_fd), o);
                }
            }
            EventKind::NewFollower { .. } => {
                self.followers.insert(e.pid, e);
            }
            EventKind::Exit { .. } => {
                let pid = e.pid;
                self.followers.remove(&pid);
                self.files.retain(|(p, _), _| *p != pid);
            }
            EventKind::Status { .. } => self.status = Some(e),
            _ => {}
        }
    }

    /// The state as one frame at `at`: the followers, their open files, the latest
    /// status, as events of that time, the latest names, and the backup walk's total.
    /// None before anything was folded.
    fn frame(&self, at: u64) -> Result<Option<Frame>> {
        self.at.map_or(Ok(None), |_| {
            let mut events: Vec<Event> = self
                .followers
                .values()
                .chain(self.files.values())
                .chain(self.status.iter())
                .cloned()
                .collect();
            for e in &mut events {
                e.ts_ns = at;
            }
            let answers: Vec<NameAnswer> = self.answers.latest().cloned().collect();
            let mut raw = Vec::new();
            // Names first: the batch after them is named by them.
            let mut items = vec![
                ItemRef::Names { answers: &answers },
                ItemRef::Batch {
                    at,
                    events: super::EventsRef(&events),
                },
            ];
            if self.walked.is_some() {
                items.push(ItemRef::Carried {
                    walked: self.walked,
                });
            }
            for item in &items {
                serde_json::to_writer(&mut raw, item)?;
                raw.push(b'\n');
            }
            Frame::compress(at, at, items.len() as u32, &raw).map(Some)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(items: &[ItemRef], at: u64) -> Frame {
        let mut raw = Vec::new();
        for i in items {
            serde_json::to_writer(&mut raw, i).unwrap();
            raw.push(b'\n');
        }
        Frame::compress(at, at, items.len() as u32, &raw).unwrap()
    }

    /// A walk total that came before the window is carried by the base, and a later one
    /// replaces it.
    #[test]
    fn the_base_carries_the_backup_walk_total() {
        let walked = |bytes| Walked {
            bytes,
            tablespaces: Some(1),
        };
        let mut b = Base::default();
        let tick = |at, w| ItemRef::Tick {
            at,
            status: None,
            walked: w,
            waits: None,
            copier: None,
        };
        b.fold(&frame(&[tick(1, Some(walked(10)))], 1)).unwrap();
        b.fold(&frame(&[tick(2, None)], 2)).unwrap();
        let f = b.frame(5).unwrap().unwrap();
        let items = super::super::parse_items(&Frame::decompress(&f.payload).unwrap()).unwrap();
        assert_eq!(
            items.last(),
            Some(&Item::Carried {
                walked: Some(walked(10))
            })
        );
        b.fold(&frame(&[tick(3, Some(walked(20)))], 3)).unwrap();
        let f = b.frame(5).unwrap().unwrap();
        let items = super::super::parse_items(&Frame::decompress(&f.payload).unwrap()).unwrap();
        assert!(items.contains(&Item::Carried {
            walked: Some(walked(20))
        }));
    }
}
