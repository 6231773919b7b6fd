//! The flight recorder's budgets (issue 13): file bytes per million events, and opening a
//! one-hour recording and seeking anywhere in it.
//!
//! One hour of a sequential scan at 20,000 8 kB reads a second (72 M events) with a status
//! sample every second, generated lazily by a tracer on a scripted clock and recorded
//! through the real line loop (`--record`), as `pg_trace -p PID --no-tui --record` writes
//! it, the recorder storing replay checkpoints in it (what they cost it: bytes, CPU); then
//! opened in the replay TUI's player, in the same run without the stored checkpoints
//! (the frames copied to a file of their own: a seek plays from the start, taking
//! checkpoints in memory) and with them: the open and a first seek to 10 %, 50 % and the
//! end, each in a fresh replay; then seeks anywhere after a first one to the end.
//! `PG_TRACE_BENCH_REC_SECS` and `PG_TRACE_BENCH_REC_RATE` change the hour and the rate;
//! `PG_TRACE_BENCH_REC_KEEP=FILE` keeps the recording.
//!
//!     cargo bench --bench recording

#[path = "../tests/support/format1.rs"]
mod format1;
#[path = "../tests/support/scripted.rs"]
mod scripted;

use pg_trace::output::Format;
use pg_trace::process::status::StatusSample;
use pg_trace::session::line::{line_loop, Pace};
use pg_trace::session::record::{format, parse_frame, parse_items, Item, RecordOptions};
use pg_trace::session::replay_tui::Replayer;
use pg_trace::session::{Replay, Session};
use pg_trace::trace::replay::{Clock, ManualClock};
use pg_trace::trace::{Event, EventKind, Pid, Tracer, TracerStats};
use scripted::{ev, open, pread, FakeNamer, PID, SEG, T0};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SEC: u64 = 1_000_000_000;

/// A backend scanning sales.orders' first segment over and over, `rate` reads a second,
/// for `secs`, with a status sample each second; made as the clock reaches each event.
struct Generator {
    clock: ManualClock,
    rate: u64,
    end: u64,
    n: u64,
    opened: bool,
    exited: bool,
}

impl Tracer for Generator {
    fn name(&self) -> &'static str {
        "replay"
    }
    fn add_pid(&mut self, _pid: Pid) -> anyhow::Result<()> {
        Ok(())
    }
    fn remove_pid(&mut self, _pid: Pid) {}
    fn poll(&mut self, out: &mut Vec<Event>) -> anyhow::Result<()> {
        let now = self.clock.now_ns();
        if !self.opened {
            out.push(open(T0, 24, "base/16385/16388"));
            self.opened = true;
        }
        loop {
            let ts = T0 + 1 + self.n * SEC / self.rate;
            if ts > now || ts >= self.end {
                break;
            }
            let blocks = SEG / 8192;
            out.push(pread(ts, 24, (self.n % blocks) * 8192, 8192));
            if self.n % self.rate == 0 {
                out.push(status(ts + 1));
            }
            self.n += 1;
        }
        if now >= self.end && !self.exited {
            out.push(ev(
                self.end,
                EventKind::Exit {
                    code: Some(0),
                    signal: None,
                },
            ));
            self.exited = true;
        }
        Ok(())
    }
    fn stats(&self) -> TracerStats {
        TracerStats {
            events: self.n,
            lost: Vec::new(),
        }
    }
    fn detach(&mut self) {}
    fn limitations(&self) -> Vec<String> {
        Vec::new()
    }
}

fn status(ts: u64) -> Event {
    let mut s = StatusSample {
        pid: PID,
        major: 15,
        backend_type: Some("client backend".into()),
        state: Some("active".into()),
        sampled_at_us: 800_000_000_000_000 + ((ts - T0) / 1000) as i64,
        query: Some("SELECT count(*) FROM sales.orders".into()),
        wait_event_type: Some("IO".into()),
        wait_event: Some("DataFileRead".into()),
        ..StatusSample::default()
    };
    s.kernel.state = Some('D');
    ev(
        ts,
        EventKind::Status {
            sample: Box::new(s),
        },
    )
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&v| v > 0)
        .unwrap_or(default)
}

fn main() {
    // `cargo test --all-targets` runs this binary too: measure only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("recording: benchmark only runs under `cargo bench`");
        return;
    }
    let secs = env_u64("PG_TRACE_BENCH_REC_SECS", 3600);
    let rate = env_u64("PG_TRACE_BENCH_REC_RATE", 20_000);
    let dir = tempfile::tempdir().unwrap();
    // `PG_TRACE_BENCH_REC_KEEP=FILE` keeps the recording there (to profile a replay).
    let path = std::env::var_os("PG_TRACE_BENCH_REC_KEEP")
        .map_or_else(|| dir.path().join("hour.pgtrace"), std::path::PathBuf::from);

    let clock = ManualClock::starting_at(T0);
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    let mut s = Session::replay(Replay {
        pid: PID,
        title: "postgres: alice shop [local] SELECT".into(),
        datadir: "/var/lib/postgresql/15/main".into(),
        major: 15,
        segment_bytes: SEG,
        namer: Box::new(FakeNamer),
        tracer: Box::new(Generator {
            clock: clock.clone(),
            rate,
            end: T0 + secs * SEC,
            n: 0,
            opened: false,
            exited: false,
        }),
        clock: shared,
    });
    s.record(&RecordOptions {
        path: path.clone(),
        force: false,
        keep: None,
        dump_on_stall: false,
    })
    .unwrap();
    let pace = Pace {
        interval: Duration::from_secs(1),
        duration: None,
        format: Format::Json,
        debug: false,
    };
    let t = Instant::now();
    line_loop(
        pace,
        &mut s,
        &AtomicBool::new(false),
        &mut std::io::sink(),
        &mut |_| {},
    )
    .unwrap();
    let events = s.model.events;
    let ck = s.checkpoint_stats();
    drop(s);
    let recorded = t.elapsed();
    let size = std::fs::metadata(&path).unwrap().len();
    let per_million = size as f64 / (events as f64 / 1e6) / (1 << 20) as f64;
    println!(
        "recording: {secs} s at {rate} reads/s: {events} events in {size} bytes: \
         {per_million:.2} MiB per million events (budget 4); recorded in {recorded:.1?} \
         (model, line mode and recorder together)"
    );

    let ck = match ck {
        (Some(c), None) => c,
        (_, why) => panic!("no stored checkpoints: {why:?}"),
    };
    let hours = secs as f64 / 3600.0;
    println!(
        "stored checkpoints: {} in {} bytes ({:.2} MiB per hour, {:.1} % of the file); \
         the recorder's replay behind them {:.2?} ({:.3} % of the recording's time), \
         encoding {:.2?} per checkpoint",
        ck.count,
        ck.bytes,
        ck.bytes as f64 / hours / (1 << 20) as f64,
        100.0 * ck.bytes as f64 / size as f64,
        Duration::from_nanos(ck.replay_ns),
        100.0 * ck.replay_ns as f64 / (secs as f64 * 1e9),
        Duration::from_nanos(ck.encode_ns / ck.count.max(1)),
    );

    decoding(&path);
    // Against the same frames as format 3 wrote them (each on its own, at level 3, each
    // event with its time), in the same run: what format 4's streams and level 9 and
    // format 5's times apart save, and what they cost a reader.
    let v3 = dir.path().join("hour-as-format-3.pgtrace");
    as_format_3(&path, &v3);
    let (size4, size3) = (
        std::fs::metadata(&path).unwrap().len(),
        std::fs::metadata(&v3).unwrap().len(),
    );
    let (e4, d4) = decode_all(&path);
    let (e3, d3) = decode_all(&v3);
    assert_eq!(e3, e4);
    println!(
        "format 5 vs its frames as format 3 wrote them: {size4} vs {size3} bytes \
         ({:.2} vs {:.2} MiB per million events); decoded (read, checked, decompressed, \
         parsed) at {:.2} vs {:.2} M events/s ({:.2}x format 3's time)",
        size4 as f64 / (e4 as f64 / 1e6) / (1 << 20) as f64,
        size3 as f64 / (e3 as f64 / 1e6) / (1 << 20) as f64,
        e4 as f64 / d4.as_secs_f64() / 1e6,
        e3 as f64 / d3.as_secs_f64() / 1e6,
        d4.as_secs_f64() / d3.as_secs_f64(),
    );

    // Before: the same frames without the stored checkpoints (as format 2 was): seeks
    // play from the start and take checkpoints in memory as they go.
    let before = dir.path().join("hour-without-checkpoints.pgtrace");
    strip_checkpoints(&path, &before);
    first_seeks("without stored checkpoints", &before);
    first_seeks("with stored checkpoints", &path);

    let t = Instant::now();
    let mut r = Replayer::open(&path).unwrap();
    let opened = t.elapsed();
    let t = Instant::now();
    r.seek(r.end).unwrap();
    let first = t.elapsed();
    assert_eq!(r.pos, r.end);
    let span = r.end - r.start;
    let mut worst = Duration::ZERO;
    let mut total = Duration::ZERO;
    const SEEKS: u64 = 40;
    for k in 0..SEEKS {
        let to = r.start + (k * 7919 % 1000) * span / 1000;
        let t = Instant::now();
        r.seek(to).unwrap();
        let d = t.elapsed();
        worst = worst.max(d);
        total += d;
    }
    println!(
        "with stored checkpoints: open a {secs} s recording: {opened:.1?}; first seek to the \
         end: {first:.1?} ({} checkpoints then in memory); then seeks anywhere: worst \
         {worst:.1?}, mean {:.1?} of {SEEKS} (budget: open and a seek under 1 s)",
        r.checkpoints(),
        total / SEEKS as u32
    );
}

/// Open, then one first seek to 10 %, 50 % and the end, each in a fresh replay.
fn first_seeks(what: &str, path: &std::path::Path) {
    for frac in [10u64, 50, 100] {
        let t = Instant::now();
        let mut r = Replayer::open(path).unwrap();
        let opened = t.elapsed();
        let t = Instant::now();
        r.seek(r.start + (r.end - r.start) * frac / 100).unwrap();
        println!(
            "{what}: open {opened:.1?}, then a first seek {frac} % in: {:.1?} \
             ({} through a stored checkpoint; budget 1 s)",
            t.elapsed(),
            r.stored_used
        );
    }
}

/// A frame's items as formats 2 to 4 wrote them: each event with its time, every name
/// answer whole.
fn as_format_2(read: &format::FrameItems) -> Vec<u8> {
    let mut raw = Vec::new();
    for item in parse_frame(read).unwrap() {
        serde_json::to_writer(&mut raw, &item).unwrap();
        raw.push(b'\n');
    }
    raw
}

/// `from`'s frames each compressed on its own at level 3, as format 3 wrote them (without
/// its stored checkpoints).
fn as_format_3(from: &std::path::Path, to: &std::path::Path) {
    let mut f = std::fs::File::open(from).unwrap();
    let o = format::open(&mut f).unwrap();
    let mut w = format::FileWriter::create_as(to, false, &o.header, 3).unwrap();
    let mut dec = None;
    for (i, fi) in o.frames.iter().enumerate() {
        let read = format::read_frame_with(&mut f, &o.frames, i, &mut dec, o.version).unwrap();
        let raw = as_format_2(&read);
        w.frame(&format::Frame {
            first_at: fi.first_at,
            last_at: fi.last_at,
            items: fi.items,
            payload: zstd::bulk::compress(&raw, 3).unwrap(),
            cont: false,
        })
        .unwrap();
    }
    w.close().unwrap();
}

/// Every frame read, checked, decompressed and parsed, in order: the events and the time.
fn decode_all(path: &std::path::Path) -> (usize, Duration) {
    let mut f = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let t = Instant::now();
    let o = format::open(&mut f).unwrap();
    let mut dec = None;
    let mut events = 0;
    for i in 0..o.frames.len() {
        let read = format::read_frame_with(&mut f, &o.frames, i, &mut dec, o.version).unwrap();
        for item in parse_frame(&read).unwrap() {
            if let Item::Batch { events: e, .. } = item {
                events += e.0.len();
            }
        }
    }
    (events, t.elapsed())
}

/// `from`'s header and frames, compressed as they are, without its stored checkpoints.
fn strip_checkpoints(from: &std::path::Path, to: &std::path::Path) {
    let bytes = std::fs::read(from).unwrap();
    let o = format::open(&mut std::io::Cursor::new(&bytes)).unwrap();
    let mut w = format::FileWriter::create_as(to, false, &o.header, o.version).unwrap();
    for f in &o.frames {
        let at = f.offset as usize;
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        let start = at + format::FRAME_HEADER_LEN;
        w.frame(&format::Frame {
            first_at: f.first_at,
            last_at: f.last_at,
            items: f.items,
            payload: bytes[start..start + len].to_vec(),
            cont: f.cont,
        })
        .unwrap();
    }
    w.close().unwrap();
}

/// Reading the recording without replaying it (read, check, decompress, parse every
/// frame); and its first minute as format 2 writes it against format 1 (each event an
/// object, flattened through its tagged kind), parsed as each was.
fn decoding(path: &std::path::Path) {
    let mut f = std::fs::File::open(path).unwrap();
    let opened = format::open(&mut f).unwrap();
    let batch_events = |items: &[Item]| -> usize {
        items
            .iter()
            .map(|i| match i {
                Item::Batch { events, .. } => events.0.len(),
                _ => 0,
            })
            .sum()
    };
    let t = Instant::now();
    let mut events = 0;
    let mut dec = None;
    for i in 0..opened.frames.len() {
        let read = format::read_frame_with(&mut f, &opened.frames, i, &mut dec, opened.version);
        events += batch_events(&parse_frame(&read.unwrap()).unwrap());
    }
    let all = t.elapsed();
    println!(
        "decode the whole file: {events} events in {all:.1?}: {:.2} M events/s",
        events as f64 / all.as_secs_f64() / 1e6
    );

    let n = opened.frames.len().min(60);
    let mut dec = None;
    let read: Vec<format::FrameItems> = (0..n)
        .map(|i| {
            format::read_frame_with(&mut f, &opened.frames, i, &mut dec, opened.version).unwrap()
        })
        .collect();
    let v2: Vec<Vec<u8>> = read.iter().map(as_format_2).collect();
    let v1: Vec<Vec<u8>> = read.iter().map(format1::items).collect();
    let size = |raws: &[Vec<u8>]| -> usize {
        raws.iter()
            .map(|r| zstd::bulk::compress(r, format::LEVEL).unwrap().len())
            .sum()
    };
    let t = Instant::now();
    let mut e2 = 0;
    for r in &v2 {
        e2 += batch_events(&parse_items(r).unwrap());
    }
    let t2 = t.elapsed();
    let t = Instant::now();
    let mut e1 = 0;
    for r in &v1 {
        let items: Vec<Item> = r
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        e1 += batch_events(&items);
    }
    let t1 = t.elapsed();
    assert_eq!(e1, e2);
    // Writing, as the recorder does: JSON lines, then zstd.
    let parsed: Vec<Vec<Item>> = v2.iter().map(|r| parse_items(r).unwrap()).collect();
    let t = Instant::now();
    for items in &parsed {
        let raw = format1::write(items);
        std::hint::black_box(zstd::bulk::compress(&raw, format::LEVEL).unwrap());
    }
    let w1 = t.elapsed();
    let t = Instant::now();
    for items in &parsed {
        let mut raw = Vec::new();
        for i in items {
            serde_json::to_writer(&mut raw, i).unwrap();
            raw.push(b'\n');
        }
        std::hint::black_box(zstd::bulk::compress(&raw, format::LEVEL).unwrap());
    }
    let w2 = t.elapsed();
    let (s1, s2) = (size(&v1), size(&v2));
    let rate = |d: Duration| e1 as f64 / d.as_secs_f64() / 1e6;
    println!(
        "the first {n} frames ({e1} events), format 1 vs 2: {s1} vs {s2} bytes compressed \
         ({:.2} vs {:.2} MiB per million events); parsed at {:.2} vs {:.2} M events/s \
         ({:.1}x); written (JSON and zstd) in {:.0} vs {:.0} ns per event",
        s1 as f64 / e1 as f64 * 1e6 / (1 << 20) as f64,
        s2 as f64 / e1 as f64 * 1e6 / (1 << 20) as f64,
        rate(t1),
        rate(t2),
        t1.as_secs_f64() / t2.as_secs_f64(),
        w1.as_secs_f64() / e1 as f64 * 1e9,
        w2.as_secs_f64() / e1 as f64 * 1e9,
    );
}
