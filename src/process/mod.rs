//! One live process, seen through /proc.

pub mod fds;

pub use fds::{open_files, OpenFile};
