//! A server in its own namespaces (Docker, Podman, Kubernetes, systemd-nspawn), seen from
//! the host. Two things differ from a server on the host:
//! - its file system: the paths it uses (its working directory, tablespace links,
//!   `/proc/PID/fd` targets) are paths under its root, which the host reaches through
//!   `/proc/PID/root`;
//! - its pids: `postmaster.pid`, PGPROC and PgBackendStatus hold the numbers its own pid
//!   namespace gives; the kernel (eBPF's `bpf_get_current_pid_tgid`, `/proc`, signals)
//!   wants the host's. `/proc/X/status` `NSpid` lists a process's pid in each namespace,
//!   outermost first, which maps one to the other within one namespace
//!   (`/proc/X/ns/pid` says which).

use super::proc::{self, Pid};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The identity (device, inode) of a namespace or directory.
fn id_of(path: &str) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The inode of `pid`'s pid namespace.
pub fn pid_ns(pid: Pid) -> Option<u64> {
    id_of(&format!("/proc/{pid}/ns/pid")).map(|(_, ino)| ino)
}

/// Whether `pid` lives in another pid namespace than pg_trace (false when it cannot be told).
pub fn in_other_pid_ns(pid: Pid) -> bool {
    match (pid_ns(pid), id_of("/proc/self/ns/pid")) {
        (Some(a), Some((_, b))) => a != b,
        _ => false,
    }
}

/// `/proc/PID/root` when `pid` sees another file system than pg_trace (another mount
/// namespace or another root directory): its paths then mean something only under that
/// prefix. None when its paths are ours (or nothing can be told).
pub fn foreign_root(pid: Pid) -> Option<PathBuf> {
    let root = format!("/proc/{pid}/root");
    let other_mounts = match (
        id_of(&format!("/proc/{pid}/ns/mnt")),
        id_of("/proc/self/ns/mnt"),
    ) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    };
    let other_root = match (id_of(&root), id_of("/")) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    };
    (other_mounts || other_root).then(|| PathBuf::from(root))
}

/// Where an absolute path of a process under `root` (a [`foreign_root`]) is on the host.
/// `..` is resolved lexically first: after `/proc/PID/root` it would climb out of the
/// container into the host's directories.
pub fn under_root(root: Option<&Path>, path: &Path) -> PathBuf {
    let Some(r) = root else {
        return path.to_path_buf();
    };
    let mut clean = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::Normal(n) => clean.push(n),
            std::path::Component::ParentDir => {
                clean.pop();
            }
            _ => {}
        }
    }
    r.join(clean)
}

/// The pid `pid` has in its own (innermost) namespace, when that differs from ours.
pub fn ns_pid(pid: Pid) -> Option<Pid> {
    let nspid = proc::ns_pids(pid)?;
    let inner = *nspid.last()?;
    (nspid.len() > 1 && inner != pid).then_some(inner)
}

/// Host pids of the processes of one pid namespace, by the pid that namespace gives them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PidMap {
    to_host: HashMap<Pid, Pid>,
}

impl PidMap {
    /// Every process in `member`'s pid namespace; None when that is pg_trace's own
    /// namespace (pids are host pids already) or cannot be read.
    pub fn of(member: Pid) -> Option<PidMap> {
        if !in_other_pid_ns(member) {
            return None;
        }
        let ns = pid_ns(member)?;
        let dir = std::fs::read_dir("/proc").ok()?;
        let to_host = dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<Pid>().ok())
            .filter(|&p| pid_ns(p) == Some(ns))
            .filter_map(|p| Some((*proc::ns_pids(p)?.last()?, p)))
            .collect();
        Some(PidMap { to_host })
    }

    /// Built from (namespace pid, host pid) pairs.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (Pid, Pid)>) -> PidMap {
        PidMap {
            to_host: pairs.into_iter().collect(),
        }
    }

    /// The host pid of the process the namespace calls `ns_pid`.
    pub fn host(&self, ns_pid: Pid) -> Option<Pid> {
        self.to_host.get(&ns_pid).copied()
    }

    /// The namespace's pid of the process the host calls `host`.
    pub fn ns(&self, host: Pid) -> Option<Pid> {
        self.to_host
            .iter()
            .find(|&(_, &h)| h == host)
            .map(|(&n, _)| n)
    }
}

/// The host pid of the process that `member`'s pid namespace calls `in_ns`: `in_ns`
/// itself when `member` shares pg_trace's namespace. `member` and its ancestors are
/// looked at first (the usual question is a backend's postmaster), then every process.
pub fn host_pid(member: Pid, in_ns: Pid) -> Option<Pid> {
    if !in_other_pid_ns(member) {
        return Some(in_ns);
    }
    let ns = pid_ns(member)?;
    let mut p = member;
    for _ in 0..64 {
        if pid_ns(p) != Some(ns) {
            break;
        }
        if proc::ns_pids(p).and_then(|v| v.last().copied()) == Some(in_ns) {
            return Some(p);
        }
        match proc::parent_pid(p) {
            Some(parent) if parent > 0 && parent != p => p = parent,
            _ => break,
        }
    }
    PidMap::of(member)?.host(in_ns)
}

/// Host pids of the postgres processes, in other pid namespaces, that their namespace
/// calls `in_ns`: the candidates for a container's `postmaster.pid`.
pub fn postmasters_called(in_ns: Pid) -> Vec<Pid> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<Pid>().ok())
        .filter(|&p| matches!(proc::comm(p).as_deref(), Some("postgres" | "postmaster")))
        .filter(|&p| ns_pid(p) == Some(in_ns))
        .collect()
}

/// What a process's `/proc/PID/cgroup` says of the container it runs in: `docker
/// 0123456789ab`, `podman 0123456789ab`, `kubernetes pod 1a2b3c4d container
/// 0123456789ab`, `nspawn NAME`, `lxc NAME`; None for none of these.
pub fn container_from_cgroup(text: &str) -> Option<String> {
    let short = |id: &str| id.chars().take(12).collect::<String>();
    // cgroup v2 has one line (`0::/path`), v1 one per hierarchy: any will do.
    for line in text.lines() {
        let path = line.splitn(3, ':').nth(2).unwrap_or("");
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let id_in = |p: &str| -> Option<String> {
            for prefix in [
                "docker-",
                "libpod-",
                "cri-containerd-",
                "crio-",
                "containerd-",
            ] {
                if let Some(rest) = p.strip_prefix(prefix) {
                    let id = rest.strip_suffix(".scope").unwrap_or(rest);
                    if id.len() >= 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Some(short(id));
                    }
                }
            }
            (p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit())).then(|| short(p))
        };
        if parts.iter().any(|p| p.starts_with("kubepods")) {
            let pod = parts.iter().find_map(|p| {
                // `pod<uid>` (cgroupfs) or `kubepods-<qos>-pod<uid>.slice` (systemd).
                let p = p.strip_suffix(".slice").unwrap_or(p);
                let uid = p
                    .strip_prefix("pod")
                    .or_else(|| p.rsplit_once("-pod").map(|(_, u)| u))?;
                (uid.len() >= 8).then(|| uid.chars().take(8).collect::<String>())
            });
            let container = parts.last().and_then(|p| id_in(p));
            let mut s = "kubernetes".to_string();
            if let Some(pod) = pod {
                s.push_str(&format!(" pod {pod}"));
            }
            if let Some(c) = container {
                s.push_str(&format!(" container {c}"));
            }
            return Some(s);
        }
        for (i, p) in parts.iter().enumerate() {
            if let Some(m) = p.strip_prefix("machine-") {
                if i > 0 && parts[i - 1] == "machine.slice" {
                    let name = m.strip_suffix(".scope").unwrap_or(m).replace("\\x2d", "-");
                    return Some(format!("nspawn {name}"));
                }
            }
            if let Some(name) = p.strip_prefix("lxc.payload.") {
                return Some(format!("lxc {name}"));
            }
            if *p == "lxc" {
                if let Some(name) = parts.get(i + 1) {
                    return Some(format!("lxc {name}"));
                }
            }
            let engine = if p.starts_with("libpod") || parts.contains(&"libpod_parent") {
                "podman"
            } else if p.starts_with("docker") || parts.first() == Some(&"docker") {
                "docker"
            } else {
                continue;
            };
            if let Some(id) = id_in(p).or_else(|| parts.get(i + 1).and_then(|n| id_in(n))) {
                return Some(format!("{engine} {id}"));
            }
        }
    }
    None
}

/// The host name of `pid`'s UTS namespace (what `hostname` says inside its container):
/// asked on a thread of its own that joins that namespace, so pg_trace's own is untouched.
/// None when it is pg_trace's namespace or cannot be joined (not root).
pub fn uts_hostname(pid: Pid) -> Option<String> {
    let theirs = id_of(&format!("/proc/{pid}/ns/uts"))?;
    if Some(theirs) == id_of("/proc/self/ns/uts") {
        return None;
    }
    let f = std::fs::File::open(format!("/proc/{pid}/ns/uts")).ok()?;
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        // SAFETY: setns on a namespace fd we hold, on this thread only (a UTS namespace
        // may be joined by one thread of a process); the thread ends right after.
        if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWUTS) } != 0 {
            return None;
        }
        // SAFETY: uname fills the zeroed struct we own.
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: as above; `u` is valid for writes.
        if unsafe { libc::uname(&mut u) } != 0 {
            return None;
        }
        let bytes: Vec<u8> = u
            .nodename
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        Some(String::from_utf8_lossy(&bytes).into_owned())
    })
    .join()
    .ok()
    .flatten()
}

/// The container `pid` runs in, for the picker: by its cgroup, else by its host name when
/// its UTS namespace has another, else `pid namespace N`. None for a process in
/// pg_trace's own pid and mount namespaces.
pub fn container_label(pid: Pid) -> Option<String> {
    if !in_other_pid_ns(pid) && foreign_root(pid).is_none() {
        return None;
    }
    // A cgroup that is pg_trace's own says nothing of the server (both may run in one
    // container, or the server's engine made no cgroup of its own).
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let ours = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    if cgroup != ours {
        if let Some(c) = container_from_cgroup(&cgroup) {
            return Some(c);
        }
    }
    if let Some(h) = uts_hostname(pid).filter(|h| !h.is_empty()) {
        return Some(format!("host {h}"));
    }
    match pid_ns(pid) {
        Some(n) => Some(format!("pid namespace {n}")),
        None => Some("another mount namespace".into()),
    }
}

/// Said once when tracing a process in a container: which paths and pids are whose.
pub fn container_note(pid: Pid, inside: &Path, here: &Path) -> String {
    let who = container_label(pid).unwrap_or_else(|| "another mount namespace".into());
    let pid_inside = match ns_pid(pid) {
        Some(n) => format!(" (pid {n} inside)"),
        None => String::new(),
    };
    format!(
        "pid {pid}{pid_inside} runs in a container ({who}): its data directory {} is read \
         from the host as {}; pids shown are the host's",
        inside.display(),
        here.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_by_cgroup() {
        let id = "4f1d2c3b4a5968778695a4b3c2d1e0f11234567890abcdef1234567890abcdef";
        assert_eq!(
            container_from_cgroup(&format!("0::/system.slice/docker-{id}.scope\n")),
            Some("docker 4f1d2c3b4a59".into())
        );
        assert_eq!(
            container_from_cgroup(&format!("12:memory:/docker/{id}\n")),
            Some("docker 4f1d2c3b4a59".into())
        );
        assert_eq!(
            container_from_cgroup(&format!(
                "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{id}.scope/container\n"
            )),
            Some("podman 4f1d2c3b4a59".into())
        );
        assert_eq!(
            container_from_cgroup(&format!(
                "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b3c4d_5e6f_7a8b_9c0d_112233445566.slice/cri-containerd-{id}.scope\n"
            )),
            Some("kubernetes pod 1a2b3c4d container 4f1d2c3b4a59".into())
        );
        assert_eq!(
            container_from_cgroup("0::/machine.slice/machine-pg\\x2dtest.scope/payload\n"),
            Some("nspawn pg-test".into())
        );
        assert_eq!(
            container_from_cgroup("0::/lxc.payload.db1/init.scope\n"),
            Some("lxc db1".into())
        );
        assert_eq!(
            container_from_cgroup("0::/user.slice/user-0.slice/session-3.scope\n"),
            None
        );
        assert_eq!(container_from_cgroup("0::/docker\n"), None);
        assert_eq!(container_from_cgroup(""), None);
        assert_eq!(container_from_cgroup(":::::\n\0\u{ff}"), None);
    }

    #[test]
    fn own_process_is_at_home() {
        let me = std::process::id() as Pid;
        assert_eq!(foreign_root(me), None);
        assert!(!in_other_pid_ns(me));
        assert_eq!(ns_pid(me), None);
        assert_eq!(host_pid(me, me), Some(me));
        assert_eq!(PidMap::of(me), None);
        assert_eq!(container_label(me), None);
        assert_eq!(uts_hostname(me), None);
        assert_eq!(
            under_root(Some(Path::new("/proc/7/root")), Path::new("/mnt/pg")),
            PathBuf::from("/proc/7/root/mnt/pg")
        );
        assert_eq!(
            under_root(
                Some(Path::new("/proc/7/root")),
                Path::new("/mnt/../../../etc/x")
            ),
            PathBuf::from("/proc/7/root/etc/x")
        );
        assert_eq!(
            under_root(None, Path::new("/mnt/pg")),
            PathBuf::from("/mnt/pg")
        );
        let m = PidMap::from_pairs([(1, 4000), (7, 4007)]);
        assert_eq!((m.host(7), m.host(8)), (Some(4007), None));
        assert_eq!((m.ns(4007), m.ns(7)), (Some(7), None));
    }
}
