//! Whether a process is PostgreSQL. Its name and working directory prove nothing (a
//! renamed `/bin/sleep` started in a data directory has both); what a server process
//! cannot lack is checked instead: its binary exports PostgreSQL's symbols, the server of
//! that data directory (the pid in `postmaster.pid`) is it or one of its ancestors, and it
//! maps the server's shared memory.

use super::memory::{self, MemError, Symbols};
use super::proc::{self, Pid};

/// Symbols every PostgreSQL 12–18 server exports in `.dynsym` (extensions link against
/// them, so even a stripped build keeps them): the postmaster's entry point, and the
/// shared buffer descriptors pg_trace reads.
pub const POSTGRES_SYMBOLS: &[&str] = &["PostmasterMain", "BufferDescriptors"];

/// How deep the parent chain is followed: a server's processes are the postmaster's
/// children; a container or a supervisor adds a few levels, never dozens.
const MAX_ANCESTORS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum NotPostgres {
    #[error("pid {pid} is not a PostgreSQL process ({why})")]
    Not { pid: Pid, why: String },
    /// Its binary or memory map could not be read: no verdict either way.
    #[error("cannot tell whether pid {pid} is a PostgreSQL process: {why}")]
    Unreadable { pid: Pid, why: String },
}

/// What the data directory says about its running server (`postmaster.pid`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerClaims {
    /// Line 1: the postmaster's pid, as its own pid namespace numbers it.
    pub postmaster: Pid,
    /// Line 7: the System V shared memory key, when written.
    pub shmem_key: Option<u32>,
}

/// Check that `pid` is a process of the server the claims describe.
pub fn check(pid: Pid, claims: ServerClaims) -> Result<(), NotPostgres> {
    let not = |why: String| NotPostgres::Not { pid, why };
    let unreadable = |why: String| NotPostgres::Unreadable { pid, why };
    let exe = proc::exe(pid)
        .map(|p| {
            p.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_string()
        })
        .unwrap_or_else(|_| format!("/proc/{pid}/exe"));
    let syms = Symbols::load(pid).map_err(|e| match e {
        MemError::Layout { .. } => not(format!("its binary {exe} is not a readable ELF file")),
        MemError::Gone(_) => unreadable("it exited".into()),
        MemError::Open { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            unreadable(format!(
                "its binary {exe}: permission denied (another user's process needs \
                 CAP_SYS_PTRACE: {})",
                proc::SETCAP_HINT
            ))
        }
        e => unreadable(format!("its binary {exe}: {e}")),
    })?;
    if let Some(missing) = missing_symbol(|s| syms.get(s).is_some()) {
        return Err(not(format!(
            "its binary {exe} has no PostgreSQL symbols (no {missing})"
        )));
    }
    if !descends_from(pid, claims.postmaster) {
        return Err(not(format!(
            "the server of its data directory is pid {} (postmaster.pid), which is neither it nor an ancestor",
            claims.postmaster
        )));
    }
    // The syslogger detaches from shared memory by design; a child of the server running
    // the server's very binary file is one of its processes all the same.
    if pid != claims.postmaster
        && proc::parent_pid(pid) == Some(claims.postmaster)
        && same_file(pid, claims.postmaster)
    {
        return Ok(());
    }
    let maps = memory::maps(pid).map_err(|e| unreadable(format!("its memory map: {e}")))?;
    let paths: Vec<&str> = maps.iter().map(|m| m.path.as_str()).collect();
    if !maps_server_memory(&paths, claims.shmem_key) || memory::main_segments(&maps).is_empty() {
        return Err(not(match claims.shmem_key {
            Some(k) => format!("it does not map the server's shared memory /SYSV{k:08x}"),
            None => "it maps no shared memory".to_string(),
        }));
    }
    Ok(())
}

/// Whether two processes run the same executable file (device and inode).
fn same_file(a: Pid, b: Pid) -> bool {
    use std::os::unix::fs::MetadataExt;
    let id = |p: Pid| {
        std::fs::metadata(format!("/proc/{p}/exe"))
            .ok()
            .map(|m| (m.dev(), m.ino()))
    };
    matches!((id(a), id(b)), (Some(x), Some(y)) if x == y)
}

/// The first of [`POSTGRES_SYMBOLS`] the binary lacks.
pub fn missing_symbol(has: impl Fn(&str) -> bool) -> Option<&'static str> {
    POSTGRES_SYMBOLS.iter().copied().find(|s| !has(s))
}

/// Whether the mappings' paths include the server's SysV segment (without a key, any
/// shared segment is all that can be asked for).
pub fn maps_server_memory(paths: &[&str], key: Option<u32>) -> bool {
    match key {
        Some(k) => {
            let want = format!("/SYSV{k:08x}");
            paths
                .iter()
                .any(|p| p.trim_end_matches(" (deleted)") == want)
        }
        None => true,
    }
}

/// `postmaster` is `pid` or one of its ancestors, by host pid or by the pid its own
/// namespace gives it (postmaster.pid holds the latter for a server in a container).
fn descends_from(pid: Pid, postmaster: Pid) -> bool {
    let mut p = pid;
    for _ in 0..MAX_ANCESTORS {
        if p == postmaster || proc::ns_pids(p).is_some_and(|ns| ns.contains(&postmaster)) {
            return true;
        }
        match proc::parent_pid(p) {
            Some(parent) if parent > 0 && parent != p => p = parent,
            _ => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_of_a_server() {
        assert_eq!(missing_symbol(|_| true), None);
        assert_eq!(
            missing_symbol(|s| s == "PostmasterMain"),
            Some("BufferDescriptors")
        );
        assert_eq!(missing_symbol(|_| false), Some("PostmasterMain"));
    }

    #[test]
    fn the_servers_segment_by_key() {
        let paths = [
            "/usr/bin/postgres",
            "/dev/zero (deleted)",
            "/SYSV0052e2c1 (deleted)",
        ];
        assert!(maps_server_memory(&paths, Some(0x0052e2c1)));
        assert!(!maps_server_memory(&paths, Some(0x0052e2c2)));
        assert!(maps_server_memory(&["/SYSVffffffff"], Some(u32::MAX)));
        assert!(maps_server_memory(&paths, None));
    }

    /// This test process descends from pid 1 and from its parent, not from a child of it.
    #[test]
    fn ancestry() {
        let me = std::process::id() as Pid;
        assert!(descends_from(me, me));
        assert!(descends_from(me, proc::parent_pid(me).unwrap()));
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        assert!(!descends_from(me, child.id() as Pid));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// A binary without PostgreSQL's symbols (this test's own) is refused, by that reason.
    #[test]
    fn a_binary_without_symbols_is_refused() {
        let me = std::process::id() as Pid;
        let e = check(
            me,
            ServerClaims {
                postmaster: me,
                shmem_key: None,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("has no PostgreSQL symbols"), "{e}");
        assert!(
            e.to_string().starts_with(&format!(
                "pid {me} is not a PostgreSQL process (its binary /"
            )),
            "{e}"
        );
    }
}
