//! A base backup seen from memory: phase, total and streamed bytes of a throttled
//! BASE_BACKUP match pg_stat_progress_basebackup sampled over SQL around our read (13–18);
//! without a server estimate (--no-estimate-size) our own walk of the data directory gives
//! a percentage that ends at 100; on 12 the phase is inferred from the syscalls.

mod support;

use pg_trace::output::record::{BackupRecord, ProcessRecord, ProgressRow};
use std::time::Duration;
use support::status::*;
use support::trace::{backup, spawn_trace_with, status};
use support::Cluster;

/// The `pg_stat_progress_*` row of a process (still JSON: see `ProgressRow`).
fn progress_row(ps: &[ProcessRecord], pid: i32) -> ProgressRow {
    ps.iter()
        .find(|v| v.pid == pid)
        .unwrap_or_else(|| panic!("walsender {pid} not in ps: {ps:?}"))
        .progress
        .clone()
        .unwrap_or_else(|| panic!("walsender {pid}: no progress row"))
}

/// Throttled backup: memory against SQL, then line mode's backup and status records.
fn throttled(c: &Cluster) {
    let major = c.major;
    let bb = BaseBackup::start(
        c,
        BackupOpts {
            max_rate_kb: Some(32),
            estimate: true,
            ..Default::default()
        },
    );
    let ws = bb.walsender;
    wait_until("streaming", Duration::from_secs(60), || {
        basebackup_progress(c, ws).is_some_and(|p| p.0 == "streaming database files")
    });
    for _ in 0..3 {
        let a = basebackup_progress(c, ws).unwrap();
        let ours = progress_row(&ps_json(ws), ws);
        let b = basebackup_progress(c, ws).unwrap();
        assert_eq!(ours["view"], "pg_stat_progress_basebackup");
        assert_eq!(ours["phase"], a.0.as_str(), "PG{major}: {ours}");
        assert_eq!(ours["backup_total"], a.1, "PG{major}: {ours}");
        let streamed = ours["backup_streamed"].as_i64().unwrap();
        assert!(
            a.2 <= streamed && streamed <= b.2,
            "PG{major}: streamed {streamed} not within [{}, {}]",
            a.2,
            b.2
        );
        assert_eq!(ours["tablespaces_total"], a.3, "PG{major}");
        assert_eq!(a.3, 2, "PG{major}: the data directory and spc");
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut t = spawn_trace_with(ws, "auto", &[]);
    t.wait_for("a backup record from memory", |r| {
        r.iter().filter_map(backup).any(|b| {
            b.source == "memory"
                && b.phase == "streaming database files"
                && b.total_source.as_deref() == Some("server")
                && b.percent.is_some_and(|p| p > 0.0 && p < 100.0)
        })
    });
    t.wait_for("the throttled verdict", |r| {
        r.iter()
            .filter_map(status)
            .any(|s| s.verdict_kind == "throttled")
    });
    let recs = t.finish();
    let st = recs.iter().find_map(status).unwrap();
    assert_eq!(
        st.backend_type.as_deref(),
        Some("walsender"),
        "PG{major}: {st:?}"
    );
    bb.cancel(c);
}

/// No PROGRESS: the total is ours, and the percentage ends at 100.
fn no_estimate(c: &Cluster, extra: &[&str]) {
    let major = c.major;
    let r = Replication::connect(c);
    let ws = r.walsender;
    let mut t = spawn_trace_with(ws, "auto", extra);
    t.wait_ready();
    let bb = r.base_backup(
        major,
        BackupOpts {
            max_rate_kb: Some(16384),
            estimate: false,
            ..Default::default()
        },
    );
    let sent = bb.finish().expect("backup");
    assert!(sent > 1_000_000, "PG{major}: only {sent} bytes");
    // Two intervals after the end.
    std::thread::sleep(Duration::from_millis(600));
    let recs = t.finish();
    let backups: Vec<&BackupRecord> = recs.iter().filter_map(backup).collect();
    // The operation record of each interval says the same bytes as its backup record.
    for o in recs.iter().filter_map(support::trace::operation) {
        assert_eq!(o.operation, "basebackup", "PG{major}: {o:?}");
        let b = backups
            .iter()
            .find(|b| b.ts == o.ts)
            .unwrap_or_else(|| panic!("PG{major}: no backup record at {}: {o:?}", o.ts));
        assert_eq!(o.done, Some(b.streamed), "PG{major}: {o:?} vs {b:?}");
        assert_eq!(
            o.phase.as_deref(),
            Some(b.phase.as_str()),
            "PG{major}: {o:?}"
        );
    }
    let last = backups.last().expect("backup records");
    assert!(
        last.ended && last.percent == Some(100.0),
        "PG{major} {extra:?}: the backup did not end at 100%: {backups:#?}"
    );
    let source = if extra.contains(&"--no-memory") || major == 12 {
        "inferred"
    } else {
        "memory"
    };
    assert!(
        backups.iter().any(|b| b.source == source
            && b.total_source.as_deref() == Some("walked")
            && b.percent.is_some_and(|p| p > 0.0 && p < 100.0)),
        "PG{major} {extra:?}: no intermediate percentage from a walked total: {backups:#?}"
    );
    assert_eq!(
        last.tablespaces_total,
        Some(2),
        "PG{major} {extra:?}: {last:#?}"
    );
    if source == "inferred" {
        assert_eq!(last.tablespaces_streamed, Some(1), "PG{major}: {last:#?}");
        assert!(last.current_file.is_some(), "PG{major}: {last:#?}");
    }
    let pcts: Vec<f64> = backups.iter().filter_map(|b| b.percent).collect();
    assert!(
        pcts.windows(2).all(|w| w[0] <= w[1]),
        "PG{major}: percent went backwards: {pcts:?}"
    );
}

fn check(major: u32) {
    let c = Cluster::start(major);
    let dir = c.make_dir("spc");
    c.execute(
        "postgres",
        &format!("CREATE TABLESPACE spc LOCATION '{}'", dir.display()),
    );
    c.execute(
        "postgres",
        "CREATE TABLE filler AS SELECT g, md5(g::text) AS t FROM generate_series(1, 100000) g; \
         CREATE TABLE elsewhere TABLESPACE spc AS SELECT g FROM generate_series(1, 50000) g",
    );
    if major >= 13 {
        throttled(&c);
        no_estimate(&c, &[]);
    }
    no_estimate(&c, &["--no-memory"]);
}

#[test]
fn backup_progress_from_memory() {
    support::on_every_major(check);
}

/// pg_basebackup -X fetch with archive_mode on: the phases inferred from the syscalls
/// (`--no-memory`) follow the server's own sequence, polled over SQL meanwhile (13+; on 12,
/// which has no progress view, the inferred phases alone).
fn inferred_sequence(major: u32) {
    let c = Cluster::start_with(
        major,
        &[("archive_mode", "on"), ("archive_command", "sleep 1")],
    );
    let r = Replication::connect(&c);
    let ws = r.walsender;
    let mut t = spawn_trace_with(ws, "auto", &["--no-memory"]);
    t.wait_ready();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let stop = std::sync::Arc::clone(&stop);
        let mut client = c.connect("postgres");
        std::thread::spawn(move || {
            let mut seq: Vec<String> = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(Some(row)) = client.query_opt(
                    "SELECT phase FROM pg_stat_progress_basebackup WHERE pid = $1",
                    &[&ws],
                ) {
                    let p: String = row.get(0);
                    if seq.last() != Some(&p) {
                        seq.push(p);
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            seq
        })
    };
    let bb = r.base_backup(
        major,
        BackupOpts {
            estimate: true,
            wal: true,
            wait: true,
            ..Default::default()
        },
    );
    bb.finish().expect("backup");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let server = poller.join().unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let recs = t.finish();
    let last = recs.iter().rev().find_map(backup).expect("a backup record");
    assert_eq!(last.source, "inferred", "PG{major}");
    let ours: Vec<String> = last.phases_seen.clone();
    // Every phase the server showed, in its order, is in ours (we see phases too short for
    // a poll to catch, never others or in another order).
    let mut it = ours.iter();
    for p in &server {
        assert!(
            it.any(|o| o == p),
            "PG{major}: server sequence {server:?} not within ours {ours:?}"
        );
    }
    for p in [
        "estimating backup size",
        "streaming database files",
        "waiting for wal archiving to finish",
        "transferring wal files",
    ] {
        assert!(
            ours.iter().any(|o| o == p),
            "PG{major}: {p:?} missing from {ours:?}"
        );
    }
    // PostgreSQL 12 has no pg_stat_progress_basebackup: only our side can be checked.
    assert!(
        major == 12
            || server
                .iter()
                .any(|p| p == "waiting for wal archiving to finish"),
        "PG{major}: the server never showed the archive wait: {server:?}"
    );
}

#[test]
fn inferred_phases_follow_the_server() {
    support::on_every_major(inferred_sequence);
}
