//! Line mode: text or NDJSON until the process exits, a stop signal, or `--duration`.
//! The loop takes its session (live or replay), its output and its clock (the session's),
//! so whole runs are tested on scripted events.

use super::summary::write_summary;
use super::Session;
use crate::cli::BackendChoice;
use crate::model::lines::shows_syscall;
use crate::output::trace as out;
use crate::output::Format;
use crate::trace::usdt::UsdtConfig;
use crate::trace::Pid;
use anyhow::Result;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
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
    /// `--record FILE` / `pg_trace record`: the flight recorder.
    pub record: Option<super::record::RecordOptions>,
    /// `--io-latency`, `--exact-waits`.
    pub kernel: super::kernel_time::KernelOptions,
    /// `--sample-hz`: the wait profile's sampling rate.
    pub sample_hz: f64,
}

/// What the loop itself needs of the options.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub interval: Duration,
    pub duration: Option<Duration>,
    pub format: Format,
    pub debug: bool,
}

impl From<&Options> for Pace {
    fn from(o: &Options) -> Pace {
        Pace {
            interval: o.interval,
            duration: o.duration,
            format: o.format,
            debug: o.debug,
        }
    }
}

/// One interval's records, live or replayed: the model's, then the wait profile's (whose
/// interval then starts again).
pub(super) fn write_interval(
    w: &mut impl Write,
    s: &mut Session,
    since: u64,
    now: u64,
    format: Format,
    first: bool,
) -> Result<()> {
    out::write_interval(&mut *w, &s.model, since, now, s.events_per_s, format, first)?;
    let ts = now.saturating_sub(s.start_ns) as f64 / 1e9;
    crate::output::waits::write_interval(&mut *w, &s.model, since, now, ts, format)?;
    s.model.waits.next_interval();
    Ok(())
}

/// Attach, print on stdout until done, detach.
pub fn run(opts: Options) -> Result<()> {
    let stop = super::stop_flag()?;
    let mut session = Session::open_with(opts.pid, opts.backend, &opts.usdt, !opts.no_memory)?;
    let mut note = |n: String| eprintln!("pg_trace: {}", crate::text::visible(&n));
    // First, so that a recording's header carries the limitations they add.
    session.enable_kernel(&opts.kernel)?;
    if let Some(r) = &opts.record {
        session.record(r)?;
        note(super::record::started_note(r));
    }
    session.start_wait_sampling(opts.sample_hz);
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(crate::text::safe::SafeText::new(stdout.lock()));
    let result = line_loop(Pace::from(&opts), &mut session, &stop, &mut w, &mut note);
    session.detach();
    result
}

/// `pg_trace record`: line mode's loop with nothing printed but notes.
pub fn record(opts: Options) -> Result<()> {
    let stop = super::stop_flag()?;
    let mut session = Session::open_with(opts.pid, opts.backend, &opts.usdt, !opts.no_memory)?;
    let mut note = |n: String| eprintln!("pg_trace: {}", crate::text::visible(&n));
    session.enable_kernel(&opts.kernel)?;
    if let Some(r) = &opts.record {
        session.record(r)?;
        note(super::record::started_note(r));
    }
    session.start_wait_sampling(opts.sample_hz);
    let result = line_loop(
        Pace::from(&opts),
        &mut session,
        &stop,
        &mut std::io::sink(),
        &mut note,
    );
    session.detach();
    result
}

pub(crate) fn write_attach(w: &mut impl Write, s: &Session, format: Format) -> Result<()> {
    let title = &s.title;
    match format {
        Format::Json => {
            let rec = out::attach_record(
                s.pid,
                title,
                s.tracer_name,
                &s.limitations,
                s.usdt_record(),
                &s.datadir,
                s.major,
            );
            crate::output::record::write(&mut *w, &rec)?;
        }
        Format::Text => {
            writeln!(
                w,
                "pg_trace: pid {} ({}), {} via {}, PostgreSQL {}",
                s.pid,
                crate::text::visible(title),
                crate::text::visible(&s.datadir.to_string_lossy()),
                s.tracer_name,
                s.major
            )?;
            for l in &s.limitations {
                writeln!(w, "pg_trace: note: {}", crate::text::visible(l))?;
            }
            if let Some(why) = &s.usdt.reason {
                writeln!(w, "pg_trace: USDT off: {why}")?;
            }
        }
    }
    Ok(())
}

/// The loop: drain the tracer often, print once per interval, stop when the process
/// exits, on `stop`, or after the duration; then the summary. Notes meant for the user
/// (not the output) go to `note`. Time is the session's clock: a scripted clock makes
/// the run deterministic.
pub fn line_loop(
    pace: Pace,
    s: &mut Session,
    stop: &AtomicBool,
    w: &mut impl Write,
    note: &mut dyn FnMut(String),
) -> Result<()> {
    for n in s.take_notes() {
        note(n);
    }
    write_attach(w, s, pace.format)?;
    // Line mode is live: each record goes out when written, not when a buffer fills.
    w.flush()?;
    let clock = s.clock.clone();
    let start = s.start_ns;
    let interval_ns = u64::try_from(pace.interval.as_nanos()).unwrap_or(u64::MAX);
    let poll_every = pace.interval.min(Duration::from_millis(100));
    let mut next_print = start.saturating_add(interval_ns);
    let mut last_print = start;
    let mut first = true;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        s.poll(|model, ev, applied| {
            if pace.debug && shows_syscall(ev, applied) {
                out::write_syscall(&mut *w, model, ev, pace.format)?;
            }
            Ok(())
        })?;
        let now = clock.now_ns();
        let deadline = pace
            .duration
            .is_some_and(|d| now.saturating_sub(start) >= d.as_nanos() as u64);
        let done = stopping || s.model.leader_exited() || deadline;
        // At the deadline nothing more is drained: under a flood of events there is
        // always more, and `--duration` is a promise about when we stop.
        if done && !deadline {
            // Whatever reached the tracer since the drain above (the exit is often seen
            // before the last reads are drained) belongs to this last interval, not to
            // the summary only.
            s.poll(|model, ev, applied| {
                if pace.debug && shows_syscall(ev, applied) {
                    out::write_syscall(&mut *w, model, ev, pace.format)?;
                }
                Ok(())
            })?;
        }
        if now >= next_print || done {
            s.tick(now);
            for n in s.take_notes() {
                note(n);
            }
            write_interval(&mut *w, s, last_print, now, pace.format, first)?;
            w.flush()?;
            first = false;
            last_print = now;
            next_print = now.saturating_add(interval_ns);
        }
        if done {
            if deadline {
                s.finish_undrained();
            } else {
                s.finish()?;
            }
            break;
        }
        clock.sleep(poll_every);
    }
    let end = clock.now_ns();
    write_summary(&mut *w, &s.model, end, pace.format)?;
    w.flush()?;
    if let Some(path) = s.end_recording(end)? {
        note(format!("recorded to {}", path.display()));
    }
    Ok(())
}
