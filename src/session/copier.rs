//! Copier mode's contact with the outside: which data directory a non-PostgreSQL process
//! (tar, rsync, cp, pgBackRest...) reads, its descendants (workers, compressors, rsync's
//! other halves), and its processes' kernel state. Everything comes from /proc links,
//! command lines and stat files: the copier's memory is never read.

use crate::model::copier::ProcSample;
use crate::pgdata::DataDir;
use crate::trace::Pid;
use std::path::{Path, PathBuf};

/// Descendants followed at most (a copier with more workers than this is unusual).
const MAX_DESCENDANTS: usize = 256;
/// Parents climbed from a path to its data directory.
const MAX_CLIMB: usize = 64;

/// Whether `/proc/PID` names a PostgreSQL binary (its comm or exe): such a process that
/// fails the server checks is refused, never taken for a copier.
pub fn named_postgres(pid: Pid) -> bool {
    let comm = crate::process::proc::comm(pid).unwrap_or_default();
    let exe = crate::process::proc::exe(pid).ok();
    let exe_name = exe.as_ref().and_then(|p| p.file_name()).map(|n| {
        n.to_string_lossy()
            .trim_end_matches(" (deleted)")
            .to_string()
    });
    matches!(comm.trim(), "postgres" | "postmaster")
        || matches!(exe_name.as_deref(), Some("postgres" | "postmaster"))
}

/// The data directory `pid` (or one of its descendants) reads: from its open files, its
/// working directory, then its arguments.
pub fn find_datadir(pid: Pid) -> Option<DataDir> {
    let mut pids = vec![pid];
    pids.extend(descendants(pid));
    let mut candidates: Vec<PathBuf> = Vec::new();
    for &p in &pids {
        if let Ok(rd) = std::fs::read_dir(format!("/proc/{p}/fd")) {
            for e in rd.flatten() {
                if let Ok(t) = std::fs::read_link(e.path()) {
                    if t.is_absolute() {
                        candidates.push(t);
                    }
                }
            }
        }
    }
    for &p in &pids {
        let cwd = std::fs::read_link(format!("/proc/{p}/cwd")).ok();
        if let Some(c) = &cwd {
            candidates.push(c.clone());
        }
        // `--pg1-path=/srv/pg`, `-C /srv`, `/srv/pg/`: any argument naming a path; a
        // shell's `-c` script is split into its words.
        let all = args(p);
        for word in all.iter().flat_map(|a| a.split_whitespace()).take(1024) {
            let value = word.split_once('=').map_or(word, |(_, v)| v);
            let path = Path::new(value);
            if path.is_absolute() {
                candidates.push(path.to_path_buf());
            } else if let Some(c) = &cwd {
                if !value.is_empty() && !value.starts_with('-') {
                    candidates.push(c.join(path));
                }
            }
        }
    }
    candidates.iter().find_map(|c| datadir_of(c))
}

/// The command line's arguments (bounded: a title is short, a hostile one is cut).
fn args(pid: Pid) -> Vec<String> {
    let Ok(bytes) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return Vec::new();
    };
    bytes
        .split(|&b| b == 0)
        .skip(1)
        .take(256)
        .filter(|a| !a.is_empty() && a.len() < 4096)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn is_datadir(dir: &Path) -> bool {
    dir.join("PG_VERSION").is_file() && dir.join("global/pg_control").is_file()
}

/// The data directory a path lies in: a directory above it holding `PG_VERSION` and
/// `global/pg_control`, or, for a file of a tablespace (`<location>/PG_16_2023.../...`),
/// the data directory of a running server whose `pg_tblspc` links to that location.
pub fn datadir_of(path: &Path) -> Option<DataDir> {
    let mut p = Some(path);
    for _ in 0..MAX_CLIMB {
        let dir = p?;
        if is_datadir(dir) {
            return DataDir::open(dir).ok();
        }
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned());
        if let (Some(name), Some(location)) = (name, dir.parent()) {
            if is_version_dir(&name) {
                if let Some(dd) = datadir_linking_to(location) {
                    return Some(dd);
                }
            }
        }
        p = dir.parent();
    }
    None
}

/// `PG_15_202209061`.
fn is_version_dir(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("PG_") else {
        return false;
    };
    let mut parts = rest.splitn(2, '_');
    let ok =
        |s: Option<&str>| s.is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    ok(parts.next()) && ok(parts.next())
}

/// The data directory of a running PostgreSQL server with a tablespace at `location`.
fn datadir_linking_to(location: &Path) -> Option<DataDir> {
    let want = std::fs::canonicalize(location).ok()?;
    let rd = std::fs::read_dir("/proc").ok()?;
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<Pid>().ok()) else {
            continue;
        };
        if !named_postgres(pid) {
            continue;
        }
        let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else {
            continue;
        };
        if !is_datadir(&cwd) {
            continue;
        }
        let Ok(links) = std::fs::read_dir(cwd.join("pg_tblspc")) else {
            continue;
        };
        let hit = links
            .flatten()
            .any(|l| std::fs::canonicalize(l.path()).is_ok_and(|t| t == want));
        if hit {
            return DataDir::open(&cwd).ok();
        }
    }
    None
}

/// Every descendant of `pid` (children of any of its threads, recursively), bounded.
pub fn descendants(pid: Pid) -> Vec<Pid> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for c in children_all_threads(p) {
            if out.len() >= MAX_DESCENDANTS {
                return out;
            }
            if c != pid && !out.contains(&c) {
                out.push(c);
                todo.push(c);
            }
        }
    }
    out.sort_unstable();
    out
}

/// A multi-threaded copier (pgBackRest, WAL-G) forks from any thread.
fn children_all_threads(pid: Pid) -> Vec<Pid> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for t in tasks.flatten().take(4096) {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<Pid>().ok()));
        }
    }
    out
}

/// The working directory of `pid`, for its relative paths.
pub fn cwd(pid: Pid) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/cwd"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// One process of the copier as /proc shows it now.
pub fn sample(pid: Pid) -> Option<ProcSample> {
    let k = crate::process::status::kernel::KernelState::read(pid);
    k.state?;
    let args = crate::process::proc::open(pid)
        .as_ref()
        .and_then(crate::process::proc::syscall_of)
        .and_then(|s| match s {
            crate::process::proc::SyscallNow::In { args, .. } => Some(args),
            _ => None,
        });
    Some(ProcSample {
        pid,
        comm: crate::process::proc::comm(pid)
            .unwrap_or_default()
            .trim()
            .to_string(),
        state: k.state,
        wchan: k.wchan,
        syscall: k.syscall,
        args,
        cpu_ticks: k.cpu_ticks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_dirs() {
        assert!(is_version_dir("PG_15_202209061"));
        assert!(!is_version_dir("PG_15"));
        assert!(!is_version_dir("PG_x_1"));
        assert!(!is_version_dir("base"));
    }
}
