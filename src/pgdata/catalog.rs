//! The catalogs of every database, read from heap files: databases, tablespaces,
//! namespaces and every relation with storage, with the file each one lives in.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::bytes::{name_at, u32_at};
use super::layout::*;
use super::page::{check_page, heap_tuples, HeapTuple};
use super::relfile::RelFileLocator;
use super::relmap::{read_relmap, RelMap};
use super::xact::{tuple_visibility, Clog, MemoryFirst, Visibility, XidStatus};
use super::{io_err, open_regular, DataDir, PgDataError};
use crate::text::excerpt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelKind {
    Table,
    Index,
    Sequence,
    Toast,
    Matview,
}

impl RelKind {
    /// Only the relkinds with storage (`RELKIND_HAS_STORAGE`); the rest have no file.
    pub fn from_relkind(c: u8) -> Option<RelKind> {
        Some(match c {
            b'r' => RelKind::Table,
            b'i' => RelKind::Index,
            b'S' => RelKind::Sequence,
            b't' => RelKind::Toast,
            b'm' => RelKind::Matview,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RelKind::Table => "table",
            RelKind::Index => "index",
            RelKind::Sequence => "sequence",
            RelKind::Toast => "toast",
            RelKind::Matview => "matview",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    Permanent,
    Unlogged,
    Temp,
}

impl Persistence {
    fn from_byte(c: u8) -> Persistence {
        match c {
            b'u' => Persistence::Unlogged,
            b't' => Persistence::Temp,
            _ => Persistence::Permanent,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Persistence::Permanent => "permanent",
            Persistence::Unlogged => "unlogged",
            Persistence::Temp => "temp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Database {
    pub oid: u32,
    pub name: String,
    pub tablespace: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tablespace {
    pub oid: u32,
    pub name: String,
    /// Where `pg_tblspc/<oid>` points; None for pg_default and pg_global.
    pub location: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub oid: u32,
    pub name: String,
    pub namespace: u32,
    pub schema: String,
    pub kind: RelKind,
    pub persistence: Persistence,
    /// Its files: tablespace (effective, never 0: the database default is filled in),
    /// database (0 for shared catalogs in `global/`), the number in the file name
    /// (pg_relation_filenode(), resolved through the map) and a temp relation's owner.
    pub locator: RelFileLocator,
    pub mapped: bool,
    /// For an index: the table it indexes; for a TOAST table: the table that owns it.
    pub owner: Option<u32>,
    pub reltoastrelid: u32,
    /// Found only in a transaction that has not committed as far as the disk knows.
    pub pending: bool,
    /// Exactly what `pg_relation_filepath()` prints.
    pub path: String,
}

impl Relation {
    /// None for shared catalogs in `global/`.
    pub fn database(&self) -> Option<u32> {
        (self.locator.db_oid != 0).then_some(self.locator.db_oid)
    }

    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

#[derive(Debug, Clone)]
pub struct Catalog {
    pub datadir: DataDir,
    pub databases: Vec<Database>,
    pub tablespaces: Vec<Tablespace>,
    /// Every relation with storage, one per file path; shared catalogs once.
    pub relations: Vec<Relation>,
    /// Databases that could not be read, and why (a database being dropped, say).
    pub warnings: Vec<String>,
    /// Pages and transaction status came from the server's memory where it had them;
    /// false: from the disk alone, which lags DDL until a checkpoint.
    pub fresh: bool,
    /// Catalog pages taken from shared buffers in this read.
    pub pages_from_memory: u64,
    inputs: Inputs,
    by_file: HashMap<RelFileLocator, usize>,
    by_oid: HashMap<(u32, u32), usize>,
}

/// The directory holding a database's files in tablespace `spc`.
pub fn database_dir(dd: &DataDir, spc: u32, db: u32) -> PathBuf {
    match spc {
        DEFAULTTABLESPACE_OID => dd.root.join("base").join(db.to_string()),
        // Through the link as the server follows it (in its container, if it is in one).
        spc => dd.readable(
            &Path::new("pg_tblspc")
                .join(spc.to_string())
                .join(dd.tablespace_version_dir())
                .join(db.to_string()),
        ),
    }
}

/// A catalog heap's main fork as buffer tags name it: (tablespace, database (0 for
/// shared catalogs), relfilenode).
pub type FileKey = (u32, u32, u32);

/// What the server has in memory and the disk may not have yet: catalog pages in shared
/// buffers and transaction status in the `pg_xact` SLRU. Implemented above this layer
/// (pgdata reads files only); every answer is hostile input, checked here like a disk
/// page.
pub trait Overlay {
    /// Called once at the start of each catalog read.
    fn begin(&mut self) {}
    /// Copy block `blkno` of `file` into `page` when memory holds a trustworthy copy.
    fn page(&mut self, file: FileKey, blkno: u32, page: &mut [u8]) -> bool;
    /// One past the highest block of `file` in memory: blocks past the file's end on
    /// disk (a catalog extended since the last checkpoint) exist only there.
    fn blocks(&mut self, file: FileKey) -> Option<u32>;
    /// The status of `xid` when memory knows it.
    fn xid_status(&mut self, xid: u32) -> Option<XidStatus>;
    /// The LSN (`pd_lsn`) of block `blkno` of `file` when memory has the block: every
    /// WAL-logged change of a page moves it. A torn read only costs a needless re-read.
    fn page_lsn(&mut self, file: FileKey, blkno: u32) -> Option<u64>;
    /// Whether pages and statuses come from memory (false: disk only).
    fn fresh(&self) -> bool;
}

/// The disk alone.
pub struct DiskOnly;

impl Overlay for DiskOnly {
    fn page(&mut self, _: FileKey, _: u32, _: &mut [u8]) -> bool {
        false
    }
    fn blocks(&mut self, _: FileKey) -> Option<u32> {
        None
    }
    fn xid_status(&mut self, _: u32) -> Option<XidStatus> {
        None
    }
    fn page_lsn(&mut self, _: FileKey, _: u32) -> Option<u64> {
        None
    }
    fn fresh(&self) -> bool {
        false
    }
}

/// What one catalog read was made from, to tell cheaply whether a new read would give
/// the same names: every page's LSN, the files' sizes and times, the transactions that
/// were still running.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pages: Vec<(FileKey, u32, u64)>,
    blocks_in_memory: Vec<(FileKey, Option<u32>)>,
    files: Vec<(PathBuf, Option<(u64, std::time::SystemTime)>)>,
    open_xids: std::collections::BTreeSet<u32>,
}

fn file_stamp(p: &Path) -> Option<(u64, std::time::SystemTime)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.len(), m.modified().ok()?))
}

/// `pd_lsn`: the first 8 bytes of a page, `{xlogid, xrecoff}`.
fn page_lsn(page: &[u8]) -> u64 {
    let w = |o| u64::from(u32_at(page, o).unwrap_or(0));
    (w(0) << 32) | w(4)
}

/// Where a scan reads from: the overlay, the disk's pg_xact behind it.
struct Sources<'a> {
    overlay: &'a mut dyn Overlay,
    clog: Clog,
    /// Blocks taken from memory, for tests and the overhead figures.
    from_memory: u64,
    inputs: Inputs,
}

/// What a heap scan saw, for the messages about empty or damaged catalogs.
#[derive(Debug, Clone, Copy, Default)]
struct Scanned {
    /// Rows handed on (visible or pending).
    rows: usize,
    /// The size of the files, all segments.
    bytes: u64,
}

/// A core catalog with no rows is a damaged one: every cluster has databases, tablespaces,
/// schemas and relations. An empty list with exit status 0 would hide that.
fn empty_catalog(path: &Path, what: &str, seen: Scanned) -> PgDataError {
    PgDataError::corrupt(
        format!("{} ({what})", path.display()),
        format!("it holds no rows ({} bytes)", seen.bytes),
    )
}

/// Read block `blkno` afresh; returns how many bytes of it the file has.
fn read_block(path: &Path, blkno: u64, page: &mut [u8]) -> Result<usize, PgDataError> {
    let mut f = open_regular(path)?;
    f.seek(SeekFrom::Start(blkno * page.len() as u64))
        .map_err(io_err(path))?;
    read_full(&mut f, page).map_err(io_err(path))
}

/// Read every page of a heap's main fork (all 1 GiB segments) and hand each visible or
/// pending tuple to `f`. A block memory holds a trustworthy copy of comes from memory
/// (the disk's may be a checkpoint old), including blocks past the file's end; the rest
/// from disk. A disk page whose header fails validation is re-read, since a page being
/// written concurrently can be torn; one still bad is an error naming the block. A
/// partial last block is re-read too (a relation being extended); one still partial is
/// a truncated file, skipped with a warning naming it.
fn scan_heap(
    dd: &DataDir,
    base: &Path,
    file: FileKey,
    src: &mut Sources<'_>,
    warnings: &mut Vec<String>,
    mut f: impl FnMut(&HeapTuple<'_>, Visibility),
) -> Result<Scanned, PgDataError> {
    let blcksz = dd.control.blcksz as usize;
    // A segment holds at most relseg_size blocks; bytes beyond are not the relation's.
    let seg_blocks = u64::from(dd.control.relseg_size);
    let mut page = vec![0u8; blcksz];
    let mut mem_page = vec![0u8; blcksz];
    let mut seen = Scanned::default();
    let in_memory = src.overlay.blocks(file);
    src.inputs.blocks_in_memory.push((file, in_memory));
    let mem_blocks = u64::from(in_memory.unwrap_or(0));
    // The next block number of the relation (segments laid end to end).
    let mut global: u64 = 0;
    let mut walk = |g: u64, page: &[u8], src: &mut Sources<'_>, seen: &mut Scanned| {
        let blk = u32::try_from(g).unwrap_or(u32::MAX);
        src.inputs.pages.push((file, blk, page_lsn(page)));
        let mut xids = MemoryFirst::new(&mut *src.overlay, &mut src.clog);
        for t in heap_tuples(page) {
            let v = tuple_visibility(&t, &mut xids);
            if v != Visibility::Invisible {
                seen.rows += 1;
                f(&t, v);
            }
        }
        let open = std::mem::take(&mut xids.open);
        src.inputs.open_xids.extend(open);
    };
    // A trustworthy page from memory: copied, and its header valid.
    let from_memory = |g: u64, out: &mut [u8], src: &mut Sources<'_>| {
        let ok = g < mem_blocks
            && u32::try_from(g).is_ok_and(|b| src.overlay.page(file, b, out))
            && check_page(out, blcksz).is_ok();
        src.from_memory += u64::from(ok);
        ok
    };
    'segments: for segno in 0u32.. {
        let path = if segno == 0 {
            base.to_path_buf()
        } else {
            PathBuf::from(format!("{}.{segno}", base.display()))
        };
        src.inputs.files.push((path.clone(), file_stamp(&path)));
        let mut file = match open_regular(&path) {
            Ok(f) => f,
            Err(PgDataError::Io { error, .. })
                if segno > 0 && error.kind() == std::io::ErrorKind::NotFound =>
            {
                break
            }
            // The first segment of a catalog created since the last checkpoint may not
            // exist on disk yet; memory then has every page.
            Err(PgDataError::Io { error, .. })
                if mem_blocks > 0 && error.kind() == std::io::ErrorKind::NotFound =>
            {
                break
            }
            Err(e) => return Err(e),
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        seen.bytes += len;
        let mut reader = std::io::BufReader::with_capacity(256 * 1024, &mut file);
        let mut blkno: u64 = 0;
        while blkno < seg_blocks {
            // A block memory has is not read from disk at all: re-reading a big pg_class
            // every interval would cost more than the rest of the trace.
            if blkno * (blcksz as u64) < len && from_memory(global, &mut mem_page, src) {
                walk(global, &mem_page, src, &mut seen);
                reader.seek_relative(blcksz as i64).map_err(io_err(&path))?;
                blkno += 1;
                global += 1;
                continue;
            }
            let mut n = read_full(&mut reader, &mut page).map_err(io_err(&path))?;
            if n == 0 {
                break;
            }
            if n < blcksz {
                for _ in 0..3 {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    n = read_block(&path, blkno, &mut page)?;
                    if n == blcksz {
                        break;
                    }
                }
                if n < blcksz {
                    warnings.push(format!(
                        "{} is truncated: its last block ({blkno}) has {n} of {blcksz} bytes and was skipped",
                        path.display()
                    ));
                    break 'segments;
                }
                // The re-read bypassed the buffered reader: put it on the next block.
                reader
                    .seek(SeekFrom::Start((blkno + 1) * blcksz as u64))
                    .map_err(io_err(&path))?;
            }
            let mut attempt = 0;
            let ok = loop {
                match check_page(&page, blcksz) {
                    Ok(ok) => break ok,
                    Err(e) if attempt >= 3 => {
                        return Err(PgDataError::corrupt(
                            format!("{} block {blkno}", path.display()),
                            e.to_string(),
                        ))
                    }
                    Err(_) => {
                        attempt += 1;
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        read_block(&path, blkno, &mut page)?;
                    }
                }
            };
            if ok {
                walk(global, &page, src, &mut seen);
            }
            blkno += 1;
            global += 1;
        }
        if blkno < seg_blocks {
            break; // a short segment is the last one
        }
    }
    // Blocks the server added since the file was last written: in memory only.
    while global < mem_blocks {
        if from_memory(global, &mut mem_page, src) {
            walk(global, &mem_page, src, &mut seen);
        }
        global += 1;
    }
    Ok(seen)
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Keep one row per key: a visible row beats a pending one, a later one an earlier one.
fn keep<T>(map: &mut HashMap<u32, (T, Visibility)>, key: u32, row: T, v: Visibility) {
    match map.get(&key) {
        Some((_, Visibility::Visible)) if v != Visibility::Visible => {}
        _ => {
            map.insert(key, (row, v));
        }
    }
}

fn oid_names(
    dd: &DataDir,
    (base, key): (&Path, FileKey),
    l: &OidNameLayout,
    src: &mut Sources<'_>,
    warnings: &mut Vec<String>,
    what: &str,
) -> Result<HashMap<u32, (String, Visibility)>, PgDataError> {
    let mut out = HashMap::new();
    let seen = scan_heap(dd, base, key, src, warnings, |t, v| {
        if let Some(d) = t.fixed_prefix(l.prefix.natts, l.prefix.len) {
            if let (Some(oid), Some(name)) = (u32_at(d, l.oid), name_at(d, l.name)) {
                keep(&mut out, oid, name, v);
            }
        }
    })?;
    if out.is_empty() {
        return Err(empty_catalog(base, what, seen));
    }
    Ok(out)
}

/// One pg_class row as stored.
#[derive(Debug, Clone)]
struct ClassRow {
    oid: u32,
    name: String,
    namespace: u32,
    relfilenode: u32,
    reltablespace: u32,
    reltoastrelid: u32,
    relisshared: bool,
    persistence: u8,
    relkind: u8,
}

fn decode_class(t: &HeapTuple<'_>, l: &PgClassLayout) -> Option<ClassRow> {
    let d = t.fixed_prefix(l.prefix.natts, l.prefix.len)?;
    Some(ClassRow {
        oid: u32_at(d, l.oid)?,
        name: name_at(d, l.relname)?,
        namespace: u32_at(d, l.relnamespace)?,
        relfilenode: u32_at(d, l.relfilenode)?,
        reltablespace: u32_at(d, l.reltablespace)?,
        reltoastrelid: u32_at(d, l.reltoastrelid)?,
        relisshared: *d.get(l.relisshared)? != 0,
        persistence: *d.get(l.relpersistence)?,
        relkind: *d.get(l.relkind)?,
    })
}

/// The schema of a relation whose pg_namespace row could not be read: marked, so that an
/// OID is never taken for a schema's name (a schema can be called "2200").
fn unknown_schema(oid: u32) -> String {
    format!("?{oid}")
}

/// One database's pg_class, visible rows by OID, plus the rows of relations being created
/// or rewritten right now: their new relfilenode should still resolve to the relation.
struct ClassRows {
    rows: HashMap<u32, (ClassRow, Visibility)>,
    pending_files: Vec<ClassRow>,
    /// The pg_class file, for error messages.
    file: PathBuf,
}

impl ClassRows {
    fn read(
        dd: &DataDir,
        db: &Database,
        dir: &Path,
        local_map: &RelMap,
        src: &mut Sources<'_>,
        warnings: &mut Vec<String>,
    ) -> Result<ClassRows, PgDataError> {
        let pg_class_file = local_map.get(&RELATION_RELATION_ID).ok_or_else(|| {
            PgDataError::corrupt("local pg_filenode.map", "no entry for pg_class")
        })?;
        let lc = dd.layout.pg_class;
        let mut rows = HashMap::new();
        let mut pending_files = Vec::new();
        let file = dir.join(pg_class_file.to_string());
        let key = (db.tablespace, db.oid, *pg_class_file);
        let seen = scan_heap(dd, &file, key, src, warnings, |t, v| {
            if let Some(r) = decode_class(t, &lc) {
                if v == Visibility::Pending {
                    pending_files.push(r.clone());
                }
                keep(&mut rows, r.oid, r, v);
            }
        })?;
        if rows.is_empty() {
            return Err(empty_catalog(&file, "pg_class", seen));
        }
        Ok(ClassRows {
            rows,
            pending_files,
            file,
        })
    }

    /// The file of an unmapped catalog (pg_namespace, pg_index), from its pg_class row.
    fn file_of(
        &self,
        oid: u32,
        what: &str,
        dd: &DataDir,
        db: &Database,
        local_map: &RelMap,
    ) -> Result<(PathBuf, FileKey), PgDataError> {
        let no_row = || {
            PgDataError::corrupt(
                format!("{} (pg_class)", self.file.display()),
                format!("no row for {what}"),
            )
        };
        let (r, _) = self.rows.get(&oid).ok_or_else(no_row)?;
        let rfn = match r.relfilenode {
            0 => *local_map.get(&oid).ok_or_else(no_row)?,
            f => f,
        };
        let spc = match r.reltablespace {
            0 => db.tablespace,
            s => s,
        };
        Ok((
            database_dir(dd, spc, db.oid).join(rfn.to_string()),
            (spc, db.oid, rfn),
        ))
    }

    /// TOAST table OID → the table it serves.
    fn toast_owners(&self) -> HashMap<u32, u32> {
        self.rows
            .values()
            .filter(|(r, _)| r.reltoastrelid != 0)
            .map(|(r, _)| (r.reltoastrelid, r.oid))
            .collect()
    }

    /// Rows by OID (with whether only an in-progress transaction made them), then the
    /// pending rows a newer version superseded (they only index their file).
    fn in_order(self) -> impl Iterator<Item = (ClassRow, bool)> {
        let mut ordered: Vec<(ClassRow, bool)> = self
            .rows
            .into_values()
            .map(|(r, v)| (r, v == Visibility::Pending))
            .collect();
        ordered.sort_by_key(|(r, _)| r.oid);
        let superseded: Vec<(ClassRow, bool)> = self
            .pending_files
            .into_iter()
            .filter(|p| {
                !ordered
                    .iter()
                    .any(|(r, _)| r.oid == p.oid && r.relfilenode == p.relfilenode)
            })
            .map(|r| (r, true))
            .collect();
        ordered.into_iter().chain(superseded)
    }
}

/// pg_index: index OID → the table it indexes.
fn index_owners(
    dd: &DataDir,
    (idx_file, key): (&Path, FileKey),
    src: &mut Sources<'_>,
    warnings: &mut Vec<String>,
) -> Result<HashMap<u32, (u32, Visibility)>, PgDataError> {
    let li = dd.layout.pg_index;
    let mut index_of = HashMap::new();
    scan_heap(dd, idx_file, key, src, warnings, |t, v| {
        if let Some(d) = t.fixed_prefix(li.prefix.natts, li.prefix.len) {
            if let (Some(i), Some(r)) = (u32_at(d, li.indexrelid), u32_at(d, li.indrelid)) {
                keep(&mut index_of, i, r, v);
            }
        }
    })?;
    Ok(index_of)
}

/// The relation a pg_class row describes, or None when it has no storage (or a mapped
/// catalog missing from its map). `maps` is [global, local] `pg_filenode.map`.
fn relation_of(
    dd: &DataDir,
    db: &Database,
    maps: [&RelMap; 2],
    r: &ClassRow,
    pending: bool,
    schema: String,
    owner: impl Fn(RelKind) -> Option<u32>,
) -> Option<Relation> {
    let kind = RelKind::from_relkind(r.relkind)?;
    let shared = r.relisshared;
    let (relfilenode, mapped) = match r.relfilenode {
        0 => (*maps[usize::from(!shared)].get(&r.oid)?, true),
        f => (f, false),
    };
    let persistence = Persistence::from_byte(r.persistence);
    let temp_backend = match persistence {
        Persistence::Temp => temp_namespace_backend(&schema),
        _ => None,
    };
    let tablespace = match (shared, r.reltablespace) {
        (true, _) => GLOBALTABLESPACE_OID,
        (false, 0) => db.tablespace,
        (false, s) => s,
    };
    let locator = RelFileLocator {
        spc_oid: tablespace,
        db_oid: if shared { 0 } else { db.oid },
        rel_number: relfilenode,
        backend: temp_backend,
    };
    Some(Relation {
        oid: r.oid,
        name: r.name.clone(),
        namespace: r.namespace,
        schema,
        kind,
        persistence,
        locator,
        mapped,
        owner: owner(kind),
        reltoastrelid: r.reltoastrelid,
        pending,
        path: locator.relpath(&dd.tablespace_version_dir()),
    })
}

fn unknown_schemas_warning(db: &Database, n: usize, nsp_file: &Path) -> String {
    let (are, schemas) = match n {
        1 => ("relation is", "a schema"),
        _ => ("relations are", "schemas"),
    };
    format!(
        "database {}: {n} {are} in {schemas} missing from {} (pg_namespace), shown as ?OID",
        excerpt::quote(db.name.as_bytes()),
        nsp_file.display(),
    )
}

/// `pg_temp_N` / `pg_toast_temp_N` -> N.
fn temp_namespace_backend(nspname: &str) -> Option<u32> {
    nspname
        .strip_prefix("pg_temp_")
        .or_else(|| nspname.strip_prefix("pg_toast_temp_"))
        .and_then(|n| n.parse().ok())
}

impl Catalog {
    /// The catalog from the disk alone (`catalog`, `resolve`, `ps`).
    pub fn load(dd: &DataDir) -> Result<Catalog, PgDataError> {
        Catalog::load_with(dd, &mut DiskOnly)
    }

    /// The catalog with every page and transaction status `overlay` has in memory over
    /// the disk's.
    pub fn load_with(dd: &DataDir, overlay: &mut dyn Overlay) -> Result<Catalog, PgDataError> {
        overlay.begin();
        let fresh = overlay.fresh();
        let mut src = Sources {
            overlay,
            clog: Clog::new(&dd.root, dd.control.blcksz, dd.control.oldest_xid),
            from_memory: 0,
            inputs: Inputs::default(),
        };
        let global_map_path = dd.root.join("global/pg_filenode.map");
        src.inputs
            .files
            .push((global_map_path.clone(), file_stamp(&global_map_path)));
        let global_map = read_relmap(&dd.root.join("global/pg_filenode.map"))?;
        let mapped = |oid: u32| {
            global_map.get(&oid).copied().ok_or_else(|| {
                PgDataError::corrupt(
                    "global/pg_filenode.map",
                    format!("no entry for catalog {oid}"),
                )
            })
        };
        let global = dd.root.join("global");

        let mut databases = Vec::new();
        let ldb = dd.layout.pg_database;
        let mut dbrows = HashMap::new();
        let mut warnings = Vec::new();
        let mut decoded = 0usize;
        let shared_key = |rfn: u32| (GLOBALTABLESPACE_OID, 0, rfn);
        let pg_database_rfn = mapped(DATABASE_RELATION_ID)?;
        let pg_database = global.join(pg_database_rfn.to_string());
        let key = shared_key(pg_database_rfn);
        let seen = scan_heap(dd, &pg_database, key, &mut src, &mut warnings, |t, v| {
            let Some(d) = t.fixed_prefix(ldb.prefix.natts, ldb.prefix.len) else {
                return;
            };
            let (Some(oid), Some(name), Some(connlimit), Some(spc)) = (
                u32_at(d, ldb.oid),
                name_at(d, ldb.datname),
                u32_at(d, ldb.datconnlimit),
                u32_at(d, ldb.dattablespace),
            ) else {
                return;
            };
            decoded += 1;
            // DATCONNLIMIT_INVALID_DB (-2): a DROP DATABASE was interrupted; its files
            // may be half gone and the server refuses connections to it.
            if connlimit as i32 == -2 {
                return;
            }
            let db = Database {
                oid,
                name,
                tablespace: spc,
            };
            keep(&mut dbrows, oid, db, v);
        })?;
        if decoded == 0 {
            return Err(empty_catalog(&pg_database, "pg_database", seen));
        }
        databases.extend(dbrows.into_values().map(|(d, _)| d));
        databases.sort_by_key(|d| d.oid);

        let spc_rfn = mapped(TABLESPACE_RELATION_ID)?;
        let spcs = oid_names(
            dd,
            (&global.join(spc_rfn.to_string()), shared_key(spc_rfn)),
            &dd.layout.pg_tablespace,
            &mut src,
            &mut warnings,
            "pg_tablespace",
        )?;
        let mut tablespaces: Vec<Tablespace> = spcs
            .into_iter()
            .map(|(oid, (name, _))| Tablespace {
                oid,
                location: (oid != DEFAULTTABLESPACE_OID && oid != GLOBALTABLESPACE_OID)
                    .then(|| std::fs::read_link(dd.root.join("pg_tblspc").join(oid.to_string())))
                    .and_then(|r| r.ok()),
                name,
            })
            .collect();
        tablespaces.sort_by_key(|t| t.oid);

        let mut cat = Catalog {
            datadir: dd.clone(),
            databases,
            tablespaces,
            relations: Vec::new(),
            warnings,
            fresh,
            pages_from_memory: 0,
            inputs: Inputs::default(),
            by_file: HashMap::new(),
            by_oid: HashMap::new(),
        };
        let dbs = cat.databases.clone();
        for db in &dbs {
            match cat.load_database(db, &global_map, &mut src) {
                Ok(()) => {}
                // A database directory can vanish under us (DROP DATABASE commits after
                // pg_database was read); the rest of the cluster is still worth naming.
                Err(PgDataError::Io { error, .. })
                    if error.kind() == std::io::ErrorKind::NotFound =>
                {
                    cat.warnings
                        .push(format!("database {:?} ({}) vanished", db.name, db.oid));
                }
                // Anything else (a corrupt page, an unreadable file) would leave a hole in
                // the names that nobody notices: fail loudly instead.
                Err(e) => return Err(e),
            }
        }
        cat.pages_from_memory = src.from_memory;
        cat.inputs = src.inputs;
        Ok(cat)
    }

    fn load_database(
        &mut self,
        db: &Database,
        global_map: &RelMap,
        src: &mut Sources<'_>,
    ) -> Result<(), PgDataError> {
        let dd = self.datadir.clone();
        let dir = database_dir(&dd, db.tablespace, db.oid);
        let local_map_path = dir.join("pg_filenode.map");
        src.inputs
            .files
            .push((local_map_path.clone(), file_stamp(&local_map_path)));
        let local_map = read_relmap(&local_map_path)?;
        let mut warnings = Vec::new();
        let class = ClassRows::read(&dd, db, &dir, &local_map, src, &mut warnings)?;
        let (nsp_file, nsp_key) =
            class.file_of(NAMESPACE_RELATION_ID, "pg_namespace", &dd, db, &local_map)?;
        let namespaces = oid_names(
            &dd,
            (&nsp_file, nsp_key),
            &dd.layout.pg_namespace,
            src,
            &mut warnings,
            "pg_namespace",
        )?;
        let (idx_file, idx_key) =
            class.file_of(INDEX_RELATION_ID, "pg_index", &dd, db, &local_map)?;
        let index_of = index_owners(&dd, (&idx_file, idx_key), src, &mut warnings)?;
        let toast_owner = class.toast_owners();

        let maps = [global_map, &local_map];
        let mut unknown_schemas = 0usize;
        let mut rels = Vec::new();
        for (r, pending) in class.in_order() {
            let owner = |kind| match kind {
                RelKind::Index => index_of.get(&r.oid).map(|&(t, _)| t),
                RelKind::Toast => toast_owner.get(&r.oid).copied(),
                _ => None,
            };
            let schema = match namespaces.get(&r.namespace) {
                Some((n, _)) => n.clone(),
                None => {
                    unknown_schemas += 1;
                    unknown_schema(r.namespace)
                }
            };
            if let Some(rel) = relation_of(&dd, db, maps, &r, pending, schema, owner) {
                rels.push(rel);
            }
        }
        if unknown_schemas > 0 {
            warnings.push(unknown_schemas_warning(db, unknown_schemas, &nsp_file));
        }
        self.warnings.extend(warnings);
        for rel in rels {
            self.insert(rel);
        }
        Ok(())
    }

    /// Add a relation unless its file is already known (shared catalogs are listed in every
    /// database's pg_class; the first one wins). Superseded-but-pending rows only index
    /// their file, they are not listed.
    fn insert(&mut self, rel: Relation) {
        if self.by_file.contains_key(&rel.locator) {
            return;
        }
        let idx = self.relations.len();
        self.by_file.insert(rel.locator, idx);
        self.by_oid
            .entry((rel.locator.db_oid, rel.oid))
            .or_insert(idx);
        self.relations.push(rel);
    }

    pub fn by_file(&self, key: &RelFileLocator) -> Option<&Relation> {
        self.by_file.get(key).map(|&i| &self.relations[i])
    }

    /// Whether a new read would find what this one was made from, unchanged: the same
    /// catalog blocks in memory with the same LSNs, the same files (size and time), every
    /// transaction that was running still running. Much cheaper than a read: a refresh
    /// every interval costs this when no DDL happened.
    pub fn unchanged(&self, overlay: &mut dyn Overlay) -> bool {
        overlay.begin();
        let i = &self.inputs;
        if i.files.iter().any(|(p, stamp)| file_stamp(p) != *stamp) {
            return false;
        }
        if i.blocks_in_memory
            .iter()
            .any(|(f, n)| overlay.blocks(*f) != *n)
        {
            return false;
        }
        // A block read from disk and not in memory now is as the file has it: unchanged.
        if i.pages
            .iter()
            .any(|&(f, b, lsn)| overlay.page_lsn(f, b).is_some_and(|now| now != lsn))
        {
            return false;
        }
        let dd = &self.datadir;
        let mut clog = Clog::new(&dd.root, dd.control.blcksz, dd.control.oldest_xid);
        let mut xids = MemoryFirst::new(overlay, &mut clog);
        i.open_xids.iter().all(|&x| {
            matches!(
                super::xact::XidLookup::status(&mut xids, x),
                XidStatus::InProgress | XidStatus::SubCommitted
            )
        })
    }

    /// The relation whose main fork is at `path` (as `pg_relation_filepath()` prints it),
    /// pending ones included.
    pub fn by_file_path(&self, path: &str) -> Option<&Relation> {
        self.relations.iter().find(|r| r.path == path)
    }

    /// A relation by OID within a database (0 for shared catalogs).
    pub fn by_oid(&self, db: u32, oid: u32) -> Option<&Relation> {
        self.by_oid
            .get(&(db, oid))
            .or_else(|| self.by_oid.get(&(0, oid)))
            .map(|&i| &self.relations[i])
    }

    /// The table an index or TOAST table serves.
    pub fn owner_of(&self, rel: &Relation) -> Option<&Relation> {
        let owner = rel.owner?;
        self.by_oid(rel.locator.db_oid, owner)
    }

    pub fn database(&self, oid: u32) -> Option<&Database> {
        self.databases.iter().find(|d| d.oid == oid)
    }

    pub fn tablespace(&self, oid: u32) -> Option<&Tablespace> {
        self.tablespaces.iter().find(|t| t.oid == oid)
    }

    /// Relations to list: one per file, without the superseded versions of relations
    /// whose rewrite is in progress.
    pub fn listed(&self) -> impl Iterator<Item = &Relation> {
        self.relations.iter().filter(|r| {
            !r.pending
                || self
                    .by_oid(r.locator.db_oid, r.oid)
                    .is_some_and(|first| std::ptr::eq(first, *r))
        })
    }
}
