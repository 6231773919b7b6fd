//! One live process, seen through /proc.

pub mod fds;
pub mod list;

pub use fds::{open_files, OpenFile};
