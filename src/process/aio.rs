//! PostgreSQL 18 asynchronous I/O, as far as attributing an io worker's reads needs it.
//!
//! With io_method=worker the `io worker N` processes execute the reads that every backend
//! stages as AIO handles (`PgAioHandle`, in shared memory at `pgaio_ctl->io_handles`).
//! Whose read a worker is doing is in the handle: `owner_procno`, the issuing backend's
//! ProcNumber (what the `pg_aios` view shows as its pid). A worker says which handle it
//! executes through `error_context_stack`: IoWorkerMain (method_worker.c) pushes one
//! ErrorContextCallback whose `arg` is the handle while pgaio_io_perform_synchronously()
//! runs, and NULL between I/Os. The BPF program follows those pointers at the exit of the
//! worker's read; this module finds the addresses and offsets it needs, and reads the
//! ProcNumber (`MyProcNumber`) of each traced process.
//!
//! With io_method=io_uring the backend submits its reads to an io_uring itself: which
//! method a server runs with is read here ([`io_method`]); the reads are captured by the
//! eBPF tracer's io_uring programs.
//!
//! Everything read from the process is hostile: sizes and pointers are checked before use.

use super::memory::{load_bias, maps, MemError, ProcMem, Symbols};
use super::proc::Pid;

/// Where the fields are, for one major (the AIO structs exist on 18 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AioLayout {
    /// sizeof(PgAioHandle).
    pub handle_size: u64,
    /// offsetof(PgAioHandle, owner_procno), an int32.
    pub owner_procno: u64,
    /// offsetof(PgAioCtl, io_handle_count), a uint32.
    pub ctl_handle_count: u64,
    /// offsetof(PgAioCtl, io_handles), a pointer.
    pub ctl_handles: u64,
    /// offsetof(ErrorContextCallback, arg): after `previous` and `callback`.
    pub errcb_arg: u64,
    /// sizeof(PGPROC).
    pub proc_size: u64,
    /// offsetof(PGPROC, lockGroupLeader): a parallel worker's points to its leader's.
    pub proc_group_leader: u64,
    /// offsetof(PROC_HDR, allProcs), the PGPROC array `ProcGlobal` points to.
    pub procglobal_all_procs: u64,
}

/// By major. 18: aio_internal.h of REL_18_STABLE (PgAioHandle: 8 uint8 fields and two
/// uint8[PGAIO_HANDLE_MAX_CALLBACKS = 4] arrays, then owner_procno at 16; 144 bytes in
/// all, which pgaio_io_get_id()'s division by 144 in 18.4's binary confirms). PGPROC: 832
/// bytes, lockGroupLeader at 792, allProcs first in PROC_HDR, as BecomeLockGroupMember()
/// of 18.4 uses them.
const LAYOUTS: &[(u32, AioLayout)] = &[(
    18,
    AioLayout {
        handle_size: 144,
        owner_procno: 16,
        ctl_handle_count: 40,
        ctl_handles: 48,
        errcb_arg: 16,
        proc_size: 832,
        proc_group_leader: 792,
        procglobal_all_procs: 0,
    },
)];

pub fn layout(major: u32) -> Option<AioLayout> {
    LAYOUTS.iter().find(|(m, _)| *m == major).map(|(_, l)| *l)
}

/// More handles than this is not a PgAioCtl (max_connections × io_max_concurrency is
/// far below it on any real server).
const MAX_HANDLES: u64 = 1 << 22;

/// What the BPF program needs to find the handle a worker is executing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerProbe {
    /// Address of `error_context_stack` in the worker.
    pub ecs_addr: u64,
    /// The io_handles array: [lo, hi).
    pub handles_lo: u64,
    pub handles_hi: u64,
    pub handle_size: u32,
    pub owner_off: u32,
    pub arg_off: u32,
    /// The PGPROC array, its element size and where lockGroupLeader is in one.
    pub procs: u64,
    pub proc_size: u32,
    pub group_off: u32,
}

impl WorkerProbe {
    /// Address of the PGPROC of ProcNumber `n`.
    pub fn proc_addr(&self, n: u32) -> u64 {
        self.procs
            .wrapping_add(u64::from(n).wrapping_mul(u64::from(self.proc_size)))
    }
}

/// The io_handles array `[lo, hi)` from the bytes of a PgAioCtl, or None when they do not
/// describe one (no handles, too many, a null or wrapping pointer).
pub fn handles_range(ctl: &[u8], l: &AioLayout) -> Option<(u64, u64)> {
    let at = |off: u64, n: usize| -> Option<&[u8]> {
        let off = usize::try_from(off).ok()?;
        ctl.get(off..off.checked_add(n)?)
    };
    let count = u64::from(u32::from_ne_bytes(
        at(l.ctl_handle_count, 4)?.try_into().ok()?,
    ));
    let lo = u64::from_ne_bytes(at(l.ctl_handles, 8)?.try_into().ok()?);
    if count == 0 || count > MAX_HANDLES || lo == 0 {
        return None;
    }
    let hi = lo.checked_add(count.checked_mul(l.handle_size)?)?;
    Some((lo, hi))
}

/// The major of a PostgreSQL process: `PG_VERSION` of its working directory, which is
/// the data directory. Read with a cap, and only if it is a regular file.
pub fn process_major(pid: Pid) -> Option<u32> {
    use std::io::Read;
    let path = format!("/proc/{pid}/cwd/PG_VERSION");
    if !std::fs::metadata(&path).ok()?.is_file() {
        return None;
    }
    let mut buf = [0u8; 16];
    let n = std::fs::File::open(&path).ok()?.read(&mut buf).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
}

/// One process's symbols, load bias and memory, with the AIO layout of its major.
struct Target {
    mem: ProcMem,
    syms: std::sync::Arc<Symbols>,
    bias: u64,
    layout: AioLayout,
}

impl Target {
    /// None when the process has no AIO (not 18, or not PostgreSQL).
    fn open(pid: Pid) -> Result<Option<Target>, MemError> {
        let Some(layout) = process_major(pid).and_then(layout) else {
            return Ok(None);
        };
        let syms = Symbols::load(pid)?;
        if syms.get("pgaio_ctl").is_none() {
            return Ok(None);
        }
        let bias = load_bias(pid, &maps(pid)?, &syms)?;
        Ok(Some(Target {
            mem: ProcMem::open(pid)?,
            syms,
            bias,
            layout,
        }))
    }

    fn addr(&self, name: &str) -> Result<u64, MemError> {
        self.syms
            .get(name)
            .map(|a| a.wrapping_add(self.bias))
            .ok_or_else(|| MemError::Layout {
                pid: self.mem.pid,
                what: format!("no symbol {name}"),
            })
    }
}

/// `MyProcNumber` of a PostgreSQL 18 process (its PGPROC index, the `owner_procno` of the
/// AIO handles it issues). None on other majors; an error if it cannot be read or is not
/// set yet.
pub fn proc_number(pid: Pid) -> Result<Option<u32>, MemError> {
    let Some(t) = Target::open(pid)? else {
        return Ok(None);
    };
    let n = t.mem.read_u32(t.addr("MyProcNumber")?)? as i32;
    // INVALID_PROC_NUMBER (-1): not attached to shared memory yet.
    u32::try_from(n).map(Some).map_err(|_| MemError::Layout {
        pid,
        what: format!("MyProcNumber is {n}"),
    })
}

/// Where an io worker keeps the handle it executes. None on other majors.
pub fn worker_probe(pid: Pid) -> Result<Option<WorkerProbe>, MemError> {
    let Some(t) = Target::open(pid)? else {
        return Ok(None);
    };
    let l = t.layout;
    let ctl = t.mem.read_u64(t.addr("pgaio_ctl")?)?;
    if ctl == 0 {
        return Err(MemError::Layout {
            pid,
            what: "pgaio_ctl is not set".into(),
        });
    }
    let bytes = t.mem.read_vec(ctl, (l.ctl_handles + 8) as usize)?;
    let (lo, hi) = handles_range(&bytes, &l).ok_or_else(|| MemError::Layout {
        pid,
        what: "pgaio_ctl does not describe AIO handles".into(),
    })?;
    // The first and last handle must be readable memory of this process.
    t.mem.read_vec(lo, 8)?;
    t.mem.read_vec(hi - l.handle_size, 8)?;
    let proc_global = t.mem.read_u64(t.addr("ProcGlobal")?)?;
    let procs = t
        .mem
        .read_u64(proc_global.wrapping_add(l.procglobal_all_procs))?;
    // The first PGPROC must be readable memory of this process.
    t.mem.read_vec(procs, l.proc_size as usize)?;
    Ok(Some(WorkerProbe {
        ecs_addr: t.addr("error_context_stack")?,
        handles_lo: lo,
        handles_hi: hi,
        handle_size: l.handle_size as u32,
        owner_off: l.owner_procno as u32,
        arg_off: l.errcb_arg as u32,
        procs,
        proc_size: l.proc_size as u32,
        group_off: l.proc_group_leader as u32,
    }))
}

/// PostgreSQL 18's `io_method` setting (`enum IoMethod` of storage/aio.h): how the
/// server performs the reads its backends stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoMethod {
    /// The backend reads itself (pread64/preadv).
    Sync,
    /// `io worker N` processes read for every backend.
    Worker,
    /// The backend submits to an io_uring; no read system call of its own moves the data.
    IoUring,
}

impl IoMethod {
    /// The value of the `io_method` variable: IOMETHOD_SYNC 0, IOMETHOD_WORKER 1,
    /// IOMETHOD_IO_URING 2 (present only in builds with liburing). Anything else is not
    /// this variable.
    pub fn from_value(v: i32) -> Option<IoMethod> {
        match v {
            0 => Some(IoMethod::Sync),
            1 => Some(IoMethod::Worker),
            2 => Some(IoMethod::IoUring),
            _ => None,
        }
    }

    /// As `postgresql.conf` spells it.
    pub fn name(self) -> &'static str {
        match self {
            IoMethod::Sync => "sync",
            IoMethod::Worker => "worker",
            IoMethod::IoUring => "io_uring",
        }
    }
}

/// The `io_method` a PostgreSQL 18 process runs with (a PGC_POSTMASTER setting: the same
/// in every process of the server). None on other majors; an error when it cannot be read
/// or holds no known value.
pub fn io_method(pid: Pid) -> Result<Option<IoMethod>, MemError> {
    let Some(t) = Target::open(pid)? else {
        return Ok(None);
    };
    let v = t.mem.read_u32(t.addr("io_method")?)? as i32;
    IoMethod::from_value(v)
        .map(Some)
        .ok_or_else(|| MemError::Layout {
            pid,
            what: format!("io_method is {v}"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctl(count: u32, handles: u64) -> Vec<u8> {
        let mut b = vec![0u8; 56];
        b[40..44].copy_from_slice(&count.to_ne_bytes());
        b[48..56].copy_from_slice(&handles.to_ne_bytes());
        b
    }

    #[test]
    fn layout_only_on_18() {
        assert!(layout(17).is_none());
        assert!(layout(19).is_none());
        let l = layout(18).unwrap();
        assert_eq!((l.handle_size, l.owner_procno), (144, 16));
    }

    #[test]
    fn handle_array_from_ctl() {
        let l = layout(18).unwrap();
        assert_eq!(
            handles_range(&ctl(10, 0x7f00_0000_0000), &l),
            Some((0x7f00_0000_0000, 0x7f00_0000_0000 + 1440))
        );
        assert_eq!(handles_range(&ctl(0, 0x1000), &l), None);
        assert_eq!(handles_range(&ctl(10, 0), &l), None);
        assert_eq!(handles_range(&ctl(u32::MAX, 0x1000), &l), None);
        assert_eq!(handles_range(&ctl(10, u64::MAX - 100), &l), None);
        assert_eq!(handles_range(&ctl(10, 0x1000)[..50], &l), None);
    }

    #[test]
    fn pgproc_addresses() {
        let w = WorkerProbe {
            ecs_addr: 0,
            handles_lo: 0,
            handles_hi: 0,
            handle_size: 144,
            owner_off: 16,
            arg_off: 16,
            procs: 0x7f00_0000_0000,
            proc_size: 832,
            group_off: 792,
        };
        assert_eq!(w.proc_addr(0), 0x7f00_0000_0000);
        assert_eq!(w.proc_addr(3), 0x7f00_0000_0000 + 3 * 832);
        // A hostile ProcNumber wraps; the BPF read of it fails, it does not panic here.
        let _ = w.proc_addr(u32::MAX);
    }

    proptest::proptest! {
        #[test]
        fn ctl_decoding_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let l = layout(18).unwrap();
            if let Some((lo, hi)) = handles_range(&bytes, &l) {
                proptest::prop_assert!(lo < hi);
            }
        }
    }

    #[test]
    fn io_methods_by_value() {
        assert_eq!(IoMethod::from_value(0), Some(IoMethod::Sync));
        assert_eq!(IoMethod::from_value(1), Some(IoMethod::Worker));
        assert_eq!(IoMethod::from_value(2), Some(IoMethod::IoUring));
        assert_eq!(IoMethod::IoUring.name(), "io_uring");
        for v in [-1, 3, i32::MAX] {
            assert_eq!(IoMethod::from_value(v), None);
        }
    }

    /// Our own process is not PostgreSQL 18: no AIO.
    #[test]
    fn not_postgres() {
        let me = std::process::id() as Pid;
        assert_eq!(proc_number(me).ok().flatten(), None);
        assert_eq!(worker_probe(me).ok().flatten(), None);
        assert_eq!(io_method(me).ok().flatten(), None);
    }
}
