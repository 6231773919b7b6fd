//! Per relation, across its segments and forks: how far through it the process is.

use super::coverage::{Coverage, Stretches, BLOCK};
use super::files::{smooth, RelIdentity, RelInfo};
use crate::pgdata::relfile::Fork;
use crate::trace::BlockProbe;
use std::collections::BTreeSet;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RelState {
    pub id: RelIdentity,
    /// Main fork size, all segments.
    pub size: Option<u64>,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// When it was last written (0: never).
    pub last_write_ns: u64,
    /// When it was last read, or a block of it accessed (0: never).
    pub last_read_ns: u64,
    /// Where in the main fork (segments laid end to end) the last read ended.
    pub position: Option<u64>,
    /// The furthest point any read of the main fork reached.
    pub highest: u64,
    pub reads: u64,
    pub segments: BTreeSet<u32>,
    #[serde(with = "crate::model::sstr::set")]
    pub forks: BTreeSet<crate::model::sstr::Static>,
    pub first_ns: u64,
    pub last_ns: u64,
    pub pending_bytes: u64,
    pub(crate) rate_window: super::files::Window,
    pub(crate) blocks_window: super::files::Window,
    pub rate_bps: f64,
    /// Bytes written per second, apart: a relation being built (an index, a table
    /// loaded) reads nothing, and its read rate said nothing of it.
    #[serde(default)]
    pub pending_written: u64,
    #[serde(default)]
    pub(crate) write_window: super::files::Window,
    #[serde(default)]
    pub write_rate_bps: f64,
    /// Which parts of the main fork were read.
    pub coverage: Coverage,
    pub(crate) size_checked_ns: u64,
    /// USDT `buffer__read__done`, all forks (as pg_statio counts them): blocks found in
    /// shared buffers, and blocks that had to be read.
    pub blocks_hit: u64,
    pub blocks_read: u64,
    /// USDT smgr probes: blocks read from / written to the files.
    pub smgr_blocks_read: u64,
    pub smgr_blocks_written: u64,
    /// The last main-fork block a USDT probe named.
    pub last_block: Option<u32>,
    pub pending_blocks: u64,
    /// Block accesses per second (hits and misses).
    pub blocks_per_s: f64,
    /// Some of its figures are guessed: the procfs backend credits `rchar` growth, or the
    /// end of a scan was taken from shared buffers.
    pub estimate: bool,
    /// Main-fork bytes counted as passed because shared buffers held them (a scan finds
    /// them there and never reads them from the file), less what was read since.
    pub from_shared: Stretches,
    /// Read since the last end of a query of the traced process: its scan may end.
    pub(crate) in_query: bool,
    /// Set when a query end found the rest of it in shared buffers: reads stamped up to
    /// this time belong to that scan (drained late, they cannot move the position back).
    pub completed_ns: Option<u64>,
    /// A query ended short of the end and nobody can say whether the rest was in shared
    /// buffers (no memory reading).
    pub rest_unknown: bool,
    /// When the last query end was judged for this relation: a read stamped before it and
    /// drained after it (the exit is often noticed before the ring buffer is drained)
    /// belongs to that query, and the end is judged again with it.
    pub(crate) ended_ns: Option<u64>,
    /// When the record last changed without a read (a scan completed from shared buffers).
    pub updated_ns: u64,
}

impl RelState {
    pub fn new(r: &RelInfo, size: Option<u64>, ts: u64) -> RelState {
        RelState {
            id: r.id.clone(),
            size,
            bytes_read: 0,
            bytes_written: 0,
            last_write_ns: 0,
            last_read_ns: 0,
            position: None,
            highest: 0,
            reads: 0,
            segments: BTreeSet::new(),
            forks: BTreeSet::new(),
            first_ns: ts,
            last_ns: 0,
            pending_bytes: 0,
            rate_window: Default::default(),
            blocks_window: Default::default(),
            rate_bps: 0.0,
            pending_written: 0,
            write_window: Default::default(),
            write_rate_bps: 0.0,
            coverage: Coverage::new(),
            size_checked_ns: ts,
            blocks_hit: 0,
            blocks_read: 0,
            smgr_blocks_read: 0,
            smgr_blocks_written: 0,
            last_block: None,
            pending_blocks: 0,
            blocks_per_s: 0.0,
            estimate: false,
            from_shared: Stretches::default(),
            in_query: false,
            completed_ns: None,
            rest_unknown: false,
            ended_ns: None,
            updated_ns: 0,
        }
    }

    /// Blocks named by a USDT probe. Only `buffer__read__done` counts accesses (every
    /// access fires it once); the others (attached on request) add coverage and I/O counts.
    #[allow(clippy::too_many_arguments)]
    pub fn record_block(
        &mut self,
        r: &RelInfo,
        probe: BlockProbe,
        block: u32,
        nblocks: u32,
        hit: Option<bool>,
        write: bool,
        ts: u64,
        block_bytes: u64,
    ) {
        self.last_ns = ts;
        if !write {
            self.last_read_ns = ts;
        }
        self.in_query = true;
        self.forks.insert(r.fork.as_str());
        let n = u64::from(nblocks);
        match probe {
            BlockProbe::BufferReadDone => {
                self.pending_blocks += n;
                match hit {
                    Some(true) => self.blocks_hit += n,
                    _ => self.blocks_read += n,
                }
            }
            BlockProbe::SmgrReadDone => self.smgr_blocks_read += n,
            BlockProbe::SmgrWriteDone => self.smgr_blocks_written += n,
            _ => {}
        }
        if r.fork == Fork::Main && !(write && probe == BlockProbe::BufferReadDone) {
            let begin = u64::from(block) * block_bytes;
            let end = begin + n * block_bytes;
            self.coverage.mark(begin, n * block_bytes);
            self.last_block = Some(block.saturating_add(nblocks.saturating_sub(1)));
            self.position = Some(end);
            self.highest = self.highest.max(end);
            if self.size.is_some_and(|s| s < end) {
                self.size = Some(end);
            }
        }
    }

    /// Read or written through syscalls, or accessed through the buffer manager (USDT).
    pub fn touched(&self) -> bool {
        self.bytes_read + self.bytes_written + self.blocks_hit + self.blocks_read > 0
    }

    /// Share of block accesses found in shared buffers.
    pub fn hit_ratio(&self) -> Option<f64> {
        let total = self.blocks_hit + self.blocks_read;
        (total > 0).then(|| self.blocks_hit as f64 / total as f64)
    }

    /// Returns the end to judge again when this read belongs to a query already ended.
    pub fn record_read(
        &mut self,
        r: &RelInfo,
        start: u64,
        n: u64,
        ts: u64,
        seg_bytes: u64,
    ) -> Option<u64> {
        self.bytes_read += n;
        self.reads += 1;
        self.pending_bytes += n;
        self.last_ns = ts;
        self.last_read_ns = ts;
        self.forks.insert(r.fork.as_str());
        if r.fork == Fork::Main {
            self.segments.insert(r.segment);
            let begin = u64::from(r.segment) * seg_bytes + start;
            let end = begin + n;
            self.coverage.mark(begin, n);
            self.from_shared.remove(begin, end);
            // A read from before the end that completed the scan, drained late, is not
            // a new scan.
            if self.completed_ns.is_some_and(|c| ts <= c) {
                return None;
            }
            let late = self
                .ended_ns
                .filter(|&e| ts <= e.saturating_add(END_SLACK_NS));
            self.ended_ns = None;
            self.completed_ns = None;
            self.in_query = true;
            self.rest_unknown = false;
            self.position = Some(end);
            self.highest = self.highest.max(end);
            // A read past the size we knew means the relation grew (or we never knew).
            if self.size.is_some_and(|s| s < end) {
                self.size = Some(end);
            }
            return late;
        }
        None
    }

    pub(crate) fn tick(&mut self, dt_ns: u64) {
        self.rate_bps = smooth(
            self.rate_bps,
            &mut self.pending_bytes,
            &mut self.rate_window,
            dt_ns,
        );
        self.blocks_per_s = smooth(
            self.blocks_per_s,
            &mut self.pending_blocks,
            &mut self.blocks_window,
            dt_ns,
        );
        self.write_rate_bps = smooth(
            self.write_rate_bps,
            &mut self.pending_written,
            &mut self.write_window,
            dt_ns,
        );
    }

    /// A forward sweep so far: every block up to `upto` was touched (read, or passed in
    /// shared buffers), give or take one granule. An index scan's scattered reads are not.
    fn swept_to(&self, upto: u64) -> bool {
        // A few blocks found in shared buffers mid-scan leave holes the size of a block
        // or two: still a sweep.
        let touched = self.coverage.touched_bytes() + self.coverage.granule();
        touched >= upto || touched as f64 >= 0.95 * upto as f64
    }

    /// Read forward: at least `SWEEP_MIN_BLOCKS` blocks touched, and at least half of
    /// the stretch right before the position as long as all that was touched (at most
    /// `SWEEP_WINDOW`). Behind the frontier of a sequential scan, parallel or not,
    /// nearly every block was touched (holes: blocks found in shared buffers, unseen
    /// without USDT); an index scan's or a catalog lookup's reads are scattered, and
    /// their position will not run to the end.
    pub fn sweeping(&self) -> bool {
        let (Some(pos), Some(first)) = (self.position, self.coverage.first_touched()) else {
            return false;
        };
        let window = SWEEP_WINDOW.min(self.coverage.touched_bytes());
        let from = pos.saturating_sub(window).max(first);
        let span = pos.saturating_sub(from);
        self.coverage.blocks() >= SWEEP_MIN_BLOCKS
            && 2 * (self.coverage.touched_in(from, pos) + self.coverage.granule()) >= span
    }

    /// Blocks `[from, to)` of the main fork, which a sequential sweep passed without
    /// reading them, were all in shared buffers: counted as passed, from there.
    fn passed_in_buffers(&mut self, from: u64, to: u64) {
        let (begin, end) = (from * BLOCK, to * BLOCK);
        self.coverage.mark(begin, end - begin);
        self.from_shared.add(begin, end);
        self.estimate = true;
    }

    /// [`Self::shared_buffers_note`] in at most `width` characters: `16 % cached`,
    /// `rest cached?`, or nothing when even that does not fit.
    pub fn shared_buffers_note_within(&self, width: usize) -> Option<String> {
        let long = self.shared_buffers_note()?;
        if long.chars().count() <= width {
            return Some(long);
        }
        let short = long
            .replace("from shared buffers", "cached")
            .replace("rest may be in shared buffers", "rest cached?");
        (short.chars().count() <= width).then_some(short)
    }

    /// What views add to the percent about shared buffers: `16 % from shared buffers`
    /// (of the relation), or `rest may be in shared buffers` when nobody can tell.
    pub fn shared_buffers_note(&self) -> Option<String> {
        let cached = self.from_shared_buffers_bytes();
        match self.size.filter(|&s| s > 0) {
            _ if self.rest_unknown => Some("rest may be in shared buffers".into()),
            Some(size) if cached > 0 => {
                let pc = (cached as f64 * 100.0 / size as f64).min(100.0);
                Some(format!("{pc:.0} % from shared buffers"))
            }
            _ => None,
        }
    }

    /// Bytes counted as passed because shared buffers held them.
    pub fn from_shared_buffers_bytes(&self) -> u64 {
        self.from_shared.bytes()
    }

    /// Position of the last read within the whole relation, in percent.
    pub fn percent(&self) -> Option<f64> {
        let size = self.size.filter(|&s| s > 0)?;
        Some((self.position? as f64 * 100.0 / size as f64).min(100.0))
    }

    /// Seconds to the end at the current rate, for a relation being swept forward: the
    /// few blocks a catalog lookup or an index scan reads here and there will not run
    /// to the end, and an ETA for them would be a wrong fact.
    pub fn eta_s(&self) -> Option<f64> {
        if !self.sweeping() {
            return None;
        }
        let left = self.size?.saturating_sub(self.position?);
        let rate = self.progress_bps();
        (rate > 1.0).then(|| left as f64 / rate)
    }

    /// How fast the position moves: bytes read through syscalls, or, seen only through
    /// USDT, block accesses (a sequential scan touches each block once).
    pub fn progress_bps(&self) -> f64 {
        if self.rate_bps > 1.0 || self.blocks_per_s <= 0.0 {
            self.rate_bps
        } else {
            self.blocks_per_s * super::coverage::BLOCK as f64
        }
    }
}

/// Fewer blocks than this read are no sweep yet (nor ever, for a catalog lookup).
const SWEEP_MIN_BLOCKS: u64 = 8;
/// How far behind the position a sweep is judged.
const SWEEP_WINDOW: u64 = 64 << 20;

/// How far past a query's end its reads' stamps may fall.
const END_SLACK_NS: u64 = 20_000_000;

impl super::Model {
    /// A read of the main fork at `begin` after one that ended at `prev_end`: the blocks
    /// jumped over were passed in shared buffers when the pool holds every one of them and
    /// the reads so far sweep forward (a sequential scan skips resident blocks; an index
    /// scan jumps anywhere and is left alone).
    pub(crate) fn fill_gap(
        &mut self,
        r: &super::RelInfo,
        begin: u64,
        namer: &mut impl super::Namer,
    ) {
        let Some(rs) = self.relations.get(&r.id.locator) else {
            return;
        };
        let Some(prev_end) = rs.position else { return };
        // USDT block probes see hits themselves: nothing to infer then.
        let probed = rs.blocks_hit + rs.blocks_read > 0;
        if r.fork != Fork::Main || probed || rs.completed_ns.is_some() || !rs.swept_to(prev_end) {
            return;
        }
        let (from, to) = (prev_end.div_ceil(BLOCK), begin / BLOCK);
        let (Ok(lo), Ok(hi)) = (u32::try_from(from), u32::try_from(to)) else {
            return;
        };
        if lo >= hi || namer.resident_blocks(&r.id.locator, Fork::Main, lo..hi) != Some(hi - lo) {
            return;
        }
        if let Some(rs) = self.relations.get_mut(&r.id.locator) {
            rs.passed_in_buffers(from, to);
        }
    }

    /// The traced process's query ended at `ts` (its status went idle or changed query,
    /// its statement-done probe fired, or it exited). A relation it swept forward to
    /// some point, whose every block from there to the end shared buffers hold, was
    /// scanned to the end: the rest was found in the pool and never read from the file.
    /// Said as an estimate, with how much came from shared buffers. Never done while the
    /// query runs: a scan still going may yet read the rest.
    pub(crate) fn end_of_query(&mut self, ts: u64, namer: &mut impl super::Namer) {
        // A base backup reads files with pread, past shared buffers: nothing to infer.
        if self.backup.is_some() || self.expect_backup {
            return;
        }
        // Reads stamped a little after the end still belong to the query: the end is
        // taken from another clock, and eBPF stamps are clock ticks.
        let until = ts.saturating_add(END_SLACK_NS);
        let locators: Vec<_> = self
            .relations
            .iter()
            .filter(|(_, r)| r.in_query && r.last_ns <= until)
            .map(|(l, _)| *l)
            .collect();
        for loc in locators {
            let Some(rs) = self.relations.get_mut(&loc) else {
                continue;
            };
            rs.in_query = false;
            rs.ended_ns = Some(ts);
            // USDT saw every block access, hits included: its position is already exact.
            if rs.blocks_hit + rs.blocks_read > 0 {
                continue;
            }
            let (Some(size), Some(_)) = (rs.size, rs.position) else {
                continue;
            };
            let (from, to) = (rs.highest.div_ceil(BLOCK), size.div_ceil(BLOCK));
            if from >= to || !rs.swept_to(rs.highest) {
                continue;
            }
            let (Ok(lo), Ok(hi)) = (u32::try_from(from), u32::try_from(to)) else {
                continue;
            };
            let resident = namer.resident_blocks(&loc, Fork::Main, lo..hi);
            let updated = self.updated_ns(ts);
            let Some(rs) = self.relations.get_mut(&loc) else {
                continue;
            };
            match resident {
                Some(n) if n == hi - lo => {
                    rs.passed_in_buffers(from, to);
                    rs.position = Some(size);
                    rs.highest = size;
                    rs.completed_ns = Some(until);
                    rs.rest_unknown = false;
                    rs.updated_ns = updated;
                }
                Some(_) => {}
                None => {
                    rs.rest_unknown = rs.percent().is_some_and(|p| p < 100.0);
                    rs.updated_ns = updated;
                }
            }
        }
    }

    /// When the leader's query ended, if this status sample (taken at `ts`) says it did
    /// since the last one: not active any more, or active in a query started at another
    /// time. The state changed at `state_start` (wall clock), turned into the event clock
    /// through the sample's own wall-clock time.
    pub(crate) fn status_ends_query(
        &self,
        s: &crate::process::status::StatusSample,
        ts: u64,
    ) -> Option<u64> {
        if s.pid != self.leader || s.error.is_some() {
            return None;
        }
        let running = |st: &str| st == "active" || st == "fastpath function call";
        let prev = self.status.as_ref().map(|p| &p.sample);
        let ended = match s.state.as_deref() {
            None => false,
            // Only plain idle ends a query: `idle in transaction` sits between a cursor's
            // FETCHes, in the middle of its scan.
            Some("idle") => !ends_nothing(s.query.as_deref()),
            Some(st) if !running(st) => false,
            Some(_) => prev.is_some_and(|prev| {
                prev.state.as_deref().is_some_and(running)
                    && prev.state_start_us.is_some()
                    && prev.state_start_us != s.state_start_us
                    && !ends_nothing(prev.query.as_deref())
            }),
        };
        if !ended {
            return None;
        }
        let ago_ns = s.state_start_us.map_or(0, |t| (s.age_s(t) * 1e9) as u64);
        Some(ts.saturating_sub(ago_ns))
    }
}

/// Statements whose end says nothing about where a scan got to: a cursor's steps (the
/// scan goes on at the next FETCH) and transaction control (the scan ran in an earlier
/// statement that may have stopped early).
pub(crate) fn ends_nothing(query: Option<&str>) -> bool {
    let Some(q) = query else { return false };
    let word: String = q
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    matches!(
        word.as_str(),
        "FETCH"
            | "MOVE"
            | "DECLARE"
            | "CLOSE"
            | "COMMIT"
            | "END"
            | "ROLLBACK"
            | "ABORT"
            | "PREPARE"
            | "RELEASE"
            | "SAVEPOINT"
            | "BEGIN"
            | "START"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Model, Named, Namer, RelIdentity, RelInfo};
    use crate::pgdata::relfile::RelFileLocator;
    use crate::process::status::StatusSample;
    use crate::trace::{Event, EventKind, Syscall};
    use std::collections::BTreeSet;

    const SEG: u64 = 1 << 30;
    /// The table: 100 blocks.
    const BLOCKS: u64 = 100;
    const LEADER: i32 = 10;

    /// Names `base/5/100` (100 blocks); `resident` is what shared buffers hold (None:
    /// memory not readable).
    struct Pool {
        resident: Option<BTreeSet<u32>>,
        asked: usize,
    }

    impl Namer for Pool {
        fn name(&mut self, path: &str) -> Named {
            let locator = match crate::pgdata::classify(path, 16 << 20) {
                crate::pgdata::PathClass::Relation(f) => f.locator,
                other => panic!("{path}: {other:?}"),
            };
            Named {
                relpath: Some(path.into()),
                class: "relation",
                label: "public.t".into(),
                relation: Some(std::sync::Arc::new(RelInfo {
                    id: RelIdentity {
                        locator,
                        path: "base/5/100".into(),
                        label: "public.t".into(),
                        schema: Some("public".into()),
                        name: Some("t".into()),
                        kind: Some("table"),
                        table: None,
                        known: true,
                    },
                    fork: Fork::Main,
                    segment: 0,
                })),
            }
        }
        fn relation_size(&mut self, _: &RelInfo) -> Option<u64> {
            Some(BLOCKS * BLOCK)
        }
        fn file_size(&mut self, _: &str) -> Option<u64> {
            Some(BLOCKS * BLOCK)
        }
        fn resident_blocks(
            &mut self,
            _: &RelFileLocator,
            _: Fork,
            b: std::ops::Range<u32>,
        ) -> Option<u32> {
            self.asked += 1;
            Some(self.resident.as_ref()?.range(b).count() as u32)
        }
    }

    fn pool(resident: impl IntoIterator<Item = u32>) -> Pool {
        Pool {
            resident: Some(resident.into_iter().collect()),
            asked: 0,
        }
    }

    fn ev(ts: u64, pid: i32, kind: EventKind) -> Event {
        Event {
            ts_ns: ts,
            pid,
            kind,
        }
    }

    fn open(ts: u64) -> Event {
        ev(
            ts,
            LEADER,
            EventKind::Open {
                syscall: Syscall::Openat,
                dirfd: None,
                path: "base/5/100".into(),
                flags: 0,
                fd: 5,
            },
        )
    }

    /// Blocks `[from, to)` read in 16-block preads from `ts` on, 1 ns apart.
    fn read_blocks(m: &mut Model, n: &mut Pool, ts: u64, from: u64, to: u64) -> u64 {
        let mut t = ts;
        let mut b = from;
        while b < to {
            let k = (to - b).min(16);
            let kind = EventKind::Read {
                syscall: Syscall::Pread64,
                fd: 5,
                offset: Some(b * BLOCK),
                requested: k * BLOCK,
                result: (k * BLOCK) as i64,
            };
            m.apply(&ev(t, LEADER, kind), n);
            b += k;
            t += 1;
        }
        t
    }

    fn status(ts: u64, state: &str, start_us: i64) -> Event {
        let sample = StatusSample {
            pid: LEADER,
            major: 18,
            state: Some(state.into()),
            state_start_us: Some(start_us),
            // The sample taken 1 s after its state started: the end is 1 s before `ts`.
            sampled_at_us: crate::process::status::PG_EPOCH_UNIX_US + start_us + 1_000_000,
            ..Default::default()
        };
        ev(
            ts,
            LEADER,
            EventKind::Status {
                sample: Box::new(sample),
            },
        )
    }

    fn rel(m: &Model) -> &RelState {
        m.relation_at("base/5/100").unwrap()
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn resident_tail_completes_only_when_the_query_ends() {
        let mut m = Model::new(LEADER, SEG);
        let mut n = pool(72..100);
        m.apply(&open(1), &mut n);
        m.apply(&status(2, "active", 0), &mut n);
        read_blocks(&mut m, &mut n, 3, 0, 72);
        // Still running: never extended, whatever is resident.
        m.apply(&status(5 * S, "active", 0), &mut n);
        assert_eq!(rel(&m).percent(), Some(72.0));
        assert_eq!(n.asked, 0);
        // Idle since 1 s before the sample: the scan ended after its last read.
        m.apply(&status(10 * S, "idle", 100), &mut n);
        let r = rel(&m);
        assert_eq!(r.percent(), Some(100.0));
        assert!(r.estimate);
        assert_eq!(r.from_shared_buffers_bytes(), 28 * BLOCK);
        assert_eq!(r.coverage.blocks(), BLOCKS);
        assert_eq!(r.shared_buffers_note().unwrap(), "28 % from shared buffers");
        assert_eq!(r.shared_buffers_note_within(12).unwrap(), "28 % cached");
        assert_eq!(r.shared_buffers_note_within(5), None);
        // A read of that scan drained late does not move it back.
        read_blocks(&mut m, &mut n, 20, 56, 72);
        assert_eq!(rel(&m).percent(), Some(100.0));
        // A new scan does.
        read_blocks(&mut m, &mut n, 11 * S, 0, 16);
        assert_eq!(rel(&m).percent(), Some(16.0));
    }

    fn status_q(ts: u64, state: &str, start_us: i64, query: &str) -> Event {
        let mut e = status(ts, state, start_us);
        if let EventKind::Status { sample } = &mut e.kind {
            sample.query = Some(query.into());
        }
        e
    }

    #[test]
    fn a_cursor_paused_between_fetches_is_not_complete() {
        let mut m = Model::new(LEADER, SEG);
        let mut n = pool(72..100);
        m.apply(&open(1), &mut n);
        m.apply(&status_q(2, "active", 0, "FETCH 10000 FROM c"), &mut n);
        read_blocks(&mut m, &mut n, 3, 0, 72);
        // Between two FETCHes: idle in transaction, the scan is mid-way.
        m.apply(
            &status_q(5 * S, "idle in transaction", 100, "FETCH 10000 FROM c"),
            &mut n,
        );
        assert_eq!(rel(&m).percent(), Some(72.0));
        // The next FETCH starts: the last one's end says nothing either.
        m.apply(
            &status_q(6 * S, "active", 200, "fetch 10000 from c"),
            &mut n,
        );
        m.apply(
            &status_q(7 * S, "active", 300, "FETCH 10000 FROM c"),
            &mut n,
        );
        // The transaction ends: what the cursor's scan reached is still unknown.
        m.apply(&status_q(9 * S, "idle", 400, "COMMIT"), &mut n);
        let r = rel(&m);
        assert_eq!(r.percent(), Some(72.0));
        assert!(!r.estimate);
    }

    #[test]
    fn reads_drained_after_the_end_are_judged_with_it() {
        let mut m = Model::new(LEADER, SEG);
        let mut n = pool(72..100);
        m.apply(&open(1), &mut n);
        read_blocks(&mut m, &mut n, 3, 0, 50);
        // The status sample saying idle is applied before the last reads are drained.
        m.apply(&status(2, "active", 0), &mut n);
        m.apply(&status(6 * S, "idle", 100), &mut n);
        assert_eq!(rel(&m).percent(), Some(50.0));
        // Those reads, stamped before the exit, reach the resident tail: complete.
        read_blocks(&mut m, &mut n, 4 * S, 50, 72);
        let r = rel(&m);
        assert_eq!(r.percent(), Some(100.0));
        assert!(r.estimate);
    }

    #[test]
    fn limit_is_not_extended_when_the_rest_is_not_resident() {
        let mut m = Model::new(LEADER, SEG);
        // Only some of the rest is in shared buffers.
        let mut n = pool((1..100).filter(|b| b % 2 == 0));
        m.apply(&open(1), &mut n);
        read_blocks(&mut m, &mut n, 3, 0, 1);
        m.apply(&status(10 * S, "idle", 100), &mut n);
        let r = rel(&m);
        assert_eq!(r.percent(), Some(1.0));
        assert!(!r.estimate);
        assert_eq!(r.from_shared_buffers_bytes(), 0);
        assert_eq!(r.shared_buffers_note(), None);
    }

    #[test]
    fn unknown_residency_says_so_when_short() {
        let mut m = Model::new(LEADER, SEG);
        let mut n = Pool {
            resident: None,
            asked: 0,
        };
        m.apply(&open(1), &mut n);
        read_blocks(&mut m, &mut n, 3, 0, 50);
        m.apply(
            &ev(
                10 * S,
                LEADER,
                EventKind::Exit {
                    code: Some(0),
                    signal: None,
                },
            ),
            &mut n,
        );
        let r = rel(&m);
        assert_eq!(r.percent(), Some(50.0));
        assert!(r.rest_unknown);
        assert_eq!(
            r.shared_buffers_note().unwrap(),
            "rest may be in shared buffers"
        );
    }

    #[test]
    fn gap_passed_in_buffers_counts_until_read() {
        let mut m = Model::new(LEADER, SEG);
        let mut n = pool(30..50);
        m.apply(&open(1), &mut n);
        let t = read_blocks(&mut m, &mut n, 3, 0, 30);
        read_blocks(&mut m, &mut n, t, 50, 60);
        let r = rel(&m);
        assert_eq!(r.from_shared_buffers_bytes(), 20 * BLOCK);
        assert_eq!(r.coverage.blocks(), 60);
        // A gap not wholly resident is left alone.
        let t = read_blocks(&mut m, &mut n, t + 10, 70, 80);
        assert_eq!(rel(&m).coverage.blocks(), 70);
        // Read after all (io workers complete out of order): no longer from buffers.
        read_blocks(&mut m, &mut n, t, 40, 50);
        assert_eq!(rel(&m).from_shared_buffers_bytes(), 10 * BLOCK);
    }

    #[test]
    fn scattered_reads_are_not_a_sweep() {
        let mut m = Model::new(LEADER, SEG);
        let mut n = pool(0..100);
        m.apply(&open(1), &mut n);
        // An index scan: block 80, then 10, then 40.
        for (i, b) in [80u64, 10, 40].iter().enumerate() {
            read_blocks(&mut m, &mut n, 3 + i as u64, *b, b + 1);
        }
        m.apply(&status(10 * S, "idle", 100), &mut n);
        let r = rel(&m);
        assert_eq!(r.coverage.blocks(), 3);
        assert_eq!(r.from_shared_buffers_bytes(), 0);
        assert!(r.percent().unwrap() < 100.0);
    }

    #[test]
    fn new_query_in_the_same_interval_ends_the_last_one_only() {
        let mut m = Model::new(LEADER, SEG);
        let mut n = pool(72..100);
        m.apply(&open(1), &mut n);
        m.apply(&status(2, "active", 0), &mut n);
        read_blocks(&mut m, &mut n, 3, 0, 72);
        // The next query started at 9 s (sample at 10 s, state 1 s old) and re-reads the
        // table from 9.5 s: that scan runs, and is not ended.
        read_blocks(&mut m, &mut n, 9 * S + S / 2, 0, 16);
        m.apply(&status(10 * S, "active", 100), &mut n);
        let r = rel(&m);
        assert_eq!(r.percent(), Some(16.0));
        assert!(r.in_query);
    }
}
