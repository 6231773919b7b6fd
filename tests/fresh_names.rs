//! Names stay right through DDL with no checkpoint: the catalog is read from shared
//! buffers and the pg_xact SLRU, so a committed VACUUM FULL, TRUNCATE, CLUSTER, rename
//! swap, SET TABLESPACE or DROP is named as `pg_class` says within one interval, on every
//! major. Clusters run with `checkpoint_timeout = 1h` and are never checkpointed, so the
//! disk stays stale throughout.

mod support;

use pg_trace::naming::CatalogNamer;
use pg_trace::model::Namer;
use pg_trace::pgdata::{Catalog, DataDir};
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
        assert!(t.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
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
    assert_eq!(namer.take_notes(), Vec::<String>::new(), "PG {major}: memory unreadable");
    let cat = namer.resolver().catalog();
    assert!(cat.fresh, "PG {major}: catalog not from memory");
    assert!(cat.pages_from_memory > 0, "PG {major}: no page came from shared buffers");
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
    drop(held);
}

#[test]
fn catalog_from_shared_memory_on_every_major() {
    support::on_every_major(memory_catalog);
}
