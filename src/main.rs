mod generate;

use anyhow::{bail, Result};
use clap::{CommandFactory, FromArgMatches};
use pg_trace::cli::{Cli, Command};
use pg_trace::process::identity::{ExitedWhileAttaching, Identity};
use pg_trace::{commands, session};
use std::io::{IsTerminal, Write};

/// `--duration SECS`: NaN, infinite or absurd values are an error, not a panic.
fn duration(cli: &Cli) -> Result<Option<std::time::Duration>> {
    cli.duration
        .map(|d| {
            // -1, NaN and infinity are mistakes, not "forever" or "now".
            if !(d.is_finite() && d > 0.0) {
                bail!("--duration {d}: give a positive number of seconds");
            }
            std::time::Duration::try_from_secs_f64(d)
                .map_err(|_| anyhow::anyhow!("--duration {d}: not a usable number of seconds"))
        })
        .transpose()
}

fn run(cli: Cli) -> Result<()> {
    pg_trace::trace::cost::set_probe_cost(cli.probe_cost);
    if let Some(Command::Report { file, output }) = &cli.command {
        let format = cli.report_format().map_err(anyhow::Error::msg)?;
        return commands::report::run(file, output.as_deref(), format);
    }
    let format = cli.line_format().map_err(anyhow::Error::msg)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(pg_trace::text::safe::SafeText::new(stdout.lock()));
    // The commands read `-p`'s process by pid (/proc, its memory, its binary): pinned
    // first, so that a failure caused by its exit is said as such.
    let pinned = match (&cli.command, cli.pid) {
        (Some(_), Some(pid)) => Identity::open(pid).ok(),
        _ => None,
    };
    if pinned.is_some() {
        // Debug builds: where tests/pid_reuse.rs ends the process (see test_pause).
        session::backend::test_pause("pinned");
    }
    let vanished = |e: anyhow::Error| match &pinned {
        Some(id) if !id.is_alive() => ExitedWhileAttaching { pid: id.pid() }.into(),
        _ => e,
    };
    match &cli.command {
        Some(Command::Probes) => {
            commands::probes::run(&mut out, cli.pid, format).map_err(vanished)?
        }
        Some(Command::Catalog { target }) => {
            commands::catalog::run(&mut out, target, cli.pid, format).map_err(vanished)?
        }
        Some(Command::Resolve { target, paths }) => {
            commands::resolve::run(&mut out, target, cli.pid, paths, format).map_err(vanished)?
        }
        Some(Command::Ps {
            target,
            waits: Some(secs),
        }) => commands::ps::run_waits(
            &mut out,
            target,
            cli.pid,
            *secs,
            f64::from(cli.sample_hz),
            format,
        )
        .map_err(vanished)?,
        Some(Command::Ps {
            target,
            waits: None,
        }) => commands::ps::run(&mut out, target, cli.pid, format).map_err(vanished)?,
        // Written above, before the line outputs.
        Some(Command::Report { .. }) => {}
        Some(Command::Replay { file, speed }) => {
            drop(out);
            let speed = session::replay::Speed::parse(speed)?;
            let tui = !cli.no_tui
                && format == pg_trace::cli::Format::Text
                && std::io::stdout().is_terminal();
            if tui {
                return session::replay_tui::run(file, cli.interval.unwrap_or(250));
            }
            return session::replay::run_line(&session::replay::ReplayOptions {
                path: file.clone(),
                format,
                debug: cli.debug,
                speed,
            });
        }
        Some(Command::Record { output }) => {
            drop(out);
            let Some(pid) = cli.pid else {
                bail!("pg_trace record: give the process with -p PID");
            };
            let path = output
                .clone()
                .unwrap_or_else(|| session::record::default_path(pid));
            let mut opts = line_options(&cli, pid, Some(path))?;
            opts.format = pg_trace::cli::Format::Json;
            return session::line::record(opts);
        }
        None => {
            drop(out);
            if cli.record.is_none() && (cli.keep.is_some() || cli.no_dump_on_stall) {
                bail!("--keep and --no-dump-on-stall are for a recording: add --record FILE, or use pg_trace record");
            }
            let usdt = pg_trace::trace::usdt::UsdtConfig {
                enabled: !cli.no_usdt,
                probes: pg_trace::trace::usdt::ProbeSet::parse(&cli.usdt_probes)?,
            };
            // JSON is for programs: asking for it means line mode, terminal or not.
            let tui = !cli.no_tui
                && format == pg_trace::cli::Format::Text
                && std::io::stdout().is_terminal();
            if tui {
                let record = match (cli.record.clone(), cli.pid) {
                    (Some(p), Some(_)) => Some(record_options(&cli, p)?),
                    (Some(_), None) => bail!("--record needs -p PID"),
                    (None, _) => None,
                };
                return session::tui::run(session::tui::Options {
                    pid: cli.pid,
                    backend: cli.backend,
                    interval: std::time::Duration::from_millis(cli.interval.unwrap_or(250)),
                    usdt,
                    no_memory: cli.no_memory,
                    debug: cli.debug,
                    duration: duration(&cli)?,
                    record,
                    kernel: session::kernel_time::KernelOptions {
                        io_latency: cli.io_latency,
                        exact_waits: cli.exact_waits,
                    },
                    sample_hz: f64::from(cli.sample_hz),
                });
            }
            let Some(pid) = cli.pid else {
                bail!("no process given: use -p PID (the process picker needs a terminal)");
            };
            return session::run(line_options(&cli, pid, cli.record.clone())?);
        }
    }
    out.flush().or_else(ignore_broken_pipe)?;
    Ok(())
}

fn record_options(cli: &Cli, path: std::path::PathBuf) -> Result<session::record::RecordOptions> {
    Ok(session::record::RecordOptions {
        path,
        force: cli.force,
        keep: cli
            .keep
            .as_deref()
            .map(session::record::parse_keep)
            .transpose()?,
        dump_on_stall: !cli.no_dump_on_stall,
    })
}

fn line_options(
    cli: &Cli,
    pid: i32,
    record: Option<std::path::PathBuf>,
) -> Result<session::Options> {
    Ok(session::Options {
        pid,
        backend: cli.backend,
        interval: std::time::Duration::from_millis(cli.interval.unwrap_or(1000)),
        duration: duration(cli)?,
        format: cli.line_format().map_err(anyhow::Error::msg)?,
        debug: cli.debug,
        usdt: pg_trace::trace::usdt::UsdtConfig {
            enabled: !cli.no_usdt,
            probes: pg_trace::trace::usdt::ProbeSet::parse(&cli.usdt_probes)?,
        },
        no_memory: cli.no_memory,
        record: record.map(|p| record_options(cli, p)).transpose()?,
        kernel: session::kernel_time::KernelOptions {
            io_latency: cli.io_latency,
            exact_waits: cli.exact_waits,
        },
        sample_hz: f64::from(cli.sample_hz),
    })
}

fn ignore_broken_pipe(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(e)
    }
}

/// `Cli`, plus the packagers' hidden `generate-files`, kept out of `Cli` so that the man
/// pages and completions made from `Cli` do not mention it.
fn parse() -> Cli {
    let matches = Cli::command().subcommand(generate::command()).get_matches();
    if let Some((generate::NAME, m)) = matches.subcommand() {
        if let Err(e) = generate::run(m) {
            eprintln!(
                "pg_trace: error: {}",
                pg_trace::text::visible(&format!("{e:#}"))
            );
            std::process::exit(1);
        }
        std::process::exit(0);
    }
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut Cli::command()).exit())
}

fn main() {
    let cli = parse();
    if let Err(e) = run(cli) {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
        {
            std::process::exit(0);
        }
        // A process that went away while we attached: that, and nothing of what its
        // vanishing made the steps say on the way.
        if let Some(x) = e
            .chain()
            .find_map(|c| c.downcast_ref::<ExitedWhileAttaching>())
        {
            eprintln!("pg_trace: error: {x}");
            std::process::exit(1);
        }
        // One line, the causes joined: no backtrace, whatever RUST_BACKTRACE says.
        // A cause can quote a name or file content: made inert and kept on one line.
        eprintln!(
            "pg_trace: error: {}",
            pg_trace::text::visible(&format!("{e:#}"))
        );
        std::process::exit(1);
    }
}
