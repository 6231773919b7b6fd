//! Smoke test of the cluster harness in tests/support: every PostgreSQL major
//! starts, answers, holds a backend, takes a tablespace, and is cleaned up.

mod support;

use std::path::Path;
use std::time::Duration;

use support::{majors, process_alive, wait_process_gone, Cluster};

/// Runs `f` for every major in its own thread; panics listing every major that failed.
fn for_each_major_in_parallel(f: fn(u32)) {
    let handles: Vec<_> = majors()
        .into_iter()
        .map(|major| {
            (
                major,
                std::thread::Builder::new()
                    .name(format!("pg{major}"))
                    .spawn(move || f(major))
                    .expect("spawn thread"),
            )
        })
        .collect();
    let failed: Vec<u32> = handles
        .into_iter()
        .filter_map(|(major, h)| h.join().is_err().then_some(major))
        .collect();
    assert!(
        failed.is_empty(),
        "failed for PostgreSQL majors {failed:?} (see the panics above)"
    );
}

fn smoke(major: u32) {
    let cluster = Cluster::start_with(major, &[("work_mem", "7MB"), ("application_name", "it's")]);
    let datadir = cluster.datadir.clone();
    let base = cluster.base_dir().to_path_buf();
    let postmaster = cluster.postmaster_pid();
    assert!(
        process_alive(postmaster),
        "postmaster {postmaster} not in /proc"
    );

    // The server is the right major, and has the extra settings.
    let rows = cluster.psql(
        "postgres",
        "SHOW server_version_num; SHOW work_mem; SHOW application_name",
    );
    let version = rows[0][0].clone().expect("server_version_num");
    assert!(
        version.starts_with(&major.to_string()),
        "PostgreSQL {major}: server_version_num = {version}"
    );
    assert_eq!(rows[1][0].as_deref(), Some("7MB"));
    // The session sets application_name itself; check the configuration file instead.
    let rows = cluster.psql(
        "postgres",
        "SELECT setting FROM pg_file_settings WHERE name = 'application_name' AND applied",
    );
    assert_eq!(rows[0][0].as_deref(), Some("it's"));

    // The data directory is where the harness says it is.
    let rows = cluster.psql("postgres", "SHOW data_directory");
    assert_eq!(
        rows[0][0].as_deref().map(Path::new),
        Some(datadir.as_path())
    );

    // A held backend is a live process, a child of the postmaster.
    let mut held = cluster.hold_backend("postgres");
    assert!(process_alive(held.pid), "backend {} not in /proc", held.pid);
    let status = std::fs::read_to_string(format!("/proc/{}/status", held.pid)).unwrap();
    let ppid = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(
        ppid,
        postmaster.to_string(),
        "backend's parent is not the postmaster"
    );
    let n: i64 = held
        .client
        .query_one("SELECT 41 + 1::bigint", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 42);

    // Tables, in the default tablespace and in one of our own.
    let ts = cluster.make_dir("ts1");
    assert!(ts.starts_with(&base));
    cluster.execute(
        "postgres",
        "CREATE TABLE t (id int PRIMARY KEY, v text);
         INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 1000) g;",
    );
    // CREATE TABLESPACE refuses to run in the implicit transaction of a multi-statement string.
    cluster.execute(
        "postgres",
        &format!("CREATE TABLESPACE ts1 LOCATION '{}'", ts.display()),
    );
    cluster.execute(
        "postgres",
        "CREATE TABLE t2 TABLESPACE ts1 AS SELECT * FROM t",
    );
    let rows = cluster.psql("postgres", "SELECT count(*) FROM t2");
    assert_eq!(rows, vec![vec![Some("1000".to_string())]]);
    let rows = cluster.psql("postgres", "SELECT pg_relation_filepath('t2')");
    let rel = rows[0][0].clone().unwrap();
    assert!(rel.starts_with("pg_tblspc/"), "t2 at {rel}");
    assert!(
        datadir.join(&rel).exists(),
        "{} missing",
        datadir.join(&rel).display()
    );

    // Drop stops the server and removes everything, with a session still open.
    let backend = held.pid;
    drop(cluster);
    assert!(
        !datadir.exists(),
        "{} still exists after drop",
        datadir.display()
    );
    assert!(!base.exists(), "{} still exists after drop", base.display());
    assert!(
        wait_process_gone(postmaster, Duration::from_secs(10)),
        "postmaster {postmaster} still running 10 s after drop"
    );
    assert!(
        wait_process_gone(backend, Duration::from_secs(10)),
        "backend {backend} still running"
    );
    drop(held);
}

#[test]
fn every_major_starts_and_cleans_up() {
    for_each_major_in_parallel(smoke);
}

#[test]
fn two_clusters_of_one_major_at_once() {
    let major = *majors().last().expect("no majors to test");
    let mut a = Cluster::start(major);
    let b = Cluster::start(major);
    assert_ne!(a.port, b.port);
    assert_ne!(a.postmaster_pid(), b.postmaster_pid());
    a.execute("postgres", "CREATE TABLE only_in_a (x int)");
    let rows = b.psql(
        "postgres",
        "SELECT count(*) FROM pg_class WHERE relname = 'only_in_a'",
    );
    assert_eq!(rows[0][0].as_deref(), Some("0"));
    let pid = a.postmaster_pid();
    a.stop();
    a.stop(); // idempotent
    assert!(wait_process_gone(pid, Duration::from_secs(10)));
    assert_eq!(b.psql("postgres", "SELECT 1")[0][0].as_deref(), Some("1"));
}
