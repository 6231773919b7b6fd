//! The eBPF tracer on a real kernel (run as root). A failure to load BPF fails these tests:
//! CI runs as root with BPF available, so "could not load" is a bug, not a skip.
//!
//! The I/O under test is done by a child process we control: this very test binary,
//! re-executed with `PG_TRACE_EBPF_CHILD` set, runs `child_io_helper`, which waits for a
//! byte on stdin (so the tracer is attached before any of its I/O), performs a scripted
//! sequence of system calls and exits.

mod support;

use std::fs::{self, File, OpenOptions};
use std::io::{IoSliceMut, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pg_trace::trace::ebpf::EbpfTracer;
use pg_trace::trace::{Event, EventKind, Pid, Syscall, Tracer};

const CHILD_ENV: &str = "PG_TRACE_EBPF_CHILD";
const FILE_SIZE: usize = 64 * 1024;
const DEADLINE: Duration = Duration::from_secs(10);

/// Byte `i` of the test file.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// Not a test of its own: the body of the child process. A no-op in a normal run.
#[test]
fn child_io_helper() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let mut go = [0u8; 1];
    std::io::stdin().read_exact(&mut go).expect("go byte");
    child_io(&dir);
}

/// The scripted I/O. Each step's expected event is checked by `expect_child_events`.
fn child_io(dir: &Path) {
    let data = dir.join("data.bin");
    let mut f = File::open(&data).expect("open data");
    let fd = f.as_raw_fd();

    // lseek + read: read() must report the file position, 16384.
    assert_eq!(f.seek(SeekFrom::Start(16384)).unwrap(), 16384);
    let mut buf = vec![0u8; 8192];
    assert_eq!(f.read(&mut buf[..4096]).unwrap(), 4096);
    assert_eq!(buf[0], pattern(16384));
    // pread64 at an explicit offset; the file position does not move.
    assert_eq!(f.read_at(&mut buf, 40960).unwrap(), 8192);
    // readv at the file position (16384 + 4096), 1000 + 3000 bytes.
    let (a, b) = buf.split_at_mut(1000);
    let mut iov = [IoSliceMut::new(a), IoSliceMut::new(&mut b[..3000])];
    assert_eq!(f.read_vectored(&mut iov).unwrap(), 4000);
    // preadv at 8192, 2 x 512.
    let mut p = [0u8; 512];
    let mut q = [0u8; 512];
    let iovs = [
        libc::iovec {
            iov_base: p.as_mut_ptr().cast(),
            iov_len: p.len(),
        },
        libc::iovec {
            iov_base: q.as_mut_ptr().cast(),
            iov_len: q.len(),
        },
    ];
    // SAFETY: two valid iovecs over buffers we own, on an open fd.
    let n = unsafe { libc::preadv(fd, iovs.as_ptr(), 2, 8192) };
    assert_eq!(n, 1024);
    // preadv2 with offset -1 reads at the file position (24480) like readv.
    // SAFETY: as above.
    let n = unsafe { libc::preadv2(fd, iovs.as_ptr(), 1, -1, 0) };
    assert_eq!(n, 512);
    // SEEK_END with offset 0: how smgr learns a segment's size.
    assert_eq!(f.seek(SeekFrom::End(0)).unwrap(), FILE_SIZE as u64);
    // A read at end of file: nothing read, at offset FILE_SIZE.
    assert_eq!(f.read(&mut buf[..100]).unwrap(), 0);
    // SAFETY: advisory call on an open fd.
    unsafe { libc::posix_fadvise(fd, 0, 8192, libc::POSIX_FADV_WILLNEED) };
    // fstat (statx(fd, "", AT_EMPTY_PATH) or fstat, depending on libc) and a path stat.
    f.metadata().unwrap();
    fs::metadata(&data).unwrap();
    // dup and fcntl(F_DUPFD_CLOEXEC).
    // SAFETY: plain fd syscalls on an fd we own; the new fds are closed right away.
    unsafe {
        let d = libc::dup(fd);
        assert!(d >= 0);
        libc::close(d);
        let d = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100);
        assert!(d >= 100);
        libc::close(d);
    }
    drop(f);

    // Writes, truncate and unlink on a scratch file.
    let scratch = dir.join("scratch.bin");
    let mut w = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&scratch)
        .unwrap();
    w.write_all(&[1u8; 3000]).unwrap();
    w.write_at(&[2u8; 100], 10000).unwrap();
    w.set_len(5000).unwrap();
    drop(w);
    fs::remove_file(&scratch).unwrap();
    // A directory walk.
    assert!(fs::read_dir(dir).unwrap().count() >= 1);
    // A write on a socket is a Send.
    let (s1, s2) = std::os::unix::net::UnixStream::pair().unwrap();
    // SAFETY: write of a valid buffer on a connected socket we own.
    let n = unsafe { libc::write(s1.as_raw_fd(), b"hello".as_ptr().cast(), 5) };
    assert_eq!(n, 5);
    drop(s2);
}

const NO_TRACEFS_CHILD_ENV: &str = "PG_TRACE_EBPF_NO_TRACEFS_CHILD";

/// Not a test of its own: in a private mount namespace without tracefs or debugfs, attach
/// must work and mount nothing (the raw tracepoint needs neither). A no-op in a normal run.
#[test]
fn no_tracefs_child_helper() {
    if std::env::var_os(NO_TRACEFS_CHILD_ENV).is_none() {
        return;
    }
    // SAFETY: unshare/mount/umount2 with valid NUL-terminated strings or NULLs. The
    // namespace is this process's own; making "/" private first keeps the unmount from
    // propagating to the host.
    unsafe {
        assert_eq!(libc::unshare(libc::CLONE_NEWNS), 0, "unshare(CLONE_NEWNS)");
        assert_eq!(
            libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null()
            ),
            0,
            "make / private"
        );
        for dir in [c"/sys/kernel/debug", c"/sys/kernel/tracing"] {
            // Several mounts may be stacked: unmount until nothing is left.
            while libc::umount2(dir.as_ptr(), libc::MNT_DETACH) == 0 {}
        }
    }
    let no_tracefs = || {
        !Path::new("/sys/kernel/tracing/events").exists()
            && !Path::new("/sys/kernel/debug/tracing/events").exists()
    };
    assert!(no_tracefs(), "tracefs still mounted");
    let mut tracer = attach(&[std::process::id() as Pid]);
    assert!(no_tracefs(), "attach mounted tracefs");
    // And it traces: our own read of a file shows up.
    let dir = make_data_dir();
    let data = dir.path().join("data.bin");
    let mut buf = [0u8; 100];
    File::open(&data).unwrap().read_exact(&mut buf).unwrap();
    let data = data.to_str().unwrap().to_string();
    let mut events = Vec::new();
    assert!(poll_until(&mut tracer, &mut events, |evs| evs.iter().any(
        |e| matches!(&e.kind, EventKind::Open { path, .. } if *path == data)
    )));
}

/// With no tracefs mounted (a fresh machine), attach works and mounts nothing.
#[test]
fn works_without_tracefs() {
    let out = Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "--exact",
            "no_tracefs_child_helper",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(NO_TRACEFS_CHILD_ENV, "1")
        .stdin(Stdio::null())
        .output()
        .expect("run child");
    assert!(
        out.status.success(),
        "child failed: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A child running `child_io` in `dir`, waiting for its go byte.
fn spawn_child(dir: &Path) -> Child {
    Command::new(std::env::current_exe().expect("test binary path"))
        .args([
            "--exact",
            "child_io_helper",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD_ENV, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child test process")
}

fn go_and_wait(child: &mut Child) {
    child
        .stdin
        .take()
        .expect("child stdin")
        .write_all(b"g")
        .expect("send go");
    let status = child.wait().expect("wait child");
    assert!(status.success(), "child I/O failed: {status}");
}

fn attach(pids: &[Pid]) -> EbpfTracer {
    EbpfTracer::attach(pids)
        .unwrap_or_else(|e| panic!("eBPF tracer must load (tests run as root with BPF): {e:#}"))
}

/// Polls `tracer` into `events` until `done(events)` or the deadline.
fn poll_until(
    tracer: &mut EbpfTracer,
    events: &mut Vec<Event>,
    done: impl Fn(&[Event]) -> bool,
) -> bool {
    let start = Instant::now();
    loop {
        tracer.poll(events).expect("poll");
        if done(events) {
            return true;
        }
        if start.elapsed() >= DEADLINE {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn make_data_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("pg_trace-ebpf-")
        .tempdir()
        .expect("temp dir");
    let bytes: Vec<u8> = (0..FILE_SIZE).map(pattern).collect();
    fs::write(dir.path().join("data.bin"), bytes).expect("write data file");
    dir
}

fn describe(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| format!("  {} {:?}", e.pid, e.kind))
        .collect::<Vec<_>>()
        .join("\n")
}

fn lost_is_zero(tracer: &EbpfTracer) {
    let stats = tracer.stats();
    for (cause, n) in &stats.lost {
        assert_eq!(*n, 0, "lost events ({cause}): {:?}", stats.lost);
    }
    assert!(stats.events > 0);
}

/// Everything `child_io` did, as the tracer reported it for process `pid`.
fn expect_child_events(events: &[Event], pid: Pid, dir: &Path) {
    let mine: Vec<&EventKind> = events
        .iter()
        .filter(|e| e.pid == pid)
        .map(|e| &e.kind)
        .collect();
    let dump = || describe(events);
    let data = dir.join("data.bin");
    let data = data.to_str().unwrap();

    let fd = mine
        .iter()
        .find_map(|k| match k {
            EventKind::Open {
                syscall: Syscall::Openat,
                dirfd: None,
                path,
                flags,
                fd,
            } if path == data => {
                assert_eq!(flags & libc::O_ACCMODE, libc::O_RDONLY);
                Some(*fd)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no openat of {data}:\n{}", dump()));
    assert!(fd >= 0);
    // Events on the data file's fd, in order, up to its close.
    let on_fd: Vec<&EventKind> = mine
        .iter()
        .copied()
        .skip_while(|k| !matches!(k, EventKind::Open { path, .. } if path == data))
        .skip(1)
        .take_while(|k| !matches!(k, EventKind::Close { fd: c } if *c == fd))
        .filter(|k| match k {
            EventKind::Read { fd: f, .. }
            | EventKind::Seek { fd: f, .. }
            | EventKind::Fadvise { fd: f, .. }
            | EventKind::Dup { old_fd: f, .. } => *f == fd,
            EventKind::Stat { fd: Some(f), .. } => *f == fd,
            _ => false,
        })
        .collect();
    let expected = [
        EventKind::Seek {
            fd,
            offset: 16384,
            whence: libc::SEEK_SET,
            result: 16384,
        },
        EventKind::Read {
            syscall: Syscall::Read,
            fd,
            offset: Some(16384),
            requested: 4096,
            result: 4096,
        },
        EventKind::Read {
            syscall: Syscall::Pread64,
            fd,
            offset: Some(40960),
            requested: 8192,
            result: 8192,
        },
        EventKind::Read {
            syscall: Syscall::Readv,
            fd,
            offset: Some(16384 + 4096),
            requested: 4000,
            result: 4000,
        },
        EventKind::Read {
            syscall: Syscall::Preadv,
            fd,
            offset: Some(8192),
            requested: 1024,
            result: 1024,
        },
        EventKind::Read {
            syscall: Syscall::Preadv2,
            fd,
            offset: Some(16384 + 4096 + 4000),
            requested: 512,
            result: 512,
        },
        EventKind::Seek {
            fd,
            offset: 0,
            whence: libc::SEEK_END,
            result: FILE_SIZE as i64,
        },
        EventKind::Read {
            syscall: Syscall::Read,
            fd,
            offset: Some(FILE_SIZE as u64),
            requested: 100,
            result: 0,
        },
        EventKind::Fadvise {
            fd,
            offset: 0,
            len: 8192,
            advice: libc::POSIX_FADV_WILLNEED,
        },
    ];
    assert_eq!(
        &on_fd[..expected.len().min(on_fd.len())],
        expected.iter().collect::<Vec<_>>(),
        "events on the data file:\n{}",
        dump()
    );
    let rest = &on_fd[expected.len()..];
    assert!(
        rest.iter().any(|k| matches!(k,
            EventKind::Stat { fd: Some(f), path: None, result: 0, .. } if *f == fd)),
        "no fstat of fd {fd}:\n{}",
        dump()
    );
    assert!(
        mine.iter().any(|k| matches!(k,
            EventKind::Stat { path: Some(p), result: 0, .. } if p == data)),
        "no stat of {data}:\n{}",
        dump()
    );
    let dups: Vec<&Syscall> = rest
        .iter()
        .filter_map(|k| match k {
            EventKind::Dup {
                syscall, new_fd, ..
            } if *new_fd >= 0 => Some(syscall),
            _ => None,
        })
        .collect();
    assert_eq!(dups, [&Syscall::Dup, &Syscall::FcntlDupfd], "{}", dump());
    assert!(
        mine.iter()
            .any(|k| matches!(k, EventKind::Close { fd: c } if *c == fd)),
        "no close of fd {fd}:\n{}",
        dump()
    );

    // The scratch file: open O_CREAT, write at position 0, pwrite, ftruncate, unlink.
    let scratch = dir.join("scratch.bin");
    let scratch = scratch.to_str().unwrap();
    let wfd = mine
        .iter()
        .find_map(|k| match k {
            EventKind::Open {
                path, flags, fd, ..
            } if path == scratch && flags & libc::O_CREAT != 0 => Some(*fd),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no open of {scratch}:\n{}", dump()));
    assert!(mine.contains(&&EventKind::Write {
        syscall: Syscall::Write,
        fd: wfd,
        offset: Some(0),
        requested: 3000,
        result: 3000,
    }));
    assert!(mine.contains(&&EventKind::Write {
        syscall: Syscall::Pwrite64,
        fd: wfd,
        offset: Some(10000),
        requested: 100,
        result: 100,
    }));
    assert!(mine.contains(&&EventKind::Truncate {
        syscall: Syscall::Ftruncate,
        fd: Some(wfd),
        path: None,
        length: 5000,
        result: 0,
    }));
    assert!(
        mine.iter().any(|k| matches!(k,
            EventKind::Unlink { path, result: 0, .. } if path == scratch)),
        "no unlink of {scratch}:\n{}",
        dump()
    );
    assert!(
        mine.iter()
            .any(|k| matches!(k, EventKind::ReadDir { result, .. } if *result > 0)),
        "no getdents64:\n{}",
        dump()
    );
    assert!(
        mine.iter().any(|k| matches!(
            k,
            EventKind::Send {
                syscall: Syscall::Write,
                requested: 5,
                result: 5,
                ..
            }
        )),
        "no Send for the socket write:\n{}",
        dump()
    );
}

/// The child's whole scripted I/O is seen, with file positions from f_pos; a second,
/// untraced child doing the same I/O at the same time is not seen at all.
#[test]
fn sees_scripted_io_and_only_traced_pids() {
    let dir = make_data_dir();
    let mut traced = spawn_child(dir.path());
    let other_dir = make_data_dir();
    let mut untraced = spawn_child(other_dir.path());
    let pid = traced.id() as Pid;
    let other = untraced.id() as Pid;

    let mut tracer = attach(&[pid]);
    assert_eq!(tracer.name(), "ebpf");
    // Nothing is missed; the one note is about the resolution of pread64 times.
    let limitations = tracer.limitations();
    assert!(
        limitations.len() == 1 && limitations[0].contains("pread64 times"),
        "{limitations:?}"
    );
    go_and_wait(&mut untraced);
    go_and_wait(&mut traced);

    let mut events = Vec::new();
    let data = dir.path().join("data.bin").to_str().unwrap().to_string();
    let socket_send = |evs: &[Event]| {
        evs.iter().any(|e| {
            e.pid == pid
                && matches!(
                    &e.kind,
                    EventKind::Send {
                        syscall: Syscall::Write,
                        requested: 5,
                        ..
                    }
                )
        })
    };
    assert!(
        poll_until(&mut tracer, &mut events, socket_send),
        "the child's last call never showed up:\n{}",
        describe(&events)
    );
    expect_child_events(&events, pid, dir.path());
    assert!(
        events.iter().all(|e| e.pid == pid),
        "events of other processes (untraced child {other}):\n{}",
        describe(&events)
    );
    assert!(events
        .iter()
        .any(|e| matches!(&e.kind, EventKind::Open { path, .. } if *path == data)));
    // Timestamps are CLOCK_MONOTONIC, like trace::monotonic_ns().
    let now = pg_trace::process::clock::monotonic_ns();
    assert!(events
        .iter()
        .all(|e| e.ts_ns <= now && e.ts_ns + 60_000_000_000 > now));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.kind, EventKind::Lost { .. })),
        "{}",
        describe(&events)
    );
    lost_is_zero(&tracer);
}

/// add_pid after attach starts following a process; remove_pid and detach stop it.
#[test]
fn add_remove_pid_and_detach() {
    let dir = make_data_dir();
    let mut tracer = attach(&[]);
    let data = dir.path().join("data.bin").to_str().unwrap().to_string();
    let opened_by = |pid: Pid| {
        let data = data.clone();
        move |evs: &[Event]| {
            evs.iter().any(|e| {
                e.pid == pid && matches!(&e.kind, EventKind::Open { path, .. } if *path == data)
            })
        }
    };

    // Added later: seen.
    let mut a = spawn_child(dir.path());
    let pid_a = a.id() as Pid;
    tracer.add_pid(pid_a).expect("add_pid");
    go_and_wait(&mut a);
    let mut events = Vec::new();
    assert!(
        poll_until(&mut tracer, &mut events, opened_by(pid_a)),
        "added pid not seen:\n{}",
        describe(&events)
    );
    expect_child_events(&events, pid_a, dir.path());

    // Added, then removed before its I/O: not seen.
    let mut b = spawn_child(dir.path());
    let pid_b = b.id() as Pid;
    tracer.add_pid(pid_b).expect("add_pid");
    tracer.remove_pid(pid_b);
    // A traced process doing I/O after b's: once its events are in, b's would be too.
    let mut c = spawn_child(dir.path());
    let pid_c = c.id() as Pid;
    tracer.add_pid(pid_c).expect("add_pid");
    go_and_wait(&mut b);
    go_and_wait(&mut c);
    events.clear();
    assert!(poll_until(&mut tracer, &mut events, opened_by(pid_c)));
    // Its start-up (the loader's syscalls) may fall in the moment it was added; its own
    // I/O after removal must not be seen.
    assert!(
        !opened_by(pid_b)(&events),
        "removed pid {pid_b} still traced:\n{}",
        describe(&events)
    );

    // Detached: nothing more, even for a pid still in the list. Idempotent.
    tracer.detach();
    tracer.detach();
    tracer.poll(&mut events).expect("poll after detach");
    let mut d = spawn_child(dir.path());
    let pid_d = d.id() as Pid;
    assert!(tracer.add_pid(pid_d).is_err());
    go_and_wait(&mut d);
    events.clear();
    tracer.poll(&mut events).expect("poll after detach");
    assert!(
        !events.iter().any(|e| e.pid == pid_d),
        "events after detach:\n{}",
        describe(&events)
    );
    lost_is_zero(&tracer);
}

/// More processes than the BPF program's 16 fast slots: the rest are followed through the
/// `pids` map, and removing some of either kind leaves the others followed.
#[test]
fn more_pids_than_fast_slots() {
    let dir = make_data_dir();
    let data = dir.path().join("data.bin").to_str().unwrap().to_string();
    let opened_by = |pid: Pid| {
        let data = data.clone();
        move |evs: &[Event]| {
            evs.iter().any(|e| {
                e.pid == pid && matches!(&e.kind, EventKind::Open { path, .. } if *path == data)
            })
        }
    };
    // Pids above the kernel's maximum (4194304): never a real process.
    let fillers: Vec<Pid> = (0..20).map(|i| 5_000_000 + i).collect();
    let mut tracer = attach(&fillers);

    // Beyond the fast slots: followed through the map.
    let mut a = spawn_child(dir.path());
    let pid_a = a.id() as Pid;
    tracer.add_pid(pid_a).expect("add_pid");
    // Freeing fast slots does not stop following the pids in the map.
    for &p in &fillers[..4] {
        tracer.remove_pid(p);
    }
    // And a freed slot is reused.
    let mut b = spawn_child(dir.path());
    let pid_b = b.id() as Pid;
    tracer.add_pid(pid_b).expect("add_pid");
    go_and_wait(&mut a);
    go_and_wait(&mut b);
    let mut events = Vec::new();
    assert!(
        poll_until(&mut tracer, &mut events, |evs| opened_by(pid_a)(evs)
            && opened_by(pid_b)(evs)),
        "a and b not both seen:\n{}",
        describe(&events)
    );
    expect_child_events(&events, pid_a, dir.path());
    expect_child_events(&events, pid_b, dir.path());

    // Everything removed (fast slots and map alike), then c added: c alone is followed,
    // not d, which never was.
    for &p in &fillers[4..] {
        tracer.remove_pid(p);
    }
    let mut c = spawn_child(dir.path());
    let pid_c = c.id() as Pid;
    tracer.add_pid(pid_c).expect("add_pid");
    tracer.remove_pid(pid_a);
    tracer.remove_pid(pid_b);
    let mut d = spawn_child(dir.path());
    let pid_d = d.id() as Pid;
    go_and_wait(&mut d);
    go_and_wait(&mut c);
    events.clear();
    assert!(
        poll_until(&mut tracer, &mut events, opened_by(pid_c)),
        "c not seen:\n{}",
        describe(&events)
    );
    expect_child_events(&events, pid_c, dir.path());
    assert!(
        events.iter().all(|e| e.pid == pid_c),
        "events of other processes (d is {pid_d}):\n{}",
        describe(&events)
    );
    lost_is_zero(&tracer);
}

/// A real PostgreSQL backend: a sequential scan of a table larger than shared_buffers
/// reads the table's file with 8 KiB preads at block boundaries, and the file is opened by
/// its data-directory-relative path.
#[test]
fn postgres_backend_seq_scan() {
    let majors = support::majors();
    let major = if majors.contains(&15) { 15 } else { majors[0] };
    // shared_buffers is 16MB: a 1M-row table (~35 MB) cannot stay cached there, so the
    // scan has to read it.
    let cluster = support::Cluster::start(major);
    let mut held = cluster.hold_backend("postgres");
    let mut tracer = attach(&[held.pid]);

    held.client
        .batch_execute(
            "CREATE TABLE t AS SELECT g FROM generate_series(1,1000000) g; \
             SELECT count(*) FROM t",
        )
        .expect("CTAS + count");
    let relpath: String = held
        .client
        .query_one("SELECT pg_relation_filepath('t')", &[])
        .expect("pg_relation_filepath")
        .get(0);

    let mut events = Vec::new();
    let rel = relpath.clone();
    // The last thing the backend does: send the pg_relation_filepath result.
    let found = poll_until(&mut tracer, &mut events, move |evs| {
        relation_reads(evs, &rel).len() >= 100
            && evs.iter().any(|e| matches!(e.kind, EventKind::Send { .. }))
    });
    let reads = relation_reads(&events, &relpath);
    assert!(
        found,
        "fewer than 100 reads of {relpath}: {reads:#?}\n{}",
        describe(&events[..events.len().min(200)])
    );
    assert!(events.iter().all(|e| e.pid == held.pid));
    // Every read of the relation is whole blocks at block boundaries.
    for r in &reads {
        let EventKind::Read {
            syscall,
            offset,
            requested,
            result,
            ..
        } = r
        else {
            unreachable!()
        };
        assert!(
            matches!(syscall, Syscall::Pread64 | Syscall::Preadv),
            "{r:?}"
        );
        assert_eq!(offset.expect("offset known") % 8192, 0, "{r:?}");
        assert_eq!(requested % 8192, 0, "{r:?}");
        assert_eq!(*result, *requested as i64, "{r:?}");
    }
    if major < 17 {
        assert!(reads.iter().all(|r| matches!(
            r,
            EventKind::Read {
                syscall: Syscall::Pread64,
                requested: 8192,
                ..
            }
        )));
    }
    lost_is_zero(&tracer);
    tracer.detach();
    drop(held);
}

/// Reads of the file at `relpath` (relative to the data directory), following which path
/// each fd names as opens and closes go by.
fn relation_reads<'a>(events: &'a [Event], relpath: &str) -> Vec<&'a EventKind> {
    let mut open: std::collections::HashMap<i32, &str> = std::collections::HashMap::new();
    let mut reads = Vec::new();
    for e in events {
        match &e.kind {
            EventKind::Open {
                dirfd: None,
                path,
                fd,
                ..
            } if *fd >= 0 => {
                open.insert(*fd, path);
            }
            EventKind::Close { fd } => {
                open.remove(fd);
            }
            EventKind::Read { fd, .. } if open.get(fd) == Some(&relpath) => reads.push(&e.kind),
            _ => {}
        }
    }
    reads
}
