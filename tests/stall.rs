//! Stall verdicts on real situations, on every major: pg_sleep → sleeping; a LOCK TABLE
//! conflict → waiting on the lock, naming the table and the holder; the holder → idle in
//! transaction; a scan → reading (naming the table); BASE_BACKUP with MAX_RATE →
//! throttled; a replication client that stops reading (and, on 15, a SIGSTOPped
//! pg_basebackup) → blocked sending to a client that is not reading.

mod support;

use pg_trace::model::stall::Verdict;
use pg_trace::output::record::StatusRecord;
use std::process::Command;
use std::time::{Duration, Instant};
use support::status::*;
use support::trace::{spawn_trace_with, status, Trace};
use support::Cluster;

/// Wait for a status record whose verdict_kind is `kind`; on timeout, show the last ones.
fn wait_verdict(t: &mut Trace, kind: &str, what: &str) -> StatusRecord {
    wait_verdict_with(t, kind, what, |_| true)
}

fn wait_verdict_with(
    t: &mut Trace,
    kind: &str,
    what: &str,
    f: impl Fn(&StatusRecord) -> bool,
) -> StatusRecord {
    let start = Instant::now();
    loop {
        let recs = t.records();
        if let Some(r) = recs
            .iter()
            .filter_map(status)
            .find(|r| r.verdict_kind == kind && f(r))
        {
            return r.clone();
        }
        if start.elapsed() > Duration::from_secs(30) {
            let last: Vec<&StatusRecord> = recs.iter().filter_map(status).rev().take(3).collect();
            panic!("{what}: no {kind} verdict; last status records: {last:#?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

static SCAN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn watch(pid: i32) -> Trace {
    spawn_trace_with(pid, "auto", &[])
}

fn check(major: u32) {
    let t0 = Instant::now();
    let c = Cluster::start_with(major, &[("shared_buffers", "1MB")]);
    c.execute(
        "postgres",
        "CREATE TABLE locked_t (a int); CREATE TABLE rowlock AS SELECT 1 AS a; \
         CREATE TABLE big AS SELECT g, repeat(md5(g::text), 8) AS pad \
         FROM generate_series(1, 60000) g;",
    );
    // Names are read from the on-disk catalog, which a checkpoint brings up to date.
    c.execute("postgres", "CHECKPOINT");
    let m = format!("PG{major}");

    // pg_sleep.
    let mut sleeper = spawn_query(&c, "postgres", "", "SELECT pg_sleep(600)");
    wait_until("pg_sleep", Duration::from_secs(30), || {
        activity(&c)
            .get(&sleeper.pid)
            .is_some_and(|r| r[3] == "PgSleep")
    });
    let mut t = watch(sleeper.pid);
    let r = wait_verdict(&mut t, "sleeping", &m);
    assert_eq!(r.verdict, "sleeping (pg_sleep)");
    t.finish();
    sleeper.terminate(&c);

    // A lock conflict: the waiter names the table and the holder; the holder is idle in
    // transaction.
    let mut holder = c.hold_backend("postgres");
    holder
        .client
        .batch_execute("BEGIN; LOCK TABLE locked_t IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let mut waiter = spawn_query(&c, "postgres", "", "SELECT count(*) FROM locked_t");
    wait_until("the lock wait", Duration::from_secs(30), || {
        activity(&c)
            .get(&waiter.pid)
            .is_some_and(|r| r[2] == "Lock")
    });
    let mut t = watch(waiter.pid);
    let r = wait_verdict(&mut t, "waiting_on_lock", &m);
    let Verdict::WaitingOnLock {
        relation,
        holders,
        holders_guessed,
        ..
    } = &r.verdict_detail
    else {
        panic!("{m}: {r:#?}");
    };
    assert_eq!(relation.as_deref(), Some("public.locked_t"), "{m}: {r:#?}");
    assert_eq!(holders, &[holder.pid], "{m}: {r:#?}");
    assert!(!holders_guessed, "{m}");
    let text = &r.verdict;
    assert!(
        text.contains("public.locked_t") && text.contains(&format!("held by pid {}", holder.pid)),
        "{m}: {text}"
    );
    t.finish();
    let mut t = watch(holder.pid);
    wait_verdict(&mut t, "idle_in_transaction", &m);
    t.finish();
    waiter.terminate(&c);
    drop(holder);

    // A row lock: the second UPDATE waits for the first one's transaction id.
    let mut holder = c.hold_backend("postgres");
    holder
        .client
        .batch_execute("BEGIN; UPDATE rowlock SET a = a + 1")
        .unwrap();
    let mut waiter = spawn_query(&c, "postgres", "", "UPDATE rowlock SET a = a + 1");
    wait_until("the row lock wait", Duration::from_secs(30), || {
        activity(&c)
            .get(&waiter.pid)
            .is_some_and(|r| r[3] == "transactionid")
    });
    let mut t = watch(waiter.pid);
    let r = wait_verdict(&mut t, "waiting_on_lock", &m);
    let Verdict::WaitingOnLock { lock, holders, .. } = &r.verdict_detail else {
        panic!("{m}: {r:#?}");
    };
    assert_eq!(lock, "transactionid", "{m}: {r:#?}");
    assert_eq!(holders, &[holder.pid], "{m}: {r:#?}");
    t.finish();
    waiter.terminate(&c);
    drop(holder);

    // A scan bigger than shared_buffers: every pass reads the file again. One major at a
    // time: a CPU-bound scan per major and a tracer following its every read would
    // swamp two cores.
    let guard = SCAN.lock().unwrap_or_else(|e| e.into_inner());
    let mut scanner = spawn_query(
        &c,
        "postgres",
        "",
        "DO $$ BEGIN FOR i IN 1..100000 LOOP PERFORM count(*) FROM big; END LOOP; END $$",
    );
    let mut t = watch(scanner.pid);
    wait_verdict_with(&mut t, "reading", &m, |r| r.verdict.contains("public.big"));
    t.finish();
    scanner.terminate(&c);
    drop(guard);

    // MAX_RATE.
    let bb = BaseBackup::start(
        &c,
        BackupOpts {
            max_rate_kb: Some(32),
            estimate: true,
            ..Default::default()
        },
    );
    let mut t = watch(bb.walsender);
    wait_verdict(&mut t, "throttled", &m);
    t.finish();
    bb.cancel(&c);

    // A client that stops reading.
    let bb = BaseBackup::start(&c, BackupOpts::default());
    bb.set_reading(false);
    let ws = bb.walsender;
    wait_until(
        "the walsender to block on the client",
        Duration::from_secs(60),
        || activity(&c).get(&ws).is_some_and(|r| r[3] == "ClientWrite"),
    );
    let mut t = watch(ws);
    let r = wait_verdict(&mut t, "client_not_reading", &m);
    assert!(r.send_queue.is_some_and(|q| q > 0), "{m}: {r:#?}");
    t.finish();
    bb.cancel(&c);

    // A spread checkpoint with dirty buffers to write: the checkpointer naps 100 ms per
    // buffer, so the backup waits for it for seconds.
    c.execute(
        "postgres",
        "CREATE TABLE dirty AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 800) g",
    );
    let r = Replication::connect(&c);
    let mut t = watch(r.walsender);
    t.wait_ready();
    let bb = r.base_backup(
        major,
        BackupOpts {
            spread_checkpoint: true,
            max_rate_kb: Some(32),
            estimate: true,
            ..Default::default()
        },
    );
    wait_verdict(&mut t, "waiting_for_checkpoint", &m);
    t.finish();
    bb.cancel(&c);

    if major == 15 {
        stopped_pg_basebackup(&c);
    }
    eprintln!("PG{major}: stall scenarios took {:?}", t0.elapsed());
}

/// The issue's own case: a real pg_basebackup, SIGSTOPped.
fn stopped_pg_basebackup(c: &Cluster) {
    let bin = c.bin_dir().join("pg_basebackup");
    if !bin.is_file() {
        support::skip(
            &format!("stopped_pg_basebackup on PG{}", c.major),
            &format!("no pg_basebackup in {}", c.bin_dir().display()),
        );
        return;
    }
    let target = tempfile::tempdir().unwrap();
    let mut child = Command::new(&bin)
        .args(["-h", c.sockdir.to_str().unwrap(), "-p", &c.port.to_string()])
        // Paced, so it is still streaming when stopped below.
        .args([
            "-U", "postgres", "-X", "none", "-Ft", "-c", "fast", "-r", "1M", "-D",
        ])
        .arg(target.path().join("out"))
        .env_remove("PGPASSWORD")
        .spawn()
        .expect("pg_basebackup");
    let mut ws = 0;
    wait_until("pg_basebackup's walsender", Duration::from_secs(30), || {
        let rows = c.psql(
            "postgres",
            // Inside BASE_BACKUP: stopped before it, the walsender would only wait
            // idle for the command.
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'walsender' \
             AND state = 'active' AND query LIKE 'BASE_BACKUP%'",
        );
        ws = rows
            .first()
            .and_then(|r| r[0].as_deref())
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        ws != 0
    });
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGSTOP) };
    let mut t = watch(ws);
    let r = wait_verdict(&mut t, "client_not_reading", "PG15 pg_basebackup");
    assert!(r.send_queue.is_some_and(|q| q > 0), "{r:#?}");
    t.finish();
    // SAFETY: as above.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGKILL);
        libc::kill(child.id() as i32, libc::SIGCONT);
    }
    let _ = child.wait();
}

#[test]
fn stall_verdicts() {
    support::on_every_major(check);
}
