//! The destination side: receives, validates, restores, and takes the container over when the
//! source commits.

use core::time::Duration;

use super::{
    negotiate, streams_and_slots, Action, Custody, Event, Outcome, Phase, Timeouts, VERSION_CURRENT, VERSION_MIN,
};
use crate::msg::{AbortReason, Capabilities, HelloAck, Message, MigrationId, Plan};

#[derive(Debug, Clone)]
pub struct DestConfig {
    pub host: String,
    pub caps: Capabilities,
    /// Protocol versions accepted, inclusive (default: the previous and the current one).
    pub versions: (u32, u32),
    pub timeouts: Timeouts,
}

impl DestConfig {
    pub fn new(host: String, caps: Capabilities) -> Self {
        Self {
            host,
            caps,
            versions: (VERSION_MIN, VERSION_CURRENT),
            timeouts: Timeouts::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitHello,
    AwaitPlan,
    CheckingPlan,
    Receiving { frozen: bool, mem: bool },
    Restoring,
    AwaitCommit,
    Committed,
    Aborted,
}

#[derive(Debug)]
pub struct Destination {
    cfg: DestConfig,
    state: State,
    migration_id: Option<MigrationId>,
    version: Option<u32>,
    plan: Option<Plan>,
    peer_caps: Option<Capabilities>,
    deadline: Option<Duration>,
    abort_reason: Option<AbortReason>,
}

impl Destination {
    pub fn new(cfg: DestConfig) -> Self {
        Self {
            cfg,
            state: State::AwaitHello,
            migration_id: None,
            version: None,
            plan: None,
            peer_caps: None,
            deadline: None,
            abort_reason: None,
        }
    }

    pub fn phase(&self) -> Phase {
        match self.state {
            State::AwaitHello => Phase::Handshake,
            State::AwaitPlan | State::CheckingPlan => Phase::Plan,
            State::Receiving { frozen: true, .. } => Phase::FinalSync,
            State::Receiving { mem: true, .. } => Phase::MemPrecopy,
            State::Receiving { .. } => Phase::FsSync,
            State::Restoring => Phase::Restore,
            State::AwaitCommit => Phase::Commit,
            State::Committed => Phase::Done,
            State::Aborted => Phase::Aborted,
        }
    }

    pub fn custody(&self) -> Custody {
        if self.state == State::Committed {
            Custody::Holds
        } else {
            Custody::Released
        }
    }

    pub fn version(&self) -> Option<u32> {
        self.version
    }

    pub fn plan(&self) -> Option<&Plan> {
        self.plan.as_ref()
    }

    pub fn abort_reason(&self) -> Option<&AbortReason> {
        self.abort_reason.as_ref()
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Committed | State::Aborted)
    }

    /// What the source said of itself in its `Hello` (for the plan check).
    pub fn peer_caps(&self) -> Option<&Capabilities> {
        self.peer_caps.as_ref()
    }

    pub fn poll_timeout(&self) -> Option<Duration> {
        self.deadline
    }

    fn wait_peer(&mut self, now: Duration) {
        self.deadline = Some(now + self.cfg.timeouts.peer);
    }

    fn streams(&self) -> bool {
        self.version.is_some_and(streams_and_slots)
    }

    fn online(&self) -> bool {
        self.plan.as_ref().is_some_and(|p| p.online)
    }

    /// Pre-copied memory arrives: its first message is journaled (from then on a crash leaves
    /// memory to clean up).
    fn memory_arrives(&mut self) -> Vec<Action> {
        let State::Receiving { frozen, mem } = self.state else {
            return vec![];
        };
        self.state = State::Receiving { frozen, mem: true };
        if mem {
            vec![]
        } else {
            vec![Action::Journal(Phase::MemPrecopy)]
        }
    }

    fn keep_files(&self) -> bool {
        self.plan.as_ref().is_some_and(|p| p.keep_dst)
    }

    /// Gives up before commit; final. The source keeps the container.
    fn abort(&mut self, reason: AbortReason, tell_peer: bool) -> Vec<Action> {
        let had_anything = !matches!(self.state, State::AwaitHello | State::AwaitPlan);
        self.state = State::Aborted;
        self.deadline = None;
        self.abort_reason = Some(reason.clone());
        let mut out = Vec::new();
        if tell_peer {
            out.push(Action::Send(Message::Abort(reason.clone())));
        }
        out.push(Action::Journal(Phase::Aborted));
        if had_anything {
            out.push(Action::Cleanup {
                keep_files: self.keep_files(),
            });
        }
        out.push(Action::Finished(Outcome::Aborted(reason)));
        out
    }

    pub fn handle_message(&mut self, now: Duration, msg: Message) -> Vec<Action> {
        // Resolution works in every state, including after the end.
        if let Message::Resolve { migration_id } = msg {
            if self.migration_id != Some(migration_id) {
                return vec![Action::Send(Message::Resolved {
                    migration_id,
                    committed: false,
                })];
            }
            let mut out = Vec::new();
            if !matches!(self.state, State::Committed | State::Aborted) {
                // The source lost its connection and asks: without Commit, the answer is no.
                out.extend(self.abort(
                    AbortReason::Protocol("the source asked for resolution before the commit arrived".into()),
                    false,
                ));
            }
            out.push(Action::Send(Message::Resolved {
                migration_id,
                committed: self.state == State::Committed,
            }));
            return out;
        }
        if matches!(self.state, State::Committed | State::Aborted) {
            return vec![];
        }
        if self.deadline.is_some() {
            self.wait_peer(now);
        }
        match (self.state, msg) {
            (_, Message::Abort(r)) => self.abort(r, false),
            (State::AwaitHello, Message::Hello(h)) => {
                self.migration_id = Some(h.migration_id);
                self.peer_caps = Some(h.caps.clone());
                match negotiate(self.cfg.versions, (h.version_min, h.version_max)) {
                    None => self.abort(
                        AbortReason::VersionMismatch {
                            ours_min: self.cfg.versions.0,
                            ours_max: self.cfg.versions.1,
                        },
                        true,
                    ),
                    Some(v) => {
                        self.version = Some(v);
                        self.state = State::AwaitPlan;
                        self.wait_peer(now);
                        vec![
                            Action::Journal(Phase::Handshake),
                            Action::Send(Message::HelloAck(HelloAck {
                                version: v,
                                host: self.cfg.host.clone(),
                                caps: self.cfg.caps.clone(),
                            })),
                        ]
                    }
                }
            }
            (State::AwaitPlan, Message::Plan(p)) => {
                self.plan = Some(p.clone());
                self.state = State::CheckingPlan;
                self.deadline = None;
                vec![Action::Journal(Phase::Plan), Action::CheckPlan(p)]
            }
            (
                State::Receiving { frozen, mem },
                m @ (Message::FsEntries { .. } | Message::FsData(_) | Message::FsDelta(_) | Message::FsDelete { .. }),
            ) => {
                // File data after memory pre-copy began is only legal as the final delta (with
                // bulk streams, the file stream may still be draining a pass when memory begins:
                // the flush before each control message keeps the order that matters).
                if mem && !frozen && !self.streams() {
                    return self.abort(AbortReason::Protocol("file data during memory pre-copy".into()), true);
                }
                vec![Action::Apply(m)]
            }
            (State::Receiving { .. }, m @ (Message::PageSlots(_) | Message::ImageRuns(_))) => {
                if !self.streams() {
                    return self.abort(
                        AbortReason::Protocol(format!("{:?} before protocol version 4", m.kind())),
                        true,
                    );
                }
                if !self.online() {
                    return self.abort(AbortReason::Protocol("memory in an offline migration".into()), true);
                }
                let mut out = if matches!(m, Message::PageSlots(_)) {
                    self.memory_arrives()
                } else {
                    vec![]
                };
                out.push(Action::Apply(m));
                out
            }
            (State::Receiving { .. }, m @ (Message::Pages(_) | Message::ImagePages(_))) if self.streams() => self
                .abort(
                    AbortReason::Protocol(format!("{:?} in protocol version 4 (pages travel by slot)", m.kind())),
                    true,
                ),
            // Images may overtake the control stream's `Frozen` on their bulk stream.
            (State::Receiving { .. }, m @ Message::Image(_)) if self.streams() => {
                if !self.online() {
                    return self.abort(AbortReason::Protocol("images in an offline migration".into()), true);
                }
                vec![Action::Apply(m)]
            }
            (State::Receiving { .. }, Message::FsSignature(_)) => self.abort(
                AbortReason::Protocol("signatures travel from the destination".into()),
                true,
            ),
            (State::Receiving { .. }, Message::FsPassDone { .. }) => vec![],
            (State::Receiving { .. }, Message::Pages(b)) => {
                if !self.online() {
                    return self.abort(AbortReason::Protocol("pages in an offline migration".into()), true);
                }
                if self.version == Some(1) && b.pages.iter().any(|p| p.data.is_none()) {
                    return self.abort(
                        AbortReason::Protocol("page reference in protocol version 1".into()),
                        true,
                    );
                }
                let mut out = self.memory_arrives();
                out.push(Action::Apply(Message::Pages(b)));
                out
            }
            // Every page before it was applied (messages are handled in order): acknowledged,
            // so the source can weigh the round and freeze with nothing of the pre-copy still on
            // its way. (A round may have had no new page to send.)
            (State::Receiving { frozen: false, .. }, Message::MemRoundDone(r))
                if self.version.is_some_and(super::round_acks) && self.online() =>
            {
                self.state = State::Receiving {
                    frozen: false,
                    mem: true,
                };
                vec![Action::Send(Message::MemRoundAck { round: r.round })]
            }
            (State::Receiving { .. }, Message::MemRoundDone(_)) => vec![],
            (State::Receiving { frozen: false, mem }, Message::Frozen) => {
                self.state = State::Receiving { frozen: true, mem };
                self.wait_peer(now);
                vec![Action::Journal(Phase::FinalSync)]
            }
            (State::Receiving { frozen: true, .. }, m @ Message::Image(_)) => {
                vec![Action::Apply(m)]
            }
            (State::Receiving { frozen: true, .. }, Message::ImagePages(b)) => {
                if self.version == Some(1) {
                    return self.abort(AbortReason::Protocol("image pages in protocol version 1".into()), true);
                }
                vec![Action::Apply(Message::ImagePages(b))]
            }
            (State::Receiving { frozen: true, .. }, Message::FinalDone { .. }) => {
                self.state = State::Restoring;
                self.deadline = None;
                vec![Action::Journal(Phase::Restore), Action::Restore]
            }
            (State::AwaitCommit, Message::Commit) => {
                self.state = State::Committed;
                self.deadline = None;
                vec![
                    Action::Journal(Phase::Done),
                    Action::RunRestored,
                    Action::Send(Message::CommitAck),
                    Action::Finished(Outcome::Committed),
                ]
            }
            (_, Message::Progress { .. }) => vec![],
            (_, m) => self.abort(
                AbortReason::Protocol(format!("unexpected {:?} in phase {:?}", m.kind(), self.phase())),
                true,
            ),
        }
    }

    pub fn handle_event(&mut self, now: Duration, ev: Event) -> Vec<Action> {
        match (self.state, ev) {
            (State::Committed | State::Aborted, _) => vec![],
            (_, Event::LinkLost) => {
                self.abort(AbortReason::Protocol("connection lost before the commit".into()), false)
            }
            (_, Event::Failed(r)) => self.abort(r, true),
            (State::CheckingPlan, Event::PlanChecked(Ok(()))) => {
                self.state = State::Receiving {
                    frozen: false,
                    mem: false,
                };
                self.wait_peer(now);
                vec![Action::Journal(Phase::FsSync), Action::Send(Message::PlanAccepted)]
            }
            (State::CheckingPlan, Event::PlanChecked(Err(why))) => self.abort(AbortReason::PlanRefused(why), true),
            (State::Restoring, Event::RestoreSucceeded) => {
                self.state = State::AwaitCommit;
                self.wait_peer(now);
                vec![Action::Journal(Phase::Commit), Action::Send(Message::Restored)]
            }
            (_, Event::Journaled(_)) => vec![],
            (_, e) => self.abort(
                AbortReason::Local(format!("unexpected local event {e:?} in phase {:?}", self.phase())),
                true,
            ),
        }
    }

    pub fn handle_timeout(&mut self, now: Duration) -> Vec<Action> {
        match self.deadline {
            Some(d) if now >= d => {}
            _ => return vec![],
        }
        self.deadline = None;
        if matches!(self.state, State::Committed | State::Aborted) {
            return vec![];
        }
        self.abort(
            AbortReason::Timeout(format!("no word from the source in phase {:?}", self.phase())),
            true,
        )
    }
}
