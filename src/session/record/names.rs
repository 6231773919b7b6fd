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
}
