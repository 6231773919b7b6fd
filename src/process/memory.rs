//! Read-only access to another process's memory: `/proc/PID/mem` reads, its mappings
//! (`/proc/PID/maps`, through procfs), exported-symbol lookup in the ELF `.dynsym` of `/proc/PID/exe`, and the search
//! of PostgreSQL's main shared-memory segment for a ShmemIndex entry. Nothing here ever
//! writes: the file is opened `O_RDONLY`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub type Pid = i32;

#[derive(Debug, thiserror::Error)]
pub enum MemError {
    #[error("pid {0} is gone")]
    Gone(Pid),
    #[error("cannot read the memory of pid {pid}: {source}")]
    Open { pid: Pid, source: io::Error },
    #[error("pid {pid}: cannot read {len} bytes at {addr:#x}: {why}")]
    Read {
        pid: Pid,
        addr: u64,
        len: usize,
        why: String,
    },
    #[error("pid {pid}: {what}")]
    Layout { pid: Pid, what: String },
}

fn gone_or(pid: Pid, e: io::Error) -> MemError {
    if e.raw_os_error() == Some(libc::ESRCH) || !proc_alive(pid) {
        MemError::Gone(pid)
    } else {
        MemError::Open { pid, source: e }
    }
}

/// Alive and not on its way out: a process in `exit(2)` has released its memory (a read
/// comes up short) before it becomes a zombie, and a zombie has none.
fn proc_alive(pid: Pid) -> bool {
    use crate::process::proc::{stat, PF_EXITING};
    stat(pid).is_some_and(|s| !matches!(s.state, 'Z' | 'X') && s.flags & PF_EXITING == 0)
}

/// One process's address space, readable only.
pub struct ProcMem {
    pub pid: Pid,
    file: File,
}

impl ProcMem {
    pub fn open(pid: Pid) -> Result<ProcMem, MemError> {
        let file = File::open(format!("/proc/{pid}/mem")).map_err(|e| gone_or(pid, e))?;
        Ok(ProcMem { pid, file })
    }

    /// Fill `buf` from `addr`; a short read (unmapped page, exited process) is an error.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.file.read_exact_at(buf, addr).map_err(|e| {
            if !proc_alive(self.pid) {
                MemError::Gone(self.pid)
            } else {
                MemError::Read {
                    pid: self.pid,
                    addr,
                    len: buf.len(),
                    why: e.to_string(),
                }
            }
        })
    }

    pub fn read_vec(&self, addr: u64, len: usize) -> Result<Vec<u8>, MemError> {
        let mut v = vec![0u8; len];
        self.read(addr, &mut v)?;
        Ok(v)
    }

    pub fn read_u32(&self, addr: u64) -> Result<u32, MemError> {
        let mut b = [0u8; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_ne_bytes(b))
    }

    pub fn read_u64(&self, addr: u64) -> Result<u64, MemError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_ne_bytes(b))
    }

    /// A NUL-terminated string of at most `max` bytes (lossy UTF-8: the activity buffer
    /// may end in a truncated multibyte character).
    pub fn read_cstr(&self, addr: u64, max: usize) -> Result<String, MemError> {
        let buf = self.read_vec(addr, max)?;
        Ok(cstr(&buf))
    }
}

/// The bytes up to the first NUL (or all of them), lossily decoded.
pub fn cstr(buf: &[u8]) -> String {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub start: u64,
    pub end: u64,
    pub perms: String,
    pub offset: u64,
    pub inode: u64,
    pub path: String,
}

impl Mapping {
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn contains(&self, addr: u64, len: u64) -> bool {
        addr >= self.start && addr.checked_add(len).is_some_and(|e| e <= self.end)
    }
    pub fn shared(&self) -> bool {
        self.perms.as_bytes().get(3) == Some(&b's')
    }
}

impl From<procfs::process::MemoryMap> for Mapping {
    fn from(m: procfs::process::MemoryMap) -> Mapping {
        use procfs::process::{MMPermissions as P, MMapPath};
        let flag = |p: P, c: char| if m.perms.contains(p) { c } else { '-' };
        let perms = [
            flag(P::READ, 'r'),
            flag(P::WRITE, 'w'),
            flag(P::EXECUTE, 'x'),
            if m.perms.contains(P::SHARED) {
                's'
            } else {
                'p'
            },
        ]
        .iter()
        .collect();
        // The path as the maps line wrote it (a SysV segment keeps only its key).
        let path = match m.pathname {
            MMapPath::Path(p) => p.to_string_lossy().into_owned(),
            MMapPath::Heap => "[heap]".into(),
            MMapPath::Stack => "[stack]".into(),
            MMapPath::TStack(tid) => format!("[stack:{tid}]"),
            MMapPath::Vdso => "[vdso]".into(),
            MMapPath::Vvar => "[vvar]".into(),
            MMapPath::Vsyscall => "[vsyscall]".into(),
            MMapPath::Rollup => "[rollup]".into(),
            MMapPath::Anonymous => String::new(),
            MMapPath::Vsys(key) => format!("/SYSV{key:08x}"),
            MMapPath::Other(o) => format!("[{o}]"),
        };
        Mapping {
            start: m.address.0,
            end: m.address.1,
            perms,
            offset: m.offset,
            inode: m.inode,
            path,
        }
    }
}

/// The mappings of `/proc/PID/maps`, as procfs parses them.
pub fn maps(pid: Pid) -> Result<Vec<Mapping>, MemError> {
    let p = procfs::process::Process::new(pid).map_err(|e| gone_or(pid, proc_error(e)))?;
    let maps = p.maps().map_err(|e| gone_or(pid, proc_error(e)))?;
    Ok(maps.0.into_iter().map(Mapping::from).collect())
}

fn proc_error(e: procfs::ProcError) -> io::Error {
    match e {
        procfs::ProcError::Io(e, _) => e,
        procfs::ProcError::NotFound(_) => io::Error::from_raw_os_error(libc::ESRCH),
        procfs::ProcError::PermissionDenied(_) => io::Error::from_raw_os_error(libc::EACCES),
        other => io::Error::other(other.to_string()),
    }
}

/// Candidates for PostgreSQL's main shared memory segment, largest first: shared
/// anonymous (`/dev/zero (deleted)`), huge pages, or a SysV segment. Dynamic shared
/// memory (`/dev/shm/PostgreSQL.*`) is never the main segment.
pub fn main_segments(maps: &[Mapping]) -> Vec<Mapping> {
    let mut v: Vec<Mapping> = maps
        .iter()
        .filter(|m| {
            m.shared()
                && m.perms.starts_with('r')
                && (m.path.starts_with("/dev/zero")
                    || m.path.contains("anon_hugepage")
                    || m.path.starts_with("/SYSV")
                    || m.path.is_empty())
        })
        .cloned()
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.len()));
    v
}

/// `ShmemIndexEnt` is `{char key[SHMEM_INDEX_KEYSIZE = 48]; void *location; Size size;
/// Size allocated_size;}`.
pub const SHMEM_INDEX_KEYSIZE: usize = 48;
/// How much of the segment's start is searched: the index is allocated right after the
/// segment header, and its entries come early.
const INDEX_SEARCH_BYTES: u64 = 16 << 20;
const CHUNK: usize = 1 << 20;

/// Find `key` as a ShmemIndex entry in `chunk` (which starts at `chunk_addr`) and return
/// `(location, size)` for the first occurrence whose location lies inside `seg` and whose
/// size fits: a stray copy of the name elsewhere fails those checks.
pub fn find_index_entry(
    chunk: &[u8],
    key: &str,
    seg_start: u64,
    seg_end: u64,
) -> Option<(u64, u64)> {
    let mut pat = key.as_bytes().to_vec();
    pat.push(0);
    let need = SHMEM_INDEX_KEYSIZE + 16;
    let mut from = 0;
    while let Some(i) = find(&chunk[from..], &pat) {
        let at = from + i;
        from = at + 1;
        // The key starts the entry; a hit preceded by a printable byte is the tail of some
        // longer string.
        if at > 0 && chunk[at - 1] != 0 {
            continue;
        }
        let Some(ent) = chunk.get(at..at + need) else {
            continue;
        };
        let loc = u64::from_ne_bytes(ent[48..56].try_into().ok()?);
        let size = u64::from_ne_bytes(ent[56..64].try_into().ok()?);
        if size > 0 && loc >= seg_start && loc.checked_add(size).is_some_and(|e| e <= seg_end) {
            return Some((loc, size));
        }
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let mut i = 0;
    while i + needle.len() <= hay.len() {
        match hay[i..=hay.len() - needle.len()]
            .iter()
            .position(|&b| b == first)
        {
            None => return None,
            Some(p) => {
                i += p;
                if &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

/// Locate a named shared-memory structure (`"Backend Status Array"`, ...) through the
/// ShmemIndex, in the main segment as `mem`'s process maps it.
pub fn shmem_index_lookup(
    mem: &ProcMem,
    maps: &[Mapping],
    key: &str,
) -> Result<(u64, u64), MemError> {
    let segs = main_segments(maps);
    if segs.is_empty() {
        return Err(MemError::Layout {
            pid: mem.pid,
            what: "no shared memory segment mapped: not a PostgreSQL server process?".into(),
        });
    }
    let overlap = SHMEM_INDEX_KEYSIZE as u64 + 16;
    for seg in &segs {
        let limit = seg.end.min(seg.start.saturating_add(INDEX_SEARCH_BYTES));
        let mut addr = seg.start;
        while addr < limit {
            let len = ((limit - addr) as usize).min(CHUNK + overlap as usize);
            let Ok(buf) = mem.read_vec(addr, len) else {
                break;
            };
            if let Some(hit) = find_index_entry(&buf, key, seg.start, seg.end) {
                return Ok(hit);
            }
            addr += CHUNK as u64;
        }
    }
    if !proc_alive(mem.pid) {
        return Err(MemError::Gone(mem.pid));
    }
    Err(MemError::Layout {
        pid: mem.pid,
        what: format!("no {key:?} in the shared memory index: not a PostgreSQL server process?"),
    })
}

/// Exported symbols of one executable, and where it is loaded in one process.
pub struct Symbols {
    /// name -> (link address, size)
    syms: std::collections::HashMap<String, (u64, u64)>,
    /// (device, inode) of the executable, to reuse the table for its other processes.
    pub ident: (u64, u64),
    /// Position-independent (ET_DYN): loaded at a random base.
    pie: bool,
    /// Lowest PT_LOAD virtual address, page-aligned.
    min_vaddr: u64,
    /// Link addresses of `.rodata` and `.data.rel.ro`: (start, size).
    pub rodata: Option<(u64, u64)>,
    pub data_rel_ro: Option<(u64, u64)>,
    /// Link addresses of NUL-delimited strings looked for at load ([`ANCHOR_STRINGS`]).
    pub anchors: std::collections::HashMap<&'static str, Vec<u64>>,
}

/// Strings whose addresses in `.rodata` locate static name tables: the first builtin
/// LWLock tranche of 13–16 and the first individual LWLock of 17+.
pub const ANCHOR_STRINGS: &[&str] = &["XactBuffer", "ShmemIndex"];

/// Offsets in `hay` of `needle` as a whole NUL-delimited string.
pub fn find_cstrings(hay: &[u8], needle: &str) -> Vec<usize> {
    let mut pat = vec![0u8];
    pat.extend_from_slice(needle.as_bytes());
    pat.push(0);
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = find(&hay[from..], &pat) {
        out.push(from + i + 1);
        from += i + 1;
        if out.len() >= 16 {
            break;
        }
    }
    out
}

impl Symbols {
    /// Parse `.dynsym` of the executable behind `/proc/PID/exe`. Parsed once per binary
    /// (its device, inode, size and change time): the binary check, the catalog overlay,
    /// the status reader and the USDT cost each want the same table of a server's binary,
    /// and a distribution's `postgres` takes tens of ms to parse.
    pub fn load(pid: Pid) -> Result<std::sync::Arc<Symbols>, MemError> {
        use std::os::unix::fs::MetadataExt;
        use std::sync::{Arc, Mutex};
        type Key = (u64, u64, u64, i64, i64);
        /// The last few binaries parsed (a host runs a few PostgreSQL builds at most).
        static CACHE: Mutex<Vec<(Key, Arc<Symbols>)>> = Mutex::new(Vec::new());
        const KEEP: usize = 4;
        let path = format!("/proc/{pid}/exe");
        let exe = std::fs::File::open(&path).map_err(|e| gone_or(pid, e))?;
        let meta = exe.metadata().map_err(|e| gone_or(pid, e))?;
        let key = (
            meta.dev(),
            meta.ino(),
            meta.len(),
            meta.ctime(),
            meta.ctime_nsec(),
        );
        // A poisoned lock only means a panic elsewhere mid-insert: the entries are whole.
        let cached = |c: &Vec<(Key, Arc<Symbols>)>| {
            c.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, s)| Arc::clone(s))
        };
        if let Some(s) = cached(&CACHE.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(s);
        }
        let s = Arc::new(Symbols::parse(pid, &path, exe, &meta)?);
        let mut c = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        if c.len() >= KEEP {
            c.remove(0);
        }
        c.push((key, Arc::clone(&s)));
        Ok(s)
    }

    fn parse(
        pid: Pid,
        path: &str,
        exe: std::fs::File,
        meta: &std::fs::Metadata,
    ) -> Result<Symbols, MemError> {
        use object::{Object, ObjectSymbol};
        use std::os::unix::fs::MetadataExt;
        // The file is hostile: a huge or sparse one must not be read whole. Refuse absurd
        // sizes, and read lazily only the headers and the sections used below.
        crate::process::stapsdt::check_exe_size(std::path::Path::new(path), meta.len()).map_err(
            |e| MemError::Layout {
                pid,
                what: e.to_string(),
            },
        )?;
        let data = object::ReadCache::new(exe);
        let file = object::File::parse(&data).map_err(|e| MemError::Layout {
            pid,
            what: format!("{path} is not a readable ELF file: {e}"),
        })?;
        let pie = file.kind() == object::ObjectKind::Dynamic;
        let min_vaddr = file
            .segments()
            .map(|s| object::ObjectSegment::address(&s))
            .min()
            .unwrap_or(0)
            & !0xfff;
        let mut syms = std::collections::HashMap::new();
        for s in file.dynamic_symbols() {
            if let Ok(name) = s.name() {
                if s.address() != 0 {
                    syms.insert(name.to_string(), (s.address(), s.size()));
                }
            }
        }
        use object::ObjectSection;
        let section = |name: &str| {
            file.section_by_name(name)
                .map(|s| (s.address(), s.size(), s.data().unwrap_or(&[])))
        };
        let rodata = section(".rodata");
        let mut anchors = std::collections::HashMap::new();
        if let Some((addr, _, bytes)) = rodata {
            for a in ANCHOR_STRINGS {
                let v: Vec<u64> = find_cstrings(bytes, a)
                    .into_iter()
                    .map(|o| addr.wrapping_add(o as u64))
                    .collect();
                anchors.insert(*a, v);
            }
        }
        Ok(Symbols {
            syms,
            ident: (meta.dev(), meta.ino()),
            pie,
            min_vaddr,
            rodata: rodata.map(|(a, n, _)| (a, n)),
            data_rel_ro: section(".data.rel.ro").map(|(a, n, _)| (a, n)),
            anchors,
        })
    }

    pub fn get(&self, name: &str) -> Option<u64> {
        self.syms.get(name).map(|s| s.0)
    }

    /// Size in bytes of a data symbol (an array's length times its element size).
    pub fn size(&self, name: &str) -> Option<u64> {
        self.syms.get(name).map(|s| s.1)
    }
}

/// Load bias of the executable in `pid`: where its lowest file mapping starts minus its
/// lowest link address (0 for a non-PIE executable, which is mapped where it was linked).
pub fn load_bias(pid: Pid, maps: &[Mapping], syms: &Symbols) -> Result<u64, MemError> {
    if !syms.pie {
        return Ok(0);
    }
    let first = maps
        .iter()
        .filter(|m| m.inode == syms.ident.1 && m.offset == 0)
        .min_by_key(|m| m.start)
        .ok_or_else(|| MemError::Layout {
            pid,
            what: "its executable is not mapped".into(),
        })?;
    Ok(first.start.wrapping_sub(syms.min_vaddr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_maps(t: &str) -> Vec<Mapping> {
        use procfs::FromRead;
        procfs::process::MemoryMaps::from_read(t.as_bytes())
            .unwrap()
            .0
            .into_iter()
            .map(Mapping::from)
            .collect()
    }

    #[test]
    fn maps_lines() {
        let t = "55d0c0a00000-55d0c0b00000 r--p 00000000 08:01 1234 /usr/lib/postgresql/15/bin/postgres\n\
                 7f0000000000-7f0008000000 rw-s 00000000 00:01 5678 /dev/zero (deleted)\n\
                 7f1000000000-7f1008000000 rw-s 00000000 00:01 32769 /SYSV0052e2c1 (deleted)\n\
                 7ffd0000-7ffe0000 rw-p 00000000 00:00 0 \n\
                 7ffe0000-7ffe1000 r-xp 00000000 00:00 0                          [vdso]\n";
        let m = parse_maps(t);
        assert_eq!(m.len(), 5);
        assert_eq!(m[0].perms, "r--p");
        assert_eq!((m[0].inode, m[0].offset), (1234, 0));
        assert_eq!(m[0].path, "/usr/lib/postgresql/15/bin/postgres");
        assert_eq!(m[2].path, "/SYSV0052e2c1");
        assert_eq!(m[3].path, "");
        assert_eq!(m[4].path, "[vdso]");
        assert_eq!(m[1].path, "/dev/zero (deleted)");
        assert!(m[1].shared());
        let segs = main_segments(&m);
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0].start, 0x7f0000000000);
    }

    #[test]
    fn index_entry_found_and_validated() {
        let mut chunk = vec![0u8; 256];
        let key = b"Backend Status Array";
        chunk[64..64 + key.len()].copy_from_slice(key);
        chunk[64 + 48..64 + 56].copy_from_slice(&0x1000u64.to_ne_bytes());
        chunk[64 + 56..64 + 64].copy_from_slice(&0x200u64.to_ne_bytes());
        assert_eq!(
            find_index_entry(&chunk, "Backend Status Array", 0x1000, 0x2000),
            Some((0x1000, 0x200))
        );
        // Location outside the segment: rejected.
        assert_eq!(
            find_index_entry(&chunk, "Backend Status Array", 0x2000, 0x3000),
            None
        );
        // Truncated entry at the end of the chunk: no panic.
        assert_eq!(
            find_index_entry(&chunk[..80], "Backend Status Array", 0x1000, 0x2000),
            None
        );
    }

    proptest::proptest! {
        #[test]
        fn index_search_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = find_index_entry(&bytes, "Backend Status Array", 0, u64::MAX);
        }
    }
}
