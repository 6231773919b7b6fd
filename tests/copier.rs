//! Copier mode on real clusters (issue 16 items 1, 3, 4): while a session holds a
//! low-level backup (`pg_backup_start`, `pg_start_backup` on 12–14), `tar` (paced by
//! `pv -L`), `rsync --bwlimit` and `cp -r` (paced by SIGSTOP/SIGCONT from the test, the
//! way cpulimit throttles) copy the data directory, traced by `pg_trace -p COPIER`.
//! Each copier starts stopped (`kill -STOP $$` before `exec`), so pg_trace is attached
//! before it reads a byte. The oracle is independent of pg_trace's walk: the files the
//! copier actually wrote to its destination, with pg_basebackup's exclusions applied
//! here by the test's own rules.

mod support;

use pg_trace::output::record::{BackupRecord, Record};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::trace::{backup, file, spawn_trace};
use support::Cluster;

/// Rows of the test table: ~24 MiB, big enough to see progress, small enough for CI.
const ROWS: u32 = 100_000;

/// Our own statement of what a base backup leaves out (basebackup.c), for the oracle.
fn excluded(rel: &str, unlogged: &[String]) -> bool {
    const DIR_CONTENTS: &[&str] = &[
        "pg_wal/",
        "pg_stat_tmp/",
        "pg_replslot/",
        "pg_dynshmem/",
        "pg_notify/",
        "pg_serial/",
        "pg_snapshots/",
        "pg_subtrans/",
    ];
    const FILES: &[&str] = &[
        "postmaster.pid",
        "postmaster.opts",
        "pg_internal.init",
        "backup_label",
        "tablespace_map",
        "current_logfiles.tmp",
        "backup_manifest",
    ];
    let name = rel.rsplit('/').next().unwrap_or(rel);
    DIR_CONTENTS.iter().any(|d| rel.starts_with(d))
        || FILES.contains(&name)
        || rel.contains("pgsql_tmp")
        || unlogged.iter().any(|u| {
            // Every fork but the init fork of an unlogged relation.
            rel == u.as_str()
                || rel.strip_prefix(u.as_str()).is_some_and(|s| {
                    s.starts_with('.') || s.starts_with("_fsm") || s.starts_with("_vm")
                })
        })
}

/// Sum of the sizes of the regular files under `dir` a backup must copy.
fn oracle_of_tree(dir: &Path, unlogged: &[String]) -> u64 {
    fn walk(d: &Path, rel: &str, unlogged: &[String], total: &mut u64) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                walk(&e.path(), &r, unlogged, total);
            } else if m.is_file() && !excluded(&r, unlogged) {
                *total += m.len();
            }
        }
    }
    let mut t = 0;
    walk(dir, "", unlogged, &mut t);
    t
}

/// The same over a tar archive's listing.
fn oracle_of_tar(tar: &Path, unlogged: &[String]) -> u64 {
    let out = Command::new("tar").arg("-tvf").arg(tar).output().unwrap();
    assert!(out.status.success());
    let mut total = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // -rw------- nobody/nogroup 8192 2026-12-02 07:00 ./base/1/1259
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || !f[0].starts_with('-') {
            continue;
        }
        let rel = f[5..].join(" ");
        let rel = rel.trim_start_matches("./");
        if !excluded(rel, unlogged) {
            total += f[2].parse::<u64>().unwrap();
        }
    }
    total
}

/// A shell in the data directory that stops itself, then becomes `cmd` (same pid).
fn stopped_copier(datadir: &Path, cmd: &str, stdout: Stdio) -> Child {
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -STOP $$; exec {cmd}"))
        .current_dir(datadir)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let t = Instant::now();
    while !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('T'))
    }) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "copier never stopped"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    unsafe { libc::kill(pid as i32, sig) };
}

/// Attach to the stopped copier, let it run, and return pg_trace's records once the
/// copier has exited (pg_trace ends with it). `pace`: stop and continue it meanwhile.
fn trace_copy(copier: Child, pace: bool) -> Vec<Record> {
    trace_copy_recorded(copier, pace, None)
}

/// [`trace_copy`], recorded to `record` (`--record`).
fn trace_copy_recorded(mut copier: Child, pace: bool, record: Option<&Path>) -> Vec<Record> {
    let pid = copier.id();
    let extra: Vec<&str> = record.map_or_else(Vec::new, |p| vec!["--record", p.to_str().unwrap()]);
    let mut t = support::trace::spawn_trace_with(pid as i32, "auto", &extra);
    t.wait_ready();
    signal(pid, libc::SIGCONT);
    let start = Instant::now();
    loop {
        if let Some(st) = copier.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            copier
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert!(st.success(), "copier failed: {st}: {err}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(90), "copier too slow");
        if pace {
            // cpulimit's way: stopped three quarters of the time.
            std::thread::sleep(Duration::from_millis(10));
            signal(pid, libc::SIGSTOP);
            std::thread::sleep(Duration::from_millis(30));
            signal(pid, libc::SIGCONT);
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // pg_trace ends when the traced process exits.
    let wait = Instant::now();
    while t.child.try_wait().unwrap().is_none() {
        assert!(
            wait.elapsed() < Duration::from_secs(20),
            "pg_trace did not end with the copier"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    t.wait_for("the summary", |r| {
        r.iter().any(|r| support::trace::summary(r).is_some())
    });
    t.records()
}

/// A record's JSON, pg_trace's own cost on the recording host aside (null in a replay).
fn comparable(records: &[Record]) -> Vec<serde_json::Value> {
    records
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap();
            if v["type"] == "stats" {
                for f in [
                    "probe_ns_per_s",
                    "probe_runs_per_s",
                    "usdt_runs_per_s",
                    "self_cpu",
                    "self_rss_bytes",
                ] {
                    v.as_object_mut().unwrap().remove(f);
                }
            }
            v
        })
        .collect()
}

/// What every copier must show: a low-level backup by `name`, at 100 % of our walk,
/// whose bytes are within 2 % of the oracle's, with the test table named.
fn check(major: u32, name: &str, recs: &[Record], oracle: u64) {
    let backups: Vec<&BackupRecord> = recs.iter().filter_map(backup).collect();
    let last = backups
        .last()
        .unwrap_or_else(|| panic!("PG{major} {name}: no backup record"));
    let ctx = format!("PG{major} {name}: {last:#?}");
    eprintln!("PG{major} {name}: {} of {:?} bytes ({:?} %), {:?}/{:?} files, oracle {oracle}, limiter {:?}", last.streamed, last.total, last.percent, last.files_done, last.files_total, last.limiter);
    assert_eq!(last.method, "low-level", "{ctx}");
    assert_eq!(last.source, "files", "{ctx}");
    assert_eq!(last.copier.as_deref(), Some(name), "{ctx}");
    assert_eq!(last.phase, "copying database files", "{ctx}");
    assert!(last.server_backup.is_none() || last.server_backup.is_some());
    let total = last.total.unwrap_or_else(|| panic!("no total: {ctx}"));
    assert_eq!(last.percent, Some(100.0), "{ctx}");
    assert_eq!(last.streamed, total, "{ctx}");
    assert_eq!(last.files_done, last.files_total, "{ctx}");
    assert!(last.files_total.unwrap() > 500, "{ctx}");
    let diff = total.abs_diff(oracle) as f64 / oracle as f64;
    assert!(
        diff <= 0.02,
        "{ctx}\nwalked {total} vs copied {oracle}: {:.2}% apart",
        diff * 100.0
    );
    // Two tablespaces, each copied whole.
    assert_eq!(last.per_tablespace.len(), 2, "{ctx}");
    assert_eq!(last.tablespaces_total, Some(2), "{ctx}");
    let spc = &last.per_tablespace[1];
    assert!(spc.tablespace.starts_with("pg_tblspc/"), "{ctx}");
    assert!(
        spc.bytes_total > 1 << 20 && spc.bytes_done == spc.bytes_total,
        "{ctx}"
    );
    // Progress was seen on the way, not only at the end.
    assert!(
        backups
            .iter()
            .any(|b| b.percent.is_some_and(|p| p > 0.0 && p < 100.0)),
        "PG{major} {name}: no intermediate percentage"
    );
    // Named in a file record, or (its file closed among many in one interval) in the
    // relation's progress record.
    let named =
        |schema: Option<&str>, n: Option<&str>| schema == Some("public") && n == Some("copier_t");
    assert!(
        recs.iter()
            .filter_map(file)
            .any(|f| named(f.schema.as_deref(), f.name.as_deref()))
            || recs
                .iter()
                .filter_map(support::trace::progress)
                .any(|p| named(p.schema.as_deref(), p.name.as_deref())),
        "PG{major} {name}: public.copier_t never named"
    );
}

fn unlogged_paths(c: &Cluster) -> Vec<String> {
    c.psql(
        "postgres",
        "SELECT pg_relation_filepath(oid) FROM pg_class WHERE relpersistence = 'u' AND relkind IN ('r','i','t','m')",
    )
    .into_iter()
    .filter_map(|r| r[0].clone())
    .collect()
}

fn copiers_on(major: u32) {
    let c = Cluster::start(major);
    c.execute(
        "postgres",
        &format!(
            "CREATE TABLE public.copier_t AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, {ROWS}) g;
             CREATE UNLOGGED TABLE public.copier_u AS SELECT g FROM generate_series(1, 20000) g;"
        ),
    );
    // A tablespace: the copiers are told to follow its link (tar -h, rsync -L, cp -L).
    let spc = c.make_dir("spc");
    c.execute(
        "postgres",
        &format!("CREATE TABLESPACE copier_spc LOCATION '{}'", spc.display()),
    );
    c.execute(
        "postgres",
        "CREATE TABLE public.copier_s TABLESPACE copier_spc AS SELECT g FROM generate_series(1, 50000) g",
    );
    c.execute("postgres", "CHECKPOINT");
    let unlogged = unlogged_paths(&c);
    assert!(!unlogged.is_empty());
    // The session holding the backup (non-exclusive: it must stay connected).
    let mut holder = c.hold_backend("postgres");
    let start = if major >= 15 {
        "SELECT pg_backup_start('pg_trace copier', true)::text"
    } else {
        "SELECT pg_start_backup('pg_trace copier', true, false)::text"
    };
    holder.client.query_one(start, &[]).unwrap();

    let dest = c.make_dir("copies");

    // tar, paced through pv.
    let tarball = dest.join("data.tar");
    let mut pv = Command::new("pv")
        .args(["-q", "-L", "20m"])
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&tarball).unwrap())
        .spawn()
        .unwrap();
    let pv_in: Stdio = pv.stdin.take().unwrap().into();
    // Excluding pg_wal is what backup scripts do; what tar reads of it would not count.
    let tar = stopped_copier(&c.datadir, "tar -h --exclude=./pg_wal/* -cf - .", pv_in);
    let recs = trace_copy(tar, false);
    // The archive is whole once pv has written it.
    assert!(pv.wait().unwrap().success());
    check(major, "tar", &recs, oracle_of_tar(&tarball, &unlogged));
    std::fs::remove_file(&tarball).unwrap();

    // rsync, throttled by itself.
    let rdest = dest.join("rsync");
    let rsync = stopped_copier(
        &c.datadir,
        &format!(
            "rsync -aL --bwlimit=20000 --exclude=pg_wal/* ./ {}/",
            rdest.display()
        ),
        Stdio::null(),
    );
    // Recorded: copier mode replays as it ran (the plan, the processes, the server's side).
    let rec = dest.join("rsync.pgtrace");
    let recs = trace_copy_recorded(rsync, false, Some(&rec));
    check(major, "rsync", &recs, oracle_of_tree(&rdest, &unlogged));
    let replayed = pg_trace::session::replay::replay_records(&rec).unwrap();
    assert_eq!(
        comparable(&replayed),
        comparable(&recs),
        "rsync: the replay differs from the live JSON"
    );
    std::fs::remove_file(&rec).unwrap();
    std::fs::remove_dir_all(&rdest).unwrap();

    // cp -r, paced by the test (copy_file_range: the reads never reach cp's memory).
    let cdest = dest.join("cp");
    let cp = stopped_copier(
        &c.datadir,
        &format!("cp -rL . {}", cdest.display()),
        Stdio::null(),
    );
    let recs = trace_copy(cp, true);
    check(major, "cp", &recs, oracle_of_tree(&cdest, &unlogged));
    std::fs::remove_dir_all(&cdest).unwrap();

    let stop = if major >= 15 {
        "SELECT lsn::text FROM pg_backup_stop(false)"
    } else {
        "SELECT lsn::text FROM pg_stop_backup(false, false)"
    };
    holder.client.query_one(stop, &[]).unwrap();
}

#[test]
fn tar_rsync_and_cp_copy_a_data_directory() {
    for tool in ["tar", "rsync", "cp", "pv"] {
        if Command::new("which")
            .arg(tool)
            .output()
            .map_or(true, |o| !o.status.success())
        {
            support::skip(
                "copier tests",
                &format!("{tool} is not installed (scripts/setup.sh)"),
            );
            return;
        }
    }
    support::on_every_major(copiers_on);
}

/// Attach to a running copier and wait for the limiter the situation makes: a pipe read
/// slowly (`pv -L`), rsync's `--bwlimit` sleeps, a compressor child (`tar -I 'xz -9'`),
/// a paced `cp`. One major: the limiter is about the copier, not the server.
#[test]
fn copier_limiters() {
    for tool in ["tar", "rsync", "cp", "pv", "xz"] {
        if Command::new("which")
            .arg(tool)
            .output()
            .map_or(true, |o| !o.status.success())
        {
            support::skip("copier limiter test", &format!("{tool} is not installed"));
            return;
        }
    }
    let major = support::majors()[0];
    let c = Cluster::start(major);
    c.execute(
        "postgres",
        &format!("CREATE TABLE public.copier_t AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, {ROWS}) g"),
    );
    let dest = c.make_dir("copies");
    let cases: [(&str, String, &str, bool); 4] = [
        (
            "pipe",
            "tar -cf - . | pv -q -L 1m > /dev/null".into(),
            "tar",
            false,
        ),
        (
            "throttled",
            format!("rsync -a --bwlimit=1000 ./ {}/r/", dest.display()),
            "rsync",
            false,
        ),
        (
            "compression_cpu",
            // tar's own compressor child (-I): xz -9 is slow enough to hold tar back.
            "tar -I 'xz -9' -cf - . > /dev/null".into(),
            "tar",
            false,
        ),
        (
            "stopped",
            format!("cp -r . {}/c", dest.display()),
            "cp",
            true,
        ),
    ];
    for (want, cmd, name, pace) in cases {
        // The shell runs the pipeline; the copier is its child: traced by its own pid.
        let sh = Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .current_dir(&c.datadir)
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        let copier = loop {
            let found =
                std::fs::read_to_string(format!("/proc/{}/task/{}/children", sh.id(), sh.id()))
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok())
                    .find(|p| {
                        std::fs::read_to_string(format!("/proc/{p}/comm"))
                            .is_ok_and(|c| c.trim() == name)
                    });
            if let Some(p) = found {
                break p;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{want}: no {name} under the shell"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut t = spawn_trace(copier as i32, "auto");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pacer = pace.then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                    signal(copier, libc::SIGSTOP);
                    std::thread::sleep(Duration::from_millis(30));
                    signal(copier, libc::SIGCONT);
                }
            })
        });
        let t1 = Instant::now();
        loop {
            let recs = t.records();
            if recs
                .iter()
                .filter_map(backup)
                .any(|b| b.limiter.as_deref() == Some(want))
            {
                break;
            }
            let ended = t.child.try_wait().unwrap().is_some();
            if ended || t1.elapsed() > Duration::from_secs(60) {
                let seen: Vec<_> = recs
                    .iter()
                    .filter_map(backup)
                    .map(|b| (b.limiter.clone(), b.copier_processes.clone()))
                    .collect();
                panic!("{want}: never seen (pg_trace ended: {ended}): {seen:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(p) = pacer {
            p.join().unwrap();
        }
        signal(copier, libc::SIGCONT);
        signal(copier, libc::SIGKILL);
        let mut sh = sh;
        let _ = sh.wait();
        let recs = t.finish();
        let last = recs.iter().filter_map(backup).next_back().unwrap();
        assert_eq!(last.copier.as_deref(), Some(name), "{last:#?}");
    }
}

/// pgBackRest (Debian's package) takes the low-level backup itself: `backup --type=full
/// --process-max=2` into a local repository, WAL archived through `archive-push`. Its
/// main process is traced; its two local workers, which read the files, are followed.
#[test]
fn pgbackrest_workers_are_followed() {
    const MAJOR: u32 = 15;
    if Command::new("which")
        .arg("pgbackrest")
        .output()
        .map_or(true, |o| !o.status.success())
    {
        support::skip(
            "pgbackrest copier test",
            "pgbackrest is not installed (scripts/setup.sh)",
        );
        return;
    }
    if !support::majors().contains(&MAJOR) {
        support::skip(
            "pgbackrest copier test",
            "PostgreSQL 15 is not among the majors tested",
        );
        return;
    }
    let (uid, gid) = support::cluster_user().expect("tests run as root");
    let work = tempfile::Builder::new()
        .prefix("pg_trace-pgbr-")
        .tempdir()
        .unwrap();
    let work = work.path().canonicalize().unwrap();
    for d in ["", "repo", "log", "lock", "spool"] {
        let p = work.join(d);
        std::fs::create_dir_all(&p).unwrap();
        std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
    }
    let conf = work.join("pgbackrest.conf");
    let archive = format!(
        "pgbackrest --config={} --stanza=copier archive-push %p",
        conf.display()
    );
    let c = Cluster::start_with(
        MAJOR,
        &[("archive_mode", "on"), ("archive_command", &archive)],
    );
    std::fs::write(
        &conf,
        format!(
            "[global]\nrepo1-path={w}/repo\nlog-path={w}/log\nlock-path={w}/lock\nspool-path={w}/spool\n\
             log-level-console=warn\nlog-level-file=off\nstart-fast=y\ncompress-type=none\n\
             [copier]\npg1-path={d}\npg1-socket-path={s}\npg1-port={p}\npg1-user=postgres\n",
            w = work.display(),
            d = c.datadir.display(),
            s = c.sockdir.display(),
            p = c.port
        ),
    )
    .unwrap();
    std::os::unix::fs::chown(&conf, Some(uid), Some(gid)).unwrap();
    c.execute(
        "postgres",
        &format!("CREATE TABLE public.copier_t AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, {ROWS}) g"),
    );
    let pgbr = |args: &str| {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(args)
            .current_dir(&work)
            .uid(uid)
            .gid(gid)
            .env("HOME", &work);
        cmd
    };
    let base = format!("pgbackrest --config={} --stanza=copier", conf.display());
    let out = pgbr(&format!("{base} stanza-create")).output().unwrap();
    assert!(
        out.status.success(),
        "stanza-create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Started stopped, so pg_trace sees every read; the data directory is on its
    // command line (copier mode finds it there before any file is open).
    let job = pgbr(&format!(
        "kill -STOP $$; exec {base} --pg1-path={} --process-max=2 backup --type=full",
        c.datadir.display()
    ))
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let pid = job.id();
    let t = Instant::now();
    while !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('T'))
    }) {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "pgbackrest never stopped"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let recs = trace_copy(job, false);
    let backups: Vec<&BackupRecord> = recs.iter().filter_map(backup).collect();
    let last = backups.last().expect("backup records");
    let ctx = format!("{last:#?}");
    assert_eq!(last.copier.as_deref(), Some("pgbackrest"), "{ctx}");
    assert_eq!(last.method, "low-level", "{ctx}");
    let pcts: Vec<f64> = backups.iter().filter_map(|b| b.percent).collect();
    // pgBackRest's workers start on the biggest file the moment they fork: they are
    // traced from their fork, in the kernel, or that first file would be missed.
    let end = *pcts.last().unwrap();
    assert!(end >= 99.999, "{ctx}\n{pcts:?}");
    assert!(pcts.windows(2).all(|w| w[0] <= w[1]), "{pcts:?}");
    // The workers: followed, named, and the ones reading the files.
    let workers: Vec<_> = last
        .copier_processes
        .iter()
        .filter(|p| p.pid != pid as i32 && p.name == "pgbackrest")
        .collect();
    assert!(workers.len() >= 2, "{ctx}");
    let readers: std::collections::BTreeSet<i32> = recs
        .iter()
        .filter_map(file)
        .filter(|f| f.pid != pid as i32 && f.bytes_read > 0 && f.relpath.is_some())
        .map(|f| f.pid)
        .collect();
    assert!(readers.len() >= 2, "worker reads: {readers:?}");
    assert!(
        recs.iter().filter_map(file).any(|f| f.pid != pid as i32
            && f.schema.as_deref() == Some("public")
            && f.name.as_deref() == Some("copier_t")),
        "public.copier_t never named in a worker: {:#?}",
        recs.iter()
            .filter_map(file)
            .filter(|f| f.pid != pid as i32 && f.size.unwrap_or(0) > 1 << 20)
            .map(|f| (f.pid, &f.path, &f.relpath, &f.object, f.bytes_read, f.ts))
            .collect::<Vec<_>>()
    );
}
