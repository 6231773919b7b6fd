//! docs/json.md cannot drift from the typed records: every record type has a section, every
//! field a record writes is documented there, every documented field is written, and every
//! example in the page reads back into `Record` and writes out again byte for byte. Adding
//! a variant to `Record`, `PathClassRecord`, `WalRecord` or `Verdict` fails to compile here
//! until it has an example; adding or renaming a field fails until the page says it.

use pg_trace::model::stall::Verdict;
use pg_trace::output::record::{PathClassRecord, PathRecord, Record, WalRecord};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

const DOC: &str = include_str!("../docs/json.md");

/// Per `## \`type\`` section: the fields of its tables' first column; and every line of
/// every json block.
fn parse_doc() -> (BTreeMap<String, BTreeSet<String>>, Vec<&'static str>) {
    let mut sections: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut examples = Vec::new();
    let mut section: Option<String> = None;
    let mut in_json = false;
    for line in DOC.lines() {
        if let Some(rest) = line.strip_prefix("## `") {
            let name = rest.split('`').next().unwrap().to_string();
            sections.entry(name.clone()).or_default();
            section = Some(name);
        } else if line.starts_with("## ") {
            section = None;
        } else if line == "```json" {
            in_json = true;
        } else if line == "```" {
            in_json = false;
        } else if in_json {
            examples.push(line);
        } else if let (Some(s), Some(row)) = (&section, line.strip_prefix("| `")) {
            let first_cell = row.split(" |").next().unwrap();
            let fields = sections.get_mut(s).unwrap();
            // `a`, `b` in one cell are two fields.
            for (i, part) in format!("`{first_cell}").split('`').enumerate() {
                if i % 2 == 1 {
                    fields.insert(part.to_string());
                }
            }
        }
    }
    (sections, examples)
}

/// The fields a record writes: its keys, and `key.child` for nested objects, except the
/// progress row (the view's own columns), `lost` (keyed by cause) and a non-I/O `-d`
/// event's own fields (the event's, documented as such).
fn fields(r: &Record) -> BTreeSet<String> {
    let v = serde_json::to_value(r).unwrap();
    let Value::Object(m) = v else {
        panic!("{r:?} is not an object")
    };
    if let Record::SyscallEvent(_) = r {
        return ["event", "type", "ts", "pid"]
            .map(str::to_string)
            .into_iter()
            .collect();
    }
    let mut out = BTreeSet::new();
    for (k, v) in &m {
        out.insert(k.clone());
        if let (Value::Object(inner), false) = (v, matches!(k.as_str(), "progress" | "lost")) {
            out.extend(inner.keys().map(|c| format!("{k}.{c}")));
        }
    }
    out
}

/// Which variant, by an exhaustive match: a new variant does not compile until it is
/// counted here (and then needs an example).
fn record_variant(r: &Record) -> usize {
    match r {
        Record::Relation(_) => 0,
        Record::Path(_) => 1,
        Record::Attach(_) => 2,
        Record::File(_) => 3,
        Record::Progress(_) => 4,
        Record::Query(_) => 5,
        Record::LockWait(_) => 6,
        Record::Stats(_) => 7,
        Record::Syscall(_) => 8,
        Record::Status(_) => 9,
        Record::Backup(_) => 10,
        Record::Summary(_) => 11,
        Record::Process(_) => 12,
        Record::Probe(_) => 13,
        Record::Probes(_) => 14,
        Record::SyscallEvent(_) => 15,
        Record::ServerBackup(_) => 16,
        Record::Waits(_) => 17,
        Record::Operation(_) => 18,
    }
}
const RECORD_VARIANTS: usize = 19;

fn path_variant(c: &PathClassRecord) -> usize {
    match c {
        PathClassRecord::Relation(_) => 0,
        PathClassRecord::TempRelation(_) => 1,
        PathClassRecord::TempFile(_) => 2,
        PathClassRecord::Wal(w) => match w {
            WalRecord::Segment { .. } => 3,
            WalRecord::History { .. } => 4,
            WalRecord::BackupHistory { .. } => 5,
            WalRecord::ArchiveStatus { .. } => 6,
            WalRecord::Summary { .. } => 7,
            WalRecord::Other { .. } => 8,
        },
        PathClassRecord::Slru { .. } => 9,
        PathClassRecord::Control => 10,
        PathClassRecord::Other { .. } => 11,
    }
}
const PATH_VARIANTS: usize = 12;

fn verdict_variant(v: &Verdict) -> usize {
    match v {
        Verdict::Exited => 0,
        Verdict::Stopped => 1,
        Verdict::Reading { .. } => 2,
        Verdict::Writing { .. } => 3,
        Verdict::Throttled => 4,
        Verdict::ClientNotReading { .. } => 5,
        Verdict::WaitingForCheckpoint => 6,
        Verdict::WaitingForWalArchive => 7,
        Verdict::WaitingOnLock { .. } => 8,
        Verdict::IdleInTransaction { .. } => 9,
        Verdict::Idle => 10,
        Verdict::Sleeping { .. } => 11,
        Verdict::RunningOnCpu => 12,
        Verdict::Waiting { .. } => 13,
        Verdict::InSyscall { .. } => 14,
        Verdict::Unknown => 15,
    }
}

/// One of each verdict, as `verdict_detail` writes it.
const VERDICTS: &[&str] = &[
    r#"{"verdict":"exited"}"#,
    r#"{"verdict":"stopped"}"#,
    r#"{"verdict":"reading","file":"base/5/16384 (public.t)","from_disk":true}"#,
    r#"{"verdict":"writing","file":"base/pgsql_tmp/pgsql_tmp42.0"}"#,
    r#"{"verdict":"throttled"}"#,
    r#"{"verdict":"client_not_reading","queued":212992,"for_s":3.5}"#,
    r#"{"verdict":"waiting_for_checkpoint"}"#,
    r#"{"verdict":"waiting_for_wal_archive"}"#,
    r#"{"verdict":"waiting_on_lock","lock":"relation","relation":"public.t","holders":[77],"holders_guessed":false}"#,
    r#"{"verdict":"idle_in_transaction","for_s":12.0}"#,
    r#"{"verdict":"idle"}"#,
    r#"{"verdict":"sleeping","between_reads_of":null}"#,
    r#"{"verdict":"running_on_cpu"}"#,
    r#"{"verdict":"waiting","wait_event_type":"IPC","wait_event":"MessageQueueSend"}"#,
    r#"{"verdict":"in_syscall","name":"futex","for_s":null}"#,
    r#"{"verdict":"unknown"}"#,
];

#[test]
fn docs_json_md_matches_the_records() {
    let (sections, examples) = parse_doc();
    let mut written: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    let mut variants = BTreeSet::new();
    let mut path_variants = BTreeSet::new();
    for line in &examples {
        let r: Record = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("docs/json.md example does not read: {e}\n{line}"));
        assert_eq!(
            &serde_json::to_string(&r).unwrap(),
            line,
            "docs/json.md example does not write back the same (field order, null or absent)"
        );
        variants.insert(record_variant(&r));
        if let Record::Path(PathRecord { class, .. }) = &r {
            path_variants.insert(path_variant(class));
        }
        let t = r.type_name();
        let documented = sections
            .get(t)
            .unwrap_or_else(|| panic!("docs/json.md has no section for `{t}`"));
        for f in fields(&r) {
            assert!(
                documented.contains(&f),
                "docs/json.md, section `{t}`: field `{f}` is written but not documented"
            );
        }
        written.entry(t).or_default().extend(fields(&r));
    }
    assert_eq!(
        variants.len(),
        RECORD_VARIANTS,
        "docs/json.md needs an example of every kind of record"
    );
    assert_eq!(
        path_variants.len(),
        PATH_VARIANTS,
        "docs/json.md needs a `path` example of every class (and every kind of WAL file)"
    );

    // verdict_detail: one of each verdict.
    let mut verdicts = BTreeSet::new();
    let status = sections.get("status").expect("a status section");
    for v in VERDICTS {
        let verdict: Verdict = serde_json::from_str(v).unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_eq!(&serde_json::to_string(&verdict).unwrap(), v);
        verdicts.insert(verdict_variant(&verdict));
        let Value::Object(m) = serde_json::to_value(&verdict).unwrap() else {
            unreachable!()
        };
        let name = m["verdict"].as_str().unwrap();
        assert_eq!(name, verdict.name());
        let status_text = DOC.split("## `status`").nth(1).unwrap();
        let status_text = status_text.split("\n## ").next().unwrap();
        assert!(
            status_text.contains(&format!("`{name}`")),
            "docs/json.md, section `status`: verdict `{name}` not listed"
        );
        for k in m.keys() {
            let f = format!("verdict_detail.{k}");
            assert!(
                status.contains(&f),
                "docs/json.md, section `status`: field `{f}` is written but not documented"
            );
            written.entry("status").or_default().insert(f);
        }
    }
    assert_eq!(verdicts.len(), 16, "VERDICTS needs one of each verdict");

    for (section, documented) in &sections {
        let have = written
            .get(section.as_str())
            .unwrap_or_else(|| panic!("docs/json.md documents `{section}`, which no record is"));
        for f in documented {
            assert!(
                have.contains(f),
                "docs/json.md, section `{section}`: `{f}` is documented but no record writes it"
            );
        }
    }
}
