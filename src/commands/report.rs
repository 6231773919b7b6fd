//! `pg_trace report FILE`: a trace read back from a file, written as one HTML page, a
//! plain-text summary or Perfetto's trace-event JSON.

use crate::output::report::{self, ReportFormat};
use anyhow::{bail, Context, Result};
use std::io::{IsTerminal, Write};
use std::path::Path;

/// Read `input` and write its report to `output` (stdout when `None`).
pub fn run(input: &Path, output: Option<&Path>, format: ReportFormat) -> Result<()> {
    if let Some(o) = output {
        // Writing the report over its own trace would lose the trace.
        if let (Ok(a), Ok(b)) = (std::fs::canonicalize(input), std::fs::canonicalize(o)) {
            if a == b {
                bail!("-o {}: that is the trace itself", o.display());
            }
        }
    }
    let records = crate::session::load(input)?;
    match output {
        Some(path) => {
            let f = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
            let mut w = std::io::BufWriter::new(f);
            report::write(&mut w, &records, format)
                .and_then(|_| w.flush())
                .with_context(|| format!("{}", path.display()))?;
        }
        None => {
            let stdout = std::io::stdout();
            if format != ReportFormat::Text && stdout.is_terminal() {
                bail!("the report is a file to open, not to read on a terminal: give -o FILE");
            }
            let mut w = std::io::BufWriter::new(stdout.lock());
            report::write(&mut w, &records, format)?;
            w.flush()?;
        }
    }
    Ok(())
}
