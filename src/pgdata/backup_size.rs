//! What a base backup of a data directory would send, measured by walking it: the
//! denominator of a backup's progress when the server gives no estimate
//! (`pg_basebackup --no-estimate-size`). Pure rules by path, one bounded walk.

use std::path::{Path, PathBuf};

/// Directories whose contents a base backup skips (`basebackup.c`'s excludeDirContents),
/// and files it never sends (excludeFiles).
const EXCLUDED_DIR_CONTENTS: &[&str] = &[
    "pg_wal",
    "pg_stat_tmp",
    "pg_replslot",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_subtrans",
];
const EXCLUDED_FILES: &[&str] = &[
    "postmaster.pid",
    "postmaster.opts",
    "pg_internal.init",
    "backup_label",
    "tablespace_map",
    "current_logfiles.tmp",
    "backup_manifest",
];

/// Whether the backup sends a file (pure: by its path relative to the data directory).
pub fn sent_by_backup(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    if EXCLUDED_FILES.contains(&name) || name.starts_with("pgsql_tmp") {
        return false;
    }
    !EXCLUDED_DIR_CONTENTS
        .iter()
        .any(|d| rel.starts_with(&format!("{d}/")))
}

/// Whether a file is the main (or any non-init) fork of an unlogged relation: a base
/// backup sends only the init fork of those (`basebackup.c`, "unlogged relation"), since
/// recovery resets them from it. `siblings` are the names in the same directory.
pub fn unlogged_fork_skipped(name: &str, has_init_fork: impl Fn(&str) -> bool) -> bool {
    // `16384`, `16384.1`, `16384_fsm`, `16384_vm`: the relation number before any suffix.
    let digits_end = name.bytes().take_while(u8::is_ascii_digit).count();
    if digits_end == 0 {
        return false;
    }
    let (num, rest) = name.split_at(digits_end);
    if rest == "_init" || rest.starts_with("_init.") {
        return false;
    }
    let suffix_ok = rest.is_empty()
        || rest
            .strip_prefix('.')
            .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        || ["_fsm", "_vm"].iter().any(|f| {
            rest.strip_prefix(f).is_some_and(|s| {
                s.is_empty()
                    || s.strip_prefix('.')
                        .is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit()))
            })
        });
    suffix_ok && has_init_fork(num)
}

/// One file a backup must copy, as found by the walk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlannedFile {
    /// Relative to the data directory, tablespaces as `pg_tblspc/<oid>/...` (the way the
    /// resolver names a path it is given).
    pub rel: String,
    /// Its size when walked.
    pub size: u64,
    /// Index into [`Plan::tablespaces`].
    pub tablespace: usize,
}

/// Every file a backup of a data directory must copy, with `pg_basebackup`'s exclusions
/// (see [`sent_by_backup`], [`unlogged_fork_skipped`]), by tablespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    pub files: Vec<PlannedFile>,
    /// "" for the data directory, `pg_tblspc/<oid>` for the others.
    pub tablespaces: Vec<String>,
    /// The walk stopped early (too many files, too deep): the totals are a floor.
    pub truncated: bool,
}

/// Files beyond this are not planned (memory is bounded; the totals then say so).
const PLAN_MAX_FILES: usize = 4_000_000;

impl Plan {
    pub fn bytes(&self) -> u64 {
        self.files
            .iter()
            .fold(0u64, |a, f| a.saturating_add(f.size))
    }
}

/// Walk `root` (following the tablespace links of `pg_tblspc`) for what a backup copies.
pub fn plan(root: &Path) -> Plan {
    let mut p = Plan {
        tablespaces: vec![String::new()],
        ..Plan::default()
    };
    plan_dir(root, "", 0, 0, &mut p);
    p
}

fn plan_dir(dir: &Path, rel: &str, depth: u32, spc: usize, p: &mut Plan) {
    if depth > 16 {
        p.truncated = true;
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<(String, std::fs::Metadata)> = rd
        .flatten()
        .filter_map(|e| {
            let meta = std::fs::symlink_metadata(e.path()).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), meta))
        })
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let names: std::collections::HashSet<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    // Only a database directory's files can be unlogged relations.
    let in_db_dir = rel.starts_with("base/") || rel.starts_with("pg_tblspc/");
    let has_init = |num: &str| names.contains(format!("{num}_init").as_str());
    let mut subdirs = Vec::new();
    for (name, meta) in &entries {
        if p.files.len() >= PLAN_MAX_FILES {
            p.truncated = true;
            return;
        }
        let r = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        if rel == "pg_tblspc" && (meta.file_type().is_symlink() || meta.is_dir()) {
            if name.parse::<u32>().is_ok() {
                subdirs.push((r.clone(), Some(r)));
            }
        } else if meta.is_dir() {
            if sent_by_backup(&format!("{r}/x")) && !name.starts_with("pgsql_tmp") {
                subdirs.push((r, None));
            }
        } else if meta.is_file()
            && sent_by_backup(&r)
            && !(in_db_dir && unlogged_fork_skipped(name, has_init))
        {
            p.files.push(PlannedFile {
                rel: r,
                size: meta.len(),
                tablespace: spc,
            });
        }
    }
    for (r, new_spc) in subdirs {
        let spc = match new_spc {
            Some(key) => {
                p.tablespaces.push(key);
                p.tablespaces.len() - 1
            }
            None => spc,
        };
        plan_dir(
            &dir.join(r.rsplit('/').next().unwrap_or(&r)),
            &r,
            depth + 1,
            spc,
            p,
        );
    }
}

/// What a backup of a data directory would send: bytes, and tablespaces (the data
/// directory itself is one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walked {
    pub bytes: u64,
    pub tablespaces: u64,
}

/// Bytes and tablespaces of a backup of `root`.
pub fn walk(root: &Path) -> Walked {
    walk_following(root, &|link| link.to_path_buf())
}

/// [`walk`] of a data directory that may be a container's: its tablespace links name
/// paths of the container, followed under its root.
pub fn walk_datadir(dd: &super::DataDir) -> Walked {
    walk_following(&dd.root, &|link| {
        link.strip_prefix(&dd.root)
            .ok()
            .and_then(|rel| dd.link_target(rel))
            .unwrap_or_else(|| link.to_path_buf())
    })
}

/// `follow` turns a tablespace link into the directory to walk.
fn walk_following(root: &Path, follow: &dyn Fn(&Path) -> PathBuf) -> Walked {
    let links = std::fs::read_dir(root.join("pg_tblspc"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
                .count() as u64
        })
        .unwrap_or(0);
    Walked {
        bytes: walk_total_following(root, follow),
        tablespaces: links + 1,
    }
}

/// The size a backup of `root` would send: every file the walsender sends, plus a
/// 512-byte tar header per entry and padding to 512, the way its own estimate counts.
/// Follows the tablespace links in `pg_tblspc`. Bounded in depth.
pub fn walk_total(root: &Path) -> u64 {
    walk_total_following(root, &|link| link.to_path_buf())
}

fn walk_total_following(root: &Path, follow: &dyn Fn(&Path) -> PathBuf) -> u64 {
    fn walk(dir: &Path, rel: &str, depth: u32, total: &mut u64, follow: &dyn Fn(&Path) -> PathBuf) {
        if depth > 16 {
            return;
        }
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            let in_tblspc = rel == "pg_tblspc";
            let link = in_tblspc && meta.file_type().is_symlink();
            if meta.is_dir() || link {
                *total += 512;
                if sent_by_backup(&format!("{r}/x")) {
                    let d = if link { follow(&e.path()) } else { e.path() };
                    walk(&d, &r, depth + 1, total, follow);
                }
            } else if meta.is_file() && sent_by_backup(&r) {
                let len = meta.len();
                *total += 512 + len.div_ceil(512) * 512;
            }
        }
    }
    let mut total = 0;
    walk(root, "", 0, &mut total, follow);
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_backup_sends() {
        assert!(sent_by_backup("base/5/1259"));
        assert!(!sent_by_backup("pg_wal/000000010000000000000001"));
        assert!(!sent_by_backup("postmaster.pid"));
        assert!(!sent_by_backup("base/pgsql_tmp/pgsql_tmp12.0"));
    }

    #[test]
    fn unlogged_forks() {
        let init = |n: &str| n == "16400";
        assert!(unlogged_fork_skipped("16400", init));
        assert!(unlogged_fork_skipped("16400.1", init));
        assert!(unlogged_fork_skipped("16400_fsm", init));
        assert!(unlogged_fork_skipped("16400_vm", init));
        assert!(!unlogged_fork_skipped("16400_init", init));
        assert!(!unlogged_fork_skipped("16401", init));
        assert!(!unlogged_fork_skipped("PG_VERSION", init));
        assert!(!unlogged_fork_skipped("16400x", init));
    }

    #[test]
    fn plans_what_a_backup_copies() {
        let dir = std::env::temp_dir().join(format!("pg_trace_plan_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("base/5/pgsql_tmp")).unwrap();
        std::fs::create_dir_all(dir.join("pg_wal/archive_status")).unwrap();
        std::fs::create_dir_all(dir.join("pg_replslot/s")).unwrap();
        std::fs::write(dir.join("base/5/1259"), vec![0u8; 1000]).unwrap();
        std::fs::write(dir.join("base/5/16400"), vec![0u8; 100]).unwrap();
        std::fs::write(dir.join("base/5/16400_init"), vec![0u8; 10]).unwrap();
        std::fs::write(dir.join("base/5/pgsql_tmp/pgsql_tmp1.0"), [0u8; 10]).unwrap();
        std::fs::write(dir.join("pg_replslot/s/state"), [0u8; 10]).unwrap();
        std::fs::write(dir.join("pg_wal/000000010000000000000001"), [0u8; 10]).unwrap();
        std::fs::write(dir.join("postmaster.pid"), b"1").unwrap();
        std::fs::write(dir.join("PG_VERSION"), b"16\n").unwrap();
        let p = plan(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        let names: Vec<&str> = p.files.iter().map(|f| f.rel.as_str()).collect();
        assert_eq!(names, ["PG_VERSION", "base/5/1259", "base/5/16400_init"]);
        assert_eq!(p.bytes(), 3 + 1000 + 10);
        assert_eq!(p.tablespaces, [""]);
    }

    #[test]
    fn walks_files_with_tar_headers() {
        let dir = std::env::temp_dir().join(format!("pg_trace_walk_{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("base/5")).unwrap();
        std::fs::create_dir_all(dir.join("pg_wal")).unwrap();
        std::fs::write(dir.join("base/5/1259"), vec![0u8; 1000]).unwrap();
        std::fs::write(dir.join("pg_wal/000000010000000000000001"), [0u8; 10]).unwrap();
        std::fs::write(dir.join("postmaster.pid"), b"1").unwrap();
        let w = walk(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        // base, base/5, pg_wal: 512 each; 1259: header + 1024 of data.
        assert_eq!(
            w,
            Walked {
                bytes: 3 * 512 + 512 + 1024,
                tablespaces: 1
            }
        );
    }
}
