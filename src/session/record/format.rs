//! The recording file (docs/recording.md): a header, then zstd frames, each behind a
//! small frame header with its time range, then, when the recorder closed cleanly, an
//! index of the frames and a trailer pointing at it. A file cut anywhere
//! (SIGKILL, a full disk, a partial copy) reads up to its last whole frame; without the
//! trailer the index is rebuilt by walking the frame headers.
//!
//! Everything read is hostile: lengths are bounded before anything is allocated, every
//! frame carries a CRC32C, a frame decompresses to at most [`MAX_FRAME_BYTES`].

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

pub const MAGIC: &[u8; 8] = b"PGTRREC\0";
/// The format's version: a reader refuses a newer one, with its number. 2: a batch's
/// events as arrays (`events.rs`); 1's objects are still read. 3: replay checkpoints
/// stored between the frames (`PTCK`), listed in the index. 4: an event-sparse stretch of
/// frames is one zstd stream flushed at each frame (`PTFC` continues the frame before),
/// restarted after each stored checkpoint. 5: a frame's event times apart from its items
/// (`times.rs`: its payload is the u32 length of its times, the times, then the items'
/// zstd), relation files' names in few words (`names::RelEntry`), the header and the
/// index compressed.
pub const VERSION: u32 = 5;
/// The first version whose frames keep their times apart, and whose header and index are
/// compressed.
pub const TIMES_VERSION: u32 = 5;
/// The oldest version read.
pub const OLDEST_VERSION: u32 = 1;
pub const FRAME_MAGIC: &[u8; 4] = b"PTFR";
/// A frame whose payload continues the zstd stream of the frame before it (format 4): it
/// decodes only after the frames back to the last `PTFR`.
pub const CONT_MAGIC: &[u8; 4] = b"PTFC";
pub const INDEX_MAGIC: &[u8; 4] = b"PTIX";
/// A replay's state, stored to seek without playing from the start (`checkpoints.rs`).
pub const CHECKPOINT_MAGIC: &[u8; 4] = b"PTCK";
/// A stored checkpoint compressed against an earlier whole one (format 4): its payload is
/// the u64 offset of that `PTCK`, then a zstd frame whose dictionary is that checkpoint's
/// bytes. A replay's state changes little in ten seconds: this is a fraction of a whole one.
pub const CHECKPOINT_DELTA_MAGIC: &[u8; 4] = b"PTCD";
pub const TRAILER_MAGIC: &[u8; 8] = b"PTEND\0\0\0";
/// magic, payload length, first and last time, items, CRC32C of the payload.
pub const FRAME_HEADER_LEN: usize = 4 + 4 + 8 + 8 + 4 + 4;
/// A frame's items, uncompressed, at most this: the writer cuts frames well below.
pub const MAX_FRAME_BYTES: usize = 64 << 20;
/// The header's JSON, at most this.
const MAX_HEADER_BYTES: u32 = 1 << 20;
/// zstd's level: 3 is its default, fast enough to keep up with a busy backend.
pub const LEVEL: i32 = 3;
/// A frame of less than this (a second of an event-sparse session) is compressed at
/// [`SPARSE_LEVEL`] and continues the stream of the frame before: level 9 runs at ~150 MB/s
/// (a few ms a second here) and, with the context kept, cut a throttled backup's frames
/// by a third (docs/overhead.md).
pub const SPARSE_BYTES: usize = 1 << 20;
pub const SPARSE_LEVEL: i32 = 9;
/// A stream is restarted past this much input or this many frames: a seek into it
/// decodes from its start.
const STREAM_MAX_BYTES: usize = 64 << 20;
const STREAM_MAX_FRAMES: u32 = 64;

/// Where a frame is and what time it covers (ns on the session's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrameInfo {
    pub offset: u64,
    pub first_at: u64,
    pub last_at: u64,
    pub items: u32,
    /// It continues the zstd stream of the frame before (`PTFC`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cont: bool,
}

/// One entry of the index: a frame, or a stored checkpoint (format 3).
#[derive(Serialize, Deserialize)]
struct IndexEntry {
    #[serde(flatten)]
    f: FrameInfo,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    checkpoint: bool,
}

/// A frame's items (NDJSON) as read, and, from format 5 on, the times of their events
/// (which the items' events then do not carry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameItems {
    pub raw: Vec<u8>,
    pub times: Option<Vec<u64>>,
}

/// A compressed frame ready to be written (or kept in a ring).
#[derive(Debug, Clone)]
pub struct Frame {
    pub first_at: u64,
    pub last_at: u64,
    pub items: u32,
    pub payload: Vec<u8>,
    /// It continues the stream of the frame written before it.
    pub cont: bool,
}

fn level_for(raw: &[u8]) -> i32 {
    if raw.len() < SPARSE_BYTES {
        SPARSE_LEVEL
    } else {
        LEVEL
    }
}

/// A format 5 frame's payload: the u32 length of its times, the times, the items' zstd.
fn items_payload(times: &[u64], level: i32, z: &[u8]) -> Result<Vec<u8>> {
    let t = super::times::encode(times, level)?;
    let len = u32::try_from(t.len()).context("too many events in a frame")?;
    let mut payload = Vec::with_capacity(4 + t.len() + z.len());
    payload.extend_from_slice(&len.to_le_bytes());
    payload.extend_from_slice(&t);
    payload.extend_from_slice(z);
    Ok(payload)
}

/// A payload's times and items' zstd (formats before 5: no times).
fn split_payload(payload: &[u8], version: u32) -> Result<(&[u8], &[u8])> {
    if version < TIMES_VERSION {
        return Ok((&[], payload));
    }
    let (len, rest) = payload
        .split_first_chunk::<4>()
        .context("a damaged recording: a frame without its times")?;
    let len = u32::from_le_bytes(*len) as usize;
    if len > rest.len() {
        bail!("a damaged recording: a frame's times are cut");
    }
    Ok(rest.split_at(len))
}

impl Frame {
    /// A format 5 frame standing alone (a ring's): its items (NDJSON lines) and the times
    /// of their batches' events, in order.
    pub fn items(
        first_at: u64,
        last_at: u64,
        items: u32,
        raw: &[u8],
        times: &[u64],
    ) -> Result<Frame> {
        let level = level_for(raw);
        let z = zstd::bulk::compress(raw, level).context("compressing a frame")?;
        Ok(Frame {
            first_at,
            last_at,
            items,
            payload: items_payload(times, level, &z)?,
            cont: false,
        })
    }

    /// Bytes compressed as one zstd frame: a stored checkpoint, or a frame of items as
    /// formats 1 to 4 wrote it.
    pub fn compress(first_at: u64, last_at: u64, items: u32, raw: &[u8]) -> Result<Frame> {
        let payload = zstd::bulk::compress(raw, level_for(raw)).context("compressing a frame")?;
        Ok(Frame {
            first_at,
            last_at,
            items,
            payload,
            cont: false,
        })
    }

    pub fn write_to(&self, w: &mut impl Write, magic: &[u8; 4]) -> std::io::Result<u64> {
        let len = u32::try_from(self.payload.len()).unwrap_or(u32::MAX);
        let mut h = Vec::with_capacity(FRAME_HEADER_LEN);
        h.extend_from_slice(magic);
        h.extend_from_slice(&len.to_le_bytes());
        h.extend_from_slice(&self.first_at.to_le_bytes());
        h.extend_from_slice(&self.last_at.to_le_bytes());
        h.extend_from_slice(&self.items.to_le_bytes());
        h.extend_from_slice(&crc32c::crc32c(&self.payload).to_le_bytes());
        w.write_all(&h)?;
        w.write_all(&self.payload)?;
        Ok((FRAME_HEADER_LEN + self.payload.len()) as u64)
    }

    /// The items back, bounded (a frame that starts no stream: `cont` false).
    pub fn decompress(payload: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let d = zstd::stream::read::Decoder::new(payload).context("a damaged frame")?;
        d.take(MAX_FRAME_BYTES as u64 + 1)
            .read_to_end(&mut out)
            .context("a damaged frame")?;
        if out.len() > MAX_FRAME_BYTES {
            bail!("a frame larger than {MAX_FRAME_BYTES} bytes: not a pg_trace recording");
        }
        Ok(out)
    }
}

/// A recorder's frames: event-sparse ones as one zstd stream flushed at each frame, so
/// that a frame's names and events compress against the seconds before it; others (a busy
/// scan's, already megabytes) each on its own. Every flushed frame decodes, given the
/// frames of its stream before it: a recorder killed leaves whole frames.
#[derive(Default)]
pub struct Streamer {
    enc: Option<zstd::stream::write::Encoder<'static, Vec<u8>>>,
    bytes: usize,
    frames: u32,
}

impl Streamer {
    /// A frame of items (NDJSON lines) and the times of their batches' events, in order.
    pub fn compress(
        &mut self,
        first_at: u64,
        last_at: u64,
        items: u32,
        raw: &[u8],
        times: &[u64],
    ) -> Result<Frame> {
        if raw.len() >= SPARSE_BYTES {
            self.restart();
            return Frame::items(first_at, last_at, items, raw, times);
        }
        if self.bytes + raw.len() > STREAM_MAX_BYTES || self.frames >= STREAM_MAX_FRAMES {
            self.restart();
        }
        let cont = self.enc.is_some();
        let enc = match &mut self.enc {
            Some(e) => e,
            None => self.enc.insert(
                zstd::stream::write::Encoder::new(Vec::new(), SPARSE_LEVEL)
                    .context("compressing a frame")?,
            ),
        };
        let r = enc.write_all(raw).and_then(|()| enc.flush());
        let z = std::mem::take(enc.get_mut());
        if let Err(e) = r {
            self.restart();
            return Err(anyhow::Error::new(e).context("compressing a frame"));
        }
        self.bytes += raw.len();
        self.frames += 1;
        Ok(Frame {
            first_at,
            last_at,
            items,
            payload: items_payload(times, SPARSE_LEVEL, &z)?,
            cont,
        })
    }

    /// The next frame starts a new stream (after a stored checkpoint: a seek there decodes
    /// nothing before it).
    pub fn restart(&mut self) {
        self.enc = None;
        self.bytes = 0;
        self.frames = 0;
    }
}

/// Decodes frames that may continue a stream, in file order: a reader keeps one and feeds
/// it the frames from the stream's start.
pub struct StreamDecoder {
    dec: zstd::stream::raw::Decoder<'static>,
    /// The index of the frame it expects next.
    pub next: usize,
}

impl StreamDecoder {
    pub fn new(next: usize) -> Result<StreamDecoder> {
        Ok(StreamDecoder {
            dec: zstd::stream::raw::Decoder::new().context("a zstd decoder")?,
            next,
        })
    }

    /// The next frame's payload decoded, bounded by [`MAX_FRAME_BYTES`].
    pub fn feed(&mut self, payload: &[u8]) -> Result<Vec<u8>> {
        use zstd::stream::raw::{InBuffer, Operation, OutBuffer};
        // Straight into the result's spare room, grown as it fills: no copy through a
        // buffer of our own.
        let mut out: Vec<u8> = Vec::with_capacity((payload.len() * 8).clamp(64 << 10, 8 << 20));
        let mut input = InBuffer::around(payload);
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.len());
            }
            let room = out.capacity() - out.len();
            let before = out.len();
            let mut o = OutBuffer::around_pos(&mut out, before);
            self.dec
                .run(&mut input, &mut o)
                .context("a damaged frame")?;
            let written = o.pos() - before;
            if out.len() > MAX_FRAME_BYTES {
                bail!("a frame larger than {MAX_FRAME_BYTES} bytes: not a pg_trace recording");
            }
            // Room left over: everything the input gave is out.
            if input.pos() == payload.len() && written < room {
                break;
            }
        }
        self.next += 1;
        Ok(out)
    }
}

/// Writes the file: header at once, frames as they come, index and trailer at the end.
pub struct FileWriter {
    file: File,
    version: u32,
    pos: u64,
    index: Vec<FrameInfo>,
    checkpoints: Vec<FrameInfo>,
}

impl FileWriter {
    /// `force`: overwrite an existing file; otherwise an existing file is an error.
    pub fn create(path: &std::path::Path, force: bool, header: &[u8]) -> Result<FileWriter> {
        FileWriter::create_as(path, force, header, VERSION)
    }

    /// A file of an older `version` (tests and benches: the frames given must be of it).
    pub fn create_as(
        path: &std::path::Path,
        force: bool,
        header: &[u8],
        version: u32,
    ) -> Result<FileWriter> {
        if !(OLDEST_VERSION..=VERSION).contains(&version) {
            bail!("no recording format {version}");
        }
        let mut o = std::fs::OpenOptions::new();
        o.write(true);
        if force {
            o.create(true).truncate(true);
        } else {
            o.create_new(true);
        }
        let file = o.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow::anyhow!("{} exists: use --force to overwrite it", path.display())
            } else {
                anyhow::Error::new(e).context(format!("cannot create {}", path.display()))
            }
        })?;
        let mut w = FileWriter {
            file,
            version,
            pos: 0,
            index: Vec::new(),
            checkpoints: Vec::new(),
        };
        let head = header_bytes_as(header, version)?;
        w.file.write_all(&head)?;
        w.pos = head.len() as u64;
        Ok(w)
    }

    /// One frame, written through to the kernel: a recorder killed after this leaves it.
    pub fn frame(&mut self, f: &Frame) -> Result<FrameInfo> {
        let magic = if f.cont { CONT_MAGIC } else { FRAME_MAGIC };
        let info = self.write(f, magic)?;
        self.index.push(info);
        Ok(info)
    }

    /// A stored checkpoint (`items`: the frame it resumes in; `cont`: against an earlier one).
    pub fn checkpoint(&mut self, f: &Frame) -> Result<FrameInfo> {
        let magic = if f.cont {
            CHECKPOINT_DELTA_MAGIC
        } else {
            CHECKPOINT_MAGIC
        };
        let info = self.write(f, magic)?;
        self.checkpoints.push(info);
        Ok(info)
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    fn write(&mut self, f: &Frame, magic: &[u8; 4]) -> Result<FrameInfo> {
        let offset = self.pos;
        // One write of header and payload: a kill leaves at most one cut frame at the end.
        let mut buf = Vec::with_capacity(FRAME_HEADER_LEN + f.payload.len());
        f.write_to(&mut buf, magic)?;
        self.file.write_all(&buf).context("writing the recording")?;
        self.pos += buf.len() as u64;
        Ok(FrameInfo {
            offset,
            first_at: f.first_at,
            last_at: f.last_at,
            items: f.items,
            cont: f.cont,
        })
    }

    /// The index and the trailer: a reader then seeks without walking the file.
    pub fn close(mut self) -> Result<()> {
        let mut entries: Vec<IndexEntry> = (self.index.iter().map(|&f| IndexEntry {
            f,
            checkpoint: false,
        }))
        .chain(self.checkpoints.iter().map(|&f| IndexEntry {
            f,
            checkpoint: true,
        }))
        .collect();
        entries.sort_by_key(|e| e.f.offset);
        let mut json = serde_json::to_vec(&entries)?;
        if self.version >= TIMES_VERSION {
            json = zstd::bulk::compress(&json, LEVEL).context("compressing the index")?;
        }
        let (first, last) = (
            self.index.first().map_or(0, |f| f.first_at),
            self.index.last().map_or(0, |f| f.last_at),
        );
        let ix = Frame {
            first_at: first,
            last_at: last,
            items: self.index.len() as u32,
            payload: json,
            cont: false,
        };
        let offset = self.pos;
        let mut buf = Vec::new();
        ix.write_to(&mut buf, INDEX_MAGIC)?;
        buf.extend_from_slice(&offset.to_le_bytes());
        buf.extend_from_slice(TRAILER_MAGIC);
        self.file.write_all(&buf)?;
        self.file.sync_all().context("writing the recording")?;
        Ok(())
    }
}

pub(super) fn header_bytes(header: &[u8]) -> Result<Vec<u8>> {
    header_bytes_as(header, VERSION)
}

/// The header's JSON is compressed at this level (format 5): it is written once.
const HEADER_LEVEL: i32 = 19;

fn header_bytes_as(json: &[u8], version: u32) -> Result<Vec<u8>> {
    if json.len() > MAX_HEADER_BYTES as usize {
        bail!("recording header too large");
    }
    let z;
    let header = if version >= TIMES_VERSION {
        z = zstd::bulk::compress(json, HEADER_LEVEL).context("compressing the header")?;
        &z[..]
    } else {
        json
    };
    let len = u32::try_from(header.len())
        .ok()
        .filter(|&l| l <= MAX_HEADER_BYTES)
        .context("recording header too large")?;
    let mut v = Vec::with_capacity(header.len() + 20);
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&version.to_le_bytes());
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(header);
    v.extend_from_slice(&crc32c::crc32c(header).to_le_bytes());
    Ok(v)
}

/// What opening a recording found.
#[derive(Debug)]
pub struct Opened {
    /// Its format's version.
    pub version: u32,
    /// The header's JSON.
    pub header: Vec<u8>,
    pub frames: Vec<FrameInfo>,
    /// Stored checkpoints (format 3), in file order.
    pub checkpoints: Vec<FrameInfo>,
    /// Why the frames end before the file does (cut, damaged), when they do.
    pub cut: Option<String>,
}

/// Any `Read + Seek`: a file, or bytes in tests.
pub trait Source: Read + Seek {}
impl<T: Read + Seek> Source for T {}

fn read_exact_at(src: &mut dyn Source, at: u64, buf: &mut [u8]) -> std::io::Result<()> {
    src.seek(SeekFrom::Start(at))?;
    src.read_exact(buf)
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[i..i + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(a)
}

struct RawHeader {
    magic: [u8; 4],
    len: u32,
    first_at: u64,
    last_at: u64,
    items: u32,
    crc: u32,
}

fn frame_header(b: &[u8; FRAME_HEADER_LEN]) -> RawHeader {
    let mut magic = [0u8; 4];
    magic.copy_from_slice(&b[0..4]);
    RawHeader {
        magic,
        len: u32_at(b, 4),
        first_at: u64_at(b, 8),
        last_at: u64_at(b, 16),
        items: u32_at(b, 24),
        crc: u32_at(b, 28),
    }
}

/// Open a recording: its header, and its frames from the trailer's index, or by walking
/// the frame headers when there is no (valid) trailer.
pub fn open(src: &mut dyn Source) -> Result<Opened> {
    let size = src.seek(SeekFrom::End(0))?;
    let mut fixed = [0u8; 16];
    read_exact_at(src, 0, &mut fixed).context("not a pg_trace recording (too short)")?;
    if &fixed[..8] != MAGIC {
        bail!("not a pg_trace recording (no PGTRREC magic)");
    }
    let version = u32_at(&fixed, 8);
    if !(OLDEST_VERSION..=VERSION).contains(&version) {
        bail!(
            "recording format {version}: this pg_trace reads formats {OLDEST_VERSION} to {VERSION}"
        );
    }
    let len = u32_at(&fixed, 12);
    if len > MAX_HEADER_BYTES || 16 + u64::from(len) + 4 > size {
        bail!("a damaged recording: its header is cut");
    }
    let mut header = vec![0u8; len as usize + 4];
    src.read_exact(&mut header)?;
    let crc = u32_at(&header, len as usize);
    header.truncate(len as usize);
    if crc32c::crc32c(&header) != crc {
        bail!("a damaged recording: its header's checksum does not match");
    }
    if version >= TIMES_VERSION {
        header = decompress_bounded(&header, MAX_HEADER_BYTES as usize)
            .context("a damaged recording: its header does not decompress")?;
    }
    let start = 16 + u64::from(len) + 4;
    if let Some((frames, checkpoints)) = trailer_index(src, size, start, version) {
        return Ok(Opened {
            version,
            header,
            frames,
            checkpoints,
            cut: None,
        });
    }
    let (frames, checkpoints, cut) = walk(src, size, start)?;
    Ok(Opened {
        version,
        header,
        frames,
        checkpoints,
        cut,
    })
}

/// `payload` decompressed, at most `max` bytes.
fn decompress_bounded(payload: &[u8], max: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(payload)?
        .take(max as u64 + 1)
        .read_to_end(&mut out)?;
    if out.len() > max {
        bail!("larger than {max} bytes");
    }
    Ok(out)
}

/// The index the trailer points at, if it is whole and agrees with the file.
fn trailer_index(
    src: &mut dyn Source,
    size: u64,
    start: u64,
    version: u32,
) -> Option<(Vec<FrameInfo>, Vec<FrameInfo>)> {
    if size < start + 16 + FRAME_HEADER_LEN as u64 {
        return None;
    }
    let mut t = [0u8; 16];
    read_exact_at(src, size - 16, &mut t).ok()?;
    if &t[8..] != TRAILER_MAGIC {
        return None;
    }
    let at = u64_at(&t, 0);
    if at < start || at + FRAME_HEADER_LEN as u64 > size - 16 {
        return None;
    }
    let mut h = [0u8; FRAME_HEADER_LEN];
    read_exact_at(src, at, &mut h).ok()?;
    let h = frame_header(&h);
    if &h.magic != INDEX_MAGIC || at + FRAME_HEADER_LEN as u64 + u64::from(h.len) != size - 16 {
        return None;
    }
    let mut payload = vec![0u8; h.len as usize];
    src.read_exact(&mut payload).ok()?;
    if crc32c::crc32c(&payload) != h.crc {
        return None;
    }
    if version >= TIMES_VERSION {
        // An entry is a few dozen bytes of JSON for a frame of at least a frame header.
        let max = usize::try_from(size.saturating_mul(8)).unwrap_or(usize::MAX);
        payload = decompress_bounded(&payload, max.max(4096)).ok()?;
    }
    let entries: Vec<IndexEntry> = serde_json::from_slice(&payload).ok()?;
    // Each entry must point at a frame header inside the file, in order.
    let mut prev = start;
    let (mut frames, mut checkpoints) = (Vec::new(), Vec::new());
    for e in entries {
        let f = e.f;
        if f.offset < prev || f.offset + FRAME_HEADER_LEN as u64 > at {
            return None;
        }
        prev = f.offset + FRAME_HEADER_LEN as u64;
        if e.checkpoint {
            checkpoints.push(f);
        } else {
            frames.push(f);
        }
    }
    Some((frames, checkpoints))
}

type Walked = (Vec<FrameInfo>, Vec<FrameInfo>, Option<String>);

/// Walk the frame headers from `start`: every whole frame and stored checkpoint, and why
/// the walk stopped early, if it did.
fn walk(src: &mut dyn Source, size: u64, start: u64) -> Result<Walked> {
    let mut frames = Vec::new();
    let mut checkpoints = Vec::new();
    let mut at = start;
    loop {
        if at == size {
            return Ok((frames, checkpoints, None));
        }
        if at + FRAME_HEADER_LEN as u64 > size {
            return Ok((
                frames,
                checkpoints,
                Some(format!("cut at byte {at} (in a frame header)")),
            ));
        }
        let mut h = [0u8; FRAME_HEADER_LEN];
        read_exact_at(src, at, &mut h)?;
        let h = frame_header(&h);
        if &h.magic == INDEX_MAGIC {
            // The index with no whole trailer after it: every frame is before it.
            return Ok((frames, checkpoints, None));
        }
        if ![
            FRAME_MAGIC,
            CONT_MAGIC,
            CHECKPOINT_MAGIC,
            CHECKPOINT_DELTA_MAGIC,
        ]
        .contains(&&h.magic)
        {
            return Ok((
                frames,
                checkpoints,
                Some(format!("damaged at byte {at} (no frame there)")),
            ));
        }
        let end = at + FRAME_HEADER_LEN as u64 + u64::from(h.len);
        if end > size {
            return Ok((
                frames,
                checkpoints,
                Some(format!("cut at byte {at} (in a frame)")),
            ));
        }
        let info = FrameInfo {
            offset: at,
            first_at: h.first_at,
            last_at: h.last_at,
            items: h.items,
            cont: &h.magic == CONT_MAGIC || &h.magic == CHECKPOINT_DELTA_MAGIC,
        };
        if &h.magic == CHECKPOINT_MAGIC || &h.magic == CHECKPOINT_DELTA_MAGIC {
            checkpoints.push(info);
        } else {
            frames.push(info);
        }
        at = end;
    }
}

/// One frame's items (NDJSON), checked against its CRC: a frame of formats 1 to 3 (one
/// that starts no stream and has no times apart). [`read_frame_with`] reads any.
pub fn read_frame(src: &mut dyn Source, f: &FrameInfo) -> Result<Vec<u8>> {
    if f.cont {
        bail!(
            "a damaged recording: the frame at byte {} continues a stream",
            f.offset
        );
    }
    Frame::decompress(&read_compressed(src, f)?)
}

/// A frame's compressed payload, checked against its CRC.
pub fn read_compressed(src: &mut dyn Source, f: &FrameInfo) -> Result<Vec<u8>> {
    read_raw(src, f, if f.cont { CONT_MAGIC } else { FRAME_MAGIC })
}

/// Frame `i` of `frames` of a file of format `version`, decoded with `dec`, the decoder
/// of the frames read before it: it goes on when `i` is the frame it expects, else starts
/// again at the start of `i`'s stream and decodes the frames up to it.
pub fn read_frame_with(
    src: &mut dyn Source,
    frames: &[FrameInfo],
    i: usize,
    dec: &mut Option<StreamDecoder>,
    version: u32,
) -> Result<FrameItems> {
    let f = frames.get(i).context("no such frame")?;
    let decode = |d: &mut StreamDecoder, payload: &[u8]| -> Result<FrameItems> {
        let (times, z) = split_payload(payload, version)?;
        let raw = d.feed(z)?;
        let times = (version >= TIMES_VERSION)
            // An event is more than a few bytes of its frame's items: a hostile count
            // allocates at most a few times what the items did.
            .then(|| super::times::decode(times, raw.len() / 2 + 16))
            .transpose()?;
        Ok(FrameItems { raw, times })
    };
    if !f.cont {
        *dec = None;
        let mut d = StreamDecoder::new(i)?;
        let out = decode(&mut d, &read_compressed(src, f)?)?;
        *dec = Some(d);
        return Ok(out);
    }
    if dec.as_ref().map_or(true, |d| d.next != i) {
        let start = frames[..i].iter().rposition(|f| !f.cont).with_context(|| {
            format!(
                "a damaged recording: no stream start before byte {}",
                f.offset
            )
        })?;
        *dec = None;
        let mut d = StreamDecoder::new(start)?;
        for g in &frames[start..i] {
            let payload = read_compressed(src, g)?;
            d.feed(split_payload(&payload, version)?.1)?;
        }
        *dec = Some(d);
    }
    let d = dec.as_mut().expect("set above");
    match read_compressed(src, f).and_then(|p| decode(d, &p)) {
        Ok(out) => Ok(out),
        Err(e) => {
            *dec = None;
            Err(e)
        }
    }
}

/// A stored checkpoint's bytes, checked against its CRC.
pub fn read_checkpoint(src: &mut dyn Source, f: &FrameInfo) -> Result<Vec<u8>> {
    if !f.cont {
        return Frame::decompress(&read_raw(src, f, CHECKPOINT_MAGIC)?);
    }
    let payload = read_raw(src, f, CHECKPOINT_DELTA_MAGIC)?;
    let (base_at, delta) = payload
        .split_first_chunk::<8>()
        .context("a damaged recording: a checkpoint without its base")?;
    let base_at = u64::from_le_bytes(*base_at);
    if base_at >= f.offset {
        bail!(
            "a damaged recording: the checkpoint at byte {} refers forward",
            f.offset
        );
    }
    let base = FrameInfo {
        offset: base_at,
        first_at: 0,
        last_at: 0,
        items: 0,
        cont: false,
    };
    // A whole checkpoint (the magic is checked): no chain to follow.
    let dict = Frame::decompress(&read_raw(src, &base, CHECKPOINT_MAGIC)?)?;
    decompress_with(delta, &dict)
}

/// A checkpoint's bytes compressed against `base`'s (the whole one it refers to).
pub fn compress_with(raw: &[u8], base: &[u8]) -> Result<Vec<u8>> {
    zstd::bulk::Compressor::with_dictionary(LEVEL, base)
        .and_then(|mut c| c.compress(raw))
        .context("compressing a checkpoint")
}

fn decompress_with(payload: &[u8], base: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let d = zstd::stream::read::Decoder::with_dictionary(payload, base)
        .context("a damaged checkpoint")?;
    d.take(MAX_FRAME_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .context("a damaged checkpoint")?;
    if out.len() > MAX_FRAME_BYTES {
        bail!("a checkpoint larger than {MAX_FRAME_BYTES} bytes: not a pg_trace recording");
    }
    Ok(out)
}

fn read_raw(src: &mut dyn Source, f: &FrameInfo, magic: &[u8; 4]) -> Result<Vec<u8>> {
    let mut h = [0u8; FRAME_HEADER_LEN];
    read_exact_at(src, f.offset, &mut h).context("reading a frame")?;
    let h = frame_header(&h);
    if &h.magic != magic {
        bail!("a damaged recording: no frame at byte {}", f.offset);
    }
    // Bounded before allocating: compressed is never larger than the cap.
    if h.len as usize > MAX_FRAME_BYTES {
        bail!("a damaged recording: frame at byte {} too large", f.offset);
    }
    let mut payload = vec![0u8; h.len as usize];
    src.read_exact(&mut payload)
        .with_context(|| format!("a recording cut in the frame at byte {}", f.offset))?;
    if crc32c::crc32c(&payload) != h.crc {
        bail!(
            "a damaged recording: the frame at byte {} fails its checksum",
            f.offset
        );
    }
    Ok(payload)
}

/// The frame holding time `at` (the last one starting at or before it).
pub fn frame_at(frames: &[FrameInfo], at: u64) -> usize {
    frames
        .partition_point(|f| f.first_at <= at)
        .saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn file(frames: &[(u64, u64, &[u8])], trailer: bool) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.pgtrace");
        let mut w = FileWriter::create(&p, false, b"{\"h\":1}").unwrap();
        for (a, b, raw) in frames {
            w.frame(&Frame::items(*a, *b, 1, raw, &[*a, *b]).unwrap())
                .unwrap();
        }
        if trailer {
            w.close().unwrap();
        }
        std::fs::read(&p).unwrap()
    }

    #[test]
    fn frames_come_back_with_and_without_the_trailer() {
        let frames: &[(u64, u64, &[u8])] = &[(1, 5, b"a\n"), (6, 9, b"b\n"), (10, 20, b"c\n")];
        for trailer in [true, false] {
            let bytes = file(frames, trailer);
            let mut c = Cursor::new(bytes);
            let o = open(&mut c).unwrap();
            assert_eq!(o.header, b"{\"h\":1}");
            assert_eq!(o.frames.len(), 3);
            assert!(o.cut.is_none());
            assert_eq!(o.version, VERSION);
            let back = read_frame_with(&mut c, &o.frames, 1, &mut None, o.version).unwrap();
            assert_eq!(back.raw, b"b\n");
            assert_eq!(back.times, Some(vec![6, 9]));
            assert_eq!(frame_at(&o.frames, 7), 1);
            assert_eq!(frame_at(&o.frames, 0), 0);
            assert_eq!(frame_at(&o.frames, 99), 2);
        }
    }

    #[test]
    fn an_existing_file_is_not_overwritten_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.pgtrace");
        std::fs::write(&p, b"keep").unwrap();
        let e = FileWriter::create(&p, false, b"{}").err().unwrap();
        assert!(format!("{e:#}").contains("--force"), "{e:#}");
        assert_eq!(std::fs::read(&p).unwrap(), b"keep");
        FileWriter::create(&p, true, b"{}").unwrap();
    }

    /// Frames of one stream come back in order, after a jump back or forward (decoded
    /// again from the stream's start), and a cut file keeps its whole ones.
    #[test]
    fn streamed_frames_come_back_from_anywhere() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.pgtrace");
        let mut w = FileWriter::create(&p, false, b"{}").unwrap();
        let mut st = Streamer::default();
        let raws: Vec<Vec<u8>> = (0..6u64)
            .map(|i| {
                format!("{{\"t\":\"finish\",\"at\":{i}}}\n")
                    .repeat(50)
                    .into_bytes()
            })
            .collect();
        for (i, raw) in raws.iter().enumerate() {
            if i == 3 {
                st.restart();
            }
            let at = i as u64;
            w.frame(&st.compress(at, at, 50, raw, &[at; 3]).unwrap())
                .unwrap();
        }
        w.close().unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let mut c = Cursor::new(bytes.clone());
        let o = open(&mut c).unwrap();
        let conts: Vec<bool> = o.frames.iter().map(|f| f.cont).collect();
        assert_eq!(conts, [false, true, true, false, true, true]);
        let mut dec = None;
        for i in [0, 1, 2, 5, 1, 4, 3, 2] {
            let back = read_frame_with(&mut c, &o.frames, i, &mut dec, VERSION).unwrap();
            assert_eq!(back.raw, raws[i]);
            assert_eq!(back.times, Some(vec![i as u64; 3]));
        }
        assert!(read_frame(&mut c, &o.frames[1]).is_err());
        for cut in 0..bytes.len() {
            let mut c = Cursor::new(bytes[..cut].to_vec());
            if let Ok(o) = open(&mut c) {
                let mut dec = None;
                for (i, raw) in raws.iter().enumerate().take(o.frames.len()) {
                    let back = read_frame_with(&mut c, &o.frames, i, &mut dec, VERSION);
                    assert_eq!(&back.unwrap().raw, raw);
                }
            }
        }
    }

    /// A checkpoint stored against a whole one reads back through it; one pointing at
    /// anything but a whole checkpoint before it is an error.
    #[test]
    fn checkpoints_against_a_whole_one_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.pgtrace");
        let mut w = FileWriter::create(&p, false, b"{}").unwrap();
        let whole = b"state of the replay, mostly the same".repeat(20);
        let next = [&whole[..], b" and a little more"].concat();
        let f = w
            .frame(&Frame::items(1, 1, 1, b"x\n", &[]).unwrap())
            .unwrap();
        let base = w
            .checkpoint(&Frame::compress(1, 1, 1, &whole).unwrap())
            .unwrap();
        let delta = |at: u64| {
            let mut payload = at.to_le_bytes().to_vec();
            payload.extend_from_slice(&compress_with(&next, &whole).unwrap());
            Frame {
                first_at: 2,
                last_at: 2,
                items: 1,
                payload,
                cont: true,
            }
        };
        let good = w.checkpoint(&delta(base.offset)).unwrap();
        let bad = w.checkpoint(&delta(f.offset)).unwrap();
        w.close().unwrap();
        let mut c = Cursor::new(std::fs::read(&p).unwrap());
        let o = open(&mut c).unwrap();
        assert_eq!(o.checkpoints, [base, good, bad]);
        assert!(good.cont && !base.cont);
        assert_eq!(read_checkpoint(&mut c, &good).unwrap(), next);
        assert!(good.offset > base.offset);
        assert!(read_checkpoint(&mut c, &bad).is_err());
        let forward = FrameInfo {
            offset: base.offset,
            ..good
        };
        assert!(read_checkpoint(&mut c, &forward).is_err());
    }

    #[test]
    fn a_cut_file_keeps_its_whole_frames() {
        let bytes = file(&[(1, 5, b"a\n"), (6, 9, b"b\n")], true);
        for cut in 0..bytes.len() {
            let mut c = Cursor::new(bytes[..cut].to_vec());
            if let Ok(o) = open(&mut c) {
                for i in 0..o.frames.len() {
                    read_frame_with(&mut c, &o.frames, i, &mut None, o.version).unwrap();
                }
            }
        }
    }

    /// A format 4 file (its header and index as they are, frames without times apart)
    /// reads as it did; and format 5's header and index are compressed.
    #[test]
    fn older_formats_read_as_they_did() {
        let dir = tempfile::tempdir().unwrap();
        let header = br#"{"h":"a header of some length, a header of some length"}"#;
        for version in [4, 5] {
            let p = dir.path().join(format!("v{version}.pgtrace"));
            let mut w = FileWriter::create_as(&p, false, header, version).unwrap();
            let f = if version == 4 {
                Frame::compress(1, 2, 1, b"a\n").unwrap()
            } else {
                Frame::items(1, 2, 1, b"a\n", &[7]).unwrap()
            };
            w.frame(&f).unwrap();
            w.close().unwrap();
            let bytes = std::fs::read(&p).unwrap();
            assert_eq!(u32_at(&bytes, 8), version);
            let json_in_file = bytes.windows(header.len()).any(|w| w == header);
            assert_eq!(json_in_file, version == 4);
            let mut c = Cursor::new(bytes);
            let o = open(&mut c).unwrap();
            assert_eq!(
                (o.version, &o.header[..], o.frames.len()),
                (version, &header[..], 1)
            );
            let back = read_frame_with(&mut c, &o.frames, 0, &mut None, o.version).unwrap();
            assert_eq!(back.raw, b"a\n");
            assert_eq!(back.times, (version == 5).then(|| vec![7]));
        }
        assert!(FileWriter::create_as(&dir.path().join("v6"), false, b"{}", 6).is_err());
    }
}
