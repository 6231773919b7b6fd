//! One attached process: the tracer, the model it feeds, and the bookkeeping around them
//! (followers, exit detection, status samples). Line mode and the TUI both drive it:
//! `poll` often, `tick` once per display interval, `finish` at the end. Detaches on drop.
//!
//! A session is live (attached to a running process, with /proc, its memory and its data
//! directory at hand) or a replay (events from a recording or a script, named by any
//! [`Namer`], on a clock the caller drives): the loops cannot tell them apart.

use super::attaching::{Msg, Pending, Target, Waiting, ATTACHING};
use super::backend::Step;
use super::record::names::{self, NameAnswer};
use super::record::{CopierTick, ItemRef, Recorder, WaitRounds, Walked};
use crate::cli::BackendChoice;
use crate::model::{Model, Named, Namer, RelIdentity, RelInfo};
use crate::naming::CatalogNamer;
use crate::pgdata::relfile::{Fork, RelFileLocator};
use crate::pgdata::DataDir;
use crate::process::identity::Identity;
use crate::process::status::{StatusReader, StatusSample};
use crate::trace::combined::Combined;
use crate::trace::replay::{Clock, SystemClock};
use crate::trace::usdt::{UsdtConfig, UsdtStatus};
use crate::trace::{follow, procfs, Event, EventKind, FollowerRole, Pid, Tracer};
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// How paths get their names: the data directory's catalog live, whatever the caller
/// gives for a replay (a recording's names, a script's).
enum NameSource {
    Catalog(Box<CatalogNamer>),
    Given(Box<dyn Namer + Send>),
}

/// The namer the model asks, and, while recording, every answer it gave.
struct Naming {
    src: NameSource,
    tape: Option<Vec<NameAnswer>>,
}

impl Naming {
    fn inner(&mut self) -> &mut dyn Namer {
        match &mut self.src {
            NameSource::Catalog(c) => c.as_mut(),
            NameSource::Given(n) => n.as_mut(),
        }
    }
}

impl Namer for Naming {
    fn name(&mut self, path: &str) -> Named {
        let named = self.inner().name(path);
        names::note(&mut self.tape, || NameAnswer::Name {
            path: path.to_string(),
            named: (&named).into(),
        });
        named
    }
    fn relation_size(&mut self, rel: &RelInfo) -> Option<u64> {
        let size = self.inner().relation_size(rel);
        names::note(&mut self.tape, || NameAnswer::RelationSize {
            relation: rel.id.path.clone(),
            size,
        });
        size
    }
    fn file_size(&mut self, path: &str) -> Option<u64> {
        let size = self.inner().file_size(path);
        names::note(&mut self.tape, || NameAnswer::FileSize {
            path: path.to_string(),
            size,
        });
        size
    }
    fn name_block(&mut self, rel: &RelFileLocator, fork: Fork) -> Option<Arc<RelInfo>> {
        let r = self.inner().name_block(rel, fork);
        names::note(&mut self.tape, || NameAnswer::NameBlock {
            locator: *rel,
            fork,
            rel: r.as_deref().map(Into::into),
        });
        r
    }
    fn relation_by_oid(&mut self, db: u32, oid: u32) -> Option<RelIdentity> {
        let r = self.inner().relation_by_oid(db, oid);
        names::note(&mut self.tape, || NameAnswer::RelationByOid {
            db,
            oid,
            rel: r.as_ref().map(Into::into),
        });
        r
    }
    fn index_count(&mut self, db: u32, oid: u32) -> Option<u64> {
        let count = self.inner().index_count(db, oid);
        names::note(&mut self.tape, || NameAnswer::IndexCount { db, oid, count });
        count
    }
    fn dumped_tables(&mut self, db: u32) -> Option<Vec<(String, String)>> {
        self.inner().dumped_tables(db)
    }
    fn dump_bytes(&mut self, db: u32, table: &(String, String)) -> Option<(u64, u64)> {
        let bytes = self.inner().dump_bytes(db, table);
        names::note(&mut self.tape, || NameAnswer::DumpBytes {
            db,
            schema: table.0.clone(),
            name: table.1.clone(),
            bytes,
        });
        bytes
    }
    // On the tape as the position, not the list: a database's tables, every tick, would
    // weigh more than the rest of the recording.
    fn dump_position(&mut self, db: u32, table: &(String, String)) -> Option<(u64, u64)> {
        let position = self.inner().dump_position(db, table);
        names::note(&mut self.tape, || NameAnswer::DumpPosition {
            db,
            schema: table.0.clone(),
            name: table.1.clone(),
            position,
        });
        position
    }
    fn resident_blocks(
        &mut self,
        r: &RelFileLocator,
        f: Fork,
        b: std::ops::Range<u32>,
    ) -> Option<u32> {
        let n = self.inner().resident_blocks(r, f, b.clone());
        names::note(&mut self.tape, || NameAnswer::Resident {
            locator: *r,
            fork: f,
            start: b.start,
            end: b.end,
            blocks: n,
        });
        n
    }
    fn refresh(&mut self) -> bool {
        let changed = self.inner().refresh();
        names::note(&mut self.tape, || NameAnswer::Refresh { changed });
        changed
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
    /// A walsender's replication state in shared memory.
    walsender: crate::process::walsender::Follow,
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

/// A replay session at one point of its recording, without its I/O: see
/// [`Session::replay_state`].
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct ReplayState {
    model: Model,
    notes: Vec<String>,
    last_tick_ns: u64,
    last_tick_events: u64,
    events_per_s: f64,
    last_kstate: Option<char>,
    replayed: Option<Replayed>,
    was_stalled: bool,
}

/// What a replay's tick applies instead of sampling the process: the recorded status,
/// the walk's total, the wait rounds, copier mode's tick and, when it came then, its plan.
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Replayed {
    pub status: Option<Event>,
    pub walked: Option<Walked>,
    pub waits: Option<WaitRounds>,
    pub copier: Option<CopierTick>,
    pub plan: Option<crate::pgdata::backup_size::Plan>,
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
    /// What the per-block USDT probes were expected to cost the backend, when sampled.
    pub usdt_cost: Option<super::usdt_cost::UsdtCost>,
    /// A replay's: the cost the recording's attach record carried.
    pub recorded_usdt_cost: Option<crate::output::record::UsdtCostRecord>,
    pub clock: Arc<dyn Clock>,
    namer: Naming,
    tracer: Box<dyn Tracer>,
    /// The attach still under way on its thread (the TUI's, see `attaching.rs`).
    pending: Option<Pending>,
    live: Option<Live>,
    batch: Vec<Event>,
    last_tick_ns: u64,
    last_tick_events: u64,
    /// The kernel state last sampled that was not one of our own ptrace stops.
    last_kstate: Option<char>,
    /// The flight recorder, when on.
    recorder: Option<Recorder>,
    /// What the recording's stored checkpoints cost, once it has ended.
    recorded_checkpoints: (Option<super::checkpoints::WriterStats>, Option<String>),
    /// A replay: what the next tick applies instead of sampling.
    replayed: Option<Replayed>,
    /// Ring mode: SIGUSR1 seen, and whether the verdict was a stall at the last tick.
    dump_asked: Option<Arc<std::sync::atomic::AtomicBool>>,
    was_stalled: bool,
    /// The wait-event sampler (live, memory readable, `start_wait_sampling`).
    waits: Option<super::waits::WaitsLive>,
    /// Per process, the scheduler times the kernel had counted when the session's clock
    /// started; taken off every later reading (see `kernel_times`).
    sched_base: BTreeMap<Pid, [u64; 4]>,
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
        Session::open_inner(pid, backend, usdt, memory, false)
    }

    /// [`Session::open_with`] whose tracer is attached on a thread (the TUI's, whose first
    /// frame must not wait for BPF): the session is ready at once, named from /proc, its
    /// memory and the catalog, with the files already open; events flow from the first
    /// poll after the tracer is live ([`Session::attaching`] until then). What fails later
    /// in the attach stops the capture at that poll (its error).
    pub fn open_deferred(
        pid: Pid,
        backend: BackendChoice,
        usdt: &UsdtConfig,
        memory: bool,
    ) -> Result<Session> {
        Session::open_inner(pid, backend, usdt, memory, true)
    }

    fn open_inner(
        pid: Pid,
        backend: BackendChoice,
        usdt: &UsdtConfig,
        memory: bool,
        deferred: bool,
    ) -> Result<Session> {
        let identity = Identity::open(pid)?;
        let mut s = super::backend::while_attaching(&identity, || {
            Session::attach(identity.try_clone()?, backend, usdt, memory, deferred)
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
        deferred: bool,
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
        // A copier is not a postgres binary: no USDT, ever.
        if copier && backend == BackendChoice::Usdt {
            anyhow::bail!(
                "pid {pid} is a copier of {} (not PostgreSQL): it has no USDT probes",
                dd.root.display()
            );
        }
        let usdt_asked = if copier {
            UsdtConfig {
                enabled: false,
                ..UsdtConfig::default()
            }
        } else {
            usdt.clone()
        };
        // A copier's memory is never read.
        let memory_ok = memory && !copier;
        let (mut tracer, usdt, usdt_cost, pending) = if deferred {
            super::backend::preflight(backend, pid, &usdt_asked)?;
            let pending = Pending::spawn(Target {
                identity: identity.try_clone()?,
                backend,
                major: dd.major,
                usdt: usdt_asked,
                memory: memory_ok,
                copier,
            })?;
            let waiting: Box<dyn Tracer> = Box::new(Waiting);
            (waiting, UsdtStatus::off(ATTACHING), None, Some(pending))
        } else {
            let a = super::backend::attach_with(
                backend,
                pid,
                dd.major,
                &usdt_asked,
                memory_ok,
                copier,
                &mut |n| notes.push(n),
            )?;
            (a.tracer, a.usdt, a.cost, None)
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
        // The kernel counts scheduler times from the tracer's attach, which (the USDT
        // probes' above all) can take a second or more: what it counted before the
        // session's clock starts is not part of any window shown.
        let mut sched_base = Vec::new();
        tracer.kernel_times(&mut sched_base);
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
            namer: Naming {
                src: NameSource::Catalog(Box::new(namer)),
                tape: None,
            },
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
                walsender: Default::default(),
            }),
            batch,
            last_tick_ns: start_ns,
            last_tick_events: 0,
            events_per_s: 0.0,
            memory_note: None,
            usdt_cost,
            recorded_usdt_cost: None,
            pending,
            last_kstate: None,
            recorder: None,
            recorded_checkpoints: (None, None),
            replayed: None,
            dump_asked: None,
            was_stalled: false,
            waits: None,
            sched_base: sched_base
                .iter()
                .filter_map(|e| match e.kind {
                    EventKind::SchedTimes {
                        running_ns,
                        runqueue_ns,
                        sleeping_ns,
                        blocked_ns,
                    } => Some((e.pid, [running_ns, runqueue_ns, sleeping_ns, blocked_ns])),
                    _ => None,
                })
                .collect(),
        };
        // Followers from the start (an io worker's reads for us are ours from the first
        // interval), and what the tracer then says it cannot attribute.
        s.follow();
        s.limitations = s.tracer.limitations();
        if memory && s.live.as_ref().is_some_and(|l| l.copier.is_none()) {
            s.limitations
                .extend(super::io_uring::note(pid, s.tracer.as_ref()));
        }
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
            namer: Naming {
                src: NameSource::Given(r.namer),
                tape: None,
            },
            start_ns,
            clock: r.clock,
            tracer: r.tracer,
            live: None,
            batch: Vec::new(),
            last_tick_ns: start_ns,
            last_tick_events: 0,
            events_per_s: 0.0,
            memory_note: None,
            usdt_cost: None,
            recorded_usdt_cost: None,
            pending: None,
            last_kstate: None,
            recorder: None,
            recorded_checkpoints: (None, None),
            replayed: None,
            dump_asked: None,
            was_stalled: false,
            waits: None,
            sched_base: BTreeMap::new(),
        }
    }

    /// `--io-latency` and `--exact-waits` on a live session: an error when asked for and
    /// not possible (the user asked; no silent fallback). What the watchpoints will cost
    /// is said first, in the notes.
    pub fn enable_kernel(&mut self, o: &super::kernel_time::KernelOptions) -> Result<()> {
        if !o.io_latency && !o.exact_waits {
            // Nothing asked: the limitations stay the tracer's (or the attach's, deferred).
            return Ok(());
        }
        if o.io_latency {
            self.tracer.enable_io_latency()?;
        }
        if o.exact_waits {
            if self.live.is_none() {
                anyhow::bail!("--exact-waits needs a live process");
            }
            let w = super::kernel_time::exact_waits(self.pid, self.major, self.tracer.as_mut())?;
            self.notes.push(w.note);
            self.model.exact_waits.major = Some(self.major);
            self.model.exact_waits.apply(w.value, w.ts_ns);
        }
        self.limitations = self.tracer.limitations();
        Ok(())
    }

    /// The data directory of a live session.
    pub fn datadir(&self) -> Option<&DataDir> {
        self.live.as_ref().map(|l| &l.dd)
    }

    /// Whether the tracer is still being attached (`--backend auto`: also while USDT
    /// joins the syscall tracer already live).
    pub fn attaching(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether a tracer is live (false only before the attach thread hands one over).
    pub fn tracing(&self) -> bool {
        self.tracer_name != ATTACHING
    }

    /// Takes over what the attach thread has done since the last poll.
    fn take_attach_steps(&mut self) -> Result<()> {
        let Some(p) = self.pending.as_mut() else {
            return Ok(());
        };
        for m in p.take() {
            match m {
                Msg::Step(s) => self.attach_step(s),
                Msg::Done(r) => {
                    self.pending = None;
                    if let Err(e) = r {
                        // The process ended while the tracer was being attached: that is
                        // its exit, shown as any exit is (the summary), not a failure of
                        // the capture. Its code is unknown: no tracer saw it.
                        if self.live.as_ref().is_some_and(|l| !l.identity.is_alive()) {
                            self.notes
                                .push(format!("pid {} exited while attaching", self.pid));
                            self.batch.push(Event {
                                ts_ns: self.clock.now_ns(),
                                pid: self.pid,
                                kind: EventKind::Exit {
                                    code: None,
                                    signal: None,
                                },
                            });
                        } else {
                            return Err(e);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn attach_step(&mut self, s: Step) {
        match s {
            Step::Note(n) => self.notes.push(n),
            Step::Tracer { tracer, usdt, cost } => {
                self.tracer = tracer;
                self.tracer_name = self.tracer.name();
                if let Some(u) = usdt {
                    self.usdt = u;
                }
                self.usdt_cost = cost;
                // Files opened while the tracer was attaching: the walk again, after the
                // tracer is live (a file seen twice is the same file); and those of the
                // first walk closed meanwhile, closed.
                let mut files = Vec::new();
                let walked = procfs::snapshot(self.pid, &mut files).is_ok();
                if walked && self.live.as_ref().is_some_and(|l| l.identity.is_alive()) {
                    let open: Vec<i32> = (files.iter())
                        .filter_map(|e| match e.kind {
                            EventKind::FileState { fd, .. } if e.pid == self.pid => Some(fd),
                            _ => None,
                        })
                        .collect();
                    let now = self.clock.now_ns();
                    let gone: Vec<Event> = (self.model.files.keys())
                        .filter(|&&(p, fd)| p == self.pid && !open.contains(&fd))
                        .map(|&(pid, fd)| Event {
                            ts_ns: now,
                            pid,
                            kind: EventKind::Close { fd },
                        })
                        .collect();
                    self.batch.extend(gone);
                    self.batch.append(&mut files);
                }
                self.follow();
                self.limitations = self.tracer.limitations();
            }
            Step::Usdt {
                mut tracer,
                status,
                cost,
                name,
            } => {
                // Followers found while it was attaching get its probes too.
                if let Some(l) = self.live.as_ref() {
                    for &p in l.followers.keys() {
                        let _ = tracer.add_pid(p);
                    }
                }
                let sys = std::mem::replace(&mut self.tracer, Box::new(Waiting));
                self.tracer = Box::new(Combined::new(name, vec![sys, tracer]));
                self.tracer_name = name;
                self.usdt = status;
                self.usdt_cost = cost;
                self.limitations = self.tracer.limitations();
            }
            Step::UsdtOff(status) => self.usdt = status,
        }
    }

    fn drain(&mut self, each: &mut impl FnMut(&Model, &Event, bool) -> Result<()>) -> Result<()> {
        self.take_attach_steps()?;
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
        let r = self.apply_batch(each);
        self.batch.clear();
        r
    }

    /// The kernel's times of the traced processes as of this tick, applied and recorded
    /// like any batch (a replay applies them before the tick, as here).
    fn kernel_times(&mut self) {
        let pending = std::mem::take(&mut self.batch);
        self.tracer.kernel_times(&mut self.batch);
        let _ = self.apply_batch(&mut |_, _, _| Ok(()));
        self.batch = pending;
    }

    /// The scheduler times in the batch (a tick's reading, or an exited follower's last),
    /// less what the kernel had counted when the session's clock started.
    fn sched_from_start(&mut self) {
        for e in &mut self.batch {
            if let (
                EventKind::SchedTimes {
                    running_ns,
                    runqueue_ns,
                    sleeping_ns,
                    blocked_ns,
                },
                Some(base),
            ) = (&mut e.kind, self.sched_base.get(&e.pid))
            {
                for (v, b) in [running_ns, runqueue_ns, sleeping_ns, blocked_ns]
                    .into_iter()
                    .zip(base)
                {
                    *v = v.saturating_sub(*b);
                }
            }
        }
    }

    /// Apply `self.batch` (not cleared), recording it.
    fn apply_batch(
        &mut self,
        each: &mut impl FnMut(&Model, &Event, bool) -> Result<()>,
    ) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        if !self.sched_base.is_empty() {
            self.sched_from_start();
        }
        let mut r = Ok(());
        for ev in &self.batch {
            r = each(&self.model, ev, false);
            if r.is_err() {
                break;
            }
            self.model.apply(ev, &mut self.namer);
            r = each(&self.model, ev, true);
            if r.is_err() {
                break;
            }
        }
        if let Some(rec) = self.recorder.as_mut() {
            let at = self.clock.now_ns();
            rec.write(
                Some(at),
                &ItemRef::Batch {
                    at,
                    events: super::record::EventsRef(&self.batch),
                },
            );
            write_names(rec, &mut self.namer);
        }
        r
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
            self.batch.push(ev);
            let r = self.apply_batch(&mut each);
            self.batch.clear();
            r?;
        }
        Ok(())
    }

    /// Notes raised since the last call (memory reading that failed, say), each once.
    /// Recorded as they are said: a replay says them again.
    pub fn take_notes(&mut self) -> Vec<String> {
        let notes = std::mem::take(&mut self.notes);
        if let Some(rec) = self.recorder.as_mut().filter(|_| !notes.is_empty()) {
            rec.write(None, &ItemRef::Notes { notes: &notes });
        }
        notes
    }

    /// Do not read the process's memory (`--no-memory`): status from /proc only, backup
    /// phase inferred from the syscalls.
    pub fn disable_memory(&mut self) {
        if let Some(l) = self.live.as_mut() {
            l.no_memory = true;
        }
        self.memory_note = Some("memory reading off (--no-memory)".into());
        if let NameSource::Catalog(n) = &mut self.namer.src {
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
        if s.backend_type.as_deref() == Some("walsender") && !live.no_memory {
            let c = &live.dd.control;
            s.walsender = live.walsender.sample(
                self.pid,
                live.dd.major,
                &live.dd.root,
                u64::from(c.xlog_seg_size),
                u64::from(c.xlog_blcksz),
            );
        }
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
        if let NameSource::Catalog(namer) = &self.namer.src {
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
        let replaying = self.replayed.is_some();
        let mut replayed_copier = None;
        let (status, replayed_walk, replayed_waits) = match self.replayed.take() {
            Some(r) => {
                replayed_copier = Some((r.copier, r.plan));
                (r.status, r.walked, r.waits)
            }
            None => (
                self.sample_status().map(|s| Event {
                    ts_ns: now,
                    pid: self.pid,
                    kind: EventKind::Status {
                        sample: Box::new(s),
                    },
                }),
                None,
                None,
            ),
        };
        if let Some(ev) = &status {
            self.model.apply(ev, &mut self.namer);
        }
        let walked_before = self.walked();
        self.backup_total();
        if let (Some(w), Some(b)) = (replayed_walk, self.model.backup.as_mut()) {
            b.walked_total = Some(w.bytes);
            if let Some(t) = w.tablespaces {
                b.tablespaces_total.get_or_insert(t);
            }
        }
        let walked = self.walked().filter(|w| Some(*w) != walked_before);
        if !replaying {
            self.kernel_times();
        }
        let copier = match replayed_copier {
            Some((tick, plan)) => {
                if let Some(t) = tick {
                    self.replay_copier_tick(t, plan, now);
                }
                None
            }
            None => self.copier_tick(now),
        };
        self.follow();
        let waits = if replaying {
            if let Some(w) = &replayed_waits {
                self.apply_wait_rounds(w);
            }
            None
        } else {
            self.sample_waits()
        };
        self.sample_cost(now);
        self.model.tick(now, &mut self.namer);
        // Names changed by DDL, and memory that stopped answering: said once each. A
        // replay has them from the recording's notes.
        if replaying {
            self.model.renamed.clear();
        } else {
            self.notes.append(&mut self.model.renamed);
        }
        if let NameSource::Catalog(n) = &mut self.namer.src {
            self.notes.extend(n.take_notes());
        }
        let dt = now.saturating_sub(self.last_tick_ns).max(1) as f64 / 1e9;
        self.events_per_s = (self.model.events - self.last_tick_events) as f64 / dt;
        self.last_tick_ns = now;
        self.last_tick_events = self.model.events;
        if let Some(rec) = self.recorder.as_mut() {
            let (tick, plan) = copier.map_or((None, None), |(t, p)| (Some(t), p));
            if let Some(plan) = &plan {
                write_plan(rec, plan);
            }
            rec.write(
                Some(now),
                &ItemRef::Tick {
                    at: now,
                    status: status.as_ref(),
                    walked,
                    waits: waits.as_ref(),
                    copier: tick.as_ref(),
                },
            );
            write_names(rec, &mut self.namer);
        }
        self.ring_triggers();
    }

    /// Ring mode: dump on SIGUSR1, and when the verdict turns into a stall.
    fn ring_triggers(&mut self) {
        let Some(rec) = self.recorder.as_mut() else {
            return;
        };
        if let Some(e) = rec.failed.take() {
            self.notes.push(e);
        }
        if !rec.is_ring() {
            return;
        }
        let stalled = self
            .model
            .status
            .as_ref()
            .is_some_and(|s| s.verdict.is_stall());
        let signalled = self
            .dump_asked
            .as_ref()
            .is_some_and(|f| f.swap(false, std::sync::atomic::Ordering::Relaxed));
        let reason = if signalled {
            Some("signal")
        } else if stalled && !self.was_stalled && rec.dumps_on_stall() {
            Some("stall")
        } else {
            None
        };
        self.was_stalled = stalled;
        if let Some(reason) = reason {
            match rec.dump(reason) {
                Ok(Some(p)) => self
                    .notes
                    .push(format!("ring written ({reason}): {}", p.display())),
                Ok(None) => self
                    .notes
                    .push(format!("ring not written ({reason}): nothing recorded yet")),
                Err(e) => self
                    .notes
                    .push(format!("ring not written ({reason}): {e:#}")),
            }
        }
    }

    /// Record from now on (`--record`, `pg_trace record`). Call right after opening: the
    /// attach snapshot is still queued, so the recording has the files open at attach.
    pub fn record(&mut self, opts: &super::record::RecordOptions) -> Result<()> {
        let rec = Recorder::start(opts, self.recording_header())?;
        if rec.is_ring() {
            self.dump_asked = Some(super::signals::dump_flag()?);
        }
        self.recorder = Some(rec);
        self.namer.tape = Some(Vec::new());
        Ok(())
    }

    /// The recording's stored checkpoints every `ns` of recording time (tests), and what
    /// they cost so far.
    pub fn store_checkpoints_every(&mut self, ns: u64) {
        if let Some(r) = self.recorder.as_mut() {
            r.store_checkpoints_every(ns);
        }
    }

    /// Kept after the recording ends; with why the checkpoints stopped, if they did.
    pub fn checkpoint_stats(&self) -> (Option<super::checkpoints::WriterStats>, Option<String>) {
        match self.recorder.as_ref() {
            Some(r) => (r.checkpoint_stats(), r.checkpoints_stopped.clone()),
            None => self.recorded_checkpoints.clone(),
        }
    }

    /// The attach record's `usdt`: live, with the cost measured before attaching; in a
    /// replay, as recorded.
    pub fn usdt_record(&self) -> crate::output::record::UsdtRecord {
        let cost = match &self.usdt_cost {
            Some(c) => Some(c.record()),
            None => self.recorded_usdt_cost.clone(),
        };
        crate::output::trace::usdt_record(&self.usdt, cost)
    }

    /// What a recording of this session says of it.
    pub fn recording_header(&self) -> super::record::Header {
        let attach = crate::output::trace::attach_record(
            self.pid,
            &self.title,
            self.tracer_name,
            &self.limitations,
            self.usdt_record(),
            &self.datadir,
            self.major,
        );
        super::record::Header {
            pg_trace_version: env!("CARGO_PKG_VERSION").to_string(),
            recorded_at_unix_s: super::record::unix_now_s(),
            kernel: super::record::kernel(),
            pid: self.pid,
            title: self.title.clone(),
            datadir: self.datadir.to_string_lossy().into_owned(),
            major: self.major,
            block_size: self.live.as_ref().map(|l| l.dd.control.blcksz),
            segment_bytes: self.model.segment_bytes,
            backend: self.tracer_name.to_string(),
            limitations: self.limitations.clone(),
            usdt: self.usdt_record(),
            start_ns: self.start_ns,
            memory_note: self.memory_note.clone(),
            copier: self.model.copier.is_some(),
            copier_name: self.model.copier.as_ref().map(|c| c.name.clone()),
            ring: None,
            attach,
        }
    }

    /// The end of a recording: its summary time, the last frame and the index (a file),
    /// or the exit dump (a ring). The file written, if any.
    pub fn end_recording(&mut self, at: u64) -> Result<Option<std::path::PathBuf>> {
        let Some(mut rec) = self.recorder.take() else {
            return Ok(None);
        };
        self.namer.tape = None;
        rec.write(Some(at), &ItemRef::End { at });
        self.recorded_checkpoints = (rec.checkpoint_stats(), rec.checkpoints_stopped.clone());
        rec.close()
    }

    /// A replay: apply recorded events as one drain.
    pub fn replay_batch(
        &mut self,
        events: Vec<Event>,
        mut each: impl FnMut(&Model, &Event, bool) -> Result<()>,
    ) -> Result<()> {
        self.batch = events;
        let r = self.apply_batch(&mut each);
        self.batch.clear();
        r
    }

    /// A replay session's state between two steps: a seek restores it instead of
    /// replaying from the start. Only a replay's (a live session has more than its model).
    pub fn replay_state(&self) -> ReplayState {
        ReplayState {
            model: self.model.clone(),
            notes: self.notes.clone(),
            last_tick_ns: self.last_tick_ns,
            last_tick_events: self.last_tick_events,
            events_per_s: self.events_per_s,
            last_kstate: self.last_kstate,
            replayed: self.replayed.clone(),
            was_stalled: self.was_stalled,
        }
    }

    /// Back to a state [`Session::replay_state`] took.
    pub fn restore_replay_state(&mut self, s: ReplayState) {
        self.model = s.model;
        self.notes = s.notes;
        self.last_tick_ns = s.last_tick_ns;
        self.last_tick_events = s.last_tick_events;
        self.events_per_s = s.events_per_s;
        self.last_kstate = s.last_kstate;
        self.replayed = s.replayed;
        self.was_stalled = s.was_stalled;
    }

    /// A replay: what the next tick applies instead of sampling the process.
    pub fn replay_tick_input(&mut self, r: Replayed) {
        self.replayed = Some(r);
    }

    /// A replay: copier mode's tick as recorded.
    fn replay_copier_tick(
        &mut self,
        t: CopierTick,
        plan: Option<crate::pgdata::backup_size::Plan>,
        now: u64,
    ) {
        let Some(c) = self.model.copier.as_mut() else {
            return;
        };
        c.name = t.name;
        if let Some(plan) = plan {
            c.set_plan(plan);
        }
        c.sample(&t.samples, now, t.interval_ns);
        if t.server_changed {
            self.model.set_server_backup(t.server.as_ref());
        }
    }

    /// A replay's recorded wait rounds, folded as live.
    fn apply_wait_rounds(&mut self, w: &WaitRounds) {
        if self.model.waits.hz != w.hz {
            self.model.waits = crate::model::waits::Waits::new(w.hz);
        }
        for r in &w.rounds {
            self.model.waits.add(r);
        }
    }

    /// The walk's total the backup got, if any.
    fn walked(&self) -> Option<Walked> {
        let b = self.model.backup.as_ref()?;
        Some(Walked {
            bytes: b.walked_total?,
            tablespaces: b.tablespaces_total,
        })
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
                // The followers already found (a parallel query's workers at attach).
                w.set_pids(std::iter::once(self.pid).chain(live.followers.keys().copied()));
                self.model.waits = crate::model::waits::Waits::new(hz);
                self.waits = Some(w);
            }
            Err(e) => self.notes.push(format!("no wait profile: {e}")),
        }
    }

    /// The rounds sampled since the last tick, into the model; kept for a recording.
    fn sample_waits(&mut self) -> Option<WaitRounds> {
        let w = self.waits.as_mut()?;
        if let Some(live) = &self.live {
            w.set_pids(std::iter::once(self.pid).chain(live.followers.keys().copied()));
        }
        let (rounds, why) = w.take();
        if let Some(why) = why {
            self.notes.push(why);
        }
        for r in &rounds {
            self.model.waits.add(r);
        }
        (self.recorder.is_some() && !rounds.is_empty()).then_some(WaitRounds {
            hz: self.model.waits.hz,
            rounds,
        })
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
    /// Copier mode's tick, live: the plan when its walk is done, the processes from
    /// /proc, the server's side. What it applied, for a recording.
    fn copier_tick(
        &mut self,
        now: u64,
    ) -> Option<(CopierTick, Option<crate::pgdata::backup_size::Plan>)> {
        let live = self.live.as_mut()?;
        let c = live.copier.as_mut()?;
        let model_copier = self.model.copier.as_mut()?;
        let mut came = None;
        if c.plan.as_ref().is_some_and(|h| h.is_finished()) {
            if let Some(plan) = c.plan.take().and_then(|h| h.join().ok()) {
                if plan.truncated {
                    self.notes.push(
                        "copier mode: the data directory has more files than pg_trace walks; totals are a floor".into(),
                    );
                }
                // Kept for the recording only when recording: a plan can be millions of files.
                if self.recorder.is_some() {
                    came = Some(plan.clone());
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
        let name = model_copier.name.clone();
        let server = c.server.poll(now);
        if let Some(b) = &server {
            self.model.set_server_backup(b.as_ref());
        }
        let tick = CopierTick {
            name,
            plan: came.is_some(),
            samples,
            interval_ns: interval,
            server_changed: server.is_some(),
            server: server.flatten(),
        };
        Some((tick, came))
    }

    /// Parallel workers and io workers of a live leader come and go; a copier's children
    /// too.
    fn follow(&mut self) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        // Until a tracer is live there is nothing to add followers to.
        if self.tracer_name == ATTACHING {
            return;
        }
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
        if !gone.is_empty() {
            // The kernel's times of a follower are forgotten with it: read them first,
            // or what it ran since the last tick is lost (its last interval said 0 s).
            self.kernel_times();
        }
        let Some(live) = self.live.as_mut() else {
            return;
        };
        for p in gone {
            live.followers.remove(&p);
            self.tracer.remove_pid(p);
            if let Some(c) = live.copier.as_mut() {
                c.cwds.remove(&p);
            }
        }
        // Sampled from now, as the kernel counts them, not from the next tick: a window
        // of its samples shorter than its kernel times' would not add up.
        if let Some(w) = &self.waits {
            w.set_pids(std::iter::once(self.pid).chain(live.followers.keys().copied()));
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
        self.finish_undrained();
        Ok(())
    }

    /// The last tick without draining the tracer (a deadline: what is still queued is
    /// after it).
    pub fn finish_undrained(&mut self) {
        let at = self.clock.now_ns();
        self.model.tick(at, &mut self.namer);
        if let Some(rec) = self.recorder.as_mut() {
            rec.write(Some(at), &ItemRef::Finish { at });
            write_names(rec, &mut self.namer);
        }
    }

    pub fn detach(&mut self) {
        // An attach still under way: what it attaches is dropped as it is handed over.
        self.pending = None;
        self.waits = None;
        self.tracer.detach();
    }
}

/// The namer's answers since the last step, as the line after it.
/// A copier's plan, in parts of bounded size, before the tick it came at.
fn write_plan(rec: &mut Recorder, plan: &crate::pgdata::backup_size::Plan) {
    let mut parts = plan.files.chunks(super::record::PLAN_PART_FILES).peekable();
    let mut first = true;
    // An empty plan is still one part: the tick says a plan came.
    while first || parts.peek().is_some() {
        let files = parts.next().unwrap_or(&[]);
        rec.write(
            None,
            &ItemRef::PlanPart {
                files,
                tablespaces: first.then_some(plan.tablespaces.as_slice()),
                truncated: plan.truncated,
            },
        );
        first = false;
    }
}

fn write_names(rec: &mut Recorder, namer: &mut Naming) {
    if let Some(tape) = namer.tape.as_mut().filter(|t| !t.is_empty()) {
        rec.write(None, &ItemRef::Names { answers: tape });
        tape.clear();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgdata::backup_size::{Plan, PlannedFile};
    use crate::session::record::names::RecordedNamer;
    use crate::session::record::RecordOptions;
    use crate::session::replay::{Player, Step};
    use crate::trace::replay::{ManualClock, ReplayTracer};

    /// A copier's plan of 200,001 files is recorded in parts (over more than one frame)
    /// and a replay sets it whole at the tick it came.
    #[test]
    fn a_big_plan_is_recorded_in_parts_and_replayed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.pgtrace");
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::starting_at(1_000));
        let s = Session::replay(Replay {
            pid: 7,
            title: "tar".into(),
            datadir: "/d".into(),
            major: 15,
            segment_bytes: 1 << 30,
            namer: Box::new(RecordedNamer::default()),
            tracer: Box::new(ReplayTracer::new(Vec::new(), clock.clone())),
            clock,
        });
        let mut h = s.recording_header();
        h.copier = true;
        h.copier_name = Some("tar".into());
        let opts = RecordOptions {
            path: path.clone(),
            force: false,
            keep: None,
            dump_on_stall: false,
        };
        let mut rec = Recorder::start(&opts, h).unwrap();
        const FILES: u64 = 200_001;
        let plan = Plan {
            files: (0..FILES)
                .map(|i| PlannedFile {
                    rel: format!("base/5/{i}"),
                    size: 8192,
                    tablespace: 0,
                })
                .collect(),
            tablespaces: vec![String::new()],
            truncated: false,
        };
        write_plan(&mut rec, &plan);
        let tick = CopierTick {
            name: "tar".into(),
            plan: true,
            samples: Vec::new(),
            interval_ns: 0,
            server_changed: false,
            server: None,
        };
        rec.write(
            Some(2_000),
            &ItemRef::Tick {
                at: 2_000,
                status: None,
                walked: None,
                waits: None,
                copier: Some(&tick),
            },
        );
        rec.write(Some(3_000), &ItemRef::End { at: 3_000 });
        rec.close().unwrap();
        let (mut p, mut session) = Player::open(&path).unwrap();
        assert!(p.rec.frames.len() > 1, "{} frames", p.rec.frames.len());
        let mut ticks = 0;
        while let Some(step) = p.step(&mut session, &mut |_, _, _| Ok(())).unwrap() {
            if let Step::Tick(at) = step {
                session.tick(at);
                ticks += 1;
            }
        }
        assert_eq!(ticks, 1);
        let c = session.model.copier.as_ref().unwrap();
        assert_eq!(c.name, "tar");
        assert_eq!(c.files_total, FILES);
        assert_eq!(c.bytes_total, FILES * 8192);
    }
}
