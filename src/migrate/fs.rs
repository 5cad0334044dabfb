//! The private area's tree on the wire: scanning it on the source (never following symlinks,
//! never crossing mounts), noticing what changed between passes, and applying entries on the
//! destination confined to the container's area.

use std::collections::{BTreeMap, HashMap};
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use migrate_proto::msg::{FileKind, FsData, FsDelta, FsEntry};
use migrate_proto::path::RelPath;

/// What a pass remembers of a file to notice changes in the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    pub ino: u64,
}

pub type Snapshot = BTreeMap<String, Stamp>;

/// Files from this size up travel as rsync deltas when they change after a pass sent them.
pub const DELTA_MIN_FILE: u64 = 64 << 10;
/// Files above this size are always sent whole (fast_rsync works on whole buffers in memory).
pub const DELTA_MAX_FILE: u64 = 256 << 20;
const DELTA_BLOCK: u32 = 4096;

/// The signature of what the destination now holds of a file, kept by the source for the
/// next pass (the destination never has to send it: it holds exactly what was sent).
pub fn signature(data: &[u8]) -> fast_rsync::Signature {
    fast_rsync::Signature::calculate(
        data,
        fast_rsync::SignatureOptions {
            block_size: DELTA_BLOCK,
            crypto_hash_size: 16,
        },
    )
}

/// A delta turning the content `sig` describes into `data`, if it is worth sending: at most
/// `max` bytes and under half of `data`.
pub fn delta(sig: &fast_rsync::Signature, data: &[u8], max: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    fast_rsync::diff(&sig.index(), data, &mut out).ok()?;
    (out.len() <= max && out.len() < data.len() / 2).then_some(out)
}

fn kind_of(md: &fs::Metadata) -> FileKind {
    use std::os::unix::fs::FileTypeExt;
    let t = md.file_type();
    if t.is_dir() {
        FileKind::Dir
    } else if t.is_symlink() {
        FileKind::Symlink
    } else if t.is_char_device() {
        FileKind::CharDev
    } else if t.is_block_device() {
        FileKind::BlockDev
    } else if t.is_fifo() {
        FileKind::Fifo
    } else if t.is_socket() {
        FileKind::Socket
    } else {
        FileKind::Regular
    }
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
}

fn xattrs(p: &Path) -> Vec<(String, Vec<u8>)> {
    let c = cpath(p);
    // Most files have none: ask for the size of the list first (a 64 KiB buffer for each file
    // cost more than the rest of reading its metadata).
    // SAFETY: llistxattr with no buffer only returns the size.
    let size = unsafe { libc::llistxattr(c.as_ptr(), std::ptr::null_mut(), 0) };
    if size <= 0 {
        return vec![];
    }
    let mut names = vec![0u8; 65536];
    // SAFETY: llistxattr into our buffer.
    let n = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr() as *mut libc::c_char, names.len()) };
    if n <= 0 {
        return vec![];
    }
    let mut out = Vec::new();
    for name in names[..n as usize].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let cn = CString::new(name).unwrap();
        let mut val = vec![0u8; 65536];
        // SAFETY: lgetxattr into our buffer.
        let m = unsafe {
            libc::lgetxattr(
                c.as_ptr(),
                cn.as_ptr(),
                val.as_mut_ptr() as *mut libc::c_void,
                val.len(),
            )
        };
        if m >= 0 {
            val.truncate(m as usize);
            out.push((String::from_utf8_lossy(name).into_owned(), val));
        }
    }
    out
}

/// Every path below `root` (relative, parents before children) with its metadata.
pub fn scan(root: &Path) -> io::Result<Vec<(String, fs::Metadata)>> {
    let dev = fs::symlink_metadata(root)?.dev();
    let mut out = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let mut names: Vec<_> = match fs::read_dir(&dir) {
            Ok(rd) => rd.flatten().map(|e| e.file_name()).collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        names.sort();
        for n in names.into_iter().rev() {
            let child = if rel.is_empty() {
                n.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", n.to_string_lossy())
            };
            let Ok(md) = fs::symlink_metadata(root.join(&child)) else {
                continue;
            };
            if md.is_dir() && md.dev() == dev {
                stack.push(child.clone());
            }
            out.push((child, md));
        }
    }
    // Parents before children.
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

pub fn stamp(md: &fs::Metadata) -> Stamp {
    Stamp {
        size: md.len(),
        mtime: (md.mtime(), md.mtime_nsec()),
        ctime: (md.ctime(), md.ctime_nsec()),
        ino: md.ino(),
    }
}

/// The wire entry of one file.
pub fn entry(root: &Path, rel: &str, md: &fs::Metadata) -> io::Result<FsEntry> {
    let kind = kind_of(md);
    let path = RelPath::new(rel).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{rel}: {e}")))?;
    let link_target = if kind == FileKind::Symlink {
        Some(fs::read_link(root.join(rel))?.to_string_lossy().into_owned())
    } else {
        None
    };
    let rdev = md.rdev();
    Ok(FsEntry {
        path,
        kind,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime_sec: md.mtime(),
        mtime_nsec: md.mtime_nsec() as u32,
        size: if kind == FileKind::Regular { md.len() } else { 0 },
        link_target,
        rdev_major: libc::major(rdev),
        rdev_minor: libc::minor(rdev),
        hardlink_group: (kind == FileKind::Regular && md.nlink() > 1).then_some(md.ino()),
        xattrs: xattrs(&root.join(rel)),
        sparse: md.blocks() * 512 < md.len(),
    })
}

/// What changed between two passes: paths new or modified, and paths gone.
pub fn changes(prev: &Snapshot, cur: &Snapshot) -> (Vec<String>, Vec<String>) {
    let changed = cur
        .iter()
        .filter(|(p, s)| prev.get(*p) != Some(s))
        .map(|(p, _)| p.clone())
        .collect();
    let gone = prev.keys().filter(|p| !cur.contains_key(*p)).cloned().collect();
    (changed, gone)
}

/// Reads a chunk of a file's data.
pub fn read_chunk(root: &Path, rel: &str, offset: u64, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    read_chunk_into(root, rel, offset, max, &mut buf)?;
    Ok(buf)
}

/// Reads a chunk of a file's data into `buf` (emptied first; a buffer used again keeps its
/// memory, which here costs less than fresh pages for every file).
pub fn read_chunk_into(root: &Path, rel: &str, offset: u64, max: usize, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    let mut f = open_beneath(root, rel)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(offset))?;
    // Room for what the file holds now (plus a little, should it grow), not for `max`.
    buf.reserve((len.saturating_sub(offset) as usize).saturating_add(4096).min(max));
    f.take(max as u64).read_to_end(buf)?;
    Ok(())
}

/// Opens the regular file `rel` below `root` for reading without following any symlink on
/// the way (openat2 with RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS): the container may swap a
/// file for a symlink to a host file between the scan and the read, and the source must never
/// send a host file to the destination.
pub fn open_beneath(root: &Path, rel: &str) -> io::Result<File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let dir = File::open(root)?;
    let c = CString::new(rel).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))?;
    // The kernel's struct open_how: flags, mode, resolve (three u64s).
    let how: [u64; 3] = [
        (libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY | libc::O_NONBLOCK) as u64,
        0,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    ];
    // SAFETY: openat2 with a valid directory descriptor, a NUL-terminated path and an open_how
    // of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            how.as_ptr(),
            std::mem::size_of_val(&how),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor openat2 just returned, owned by nobody else.
    let f = unsafe { File::from_raw_fd(fd as i32) };
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{rel} is not a regular file"),
        ));
    }
    Ok(f)
}

/// Applies entries below a root on the destination.
pub struct Applier {
    root: PathBuf,
    groups: HashMap<u64, PathBuf>,
    pending: Vec<FsEntry>,
    zstd: Option<zstd::bulk::Decompressor<'static>>,
    /// Directories below the root already found to be real directories. Only this applier
    /// changes the tree, and it forgets them all whenever it removes anything (the only way a
    /// directory can turn into something else).
    dirs: std::collections::HashSet<PathBuf>,
}

pub use crate::fsutil::confined;

fn remove_any(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(md) if md.is_dir() && !md.file_type().is_symlink() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

impl Applier {
    /// `confined`, skipping the directories already checked.
    fn confine(&mut self, rel: &RelPath) -> io::Result<PathBuf> {
        let parent = match rel.as_str().rsplit_once('/') {
            Some((dir, _)) => self.root.join(dir),
            None => return confined(&self.root, rel),
        };
        if self.dirs.contains(&parent) {
            return Ok(self.root.join(rel.as_str()));
        }
        let p = confined(&self.root, rel)?;
        if fs::symlink_metadata(&parent).is_ok_and(|m| m.is_dir()) {
            self.dirs.insert(parent);
        }
        Ok(p)
    }

    /// A chunk of this migration as it was before the wire (file data or an image): itself,
    /// or decompressed into a buffer of the size its frame declares, refusing one that declares
    /// more than a chunk holds (or turns out larger than it declared). One decompression
    /// context serves every chunk.
    pub fn unpack<'d>(&mut self, compressed: bool, data: &'d [u8]) -> io::Result<std::borrow::Cow<'d, [u8]>> {
        let max = migrate_proto::limits::MAX_CHUNK;
        if !compressed {
            return Ok(std::borrow::Cow::Borrowed(data));
        }
        let size = zstd::zstd_safe::get_frame_content_size(data)
            .ok()
            .flatten()
            .map_or(max as u64, |n| n);
        if size > max as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a chunk that would decompress to {size} bytes, over {max}"),
            ));
        }
        let Some(d) = self.zstd.as_mut() else {
            return zstd::bulk::decompress(data, max).map(std::borrow::Cow::Owned);
        };
        let mut out = Vec::with_capacity(size as usize);
        d.decompress_to_buffer(data, &mut out)?;
        Ok(std::borrow::Cow::Owned(out))
    }

    fn remove(&mut self, p: &Path) -> io::Result<()> {
        self.dirs.clear();
        remove_any(p)
    }

    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            groups: HashMap::new(),
            pending: Vec::new(),
            zstd: zstd::bulk::Decompressor::new().ok(),
            dirs: std::collections::HashSet::new(),
        }
    }

    pub fn entry(&mut self, e: &FsEntry) -> io::Result<()> {
        let p = self.confine(&e.path)?;
        let existing = fs::symlink_metadata(&p).ok();
        let same_kind = existing.as_ref().is_some_and(|md| kind_of(md) == e.kind);
        if (!same_kind || e.kind == FileKind::Symlink || e.hardlink_group.is_some())
            && existing.is_some()
            && !(same_kind && e.kind == FileKind::Dir)
        {
            self.remove(&p)?;
        }
        let c = cpath(&p);
        match e.kind {
            FileKind::Dir => {
                if !p.is_dir() {
                    fs::create_dir(&p)?;
                }
            }
            FileKind::Regular => {
                if let Some(first) = e.hardlink_group.and_then(|g| self.groups.get(&g)).cloned() {
                    fs::hard_link(&first, &p)?;
                    return Ok(());
                }
                // A file already here keeps its bytes (a delta may just have rebuilt it; data
                // chunks overwrite all of it otherwise), cut or extended to the new size.
                let f = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(!same_kind)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&p)?;
                f.set_len(e.size)?;
                if let Some(g) = e.hardlink_group {
                    self.groups.insert(g, p.clone());
                }
            }
            FileKind::Symlink => {
                std::os::unix::fs::symlink(e.link_target.as_deref().unwrap_or(""), &p)?;
            }
            FileKind::CharDev | FileKind::BlockDev | FileKind::Fifo => {
                let t = match e.kind {
                    FileKind::CharDev => libc::S_IFCHR,
                    FileKind::BlockDev => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                // SAFETY: mknod on a confined path.
                if unsafe {
                    libc::mknod(
                        c.as_ptr(),
                        t | (e.mode & 0o7777),
                        libc::makedev(e.rdev_major, e.rdev_minor),
                    )
                } != 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            FileKind::Socket => return Ok(()),
        }
        self.pending.push(e.clone());
        Ok(())
    }

    pub fn data(&mut self, d: &FsData) -> io::Result<()> {
        let p = self.confine(&d.path)?;
        let bytes = self.unpack(d.compressed, &d.data)?;
        let f = OpenOptions::new().write(true).custom_flags(libc::O_NOFOLLOW).open(&p)?;
        f.write_all_at(&bytes, d.offset)?;
        Ok(())
    }

    /// Rebuilds a regular file from its present content and a delta; the result must have the
    /// size and BLAKE3 hash the source announced, or nothing is written.
    pub fn delta(&mut self, d: &FsDelta) -> io::Result<()> {
        let bad = |why: String| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {why}", d.path.as_str()));
        if d.result_size > DELTA_MAX_FILE {
            return Err(bad(format!(
                "a delta result of {} bytes is over the limit",
                d.result_size
            )));
        }
        let p = self.confine(&d.path)?;
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&p)?;
        let md = f.metadata()?;
        if !md.is_file() || md.len() > DELTA_MAX_FILE {
            return Err(bad("a delta for what is not a regular file of a delta's size".into()));
        }
        let mut base = Vec::with_capacity(md.len() as usize);
        f.read_to_end(&mut base)?;
        let mut out = Vec::with_capacity(d.result_size as usize);
        fast_rsync::apply_limited(&base, &d.delta, &mut out, d.result_size as usize)
            .map_err(|e| bad(format!("the delta does not apply: {e}")))?;
        if out.len() as u64 != d.result_size || *blake3::hash(&out).as_bytes() != d.result_hash {
            return Err(bad("the rebuilt file is not what the source has".into()));
        }
        f.write_all_at(&out, 0)?;
        f.set_len(d.result_size)?;
        Ok(())
    }

    pub fn delete(&mut self, rel: &RelPath) -> io::Result<()> {
        let p = self.confine(rel)?;
        self.remove(&p)
    }

    /// Owners, modes, xattrs and times, once the data is in (directories last, deepest first,
    /// so adding their entries does not change their times again).
    pub fn finish(&mut self) -> io::Result<()> {
        // The next pass brings whole groups again: a changed hard-linked file is recreated by
        // its first member there, not linked to the copy it replaces.
        self.groups.clear();
        let mut pending = std::mem::take(&mut self.pending);
        pending.sort_by_key(|e| {
            (
                e.kind == FileKind::Dir,
                std::cmp::Reverse(e.path.as_str().matches('/').count()),
            )
        });
        for e in pending {
            let p = self.confine(&e.path)?;
            let c = cpath(&p);
            // SAFETY: metadata calls on a confined path; symlinks are not followed.
            unsafe {
                libc::lchown(c.as_ptr(), e.uid, e.gid);
                if e.kind != FileKind::Symlink {
                    libc::chmod(c.as_ptr(), e.mode);
                }
                for (k, v) in &e.xattrs {
                    if let Ok(kc) = CString::new(k.as_bytes()) {
                        libc::lsetxattr(c.as_ptr(), kc.as_ptr(), v.as_ptr() as *const libc::c_void, v.len(), 0);
                    }
                }
                let t = [
                    libc::timespec {
                        tv_sec: e.mtime_sec,
                        tv_nsec: e.mtime_nsec as i64,
                    },
                    libc::timespec {
                        tv_sec: e.mtime_sec,
                        tv_nsec: e.mtime_nsec as i64,
                    },
                ];
                libc::utimensat(libc::AT_FDCWD, c.as_ptr(), t.as_ptr(), libc::AT_SYMLINK_NOFOLLOW);
            }
        }
        Ok(())
    }
}

/// A checksum manifest of a tree (path, kind, mode, owner, size, mtime, link target, device,
/// xattrs, content hash): two trees with equal manifests are the same for a container. A file
/// that vanishes while the tree is read (a running container's) is left out.
pub fn manifest(root: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for (rel, md) in scan(root)? {
        let e = match entry(root, &rel, &md) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            r => r?,
        };
        let hash = if e.kind == FileKind::Regular {
            match fs::read(root.join(&rel)) {
                Ok(b) => blake3::hash(&b).to_hex().to_string(),
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(err) => return Err(err),
            }
        } else {
            String::new()
        };
        let mtime = if e.kind == FileKind::Dir || e.kind == FileKind::Symlink {
            0
        } else {
            e.mtime_sec
        };
        out.push(format!(
            "{} {:?} {:o} {}:{} {} {} {:?} {}:{} {:?} {} links:{}",
            e.path,
            e.kind,
            e.mode,
            e.uid,
            e.gid,
            e.size,
            mtime,
            e.link_target,
            e.rdev_major,
            e.rdev_minor,
            e.xattrs,
            hash,
            md.nlink()
        ));
    }
    Ok(out)
}

/// Writes whole data for `rel` (helper for tests and small files).
pub fn write_all(f: &mut File, data: &[u8]) -> io::Result<()> {
    f.write_all(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(root: &Path) {
        fs::create_dir_all(root.join("etc/sub")).unwrap();
        fs::write(root.join("etc/hostname"), "ct\n").unwrap();
        fs::write(root.join("etc/sub/big"), vec![7u8; 3 << 20]).unwrap();
        fs::hard_link(root.join("etc/hostname"), root.join("etc/hostname.link")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("etc/alias")).unwrap();
        let c = cpath(&root.join("etc/fifo"));
        // SAFETY: mkfifo in a temp dir.
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
        let c = cpath(&root.join("etc/hostname"));
        let (k, v) = (CString::new("user.ferry").unwrap(), b"x");
        // SAFETY: setxattr in a temp dir.
        unsafe { libc::setxattr(c.as_ptr(), k.as_ptr(), v.as_ptr() as *const libc::c_void, 1, 0) };
    }

    fn sync(src: &Path, dst: &Path, only: Option<&[String]>) {
        let mut a = Applier::new(dst);
        for (rel, md) in scan(src).unwrap() {
            if only.is_some_and(|o| !o.contains(&rel)) {
                continue;
            }
            let e = entry(src, &rel, &md).unwrap();
            a.entry(&e).unwrap();
            if e.kind == FileKind::Regular && e.hardlink_group.is_none_or(|_| true) {
                let mut off = 0;
                loop {
                    let chunk = read_chunk(src, &rel, off, 1 << 20).unwrap();
                    if chunk.is_empty() {
                        break;
                    }
                    let z = zstd::bulk::compress(&chunk, 1).unwrap();
                    a.data(&FsData {
                        path: e.path.clone(),
                        offset: off,
                        compressed: true,
                        data: z,
                    })
                    .unwrap();
                    off += chunk.len() as u64;
                }
            }
        }
        a.finish().unwrap();
    }

    #[test]
    fn a_tree_arrives_identical_and_changes_are_noticed() {
        let (s, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        sample(s.path());
        sync(s.path(), d.path(), None);
        assert_eq!(manifest(s.path()).unwrap(), manifest(d.path()).unwrap());
        let before: Snapshot = scan(s.path())
            .unwrap()
            .iter()
            .map(|(p, m)| (p.clone(), stamp(m)))
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(s.path().join("etc/sub/new"), "n").unwrap();
        fs::remove_file(s.path().join("etc/fifo")).unwrap();
        fs::write(s.path().join("etc/sub/big"), "small now").unwrap();
        let after: Snapshot = scan(s.path())
            .unwrap()
            .iter()
            .map(|(p, m)| (p.clone(), stamp(m)))
            .collect();
        let (changed, gone) = changes(&before, &after);
        assert!(
            changed.contains(&"etc/sub/new".to_string()) && changed.contains(&"etc/sub/big".to_string()),
            "{changed:?}"
        );
        assert_eq!(gone, vec!["etc/fifo".to_string()]);
        sync(s.path(), d.path(), Some(&changed));
        let mut a = Applier::new(d.path());
        for g in &gone {
            a.delete(&RelPath::new(g.as_str()).unwrap()).unwrap();
        }
        assert_eq!(manifest(s.path()).unwrap(), manifest(d.path()).unwrap());
    }

    #[test]
    fn writes_through_a_planted_symlink_are_refused() {
        let (d, outside) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut a = Applier::new(d.path());
        let link = FsEntry {
            path: RelPath::new("etc").unwrap(),
            kind: FileKind::Symlink,
            mode: 0o777,
            uid: 0,
            gid: 0,
            mtime_sec: 0,
            mtime_nsec: 0,
            size: 0,
            link_target: Some(outside.path().display().to_string()),
            rdev_major: 0,
            rdev_minor: 0,
            hardlink_group: None,
            xattrs: vec![],
            sparse: false,
        };
        a.entry(&link).unwrap();
        let evil = FsEntry {
            path: RelPath::new("etc/shadow").unwrap(),
            kind: FileKind::Regular,
            link_target: None,
            size: 5,
            ..link.clone()
        };
        assert_eq!(a.entry(&evil).unwrap_err().kind(), io::ErrorKind::PermissionDenied);
        let data = FsData {
            path: RelPath::new("etc/shadow").unwrap(),
            offset: 0,
            compressed: false,
            data: b"owned".to_vec(),
        };
        assert!(a.data(&data).is_err());
        assert!(a.delete(&RelPath::new("etc/x").unwrap()).is_err());
        assert_eq!(
            fs::read_dir(outside.path()).unwrap().count(),
            0,
            "something was written outside the area"
        );
    }

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (x >> 56) as u8
            })
            .collect()
    }

    /// One pass as the source sends it: the changed entries, data with the first member of
    /// each hard-link group, the pass's end.
    fn pass(src: &Path, a: &mut Applier, prev: &Snapshot) -> Snapshot {
        let list = scan(src).unwrap();
        let cur: Snapshot = list.iter().map(|(p, m)| (p.clone(), stamp(m))).collect();
        let (changed, gone) = changes(prev, &cur);
        let mut groups = std::collections::HashSet::new();
        let mut data = Vec::new();
        for (rel, md) in &list {
            if !changed.contains(rel) {
                continue;
            }
            let e = entry(src, rel, md).unwrap();
            a.entry(&e).unwrap();
            if e.kind == FileKind::Regular && e.hardlink_group.is_none_or(|g| groups.insert(g)) {
                data.push(e.path.clone());
            }
        }
        for p in data {
            let bytes = read_chunk(src, p.as_str(), 0, 1 << 20).unwrap();
            a.data(&FsData {
                path: p,
                offset: 0,
                compressed: false,
                data: bytes,
            })
            .unwrap();
        }
        for g in gone {
            a.delete(&RelPath::new(g).unwrap()).unwrap();
        }
        a.finish().unwrap();
        cur
    }

    #[test]
    fn hard_linked_files_that_change_between_passes_arrive() {
        let (s, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::write(s.path().join("gunzip"), "one\n").unwrap();
        fs::hard_link(s.path().join("gunzip"), s.path().join("uncompress")).unwrap();
        fs::write(s.path().join("perl"), "two\n").unwrap();
        fs::hard_link(s.path().join("perl"), s.path().join("perl5")).unwrap();
        let mut a = Applier::new(d.path());
        let snap = pass(s.path(), &mut a, &Snapshot::new());
        assert_eq!(manifest(s.path()).unwrap(), manifest(d.path()).unwrap());
        // Appended to through one name; one name of the other group removed; a third name.
        fs::OpenOptions::new()
            .append(true)
            .open(s.path().join("gunzip"))
            .unwrap()
            .write_all(b"more\n")
            .unwrap();
        fs::remove_file(s.path().join("perl5")).unwrap();
        fs::hard_link(s.path().join("gunzip"), s.path().join("zcat")).unwrap();
        let snap = pass(s.path(), &mut a, &snap);
        assert_eq!(manifest(s.path()).unwrap(), manifest(d.path()).unwrap());
        let ino = |p: &str| fs::metadata(d.path().join(p)).unwrap().ino();
        assert_eq!(ino("gunzip"), ino("zcat"));
        assert_eq!(ino("gunzip"), ino("uncompress"));
        // And once more, nothing changed: nothing to do.
        pass(s.path(), &mut a, &snap);
        assert_eq!(manifest(s.path()).unwrap(), manifest(d.path()).unwrap());
    }

    #[test]
    fn a_changed_file_is_rebuilt_from_a_delta_or_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let base = noise(300 << 10, 1);
        fs::write(d.path().join("db"), &base).unwrap();
        let mut new = base.clone();
        new[100_000..100_100].copy_from_slice(&noise(100, 2));
        new.extend_from_slice(b"appended");
        let sig = signature(&base);
        let delta_bytes = delta(&sig, &new, 1 << 20).expect("a small change makes a small delta");
        assert!(delta_bytes.len() < 20 << 10, "delta of {} bytes", delta_bytes.len());
        let msg = |hash: [u8; 32]| FsDelta {
            path: RelPath::new("db").unwrap(),
            delta: delta_bytes.clone(),
            result_size: new.len() as u64,
            result_hash: hash,
        };
        let mut a = Applier::new(d.path());
        // A result that is not what the source announced is refused and nothing is written.
        assert!(a.delta(&msg([0; 32])).is_err());
        assert_eq!(fs::read(d.path().join("db")).unwrap(), base);
        a.delta(&msg(*blake3::hash(&new).as_bytes())).unwrap();
        assert_eq!(fs::read(d.path().join("db")).unwrap(), new);
        // Unrelated content gives no delta worth sending.
        assert!(delta(&sig, &noise(300 << 10, 3), 1 << 20).is_none());
        // A delta aimed through a symlink is refused.
        std::os::unix::fs::symlink("/etc/hostname", d.path().join("link")).unwrap();
        let through = FsDelta {
            path: RelPath::new("link").unwrap(),
            ..msg(*blake3::hash(&new).as_bytes())
        };
        assert!(a.delta(&through).is_err());
    }

    #[test]
    fn the_source_reads_no_file_through_a_symlink() {
        let (d, outside) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        fs::write(outside.path().join("secret"), b"host").unwrap();
        fs::create_dir(d.path().join("etc")).unwrap();
        fs::write(d.path().join("etc/passwd"), b"root").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), d.path().join("etc/shadow")).unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("var")).unwrap();
        assert_eq!(read_chunk(d.path(), "etc/passwd", 0, 100).unwrap(), b"root");
        assert!(read_chunk(d.path(), "etc/shadow", 0, 100).is_err());
        assert!(read_chunk(d.path(), "var/secret", 0, 100).is_err());
        assert!(read_chunk(d.path(), "../outside", 0, 100).is_err());
        assert!(read_chunk(d.path(), "etc", 0, 100).is_err());
    }
}
