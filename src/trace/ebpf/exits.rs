//! The eBPF exit hook's user side: `pgt_process_exit` (in `bpf/syscalls.bpf.c`) runs when
//! the last thread of a followed process exits, takes its pid out of the filter in the
//! kernel, and writes a record to the `exits` ring buffer. Here: attach it, drain that
//! ring buffer *before* the events one (see `bpf/syscalls.bpf.c` for why that order makes
//! the exit exact), and decode the records into [`EventKind::Exit`].

use std::sync::{Arc, Mutex};

use anyhow::anyhow;
use libbpf_rs::{Link, RingBuffer, RingBufferBuilder};

use super::skel::SyscallsSkel;
use crate::trace::{Event, EventKind, Pid};

/// The record layout of `struct pgt_exit`.
const EXIT_RECORD: usize = 16;

/// One `exits` record; None when garbled (never panics).
pub(super) fn decode_exit(data: &[u8]) -> Option<Event> {
    if data.len() != EXIT_RECORD {
        return None;
    }
    let ts_ns = u64::from_le_bytes(data.get(0..8)?.try_into().ok()?);
    let tgid = u32::from_le_bytes(data.get(8..12)?.try_into().ok()?);
    let status = u32::from_le_bytes(data.get(12..16)?.try_into().ok()?);
    let pid = Pid::try_from(tgid).ok().filter(|&p| p > 0)?;
    // wait(2)'s status word: the low 7 bits are the killing signal, else bits 8-15 are
    // the exit code (bit 7 is "core dumped").
    let signal = (status & 0x7f) as i32;
    let kind = if signal != 0 {
        EventKind::Exit {
            code: None,
            signal: Some(signal),
        }
    } else {
        EventKind::Exit {
            code: Some(((status >> 8) & 0xff) as i32),
            signal: None,
        }
    };
    Some(Event { ts_ns, pid, kind })
}

/// The attached exit hook and its ring buffer. Field order is drop order: the link
/// first, so that nothing writes to the ring buffer as it goes.
pub(super) struct ExitWatch {
    link: Option<Link>,
    ring: RingBuffer<'static>,
    /// Filled by the ring-buffer callback (exits are rare: a lock costs nothing here, and
    /// keeps the tracer `Send`).
    decoded: Arc<Mutex<Vec<Event>>>,
    garbled: Arc<Mutex<u64>>,
}

impl ExitWatch {
    /// Attaches `pgt_process_exit`. Without it pids could be reused under us: eBPF then
    /// does not attach at all (and `auto` falls back to ptrace).
    pub(super) fn attach(skel: &SyscallsSkel<'static>) -> anyhow::Result<ExitWatch> {
        let decoded = Arc::new(Mutex::new(Vec::new()));
        let garbled = Arc::new(Mutex::new(0u64));
        let (sink, bad) = (Arc::clone(&decoded), Arc::clone(&garbled));
        let mut builder = RingBufferBuilder::new();
        builder
            .add(&skel.maps.exits, move |data: &[u8]| {
                match decode_exit(data) {
                    Some(ev) => {
                        if let Ok(mut v) = sink.lock() {
                            v.push(ev);
                        }
                    }
                    None => {
                        if let Ok(mut n) = bad.lock() {
                            *n += 1;
                        }
                    }
                }
                0
            })
            .map_err(|e| anyhow!("eBPF unavailable: cannot use the exits ring buffer ({e})"))?;
        let ring = builder
            .build()
            .map_err(|e| anyhow!("eBPF unavailable: cannot map the exits ring buffer ({e})"))?;
        let link = skel.progs.pgt_process_exit.attach().map_err(|e| {
            let detail = crate::trace::libbpf::last_message().unwrap_or_else(|| e.to_string());
            anyhow!(
                "eBPF unavailable: attaching to the sched_process_exit tracepoint failed \
                 ({detail}); without it a reused pid could be traced"
            )
        })?;
        Ok(ExitWatch {
            link: Some(link),
            ring,
            decoded,
            garbled,
        })
    }

    /// The exits recorded so far, oldest first, and how many records were garbled. Call
    /// before draining the events ring buffer.
    pub(super) fn drain(&self) -> (Vec<Event>, u64) {
        let _ = self.ring.consume_raw();
        let exits = self
            .decoded
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        let garbled = self
            .garbled
            .lock()
            .map(|mut n| std::mem::take(&mut *n))
            .unwrap_or_default();
        (exits, garbled)
    }

    /// Stops the hook (idempotent).
    pub(super) fn detach(&mut self) {
        drop(self.link.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(ts: u64, tgid: u32, status: u32) -> Vec<u8> {
        let mut r = ts.to_le_bytes().to_vec();
        r.extend_from_slice(&tgid.to_le_bytes());
        r.extend_from_slice(&status.to_le_bytes());
        r
    }

    #[test]
    fn exit_codes_and_signals() {
        let e = decode_exit(&record(5, 4242, 1 << 8)).unwrap();
        assert_eq!((e.ts_ns, e.pid), (5, 4242));
        assert_eq!(
            e.kind,
            EventKind::Exit {
                code: Some(1),
                signal: None
            }
        );
        // SIGKILL; SIGSEGV with a core dump.
        for (status, sig) in [(9, 9), (0x80 | 11, 11)] {
            assert_eq!(
                decode_exit(&record(5, 7, status)).unwrap().kind,
                EventKind::Exit {
                    code: None,
                    signal: Some(sig)
                }
            );
        }
        assert!(decode_exit(&record(5, 0, 0)).is_none());
        assert!(decode_exit(&record(5, u32::MAX, 0)).is_none());
        assert!(decode_exit(&record(5, 7, 0)[..15]).is_none());
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = decode_exit(&data);
        }
    }
}
