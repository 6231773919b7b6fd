//! A recording that exists only in memory, read by the replay that plays behind a ring
//! (ring mode's state at the start of its window). Frames are laid out as a file would
//! hold them, so the replay reads it as it reads a file; the ring lets a frame go into it
//! when the frame leaves the window, and drops its bytes once played: it holds no more
//! than the frames not yet played.

use super::format::{self, Frame, FrameInfo, FRAME_MAGIC};
use anyhow::Result;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Chunks {
    /// Byte ranges by their offset: the header, then the frames not yet dropped.
    at: BTreeMap<u64, Vec<u8>>,
    end: u64,
}

/// The writing side.
pub struct MemFile {
    shared: Arc<Mutex<Chunks>>,
}

/// The reading side: a [`format::Source`] over the bytes still held.
pub struct MemReader {
    shared: Arc<Mutex<Chunks>>,
    pos: u64,
}

impl MemFile {
    /// A file holding `header` (the recording's JSON header) and no frame yet.
    pub fn new(header: &[u8]) -> Result<(MemFile, MemReader)> {
        let head = format::header_bytes(header)?;
        let mut c = Chunks {
            end: head.len() as u64,
            ..Default::default()
        };
        c.at.insert(0, head);
        let shared = Arc::new(Mutex::new(c));
        let reader = MemReader {
            shared: Arc::clone(&shared),
            pos: 0,
        };
        Ok((MemFile { shared }, reader))
    }

    /// Append a frame, as a file writer would.
    pub fn frame(&self, f: &Frame) -> Result<FrameInfo> {
        let mut buf = Vec::with_capacity(format::FRAME_HEADER_LEN + f.payload.len());
        f.write_to(&mut buf, FRAME_MAGIC)?;
        let mut c = self.lock();
        let offset = c.end;
        c.end += buf.len() as u64;
        c.at.insert(offset, buf);
        Ok(FrameInfo {
            offset,
            first_at: f.first_at,
            last_at: f.last_at,
            items: f.items,
            cont: false,
        })
    }

    /// Forget every frame appended so far (all played).
    pub fn drop_frames(&self) {
        self.lock().at.retain(|&o, _| o == 0);
    }

    /// Bytes held (the header and the frames not yet dropped).
    pub fn held(&self) -> usize {
        self.lock().at.values().map(Vec::len).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Chunks> {
        // A panic while holding it leaves plain bytes: still usable.
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Read for MemReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let c = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let Some((&start, bytes)) = c.at.range(..=self.pos).next_back() else {
            return Ok(0);
        };
        let Some(from) = usize::try_from(self.pos - start)
            .ok()
            .filter(|&i| i < bytes.len())
        else {
            // Dropped, or past the end: as a file cut there.
            return Ok(0);
        };
        let n = buf.len().min(bytes.len() - from);
        buf[..n].copy_from_slice(&bytes[from..from + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for MemReader {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let end = self.shared.lock().unwrap_or_else(|e| e.into_inner()).end;
        let pos = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => end.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the start")
        })?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Read as a file: the header opens, an appended frame reads back, a dropped one is
    /// gone without an error from the source (the reader then says the frame is damaged).
    #[test]
    fn reads_as_a_file_and_forgets_played_frames() {
        let (m, mut r) = MemFile::new(br#"{"x":1}"#).unwrap();
        let o = format::open(&mut r).unwrap();
        assert_eq!(o.header, br#"{"x":1}"#);
        assert!(o.frames.is_empty());
        let f = Frame::items(5, 6, 1, b"{\"t\":\"finish\",\"at\":6}\n", &[]).unwrap();
        let info = m.frame(&f).unwrap();
        let mut dec = None;
        let read = format::read_frame_with(&mut r, &[info], 0, &mut dec, o.version).unwrap();
        assert_eq!(read.raw, b"{\"t\":\"finish\",\"at\":6}\n");
        let before = m.held();
        m.drop_frames();
        assert!(m.held() < before);
        assert!(format::read_frame_with(&mut r, &[info], 0, &mut None, o.version).is_err());
    }
}
