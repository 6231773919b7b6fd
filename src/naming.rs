//! The model's [`Namer`] backed by the catalog: the thin I/O shell around
//! `pgdata::Resolver` (names, re-read every interval) and `stat` (sizes). Live, the
//! catalog's pages and transaction status come from the server's shared memory
//! ([`MemoryOverlay`]: process layer readers behind pgdata's [`Overlay`] trait, joined
//! here because pgdata and process may not know each other); without it, from the disk,
//! said once.

use crate::model::{Named, Namer, RelIdentity, RelInfo};
use crate::pgdata::catalog::{FileKey, Overlay, Relation};
use crate::pgdata::path::WalFile;
use crate::pgdata::relfile::{Fork, RelFileLocator};
use crate::pgdata::xact::{status_from_bits, XidStatus};
use crate::pgdata::{DataDir, PathClass, PgDataError, Resolver};
use crate::process::buffers::SharedBuffers;
use crate::process::clog::XactBuffers;
use crate::process::memory::{MemError, Pid};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Resident blocks are re-scanned at most this often (and at most 2% of the time): a
/// scan's end is judged on a picture of the pool at most this old.
const RESIDENCY_MAX_AGE: Duration = Duration::from_millis(500);

/// The note said when names come from the disk alone.
pub fn disk_note(why: &str) -> String {
    format!("names from the on-disk catalog: may lag DDL until a checkpoint ({why})")
}

/// Shared buffers and the pg_xact SLRU of a live cluster, read through one of its
/// processes (the traced one first, the postmaster when that one is gone).
pub struct MemoryOverlay {
    pids: Vec<Pid>,
    major: u32,
    blcksz: usize,
    buffers: SharedBuffers,
    xact: XactBuffers,
    /// Full descriptor scans at most this often (and at most 2% of the time).
    interval: Duration,
    /// Why memory stopped answering (every process gone, say): disk only from then on.
    broken: Option<String>,
}

impl MemoryOverlay {
    pub fn open(dd: &DataDir, pid: Pid) -> Result<MemoryOverlay, MemError> {
        let mut pids = vec![pid];
        if let Ok(pm) = dd.postmaster_pid() {
            if pm != pid {
                pids.push(pm);
            }
        }
        let blcksz = dd.control.blcksz as usize;
        let mut last = None;
        for (i, &p) in pids.iter().enumerate() {
            match Self::open_one(p, dd.major, blcksz) {
                Ok((buffers, xact)) => {
                    return Ok(MemoryOverlay {
                        pids: pids[i..].to_vec(),
                        major: dd.major,
                        blcksz,
                        buffers,
                        xact,
                        interval: crate::pgdata::resolver::MIN_REFRESH_INTERVAL,
                        broken: None,
                    })
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(MemError::Gone(pid)))
    }

    fn open_one(
        pid: Pid,
        major: u32,
        blcksz: usize,
    ) -> Result<(SharedBuffers, XactBuffers), MemError> {
        Ok((
            SharedBuffers::open(pid, major, blcksz)?,
            XactBuffers::open(pid, major, blcksz)?,
        ))
    }

    /// Memory reads failed: the process may be gone; go on through the next one.
    fn recover(&mut self, e: MemError) {
        while self.pids.len() > 1 {
            self.pids.remove(0);
            if let Ok((b, x)) = Self::open_one(self.pids[0], self.major, self.blcksz) {
                self.buffers = b;
                self.xact = x;
                return;
            }
        }
        self.broken = Some(e.to_string());
    }

    /// Why memory is no longer read, if it is not.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    pub fn buffer_stats(&self) -> crate::process::buffers::BufferStats {
        self.buffers.stats
    }
}

impl Overlay for MemoryOverlay {
    fn begin(&mut self) {
        if self.broken.is_some() {
            return;
        }
        self.xact.forget();
        if let Err(e) = self.buffers.refresh(self.interval) {
            self.recover(e);
        }
    }

    fn page(&mut self, file: FileKey, blkno: u32, page: &mut [u8]) -> bool {
        if self.broken.is_some() {
            return false;
        }
        match self.buffers.read_page(file, blkno, page) {
            Ok(ok) => ok,
            Err(e) => {
                self.recover(e);
                false
            }
        }
    }

    fn blocks(&mut self, file: FileKey) -> Option<u32> {
        if self.broken.is_some() {
            return None;
        }
        // A catalog file not asked for before (pg_class rewritten by VACUUM FULL) is
        // looked for with one more descriptor scan.
        self.buffers.watch(file);
        if let Err(e) = self.buffers.scan_if_stale() {
            self.recover(e);
            return None;
        }
        self.buffers.blocks(file)
    }

    fn xid_status(&mut self, xid: u32) -> Option<XidStatus> {
        if self.broken.is_some() {
            return None;
        }
        match self.xact.status_bits(xid) {
            Ok(bits) => bits.map(status_from_bits),
            Err(e) => {
                self.recover(e);
                None
            }
        }
    }

    fn page_lsn(&mut self, file: FileKey, blkno: u32) -> Option<u64> {
        if self.broken.is_some() {
            return None;
        }
        match self.buffers.page_lsn(file, blkno) {
            Ok(lsn) => lsn,
            Err(e) => {
                self.recover(e);
                None
            }
        }
    }

    fn fresh(&self) -> bool {
        self.broken.is_none()
    }
}

pub struct CatalogNamer {
    resolver: Resolver,
    root: PathBuf,
    /// `PG_<major>_<catversion>`: the directory of this cluster inside a tablespace.
    version_dir: String,
    /// Notes not yet taken: why names come from the disk only, renames.
    notes: Vec<String>,
    /// Whether the last catalog read had memory (a change is said once).
    was_fresh: bool,
    /// The resolver's generation the model's names were last checked against.
    seen_generation: u64,
    /// Shared buffers for which blocks of a traced relation are resident (the catalog's
    /// overlay is the resolver's own): read through the postmaster first, which outlives
    /// the traced backend. Off without memory reading, or once it failed.
    residency: Residency,
    /// The heap sizes of the tables pg_dump copies, in its order, for one database, and
    /// when they were stat'ed.
    dump_sizes: Option<(std::time::Instant, u32, Vec<SizedTable>)>,
    /// Whether a pg_dump on this host selects or reorders tables, and when that was read
    /// from /proc (one scan of every process's arguments per second, not one per question).
    dump_selective: Option<(std::time::Instant, bool)>,
}

/// A table pg_dump copies, (schema, name), and its heap's bytes.
type SizedTable = ((String, String), u64);

/// How long the dumped tables' sizes are reused.
const DUMP_SIZES_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(10);
const DUMP_ARGS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// The residency reader, opened on first use (most traces never ask).
enum Residency {
    Off,
    /// Processes to open it through (postmaster first), the major, BLCKSZ.
    Closed(Vec<Pid>, u32, usize),
    Open(Box<SharedBuffers>),
}

impl Residency {
    fn get(&mut self) -> Option<&mut SharedBuffers> {
        if let Residency::Closed(pids, major, blcksz) = self {
            let (major, blcksz) = (*major, *blcksz);
            *self = pids
                .iter()
                .find_map(|&p| SharedBuffers::open(p, major, blcksz).ok())
                .map_or(Residency::Off, |sb| Residency::Open(Box::new(sb)));
        }
        match self {
            Residency::Open(sb) => Some(sb),
            _ => None,
        }
    }
}

impl CatalogNamer {
    /// Names from the disk alone (resolve, replay, tests).
    pub fn new(resolver: Resolver) -> CatalogNamer {
        let dd = &resolver.catalog().datadir;
        let (root, version_dir) = (dd.root.clone(), dd.tablespace_version_dir());
        let was_fresh = resolver.catalog().fresh;
        let resolver_generation = resolver.generation();
        CatalogNamer {
            resolver,
            root,
            version_dir,
            notes: Vec::new(),
            was_fresh,
            seen_generation: resolver_generation,
            residency: Residency::Off,
            dump_sizes: None,
            dump_selective: None,
        }
    }

    /// Names for a live trace of `pid`: the catalog from shared memory over the disk, or
    /// from the disk with one note saying why (`memory`: false for `--no-memory`).
    pub fn live(dd: &DataDir, pid: Pid, memory: bool) -> Result<CatalogNamer, PgDataError> {
        let overlay = if memory {
            MemoryOverlay::open(dd, pid).map_err(|e| e.to_string())
        } else {
            Err("memory reading off (--no-memory)".to_string())
        };
        let (resolver, why) = match overlay {
            Ok(o) => (Resolver::with_overlay(dd, Box::new(o))?, None),
            Err(why) => (Resolver::new(dd)?, Some(why)),
        };
        let mut n = CatalogNamer::new(resolver);
        if let Some(why) = why {
            n.notes.push(disk_note(&why));
        }
        if memory {
            let pm = dd.postmaster_pid().ok().filter(|&p| p != pid);
            let pids = pm.into_iter().chain([pid]).collect();
            n.residency = Residency::Closed(pids, dd.major, dd.control.blcksz as usize);
        }
        Ok(n)
    }

    /// Stop reading memory (`--no-memory` given after the namer was made).
    pub fn disable_memory(&mut self) {
        if self.resolver.catalog().fresh {
            self.resolver.drop_overlay();
            self.notes
                .push(disk_note("memory reading off (--no-memory)"));
        }
        self.was_fresh = false;
        self.residency = Residency::Off;
    }

    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// Notes raised since the last call, each once.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// What a relation is called: `(uncommitted)` when only an in-progress transaction
    /// has created it (a `CREATE TABLE AS` running, a rewrite's new file): it is not a
    /// committed table yet, and may never be. Without memory the disk cannot tell an
    /// uncommitted transaction from one committed since the last checkpoint.
    fn label(&self, rel: &Relation, table: Option<&Relation>) -> String {
        let base = match table {
            Some(t) => format!("{} → {}", rel.name, t.qualified()),
            None => rel.qualified(),
        };
        match (rel.pending, self.resolver.catalog().fresh) {
            (false, _) => base,
            (true, true) => format!("{base} (uncommitted)"),
            (true, false) => {
                format!("{base} (uncommitted, or committed after the last checkpoint)")
            }
        }
    }

    /// Where a path the server uses can be read here (under its root for a container's).
    fn abs(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        let dd = &self.resolver.catalog().datadir;
        if dd.fs_root.is_some() {
            return dd.readable(p);
        }
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.root.join(p)
        }
    }
}

impl CatalogNamer {
    /// A pg_dump on this host told to dump part of the database, or in parallel (see
    /// `dumped_tables`); read at most once a second.
    fn dump_selective(&mut self) -> bool {
        match self.dump_selective {
            Some((at, v)) if at.elapsed() < DUMP_ARGS_MAX_AGE => v,
            _ => {
                let v = crate::process::proc::arguments_of_all("pg_dump")
                    .iter()
                    .any(|a| crate::model::operation::pg_dump::selects_or_reorders(a));
                self.dump_selective = Some((std::time::Instant::now(), v));
                v
            }
        }
    }
}

impl Namer for CatalogNamer {
    fn name(&mut self, path: &str) -> Named {
        let r = self.resolver.resolve(Path::new(path));
        let relpath = r.relpath.clone();
        let shown = relpath.clone().unwrap_or_else(|| path.to_string());
        let (label, relation) = match &r.class {
            PathClass::Relation(f) | PathClass::TempRelation(f) => {
                // The main-fork, segment-0 path: what records call the relation.
                let path = f.locator.relpath(&self.version_dir);
                let label = match &r.relation {
                    Some(rel) => self.label(rel, r.table.as_ref()),
                    None => format!("{path} (not in catalog yet)"),
                };
                let info = RelInfo {
                    id: RelIdentity {
                        locator: f.locator,
                        path,
                        label: label.clone(),
                        schema: r.relation.as_ref().map(|x| x.schema.clone()),
                        name: r.relation.as_ref().map(|x| x.name.clone()),
                        kind: r.relation.as_ref().map(|x| x.kind.as_str()),
                        table: r.table.as_ref().map(|t| t.qualified()),
                        known: r.relation.as_ref().is_some_and(|x| !x.pending),
                    },
                    fork: f.fork,
                    segment: f.segment,
                };
                (label, Some(std::sync::Arc::new(info)))
            }
            PathClass::TempFile {
                pid,
                counter,
                fileset_member,
                ..
            } => (
                match fileset_member {
                    Some(m) if !m.is_empty() => format!("shared temp file {m} (pid {pid})"),
                    Some(_) => format!("shared fileset {counter} (pid {pid})"),
                    None => format!("temp file {counter} (pid {pid})"),
                },
                None,
            ),
            PathClass::Wal(WalFile::Segment { .. }) => (
                format!("WAL {}", shown.rsplit('/').next().unwrap_or(&shown)),
                None,
            ),
            PathClass::Wal(_) => (format!("WAL {}", shown.trim_start_matches("pg_wal/")), None),
            PathClass::Slru { slru, segment } => (format!("{slru} {segment:04X}"), None),
            PathClass::Control => ("pg_control".into(), None),
            PathClass::Other { .. } => (shown.clone(), None),
        };
        Named {
            relpath,
            class: r.class.class_name(),
            label,
            relation,
        }
    }

    fn relation_size(&mut self, rel: &RelInfo) -> Option<u64> {
        files_size(&self.abs(&rel.id.path))
    }

    fn name_block(&mut self, rel: &RelFileLocator, fork: Fork) -> Option<std::sync::Arc<RelInfo>> {
        let path = rel.fork_path(fork, &self.version_dir);
        self.name(&path).relation
    }

    fn resident_blocks(
        &mut self,
        rel: &RelFileLocator,
        fork: Fork,
        blocks: std::ops::Range<u32>,
    ) -> Option<u32> {
        // Temp relations live in the backend's local buffers, not in shared ones.
        if rel.backend.is_some() {
            return None;
        }
        let fork = match fork {
            Fork::Main => 0,
            Fork::Fsm => 1,
            Fork::Vm => 2,
            Fork::Init => 3,
        };
        let file = (rel.spc_oid, rel.db_oid, rel.rel_number);
        let sb = self.residency.get()?;
        match sb.resident_count(file, fork, blocks, RESIDENCY_MAX_AGE) {
            Ok(n) => Some(n),
            Err(_) => {
                // The cluster is gone (or its memory unreadable): unknown from now on.
                self.residency = Residency::Off;
                None
            }
        }
    }

    fn index_count(&mut self, db: u32, oid: u32) -> Option<u64> {
        use crate::pgdata::catalog::RelKind;
        let count = |cat: &crate::pgdata::catalog::Catalog| {
            cat.relations
                .iter()
                .filter(|r| {
                    r.database() == Some(db)
                        && r.kind == RelKind::Index
                        && r.owner == Some(oid)
                        && !r.pending
                })
                .count() as u64
        };
        if self.resolver.catalog().by_oid(db, oid).is_none() {
            self.resolver.maybe_reload();
        }
        let cat = self.resolver.catalog();
        cat.by_oid(db, oid)?;
        Some(count(cat))
    }

    fn dump_bytes(&mut self, db: u32, table: &(String, String)) -> Option<(u64, u64)> {
        // The files are stat'ed once in a while, not every interval: a database may have
        // thousands of tables.
        let fresh = self
            .dump_sizes
            .as_ref()
            .is_some_and(|(at, d, _)| *d == db && at.elapsed() < DUMP_SIZES_MAX_AGE);
        if !fresh {
            let tables = self.dumped_tables(db)?;
            let cat = self.resolver.catalog();
            let paths: std::collections::HashMap<(&str, &str), &str> = cat
                .relations
                .iter()
                .filter(|r| r.database() == Some(db))
                .map(|r| ((r.schema.as_str(), r.name.as_str()), r.path.as_str()))
                .collect();
            let mut sized: Vec<SizedTable> = tables
                .iter()
                .map(|t| {
                    let bytes = paths
                        .get(&(t.0.as_str(), t.1.as_str()))
                        .and_then(|p| files_size(&self.abs(p)))
                        .unwrap_or(0);
                    (t.clone(), bytes)
                })
                .collect();
            sized.sort_by(|a, b| {
                (a.0 .0.as_bytes(), a.0 .1.as_bytes()).cmp(&(b.0 .0.as_bytes(), b.0 .1.as_bytes()))
            });
            self.dump_sizes = Some((std::time::Instant::now(), db, sized));
        } else if self.dump_selective() {
            return None;
        }
        let (_, _, sized) = self.dump_sizes.as_ref()?;
        let key = (table.0.as_bytes(), table.1.as_bytes());
        let before = sized
            .iter()
            .filter(|(t, _)| (t.0.as_bytes(), t.1.as_bytes()) < key)
            .map(|(_, b)| b)
            .sum();
        Some((before, sized.iter().map(|(_, b)| b).sum()))
    }

    fn dumped_tables(&mut self, db: u32) -> Option<Vec<(String, String)>> {
        use crate::pgdata::catalog::{Persistence, RelKind};
        // A pg_dump on this host told to dump part of the database, or in parallel, does
        // not go through the catalog's tables in name order: no "k of n" rather than a
        // wrong one. (A pg_dump on another host cannot be asked.)
        if self.dump_selective() {
            return None;
        }
        let cat = self.resolver.catalog();
        Some(
            cat.relations
                .iter()
                .filter(|r| {
                    r.database() == Some(db)
                        && r.kind == RelKind::Table
                        && r.persistence != Persistence::Temp
                        && !r.pending
                        && crate::model::operation::pg_dump::dumped_schema(&r.schema)
                })
                .map(|r| (r.schema.clone(), r.name.clone()))
                .collect(),
        )
    }
    fn relation_by_oid(&mut self, db: u32, oid: u32) -> Option<RelIdentity> {
        if self.resolver.catalog().by_oid(db, oid).is_none() {
            self.resolver.maybe_reload();
        }
        let cat = self.resolver.catalog();
        let rel = cat.by_oid(db, oid)?;
        let owner = cat.owner_of(rel);
        Some(RelIdentity {
            locator: rel.locator,
            path: rel.path.clone(),
            label: self.label(rel, owner),
            schema: Some(rel.schema.clone()),
            name: Some(rel.name.clone()),
            kind: Some(rel.kind.as_str()),
            table: owner.map(|t| t.qualified()),
            known: !rel.pending,
        })
    }

    fn refresh(&mut self) -> bool {
        self.resolver.refresh();
        // A re-read triggered by an unknown file between two refreshes changes names too:
        // compare generations, not this call's result.
        let changed = self.resolver.generation() != self.seen_generation;
        self.seen_generation = self.resolver.generation();
        let fresh = self.resolver.catalog().fresh;
        if self.was_fresh && !fresh {
            // Memory stopped answering (every process of the cluster we read through is
            // gone): said once, like at the start.
            self.notes
                .push(disk_note("shared memory can no longer be read"));
        }
        self.was_fresh = fresh;
        changed
    }

    fn file_size(&mut self, path: &str) -> Option<u64> {
        std::fs::metadata(self.abs(path))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len())
    }
}

/// The bytes of a relation fork's segment files, from the first: None when there is none.
fn files_size(base: &Path) -> Option<u64> {
    let mut total = 0u64;
    for seg in 0u32.. {
        let p = if seg == 0 {
            base.to_path_buf()
        } else {
            PathBuf::from(format!("{}.{seg}", base.display()))
        };
        match std::fs::metadata(&p) {
            Ok(m) => total += m.len(),
            Err(_) if seg > 0 => break,
            Err(_) => return None,
        }
    }
    Some(total)
}
