//! I/O latency (`--io-latency`): the user side of `pgt_io_enter` / `pgt_io_exit` (in
//! `bpf/syscalls.bpf.c`, "I/O latency"). Every read, write and sync call of a traced
//! process is timed from its entry to its exit in the kernel, with whether its thread
//! slept in D state meanwhile (waited for the device, seen by the scheduler program); one
//! 48-byte record per call comes through the `io_lat` ring buffer and becomes an
//! [`EventKind::IoLatency`]. Opt-in: a second program at every system call's entry and
//! exit, and a record per call, cost the traced backend more than the default path.

use anyhow::anyhow;
use libbpf_rs::Link;

use super::skel::{OpenSyscallsSkel, SyscallsSkel};
use crate::trace::{Event, EventKind, IoOp, Pid};

/// `struct pgt_io_lat`.
const RECORD: usize = 48;
/// `flags` bit: the thread slept in D state during the call.
const F_DISK: u16 = 1;

/// What an x86_64 system call number times, as an operation.
fn op_of(nr: u32) -> Option<IoOp> {
    let nr = i64::from(nr);
    Some(match nr {
        libc::SYS_read
        | libc::SYS_pread64
        | libc::SYS_readv
        | libc::SYS_preadv
        | libc::SYS_preadv2 => IoOp::Read,
        libc::SYS_write
        | libc::SYS_pwrite64
        | libc::SYS_writev
        | libc::SYS_pwritev
        | libc::SYS_pwritev2 => IoOp::Write,
        libc::SYS_fsync | libc::SYS_fdatasync | libc::SYS_sync_file_range => IoOp::Fsync,
        _ => return None,
    })
}

/// One `io_lat` record; None when garbled (never panics). `classified`: whether the D
/// state flag means anything (the scheduler program runs).
pub(super) fn decode(data: &[u8], classified: bool) -> Option<Event> {
    if data.len() != RECORD {
        return None;
    }
    let u64_at = |o: usize| Some(u64::from_le_bytes(data.get(o..o + 8)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(data.get(o..o + 4)?.try_into().ok()?));
    let u16_at = |o: usize| Some(u16::from_le_bytes(data.get(o..o + 2)?.try_into().ok()?));
    let ts_ns = u64_at(0)?;
    let latency_ns = u64_at(8)?;
    let result = u64_at(16)? as i64;
    let pid = Pid::try_from(u32_at(24)?).ok().filter(|&p| p > 0)?;
    let fd = u32_at(32)? as i32;
    let nr = u32::from(u16_at(36)?);
    let flags = u16_at(38)?;
    let owner = Pid::try_from(u32_at(40)?).ok().filter(|&p| p > 0);
    let op = op_of(nr)?;
    Some(Event {
        ts_ns,
        pid,
        kind: EventKind::IoLatency {
            op,
            syscall_nr: nr,
            fd,
            latency_ns,
            result,
            disk: classified.then_some(flags & F_DISK != 0),
            owner,
        },
    })
}

/// Before the load: the block-layer program only on a kernel with its tracepoint (a
/// `tp_btf` program whose target is missing would fail the whole object's load). Its
/// type `btf_trace_block_bio_queue` in the kernel's BTF says; unknown, it is left out.
pub(super) fn configure(open: &mut OpenSyscallsSkel<'_>) {
    let has = libbpf_rs::btf::Btf::from_vmlinux().ok().is_some_and(|btf| {
        btf.type_by_name::<libbpf_rs::btf::types::Typedef<'_>>("btf_trace_block_bio_queue")
            .is_some()
    });
    open.progs.pgt_bio_queue.set_autoload(has);
}

/// The attached entry and exit programs and their ring buffer. Field order is drop
/// order: the links first.
pub(super) struct IoLatencyWatch {
    links: Vec<Link>,
    ring: super::decoded_ring::DecodedRing,
}

impl IoLatencyWatch {
    pub(super) fn attach(
        skel: &mut SyscallsSkel<'static>,
        classified: bool,
    ) -> anyhow::Result<IoLatencyWatch> {
        let ring = super::decoded_ring::DecodedRing::open(
            &skel.maps.io_lat,
            "--io-latency",
            move |data: &[u8]| decode(data, classified),
        )?;
        if let Some(bss) = skel.maps.bss_data.as_deref_mut() {
            super::store_shared(&mut bss.io_latency_on, 1);
        }
        let mut links = Vec::with_capacity(3);
        // Before the call programs: a call timed is never without its bio evidence.
        if skel.progs.pgt_bio_queue.autoload() {
            links.push(skel.progs.pgt_bio_queue.attach().map_err(|e| {
                let detail = crate::trace::libbpf::last_message().unwrap_or_else(|| e.to_string());
                anyhow!("--io-latency: attaching to block_bio_queue failed ({detail})")
            })?);
        }
        for (prog, name) in [
            (&skel.progs.pgt_io_exit, "sys_exit"),
            (&skel.progs.pgt_io_enter, "sys_enter"),
        ] {
            links.push(prog.attach().map_err(|e| {
                let detail = crate::trace::libbpf::last_message().unwrap_or_else(|| e.to_string());
                anyhow!("--io-latency: attaching to {name} failed ({detail})")
            })?);
        }
        Ok(IoLatencyWatch { links, ring })
    }

    /// The calls timed since the last drain, and how many records were garbled.
    pub(super) fn drain(&self, out: &mut Vec<Event>) -> u64 {
        self.ring.drain(out)
    }

    pub(super) fn detach(&mut self) {
        self.links.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(nr: u16, flags: u16) -> Vec<u8> {
        record_for(nr, flags, 0)
    }

    fn record_for(nr: u16, flags: u16, owner: u32) -> Vec<u8> {
        let mut r = 5u64.to_le_bytes().to_vec();
        r.extend_from_slice(&12_000u64.to_le_bytes());
        r.extend_from_slice(&8192i64.to_le_bytes());
        r.extend_from_slice(&4242u32.to_le_bytes());
        r.extend_from_slice(&4243u32.to_le_bytes());
        r.extend_from_slice(&7i32.to_le_bytes());
        r.extend_from_slice(&nr.to_le_bytes());
        r.extend_from_slice(&flags.to_le_bytes());
        r.extend_from_slice(&owner.to_le_bytes());
        r.extend_from_slice(&0u32.to_le_bytes());
        r
    }

    #[test]
    fn decodes_ops_and_the_disk_flag() {
        let e = decode(&record(libc::SYS_pread64 as u16, 1), true).unwrap();
        assert_eq!(e.pid, 4242);
        assert_eq!(
            e.kind,
            EventKind::IoLatency {
                op: IoOp::Read,
                syscall_nr: libc::SYS_pread64 as u32,
                fd: 7,
                latency_ns: 12_000,
                result: 8192,
                disk: Some(true),
                owner: None,
            }
        );
        // An io worker's read for traced process 77.
        let e = decode(&record_for(libc::SYS_pread64 as u16, 0, 77), true).unwrap();
        assert!(matches!(
            e.kind,
            EventKind::IoLatency {
                owner: Some(77),
                ..
            }
        ));
        let e = decode(&record(libc::SYS_fdatasync as u16, 0), false).unwrap();
        assert!(matches!(
            e.kind,
            EventKind::IoLatency {
                op: IoOp::Fsync,
                disk: None,
                ..
            }
        ));
        assert!(decode(&record(libc::SYS_openat as u16, 0), true).is_none());
        assert!(decode(&record(libc::SYS_read as u16, 0)[..47], true).is_none());
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&data, true);
        }
    }
}
