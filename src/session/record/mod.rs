//! The flight recorder: what enters the model of a live session (each drain's events, each
//! tick's status sample and time, the namer's answers, the end), written as it happens to
//! a file (`pg_trace record`, `--record FILE`) or kept for the last minutes in memory
//! (`--keep`), so that `pg_trace replay` runs the same model through the same loops
//! without the host. The file format is in `format.rs` and docs/recording.md.

pub mod events;
pub mod format;
pub mod mem;
pub mod names;
pub mod ring;

use crate::output::record::{Record, UsdtRecord};
pub use events::{Events, EventsRef};

use crate::trace::{Event, Pid};
use anyhow::{Context, Result};
use format::{FileWriter, Frame};
use names::NameAnswer;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A frame is cut after this much time on the session's clock: a recorder killed loses at
/// most the last second.
pub const FLUSH_NS: u64 = 1_000_000_000;
/// ...or this much uncompressed text, whichever comes first.
const FLUSH_BYTES: usize = 8 << 20;

/// What the recording is of: the facts a replay shows and needs, the host's included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub pg_trace_version: String,
    /// When the recording started, seconds since the Unix epoch (UTC).
    pub recorded_at_unix_s: u64,
    /// `uname -sr` of the host.
    pub kernel: Option<String>,
    pub pid: Pid,
    pub title: String,
    pub datadir: String,
    pub major: u32,
    pub block_size: Option<u32>,
    pub segment_bytes: u64,
    /// The tracer's name (`ebpf`, `ebpf+usdt`, `procfs`...).
    pub backend: String,
    pub limitations: Vec<String>,
    pub usdt: UsdtRecord,
    /// The session's clock at attach (ns): interval times count from it.
    pub start_ns: u64,
    pub memory_note: Option<String>,
    /// Copier mode.
    pub copier: bool,
    /// Copier mode: the copier's name at the start (absent from recordings made before
    /// copier mode was recorded: their plan and process states are not in them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copier_name: Option<String>,
    /// A ring dump: what it keeps and why it was written.
    pub ring: Option<RingInfo>,
    /// The attach record line mode printed.
    pub attach: Record,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RingInfo {
    pub keep_s: f64,
    /// `signal`, `stall` or `exit`.
    pub reason: String,
    /// It starts with the state from before its window, as a stored checkpoint before its
    /// first frame (a replay starts from there). Older dumps carried a few events instead.
    #[serde(default)]
    pub base: bool,
    /// Why the state from before the window could not be kept, when it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<String>,
}

/// The walk of the data directory a backup without a server estimate got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Walked {
    pub bytes: u64,
    pub tablespaces: Option<u64>,
}

/// One line of a frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Item {
    /// One drain of the tracer: these events, applied in this order.
    Batch { at: u64, events: Events },
    /// The namer's answers during the step before this line.
    Names { answers: Vec<NameAnswer> },
    /// A tick at `at`: the status sample applied first, the walk's total when it came.
    Tick {
        at: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<Event>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        walked: Option<Walked>,
        /// The wait-event samples taken since the last tick, folded before it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        waits: Option<WaitRounds>,
        /// Copier mode: what /proc and the server gave the model at this tick.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        copier: Option<Box<CopierTick>>,
    },
    /// The session's last tick.
    Finish { at: u64 },
    /// The summary's time: the recording ends here.
    End { at: u64 },
    /// A ring dump's state from before its start that is no event (the backup walk's
    /// total): applied with the next tick that has none of its own.
    Carried {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        walked: Option<Walked>,
    },
    /// The one-line notes said on stderr (or in the TUI's log) since the item before.
    Notes { notes: Vec<String> },
    /// Copier mode: part of the walk's plan of what must be copied (split so that no
    /// frame outgrows its bound); the tick whose `copier.plan` is true sets it.
    PlanPart {
        files: Vec<crate::pgdata::backup_size::PlannedFile>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tablespaces: Option<Vec<String>>,
        #[serde(default)]
        truncated: bool,
    },
}

/// Copier mode's tick: the copier's name, its processes sampled from /proc, the plan's
/// arrival, and the server's side of the backup, as the live tick applied them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopierTick {
    pub name: String,
    /// The plan came at this tick (in the `plan_part` items before it).
    #[serde(default)]
    pub plan: bool,
    pub samples: Vec<crate::model::copier::ProcSample>,
    pub interval_ns: u64,
    /// The server's side changed at this tick: to this.
    #[serde(default)]
    pub server_changed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<crate::process::server_backup::ServerBackup>,
}

/// Files per `plan_part` item: a few MiB of JSON.
pub const PLAN_PART_FILES: usize = 50_000;

impl Item {
    pub fn at(&self) -> Option<u64> {
        match self {
            Item::Batch { at, .. }
            | Item::Tick { at, .. }
            | Item::Finish { at }
            | Item::End { at } => Some(*at),
            Item::Names { .. }
            | Item::Carried { .. }
            | Item::Notes { .. }
            | Item::PlanPart { .. } => None,
        }
    }
}

/// Wait-event sampling rounds, and the rate they were taken at (the profile's seconds
/// are counted from it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitRounds {
    pub hz: f64,
    pub rounds: Vec<crate::process::status::sampler::Round>,
}

/// [`Item`], borrowed: what the recorder serialises without copying events.
#[derive(Serialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ItemRef<'a> {
    Batch {
        at: u64,
        events: EventsRef<'a>,
    },
    Names {
        answers: &'a [NameAnswer],
    },
    Tick {
        at: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<&'a Event>,
        #[serde(skip_serializing_if = "Option::is_none")]
        walked: Option<Walked>,
        #[serde(skip_serializing_if = "Option::is_none")]
        waits: Option<&'a WaitRounds>,
        #[serde(skip_serializing_if = "Option::is_none")]
        copier: Option<&'a CopierTick>,
    },
    Finish {
        at: u64,
    },
    End {
        at: u64,
    },
    Carried {
        #[serde(skip_serializing_if = "Option::is_none")]
        walked: Option<Walked>,
    },
    Notes {
        notes: &'a [String],
    },
    PlanPart {
        files: &'a [crate::pgdata::backup_size::PlannedFile],
        #[serde(skip_serializing_if = "Option::is_none")]
        tablespaces: Option<&'a [String]>,
        truncated: bool,
    },
}

enum Sink {
    File(Box<FileWriter>),
    Ring(Box<ring::Ring>),
}

/// The tap: items in, frames out.
pub struct Recorder {
    header: Header,
    sink: Option<Sink>,
    /// A file's stored checkpoints: a replay of what is written, played as it is written.
    checkpoints: Option<Box<crate::session::checkpoints::Writer>>,
    /// Why the stored checkpoints stopped, if they did (the recording goes on without).
    pub checkpoints_stopped: Option<String>,
    /// A file's frames: event-sparse ones continue one zstd stream between checkpoints.
    stream: format::Streamer,
    buf: Vec<u8>,
    items: u32,
    first_at: Option<u64>,
    last_at: u64,
    /// The first failure; the recording stops there and says so once.
    pub failed: Option<String>,
    /// Where it writes (a file) or dumps (a ring).
    pub path: PathBuf,
}

/// What a recording is asked to be.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    pub path: PathBuf,
    pub force: bool,
    /// Ring mode: keep this much time, write on SIGUSR1, at exit and on a stall.
    pub keep: Option<std::time::Duration>,
    pub dump_on_stall: bool,
}

impl Recorder {
    /// Start recording a session whose facts are `header`.
    pub fn start(opts: &RecordOptions, header: Header) -> Result<Recorder> {
        let mut checkpoints = None;
        let mut checkpoints_stopped = None;
        let sink = match opts.keep {
            None => {
                let json = serde_json::to_vec(&header)?;
                let w = FileWriter::create(&opts.path, opts.force, &json)?;
                match crate::session::checkpoints::Writer::open(&opts.path) {
                    Ok(c) => checkpoints = Some(Box::new(c)),
                    Err(e) => checkpoints_stopped = Some(format!("{e:#}")),
                }
                Sink::File(Box::new(w))
            }
            Some(keep) => Sink::Ring(Box::new(ring::Ring::new(
                keep,
                opts.path.clone(),
                opts.force,
                opts.dump_on_stall,
                &header,
            )?)),
        };
        Ok(Recorder {
            header,
            sink: Some(sink),
            checkpoints,
            checkpoints_stopped,
            stream: format::Streamer::default(),
            buf: Vec::new(),
            items: 0,
            first_at: None,
            last_at: 0,
            failed: None,
            path: opts.path.clone(),
        })
    }

    pub fn is_ring(&self) -> bool {
        matches!(self.sink, Some(Sink::Ring(_)))
    }

    /// One item; a frame is cut when it has a second or 8 MiB of them, before the step
    /// (an item with a time) that would make it longer: a frame then ends with the names
    /// and notes of its last step, which a replay loads with that step.
    pub fn write(&mut self, at: Option<u64>, item: &ItemRef) {
        if self.sink.is_none() {
            return;
        }
        if let (Some(at), Some(first)) = (at, self.first_at) {
            if at.saturating_sub(first) >= FLUSH_NS || self.buf.len() >= FLUSH_BYTES {
                self.flush_at_step(true);
            }
        }
        if let Err(e) = serde_json::to_writer(&mut self.buf, item) {
            self.fail(e.into());
            return;
        }
        self.buf.push(b'\n');
        self.items += 1;
        match at {
            Some(at) => {
                self.first_at.get_or_insert(at);
                self.last_at = self.last_at.max(at);
            }
            // A long run of items without a time (a copier's plan) is cut by size too.
            None if self.buf.len() >= FLUSH_BYTES => self.flush_at_step(false),
            None => {}
        }
    }

    /// Cut the current frame now (at a step's end: the caller is between steps).
    pub fn flush(&mut self) {
        self.flush_at_step(true);
    }

    fn flush_at_step(&mut self, step_end: bool) {
        if self.items == 0 {
            return;
        }
        let first = self.first_at.unwrap_or(self.last_at);
        let ck = &mut self.checkpoints;
        let stopped = &mut self.checkpoints_stopped;
        let stream = &mut self.stream;
        let (buf, items, last) = (&self.buf, self.items, self.last_at);
        let r = match self.sink.as_mut() {
            Some(Sink::File(w)) => stream.compress(first, last, items, buf).and_then(|f| {
                let info = w.frame(&f)?;
                if let Some(c) = ck.as_mut() {
                    // Checkpoints only speed seeking up: one that fails stops
                    // them, not the recording.
                    let r = c.frame_written(info, f.payload.len() as u64, step_end);
                    match r.and_then(|cp| cp.map(|cp| w.checkpoint(&cp)).transpose()) {
                        // A seek to it decodes no frame before it.
                        Ok(Some(info)) => {
                            c.stored_at(info);
                            stream.restart();
                        }
                        Ok(None) => {}
                        Err(e) => {
                            *stopped = Some(format!("{e:#}"));
                            *ck = None;
                        }
                    }
                }
                Ok(())
            }),
            // A ring drops its oldest frames: each stands alone.
            Some(Sink::Ring(r)) => {
                Frame::compress(first, last, items, buf).and_then(|f| r.push(f, step_end))
            }
            None => Ok(()),
        };
        self.buf.clear();
        self.items = 0;
        self.first_at = None;
        if let Err(e) = r {
            self.fail(e);
        }
    }

    fn fail(&mut self, e: anyhow::Error) {
        self.sink = None;
        self.failed
            .get_or_insert_with(|| format!("recording to {} stopped: {e:#}", self.path.display()));
    }

    /// Ring mode: write the ring out now (`reason`: signal, stall, exit). The file written,
    /// or None when not a ring or nothing kept.
    pub fn dump(&mut self, reason: &str) -> Result<Option<PathBuf>> {
        self.flush();
        let Some(Sink::Ring(r)) = self.sink.as_mut() else {
            return Ok(None);
        };
        r.dump(&self.header, reason)
    }

    /// The stored checkpoints written so far: how many, their bytes, and the CPU time the
    /// replay behind them and their encoding took (ns).
    pub fn checkpoint_stats(&self) -> Option<crate::session::checkpoints::WriterStats> {
        self.checkpoints.as_ref().map(|c| c.stats)
    }

    /// Store checkpoints every `ns` of recording time (tests: short recordings).
    pub fn store_checkpoints_every(&mut self, ns: u64) {
        if let Some(c) = self.checkpoints.as_mut() {
            c.every(ns);
        }
    }

    /// Ring mode with the stall trigger on.
    pub fn dumps_on_stall(&self) -> bool {
        matches!(&self.sink, Some(Sink::Ring(r)) if r.dump_on_stall)
    }

    /// The end: the last frame, then the index (a file) or the exit dump (a ring).
    pub fn close(mut self) -> Result<Option<PathBuf>> {
        self.flush();
        if let Some(e) = &self.failed {
            anyhow::bail!("{e}");
        }
        match self.sink.take() {
            Some(Sink::File(w)) => {
                w.close()?;
                Ok(Some(self.path.clone()))
            }
            Some(Sink::Ring(mut r)) => r.dump(&self.header, "exit"),
            None => Ok(None),
        }
    }

    /// Ring mode: how much it holds, compressed, and the time it spans (for tests and
    /// the bound's check).
    pub fn ring_extent(&self) -> Option<(usize, u64)> {
        match &self.sink {
            Some(Sink::Ring(r)) => Some(r.extent()),
            _ => None,
        }
    }
}

/// What is said on stderr when a recording starts.
pub fn started_note(r: &RecordOptions) -> String {
    match r.keep {
        None => format!("recording to {}", r.path.display()),
        Some(k) => {
            format!(
            "keeping the last {} in memory: written to {} at exit, on SIGUSR1 (kill -USR1 {}){}",
            crate::text::human_duration(k.as_secs_f64()),
            r.path.display(),
            std::process::id(),
            if r.dump_on_stall { " and when it stalls" } else { "" }
        )
        }
    }
}

/// `uname -sr`, from /proc.
pub fn kernel() -> Option<String> {
    let read = |f: &str| {
        std::fs::read_to_string(format!("/proc/sys/kernel/{f}"))
            .ok()
            .map(|s| s.trim().to_string())
    };
    Some(format!("{} {}", read("ostype")?, read("osrelease")?))
}

pub fn unix_now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `20261202-114622` (UTC) for file names.
pub fn stamp(unix_s: u64) -> String {
    i64::try_from(unix_s)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map_or_else(
            || unix_s.to_string(),
            |t| t.format("%Y%m%d-%H%M%S").to_string(),
        )
}

/// `pg_trace-PID-YYYYMMDD-HHMMSS.pgtrace` in the working directory.
pub fn default_path(pid: Pid) -> PathBuf {
    PathBuf::from(format!("pg_trace-{pid}-{}.pgtrace", stamp(unix_now_s())))
}

/// Parse `--keep`: `15m`, `90s`, `2h`, `1d`, or plain seconds.
pub fn parse_keep(s: &str) -> Result<std::time::Duration> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .ok()
        .filter(|n: &f64| n.is_finite() && *n > 0.0)
        .with_context(|| format!("--keep {s}: give a duration like 15m, 90s or 2h"))?;
    let mult = match unit {
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => anyhow::bail!("--keep {s}: the unit is s, m, h or d"),
    };
    std::time::Duration::try_from_secs_f64(n * mult)
        .ok()
        .filter(|d| d.as_secs() <= 30 * 86_400)
        .with_context(|| format!("--keep {s}: at most 30 days"))
}

const BATCH_PREFIX: &[u8] = b"{\"t\":\"batch\",";

/// A `batch` line's fields (its `t` skipped).
#[derive(Deserialize)]
struct BatchIn {
    at: u64,
    events: Events,
}

/// The items of one frame, in order; a line that is not an item ends it with an error.
pub fn parse_items(raw: &[u8]) -> Result<Vec<Item>> {
    raw.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| {
            // Most lines are batches: read straight into their fields, not through the
            // tagged enum's buffering (the writer puts `t` first).
            if l.starts_with(BATCH_PREFIX) {
                serde_json::from_slice::<BatchIn>(l).map(|b| Item::Batch {
                    at: b.at,
                    events: b.events,
                })
            } else {
                serde_json::from_slice(l)
            }
            .with_context(|| format!("item {} of a frame", i + 1))
        })
        .collect()
}

/// A path next to `p` with `-N` before its extension: the Nth dump of a ring.
pub fn numbered(p: &Path, n: u32) -> PathBuf {
    if n == 0 {
        return p.to_path_buf();
    }
    let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned());
    let ext = p.extension().map(|s| s.to_string_lossy().into_owned());
    let name = match (stem, ext) {
        (Some(s), Some(e)) => format!("{s}-{n}.{e}"),
        (Some(s), None) => format!("{s}-{n}"),
        _ => format!("pg_trace-{n}.pgtrace"),
    };
    p.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_and_keeps() {
        assert_eq!(stamp(0), "19700101-000000");
        assert_eq!(stamp(1_796_212_782), "20261202-115942");
        assert_eq!(parse_keep("15m").unwrap().as_secs(), 900);
        assert_eq!(parse_keep("90").unwrap().as_secs(), 90);
        assert!(parse_keep("-1m").is_err());
        assert!(parse_keep("5y").is_err());
        assert!(parse_keep("99999d").is_err());
        assert_eq!(
            numbered(Path::new("/x/a.pgtrace"), 2),
            PathBuf::from("/x/a-2.pgtrace")
        );
    }
}
