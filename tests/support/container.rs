//! A PostgreSQL server in namespaces of its own, like a container's: `unshare --mount
//! --pid --fork --net --uts --ipc`, the data directory bind-mounted at
//! [`INSIDE`] (a path that exists only in its mount namespace, on a private tmpfs over
//! `/mnt`), the server running as the cluster user. Clients reach it through a Unix
//! socket in a host-visible temporary directory (path sockets work across network
//! namespaces). The namespace's first process (a shell) restarts the server when it
//! stops, so that [`Container::restart`] can empty shared buffers. On drop (also on a
//! panic) that shell is SIGKILLed by its host pid, which ends every process of the pid
//! namespace, and the temporary directory is removed. No parallel workers, synchronized
//! scans or autovacuum: a scan is one backend reading the whole table from the file.

use super::{bin_dir, chown_to_cluster_user, cluster_user, free_port, skip};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where the server sees its data directory: nothing is there on the host.
pub const INSIDE: &str = "/mnt/pgdata-inside";
/// A directory for a tablespace, also only in the container.
pub const TS_INSIDE: &str = "/mnt/ts-inside";
/// The container's host name (its own UTS namespace).
pub const HOSTNAME: &str = "pgtrace-ct";

pub struct Container {
    pub major: u32,
    /// The data directory as the host sees it.
    pub datadir: PathBuf,
    pub sockdir: PathBuf,
    pub port: u16,
    bin: PathBuf,
    log: PathBuf,
    unshare: Child,
    /// Host pid of the namespace's pid 1 (the shell).
    init: i32,
    /// Host pid of the postmaster.
    pub postmaster: i32,
    /// The postmaster's pid inside (what postmaster.pid says).
    pub ns_postmaster: i32,
    _tempdir: tempfile::TempDir,
}

/// Polls `f` until it returns Some, or panics after `timeout`.
fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn children(pid: i32) -> Vec<i32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The last `NSpid` of a process: its pid in its own namespace.
pub fn ns_pid_of(pid: i32) -> Option<i32> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("NSpid:"))?;
    line.split_whitespace().last()?.parse().ok()
}

impl Container {
    /// initdb on the host, then start the server in its namespaces. None (said with
    /// [`skip`]) when namespaces cannot be made here (not root, no unshare).
    pub fn start(major: u32) -> Option<Container> {
        if cluster_user().is_none() {
            skip("containers", "making namespaces needs root");
            return None;
        }
        if Command::new("unshare").arg("--help").output().is_err() {
            skip("containers", "no unshare(1) (util-linux)");
            return None;
        }
        let bin = bin_dir(major);
        let tempdir = tempfile::Builder::new()
            .prefix("pg_trace-ct-")
            .tempdir()
            .expect("create temp dir");
        let base = tempdir.path().canonicalize().unwrap();
        chown_to_cluster_user(&base);
        let datadir = base.join("data");
        let sockdir = base.join("sock");
        let log = base.join("postgres.log");
        let ts = base.join("ts");
        for d in [&sockdir, &ts] {
            fs::create_dir(d).unwrap();
            fs::set_permissions(d, fs::Permissions::from_mode(0o700)).unwrap();
            chown_to_cluster_user(d);
        }
        let port = free_port();
        let (uid, gid) = cluster_user().unwrap();

        let mut initdb = pg_env(Command::new(bin.join("initdb")), &bin);
        initdb
            .current_dir(&base)
            .uid(uid)
            .gid(gid)
            .arg("-D")
            .arg(&datadir)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8"])
            .args(["--locale=C", "--no-sync"]);
        let out = initdb.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(datadir.join("postgresql.conf"))
            .unwrap();
        writeln!(
            f,
            "\nlisten_addresses = ''\nunix_socket_directories = '{}'\nport = {port}\n\
             shared_buffers = '16MB'\nfsync = off\nmax_connections = 20\n\
             max_parallel_workers_per_gather = 0\nsynchronize_seqscans = off\nautovacuum = off",
            sockdir.display()
        )
        .unwrap();
        drop(f);

        // pid 1 of the namespace: the mounts, then the server, started again when it
        // stops (a restart) at most a few times.
        let script = r#"set -e
hostname "$CT_HOSTNAME"
mount -t tmpfs -o mode=755 pgtrace-ct /mnt
mkdir "$CT_INSIDE"
mount --bind "$CT_DATA" "$CT_INSIDE"
mkdir "$CT_TS_INSIDE"
mount --bind "$CT_TS" "$CT_TS_INSIDE"
set +e
for i in 1 2 3 4 5; do
  setpriv --reuid="$CT_UID" --regid="$CT_GID" --clear-groups -- \
    "$CT_BIN/postgres" -D "$CT_INSIDE" >>"$CT_LOG" 2>&1
done
"#;
        let mut cmd = pg_env(Command::new("unshare"), &bin);
        cmd.args([
            "--mount",
            "--pid",
            "--fork",
            "--net",
            "--uts",
            "--ipc",
            "--mount-proc",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            script,
        ])
        .env("CT_HOSTNAME", HOSTNAME)
        .env("CT_INSIDE", INSIDE)
        .env("CT_DATA", &datadir)
        .env("CT_TS", &ts)
        .env("CT_TS_INSIDE", TS_INSIDE)
        .env("CT_UID", uid.to_string())
        .env("CT_GID", gid.to_string())
        .env("CT_BIN", &bin)
        .env("CT_LOG", &log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
        let unshare = cmd.spawn().expect("spawn unshare");
        let upid = unshare.id() as i32;
        let mut c = Container {
            major,
            datadir,
            sockdir,
            port,
            bin,
            log,
            unshare,
            init: 0,
            postmaster: 0,
            ns_postmaster: 0,
            _tempdir: tempdir,
        };
        c.init = poll("the namespace's init", Duration::from_secs(10), || {
            children(upid).first().copied()
        });
        c.wait_ready();
        Some(c)
    }

    /// The postmaster running and accepting connections: its host and namespace pids.
    fn wait_ready(&mut self) {
        let init = self.init;
        let t = Instant::now();
        self.postmaster = poll("the postmaster", Duration::from_secs(60), || {
            if let Ok(Some(st)) = self.unshare.try_wait() {
                panic!("the container exited ({st}): {}", self.log_tail());
            }
            children(init).into_iter().find(|&p| {
                fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "postgres")
            })
        });
        poll(
            "the server to accept connections",
            Duration::from_secs(60),
            || {
                assert!(
                    t.elapsed() < Duration::from_secs(60),
                    "server not ready: {}",
                    self.log_tail()
                );
                self.try_connect("postgres").map(|_| ())
            },
        );
        self.ns_postmaster = ns_pid_of(self.postmaster).expect("NSpid of the postmaster");
        assert_ne!(
            self.ns_postmaster, self.postmaster,
            "the postmaster is not in a pid namespace of its own"
        );
    }

    fn log_tail(&self) -> String {
        let s = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn try_connect(&self, db: &str) -> Option<postgres::Client> {
        postgres::Config::new()
            .host_path(&self.sockdir)
            .port(self.port)
            .user("postgres")
            .dbname(db)
            .application_name("pg_trace-test")
            .connect(postgres::NoTls)
            .ok()
    }

    pub fn connect(&self, db: &str) -> postgres::Client {
        self.try_connect(db)
            .unwrap_or_else(|| panic!("connect to the container's server: {}", self.log_tail()))
    }

    pub fn execute(&self, db: &str, sql: &str) {
        self.connect(db)
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {}", super::describe_pg_error(&e)));
    }

    /// An open session, with its backend's host pid (and the pid it has inside).
    pub fn hold_backend(&self, db: &str) -> (postgres::Client, i32, i32) {
        let mut client = self.connect(db);
        let ns: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .unwrap()
            .get(0);
        let host = poll("the backend's host pid", Duration::from_secs(10), || {
            children(self.postmaster)
                .into_iter()
                .find(|&p| ns_pid_of(p) == Some(ns))
        });
        (client, host, ns)
    }

    /// Fast shutdown; the namespace's init starts the server again (empty shared buffers).
    pub fn restart(&mut self) {
        let old = self.postmaster;
        // SAFETY: kill(2) on the postmaster this container started.
        unsafe { libc::kill(old, libc::SIGINT) };
        poll(
            "the old postmaster to exit",
            Duration::from_secs(60),
            || (!children(self.init).contains(&old)).then_some(()),
        );
        self.wait_ready();
    }

    pub fn bin_dir(&self) -> &Path {
        &self.bin
    }
}

/// The environment PostgreSQL programs run with: nothing of the caller's libpq settings,
/// and the npm-packaged binaries' own libraries first.
fn pg_env(mut cmd: Command, bin: &Path) -> Command {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("PG") {
            cmd.env_remove(k);
        }
    }
    cmd.env("TZ", "UTC").env("LC_ALL", "C");
    if let Some(llp) = std::env::var_os("LD_LIBRARY_PATH") {
        let lib = bin.join("../lib");
        if lib.is_dir() {
            let mut v = lib.into_os_string();
            v.push(":");
            v.push(llp);
            cmd.env("LD_LIBRARY_PATH", v);
        }
    }
    cmd
}

impl Drop for Container {
    fn drop(&mut self) {
        // SIGKILL to the namespace's pid 1 ends every process in it.
        if self.init > 0 {
            // SAFETY: kill(2) on the host pid of the namespace init this container made.
            unsafe { libc::kill(self.init, libc::SIGKILL) };
        }
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.unshare.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}
