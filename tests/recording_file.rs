//! The recording file without root or PostgreSQL: scripted sessions recorded through the
//! real line loop on a scripted clock, replayed to the same JSON; a recording cut (or
//! damaged) anywhere replays up to the cut without a panic (proptest); ring mode keeps
//! its bound over a long synthetic run, and its dump replays on its own.

#[path = "support/format1.rs"]
mod format1;
#[path = "support/scripted.rs"]
mod scripted;
#[path = "support/sessions.rs"]
mod sessions;

use pg_trace::output::record::Record;
use pg_trace::output::Format;
use pg_trace::session::line::{line_loop, Pace};
use pg_trace::session::record::RecordOptions;
use pg_trace::session::replay::replay_records;
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;
use std::time::Duration;

/// Line mode's JSON of `script`, recorded to `path` (ring mode with `keep`).
fn record(script: &sessions::Script, path: &Path, keep: Option<Duration>) -> Vec<Record> {
    record_with(script, path, keep, false)
}

fn record_with(
    script: &sessions::Script,
    path: &Path,
    keep: Option<Duration>,
    dump_on_stall: bool,
) -> Vec<Record> {
    let (mut s, _clock) = sessions::session(script);
    s.record(&RecordOptions {
        path: path.to_path_buf(),
        force: false,
        keep,
        dump_on_stall,
    })
    .unwrap();
    // The scripted sessions last seconds: checkpoints stored every half second of them.
    s.store_checkpoints_every(500_000_000);
    let mut out = Vec::new();
    let pace = Pace {
        interval: Duration::from_secs(1),
        duration: Some(Duration::from_secs(7200)),
        format: Format::Json,
        debug: false,
    };
    line_loop(pace, &mut s, &AtomicBool::new(false), &mut out, &mut |_| {}).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// The scan, recorded once.
fn scan_file() -> &'static (PathBuf, Vec<u8>, Vec<Record>) {
    static F: OnceLock<(PathBuf, Vec<u8>, Vec<Record>)> = OnceLock::new();
    F.get_or_init(|| {
        let p = dir().join("scan.pgtrace");
        let live = record(&sessions::scan(), &p, None);
        (p.clone(), std::fs::read(&p).unwrap(), live)
    })
}

#[test]
fn scripted_sessions_replay_to_the_same_json() {
    for (name, script) in [
        ("scan", sessions::scan()),
        ("backup", sessions::throttled_backup()),
        ("lock", sessions::lock_wait()),
    ] {
        let p = dir().join(format!("same-{name}.pgtrace"));
        let live = record(&script, &p, None);
        let replayed = replay_records(&p).unwrap();
        assert_eq!(live, replayed, "{name}");
    }
}

/// Format 1 (each event an object) is still read: the same sessions written so replay to
/// the same JSON.
#[test]
fn a_format_1_recording_replays_as_format_2() {
    for (name, script) in [
        ("scan", sessions::scan()),
        ("backup", sessions::throttled_backup()),
        ("lock", sessions::lock_wait()),
    ] {
        let p = dir().join(format!("v1-{name}.pgtrace"));
        let live = record(&script, &p, None);
        let v1 = format1::file(&p);
        assert_eq!(u32::from_le_bytes(v1[8..12].try_into().unwrap()), 1);
        let replayed = replay_bytes(&format!("v1-{name}-1.pgtrace"), &v1).unwrap();
        assert_eq!(live, replayed, "{name}");
    }
}

/// Format 4 (each event with its time, every name answer and wait round whole, the
/// header and the index uncompressed) is still read: the same sessions written so replay
/// to the same JSON.
#[test]
fn a_format_4_recording_replays_as_format_5() {
    for (name, script) in [
        ("scan", sessions::scan()),
        ("backup", sessions::throttled_backup()),
        ("lock", sessions::lock_wait()),
    ] {
        let p = dir().join(format!("v4-{name}.pgtrace"));
        let live = record(&script, &p, None);
        let v4 = format1::file_as_4(&p, &dir().join(format!("v4-{name}-4.pgtrace")));
        assert_eq!(u32::from_le_bytes(v4[8..12].try_into().unwrap()), 4);
        // Its header uncompressed, its frames one stream.
        assert!(v4.windows(16).any(|w| w == b"pg_trace_version"), "{name}");
        assert!(v4.windows(4).any(|w| w == b"PTFC"), "{name}");
        let replayed = replay_bytes(&format!("v4-{name}-r.pgtrace"), &v4).unwrap();
        assert_eq!(live, replayed, "{name}");
    }
}

#[test]
fn an_existing_file_is_kept_without_force() {
    let p = dir().join("kept.pgtrace");
    std::fs::write(&p, b"precious").unwrap();
    let (mut s, _c) = sessions::session(&sessions::scan());
    let e = s
        .record(&RecordOptions {
            path: p.clone(),
            force: false,
            keep: None,
            dump_on_stall: false,
        })
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("--force"), "{e:#}");
    assert_eq!(std::fs::read(&p).unwrap(), b"precious");
}

fn replay_bytes(name: &str, bytes: &[u8]) -> anyhow::Result<Vec<Record>> {
    let p = dir().join(name);
    std::fs::write(&p, bytes).unwrap();
    let r = replay_records(&p);
    let _ = std::fs::remove_file(&p);
    r
}

/// The file the properties below cut and damage holds every kind of frame: a stream's
/// first frame, frames continuing it, and stored checkpoints, whole and against a whole
/// one, in the index.
#[test]
fn the_cut_and_damaged_file_holds_every_frame_kind() {
    use pg_trace::session::record::format;
    let (_, bytes, _) = scan_file();
    let mut c = std::io::Cursor::new(bytes.clone());
    let o = format::open(&mut c).unwrap();
    // Format 5: events' times apart from the items, relation files' names in few words.
    assert_eq!(o.version, format::VERSION);
    let (mut times, mut rels, mut dec) = (0, 0, None);
    for i in 0..o.frames.len() {
        let read = format::read_frame_with(&mut c, &o.frames, i, &mut dec, o.version).unwrap();
        times += read.times.unwrap().len();
        rels += read.raw.windows(8).filter(|w| w == b"\"rels\":[").count();
    }
    assert!(
        times > 10 && rels >= 1,
        "{times} times, {rels} names lines with rels"
    );
    let conts = o.frames.iter().filter(|f| f.cont).count();
    assert!(conts >= 1, "{conts} frames continue a stream");
    assert!(o.frames.len() > conts + 1, "{} frames", o.frames.len());
    assert!(o.checkpoints.len() >= 2);
    // Whole stored checkpoints, and ones stored against them.
    assert!(!o.checkpoints[0].cont);
    assert!(o.checkpoints.iter().any(|c| c.cont), "{:?}", o.checkpoints);
    for f in &o.frames {
        let magic = &bytes[f.offset as usize..f.offset as usize + 4];
        let want = if f.cont {
            format::CONT_MAGIC
        } else {
            format::FRAME_MAGIC
        };
        assert_eq!(magic, want);
    }
    // A stream restarts after each stored checkpoint: the frame after one starts one.
    for c in &o.checkpoints {
        if let Some(next) = o.frames.iter().find(|f| f.offset > c.offset) {
            assert!(
                !next.cont,
                "the frame after the checkpoint at {} continues a stream",
                c.offset
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Cut after its header, a recording replays: its records up to the cut are those of
    /// the live run (the summary aside, which a cut recording makes at its last step).
    #[test]
    fn a_cut_recording_replays_up_to_the_cut(frac in 0.0f64..1.0) {
        let (_, bytes, live) = scan_file();
        let cut = (bytes.len() as f64 * frac) as usize;
        let name = format!("cut-{}.pgtrace", std::thread::current().name().unwrap_or("t").replace("::", "-"));
        match replay_bytes(&name, &bytes[..cut]) {
            Ok(recs) => {
                // Intervals before the cut are the live ones, in order.
                let n = recs.iter().take_while(|r| !matches!(r, Record::Summary(_) | Record::Progress(_))).count();
                let live_prefix: Vec<_> = live.iter().filter(|r| !matches!(r, Record::Progress(p) if p.r#final)).take(n).collect();
                let got: Vec<_> = recs.iter().take(n).collect();
                prop_assert_eq!(got, live_prefix);
                prop_assert!(recs.iter().any(|r| matches!(r, Record::Summary(_))));
            }
            // Only a cut inside the header is refused, with words.
            Err(e) => prop_assert!(cut < 2048, "cut at {cut}: {e:#}"),
        }
    }

    /// Bytes flipped anywhere: an error or a replay, never a panic.
    #[test]
    fn a_damaged_recording_never_panics(at in 0usize..1_000_000, byte in any::<u8>()) {
        let (_, bytes, _) = scan_file();
        let mut b = bytes.clone();
        let i = at % b.len();
        b[i] ^= byte | 1;
        let name = format!("bad-{}.pgtrace", std::thread::current().name().unwrap_or("t").replace("::", "-"));
        let _ = replay_bytes(&name, &b);
        // Seeks, through the stored checkpoints (damaged or not), forward and back.
        let p = dir().join(format!("seek-{name}"));
        std::fs::write(&p, &b).unwrap();
        if let Ok(mut r) = pg_trace::session::replay_tui::Replayer::open(&p) {
            let (start, end) = (r.start, r.end);
            for to in [start + (end - start) / 2, end, start + (end - start) / 4] {
                prop_assert!(r.seek(to).is_ok());
            }
        }
        let _ = std::fs::remove_file(&p);
    }
}

/// Random bytes, and a header claiming a huge length: refused in one line.
#[test]
fn garbage_is_refused() {
    for bytes in [
        b"".to_vec(),
        b"not a recording at all".to_vec(),
        [b"PGTRREC\0".as_slice(), &3u32.to_le_bytes(), &[0; 8]].concat(),
        [
            b"PGTRREC\0".as_slice(),
            &1u32.to_le_bytes(),
            &u32::MAX.to_le_bytes(),
        ]
        .concat(),
    ] {
        let e = replay_bytes("garbage.pgtrace", &bytes).err().unwrap();
        let msg = format!("{e:#}");
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.contains("recording") || msg.contains("format"), "{msg}");
    }
}

/// Two hours of a scripted scan at 100 reads a second, kept 5 minutes: the ring never
/// spans much more than 5 minutes, its dump at the end starts near the end and replays.
#[test]
fn ring_mode_keeps_its_bound_over_a_long_run() {
    use pg_trace::session::record::names::NameAnswer;
    use pg_trace::session::record::ring::Ring;
    use pg_trace::session::record::{FrameBuf, Header, ItemRef};
    use pg_trace::trace::{Event, EventKind, Syscall};
    const SEC: u64 = 1_000_000_000;
    let keep = Duration::from_secs(300);
    let path = dir().join("ring.pgtrace");
    let header: Header = sessions_header();
    let mut ring = Ring::new(keep, path.clone(), true, false, &header).unwrap();
    let t0 = scripted::T0;
    let mut max_span = 0;
    let mut max_bytes = 0;
    let names = [NameAnswer::Name {
        path: "base/5/16384".into(),
        named: pg_trace::session::record::names::NamedRec {
            relpath: Some("base/5/16384".into()),
            class: "relation".into(),
            label: "public.t".into(),
            relation: None,
        },
    }];
    for sec in 0..7200u64 {
        let at = t0 + sec * SEC;
        let mut frame = FrameBuf::default();
        if sec == 0 {
            let open = Event {
                ts_ns: at,
                pid: scripted::PID,
                kind: EventKind::Open {
                    syscall: Syscall::Openat,
                    dirfd: None,
                    path: "base/5/16384".into(),
                    flags: 0,
                    fd: 7,
                },
            };
            let events = pg_trace::session::record::EventsRef(&[open]);
            frame
                .push(Some(at), &ItemRef::Batch { at, events })
                .unwrap();
            frame
                .push(None, &ItemRef::Names { answers: &names })
                .unwrap();
        }
        let events: Vec<Event> = (0..100)
            .map(|i| Event {
                ts_ns: at + i * 10_000_000,
                pid: scripted::PID,
                kind: EventKind::Read {
                    syscall: Syscall::Pread64,
                    fd: 7,
                    offset: Some(((sec * 100 + i) % 131_072) * 8192),
                    requested: 8192,
                    result: 8192,
                },
            })
            .collect();
        let events = pg_trace::session::record::EventsRef(&events);
        frame
            .push(Some(at), &ItemRef::Batch { at, events })
            .unwrap();
        let tick = ItemRef::Tick {
            at: at + SEC - 1,
            status: None,
            walked: None,
            waits: None,
            copier: None,
        };
        frame.push(Some(at + SEC - 1), &tick).unwrap();
        ring.push(frame.frame().unwrap(), true).unwrap();
        let (bytes, span) = ring.extent();
        max_span = max_span.max(span);
        max_bytes = max_bytes.max(bytes);
        // The replay behind the ring keeps no frame it has played, nor its place.
        let (held, places) = ring.behind_held();
        assert!(
            held < 4096 && places == 0,
            "{held} bytes and {places} frames behind"
        );
    }
    assert!(
        max_span <= keep.as_nanos() as u64 + 2 * SEC,
        "span {max_span}"
    );
    eprintln!("ring: at most {max_bytes} bytes over 5 minutes of 100 reads/s");
    assert!(max_bytes < 4 << 20, "{max_bytes} bytes");
    let dumped = ring.dump(&header, "signal").unwrap().unwrap();
    let recs = replay_records(&dumped).unwrap();
    // The file opened two hours before is still known: named from the base.
    let file = recs
        .iter()
        .find_map(|r| match r {
            Record::File(f) => Some(f),
            _ => None,
        })
        .expect("a file record");
    assert_eq!(file.object, "public.t");
    let stats: Vec<_> = recs
        .iter()
        .filter(|r| matches!(r, Record::Stats(_)))
        .collect();
    assert!(
        (299..=302).contains(&stats.len()),
        "{} intervals in a 5-minute dump",
        stats.len()
    );
}

/// A ring dump replays its window exactly as the live session printed it: the attach
/// record, then every record from the window's first interval on, summary included (its
/// totals since attach come from the state the dump starts with).
#[test]
fn a_ring_dump_replays_its_window_as_live() {
    for (name, script) in [
        ("scan", sessions::scan()),
        ("backup", sessions::throttled_backup()),
        ("lock", sessions::lock_wait()),
    ] {
        let p = dir().join(format!("window-{name}.pgtrace"));
        let live = record(&script, &p, Some(Duration::from_secs(1)));
        let bytes = std::fs::read(&p).unwrap();
        let o = pg_trace::session::record::format::open(&mut std::io::Cursor::new(bytes)).unwrap();
        let h: pg_trace::session::record::Header = serde_json::from_slice(&o.header).unwrap();
        let ring = h.ring.expect("a ring dump");
        assert!(
            ring.base,
            "{name}: no state from before the window: {ring:?}"
        );
        assert_eq!(o.checkpoints.len(), 1, "{name}");
        let replayed = replay_records(&p).unwrap();
        assert_eq!(replayed[0], live[0], "{name}: the attach record");
        let k = live
            .iter()
            .position(|r| *r == replayed[1])
            .unwrap_or_else(|| {
                panic!(
                    "{name}: the dump's first record is not live's: {:?}",
                    replayed[1]
                )
            });
        assert!(
            k > 2,
            "{name}: the window holds the whole session ({k}): nothing left the ring"
        );
        assert_eq!(
            &live[k..],
            &replayed[1..],
            "{name}: from record {k} of {}",
            live.len()
        );
        // The TUI's replay starts where the window does, with the state from before it.
        let r = pg_trace::session::replay_tui::Replayer::open(&p).unwrap();
        assert!(
            r.start > h.start_ns,
            "{name}: the TUI starts at the session's start"
        );
        assert_eq!(r.pos, r.start);
    }
}

/// Ring mode on a session whose verdict turns into a stall (a lock wait): the ring is
/// written then, and again at exit beside it; both replay. Without the switch, only at exit.
#[test]
fn ring_mode_dumps_when_it_stalls() {
    let header = |p: &Path| {
        let bytes = std::fs::read(p).unwrap();
        let mut c = std::io::Cursor::new(bytes);
        let o = pg_trace::session::record::format::open(&mut c).unwrap();
        serde_json::from_slice::<pg_trace::session::record::Header>(&o.header).unwrap()
    };
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("lock.pgtrace");
    record_with(
        &sessions::lock_wait(),
        &p,
        Some(Duration::from_secs(60)),
        true,
    );
    assert_eq!(header(&p).ring.unwrap().reason, "stall");
    let exit = d.path().join("lock-1.pgtrace");
    assert_eq!(header(&exit).ring.unwrap().reason, "exit");
    for f in [&p, &exit] {
        assert!(!replay_records(f).unwrap().is_empty());
    }
    let q = d.path().join("off.pgtrace");
    record_with(
        &sessions::lock_wait(),
        &q,
        Some(Duration::from_secs(60)),
        false,
    );
    assert_eq!(header(&q).ring.unwrap().reason, "exit");
    assert!(!d.path().join("off-1.pgtrace").exists());
}

fn sessions_header() -> pg_trace::session::record::Header {
    let (s, _c) = sessions::session(&sessions::scan());
    s.recording_header()
}

/// The replay TUI on a scripted clock and keys: it plays, `+` doubles the speed, space
/// pauses, → seeks 10 s on, ← 10 s back (played again from the start), End goes to the
/// end, q quits; the screen says where the replay is.
#[test]
fn the_replay_tui_pauses_seeks_and_changes_speed() {
    use pg_trace::session::replay_tui::{event_loop, Replayer};
    use ratatui::crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};
    let (p, _, _) = scan_file();
    let clock = pg_trace::trace::replay::ManualClock::starting_at(scripted::T0);
    let k = |c: KeyCode| TermEvent::Key(KeyEvent::new(c, KeyModifiers::NONE));
    const S: u64 = 1_000_000_000;
    let mut keys = sessions::ScriptedKeys::new(
        &clock,
        vec![
            (S, k(KeyCode::Char('+'))),
            (2 * S, k(KeyCode::Char(' '))),
            (3 * S, k(KeyCode::Right)),
            (4 * S, k(KeyCode::Left)),
            (5 * S, k(KeyCode::End)),
            (6 * S, k(KeyCode::Char('q'))),
        ],
    );
    let mut screen = sessions::Frames::new(&clock, 120, 30);
    let mut r = Replayer::open(p).unwrap();
    let theme = pg_trace::ui::Theme::from_env();
    event_loop(
        &mut screen,
        &mut keys,
        &mut r,
        Duration::from_millis(250),
        &AtomicBool::new(false),
        &theme,
        &clock,
    )
    .unwrap();
    let all = screen.frames.join("");
    assert!(all.contains("via replay, replay "), "{all}");
    assert!(all.contains("2×"), "{all}");
    assert!(all.contains("paused"), "{all}");
    assert!(all.contains("sales.orders"), "{all}");
    assert_eq!(r.pos, r.end);
    // 1 s at 1×, 1 s at 2×: paused 3 s in; → to the end (5 s), ← back to the start.
    for at in ["3s/5s 2× paused", "5s/5s 2× paused", "0s/5s 2× paused"] {
        assert!(all.contains(at), "{at}: {all}");
    }
}

/// `pg_trace report` reads a recording as the records its replay prints: the report of a
/// recording is the report of the live JSON it was recorded beside, in every format.
#[test]
fn a_recording_reports_like_its_live_json() {
    use pg_trace::output::report::{self, ReportFormat};
    let (path, _, live) = scan_file();
    let loaded = pg_trace::session::load(path).unwrap();
    assert_eq!(&loaded, live);
    for format in [
        ReportFormat::Html,
        ReportFormat::Text,
        ReportFormat::Perfetto,
    ] {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        report::write(&mut a, &loaded, format).unwrap();
        report::write(&mut b, live, format).unwrap();
        assert!(!a.is_empty());
        assert_eq!(a, b, "{format:?}");
    }
    // Through the binary too, as a support engineer runs it.
    let out = dir().join("scan-report.txt");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_pg_trace"))
        .args(["report", "--format", "text", "-o"])
        .arg(&out)
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
    let text = std::fs::read_to_string(&out).unwrap();
    let names: Vec<&str> = live
        .iter()
        .filter_map(|r| match r {
            Record::Progress(p) => p.name.as_deref(),
            _ => None,
        })
        .collect();
    assert!(!names.is_empty());
    assert!(
        names.iter().all(|n| text.contains(n)),
        "{names:?} in\n{text}"
    );
}

/// A seek through a checkpoint (the state captured during a first pass, restored, then
/// played on to the target) prints from its target on exactly what a straight replay to
/// the same target prints: every scripted session, targets across the whole recording.
#[test]
fn a_seek_through_a_checkpoint_replays_as_straight() {
    use pg_trace::session::replay::{records_from, records_from_stored, Recording};
    const HALF_S: u64 = 500_000_000;
    let json = |r: &[Record]| -> Vec<serde_json::Value> {
        r.iter().map(|x| serde_json::to_value(x).unwrap()).collect()
    };
    for (name, script) in [
        ("scan", sessions::scan()),
        ("backup", sessions::throttled_backup()),
        ("lock", sessions::lock_wait()),
    ] {
        let p = dir().join(format!("seek-{name}.pgtrace"));
        record(&script, &p, None);
        let (start, end) = Recording::open(&p).unwrap().span();
        assert!(
            end > start + 2 * HALF_S,
            "{name}: a recording too short to seek in"
        );
        // From the start: the whole replay but its attach record.
        let whole = replay_records(&p).unwrap();
        let (from_start, _) = records_from(&p, start, None).unwrap();
        assert_eq!(
            json(&from_start),
            json(&whole[1..]),
            "{name}: from the start"
        );
        let mut through = 0;
        let mut stored = 0;
        for k in 0..=10 {
            let to = start + (end - start) * k / 10;
            let (straight, none) = records_from(&p, to, None).unwrap();
            // Through the checkpoint stored in the file by the recorder.
            let (from_file, used) = records_from_stored(&p, to).unwrap();
            assert_eq!(
                json(&from_file),
                json(&straight),
                "{name}: stored, seek to {to}"
            );
            if let Some(used) = used {
                assert!(
                    used < to,
                    "{name}: stored checkpoint at {used}, target {to}"
                );
                stored += 1;
            }
            let (seeked, used) = records_from(&p, to, Some(HALF_S)).unwrap();
            assert!(none.is_none());
            let used = used.unwrap();
            assert!(
                used < to || used == start,
                "{name}: checkpoint at {used}, target {to}"
            );
            assert!(!straight.is_empty(), "{name}: no summary from {to}");
            assert_eq!(json(&seeked), json(&straight), "{name}: seek to {to}");
            if used > start {
                through += 1;
            }
        }
        assert!(
            through >= 5,
            "{name}: only {through} seeks went through a checkpoint"
        );
        assert!(
            stored >= 5,
            "{name}: only {stored} seeks went through a stored checkpoint"
        );
    }
}

/// The replay TUI seeking back through a checkpoint draws the screen a replay played
/// straight to the same time draws.
#[test]
fn the_replay_tui_seeks_back_through_checkpoints_to_the_same_screen() {
    use pg_trace::session::replay_tui::Replayer;
    const S: u64 = 1_000_000_000;
    let (p, _, _) = scan_file();
    let clock = pg_trace::trace::replay::ManualClock::starting_at(scripted::T0);
    let theme = pg_trace::ui::Theme::from_env();
    let screen = |r: &Replayer| {
        let mut f = sessions::Frames::new(&clock, 120, 30);
        r.draw(&mut f, &theme).unwrap();
        f.frames.pop().unwrap()
    };
    let mut back = Replayer::open_with(p, Some(S / 2)).unwrap();
    back.play_straight_to(back.end);
    let taken = back.checkpoints();
    assert!(taken >= 4, "{taken} checkpoints");
    for k in [4u64, 3, 2, 1] {
        let to = back.start + (back.end - back.start) * k / 5;
        back.seek(to).unwrap();
        let mut straight = Replayer::open(p).unwrap();
        straight.play_straight_to(to);
        assert_eq!(back.pos, straight.pos);
        assert_eq!(screen(&back), screen(&straight), "seek back to {to}");
    }
    assert_eq!(
        back.checkpoints(),
        taken,
        "played again, no checkpoint added"
    );
}

/// A first seek anywhere restores the latest checkpoint the recorder stored in the file
/// before it (no pass through the recording first), and the screen is the one a replay
/// played straight there draws; forward and back.
#[test]
fn the_replay_tui_seeks_through_stored_checkpoints_to_the_same_screen() {
    use pg_trace::session::replay_tui::Replayer;
    let (p, _, _) = scan_file();
    let clock = pg_trace::trace::replay::ManualClock::starting_at(scripted::T0);
    let theme = pg_trace::ui::Theme::from_env();
    let screen = |r: &Replayer| {
        let mut f = sessions::Frames::new(&clock, 120, 30);
        r.draw(&mut f, &theme).unwrap();
        f.frames.pop().unwrap()
    };
    let stored = pg_trace::session::replay::Recording::open(p)
        .unwrap()
        .checkpoints
        .len();
    assert!(stored >= 4, "{stored} stored checkpoints");
    let mut r = Replayer::open(p).unwrap();
    for k in [3u64, 1, 4, 2] {
        let to = r.start + (r.end - r.start) * k / 5;
        r.seek(to).unwrap();
        let mut straight = Replayer::open_with(p, Some(u64::MAX)).unwrap();
        straight.play_straight_to(to);
        assert_eq!(r.pos, straight.pos);
        assert_eq!(screen(&r), screen(&straight), "seek to {to}");
    }
    assert!(
        r.stored_used >= 3,
        "{} seeks through a stored checkpoint",
        r.stored_used
    );
}

/// A stored checkpoint that passes its checksum but is not one (a hostile file): the
/// seek plays from an earlier point, says so, and never panics.
#[test]
fn a_hostile_stored_checkpoint_is_played_around() {
    use pg_trace::session::record::format;
    use pg_trace::session::replay_tui::Replayer;
    let (_, bytes, _) = scan_file();
    let o = format::open(&mut std::io::Cursor::new(bytes.clone())).unwrap();
    assert!(o.checkpoints.len() >= 2);
    for (k, junk) in [&b"\x93\x01\x02"[..], b"", &[0xc1; 64]]
        .into_iter()
        .enumerate()
    {
        // The last checkpoint's payload replaced, its header and checksum made to match.
        let c = *o.checkpoints.last().unwrap();
        let payload = zstd::bulk::compress(junk, 3).unwrap();
        let mut b = bytes[..c.offset as usize].to_vec();
        format::Frame {
            first_at: c.first_at,
            last_at: c.last_at,
            items: c.items,
            payload,
            cont: false,
        }
        .write_to(&mut b, format::CHECKPOINT_MAGIC)
        .unwrap();
        // No trailer: the frames are walked.
        let p = dir().join(format!("hostile-{k}.pgtrace"));
        std::fs::write(&p, &b).unwrap();
        let mut r = Replayer::open(&p).unwrap();
        r.seek(r.end).unwrap();
        assert_eq!(r.pos, r.end);
        assert!(r.stored_used >= 1, "an earlier stored checkpoint used");
        let mut straight = Replayer::open_with(&p, Some(u64::MAX)).unwrap();
        straight.play_straight_to(r.end);
        assert_eq!(
            r.app.session.model.events,
            straight.app.session.model.events
        );
    }
}

/// The notes said live (on stderr, in the TUI's log) are in the recording, and a replay
/// says them, once each.
#[test]
fn notes_said_live_are_said_again_by_the_replay() {
    use pg_trace::session::replay::{line, ReplayOptions, Speed};
    let p = dir().join("notes.pgtrace");
    let (mut s, _clock) = sessions::session(&sessions::scan());
    s.record(&RecordOptions {
        path: p.clone(),
        force: false,
        keep: None,
        dump_on_stall: false,
    })
    .unwrap();
    s.notes
        .push("memory reading failed: a note said live".into());
    let mut live = Vec::new();
    let pace = Pace {
        interval: Duration::from_secs(1),
        duration: None,
        format: Format::Json,
        debug: false,
    };
    line_loop(
        pace,
        &mut s,
        &AtomicBool::new(false),
        &mut Vec::new(),
        &mut |n| live.push(n),
    )
    .unwrap();
    drop(s);
    let mut replayed = Vec::new();
    let opts = ReplayOptions {
        path: p,
        format: Format::Json,
        debug: false,
        speed: Speed::Max,
    };
    line(
        &opts,
        &mut Vec::new(),
        &mut |n| replayed.push(n),
        &AtomicBool::new(false),
    )
    .unwrap();
    assert!(
        live.iter().any(|n| n.contains("a note said live")),
        "{live:?}"
    );
    // Live, the last note is "recorded to FILE", said after the recording ended.
    let said: Vec<_> = live
        .iter()
        .filter(|n| !n.starts_with("recorded to"))
        .collect();
    assert_eq!(replayed.iter().collect::<Vec<_>>(), said);
}
