//! Helpers for the status tests: backends kept busy in a known way (sleeping, waiting on a
//! lock, scanning), `pg_stat_activity` / `pg_stat_progress_basebackup` over SQL, the
//! `pg_trace ps` runner, and a tiny raw-protocol replication client that runs
//! `BASE_BACKUP` and can stop reading (the "client not reading" situation).

use super::Cluster;
use pg_trace::output::record::{ProcessRecord, Record};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_pg_trace");

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A backend running one statement on its own thread.
pub struct Busy {
    pub pid: i32,
    pub handle: Option<JoinHandle<Result<(), String>>>,
}

/// Run `setup` then, on a thread, `sql` in a new session.
pub fn spawn_query(c: &Cluster, db: &str, setup: &str, sql: &str) -> Busy {
    let mut held = c.hold_backend(db);
    if !setup.is_empty() {
        held.client.batch_execute(setup).expect("setup SQL");
    }
    let sql = sql.to_string();
    let handle = std::thread::spawn(move || {
        held.client
            .batch_execute(&sql)
            .map_err(|e| format!("{e}"))
            .map(|_| ())
    });
    Busy {
        pid: held.pid,
        handle: Some(handle),
    }
}

impl Busy {
    pub fn terminate(&mut self, c: &Cluster) {
        let _ = c
            .connect("postgres")
            .execute("SELECT pg_terminate_backend($1)", &[&self.pid]);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// pg_stat_activity by pid: backend_type, state, wait_event_type, wait_event, query,
/// datname (NULLs as empty strings).
pub fn activity(c: &Cluster) -> HashMap<i32, Vec<String>> {
    let rows = c.psql(
        "postgres",
        "SELECT pid, backend_type, state, wait_event_type, wait_event, query, datname \
         FROM pg_stat_activity WHERE pid <> pg_backend_pid()",
    );
    rows.into_iter()
        .map(|r| {
            let pid = r[0].as_deref().unwrap().parse().unwrap();
            (
                pid,
                r[1..]
                    .iter()
                    .map(|v| v.clone().unwrap_or_default())
                    .collect(),
            )
        })
        .collect()
}

/// `pg_trace ps --format json` through `via` (a pid of the cluster).
pub fn ps_json(via: i32) -> Vec<ProcessRecord> {
    let out = Command::new(BIN)
        .args(["ps", "-p", &via.to_string(), "--format", "json"])
        .output()
        .expect("run pg_trace ps");
    assert!(
        out.status.success(),
        "pg_trace ps failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| match serde_json::from_str(l) {
            Ok(Record::Process(p)) => Some(p),
            // Printed first while a low-level backup runs: not a process.
            Ok(Record::ServerBackup(_)) => None,
            other => panic!("ps line {l}: {other:?}"),
        })
        .collect()
}

/// The same columns from a `ps` record.
pub fn ps_row(v: &ProcessRecord) -> Vec<String> {
    [
        &v.backend_type,
        &v.state,
        &v.wait_event_type,
        &v.wait_event,
        &v.query,
        &v.database,
    ]
    .iter()
    .map(|k| k.as_deref().unwrap_or("").to_string())
    .collect()
}

/// (phase, backup_total, backup_streamed, tablespaces_total, tablespaces_streamed) from
/// `pg_stat_progress_basebackup`, NULL total as -1.
pub fn basebackup_progress(c: &Cluster, pid: i32) -> Option<(String, i64, i64, i64, i64)> {
    let rows = c.psql(
        "postgres",
        &format!(
            "SELECT phase, coalesce(backup_total, -1), backup_streamed, tablespaces_total, \
             tablespaces_streamed FROM pg_stat_progress_basebackup WHERE pid = {pid}"
        ),
    );
    let r = rows.into_iter().next()?;
    let n = |i: usize| r[i].as_deref().unwrap_or("-1").parse::<i64>().unwrap();
    Some((r[0].clone().unwrap_or_default(), n(1), n(2), n(3), n(4)))
}

/// A replication connection running BASE_BACKUP, reading (and discarding) on a thread
/// until told to stop reading.
pub struct BaseBackup {
    pub walsender: i32,
    /// Keeps the connection open after the backup, until dropped.
    _conn: Option<UnixStream>,
    reading: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<u64, String>>>,
}

fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn read_msg(s: &mut UnixStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 5];
    s.read_exact(&mut h)?;
    let len = u32::from_be_bytes(h[1..5].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len.saturating_sub(4)];
    s.read_exact(&mut body)?;
    Ok((h[0], body))
}

/// BASE_BACKUP options.
#[derive(Clone, Copy, Default)]
pub struct BackupOpts {
    /// MAX_RATE in kB/s (None: unthrottled).
    pub max_rate_kb: Option<u32>,
    /// PROGRESS (the size estimate); pg_basebackup's default, off with --no-estimate-size.
    pub estimate: bool,
    /// WAL: include the WAL (pg_basebackup -X fetch).
    pub wal: bool,
    /// WAIT for WAL archiving.
    pub wait: bool,
    /// A spread checkpoint instead of pg_basebackup's `-c fast`.
    pub spread_checkpoint: bool,
}

/// A replication connection, before BASE_BACKUP: its walsender can be attached first.
pub struct Replication {
    pub walsender: i32,
    s: UnixStream,
}

impl Replication {
    pub fn connect(c: &Cluster) -> Replication {
        let path = c.sockdir.join(format!(".s.PGSQL.{}", c.port));
        let mut s = UnixStream::connect(&path).expect("connect replication socket");
        let mut body = 196608u32.to_be_bytes().to_vec();
        for (k, v) in [
            ("user", "postgres"),
            ("replication", "true"),
            ("application_name", "pg_trace_test_backup"),
        ] {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut startup = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        startup.extend_from_slice(&body);
        s.write_all(&startup).unwrap();
        let mut walsender = 0;
        loop {
            let (k, b) = read_msg(&mut s).expect("startup reply");
            match k {
                b'K' => walsender = i32::from_be_bytes(b[0..4].try_into().unwrap()),
                b'Z' => break,
                b'E' => panic!(
                    "replication connection refused: {}",
                    String::from_utf8_lossy(&b)
                ),
                _ => {}
            }
        }
        Replication { walsender, s }
    }

    /// Send BASE_BACKUP (the new syntax on 15+, the legacy one before) and read the
    /// result on a thread.
    pub fn base_backup(self, major: u32, o: BackupOpts) -> BaseBackup {
        let Replication { walsender, mut s } = self;
        let cmd = if major >= 15 {
            let mut opts = vec![
                "LABEL 'pg_trace test'".to_string(),
                format!(
                    "CHECKPOINT '{}'",
                    if o.spread_checkpoint {
                        "spread"
                    } else {
                        "fast"
                    }
                ),
            ];
            if o.estimate {
                opts.push("PROGRESS".into());
            }
            if o.wal {
                opts.push("WAL".into());
            }
            opts.push(format!("WAIT {}", o.wait));
            if let Some(r) = o.max_rate_kb {
                opts.push(format!("MAX_RATE {r}"));
            }
            format!("BASE_BACKUP ({})", opts.join(", "))
        } else {
            let mut c = "BASE_BACKUP LABEL 'pg_trace test'".to_string();
            if !o.spread_checkpoint {
                c.push_str(" FAST");
            }
            if o.estimate {
                c.push_str(" PROGRESS");
            }
            if o.wal {
                c.push_str(" WAL");
            }
            if !o.wait {
                c.push_str(" NOWAIT");
            }
            if let Some(r) = o.max_rate_kb {
                c.push_str(&format!(" MAX_RATE {r}"));
            }
            c
        };
        let mut q = cmd.into_bytes();
        q.push(0);
        s.write_all(&msg(b'Q', &q)).unwrap();
        let keep = s.try_clone().ok();
        let reading = Arc::new(AtomicBool::new(true));
        let r2 = Arc::clone(&reading);
        let handle = std::thread::spawn(move || {
            let mut total = 0u64;
            loop {
                while !r2.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(20));
                }
                match read_msg(&mut s) {
                    Ok((b'd', b)) => total += b.len() as u64,
                    Ok((b'Z', _)) => return Ok(total),
                    Ok((b'E', b)) => return Err(String::from_utf8_lossy(&b).into_owned()),
                    Ok(_) => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
        });
        BaseBackup {
            walsender,
            _conn: keep,
            reading,
            handle: Some(handle),
        }
    }
}

impl BaseBackup {
    /// Connect and start at once.
    pub fn start(c: &Cluster, o: BackupOpts) -> BaseBackup {
        Replication::connect(c).base_backup(c.major, o)
    }

    pub fn set_reading(&self, on: bool) {
        self.reading.store(on, Ordering::Relaxed);
    }

    /// Read to the end; the bytes of CopyData received.
    pub fn finish(mut self) -> Result<u64, String> {
        self.set_reading(true);
        self.handle.take().unwrap().join().unwrap()
    }

    pub fn cancel(mut self, c: &Cluster) {
        let _ = c
            .connect("postgres")
            .execute("SELECT pg_terminate_backend($1)", &[&self.walsender]);
        self.set_reading(true);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
