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

/// `pg_trace ps --waits SECS`: every process of the cluster sampled at `hz` for `secs`
/// seconds (Ctrl-C ends it early), then each one's wait profile.
pub fn run_waits(
    out: &mut impl Write,
    target: &Target,
    pid: Option<i32>,
    secs: f64,
    hz: f64,
    format: Format,
) -> Result<()> {
    use crate::model::waits::Waits;
    use crate::process::status::sampler::{self, Scope, WaitSampler};
    use std::sync::atomic::Ordering;
    let memory = "pg_trace ps --waits reads the server's memory";
    if let Some(p) = pid {
        may_inspect(p, memory)?;
    }
    let dd = super::datadir(target, pid)?;
    let via = match pid {
        Some(pid) => pid,
        None => dd.postmaster_pid()?,
    };
    may_inspect(via, memory)?;
    let reader = status::StatusReader::open(via, dd.major)?;
    let stop = crate::session::stop_flag()?;
    let mut sampler = WaitSampler::new(reader, Scope::Cluster)?;
    sampler.prime()?;
    let start = std::time::Instant::now();
    let mut w = Waits::new(hz);
    w.total_only = true;
    // Folded on the sampler's thread as each round is taken: no round is shipped (its
    // samples' shared names and texts then never change cores) and its buffers are
    // reused. The sampler ends itself at the end of the window, or within a round of
    // Ctrl-C (the stop flag): this thread only joins it, instead of waking ten times a
    // second to look at the clock.
    let folded = std::sync::Arc::new(std::sync::Mutex::new(w));
    let fold = std::sync::Arc::clone(&folded);
    let end = start + std::time::Duration::from_secs_f64(secs);
    let thread = sampler::spawn_with(sampler, hz, std::sync::Arc::clone(&stop), move |r| {
        fold.lock().map(|mut w| w.add(r)).is_ok() && std::time::Instant::now() < end
    })?;
    let failed = thread.join().ok().flatten();
    stop.store(true, Ordering::Relaxed);
    let waits = std::mem::take(
        &mut *folded
            .lock()
            .map_err(|_| anyhow::anyhow!("wait sampling failed"))?,
    );
    if let Some(why) = failed {
        if waits.is_empty() {
            anyhow::bail!("cannot sample wait events: {why}");
        }
        eprintln!(
            "pg_trace: sampling stopped early: {}",
            crate::text::visible(&why)
        );
    }
    let elapsed = start.elapsed().as_secs_f64();
    let kinds: std::collections::HashMap<i32, String> = status::activity(via, dd.major)
        .map(|rows| {
            rows.into_iter()
                .map(|s| (s.pid, s.backend_type.unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    match format {
        Format::Json => {
            for (pid, p) in &waits.procs {
                let rec = output::waits::record(&p.total, *pid, elapsed, "total", hz);
                output::record::write(&mut *out, &output::record::Record::Waits(rec))?;
            }
        }
        Format::Text => {
            let rows: Vec<_> = waits
                .procs
                .iter()
                .map(|(pid, p)| {
                    let kind = kinds.get(pid).cloned().unwrap_or_else(|| "exited".into());
                    (*pid, kind, &p.total)
                })
                .collect();
            output::waits::write_text(out, &rows, hz, elapsed)?;
        }
    }
    Ok(())
}
