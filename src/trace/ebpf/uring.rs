//! io_uring requests, the user side of the io_uring section of `bpf/syscalls.bpf.c`.
//!
//! A read submitted through io_uring (PostgreSQL 18 with io_method=io_uring, fio) passes no
//! read system call: the BPF programs on `io_uring_submit_req` and `io_uring_complete`
//! record, per request of a traced process (the one that submitted it, or whose SQPOLL
//! thread did), its opcode, fd, offset and length at submission and its result and file at
//! completion, into the same ring buffer as the system calls (so that it is ordered with
//! the opens and closes around it). Here: whether this kernel has those tracepoints,
//! attaching them, and decoding a record into an ordinary [`EventKind::Read`] or
//! [`EventKind::Write`] on the submitter's fd, which the model credits like `pread64`.
//!
//! A registered ("fixed") file is named in the request by its index in the ring's file
//! table, which means nothing outside the ring; the record also carries the file's device
//! and inode, and the read is put on the submitter's open descriptor of that inode, found
//! in `/proc/PID/fd`. A registered file the process no longer holds open under any
//! descriptor cannot be named: its reads are counted as lost ([`UNNAMED`]), never guessed.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use libbpf_rs::btf::types::{FuncProto, Ptr, Struct};
use libbpf_rs::btf::{Btf, BtfType, ReferencesType};
use libbpf_rs::Link;

use super::skel::{OpenSyscallsSkel, SyscallsSkel};
use super::{le_u16, le_u32, le_u64, wire, Decoded};
use crate::trace::{Event, EventKind, Pid, Syscall};

/// `PGT_URING_BASE` of `bpf/events.h`: the first record id of an io_uring request.
pub(super) const URING_BASE: u16 = 64;

/// `PGT_URING_*` of `bpf/events.h`, from [`URING_BASE`], in order.
pub(super) const OPS: [Syscall; 8] = [
    Syscall::IoUringRead,
    Syscall::IoUringReadv,
    Syscall::IoUringReadFixed,
    Syscall::IoUringReadvFixed,
    Syscall::IoUringWrite,
    Syscall::IoUringWritev,
    Syscall::IoUringWriteFixed,
    Syscall::IoUringWritevFixed,
];

/// `PGT_F_URING_FIXED`: the fd is an index into the ring's registered files.
pub(super) const F_FIXED: u16 = 0x0080;
/// `PGT_F_URING_NOFILE`: the request completed without a file (it failed before issue).
pub(super) const F_NOFILE: u16 = 0x0100;

/// The lost-event cause of reads of a registered file no descriptor of the process holds.
pub(super) const UNNAMED: &str =
    "io_uring request on a registered file with no open descriptor (not named)";

/// The tracepoints, each with its argument count (after the tracepoint's own context).
const TRACEPOINTS: [(&str, usize); 2] = [("io_uring_submit_req", 1), ("io_uring_complete", 3)];

/// Whether this kernel has what the io_uring programs were built against: both
/// tracepoints with the prototypes it was built against (`submit_req(req)`,
/// `complete(ctx, req, cqe)`, as on 6.18) and `struct io_rw`. Checked on the kernel's BTF before loading, since
/// a program that cannot load would take the whole object down with it.
pub(super) fn kernel_support() -> Result<(), String> {
    let btf = Btf::from_vmlinux().map_err(|e| format!("the kernel's BTF cannot be read ({e})"))?;
    for (tp, args) in TRACEPOINTS {
        let t: BtfType = btf
            .type_by_name(&format!("btf_trace_{tp}"))
            .ok_or_else(|| format!("the kernel has no {tp} tracepoint"))?;
        let proto = Ptr::try_from(t.skip_mods_and_typedefs())
            .ok()
            .and_then(|p| FuncProto::try_from(p.referenced_type()).ok())
            .ok_or_else(|| format!("the kernel's {tp} tracepoint is not a function"))?;
        // The first parameter is the tracepoint's own `void *__data`.
        if proto.len() != args + 1 {
            return Err(format!(
                "the kernel's {tp} tracepoint has another prototype ({} arguments, not {args})",
                proto.len().saturating_sub(1)
            ));
        }
    }
    btf.type_by_name::<Struct>("io_rw")
        .ok_or_else(|| "the kernel's io_uring has no struct io_rw".to_string())?;
    Ok(())
}

/// Before loading: the io_uring programs are loaded only where they can be.
pub(super) fn configure(open: &mut OpenSyscallsSkel<'_>, supported: bool) {
    open.progs.pgt_uring_submit.set_autoload(supported);
    open.progs.pgt_uring_complete.set_autoload(supported);
}

/// The attached io_uring programs, or why there are none.
pub(super) struct UringCapture {
    /// Completion, then submission (a request submitted after the completion program is
    /// gone only waits in the LRU map until it ages out).
    links: Vec<Link>,
    why_not: Option<String>,
}

impl UringCapture {
    /// Attaches both programs, or neither. Never fails the tracer: without them only the
    /// io_uring requests are missing, which `availability` says.
    pub(super) fn attach(skel: &SyscallsSkel<'static>, support: Result<(), String>) -> Self {
        if let Err(why) = support {
            return UringCapture {
                links: Vec::new(),
                why_not: Some(why),
            };
        }
        let attach = || -> anyhow::Result<Vec<Link>> {
            let complete = skel.progs.pgt_uring_complete.attach()?;
            let submit = skel.progs.pgt_uring_submit.attach()?;
            Ok(vec![complete, submit])
        };
        match attach() {
            Ok(links) => UringCapture {
                links,
                why_not: None,
            },
            Err(e) => {
                let detail = crate::trace::libbpf::last_message().unwrap_or_else(|| e.to_string());
                UringCapture {
                    links: Vec::new(),
                    why_not: Some(format!(
                        "attaching to the io_uring tracepoints failed ({detail})"
                    )),
                }
            }
        }
    }

    /// Ok when io_uring requests are captured, else why not.
    pub(super) fn availability(&self) -> Result<(), String> {
        match &self.why_not {
            None if !self.links.is_empty() => Ok(()),
            None => Err("the io_uring programs are detached".into()),
            Some(why) => Err(why.clone()),
        }
    }

    pub(super) fn detach(&mut self) {
        self.links.clear();
    }
}

/// A request on a registered file: named through the submitter's descriptors
/// ([`name_fixed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Fixed {
    ts_ns: u64,
    pid: Pid,
    syscall: Syscall,
    /// The kernel's dev_t of the file (major << 20 | minor) and its inode.
    dev: u32,
    ino: u64,
    offset: Option<u64>,
    requested: u64,
    result: i64,
}

impl Fixed {
    fn on_fd(&self, fd: i32) -> Event {
        Event {
            ts_ns: self.ts_ns,
            pid: self.pid,
            kind: transfer(self.syscall, fd, self.offset, self.requested, self.result),
        }
    }
}

fn transfer(
    syscall: Syscall,
    fd: i32,
    offset: Option<u64>,
    requested: u64,
    result: i64,
) -> EventKind {
    if syscall.is_write() {
        EventKind::Write {
            syscall,
            fd,
            offset,
            requested,
            result,
        }
    } else {
        EventKind::Read {
            syscall,
            fd,
            offset,
            requested,
            result,
        }
    }
}

/// A record whose id is an io_uring request's; None for any other id. Never panics.
pub(super) fn decode(data: &[u8]) -> Option<Decoded> {
    let id = le_u16(data, wire::OFF_SYSCALL)?;
    let op = *OPS.get(usize::from(id.checked_sub(URING_BASE)?))?;
    Some(decode_op(data, op).unwrap_or(Decoded::Garbled))
}

fn decode_op(data: &[u8], syscall: Syscall) -> Option<Decoded> {
    use wire::*;
    if data.len() != HDR_SIZE || le_u32(data, OFF_PATH_LEN)? != 0 {
        return None;
    }
    let flags = le_u16(data, OFF_FLAGS)?;
    // Flags of system-call records: never set on these.
    if flags & (F_PATH | F_SOCKET | F_AIO_OWNER) != 0 {
        return None;
    }
    let pid = Pid::try_from(le_u32(data, OFF_TGID)?)
        .ok()
        .filter(|p| *p > 0)?;
    let ts_ns = le_u64(data, OFF_TS)?;
    let result = le_u64(data, OFF_RET)? as i64;
    // The CQE's res is an s32.
    if i32::try_from(result).is_err() {
        return None;
    }
    let a0 = le_u64(data, OFF_A0)?;
    let fd = a0 as u32 as i32;
    let offset = (flags & F_OFFSET != 0).then_some(le_u64(data, OFF_A1)?);
    let requested = le_u64(data, OFF_A2)?;
    if flags & F_FIXED != 0 {
        if flags & F_NOFILE != 0 {
            // Failed before it had a file: nothing was read, and nothing names it.
            return Some(Decoded::Nothing);
        }
        return Some(Decoded::UringFixed(Fixed {
            ts_ns,
            pid,
            syscall,
            dev: (a0 >> 32) as u32,
            ino: le_u64(data, OFF_A3)?,
            offset,
            requested,
            result,
        }));
    }
    if fd < 0 {
        // A request on no descriptor fails (-EBADF) and reads nothing.
        return Some(Decoded::Nothing);
    }
    Some(Decoded::Event(Event {
        ts_ns,
        pid,
        kind: transfer(syscall, fd, offset, requested, result),
    }))
}

/// The kernel's dev_t (`MKDEV`: major << 20 | minor) of a user-space `st_dev`.
fn kernel_dev(st_dev: u64) -> u32 {
    (libc::major(st_dev) << 20) | (libc::minor(st_dev) & 0xf_ffff)
}

/// How long a descriptor found for an inode is trusted without looking again (a close,
/// dup onto it or open of that number, all seen in the same ring buffer ahead of any later
/// request, forgets it at once: [`observe`]; this catches what is not traced, such as
/// close_range), and how long an inode no descriptor holds is not looked for again.
const RECHECK: Duration = Duration::from_secs(5);
const RETRY_MISSING: Duration = Duration::from_secs(1);
/// More entries than this: forget them all (files of exited processes).
const MAX_ENTRIES: usize = 4096;

/// Which descriptor of a process holds an inode, from `/proc/PID/fd`.
#[derive(Default)]
struct FdsByInode {
    found: HashMap<(Pid, u32, u64), (Option<i32>, Instant)>,
}

impl FdsByInode {
    fn forget_fd(&mut self, pid: Pid, fd: i32) {
        self.found
            .retain(|k, v| !(k.0 == pid && (v.0 == Some(fd) || v.0.is_none())));
    }

    fn fd_of(&mut self, pid: Pid, dev: u32, ino: u64, now: Instant) -> Option<i32> {
        let key = (pid, dev, ino);
        if let Some(&(fd, at)) = self.found.get(&key) {
            let age = now.saturating_duration_since(at);
            match fd {
                Some(_) if age < RECHECK => return fd,
                None if age < RETRY_MISSING => return None,
                Some(fd) if holds(pid, fd, dev, ino) => {
                    self.found.insert(key, (Some(fd), now));
                    return Some(fd);
                }
                _ => {}
            }
        }
        if self.found.len() >= MAX_ENTRIES {
            self.found.clear();
        }
        let fd = scan(pid, dev, ino);
        self.found.insert(key, (fd, now));
        fd
    }
}

/// Whether descriptor `fd` of `pid` is that inode now.
fn holds(pid: Pid, fd: i32, dev: u32, ino: u64) -> bool {
    std::fs::metadata(format!("/proc/{pid}/fd/{fd}"))
        .is_ok_and(|md| md.ino() == ino && kernel_dev(md.dev()) == dev)
}

/// The lowest descriptor of `pid` that holds the inode.
fn scan(pid: Pid, dev: u32, ino: u64) -> Option<i32> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&fd| holds(pid, fd, dev, ino))
        .min()
}

thread_local! {
    /// On the thread that drains the ring buffer, like the sink (see `SINK` in ebpf.rs).
    static FDS: RefCell<FdsByInode> = RefCell::new(FdsByInode::default());
}

/// A request on a registered file, on the submitter's descriptor of that file; None when
/// no descriptor of the process holds it (counted as [`UNNAMED`]).
pub(super) fn name_fixed(f: &Fixed) -> Option<Event> {
    let fd = FDS.with(|c| c.borrow_mut().fd_of(f.pid, f.dev, f.ino, Instant::now()))?;
    Some(f.on_fd(fd))
}

/// A record decoded in ring order: a descriptor closed, or replaced, no longer holds what
/// it held. (The completions of requests on it came earlier in the ring: they were named
/// before this.)
pub(super) fn observe(ev: &Event) {
    let fd = match ev.kind {
        EventKind::Close { fd } => fd,
        EventKind::Dup { new_fd, .. } => new_fd,
        EventKind::Open { fd, .. } if fd >= 0 => fd,
        _ => return,
    };
    FDS.with(|c| {
        let mut c = c.borrow_mut();
        if !c.found.is_empty() {
            c.forget_fd(ev.pid, fd);
        }
    });
}

/// Forgets what was found for a process (it exited: its pid may be reused).
pub(super) fn forget(pid: Pid) {
    FDS.with(|c| c.borrow_mut().found.retain(|k, _| k.0 != pid));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A record as the io_uring completion program writes it.
    #[allow(clippy::too_many_arguments)]
    fn record(
        op: u16,
        flags: u16,
        ret: i64,
        fd: i32,
        dev: u32,
        off: u64,
        req: u64,
        ino: u64,
    ) -> Vec<u8> {
        let mut r = Vec::with_capacity(wire::HDR_SIZE);
        r.extend_from_slice(&987_654_321u64.to_le_bytes());
        r.extend_from_slice(&4242u32.to_le_bytes());
        r.extend_from_slice(&(URING_BASE + op).to_le_bytes());
        r.extend_from_slice(&flags.to_le_bytes());
        r.extend_from_slice(&ret.to_le_bytes());
        r.extend_from_slice(&((u64::from(dev) << 32) | u64::from(fd as u32)).to_le_bytes());
        r.extend_from_slice(&off.to_le_bytes());
        r.extend_from_slice(&req.to_le_bytes());
        r.extend_from_slice(&ino.to_le_bytes());
        r.extend_from_slice(&0u32.to_le_bytes());
        r.extend_from_slice(&4243u32.to_le_bytes());
        assert_eq!(r.len(), wire::HDR_SIZE);
        r
    }

    fn event(d: Option<Decoded>) -> Event {
        match d {
            Some(Decoded::Event(e)) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ids_and_flags_match_events_h() {
        let h = include_str!("../../../bpf/events.h");
        let val = |name: &str| -> u64 {
            let line = h
                .lines()
                .find(|l| l.starts_with(&format!("#define {name} ")))
                .unwrap_or_else(|| panic!("{name} not in events.h"));
            let v = line.split_whitespace().nth(2).unwrap();
            match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
                None => v.parse().unwrap(),
            }
        };
        assert_eq!(val("PGT_URING_BASE"), u64::from(URING_BASE));
        assert_eq!(val("PGT_URING_COUNT"), OPS.len() as u64);
        for (i, op) in OPS.iter().enumerate() {
            let name = op
                .name()
                .trim_start_matches("io_uring_")
                .to_ascii_uppercase();
            assert_eq!(
                val(&format!("PGT_URING_{name}")),
                u64::from(URING_BASE) + i as u64
            );
        }
        assert_eq!(val("PGT_F_URING_FIXED"), u64::from(F_FIXED));
        assert_eq!(val("PGT_F_URING_NOFILE"), u64::from(F_NOFILE));
        // Ids past the system calls': the two ranges never meet.
        assert!(val("PGT_SYS_COUNT") <= u64::from(URING_BASE));
    }

    #[test]
    fn reads_and_writes_on_the_submitters_fd() {
        let e = event(decode(&record(
            1,
            wire::F_OFFSET,
            131072,
            23,
            0x80_0001,
            1 << 30,
            131072,
            99,
        )));
        assert_eq!((e.ts_ns, e.pid), (987_654_321, 4242));
        assert_eq!(
            e.kind,
            EventKind::Read {
                syscall: Syscall::IoUringReadv,
                fd: 23,
                offset: Some(1 << 30),
                requested: 131072,
                result: 131072
            }
        );
        // Offset -1 in the SQE: at the file position, no offset.
        assert_eq!(
            event(decode(&record(0, 0, 100, 5, 0, 0, 8192, 0))).kind,
            EventKind::Read {
                syscall: Syscall::IoUringRead,
                fd: 5,
                offset: None,
                requested: 8192,
                result: 100
            }
        );
        assert_eq!(
            event(decode(&record(6, wire::F_OFFSET, -5, 7, 0, 8192, 8192, 0))).kind,
            EventKind::Write {
                syscall: Syscall::IoUringWriteFixed,
                fd: 7,
                offset: Some(8192),
                requested: 8192,
                result: -5
            }
        );
    }

    #[test]
    fn registered_files_wait_to_be_named() {
        let r = record(
            2,
            wire::F_OFFSET | F_FIXED,
            8192,
            3,
            0x80_0001,
            16384,
            8192,
            77,
        );
        let Some(Decoded::UringFixed(f)) = decode(&r) else {
            panic!("not a fixed-file request");
        };
        assert_eq!((f.dev, f.ino, f.offset), (0x80_0001, 77, Some(16384)));
        assert_eq!(
            f.on_fd(12).kind,
            EventKind::Read {
                syscall: Syscall::IoUringReadFixed,
                fd: 12,
                offset: Some(16384),
                requested: 8192,
                result: 8192
            }
        );
        // Failed before it had a file.
        let r = record(0, F_FIXED | F_NOFILE, -9, 3, 0, 0, 8192, 0);
        assert_eq!(decode(&r), Some(Decoded::Nothing));
    }

    #[test]
    fn not_ours_or_garbled() {
        // A system call's id: not an io_uring record.
        let mut r = record(0, 0, 1, 3, 0, 0, 1, 0);
        r[wire::OFF_SYSCALL..wire::OFF_SYSCALL + 2].copy_from_slice(&8u16.to_le_bytes());
        assert_eq!(decode(&r), None);
        r[wire::OFF_SYSCALL..wire::OFF_SYSCALL + 2]
            .copy_from_slice(&(URING_BASE + OPS.len() as u16).to_le_bytes());
        assert_eq!(decode(&r), None);
        let good = record(0, 0, 1, 3, 0, 0, 1, 0);
        for n in 0..good.len() {
            if n >= wire::OFF_SYSCALL + 2 {
                assert_eq!(decode(&good[..n]), Some(Decoded::Garbled), "{n} bytes");
            }
        }
        let mut long = good.clone();
        long.push(0);
        assert_eq!(decode(&long), Some(Decoded::Garbled));
        for bad in [
            record(0, wire::F_PATH, 1, 3, 0, 0, 1, 0),
            record(0, wire::F_AIO_OWNER, 1, 3, 0, 0, 1, 0),
            record(0, 0, 1 << 40, 3, 0, 0, 1, 0),
        ] {
            assert_eq!(decode(&bad), Some(Decoded::Garbled));
        }
        assert_eq!(
            decode(&record(0, 0, -9, -1, 0, 0, 1, 0)),
            Some(Decoded::Nothing)
        );
        let mut r = good;
        r[wire::OFF_TGID..wire::OFF_TGID + 4].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(decode(&r), Some(Decoded::Garbled));
    }

    /// Our own descriptors, found by inode as a registered file's are.
    #[test]
    fn descriptors_by_inode() {
        let dir = std::env::temp_dir().join(format!("pg_trace_uring_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::write(&path, b"x").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let md = file.metadata().unwrap();
        let (dev, ino) = (kernel_dev(md.dev()), md.ino());
        let me = std::process::id() as Pid;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        let mut c = FdsByInode::default();
        let t0 = Instant::now();
        assert_eq!(c.fd_of(me, dev, ino, t0), Some(fd));
        // Closed unseen: still trusted for a while, then looked for again and not found.
        drop(file);
        assert_eq!(c.fd_of(me, dev, ino, t0), Some(fd));
        assert_eq!(c.fd_of(me, dev, ino, t0 + RECHECK), None);
        // Reopened (another number, maybe): found again once the close or open is seen.
        let file = std::fs::File::open(&path).unwrap();
        let fd2 = std::os::fd::AsRawFd::as_raw_fd(&file);
        assert_eq!(c.fd_of(me, dev, ino, t0 + RECHECK), None);
        c.forget_fd(me, fd2);
        assert_eq!(c.fd_of(me, dev, ino, t0 + RECHECK), Some(fd2));
        c.forget_fd(me, fd2);
        assert!(c.found.is_empty());
        drop(file);
        assert_eq!(c.fd_of(me, dev, ino.wrapping_add(1), t0), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn kernel_dev_numbers() {
        assert_eq!(kernel_dev(libc::makedev(8, 1)), (8 << 20) | 1);
        assert_eq!(kernel_dev(libc::makedev(259, 70000)), (259 << 20) | 70000);
    }

    proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode(&data);
        }

        #[test]
        fn decode_never_panics_on_plausible_records(
            op in 0u16..12, flags in any::<u16>(), ret in any::<i64>(), fd in any::<i32>(),
            dev in any::<u32>(), off in any::<u64>(), req in any::<u64>(), ino in any::<u64>(),
        ) {
            let _ = decode(&record(op, flags, ret, fd, dev, off, req, ino));
        }
    }
}
