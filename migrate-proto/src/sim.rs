//! A simulated migration: a source and a destination machine, a fake engine for each, and an
//! ordered link on a virtual clock. Every message goes through the real encoder and
//! [`FrameReader`], so the simulation exercises the wire format too.
//!
//! The link delivers frames in order (QUIC streams are ordered) after latency plus
//! serialization time at its bandwidth; "loss" delays a frame by a retransmission timeout
//! without reordering. A cut drops what is in flight and everything sent until the
//! connection is re-established; each side notices after `detect_cut`. Faults (a local failure
//! or a cut) fire when a chosen side first enters a chosen phase.
//!
//! At every step the simulation checks the custody invariant: never do both sides hold the
//! container, and never do both copies run.

use core::time::Duration;
use std::collections::VecDeque;

use crate::frame::{encode, FrameReader};
use crate::machine::{Action, Custody, DestConfig, Destination, Event, Outcome, Phase, Source, SourceConfig};
use crate::msg::{
    AbortReason, Capabilities, FileKind, FsData, FsEntry, ImageChunk, ImageRuns, Layout, Message, Page, PageBatch,
    PageRun, PageSlots, Plan,
};
use crate::path::RelPath;
use crate::policy::RoundStats;
use crate::streams;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Destination,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// A local failure on `side` when it first enters `phase`.
    Fail(Side, Phase),
    /// The connection is cut when `side` first enters `phase`.
    Cut(Side, Phase),
    /// The destination's restore fails.
    RestoreFails,
    /// The destination refuses the plan.
    PlanRefused,
    /// `side`'s journal cannot record `phase` (a full disk).
    JournalFails(Side, Phase),
}

#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub latency: Duration,
    /// Bytes per second; 0 for unlimited.
    pub bandwidth: u64,
    /// Every Nth frame waits one retransmission timeout (0: never).
    pub loss_every: u32,
    pub rto: Duration,
    /// How long a side takes to notice a cut connection.
    pub detect_cut: Duration,
    /// How long after a cut the source reconnects (to resolve an in-doubt commit).
    pub reconnect_after: Duration,
    /// Version 4: the extra delay of bulk stream N is N times this, so bulk frames arrive after
    /// control frames sent later (streams are ordered each, not with each other).
    pub bulk_skew: Duration,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(1),
            bandwidth: 125_000_000,
            loss_every: 7,
            rto: Duration::from_millis(20),
            detect_cut: Duration::from_secs(1),
            reconnect_after: Duration::from_secs(5),
            bulk_skew: Duration::from_millis(3),
        }
    }
}

/// What the fake engines pretend the container is like.
#[derive(Debug, Clone)]
pub struct Workload {
    pub ram_bytes: u64,
    /// Bytes of memory dirtied per second while the container runs.
    pub dirty_rate: u64,
    pub private_bytes: u64,
    pub restore_time: Duration,
    pub dump_fixed: Duration,
}

impl Default for Workload {
    fn default() -> Self {
        Self {
            ram_bytes: 256 << 20,
            dirty_rate: 4 << 20,
            private_bytes: 64 << 20,
            restore_time: Duration::from_millis(300),
            dump_fixed: Duration::from_millis(200),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    None,
    Running,
    /// Frozen or stopped: exists, does not run.
    Halted,
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub link: LinkConfig,
    pub workload: Workload,
    pub online: bool,
    pub max_downtime: Duration,
    pub source_versions: Option<(u32, u32)>,
    pub dest_versions: Option<(u32, u32)>,
    pub faults: Vec<Fault>,
    /// Give up the simulation after this much virtual time.
    pub horizon: Duration,
    /// Memory pre-copy rounds (false: memory goes only in the frozen phase).
    pub mem_precopy: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            link: LinkConfig::default(),
            workload: Workload::default(),
            online: true,
            max_downtime: Duration::from_millis(1000),
            source_versions: None,
            dest_versions: None,
            faults: Vec::new(),
            horizon: Duration::from_secs(3600),
            mem_precopy: true,
        }
    }
}

/// How a simulation ended.
#[derive(Debug, Clone)]
pub struct SimResult {
    pub now: Duration,
    pub source_outcome: Option<Outcome>,
    pub dest_outcome: Option<Outcome>,
    pub source_custody: Custody,
    pub dest_custody: Custody,
    pub source_copy: Copy,
    pub dest_copy: Copy,
    pub source_phase: Phase,
    pub dest_phase: Phase,
    pub version: Option<u32>,
    pub page_refs_seen: bool,
    /// The destination acknowledged a memory round (version 3).
    pub round_acks_seen: bool,
    /// Version 4: frames on bulk streams, flushes, control frames that waited for bulk data at
    /// the destination, and bulk frames that arrived after a control frame sent after them.
    pub bulk_frames: u64,
    pub flushes: u64,
    pub held_for_flush: u64,
    pub overtaken: u64,
    pub frames: u64,
    pub bytes: u64,
    pub rounds: usize,
    pub phases_seen: Vec<(Side, Phase)>,
    pub faults_fired: usize,
    /// Every phase each side's journal recorded, in order.
    pub journaled: Vec<(Side, Phase)>,
}

impl SimResult {
    /// Exactly one side owns the container, and that side's copy is running.
    pub fn exactly_one_owner(&self) -> bool {
        match (self.source_custody, self.dest_custody) {
            (Custody::Holds, Custody::Released) => self.source_copy == Copy::Running && self.dest_copy == Copy::None,
            (Custody::Released, Custody::Holds) => self.dest_copy == Copy::Running && self.source_copy == Copy::None,
            _ => false,
        }
    }
}

struct Link {
    up: bool,
    epoch: u32,
    /// Version 4: bulk frames to the destination (arrival, stream, bytes, control frames sent
    /// before it), each stream in order.
    bulk: VecDeque<(Duration, usize, Vec<u8>, u64)>,
    to_dst: VecDeque<(Duration, Vec<u8>)>,
    to_src: VecDeque<(Duration, Vec<u8>)>,
    busy_until: [Duration; 2],
    sent: u32,
}

pub struct Sim {
    cfg: SimConfig,
    now: Duration,
    pub src: Source,
    pub dst: Destination,
    link: Link,
    src_reader: FrameReader,
    dst_reader: FrameReader,
    events: Vec<(Duration, Side, Event, u32)>,
    src_copy: Copy,
    dst_copy: Copy,
    src_outcome: Option<Outcome>,
    dst_outcome: Option<Outcome>,
    dirty_pending: u64,
    frames: u64,
    bytes: u64,
    page_refs_seen: bool,
    round_acks_seen: bool,
    /// Version 4: the source's bulk streams (opened, frame counts), the destination's barrier,
    /// control frames waiting for it, and counters.
    out_streams: Option<(Vec<bool>, streams::Outgoing)>,
    in_streams: streams::Incoming,
    held_control: VecDeque<Message>,
    control_sent: u64,
    control_arrived: u64,
    bulk_frames: u64,
    flushes: u64,
    held_for_flush: u64,
    overtaken: u64,
    next_slot: u32,
    phases_seen: Vec<(Side, Phase)>,
    faults_fired: Vec<bool>,
    /// Every phase each side's journal recorded, in order.
    journaled: Vec<(Side, Phase)>,
    reconnect_at: Option<Duration>,
    /// What the destination received, in order: frames and local events (see [`DestInput`]).
    pub dest_trace: Vec<DestInput>,
}

/// One input of the destination, as recorded by the simulation (fuzzing seeds).
#[derive(Debug, Clone, PartialEq)]
pub enum DestInput {
    Frame(Vec<u8>),
    Event(Event),
    Timeout,
}

/// A long transfer is a stream of frames in reality: the receiver hears from the sender all
/// along. A progress frame every second from `start` to `done` stands in for that stream.
fn keepalives(start: Duration, done: Duration, total: u64) -> Vec<(Duration, Vec<u8>)> {
    let mut out = Vec::new();
    let mut t = start + Duration::from_secs(1);
    while t < done {
        let p = encode(&Message::Progress {
            phase: "transfer".into(),
            done: 0,
            total,
        })
        .expect("a progress frame encodes");
        out.push((t, p));
        t += Duration::from_secs(1);
    }
    out
}

pub fn caps() -> Capabilities {
    Capabilities {
        mem_dirty_tracking: false,
        compression: vec!["zstd".into()],
        criu_version: "4.2.1".into(),
        kernel: "6.18".into(),
        cpu_description: vec![1, 2, 3],
        free_ram: 8 << 30,
        free_disk: 100 << 30,
    }
}

pub fn plan(online: bool, max_downtime: Duration, w: &Workload) -> Plan {
    Plan {
        ctid: 101,
        config: "HOSTNAME=\"ct101\"\nIP_ADDRESS=\"198.18.0.10\"\n".into(),
        layout: Layout::Simfs,
        private_bytes: w.private_bytes,
        private_inodes: 1000,
        ram_bytes: w.ram_bytes,
        online,
        keep_dst: false,
        bwlimit: 0,
        max_downtime_ms: max_downtime.as_millis() as u64,
        start: true,
    }
}

fn entry(name: &str) -> FsEntry {
    FsEntry {
        path: RelPath::new(name).unwrap(),
        kind: FileKind::Regular,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime_sec: 1_700_000_000,
        mtime_nsec: 0,
        size: 5,
        link_target: None,
        rdev_major: 0,
        rdev_minor: 0,
        hardlink_group: None,
        xattrs: vec![("user.k".into(), b"v".to_vec())],
        sparse: false,
    }
}

impl Sim {
    pub fn new(cfg: SimConfig) -> Self {
        let mut sc = SourceConfig::new(
            *b"sim-migration-01",
            "hostA".into(),
            caps(),
            plan(cfg.online, cfg.max_downtime, &cfg.workload),
        );
        sc.policy.fixed_cost = cfg.workload.dump_fixed + cfg.workload.restore_time;
        sc.mem_precopy = cfg.mem_precopy;
        if let Some(v) = cfg.source_versions {
            sc.versions = v;
        }
        let mut dc = DestConfig::new("hostB".into(), caps());
        if let Some(v) = cfg.dest_versions {
            dc.versions = v;
        }
        let n = cfg.faults.len();
        Self {
            src: Source::new(sc),
            dst: Destination::new(dc),
            cfg,
            now: Duration::ZERO,
            link: Link {
                up: true,
                epoch: 0,
                bulk: VecDeque::new(),
                to_dst: VecDeque::new(),
                to_src: VecDeque::new(),
                busy_until: [Duration::ZERO; 2],
                sent: 0,
            },
            src_reader: FrameReader::new(),
            dst_reader: FrameReader::new(),
            events: Vec::new(),
            src_copy: Copy::Running,
            dst_copy: Copy::None,
            src_outcome: None,
            dst_outcome: None,
            dirty_pending: 0,
            frames: 0,
            bytes: 0,
            page_refs_seen: false,
            round_acks_seen: false,
            out_streams: None,
            in_streams: streams::Incoming::new(),
            held_control: VecDeque::new(),
            control_sent: 0,
            control_arrived: 0,
            bulk_frames: 0,
            flushes: 0,
            held_for_flush: 0,
            overtaken: 0,
            next_slot: 0,
            phases_seen: Vec::new(),
            faults_fired: vec![false; n],
            journaled: Vec::new(),
            reconnect_at: None,
            dest_trace: Vec::new(),
        }
    }

    fn transfer_time(&self, bytes: u64) -> Duration {
        if self.cfg.link.bandwidth == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(bytes as f64 / self.cfg.link.bandwidth as f64)
        }
    }

    /// Version 4 negotiated (the source's bulk streams are in use).
    fn streams(&self) -> bool {
        self.src.version().is_some_and(crate::machine::streams_and_slots)
    }

    /// A data message from the source's engine: on a bulk stream in version 4 (named by its
    /// first frame), on the control stream before.
    fn send_bulk(&mut self, stream: usize, msg: &Message, nominal_extra: u64) {
        if !self.streams() {
            return self.send(Side::Source, msg, nominal_extra);
        }
        let (opened, out) = self
            .out_streams
            .get_or_insert_with(|| (vec![false; 3], streams::Outgoing::new(3)));
        let name = !std::mem::replace(&mut opened[stream], true);
        out.count(stream);
        if !self.link.up {
            return;
        }
        let mut frames = Vec::new();
        if name {
            frames.push((encode(&Message::BulkStream { index: stream as u32 }).unwrap(), 0));
        }
        frames.push((
            encode(msg).expect("the engine only emits encodable messages"),
            nominal_extra,
        ));
        for (bytes, nominal_extra) in frames {
            self.frames += 1;
            self.bulk_frames += 1;
            self.bytes += bytes.len() as u64;
            let start = self.now.max(self.link.busy_until[0]);
            let done = start + self.transfer_time(bytes.len() as u64 + nominal_extra);
            self.link.busy_until[0] = done;
            let skew = self.cfg.link.latency + self.cfg.link.bulk_skew * stream as u32;
            // (The progress frames count toward no flush.)
            for (t, p) in keepalives(start, done, nominal_extra) {
                self.push_bulk(t + skew, stream, p);
            }
            self.push_bulk(done + skew, stream, bytes);
        }
    }

    /// Queues a bulk frame, in order on its stream.
    fn push_bulk(&mut self, at: Duration, stream: usize, bytes: Vec<u8>) {
        let at = self
            .link
            .bulk
            .iter()
            .filter(|f| f.1 == stream)
            .map(|f| f.0)
            .fold(at, Duration::max);
        self.link.bulk.push_back((at, stream, bytes, self.control_sent));
    }

    fn send(&mut self, from: Side, msg: &Message, nominal_extra: u64) {
        if from == Side::Source && self.streams() && !matches!(msg, Message::Flush { .. }) {
            if let Some(f) = self.out_streams.as_mut().and_then(|(_, o)| o.flush()) {
                self.flushes += 1;
                self.send(Side::Source, &f, 0);
            }
        }
        if from == Side::Source && self.link.up {
            self.control_sent += 1;
        }
        assert!(
            !(from == Side::Source && matches!(msg, Message::Commit))
                || self.journaled.contains(&(Side::Source, Phase::Commit)),
            "the source sent Commit before its journal recorded it"
        );
        let bytes = encode(msg).expect("the machines only emit encodable messages");
        if !self.link.up {
            return;
        }
        self.frames += 1;
        self.bytes += bytes.len() as u64 + nominal_extra;
        self.link.sent += 1;
        let dir = if from == Side::Source { 0 } else { 1 };
        let start = self.now.max(self.link.busy_until[dir]);
        let done = start + self.transfer_time(bytes.len() as u64 + nominal_extra);
        self.link.busy_until[dir] = done;
        for (t, p) in keepalives(start, done, nominal_extra) {
            let q = if from == Side::Source {
                &mut self.link.to_dst
            } else {
                &mut self.link.to_src
            };
            let at = q.back().map_or(t, |(b, _)| t.max(*b));
            q.push_back((at + self.cfg.link.latency, p));
        }
        let mut at = done + self.cfg.link.latency;
        if self.cfg.link.loss_every > 0 && self.link.sent % self.cfg.link.loss_every == 0 {
            at += self.cfg.link.rto;
        }
        let q = if from == Side::Source {
            &mut self.link.to_dst
        } else {
            &mut self.link.to_src
        };
        // Ordered delivery: never before the frame ahead of it.
        let at = q.back().map_or(at, |(t, _)| at.max(*t));
        q.push_back((at, bytes));
    }

    /// Hands the destination the control messages no flush holds back any more.
    fn release_control(&mut self, now: Duration) {
        if !self.in_streams.ready() && !self.held_control.is_empty() {
            self.held_for_flush += 1;
        }
        while self.in_streams.ready() {
            let Some(m) = self.held_control.pop_front() else { break };
            let acts = self.dst.handle_message(now, m);
            self.perform(Side::Destination, acts);
        }
    }

    fn later(&mut self, after: Duration, side: Side, ev: Event) {
        self.events.push((self.now + after, side, ev, self.link.epoch));
    }

    fn perform(&mut self, side: Side, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send(m) => self.send(side, &m, 0),
                Action::Journal(p) => {
                    // As the engines do: a failed write ends the batch and is a local failure;
                    // a written one is acknowledged.
                    let now = self.now;
                    let fault = (0..self.cfg.faults.len())
                        .find(|&i| !self.faults_fired[i] && self.cfg.faults[i] == Fault::JournalFails(side, p));
                    let ev = if let Some(i) = fault {
                        self.faults_fired[i] = true;
                        Event::Failed(AbortReason::Local(format!("writing the journal of {p:?}: no space")))
                    } else {
                        self.journaled.push((side, p));
                        Event::Journaled(p)
                    };
                    let failed = fault.is_some();
                    let acts = match side {
                        Side::Source => self.src.handle_event(now, ev),
                        Side::Destination => {
                            self.dest_trace.push(DestInput::Event(ev.clone()));
                            self.dst.handle_event(now, ev)
                        }
                    };
                    self.perform(side, acts);
                    if failed {
                        return;
                    }
                }
                Action::Finished(o) => match side {
                    Side::Source => self.src_outcome = Some(o),
                    Side::Destination => self.dst_outcome = Some(o),
                },
                // Source engine.
                Action::StopContainer => {
                    self.src_copy = Copy::Halted;
                    self.later(Duration::from_millis(100), Side::Source, Event::ContainerStopped);
                }
                Action::StartFsPass { pass, last } => {
                    let bytes = if pass == 1 {
                        self.cfg.workload.private_bytes
                    } else {
                        self.cfg.workload.private_bytes / 100
                    };
                    self.send_bulk(
                        streams::FILES,
                        &Message::FsEntries {
                            pass,
                            entries: vec![entry("etc/hostname"), entry("var/log/messages")],
                        },
                        0,
                    );
                    self.send_bulk(
                        streams::FILES,
                        &Message::FsData(FsData {
                            path: RelPath::new("etc/hostname").unwrap(),
                            offset: 0,
                            compressed: false,
                            data: b"ct101".to_vec(),
                        }),
                        bytes,
                    );
                    let t = self.transfer_time(bytes);
                    let _ = last;
                    self.later(t, Side::Source, Event::FsPassSent { pass, bytes });
                }
                Action::StartMemRound { round, page_refs } => {
                    let w = &self.cfg.workload;
                    let sent = if round == 1 { w.ram_bytes } else { self.dirty_pending };
                    let t = self.transfer_time(sent).max(Duration::from_millis(1));
                    let dirty = ((w.dirty_rate as f64) * t.as_secs_f64()) as u64;
                    let dirty = dirty.min(w.ram_bytes);
                    self.dirty_pending = dirty;
                    let pages = (0..4u64)
                        .map(|i| Page {
                            pid: 1,
                            vaddr: 0x7f00_0000_0000 + i * 4096,
                            hash: [i as u8; 32],
                            data: if page_refs && round > 1 && i % 2 == 0 {
                                None
                            } else {
                                Some(vec![i as u8; 4096])
                            },
                        })
                        .collect();
                    if page_refs && round > 1 {
                        self.page_refs_seen = true;
                    }
                    if self.streams() {
                        // Two batches of new content on the memory streams.
                        for k in 0..2u64 {
                            let first_slot = self.next_slot;
                            self.next_slot += 2;
                            let m = Message::PageSlots(PageSlots {
                                round,
                                first_slot,
                                data: vec![k as u8; 2 * 4096],
                            });
                            let stream = 1 + (k as usize % 2);
                            self.send_bulk(stream, &m, sent / 2);
                        }
                    } else {
                        self.send(side, &Message::Pages(PageBatch { round, pages }), sent);
                    }
                    self.later(
                        t,
                        Side::Source,
                        Event::MemRoundSent(RoundStats {
                            round,
                            sent_bytes: sent,
                            dirty_bytes: dirty,
                            duration: t,
                        }),
                    );
                }
                Action::Freeze => {
                    self.src_copy = Copy::Halted;
                    self.later(Duration::from_millis(5), Side::Source, Event::Frozen);
                }
                Action::FinalSync { page_refs } => {
                    let final_bytes = self.dirty_pending + (4 << 20);
                    self.send_bulk(
                        1,
                        &Message::Image(ImageChunk {
                            name: RelPath::new("core-1.img").unwrap(),
                            offset: 0,
                            compressed: true,
                            data: vec![7; 512],
                        }),
                        4 << 20,
                    );
                    let pages = vec![Page {
                        pid: 1,
                        vaddr: 0x1000,
                        hash: [9; 32],
                        data: if page_refs { None } else { Some(vec![9; 4096]) },
                    }];
                    self.page_refs_seen |= page_refs;
                    if self.streams() {
                        // The pages image: held slots, zeros and a dirtied page, over both
                        // memory streams.
                        for (k, offset) in [0u64, 3 * 4096].into_iter().enumerate() {
                            let m = Message::ImageRuns(ImageRuns {
                                name: RelPath::new("pages-1.img").unwrap(),
                                offset,
                                runs: vec![
                                    PageRun::Held { slot: 0, count: 1 },
                                    PageRun::Zero { count: 1 },
                                    PageRun::Data { count: 1 },
                                ],
                                data: vec![9; 4096],
                            });
                            self.send_bulk(1 + k, &m, self.dirty_pending / 2);
                        }
                    } else {
                        self.send(side, &Message::Pages(PageBatch { round: 0, pages }), self.dirty_pending);
                    }
                    self.send_bulk(
                        streams::FILES,
                        &Message::FsEntries {
                            pass: 99,
                            entries: vec![entry("var/log/messages")],
                        },
                        0,
                    );
                    let t = self.cfg.workload.dump_fixed + self.transfer_time(final_bytes);
                    self.later(
                        t,
                        Side::Source,
                        Event::FinalSent {
                            images: 1,
                            bytes: final_bytes,
                        },
                    );
                }
                Action::DestroySource => self.src_copy = Copy::None,
                Action::ResumeSource => self.src_copy = Copy::Running,
                // Destination engine.
                Action::CheckPlan(_) => {
                    let r = if self.cfg.faults.contains(&Fault::PlanRefused) {
                        Err("CTID 101 exists here".to_string())
                    } else {
                        Ok(())
                    };
                    self.later(Duration::from_millis(2), Side::Destination, Event::PlanChecked(r));
                }
                Action::Apply(_) => {}
                Action::Restore => {
                    let ev = if self.cfg.faults.contains(&Fault::RestoreFails) {
                        Event::Failed(AbortReason::RestoreFailed("criu restore: injected failure".into()))
                    } else {
                        self.dst_copy = Copy::Halted;
                        Event::RestoreSucceeded
                    };
                    let t = self.cfg.workload.restore_time;
                    self.later(t, Side::Destination, ev);
                }
                Action::RunRestored => self.dst_copy = Copy::Running,
                Action::Cleanup { .. } => self.dst_copy = Copy::None,
            }
        }
    }

    fn check_invariants(&mut self) {
        assert!(
            !(self.src.custody() == Custody::Holds && self.dst.custody() == Custody::Holds),
            "both sides hold the container at {:?}: source {:?}, destination {:?}",
            self.now,
            self.src.phase(),
            self.dst.phase()
        );
        assert!(
            !(self.src_copy == Copy::Running && self.dst_copy == Copy::Running),
            "two running copies at {:?}",
            self.now
        );
        for (side, phase) in [(Side::Source, self.src.phase()), (Side::Destination, self.dst.phase())] {
            if !self.phases_seen.contains(&(side, phase)) {
                self.phases_seen.push((side, phase));
            }
        }
    }

    fn fire_faults(&mut self) {
        for i in 0..self.cfg.faults.len() {
            if self.faults_fired[i] {
                continue;
            }
            let f = self.cfg.faults[i].clone();
            let (side, phase, cut) = match f {
                Fault::Fail(s, p) => (s, p, false),
                Fault::Cut(s, p) => (s, p, true),
                _ => continue,
            };
            let current = if side == Side::Source {
                self.src.phase()
            } else {
                self.dst.phase()
            };
            if current != phase {
                continue;
            }
            self.faults_fired[i] = true;
            if cut {
                self.cut();
            } else {
                let ev = Event::Failed(AbortReason::Local(format!("injected failure in {phase:?}")));
                let now = self.now;
                let acts = match side {
                    Side::Source => self.src.handle_event(now, ev),
                    Side::Destination => self.dst.handle_event(now, ev),
                };
                self.perform(side, acts);
            }
        }
    }

    fn cut(&mut self) {
        if !self.link.up {
            return;
        }
        self.link.up = false;
        self.link.epoch += 1;
        self.link.to_dst.clear();
        self.link.to_src.clear();
        self.link.bulk.clear();
        // Bulk streams belong to their connection.
        self.out_streams = None;
        self.in_streams = streams::Incoming::new();
        self.held_control.clear();
        self.src_reader = FrameReader::new();
        self.dst_reader = FrameReader::new();
        let d = self.cfg.link.detect_cut;
        self.events
            .push((self.now + d, Side::Source, Event::LinkLost, self.link.epoch));
        self.events
            .push((self.now + d, Side::Destination, Event::LinkLost, self.link.epoch));
        self.reconnect_at = Some(self.now + self.cfg.link.reconnect_after);
    }

    fn done(&self) -> bool {
        let src_done = self.src.is_finished() || (self.src.phase() == Phase::InDoubt && self.reconnect_at.is_none());
        src_done
            && self.dst.is_finished()
            && self.link.to_dst.is_empty()
            && self.link.bulk.is_empty()
            && self.held_control.is_empty()
            && self.link.to_src.is_empty()
            && self.events.iter().all(|e| matches!(e.2, Event::LinkLost))
    }

    /// Runs until both sides are finished (or the horizon), checking invariants at each step.
    pub fn run(&mut self) -> SimResult {
        self.check_invariants();
        self.fire_faults();
        let acts = self.src.start(self.now);
        self.perform(Side::Source, acts);
        self.check_invariants();
        self.fire_faults();
        while !self.done() && self.now < self.cfg.horizon {
            let mut next = self.cfg.horizon;
            for t in [
                self.link.bulk.iter().map(|f| f.0).min(),
                self.link.to_dst.front().map(|f| f.0),
                self.link.to_src.front().map(|f| f.0),
                self.src.poll_timeout(),
                self.dst.poll_timeout(),
                self.reconnect_at,
            ]
            .into_iter()
            .flatten()
            {
                next = next.min(t);
            }
            for e in &self.events {
                next = next.min(e.0);
            }
            self.now = next.max(self.now);
            let now = self.now;
            if let Some(i) = (0..self.link.bulk.len()).find(|i| self.link.bulk[*i].0 <= now) {
                let (_, stream, bytes, control_before) = self.link.bulk.remove(i).unwrap();
                if control_before < self.control_arrived {
                    self.overtaken += 1;
                }
                let mut r = FrameReader::new();
                r.push(&bytes);
                let m = r.next().expect("bulk frames decode").expect("one whole frame");
                match m {
                    Message::BulkStream { index } => {
                        self.in_streams.open(index).expect("each stream named once");
                    }
                    m => {
                        let data = !matches!(m, Message::Progress { .. });
                        self.dest_trace.push(DestInput::Frame(bytes.clone()));
                        let acts = self.dst.handle_message(now, m);
                        self.perform(Side::Destination, acts);
                        if data {
                            self.in_streams.applied(stream);
                        }
                        self.release_control(now);
                    }
                }
            } else if self.link.to_dst.front().is_some_and(|f| f.0 <= now) {
                let (_, bytes) = self.link.to_dst.pop_front().unwrap();
                self.control_arrived += 1;
                self.dst_reader.push(&bytes);
                while let Some(m) = self.dst_reader.next().expect("frames from the source decode") {
                    if let (Message::Flush { frames }, true) =
                        (&m, self.dst.version().is_some_and(crate::machine::streams_and_slots))
                    {
                        self.in_streams
                            .flush(frames.clone())
                            .expect("a flush names at most 8 streams");
                        continue;
                    }
                    self.dest_trace.push(DestInput::Frame(encode(&m).unwrap()));
                    self.held_control.push_back(m);
                }
                self.release_control(now);
            } else if self.link.to_src.front().is_some_and(|f| f.0 <= now) {
                let (_, bytes) = self.link.to_src.pop_front().unwrap();
                self.src_reader.push(&bytes);
                while let Some(m) = self.src_reader.next().expect("frames from the destination decode") {
                    self.round_acks_seen |= matches!(m, Message::MemRoundAck { .. });
                    let acts = self.src.handle_message(now, m);
                    self.perform(Side::Source, acts);
                }
            } else if let Some(i) = self.events.iter().position(|e| e.0 <= now) {
                let (_, side, ev, epoch) = self.events.remove(i);
                // Engine completions of an older connection still count; only link-loss
                // notices are per connection.
                if matches!(ev, Event::LinkLost) && epoch != self.link.epoch {
                    continue;
                }
                if side == Side::Destination {
                    self.dest_trace.push(DestInput::Event(ev.clone()));
                }
                let acts = match side {
                    Side::Source => self.src.handle_event(now, ev),
                    Side::Destination => self.dst.handle_event(now, ev),
                };
                self.perform(side, acts);
            } else if self.reconnect_at.is_some_and(|t| t <= now) {
                self.reconnect_at = None;
                self.link.up = true;
                self.link.busy_until = [now; 2];
                if self.src.phase() == Phase::InDoubt {
                    let acts = self.src.handle_event(now, Event::Reconnected);
                    self.perform(Side::Source, acts);
                }
            } else {
                let a = self.src.handle_timeout(now);
                self.perform(Side::Source, a);
                let b = self.dst.handle_timeout(now);
                self.perform(Side::Destination, b);
            }
            self.check_invariants();
            self.fire_faults();
            self.check_invariants();
        }
        SimResult {
            now: self.now,
            source_outcome: self.src_outcome.clone(),
            dest_outcome: self.dst_outcome.clone(),
            source_custody: self.src.custody(),
            dest_custody: self.dst.custody(),
            source_copy: self.src_copy,
            dest_copy: self.dst_copy,
            source_phase: self.src.phase(),
            dest_phase: self.dst.phase(),
            version: self.src.version(),
            page_refs_seen: self.page_refs_seen,
            round_acks_seen: self.round_acks_seen,
            bulk_frames: self.bulk_frames,
            flushes: self.flushes,
            held_for_flush: self.held_for_flush,
            overtaken: self.overtaken,
            frames: self.frames,
            bytes: self.bytes,
            rounds: self.src.policy().rounds().len(),
            phases_seen: self.phases_seen.clone(),
            faults_fired: self.faults_fired.iter().filter(|f| **f).count(),
            journaled: self.journaled.clone(),
        }
    }
}
