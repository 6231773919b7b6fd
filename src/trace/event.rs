//! `Event`: the one seam between capture and everything else. Every backend (eBPF, ptrace,
//! /proc polling, replay) produces these and nothing else; nothing downstream knows how an
//! event was captured. Events carry raw numbers and paths, never PostgreSQL names.

use serde::{Deserialize, Serialize};

use crate::pgdata::relfile::{Fork, RelFileLocator};
pub use crate::process::proc::Pid;

/// Which system call produced an I/O event, for the `-d` view and per-call statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Syscall {
    Open,
    Openat,
    Close,
    Dup,
    Dup2,
    Dup3,
    FcntlDupfd,
    Read,
    Pread64,
    Readv,
    Preadv,
    Preadv2,
    Write,
    Pwrite64,
    Writev,
    Pwritev,
    Pwritev2,
    Lseek,
    Ftruncate,
    Truncate,
    Unlink,
    Unlinkat,
    Getdents64,
    Newfstatat,
    Fstat,
    Lstat,
    Stat,
    Statx,
    Sendto,
    Fadvise64,
    /// sendfile, copy_file_range, splice: a copier's reads that never reach its memory
    /// (`cp` copies with copy_file_range); decoded as reads of their input fd.
    Sendfile,
    CopyFileRange,
    Splice,
    /// io_uring requests (IORING_OP_*), captured at completion and credited to the
    /// process that submitted them: no system call of theirs moves the data (PostgreSQL 18
    /// with io_method=io_uring). `*Fixed` read into or write from registered buffers.
    IoUringRead,
    IoUringReadv,
    IoUringReadFixed,
    IoUringReadvFixed,
    IoUringWrite,
    IoUringWritev,
    IoUringWriteFixed,
    IoUringWritevFixed,
}

impl Syscall {
    pub fn name(self) -> &'static str {
        use Syscall::*;
        match self {
            Open => "open",
            Openat => "openat",
            Close => "close",
            Dup => "dup",
            Dup2 => "dup2",
            Dup3 => "dup3",
            FcntlDupfd => "fcntl",
            Read => "read",
            Pread64 => "pread64",
            Readv => "readv",
            Preadv => "preadv",
            Preadv2 => "preadv2",
            Write => "write",
            Pwrite64 => "pwrite64",
            Writev => "writev",
            Pwritev => "pwritev",
            Pwritev2 => "pwritev2",
            Lseek => "lseek",
            Ftruncate => "ftruncate",
            Truncate => "truncate",
            Unlink => "unlink",
            Unlinkat => "unlinkat",
            Getdents64 => "getdents64",
            Newfstatat => "newfstatat",
            Fstat => "fstat",
            Lstat => "lstat",
            Stat => "stat",
            Statx => "statx",
            Sendto => "sendto",
            Fadvise64 => "fadvise64",
            Sendfile => "sendfile",
            CopyFileRange => "copy_file_range",
            Splice => "splice",
            IoUringRead => "io_uring_read",
            IoUringReadv => "io_uring_readv",
            IoUringReadFixed => "io_uring_read_fixed",
            IoUringReadvFixed => "io_uring_readv_fixed",
            IoUringWrite => "io_uring_write",
            IoUringWritev => "io_uring_writev",
            IoUringWriteFixed => "io_uring_write_fixed",
            IoUringWritevFixed => "io_uring_writev_fixed",
        }
    }

    /// An io_uring request rather than a system call.
    pub fn is_io_uring(self) -> bool {
        use Syscall::*;
        matches!(
            self,
            IoUringRead
                | IoUringReadv
                | IoUringReadFixed
                | IoUringReadvFixed
                | IoUringWrite
                | IoUringWritev
                | IoUringWriteFixed
                | IoUringWritevFixed
        )
    }

    /// Whether a read or write that started at `offset` leaves the file position alone:
    /// the p*-calls always; an io_uring request when it named an offset (its -1, "at the
    /// file position", reads or writes there and moves it, like read(2)).
    pub fn positioned(self, offset: Option<u64>) -> bool {
        use Syscall::*;
        match self {
            Pread64 | Preadv | Preadv2 | Pwrite64 | Pwritev | Pwritev2 => true,
            s if s.is_io_uring() => offset.is_some(),
            _ => false,
        }
    }

    /// Whether it writes to a file.
    pub fn is_write(self) -> bool {
        use Syscall::*;
        matches!(
            self,
            Write
                | Pwrite64
                | Writev
                | Pwritev
                | Pwritev2
                | IoUringWrite
                | IoUringWritev
                | IoUringWriteFixed
                | IoUringWritevFixed
        )
    }
}

/// What a timed I/O call did, for latency per relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoOp {
    Read,
    Write,
    Fsync,
}

impl IoOp {
    pub fn name(self) -> &'static str {
        match self {
            IoOp::Read => "read",
            IoOp::Write => "write",
            IoOp::Fsync => "fsync",
        }
    }
}

/// Why a process joined the trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FollowerRole {
    /// `parallel worker for PID N`: its files are shown under the leader.
    ParallelWorker,
    /// PG18 `io worker N` (io_method=worker): only its reads whose AIO handle a traced
    /// process owns are attributed ([`EventKind::IoWorkerRead`]), marked as such.
    IoWorker,
    /// Copier mode: a descendant of the traced copier (a pgBackRest worker, rsync's other
    /// halves, tar's compressor); its reads of the data directory are the copier's.
    CopierChild,
}

/// The `Lost` cause of io worker reads whose AIO handle could not be read: credited to
/// nobody.
pub const IO_WORKER_OWNER_UNKNOWN: &str = "io worker read of unknown owner (not credited)";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// open/openat returned `fd` (negative: -errno). `path` as passed: relative paths are
    /// relative to `dirfd` (None = the working directory, which is the data directory).
    Open {
        syscall: Syscall,
        dirfd: Option<i32>,
        path: String,
        flags: i32,
        fd: i32,
    },
    Close {
        fd: i32,
    },
    Dup {
        syscall: Syscall,
        old_fd: i32,
        new_fd: i32,
    },
    /// read, pread64, readv, preadv, preadv2. `offset` is where the read started: the
    /// explicit offset of p*-calls, the file position for plain read/readv when the backend
    /// can see it (eBPF reads `f_pos`), else None and the model uses its tracked position.
    Read {
        syscall: Syscall,
        fd: i32,
        offset: Option<u64>,
        requested: u64,
        /// Bytes transferred, or -errno.
        result: i64,
    },
    /// A read a PG18 io worker (the event's pid, whose fd it is) performed for `owner`, a
    /// traced process: the owner of the AIO handle it executed. An io worker's plain
    /// `Read` is for nobody we know and is never credited.
    IoWorkerRead {
        owner: Pid,
        syscall: Syscall,
        fd: i32,
        offset: Option<u64>,
        requested: u64,
        result: i64,
    },
    /// write, pwrite64, writev, pwritev, pwritev2 (same fields as Read).
    Write {
        syscall: Syscall,
        fd: i32,
        offset: Option<u64>,
        requested: u64,
        result: i64,
    },
    /// lseek: `result` is the new position (or -errno). SEEK_END with offset 0 is how
    /// PostgreSQL's smgr learns a segment's size.
    Seek {
        fd: i32,
        offset: i64,
        whence: i32,
        result: i64,
    },
    Truncate {
        syscall: Syscall,
        fd: Option<i32>,
        path: Option<String>,
        length: u64,
        result: i64,
    },
    Unlink {
        syscall: Syscall,
        dirfd: Option<i32>,
        path: String,
        result: i64,
    },
    /// getdents64 on a directory fd: a directory walk (base backup estimation, say).
    ReadDir {
        fd: i32,
        result: i64,
    },
    /// The stat family. `path` for path-based calls, `fd` for fstat/AT_EMPTY_PATH.
    Stat {
        syscall: Syscall,
        dirfd: Option<i32>,
        fd: Option<i32>,
        path: Option<String>,
        result: i64,
    },
    /// sendto, or write/writev on a socket: bytes going to a client.
    Send {
        syscall: Syscall,
        fd: i32,
        requested: u64,
        result: i64,
    },
    Fadvise {
        fd: i32,
        offset: u64,
        len: u64,
        advice: i32,
    },
    /// What /proc says about one fd: at attach (files opened before we came), and on every
    /// poll of the /proc backend. `size` is the file's size when it could be stat'ed.
    FileState {
        fd: i32,
        path: String,
        pos: Option<u64>,
        flags: Option<u32>,
        size: Option<u64>,
    },
    /// The /proc backend caught the process inside this read (`/proc/PID/syscall` shows a
    /// system call's arguments while the process sleeps in it): evidence of which file it
    /// reads and where, not a count of bytes. `requested` is unknown for vectored reads
    /// (the sizes are in the process's memory); `hits` is how many samples saw it.
    ReadSample {
        syscall: Syscall,
        fd: i32,
        offset: Option<u64>,
        requested: Option<u64>,
        hits: u32,
    },
    /// Cumulative I/O counters from /proc/PID/io (the /proc backend).
    IoCounters {
        rchar: u64,
        wchar: u64,
        read_bytes: u64,
        write_bytes: u64,
    },
    /// A process joined the trace: `pid` follows `leader`.
    NewFollower {
        leader: Pid,
        role: FollowerRole,
    },
    /// The process exited (`code` when known, `signal` if it was killed).
    Exit {
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// Events the backend could not deliver, by cause (ring buffer full, string too long...).
    Lost {
        cause: String,
        count: u64,
    },
    /// Blocks of a relation through the buffer manager or smgr (USDT).
    BlockIo(BlockIo),
    /// Query text: `query__start`/`query__done` (simple protocol only) and
    /// `statement__status` (both protocols; PostgreSQL's activity string).
    Query {
        phase: QueryPhase,
        text: String,
        /// Cut at the capture limit.
        truncated: bool,
    },
    /// A heavyweight lock wait (`lock__wait__start/done`): the LOCKTAG fields as PostgreSQL
    /// fills them (for a relation lock, type 0: field1 = database OID, field2 = relation
    /// OID) and the LOCKMODE asked for.
    LockWait {
        done: bool,
        field1: u32,
        field2: u32,
        field3: u32,
        field4: u32,
        locktag_type: u8,
        mode: i32,
    },
    /// `sort__start` (`done` false: the work_mem it may use) and `sort__done` (`external`:
    /// spilled to disk; `space_kb`: disk or memory used).
    Sort {
        done: bool,
        work_mem_kb: Option<i64>,
        external: Option<bool>,
        space_kb: Option<i64>,
    },
    /// `checkpoint__start(flags)` / `checkpoint__done(buffers written, ...)`.
    Checkpoint {
        done: bool,
        flags: Option<i32>,
        buffers_written: Option<i64>,
    },
    /// The process's time by scheduler state since the trace began, cumulative, in
    /// nanoseconds (eBPF `sched_switch`, `sched_info`'s run delay): on a CPU, waiting for
    /// one, sleeping (S), in uninterruptible sleep (D: mostly the device). Summed over
    /// its threads.
    SchedTimes {
        running_ns: u64,
        runqueue_ns: u64,
        sleeping_ns: u64,
        blocked_ns: u64,
    },
    /// One read, write or sync call timed from its entry to its exit (`--io-latency`).
    /// `disk`: the thread slept in D state during it (waited for the device); None when
    /// that cannot be told.
    IoLatency {
        op: IoOp,
        syscall_nr: u32,
        fd: i32,
        latency_ns: u64,
        result: i64,
        disk: Option<bool>,
        /// A PG18 io worker's read (the event's pid, whose fd it is) for `owner`, a traced
        /// process, as [`EventKind::IoWorkerRead`] credits it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<Pid>,
    },
    /// The backend wrote `wait_event_info` (`--exact-waits`: a hardware watchpoint); the
    /// value written. 0: no longer waiting.
    WaitTransition {
        wait_event_info: u32,
    },
    /// The process's own status read from shared memory and /proc, once per tick
    /// (`--no-memory`: /proc only). A recording replays it like any other event.
    Status {
        sample: Box<crate::process::status::StatusSample>,
    },
}

/// Blocks of one fork of a relation, named as the probe names them: by its file
/// (`rel_number` is NOT pg_class.oid), with a temp relation's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "BlockIoRecord", try_from = "BlockIoRecord")]
pub struct BlockIo {
    pub probe: BlockProbe,
    pub rel: RelFileLocator,
    pub fork: Fork,
    pub block: u32,
    pub nblocks: u32,
    /// `buffer__read__done`: found in shared buffers. None for the other probes.
    pub hit: Option<bool>,
    pub write: bool,
}

/// How a [`BlockIo`] is written in a record: the probe's own flat numbers (`fork` as
/// PostgreSQL's ForkNumber, `backend` -1 unless temp), as the `-d` records always had them.
#[derive(Serialize, Deserialize)]
struct BlockIoRecord {
    probe: BlockProbe,
    spc: u32,
    db: u32,
    relfilenode: u32,
    fork: i32,
    block: u32,
    nblocks: u32,
    hit: Option<bool>,
    write: bool,
    backend: i64,
}

impl From<BlockIo> for BlockIoRecord {
    fn from(b: BlockIo) -> BlockIoRecord {
        BlockIoRecord {
            probe: b.probe,
            spc: b.rel.spc_oid,
            db: b.rel.db_oid,
            relfilenode: b.rel.rel_number,
            fork: b.fork.number(),
            block: b.block,
            nblocks: b.nblocks,
            hit: b.hit,
            write: b.write,
            backend: b.rel.backend.map_or(-1, i64::from),
        }
    }
}

impl TryFrom<BlockIoRecord> for BlockIo {
    type Error = String;

    fn try_from(r: BlockIoRecord) -> Result<BlockIo, String> {
        Ok(BlockIo {
            probe: r.probe,
            rel: RelFileLocator {
                spc_oid: r.spc,
                db_oid: r.db,
                rel_number: r.relfilenode,
                backend: u32::try_from(r.backend).ok(),
            },
            fork: Fork::from_number(r.fork.into())
                .ok_or_else(|| format!("fork {} is not a ForkNumber", r.fork))?,
            block: r.block,
            nblocks: r.nblocks,
            hit: r.hit,
            write: r.write,
        })
    }
}

/// Which USDT probe a [`EventKind::BlockIo`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockProbe {
    BufferReadStart,
    BufferReadDone,
    SmgrReadStart,
    SmgrReadDone,
    SmgrWriteStart,
    SmgrWriteDone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryPhase {
    Start,
    Done,
    Status,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns's clock).
    pub ts_ns: u64,
    pub pid: Pid,
    #[serde(flatten)]
    pub kind: EventKind,
}

pub use crate::process::clock::monotonic_ns;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_event_replays() {
        use crate::process::status::StatusSample;
        let mut s = StatusSample {
            pid: 7,
            major: 16,
            state: Some("active".into()),
            progress_command: Some("basebackup".into()),
            progress_params: vec![3, -1, 5, 1, 0],
            lock_holders: vec![9],
            title: Some("postgres: walsender".into()),
            ..Default::default()
        };
        s.kernel.state = Some('S');
        s.kernel.send_queue = Some(4096);
        let ev = Event {
            ts_ns: 42,
            pid: 7,
            kind: EventKind::Status {
                sample: Box::new(s),
            },
        };
        let text = serde_json::to_string(&ev).unwrap();
        assert!(text.contains(r#""event":"status""#), "{text}");
        let back: Event = serde_json::from_str(&text).unwrap();
        assert_eq!(back, ev);
    }

    /// io_uring requests: named as such, positioned only with an offset, writes told apart.
    #[test]
    fn io_uring_ops() {
        assert_eq!(Syscall::IoUringReadv.name(), "io_uring_readv");
        assert_eq!(
            serde_json::to_string(&Syscall::IoUringReadFixed).unwrap(),
            r#""io_uring_read_fixed""#
        );
        assert!(Syscall::IoUringRead.positioned(Some(0)));
        assert!(!Syscall::IoUringRead.positioned(None));
        assert!(Syscall::Pread64.positioned(None));
        assert!(!Syscall::Read.positioned(Some(4096)));
        assert!(Syscall::IoUringWritevFixed.is_write() && Syscall::Pwrite64.is_write());
        assert!(!Syscall::IoUringReadv.is_write() && !Syscall::Read.is_write());
        assert!(Syscall::IoUringWrite.is_io_uring() && !Syscall::Preadv.is_io_uring());
    }

    /// A block event keeps the probe's flat numbers in records, and reads back.
    #[test]
    fn a_block_event_replays() {
        let ev = Event {
            ts_ns: 1,
            pid: 7,
            kind: EventKind::BlockIo(BlockIo {
                probe: BlockProbe::BufferReadDone,
                rel: RelFileLocator {
                    spc_oid: 1663,
                    db_oid: 5,
                    rel_number: 16384,
                    backend: Some(3),
                },
                fork: Fork::Vm,
                block: 9,
                nblocks: 1,
                hit: Some(true),
                write: false,
            }),
        };
        let text = serde_json::to_string(&ev.kind).unwrap();
        assert_eq!(
            text,
            r#"{"event":"block_io","probe":"buffer_read_done","spc":1663,"db":5,"relfilenode":16384,"fork":2,"block":9,"nblocks":1,"hit":true,"write":false,"backend":3}"#
        );
        let back: Event = serde_json::from_str(&serde_json::to_string(&ev).unwrap()).unwrap();
        assert_eq!(back, ev);
    }
}
