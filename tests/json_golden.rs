//! NDJSON of line mode from scripted events, compared byte for byte with the committed
//! snapshots in tests/snapshots: the records are a contract, so any change to a field's
//! name, order, null-or-absent, or value shows up here (update: INSTA_UPDATE=always cargo
//! test --test json_golden, then review the diff). Times are scripted, so it is stable.

mod support;

use pg_trace::model::Model;
use pg_trace::output::record::Record;
use pg_trace::output::trace::{write_interval, write_syscall};
use pg_trace::output::Format;
use pg_trace::process::status::kernel::KernelState;
use pg_trace::process::status::StatusSample;
use pg_trace::trace::{Event, EventKind, QueryPhase, Syscall};
use support::scripted::{self, *};

/// What `f` writes; every line must read back as a typed [`Record`] and write out again
/// byte for byte (so the types hold every field, in order, null or absent as written).
fn lines(f: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut out = Vec::new();
    f(&mut out);
    let text = String::from_utf8(out).unwrap();
    for line in text.lines() {
        let r: Record = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(serde_json::to_string(&r).unwrap(), line);
    }
    text
}

/// A sample of the traced backend waiting for a lock that pid 777 holds.
fn lock_sample(sampled_at_us: i64) -> StatusSample {
    StatusSample {
        pid: PID,
        major: 15,
        backend_type: Some("client backend".into()),
        state: Some("active".into()),
        database_oid: Some(16385),
        database: Some("shop".into()),
        query: Some("SELECT count(*) FROM sales.orders".into()),
        wait_event_type: Some("Lock".into()),
        wait_event: Some("relation".into()),
        xact_start_us: Some(sampled_at_us - 946_684_800_000_000 - 2_500_000),
        state_start_us: Some(sampled_at_us - 946_684_800_000_000 - 1_000_000),
        progress_command: Some("vacuum".into()),
        progress_target: Some(16388),
        progress_params: vec![2, 1000, 500, 400, 0, 0, 0, 0, 0, 0],
        lock_relation_oid: Some(16388),
        lock_relation: Some("sales.orders".into()),
        lock_holders: vec![777],
        sampled_at_us,
        kernel: KernelState {
            state: Some('S'),
            wchan: Some("do_epoll_wait".into()),
            syscall: Some(libc::SYS_epoll_wait),
            cpu_ticks: Some(12),
            send_queue: Some(0),
        },
        ..Default::default()
    }
}

#[test]
fn trace_intervals_and_summary_records() {
    let (mut m, now) = scripted::scan_model();
    let t = now + 1_000_000;
    apply(
        &mut m,
        ev(
            t,
            EventKind::Query {
                phase: QueryPhase::Start,
                text: "SELECT count(*)\nFROM sales.orders".into(),
                truncated: false,
            },
        ),
    );
    apply(
        &mut m,
        ev(
            t + 1,
            EventKind::LockWait {
                done: false,
                field1: 16385,
                field2: 16388,
                field3: 0,
                field4: 0,
                locktag_type: 0,
                mode: 1,
            },
        ),
    );
    apply(
        &mut m,
        ev(
            t + 2,
            EventKind::Sort {
                done: true,
                work_mem_kb: None,
                external: Some(true),
                space_kb: Some(2048),
            },
        ),
    );
    apply(
        &mut m,
        ev(
            t + 3,
            EventKind::Lost {
                cause: "ring buffer full".into(),
                count: 3,
            },
        ),
    );
    apply(
        &mut m,
        ev(
            t + 4,
            EventKind::Status {
                sample: Box::new(lock_sample(1_700_000_000_000_000)),
            },
        ),
    );
    tick(&mut m, t + 5);
    let first = lines(|o| {
        write_interval(o, &m, T0, t + 5, 1234.4, Format::Json, true).unwrap();
    });
    apply(
        &mut m,
        ev(
            t + 10,
            EventKind::LockWait {
                done: true,
                field1: 16385,
                field2: 16388,
                field3: 0,
                field4: 0,
                locktag_type: 0,
                mode: 1,
            },
        ),
    );
    apply(
        &mut m,
        ev(
            t + 11,
            EventKind::Query {
                phase: QueryPhase::Done,
                text: String::new(),
                truncated: false,
            },
        ),
    );
    apply(
        &mut m,
        ev(
            t + 12,
            EventKind::Exit {
                code: Some(0),
                signal: None,
            },
        ),
    );
    tick(&mut m, t + 500_000_000);
    let second = lines(|o| {
        write_interval(o, &m, t + 5, t + 500_000_000, 0.0, Format::Json, false).unwrap();
    });
    insta::assert_snapshot!("interval_first", first);
    insta::assert_snapshot!("interval_second", second);
}

#[test]
fn debug_syscall_records() {
    let (mut m, now) = scripted::scan_model();
    let evs = vec![
        open(now, 30, "base/16385/16394"),
        pread(now + 1, 30, 8192, 8192),
        scripted::write(now + 2, 27, 0, 4096),
        ev(
            now + 3,
            EventKind::Seek {
                fd: 30,
                offset: 0,
                whence: 2,
                result: 209_715_200,
            },
        ),
        ev(now + 4, EventKind::Close { fd: 30 }),
        ev(
            now + 5,
            EventKind::Read {
                syscall: Syscall::Read,
                fd: 99,
                offset: None,
                requested: 10,
                result: -11,
            },
        ),
        ev(
            now + 6,
            EventKind::Stat {
                syscall: Syscall::Newfstatat,
                dirfd: None,
                fd: None,
                path: Some("base/16385/16388".into()),
                result: 0,
            },
        ),
        ev(
            now + 7,
            EventKind::Send {
                syscall: Syscall::Sendto,
                fd: 9,
                requested: 100,
                result: 100,
            },
        ),
        ev(
            now + 8,
            EventKind::Exit {
                code: None,
                signal: Some(9),
            },
        ),
    ];
    let out = lines(|o| {
        for e in &evs {
            let is_close = matches!(e.kind, EventKind::Close { .. });
            if is_close {
                write_syscall(o, &m, e, Format::Json).unwrap();
            }
            m.apply(e, &mut FakeNamer);
            if !is_close {
                write_syscall(o, &m, e, Format::Json).unwrap();
            }
        }
    });
    insta::assert_snapshot!("syscalls", out);
}

#[test]
fn backup_records() {
    let mut m = Model::new(PID, SEG);
    let mut s = StatusSample {
        pid: PID,
        major: 15,
        backend_type: Some("walsender".into()),
        state: Some("active".into()),
        query: Some("BASE_BACKUP ( LABEL 'x' )".into()),
        progress_command: Some("basebackup".into()),
        progress_params: vec![2, 4 * 1024 * 1024, 1024 * 1024, 1, 0],
        sampled_at_us: 1_700_000_000_000_000,
        ..Default::default()
    };
    let e = |ts, s: &StatusSample| Event {
        ts_ns: ts,
        pid: PID,
        kind: EventKind::Status {
            sample: Box::new(s.clone()),
        },
    };
    apply(&mut m, e(T0, &s));
    s.progress_params = vec![3, 4 * 1024 * 1024, 3 * 1024 * 1024, 1, 0];
    apply(&mut m, e(T0 + 1_000_000_000, &s));
    tick(&mut m, T0 + 1_000_000_000);
    let out = lines(|o| {
        write_interval(o, &m, T0, T0 + 1_000_000_000, 10.0, Format::Json, true).unwrap();
    });
    insta::assert_snapshot!("backup", out);
}

#[test]
fn probe_records() {
    use pg_trace::process::stapsdt::{parse_args, Notes, ProbeSite};
    let site = |provider: &str, name: &str, pc| ProbeSite {
        provider: provider.into(),
        name: name.into(),
        pc,
        base: 0,
        semaphore: 0x885952,
        args: parse_args("-4@%esi 1@$1 8@-16(%rbp)"),
    };
    let notes = Notes {
        probes: vec![
            site("postgresql", "buffer__read__done", 0x1000),
            site("postgresql", "buffer__read__done", 0x2000),
            site("postgresql", "wal__switch", 0x3000),
            site("postgresql", "smgr__md__read__done", 0x4000),
            site("libc", "setjmp", 0x5000),
        ],
        skipped: 0,
    };
    let out = lines(|o| {
        pg_trace::output::probes::write_notes(
            o,
            "/usr/lib/postgresql/15/bin/postgres",
            &notes,
            Format::Json,
        )
        .unwrap();
        pg_trace::output::probes::write_notes(o, "/x/postgres", &Notes::default(), Format::Json)
            .unwrap();
    });
    insta::assert_snapshot!("probes", out);
}
