//! The TUI over a recording.

use anyhow::Result;
use std::path::Path;

pub fn run(_file: &Path, _interval_ms: u64) -> Result<()> {
    anyhow::bail!("not yet")
}
