//! The server's main shared memory segment mapped read-only into pg_trace, through
//! `/proc/PID/map_files` (root only): a sampler reading a few fields of a hundred
//! backends a hundred times a second then costs loads, not a `process_vm_readv` that pins
//! and copies some thirty pages per round (most of the sampler's CPU before).
//!
//! The segment is the same object the server maps (shared anonymous memory or huge pages;
//! never SysV, see [`ShmView::open`]), so what is read is what `process_vm_readv` would read. The mapping would
//! outlive a server that exits or re-creates its segment after a crash: [`ShmView::valid`]
//! compares the object still mapped at that address with ours, and the owner drops the
//! view when it is not.

use crate::process::memory::Pid;
use std::os::unix::fs::MetadataExt;

pub struct ShmView {
    base: *const u8,
    /// The server's address of `base`.
    start: u64,
    len: usize,
    pid: Pid,
    /// `/proc/PID/map_files/START-END`: stat again to tell the segment is still there.
    path: String,
    ino: u64,
}

// SAFETY: the mapping is read-only, owned by this value and unmapped only on drop; the
// pointer is never handed out, so moving the value to another thread is sound.
unsafe impl Send for ShmView {}

impl ShmView {
    /// Map `pid`'s segment `[start, end)` (as its maps list it). None when the kernel
    /// refuses (not root, no map_files, a mapping gone): the caller reads through
    /// `process_vm_readv` as before.
    pub fn open(pid: Pid, start: u64, end: u64) -> Option<ShmView> {
        // The tests' way to exercise the fallback on a host where the mapping works.
        if std::env::var_os("PG_TRACE_TEST_NO_SHM_VIEW").is_some() {
            return None;
        }
        let len = usize::try_from(end.checked_sub(start)?).ok()?;
        if len == 0 {
            return None;
        }
        let maps = crate::process::memory::maps(pid).ok()?;
        // Only a kind of mapping the server cannot shrink under us (shared anonymous
        // memory, huge pages): a file's could be truncated, and a load past its end
        // would be a SIGBUS here.
        let segs = crate::process::memory::main_segments(&maps);
        let m = segs.iter().find(|m| m.start == start && m.end == end)?;
        // Never a SysV segment: mapping one counts as an attach (shm_nattch), and a
        // postmaster restarting while pg_trace holds it would find its old segment "still
        // in use" and refuse to start. Such a server is read through process_vm_readv.
        if m.path.starts_with("/SYSV") {
            return None;
        }
        let offset = libc::off_t::try_from(m.offset).ok()?;
        let path = format!("/proc/{pid}/map_files/{start:x}-{end:x}");
        let file = std::fs::File::open(&path).ok()?;
        let ino = file.metadata().ok()?.ino();
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh read-only shared mapping of a file we hold open; the kernel picks
        // the address. The descriptor may be closed once mapped.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        Some(ShmView {
            base: p as *const u8,
            start,
            len,
            pid,
            path,
            ino,
        })
    }

    /// Whether the server still maps this very segment at the same address.
    pub fn valid(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| m.ino() == self.ino)
            && std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    /// Copy the server's `[addr, addr + dst.len())` into `dst`; false when outside the
    /// segment. Aligned 4- and 8-byte fields are read in one load, as the server stores
    /// them (no torn counters); anything else byte by byte.
    pub fn read(&self, addr: u64, dst: &mut [u8]) -> bool {
        let Some(off) = addr.checked_sub(self.start).map(|o| o as usize) else {
            return false;
        };
        if !off.checked_add(dst.len()).is_some_and(|e| e <= self.len) {
            return false;
        }
        // SAFETY: `off + dst.len() <= len`, inside the mapping held until drop. Volatile:
        // the server writes this memory concurrently, so the compiler must neither merge
        // nor elide the loads.
        unsafe {
            let src = self.base.add(off);
            match dst.len() {
                4 if off % 4 == 0 => {
                    let v = std::ptr::read_volatile(src as *const u32);
                    dst.copy_from_slice(&v.to_ne_bytes());
                }
                8 if off % 8 == 0 => {
                    let v = std::ptr::read_volatile(src as *const u64);
                    dst.copy_from_slice(&v.to_ne_bytes());
                }
                _ => {
                    for (i, d) in dst.iter_mut().enumerate() {
                        *d = std::ptr::read_volatile(src.add(i));
                    }
                }
            }
        }
        true
    }
}

impl Drop for ShmView {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`, of this length, unmapped once.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_another_mapping_of_the_segment_writes() {
        let len = 1 << 16;
        // SAFETY: a fresh shared anonymous mapping of our own, unmapped below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let start = p as u64;
        let pid = std::process::id() as Pid;
        let Some(v) = ShmView::open(pid, start, start + len as u64) else {
            // Not root (map_files needs CAP_SYS_ADMIN): nothing to test here.
            // SAFETY: geteuid has no preconditions.
            assert_ne!(unsafe { libc::geteuid() }, 0, "root must be able to map");
            // SAFETY: our own mapping, unmapped once.
            unsafe { libc::munmap(p, len) };
            return;
        };
        // SAFETY: within our own writable mapping.
        unsafe { std::ptr::write_volatile((p as *mut u32).add(2), 0xdead_beef) };
        let mut b = [0u8; 4];
        assert!(v.read(start + 8, &mut b));
        assert_eq!(u32::from_ne_bytes(b), 0xdead_beef);
        let mut t = [0u8; 3];
        assert!(v.read(start + 8, &mut t));
        assert_eq!(t, [0xef, 0xbe, 0xad]);
        // Outside the segment: refused, not read.
        assert!(!v.read(start + len as u64 - 2, &mut b));
        assert!(!v.read(start - 4, &mut b));
        assert!(v.valid());
        drop(v);
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(p, len) };
    }
}
