//! `pg_trace probes -p PID`: the USDT probes of the process's binary.

use crate::output::{self, Format};
use crate::process::stapsdt;
use anyhow::{bail, Result};
use std::io::Write;

pub fn run(out: &mut impl Write, pid: Option<i32>, format: Format) -> Result<()> {
    let Some(pid) = pid else {
        bail!("give the postgres process with -p PID");
    };
    // "not a PostgreSQL process" says more than a failure to read some binary.
    super::postgres_datadir(pid)?;
    let (exe, notes) = stapsdt::exe_and_probes(pid)?;
    output::probes::write_notes(out, &exe.display().to_string(), &notes, format)
}
