//! Line outputs: text for people, NDJSON (one object per line, each with a "type") for scripts.

pub mod catalog;
pub mod kernel_time;
pub mod probes;
pub mod ps;
pub mod record;
pub mod report;
pub mod resolve;
pub mod status;
pub mod trace;
pub mod waits;

/// How line outputs are written: text for people, NDJSON for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}
