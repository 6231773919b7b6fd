//! What reading /proc costs on the two paths that run on a timer: one sample of the
//! process picker (`Lister::sample`, every postgres process on the host) and one poll of
//! the /proc tracer (`ProcfsTracer::poll`: fds, fdinfo, sizes, syscall, io).
//!
//! So that the numbers do not depend on what happens to run on the host, the bench starts
//! its own stand-ins: a "postmaster" (a copy of bash named `postgres`) with eight
//! "backends" (a copy of sleep named `postgres`, titled like a client backend), one of
//! which holds 32 regular files open. Everything lives under target/ and is stopped by pid.
//!
//!     cargo bench --bench proc_sample

use pg_trace::process::list::Lister;
use pg_trace::trace::procfs::ProcfsTracer;
use pg_trace::trace::Tracer;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BACKENDS: usize = 8;
const OPEN_FILES: usize = 32;
const ROUNDS: usize = 15;
const PER_ROUND: usize = 40;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Copy `bin` to `dir/postgres`, so that the kernel's comm of what runs it is `postgres`.
fn named_postgres(dir: &Path, bin: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let to = dir.join("postgres");
    let from = Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .output()
        .unwrap();
    let from = String::from_utf8(from.stdout).unwrap();
    std::fs::copy(from.trim(), &to).unwrap();
    to
}

struct Cluster {
    postmaster: Child,
    backends: Vec<i32>,
    dir: PathBuf,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("proc_sample");
        let _ = std::fs::remove_dir_all(&dir);
        let shell = named_postgres(&dir.join("pm"), "bash");
        let sleep = named_postgres(&dir.join("be"), "sleep");
        let data = dir.join("files");
        std::fs::create_dir_all(&data).unwrap();
        let mut redirs = String::new();
        for i in 0..OPEN_FILES {
            let f = data.join(format!("f{i}"));
            std::fs::write(&f, vec![0u8; 8192 * (i + 1)]).unwrap();
            redirs.push_str(&format!(" {}<{}", i + 10, f.display()));
        }
        let title = "postgres: bench bench [local] idle";
        let mut script = String::from("trap 'kill $(jobs -p)' TERM; ");
        for i in 0..BACKENDS {
            let fds = if i == 0 { redirs.as_str() } else { "" };
            script.push_str(&format!(
                "(exec -a '{title}' {} 1000{fds}) & ",
                sleep.display()
            ));
        }
        script.push_str("wait");
        let postmaster = Command::new(&shell)
            .args(["-c", &script])
            .current_dir(&dir)
            .stdin(Stdio::null())
            // The shell reports each stand-in it loses as "Killed".
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pm = postmaster.id() as i32;
        let deadline = Instant::now() + Duration::from_secs(10);
        let backends = loop {
            let kids: Vec<i32> = std::fs::read_to_string(format!("/proc/{pm}/task/{pm}/children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            let ready = kids.len() == BACKENDS
                && kids.iter().all(|k| {
                    std::fs::read_to_string(format!("/proc/{k}/comm"))
                        .is_ok_and(|c| c.trim() == "postgres")
                        && std::fs::read_dir(format!("/proc/{k}/fd")).is_ok_and(|d| d.count() >= 3)
                });
            if ready {
                break kids;
            }
            assert!(Instant::now() < deadline, "stand-in backends did not start");
            std::thread::sleep(Duration::from_millis(20));
        };
        Cluster {
            postmaster,
            backends,
            dir,
        }
    }

    /// The backend holding the files open.
    fn busy_backend(&self) -> i32 {
        *self
            .backends
            .iter()
            .max_by_key(|b| {
                std::fs::read_dir(format!("/proc/{b}/fd"))
                    .map(|d| d.count())
                    .unwrap_or(0)
            })
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for &b in &self.backends {
            // SAFETY: kill(2) on pids this bench started; an exited one just gives ESRCH.
            unsafe { libc::kill(b, libc::SIGKILL) };
        }
        let _ = self.postmaster.kill();
        let _ = self.postmaster.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn per_call(mut f: impl FnMut()) -> Duration {
    for _ in 0..5 {
        f();
    }
    let rounds: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..PER_ROUND {
                f();
            }
            t.elapsed() / PER_ROUND as u32
        })
        .collect();
    median(rounds)
}

fn main() {
    let cluster = Cluster::start();
    let mut lister = Lister::new();
    let found: usize = lister.sample().iter().map(|c| c.processes.len()).sum();
    let hosts = std::fs::read_dir("/proc")
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().parse::<i32>().is_ok())
        })
        .count();
    let sample = per_call(|| {
        std::hint::black_box(lister.sample());
    });
    println!(
        "picker sample:   {:8.3} ms  ({found} postgres processes among {hosts} on the host)",
        sample.as_secs_f64() * 1e3
    );

    let pid = cluster.busy_backend();
    let mut tracer = ProcfsTracer::attach(&[pid]).unwrap();
    let mut out = Vec::new();
    tracer.poll(&mut out).unwrap();
    let events = out.len();
    let poll = per_call(|| {
        out.clear();
        tracer.poll(&mut out).unwrap();
        std::hint::black_box(&out);
    });
    println!(
        "procfs poll:     {:8.3} ms  ({events} events per poll of one process)",
        poll.as_secs_f64() * 1e3
    );
    drop(cluster);
}
