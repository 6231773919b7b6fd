//! The wait profile by sampling shared memory, on every major, no extension: over the same
//! window `pg_trace ps --waits` must show a backend in `pg_sleep` dominated by
//! Timeout:PgSleep, one spinning in PL/pgSQL dominated by CPU (no wait event set), an idle
//! one in Client:ClientRead, each with its query normalised (or its query id, 14+ with
//! `compute_query_id`). Twice: reading the server's segment mapped into pg_trace (as root
//! does), and through `process_vm_readv` (where the mapping is refused).

mod support;

use pg_trace::output::record::{Record, WaitsRecord};
use std::process::Command;
use support::status::*;
use support::Cluster;

fn ps_waits(c: &Cluster, secs: &str, extra: &[&str], mapped: bool) -> Vec<WaitsRecord> {
    let mut cmd = Command::new(BIN);
    if !mapped {
        cmd.env("PG_TRACE_TEST_NO_SHM_VIEW", "1");
    }
    let out = cmd
        .args(["ps", "--waits", secs, "--format", "json", "--pgdata"])
        .arg(&c.datadir)
        .args(extra)
        .output()
        .expect("run pg_trace ps --waits");
    assert!(
        out.status.success(),
        "PostgreSQL {}: pg_trace ps --waits failed: {}",
        c.major,
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.stderr.is_empty() {
        eprintln!("pg_trace stderr: {}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| match serde_json::from_str(l) {
            Ok(Record::Waits(w)) => w,
            other => panic!("ps --waits line {l}: {other:?}"),
        })
        .collect()
}

fn share(w: &WaitsRecord, class: Option<&str>, name: Option<&str>) -> f64 {
    w.events
        .iter()
        .find(|e| e.wait_event_type.as_deref() == class && e.wait_event.as_deref() == name)
        .map_or(0.0, |e| e.share)
}

fn check(major: u32) {
    // compute_query_id exists from 14; before, queries go by their normalised text.
    let conf: &[(&str, &str)] = if major >= 14 {
        &[("compute_query_id", "on")]
    } else {
        &[]
    };
    let c = Cluster::start_with(major, conf);
    // One major's window at a time: seven spinners on two cores would starve the sampler.
    static WINDOW: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let window = WINDOW.lock().unwrap_or_else(|e| e.into_inner());
    let mut sleeper = spawn_query(&c, "postgres", "", "SELECT pg_sleep(30) /* sleeper */");
    let mut spinner = spawn_query(
        &c,
        "postgres",
        "",
        "DO $$ DECLARE t timestamptz := clock_timestamp(); BEGIN \
         WHILE clock_timestamp() < t + interval '30 s' LOOP END LOOP; END $$",
    );
    let idle = c.hold_backend("postgres");
    wait_until("both busy", std::time::Duration::from_secs(20), || {
        let a = activity(&c);
        a.get(&sleeper.pid).is_some_and(|r| r[3] == "PgSleep")
            && a.get(&spinner.pid).is_some_and(|r| r[1] == "active")
    });
    let want_id: Option<i64> = if major >= 14 {
        c.psql(
            "postgres",
            &format!(
                "SELECT query_id FROM pg_stat_activity WHERE pid = {}",
                sleeper.pid
            ),
        )[0][0]
            .as_deref()
            .map(|v| v.parse().unwrap())
    } else {
        None
    };
    let both = [true, false].map(|mapped| ps_waits(&c, "1.5", &["--sample-hz", "200"], mapped));
    sleeper.terminate(&c);
    spinner.terminate(&c);
    drop(window);
    for recs in &both {
        check_profile(major, recs, sleeper.pid, spinner.pid, idle.pid, want_id);
    }
    drop(idle);
}

fn check_profile(
    major: u32,
    recs: &[WaitsRecord],
    sleeper: i32,
    spinner: i32,
    idle: i32,
    want_id: Option<i64>,
) {
    let by = |pid: i32| {
        recs.iter()
            .find(|w| w.pid == pid)
            .unwrap_or_else(|| panic!("PostgreSQL {major}: no waits record for {pid}: {recs:?}"))
    };
    let (s, p, i) = (by(sleeper), by(spinner), by(idle));
    for w in [s, p, i] {
        assert_eq!(w.scope, "total");
        assert_eq!(w.hz, 200.0);
        // 1.5 s at 200 Hz: a loaded machine (every major's spinner on 2 cores) may skip
        // rounds, never add any.
        assert!(
            (60..=301).contains(&w.samples),
            "PostgreSQL {major}: {} samples",
            w.samples
        );
        assert!(w.cpu_s.is_none() && w.io_latency.is_empty());
    }
    let sleep_share = share(s, Some("Timeout"), Some("PgSleep"));
    assert!(sleep_share > 0.95, "PostgreSQL {major}: sleeper {s:?}");
    let cpu_share = share(p, None, None);
    assert!(cpu_share > 0.9, "PostgreSQL {major}: spinner {p:?}");
    assert!(
        share(i, Some("Client"), Some("ClientRead")) > 0.99,
        "PostgreSQL {major}: idle {i:?}"
    );
    assert!(i.queries.is_empty(), "idle backends run no query: {i:?}");
    let q = &s.queries[0];
    assert!(q.samples as f64 >= 0.95 * s.samples as f64, "{s:?}");
    assert_eq!(q.top_waits[0].wait_event.as_deref(), Some("PgSleep"));
    if major >= 14 {
        assert!(
            want_id.is_some(),
            "PostgreSQL {major}: no query_id in pg_stat_activity"
        );
        assert_eq!(q.query_id, want_id, "PostgreSQL {major}: {q:?}");
        assert_eq!(
            q.query.as_deref(),
            Some("SELECT pg_sleep(30) /* sleeper */")
        );
    } else {
        assert_eq!(q.query_id, None);
        assert_eq!(
            q.query.as_deref(),
            Some("SELECT pg_sleep($1) /* sleeper */")
        );
    }
}

#[test]
fn wait_profile_on_every_major() {
    support::on_every_major(check);
}
