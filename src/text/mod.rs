//! Text helpers below every other layer: how figures are written for people, and the one
//! filter that keeps text from outside (names, queries, titles) from driving a terminal.

pub mod excerpt;
pub mod safe;
pub mod units;
pub mod visible;

pub use units::{compact_bytes, compact_rate, human_age, human_bytes, human_duration, human_rate};
pub use visible::visible;
