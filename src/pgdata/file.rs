//! Opening the files of a data directory, which may be anything: a FIFO blocks an open or
//! a read forever, a device can have side effects, and a damaged file can be any size.
//! Only regular files are opened, read-only and non-blocking, and reads are capped.

use std::fs::{File, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

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
    check_regular(path, &std::fs::metadata(path).map_err(io_err(path))?)?;
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io_err(path))?;
    check_regular(path, &f.metadata().map_err(io_err(path))?)?;
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
