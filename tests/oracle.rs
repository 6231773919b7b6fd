//! The oracle test: on a real cluster of every major, every relation the server lists must
//! come out of `pg_trace catalog` identically, and every path through `pg_trace resolve`
//! must name the same object.

mod support;

use pg_trace::output::record::{
    PathClassRecord, PathRecord, Record, RelFileRecord, RelationRecord,
};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::process::Command;
use support::Cluster;

const BIN: &str = env!("CARGO_BIN_EXE_pg_trace");

/// What the server says about one relation file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    database: Option<String>,
    schema: String,
    name: String,
    kind: String,
    table: Option<String>,
}

const LONG_ASCII: &str = "x23456789012345678901234567890123456789012345678901234567890123";

fn long_utf8() -> String {
    // 31 two-byte characters and one ASCII byte: exactly 63 bytes, the NAMEDATALEN limit.
    let s = format!("{}z", "é".repeat(31));
    assert_eq!(s.len(), 63);
    s
}

/// Objects of every relkind with storage and every awkward name, then every rewrite.
fn populate(c: &Cluster, db: &str, with_ts: bool) {
    let long_utf8 = long_utf8();
    c.execute(
        db,
        &format!(
            r#"
        CREATE SCHEMA "My Schema";
        CREATE SCHEMA "we""ird 'q'";
        CREATE SCHEMA "Ünïcødé";
        CREATE TABLE "My Schema"."Orders Table" (id serial PRIMARY KEY, doc text, n int);
        CREATE INDEX "Orders doc idx" ON "My Schema"."Orders Table" (doc);
        INSERT INTO "My Schema"."Orders Table" (doc, n)
            SELECT repeat(md5(g::text), 500), g FROM generate_series(1, 50) g;
        CREATE TABLE "we""ird 'q'"."tab""le" (a int, b text);
        CREATE TABLE "Ünïcødé"."{long_utf8}" (a int PRIMARY KEY);
        CREATE TABLE public.{LONG_ASCII} (a int);
        CREATE SEQUENCE public.plain_seq;
        CREATE MATERIALIZED VIEW public.mv AS SELECT n, doc FROM "My Schema"."Orders Table";
        CREATE INDEX mv_n ON public.mv (n);
        CREATE VIEW public.v AS SELECT 1 AS one;
        CREATE UNLOGGED TABLE public.unlogged_t (a int PRIMARY KEY, t text);
        CREATE TABLE public.parted (k int, v text) PARTITION BY RANGE (k);
        CREATE TABLE public.parted_1 PARTITION OF public.parted FOR VALUES FROM (0) TO (100);
        CREATE TABLE public.parted_2 PARTITION OF public.parted FOR VALUES FROM (100) TO (200);
        CREATE INDEX parted_k ON public.parted (k);
        CREATE TABLE public.to_truncate (a int PRIMARY KEY, t text);
        INSERT INTO public.to_truncate SELECT g, 'x' FROM generate_series(1, 100) g;
        CREATE TABLE public.to_vacfull (a int PRIMARY KEY, t text);
        CREATE TABLE public.to_cluster (a int, t text);
        CREATE INDEX to_cluster_a ON public.to_cluster (a);
        CREATE TABLE public.to_reindex (a int PRIMARY KEY);
        CREATE TABLE public.to_reindex_cc (a int);
        CREATE INDEX to_reindex_cc_a ON public.to_reindex_cc (a);
        CREATE TABLE public.to_move (a int PRIMARY KEY, t text);
        CREATE TABLE public.old_name (a int);
        "#
        ),
    );
    // One statement per call: several are not allowed inside a transaction block, and a
    // multi-statement query is one implicit transaction.
    for sql in [
        "TRUNCATE public.to_truncate",
        "VACUUM FULL public.to_vacfull",
        "CLUSTER public.to_cluster USING to_cluster_a",
        "REINDEX TABLE public.to_reindex",
        "REINDEX INDEX CONCURRENTLY public.to_reindex_cc_a",
        "ALTER TABLE public.old_name RENAME TO \"New Name\"",
        "VACUUM FULL pg_class",
    ] {
        c.execute(db, sql);
    }
    if with_ts {
        c.execute(
            db,
            "CREATE TABLE public.in_ts (a int PRIMARY KEY, t text) TABLESPACE ts1;
             CREATE INDEX in_ts_t ON public.in_ts (t) TABLESPACE ts1;
             ALTER TABLE public.to_move SET TABLESPACE ts1;",
        );
    }
}

fn expected(c: &Cluster, db: &str) -> BTreeMap<String, Expected> {
    let rows = c.psql(
        db,
        "SELECT pg_relation_filepath(c.oid), n.nspname, c.relname, c.relkind::text,
                c.relisshared::text,
                coalesce(
                  (SELECT tn.nspname || '.' || t.relname FROM pg_index i
                     JOIN pg_class t ON t.oid = i.indrelid
                     JOIN pg_namespace tn ON tn.oid = t.relnamespace
                    WHERE i.indexrelid = c.oid),
                  (SELECT tn.nspname || '.' || t.relname FROM pg_class t
                     JOIN pg_namespace tn ON tn.oid = t.relnamespace
                    WHERE t.reltoastrelid = c.oid AND c.relkind = 't'))
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE pg_relation_filepath(c.oid) IS NOT NULL",
    );
    rows.into_iter()
        .map(|r| {
            let s = |i: usize| r[i].clone().unwrap_or_default();
            let kind = match s(3).as_str() {
                "r" => "table",
                "i" => "index",
                "S" => "sequence",
                "t" => "toast",
                "m" => "matview",
                other => panic!("relkind {other} has a file path?"),
            };
            let shared = s(4) == "true";
            (
                s(0),
                Expected {
                    database: (!shared).then(|| db.to_string()),
                    schema: s(1),
                    name: s(2),
                    kind: kind.into(),
                    table: r[5].clone(),
                },
            )
        })
        .collect()
}

fn run_json(args: &[&str]) -> Vec<Record> {
    let out = Command::new(BIN).args(args).output().expect("run pg_trace");
    assert!(
        out.status.success(),
        "pg_trace {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l}: {e}")))
        .collect()
}

fn got(v: &RelationRecord) -> Expected {
    Expected {
        database: v.database.clone(),
        schema: v.schema.clone(),
        name: v.name.clone(),
        kind: v.kind.clone(),
        table: v.table.clone(),
    }
}

fn got_file(v: &RelFileRecord) -> Expected {
    Expected {
        database: v.database.clone(),
        schema: v.schema.clone().unwrap_or_default(),
        name: v.name.clone().unwrap_or_default(),
        kind: v.kind.clone().unwrap_or_default(),
        table: v.table.clone(),
    }
}

fn oracle(major: u32) -> usize {
    let c = Cluster::start(major);
    let ts1 = c.make_dir("ts1");
    let ts2 = c.make_dir("ts2");
    for (name, dir) in [("ts1", &ts1), ("ts2", &ts2)] {
        c.execute(
            "postgres",
            &format!("CREATE TABLESPACE {name} LOCATION '{}'", dir.display()),
        );
    }
    c.execute("postgres", "CREATE DATABASE \"Sales DB\" TABLESPACE ts2");
    populate(&c, "postgres", true);
    populate(&c, "Sales DB", true);

    // A temp table (with TOAST and an index) held by an open session.
    let mut held = c.hold_backend("postgres");
    held.client
        .batch_execute("CREATE TEMP TABLE held_temp (a int PRIMARY KEY, t text)")
        .expect("create temp table");
    c.execute("postgres", "CHECKPOINT");

    let dbs = ["postgres", "template1", "Sales DB"];
    let mut want: BTreeMap<String, Expected> = BTreeMap::new();
    for db in dbs {
        want.extend(expected(&c, db));
    }
    let temp_paths: Vec<&String> = want
        .iter()
        .filter(|(_, e)| e.name == "held_temp")
        .map(|(p, _)| p)
        .collect();
    assert_eq!(temp_paths.len(), 1, "the server lists the temp table once");
    assert!(
        Path::new(temp_paths[0])
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with('t'),
        "temp table path {} has a t<N>_ prefix",
        temp_paths[0]
    );

    let pgdata = c.datadir.to_str().unwrap().to_string();
    let records = run_json(&["catalog", "--pgdata", &pgdata, "--format", "json"]);
    let mut have: BTreeMap<String, Expected> = BTreeMap::new();
    let mut seen = HashSet::new();
    for r in &records {
        let Record::Relation(r) = r else {
            panic!("not a relation record: {r:?}")
        };
        let path = r.path.clone();
        assert!(seen.insert(path.clone()), "path {path} listed twice");
        // template0 does not accept connections, so the server cannot be asked about it.
        if r.database.as_deref() == Some("template0") {
            continue;
        }
        have.insert(path, got(r));
    }
    for (path, e) in &want {
        assert_eq!(have.get(path), Some(e), "major {major}: {path}");
    }
    for path in have.keys() {
        assert!(
            want.contains_key(path),
            "major {major}: pg_trace lists {path}, the server does not: {:?}",
            have[path]
        );
    }

    // Every path the server gave, through resolve, names the same object.
    let paths: Vec<&str> = want.keys().map(String::as_str).collect();
    let mut args = vec!["resolve", "--pgdata", &pgdata, "--format", "json"];
    args.extend(paths.iter().copied());
    let resolved = run_json(&args);
    assert_eq!(resolved.len(), want.len());
    for r in &resolved {
        let Record::Path(PathRecord { path, class, .. }) = r else {
            panic!("not a path record: {r:?}")
        };
        let e = &want[path.as_str()];
        let f = match class {
            PathClassRecord::TempRelation(f) => f,
            PathClassRecord::Relation(f) if f.backend.is_none() && e.name != "held_temp" => f,
            other => panic!("{path}: {other:?}"),
        };
        assert!(f.known, "{path}");
        assert_eq!(&got_file(f), e, "major {major}: resolve {path}");
        assert_eq!(f.fork, "main");
        assert_eq!(f.segment, 0);
    }

    // An absolute path names its data directory: no --pgdata needed.
    let first = paths[0];
    let abs = std::path::Path::new(&pgdata).join(first);
    let by_abs = run_json(&["resolve", "--format", "json", abs.to_str().unwrap()]);
    match by_abs.as_slice() {
        [Record::Path(PathRecord {
            class: PathClassRecord::Relation(f) | PathClassRecord::TempRelation(f),
            ..
        })] => assert_eq!(&got_file(f), &want[first], "major {major}: resolve {abs:?}"),
        other => panic!("major {major}: resolve {abs:?}: {other:?}"),
    }

    // Fresh names: a relation created after the catalog was read is found by a re-read.
    freshness(&c);
    drop(held);
    want.len()
}

fn freshness(c: &Cluster) {
    use pg_trace::pgdata::{DataDir, Resolver};
    let dd = DataDir::open(&c.datadir).expect("open datadir");
    let mut resolver = Resolver::new(&dd)
        .expect("catalog")
        .with_reload_interval(std::time::Duration::ZERO);
    c.execute("postgres", "CREATE TABLE public.born_late (a int)");
    c.execute("postgres", "CHECKPOINT");
    let path = c.psql(
        "postgres",
        "SELECT pg_relation_filepath('public.born_late')",
    )[0][0]
        .clone()
        .unwrap();
    let before = resolver.reloads();
    let r = resolver.resolve(Path::new(&path));
    assert_eq!(
        resolver.reloads(),
        before + 1,
        "an unknown relfilenode re-reads the catalog"
    );
    let rel = r.relation.expect("born_late named after the re-read");
    assert_eq!(
        (rel.schema.as_str(), rel.name.as_str()),
        ("public", "born_late")
    );
    // Still unknown after a re-read: reported with its numbers, not dropped.
    let r = resolver.resolve(Path::new("base/5/4000000000"));
    assert!(r.relation.is_none());
    assert!(
        matches!(r.class, pg_trace::pgdata::PathClass::Relation(f) if f.locator.rel_number == 4000000000)
    );
}

#[test]
fn catalog_and_resolve_match_the_server_on_every_major() {
    let majors = support::majors();
    let handles: Vec<_> = majors
        .iter()
        .map(|&m| (m, std::thread::spawn(move || oracle(m))))
        .collect();
    let mut failures = Vec::new();
    for (m, h) in handles {
        match h.join() {
            Ok(n) => eprintln!("oracle: PostgreSQL {m}: {n} relation files matched"),
            Err(_) => failures.push(m),
        }
    }
    assert!(failures.is_empty(), "oracle failed on majors {failures:?}");
}
