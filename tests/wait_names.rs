//! The wait-event name tables (`wait_names.rs`) against the servers themselves:
//! - 17+: the set of (type, name) in `pg_wait_events`, minus the classes named at run
//!   time (LWLock, Lock, InjectionPoint), must equal our table's set exactly.
//! - every major: the server binary's own `pgstat_get_wait_event`, called under gdb
//!   (stopped before `main`, so no server runs) for every event number of every
//!   tabled class (and of Lock) and a few past the end, must give the name `describe`
//!   gives, and "unknown wait event" (Lock: "???") exactly where we fall back to
//!   `<class> #<n>`. This pins the
//!   numbering, which the view cannot show.

mod support;

use pg_trace::process::status::wait_names::{names, CLASSES};
use pg_trace::process::status::waits::describe;
use std::collections::BTreeSet;
use std::io::Write;
use std::process::Command;
use support::Cluster;

fn class_base(class: &str) -> u32 {
    match class {
        "Lock" => 0x03,
        "BufferPin" => 0x04,
        "Activity" => 0x05,
        "Client" => 0x06,
        "Extension" => 0x07,
        "IPC" => 0x08,
        "Timeout" => 0x09,
        "IO" => 0x0A,
        _ => panic!("no class {class}"),
    }
}

fn pg_wait_events_match(major: u32) {
    let c = Cluster::start(major);
    let mut client = c.connect("postgres");
    let rows = client
        .query(
            "SELECT type, name FROM pg_wait_events \
             WHERE type NOT IN ('LWLock', 'Lock', 'InjectionPoint')",
            &[],
        )
        .unwrap();
    let server: BTreeSet<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let ours: BTreeSet<(String, String)> = CLASSES
        .iter()
        .flat_map(|class| {
            names(major, class)
                .iter()
                .map(move |n| (class.to_string(), n.to_string()))
        })
        .collect();
    let missing: Vec<_> = server.difference(&ours).collect();
    let extra: Vec<_> = ours.difference(&server).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "PG{major}: pg_wait_events has {missing:?} that we lack; we table {extra:?} that it lacks"
    );
    assert!(
        server.len() > 150,
        "PG{major}: only {} events",
        server.len()
    );
}

#[test]
fn tables_equal_pg_wait_events() {
    let majors: Vec<u32> = support::majors().into_iter().filter(|m| *m >= 17).collect();
    if majors.is_empty() {
        eprintln!("*** SKIPPED tables_equal_pg_wait_events: pg_wait_events exists from 17, and PG_TRACE_TEST_MAJORS has none ***");
        return;
    }
    std::thread::scope(|s| {
        for m in majors {
            s.spawn(move || pg_wait_events_match(m));
        }
    });
}

/// (class, number) pairs to ask the binary about: every tabled number and three past
/// the end. Extension stops at 0: from 17 a higher number is looked up in shared
/// memory, which a process stopped before `main` does not have.
fn probes(major: u32) -> Vec<(&'static str, u32)> {
    // Lock is named from lock.c's tag-type table, which `describe` holds itself.
    let lock = (0..16).map(|i| ("Lock", i));
    CLASSES
        .iter()
        .flat_map(|class| {
            let n = if *class == "Extension" {
                1
            } else {
                names(major, class).len() as u32 + 3
            };
            (0..n).map(move |i| (*class, i))
        })
        .chain(lock)
        .collect()
}

fn binary_agrees(major: u32) {
    let postgres = support::bin_dir(major).join("postgres");
    let probes = probes(major);
    let mut script = tempfile::NamedTempFile::new().unwrap();
    // Stopping in __libc_start_main means the dynamic loader has relocated the
    // executable but PostgreSQL's main (and its refusal to run as root) has not run.
    writeln!(
        script,
        "set pagination off\nset confirm off\nset breakpoint pending on\n\
         break __libc_start_main\nrun"
    )
    .unwrap();
    for (class, i) in &probes {
        let info = (class_base(class) << 24) | i;
        writeln!(
            script,
            "printf \"EV {class} {i} %s\\n\", (char *) pgstat_get_wait_event({info})"
        )
        .unwrap();
    }
    writeln!(script, "kill\nquit").unwrap();
    let out = Command::new("gdb")
        .args(["-batch", "-nx", "-x"])
        .arg(script.path())
        .arg("--args")
        .arg(&postgres)
        .arg("--version")
        .output()
        .expect("running gdb");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let got: Vec<(String, u32, String)> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("EV "))
        .map(|l| {
            let mut p = l.splitn(3, ' ');
            let class = p.next().unwrap().to_string();
            let i = p.next().unwrap().parse().unwrap();
            (class, i, p.next().unwrap_or("").to_string())
        })
        .collect();
    assert_eq!(
        got.len(),
        probes.len(),
        "PG{major}: gdb answered {} of {} probes; stderr:\n{}",
        got.len(),
        probes.len(),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut wrong = Vec::new();
    for (class, i, theirs) in got {
        let info = (class_base(&class) << 24) | i;
        let ours = describe(major, info).unwrap().1;
        let fallback = format!("{class} #{i}");
        let same = if theirs == "unknown wait event" || theirs == "???" {
            ours == fallback
        } else {
            ours == theirs
        };
        if !same {
            wrong.push(format!("{class} {i}: server {theirs:?}, ours {ours:?}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "PG{major} ({}):\n{}",
        postgres.display(),
        wrong.join("\n")
    );
}

#[test]
fn tables_equal_server_binaries() {
    if Command::new("gdb").arg("--version").output().is_err() {
        eprintln!("*** SKIPPED tables_equal_server_binaries: no gdb on PATH ***");
        return;
    }
    std::thread::scope(|s| {
        for m in support::majors() {
            s.spawn(move || binary_agrees(m));
        }
    });
}
