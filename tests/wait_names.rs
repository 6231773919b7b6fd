//! The wait-event name tables (`wait_names.rs`) against the servers themselves. No
//! test here runs a debugger or depends on the CPU: what a debugger can tell is
//! checked in, with its provenance, and the tests read files.
//! - every major: `tests/data/wait_names/pg<major>.tsv` holds what the server binary's
//!   own `pgstat_get_wait_event` answered for every event number of every class (and
//!   a few past each class's end), as written by `scripts/wait-names-from-gdb.sh`.
//!   `describe` must give the same name for every row, and `<class> #<n>` exactly
//!   where the server said "unknown wait event" (Lock: "???"). This pins the
//!   numbering, which no view shows.
//! - every major: each name we table is a whole NUL-terminated string in the read-only
//!   data of the server binary the tests run, so the names come from the binaries
//!   themselves; a binary other than the one the data file was made from is reported
//!   loudly but does not fail (numbers are stable within a major: back branches only
//!   append).
//! - 17+: the set of (type, name) in `pg_wait_events`, minus the classes named at run
//!   time (LWLock, Lock, InjectionPoint), must equal our table's set exactly.

mod support;

use object::{Object, ObjectSection, SectionKind};
use pg_trace::process::status::wait_names::{names, CLASSES};
use pg_trace::process::status::waits::describe;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
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
        support::skip(
            "tables_equal_pg_wait_events",
            "pg_wait_events exists from 17, and PG_TRACE_TEST_MAJORS has none",
        );
        return;
    }
    std::thread::scope(|s| {
        for m in majors {
            s.spawn(move || pg_wait_events_match(m));
        }
    });
}

/// A checked-in record of one server binary's answers.
struct ServerAnswers {
    path: PathBuf,
    /// `# key: value` header lines: binary, version, sha256, build-id, size, date, command.
    provenance: BTreeMap<String, String>,
    /// (class, number) → the name the server gave.
    rows: BTreeMap<(String, u32), String>,
}

fn data_file(major: u32) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/wait_names")
        .join(format!("pg{major}.tsv"))
}

fn load(major: u32) -> ServerAnswers {
    let path = data_file(major);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (scripts/wait-names-from-gdb.sh writes it)",
            path.display()
        )
    });
    let mut provenance = BTreeMap::new();
    let mut rows = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let at = || format!("{}:{}", path.display(), i + 1);
        if let Some(comment) = line.strip_prefix("# ") {
            if let Some((k, v)) = comment.split_once(": ") {
                provenance.insert(k.to_string(), v.to_string());
            }
            continue;
        }
        if line == "class\tnumber\tname" {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(
            f.len(),
            3,
            "{}: not class<TAB>number<TAB>name: {line:?}",
            at()
        );
        let n: u32 = f[1]
            .parse()
            .unwrap_or_else(|_| panic!("{}: bad number", at()));
        let old = rows.insert((f[0].to_string(), n), f[2].to_string());
        assert!(old.is_none(), "{}: {} {n} twice", at(), f[0]);
    }
    for key in ["binary", "version", "sha256", "build-id", "date", "command"] {
        assert!(
            provenance.contains_key(key),
            "{}: no '# {key}:' line",
            path.display()
        );
    }
    ServerAnswers {
        path,
        provenance,
        rows,
    }
}

fn check_against_server_answers(major: u32) {
    let data = load(major);
    let file = data.path.display();
    let mut wrong = Vec::new();
    for ((class, i), theirs) in &data.rows {
        let info = (class_base(class) << 24) | i;
        let ours = describe(major, info).unwrap().1;
        let same = if theirs == "unknown wait event" || theirs == "???" {
            ours == format!("{class} #{i}")
        } else {
            ours == *theirs
        };
        if !same {
            wrong.push(format!("{class} {i}: server {theirs:?}, ours {ours:?}"));
        }
    }
    // Every number we table must have been asked about, and so must the one after
    // the end (else a name we table past the server's end would go unseen). From 17
    // the server looks Extension numbers above 0 up in shared memory, so the data
    // stops at 0 there.
    for class in CLASSES.iter().chain(&["Lock"]) {
        let len = if *class == "Lock" {
            (0..)
                .find(|i| describe(major, (0x03 << 24) | i).unwrap().1 == format!("Lock #{i}"))
                .unwrap()
        } else {
            names(major, class).len() as u32
        };
        let last = if *class == "Extension" { len } else { len + 1 };
        for i in 0..last {
            if !data.rows.contains_key(&(class.to_string(), i)) {
                wrong.push(format!("{class} {i}: not in {file}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "PG{major} against {file}:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn tables_equal_checked_in_server_answers() {
    // The data files need no server, so every major is checked whatever
    // PG_TRACE_TEST_MAJORS says.
    for major in support::ALL_MAJORS {
        check_against_server_answers(major);
    }
}

/// What the server binary holds: its read-only data cut at NULs, its build id and
/// its version string.
struct Binary {
    strings: HashSet<Vec<u8>>,
    build_id: Option<String>,
    version: Option<String>,
}

fn read_binary(path: &Path) -> Binary {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let elf = object::File::parse(&*bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut strings = HashSet::new();
    for section in elf.sections() {
        if matches!(
            section.kind(),
            SectionKind::ReadOnlyData | SectionKind::ReadOnlyString
        ) {
            let data = section.data().unwrap_or_default();
            strings.extend(data.split(|b| *b == 0).map(<[u8]>::to_vec));
        }
    }
    let build_id = elf
        .build_id()
        .ok()
        .flatten()
        .map(|id| id.iter().map(|b| format!("{b:02x}")).collect());
    // PG_VERSION_STR: "PostgreSQL 18.4 on x86_64-pc-linux-gnu, compiled by ...".
    let version = strings
        .iter()
        .filter_map(|s| std::str::from_utf8(s).ok())
        .filter(|s| s.starts_with("PostgreSQL 1") && s.contains(" on "))
        .filter_map(|s| s.split(' ').nth(1))
        .min()
        .map(str::to_string);
    Binary {
        strings,
        build_id,
        version,
    }
}

fn names_in_binary(major: u32) {
    let postgres = support::bin_dir(major).join("postgres");
    let bin = read_binary(&postgres);
    let data = load(major);
    let recorded = |k: &str| data.provenance.get(k).map(String::as_str).unwrap_or("?");
    if bin.build_id.as_deref() != Some(recorded("build-id")) {
        // Straight to stderr: the test harness would hide an eprintln! of a passing test.
        let _ = writeln!(
            std::io::stderr(),
            "\n*** PG{major}: {} (PostgreSQL {}, build id {}) is NOT the binary {} was made \
             from ({}: {}, build id {}). Names are still checked in it; the numbering is \
             the recorded one (stable within a major). Rerun \
             scripts/wait-names-from-gdb.sh {major} where gdb works to refresh it. ***\n",
            postgres.display(),
            bin.version.as_deref().unwrap_or("?"),
            bin.build_id.as_deref().unwrap_or("none"),
            data.path.display(),
            recorded("binary"),
            recorded("version"),
            recorded("build-id"),
        );
    }
    let lock = (0..).map_while(|i| {
        let name = describe(major, (0x03 << 24) | i).unwrap().1;
        (name != format!("Lock #{i}")).then_some(name)
    });
    let ours: Vec<String> = CLASSES
        .iter()
        .flat_map(|class| names(major, class).iter().map(|n| n.to_string()))
        .chain(lock)
        .collect();
    assert!(ours.len() > 120, "PG{major}: only {} names", ours.len());
    // The linker may store a string as the tail of a longer one ("relation" inside
    // "...relation\0"), so a name counts as present when it ends some string.
    let missing: Vec<&String> = ours
        .iter()
        .filter(|n| {
            let n = n.as_bytes();
            !bin.strings.contains(n) && !bin.strings.iter().any(|s| s.ends_with(n))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "PG{major}: {} has no NUL-terminated string {missing:?} in its read-only data",
        postgres.display()
    );
}

#[test]
fn table_names_are_in_server_binaries() {
    support::on_every_major(names_in_binary);
}
