//! The subcommands: each gathers what it shows from the layers below (the data
//! directory, the process, its binary) and hands it to `output` to be written. The trace
//! itself is `session`.

pub mod catalog;
pub mod probes;
pub mod ps;
pub mod resolve;

use crate::cli::Target;
use crate::pgdata::DataDir;
use anyhow::{bail, Result};

/// The data directory a subcommand reads: `--pgdata DIR`, else the one of `-p PID`.
pub fn datadir(target: &Target, pid: Option<i32>) -> Result<DataDir> {
    Ok(match (&target.pgdata, pid) {
        (Some(dir), _) => DataDir::open(dir)?,
        (None, Some(pid)) => postgres_datadir(pid)?,
        (None, None) => {
            bail!("give the data directory with --pgdata DIR or a postgres process with -p PID")
        }
    })
}

/// The data directory of `pid`, once its binary and its shared memory say it is a process
/// of that directory's server: a process named `postgres` whose working directory is a
/// data directory may be anything.
pub fn postgres_datadir(pid: i32) -> Result<DataDir> {
    let dd = DataDir::from_pid(pid)?;
    let claims = crate::process::postgres_binary::ServerClaims {
        postmaster: dd.postmaster_pid()?,
        shmem_key: dd.shmem_key(),
    };
    crate::process::postgres_binary::check(pid, claims)?;
    Ok(dd)
}
