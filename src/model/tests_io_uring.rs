//! PostgreSQL 18 with io_method=io_uring, as the model sees it. The backend stages its
//! reads as AIO handles and submits them to its own ring itself (`pgaio_uring_submit`:
//! `io_uring_prep_readv` on its own descriptor, with an offset); the eBPF tracer emits each
//! request at completion as an ordinary read *of the submitting process*, whatever task
//! posts the completion and whichever backend reaps it from the ring (a backend waiting for
//! another's I/O reads that backend's completion queue, `pgaio_uring_wait_one`): the BPF
//! program keeps the submitter's tgid from submission to completion. The submitter is the
//! handle's owner, so the credit goes to the owner, as with io workers — without an
//! `IoWorkerRead`: no other process performed the read.

use super::*;
use crate::trace::{Event, EventKind, Syscall};

const SEG: u64 = 1 << 30;
const BACKEND: i32 = 10;
const OTHER_BACKEND: i32 = 11;

/// base/5/100 is sales.orders, 1.5 segments; anything else is a plain file.
struct Namer18;

impl Namer for Namer18 {
    fn name(&mut self, path: &str) -> Named {
        let rel = (path == "base/5/100").then(|| {
            std::sync::Arc::new(RelInfo {
                id: RelIdentity {
                    locator: match crate::pgdata::classify(path, 16 << 20) {
                        crate::pgdata::PathClass::Relation(f) => f.locator,
                        other => panic!("{other:?}"),
                    },
                    path: path.to_string(),
                    label: "sales.orders".into(),
                    schema: Some("sales".into()),
                    name: Some("orders".into()),
                    kind: Some("table"),
                    table: None,
                    known: true,
                },
                fork: crate::pgdata::relfile::Fork::Main,
                segment: 0,
            })
        });
        Named {
            relpath: Some(path.to_string()),
            class: if rel.is_some() { "relation" } else { "other" },
            label: path.into(),
            relation: rel,
        }
    }
    fn relation_size(&mut self, _rel: &RelInfo) -> Option<u64> {
        Some(SEG + SEG / 2)
    }
    fn file_size(&mut self, _path: &str) -> Option<u64> {
        Some(SEG)
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

/// One io_uring request as the tracer emits it at completion.
fn uring(ts: u64, pid: i32, op: Syscall, fd: i32, offset: Option<u64>, n: i64) -> Event {
    let kind = if op.is_write() {
        EventKind::Write {
            syscall: op,
            fd,
            offset,
            requested: n as u64,
            result: n,
        }
    } else {
        EventKind::Read {
            syscall: op,
            fd,
            offset,
            requested: n as u64,
            result: n,
        }
    };
    ev(ts, pid, kind)
}

/// A read stream of 16-block READVs (io_combine_limit's 128 kB), completing out of order:
/// each byte counted once, as far as the furthest block, all the backend's.
#[test]
fn readv_requests_credit_the_submitting_backend() {
    let mut m = Model::new(BACKEND, SEG);
    let mut n = Namer18;
    m.apply(&open(1, BACKEND, 30, "base/5/100"), &mut n);
    const IO: u64 = 16 * 8192;
    // Issued 0, 1, 2, 3; completed 1, 0, 3, 2 (posted by io-wq or task work: the tracer
    // still says BACKEND, the submitter).
    for (i, k) in [1u64, 0, 3, 2].into_iter().enumerate() {
        m.apply(
            &uring(
                2 + i as u64,
                BACKEND,
                Syscall::IoUringReadv,
                30,
                Some(k * IO),
                IO as i64,
            ),
            &mut n,
        );
    }
    let f = &m.files[&(BACKEND, 30)];
    assert_eq!(f.bytes_read, 4 * IO);
    assert_eq!(f.ops.reads, 4);
    assert_eq!(f.highest, 4 * IO);
    assert_eq!(f.last_op, Some(Syscall::IoUringReadv));
    // Positioned requests leave the file position (0 at open) alone, like preadv.
    assert_eq!(f.pos, Some(0));
    let r = m.relation_at("base/5/100").unwrap();
    assert_eq!(r.bytes_read, 4 * IO);
    // The position is the end of the last request completed (here issued third): in
    // completion order, which lags issue order by at most the requests in flight.
    assert_eq!(r.position, Some(3 * IO));
}

/// Another backend's requests (it is not traced, so the tracer never emits them; were it
/// followed, on its own pid) never land on the traced backend's files, even on the same
/// descriptor number and file.
#[test]
fn another_backends_requests_are_its_own() {
    let mut m = Model::new(BACKEND, SEG);
    let mut n = Namer18;
    m.apply(&open(1, BACKEND, 30, "base/5/100"), &mut n);
    m.apply(
        &uring(2, OTHER_BACKEND, Syscall::IoUringReadv, 30, Some(0), 131072),
        &mut n,
    );
    assert_eq!(m.files[&(BACKEND, 30)].bytes_read, 0);
    assert!(m.relation_at("base/5/100").unwrap().position.is_none());
}

/// An SQE offset of -1 (no offset in the event): at the file position, which moves, as
/// with read(2). A failed request (-ECANCELED, say) reads nothing and counts as an error.
#[test]
fn requests_at_the_file_position_and_failures() {
    let mut m = Model::new(BACKEND, SEG);
    let mut n = Namer18;
    m.apply(
        &open(1, BACKEND, 7, "pg_wal/000000010000000000000001"),
        &mut n,
    );
    m.apply(
        &ev(
            2,
            BACKEND,
            EventKind::Seek {
                fd: 7,
                offset: 8192,
                whence: libc::SEEK_SET,
                result: 8192,
            },
        ),
        &mut n,
    );
    m.apply(
        &uring(3, BACKEND, Syscall::IoUringRead, 7, None, 4096),
        &mut n,
    );
    let f = &m.files[&(BACKEND, 7)];
    assert_eq!((f.last_offset, f.pos), (Some(8192), Some(8192 + 4096)));
    m.apply(
        &uring(4, BACKEND, Syscall::IoUringRead, 7, Some(0), -125),
        &mut n,
    );
    let f = &m.files[&(BACKEND, 7)];
    assert_eq!((f.bytes_read, f.errors), (4096, 1));
}

/// Writes through a ring are writes: bytes written, and the last operation a write.
#[test]
fn write_requests_are_writes() {
    let mut m = Model::new(BACKEND, SEG);
    let mut n = Namer18;
    m.apply(&open(1, BACKEND, 30, "base/5/100"), &mut n);
    m.apply(
        &uring(2, BACKEND, Syscall::IoUringWriteFixed, 30, Some(8192), 8192),
        &mut n,
    );
    let f = &m.files[&(BACKEND, 30)];
    assert_eq!((f.bytes_written, f.bytes_read), (8192, 0));
    assert!(f.last_op.is_some_and(Syscall::is_write));
    assert_eq!(m.relation_at("base/5/100").unwrap().bytes_written, 8192);
}
