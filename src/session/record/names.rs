//! The model's questions to its [`Namer`] and the answers it got, as recorded: a replay
//! answers from them, so it names and sizes exactly as the live session did, without the
//! data directory.
//!
//! Answers are kept per question (the path, the relation, the OIDs asked about) in the
//! order given: the model asks in the same order on the same input, but it iterates hash
//! maps, so only the order per question is reproducible, not the order across questions.

use crate::model::{Named, Namer, RelIdentity, RelInfo};
use crate::pgdata::relfile::{Fork, RelFileLocator};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// One question and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "q", rename_all = "snake_case")]
pub enum NameAnswer {
    Name {
        path: String,
        named: NamedRec,
    },
    /// `relation_size`, asked by the relation's main-fork path.
    RelationSize {
        relation: String,
        size: Option<u64>,
    },
    FileSize {
        path: String,
        size: Option<u64>,
    },
    NameBlock {
        locator: RelFileLocator,
        fork: Fork,
        rel: Option<RelInfoRec>,
    },
    RelationByOid {
        db: u32,
        oid: u32,
        rel: Option<RelIdentityRec>,
    },
    Resident {
        locator: RelFileLocator,
        fork: Fork,
        start: u32,
        end: u32,
        blocks: Option<u32>,
    },
    Refresh {
        changed: bool,
    },
    IndexCount {
        db: u32,
        oid: u32,
        count: Option<u64>,
    },
    DumpPosition {
        db: u32,
        schema: String,
        name: String,
        position: Option<(u64, u64)>,
    },
    DumpBytes {
        db: u32,
        schema: String,
        name: String,
        bytes: Option<(u64, u64)>,
    },
}

impl NameAnswer {
    /// What the question was, as a key: two answers with one key answered one question.
    pub fn key(&self) -> String {
        match self {
            NameAnswer::Name { path, .. } => format!("n\0{path}"),
            NameAnswer::RelationSize { relation, .. } => format!("r\0{relation}"),
            NameAnswer::FileSize { path, .. } => format!("f\0{path}"),
            NameAnswer::NameBlock { locator, fork, .. } => block_key(locator, *fork),
            NameAnswer::RelationByOid { db, oid, .. } => format!("o\0{db}\0{oid}"),
            NameAnswer::Resident {
                locator,
                fork,
                start,
                end,
                ..
            } => resident_key(locator, *fork, *start, *end),
            NameAnswer::Refresh { .. } => "refresh".into(),
            NameAnswer::IndexCount { db, oid, .. } => format!("i\0{db}\0{oid}"),
            NameAnswer::DumpPosition {
                db, schema, name, ..
            } => format!("d\0{db}\0{schema}\0{name}"),
            NameAnswer::DumpBytes {
                db, schema, name, ..
            } => format!("y\0{db}\0{schema}\0{name}"),
        }
    }
}

fn block_key(l: &RelFileLocator, fork: Fork) -> String {
    format!(
        "b\0{}\0{}\0{}\0{:?}\0{}",
        l.spc_oid,
        l.db_oid,
        l.rel_number,
        l.backend,
        fork.as_str()
    )
}

fn resident_key(l: &RelFileLocator, fork: Fork, start: u32, end: u32) -> String {
    format!(
        "{}\0{start}\0{end}",
        block_key(l, fork).replacen('b', "s", 1)
    )
}

/// The `&'static str`s of the model, given back from their recorded text. Anything else
/// in a recording is not something pg_trace wrote: taken as the most neutral value.
fn static_class(s: &str) -> &'static str {
    const CLASSES: [&str; 7] = [
        "relation",
        "temp_relation",
        "temp_file",
        "wal",
        "slru",
        "control",
        "other",
    ];
    CLASSES.into_iter().find(|c| *c == s).unwrap_or("other")
}

fn static_kind(s: &str) -> Option<&'static str> {
    const KINDS: [&str; 5] = ["table", "index", "sequence", "toast", "matview"];
    KINDS.into_iter().find(|k| *k == s)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelIdentityRec {
    pub locator: RelFileLocator,
    pub path: String,
    pub label: String,
    pub schema: Option<String>,
    pub name: Option<String>,
    pub kind: Option<String>,
    pub table: Option<String>,
    pub known: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelInfoRec {
    pub id: RelIdentityRec,
    pub fork: Fork,
    pub segment: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedRec {
    pub relpath: Option<String>,
    pub class: String,
    pub label: String,
    pub relation: Option<RelInfoRec>,
}

impl From<&RelIdentity> for RelIdentityRec {
    fn from(r: &RelIdentity) -> Self {
        RelIdentityRec {
            locator: r.locator,
            path: r.path.clone(),
            label: r.label.clone(),
            schema: r.schema.clone(),
            name: r.name.clone(),
            kind: r.kind.map(str::to_string),
            table: r.table.clone(),
            known: r.known,
        }
    }
}

impl From<&RelIdentityRec> for RelIdentity {
    fn from(r: &RelIdentityRec) -> Self {
        RelIdentity {
            locator: r.locator,
            path: r.path.clone(),
            label: r.label.clone(),
            schema: r.schema.clone(),
            name: r.name.clone(),
            kind: r.kind.as_deref().and_then(static_kind),
            table: r.table.clone(),
            known: r.known,
        }
    }
}

impl From<&RelInfo> for RelInfoRec {
    fn from(r: &RelInfo) -> Self {
        RelInfoRec {
            id: (&r.id).into(),
            fork: r.fork,
            segment: r.segment,
        }
    }
}

impl From<&RelInfoRec> for RelInfo {
    fn from(r: &RelInfoRec) -> Self {
        RelInfo {
            id: (&r.id).into(),
            fork: r.fork,
            segment: r.segment,
        }
    }
}

impl From<&Named> for NamedRec {
    fn from(n: &Named) -> Self {
        NamedRec {
            relpath: n.relpath.clone(),
            class: n.class.to_string(),
            label: n.label.clone(),
            relation: n.relation.as_deref().map(Into::into),
        }
    }
}

impl From<&NamedRec> for Named {
    fn from(n: &NamedRec) -> Self {
        Named {
            relpath: n.relpath.clone(),
            class: static_class(&n.class),
            label: n.label.clone(),
            relation: n.relation.as_ref().map(|r| Arc::new(r.into())),
        }
    }
}

/// A relation file's name answer in few words (format 5), with the file's size and its
/// relation's size when they were asked in the same step: what the answer holds beside
/// these (the path relative to the data directory, the locator, fork and segment, the
/// main fork's path, the labels) follows from them as [`RelEntry::expand`] says, and the
/// recorder writes one only when it gives back the very answers it stands for. A
/// backup's names were a third of its file: most of each was the same words twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelEntry {
    /// The path asked about.
    pub path: String,
    /// How many bytes of `path` come before the path relative to the data directory:
    /// when absent, 2 for a path starting `./`, else 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut: Option<usize>,
    pub schema: String,
    pub name: String,
    pub kind: String,
    /// The table an index or TOAST table serves: the label is then `name → table`, else
    /// `schema.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// The answer to `file_size` of `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fs: Option<u64>,
    /// The answer to `relation_size` of its relation (by its main fork's path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rs: Option<u64>,
}

/// `<relnum>[_fsm|_vm|_init][.<segment>]` in `base/<db>/`, `global/` or
/// `pg_tblspc/<spc>/<version dir>/<db>/`: the locator, fork, segment and main fork's path.
fn parse_relpath(relpath: &str) -> Option<(RelFileLocator, Fork, u32, String)> {
    let (dir, file) = relpath.rsplit_once('/')?;
    let num = |s: &str| -> Option<u32> {
        (!s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && !(s.len() > 1 && s.starts_with('0')))
        .then(|| s.parse().ok())
        .flatten()
    };
    let parts: Vec<&str> = dir.split('/').collect();
    let (spc_oid, db_oid) = match parts.as_slice() {
        ["global"] => (1664, 0),
        ["base", db] => (1663, num(db)?),
        ["pg_tblspc", spc, _, db] => (num(spc)?, num(db)?),
        _ => return None,
    };
    let (stem, segment) = match file.split_once('.') {
        Some((stem, seg)) => (stem, num(seg).filter(|&s| s > 0)?),
        None => (file, 0),
    };
    let (rel, fork) = match stem.split_once('_') {
        Some((rel, "fsm")) => (rel, Fork::Fsm),
        Some((rel, "vm")) => (rel, Fork::Vm),
        Some((rel, "init")) => (rel, Fork::Init),
        Some(_) => return None,
        None => (stem, Fork::Main),
    };
    let locator = RelFileLocator {
        spc_oid,
        db_oid,
        rel_number: num(rel)?,
        backend: None,
    };
    Some((locator, fork, segment, format!("{dir}/{rel}")))
}

impl RelEntry {
    /// The answers it stands for: the name, then the file's size and the relation's.
    pub fn expand(&self) -> Option<Vec<NameAnswer>> {
        let cut = self
            .cut
            .unwrap_or(if self.path.starts_with("./") { 2 } else { 0 });
        let relpath = self.path.get(cut..)?;
        let (locator, fork, segment, main) = parse_relpath(relpath)?;
        let label = match &self.table {
            Some(t) => format!("{} → {t}", self.name),
            None => format!("{}.{}", self.schema, self.name),
        };
        let id = RelIdentityRec {
            locator,
            path: main.clone(),
            label: label.clone(),
            schema: Some(self.schema.clone()),
            name: Some(self.name.clone()),
            kind: Some(self.kind.clone()),
            table: self.table.clone(),
            known: true,
        };
        let mut out = vec![NameAnswer::Name {
            path: self.path.clone(),
            named: NamedRec {
                relpath: Some(relpath.to_string()),
                class: "relation".into(),
                label,
                relation: Some(RelInfoRec { id, fork, segment }),
            },
        }];
        if let Some(size) = self.fs {
            out.push(NameAnswer::FileSize {
                path: self.path.clone(),
                size: Some(size),
            });
        }
        if let Some(size) = self.rs {
            out.push(NameAnswer::RelationSize {
                relation: main,
                size: Some(size),
            });
        }
        Some(out)
    }

    /// A name answer as one, if it gives the answer back exactly.
    fn of(a: &NameAnswer) -> Option<RelEntry> {
        let NameAnswer::Name { path, named } = a else {
            return None;
        };
        let id = &named.relation.as_ref()?.id;
        let relpath = named.relpath.as_deref()?;
        let cut = path.len().checked_sub(relpath.len())?;
        let default = if path.starts_with("./") { 2 } else { 0 };
        let e = RelEntry {
            path: path.clone(),
            cut: (cut != default).then_some(cut),
            schema: id.schema.clone()?,
            name: id.name.clone()?,
            kind: id.kind.clone()?,
            table: id.table.clone(),
            fs: None,
            rs: None,
        };
        (e.expand()?.first() == Some(a)).then_some(e)
    }
}

/// A step's answers as format 5 writes them: those that stand alone, and the relation
/// files' as [`RelEntry`]s. Only a question asked once in the step goes into an entry
/// (the answers are kept per question in order, so the order between the two lists
/// does not matter), and a size only when the file or relation was named in the step.
pub fn compact(answers: &[NameAnswer]) -> (Vec<&NameAnswer>, Vec<RelEntry>) {
    let keys: Vec<String> = answers.iter().map(NameAnswer::key).collect();
    let mut count: HashMap<&str, u32> = HashMap::new();
    for k in &keys {
        *count.entry(k.as_str()).or_default() += 1;
    }
    let once = |i: usize| count.get(keys[i].as_str()) == Some(&1);
    let mut rels = Vec::new();
    let mut taken = vec![false; answers.len()];
    let (mut by_path, mut by_rel) = (HashMap::new(), HashMap::new());
    for (i, a) in answers.iter().enumerate() {
        if let (true, Some(e)) = (once(i), RelEntry::of(a)) {
            if let NameAnswer::Name {
                named: NamedRec {
                    relation: Some(r), ..
                },
                ..
            } = a
            {
                by_rel.entry(r.id.path.as_str()).or_insert(rels.len());
            }
            by_path.insert(e.path.clone(), rels.len());
            rels.push(e);
            taken[i] = true;
        }
    }
    for (i, a) in answers.iter().enumerate() {
        if taken[i] || !once(i) {
            continue;
        }
        match a {
            NameAnswer::FileSize {
                path,
                size: Some(s),
            } => {
                if let Some(e) = by_path.get(path).map(|&j| &mut rels[j]) {
                    if e.fs.is_none() {
                        e.fs = Some(*s);
                        taken[i] = true;
                    }
                }
            }
            NameAnswer::RelationSize {
                relation,
                size: Some(s),
            } => {
                if let Some(e) = by_rel.get(relation.as_str()).map(|&j| &mut rels[j]) {
                    if e.rs.is_none() {
                        e.rs = Some(*s);
                        taken[i] = true;
                    }
                }
            }
            _ => {}
        }
    }
    let full = answers
        .iter()
        .zip(&taken)
        .filter(|(_, t)| !**t)
        .map(|(a, _)| a)
        .collect();
    (full, rels)
}

/// Wraps the live namer: every answer is also noted, for the recorder to take.
pub fn note(tape: &mut Option<Vec<NameAnswer>>, a: impl FnOnce() -> NameAnswer) {
    if let Some(t) = tape.as_mut() {
        t.push(a());
    }
}

/// Answers waiting, per question, and whether the oldest was given already.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Answers {
    by_key: HashMap<String, (VecDeque<NameAnswer>, bool)>,
}

impl Answers {
    pub fn push(&mut self, a: NameAnswer) {
        self.by_key.entry(a.key()).or_default().0.push_back(a);
    }

    /// The next answer to `key`: the oldest not given yet, and the last one again once
    /// they are all given (the model asks again what nothing has changed since).
    fn next(&mut self, key: &str) -> Option<&NameAnswer> {
        let (q, given) = self.by_key.get_mut(key)?;
        if *given && q.len() > 1 {
            q.pop_front();
        }
        *given = true;
        q.front()
    }

    /// The latest answer to every question: what a ring dump carries from before its start.
    pub fn latest(&self) -> impl Iterator<Item = &NameAnswer> {
        self.by_key.values().filter_map(|(q, _)| q.back())
    }

    /// Forget all but the latest answer to each question.
    pub fn keep_latest(&mut self) {
        for (q, _) in self.by_key.values_mut() {
            while q.len() > 1 {
                q.pop_front();
            }
        }
    }
}

/// A namer that answers from a recording; the replay pushes the answers of each step
/// before it plays the step.
#[derive(Clone, Default)]
pub struct RecordedNamer {
    answers: Arc<Mutex<Answers>>,
}

impl RecordedNamer {
    pub fn push(&self, a: NameAnswer) {
        if let Ok(mut p) = self.answers.lock() {
            p.push(a);
        }
    }

    /// Where the answers stand: a replay's checkpoint keeps it.
    pub fn snapshot(&self) -> Answers {
        self.answers.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// Back to a snapshot (a seek to a checkpoint).
    pub fn restore(&self, a: Answers) {
        if let Ok(mut p) = self.answers.lock() {
            *p = a;
        }
    }

    fn ask(&self, key: &str) -> Option<NameAnswer> {
        let mut p = self.answers.lock().ok()?;
        p.next(key).cloned()
    }
}

impl Namer for RecordedNamer {
    fn name(&mut self, path: &str) -> Named {
        match self.ask(&format!("n\0{path}")) {
            Some(NameAnswer::Name { named, .. }) => (&named).into(),
            // Never asked live: said as the path, named nothing.
            _ => Named {
                relpath: None,
                class: "other",
                label: path.to_string(),
                relation: None,
            },
        }
    }
    fn relation_size(&mut self, rel: &RelInfo) -> Option<u64> {
        match self.ask(&format!("r\0{}", rel.id.path))? {
            NameAnswer::RelationSize { size, .. } => size,
            _ => None,
        }
    }
    fn file_size(&mut self, path: &str) -> Option<u64> {
        match self.ask(&format!("f\0{path}"))? {
            NameAnswer::FileSize { size, .. } => size,
            _ => None,
        }
    }
    fn name_block(&mut self, rel: &RelFileLocator, fork: Fork) -> Option<Arc<RelInfo>> {
        match self.ask(&block_key(rel, fork))? {
            NameAnswer::NameBlock { rel, .. } => rel.as_ref().map(|r| Arc::new(r.into())),
            _ => None,
        }
    }
    fn relation_by_oid(&mut self, db: u32, oid: u32) -> Option<RelIdentity> {
        match self.ask(&format!("o\0{db}\0{oid}"))? {
            NameAnswer::RelationByOid { rel, .. } => rel.as_ref().map(Into::into),
            _ => None,
        }
    }
    fn resident_blocks(
        &mut self,
        r: &RelFileLocator,
        f: Fork,
        b: std::ops::Range<u32>,
    ) -> Option<u32> {
        match self.ask(&resident_key(r, f, b.start, b.end))? {
            NameAnswer::Resident { blocks, .. } => blocks,
            _ => None,
        }
    }
    fn index_count(&mut self, db: u32, oid: u32) -> Option<u64> {
        match self.ask(&format!("i\0{db}\0{oid}"))? {
            NameAnswer::IndexCount { count, .. } => count,
            _ => None,
        }
    }
    fn dump_bytes(&mut self, db: u32, table: &(String, String)) -> Option<(u64, u64)> {
        match self.ask(&format!("y\0{db}\0{}\0{}", table.0, table.1))? {
            NameAnswer::DumpBytes { bytes, .. } => bytes,
            _ => None,
        }
    }
    fn dump_position(&mut self, db: u32, table: &(String, String)) -> Option<(u64, u64)> {
        match self.ask(&format!("d\0{db}\0{}\0{}", table.0, table.1))? {
            NameAnswer::DumpPosition { position, .. } => position,
            _ => None,
        }
    }
    fn refresh(&mut self) -> bool {
        matches!(
            self.ask("refresh"),
            Some(NameAnswer::Refresh { changed: true })
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_come_back_in_order_per_question_and_the_last_stays() {
        let mut n = RecordedNamer::default();
        for size in [1, 2, 3] {
            n.push(NameAnswer::FileSize {
                path: "base/5/1".into(),
                size: Some(size),
            });
        }
        n.push(NameAnswer::FileSize {
            path: "base/5/2".into(),
            size: None,
        });
        let got: Vec<_> = (0..5).map(|_| n.file_size("base/5/1")).collect();
        assert_eq!(got, [Some(1), Some(2), Some(3), Some(3), Some(3)]);
        assert_eq!(n.file_size("base/5/2"), None);
        assert_eq!(n.file_size("never"), None);
        n.push(NameAnswer::FileSize {
            path: "base/5/1".into(),
            size: Some(4),
        });
        assert_eq!(n.file_size("base/5/1"), Some(4));
        assert_eq!(n.name("x").label, "x");
    }

    #[test]
    fn index_counts_and_dump_positions_are_answered_as_recorded() {
        let mut n = RecordedNamer::default();
        n.push(NameAnswer::IndexCount {
            db: 5,
            oid: 16384,
            count: Some(3),
        });
        let t = ("public".to_string(), "big2".to_string());
        n.push(NameAnswer::DumpPosition {
            db: 5,
            schema: t.0.clone(),
            name: t.1.clone(),
            position: Some((2, 5)),
        });
        assert_eq!(n.index_count(5, 16384), Some(3));
        assert_eq!(n.index_count(5, 1), None);
        assert_eq!(n.dump_position(5, &t), Some((2, 5)));
        assert_eq!(n.dump_position(6, &t), None);
        // Through the file's form too.
        let a = NameAnswer::DumpPosition {
            db: 5,
            schema: t.0.clone(),
            name: t.1.clone(),
            position: Some((2, 5)),
        };
        let back: NameAnswer = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back, a);
    }

    fn rel_answer(path: &str, relpath: &str, label: &str, table: Option<&str>) -> NameAnswer {
        let (locator, fork, segment, main) = parse_relpath(relpath).unwrap();
        let id = RelIdentityRec {
            locator,
            path: main,
            label: label.into(),
            schema: Some("pg_catalog".into()),
            name: Some("pg_class_oid_index".into()),
            kind: Some("index".into()),
            table: table.map(Into::into),
            known: true,
        };
        NameAnswer::Name {
            path: path.into(),
            named: NamedRec {
                relpath: Some(relpath.into()),
                class: "relation".into(),
                label: label.into(),
                relation: Some(RelInfoRec { id, fork, segment }),
            },
        }
    }

    /// Expanded back per question in order: what a replay's namer holds.
    fn per_question(answers: &[NameAnswer]) -> HashMap<String, Vec<NameAnswer>> {
        let mut m: HashMap<String, Vec<NameAnswer>> = HashMap::new();
        for a in answers {
            m.entry(a.key()).or_default().push(a.clone());
        }
        m
    }

    fn round_trip(answers: &[NameAnswer]) -> (usize, Vec<NameAnswer>) {
        let (full, rels) = compact(answers);
        let json = serde_json::to_string(&rels).unwrap();
        let rels: Vec<RelEntry> = serde_json::from_str(&json).unwrap();
        let mut back: Vec<NameAnswer> = full.into_iter().cloned().collect();
        for e in &rels {
            back.extend(e.expand().unwrap());
        }
        (rels.len(), back)
    }

    #[test]
    fn relation_files_are_written_in_few_words_and_read_back_whole() {
        let idx = "pg_class_oid_index → pg_catalog.pg_class";
        let answers = vec![
            rel_answer(
                "./base/5/2662",
                "base/5/2662",
                idx,
                Some("pg_catalog.pg_class"),
            ),
            NameAnswer::FileSize {
                path: "./base/5/2662".into(),
                size: Some(16384),
            },
            NameAnswer::RelationSize {
                relation: "base/5/2662".into(),
                size: Some(16384),
            },
            // An absolute path, another fork and segment, a tablespace, a shared relation.
            rel_answer(
                "/data/pg/base/5/2662_fsm",
                "base/5/2662_fsm",
                idx,
                Some("pg_catalog.pg_class"),
            ),
            rel_answer(
                "pg_tblspc/16390/PG_15_202209061/5/16400.3",
                "pg_tblspc/16390/PG_15_202209061/5/16400.3",
                "pg_catalog.pg_class_oid_index",
                None,
            ),
            rel_answer(
                "global/1262_vm",
                "global/1262_vm",
                idx,
                Some("pg_catalog.pg_class"),
            ),
            // Asked twice in the step: both stay whole, in order.
            NameAnswer::FileSize {
                path: "global/1262_vm".into(),
                size: Some(1),
            },
            NameAnswer::FileSize {
                path: "global/1262_vm".into(),
                size: Some(2),
            },
            // No size: whole.
            NameAnswer::RelationSize {
                relation: "global/1262".into(),
                size: None,
            },
            // A label that does not follow (uncommitted), a temp relation, a path that
            // is not a relation file's: whole.
            rel_answer(
                "base/5/16384",
                "base/5/16384",
                "pg_catalog.pg_class_oid_index (uncommitted)",
                None,
            ),
            NameAnswer::Name {
                path: "base/5/t3_16384".into(),
                named: NamedRec {
                    relpath: Some("base/5/t3_16384".into()),
                    class: "temp_relation".into(),
                    label: "x".into(),
                    relation: None,
                },
            },
            NameAnswer::Name {
                path: "/dev/null".into(),
                named: NamedRec {
                    relpath: None,
                    class: "other".into(),
                    label: "/dev/null".into(),
                    relation: None,
                },
            },
        ];
        let (rels, back) = round_trip(&answers);
        assert_eq!(rels, 4);
        assert_eq!(per_question(&back), per_question(&answers));
        assert_eq!(back.len(), answers.len());
        let (full, entries) = compact(&answers);
        assert_eq!(entries[0].fs, Some(16384));
        assert_eq!(entries[0].rs, Some(16384));
        assert_eq!(entries[0].cut, None);
        assert_eq!(entries[1].cut, Some(9));
        assert_eq!(full.len(), 6);
    }

    #[test]
    fn a_name_asked_twice_in_a_step_stays_whole_and_in_order() {
        let idx = "pg_class_oid_index → pg_catalog.pg_class";
        let a = rel_answer(
            "base/5/2662",
            "base/5/2662",
            idx,
            Some("pg_catalog.pg_class"),
        );
        let mut b = a.clone();
        if let NameAnswer::Name { named, .. } = &mut b {
            named.label = "renamed".into();
        }
        let (rels, back) = round_trip(&[a.clone(), b.clone()]);
        assert_eq!(rels, 0);
        assert_eq!(back, [a, b]);
    }

    #[test]
    fn hostile_entries_expand_to_nothing_or_to_something() {
        for path in [
            "",
            "./",
            "base/x/1",
            "base/5/01",
            "base/5/1.0",
            "base/5/1_x",
            "a/b/c",
        ] {
            let e = RelEntry {
                path: path.into(),
                cut: None,
                schema: "s".into(),
                name: "n".into(),
                kind: "table".into(),
                table: None,
                fs: None,
                rs: None,
            };
            assert!(e.expand().is_none(), "{path}");
        }
        let e = RelEntry {
            path: "base/5/1".into(),
            cut: Some(usize::MAX),
            schema: "s".into(),
            name: "n".into(),
            kind: "table".into(),
            table: None,
            fs: None,
            rs: None,
        };
        assert!(e.expand().is_none());
    }
}
