//! The original `-d`: every syscall of the traced backend printed, with the fd named as a
//! PostgreSQL object and the offset, on a real scan.

mod support;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::Cluster;

#[test]
fn debug_names_every_read() {
    let mut c = Cluster::start_with(15, &[("shared_buffers", "16MB")]);
    // ~40 MB: more than shared_buffers, so the scan reads the file.
    c.execute(
        "postgres",
        "CREATE TABLE dbg AS SELECT g, repeat(md5(g::text), 2) AS pad FROM generate_series(1, 300000) g",
    );
    c.execute("postgres", "CHECKPOINT");
    c.restart();
    let mut held = c.hold_backend("postgres");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pg_trace"))
        .args(["-d", "-p", &held.pid.to_string(), "--no-tui"])
        .args(["--backend", "ebpf", "--interval", "100"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pg_trace");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = Arc::clone(&lines);
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for l in std::io::BufReader::new(stdout).lines() {
            sink.lock().unwrap().push(l.unwrap());
        }
    });
    // Attached once the first interval line is out.
    let t = Instant::now();
    while !lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains(" events ("))
    {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "pg_trace never attached"
        );
        assert!(child.try_wait().unwrap().is_none(), "pg_trace exited early");
        std::thread::sleep(Duration::from_millis(20));
    }
    let n: i64 = held
        .client
        .query_one("SELECT count(*) FROM dbg", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 300000);
    let t = Instant::now();
    let seen = |ls: &[String]| {
        ls.iter()
            .filter(|l| l.contains("pread64(fd=") && l.contains("public.dbg"))
            .count()
    };
    while seen(&lines.lock().unwrap()) < 100 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "reads of public.dbg not printed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on our own unreaped child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let st = child.wait().unwrap();
    reader.join().unwrap();
    assert!(st.success());
    let lines = lines.lock().unwrap();
    // `pread64(fd=N → public.dbg, 8192 @ OFF) = 8192`: offsets are block-aligned and
    // a full scan reaches past the first megabyte.
    let offsets: Vec<u64> = lines
        .iter()
        .filter(|l| l.contains("pread64(fd=") && l.contains("public.dbg"))
        .filter_map(|l| {
            l.split(" @ ")
                .nth(1)?
                .split(')')
                .next()?
                .trim()
                .parse()
                .ok()
        })
        .collect();
    assert!(
        offsets.len() >= 100,
        "offsets not parsed: {:?}",
        &lines[..lines.len().min(20)]
    );
    assert!(offsets.iter().all(|o| o % 8192 == 0), "{offsets:?}");
    assert!(*offsets.iter().max().unwrap() > 1 << 20);
}
