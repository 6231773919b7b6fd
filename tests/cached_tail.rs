//! A table loaded by INSERT leaves its tail in shared buffers; a later sequential scan reads
//! the head from the file and finds the tail there, never reading it. A percent from file
//! reads alone stopped where the resident stretch starts (about 72 % on PG 18). When the
//! query ends and every block after the last read is resident, the scan is reported
//! complete: 100 %, `estimate`, and how much came from shared buffers — never more than
//! EXPLAIN's shared hits. A LIMIT that stops early is not extended (the rest is not all
//! resident). Every major 12–18 (18 with io_method=worker); Debian's 15 through `auto`, whose
//! USDT probes see the hits themselves.

mod support;

use pg_trace::output::record::{ProgressRecord, Record};
use support::trace::{attach, progress, spawn_trace_with, stats, Trace};
use support::Cluster;

/// About 33 MB: twice shared_buffers (16MB), so the load evicts its own head and keeps
/// its tail, and a scan goes through a small ring of buffers.
const ROWS: i64 = 200_000;
const BLOCK: u64 = 8192;

fn cluster(major: u32) -> (Cluster, String, u64) {
    let mut conf = vec![
        ("shared_buffers", "16MB"),
        ("max_parallel_workers_per_gather", "0"),
        // The scan reads the head before the tail whatever other scans do.
        ("synchronize_seqscans", "off"),
    ];
    if major >= 18 {
        conf.push(("io_method", "worker"));
    }
    let c = Cluster::start_with(major, &conf);
    c.execute("postgres", "CREATE EXTENSION pg_buffercache");
    c.execute("postgres", "CREATE TABLE t (g int, pad text)");
    // A plain INSERT has no ring: its last blocks stay in shared buffers.
    c.execute(
        "postgres",
        &format!(
            "INSERT INTO t SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, {ROWS}) g"
        ),
    );
    c.execute("postgres", "CHECKPOINT");
    let rel = c.psql("postgres", "SELECT pg_relation_filepath('t')")[0][0]
        .clone()
        .unwrap();
    let size: u64 = c.psql("postgres", "SELECT pg_relation_size('t')")[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    (c, rel, size)
}

/// Blocks of t's main fork in shared buffers, per pg_buffercache.
fn resident(c: &Cluster) -> Vec<u64> {
    c.psql(
        "postgres",
        "SELECT relblocknumber FROM pg_buffercache \
         WHERE relfilenode = pg_relation_filenode('t') AND relforknumber = 0 \
           AND reldatabase = (SELECT oid FROM pg_database WHERE datname = current_database()) \
         ORDER BY 1",
    )
    .into_iter()
    .filter_map(|r| r[0].as_deref().and_then(|s| s.parse().ok()))
    .collect()
}

fn intervals(r: &[Record]) -> usize {
    r.iter().filter(|r| stats(r).is_some()).count()
}

/// `n` more intervals after the ones seen so far.
fn wait_intervals(trace: &mut Trace, n: usize) {
    let seen = intervals(&trace.records());
    trace.wait_for("more intervals", |r| intervals(r) >= seen + n);
}

fn final_progress(records: &[Record], rel: &str) -> ProgressRecord {
    records
        .iter()
        .rev()
        .filter_map(progress)
        .find(|p| p.relation == rel && p.r#final)
        .unwrap_or_else(|| panic!("no final progress record of {rel}"))
        .clone()
}

/// `hit=N` of the first `Buffers:` line of an EXPLAIN (ANALYZE, BUFFERS): the top node's.
fn shared_hits(plan: &[String]) -> u64 {
    let line = plan
        .iter()
        .find(|l| l.trim_start().starts_with("Buffers: shared"))
        .unwrap_or_else(|| panic!("no Buffers line in {plan:#?}"));
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("hit="))
        .map_or(0, |n| n.trim_end_matches(',').parse().unwrap())
}

/// Trace `sql` on a fresh session; the records and the rows it returned as text.
fn traced(c: &Cluster, backend: &str, sql: &str) -> (Vec<Record>, Vec<String>) {
    let mut b = c.hold_backend("postgres");
    let mut trace = spawn_trace_with(b.pid, backend, &[]);
    // Attached, and io workers picked up (looked for once per interval).
    trace.wait_for("three intervals", |r| intervals(r) >= 3);
    let rows: Vec<String> = b
        .client
        .simple_query(sql)
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    // The session is idle now: a status sample says so within an interval.
    wait_intervals(&mut trace, 3);
    (trace.finish(), rows)
}

fn check(major: u32, backend: &str) {
    if !support::majors().contains(&major) {
        support::skip(
            &format!("cached_tail on PostgreSQL {major}"),
            "PG_TRACE_TEST_MAJORS excludes it",
        );
        return;
    }
    let (c, rel, size) = cluster(major);
    let blocks = size / BLOCK;
    let res = resident(&c);
    eprintln!(
        "PG {major}: {blocks} blocks, {} resident after the load (from block {:?})",
        res.len(),
        res.first()
    );
    assert!(
        res.contains(&(blocks - 1)) && (res.len() as u64) * 10 >= blocks,
        "PG {major}: the load did not leave the tail resident: {} of {blocks} blocks",
        res.len()
    );
    assert!(
        !res.contains(&0),
        "PG {major}: the head is resident too: the scan would not read it"
    );

    // The scan: the head from the file, the tail found in shared buffers.
    let (records, plan) = traced(
        &c,
        backend,
        "EXPLAIN (ANALYZE, BUFFERS) SELECT count(*) FROM t WHERE length(pad) > 0",
    );
    let hits = shared_hits(&plan);
    let usdt = records
        .iter()
        .find_map(attach)
        .is_some_and(|a| a.usdt.active);
    let p = final_progress(&records, &rel);
    eprintln!(
        "PG {major} (usdt {usdt}): {:?} %, estimate {}, {} bytes read, {} from shared buffers, \
         EXPLAIN shared hit={hits}",
        p.percent, p.estimate, p.bytes_read, p.from_shared_buffers_bytes
    );
    assert!(hits > 0, "PG {major}: no hits, nothing to test: {plan:#?}");
    assert_eq!(p.percent, Some(100.0), "PG {major}: scan finished: {p:?}");
    assert_eq!(p.position, Some(size), "{p:?}");
    if usdt {
        // buffer__read__done saw every hit: the position is exact, nothing guessed.
        assert!(p.blocks_hit >= hits, "{p:?}");
        assert!(!p.estimate, "{p:?}");
    } else {
        assert!(
            p.estimate,
            "the end from shared buffers is an estimate: {p:?}"
        );
        let cached = p.from_shared_buffers_bytes / BLOCK;
        assert!(
            cached <= hits,
            "PG {major}: {cached} blocks said from shared buffers, EXPLAIN counts {hits} hits"
        );
        assert!(
            cached * 10 >= hits * 9,
            "PG {major}: only {cached} of {hits} hit blocks said from shared buffers"
        );
        assert!(
            p.bytes_read + p.from_shared_buffers_bytes >= size - 16 * BLOCK,
            "PG {major}: read and cached do not add up to the table: {p:?}"
        );
    }

    // A LIMIT stops after a few blocks read from the file; the rest is not all resident
    // (the middle was evicted by the load), so it is not extended.
    let res = resident(&c);
    let (records, _) = traced(&c, backend, "SELECT g FROM t LIMIT 100");
    let p = final_progress(&records, &rel);
    eprintln!(
        "PG {major} LIMIT: {:?} %, estimate {}, {} resident blocks before",
        p.percent,
        p.estimate,
        res.len()
    );
    assert!((res.len() as u64) < blocks - 1, "everything resident");
    assert!(
        p.percent.is_some_and(|pc| pc < 50.0),
        "PG {major}: a LIMIT shown as {:?} %",
        p.percent
    );
    assert_eq!(p.from_shared_buffers_bytes, 0, "{p:?}");
    assert!(!p.estimate, "{p:?}");
}

#[test]
fn resident_tail_pg18_io_workers() {
    check(18, "ebpf");
}

#[test]
fn resident_tail_pg12() {
    check(12, "ebpf");
}

#[test]
fn resident_tail_pg15_usdt() {
    check(15, "auto");
}

#[test]
fn resident_tail_pg13() {
    check(13, "ebpf");
}

#[test]
fn resident_tail_pg14() {
    check(14, "ebpf");
}

#[test]
fn resident_tail_pg16() {
    check(16, "ebpf");
}

#[test]
fn resident_tail_pg17() {
    check(17, "ebpf");
}

/// Without memory reading nobody can tell whether the rest was in shared buffers, nor
/// (no status from memory) when the query ended: once the backend exits, the scan stays
/// where its reads ended and says the rest may be there.
#[test]
fn no_memory_says_the_rest_may_be_in_shared_buffers() {
    let Some(&major) = support::majors().iter().find(|&&m| m != 15) else {
        support::skip("no_memory_says_...", "no major but 15 selected");
        return;
    };
    let (c, rel, size) = cluster(major);
    let mut b = c.hold_backend("postgres");
    let mut trace = spawn_trace_with(b.pid, "ebpf", &["--no-memory"]);
    trace.wait_for("three intervals", |r| intervals(r) >= 3);
    b.client
        .simple_query("SELECT count(*) FROM t WHERE length(pad) > 0")
        .unwrap();
    // The session ends: its backend exits, and so does the trace.
    drop(b);
    trace.wait_for("the summary", |r| {
        r.iter().any(|r| support::trace::summary(r).is_some())
    });
    let records = trace.finish();
    let p = final_progress(&records, &rel);
    eprintln!("PG {major} --no-memory: {:?} % of {size}", p.percent);
    assert!(p.percent.is_some_and(|pc| pc < 100.0), "{p:?}");
    assert!(p.rest_may_be_in_shared_buffers, "{p:?}");
    assert_eq!(p.from_shared_buffers_bytes, 0, "{p:?}");
    assert!(!p.estimate, "{p:?}");
}
