//! The files a process has open, from `/proc/PID/fd` and `fdinfo` (the lsof step), and the
//! inodes of its sockets. procfs's fd iterator opens, reads and stats each link (four
//! system calls apiece) and has no fdinfo parser, so the walk is done here: one readlink
//! per fd, and fdinfo read through the process's `/proc` handle.

use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenFile {
    pub fd: i32,
    pub path: PathBuf,
    /// The file position (`pos:` in fdinfo); what a plain read() continues from.
    pub pos: Option<u64>,
    /// open(2) flags, octal in fdinfo.
    pub flags: Option<u32>,
    /// The size of a regular file (None for a directory, or when it could not be read).
    pub size: Option<u64>,
}

/// Parse the `pos:` and `flags:` lines of `/proc/PID/fdinfo/FD`.
pub fn parse_fdinfo(text: &str) -> (Option<u64>, Option<u32>) {
    let mut pos = None;
    let mut flags = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("pos:") {
            pos = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("flags:") {
            flags = u32::from_str_radix(v.trim(), 8).ok();
        }
    }
    (pos, flags)
}

/// Each fd with what its link names (`/path`, `socket:[123]`, `pipe:[45]`, ...). The fd
/// may close between readdir and readlink: it is skipped then. Err when the directory
/// cannot be read (the process is gone, or we may not look).
fn fd_links(pid: i32) -> std::io::Result<Vec<(i32, PathBuf)>> {
    let dir = PathBuf::from(format!("/proc/{pid}/fd"));
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let Ok(entry) = entry else { continue };
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if let Ok(target) = std::fs::read_link(entry.path()) {
            out.push((fd, target));
        }
    }
    Ok(out)
}

/// Ok when the process's fds can be listed (it exists and we may look).
pub fn check_readable(pid: i32) -> std::io::Result<()> {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|_| ())
}

/// Regular files and directories only: sockets, pipes and anon inodes name no object.
pub fn open_files(pid: i32) -> std::io::Result<Vec<OpenFile>> {
    let links = fd_links(pid)?;
    let handle = crate::process::proc::open(pid);
    let mut text = String::new();
    let mut out = Vec::new();
    for (fd, path) in links {
        if !path.is_absolute() {
            continue; // socket:[...], pipe:[...], anon_inode:...
        }
        text.clear();
        let (pos, flags) = handle
            .as_ref()
            .and_then(|h| h.open_relative(format!("fdinfo/{fd}")).ok())
            .and_then(|f| f.take(4096).read_to_string(&mut text).ok())
            .map(|_| parse_fdinfo(&text))
            .unwrap_or((None, None));
        // Through the fd link: the file it has open, even if renamed or unlinked since.
        let size = std::fs::metadata(format!("/proc/{pid}/fd/{fd}"))
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len());
        out.push(OpenFile {
            fd,
            path,
            pos,
            flags,
            size,
        });
    }
    out.sort_by_key(|f| f.fd);
    Ok(out)
}

/// The inode of an fd link `socket:[12345]`.
pub fn socket_inode(link: &[u8]) -> Option<u64> {
    std::str::from_utf8(link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?)
        .ok()?
        .parse()
        .ok()
}

/// The inodes of the process's sockets, at most `max`; None when its fds are unreadable.
pub fn socket_inodes(pid: i32, max: usize) -> Option<Vec<u64>> {
    Some(
        fd_links(pid)
            .ok()?
            .iter()
            .filter_map(|(_, link)| socket_inode(link.as_os_str().as_bytes()))
            .take(max)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdinfo() {
        assert_eq!(
            parse_fdinfo("pos:\t8192\nflags:\t02100002\nmnt_id:\t25\n"),
            (Some(8192), Some(0o2100002))
        );
        assert_eq!(parse_fdinfo("garbage"), (None, None));
    }

    #[test]
    fn own_fds() {
        let tmp = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(tmp.path(), vec![0u8; 12345]).unwrap();
        let f = std::fs::File::open(tmp.path()).unwrap();
        let me = std::process::id() as i32;
        let files = open_files(me).unwrap();
        // The temp file's own fd is read-write; ours is O_RDONLY.
        let hit = files
            .iter()
            .find(|o| o.path == tmp.path() && o.flags.map(|f| f & 0o3) == Some(0))
            .unwrap();
        assert_eq!((hit.pos, hit.size), (Some(0), Some(12345)));
        drop(f);
        assert!(open_files(-1).is_err());
    }

    #[test]
    fn socket_links() {
        assert_eq!(socket_inode(b"socket:[123456]"), Some(123456));
        assert_eq!(socket_inode(b"pipe:[123456]"), None);
        assert_eq!(socket_inode(b"socket:[12"), None);
        assert_eq!(socket_inode(b"/tmp/socket:[1]"), None);
        let (_a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let me = std::process::id() as i32;
        assert!(socket_inodes(me, 64).is_some_and(|v| v.len() >= 2));
        assert_eq!(socket_inodes(-1, 64), None);
    }
}
