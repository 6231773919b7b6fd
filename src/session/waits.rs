//! The wait profile of a live session: the sampler thread on the traced process and its
//! followers, its rounds folded into the model once per tick.

use crate::model::waits::Waits;
use crate::process::status::sampler::{self, Round, Scope, WaitSampler};
use crate::process::status::StatusReader;
use crate::trace::Pid;
use anyhow::Result;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub struct WaitsLive {
    pids: Arc<Mutex<Vec<Pid>>>,
    rx: Receiver<Round>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Option<String>>>,
}

impl WaitsLive {
    /// Start sampling `pid` at `hz` (its status array read through its own memory).
    pub fn start(pid: Pid, major: u32, hz: f64) -> Result<WaitsLive> {
        let reader = StatusReader::open(pid, major)?;
        let pids = Arc::new(Mutex::new(vec![pid]));
        let mut sampler = WaitSampler::new(reader, Scope::Pids(Arc::clone(&pids)))?;
        sampler.prime()?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = sampler::spawn(sampler, hz, Arc::clone(&stop), tx)?;
        Ok(WaitsLive {
            pids,
            rx,
            stop,
            thread: Some(thread),
        })
    }

    /// The processes to sample from now on (the leader and its followers).
    pub fn set_pids(&self, pids: impl IntoIterator<Item = Pid>) {
        if let Ok(mut p) = self.pids.lock() {
            *p = pids.into_iter().collect();
        }
    }

    /// Fold every round taken since the last call; when the thread stopped on an error,
    /// why (said once).
    pub fn drain(&mut self, into: &mut Waits) -> Option<String> {
        for r in self.rx.try_iter() {
            into.add(&r);
        }
        if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
            let why = self.thread.take()?.join().ok().flatten();
            return why.map(|w| format!("wait sampling stopped: {w}"));
        }
        None
    }
}

impl Drop for WaitsLive {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
