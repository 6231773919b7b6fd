//! A recording as format 1 wrote it (each event an object, its kind flattened into it):
//! made from a format 2 file, to check that format 1 is still read and to measure it.

use pg_trace::session::record::{format, parse_items, Item};

/// A frame's items as format 1 wrote them.
pub fn items(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in parse_items(raw).unwrap() {
        match &item {
            Item::Batch { at, events } => {
                let mut prev = 0u64;
                let evs: Vec<serde_json::Value> = events
                    .0
                    .iter()
                    .map(|e| {
                        let mut v = serde_json::to_value(&e.kind).unwrap();
                        let m = v.as_object_mut().unwrap();
                        m.insert("d".into(), (e.ts_ns.wrapping_sub(prev) as i64).into());
                        m.insert("p".into(), e.pid.into());
                        prev = e.ts_ns;
                        v
                    })
                    .collect();
                let line = serde_json::json!({"t": "batch", "at": at, "events": evs});
                serde_json::to_writer(&mut out, &line).unwrap();
            }
            other => serde_json::to_writer(&mut out, other).unwrap(),
        }
        out.push(b'\n');
    }
    out
}

/// A whole format 2 file as format 1 (without its index: a reader walks the frames).
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
    for fi in &opened.frames {
        let raw = items(&format::read_frame(&mut f, fi).unwrap());
        format::Frame::compress(fi.first_at, fi.last_at, fi.items, &raw)
            .unwrap()
            .write_to(&mut out, format::FRAME_MAGIC)
            .unwrap();
    }
    out
}
