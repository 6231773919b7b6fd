//! Seeking in a replay: the replayed state is captured every so often of recording time
//! as it plays ([`Player::checkpoint`](super::replay::Player::checkpoint)), so a seek
//! restores the nearest checkpoint at or before its target and plays only the rest. The
//! model only folds forward; without these a seek back plays from the start.

use super::replay::Checkpoint;

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
