//! Live migration: the engine that performs what migrate-proto's state machines decide.

pub mod fs;
