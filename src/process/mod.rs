//! One live process, seen through /proc.

pub mod fds;

pub use fds::{open_files, OpenFile};
pub mod memory;
pub mod progress;
pub mod status;
