//! ferry's migration wire protocol.
//!
//! This crate does no I/O: no sockets, no files, no clock, no threads. It holds the message
//! types and their framing ([`msg`], [`frame`]), the limits enforced while decoding
//! ([`limits`], [`path`]), the source and destination state machines ([`machine`]), the
//! pre-copy convergence policy ([`policy`]), and a simulated pair of machines on a virtual
//! clock and link ([`sim`]) that the tests and fuzz targets drive. `docs/migration-protocol.md`
//! describes the protocol.

pub mod cgroups;
pub mod criu_images;
pub mod frame;
pub mod limits;
pub mod machine;
pub mod msg;
pub mod path;
pub mod policy;
pub mod sim;
pub mod streams;

/// The protocol version this build speaks; it also accepts the previous one.
pub const PROTOCOL_VERSION: u32 = 4;

/// Why bytes from a peer were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown message kind {0}")]
    UnknownKind(u16),
    #[error("{what} of {len} exceeds the limit of {max}")]
    Limit { what: &'static str, len: usize, max: usize },
    #[error("frame checksum mismatch")]
    Checksum,
    #[error("malformed payload of message kind {kind}: {why}")]
    Payload { kind: u16, why: String },
    #[error("refused path: {why}")]
    BadPath { why: &'static str },
    #[error("invalid message: {0}")]
    Invalid(&'static str),
}
