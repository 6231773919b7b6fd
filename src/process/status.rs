//! A backend's own status, read from shared memory without a connection: the
//! `PgBackendStatus` slot (type, state, query, database, progress counters) found through
//! the ShmemIndex, and the wait event from the process's `PGPROC`. Pure decoders over
//! byte slices; [`StatusReader`] is the thin I/O shell.

pub mod kernel;
pub mod layout;
pub mod locks;
pub mod sampler;
pub mod shm_view;
pub mod wait_names;
pub mod waits;

use crate::process::memory::{self, MemError, Pid, ProcMem, Symbols};
use layout::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// One decoded `PgBackendStatus` slot, before its pointers are followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    pub slot: usize,
    pub changecount: i32,
    pub pid: i32,
    pub backend_type: u32,
    pub proc_start_us: i64,
    pub xact_start_us: i64,
    pub activity_start_us: i64,
    pub state_start_us: i64,
    pub database: u32,
    pub user: u32,
    pub state: u32,
    pub appname_ptr: u64,
    pub activity_ptr: u64,
    pub progress_command: u32,
    pub progress_target: u32,
    pub progress_params: [i64; NUM_PROGRESS_PARAM],
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn i64_at(b: &[u8], off: usize) -> Option<i64> {
    Some(i64::from_ne_bytes(b.get(off..off + 8)?.try_into().ok()?))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Decode one slot; None when `b` is too short. Values are not trusted: names are looked
/// up by value later and unknown ones are shown as numbers.
pub fn decode_entry(b: &[u8], slot: usize) -> Option<RawEntry> {
    let mut params = [0i64; NUM_PROGRESS_PARAM];
    for (i, p) in params.iter_mut().enumerate() {
        *p = i64_at(b, OFF_PROGRESS_PARAM + 8 * i)?;
    }
    Some(RawEntry {
        slot,
        changecount: u32_at(b, OFF_CHANGECOUNT)? as i32,
        pid: u32_at(b, OFF_PROCPID)? as i32,
        backend_type: u32_at(b, OFF_BACKEND_TYPE)?,
        proc_start_us: i64_at(b, OFF_PROC_START)?,
        xact_start_us: i64_at(b, OFF_XACT_START)?,
        activity_start_us: i64_at(b, OFF_ACTIVITY_START)?,
        state_start_us: i64_at(b, OFF_STATE_START)?,
        database: u32_at(b, OFF_DATABASE)?,
        user: u32_at(b, OFF_USER)?,
        state: u32_at(b, OFF_STATE)?,
        appname_ptr: u64_at(b, OFF_APPNAME)?,
        activity_ptr: u64_at(b, OFF_ACTIVITY_RAW)?,
        progress_command: u32_at(b, OFF_PROGRESS_COMMAND)?,
        progress_target: u32_at(b, OFF_PROGRESS_TARGET)?,
        progress_params: params,
    })
}

/// What one sample says about one process: everything the stall verdict and the status
/// and backup records need, so that a recording replays them. Names, not numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusSample {
    pub pid: Pid,
    pub major: u32,
    /// Why memory could not be read this time (the rest of the sample still holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub backend_type: Option<String>,
    pub state: Option<String>,
    pub database_oid: Option<u32>,
    /// Named from the catalog by whoever has one (the session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    pub query: Option<String>,
    pub wait_event_type: Option<String>,
    pub wait_event: Option<String>,
    pub wait_event_raw: Option<u32>,
    /// Microseconds since 2000-01-01 (PostgreSQL's epoch).
    pub xact_start_us: Option<i64>,
    pub state_start_us: Option<i64>,
    /// `vacuum`, `analyze`, `cluster`, `create_index`, `basebackup`, `copy`.
    pub progress_command: Option<String>,
    pub progress_target: Option<u32>,
    pub progress_params: Vec<i64>,
    /// Other processes of the cluster with an open transaction (who may hold the lock a
    /// waiting backend wants), when it waits on a lock.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open_xacts: Vec<Pid>,
    /// The relation a lock wait is for, and who holds the lock, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_relation_oid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_relation: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lock_holders: Vec<Pid>,
    /// `application_name` (`st_appname`): who the client says it is (`pg_dump`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_name: Option<String>,
    /// The process title (`/proc/PID/cmdline`): "sending backup ..." for a walsender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// A walsender's replication state (`process::walsender`), read beside the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub walsender: Option<crate::process::walsender::WalSenderSample>,
    /// When the sample was taken, Unix microseconds (ages of the timestamps above).
    pub sampled_at_us: i64,
    pub kernel: kernel::KernelState,
}

/// Unix time now in microseconds.
pub fn unix_now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
pub const PG_EPOCH_UNIX_US: i64 = 946_684_800_000_000;

impl StatusSample {
    /// Seconds from a PostgreSQL timestamp to when the sample was taken.
    pub fn age_s(&self, pg_us: i64) -> f64 {
        // Both come from process memory: saturate rather than overflow on garbage.
        let at = PG_EPOCH_UNIX_US.saturating_add(pg_us);
        (self.sampled_at_us.saturating_sub(at) as f64 / 1e6).max(0.0)
    }
}

/// Where the status array lives in one cluster, and how to read it.
pub struct StatusReader {
    pub major: u32,
    entry_size: usize,
    mem: ProcMem,
    array: u64,
    slots: usize,
    activity_size: usize,
    symbols: HashMap<(u64, u64), Arc<Symbols>>,
    slot_of: HashMap<Pid, usize>,
    /// The main shared memory segment, [start, end): pointers outside it are refused.
    segment: (u64, u64),
    /// Individual LWLock names, read once from the server binary's memory.
    lwlock_names: Option<Vec<String>>,
    /// A server in a container: its memory holds the pids of its own namespace, mapped
    /// here to the host's (re-read when a pid is missing, at most once a second).
    pids: Option<(crate::process::ns::PidMap, Pid, std::time::Instant)>,
}

/// No cluster has more than this many status slots (MaxBackends is capped at 2^18-1).
const MAX_SLOTS: usize = 1 << 18;
/// track_activity_query_size's maximum is 1 MB.
const MAX_ACTIVITY: usize = 1 << 20;

impl StatusReader {
    /// Find the status array through the ShmemIndex as `pid` (the postmaster or any
    /// child of it) maps it.
    pub fn open(pid: Pid, major: u32) -> Result<StatusReader, MemError> {
        let entry_size = entry_size(major).ok_or_else(|| MemError::Layout {
            pid,
            what: format!("PostgreSQL {major} is not supported for memory reading"),
        })?;
        let mem = ProcMem::open(pid)?;
        let maps = memory::maps(pid)?;
        let (array, size) = memory::shmem_index_lookup(&mem, &maps, "Backend Status Array")?;
        let slots = (size as usize / entry_size).min(MAX_SLOTS);
        if slots == 0 || size as usize % entry_size != 0 {
            return Err(MemError::Layout {
                pid,
                what: format!(
                    "the backend status array is {size} bytes, not a multiple of {entry_size}: \
                     wrong PostgreSQL version?"
                ),
            });
        }
        let segment = maps
            .iter()
            .find(|m| m.contains(array, size))
            .map(|m| (m.start, m.end))
            .unwrap_or((array, array + size));
        let activity_size = memory::shmem_index_lookup(&mem, &maps, "Backend Activity Buffer")
            .map(|(_, s)| (s as usize / slots).clamp(1, MAX_ACTIVITY))
            .unwrap_or(1024);
        Ok(StatusReader {
            major,
            entry_size,
            mem,
            array,
            slots,
            activity_size,
            symbols: HashMap::new(),
            slot_of: HashMap::new(),
            segment,
            pids: crate::process::ns::PidMap::of(pid).map(|m| (m, pid, std::time::Instant::now())),
            lwlock_names: None,
        })
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    /// One slot and its query text, consistent: copy, then re-read `st_changecount`, and
    /// accept only an even, unchanged count (`pgstat_begin_read_activity`). None when it
    /// never settles.
    fn read_slot(&self, slot: usize) -> Result<Option<(RawEntry, Option<String>)>, MemError> {
        let addr = self.array + (slot * self.entry_size) as u64;
        for _ in 0..100 {
            let buf = self.mem.read_vec(addr, self.entry_size)?;
            let Some(e) = decode_entry(&buf, slot) else {
                return Ok(None);
            };
            if e.changecount & 1 != 0 {
                std::thread::yield_now();
                continue;
            }
            let query = if e.pid > 0 && e.activity_ptr != 0 {
                self.mem.read_cstr(e.activity_ptr, self.activity_size).ok()
            } else {
                None
            };
            let after = self.mem.read_u32(addr)? as i32;
            if after == e.changecount {
                return Ok(Some((e, query)));
            }
            std::thread::yield_now();
        }
        // Still torn after many tries (its owner died mid-update?): skip the slot rather
        // than fail the whole listing.
        Ok(None)
    }

    /// Every slot in use.
    pub fn entries(&mut self) -> Result<Vec<(RawEntry, Option<String>)>, MemError> {
        let mut out = Vec::new();
        for slot in 0..self.slots {
            if let Some((e, q)) = self.read_slot(slot)? {
                if e.pid > 0 {
                    self.slot_of.insert(e.pid, slot);
                    out.push((e, q));
                }
            }
        }
        Ok(out)
    }

    /// Every slot in use, without its query text (the wait sampler's rescan, once a
    /// second): the whole array copied twice, from the mapped segment when there is one,
    /// else one read each; a slot is taken from the first copy when its change count is
    /// even and the same in both. Any other slot (being written just then) is read on its
    /// own as [`Self::entries`] reads it. `entries` costs three reads per slot in use and
    /// copies every query text.
    pub fn slots_in_use(
        &mut self,
        view: Option<&shm_view::ShmView>,
    ) -> Result<Vec<RawEntry>, MemError> {
        let len = self.slots * self.entry_size;
        let copy = |me: &Self| -> Result<Vec<u8>, MemError> {
            let mut buf = vec![0u8; len];
            if view.is_some_and(|v| v.read(me.array, &mut buf)) {
                return Ok(buf);
            }
            me.mem.read_vec(me.array, len)
        };
        let first = copy(self)?;
        let second = copy(self)?;
        let mut out = Vec::new();
        for slot in 0..self.slots {
            let range = slot * self.entry_size..(slot + 1) * self.entry_size;
            let (Some(a), Some(b)) = (first.get(range.clone()), second.get(range)) else {
                break;
            };
            let e = match (decode_entry(a, slot), decode_entry(b, slot)) {
                (Some(e), Some(again))
                    if e.changecount & 1 == 0 && e.changecount == again.changecount =>
                {
                    e
                }
                _ => match self.read_slot(slot)? {
                    Some((e, _)) => e,
                    None => continue,
                },
            };
            if e.pid > 0 {
                self.slot_of.insert(e.pid, slot);
                out.push(e);
            }
        }
        Ok(out)
    }

    /// The pid the server's namespace gives the host's `pid` (the same without a
    /// container).
    fn ns_of(&mut self, pid: Pid) -> Pid {
        let Some((m, _, _)) = &self.pids else {
            return pid;
        };
        if let Some(n) = m.ns(pid) {
            return n;
        }
        self.refresh_pids();
        self.pids
            .as_ref()
            .and_then(|(m, _, _)| m.ns(pid))
            .unwrap_or(pid)
    }

    /// The host's pid of the server's `pid`; None when no process has it any more.
    fn host_of(&mut self, pid: Pid) -> Option<Pid> {
        let Some((m, _, _)) = &self.pids else {
            return Some(pid);
        };
        if let Some(h) = m.host(pid) {
            return Some(h);
        }
        self.refresh_pids();
        self.pids.as_ref().and_then(|(m, _, _)| m.host(pid))
    }

    fn refresh_pids(&mut self) {
        if let Some((m, member, at)) = &mut self.pids {
            if at.elapsed() >= std::time::Duration::from_secs(1) {
                *at = std::time::Instant::now();
                if let Some(fresh) = crate::process::ns::PidMap::of(*member) {
                    *m = fresh;
                }
            }
        }
    }

    /// The slot of `pid`, remembered after the first full scan.
    pub fn entry_for(&mut self, pid: Pid) -> Result<Option<(RawEntry, Option<String>)>, MemError> {
        if let Some(&slot) = self.slot_of.get(&pid) {
            if let Some((e, q)) = self.read_slot(slot)? {
                if e.pid == pid {
                    return Ok(Some((e, q)));
                }
            }
        }
        self.slot_of.clear();
        Ok(self.entries()?.into_iter().find(|(e, _)| e.pid == pid))
    }

    /// `PGPROC.wait_event_info` of `pid`, through its own `MyProc` (exported in every
    /// major); the PGPROC's pid must match, or the read is refused. 14+ fall back to
    /// `my_wait_event_info` for processes without a PGPROC.
    pub fn wait_event_info(&mut self, pid: Pid) -> Result<Option<u32>, MemError> {
        Ok(self.wait_and_proc(pid)?.0)
    }

    /// Where `pid` writes its wait event (its PGPROC's `wait_event_info`, in its address
    /// space: shared memory is mapped at the same address in every process of a server)
    /// and what it holds now. None for a process without a PGPROC.
    pub fn wait_event_address(&mut self, pid: Pid) -> Result<Option<(u64, u32)>, MemError> {
        let (value, proc_ptr) = self.wait_and_proc(pid)?;
        let Some((_, wait_off)) = pgproc_offsets(self.major) else {
            return Ok(None);
        };
        Ok(match (value, proc_ptr) {
            (Some(v), Some(p)) => Some((p.wrapping_add(wait_off), v)),
            _ => None,
        })
    }

    /// The wait event and the address of the process's PGPROC (None without one).
    fn wait_and_proc(&mut self, pid: Pid) -> Result<(Option<u32>, Option<u64>), MemError> {
        let (pid_off, wait_off) = pgproc_offsets(self.major).ok_or_else(|| MemError::Layout {
            pid,
            what: format!("no PGPROC layout for PostgreSQL {}", self.major),
        })?;
        let syms = self.symbols_for(pid)?;
        let mem = ProcMem::open(pid)?;
        let maps = memory::maps(pid)?;
        let bias = memory::load_bias(pid, &maps, &syms)?;
        let Some(my_proc) = syms.get("MyProc") else {
            return Err(MemError::Layout {
                pid,
                what: "no MyProc in the executable's dynamic symbols: not a postgres server?"
                    .into(),
            });
        };
        let proc_ptr = mem.read_u64(bias.wrapping_add(my_proc))?;
        if proc_ptr != 0 {
            let p = mem.read_u32(proc_ptr.wrapping_add(pid_off))? as i32;
            if p != self.ns_of(pid) {
                return Err(MemError::Layout {
                    pid,
                    what: format!("MyProc's pid reads {p}: PGPROC layout mismatch"),
                });
            }
            return Ok((
                Some(mem.read_u32(proc_ptr.wrapping_add(wait_off))?),
                Some(proc_ptr),
            ));
        }
        if let Some(sym) = syms.get("my_wait_event_info") {
            let ptr = mem.read_u64(bias.wrapping_add(sym))?;
            if ptr != 0 {
                return Ok((Some(mem.read_u32(ptr)?), None));
            }
        }
        Ok((None, None))
    }

    /// LWLocks are named from the server's own tables: individual locks (`WALWrite`,
    /// `ProcArray`, ...) by an exported array (`MainLWLockNames` in 12,
    /// `IndividualLWLockNames` in 13–16), builtin tranches (`BufferMapping`,
    /// `LockManager`, ...) and all of 17+ by the static `BuiltinTrancheNames`, found in
    /// memory from a pointer to its first name. 12's tranches are registered at run time
    /// and stay `LWLock #n`.
    pub fn name_lwlock(&mut self, s: &mut StatusSample, pid: Pid) {
        let Some(id) = s
            .wait_event_raw
            .filter(|w| w >> 24 == 0x01)
            .map(|w| w & 0xFFFF)
        else {
            return;
        };
        if self.lwlock_names.is_none() {
            self.lwlock_names = Some(self.load_lwlock_names(pid).unwrap_or_default());
        }
        if let Some(name) = self.lwlock_names.as_ref().and_then(|n| n.get(id as usize)) {
            s.wait_event = Some(name.clone());
        }
    }

    fn load_lwlock_names(&mut self, pid: Pid) -> Result<Vec<String>, MemError> {
        let syms = self.symbols_for(pid)?;
        let maps = memory::maps(pid)?;
        let bias = memory::load_bias(pid, &maps, &syms)?;
        let mem = ProcMem::open(pid)?;
        let mut names = Vec::new();
        if let Some((sym, size)) = ["IndividualLWLockNames", "MainLWLockNames"]
            .iter()
            .find_map(|n| Some((syms.get(n)?, syms.size(n)?)))
        {
            // At most a few hundred individual locks; the symbol's size bounds the read.
            let n = (size / 8).min(512) as usize;
            let ptrs = mem.read_vec(bias.wrapping_add(sym), n * 8)?;
            names = read_names(&mem, &ptrs, None);
        }
        // The builtin tranches follow (13–16), or everything is one static table (17+):
        // found by a pointer to its known first name in .data.rel.ro.
        let anchor = if names.is_empty() {
            "ShmemIndex"
        } else {
            "XactBuffer"
        };
        if let Some(table) = static_name_table(&mem, &syms, bias, anchor) {
            if names.is_empty() {
                // 17+: index 0 is unused, 1 is ShmemIndex.
                names.push(String::new());
            }
            names.extend(table);
        }
        Ok(names)
    }

    fn symbols_for(&mut self, pid: Pid) -> Result<Arc<Symbols>, MemError> {
        use std::os::unix::fs::MetadataExt;
        let meta =
            std::fs::metadata(format!("/proc/{pid}/exe")).map_err(|_| MemError::Gone(pid))?;
        let ident = (meta.dev(), meta.ino());
        if let Some(s) = self.symbols.get(&ident) {
            return Ok(Arc::clone(s));
        }
        let s = Symbols::load(pid)?;
        self.symbols.insert(ident, Arc::clone(&s));
        Ok(s)
    }

    /// A full sample of `pid`: its slot, query, wait event and what the kernel says.
    pub fn sample(&mut self, pid: Pid) -> StatusSample {
        let kernel = kernel::KernelState::read(pid);
        let mut s = StatusSample {
            pid,
            major: self.major,
            kernel,
            sampled_at_us: unix_now_us(),
            title: crate::process::proc::process_title(pid),
            ..Default::default()
        };
        let in_ns = self.ns_of(pid);
        match self.entry_for(in_ns) {
            Ok(Some((e, q))) => {
                if e.appname_ptr != 0 {
                    // NAMEDATALEN: the server truncates the name to fit.
                    s.application_name = self.mem.read_cstr(e.appname_ptr, 64).ok();
                }
                self.fill(&mut s, &e, q)
            }
            Ok(None) => s.error = Some(format!("pid {pid} has no backend status slot")),
            Err(e) => s.error = Some(e.to_string()),
        }
        let mut proc_ptr = None;
        if s.error.is_none() {
            match self.wait_and_proc(pid) {
                Ok((w, p)) => {
                    set_wait(&mut s, w);
                    self.name_lwlock(&mut s, pid);
                    proc_ptr = p;
                }
                Err(e) => s.error = Some(e.to_string()),
            }
        }
        if let Some(p) = proc_ptr {
            self.fill_lock(&mut s, p);
        }
        if s.wait_event_type.as_deref() == Some("Lock") {
            if let Ok(all) = self.entries() {
                let others: Vec<Pid> = all
                    .iter()
                    .filter(|(e, _)| e.pid != in_ns && e.xact_start_us != 0)
                    .filter(|(e, _)| Some(e.database) == s.database_oid)
                    .map(|(e, _)| e.pid)
                    .collect();
                s.open_xacts = others.into_iter().filter_map(|p| self.host_of(p)).collect();
            }
        }
        s
    }

    /// For a lock wait: the relation and the holders, from the shared lock table.
    fn fill_lock(&mut self, s: &mut StatusSample, proc_ptr: u64) {
        let Some(w) = s.wait_event_raw.filter(|w| w >> 24 == 0x03) else {
            return;
        };
        let waiter = self.ns_of(s.pid);
        if let Some(l) =
            locks::awaited_lock(&self.mem, self.segment, self.major, proc_ptr, waiter, w)
        {
            if l.tag.locktag_type == locks::LOCKTAG_RELATION {
                s.lock_relation_oid = Some(l.tag.field2);
            }
            // PGPROC holds the server's pids; a holder gone since holds nothing.
            s.lock_holders = l
                .holders
                .into_iter()
                .filter_map(|p| self.host_of(p))
                .collect();
        }
    }

    /// Wait event, LWLock name and lock holders of `s.pid` (whose slot is already in `s`).
    pub fn fill_wait(&mut self, s: &mut StatusSample) -> Result<(), MemError> {
        let (w, p) = self.wait_and_proc(s.pid)?;
        set_wait(s, w);
        self.name_lwlock(s, s.pid);
        if let Some(p) = p {
            self.fill_lock(s, p);
        }
        Ok(())
    }

    /// Names for one decoded slot.
    pub fn fill(&self, s: &mut StatusSample, e: &RawEntry, query: Option<String>) {
        fill(self.major, s, e, query)
    }

    /// Every process with a status slot, named, with its wait event.
    pub fn every_process(&mut self) -> Result<Vec<StatusSample>, MemError> {
        let mut out = Vec::new();
        for (e, q) in self.entries()? {
            // A process gone since its slot was read has no host pid: left out.
            let Some(pid) = self.host_of(e.pid) else {
                continue;
            };
            let mut s = StatusSample {
                pid,
                major: self.major,
                ..Default::default()
            };
            self.fill(&mut s, &e, q);
            // A process that exits between the two reads just has no wait event.
            let _ = self.fill_wait(&mut s);
            out.push(s);
        }
        Ok(out)
    }
}

/// The offline `pg_stat_activity` of a cluster, read through `via` (its postmaster or any
/// child of it): every process with a status slot. A background worker's type is the one
/// its title shows, as the view shows `bgw_type`.
pub fn activity(via: Pid, major: u32) -> Result<Vec<StatusSample>, MemError> {
    let mut rows = StatusReader::open(via, major)?.every_process()?;
    for s in &mut rows {
        if s.backend_type.as_deref() == Some("background worker") {
            if let Some(t) = crate::process::proc::process_title(s.pid) {
                let t = t.trim_start_matches("postgres: ");
                let t = t.rsplit(": ").next().unwrap_or(t);
                if !t.is_empty() {
                    s.backend_type = Some(t.to_string());
                }
            }
        }
    }
    Ok(rows)
}

/// Strings behind an array of pointers; with `rodata`, a pointer outside it ends the
/// table. NULL entries are empty names.
fn read_names(mem: &ProcMem, ptrs: &[u8], rodata: Option<(u64, u64)>) -> Vec<String> {
    let mut out = Vec::new();
    for c in ptrs.chunks_exact(8) {
        let p = u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]));
        if p == 0 {
            out.push(String::new());
            continue;
        }
        if rodata.is_some_and(|(a, n)| p < a || p >= a + n) {
            break;
        }
        let name = mem.read_cstr(p, 64).unwrap_or_default();
        if rodata.is_some()
            && (name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        {
            break;
        }
        out.push(name);
    }
    out
}

/// A static `const char *const names[]` table whose first entry is `anchor`: the anchor
/// string's address (relocated) is looked for among the pointers in `.data.rel.ro`, and
/// the table read from there while its entries point at printable strings.
fn static_name_table(
    mem: &ProcMem,
    syms: &Symbols,
    bias: u64,
    anchor: &str,
) -> Option<Vec<String>> {
    let (relro, relro_len) = syms.data_rel_ro?;
    let (ro, ro_len) = syms.rodata?;
    let rodata = (bias.wrapping_add(ro), ro_len);
    let want: Vec<u64> = syms
        .anchors
        .get(anchor)?
        .iter()
        .map(|a| bias.wrapping_add(*a))
        .collect();
    // .data.rel.ro holds every relocated constant pointer table: a few MB at most.
    let len = relro_len.min(32 << 20) as usize;
    let start = bias.wrapping_add(relro);
    let data = mem.read_vec(start, len).ok()?;
    // The same string may be pointed at by other tables (PG17's pg_wait_events data):
    // the right one has the expected second entry.
    let (second_at, second) = if anchor == "ShmemIndex" {
        (7, "WALWrite")
    } else {
        (1, "CommitTsBuffer")
    };
    for (i, c) in data.chunks_exact(8).enumerate() {
        if !want.contains(&u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]))) {
            continue;
        }
        let from = i * 8;
        let end = (from + 512 * 8).min(data.len());
        let names = read_names(mem, &data[from..end], Some(rodata));
        if names.get(second_at).map(String::as_str) == Some(second) {
            return Some(names);
        }
    }
    None
}

pub fn set_wait(s: &mut StatusSample, w: Option<u32>) {
    s.wait_event_raw = w;
    if let Some((class, name)) = w.and_then(|w| waits::describe(s.major, w)) {
        s.wait_event_type = Some(class.to_string());
        s.wait_event = Some(name);
    }
}

/// Pure: a decoded slot into the sample's named fields.
pub fn fill(major: u32, s: &mut StatusSample, e: &RawEntry, query: Option<String>) {
    s.backend_type = Some(
        backend_type_name(major, e.backend_type)
            .map(str::to_string)
            .unwrap_or_else(|| format!("backend type {}", e.backend_type)),
    );
    s.state = state_name(major, e.state).map(str::to_string);
    s.database_oid = (e.database != 0).then_some(e.database);
    s.query = query.filter(|q| !q.is_empty());
    s.xact_start_us = (e.xact_start_us != 0).then_some(e.xact_start_us);
    s.state_start_us = (e.state_start_us != 0).then_some(e.state_start_us);
    if let Some(cmd) = progress_command(major, e.progress_command) {
        s.progress_command = Some(cmd.name().to_string());
        s.progress_target = Some(e.progress_target);
        s.progress_params = e.progress_params.to_vec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot_bytes(major: u32) -> Vec<u8> {
        let mut b = vec![0u8; entry_size(major).unwrap()];
        b[OFF_CHANGECOUNT..][..4].copy_from_slice(&2i32.to_ne_bytes());
        b[OFF_PROCPID..][..4].copy_from_slice(&4242i32.to_ne_bytes());
        b[OFF_BACKEND_TYPE..][..4].copy_from_slice(&9u32.to_ne_bytes());
        b[OFF_DATABASE..][..4].copy_from_slice(&5u32.to_ne_bytes());
        b[OFF_STATE..][..4].copy_from_slice(&2u32.to_ne_bytes());
        b[OFF_PROGRESS_COMMAND..][..4].copy_from_slice(&5u32.to_ne_bytes());
        for (i, v) in [3i64, 1000, 500, 2, 1].iter().enumerate() {
            b[OFF_PROGRESS_PARAM + 8 * i..][..8].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }

    #[test]
    fn decode_a_walsender_slot() {
        let b = slot_bytes(15);
        let e = decode_entry(&b, 7).unwrap();
        assert_eq!(e.pid, 4242);
        let mut s = StatusSample {
            major: 15,
            ..Default::default()
        };
        fill(15, &mut s, &e, Some("BASE_BACKUP".into()));
        assert_eq!(s.backend_type.as_deref(), Some("walsender"));
        assert_eq!(s.state.as_deref(), Some("active"));
        assert_eq!(s.progress_command.as_deref(), Some("basebackup"));
        assert_eq!(&s.progress_params[..5], &[3, 1000, 500, 2, 1]);
        assert_eq!(decode_entry(&b[..100], 0), None);
    }

    proptest::proptest! {
        #[test]
        fn garbage_slots_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..500), major in 10u32..20) {
            if let Some(e) = decode_entry(&bytes, 0) {
                let mut s = StatusSample { major, ..Default::default() };
                fill(major, &mut s, &e, None);
                set_wait(&mut s, Some(e.user));
            }
        }
    }
}
