//! The trace commands: attach to one process (or replay a recording), fold its events
//! into the model, and show them in line mode or the TUI, detaching on every way out.
//! The loops take their clock, output and keys as parameters, so whole sessions run
//! scripted in tests (tests/app_*.rs).

mod attaching;
pub mod backend;
pub mod copier;
mod io_uring;
pub mod kernel_time;
pub mod keys;
pub mod line;
mod load;
pub mod server_backup;
// The session itself is the heart of this folder; its file is named after it.
pub mod checkpoints;
pub mod record;
pub mod replay;
pub mod replay_tui;
#[allow(clippy::module_inception)]
mod session;
pub mod signals;
pub mod summary;
pub mod terminal;
pub mod tui;
pub mod usdt_cost;
pub mod waits;

pub use backend::{attach, attach_with};
pub use line::{run, Options};
pub use load::load;
pub use session::{Replay, ReplayState, Replayed, Session};
pub use signals::stop_flag;
