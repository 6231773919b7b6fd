//! pg_trace: attach to a PostgreSQL process and show what it is reading, how far it has
//! got, and why it is stuck. The binary is a thin shell over these modules.

pub mod cli;
pub mod commands;
pub mod model;
pub mod naming;
pub mod output;
pub mod pgdata;
pub mod process;
pub mod session;
pub mod text;
pub mod trace;
pub mod ui;
pub mod version;
