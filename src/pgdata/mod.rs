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
    pub root: PathBuf,
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
            major,
            control,
            layout,
        })
    }

    /// The data directory of a running postgres process: every postgres process keeps its
    /// working directory there.
    pub fn from_pid(pid: i32) -> Result<DataDir, PgDataError> {
        let root = locate_datadir(pid)?;
        DataDir::open(&root)
    }

    /// `PG_<major>_<catversion>`, the per-version directory inside every tablespace.
    /// The postmaster's pid, from the first line of `postmaster.pid` (read capped: a
    /// data directory is hostile input like any other).
    pub fn postmaster_pid(&self) -> Result<i32, PgDataError> {
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

/// Check that `pid` is a PostgreSQL server process and return its data directory.
pub fn locate_datadir(pid: i32) -> Result<PathBuf, PgDataError> {
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
    if !cwd.join("PG_VERSION").is_file() {
        return Err(PgDataError::Process(format!(
            "pid {pid} is a postgres process, but its working directory {} is not a data directory",
            cwd.display()
        )));
    }
    Ok(cwd)
}
