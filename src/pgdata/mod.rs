//! A read-only view of a PostgreSQL data directory, without a server connection.
//!
//! Everything read here is treated as hostile: files may be torn by concurrent writes,
//! truncated, or corrupt, and no parser panics or allocates by an untrusted size.

pub mod backup_size;
pub mod bytes;
pub mod catalog;
pub mod control;
pub mod file;
pub mod layout;
pub mod page;
pub mod path;
pub mod relfile;
pub mod relmap;
pub mod resolver;
pub mod xact;

use std::io;
use std::path::{Path, PathBuf};

pub use catalog::{Catalog, RelKind, Relation};
pub use control::ControlData;
pub use layout::CatalogLayout;
pub use path::{classify, PathClass};
pub use relfile::{Fork, RelFileLocator, RelFileSegment};
pub use resolver::{Resolved, Resolver};

#[derive(Debug, thiserror::Error)]
pub enum PgDataError {
    /// The io::Error is not a `source`: its text is already in the message, and an error
    /// chain printed with its causes would say it twice.
    #[error("cannot read {}: {}", path.display(), describe_io(error))]
    Io { path: PathBuf, error: io::Error },
    #[error("cannot read {}: it is {kind}, not a regular file", path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{what} is corrupt: {why}")]
    Corrupt { what: String, why: String },
    #[error("unsupported {0}")]
    Unsupported(String),
    #[error("{} is not a PostgreSQL data directory (no PG_VERSION)", .0.display())]
    NotDataDir(PathBuf),
    #[error("{0}")]
    Process(String),
}

impl PgDataError {
    pub fn corrupt(what: impl Into<String>, why: impl Into<String>) -> Self {
        PgDataError::Corrupt {
            what: what.into(),
            why: why.into(),
        }
    }

    /// Name the file a corruption was found in.
    pub fn at(self, path: &Path) -> Self {
        match self {
            PgDataError::Corrupt { why, .. } => PgDataError::Corrupt {
                what: path.display().to_string(),
                why,
            },
            other => other,
        }
    }
}

fn describe_io(e: &io::Error) -> String {
    match e.kind() {
        // pgdata may not name process::proc's hint (layers): the same words.
        io::ErrorKind::PermissionDenied => "permission denied (another user's data directory \
                                            needs CAP_DAC_READ_SEARCH: run as root, or see \
                                            `setcap` in docs/usage.md)"
            .into(),
        io::ErrorKind::NotFound => "no such file or directory".into(),
        _ => e.to_string(),
    }
}

pub fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PgDataError + '_ {
    move |error| PgDataError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// `PG_VERSION` holds a major and a newline; anything much longer is not one.
pub const MAX_PG_VERSION: u64 = 16;

pub use file::{open_regular, read_capped};

/// A data directory whose version and control file have been checked.
#[derive(Debug, Clone)]
pub struct DataDir {
    /// Where pg_trace reads it: the server's own path, or that path under
    /// `/proc/PID/root` for a server in another mount namespace (a container).
    pub root: PathBuf,
    /// The path the server itself uses, when it is not `root` (a container's): what the
    /// paths it opens start with, and what is shown.
    pub inside: Option<PathBuf>,
    /// `/proc/PID/root` of a server in a container: its absolute paths (tablespace and
    /// WAL links) are under it.
    pub fs_root: Option<PathBuf>,
    /// The postmaster's host pid, once found running and checked by whoever opened this
    /// (for a container's server: mapped from the pid its own namespace gives it, which
    /// `postmaster.pid` holds).
    pub postmaster_host: Option<i32>,
    pub major: u32,
    pub control: ControlData,
    pub layout: CatalogLayout,
}

impl DataDir {
    pub fn open(root: &Path) -> Result<DataDir, PgDataError> {
        let meta = std::fs::metadata(root).map_err(io_err(root))?;
        if !meta.is_dir() {
            return Err(PgDataError::NotDataDir(root.to_path_buf()));
        }
        let version_path = root.join("PG_VERSION");
        let version = match read_capped(&version_path, MAX_PG_VERSION) {
            Ok(v) => v,
            Err(PgDataError::Io { error, .. }) if error.kind() == io::ErrorKind::NotFound => {
                return Err(PgDataError::NotDataDir(root.to_path_buf()))
            }
            Err(e) => return Err(e),
        };
        let major = control::parse_pg_version(&version).map_err(|e| e.at(&version_path))?;
        let control_path = root.join("global/pg_control");
        let control = control::parse_control(&read_capped(
            &control_path,
            control::PG_CONTROL_FILE_SIZE as u64,
        )?)
        .map_err(|e| e.at(&control_path))?;
        // 1300 covers 13–16, so the control file only narrows what PG_VERSION says.
        if !crate::version::of(major)
            .is_some_and(|m| m.pg_control_version == control.pg_control_version)
        {
            return Err(PgDataError::corrupt(
                control_path.display().to_string(),
                format!(
                    "control version {} does not belong to PostgreSQL {major} (PG_VERSION)",
                    control.pg_control_version
                ),
            ));
        }
        let layout = layout::catalog_layout(major)
            .ok_or_else(|| PgDataError::Unsupported(format!("PostgreSQL {major}")))?;
        Ok(DataDir {
            root: root.to_path_buf(),
            inside: None,
            fs_root: None,
            postmaster_host: None,
            major,
            control,
            layout,
        })
    }

    /// The data directory of a running postgres process: every postgres process keeps its
    /// working directory there. A server whose working directory is not a data directory
    /// here may be in a container: it is then looked for under its root (`/proc/PID/root`).
    pub fn from_pid(pid: i32) -> Result<DataDir, PgDataError> {
        match DataDir::from_pid_in(pid, None) {
            Err(PgDataError::Process(_)) if Path::new(&format!("/proc/{pid}")).exists() => {
                let root = PathBuf::from(format!("/proc/{pid}/root"));
                DataDir::from_pid_in(pid, Some(&root)).or_else(|_| DataDir::from_pid_in(pid, None))
            }
            r => r,
        }
    }

    /// The data directory of a running postgres process whose file system is under
    /// `fs_root` (`/proc/PID/root` of a process in another mount namespace), or ours.
    pub fn from_pid_in(pid: i32, fs_root: Option<&Path>) -> Result<DataDir, PgDataError> {
        let inside = locate_datadir(pid, fs_root)?;
        let Some(fs_root) = fs_root else {
            return DataDir::open(&inside);
        };
        let mut dd = DataDir::open(&under_root(fs_root, &inside))?;
        dd.inside = Some(inside);
        dd.fs_root = Some(fs_root.to_path_buf());
        Ok(dd)
    }

    /// The data directory as the server names it (in its container, if it is in one).
    pub fn shown(&self) -> &Path {
        self.inside.as_deref().unwrap_or(&self.root)
    }

    /// Where pg_trace can read a path the server uses: relative to the data directory, or
    /// absolute in the server's file system. A tablespace's link holds an absolute path
    /// of the server's, which the kernel would follow from pg_trace's root: it is read
    /// and followed under the server's root instead.
    pub fn readable(&self, path: &Path) -> PathBuf {
        let Some(fs_root) = &self.fs_root else {
            return self.root.join(path);
        };
        if path.is_absolute() {
            return under_root(fs_root, path);
        }
        // The links a data directory may hold: pg_tblspc/<oid> and pg_wal (initdb -X).
        let mut parts = path.components();
        let first = parts.next().map(|c| c.as_os_str().to_owned());
        let link = match first.as_deref().and_then(|f| f.to_str()) {
            Some("pg_wal") => Some(PathBuf::from("pg_wal")),
            Some("pg_tblspc") => parts
                .next()
                .map(|oid| Path::new("pg_tblspc").join(oid.as_os_str())),
            _ => None,
        };
        if let Some(link) = link {
            if let Some(t) = self.link_target(&link) {
                return t.join(path.strip_prefix(&link).unwrap_or(Path::new("")));
            }
        }
        self.root.join(path)
    }

    /// Where the link `rel` of the data directory points, readable here: under the
    /// server's root when it is absolute and the server is in a container. None when it
    /// is no link.
    pub fn link_target(&self, rel: &Path) -> Option<PathBuf> {
        let t = std::fs::read_link(self.root.join(rel)).ok()?;
        Some(match (&self.fs_root, t.is_absolute()) {
            (Some(r), true) => under_root(r, &t),
            _ => self.root.join(rel).parent().unwrap_or(&self.root).join(t),
        })
    }

    /// `PG_<major>_<catversion>`, the per-version directory inside every tablespace.
    /// The postmaster's pid, from the first line of `postmaster.pid` (read capped: a
    /// data directory is hostile input like any other).
    /// When it is a container's server, its host pid, once mapped ([`DataDir::postmaster_host`]).
    pub fn postmaster_pid(&self) -> Result<i32, PgDataError> {
        match self.postmaster_host {
            Some(p) => Ok(p),
            None => self.postmaster_pid_in_file(),
        }
    }

    /// The pid on the first line of `postmaster.pid`, as the server's own pid namespace
    /// numbers it.
    pub fn postmaster_pid_in_file(&self) -> Result<i32, PgDataError> {
        let p = self.root.join("postmaster.pid");
        let bytes = file::read_capped(&p, 64 * 1024).map_err(|e| {
            PgDataError::Process(format!("{}: is the server running?: {e}", p.display()))
        })?;
        String::from_utf8_lossy(&bytes)
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .filter(|&pid: &i32| pid > 0)
            .ok_or_else(|| {
                PgDataError::Process(format!("{}: no pid on its first line", p.display()))
            })
    }

    /// The key of the server's System V shared memory segment, from line 7 of
    /// `postmaster.pid` (`LOCK_FILE_LINE_SHMEM_KEY`: key, then id). Every process of the
    /// server maps that segment; /proc/PID/maps names it `/SYSV<key as 8 hex digits>`.
    /// key_t is an int written as unsigned long: its low 32 bits are the key.
    pub fn shmem_key(&self) -> Option<u32> {
        let p = self.root.join("postmaster.pid");
        let bytes = file::read_capped(&p, 64 * 1024).ok()?;
        let text = String::from_utf8_lossy(&bytes);
        let key: u64 = text
            .lines()
            .nth(6)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(key as u32)
    }

    pub fn tablespace_version_dir(&self) -> String {
        format!("PG_{}_{}", self.major, self.control.catalog_version_no)
    }
}

/// An absolute path of a process whose root is `fs_root`, as the host reaches it. The
/// path is cleaned first: a `..` after `/proc/PID/root` would climb out of the container
/// into the host's directories.
pub fn under_root(fs_root: &Path, path: &Path) -> PathBuf {
    let clean = path::normalize(&Path::new("/").join(path));
    fs_root.join(clean.strip_prefix("/").unwrap_or(&clean))
}

/// Check that `pid` is a PostgreSQL server process and return its data directory, as the
/// process names it. With `fs_root` (its `/proc/PID/root`, when it lives in another
/// mount namespace) the directory is checked under that root.
pub fn locate_datadir(pid: i32, fs_root: Option<&Path>) -> Result<PathBuf, PgDataError> {
    if pid <= 0 {
        return Err(PgDataError::Process(format!("{pid} is not a valid pid")));
    }
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    if !proc_dir.exists() {
        return Err(PgDataError::Process(format!("no process with pid {pid}")));
    }
    let comm = std::fs::read_to_string(proc_dir.join("comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let exe = std::fs::read_link(proc_dir.join("exe")).ok();
    let exe_name = exe.as_ref().and_then(|p| p.file_name()).map(|n| {
        n.to_string_lossy()
            .trim_end_matches(" (deleted)")
            .to_string()
    });
    let is_postgres = matches!(comm.as_str(), "postgres" | "postmaster")
        || matches!(exe_name.as_deref(), Some("postgres" | "postmaster"));
    if !is_postgres {
        return Err(PgDataError::Process(format!(
            "pid {pid} is not a PostgreSQL process (it is {:?})",
            if comm.is_empty() { "unknown" } else { &comm }
        )));
    }
    let cwd_link = proc_dir.join("cwd");
    let cwd = std::fs::read_link(&cwd_link).map_err(io_err(&cwd_link))?;
    let here = match fs_root {
        Some(r) => under_root(r, &cwd),
        None => cwd.clone(),
    };
    if !here.join("PG_VERSION").is_file() {
        return Err(PgDataError::Process(format!(
            "pid {pid} is a postgres process, but its working directory {} is not a data directory",
            cwd.display()
        )));
    }
    Ok(cwd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_a_containers_root() {
        let r = Path::new("/proc/7/root");
        assert_eq!(
            under_root(r, Path::new("/mnt/pgdata")),
            PathBuf::from("/proc/7/root/mnt/pgdata")
        );
        // A hostile path does not climb out of the container.
        assert_eq!(
            under_root(r, Path::new("/mnt/../../../etc/shadow")),
            PathBuf::from("/proc/7/root/etc/shadow")
        );
        assert_eq!(
            under_root(r, Path::new("relative/x")),
            PathBuf::from("/proc/7/root/relative/x")
        );
    }
}
