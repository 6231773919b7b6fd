//! The files a process has open, from `/proc/PID/fd` and `fdinfo` (the lsof step).

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenFile {
    pub fd: i32,
    pub path: PathBuf,
    /// The file position (`pos:` in fdinfo); what a plain read() continues from.
    pub pos: Option<u64>,
    /// open(2) flags, octal in fdinfo.
    pub flags: Option<u32>,
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

/// Regular files and directories only: sockets, pipes and anon inodes name no object.
pub fn open_files(pid: i32) -> std::io::Result<Vec<OpenFile>> {
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
        // The fd may close between readdir and readlink: skip it then.
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if !target.is_absolute() {
            continue; // socket:[...], pipe:[...], anon_inode:...
        }
        let (pos, flags) = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
            .map(|t| parse_fdinfo(&t))
            .unwrap_or((None, None));
        out.push(OpenFile {
            fd,
            path: target,
            pos,
            flags,
        });
    }
    out.sort_by_key(|f| f.fd);
    Ok(out)
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
        let f = std::fs::File::open("/proc/self/status").unwrap();
        let me = std::process::id() as i32;
        let files = open_files(me).unwrap();
        assert!(files.iter().any(|o| o.path.ends_with("status")));
        drop(f);
    }
}
