//! The transactions logical decoding spilled to disk: `pg_replslot/<slot>/xid-<xid>-lsn-
//! <hi>-<lo>.spill`, one file per transaction and WAL segment (`ReorderBufferSerializeTXN`),
//! removed once the transaction is decoded to its end.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Spill files of one slot: how many, how many bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spill {
    pub files: u64,
    pub bytes: u64,
}

/// Whether `name` is a spill file's: `xid-<decimal>-lsn-<hex>-<hex>.spill`.
pub fn is_spill_name(name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix("xid-")
        .and_then(|r| r.strip_suffix(".spill"))
    else {
        return false;
    };
    let Some((xid, lsn)) = rest.split_once("-lsn-") else {
        return false;
    };
    let Some((hi, lo)) = lsn.split_once('-') else {
        return false;
    };
    let dec = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_hexdigit());
    dec(xid) && hex(hi) && hex(lo)
}

/// Count and size of the spill files among `(name, size)` entries. Pure.
pub fn tally<'a>(entries: impl IntoIterator<Item = (&'a str, u64)>) -> Spill {
    entries
        .into_iter()
        .filter(|(n, _)| is_spill_name(n))
        .fold(Spill::default(), |s, (_, size)| Spill {
            files: s.files + 1,
            bytes: s.bytes.saturating_add(size),
        })
}

/// At most this many entries of a slot directory are looked at.
const MAX_ENTRIES: usize = 100_000;

/// The spill files in `dir` (a slot's directory); None when it cannot be read.
pub fn read(dir: &Path) -> Option<Spill> {
    let entries: Vec<(String, u64)> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .take(MAX_ENTRIES)
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            // A file removed between the listing and here counts as gone.
            let size = e.metadata().ok().filter(|m| m.is_file())?.len();
            Some((name, size))
        })
        .collect();
    Some(tally(entries.iter().map(|(n, s)| (n.as_str(), *s))))
}
