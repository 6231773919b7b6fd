//! `pg_trace catalog`: every relation with storage, read from disk.

use crate::cli::Target;
use crate::output::{self, Format};
use crate::pgdata::Catalog;
use anyhow::Result;
use std::io::Write;

pub fn run(out: &mut impl Write, target: &Target, pid: Option<i32>, format: Format) -> Result<()> {
    let dd = super::datadir(target, pid)?;
    let cat = Catalog::load(&dd)?;
    for w in &cat.warnings {
        eprintln!("pg_trace: warning: {}", crate::text::visible(w));
    }
    output::catalog::write(out, &cat, format)?;
    Ok(())
}
