//! Wait-event sampling: every backend's `PGPROC.wait_event_info`, state and query, read
//! many times a second: field by field from the segment mapped into pg_trace
//! ([`ShmView`]), else with one `process_vm_readv` per round for all of them, through
//! the process the [`StatusReader`] was opened on: shared memory is mapped at the same
//! address in every process of a cluster.
//!
//! What a sample counts as matches `pg_wait_sampling` (collector.c, `probe_waits` and
//! `pgws_should_sample_proc`): a live process whose `wait_event_info` is 0 is on CPU,
//! whatever its state; an idle backend waits in `Client:ClientRead`.

use super::layout::{OFF_ACTIVITY_START, OFF_CHANGECOUNT, OFF_PROCPID, OFF_STATE};
use super::shm_view::ShmView;
use super::{StatusReader, MAX_ACTIVITY};
use crate::process::memory::{MemError, Pid};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A wait event by name, as `pg_stat_activity` spells it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WaitEvent {
    pub class: String,
    pub name: String,
}

/// One process at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitSample {
    pub pid: Pid,
    /// None: on CPU (no wait event set).
    pub event: Option<Arc<WaitEvent>>,
    /// `pg_stat_activity.state` is `active`.
    pub active: bool,
    /// `st_query_id` (14+; 0 is "none").
    pub query_id: Option<i64>,
    /// The query text as the slot holds it (not normalised).
    pub query: Option<Arc<str>>,
    /// Nanoseconds the process has run on a CPU since it started (`/proc/PID/schedstat`,
    /// the same clock as utime+stime); only for the pids asked for.
    pub cpu_ns: Option<u64>,
}

/// All processes sampled at one instant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Round {
    /// Monotonic nanoseconds (`process::clock`).
    pub t_ns: u64,
    pub samples: Vec<WaitSample>,
}

/// Which processes: every one with a status slot, or these (the traced process and its
/// followers), whose CPU time is read too.
#[derive(Debug, Clone)]
pub enum Scope {
    Cluster,
    /// Shared with the owner, who adds followers as they come.
    Pids(Arc<std::sync::Mutex<Vec<Pid>>>),
}

struct Target {
    host: Pid,
    ns: Pid,
    slot_addr: u64,
    pgproc: u64,
    activity_ptr: u64,
    activity_start: i64,
    query: Option<Arc<str>>,
    schedstat: Option<File>,
    /// Mapped: the slot's change count, activity start, state and query id as last read.
    last: Option<(i32, i64, u32, i64)>,
}

/// Bytes of each target's query text read every round: enough for most statements; a
/// longer one is read whole once, when its start time changes.
const TEXT_PREFIX: usize = 256;
/// Neither span read per round may be larger (MaxBackends' 2^18 slots are never all in
/// use by the processes sampled).
const MAX_SPAN: usize = 16 << 20;

trait Late {
    fn is_none_or_late(&self, after: Duration) -> bool;
}

impl Late for Option<Duration> {
    /// Never done, or done at least `after` ago.
    fn is_none_or_late(&self, after: Duration) -> bool {
        !self.is_some_and(|d| d < after)
    }
}

/// Looked up for every sample: a fast hasher (keys are event numbers and query texts).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// One target's fields as read in one round.
struct Seen {
    cc: i32,
    start: i64,
    state: u32,
    query_id: i64,
    info: u32,
}

pub struct WaitSampler {
    reader: StatusReader,
    scope: Scope,
    targets: Vec<Target>,
    last_scan: Option<Instant>,
    names: HashMap<u32, Option<Arc<WaitEvent>>>,
    query_id_off: Option<usize>,
    pid_off: u64,
    wait_off: u64,
    texts: HashMap<Vec<u8>, Arc<str>>,
    /// The segment mapped here; None where the kernel refused (then `process_vm_readv`).
    view: Option<ShmView>,
    /// Kept from round to round: a round allocates nothing once they have grown.
    scratch: Scratch,
}

#[derive(Default)]
struct Scratch {
    buf: Vec<u8>,
    texts: Vec<u8>,
    seen: Vec<Option<Seen>>,
    changed: Vec<usize>,
    parts: Vec<(u64, usize)>,
    local: Vec<libc::iovec>,
    remote: Vec<libc::iovec>,
}

// SAFETY: the iovecs are only filled and used within one `readv` call, pointing into that
// call's buffer; between calls they hold stale addresses never dereferenced.
unsafe impl Send for Scratch {}

/// How often the status array is scanned again for new or gone processes.
const RESCAN: Duration = Duration::from_secs(1);

impl WaitSampler {
    pub fn new(reader: StatusReader, scope: Scope) -> Result<WaitSampler, MemError> {
        let row = crate::version::of(reader.major).ok_or_else(|| MemError::Layout {
            pid: reader.mem.pid,
            what: format!("PostgreSQL {} is not supported", reader.major),
        })?;
        let view = ShmView::open(reader.mem.pid, reader.segment.0, reader.segment.1);
        Ok(WaitSampler {
            query_id_off: row.query_id_offset,
            pid_off: row.pgproc.pid,
            wait_off: row.pgproc.wait_event_info,
            reader,
            scope,
            targets: Vec::new(),
            last_scan: None,
            names: HashMap::default(),
            texts: HashMap::default(),
            view,
            scratch: Scratch::default(),
        })
    }

    /// Find the processes now (symbols, PGPROCs: the slow part), so that the first
    /// round comes on time.
    pub fn prime(&mut self) -> Result<(), MemError> {
        self.scan()
    }

    pub fn major(&self) -> u32 {
        self.reader.major
    }

    /// How many processes the last round sampled.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    fn in_segment(&self, addr: u64, len: u64) -> bool {
        let (a, b) = self.reader.segment;
        addr >= a && addr.checked_add(len).is_some_and(|e| e <= b)
    }

    /// Find the processes to sample: their status slot and their PGPROC.
    fn scan(&mut self) -> Result<(), MemError> {
        self.last_scan = Some(Instant::now());
        if self.view.as_ref().is_some_and(|v| !v.valid()) {
            // The server exited or made a new segment: back to its own mappings.
            self.view = None;
        }
        let entries = self.reader.slots_in_use(self.view.as_ref())?;
        let mut old: HashMap<Pid, Target> = self.targets.drain(..).map(|t| (t.ns, t)).collect();
        let want: Option<Vec<Pid>> = match &self.scope {
            Scope::Cluster => None,
            Scope::Pids(p) => Some(p.lock().map(|v| v.clone()).unwrap_or_default()),
        };
        for e in entries {
            let Some(host) = self.reader.host_of(e.pid) else {
                continue;
            };
            if want.as_ref().is_some_and(|w| !w.contains(&host)) {
                continue;
            }
            let slot_addr = self.reader.array + (e.slot * self.reader.entry_size) as u64;
            if let Some(mut t) = old.remove(&e.pid) {
                if t.host == host && t.slot_addr == slot_addr {
                    t.activity_ptr = e.activity_ptr;
                    self.targets.push(t);
                    continue;
                }
            }
            // A process without a PGPROC (or gone since) is not sampled.
            let Ok((_, Some(pgproc))) = self.reader.wait_and_proc(host) else {
                continue;
            };
            if !self.in_segment(pgproc, self.wait_off + 4) {
                continue;
            }
            let schedstat = want
                .is_some()
                .then(|| File::open(format!("/proc/{host}/schedstat")).ok())
                .flatten();
            self.targets.push(Target {
                host,
                ns: e.pid,
                slot_addr,
                pgproc,
                activity_ptr: e.activity_ptr,
                activity_start: i64::MIN,
                query: None,
                schedstat,
                last: None,
            });
        }
        Ok(())
    }

    fn name(&mut self, info: u32, pid: Pid) -> Option<Arc<WaitEvent>> {
        if let Some(n) = self.names.get(&info) {
            return n.clone();
        }
        let mut s = super::StatusSample {
            pid,
            major: self.reader.major,
            ..Default::default()
        };
        super::set_wait(&mut s, Some(info));
        self.reader.name_lwlock(&mut s, pid);
        let n = match (s.wait_event_type, s.wait_event) {
            (Some(class), Some(name)) => Some(Arc::new(WaitEvent { class, name })),
            _ => None,
        };
        // Hostile memory could show any number: the cache stays bounded.
        if self.names.len() < 4096 {
            self.names.insert(info, n.clone());
        }
        n
    }

    /// Read `parts` (remote address, length) into consecutive ranges of `buf`: from the
    /// mapped segment when all of them lie in it, else in one `process_vm_readv` per 1024
    /// parts. False when not all was read (a mapping gone).
    fn readv(
        &self,
        parts: &[(u64, usize)],
        buf: &mut Vec<u8>,
        local: &mut Vec<libc::iovec>,
        remote: &mut Vec<libc::iovec>,
    ) -> Result<bool, MemError> {
        let total: usize = parts.iter().map(|p| p.1).sum();
        buf.resize(total, 0);
        if let Some(v) = &self.view {
            let mut off = 0;
            let mut all = true;
            for &(addr, len) in parts {
                all &= v.read(addr, &mut buf[off..off + len]);
                off += len;
            }
            if all {
                return Ok(true);
            }
        }
        let base = buf.as_mut_ptr();
        local.clear();
        remote.clear();
        let mut off = 0;
        for &(addr, len) in parts {
            // SAFETY: `off + len <= total == buf.len()`: each part has its own range of
            // the buffer, which is not touched until the calls below return.
            local.push(libc::iovec {
                iov_base: unsafe { base.add(off) } as *mut libc::c_void,
                iov_len: len,
            });
            remote.push(libc::iovec {
                iov_base: addr as *mut libc::c_void,
                iov_len: len,
            });
            off += len;
        }
        let mut done = 0usize;
        let mut at = 0usize;
        while at < local.len() {
            // The kernel takes at most IOV_MAX (1024) vectors per call.
            let n = (local.len() - at).min(1024);
            // SAFETY: every local vector points into `buf` (sized above); the remote
            // ones are only read by the kernel, which checks them against the target's
            // mappings.
            let r = unsafe {
                libc::process_vm_readv(
                    self.reader.mem.pid,
                    local.as_ptr().add(at),
                    n as libc::c_ulong,
                    remote.as_ptr().add(at),
                    n as libc::c_ulong,
                    0,
                )
            };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ESRCH) {
                    return Err(MemError::Gone(self.reader.mem.pid));
                }
                return Err(MemError::Read {
                    pid: self.reader.mem.pid,
                    addr: remote[at].iov_base as u64,
                    len: remote[at].iov_len,
                    why: e.to_string(),
                });
            }
            done += r as usize;
            at += n;
        }
        Ok(done == total)
    }

    /// One round into `out` (its samples replaced): every target's wait event, state,
    /// query id and query. With the segment mapped, field by field; else the status slots
    /// and the PGPROCs are each read as one span (the processes of a cluster sit side by
    /// side in both arrays: page by page is cheaper than field by field in system calls).
    /// A query text only when its start time changed, checked against the slot's change
    /// count.
    pub fn sample(&mut self, t_ns: u64, out: &mut Round) -> Result<(), MemError> {
        // A follower just added (a parallel worker lives for one query) is looked for at
        // once, not at the next periodic scan.
        let asked_for_new = match &self.scope {
            Scope::Pids(p) => p.lock().is_ok_and(|p| {
                p.iter()
                    .any(|pid| !self.targets.iter().any(|t| t.host == *pid))
            }),
            Scope::Cluster => false,
        };
        let since = self.last_scan.map(|t| t.elapsed());
        if since.is_none_or_late(RESCAN) || (asked_for_new && since.is_none_or_late(RESCAN / 10)) {
            self.scan()?;
        }
        out.t_ns = t_ns;
        out.samples.clear();
        if self.targets.is_empty() {
            return Ok(());
        }
        let mut sc = std::mem::take(&mut self.scratch);
        let r = self.sample_with(&mut sc, out);
        self.scratch = sc;
        r
    }

    fn sample_with(&mut self, sc: &mut Scratch, out: &mut Round) -> Result<(), MemError> {
        sc.seen.clear();
        let rescan = match &self.view {
            Some(v) => {
                let (qid_off, pid_off, wait_off) = (self.query_id_off, self.pid_off, self.wait_off);
                let mut rescan = false;
                for t in &mut self.targets {
                    let s = seen_mapped(v, t, qid_off, pid_off, wait_off);
                    rescan |= s.is_none();
                    sc.seen.push(s);
                }
                rescan
            }
            None => match self.seen_by_spans(sc)? {
                Some(rescan) => rescan,
                None => {
                    self.last_scan = None;
                    return Ok(());
                }
            },
        };
        // Texts of the queries that changed, and each slot's change count again: a text
        // is kept only when the count did not move and is even.
        sc.changed.clear();
        sc.changed.extend(
            sc.seen
                .iter()
                .enumerate()
                .filter(|(i, s)| {
                    s.as_ref().is_some_and(|s| {
                        s.cc & 1 == 0 && s.start != self.targets[*i].activity_start
                    })
                })
                .map(|(i, _)| i),
        );
        sc.parts.clear();
        let (seg_lo, seg_hi) = self.reader.segment;
        let text_ok = move |t: &Target| {
            t.activity_ptr != 0
                && t.activity_ptr >= seg_lo
                && t.activity_ptr
                    .checked_add(TEXT_PREFIX as u64)
                    .is_some_and(|e| e <= seg_hi)
        };
        for &i in &sc.changed {
            let t = &self.targets[i];
            if text_ok(t) {
                sc.parts.push((t.activity_ptr, TEXT_PREFIX));
            }
            sc.parts.push((t.slot_addr + OFF_CHANGECOUNT as u64, 4));
        }
        let texts_ok = sc.changed.is_empty()
            || self.readv(&sc.parts, &mut sc.texts, &mut sc.local, &mut sc.remote)?;
        let mut at = 0;
        for &i in &sc.changed {
            let ok = text_ok(&self.targets[i]);
            let prefix = if ok {
                at += TEXT_PREFIX;
                sc.texts.get(at - TEXT_PREFIX..at)
            } else {
                None
            };
            let cc_after = u32_at(&sc.texts, at) as i32;
            at += 4;
            let Some(s) = &sc.seen[i] else { continue };
            if !texts_ok || cc_after != s.cc {
                // Torn: asked again next round.
                continue;
            }
            let (start, ptr) = (s.start, self.targets[i].activity_ptr);
            let query = prefix.and_then(|p| self.query_text(p, ptr));
            let t = &mut self.targets[i];
            t.activity_start = start;
            t.query = query;
        }
        for (i, s) in sc.seen.drain(..).enumerate() {
            let Some(s) = s else { continue };
            let host = self.targets[i].host;
            let active = crate::process::status::layout::state_name(self.reader.major, s.state)
                == Some("active");
            let cpu_ns = self.targets[i].schedstat.as_ref().and_then(read_schedstat);
            let event = if s.info == 0 {
                None
            } else {
                self.name(s.info, host)
            };
            out.samples.push(WaitSample {
                pid: host,
                event,
                active,
                query_id: self
                    .query_id_off
                    .filter(|_| s.query_id != 0)
                    .map(|_| s.query_id),
                query: self.targets[i].query.clone(),
                cpu_ns,
            });
        }
        if rescan {
            self.last_scan = None;
        }
        Ok(())
    }

    /// Every target's fields from the status slots and the PGPROCs each read as one span
    /// (without the mapped segment: page by page is cheaper than field by field in
    /// system calls). Some(whether a target is gone), or None when not all was read.
    fn seen_by_spans(&mut self, sc: &mut Scratch) -> Result<Option<bool>, MemError> {
        let es = self.reader.entry_size as u64;
        let slot_lo = self.targets.iter().map(|t| t.slot_addr).min().unwrap_or(0);
        let slot_hi = self
            .targets
            .iter()
            .map(|t| t.slot_addr + es)
            .max()
            .unwrap_or(0);
        let proc_lo = self.targets.iter().map(|t| t.pgproc).min().unwrap_or(0);
        let proc_hi = self
            .targets
            .iter()
            .map(|t| t.pgproc + self.wait_off + 4)
            .max()
            .unwrap_or(0);
        let slots_len = (slot_hi - slot_lo) as usize;
        let procs_len = (proc_hi - proc_lo) as usize;
        if slots_len > MAX_SPAN || procs_len > MAX_SPAN {
            return Err(MemError::Layout {
                pid: self.reader.mem.pid,
                what: "status slots or PGPROCs spread over more than 16 MB".into(),
            });
        }
        let complete = self.readv(
            &[(slot_lo, slots_len), (proc_lo, procs_len)],
            &mut sc.buf,
            &mut sc.local,
            &mut sc.remote,
        )?;
        if !complete {
            return Ok(None);
        }
        let (slots, procs) = sc.buf.split_at(slots_len);
        let mut rescan = false;
        for t in &self.targets {
            let so = (t.slot_addr - slot_lo) as usize;
            let po = (t.pgproc - proc_lo) as usize;
            let slot_pid = u32_at(slots, so + OFF_PROCPID) as i32;
            let proc_pid = u32_at(procs, po + self.pid_off as usize) as i32;
            if slot_pid != t.ns || proc_pid != t.ns {
                // Exited (its slot cleared or reused): gone from the next round.
                rescan = true;
                sc.seen.push(None);
                continue;
            }
            sc.seen.push(Some(Seen {
                cc: u32_at(slots, so + OFF_CHANGECOUNT) as i32,
                start: i64_at(slots, so + OFF_ACTIVITY_START),
                state: u32_at(slots, so + OFF_STATE),
                query_id: self.query_id_off.map_or(0, |q| i64_at(slots, so + q)),
                info: u32_at(procs, po + self.wait_off as usize),
            }));
        }
        Ok(Some(rescan))
    }

    /// The query text from its prefix, or read whole when longer; one `Arc` per distinct
    /// text (bounded cache).
    fn query_text(&mut self, prefix: &[u8], ptr: u64) -> Option<Arc<str>> {
        let whole;
        let bytes: &[u8] = match prefix.iter().position(|&c| c == 0) {
            Some(n) => &prefix[..n],
            None => {
                let len = self.reader.activity_size.min(MAX_ACTIVITY);
                let v = self.reader.mem.read_vec(ptr, len).ok()?;
                let n = v.iter().position(|&c| c == 0).unwrap_or(v.len());
                whole = v;
                &whole[..n]
            }
        };
        if bytes.is_empty() {
            return None;
        }
        // Looked up by the borrowed bytes: a text seen before costs no allocation.
        if let Some(t) = self.texts.get(bytes) {
            return Some(Arc::clone(t));
        }
        let t: Arc<str> = String::from_utf8_lossy(bytes).into();
        if self.texts.len() >= 10_000 {
            self.texts.clear();
        }
        self.texts.insert(bytes.to_vec(), Arc::clone(&t));
        Some(t)
    }
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    b.get(o..o + 4)
        .map_or(0, |v| u32::from_ne_bytes(v.try_into().unwrap_or([0; 4])))
}

fn i64_at(b: &[u8], o: usize) -> i64 {
    b.get(o..o + 8)
        .map_or(0, |v| i64::from_ne_bytes(v.try_into().unwrap_or([0; 8])))
}

/// One target's fields from the mapped segment; None when it is gone (its slot cleared or
/// taken by another process, its PGPROC another's).
///
/// The state, activity start and query id change only between the two increments of the
/// slot's change count (`PGSTAT_BEGIN_WRITE_ACTIVITY`): while the count has not moved
/// since the last round they are taken from then, and a round costs each backend two
/// loads, one cache line of its slot and the one of its `wait_event_info`. The PGPROC's
/// pid is checked again whenever the slot changed (a backend keeps its PGPROC for life,
/// and clears its slot before it gives the PGPROC back).
fn seen_mapped(
    v: &ShmView,
    t: &mut Target,
    qid_off: Option<usize>,
    pid_off: u64,
    wait_off: u64,
) -> Option<Seen> {
    let mut head = [0u8; 8];
    if !v.read(t.slot_addr + OFF_CHANGECOUNT as u64, &mut head) {
        return None;
    }
    let cc = u32_at(&head, OFF_CHANGECOUNT) as i32;
    if u32_at(&head, OFF_PROCPID) as i32 != t.ns {
        return None;
    }
    let fields = match t.last {
        Some(l) if l.0 == cc && cc & 1 == 0 => l,
        _ => {
            let (mut start, mut state, mut qid, mut pid) = ([0u8; 8], [0u8; 4], [0u8; 8], [0u8; 4]);
            let ok = v.read(t.slot_addr + OFF_ACTIVITY_START as u64, &mut start)
                && v.read(t.slot_addr + OFF_STATE as u64, &mut state)
                && match qid_off {
                    Some(q) => v.read(t.slot_addr + q as u64, &mut qid),
                    None => true,
                }
                && v.read(t.pgproc + pid_off, &mut pid);
            if !ok || u32_at(&pid, 0) as i32 != t.ns {
                return None;
            }
            let l = (
                cc,
                i64_at(&start, 0),
                u32_at(&state, 0),
                qid_off.map_or(0, |_| i64_at(&qid, 0)),
            );
            t.last = Some(l);
            l
        }
    };
    let mut info = [0u8; 4];
    if !v.read(t.pgproc + wait_off, &mut info) {
        return None;
    }
    Some(Seen {
        cc,
        start: fields.1,
        state: fields.2,
        query_id: fields.3,
        info: u32_at(&info, 0),
    })
}

/// The first field of `/proc/PID/schedstat`: nanoseconds on a CPU.
fn read_schedstat(f: &File) -> Option<u64> {
    let mut b = [0u8; 64];
    let n = f.read_at(&mut b, 0).ok()?;
    let s = std::str::from_utf8(&b[..n]).ok()?;
    s.split_ascii_whitespace().next()?.parse().ok()
}

/// Sample `scope` at `hz` on a thread of its own, until `stop`; rounds go to `tx`.
pub fn spawn(
    sampler: WaitSampler,
    hz: f64,
    stop: Arc<std::sync::atomic::AtomicBool>,
    tx: std::sync::mpsc::Sender<Round>,
) -> std::io::Result<std::thread::JoinHandle<Option<String>>> {
    spawn_with(sampler, hz, stop, move |r| {
        tx.send(std::mem::take(r)).is_ok()
    })
}

/// Sample at `hz` on a thread of its own, until `stop` or until `sink` says no more; each
/// round goes to `sink`, which may fold it where it is taken (no round shipped to another
/// thread, the round's buffers reused) or take it away.
pub fn spawn_with(
    mut sampler: WaitSampler,
    hz: f64,
    stop: Arc<std::sync::atomic::AtomicBool>,
    mut sink: impl FnMut(&mut Round) -> bool + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<Option<String>>> {
    std::thread::Builder::new()
        .name("wait-sampler".into())
        .spawn(move || {
            use std::sync::atomic::Ordering;
            let period = Duration::from_secs_f64(1.0 / hz.clamp(1.0, 1000.0));
            let start = Instant::now();
            let mut n: u32 = 0;
            let mut round = Round::default();
            while !stop.load(Ordering::Relaxed) {
                let t = crate::process::clock::monotonic_ns();
                if let Err(e) = sampler.sample(t, &mut round) {
                    return Some(e.to_string());
                }
                if !sink(&mut round) {
                    return None;
                }
                // On a fixed grid from the start, so a slow round does not shift the rest;
                // rounds missed while late are skipped, as pg_wait_sampling does.
                n = n.saturating_add(1);
                let mut next = start + period * n;
                let now = Instant::now();
                while next <= now {
                    n = n.saturating_add(1);
                    next = start + period * n;
                }
                std::thread::sleep(next - now);
            }
            None
        })
}
