//! The server's side of a low-level backup, polled for a traced process that takes part
//! in one (copier mode: tar, rsync, pgBackRest copying the data directory): read through
//! the server's postmaster, never through the copier, at most once a second.

use crate::pgdata::DataDir;
use crate::process::server_backup::{self, ServerBackup, Watch, XlogReader};
use crate::trace::Pid;
use std::path::PathBuf;

const POLL_NS: u64 = 1_000_000_000;

/// One cluster's low-level backup, followed.
pub struct ServerSide {
    root: PathBuf,
    major: u32,
    postmaster: Option<Pid>,
    xlog: Option<XlogReader>,
    watch: Watch,
    last_ns: Option<u64>,
}

impl ServerSide {
    pub fn new(dd: &DataDir) -> ServerSide {
        ServerSide {
            root: dd.root.clone(),
            major: dd.major,
            postmaster: None,
            xlog: None,
            watch: Watch::default(),
            last_ns: None,
        }
    }

    /// The backup now (or `done`, once, after it was seen), when a second has passed
    /// since the last look; `None`: not looked at this time.
    pub fn poll(&mut self, now_ns: u64) -> Option<Option<ServerBackup>> {
        if self
            .last_ns
            .is_some_and(|t| now_ns.saturating_sub(t) < POLL_NS)
        {
            return None;
        }
        self.last_ns = Some(now_ns);
        let now = self.read();
        Some(self.watch.observe(now))
    }

    fn read(&mut self) -> Option<ServerBackup> {
        // postmaster.pid names the server; re-read when the one known is gone (restart).
        if self
            .postmaster
            .map_or(true, |p| !crate::process::proc::exists(p))
        {
            self.xlog = None;
            self.postmaster = DataDir::open(&self.root)
                .ok()
                .and_then(|d| d.postmaster_pid().ok());
        }
        let pm = self.postmaster?;
        if self.xlog.is_none() {
            self.xlog = XlogReader::open(pm, self.major).ok();
        }
        let x = match self.xlog.as_ref().map(XlogReader::read) {
            Some(Ok(x)) => Some(x),
            Some(Err(_)) => {
                self.xlog = None;
                None
            }
            None => None,
        };
        let samples = crate::process::status::activity(pm, self.major).unwrap_or_default();
        server_backup::assess_files(&self.root, Some(pm), x.as_ref(), &samples)
    }
}
