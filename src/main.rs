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
            commands::probes::run(&mut out, cli.pid, cli.format).map_err(vanished)?
        }
        Some(Command::Catalog { target }) => {
            commands::catalog::run(&mut out, target, cli.pid, cli.format).map_err(vanished)?
        }
        Some(Command::Resolve { target, paths }) => {
            commands::resolve::run(&mut out, target, cli.pid, paths, cli.format)
                .map_err(vanished)?
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
            cli.format,
        )
        .map_err(vanished)?,
        Some(Command::Ps {
            target,
            waits: None,
        }) => commands::ps::run(&mut out, target, cli.pid, cli.format).map_err(vanished)?,
        None => {
            drop(out);
            let usdt = pg_trace::trace::usdt::UsdtConfig {
                enabled: !cli.no_usdt,
                probes: pg_trace::trace::usdt::ProbeSet::parse(&cli.usdt_probes)?,
            };
            // JSON is for programs: asking for it means line mode, terminal or not.
            let tui = !cli.no_tui
                && cli.format == pg_trace::cli::Format::Text
                && std::io::stdout().is_terminal();
            if tui {
                return session::tui::run(session::tui::Options {
                    pid: cli.pid,
                    backend: cli.backend,
                    interval: std::time::Duration::from_millis(cli.interval.unwrap_or(250)),
                    usdt,
                    no_memory: cli.no_memory,
                    debug: cli.debug,
                    duration: duration(&cli)?,
                    sample_hz: f64::from(cli.sample_hz),
                });
            }
            let Some(pid) = cli.pid else {
                bail!("no process given: use -p PID (the process picker needs a terminal)");
            };
            return session::run(session::Options {
                pid,
                backend: cli.backend,
                interval: std::time::Duration::from_millis(cli.interval.unwrap_or(1000)),
                duration: duration(&cli)?,
                format: cli.format,
                debug: cli.debug,
                usdt,
                no_memory: cli.no_memory,
                sample_hz: f64::from(cli.sample_hz),
            });
        }
    }
    out.flush().or_else(ignore_broken_pipe)?;
    Ok(())
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
