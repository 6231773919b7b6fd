//! A running `pg_trace -p PID --format json` whose records are read as they come, for
//! tests that must wait for pg_trace to have seen something.

use pg_trace::output::record::{
    AttachRecord, BackupRecord, FileRecord, LockWaitRecord, OperationRecord, ProcessRecord,
    ProgressRecord, QueryRecord, Record, StatsRecord, StatusRecord, SummaryRecord, WaitsRecord,
};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pg_trace");

/// A running `pg_trace --format json`, its records collected as they come.
pub struct Trace {
    pub child: Child,
    records: Arc<Mutex<Vec<Record>>>,
    reader: std::thread::JoinHandle<()>,
}

pub fn spawn_trace(pid: i32, backend: &str) -> Trace {
    spawn_trace_with(pid, backend, &[])
}

/// [`spawn_trace`] with more arguments (`--usdt-probes all`, `--no-memory`, ...).
pub fn spawn_trace_with(pid: i32, backend: &str, extra: &[&str]) -> Trace {
    spawn_trace_every(pid, backend, 200, extra)
}

/// [`spawn_trace_with`] sampling every `interval_ms`.
pub fn spawn_trace_every(pid: i32, backend: &str, interval_ms: u64, extra: &[&str]) -> Trace {
    spawn_trace_env(pid, backend, interval_ms, extra, &[])
}

/// [`spawn_trace_every`] with these variables set in pg_trace's environment.
pub fn spawn_trace_env(
    pid: i32,
    backend: &str,
    interval_ms: u64,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Trace {
    let mut child = Command::new(BIN)
        .envs(env.iter().copied())
        .args([
            "-p",
            &pid.to_string(),
            "--no-tui",
            "--format",
            "json",
            "--interval",
            &interval_ms.to_string(),
        ])
        .args(["--backend", backend])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pg_trace");
    let records = Arc::new(Mutex::new(Vec::new()));
    let stdout = child.stdout.take().unwrap();
    let sink = Arc::clone(&records);
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.expect("read pg_trace output");
            let v: Record =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad record {line}: {e}"));
            sink.lock().unwrap().push(v);
        }
    });
    Trace {
        child,
        records,
        reader,
    }
}

impl Trace {
    /// Poll the records so far until `f` holds.
    pub fn wait_for(&mut self, what: &str, f: impl Fn(&[Record]) -> bool) {
        let t = Instant::now();
        loop {
            if f(&self.records.lock().unwrap()) {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                // Its last lines may still be on their way through the reader thread.
                if !self.reader.is_finished() {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
                if f(&self.records.lock().unwrap()) {
                    return;
                }
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                let recs = self.records.lock().unwrap();
                let tail: Vec<String> = recs
                    .iter()
                    .rev()
                    .take(5)
                    .map(|r| serde_json::to_string(r).unwrap_or_default())
                    .collect();
                panic!(
                    "pg_trace exited ({st}) while waiting for {what}\nstderr: {err}\nlast records (newest first):\n{}",
                    tail.join("\n")
                );
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The records so far.
    pub fn records(&self) -> Vec<Record> {
        self.records.lock().unwrap().clone()
    }

    /// Attached and through its first interval (the startup snapshot is in).
    pub fn wait_ready(&mut self) {
        self.wait_for("the first interval", |r| {
            r.iter().any(|r| stats(r).is_some())
        });
    }

    /// Ctrl-C: pg_trace detaches, prints its summary, exits 0.
    pub fn finish(self) -> Vec<Record> {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let out = self.child.wait_with_output().expect("wait pg_trace");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "pg_trace failed: {stderr}");
        self.reader.join().unwrap();
        let records = self.records.lock().unwrap().clone();
        assert!(
            records.iter().any(|r| summary(r).is_some()),
            "no summary record"
        );
        records
    }
}

/// `fn progress(&Record) -> Option<&ProgressRecord>` and the like, for `filter_map`.
macro_rules! variant {
    ($($f:ident: $v:ident($t:ty)),* $(,)?) => {$(
        pub fn $f(r: &Record) -> Option<&$t> {
            match r {
                Record::$v(x) => Some(x),
                _ => None,
            }
        }
    )*};
}

variant!(
    attach: Attach(AttachRecord),
    operation: Operation(OperationRecord),
    file: File(FileRecord),
    progress: Progress(ProgressRecord),
    query: Query(QueryRecord),
    lock_wait: LockWait(LockWaitRecord),
    stats: Stats(StatsRecord),
    status: Status(StatusRecord),
    backup: Backup(BackupRecord),
    summary: Summary(SummaryRecord),
    process: Process(ProcessRecord),
    waits: Waits(WaitsRecord),
);

/// Records from NDJSON text, one per line.
pub fn parse_records(text: &str) -> Vec<Record> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad record {l}: {e}")))
        .collect()
}
