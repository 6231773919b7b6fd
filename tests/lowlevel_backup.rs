//! The server's side of a low-level backup, on real clusters of every major: a session
//! holds a non-exclusive `pg_backup_start` (`pg_start_backup` on 12–14) and `pg_trace ps`
//! (JSON and text, by pid and by --pgdata) and the picker's cluster row report it, its
//! start LSN equal to what the function returned, its session and label; then
//! `pg_backup_stop` waits on an archive_command that fails until the test allows it:
//! phase `waiting for wal archiving to finish` with a backlog; allowed, the backup is gone.

mod support;

use pg_trace::output::record::{LowLevelBackupRecord, Record};
use pg_trace::process::list::Lister;
use std::process::Command;
use std::time::{Duration, Instant};
use support::Cluster;

const BIN: &str = env!("CARGO_BIN_EXE_pg_trace");

/// `pg_trace ps` with these arguments: its stdout, checked to have succeeded cleanly.
fn ps(args: &[&str]) -> String {
    let out = Command::new(BIN).arg("ps").args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ps {args:?} failed: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `server_backup` record of `ps --format json`, if any.
fn server_backup(args: &[&str]) -> Option<LowLevelBackupRecord> {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let out = ps(&all);
    let mut found = None;
    for l in out.lines() {
        match serde_json::from_str::<Record>(l).unwrap_or_else(|e| panic!("{l}: {e}")) {
            Record::ServerBackup(b) => {
                assert!(found.is_none(), "two server_backup records: {out}");
                found = Some(b);
            }
            Record::Process(_) => {}
            other => panic!("unexpected record from ps: {other:?}"),
        }
    }
    found
}

/// Poll `cond` on `ps -p PID` until it holds (30 s at most).
fn wait_for(
    c: &Cluster,
    what: &str,
    cond: impl Fn(&Option<LowLevelBackupRecord>) -> bool,
) -> Option<LowLevelBackupRecord> {
    let pm = c.postmaster_pid().to_string();
    let t = Instant::now();
    loop {
        let b = server_backup(&["-p", &pm]);
        if cond(&b) {
            return b;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "PG{}: never {what}; last: {b:#?}\n{}",
            c.major,
            c.log_tail(20)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn check(major: u32) {
    // archive_mode needs a restart, archive_command only a reload: set it once the
    // cluster (and so a directory its user may write) exists.
    let c = Cluster::start_with(major, &[("archive_mode", "on")]);
    let dir = c.make_dir("archive");
    let allow = dir.join("allow");
    let cmd = format!("test -f {} && cp %p {}/%f", allow.display(), dir.display());
    c.execute(
        "postgres",
        &format!("ALTER SYSTEM SET archive_command = '{cmd}'"),
    );
    c.execute("postgres", "SELECT pg_reload_conf()");
    assert!(server_backup(&["--pgdata", c.datadir.to_str().unwrap()]).is_none());

    let mut held = c.hold_backend("postgres");
    let (start, stop) = if major >= 15 {
        (
            "SELECT pg_backup_start('lowlevel ''test''', true)",
            "SELECT lsn FROM pg_backup_stop(true)",
        )
    } else {
        (
            "SELECT pg_start_backup('lowlevel ''test''', true, false)",
            "SELECT lsn FROM pg_stop_backup(false, true)",
        )
    };
    let rows = held.client.simple_query(start).unwrap();
    let returned = rows
        .iter()
        .find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .expect("the start function returns an LSN");

    // Running: by --pgdata and by pid, JSON and text.
    let pgdata = c.datadir.to_str().unwrap().to_string();
    for args in [
        ["--pgdata", pgdata.as_str()],
        ["-p", &c.postmaster_pid().to_string()],
    ] {
        let b = server_backup(&args).unwrap_or_else(|| panic!("PG{major}: no backup seen"));
        assert_eq!(
            b.start_lsn.as_deref(),
            Some(returned.as_str()),
            "PG{major}: {b:#?}"
        );
        assert_eq!(b.pid, Some(held.pid), "PG{major}: {b:#?}");
        assert_eq!(b.label.as_deref(), Some("lowlevel 'test'"), "PG{major}");
        assert_eq!(b.phase, "copying database files", "PG{major}");
        assert_eq!((b.running, b.exclusive), (1, false), "PG{major}");
        assert_eq!(b.method, "low-level");
        assert!(
            b.started_at.is_some() && b.age_s.is_some(),
            "PG{major}: {b:#?}"
        );
    }
    let text = ps(&["--pgdata", &pgdata]);
    let first = text.lines().next().unwrap_or("");
    assert!(
        first.starts_with("low-level backup running")
            && first.contains(&format!("start {returned}"))
            && first.contains(&format!("session {}", held.pid))
            && first.contains("label \"lowlevel 'test'\""),
        "PG{major}: {text}"
    );

    // The picker's cluster row.
    let mut lister = Lister::new();
    let t = Instant::now();
    let line = loop {
        let clusters = lister.sample();
        if let Some(cl) = clusters
            .iter()
            .find(|cl| cl.postmaster == c.postmaster_pid())
        {
            if cl.server_backup.is_some() {
                break pg_trace::ui::picker::cluster_line(cl, 0);
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "PG{major}: no backup in the picker"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        line.contains(&format!("PostgreSQL {major}  — low-level backup running, ")),
        "PG{major}: {line}"
    );

    copier_sees_it(&c, &returned, held.pid);

    // The stop waits for the archiver, which fails until allowed.
    let pid = held.pid;
    let stopper = std::thread::spawn(move || {
        let r = held.client.simple_query(stop);
        (r.map(|_| ()).map_err(|e| e.to_string()), held)
    });
    let b = wait_for(&c, "the stop phase", |b| {
        b.as_ref().is_some_and(|b| {
            b.phase == "waiting for wal archiving to finish"
                && b.archive.as_ref().is_some_and(|a| a.last_failed.is_some())
        })
    })
    .unwrap();
    assert_eq!(b.pid, Some(pid), "PG{major}: {b:#?}");
    let want_source = if major >= 13 { "memory" } else { "inferred" };
    assert_eq!(b.phase_source, want_source, "PG{major}: {b:#?}");
    assert_eq!(b.start_lsn.as_deref(), Some(returned.as_str()), "PG{major}");
    let a = b.archive.as_ref().unwrap();
    assert!(
        a.ready >= 1 && a.oldest_ready.is_some(),
        "PG{major}: {a:#?}"
    );
    let text = ps(&["--pgdata", &pgdata]);
    assert!(
        text.starts_with("low-level backup stopping: waiting for wal archiving to finish")
            && text.contains("last failed "),
        "PG{major}: {text}"
    );

    std::fs::write(&allow, b"").unwrap();
    // After three failures the archiver sleeps up to a minute; a reload wakes it.
    c.execute("postgres", "SELECT pg_reload_conf()");
    let (r, _held) = stopper.join().unwrap();
    r.unwrap_or_else(|e| panic!("PG{major}: the stop function failed: {e}"));
    wait_for(&c, "the backup gone", |b| b.is_none());
}

/// Copier mode (`pg_trace -p` of a process copying the data directory: here a shell in
/// it, stopped before it execs tar) carries the server's side in its `backup` record.
fn copier_sees_it(c: &Cluster, returned: &str, holder: i32) {
    let major = c.major;
    let mut copier = std::process::Command::new("sh")
        .arg("-c")
        .arg("kill -STOP $$; exec tar -cf /dev/null .")
        .current_dir(&c.datadir)
        .spawn()
        .unwrap();
    let pid = copier.id() as i32;
    let t = Instant::now();
    while !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('T'))
    }) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the copier never stopped"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut trace = support::trace::spawn_trace(pid, "procfs");
    trace.wait_for("the server's side in a backup record", |recs| {
        recs.iter()
            .filter_map(support::trace::backup)
            .any(|b| b.server_backup.is_some())
    });
    // SAFETY: kill(2) on the pid of our own child, not reaped yet.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let status = copier.wait().unwrap();
    assert!(status.success(), "PG{major}: tar failed: {status}");
    let recs = trace.finish();
    let b = recs
        .iter()
        .filter_map(support::trace::backup)
        .find(|b| b.server_backup.is_some())
        .unwrap();
    let s = b.server_backup.as_ref().unwrap();
    let ctx = format!("PG{major}: {b:#?}");
    assert_eq!(b.method, "low-level", "{ctx}");
    assert_eq!(b.phase, "copying database files", "{ctx}");
    assert_eq!(s.start_lsn.as_deref(), Some(returned), "{ctx}");
    assert_eq!(s.pid, Some(holder), "{ctx}");
    assert_eq!(s.label.as_deref(), Some("lowlevel 'test'"), "{ctx}");
    assert!(s.started_at.is_some(), "{ctx}");
}

#[test]
fn lowlevel_backup_running_and_stopping() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        support::skip("lowlevel_backup", "reading the server's memory needs root");
        return;
    }
    support::on_every_major(check);
}
