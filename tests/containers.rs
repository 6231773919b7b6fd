//! A server in namespaces of its own (mount, pid, net, uts, ipc), its data directory at a
//! path that exists only inside (issue 12 item 5), seen from the host: `catalog -p`,
//! `ps -p` and `ps --pgdata HOSTPATH` (host pids, with the namespace's), `probes -p`, a
//! line-mode eBPF trace of a sequential scan (the table named, 100 % reached), and the
//! picker's list (the cluster under its container). Debian's PG15 (USDT) and one
//! npm-packaged major.

mod support;

use pg_trace::output::record::{ProcessRecord, Record};
use pg_trace::process::list::Lister;
use std::process::Command;
use std::time::{Duration, Instant};
use support::container::{ns_pid_of, Container, HOSTNAME, INSIDE, TS_INSIDE};
use support::trace::{file, progress, spawn_trace};

const BIN: &str = env!("CARGO_BIN_EXE_pg_trace");
const ROWS: i64 = 200_000;

/// `pg_trace ARGS --format json`: its records, or a panic with its stderr.
fn json(args: &[&str]) -> Vec<Record> {
    let out = Command::new(BIN)
        .args(args)
        .args(["--format", "json"])
        .output()
        .expect("run pg_trace");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "pg_trace {args:?}: {stderr}");
    support::trace::parse_records(&String::from_utf8_lossy(&out.stdout))
}

fn processes(records: &[Record]) -> Vec<ProcessRecord> {
    records
        .iter()
        .filter_map(support::trace::process)
        .cloned()
        .collect()
}

/// `ps` rows: host pids (children of the host's postmaster), each with the pid the
/// namespace gives it; the held backend among them.
fn check_ps(what: &str, rows: &[ProcessRecord], c: &Container, backend: (i32, i32)) {
    assert!(!rows.is_empty(), "{what}: no rows");
    let b = rows
        .iter()
        .find(|r| r.pid == backend.0)
        .unwrap_or_else(|| panic!("{what}: backend {backend:?} not listed by host pid: {rows:#?}"));
    assert_eq!(b.ns_pid, Some(backend.1), "{what}: {b:?}");
    assert_eq!(b.backend_type.as_deref(), Some("client backend"));
    // Every row a host pid of the container's server (a process gone since, a closing
    // connection, cannot be asked).
    for r in rows {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", r.pid)) else {
            continue;
        };
        let parent: Option<i32> = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().nth(1)?.parse().ok());
        assert_eq!(
            parent,
            Some(c.postmaster),
            "{what}: {r:?} is no child of the postmaster"
        );
        if let Some(n) = ns_pid_of(r.pid) {
            assert_eq!(r.ns_pid, Some(n), "{what}: {r:?}");
        }
    }
}

fn check(major: u32) {
    let Some(mut c) = Container::start(major) else {
        return;
    };
    assert!(
        !std::path::Path::new(INSIDE).exists(),
        "{INSIDE} exists on the host: the test would prove nothing"
    );
    c.execute(
        "postgres",
        &format!(
            "CREATE TABLE big AS SELECT g, repeat(md5(g::text), 4) AS pad \
             FROM generate_series(1, {ROWS}) g"
        ),
    );
    // A tablespace at a path of the container only, holding a database: its catalog is
    // read through the tablespace's link, which names the container's path.
    c.execute(
        "postgres",
        &format!("CREATE TABLESPACE ts LOCATION '{TS_INSIDE}'"),
    );
    c.execute("postgres", "CREATE DATABASE tsdb TABLESPACE ts");
    c.execute("tsdb", "CREATE TABLE in_ts (i int)");
    let pm = c.postmaster.to_string();
    let datadir = c.datadir.display().to_string();

    // catalog -p: every database, the tablespace's too.
    let rels: Vec<_> = json(&["catalog", "-p", &pm])
        .into_iter()
        .filter_map(|r| match r {
            Record::Relation(r) => Some(r),
            _ => None,
        })
        .collect();
    let big = rels
        .iter()
        .find(|r| r.name == "big" && r.database.as_deref() == Some("postgres"))
        .unwrap_or_else(|| panic!("PG{major}: catalog -p lacks public.big"));
    assert_eq!(
        (big.schema.as_str(), big.kind.as_str()),
        ("public", "table")
    );
    let in_ts = rels
        .iter()
        .find(|r| r.name == "in_ts")
        .unwrap_or_else(|| panic!("PG{major}: catalog -p lacks tsdb's in_ts"));
    assert!(in_ts.path.starts_with("pg_tblspc/"), "{in_ts:?}");

    // ps -p and ps --pgdata HOSTPATH: host pids, and the namespace's.
    let (held, host, ns) = c.hold_backend("postgres");
    assert_ne!(host, ns);
    check_ps(
        "ps -p",
        &processes(&json(&["ps", "-p", &host.to_string()])),
        &c,
        (host, ns),
    );
    check_ps(
        "ps --pgdata",
        &processes(&json(&["ps", "--pgdata", &datadir])),
        &c,
        (host, ns),
    );
    drop(held);

    // probes -p: the binary read through the process, whatever its path inside.
    let probes = json(&["probes", "-p", &pm]);
    let summary = probes
        .iter()
        .find_map(|r| match r {
            Record::Probes(p) => Some(p.clone()),
            _ => None,
        })
        .expect("probes record");
    if major == 15 && c.bin_dir().starts_with("/usr/lib/postgresql") {
        assert!(
            summary.count > 0,
            "PG{major}: Debian's build has USDT probes: {summary:?}"
        );
        assert!(probes
            .iter()
            .any(|r| matches!(r, Record::Probe(p) if p.name == "query__start")));
    }

    // resolve -p: a path as the server opens it, in its own file system.
    let inside_path = format!("{INSIDE}/{}", big.path);
    let resolved = json(&["resolve", "-p", &pm, &inside_path]);
    match resolved.first() {
        Some(Record::Path(p)) => assert_eq!(p.relpath.as_deref(), Some(big.path.as_str())),
        other => panic!("PG{major}: resolve {inside_path}: {other:?}"),
    }

    // A line-mode trace of a sequential scan from empty shared buffers.
    c.restart();
    let (mut held, host, _) = c.hold_backend("postgres");
    let rel_path: String = held
        .query_one("SELECT pg_relation_filepath('big')", &[])
        .unwrap()
        .get(0);
    let mut trace = spawn_trace(host, "ebpf");
    trace.wait_ready();
    let n: i64 = held
        .query_one("SELECT count(*) FROM big WHERE length(pad) > 0", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, ROWS);
    let records = trace.finish();
    let attach = records
        .iter()
        .find_map(support::trace::attach)
        .expect("attach record");
    assert_eq!(attach.backend, "ebpf", "{attach:?}");
    assert_eq!(
        attach.datadir, INSIDE,
        "the data directory as the server names it"
    );
    let files: Vec<_> = records
        .iter()
        .filter_map(file)
        .filter(|f| f.relation.as_deref() == Some(rel_path.as_str()))
        .collect();
    assert!(
        !files.is_empty(),
        "PG{major}: {rel_path} never shown as a file"
    );
    for f in &files {
        assert_eq!(
            (f.schema.as_deref(), f.name.as_deref(), f.kind.as_deref()),
            (Some("public"), Some("big"), Some("table")),
            "{f:?}"
        );
    }
    let best = records
        .iter()
        .filter_map(progress)
        .filter(|p| p.relation == rel_path)
        .filter_map(|p| p.percent)
        .fold(0.0, f64::max);
    assert!(best >= 99.9, "PG{major}: the scan reached only {best} %");

    // USDT (Debian's build has the probes): uprobes on the container's binary, and the
    // buffer reads they report named.
    if major == 15 && c.bin_dir().starts_with("/usr/lib/postgresql") {
        let mut trace = spawn_trace(host, "usdt");
        trace.wait_ready();
        let _: i64 = held
            .query_one("SELECT count(*) FROM big", &[])
            .unwrap()
            .get(0);
        let records = trace.finish();
        let a = records.iter().find_map(support::trace::attach).unwrap();
        assert!(a.usdt.active, "PG{major}: USDT off in a container: {a:?}");
        assert!(
            records
                .iter()
                .filter_map(progress)
                .any(|p| p.relation == rel_path && p.name.as_deref() == Some("big")),
            "PG{major}: USDT saw no named read of big"
        );
    }
    drop(held);

    // The picker's list: the cluster by the container's path, under its container, its
    // processes by host pid with the namespace's.
    let mut lister = Lister::new();
    let t = Instant::now();
    let cluster = loop {
        let all = lister.sample();
        if let Some(cl) = all.into_iter().find(|cl| cl.postmaster == c.postmaster) {
            if cl.processes.iter().any(|p| p.memory.is_some()) {
                break cl;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "PG{major}: cluster not listed"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        cluster.datadir.as_deref(),
        Some(std::path::Path::new(INSIDE))
    );
    assert_eq!(cluster.port, Some(c.port));
    assert_eq!(cluster.major, Some(major));
    assert_eq!(cluster.container, Some(format!("host {HOSTNAME}")));
    assert!(cluster
        .label()
        .contains(&format!("[host {HOSTNAME}] {INSIDE}")));
    let first = &cluster.processes[0];
    assert_eq!(
        (first.pid, first.ns_pid, first.title.backend_type.as_str()),
        (c.postmaster, Some(c.ns_postmaster), "postmaster")
    );
    // (A process gone since the sample, a closing backend, cannot be asked.)
    for p in &cluster.processes {
        if let Some(n) = ns_pid_of(p.pid) {
            assert_eq!(p.ns_pid, Some(n), "{p:?}");
        }
    }
    eprintln!(
        "PG{major}: in a container, catalog, ps, probes, a scan to {best:.1} % and the picker"
    );
}

#[test]
fn debian_15_in_a_container() {
    check(15);
}

#[test]
fn npm_18_in_a_container() {
    check(18);
}
