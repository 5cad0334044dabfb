//! Live migration: the engine that performs what migrate-proto's state machines decide.

pub mod dest;
pub mod fs;
pub mod source;
pub mod wire;

use migrate_proto::msg::Capabilities;

/// What this host tells a peer of itself in the handshake: its CRIU and kernel, and that it
/// has no memory dirty tracking (ENVIRONMENT.md).
pub fn local_caps() -> Capabilities {
    Capabilities {
        mem_dirty_tracking: false,
        compression: vec!["zstd".into()],
        criu_version: crate::criu::Criu::locate()
            .ok()
            .and_then(|c| c.version().ok())
            .map(|v| format!("{}.{}.{}", v.0, v.1, v.2))
            .unwrap_or_default(),
        kernel: crate::criu::kernel(),
        cpu_description: vec![],
        free_ram: 0,
        free_disk: 0,
    }
}
