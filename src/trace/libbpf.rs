//! What both BPF tracers (syscalls and USDT) need from libbpf-rs around their skeletons:
//! a stable heap slot for the skeleton's object, and libbpf's messages kept for our error
//! messages instead of written to a terminal the TUI owns. The print callback is
//! process-wide, so there is one, here.

use libbpf_rs::{OpenObject, PrintLevel};
use std::mem::MaybeUninit;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The heap slot a generated skeleton keeps its `OpenObject`/`Object` in. The skeleton
/// borrows the slot for its whole life; owning both in one struct needs the slot at a
/// stable address that outlives the skeleton: a leaked Box, reclaimed on drop.
pub(crate) struct ObjectSlot(NonNull<MaybeUninit<OpenObject>>);

// SAFETY: the slot is a plain heap allocation owned by this value (like a Box); the
// libbpf object stored in it is Send (libbpf-rs declares `OpenObject`/`Object` Send).
unsafe impl Send for ObjectSlot {}

impl ObjectSlot {
    pub(crate) fn new() -> ObjectSlot {
        ObjectSlot(NonNull::from(Box::leak(Box::new(MaybeUninit::uninit()))))
    }

    /// # Safety
    /// The returned reference, and everything borrowing from it (the skeleton), must be
    /// gone before this slot is dropped, and it must be taken at most once.
    pub(crate) unsafe fn get(&self) -> &'static mut MaybeUninit<OpenObject> {
        // SAFETY: the pointer comes from Box::leak and stays valid until drop; the caller
        // guarantees this is the only reference and that it dies before the slot.
        unsafe { &mut *self.0.as_ptr() }
    }
}

impl Drop for ObjectSlot {
    fn drop(&mut self) {
        // SAFETY: allocated by Box::new in `new`, never freed elsewhere; the owner drops
        // the skeleton that borrowed it first (field order in EbpfTracer and UsdtTracer,
        // declaration order in their `attach`). MaybeUninit has no destructor: the object
        // inside was already destroyed by the skeleton.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// The last warnings libbpf printed (verifier and attach errors).
static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn print(_level: PrintLevel, msg: String) {
    let mut log = LOG.lock().unwrap_or_else(|e| e.into_inner());
    if log.len() >= 64 {
        log.remove(0);
    }
    log.push(msg.trim_end().to_string());
}

/// Route libbpf's warnings into the log (idempotent) and forget earlier ones, before an
/// operation whose failure should quote them.
pub(crate) fn capture_messages() {
    libbpf_rs::set_print(Some((PrintLevel::Warn, print)));
    LOG.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// The last line libbpf printed, for an error message.
pub(crate) fn last_message() -> Option<String> {
    let log = LOG.lock().unwrap_or_else(|e| e.into_inner());
    log.iter().rev().find(|l| !l.is_empty()).cloned()
}

/// Whether the tracers attached from now on turn the kernel's BPF run-time statistics on
/// (`--probe-cost`; see [`RunTimeStats`]). Process-wide like the kernel switch it stands
/// for: set once from the command line (or by a benchmark) before any tracer attaches.
static PROBE_COST: AtomicBool = AtomicBool::new(false);

/// `--probe-cost`: see [`PROBE_COST`].
pub fn set_probe_cost(on: bool) {
    PROBE_COST.store(on, Ordering::Relaxed);
}

/// The kernel counts each BPF program's run time only while BPF statistics are enabled
/// (the `bpf_stats_enabled` static key: two clock reads around every run of every
/// program on the machine, ours and everyone else's). So they stay off unless asked for
/// (`--probe-cost`) or already on (`kernel.bpf_stats_enabled=1`, someone else's choice:
/// then the counts are used). Asked for, we enable them with `BPF_ENABLE_STATS`, which
/// keeps them on for as long as the returned fd is open: closed with the tracer, and by
/// the kernel if pg_trace dies, so they never stay on system-wide after it. That needs
/// CAP_SYS_ADMIN.
pub(crate) struct RunTimeStats {
    _fd: Option<std::os::fd::OwnedFd>,
    /// Why run times are not counted although `--probe-cost` asked (a limitation).
    pub(crate) why_not: Option<String>,
    /// Not asked for, and not on already: run times are not counted, by choice.
    pub(crate) off: bool,
}

const STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl RunTimeStats {
    pub(crate) fn enable() -> RunTimeStats {
        use std::os::fd::{FromRawFd, OwnedFd};
        let sysctl_on = || std::fs::read_to_string(STATS_SYSCTL).is_ok_and(|s| s.trim() == "1");
        if !PROBE_COST.load(Ordering::Relaxed) {
            return RunTimeStats {
                _fd: None,
                why_not: None,
                off: !sysctl_on(),
            };
        }
        // SAFETY: a plain syscall wrapper; it returns a new fd we then own, or -errno.
        let fd = unsafe {
            libbpf_rs::libbpf_sys::bpf_enable_stats(libbpf_rs::libbpf_sys::BPF_STATS_RUN_TIME)
        };
        if fd >= 0 {
            return RunTimeStats {
                // SAFETY: `fd` was just returned to us by the kernel and is owned by no one
                // else.
                _fd: Some(unsafe { OwnedFd::from_raw_fd(fd) }),
                why_not: None,
                off: false,
            };
        }
        let err = std::io::Error::from_raw_os_error(-fd);
        RunTimeStats {
            _fd: None,
            why_not: (!sysctl_on()).then(|| {
                format!(
                    "probe cost unknown: the kernel does not time BPF programs \
                     (enabling BPF_STATS_RUN_TIME was refused: {err}; it needs CAP_SYS_ADMIN, \
                     or sysctl kernel.bpf_stats_enabled=1)"
                )
            }),
            off: false,
        }
    }

    /// What a tracer says of its probes' run time when it is not counted; None when it
    /// is.
    pub(crate) fn unmeasured(&self) -> Option<super::cost::ProbeCost> {
        if let Some(why) = &self.why_not {
            return Some(super::cost::ProbeCost::Unmeasured(why.clone()));
        }
        self.off.then_some(super::cost::ProbeCost::Off)
    }
}

/// Summed over `progs`: (run time ns, runs, runs skipped because another BPF program was
/// running on that CPU), from `bpf_prog_info`. A program whose info cannot be read adds
/// nothing.
pub(crate) fn prog_counters<'a>(
    progs: impl Iterator<Item = libbpf_rs::Program<'a>>,
) -> (u64, u64, u64) {
    let progs: Vec<_> = progs.collect();
    prog_counters_of(progs.iter())
}

/// [`prog_counters`] of programs borrowed from elsewhere (a skeleton's fields).
pub(crate) fn prog_counters_of<'p, P: std::os::fd::AsFd + 'p>(
    progs: impl Iterator<Item = &'p P>,
) -> (u64, u64, u64) {
    use std::os::fd::AsRawFd;
    let (mut ns, mut runs, mut skipped) = (0u64, 0u64, 0u64);
    for prog in progs {
        let mut info = libbpf_rs::libbpf_sys::bpf_prog_info::default();
        let mut len = std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_prog_info>() as u32;
        // SAFETY: `info` is a properly sized, zeroed bpf_prog_info we own and `len` says
        // its size; the fd belongs to a program alive for this call.
        let rc = unsafe {
            libbpf_rs::libbpf_sys::bpf_prog_get_info_by_fd(
                prog.as_fd().as_raw_fd(),
                &mut info,
                &mut len,
            )
        };
        if rc == 0 {
            ns = ns.saturating_add(info.run_time_ns);
            runs = runs.saturating_add(info.run_cnt);
            skipped = skipped.saturating_add(info.recursion_misses);
        }
    }
    (ns, runs, skipped)
}
