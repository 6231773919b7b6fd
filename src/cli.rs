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
    #[arg(short = 'd', long = "debug", global = true)]
    pub debug: bool,

    /// Line mode even on a terminal (without a terminal on stdout, line mode is the default).
    #[arg(long, global = true)]
    pub no_tui: bool,

    /// How often the screen redraws (default 250) or line mode prints (default 1000), in
    /// milliseconds; the model ticks at the same pace.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(10..=3_600_000), global = true)]
    pub interval: Option<u64>,

    /// Stop after this many seconds (exit status 0).
    #[arg(long, value_name = "SECS", global = true)]
    pub duration: Option<f64>,

    /// How to watch the process; auto tries ebpf, then procfs (never ptrace, which slows
    /// the backend: only when asked), plus USDT probes when the postgres binary has them;
    /// usdt uses the probes alone.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto, global = true)]
    pub backend: BackendChoice,

    /// Do not attach PostgreSQL's USDT probes (attaching increments each probe's
    /// semaphore in the traced process: the one write into it).
    #[arg(long, global = true)]
    pub no_usdt: bool,

    /// Which USDT probes: default (one per block: buffer__read__done, plus the per-query
    /// ones), all (adds smgr__md__* and buffer__read__start), or a comma-separated list.
    #[arg(long, value_name = "SET", default_value = "default", global = true)]
    pub usdt_probes: String,

    /// text or json (default text); `report` writes html (its default), text or perfetto.
    #[arg(long, value_enum, value_name = "FORMAT", global = true)]
    pub format: Option<FormatArg>,

    /// Do not read the backend's status from memory (no query, wait event or progress
    /// counters; the backup phase is inferred from the syscalls instead).
    #[arg(long, global = true)]
    pub no_memory: bool,

    /// Record the session to FILE while showing it (the TUI or line mode); `pg_trace
    /// replay FILE` plays it back anywhere.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// Overwrite an existing recording file.
    #[arg(long, global = true)]
    pub force: bool,

    /// Ring mode of a recording: keep only the last DURATION (15m, 90s, 2h) in memory,
    /// written out at exit, on SIGUSR1 and when the verdict turns into a stall.
    #[arg(long, value_name = "DURATION", global = true)]
    pub keep: Option<String>,

    /// Ring mode: do not write the ring out when the verdict turns into a stall.
    #[arg(long, global = true)]
    pub no_dump_on_stall: bool,
    /// Time every read, write and fsync from entry to exit (eBPF), for latency per
    /// relation and the page-cache/disk split: costs the backend more than the default.
    #[arg(long)]
    pub io_latency: bool,

    /// Measure what pg_trace's BPF programs cost (the `probes` figure; JSON
    /// `probe_ns_per_s`) by turning on the kernel's BPF run-time statistics while it runs:
    /// host-wide, every BPF program run on the machine then pays two clock reads. Off by
    /// default (the figure is then absent), unless kernel.bpf_stats_enabled is already 1.
    #[arg(long, global = true)]
    pub probe_cost: bool,

    /// Every wait start and end of the backend, exactly, from a hardware watchpoint on its
    /// wait_event_info (eBPF): each wait transition traps (about 15 µs on a VM); the
    /// expected cost is said first.
    #[arg(long)]
    pub exact_waits: bool,

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

use crate::output::report::ReportFormat;
pub use crate::output::Format;

/// `--format`, one option for every command: the line outputs take text and json,
/// `report` html, text and perfetto. (One global option: clap cannot give a subcommand
/// an option of the same name with other values.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Text,
    Json,
    Html,
    Perfetto,
}

impl Cli {
    /// The format of a line output (text unless asked).
    pub fn line_format(&self) -> Result<Format, String> {
        match self.format {
            None | Some(FormatArg::Text) => Ok(Format::Text),
            Some(FormatArg::Json) => Ok(Format::Json),
            Some(f @ (FormatArg::Html | FormatArg::Perfetto)) => Err(format!(
                "--format {}: only `pg_trace report` writes it (here: text or json)",
                f.to_possible_value()
                    .map_or_else(String::new, |v| v.get_name().to_string())
            )),
        }
    }

    /// The format of `pg_trace report` (html unless asked).
    pub fn report_format(&self) -> Result<ReportFormat, String> {
        match self.format {
            None | Some(FormatArg::Html) => Ok(ReportFormat::Html),
            Some(FormatArg::Text) => Ok(ReportFormat::Text),
            Some(FormatArg::Perfetto) => Ok(ReportFormat::Perfetto),
            Some(FormatArg::Json) => Err(
                "--format json: a report is html, text or perfetto (the trace itself is the JSON)"
                    .to_string(),
            ),
        }
    }
}

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
    /// A captured trace as one HTML page, a text summary or Perfetto JSON.
    ///
    /// FILE is a recording (`pg_trace record`) or line mode's JSON. --format html (the default): one self-contained page
    /// (inline CSS and SVG charts, nothing fetched); text: a summary for a ticket;
    /// perfetto: Chrome trace-event JSON for ui.perfetto.dev.
    Report {
        /// The trace: a recording, or `pg_trace -p PID --no-tui --format json > FILE`.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Where to write the report (default: standard output).
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: Option<PathBuf>,
    },
    /// Record -p PID to a file without showing it (until it exits, Ctrl-C or --duration):
    /// its events, status samples, names and the host's facts, for `pg_trace replay`.
    Record {
        /// The recording (default: pg_trace-PID-YYYYMMDD-HHMMSS.pgtrace here); never
        /// overwritten without --force.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Play a recording back: the TUI (space pauses, ←/→ seek 10 s, shift+←/→ or
    /// PgUp/PgDn a minute, Home/End, +/- speed) or line mode; no root, PostgreSQL or data
    /// directory needed.
    Replay {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Line mode's pace: N times real time, or max (the TUI starts at 1×).
        #[arg(long, value_name = "N|max", default_value = "1")]
        speed: String,
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
