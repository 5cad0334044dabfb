//! Every message two agents exchange during a migration.
//!
//! Each message kind has a fixed numeric code (`Kind`), stable across releases: new kinds get
//! new codes, and a receiver refuses codes it does not know. Payloads are postcard-encoded
//! structs; postcard's format is stable (varints, length-prefixed sequences). Byte buffers go
//! through serde_bytes: the same bytes on the wire as a sequence of u8 (a varint length, then
//! the bytes), decoded in one copy instead of byte by byte.

use serde::{Deserialize, Serialize};

use crate::limits::*;
use crate::path::RelPath;
use crate::DecodeError;

/// A migration's identity, chosen by the source.
pub type MigrationId = [u8; 16];
/// A content hash (the engine uses BLAKE3; the protocol only carries the bytes).
pub type Hash = [u8; 32];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// The kernel tracks dirty memory (soft-dirty): CRIU pre-dump can be used.
    pub mem_dirty_tracking: bool,
    /// Compression algorithms understood, e.g. "zstd".
    pub compression: Vec<String>,
    pub criu_version: String,
    pub kernel: String,
    /// CRIU's `cpuinfo dump` image, compared by the destination with `cpuinfo check`.
    #[serde(with = "serde_bytes")]
    pub cpu_description: Vec<u8>,
    pub free_ram: u64,
    pub free_disk: u64,
}

/// Source to destination: the first message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub migration_id: MigrationId,
    /// Protocol versions the source speaks, inclusive.
    pub version_min: u32,
    pub version_max: u32,
    pub host: String,
    pub caps: Capabilities,
}

/// Destination to source: the version chosen and the destination's capabilities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloAck {
    pub version: u32,
    pub host: String,
    pub caps: Capabilities,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    Simfs,
    Image,
}

/// Source to destination: what is moved, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub ctid: u32,
    /// The container's configuration file, as text.
    pub config: String,
    pub layout: Layout,
    pub private_bytes: u64,
    pub private_inodes: u64,
    pub ram_bytes: u64,
    pub online: bool,
    pub keep_dst: bool,
    /// Bytes per second, 0 for none.
    pub bwlimit: u64,
    /// Frozen-time budget in milliseconds.
    pub max_downtime_ms: u64,
    /// Run the container on the destination after the commit (an offline migration of a
    /// stopped container leaves it stopped).
    pub start: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileKind {
    Regular,
    Dir,
    Symlink,
    CharDev,
    BlockDev,
    Fifo,
    Socket,
}

/// One file of the container's private area with every attribute the sync carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsEntry {
    pub path: RelPath,
    pub kind: FileKind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    pub size: u64,
    /// Symlink target (any text: it is stored, never followed by the receiver).
    pub link_target: Option<String>,
    /// Device numbers of character and block devices.
    pub rdev_major: u32,
    pub rdev_minor: u32,
    /// Files with the same group are one inode (hard links); the first entry of a group
    /// carries the data, the others are linked to it.
    pub hardlink_group: Option<u64>,
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// The file has holes (sent as ranges of data; the rest stays a hole).
    pub sparse: bool,
}

/// Destination to source: rsync-style block signature of a file the destination already has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsSignature {
    pub path: RelPath,
    pub block_size: u32,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// Source to destination: a delta against the destination's copy, and the hash of the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsDelta {
    pub path: RelPath,
    #[serde(with = "serde_bytes")]
    pub delta: Vec<u8>,
    pub result_size: u64,
    pub result_hash: Hash,
}

/// Source to destination: a range of a file's data, possibly compressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsData {
    pub path: RelPath,
    pub offset: u64,
    pub compressed: bool,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// A page of a process's memory: its content hash, and its data unless the destination
/// already holds a page with that hash (protocol version 2 and later).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    pub pid: u32,
    pub vaddr: u64,
    pub hash: Hash,
    #[serde(with = "serde_bytes")]
    pub data: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageBatch {
    pub round: u32,
    pub pages: Vec<Page>,
}

/// Source to destination, while frozen: part of a CRIU pages image (plain runs of 4 KiB pages)
/// as blocks, each a `Page` whose `vaddr` is its offset in the file, with its content hash and
/// its data unless the destination already holds that content (sent by a pre-copy round, or
/// earlier in this image). Protocol version 2 and later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImagePages {
    pub name: RelPath,
    pub pages: Vec<Page>,
}

/// Source to destination, version 4: pre-copied content new to the destination, put in slots
/// of its page store that the source assigns, one after another: `data` holds
/// `data.len() / PAGE_SIZE` pages for slots `first_slot`, `first_slot + 1`, ... Each slot is
/// filled once; the source knows which content every slot holds, so later it names pages by
/// slot (4 bytes, and runs of them) instead of by hash (32).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageSlots {
    pub round: u32,
    pub first_slot: u32,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// Consecutive pages of a pages image (version 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PageRun {
    /// `count` pages whose contents are in store slots `slot`, `slot + 1`, ...
    Held { slot: u32, count: u32 },
    /// `count` pages carried in the message's `data`, in order.
    Data { count: u32 },
    /// `count` pages of zeros.
    Zero { count: u32 },
}

impl PageRun {
    pub fn count(&self) -> u32 {
        match *self {
            PageRun::Held { count, .. } | PageRun::Data { count } | PageRun::Zero { count } => count,
        }
    }
}

/// Source to destination, version 4: part of a CRIU pages image (plain runs of 4 KiB pages)
/// from `offset` on, as runs; `data` holds the pages of the `Data` runs, in order. With no runs,
/// it only makes sure the image exists (a process without present pages has an empty one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRuns {
    pub name: RelPath,
    pub offset: u64,
    pub runs: Vec<PageRun>,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

impl ImageRuns {
    /// No pages: the image `name` exists on the destination, empty if nothing else lands in it.
    pub fn empty(name: RelPath) -> Self {
        Self {
            name,
            offset: 0,
            runs: vec![],
            data: vec![],
        }
    }

    /// Pages the runs describe.
    pub fn pages(&self) -> u64 {
        self.runs.iter().map(|r| u64::from(r.count())).sum()
    }
}

/// Source to destination: a chunk of a CRIU image file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageChunk {
    pub name: RelPath,
    pub offset: u64,
    pub compressed: bool,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// A host's answer to [`Message::CapacityQuery`]: what it can take, for placing containers
/// before any migration starts (`vzevacuate`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    pub host: String,
    /// Bytes of memory available (MemAvailable) and in all.
    pub mem_available: u64,
    pub mem_total: u64,
    /// Bytes free and in all on the file system of the containers' private areas.
    pub disk_free: u64,
    pub disk_total: u64,
    pub cpus: u32,
    /// Every container that exists there, and how many of them run.
    pub ctids: Vec<u32>,
    pub running: u32,
}

/// A peer asks this host to migrate a container back to it (`vzevacuate --return`). The answer
/// is a run of `Progress` messages, then `Done` or `Abort`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    pub ctid: u32,
    pub online: bool,
    pub max_downtime_ms: u64,
    /// Bytes per second, 0 for none.
    pub bwlimit: u64,
}

/// The words of a `Protocol` abort for a connection that broke before the commit (the
/// machine's `LinkLost`), which front ends tell apart from a broken protocol.
pub const CONNECTION_LOST: &str = "connection lost";

/// Why a migration stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AbortReason {
    VersionMismatch { ours_min: u32, ours_max: u32 },
    PlanRefused(String),
    NoSpace(String),
    DumpFailed(String),
    RestoreFailed(String),
    NotConverging(String),
    Timeout(String),
    Cancelled(String),
    Protocol(String),
    Local(String),
}

impl std::fmt::Display for AbortReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use AbortReason::*;
        match self {
            VersionMismatch { ours_min, ours_max } => {
                write!(
                    f,
                    "no common protocol version (the peer speaks {ours_min} to {ours_max})"
                )
            }
            PlanRefused(s) => write!(f, "refused: {s}"),
            NoSpace(s) => write!(f, "out of space: {s}"),
            DumpFailed(s) => write!(f, "the dump failed: {s}"),
            RestoreFailed(s) => write!(f, "the restore failed: {s}"),
            NotConverging(s) => write!(f, "memory did not converge: {s}"),
            Timeout(s) => write!(f, "timed out: {s}"),
            Cancelled(s) => write!(f, "cancelled: {s}"),
            Protocol(s) => write!(f, "protocol error: {s}"),
            Local(s) => f.write_str(s),
        }
    }
}

/// Statistics the source reports when a migration ends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub total_ms: u64,
    pub frozen_ms: u64,
    pub rounds: Vec<RoundReport>,
    pub fs_bytes: u64,
    pub mem_bytes: u64,
    pub final_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundReport {
    pub round: u32,
    pub sent_bytes: u64,
    pub dirty_bytes: u64,
    pub duration_ms: u64,
}

/// Every message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello(Hello),
    HelloAck(HelloAck),
    Plan(Plan),
    PlanAccepted,
    FsEntries {
        pass: u32,
        entries: Vec<FsEntry>,
    },
    FsSignature(FsSignature),
    FsDelta(FsDelta),
    FsData(FsData),
    FsDelete {
        pass: u32,
        paths: Vec<RelPath>,
    },
    FsPassDone {
        pass: u32,
        last: bool,
    },
    Pages(PageBatch),
    MemRoundDone(RoundReport),
    /// The destination holds every page of the round (version 3): the source freezes only
    /// once the last round before the freeze is acknowledged, so no pre-copy data is still on
    /// its way while the container is frozen.
    MemRoundAck {
        round: u32,
    },
    /// The source froze the container; the final transfer follows.
    Frozen,
    Image(ImageChunk),
    ImagePages(ImagePages),
    /// Version 4: pre-copied content in store slots.
    PageSlots(PageSlots),
    /// Version 4: a pages image as runs of held slots, zeros and data.
    ImageRuns(ImageRuns),
    /// Version 4: the first frame of a bulk stream, naming it (0 carries the file passes, the
    /// others memory and images).
    BulkStream {
        index: u32,
    },
    /// Version 4, on the control stream: how many frames the source has sent on each bulk
    /// stream so far; the destination handles the next control message only once it has
    /// applied that many from each.
    Flush {
        frames: Vec<u64>,
    },
    FinalDone {
        images: u32,
        bytes: u64,
    },
    /// The destination restored (or, offline, started) the container, not yet running.
    Restored,
    /// The source hands the container over; the destination commits and runs it.
    Commit,
    CommitAck,
    Abort(AbortReason),
    Progress {
        phase: String,
        done: u64,
        total: u64,
    },
    Done(Stats),
    /// After a broken connection: the source asks how the destination decided.
    Resolve {
        migration_id: MigrationId,
    },
    Resolved {
        migration_id: MigrationId,
        committed: bool,
    },
    /// The first and only message of a connection that asks what the peer can take.
    CapacityQuery,
    Capacity(Capacity),
    /// The first and only request of a connection that asks for a container back.
    Pull(PullRequest),
}

/// The wire code of each message kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Kind {
    Hello = 1,
    HelloAck = 2,
    Plan = 3,
    PlanAccepted = 4,
    FsEntries = 10,
    FsSignature = 11,
    FsDelta = 12,
    FsData = 13,
    FsDelete = 14,
    FsPassDone = 15,
    Pages = 20,
    MemRoundDone = 21,
    MemRoundAck = 22,
    PageSlots = 23,
    Frozen = 30,
    Image = 31,
    FinalDone = 32,
    ImagePages = 33,
    ImageRuns = 34,
    Restored = 40,
    Commit = 41,
    CommitAck = 42,
    Abort = 50,
    Progress = 51,
    Done = 52,
    Resolve = 60,
    Resolved = 61,
    CapacityQuery = 70,
    Capacity = 71,
    Pull = 72,
    BulkStream = 80,
    Flush = 81,
}

impl Kind {
    pub fn from_code(code: u16) -> Option<Kind> {
        use Kind::*;
        Some(match code {
            1 => Hello,
            2 => HelloAck,
            3 => Plan,
            4 => PlanAccepted,
            10 => FsEntries,
            11 => FsSignature,
            12 => FsDelta,
            13 => FsData,
            14 => FsDelete,
            15 => FsPassDone,
            20 => Pages,
            21 => MemRoundDone,
            22 => MemRoundAck,
            23 => PageSlots,
            30 => Frozen,
            31 => Image,
            32 => FinalDone,
            33 => ImagePages,
            34 => ImageRuns,
            40 => Restored,
            41 => Commit,
            42 => CommitAck,
            50 => Abort,
            51 => Progress,
            52 => Done,
            60 => Resolve,
            61 => Resolved,
            70 => CapacityQuery,
            71 => Capacity,
            72 => Pull,
            80 => BulkStream,
            81 => Flush,
            _ => return None,
        })
    }
}

fn too_long(what: &'static str, len: usize, max: usize) -> Result<(), DecodeError> {
    if len > max {
        Err(DecodeError::Limit { what, len, max })
    } else {
        Ok(())
    }
}

fn caps_ok(c: &Capabilities) -> Result<(), DecodeError> {
    too_long("compression list", c.compression.len(), MAX_LIST)?;
    for n in &c.compression {
        too_long("compression name", n.len(), 64)?;
    }
    too_long("CRIU version", c.criu_version.len(), MAX_STRING)?;
    too_long("kernel version", c.kernel.len(), MAX_STRING)?;
    too_long("CPU description", c.cpu_description.len(), MAX_CPU_DESC)
}

fn pages_ok(pages: &[Page]) -> Result<(), DecodeError> {
    too_long("pages", pages.len(), MAX_PAGES)?;
    for p in pages {
        if p.vaddr % PAGE_SIZE as u64 != 0 {
            return Err(DecodeError::Invalid("page address not page-aligned"));
        }
        if let Some(d) = &p.data {
            if d.len() != PAGE_SIZE {
                return Err(DecodeError::Invalid("page data is not one page"));
            }
        }
    }
    Ok(())
}

fn runs_ok(m: &ImageRuns) -> Result<(), DecodeError> {
    too_long("page runs", m.runs.len(), MAX_RUNS)?;
    if m.offset % PAGE_SIZE as u64 != 0 {
        return Err(DecodeError::Invalid("image offset not page-aligned"));
    }
    let mut pages = 0u64;
    let mut data_pages = 0u64;
    for r in &m.runs {
        if r.count() == 0 {
            return Err(DecodeError::Invalid("an empty page run"));
        }
        pages += u64::from(r.count());
        match *r {
            PageRun::Held { slot, count } => {
                if u64::from(slot) + u64::from(count) > u64::from(u32::MAX) {
                    return Err(DecodeError::Invalid("page slots past the last one"));
                }
            }
            PageRun::Data { count } => data_pages += u64::from(count),
            PageRun::Zero { .. } => {}
        }
    }
    if pages > MAX_RUN_PAGES {
        return Err(DecodeError::Limit {
            what: "pages in runs",
            len: pages as usize,
            max: MAX_RUN_PAGES as usize,
        });
    }
    too_long("page data", m.data.len(), MAX_CHUNK)?;
    if m.data.len() as u64 != data_pages * PAGE_SIZE as u64 {
        return Err(DecodeError::Invalid("page data does not match its runs"));
    }
    if m.offset
        .checked_add(pages * PAGE_SIZE as u64)
        .is_none_or(|end| end > MAX_IMAGE_BYTES)
    {
        return Err(DecodeError::Invalid("pages past the largest image"));
    }
    Ok(())
}

fn reason_ok(r: &AbortReason) -> Result<(), DecodeError> {
    use AbortReason::*;
    match r {
        VersionMismatch { .. } => Ok(()),
        PlanRefused(s) | NoSpace(s) | DumpFailed(s) | RestoreFailed(s) | NotConverging(s) | Timeout(s)
        | Cancelled(s) | Protocol(s) | Local(s) => too_long("reason", s.len(), MAX_STRING),
    }
}

impl Message {
    pub fn kind(&self) -> Kind {
        match self {
            Message::Hello(_) => Kind::Hello,
            Message::HelloAck(_) => Kind::HelloAck,
            Message::Plan(_) => Kind::Plan,
            Message::PlanAccepted => Kind::PlanAccepted,
            Message::FsEntries { .. } => Kind::FsEntries,
            Message::FsSignature(_) => Kind::FsSignature,
            Message::FsDelta(_) => Kind::FsDelta,
            Message::FsData(_) => Kind::FsData,
            Message::FsDelete { .. } => Kind::FsDelete,
            Message::FsPassDone { .. } => Kind::FsPassDone,
            Message::Pages(_) => Kind::Pages,
            Message::MemRoundDone(_) => Kind::MemRoundDone,
            Message::MemRoundAck { .. } => Kind::MemRoundAck,
            Message::Frozen => Kind::Frozen,
            Message::Image(_) => Kind::Image,
            Message::FinalDone { .. } => Kind::FinalDone,
            Message::ImagePages(_) => Kind::ImagePages,
            Message::PageSlots(_) => Kind::PageSlots,
            Message::ImageRuns(_) => Kind::ImageRuns,
            Message::BulkStream { .. } => Kind::BulkStream,
            Message::Flush { .. } => Kind::Flush,
            Message::Restored => Kind::Restored,
            Message::Commit => Kind::Commit,
            Message::CommitAck => Kind::CommitAck,
            Message::Abort(_) => Kind::Abort,
            Message::Progress { .. } => Kind::Progress,
            Message::Done(_) => Kind::Done,
            Message::Resolve { .. } => Kind::Resolve,
            Message::Resolved { .. } => Kind::Resolved,
            Message::CapacityQuery => Kind::CapacityQuery,
            Message::Capacity(_) => Kind::Capacity,
            Message::Pull(_) => Kind::Pull,
        }
    }

    /// Checks every count and length against the limits. Paths were checked while decoding.
    pub fn validate(&self) -> Result<(), DecodeError> {
        match self {
            Message::Hello(h) => {
                too_long("host name", h.host.len(), MAX_STRING)?;
                caps_ok(&h.caps)
            }
            Message::HelloAck(h) => {
                too_long("host name", h.host.len(), MAX_STRING)?;
                caps_ok(&h.caps)
            }
            Message::Plan(p) => too_long("configuration", p.config.len(), MAX_CONFIG),
            Message::FsEntries { entries, .. } => {
                too_long("manifest entries", entries.len(), MAX_ENTRIES)?;
                for e in entries {
                    too_long("xattrs", e.xattrs.len(), MAX_XATTRS)?;
                    for (k, v) in &e.xattrs {
                        too_long("xattr name", k.len(), MAX_NAME)?;
                        too_long("xattr value", v.len(), MAX_XATTR_VALUE)?;
                    }
                    if let Some(t) = &e.link_target {
                        too_long("symlink target", t.len(), MAX_PATH)?;
                        if t.contains('\0') {
                            return Err(DecodeError::BadPath {
                                why: "symlink target contains NUL",
                            });
                        }
                    }
                    if (e.kind == FileKind::Symlink) != e.link_target.is_some() {
                        return Err(DecodeError::Invalid(
                            "a symlink needs a target, and only a symlink has one",
                        ));
                    }
                }
                Ok(())
            }
            Message::FsSignature(s) => too_long("signature", s.signature.len(), MAX_BLOB),
            Message::FsDelta(d) => too_long("delta", d.delta.len(), MAX_BLOB),
            Message::FsData(d) => too_long("file data", d.data.len(), MAX_CHUNK),
            Message::FsDelete { paths, .. } => too_long("deletions", paths.len(), MAX_ENTRIES),
            Message::Pages(b) => pages_ok(&b.pages),
            Message::ImagePages(b) => pages_ok(&b.pages),
            Message::PageSlots(b) => {
                too_long("page data", b.data.len(), MAX_PAGES * PAGE_SIZE)?;
                if b.data.is_empty() || b.data.len() % PAGE_SIZE != 0 {
                    return Err(DecodeError::Invalid("page data is not whole pages"));
                }
                if u64::from(b.first_slot) + (b.data.len() / PAGE_SIZE) as u64 > u64::from(u32::MAX) {
                    return Err(DecodeError::Invalid("page slots past the last one"));
                }
                Ok(())
            }
            Message::ImageRuns(m) => runs_ok(m),
            Message::BulkStream { index } => {
                if *index as usize >= MAX_STREAMS {
                    return Err(DecodeError::Invalid("bulk stream index out of range"));
                }
                Ok(())
            }
            Message::Flush { frames } => too_long("bulk streams", frames.len(), MAX_STREAMS),
            Message::Image(c) => too_long("image data", c.data.len(), MAX_CHUNK),
            Message::Abort(r) => reason_ok(r),
            Message::Progress { phase, .. } => too_long("phase", phase.len(), MAX_STRING),
            Message::Done(s) => too_long("rounds", s.rounds.len(), 10_000),
            Message::Capacity(c) => {
                too_long("host name", c.host.len(), MAX_STRING)?;
                too_long("containers", c.ctids.len(), MAX_ENTRIES)
            }
            Message::PlanAccepted
            | Message::FsPassDone { .. }
            | Message::MemRoundDone(_)
            | Message::MemRoundAck { .. }
            | Message::Frozen
            | Message::FinalDone { .. }
            | Message::Restored
            | Message::Commit
            | Message::CommitAck
            | Message::Resolve { .. }
            | Message::Resolved { .. }
            | Message::CapacityQuery
            | Message::Pull(_) => Ok(()),
        }
    }
}
