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
    let dd = super::datadir(target, pid)?;
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
