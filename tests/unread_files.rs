//! Issue 11 item 2: offsets and percentages come only from reads. An index opened before
//! the attach (its file position left at its end by the planner's `lseek(SEEK_END)` size
//! probe) and not read while traced shows no offset and no percent, and says so; the table
//! scanned meanwhile shows both.

mod support;

use support::trace::{file, progress, spawn_trace};
use support::Cluster;

const ROWS: i64 = 400_000;

fn unread_index(major: u32) {
    let mut c = Cluster::start_with(
        major,
        &[
            ("shared_buffers", "16MB"),
            ("max_parallel_workers_per_gather", "0"),
            ("synchronize_seqscans", "off"),
        ],
    );
    c.execute(
        "postgres",
        &format!(
            "CREATE TABLE t AS SELECT g, repeat(md5(g::text), 4) AS pad \
             FROM generate_series(1, {ROWS}) g; CREATE INDEX t_g ON t (g)"
        ),
    );
    c.execute("postgres", "VACUUM ANALYZE t");
    let path = |rel: &str| {
        c.psql("postgres", &format!("SELECT pg_relation_filepath('{rel}')"))[0][0]
            .clone()
            .unwrap()
    };
    let (table, index) = (path("t"), path("t_g"));
    // The table's last blocks, just written, would be found in shared buffers and never
    // read from the file: start from empty buffers.
    c.restart();
    let mut held = c.hold_backend("postgres");
    // Before the attach: an index scan opens the index (and probes its size).
    held.client
        .batch_execute(
            "SET enable_seqscan = off; SET enable_bitmapscan = off; \
             SELECT pad FROM t WHERE g = 5; \
             RESET enable_seqscan; RESET enable_bitmapscan; SET enable_indexscan = off",
        )
        .unwrap();
    let mut trace = spawn_trace(held.pid, "ebpf");
    trace.wait_ready();
    let n: i64 = held
        .client
        .query_one("SELECT count(*) FROM t WHERE length(pad) > 0", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, ROWS);
    let records = trace.finish();

    let index_files: Vec<_> = records
        .iter()
        .filter_map(file)
        .filter(|f| f.relation.as_deref() == Some(index.as_str()))
        .collect();
    assert!(
        !index_files.is_empty(),
        "PG {major}: the index is not shown open"
    );
    // The scene: the index's file position is its end, which was taken for progress.
    assert!(
        index_files
            .iter()
            .any(|f| f.pos.is_some() && f.pos == f.size && f.size > Some(0)),
        "PG {major}: the index's position is not at its end: {index_files:?}"
    );
    for f in &index_files {
        assert!(!f.read_since_attach, "PG {major}: {f:?}");
        assert_eq!((f.offset, f.percent), (None, None), "PG {major}: {f:?}");
        assert_eq!(f.bytes_read, 0, "PG {major}: {f:?}");
    }
    for p in records
        .iter()
        .filter_map(progress)
        .filter(|p| p.relation == index)
    {
        assert_eq!((p.position, p.percent), (None, None), "PG {major}: {p:?}");
    }
    // The table was read: its records carry both.
    let table_files: Vec<_> = records
        .iter()
        .filter_map(file)
        .filter(|f| f.relation.as_deref() == Some(table.as_str()) && f.read_since_attach)
        .collect();
    assert!(
        table_files
            .iter()
            .any(|f| f.offset.is_some() && f.percent.is_some()),
        "PG {major}: no table file record with an offset and a percent"
    );
    let best = records
        .iter()
        .filter_map(progress)
        .filter(|p| p.relation == table)
        .filter_map(|p| p.percent)
        .fold(0.0, f64::max);
    assert!(best >= 99.0, "PG {major}: the table reached only {best}%");
}

#[test]
fn an_open_but_unread_index_has_no_offset() {
    let want = support::majors();
    for major in [15, 18] {
        if want.contains(&major) {
            unread_index(major);
        } else {
            support::skip(
                &format!("unread index on PostgreSQL {major}"),
                "not in PG_TRACE_TEST_MAJORS",
            );
        }
    }
}
