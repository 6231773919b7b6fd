//! The flight recorder's budgets (issue 13): file bytes per million events, and opening a
//! one-hour recording and seeking anywhere. Synthesised: one hour of a sequential scan,
//! 1,000,000 pread64 events in one-second frames, as the recorder writes them.
//!
//!     cargo bench --bench recording

use pg_trace::session::record::format::{self, FileWriter, Frame};
use pg_trace::session::record::ItemRef;
use pg_trace::trace::{Event, EventKind, Syscall};
use std::time::Instant;

fn main() {
    // `cargo test --all-targets` runs this binary too: measure only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("recording: benchmark only runs under `cargo bench`");
        return;
    }
    const SEC: u64 = 1_000_000_000;
    const EVENTS: u64 = 1_000_000;
    const SECS: u64 = 3600;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hour.pgtrace");
    let mut w = FileWriter::create(&path, false, b"{}").unwrap();
    let per_sec = EVENTS / SECS + 1;
    let mut n = 0u64;
    for s in 0..SECS {
        let at = 1_000 * SEC + s * SEC;
        let events: Vec<Event> = (0..per_sec)
            .map(|i| {
                n += 1;
                Event {
                    ts_ns: at + i * (SEC / per_sec),
                    pid: 4242,
                    kind: EventKind::Read {
                        syscall: Syscall::Pread64,
                        fd: 24,
                        offset: Some((n % 131_072) * 8192),
                        requested: 8192,
                        result: 8192,
                    },
                }
            })
            .collect();
        let mut raw = Vec::new();
        serde_json::to_writer(
            &mut raw,
            &ItemRef::Batch {
                at,
                events: pg_trace::session::record::EventsRef(&events),
            },
        )
        .unwrap();
        raw.push(b'\n');
        serde_json::to_writer(
            &mut raw,
            &ItemRef::Tick {
                at,
                status: None,
                walked: None,
                waits: None,
            },
        )
        .unwrap();
        raw.push(b'\n');
        w.frame(&Frame::compress(at, at + SEC - 1, 2, &raw).unwrap())
            .unwrap();
    }
    w.close().unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    let per_million = size as f64 / (n as f64 / 1e6) / (1 << 20) as f64;
    println!(
        "recording: {n} events in {size} bytes: {per_million:.2} MiB per million events (budget 4)"
    );
    for trailer in [true, false] {
        let p = if trailer {
            path.clone()
        } else {
            // Without the index: as a killed recorder leaves it.
            let b = std::fs::read(&path).unwrap();
            let q = dir.path().join("cut.pgtrace");
            std::fs::write(&q, &b[..b.len() - 20]).unwrap();
            q
        };
        let t = Instant::now();
        let mut f = std::io::BufReader::new(std::fs::File::open(&p).unwrap());
        let o = format::open(&mut f).unwrap();
        let opened = t.elapsed();
        let mut worst = std::time::Duration::ZERO;
        for k in 0..20u64 {
            let at = 1_000 * SEC + (k * 7919 % SECS) * SEC;
            let t = Instant::now();
            let i = format::frame_at(&o.frames, at);
            format::read_frame(&mut f, &o.frames[i]).unwrap();
            worst = worst.max(t.elapsed());
        }
        println!(
            "open a one-hour recording ({}): {opened:?}; seek and read a frame: worst {worst:?} of 20 (budget 1 s together)",
            if trailer { "index in the trailer" } else { "no trailer: frame headers walked" }
        );
    }
}
