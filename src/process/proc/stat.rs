//! `/proc/PID/stat`: scheduler state, parent, CPU time.

use super::{open, Pid};
use procfs::process::Process;

/// The fields of `/proc/PID/stat` pg_trace uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// R running, S sleeping, D disk sleep, T stopped, t traced, Z zombie, I idle.
    pub state: char,
    pub ppid: Pid,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// When the process started, in clock ticks after boot: with the pid, what names one
    /// process for its whole life (a pid is reused, a pid and a start time are not).
    pub start_time: u64,
    /// The kernel's task flags (`PF_*`): `PF_EXITING` says the process is in `exit(2)`.
    pub flags: u32,
}

/// `PF_EXITING` of include/linux/sched.h: set as a task enters `do_exit`.
pub const PF_EXITING: u32 = 0x0000_0004;

impl Stat {
    pub fn of(p: &Process) -> Option<Stat> {
        p.stat().ok().map(Stat::from)
    }
}

impl From<procfs::process::Stat> for Stat {
    fn from(s: procfs::process::Stat) -> Stat {
        Stat {
            state: s.state,
            ppid: s.ppid,
            cpu_ticks: s.utime.saturating_add(s.stime),
            start_time: s.starttime,
            flags: s.flags,
        }
    }
}

pub fn stat(pid: Pid) -> Option<Stat> {
    Stat::of(&open(pid)?)
}

/// The parent pid (the field after the parenthesised command).
pub fn parent_pid(pid: Pid) -> Option<Pid> {
    stat(pid).map(|s| s.ppid)
}

/// A state letter in words, as `ps` would explain it.
pub fn state_name(c: char) -> &'static str {
    match c {
        'R' => "running",
        'S' => "sleeping",
        'D' => "disk wait",
        'T' => "stopped",
        't' => "traced",
        'Z' => "zombie",
        'X' => "dead",
        'I' => "idle",
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use procfs::FromRead;

    fn parse(text: &str) -> Option<Stat> {
        procfs::process::Stat::from_read(text.as_bytes())
            .ok()
            .map(Stat::from)
    }

    /// A whole line as Linux 6.x writes it, with a command holding spaces and parentheses.
    const LINE: &str =
        "1234 (postgres: a) b) S 1 1234 1234 0 -1 4194560 1500 0 3 0 120 30 0 0 20 0 1 0 \
        4242 229376000 3600 18446744073709551615 1 1 0 0 0 0 0 4096 17735 0 0 0 17 1 0 0 0 0 0 \
        0 0 0 0 0 0 0 0\n";

    #[test]
    fn fields_after_the_last_parenthesis() {
        assert_eq!(
            parse(LINE),
            Some(Stat {
                state: 'S',
                ppid: 1,
                cpu_ticks: 150,
                start_time: 4242,
                flags: 4194560,
            })
        );
        assert_eq!(parse("garbage"), None);
        assert_eq!(parse("42 (x) R 7"), None);
    }

    #[test]
    fn own_stat() {
        let me = std::process::id() as Pid;
        let s = stat(me).unwrap();
        assert_eq!(s.ppid, std::os::unix::process::parent_id() as Pid);
        assert_eq!(stat(-1), None);
        assert_eq!(state_name('D'), "disk wait");
        assert_eq!(state_name('?'), "?");
    }
}
