//! Opening the files of a data directory, which may be anything: a FIFO blocks an open or
//! a read forever, a device can have side effects, and a damaged file can be any size.
//! Only regular files are opened, read-only and non-blocking, and reads are capped.

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{io_err, PgDataError};

/// What a non-regular file is, for the error line.
fn kind_of(meta: &Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    Some(if t.is_file() {
        return None;
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_char_device() {
        "a character device"
    } else {
        "not a regular file"
    })
}

fn check_regular(path: &Path, meta: &Metadata) -> Result<(), PgDataError> {
    match kind_of(meta) {
        None => Ok(()),
        Some(kind) => Err(PgDataError::NotRegular {
            path: path.to_path_buf(),
            kind,
        }),
    }
}

/// Open a regular file for reading. The type is checked before the open (opening a
/// device can act on it) and again on the open file, since the path can be swapped in
/// between; O_NONBLOCK keeps a FIFO swapped in from blocking the open.
pub fn open_regular(path: &Path) -> Result<File, PgDataError> {
    if let Some((root, rest)) = split_proc_root(path) {
        match open_in_root(&root, rest, path) {
            // Kernels before 5.6 have no openat2: the plain open below is all there is.
            Err(PgDataError::Io { error, .. }) if error.raw_os_error() == Some(libc::ENOSYS) => {}
            other => return other,
        }
    }
    check_regular(path, &std::fs::metadata(path).map_err(io_err(path))?)?;
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io_err(path))?;
    check_regular(path, &f.metadata().map_err(io_err(path))?)?;
    Ok(f)
}

/// `/proc/PID/root/REST` split into the process's root and REST: a container's file as
/// the host reaches it.
fn split_proc_root(path: &Path) -> Option<(PathBuf, &Path)> {
    let rest = path.strip_prefix("/proc").ok()?;
    let mut parts = rest.components();
    let pid = parts.next()?.as_os_str().to_str()?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let root = Path::new("/proc").join(pid).join("root");
    let rest = path.strip_prefix(&root).ok()?;
    Some((root, rest))
}

/// Open REST inside a process's root the way that process would: through
/// `/proc/PID/root` the kernel resolves an absolute symlink from pg_trace's own root, so
/// a link planted in a container's data directory could make pg_trace read the host's
/// files. RESOLVE_IN_ROOT keeps every step inside the container. The path is opened as
/// O_PATH first so its type is checked before a real open (a device can act on an open),
/// then reopened through /proc/self/fd, which names that same inode.
fn open_in_root(root: &Path, rest: &Path, shown: &Path) -> Result<File, PgDataError> {
    use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(root)
        .map_err(io_err(shown))?;
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let located =
        File::from(openat2(&dir, rest, how).map_err(|e| io_err(shown)(std::io::Error::from(e)))?);
    check_regular(shown, &located.metadata().map_err(io_err(shown))?)?;
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(format!("/proc/self/fd/{}", located.as_raw_fd()))
        .map_err(io_err(shown))?;
    check_regular(shown, &f.metadata().map_err(io_err(shown))?)?;
    Ok(f)
}

/// The whole of a small regular file, or an error when it holds more than `max` bytes.
pub fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, PgDataError> {
    let f = open_regular(path)?;
    let mut buf = Vec::new();
    f.take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(io_err(path))?;
    if buf.len() as u64 > max {
        return Err(PgDataError::corrupt(
            path.display().to_string(),
            format!("larger than the {max} bytes it can be"),
        ));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_containers_absolute_link_stays_in_the_container() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!(
                "SKIPPED a_containers_absolute_link_stays_in_the_container: chroot needs root"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("inside.txt"), b"inside").unwrap();
        std::os::unix::fs::symlink("/inside.txt", dir.path().join("l")).unwrap();
        let c = std::ffi::CString::new(dir.path().to_str().unwrap()).unwrap();
        // SAFETY: the child only makes async-signal-safe calls (chroot, pause, _exit), as a
        // fork of a multi-threaded process must.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: c is a valid C string; pause and _exit have no preconditions.
            unsafe {
                if libc::chroot(c.as_ptr()) != 0 {
                    libc::_exit(1);
                }
                loop {
                    libc::pause();
                }
            }
        }
        // The child is in its root once /proc/PID/root no longer names ours.
        let root = PathBuf::from(format!("/proc/{pid}/root"));
        let mut tries = 0;
        while std::fs::read_link(&root)
            .map(|p| p == Path::new("/"))
            .unwrap_or(true)
            && tries < 500
        {
            std::thread::sleep(std::time::Duration::from_millis(2));
            tries += 1;
        }
        let got = read_capped(&root.join("l"), 64);
        // SAFETY: pid is our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        assert_eq!(got.unwrap(), b"inside");
    }

    #[test]
    fn refuses_fifo_directory_and_oversize() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: c is a valid NUL-terminated path for the duration of the call.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_capped(&fifo, 10).unwrap_err().to_string();
        assert!(e.ends_with("fifo: it is a FIFO, not a regular file"), "{e}");
        let e = read_capped(dir.path(), 10).unwrap_err().to_string();
        assert!(e.contains("it is a directory"), "{e}");
        let big = dir.path().join("big");
        std::fs::write(&big, [b'x'; 11]).unwrap();
        assert!(read_capped(&big, 10)
            .unwrap_err()
            .to_string()
            .ends_with("is corrupt: larger than the 10 bytes it can be"));
        assert_eq!(read_capped(&big, 11).unwrap().len(), 11);
    }
}
