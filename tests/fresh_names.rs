//! Names stay right through DDL with no checkpoint: the catalog is read from shared
//! buffers and the pg_xact SLRU, so a committed VACUUM FULL, TRUNCATE, CLUSTER, rename
//! swap, SET TABLESPACE or DROP is named as `pg_class` says within one interval, on every
//! major. Clusters run with `checkpoint_timeout = 1h` and are never checkpointed, so the
//! disk stays stale throughout.

mod support;

use pg_trace::model::{Model, Namer};
use pg_trace::naming::CatalogNamer;
use pg_trace::pgdata::{Catalog, DataDir};
use pg_trace::process::clog::XactBuffers;
use std::time::{Duration, Instant};
use support::Cluster;

/// The disk must stay a checkpoint behind for the whole test.
const STALE_DISK: &[(&str, &str)] = &[
    ("checkpoint_timeout", "1h"),
    ("max_wal_size", "4GB"),
    ("shared_buffers", "16MB"),
];

fn start(major: u32) -> Cluster {
    let mut conf = STALE_DISK.to_vec();
    if major >= 18 {
        // The traced backend must do its own reads (io workers would do them otherwise).
        conf.push(("io_method", "sync"));
    }
    Cluster::start_with(major, &conf)
}

fn poll(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `(schema, name)` of every relation with a file, by `pg_relation_filepath()`.
fn filepath(c: &Cluster, rel: &str) -> String {
    c.psql("postgres", &format!("SELECT pg_relation_filepath('{rel}')"))[0][0]
        .clone()
        .expect("a file path")
}

/// The namer of a live trace reads the catalog from memory, and sees a table created
/// since the last checkpoint as committed at once; the disk alone does not.
fn memory_catalog(major: u32) {
    let c = start(major);
    let held = c.hold_backend("postgres");
    let dd = DataDir::from_pid(held.pid).expect("data dir");
    let mut namer = CatalogNamer::live(&dd, held.pid, true).expect("namer");
    assert_eq!(
        namer.take_notes(),
        Vec::<String>::new(),
        "PG {major}: memory unreadable"
    );
    let cat = namer.resolver().catalog();
    assert!(cat.fresh, "PG {major}: catalog not from memory");
    assert!(
        cat.pages_from_memory > 0,
        "PG {major}: no page came from shared buffers"
    );
    c.execute("postgres", "CREATE TABLE fresh_one (i int)");
    let path = filepath(&c, "fresh_one");
    // Within one refresh (rate-limited at 100 ms), no checkpoint.
    poll("the new table's name", Duration::from_secs(2), || {
        namer.refresh();
        namer
            .resolver()
            .catalog()
            .listed()
            .any(|r| r.path == path && r.name == "fresh_one" && !r.pending)
    });
    // The disk alone has not caught up: the row is absent or its transaction "in
    // progress" as pg_xact on disk says (this is what the overlay is for).
    let disk = Catalog::load(&dd).expect("disk catalog");
    assert!(
        !disk.listed().any(|r| r.path == path && !r.pending),
        "PG {major}: the disk already knows fresh_one: the test proves nothing"
    );

    // Transaction status from the pg_xact SLRU: committed, aborted and running
    // transactions, none of them checkpointed.
    let mut xact = XactBuffers::open(held.pid, major, dd.control.blcksz as usize).expect("SLRU");
    let mut s = c.connect("postgres");
    let xid = |s: &mut postgres::Client| -> u32 {
        let x: String = s
            .query_one("SELECT txid_current()::text", &[])
            .unwrap()
            .get(0);
        x.parse::<u64>().unwrap() as u32
    };
    let committed = xid(&mut s);
    s.batch_execute("BEGIN").unwrap();
    let aborted = xid(&mut s);
    s.batch_execute("ROLLBACK; BEGIN").unwrap();
    let running = xid(&mut s);
    xact.forget();
    assert_eq!(
        xact.status_bits(committed).unwrap(),
        Some(1),
        "PG {major}: committed xid {committed}"
    );
    assert_eq!(
        xact.status_bits(aborted).unwrap(),
        Some(2),
        "PG {major}: aborted xid {aborted}"
    );
    assert_eq!(
        xact.status_bits(running).unwrap(),
        Some(0),
        "PG {major}: running xid {running}"
    );

    // A table created by a transaction still running: listed as pending, not committed.
    s.batch_execute("CREATE TABLE pend (i int)").unwrap();
    let pend: String = s
        .query_one("SELECT pg_relation_filepath('pend')", &[])
        .unwrap()
        .get(0);
    poll(
        "the uncommitted table, pending",
        Duration::from_secs(2),
        || {
            namer.refresh();
            namer
                .resolver()
                .catalog()
                .by_file_path(&pend)
                .is_some_and(|r| r.name == "pend" && r.pending)
        },
    );
    s.batch_execute("ROLLBACK").unwrap();
    poll("the rolled back table gone", Duration::from_secs(2), || {
        namer.refresh();
        namer.resolver().catalog().by_file_path(&pend).is_none()
    });

    // What the model named before is named again when the catalog changes: an open file
    // of a table renamed, then dropped.
    c.execute(
        "postgres",
        "CREATE TABLE dropme (i int); INSERT INTO dropme VALUES (1)",
    );
    let path = filepath(&c, "dropme");
    let mut model = Model::new(support::scripted::PID, 1 << 30);
    let mut now = 1_000_000_000u64;
    let label = |m: &Model| m.files.values().next().map(|f| f.named.label.clone());
    poll("dropme named", Duration::from_secs(2), || {
        namer.refresh();
        namer
            .resolver()
            .catalog()
            .by_file_path(&path)
            .is_some_and(|r| !r.pending)
    });
    model.apply(&support::scripted::open(now, 40, &path), &mut namer);
    assert_eq!(label(&model).as_deref(), Some("public.dropme"));
    c.execute("postgres", "ALTER TABLE dropme RENAME TO dropped");
    poll("the open file renamed", Duration::from_secs(2), || {
        now += 200_000_000;
        model.tick(now, &mut namer);
        label(&model).as_deref() == Some("public.dropped")
    });
    assert!(
        model
            .renamed
            .contains(&"renamed: public.dropme → public.dropped".to_string()),
        "{:?}",
        model.renamed
    );
    c.execute("postgres", "DROP TABLE dropped");
    let gone = format!("{path} (no longer in catalog: was public.dropped)");
    poll(
        "the dropped table's file unnamed",
        Duration::from_secs(2),
        || {
            now += 200_000_000;
            model.tick(now, &mut namer);
            label(&model).as_deref() == Some(gone.as_str())
        },
    );
    let f = model.files.values().next().unwrap();
    let r = f.named.relation.as_ref().unwrap();
    assert!(r.id.name.is_none() && !r.id.known, "{r:?}");
    drop(held);
}

#[test]
fn catalog_from_shared_memory_on_every_major() {
    support::on_every_major(memory_catalog);
}

/// What the traced session does between scans.
enum Cmd {
    /// `BEGIN; CREATE TABLE c AS ...` and stay in the transaction; the file path back.
    CtasBegin(std::sync::mpsc::Sender<String>),
    Commit,
}

/// The traced backend: scans its tables over and over (each is bigger than a quarter of
/// shared_buffers, so every scan reads its file through a small ring: file records every
/// interval), and runs the commands it is given between scans.
fn traced_loop(
    mut client: postgres::Client,
    rx: std::sync::mpsc::Receiver<Cmd>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> postgres::Client {
    use std::sync::atomic::Ordering;
    let mut tables = vec!["a", "b"];
    while !stop.load(Ordering::Relaxed) {
        match rx.try_recv() {
            Ok(Cmd::CtasBegin(tx)) => {
                client
                    .batch_execute(&format!("BEGIN; CREATE TABLE c AS {ROWS}"))
                    .expect("CREATE TABLE AS");
                let p: String = client
                    .query_one("SELECT pg_relation_filepath('c')", &[])
                    .expect("c's path")
                    .get(0);
                tx.send(p).unwrap();
            }
            Ok(Cmd::Commit) => {
                client.batch_execute("COMMIT").expect("COMMIT");
                tables.push("c");
            }
            Err(_) => {}
        }
        for t in &tables {
            // A table being rewritten or dropped: the error is expected.
            let _ = client.simple_query(&format!("SELECT count(*) FROM {t}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    client
}

/// Rows of a table of about 1 MB: more than a quarter of the 2 MB of shared buffers.
const ROWS: &str = "SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 4000) g";

/// The file records since `from`, for the relation whose main fork is `path`.
fn files_at(
    t: &support::trace::Trace,
    from: usize,
    path: &str,
) -> Vec<pg_trace::output::record::FileRecord> {
    t.records()
        .get(from..)
        .unwrap_or(&[])
        .iter()
        .filter_map(support::trace::file)
        .filter(|f| f.relation.as_deref() == Some(path))
        .cloned()
        .collect()
}

/// Within a few intervals of the commit (records since `mark`), the file at `path` is named
/// `public.<name>`, and every later record of it says so too. Returns the lag.
///
/// Records of a file appear only when the traced backend touches it, which on a loaded
/// machine can take a while after the commit: the lag is counted from the commit or from
/// the file's first record, whichever is later, and must stay within a few intervals; the
/// wait for the first record is bounded separately (liveness, not naming).
fn named(
    t: &support::trace::Trace,
    major: u32,
    step: &str,
    mark: usize,
    path: &str,
    name: &str,
) -> Duration {
    let t0 = Instant::now();
    let right = |f: &pg_trace::output::record::FileRecord| {
        f.schema.as_deref() == Some("public")
            && f.name.as_deref() == Some(name)
            && f.known == Some(true)
    };
    let mut first_seen: Option<Instant> = None;
    loop {
        let recs = files_at(t, mark, path);
        if !recs.is_empty() && first_seen.is_none() {
            first_seen = Some(Instant::now());
        }
        if let Some(i) = recs.iter().position(right) {
            let lag = first_seen.map_or(Duration::ZERO, |f| f.elapsed());
            // Settle for two intervals, then nothing after the first right record may
            // name it otherwise.
            std::thread::sleep(INTERVAL * 2);
            let recs = files_at(t, mark, path);
            if let Some(bad) = recs[i..].iter().find(|f| !right(f)) {
                panic!(
                    "PG {major} {step}: {path} named {:?} after it was named public.{name}",
                    bad.object
                );
            }
            eprintln!(
                "PG {major} {step}: {path} named public.{name} {lag:?} after its first record ({:?} after the commit)",
                t0.elapsed() - INTERVAL * 2
            );
            return lag;
        }
        let seen: Vec<_> = recs.iter().map(|f| f.object.clone()).collect();
        if let Some(f) = first_seen {
            assert!(
                f.elapsed() < NAMING_BOUND,
                "PG {major} {step}: {path} not named public.{name} within {NAMING_BOUND:?} of its first record; named {seen:?}"
            );
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "PG {major} {step}: no record of {path} in 60 s (the traced backend does not read it?)"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A name wrong for longer than this after the commit is a failure: a refresh runs every
/// interval, and the output of the next interval carries its names.
const NAMING_BOUND: Duration = Duration::from_millis(200 * 5);

/// pg_trace's `--interval` in the support harness.
const INTERVAL: Duration = Duration::from_millis(200);

fn ddl_while_traced(major: u32) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc};
    let mut conf = STALE_DISK.to_vec();
    conf.retain(|(k, _)| *k != "shared_buffers");
    conf.push(("shared_buffers", "2MB"));
    if major >= 18 {
        conf.push(("io_method", "sync"));
    }
    let c = Cluster::start_with(major, &conf);
    let spc_dir = c.make_dir("spc");
    c.execute(
        "postgres",
        &format!("CREATE TABLE a AS {ROWS}; CREATE INDEX a_g ON a (g); CREATE TABLE b AS {ROWS};"),
    );
    c.execute(
        "postgres",
        &format!("CREATE TABLESPACE spc LOCATION '{}'", spc_dir.display()),
    );
    let held = c.hold_backend("postgres");
    let pid = held.pid;
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let s = Arc::clone(&stop);
    let looper = std::thread::spawn(move || traced_loop(held.client, rx, s));
    let mut trace = support::trace::spawn_trace(pid, "auto");
    trace.wait_ready();
    let pa = filepath(&c, "a");
    let mark = 0;
    named(&trace, major, "attach", mark, &pa, "a");

    let ddl = |sql: &str| {
        c.execute("postgres", sql);
    };
    let mut lags = Vec::new();
    for (step, sql, rel) in [
        ("VACUUM FULL", "VACUUM FULL a", "a"),
        ("TRUNCATE", "TRUNCATE b", "b"),
        ("CLUSTER", "CLUSTER a USING a_g", "a"),
    ] {
        let mark = trace.records().len();
        ddl(sql);
        if step == "TRUNCATE" {
            ddl(&format!("INSERT INTO b {ROWS}"));
        }
        let p = filepath(&c, rel);
        lags.push(named(&trace, major, step, mark, &p, rel));
    }

    // The three-way swap: two open files renamed at once, no file changes.
    let (pa, pb) = (filepath(&c, "a"), filepath(&c, "b"));
    let mark = trace.records().len();
    ddl("ALTER TABLE a RENAME TO tmp; ALTER TABLE b RENAME TO a; ALTER TABLE tmp RENAME TO b;");
    assert_eq!(
        (filepath(&c, "b"), filepath(&c, "a")),
        (pa.clone(), pb.clone())
    );
    lags.push(named(&trace, major, "rename swap", mark, &pa, "b"));
    lags.push(named(&trace, major, "rename swap", mark, &pb, "a"));

    let mark = trace.records().len();
    ddl("ALTER TABLE a SET TABLESPACE spc");
    let p = filepath(&c, "a");
    assert!(p.starts_with("pg_tblspc/"), "{p}");
    lags.push(named(&trace, major, "SET TABLESPACE", mark, &p, "a"));

    // CREATE TABLE AS in progress, by the traced backend: its new file is shown with the
    // name it will have, marked uncommitted (known: false), never as a committed table.
    let mark = trace.records().len();
    let (ptx, prx) = mpsc::channel();
    tx.send(Cmd::CtasBegin(ptx)).unwrap();
    let pc = prx.recv_timeout(Duration::from_secs(60)).expect("c's path");
    poll("the uncommitted file's record", INTERVAL * 10, || {
        !files_at(&trace, mark, &pc).is_empty()
    });
    std::thread::sleep(INTERVAL * 2);
    // The file is created before its pg_class row is inserted: "not in catalog yet" is
    // right until then; after, "(uncommitted)". Never a committed table.
    for f in files_at(&trace, mark, &pc) {
        assert!(
            f.known == Some(false)
                && (f.object.ends_with("(uncommitted)")
                    || f.object.ends_with("(not in catalog yet)")),
            "PG {major}: an uncommitted CREATE TABLE AS named {:?} (known {:?})",
            f.object,
            f.known
        );
    }
    let mark = trace.records().len();
    tx.send(Cmd::Commit).unwrap();
    lags.push(named(
        &trace,
        major,
        "CREATE TABLE AS committed",
        mark,
        &pc,
        "c",
    ));

    // DROP: the traced backend closes the file when it next runs a query (its scans of b
    // fail from then on). Any record of the file from two intervals after the commit on
    // must not call it public.b.
    let pb = filepath(&c, "b");
    ddl("DROP TABLE b");
    // The interval in which the DROP committed may still have named it.
    std::thread::sleep(INTERVAL * 2);
    let mark = trace.records().len();
    std::thread::sleep(INTERVAL * 4);
    for f in files_at(&trace, mark, &pb) {
        assert!(
            f.name.is_none() && f.known != Some(true),
            "PG {major}: {pb} named {:?} after DROP TABLE b",
            f.object
        );
    }

    stop.store(true, Ordering::Relaxed);
    let client = looper.join().expect("traced loop");
    let records = trace.finish();
    assert!(records.iter().any(|r| support::trace::file(r).is_some()));
    drop(client);
    let worst = lags.iter().max().copied().unwrap_or_default();
    eprintln!("PG {major}: worst lag {worst:?}");
}

/// One major after the other: the lag measured is pg_trace's, not that of seven clusters
/// scanning at once on two cores.
#[test]
fn ddl_named_within_an_interval_on_every_major() {
    for major in support::majors() {
        ddl_while_traced(major);
    }
}

/// Without shared memory the names come from the disk, and that is said once: with
/// `--no-memory`, and when no process of the cluster can be read.
fn disk_fallback(major: u32) {
    let mut c = start(major);
    let held = c.hold_backend("postgres");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pg_trace"))
        .args(["-p", &held.pid.to_string(), "--no-tui", "--format", "json"])
        .args(["--interval", "200", "--duration", "1", "--no-memory"])
        .output()
        .expect("run pg_trace");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "PG {major}: {stderr}");
    let notes: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("names from the on-disk catalog: may lag DDL until a checkpoint"))
        .collect();
    assert_eq!(
        notes.len(),
        1,
        "PG {major}: want one disk note, stderr:\n{stderr}"
    );
    assert!(notes[0].contains("--no-memory"), "{}", notes[0]);

    // A live trace with memory: no such note.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pg_trace"))
        .args(["-p", &held.pid.to_string(), "--no-tui", "--format", "json"])
        .args(["--interval", "200", "--duration", "1"])
        .output()
        .expect("run pg_trace");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("names from the on-disk catalog"),
        "PG {major}: {stderr}"
    );

    // The server gone: nothing to read memory through, the disk still names.
    let dd = DataDir::from_pid(held.pid).expect("data dir");
    drop(held);
    c.stop();
    let mut namer = CatalogNamer::live(&dd, i32::MAX, true).expect("namer from disk");
    let notes = namer.take_notes();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].starts_with("names from the on-disk catalog"),
        "{notes:?}"
    );
    assert!(!namer.resolver().catalog().fresh);
    assert!(namer
        .resolver()
        .catalog()
        .listed()
        .any(|r| r.name == "pg_class"));
}

#[test]
fn disk_fallback_is_said_on_every_major() {
    support::on_every_major(disk_fallback);
}

/// What the per-interval re-read costs, for docs/overhead.md:
/// `FRESH_TABLES=10000 cargo test --release --test fresh_names refresh_cost -- --ignored --nocapture`.
#[test]
#[ignore]
fn refresh_cost() {
    let major = *support::majors().last().unwrap();
    let tables: u32 = std::env::var("FRESH_TABLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let c = Cluster::start_with(
        major,
        &[("checkpoint_timeout", "1h"), ("max_wal_size", "4GB")],
    );
    for from in (1..=tables).step_by(500) {
        let to = (from + 499).min(tables);
        c.execute(
            "postgres",
            &format!("DO $$ BEGIN FOR i IN {from}..{to} LOOP EXECUTE format('CREATE TABLE t%s (i int PRIMARY KEY, s text)', i); END LOOP; END $$"),
        );
    }
    // Steady state: the bulk creation's dirty pages written (this test is about cost).
    c.execute("postgres", "CHECKPOINT");
    let held = c.hold_backend("postgres");
    let dd = DataDir::from_pid(held.pid).expect("data dir");
    let t = Instant::now();
    let disk = Catalog::load(&dd).expect("disk");
    let disk_time = t.elapsed();
    let mut namer = CatalogNamer::live(&dd, held.pid, true).expect("namer");
    let mut times = Vec::new();
    for _ in 0..7 {
        std::thread::sleep(Duration::from_millis(110));
        let t = Instant::now();
        namer.refresh();
        times.push(t.elapsed());
    }
    times.sort();
    eprintln!(
        "{} of 7 refreshes found nothing changed",
        namer.resolver().refreshes_skipped()
    );
    // And re-reads forced by a change each time (a table created between refreshes).
    let mut changed = Vec::new();
    for i in 0..5 {
        c.execute("postgres", &format!("CREATE TABLE x{i} (i int)"));
        std::thread::sleep(Duration::from_millis(110));
        let t = Instant::now();
        assert!(namer.refresh(), "a new table is a change");
        changed.push(t.elapsed());
    }
    changed.sort();
    eprintln!(
        "re-read after a change: median {:?}",
        changed[changed.len() / 2]
    );
    let cat = namer.resolver().catalog();
    eprintln!(
        "PG {major}, {tables} tables ({} relations): disk-only load {disk_time:?}; refresh with nothing changed median {:?} (min {:?}, max {:?}), {} pages from shared buffers",
        disk.relations.len(),
        times[times.len() / 2],
        times[0],
        times[times.len() - 1],
        cat.pages_from_memory
    );
}

/// Memory as a hostile source: whatever pages and transaction statuses an overlay hands
/// over, a catalog read never panics; pages whose header does not check out are not used
/// (the disk's are), so names stay the disk's.
struct Hostile {
    page: Vec<u8>,
    blocks: Option<u32>,
    status: Option<pg_trace::pgdata::xact::XidStatus>,
}

impl pg_trace::pgdata::catalog::Overlay for Hostile {
    fn page(&mut self, _: (u32, u32, u32), _: u32, page: &mut [u8]) -> bool {
        let n = page.len().min(self.page.len());
        page[..n].copy_from_slice(&self.page[..n]);
        true
    }
    fn blocks(&mut self, _: (u32, u32, u32)) -> Option<u32> {
        self.blocks
    }
    fn xid_status(&mut self, _: u32) -> Option<pg_trace::pgdata::xact::XidStatus> {
        self.status
    }
    fn page_lsn(&mut self, _: (u32, u32, u32), _: u32) -> Option<u64> {
        None
    }
    fn fresh(&self) -> bool {
        true
    }
}

#[test]
fn hostile_memory_never_panics() {
    use pg_trace::pgdata::xact::XidStatus;
    use proptest::prelude::*;
    let major = *support::majors().last().unwrap();
    let c = start(major);
    let dd = DataDir::open(&c.datadir).expect("data dir");
    let disk = Catalog::load(&dd).expect("disk");
    let names = |cat: &Catalog| -> Vec<(String, String)> {
        cat.listed()
            .map(|r| (r.path.clone(), r.qualified()))
            .collect()
    };
    let statuses = prop::sample::select(vec![
        None,
        Some(XidStatus::InProgress),
        Some(XidStatus::Committed),
        Some(XidStatus::Aborted),
        Some(XidStatus::SubCommitted),
    ]);
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 64,
        ..Default::default()
    });
    runner
        .run(
            &(
                proptest::collection::vec(any::<u8>(), 0..8192),
                proptest::option::of(0u32..8),
                statuses,
            ),
            |(page, blocks, status)| {
                let header_ok = pg_trace::pgdata::page::check_page(&page, 8192).is_ok();
                let mut o = Hostile {
                    page,
                    blocks,
                    status,
                };
                let got = Catalog::load_with(&dd, &mut o);
                // Garbage pages are never used: with the statuses left to the disk, the
                // names are the disk's.
                if !header_ok && status.is_none() {
                    prop_assert_eq!(names(&got.expect("catalog")), names(&disk));
                }
                Ok(())
            },
        )
        .unwrap();
}

/// `resolve` and `catalog` name from the running server's memory too: after a VACUUM FULL
/// and a rename with no checkpoint, the new file and the new name are there at once, by
/// `-p PID` and by `--pgdata` alone (through the postmaster).
fn subcommands_fresh(major: u32) {
    let c = start(major);
    c.execute(
        "postgres",
        "CREATE TABLE sub_old AS SELECT g FROM generate_series(1, 1000) g",
    );
    c.execute("postgres", "CHECKPOINT");
    c.execute("postgres", "VACUUM FULL sub_old");
    c.execute("postgres", "ALTER TABLE sub_old RENAME TO sub_new");
    let path = filepath(&c, "sub_new");
    let held = c.hold_backend("postgres");
    let pgdata = c.base_dir().join("data");
    let bin = env!("CARGO_BIN_EXE_pg_trace");
    let by_pid = ["-p".to_string(), held.pid.to_string()];
    let by_dir = ["--pgdata".to_string(), pgdata.display().to_string()];
    for target in [&by_pid, &by_dir] {
        let out = std::process::Command::new(bin)
            .arg("resolve")
            .args(target)
            .arg(&path)
            .output()
            .expect("run pg_trace resolve");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "PG {major} {target:?}: {stderr}");
        assert!(
            stdout.contains("public.sub_new") && !stdout.contains("not in catalog"),
            "PG {major} {target:?}: resolve {path}:\n{stdout}{stderr}"
        );
        assert!(!stderr.contains("on-disk catalog"), "PG {major}: {stderr}");
        let out = std::process::Command::new(bin)
            .arg("catalog")
            .args(target)
            .args(["--format", "json"])
            .output()
            .expect("run pg_trace catalog");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "PG {major}");
        let line = stdout
            .lines()
            .find(|l| l.contains("\"sub_new\""))
            .unwrap_or_else(|| panic!("PG {major} {target:?}: sub_new not listed"));
        assert!(line.contains(&path), "PG {major}: {line} (want {path})");
        assert!(
            !stdout.contains("\"sub_old\""),
            "PG {major}: old name listed"
        );
    }
}

#[test]
fn subcommands_read_fresh_names() {
    let major = *support::majors().last().unwrap();
    subcommands_fresh(major);
}
