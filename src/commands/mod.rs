//! The subcommands: each gathers what it shows from the layers below (the data
//! directory, the process, its binary) and hands it to `output` to be written. The trace
//! itself is `session`.

pub mod catalog;
pub mod probes;
pub mod ps;
pub mod report;
pub mod resolve;

use crate::cli::Target;
use crate::pgdata::DataDir;
use crate::process::ns;
use anyhow::{bail, Result};
use std::path::Path;

/// The data directory a subcommand reads: `--pgdata DIR`, else the one of `-p PID`.
pub fn datadir(target: &Target, pid: Option<i32>) -> Result<DataDir> {
    Ok(match (&target.pgdata, pid) {
        (Some(dir), _) => {
            let mut dd = DataDir::open(dir)?;
            // A server in a container wrote the pid its own namespace gives it.
            // Found once: the resolver asks again.
            dd.postmaster_host = live_process(&dd, None);
            dd
        }
        (None, Some(pid)) => postgres_datadir(pid)?,
        (None, None) => {
            bail!("give the data directory with --pgdata DIR or a postgres process with -p PID")
        }
    })
}

/// The data directory of `pid`, once its binary and its shared memory say it is a process
/// of that directory's server: a process named `postgres` whose working directory is a
/// data directory may be anything. A server in a container is read through its root
/// (`/proc/PID/root`), and the postmaster's pid it wrote is mapped to the host's.
pub fn postgres_datadir(pid: i32) -> Result<DataDir> {
    // Before /proc/PID/cwd: its refusal would name no capability.
    crate::process::proc::may_inspect(pid, "cannot read its data directory")?;
    let fs_root = ns::foreign_root(pid);
    let mut dd = DataDir::from_pid_in(pid, fs_root.as_deref())?;
    let in_file = dd.postmaster_pid_in_file()?;
    if ns::in_other_pid_ns(pid) {
        let Some(host) = ns::host_pid(pid, in_file) else {
            bail!(
                "pid {pid} is in a container whose postmaster.pid names pid {in_file}, \
                 which no process of that container has"
            );
        };
        dd.postmaster_host = Some(host);
    }
    let claims = crate::process::postgres_binary::ServerClaims {
        postmaster: dd.postmaster_pid()?,
        shmem_key: dd.shmem_key(),
    };
    crate::process::postgres_binary::check(pid, claims)?;
    Ok(dd)
}

/// Whether two paths are the same directory (device and inode: a container's data
/// directory is reached by two paths, the host's and `/proc/PID/root/...`).
fn same_dir(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// What `-p PID` traces: a process of a PostgreSQL server, or (copier mode) a process
/// that is not PostgreSQL but reads a data directory (tar, rsync, cp, pgBackRest...).
pub enum Traced {
    Server(DataDir),
    Copier(DataDir),
}

/// [`postgres_datadir`], else copier mode for a process that is not named postgres and
/// reads a data directory; anything else keeps the refusal.
pub fn traced(pid: i32) -> Result<Traced> {
    match postgres_datadir(pid) {
        Ok(dd) => Ok(Traced::Server(dd)),
        Err(e) if !crate::session::copier::named_postgres(pid) => {
            match crate::session::copier::find_datadir(pid) {
                Some(dd) => Ok(Traced::Copier(dd)),
                None => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// The running server of `dd` whose memory can be read: `pid` when given (already checked
/// to be one of its processes), else the postmaster of `postmaster.pid` once it is checked
/// to be this directory's server (a copied data directory names the original's). A
/// server in a container wrote the pid its namespace gives it: the postmaster is then
/// the process with that namespace pid whose data directory (through its root) is `dd`.
fn live_process(dd: &DataDir, pid: Option<i32>) -> Option<i32> {
    if let Some(p) = pid {
        return Some(p);
    }
    if let Some(p) = dd.postmaster_host {
        return Some(p);
    }
    let pm = dd.postmaster_pid_in_file().ok()?;
    // Its working directory first (one stat): the full check reads the binary, and a
    // copied data directory names a server that works elsewhere.
    let serves = |p: i32| {
        same_dir(Path::new(&format!("/proc/{p}/cwd")), &dd.root)
            && postgres_datadir(p)
                .ok()
                .is_some_and(|theirs| same_dir(&theirs.root, &dd.root))
    };
    if serves(pm) {
        return Some(pm);
    }
    ns::postmasters_called(pm).into_iter().find(|&p| serves(p))
}

/// A resolver over the catalog as the running server has it in shared memory (fresh
/// after DDL without a checkpoint), else over the disk; the second part is why names come
/// from the disk while a server runs (said once, on stderr, by the caller).
pub fn resolver(
    dd: &DataDir,
    pid: Option<i32>,
) -> Result<(crate::pgdata::Resolver, Option<String>)> {
    use crate::pgdata::Resolver;
    let Some(live) = live_process(dd, pid) else {
        // No server: its shutdown checkpoint wrote everything, the disk is the catalog.
        return Ok((Resolver::new(dd)?, None));
    };
    match crate::naming::MemoryOverlay::open(dd, live) {
        Ok(o) => Ok((Resolver::with_overlay(dd, Box::new(o))?, None)),
        Err(e) => Ok((
            Resolver::new(dd)?,
            Some(crate::naming::disk_note(&e.to_string())),
        )),
    }
}

/// Say a note on stderr, made inert for the terminal.
pub fn note(n: &str) {
    eprintln!("pg_trace: note: {}", crate::text::visible(n));
}
