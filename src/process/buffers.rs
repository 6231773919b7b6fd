//! Pages of shared buffers, read through `/proc/PID/mem`: the catalog as the server has
//! it now, not as the last checkpoint left it on disk.
//!
//! `BufferDescriptors`, `BufferBlocks` and `NBuffers` are exported on every build. Each
//! descriptor (`BufferDesc`, `buf_internals.h`, 64-byte stride) says which block a buffer
//! holds; the page is at `BufferBlocks + buf_id * BLCKSZ`. Nothing is locked: a page is
//! copied, then its descriptor is read again, and the copy is kept only when the buffer
//! held the same valid block throughout, with no I/O and no exclusive content lock before
//! or after, and two copies agree ([`trustworthy`]). The page header is checked by the
//! caller (pgdata). Every byte read here is hostile input.

use super::memory::{load_bias, maps, MemError, Pid, ProcMem, Symbols};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

/// `BUFFERDESC_PAD_TO_SIZE` on 64-bit builds.
pub const DESC_STRIDE: usize = 64;

pub const BUF_REFCOUNT_MASK: u32 = (1 << 18) - 1;
pub const BUF_USAGECOUNT_MASK: u32 = 0xF << 18;
pub const BM_LOCKED: u32 = 1 << 22;
pub const BM_VALID: u32 = 1 << 24;
pub const BM_TAG_VALID: u32 = 1 << 25;
pub const BM_IO_IN_PROGRESS: u32 = 1 << 26;
pub const BM_IO_ERROR: u32 = 1 << 27;

/// `MAIN_FORKNUM`: the catalog heaps are read through their main fork only.
pub const MAIN_FORKNUM: u32 = 0;
/// `FirstNormalObjectId`: relfilenodes below it belong to catalogs never rewritten.
pub const FIRST_NORMAL_OBJECT_ID: u32 = 16384;
/// Most `NBuffers` accepted (PostgreSQL's own limit is INT_MAX / 2 but a 1 TiB pool of
/// 8 kB pages is 2^27 buffers).
const MAX_NBUFFERS: u64 = 1 << 28;

/// Where a major keeps the content lock's state word inside `BufferDesc`, and which bit
/// of it means "held exclusively" (`lwlock.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescLayout {
    /// `content_lock.state`: `LWLock` is `{uint16 tranche; pg_atomic_uint32 state; ...}`.
    pub lock_state: usize,
    /// `content_lock.tranche`, the same non-zero number in every descriptor.
    pub lock_tranche: usize,
    /// `LW_VAL_EXCLUSIVE`.
    pub lw_val_exclusive: u32,
}

/// 12–17: `tag(20) buf_id state wait_backend_pid|pgprocno freeNext content_lock` puts the
/// lock at 36 and `LW_VAL_EXCLUSIVE` is `1 << 24`. 18 adds `PgAioWaitRef io_wref` (12
/// bytes) before the lock, and defines `LW_VAL_EXCLUSIVE` as `MAX_BACKENDS + 1` with
/// `MAX_BACKENDS = 2^18 - 1`.
pub fn desc_layout(major: u32) -> Option<DescLayout> {
    match major {
        12..=17 => Some(DescLayout {
            lock_tranche: 36,
            lock_state: 40,
            lw_val_exclusive: 1 << 24,
        }),
        18 => Some(DescLayout {
            lock_tranche: 48,
            lock_state: 52,
            lw_val_exclusive: 1 << 18,
        }),
        _ => None,
    }
}

/// `BufferTag`: the same 20 bytes in 12–18 (`RelFileNode` or `RelFileLocator` + fork + block).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    pub spc: u32,
    pub db: u32,
    pub rel: u32,
    pub fork: u32,
    pub block: u32,
}

/// One descriptor as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desc {
    pub tag: Tag,
    pub buf_id: i32,
    pub state: u32,
    pub lock_state: u32,
    pub lock_tranche: u16,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// Decode one descriptor; None when the bytes are too short.
pub fn decode_desc(b: &[u8], l: &DescLayout) -> Option<Desc> {
    Some(Desc {
        tag: Tag {
            spc: u32_at(b, 0)?,
            db: u32_at(b, 4)?,
            rel: u32_at(b, 8)?,
            fork: u32_at(b, 12)?,
            block: u32_at(b, 16)?,
        },
        buf_id: u32_at(b, 20)? as i32,
        state: u32_at(b, 24)?,
        lock_state: u32_at(b, l.lock_state)?,
        lock_tranche: u16::from_ne_bytes(
            b.get(l.lock_tranche..l.lock_tranche + 2)?.try_into().ok()?,
        ),
    })
}

impl Desc {
    /// The buffer holds a readable copy of `tag.block`: tag and data valid, no I/O on it.
    pub fn holds_valid(&self) -> bool {
        let s = self.state;
        s & BM_TAG_VALID != 0 && s & BM_VALID != 0 && s & (BM_IO_IN_PROGRESS | BM_IO_ERROR) == 0
    }

    fn exclusive(&self, l: &DescLayout) -> bool {
        self.lock_state & l.lw_val_exclusive != 0
    }
}

/// Why a copy was refused (for counters and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untrusted {
    /// The buffer holds another block now, or held it only part of the time.
    TagChanged,
    /// Not valid, being read or written, or its last I/O failed.
    NotValid,
    /// Someone held the content lock exclusively: the page may be mid-change.
    Locked,
    /// Two copies differ: it changed while being copied.
    Torn,
    /// The descriptor is not the one at that index (a wrong layout, garbage).
    Garbage,
}

/// Is `page` a trustworthy image of block `want` from buffer `buf_id`? The reads were,
/// in order: `descs[0]`, `page`, `descs[1]`, `again`, `descs[2]`. Pure: the whole
/// decision over bytes already read.
///
/// Writers change a page only under its exclusive content lock (hint bits aside, which
/// only add information). A copy overlapping a write saw the lock held at no descriptor
/// read only if the write began after one read and ended before the next; then the other
/// copy, separated from it by a descriptor read that found the lock free, saw the page
/// whole and differs from the torn one. So: every descriptor names the block, valid, with
/// no I/O and the lock not held exclusively, and the two copies are equal.
pub fn trustworthy(
    want: &Tag,
    buf_id: usize,
    descs: &[Desc; 3],
    l: &DescLayout,
    page: &[u8],
    again: &[u8],
) -> Result<(), Untrusted> {
    for d in descs {
        if usize::try_from(d.buf_id).ok() != Some(buf_id) {
            return Err(Untrusted::Garbage);
        }
        if d.tag != *want {
            return Err(Untrusted::TagChanged);
        }
        if !d.holds_valid() {
            return Err(Untrusted::NotValid);
        }
        if d.exclusive(l) {
            return Err(Untrusted::Locked);
        }
    }
    // A buffer evicted and read in again between two descriptor reads keeps its tag; the
    // flags word (without the pin count and header spinlock) shows most of that, the
    // comparison of the copies the rest.
    let flags = |d: &Desc| d.state & !(BUF_REFCOUNT_MASK | BM_LOCKED | BUF_USAGECOUNT_MASK);
    if descs.iter().any(|d| flags(d) != flags(&descs[0])) {
        return Err(Untrusted::TagChanged);
    }
    if page != again {
        return Err(Untrusted::Torn);
    }
    Ok(())
}

/// Reads another process's memory (a fake in tests).
pub trait ReadMem {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError>;
}

impl ReadMem for ProcMem {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        ProcMem::read(self, addr, buf)
    }
}

/// One attempt at copying buffer `buf_id` (descriptor at `desc_addr`, page at
/// `page_addr`) into `out`, `again` being scratch of the same size. Ok(Err(_)): read,
/// but not trustworthy; Err(_): memory could not be read.
#[allow(clippy::too_many_arguments)]
pub fn copy_once(
    mem: &impl ReadMem,
    desc_addr: u64,
    page_addr: u64,
    l: &DescLayout,
    buf_id: usize,
    want: &Tag,
    out: &mut [u8],
    again: &mut [u8],
) -> Result<Result<(), Untrusted>, MemError> {
    let desc = || -> Result<Desc, MemError> {
        let mut b = [0u8; DESC_STRIDE];
        mem.read(desc_addr, &mut b)?;
        // DESC_STRIDE bytes always decode.
        decode_desc(&b, l).ok_or(MemError::Layout {
            pid: 0,
            what: "short descriptor".into(),
        })
    };
    let d0 = desc()?;
    mem.read(page_addr, out)?;
    let d1 = desc()?;
    mem.read(page_addr, again)?;
    let d2 = desc()?;
    Ok(trustworthy(want, buf_id, &[d0, d1, d2], l, out, again))
}

/// The relation file of a tag (main fork): `(spc, db, relfilenode)`.
pub type FileKey = (u32, u32, u32);

/// Counters, for `docs/overhead.md` and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BufferStats {
    pub full_scans: u64,
    pub last_scan: Duration,
    pub pages_copied: u64,
    pub refused: u64,
}

/// Shared buffers of one cluster, as one of its processes maps them.
pub struct SharedBuffers {
    mem: ProcMem,
    descs: u64,
    blocks: u64,
    nbuffers: usize,
    blcksz: usize,
    layout: DescLayout,
    /// Blocks of the files asked for, by file: block → buffer id, as the last full scan
    /// (or a re-check since) found them.
    index: HashMap<FileKey, BTreeMap<u32, usize>>,
    /// Files to index beyond those of never-rewritten catalogs.
    watched: HashSet<FileKey>,
    /// Relation forks whose resident blocks are asked for (progress of a scan), and
    /// those blocks (valid, no I/O on them) as the last full scan found them.
    resident_watched: HashSet<(FileKey, u32)>,
    resident: HashMap<(FileKey, u32), BTreeSet<u32>>,
    last_full: Option<Instant>,
    /// A full scan is due: a buffer did not hold what the index said.
    stale: bool,
    pub stats: BufferStats,
}

/// How many times a copy is retried before the disk page is used instead.
const RETRIES: usize = 3;
/// Full scans take at most this share of the time (one in 50).
const FULL_SCAN_DUTY: u32 = 50;

impl SharedBuffers {
    /// Locate the buffer pool in `pid` (any process of the cluster: the pool is shared).
    pub fn open(pid: Pid, major: u32, blcksz: usize) -> Result<SharedBuffers, MemError> {
        let layout = desc_layout(major).ok_or_else(|| MemError::Layout {
            pid,
            what: format!("no buffer descriptor layout for PostgreSQL {major}"),
        })?;
        let syms = Symbols::load(pid)?;
        let maps = maps(pid)?;
        let bias = load_bias(pid, &maps, &syms)?;
        let sym = |name: &str| {
            syms.get(name)
                .map(|a| a.wrapping_add(bias))
                .ok_or_else(|| MemError::Layout {
                    pid,
                    what: format!("{name} is not exported by its executable"),
                })
        };
        let mem = ProcMem::open(pid)?;
        let descs = mem.read_u64(sym("BufferDescriptors")?)?;
        let blocks = mem.read_u64(sym("BufferBlocks")?)?;
        let nbuffers = u64::from(mem.read_u32(sym("NBuffers")?)?);
        let bad = |what: String| MemError::Layout { pid, what };
        if nbuffers == 0 || nbuffers > MAX_NBUFFERS {
            return Err(bad(format!("NBuffers is {nbuffers}")));
        }
        let in_shared =
            |addr: u64, len: u64| maps.iter().any(|m| m.shared() && m.contains(addr, len));
        if !in_shared(descs, nbuffers * DESC_STRIDE as u64)
            || !in_shared(blocks, nbuffers * blcksz as u64)
        {
            return Err(bad(
                "the buffer pool is not in a shared mapping (not a server process?)".into(),
            ));
        }
        let sb = SharedBuffers {
            mem,
            descs,
            blocks,
            nbuffers: nbuffers as usize,
            blcksz,
            layout,
            index: HashMap::new(),
            watched: HashSet::new(),
            resident_watched: HashSet::new(),
            resident: HashMap::new(),
            last_full: None,
            stale: true,
            stats: BufferStats::default(),
        };
        // The layout is checked on the first and last descriptors: buf_id is the index,
        // and the content locks share one tranche.
        let first = sb.desc(0)?;
        let last = sb.desc(sb.nbuffers - 1)?;
        if first.buf_id != 0
            || last.buf_id as i64 != nbuffers as i64 - 1
            || first.lock_tranche == 0
            || first.lock_tranche != last.lock_tranche
        {
            return Err(bad(format!(
                "buffer descriptors do not look like PostgreSQL {major}'s"
            )));
        }
        Ok(sb)
    }

    pub fn nbuffers(&self) -> usize {
        self.nbuffers
    }

    fn desc(&self, i: usize) -> Result<Desc, MemError> {
        let mut b = [0u8; DESC_STRIDE];
        self.mem
            .read(self.descs + (i * DESC_STRIDE) as u64, &mut b)?;
        decode_desc(&b, &self.layout).ok_or_else(|| MemError::Layout {
            pid: self.mem.pid,
            what: "short descriptor".into(),
        })
    }

    /// Ask for the blocks of `file` too from the next scan on (a catalog rewritten by
    /// `VACUUM FULL` has a relfilenode above the never-rewritten range).
    pub fn watch(&mut self, file: FileKey) {
        if self.watched.insert(file) && !self.index.contains_key(&file) {
            self.stale = true;
        }
    }

    fn indexed(&self, t: &Tag) -> bool {
        t.fork == MAIN_FORKNUM
            && (t.rel < FIRST_NORMAL_OBJECT_ID || self.watched.contains(&(t.spc, t.db, t.rel)))
    }

    /// Once per catalog read: a full descriptor scan when the index is known stale or
    /// when due, at most one in [`FULL_SCAN_DUTY`] of the time (a 16 GB pool has two
    /// million descriptors: 128 MB to read).
    pub fn refresh(&mut self, min_interval: Duration) -> Result<(), MemError> {
        let due = match self.last_full {
            None => true,
            Some(t) => {
                let gap = (self.stats.last_scan * FULL_SCAN_DUTY).max(min_interval);
                self.stale || t.elapsed() >= gap
            }
        };
        if due {
            self.full_scan()?;
        }
        Ok(())
    }

    /// A full scan only if a file was asked for that the index has never covered.
    pub fn scan_if_stale(&mut self) -> Result<(), MemError> {
        if self.stale {
            self.full_scan()?;
        }
        Ok(())
    }

    fn full_scan(&mut self) -> Result<(), MemError> {
        let t0 = Instant::now();
        let mut index: HashMap<FileKey, BTreeMap<u32, usize>> = HashMap::new();
        let mut resident: HashMap<(FileKey, u32), BTreeSet<u32>> = HashMap::new();
        const CHUNK: usize = 4096;
        let mut buf = vec![0u8; CHUNK * DESC_STRIDE];
        let mut i = 0;
        while i < self.nbuffers {
            let n = CHUNK.min(self.nbuffers - i);
            let bytes = &mut buf[..n * DESC_STRIDE];
            self.mem
                .read(self.descs + (i * DESC_STRIDE) as u64, bytes)?;
            for (k, d) in bytes.chunks_exact(DESC_STRIDE).enumerate() {
                let Some(d) = decode_desc(d, &self.layout) else {
                    continue;
                };
                if d.state & BM_TAG_VALID != 0 && self.indexed(&d.tag) {
                    index
                        .entry((d.tag.spc, d.tag.db, d.tag.rel))
                        .or_default()
                        .insert(d.tag.block, i + k);
                }
                let key = ((d.tag.spc, d.tag.db, d.tag.rel), d.tag.fork);
                if d.holds_valid() && self.resident_watched.contains(&key) {
                    resident.entry(key).or_default().insert(d.tag.block);
                }
            }
            i += n;
        }
        self.index = index;
        self.resident = resident;
        self.stale = false;
        self.last_full = Some(Instant::now());
        self.stats.full_scans += 1;
        self.stats.last_scan = t0.elapsed();
        Ok(())
    }

    /// How many of `blocks` of `file`'s fork `fork` the pool holds, valid: blocks a scan
    /// finds there and never reads from the file. A fork not asked for before gets a full
    /// descriptor scan now; after that the answer is at most `max_age` old, or as old as
    /// the duty limit of full scans makes it (a block evicted since may still be counted,
    /// one loaded since may not).
    pub fn resident_count(
        &mut self,
        file: FileKey,
        fork: u32,
        blocks: std::ops::Range<u32>,
        max_age: Duration,
    ) -> Result<u32, MemError> {
        let key = (file, fork);
        let due = if self.resident_watched.insert(key) {
            true
        } else {
            match self.last_full {
                None => true,
                Some(t) => t.elapsed() >= (self.stats.last_scan * FULL_SCAN_DUTY).max(max_age),
            }
        };
        if due {
            self.full_scan()?;
        }
        if blocks.is_empty() {
            return Ok(0);
        }
        Ok(self
            .resident
            .get(&key)
            .map_or(0, |s| s.range(blocks).count() as u32))
    }

    /// One past the highest block of `file` found in the pool (blocks past the end of the
    /// file on disk live only here until written).
    pub fn blocks(&self, file: FileKey) -> Option<u32> {
        self.index
            .get(&file)
            .and_then(|m| m.keys().next_back())
            .map(|b| b.saturating_add(1))
    }

    /// The LSN of block `block` of `file` when the pool holds it (no copy protocol: a torn
    /// LSN only makes the caller read the catalog once more).
    pub fn page_lsn(&mut self, file: FileKey, block: u32) -> Result<Option<u64>, MemError> {
        let Some(&buf_id) = self.index.get(&file).and_then(|m| m.get(&block)) else {
            return Ok(None);
        };
        let d = self.desc(buf_id)?;
        if d.tag.rel != file.2 || d.tag.block != block || !d.holds_valid() {
            self.stale = true;
            return Ok(None);
        }
        let mut b = [0u8; 8];
        self.mem
            .read(self.blocks + (buf_id as u64) * self.blcksz as u64, &mut b)?;
        let w = |o: usize| u64::from(u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]));
        Ok(Some((w(0) << 32) | w(4)))
    }

    /// Copy block `block` of `file` into `out` when the pool holds a trustworthy copy.
    /// Ok(false): not in the pool, or never trustworthy in [`RETRIES`] tries (use disk).
    pub fn read_page(
        &mut self,
        file: FileKey,
        block: u32,
        out: &mut [u8],
    ) -> Result<bool, MemError> {
        if out.len() != self.blcksz {
            return Ok(false);
        }
        let Some(&buf_id) = self.index.get(&file).and_then(|m| m.get(&block)) else {
            return Ok(false);
        };
        let want = Tag {
            spc: file.0,
            db: file.1,
            rel: file.2,
            fork: MAIN_FORKNUM,
            block,
        };
        let addr = self.blocks + (buf_id as u64) * self.blcksz as u64;
        let mut again = vec![0u8; self.blcksz];
        let desc_addr = self.descs + (buf_id * DESC_STRIDE) as u64;
        for attempt in 0..RETRIES {
            if attempt > 0 {
                std::thread::sleep(Duration::from_micros(200));
            }
            let l = &self.layout;
            let verdict = copy_once(
                &self.mem, desc_addr, addr, l, buf_id, &want, out, &mut again,
            )?;
            match verdict {
                Ok(()) => {
                    self.stats.pages_copied += 1;
                    return Ok(true);
                }
                Err(Untrusted::TagChanged) if self.desc(buf_id)?.tag != want => {
                    // Evicted: the index is out of date.
                    self.stale = true;
                    if let Some(m) = self.index.get_mut(&file) {
                        m.remove(&block);
                    }
                    break;
                }
                Err(_) => {}
            }
        }
        self.stats.refused += 1;
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const L: DescLayout = DescLayout {
        lock_tranche: 36,
        lock_state: 40,
        lw_val_exclusive: 1 << 24,
    };

    fn desc(tag: Tag, buf_id: i32, state: u32, lock: u32) -> Desc {
        Desc {
            tag,
            buf_id,
            state,
            lock_state: lock,
            lock_tranche: 80,
        }
    }

    fn tag(rel: u32, block: u32) -> Tag {
        Tag {
            spc: 1663,
            db: 5,
            rel,
            fork: 0,
            block,
        }
    }

    const OK: u32 = BM_TAG_VALID | BM_VALID | 1;

    #[test]
    fn decode_matches_layout() {
        let mut b = [0u8; 64];
        for (i, v) in [1663u32, 5, 1259, 0, 7, 42, OK].iter().enumerate() {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
        }
        b[36..38].copy_from_slice(&80u16.to_ne_bytes());
        b[40..44].copy_from_slice(&(1u32 << 24).to_ne_bytes());
        let d = decode_desc(&b, &L).unwrap();
        assert_eq!(d.tag, tag(1259, 7));
        assert_eq!((d.buf_id, d.state, d.lock_tranche), (42, OK, 80));
        assert!(d.exclusive(&L));
        assert!(decode_desc(&b[..40], &L).is_none());
        let l18 = desc_layout(18).unwrap();
        assert_eq!((l18.lock_state, l18.lw_val_exclusive), (52, 1 << 18));
        assert!(desc_layout(11).is_none());
    }

    #[test]
    fn refuses_what_moved() {
        let t = tag(1259, 3);
        let p = vec![1u8; 64];
        let ok = desc(t, 9, OK, 0);
        let three = |d: Desc| [ok, d, ok];
        assert_eq!(trustworthy(&t, 9, &[ok; 3], &L, &p, &p), Ok(()));
        // Shared locks (readers) and pins are harmless; an exclusive lock is not.
        let shared = desc(t, 9, OK + 2, 3);
        assert_eq!(trustworthy(&t, 9, &three(shared), &L, &p, &p), Ok(()));
        let excl = desc(t, 9, OK, 1 << 24);
        assert_eq!(
            trustworthy(&t, 9, &three(excl), &L, &p, &p),
            Err(Untrusted::Locked)
        );
        let other = desc(tag(1259, 4), 9, OK, 0);
        assert_eq!(
            trustworthy(&t, 9, &three(other), &L, &p, &p),
            Err(Untrusted::TagChanged)
        );
        let io = desc(t, 9, OK | BM_IO_IN_PROGRESS, 0);
        assert_eq!(
            trustworthy(&t, 9, &three(io), &L, &p, &p),
            Err(Untrusted::NotValid)
        );
        let mut q = p.clone();
        q[63] = 2;
        assert_eq!(
            trustworthy(&t, 9, &[ok; 3], &L, &p, &q),
            Err(Untrusted::Torn)
        );
        assert_eq!(
            trustworthy(&t, 8, &[ok; 3], &L, &p, &p),
            Err(Untrusted::Garbage)
        );
    }

    /// Memory as a timeline of consistent moments; every read sees the moment the clock
    /// is at, and the clock moves on by a scripted step after each read.
    struct Timeline {
        moments: Vec<([u8; DESC_STRIDE], Vec<u8>)>,
        steps: Vec<usize>,
        reads: std::cell::Cell<usize>,
        at: std::cell::Cell<usize>,
    }

    const DESC_AT: u64 = 0x1000;
    const PAGE_AT: u64 = 0x10000;

    impl ReadMem for Timeline {
        fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
            let (d, p) = &self.moments[self.at.get().min(self.moments.len() - 1)];
            let src: &[u8] = if addr == DESC_AT { d } else { p };
            buf.copy_from_slice(&src[..buf.len()]);
            let n = self.reads.get();
            self.reads.set(n + 1);
            let step = self.steps.get(n).copied().unwrap_or(1);
            self.at.set(self.at.get() + step);
            Ok(())
        }
    }

    fn desc_bytes(t: Tag, buf_id: i32, state: u32, lock: u32) -> [u8; DESC_STRIDE] {
        let mut b = [0u8; DESC_STRIDE];
        for (i, v) in [t.spc, t.db, t.rel, t.fork, t.block, buf_id as u32, state]
            .iter()
            .enumerate()
        {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
        }
        b[36..38].copy_from_slice(&80u16.to_ne_bytes());
        b[40..44].copy_from_slice(&lock.to_ne_bytes());
        b
    }

    /// A write of `new` over `old` under the exclusive lock, cut at `cut`.
    fn write_episode(
        t: Tag,
        old: &[u8],
        new: &[u8],
        cut: usize,
    ) -> Vec<([u8; DESC_STRIDE], Vec<u8>)> {
        let locked = desc_bytes(t, 9, OK, 1 << 24);
        let mut torn = old.to_vec();
        torn[..cut].copy_from_slice(&new[..cut]);
        vec![
            (locked, old.to_vec()),
            (locked, torn),
            (locked, new.to_vec()),
            (desc_bytes(t, 9, OK, 0), new.to_vec()),
        ]
    }

    proptest! {
        /// Garbage descriptors: decoding never panics, and a copy is trusted only when every
        /// descriptor names exactly the wanted block in the wanted buffer, valid, unlocked.
        #[test]
        fn garbage_never_trusted_wrongly(
            a in proptest::collection::vec(any::<u8>(), 0..80),
            b in proptest::collection::vec(any::<u8>(), 0..80),
            rel in any::<u32>(), block in any::<u32>(), buf in 0usize..1000,
        ) {
            let want = tag(rel, block);
            let page = [0u8; 16];
            if let (Some(x), Some(y)) = (decode_desc(&a, &L), decode_desc(&b, &L)) {
                if trustworthy(&want, buf, &[x, y, x], &L, &page, &page).is_ok() {
                    for d in [x, y] {
                        prop_assert_eq!(d.tag, want);
                        prop_assert_eq!(d.buf_id as usize, buf);
                        prop_assert!(d.holds_valid() && !d.exclusive(&L));
                    }
                }
            }
        }

        /// Pages written while being copied (torn: half old, half new), evicted for
        /// another block, or read in again: whatever the timing, a copy accepted is one of
        /// the whole pages the buffer held, of the wanted block, never a torn one.
        #[test]
        fn torn_or_moving_pages_never_accepted(
            writes in proptest::collection::vec((any::<u8>(), 1usize..255), 0..4),
            evict_at in proptest::option::of(0usize..4),
            steps in proptest::collection::vec(0usize..3, 0..8),
        ) {
            let t = tag(2615, 0);
            let mut whole = vec![vec![0xA0u8; 256]];
            let mut moments = vec![(desc_bytes(t, 9, OK, 0), whole[0].clone())];
            for (i, (fill, cut)) in writes.iter().enumerate() {
                if evict_at == Some(i) {
                    // Evicted, another block read in, then ours again (same tag, new bytes).
                    let other = tag(2615, 1);
                    moments.push((desc_bytes(other, 9, OK | BM_IO_IN_PROGRESS, 0), vec![0xEE; 256]));
                    moments.push((desc_bytes(other, 9, OK, 0), vec![0xEE; 256]));
                    moments.push((desc_bytes(t, 9, BM_TAG_VALID | BM_IO_IN_PROGRESS, 0), vec![0xDD; 256]));
                }
                let old = whole.last().unwrap().clone();
                let new = vec![*fill; 256];
                moments.extend(write_episode(t, &old, &new, *cut));
                whole.push(new);
            }
            let mem = Timeline { moments, steps, reads: 0.into(), at: 0.into() };
            let (mut out, mut again) = (vec![0u8; 256], vec![0u8; 256]);
            let r = copy_once(&mem, DESC_AT, PAGE_AT, &L, 9, &t, &mut out, &mut again).unwrap();
            if r.is_ok() {
                prop_assert!(whole.contains(&out), "accepted a page the buffer never held whole: {:?}", &out[..8]);
            }
        }
    }
}
