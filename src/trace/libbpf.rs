//! What both BPF tracers (syscalls and USDT) need from libbpf-rs around their skeletons:
//! a stable heap slot for the skeleton's object, and libbpf's messages kept for our error
//! messages instead of written to a terminal the TUI owns. The print callback is
//! process-wide, so there is one, here.

use libbpf_rs::{OpenObject, PrintLevel};
use std::mem::MaybeUninit;
use std::ptr::NonNull;
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
