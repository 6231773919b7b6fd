//! PostgreSQL 18 with io_method=io_uring: the backend submits its data-file reads to an
//! io_uring and no read system call of its own moves the data. Whether pg_trace sees them
//! depends on the tracer (only eBPF, with the kernel's io_uring tracepoints), so the attach
//! says which, once, among the tracer's limitations.

use crate::process::aio::{self, IoMethod};
use crate::trace::{Pid, Tracer};

/// The attach note for a server running `method`, given what the tracer says of io_uring
/// requests. None unless the method is io_uring.
pub fn note_for(method: Option<IoMethod>, capture: Result<(), String>) -> Option<String> {
    if method != Some(IoMethod::IoUring) {
        return None;
    }
    Some(match capture {
        Ok(()) => "io_method=io_uring: reads are taken from the kernel's io_uring tracepoints, \
                   credited to the backend that submitted them, at completion"
            .to_string(),
        Err(why) => format!(
            "io_method=io_uring: reads submitted through io_uring are not seen ({why}): \
             this backend's data-file reads are missing"
        ),
    })
}

/// [`note_for`] the traced process, its io_method read from its memory (errors: no note,
/// the method stays unknown).
pub fn note(pid: Pid, tracer: &dyn Tracer) -> Option<String> {
    let method = aio::io_method(pid).ok().flatten();
    note_for(method, tracer.io_uring_capture())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn said_only_for_io_uring() {
        for m in [None, Some(IoMethod::Sync), Some(IoMethod::Worker)] {
            assert_eq!(note_for(m, Ok(())), None);
            assert_eq!(note_for(m, Err("x".into())), None);
        }
        let on = note_for(Some(IoMethod::IoUring), Ok(())).unwrap();
        assert!(on.contains("io_uring tracepoints"), "{on}");
        let off = note_for(
            Some(IoMethod::IoUring),
            Err("the ptrace tracer does not see io_uring requests".into()),
        )
        .unwrap();
        assert!(off.contains("not seen (the ptrace tracer"), "{off}");
        assert!(off.contains("missing"), "{off}");
    }
}
