//! Syscall arguments and results -> [`EventKind`]. Pure: registers in, events out, the
//! tracee's memory behind the [`Memory`] trait, so that all of it is unit-tested without
//! ptrace, root or PostgreSQL.

use crate::trace::{EventKind, Syscall};

use super::remote::{self, CString, Memory};

/// `-ERESTARTSYS` ..= `-ERESTART_RESTARTBLOCK`: the kernel's internal "restart me" results.
/// The syscall is re-executed (or turned into EINTR) after a signal; the restarted call
/// reports its own entry and exit, so these are not events.
const ERESTARTSYS: i64 = 512;
const ERESTART_RESTARTBLOCK: i64 = 516;

/// A problem met while capturing arguments; counted as lost by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// A path without NUL within 4096 bytes: the event carries the truncated path.
    PathTooLong,
    /// A path or iovec array that could not be read: the event is dropped (path) or its
    /// `requested` is 0 (iovec).
    Unreadable,
}

/// What a syscall-entry stop captured, kept until the matching exit stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub nr: u64,
    pub args: [u64; 6],
    /// The path argument, read at entry (the memory it points to is only sure then).
    path: Option<String>,
    /// Sum of the iovec lengths for the readv/writev family.
    iov_total: Option<u64>,
    /// The path could not be read: no event.
    unreadable_path: bool,
}

/// The syscalls that produce events; every other one is only continued.
pub fn interesting(nr: u64) -> bool {
    syscall_of(nr).is_some()
}

fn syscall_of(nr: u64) -> Option<Syscall> {
    let nr = i64::try_from(nr).ok()?;
    Some(match nr {
        libc::SYS_open => Syscall::Open,
        libc::SYS_openat => Syscall::Openat,
        libc::SYS_close => Syscall::Close,
        libc::SYS_dup => Syscall::Dup,
        libc::SYS_dup2 => Syscall::Dup2,
        libc::SYS_dup3 => Syscall::Dup3,
        libc::SYS_fcntl => Syscall::FcntlDupfd,
        libc::SYS_read => Syscall::Read,
        libc::SYS_pread64 => Syscall::Pread64,
        libc::SYS_readv => Syscall::Readv,
        libc::SYS_preadv => Syscall::Preadv,
        libc::SYS_preadv2 => Syscall::Preadv2,
        libc::SYS_write => Syscall::Write,
        libc::SYS_pwrite64 => Syscall::Pwrite64,
        libc::SYS_writev => Syscall::Writev,
        libc::SYS_pwritev => Syscall::Pwritev,
        libc::SYS_pwritev2 => Syscall::Pwritev2,
        libc::SYS_lseek => Syscall::Lseek,
        libc::SYS_ftruncate => Syscall::Ftruncate,
        libc::SYS_truncate => Syscall::Truncate,
        libc::SYS_unlink => Syscall::Unlink,
        libc::SYS_unlinkat => Syscall::Unlinkat,
        libc::SYS_getdents64 => Syscall::Getdents64,
        libc::SYS_newfstatat => Syscall::Newfstatat,
        libc::SYS_fstat => Syscall::Fstat,
        libc::SYS_lstat => Syscall::Lstat,
        libc::SYS_stat => Syscall::Stat,
        libc::SYS_statx => Syscall::Statx,
        libc::SYS_sendto => Syscall::Sendto,
        libc::SYS_fadvise64 => Syscall::Fadvise64,
        libc::SYS_sendfile => Syscall::Sendfile,
        libc::SYS_copy_file_range => Syscall::CopyFileRange,
        libc::SYS_splice => Syscall::Splice,
        _ => return None,
    })
}

/// Which argument (if any) is a path to read at entry.
fn path_arg(sc: Syscall) -> Option<usize> {
    use Syscall::*;
    match sc {
        Open | Truncate | Unlink | Lstat | Stat => Some(0),
        Openat | Unlinkat | Newfstatat | Statx => Some(1),
        _ => None,
    }
}

/// An `int` fd argument from a 64-bit register.
fn fd(reg: u64) -> i32 {
    reg as u32 as i32
}

/// A directory fd argument: `AT_FDCWD` is the working directory, None.
fn dirfd(reg: u64) -> Option<i32> {
    match fd(reg) {
        libc::AT_FDCWD => None,
        d => Some(d),
    }
}

/// An explicit file offset, or None for -1 ("use and update the file position", which
/// preadv2/pwritev2 accept).
fn offset(reg: u64) -> Option<u64> {
    (reg as i64 >= 0).then_some(reg)
}

/// Captures what the exit stop will need: for calls that take a path or an iovec array,
/// reads it now. `problems` receives what went wrong, for the lost counters.
pub fn capture(
    nr: u64,
    args: [u64; 6],
    mem: &mut dyn Memory,
    scratch: &mut Vec<u8>,
    problems: &mut Vec<Problem>,
) -> Entry {
    let mut entry = Entry {
        nr,
        args,
        path: None,
        iov_total: None,
        unreadable_path: false,
    };
    let Some(sc) = syscall_of(nr) else {
        return entry;
    };
    if let Some(i) = path_arg(sc) {
        let at_empty = matches!(sc, Syscall::Newfstatat | Syscall::Statx)
            && fd_flags(sc, &args) & libc::AT_EMPTY_PATH != 0;
        if args[i] == 0 && at_empty {
            // statx(fd, NULL, AT_EMPTY_PATH) is allowed since Linux 6.11.
            entry.path = Some(String::new());
        } else {
            match remote::read_cstring(mem, args[i], scratch) {
                CString::Complete(p) => entry.path = Some(p),
                CString::Truncated(p) => {
                    problems.push(Problem::PathTooLong);
                    entry.path = Some(p);
                }
                CString::Unreadable => {
                    problems.push(Problem::Unreadable);
                    entry.unreadable_path = true;
                }
            }
        }
    }
    if matches!(
        sc,
        Syscall::Readv
            | Syscall::Preadv
            | Syscall::Preadv2
            | Syscall::Writev
            | Syscall::Pwritev
            | Syscall::Pwritev2
    ) {
        entry.iov_total = remote::iovec_total(mem, args[1], args[2], scratch);
        if entry.iov_total.is_none() {
            problems.push(Problem::Unreadable);
        }
    }
    entry
}

/// The `flags` argument of newfstatat (4th) and statx (3rd).
fn fd_flags(sc: Syscall, args: &[u64; 6]) -> i32 {
    match sc {
        Syscall::Newfstatat => args[3] as i32,
        Syscall::Statx => args[2] as i32,
        _ => 0,
    }
}

/// The event for a finished syscall, given its entry and its result (`rax`: a value, or
/// -errno). None: not an event (uninteresting, failed in a way that changes nothing, about
/// to be restarted, or its path was unreadable).
pub fn finish(entry: &Entry, result: i64) -> Option<EventKind> {
    use Syscall::*;
    let sc = syscall_of(entry.nr)?;
    if (-ERESTART_RESTARTBLOCK..=-ERESTARTSYS).contains(&result) || entry.unreadable_path {
        return None;
    }
    let a = &entry.args;
    let path = || entry.path.clone().unwrap_or_default();
    Some(match sc {
        Open => EventKind::Open {
            syscall: sc,
            dirfd: None,
            path: path(),
            flags: a[1] as i32,
            fd: result as i32,
        },
        Openat => EventKind::Open {
            syscall: sc,
            dirfd: dirfd(a[0]),
            path: path(),
            flags: a[2] as i32,
            fd: result as i32,
        },
        // EBADF: nothing was open. Any other result (even EINTR) closed the fd on Linux.
        Close if result == -(libc::EBADF as i64) => return None,
        Close => EventKind::Close { fd: fd(a[0]) },
        Dup | Dup2 | Dup3 if result < 0 => return None,
        Dup | Dup2 | Dup3 => EventKind::Dup {
            syscall: sc,
            old_fd: fd(a[0]),
            new_fd: result as i32,
        },
        FcntlDupfd => {
            let cmd = a[1] as i32;
            if (cmd != libc::F_DUPFD && cmd != libc::F_DUPFD_CLOEXEC) || result < 0 {
                return None;
            }
            EventKind::Dup {
                syscall: sc,
                old_fd: fd(a[0]),
                new_fd: result as i32,
            }
        }
        Read | Pread64 | Readv | Preadv | Preadv2 => EventKind::Read {
            syscall: sc,
            fd: fd(a[0]),
            offset: io_offset(sc, a),
            requested: io_requested(sc, a, entry.iov_total),
            result,
        },
        // A copier's reads that stay in the kernel: (out, in, offset *, count) for
        // sendfile, (in, offset *, out, offset *, len, flags) for the others. The
        // offsets are behind pointers in its memory: not read.
        Sendfile => EventKind::Read {
            syscall: sc,
            fd: fd(a[1]),
            offset: None,
            requested: a[3],
            result,
        },
        CopyFileRange | Splice => EventKind::Read {
            syscall: sc,
            fd: fd(a[0]),
            offset: None,
            requested: a[4],
            result,
        },
        Write | Pwrite64 | Writev | Pwritev | Pwritev2 => EventKind::Write {
            syscall: sc,
            fd: fd(a[0]),
            offset: io_offset(sc, a),
            requested: io_requested(sc, a, entry.iov_total),
            result,
        },
        Lseek => EventKind::Seek {
            fd: fd(a[0]),
            offset: a[1] as i64,
            whence: a[2] as i32,
            result,
        },
        Ftruncate => EventKind::Truncate {
            syscall: sc,
            fd: Some(fd(a[0])),
            path: None,
            length: a[1],
            result,
        },
        Truncate => EventKind::Truncate {
            syscall: sc,
            fd: None,
            path: Some(path()),
            length: a[1],
            result,
        },
        Unlink => EventKind::Unlink {
            syscall: sc,
            dirfd: None,
            path: path(),
            result,
        },
        Unlinkat => EventKind::Unlink {
            syscall: sc,
            dirfd: dirfd(a[0]),
            path: path(),
            result,
        },
        Getdents64 => EventKind::ReadDir {
            fd: fd(a[0]),
            result,
        },
        Fstat => EventKind::Stat {
            syscall: sc,
            dirfd: None,
            fd: Some(fd(a[0])),
            path: None,
            result,
        },
        Stat | Lstat => EventKind::Stat {
            syscall: sc,
            dirfd: None,
            fd: None,
            path: Some(path()),
            result,
        },
        Newfstatat | Statx => {
            let p = path();
            if p.is_empty() && fd_flags(sc, a) & libc::AT_EMPTY_PATH != 0 {
                // fstat by another name: the fd is the "directory" argument.
                EventKind::Stat {
                    syscall: sc,
                    dirfd: None,
                    fd: Some(fd(a[0])),
                    path: None,
                    result,
                }
            } else {
                EventKind::Stat {
                    syscall: sc,
                    dirfd: dirfd(a[0]),
                    fd: None,
                    path: Some(p),
                    result,
                }
            }
        }
        Sendto => EventKind::Send {
            syscall: sc,
            fd: fd(a[0]),
            requested: a[2],
            result,
        },
        Fadvise64 => EventKind::Fadvise {
            fd: fd(a[0]),
            offset: a[1],
            len: a[2],
            advice: a[3] as i32,
        },
        // io_uring requests pass no system call ptrace could stop (`syscall_of` never
        // returns them).
        IoUringRead | IoUringReadv | IoUringReadFixed | IoUringReadvFixed | IoUringWrite
        | IoUringWritev | IoUringWriteFixed | IoUringWritevFixed => return None,
    })
}

/// Where a read/write started: the explicit offset of the p*-calls; None for read, write,
/// readv, writev (the model tracks the file position) and for p*v2 with offset -1.
fn io_offset(sc: Syscall, a: &[u64; 6]) -> Option<u64> {
    use Syscall::*;
    match sc {
        // On 64-bit kernels the offset is the whole of `pos_l` (args[3]); `pos_h` is unused.
        Pread64 | Pwrite64 | Preadv | Pwritev | Preadv2 | Pwritev2 => offset(a[3]),
        _ => None,
    }
}

fn io_requested(sc: Syscall, a: &[u64; 6], iov_total: Option<u64>) -> u64 {
    use Syscall::*;
    match sc {
        Readv | Preadv | Preadv2 | Writev | Pwritev | Pwritev2 => iov_total.unwrap_or(0),
        _ => a[2],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem(Vec<(u64, Vec<u8>)>);

    impl Memory for Mem {
        fn read(&mut self, addr: u64, buf: &mut [u8]) -> usize {
            for (base, bytes) in &self.0 {
                if addr >= *base && addr < base + bytes.len() as u64 {
                    let off = (addr - base) as usize;
                    let n = buf.len().min(bytes.len() - off);
                    buf[..n].copy_from_slice(&bytes[off..off + n]);
                    return n;
                }
            }
            0
        }
    }

    const PATH: u64 = 0x7000;
    const IOV: u64 = 0x9000;

    fn mem() -> Mem {
        let mut iov = Vec::new();
        for len in [8192u64, 8192] {
            iov.extend_from_slice(&0x1234u64.to_ne_bytes());
            iov.extend_from_slice(&len.to_ne_bytes());
        }
        Mem(vec![(PATH, b"base/5/16384\0".to_vec()), (IOV, iov)])
    }

    fn run(nr: i64, args: [u64; 6], result: i64) -> (Option<EventKind>, Vec<Problem>) {
        let mut problems = Vec::new();
        let entry = capture(nr as u64, args, &mut mem(), &mut Vec::new(), &mut problems);
        (finish(&entry, result), problems)
    }

    fn ev(nr: i64, args: [u64; 6], result: i64) -> Option<EventKind> {
        run(nr, args, result).0
    }

    const CWD: u64 = libc::AT_FDCWD as u32 as u64;

    #[test]
    fn opens() {
        assert_eq!(
            ev(libc::SYS_openat, [CWD, PATH, 0o2 | 0o100, 0o600, 0, 0], 7),
            Some(EventKind::Open {
                syscall: Syscall::Openat,
                dirfd: None,
                path: "base/5/16384".into(),
                flags: 0o102,
                fd: 7
            })
        );
        assert_eq!(
            ev(libc::SYS_openat, [5, PATH, 0, 0, 0, 0], -2),
            Some(EventKind::Open {
                syscall: Syscall::Openat,
                dirfd: Some(5),
                path: "base/5/16384".into(),
                flags: 0,
                fd: -2
            })
        );
        assert_eq!(
            ev(libc::SYS_open, [PATH, 0, 0, 0, 0, 0], 3),
            Some(EventKind::Open {
                syscall: Syscall::Open,
                dirfd: None,
                path: "base/5/16384".into(),
                flags: 0,
                fd: 3
            })
        );
        // An unreadable path is not an event, and is counted.
        let (e, p) = run(libc::SYS_openat, [CWD, 0xdead, 0, 0, 0, 0], -14);
        assert_eq!(e, None);
        assert_eq!(p, vec![Problem::Unreadable]);
    }

    #[test]
    fn reads_and_writes() {
        assert_eq!(
            ev(libc::SYS_pread64, [7, 0x1, 8192, 16384, 0, 0], 8192),
            Some(EventKind::Read {
                syscall: Syscall::Pread64,
                fd: 7,
                offset: Some(16384),
                requested: 8192,
                result: 8192
            })
        );
        assert_eq!(
            ev(libc::SYS_read, [7, 0x1, 100, 0, 0, 0], 10),
            Some(EventKind::Read {
                syscall: Syscall::Read,
                fd: 7,
                offset: None,
                requested: 100,
                result: 10
            })
        );
        assert_eq!(
            ev(libc::SYS_preadv, [7, IOV, 2, 81920, 0, 0], 16384),
            Some(EventKind::Read {
                syscall: Syscall::Preadv,
                fd: 7,
                offset: Some(81920),
                requested: 16384,
                result: 16384
            })
        );
        assert_eq!(
            ev(libc::SYS_preadv2, [7, IOV, 1, u64::MAX, 0, 0], 8192),
            Some(EventKind::Read {
                syscall: Syscall::Preadv2,
                fd: 7,
                offset: None,
                requested: 8192,
                result: 8192
            })
        );
        assert_eq!(
            ev(libc::SYS_pwritev, [9, IOV, 2, 0, 0, 0], -28),
            Some(EventKind::Write {
                syscall: Syscall::Pwritev,
                fd: 9,
                offset: Some(0),
                requested: 16384,
                result: -28
            })
        );
        assert_eq!(
            ev(libc::SYS_write, [2, 0x1, 50, 0, 0, 0], 50),
            Some(EventKind::Write {
                syscall: Syscall::Write,
                fd: 2,
                offset: None,
                requested: 50,
                result: 50
            })
        );
        // An unreadable iovec array: requested 0, counted.
        let (e, p) = run(libc::SYS_readv, [7, 0xbad, 2, 0, 0, 0], -14);
        assert_eq!(p, vec![Problem::Unreadable]);
        assert!(matches!(e, Some(EventKind::Read { requested: 0, .. })));
        // A read about to be restarted after a signal is not an event.
        assert_eq!(ev(libc::SYS_read, [7, 0x1, 100, 0, 0, 0], -512), None);
        assert_eq!(ev(libc::SYS_read, [7, 0x1, 100, 0, 0, 0], -516), None);
    }

    #[test]
    fn fds() {
        assert_eq!(
            ev(libc::SYS_close, [7, 0, 0, 0, 0, 0], 0),
            Some(EventKind::Close { fd: 7 })
        );
        assert_eq!(ev(libc::SYS_close, [7, 0, 0, 0, 0, 0], -9), None);
        assert_eq!(
            ev(libc::SYS_dup2, [7, 9, 0, 0, 0, 0], 9),
            Some(EventKind::Dup {
                syscall: Syscall::Dup2,
                old_fd: 7,
                new_fd: 9
            })
        );
        assert_eq!(ev(libc::SYS_dup, [7, 0, 0, 0, 0, 0], -24), None);
        assert_eq!(
            ev(
                libc::SYS_fcntl,
                [7, libc::F_DUPFD_CLOEXEC as u64, 10, 0, 0, 0],
                11
            ),
            Some(EventKind::Dup {
                syscall: Syscall::FcntlDupfd,
                old_fd: 7,
                new_fd: 11
            })
        );
        assert_eq!(
            ev(libc::SYS_fcntl, [7, libc::F_GETFL as u64, 0, 0, 0, 0], 2),
            None
        );
        assert_eq!(
            ev(
                libc::SYS_lseek,
                [7, 0, libc::SEEK_END as u64, 0, 0, 0],
                81920
            ),
            Some(EventKind::Seek {
                fd: 7,
                offset: 0,
                whence: libc::SEEK_END,
                result: 81920
            })
        );
        assert_eq!(
            ev(libc::SYS_ftruncate, [7, 8192, 0, 0, 0, 0], 0),
            Some(EventKind::Truncate {
                syscall: Syscall::Ftruncate,
                fd: Some(7),
                path: None,
                length: 8192,
                result: 0
            })
        );
    }

    #[test]
    fn paths_and_stats() {
        assert_eq!(
            ev(libc::SYS_unlinkat, [CWD, PATH, 0, 0, 0, 0], 0),
            Some(EventKind::Unlink {
                syscall: Syscall::Unlinkat,
                dirfd: None,
                path: "base/5/16384".into(),
                result: 0
            })
        );
        assert_eq!(
            ev(libc::SYS_newfstatat, [CWD, PATH, 0x1, 0, 0, 0], -2),
            Some(EventKind::Stat {
                syscall: Syscall::Newfstatat,
                dirfd: None,
                fd: None,
                path: Some("base/5/16384".into()),
                result: -2
            })
        );
        // fstat by another name.
        let mut bytes = mem();
        bytes.0.push((0x8000, b"\0".to_vec()));
        let mut problems = Vec::new();
        let entry = capture(
            libc::SYS_newfstatat as u64,
            [4, 0x8000, 0x1, libc::AT_EMPTY_PATH as u64, 0, 0],
            &mut bytes,
            &mut Vec::new(),
            &mut problems,
        );
        assert_eq!(
            finish(&entry, 0),
            Some(EventKind::Stat {
                syscall: Syscall::Newfstatat,
                dirfd: None,
                fd: Some(4),
                path: None,
                result: 0
            })
        );
        // statx(fd, NULL, AT_EMPTY_PATH)
        assert_eq!(
            ev(
                libc::SYS_statx,
                [4, 0, libc::AT_EMPTY_PATH as u64, 0xfff, 0x1, 0],
                0
            ),
            Some(EventKind::Stat {
                syscall: Syscall::Statx,
                dirfd: None,
                fd: Some(4),
                path: None,
                result: 0
            })
        );
        assert_eq!(
            ev(libc::SYS_fstat, [4, 0x1, 0, 0, 0, 0], 0),
            Some(EventKind::Stat {
                syscall: Syscall::Fstat,
                dirfd: None,
                fd: Some(4),
                path: None,
                result: 0
            })
        );
        assert_eq!(
            ev(libc::SYS_getdents64, [4, 0x1, 32768, 0, 0, 0], 480),
            Some(EventKind::ReadDir { fd: 4, result: 480 })
        );
        assert_eq!(
            ev(libc::SYS_sendto, [8, 0x1, 8192, 0, 0, 0], 8192),
            Some(EventKind::Send {
                syscall: Syscall::Sendto,
                fd: 8,
                requested: 8192,
                result: 8192
            })
        );
        assert_eq!(
            ev(libc::SYS_fadvise64, [7, 8192, 65536, 3, 0, 0], 0),
            Some(EventKind::Fadvise {
                fd: 7,
                offset: 8192,
                len: 65536,
                advice: 3
            })
        );
    }

    #[test]
    fn other_syscalls_are_not_events() {
        assert!(!interesting(libc::SYS_epoll_wait as u64));
        assert!(!interesting(libc::SYS_getpid as u64));
        assert!(!interesting(u64::MAX));
        assert!(!interesting(0x4000_0000)); // x32
        assert!(interesting(libc::SYS_pread64 as u64));
        assert_eq!(ev(libc::SYS_kill, [1, 2, 0, 0, 0, 0], 0), None);
    }
}
