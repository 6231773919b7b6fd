//! eBPF capture: system-call tracepoints of the traced processes, via a ring buffer.
//!
//! The BPF side (`bpf/syscalls.bpf.c`) filters by tgid in the kernel, first thing in every
//! program, against the `pids` map this tracer fills. For traced processes it saves the
//! arguments at `sys_enter_*` (plus, for `read`/`readv`/`write`/`writev`, the file position
//! at entry and whether the fd is a socket) and writes one record per call at `sys_exit_*`.
//! Records go into a 16 MiB ring buffer without waking us (`BPF_RB_NO_WAKEUP`): [`poll`]
//! drains it non-blockingly on the caller's timer. The record layout is documented in
//! `bpf/events.h` and decoded here with bounds-checked little-endian reads; a short or
//! garbled record is counted as lost, never trusted.
//!
//! Only tracepoints are used (no kprobes, no fentry). They live in tracefs, which
//! [`EbpfTracer::attach`] mounts on `/sys/kernel/tracing` when it is not mounted yet.
//!
//! [`poll`]: Tracer::poll

use std::cell::RefCell;
use std::ffi::CString;
use std::mem::MaybeUninit;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{
    libbpf_sys, Link, MapCore, MapFlags, OpenObject, PrintLevel, RingBuffer, RingBufferBuilder,
    TracepointCategory,
};

use super::{monotonic_ns, Event, EventKind, Pid, Syscall, Tracer, TracerStats};

#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::nursery,
    missing_docs,
    unreachable_pub,
    unsafe_op_in_unsafe_fn
)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/syscalls.skel.rs"));
}

use skel::{SyscallsSkel, SyscallsSkelBuilder};

/// The record layout of `bpf/events.h`. Keep the two in step.
mod wire {
    pub const HDR_SIZE: usize = 64;
    pub const OFF_TS: usize = 0;
    pub const OFF_TGID: usize = 8;
    pub const OFF_SYSCALL: usize = 12;
    pub const OFF_FLAGS: usize = 14;
    pub const OFF_RET: usize = 16;
    pub const OFF_A0: usize = 24;
    pub const OFF_A1: usize = 32;
    pub const OFF_A2: usize = 40;
    pub const OFF_A3: usize = 48;
    pub const OFF_PATH_LEN: usize = 56;

    pub const F_OFFSET: u16 = 0x0001;
    pub const F_SOCKET: u16 = 0x0002;
    pub const F_PATH: u16 = 0x0004;

    /// Longest path the BPF side sends (PGT_PATH_CAP minus the NUL).
    pub const PATH_MAX_LEN: usize = 4095;
}

/// `PGT_SYS_*` ids of `bpf/events.h`, in order.
const SYSCALL_BY_ID: [Syscall; 30] = [
    Syscall::Open,
    Syscall::Openat,
    Syscall::Close,
    Syscall::Dup,
    Syscall::Dup2,
    Syscall::Dup3,
    Syscall::FcntlDupfd,
    Syscall::Read,
    Syscall::Pread64,
    Syscall::Readv,
    Syscall::Preadv,
    Syscall::Preadv2,
    Syscall::Write,
    Syscall::Pwrite64,
    Syscall::Writev,
    Syscall::Pwritev,
    Syscall::Pwritev2,
    Syscall::Lseek,
    Syscall::Ftruncate,
    Syscall::Truncate,
    Syscall::Unlink,
    Syscall::Unlinkat,
    Syscall::Getdents64,
    Syscall::Newfstatat,
    Syscall::Fstat,
    Syscall::Lstat,
    Syscall::Stat,
    Syscall::Statx,
    Syscall::Sendto,
    Syscall::Fadvise64,
];

/// Lost-event causes: the kernel's per-CPU `lost` array (indexes `PGT_LOST_*`), then the
/// ones counted here.
const KERNEL_CAUSES: [&str; 4] = [
    "ring buffer full",
    "path truncated",
    "enter record missing",
    "path unreadable",
];
const CAUSE_GARBLED: &str = "garbled record";
const CAUSE_SKIPPED: &str = "BPF program skipped (recursion)";
const N_CAUSES: usize = KERNEL_CAUSES.len() + 2;
const IDX_GARBLED: usize = KERNEL_CAUSES.len();
const IDX_SKIPPED: usize = KERNEL_CAUSES.len() + 1;

fn cause_name(i: usize) -> &'static str {
    match i {
        IDX_GARBLED => CAUSE_GARBLED,
        IDX_SKIPPED => CAUSE_SKIPPED,
        _ => KERNEL_CAUSES[i],
    }
}

const AT_FDCWD: i32 = -100;
const AT_EMPTY_PATH: u32 = 0x1000;
const EBADF: i64 = 9;
/// The inode number of the initial PID namespace (PROC_PID_INIT_INO).
const PROC_PID_INIT_INO: u64 = 0xEFFF_FFFC;
/// How often `poll` asks the kernel how often our programs were skipped.
const SKIPPED_CHECK_EVERY: Duration = Duration::from_secs(1);

fn le_u16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn le_u32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn le_u64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// An `int` syscall argument: the kernel uses the low 32 bits of the register.
fn int_arg(v: u64) -> i32 {
    v as u32 as i32
}

fn dirfd_arg(v: u64) -> Option<i32> {
    match int_arg(v) {
        AT_FDCWD => None,
        fd => Some(fd),
    }
}

/// What one ring-buffer record says.
#[derive(Debug, PartialEq)]
enum Decoded {
    Event(Event),
    /// A well-formed record that changes nothing (close of a bad fd).
    Nothing,
    /// Short, over-long or inconsistent: counted as lost.
    Garbled,
}

/// One ring-buffer record; never panics, whatever the bytes.
fn decode(data: &[u8]) -> Decoded {
    match decode_inner(data) {
        Some(Some(ev)) => Decoded::Event(ev),
        Some(None) => Decoded::Nothing,
        None => Decoded::Garbled,
    }
}

fn decode_inner(data: &[u8]) -> Option<Option<Event>> {
    use wire::*;

    let ts_ns = le_u64(data, OFF_TS)?;
    let pid = le_u32(data, OFF_TGID)? as Pid;
    let syscall = *SYSCALL_BY_ID.get(usize::from(le_u16(data, OFF_SYSCALL)?))?;
    let flags = le_u16(data, OFF_FLAGS)?;
    let ret = le_u64(data, OFF_RET)? as i64;
    let a0 = le_u64(data, OFF_A0)?;
    let a1 = le_u64(data, OFF_A1)?;
    let a2 = le_u64(data, OFF_A2)?;
    let a3 = le_u64(data, OFF_A3)?;
    let path_len = le_u32(data, OFF_PATH_LEN)? as usize;

    let path_bytes = if flags & F_PATH != 0 {
        if path_len > PATH_MAX_LEN || data.len() != HDR_SIZE + path_len {
            return None;
        }
        Some(&data[HDR_SIZE..])
    } else {
        if data.len() != HDR_SIZE || path_len != 0 {
            return None;
        }
        None
    };
    // Paths are bytes; the seam carries Strings. Only path events allocate.
    let path = || path_bytes.map(|b| String::from_utf8_lossy(b).into_owned());

    let fd = int_arg(a0);
    let offset = (flags & F_OFFSET != 0).then_some(a1);
    use Syscall as S;
    let kind = match syscall {
        S::Open | S::Openat => EventKind::Open {
            syscall,
            dirfd: dirfd_arg(a0),
            path: path()?,
            flags: int_arg(a1),
            fd: ret as i32,
        },
        // Nothing was open under that number: nothing changes. (Linux closes the fd
        // whatever else close() returns, EINTR and EIO included.)
        S::Close if ret == -EBADF => return Some(None),
        S::Close => EventKind::Close { fd },
        S::Dup | S::Dup2 | S::Dup3 | S::FcntlDupfd => EventKind::Dup {
            syscall,
            old_fd: fd,
            new_fd: ret as i32,
        },
        S::Read | S::Pread64 | S::Readv | S::Preadv | S::Preadv2 => EventKind::Read {
            syscall,
            fd,
            offset,
            requested: a2,
            result: ret,
        },
        S::Write | S::Writev if flags & F_SOCKET != 0 => EventKind::Send {
            syscall,
            fd,
            requested: a2,
            result: ret,
        },
        S::Write | S::Pwrite64 | S::Writev | S::Pwritev | S::Pwritev2 => EventKind::Write {
            syscall,
            fd,
            offset,
            requested: a2,
            result: ret,
        },
        S::Lseek => EventKind::Seek {
            fd,
            offset: a1 as i64,
            whence: int_arg(a2),
            result: ret,
        },
        S::Ftruncate => EventKind::Truncate {
            syscall,
            fd: Some(fd),
            path: None,
            length: a1,
            result: ret,
        },
        S::Truncate => EventKind::Truncate {
            syscall,
            fd: None,
            path: Some(path()?),
            length: a1,
            result: ret,
        },
        S::Unlink | S::Unlinkat => EventKind::Unlink {
            syscall,
            dirfd: dirfd_arg(a0),
            path: path()?,
            result: ret,
        },
        S::Getdents64 => EventKind::ReadDir { fd, result: ret },
        S::Newfstatat | S::Statx => {
            let p = path()?;
            if p.is_empty() && (a1 as u32) & AT_EMPTY_PATH != 0 {
                // fstatat(fd, "", AT_EMPTY_PATH): how glibc implements fstat().
                EventKind::Stat {
                    syscall,
                    dirfd: None,
                    fd: Some(fd),
                    path: None,
                    result: ret,
                }
            } else {
                EventKind::Stat {
                    syscall,
                    dirfd: dirfd_arg(a0),
                    fd: None,
                    path: Some(p),
                    result: ret,
                }
            }
        }
        S::Fstat => EventKind::Stat {
            syscall,
            dirfd: None,
            fd: Some(fd),
            path: None,
            result: ret,
        },
        S::Lstat | S::Stat => EventKind::Stat {
            syscall,
            dirfd: None,
            fd: None,
            path: Some(path()?),
            result: ret,
        },
        S::Sendto => EventKind::Send {
            syscall,
            fd,
            requested: a2,
            result: ret,
        },
        S::Fadvise64 => EventKind::Fadvise {
            fd,
            offset: a1,
            len: a2,
            advice: int_arg(a3),
        },
    };
    Some(Some(Event { ts_ns, pid, kind }))
}
