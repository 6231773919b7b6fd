//! `pg_trace catalog` on a cluster with many relations, against the SQL query a DBA would
//! run instead, on the same cluster in the same run. Prints medians and the ratio.
//!
//!     cargo bench --bench catalog_load            # 100,000 relations, PostgreSQL 15
//!     PG_TRACE_BENCH_RELATIONS=20000 PG_TRACE_BENCH_MAJOR=18 cargo bench --bench catalog_load

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_pg_trace");
const REPS: usize = 7;

fn env_num(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(cmd: &mut Command) -> Duration {
    let t = Instant::now();
    let st = cmd.stdout(Stdio::null()).status().expect("spawn");
    let d = t.elapsed();
    assert!(st.success(), "{cmd:?} failed");
    d
}

fn main() {
    // `cargo test --all-targets` runs bench binaries too, without --bench: building 100,000
    // tables is not a test, so only `cargo bench` does the work.
    if !std::env::args().any(|a| a == "--bench") {
        println!("catalog_load: benchmark only runs under `cargo bench`");
        return;
    }
    let major = env_num("PG_TRACE_BENCH_MAJOR", 15);
    let n = env_num("PG_TRACE_BENCH_RELATIONS", 100_000);
    let psql = std::env::var("PG_TRACE_BENCH_PSQL").unwrap_or_else(|_| "psql".into());
    let c = support::Cluster::start_with(major, &[("max_locks_per_transaction", "1024")]);
    c.execute("postgres", "CREATE SCHEMA bench");
    let t = Instant::now();
    let batch = 1000;
    for start in (0..n).step_by(batch as usize) {
        let end = (start + batch).min(n);
        c.execute(
            "postgres",
            &format!(
                "DO $$ BEGIN FOR i IN {start}..{} LOOP
                   EXECUTE format('CREATE TABLE bench.t%s (a int)', i);
                 END LOOP; END $$",
                end - 1
            ),
        );
    }
    c.execute("postgres", "CHECKPOINT");
    let total: i64 = c.psql("postgres", "SELECT count(*) FROM pg_class")[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    eprintln!(
        "created {n} tables in {:.1}s; pg_class has {total} rows",
        t.elapsed().as_secs_f64()
    );

    let pgdata = c.datadir.to_str().unwrap().to_string();
    let sql = "SELECT n.nspname, c.relname, c.relkind, pg_relation_filepath(c.oid)
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relkind IN ('r','i','S','t','m')";
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..REPS {
        ours.push(time(
            Command::new(BIN).args(["catalog", "--pgdata", &pgdata]),
        ));
        theirs.push(time(Command::new(&psql).args([
            "-X",
            "-h",
            c.sockdir.to_str().unwrap(),
            "-p",
            &c.port.to_string(),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-Atc",
            sql,
        ])));
    }
    let (o, s) = (median(ours), median(theirs));
    println!("catalog load, PostgreSQL {major}, {n} user tables ({total} pg_class rows), median of {REPS}:");
    println!(
        "  psql -Atc 'select ... from pg_class join pg_namespace' : {:>8.1} ms  (1.00x)",
        s.as_secs_f64() * 1e3
    );
    println!(
        "  pg_trace catalog --pgdata (all databases, from disk)    : {:>8.1} ms  ({:.2}x)",
        o.as_secs_f64() * 1e3,
        o.as_secs_f64() / s.as_secs_f64()
    );
}
