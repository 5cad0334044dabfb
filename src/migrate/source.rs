//! The source side of a migration (`vzmigrate`): drives migrate-proto's [`Source`] machine and
//! performs its actions. It runs on a single-threaded tokio runtime, so the container runtime's
//! fork paths stay safe.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use migrate_proto::machine::{Action, Event, Outcome, Phase, Source, SourceConfig};
use migrate_proto::msg::{AbortReason, ImageChunk, Layout, Message, MigrationId, Plan};
use migrate_proto::path::RelPath;
use thiserror::Error;

use super::sync::{FileSync, SyncError, CHUNK};
use super::wire::{Lane, Link, RateSource, WireError};
use crate::agent::quic::QuicError;
use crate::agent::trust::{Identity, Peer};
use crate::cgroup::Freezer;
use crate::criu::Criu;
use crate::ctid::Ctid;
use crate::runtime::{Runtime, RuntimeError};

#[derive(Debug, Error)]
pub enum MigrateError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("connecting to the destination")]
    Connect(#[from] QuicError),
    #[error("talking to the destination")]
    Wire(#[from] WireError),
    #[error("container {0}: {1}")]
    Unsupported(Ctid, String),
    #[error(
        "container {ctid}: the migration was aborted in phase {phase} ({reason}); the container stays on this host"
    )]
    Aborted {
        ctid: Ctid,
        reason: String,
        phase: String,
        /// vzmigrate's exit status for it ([`super::abort_exit`]).
        exit: crate::exitcode::MigrateExit,
    },
    /// The final dump failed (CRIU's error, said once: the abort that follows names it).
    #[error("{0}")]
    Dump(String),
    #[error("container {ctid}: the connection broke after the commit was sent and the destination could not say how it ended; its copy here stays frozen until it can: vzagentd asks it again at every tick, `vzmigrate --recover {ctid}` asks now; if the destination is gone for good, check whether it runs there, then either remove this copy (vzctl stop --fast, vzctl destroy) or resume it here (vzmigrate --recover {ctid} --force)")]
    InDoubt { ctid: Ctid },
    #[error("container {ctid}: {why}")]
    Recover { ctid: Ctid, why: String },
}

impl MigrateError {
    /// Where the container is after this failure, as far as this side knows: "source" (it
    /// stays here, running as before or resumed), or "unknown" (the commit was sent and the
    /// destination could not say how it ended).
    pub fn container_on(&self) -> &'static str {
        match self {
            MigrateError::InDoubt { .. } => "unknown",
            _ => "source",
        }
    }

    /// The phase the migration failed in, when it had started.
    pub fn phase(&self) -> Option<&str> {
        match self {
            MigrateError::Aborted { phase, .. } => Some(phase.as_str()).filter(|p| !p.is_empty()),
            MigrateError::InDoubt { .. } => Some("Commit"),
            _ => None,
        }
    }

    /// vzmigrate's exit status for this failure (OpenVZ vzmigrate's numbering).
    pub fn migrate_exit(&self) -> crate::exitcode::MigrateExit {
        use crate::exitcode::MigrateExit as X;
        match self {
            MigrateError::Runtime(RuntimeError::Host(
                crate::host::HostError::NoSuchContainer(..) | crate::host::HostError::NoSuchName(_),
            )) => X::NoContainer,
            MigrateError::Runtime(RuntimeError::Lock(crate::lock::LockError::Locked { .. })) => X::Locked,
            // --online of a container that is not running: not migratable as asked.
            MigrateError::Runtime(RuntimeError::NotRunning(_)) => X::Refused,
            MigrateError::Runtime(_) => X::Failed,
            MigrateError::Connect(_) => X::CannotConnect,
            MigrateError::Wire(_) => X::ConnectionBroken,
            MigrateError::Unsupported(..) => X::Refused,
            MigrateError::Aborted { exit, .. } => *exit,
            MigrateError::Dump(_) => X::DumpFailed,
            MigrateError::InDoubt { .. } => X::InDoubt,
            MigrateError::Recover { .. } => X::Failed,
        }
    }

    pub fn exit_code(&self) -> crate::exitcode::ExitCode {
        use crate::exitcode::ExitCode;
        match self {
            MigrateError::Runtime(e) => e.exit_code(),
            MigrateError::Unsupported(..) => ExitCode::BadValue,
            _ => ExitCode::MigrateFailed,
        }
    }
}

/// What the peer is told when a step of this side fails: an interruption as such, a failed
/// dump as one, anything else as a local failure (vzmigrate's exit code follows from it).
pub(crate) fn abort_reason(e: MigrateError) -> AbortReason {
    match e {
        MigrateError::Aborted {
            exit: crate::exitcode::MigrateExit::Interrupted,
            reason,
            ..
        } => AbortReason::Cancelled(reason),
        MigrateError::Dump(s) => AbortReason::DumpFailed(s),
        e => AbortReason::Local(e.to_string()),
    }
}

#[derive(Debug, Clone)]
pub struct MigrateOptions {
    pub online: bool,
    pub keep_dst: bool,
    /// Remove the private area on the source after the commit (OpenVZ's `-r yes`).
    pub remove_area: bool,
    pub check_only: bool,
    pub max_downtime: Duration,
    /// Bandwidth limit of everything this side sends.
    pub bwlimit: RateSource,
    /// Counts the bytes sent, for a progress display.
    pub sent: Option<Arc<std::sync::atomic::AtomicU64>>,
}

/// What a migration did, for `--times` and `--json`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    pub ctid: u32,
    pub destination: String,
    pub online: bool,
    pub outcome: String,
    /// The protocol version the two sides spoke, and the bulk streams beside the control
    /// stream (version 4).
    pub protocol: u32,
    pub bulk_streams: u32,
    pub total_ms: u64,
    pub frozen_ms: u64,
    pub phases_ms: Vec<(String, u64)>,
    pub fs_bytes: u64,
    pub final_fs_bytes: u64,
    pub image_bytes: u64,
    pub wire_bytes: u64,
    pub compression_ratio: f64,
    pub memory_rounds: u32,
    /// Each pre-copy round: its time (until the destination held it), the bytes it sent, the
    /// bytes of memory dirtied since the round before.
    pub rounds: Vec<migrate_proto::msg::RoundReport>,
    /// Rounds after the first read only the pages the kernel saw written (soft-dirty); else
    /// every present page, its hash telling what changed.
    pub dirty_tracking: bool,
    /// Changed files sent as rsync deltas, their sizes, and the bytes of the deltas.
    pub delta_files: u32,
    pub delta_file_bytes: u64,
    pub delta_bytes: u64,
    /// Packets that arrived for the container while it was frozen, sent on to the destination
    /// at the commit.
    pub held_packets: u32,
    /// Memory pre-copy: bytes sent while the container ran; then, while frozen, the pages of
    /// the final dump sent as references to pre-copied content and as data.
    pub mem_bytes: u64,
    pub page_refs: u64,
    pub page_data: u64,
    /// Pages of zeros in the final dump (version 4 names them without data or store).
    pub page_zero: u64,
    /// Version 4: the destination's store at its largest (slots used), which stays near the
    /// container's memory however much of it the pre-copy sent again and again (`mem_bytes`),
    /// and the pages the pre-copy put in slots it had freed.
    pub store_bytes: u64,
    pub store_reused: u64,
    /// The final CRIU dump's own time, within the frozen time.
    pub dump_ms: u64,
    /// The final dump's pages went straight from CRIU's page server to the wire (rather than
    /// through pages images written and read back: `MIGRATE_PAGE_SERVER="no"`).
    pub pages_streamed: bool,
    /// From the end of the last pre-copy round to the destination's acknowledgement of it (the
    /// freeze waits for it, so no pre-copy data is still on its way while frozen).
    pub drain_ms: u64,
}

struct Ctx<'a> {
    rt: &'a Runtime,
    ctid: Ctid,
    ct: crate::host::Container,
    opts: MigrateOptions,
    /// The connection: control stream, and bulk streams from protocol version 4 on.
    link: Link,
    /// Protocol version 4: pages by store slot and in runs.
    slots: bool,
    /// Spreads memory messages over the memory streams.
    lane_key: u64,
    /// The private area's passes.
    files: FileSync,
    /// The private area is an image, its files read where it is mounted (the root).
    image: bool,
    /// The migration mounted the image (it is unmounted again if the container stays).
    mounted_here: bool,
    work: PathBuf,
    freezer: Option<Freezer>,
    report: Report,
    was_running: bool,
    /// Set by SIGINT or SIGTERM: the migration is to be abandoned at the next step.
    interrupted: Arc<AtomicBool>,
    /// The destination watched while the container is frozen (none when resolving).
    watch: Option<FrozenWatch>,
    /// Packets to the frozen container's addresses, held for the destination.
    hold: Option<crate::net::hold::Hold>,
    /// The final dump's link remaps, put back for the final file pass (`remaps`).
    link_remaps: Vec<PathBuf>,
    /// The destination host's address (where held packets go at the commit).
    peer_ip: std::net::IpAddr,
    /// What the memory pre-copy sent (content hashes the destination holds).
    precopy: super::pages::Precopy,
    progress: &'a mut dyn FnMut(&str),
}

impl Ctx<'_> {
    /// Sends the tree, or what changed since the last pass.
    async fn fs_pass(&mut self, pass: u32) -> Result<u64, MigrateError> {
        let r = self.files.pass(&mut self.link.files(), pass, &self.interrupted).await;
        let c = self.files.counters();
        self.report.delta_files = c.delta_files;
        self.report.delta_file_bytes = c.delta_file_bytes;
        self.report.delta_bytes = c.delta_bytes;
        let st = r.map_err(|e| match e {
            SyncError::Wire(w) => MigrateError::Wire(w),
            SyncError::Interrupted => self.interrupted_error(),
            SyncError::Io { what, source } => RuntimeError::Io {
                ctid: self.ctid,
                what,
                source,
            }
            .into(),
        })?;
        let name = if self.freezer.is_some() {
            "final file sync (frozen)".to_string()
        } else {
            format!("file sync pass {pass}")
        };
        (self.progress)(&format!("{name}: {} changed, {} bytes", st.changed, st.bytes));
        Ok(st.bytes)
    }

    /// A send failed: the destination may have said why before it stopped reading (an abort
    /// on the control stream: a full disk, a refused message). Else the link is lost.
    async fn why_lost(&mut self, m: &mut Source, queue: &mut VecDeque<Action>, t0: Instant) -> Option<Event> {
        match self.link.recv(Duration::from_secs(1)).await {
            Ok(msg @ Message::Abort(_)) => {
                queue.extend(m.handle_message(t0.elapsed(), msg));
                None
            }
            _ => Some(self.lost()),
        }
    }

    fn arm_watch(&self, on: bool) {
        if let Some(w) = &self.watch {
            w.arm(on);
        }
    }

    /// The event for a lost link: the frozen watch's reason if it closed it.
    fn lost(&self) -> Event {
        match self.watch.as_ref().and_then(FrozenWatch::reason) {
            Some(r) => Event::Failed(r),
            None => Event::LinkLost,
        }
    }

    fn interrupted_error(&self) -> MigrateError {
        MigrateError::Aborted {
            ctid: self.ctid,
            reason: "interrupted by a signal".into(),
            phase: String::new(),
            exit: crate::exitcode::MigrateExit::Interrupted,
        }
    }

    fn check_interrupted(&self) -> Result<(), MigrateError> {
        if self.interrupted.load(Ordering::SeqCst) {
            return Err(self.interrupted_error());
        }
        Ok(())
    }

    fn freeze(&mut self) -> Result<(), MigrateError> {
        let cg = self.rt.cgroups(self.ctid)?;
        let f = *cg
            .freezers(self.ctid)
            .first()
            .ok_or_else(|| MigrateError::Unsupported(self.ctid, "no cgroup freezer".into()))?;
        if let Ok(Some(st)) = self.rt.run_state(self.ctid) {
            crate::net::drain_in_flight(self.ctid.get(), st.init_pid, crate::checkpoint::IN_FLIGHT_WAIT);
        }
        cg.freeze(self.ctid, f, Duration::from_secs(30))
            .map_err(|e| RuntimeError::Cgroup(self.ctid, e))?;
        self.freezer = Some(f);
        // Nothing reaches the frozen copy from here on: its addresses go to a blackhole, and
        // (live) from there to a device that holds what arrives for the destination.
        if let Ok(Some(st)) = self.rt.run_state(self.ctid) {
            crate::net::suspend(&st.net);
            crate::net::mute(self.ctid.get(), &st.net);
            if self.opts.online {
                let addrs: Vec<std::net::IpAddr> = st
                    .net
                    .ips
                    .iter()
                    .filter_map(|s| crate::net::parse_ip(s).ok().map(|a| a.addr))
                    .collect();
                match crate::net::hold::Hold::start(self.ctid.get(), &addrs) {
                    Ok(h) => self.hold = h,
                    Err(e) => (self.progress)(&format!(
                        "note: packets to the container are dropped while it is frozen (holding them failed: {e})"
                    )),
                }
            }
        }
        Ok(())
    }

    /// The next memory lane (version 4 spreads memory over its streams).
    fn memory_lane(&mut self) -> Lane {
        self.lane_key += 1;
        Lane::Memory(self.lane_key)
    }

    /// Pre-copied pages new to the destination: in the store slots they were given, one after
    /// another (version 4), or each with its hash (before).
    async fn send_pages(&mut self, round: u32, pages: Vec<migrate_proto::msg::Page>) -> Result<(), MigrateError> {
        use migrate_proto::msg::PageBatch;
        if !self.slots {
            return Ok(self.link.send(&Message::Pages(PageBatch { round, pages })).await?);
        }
        // One message per run of consecutive slots (new content takes the lowest free slots,
        // so runs are long).
        let mut run: Option<(u32, Vec<u8>)> = None;
        for (i, p) in pages.iter().enumerate() {
            let (Some(slot), Some(data)) = (self.precopy.slot_of(&p.hash), p.data.as_deref()) else {
                continue;
            };
            match &mut run {
                Some((first, d)) if *first as usize + d.len() / migrate_proto::limits::PAGE_SIZE == slot as usize => {
                    d.extend_from_slice(data)
                }
                _ => {
                    if let Some((first_slot, data)) = run.take() {
                        self.send_slots(round, first_slot, data).await?;
                    }
                    // A run holds at most the pages left.
                    let mut d = Vec::with_capacity((pages.len() - i) * migrate_proto::limits::PAGE_SIZE);
                    d.extend_from_slice(data);
                    run = Some((slot, d));
                }
            }
        }
        if let Some((first_slot, data)) = run {
            self.send_slots(round, first_slot, data).await?;
        }
        Ok(())
    }

    async fn send_slots(&mut self, round: u32, first_slot: u32, data: Vec<u8>) -> Result<(), MigrateError> {
        let lane = self.memory_lane();
        let m = Message::PageSlots(migrate_proto::msg::PageSlots {
            round,
            first_slot,
            data,
        });
        Ok(self.link.send_on(lane, &m).await?)
    }

    /// One pre-copy round: the pages of the running container whose content the destination
    /// lacks.
    async fn mem_round(&mut self, round: u32) -> Result<migrate_proto::policy::RoundStats, MigrateError> {
        use migrate_proto::limits::{MAX_PAGES, PAGE_SIZE};
        let t = Instant::now();
        let start = self.link.sent();
        let mut r = super::pages::Round::default();
        let mut buf = Vec::new();
        let mut batch = Vec::new();
        self.precopy.begin_round();
        let pids = super::pages::pids_of(self.rt, self.ctid);
        for &pid in &pids {
            let Some((pagemap, windows)) = super::pages::Precopy::windows(pid) else {
                continue;
            };
            // The pages to read are chosen before the process's soft-dirty bits are cleared,
            // and read after (where the kernel tracks written pages: else every present one).
            let dirty_only = self.precopy.dirty_only(pid);
            let chosen: Vec<(u64, Vec<u16>)> = windows
                .into_iter()
                .map(|(addr, n)| (addr, super::pages::choose(&pagemap, addr, n, dirty_only)))
                .collect();
            self.precopy.clear_dirty(pid);
            for (addr, pages) in chosen {
                self.check_interrupted()?;
                batch.extend(self.precopy.read(pid, addr, &pages, &mut buf, &mut r));
                while batch.len() >= MAX_PAGES {
                    let rest = batch.split_off(MAX_PAGES);
                    let pages = std::mem::replace(&mut batch, rest);
                    self.send_pages(round, pages).await?;
                }
            }
        }
        if !batch.is_empty() {
            self.send_pages(round, batch).await?;
        }
        if self.slots {
            // Slots no page refers to any more take the next round's new content.
            self.precopy.recycle(&pids.iter().map(|p| *p as u32).collect());
        }
        let sent_bytes = self.link.sent() - start;
        self.report.mem_bytes += sent_bytes;
        let dirty = if round == 1 { r.pages_sent } else { r.pages_changed };
        (self.progress)(&format!(
            "memory round {round}: {} pages read, {} changed, {} sent ({sent_bytes} bytes)",
            r.pages_read, r.pages_changed, r.pages_sent
        ));
        Ok(migrate_proto::policy::RoundStats {
            round,
            sent_bytes,
            dirty_bytes: dirty * PAGE_SIZE as u64,
            duration: t.elapsed(),
        })
    }

    /// A CRIU pages image as blocks: references to what the pre-copy sent, data for the rest.
    /// Read a window at a time into one buffer: a whole-file read of a large image costs a
    /// fresh allocation as large as the container's memory (3 s for 1 GiB here).
    async fn send_pages_image(&mut self, rel: &RelPath, path: &Path) -> Result<(), MigrateError> {
        use migrate_proto::limits::{MAX_PAGES, PAGE_SIZE};
        use std::os::unix::fs::FileExt;
        let ctid = self.ctid;
        let io = |e: std::io::Error| RuntimeError::Io {
            ctid,
            what: format!("reading image {rel}"),
            source: e,
        };
        let f = std::fs::File::open(path).map_err(io)?;
        let mut buf = vec![0u8; MAX_PAGES * PAGE_SIZE];
        let mut off = 0u64;
        let mut counts = super::pages::FinalCounts::default();
        loop {
            let mut n = 0;
            while n < buf.len() {
                let got = f.read_at(&mut buf[n..], off + n as u64).map_err(io)?;
                if got == 0 {
                    break;
                }
                n += got;
            }
            if n == 0 {
                break;
            }
            let blocks = &buf[..n - n % PAGE_SIZE];
            if self.slots {
                let m = Message::ImageRuns(self.precopy.image_runs(rel, off, blocks, &mut counts));
                let lane = self.memory_lane();
                self.link.send_on(lane, &m).await?;
            } else {
                let m = self.precopy.image_pages(rel, off, blocks, &mut counts);
                self.link.send(&Message::ImagePages(m)).await?;
            }
            off += blocks.len() as u64;
            if n < buf.len() {
                break;
            }
        }
        self.report.page_refs += counts.refs;
        self.report.page_data += counts.data;
        self.report.page_zero += counts.zero;
        if off == 0 && self.slots {
            // An empty pages image exists on the destination too.
            let m = Message::ImageRuns(migrate_proto::msg::ImageRuns::empty(rel.clone()));
            let lane = self.memory_lane();
            self.link.send_on(lane, &m).await?;
        }
        Ok(())
    }

    /// The final dump with its pages through CRIU's page server (`criu::page_server`): CRIU
    /// hands each run of pages over as it dumps it, and it goes on the wire at once, most as
    /// references to pre-copied content, while CRIU dumps the rest. Nothing of the container's
    /// memory is written to a file here.
    async fn dump_streaming(
        &mut self,
        criu: &Criu,
        images: &Path,
        opts: crate::criu::Opts,
    ) -> Result<(), MigrateError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel(8);
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let mut sink = super::pages::FinalPages::new(std::mem::take(&mut self.precopy), self.slots, tx);
        let (criu, images_dir) = (criu.clone(), images.to_path_buf());
        let mut remaps = super::remaps::RemapKeeper::new(self.ct.tree(), images);
        std::thread::spawn(move || {
            let r = crate::criu::page_server::dump(&criu, &images_dir, opts, &mut sink, &mut |s| remaps.notify(s));
            let _ = done_tx.send((r, sink.finish(), remaps));
        });
        let mut sent = Ok(());
        while let Some(m) = rx.recv().await {
            let lane = match &m {
                Message::Image(c) => Lane::Memory(lane_key(c.name.as_str())),
                _ => self.memory_lane(),
            };
            if let Err(e) = self.link.send_on(lane, &m).await {
                sent = Err(e);
                break;
            }
        }
        // A failed send closes the channel: the page server stops, which fails the dump.
        drop(rx);
        let (dumped, (precopy, counts), remaps) = done_rx
            .await
            .map_err(|_| MigrateError::Dump("the dump's thread ended without a word".into()))?;
        self.put_back_remaps(remaps)?;
        self.precopy = precopy;
        self.report.page_refs += counts.refs;
        self.report.page_data += counts.data;
        self.report.page_zero += counts.zero;
        sent?;
        dumped.map_err(|e| MigrateError::Dump(crate::error::chain_of(&e)))?;
        Ok(())
    }

    async fn final_sync(&mut self, page_refs: bool) -> Result<(u32, u64), MigrateError> {
        let st = self
            .rt
            .run_state(self.ctid)?
            .ok_or(RuntimeError::NotRunning(self.ctid))?;
        let images = self.work.join("images");
        let _ = std::fs::remove_dir_all(&self.work);
        std::fs::create_dir_all(&images).map_err(|e| RuntimeError::Io {
            ctid: self.ctid,
            what: "creating the work directory".into(),
            source: e,
        })?;
        let criu = self
            .rt
            .criu()
            .map_err(|e| MigrateError::Unsupported(self.ctid, e.to_string()))?;
        let cg = self.rt.cgroups(self.ctid)?;
        let freezer_dir = self.freezer.and_then(|f| cg.freezer_dir(self.ctid, f).ok());
        let console = crate::checkpoint::console_key(st.init_pid, &cg.pids(self.ctid).unwrap_or_default());
        let systemd = crate::runtime::running_caps(&self.ct, st.init_pid).sys_admin;
        let opts = crate::checkpoint::dump_opts(
            &self.ct,
            st.init_pid,
            systemd,
            console.as_deref(),
            freezer_dir.as_deref(),
            true,
        );
        let dump_t = Instant::now();
        let start = self.link.sent();
        let streaming = page_refs && self.rt.host.setting("MIGRATE_PAGE_SERVER", "yes") != "no";
        if streaming {
            self.report.pages_streamed = true;
            self.dump_streaming(&criu, &images, opts).await?;
        } else {
            let mut remaps = super::remaps::RemapKeeper::new(self.ct.tree(), &images);
            let dumped = criu.dump(&images, opts, &mut |s| remaps.notify(s));
            // Back under their names even when the dump failed after post-dump: a second name
            // of ours is never left in the container's files.
            self.put_back_remaps(remaps)?;
            dumped.map_err(|e| MigrateError::Dump(e.to_string()))?;
        }
        self.report.dump_ms = dump_t.elapsed().as_millis() as u64;
        (self.progress)(&format!(
            "final dump: {} ms{}",
            self.report.dump_ms,
            if streaming {
                format!(
                    " with its pages sent as dumped ({} references, {} pages of data)",
                    self.report.page_refs, self.report.page_data
                )
            } else {
                String::new()
            }
        ));
        // CRIU leaves a cgroup it found frozen frozen; make sure.
        if let Some(f) = self.freezer {
            let _ = cg.freeze(self.ctid, f, Duration::from_secs(10));
        }
        // And nothing leaves it: the host sides of its links go down (only now: CRIU records
        // the container's routes, and routes of a link without carrier cannot be restored), so
        // even its kernel's last words (a FIN when the copy is killed) never reach a peer.
        for link in crate::net::host_links(self.ctid.get(), &st.net) {
            let _ = crate::net::ip::host(&["link", "set", &link, "down"]);
        }
        let t_cpu = Instant::now();
        let _ = criu.cpuinfo_dump(&images);
        let cpu_ms = t_cpu.elapsed().as_millis();
        if let Some(c) = &console {
            let _ = std::fs::write(images.join("ferry-console"), c);
        }
        crate::checkpoint::record_cgroup_tree(cg, &self.ct, systemd, &images).map_err(|e| RuntimeError::Io {
            ctid: self.ctid,
            what: "recording the container's cgroups".into(),
            source: e,
        })?;
        let last = self.report.phases_ms.len() as u32 + 100;
        let t_fs = Instant::now();
        self.report.final_fs_bytes = self.fs_pass(last).await?;
        let fs_ms = t_fs.elapsed().as_millis();
        let t_img = Instant::now();
        let mut count = 0;
        for e in std::fs::read_dir(&images)
            .map_err(|e| RuntimeError::Io {
                ctid: self.ctid,
                what: "reading the images".into(),
                source: e,
            })?
            .flatten()
        {
            self.check_interrupted()?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".log") {
                continue;
            }
            let rel = RelPath::new(name.clone())
                .map_err(|_| MigrateError::Unsupported(self.ctid, format!("image name {name}")))?;
            let len = e.metadata().map(|m| m.len()).unwrap_or(1);
            if page_refs && super::pages::is_pages_image(&name) && len % migrate_proto::limits::PAGE_SIZE as u64 == 0 {
                self.send_pages_image(&rel, &e.path()).await?;
                count += 1;
                continue;
            }
            let data = std::fs::read(e.path()).map_err(|e| RuntimeError::Io {
                ctid: self.ctid,
                what: format!("reading image {name}"),
                source: e,
            })?;
            // A file's chunks keep their order on one stream (its first one truncates).
            let lane = Lane::Memory(lane_key(&name));
            for (i, chunk) in data.chunks(CHUNK).enumerate() {
                let (compressed, data) = self.files.compress(chunk.to_vec());
                let m = Message::Image(ImageChunk {
                    name: rel.clone(),
                    offset: (i * CHUNK) as u64,
                    compressed,
                    data,
                });
                self.link.send_on(lane, &m).await?;
            }
            if data.is_empty() {
                let m = Message::Image(ImageChunk {
                    name: rel.clone(),
                    offset: 0,
                    compressed: false,
                    data: vec![],
                });
                self.link.send_on(lane, &m).await?;
            }
            count += 1;
        }
        // Everything sent while frozen but the final file pass: the images (pages streamed
        // during the dump included).
        self.report.image_bytes = self.link.sent() - start - self.report.final_fs_bytes;
        (self.progress)(&format!(
            "frozen transfer: {count} image files, {} bytes (CPU description {cpu_ms} ms, files {fs_ms} ms, images {} ms)",
            self.link.sent() - start,
            t_img.elapsed().as_millis()
        ));
        Ok((count, self.link.sent() - start))
    }

    /// The link remaps of the final dump under their own names again, for the final file
    /// pass (and removed from here if the container stays).
    fn put_back_remaps(&mut self, remaps: super::remaps::RemapKeeper) -> Result<(), MigrateError> {
        let put = remaps.put_back().map_err(|e| RuntimeError::Io {
            ctid: self.ctid,
            what: "putting the dump's link remaps back".into(),
            source: e,
        })?;
        self.link_remaps.extend(put);
        Ok(())
    }

    /// The destination owns the container: the frozen copy here goes.
    fn destroy_source(&mut self) {
        remove_left_copy(self.rt, self.ctid, self.opts.remove_area);
        let _ = std::fs::remove_dir_all(&self.work);
    }

    /// The migration failed: the container runs on here as before.
    fn resume_source(&mut self) {
        // The dump's link remaps were CRIU's to remove; the container never saw them.
        for p in self.link_remaps.drain(..) {
            let _ = std::fs::remove_file(p);
        }
        if self.opts.online {
            // What its clients sent while it was frozen goes to it once it runs again.
            let (rt, ctid) = (self.rt, self.ctid);
            match self.hold.take() {
                Some(h) => {
                    let n = h.deliver_here(|| resume_online(rt, ctid));
                    (self.progress)(&format!("packets held while frozen handed back to the container: {n}"));
                }
                None => resume_online(rt, ctid),
            }
        } else if self.was_running && self.rt.run_state(self.ctid).ok().flatten().is_none() {
            let _ = self.rt.start(self.ctid);
        } else if self.mounted_here && !self.was_running {
            let _ = self.rt.umount(self.ctid);
        }
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// How long a destination may send nothing at all (not even the link's keep-alives, every 2 s)
/// while the container is frozen and the commit not yet sent, before the source takes it as
/// hung or cut off and rolls back (thaws and resumes the container) rather than wait for the
/// link's idle timeout (15 s).
pub const FROZEN_SILENCE: Duration = Duration::from_secs(6);

/// Watches the destination while the container is frozen (see [`FROZEN_SILENCE`]): a task on
/// the same runtime counts the datagrams the connection receives; armed and silent too long,
/// it closes the connection, so every send and receive of the migration fails at once and the
/// engine rolls back. Time the runtime spent blocked (a tick far late) does not count as the
/// peer's silence: its datagrams wait in the socket meanwhile.
struct FrozenWatch {
    armed: Arc<AtomicBool>,
    fired: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl FrozenWatch {
    fn start(conn: quinn::Connection) -> Self {
        let armed = Arc::new(AtomicBool::new(false));
        let fired = Arc::new(AtomicBool::new(false));
        let (a, f) = (armed.clone(), fired.clone());
        let task = tokio::spawn(async move {
            let tick = Duration::from_millis(250);
            let mut rx = conn.stats().udp_rx.datagrams;
            let (mut heard, mut last_tick) = (Instant::now(), Instant::now());
            loop {
                tokio::time::sleep(tick).await;
                let now = Instant::now();
                let n = conn.stats().udp_rx.datagrams;
                if !a.load(Ordering::SeqCst) || n != rx || now.duration_since(last_tick) > 4 * tick {
                    heard = now;
                }
                rx = n;
                last_tick = now;
                if now.duration_since(heard) >= FROZEN_SILENCE {
                    f.store(true, Ordering::SeqCst);
                    conn.close(
                        quinn::VarInt::from_u32(1),
                        b"the destination went silent while the container was frozen",
                    );
                    return;
                }
            }
        });
        Self { armed, fired, task }
    }

    fn arm(&self, on: bool) {
        self.armed.store(on, Ordering::SeqCst);
    }

    /// Why the link was lost, if this watch closed it.
    fn reason(&self) -> Option<AbortReason> {
        self.fired.load(Ordering::SeqCst).then(|| {
            AbortReason::Timeout(format!(
                "the destination sent nothing for {} s while the container was frozen (hung or cut off): rolled back",
                FROZEN_SILENCE.as_secs()
            ))
        })
    }
}

impl Drop for FrozenWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Stops the container as `vzctl stop` does (a clean shutdown, STOP_TIMEOUT, then the kill),
/// waiting for its init without blocking the thread: the runtime keeps driving the connection
/// meanwhile (its keep-alives), so an init that takes longer than the link's idle timeout to
/// stop does not cost the migration its link. Nothing is forked here.
async fn stop_driving(rt: &Runtime, ctid: Ctid) -> Result<(), RuntimeError> {
    use crate::runtime::{StopBegun, STOP_KILL_WAIT};
    let s = match rt.stop_begin(ctid, false, None)? {
        StopBegun::Done => return Ok(()),
        StopBegun::Stopping(s) => s,
    };
    let exited = |t: Duration| {
        let fd = std::os::fd::AsFd::as_fd(&s.pidfd);
        async move {
            // SAFETY: `fd` borrows the pidfd, which the borrow keeps open (and the same) for as
            // long as this AsyncFd lives: it is dropped at the end of this block.
            let Ok(afd) =
                (unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) })
            else {
                return false;
            };
            matches!(tokio::time::timeout(t, afd.readable()).await, Ok(Ok(_)))
        }
    };
    if !(s.killed || exited(s.timeout).await) {
        tracing::warn!(ctid = %ctid, "init did not stop within {:?}; killing the container", s.timeout);
        rt.stop_kill(&s);
    }
    if !exited(STOP_KILL_WAIT).await {
        return Err(RuntimeError::StopFailed(ctid, s.timeout + STOP_KILL_WAIT));
    }
    rt.stop_end(s)
}

/// The lane key of an image file: all its chunks on one stream.
fn lane_key(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The destination owns the container: the frozen copy left here is killed and stopped, and
/// unless `remove_area` is false, destroyed.
fn remove_left_copy(rt: &Runtime, ctid: Ctid, remove_area: bool) {
    if let Ok(cg) = rt.cgroups(ctid) {
        let _ = cg.kill_all(ctid, Duration::from_millis(50));
        for f in cg.freezers(ctid) {
            let _ = cg.thaw(ctid, f);
        }
    }
    let _ = rt.stop(ctid, true, Some(Duration::from_secs(10)));
    if remove_area {
        let _ = rt.destroy(ctid, false);
    } else {
        // Kept, as a stopped container is: unmounted (an image the migration mounted).
        let _ = rt.umount(ctid);
    }
    // Its links go with it; only the routed link's rule would stay.
    crate::net::unmute(ctid.get(), &[]);
    // It left: whoever moved it here can no longer ask it back from this host.
    let _ = std::fs::remove_file(super::pull::arrival_path(&rt.host.layout, ctid.get()));
}

/// The container runs on here as before a migration froze it: thawed, its host links up, its
/// routes back, its addresses announced.
fn resume_online(rt: &Runtime, ctid: Ctid) {
    if let Ok(cg) = rt.cgroups(ctid) {
        for f in cg.freezers(ctid) {
            let _ = cg.thaw(ctid, f);
        }
    }
    if let Ok(Some(st)) = rt.run_state(ctid) {
        crate::net::unsuspend(ctid.get(), &st.net);
    }
}

/// The journal of an outgoing migration of `ctid` (present while one runs, or after one was
/// interrupted).
pub fn journal_path(rt: &Runtime, ctid: Ctid) -> PathBuf {
    rt.host.layout.run_dir().join(format!("migrate-out-{ctid}.json"))
}

/// The pid of a vzmigrate still moving `ctid` from this host, from its journal.
pub fn moving_pid(rt: &Runtime, ctid: Ctid) -> Option<u32> {
    let j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(journal_path(rt, ctid)).ok()?).ok()?;
    let pid = u32::try_from(j["pid"].as_u64()?).ok()?;
    crate::runtime::proc::runs_as(pid, "vzmigrate").then_some(pid)
}

/// Settles a container whose outgoing migration was interrupted (vzmigrate killed, the host
/// crashed, the connection lost after the commit was sent). Before the commit was sent the
/// destination cannot have it, so it is resumed here. After, the destination is asked how the
/// migration ended (its answer is final: a destination that had not committed records that it
/// never will): committed, the copy left here is removed (its private area too if the
/// migration was to remove it); not committed, it is resumed here. A destination that cannot
/// be reached leaves the container as it is, unless `force` (the administrator checked that it
/// does not run there) resumes it here without asking.
pub fn recover(rt: &Runtime, ctid: Ctid, force: bool) -> Result<String, MigrateError> {
    let path = journal_path(rt, ctid);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(MigrateError::Recover {
                ctid,
                why: "no interrupted migration of this container on this host".into(),
            })
        }
        Err(e) => {
            return Err(RuntimeError::Io {
                ctid,
                what: format!("reading {}", path.display()),
                source: e,
            }
            .into())
        }
    };
    let j: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let phase = j["phase"].as_str().unwrap_or("unknown").to_string();
    let peer = j["peer"].as_str().unwrap_or("the destination").to_string();
    if let Some(pid) = moving_pid(rt, ctid) {
        return Err(MigrateError::Recover {
            ctid,
            why: format!("vzmigrate (pid {pid}) is still moving it to {peer}"),
        });
    }
    // Nothing else changes the container while this decides (another --recover, the agent's).
    let _hold = rt.hold(ctid)?;
    if !path.exists() {
        return Err(MigrateError::Recover {
            ctid,
            why: "no interrupted migration of this container on this host (another command settled it)".into(),
        });
    }
    let commit_sent = !matches!(
        phase.as_str(),
        "Handshake" | "Plan" | "FsSync" | "MemPrecopy" | "Freeze" | "FinalSync" | "Restore" | "Aborted"
    );
    let clean_work = || {
        let dump = rt.host.layout.dump_dir().join(ctid.to_string());
        if let Ok(rd) = std::fs::read_dir(&dump) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(".migrate-") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let _ = std::fs::remove_file(&path);
    };
    if commit_sent && !force {
        let asked = j["migration_id"]
            .as_str()
            .and_then(super::parse_id)
            .ok_or_else(|| "the journal does not name the migration".to_string())
            .and_then(|mid| ask_destination(rt, &peer, &mid));
        match asked {
            Ok(true) => {
                remove_left_copy(rt, ctid, j["remove_area"].as_bool().unwrap_or(true));
                clean_work();
                return Ok(format!(
                    "container {ctid} runs on {peer}: the migration had committed there; the copy left here was removed"
                ));
            }
            Ok(false) => {}
            Err(why) => {
                return Err(MigrateError::Recover {
                    ctid,
                    why: format!(
                        "the migration to {peer} reached phase {phase}: the commit was sent and the container may run there, \
                         and {peer} cannot say how it ended ({why}). Try again once it is reachable (vzagentd tries at every tick); \
                         or check there: if it does not run there, run again with --force; if it does, remove this copy (vzctl stop --fast, vzctl destroy)"
                    ),
                });
            }
        }
    }
    resume_online(rt, ctid);
    clean_work();
    Ok(format!(
        "container {ctid} resumed here (its migration to {peer} was interrupted in phase {phase}{})",
        if commit_sent && !force {
            format!("; {peer} confirms it did not commit")
        } else {
            String::new()
        }
    ))
}

/// Asks the destination (by its pinned name) whether migration `mid` committed there.
fn ask_destination(rt: &Runtime, peer_name: &str, mid: &MigrationId) -> Result<bool, String> {
    let store = crate::agent::trust::TrustStore::load(&rt.host.layout).map_err(|e| e.to_string())?;
    let peer = store
        .find(peer_name)
        .cloned()
        .ok_or_else(|| format!("{peer_name} is no longer a pinned peer"))?;
    let id = Identity::load_or_create(&rt.host.layout, &rt.host.setting("AGENT_NAME", "ferry-host"))
        .map_err(|e| e.to_string())?;
    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    tokio_rt.block_on(async {
        let ask = async {
            let question = Message::Resolve { migration_id: *mid };
            match super::ask(&id, &peer, &question, RESOLVE_WAIT)
                .await
                .map_err(|e| chain(&e))?
            {
                Message::Resolved {
                    migration_id,
                    committed,
                } if migration_id == *mid => Ok(committed),
                other => Err(format!("it answered {:?}", other.kind())),
            }
        };
        tokio::time::timeout(RESOLVE_WAIT, ask)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {} s", RESOLVE_WAIT.as_secs())))
    })
}

/// Bulk streams of a version 4 migration: the file passes' and two for memory and images.
const BULK_STREAMS: usize = 3;

/// How long one question to the destination about a migration's end may take.
const RESOLVE_WAIT: Duration = Duration::from_secs(15);

/// How long vzmigrate keeps asking a destination it lost after sending the commit.
const IN_DOUBT_FOR: Duration = Duration::from_secs(60);

fn chain(e: &dyn std::error::Error) -> String {
    crate::error::chain_of(e)
}

/// Settles, where the vzmigrate that started them is gone, the outgoing migrations of this
/// host (vzagentd at start and at every tick). Returns one line per container looked at.
pub fn recover_interrupted(rt: &Runtime) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(rt.host.layout.run_dir()) else {
        return vec![];
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(id) = name.strip_prefix("migrate-out-").and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        let Ok(ctid) = id
            .parse::<u32>()
            .map_err(|_| ())
            .and_then(|n| Ctid::new(n).map_err(|_| ()))
        else {
            continue;
        };
        if moving_pid(rt, ctid).is_some() {
            continue;
        }
        out.push(match recover(rt, ctid, false) {
            Ok(msg) => msg,
            Err(e) => chain(&e),
        });
    }
    out
}

/// Moves a container to a pinned peer.
pub async fn migrate(
    rt: &Runtime,
    ctid: Ctid,
    peer: &Peer,
    id: &Identity,
    opts: MigrateOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<Report, MigrateError> {
    let t0 = Instant::now();
    let ct = rt.host.container(ctid).map_err(RuntimeError::from)?;
    let image = ct
        .layout()
        .map_err(|e| MigrateError::Unsupported(ctid, e.to_string()))?
        == crate::storage::Layout::Image;
    // Nothing else stops, sets or checkpoints the container until the migration has ended.
    let _hold = rt.hold(ctid)?;
    if journal_path(rt, ctid).exists() {
        return Err(MigrateError::Recover {
            ctid,
            why: format!("an earlier migration of it was interrupted; see to it first with vzmigrate --recover {ctid}"),
        });
    }
    let running = rt.run_state(ctid)?.is_some();
    if opts.online && !running {
        return Err(RuntimeError::NotRunning(ctid).into());
    }
    // What would fail (or hang) the final dump is found before anything is sent; so a
    // --check-only finds it too.
    if opts.online {
        let blockers = rt
            .dump_blockers(ctid)
            .map_err(|e| MigrateError::Unsupported(ctid, e.to_string()))?;
        if !blockers.is_empty() {
            return Err(MigrateError::Unsupported(
                ctid,
                format!("it cannot be dumped here: {}", blockers.join("; ")),
            ));
        }
    }
    progress(&format!("connecting to {} ({})", peer.name, peer.address));
    // The connection lives as long as the migration: its control stream, and from protocol
    // version 4 on the bulk streams opened on it.
    let (conn, wire) = super::dial(id, peer).await?;
    let config = std::fs::read_to_string(&ct.conf_path).map_err(|e| RuntimeError::Io {
        ctid,
        what: "reading the configuration".into(),
        source: e,
    })?;
    let needs = super::capacity::footprint(rt, &ct);
    let plan = Plan {
        ctid: ctid.get(),
        config,
        layout: if image { Layout::Image } else { Layout::Simfs },
        private_bytes: needs.private_bytes,
        private_inodes: needs.private_inodes,
        ram_bytes: needs.ram_bytes,
        online: opts.online,
        keep_dst: opts.keep_dst,
        bwlimit: match &opts.bwlimit {
            RateSource::Fixed(r) => *r,
            RateSource::File(_) => 0,
        },
        max_downtime_ms: opts.max_downtime.as_millis() as u64,
        start: running,
    };
    let mut mid = [0u8; 16];
    mid[..8].copy_from_slice(&(t0.elapsed().as_nanos() as u64 ^ std::process::id() as u64).to_be_bytes());
    mid[8..12].copy_from_slice(&ctid.get().to_be_bytes());
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u32)
        .unwrap_or(0);
    mid[12..].copy_from_slice(&now_s.to_be_bytes());
    let mut cfg = SourceConfig::new(
        mid,
        rt.host.setting("AGENT_NAME", "ferry-host"),
        super::local_caps(),
        plan,
    );
    // Live: content-addressed memory pre-copy rounds, guided by the kernel's soft-dirty bits
    // where it has them.
    cfg.mem_precopy = opts.online;
    cfg.versions = super::protocol_versions();
    // A test hook (as FERRY_SOFT_DIRTY): at least N pre-copy rounds before the freeze, so a
    // test sees rounds after the first (the guest lane's soft-dirty check) on an idle container.
    if let Some(n) = std::env::var("FERRY_MIN_ROUNDS")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        cfg.policy.min_rounds = n.max(1);
    }
    let mut m = Source::new(cfg);
    let work = rt
        .host
        .layout
        .dump_dir()
        .join(ctid.to_string())
        .join(format!(".migrate-{}", std::process::id()));
    // The tree the file passes read: the private area, or an image's file system, mounted on
    // the container's root (here, if it was not: a stopped container's).
    let mut mounted_here = false;
    if image && !crate::fsutil::is_mountpoint(&ct.root).unwrap_or(false) {
        rt.mount(ctid)?;
        mounted_here = true;
    }
    let tree = ct.tree().to_path_buf();
    let watch = FrozenWatch::start(conn.clone());
    let mut cx = Ctx {
        rt,
        ctid,
        ct,
        opts: opts.clone(),
        link: Link::new(
            Some(conn),
            wire.throttled(opts.bwlimit.clone()).counted(opts.sent.clone()),
        ),
        slots: false,
        lane_key: 0,
        files: FileSync::new(&tree),
        image,
        mounted_here,
        work,
        freezer: None,
        report: Report {
            ctid: ctid.get(),
            destination: peer.name.clone(),
            online: opts.online,
            ..Default::default()
        },
        was_running: running,
        interrupted: Arc::new(AtomicBool::new(false)),
        watch: Some(watch),
        hold: None,
        link_remaps: Vec::new(),
        peer_ip: peer.address.ip(),
        precopy: {
            let mut p = super::pages::Precopy::default();
            p.track_dirty(opts.online && super::pages::soft_dirty_works());
            p
        },
        progress,
    };
    // SIGINT and SIGTERM abandon the migration through the state machine (which rolls back,
    // or after the commit was sent, resolves) instead of killing vzmigrate with the container
    // frozen and cut off.
    let signalled = Arc::new(tokio::sync::Notify::new());
    let watcher = {
        let (flag, signalled) = (cx.interrupted.clone(), signalled.clone());
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map_err(|e| MigrateError::Unsupported(ctid, format!("installing signal handlers: {e}")))?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| MigrateError::Unsupported(ctid, format!("installing signal handlers: {e}")))?;
        tokio::spawn(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            flag.store(true, Ordering::SeqCst);
            signalled.notify_one();
        })
    };
    let r = run_source(&mut cx, &mut m, t0, (id, peer), &opts, running, &signalled).await;
    watcher.abort();
    r
}

/// Drives the source state machine to its end.
#[allow(clippy::too_many_arguments)]
async fn run_source(
    cx: &mut Ctx<'_>,
    m: &mut Source,
    t0: Instant,
    (id, peer): (&Identity, &Peer),
    opts: &MigrateOptions,
    running: bool,
    signalled: &tokio::sync::Notify,
) -> Result<Report, MigrateError> {
    let (rt, ctid) = (cx.rt, cx.ctid);
    let mid = m.migration_id();
    let mut told_interrupt = false;
    // After the commit was sent and the connection lost: since when, and the new connection.
    let mut in_doubt_since: Option<Instant> = None;
    let mut _resolving: Option<quinn::Connection> = None;
    let mut queue: VecDeque<Action> = m.start(t0.elapsed()).into();
    let mut phase_t = Instant::now();
    let mut phase = format!("{:?}", m.phase());
    let mut frozen_at: Option<Instant> = None;
    let mut round_sent_at: Option<Instant> = None;
    let mut outcome: Option<Outcome> = None;
    loop {
        while let Some(a) = queue.pop_front() {
            let now = t0.elapsed();
            let cur = format!("{:?}", m.phase());
            if cur != phase {
                cx.report
                    .phases_ms
                    .push((phase.clone(), phase_t.elapsed().as_millis() as u64));
                (cx.progress)(&format!("phase {cur}"));
                phase = cur;
                phase_t = Instant::now();
            }
            let ev = match a {
                Action::Send(msg) => {
                    let commit = matches!(msg, Message::Commit);
                    if commit {
                        // From here the outcome is the destination's: no rollback on silence.
                        cx.arm_watch(false);
                        super::fault_point("vzmigrate-before-commit").await;
                    }
                    if cx.link.send(&msg).await.is_err() {
                        Some(Event::LinkLost)
                    } else {
                        if commit {
                            super::fault_point("vzmigrate-after-commit").await;
                        }
                        None
                    }
                }
                Action::Journal(p) => {
                    let j = serde_json::json!({
                        "phase": format!("{p:?}"),
                        "peer": peer.name,
                        "pid": std::process::id(),
                        "migration_id": super::id_hex(&mid),
                        "remove_area": opts.remove_area,
                    });
                    let path = journal_path(rt, ctid);
                    match crate::fsutil::write_atomic(&path, format!("{j}\n").as_bytes(), 0o600) {
                        Ok(()) => Some(Event::Journaled(p)),
                        // A record of an outcome already decided (and acted on whatever the
                        // file says: recovery reads the commit's record before it).
                        Err(e) if matches!(p, Phase::Aborted | Phase::Done | Phase::InDoubt) => {
                            (cx.progress)(&format!("warning: writing {}: {e}", path.display()));
                            None
                        }
                        // The step it was to record is not taken: what the batch had after it
                        // is dropped, and the migration rolls back (the commit was not sent).
                        Err(e) => {
                            queue.clear();
                            Some(Event::Failed(AbortReason::Local(format!(
                                "writing the migration's journal {}: {e}",
                                path.display()
                            ))))
                        }
                    }
                }
                // Offline, stopping is the first step after the destination's preflight: a
                // check stops there, with the container untouched.
                Action::StopContainer if opts.check_only => Some(Event::Failed(AbortReason::Cancelled(
                    "preflight only (--check-only): every check passed".into(),
                ))),
                Action::StopContainer if !running => Some(Event::ContainerStopped),
                Action::StopContainer => {
                    let stopped = stop_driving(rt, ctid).await.and_then(|()| {
                        frozen_at = Some(Instant::now());
                        // Stopping unmounted an image; the last pass reads it mounted again.
                        if cx.image {
                            rt.mount(ctid)?;
                            cx.mounted_here = true;
                        }
                        Ok(())
                    });
                    match stopped {
                        Ok(()) => {
                            cx.arm_watch(true);
                            Some(Event::ContainerStopped)
                        }
                        Err(e) => Some(Event::Failed(AbortReason::Local(e.to_string()))),
                    }
                }
                Action::StartFsPass { pass, .. } => {
                    if opts.check_only {
                        Some(Event::Failed(AbortReason::Cancelled(
                            "preflight only (--check-only): every check passed".into(),
                        )))
                    } else {
                        match cx.fs_pass(pass).await {
                            Ok(bytes) => {
                                cx.report.fs_bytes += bytes;
                                Some(Event::FsPassSent { pass, bytes })
                            }
                            Err(MigrateError::Wire(_)) => cx.why_lost(m, &mut queue, t0).await,
                            Err(e) => Some(Event::Failed(abort_reason(e))),
                        }
                    }
                }
                Action::StartMemRound { round, .. } => match cx.mem_round(round).await {
                    Ok(stats) => {
                        round_sent_at = Some(Instant::now());
                        Some(Event::MemRoundSent(stats))
                    }
                    Err(MigrateError::Wire(_)) => cx.why_lost(m, &mut queue, t0).await,
                    Err(e) => Some(Event::Failed(abort_reason(e))),
                },
                Action::Freeze => {
                    if let Some(t) = round_sent_at.take() {
                        cx.report.drain_ms = t.elapsed().as_millis() as u64;
                        (cx.progress)(&format!(
                            "pre-copy acknowledged {} ms after its last round",
                            cx.report.drain_ms
                        ));
                    }
                    // The frozen time counts from the start of the freeze.
                    frozen_at = Some(Instant::now());
                    match cx.freeze() {
                        Ok(()) => {
                            cx.arm_watch(true);
                            Some(Event::Frozen)
                        }
                        Err(e) => Some(Event::Failed(AbortReason::Local(e.to_string()))),
                    }
                }
                Action::FinalSync { page_refs } => match cx.final_sync(page_refs).await {
                    Ok((images, bytes)) => Some(Event::FinalSent { images, bytes }),
                    Err(MigrateError::Wire(_)) => cx.why_lost(m, &mut queue, t0).await,
                    Err(e) => Some(Event::Failed(abort_reason(e))),
                },
                Action::DestroySource => {
                    if let Some(h) = cx.hold.take() {
                        cx.report.held_packets = h.release(cx.peer_ip) as u32;
                    }
                    cx.report.frozen_ms = frozen_at.map(|f| f.elapsed().as_millis() as u64).unwrap_or(0);
                    cx.destroy_source();
                    None
                }
                Action::ResumeSource => {
                    cx.arm_watch(false);
                    cx.resume_source();
                    None
                }
                Action::Finished(o) => {
                    outcome = Some(o);
                    None
                }
                Action::CheckPlan(_)
                | Action::Apply(_)
                | Action::Restore
                | Action::RunRestored
                | Action::Cleanup { .. } => None,
            };
            if let Some(ev) = ev {
                queue.extend(m.handle_event(t0.elapsed(), ev));
            }
            let _ = now;
        }
        if let Some(o) = outcome.take() {
            cx.report
                .phases_ms
                .push((phase.clone(), phase_t.elapsed().as_millis() as u64));
            cx.link.finish().await;
            cx.report.total_ms = t0.elapsed().as_millis() as u64;
            cx.report.wire_bytes = cx.link.sent();
            let c = cx.files.counters();
            cx.report.compression_ratio = if c.compressed_bytes > 0 {
                c.raw_bytes as f64 / c.compressed_bytes as f64
            } else {
                1.0
            };
            cx.report.memory_rounds = m.stats().rounds.len() as u32;
            cx.report.rounds = m.stats().rounds.clone();
            cx.report.dirty_tracking = cx.precopy.tracks_dirty();
            if cx.slots {
                cx.report.store_bytes = u64::from(cx.precopy.slots_used()) * migrate_proto::limits::PAGE_SIZE as u64;
                cx.report.store_reused = cx.precopy.slots_reused();
            }
            cx.report.protocol = m.version().unwrap_or(0);
            let _ = std::fs::remove_file(journal_path(rt, ctid));
            return match o {
                Outcome::Committed => {
                    cx.report.outcome = "committed".into();
                    Ok(std::mem::take(&mut cx.report))
                }
                Outcome::Aborted(AbortReason::Cancelled(why)) if opts.check_only => {
                    cx.report.outcome = why;
                    Ok(std::mem::take(&mut cx.report))
                }
                Outcome::Aborted(r) => Err(MigrateError::Aborted {
                    ctid,
                    exit: super::abort_exit(&r),
                    reason: r.to_string(),
                    // The phase it failed in: the last before "Aborted".
                    phase: cx
                        .report
                        .phases_ms
                        .iter()
                        .rev()
                        .map(|(p, _)| p.as_str())
                        .find(|p| *p != "Aborted")
                        .unwrap_or("Handshake")
                        .to_string(),
                }),
            };
        }
        if m.phase() == Phase::InDoubt {
            // The commit was sent and the connection lost: ask the destination on a new one
            // how it ended, for a while. Its answer settles it; giving up leaves the journal
            // to `vzmigrate --recover` and the agent.
            let since = *in_doubt_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= IN_DOUBT_FOR || cx.interrupted.load(Ordering::SeqCst) {
                return Err(MigrateError::InDoubt { ctid });
            }
            (cx.progress)("the connection broke after the commit was sent: asking the destination how it ended");
            tokio::time::sleep(Duration::from_millis(500)).await;
            match tokio::time::timeout(RESOLVE_WAIT, super::dial(id, peer)).await {
                Ok(Ok((conn, wire))) => {
                    _resolving = Some(conn);
                    cx.link = Link::new(None, wire.counted(opts.sent.clone()));
                    queue.extend(m.handle_event(t0.elapsed(), Event::Reconnected));
                }
                _ => tokio::time::sleep(Duration::from_secs(1)).await,
            }
            continue;
        }
        let wait = m
            .poll_timeout()
            .map(|d| d.saturating_sub(t0.elapsed()))
            .unwrap_or(Duration::from_secs(3600))
            .max(Duration::from_millis(1));
        if cx.interrupted.load(Ordering::SeqCst) && !told_interrupt {
            told_interrupt = true;
            (cx.progress)("interrupted: abandoning the migration");
            queue.extend(m.handle_event(
                t0.elapsed(),
                Event::Failed(AbortReason::Cancelled("interrupted by a signal".into())),
            ));
            continue;
        }
        let received = tokio::select! {
            r = cx.link.recv(wait) => Some(r),
            _ = signalled.notified(), if !told_interrupt => None,
        };
        let actions = match received {
            None => continue,
            Some(Ok(msg)) => m.handle_message(t0.elapsed(), msg),
            Some(Err(WireError::Timeout(_))) => m.handle_timeout(t0.elapsed()),
            Some(Err(_)) => m.handle_event(t0.elapsed(), cx.lost()),
        };
        // Protocol version 4: bulk data goes on streams of its own from now on.
        if !cx.link.streams() && m.version().is_some_and(migrate_proto::machine::streams_and_slots) {
            match cx.link.use_streams(BULK_STREAMS).await {
                Ok(()) => {
                    cx.slots = true;
                    cx.report.bulk_streams = BULK_STREAMS as u32;
                }
                Err(_) => queue.extend(m.handle_event(t0.elapsed(), Event::LinkLost)),
            }
        }
        queue.extend(actions);
    }
}
