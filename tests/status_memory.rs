//! `pg_trace ps` reads the status array from shared memory: on every major, a backend in
//! pg_sleep, one waiting on a lock, one scanning and one idle in transaction must show the
//! same backend type, state, wait event, query and database as `pg_stat_activity` sampled
//! around our read; every other process its backend type. Hostile pids give a clear error.

mod support;

use pg_trace::output::record::{ProcessRecord, Record, StatusRecord};
use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};
use support::status::*;
use support::Cluster;

fn check(major: u32) {
    let c = Cluster::start(major);
    c.execute(
        "postgres",
        "CREATE TABLE locked_t (a int); CREATE TABLE scan_t AS SELECT g, md5(g::text) AS t \
         FROM generate_series(1, 20000) g;",
    );
    let mut holder = c.hold_backend("postgres");
    holder
        .client
        .batch_execute("BEGIN; LOCK TABLE locked_t IN ACCESS EXCLUSIVE MODE /* holder */")
        .unwrap();
    let mut sleeper = spawn_query(&c, "postgres", "", "SELECT pg_sleep(600) /* sleeper */");
    let mut waiter = spawn_query(
        &c,
        "postgres",
        "",
        "SELECT count(*) FROM locked_t /* waiter */",
    );
    let mut scanner = spawn_query(
        &c,
        "postgres",
        "",
        "SELECT count(*) FROM scan_t a, scan_t b WHERE a.t < b.t /* scanner */",
    );
    let watched = [holder.pid, sleeper.pid, waiter.pid, scanner.pid];
    wait_until("the waiter to block", Duration::from_secs(30), || {
        activity(&c)
            .get(&waiter.pid)
            .is_some_and(|r| r[2] == "Lock")
    });

    // Compare only fields that did not change between the two SQL samples around ours.
    let mut compared: HashMap<i32, usize> = HashMap::new();
    let mut strikes: HashMap<(i32, &str), u32> = HashMap::new();
    let t = Instant::now();
    while watched
        .iter()
        .any(|p| compared.get(p).copied().unwrap_or(0) < 6)
    {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "PG{major}: no stable samples for {watched:?}: {compared:?}"
        );
        let before = activity(&c);
        let ps = ps_json(c.postmaster_pid());
        let after = activity(&c);
        let ours: HashMap<i32, &ProcessRecord> = ps.iter().map(|v| (v.pid, v)).collect();
        for (pid, b) in &before {
            let Some(a) = after.get(pid) else { continue };
            let Some(v) = ours.get(pid) else {
                panic!("PG{major}: pid {pid} ({b:?}) missing from ps: {ps:?}")
            };
            let got = ps_row(v);
            let cols = [
                "backend_type",
                "state",
                "wait_event_type",
                "wait_event",
                "query",
                "database",
            ];
            for (i, col) in cols.iter().enumerate() {
                // Background workers: the view shows bgw_type; other processes: compare all.
                if b[i] == a[i] {
                    // A background process can leave a state and come back to it between
                    // the two SQL samples (the bgwriter hibernating and waking): one
                    // mismatch is that; the same one twice is a wrong read.
                    if got[i] != b[i] {
                        let n = strikes.entry((*pid, *col)).or_insert(0u32);
                        *n += 1;
                        assert!(
                            *n < 2,
                            "PG{major}: pid {pid} {col}: ps says {:?}, pg_stat_activity {:?} \
                             (twice)\nps: {v:?}",
                            got[i],
                            b[i]
                        );
                        continue;
                    }
                    if watched.contains(pid) {
                        *compared.entry(*pid).or_default() += 1;
                    }
                }
            }
        }
    }
    let ps = ps_json(c.postmaster_pid());
    let row = |pid: i32| ps.iter().find(|v| v.pid == pid).unwrap().clone();
    assert_eq!(
        row(sleeper.pid).wait_event.as_deref(),
        Some("PgSleep"),
        "PG{major}"
    );
    assert_eq!(
        row(waiter.pid).wait_event.as_deref(),
        Some("relation"),
        "PG{major}"
    );
    assert_eq!(row(waiter.pid).blocked_by, [holder.pid], "PG{major}");
    assert_eq!(
        row(holder.pid).state.as_deref(),
        Some("idle in transaction"),
        "PG{major}"
    );
    assert_eq!(
        row(scanner.pid).state.as_deref(),
        Some("active"),
        "PG{major}"
    );
    // LWLocks are named from the server's own tables.
    let mut reader =
        pg_trace::process::status::StatusReader::open(c.postmaster_pid(), major).unwrap();
    let mut s = pg_trace::process::status::StatusSample {
        major,
        ..Default::default()
    };
    // WALWriteLock is individual LWLock 8 in every major.
    pg_trace::process::status::set_wait(&mut s, Some(0x0100_0008));
    reader.name_lwlock(&mut s, c.postmaster_pid());
    let want = match major {
        12 => "WALWriteLock",
        13..=16 => "WALWrite",
        _ => "WALWrite",
    };
    assert_eq!(s.wait_event.as_deref(), Some(want), "PG{major}");
    // Builtin tranches (13+): BufferMapping is among them, right after the individual
    // locks and a handful of SLRU tranches.
    if major >= 13 {
        let named: Vec<String> = (0..200u32)
            .filter_map(|id| {
                let mut s = pg_trace::process::status::StatusSample {
                    major,
                    ..Default::default()
                };
                pg_trace::process::status::set_wait(&mut s, Some(0x0100_0000 | id));
                reader.name_lwlock(&mut s, c.postmaster_pid());
                s.wait_event
            })
            .collect();
        for n in [
            "BufferMapping",
            "LockManager",
            "WALInsert",
            "BufferContent",
            "ProcArray",
        ] {
            assert!(
                named.iter().any(|x| x == n),
                "PG{major}: no LWLock {n} in {named:?}"
            );
        }
    }
    for b in [&mut waiter, &mut sleeper, &mut scanner] {
        b.terminate(&c);
    }
    drop(holder);
}

#[test]
fn ps_matches_pg_stat_activity() {
    support::on_every_major(check);
}

#[test]
fn ps_on_hostile_pids() {
    // Not postgres: a plain process of ours.
    let mut child = Command::new("sleep").arg("30").spawn().unwrap();
    let out = Command::new(BIN)
        .args(["ps", "-p", &child.id().to_string()])
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("pg_trace: error:") && err.lines().count() == 1,
        "{err}"
    );
    assert!(err.contains("not a PostgreSQL process"), "{err}");
    // Gone.
    let out = Command::new(BIN)
        .args(["ps", "-p", "999999999"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.lines().count() == 1 && !err.contains("panicked"),
        "{err}"
    );
}

/// Backends that come and go while `ps` reads them (slots torn mid-read, processes gone
/// before their wait event is read): every run succeeds with well-formed records.
#[test]
fn ps_while_backends_churn() {
    let major = *support::majors().last().unwrap();
    let c = Cluster::start(major);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn: Vec<_> = (0..2)
        .map(|_| {
            let stop = std::sync::Arc::clone(&stop);
            let sock = c.sockdir.clone();
            let port = c.port;
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(mut cl) = postgres::Config::new()
                        .host_path(&sock)
                        .port(port)
                        .user("postgres")
                        .dbname("postgres")
                        .connect(postgres::NoTls)
                    {
                        let _ = cl.batch_execute("SELECT pg_sleep(0.01)");
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    // Let the churn get going first.
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        let out = Command::new(BIN)
            .args([
                "ps",
                "-p",
                &c.postmaster_pid().to_string(),
                "--format",
                "json",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "PG{major}: ps failed: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            let v: Record = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            assert!(matches!(v, Record::Process(ref p) if p.pid > 0), "{v:?}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sessions: i32 = churn.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(sessions > 0, "no session came and went");
}

/// The logger detaches from shared memory: tracing it says once that there is no status
/// from memory and carries on with what /proc tells.
#[test]
fn no_shared_memory_degrades_to_proc() {
    let major = *support::majors().last().unwrap();
    let c = Cluster::start_with(major, &[("logging_collector", "on")]);
    let mut logger = 0;
    wait_until("the logger", Duration::from_secs(30), || {
        logger = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .find(|&p| {
                pg_trace::process::proc::parent_pid(p) == Some(c.postmaster_pid())
                    && std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                        .is_ok_and(|t| t.contains("logger"))
            })
            .unwrap_or(0);
        logger != 0
    });
    let out = Command::new(BIN)
        .args(["-p", &logger.to_string(), "--no-tui", "--format", "json"])
        .args(["--interval", "200", "--duration", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "PG{major}: {stderr}");
    let notes: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("no status from memory"))
        .collect();
    assert_eq!(notes.len(), 1, "PG{major}: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let records = support::trace::parse_records(&stdout);
    let statuses: Vec<&StatusRecord> = records.iter().filter_map(support::trace::status).collect();
    assert!(statuses.len() >= 2, "PG{major}: {stdout}");
    assert!(
        statuses.iter().all(|s| s.kernel_state.is_some()),
        "{stdout}"
    );
}
