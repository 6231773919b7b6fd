//! Pure state folding: events in, per-file / per-relation / per-process state out. Knows
//! nothing of how events were captured; asks a [`Namer`] to name paths and size relations.

pub mod backup;
pub mod coverage;
pub mod files;
pub mod relations;
pub mod stall;
pub mod status;

pub use files::{FileEntry, Named, RelIdentity, RelInfo};
pub use relations::RelState;

use crate::trace::{Event, EventKind, FollowerRole, Pid, Syscall};
use std::collections::BTreeMap;

/// The model's window on the outside world: names for paths, sizes of files.
pub trait Namer {
    /// Name a path as the process saw it (relative paths are relative to the data
    /// directory, the working directory of every postgres process).
    fn name(&mut self, path: &str) -> Named;
    /// Current size in bytes of a relation's main fork, all segments together.
    fn relation_size(&mut self, rel: &RelInfo) -> Option<u64>;
    /// Current size of one file.
    fn file_size(&mut self, path: &str) -> Option<u64>;
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProcState {
    pub pid: Pid,
    /// None for the traced process itself.
    pub role: Option<FollowerRole>,
    pub exited: bool,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    pub bytes_sent: u64,
    pub dir_reads: u64,
    pub stats: u64,
    /// /proc/PID/io (the /proc backend).
    pub io: Option<(u64, u64, u64, u64)>,
    pub last_event_ns: u64,
}

impl ProcState {
    fn new(pid: Pid, role: Option<FollowerRole>) -> ProcState {
        ProcState {
            pid,
            role,
            exited: false,
            exit_code: None,
            exit_signal: None,
            bytes_sent: 0,
            dir_reads: 0,
            stats: 0,
            io: None,
            last_event_ns: 0,
        }
    }
}

/// How often sizes are re-read for files and relations that are being worked on.
const SIZE_REFRESH_NS: u64 = 1_000_000_000;
/// Closed files kept for display.
const CLOSED_KEPT: usize = 64;

pub struct Model {
    pub leader: Pid,
    pub segment_bytes: u64,
    pub procs: BTreeMap<Pid, ProcState>,
    /// Open files by (pid, fd).
    pub files: BTreeMap<(Pid, i32), FileEntry>,
    /// Recently closed files, newest last.
    pub closed: Vec<FileEntry>,
    /// Relations by their main-fork path.
    pub relations: BTreeMap<String, RelState>,
    pub events: u64,
    pub lost: BTreeMap<String, u64>,
    pub first_ns: Option<u64>,
    pub last_ns: u64,
    last_tick_ns: Option<u64>,
    /// The leader's status from memory and /proc, with the stall verdict.
    pub status: Option<status::StatusView>,
    /// A base backup run by the leader (a walsender).
    pub backup: Option<backup::BackupState>,
    /// A walsender (from its title): follow its syscalls for a base backup from attach.
    pub expect_backup: bool,
    /// Last read, write or send of the leader.
    pub last_io_ns: u64,
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
            relations: BTreeMap::new(),
            events: 0,
            lost: BTreeMap::new(),
            first_ns: None,
            last_ns: 0,
            last_tick_ns: None,
            status: None,
            backup: None,
            expect_backup: false,
            last_io_ns: 0,
        }
    }

    pub fn leader_exited(&self) -> bool {
        self.procs.get(&self.leader).map_or(true, |p| p.exited)
    }

    fn role_of(&self, pid: Pid) -> Option<FollowerRole> {
        self.procs.get(&pid).and_then(|p| p.role)
    }

    /// Relation keys some non-io-worker process has open: io workers read for everyone,
    /// so only their reads of these are ours.
    fn ours(&self, key: &str) -> bool {
        self.files
            .values()
            .any(|f| !f.via_io_worker && f.named.relation.as_ref().is_some_and(|r| r.id.key == key))
    }

    pub fn apply(&mut self, ev: &Event, namer: &mut impl Namer) {
        self.events += 1;
        self.first_ns.get_or_insert(ev.ts_ns);
        self.last_ns = self.last_ns.max(ev.ts_ns);
        let role = self.role_of(ev.pid);
        if let Some(p) = self.procs.get_mut(&ev.pid) {
            p.last_event_ns = ev.ts_ns;
        }
        match &ev.kind {
            EventKind::Open {
                dirfd, path, fd, ..
            } if *fd >= 0 => {
                let full = self.join_dirfd(ev.pid, *dirfd, path);
                self.open(ev.pid, *fd, &full, role, ev.ts_ns, namer, Some(0), None);
            }
            EventKind::FileState {
                fd,
                path,
                pos,
                size,
                ..
            } => {
                let same = self
                    .files
                    .get(&(ev.pid, *fd))
                    .is_some_and(|f| f.path == *path);
                if !same {
                    self.open(ev.pid, *fd, path, role, ev.ts_ns, namer, *pos, *size);
                } else if let Some(f) = self.files.get_mut(&(ev.pid, *fd)) {
                    if size.is_some() {
                        f.size = *size;
                    }
                    // Polling sees only positions: a position that moved is progress.
                    if let (Some(new), Some(old)) = (*pos, f.pos) {
                        if new > old {
                            let n = new - old;
                            f.record_read(Syscall::Read, old, n, ev.ts_ns);
                            let info = f.named.relation.clone();
                            if let Some(r) = info {
                                self.rel_read(&r, old, n, ev.ts_ns, namer);
                            }
                        }
                    }
                    if let Some(f) = self.files.get_mut(&(ev.pid, *fd)) {
                        f.pos = *pos;
                    }
                }
            }
            EventKind::Close { fd } => {
                if let Some(f) = self.files.remove(&(ev.pid, *fd)) {
                    self.closed.push(f);
                    if self.closed.len() > CLOSED_KEPT {
                        self.closed.remove(0);
                    }
                }
            }
            EventKind::Dup { old_fd, new_fd, .. } if *new_fd >= 0 => {
                if let Some(f) = self.files.get(&(ev.pid, *old_fd)).cloned() {
                    let mut f = f;
                    f.fd = *new_fd;
                    self.files.insert((ev.pid, *new_fd), f);
                }
            }
            EventKind::Read {
                syscall,
                fd,
                offset,
                result,
                ..
            } => self.io(ev, *syscall, *fd, *offset, *result, false, namer),
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
            } if *result >= 0 => {
                if let Some(f) = self.files.get_mut(&(ev.pid, *fd)) {
                    f.pos = Some(*result as u64);
                    // lseek(fd, 0, SEEK_END) is how smgr measures a segment.
                    if *whence == libc::SEEK_END && *offset == 0 {
                        f.size = Some(*result as u64);
                    }
                    f.ops.seeks += 1;
                }
            }
            EventKind::Send { result, .. } if *result > 0 => {
                if let Some(p) = self.procs.get_mut(&ev.pid) {
                    p.bytes_sent += *result as u64;
                }
            }
            EventKind::ReadDir { .. } => {
                if let Some(p) = self.procs.get_mut(&ev.pid) {
                    p.dir_reads += 1;
                }
            }
            EventKind::Stat { .. } => {
                if let Some(p) = self.procs.get_mut(&ev.pid) {
                    p.stats += 1;
                }
            }
            EventKind::IoCounters {
                rchar,
                wchar,
                read_bytes,
                write_bytes,
            } => {
                let prev = self.procs.get_mut(&ev.pid).and_then(|p| {
                    let prev = p.io.map(|io| io.0);
                    p.io = Some((*rchar, *wchar, *read_bytes, *write_bytes));
                    prev
                });
                if let Some(prev) = prev {
                    self.attribute_rchar(ev.pid, rchar.saturating_sub(prev), ev.ts_ns, namer);
                }
            }
            EventKind::NewFollower { role, .. } => {
                self.procs
                    .entry(ev.pid)
                    .or_insert_with(|| ProcState::new(ev.pid, Some(*role)));
            }
            EventKind::Exit { code, signal } => {
                let p = self
                    .procs
                    .entry(ev.pid)
                    .or_insert_with(|| ProcState::new(ev.pid, role));
                p.exited = true;
                p.exit_code = *code;
                p.exit_signal = *signal;
                let fds: Vec<_> = self
                    .files
                    .keys()
                    .filter(|(pid, _)| *pid == ev.pid)
                    .copied()
                    .collect();
                for k in fds {
                    if let Some(f) = self.files.remove(&k) {
                        self.closed.push(f);
                    }
                }
                let excess = self.closed.len().saturating_sub(CLOSED_KEPT);
                self.closed.drain(..excess);
            }
            EventKind::Lost { cause, count } => {
                *self.lost.entry(cause.clone()).or_default() += count;
            }
            EventKind::Status { sample } => self.apply_status(sample, ev.ts_ns),
            _ => {}
        }
        self.status_after_event(ev);
    }

    /// The /proc backend sees no individual reads, only the process's growing `rchar`.
    /// PostgreSQL reads one relation file at a time in a scan, so the bytes are credited
    /// to the relation file opened last, continuing from where that file was last seen.
    /// An estimate: exact for a file opened after attach and read sequentially.
    fn attribute_rchar(&mut self, pid: Pid, delta: u64, ts: u64, namer: &mut impl Namer) {
        if delta == 0 {
            return;
        }
        let target = self
            .files
            .iter()
            .filter(|((p, _), f)| {
                *p == pid
                    && f.named
                        .relation
                        .as_ref()
                        .is_some_and(|r| r.fork == crate::pgdata::path::Fork::Main)
            })
            .max_by_key(|(_, f)| (f.opened_ns, f.named.relation.as_ref().map(|r| r.segment)))
            .map(|(k, _)| *k);
        let Some(key) = target else { return };
        let Some(f) = self.files.get_mut(&key) else {
            return;
        };
        let mut n = delta;
        let start = f.highest;
        if let Some(size) = f.size {
            n = n.min(size.saturating_sub(start));
        }
        f.record_read(Syscall::Read, start, n, ts);
        if let Some(r) = f.named.relation.clone() {
            self.rel_read(&r, start, n, ts, namer);
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
        if let Some(r) = entry.named.relation.clone() {
            if role != Some(FollowerRole::IoWorker) {
                self.relation_entry(&r, ts, namer);
            }
        }
        if let Some(old) = self.files.insert((pid, fd), entry) {
            self.closed.push(old);
        }
    }

    fn relation_entry(&mut self, r: &RelInfo, ts: u64, namer: &mut impl Namer) -> &mut RelState {
        if !self.relations.contains_key(&r.id.key) {
            let size = namer.relation_size(r);
            self.relations
                .insert(r.id.key.clone(), RelState::new(r, size, ts));
        }
        self.relations.get_mut(&r.id.key).expect("just inserted")
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
        let explicit = matches!(
            syscall,
            Syscall::Pread64
                | Syscall::Preadv
                | Syscall::Preadv2
                | Syscall::Pwrite64
                | Syscall::Pwritev
                | Syscall::Pwritev2
        );
        let start = offset.or(f.pos).unwrap_or(0);
        if result < 0 {
            f.errors += 1;
            return;
        }
        let n = result as u64;
        // io workers read for every backend of the cluster: only reads of relations the
        // traced processes have open are theirs.
        if f.via_io_worker {
            let key = f.named.relation.as_ref().map(|r| r.id.key.clone());
            if !key.is_some_and(|k| self.ours(&k)) {
                return;
            }
        }
        let Some(f) = self.files.get_mut(&(ev.pid, fd)) else {
            return;
        };
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
                rs.last_ns = ev.ts_ns;
            } else {
                self.rel_read(&r, start, n, ev.ts_ns, namer);
            }
        }
    }

    fn rel_read(&mut self, r: &RelInfo, start: u64, n: u64, ts: u64, namer: &mut impl Namer) {
        let seg_bytes = self.segment_bytes;
        let rs = self.relation_entry(r, ts, namer);
        rs.record_read(r, start, n, ts, seg_bytes);
    }

    /// Advance rates and refresh sizes; call once per display interval.
    pub fn tick(&mut self, now_ns: u64, namer: &mut impl Namer) {
        // The first interval runs from the first event: its bytes are already pending.
        let dt = self
            .last_tick_ns
            .or(self.first_ns)
            .map(|t| now_ns.saturating_sub(t))
            .unwrap_or(0);
        self.last_tick_ns = Some(now_ns);
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
                if let Some(info) = infos.iter().find(|i| i.id.key == rs.id.key) {
                    if let Some(s) = namer.relation_size(info) {
                        rs.size = Some(s);
                    }
                }
                rs.size_checked_ns = now_ns;
            }
        }
    }

    /// The file most recently read or written.
    pub fn current_file(&self) -> Option<&FileEntry> {
        self.files
            .values()
            .filter(|f| f.last_ns > 0)
            .max_by_key(|f| f.last_ns)
    }

    /// The relation most recently read.
    pub fn current_relation(&self) -> Option<&RelState> {
        self.relations
            .values()
            .filter(|r| r.last_ns > 0)
            .max_by_key(|r| r.last_ns)
    }
}

#[cfg(test)]
mod tests;
