//! The model folded from scripted events, with a namer that knows a few paths.

use super::*;
use crate::pgdata::relfile::Fork;
use crate::trace::{Event, EventKind, FollowerRole, Syscall};

const SEG: u64 = 1 << 30;

struct FakeNamer;

fn locator(path: &str) -> RelFileLocator {
    match crate::pgdata::classify(path, 16 << 20) {
        crate::pgdata::PathClass::Relation(f) => f.locator,
        other => panic!("{path}: {other:?}"),
    }
}

impl Namer for FakeNamer {
    fn name(&mut self, path: &str) -> Named {
        // base/5/100[.N] is sales.orders; base/5/200 its index; anything else is "other".
        let (file, segment) = match path.rsplit_once('.') {
            Some((f, s)) => (f, s.parse().unwrap_or(0)),
            None => (path, 0),
        };
        let rel = match file {
            "base/5/100" => Some(("orders", "table", None)),
            "base/5/200" => Some(("orders_pkey", "index", Some("sales.orders".to_string()))),
            "base/5/300" => Some(("orders_day", "index", Some("sales.orders".to_string()))),
            _ => None,
        };
        Named {
            relpath: Some(path.to_string()),
            class: match (&rel, path.starts_with("pg_wal/")) {
                (Some(_), _) => "relation",
                (None, true) => "wal",
                (None, false) => "other",
            },
            label: rel
                .as_ref()
                .map(|r| format!("sales.{}", r.0))
                .unwrap_or(path.into()),
            relation: rel.map(|(name, kind, table)| {
                std::sync::Arc::new(RelInfo {
                    id: RelIdentity {
                        locator: locator(file),
                        path: file.to_string(),
                        label: format!("sales.{name}"),
                        schema: Some("sales".into()),
                        name: Some(name.into()),
                        kind: Some(kind),
                        table,
                        known: true,
                    },
                    fork: Fork::Main,
                    segment,
                })
            }),
        }
    }
    fn relation_by_oid(&mut self, db: u32, oid: u32) -> Option<RelIdentity> {
        let info = self.name("base/5/100").relation?;
        ((db, oid) == (5, 16384)).then(|| info.id.clone())
    }
    fn relation_size(&mut self, rel: &RelInfo) -> Option<u64> {
        match rel.id.path.as_str() {
            "base/5/100" => Some(SEG + SEG / 2),
            "base/5/200" => Some(SEG / 4),
            _ => None,
        }
    }
    fn file_size(&mut self, path: &str) -> Option<u64> {
        Some(if path.ends_with(".1") { SEG / 2 } else { SEG })
    }
}

fn ev(ts: u64, pid: i32, kind: EventKind) -> Event {
    Event {
        ts_ns: ts,
        pid,
        kind,
    }
}

fn open(ts: u64, pid: i32, fd: i32, path: &str) -> Event {
    ev(
        ts,
        pid,
        EventKind::Open {
            syscall: Syscall::Openat,
            dirfd: None,
            path: path.into(),
            flags: 0,
            fd,
        },
    )
}

fn pread(ts: u64, pid: i32, fd: i32, off: u64, n: i64) -> Event {
    ev(
        ts,
        pid,
        EventKind::Read {
            syscall: Syscall::Pread64,
            fd,
            offset: Some(off),
            requested: n as u64,
            result: n,
        },
    )
}

#[test]
fn scan_across_segments() {
    let mut m = Model::new(10, SEG);
    let mut n = FakeNamer;
    m.apply(&open(1, 10, 5, "base/5/100"), &mut n);
    m.apply(&pread(2, 10, 5, SEG - 8192, 8192), &mut n);
    let r = m.relation_at("base/5/100").unwrap();
    assert_eq!(r.position, Some(SEG));
    assert!((r.percent().unwrap() - 66.666).abs() < 0.01);
    m.apply(&open(3, 10, 6, "base/5/100.1"), &mut n);
    m.apply(&pread(4, 10, 6, SEG / 2 - 8192, 8192), &mut n);
    let r = m.relation_at("base/5/100").unwrap();
    assert_eq!(r.percent(), Some(100.0));
    assert_eq!(r.segments.iter().copied().collect::<Vec<_>>(), [0, 1]);
    assert_eq!(m.files[&(10, 6)].highest, SEG / 2);
    assert_eq!(m.current_file().unwrap().fd, 6);
}

#[test]
fn plain_read_uses_tracked_position_and_rates_tick() {
    let mut m = Model::new(10, SEG);
    let mut n = FakeNamer;
    m.apply(&open(0, 10, 5, "base/5/100"), &mut n);
    m.apply(
        &ev(
            1,
            10,
            EventKind::Seek {
                fd: 5,
                offset: 16384,
                whence: libc::SEEK_SET,
                result: 16384,
            },
        ),
        &mut n,
    );
    for i in 0..4 {
        m.apply(
            &ev(
                2 + i,
                10,
                EventKind::Read {
                    syscall: Syscall::Read,
                    fd: 5,
                    offset: None,
                    requested: 8192,
                    result: 8192,
                },
            ),
            &mut n,
        );
    }
    let f = &m.files[&(10, 5)];
    assert_eq!(f.last_offset, Some(16384 + 3 * 8192));
    assert_eq!(f.pos, Some(16384 + 4 * 8192));
    // The first interval runs from the first event (ts 0): 32 KiB in one second.
    m.tick(1_000_000_000, &mut n);
    assert_eq!(m.relation_at("base/5/100").unwrap().rate_bps, 32768.0);
    m.tick(2_000_000_000, &mut n);
    assert!(
        m.relation_at("base/5/100").unwrap().rate_bps < 32768.0,
        "an idle second lowers it"
    );
    // lseek(SEEK_END) teaches the size.
    m.apply(
        &ev(
            9,
            10,
            EventKind::Seek {
                fd: 5,
                offset: 0,
                whence: libc::SEEK_END,
                result: 123,
            },
        ),
        &mut n,
    );
    assert_eq!(m.files[&(10, 5)].size, Some(123));
}

#[test]
fn rate_and_eta() {
    let mut m = Model::new(10, SEG);
    let mut n = FakeNamer;
    m.apply(&open(0, 10, 5, "base/5/100"), &mut n);
    m.tick(0, &mut n);
    m.apply(&pread(1, 10, 5, 0, 100 << 20), &mut n);
    m.tick(1_000_000_000, &mut n);
    let r = m.relation_at("base/5/100").unwrap();
    assert!(
        (r.rate_bps - (100u64 << 20) as f64).abs() < 1.0,
        "{}",
        r.rate_bps
    );
    let eta = r.eta_s().unwrap();
    let want = (SEG + SEG / 2 - (100 << 20)) as f64 / (100u64 << 20) as f64;
    assert!((eta - want).abs() < 0.01, "{eta} vs {want}");
}

/// A copier opens, reads and closes hundreds of files between two ticks: every one is
/// still there at the tick after (its interval reports it), and gone at the one after that
/// but for the last few.
#[test]
fn files_closed_between_ticks_are_kept_for_their_interval() {
    const MS: u64 = 1_000_000;
    let mut m = Model::new(10, SEG);
    let mut n = FakeNamer;
    m.tick(1000 * MS, &mut n);
    for i in 0..500u64 {
        let t = 1000 * MS + i * MS;
        let path = format!("base/5/{}", 1000 + i);
        m.apply(&open(t, 10, 7, &path), &mut n);
        m.apply(&pread(t + 1, 10, 7, 0, 8192), &mut n);
        m.apply(&ev(t + 2, 10, EventKind::Close { fd: 7 }), &mut n);
    }
    m.tick(2000 * MS, &mut n);
    assert_eq!(m.closed.len(), 500);
    assert_eq!(m.files_seen, 500);
    assert_eq!(m.closed[0].path, "base/5/1000");
    m.tick(3000 * MS, &mut n);
    assert_eq!(m.closed.len(), CLOSED_KEPT);
    assert_eq!(m.closed.last().unwrap().path, "base/5/1499");
}

#[test]
fn close_dup_exit_and_lost() {
    let mut m = Model::new(10, SEG);
    let mut n = FakeNamer;
    m.apply(&open(0, 10, 5, "base/5/200"), &mut n);
    assert_eq!(
        m.relation_at("base/5/200").unwrap().id.table.as_deref(),
        Some("sales.orders")
    );
    m.apply(
        &ev(
            1,
            10,
            EventKind::Dup {
                syscall: Syscall::Dup,
                old_fd: 5,
                new_fd: 9,
            },
        ),
        &mut n,
    );
    assert_eq!(m.files[&(10, 9)].path, "base/5/200");
    m.apply(&ev(2, 10, EventKind::Close { fd: 5 }), &mut n);
    assert!(!m.files.contains_key(&(10, 5)));
    assert_eq!(m.closed.len(), 1);
    m.apply(
        &ev(
            3,
            10,
            EventKind::Lost {
                cause: "ring buffer full".into(),
                count: 3,
            },
        ),
        &mut n,
    );
    m.apply(
        &ev(
            4,
            10,
            EventKind::Lost {
                cause: "ring buffer full".into(),
                count: 2,
            },
        ),
        &mut n,
    );
    assert_eq!(m.lost["ring buffer full"], 5);
    assert!(!m.leader_exited());
    m.apply(
        &ev(
            5,
            10,
            EventKind::Exit {
                code: Some(0),
                signal: None,
            },
        ),
        &mut n,
    );
    assert!(m.leader_exited());
    assert!(m.files.is_empty());
}

fn io_read(ts: u64, worker: Pid, owner: Pid, fd: i32, off: u64, n: u64) -> Event {
    ev(
        ts,
        worker,
        EventKind::IoWorkerRead {
            owner,
            syscall: Syscall::Preadv,
            fd,
            offset: Some(off),
            requested: n,
            result: n as i64,
        },
    )
}

fn follower(ts: u64, pid: Pid, role: FollowerRole) -> Event {
    ev(ts, pid, EventKind::NewFollower { leader: 10, role })
}

/// An io worker's read is ours by its AIO handle's owner, never because the traced
/// backend has the same relation open (it had it open all along here: A scanned it
/// before, B's reads must not be credited to A).
#[test]
fn io_worker_reads_count_only_for_our_handles() {
    let mut m = Model::new(10, SEG);
    let mut n = FakeNamer;
    m.apply(&follower(0, 77, FollowerRole::IoWorker), &mut n);
    m.apply(&open(1, 10, 5, "base/5/100"), &mut n);
    m.apply(&open(1, 77, 3, "base/5/100"), &mut n);
    // Another backend's read (pid 99 owns the handle): nothing.
    m.apply(&io_read(2, 77, 99, 3, 0, 8192), &mut n);
    // A plain read by an io worker: owner unknown, counted as such, credited to nobody.
    m.apply(&pread(3, 77, 3, 8192, 8192), &mut n);
    let r = m.relation_at("base/5/100").unwrap();
    assert_eq!((r.bytes_read, r.percent()), (0, None));
    assert_eq!(m.files[&(77, 3)].bytes_read, 0);
    assert_eq!(m.lost[crate::trace::event::IO_WORKER_OWNER_UNKNOWN], 1);
    assert_eq!(m.last_io_ns, 0, "B's reads made A look busy");
    // Ours: credited to the relation, through the io worker's file.
    m.apply(&io_read(4, 77, 10, 3, 16384, 8192), &mut n);
    assert_eq!(m.relation_at("base/5/100").unwrap().bytes_read, 8192);
    assert!(m.files[&(77, 3)].via_io_worker);
    assert_eq!(m.files[&(77, 3)].bytes_read, 8192);
    assert_eq!(m.last_io_ns, 4);
}

/// A parallel worker's handles are the leader's reads too; an owner that is itself an
/// io worker, or a read claimed by a process that is not an io worker, is not.
#[test]
fn io_worker_reads_for_parallel_workers() {
    let mut m = Model::new(10, SEG);
    let mut n = FakeNamer;
    m.apply(&follower(0, 77, FollowerRole::IoWorker), &mut n);
    m.apply(&follower(0, 78, FollowerRole::IoWorker), &mut n);
    m.apply(&follower(0, 30, FollowerRole::ParallelWorker), &mut n);
    m.apply(&open(1, 77, 3, "base/5/100"), &mut n);
    m.apply(&open(1, 30, 4, "base/5/100"), &mut n);
    m.apply(&io_read(2, 77, 30, 3, 0, 8192), &mut n);
    m.apply(&io_read(3, 77, 78, 3, 8192, 8192), &mut n);
    m.apply(&io_read(4, 30, 10, 4, 16384, 8192), &mut n);
    assert_eq!(m.relation_at("base/5/100").unwrap().bytes_read, 8192);
    // Once the parallel worker has exited its ProcNumber may be another backend's.
    m.apply(
        &ev(
            5,
            30,
            EventKind::Exit {
                code: Some(0),
                signal: None,
            },
        ),
        &mut n,
    );
    m.apply(&io_read(6, 77, 30, 3, 24576, 8192), &mut n);
    assert_eq!(m.relation_at("base/5/100").unwrap().bytes_read, 8192);
}

/// Issue 11 item 6: the /proc backend puts rchar growth only on a file a sample caught
/// being read; the rest is unattributed, never the catalog or index that happens to be
/// open (or opened last).
#[test]
fn procfs_credits_only_sampled_files() {
    let mut m = Model::new(10, SEG);
    let mut n = FakeNamer;
    let state = |ts, fd, path: &str, pos, size| {
        ev(
            ts,
            10,
            EventKind::FileState {
                fd,
                path: path.into(),
                pos,
                flags: None,
                size: Some(size),
            },
        )
    };
    let rchar = |ts, rchar| {
        ev(
            ts,
            10,
            EventKind::IoCounters {
                rchar,
                wchar: 0,
                read_bytes: 0,
                write_bytes: 0,
            },
        )
    };
    let sample = |ts, fd, offset| {
        ev(
            ts,
            10,
            EventKind::ReadSample {
                syscall: Syscall::Pread64,
                fd,
                offset: Some(offset),
                requested: Some(8192),
                hits: 1,
            },
        )
    };
    // The table (fd 6, segment 1), then a catalog and an index opened after it; every
    // position at the end, where smgr's size probe left it.
    m.apply(&state(1, 6, "base/5/100.1", Some(SEG / 2), SEG / 2), &mut n);
    m.apply(&state(1, 7, "global/1213", Some(8192), 8192), &mut n);
    m.apply(&state(1, 8, "base/5/200", Some(1 << 20), 1 << 20), &mut n);
    m.apply(&rchar(1, 1000), &mut n);
    // No evidence: nothing is credited, the bytes are unattributed.
    m.apply(&rchar(2, 1000 + 65536), &mut n);
    assert_eq!(m.credit.unattributed, Some(65536));
    assert!(m.files.values().all(|f| f.bytes_read == 0), "{:?}", m.files);
    assert!(m.relations.values().all(|r| r.bytes_read == 0));
    // A size probe moving a relation file's position is no read.
    m.apply(&state(3, 8, "base/5/200", Some(2 << 20), 2 << 20), &mut n);
    assert_eq!(m.files[&(10, 8)].bytes_read, 0);
    assert!(!m.files[&(10, 8)].read_since_attach());
    // A sample caught a pread of the table: the next growth is its, ending there.
    m.apply(&sample(4, 6, 1 << 20), &mut n);
    m.apply(&rchar(5, 1000 + 65536 + 65536), &mut n);
    let f = &m.files[&(10, 6)];
    assert_eq!((f.bytes_read, f.highest), (65536, (1 << 20) + 8192));
    assert!(f.estimate);
    let r = m.relation_at("base/5/100").unwrap();
    assert_eq!(r.position, Some(SEG + (1 << 20) + 8192));
    assert!(r.estimate);
    assert_eq!(m.files[&(10, 7)].bytes_read, 0);
    assert_eq!(m.files[&(10, 8)].bytes_read, 0);
    assert_eq!(m.credit.unattributed, Some(65536));
    // A huge jump: the table gets at most what lies before the sampled read, the rest is
    // unattributed.
    m.apply(&sample(6, 6, 4096), &mut n);
    m.apply(&rchar(7, u64::MAX), &mut n);
    assert_eq!(m.files[&(10, 6)].bytes_read, 65536 + 4096 + 8192);
    assert_eq!(
        m.credit.unattributed,
        Some(65536 + (u64::MAX - (1000 + 2 * 65536)) - (4096 + 8192))
    );
    assert_eq!(m.files[&(10, 7)].bytes_read, 0);
}

#[test]
fn openat_relative_to_a_directory_fd() {
    let mut m = Model::new(10, SEG);
    let mut n = FakeNamer;
    m.apply(&open(0, 10, 4, "base/5"), &mut n);
    m.apply(
        &ev(
            1,
            10,
            EventKind::Open {
                syscall: Syscall::Openat,
                dirfd: Some(4),
                path: "100".into(),
                flags: 0,
                fd: 7,
            },
        ),
        &mut n,
    );
    assert_eq!(m.files[&(10, 7)].named.label, "sales.orders");
}

fn block(ts: u64, pid: i32, rel: u32, fork: i32, blk: u32, hit: Option<bool>) -> Event {
    ev(
        ts,
        pid,
        EventKind::BlockIo(crate::trace::BlockIo {
            probe: crate::trace::BlockProbe::BufferReadDone,
            rel: RelFileLocator {
                spc_oid: 1663,
                db_oid: 5,
                rel_number: rel,
                backend: None,
            },
            fork: Fork::from_number(fork.into()).unwrap(),
            block: blk,
            nblocks: 1,
            hit,
            write: false,
        }),
    )
}

#[test]
fn usdt_blocks_count_hits_misses_and_coverage() {
    let mut m = Model::new(10, SEG);
    let mut n = FakeNamer;
    for b in 0..100u32 {
        m.apply(
            &block(u64::from(b) + 1, 10, 100, 0, b, Some(b % 4 == 0)),
            &mut n,
        );
    }
    // A visibility-map access counts (pg_statio counts every fork) but covers nothing.
    m.apply(&block(200, 10, 100, 2, 0, Some(true)), &mut n);
    let r = m.relation_at("base/5/100").unwrap();
    assert_eq!(r.id.label, "sales.orders");
    assert_eq!((r.blocks_hit, r.blocks_read), (26, 75));
    assert_eq!(r.coverage.blocks(), 100);
    assert_eq!(r.position, Some(100 * 8192));
    assert_eq!(r.last_block, Some(99));
    assert!((r.hit_ratio().unwrap() - 26.0 / 101.0).abs() < 1e-9);
    assert!(r.forks.contains("vm"));
    m.tick(1_000_000_200, &mut n);
    assert!(m.relation_at("base/5/100").unwrap().blocks_per_s > 0.0);
    // A relfilenode the catalog does not know is kept, by its path.
    m.apply(&block(300, 10, 999, 0, 3, Some(false)), &mut n);
    let u = m.relation_at("base/5/999").unwrap();
    assert_eq!(u.id.label, "base/5/999 (not in catalog yet)");
    assert_eq!(u.blocks_read, 1);
}

/// A buffer probe in an io worker does not say whose read it completes: never credited.
#[test]
fn usdt_io_worker_blocks_are_nobodys() {
    let mut m = Model::new(10, SEG);
    let mut n = FakeNamer;
    m.apply(&follower(0, 20, FollowerRole::IoWorker), &mut n);
    m.apply(&block(1, 20, 200, 0, 5, Some(false)), &mut n);
    assert!(m.relations.is_empty());
    m.apply(&block(2, 10, 200, 0, 4, Some(true)), &mut n);
    m.apply(&block(3, 20, 200, 0, 5, Some(false)), &mut n);
    let r = m.relation_at("base/5/200").unwrap();
    assert_eq!((r.blocks_read, r.blocks_hit), (0, 1));
}

#[test]
fn query_texts_and_lock_waits() {
    use crate::trace::QueryPhase;
    let mut m = Model::new(10, SEG);
    let mut n = FakeNamer;
    let q = |ts, phase, text: &str| {
        ev(
            ts,
            10,
            EventKind::Query {
                phase,
                text: text.into(),
                truncated: false,
            },
        )
    };
    m.apply(&q(1, QueryPhase::Start, "SELECT 1"), &mut n);
    m.apply(&q(2, QueryPhase::Status, "SELECT 1"), &mut n);
    assert_eq!(m.queries.len(), 1);
    m.apply(&q(3, QueryPhase::Done, "SELECT 1"), &mut n);
    assert_eq!(m.queries[0].done_ns, Some(3));
    m.apply(&q(4, QueryPhase::Status, "SELECT $1"), &mut n);
    assert_eq!(m.current_query(10).unwrap().text, "SELECT $1");
    // Extended protocol: no query__done; the next statement, or going idle (a
    // statement__status without text), ends it.
    m.apply(&q(5, QueryPhase::Status, "SELECT $2"), &mut n);
    assert_eq!(m.queries[1].done_ns, Some(5), "{:?}", m.queries);
    m.apply(&q(6, QueryPhase::Status, ""), &mut n);
    assert_eq!(m.queries[2].done_ns, Some(6));
    assert_eq!(
        m.current_query(10).unwrap().done_ns,
        Some(6),
        "idle: it ended"
    );
    let lw = |ts, done| {
        ev(
            ts,
            10,
            EventKind::LockWait {
                done,
                field1: 5,
                field2: 16390,
                field3: 0,
                field4: 0,
                locktag_type: 0,
                mode: 1,
            },
        )
    };
    m.apply(&lw(5, false), &mut n);
    let w = m.waiting_for(10).unwrap();
    assert_eq!(w.mode_name(), "AccessShareLock");
    assert_eq!(
        w.object(),
        "relation 16390 in database 5 (not in catalog yet)"
    );
    m.apply(&lw(9, true), &mut n);
    assert!(m.waiting_for(10).is_none());
    assert_eq!(m.lock_waits[0].end_ns, Some(9));
}

#[test]
fn a_burst_right_after_attach_is_not_taken_for_the_rate() {
    use super::files::{smooth, Window};
    let mut w = Window::default();
    let tick = 250_000_000;
    // A throttled base backup: 512 KiB at once, then 128 KiB per 250 ms tick.
    let mut pending = 512 * 1024;
    let mut rate = smooth(0.0, &mut pending, &mut w, tick);
    assert_eq!(rate, 0.0, "no rate before a second of data");
    for _ in 0..3 {
        pending += 128 * 1024;
        rate = smooth(rate, &mut pending, &mut w, tick);
    }
    // 896 KiB over the first second, not the 2 MiB/s the first tick alone would say.
    assert!((rate - 896.0 * 1024.0).abs() < 1.0, "{rate}");
    assert_eq!(pending, 0);
    // Idle before any data does not dilute the first window.
    let mut w = Window::default();
    let mut none = 0;
    assert_eq!(smooth(0.0, &mut none, &mut w, 10 * tick), 0.0);
    let mut p = 1 << 20;
    assert_eq!(smooth(0.0, &mut p, &mut w, 4 * tick), (1 << 20) as f64);
}

/// A status sample of pid 1 running `CREATE INDEX` in phase `phase` (the view's number).
fn create_index_at(ts: u64, phase: i64) -> Event {
    let mut params = vec![0i64; 20];
    (params[0], params[8], params[9]) = (1, 403, phase);
    progress_at(ts, "create_index", params)
}

fn progress_at(ts: u64, command: &str, params: Vec<i64>) -> Event {
    let sample = crate::process::status::StatusSample {
        pid: 1,
        major: 16,
        state: Some("active".into()),
        backend_type: Some("client backend".into()),
        progress_command: Some(command.into()),
        progress_target: Some(16384),
        progress_params: params,
        database_oid: Some(5),
        ..Default::default()
    };
    ev(
        ts,
        1,
        EventKind::Status {
            sample: Box::new(sample),
        },
    )
}

fn pwrite(ts: u64, pid: i32, fd: i32, off: u64) -> Event {
    ev(
        ts,
        pid,
        EventKind::Write {
            syscall: Syscall::Pwrite64,
            fd,
            offset: Some(off),
            requested: 8192,
            result: 8192,
        },
    )
}

#[test]
fn a_vacuum_index_pass_names_the_index_read_now() {
    const S: u64 = 1_000_000_000;
    let mut m = Model::new(1, SEG);
    let mut n = FakeNamer;
    let mut params = vec![0i64; 20];
    (params[0], params[1]) = (2, 100); // vacuuming indexes
    m.apply(&progress_at(S, "vacuum", params), &mut n);
    m.apply(&open(S, 1, 7, "base/5/100"), &mut n);
    m.apply(&pread(S, 1, 7, 0, 8192), &mut n);
    m.tick(S, &mut n);
    m.apply(&open(S, 1, 8, "base/5/200"), &mut n);
    m.apply(&open(S, 1, 9, "base/5/300"), &mut n);
    for i in 0..100 {
        m.apply(&pread(S + i * S / 100, 1, 8, i * 8192, 8192), &mut n);
    }
    // The first index done, its dirtied pages are written back while the second is read.
    for i in 0..10 {
        let ts = 2 * S + i * S / 10;
        m.apply(&pread(ts, 1, 9, i * 8192, 8192), &mut n);
        m.apply(&pwrite(ts + 1, 1, 8, i * 8192), &mut n);
    }
    m.tick(3 * S, &mut n);
    let detail = m.operation_view.as_ref().and_then(|v| v.detail.clone());
    assert_eq!(detail.as_deref(), Some("index sales.orders_day"));
}

#[test]
fn the_relation_being_written_is_one_written_lately_at_its_size_now() {
    const S: u64 = 1_000_000_000;
    let mut m = Model::new(1, SEG);
    let mut n = FakeNamer;
    m.apply(&create_index_at(S, 2), &mut n);
    m.apply(&open(S, 1, 9, "base/5/200"), &mut n);
    for i in 0..10 {
        m.apply(&pwrite(S + i * S / 10, 1, 9, i * 8192), &mut n);
    }
    m.tick(2 * S, &mut n);
    let detail = |m: &Model| m.operation_view.as_ref().and_then(|v| v.detail.clone());
    // The size as re-read in this tick, not as it was when the index was first seen.
    assert_eq!(
        detail(&m).as_deref(),
        Some("writing sales.orders_pkey (256.0 MiB)")
    );
    // Validation reads the index built: it is not written any more.
    m.apply(&create_index_at(3 * S, 4), &mut n);
    for i in 0..20 {
        m.apply(&pread(3 * S + i * S / 4, 1, 9, i * 8192, 8192), &mut n);
        if i % 4 == 3 {
            m.tick(3 * S + i * S / 4, &mut n);
        }
    }
    m.tick(8 * S, &mut n);
    assert!(
        !detail(&m).unwrap_or_default().contains("writing"),
        "{:?}",
        m.operation_view
    );
}

#[test]
fn an_io_wait_names_the_file_of_its_kind_touched_that_way_last() {
    const S: u64 = 1_000_000_000;
    let mut m = Model::new(1, SEG);
    let mut n = FakeNamer;
    m.apply(&open(S, 1, 7, "base/5/100"), &mut n);
    m.apply(&open(S, 1, 8, "base/5/200"), &mut n);
    m.apply(&open(S, 1, 9, "pg_wal/000000010000000000000001"), &mut n);
    // Read one relation, extend another, then write WAL: the last touch is the WAL.
    m.apply(&pread(S + 1, 1, 7, 0, 8192), &mut n);
    m.apply(&pwrite(S + 2, 1, 8, 0), &mut n);
    m.apply(&pwrite(S + 3, 1, 9, 0), &mut n);
    let verdict = |m: &mut Model, n: &mut FakeNamer, wait: &str| {
        let sample = crate::process::status::StatusSample {
            pid: 1,
            major: 16,
            state: Some("active".into()),
            backend_type: Some("client backend".into()),
            wait_event_type: Some("IO".into()),
            wait_event: Some(wait.into()),
            ..Default::default()
        };
        m.apply(
            &ev(
                S + 4,
                1,
                EventKind::Status {
                    sample: Box::new(sample),
                },
            ),
            n,
        );
        m.status.as_ref().unwrap().verdict.to_string()
    };
    assert_eq!(
        verdict(&mut m, &mut n, "DataFileExtend"),
        "writing base/5/200 (sales.orders_pkey)"
    );
    assert_eq!(
        verdict(&mut m, &mut n, "DataFileRead"),
        "reading from disk base/5/100 (sales.orders)"
    );
    assert_eq!(
        verdict(&mut m, &mut n, "WALWrite"),
        "writing pg_wal/000000010000000000000001"
    );
}

#[test]
fn an_eta_only_for_a_relation_swept_forward() {
    const S: u64 = 1_000_000_000;
    let eta_after = |offsets: &mut dyn Iterator<Item = u64>| {
        let mut m = Model::new(1, SEG);
        let mut n = FakeNamer;
        m.apply(&open(0, 1, 5, "base/5/100"), &mut n);
        m.tick(0, &mut n);
        for (i, off) in offsets.enumerate() {
            m.apply(&pread(1 + i as u64 * 1000, 1, 5, off, 8192), &mut n);
        }
        m.tick(S, &mut n);
        m.relation_at("base/5/100").unwrap().eta_s()
    };
    // A sequential scan, and one with a parallel participant's chunk far behind.
    assert!(eta_after(&mut (0..4000).map(|b| (100_000 + b) * 8192)).is_some());
    let laggard = std::iter::once(20_000 * 8192).chain((0..4000).map(|b| (100_000 + b) * 8192));
    assert!(eta_after(&mut laggard.into_iter()).is_some());
    // An index scan's scattered reads; a catalog lookup's one block.
    assert_eq!(eta_after(&mut (0..4000).map(|b| b * 37 * 8192)), None);
    assert_eq!(eta_after(&mut std::iter::once(0)), None);
}

#[test]
fn the_verdict_is_the_leaders_own_io_and_says_whose_it_is_otherwise() {
    const S: u64 = 1_000_000_000;
    let mut m = Model::new(1, SEG);
    let mut n = FakeNamer;
    m.apply(&follower(S, 77, FollowerRole::ParallelWorker), &mut n);
    m.apply(&open(S, 1, 7, "base/5/100"), &mut n);
    m.apply(&open(S, 77, 9, "base/pgsql_tmp/pgsql_tmp77.0"), &mut n);
    let verdict = |m: &mut Model, n: &mut FakeNamer, at: u64, wait: Option<(&str, &str)>| {
        let sample = crate::process::status::StatusSample {
            pid: 1,
            major: 16,
            state: Some("active".into()),
            backend_type: Some("client backend".into()),
            wait_event_type: wait.map(|w| w.0.into()),
            wait_event: wait.map(|w| w.1.into()),
            ..Default::default()
        };
        m.apply(
            &ev(
                at,
                1,
                EventKind::Status {
                    sample: Box::new(sample),
                },
            ),
            n,
        );
        m.status.as_ref().unwrap().verdict.to_string()
    };
    // The leader waits for its worker, which merges its spilled sort: the worker's file,
    // said so.
    m.apply(&pread(S + 1, 77, 9, 0, 8192), &mut n);
    assert_eq!(
        verdict(&mut m, &mut n, S + 2, Some(("IPC", "MessageQueueReceive"))),
        "reading base/pgsql_tmp/pgsql_tmp77.0, by parallel worker 77"
    );
    // The leader reads too: its own read is the verdict, though the worker wrote later.
    m.apply(&pread(S + 3, 1, 7, 0, 8192), &mut n);
    m.apply(&pread(S + 4, 77, 9, 8192, 8192), &mut n);
    assert_eq!(
        verdict(&mut m, &mut n, S + 5, None),
        "reading base/5/100 (sales.orders)"
    );
}

#[test]
fn a_relation_only_written_has_a_write_rate() {
    const S: u64 = 1_000_000_000;
    let mut m = Model::new(1, SEG);
    let mut n = FakeNamer;
    m.apply(&open(S, 1, 7, "base/5/100"), &mut n);
    m.tick(S, &mut n);
    for i in 0..100u64 {
        m.apply(&pwrite(S + i * S / 100, 1, 7, i * 8192), &mut n);
    }
    m.tick(2 * S, &mut n);
    m.tick(3 * S, &mut n);
    let r = m.relation_at("base/5/100").unwrap();
    assert_eq!(r.bytes_written, 100 * 8192);
    assert_eq!(r.rate_bps, 0.0, "nothing was read");
    assert!(
        r.write_rate_bps > 100.0 * 8192.0 / 4.0,
        "{} B/s written",
        r.write_rate_bps
    );
}
