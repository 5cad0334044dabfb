//! The migration as two state machines, source and destination. They consume decoded messages,
//! local events and timeouts, given the current time by the caller, and return actions for the
//! caller to perform in order (send a message, freeze, restore, write the journal, ...).
//!
//! Custody: exactly one side owns the container at every moment. Before the destination has
//! received `Commit`, the source owns it; once the destination has received it, the
//! destination does. The source learns which happened from `CommitAck`, or, if the connection
//! broke after it sent `Commit`, by asking on a new connection (`Resolve`); until then it keeps
//! its copy frozen and does not resume it. A destination that loses the connection, times out
//! or is asked to resolve before it got `Commit` aborts, and that decision is final.

mod dest;
mod source;

use core::time::Duration;

pub use dest::{DestConfig, Destination};
pub use source::{Source, SourceConfig};

use crate::msg::{AbortReason, Message, Plan};
use crate::policy::RoundStats;

/// The phases named by the protocol, for progress, journals and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    Handshake,
    Plan,
    FsSync,
    MemPrecopy,
    Freeze,
    FinalSync,
    Restore,
    Commit,
    Done,
    Aborted,
    /// Source only: `Commit` was sent and the connection broke before the answer.
    InDoubt,
}

/// Who owns the container, as one side knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Custody {
    /// This side's copy is the container.
    Holds,
    /// The other side's copy is the container; this side has none (or only files kept for
    /// inspection that are never run).
    Released,
    /// Source only, between sending `Commit` and learning the outcome: its copy stays frozen.
    Unknown,
}

/// Things the engine reports to its machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    // Source side.
    /// Offline migration: the container is stopped.
    ContainerStopped,
    FsPassSent {
        pass: u32,
        bytes: u64,
    },
    MemRoundSent(RoundStats),
    /// The container is frozen and its network locked.
    Frozen,
    /// The final dump, final file delta and final pages were sent.
    FinalSent {
        images: u32,
        bytes: u64,
    },
    /// A new connection to the destination is up (for resolving an in-doubt commit).
    Reconnected,
    /// The journal records this phase, durably (after `Action::Journal`). The source sends
    /// `Commit` only once the journal says the commit may have been sent; a failed write is
    /// reported as `Failed` instead, and the engine performs nothing the batch had after it.
    Journaled(Phase),
    // Destination side.
    /// The plan fits this host (CTID free, space, CPU, addresses) or not.
    PlanChecked(Result<(), String>),
    /// The container was restored (or started, offline), stopped with its network locked.
    RestoreSucceeded,
    // Both.
    /// Something local failed (disk full, dump failed, restore failed, cancelled).
    Failed(AbortReason),
    /// The connection broke.
    LinkLost,
}

/// Things the machine asks the engine to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Send(Message),
    /// Persist this phase in the migration's journal (durably: file and directory synced)
    /// before doing what follows. A write that fails is `Event::Failed`, and the actions after
    /// it in the same batch are not performed; a write that succeeds is `Event::Journaled`.
    Journal(Phase),
    // Source side.
    StopContainer,
    StartFsPass {
        pass: u32,
        last: bool,
    },
    StartMemRound {
        round: u32,
        page_refs: bool,
    },
    /// Freeze the container (cgroup freezer) and lock its network.
    Freeze,
    /// Dump with CRIU, send the images, the final file delta and the final pages.
    FinalSync {
        page_refs: bool,
    },
    /// The destination owns the container: kill the frozen copy, remove the private area
    /// unless the plan says to keep it.
    DestroySource,
    /// The migration failed: thaw the container and unlock its network (or start it again
    /// if an offline migration had stopped it).
    ResumeSource,
    // Destination side.
    CheckPlan(Plan),
    /// Write what a validated data message carries (files, pages, images) into the area.
    Apply(Message),
    /// Restore the container from the received images (online) or start it (offline),
    /// leaving it stopped with its network locked.
    Restore,
    /// The container is ours: unlock its network, resume it, announce its addresses.
    RunRestored,
    /// The migration failed: kill the restored copy if any and remove what was received
    /// unless `keep_files`.
    Cleanup {
        keep_files: bool,
    },
    // Both.
    /// The migration is over on this side.
    Finished(Outcome),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Committed,
    Aborted(AbortReason),
}

/// Timeouts both machines use.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeouts {
    /// Longest silence from the peer while waiting for it.
    pub peer: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            peer: Duration::from_secs(60),
        }
    }
}

/// Protocol versions: 1 sends every page's data; 2 adds references to pages the destination
/// already holds; 3 acknowledges memory rounds; 4 names pages by store slot and in runs, and
/// carries bulk data on streams of its own. A side accepts its own version and the previous one.
pub const VERSION_CURRENT: u32 = crate::PROTOCOL_VERSION;
pub const VERSION_MIN: u32 = crate::PROTOCOL_VERSION - 1;

/// Whether a negotiated version has page references.
pub fn page_refs(version: u32) -> bool {
    version >= 2
}

/// Whether a negotiated version acknowledges memory rounds (`MemRoundAck`).
pub fn round_acks(version: u32) -> bool {
    version >= 3
}

/// Whether a negotiated version carries pages by store slot and runs (`PageSlots`,
/// `ImageRuns`) and bulk data on streams of its own (`BulkStream`, `Flush`: see
/// [`crate::streams`]).
pub fn streams_and_slots(version: u32) -> bool {
    version >= 4
}

/// The highest version both ranges contain.
pub fn negotiate(a: (u32, u32), b: (u32, u32)) -> Option<u32> {
    let hi = a.1.min(b.1);
    let lo = a.0.max(b.0);
    (lo <= hi && a.0 <= a.1 && b.0 <= b.1).then_some(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation() {
        assert_eq!(negotiate((1, 2), (1, 2)), Some(2));
        assert_eq!(negotiate((1, 2), (2, 3)), Some(2));
        assert_eq!(negotiate((1, 2), (0, 1)), Some(1));
        assert_eq!(negotiate((1, 2), (3, 4)), None);
        assert_eq!(negotiate((2, 1), (1, 2)), None);
        assert!(!page_refs(1) && page_refs(2));
    }
}
