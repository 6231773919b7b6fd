//! `pg_trace resolve`: what a path is, in PostgreSQL's terms.

use crate::output::Format;
use crate::pgdata::path::WalFile;
use crate::pgdata::RelFileSegment;
use crate::pgdata::{Catalog, PathClass, Resolved};
use crate::process::OpenFile;
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::Path;

fn lsn_of_segment(segno: u64, seg_size: u32) -> String {
    let lsn = segno.saturating_mul(u64::from(seg_size));
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

fn relfile_fields(m: &mut Map<String, Value>, f: &RelFileSegment, r: &Resolved, cat: &Catalog) {
    let l = &f.locator;
    m.insert("database".into(), json!(r.database));
    m.insert(
        "database_oid".into(),
        if l.db_oid == 0 {
            Value::Null
        } else {
            json!(l.db_oid)
        },
    );
    m.insert("fork".into(), json!(f.fork.as_str()));
    m.insert("segment".into(), json!(f.segment));
    m.insert("relfilenode".into(), json!(l.rel_number));
    m.insert(
        "tablespace".into(),
        json!(cat
            .tablespace(l.spc_oid)
            .map(|t| t.name.clone())
            .unwrap_or_else(|| l.spc_oid.to_string())),
    );
    if let Some(b) = l.backend {
        m.insert("backend".into(), json!(b));
    }
    match &r.relation {
        Some(rel) => {
            m.insert("schema".into(), json!(rel.schema));
            m.insert("name".into(), json!(rel.name));
            m.insert("oid".into(), json!(rel.oid));
            m.insert("kind".into(), json!(rel.kind.as_str()));
            m.insert(
                "table".into(),
                json!(r.table.as_ref().map(|t| t.qualified())),
            );
            m.insert("known".into(), json!(true));
            if rel.pending {
                m.insert("in_progress".into(), json!(true));
            }
        }
        None => {
            for k in ["schema", "name", "oid", "kind", "table"] {
                m.insert(k.into(), Value::Null);
            }
            m.insert("known".into(), json!(false));
            m.insert("note".into(), json!("not in catalog yet"));
        }
    }
}

pub fn record(path: &Path, r: &Resolved, cat: &Catalog) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), json!("path"));
    m.insert("path".into(), json!(path.to_string_lossy()));
    m.insert("relpath".into(), json!(r.relpath));
    m.insert("class".into(), json!(r.class.class_name()));
    let wal_seg = cat.datadir.control.xlog_seg_size;
    match &r.class {
        PathClass::Relation(f) | PathClass::TempRelation(f) => relfile_fields(&mut m, f, r, cat),
        PathClass::TempFile {
            spc,
            pid,
            counter,
            fileset_member,
        } => {
            m.insert("pid".into(), json!(pid));
            m.insert("counter".into(), json!(counter));
            m.insert("fileset".into(), json!(fileset_member.is_some()));
            m.insert("fileset_member".into(), json!(fileset_member));
            m.insert(
                "tablespace".into(),
                json!(cat
                    .tablespace(*spc)
                    .map(|t| t.name.clone())
                    .unwrap_or_else(|| spc.to_string())),
            );
        }
        PathClass::Wal(w) => match w {
            WalFile::Segment {
                timeline,
                segno,
                partial,
            } => {
                m.insert("wal".into(), json!("segment"));
                m.insert("timeline".into(), json!(timeline));
                m.insert("segno".into(), json!(segno));
                m.insert("start_lsn".into(), json!(lsn_of_segment(*segno, wal_seg)));
                m.insert("partial".into(), json!(partial));
            }
            WalFile::History { timeline } => {
                m.insert("wal".into(), json!("history"));
                m.insert("timeline".into(), json!(timeline));
            }
            WalFile::BackupHistory { name } => {
                m.insert("wal".into(), json!("backup_history"));
                m.insert("file".into(), json!(name));
            }
            WalFile::ArchiveStatus { file, status } => {
                m.insert("wal".into(), json!("archive_status"));
                m.insert("file".into(), json!(file));
                m.insert("status".into(), json!(status));
            }
            WalFile::Summary { name } => {
                m.insert("wal".into(), json!("summary"));
                m.insert("file".into(), json!(name));
            }
            WalFile::Other { name } => {
                m.insert("wal".into(), json!("other"));
                m.insert("file".into(), json!(name));
            }
        },
        PathClass::Slru { slru, segment } => {
            m.insert("slru".into(), json!(slru));
            m.insert("segment".into(), json!(segment));
        }
        PathClass::Control => {}
        PathClass::Other { what } => {
            m.insert("what".into(), json!(what));
        }
    }
    Value::Object(m)
}

/// The human description: `sales.orders (table), segment 3`.
pub fn describe(r: &Resolved, cat: &Catalog) -> String {
    let wal_seg = cat.datadir.control.xlog_seg_size;
    match &r.class {
        PathClass::Relation(f) | PathClass::TempRelation(f) => {
            let mut s = match &r.relation {
                Some(rel) => format!("{} ({})", rel.qualified(), rel.kind.as_str()),
                None => format!("relfilenode {} (not in catalog yet)", f.locator.rel_number),
            };
            if let Some(t) = &r.table {
                s.push_str(&format!(" of {}", t.qualified()));
            }
            if let Some(db) = &r.database {
                s.push_str(&format!(" in {db}"));
            }
            if f.fork != crate::pgdata::relfile::Fork::Main {
                s.push_str(&format!(", {} fork", f.fork.as_str()));
            }
            if f.segment > 0 {
                s.push_str(&format!(", segment {}", f.segment));
            }
            if let Some(b) = f.locator.backend {
                s.push_str(&format!(", temp of backend {b}"));
            }
            if r.relation.as_ref().is_some_and(|r| r.pending) {
                s.push_str(" (in progress)");
            }
            s
        }
        PathClass::TempFile {
            pid,
            counter,
            fileset_member,
            ..
        } => match fileset_member {
            Some(m) if !m.is_empty() => {
                format!("temp file {m} of shared fileset {counter} of pid {pid}")
            }
            Some(_) => format!("shared fileset {counter} of pid {pid}"),
            None => format!("temp file {counter} of pid {pid}"),
        },
        PathClass::Wal(WalFile::Segment {
            timeline,
            segno,
            partial,
        }) => format!(
            "WAL segment {segno} of timeline {timeline}, from LSN {}{}",
            lsn_of_segment(*segno, wal_seg),
            if *partial { " (partial)" } else { "" }
        ),
        PathClass::Wal(WalFile::History { timeline }) => {
            format!("timeline {timeline} history file")
        }
        PathClass::Wal(WalFile::BackupHistory { name }) => format!("backup history file {name}"),
        PathClass::Wal(WalFile::ArchiveStatus { file, status }) => {
            format!("archive status of {file}: {status}")
        }
        PathClass::Wal(WalFile::Summary { name }) => format!("WAL summary {name}"),
        PathClass::Wal(WalFile::Other { name }) => format!("WAL directory file {name}"),
        PathClass::Slru { slru, segment } => format!("{slru} segment {segment:04X}"),
        PathClass::Control => "pg_control".to_string(),
        PathClass::Other { what } => what.to_string(),
    }
}

pub fn write(
    out: &mut impl Write,
    path: &Path,
    r: &Resolved,
    cat: &Catalog,
    format: Format,
) -> std::io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer(&mut *out, &record(path, r, cat))?;
            out.write_all(b"\n")
        }
        Format::Text => writeln!(out, "{}  {}", path.display(), describe(r, cat)),
    }
}

/// One open file of a process, named (the one-shot view of `pg_trace -p PID`).
pub fn write_open_file(
    out: &mut impl Write,
    f: &OpenFile,
    r: &Resolved,
    cat: &Catalog,
    format: Format,
) -> std::io::Result<()> {
    match format {
        Format::Json => {
            let mut v = record(&f.path, r, cat);
            if let Value::Object(m) = &mut v {
                m.insert("type".into(), json!("file"));
                m.insert("fd".into(), json!(f.fd));
                m.insert("offset".into(), json!(f.pos));
            }
            serde_json::to_writer(&mut *out, &v)?;
            out.write_all(b"\n")
        }
        Format::Text => {
            let shown = r
                .relpath
                .clone()
                .unwrap_or_else(|| f.path.display().to_string());
            writeln!(
                out,
                "fd {:<4} {:<48} {:>12}  {}",
                f.fd,
                shown,
                f.pos.map(|p| p.to_string()).unwrap_or_default(),
                describe(r, cat)
            )
        }
    }
}
