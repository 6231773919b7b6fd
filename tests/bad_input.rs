//! Bad input gets one clear line on stderr and a non-zero exit, never a panic.

mod support;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};
use support::Cluster;

const BIN: &str = env!("CARGO_BIN_EXE_pg_trace");

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run pg_trace")
}

/// Exit code 1, exactly one stderr line that starts with "pg_trace: error:" and contains
/// `needle`; no panic text, no backtrace.
fn assert_one_line_error(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit status; stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected, got: {err}");
    assert!(lines[0].starts_with("pg_trace: error: "), "{err}");
    assert!(
        lines[0].contains(needle),
        "{err:?} should mention {needle:?}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "no output on error");
}

/// A copy of a real data directory's catalog files, to damage at will.
fn copy_datadir(c: &Cluster, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(&c.datadir)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success());
}

fn no_such_pid() -> i32 {
    (4_000_000..4_194_304)
        .find(|p| !Path::new(&format!("/proc/{p}")).exists())
        .unwrap()
}

#[test]
fn missing_or_foreign_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    assert_one_line_error(
        &run(&["catalog", "--pgdata", missing.to_str().unwrap()]),
        "no such file or directory",
    );
    assert_one_line_error(
        &run(&["catalog", "--pgdata", tmp.path().to_str().unwrap()]),
        "is not a PostgreSQL data directory",
    );
    std::fs::write(tmp.path().join("PG_VERSION"), "11\n").unwrap();
    assert_one_line_error(
        &run(&["catalog", "--pgdata", tmp.path().to_str().unwrap()]),
        "unsupported PostgreSQL 11",
    );
    std::fs::write(tmp.path().join("PG_VERSION"), "9.6\n").unwrap();
    assert_one_line_error(
        &run(&[
            "resolve",
            "--pgdata",
            tmp.path().to_str().unwrap(),
            "base/1/1",
        ]),
        "unsupported PostgreSQL 9.6",
    );
    assert_one_line_error(&run(&["catalog"]), "--pgdata");
}

#[test]
fn bad_pids() {
    assert_one_line_error(
        &run(&["catalog", "-p", &no_such_pid().to_string()]),
        "no process with pid",
    );
    // Our own test process is alive but not PostgreSQL.
    let me = std::process::id().to_string();
    assert_one_line_error(&run(&["catalog", "-p", &me]), "is not a PostgreSQL process");
    assert_one_line_error(&run(&["-p", &me]), "is not a PostgreSQL process");
    assert_one_line_error(&run(&["probes", "-p", &me]), "is not a PostgreSQL process");
    assert_one_line_error(&run(&["ps", "-p", &me]), "is not a PostgreSQL process");
    assert_one_line_error(
        &run(&["probes", "-p", &no_such_pid().to_string()]),
        "no process with pid",
    );
    assert_one_line_error(&run(&["-p", "0"]), "not a valid pid");
}

#[test]
fn damaged_clusters() {
    let major = support::majors()[0];
    let c = Cluster::start(major);
    c.execute("postgres", "CREATE TABLE t (a int)");
    c.execute("postgres", "CHECKPOINT");
    let pg_class = c.psql("postgres", "SELECT pg_relation_filepath('pg_class')")[0][0]
        .clone()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();

    // A good copy reads fine, through -p as well as --pgdata.
    let good = tmp.path().join("good");
    copy_datadir(&c, &good);
    let out = run(&["catalog", "--pgdata", good.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["catalog", "-p", &c.postmaster_pid().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("public.t"));

    // Corrupt page header in pg_class: the error names the file and block.
    let bad = tmp.path().join("badpage");
    copy_datadir(&c, &bad);
    let f = bad.join(&pg_class);
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[12..18].copy_from_slice(&[0xff, 0x7f, 0x10, 0x00, 0x00, 0x01]);
    std::fs::write(&f, &bytes).unwrap();
    assert_one_line_error(
        &run(&["catalog", "--pgdata", bad.to_str().unwrap()]),
        "block 0",
    );

    // Corrupt pg_control: CRC mismatch.
    let bad = tmp.path().join("badcontrol");
    copy_datadir(&c, &bad);
    let f = bad.join("global/pg_control");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[216] ^= 0x10;
    std::fs::write(&f, &bytes).unwrap();
    assert_one_line_error(&run(&["catalog", "--pgdata", bad.to_str().unwrap()]), "CRC");

    // Torn or truncated relation map.
    let bad = tmp.path().join("badmap");
    copy_datadir(&c, &bad);
    std::fs::write(bad.join("global/pg_filenode.map"), [0u8; 100]).unwrap();
    assert_one_line_error(
        &run(&["catalog", "--pgdata", bad.to_str().unwrap()]),
        "pg_filenode.map",
    );

    // An unreadable file: pg_control replaced by a directory.
    let bad = tmp.path().join("unreadable");
    copy_datadir(&c, &bad);
    std::fs::remove_file(bad.join("global/pg_control")).unwrap();
    std::fs::create_dir(bad.join("global/pg_control")).unwrap();
    assert_one_line_error(
        &run(&["catalog", "--pgdata", bad.to_str().unwrap()]),
        "cannot read",
    );

    // Tracing as a user that is not root: refused with one line.
    if let Some((uid, gid)) = support::cluster_user() {
        let backend = c.hold_backend("postgres");
        let out = Command::new(BIN)
            .args([
                "-p",
                &backend.pid.to_string(),
                "--no-tui",
                "--duration",
                "1",
            ])
            .uid(uid + 1)
            .gid(gid)
            .output()
            .unwrap();
        assert_one_line_error(&out, "must run as root");
    }
    assert_one_line_error(
        &run(&["-p", &no_such_pid().to_string(), "--no-tui"]),
        "no process with pid",
    );

    // Not root: the data directory (mode 0700, owned by the cluster user) is unreadable.
    if let Some((uid, gid)) = support::cluster_user() {
        // `nobody` owns the cluster, so use another unprivileged uid.
        let out = Command::new(BIN)
            .args(["catalog", "--pgdata", c.datadir.to_str().unwrap()])
            .uid(uid + 1)
            .gid(gid)
            .output()
            .unwrap();
        assert_one_line_error(&out, "permission denied (pg_trace must run as root)");
    } else {
        eprintln!("*** SKIPPED: the not-root check needs the tests to run as root ***");
    }
}
