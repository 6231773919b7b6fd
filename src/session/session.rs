//! One attached process: the tracer, the model it feeds, and the bookkeeping around them
//! (followers, exit detection, status samples). Line mode and the TUI both drive it:
//! `poll` often, `tick` once per display interval, `finish` at the end. Detaches on drop.
//!
//! A session is live (attached to a running process, with /proc, its memory and its data
//! directory at hand) or a replay (events from a recording or a script, named by any
//! [`Namer`], on a clock the caller drives): the loops cannot tell them apart.

use crate::cli::BackendChoice;
use crate::model::{Model, Named, Namer, RelIdentity, RelInfo};
use crate::naming::CatalogNamer;
use crate::pgdata::relfile::{Fork, RelFileLocator};
use crate::pgdata::DataDir;
use crate::process::identity::Identity;
use crate::process::status::{StatusReader, StatusSample};
use crate::trace::replay::{Clock, SystemClock};
use crate::trace::usdt::{UsdtConfig, UsdtStatus};
use crate::trace::{follow, procfs, Event, EventKind, FollowerRole, Pid, Tracer};
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// How paths get their names: the data directory's catalog live, whatever the caller
/// gives for a replay (a recording's names, a script's).
enum Naming {
    Catalog(Box<CatalogNamer>),
    Given(Box<dyn Namer + Send>),
}

impl Naming {
    fn inner(&mut self) -> &mut dyn Namer {
        match self {
            Naming::Catalog(c) => c.as_mut(),
            Naming::Given(n) => n.as_mut(),
        }
    }
}

impl Namer for Naming {
    fn name(&mut self, path: &str) -> Named {
        self.inner().name(path)
    }
    fn relation_size(&mut self, rel: &RelInfo) -> Option<u64> {
        self.inner().relation_size(rel)
    }
    fn file_size(&mut self, path: &str) -> Option<u64> {
        self.inner().file_size(path)
    }
    fn name_block(&mut self, rel: &RelFileLocator, fork: Fork) -> Option<Arc<RelInfo>> {
        self.inner().name_block(rel, fork)
    }
    fn relation_by_oid(&mut self, db: u32, oid: u32) -> Option<RelIdentity> {
        self.inner().relation_by_oid(db, oid)
    }
    fn resident_blocks(
        &mut self,
        r: &RelFileLocator,
        f: Fork,
        b: std::ops::Range<u32>,
    ) -> Option<u32> {
        self.inner().resident_blocks(r, f, b)
    }
    fn refresh(&mut self) -> bool {
        self.inner().refresh()
    }
}

/// What only a live session has: the process in /proc, its memory, its data directory.
struct Live {
    dd: DataDir,
    /// The leader, pinned: every /proc or memory read about it is checked against this
    /// after the read (a pid outlives its process: the next fork may get it).
    identity: Identity,
    followers: BTreeMap<Pid, Identity>,
    /// Followers added to the tracer and found dead right after: whatever the tracer
    /// caught for these pids before they were removed may be another process's, and is
    /// dropped at the next drain.
    discard: Vec<Pid>,
    /// Status from shared memory: None until first used, or when off.
    status_reader: Option<StatusReader>,
    no_memory: bool,
    /// Our own walk of the data directory for a backup without a server estimate.
    walk: Option<std::thread::JoinHandle<crate::pgdata::backup_size::Walked>>,
    /// Copier mode: the traced process is not PostgreSQL but copies the data directory.
    copier: Option<CopierLive>,
}

/// What copier mode keeps beside the model: the walk of what must be copied, and each
/// process's working directory (a copier opens paths relative to it, not to the data
/// directory as a backend does).
struct CopierLive {
    plan: Option<std::thread::JoinHandle<crate::pgdata::backup_size::Plan>>,
    cwds: BTreeMap<Pid, String>,
    last_sample_ns: Option<u64>,
    /// The server's side of the low-level backup the copier takes part in.
    server: super::server_backup::ServerSide,
}

/// A session on recorded or scripted events: no process, no root, no data directory.
pub struct Replay {
    pub pid: Pid,
    /// The process title the recording started with.
    pub title: String,
    /// The data directory as recorded (shown, never opened).
    pub datadir: PathBuf,
    pub major: u32,
    pub segment_bytes: u64,
    pub namer: Box<dyn Namer + Send>,
    pub tracer: Box<dyn Tracer>,
    pub clock: Arc<dyn Clock>,
}

pub struct Session {
    pub pid: Pid,
    /// The data directory, shown (live: the one the process runs in).
    pub datadir: PathBuf,
    pub major: u32,
    pub model: Model,
    pub title: String,
    pub tracer_name: &'static str,
    pub limitations: Vec<String>,
    /// Whether USDT probes feed the model, and if not why.
    pub usdt: UsdtStatus,
    /// Things to tell the user once: why `auto` fell back from a better method, why
    /// memory reading failed... Line mode prints them on stderr, the TUI logs them.
    pub notes: Vec<String>,
    pub start_ns: u64,
    /// Events per second over the last tick interval.
    pub events_per_s: f64,
    /// Memory reading switched off (`--no-memory`) or failed; why, said once.
    pub memory_note: Option<String>,
    pub clock: Arc<dyn Clock>,
    namer: Naming,
    tracer: Box<dyn Tracer>,
    live: Option<Live>,
    batch: Vec<Event>,
    last_tick_ns: u64,
    last_tick_events: u64,
    /// The kernel state last sampled that was not one of our own ptrace stops.
    last_kstate: Option<char>,
    /// The wait-event sampler (live, memory readable, `start_wait_sampling`).
    waits: Option<super::waits::WaitsLive>,
}

impl Session {
    /// Check the target, attach, and take the startup snapshot of its open files.
    pub fn open(pid: Pid, backend: BackendChoice) -> Result<Session> {
        Session::open_with(pid, backend, &UsdtConfig::default(), true)
    }

    /// [`Session::open`] with the USDT settings (`--no-usdt`, `--usdt-probes`).
    ///
    /// The process is pinned first ([`Identity`]); if it is gone by the end of the attach,
    /// or any step failed because it went away, the error is exactly
    /// [`ExitedWhileAttaching`](crate::process::identity::ExitedWhileAttaching).
    /// `memory`: false for `--no-memory` (names then come from the disk from the first read).
    pub fn open_with(
        pid: Pid,
        backend: BackendChoice,
        usdt: &UsdtConfig,
        memory: bool,
    ) -> Result<Session> {
        let identity = Identity::open(pid)?;
        let mut s = super::backend::while_attaching(&identity, || {
            Session::attach(identity.try_clone()?, backend, usdt, memory)
        })?;
        if !memory {
            s.disable_memory();
        }
        Ok(s)
    }

    fn attach(
        identity: Identity,
        backend: BackendChoice,
        usdt: &UsdtConfig,
        memory: bool,
    ) -> Result<Session> {
        let pid = identity.pid();
        crate::process::proc::may_inspect(pid, "cannot attach")?;
        let (dd, copier) = match crate::commands::traced(pid)? {
            crate::commands::Traced::Server(dd) => (dd, false),
            crate::commands::Traced::Copier(dd) => (dd, true),
        };
        super::backend::test_pause("located");
        let (namer, mut notes) = if copier {
            // A copier has no server memory to read names from; the disk names.
            let namer = CatalogNamer::new(crate::pgdata::Resolver::new(&dd)?);
            let note = crate::naming::disk_note("copier mode: the copier has no server memory");
            (namer, vec![note])
        } else {
            let mut namer = CatalogNamer::live(&dd, pid, memory)?;
            let notes = namer.take_notes();
            (namer, notes)
        };
        if let Some(inside) = &dd.inside {
            notes.push(crate::process::ns::container_note(pid, inside, &dd.root));
        }
        let (tracer, usdt) = if copier {
            // Not a postgres binary: no USDT, ever.
            if backend == BackendChoice::Usdt {
                anyhow::bail!(
                    "pid {pid} is a copier of {} (not PostgreSQL): it has no USDT probes",
                    dd.root.display()
                );
            }
            let off = UsdtConfig {
                enabled: false,
                ..UsdtConfig::default()
            };
            // memory false: a copier's memory is never read.
            let (mut t, _) =
                super::backend::attach_with(backend, pid, dd.major, &off, false, &mut |n| {
                    notes.push(n)
                })?;
            if let Err(e) = t.follow_forks() {
                notes.push(format!(
                    "copier mode: {e}: a child is found at the next poll, and reads it makes \
                     before that are missed"
                ));
            }
            (t, UsdtStatus::off("copier mode: not a PostgreSQL binary"))
        } else {
            super::backend::attach_with(backend, pid, dd.major, usdt, memory, &mut |n| {
                notes.push(n)
            })?
        };
        let mut model = Model::new(pid, dd.control.segment_bytes());
        let title = crate::process::proc::process_title(pid).unwrap_or_default();
        // A walsender may run a base backup: follow its syscalls for one from the start.
        model.expect_backup = title.contains("walsender") && !copier;
        let copier_live = copier.then(|| {
            let name = crate::process::proc::comm(pid).unwrap_or_default();
            model.start_copier(name.trim());
            notes.push(format!(
                "copier mode: pid {pid} ({}) copies the data directory {}",
                crate::text::visible(name.trim()),
                dd.root.display()
            ));
            let root = dd.root.clone();
            CopierLive {
                plan: Some(std::thread::spawn(move || {
                    crate::pgdata::backup_size::plan(&root)
                })),
                cwds: BTreeMap::new(),
                last_sample_ns: None,
                server: super::server_backup::ServerSide::new(&dd),
            }
        });
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let start_ns = clock.now_ns();
        let mut batch = Vec::new();
        // Files opened before we came (the lsof step): named at once. (Read by pid: the
        // check that ends `while_attaching` says whether it was this process.)
        procfs::snapshot(pid, &mut batch)?;
        let mut s = Session {
            pid,
            // As the server names it: a container's path, not ours to it.
            datadir: dd.shown().to_path_buf(),
            major: dd.major,
            title,
            tracer_name: tracer.name(),
            limitations: tracer.limitations(),
            usdt,
            notes,
            model,
            namer: Naming::Catalog(Box::new(namer)),
            start_ns,
            clock,
            tracer,
            live: Some(Live {
                dd,
                identity,
                followers: BTreeMap::new(),
                discard: Vec::new(),
                status_reader: None,
                // A copier's memory is never read: /proc only.
                no_memory: copier_live.is_some(),
                walk: None,
                copier: copier_live,
            }),
            batch,
            last_tick_ns: start_ns,
            last_tick_events: 0,
            events_per_s: 0.0,
            memory_note: None,
            last_kstate: None,
            waits: None,
        };
        // Followers from the start (an io worker's reads for us are ours from the first
        // interval), and what the tracer then says it cannot attribute.
        s.follow();
        s.limitations = s.tracer.limitations();
        s.sample_cost(s.clock.now_ns());
        Ok(s)
    }

    /// A session fed by recorded or scripted events: status samples, followers and the
    /// exit come from the events themselves.
    pub fn replay(r: Replay) -> Session {
        let mut model = Model::new(r.pid, r.segment_bytes);
        model.expect_backup = r.title.contains("walsender");
        let start_ns = r.clock.now_ns();
        Session {
            pid: r.pid,
            datadir: r.datadir,
            major: r.major,
            title: r.title,
            tracer_name: r.tracer.name(),
            limitations: r.tracer.limitations(),
            usdt: UsdtStatus::off("replay"),
            notes: Vec::new(),
            model,
            namer: Naming::Given(r.namer),
            start_ns,
            clock: r.clock,
            tracer: r.tracer,
            live: None,
            batch: Vec::new(),
            last_tick_ns: start_ns,
            last_tick_events: 0,
            events_per_s: 0.0,
            memory_note: None,
            last_kstate: None,
            waits: None,
        }
    }

    /// The data directory of a live session.
    pub fn datadir(&self) -> Option<&DataDir> {
        self.live.as_ref().map(|l| &l.dd)
    }

    fn drain(&mut self, each: &mut impl FnMut(&Model, &Event, bool) -> Result<()>) -> Result<()> {
        self.tracer.poll(&mut self.batch)?;
        if let Some(live) = self.live.as_mut().filter(|l| !l.discard.is_empty()) {
            let discard = std::mem::take(&mut live.discard);
            self.batch.retain(|e| !discard.contains(&e.pid));
        }
        // Copier mode: a child the kernel already traces (from its fork) is made a
        // follower before its events are applied, so its cwd is known for its relative
        // paths and its open files are snapshot.
        if self.live.as_ref().is_some_and(|l| {
            l.copier.is_some()
                && self
                    .batch
                    .iter()
                    .any(|e| e.pid != self.pid && !l.followers.contains_key(&e.pid))
        }) {
            self.follow();
        }
        if let Some(live) = self.live.as_mut().filter(|l| l.copier.is_some()) {
            // A wrapper that execs the copier (`sh -c 'exec tar ...'`) changes its name:
            // read at every drain, since a short copy may end before the next tick.
            if let (Some(name), Some(c)) = (
                crate::process::proc::comm(self.pid),
                self.model.copier.as_mut(),
            ) {
                if live.identity.is_alive() && !name.trim().is_empty() && c.name != name.trim() {
                    c.name = name.trim().to_string();
                }
            }
            if let Some(c) = live.copier.as_mut() {
                c.absolute_paths(&mut self.batch);
            }
        }
        for ev in self.batch.drain(..) {
            each(&self.model, &ev, false)?;
            self.model.apply(&ev, &mut self.namer);
            each(&self.model, &ev, true)?;
        }
        Ok(())
    }

    /// Fold everything captured so far into the model. `each(model, event, applied)` is
    /// called for every event before (`applied` false) and after it is applied: `-d`
    /// names a closing fd before the close forgets it.
    pub fn poll(&mut self, mut each: impl FnMut(&Model, &Event, bool) -> Result<()>) -> Result<()> {
        // A copier's workers start reading at once (pgBackRest takes the biggest file
        // first): looked for at every poll, not once per interval.
        if self.live.as_ref().is_some_and(|l| l.copier.is_some()) {
            self.follow();
        }
        self.drain(&mut each)?;
        // ptrace and eBPF report the exit themselves; USDT and /proc polling do not: the
        // pidfd tells, within one poll, whoever has taken the pid since.
        let gone = self.live.as_ref().is_some_and(|l| !l.identity.is_alive());
        if gone && !self.model.leader_exited() {
            // Its last events may have reached the tracer after the drain above (a
            // walsender writes its backup history file and exits): they come first.
            self.drain(&mut each)?;
        }
        if gone && !self.model.leader_exited() {
            let ev = Event {
                ts_ns: self.clock.now_ns(),
                pid: self.pid,
                kind: EventKind::Exit {
                    code: None,
                    signal: None,
                },
            };
            // Shown like a tracer's own exit (`-d`, the log), whichever noticed it.
            each(&self.model, &ev, false)?;
            self.model.apply(&ev, &mut self.namer);
            each(&self.model, &ev, true)?;
        }
        Ok(())
    }

    /// Notes raised since the last call (memory reading that failed, say), each once.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// Do not read the process's memory (`--no-memory`): status from /proc only, backup
    /// phase inferred from the syscalls.
    pub fn disable_memory(&mut self) {
        if let Some(l) = self.live.as_mut() {
            l.no_memory = true;
        }
        self.memory_note = Some("memory reading off (--no-memory)".into());
        if let Naming::Catalog(n) = &mut self.namer {
            n.disable_memory();
            self.notes.extend(n.take_notes());
        }
    }

    /// One status sample of a live leader, named. Memory-reading failures degrade to a
    /// /proc-only sample and are reported once.
    fn sample_status(&mut self) -> Option<StatusSample> {
        use crate::process::status::{kernel, kernel::KernelState, unix_now_us};
        if self.model.leader_exited() {
            return None;
        }
        let live = self.live.as_mut()?;
        if !live.no_memory && live.status_reader.is_none() && self.memory_note.is_none() {
            match StatusReader::open(self.pid, live.dd.major) {
                Ok(r) => live.status_reader = Some(r),
                Err(e) => {
                    let note = format!("no status from memory: {e}");
                    self.notes.push(note.clone());
                    self.memory_note = Some(note);
                }
            }
        }
        if live.status_reader.is_some() && !live.identity.is_alive() {
            // Opened (maps, symbols, shared memory found) maybe on whoever took the pid.
            live.status_reader = None;
        }
        let mut s = match live.status_reader.as_mut() {
            Some(r) => r.sample(self.pid),
            None => StatusSample {
                pid: self.pid,
                major: live.dd.major,
                kernel: KernelState::read(self.pid),
                sampled_at_us: unix_now_us(),
                title: crate::process::proc::process_title(self.pid),
                ..Default::default()
            },
        };
        // Every read above was by pid: it was about our process only if it is still alive
        // now. Otherwise it may describe the next owner of the pid: not a word of it.
        if !live.identity.is_alive() {
            return None;
        }
        // Under ptrace the process is stopped for each of its system calls: those stops
        // are ours, not its state (nor a stall).
        let ours = matches!(s.kernel.state, Some('t' | 'T'))
            && (self.tracer_name == "ptrace" || kernel::traced_by_us(self.pid))
            && !self.tracer.stopped_by_signal(self.pid);
        self.last_kstate = s.kernel.hide_own_stop(ours, self.last_kstate);
        if let Naming::Catalog(namer) = &self.namer {
            let cat = namer.resolver().catalog();
            if let Some(oid) = s.database_oid {
                s.database = cat.database(oid).map(|d| d.name.clone());
            }
            if let (Some(db), Some(rel)) = (s.database_oid, s.lock_relation_oid) {
                s.lock_relation = Some(
                    cat.by_oid(db, rel)
                        .map(|r| r.qualified())
                        .unwrap_or_else(|| format!("relation {rel} (not in catalog yet)")),
                );
            }
        }
        Some(s)
    }

    /// Once per display interval: sample the status, pick up new followers, drop gone
    /// ones, advance rates.
    pub fn tick(&mut self, now: u64) {
        if let Some(s) = self.sample_status() {
            let ev = Event {
                ts_ns: now,
                pid: self.pid,
                kind: EventKind::Status {
                    sample: Box::new(s),
                },
            };
            self.model.apply(&ev, &mut self.namer);
        }
        self.backup_total();
        self.copier_tick(now);
        self.follow();
        self.sample_waits();
        self.sample_cost(now);
        self.model.tick(now, &mut self.namer);
        // Names changed by DDL, and memory that stopped answering: said once each.
        self.notes.append(&mut self.model.renamed);
        if let Naming::Catalog(n) = &mut self.namer {
            self.notes.extend(n.take_notes());
        }
        let dt = now.saturating_sub(self.last_tick_ns).max(1) as f64 / 1e9;
        self.events_per_s = (self.model.events - self.last_tick_events) as f64 / dt;
        self.last_tick_ns = now;
        self.last_tick_events = self.model.events;
    }

    /// Sample the wait events of the leader and its followers at `hz` from now on, on a
    /// thread of its own; nothing for a replay, a copier or `--no-memory`.
    pub fn start_wait_sampling(&mut self, hz: f64) {
        let Some(live) = &self.live else {
            return;
        };
        if live.no_memory || live.copier.is_some() || self.model.leader_exited() {
            return;
        }
        match super::waits::WaitsLive::start(self.pid, self.major, hz) {
            Ok(w) => {
                self.model.waits = crate::model::waits::Waits::new(hz);
                self.waits = Some(w);
            }
            Err(e) => self.notes.push(format!("no wait profile: {e}")),
        }
    }

    /// The rounds sampled since the last tick, into the model.
    fn sample_waits(&mut self) {
        let Some(w) = &mut self.waits else {
            return;
        };
        if let Some(live) = &self.live {
            w.set_pids(std::iter::once(self.pid).chain(live.followers.keys().copied()));
        }
        if let Some(why) = w.drain(&mut self.model.waits) {
            self.notes.push(why);
        }
    }

    /// What tracing costs, read once an interval (a live session only: a replay's numbers
    /// would be pg_trace reading a file).
    fn sample_cost(&mut self, now: u64) {
        if self.live.is_some() {
            let probes = self.tracer.probe_cost();
            let own = crate::trace::cost::own_usage();
            self.model.cost.fold(now, &probes, own);
        }
    }

    /// Copier mode, once per interval: the walk when done, the processes' kernel state.
    fn copier_tick(&mut self, now: u64) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let Some(c) = live.copier.as_mut() else {
            return;
        };
        let Some(model_copier) = self.model.copier.as_mut() else {
            return;
        };
        if c.plan.as_ref().is_some_and(|h| h.is_finished()) {
            if let Some(plan) = c.plan.take().and_then(|h| h.join().ok()) {
                if plan.truncated {
                    self.notes.push(
                        "copier mode: the data directory has more files than pg_trace walks; totals are a floor".into(),
                    );
                }
                model_copier.set_plan(plan);
            }
        }
        let pids: Vec<Pid> = std::iter::once(self.pid)
            .chain(live.followers.keys().copied())
            .collect();
        let mut samples = Vec::new();
        for p in pids {
            let id = if p == self.pid {
                Some(&live.identity)
            } else {
                live.followers.get(&p)
            };
            let Some(s) = super::copier::sample(p) else {
                continue;
            };
            // Read by pid: only if it is still the same process.
            if id.is_some_and(|i| i.is_alive()) {
                samples.push(s);
            }
            if let Some(cwd) = super::copier::cwd(p) {
                if id.is_some_and(|i| i.is_alive()) {
                    c.cwds.insert(p, cwd);
                }
            }
        }
        let interval = c.last_sample_ns.map_or(0, |t| now.saturating_sub(t));
        c.last_sample_ns = Some(now);
        model_copier.sample(&samples, now, interval);
        if let Some(b) = c.server.poll(now) {
            self.model.set_server_backup(b.as_ref());
        }
    }

    /// Parallel workers and io workers of a live leader come and go; a copier's children
    /// too.
    fn follow(&mut self) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let found: Vec<(Pid, FollowerRole)> = if live.copier.is_some() {
            super::copier::descendants(self.pid)
                .into_iter()
                .map(|p| (p, FollowerRole::CopierChild))
                .collect()
        } else {
            follow::find_followers(self.pid)
        };
        for (pid, role) in found {
            if live.followers.contains_key(&pid) {
                continue;
            }
            // Io workers read for the whole cluster: useless, and costly to a ptrace
            // tracer, unless the tracer tells whose read each one is.
            if role == FollowerRole::IoWorker && !self.tracer.attributes_io_workers() {
                continue;
            }
            // Pinned, then its title read again: the role found above may have been read
            // from a process that had the pid before this one.
            let Ok(id) = Identity::open(pid) else {
                continue;
            };
            let still = if role == FollowerRole::CopierChild {
                // Still a descendant of the copier after it was pinned.
                super::copier::descendants(self.pid)
                    .contains(&pid)
                    .then_some(role)
            } else {
                let title = crate::process::proc::process_title(pid);
                title
                    .and_then(|t| follow::follower_role(&t, self.pid))
                    .filter(|&r| r == role)
            };
            if id.confirm(still).flatten().is_none() {
                continue;
            }
            if self.tracer.add_pid(pid).is_err() {
                // Not retried each tick: remembered like a follower, forgotten at its exit.
                live.followers.insert(pid, id);
                continue;
            }
            if !id.is_running() {
                // Gone before or while it was added: the add may have caught the next
                // owner of the pid. Take it out, and what it caught.
                self.tracer.remove_pid(pid);
                live.discard.push(pid);
                continue;
            }
            let mut files = Vec::new();
            let _ = procfs::snapshot(pid, &mut files);
            if let Some(c) = live.copier.as_mut() {
                if let Some(cwd) = super::copier::cwd(pid) {
                    c.cwds.insert(pid, cwd);
                }
                c.absolute_paths(&mut files);
            }
            self.batch
                .push(follower_event(self.clock.now_ns(), pid, self.pid, role));
            if id.is_alive() {
                self.batch.append(&mut files);
            }
            live.followers.insert(pid, id);
        }
        let gone: Vec<Pid> = live
            .followers
            .iter()
            .filter(|(_, id)| !id.is_alive())
            .map(|(&p, _)| p)
            .collect();
        for p in gone {
            live.followers.remove(&p);
            self.tracer.remove_pid(p);
            if let Some(c) = live.copier.as_mut() {
                c.cwds.remove(&p);
            }
        }
    }

    /// Without a server estimate of a backup's size, walk the data directory ourselves
    /// (on a thread: a big cluster has many files).
    fn backup_total(&mut self) {
        let (Some(b), Some(live)) = (self.model.backup.as_mut(), self.live.as_mut()) else {
            return;
        };
        let needed = b.server_total.is_none()
            && b.walked_total.is_none()
            && (b.phase >= 3 || b.source == crate::model::backup::Source::Inferred);
        if needed && live.walk.is_none() {
            // The data directory, not its root path: a container's tablespace links are
            // followed under the container's root.
            let dd = live.dd.clone();
            live.walk = Some(std::thread::spawn(move || {
                crate::pgdata::backup_size::walk_datadir(&dd)
            }));
        }
        if live.walk.as_ref().is_some_and(|h| h.is_finished()) {
            if let Some(w) = live.walk.take().and_then(|h| h.join().ok()) {
                b.walked_total = Some(w.bytes);
                b.tablespaces_total.get_or_insert(w.tablespaces);
            }
        }
    }

    /// Whatever is still queued, then a last tick.
    pub fn finish(&mut self) -> Result<()> {
        self.poll(|_, _, _| Ok(()))?;
        self.model.tick(self.clock.now_ns(), &mut self.namer);
        Ok(())
    }

    pub fn detach(&mut self) {
        self.waits = None;
        self.tracer.detach();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.tracer.detach();
    }
}

impl CopierLive {
    /// A copier opens paths relative to its own working directory: made absolute here, so
    /// the namer (which takes relative paths as the data directory's) names them right.
    fn absolute_paths(&mut self, batch: &mut [Event]) {
        for ev in batch.iter_mut() {
            let path = match &mut ev.kind {
                EventKind::Open {
                    dirfd: None, path, ..
                }
                | EventKind::FileState { path, .. } => path,
                _ => continue,
            };
            if path.starts_with('/') {
                continue;
            }
            let cwd = match self.cwds.get(&ev.pid) {
                Some(c) => c.clone(),
                None => match super::copier::cwd(ev.pid) {
                    Some(c) => {
                        self.cwds.insert(ev.pid, c.clone());
                        c
                    }
                    None => continue,
                },
            };
            *path = format!("{}/{}", cwd.trim_end_matches('/'), path);
        }
    }
}

fn follower_event(ts_ns: u64, pid: Pid, leader: Pid, role: FollowerRole) -> Event {
    Event {
        ts_ns,
        pid,
        kind: EventKind::NewFollower { leader, role },
    }
}
