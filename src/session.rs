//! A trace session in line mode: attach, fold events into the model, print on a timer,
//! detach on every way out (tracee exit, Ctrl-C, SIGTERM, SIGHUP, --duration, error).

use crate::cli::{BackendChoice, Format};
use crate::model::Model;
use crate::naming::CatalogNamer;
use crate::output::trace as out;
use crate::pgdata::{DataDir, Resolver};
use crate::trace::combined::Combined;
use crate::trace::usdt::{UsdtConfig, UsdtStatus, UsdtTracer};
use crate::trace::{follow, monotonic_ns, procfs, Event, EventKind, FollowerRole, Pid, Tracer};
use anyhow::{bail, Result};
use std::collections::BTreeSet;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Options {
    pub pid: Pid,
    pub backend: BackendChoice,
    pub interval: Duration,
    pub duration: Option<Duration>,
    pub format: Format,
    pub debug: bool,
    pub usdt: UsdtConfig,
    /// Do not read the backend's status from memory.
    pub no_memory: bool,
}

/// Try each method in turn for `auto`; say once on stderr why each fallback happened.
/// USDT with the defaults; see [`attach_with`].
pub fn attach(choice: BackendChoice, pid: Pid) -> Result<Box<dyn Tracer>> {
    let major = DataDir::from_pid(pid)?.major;
    let mut note = |n: String| eprintln!("pg_trace: {n}");
    Ok(attach_with(choice, pid, major, &UsdtConfig::default(), &mut note)?.0)
}

/// The syscall tracer `auto` picks: eBPF, else ptrace, else /proc polling. Why a method
/// was passed over goes to `note` (the TUI owns the terminal: no stderr there).
fn syscall_tracer(
    choice: BackendChoice,
    pid: Pid,
    note: &mut dyn FnMut(String),
) -> Result<Box<dyn Tracer>> {
    let ebpf = || -> Result<Box<dyn Tracer>> {
        Ok(Box::new(crate::trace::ebpf::EbpfTracer::attach(&[pid])?))
    };
    let ptrace = || -> Result<Box<dyn Tracer>> {
        Ok(Box::new(crate::trace::ptrace::PtraceTracer::attach(&[
            pid,
        ])?))
    };
    let procfs =
        || -> Result<Box<dyn Tracer>> { Ok(Box::new(procfs::ProcfsTracer::attach(&[pid])?)) };
    match choice {
        BackendChoice::Ebpf => ebpf(),
        BackendChoice::Ptrace => ptrace(),
        BackendChoice::Procfs => procfs(),
        BackendChoice::Usdt | BackendChoice::Auto => match ebpf() {
            Ok(t) => Ok(t),
            Err(e) => {
                note(format!("{e:#}; falling back to ptrace"));
                match ptrace() {
                    Ok(t) => Ok(t),
                    Err(e) => {
                        note(format!("{e:#}; falling back to /proc polling"));
                        procfs()
                    }
                }
            }
        },
    }
}

/// `--backend usdt`: USDT alone, or one clear error. `auto`: the syscall tracer plus USDT
/// when the binary has probes (else it says once why not and carries on). An explicit
/// syscall backend runs alone.
pub fn attach_with(
    choice: BackendChoice,
    pid: Pid,
    major: u32,
    usdt: &UsdtConfig,
    note: &mut dyn FnMut(String),
) -> Result<(Box<dyn Tracer>, UsdtStatus)> {
    match choice {
        BackendChoice::Usdt => {
            if !usdt.enabled {
                bail!("--backend usdt and --no-usdt contradict each other");
            }
            let t = UsdtTracer::attach(pid, major, &usdt.probes)?;
            let status = t.status();
            Ok((Box::new(t), status))
        }
        BackendChoice::Auto => {
            let sys = syscall_tracer(choice, pid, note)?;
            if !usdt.enabled {
                return Ok((sys, UsdtStatus::off("disabled with --no-usdt")));
            }
            match UsdtTracer::attach(pid, major, &usdt.probes) {
                Ok(u) => {
                    let status = u.status();
                    let name = match sys.name() {
                        "ebpf" => "ebpf+usdt",
                        "ptrace" => "ptrace+usdt",
                        _ => "procfs+usdt",
                    };
                    Ok((
                        Box::new(Combined::new(name, vec![sys, Box::new(u)])),
                        status,
                    ))
                }
                Err(e) => {
                    let why = format!("{e:#}");
                    note(format!("{why}; carrying on with {} alone", sys.name()));
                    Ok((sys, UsdtStatus::off(why)))
                }
            }
        }
        other => {
            let sys = syscall_tracer(other, pid, note)?;
            let why = format!("not used with --backend {}", sys.name());
            Ok((sys, UsdtStatus::off(why)))
        }
    }
}

pub fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    // Ctrl-Z would stop pg_trace while attached; a stopped ptrace tracer freezes the
    // backend at its next syscall. Refuse it: registering a handler replaces the default
    // stop action.
    // Likewise a background pg_trace touching the terminal (SIGTTOU/SIGTTIN) would stop;
    // ignored, the write goes through (or a read fails) and pg_trace runs on.
    for sig in [libc::SIGTTOU, libc::SIGTTIN] {
        // SAFETY: setting a standard signal's disposition to SIG_IGN has no preconditions.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    let tstp = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTSTP, Arc::clone(&tstp))?;
    std::thread::spawn(move || loop {
        if tstp.swap(false, Ordering::Relaxed) {
            eprintln!("pg_trace: Ctrl-Z ignored while attached (it could freeze the traced backend); Ctrl-C detaches and quits");
        }
        std::thread::sleep(Duration::from_millis(200));
    });
    Ok(stop)
}

fn follower_event(pid: Pid, leader: Pid, role: FollowerRole) -> Event {
    Event {
        ts_ns: monotonic_ns(),
        pid,
        kind: EventKind::NewFollower { leader, role },
    }
}

/// One attached process: the tracer, the model it feeds, and the bookkeeping around them
/// (followers, exit detection). Line mode and the TUI both drive it: `poll` often,
/// `tick` once per display interval, `finish` at the end. Detaches on drop.
pub struct Session {
    pub pid: Pid,
    pub dd: DataDir,
    pub model: Model,
    pub namer: CatalogNamer,
    pub title: String,
    pub tracer_name: &'static str,
    pub limitations: Vec<String>,
    /// Whether USDT probes feed the model, and if not why.
    pub usdt: UsdtStatus,
    /// Things to tell the user once: why `auto` fell back from a better method, why
    /// memory reading failed... Line mode prints them on stderr, the TUI logs them.
    pub notes: Vec<String>,
    pub start_ns: u64,
    tracer: Box<dyn Tracer>,
    followers: BTreeSet<Pid>,
    batch: Vec<Event>,
    last_tick_ns: u64,
    last_tick_events: u64,
    /// Events per second over the last tick interval.
    pub events_per_s: f64,
    /// Status from shared memory: None until first used, or when off.
    status_reader: Option<crate::process::status::StatusReader>,
    /// Memory reading switched off (`--no-memory`) or failed; why, said once.
    pub memory_note: Option<String>,
    no_memory: bool,
    /// Our own walk of the data directory for a backup without a server estimate.
    walk: Option<std::thread::JoinHandle<crate::pgdata::backup_size::Walked>>,
}

impl Session {
    /// Check the target, attach, and take the startup snapshot of its open files.
    pub fn open(pid: Pid, backend: BackendChoice) -> Result<Session> {
        Session::open_with(pid, backend, &UsdtConfig::default())
    }

    /// [`Session::open`] with the USDT settings (`--no-usdt`, `--usdt-probes`).
    pub fn open_with(pid: Pid, backend: BackendChoice, usdt: &UsdtConfig) -> Result<Session> {
        let dd = DataDir::from_pid(pid)?;
        crate::process::proc::require_root(|| {
            format!("pg_trace must run as root to attach to pid {pid}")
        })?;
        let namer = CatalogNamer::new(Resolver::new(&dd)?);
        let mut notes = Vec::new();
        let (tracer, usdt) = attach_with(backend, pid, dd.major, usdt, &mut |n| notes.push(n))?;
        let mut model = Model::new(pid, dd.control.segment_bytes());
        let title = crate::process::proc::process_title(pid).unwrap_or_default();
        // A walsender may run a base backup: follow its syscalls for one from the start.
        model.expect_backup = title.contains("walsender");
        let start_ns = monotonic_ns();
        let mut batch = Vec::new();
        // Files opened before we came (the lsof step): named at once.
        procfs::snapshot(pid, &mut batch)?;
        Ok(Session {
            pid,
            title,
            tracer_name: tracer.name(),
            limitations: tracer.limitations(),
            usdt,
            notes,
            dd,
            model,
            namer,
            start_ns,
            tracer,
            followers: BTreeSet::new(),
            batch,
            last_tick_ns: start_ns,
            last_tick_events: 0,
            events_per_s: 0.0,
            status_reader: None,
            memory_note: None,
            no_memory: false,
            walk: None,
        })
    }

    /// Fold everything captured so far into the model. `each(model, event, applied)` is
    /// called for every event before (`applied` false) and after it is applied: `-d`
    /// names a closing fd before the close forgets it.
    pub fn poll(&mut self, mut each: impl FnMut(&Model, &Event, bool) -> Result<()>) -> Result<()> {
        self.tracer.poll(&mut self.batch)?;
        for ev in self.batch.drain(..) {
            each(&self.model, &ev, false)?;
            self.model.apply(&ev, &mut self.namer);
            each(&self.model, &ev, true)?;
        }
        // eBPF has no exit notification of its own: /proc tells.
        if !self.model.leader_exited() && !proc_exists(self.pid) {
            // Its last events may have reached the tracer after the drain above (a
            // walsender writes its backup history file and exits): they come first.
            self.tracer.poll(&mut self.batch)?;
            for ev in self.batch.drain(..) {
                each(&self.model, &ev, false)?;
                self.model.apply(&ev, &mut self.namer);
                each(&self.model, &ev, true)?;
            }
            let ev = Event {
                ts_ns: monotonic_ns(),
                pid: self.pid,
                kind: EventKind::Exit {
                    code: None,
                    signal: None,
                },
            };
            self.model.apply(&ev, &mut self.namer);
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
        self.no_memory = true;
        self.memory_note = Some("memory reading off (--no-memory)".into());
    }

    /// One status sample of the leader, named. Memory-reading failures degrade to a
    /// /proc-only sample and are reported once.
    fn sample_status(&mut self) -> Option<crate::process::status::StatusSample> {
        use crate::process::status::{
            kernel::KernelState, unix_now_us, StatusReader, StatusSample,
        };
        if self.model.leader_exited() {
            return None;
        }
        if !self.no_memory && self.status_reader.is_none() && self.memory_note.is_none() {
            match StatusReader::open(self.pid, self.dd.major) {
                Ok(r) => self.status_reader = Some(r),
                Err(e) => {
                    let note = format!("no status from memory: {e}");
                    self.notes.push(note.clone());
                    self.memory_note = Some(note);
                }
            }
        }
        let mut s = match self.status_reader.as_mut() {
            Some(r) => r.sample(self.pid),
            None => StatusSample {
                pid: self.pid,
                major: self.dd.major,
                kernel: KernelState::read(self.pid),
                sampled_at_us: unix_now_us(),
                title: crate::process::proc::process_title(self.pid),
                ..Default::default()
            },
        };
        let cat = self.namer.resolver().catalog();
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
        Some(s)
    }

    /// Once per display interval: pick up new followers, drop gone ones, advance rates.
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
        self.backup_total(now);
        for (pid, role) in follow::find_followers(self.pid) {
            if self.followers.insert(pid) && self.tracer.add_pid(pid).is_ok() {
                self.batch.push(follower_event(pid, self.pid, role));
                let _ = procfs::snapshot(pid, &mut self.batch);
            }
        }
        let gone: Vec<Pid> = self
            .followers
            .iter()
            .copied()
            .filter(|&p| !proc_exists(p))
            .collect();
        for p in gone {
            self.followers.remove(&p);
            self.tracer.remove_pid(p);
        }
        self.model.tick(now, &mut self.namer);
        let dt = now.saturating_sub(self.last_tick_ns).max(1) as f64 / 1e9;
        self.events_per_s = (self.model.events - self.last_tick_events) as f64 / dt;
        self.last_tick_ns = now;
        self.last_tick_events = self.model.events;
    }

    /// Without a server estimate of a backup's size, walk the data directory ourselves
    /// (on a thread: a big cluster has many files).
    fn backup_total(&mut self, _now: u64) {
        let Some(b) = self.model.backup.as_mut() else {
            return;
        };
        let needed = b.server_total.is_none()
            && b.walked_total.is_none()
            && (b.phase >= 3 || b.source == crate::model::backup::Source::Inferred);
        if needed && self.walk.is_none() {
            let root = self.dd.root.clone();
            self.walk = Some(std::thread::spawn(move || {
                crate::pgdata::backup_size::walk(&root)
            }));
        }
        if self.walk.as_ref().is_some_and(|h| h.is_finished()) {
            if let Some(w) = self.walk.take().and_then(|h| h.join().ok()) {
                b.walked_total = Some(w.bytes);
                b.tablespaces_total.get_or_insert(w.tablespaces);
            }
        }
    }

    /// Whatever is still queued, then a last tick.
    pub fn finish(&mut self) -> Result<()> {
        self.poll(|_, _, _| Ok(()))?;
        self.model.tick(monotonic_ns(), &mut self.namer);
        Ok(())
    }

    pub fn detach(&mut self) {
        self.tracer.detach();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.tracer.detach();
    }
}

fn proc_exists(pid: Pid) -> bool {
    crate::process::proc::exists(pid)
}

/// Line mode: text or NDJSON on stdout until the process exits, a stop signal, or
/// `--duration`.
pub fn run(opts: Options) -> Result<()> {
    let stop = stop_flag()?;
    let mut session = Session::open_with(opts.pid, opts.backend, &opts.usdt)?;
    if opts.no_memory {
        session.disable_memory();
    }
    for n in session.take_notes() {
        eprintln!("pg_trace: {n}");
    }
    let result = line_loop(&opts, &mut session, &stop);
    session.detach();
    result
}

fn line_loop(opts: &Options, s: &mut Session, stop: &AtomicBool) -> Result<()> {
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(crate::text::safe::SafeText::new(stdout.lock()));
    let title = &s.title;
    match opts.format {
        Format::Json => {
            let rec = out::attach_record(
                opts.pid,
                title,
                s.tracer_name,
                &s.limitations,
                &s.usdt,
                &s.dd.root,
                s.dd.major,
            );
            crate::output::record::write(&mut w, &rec)?;
        }
        Format::Text => {
            writeln!(
                w,
                "pg_trace: pid {} ({title}), {} via {}, PostgreSQL {}",
                opts.pid,
                s.dd.root.display(),
                s.tracer_name,
                s.dd.major
            )?;
            for l in &s.limitations {
                writeln!(w, "pg_trace: note: {l}")?;
            }
            if let Some(why) = &s.usdt.reason {
                writeln!(w, "pg_trace: USDT off: {why}")?;
            }
        }
    }
    let start = s.start_ns;
    let poll_every = opts.interval.min(Duration::from_millis(100));
    let mut next_print = start + opts.interval.as_nanos() as u64;
    let mut last_print = start;
    let mut first = true;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        s.poll(|model, ev, applied| {
            // A close is printed before it is applied (so its fd still has a name),
            // everything else after (so an open shows what it opened).
            let is_close = matches!(ev.kind, EventKind::Close { .. });
            let wanted = opts.debug
                && !matches!(ev.kind, EventKind::FileState { .. })
                && is_close != applied;
            if wanted {
                out::write_syscall(&mut w, model, ev, opts.format)?;
            }
            Ok(())
        })?;
        let now = monotonic_ns();
        let done = stopping
            || s.model.leader_exited()
            || opts
                .duration
                .is_some_and(|d| now.saturating_sub(start) >= d.as_nanos() as u64);
        if now >= next_print || done {
            s.tick(now);
            for n in s.take_notes() {
                eprintln!("pg_trace: {n}");
            }
            out::write_interval(
                &mut w,
                &s.model,
                last_print,
                now,
                s.events_per_s,
                opts.format,
                first,
            )?;
            first = false;
            last_print = now;
            next_print = now + opts.interval.as_nanos() as u64;
        }
        if done {
            break;
        }
        std::thread::sleep(poll_every);
    }
    s.finish()?;
    write_summary(&mut w, &s.model, monotonic_ns(), opts.format)?;
    w.flush()?;
    Ok(())
}

fn write_summary(w: &mut impl Write, model: &Model, now: u64, format: Format) -> Result<()> {
    let leader = model.procs.get(&model.leader);
    match format {
        Format::Json => {
            for rec in out::summary_records(model, now) {
                crate::output::record::write(&mut *w, &rec)?;
            }
        }
        Format::Text => {
            let touched = model.relations.values().filter(|r| r.touched()).count();
            writeln!(
                w,
                "pg_trace: summary: {} events, {touched} relations read or written",
                model.events
            )?;
            for r in model.relations.values().filter(|r| r.touched()) {
                writeln!(
                    w,
                    "    {} ({}): read {}, written {}, reached {}",
                    r.id.label,
                    r.id.kind.unwrap_or("relation"),
                    crate::text::human_bytes(r.bytes_read),
                    crate::text::human_bytes(r.bytes_written),
                    r.percent()
                        .map(|p| format!("{p:.1}%"))
                        .unwrap_or_else(|| "?".into())
                )?;
                if let Some(h) = r.hit_ratio() {
                    writeln!(
                        w,
                        "        {} blocks accessed ({:.1}% hit), {} distinct",
                        r.blocks_hit + r.blocks_read,
                        h * 100.0,
                        r.coverage.blocks()
                    )?;
                }
            }
            if leader.is_some_and(|p| p.exited) {
                writeln!(w, "pg_trace: pid {} exited", model.leader)?;
            }
        }
    }
    Ok(())
}
