//! The process list behind the picker, against a real cluster: a client backend and a
//! walsender are listed under their cluster with the right backend types, and the cluster
//! with its data directory, port and major.

mod support;

use pg_trace::process::list::{Lister, PgCluster};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::Cluster;

fn find(clusters: &[PgCluster], postmaster: i32) -> Option<&PgCluster> {
    clusters.iter().find(|c| c.postmaster == postmaster)
}

#[test]
fn lists_a_backend_and_a_walsender_of_a_real_cluster() {
    let c = Cluster::start(15);
    let held = c.hold_backend("postgres");
    // A replication connection (PG15's psql, kept open by its stdin): a walsender.
    let conninfo = format!(
        "host={} port={} user=postgres dbname=postgres replication=database",
        c.sockdir.display(),
        c.port
    );
    let mut walsender_client = Command::new(c.bin_dir().join("psql"))
        .args(["-X", "-q", &conninfo])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn psql replication=database");
    let mut lister = Lister::new();
    let t = Instant::now();
    let (cluster, ws_pid) = loop {
        let clusters = lister.sample();
        if let Some(cl) = find(&clusters, c.postmaster_pid()) {
            let ws = cl
                .processes
                .iter()
                .find(|p| p.title.backend_type == "walsender")
                .map(|p| p.pid);
            if let Some(ws) = ws {
                break (cl.clone(), ws);
            }
        }
        if let Ok(Some(st)) = walsender_client.try_wait() {
            panic!("psql replication=database exited early: {st}");
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no walsender listed; clusters: {clusters:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(cluster.datadir.as_deref(), Some(c.datadir.as_path()));
    assert_eq!(cluster.port, Some(c.port));
    assert_eq!(cluster.major, Some(15));
    assert_eq!(
        cluster.processes[0].pid,
        c.postmaster_pid(),
        "postmaster first"
    );
    assert_eq!(cluster.processes[0].title.backend_type, "postmaster");
    let backend = cluster
        .processes
        .iter()
        .find(|p| p.pid == held.pid)
        .unwrap_or_else(|| panic!("backend {} not listed: {cluster:#?}", held.pid));
    assert_eq!(backend.title.backend_type, "client backend");
    assert_eq!(backend.title.user.as_deref(), Some("postgres"));
    assert_eq!(backend.title.database.as_deref(), Some("postgres"));
    assert_eq!(backend.title.host.as_deref(), Some("[local]"));
    assert_eq!(backend.title.activity, "idle");
    let ws = cluster.processes.iter().find(|p| p.pid == ws_pid).unwrap();
    assert_eq!(ws.title.user.as_deref(), Some("postgres"));
    for aux in ["checkpointer", "background writer", "walwriter"] {
        assert!(
            cluster
                .processes
                .iter()
                .any(|p| p.title.backend_type == aux),
            "{aux} missing: {cluster:#?}"
        );
    }
    // As root the rows also carry what shared memory says (the offline pg_stat_activity):
    // a backend in pg_sleep shows its query and wait event in the picker.
    let mut sleeper = c.hold_backend("postgres");
    let sleeper_pid = sleeper.pid;
    let sleeping = std::thread::spawn(move || {
        let r = sleeper.client.batch_execute("SELECT pg_sleep(3600)");
        assert!(r.is_err(), "pg_sleep was cancelled");
    });
    let t = Instant::now();
    let shown = loop {
        let clusters = lister.sample();
        let row = find(&clusters, c.postmaster_pid())
            .and_then(|cl| cl.processes.iter().find(|p| p.pid == sleeper_pid).cloned());
        // The slot and the wait event are two reads (as for pg_stat_activity): a sample
        // may see the slot still idle and the wait already set; the next one agrees.
        if let Some(p) = row.filter(|p| {
            p.memory.as_ref().is_some_and(|m| {
                m.wait.as_deref() == Some("Timeout:PgSleep") && m.state.as_deref() == Some("active")
            })
        }) {
            break p;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the sleeping backend's status never came from memory"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let m = shown.memory.as_ref().unwrap();
    assert_eq!(m.backend_type.as_deref(), Some("client backend"));
    assert_eq!(m.state.as_deref(), Some("active"));
    assert_eq!(
        pg_trace::ui::picker::activity(&shown),
        "[Timeout:PgSleep] SELECT pg_sleep(3600)"
    );
    let mut canceller = c.connect("postgres");
    canceller
        .execute("SELECT pg_cancel_backend($1)", &[&sleeper_pid])
        .unwrap();
    sleeping.join().unwrap();
    // Second sample: rates are known.
    std::thread::sleep(Duration::from_millis(200));
    let again = lister.sample();
    let cl = find(&again, c.postmaster_pid()).expect("cluster still listed");
    let b = cl.processes.iter().find(|p| p.pid == held.pid).unwrap();
    assert!(b.cpu.is_some(), "{b:?}");
    assert!(
        b.read_bps.is_some(),
        "running as root, /proc/PID/io is readable: {b:?}"
    );
    drop(walsender_client.stdin.take());
    let _ = walsender_client.wait();
    drop(held);
}
