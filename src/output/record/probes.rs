//! The records of `pg_trace probes`.

use serde::{Deserialize, Serialize};

/// One USDT probe name of a binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeRecord {
    pub provider: String,
    pub name: String,
    pub sites: u64,
    pub pc: u64,
    pub semaphore: u64,
    /// As the SDT note spells them, e.g. `-4@%esi`.
    pub args: Vec<String>,
    pub handled: bool,
    pub default: bool,
}

/// After the probes: how many, and why none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbesRecord {
    pub binary: String,
    pub count: u64,
    pub reason: Option<String>,
}
