//! Classify any path inside a data directory: what kind of PostgreSQL file it is, and the
//! numbers in its name. Pure: no file system access, no catalog.

use std::path::{Component, Path, PathBuf};

use super::layout::{DEFAULTTABLESPACE_OID, GLOBALTABLESPACE_OID};
use super::relfile::{digits, RelFileSegment};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalFile {
    Segment {
        timeline: u32,
        segno: u64,
        partial: bool,
    },
    History {
        timeline: u32,
    },
    BackupHistory {
        name: String,
    },
    ArchiveStatus {
        file: String,
        status: String,
    },
    Summary {
        name: String,
    },
    Other {
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathClass {
    Relation(RelFileSegment),
    TempRelation(RelFileSegment),
    TempFile {
        spc: u32,
        /// The pid that created it (for a fileset, the creator of the set).
        pid: u32,
        /// A private temp file's counter, or the set number of a shared fileset.
        counter: u64,
        /// Inside a shared fileset: the file's own name (`i305of512.p0.0`).
        fileset_member: Option<String>,
    },
    Wal(WalFile),
    Slru {
        slru: &'static str,
        segment: u64,
    },
    Control,
    Other {
        what: &'static str,
    },
}

impl PathClass {
    /// The `class` field of `pg_trace resolve`.
    pub fn class_name(&self) -> &'static str {
        match self {
            PathClass::Relation(_) => "relation",
            PathClass::TempRelation(_) => "temp_relation",
            PathClass::TempFile { .. } => "temp_file",
            PathClass::Wal(_) => "wal",
            PathClass::Slru { .. } => "slru",
            PathClass::Control => "control",
            PathClass::Other { .. } => "other",
        }
    }
}

const SLRUS: &[(&str, &str)] = &[
    ("pg_xact", "pg_xact"),
    ("pg_subtrans", "pg_subtrans"),
    ("pg_multixact/offsets", "pg_multixact/offsets"),
    ("pg_multixact/members", "pg_multixact/members"),
    ("pg_commit_ts", "pg_commit_ts"),
    ("pg_serial", "pg_serial"),
    ("pg_notify", "pg_notify"),
];

/// `pgsql_tmp<pid>.<counter>`, or a fileset directory `pgsql_tmp<pid>.<n>.fileset` (15+) or
/// `.sharedfileset` (12–14), optionally followed by a member file name.
fn parse_temp(spc: u32, rest: &[&str]) -> Option<PathClass> {
    let first = rest.first()?.strip_prefix("pgsql_tmp")?;
    let mut parts = first.splitn(3, '.');
    let pid = digits(parts.next()?)?;
    let counter: u64 = parts.next()?.parse().ok()?;
    let suffix = parts.next();
    let fileset_member = match (suffix, rest.get(1)) {
        (None, None) => None,
        (Some("fileset" | "sharedfileset"), member) => {
            Some(member.map(|m| m.to_string()).unwrap_or_default())
        }
        _ => return None,
    };
    if rest.len() > 2 {
        return None;
    }
    Some(PathClass::TempFile {
        spc,
        pid,
        counter,
        fileset_member,
    })
}

fn parse_hex_name(name: &str, max_len: usize) -> Option<u64> {
    if name.len() < 4 || name.len() > max_len || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(name, 16).ok()
}

/// `pg_wal/...`; `wal_seg_size` turns the name into a segment number.
fn parse_wal(rest: &[&str], wal_seg_size: u32) -> PathClass {
    let segs_per_id = (1u64 << 32) / u64::from(wal_seg_size.max(1));
    let seg_name = |n: &str| -> Option<(u32, u64)> {
        if n.len() != 24 || !n.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let tli = u32::from_str_radix(&n[0..8], 16).ok()?;
        let log = u64::from_str_radix(&n[8..16], 16).ok()?;
        let seg = u64::from_str_radix(&n[16..24], 16).ok()?;
        Some((tli, log.checked_mul(segs_per_id)?.checked_add(seg)?))
    };
    let w = match rest {
        [name] => {
            if let Some((timeline, segno)) = seg_name(name) {
                WalFile::Segment {
                    timeline,
                    segno,
                    partial: false,
                }
            } else if let Some((timeline, segno)) = name.strip_suffix(".partial").and_then(seg_name)
            {
                WalFile::Segment {
                    timeline,
                    segno,
                    partial: true,
                }
            } else if let Some(t) = name
                .strip_suffix(".history")
                .filter(|t| t.len() == 8)
                .and_then(|t| u32::from_str_radix(t, 16).ok())
            {
                WalFile::History { timeline: t }
            } else if name.ends_with(".backup") {
                WalFile::BackupHistory {
                    name: name.to_string(),
                }
            } else {
                WalFile::Other {
                    name: name.to_string(),
                }
            }
        }
        ["archive_status", name] => match name.rsplit_once('.') {
            Some((file, status @ ("ready" | "done"))) => WalFile::ArchiveStatus {
                file: file.to_string(),
                status: status.to_string(),
            },
            _ => WalFile::Other {
                name: format!("archive_status/{name}"),
            },
        },
        ["summaries", name] => WalFile::Summary {
            name: name.to_string(),
        },
        _ => WalFile::Other {
            name: rest.join("/"),
        },
    };
    PathClass::Wal(w)
}

/// Classify a path relative to the data directory (see [`relative_to`]).
pub fn classify(rel: &str, wal_seg_size: u32) -> PathClass {
    let parts: Vec<&str> = rel
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    let other = |what| PathClass::Other { what };
    match parts.as_slice() {
        ["global", "pg_control"] => PathClass::Control,
        ["global", "pg_filenode.map"] => other("shared relation map"),
        ["global", name] => RelFileSegment::parse(name, GLOBALTABLESPACE_OID, 0)
            .filter(|r| !r.locator.is_temp())
            .map(PathClass::Relation)
            .unwrap_or(other("global file")),
        ["base", "pgsql_tmp", rest @ ..] => {
            parse_temp(DEFAULTTABLESPACE_OID, rest).unwrap_or(other("temporary file"))
        }
        ["base", db, rest @ ..] => match digits(db) {
            Some(db) => database_file(DEFAULTTABLESPACE_OID, db, rest),
            None => other("base file"),
        },
        ["pg_tblspc", spc, version, rest @ ..] if version.starts_with("PG_") => {
            match (digits(spc), rest) {
                (Some(spc), ["pgsql_tmp", tmp @ ..]) => {
                    parse_temp(spc, tmp).unwrap_or(other("temporary file"))
                }
                (Some(spc), [db, rest @ ..]) => match digits(db) {
                    Some(db) => database_file(spc, db, rest),
                    None => other("tablespace file"),
                },
                _ => other("tablespace directory"),
            }
        }
        ["pg_tblspc", ..] => other("tablespace directory"),
        ["pg_wal", rest @ ..] if !rest.is_empty() => parse_wal(rest, wal_seg_size),
        ["pg_wal"] => other("WAL directory"),
        [] => other("data directory"),
        _ => {
            for (dir, slru) in SLRUS {
                let n = dir.split('/').count();
                if parts.len() == n + 1 && parts[..n].join("/") == *dir {
                    if let Some(segment) = parse_hex_name(parts[n], 15) {
                        return PathClass::Slru { slru, segment };
                    }
                }
            }
            other(describe_other(&parts))
        }
    }
}

fn database_file(spc: u32, db: u32, rest: &[&str]) -> PathClass {
    match rest {
        [name] => match RelFileSegment::parse(name, spc, db) {
            Some(r) if r.locator.is_temp() => PathClass::TempRelation(r),
            Some(r) => PathClass::Relation(r),
            None => PathClass::Other {
                what: match *name {
                    "pg_filenode.map" => "relation map",
                    "PG_VERSION" => "database version file",
                    "pg_internal.init" => "relation cache init file",
                    _ => "database directory file",
                },
            },
        },
        [] => PathClass::Other {
            what: "database directory",
        },
        _ => PathClass::Other {
            what: "database directory file",
        },
    }
}

fn describe_other(parts: &[&str]) -> &'static str {
    match parts.first().copied().unwrap_or("") {
        "PG_VERSION" => "version file",
        "postmaster.pid" => "postmaster pid file",
        "postmaster.opts" => "postmaster options",
        "postgresql.conf" | "postgresql.auto.conf" | "pg_hba.conf" | "pg_ident.conf" => {
            "configuration file"
        }
        "backup_label" | "backup_manifest" | "tablespace_map" => "backup file",
        "pg_stat" | "pg_stat_tmp" => "statistics file",
        "pg_replslot" => "replication slot",
        "pg_logical" => "logical decoding file",
        "pg_twophase" => "two-phase state file",
        "pg_snapshots" => "exported snapshot",
        "pg_dynshmem" => "dynamic shared memory",
        "pg_multixact" | "pg_xact" | "pg_subtrans" | "pg_commit_ts" | "pg_serial" | "pg_notify" => {
            "SLRU directory"
        }
        "log" | "pg_log" => "server log",
        _ => "other file",
    }
}

/// Lexically clean a path (`.`, `..`, repeated slashes), without touching the disk. A
/// relative path keeps the `..` that climb above its start (`../base` is not `base`);
/// an absolute one cannot climb above `/`.
pub fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(".."),
            },
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Express `path` relative to the data directory. Relative paths are taken as relative to
/// the data directory (a backend's working directory). Absolute paths may point into the
/// data directory (as given or canonical) or into a tablespace location, which is mapped
/// back to `pg_tblspc/<oid>/...`. Containment is lexical, after `..` is resolved: a path
/// that climbs out (`../base/5/1259`, `/data/pg/../other/base/5/1259`) is outside, never
/// named. Returns None for paths outside the cluster.
pub fn relative_to(
    path: &Path,
    datadir_forms: &[PathBuf],
    tablespaces: &[(u32, PathBuf)],
) -> Option<String> {
    let p = normalize(path);
    if p.is_relative() {
        return match p.components().next() {
            Some(Component::ParentDir) => {
                // It may climb out and back in (`../data/base/5/1259`).
                let abs = datadir_forms.iter().find(|d| d.is_absolute())?;
                relative_to(&abs.join(&p), datadir_forms, tablespaces)
            }
            _ => Some(p.to_string_lossy().into_owned()),
        };
    }
    for d in datadir_forms {
        if let Ok(r) = p.strip_prefix(d) {
            return Some(r.to_string_lossy().into_owned());
        }
    }
    for (oid, loc) in tablespaces {
        if let Ok(r) = p.strip_prefix(loc) {
            let r = r.to_string_lossy();
            return Some(if r.is_empty() {
                format!("pg_tblspc/{oid}")
            } else {
                format!("pg_tblspc/{oid}/{r}")
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgdata::relfile::Fork;

    const WAL: u32 = 16 << 20;

    fn rel(s: &str) -> RelFileSegment {
        match classify(s, WAL) {
            PathClass::Relation(r) | PathClass::TempRelation(r) => r,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn relation_files() {
        let r = rel("base/16384/24577.3");
        assert_eq!(
            (r.locator.db_oid, r.locator.rel_number, r.segment, r.fork),
            (16384, 24577, 3, Fork::Main)
        );
        let r = rel("base/5/1259_fsm");
        assert_eq!((r.fork, r.segment), (Fork::Fsm, 0));
        let r = rel("base/5/16385_vm.2");
        assert_eq!((r.fork, r.segment), (Fork::Vm, 2));
        assert_eq!(rel("base/5/16385_init").fork, Fork::Init);
        let r = rel("global/1262");
        assert_eq!((r.locator.spc_oid, r.locator.db_oid), (1664, 0));
        let r = rel("pg_tblspc/16390/PG_15_202209061/16391/16400.1");
        assert_eq!(
            (
                r.locator.spc_oid,
                r.locator.db_oid,
                r.locator.rel_number,
                r.segment
            ),
            (16390, 16391, 16400, 1)
        );
        assert!(
            matches!(classify("base/16384/t3_16397", WAL), PathClass::TempRelation(r) if r.locator.backend == Some(3))
        );
        let r = rel("base/5/t18_16400_fsm.1");
        assert_eq!(
            (r.locator.backend, r.fork, r.segment),
            (Some(18), Fork::Fsm, 1)
        );
        for bad in [
            "base/5/16385.0",
            "base/5/16385_foo",
            "base/5/abc",
            "base/5/0",
            "base/5/1.x",
        ] {
            assert!(
                matches!(classify(bad, WAL), PathClass::Other { .. }),
                "{bad}"
            );
        }
    }

    #[test]
    fn temp_files() {
        assert_eq!(
            classify("base/pgsql_tmp/pgsql_tmp1234.7", WAL),
            PathClass::TempFile {
                spc: 1663,
                pid: 1234,
                counter: 7,
                fileset_member: None
            }
        );
        assert_eq!(
            classify("base/pgsql_tmp/pgsql_tmp99.0.fileset/i305of512.p0.0", WAL),
            PathClass::TempFile {
                spc: 1663,
                pid: 99,
                counter: 0,
                fileset_member: Some("i305of512.p0.0".into())
            }
        );
        assert!(matches!(
            classify(
                "pg_tblspc/16390/PG_12_201909212/pgsql_tmp/pgsql_tmp5.1.sharedfileset/o9of512.p2.0",
                WAL
            ),
            PathClass::TempFile {
                spc: 16390,
                pid: 5,
                counter: 1,
                ..
            }
        ));
    }

    #[test]
    fn wal_and_slru() {
        assert_eq!(
            classify("pg_wal/000000010000000A000000F3", WAL),
            PathClass::Wal(WalFile::Segment {
                timeline: 1,
                segno: 0xA * 256 + 0xF3,
                partial: false
            })
        );
        assert!(matches!(
            classify("pg_wal/00000002.history", WAL),
            PathClass::Wal(WalFile::History { timeline: 2 })
        ));
        assert!(matches!(
            classify("pg_wal/archive_status/000000010000000000000017.done", WAL),
            PathClass::Wal(WalFile::ArchiveStatus { status, .. }) if status == "done"
        ));
        assert!(matches!(
            classify("pg_wal/000000010000000000000017.00000028.backup", WAL),
            PathClass::Wal(WalFile::BackupHistory { .. })
        ));
        assert_eq!(
            classify("pg_xact/0000", WAL),
            PathClass::Slru {
                slru: "pg_xact",
                segment: 0
            }
        );
        assert_eq!(
            classify("pg_multixact/members/001A", WAL),
            PathClass::Slru {
                slru: "pg_multixact/members",
                segment: 0x1a
            }
        );
        assert_eq!(classify("global/pg_control", WAL), PathClass::Control);
        assert_eq!(classify("postmaster.pid", WAL).class_name(), "other");
    }

    #[test]
    fn relative_paths() {
        let dd = vec![PathBuf::from("/data/pg")];
        let ts = vec![(16390, PathBuf::from("/mnt/ts"))];
        assert_eq!(
            relative_to(Path::new("/data/pg/base/5/1259"), &dd, &ts).unwrap(),
            "base/5/1259"
        );
        assert_eq!(
            relative_to(Path::new("/mnt/ts/PG_15_1/5/16400"), &dd, &ts).unwrap(),
            "pg_tblspc/16390/PG_15_1/5/16400"
        );
        assert_eq!(
            relative_to(Path::new("./base//5/../5/1259"), &dd, &ts).unwrap(),
            "base/5/1259"
        );
        assert!(relative_to(Path::new("/etc/passwd"), &dd, &ts).is_none());
        for outside in [
            "../base/5/1259",
            "base/../../base/5/1259",
            "/data/pg/../base/5/1259",
            "/data/pg/base/../../pg2/base/5/1259",
            "/mnt/ts/../x/PG_15_1/5/16400",
        ] {
            assert_eq!(relative_to(Path::new(outside), &dd, &ts), None, "{outside}");
        }
        assert_eq!(
            relative_to(Path::new("../pg/base/5/1259"), &dd, &ts).unwrap(),
            "base/5/1259"
        );
        assert_eq!(
            relative_to(Path::new("/../data/pg/base/5/1259"), &dd, &ts).unwrap(),
            "base/5/1259"
        );
        // Without an absolute form of the data directory, climbing out stays outside.
        let rel_only = vec![PathBuf::from("data")];
        assert_eq!(
            relative_to(Path::new("../base/5/1259"), &rel_only, &[]),
            None
        );
        assert_eq!(
            normalize(Path::new("a/../../b/./c")),
            PathBuf::from("../b/c")
        );
    }
}
