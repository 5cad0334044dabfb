//! The host agent (`vzagentd`). For now it runs scheduled checkpoints; the peer API for live
//! migration comes with its issue.

pub mod daemon;
pub mod quic;
pub mod trust;
