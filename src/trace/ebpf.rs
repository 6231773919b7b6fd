//! eBPF capture: the system calls of the traced processes, seen at their exit, via a ring
//! buffer.
//!
//! The BPF side (`bpf/syscalls.bpf.c`) is one program on the raw `sys_exit` tracepoint
//! (`tp_btf`: BTF-typed arguments, no perf event, no tracefs). It runs at the exit of every
//! system call on the machine, so it first checks the syscall number against a table of the
//! calls we decode, then the tgid against the pids this tracer follows (16 slots in the
//! program's `.bss`, which we write through its mmap, and the `pids` hash map for any
//! more); only then does it write a record, with the arguments still in the saved user
//! registers (x86_64) and, for `read`/`readv`/`write`/`writev`, the start offset as the file
//! position at exit minus the result, and whether the fd is a socket. There is no enter side
//! and no per-thread state. `pread64` records, the bulk of a scan, carry a time to the clock
//! tick (reading the clock per call would be a third of their cost).
//! Records go into a 16 MiB ring buffer without waking us (`BPF_RB_NO_WAKEUP`): [`poll`]
//! drains it non-blockingly on the caller's timer. The record layout is documented in
//! `bpf/events.h` and decoded here with bounds-checked little-endian reads; a short or
//! garbled record is counted as lost, never trusted.
//!
//! Needs kernel BTF (`/sys/kernel/btf/vmlinux`); no kprobes, no fentry, no tracefs.
//! Detaching is one link close (well under a millisecond), unlike per-syscall tracepoints
//! whose perf events each wait for an RCU grace period. The price of one program for all
//! system calls: while attached, every system call on the machine goes through the
//! kernel's syscall-tracepoint path and this program's first check, measured at about
//! +90 ns for a call we do not decode (per-syscall tracepoints: about +50 ns).
//!
//! [`poll`]: Tracer::poll

use std::cell::RefCell;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, RingBuffer, RingBufferBuilder};

use super::cost::{ProbeCost, ProbeRuntime};
use super::libbpf::ObjectSlot;
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

mod decoded_ring;
mod exits;
mod io_latency;
mod kernel_time;
mod sched;
mod uring;
mod wait_watch;

use kernel_time::KernelTime;

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
    pub const F_AIO_OWNER: u16 = 0x0040;

    /// Longest path the BPF side sends (PGT_PATH_CAP minus the NUL).
    pub const PATH_MAX_LEN: usize = 4095;
}

/// `PGT_SYS_*` ids of `bpf/events.h`, in order.
const SYSCALL_BY_ID: [Syscall; 33] = [
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
    Syscall::Sendfile,
    Syscall::CopyFileRange,
    Syscall::Splice,
];

/// Lost-event causes: the kernel's per-CPU `lost` array (indexes `PGT_LOST_*`), then the
/// ones counted here.
const KERNEL_CAUSES: [&str; 4] = [
    "ring buffer full",
    "path truncated",
    "path unreadable",
    super::event::IO_WORKER_OWNER_UNKNOWN,
];
const CAUSE_GARBLED: &str = "garbled record";
const CAUSE_SKIPPED: &str = "BPF program skipped (recursion)";
const N_CAUSES: usize = KERNEL_CAUSES.len() + 3;
const IDX_GARBLED: usize = KERNEL_CAUSES.len();
const IDX_SKIPPED: usize = KERNEL_CAUSES.len() + 1;
const IDX_URING_UNNAMED: usize = KERNEL_CAUSES.len() + 2;

fn cause_name(i: usize) -> &'static str {
    match i {
        IDX_GARBLED => CAUSE_GARBLED,
        IDX_SKIPPED => CAUSE_SKIPPED,
        IDX_URING_UNNAMED => uring::UNNAMED,
        _ => KERNEL_CAUSES[i],
    }
}

const AT_FDCWD: i32 = -100;
const AT_EMPTY_PATH: u32 = 0x1000;
const EBADF: i64 = 9;
/// Kernel-internal errnos the syscall exit tracepoint can see (include/linux/errno.h).
const ERESTARTSYS: i64 = 512;
const ERESTART_RESTARTBLOCK: i64 = 516;
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
    /// An io_uring request on a registered file, to be named by its inode (`uring.rs`).
    UringFixed(uring::Fixed),
    /// Short, over-long or inconsistent: counted as lost.
    Garbled,
}

/// One ring-buffer record; never panics, whatever the bytes.
fn decode(data: &[u8]) -> Decoded {
    if let Some(d) = uring::decode(data) {
        return d;
    }
    match decode_inner(data) {
        Some(Some(ev)) => Decoded::Event(ev),
        Some(None) => Decoded::Nothing,
        None => Decoded::Garbled,
    }
}

/// The fixed header of a record and its path, checked for consistency.
struct Record<'a> {
    ts_ns: u64,
    pid: Pid,
    syscall: Syscall,
    flags: u16,
    ret: i64,
    args: [u64; 4],
    path: Option<&'a [u8]>,
}

/// The calls whose record carries the path they name.
fn carries_path(syscall: Syscall) -> bool {
    use Syscall as S;
    matches!(
        syscall,
        S::Open
            | S::Openat
            | S::Truncate
            | S::Unlink
            | S::Unlinkat
            | S::Newfstatat
            | S::Statx
            | S::Lstat
            | S::Stat
    )
}

impl<'a> Record<'a> {
    /// None when short, over-long, or when the path flag, length and call disagree.
    fn parse(data: &'a [u8]) -> Option<Record<'a>> {
        use wire::*;
        let flags = le_u16(data, OFF_FLAGS)?;
        let path_len = le_u32(data, OFF_PATH_LEN)? as usize;
        let path = if flags & F_PATH != 0 {
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
        let syscall = *SYSCALL_BY_ID.get(usize::from(le_u16(data, OFF_SYSCALL)?))?;
        if carries_path(syscall) != path.is_some() {
            return None;
        }
        Some(Record {
            ts_ns: le_u64(data, OFF_TS)?,
            pid: le_u32(data, OFF_TGID)? as Pid,
            syscall,
            flags,
            ret: le_u64(data, OFF_RET)? as i64,
            args: [
                le_u64(data, OFF_A0)?,
                le_u64(data, OFF_A1)?,
                le_u64(data, OFF_A2)?,
                le_u64(data, OFF_A3)?,
            ],
            path,
        })
    }

    /// Paths are bytes; the seam carries Strings. Only path events allocate.
    fn path(&self) -> Option<String> {
        self.path.map(|b| String::from_utf8_lossy(b).into_owned())
    }

    fn fd(&self) -> i32 {
        int_arg(self.args[0])
    }

    /// The explicit offset of a positioned read or write (pread64, preadv, ...).
    fn offset(&self) -> Option<u64> {
        (self.flags & wire::F_OFFSET != 0).then_some(self.args[1])
    }
}

/// Outer None: garbled. Inner None: a well-formed record that changes nothing.
fn decode_inner(data: &[u8]) -> Option<Option<Event>> {
    use Syscall as S;
    let r = Record::parse(data)?;
    // -ERESTARTSYS and friends: interrupted by a signal, the call is restarted (a new
    // call, with its own exit, follows) or becomes -EINTR. Either way nothing happened.
    if (-ERESTART_RESTARTBLOCK..=-ERESTARTSYS).contains(&r.ret) {
        return Some(None);
    }
    let kind = match r.syscall {
        S::Open | S::Openat | S::Close | S::Dup | S::Dup2 | S::Dup3 | S::FcntlDupfd => {
            fd_table_event(&r)?
        }
        S::Truncate
        | S::Unlink
        | S::Unlinkat
        | S::Newfstatat
        | S::Statx
        | S::Fstat
        | S::Lstat
        | S::Stat => Some(path_event(&r)?),
        S::Read
        | S::Pread64
        | S::Readv
        | S::Preadv
        | S::Preadv2
        | S::Write
        | S::Pwrite64
        | S::Writev
        | S::Pwritev
        | S::Pwritev2
        | S::Lseek
        | S::Ftruncate
        | S::Getdents64
        | S::Sendto
        | S::Fadvise64
        | S::Sendfile
        | S::CopyFileRange
        | S::Splice => Some(io_event(&r)?),
        // Never in SYSCALL_BY_ID: their records are decoded by `uring::decode`.
        S::IoUringRead
        | S::IoUringReadv
        | S::IoUringReadFixed
        | S::IoUringReadvFixed
        | S::IoUringWrite
        | S::IoUringWritev
        | S::IoUringWriteFixed
        | S::IoUringWritevFixed => return None,
    };
    Some(kind.map(|kind| Event {
        ts_ns: r.ts_ns,
        pid: r.pid,
        kind,
    }))
}

/// Opens, closes and dups: what changes the process's fd table.
fn fd_table_event(r: &Record) -> Option<Option<EventKind>> {
    use Syscall as S;
    let (syscall, ret) = (r.syscall, r.ret);
    Some(Some(match syscall {
        S::Open | S::Openat => EventKind::Open {
            syscall,
            dirfd: dirfd_arg(r.args[0]),
            path: r.path()?,
            flags: int_arg(r.args[1]),
            fd: ret as i32,
        },
        // Nothing was open under that number: nothing changes. (Linux closes the fd
        // whatever else close() returns, EINTR and EIO included.)
        S::Close if ret == -EBADF => return Some(None),
        S::Close => EventKind::Close { fd: r.fd() },
        _ => EventKind::Dup {
            syscall,
            old_fd: r.fd(),
            new_fd: ret as i32,
        },
    }))
}

/// Calls on an open fd that move data or a position.
fn io_event(r: &Record) -> Option<EventKind> {
    use Syscall as S;
    let (syscall, fd, ret) = (r.syscall, r.fd(), r.ret);
    let [_, a1, a2, a3] = r.args;
    if r.flags & wire::F_AIO_OWNER != 0 {
        // A PG18 io worker's read for the traced process `a3` (bpf/syscalls.bpf.c).
        if !matches!(syscall, S::Pread64 | S::Preadv | S::Preadv2) {
            return None;
        }
        return Some(EventKind::IoWorkerRead {
            owner: Pid::try_from(a3).ok().filter(|p| *p > 0)?,
            syscall,
            fd,
            offset: r.offset(),
            requested: a2,
            result: ret,
        });
    }
    Some(match syscall {
        S::Read
        | S::Pread64
        | S::Readv
        | S::Preadv
        | S::Preadv2
        | S::Sendfile
        | S::CopyFileRange
        | S::Splice => EventKind::Read {
            syscall,
            fd,
            offset: r.offset(),
            requested: a2,
            result: ret,
        },
        S::Write | S::Writev if r.flags & wire::F_SOCKET != 0 => EventKind::Send {
            syscall,
            fd,
            requested: a2,
            result: ret,
        },
        S::Sendto => EventKind::Send {
            syscall,
            fd,
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
        S::Getdents64 => EventKind::ReadDir { fd, result: ret },
        S::Fadvise64 => EventKind::Fadvise {
            fd,
            offset: a1,
            len: a2,
            advice: int_arg(a3),
        },
        S::Write | S::Pwrite64 | S::Writev | S::Pwritev | S::Pwritev2 => EventKind::Write {
            syscall,
            fd,
            offset: r.offset(),
            requested: a2,
            result: ret,
        },
        _ => return None,
    })
}

/// Calls that name a file by path (and fstat, which glibc may make one of them).
fn path_event(r: &Record) -> Option<EventKind> {
    use Syscall as S;
    let (syscall, ret) = (r.syscall, r.ret);
    let stat = |dirfd, fd, path| EventKind::Stat {
        syscall,
        dirfd,
        fd,
        path,
        result: ret,
    };
    Some(match syscall {
        S::Truncate => EventKind::Truncate {
            syscall,
            fd: None,
            path: Some(r.path()?),
            length: r.args[1],
            result: ret,
        },
        S::Unlink | S::Unlinkat => EventKind::Unlink {
            syscall,
            dirfd: dirfd_arg(r.args[0]),
            path: r.path()?,
            result: ret,
        },
        S::Newfstatat | S::Statx => {
            let p = r.path()?;
            if p.is_empty() && (r.args[1] as u32) & AT_EMPTY_PATH != 0 {
                // fstatat(fd, "", AT_EMPTY_PATH): how glibc implements fstat().
                stat(None, Some(r.fd()), None)
            } else {
                stat(dirfd_arg(r.args[0]), None, Some(p))
            }
        }
        S::Fstat => stat(None, Some(r.fd()), None),
        _ => stat(None, None, Some(r.path()?)),
    })
}

thread_local! {
    /// Where the ring-buffer callback puts what it decodes. The callback runs synchronously
    /// inside `RingBuffer::consume`, on the thread that called [`Tracer::poll`], which
    /// drains this right after: a per-thread buffer needs no lock on the per-event path
    /// and keeps the tracer `Send`.
    static SINK: RefCell<Sink> = RefCell::new(Sink::default());
}

#[derive(Default)]
struct Sink {
    events: Vec<Event>,
    garbled: u64,
    /// io_uring requests on a registered file no descriptor holds.
    uring_unnamed: u64,
}

/// The ring-buffer callback: decode one record into [`SINK`].
fn on_record(data: &[u8]) -> i32 {
    SINK.with(|sink| {
        let mut sink = sink.borrow_mut();
        match decode(data) {
            Decoded::Event(ev) => {
                uring::observe(&ev);
                sink.events.push(ev)
            }
            Decoded::Nothing => {}
            Decoded::UringFixed(f) => match uring::name_fixed(&f) {
                Some(ev) => sink.events.push(ev),
                None => sink.uring_unnamed += 1,
            },
            Decoded::Garbled => sink.garbled += 1,
        }
    });
    0
}

/// The size of the events ring buffer (a power of two, a multiple of the page size).
const EVENTS_RING_BYTES: u32 = 8 << 20;

/// The most records one poll takes from the ring: about what it holds (~110k records).
pub const MAX_RECORDS_PER_POLL: usize = 1 << 17;

/// Where the kernel publishes its BTF, which the `tp_btf` program and CO-RE need.
const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// (device, inode) of our PID namespace when it is not the initial one, in the form
/// `bpf_get_ns_current_pid_tgid` wants (a kernel dev_t).
fn own_pid_namespace() -> Option<(u64, u64)> {
    let md = std::fs::metadata("/proc/self/ns/pid").ok()?;
    if md.ino() == PROC_PID_INIT_INO {
        return None;
    }
    let dev = md.dev();
    let (major, minor) = (libc::major(dev) as u64, libc::minor(dev) as u64);
    Some(((major << 20) | minor, md.ino()))
}

/// System-call capture with eBPF on the `sys_exit` raw tracepoint. See the module
/// documentation.
pub struct EbpfTracer {
    // Field order is drop order: the link, then the ring buffer, then the skeleton, and
    // last the slot the skeleton borrows.
    /// Copier mode: children traced from their fork, in the kernel (`follow_forks`).
    fork_link: Option<Link>,
    link: Option<Link>,
    /// The exit hook (pid identity in the kernel: see `exits.rs`).
    exits: Option<exits::ExitWatch>,
    /// The io_uring programs (`uring.rs`), or why they are not attached.
    uring: Option<uring::UringCapture>,
    /// Where the time goes: scheduler times (default), I/O latency and exact waits
    /// (opt-in); see `sched.rs`, `io_latency.rs`, `wait_watch.rs`.
    kernel: KernelTime,
    ring: Option<RingBuffer<'static>>,
    skel: Option<SyscallsSkel<'static>>,
    _slot: ObjectSlot,
    pids: Vec<Pid>,
    events: u64,
    /// Cumulative lost counts by cause (index as in `cause_name`).
    lost: [u64; N_CAUSES],
    /// What `poll` has already reported as `Lost` events.
    lost_reported: [u64; N_CAUSES],
    last_skipped_check: Option<Instant>,
    detached: bool,
    /// PG18: the ProcNumber of each traced process, as put in `aio_owners`.
    aio_owners: Vec<(Pid, u32)>,
    /// PG18: the io workers in `aio_workers`.
    aio_workers: Vec<Pid>,
    /// Why some io worker reads cannot be attributed, for `limitations`.
    aio_notes: Vec<String>,
    /// Keeps the kernel timing our programs while we run (see `RunTimeStats`).
    run_time_stats: super::libbpf::RunTimeStats,
}

impl EbpfTracer {
    /// Loads the BPF program, follows `pids` and attaches it to the `sys_exit` tracepoint.
    pub fn attach(pids: &[Pid]) -> anyhow::Result<EbpfTracer> {
        Self::attach_inner(pids, false)
    }

    /// [`Self::attach`], plus an empty program on sched_switch (benches/kernel_time.rs:
    /// the floor of a program's run time there, see [`Self::empty_program_cost`]).
    pub fn attach_with_empty_sched_program(pids: &[Pid]) -> anyhow::Result<EbpfTracer> {
        let mut t = Self::attach_inner(pids, true)?;
        t.attach_empty()?;
        Ok(t)
    }

    fn attach_inner(pids: &[Pid], empty_sched: bool) -> anyhow::Result<EbpfTracer> {
        super::libbpf::capture_messages();
        match std::fs::metadata(VMLINUX_BTF) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "eBPF unavailable: the kernel publishes no BTF ({VMLINUX_BTF} is missing; \
                 kernel built without CONFIG_DEBUG_INFO_BTF)"
            ),
            Err(e) => bail!("eBPF unavailable: {VMLINUX_BTF}: {e}"),
        }

        // Declared before the skeleton: on an early return it is dropped after it.
        let slot = ObjectSlot::new();
        // SAFETY: the skeleton borrowing the slot is stored next to it in EbpfTracer (or
        // dropped on error before it), and drops first; this is the only call of get().
        let storage = unsafe { slot.get() };
        let mut open = SyscallsSkelBuilder::default()
            .open(storage)
            .map_err(|e| anyhow!("eBPF unavailable: opening the BPF object failed ({e})"))?;

        // The ring is mapped into us twice over (the kernel maps its data pages twice so
        // that records never wrap), and all of it counts in our resident memory: 8 MiB is
        // 16 MiB of RSS, ~110k records, a third of a second at 340k syscalls/s, several
        // times the 50-100 ms between drains.
        open.maps
            .events
            .set_max_entries(EVENTS_RING_BYTES)
            .map_err(|e| anyhow!("eBPF unavailable: sizing the ring buffer failed ({e})"))?;
        let uring_support = uring::kernel_support();
        uring::configure(&mut open, uring_support.is_ok());
        let sched_variant = sched::configure(&mut open, empty_sched);
        io_latency::configure(&mut open);
        if let Some((dev, ino)) = own_pid_namespace() {
            if let Some(rodata) = open.maps.rodata_data.as_deref_mut() {
                rodata.pidns_dev = dev;
                rodata.pidns_ino = ino;
            }
        }

        let skel = open.load().map_err(|e| {
            let detail = super::libbpf::last_message().unwrap_or_else(|| e.to_string());
            anyhow!("eBPF unavailable: loading the program was refused ({detail})")
        })?;

        let mut tracer = EbpfTracer {
            fork_link: None,
            link: None,
            exits: None,
            uring: None,
            kernel: KernelTime::default(),
            ring: None,
            skel: Some(skel),
            _slot: slot,
            pids: Vec::new(),
            events: 0,
            lost: [0; N_CAUSES],
            lost_reported: [0; N_CAUSES],
            last_skipped_check: None,
            detached: false,
            aio_owners: Vec::new(),
            aio_workers: Vec::new(),
            aio_notes: Vec::new(),
            run_time_stats: super::libbpf::RunTimeStats::enable(),
        };
        tracer.kernel.variant = Some(sched_variant);
        for &pid in pids {
            tracer.add_pid(pid)?;
        }

        let skel = tracer.skel.as_ref().expect("skeleton just loaded");
        let mut builder = RingBufferBuilder::new();
        builder
            .add(&skel.maps.events, on_record)
            .map_err(|e| anyhow!("eBPF unavailable: cannot use the ring buffer ({e})"))?;
        let ring = builder
            .build()
            .map_err(|e| anyhow!("eBPF unavailable: cannot map the ring buffer ({e})"))?;

        let link = skel.progs.sys_exit.attach().map_err(|e| {
            let detail = super::libbpf::last_message().unwrap_or_else(|| e.to_string());
            anyhow!("eBPF unavailable: attaching to the sys_exit tracepoint failed ({detail})")
        })?;
        let exits = exits::ExitWatch::attach(skel)?;
        let uring = uring::UringCapture::attach(skel, uring_support);
        tracer.uring = Some(uring);
        tracer.link = Some(link);
        tracer.exits = Some(exits);
        tracer.ring = Some(ring);
        tracer.attach_sched();
        Ok(tracer)
    }

    fn skel(&self) -> anyhow::Result<&SyscallsSkel<'static>> {
        match self.skel.as_ref() {
            Some(skel) if !self.detached => Ok(skel),
            _ => Err(anyhow!("eBPF: the tracer is detached")),
        }
    }

    /// Sum over CPUs of the kernel's lost counter `idx`.
    fn kernel_lost(skel: &SyscallsSkel<'static>, idx: u32) -> u64 {
        match skel
            .maps
            .lost
            .lookup_percpu(&idx.to_ne_bytes(), MapFlags::ANY)
        {
            Ok(Some(per_cpu)) => per_cpu
                .iter()
                .filter_map(|v| le_or_ne_u64(v))
                .fold(0u64, |a, b| a.saturating_add(b)),
            _ => 0,
        }
    }

    /// How often the kernel skipped one of our programs because another BPF program was
    /// running on that CPU (bpf_prog_info.recursion_misses, summed).
    fn skipped_runs(skel: &SyscallsSkel<'static>) -> u64 {
        super::libbpf::prog_counters(skel.object().progs()).2
    }

    /// Takes `pid` out of what the BPF program follows (a fast slot or the `pids` map), and
    /// clears `pids_overflow` once every pid still in `self.pids` has a fast slot.
    fn unfollow(&mut self, pid: Pid) {
        let Some(skel) = self.skel.as_mut() else {
            return;
        };
        let _ = skel.maps.pids.delete(&(pid as u32).to_ne_bytes());
        let Some(bss) = skel.maps.bss_data.as_deref_mut() else {
            return;
        };
        for slot in bss.fast_pids.iter_mut().filter(|slot| **slot == pid as u32) {
            store_shared(slot, 0);
        }
        let fast = bss.fast_pids;
        // After the slot is cleared: the bits of the pids still in a slot.
        let hint = fast
            .iter()
            .filter(|&&t| t != 0)
            .fold(0, |h, &t| h | sched_hint_bit(t as Pid));
        store_shared(&mut bss.sched_hint, hint);
        if self.detached || self.pids.iter().all(|p| fast.contains(&(*p as u32))) {
            store_shared(&mut bss.pids_overflow, 0);
        }
    }

    /// Exits the kernel hook recorded so far. Taken *before* the events ring buffer is
    /// drained, so that every event of an exited process is in the same poll (exits.rs).
    fn take_exits(&mut self) -> Vec<Event> {
        let Some(watch) = self.exits.as_ref() else {
            return Vec::new();
        };
        let (exits, garbled) = watch.drain();
        self.lost[IDX_GARBLED] += garbled;
        exits
    }

    /// After the events: the exits, each pid forgotten here as the kernel already forgot
    /// it (a later process with the same pid is not ours).
    fn finish_exits(&mut self, exits: Vec<Event>, out: &mut Vec<Event>) {
        for ev in exits {
            if self.pids.contains(&ev.pid) {
                // Its scheduler times are forgotten below: what it ran since the last
                // tick is read first.
                self.read_sched_of(ev.pid, out);
                self.pids.retain(|&p| p != ev.pid);
                self.unfollow(ev.pid);
                self.aio_unregister(ev.pid);
                uring::forget(ev.pid);
                self.forget_sched(ev.pid);
                self.events += 1;
                out.push(ev);
            }
        }
    }

    /// PG18 io_method=worker: an io worker is told to the BPF program with where it keeps
    /// the AIO handle it executes; any other traced process with its ProcNumber, the
    /// owner its handles carry. Failing either only means fewer reads attributed (an io
    /// worker not in `aio_workers` is filtered out by the session before it gets here, or
    /// its reads reach the model as plain, uncredited reads).
    fn aio_register(&mut self, pid: Pid) {
        use crate::process::aio;
        let title = crate::process::proc::process_title(pid).unwrap_or_default();
        let is_worker =
            super::follow::follower_role(&title, 0) == Some(super::FollowerRole::IoWorker);
        let Some(skel) = self.skel.as_mut() else {
            return;
        };
        if is_worker {
            // Without the ProcNumber of a traced process every read would look like
            // another backend's and be dropped silently: leave the worker's reads plain
            // (the model counts them as of unknown owner).
            if self.aio_owners.is_empty() {
                return;
            }
            match aio::worker_probe(pid) {
                Ok(Some(w)) => {
                    // The traced backend, registered first: handles of its parallel
                    // workers not followed yet are known by their lock group leader.
                    let (leader_tgid, leader_no) = self.aio_owners[0];
                    let mut v = Vec::with_capacity(72);
                    v.extend_from_slice(&w.ecs_addr.to_ne_bytes());
                    v.extend_from_slice(&w.handles_lo.to_ne_bytes());
                    v.extend_from_slice(&w.handles_hi.to_ne_bytes());
                    v.extend_from_slice(&w.handle_size.to_ne_bytes());
                    v.extend_from_slice(&w.owner_off.to_ne_bytes());
                    v.extend_from_slice(&w.arg_off.to_ne_bytes());
                    v.extend_from_slice(&w.proc_size.to_ne_bytes());
                    v.extend_from_slice(&w.procs.to_ne_bytes());
                    v.extend_from_slice(&w.proc_addr(leader_no).to_ne_bytes());
                    v.extend_from_slice(&(leader_tgid as u64).to_ne_bytes());
                    v.extend_from_slice(&w.group_off.to_ne_bytes());
                    v.extend_from_slice(&0u32.to_ne_bytes());
                    let key = (pid as u32).to_ne_bytes();
                    match skel.maps.aio_workers.update(&key, &v, MapFlags::ANY) {
                        Ok(()) => {
                            self.aio_workers.push(pid);
                            self.set_aio_workers_n();
                        }
                        Err(e) => self.aio_notes.push(format!(
                            "io worker {pid}: cannot follow its AIO handles ({e}): its reads are not credited"
                        )),
                    }
                }
                Ok(None) => {}
                Err(e) => self
                    .aio_notes
                    .push(format!("io worker {pid}: {e}: its reads are not credited")),
            }
            return;
        }
        match aio::proc_number(pid) {
            Ok(Some(n)) => {
                let r = skel.maps.aio_owners.update(
                    &n.to_ne_bytes(),
                    &(pid as u32).to_ne_bytes(),
                    MapFlags::ANY,
                );
                match r {
                    Ok(()) => self.aio_owners.push((pid, n)),
                    Err(e) => self.aio_notes.push(format!(
                        "pid {pid}: io worker reads for it cannot be attributed ({e})"
                    )),
                }
            }
            Ok(None) => {}
            Err(e) => self.aio_notes.push(format!(
                "pid {pid}: io worker reads for it cannot be attributed ({e})"
            )),
        }
    }

    fn aio_unregister(&mut self, pid: Pid) {
        let Some(skel) = self.skel.as_mut() else {
            return;
        };
        if let Some(i) = self.aio_owners.iter().position(|(p, _)| *p == pid) {
            let (_, n) = self.aio_owners.remove(i);
            let _ = skel.maps.aio_owners.delete(&n.to_ne_bytes());
        }
        if let Some(i) = self.aio_workers.iter().position(|p| *p == pid) {
            self.aio_workers.remove(i);
            let _ = skel.maps.aio_workers.delete(&(pid as u32).to_ne_bytes());
            self.set_aio_workers_n();
        }
    }

    fn set_aio_workers_n(&mut self) {
        let n = self.aio_workers.len() as u32;
        if let Some(bss) = self
            .skel
            .as_mut()
            .and_then(|s| s.maps.bss_data.as_deref_mut())
        {
            store_shared(&mut bss.aio_workers_n, n);
        }
    }

    fn refresh_lost(&mut self, check_skipped: bool) {
        let Some(skel) = self.skel.as_ref() else {
            return;
        };
        for (i, slot) in self.lost.iter_mut().take(KERNEL_CAUSES.len()).enumerate() {
            *slot = (*slot).max(Self::kernel_lost(skel, i as u32));
        }
        if check_skipped {
            self.lost[IDX_SKIPPED] = self.lost[IDX_SKIPPED].max(Self::skipped_runs(skel));
        }
    }
}

/// The kernel's clock tick (1/HZ): the resolution of CLOCK_MONOTONIC_COARSE, and of the
/// times of pread64 records.
fn clock_tick() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec owned by this frame.
    if unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut ts) } != 0 {
        return None;
    }
    Some(Duration::new(
        u64::try_from(ts.tv_sec).ok()?,
        u32::try_from(ts.tv_nsec).ok()?,
    ))
}

/// A tgid's bit in `sched_hint` (see the BPF source).
fn sched_hint_bit(pid: Pid) -> u32 {
    1u32 << ((pid as u32) % 32)
}

/// Stores `v` in a word of the BPF program's `.bss`, which the kernel maps into our memory
/// and the program reads concurrently on other CPUs.
fn store_shared(word: &mut u32, v: u32) {
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call (a field of the
    // mmapped .bss, which outlives the borrow); the kernel only reads it, and atomically
    // storing through a pointer from a `&mut` is what `from_ptr` requires.
    unsafe { AtomicU32::from_ptr(word) }.store(v, Ordering::SeqCst);
}

/// A per-CPU map value as u64 (the values are native-endian, which is little-endian on
/// every architecture this builds for).
fn le_or_ne_u64(v: &[u8]) -> Option<u64> {
    Some(u64::from_ne_bytes(v.get(..8)?.try_into().ok()?))
}

impl Tracer for EbpfTracer {
    fn name(&self) -> &'static str {
        "ebpf"
    }

    fn add_pid(&mut self, pid: Pid) -> anyhow::Result<()> {
        self.skel()?;
        if pid <= 0 {
            bail!("eBPF: cannot trace pid {pid}");
        }
        if self.pids.contains(&pid) {
            return Ok(());
        }
        // Its threads' records before the scheduler program can see it.
        self.seed_sched(pid);
        let skel = self.skel.as_mut().expect("checked by skel()");
        let bss = skel
            .maps
            .bss_data
            .as_deref_mut()
            .ok_or_else(|| anyhow!("eBPF: cannot follow pid {pid} (.bss is not mapped)"))?;
        if let Some(slot) = bss.fast_pids.iter_mut().find(|slot| **slot == 0) {
            // The hint first: a switch never finds the slot without its bit.
            let hint = bss.sched_hint | sched_hint_bit(pid);
            store_shared(&mut bss.sched_hint, hint);
            store_shared(slot, pid as u32);
        } else {
            skel.maps
                .pids
                .update(
                    &(pid as u32).to_ne_bytes(),
                    &1u32.to_ne_bytes(),
                    MapFlags::ANY,
                )
                .map_err(|e| anyhow!("eBPF: cannot follow pid {pid} ({e})"))?;
            // After the map update: the program looks in the map once this is set.
            store_shared(&mut bss.pids_overflow, 1);
        }
        self.pids.push(pid);
        self.aio_register(pid);
        Ok(())
    }

    fn remove_pid(&mut self, pid: Pid) {
        self.pids.retain(|&p| p != pid);
        self.unfollow(pid);
        self.aio_unregister(pid);
        self.forget_sched(pid);
    }

    fn attributes_io_workers(&self) -> bool {
        true
    }

    fn io_uring_capture(&self) -> Result<(), String> {
        match &self.uring {
            Some(u) if !self.detached => u.availability(),
            _ => Err("the eBPF tracer is detached".into()),
        }
    }

    fn follow_forks(&mut self) -> anyhow::Result<()> {
        if self.fork_link.is_some() {
            return Ok(());
        }
        let link = self.skel()?.progs.pgt_process_fork.attach().map_err(|e| {
            let detail = super::libbpf::last_message().unwrap_or_else(|| e.to_string());
            anyhow!("attaching to the sched_process_fork tracepoint failed ({detail})")
        })?;
        self.fork_link = Some(link);
        Ok(())
    }

    fn poll(&mut self, out: &mut Vec<Event>) -> anyhow::Result<()> {
        let exits = self.take_exits();
        let Some(ring) = self.ring.as_ref() else {
            return Ok(());
        };
        SINK.with(|s| {
            let mut s = s.borrow_mut();
            s.events.clear();
            s.garbled = 0;
            s.uring_unnamed = 0;
        });
        // At most a ring's worth per poll: a producer faster than we decode would keep an
        // unbounded consume going forever, and the caller's deadline with it.
        let rc = ring.consume_raw_n(MAX_RECORDS_PER_POLL);
        let (n, garbled, unnamed) = SINK.with(|s| {
            let mut s = s.borrow_mut();
            let n = s.events.len();
            out.append(&mut s.events);
            // Do not keep a burst's worth of memory around.
            if s.events.capacity() > 1 << 16 {
                s.events.shrink_to(1 << 12);
            }
            (
                n,
                std::mem::take(&mut s.garbled),
                std::mem::take(&mut s.uring_unnamed),
            )
        });
        self.events += n as u64;
        self.lost[IDX_GARBLED] += garbled;
        self.lost[IDX_URING_UNNAMED] += unnamed;
        self.poll_kernel_time(out);
        self.finish_exits(exits, out);
        if rc < 0 {
            bail!(
                "eBPF: reading the ring buffer failed ({})",
                std::io::Error::from_raw_os_error(-rc)
            );
        }

        let check_skipped = self
            .last_skipped_check
            .map_or(true, |t| t.elapsed() >= SKIPPED_CHECK_EVERY);
        if check_skipped {
            self.last_skipped_check = Some(Instant::now());
        }
        self.refresh_lost(check_skipped);
        let pid = self.pids.first().copied().unwrap_or(0);
        for i in 0..N_CAUSES {
            if self.lost[i] > self.lost_reported[i] {
                out.push(Event {
                    ts_ns: monotonic_ns(),
                    pid,
                    kind: EventKind::Lost {
                        cause: cause_name(i).to_string(),
                        count: self.lost[i] - self.lost_reported[i],
                    },
                });
                self.lost_reported[i] = self.lost[i];
            }
        }
        Ok(())
    }

    fn stats(&self) -> TracerStats {
        // Fresh kernel counters (3 map lookups); the skipped-run count as of the last poll
        // (asking for it takes a syscall per program).
        let mut lost = self.lost;
        if let Some(skel) = self.skel.as_ref() {
            for (i, slot) in lost.iter_mut().take(KERNEL_CAUSES.len()).enumerate() {
                *slot = (*slot).max(Self::kernel_lost(skel, i as u32));
            }
        }
        TracerStats {
            events: self.events,
            lost: (0..N_CAUSES)
                .map(|i| (cause_name(i).to_string(), lost[i]))
                .collect(),
        }
    }

    fn detach(&mut self) {
        self.detached = true;
        drop(self.fork_link.take());
        // Stop producing events at once, then detach the program (closing the link
        // unregisters the tracepoint probe: about a millisecond).
        for pid in self.pids.clone() {
            self.unfollow(pid);
        }
        if let Some(watch) = self.exits.as_mut() {
            watch.detach();
        }
        if let Some(uring) = self.uring.as_mut() {
            uring.detach();
        }
        self.kernel.detach();
        drop(self.link.take());
    }

    fn limitations(&self) -> Vec<String> {
        // Every decoded syscall is seen, with its offset, for 64-bit processes (the only
        // kind PostgreSQL runs as on x86_64): the one tracepoint either attaches or
        // `attach` fails. 32-bit (int 0x80) calls are skipped. What is coarser than it
        // could be: pread64 times (see event_ns in bpf/syscalls.bpf.c).
        let tick = match clock_tick() {
            Some(t) => format!(" ({:.0} ms)", t.as_secs_f64() * 1e3),
            None => String::new(),
        };
        let mut v = vec![format!(
            "eBPF: pread64 times have clock-tick resolution{tick}; other calls are timed exactly"
        )];
        v.extend(self.aio_notes.iter().cloned());
        v.extend(self.run_time_stats.why_not.iter().cloned());
        v.extend(self.kernel.notes.iter().cloned());
        v
    }

    fn enable_io_latency(&mut self) -> anyhow::Result<()> {
        self.enable_io_latency_watch()
    }

    fn watch_wait_event(&mut self, pid: Pid, addr: u64) -> anyhow::Result<()> {
        self.watch_wait_event_at(pid, addr)
    }

    /// The syscall-exit and process-exit programs. Their runs are those of every process
    /// on the machine: the syscall program rejects most calls in its first check.
    fn kernel_times(&mut self, out: &mut Vec<Event>) {
        self.read_kernel_times(out);
    }

    fn probe_cost(&self) -> ProbeCost {
        if let Some(c) = self.run_time_stats.unmeasured() {
            return c;
        }
        let Some(skel) = self.skel.as_ref() else {
            return ProbeCost::Measured(ProbeRuntime::default());
        };
        let (run_time_ns, runs, _) = super::libbpf::prog_counters(skel.object().progs());
        ProbeCost::Measured(ProbeRuntime {
            run_time_ns,
            runs,
            usdt_runs: 0,
        })
    }
}

impl Drop for EbpfTracer {
    fn drop(&mut self) {
        self.detach();
        // Then the fields drop in declaration order: ring buffer, skeleton (programs and
        // maps are closed), object slot.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A record as the BPF side writes it.
    #[allow(clippy::too_many_arguments)]
    fn record(syscall: u16, flags: u16, ret: i64, a: [u64; 4], path: Option<&[u8]>) -> Vec<u8> {
        let mut r = Vec::with_capacity(wire::HDR_SIZE + 32);
        r.extend_from_slice(&123_456_789u64.to_le_bytes());
        r.extend_from_slice(&4242u32.to_le_bytes());
        r.extend_from_slice(&syscall.to_le_bytes());
        let flags = flags | if path.is_some() { wire::F_PATH } else { 0 };
        r.extend_from_slice(&flags.to_le_bytes());
        r.extend_from_slice(&ret.to_le_bytes());
        for v in a {
            r.extend_from_slice(&v.to_le_bytes());
        }
        r.extend_from_slice(&(path.map_or(0, <[u8]>::len) as u32).to_le_bytes());
        r.extend_from_slice(&4243u32.to_le_bytes());
        assert_eq!(r.len(), wire::HDR_SIZE);
        if let Some(p) = path {
            r.extend_from_slice(p);
        }
        r
    }

    fn id(s: Syscall) -> u16 {
        SYSCALL_BY_ID.iter().position(|&x| x == s).unwrap() as u16
    }

    fn kind(data: &[u8]) -> EventKind {
        match decode(data) {
            Decoded::Event(e) => {
                assert_eq!((e.ts_ns, e.pid), (123_456_789, 4242));
                e.kind
            }
            other => panic!("{other:?}"),
        }
    }

    const CWD: u64 = AT_FDCWD as i64 as u64;

    /// A PG18 io worker's read for a traced process carries its owner's pid in a3.
    #[test]
    fn io_worker_reads_carry_their_owner() {
        let f = wire::F_OFFSET | wire::F_AIO_OWNER;
        for s in [Syscall::Pread64, Syscall::Preadv, Syscall::Preadv2] {
            assert_eq!(
                kind(&record(id(s), f, 131072, [7, 8192, 131072, 5005], None)),
                EventKind::IoWorkerRead {
                    owner: 5005,
                    syscall: s,
                    fd: 7,
                    offset: Some(8192),
                    requested: 131072,
                    result: 131072,
                }
            );
        }
        // Without the flag a3 means nothing: a plain read.
        assert!(matches!(
            kind(&record(
                id(Syscall::Pread64),
                wire::F_OFFSET,
                8192,
                [7, 0, 8192, 5005],
                None
            )),
            EventKind::Read { .. }
        ));
        // The flag on a call an io worker does not issue for a handle, or an owner that
        // is no pid: not trusted.
        for (s, owner) in [
            (Syscall::Pwrite64, 5005),
            (Syscall::Read, 5005),
            (Syscall::Pread64, 0),
            (Syscall::Pread64, u64::MAX),
            (Syscall::Pread64, 1 << 40),
        ] {
            let r = record(id(s), f, 8192, [7, 0, 8192, owner], None);
            assert_eq!(decode(&r), Decoded::Garbled, "{s:?} owner {owner}");
        }
    }

    #[test]
    fn syscall_ids_match_events_h() {
        // The PGT_SYS_* defines, parsed from the header the BPF side uses.
        let h = include_str!("../../bpf/events.h");
        let mut n = 0;
        for line in h.lines() {
            let Some(rest) = line.strip_prefix("#define PGT_SYS_") else {
                continue;
            };
            let mut it = rest.split_whitespace();
            let (name, val) = (it.next().unwrap(), it.next().unwrap());
            let val: usize = val.parse().unwrap();
            if name == "COUNT" {
                assert_eq!(val, SYSCALL_BY_ID.len());
                continue;
            }
            let ours = SYSCALL_BY_ID[val];
            let want = match name {
                "FCNTL_DUPFD" => "fcntl".to_string(),
                other => other.to_ascii_lowercase(),
            };
            assert_eq!(ours.name(), want, "PGT_SYS_{name}");
            n += 1;
        }
        assert_eq!(n, SYSCALL_BY_ID.len());
        for (name, val) in [
            ("PGT_HDR_SIZE", wire::HDR_SIZE),
            ("PGT_F_OFFSET", wire::F_OFFSET as usize),
            ("PGT_F_SOCKET", wire::F_SOCKET as usize),
            ("PGT_F_PATH", wire::F_PATH as usize),
            ("PGT_F_AIO_OWNER", wire::F_AIO_OWNER as usize),
            ("PGT_PATH_CAP", wire::PATH_MAX_LEN + 1),
            ("PGT_LOST_COUNT", KERNEL_CAUSES.len()),
        ] {
            let line = h
                .lines()
                .find(|l| l.starts_with(&format!("#define {name} ")))
                .unwrap_or_else(|| panic!("{name} not in events.h"));
            let v = line.split_whitespace().nth(2).unwrap();
            let v = match v.strip_prefix("0x") {
                Some(hex) => usize::from_str_radix(hex, 16).unwrap(),
                None => v.parse().unwrap(),
            };
            assert_eq!(v, val, "{name}");
        }
    }

    #[test]
    fn decodes_open_read_write_send() {
        assert_eq!(
            kind(&record(
                id(Syscall::Openat),
                0,
                7,
                [CWD, 2, 0o600, 0],
                Some(b"base/5/16384")
            )),
            EventKind::Open {
                syscall: Syscall::Openat,
                dirfd: None,
                path: "base/5/16384".into(),
                flags: 2,
                fd: 7
            }
        );
        // An int argument is the register's low 32 bits.
        assert_eq!(
            kind(&record(
                id(Syscall::Openat),
                0,
                -2,
                [0xdead_0000_0000_0009, 0, 0, 0],
                Some(b"x")
            )),
            EventKind::Open {
                syscall: Syscall::Openat,
                dirfd: Some(9),
                path: "x".into(),
                flags: 0,
                fd: -2
            }
        );
        assert_eq!(
            kind(&record(
                id(Syscall::Read),
                wire::F_OFFSET,
                8192,
                [5, 16384, 8192, 0],
                None
            )),
            EventKind::Read {
                syscall: Syscall::Read,
                fd: 5,
                offset: Some(16384),
                requested: 8192,
                result: 8192
            }
        );
        // No offset flag (a pipe, a socket): None.
        assert_eq!(
            kind(&record(id(Syscall::Read), 0, -11, [0, 0, 1, 0], None)),
            EventKind::Read {
                syscall: Syscall::Read,
                fd: 0,
                offset: None,
                requested: 1,
                result: -11
            }
        );
        assert_eq!(
            kind(&record(
                id(Syscall::Writev),
                wire::F_SOCKET,
                10,
                [6, 0, 10, 0],
                None
            )),
            EventKind::Send {
                syscall: Syscall::Writev,
                fd: 6,
                requested: 10,
                result: 10
            }
        );
        assert_eq!(
            kind(&record(
                id(Syscall::Pwrite64),
                wire::F_OFFSET,
                100,
                [3, 10000, 100, 0],
                None
            )),
            EventKind::Write {
                syscall: Syscall::Pwrite64,
                fd: 3,
                offset: Some(10000),
                requested: 100,
                result: 100
            }
        );
    }

    #[test]
    fn decodes_stat_family() {
        // glibc's fstat: newfstatat(fd, "", AT_EMPTY_PATH).
        assert_eq!(
            kind(&record(
                id(Syscall::Newfstatat),
                0,
                0,
                [4, 0x1000, 0, 0],
                Some(b"")
            )),
            EventKind::Stat {
                syscall: Syscall::Newfstatat,
                dirfd: None,
                fd: Some(4),
                path: None,
                result: 0
            }
        );
        assert_eq!(
            kind(&record(
                id(Syscall::Statx),
                0,
                -2,
                [CWD, 0x800, 0, 0],
                Some(b"base/5")
            )),
            EventKind::Stat {
                syscall: Syscall::Statx,
                dirfd: None,
                fd: None,
                path: Some("base/5".into()),
                result: -2
            }
        );
        assert_eq!(
            kind(&record(id(Syscall::Fstat), 0, 0, [3, 0, 0, 0], None)),
            EventKind::Stat {
                syscall: Syscall::Fstat,
                dirfd: None,
                fd: Some(3),
                path: None,
                result: 0
            }
        );
    }

    #[test]
    fn decodes_the_rest() {
        let lseek = record(id(Syscall::Lseek), 0, 8192, [3, 0, 2, 0], None);
        assert_eq!(
            kind(&lseek),
            EventKind::Seek {
                fd: 3,
                offset: 0,
                whence: 2,
                result: 8192
            }
        );
        assert_eq!(
            kind(&record(id(Syscall::Close), 0, 0, [9, 0, 0, 0], None)),
            EventKind::Close { fd: 9 }
        );
        assert_eq!(
            decode(&record(id(Syscall::Close), 0, -EBADF, [9, 0, 0, 0], None)),
            Decoded::Nothing
        );
        for ret in [-512, -513, -514, -516] {
            assert_eq!(
                decode(&record(id(Syscall::Read), 0, ret, [9, 0, 1, 0], None)),
                Decoded::Nothing
            );
        }
        assert_eq!(
            kind(&record(id(Syscall::FcntlDupfd), 0, 100, [3, 0, 0, 0], None)),
            EventKind::Dup {
                syscall: Syscall::FcntlDupfd,
                old_fd: 3,
                new_fd: 100
            }
        );
        assert_eq!(
            kind(&record(
                id(Syscall::Unlink),
                0,
                0,
                [CWD, 0, 0, 0],
                Some(b"pg_wal/x")
            )),
            EventKind::Unlink {
                syscall: Syscall::Unlink,
                dirfd: None,
                path: "pg_wal/x".into(),
                result: 0
            }
        );
        assert_eq!(
            kind(&record(
                id(Syscall::Truncate),
                0,
                0,
                [0, 4096, 0, 0],
                Some(b"f")
            )),
            EventKind::Truncate {
                syscall: Syscall::Truncate,
                fd: None,
                path: Some("f".into()),
                length: 4096,
                result: 0
            }
        );
        assert_eq!(
            kind(&record(
                id(Syscall::Fadvise64),
                0,
                0,
                [3, 8192, 65536, 3],
                None
            )),
            EventKind::Fadvise {
                fd: 3,
                offset: 8192,
                len: 65536,
                advice: 3
            }
        );
        assert_eq!(
            kind(&record(
                id(Syscall::Getdents64),
                0,
                480,
                [3, 0, 32768, 0],
                None
            )),
            EventKind::ReadDir { fd: 3, result: 480 }
        );
        // Non-UTF-8 path bytes survive as replacement characters.
        assert_eq!(
            kind(&record(
                id(Syscall::Openat),
                0,
                3,
                [CWD, 0, 0, 0],
                Some(b"a\xffb")
            )),
            EventKind::Open {
                syscall: Syscall::Openat,
                dirfd: None,
                path: "a\u{fffd}b".into(),
                flags: 0,
                fd: 3
            }
        );
    }

    #[test]
    fn garbled_records_are_rejected() {
        let good = record(id(Syscall::Read), 0, 1, [0, 0, 1, 0], None);
        assert!(matches!(decode(&good), Decoded::Event(_)));
        // Short, long.
        for n in 0..good.len() {
            assert_eq!(decode(&good[..n]), Decoded::Garbled, "{n} bytes");
        }
        let mut long = good.clone();
        long.push(0);
        assert_eq!(decode(&long), Decoded::Garbled);
        // Unknown syscall id.
        assert_eq!(
            decode(&record(SYSCALL_BY_ID.len() as u16, 0, 0, [0; 4], None)),
            Decoded::Garbled
        );
        // A path where none belongs, none where one does.
        assert_eq!(
            decode(&record(id(Syscall::Read), 0, 0, [0; 4], Some(b"x"))),
            Decoded::Garbled
        );
        assert_eq!(
            decode(&record(id(Syscall::Openat), 0, 0, [0; 4], None)),
            Decoded::Garbled
        );
        // path_len disagreeing with the record size, or over the cap.
        let mut r = record(id(Syscall::Openat), 0, 0, [0; 4], Some(b"abc"));
        r.pop();
        assert_eq!(decode(&r), Decoded::Garbled);
        let mut r = record(id(Syscall::Openat), 0, 0, [0; 4], Some(&[b'a'; 4096]));
        assert_eq!(decode(&r), Decoded::Garbled);
        r.truncate(wire::HDR_SIZE + 4095);
        r[wire::OFF_PATH_LEN..wire::OFF_PATH_LEN + 4].copy_from_slice(&4095u32.to_le_bytes());
        assert!(matches!(decode(&r), Decoded::Event(_)));
        // path_len set without the path flag.
        let mut r = good.clone();
        r[wire::OFF_PATH_LEN] = 1;
        assert_eq!(decode(&r), Decoded::Garbled);
    }

    #[test]
    fn ring_callback_counts_garbled() {
        SINK.with(|s| *s.borrow_mut() = Sink::default());
        assert_eq!(on_record(&[1, 2, 3]), 0);
        assert_eq!(
            on_record(&record(id(Syscall::Close), 0, 0, [1, 0, 0, 0], None)),
            0
        );
        SINK.with(|s| {
            let s = s.borrow();
            assert_eq!(s.garbled, 1);
            assert_eq!(s.events.len(), 1);
        });
    }

    proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&data);
        }

        #[test]
        fn decode_never_panics_on_plausible_headers(
            sc in 0u16..40,
            flags in any::<u16>(),
            ret in any::<i64>(),
            a in any::<[u64; 4]>(),
            path in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
            path_len in proptest::option::of(any::<u32>()),
        ) {
            let mut r = record(sc, flags, ret, a, path.as_deref());
            if let Some(n) = path_len {
                r[wire::OFF_PATH_LEN..wire::OFF_PATH_LEN + 4].copy_from_slice(&n.to_le_bytes());
            }
            let _ = decode(&r);
        }
    }
}
