//! The records of `pg_trace catalog` and `pg_trace resolve`.

use serde::{Deserialize, Serialize};

/// One relation file of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelationRecord {
    /// Null for shared catalogs.
    pub database: Option<String>,
    pub database_oid: Option<u32>,
    pub schema: String,
    pub name: String,
    pub oid: u32,
    pub kind: String,
    pub persistence: String,
    pub relfilenode: u32,
    pub tablespace: String,
    pub path: String,
    pub table: Option<String>,
    pub mapped: bool,
    pub in_progress: bool,
}

/// What one path is; the fields after `class` depend on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathRecord {
    pub path: String,
    pub relpath: Option<String>,
    #[serde(flatten)]
    pub class: PathClassRecord,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "class", rename_all = "snake_case")]
pub enum PathClassRecord {
    Relation(RelFileRecord),
    TempRelation(RelFileRecord),
    TempFile(TempFileRecord),
    Wal(WalRecord),
    Slru { slru: String, segment: u64 },
    Control,
    Other { what: String },
}

/// A relation segment file (permanent, unlogged or temp).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelFileRecord {
    pub database: Option<String>,
    pub database_oid: Option<u32>,
    pub fork: String,
    pub segment: u32,
    pub relfilenode: u32,
    pub tablespace: String,
    /// Temp relations only: the `N` of `t<N>_`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<u32>,
    pub schema: Option<String>,
    pub name: Option<String>,
    pub oid: Option<u32>,
    pub kind: Option<String>,
    pub table: Option<String>,
    pub known: bool,
    /// Present (and true) only when only an uncommitted transaction has created it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<bool>,
    /// Present when not known: "not in catalog yet".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TempFileRecord {
    pub pid: u32,
    pub counter: u64,
    pub fileset: bool,
    pub fileset_member: Option<String>,
    pub tablespace: String,
}

/// A file under `pg_wal`; `wal` says which kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "wal", rename_all = "snake_case")]
pub enum WalRecord {
    Segment {
        timeline: u32,
        segno: u64,
        start_lsn: String,
        partial: bool,
    },
    History {
        timeline: u32,
    },
    BackupHistory {
        file: String,
    },
    ArchiveStatus {
        file: String,
        status: String,
    },
    Summary {
        file: String,
    },
    Other {
        file: String,
    },
}
