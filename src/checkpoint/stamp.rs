//! A stamp of a private area: one BLAKE3 hash over every entry's name and inode metadata
//! (inode, type and mode, owner, size, link count, device number of a node, modification and
//! change times), walked in name order without following symbolic links or leaving the file
//! system. The file system's own device number is left out: a loop device may get another
//! number when the image is mounted again.
//!
//! A stopping checkpoint records the stamp of the private area as its snapshot saw it. A
//! restore that finds the same stamp knows the files are exactly the checkpoint's (any change
//! to a file's content or metadata moves its change time, which cannot be set back), and
//! leaves the private area alone instead of extracting the snapshot over it.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The stamp of the tree at `root`, hex.
pub fn of(root: &Path) -> io::Result<String> {
    let top = fs::symlink_metadata(root)?;
    let mut h = blake3::Hasher::new();
    entry(&mut h, b".", &top);
    let mut stack = vec![(root.to_path_buf(), Vec::from(&b"."[..]))];
    while let Some((dir, rel)) = stack.pop() {
        let mut names: Vec<_> = fs::read_dir(&dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        // Pushed in reverse so that the walk is in name order, depth first.
        let mut subdirs = Vec::new();
        for n in names {
            let p = dir.join(&n);
            let md = fs::symlink_metadata(&p)?;
            let mut r = rel.clone();
            r.push(b'/');
            r.extend_from_slice(n.as_bytes());
            entry(&mut h, &r, &md);
            if md.is_dir() && md.dev() == top.dev() {
                subdirs.push((p, r));
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(h.finalize().to_hex().to_string())
}

fn entry(h: &mut blake3::Hasher, rel: &[u8], md: &fs::Metadata) {
    h.update(&(rel.len() as u64).to_le_bytes());
    h.update(rel);
    for v in [
        md.ino(),
        md.mode() as u64,
        md.uid() as u64,
        md.gid() as u64,
        md.size(),
        md.nlink(),
        md.rdev(),
        md.mtime() as u64,
        md.mtime_nsec() as u64,
        md.ctime() as u64,
        md.ctime_nsec() as u64,
    ] {
        h.update(&v.to_le_bytes());
    }
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
}
