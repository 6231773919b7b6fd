//! A trace read back from a file, as the records line mode wrote (or would have written)
//! for it: what `pg_trace report` renders. The file's kind is told by its first bytes;
//! each kind is one row of [`KINDS`], so a new kind (a recording) is one more row and
//! its reader.
//!
//! The file is hostile input: a line that is not a record, a line cut short, a line
//! longer than any record pg_trace writes, or no `attach` record at all is one error
//! naming the file and the line; nothing panics and nothing is sized by the file.

use crate::output::record::Record;
use crate::text::excerpt::quote;
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// The longest line taken as a record: far above any record line mode writes (a query
/// text is at most 1023 bytes; a `waits` record holds a few dozen rows).
const MAX_LINE: u64 = 1 << 20;

/// One kind of input: whether a file's first bytes are of this kind, and its reader.
struct Kind {
    name: &'static str,
    sniff: fn(&[u8]) -> bool,
    read: fn(&Path, &mut dyn BufRead) -> Result<Vec<Record>>,
}

/// Every kind of file `load` reads, tried in order on the file's first bytes.
const KINDS: &[Kind] = &[
    Kind {
        name: "a recording (pg_trace record)",
        sniff: recording_sniff,
        read: recording_read,
    },
    Kind {
        name: "NDJSON of line mode (pg_trace -p PID --no-tui --format json)",
        sniff: ndjson_sniff,
        read: ndjson_read,
    },
];

fn recording_sniff(head: &[u8]) -> bool {
    head.starts_with(super::record::format::MAGIC)
}

/// A recording is replayed at full speed through line mode's JSON: the report of a
/// recording is the report of the records its replay prints.
fn recording_read(path: &Path, _: &mut dyn BufRead) -> Result<Vec<Record>> {
    super::replay::replay_records(path)
}

/// How many bytes `sniff` sees at most.
const HEAD: usize = 64;

/// The records of the trace in `path`.
pub fn load(path: &Path) -> Result<Vec<Record>> {
    let shown = path.display();
    // Any file the user names, a pipe included (`<(zstdcat trace.ndjson.zst)`).
    let file = std::fs::File::open(path).with_context(|| format!("{shown}"))?;
    let mut r = BufReader::new(file);
    let head = r.fill_buf().with_context(|| format!("{shown}"))?;
    if head.is_empty() {
        bail!("{shown} is empty: no trace in it");
    }
    let head = &head[..head.len().min(HEAD)];
    let Some(kind) = KINDS.iter().find(|k| (k.sniff)(head)) else {
        let known: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
        bail!(
            "{shown} is not a trace pg_trace reads (it starts with {}; expected {})",
            quote(head),
            known.join(" or ")
        );
    };
    let records = (kind.read)(path, &mut r)?;
    if !records.iter().any(|r| matches!(r, Record::Attach(_))) {
        bail!(
            "{shown}: no attach record: not a trace (line mode's JSON starts with one; \
             `pg_trace catalog`, `ps` and `probes` output is not a trace)"
        );
    }
    Ok(records)
}

/// A JSON object first, after any blank space.
fn ndjson_sniff(head: &[u8]) -> bool {
    head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

fn ndjson_read(path: &Path, r: &mut dyn BufRead) -> Result<Vec<Record>> {
    let shown = path.display();
    let mut records = Vec::new();
    let mut line = Vec::new();
    for n in 1u64.. {
        line.clear();
        let got = r
            .take(MAX_LINE + 1)
            .read_until(b'\n', &mut line)
            .with_context(|| format!("{shown} line {n}"))?;
        if got == 0 {
            break;
        }
        let complete = line.last() == Some(&b'\n');
        if !complete && got as u64 > MAX_LINE {
            bail!("{shown} line {n}: longer than {MAX_LINE} bytes, not a record");
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Record>(text) {
            Ok(rec) => records.push(rec),
            Err(_) if !complete => {
                bail!(
                    "{shown} line {n}: cut short (the file ends inside a record: {})",
                    quote(text)
                )
            }
            Err(e) => bail!(
                "{shown} line {n}: not a pg_trace record ({e}): {}",
                quote(text)
            ),
        }
    }
    Ok(records)
}
