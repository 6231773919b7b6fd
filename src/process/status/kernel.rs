//! What the kernel says about a process right now: scheduler state, where it sleeps, the
//! system call it is in, CPU time, and how much its sockets have queued for a peer that
//! has not read it yet.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelState {
    /// `/proc/PID/stat` state: R running, S sleeping, D disk sleep, T stopped, ...
    pub state: Option<char>,
    pub wchan: Option<String>,
    /// Number of the system call it is blocked in (`/proc/PID/syscall`); None when running
    /// in user space or unreadable.
    pub syscall: Option<i64>,
    /// utime + stime, clock ticks.
    pub cpu_ticks: Option<u64>,
    /// Bytes written to its sockets that the peer has not read (SIOCOUTQ), the largest.
    pub send_queue: Option<u64>,
}

impl KernelState {
    pub fn read(pid: i32) -> KernelState {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
        let (state, cpu_ticks) = stat.as_deref().map(parse_stat).unwrap_or((None, None));
        let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && s != "0");
        let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall"))
            .ok()
            .and_then(|s| parse_syscall(&s));
        KernelState {
            state,
            wchan,
            syscall,
            cpu_ticks,
            send_queue: socket_send_queue(pid),
        }
    }
}

/// State and utime+stime from `/proc/PID/stat` (fields after the parenthesised comm).
pub fn parse_stat(stat: &str) -> (Option<char>, Option<u64>) {
    let Some(close) = stat.rfind(')') else {
        return (None, None);
    };
    let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let state = f.first().and_then(|s| s.chars().next());
    // Fields 14 and 15 of stat(5), i.e. indexes 11 and 12 after the comm.
    let cpu = match (f.get(11), f.get(12)) {
        (Some(u), Some(s)) => u
            .parse::<u64>()
            .ok()
            .zip(s.parse::<u64>().ok())
            .map(|(u, s)| u + s),
        _ => None,
    };
    (state, cpu)
}

/// `/proc/PID/syscall`: "running", "-1 ..." (not in a call), or "NR args...".
pub fn parse_syscall(s: &str) -> Option<i64> {
    let first = s.split_whitespace().next()?;
    first.parse::<i64>().ok().filter(|&n| n >= 0)
}

/// Largest SIOCOUTQ over the process's sockets. The socket is duplicated into this process
/// with pidfd_getfd (no effect on the owner) and closed at once.
pub fn socket_send_queue(pid: i32) -> Option<u64> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let socket_fds: Vec<i32> = dir
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read_link(e.path())
                .map(|p| p.to_string_lossy().starts_with("socket:"))
                .unwrap_or(false)
        })
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    if socket_fds.is_empty() {
        return None;
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if pidfd < 0 {
        return None;
    }
    let mut best: Option<u64> = None;
    for fd in socket_fds.into_iter().take(64) {
        // SAFETY: pidfd_getfd duplicates the target's fd into ours; it reads nothing from
        // and changes nothing in the target. The returned fd is ours to close.
        let ours = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd, fd, 0) } as i32;
        if ours < 0 {
            continue;
        }
        let mut q: libc::c_int = 0;
        // SAFETY: SIOCOUTQ (== TIOCOUTQ) writes one int through the pointer we own.
        let r = unsafe { libc::ioctl(ours, libc::TIOCOUTQ, &mut q) };
        // SAFETY: `ours` was returned by pidfd_getfd above and is closed once.
        unsafe { libc::close(ours) };
        if r == 0 && q >= 0 {
            best = Some(best.unwrap_or(0).max(q as u64));
        }
    }
    // SAFETY: pidfd is ours and closed once.
    unsafe { libc::close(pidfd) };
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_and_syscall() {
        let stat = "1234 (postgres: a) b) S 1 2 3 4 5 6 7 8 9 10 120 30 0 0 20 0 1 0";
        assert_eq!(parse_stat(stat), (Some('S'), Some(150)));
        assert_eq!(parse_stat("garbage"), (None, None));
        assert_eq!(
            parse_syscall("232 0x5 0x7ffd 0x1 0x3e8 0 0 0x7ffd 0x7f"),
            Some(232)
        );
        assert_eq!(parse_syscall("running"), None);
        assert_eq!(parse_syscall("-1 0x7ffd 0x7f"), None);
    }

    proptest::proptest! {
        #[test]
        fn stat_parser_never_panics(s in ".{0,200}") {
            let _ = parse_stat(&s);
            let _ = parse_syscall(&s);
        }
    }
}
