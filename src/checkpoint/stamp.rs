//! The private area's entries as a checkpoint's snapshot saw them, and their stamp.
//!
//! Every entry (name, inode, type and mode, owner, size, link count, device number of a node,
//! modification and change times), walked in name order without following symbolic links or
//! leaving the file system. The file system's own device number is left out: a loop device
//! may get another number when the image is mounted again.
//!
//! A local checkpoint records them (`fs.entries`) with its snapshot, while the container is
//! frozen, and their stamp (one BLAKE3 over the encoded list) in its manifest. A restore that
//! finds the same stamp knows the files are exactly the checkpoint's (any change to a file's
//! content or metadata moves its change time, which cannot be set back) and leaves the private
//! area alone; one that does not compares entry by entry and rolls back only what differs
//! (`rollback.rs`).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// One entry of a tree: its name relative to the root (`.` for the root, `./a/b` below it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: Vec<u8>,
    pub ino: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub nlink: u64,
    pub rdev: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub ctime: i64,
    pub ctime_nsec: i64,
}

/// Bytes one entry takes in the encoding beyond its name.
const FIXED: usize = 4 + 8 + 4 + 4 + 4 + 8 + 8 + 8 + 8 * 4;
/// Longest name accepted when decoding (PATH_MAX).
const MAX_NAME: usize = 4096;

impl Entry {
    fn of(name: Vec<u8>, md: &fs::Metadata) -> Entry {
        Entry {
            name,
            ino: md.ino(),
            mode: md.mode(),
            uid: md.uid(),
            gid: md.gid(),
            size: md.size(),
            nlink: md.nlink(),
            rdev: md.rdev(),
            mtime: md.mtime(),
            mtime_nsec: md.mtime_nsec(),
            ctime: md.ctime(),
            ctime_nsec: md.ctime_nsec(),
        }
    }

    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }

    /// The file type bits.
    pub fn kind(&self) -> u32 {
        self.mode & libc::S_IFMT
    }
}

/// The entries of the tree at `root`, in name order (a directory before what it holds).
pub fn walk(root: &Path) -> io::Result<Vec<Entry>> {
    let top = fs::symlink_metadata(root)?;
    let mut out = vec![Entry::of(b".".to_vec(), &top)];
    let mut stack = vec![(root.to_path_buf(), b".".to_vec())];
    while let Some((dir, rel)) = stack.pop() {
        let mut names: Vec<_> = fs::read_dir(&dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        let mut subdirs = Vec::new();
        let mut here = Vec::with_capacity(names.len());
        for n in names {
            let p = dir.join(&n);
            let md = fs::symlink_metadata(&p)?;
            let mut r = rel.clone();
            r.push(b'/');
            r.extend_from_slice(n.as_bytes());
            if md.is_dir() && md.dev() == top.dev() {
                subdirs.push((p, r.clone()));
            }
            here.push(Entry::of(r, &md));
        }
        out.extend(here);
        // Depth first, in name order: pushed in reverse.
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(out)
}

/// The entries, encoded (little-endian, each name with its length).
pub fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut b = Vec::with_capacity(entries.len() * (FIXED + 32));
    for e in entries {
        b.extend_from_slice(&(e.name.len() as u32).to_le_bytes());
        b.extend_from_slice(&e.name);
        b.extend_from_slice(&e.ino.to_le_bytes());
        b.extend_from_slice(&e.mode.to_le_bytes());
        b.extend_from_slice(&e.uid.to_le_bytes());
        b.extend_from_slice(&e.gid.to_le_bytes());
        b.extend_from_slice(&e.size.to_le_bytes());
        b.extend_from_slice(&e.nlink.to_le_bytes());
        b.extend_from_slice(&e.rdev.to_le_bytes());
        for t in [e.mtime, e.mtime_nsec, e.ctime, e.ctime_nsec] {
            b.extend_from_slice(&t.to_le_bytes());
        }
    }
    b
}

/// Decodes what [`encode`] wrote; anything else is an error, never a panic.
pub fn decode(mut b: &[u8]) -> Result<Vec<Entry>, String> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
        if b.len() < n {
            return Err("truncated".into());
        }
        let (h, t) = b.split_at(n);
        *b = t;
        Ok(h)
    }
    let u32_ = |b: &mut &[u8]| take(b, 4).map(|s| u32::from_le_bytes(s.try_into().unwrap()));
    let u64_ = |b: &mut &[u8]| take(b, 8).map(|s| u64::from_le_bytes(s.try_into().unwrap()));
    let mut out = Vec::new();
    while !b.is_empty() {
        let len = u32_(&mut b)? as usize;
        if len == 0 || len > MAX_NAME {
            return Err(format!("a name of {len} bytes"));
        }
        let name = take(&mut b, len)?.to_vec();
        if !(name == b"." || name.starts_with(b"./")) || name.contains(&0) {
            return Err("a name outside the tree".into());
        }
        out.push(Entry {
            name,
            ino: u64_(&mut b)?,
            mode: u32_(&mut b)?,
            uid: u32_(&mut b)?,
            gid: u32_(&mut b)?,
            size: u64_(&mut b)?,
            nlink: u64_(&mut b)?,
            rdev: u64_(&mut b)?,
            mtime: u64_(&mut b)? as i64,
            mtime_nsec: u64_(&mut b)? as i64,
            ctime: u64_(&mut b)? as i64,
            ctime_nsec: u64_(&mut b)? as i64,
        });
    }
    Ok(out)
}

/// The stamp of encoded entries, hex.
pub fn of_encoded(encoded: &[u8]) -> String {
    blake3::hash(encoded).to_hex().to_string()
}

/// The stamp of the tree at `root`, hex.
pub fn of(root: &Path) -> io::Result<String> {
    Ok(of_encoded(&encode(&walk(root)?)))
}

/// Entries by name.
pub fn by_name(entries: &[Entry]) -> BTreeMap<&[u8], &Entry> {
    entries.iter().map(|e| (e.name.as_slice(), e)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_change_moves_the_stamp_and_nothing_else_does() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("a/b")).unwrap();
        fs::write(r.join("a/b/f"), b"one").unwrap();
        fs::write(r.join("g"), b"two").unwrap();
        std::os::unix::fs::symlink("g", r.join("l")).unwrap();
        let s0 = of(r).unwrap();
        assert_eq!(of(r).unwrap(), s0, "the same tree, the same stamp");
        // Reading changes nothing that counts.
        let _ = fs::read(r.join("a/b/f")).unwrap();
        assert_eq!(of(r).unwrap(), s0);
        let changes: Vec<Box<dyn Fn()>> = vec![
            Box::new(|| fs::write(r.join("a/b/f"), b"one").unwrap()),
            Box::new(|| {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(r.join("g"), fs::Permissions::from_mode(0o600)).unwrap()
            }),
            Box::new(|| fs::write(r.join("a/new"), b"").unwrap()),
            Box::new(|| fs::remove_file(r.join("a/new")).unwrap()),
            Box::new(|| fs::hard_link(r.join("g"), r.join("a/g2")).unwrap()),
        ];
        let mut last = s0;
        for (i, change) in changes.iter().enumerate() {
            std::thread::sleep(std::time::Duration::from_millis(5));
            change();
            let now = of(r).unwrap();
            assert_ne!(now, last, "change {i} left the stamp as it was");
            last = now;
        }
    }

    #[test]
    fn entries_are_in_name_order_and_round_trip() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("b/c")).unwrap();
        fs::write(r.join("a"), b"x").unwrap();
        fs::write(r.join("b/c/d"), b"y").unwrap();
        fs::write(r.join("b/e"), b"z").unwrap();
        let e = walk(r).unwrap();
        let names: Vec<&[u8]> = e.iter().map(|e| e.name.as_slice()).collect();
        assert_eq!(
            names,
            [&b"."[..], b"./a", b"./b", b"./b/c", b"./b/e", b"./b/c/d"],
            "{:?}",
            names.iter().map(|n| String::from_utf8_lossy(n)).collect::<Vec<_>>()
        );
        assert_eq!(decode(&encode(&e)).unwrap(), e);
        // Damage decodes to an error, never a panic.
        let enc = encode(&e);
        for cut in [1, 5, enc.len() - 1] {
            assert!(decode(&enc[..cut]).is_err());
        }
        let mut bad = enc.clone();
        bad[4] = b'/';
        assert!(decode(&bad).is_err());
        assert!(decode(&u32::MAX.to_le_bytes()).is_err());
    }
}
