//! Who a traced process is, for as long as we trace it: a pid names a process only until
//! it exits and the kernel hands the number to the next `fork`. An [`Identity`] is a pidfd
//! (which stays bound to the process it was opened on, and turns readable when that
//! process has exited) plus the start time from `/proc/PID/stat` (which, with the pid,
//! names one process for its whole life, and is the check when pidfds are missing).
//!
//! Every read of `/proc/PID/...` or `/proc/PID/mem` is about whoever holds the pid at that
//! moment. The race-free pattern: read, *then* ask [`Identity::is_alive`]. A process that
//! is still alive after the read held the pid during the read (a pid is not reused while
//! its process, or its zombie, exists), so the read was about it; if it is gone, throw the
//! read away.
//!
//! `pidfd_open(2)` through `libc::syscall`: nix 0.31 has no wrapper for it, and the libc
//! crate declares the syscall number but no function for glibc targets. One syscall and an
//! `OwnedFd` do not justify another crate.

use super::proc::{self, Pid, PF_EXITING};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The process given with `-p` (or one of its followers) went away while pg_trace was
/// attaching to it: said in exactly these words, whatever step noticed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("pid {pid} exited while attaching")]
pub struct ExitedWhileAttaching {
    pub pid: Pid,
}

/// There was no process to pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoProcess {
    #[error("{0} is not a valid pid")]
    Invalid(Pid),
    /// No process has this pid (at the time pg_trace looked first).
    #[error("no process with pid {0}")]
    Missing(Pid),
}

/// One live process, pinned: see the module documentation.
#[derive(Debug)]
pub struct Identity {
    pid: Pid,
    /// None on kernels without `pidfd_open` (before 5.3): the start time alone decides.
    fd: Option<OwnedFd>,
    start_time: u64,
}

impl Identity {
    /// Pins the process that has `pid` now.
    pub fn open(pid: Pid) -> Result<Identity, NoProcess> {
        if pid <= 0 {
            return Err(NoProcess::Invalid(pid));
        }
        let fd = pidfd_open(pid).map_err(|_| NoProcess::Missing(pid))?;
        // Read, then check: the start time is this process's only if it is still alive.
        let stat = proc::stat(pid).ok_or(NoProcess::Missing(pid))?;
        let id = Identity {
            pid,
            fd,
            start_time: stat.start_time,
        };
        if id.fd.is_some() && !id.is_alive() {
            return Err(NoProcess::Missing(pid));
        }
        Ok(id)
    }

    /// A second handle on the same process (the pidfd duplicated).
    pub fn try_clone(&self) -> std::io::Result<Identity> {
        Ok(Identity {
            pid: self.pid,
            fd: self.fd.as_ref().map(OwnedFd::try_clone).transpose()?,
            start_time: self.start_time,
        })
    }

    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// When the process started, in clock ticks after boot (`/proc/PID/stat` field 22).
    pub fn start_time(&self) -> u64 {
        self.start_time
    }

    /// The process has not exited. A zombie has exited: its pid is about to be freed.
    /// Reads made before a `true` were about this process.
    pub fn is_alive(&self) -> bool {
        match &self.fd {
            Some(fd) => !pidfd_exited(fd),
            // Without a pidfd: the same start time under the same pid, and not a zombie.
            None => proc::stat(self.pid)
                .is_some_and(|s| s.start_time == self.start_time && !matches!(s.state, 'Z' | 'X')),
        }
    }

    /// Alive and not yet in `exit(2)`. Whatever was set up for this pid before a `true`
    /// (a pid in an eBPF filter, a seized tracee, a uprobe) was set up for this process,
    /// and its exit is still to come, so anything that watches for the exit will see it:
    /// the eBPF exit hook runs after `PF_EXITING` is set, the pidfd turns readable later
    /// still.
    pub fn is_running(&self) -> bool {
        let Some(s) = proc::stat(self.pid) else {
            return false;
        };
        let running = s.start_time == self.start_time
            && s.flags & PF_EXITING == 0
            && !matches!(s.state, 'Z' | 'X');
        running && self.is_alive()
    }

    /// `v`, read about this pid, if it was about this process (see the module
    /// documentation); None if the process is gone.
    pub fn confirm<T>(&self, v: T) -> Option<T> {
        self.is_alive().then_some(v)
    }
}

/// `pidfd_open(pid, 0)`. Err when no such process (ESRCH); Ok(None) when a pidfd cannot
/// be had otherwise (no pidfds before Linux 5.3, out of fds): the start time then decides.
fn pidfd_open(pid: Pid) -> std::io::Result<Option<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags by value and returns a new fd or -1; it
    // touches no memory of ours.
    let rc = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ESRCH) => Err(e),
            _ => Ok(None),
        };
    }
    let Ok(raw) = i32::try_from(rc) else {
        return Err(std::io::Error::other(
            "pidfd_open returned an impossible fd",
        ));
    };
    // SAFETY: `raw` is a fresh fd from pidfd_open, owned by nobody else.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(raw) }))
}

/// A pidfd polls readable once its process has exited (it is a zombie or reaped).
fn pidfd_exited(fd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd on our stack, count 1, no timeout.
        let rc = unsafe { libc::poll(&mut p, 1, 0) };
        if rc >= 0 {
            return rc > 0 && p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            // Cannot ask: do not claim the process is alive.
            return true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn own_process_is_alive() {
        let me = Identity::open(std::process::id() as Pid).unwrap();
        assert!(me.is_alive() && me.is_running());
        assert!(me.start_time() > 0);
        assert_eq!(me.confirm(7), Some(7));
        assert_eq!(Identity::open(-1).unwrap_err(), NoProcess::Invalid(-1));
        assert_eq!(
            Identity::open(0).unwrap_err().to_string(),
            "0 is not a valid pid"
        );
        // The largest pid Linux allows is 4194304.
        assert_eq!(
            Identity::open(i32::MAX).unwrap_err().to_string(),
            format!("no process with pid {}", i32::MAX)
        );
    }

    #[test]
    fn an_exited_child_is_dead_before_and_after_it_is_reaped() {
        let mut child = Command::new("sh")
            .args(["-c", "read x"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let id = Identity::open(child.id() as Pid).unwrap();
        assert!(id.is_alive() && id.is_running());
        drop(child.stdin.take());
        // A zombie until waited for: already not alive.
        let t = std::time::Instant::now();
        while id.is_alive() {
            assert!(
                t.elapsed() < std::time::Duration::from_secs(10),
                "child never exited"
            );
            std::thread::yield_now();
        }
        assert!(!id.is_running());
        assert_eq!(id.confirm(1), None);
        child.wait().unwrap();
        assert!(!id.is_alive());
        // Without a pidfd (before Linux 5.3), the start time decides: another start time
        // under the same pid is another process.
        let me = Identity::open(std::process::id() as Pid).unwrap();
        let no_fd = |start_time| Identity {
            pid: me.pid(),
            fd: None,
            start_time,
        };
        assert!(no_fd(me.start_time()).is_alive() && no_fd(me.start_time()).is_running());
        assert!(!no_fd(me.start_time() + 1).is_alive());
        assert!(!no_fd(me.start_time() + 1).is_running());
        let gone = Identity {
            fd: None,
            ..id.try_clone().unwrap()
        };
        assert!(!gone.is_alive());
        assert_eq!(
            ExitedWhileAttaching { pid: 12 }.to_string(),
            "pid 12 exited while attaching"
        );
    }
}
