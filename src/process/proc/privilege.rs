//! Whether we may look inside other processes: the one root check, and capabilities from
//! `CapEff` of `/proc/self/status`.

/// Effective user id 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The one-line error of a command that needs root: `MESSAGE (try sudo)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} (try sudo)")]
pub struct NotRoot(pub String);

/// Ok as root; otherwise `message` with the hint to use sudo.
pub fn require_root(message: impl FnOnce() -> String) -> Result<(), NotRoot> {
    if is_root() {
        Ok(())
    } else {
        Err(NotRoot(message()))
    }
}

/// `CAP_SYS_PTRACE` of linux/capability.h.
pub const CAP_SYS_PTRACE: u32 = 19;

/// Whether capability `cap` is in our effective set.
pub fn has_capability(cap: u32) -> bool {
    procfs::process::Process::myself()
        .and_then(|p| p.status())
        .is_ok_and(|s| cap < 64 && s.capeff & (1 << cap) != 0)
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

    #[test]
    fn root_and_capabilities_agree() {
        // Root holds every capability unless the host took some away; a non-root user
        // holds none here.
        if !is_root() {
            assert!(!has_capability(CAP_SYS_PTRACE));
            assert_eq!(
                require_root(|| "pg_trace must run as root to attach to pid 7".into())
                    .unwrap_err()
                    .to_string(),
                "pg_trace must run as root to attach to pid 7 (try sudo)"
            );
        } else {
            assert_eq!(require_root(|| unreachable!()), Ok(()));
        }
        assert!(!has_capability(64));
    }
}
