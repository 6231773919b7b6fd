//! What a process is doing at this instant, for a status line: its scheduler state and,
//! when not running, the system call it is in or else the kernel function it sleeps in.

use super::{open, stat::Stat, state_name, syscall::syscall_of, syscall_name, wchan_of, Pid};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    /// The `/proc/PID/stat` state letter.
    pub state: char,
    /// The system call it is in (root only).
    pub syscall: Option<u64>,
    /// Where it sleeps in the kernel, when it is in no system call we can see.
    pub wchan: Option<String>,
}

impl Activity {
    /// None when the process is gone.
    pub fn read(pid: Pid) -> Option<Activity> {
        let p = open(pid)?;
        let state = Stat::of(&p)?.state;
        let mut a = Activity {
            state,
            syscall: None,
            wchan: None,
        };
        if state == 'R' {
            return Some(a);
        }
        a.syscall = syscall_of(&p).and_then(|s| s.number());
        if a.syscall.is_none() {
            a.wchan = wchan_of(&p);
        }
        Some(a)
    }

    /// `running`, `sleeping in epoll_wait`, `sleeping in syscall 999`, `disk wait
    /// (folio_wait_bit_common)`; `fit` shortens the kernel function's name for the screen.
    pub fn words(&self, fit: impl Fn(&str) -> String) -> String {
        let mut out = state_name(self.state).to_string();
        match (self.syscall, &self.wchan) {
            (Some(nr), _) => match syscall_name(nr) {
                Some(name) => out.push_str(&format!(" in {name}")),
                None => out.push_str(&format!(" in syscall {nr}")),
            },
            (None, Some(w)) => out.push_str(&format!(" ({})", fit(w))),
            (None, None) => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_words() {
        let mut a = Activity {
            state: 'S',
            syscall: Some(libc::SYS_epoll_wait as u64),
            wchan: None,
        };
        assert_eq!(a.words(str::to_string), "sleeping in epoll_wait");
        a.syscall = Some(99_999);
        assert_eq!(a.words(str::to_string), "sleeping in syscall 99999");
        a = Activity {
            state: 'D',
            syscall: None,
            wchan: Some("folio_wait_bit_common".into()),
        };
        assert_eq!(a.words(|w| w[..5].to_string()), "disk wait (folio)");
        a.wchan = None;
        assert_eq!(a.words(str::to_string), "disk wait");
    }

    #[test]
    fn of_a_sleeping_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = child.id() as Pid;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let a = loop {
            let a = Activity::read(pid).unwrap();
            let settled = a.state == 'S'
                && (!super::super::has_capability(super::super::CAP_SYS_PTRACE)
                    || a.syscall.and_then(syscall_name).is_some());
            if settled || std::time::Instant::now() > deadline {
                break a;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(a.state, 'S');
        // CAP_SYS_PTRACE sees the system call, others at best the kernel function.
        if super::super::has_capability(super::super::CAP_SYS_PTRACE) {
            assert_eq!(
                a.syscall.and_then(syscall_name),
                Some("clock_nanosleep"),
                "{a:?}"
            );
        }
    }
}
