//! The trace commands: attach to one process (or replay a recording), fold its events
//! into the model, and show them in line mode or the TUI, detaching on every way out.
//! The loops take their clock, output and keys as parameters, so whole sessions run
//! scripted in tests (tests/app_*.rs).

pub mod backend;
pub mod copier;
pub mod keys;
pub mod line;
pub mod server_backup;
// The session itself is the heart of this folder; its file is named after it.
#[allow(clippy::module_inception)]
mod session;
pub mod signals;
pub mod summary;
pub mod terminal;
pub mod tui;
mod usdt_cost;
pub mod waits;

pub use backend::{attach, attach_with};
pub use line::{run, Options};
pub use session::{Replay, Session};
pub use signals::stop_flag;
