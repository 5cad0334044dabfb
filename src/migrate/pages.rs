//! Content-addressed memory pre-copy, for kernels without soft-dirty tracking (this project's).
//!
//! Source: while the container runs, each round reads the present pages of its processes'
//! private writable mappings (`/proc/PID/maps`, `/proc/PID/pagemap`, `process_vm_readv`: no
//! freezing, no ptrace), hashes each 4 KiB page (BLAKE3) and sends the pages whose content the
//! destination does not hold yet. Comparing each page's hash with the last round's tells how
//! much memory changed, which the convergence policy weighs.
//!
//! Frozen: CRIU's pages images are plain runs of 4 KiB pages, so the final transfer sends each
//! of their blocks as a reference when its content was pre-copied, and as data otherwise.
//!
//! Protocol version 4 names content by store slot: the source gives each content new to the
//! destination the next slot (so it mirrors the destination's store exactly), pre-copy rounds
//! send `PageSlots`, and the final dump's pages go as `ImageRuns`: runs of consecutive held
//! slots (4 bytes name a whole run), zero pages, and data. Versions 2 and 3 name content by its
//! hash (`Pages`, `ImagePages`).
//!
//! Destination: a store of pages, bounded, from which it writes the pages images back: by slot
//! (version 4, filled by several streams at once), or by hash, each page checked against it.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use migrate_proto::limits::PAGE_SIZE;
use migrate_proto::msg::{AbortReason, Hash, ImagePages, ImageRuns, Page, PageRun, PageSlots};

/// Pages read from a process at once.
const WINDOW: usize = 1024;

/// A mapping worth pre-copying: private and writable (heap, stacks, anonymous memory, the
/// written pages of data segments).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
}

/// Parses /proc/PID/maps, keeping private writable mappings (not the kernel's vdso and friends).
pub fn regions(maps: &str) -> Vec<Region> {
    let mut out = Vec::new();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        let path = f.nth(3).unwrap_or("");
        let p = perms.as_bytes();
        if p.len() < 4 || p[0] != b'r' || p[1] != b'w' || p[3] != b'p' {
            continue;
        }
        if matches!(path, "[vsyscall]" | "[vvar]" | "[vvar_vclock]" | "[vdso]") {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else { continue };
        if let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
            if end > start {
                out.push(Region { start, end });
            }
        }
    }
    out
}

/// Pagemap entry bits: the page is present, and written since its soft-dirty bit was cleared.
const PM_PRESENT: u64 = 1 << 63;
const PM_SOFT_DIRTY: u64 = 1 << 55;

/// The pages of a window to read (indices from `start`): the present ones, and with
/// `dirty_only` of those only the soft-dirty ones. A pagemap that cannot be read yields none.
pub fn choose(pagemap: &File, start: u64, pages: usize, dirty_only: bool) -> Vec<u16> {
    let mut entries = vec![0u8; pages * 8];
    if pagemap
        .read_exact_at(&mut entries, start / PAGE_SIZE as u64 * 8)
        .is_err()
    {
        return Vec::new();
    }
    let want = if dirty_only {
        PM_PRESENT | PM_SOFT_DIRTY
    } else {
        PM_PRESENT
    };
    entries
        .chunks_exact(8)
        .enumerate()
        .filter(|(_, e)| u64::from_le_bytes((*e).try_into().expect("8 bytes")) & want == want)
        .map(|(i, _)| i as u16)
        .collect()
}

/// Does this kernel track written pages (soft-dirty, CONFIG_MEM_SOFT_DIRTY)? Probed as CRIU
/// probes it: a page written, the process's bits cleared (`clear_refs` 4), the page written
/// again: its bit must be set again. `FERRY_SOFT_DIRTY=on|off` decides instead (a test hook:
/// `on` where the kernel has no such bits makes every round after the first read nothing,
/// which a migration must survive).
pub fn soft_dirty_works() -> bool {
    match std::env::var("FERRY_SOFT_DIRTY").as_deref() {
        Ok("on") => return true,
        Ok("off") => return false,
        _ => {}
    }
    static PROBED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PROBED.get_or_init(|| {
        // SAFETY: a private anonymous page of our own, unmapped below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return false;
        }
        let bits = || -> Option<u64> {
            let f = File::open("/proc/self/pagemap").ok()?;
            let mut e = [0u8; 8];
            f.read_exact_at(&mut e, p as u64 / PAGE_SIZE as u64 * 8).ok()?;
            Some(u64::from_le_bytes(e))
        };
        // SAFETY: writing into our own page.
        let touch = |v: u8| unsafe { std::ptr::write_volatile(p as *mut u8, v) };
        touch(1);
        let works =
            std::fs::write("/proc/self/clear_refs", "4").is_ok() && bits().is_some_and(|b| b & PM_SOFT_DIRTY == 0) && {
                touch(2);
                bits().is_some_and(|b| b & (PM_SOFT_DIRTY | PM_PRESENT) == PM_SOFT_DIRTY | PM_PRESENT)
            };
        // SAFETY: the mapping made above.
        unsafe { libc::munmap(p, PAGE_SIZE) };
        works
    })
}

pub fn hash(page: &[u8]) -> Hash {
    *blake3::hash(page).as_bytes()
}

/// The source's side: what the destination holds (and in which slot of its store), and what
/// each page held last round.
#[derive(Default)]
pub struct Precopy {
    held: HashMap<Hash, u32>,
    next_slot: u32,
    /// Version 4: slots whose content no page holds any more, given again to new content
    /// (highest first in the vector, so the lowest goes first and new content lands in runs).
    free: Vec<u32>,
    /// New contents put in a freed slot.
    reused: u64,
    last: HashMap<(u32, u64), Hash>,
    /// The pages the current round read (what a round without dirty tracking did not find is
    /// gone).
    seen: std::collections::HashSet<(u32, u64)>,
    /// The kernel's soft-dirty bits guide the rounds, and the processes whose bits were cleared.
    soft_dirty: bool,
    cleared: std::collections::HashSet<i32>,
}

/// What one round found.
#[derive(Debug, Default, Clone, Copy)]
pub struct Round {
    pub pages_read: u64,
    pub pages_sent: u64,
    /// Pages whose content differs from the round before (all of them in the first round).
    pub pages_changed: u64,
}

impl Precopy {
    pub fn holds(&self, h: &Hash) -> bool {
        self.held.contains_key(h)
    }

    /// The destination holds `h` from now on (in a free slot, else the next); false if it did
    /// already.
    pub fn mark_held(&mut self, h: Hash) -> bool {
        match self.held.entry(h) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                let slot = match self.free.pop() {
                    Some(s) => {
                        self.reused += 1;
                        s
                    }
                    None => {
                        self.next_slot += 1;
                        self.next_slot - 1
                    }
                };
                v.insert(slot);
                true
            }
        }
    }

    /// Version 4, after a round: the slots of contents no page holds any more are free for
    /// the next round's new content, so the destination's store stays near the container's
    /// memory however much of it churns (it used to keep every content it was ever sent). A
    /// page is forgotten when its process is gone (`live`), or, when this round read every
    /// present page (no dirty tracking), when the round did not find it. A content
    /// freed here that shows up again is sent again; the final dump names only what a page
    /// holds now, so nothing it refers to is ever a freed slot.
    pub fn recycle(&mut self, live: &std::collections::HashSet<u32>) {
        let seen = std::mem::take(&mut self.seen);
        let whole = !self.soft_dirty;
        self.last
            .retain(|k, _| live.contains(&k.0) && (!whole || seen.contains(k)));
        let referred: std::collections::HashSet<&Hash> = self.last.values().collect();
        let mut freed = Vec::new();
        self.held.retain(|h, slot| {
            let keep = referred.contains(h);
            if !keep {
                freed.push(*slot);
            }
            keep
        });
        self.free.extend(freed);
        self.free.sort_unstable_by(|a, b| b.cmp(a));
    }

    /// A round begins: nothing read yet.
    pub fn begin_round(&mut self) {
        self.seen.clear();
    }

    /// Slots ever used (the destination's store is this many pages long at most), and how
    /// many times new content took a slot freed before.
    pub fn slots_used(&self) -> u32 {
        self.next_slot
    }

    pub fn slots_reused(&self) -> u64 {
        self.reused
    }

    /// The store slot holding `h` (version 4).
    pub fn slot_of(&self, h: &Hash) -> Option<u32> {
        self.held.get(h).copied()
    }

    /// Reads the pages `chosen` (indices from `start`) of a process: the pages to send (content
    /// new to the destination). Pages that cannot be read (the process exited, the mapping
    /// changed) yield nothing.
    pub fn read(&mut self, pid: i32, start: u64, chosen: &[u16], buf: &mut Vec<u8>, round: &mut Round) -> Vec<Page> {
        let remote: Vec<nix::sys::uio::RemoteIoVec> = chosen
            .iter()
            .map(|i| nix::sys::uio::RemoteIoVec {
                base: (start + (*i as usize * PAGE_SIZE) as u64) as usize,
                len: PAGE_SIZE,
            })
            .collect();
        if remote.is_empty() {
            return Vec::new();
        }
        let n = remote.len();
        buf.resize(n * PAGE_SIZE, 0);
        let read = {
            let mut local = [std::io::IoSliceMut::new(&mut buf[..n * PAGE_SIZE])];
            nix::sys::uio::process_vm_readv(nix::unistd::Pid::from_raw(pid), &mut local, &remote).unwrap_or(0)
        };
        let mut out = Vec::new();
        for (k, r) in remote.iter().enumerate().take(read / PAGE_SIZE) {
            let data = &buf[k * PAGE_SIZE..(k + 1) * PAGE_SIZE];
            let h = hash(data);
            round.pages_read += 1;
            let key = (pid as u32, r.base as u64);
            self.seen.insert(key);
            if self.last.insert(key, h) != Some(h) {
                round.pages_changed += 1;
            }
            if self.mark_held(h) {
                round.pages_sent += 1;
                out.push(Page {
                    pid: pid as u32,
                    vaddr: r.base as u64,
                    hash: h,
                    data: Some(data.to_vec()),
                });
            }
        }
        out
    }

    /// Reads only the pages the kernel saw written since the round before (soft-dirty), where
    /// it tracks them. Correctness never depends on it: the final dump is compared page by page
    /// with what the destination holds.
    pub fn track_dirty(&mut self, on: bool) {
        self.soft_dirty = on;
    }

    pub fn tracks_dirty(&self) -> bool {
        self.soft_dirty
    }

    /// Whether this round may read only `pid`'s soft-dirty pages (its bits were cleared at a
    /// round before).
    pub fn dirty_only(&self, pid: i32) -> bool {
        self.soft_dirty && self.cleared.contains(&pid)
    }

    /// Clears `pid`'s soft-dirty bits (after this round chose its pages, before it reads them:
    /// a page written while the round reads is read again by the next).
    pub fn clear_dirty(&mut self, pid: i32) {
        if self.soft_dirty && std::fs::write(format!("/proc/{pid}/clear_refs"), "4").is_ok() {
            self.cleared.insert(pid);
        }
    }

    /// The windows of a process to read this round: (pagemap, start, pages).
    pub fn windows(pid: i32) -> Option<(File, Vec<(u64, usize)>)> {
        let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
        let pagemap = File::open(format!("/proc/{pid}/pagemap")).ok()?;
        let mut w = Vec::new();
        for r in regions(&maps) {
            let mut a = r.start;
            while a < r.end {
                let pages = (((r.end - a) / PAGE_SIZE as u64) as usize).min(WINDOW);
                if pages == 0 {
                    break;
                }
                w.push((a, pages));
                a += (pages * PAGE_SIZE) as u64;
            }
        }
        Some((pagemap, w))
    }
}

/// Pages of the final dump sent as references to pre-copied content, as data, and (version 4)
/// as zero pages.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FinalCounts {
    pub refs: u64,
    pub data: u64,
    pub zero: u64,
}

impl Precopy {
    /// Part of a pages image (`data`, whole pages, at `offset` in image `name`) as blocks: a
    /// reference where the destination holds the content, the data where not (and from then on
    /// it holds it).
    pub fn image_pages(
        &mut self,
        name: &migrate_proto::path::RelPath,
        offset: u64,
        data: &[u8],
        counts: &mut FinalCounts,
    ) -> ImagePages {
        let pages = data
            .chunks_exact(PAGE_SIZE)
            .enumerate()
            .map(|(i, block)| {
                let hash = hash(block);
                let known = !self.mark_held(hash);
                if known {
                    counts.refs += 1;
                } else {
                    counts.data += 1;
                }
                Page {
                    pid: 0,
                    vaddr: offset + (i * PAGE_SIZE) as u64,
                    hash,
                    data: (!known).then(|| block.to_vec()),
                }
            })
            .collect();
        ImagePages {
            name: name.clone(),
            pages,
        }
    }
}

impl Precopy {
    /// Version 4: part of a pages image as runs: consecutive held slots, zero pages, and data
    /// (new content is not given a slot: the destination keeps no store of the final transfer,
    /// so a second copy of it goes as data again, which is rare but for zero pages).
    pub fn image_runs(
        &self,
        name: &migrate_proto::path::RelPath,
        offset: u64,
        data: &[u8],
        counts: &mut FinalCounts,
    ) -> ImageRuns {
        let mut runs: Vec<PageRun> = Vec::new();
        let mut out = Vec::new();
        for block in data.chunks_exact(PAGE_SIZE) {
            let run = if block.iter().all(|b| *b == 0) {
                counts.zero += 1;
                PageRun::Zero { count: 1 }
            } else if let Some(slot) = self.slot_of(&hash(block)) {
                counts.refs += 1;
                PageRun::Held { slot, count: 1 }
            } else {
                counts.data += 1;
                out.extend_from_slice(block);
                PageRun::Data { count: 1 }
            };
            match (runs.last_mut(), run) {
                (Some(PageRun::Held { slot, count }), PageRun::Held { slot: s, .. }) if *slot + *count == s => {
                    *count += 1
                }
                (Some(PageRun::Zero { count }), PageRun::Zero { .. })
                | (Some(PageRun::Data { count }), PageRun::Data { .. }) => *count += 1,
                _ => runs.push(run),
            }
        }
        ImageRuns {
            name: name.clone(),
            offset,
            runs,
            data: out,
        }
    }
}

/// The final dump's pages as CRIU's page server hands them over (`criu::page_server`): each
/// run becomes the message that carries it to the destination, passed to the sending side
/// through a bounded channel (a full channel holds the dump back; a closed one, the wire gone,
/// fails it).
pub struct FinalPages {
    pub precopy: Precopy,
    pub counts: FinalCounts,
    /// Version 4: runs of slots (else hash references).
    slots: bool,
    tx: tokio::sync::mpsc::Sender<migrate_proto::msg::Message>,
}

impl FinalPages {
    pub fn new(precopy: Precopy, slots: bool, tx: tokio::sync::mpsc::Sender<migrate_proto::msg::Message>) -> Self {
        Self {
            precopy,
            counts: FinalCounts::default(),
            slots,
            tx,
        }
    }

    /// What the pre-copy holds now and what was counted; the channel closes (its sender is
    /// dropped), which ends the sending side's loop.
    pub fn finish(self) -> (Precopy, FinalCounts) {
        (self.precopy, self.counts)
    }

    fn send(&self, m: migrate_proto::msg::Message) -> std::io::Result<()> {
        self.tx
            .blocking_send(m)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the migration stopped sending"))
    }

    fn name(image: &str) -> std::io::Result<migrate_proto::path::RelPath> {
        migrate_proto::path::RelPath::new(image)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("image name {image}: {e}")))
    }
}

impl crate::criu::page_server::PageSink for FinalPages {
    fn open(&mut self, image: &str) -> std::io::Result<()> {
        // The file exists on the destination even if no page lands in it.
        if self.slots {
            return self.send(migrate_proto::msg::Message::ImageRuns(ImageRuns::empty(Self::name(
                image,
            )?)));
        }
        self.send(migrate_proto::msg::Message::Image(migrate_proto::msg::ImageChunk {
            name: Self::name(image)?,
            offset: 0,
            compressed: false,
            data: vec![],
        }))
    }

    fn pages(&mut self, image: &str, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let name = Self::name(image)?;
        for (i, part) in data.chunks(migrate_proto::limits::MAX_PAGES * PAGE_SIZE).enumerate() {
            let at = offset + (i * migrate_proto::limits::MAX_PAGES * PAGE_SIZE) as u64;
            let m = if self.slots {
                migrate_proto::msg::Message::ImageRuns(self.precopy.image_runs(&name, at, part, &mut self.counts))
            } else {
                migrate_proto::msg::Message::ImagePages(self.precopy.image_pages(&name, at, part, &mut self.counts))
            };
            self.send(m)?;
        }
        Ok(())
    }
}

/// Is this CRIU image a pages image (plain 4 KiB pages)?
pub fn is_pages_image(name: &str) -> bool {
    name.starts_with("pages-") && name.ends_with(".img")
}

/// The destination's store of pre-copied pages: the pages in an unnamed file of the
/// migration's work directory (O_TMPFILE: gone with its descriptor, even after a crash), an
/// index in memory. The memory the pages take is the file system's (page cache on a disk,
/// reclaimable), not the agent's, so a destination does not need the container's memory twice
/// over while it writes the pages images and CRIU restores from them.
///
/// Version 4 places each content in the slot the source names (`slot * PAGE_SIZE` in the file),
/// each slot filled once; several bulk streams fill it at once. Versions 2 and 3 append each
/// content and find it by hash.
pub struct Store {
    file: File,
    cap: u64,
    index: Mutex<StoreIndex>,
}

#[derive(Default)]
struct StoreIndex {
    /// Versions 2 and 3: where each content is, and the bytes appended.
    by_hash: HashMap<Hash, u64>,
    bytes: u64,
    /// Version 4: the round that last filled each slot (0: never), and how many are filled.
    slots: Vec<u32>,
    filled: u64,
    /// Bytes the images took from the store or from data (bounded like the store).
    images: u64,
}

impl StoreIndex {
    /// Is slot `i` filled?
    fn slot(&self, i: u64) -> bool {
        self.slots.get(i as usize).is_some_and(|r| *r > 0)
    }
}

impl Store {
    /// A store in `dir` that refuses to grow past `cap` bytes.
    pub fn new(dir: &Path, cap: u64) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE)
            .open(dir)?;
        Ok(Self {
            file,
            cap,
            index: Mutex::new(StoreIndex::default()),
        })
    }

    /// Bytes of pre-copied content held.
    pub fn bytes(&self) -> u64 {
        let i = self.index.lock().unwrap();
        i.bytes + i.filled * PAGE_SIZE as u64
    }

    fn outgrew(&self) -> AbortReason {
        AbortReason::NoSpace(format!(
            "the pre-copied memory outgrew its budget of {} MiB",
            self.cap >> 20
        ))
    }

    /// Keeps a page the source sent (checked against its hash); a reference must name a page
    /// held already (versions 2 and 3).
    pub fn put(&self, p: &Page) -> Result<(), AbortReason> {
        match &p.data {
            Some(d) => {
                if hash(d) != p.hash {
                    return Err(AbortReason::Protocol("a page does not match its hash".into()));
                }
                let mut i = self.index.lock().unwrap();
                if !i.by_hash.contains_key(&p.hash) {
                    if i.bytes + PAGE_SIZE as u64 > self.cap {
                        return Err(self.outgrew());
                    }
                    let at = i.bytes;
                    self.file.write_all_at(d, at).map_err(super::io_abort)?;
                    i.by_hash.insert(p.hash, at);
                    i.bytes += PAGE_SIZE as u64;
                }
                Ok(())
            }
            None if self.index.lock().unwrap().by_hash.contains_key(&p.hash) => Ok(()),
            None => Err(AbortReason::Protocol("a reference to a page never sent".into())),
        }
    }

    /// Writes part of a pages image from the message's data and the store (each page copied
    /// inside the kernel, file to file); versions 2 and 3.
    pub fn write_image(&self, path: &Path, m: &ImagePages) -> Result<(), AbortReason> {
        let f = open_image(path)?;
        let mut buf = Vec::new();
        for p in &m.pages {
            self.put(p)?;
            let at = *self
                .index
                .lock()
                .unwrap()
                .by_hash
                .get(&p.hash)
                .expect("put keeps or finds it");
            copy_range(&self.file, at, &f, p.vaddr, PAGE_SIZE as u64, &mut buf).map_err(super::io_abort)?;
        }
        Ok(())
    }

    /// Version 4: pre-copied content into the slots the source assigned.
    pub fn put_slots(&self, m: &PageSlots) -> Result<(), AbortReason> {
        let n = (m.data.len() / PAGE_SIZE) as u64;
        let first = u64::from(m.first_slot);
        if (first + n) * PAGE_SIZE as u64 > self.cap {
            return Err(self.outgrew());
        }
        // A slot takes new content in a later round than the one that filled it (the source
        // frees the slots of contents no page holds any more), never twice in one round.
        let round = m.round.max(1);
        {
            let mut i = self.index.lock().unwrap();
            let end = (first + n) as usize;
            if i.slots.len() < end {
                i.slots.resize(end, 0);
            }
            let here = &mut i.slots[first as usize..end];
            if here.iter().any(|r| *r >= round) {
                return Err(AbortReason::Protocol("a store slot filled twice in one round".into()));
            }
            let fresh = here.iter().filter(|r| **r == 0).count() as u64;
            here.fill(round);
            i.filled += fresh;
        }
        self.file
            .write_all_at(&m.data, first * PAGE_SIZE as u64)
            .map_err(super::io_abort)
    }

    /// Version 4: part of a pages image from runs of held slots, zeros and data. Writes never
    /// shrink the file, so parts of one image may arrive on several streams in any order.
    pub fn write_runs(&self, path: &Path, m: &ImageRuns) -> Result<(), AbortReason> {
        let f = open_image(path)?;
        let page = PAGE_SIZE as u64;
        {
            let mut i = self.index.lock().unwrap();
            let written: u64 = m
                .runs
                .iter()
                .filter(|r| !matches!(r, PageRun::Zero { .. }))
                .map(|r| u64::from(r.count()) * page)
                .sum();
            if i.images + written > self.cap {
                return Err(AbortReason::NoSpace(format!(
                    "the final images outgrew their budget of {} MiB",
                    self.cap >> 20
                )));
            }
            i.images += written;
            for r in &m.runs {
                if let PageRun::Held { slot, count } = *r {
                    let s = u64::from(slot);
                    if !(s..s + u64::from(count)).all(|k| i.slot(k)) {
                        return Err(AbortReason::Protocol("a reference to a store slot never filled".into()));
                    }
                }
            }
        }
        let (mut at, mut data, mut buf) = (m.offset, &m.data[..], Vec::new());
        for (k, r) in m.runs.iter().enumerate() {
            let len = u64::from(r.count()) * page;
            match *r {
                PageRun::Held { slot, .. } => {
                    copy_range(&self.file, u64::from(slot) * page, &f, at, len, &mut buf).map_err(super::io_abort)?
                }
                PageRun::Data { .. } => {
                    let (here, rest) = data.split_at(len as usize);
                    f.write_all_at(here, at).map_err(super::io_abort)?;
                    data = rest;
                }
                // A hole reads as zeros; the image's last page is written so that its size
                // covers the run.
                PageRun::Zero { .. } if k + 1 == m.runs.len() => f
                    .write_all_at(&[0u8; PAGE_SIZE], at + len - page)
                    .map_err(super::io_abort)?,
                PageRun::Zero { .. } => {}
            }
            at += len;
        }
        Ok(())
    }
}

/// A pages image being written: created if missing, never truncated (several messages, maybe
/// on several streams, write its parts).
fn open_image(path: &Path) -> Result<File, AbortReason> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(super::io_abort)
}

/// Copies `len` bytes from `from` at `at` to `to` at `to_at`: copy_file_range, or (where the
/// kernel cannot between these files) reads and writes through `buf`.
fn copy_range(from: &File, at: u64, to: &File, to_at: u64, len: u64, buf: &mut Vec<u8>) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let (mut off_in, mut off_out) = (at as i64, to_at as i64);
    let mut left = len;
    while left > 0 {
        // SAFETY: both descriptors are open; the offsets are ours.
        let n = unsafe {
            libc::copy_file_range(
                from.as_raw_fd(),
                &mut off_in,
                to.as_raw_fd(),
                &mut off_out,
                left as usize,
                0,
            )
        };
        match n {
            1.. => left -= n as u64,
            // The end of the store file: the rest is read (and fails there).
            0 => break,
            _ => {
                let e = std::io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => break,
                    _ => return Err(e),
                }
            }
        }
    }
    while left > 0 {
        let done = len - left;
        let n = left.min(1 << 20) as usize;
        buf.resize(n, 0);
        from.read_exact_at(buf, at + done)?;
        to.write_all_at(buf, to_at + done)?;
        left -= n as u64;
    }
    Ok(())
}

/// The pids of a container's processes, from its cgroup.
pub fn pids_of(rt: &crate::runtime::Runtime, ctid: crate::ctid::Ctid) -> Vec<i32> {
    rt.cgroups(ctid)
        .ok()
        .and_then(|c| c.pids(ctid).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One window of a process's memory read as a round without dirty tracking reads it: its
    /// present pages, those new to the destination returned.
    fn window(
        p: &mut Precopy,
        pid: i32,
        pagemap: &File,
        start: u64,
        pages: usize,
        buf: &mut Vec<u8>,
        round: &mut Round,
    ) -> Vec<Page> {
        let chosen = choose(pagemap, start, pages, false);
        p.read(pid, start, &chosen, buf, round)
    }

    #[test]
    fn only_private_writable_mappings_are_read() {
        let maps = "\
55d0c0a00000-55d0c0a21000 r-xp 00000000 08:01 123 /bin/busybox
55d0c0c21000-55d0c0c23000 rw-p 00021000 08:01 123 /bin/busybox
55d0c1000000-55d0c1021000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0010000000 rw-p 00000000 00:00 0
7f0010000000-7f0010001000 rw-s 00000000 00:05 9 /dev/zero (deleted)
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
7ffd00100000-7ffd00102000 r--p 00000000 00:00 0 [vvar]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]
";
        let r = regions(maps);
        assert_eq!(r.len(), 4);
        assert_eq!(
            r[0],
            Region {
                start: 0x55d0c0c21000,
                end: 0x55d0c0c23000
            }
        );
        assert_eq!(r[2].end - r[2].start, 0x10000000);
    }

    #[test]
    fn a_round_reads_its_own_memory_and_sends_each_content_once() {
        // This process's own memory: 64 pages, all zero but 8 distinct ones.
        let mut mem = vec![0u8; 64 * PAGE_SIZE];
        let base = mem.as_ptr() as u64;
        let aligned = (base + PAGE_SIZE as u64 - 1) & !(PAGE_SIZE as u64 - 1);
        let off = (aligned - base) as usize;
        let usable = (mem.len() - off) / PAGE_SIZE;
        for i in 0..8 {
            mem[off + i * PAGE_SIZE] = i as u8 + 1;
        }
        for i in 8..usable {
            mem[off + i * PAGE_SIZE + 1] = 0; // touched, stays zero
        }
        let pid = std::process::id() as i32;
        let pagemap = File::open(format!("/proc/{pid}/pagemap")).unwrap();
        let mut p = Precopy::default();
        let mut buf = Vec::new();
        let mut round = Round::default();
        let sent = window(&mut p, pid, &pagemap, aligned, usable, &mut buf, &mut round);
        assert_eq!(round.pages_read, usable as u64);
        // 8 distinct pages and one zero page.
        assert_eq!(sent.len(), 9, "{round:?}");
        for s in &sent {
            assert_eq!(hash(s.data.as_ref().unwrap()), s.hash);
        }
        // Nothing changed: the next round reads the same and sends nothing.
        let mut round2 = Round::default();
        assert!(window(&mut p, pid, &pagemap, aligned, usable, &mut buf, &mut round2).is_empty());
        assert_eq!(round2.pages_changed, 0);
        mem[off + 3 * PAGE_SIZE + 7] = 99;
        let mut round3 = Round::default();
        let again = window(&mut p, pid, &pagemap, aligned, usable, &mut buf, &mut round3);
        assert_eq!((again.len(), round3.pages_changed), (1, 1));
        assert_eq!(again[0].vaddr, aligned + 3 * PAGE_SIZE as u64);
        std::hint::black_box(&mem);
    }

    #[test]
    fn the_store_checks_hashes_references_and_its_budget() {
        let page = |b: u8| {
            let d = vec![b; PAGE_SIZE];
            Page {
                pid: 1,
                vaddr: 0,
                hash: hash(&d),
                data: Some(d),
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(dir.path(), 2 * PAGE_SIZE as u64).unwrap();
        // The store is an unnamed file: nothing is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        s.put(&page(1)).unwrap();
        s.put(&page(1)).unwrap();
        assert_eq!(s.bytes(), PAGE_SIZE as u64);
        let mut forged = page(2);
        forged.hash = page(3).hash;
        assert!(matches!(s.put(&forged), Err(AbortReason::Protocol(_))));
        let unknown = Page { data: None, ..page(4) };
        assert!(matches!(s.put(&unknown), Err(AbortReason::Protocol(_))));
        s.put(&page(2)).unwrap();
        assert!(matches!(s.put(&page(5)), Err(AbortReason::NoSpace(_))));
        // An image from a reference and a new page.
        let img = dir.path().join("pages-1.img");
        let m = ImagePages {
            name: migrate_proto::path::RelPath::new("pages-1.img").unwrap(),
            pages: vec![
                Page {
                    data: None,
                    vaddr: PAGE_SIZE as u64,
                    ..page(1)
                },
                Page { vaddr: 0, ..page(2) },
            ],
        };
        s.write_image(&img, &m).unwrap();
        let back = std::fs::read(&img).unwrap();
        assert_eq!(back.len(), 2 * PAGE_SIZE);
        assert!(back[..PAGE_SIZE].iter().all(|b| *b == 2) && back[PAGE_SIZE..].iter().all(|b| *b == 1));
    }

    #[test]
    fn slots_fill_once_and_runs_rebuild_an_image_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(dir.path(), 8 * PAGE_SIZE as u64).unwrap();
        let pages = |bytes: &[u8]| bytes.iter().flat_map(|b| vec![*b; PAGE_SIZE]).collect::<Vec<u8>>();
        s.put_slots(&PageSlots {
            round: 1,
            first_slot: 0,
            data: pages(&[1, 2, 3]),
        })
        .unwrap();
        s.put_slots(&PageSlots {
            round: 2,
            first_slot: 5,
            data: pages(&[6]),
        })
        .unwrap();
        assert_eq!(s.bytes(), 4 * PAGE_SIZE as u64);
        // A slot filled twice in one round, past the budget, and a reference to an empty slot.
        let again = s.put_slots(&PageSlots {
            round: 2,
            first_slot: 5,
            data: pages(&[9]),
        });
        assert!(matches!(again, Err(AbortReason::Protocol(_))), "{again:?}");
        // A later round may give a slot new content (the source freed it).
        s.put_slots(&PageSlots {
            round: 3,
            first_slot: 5,
            data: pages(&[6]),
        })
        .unwrap();
        assert_eq!(s.bytes(), 4 * PAGE_SIZE as u64, "the same four slots");
        let stale = s.put_slots(&PageSlots {
            round: 2,
            first_slot: 5,
            data: pages(&[9]),
        });
        assert!(matches!(stale, Err(AbortReason::Protocol(_))), "{stale:?}");
        let past = s.put_slots(&PageSlots {
            round: 2,
            first_slot: 7,
            data: pages(&[9, 9]),
        });
        assert!(matches!(past, Err(AbortReason::NoSpace(_))), "{past:?}");
        let name = migrate_proto::path::RelPath::new("pages-1.img").unwrap();
        let img = dir.path().join("pages-1.img");
        let never = ImageRuns {
            name: name.clone(),
            offset: 0,
            runs: vec![PageRun::Held { slot: 3, count: 1 }],
            data: vec![],
        };
        assert!(matches!(s.write_runs(&img, &never), Err(AbortReason::Protocol(_))));
        // The image's second half first (ending in zeros), then its first half: the file is
        // whole either way, its size covering the zeros at the end.
        let second = ImageRuns {
            name: name.clone(),
            offset: 4 * PAGE_SIZE as u64,
            runs: vec![PageRun::Held { slot: 5, count: 1 }, PageRun::Zero { count: 2 }],
            data: vec![],
        };
        let first = ImageRuns {
            name: name.clone(),
            offset: 0,
            runs: vec![PageRun::Held { slot: 0, count: 3 }, PageRun::Data { count: 1 }],
            data: pages(&[7]),
        };
        s.write_runs(&img, &second).unwrap();
        s.write_runs(&img, &first).unwrap();
        assert_eq!(std::fs::read(&img).unwrap(), pages(&[1, 2, 3, 7, 6, 0, 0]));
        // An empty image exists.
        let empty = dir.path().join("pages-2.img");
        s.write_runs(&empty, &ImageRuns::empty(name)).unwrap();
        assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);
    }

    #[test]
    fn the_final_dump_goes_as_runs_of_slots_zeros_and_data() {
        let mut p = Precopy::default();
        let page = |b: u8| vec![b; PAGE_SIZE];
        // The pre-copy sent contents 1, 2, 3 (slots 0, 1, 2) and 9 (slot 3).
        for b in [1u8, 2, 3, 9] {
            assert!(p.mark_held(hash(&page(b))));
        }
        assert!(!p.mark_held(hash(&page(2))), "held already");
        let mut dump = Vec::new();
        for b in [1u8, 2, 3, 0, 0, 5, 9, 1] {
            dump.extend(page(b));
        }
        let name = migrate_proto::path::RelPath::new("pages-1.img").unwrap();
        let mut counts = FinalCounts::default();
        let m = p.image_runs(&name, 8192, &dump, &mut counts);
        assert_eq!(
            m.runs,
            [
                PageRun::Held { slot: 0, count: 3 },
                PageRun::Zero { count: 2 },
                PageRun::Data { count: 1 },
                PageRun::Held { slot: 3, count: 1 },
                PageRun::Held { slot: 0, count: 1 },
            ]
        );
        assert_eq!(m.data, page(5));
        assert_eq!((m.offset, m.pages()), (8192, 8));
        assert_eq!(
            counts,
            FinalCounts {
                refs: 5,
                data: 1,
                zero: 2
            }
        );
        migrate_proto::frame::encode(&migrate_proto::msg::Message::ImageRuns(m)).unwrap();
    }

    #[test]
    fn a_round_chooses_present_pages_and_with_dirty_tracking_only_the_written_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pagemap");
        // A pagemap of 6 pages from address 0x10000: present and dirty, present and clean,
        // absent, swapped (not present), present and dirty, present and clean.
        let entries = [
            PM_PRESENT | PM_SOFT_DIRTY | 42,
            PM_PRESENT | 43,
            0,
            1 << 62,
            PM_PRESENT | PM_SOFT_DIRTY,
            PM_PRESENT,
        ];
        let mut bytes = vec![0u8; 0x10 * 8];
        for e in entries {
            bytes.extend_from_slice(&e.to_le_bytes());
        }
        std::fs::write(&path, bytes).unwrap();
        let f = File::open(&path).unwrap();
        assert_eq!(choose(&f, 0x10000, 6, false), [0, 1, 4, 5]);
        assert_eq!(choose(&f, 0x10000, 6, true), [0, 4]);
        // Past the end of the pagemap: nothing.
        assert!(choose(&f, 0x10_0000, 6, false).is_empty());
        // The probe answers (this project's kernels have no soft-dirty bits; most others do).
        let _ = soft_dirty_works();
        let mut p = Precopy::default();
        assert!(!p.dirty_only(1));
        p.track_dirty(true);
        assert!(
            !p.dirty_only(1),
            "a process whose bits were never cleared is read whole"
        );
    }

    #[test]
    fn slots_of_contents_no_page_holds_are_given_again() {
        let mut p = Precopy::default();
        let h = |b: u8| hash(&[b; PAGE_SIZE]);
        // Round 1: pages A, B, C of process 7 hold contents 1, 2, 3 (slots 0, 1, 2).
        p.begin_round();
        for (a, b) in [(0x1000u64, 1u8), (0x2000, 2), (0x3000, 3)] {
            assert!(p.mark_held(h(b)));
            p.last.insert((7, a), h(b));
            p.seen.insert((7, a));
        }
        let live: std::collections::HashSet<u32> = [7].into();
        p.recycle(&live);
        assert_eq!(p.free, Vec::<u32>::new());
        // Round 2: B now holds 4, and C is gone: contents 2 and 3 are no page's, their slots free.
        p.begin_round();
        for (a, b) in [(0x1000u64, 1u8), (0x2000, 4)] {
            p.mark_held(h(b));
            p.last.insert((7, a), h(b));
            p.seen.insert((7, a));
        }
        assert_eq!(p.slot_of(&h(4)), Some(3), "nothing was free yet");
        p.recycle(&live);
        assert_eq!((p.slot_of(&h(2)), p.slot_of(&h(3))), (None, None));
        assert_eq!((p.slot_of(&h(1)), p.slot_of(&h(4))), (Some(0), Some(3)));
        // New content takes the lowest free slots first, in a run.
        assert!(p.mark_held(h(5)) && p.mark_held(h(6)));
        assert_eq!((p.slot_of(&h(5)), p.slot_of(&h(6))), (Some(1), Some(2)));
        assert_eq!((p.slots_used(), p.slots_reused()), (4, 2));
        // A process that is gone takes its pages' contents with it.
        p.begin_round();
        p.recycle(&std::collections::HashSet::new());
        assert!(p.held.is_empty() && p.last.is_empty());
    }
}
