//! USDT capture: PostgreSQL's built-in probes (provider `postgresql`), for what no system
//! call shows: which relation block was read, whether it was a shared-buffer hit, the query
//! text, lock waits, sorts.
//!
//! The probes exist only in binaries built with `--enable-dtrace` (Debian, Ubuntu, PGDG);
//! [`discover`] reads the binary's `.note.stapsdt` first and says why when there are none.
//! `bpf/usdt.bpf.c` has one program per probe; each is attached with libbpf's
//! `attach_usdt(pid, "/proc/PID/exe", "postgresql", name)` for the traced process and each
//! follower, so the kernel installs the uprobes in those processes only. While attached,
//! the kernel increments each probe's semaphore in the tracee (the one write into it;
//! `--no-usdt` avoids it).
//!
//! Pid reuse cannot reach these probes: the kernel resolves the pid to the task when the
//! uprobe is attached (a per-task perf event, or a `uprobe_multi` link holding the task)
//! and fires the program for that thread group only, so a later process given the same
//! pid, even a postgres backend of the same binary, is not traced. What is left is the
//! attach itself, done by pid: `session::backend::while_attaching` checks the process is
//! still running afterwards (tests/pid_reuse.rs).
//!
//! Cost: a uprobe hit is ~0.4 µs on this kernel. By default only ONE probe fires per block
//! (`buffer__read__done`: relation, block, hit or miss); the rest of the default set fires
//! per query, lock wait, sort or checkpoint. The smgr and `buffer__read__start` probes,
//! which fire per block too, are attached only when asked (`--usdt-probes all`).
//!
//! Records are written to a ring buffer without wakeups and drained by [`Tracer::poll`];
//! decoding (which argument means what, per major) is the pure [`decode`].

use std::cell::RefCell;

use anyhow::{anyhow, bail};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, RingBuffer, RingBufferBuilder};

use super::libbpf::ObjectSlot;
use super::{
    monotonic_ns, BlockIo, BlockProbe, Event, EventKind, Pid, QueryPhase, Tracer, TracerStats,
};
use crate::pgdata::relfile::{Fork, RelFileLocator};
use crate::process::stapsdt;
pub use crate::version::BufferReadArgs;

#[allow(
    clippy::all,
    clippy::pedantic,
    clippy::nursery,
    missing_docs,
    unreachable_pub,
    unsafe_op_in_unsafe_fn
)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/usdt.skel.rs"));
}

use skel::{UsdtSkel, UsdtSkelBuilder};

pub const PROVIDER: &str = "postgresql";

/// The probes `bpf/usdt.bpf.c` handles, by its `PGT_USDT_*` id (the index here). The BPF
/// program of each has the probe's name.
pub const PROBES: [&str; 15] = [
    "buffer__read__done",
    "buffer__read__start",
    "smgr__md__read__start",
    "smgr__md__read__done",
    "smgr__md__write__start",
    "smgr__md__write__done",
    "query__start",
    "query__done",
    "statement__status",
    "lock__wait__start",
    "lock__wait__done",
    "sort__start",
    "sort__done",
    "checkpoint__start",
    "checkpoint__done",
];

/// The default set: one probe per block (the floor), the rest per query or wait.
pub const DEFAULT_PROBES: [&str; 10] = [
    "buffer__read__done",
    "query__start",
    "query__done",
    "statement__status",
    "lock__wait__start",
    "lock__wait__done",
    "sort__start",
    "sort__done",
    "checkpoint__start",
    "checkpoint__done",
];

/// The most blocks one smgr call may cover before a record is called garbled.
const MAX_BLOCKS_PER_IO: u32 = 1024;

/// Without it there is no block-level view: attaching fails rather than pretend.
const REQUIRED: &str = "buffer__read__done";

/// Which probes to attach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeSet {
    Default,
    All,
    List(Vec<String>),
}

impl ProbeSet {
    /// `default`, `all`, or a comma-separated list of probe names (`__` or `-` spelled).
    pub fn parse(s: &str) -> anyhow::Result<ProbeSet> {
        match s {
            "default" => Ok(ProbeSet::Default),
            "all" => Ok(ProbeSet::All),
            list => {
                let mut names = Vec::new();
                for n in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let n = n.replace('-', "__");
                    if !PROBES.contains(&n.as_str()) {
                        bail!(
                            "unknown USDT probe {n:?} (known: default, all, {})",
                            PROBES.join(", ")
                        );
                    }
                    names.push(n);
                }
                if names.is_empty() {
                    bail!("--usdt-probes: no probe named");
                }
                Ok(ProbeSet::List(names))
            }
        }
    }

    pub fn names(&self) -> Vec<&str> {
        match self {
            ProbeSet::Default => DEFAULT_PROBES.to_vec(),
            ProbeSet::All => PROBES.to_vec(),
            ProbeSet::List(l) => l.iter().map(String::as_str).collect(),
        }
    }
}

/// What the command line asked of USDT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsdtConfig {
    /// False with `--no-usdt`.
    pub enabled: bool,
    pub probes: ProbeSet,
}

impl Default for UsdtConfig {
    fn default() -> UsdtConfig {
        UsdtConfig {
            enabled: true,
            probes: ProbeSet::Default,
        }
    }
}

/// Whether USDT is in use, for the attach record and the TUI header.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UsdtStatus {
    pub active: bool,
    /// Why not, when not.
    pub reason: Option<String>,
    /// Attached probe names.
    pub probes: Vec<String>,
}

impl UsdtStatus {
    pub fn off(reason: impl Into<String>) -> UsdtStatus {
        UsdtStatus {
            active: false,
            reason: Some(reason.into()),
            probes: Vec::new(),
        }
    }
}

/// The message when a binary has no probes.
pub fn no_probes_reason() -> String {
    "no USDT probes: postgres built without --enable-dtrace".to_string()
}

/// The `postgresql` probe names the binary of `pid` offers, or why there are none.
pub fn discover(pid: Pid) -> anyhow::Result<Vec<(String, usize)>> {
    let notes = stapsdt::probes_of_pid(pid)?;
    let names = stapsdt::names(&notes, PROVIDER);
    if names.is_empty() {
        bail!(no_probes_reason());
    }
    Ok(names)
}

/// How the arguments of the per-block probes are laid out in one major: 12–15
/// `(fork, block, spc, db, rel, backend, isExtend, found)`, 16+ without isExtend.
/// An unknown major decodes as the newest layout, since no block event comes from it
/// without its binary's probes having been read.
pub fn buffer_read_args(major: u32) -> BufferReadArgs {
    crate::version::of(major)
        .unwrap_or(crate::version::NEWEST)
        .buffer_read
}

/// The record layout of `bpf/usdt.bpf.c`. Keep the two in step.
mod wire {
    pub const HDR: usize = 88;
    pub const OFF_TS: usize = 0;
    pub const OFF_TGID: usize = 8;
    pub const OFF_PROBE: usize = 12;
    pub const OFF_NARGS: usize = 14;
    pub const OFF_FLAGS: usize = 15;
    pub const OFF_TEXT_LEN: usize = 16;
    pub const OFF_ARGS: usize = 24;
    pub const MAX_ARGS: usize = 8;
    pub const TEXT_CAP: usize = 1024;

    pub const F_TEXT: u8 = 0x01;
    pub const F_TEXT_TRUNCATED: u8 = 0x02;
}

/// What one ring-buffer record turned into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Event(Event),
    /// Malformed: counted as lost.
    Garbled,
    /// The probe's argument count is not the one this major should have.
    BadArgs,
}

fn le<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}

/// Decodes one record for a server of `major`. Pure; every read bounds-checked.
pub fn decode(data: &[u8], major: u32) -> Decoded {
    match decode_inner(data, major) {
        Some(d) => d,
        None => Decoded::Garbled,
    }
}

fn decode_inner(data: &[u8], major: u32) -> Option<Decoded> {
    let r = Raw::parse(data)?;
    let kind = match r.name {
        "buffer__read__done" | "buffer__read__start" => buffer_read(&r, major),
        "smgr__md__read__start"
        | "smgr__md__write__start"
        | "smgr__md__read__done"
        | "smgr__md__write__done" => smgr(&r),
        "query__start" | "query__done" | "statement__status" => query(&r),
        "lock__wait__start" | "lock__wait__done" => lock_wait(&r),
        _ => other(&r),
    };
    match kind {
        Ok(kind) => Some(Decoded::Event(Event {
            ts_ns: r.ts_ns,
            pid: r.pid,
            kind,
        })),
        Err(d) => d,
    }
}

/// What a probe's record becomes: its event, or what `decode_inner` says instead
/// (`Some(BadArgs)`, or None for a record that is not believed at all).
type Step = Result<EventKind, Option<Decoded>>;

const BAD_ARGS: Step = Err(Some(Decoded::BadArgs));

/// The fixed part of one ring-buffer record (see `bpf/usdt.bpf.c`).
struct Raw<'a> {
    data: &'a [u8],
    ts_ns: u64,
    pid: i32,
    name: &'static str,
    nargs: u8,
    flags: u8,
    text_len: usize,
    a: [i64; wire::MAX_ARGS],
}

impl<'a> Raw<'a> {
    fn parse(data: &'a [u8]) -> Option<Raw<'a>> {
        use wire::*;
        let mut a = [0i64; MAX_ARGS];
        for (i, v) in a.iter_mut().enumerate() {
            *v = i64::from_le_bytes(le(data, OFF_ARGS + 8 * i)?);
        }
        let probe = usize::from(u16::from_le_bytes(le(data, OFF_PROBE)?));
        Some(Raw {
            data,
            ts_ns: u64::from_le_bytes(le(data, OFF_TS)?),
            pid: i32::try_from(u32::from_le_bytes(le(data, OFF_TGID)?)).ok()?,
            name: PROBES.get(probe)?,
            nargs: *data.get(OFF_NARGS)?,
            flags: *data.get(OFF_FLAGS)?,
            text_len: usize::from(u16::from_le_bytes(le(data, OFF_TEXT_LEN)?)),
            a,
        })
    }

    /// The widths were applied by bpf_usdt_arg (per the SDT note); this cast only
    /// narrows values that already fit.
    fn u(&self, i: usize) -> u32 {
        self.a[i] as u32
    }

    fn need(&self, n: u8) -> bool {
        self.nargs >= n
    }

    /// Every block probe starts (fork, block, spc, db, relnumber, backend): a buffer tag
    /// plus the owner of a temp relation (-1, INVALID_PROC_NUMBER, otherwise).
    fn block(&self, probe: BlockProbe, nblocks: u32, hit: Option<bool>, write: bool) -> Step {
        let Some(fork) = Fork::from_number(self.a[0]) else {
            return BAD_ARGS; // not a ForkNumber
        };
        Ok(EventKind::BlockIo(BlockIo {
            probe,
            rel: RelFileLocator {
                spc_oid: self.u(2),
                db_oid: self.u(3),
                rel_number: self.u(4),
                backend: u32::try_from(self.a[5]).ok(),
            },
            fork,
            block: self.u(1),
            nblocks,
            hit,
            write,
        }))
    }
}

fn buffer_read(r: &Raw<'_>, major: u32) -> Step {
    let layout = buffer_read_args(major);
    if r.name == "buffer__read__done" {
        if r.nargs != layout.done_nargs {
            return BAD_ARGS;
        }
        let found = r.a[usize::from(layout.done_nargs) - 1] != 0;
        let extend = layout.is_extend.is_some_and(|i| r.a[i] != 0);
        return r.block(BlockProbe::BufferReadDone, 1, Some(found), extend);
    }
    if !r.need(6) {
        return BAD_ARGS;
    }
    let extend = layout
        .is_extend
        .is_some_and(|i| usize::from(r.nargs) > i && r.a[i] != 0);
    r.block(BlockProbe::BufferReadStart, 1, None, extend)
}

fn smgr(r: &Raw<'_>) -> Step {
    let write = r.name.starts_with("smgr__md__write");
    if r.name.ends_with("__start") {
        if !r.need(6) {
            return BAD_ARGS;
        }
        let p = if write {
            BlockProbe::SmgrWriteStart
        } else {
            BlockProbe::SmgrReadStart
        };
        return r.block(p, 1, None, write);
    }
    if !r.need(8) {
        return BAD_ARGS;
    }
    // arg7 = bytes requested: one block up to 16, PG17's vectored reads more (at most
    // io_combine_limit, 128 blocks in 18). Anything larger is not believed.
    let nblocks = u32::try_from(r.a[7].max(0) / 8192)
        .unwrap_or(u32::MAX)
        .max(1);
    if nblocks > MAX_BLOCKS_PER_IO {
        return BAD_ARGS;
    }
    let p = if write {
        BlockProbe::SmgrWriteDone
    } else {
        BlockProbe::SmgrReadDone
    };
    r.block(p, nblocks, None, write)
}

fn query(r: &Raw<'_>) -> Step {
    use wire::*;
    let phase = match r.name {
        "query__start" => QueryPhase::Start,
        "query__done" => QueryPhase::Done,
        _ => QueryPhase::Status,
    };
    if r.flags & F_TEXT == 0 {
        // NULL activity (idle): nothing to show.
        return Ok(EventKind::Query {
            phase,
            text: String::new(),
            truncated: false,
        });
    }
    if r.text_len >= TEXT_CAP {
        return Err(None);
    }
    let text = r.data.get(HDR..HDR + r.text_len).ok_or(None)?;
    Ok(EventKind::Query {
        phase,
        text: String::from_utf8_lossy(text).into_owned(),
        truncated: r.flags & F_TEXT_TRUNCATED != 0,
    })
}

fn lock_wait(r: &Raw<'_>) -> Step {
    if !r.need(6) {
        return BAD_ARGS;
    }
    Ok(EventKind::LockWait {
        done: r.name == "lock__wait__done",
        field1: r.u(0),
        field2: r.u(1),
        field3: r.u(2),
        field4: r.u(3),
        locktag_type: r.a[4] as u8,
        mode: r.a[5] as i32,
    })
}

/// Sorts and checkpoints: every argument optional.
fn other(r: &Raw<'_>) -> Step {
    let a = &r.a;
    Ok(match r.name {
        "sort__start" => EventKind::Sort {
            done: false,
            work_mem_kb: r.need(4).then_some(a[3]),
            external: None,
            space_kb: None,
        },
        "sort__done" => EventKind::Sort {
            done: true,
            work_mem_kb: None,
            external: r.need(1).then_some(a[0] != 0),
            space_kb: r.need(2).then_some(a[1]),
        },
        "checkpoint__start" => EventKind::Checkpoint {
            done: false,
            flags: r.need(1).then_some(a[0] as i32),
            buffers_written: None,
        },
        "checkpoint__done" => EventKind::Checkpoint {
            done: true,
            flags: None,
            buffers_written: r.need(1).then_some(a[0]),
        },
        _ => return Err(None),
    })
}

thread_local! {
    /// Filled by the ring-buffer callback, which runs synchronously inside `consume` on the
    /// thread that called `poll`; drained right after. (One tracer per thread at a time.)
    static SINK: RefCell<Sink> = RefCell::new(Sink::default());
}

#[derive(Default)]
struct Sink {
    major: u32,
    events: Vec<Event>,
    garbled: u64,
    bad_args: u64,
}

fn on_record(data: &[u8]) -> i32 {
    SINK.with(|s| {
        let mut s = s.borrow_mut();
        let major = s.major;
        match decode(data, major) {
            Decoded::Event(ev) => s.events.push(ev),
            Decoded::Garbled => s.garbled += 1,
            Decoded::BadArgs => s.bad_args += 1,
        }
    });
    0
}

const CAUSES: [&str; 3] = [
    "USDT ring buffer full",
    "USDT garbled record",
    "USDT unexpected argument count",
];

/// Links of removed processes dropped per `poll`: each drop blocks ~45 ms (an RCU grace
/// period), so two keep a poll well under the session's tick.
const DROPS_PER_POLL: usize = 2;

/// Things whose drop blocks, dropped a bounded number at a time on the owner's thread
/// (libbpf's USDT bookkeeping is not thread-safe, so no background thread).
struct DropQueue<T> {
    items: std::collections::VecDeque<T>,
}

impl<T> Default for DropQueue<T> {
    fn default() -> Self {
        DropQueue {
            items: std::collections::VecDeque::new(),
        }
    }
}

impl<T> DropQueue<T> {
    fn extend(&mut self, items: impl IntoIterator<Item = T>) {
        self.items.extend(items);
    }

    /// Drops at most `max`, oldest first; returns how many.
    fn drop_some(&mut self, max: usize) -> usize {
        let n = max.min(self.items.len());
        self.items.drain(..n).for_each(drop);
        n
    }

    fn drop_all(&mut self) {
        self.items.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.items.len()
    }
}

/// USDT probes of the traced processes. See the module documentation.
pub struct UsdtTracer {
    // Drop order: links, links being dropped, ring buffer, skeleton, slot.
    links: Vec<(Pid, String, Link)>,
    /// Links of removed processes, dropped a few per `poll` (see `remove_pid`).
    dropping: DropQueue<Link>,
    ring: Option<RingBuffer<'static>>,
    skel: Option<UsdtSkel<'static>>,
    _slot: ObjectSlot,
    major: u32,
    /// Probes attached to the first process: what followers get too.
    wanted: Vec<String>,
    pids: Vec<Pid>,
    notes: Vec<String>,
    events: u64,
    lost: [u64; 3],
    lost_reported: [u64; 3],
    detached: bool,
    /// Keeps the kernel timing our programs while we run (see `RunTimeStats`).
    run_time_stats: super::libbpf::RunTimeStats,
}

impl UsdtTracer {
    /// Finds the probes of `pid`'s binary, loads the programs and attaches `set` to `pid`.
    /// Fails with one line when the binary has no probes or the per-block probe cannot be
    /// attached; other probes that cannot be attached become limitations.
    pub fn attach(pid: Pid, major: u32, set: &ProbeSet) -> anyhow::Result<UsdtTracer> {
        let offered = discover(pid)?;
        let has = |n: &str| offered.iter().any(|(o, _)| o == n);
        let mut notes = Vec::new();
        let mut wanted = Vec::new();
        for n in set.names() {
            if has(n) {
                wanted.push(n.to_string());
            } else {
                notes.push(format!("USDT: the binary has no {n} probe"));
            }
        }
        if set.names().contains(&REQUIRED) && !has(REQUIRED) {
            bail!("USDT unavailable: the postgres binary has no {REQUIRED} probe");
        }

        super::libbpf::capture_messages();
        let slot = ObjectSlot::new();
        // SAFETY: the skeleton borrowing the slot is stored beside it in UsdtTracer and
        // dropped first (or dropped on error before it); the only call of get().
        let storage = unsafe { slot.get() };
        let mut open = UsdtSkelBuilder::default()
            .open(storage)
            .map_err(|e| anyhow!("USDT unavailable: opening the BPF object failed ({e})"))?;
        // As for eBPF's ring (ebpf.rs): twice its size in our resident memory. 8 MiB holds
        // ~87k records of 96 bytes, a quarter of a second at 340k blocks/s.
        open.maps
            .events
            .set_max_entries(8 << 20)
            .map_err(|e| anyhow!("USDT unavailable: sizing the ring buffer failed ({e})"))?;
        let skel = open.load().map_err(|e| {
            let detail = super::libbpf::last_message().unwrap_or_else(|| e.to_string());
            anyhow!("USDT unavailable: loading the BPF programs was refused ({detail})")
        })?;
        let mut t = UsdtTracer {
            links: Vec::new(),
            dropping: DropQueue::default(),
            ring: None,
            skel: Some(skel),
            _slot: slot,
            major,
            wanted,
            pids: Vec::new(),
            notes,
            events: 0,
            lost: [0; 3],
            lost_reported: [0; 3],
            detached: false,
            run_time_stats: super::libbpf::RunTimeStats::enable(),
        };
        let skel = t.skel.as_ref().expect("just loaded");
        let mut builder = RingBufferBuilder::new();
        builder
            .add(&skel.maps.events, on_record)
            .map_err(|e| anyhow!("USDT unavailable: cannot use the ring buffer ({e})"))?;
        t.ring = Some(
            builder
                .build()
                .map_err(|e| anyhow!("USDT unavailable: cannot map the ring buffer ({e})"))?,
        );
        let failed = t.attach_pid(pid)?;
        for (probe, why) in failed {
            if probe == REQUIRED {
                bail!("USDT unavailable: attaching {probe} failed ({why})");
            }
            t.notes
                .push(format!("USDT: {probe} could not be attached ({why})"));
            t.wanted.retain(|w| *w != probe);
        }
        Ok(t)
    }

    /// Attaches every wanted probe to `pid`; returns those that failed and why.
    fn attach_pid(&mut self, pid: Pid) -> anyhow::Result<Vec<(String, String)>> {
        let Some(skel) = self.skel.as_ref() else {
            bail!("USDT: the tracer is detached");
        };
        let exe = format!("/proc/{pid}/exe");
        let mut failed = Vec::new();
        let mut links = Vec::new();
        for prog in skel.object().progs_mut() {
            let name = prog.name().to_string_lossy().into_owned();
            if !self.wanted.contains(&name) {
                continue;
            }
            super::libbpf::capture_messages();
            match prog.attach_usdt(pid, &exe, PROVIDER, &name) {
                Ok(link) => links.push((pid, name, link)),
                Err(e) => {
                    let why = super::libbpf::last_message().unwrap_or_else(|| e.to_string());
                    failed.push((name, why));
                }
            }
        }
        self.links.extend(links);
        self.pids.push(pid);
        Ok(failed)
    }

    pub fn status(&self) -> UsdtStatus {
        UsdtStatus {
            active: !self.detached,
            reason: None,
            probes: self.wanted.clone(),
        }
    }

    fn kernel_lost(&self) -> u64 {
        let Some(skel) = self.skel.as_ref() else {
            return 0;
        };
        match skel
            .maps
            .lost
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
        {
            Ok(Some(per_cpu)) => per_cpu
                .iter()
                .filter_map(|v| Some(u64::from_ne_bytes(v.get(..8)?.try_into().ok()?)))
                .fold(0u64, u64::saturating_add),
            _ => 0,
        }
    }
}

impl Tracer for UsdtTracer {
    fn name(&self) -> &'static str {
        "usdt"
    }

    fn add_pid(&mut self, pid: Pid) -> anyhow::Result<()> {
        if self.detached {
            bail!("USDT: the tracer is detached");
        }
        if pid <= 0 || self.pids.contains(&pid) {
            return Ok(());
        }
        let failed = self.attach_pid(pid)?;
        if let Some((probe, why)) = failed.first() {
            bail!("USDT: cannot attach {probe} to pid {pid} ({why})");
        }
        Ok(())
    }

    fn remove_pid(&mut self, pid: Pid) {
        self.pids.retain(|&p| p != pid);
        // Dropping a link waits for an RCU grace period (~45 ms a probe): four exiting
        // workers would stall the session loop for seconds with the rings undrained. The
        // links are queued instead and dropped a few per poll; until then their uprobes
        // may still fire, and `poll` ignores events of pids no longer traced.
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.links)
            .into_iter()
            .partition(|(p, _, _)| *p == pid);
        self.links = kept;
        self.dropping.extend(gone.into_iter().map(|(_, _, l)| l));
    }

    fn poll(&mut self, out: &mut Vec<Event>) -> anyhow::Result<()> {
        let Some(ring) = self.ring.as_ref() else {
            return Ok(());
        };
        let major = self.major;
        SINK.with(|s| {
            let mut s = s.borrow_mut();
            s.major = major;
            s.events.clear();
            s.garbled = 0;
            s.bad_args = 0;
        });
        // Bounded, as the syscall ring is (see ebpf.rs).
        let rc = ring.consume_raw_n(super::ebpf::MAX_RECORDS_PER_POLL);
        let pids = &self.pids;
        let (n, garbled, bad) = SINK.with(|s| {
            let mut s = s.borrow_mut();
            // Uprobes of removed processes fire until their links are dropped.
            s.events.retain(|e| pids.contains(&e.pid));
            let n = s.events.len();
            out.append(&mut s.events);
            if s.events.capacity() > 1 << 16 {
                s.events.shrink_to(1 << 12);
            }
            (
                n,
                std::mem::take(&mut s.garbled),
                std::mem::take(&mut s.bad_args),
            )
        });
        self.events += n as u64;
        self.dropping.drop_some(DROPS_PER_POLL);
        self.lost[1] += garbled;
        self.lost[2] += bad;
        if rc < 0 {
            bail!(
                "USDT: reading the ring buffer failed ({})",
                std::io::Error::from_raw_os_error(-rc)
            );
        }
        self.lost[0] = self.lost[0].max(self.kernel_lost());
        let pid = self.pids.first().copied().unwrap_or(0);
        for (i, cause) in CAUSES.iter().enumerate() {
            if self.lost[i] > self.lost_reported[i] {
                out.push(Event {
                    ts_ns: monotonic_ns(),
                    pid,
                    kind: EventKind::Lost {
                        cause: cause.to_string(),
                        count: self.lost[i] - self.lost_reported[i],
                    },
                });
                self.lost_reported[i] = self.lost[i];
            }
        }
        Ok(())
    }

    fn stats(&self) -> TracerStats {
        let mut lost = self.lost;
        lost[0] = lost[0].max(self.kernel_lost());
        TracerStats {
            events: self.events,
            lost: CAUSES
                .iter()
                .zip(lost)
                .map(|(c, n)| (c.to_string(), n))
                .collect(),
        }
    }

    fn detach(&mut self) {
        self.detached = true;
        // Dropping a link removes its uprobes and gives back the semaphore increments.
        // Each removal waits for an RCU grace period (~45 ms per probe here). They cannot
        // be dropped side by side: libbpf's USDT bookkeeping (spec ids returned to the
        // shared manager on detach) is not thread-safe.
        self.links.clear();
        self.dropping.drop_all();
    }

    fn limitations(&self) -> Vec<String> {
        let mut v = vec![format!(
            "USDT: probes {} attached; the kernel increments each probe's semaphore in the \
             traced process while attached (--no-usdt avoids it)",
            self.wanted.join(", ")
        )];
        v.extend(self.notes.iter().cloned());
        v.extend(self.run_time_stats.why_not.iter().cloned());
        v
    }

    /// The probe programs only: each run also cost the traced process a uprobe trap,
    /// which the kernel does not count as program run time (see docs/overhead.md).
    fn probe_cost(&self) -> super::cost::ProbeCost {
        use super::cost::{ProbeCost, ProbeRuntime};
        if let Some(c) = self.run_time_stats.unmeasured() {
            return c;
        }
        let Some(skel) = self.skel.as_ref() else {
            return ProbeCost::Measured(ProbeRuntime::default());
        };
        let (run_time_ns, runs, _) = super::libbpf::prog_counters(skel.object().progs());
        ProbeCost::Measured(ProbeRuntime {
            run_time_ns,
            runs,
            usdt_runs: runs,
        })
    }
}

impl Drop for UsdtTracer {
    fn drop(&mut self) {
        self.detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn removed_links_are_dropped_a_few_per_poll() {
        use std::rc::Rc;
        let live = Rc::new(());
        let mut q = DropQueue::default();
        q.extend((0..5).map(|_| Rc::clone(&live)));
        assert_eq!(Rc::strong_count(&live), 6);
        assert_eq!(q.drop_some(DROPS_PER_POLL), 2);
        assert_eq!((q.len(), Rc::strong_count(&live)), (3, 4));
        assert_eq!(q.drop_some(DROPS_PER_POLL), 2);
        assert_eq!(q.drop_some(DROPS_PER_POLL), 1);
        assert_eq!(q.drop_some(DROPS_PER_POLL), 0);
        assert_eq!(Rc::strong_count(&live), 1);
        q.extend((0..7).map(|_| Rc::clone(&live)));
        q.drop_all();
        assert_eq!((q.len(), Rc::strong_count(&live)), (0, 1));
    }

    fn record(probe: u16, args: &[i64], text: Option<&[u8]>, flags: u8) -> Vec<u8> {
        let mut v = vec![0u8; wire::HDR];
        v[0..8].copy_from_slice(&123u64.to_le_bytes());
        v[8..12].copy_from_slice(&4242u32.to_le_bytes());
        v[12..14].copy_from_slice(&probe.to_le_bytes());
        v[14] = args.len() as u8;
        v[15] = flags;
        for (i, a) in args.iter().enumerate() {
            v[24 + 8 * i..32 + 8 * i].copy_from_slice(&a.to_le_bytes());
        }
        if let Some(t) = text {
            v[16..18].copy_from_slice(&(t.len() as u16).to_le_bytes());
            v.extend_from_slice(t);
            v.resize(wire::HDR + wire::TEXT_CAP, 0);
        }
        v
    }

    fn kind(d: Decoded) -> EventKind {
        match d {
            Decoded::Event(e) => {
                assert_eq!((e.ts_ns, e.pid), (123, 4242));
                e.kind
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn probe_ids_match_the_bpf_enum() {
        let src = include_str!("../../bpf/usdt.bpf.c");
        for (i, p) in PROBES.iter().enumerate() {
            let id = format!(
                "PGT_USDT_{} = {i},",
                p.replace("__md", "").replace("__", "_").to_uppercase()
            );
            assert!(src.contains(&id), "{id} missing from usdt.bpf.c");
            assert!(src.contains(&format!("PROBE({p},")), "no program for {p}");
        }
        assert!(src.contains(&format!("#define PGT_USDT_HDR {}", wire::HDR)));
        assert!(src.contains(&format!("#define PGT_USDT_TEXT_CAP {}", wire::TEXT_CAP)));
    }

    #[test]
    fn buffer_read_done_per_major() {
        // 15: ..., isExtend, found
        let r = record(0, &[0, 7, 1663, 5, 16384, -1, 0, 1], None, 0);
        assert_eq!(
            kind(decode(&r, 15)),
            EventKind::BlockIo(BlockIo {
                probe: BlockProbe::BufferReadDone,
                rel: RelFileLocator {
                    spc_oid: 1663,
                    db_oid: 5,
                    rel_number: 16384,
                    backend: None,
                },
                fork: Fork::Main,
                block: 7,
                nblocks: 1,
                hit: Some(true),
                write: false,
            })
        );
        // 16: found is the 7th argument; an 8-argument record would be misread.
        let r16 = record(0, &[2, 9, 1663, 5, 16384, -1, 0], None, 0);
        match kind(decode(&r16, 16)) {
            EventKind::BlockIo(BlockIo {
                hit, fork, block, ..
            }) => assert_eq!((hit, fork, block), (Some(false), Fork::Vm, 9)),
            k => panic!("{k:?}"),
        }
        assert_eq!(decode(&r, 16), Decoded::BadArgs);
        assert_eq!(decode(&r16, 15), Decoded::BadArgs);
    }

    #[test]
    fn smgr_vectored_read_counts_blocks() {
        let r = record(3, &[0, 32, 1663, 5, 16384, -1, 131072, 131072], None, 0);
        match kind(decode(&r, 17)) {
            EventKind::BlockIo(BlockIo { nblocks, block, .. }) => {
                assert_eq!((nblocks, block), (16, 32))
            }
            k => panic!("{k:?}"),
        }
        let huge = record(3, &[0, 32, 1663, 5, 16384, -1, 0, i64::MAX], None, 0);
        assert_eq!(decode(&huge, 17), Decoded::BadArgs);
    }

    #[test]
    fn text_lock_and_sort() {
        let r = record(8, &[0x5555_0000], Some(b"SELECT 1"), wire::F_TEXT);
        assert_eq!(
            kind(decode(&r, 15)),
            EventKind::Query {
                phase: QueryPhase::Status,
                text: "SELECT 1".into(),
                truncated: false
            }
        );
        let r = record(6, &[0], None, 0x04);
        assert!(matches!(kind(decode(&r, 15)), EventKind::Query { text, .. } if text.is_empty()));
        // Debian 15: field4 is 2 bytes, type 1 byte (bpf_usdt_arg already narrowed them).
        let r = record(9, &[5, 16390, 0, 0, 0, 1], None, 0);
        assert_eq!(
            kind(decode(&r, 15)),
            EventKind::LockWait {
                done: false,
                field1: 5,
                field2: 16390,
                field3: 0,
                field4: 0,
                locktag_type: 0,
                mode: 1
            }
        );
        let r = record(12, &[1, 2048], None, 0);
        assert_eq!(
            kind(decode(&r, 15)),
            EventKind::Sort {
                done: true,
                work_mem_kb: None,
                external: Some(true),
                space_kb: Some(2048)
            }
        );
    }

    #[test]
    fn garbage_is_rejected() {
        assert_eq!(decode(&[0u8; 10], 15), Decoded::Garbled);
        let mut r = record(99, &[], None, 0);
        assert_eq!(decode(&r, 15), Decoded::Garbled);
        // A text length past the record.
        r = record(8, &[1], Some(b"abc"), wire::F_TEXT);
        r[16..18].copy_from_slice(&2000u16.to_le_bytes());
        assert_eq!(decode(&r, 15), Decoded::Garbled);
    }

    #[test]
    fn probe_sets() {
        assert_eq!(ProbeSet::parse("default").unwrap().names(), DEFAULT_PROBES);
        assert_eq!(ProbeSet::parse("all").unwrap().names().len(), PROBES.len());
        assert_eq!(
            ProbeSet::parse("buffer-read-start, query__start")
                .unwrap()
                .names(),
            ["buffer__read__start", "query__start"]
        );
        assert!(ProbeSet::parse("nope").is_err());
        // The default set fires once per block: only buffer__read__done of the block probes.
        let per_block = [
            "buffer__read__start",
            "smgr__md__read__start",
            "smgr__md__read__done",
            "smgr__md__write__start",
            "smgr__md__write__done",
        ];
        assert!(DEFAULT_PROBES.iter().all(|p| !per_block.contains(p)));
    }

    proptest! {
        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..1200), major in 12u32..19) {
            let _ = decode(&data, major);
        }

        #[test]
        fn decode_plausible_headers(probe in 0u16..20, nargs in 0u8..12, flags in any::<u8>(),
                                    text_len in any::<u16>(), tail in 0usize..1200, major in 12u32..19) {
            let mut r = record(probe, &[1, 2, 3, 4, 5, 6, 7, 8], None, flags);
            r[14] = nargs;
            r[16..18].copy_from_slice(&text_len.to_le_bytes());
            r.resize(wire::HDR + tail, b'x');
            let _ = decode(&r, major);
        }
    }
}
