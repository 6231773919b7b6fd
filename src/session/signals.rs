//! Signals while attached: Ctrl-C, SIGTERM and SIGHUP become a stop flag the loops look at
//! (so they detach before exiting); Ctrl-Z and background terminal access are refused.

use anyhow::Result;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

/// SIGUSR1 asks a ring recorder to write its window out: a flag the session takes at its
/// next tick. Registered only when a ring runs (otherwise SIGUSR1 keeps its default).
pub fn dump_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(&flag))?;
    Ok(flag)
}
