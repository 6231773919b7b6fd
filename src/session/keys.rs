//! Terminal input on a thread of its own. crossterm's reader loops forever on a terminal
//! that hung up (its inner read loop takes a 0-byte read for "more to come"), so reading
//! keys on the UI thread would freeze the loop that must notice the hangup, detach from
//! the traced process and exit. Here a spinning reader only burns its own thread until the
//! process exits, and the UI loop checks the terminal itself.

use anyhow::{anyhow, Result};
use ratatui::crossterm::event::{self, Event};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::time::Duration;

pub struct Keys {
    rx: Receiver<std::io::Result<Event>>,
}

impl Keys {
    pub fn start() -> Keys {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("pg_trace-keys".into())
            .spawn(move || loop {
                let ev = event::read();
                let failed = ev.is_err();
                if tx.send(ev).is_err() || failed {
                    return;
                }
            })
            .expect("spawn the key reader thread");
        Keys { rx }
    }

    /// The next terminal event, waiting at most `wait`.
    pub fn next(&self, wait: Duration) -> Result<Option<Event>> {
        match self.rx.recv_timeout(wait) {
            Ok(ev) => Ok(Some(ev?)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(anyhow!("terminal input closed")),
        }
    }

    /// An event already typed, without waiting.
    pub fn ready(&self) -> Result<Option<Event>> {
        match self.rx.try_recv() {
            Ok(ev) => Ok(Some(ev?)),
            Err(TryRecvError::Empty) => Ok(None),
            Err(TryRecvError::Disconnected) => Err(anyhow!("terminal input closed")),
        }
    }
}

/// True when the terminal the TUI draws on (stdout) has hung up: ssh dropped, terminal
/// window closed. Asked of stdout, not stdin, which may be a pipe that simply ended.
pub fn hung_up() -> bool {
    let mut p = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: poll(2) on one pollfd we own, with a zero timeout: it only fills `revents`.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
}
