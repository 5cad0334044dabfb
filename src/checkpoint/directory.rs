//! Checkpoint format 2: a local checkpoint as a directory that CRIU restores from in place
//! (docs/checkpoint-format.md).
//!
//! ```text
//! ID.ckpt/            mode 0700
//!   manifest          magic "FERRYCKP" | version 2 u32 BE | length u32 BE | JSON | BLAKE3 (32)
//!   images/           CRIU's images as CRIU wrote them (pages uncompressed)
//!   fs.tar            the private area's snapshot (full or a delta)
//!   fs.entries        the private area's entries as the snapshot saw them (stamp.rs)
//! ```
//! The manifest lists every file with its size and BLAKE3 hash. Nothing is compressed or
//! copied: a checkpoint is what CRIU wrote, hashed as it was written ([`Follower`]); a restore
//! hands the pages files to CRIU through hard links and checks their hashes while CRIU reads
//! them ([`PageCheck`]), before the restored processes may run. Everything else is checked
//! before anything changes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::archive::{ArchiveError, Manifest, MAGIC, MAX_MANIFEST};

/// The format of a checkpoint directory.
pub const FORMAT: u32 = 2;
/// The sealed manifest's name inside the directory.
pub const MANIFEST: &str = "manifest";
/// Most files a checkpoint may list (a sanity bound: CRIU writes a few per process).
pub const MAX_FILES: usize = 200_000;
const CHUNK: usize = 4 << 20;

/// One file of a checkpoint directory: its name (`images/NAME` or `fs.tar`), size and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedFile {
    pub name: String,
    pub size: u64,
    /// BLAKE3, hex.
    pub blake3: String,
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ArchiveError {
    let path = path.to_path_buf();
    move |source| ArchiveError::Io { what, path, source }
}

fn damaged(path: &Path, why: impl Into<String>) -> ArchiveError {
    ArchiveError::Damaged {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

/// A pages image (`images/pages-N.img`): raw memory, read by CRIU as it is, never parsed.
pub fn is_pages(name: &str) -> bool {
    name.strip_prefix("images/pages-")
        .and_then(|r| r.strip_suffix(".img"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// A name a checkpoint may list: `fs.tar`, or `images/` and one plain file name.
fn valid_name(name: &str) -> bool {
    if name == "fs.tar" || name == "fs.entries" {
        return true;
    }
    name.strip_prefix("images/").is_some_and(|f| {
        !f.is_empty() && f != "." && f != ".." && !f.contains('/') && !f.contains('\0') && f.len() <= 255
    })
}

/// Hashes a whole file in chunks.
fn hash_file(path: &Path, cancel: &AtomicBool) -> io::Result<(u64, blake3::Hash)> {
    let mut f = File::open(path)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0u64;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "cancelled"));
        }
        let k = f.read(&mut buf)?;
        if k == 0 {
            return Ok((n, h.finalize()));
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
}

/// Every core: what hashing that nothing waits beside may use.
fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Hashes `paths` on `workers` threads (one file per worker at a time); results in the same
/// order.
fn hash_all(paths: &[PathBuf], cancel: &AtomicBool, workers: usize) -> Vec<io::Result<(u64, blake3::Hash)>> {
    let workers = workers.clamp(1, paths.len().max(1));
    let next = AtomicUsize::new(0);
    let mut out: Vec<Option<io::Result<(u64, blake3::Hash)>>> = (0..paths.len()).map(|_| None).collect();
    let results = std::sync::Mutex::new(&mut out);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= paths.len() {
                    break;
                }
                let r = hash_file(&paths[i], cancel);
                results.lock().unwrap()[i] = Some(r);
            });
        }
    });
    out.into_iter().map(|r| r.expect("every file was hashed")).collect()
}

/// What the follower read of each pages image: its inode, length and hash.
type Seen = BTreeMap<String, (u64, u64, blake3::Hash)>;

struct Followed {
    file: File,
    ino: u64,
    hasher: blake3::Hasher,
    len: u64,
}

/// Hashes CRIU's pages images while a dump writes them (CRIU appends to each in order), so
/// sealing the checkpoint afterwards has only the small files left to read. Only an
/// optimisation: [`seal`] hashes again whatever the follower did not see whole.
pub struct Follower {
    done: Arc<AtomicBool>,
    handle: Option<JoinHandle<Seen>>,
}

impl Follower {
    /// Starts following `images` (CRIU's images directory of a dump in progress).
    pub fn start(images: &Path) -> Follower {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let dir = images.to_path_buf();
        let handle = std::thread::Builder::new()
            .name("ckpt-hash".into())
            .spawn(move || follow(&dir, &d))
            .ok();
        Follower { done, handle }
    }

    /// Stops following (once the dump has finished writing) and returns, per pages image
    /// (`images/pages-N.img`), the inode, length and hash of what was read.
    fn finish(mut self) -> Seen {
        self.done.store(true, Ordering::Release);
        self.handle.take().and_then(|h| h.join().ok()).unwrap_or_default()
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn follow(dir: &Path, done: &AtomicBool) -> Seen {
    let mut files: BTreeMap<String, Followed> = BTreeMap::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        // Read before the last pass: whatever was written before `done` is seen by it.
        let last = done.load(Ordering::Acquire);
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                let name = format!("images/{}", e.file_name().to_string_lossy());
                if !is_pages(&name) {
                    continue;
                }
                let Ok(md) = e.metadata() else { continue };
                // A dump tried again writes its files anew: a new inode starts over.
                if files.get(&name).is_some_and(|f| f.ino == md.ino()) {
                    continue;
                }
                if let Ok(file) = File::open(e.path()) {
                    files.insert(
                        name,
                        Followed {
                            file,
                            ino: md.ino(),
                            hasher: blake3::Hasher::new(),
                            len: 0,
                        },
                    );
                }
            }
        }
        let mut progressed = false;
        for f in files.values_mut() {
            while let Ok(k) = f.file.read(&mut buf) {
                if k == 0 {
                    break;
                }
                f.hasher.update(&buf[..k]);
                f.len += k as u64;
                progressed = true;
            }
        }
        if last {
            break;
        }
        if !progressed {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    files
        .into_iter()
        .map(|(name, f)| (name, (f.ino, f.len, f.hasher.finalize())))
        .collect()
}

/// Seals a checkpoint directory being made in `work` (`images/` as the dump left it,
/// `fs.tar`): every file hashed (what `follower` saw whole is not read again) and synced, the
/// list written into `manifest.files`, and the sealed manifest written. Returns the bytes
/// the checkpoint holds.
pub fn seal(work: &Path, manifest: &mut Manifest, follower: Option<Follower>) -> Result<u64, ArchiveError> {
    let followed = follower.map(Follower::finish).unwrap_or_default();
    let mut names = vec!["fs.tar".to_string()];
    if work.join("fs.entries").exists() {
        names.push("fs.entries".into());
    }
    let images = work.join("images");
    for e in fs::read_dir(&images).map_err(io_err("reading", &images))? {
        let e = e.map_err(io_err("reading", &images))?;
        let name = format!("images/{}", e.file_name().to_string_lossy());
        let ft = e.file_type().map_err(io_err("reading", &e.path()))?;
        if !ft.is_file() || !valid_name(&name) {
            return Err(damaged(&e.path(), "not a plain file CRIU writes"));
        }
        names.push(name);
    }
    names.sort();
    let mut sealed = Vec::with_capacity(names.len());
    let mut todo = Vec::new();
    for name in &names {
        let p = work.join(name);
        let md = fs::metadata(&p).map_err(io_err("reading", &p))?;
        match followed.get(name) {
            Some((ino, len, hash)) if *ino == md.ino() && *len == md.len() => sealed.push(Some(SealedFile {
                name: name.clone(),
                size: *len,
                blake3: hash.to_hex().to_string(),
            })),
            _ => {
                todo.push((sealed.len(), p));
                sealed.push(None);
            }
        }
    }
    let paths: Vec<PathBuf> = todo.iter().map(|(_, p)| p.clone()).collect();
    let cancel = AtomicBool::new(false);
    for ((i, p), r) in todo.iter().zip(hash_all(&paths, &cancel, cores())) {
        let (size, hash) = r.map_err(io_err("hashing", p))?;
        sealed[*i] = Some(SealedFile {
            name: names[*i].clone(),
            size,
            blake3: hash.to_hex().to_string(),
        });
    }
    manifest.format = FORMAT;
    manifest.files = sealed.into_iter().map(|s| s.expect("hashed")).collect();
    manifest.payload_bytes = manifest.files.iter().map(|f| f.size).sum();
    // The host's root alone reads it (the container's memory and files): the directories are
    // 0700, and fs.tar 0600. The images keep CRIU's modes: a restore into a user namespace
    // opens them as the container's root, through the images directory's descriptor.
    // Durable before it is named a checkpoint: the files, the manifest, the directories.
    use std::os::unix::fs::PermissionsExt;
    for name in &names {
        let p = work.join(name);
        File::open(&p)
            .and_then(|f| {
                if !name.starts_with("images/") {
                    f.set_permissions(fs::Permissions::from_mode(0o600))?;
                }
                f.sync_all()
            })
            .map_err(io_err("syncing", &p))?;
    }
    fs::set_permissions(&images, fs::Permissions::from_mode(0o700)).map_err(io_err("securing", &images))?;
    write_manifest(work, manifest)?;
    for d in [&images, work] {
        File::open(d).and_then(|f| f.sync_all()).map_err(io_err("syncing", d))?;
    }
    Ok(manifest.payload_bytes)
}

/// Writes `dir/manifest`: the frame of a version 1 archive's head (magic, version, length,
/// JSON) and the BLAKE3 of those bytes.
fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), ArchiveError> {
    let path = dir.join(MANIFEST);
    let json = serde_json::to_vec(manifest).map_err(|e| damaged(&path, e.to_string()))?;
    if json.len() > MAX_MANIFEST as usize {
        return Err(damaged(&path, "the manifest is larger than the limit"));
    }
    let mut bytes = Vec::with_capacity(json.len() + 48);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT.to_be_bytes());
    bytes.extend_from_slice(&(json.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&json);
    let hash = blake3::hash(&bytes);
    bytes.extend_from_slice(hash.as_bytes());
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("creating", &path))?
    };
    f.write_all(&bytes).map_err(io_err("writing", &path))?;
    f.sync_all().map_err(io_err("syncing", &path))
}

/// Parses a sealed manifest at the start of `bytes` (magic, version, length, JSON, BLAKE3):
/// its frame, hash and every name it lists (`fs.tar` among them, none twice, each hash well
/// formed). Returns it with the bytes it took.
fn parse_sealed(path: &Path, bytes: &[u8]) -> Result<(Manifest, usize), ArchiveError> {
    if bytes.len() < 8 || &bytes[..8] != MAGIC {
        return Err(ArchiveError::Foreign(path.to_path_buf()));
    }
    if bytes.len() < 16 + 32 {
        return Err(damaged(path, "shorter than a header"));
    }
    let version = super::archive::claimed_version(path, bytes)?;
    let len = u32::from_be_bytes(bytes[12..16].try_into().unwrap()) as usize;
    if version != FORMAT || len > MAX_MANIFEST as usize || bytes.len() < 16 + len + 32 {
        return Err(damaged(path, "shorter than its manifest says"));
    }
    if blake3::hash(&bytes[..16 + len]).as_bytes() != &bytes[16 + len..16 + len + 32] {
        return Err(damaged(path, "checksum mismatch"));
    }
    let m: Manifest =
        serde_json::from_slice(&bytes[16..16 + len]).map_err(|e| damaged(path, format!("manifest: {e}")))?;
    if m.format != FORMAT || m.files.len() > MAX_FILES {
        return Err(damaged(path, "not a format 2 manifest"));
    }
    let mut listed = BTreeSet::new();
    for f in &m.files {
        if !valid_name(&f.name) || !listed.insert(f.name.as_str()) {
            return Err(damaged(path, format!("lists {:?}", f.name)));
        }
        if f.blake3.len() != 64 || blake3::Hash::from_hex(&f.blake3).is_err() {
            return Err(damaged(path, format!("the hash of {}", f.name)));
        }
    }
    if !listed.contains("fs.tar") {
        return Err(damaged(path, "lists no fs.tar"));
    }
    Ok((m, 16 + len + 32))
}

/// Reads and checks a checkpoint directory's manifest: its frame and hash, every name it
/// lists, and that each listed file is there, a plain file of the listed size, with nothing
/// else beside them. The files' contents are checked by [`verify`] and [`PageCheck`].
pub fn read_manifest(dir: &Path) -> Result<Manifest, ArchiveError> {
    let path = dir.join(MANIFEST);
    let md = fs::symlink_metadata(&path).map_err(io_err("opening", &path))?;
    if !md.is_file() || md.len() > MAX_MANIFEST as u64 + 48 {
        return Err(damaged(&path, "not a checkpoint manifest"));
    }
    let bytes = fs::read(&path).map_err(io_err("reading", &path))?;
    let (m, used) = parse_sealed(&path, &bytes)?;
    if used != bytes.len() {
        return Err(damaged(&path, "sizes do not fit"));
    }
    for f in &m.files {
        let p = dir.join(&f.name);
        match fs::symlink_metadata(&p) {
            Ok(md) if md.is_file() && md.len() == f.size => {}
            Ok(md) if md.is_file() => {
                return Err(damaged(
                    &p,
                    format!("{} bytes where the manifest says {}", md.len(), f.size),
                ))
            }
            Ok(_) => return Err(damaged(&p, "not a plain file")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(damaged(&p, "missing")),
            Err(e) => return Err(io_err("reading", &p)(e)),
        }
    }
    let listed: BTreeSet<&str> = m.files.iter().map(|f| f.name.as_str()).collect();
    let images = dir.join("images");
    for e in fs::read_dir(&images).map_err(io_err("reading", &images))? {
        let e = e.map_err(io_err("reading", &images))?;
        let name = format!("images/{}", e.file_name().to_string_lossy());
        if !listed.contains(name.as_str()) {
            return Err(damaged(&e.path(), "not in the manifest"));
        }
    }
    Ok(m)
}

/// A format 2 checkpoint as one file (`--dumpfile`): the directory's sealed manifest, then
/// every file it lists, in its order, as they are (nothing compressed):
///
/// ```text
/// manifest (as in the directory: magic, version 2, length, JSON, BLAKE3) | file 1 | file 2 | ...
/// ```
/// Every byte is covered by a hash: the manifest's own, or the listed file's.
pub fn write_bundle(dir: &Path, dest: &Path) -> Result<u64, ArchiveError> {
    let m = read_manifest(dir)?;
    let tmp = dest.with_extension("ckpt.tmp");
    let r = (|| {
        let mut out = {
            use std::os::unix::fs::OpenOptionsExt;
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io_err("creating", &tmp))?
        };
        let head = fs::read(dir.join(MANIFEST)).map_err(io_err("reading", dir))?;
        out.write_all(&head).map_err(io_err("writing", &tmp))?;
        for f in &m.files {
            let p = dir.join(&f.name);
            let mut src = File::open(&p).map_err(io_err("reading", &p))?;
            // A kernel copy (copy_file_range) where the file systems allow.
            let n = io::copy(&mut src, &mut out).map_err(io_err("writing", &tmp))?;
            if n != f.size {
                return Err(damaged(&p, "changed while it was bundled"));
            }
        }
        out.sync_all().map_err(io_err("syncing", &tmp))?;
        fs::rename(&tmp, dest).map_err(io_err("renaming into place", dest))?;
        Ok(head.len() as u64 + size(&m))
    })();
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

/// The version a checkpoint file claims (bytes 8..12), if it has the magic.
pub fn file_version(path: &Path) -> Option<u32> {
    let mut head = [0u8; 12];
    File::open(path).ok()?.read_exact(&mut head).ok()?;
    (&head[..8] == MAGIC).then(|| u32::from_be_bytes(head[8..12].try_into().unwrap()))
}

/// The manifest of a bundle (`write_bundle`), its frame, hash, names and total size checked;
/// returns it with the manifest's length in bytes (where the first file starts).
pub fn read_bundle_manifest(path: &Path) -> Result<(Manifest, u64), ArchiveError> {
    let mut f = File::open(path).map_err(io_err("opening", path))?;
    let size = f.metadata().map_err(io_err("reading", path))?.len();
    // The head says how long the manifest is: read that much (bounded), then parse it all.
    let mut bytes = vec![0u8; size.min(16) as usize];
    f.read_exact(&mut bytes).map_err(io_err("reading", path))?;
    if bytes.len() == 16 && &bytes[..8] == MAGIC {
        let len = u32::from_be_bytes(bytes[12..16].try_into().unwrap()).min(MAX_MANIFEST) as u64;
        let want = (16 + len + 32).min(size) as usize;
        bytes.resize(want, 0);
        f.read_exact(&mut bytes[16..]).map_err(io_err("reading", path))?;
    }
    let (m, used) = parse_sealed(path, &bytes)?;
    let want = m
        .files
        .iter()
        .try_fold(used as u64, |acc, f| acc.checked_add(f.size))
        .ok_or_else(|| damaged(path, "sizes do not fit"))?;
    if want != size {
        return Err(damaged(
            path,
            format!("{size} bytes where its manifest says {want}: truncated or damaged"),
        ));
    }
    Ok((m, used as u64))
}

/// Unpacks a bundle into `into` (made here), a checkpoint directory then: its manifest and
/// files as written. Nothing is hashed here but the manifest: the directory is checked as any
/// other before it is used (`read_manifest`, `verify`, `PageCheck`).
pub fn unbundle(path: &Path, into: &Path) -> Result<Manifest, ArchiveError> {
    let (m, start) = read_bundle_manifest(path)?;
    fs::create_dir_all(into.join("images")).map_err(io_err("creating", into))?;
    let mut src = File::open(path).map_err(io_err("opening", path))?;
    let mut head = vec![0u8; start as usize];
    src.read_exact(&mut head).map_err(io_err("reading", path))?;
    fs::write(into.join(MANIFEST), &head).map_err(io_err("writing", into))?;
    for f in &m.files {
        let p = into.join(&f.name);
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)
            .map_err(io_err("creating", &p))?;
        let n = io::copy(&mut (&mut src).take(f.size), &mut out).map_err(io_err("writing", &p))?;
        if n != f.size {
            return Err(damaged(path, "truncated"));
        }
    }
    Ok(m)
}

/// Checks the hashes of the listed files `which` selects (on every core).
pub fn verify(dir: &Path, m: &Manifest, which: impl Fn(&str) -> bool) -> Result<(), ArchiveError> {
    verify_cancellable(dir, m, which, &AtomicBool::new(false), cores())
}

fn verify_cancellable(
    dir: &Path,
    m: &Manifest,
    which: impl Fn(&str) -> bool,
    cancel: &AtomicBool,
    workers: usize,
) -> Result<(), ArchiveError> {
    let files: Vec<&SealedFile> = m.files.iter().filter(|f| which(&f.name)).collect();
    let paths: Vec<PathBuf> = files.iter().map(|f| dir.join(&f.name)).collect();
    for ((f, p), r) in files.iter().zip(&paths).zip(hash_all(&paths, cancel, workers)) {
        let (size, hash) = r.map_err(io_err("reading", p))?;
        if size != f.size || hash.to_hex().as_str() != f.blake3 {
            return Err(damaged(p, "checksum mismatch"));
        }
    }
    Ok(())
}

/// The total size of the files a manifest lists.
pub fn size(m: &Manifest) -> u64 {
    m.files.iter().map(|f| f.size).sum()
}

/// Makes `into` (a restore's private images directory) hold the checkpoint's images for
/// CRIU: the pages images as hard links (no copy; CRIU only reads them), the others copied
/// (small; a restore may rewrite some, and CRIU writes its log beside them). `into` must be
/// on the checkpoint's file system.
pub fn link_images(dir: &Path, m: &Manifest, into: &Path) -> Result<(), ArchiveError> {
    fs::create_dir_all(into).map_err(io_err("creating", into))?;
    for f in m.files.iter().filter(|f| f.name.starts_with("images/")) {
        let from = dir.join(&f.name);
        let to = into.join(&f.name["images/".len()..]);
        if is_pages(&f.name) {
            fs::hard_link(&from, &to).map_err(io_err("linking", &to))?;
        } else {
            fs::copy(&from, &to).map_err(io_err("copying", &to))?;
        }
    }
    Ok(())
}

/// The pages images' hashes, checked in the background while CRIU reads them: a restore
/// waits for [`PageCheck::wait`] before the restored processes may run, and kills them if it
/// fails. One thread: CRIU restores the processes on the other cores meanwhile (on two
/// cores, a second hashing thread made the restore slower, not the check sooner).
pub struct PageCheck {
    cancel: Arc<AtomicBool>,
    outcome: Option<Outcome>,
}

enum Outcome {
    Pending(JoinHandle<Result<(), ArchiveError>>),
    Done(Result<(), ArchiveError>),
}

impl PageCheck {
    pub fn start(dir: &Path, m: &Manifest) -> PageCheck {
        let cancel = Arc::new(AtomicBool::new(false));
        let (c, d, mm) = (cancel.clone(), dir.to_path_buf(), m.clone());
        let outcome = match std::thread::Builder::new()
            .name("ckpt-verify".into())
            .spawn(move || verify_cancellable(&d, &mm, is_pages, &c, 1))
        {
            Ok(h) => Outcome::Pending(h),
            // No thread to spare: checked now, before CRIU reads anything.
            Err(_) => Outcome::Done(verify(dir, m, is_pages)),
        };
        PageCheck {
            cancel,
            outcome: Some(outcome),
        }
    }

    /// The outcome: Ok only if every pages image matched its hash.
    pub fn wait(mut self) -> Result<(), ArchiveError> {
        match self.outcome.take() {
            Some(Outcome::Done(r)) => r,
            Some(Outcome::Pending(h)) => h.join().unwrap_or_else(|_| {
                Err(ArchiveError::Tool {
                    what: "checking the pages images".into(),
                    stderr: "the checking thread panicked".into(),
                })
            }),
            None => unreachable!("waited for once"),
        }
    }
}

impl Drop for PageCheck {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        if let Some(Outcome::Pending(h)) = self.outcome.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::archive::FsSnapshot;

    fn manifest() -> Manifest {
        Manifest {
            format: 1,
            id: "20261204-120000".into(),
            ctid: 101,
            created: 1_796_000_000,
            config: "HOSTNAME=\"x\"\n".into(),
            criu_version: "4.2.1".into(),
            kernel: "6.18".into(),
            cpuinfo: false,
            keep_running: true,
            frozen_ms: 12,
            console: None,
            fs: FsSnapshot {
                level: 0,
                parent: None,
                stamp: None,
            },
            payload_bytes: 0,
            live_limits: Default::default(),
            files: Vec::new(),
        }
    }

    /// A dump in `work`: a pages image written in pieces while the follower runs (the first
    /// try's file replaced by a second, as a retried dump does), a small image, fs.tar.
    fn dump(work: &Path) -> Manifest {
        let images = work.join("images");
        fs::create_dir_all(&images).unwrap();
        let follower = Follower::start(&images);
        fs::write(images.join("pages-1.img"), vec![1u8; 3 << 20]).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        fs::remove_file(images.join("pages-1.img")).unwrap();
        let mut f = File::create(images.join("pages-1.img")).unwrap();
        for i in 0..40u8 {
            f.write_all(&vec![i; 1 << 18]).unwrap();
            if i % 8 == 0 {
                std::thread::sleep(Duration::from_millis(3));
            }
        }
        drop(f);
        fs::write(images.join("pages-2.img"), vec![9u8; 4096]).unwrap();
        fs::write(images.join("core-1.img"), b"core").unwrap();
        fs::write(work.join("fs.tar"), b"not really a tar").unwrap();
        let mut m = manifest();
        let size = seal(work, &mut m, Some(follower)).unwrap();
        assert_eq!(size, 40 * (1 << 18) + 4096 + 4 + 16);
        m
    }

    #[test]
    fn a_sealed_directory_reads_back_and_its_hashes_match_what_was_written() {
        let d = tempfile::tempdir().unwrap();
        let m = dump(d.path());
        assert_eq!(m.format, FORMAT);
        assert_eq!(read_manifest(d.path()).unwrap(), m);
        let names: Vec<&str> = m.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "fs.tar",
                "images/core-1.img",
                "images/pages-1.img",
                "images/pages-2.img"
            ]
        );
        let pages = m.files.iter().find(|f| f.name == "images/pages-1.img").unwrap();
        let whole = fs::read(d.path().join("images/pages-1.img")).unwrap();
        assert_eq!(pages.blake3, blake3::hash(&whole).to_hex().as_str());
        verify(d.path(), &m, |_| true).unwrap();
        PageCheck::start(d.path(), &m).wait().unwrap();
        let into = d.path().join("restore/images");
        link_images(d.path(), &m, &into).unwrap();
        let ino = |p: &Path| fs::metadata(p).unwrap().ino();
        assert_eq!(
            ino(&into.join("pages-1.img")),
            ino(&d.path().join("images/pages-1.img"))
        );
        assert_ne!(ino(&into.join("core-1.img")), ino(&d.path().join("images/core-1.img")));
    }

    #[test]
    fn damage_anywhere_is_found() {
        let d = tempfile::tempdir().unwrap();
        let m = dump(d.path());
        let flip = |name: &str, at: u64| {
            use std::os::unix::fs::FileExt;
            let f = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(d.path().join(name))
                .unwrap();
            let mut b = [0u8; 1];
            f.read_exact_at(&mut b, at).unwrap();
            b[0] ^= 1;
            f.write_all_at(&b, at).unwrap();
        };
        // A flipped byte in a page: only the pages check finds it.
        flip("images/pages-1.img", 5 << 20);
        verify(d.path(), &m, |n| !is_pages(n)).unwrap();
        match PageCheck::start(d.path(), &m).wait() {
            Err(ArchiveError::Damaged { why, path }) => {
                assert!(why.contains("checksum") && path.ends_with("pages-1.img"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        flip("images/pages-1.img", 5 << 20);
        flip("images/core-1.img", 0);
        assert!(matches!(
            verify(d.path(), &m, |n| !is_pages(n)),
            Err(ArchiveError::Damaged { .. })
        ));
        flip("images/core-1.img", 0);
        verify(d.path(), &m, |_| true).unwrap();
        // The manifest, a file's size, a file too many, a file missing.
        let mf = d.path().join(MANIFEST);
        let good = fs::read(&mf).unwrap();
        let mut bad = good.clone();
        bad[30] ^= 1;
        fs::write(&mf, &bad).unwrap();
        match read_manifest(d.path()) {
            Err(ArchiveError::Damaged { why, .. }) => assert!(why.contains("checksum"), "{why}"),
            other => panic!("{other:?}"),
        }
        let mut newer = good.clone();
        newer[8..12].copy_from_slice(&7u32.to_be_bytes());
        fs::write(&mf, &newer).unwrap();
        assert!(matches!(
            read_manifest(d.path()),
            Err(ArchiveError::TooNew { found: 7, .. })
        ));
        fs::write(&mf, &good).unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(d.path().join("fs.tar"))
            .unwrap()
            .write_all(b"x")
            .unwrap();
        assert!(matches!(read_manifest(d.path()), Err(ArchiveError::Damaged { .. })));
        fs::write(d.path().join("fs.tar"), b"not really a tar").unwrap();
        fs::write(d.path().join("images/extra.img"), b"").unwrap();
        assert!(matches!(read_manifest(d.path()), Err(ArchiveError::Damaged { .. })));
        fs::remove_file(d.path().join("images/extra.img")).unwrap();
        fs::remove_file(d.path().join("images/pages-2.img")).unwrap();
        match read_manifest(d.path()) {
            Err(ArchiveError::Damaged { why, .. }) => assert_eq!(why, "missing"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_follower_hashes_a_file_as_it_grows_and_starts_over_on_a_new_inode() {
        let d = tempfile::tempdir().unwrap();
        let follower = Follower::start(d.path());
        let p = d.path().join("pages-3.img");
        fs::write(&p, vec![5u8; 1 << 20]).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        fs::remove_file(&p).unwrap();
        let mut f = File::create(&p).unwrap();
        for i in 0..16u8 {
            f.write_all(&vec![i; 1 << 16]).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        drop(f);
        fs::write(d.path().join("core-3.img"), b"not followed").unwrap();
        let seen = follower.finish();
        let whole = fs::read(&p).unwrap();
        let (ino, len, hash) = seen["images/pages-3.img"];
        assert_eq!(
            (ino, len, hash),
            (fs::metadata(&p).unwrap().ino(), 16 << 16, blake3::hash(&whole))
        );
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn a_bundle_unpacks_to_the_same_directory_and_damage_is_found() {
        let d = tempfile::tempdir().unwrap();
        let m = dump(&d.path().join("dir"));
        let file = d.path().join("x.ckpt");
        let size = write_bundle(&d.path().join("dir"), &file).unwrap();
        assert_eq!(size, fs::metadata(&file).unwrap().len());
        assert_eq!(file_version(&file), Some(FORMAT));
        assert_eq!(read_bundle_manifest(&file).unwrap().0, m);
        let out = d.path().join("out");
        assert_eq!(unbundle(&file, &out).unwrap(), m);
        assert_eq!(read_manifest(&out).unwrap(), m);
        verify(&out, &m, |_| true).unwrap();
        PageCheck::start(&out, &m).wait().unwrap();
        let bytes = fs::read(&file).unwrap();
        // Truncated, or a byte more: the sizes do not fit. A flipped manifest byte: its hash.
        // A flipped file byte: that file's hash, once unpacked.
        for (name, b) in [
            ("cut", bytes[..bytes.len() - 1].to_vec()),
            ("long", [bytes.clone(), vec![0]].concat()),
            ("manifest", {
                let mut b = bytes.clone();
                b[40] ^= 1;
                b
            }),
        ] {
            let f = d.path().join(name);
            fs::write(&f, &b).unwrap();
            assert!(
                matches!(read_bundle_manifest(&f), Err(ArchiveError::Damaged { .. })),
                "{name}"
            );
            assert!(unbundle(&f, &d.path().join(format!("{name}.d"))).is_err(), "{name}");
        }
        let mut b = bytes.clone();
        let last = b.len() - 10;
        b[last] ^= 1;
        let f = d.path().join("flipped");
        fs::write(&f, &b).unwrap();
        let out = d.path().join("flipped.d");
        let m2 = unbundle(&f, &out).unwrap();
        assert!(verify(&out, &m2, |n| !is_pages(n)).is_err() || PageCheck::start(&out, &m2).wait().is_err());
        fs::write(&f, b"FERRYCKP\0\0\0\x07").unwrap();
        assert!(read_bundle_manifest(&f).is_err());
    }

    #[test]
    fn names_outside_the_directory_are_refused() {
        for bad in [
            "../x",
            "images/../../x",
            "images/",
            "images/a/b",
            "x.tar",
            "/etc/passwd",
            "images/..",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_name("images/pages-1.img") && valid_name("fs.tar"));
        assert!(is_pages("images/pages-12.img"));
        assert!(!is_pages("images/pagemap-12.img") && !is_pages("images/pages-.img") && !is_pages("pages-1.img"));
    }
}
