//! Raw wrappers over the few system calls the tracer thread makes. Raw numbers in, `Errno`
//! out: nix's typed `Signal` cannot carry real-time signals, which a tracee may receive and
//! which must be passed back on unchanged, and nix's `WaitStatus` refuses to decode them.

use std::ffi::{c_int, c_long, c_uint, c_void};

use nix::errno::Errno;

use crate::trace::Pid;

/// `SIGTRAP | 0x80`: a syscall-stop (we always set `PTRACE_O_TRACESYSGOOD`).
pub const SYSCALL_STOP_SIG: c_int = libc::SIGTRAP | 0x80;

fn request(req: c_uint, pid: Pid, addr: usize, data: usize) -> Result<c_long, Errno> {
    // SAFETY: every request we make passes either plain integers or (GETREGS) a pointer to
    // a live, correctly sized `user_regs_struct` we own; ptrace never retains pointers.
    let r = unsafe { libc::ptrace(req, pid, addr as *mut c_void, data as *mut c_void) };
    if r == -1 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

/// `PTRACE_SEIZE` with `PTRACE_O_TRACESYSGOOD` only: no SIGSTOP is sent (unlike
/// `PTRACE_ATTACH`), and never `PTRACE_O_EXITKILL`: if we die, the backend lives on.
///
/// TRACESYSGOOD is not cosmetic: if the tracer dies while the tracee sits in a syscall-stop,
/// the kernel resumes it with the stale stop code as a signal to send. With TRACESYSGOOD that
/// code is 0x85, not a valid signal, and nothing is sent; without it, it would be SIGTRAP,
/// whose default action kills the backend.
pub fn seize(pid: Pid) -> Result<(), Errno> {
    request(
        libc::PTRACE_SEIZE,
        pid,
        0,
        libc::PTRACE_O_TRACESYSGOOD as usize,
    )
    .map(drop)
}

/// `PTRACE_INTERRUPT`: make a seized tracee report a `PTRACE_EVENT_STOP` soon.
pub fn interrupt(pid: Pid) -> Result<(), Errno> {
    request(libc::PTRACE_INTERRUPT, pid, 0, 0).map(drop)
}

/// `PTRACE_SYSCALL`: resume until the next syscall entry/exit, delivering `sig` (0: none).
pub fn resume_syscall(pid: Pid, sig: c_int) -> Result<(), Errno> {
    request(libc::PTRACE_SYSCALL, pid, 0, sig as usize).map(drop)
}

/// `PTRACE_LISTEN`: leave a tracee that reported a group-stop stopped, but let it report
/// the next event (SIGCONT, another interrupt) without us resuming it.
pub fn listen(pid: Pid) -> Result<(), Errno> {
    request(libc::PTRACE_LISTEN, pid, 0, 0).map(drop)
}

/// `PTRACE_DETACH`, delivering `sig` (0: none) as the tracee resumes.
pub fn detach(pid: Pid, sig: c_int) -> Result<(), Errno> {
    request(libc::PTRACE_DETACH, pid, 0, sig as usize).map(drop)
}

/// `PTRACE_GETREGS` (x86_64 user registers).
pub fn getregs(pid: Pid) -> Result<libc::user_regs_struct, Errno> {
    let mut regs = std::mem::MaybeUninit::<libc::user_regs_struct>::zeroed();
    request(libc::PTRACE_GETREGS, pid, 0, regs.as_mut_ptr() as usize)?;
    // SAFETY: zero-initialised (all-integer struct, so already valid) and fully written by
    // a successful PTRACE_GETREGS.
    Ok(unsafe { regs.assume_init() })
}

/// How long the tracer polls for the next stop before it sleeps in waitpid.
pub const SPIN: std::time::Duration = std::time::Duration::from_micros(50);

/// One wait result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// `waitpid` returned this pid and raw status.
    Status(Pid, c_int),
    /// Interrupted by our wake-up signal (or any other handled signal).
    Interrupted,
    /// No children or tracees left for this thread.
    NoChildren,
}

/// Blocks until one of this thread's tracees changes state. `__WNOTHREAD`: only this
/// thread's tracees and children, never a child another thread of the program is waiting
/// for. `__WALL`: tracees are not our children, and stop reports come regardless of
/// their exit signal.
pub fn wait_any() -> Result<Wait, Errno> {
    let mut status: c_int = 0;
    // A traced syscall usually stops again within microseconds; sleeping in waitpid costs
    // a wakeup (a cross-CPU interrupt in a VM) per stop. Poll briefly first.
    let spin_until = std::time::Instant::now() + SPIN;
    loop {
        // SAFETY: waitpid writes one int into `status`, which we own.
        let r = unsafe {
            libc::waitpid(
                -1,
                &mut status,
                libc::__WALL | libc::__WNOTHREAD | libc::WNOHANG,
            )
        };
        match r {
            0 if std::time::Instant::now() < spin_until => std::hint::spin_loop(),
            0 => break,
            -1 => {
                return match Errno::last() {
                    Errno::EINTR => Ok(Wait::Interrupted),
                    Errno::ECHILD => Ok(Wait::NoChildren),
                    e => Err(e),
                }
            }
            pid => return Ok(Wait::Status(pid, status)),
        }
    }
    // SAFETY: waitpid writes one int into `status`, which we own.
    let r = unsafe { libc::waitpid(-1, &mut status, libc::__WALL | libc::__WNOTHREAD) };
    match r {
        -1 => match Errno::last() {
            Errno::EINTR => Ok(Wait::Interrupted),
            Errno::ECHILD => Ok(Wait::NoChildren),
            e => Err(e),
        },
        pid => Ok(Wait::Status(pid, status)),
    }
}

/// This thread's kernel id.
pub fn gettid() -> Pid {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as Pid }
}

/// Sends `sig` to thread `tid` of this process.
pub fn tgkill_self(tid: Pid, sig: c_int) -> Result<(), Errno> {
    // SAFETY: tgkill with integer arguments; the thread group is our own process, so the
    // signal can only ever reach one of our own threads.
    let r = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, sig) };
    if r == -1 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// `process_vm_readv` of `remote` ranges (each within one page, so that a fault on one page
/// still returns what came before it) into `local`. Returns the bytes read.
pub fn process_vm_readv(
    pid: Pid,
    local: &mut [u8],
    remote: &[libc::iovec],
) -> Result<usize, Errno> {
    let local_iov = libc::iovec {
        iov_base: local.as_mut_ptr() as *mut c_void,
        iov_len: local.len(),
    };
    // SAFETY: one local iovec covering exactly the `local` slice we borrow mutably; the
    // remote iovecs are only addresses in the other process, which the kernel checks.
    let r = unsafe {
        libc::process_vm_readv(
            pid,
            &local_iov,
            1,
            remote.as_ptr(),
            remote.len() as libc::c_ulong,
            0,
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r as usize)
    }
}
