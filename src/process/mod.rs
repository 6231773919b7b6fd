//! One live process, seen through /proc.

pub mod aio;
pub mod buffers;
pub mod clock;
pub mod clog;
pub mod fds;
pub mod identity;
pub mod list;
pub mod ns;
pub mod stapsdt;

pub use fds::{open_files, OpenFile};
pub mod memory;
pub mod postgres_binary;
pub mod proc;
pub mod progress;
pub mod server_backup;
pub mod status;
pub mod walsender;
