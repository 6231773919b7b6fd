//! The one reader of /proc for a live process, on the `procfs` crate. Every file of
//! `/proc/PID` that pg_trace looks at is opened here (or in `fds`, `memory` and
//! `status::kernel`, which call this module), so that its parsing lives in one place:
//! `stat`, `status`, `cmdline`, `io`, `syscall`, `wchan`, `net/tcp*` through the crate, and
//! what the crate lacks (`comm` without opening the process, `fdinfo`, the blocked form of
//! `syscall`, syscall names) next to it.

mod activity;
mod privilege;
mod stat;
mod syscall;

pub use activity::Activity;
pub use privilege::{
    has_capability, may_inspect, may_use_bpf, picker_note, ptrace_scope, Cap, Caps, NotPermitted,
    CAP_BPF, CAP_DAC_READ_SEARCH, CAP_PERFMON, CAP_SYS_ADMIN, CAP_SYS_PTRACE, SETCAP_HINT,
};
pub use stat::{parent_pid, stat, state_name, Stat, PF_EXITING};
pub use syscall::{parse_syscall, syscall, syscall_name, syscall_of, SyscallFile, SyscallNow};

use procfs::process::Process;
use std::io::Read;

pub type Pid = i32;

/// A handle on `/proc/PID` (an `O_PATH` directory fd): the files read through it are
/// opened relative to it, which is cheaper than a path walk from `/proc` each time and
/// cannot land on another process that reused the pid in between.
pub fn open(pid: Pid) -> Option<Process> {
    Process::new(pid).ok()
}

/// Whether `/proc/PID` still exists (a zombie does, until reaped).
pub fn exists(pid: Pid) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Where the executable of the process lives (`/proc/PID/exe`), as the kernel names it.
pub fn exe(pid: Pid) -> std::io::Result<std::path::PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/exe"))
}

/// The children of `parent`. `/proc/PID/task/PID/children` (a postmaster is single
/// threaded) costs one read instead of a walk over every process on the host, which
/// following parallel workers runs once per display interval; the walk remains for
/// kernels without it.
pub fn children(parent: Pid) -> Vec<Pid> {
    if let Ok(s) = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")) {
        return s
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<Pid>().ok())
        .filter(|&p| parent_pid(p) == Some(parent))
        .collect()
}

/// A command line is cut here: a title is short, and a hostile or huge command line must
/// not be copied whole.
const MAX_CMDLINE: u64 = 4096;

/// A postgres process title, from `/proc/PID/cmdline` (set_ps_display overwrites argv, so
/// the title is the whole area with NULs turned into spaces).
pub fn process_title(pid: Pid) -> Option<String> {
    title_of(&open(pid)?)
}

/// [`process_title`] through an open handle.
pub fn title_of(p: &Process) -> Option<String> {
    // procfs's `cmdline()` drops empty arguments and reads without bound; the title keeps
    // the area as the process wrote it, cut at MAX_CMDLINE.
    let mut raw = Vec::new();
    p.open_relative("cmdline")
        .ok()?
        .take(MAX_CMDLINE)
        .read_to_end(&mut raw)
        .ok()?;
    Some(
        String::from_utf8_lossy(&raw)
            .replace('\0', " ")
            .trim()
            .to_string(),
    )
}

/// The kernel's short name of the process (`/proc/PID/comm`), read by path: the picker
/// asks it of every process on the host to find the postgres ones, and opening each one
/// as a [`Process`] first would cost two more system calls apiece.
pub fn comm(pid: Pid) -> Option<String> {
    let mut buf = [0u8; 64];
    let mut f = std::fs::File::open(format!("/proc/{pid}/comm")).ok()?;
    let n = f.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).trim().to_string())
}

/// The arguments of every process on the host whose short name is `name` (cut at
/// MAX_CMDLINE each).
pub fn arguments_of_all(name: &str) -> Vec<Vec<String>> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<Pid>().ok())
        .filter(|&p| comm(p).as_deref() == Some(name))
        .filter_map(|p| {
            let mut raw = Vec::new();
            std::fs::File::open(format!("/proc/{p}/cmdline"))
                .ok()?
                .take(MAX_CMDLINE)
                .read_to_end(&mut raw)
                .ok()?;
            Some(
                raw.split(|&b| b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect(),
            )
        })
        .collect()
}

/// The kernel function the process sleeps in (`/proc/PID/wchan`); None when it runs, or
/// the kernel hides it ("0").
pub fn wchan(pid: Pid) -> Option<String> {
    wchan_of(&open(pid)?)
}

pub fn wchan_of(p: &Process) -> Option<String> {
    clean_wchan(&p.wchan().ok()?)
}

fn clean_wchan(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty() && s != "0").then(|| s.to_string())
}

/// `rchar`, `wchar`, `read_bytes`, `write_bytes` of `/proc/PID/io`: bytes through read and
/// write system calls (page cache hits included), and bytes the process made the block
/// layer fetch or write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Io {
    pub rchar: u64,
    pub wchar: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
}

pub fn io(pid: Pid) -> Option<Io> {
    io_of(&open(pid)?)
}

pub fn io_of(p: &Process) -> Option<Io> {
    let io = p.io().ok()?;
    Some(Io {
        rchar: io.rchar,
        wchar: io.wchar,
        read_bytes: io.read_bytes,
        write_bytes: io.write_bytes,
    })
}

/// The process's pid in each pid namespace it belongs to, outermost (the host's) first:
/// `NSpid` of `/proc/PID/status`. A postmaster in a container has two.
pub fn ns_pids(pid: Pid) -> Option<Vec<Pid>> {
    open(pid)?.status().ok()?.nspid
}

/// The largest `tx_queue` of the process's TCP sockets (IPv4 and IPv6, from its network
/// namespace's `net/tcp` and `net/tcp6`) whose inode is one of `inodes`.
pub fn tcp_send_queue(pid: Pid, inodes: &[u64]) -> Option<u64> {
    let p = open(pid)?;
    let v4 = p.tcp().unwrap_or_default();
    let v6 = p.tcp6().unwrap_or_default();
    largest_tx_queue(v4.iter().chain(&v6), inodes)
}

fn largest_tx_queue<'a>(
    rows: impl Iterator<Item = &'a procfs::net::TcpNetEntry>,
    inodes: &[u64],
) -> Option<u64> {
    rows.filter(|r| inodes.contains(&r.inode))
        .map(|r| u64::from(r.tx_queue))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use procfs::FromBufReadSI;

    fn me() -> Pid {
        std::process::id() as Pid
    }

    #[test]
    fn own_process() {
        assert!(exists(me()));
        assert!(!exists(-1));
        let t = process_title(me()).unwrap();
        assert!(!t.contains('\0') && !t.is_empty(), "{t:?}");
        assert!(comm(me()).is_some_and(|c| !c.is_empty() && !c.ends_with('\n')));
        assert_eq!(
            parent_pid(me()),
            Some(std::os::unix::process::parent_id() as Pid)
        );
        let io = io(me()).unwrap();
        assert!(io.rchar > 0);
        let ns = ns_pids(me()).unwrap();
        assert_eq!(ns.first(), Some(&me()), "{ns:?}");
        assert_eq!(process_title(-1), None);
        assert_eq!(io_of_missing(), None);
    }

    #[test]
    fn children_of_a_shell() {
        // The shell's own child: `task/PID/children` lists the children of that thread
        // only, and a test runs on a thread of its own.
        let mut sh = std::process::Command::new("sh")
            .args(["-c", "sleep 5 & echo $!; wait"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(sh.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        let sleeper: Pid = line.trim().parse().unwrap();
        let kids = children(sh.id() as Pid);
        let parent = parent_pid(sleeper);
        // SAFETY: kill(2) on the sleep this test started.
        unsafe { libc::kill(sleeper, libc::SIGKILL) };
        sh.wait().unwrap();
        assert_eq!(parent, Some(sh.id() as Pid));
        assert_eq!(kids, vec![sleeper]);
    }

    fn io_of_missing() -> Option<Io> {
        io(-1)
    }

    #[test]
    fn wchan_text() {
        assert_eq!(clean_wchan("0"), None);
        assert_eq!(clean_wchan("\n"), None);
        assert_eq!(
            clean_wchan("do_epoll_wait\n").as_deref(),
            Some("do_epoll_wait")
        );
    }

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 4001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1538 0100007F:D2F0 01 0001F400:00000010 01:00000014 00000000   999        0 4002 2 0000000000000000 20 4 30 10 -1
   2: 0100007F:1538 0100007F:D2F2 01 00FFFFFF:00000000 01:00000014 00000000   999        0 4003 2 0000000000000000 20 4 30 10 -1
";

    fn rows(text: &str) -> Vec<procfs::net::TcpNetEntry> {
        procfs::net::TcpNetEntries::from_buf_read(
            text.as_bytes(),
            &procfs::ExplicitSystemInfo {
                boot_time_secs: 0,
                ticks_per_second: 100,
                page_size: 4096,
                is_little_endian: cfg!(target_endian = "little"),
            },
        )
        .unwrap()
        .0
    }

    #[test]
    fn tcp_queues_of_our_inodes_only() {
        let r = rows(TCP);
        assert_eq!(largest_tx_queue(r.iter(), &[4001]), Some(0));
        assert_eq!(largest_tx_queue(r.iter(), &[4001, 4002]), Some(0x1f400));
        assert_eq!(largest_tx_queue(r.iter(), &[4002, 4003]), Some(0xffffff));
        assert_eq!(largest_tx_queue(r.iter(), &[9]), None);
        assert_eq!(largest_tx_queue(rows("").iter(), &[4001]), None);
    }

    proptest::proptest! {
        #[test]
        fn hostile_tcp_tables_never_panic(s in "[ -~\n]{0,300}") {
            let _ = procfs::net::TcpNetEntries::from_buf_read(s.as_bytes(), &procfs::ExplicitSystemInfo {
                boot_time_secs: 0,
                ticks_per_second: 100,
                page_size: 4096,
                is_little_endian: true,
            });
        }
    }
}
