//! A recording as format 1 wrote it (each event an object, its kind flattened into it):
//! made from a later file, to check that format 1 is still read and to measure it; and
//! as format 4 wrote it (each event with its time, every name answer and wait round
//! whole, the header and index uncompressed, a stream of frames), to check that format 4
//! is still read.

use pg_trace::session::record::{format, parse_frame, Item};
use pg_trace::trace::{EventKind, Pid};
use serde::Serialize;

/// Items as format 1 wrote them: its writer's own structs.
pub fn write(items: &[Item]) -> Vec<u8> {
    #[derive(Serialize)]
    struct EvOut<'a> {
        d: i64,
        p: Pid,
        #[serde(flatten)]
        k: &'a EventKind,
    }
    #[derive(Serialize)]
    struct BatchOut<'a> {
        t: &'static str,
        at: u64,
        events: Vec<EvOut<'a>>,
    }
    let mut out = Vec::new();
    for item in items {
        match item {
            Item::Batch { at, events } => {
                let mut prev = 0u64;
                let events = events
                    .0
                    .iter()
                    .map(|e| {
                        let d = e.ts_ns.wrapping_sub(prev) as i64;
                        prev = e.ts_ns;
                        EvOut {
                            d,
                            p: e.pid,
                            k: &e.kind,
                        }
                    })
                    .collect();
                let line = BatchOut {
                    t: "batch",
                    at: *at,
                    events,
                };
                serde_json::to_writer(&mut out, &line).unwrap();
            }
            other => serde_json::to_writer(&mut out, other).unwrap(),
        }
        out.push(b'\n');
    }
    out
}

/// A frame's items as read (any format) as format 1 wrote them.
pub fn items(read: &format::FrameItems) -> Vec<u8> {
    write(&parse_frame(read).unwrap())
}

/// A whole file of a later format as format 1 (without its index: a reader walks the
/// frames).
#[allow(dead_code)]
pub fn file(v2: &std::path::Path) -> Vec<u8> {
    let mut f = std::fs::File::open(v2).unwrap();
    let opened = format::open(&mut f).unwrap();
    let mut out = Vec::new();
    out.extend_from_slice(format::MAGIC);
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(opened.header.len() as u32).to_le_bytes());
    out.extend_from_slice(&opened.header);
    out.extend_from_slice(&crc32c::crc32c(&opened.header).to_le_bytes());
    let mut dec = None;
    for (i, fi) in opened.frames.iter().enumerate() {
        let read = format::read_frame_with(&mut f, &opened.frames, i, &mut dec, opened.version);
        let raw = items(&read.unwrap());
        format::Frame::compress(fi.first_at, fi.last_at, fi.items, &raw)
            .unwrap()
            .write_to(&mut out, format::FRAME_MAGIC)
            .unwrap();
    }
    out
}

/// A whole file of a later format as format 4 wrote it, without its stored checkpoints:
/// its frames' items as formats 2 to 4 wrote them, in one zstd stream flushed at each
/// frame (`PTFR`, then `PTFC`), with its index.
#[allow(dead_code)]
pub fn file_as_4(from: &std::path::Path, to: &std::path::Path) -> Vec<u8> {
    use std::io::Write;
    let mut f = std::fs::File::open(from).unwrap();
    let opened = format::open(&mut f).unwrap();
    let mut w = format::FileWriter::create_as(to, true, &opened.header, 4).unwrap();
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 9).unwrap();
    let mut dec = None;
    for (i, fi) in opened.frames.iter().enumerate() {
        let read = format::read_frame_with(&mut f, &opened.frames, i, &mut dec, opened.version);
        let mut raw = Vec::new();
        for item in parse_frame(&read.unwrap()).unwrap() {
            serde_json::to_writer(&mut raw, &item).unwrap();
            raw.push(b'\n');
        }
        enc.write_all(&raw).unwrap();
        enc.flush().unwrap();
        w.frame(&format::Frame {
            first_at: fi.first_at,
            last_at: fi.last_at,
            items: fi.items,
            payload: std::mem::take(enc.get_mut()),
            cont: i > 0,
        })
        .unwrap();
    }
    w.close().unwrap();
    std::fs::read(to).unwrap()
}
