//! ferry's migration wire protocol.
//!
//! This crate does no I/O: no sockets, no files, no clock. The protocol itself (messages,
//! framing, the source and destination state machines) is the subject of its own issue and is
//! not written yet; until then the crate only states the protocol version it will speak.

/// The protocol version this build will speak once the protocol exists.
pub const PROTOCOL_VERSION: u32 = 1;
