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
        WaitsLive::start_scope(pid, major, hz, false)
    }

    /// Start sampling every process of the cluster `via` belongs to.
    pub fn start_cluster(via: Pid, major: u32, hz: f64) -> Result<WaitsLive> {
        WaitsLive::start_scope(via, major, hz, true)
    }

    fn start_scope(pid: Pid, major: u32, hz: f64, cluster: bool) -> Result<WaitsLive> {
        let reader = StatusReader::open(pid, major)?;
        let pids = Arc::new(Mutex::new(vec![pid]));
        let scope = if cluster {
            Scope::Cluster
        } else {
            Scope::Pids(Arc::clone(&pids))
        };
        let mut sampler = WaitSampler::new(reader, scope)?;
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
        let (rounds, why) = self.take();
        for r in &rounds {
            into.add(r);
        }
        why
    }

    /// Every round taken since the last call (a recording keeps them); when the thread
    /// stopped on an error, why (said once).
    pub fn take(&mut self) -> (Vec<crate::process::status::sampler::Round>, Option<String>) {
        let rounds: Vec<_> = self.rx.try_iter().collect();
        (rounds, self.stopped())
    }

    fn stopped(&mut self) -> Option<String> {
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

/// The picker's top-wait column: one sampler per cluster whose memory is readable, its
/// last 10 s per process.
#[derive(Default)]
pub struct ClusterWaits {
    clusters: std::collections::HashMap<Pid, (WaitsLive, Waits)>,
    /// Clusters whose sampler could not start: not retried.
    failed: std::collections::HashSet<Pid>,
}

impl ClusterWaits {
    /// Fold what was sampled and write each process's top wait into `clusters`.
    pub fn update(&mut self, clusters: &mut [crate::process::list::PgCluster], hz: f64) {
        self.clusters
            .retain(|pm, _| clusters.iter().any(|c| c.postmaster == *pm));
        for c in clusters.iter_mut() {
            let Some(major) = c.major else { continue };
            // Only where the memory was read already (root, a supported major).
            if !c.processes.iter().any(|p| p.memory.is_some())
                || self.failed.contains(&c.postmaster)
            {
                continue;
            }
            let entry = match self.clusters.entry(c.postmaster) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    match WaitsLive::start_cluster(c.postmaster, major, hz) {
                        Ok(w) => v.insert((w, Waits::new(hz))),
                        Err(_) => {
                            self.failed.insert(c.postmaster);
                            continue;
                        }
                    }
                }
            };
            let (live, waits) = entry;
            if live.drain(waits).is_some() {
                self.failed.insert(c.postmaster);
            }
            for p in &mut c.processes {
                p.top_wait = waits.procs.get(&p.pid).and_then(|w| {
                    let recent = w.recent.profile();
                    let (k, share) = recent.top()?;
                    let name = match k {
                        Some(e) => e.name.clone(),
                        None => "CPU".into(),
                    };
                    Some(format!("{name} {:.0}%", 100.0 * share))
                });
            }
        }
        let failed = &self.failed;
        self.clusters.retain(|pm, _| !failed.contains(pm));
    }
}
