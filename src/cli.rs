//! Command line: the original `pg_trace [-hd] [-p pid]` plus the subcommands.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "pg_trace",
    version,
    about = "See what a PostgreSQL process is reading, how far it has got, and why it is stuck",
    after_help = "Run on the database host as root, or with the capabilities of `setcap` in \
                  docs/usage.md. Without a subcommand, -p PID inspects that process."
)]
pub struct Cli {
    /// PostgreSQL process to inspect (a backend, a walsender, ...).
    #[arg(short = 'p', long = "pid", value_name = "PID", global = true)]
    pub pid: Option<i32>,

    /// Print every syscall, enriched with object names and offsets.
    #[arg(short = 'd', long = "debug")]
    pub debug: bool,

    /// Line mode even on a terminal (without a terminal on stdout, line mode is the default).
    #[arg(long)]
    pub no_tui: bool,

    /// How often the screen redraws (default 250) or line mode prints (default 1000), in
    /// milliseconds; the model ticks at the same pace.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    pub interval: Option<u64>,

    /// Stop after this many seconds (exit status 0).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,

    /// How to watch the process; auto tries ebpf, then procfs (never ptrace, which slows
    /// the backend: only when asked), plus USDT probes when the postgres binary has them;
    /// usdt uses the probes alone.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,

    /// Do not attach PostgreSQL's USDT probes (attaching increments each probe's
    /// semaphore in the traced process: the one write into it).
    #[arg(long)]
    pub no_usdt: bool,

    /// Which USDT probes: default (one per block: buffer__read__done, plus the per-query
    /// ones), all (adds smgr__md__* and buffer__read__start), or a comma-separated list.
    #[arg(long, value_name = "SET", default_value = "default")]
    pub usdt_probes: String,

    #[arg(long, value_enum, default_value_t = Format::Text, global = true)]
    pub format: Format,

    /// Do not read the backend's status from memory (no query, wait event or progress
    /// counters; the backup phase is inferred from the syscalls instead).
    #[arg(long)]
    pub no_memory: bool,

    /// How often each backend's wait event is sampled for the wait profile (default 100,
    /// as pg_wait_sampling's 10 ms; at most 1000).
    #[arg(long, value_name = "HZ", default_value_t = 100, global = true,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub sample_hz: u32,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    Auto,
    Ebpf,
    Usdt,
    Ptrace,
    Procfs,
}

pub use crate::output::Format;

#[derive(Debug, Args)]
pub struct Target {
    /// Data directory to read (default: the one of the process given with -p).
    #[arg(long, value_name = "DIR")]
    pub pgdata: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The USDT probes the postgres binary of -p PID offers (from its .note.stapsdt).
    Probes,
    /// Every relation with storage in every database, read from disk (an offline oid2name).
    Catalog {
        #[command(flatten)]
        target: Target,
    },
    /// Name any path of a data directory: relation, fork, segment, temp file, WAL, SLRU...
    Resolve {
        #[command(flatten)]
        target: Target,
        /// Paths, relative to the data directory or absolute.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// Every process of a cluster, read from shared memory (an offline pg_stat_activity).
    Ps {
        #[command(flatten)]
        target: Target,
        /// Sample every process's wait event for this many seconds and print the
        /// cluster-wide wait profile (per process: wait events with CPU apart, queries).
        #[arg(long, value_name = "SECS", value_parser = parse_secs)]
        waits: Option<f64>,
    },
}

/// A positive number of seconds, at most a day.
fn parse_secs(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if v.is_finite() && v > 0.0 && v <= 86_400.0 {
        Ok(v)
    } else {
        Err(format!("{s:?}: give seconds between 0 and 86400"))
    }
}
