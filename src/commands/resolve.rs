//! `pg_trace resolve PATH...`: name any path of a data directory.

use crate::cli::Target;
use crate::output::{self, Format};
use anyhow::Result;
use std::io::Write;
use std::path::PathBuf;

pub fn run(
    out: &mut impl Write,
    target: &Target,
    pid: Option<i32>,
    paths: &[PathBuf],
    format: Format,
) -> Result<()> {
    // Neither given: the data directory the first absolute path lies in, if it lies in
    // one (what `resolve /var/lib/postgresql/15/main/base/5/16384` obviously means).
    let found = (target.pgdata.is_none() && pid.is_none())
        .then(|| paths.iter().find_map(|p| enclosing_datadir(p)))
        .flatten();
    let dd = match found {
        Some(dir) => super::datadir(&Target { pgdata: Some(dir) }, None)?,
        None => super::datadir(target, pid)?,
    };
    let (mut resolver, why) = super::resolver(&dd, pid)?;
    if let Some(why) = why {
        super::note(&why);
    }
    for p in paths {
        let r = resolver.resolve(p);
        output::resolve::write(out, p, &r, resolver.catalog(), format)?;
    }
    Ok(())
}

/// The nearest ancestor of an absolute `path` that holds `PG_VERSION` and
/// `global/pg_control`.
fn enclosing_datadir(path: &std::path::Path) -> Option<PathBuf> {
    if !path.is_absolute() {
        return None;
    }
    path.ancestors()
        .skip(1)
        .find(|d| d.join("PG_VERSION").is_file() && d.join("global/pg_control").is_file())
        .map(PathBuf::from)
}
