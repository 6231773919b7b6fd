//! Throw-away PostgreSQL clusters for integration tests.
//!
//! Use from an integration test with `mod support;`. Every [`Cluster`] lives in
//! its own temporary directory (`$TMPDIR/pg_trace-test-XXXXXX`) holding the data
//! directory, the Unix socket directory, the server log and any directories made
//! with [`Cluster::make_dir`]. When the tests run as root (as they must for
//! attaching), the cluster runs as user `nobody`; otherwise as the current user.
//! The server listens on its Unix socket only (`listen_addresses = ''`), so any
//! number of clusters can run at once, from parallel test threads.
//!
//! Binaries for major `N` are looked up by [`bin_dir`]: `$PG_TRACE_PG<N>_BIN`,
//! then Debian's `/usr/lib/postgresql/<N>/bin`, then `target/pg/<N>/native/bin`
//! as installed by `scripts/setup.sh`.
#![allow(dead_code)]

pub mod container;
pub mod eta;
pub mod scripted;
pub mod stats;
pub mod status;
pub mod trace;

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// All the PostgreSQL majors the tests cover.
pub const ALL_MAJORS: std::ops::RangeInclusive<u32> = 12..=18;

/// The majors to test: 12..=18, or the comma-separated list in
/// `PG_TRACE_TEST_MAJORS` (for example `15,18`).
/// Run `check` for every major under test, each on its own thread (clusters start in
/// parallel), and fail naming the majors whose check panicked.
pub fn on_every_major(check: fn(u32)) {
    let threads: Vec<_> = majors()
        .into_iter()
        .map(|m| (m, std::thread::spawn(move || check(m))))
        .collect();
    let mut failed = Vec::new();
    for (m, t) in threads {
        if t.join().is_err() {
            failed.push(m);
        }
    }
    assert!(failed.is_empty(), "failed on majors {failed:?}");
}

/// As [`on_every_major`], at most `n` majors at a time: for tests that measure time
/// (an ETA against the real end), where seven clusters at once on two cores would
/// measure the machine, not pg_trace.
pub fn on_every_major_at_most(n: usize, check: fn(u32)) {
    let mut failed = Vec::new();
    for chunk in majors().chunks(n.max(1)) {
        let threads: Vec<_> = chunk
            .iter()
            .map(|&m| (m, std::thread::spawn(move || check(m))))
            .collect();
        for (m, t) in threads {
            if t.join().is_err() {
                failed.push(m);
            }
        }
    }
    assert!(failed.is_empty(), "failed on majors {failed:?}");
}

/// A test (or part of one) that cannot run here: said on stderr, and appended to
/// `target/test-skips.log`, which `scripts/test.sh` prints after the run, since cargo
/// hides a passing test's stderr.
pub fn skip(what: &str, why: &str) {
    use std::io::Write;
    let line = format!("SKIPPED {what}: {why}");
    eprintln!("*** {line} ***");
    let log = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-skips.log");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        // One write per line: majors skip from parallel threads, and `writeln!` may
        // write the line and its newline apart (two skips ran together in CI's summary).
        let _ = f.write_all(format!("{line}\n").as_bytes());
    }
}

pub fn majors() -> Vec<u32> {
    match std::env::var("PG_TRACE_TEST_MAJORS") {
        Ok(s) if !s.trim().is_empty() => {
            let list: Vec<u32> = s
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.parse().unwrap_or_else(|_| {
                        panic!("PG_TRACE_TEST_MAJORS: bad major {p:?} in {s:?}")
                    })
                })
                .collect();
            let all: Vec<u32> = ALL_MAJORS.collect();
            if list != all {
                eprintln!(
                    "\n*** PG_TRACE_TEST_MAJORS={s}: testing ONLY PostgreSQL majors {list:?} \
                     (not all of {all:?}) ***\n"
                );
            }
            list
        }
        _ => ALL_MAJORS.collect(),
    }
}

/// The directory holding `initdb`, `pg_ctl` and `postgres` for `major`.
pub fn bin_dir(major: u32) -> PathBuf {
    if let Some(dir) = std::env::var_os(format!("PG_TRACE_PG{major}_BIN")) {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").is_file(),
            "PG_TRACE_PG{major}_BIN={} has no initdb",
            dir.display()
        );
        return dir;
    }
    let debian = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"));
    if debian.join("initdb").is_file() {
        return debian;
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("target/pg/{major}/native/bin"));
    if local.join("initdb").is_file() {
        return local;
    }
    panic!(
        "PostgreSQL {major} binaries not found: run scripts/setup.sh or set PG_TRACE_TEST_MAJORS \
         (looked in $PG_TRACE_PG{major}_BIN, {}, {})",
        debian.display(),
        local.display()
    );
}

/// The (uid, gid) clusters run as: `nobody` when we are root, else `None`
/// (run as ourselves).
pub fn cluster_user() -> Option<(u32, u32)> {
    static USER: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *USER.get_or_init(|| {
        // SAFETY: plain libc calls; getpwnam's static result is copied at once,
        // and OnceLock makes this run on one thread only.
        unsafe {
            if libc::geteuid() != 0 {
                return None;
            }
            let pw = libc::getpwnam(c"nobody".as_ptr());
            assert!(
                !pw.is_null(),
                "running as root but there is no user \"nobody\""
            );
            Some(((*pw).pw_uid, (*pw).pw_gid))
        }
    })
}

/// Whether process `pid` exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name.
        Ok(stat) => match stat.rfind(')') {
            Some(i) => !matches!(stat[i + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => true,
        },
        Err(_) => false,
    }
}

/// Polls until `pid` is gone (or a zombie); false if it is still alive after `timeout`.
pub fn wait_process_gone(pid: i32, timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        if !process_alive(pid) {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Makes this (test) process the reaper of its orphaned descendants. `pg_ctl
/// start` leaves the postmaster orphaned; without this it would be reparented
/// to PID 1, which in some containers never reaps, leaving a zombie per cluster.
/// As our child the postmaster is reaped in [`Cluster::stop`], and its pid
/// cannot be reused before that.
fn become_subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            eprintln!(
                "prctl(PR_SET_CHILD_SUBREAPER): {}",
                std::io::Error::last_os_error()
            );
        }
    });
}

/// Polls until `pid` is gone, reaping it if it is our child (see
/// [`become_subreaper`]); false if it is still alive after `timeout`.
fn wait_reaped(pid: i32, timeout: Duration) -> bool {
    let start = Instant::now();
    loop {
        let mut status = 0;
        // SAFETY: waitpid on one pid with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return true;
        }
        if r == -1 && !process_alive(pid) {
            return true; // not our child, and gone (or a zombie of someone else)
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free loopback TCP port, distinct from every other port handed out in this
/// process. Only used to name the Unix socket; the server does not listen on TCP.
fn free_port() -> u16 {
    static USED: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut used = USED.lock().unwrap_or_else(|e| e.into_inner());
    let used = used.get_or_insert_with(HashSet::new);
    for _ in 0..1000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        if used.insert(port) {
            return port;
        }
    }
    panic!("no free port found");
}

fn chown_to_cluster_user(path: &Path) {
    if let Some((uid, gid)) = cluster_user() {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
}

fn quote_conf_value(v: &str) -> String {
    if v.len() >= 2 && v.starts_with('\'') && v.ends_with('\'') {
        v.to_string()
    } else {
        format!("'{}'", v.replace('\'', "''"))
    }
}

fn tail(path: &Path, lines: usize) -> String {
    match fs::read_to_string(path) {
        Ok(s) => {
            let all: Vec<&str> = s.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

fn describe_output(out: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn describe_pg_error(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!(
                "{}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            );
            if let Some(d) = db.detail() {
                s.push_str(&format!("\nDETAIL: {d}"));
            }
            if let Some(h) = db.hint() {
                s.push_str(&format!("\nHINT: {h}"));
            }
            s
        }
        None => format!("{e:?}"),
    }
}

/// An open session on a cluster, and its backend's pid.
pub struct HeldBackend {
    pub client: postgres::Client,
    pub pid: i32,
}

/// A running throw-away PostgreSQL cluster; stopped and deleted on drop.
pub struct Cluster {
    pub major: u32,
    pub datadir: PathBuf,
    pub sockdir: PathBuf,
    pub port: u16,
    base: PathBuf,
    tempdir: Option<tempfile::TempDir>,
    bin: PathBuf,
    logfile: PathBuf,
    pid: i32,
    running: bool,
}

impl Cluster {
    /// initdb and start a cluster of `major` with the default settings.
    pub fn start(major: u32) -> Cluster {
        Cluster::start_with(major, &[])
    }

    /// Like [`Cluster::start`], with extra `postgresql.conf` settings. Values are
    /// written single-quoted (which PostgreSQL accepts for every type) unless
    /// already quoted, e.g. `&[("work_mem", "64kB"), ("log_temp_files", "0")]`.
    pub fn start_with(major: u32, conf: &[(&str, &str)]) -> Cluster {
        let bin = bin_dir(major);
        let tempdir = tempfile::Builder::new()
            .prefix("pg_trace-test-")
            .tempdir()
            .expect("create temp dir");
        let base = tempdir
            .path()
            .canonicalize()
            .expect("canonicalize temp dir");
        chown_to_cluster_user(&base);
        let port = free_port();
        let datadir = base.join("data");
        let sockdir = base.join("sock");
        let logfile = base.join("postgres.log");
        // sun_path holds 107 bytes; the socket file is <sockdir>/.s.PGSQL.<port>.
        assert!(
            sockdir.as_os_str().len() + 20 < 107,
            "socket directory path {} is too long for a Unix socket: set TMPDIR to a shorter path",
            sockdir.display()
        );
        // Built before anything is started so that a panic below still stops and
        // removes whatever got started (Drop runs during unwinding).
        let mut cluster = Cluster {
            major,
            datadir,
            sockdir,
            port,
            base,
            tempdir: Some(tempdir),
            bin,
            logfile,
            pid: 0,
            running: false,
        };
        cluster.init_and_start(conf);
        cluster
    }

    /// A client program of this cluster's major (`pg_receivewal`, `pg_recvlogical`…), with
    /// the harness's environment and user; connect it with `-h sockdir -p port -U postgres`.
    pub fn command(&self, exe: &str) -> Command {
        self.pg_command(exe)
    }

    fn pg_command(&self, exe: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(exe));
        cmd.current_dir(&self.base).stdin(Stdio::null());
        // Nothing from the caller's libpq environment must leak in.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("PG") {
                cmd.env_remove(k);
            }
        }
        cmd.env("HOME", &self.base)
            .env("PGDATA", &self.datadir)
            .env("TZ", "UTC")
            .env("LC_ALL", "C");
        // The npm-packaged binaries find their libraries by RUNPATH
        // ($ORIGIN/../lib), which LD_LIBRARY_PATH would override.
        if let Some(llp) = std::env::var_os("LD_LIBRARY_PATH") {
            let lib = self.bin.join("../lib");
            if lib.is_dir() {
                let mut v = lib.into_os_string();
                v.push(":");
                v.push(llp);
                cmd.env("LD_LIBRARY_PATH", v);
            }
        }
        if let Some((uid, gid)) = cluster_user() {
            // std drops the supplementary groups when it changes uid as root.
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn run(&self, mut cmd: Command, what: &str) -> Output {
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("PostgreSQL {}: cannot run {what}: {e}", self.major));
        if !out.status.success() {
            panic!(
                "PostgreSQL {}: {what} failed: {}\n--- server log tail ({}) ---\n{}",
                self.major,
                describe_output(&out),
                self.logfile.display(),
                tail(&self.logfile, 40)
            );
        }
        out
    }

    fn init_and_start(&mut self, conf: &[(&str, &str)]) {
        fs::create_dir(&self.sockdir).expect("create socket dir");
        fs::set_permissions(&self.sockdir, fs::Permissions::from_mode(0o700))
            .expect("chmod socket dir");
        chown_to_cluster_user(&self.sockdir);

        let mut initdb = self.pg_command("initdb");
        initdb.arg("-D").arg(&self.datadir).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        self.run(initdb, "initdb");

        let mut settings = vec![
            ("listen_addresses".to_string(), "''".to_string()),
            (
                "unix_socket_directories".to_string(),
                quote_conf_value(self.sockdir.to_str().expect("socket dir is UTF-8")),
            ),
            ("port".to_string(), self.port.to_string()),
            ("shared_buffers".to_string(), "16MB".to_string()),
            ("fsync".to_string(), "off".to_string()),
            ("max_connections".to_string(), "20".to_string()),
        ];
        settings.extend(
            conf.iter()
                .map(|(k, v)| (k.to_string(), quote_conf_value(v))),
        );
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(self.datadir.join("postgresql.conf"))
            .expect("open postgresql.conf");
        writeln!(f, "\n# pg_trace test harness").unwrap();
        for (k, v) in &settings {
            writeln!(f, "{k} = {v}").unwrap();
        }
        drop(f);

        let mut pg_ctl = self.pg_command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(&self.datadir)
            .arg("-l")
            .arg(&self.logfile)
            .args(["-w", "-t", "120", "start"]);
        become_subreaper();
        // From here on Drop must try to stop the server, even if start fails.
        self.running = true;
        self.run(pg_ctl, "pg_ctl start");
        self.pid = self.pid_from_pidfile().unwrap_or_else(|| {
            panic!(
                "PostgreSQL {}: no pid in postmaster.pid after start",
                self.major
            )
        });
    }

    fn pid_from_pidfile(&self) -> Option<i32> {
        fs::read_to_string(self.datadir.join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// The temporary directory holding datadir, sockdir, the log and
    /// [`Cluster::make_dir`] directories.
    pub fn base_dir(&self) -> &Path {
        &self.base
    }

    /// The directory of `initdb`, `pg_ctl`, `postgres`.
    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }

    /// The server log file.
    pub fn log_file(&self) -> &Path {
        &self.logfile
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.logfile, lines)
    }

    /// Creates `base_dir/name` (and parents) owned by the cluster user, e.g. for
    /// `CREATE TABLESPACE ... LOCATION`.
    pub fn make_dir(&self, name: &str) -> PathBuf {
        assert!(
            Path::new(name)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_))),
            "make_dir({name:?}): want a relative path without '..'"
        );
        let dir = self.base.join(name);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", dir.display()));
        let mut d = dir.as_path();
        while d != self.base {
            chown_to_cluster_user(d);
            d = d.parent().expect("make_dir path inside base dir");
        }
        dir
    }

    /// A new connection as superuser `postgres` over the Unix socket.
    pub fn connect(&self, db: &str) -> postgres::Client {
        postgres::Config::new()
            .host_path(&self.sockdir)
            .port(self.port)
            .user("postgres")
            .dbname(db)
            .application_name("pg_trace-test")
            .connect(postgres::NoTls)
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL {}: connect to {db:?} via {}: {}\n--- server log tail ---\n{}",
                    self.major,
                    self.sockdir.display(),
                    describe_pg_error(&e),
                    self.log_tail(20)
                )
            })
    }

    /// Runs `sql` (one or more statements) with the simple query protocol and
    /// returns the rows of all of them, as text.
    pub fn psql(&self, db: &str, sql: &str) -> Vec<Vec<Option<String>>> {
        let mut client = self.connect(db);
        let msgs = client.simple_query(sql).unwrap_or_else(|e| {
            panic!(
                "PostgreSQL {}: query failed: {}\n--- SQL ---\n{sql}",
                self.major,
                describe_pg_error(&e)
            )
        });
        msgs.iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_owned))
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }

    /// Runs `sql` (one or more statements); panics with the SQL and the error on failure.
    /// Several statements in one string run in one implicit transaction, so
    /// `CREATE TABLESPACE`, `CREATE DATABASE`, `VACUUM` and the like need a call of their own.
    pub fn execute(&self, db: &str, sql: &str) {
        let mut client = self.connect(db);
        client.batch_execute(sql).unwrap_or_else(|e| {
            panic!(
                "PostgreSQL {}: SQL failed: {}\n--- SQL ---\n{sql}",
                self.major,
                describe_pg_error(&e)
            )
        });
    }

    /// An open session and the pid of its backend.
    pub fn hold_backend(&self, db: &str) -> HeldBackend {
        let mut client = self.connect(db);
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .unwrap_or_else(|e| panic!("pg_backend_pid(): {}", describe_pg_error(&e)))
            .get(0);
        HeldBackend { client, pid }
    }

    /// The postmaster's pid.
    pub fn postmaster_pid(&self) -> i32 {
        self.pid
    }

    /// Clean shutdown and start again, on the same port and directories: empties shared
    /// buffers, for tests that must see every block read from the file.
    pub fn restart(&mut self) {
        let old = self.pid;
        let mut stop = self.pg_command("pg_ctl");
        stop.arg("-D")
            .arg(&self.datadir)
            .args(["-m", "fast", "-w", "-t", "60", "stop"]);
        self.run(stop, "pg_ctl stop");
        assert!(
            wait_reaped(old, Duration::from_secs(30)),
            "PostgreSQL {}: postmaster {old} still alive after stop",
            self.major
        );
        let mut start = self.pg_command("pg_ctl");
        start
            .arg("-D")
            .arg(&self.datadir)
            .arg("-l")
            .arg(&self.logfile)
            .args(["-w", "-t", "120", "start"]);
        self.run(start, "pg_ctl start");
        self.pid = self.pid_from_pidfile().unwrap_or_else(|| {
            panic!(
                "PostgreSQL {}: no pid in postmaster.pid after restart",
                self.major
            )
        });
    }

    /// Stops the server (immediate mode). Idempotent; never panics.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let pid = match self.pid_from_pidfile() {
            Some(p) => p,
            None if self.pid != 0 => self.pid,
            None => return, // never started
        };
        let mut pg_ctl = self.pg_command("pg_ctl");
        pg_ctl
            .arg("-D")
            .arg(&self.datadir)
            .args(["-m", "immediate", "-w", "-t", "30", "stop"]);
        match pg_ctl.output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "PostgreSQL {}: pg_ctl stop failed: {}",
                self.major,
                describe_output(&out)
            ),
            Err(e) => eprintln!("PostgreSQL {}: cannot run pg_ctl stop: {e}", self.major),
        }
        if !wait_reaped(pid, Duration::from_secs(10)) {
            eprintln!(
                "PostgreSQL {}: postmaster {pid} still alive after pg_ctl stop; SIGKILL",
                self.major
            );
            // SAFETY: kill(2) on the postmaster pid this cluster started.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            if !wait_reaped(pid, Duration::from_secs(10)) {
                eprintln!(
                    "PostgreSQL {}: postmaster {pid} survived SIGKILL",
                    self.major
                );
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = self.tempdir.take() {
            let path = dir.path().to_path_buf();
            if let Err(e) = dir.close() {
                eprintln!("remove {}: {e}", path.display());
            }
        }
    }
}
