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
