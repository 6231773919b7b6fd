//! The server's side of a low-level backup, followed for a traced process that takes part
//! in one (copier mode: tar, rsync, pgBackRest copying the data directory): read through
//! the server's postmaster, never through the copier, once a second, on a thread of its
//! own so that a slow read of the server's memory never delays the copier's samples.

use crate::pgdata::DataDir;
use crate::process::server_backup::{self, ServerBackup, Watch, XlogReader};
use crate::trace::Pid;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

const POLL: Duration = Duration::from_secs(1);

/// One cluster's low-level backup, followed on a thread; stopped when dropped.
pub struct ServerSide {
    rx: mpsc::Receiver<Option<ServerBackup>>,
    stop: Arc<AtomicBool>,
}

impl ServerSide {
    pub fn new(dd: &DataDir) -> ServerSide {
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let mut reader = Reader {
            root: dd.root.clone(),
            major: dd.major,
            postmaster: None,
            xlog: None,
            watch: Watch::default(),
        };
        let flag = stop.clone();
        std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let now = reader.read();
                if tx.send(reader.watch.observe(now)).is_err() {
                    return;
                }
                // Sleep in steps: a session that ends stops the thread within 100 ms.
                for _ in 0..10 {
                    if flag.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(POLL / 10);
                }
            }
        });
        ServerSide { rx, stop }
    }

    /// The latest look at the backup (`done`, once, after it was seen) when one came in
    /// since the last call; `None`: nothing new.
    pub fn poll(&mut self, _now_ns: u64) -> Option<Option<ServerBackup>> {
        self.rx.try_iter().last()
    }
}

impl Drop for ServerSide {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Reader {
    root: PathBuf,
    major: u32,
    postmaster: Option<Pid>,
    xlog: Option<XlogReader>,
    watch: Watch,
}

impl Reader {
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
