//! Reading the tracee's memory: NUL-terminated strings and iovec arrays, always bounded,
//! always with `process_vm_readv` (never `PTRACE_PEEKDATA`, never a write).

use crate::trace::Pid;

use super::sys;

/// x86_64 page size: remote ranges are split at page boundaries so that an unmapped page
/// only cuts a read short instead of failing it.
pub const PAGE_SIZE: u64 = 4096;
/// The longest string read (PATH_MAX, including the NUL).
pub const MAX_STRING: usize = 4096;
/// The most iovec entries read (IOV_MAX; more makes the syscall fail with EINVAL anyway).
pub const MAX_IOVECS: usize = 1024;
/// Size of one `struct iovec` on x86_64.
const IOVEC_SIZE: usize = 16;
/// Largest single read: the iovec array.
const MAX_READ: usize = MAX_IOVECS * IOVEC_SIZE;
/// Pages one read may span (MAX_READ bytes not page-aligned).
const MAX_PAGES: usize = MAX_READ / PAGE_SIZE as usize + 1;

/// Something that can read another address space. The tracer reads the tracee; unit tests
/// read a byte vector.
pub trait Memory {
    /// Reads into `buf` from `addr` on, stopping at the first unreadable byte. Returns how
    /// many bytes were read (0: nothing readable at `addr`).
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> usize;
}

/// The memory of a live process, read with `process_vm_readv`.
pub struct ProcessMemory {
    pub pid: Pid,
}

impl Memory for ProcessMemory {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> usize {
        let len = buf.len().min(MAX_READ);
        if len == 0 || addr == 0 {
            return 0;
        }
        let mut remote = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; MAX_PAGES + 1];
        let mut n = 0;
        let mut at = addr;
        let end = addr.saturating_add(len as u64);
        while at < end && n < remote.len() {
            let page_end = (at / PAGE_SIZE + 1).saturating_mul(PAGE_SIZE);
            let chunk_end = page_end.min(end);
            remote[n] = libc::iovec {
                iov_base: at as *mut libc::c_void,
                iov_len: (chunk_end - at) as usize,
            };
            n += 1;
            at = chunk_end;
        }
        let total = (at - addr) as usize;
        sys::process_vm_readv(self.pid, &mut buf[..total], &remote[..n]).unwrap_or(0)
    }
}

/// What reading a C string gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CString {
    Complete(String),
    /// No NUL within `MAX_STRING` bytes (or before an unmapped page): what was read.
    Truncated(String),
    /// Not a single byte readable at the address.
    Unreadable,
}

/// Reads a NUL-terminated string at `addr`, at most `MAX_STRING` bytes. `scratch` is reused
/// between calls so the stop path does not allocate for the buffer.
pub fn read_cstring(mem: &mut dyn Memory, addr: u64, scratch: &mut Vec<u8>) -> CString {
    scratch.clear();
    scratch.resize(MAX_STRING, 0);
    // Most paths are short: read up to the end of the first page, then the rest only when
    // no NUL was found there.
    let first = ((addr / PAGE_SIZE + 1) * PAGE_SIZE - addr).min(MAX_STRING as u64) as usize;
    let got = mem.read(addr, &mut scratch[..first]);
    if got == 0 {
        return CString::Unreadable;
    }
    if let Some(nul) = scratch[..got].iter().position(|&b| b == 0) {
        return CString::Complete(String::from_utf8_lossy(&scratch[..nul]).into_owned());
    }
    let mut have = got;
    if got == first && first < MAX_STRING {
        have += mem.read(addr + first as u64, &mut scratch[first..]);
    }
    match scratch[..have].iter().position(|&b| b == 0) {
        Some(nul) => CString::Complete(String::from_utf8_lossy(&scratch[..nul]).into_owned()),
        None => CString::Truncated(String::from_utf8_lossy(&scratch[..have]).into_owned()),
    }
}

/// The sum of the `iov_len`s of the `count` iovecs at `addr` (at most `MAX_IOVECS`), or
/// None if the array cannot be read whole.
pub fn iovec_total(
    mem: &mut dyn Memory,
    addr: u64,
    count: u64,
    scratch: &mut Vec<u8>,
) -> Option<u64> {
    let count = count.min(MAX_IOVECS as u64) as usize;
    if count == 0 {
        return Some(0);
    }
    let bytes = count * IOVEC_SIZE;
    scratch.clear();
    scratch.resize(bytes, 0);
    if mem.read(addr, &mut scratch[..bytes]) != bytes {
        return None;
    }
    Some(
        scratch[..bytes]
            .chunks_exact(IOVEC_SIZE)
            .map(|iov| u64::from_ne_bytes(iov[8..16].try_into().expect("8 bytes")))
            .fold(0u64, u64::saturating_add),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake address space: `bytes` mapped at `base`, nothing else.
    pub struct FakeMemory {
        pub base: u64,
        pub bytes: Vec<u8>,
    }

    impl Memory for FakeMemory {
        fn read(&mut self, addr: u64, buf: &mut [u8]) -> usize {
            if addr < self.base || addr >= self.base + self.bytes.len() as u64 {
                return 0;
            }
            let off = (addr - self.base) as usize;
            let n = buf.len().min(self.bytes.len() - off);
            buf[..n].copy_from_slice(&self.bytes[off..off + n]);
            n
        }
    }

    #[test]
    fn strings_are_bounded_and_stop_at_nul() {
        let mut scratch = Vec::new();
        let mut mem = FakeMemory {
            base: 0x1000,
            bytes: b"base/5/16384\0garbage".to_vec(),
        };
        assert_eq!(
            read_cstring(&mut mem, 0x1000, &mut scratch),
            CString::Complete("base/5/16384".into())
        );
        assert_eq!(
            read_cstring(&mut mem, 0x10, &mut scratch),
            CString::Unreadable
        );
        assert_eq!(read_cstring(&mut mem, 0, &mut scratch), CString::Unreadable);
        // Runs into the end of the mapping without a NUL.
        assert_eq!(
            read_cstring(&mut mem, 0x1000 + 13, &mut scratch),
            CString::Truncated("garbage".into())
        );
        // Crosses a page boundary.
        let mut bytes = vec![b'a'; 5000];
        bytes[1000] = 0;
        let mut mem = FakeMemory {
            base: 0x1f00,
            bytes,
        };
        assert_eq!(
            read_cstring(&mut mem, 0x1f00, &mut scratch),
            CString::Complete("a".repeat(1000))
        );
        // No NUL in 4096 bytes.
        let mut mem = FakeMemory {
            base: 0x2000,
            bytes: vec![b'b'; 10000],
        };
        assert_eq!(
            read_cstring(&mut mem, 0x2000, &mut scratch),
            CString::Truncated("b".repeat(MAX_STRING))
        );
    }

    #[test]
    fn iovecs_are_summed_and_bounded() {
        let mut bytes = Vec::new();
        for len in [8192u64, 8192, 100] {
            bytes.extend_from_slice(&0xdead_0000u64.to_ne_bytes());
            bytes.extend_from_slice(&len.to_ne_bytes());
        }
        let mut mem = FakeMemory {
            base: 0x5000,
            bytes,
        };
        let mut scratch = Vec::new();
        assert_eq!(iovec_total(&mut mem, 0x5000, 3, &mut scratch), Some(16484));
        assert_eq!(iovec_total(&mut mem, 0x5000, 2, &mut scratch), Some(16384));
        assert_eq!(iovec_total(&mut mem, 0x5000, 0, &mut scratch), Some(0));
        assert_eq!(iovec_total(&mut mem, 0x5000, 4, &mut scratch), None);
        // Hostile lengths saturate instead of overflowing; hostile counts are capped.
        let mut bytes = Vec::new();
        for _ in 0..MAX_IOVECS + 10 {
            bytes.extend_from_slice(&0u64.to_ne_bytes());
            bytes.extend_from_slice(&u64::MAX.to_ne_bytes());
        }
        let mut mem = FakeMemory {
            base: 0x5000,
            bytes,
        };
        assert_eq!(
            iovec_total(&mut mem, 0x5000, u64::MAX, &mut scratch),
            Some(u64::MAX)
        );
        assert_eq!(scratch.len(), MAX_IOVECS * IOVEC_SIZE);
    }

    /// Reading our own memory with process_vm_readv needs no privilege: check the real
    /// reader, including a string that runs into an unmapped page.
    #[test]
    fn process_memory_reads_self_and_stops_at_unmapped_page() {
        let mut mem = ProcessMemory {
            pid: std::process::id() as Pid,
        };
        let mut scratch = Vec::new();
        let s = b"pg_wal/000000010000000000000001\0";
        assert_eq!(
            read_cstring(&mut mem, s.as_ptr() as u64, &mut scratch),
            CString::Complete("pg_wal/000000010000000000000001".into())
        );
        // Two pages, the second made inaccessible; a string without NUL ends at the first.
        let page = PAGE_SIZE as usize;
        // SAFETY: anonymous private mapping of two pages, unmapped below; we only touch it
        // through the pointer while mapped.
        unsafe {
            let p = libc::mmap(
                std::ptr::null_mut(),
                2 * page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            std::ptr::write_bytes(p as *mut u8, b'x', 2 * page);
            assert_eq!(
                libc::mprotect((p as *mut u8).add(page) as *mut _, page, libc::PROT_NONE),
                0
            );
            let addr = p as u64 + PAGE_SIZE - 10;
            assert_eq!(
                read_cstring(&mut mem, addr, &mut scratch),
                CString::Truncated("x".repeat(10))
            );
            assert_eq!(
                read_cstring(&mut mem, p as u64 + PAGE_SIZE, &mut scratch),
                CString::Unreadable
            );
            libc::munmap(p, 2 * page);
        }
    }
}
