//! ferry: system containers with checkpoint and live migration, in the manner of OpenVZ.
//!
//! See docs/ARCHITECTURE.md for the bird's-eye view and the codemap.

pub mod agent;
pub mod boot;
pub mod cgroup;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod criu;
pub mod ctid;
pub mod error;
pub mod evacuate;
pub mod exitcode;
pub mod fsutil;
pub mod host;
pub mod layout;
pub mod list;
pub mod lock;
pub mod migrate;
pub mod net;
pub mod resources;
pub mod runtime;
pub mod storage;
pub mod template;
pub mod units;
