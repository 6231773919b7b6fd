//! `pg_stat_progress_*` without SQL: the 20 raw `st_progress_param` values rendered with
//! the column names and phase words of PostgreSQL's views (`system_views.sql`), per major.
//! Sources for the indexes: `src/include/commands/progress.h`.

use crate::process::status::layout::ProgressCommand;
use serde::Serialize;
use serde_json::Value;

#[derive(Clone, Copy)]
enum Col {
    /// A plain number.
    Num(&'static str, usize),
    /// A phase word from a table.
    Phase(&'static str, usize, &'static [&'static str]),
    /// -1 means unknown: NULL.
    NumOrNull(&'static str, usize),
    /// An enumerated word (command kinds).
    Word(&'static str, usize, &'static [&'static str]),
    /// `pg_stat_progress_create_index.phase`: `building index` carries the access
    /// method's subphase (`pg_indexam_progress_phasename`).
    CreateIndexPhase,
}

pub const VACUUM_PHASES: &[&str] = &[
    "initializing",
    "scanning heap",
    "vacuuming indexes",
    "vacuuming heap",
    "cleaning up indexes",
    "truncating heap",
    "performing final cleanup",
];
pub const ANALYZE_PHASES: &[&str] = &[
    "initializing",
    "acquiring sample rows",
    "acquiring inherited sample rows",
    "computing statistics",
    "computing extended statistics",
    "finalizing analyze",
];
pub const CLUSTER_PHASES: &[&str] = &[
    "initializing",
    "seq scanning heap",
    "index scanning heap",
    "sorting tuples",
    "writing new heap",
    "swapping relation files",
    "rebuilding index",
    "performing final cleanup",
];
pub const CLUSTER_COMMANDS: &[&str] = &["", "CLUSTER", "VACUUM FULL"];
pub const CREATEIDX_PHASES: &[&str] = &[
    "initializing",
    "waiting for writers before build",
    "building index",
    "waiting for writers before validation",
    "index validation: scanning index",
    "index validation: sorting tuples",
    "index validation: scanning table",
    "waiting for old snapshots",
    "waiting for readers before marking dead",
    "waiting for readers before dropping",
];
pub const CREATEIDX_COMMANDS: &[&str] = &[
    "",
    "CREATE INDEX",
    "CREATE INDEX CONCURRENTLY",
    "REINDEX",
    "REINDEX CONCURRENTLY",
];
/// `pg_stat_progress_basebackup.phase`.
pub const BASEBACKUP_PHASES: &[&str] = &[
    "initializing",
    "waiting for checkpoint to finish",
    "estimating backup size",
    "streaming database files",
    "waiting for wal archiving to finish",
    "transferring wal files",
];
pub const COPY_COMMANDS: &[&str] = &["", "COPY FROM", "COPY TO"];
const COPY_TYPES: &[&str] = &["", "FILE", "PROGRAM", "PIPE", "CALLBACK"];

/// The columns a major added to a view (or renamed), from the per-major table.
fn tail(
    major: u32,
    of: impl Fn(&crate::version::Major) -> &'static [(&'static str, usize)],
) -> impl Iterator<Item = Col> {
    crate::version::of(major)
        .map_or(&[][..], of)
        .iter()
        .map(|&(name, i)| Col::Num(name, i))
}

fn columns(cmd: ProgressCommand, major: u32) -> Vec<Col> {
    use Col::*;
    match cmd {
        ProgressCommand::Vacuum => {
            let mut v = vec![
                Phase("phase", 0, VACUUM_PHASES),
                Num("heap_blks_total", 1),
                Num("heap_blks_scanned", 2),
                Num("heap_blks_vacuumed", 3),
                Num("index_vacuum_count", 4),
            ];
            v.extend(tail(major, |m| m.vacuum_progress_tail));
            v
        }
        ProgressCommand::Analyze => vec![
            Phase("phase", 0, ANALYZE_PHASES),
            Num("sample_blks_total", 1),
            Num("sample_blks_scanned", 2),
            Num("ext_stats_total", 3),
            Num("ext_stats_computed", 4),
            Num("child_tables_total", 5),
            Num("child_tables_done", 6),
            Num("current_child_table_relid", 7),
        ],
        ProgressCommand::Cluster => vec![
            Word("command", 0, CLUSTER_COMMANDS),
            Phase("phase", 1, CLUSTER_PHASES),
            Num("cluster_index_relid", 2),
            Num("heap_tuples_scanned", 3),
            Num("heap_tuples_written", 4),
            Num("heap_blks_total", 5),
            Num("heap_blks_scanned", 6),
            Num("index_rebuild_count", 7),
        ],
        ProgressCommand::CreateIndex => vec![
            Num("index_relid", 6),
            Word("command", 0, CREATEIDX_COMMANDS),
            CreateIndexPhase,
            Num("lockers_total", 3),
            Num("lockers_done", 4),
            Num("current_locker_pid", 5),
            Num("blocks_total", 15),
            Num("blocks_done", 16),
            Num("tuples_total", 11),
            Num("tuples_done", 12),
            Num("partitions_total", 13),
            Num("partitions_done", 14),
        ],
        ProgressCommand::BaseBackup => vec![
            Phase("phase", 0, BASEBACKUP_PHASES),
            NumOrNull("backup_total", 1),
            Num("backup_streamed", 2),
            Num("tablespaces_total", 3),
            Num("tablespaces_streamed", 4),
        ],
        ProgressCommand::Copy => {
            let mut v = vec![
                Word("command", 4, COPY_COMMANDS),
                Word("type", 5, COPY_TYPES),
                Num("bytes_processed", 0),
                Num("bytes_total", 1),
                Num("tuples_processed", 2),
                Num("tuples_excluded", 3),
            ];
            v.extend(tail(major, |m| m.copy_progress_tail));
            v
        }
    }
}

/// One value of a progress view's row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ProgressValue {
    Num(i64),
    /// A phase or command word; an unknown value stays a number.
    Word(&'static str),
    /// A phase spelled from two counters (`building index: scanning table`).
    Text(String),
    /// NULL, as the view shows -1 "unknown".
    Null,
}

/// A `pg_stat_progress_*` row: `view`, `relid` (all but basebackup), then the view's
/// columns in its order. Serializes as one flat JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressRow {
    pub view: String,
    pub relid: Option<u32>,
    pub columns: Vec<(&'static str, ProgressValue)>,
}

impl ProgressRow {
    pub fn get(&self, name: &str) -> Option<&ProgressValue> {
        self.columns
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }
}

impl Serialize for ProgressRow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(
            1 + usize::from(self.relid.is_some()) + self.columns.len(),
        ))?;
        m.serialize_entry("view", &self.view)?;
        if let Some(relid) = self.relid {
            m.serialize_entry("relid", &relid)?;
        }
        for (name, v) in &self.columns {
            m.serialize_entry(name, v)?;
        }
        m.end()
    }
}

/// The view's row for these params. `params` shorter than 20 is padded with zeros.
pub fn row(cmd: ProgressCommand, major: u32, target: u32, params: &[i64]) -> ProgressRow {
    let p = |i: usize| params.get(i).copied().unwrap_or(0);
    let word = |t: &[&'static str], v: i64| -> ProgressValue {
        usize::try_from(v)
            .ok()
            .and_then(|i| t.get(i))
            .filter(|s| !s.is_empty())
            .map_or(ProgressValue::Num(v), |s| ProgressValue::Word(s))
    };
    let columns = columns(cmd, major)
        .into_iter()
        .map(|c| match c {
            Col::Num(n, i) => (n, ProgressValue::Num(p(i))),
            Col::NumOrNull(n, i) if p(i) < 0 => (n, ProgressValue::Null),
            Col::NumOrNull(n, i) => (n, ProgressValue::Num(p(i))),
            Col::Phase(n, i, t) | Col::Word(n, i, t) => (n, word(t, p(i))),
            Col::CreateIndexPhase => (
                "phase",
                match create_index_phase(params) {
                    Some(s) => ProgressValue::Text(s),
                    None => ProgressValue::Num(p(9)),
                },
            ),
        })
        .collect();
    ProgressRow {
        view: format!("pg_stat_progress_{}", cmd.name()),
        relid: (cmd != ProgressCommand::BaseBackup).then_some(target),
        columns,
    }
}

/// The row as a JSON object (`view` first).
pub fn render(cmd: ProgressCommand, major: u32, target: u32, params: &[i64]) -> Value {
    serde_json::to_value(row(cmd, major, target, params)).unwrap_or(Value::Null)
}

/// `phase` spelled as the view spells it, or the number.
pub fn phase_name(cmd: ProgressCommand, params: &[i64]) -> Option<String> {
    let (i, t) = match cmd {
        ProgressCommand::Vacuum => (0, VACUUM_PHASES),
        ProgressCommand::Analyze => (0, ANALYZE_PHASES),
        ProgressCommand::Cluster => (1, CLUSTER_PHASES),
        ProgressCommand::CreateIndex => return create_index_phase(params),
        ProgressCommand::BaseBackup => (0, BASEBACKUP_PHASES),
        ProgressCommand::Copy => return None,
    };
    let v = *params.get(i)?;
    Some(
        usize::try_from(v)
            .ok()
            .and_then(|i| t.get(i))
            .map(|s| s.to_string())
            .unwrap_or_else(|| v.to_string()),
    )
}

/// Access methods whose build reports subphases, by `pg_am` OID (fixed in every major):
/// `btbuildphasename` and `hashbuildphasename`, indexed by the subphase counter.
const BTREE_AM: i64 = 403;
const HASH_AM: i64 = 405;
const BTREE_SUBPHASES: &[&str] = &[
    "",
    "initializing",
    "scanning table",
    "sorting live tuples",
    "sorting dead tuples",
    "loading tuples in tree",
];
const HASH_SUBPHASES: &[&str] = &["", "", "loading tuples"];

/// `pg_stat_progress_create_index.phase` as the view spells it: `building index` is
/// followed by `: ` and the access method's subphase name when it has one.
pub fn create_index_phase(params: &[i64]) -> Option<String> {
    let p = |i: usize| params.get(i).copied().unwrap_or(0);
    let main = *usize::try_from(p(9))
        .ok()
        .and_then(|i| CREATEIDX_PHASES.get(i))?;
    if p(9) != 2 {
        return Some(main.to_string());
    }
    let subs = match p(8) {
        BTREE_AM => BTREE_SUBPHASES,
        HASH_AM => HASH_SUBPHASES,
        _ => &[][..],
    };
    Some(
        match usize::try_from(p(10)).ok().and_then(|i| subs.get(i)) {
            Some(sub) if !sub.is_empty() => format!("{main}: {sub}"),
            _ => main.to_string(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basebackup_row() {
        let v = render(ProgressCommand::BaseBackup, 15, 0, &[3, -1, 4096, 2, 1]);
        assert_eq!(v["phase"], "streaming database files");
        assert_eq!(v["backup_total"], Value::Null);
        assert_eq!(v["backup_streamed"], 4096);
        assert_eq!(v["tablespaces_streamed"], 1);
        let v = render(ProgressCommand::Vacuum, 17, 1259, &[99; 20]);
        assert_eq!(v["phase"], 99);
        assert_eq!(v["relid"], 1259);
        assert!(v.get("dead_tuple_bytes").is_some());
        assert_eq!(
            phase_name(ProgressCommand::CreateIndex, &[0; 20]).as_deref(),
            Some("initializing")
        );
        let mut p = [0i64; 20];
        (p[8], p[9], p[10]) = (403, 2, 2);
        assert_eq!(
            phase_name(ProgressCommand::CreateIndex, &p).as_deref(),
            Some("building index: scanning table")
        );
        assert_eq!(
            render(ProgressCommand::CreateIndex, 12, 1, &p)["phase"],
            "building index: scanning table"
        );
        p[8] = 783; // gist: no subphase names
        assert_eq!(create_index_phase(&p).as_deref(), Some("building index"));
        p[9] = 42;
        assert_eq!(create_index_phase(&p), None);
    }

    /// The row's JSON is what the `json!`-built rows always printed, key order included.
    #[test]
    fn rows_serialize_flat_in_view_order() {
        let r = row(ProgressCommand::BaseBackup, 15, 0, &[3, -1, 4096, 2, 1]);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"view":"pg_stat_progress_basebackup","phase":"streaming database files","backup_total":null,"backup_streamed":4096,"tablespaces_total":2,"tablespaces_streamed":1}"#
        );
        let r = row(
            ProgressCommand::Copy,
            17,
            16384,
            &[10, 20, 3, 0, 1, 9, 0, 2],
        );
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"view":"pg_stat_progress_copy","relid":16384,"command":"COPY FROM","type":9,"bytes_processed":10,"bytes_total":20,"tuples_processed":3,"tuples_excluded":0,"tuples_skipped":2}"#
        );
        assert_eq!(r.get("tuples_skipped"), Some(&ProgressValue::Num(2)));
        let r16 = row(ProgressCommand::Copy, 16, 16384, &[0; 20]);
        assert_eq!(r16.get("tuples_skipped"), None);
        let v = row(ProgressCommand::Vacuum, 16, 1, &[0; 20]);
        assert!(v.get("max_dead_tuples").is_some() && v.get("dead_tuple_bytes").is_none());
    }

    proptest::proptest! {
        #[test]
        fn any_params_render(params in proptest::collection::vec(proptest::num::i64::ANY, 0..25), major in 12u32..19) {
            use ProgressCommand::*;
            for c in [Vacuum, Analyze, Cluster, CreateIndex, BaseBackup, Copy] {
                let _ = render(c, major, 1, &params);
                let _ = phase_name(c, &params);
            }
        }
    }
}
