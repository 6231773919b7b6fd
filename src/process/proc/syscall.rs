//! `/proc/PID/syscall` (what the process is doing in the kernel right now) and the names
//! of the system calls a postgres process sits in, from `libc::SYS_*` so that the numbers
//! are the target architecture's own.

use super::{open, Pid};
use procfs::process::Process;
use procfs::FromRead;
use std::io::Read;

/// What `/proc/PID/syscall` says: in a system call (its number and six arguments),
/// running in user space, or blocked outside any system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallNow {
    In { nr: u64, args: [u64; 6] },
    Running,
    Blocked,
}

impl SyscallNow {
    /// The number of the system call it is in.
    pub fn number(&self) -> Option<u64> {
        match self {
            SyscallNow::In { nr, .. } => Some(*nr),
            _ => None,
        }
    }
}

/// Root only (the file needs PTRACE_MODE_ATTACH); None when unreadable.
pub fn syscall(pid: Pid) -> Option<SyscallNow> {
    syscall_of(&open(pid)?)
}

pub fn syscall_of(p: &Process) -> Option<SyscallNow> {
    let mut buf = Vec::with_capacity(256);
    p.open_relative("syscall")
        .ok()?
        .take(4096)
        .read_to_end(&mut buf)
        .ok()?;
    parse_syscall(&buf)
}

/// `/proc/PID/syscall` held open and re-read from offset 0, for a sampler that looks many
/// times a second: no path walk per look, and a look after the process exited fails
/// instead of landing on a process that reused the pid.
pub struct SyscallFile(std::fs::File);

impl SyscallFile {
    pub fn open(pid: Pid) -> Option<SyscallFile> {
        std::fs::File::open(format!("/proc/{pid}/syscall"))
            .ok()
            .map(SyscallFile)
    }

    pub fn read(&self) -> Option<SyscallNow> {
        use std::os::unix::fs::FileExt;
        // One line of at most nine hex numbers.
        let mut buf = [0u8; 256];
        let n = self.0.read_at(&mut buf, 0).ok()?;
        parse_syscall(&buf[..n])
    }
}

/// procfs parses the running and in-a-call forms; outside a call the kernel writes only
/// `-1 SP PC`, which it refuses, so that form is recognised here.
pub fn parse_syscall(text: &[u8]) -> Option<SyscallNow> {
    if text.starts_with(b"-1 ") || text.trim_ascii() == b"-1" {
        return Some(SyscallNow::Blocked);
    }
    match procfs::process::Syscall::from_read(text).ok()? {
        procfs::process::Syscall::Running => Some(SyscallNow::Running),
        procfs::process::Syscall::Blocked {
            syscall_number,
            argument_registers,
            ..
        } => match u64::try_from(syscall_number) {
            Ok(nr) => Some(SyscallNow::In {
                nr,
                args: argument_registers,
            }),
            Err(_) => Some(SyscallNow::Blocked),
        },
        _ => None,
    }
}

/// Every system call pg_trace names, by the target's numbers.
const NAMES: &[(libc::c_long, &str)] = &[
    (libc::SYS_read, "read"),
    (libc::SYS_write, "write"),
    (libc::SYS_close, "close"),
    (libc::SYS_poll, "poll"),
    (libc::SYS_lseek, "lseek"),
    (libc::SYS_pread64, "pread64"),
    (libc::SYS_pwrite64, "pwrite64"),
    (libc::SYS_readv, "readv"),
    (libc::SYS_writev, "writev"),
    (libc::SYS_select, "select"),
    (libc::SYS_nanosleep, "nanosleep"),
    (libc::SYS_sendto, "sendto"),
    (libc::SYS_recvfrom, "recvfrom"),
    (libc::SYS_sendmsg, "sendmsg"),
    (libc::SYS_recvmsg, "recvmsg"),
    (libc::SYS_wait4, "wait4"),
    (libc::SYS_semget, "semget"),
    (libc::SYS_semop, "semop"),
    (libc::SYS_fsync, "fsync"),
    (libc::SYS_fdatasync, "fdatasync"),
    (libc::SYS_futex, "futex"),
    (libc::SYS_semtimedop, "semtimedop"),
    (libc::SYS_clock_nanosleep, "clock_nanosleep"),
    (libc::SYS_epoll_wait, "epoll_wait"),
    (libc::SYS_openat, "openat"),
    (libc::SYS_pselect6, "pselect6"),
    (libc::SYS_ppoll, "ppoll"),
    (libc::SYS_sync_file_range, "sync_file_range"),
    (libc::SYS_epoll_pwait, "epoll_pwait"),
    (libc::SYS_preadv, "preadv"),
    (libc::SYS_pwritev, "pwritev"),
    (libc::SYS_preadv2, "preadv2"),
    (libc::SYS_pwritev2, "pwritev2"),
    (libc::SYS_io_uring_enter, "io_uring_enter"),
    (libc::SYS_epoll_pwait2, "epoll_pwait2"),
];

/// The name of system call `nr` (of those a waiting or working postgres process sits in).
pub fn syscall_name(nr: u64) -> Option<&'static str> {
    let nr = libc::c_long::try_from(nr).ok()?;
    NAMES.iter().find(|(n, _)| *n == nr).map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sys(n: libc::c_long) -> u64 {
        n as u64
    }

    #[test]
    fn the_three_forms() {
        let waiting = format!(
            "{} 0x5 0x7ffd 0x1 0xffffffff 0x0 0x0 0x7ffd 0x7f12\n",
            libc::SYS_epoll_wait
        );
        assert_eq!(
            parse_syscall(waiting.as_bytes()),
            Some(SyscallNow::In {
                nr: sys(libc::SYS_epoll_wait),
                args: [5, 0x7ffd, 1, 0xffffffff, 0, 0]
            })
        );
        assert_eq!(parse_syscall(b"running\n"), Some(SyscallNow::Running));
        assert_eq!(
            parse_syscall(b"-1 0x7ffd 0x7f12\n"),
            Some(SyscallNow::Blocked)
        );
        assert_eq!(parse_syscall(b""), None);
        assert_eq!(parse_syscall(b"x"), None);
        // Too few arguments: not a line the kernel writes.
        assert_eq!(parse_syscall(b"17 0x5 0x1"), None);
        assert_eq!(
            parse_syscall(waiting.as_bytes()).and_then(|s| s.number()),
            Some(sys(libc::SYS_epoll_wait))
        );
    }

    #[test]
    fn names_by_the_targets_numbers() {
        assert_eq!(syscall_name(sys(libc::SYS_epoll_wait)), Some("epoll_wait"));
        assert_eq!(syscall_name(sys(libc::SYS_pread64)), Some("pread64"));
        assert_eq!(syscall_name(99_999), None);
        assert_eq!(syscall_name(u64::MAX), None);
        // One name per number.
        for (i, (n, _)) in NAMES.iter().enumerate() {
            assert!(NAMES[i + 1..].iter().all(|(m, _)| m != n));
        }
    }

    #[test]
    fn unreadable_or_gone() {
        assert_eq!(syscall(-1), None);
    }

    proptest::proptest! {
        #[test]
        fn hostile_text_never_panics(s in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = parse_syscall(&s);
        }
    }
}
