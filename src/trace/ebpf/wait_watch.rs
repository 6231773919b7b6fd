//! Exact wait transitions (`--exact-waits`): a hardware write watchpoint on the traced
//! backend's `PGPROC.wait_event_info`, one perf event per thread
//! (`PERF_TYPE_BREAKPOINT`, `HW_BREAKPOINT_W`, 4 bytes), each running `pgt_wait_watch`
//! (in `bpf/syscalls.bpf.c`, "Exact wait transitions"), which reads the value just
//! written and puts it with its time in the `wait_trans` ring buffer. Every wait start
//! and end, no sampling error; but every write traps (about 15 µs each on a VM), so it is
//! never on by default and the session says the expected cost first.

use anyhow::{anyhow, bail};
use libbpf_rs::Link;

use super::skel::SyscallsSkel;
use crate::trace::{Event, EventKind, Pid};

/// `struct pgt_wait_rec`.
const RECORD: usize = 16;

const PERF_TYPE_BREAKPOINT: u32 = 5;
const HW_BREAKPOINT_W: u32 = 2;
const HW_BREAKPOINT_LEN_4: u64 = 4;
/// PERF_ATTR_SIZE_VER5: every field up to `sample_max_stack`.
const ATTR_SIZE: usize = 112;
const FLAG_DISABLED: u64 = 1 << 0;
const FLAG_EXCLUDE_KERNEL: u64 = 1 << 5;
const FLAG_EXCLUDE_HV: u64 = 1 << 6;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;

/// `struct perf_event_attr` for a 4-byte write watchpoint at `addr`, as bytes (the
/// struct is not in libc; offsets from include/uapi/linux/perf_event.h).
fn breakpoint_attr(addr: u64) -> [u64; ATTR_SIZE / 8] {
    let mut a = [0u64; ATTR_SIZE / 8];
    // type (u32) and size (u32) share the first word (little-endian: type low).
    a[0] = u64::from(PERF_TYPE_BREAKPOINT) | ((ATTR_SIZE as u64) << 32);
    a[2] = 1; // sample_period: every write
    a[5] = FLAG_DISABLED | FLAG_EXCLUDE_KERNEL | FLAG_EXCLUDE_HV;
    // wakeup_events (u32) then bp_type (u32).
    a[6] = u64::from(HW_BREAKPOINT_W) << 32;
    a[7] = addr;
    a[8] = HW_BREAKPOINT_LEN_4;
    a
}

/// One `wait_trans` record; None when garbled (never panics).
pub(super) fn decode(data: &[u8]) -> Option<Event> {
    if data.len() != RECORD {
        return None;
    }
    let ts_ns = u64::from_le_bytes(data.get(0..8)?.try_into().ok()?);
    let tgid = u32::from_le_bytes(data.get(8..12)?.try_into().ok()?);
    let value = u32::from_le_bytes(data.get(12..16)?.try_into().ok()?);
    let pid = Pid::try_from(tgid).ok().filter(|&p| p > 0)?;
    Some(Event {
        ts_ns,
        pid,
        kind: EventKind::WaitTransition {
            wait_event_info: value,
        },
    })
}

/// The watchpoints of one backend and their ring buffer. Field order is drop order:
/// the links (which own and close their perf events) first.
pub(super) struct WaitWatch {
    links: Vec<Link>,
    ring: super::decoded_ring::DecodedRing,
}

impl WaitWatch {
    /// A watchpoint on every thread of `pid` at `addr` (in its address space).
    pub(super) fn attach(
        skel: &SyscallsSkel<'static>,
        pid: Pid,
        addr: u64,
    ) -> anyhow::Result<WaitWatch> {
        if addr == 0 || addr % 4 != 0 {
            bail!("--exact-waits: wait_event_info at {addr:#x} is not a 4-byte aligned address");
        }
        let ring =
            super::decoded_ring::DecodedRing::open(&skel.maps.wait_trans, "--exact-waits", decode)?;
        let tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map_err(|e| anyhow!("--exact-waits: pid {pid}: {e}"))?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        let attr = breakpoint_attr(addr);
        let mut links = Vec::with_capacity(tids.len());
        for tid in tids {
            // SAFETY: perf_event_open(2) reads `attr`, a live ATTR_SIZE-byte buffer whose
            // `size` field says so; the other arguments are plain integers.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_perf_event_open,
                    attr.as_ptr(),
                    tid,
                    -1i32,
                    -1i32,
                    PERF_FLAG_FD_CLOEXEC,
                )
            };
            if fd < 0 {
                let e = std::io::Error::last_os_error();
                bail!(
                    "--exact-waits: a hardware watchpoint on thread {tid} was refused ({e}); \
                     it needs CAP_PERFMON (or CAP_SYS_ADMIN) and a free debug register"
                );
            }
            // libbpf takes the perf event fd over: the link closes it.
            match skel.progs.pgt_wait_watch.attach_perf_event(fd as i32) {
                Ok(l) => links.push(l),
                Err(e) => {
                    // SAFETY: `fd` is the perf event just opened, owned by nobody else
                    // since the attach failed.
                    unsafe { libc::close(fd as i32) };
                    bail!("--exact-waits: attaching to the watchpoint failed ({e})");
                }
            }
        }
        Ok(WaitWatch { links, ring })
    }

    /// The transitions since the last drain, and how many records were garbled.
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

    #[test]
    fn attr_layout() {
        let a = breakpoint_attr(0x7f00_0000_1234);
        let bytes: Vec<u8> = a.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(u32::from_le_bytes(bytes[0..4].try_into().unwrap()), 5);
        assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 112);
        assert_eq!(u32::from_le_bytes(bytes[52..56].try_into().unwrap()), 2);
        assert_eq!(
            u64::from_le_bytes(bytes[56..64].try_into().unwrap()),
            0x7f00_0000_1234
        );
        assert_eq!(u64::from_le_bytes(bytes[64..72].try_into().unwrap()), 4);
    }

    #[test]
    fn decodes() {
        let mut r = 9u64.to_le_bytes().to_vec();
        r.extend_from_slice(&77u32.to_le_bytes());
        r.extend_from_slice(&0x0900_0000u32.to_le_bytes());
        let e = decode(&r).unwrap();
        assert_eq!((e.ts_ns, e.pid), (9, 77));
        assert_eq!(
            e.kind,
            EventKind::WaitTransition {
                wait_event_info: 0x0900_0000
            }
        );
        assert!(decode(&r[..15]).is_none());
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..32)) {
            let _ = decode(&data);
        }
    }
}
