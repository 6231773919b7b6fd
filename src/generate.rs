//! The files a package installs beside the binary, made from the CLI itself so that they
//! cannot drift from it: man pages (`clap_mangen`) and bash, zsh and fish completions
//! (`clap_complete`).
//!
//! Reached through `pg_trace generate-files PREFIX`, a hidden subcommand that `main`
//! adds next to `Cli` rather than inside it: the pages and completions are made from
//! `Cli` alone, so neither they nor `--help` mention it (clap_complete would list a
//! hidden subcommand).

use anyhow::{Context, Result};
use clap::{Arg, ArgMatches, CommandFactory};
use clap_complete::Shell;
use pg_trace::cli::Cli;
use std::fs;
use std::path::{Path, PathBuf};

/// The hidden subcommand's name.
pub const NAME: &str = "generate-files";

const BIN: &str = "pg_trace";

/// Where each file goes under PREFIX (`/usr` in the package): the directories Debian's
/// bash-completion, zsh and fish read without configuration.
const COMPLETIONS: [(Shell, &str, &str); 3] = [
    (Shell::Bash, "share/bash-completion/completions", BIN),
    (Shell::Zsh, "share/zsh/vendor-completions", "_pg_trace"),
    (
        Shell::Fish,
        "share/fish/vendor_completions.d",
        "pg_trace.fish",
    ),
];
const MAN_DIR: &str = "share/man/man1";

pub fn command() -> clap::Command {
    clap::Command::new(NAME)
        .hide(true)
        .about("Write the man pages and shell completions under PREFIX (for packagers)")
        .arg(
            Arg::new("prefix")
                .value_name("PREFIX")
                .required(true)
                .value_parser(clap::value_parser!(PathBuf)),
        )
}

pub fn run(matches: &ArgMatches) -> Result<()> {
    let prefix = matches
        .get_one::<PathBuf>("prefix")
        .context("PREFIX is required")?;
    for path in write_all(prefix)? {
        println!("{}", path.display());
    }
    Ok(())
}

/// Writes every file and returns their paths. Man pages are left uncompressed: the
/// packager compresses them as its format wants.
fn write_all(prefix: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let man = prefix.join(MAN_DIR);
    fs::create_dir_all(&man).with_context(|| format!("creating {}", man.display()))?;
    // pg_trace.1 plus pg_trace-catalog.1 and friends, one per (visible) subcommand.
    clap_mangen::generate_to(Cli::command(), &man)
        .with_context(|| format!("writing man pages into {}", man.display()))?;
    let mut pages: Vec<PathBuf> = fs::read_dir(&man)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(BIN) && n.ends_with(".1"))
        })
        .collect();
    pages.sort();
    written.extend(pages);

    let mut cmd = Cli::command();
    for (shell, dir, file) in COMPLETIONS {
        let dir = prefix.join(dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(file);
        // Into memory first: clap_complete panics on a write error, fs::write reports it.
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut cmd, BIN, &mut text);
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}
