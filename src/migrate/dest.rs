//! The destination side of a migration, run by vzagentd for each incoming connection: it
//! drives migrate-proto's [`Destination`] machine and performs its actions. It runs inside a
//! multi-threaded daemon, so everything that forks (restoring, stopping) goes through `vzctl`
//! subprocesses.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use migrate_proto::machine::{Action, Custody, DestConfig, Destination, Event, Outcome, Phase};
use migrate_proto::msg::{AbortReason, Capabilities, Layout, Message, MigrationId, Plan};

use super::fs::{confined, Applier};
use super::wire::{Wire, WireError};
use super::{id_hex, parse_id};
use crate::layout::HostLayout;

/// What the agent shares between migrations.
pub struct DestCtx {
    pub layout: HostLayout,
    pub vzctl: PathBuf,
    pub name: String,
    pub caps: Capabilities,
    /// Final decisions by migration id: committed or not (for `Resolve`), kept on disk.
    pub decisions: Decisions,
    /// Containers being received, so one CTID is migrated in at most once at a time.
    pub busy: Mutex<Vec<u32>>,
    /// Migrations being received, by id, with the key of the host sending each: only that host
    /// may ask how one ended (and so decide it) while it runs.
    pub live: Mutex<HashMap<MigrationId, Option<String>>>,
}

use crate::migrate::log;

/// How many decisions [`Decisions`] keeps (the oldest go first).
const DECISIONS_KEPT: usize = 4096;

/// The final word on each incoming migration, committed or aborted, kept on disk
/// (`vz/run/migrate-decisions.json`) so that a source in doubt (its connection broke after it
/// sent the commit) gets the same answer from this host however often it asks, across restarts
/// of this agent. The first decision recorded for a migration stands: once a source asked and
/// was told "not committed", a commit that still arrives for it is refused, so the source may
/// resume its copy without two ever running.
pub struct Decisions {
    path: PathBuf,
    map: Mutex<HashMap<String, Decision>>,
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct Decision {
    committed: bool,
    ctid: u32,
    /// Seconds since the epoch, for keeping the newest.
    at: u64,
}

impl Decisions {
    /// This host's decisions (none if the file is missing; an unreadable file is an error, since
    /// answering from nothing could contradict an earlier answer).
    pub fn load(layout: &HostLayout) -> std::io::Result<Self> {
        let path = layout.run_dir().join("migrate-decisions.json");
        let map = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => return Err(e),
        };
        Ok(Self {
            path,
            map: Mutex::new(map),
        })
    }

    /// The decision recorded for `id`, if any.
    pub fn get(&self, id: &MigrationId) -> Option<bool> {
        self.map.lock().unwrap().get(&id_hex(id)).map(|d| d.committed)
    }

    /// Records `committed` for `id` unless a decision stands already, and returns the one that
    /// stands; it is on disk (synced) before this returns.
    pub fn decide(&self, id: &MigrationId, ctid: u32, committed: bool) -> std::io::Result<bool> {
        let mut map = self.map.lock().unwrap();
        if let Some(d) = map.get(&id_hex(id)) {
            return Ok(d.committed);
        }
        let at = crate::units::unix_now();
        let mut next = map.clone();
        next.insert(id_hex(id), Decision { committed, ctid, at });
        if next.len() > DECISIONS_KEPT {
            let mut ages: Vec<(u64, String)> = next.iter().map(|(k, d)| (d.at, k.clone())).collect();
            ages.sort();
            for (_, k) in ages.into_iter().take(next.len() - DECISIONS_KEPT) {
                next.remove(&k);
            }
        }
        let bytes = serde_json::to_vec(&next).map_err(std::io::Error::other)?;
        crate::fsutil::write_atomic(&self.path, &bytes, 0o600)?;
        *map = next;
        Ok(committed)
    }
}

struct Incoming {
    ctid: Option<u32>,
    plan: Option<Plan>,
    /// What files, images and memory are written into, from the plan check to the restore.
    targets: Option<Arc<Targets>>,
    images: Option<PathBuf>,
    wrote_config: bool,
    created_private: bool,
    /// Where this migration mounted an image (offline, unmounted before the container starts).
    mounted_root: Option<PathBuf>,
}

/// Where an incoming migration's data goes: the tree, the images directory, the pre-copied
/// memory. Shared with the bulk streams' workers (protocol version 4), each of which holds it
/// only while it applies a message, so dropping the incoming migration's reference at the
/// restore releases it.
struct Targets {
    applier: Mutex<Applier>,
    images: PathBuf,
    /// Pre-copied memory (live migrations).
    store: Option<super::pages::Store>,
}

/// What an incoming migration has created, on disk, so a crashed agent can undo it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Journal {
    pub phase: String,
    /// The migration's id (hex), for the decision a crash left to take.
    #[serde(default)]
    pub migration_id: Option<String>,
    pub ctid: u32,
    pub private: Option<PathBuf>,
    pub images: Option<PathBuf>,
    pub config_written: bool,
    pub online: bool,
}

fn journal_path(layout: &HostLayout, ctid: u32) -> PathBuf {
    layout.run_dir().join(format!("migrate-in-{ctid}.json"))
}

/// Records what the incoming migration has created, durably (file and directory synced),
/// before the step that follows it is taken.
fn journal(ctx: &DestCtx, inc: &Incoming, id: Option<&MigrationId>, phase: Phase) -> std::io::Result<()> {
    let Some(ctid) = inc.ctid else { return Ok(()) };
    let private = if inc.created_private {
        private_of(ctx, inc)
    } else {
        None
    };
    let j = Journal {
        phase: format!("{phase:?}"),
        migration_id: id.map(id_hex),
        ctid,
        private,
        images: inc.images.clone(),
        config_written: inc.wrote_config,
        online: inc.plan.as_ref().is_some_and(|p| p.online),
    };
    let b = serde_json::to_vec(&j).map_err(std::io::Error::other)?;
    crate::fsutil::write_atomic(&journal_path(&ctx.layout, ctid), &b, 0o600)
}

fn private_of(ctx: &DestCtx, inc: &Incoming) -> Option<PathBuf> {
    let plan = inc.plan.as_ref()?;
    let host = crate::host::Host::open(ctx.layout.clone()).ok()?;
    let config = crate::config::Config::parse(&plan.config, Path::new("(plan)")).ok()?;
    Some(
        host.container_from(crate::ctid::Ctid::new(plan.ctid).ok()?, config)
            .private,
    )
}

/// At agent start: resolves incoming migrations a crash interrupted. Without a recorded
/// commit the decision is abort: a restored copy is stopped and what the migration created is
/// removed. A committed one gets its network attached if the crash came before that.
pub fn recover(ctx: &DestCtx) {
    let Ok(rd) = std::fs::read_dir(ctx.layout.run_dir()) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("migrate-in-") && name.ends_with(".json")) {
            continue;
        }
        let Ok(j) = std::fs::read(e.path())
            .map_err(|_| ())
            .and_then(|b| serde_json::from_slice::<Journal>(&b).map_err(|_| ()))
        else {
            continue;
        };
        let id = j.ctid.to_string();
        // A commit recorded just before the crash counts even if the journal missed it; any
        // other migration is decided here and now: aborted.
        let mid = j.migration_id.as_deref().and_then(parse_id);
        let committed = j.phase == "Done" || mid.is_some_and(|m| ctx.decisions.get(&m) == Some(true));
        if let Some(m) = mid {
            let _ = ctx.decisions.decide(&m, j.ctid, committed);
        }
        // The work directory (images, page store) goes either way.
        if let Some(i) = &j.images {
            let _ = std::fs::remove_dir_all(i.parent().unwrap_or(i));
        }
        if committed {
            if j.online {
                let _ = vzctl(ctx, &["attach", &id]);
            }
            log(&format!("recovered the committed migration of container {id}"));
        } else {
            let _ = vzctl(ctx, &["stop", "--fast", "-q", &id]);
            if j.config_written {
                if let Ok(c) = crate::ctid::Ctid::new(j.ctid) {
                    let _ = std::fs::remove_file(ctx.layout.ct_conf(c));
                }
            }
            if let Some(p) = &j.private {
                // The root, and an image's raw mount inside the private area.
                for m in [ctx.layout.root_base().join(&id), p.join("fs")] {
                    if crate::fsutil::is_mountpoint(&m).unwrap_or(false) {
                        let _ = Command::new("umount").arg("-l").arg(&m).status();
                    }
                }
                let _ = std::fs::remove_dir_all(p);
            }
            log(&format!(
                "aborted the migration of container {id} that a crash interrupted in phase {}",
                j.phase
            ));
        }
        let _ = std::fs::remove_file(e.path());
    }
    sweep_work_dirs(ctx);
}

/// At agent start, after the journals are settled: an incoming migration's work directory
/// (`vz/dump/CTID/.incoming-PID`) that is still there belongs to no migration (none runs before
/// the agent listens), e.g. one an older agent or a crash between its steps left. It goes; and
/// if the container's configuration is there without a private area (or with an empty one) and
/// the container is not running, that configuration is the ghost of the aborted migration and
/// goes too. Each removal is logged.
fn sweep_work_dirs(ctx: &DestCtx) {
    let Ok(rd) = std::fs::read_dir(ctx.layout.dump_dir()) else {
        return;
    };
    let Ok(host) = crate::host::Host::open(ctx.layout.clone()) else {
        return;
    };
    let rt = crate::runtime::Runtime::new(host);
    for e in rd.flatten() {
        let Some(ctid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(inner) = std::fs::read_dir(e.path()) else {
            continue;
        };
        let orphans: Vec<PathBuf> = inner
            .flatten()
            .filter(|w| w.file_name().to_string_lossy().starts_with(".incoming-"))
            .map(|w| w.path())
            .collect();
        if orphans.is_empty() {
            continue;
        }
        for w in &orphans {
            match std::fs::remove_dir_all(w) {
                Ok(()) => log(&format!(
                    "removed the orphaned migration work directory {}",
                    w.display()
                )),
                Err(err) => log(&format!("removing the orphaned {}: {err}", w.display())),
            }
        }
        let Ok(c) = crate::ctid::Ctid::new(ctid) else { continue };
        let conf = ctx.layout.ct_conf(c);
        let Ok(ct) = rt.host.container(c) else { continue };
        let empty = std::fs::read_dir(&ct.private).map_or(true, |mut d| d.next().is_none());
        let running = rt.run_state(c).ok().flatten().is_some();
        if conf.exists() && empty && !running {
            let _ = std::fs::remove_dir(&ct.private);
            match std::fs::remove_file(&conf) {
                Ok(()) => log(&format!(
                    "removed the configuration of container {ctid} that an aborted incoming migration left ({})",
                    conf.display()
                )),
                Err(err) => log(&format!("removing {}: {err}", conf.display())),
            }
        }
    }
}

fn vzctl(ctx: &DestCtx, args: &[&str]) -> Result<(), String> {
    let out = Command::new(&ctx.vzctl)
        .arg("--root-dir")
        .arg(ctx.layout.root())
        .args(args)
        .output()
        .map_err(|e| format!("running vzctl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// What an online migration needs of this host beyond disk: a CRIU at least as new as the
/// source's (images of a newer CRIU may not restore with an older one), a CPU with what the
/// source's offered its processes (`criu cpuinfo check`), and the memory the container uses.
pub(crate) fn preflight(
    plan: &Plan,
    source: Option<&Capabilities>,
    ours: &Capabilities,
    mem_available: Option<u64>,
    cpu_fits: impl Fn(&[u8]) -> Result<(), String>,
) -> Result<(), String> {
    if !plan.online {
        return Ok(());
    }
    let Some(our_criu) = crate::criu::major_minor(&ours.criu_version) else {
        return Err("CRIU is not usable on this host (vzctl check says why)".into());
    };
    if let Some(desc) = source.map(|c| &c.cpu_description).filter(|d| !d.is_empty()) {
        cpu_fits(desc).map_err(|e| format!("the source's CPU does not fit this host: {e}"))?;
    }
    if let Some(theirs) = source.and_then(|c| crate::criu::major_minor(&c.criu_version)) {
        if theirs > our_criu {
            return Err(format!(
                "the source's CRIU {} is newer than this host's {}: its images may not restore here",
                source.map(|c| c.criu_version.as_str()).unwrap_or(""),
                ours.criu_version
            ));
        }
    }
    if let Some(avail) = mem_available {
        if plan.ram_bytes > avail {
            return Err(format!(
                "not enough memory: the container uses {} MiB, this host has {} MiB available",
                plan.ram_bytes >> 20,
                avail >> 20
            ));
        }
    }
    Ok(())
}

/// Checks a plan against this host; on success prepares the private area.
fn check_plan(ctx: &DestCtx, inc: &mut Incoming, plan: &Plan, source: Option<&Capabilities>) -> Result<(), String> {
    preflight(
        plan,
        source,
        &ctx.caps,
        super::capacity::meminfo("MemAvailable"),
        |desc| {
            let criu = crate::criu::Criu::locate().map_err(|e| e.to_string())?;
            super::cpu_fits(&criu, desc)
        },
    )?;
    let host = crate::host::Host::open(ctx.layout.clone()).map_err(|e| e.to_string())?;
    host.initialize().map_err(|e| e.to_string())?;
    let ctid = crate::ctid::Ctid::new(plan.ctid).map_err(|e| e.to_string())?;
    // Named first: a container on its way here has a private area here already, and that is
    // not what the sender should be told. (Checked again below, where the claim is made.)
    if ctx.busy.lock().unwrap().contains(&plan.ctid) {
        return Err(format!("container {ctid} is already being migrated here"));
    }
    if ctx.layout.ct_conf(ctid).exists() {
        return Err(format!("container {ctid} {}", super::REFUSED_EXISTS));
    }
    let config = crate::config::Config::parse(&plan.config, Path::new("(plan)"))
        .map_err(|e| format!("the container's configuration: {e}"))?;
    // An image is made as large as the source's (its DISKSPACE hard limit).
    let image_bytes = match plan.layout {
        Layout::Simfs => None,
        Layout::Image => Some(crate::resources::Limits::image_bytes(&config)?),
    };
    let ct = host.container_from(ctid, config);
    if ct.private.exists() {
        return Err(format!("{} {}", ct.private.display(), super::REFUSED_EXISTS));
    }
    let rt = crate::runtime::Runtime::new(host);
    // A container with a user namespace gets a range of this host's ids at the restore; one
    // must be free.
    let mut probe = ct.config.clone();
    rt.assign_idmap(ctid, &mut probe, None).map_err(|e| e.to_string())?;
    for a in ct.ip_addresses() {
        let addr = a.split('/').next().unwrap_or("").to_string();
        if let Some(other) = rt.address_owner(&addr).map_err(|e| e.to_string())? {
            return Err(format!(
                "address {addr} {} {other} on this host",
                super::REFUSED_ADDRESS
            ));
        }
    }
    let base = ct.private.parent().unwrap_or(Path::new("/")).to_path_buf();
    std::fs::create_dir_all(&base).map_err(|e| e.to_string())?;
    let need = super::capacity::disk_needed(plan.private_bytes);
    let free = super::capacity::disk_space(&base).0;
    if free < need {
        return Err(format!(
            "{}: {free} bytes free in {}, {need} needed",
            super::REFUSED_DISK,
            base.display()
        ));
    }
    if plan.online {
        // The pages images of the final dump, and the pre-copied pages' store beside them, go
        // below vz/dump: at least the container's memory and a margin must fit there (the store
        // may grow past that while the memory churns; then the migration stops with "no space"
        // and the source keeps the container).
        let dump = ctx.layout.dump_dir();
        std::fs::create_dir_all(&dump).map_err(|e| e.to_string())?;
        let need = plan.ram_bytes.saturating_add(256 << 20);
        let free = super::capacity::disk_space(&dump).0;
        if free < need {
            return Err(format!(
                "{} for the memory images: {free} bytes free in {}, {need} needed",
                super::REFUSED_DISK,
                dump.display()
            ));
        }
    }
    {
        let mut busy = ctx.busy.lock().unwrap();
        if busy.contains(&plan.ctid) {
            return Err(format!("container {ctid} is already being migrated here"));
        }
        busy.push(plan.ctid);
    }
    inc.ctid = Some(plan.ctid);
    // Known before anything is created, so that a failure from here on is cleaned up.
    inc.plan = Some(plan.clone());
    std::fs::create_dir(&ct.private).map_err(|e| e.to_string())?;
    inc.created_private = true;
    // The files go into the private area, or into the image's file system mounted on the
    // container's root (private, as vzctl mounts it; `vzctl restore` finds it mounted).
    let tree = match image_bytes {
        None => ct.private.clone(),
        Some(bytes) => {
            crate::storage::create_image(&crate::storage::image_path(&ct.private), bytes).map_err(|e| e.to_string())?;
            // The raw tree: the root, or (a container with a user namespace) private/fs, of
            // which `vzctl restore` mounts an idmapped clone on the root.
            let tree = ct.tree().to_path_buf();
            std::fs::create_dir_all(&tree).map_err(|e| e.to_string())?;
            crate::storage::mount_image(&crate::storage::image_path(&ct.private), &tree).map_err(|e| e.to_string())?;
            inc.mounted_root = Some(tree.clone());
            let ok = Command::new("mount")
                .arg("--make-private")
                .arg(&tree)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err(format!("making {} private", tree.display()));
            }
            tree
        }
    };
    let images = ctx
        .layout
        .dump_dir()
        .join(ctid.to_string())
        .join(format!(".incoming-{}", std::process::id()))
        .join("images");
    let _ = std::fs::remove_dir_all(&images);
    std::fs::create_dir_all(&images).map_err(|e| e.to_string())?;
    inc.images = Some(images.clone());
    // Every distinct page the source may send while the container's memory churns; a hostile
    // source gets no further than this.
    let store = if plan.online {
        Some(
            super::pages::Store::new(
                images.parent().unwrap_or(&images),
                plan.ram_bytes.saturating_mul(3).saturating_add(256 << 20),
            )
            .map_err(|e| format!("creating the page store: {e}"))?,
        )
    } else {
        None
    };
    inc.targets = Some(Arc::new(Targets {
        applier: Mutex::new(Applier::new(&tree)),
        images,
        store,
    }));
    Ok(())
}

/// Writes what a data message carries.
fn apply(t: &Targets, m: &Message) -> Result<(), AbortReason> {
    let fail = super::io_abort;
    let store = || {
        t.store
            .as_ref()
            .ok_or_else(|| AbortReason::Protocol("memory in an offline migration".into()))
    };
    match m {
        Message::FsEntries { entries, .. } => {
            let mut a = t.applier.lock().unwrap();
            entries.iter().try_for_each(|e| a.entry(e)).map_err(fail)
        }
        Message::FsData(d) => t.applier.lock().unwrap().data(d).map_err(fail),
        Message::FsDelta(d) => t.applier.lock().unwrap().delta(d).map_err(fail),
        Message::FsDelete { paths, .. } => {
            let mut a = t.applier.lock().unwrap();
            paths.iter().try_for_each(|p| a.delete(p)).map_err(fail)
        }
        Message::Image(c) => {
            let p = confined(&t.images, &c.name).map_err(fail)?;
            let data = t.applier.lock().unwrap().unpack(c.compressed, &c.data).map_err(fail)?;
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(c.offset == 0)
                .open(&p)
                .map_err(fail)?;
            f.write_all_at(&data, c.offset).map_err(fail)
        }
        Message::Pages(b) => {
            let store = store()?;
            b.pages.iter().try_for_each(|p| store.put(p))
        }
        Message::ImagePages(m) => store()?.write_image(&confined(&t.images, &m.name).map_err(fail)?, m),
        Message::PageSlots(m) => store()?.put_slots(m),
        Message::ImageRuns(m) => store()?.write_runs(&confined(&t.images, &m.name).map_err(fail)?, m),
        _ => Ok(()),
    }
}

fn cleanup(ctx: &DestCtx, inc: &mut Incoming, keep_files: bool) {
    let Some(ctid) = inc.ctid else { return };
    let id = ctid.to_string();
    let _ = vzctl(ctx, &["stop", "--fast", "-q", &id]);
    if let Some(images) = &inc.images {
        let _ = std::fs::remove_dir_all(images.parent().unwrap_or(images));
    }
    if !keep_files {
        if inc.wrote_config {
            let _ = std::fs::remove_file(ctx.layout.ct_conf(crate::ctid::Ctid::new(ctid).unwrap()));
        }
        if inc.created_private {
            if let Some(a) = &inc.plan {
                let host = crate::host::Host::open(ctx.layout.clone());
                if let (Ok(h), Ok(c)) = (host, crate::config::Config::parse(&a.config, Path::new("(plan)"))) {
                    let ct = h.container_from(crate::ctid::Ctid::new(ctid).unwrap(), c);
                    for m in [Some(&ct.root), ct.image_fs.as_ref()].into_iter().flatten() {
                        if crate::fsutil::is_mountpoint(m).unwrap_or(false) {
                            let _ = Command::new("umount").arg("-l").arg(m).status();
                        }
                    }
                    let _ = std::fs::remove_dir_all(&ct.private);
                }
            }
        }
    }
}

/// What a bulk stream's reader reports (protocol version 4).
enum BulkIn {
    /// The stream named itself.
    Opened(u32),
    Frame(usize, Message),
    /// The stream broke, or sent something refused.
    Failed(String),
}

/// Work queued for the worker of each bulk stream, and what is queued or being applied.
struct Workers {
    queues: Vec<tokio::sync::mpsc::UnboundedSender<(Message, Arc<Targets>)>>,
    outstanding: usize,
}

/// Frames taken from the bulk streams but not yet applied, at most: the readers wait beyond
/// that (and QUIC's flow control holds the source back).
const MAX_OUTSTANDING: usize = 8;

/// Accepts a migration's bulk streams (at most `MAX_STREAMS`), reading each on a task of its
/// own: the first frame names the stream, the others go to the migration's loop.
async fn accept_bulk(conn: quinn::Connection, tx: tokio::sync::mpsc::Sender<BulkIn>) {
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..migrate_proto::limits::MAX_STREAMS {
        let Ok(recv) = conn.accept_uni().await else { break };
        let tx = tx.clone();
        readers.spawn(async move {
            let mut frames = super::wire::Frames::new(recv);
            let index = match frames.next().await {
                Ok(Some(Message::BulkStream { index })) => index,
                Ok(_) => {
                    let _ = tx
                        .send(BulkIn::Failed(migrate_proto::streams::StreamError::Unnamed.to_string()))
                        .await;
                    return;
                }
                Err(e) => {
                    let _ = tx.send(BulkIn::Failed(crate::error::chain_of(&e))).await;
                    return;
                }
            };
            if tx.send(BulkIn::Opened(index)).await.is_err() {
                return;
            }
            loop {
                let m = match frames.next().await {
                    Ok(Some(m)) => BulkIn::Frame(index as usize, m),
                    Ok(None) => return,
                    Err(e) => BulkIn::Failed(format!("bulk stream {index}: {}", crate::error::chain_of(&e))),
                };
                let failed = matches!(m, BulkIn::Failed(_));
                if tx.send(m).await.is_err() || failed {
                    return;
                }
            }
        });
    }
    // The readers end with their streams, or when the migration ends (this task is aborted,
    // which aborts them: their streams are dropped, and the source's sends on them fail).
    while readers.join_next().await.is_some() {}
}

/// What the migration's loop waits for.
enum Input {
    Control(Result<Message, WireError>),
    Bulk(BulkIn),
    Applied(usize, Result<(), AbortReason>),
}

/// Serves one incoming connection until its migration is over.
pub async fn serve(conn: quinn::Connection, ctx: Arc<DestCtx>) {
    let peer = conn.remote_address();
    let from = crate::agent::quic::peer_fingerprint(&conn);
    let Ok((send, recv)) = conn.accept_bi().await else {
        return;
    };
    let mut wire = Wire::new(send, recv);
    let t0 = Instant::now();
    let mut dc = DestConfig::new(ctx.name.clone(), ctx.caps.clone());
    dc.versions = super::protocol_versions();
    let mut m = Destination::new(dc);
    let mut inc = Incoming {
        ctid: None,
        plan: None,
        targets: None,
        images: None,
        wrote_config: false,
        created_private: false,
        mounted_root: None,
    };
    let mut migration_id: Option<MigrationId> = None;
    let mut first = true;
    // Protocol version 4: the bulk streams (their readers' reports, the barrier each flush
    // sets, the workers that apply their frames, and the workers' completions).
    let (bulk_tx, mut bulk_rx) = tokio::sync::mpsc::channel::<BulkIn>(MAX_OUTSTANDING);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Result<(), AbortReason>)>();
    let mut tasks = tokio::task::JoinSet::new();
    let mut bulk: Option<(migrate_proto::streams::Incoming, Workers)> = None;
    loop {
        let wait = m
            .poll_timeout()
            .map(|d| d.saturating_sub(t0.elapsed()))
            .unwrap_or(Duration::from_secs(3600))
            .max(Duration::from_millis(1));
        let control_ready = bulk.as_ref().is_none_or(|(b, _)| b.ready());
        let room = bulk.as_ref().is_some_and(|(_, w)| w.outstanding < MAX_OUTSTANDING);
        let input = tokio::select! {
            biased;
            Some((i, r)) = done_rx.recv() => Input::Applied(i, r),
            Some(b) = bulk_rx.recv(), if room => Input::Bulk(b),
            r = wire.recv(wait), if control_ready => Input::Control(r),
            _ = tokio::time::sleep(wait), if !control_ready => Input::Control(Err(WireError::Timeout(wait))),
        };
        // The bulk stream a message came on (its apply goes to that stream's worker).
        let mut origin: Option<usize> = None;
        let actions = match input {
            Input::Applied(i, r) => {
                if let Some((b, w)) = bulk.as_mut() {
                    w.outstanding -= 1;
                    b.applied(i);
                }
                match r {
                    Ok(()) => vec![],
                    Err(reason) => m.handle_event(t0.elapsed(), Event::Failed(reason)),
                }
            }
            Input::Bulk(BulkIn::Opened(index)) => match bulk.as_mut().map(|(b, _)| b.open(index)) {
                Some(Ok(_)) => vec![],
                Some(Err(e)) => {
                    log(&format!("refused bad data from {peer}: {e}"));
                    m.handle_event(t0.elapsed(), Event::Failed(AbortReason::Protocol(e.to_string())))
                }
                None => vec![],
            },
            Input::Bulk(BulkIn::Frame(i, msg)) => {
                origin = Some(i);
                m.handle_message(t0.elapsed(), msg)
            }
            Input::Bulk(BulkIn::Failed(why)) => {
                log(&format!("refused bad data from {peer}: {why}"));
                m.handle_event(t0.elapsed(), Event::Failed(AbortReason::Protocol(why)))
            }
            Input::Control(Ok(Message::Resolve { migration_id: id })) if first => {
                let sender = ctx.live.lock().unwrap().get(&id).cloned();
                if sender.is_some_and(|s| s != from) {
                    log(&format!(
                        "refused a question about migration {} from {peer}: another host sends it",
                        id_hex(&id)
                    ));
                    return;
                }
                // A source in doubt asks how a migration ended. Without a recorded commit the
                // answer is no, and it is recorded first: a commit still on its way is refused.
                let committed = match ctx.decisions.decide(&id, 0, false) {
                    Ok(c) => c,
                    Err(e) => {
                        // Without a record, no answer: the source stays in doubt and asks again.
                        log(&format!("cannot record a migration's decision: {e}"));
                        return;
                    }
                };
                log(&format!(
                    "a source asked how migration {} ended: {}",
                    id_hex(&id),
                    if committed { "committed" } else { "not committed" }
                ));
                let _ = wire
                    .send(&Message::Resolved {
                        migration_id: id,
                        committed,
                    })
                    .await;
                wire.finish().await;
                return;
            }
            Input::Control(Ok(Message::Pull(req))) if first => {
                super::pull::serve(&ctx, from, req, &mut wire).await;
                return;
            }
            Input::Control(Ok(Message::CapacityQuery)) if first => {
                let c = tokio::task::block_in_place(|| super::capacity::local(&ctx.layout, &ctx.name));
                let _ = wire.send(&Message::Capacity(c)).await;
                wire.finish().await;
                return;
            }
            Input::Control(Ok(Message::Flush { frames })) if bulk.is_some() => {
                match bulk.as_mut().map(|(b, _)| b.flush(frames)) {
                    Some(Err(e)) => m.handle_event(t0.elapsed(), Event::Failed(AbortReason::Protocol(e.to_string()))),
                    _ => vec![],
                }
            }
            Input::Control(Ok(msg)) => {
                first = false;
                if let Message::Hello(h) = &msg {
                    migration_id = Some(h.migration_id);
                    ctx.live.lock().unwrap().insert(h.migration_id, from.clone());
                    log(&format!("incoming migration from {peer}"));
                }
                if matches!(msg, Message::FsPassDone { .. } | Message::FinalDone { .. }) {
                    if let Some(t) = inc.targets.as_ref() {
                        if let Err(e) = t.applier.lock().unwrap().finish() {
                            log(&format!("applying file attributes: {e}"));
                        }
                    }
                }
                let actions = if let (Message::Commit, Some(id)) = (&msg, migration_id) {
                    // The decision is recorded before anything acts on it, and only if no
                    // source asked for resolution before (which recorded "not committed").
                    match ctx.decisions.decide(&id, inc.ctid.unwrap_or(0), true) {
                        Ok(true) => m.handle_message(t0.elapsed(), msg),
                        Ok(false) => m.handle_event(
                            t0.elapsed(),
                            Event::Failed(AbortReason::Protocol(
                                "the source asked for resolution before the commit arrived".into(),
                            )),
                        ),
                        Err(e) => m.handle_event(
                            t0.elapsed(),
                            Event::Failed(AbortReason::Local(format!("recording the commit: {e}"))),
                        ),
                    }
                } else {
                    m.handle_message(t0.elapsed(), msg)
                };
                // Version 4: the source opens its bulk streams once it has our answer.
                if bulk.is_none() && m.version().is_some_and(migrate_proto::machine::streams_and_slots) {
                    let mut queues = Vec::new();
                    for i in 0..migrate_proto::limits::MAX_STREAMS {
                        let (qtx, mut qrx) = tokio::sync::mpsc::unbounded_channel::<(Message, Arc<Targets>)>();
                        let done = done_tx.clone();
                        tasks.spawn(async move {
                            while let Some((msg, t)) = qrx.recv().await {
                                let r = tokio::task::spawn_blocking(move || apply(&t, &msg))
                                    .await
                                    .unwrap_or_else(|e| Err(AbortReason::Local(format!("applying: {e}"))));
                                if done.send((i, r)).is_err() {
                                    return;
                                }
                            }
                        });
                        queues.push(qtx);
                    }
                    tasks.spawn(accept_bulk(conn.clone(), bulk_tx.clone()));
                    bulk = Some((
                        migrate_proto::streams::Incoming::new(),
                        Workers { queues, outstanding: 0 },
                    ));
                }
                actions
            }
            Input::Control(Err(WireError::Timeout(_))) => m.handle_timeout(t0.elapsed()),
            Input::Control(Err(WireError::Decode(e))) => {
                log(&format!("refused bad data from {peer}: {e}"));
                m.handle_event(t0.elapsed(), Event::Failed(AbortReason::Protocol(e.to_string())))
            }
            Input::Control(Err(_)) => m.handle_event(t0.elapsed(), Event::LinkLost),
        };
        let mut queue: std::collections::VecDeque<Action> = actions.into();
        let mut done = false;
        // A bulk frame counts once its apply is done (or at once if it had none to do).
        let mut dispatched = false;
        while let Some(a) = queue.pop_front() {
            let now = t0.elapsed();
            match a {
                Action::Send(msg) => {
                    if matches!(msg, Message::CommitAck) {
                        super::fault_point("vzagentd-before-commit-ack").await;
                    }
                    if wire.send(&msg).await.is_err() {
                        queue.extend(m.handle_event(now, Event::LinkLost));
                    }
                }
                Action::Journal(p) => match journal(&ctx, &inc, migration_id.as_ref(), p) {
                    Ok(()) => queue.extend(m.handle_event(now, Event::Journaled(p))),
                    // The outcome is decided (and the decision recorded apart): logged.
                    Err(e) if matches!(p, Phase::Aborted | Phase::Done) => {
                        log(&format!("writing the journal of container {:?}: {e}", inc.ctid));
                    }
                    // The step it was to record is not taken: what followed it is dropped and
                    // the migration aborts (nothing was committed).
                    Err(e) => {
                        log(&format!("writing the journal of container {:?}: {e}", inc.ctid));
                        queue.clear();
                        queue.extend(m.handle_event(
                            now,
                            Event::Failed(AbortReason::Local(format!("writing the migration's journal: {e}"))),
                        ));
                    }
                },
                Action::CheckPlan(plan) => {
                    let ctx2 = ctx.clone();
                    let source = m.peer_caps().cloned();
                    let r = tokio::task::block_in_place(|| check_plan(&ctx2, &mut inc, &plan, source.as_ref()));
                    if let Err(e) = &r {
                        log(&format!("refused a migration of container {}: {e}", plan.ctid));
                    }
                    queue.extend(m.handle_event(t0.elapsed(), Event::PlanChecked(r)));
                }
                Action::Apply(msg) => {
                    let Some(t) = inc.targets.clone() else {
                        queue.extend(
                            m.handle_event(now, Event::Failed(AbortReason::Protocol("data before the plan".into()))),
                        );
                        continue;
                    };
                    match (origin, bulk.as_mut()) {
                        (Some(i), Some((_, w))) => {
                            w.outstanding += 1;
                            dispatched = true;
                            let _ = w.queues[i].send((msg, t));
                        }
                        _ => {
                            if let Err(reason) = tokio::task::block_in_place(|| apply(&t, &msg)) {
                                queue.extend(m.handle_event(t0.elapsed(), Event::Failed(reason)));
                            }
                        }
                    }
                }
                Action::Restore => {
                    // Everything is applied: the pre-copied memory and the tree's writer go
                    // (the pages images are written).
                    inc.targets = None;
                    let r = tokio::task::block_in_place(|| {
                        let plan = inc.plan.as_ref().ok_or("no plan")?;
                        let ctid = crate::ctid::Ctid::new(plan.ctid).map_err(|e| e.to_string())?;
                        // With a user namespace, the container takes a range of this host's
                        // ids (the restore points its dumped namespace at them).
                        let mut config = crate::config::Config::parse(&plan.config, Path::new("(plan)"))
                            .map_err(|e| format!("the container's configuration: {e}"))?;
                        let host = crate::host::Host::open(ctx.layout.clone()).map_err(|e| e.to_string())?;
                        let conf_path = ctx.layout.ct_conf(ctid);
                        // Claimed before it is written (the plan found no such file here): an
                        // abort removes whatever part of it was written, and so does the
                        // recovery of an agent killed from here on (the journal says so first).
                        inc.wrote_config = true;
                        journal(&ctx, &inc, migration_id.as_ref(), Phase::Restore)
                            .map_err(|e| format!("writing the migration's journal: {e}"))?;
                        let write = |c: &crate::config::Config| {
                            c.save(&conf_path)
                                .map_err(|e| crate::runtime::RuntimeError::Host(e.into()))
                        };
                        let userns = crate::runtime::Runtime::new(host)
                            .assign_idmap(ctid, &mut config, Some(&write))
                            .map_err(|e| e.to_string())?;
                        if userns.is_none() {
                            crate::fsutil::write_atomic(&conf_path, plan.config.as_bytes(), 0o644)
                                .map_err(|e| e.to_string())?;
                        }

                        let images = inc.images.as_ref().ok_or("no images")?.display().to_string();
                        // Offline, the container is left (or started) as a stopped one is:
                        // its image unmounted, vzctl mounting it itself.
                        if let (false, Some(root)) = (plan.online, inc.mounted_root.take()) {
                            let ok = Command::new("umount").arg(&root).status().is_ok_and(|s| s.success());
                            if !ok {
                                return Err(format!("unmounting {}", root.display()));
                            }
                        }
                        super::fault_point_blocking("vzagentd-during-restore");
                        if plan.online {
                            vzctl(
                                &ctx,
                                &[
                                    "restore",
                                    &plan.ctid.to_string(),
                                    "--images",
                                    &images,
                                    "--no-attach",
                                    "-q",
                                ],
                            )
                        } else {
                            Ok(())
                        }
                    });
                    let ev = match r {
                        Ok(()) => Event::RestoreSucceeded,
                        Err(e) => {
                            log(&format!("restore failed: {e}"));
                            Event::Failed(AbortReason::RestoreFailed(e.chars().take(2000).collect()))
                        }
                    };
                    queue.extend(m.handle_event(t0.elapsed(), ev));
                }
                Action::RunRestored => {
                    let plan = inc.plan.clone().unwrap();
                    let id = plan.ctid.to_string();
                    let r = tokio::task::block_in_place(|| {
                        if plan.online {
                            vzctl(&ctx, &["attach", &id])
                        } else if plan.start {
                            vzctl(&ctx, &["start", "-q", &id])
                        } else {
                            Ok(())
                        }
                    });
                    if let Err(e) = r {
                        log(&format!("container {id} is ours, but bringing it up failed: {e}"));
                    }
                }
                Action::Cleanup { keep_files } => {
                    // Nothing more is applied: the streams stop (the source's sends on them
                    // fail and it reads why on the control stream), the workers let go.
                    tasks.abort_all();
                    inc.targets = None;
                    tokio::task::block_in_place(|| cleanup(&ctx, &mut inc, keep_files));
                }
                Action::Finished(o) => {
                    let committed = o == Outcome::Committed;
                    if let Some(id) = migration_id {
                        // A commit is on record already; an abort is recorded here (a failure to
                        // record it leaves a later question answered "not committed" anyway).
                        let _ = ctx.decisions.decide(&id, inc.ctid.unwrap_or(0), committed);
                        ctx.live.lock().unwrap().remove(&id);
                    }
                    if let Some(ctid) = inc.ctid {
                        ctx.busy.lock().unwrap().retain(|c| *c != ctid);
                        // The work directory goes before the journal that names it, so a crash
                        // in between leaves it to the recovery, not behind.
                        if committed {
                            if let Some(fp) = &from {
                                super::pull::record_arrival(&ctx.layout, ctid, fp);
                            }
                            if let Some(images) = &inc.images {
                                let _ = std::fs::remove_dir_all(images.parent().unwrap_or(images));
                            }
                        }
                        let _ = std::fs::remove_file(journal_path(&ctx.layout, ctid));
                    }
                    log(&format!(
                        "migration of container {} {}",
                        inc.ctid.map(|c| c.to_string()).unwrap_or("?".into()),
                        if committed {
                            "committed: the container is ours".to_string()
                        } else {
                            format!("aborted: {o:?}")
                        }
                    ));
                    done = true;
                }
                Action::StopContainer
                | Action::StartFsPass { .. }
                | Action::StartMemRound { .. }
                | Action::Freeze
                | Action::FinalSync { .. }
                | Action::DestroySource
                | Action::ResumeSource => {}
            }
        }
        if let (Some(i), false, Some((b, _))) = (origin, dispatched, bulk.as_mut()) {
            b.applied(i);
        }
        if done || (m.is_finished() && m.custody() != Custody::Unknown) {
            tasks.abort_all();
            if m.custody() == Custody::Released {
                // Aborted: the source may still be sending a pass and reads our Abort only at
                // its end. Take (and drop) what it sends until it has read the reason and gone,
                // so it learns why instead of seeing the link drop.
                let until = Instant::now() + Duration::from_secs(15);
                while let Some(left) = until.checked_duration_since(Instant::now()) {
                    if wire.recv(left).await.is_err() {
                        break;
                    }
                }
            } else {
                // Give the last message a moment to leave; the peer may also ask to resolve.
                let _ = tokio::time::timeout(Duration::from_secs(2), wire.recv(Duration::from_secs(2))).await;
            }
            wire.finish().await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_decision_stands_and_outlives_the_agent() {
        let d = tempfile::tempdir().unwrap();
        let layout = HostLayout::new(d.path());
        std::fs::create_dir_all(layout.run_dir()).unwrap();
        let (a, b) = ([1u8; 16], [2u8; 16]);
        let ds = Decisions::load(&layout).unwrap();
        assert_eq!(ds.get(&a), None);
        // A source asked first: the commit that comes after is refused.
        assert!(!ds.decide(&a, 101, false).unwrap());
        assert!(!ds.decide(&a, 101, true).unwrap());
        assert!(ds.decide(&b, 102, true).unwrap());
        assert!(ds.decide(&b, 102, false).unwrap());
        let again = Decisions::load(&layout).unwrap();
        assert_eq!((again.get(&a), again.get(&b)), (Some(false), Some(true)));
        // A damaged record is an error, never an empty answer.
        std::fs::write(layout.run_dir().join("migrate-decisions.json"), b"{not json").unwrap();
        assert!(Decisions::load(&layout).is_err());
    }

    #[test]
    fn decisions_keep_the_newest() {
        let d = tempfile::tempdir().unwrap();
        let layout = HostLayout::new(d.path());
        std::fs::create_dir_all(layout.run_dir()).unwrap();
        let ds = Decisions::load(&layout).unwrap();
        // Seed the file past the bound with old entries, then decide one more.
        let old: HashMap<String, Decision> = (0..DECISIONS_KEPT as u32 + 10)
            .map(|i| {
                let mut id = [0u8; 16];
                id[..4].copy_from_slice(&i.to_be_bytes());
                (
                    id_hex(&id),
                    Decision {
                        committed: true,
                        ctid: 101,
                        at: u64::from(i),
                    },
                )
            })
            .collect();
        *ds.map.lock().unwrap() = old;
        assert!(!ds.decide(&[0xff; 16], 101, false).unwrap());
        let again = Decisions::load(&layout).unwrap();
        assert_eq!(again.map.lock().unwrap().len(), DECISIONS_KEPT);
        assert_eq!(again.get(&[0xff; 16]), Some(false));
        assert_eq!(again.get(&[0u8; 16]), None, "the oldest went first");
    }

    #[test]
    fn migration_ids_read_back_from_hex() {
        let id: MigrationId = core::array::from_fn(|i| (i * 17) as u8);
        assert_eq!(parse_id(&id_hex(&id)), Some(id));
        assert_eq!(parse_id("abc"), None);
        assert_eq!(parse_id(&"zz".repeat(16)), None);
    }

    fn caps(criu: &str) -> Capabilities {
        Capabilities {
            mem_dirty_tracking: false,
            compression: vec![],
            criu_version: criu.into(),
            kernel: "6.1.0".into(),
            cpu_description: vec![],
            free_ram: 0,
            free_disk: 0,
        }
    }

    fn plan(online: bool, ram_bytes: u64) -> Plan {
        Plan {
            ctid: 101,
            config: String::new(),
            layout: Layout::Simfs,
            private_bytes: 0,
            private_inodes: 0,
            ram_bytes,
            online,
            keep_dst: false,
            bwlimit: 0,
            max_downtime_ms: 0,
            start: online,
        }
    }

    fn fits(desc: &[u8]) -> Result<(), String> {
        if desc == b"other cpu" {
            Err("cpu features mismatch".into())
        } else {
            Ok(())
        }
    }

    #[test]
    fn preflight_refuses_an_older_criu_missing_criu_and_too_little_memory() {
        let ok = preflight(
            &plan(true, 100 << 20),
            Some(&caps("4.2.1")),
            &caps("4.2.0"),
            Some(1 << 30),
            fits,
        );
        assert_eq!(ok, Ok(()));
        let older = preflight(&plan(true, 0), Some(&caps("4.3.0")), &caps("4.2.1"), None, fits).unwrap_err();
        assert!(older.contains("CRIU 4.3.0 is newer than this host's 4.2.1"), "{older}");
        let none = preflight(&plan(true, 0), Some(&caps("4.2.1")), &caps(""), None, fits).unwrap_err();
        assert!(none.contains("CRIU is not usable"), "{none}");
        let mem = preflight(
            &plan(true, 2 << 30),
            Some(&caps("4.2.1")),
            &caps("4.2.1"),
            Some(1 << 30),
            fits,
        )
        .unwrap_err();
        assert!(
            mem.contains("uses 2048 MiB") && mem.contains("1024 MiB available"),
            "{mem}"
        );
        let mut other = caps("4.2.1");
        other.cpu_description = b"other cpu".to_vec();
        let cpu = preflight(&plan(true, 0), Some(&other), &caps("4.2.1"), None, fits).unwrap_err();
        assert!(
            cpu.contains("CPU does not fit this host: cpu features mismatch"),
            "{cpu}"
        );
        // Offline, nothing of this matters: the container boots from its files.
        assert_eq!(
            preflight(&plan(false, 2 << 30), None, &caps(""), Some(1 << 30), fits),
            Ok(())
        );
    }

    #[test]
    fn versions_compare_by_major_and_minor() {
        assert_eq!(crate::criu::major_minor("4.2.1"), Some((4, 2)));
        assert_eq!(crate::criu::major_minor("4.10"), Some((4, 10)));
        assert_eq!(crate::criu::major_minor("4"), None);
        assert_eq!(crate::criu::major_minor(""), None);
        assert!(crate::criu::major_minor("4.10").unwrap() > crate::criu::major_minor("4.9.9").unwrap());
    }
}
