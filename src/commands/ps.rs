//! `pg_trace ps`: every process of a cluster from shared memory.

use crate::cli::Target;
use crate::output::record::ProcessRecord;
use crate::output::{self, Format};
use crate::pgdata::DataDir;
use crate::process::ns;
use crate::process::proc::may_inspect;
use crate::process::status::{self, StatusSample};
use anyhow::Result;
use std::io::Write;

pub fn run(out: &mut impl Write, target: &Target, pid: Option<i32>, format: Format) -> Result<()> {
    let memory = "pg_trace ps reads the server's memory";
    if let Some(p) = pid {
        may_inspect(p, memory)?;
    }
    let dd = super::datadir(target, pid)?;
    let via = match pid {
        Some(pid) => pid,
        None => dd.postmaster_pid()?,
    };
    may_inspect(via, memory)?;
    let rows = collect(&dd, via)?;
    if let Some(b) = server_backup(&dd, via, &rows) {
        output::ps::write_server_backup(out, &b, format)?;
    }
    output::ps::write(out, &rows, format)?;
    Ok(())
}

/// One row per process with a status slot, read through the memory of `via` (any
/// process of the cluster). For a server in a container the pids are the host's (the
/// reader maps them), and each row also says the pid its own namespace gives it.
pub fn collect(dd: &DataDir, via: i32) -> Result<Vec<(StatusSample, ProcessRecord)>> {
    let samples = status::activity(via, dd.major)?;
    let catalog = super::resolver(dd, Some(via))
        .ok()
        .map(|(r, _)| r.into_catalog());
    Ok(samples
        .into_iter()
        .map(|s| {
            let mut v = output::ps::record(&s, catalog.as_ref());
            v.ns_pid = ns::ns_pid(v.pid);
            (s, v)
        })
        .collect())
}

/// A low-level backup of the cluster, from its WAL control structure and the sessions
/// just read; None when none runs (or nothing could be read).
pub fn server_backup(
    dd: &DataDir,
    via: i32,
    rows: &[(StatusSample, ProcessRecord)],
) -> Option<crate::process::server_backup::ServerBackup> {
    let samples: Vec<StatusSample> = rows.iter().map(|(s, _)| s.clone()).collect();
    let pm = dd.postmaster_pid().ok();
    crate::process::server_backup::read(&dd.root, via, pm, dd.major, &samples)
        .ok()
        .flatten()
}
