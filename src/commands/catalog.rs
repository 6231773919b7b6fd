//! `pg_trace catalog`: every relation with storage, as the running server has it in shared memory
//! (else from disk).

use crate::cli::Target;
use crate::output::{self, Format};
use anyhow::Result;
use std::io::Write;

pub fn run(out: &mut impl Write, target: &Target, pid: Option<i32>, format: Format) -> Result<()> {
    let dd = super::datadir(target, pid)?;
    let (resolver, why) = super::resolver(&dd, pid)?;
    if let Some(why) = why {
        super::note(&why);
    }
    let cat = resolver.catalog();
    for w in &cat.warnings {
        eprintln!("pg_trace: warning: {}", crate::text::visible(w));
    }
    output::catalog::write(out, cat, format)?;
    Ok(())
}
