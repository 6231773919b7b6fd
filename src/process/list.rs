//! Every PostgreSQL process on the host, grouped by cluster: what the process picker shows.
//! Pure parsers (process title, `postmaster.pid`) and a thin sampler that reads `/proc`
//! (through `process::proc`) and turns counter deltas into CPU % and I/O rates.

use crate::process::proc::{self, Stat};
use crate::process::status::StatusSample;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

pub use crate::process::proc::{state_name, Pid};

/// What a postgres process title says (`postgres: alice sales [local] SELECT`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Title {
    /// `client backend`, `walsender`, `checkpointer`, `autovacuum worker`, `postmaster`...
    pub backend_type: String,
    pub user: Option<String>,
    pub database: Option<String>,
    /// `[local]` or `10.0.0.5(41234)`.
    pub host: Option<String>,
    /// The rest: `SELECT`, `idle`, `sending backup "nightly"`, `streaming 0/3000148`.
    pub activity: String,
    /// `cluster_name`, when set (`postgres: 15/main: checkpointer`).
    pub cluster_name: Option<String>,
}

/// Auxiliary and background processes, by the title prefix PostgreSQL gives them.
const AUX: &[&str] = &[
    "checkpointer",
    "background writer",
    "walwriter",
    "autovacuum launcher",
    "autovacuum worker",
    "logical replication launcher",
    "logical replication worker",
    "logical replication apply worker",
    "logical replication tablesync worker",
    "logical replication parallel apply worker",
    "parallel worker",
    "stats collector",
    "archiver",
    "startup",
    "walreceiver",
    "walsummarizer",
    "wal summarizer",
    "logger",
    "io worker",
    "slotsync worker",
    "TimescaleDB",
];

fn is_host(tok: &str) -> bool {
    tok == "[local]" || (tok.ends_with(')') && tok.contains('('))
}

/// Parse a process title (`/proc/PID/cmdline` with NULs as spaces). `None` when it is not
/// a postgres process title at all.
pub fn parse_title(raw: &str) -> Option<Title> {
    let t = raw.trim();
    let Some(rest) = t.strip_prefix("postgres: ") else {
        // The postmaster keeps its command line: `/usr/lib/postgresql/15/bin/postgres -D ...`.
        let exe = t.split_whitespace().next()?;
        let base = exe.rsplit('/').next().unwrap_or(exe);
        return (base == "postgres" || base == "postmaster").then(|| Title {
            backend_type: "postmaster".into(),
            activity: t.to_string(),
            ..Title::default()
        });
    };
    let mut rest = rest.trim();
    let mut cluster_name = None;
    // `cluster_name: title`: the name has no spaces and ends with ": ". A client title can
    // hold ": " too (in the query text) but never in its first word.
    if let Some((first, after)) = rest.split_once(": ") {
        if !first.contains(' ') && !first.is_empty() {
            cluster_name = Some(first.to_string());
            rest = after;
        }
    }
    let mut title = Title {
        cluster_name,
        ..Title::default()
    };
    for aux in AUX {
        if let Some(after) = rest.strip_prefix(aux) {
            if after.is_empty() || after.starts_with(' ') {
                title.backend_type = (*aux).to_string();
                title.activity = after.trim().to_string();
                if *aux == "autovacuum worker" && !title.activity.is_empty() {
                    title.database = Some(title.activity.clone());
                }
                return Some(title);
            }
        }
    }
    let (kind, rest) = match rest.strip_prefix("walsender ") {
        Some(r) => ("walsender", r),
        None => ("client backend", rest),
    };
    title.backend_type = kind.into();
    // `user [database] host activity...`: the host token ends the connection part.
    let toks: Vec<&str> = rest.split(' ').collect();
    let Some(h) = toks.iter().take(3).position(|t| is_host(t)) else {
        // No host: a background worker with its own title.
        title.backend_type = "background worker".into();
        title.activity = rest.to_string();
        return Some(title);
    };
    if h >= 1 {
        title.user = Some(toks[0].to_string());
    }
    if h == 2 {
        title.database = Some(toks[1].to_string());
    }
    title.host = Some(toks[h].to_string());
    title.activity = toks[h + 1..].join(" ").trim().to_string();
    Some(title)
}

/// The port, fourth line of `postmaster.pid`.
pub fn parse_postmaster_pid(text: &str) -> Option<u16> {
    text.lines().nth(3)?.trim().parse().ok()
}

#[derive(Debug, Clone, PartialEq)]
pub struct PgProcess {
    /// The host's pid.
    pub pid: Pid,
    /// The pid its own namespace gives it, for a process in a container.
    pub ns_pid: Option<Pid>,
    pub title: Title,
    pub state: char,
    /// Percent of one core since the previous sample (None on the first).
    pub cpu: Option<f64>,
    /// Bytes/s read and written through syscalls since the previous sample (None on the
    /// first, or when /proc/PID/io is not readable).
    pub read_bps: Option<f64>,
    pub write_bps: Option<f64>,
    /// From the server's shared memory (root, supported major): what `pg_stat_activity`
    /// would say. None when it could not be read; the title is all there is then.
    pub memory: Option<MemStatus>,
    /// Its most sampled wait event over the last seconds (`PgSleep 95%`, `CPU 80%`),
    /// when someone samples the cluster's wait events (the picker does).
    pub top_wait: Option<String>,
}

/// One process's row of the offline `pg_stat_activity` (`pg_trace ps`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemStatus {
    pub backend_type: Option<String>,
    /// `active`, `idle`, `idle in transaction`, ...
    pub state: Option<String>,
    /// `Timeout:PgSleep`
    pub wait: Option<String>,
    pub query: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PgCluster {
    pub postmaster: Pid,
    /// From the postmaster's working directory (root) or its `-D` argument: the path as
    /// the server names it (in its container, if it is in one).
    pub datadir: Option<PathBuf>,
    /// The container the server runs in (`docker 0123456789ab`, `host NAME`, ...; see
    /// [`crate::process::ns::container_label`]); None on the host.
    pub container: Option<String>,
    pub port: Option<u16>,
    pub major: Option<u32>,
    /// The postmaster first, then its children by pid.
    pub processes: Vec<PgProcess>,
    /// A low-level backup running (or stopping) on it, when its memory was read.
    pub server_backup: Option<crate::process::server_backup::ServerBackup>,
}

impl PgCluster {
    /// `/var/lib/postgresql/15/main :5432 PG 15`
    pub fn label(&self) -> String {
        let dir = self
            .datadir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| {
                format!("postmaster {} (data directory unreadable)", self.postmaster)
            });
        let mut s = match &self.container {
            Some(c) => format!("[{c}] {dir}"),
            None => dir,
        };
        if let Some(p) = self.port {
            s.push_str(&format!("  port {p}"));
        }
        if let Some(m) = self.major {
            s.push_str(&format!("  PostgreSQL {m}"));
        }
        s
    }
}

/// What one sample remembers of a process for the next: when, CPU ticks, (rchar, wchar).
type Counters = (u64, u64, Option<(u64, u64)>);

/// Samples /proc; keeps the previous counters so that the next sample has rates.
#[derive(Default)]
pub struct Lister {
    prev: HashMap<Pid, Counters>,
    /// Status readers by postmaster pid, kept between samples (finding the array costs a
    /// search of the shared memory index). A reader that fails is dropped and retried.
    readers: HashMap<Pid, crate::process::status::StatusReader>,
    /// When opening or reading a postmaster's status last failed (monotonic ns): opening
    /// scans shared memory on the caller's thread, so a failing cluster is retried only
    /// every `READER_RETRY_NS`, not every sample.
    failed: HashMap<Pid, u64>,
    /// The container of each postmaster, found once (it may cost a thread that joins the
    /// container's UTS namespace).
    containers: HashMap<Pid, Option<String>>,
    /// "XLOG Ctl" readers by postmaster pid, for the low-level backup of each cluster;
    /// None: opening failed, not retried for that postmaster (each try searches memory).
    xlogs: HashMap<Pid, Option<crate::process::server_backup::XlogReader>>,
}

const READER_RETRY_NS: u64 = 10_000_000_000;

/// Whether a postmaster whose reader last failed at `failed_at` may be tried again `now`.
fn may_retry(failed_at: Option<u64>, now: u64) -> bool {
    match failed_at {
        None => true,
        Some(t) => now.saturating_sub(t) >= READER_RETRY_NS,
    }
}

/// Every status slot of a cluster, read as its postmaster maps shared memory.
fn memory_rows(
    reader: &mut crate::process::status::StatusReader,
) -> Option<(HashMap<Pid, MemStatus>, Vec<StatusSample>)> {
    let rows = reader.every_process().ok()?;
    Some((
        rows.clone()
            .into_iter()
            .map(|s| {
                let wait = match (&s.wait_event_type, &s.wait_event) {
                    (Some(t), Some(e)) => Some(format!("{t}:{e}")),
                    _ => None,
                };
                let row = MemStatus {
                    backend_type: s.backend_type,
                    state: s.state,
                    wait,
                    query: s.query,
                };
                (s.pid, row)
            })
            .collect(),
        rows,
    ))
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// The data directory as the server names it, and where it is read from here (under
/// `/proc/PID/root` for a server in a container).
fn datadir_of(postmaster: Pid, title: &Title) -> Option<(PathBuf, PathBuf)> {
    let root = crate::process::ns::foreign_root(postmaster);
    if let Ok(cwd) = std::fs::read_link(format!("/proc/{postmaster}/cwd")) {
        let here = crate::process::ns::under_root(root.as_deref(), &cwd);
        if here.join("PG_VERSION").exists() {
            return Some((cwd, here));
        }
    }
    // Unprivileged: the -D argument of the command line, if absolute.
    let toks: Vec<&str> = title.activity.split_whitespace().collect();
    let i = toks.iter().position(|t| *t == "-D")?;
    let d = Path::new(toks.get(i + 1)?);
    let here = crate::process::ns::under_root(root.as_deref(), d);
    d.is_absolute().then(|| (d.to_path_buf(), here))
}

/// One postgres process as /proc shows it at this sample.
struct Seen {
    pid: Pid,
    ns_pid: Option<Pid>,
    title: Title,
    stat: Stat,
    /// (rchar, wchar), when /proc/PID/io is readable.
    io: Option<(u64, u64)>,
}

/// A postgres process by the kernel's name for it, then by its title; None for any other
/// process, or one that is gone.
fn look_at(pid: Pid) -> Option<Seen> {
    let comm = proc::comm(pid)?;
    if comm != "postgres" && comm != "postmaster" {
        return None;
    }
    let handle = proc::open(pid)?;
    let title = proc::title_of(&handle).and_then(|t| parse_title(&t))?;
    let stat = Stat::of(&handle)?;
    let io = proc::io_of(&handle).map(|io| (io.rchar, io.wchar));
    let ns_pid = crate::process::ns::in_other_pid_ns(pid)
        .then(|| crate::process::ns::ns_pid(pid))
        .flatten();
    Some(Seen {
        pid,
        ns_pid,
        title,
        stat,
        io,
    })
}

/// Every postgres process on the host.
fn postgres_processes() -> Vec<Seen> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<Pid>().ok())
        .filter_map(look_at)
        .collect()
}

/// The cluster a postmaster heads, with no processes yet: its data directory, port and
/// major version.
fn cluster_of(postmaster: &Seen) -> PgCluster {
    let dirs = datadir_of(postmaster.pid, &postmaster.title);
    let read = |name: &str| {
        dirs.as_ref()
            .and_then(|(_, here)| std::fs::read_to_string(here.join(name)).ok())
    };
    let datadir = dirs.as_ref().map(|(shown, _)| shown.clone());
    PgCluster {
        postmaster: postmaster.pid,
        container: None,
        port: read("postmaster.pid").and_then(|t| parse_postmaster_pid(&t)),
        major: read("PG_VERSION").and_then(|t| t.trim().parse().ok()),
        datadir,
        processes: Vec::new(),
        server_backup: None,
    }
}

/// Clusters by postmaster: postgres processes whose parent is not one.
fn clusters_of(seen: &[Seen]) -> BTreeMap<Pid, PgCluster> {
    let pids: HashSet<Pid> = seen.iter().map(|r| r.pid).collect();
    seen.iter()
        .filter(|r| !pids.contains(&r.stat.ppid))
        .map(|r| (r.pid, cluster_of(r)))
        .collect()
}

/// CPU % of one core and read/write bytes/s between two samples `dt_s` apart.
fn rates(
    prev: &Counters,
    now: &Seen,
    dt_s: f64,
    hz: f64,
) -> (Option<f64>, Option<f64>, Option<f64>) {
    let &(_, ticks0, io0) = prev;
    let cpu = now.stat.cpu_ticks.saturating_sub(ticks0) as f64 / hz / dt_s * 100.0;
    let (rd, wr) = match (io0, now.io) {
        (Some((r0, w0)), Some((r1, w1))) => (
            Some(r1.saturating_sub(r0) as f64 / dt_s),
            Some(w1.saturating_sub(w0) as f64 / dt_s),
        ),
        _ => (None, None),
    };
    (Some(cpu), rd, wr)
}

/// Clusters ordered by data directory, each with its postmaster first, then by pid.
fn in_order(clusters: BTreeMap<Pid, PgCluster>) -> Vec<PgCluster> {
    let mut out: Vec<PgCluster> = clusters.into_values().collect();
    for c in &mut out {
        let pm = c.postmaster;
        c.processes.sort_by_key(|p| (p.pid != pm, p.pid));
    }
    // The host's clusters first, then each container's.
    out.sort_by(|a, b| {
        (&a.container, &a.datadir, a.postmaster).cmp(&(&b.container, &b.datadir, b.postmaster))
    });
    out
}

impl Lister {
    pub fn new() -> Lister {
        Lister::default()
    }

    /// Every postgres process now, grouped by cluster (clusters ordered by data directory).
    pub fn sample(&mut self) -> Vec<PgCluster> {
        let now = crate::process::clock::monotonic_ns();
        let seen = postgres_processes();
        let mut clusters = clusters_of(&seen);
        self.containers.retain(|pm, _| clusters.contains_key(pm));
        for (pm, c) in clusters.iter_mut() {
            c.container = self
                .containers
                .entry(*pm)
                .or_insert_with(|| crate::process::ns::container_label(*pm))
                .clone();
        }
        self.place(seen, &mut clusters, now);
        // Whose memory we may read is known per cluster only by trying (our own user's, or
        // any with CAP_SYS_PTRACE); a refusal is remembered and retried later.
        self.add_memory(&mut clusters, now);
        in_order(clusters)
    }

    /// Put each process in its cluster, with rates against the previous sample, and
    /// remember its counters for the next.
    fn place(&mut self, seen: Vec<Seen>, clusters: &mut BTreeMap<Pid, PgCluster>, now: u64) {
        let hz = clock_ticks();
        let mut next_prev = HashMap::with_capacity(seen.len());
        for r in seen {
            let (cpu, read_bps, write_bps) = match self.prev.get(&r.pid) {
                Some(prev) if now > prev.0 => rates(prev, &r, (now - prev.0) as f64 / 1e9, hz),
                _ => (None, None, None),
            };
            next_prev.insert(r.pid, (now, r.stat.cpu_ticks, r.io));
            let owner = if clusters.contains_key(&r.pid) {
                r.pid
            } else {
                r.stat.ppid
            };
            if let Some(c) = clusters.get_mut(&owner) {
                c.processes.push(PgProcess {
                    pid: r.pid,
                    ns_pid: r.ns_pid,
                    title: r.title,
                    state: r.stat.state,
                    cpu,
                    read_bps,
                    write_bps,
                    memory: None,
                    top_wait: None,
                });
            }
        }
        self.prev = next_prev;
    }

    /// What shared memory says of each process, for clusters of a supported major.
    fn add_memory(&mut self, clusters: &mut BTreeMap<Pid, PgCluster>, now: u64) {
        self.readers.retain(|pm, _| clusters.contains_key(pm));
        self.failed.retain(|pm, _| clusters.contains_key(pm));
        self.xlogs.retain(|pm, _| clusters.contains_key(pm));
        for c in clusters.values_mut() {
            let Some((mut rows, samples)) = self.memory_of(c, now) else {
                continue;
            };
            for p in &mut c.processes {
                p.memory = rows.remove(&p.pid);
            }
            c.server_backup = self.server_backup_of(c, &samples);
        }
    }

    /// The cluster's low-level backup, through its kept "XLOG Ctl" reader (opened once its
    /// status reader works; without it, the sessions alone say start and stop phases).
    fn server_backup_of(
        &mut self,
        c: &PgCluster,
        samples: &[StatusSample],
    ) -> Option<crate::process::server_backup::ServerBackup> {
        use crate::process::server_backup::{assess_files, XlogReader};
        let pm = c.postmaster;
        let major = c.major?;
        let reader = self
            .xlogs
            .entry(pm)
            .or_insert_with(|| XlogReader::open(pm, major).ok());
        let x = match reader.as_ref().map(XlogReader::read) {
            Some(Ok(x)) => Some(x),
            Some(Err(_)) => {
                *reader = None;
                None
            }
            None => None,
        };
        assess_files(c.datadir.as_deref()?, Some(pm), x.as_ref(), samples)
    }

    /// Every status slot of cluster `c`, through its kept reader (opened when missing and
    /// not failed lately); None when there is none, and the failure is remembered.
    fn memory_of(
        &mut self,
        c: &PgCluster,
        now: u64,
    ) -> Option<(HashMap<Pid, MemStatus>, Vec<StatusSample>)> {
        use crate::process::status::StatusReader;
        let major = c.major.filter(|m| crate::version::SUPPORTED.contains(m))?;
        let pm = c.postmaster;
        if !self.readers.contains_key(&pm) {
            if !may_retry(self.failed.get(&pm).copied(), now) {
                return None;
            }
            match StatusReader::open(pm, major) {
                Ok(r) => self.readers.insert(pm, r),
                Err(_) => {
                    self.failed.insert(pm, now);
                    return None;
                }
            };
        }
        let rows = self.readers.get_mut(&pm).and_then(memory_rows);
        match rows {
            Some(_) => self.failed.remove(&pm),
            None => {
                self.readers.remove(&pm);
                self.failed.insert(pm, now)
            }
        };
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_backends() {
        let t = parse_title("postgres: alice sales [local] SELECT").unwrap();
        assert_eq!(t.backend_type, "client backend");
        assert_eq!(t.user.as_deref(), Some("alice"));
        assert_eq!(t.database.as_deref(), Some("sales"));
        assert_eq!(t.host.as_deref(), Some("[local]"));
        assert_eq!(t.activity, "SELECT");
        let t =
            parse_title("postgres: 15/main: bob shop 10.1.2.3(51234) idle in transaction").unwrap();
        assert_eq!(t.cluster_name.as_deref(), Some("15/main"));
        assert_eq!(t.database.as_deref(), Some("shop"));
        assert_eq!(t.activity, "idle in transaction");
    }

    #[test]
    fn walsenders() {
        let t = parse_title("postgres: walsender rep [local] sending backup \"nightly\"").unwrap();
        assert_eq!(t.backend_type, "walsender");
        assert_eq!(t.user.as_deref(), Some("rep"));
        assert_eq!(t.database, None);
        assert_eq!(t.activity, "sending backup \"nightly\"");
        let t = parse_title("postgres: walsender postgres postgres [local] idle").unwrap();
        assert_eq!(t.database.as_deref(), Some("postgres"));
        assert_eq!(t.activity, "idle");
    }

    #[test]
    fn auxiliary_and_postmaster() {
        assert_eq!(
            parse_title("postgres: checkpointer ").unwrap().backend_type,
            "checkpointer"
        );
        let t = parse_title("postgres: autovacuum worker shop").unwrap();
        assert_eq!(t.backend_type, "autovacuum worker");
        assert_eq!(t.database.as_deref(), Some("shop"));
        assert_eq!(
            parse_title("postgres: parallel worker for PID 42")
                .unwrap()
                .activity,
            "for PID 42"
        );
        let t = parse_title("/usr/lib/postgresql/15/bin/postgres -D /srv/pg").unwrap();
        assert_eq!(t.backend_type, "postmaster");
        assert_eq!(parse_title("bash -c x"), None);
        assert_eq!(parse_title(""), None);
        assert_eq!(
            parse_title("postgres: my custom worker")
                .unwrap()
                .backend_type,
            "background worker"
        );
    }

    #[test]
    fn pidfile() {
        assert_eq!(
            parse_postmaster_pid("123\n/srv/pg\n1700000000\n5433\n/tmp\n"),
            Some(5433)
        );
        assert_eq!(parse_postmaster_pid("123\n"), None);
    }

    #[test]
    fn failed_readers_wait_ten_seconds() {
        let t0 = 5_000_000_000;
        assert!(may_retry(None, t0));
        assert!(!may_retry(Some(t0), t0));
        assert!(!may_retry(Some(t0), t0 + READER_RETRY_NS - 1));
        assert!(may_retry(Some(t0), t0 + READER_RETRY_NS));
        // A clock that went backwards (it should not) does not unlock retries early.
        assert!(!may_retry(Some(t0), t0 - 1));
    }

    #[test]
    fn sample_does_not_panic() {
        let mut l = Lister::new();
        let _ = l.sample();
        let _ = l.sample();
    }
}
