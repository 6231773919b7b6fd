//! `pg_trace resolve`: what a path is, in PostgreSQL's terms.

use crate::output::record::{
    self, PathClassRecord, PathRecord, Record, RelFileRecord, TempFileRecord, WalRecord,
};
use crate::output::Format;
use crate::pgdata::path::WalFile;
use crate::pgdata::RelFileSegment;
use crate::pgdata::{Catalog, PathClass, Resolved};
use std::io::Write;
use std::path::Path;

fn lsn_of_segment(segno: u64, seg_size: u32) -> String {
    let lsn = segno.saturating_mul(u64::from(seg_size));
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

fn tablespace_name(cat: &Catalog, spc: u32) -> String {
    cat.tablespace(spc)
        .map(|t| t.name.clone())
        .unwrap_or_else(|| spc.to_string())
}

fn relfile_record(f: &RelFileSegment, r: &Resolved, cat: &Catalog) -> RelFileRecord {
    let rel = r.relation.as_ref();
    RelFileRecord {
        database: r.database.clone(),
        database_oid: (f.locator.db_oid != 0).then_some(f.locator.db_oid),
        fork: f.fork.as_str().to_string(),
        segment: f.segment,
        relfilenode: f.locator.rel_number,
        tablespace: tablespace_name(cat, f.locator.spc_oid),
        backend: f.locator.backend,
        schema: rel.map(|rel| rel.schema.clone()),
        name: rel.map(|rel| rel.name.clone()),
        oid: rel.map(|rel| rel.oid),
        kind: rel.map(|rel| rel.kind.as_str().to_string()),
        table: rel.and_then(|_| r.table.as_ref().map(|t| t.qualified())),
        known: rel.is_some(),
        in_progress: rel.is_some_and(|rel| rel.pending).then_some(true),
        note: rel.is_none().then(|| "not in catalog yet".to_string()),
    }
}

fn wal_record(w: &WalFile, wal_seg: u32) -> WalRecord {
    match w {
        WalFile::Segment {
            timeline,
            segno,
            partial,
        } => WalRecord::Segment {
            timeline: *timeline,
            segno: *segno,
            start_lsn: lsn_of_segment(*segno, wal_seg),
            partial: *partial,
        },
        WalFile::History { timeline } => WalRecord::History {
            timeline: *timeline,
        },
        WalFile::BackupHistory { name } => WalRecord::BackupHistory { file: name.clone() },
        WalFile::ArchiveStatus { file, status } => WalRecord::ArchiveStatus {
            file: file.clone(),
            status: status.clone(),
        },
        WalFile::Summary { name } => WalRecord::Summary { file: name.clone() },
        WalFile::Other { name } => WalRecord::Other { file: name.clone() },
    }
}

pub fn record(path: &Path, r: &Resolved, cat: &Catalog) -> Record {
    let class = match &r.class {
        PathClass::Relation(f) => PathClassRecord::Relation(relfile_record(f, r, cat)),
        PathClass::TempRelation(f) => PathClassRecord::TempRelation(relfile_record(f, r, cat)),
        PathClass::TempFile {
            spc,
            pid,
            counter,
            fileset_member,
        } => PathClassRecord::TempFile(TempFileRecord {
            pid: *pid,
            counter: *counter,
            fileset: fileset_member.is_some(),
            fileset_member: fileset_member.clone(),
            tablespace: tablespace_name(cat, *spc),
        }),
        PathClass::Wal(w) => PathClassRecord::Wal(wal_record(w, cat.datadir.control.xlog_seg_size)),
        PathClass::Slru { slru, segment } => PathClassRecord::Slru {
            slru: slru.to_string(),
            segment: *segment,
        },
        PathClass::Control => PathClassRecord::Control,
        PathClass::Other { what } => PathClassRecord::Other {
            what: what.to_string(),
        },
    };
    Record::Path(PathRecord {
        path: path.to_string_lossy().into_owned(),
        relpath: r.relpath.clone(),
        class,
    })
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
        Format::Json => record::write(out, &record(path, r, cat)),
        Format::Text => writeln!(
            out,
            "{}  {}",
            crate::text::visible(&path.to_string_lossy()),
            crate::text::visible(&describe(r, cat))
        ),
    }
}
