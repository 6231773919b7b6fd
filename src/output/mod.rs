//! Line outputs: text for people, NDJSON (one object per line, each with a "type") for scripts.

pub mod catalog;
pub mod probes;
pub mod ps;
pub mod resolve;
pub mod safe;
pub mod status;
pub mod trace;
