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
pub mod times;

use crate::output::record::{Record, UsdtRecord};
use crate::process::status::sampler::{Round, WaitSample};
pub use events::{Events, EventsRef, EventsUntimed};

use crate::trace::{Event, Pid};
use anyhow::{Context, Result};
use format::{FileWriter, Frame, FrameItems};
use names::{NameAnswer, RelEntry};
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
/// are counted from it). Written whole (`rounds`: a replay's checkpoints, formats up to
/// 4), or as format 5's recorder writes them ([`WaitsOut`]); read either way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "WaitRoundsIn")]
pub struct WaitRounds {
    pub hz: f64,
    pub rounds: Vec<Round>,
}

/// [`WaitRounds`] in either form.
#[derive(Deserialize)]
struct WaitRoundsIn {
    hz: f64,
    #[serde(default)]
    rounds: Option<Vec<Round>>,
    #[serde(default)]
    r: Option<Vec<Vec<RoundElem>>>,
}

/// An element of a round as format 5 writes it: a number (its time's difference, then a
/// sample's CPU time's difference), or a sample whole.
#[derive(Deserialize)]
#[serde(untagged)]
enum RoundElem {
    N(i64),
    S(WaitSample),
}

/// The time between two rounds at `hz`, as both sides compute it.
fn round_period(hz: f64) -> u64 {
    if hz.is_finite() && hz > 0.0 {
        (1e9 / hz) as u64
    } else {
        0
    }
}

/// `s` as it was in the round before, but for its CPU time: written as that time's
/// difference.
fn same_but_cpu(s: &WaitSample, prev: Option<&WaitSample>) -> Option<i64> {
    let p = prev?;
    let same = p.pid == s.pid
        && p.event == s.event
        && p.active == s.active
        && p.query_id == s.query_id
        && p.query == s.query;
    match (same, p.cpu_ns, s.cpu_ns) {
        (true, Some(a), Some(b)) => Some(b.wrapping_sub(a) as i64),
        _ => None,
    }
}

impl TryFrom<WaitRoundsIn> for WaitRounds {
    type Error = String;

    fn try_from(w: WaitRoundsIn) -> Result<WaitRounds, String> {
        let rows = match (w.rounds, w.r) {
            (Some(rounds), None) => return Ok(WaitRounds { hz: w.hz, rounds }),
            (None, Some(rows)) => rows,
            _ => return Err("wait rounds as `rounds` or as `r`, not both".into()),
        };
        let period = round_period(w.hz);
        let mut rounds: Vec<Round> = Vec::with_capacity(rows.len());
        for row in rows {
            let mut row = row.into_iter();
            let Some(RoundElem::N(d)) = row.next() else {
                return Err("a wait round without its time".into());
            };
            let t_ns = match rounds.last() {
                None => d as u64,
                Some(p) => p.t_ns.wrapping_add(period).wrapping_add(d as u64),
            };
            let prev = rounds.last().map_or(&[][..], |r| &r.samples[..]);
            let mut samples = Vec::with_capacity(row.len());
            for (j, e) in row.enumerate() {
                samples.push(match e {
                    RoundElem::S(s) => s,
                    RoundElem::N(d) => {
                        let p = prev
                            .get(j)
                            .filter(|p| p.cpu_ns.is_some())
                            .ok_or("a wait sample said to be as before, with nothing before it")?;
                        WaitSample {
                            cpu_ns: p.cpu_ns.map(|c| c.wrapping_add(d as u64)),
                            ..p.clone()
                        }
                    }
                });
            }
            rounds.push(Round { t_ns, samples });
        }
        Ok(WaitRounds { hz: w.hz, rounds })
    }
}

/// Wait rounds as format 5 writes them: `{"hz", "r": [[dt, sample…]…]}`, `dt` the round's
/// time less the round before's and its period (the first: its time), a sample as it was
/// in the round before but for its CPU time written as that time's difference, else
/// whole. Sampled a hundred times a second, they were most of an idle or throttled
/// session's ticks.
pub struct WaitsOut<'a>(pub &'a WaitRounds);

impl Serialize for WaitsOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Rows<'a>(&'a WaitRounds);
        struct Row<'a> {
            d: i64,
            samples: &'a [WaitSample],
            prev: &'a [WaitSample],
        }
        impl Serialize for Rows<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let period = round_period(self.0.hz);
                s.collect_seq(self.0.rounds.iter().enumerate().map(|(i, r)| {
                    let prev = i.checked_sub(1).map(|i| &self.0.rounds[i]);
                    Row {
                        d: match prev {
                            None => r.t_ns as i64,
                            Some(p) => r.t_ns.wrapping_sub(p.t_ns).wrapping_sub(period) as i64,
                        },
                        samples: &r.samples,
                        prev: prev.map_or(&[][..], |p| &p.samples[..]),
                    }
                }))
            }
        }
        impl Serialize for Row<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                let mut seq = s.serialize_seq(Some(1 + self.samples.len()))?;
                seq.serialize_element(&self.d)?;
                for (j, x) in self.samples.iter().enumerate() {
                    match same_but_cpu(x, self.prev.get(j)) {
                        Some(d) => seq.serialize_element(&d)?,
                        None => seq.serialize_element(x)?,
                    }
                }
                seq.end()
            }
        }
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("hz", &self.0.hz)?;
        m.serialize_entry("r", &Rows(self.0))?;
        m.end()
    }
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

/// A `batch` line as format 5 writes it: the events without their times.
#[derive(Serialize)]
struct BatchOut<'a> {
    t: &'static str,
    at: u64,
    events: EventsUntimed<'a>,
}

/// A `tick` line as format 5 writes it: its wait rounds as [`WaitsOut`].
#[derive(Serialize)]
struct TickOut<'a> {
    t: &'static str,
    at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a Event>,
    #[serde(skip_serializing_if = "Option::is_none")]
    walked: Option<Walked>,
    #[serde(skip_serializing_if = "Option::is_none")]
    waits: Option<WaitsOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    copier: Option<&'a CopierTick>,
}

/// A `names` line as format 5 writes it: relation files' answers as [`RelEntry`]s.
#[derive(Serialize)]
struct NamesOut<'a> {
    t: &'static str,
    answers: Vec<&'a NameAnswer>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    rels: Vec<RelEntry>,
}

/// A frame being filled: its items as the current format writes them (NDJSON lines), and
/// the times of their batches' events, which the lines do not carry.
#[derive(Debug, Default)]
pub struct FrameBuf {
    pub raw: Vec<u8>,
    pub times: Vec<u64>,
    pub items: u32,
    /// The first step time in it, and the latest.
    pub first_at: Option<u64>,
    pub last_at: u64,
}

impl FrameBuf {
    /// One item; `at` its step's time (None for an item of the step before: names, notes).
    pub fn push(&mut self, at: Option<u64>, item: &ItemRef) -> Result<()> {
        let (len, n) = (self.raw.len(), self.times.len());
        let r = match item {
            ItemRef::Batch { at, events } => {
                self.times.extend(events.0.iter().map(|e| e.ts_ns));
                let line = BatchOut {
                    t: "batch",
                    at: *at,
                    events: EventsUntimed(events.0),
                };
                serde_json::to_writer(&mut self.raw, &line)
            }
            ItemRef::Names { answers } => {
                let (answers, rels) = names::compact(answers);
                let line = NamesOut {
                    t: "names",
                    answers,
                    rels,
                };
                serde_json::to_writer(&mut self.raw, &line)
            }
            &ItemRef::Tick {
                at,
                status,
                walked,
                waits,
                copier,
            } => {
                let line = TickOut {
                    t: "tick",
                    at,
                    status,
                    walked,
                    waits: waits.map(WaitsOut),
                    copier,
                };
                serde_json::to_writer(&mut self.raw, &line)
            }
            other => serde_json::to_writer(&mut self.raw, other),
        };
        if let Err(e) = r {
            self.raw.truncate(len);
            self.times.truncate(n);
            return Err(e.into());
        }
        self.raw.push(b'\n');
        self.items += 1;
        if let Some(at) = at {
            self.first_at.get_or_insert(at);
            self.last_at = self.last_at.max(at);
        }
        Ok(())
    }

    /// Its first step time, or its last when it has none.
    pub fn first(&self) -> u64 {
        self.first_at.unwrap_or(self.last_at)
    }

    /// The frame standing alone (a ring's).
    pub fn frame(&self) -> Result<Frame> {
        Frame::items(
            self.first(),
            self.last_at,
            self.items,
            &self.raw,
            &self.times,
        )
    }

    pub fn clear(&mut self) {
        self.raw.clear();
        self.times.clear();
        self.items = 0;
        self.first_at = None;
    }
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
    frame: FrameBuf,
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
            frame: FrameBuf::default(),
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
        if let (Some(at), Some(first)) = (at, self.frame.first_at) {
            if at.saturating_sub(first) >= FLUSH_NS || self.frame.raw.len() >= FLUSH_BYTES {
                self.flush_at_step(true);
            }
        }
        if let Err(e) = self.frame.push(at, item) {
            self.fail(e);
            return;
        }
        // A long run of items without a time (a copier's plan) is cut by size too.
        if at.is_none() && self.frame.raw.len() >= FLUSH_BYTES {
            self.flush_at_step(false);
        }
    }

    /// Cut the current frame now (at a step's end: the caller is between steps).
    pub fn flush(&mut self) {
        self.flush_at_step(true);
    }

    fn flush_at_step(&mut self, step_end: bool) {
        if self.frame.items == 0 {
            return;
        }
        let ck = &mut self.checkpoints;
        let stopped = &mut self.checkpoints_stopped;
        let stream = &mut self.stream;
        let fb = &self.frame;
        let r = match self.sink.as_mut() {
            Some(Sink::File(w)) => stream
                .compress(fb.first(), fb.last_at, fb.items, &fb.raw, &fb.times)
                .and_then(|f| {
                    let info = w.frame(&f)?;
                    if let Some(c) = ck.as_mut() {
                        // Checkpoints only speed seeking up: one that fails stops
                        // them, not the recording.
                        let (bytes, raw) = (f.payload.len() as u64, fb.raw.len() as u64);
                        let r = c.frame_written(info, bytes, raw, step_end);
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
            Some(Sink::Ring(r)) => fb.frame().and_then(|f| r.push(f, step_end)),
            None => Ok(()),
        };
        self.frame.clear();
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

const NAMES_PREFIX: &[u8] = b"{\"t\":\"names\",";

/// A `batch` line's fields (its `t` skipped).
#[derive(Deserialize)]
struct BatchIn {
    at: u64,
    events: Events,
}

/// A `names` line's fields: the answers, and (format 5) the relation files' entries.
#[derive(Deserialize)]
struct NamesIn {
    answers: Vec<NameAnswer>,
    #[serde(default)]
    rels: Vec<RelEntry>,
}

/// A format 5 `batch` line, its events given their times from the frame's.
struct BatchSeed<'a, 'b>(&'a mut events::Times<'b>);

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum BatchField {
    At,
    Events,
    #[serde(other)]
    Other,
}

impl<'de> serde::de::DeserializeSeed<'de> for BatchSeed<'_, '_> {
    type Value = Item;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Item, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for BatchSeed<'_, '_> {
    type Value = Item;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a batch")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Item, A::Error> {
        use serde::de::Error;
        let (mut at, mut events) = (None, None);
        while let Some(k) = m.next_key()? {
            match k {
                BatchField::At => at = Some(m.next_value()?),
                BatchField::Events if events.is_none() => {
                    events = Some(m.next_value_seed(events::EventsSeed(&mut *self.0))?)
                }
                BatchField::Events => return Err(A::Error::duplicate_field("events")),
                BatchField::Other => {
                    m.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(Item::Batch {
            at: at.ok_or_else(|| A::Error::missing_field("at"))?,
            events: events.ok_or_else(|| A::Error::missing_field("events"))?,
        })
    }
}

/// The items of one frame of formats 1 to 4, in order; a line that is not an item ends
/// it with an error.
pub fn parse_items(raw: &[u8]) -> Result<Vec<Item>> {
    parse_lines(raw, None)
}

/// The items of one frame as read, of any format.
pub fn parse_frame(f: &FrameItems) -> Result<Vec<Item>> {
    let Some(ts) = &f.times else {
        return parse_lines(&f.raw, None);
    };
    let mut times = events::Times::new(ts);
    let items = parse_lines(&f.raw, Some(&mut times))?;
    if !times.all_taken() {
        anyhow::bail!("a frame with more times than events");
    }
    Ok(items)
}

fn parse_lines(raw: &[u8], mut times: Option<&mut events::Times>) -> Result<Vec<Item>> {
    let mut out = Vec::new();
    for (i, l) in raw
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
    {
        // Most lines are batches: read straight into their fields, not through the
        // tagged enum's buffering (the writer puts `t` first).
        let item = if l.starts_with(BATCH_PREFIX) {
            match times.as_deref_mut() {
                Some(t) => {
                    let mut d = serde_json::Deserializer::from_slice(l);
                    serde::de::DeserializeSeed::deserialize(BatchSeed(t), &mut d)
                        .and_then(|item| d.end().map(|()| item))
                }
                None => serde_json::from_slice::<BatchIn>(l).map(|b| Item::Batch {
                    at: b.at,
                    events: b.events,
                }),
            }
            .map_err(anyhow::Error::from)
        } else if l.starts_with(NAMES_PREFIX) {
            serde_json::from_slice::<NamesIn>(l)
                .map_err(anyhow::Error::from)
                .and_then(|n| {
                    let mut answers = n.answers;
                    for e in &n.rels {
                        answers.extend(
                            e.expand()
                                .context("a relation entry that names no relation file")?,
                        );
                    }
                    Ok(Item::Names { answers })
                })
        } else {
            serde_json::from_slice(l).map_err(anyhow::Error::from)
        };
        out.push(item.with_context(|| format!("item {} of a frame", i + 1))?);
    }
    Ok(out)
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

    /// Items as format 5 writes them (events without their times, relation files' names
    /// in few words) parse back to the items given, with the frame's times.
    #[test]
    fn a_frame_reads_back_as_it_was_written() {
        use crate::trace::{EventKind, Syscall};
        let ev = |ts, kind| Event {
            ts_ns: ts,
            pid: 7,
            kind,
        };
        let read = |ts, off| {
            ev(
                ts,
                EventKind::Read {
                    syscall: Syscall::Pread64,
                    fd: 3,
                    offset: Some(off),
                    requested: 8192,
                    result: 8192,
                },
            )
        };
        let first = vec![
            read(1_000, 0),
            read(900, 8192),
            ev(5_000, EventKind::Close { fd: 3 }),
        ];
        let second = vec![read(7_000, 0)];
        let answers = vec![
            NameAnswer::FileSize {
                path: "base/5/1".into(),
                size: Some(3),
            },
            NameAnswer::Refresh { changed: false },
        ];
        let mut fb = FrameBuf::default();
        fb.push(
            Some(10),
            &ItemRef::Batch {
                at: 10,
                events: EventsRef(&first),
            },
        )
        .unwrap();
        fb.push(None, &ItemRef::Names { answers: &answers })
            .unwrap();
        fb.push(
            Some(20),
            &ItemRef::Batch {
                at: 20,
                events: EventsRef(&second),
            },
        )
        .unwrap();
        fb.push(Some(30), &ItemRef::Finish { at: 30 }).unwrap();
        assert_eq!((fb.items, fb.first(), fb.last_at), (4, 10, 30));
        assert_eq!(fb.times, [1_000, 900, 5_000, 7_000]);
        let raw = String::from_utf8(fb.raw.clone()).unwrap();
        assert!(raw.contains("[7,1,\"pread64\",3,0,8192,8192]"), "{raw}");
        let read = FrameItems {
            raw: fb.raw.clone(),
            times: Some(fb.times.clone()),
        };
        let items = parse_frame(&read).unwrap();
        assert_eq!(
            items,
            [
                Item::Batch {
                    at: 10,
                    events: Events(first)
                },
                Item::Names { answers },
                Item::Batch {
                    at: 20,
                    events: Events(second)
                },
                Item::Finish { at: 30 }
            ]
        );
        // Times that do not add up to the events are an error.
        for times in [vec![1, 2, 3], vec![1, 2, 3, 4, 5]] {
            let bad = FrameItems {
                raw: fb.raw.clone(),
                times: Some(times),
            };
            assert!(parse_frame(&bad).is_err());
        }
        assert!(
            parse_items(&fb.raw).is_err(),
            "no times: not format 4's items"
        );
    }

    /// Wait rounds as format 5 writes them come back whole, and whole ones (older files,
    /// checkpoints) are still read.
    #[test]
    fn wait_rounds_come_back_as_they_were() {
        use crate::process::status::sampler::WaitEvent;
        let ev = |name: &str| {
            Some(std::sync::Arc::new(WaitEvent {
                class: "Timeout".into(),
                name: name.into(),
            }))
        };
        let sample = |pid, e, cpu| WaitSample {
            pid,
            event: e,
            active: true,
            query_id: None,
            query: Some("BASE_BACKUP".into()),
            cpu_ns: cpu,
        };
        let rounds = vec![
            Round {
                t_ns: 1_000_000_000,
                samples: vec![sample(7, ev("A"), Some(5)), sample(8, None, None)],
            },
            Round {
                t_ns: 1_010_003_000,
                samples: vec![sample(7, ev("A"), Some(9)), sample(8, None, None)],
            },
            // A new event, a sample fewer, time going back, the CPU time going back.
            Round {
                t_ns: 1_009_000_000,
                samples: vec![sample(7, ev("B"), Some(9))],
            },
            Round {
                t_ns: u64::MAX,
                samples: vec![sample(7, ev("B"), Some(1)), sample(9, None, Some(3))],
            },
            Round {
                t_ns: 0,
                samples: vec![],
            },
        ];
        for hz in [100.0, 0.0, -1.0, 3.0] {
            let w = WaitRounds {
                hz,
                rounds: rounds.clone(),
            };
            let json = serde_json::to_string(&WaitsOut(&w)).unwrap();
            let back: WaitRounds = serde_json::from_str(&json).unwrap();
            assert_eq!(back, w, "{json}");
            let whole: WaitRounds =
                serde_json::from_str(&serde_json::to_string(&w).unwrap()).unwrap();
            assert_eq!(whole.rounds, w.rounds);
        }
        let w = WaitRounds {
            hz: 100.0,
            rounds: rounds.clone(),
        };
        let json = serde_json::to_string(&WaitsOut(&w)).unwrap();
        // As before but for its CPU time: the difference; without a CPU time: whole.
        assert!(json.contains("[3000,4,{\"pid\":8,"), "{json}");
        for bad in [
            r#"{"hz":1,"r":[[1,2]]}"#,
            r#"{"hz":1,"r":[[]]}"#,
            r#"{"hz":1,"r":[],"rounds":[]}"#,
            r#"{"hz":1}"#,
        ] {
            assert!(serde_json::from_str::<WaitRounds>(bad).is_err(), "{bad}");
        }
    }
}
