//! Reads submitted through io_uring, captured by the eBPF tracer (run as root): PostgreSQL 18
//! with io_method=io_uring reads its data files that way, and no read system call of its own
//! moves the data. The PostgreSQL builds here lack liburing, so `fio --ioengine=io_uring`
//! (Debian's fio, installed by scripts/setup.sh) reads a file of known layout; fio logs every
//! I/O it issues (`--write_iolog`), and each one must be captured once, with its offset and
//! length, on the file fio opened, the bytes adding up to fio's own total. Cases: buffered
//! sequential (page cache dropped first: completions from io-wq or task work), direct random
//! at queue depth 8, vectored reads (READV), registered buffers and files (READ_FIXED on a
//! fixed-file index, named through the process's descriptors), SQPOLL (submitted by the
//! kernel's poll thread, not by fio), and direct writes (WRITE, captured as writes).
//!
//! fio runs with `--thread`, so its job is a thread of the traced process; it is started by
//! `sh -c 'read go; exec fio …'`, which keeps its pid through the exec, so the tracer is
//! attached before fio's first instruction. The library API is driven directly: there is no
//! CLI for tracing a non-PostgreSQL process.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pg_trace::trace::ebpf::EbpfTracer;
use pg_trace::trace::{Event, EventKind, Pid, Syscall, Tracer};

const BLOCK: u64 = 8192;
const BLOCKS: u64 = 160;
const DEADLINE: Duration = Duration::from_secs(60);

/// One read as fio logged it, or as it was captured.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Io {
    path: String,
    offset: u64,
    len: u64,
}

/// fio's `--write_iolog` (version 3: `TIME FILE read|write OFFSET LEN`), its I/Os of
/// direction `dir` in issue order.
fn iolog_ios(text: &str, dir: &str) -> Vec<Io> {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("fio version 3 iolog"), "{text}");
    lines
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 5 && f[2] == dir).then(|| Io {
                path: f[1].to_string(),
                offset: f[3].parse().unwrap(),
                len: f[4].parse().unwrap(),
            })
        })
        .collect()
}

/// `jobs[0].<dir>.io_bytes` of fio's JSON output.
fn fio_bytes(json: &str, dir: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"));
    v["jobs"][0][dir]["io_bytes"]
        .as_u64()
        .unwrap_or_else(|| panic!("no {dir} io_bytes in {json}"))
}

struct Captured {
    reads: Vec<(Syscall, Io, i64)>,
    lost: Vec<(String, u64)>,
}

/// Runs fio with `args` on a fresh file, traced from its first instruction; returns what
/// fio logged, its byte total and what was captured. None (said loudly) when this kernel
/// has no io_uring tracepoints to capture from.
fn run(name: &str, args: &[&str], dir_name: &str) -> Option<(Vec<Io>, u64, Captured)> {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("io_uring_capture-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = RemoveDir(dir.clone());
    let data = dir.join("data.bin");
    let content: Vec<u8> = (0..BLOCK * BLOCKS).map(|i| (i % 251) as u8).collect();
    std::fs::write(&data, content).unwrap();
    let log = dir.join("iolog");
    let out = dir.join("out.json");

    let mut fio_args: Vec<String> = [
        "--name=job",
        "--thread",
        "--ioengine=io_uring",
        "--bs=8k",
        "--invalidate=1",
        "--output-format=json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    fio_args.push(format!("--filename={}", data.display()));
    fio_args.push(format!("--size={}", BLOCK * BLOCKS));
    fio_args.push(format!("--write_iolog={}", log.display()));
    fio_args.push(format!("--output={}", out.display()));
    fio_args.extend(args.iter().map(|s| s.to_string()));

    assert!(
        Command::new("fio")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "fio is not installed: run scripts/setup.sh (it installs Debian's fio)"
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("read go; exec fio \"$@\"")
        .arg("sh")
        .args(&fio_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    let pid = child.id() as Pid;
    let mut tracer = match EbpfTracer::attach(&[pid]) {
        Ok(t) => t,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("eBPF must load here (root, BTF): {e:#}");
        }
    };
    if let Err(why) = tracer.io_uring_capture() {
        let _ = child.kill();
        let _ = child.wait();
        support::skip(&format!("io_uring capture ({name})"), &why);
        return None;
    }
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"go\n")
        .expect("start fio");

    let mut events: Vec<Event> = Vec::new();
    let start = Instant::now();
    let mut exited = false;
    while !exited {
        assert!(
            start.elapsed() < DEADLINE,
            "fio {name} did not end in {DEADLINE:?}"
        );
        let mut batch = Vec::new();
        tracer.poll(&mut batch).unwrap();
        exited = batch
            .iter()
            .any(|e| e.pid == pid && matches!(e.kind, EventKind::Exit { .. }));
        events.extend(batch);
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = child.wait_with_output().unwrap();
    assert!(
        status.status.success(),
        "fio {name} failed: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    let lost = tracer
        .stats()
        .lost
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    tracer.detach();

    // The descriptors fio opened, in order, and the reads on them.
    let mut fds: BTreeMap<i32, String> = BTreeMap::new();
    let mut reads = Vec::new();
    for e in events.iter().filter(|e| e.pid == pid) {
        match &e.kind {
            EventKind::Open { path, fd, .. } if *fd >= 0 => {
                fds.insert(*fd, path.clone());
            }
            EventKind::Close { fd } => {
                fds.remove(fd);
            }
            EventKind::Read {
                syscall,
                fd,
                offset,
                requested,
                result,
            }
            | EventKind::Write {
                syscall,
                fd,
                offset,
                requested,
                result,
            } if syscall.is_io_uring() => {
                let path = fds.get(fd).unwrap_or_else(|| {
                    panic!("{name}: {syscall:?} on fd {fd}, which fio did not open")
                });
                let offset =
                    offset.unwrap_or_else(|| panic!("{name}: {syscall:?} without an offset"));
                reads.push((
                    *syscall,
                    Io {
                        path: path.clone(),
                        offset,
                        len: *requested,
                    },
                    *result,
                ));
            }
            _ => {}
        }
    }
    let logged = iolog_ios(&std::fs::read_to_string(&log).unwrap(), dir_name);
    let total = fio_bytes(&std::fs::read_to_string(&out).unwrap(), dir_name);
    Some((logged, total, Captured { reads, lost }))
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every read fio logged is captured once, with its offset and length, on the file fio
/// named, as `op`, each complete; the bytes are fio's total, the whole file. `in_order`:
/// queue depth 1, so completions come in issue order.
fn check(name: &str, args: &[&str], op: Syscall, in_order: bool) {
    let dir = if op.is_write() { "write" } else { "read" };
    let Some((logged, total, got)) = run(name, args, dir) else {
        return;
    };
    let data = logged.first().map(|io| io.path.clone()).unwrap_or_default();
    assert!(data.ends_with("data.bin"), "{name}: fio logged {logged:?}");
    assert_eq!(
        logged.len() as u64,
        BLOCKS,
        "{name}: fio did every block once"
    );
    assert_eq!(total, BLOCK * BLOCKS, "{name}: fio's own total");
    assert!(got.lost.is_empty(), "{name}: events lost: {:?}", got.lost);
    for (syscall, io, result) in &got.reads {
        assert_eq!(*syscall, op, "{name}: {io:?}");
        assert_eq!(io.path, data, "{name}");
        assert_eq!(
            *result, io.len as i64,
            "{name}: a short or failed read {io:?}"
        );
    }
    let mut captured: Vec<Io> = got.reads.iter().map(|(_, io, _)| io.clone()).collect();
    if in_order {
        assert_eq!(captured, logged, "{name}: reads in issue order");
    }
    let mut want = logged.clone();
    captured.sort();
    want.sort();
    assert_eq!(captured, want, "{name}: every read, once");
    let bytes: u64 = got.reads.iter().map(|(_, _, r)| *r as u64).sum();
    assert_eq!(bytes, total, "{name}: bytes captured vs fio's total");
    // Sequential: the offsets are the file's blocks in order.
    if args.contains(&"--rw=read") || args.contains(&"--rw=write") {
        let offsets: Vec<u64> = got.reads.iter().map(|(_, io, _)| io.offset).collect();
        let mut sorted = offsets.clone();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (0..BLOCKS).map(|b| b * BLOCK).collect::<Vec<_>>(),
            "{name}"
        );
    }
    eprintln!(
        "{name}: {} {dir}s, {bytes} bytes, as fio logged them",
        got.reads.len()
    );
}

#[test]
fn buffered_sequential() {
    check(
        "buffered_sequential",
        &["--rw=read", "--direct=0", "--iodepth=1"],
        Syscall::IoUringRead,
        true,
    );
}

#[test]
fn direct_random() {
    check(
        "direct_random",
        &["--rw=randread", "--direct=1", "--iodepth=8"],
        Syscall::IoUringRead,
        false,
    );
}

#[test]
fn vectored() {
    check(
        "vectored",
        &[
            "--rw=randread",
            "--direct=1",
            "--iodepth=4",
            "--nonvectored=0",
        ],
        Syscall::IoUringReadv,
        false,
    );
}

/// Registered buffers (READ_FIXED) on a registered file: the SQE names the file by its
/// index in the ring's table, the capture by the descriptor fio still holds.
#[test]
fn registered_files_and_buffers() {
    check(
        "registered_files_and_buffers",
        &[
            "--rw=randread",
            "--direct=1",
            "--iodepth=4",
            "--fixedbufs",
            "--registerfiles",
        ],
        Syscall::IoUringReadFixed,
        false,
    );
}

/// Writes through the ring are writes, at their offsets.
#[test]
fn direct_writes() {
    check(
        "direct_writes",
        &["--rw=write", "--direct=1", "--iodepth=4"],
        Syscall::IoUringWrite,
        false,
    );
}

/// SQPOLL: the kernel's poll thread submits; it is a thread of fio's process.
#[test]
fn sqpoll() {
    check(
        "sqpoll",
        &[
            "--rw=read",
            "--direct=1",
            "--iodepth=1",
            "--sqthread_poll=1",
        ],
        Syscall::IoUringRead,
        true,
    );
}
