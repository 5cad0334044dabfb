//! The runtime state of a running container, kept in `vz/run/CTID.json`: which host process is
//! its init (pid and start time, so a reused pid is never mistaken for it).

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::proc;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// The container's init as the host sees it.
    pub init_pid: i32,
    pub init_start: u64,
    /// The console logger that holds the console's master side.
    pub console_pid: Option<i32>,
    /// Unix time at which the container was started.
    pub started_at: u64,
    /// The networking installed for it on this host.
    #[serde(default)]
    pub net: crate::net::NetState,
    /// Limits set live (`vzctl set` on the running container) since it started, saved or not:
    /// the next live change merges over them, so a `--cpus` after a `--cpulimit` keeps the
    /// tighter cap of the two.
    #[serde(default)]
    pub live_limits: crate::resources::Limits,
}

impl RunState {
    pub fn load(path: &Path) -> io::Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn save(&self, path: &Path) -> io::Result<()> {
        let b = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        crate::fsutil::write_atomic(path, &b, 0o644)
    }

    pub fn init_alive(&self) -> bool {
        proc::is_alive(self.init_pid, self.init_start)
    }
}
