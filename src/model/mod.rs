//! Pure state folding: events in, per-file / per-relation / per-process state out. Knows
//! nothing of how events were captured; asks a [`Namer`] to name paths and size relations.

pub mod backup;
pub mod copier;
pub mod cost;
pub mod coverage;
pub mod credit;
pub mod exact_waits;
pub mod files;
pub mod io_latency;
pub mod lines;
pub mod operation;
pub mod relations;
pub mod rename;
pub mod sched;
pub mod sstr;
pub mod stall;
pub mod status;
pub mod waits;

pub use files::{FileEntry, Named, RelIdentity, RelInfo};
pub use relations::RelState;

use crate::pgdata::relfile::{Fork, RelFileLocator, UNKNOWN_VERSION_DIR};
use crate::trace::{BlockIo, Event, EventKind, FollowerRole, Pid, QueryPhase, Syscall};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// The model's window on the outside world: names for paths, sizes of files.
pub trait Namer {
    /// Name a path as the process saw it (relative paths are relative to the data
    /// directory, the working directory of every postgres process).
    fn name(&mut self, path: &str) -> Named;
    /// Current size in bytes of a relation's main fork, all segments together.
    fn relation_size(&mut self, rel: &RelInfo) -> Option<u64>;
    /// Current size of one file.
    fn file_size(&mut self, path: &str) -> Option<u64>;
    /// The relation (and fork) a USDT buffer tag names, through the same path naming.
    /// Without the catalog version a tablespace's path cannot be built, so nothing there
    /// is named by default.
    fn name_block(&mut self, rel: &RelFileLocator, fork: Fork) -> Option<Arc<RelInfo>> {
        self.name(&rel.fork_path(fork, UNKNOWN_VERSION_DIR))
            .relation
    }
    /// A relation by pg_class OID in database `db` (lock tags carry OIDs, not filenodes).
    fn relation_by_oid(&mut self, _db: u32, _oid: u32) -> Option<RelIdentity> {
        None
    }
    /// The tables of database `db` whose rows `pg_dump` copies, as (schema, name):
    /// ordinary tables outside the system schemas and temp schemas. None: no catalog.
    fn dumped_tables(&mut self, _db: u32) -> Option<Vec<(String, String)>> {
        None
    }
    /// The heap bytes of the tables pg_dump copies before `table`, and of all of them
    /// (main forks, from the files). None: no catalog, or a pg_dump that selects or
    /// reorders.
    fn dump_bytes(&mut self, _db: u32, _table: &(String, String)) -> Option<(u64, u64)> {
        None
    }
    /// Where `table` stands among [`Namer::dumped_tables`]: (tables before it, tables in
    /// all). None: no catalog, or a pg_dump that selects or reorders.
    fn dump_position(&mut self, db: u32, table: &(String, String)) -> Option<(u64, u64)> {
        self.dumped_tables(db)
            .map(|t| operation::pg_dump::position(&t, table))
    }
    /// How many indexes table `oid` of database `db` has (a `CLUSTER` rebuilds them all).
    /// None: no catalog.
    fn index_count(&mut self, _db: u32, _oid: u32) -> Option<u64> {
        None
    }
    /// How many of `blocks` of the relation's fork shared buffers hold (valid): blocks a
    /// scan finds there without reading the file. None: not known (no memory reading).
    fn resident_blocks(
        &mut self,
        _rel: &RelFileLocator,
        _fork: Fork,
        _blocks: std::ops::Range<u32>,
    ) -> Option<u32> {
        None
    }
    /// Once per interval: re-read the names if due. True when some name may have changed
    /// (a rename, a rewrite, a commit): what was named before is asked again.
    fn refresh(&mut self) -> bool {
        false
    }
}

/// Query texts kept (newest last).
const QUERIES_KEPT: usize = 64;
/// Lock waits kept (newest last).
const LOCK_WAITS_KEPT: usize = 64;

/// One query text seen by a USDT probe.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QueryRec {
    pub pid: Pid,
    pub ts_ns: u64,
    /// When the record last changed, for per-interval output (never before the last tick).
    pub updated_ns: u64,
    pub phase: QueryPhase,
    pub text: String,
    pub truncated: bool,
    pub done_ns: Option<u64>,
}

/// One heavyweight lock wait.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LockWaitRec {
    pub pid: Pid,
    pub start_ns: u64,
    pub end_ns: Option<u64>,
    pub updated_ns: u64,
    pub locktag_type: u8,
    pub fields: [u32; 4],
    pub mode: i32,
    /// For relation locks: the relation, when the catalog knows its OID.
    pub relation: Option<RelIdentity>,
}

impl LockWaitRec {
    /// `AccessShareLock` ... `AccessExclusiveLock` (lockdefs.h, the same in 12–18).
    pub fn mode_name(&self) -> &'static str {
        match self.mode {
            1 => "AccessShareLock",
            2 => "RowShareLock",
            3 => "RowExclusiveLock",
            4 => "ShareUpdateExclusiveLock",
            5 => "ShareLock",
            6 => "ShareRowExclusiveLock",
            7 => "ExclusiveLock",
            8 => "AccessExclusiveLock",
            _ => "?",
        }
    }

    /// What is locked: the relation, or the lock tag in words.
    pub fn object(&self) -> String {
        let [f1, f2, f3, f4] = self.fields;
        match (self.locktag_type, &self.relation) {
            (0, Some(r)) => r.label.clone(),
            (0, None) => format!("relation {f2} in database {f1} (not in catalog yet)"),
            (1, Some(r)) => format!("extension of {}", r.label),
            (1, None) => format!("extension of relation {f2} in database {f1}"),
            (t, _) => format!("lock tag type {t} ({f1}, {f2}, {f3}, {f4})"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProcState {
    pub pid: Pid,
    /// None for the traced process itself.
    pub role: Option<FollowerRole>,
    pub exited: bool,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    /// /proc/PID/io (the /proc backend).
    pub io: Option<(u64, u64, u64, u64)>,
    /// When a follower was first seen (0 for the traced process): its kernel times count
    /// from then, not from the session's start.
    #[serde(default)]
    pub seen_ns: u64,
}

impl ProcState {
    fn new(pid: Pid, role: Option<FollowerRole>) -> ProcState {
        ProcState {
            pid,
            role,
            exited: false,
            exit_code: None,
            exit_signal: None,
            io: None,
            seen_ns: 0,
        }
    }
}

/// How often sizes are re-read for files and relations that are being worked on.
const SIZE_REFRESH_NS: u64 = 1_000_000_000;
/// Closed files kept for display, past the tick after they were last active.
const CLOSED_KEPT: usize = 64;
/// ...and every file active since the tick before (the interval being printed), whatever
/// their number (a copier closes hundreds a second), up to this many.
const CLOSED_MAX: usize = 100_000;
/// Line mode looks back a little before the interval's start (clock-tick timestamps).
const CLOSED_SLACK_NS: u64 = 50_000_000;

#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Model {
    pub leader: Pid,
    pub segment_bytes: u64,
    pub procs: BTreeMap<Pid, ProcState>,
    /// Open files by (pid, fd).
    pub files: BTreeMap<(Pid, i32), FileEntry>,
    /// Recently closed files, newest last.
    pub closed: Vec<FileEntry>,
    /// Files opened (or found open) since attach: the closed ones are not all kept.
    #[serde(default)]
    pub files_seen: u64,
    /// Relations by their files' locator (every fork and segment of one relation).
    pub relations: BTreeMap<RelFileLocator, RelState>,
    pub events: u64,
    pub lost: BTreeMap<String, u64>,
    pub first_ns: Option<u64>,
    pub last_ns: u64,
    pub(crate) last_tick_ns: Option<u64>,
    /// Buffer tags already named (unknown ones are forgotten each tick, to be re-asked).
    /// Looked up once per USDT block event: a fast hasher (SipHash was a tenth of
    /// pg_trace's CPU on a cache-warm scan; the keys are not attacker-chosen in bulk).
    block_names: HashMap<(RelFileLocator, Fork), Arc<RelInfo>, foldhash::fast::RandomState>,
    pub queries: VecDeque<QueryRec>,
    pub lock_waits: VecDeque<LockWaitRec>,
    pub sorts: u64,
    pub sorts_external: u64,
    /// The leader's status from memory and /proc, with the stall verdict.
    pub status: Option<status::StatusView>,
    /// A base backup run by the leader (a walsender).
    pub backup: Option<backup::BackupState>,
    /// A walsender (from its title): follow its syscalls for a base backup from attach.
    pub expect_backup: bool,
    /// Last read, write or send of the leader.
    pub last_io_ns: u64,
    /// The /proc backend's bytes: which file they are put on, and what is unattributed.
    pub credit: credit::Credit,
    /// `renamed: a → b` for open files whose name a catalog change altered, to be said
    /// once (taken by the session).
    pub renamed: Vec<String>,
    /// The leader's query ended at this time: judged once the event is applied.
    query_ended: Option<u64>,
    /// What tracing costs (live sessions only: a replay has no probes of its own).
    pub cost: cost::CostMeter,
    /// Copier mode: the traced process copies the data directory (tar, rsync...).
    pub copier: Option<copier::Copier>,
    /// The server's side of a running low-level backup; see [`Model::server_backup`].
    pub server_backup_view: Option<backup::ServerBackupView>,
    /// The leader's long operation (CREATE INDEX, VACUUM, COPY...) across samples.
    pub operation: Option<operation::OperationState>,
    /// Its line as of the last tick (a base backup's too); None when nothing runs.
    pub operation_view: Option<operation::OperationView>,
    /// A walsender's replication (`process::walsender`), when the leader is one.
    pub walsender: Option<operation::walsender::WalSenderState>,
    /// Scheduler times per traced process (eBPF).
    pub sched: sched::SchedFold,
    /// Read/write/sync latency per relation (`--io-latency`).
    pub io_latency: io_latency::IoLatency,
    /// The leader's exact wait transitions (`--exact-waits`).
    pub exact_waits: exact_waits::ExactWaits,
    /// The wait profile of the leader and its followers (live sessions sampling memory).
    pub waits: waits::Waits,
}

impl Model {
    pub fn new(leader: Pid, segment_bytes: u64) -> Model {
        let mut procs = BTreeMap::new();
        procs.insert(leader, ProcState::new(leader, None));
        Model {
            leader,
            segment_bytes,
            procs,
            files: BTreeMap::new(),
            closed: Vec::new(),
            files_seen: 0,
            relations: BTreeMap::new(),
            events: 0,
            lost: BTreeMap::new(),
            first_ns: None,
            last_ns: 0,
            last_tick_ns: None,
            block_names: HashMap::default(),
            queries: VecDeque::new(),
            lock_waits: VecDeque::new(),
            sorts: 0,
            sorts_external: 0,
            status: None,
            backup: None,
            expect_backup: false,
            last_io_ns: 0,
            credit: credit::Credit::default(),
            renamed: Vec::new(),
            query_ended: None,
            cost: cost::CostMeter::default(),
            copier: None,
            server_backup_view: None,
            operation: None,
            operation_view: None,
            walsender: None,
            sched: sched::SchedFold::default(),
            io_latency: io_latency::IoLatency::default(),
            exact_waits: exact_waits::ExactWaits::default(),
            waits: waits::Waits::default(),
        }
    }

    /// Copier mode: the traced process (named `name`) copies the data directory; its
    /// progress is a low-level backup's.
    pub fn start_copier(&mut self, name: &str) {
        self.copier = Some(copier::Copier::new(name));
        self.backup = Some(backup::BackupState::copier(name));
    }

    /// The server's side of the low-level backup the copier takes part in (start LSN,
    /// label, since when, the session): the one place the `backup` record's
    /// `server_backup` comes from. None until something reads it.
    pub fn server_backup(&self) -> Option<backup::ServerBackupView> {
        self.server_backup_view.clone()
    }

    /// What the server says of its low-level backup (`process::server_backup`): the
    /// `server_backup` view and, for a copier, the backup's phase (start, copy, stop,
    /// done). None: no backup runs on the server (the last one seen is kept).
    pub fn set_server_backup(&mut self, b: Option<&crate::process::server_backup::ServerBackup>) {
        let Some(b) = b else {
            return;
        };
        let keep = self.server_backup_view.take().unwrap_or_default();
        self.server_backup_view = Some(backup::ServerBackupView {
            start_lsn: b.start_lsn.clone().or(keep.start_lsn),
            label: b.label.clone().or(keep.label),
            started_at: b.started_at_us.map(|t| t as f64 / 1e6).or(keep.started_at),
            pid: b.pid.or(keep.pid),
            phase: Some(b.phase.clone()),
            details: Some(b.details()),
        });
        if let Some(st) = self.backup.as_mut().filter(|st| st.copier.is_some()) {
            st.low_level_phase(&b.phase);
        }
    }

    /// Copier mode: a read (or a polled position) of a data-directory file, by its path
    /// relative to the data directory.
    fn copier_event(&mut self, ev: &Event) {
        let Some(c) = self.copier.as_mut() else {
            return;
        };
        match &ev.kind {
            EventKind::Read { fd, result, .. } if *result > 0 => {
                if let Some(rel) = self
                    .files
                    .get(&(ev.pid, *fd))
                    .and_then(|f| f.named.relpath.as_deref())
                {
                    c.read(ev.pid, rel, *result as u64, ev.ts_ns);
                }
            }
            EventKind::FileState {
                fd, pos: Some(pos), ..
            } => {
                if let Some(rel) = self
                    .files
                    .get(&(ev.pid, *fd))
                    .and_then(|f| f.named.relpath.as_deref())
                {
                    c.position(ev.pid, rel, *pos, ev.ts_ns);
                }
            }
            _ => {}
        }
    }

    /// Copier mode: the backup line from the copier's progress.
    fn copier_backup(&mut self) {
        let (Some(c), Some(b)) = (self.copier.as_ref(), self.backup.as_mut()) else {
            return;
        };
        b.copier = Some(c.name.clone());
        if c.planned() {
            b.walked_total = Some(c.bytes_total);
            b.files_total = Some(c.files_total);
            b.tablespaces_total = Some(c.tablespaces.len() as u64);
            b.tablespaces_streamed = Some(
                c.tablespaces
                    .iter()
                    .filter(|t| t.bytes_done >= t.bytes_total && t.files_done >= t.files_total)
                    .count() as u64,
            );
        }
        b.files_done = Some(c.files_done);
        b.files_grew = c.files_grew;
        b.limiter = c.limiter;
        b.per_tablespace = c.tablespaces.clone();
        b.copier_processes = c.processes.iter().map(|(p, n)| (*p, n.clone())).collect();
        b.streamed = c.bytes_done;
        b.current_file = c.current_file.clone();
        if self.procs.get(&self.leader).map_or(true, |p| p.exited) {
            b.ended = true;
        }
    }

    pub fn leader_exited(&self) -> bool {
        self.procs.get(&self.leader).map_or(true, |p| p.exited)
    }

    fn role_of(&self, pid: Pid) -> Option<FollowerRole> {
        self.procs.get(&pid).and_then(|p| p.role)
    }

    /// Whether an io worker's read for `owner` (its AIO handle's owner) is ours: the
    /// owner is the leader or one of its parallel workers, never an io worker, and has
    /// not exited (its ProcNumber, which the handle names, may be another backend's now).
    fn owner_is_ours(&self, owner: Pid) -> bool {
        match self.procs.get(&owner) {
            Some(p) => {
                !p.exited && (owner == self.leader || p.role == Some(FollowerRole::ParallelWorker))
            }
            None => owner == self.leader,
        }
    }

    /// A relation by its main-fork path (`pg_relation_filepath()`), as records name it.
    pub fn relation_at(&self, path: &str) -> Option<&RelState> {
        self.relations.values().find(|r| r.id.path == path)
    }

    pub fn apply(&mut self, ev: &Event, namer: &mut impl Namer) {
        self.events += 1;
        self.first_ns.get_or_insert(ev.ts_ns);
        self.last_ns = self.last_ns.max(ev.ts_ns);
        let role = self.role_of(ev.pid);
        let (pid, ts) = (ev.pid, ev.ts_ns);
        match &ev.kind {
            EventKind::Open {
                dirfd, path, fd, ..
            } if *fd >= 0 => {
                let full = self.join_dirfd(pid, *dirfd, path);
                self.open(pid, *fd, &full, role, ts, namer, Some(0), None);
            }
            EventKind::FileState {
                fd,
                path,
                pos,
                size,
                ..
            } => self.file_state(ev, role, *fd, path, *pos, *size, namer),
            EventKind::Close { fd } => self.close(pid, *fd),
            EventKind::Dup { old_fd, new_fd, .. } if *new_fd >= 0 => {
                self.dup(pid, *old_fd, *new_fd)
            }
            // io workers read for the whole cluster: a read whose owner is not known is
            // nobody's we can name, and is only counted.
            EventKind::Read { .. } if role == Some(FollowerRole::IoWorker) => {
                *self
                    .lost
                    .entry(crate::trace::event::IO_WORKER_OWNER_UNKNOWN.to_string())
                    .or_default() += 1;
            }
            EventKind::Read {
                syscall,
                fd,
                offset,
                result,
                ..
            } => self.io(ev, *syscall, *fd, *offset, *result, false, namer),
            EventKind::IoWorkerRead {
                owner,
                syscall,
                fd,
                offset,
                result,
                ..
            } if role == Some(FollowerRole::IoWorker) && self.owner_is_ours(*owner) => {
                self.io(ev, *syscall, *fd, *offset, *result, false, namer)
            }
            EventKind::Write {
                syscall,
                fd,
                offset,
                result,
                ..
            } => self.io(ev, *syscall, *fd, *offset, *result, true, namer),
            EventKind::Seek {
                fd,
                offset,
                whence,
                result,
            } if *result >= 0 => self.seek(pid, *fd, *offset, *whence, *result as u64),
            EventKind::IoCounters {
                rchar,
                wchar,
                read_bytes,
                write_bytes,
            } => {
                let io = (*rchar, *wchar, *read_bytes, *write_bytes);
                self.io_counters(pid, io, ts, namer)
            }
            EventKind::ReadSample {
                syscall,
                fd,
                offset,
                requested,
                hits,
            } => {
                let end = offset.map(|o| o.saturating_add(requested.unwrap_or(0)));
                self.read_sample(pid, *syscall, *fd, *offset, end, *hits, ts, namer);
            }
            EventKind::NewFollower { role, .. } => {
                self.procs.entry(pid).or_insert_with(|| ProcState {
                    seen_ns: ts,
                    ..ProcState::new(pid, Some(*role))
                });
            }
            EventKind::Exit { code, signal } => {
                if pid == self.leader {
                    self.query_ended = Some(ts);
                }
                self.exit(pid, role, *code, *signal)
            }
            EventKind::Lost { cause, count } => {
                *self.lost.entry(cause.clone()).or_default() += count;
            }
            EventKind::BlockIo(b) => self.block_io(ev, role, b, namer),
            EventKind::Query {
                phase,
                text,
                truncated,
            } => self.query(ev, *phase, text, *truncated),
            EventKind::LockWait {
                done,
                field1,
                field2,
                field3,
                field4,
                locktag_type,
                mode,
            } => {
                let fields = [*field1, *field2, *field3, *field4];
                if *done {
                    self.lock_granted(ev, fields);
                } else {
                    self.lock_wait(ev, *locktag_type, fields, *mode, namer);
                }
            }
            EventKind::Sort {
                done: true,
                external,
                ..
            } => {
                self.sorts += 1;
                if *external == Some(true) {
                    self.sorts_external += 1;
                }
            }
            EventKind::SchedTimes {
                running_ns,
                runqueue_ns,
                sleeping_ns,
                blocked_ns,
            } => self.sched.apply(
                pid,
                sched::SchedTimes {
                    running_ns: *running_ns,
                    runqueue_ns: *runqueue_ns,
                    sleeping_ns: *sleeping_ns,
                    blocked_ns: *blocked_ns,
                },
            ),
            EventKind::IoLatency {
                op,
                fd,
                latency_ns,
                result,
                disk,
                owner,
                ..
            } if *result >= 0 => {
                // An io worker's call counts only when it read for one of ours (as its
                // read is credited), and for that process.
                let credited = if role == Some(FollowerRole::IoWorker) {
                    owner.filter(|o| self.owner_is_ours(*o))
                } else {
                    Some(pid)
                };
                // Counted under its relation and fork, or the file's label (WAL, a temp
                // file); not at all for what is no file of ours (a socket, a pipe, an fd
                // never seen opened). The fd is the caller's, io worker or not.
                if let (Some(to), Some(f)) = (credited, self.files.get(&(pid, *fd))) {
                    let key = match &f.named.relation {
                        Some(r) => (r.id.label.as_str(), Some(r.fork.as_str()), *op),
                        None => (f.named.label.as_str(), None, *op),
                    };
                    self.io_latency.record(to, key, *latency_ns, *disk);
                }
            }
            EventKind::WaitTransition { wait_event_info } if pid == self.leader => {
                self.exact_waits.apply(*wait_event_info, ts)
            }
            EventKind::Status { sample } => {
                if let Some(end) = self.status_ends_query(sample, ts) {
                    self.query_ended = Some(end);
                }
                self.apply_status(sample, ts)
            }
            _ => {}
        }
        if let Some(t) = self.query_ended.take() {
            self.end_of_query(t, namer);
        }
        self.status_after_event(ev);
        if self.copier.is_some() {
            self.copier_event(ev);
        }
    }

    /// A file seen by polling (/proc fdinfo): new, replaced, or moved on.
    #[allow(clippy::too_many_arguments)]
    fn file_state(
        &mut self,
        ev: &Event,
        role: Option<FollowerRole>,
        fd: i32,
        path: &str,
        pos: Option<u64>,
        size: Option<u64>,
        namer: &mut impl Namer,
    ) {
        let key = (ev.pid, fd);
        let Some(f) = self.files.get_mut(&key).filter(|f| f.path == path) else {
            self.open(ev.pid, fd, path, role, ev.ts_ns, namer, pos, size);
            return;
        };
        if size.is_some() {
            f.size = size;
        }
        // Polling sees only positions. PostgreSQL reads relation files with pread (12+):
        // their position moves only by smgr's lseek(SEEK_END) size probe, which is no
        // read. Any other file's position moving is read(2) going through it.
        let moved = match (pos, f.pos) {
            (Some(new), Some(old)) if new > old && f.named.relation.is_none() => {
                Some((old, new - old))
            }
            _ => None,
        };
        f.pos = pos;
        if let Some((old, n)) = moved {
            f.record_read(Syscall::Read, old, n, ev.ts_ns);
            f.estimate = true;
            self.credit.by_position(ev.pid, n);
        }
    }

    fn close(&mut self, pid: Pid, fd: i32) {
        if let Some(f) = self.files.remove(&(pid, fd)) {
            self.push_closed(f);
        }
    }

    /// A closed file is kept at least until the tick after its last activity: the
    /// interval printed then reports it (a fixed count lost most of a copier's files).
    fn push_closed(&mut self, f: FileEntry) {
        self.closed.push(f);
        let excess = self.closed.len().saturating_sub(CLOSED_MAX);
        self.closed.drain(..excess);
    }

    /// At a tick: the closed files neither among the last few nor active since the tick
    /// before (`prev`) go.
    fn trim_closed(&mut self, prev: Option<u64>) {
        let since = prev.map_or(0, |t| t.saturating_sub(CLOSED_SLACK_NS));
        let keep_from = self.closed.len().saturating_sub(CLOSED_KEPT);
        let mut i = 0;
        self.closed.retain(|f| {
            i += 1;
            i > keep_from || f.last_ns > since || f.opened_ns > since
        });
    }

    fn dup(&mut self, pid: Pid, old_fd: i32, new_fd: i32) {
        if let Some(f) = self.files.get(&(pid, old_fd)) {
            let mut f = f.clone();
            f.fd = new_fd;
            self.files.insert((pid, new_fd), f);
        }
    }

    fn seek(&mut self, pid: Pid, fd: i32, offset: i64, whence: i32, result: u64) {
        if let Some(f) = self.files.get_mut(&(pid, fd)) {
            f.pos = Some(result);
            // lseek(fd, 0, SEEK_END) is how smgr measures a segment.
            if whence == libc::SEEK_END && offset == 0 {
                f.size = Some(result);
            }
            f.ops.seeks += 1;
        }
    }

    /// /proc/PID/io of the /proc backend: the growth of `rchar` is credited to a file.
    fn io_counters(&mut self, pid: Pid, io: (u64, u64, u64, u64), ts: u64, namer: &mut impl Namer) {
        let prev = self.procs.get_mut(&pid).and_then(|p| p.io.replace(io));
        if let Some((prev_rchar, ..)) = prev {
            self.attribute_rchar(pid, io.0.saturating_sub(prev_rchar), ts, namer);
        }
    }

    fn exit(
        &mut self,
        pid: Pid,
        role: Option<FollowerRole>,
        code: Option<i32>,
        signal: Option<i32>,
    ) {
        let p = self
            .procs
            .entry(pid)
            .or_insert_with(|| ProcState::new(pid, role));
        p.exited = true;
        p.exit_code = code;
        p.exit_signal = signal;
        let fds: Vec<_> = self
            .files
            .keys()
            .filter(|(p, _)| *p == pid)
            .copied()
            .collect();
        for k in fds {
            if let Some(f) = self.files.remove(&k) {
                self.push_closed(f);
            }
        }
    }

    fn lock_granted(&mut self, ev: &Event, fields: [u32; 4]) {
        let updated = self.updated_ns(ev.ts_ns);
        if let Some(w) = self
            .lock_waits
            .iter_mut()
            .rev()
            .find(|w| w.pid == ev.pid && w.end_ns.is_none() && w.fields == fields)
        {
            w.end_ns = Some(ev.ts_ns);
            w.updated_ns = updated;
        }
    }

    fn lock_wait(
        &mut self,
        ev: &Event,
        locktag_type: u8,
        fields: [u32; 4],
        mode: i32,
        namer: &mut impl Namer,
    ) {
        // Relation and relation-extension locks name a relation by OID.
        let relation = if locktag_type <= 1 {
            namer.relation_by_oid(fields[0], fields[1])
        } else {
            None
        };
        self.lock_waits.push_back(LockWaitRec {
            pid: ev.pid,
            start_ns: ev.ts_ns,
            end_ns: None,
            updated_ns: self.updated_ns(ev.ts_ns),
            locktag_type,
            fields,
            mode,
            relation,
        });
        if self.lock_waits.len() > LOCK_WAITS_KEPT {
            self.lock_waits.pop_front();
        }
    }

    /// A record changed now: output shows records changed since its last print, and an
    /// event drained after a tick may carry a time from before it.
    fn updated_ns(&self, ts: u64) -> u64 {
        ts.max(self.last_tick_ns.map_or(0, |t| t + 1))
    }

    fn query(&mut self, ev: &Event, phase: QueryPhase, text: &str, truncated: bool) {
        let updated = self.updated_ns(ev.ts_ns);
        if phase == QueryPhase::Done {
            if let Some(q) = self
                .queries
                .iter_mut()
                .rev()
                .find(|q| q.pid == ev.pid && q.done_ns.is_none() && q.text == text)
            {
                q.done_ns = Some(ev.ts_ns);
                q.updated_ns = updated;
                if ev.pid == self.leader && !relations::ends_nothing(Some(text)) {
                    self.query_ended = Some(ev.ts_ns);
                }
                return;
            }
        }
        // statement__status fires with no text when the backend goes idle: the extended
        // protocol has no query__done, so that is where its statement ends.
        if text.is_empty() {
            if phase == QueryPhase::Status {
                self.end_queries(ev.pid, ev.ts_ns, updated);
            }
            return;
        }
        // query__start and statement__status both fire for a simple query: one record.
        if let Some(q) = self.queries.back_mut() {
            if q.pid == ev.pid && q.text == text && q.done_ns.is_none() {
                if phase == QueryPhase::Start {
                    q.phase = phase;
                }
                return;
            }
        }
        // One statement at a time per backend: a new one ends the one before.
        self.end_queries(ev.pid, ev.ts_ns, updated);
        self.queries.push_back(QueryRec {
            pid: ev.pid,
            ts_ns: ev.ts_ns,
            updated_ns: updated,
            phase,
            text: text.to_string(),
            truncated,
            done_ns: (phase == QueryPhase::Done).then_some(ev.ts_ns),
        });
        if self.queries.len() > QUERIES_KEPT {
            self.queries.pop_front();
        }
    }

    fn end_queries(&mut self, pid: Pid, ts: u64, updated: u64) {
        if pid == self.leader {
            self.query_ended = Some(ts);
        }
        for q in self
            .queries
            .iter_mut()
            .filter(|q| q.pid == pid && q.done_ns.is_none())
        {
            q.done_ns = Some(ts);
            q.updated_ns = updated;
        }
    }

    fn block_io(
        &mut self,
        ev: &Event,
        role: Option<FollowerRole>,
        b: &BlockIo,
        namer: &mut impl Namer,
    ) {
        let info = self
            .block_names
            .entry((b.rel, b.fork))
            .or_insert_with(|| {
                namer
                    .name_block(&b.rel, b.fork)
                    .unwrap_or_else(|| Arc::new(unnamed_block_rel(&b.rel, b.fork)))
            })
            .clone();
        // io workers complete reads for every backend, and a probe does not say whose.
        if role == Some(FollowerRole::IoWorker) {
            return;
        }
        let bb = coverage::BLOCK;
        let rs = self.relation_entry(&info, ev.ts_ns, namer);
        rs.record_block(
            &info, b.probe, b.block, b.nblocks, b.hit, b.write, ev.ts_ns, bb,
        );
    }

    /// A sample caught `pid` inside a read of `fd`: evidence for [`Self::attribute_rchar`],
    /// and where in the file the process is (a read seen, so an offset from a read).
    #[allow(clippy::too_many_arguments)]
    fn read_sample(
        &mut self,
        pid: Pid,
        syscall: Syscall,
        fd: i32,
        offset: Option<u64>,
        end: Option<u64>,
        hits: u32,
        ts: u64,
        namer: &mut impl Namer,
    ) {
        // An io worker's read is for some session /proc does not name.
        if self.role_of(pid) == Some(FollowerRole::IoWorker) {
            return;
        }
        let Some(f) = self.files.get_mut(&(pid, fd)) else {
            return;
        };
        self.credit.sampled(pid, fd, hits, end);
        let Some(at) = offset else { return };
        f.record_read(syscall, at, 0, ts);
        f.estimate = true;
        if let Some(r) = f.named.relation.clone() {
            self.rel_read(&r, at, 0, ts, namer);
            self.mark_estimate(&r);
        }
    }

    /// The /proc backend sees no individual reads, only the process's growing `rchar`.
    /// The growth goes to the files a sample caught being read in the same interval, in
    /// proportion to how often each was caught, ending where the last sampled read ended;
    /// what no sample covers is counted as unattributed (see [`credit`]). An estimate.
    fn attribute_rchar(&mut self, pid: Pid, delta: u64, ts: u64, namer: &mut impl Namer) {
        // An io worker reads for every session, and /proc does not say for whom (the AIO
        // handle's owner is not in a syscall's arguments): none of its bytes are ours.
        if self.role_of(pid) == Some(FollowerRole::IoWorker) {
            self.credit.split(pid, delta, ts, false, |_, _| 0);
            return;
        }
        let files = &self.files;
        let shares = self.credit.split(pid, delta, ts, true, |fd, end| {
            let Some(f) = files.get(&(pid, fd)) else {
                return 0;
            };
            // Bytes credited end at the sampled read: none before the file's start.
            end.or(f.size).unwrap_or(0)
        });
        for sh in shares {
            let Some(f) = self.files.get_mut(&(pid, sh.fd)) else {
                continue;
            };
            let rel = f.named.relation.clone();
            let end = sh.end.or(f.size).unwrap_or(sh.bytes);
            let start = end.saturating_sub(sh.bytes);
            f.record_read(Syscall::Read, start, sh.bytes, ts);
            f.estimate = true;
            if let Some(r) = rel {
                self.rel_read(&r, start, sh.bytes, ts, namer);
                self.mark_estimate(&r);
            }
        }
    }

    fn mark_estimate(&mut self, r: &RelInfo) {
        if let Some(rs) = self.relations.get_mut(&r.id.locator) {
            rs.estimate = true;
        }
    }

    /// openat(dirfd, "name") names `<dir of dirfd>/name`.
    fn join_dirfd(&self, pid: Pid, dirfd: Option<i32>, path: &str) -> String {
        match dirfd {
            Some(d) if !path.starts_with('/') => match self.files.get(&(pid, d)) {
                Some(dir) => format!("{}/{path}", dir.path.trim_end_matches('/')),
                None => path.to_string(),
            },
            _ => path.to_string(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn open(
        &mut self,
        pid: Pid,
        fd: i32,
        path: &str,
        role: Option<FollowerRole>,
        ts: u64,
        namer: &mut impl Namer,
        pos: Option<u64>,
        size: Option<u64>,
    ) {
        let named = namer.name(path);
        let size = size.or_else(|| namer.file_size(path));
        let entry = FileEntry::new(pid, fd, path, named, role, ts, pos, size);
        self.files_seen += 1;
        if let Some(r) = entry.named.relation.clone() {
            if role != Some(FollowerRole::IoWorker) {
                self.relation_entry(&r, ts, namer);
            }
        }
        if let Some(old) = self.files.insert((pid, fd), entry) {
            self.push_closed(old);
        }
    }

    fn relation_entry(&mut self, r: &RelInfo, ts: u64, namer: &mut impl Namer) -> &mut RelState {
        self.relations
            .entry(r.id.locator)
            .or_insert_with(|| RelState::new(r, namer.relation_size(r), ts))
    }

    #[allow(clippy::too_many_arguments)]
    fn io(
        &mut self,
        ev: &Event,
        syscall: Syscall,
        fd: i32,
        offset: Option<u64>,
        result: i64,
        write: bool,
        namer: &mut impl Namer,
    ) {
        let Some(f) = self.files.get_mut(&(ev.pid, fd)) else {
            return;
        };
        let explicit = syscall.positioned(offset);
        let start = offset.or(f.pos).unwrap_or(0);
        if result < 0 {
            f.errors += 1;
            return;
        }
        let n = result as u64;
        if write {
            f.record_write(syscall, start, n, ev.ts_ns);
        } else {
            f.record_read(syscall, start, n, ev.ts_ns);
        }
        if !explicit {
            f.pos = Some(start + n);
        }
        let rel = f.named.relation.clone();
        if let Some(r) = rel {
            if write {
                let rs = self.relation_entry(&r, ev.ts_ns, namer);
                rs.bytes_written += n;
                rs.pending_written += n;
                rs.last_ns = ev.ts_ns;
                rs.last_write_ns = ev.ts_ns;
            } else {
                self.rel_read(&r, start, n, ev.ts_ns, namer);
            }
        }
    }

    fn rel_read(&mut self, r: &RelInfo, start: u64, n: u64, ts: u64, namer: &mut impl Namer) {
        let seg_bytes = self.segment_bytes;
        self.relation_entry(r, ts, namer);
        if r.fork == Fork::Main {
            self.fill_gap(r, u64::from(r.segment) * seg_bytes + start, namer);
        }
        let rs = self.relation_entry(r, ts, namer);
        if let Some(ended) = rs.record_read(r, start, n, ts, seg_bytes) {
            self.end_of_query(ended, namer);
        }
    }

    /// Advance rates and refresh sizes; call once per display interval.
    pub fn tick(&mut self, now_ns: u64, namer: &mut impl Namer) {
        if namer.refresh() {
            self.rename(namer);
        }
        // Names not in the catalog yet are asked again (the resolver rate-limits re-reads).
        self.block_names.retain(|_, i| i.id.known);
        // The first interval runs from the first event: its bytes are already pending.
        let dt = self
            .last_tick_ns
            .or(self.first_ns)
            .map(|t| now_ns.saturating_sub(t))
            .unwrap_or(0);
        self.trim_closed(self.last_tick_ns);
        self.last_tick_ns = Some(now_ns);
        self.sched.tick();
        self.io_latency.tick();
        self.exact_waits.tick(now_ns);
        self.copier_backup();
        let server = self.server_backup();
        if let Some(b) = self.backup.as_mut() {
            b.server_backup = server;
        }
        if let Some(b) = self.backup.as_mut() {
            b.tick(now_ns);
        }
        for (_, f) in self.files.iter_mut() {
            f.tick(dt);
            if f.last_ns + SIZE_REFRESH_NS > now_ns && f.size_checked_ns + SIZE_REFRESH_NS <= now_ns
            {
                if let Some(s) = namer.file_size(&f.path) {
                    f.size = Some(s);
                }
                f.size_checked_ns = now_ns;
            }
        }
        let infos: Vec<std::sync::Arc<RelInfo>> = self
            .files
            .values()
            .chain(self.closed.iter())
            .filter_map(|f| f.named.relation.clone())
            .collect();
        for rs in self.relations.values_mut() {
            rs.tick(dt);
            if rs.size_checked_ns + SIZE_REFRESH_NS <= now_ns
                && rs.last_ns + SIZE_REFRESH_NS > now_ns
            {
                if let Some(info) = infos.iter().find(|i| i.id.locator == rs.id.locator) {
                    if let Some(s) = namer.relation_size(info) {
                        rs.size = Some(s);
                    }
                }
                rs.size_checked_ns = now_ns;
            }
        }
        // After the sizes: the line shows how large the relation being written is now.
        self.operation_tick(namer);
    }

    /// The file most recently read (`write` false) or written, of the classes given
    /// (`relation`, `wal`, `temp_file`...; any when empty).
    pub fn last_file(&self, write: bool, classes: &[&str]) -> Option<&FileEntry> {
        self.files
            .values()
            .filter(|f| classes.is_empty() || classes.contains(&f.named.class))
            .map(|f| {
                (
                    if write {
                        f.last_write_ns
                    } else {
                        f.last_read_ns
                    },
                    f,
                )
            })
            .filter(|(t, _)| *t > 0)
            .max_by_key(|(t, _)| *t)
            .map(|(_, f)| f)
    }

    /// The file most recently read or written.
    pub fn current_file(&self) -> Option<&FileEntry> {
        self.files
            .values()
            .filter(|f| f.last_ns > 0)
            .max_by_key(|f| f.last_ns)
    }

    /// The most recent query text of `pid`.
    pub fn current_query(&self, pid: Pid) -> Option<&QueryRec> {
        self.queries.iter().rev().find(|q| q.pid == pid)
    }

    /// The lock wait `pid` is in, if any.
    pub fn waiting_for(&self, pid: Pid) -> Option<&LockWaitRec> {
        self.lock_waits
            .iter()
            .rev()
            .find(|w| w.pid == pid && w.end_ns.is_none())
    }

    /// The relation most recently read.
    pub fn current_relation(&self) -> Option<&RelState> {
        self.relations
            .values()
            .filter(|r| r.last_ns > 0)
            .max_by_key(|r| r.last_ns)
    }
}

/// A buffer tag the namer could not name: shown by its numbers, never dropped.
fn unnamed_block_rel(rel: &RelFileLocator, fork: Fork) -> RelInfo {
    let path = rel.relpath(UNKNOWN_VERSION_DIR);
    RelInfo {
        id: RelIdentity {
            label: format!("{path} (not in catalog yet)"),
            locator: *rel,
            path,
            schema: None,
            name: None,
            kind: None,
            table: None,
            known: false,
        },
        fork,
        segment: 0,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tests_io_uring;
