//! A trace session in line mode: attach, fold events into the model, print on a timer,
//! detach on every way out (tracee exit, Ctrl-C, SIGTERM, SIGHUP, --duration, error).

use crate::cli::{BackendChoice, Format};
use crate::model::Model;
use crate::naming::CatalogNamer;
use crate::output::trace as out;
use crate::pgdata::{DataDir, Resolver};
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
}

/// Try each method in turn for `auto`; say once why each fallback happened.
pub fn attach(choice: BackendChoice, pid: Pid) -> Result<Box<dyn Tracer>> {
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
        BackendChoice::Usdt => {
            bail!("the USDT backend is not built yet; use --backend ebpf, ptrace or procfs")
        }
        BackendChoice::Auto => match ebpf() {
            Ok(t) => Ok(t),
            Err(e) => {
                eprintln!("pg_trace: {e:#}; falling back to ptrace");
                match ptrace() {
                    Ok(t) => Ok(t),
                    Err(e) => {
                        eprintln!("pg_trace: {e:#}; falling back to /proc polling");
                        procfs()
                    }
                }
            }
        },
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn stop_flag() -> Result<Arc<AtomicBool>> {
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

pub fn run(opts: Options) -> Result<()> {
    let dd = DataDir::from_pid(opts.pid)?;
    if !is_root() {
        bail!(
            "pg_trace must run as root to attach to pid {} (try sudo)",
            opts.pid
        );
    }
    let stop = stop_flag()?;
    let mut namer = CatalogNamer::new(Resolver::new(&dd)?);
    let mut tracer = attach(opts.backend, opts.pid)?;
    let result = trace_loop(&opts, &dd, tracer.as_mut(), &mut namer, &stop);
    tracer.detach();
    result
}

fn trace_loop(
    opts: &Options,
    dd: &DataDir,
    tracer: &mut dyn Tracer,
    namer: &mut CatalogNamer,
    stop: &AtomicBool,
) -> Result<()> {
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    let mut model = Model::new(opts.pid, dd.control.segment_bytes());
    let start = monotonic_ns();
    let title = follow::process_title(opts.pid).unwrap_or_default();
    let limitations = tracer.limitations();
    match opts.format {
        Format::Json => {
            let v = serde_json::json!({
                "type": "attach",
                "pid": opts.pid,
                "title": title,
                "backend": tracer.name(),
                "limitations": limitations,
                "datadir": dd.root,
                "major": dd.major,
            });
            serde_json::to_writer(&mut w, &v)?;
            w.write_all(b"\n")?;
        }
        Format::Text => {
            writeln!(
                w,
                "pg_trace: pid {} ({title}), {} via {}, PostgreSQL {}",
                opts.pid,
                dd.root.display(),
                tracer.name(),
                dd.major
            )?;
            for l in &limitations {
                writeln!(w, "pg_trace: note: {l}")?;
            }
        }
    }
    // Files opened before we came (the lsof step): named at once.
    let mut batch = Vec::new();
    procfs::snapshot(opts.pid, &mut batch)?;
    let mut followers: BTreeSet<Pid> = BTreeSet::new();
    let poll_every = opts.interval.min(Duration::from_millis(100));
    let mut next_print = start + opts.interval.as_nanos() as u64;
    let mut last_print = start;
    let mut last_events = 0u64;
    let mut first = true;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        tracer.poll(&mut batch)?;
        for ev in batch.drain(..) {
            if opts.debug && matches!(ev.kind, EventKind::Close { .. }) {
                out::write_syscall(&mut w, &model, &ev, opts.format)?;
            }
            model.apply(&ev, namer);
            if opts.debug
                && !matches!(
                    ev.kind,
                    EventKind::Close { .. } | EventKind::FileState { .. }
                )
            {
                out::write_syscall(&mut w, &model, &ev, opts.format)?;
            }
        }
        let now = monotonic_ns();
        // eBPF has no exit notification of its own: /proc tells.
        if !model.leader_exited() && !std::path::Path::new(&format!("/proc/{}", opts.pid)).exists()
        {
            model.apply(
                &Event {
                    ts_ns: now,
                    pid: opts.pid,
                    kind: EventKind::Exit {
                        code: None,
                        signal: None,
                    },
                },
                namer,
            );
        }
        let done = stopping
            || model.leader_exited()
            || opts
                .duration
                .is_some_and(|d| now.saturating_sub(start) >= d.as_nanos() as u64);
        if now >= next_print || done {
            for (pid, role) in follow::find_followers(opts.pid) {
                if followers.insert(pid) && tracer.add_pid(pid).is_ok() {
                    batch.push(follower_event(pid, opts.pid, role));
                    let _ = procfs::snapshot(pid, &mut batch);
                }
            }
            let gone: Vec<Pid> = followers
                .iter()
                .copied()
                .filter(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
                .collect();
            for p in gone {
                followers.remove(&p);
                tracer.remove_pid(p);
            }
            model.tick(now, namer);
            let dt = now.saturating_sub(last_print).max(1) as f64 / 1e9;
            let eps = (model.events - last_events) as f64 / dt;
            out::write_interval(&mut w, &model, last_print, now, eps, opts.format, first)?;
            first = false;
            last_print = now;
            last_events = model.events;
            next_print = now + opts.interval.as_nanos() as u64;
        }
        if done {
            break;
        }
        std::thread::sleep(poll_every);
    }
    // Whatever is still queued, then the summary.
    tracer.poll(&mut batch)?;
    for ev in batch.drain(..) {
        model.apply(&ev, namer);
    }
    let now = monotonic_ns();
    model.tick(now, namer);
    write_summary(&mut w, &model, now, opts.format)?;
    w.flush()?;
    Ok(())
}

fn write_summary(w: &mut impl Write, model: &Model, now: u64, format: Format) -> Result<()> {
    let leader = model.procs.get(&model.leader);
    match format {
        Format::Json => {
            for r in model.relations.values() {
                let mut v = out::progress_record(model, r, now);
                v["final"] = serde_json::json!(true);
                serde_json::to_writer(&mut *w, &v)?;
                w.write_all(b"\n")?;
            }
            let v = serde_json::json!({
                "type": "summary",
                "pid": model.leader,
                "exited": leader.is_some_and(|p| p.exited),
                "exit_code": leader.and_then(|p| p.exit_code),
                "exit_signal": leader.and_then(|p| p.exit_signal),
                "events": model.events,
                "lost": model.lost,
                "relations": model.relations.len(),
            });
            serde_json::to_writer(&mut *w, &v)?;
            w.write_all(b"\n")?;
        }
        Format::Text => {
            let touched = model
                .relations
                .values()
                .filter(|r| r.bytes_read + r.bytes_written > 0)
                .count();
            writeln!(
                w,
                "pg_trace: summary: {} events, {touched} relations read or written",
                model.events
            )?;
            for r in model
                .relations
                .values()
                .filter(|r| r.bytes_read + r.bytes_written > 0)
            {
                writeln!(
                    w,
                    "    {} ({}): read {}, written {}, reached {}",
                    r.id.label,
                    r.id.kind.unwrap_or("relation"),
                    out::human_bytes(r.bytes_read),
                    out::human_bytes(r.bytes_written),
                    r.percent()
                        .map(|p| format!("{p:.1}%"))
                        .unwrap_or_else(|| "?".into())
                )?;
            }
            if leader.is_some_and(|p| p.exited) {
                writeln!(w, "pg_trace: pid {} exited", model.leader)?;
            }
        }
    }
    Ok(())
}
