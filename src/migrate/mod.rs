//! Live migration: the engine that performs what migrate-proto's state machines decide.

pub mod dest;
pub mod fs;
pub mod source;
pub mod wire;
