//! What pg_trace may do here, feature by feature: never "am I root" but "do I hold what
//! this needs", from the effective capability set (`CapEff` of `/proc/self/status`). Root
//! holds every capability of its bounding set, so root and a binary given file
//! capabilities (`setcap`, see docs/usage.md) take the same paths.
//!
//! | feature | needs |
//! |---|---|
//! | eBPF syscall tracepoints, USDT uprobes | `CAP_BPF` + `CAP_PERFMON` (Linux ≥ 5.8; before: `CAP_SYS_ADMIN`) |
//! | another user's `/proc/PID/{cwd,exe,fd,fdinfo,io,syscall,maps,mem}`, its memory, ptrace | `CAP_SYS_PTRACE` |
//! | another user's data directory (mode 0700); the owner-only `/proc/PID/{fd,io,syscall,mem}` (the mode is checked before the ptrace rule: both are needed) | `CAP_DAC_READ_SEARCH` |
//!
//! A process of our own user needs neither of the last two, except that Yama's
//! `ptrace_scope` ≥ 1 asks `CAP_SYS_PTRACE` for its memory and `syscall` too.

/// One capability of linux/capability.h: its bit and its name as `setcap` and the
/// messages spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub bit: u32,
    pub name: &'static str,
}

pub const CAP_DAC_READ_SEARCH: Cap = Cap {
    bit: 2,
    name: "CAP_DAC_READ_SEARCH",
};
pub const CAP_SYS_PTRACE: Cap = Cap {
    bit: 19,
    name: "CAP_SYS_PTRACE",
};
pub const CAP_SYS_ADMIN: Cap = Cap {
    bit: 21,
    name: "CAP_SYS_ADMIN",
};
pub const CAP_PERFMON: Cap = Cap {
    bit: 38,
    name: "CAP_PERFMON",
};
pub const CAP_BPF: Cap = Cap {
    bit: 39,
    name: "CAP_BPF",
};

/// What looking inside another user's process needs (its /proc files, memory, data
/// directory).
pub const INSPECT_CAPS: [Cap; 2] = [CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH];

/// The hint every refusal ends with.
pub const SETCAP_HINT: &str = "run as root, or see `setcap` in docs/usage.md";

/// A capability set: one bit per capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Caps(pub u64);

impl Caps {
    /// Our effective set; empty when it cannot be read (so nothing is assumed held).
    pub fn effective() -> Caps {
        Caps(
            procfs::process::Process::myself()
                .and_then(|p| p.status())
                .map_or(0, |s| s.capeff),
        )
    }

    pub fn has(self, c: Cap) -> bool {
        c.bit < 64 && self.0 & (1 << c.bit) != 0
    }

    /// The names of those of `need` not held, in order.
    pub fn missing(self, need: &[Cap]) -> Vec<&'static str> {
        need.iter()
            .filter(|c| !self.has(**c))
            .map(|c| c.name)
            .collect()
    }
}

/// Whether capability `cap` is in our effective set.
pub fn has_capability(cap: Cap) -> bool {
    Caps::effective().has(cap)
}

/// A feature refused for want of a privilege: one line, ending with what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotPermitted(pub String);

/// `major.minor` of the running kernel (`/proc/sys/kernel/osrelease`).
pub fn kernel_release() -> Option<(u32, u32)> {
    parse_release(&std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?)
}

fn parse_release(s: &str) -> Option<(u32, u32)> {
    let mut it = s.trim().split(['.', '-']);
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// Loading tracing BPF programs and opening their perf events (tracepoints, uprobes).
/// `CAP_SYS_ADMIN` covers it everywhere; from Linux 5.8, `CAP_BPF` + `CAP_PERFMON` do.
pub fn bpf_verdict(caps: Caps, kernel: Option<(u32, u32)>) -> Result<(), String> {
    if caps.has(CAP_SYS_ADMIN) {
        return Ok(());
    }
    match kernel {
        Some(k) if k < (5, 8) => Err(format!(
            "Linux {}.{} lets only CAP_SYS_ADMIN load tracing programs (CAP_BPF and \
             CAP_PERFMON came in 5.8): {SETCAP_HINT}",
            k.0, k.1
        )),
        _ => {
            let missing = caps.missing(&[CAP_BPF, CAP_PERFMON]);
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "it needs CAP_BPF and CAP_PERFMON (missing: {}): {SETCAP_HINT}",
                    missing.join(", ")
                ))
            }
        }
    }
}

/// [`bpf_verdict`] for us, here.
pub fn may_use_bpf() -> Result<(), String> {
    bpf_verdict(Caps::effective(), kernel_release())
}

/// Whether we may look inside a process whose real, effective and saved uids are `theirs`
/// (its /proc files, its memory, its data directory): as the same user, or holding
/// [`INSPECT_CAPS`]. `who` names the process in the message.
pub fn inspect_verdict(caps: Caps, ours: u32, theirs: [u32; 3], who: &str) -> Result<(), String> {
    if theirs.iter().all(|&u| u == ours) {
        return Ok(());
    }
    let missing = caps.missing(&INSPECT_CAPS);
    if missing.is_empty() {
        return Ok(());
    }
    let owner = theirs[1];
    let named = user_name(owner).map_or(format!("uid {owner}"), |n| format!("user {n}"));
    Err(format!(
        "{who} belongs to {named}: looking inside another user's process needs \
         CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (missing: {}): {SETCAP_HINT}",
        missing.join(", ")
    ))
}

/// Whether we may look inside `pid`: see [`inspect_verdict`]. A process that cannot be
/// read at all is left to the caller's own error (it may be gone).
pub fn may_inspect(pid: i32, what: &str) -> Result<(), NotPermitted> {
    let Some(s) = procfs::process::Process::new(pid)
        .ok()
        .and_then(|p| p.status().ok())
    else {
        return Ok(());
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let ours = unsafe { libc::geteuid() };
    inspect_verdict(
        Caps::effective(),
        ours,
        [s.ruid, s.euid, s.suid],
        &format!("{what}: pid {pid}"),
    )
    .map_err(NotPermitted)
}

/// The note of the picker when we cannot look inside other users' processes.
pub fn picker_note() -> Option<String> {
    let missing = Caps::effective().missing(&INSPECT_CAPS);
    (!missing.is_empty()).then(|| {
        format!(
            "without {}: only your own processes can be attached",
            missing.join(" and ")
        )
    })
}

/// The login name of `uid` from /etc/passwd (read as data: a line that does not parse is
/// skipped).
fn user_name(uid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    name_in_passwd(&text, uid)
}

fn name_in_passwd(text: &str, uid: u32) -> Option<String> {
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let u: u32 = f.nth(1)?.parse().ok()?;
        (u == uid && !name.is_empty()).then(|| crate::text::visible(name).into_owned())
    })
}

/// `kernel.yama.ptrace_scope`: who may attach with ptrace; None without Yama.
pub fn ptrace_scope() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope")
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(list: &[Cap]) -> Caps {
        Caps(list.iter().fold(0, |a, c| a | 1 << c.bit))
    }

    #[test]
    fn bpf_needs_bpf_and_perfmon_or_sys_admin() {
        let new = Some((6, 1));
        assert_eq!(bpf_verdict(caps(&[CAP_BPF, CAP_PERFMON]), new), Ok(()));
        assert_eq!(bpf_verdict(caps(&[CAP_SYS_ADMIN]), new), Ok(()));
        assert_eq!(bpf_verdict(caps(&[CAP_SYS_ADMIN]), Some((5, 4))), Ok(()));
        let e = bpf_verdict(caps(&[CAP_PERFMON]), new).unwrap_err();
        assert!(e.contains("(missing: CAP_BPF)"), "{e}");
        let e = bpf_verdict(Caps(0), None).unwrap_err();
        assert!(e.contains("(missing: CAP_BPF, CAP_PERFMON)"), "{e}");
        let e = bpf_verdict(caps(&[CAP_BPF, CAP_PERFMON]), Some((5, 4))).unwrap_err();
        assert!(e.starts_with("Linux 5.4 lets only CAP_SYS_ADMIN"), "{e}");
    }

    #[test]
    fn inspecting_another_user_needs_ptrace_and_dac() {
        let both = caps(&INSPECT_CAPS);
        assert_eq!(inspect_verdict(Caps(0), 7, [7, 7, 7], "x"), Ok(()));
        assert_eq!(inspect_verdict(both, 7, [8, 8, 8], "x"), Ok(()));
        // A setuid process keeps its real uid: not ours to read whole.
        let e = inspect_verdict(caps(&[CAP_SYS_PTRACE]), 7, [7, 0, 0], "pid 9").unwrap_err();
        assert!(e.starts_with("pid 9 belongs to "), "{e}");
        assert!(e.contains("(missing: CAP_DAC_READ_SEARCH)"), "{e}");
        assert!(e.ends_with(SETCAP_HINT), "{e}");
    }

    #[test]
    fn releases_and_passwd() {
        assert_eq!(parse_release("6.18.44-fc-v1045\n"), Some((6, 18)));
        assert_eq!(parse_release("5.4.0-150-generic"), Some((5, 4)));
        assert_eq!(parse_release("garbage"), None);
        let pw = "root:x:0:0::/root:/bin/sh\n\nbroken\npostgres:x:101:104::/var:/bin/sh\n:x:5:5\n";
        assert_eq!(name_in_passwd(pw, 101).as_deref(), Some("postgres"));
        assert_eq!(name_in_passwd(pw, 5), None);
        assert_eq!(name_in_passwd(pw, 9), None);
    }

    #[test]
    fn our_own_set() {
        let me = Caps::effective();
        assert_eq!(me.has(CAP_SYS_PTRACE), has_capability(CAP_SYS_PTRACE));
        assert!(!me.has(Cap { bit: 64, name: "" }));
    }
}
