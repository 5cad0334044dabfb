//! Host evacuation (`vzevacuate`): placing every container of this host on peers that can hold
//! it, and the journal that makes an evacuation resumable and reversible (`--return`).
//!
//! The migrations themselves are vzmigrate's (pushed from here) and, for `--return`, the peers'
//! vzmigrate started through the pull call of the peer API.

use std::path::PathBuf;

use migrate_proto::msg::Capacity;
use serde::{Deserialize, Serialize};

use crate::layout::HostLayout;
use crate::migrate::capacity::disk_needed;

/// A container to move, with what it needs on a destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Candidate {
    pub ctid: u32,
    /// Running containers move online (and need their memory there); stopped ones offline.
    pub running: bool,
    pub ram_bytes: u64,
    pub private_bytes: u64,
}

impl Candidate {
    /// The order of the plan: the largest first, as they are the hardest to place and to move.
    fn weight(&self) -> u64 {
        self.ram_bytes.saturating_add(self.private_bytes)
    }
}

/// Where one container goes, or why it goes nowhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placement {
    pub ctid: u32,
    pub online: bool,
    pub ram_bytes: u64,
    pub private_bytes: u64,
    pub peer: Option<String>,
    pub why_not: Option<String>,
}

/// Places containers on peers: the largest first, each on the peer that keeps the most memory
/// free after taking it (spreading the load), among those where it fits: its CTID is free
/// there, the disk it needs is free (what the destination's preflight asks), and, moved online,
/// its memory is available. What a placement takes is deducted before the next.
pub fn plan(cands: &[Candidate], peers: &[(String, Capacity)]) -> Vec<Placement> {
    let mut left: Vec<(u64, u64)> = peers.iter().map(|(_, c)| (c.mem_available, c.disk_free)).collect();
    let mut order: Vec<&Candidate> = cands.iter().collect();
    order.sort_by(|a, b| b.weight().cmp(&a.weight()).then(a.ctid.cmp(&b.ctid)));
    let mut out = Vec::new();
    for c in order {
        let need_disk = disk_needed(c.private_bytes);
        let need_mem = if c.running { c.ram_bytes } else { 0 };
        let mut best: Option<usize> = None;
        let mut refusals = Vec::new();
        for (i, (name, cap)) in peers.iter().enumerate() {
            let (mem, disk) = left[i];
            let why = if cap.ctids.contains(&c.ctid) {
                Some(format!("{name}: container {} exists there", c.ctid))
            } else if disk < need_disk {
                Some(format!(
                    "{name}: not enough disk ({} needed, {} free)",
                    crate::units::size(need_disk),
                    crate::units::size(disk)
                ))
            } else if mem < need_mem {
                Some(format!(
                    "{name}: not enough memory ({} needed, {} available)",
                    crate::units::size(need_mem),
                    crate::units::size(mem)
                ))
            } else {
                None
            };
            match why {
                Some(w) => refusals.push(w),
                None => {
                    let better = best.is_none_or(|b| {
                        let (bm, bd) = left[b];
                        (mem - need_mem, disk - need_disk) > (bm - need_mem, bd - need_disk)
                    });
                    if better {
                        best = Some(i);
                    }
                }
            }
        }
        let why_not = match best {
            Some(i) => {
                left[i].0 -= need_mem;
                left[i].1 -= need_disk;
                None
            }
            None if peers.is_empty() => Some("no peer to move it to".to_string()),
            None => Some(refusals.join("; ")),
        };
        out.push(Placement {
            ctid: c.ctid,
            online: c.running,
            ram_bytes: c.ram_bytes,
            private_bytes: c.private_bytes,
            peer: best.map(|i| peers[i].0.clone()),
            why_not,
        });
    }
    out
}

/// Where one container stands in an evacuation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Placed, not started.
    Planned,
    /// vzmigrate runs (its pid is recorded).
    Moving,
    /// On the peer; `--return` brings it back.
    Moved,
    /// Could not be placed or moved; it stays here. The next run tries again.
    Failed,
    /// Being brought back by `--return`.
    Returning,
    /// Back here.
    Returned,
}

/// One container's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub ctid: u32,
    pub peer: String,
    pub online: bool,
    pub state: State,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub frozen_ms: u64,
    #[serde(default)]
    pub total_ms: u64,
    #[serde(default)]
    pub wire_bytes: u64,
}

/// The evacuation journal of a host: every container an evacuation placed or moved, until
/// `--return` brings it back. Written atomically after every change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The vzevacuate that works on it now (one at a time).
    #[serde(default)]
    pub pid: Option<u32>,
    pub entries: Vec<Entry>,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("reading {0}")]
    Read(PathBuf, #[source] std::io::Error),
    #[error("{0} is damaged ({1}): move it aside to start afresh")]
    Damaged(PathBuf, String),
    #[error("writing {0}")]
    Write(PathBuf, #[source] std::io::Error),
    #[error("vzevacuate (pid {0}) is already running on this host")]
    Busy(u32),
}

impl Journal {
    pub fn path(layout: &HostLayout) -> PathBuf {
        layout.run_dir().join("evacuation.json")
    }

    pub fn load(layout: &HostLayout) -> Result<Journal, JournalError> {
        let p = Self::path(layout);
        match std::fs::read_to_string(&p) {
            Ok(t) => serde_json::from_str(&t).map_err(|e| JournalError::Damaged(p, e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Journal::default()),
            Err(e) => Err(JournalError::Read(p, e)),
        }
    }

    pub fn save(&self, layout: &HostLayout) -> Result<(), JournalError> {
        let p = Self::path(layout);
        if self.entries.is_empty() {
            return match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(JournalError::Write(p, e)),
                _ => Ok(()),
            };
        }
        let text = serde_json::to_string_pretty(self).map_err(|e| JournalError::Damaged(p.clone(), e.to_string()))?;
        crate::fsutil::write_atomic(&p, format!("{text}\n").as_bytes(), 0o644).map_err(|e| JournalError::Write(p, e))
    }

    /// Takes the journal for this process, refusing while another vzevacuate holds it.
    pub fn claim(&mut self) -> Result<(), JournalError> {
        if let Some(pid) = self.pid.filter(|p| *p != std::process::id()) {
            if crate::runtime::proc::runs_as(pid, "vzevacuate") {
                return Err(JournalError::Busy(pid));
            }
        }
        self.pid = Some(std::process::id());
        Ok(())
    }

    pub fn entry(&mut self, ctid: u32) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.ctid == ctid)
    }

    /// Records a container's new state (adding its entry if it has none).
    pub fn set(&mut self, ctid: u32, peer: &str, online: bool, state: State) -> &mut Entry {
        if let Some(i) = self.entries.iter().position(|e| e.ctid == ctid) {
            let e = &mut self.entries[i];
            e.peer = peer.to_string();
            e.online = online;
            e.state = state;
            return e;
        }
        self.entries.push(Entry {
            ctid,
            peer: peer.to_string(),
            online,
            state,
            reason: None,
            pid: None,
            frozen_ms: 0,
            total_ms: 0,
            wire_bytes: 0,
        });
        self.entries.last_mut().expect("just pushed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn cap(mem: u64, disk: u64, ctids: &[u32]) -> Capacity {
        Capacity {
            host: String::new(),
            mem_available: mem * MIB,
            mem_total: 0,
            disk_free: disk * MIB,
            disk_total: 0,
            cpus: 2,
            ctids: ctids.to_vec(),
            running: 0,
        }
    }

    fn ct(ctid: u32, running: bool, ram: u64, private: u64) -> Candidate {
        Candidate {
            ctid,
            running,
            ram_bytes: ram * MIB,
            private_bytes: private * MIB,
        }
    }

    #[test]
    fn largest_first_spread_over_the_peers_with_most_room() {
        let peers = vec![
            ("b".into(), cap(1000, 10_000, &[])),
            ("c".into(), cap(900, 10_000, &[])),
        ];
        let p = plan(
            &[ct(101, true, 100, 10), ct(102, true, 500, 10), ct(103, true, 300, 10)],
            &peers,
        );
        let got: Vec<(u32, Option<&str>)> = p.iter().map(|p| (p.ctid, p.peer.as_deref())).collect();
        // 102 (largest) to b (1000 free), leaving 500; 103 to c (900 > 500), leaving 600;
        // 101 to c (600 > 500).
        assert_eq!(got, vec![(102, Some("b")), (103, Some("c")), (101, Some("c"))]);
        assert!(p.iter().all(|p| p.online && p.why_not.is_none()));
    }

    #[test]
    fn a_full_peer_and_a_taken_ctid_are_not_chosen_and_the_reason_is_named() {
        let peers = vec![
            ("full".into(), cap(1000, 10, &[])),
            ("b".into(), cap(1000, 10_000, &[104])),
        ];
        let p = plan(&[ct(101, true, 10, 10), ct(104, true, 10, 1)], &peers);
        assert_eq!(p[0].ctid, 101);
        assert_eq!(p[0].peer.as_deref(), Some("b"));
        assert_eq!(p[1].peer, None);
        let why = p[1].why_not.as_deref().unwrap();
        assert!(
            why.contains("full: not enough disk (65M needed, 10M free)")
                && why.contains("b: container 104 exists there"),
            "{why}"
        );
    }

    #[test]
    fn memory_counts_only_for_running_containers_and_is_deducted() {
        let peers = vec![("b".into(), cap(150, 10_000, &[]))];
        let p = plan(
            &[ct(101, true, 100, 1), ct(102, true, 100, 1), ct(103, false, 100, 1)],
            &peers,
        );
        assert_eq!(p[0].peer.as_deref(), Some("b"));
        assert!(p[1]
            .why_not
            .as_deref()
            .unwrap()
            .contains("not enough memory (100M needed, 50M available)"));
        assert_eq!(p[2].peer.as_deref(), Some("b"), "a stopped container needs no memory");
        assert!(!p[2].online);
        assert_eq!(
            plan(&[ct(101, true, 1, 1)], &[])[0].why_not.as_deref(),
            Some("no peer to move it to")
        );
    }

    #[test]
    fn the_journal_round_trips_refuses_a_second_runner_and_vanishes_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        let layout = HostLayout::new(dir.path());
        std::fs::create_dir_all(layout.run_dir()).unwrap();
        let mut j = Journal::load(&layout).unwrap();
        j.claim().unwrap();
        j.set(101, "b", true, State::Moving).pid = Some(7);
        j.set(101, "b", true, State::Moved);
        j.set(102, "c", false, State::Failed).reason = Some("x".into());
        j.save(&layout).unwrap();
        let back = Journal::load(&layout).unwrap();
        assert_eq!(back, j);
        assert_eq!(back.entries[0].pid, Some(7));
        // A journal held by a live vzevacuate is refused; by a dead one or another program, taken.
        let mut other = back.clone();
        other.pid = Some(1);
        other.claim().unwrap();
        j.entries.clear();
        j.save(&layout).unwrap();
        assert!(!Journal::path(&layout).exists());
        std::fs::write(Journal::path(&layout), "{").unwrap();
        assert!(matches!(Journal::load(&layout), Err(JournalError::Damaged(..))));
    }
}
