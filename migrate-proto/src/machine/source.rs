//! The source side: drives the migration and owns the container until the destination has
//! committed.

use core::time::Duration;

use super::{negotiate, page_refs, Action, Custody, Event, Outcome, Phase, Timeouts, VERSION_CURRENT, VERSION_MIN};
use crate::msg::{AbortReason, Capabilities, Hello, Message, MigrationId, Plan, RoundReport, Stats};
use crate::policy::{Convergence, Decision, PolicyConfig};

#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub migration_id: MigrationId,
    pub host: String,
    pub caps: Capabilities,
    pub plan: Plan,
    /// Protocol versions offered, inclusive (default: the previous and the current one).
    pub versions: (u32, u32),
    /// Passes of the file pre-sync while the container runs (online).
    pub presync_passes: u32,
    /// Pre-copy memory in rounds while the container runs; without it, memory travels only
    /// in the frozen phase (after the file pre-sync, the container is frozen at once).
    pub mem_precopy: bool,
    pub policy: PolicyConfig,
    pub timeouts: Timeouts,
}

impl SourceConfig {
    pub fn new(migration_id: MigrationId, host: String, caps: Capabilities, plan: Plan) -> Self {
        let policy = PolicyConfig {
            max_downtime: Duration::from_millis(plan.max_downtime_ms),
            ..PolicyConfig::default()
        };
        Self {
            migration_id,
            host,
            caps,
            plan,
            versions: (VERSION_MIN, VERSION_CURRENT),
            presync_passes: 2,
            mem_precopy: true,
            policy,
            timeouts: Timeouts::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Handshake,
    Planning,
    Stopping,
    FsSync {
        pass: u32,
    },
    MemPrecopy {
        round: u32,
    },
    /// A round was sent (`sent`, as the engine measured it): waiting for the destination to hold
    /// it (version 3) before the policy weighs it, so its time is the time its pages took to
    /// arrive, not to be buffered.
    AwaitRoundAck {
        sent: crate::policy::RoundStats,
    },
    Freezing,
    FinalSync,
    AwaitRestore,
    /// Restored at the destination: the journal is recording that the commit may be sent;
    /// `Commit` goes only once it has (`Event::Journaled(Phase::Commit)`).
    Committing,
    CommitSent,
    InDoubt,
    Resolving,
    Done,
    Aborted,
}

#[derive(Debug)]
pub struct Source {
    cfg: SourceConfig,
    state: State,
    version: Option<u32>,
    policy: Convergence,
    deadline: Option<Duration>,
    started: Option<Duration>,
    frozen_at: Option<Duration>,
    /// When the current memory round started.
    round_started: Duration,
    stats: Stats,
    abort_reason: Option<AbortReason>,
}

impl Source {
    pub fn new(cfg: SourceConfig) -> Self {
        let policy = Convergence::new(cfg.policy.clone());
        Self {
            cfg,
            state: State::Idle,
            version: None,
            policy,
            deadline: None,
            started: None,
            frozen_at: None,
            round_started: Duration::ZERO,
            stats: Stats::default(),
            abort_reason: None,
        }
    }

    /// The migration's id, as sent in `Hello` (and asked about in `Resolve`).
    pub fn migration_id(&self) -> crate::msg::MigrationId {
        self.cfg.migration_id
    }

    pub fn phase(&self) -> Phase {
        match self.state {
            State::Idle | State::Handshake => Phase::Handshake,
            State::Planning | State::Stopping => Phase::Plan,
            State::FsSync { .. } => Phase::FsSync,
            State::MemPrecopy { .. } | State::AwaitRoundAck { .. } => Phase::MemPrecopy,
            State::Freezing => Phase::Freeze,
            State::FinalSync => Phase::FinalSync,
            State::AwaitRestore | State::Committing => Phase::Restore,
            State::CommitSent | State::Resolving => Phase::Commit,
            State::InDoubt => Phase::InDoubt,
            State::Done => Phase::Done,
            State::Aborted => Phase::Aborted,
        }
    }

    pub fn custody(&self) -> Custody {
        match self.state {
            State::CommitSent | State::InDoubt | State::Resolving => Custody::Unknown,
            State::Done => Custody::Released,
            _ => Custody::Holds,
        }
    }

    /// The negotiated protocol version, once known.
    pub fn version(&self) -> Option<u32> {
        self.version
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn policy(&self) -> &Convergence {
        &self.policy
    }

    pub fn abort_reason(&self) -> Option<&AbortReason> {
        self.abort_reason.as_ref()
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Done | State::Aborted)
    }

    /// When the caller should call `handle_timeout` if nothing else happens.
    pub fn poll_timeout(&self) -> Option<Duration> {
        self.deadline
    }

    fn wait_peer(&mut self, now: Duration) {
        self.deadline = Some(now + self.cfg.timeouts.peer);
    }

    fn refs(&self) -> bool {
        self.version.is_some_and(page_refs)
    }

    pub fn start(&mut self, now: Duration) -> Vec<Action> {
        if self.state != State::Idle {
            return vec![];
        }
        self.started = Some(now);
        self.state = State::Handshake;
        self.wait_peer(now);
        vec![
            Action::Journal(Phase::Handshake),
            Action::Send(Message::Hello(Hello {
                migration_id: self.cfg.migration_id,
                version_min: self.cfg.versions.0,
                version_max: self.cfg.versions.1,
                host: self.cfg.host.clone(),
                caps: self.cfg.caps.clone(),
            })),
        ]
    }

    /// Gives up before commit: the source keeps (and resumes) the container.
    fn abort(&mut self, reason: AbortReason, tell_peer: bool) -> Vec<Action> {
        let mut out = Vec::new();
        if tell_peer {
            out.push(Action::Send(Message::Abort(reason.clone())));
        }
        out.extend(self.rollback(reason));
        out
    }

    fn rollback(&mut self, reason: AbortReason) -> Vec<Action> {
        self.state = State::Aborted;
        self.deadline = None;
        self.abort_reason = Some(reason.clone());
        vec![
            Action::Journal(Phase::Aborted),
            Action::ResumeSource,
            Action::Finished(Outcome::Aborted(reason)),
        ]
    }

    fn finish_committed(&mut self, now: Duration, tell_peer: bool) -> Vec<Action> {
        self.state = State::Done;
        self.deadline = None;
        self.stats.total_ms = now.saturating_sub(self.started.unwrap_or(now)).as_millis() as u64;
        self.stats.frozen_ms = self
            .frozen_at
            .map(|f| now.saturating_sub(f).as_millis() as u64)
            .unwrap_or(0);
        let mut out = vec![Action::Journal(Phase::Done), Action::DestroySource];
        if tell_peer {
            out.push(Action::Send(Message::Done(self.stats.clone())));
        }
        out.push(Action::Finished(Outcome::Committed));
        out
    }

    /// The policy weighs a finished round: another round, the freeze, or giving up.
    fn after_round(&mut self, now: Duration, stats: crate::policy::RoundStats) -> Vec<Action> {
        let round = stats.round;
        match self.policy.record(stats) {
            Decision::Continue => {
                self.state = State::MemPrecopy { round: round + 1 };
                self.round_started = now;
                vec![Action::StartMemRound {
                    round: round + 1,
                    page_refs: self.refs(),
                }]
            }
            Decision::Freeze { .. } => {
                self.state = State::Freezing;
                vec![Action::Journal(Phase::Freeze), Action::Freeze]
            }
            Decision::GiveUp { predicted } => self.abort(
                AbortReason::NotConverging(format!(
                    "predicted frozen time {} ms exceeds the budget of {} ms by too much",
                    predicted.as_millis(),
                    self.cfg.plan.max_downtime_ms
                )),
                true,
            ),
        }
    }

    fn protocol_error(&mut self, what: &str) -> Vec<Action> {
        match self.state {
            // After Commit was sent, the outcome is the destination's to tell; a confused peer
            // does not change that.
            State::CommitSent | State::InDoubt | State::Resolving | State::Done | State::Aborted => vec![],
            _ => self.abort(AbortReason::Protocol(what.into()), true),
        }
    }

    pub fn handle_message(&mut self, now: Duration, msg: Message) -> Vec<Action> {
        if matches!(self.state, State::Done | State::Aborted) {
            return vec![];
        }
        if self.deadline.is_some() {
            self.wait_peer(now);
        }
        match (self.state, msg) {
            (State::Handshake, Message::HelloAck(ack)) => {
                if negotiate(self.cfg.versions, (ack.version, ack.version)) != Some(ack.version) {
                    return self.abort(
                        AbortReason::VersionMismatch {
                            ours_min: self.cfg.versions.0,
                            ours_max: self.cfg.versions.1,
                        },
                        true,
                    );
                }
                self.version = Some(ack.version);
                self.state = State::Planning;
                vec![
                    Action::Journal(Phase::Plan),
                    Action::Send(Message::Plan(self.cfg.plan.clone())),
                ]
            }
            (State::Planning, Message::PlanAccepted) => {
                self.deadline = None;
                if self.cfg.plan.online {
                    self.state = State::FsSync { pass: 1 };
                    vec![
                        Action::Journal(Phase::FsSync),
                        Action::StartFsPass { pass: 1, last: false },
                    ]
                } else {
                    self.state = State::Stopping;
                    vec![Action::StopContainer]
                }
            }
            // The destination gave up; before commit that leaves the container with us. After
            // Commit was sent, an abort means the destination decided before Commit reached it.
            (State::CommitSent | State::Resolving, Message::Abort(r)) => self.rollback(r),
            (_, Message::Abort(r)) => self.rollback(r),
            (State::AwaitRoundAck { sent }, Message::MemRoundAck { round }) if round == sent.round => {
                self.deadline = None;
                let mut stats = sent;
                // The round took until its pages arrived.
                stats.duration = stats.duration.max(now.saturating_sub(self.round_started));
                if let Some(r) = self.stats.rounds.last_mut() {
                    r.duration_ms = stats.duration.as_millis() as u64;
                }
                self.after_round(now, stats)
            }
            (State::AwaitRestore, Message::Restored) => {
                self.state = State::Committing;
                self.wait_peer(now);
                vec![Action::Journal(Phase::Commit)]
            }
            (State::CommitSent, Message::CommitAck) => self.finish_committed(now, true),
            (
                State::Resolving,
                Message::Resolved {
                    migration_id,
                    committed,
                },
            ) if migration_id == self.cfg.migration_id => {
                if committed {
                    self.finish_committed(now, false)
                } else {
                    self.rollback(AbortReason::Protocol(
                        "the destination did not receive the commit".into(),
                    ))
                }
            }
            (_, Message::Progress { .. }) => vec![],
            (_, m) => self.protocol_error(&format!("unexpected {:?} in phase {:?}", m.kind(), self.phase())),
        }
    }

    pub fn handle_event(&mut self, now: Duration, ev: Event) -> Vec<Action> {
        match (self.state, ev) {
            (State::Done | State::Aborted, _) => vec![],
            (State::CommitSent | State::Resolving, Event::LinkLost) => {
                self.state = State::InDoubt;
                self.deadline = None;
                vec![Action::Journal(Phase::InDoubt)]
            }
            (State::InDoubt, Event::Reconnected) => {
                self.state = State::Resolving;
                self.wait_peer(now);
                vec![Action::Send(Message::Resolve {
                    migration_id: self.cfg.migration_id,
                })]
            }
            (State::InDoubt, _) => vec![],
            (State::Committing, Event::Journaled(Phase::Commit)) => {
                self.state = State::CommitSent;
                self.wait_peer(now);
                vec![Action::Send(Message::Commit)]
            }
            (_, Event::Journaled(_)) => vec![],
            // A local failure after Commit was sent cannot undo the commit.
            (State::CommitSent | State::Resolving, Event::Failed(_)) => vec![],
            (_, Event::LinkLost) => self.abort(AbortReason::Protocol(crate::msg::CONNECTION_LOST.into()), false),
            (_, Event::Failed(r)) => self.abort(r, true),
            (State::Stopping, Event::ContainerStopped) => {
                self.frozen_at = Some(now);
                self.state = State::FinalSync;
                vec![
                    Action::Journal(Phase::FinalSync),
                    Action::Send(Message::Frozen),
                    Action::StartFsPass { pass: 1, last: true },
                ]
            }
            (State::FinalSync, Event::FsPassSent { pass, bytes }) if !self.cfg.plan.online => {
                self.stats.final_bytes += bytes;
                self.state = State::AwaitRestore;
                self.wait_peer(now);
                vec![
                    Action::Send(Message::FsPassDone { pass, last: true }),
                    Action::Send(Message::FinalDone { images: 0, bytes }),
                    Action::Journal(Phase::Restore),
                ]
            }
            (State::FsSync { pass }, Event::FsPassSent { pass: p, bytes }) if p == pass => {
                self.stats.fs_bytes += bytes;
                let mut out = vec![Action::Send(Message::FsPassDone { pass, last: false })];
                if pass < self.cfg.presync_passes {
                    self.state = State::FsSync { pass: pass + 1 };
                    out.push(Action::StartFsPass {
                        pass: pass + 1,
                        last: false,
                    });
                } else {
                    if self.cfg.mem_precopy {
                        self.state = State::MemPrecopy { round: 1 };
                        self.round_started = now;
                        out.push(Action::Journal(Phase::MemPrecopy));
                        out.push(Action::StartMemRound {
                            round: 1,
                            page_refs: self.refs(),
                        });
                    } else {
                        self.state = State::Freezing;
                        out.push(Action::Journal(Phase::Freeze));
                        out.push(Action::Freeze);
                    }
                }
                out
            }
            (State::MemPrecopy { round }, Event::MemRoundSent(stats)) if stats.round == round => {
                self.stats.mem_bytes += stats.sent_bytes;
                let report = RoundReport {
                    round,
                    sent_bytes: stats.sent_bytes,
                    dirty_bytes: stats.dirty_bytes,
                    duration_ms: stats.duration.as_millis() as u64,
                };
                self.stats.rounds.push(report.clone());
                let mut out = vec![Action::Send(Message::MemRoundDone(report))];
                if self.version.is_some_and(super::round_acks) {
                    self.state = State::AwaitRoundAck { sent: stats };
                    self.wait_peer(now);
                } else {
                    out.extend(self.after_round(now, stats));
                }
                out
            }
            (State::Freezing, Event::Frozen) => {
                self.frozen_at = Some(now);
                self.state = State::FinalSync;
                vec![
                    Action::Journal(Phase::FinalSync),
                    Action::Send(Message::Frozen),
                    Action::FinalSync { page_refs: self.refs() },
                ]
            }
            (State::FinalSync, Event::FinalSent { images, bytes }) => {
                self.stats.final_bytes += bytes;
                self.state = State::AwaitRestore;
                self.wait_peer(now);
                vec![
                    Action::Send(Message::FinalDone { images, bytes }),
                    Action::Journal(Phase::Restore),
                ]
            }
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
        match self.state {
            State::CommitSent | State::Resolving => {
                self.state = State::InDoubt;
                vec![Action::Journal(Phase::InDoubt)]
            }
            State::Done | State::Aborted | State::InDoubt => vec![],
            _ => self.abort(
                AbortReason::Timeout(format!("no answer from the destination in phase {:?}", self.phase())),
                true,
            ),
        }
    }
}
