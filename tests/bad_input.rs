//! Bad input gets one clear line on stderr and a non-zero exit, never a panic.

mod support;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
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

/// Exit code 1, stderr exactly `line` and a newline, nothing on stdout.
fn assert_error_line(out: &Output, line: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit status; stderr: {err}");
    assert_eq!(err, format!("{line}\n"));
    assert!(out.stdout.is_empty(), "no output on error");
}

/// Run pg_trace with a deadline: the child is polled, and killed and failed if it is still
/// running after `limit` (a FIFO read blocks forever). Output goes to files, so a chatty
/// child cannot fill a pipe and stall.
fn run_within(limit: Duration, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let (o, e) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = Command::new(BIN)
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&o).unwrap())
        .stderr(std::fs::File::create(&e).unwrap())
        .spawn()
        .expect("run pg_trace");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pg_trace {args:?} still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = Output {
        status,
        stdout: std::fs::read(&o).unwrap(),
        stderr: std::fs::read(&e).unwrap(),
    };
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    out
}

fn catalog_of(dir: &Path) -> Output {
    run_within(
        Duration::from_secs(60),
        &["catalog", "--pgdata", dir.to_str().unwrap()],
    )
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: c is a valid NUL-terminated path for the duration of the call.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {path:?}"
    );
}

/// Replace `file` (relative to `dir`) by a FIFO, with no writer: any blocking open or
/// read of it hangs.
fn fifo_instead(dir: &Path, file: &str) {
    std::fs::remove_file(dir.join(file)).unwrap();
    mkfifo(&dir.join(file));
}

fn first_line(c: &Cluster, db: &str, sql: &str) -> String {
    c.psql(db, sql)[0][0].clone().unwrap()
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

    // Tracing another user's process without capabilities: refused with one line.
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
        assert_one_line_error(
            &out,
            "needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (missing: CAP_SYS_PTRACE, CAP_DAC_READ_SEARCH)",
        );
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
        // The OS error once: no trailing "Permission denied (os error 13)".
        assert_error_line(
            &out,
            &format!(
                "pg_trace: error: cannot read {}/PG_VERSION: permission denied (another user's data directory needs CAP_DAC_READ_SEARCH: run as root, or see `setcap` in docs/usage.md)",
                c.datadir.display()
            ),
        );
    } else {
        support::skip("bad_input not-root check", "the tests do not run as root");
    }
}

/// Files that are not regular files, of absurd sizes or with terminal escapes in them: one
/// exact line each, quickly, and never the file's content verbatim.
#[test]
fn hostile_files_in_the_data_directory() {
    let major = support::majors()[0];
    let c = Cluster::start(major);
    c.execute("postgres", "CHECKPOINT");
    let pg_class = first_line(&c, "postgres", "SELECT pg_relation_filepath('pg_class')");
    let tmp = tempfile::tempdir().unwrap();
    let fast = Duration::from_secs(10);

    // A FIFO anywhere pg_trace reads: refused at once, never opened for a blocking read.
    for (i, file) in [
        "PG_VERSION",
        "global/pg_control",
        "global/pg_filenode.map",
        pg_class.as_str(),
    ]
    .into_iter()
    .enumerate()
    {
        let bad = tmp.path().join(format!("fifo{i}"));
        copy_datadir(&c, &bad);
        fifo_instead(&bad, file);
        let d = bad.to_str().unwrap();
        let started = Instant::now();
        let out = run_within(fast, &["catalog", "--pgdata", d]);
        assert_error_line(
            &out,
            &format!("pg_trace: error: cannot read {d}/{file}: it is a FIFO, not a regular file"),
        );
        let out = run_within(fast, &["resolve", "--pgdata", d, "base/1/1"]);
        assert_error_line(
            &out,
            &format!("pg_trace: error: cannot read {d}/{file}: it is a FIFO, not a regular file"),
        );
        assert!(started.elapsed() < fast, "{file}: {:?}", started.elapsed());
    }

    // A socket, a device behind a symlink, a directory, a symlink loop.
    let bad = tmp.path().join("special");
    copy_datadir(&c, &bad);
    let d = bad.to_str().unwrap();
    std::fs::remove_file(bad.join("global/pg_control")).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(bad.join("global/pg_control")).unwrap();
    assert_error_line(
        &run_within(fast, &["catalog", "--pgdata", d]),
        &format!("pg_trace: error: cannot read {d}/global/pg_control: it is a socket, not a regular file"),
    );
    std::fs::remove_file(bad.join("global/pg_control")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", bad.join("global/pg_control")).unwrap();
    assert_error_line(
        &run_within(fast, &["catalog", "--pgdata", d]),
        &format!("pg_trace: error: cannot read {d}/global/pg_control: it is a character device, not a regular file"),
    );
    std::fs::remove_file(bad.join("global/pg_control")).unwrap();
    std::fs::create_dir(bad.join("global/pg_control")).unwrap();
    assert_error_line(
        &run_within(fast, &["catalog", "--pgdata", d]),
        &format!("pg_trace: error: cannot read {d}/global/pg_control: it is a directory, not a regular file"),
    );
    std::fs::remove_dir(bad.join("global/pg_control")).unwrap();
    std::os::unix::fs::symlink("pg_control", bad.join("global/pg_control")).unwrap();
    // The OS error once, not once in the message and again as its cause.
    assert_error_line(
        &run_within(fast, &["catalog", "--pgdata", d]),
        &format!("pg_trace: error: cannot read {d}/global/pg_control: Too many levels of symbolic links (os error 40)"),
    );

    // A 10 MB PG_VERSION: a short line, whatever the size.
    let bad = tmp.path().join("huge");
    copy_datadir(&c, &bad);
    let d = bad.to_str().unwrap();
    std::fs::write(bad.join("PG_VERSION"), vec![b'7'; 10 << 20]).unwrap();
    assert_error_line(
        &run_within(fast, &["catalog", "--pgdata", d]),
        &format!("pg_trace: error: {d}/PG_VERSION is corrupt: larger than the 16 bytes it can be"),
    );
    // A huge pg_control and relation map likewise.
    std::fs::write(bad.join("PG_VERSION"), format!("{major}\n")).unwrap();
    let map = std::fs::read(bad.join("global/pg_filenode.map")).unwrap();
    let mut big = map.clone();
    big.resize(10 << 20, 0);
    std::fs::write(bad.join("global/pg_filenode.map"), &big).unwrap();
    assert_error_line(
        &run_within(fast, &["catalog", "--pgdata", d]),
        &format!("pg_trace: error: {d}/global/pg_filenode.map is corrupt: larger than the 524 bytes it can be"),
    );
    std::fs::write(bad.join("global/pg_filenode.map"), &map).unwrap();
    let mut control = std::fs::read(bad.join("global/pg_control")).unwrap();
    control.resize(10 << 20, 0);
    std::fs::write(bad.join("global/pg_control"), &control).unwrap();
    assert_error_line(
        &run_within(fast, &["catalog", "--pgdata", d]),
        &format!("pg_trace: error: {d}/global/pg_control is corrupt: larger than the 8192 bytes it can be"),
    );

    // Escapes and newlines in PG_VERSION are shown, not obeyed; one line.
    std::fs::write(bad.join("PG_VERSION"), b"\x1b]0;x\x07\n\n").unwrap();
    let out = run_within(fast, &["catalog", "--pgdata", d]);
    assert_error_line(
        &out,
        &format!(
            r#"pg_trace: error: {d}/PG_VERSION is corrupt: "\x1b]0;x\x07\n\n" is not a version"#
        ),
    );
    std::fs::write(bad.join("PG_VERSION"), b"1\xff\xfe 9\t\n").unwrap();
    assert_error_line(
        &run_within(fast, &["catalog", "--pgdata", d]),
        &format!(
            r#"pg_trace: error: {d}/PG_VERSION is corrupt: "1\xff\xfe 9\t\n" is not a version"#
        ),
    );
}

/// An empty core catalog is an error naming the file; a truncated one is read as far as
/// it goes, with a warning naming it, and the schemas it no longer names marked `?OID`.
#[test]
fn empty_and_truncated_catalogs() {
    let major = support::majors()[0];
    let c = Cluster::start(major);
    // Enough schemas to fill three pages of pg_namespace; the last one holds a table.
    c.execute(
        "postgres",
        "DO $$ BEGIN FOR i IN 1..200 LOOP EXECUTE format('CREATE SCHEMA s%s', i); END LOOP; END $$",
    );
    c.execute("postgres", "CREATE TABLE s200.tail (a int)");
    c.execute("postgres", "CHECKPOINT");
    let path_of = |rel: &str| {
        first_line(
            &c,
            "postgres",
            &format!("SELECT pg_relation_filepath('{rel}')"),
        )
    };
    let tail_nsp = first_line(
        &c,
        "postgres",
        "SELECT oid FROM pg_namespace WHERE nspname = 's200'",
    );
    let tail_block: u32 = first_line(
        &c,
        "postgres",
        "SELECT (ctid::text::point)[0]::int FROM pg_namespace WHERE nspname = 's200'",
    )
    .parse()
    .unwrap();
    assert!(tail_block >= 1, "s200 is on block {tail_block}");
    let blcksz: u64 = first_line(&c, "postgres", "SHOW block_size")
        .parse()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();

    for rel in ["pg_database", "pg_tablespace", "pg_class", "pg_namespace"] {
        let bad = tmp.path().join(format!("empty_{rel}"));
        copy_datadir(&c, &bad);
        let file = path_of(rel);
        std::fs::write(bad.join(&file), b"").unwrap();
        let d = bad.to_str().unwrap();
        assert_error_line(
            &catalog_of(&bad),
            &format!("pg_trace: error: {d}/{file} ({rel}) is corrupt: it holds no rows (0 bytes)"),
        );
    }

    // pg_namespace cut in the middle of its second block.
    let bad = tmp.path().join("truncated");
    copy_datadir(&c, &bad);
    let nsp = path_of("pg_namespace");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(bad.join(&nsp))
        .unwrap();
    assert!(f.metadata().unwrap().len() > 2 * blcksz);
    f.set_len(blcksz + 100).unwrap();
    drop(f);
    let d = bad.to_str().unwrap();
    let out = catalog_of(&bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(
        err,
        format!(
            "pg_trace: warning: {d}/{nsp} is truncated: its last block (1) has 100 of {blcksz} bytes and was skipped\n\
             pg_trace: warning: database \"postgres\": 1 relation is in a schema missing from {d}/{nsp} (pg_namespace), shown as ?OID\n"
        )
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!(" ?{tail_nsp}.tail\n")), "{stdout}");
    assert!(stdout.contains(" pg_catalog.pg_class\n"), "{stdout}");
    assert!(!stdout.contains(&format!(" {tail_nsp}.tail")), "{stdout}");
}

/// A path outside the data directory is never named as a relation, however it gets there.
#[test]
fn paths_outside_the_data_directory() {
    let major = support::majors()[0];
    let c = Cluster::start(major);
    let d = c.datadir.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(c.datadir.join("base/1"), &link).unwrap();
    let link_file = format!("{}/1259", link.display());
    let climb_out = format!("{d}/base/../../base/1/1259");
    let climb_back = format!(
        "{d}/../{}/base/1/1259",
        c.datadir.file_name().unwrap().to_str().unwrap()
    );
    let out = run_within(
        Duration::from_secs(60),
        &[
            "resolve",
            "--pgdata",
            d,
            "../base/1/1259",
            "base/../../base/1/1259",
            &climb_out,
            &link_file,
            "base/1/../1/1259",
            &climb_back,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "../base/1/1259  outside the data directory".to_string(),
            "base/../../base/1/1259  outside the data directory".to_string(),
            format!("{climb_out}  outside the data directory"),
            format!("{link_file}  outside the data directory"),
            "base/1/../1/1259  pg_catalog.pg_class (table) in template1".to_string(),
            format!("{climb_back}  pg_catalog.pg_class (table) in template1"),
        ]
    );
    let out = run_within(
        Duration::from_secs(60),
        &[
            "resolve",
            "--format",
            "json",
            "--pgdata",
            d,
            "../base/1/1259",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["relpath"], serde_json::Value::Null, "{v}");
    assert_eq!(v["class"], "other", "{v}");
}

/// Numbers on the command line that cannot be meant: refused before anything attaches,
/// never a panic (an interval of u64::MAX ms once overflowed an addition).
#[test]
fn absurd_intervals_and_durations() {
    let pid = std::process::id().to_string();
    for d in ["-1", "nan", "inf", "0"] {
        let out = run(&["-p", &pid, "--no-tui", &format!("--duration={d}")]);
        assert_one_line_error(&out, "give a positive number of seconds");
    }
    let out = run(&["-p", &pid, "--no-tui", "--interval", "18446744073709551615"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not in 10..=3600000"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A child killed (by its pid, through its handle) when the test ends, pass or fail.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Issue 11 item 8: a renamed `/bin/sleep` called `postgres`, whose working directory is a
/// live cluster's data directory, has the name and the directory of a server process but
/// neither its binary nor its shared memory: every command that takes a pid refuses it,
/// in one line, exit 1. A real backend of the same cluster is still accepted.
#[test]
fn a_renamed_sleep_in_a_data_directory_is_not_postgres() {
    let major = support::majors()[0];
    let c = Cluster::start(major);
    let tmp = tempfile::tempdir().unwrap();
    let fake = tmp.path().join("postgres");
    std::fs::copy("/bin/sleep", &fake).unwrap();
    let sleep = KillOnDrop(
        Command::new(&fake)
            .arg("300")
            .current_dir(&c.datadir)
            .spawn()
            .unwrap(),
    );
    let pid = sleep.0.id().to_string();
    // The name and directory the old check trusted are there.
    support::status::wait_until(
        "the fake to be named postgres",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|s| s.trim() == "postgres")
        },
    );
    let want = format!(
        "pid {pid} is not a PostgreSQL process (its binary {} has no PostgreSQL symbols",
        fake.display()
    );
    let pgdata_file = c.datadir.join("global/1262");
    for args in [
        vec!["-p", &pid, "--no-tui", "--duration", "1"],
        vec![
            "-p",
            &pid,
            "--no-tui",
            "--format",
            "json",
            "--backend",
            "procfs",
        ],
        vec!["catalog", "-p", &pid],
        vec!["resolve", "-p", &pid, pgdata_file.to_str().unwrap()],
        vec!["ps", "-p", &pid],
        vec!["probes", "-p", &pid],
    ] {
        let out = run_within(Duration::from_secs(30), &args);
        assert_one_line_error(&out, &want);
    }
    // A real backend of the same cluster passes the same check.
    let held = c.hold_backend("postgres");
    let out = run(&[
        "resolve",
        "-p",
        &held.pid.to_string(),
        pgdata_file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(sleep);
}

/// The other side of the check above: the postmaster and a client backend of every major
/// (Debian's stripped PostgreSQL 15 among them) are PostgreSQL by their binary and memory.
#[test]
fn real_server_processes_pass_the_postgres_check() {
    support::on_every_major(|major| {
        let c = Cluster::start(major);
        let held = c.hold_backend("postgres");
        for pid in [c.postmaster_pid(), held.pid] {
            let out = run(&["resolve", "-p", &pid.to_string(), "global/1262"]);
            assert!(
                out.status.success(),
                "PG {major} pid {pid}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                String::from_utf8_lossy(&out.stdout).contains("pg_database"),
                "PG {major}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
    });
}

/// Recordings and their options: a missing file, one that is not a recording, a bad
/// speed, a bad ring window, a ring without a recording.
#[test]
fn bad_recordings_and_recording_options() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["replay", "--no-tui", "/nonexistent/x.pgtrace"]);
    assert_one_line_error(&out, "cannot open /nonexistent/x.pgtrace");
    let junk = dir.path().join("junk.pgtrace");
    std::fs::write(&junk, "hello, not a recording").unwrap();
    let junk = junk.to_str().unwrap();
    assert_one_line_error(
        &run(&["replay", "--no-tui", junk]),
        "not a pg_trace recording",
    );
    assert_one_line_error(
        &run(&["replay", "--no-tui", "--speed", "fast", junk]),
        "--speed fast",
    );
    assert_one_line_error(&run(&["record", "-p", "1", "--keep", "5y"]), "--keep 5y");
    assert_one_line_error(
        &run(&["-p", "1", "--no-tui", "--keep", "15m"]),
        "are for a recording",
    );
}
