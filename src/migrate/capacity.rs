//! The `capacity` call of the peer API: what a host can take, asked before any migration
//! starts so that `vzevacuate` can place containers where they fit.

use std::path::Path;
use std::time::Duration;

use migrate_proto::msg::{Capacity, Message};

use super::source::MigrateError;
use super::wire::WireError;
use crate::agent::trust::{Identity, Peer};
use crate::layout::HostLayout;

/// Disk a container's private area needs on a destination: its size, a tenth more for what it
/// writes during the move, and 64 MiB for the images. The destination refuses a plan below it.
pub fn disk_needed(private_bytes: u64) -> u64 {
    private_bytes + private_bytes / 10 + (64 << 20)
}

/// What a container takes on a destination: the memory it uses now, and its private area's
/// bytes and inodes. Both the migration's plan and the evacuation's placement use these.
#[derive(Debug, Clone, Copy, Default)]
pub struct Footprint {
    pub ram_bytes: u64,
    pub private_bytes: u64,
    pub private_inodes: u64,
}

pub fn footprint(rt: &crate::runtime::Runtime, ct: &crate::host::Container) -> Footprint {
    let (kib, private_inodes) = crate::storage::usage(&ct.private, false).unwrap_or((0, 0));
    Footprint {
        ram_bytes: rt
            .cgroups(ct.ctid)
            .ok()
            .and_then(|c| c.counters(ct.ctid).mem_usage)
            .unwrap_or(0),
        private_bytes: kib * 1024,
        private_inodes,
    }
}

/// Free and total bytes of the file system holding `p` (zero when it cannot be read).
pub fn disk_space(p: &Path) -> (u64, u64) {
    crate::storage::statvfs(p).map_or((0, 0), |s| (s.f_bavail * s.f_frsize, s.f_blocks * s.f_frsize))
}

/// A field of /proc/meminfo in bytes.
pub fn meminfo(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.split(':').next() == Some(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// This host's answer to a capacity query.
pub fn local(layout: &HostLayout, name: &str) -> Capacity {
    let base = layout.private_base();
    let _ = std::fs::create_dir_all(&base);
    let (disk_free, disk_total) = disk_space(&base);
    let (mut ctids, running) = match crate::host::Host::open(layout.clone()) {
        Ok(host) => {
            let ids = host.ctids().unwrap_or_default();
            let rt = crate::runtime::Runtime::new(host);
            let running = ids.iter().filter(|c| matches!(rt.run_state(**c), Ok(Some(_)))).count() as u32;
            (ids.into_iter().map(|c| c.get()).collect::<Vec<_>>(), running)
        }
        Err(_) => (Vec::new(), 0),
    };
    ctids.truncate(migrate_proto::limits::MAX_ENTRIES);
    Capacity {
        host: name.to_string(),
        mem_available: meminfo("MemAvailable").unwrap_or(0),
        mem_total: meminfo("MemTotal").unwrap_or(0),
        disk_free,
        disk_total,
        cpus: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        ctids,
        running,
    }
}

/// Asks a pinned peer what it can take.
pub async fn query(id: &Identity, peer: &Peer) -> Result<Capacity, MigrateError> {
    match super::ask(id, peer, &Message::CapacityQuery, Duration::from_secs(20)).await? {
        Message::Capacity(c) => Ok(c),
        other => Err(MigrateError::Wire(WireError::Decode(
            migrate_proto::DecodeError::Invalid(if matches!(other, Message::Abort(_)) {
                "the peer refused the capacity query"
            } else {
                "the peer answered the capacity query with something else"
            }),
        ))),
    }
}
