//! Private-area layouts: `simfs` (a plain directory: no disk limit) and `image` (a sparse
//! XFS image per container, loop-mounted at start: its size is the hard disk limit, grown
//! online with xfs_growfs; shrinking, only while unmounted, copies the tree into a new image).
//!
//! XFS rather than ext4: ext4 grows online only with CAP_SYS_RESOURCE, which some hosts'
//! root lacks (this project's sandboxes among them), while XFS needs CAP_SYS_ADMIN. XFS does
//! not shrink in place and has no fixed inode count, hence the copy and the unenforced
//! diskinodes. Uses xfsprogs and util-linux's mount.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum StorageError {
    #[error("{what} failed: {stderr}")]
    Tool { what: String, stderr: String },
    #[error("{what} failed")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("unknown layout {0:?}: use simfs or image")]
    BadLayout(String),
    #[error("the image can only shrink while the container is stopped and unmounted")]
    ShrinkMounted,
    #[error("{0} bytes is too small for an image (XFS needs at least 300M)")]
    TooSmall(u64),
    #[error("the data ({used} KiB) does not fit in {size} KiB")]
    DoesNotFit { used: u64, size: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Simfs,
    Image,
}

impl Layout {
    pub fn parse(s: &str) -> Result<Self, StorageError> {
        match s {
            "" | "simfs" => Ok(Layout::Simfs),
            "image" | "ploop" => Ok(Layout::Image),
            _ => Err(StorageError::BadLayout(s.into())),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Layout::Simfs => "simfs",
            Layout::Image => "image",
        }
    }
}

/// The image file of an image-layout private area.
pub fn image_path(private: &Path) -> PathBuf {
    private.join("root.hdd")
}

fn tool(cmd: &mut Command, what: &str) -> Result<String, StorageError> {
    let out = cmd.output().map_err(|source| StorageError::Io {
        what: what.into(),
        source,
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let mut e = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if e.is_empty() {
            e = String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        Err(StorageError::Tool {
            what: what.into(),
            stderr: e,
        })
    }
}

/// Smallest image XFS accepts.
pub const MIN_IMAGE: u64 = 300 << 20;

/// Creates a sparse XFS image of `bytes`.
pub fn create_image(file: &Path, bytes: u64) -> Result<(), StorageError> {
    if bytes < MIN_IMAGE {
        return Err(StorageError::TooSmall(bytes));
    }
    let f = fs::File::create(file).map_err(|source| StorageError::Io {
        what: format!("creating {}", file.display()),
        source,
    })?;
    f.set_len(bytes).map_err(|source| StorageError::Io {
        what: format!("sizing {}", file.display()),
        source,
    })?;
    drop(f);
    tool(Command::new("mkfs.xfs").args(["-q", "-f"]).arg(file), "mkfs.xfs").map(|_| ())
}

/// Loop-mounts an image (the loop device is released when it is unmounted).
pub fn mount_image(file: &Path, target: &Path) -> Result<(), StorageError> {
    let mut c = Command::new("mount");
    c.args(["-t", "xfs", "-o", "loop,noatime"]).arg(file).arg(target);
    tool(&mut c, &format!("mounting {}", file.display())).map(|_| ())
}

fn umount(target: &Path) -> Result<(), StorageError> {
    tool(
        Command::new("umount").arg(target),
        &format!("unmounting {}", target.display()),
    )
    .map(|_| ())
}

/// The device mounted at `target` (from this namespace's mount table).
pub fn mounted_device(target: &Path) -> Option<String> {
    let t = fs::canonicalize(target).ok()?;
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().rev().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        let mp = pre.split(' ').nth(4)?;
        (crate::fsutil::unescape_mountinfo(mp) == t.to_string_lossy())
            .then(|| post.split(' ').nth(1).map(str::to_string))?
    })
}

fn set_len(file: &Path, n: u64) -> Result<(), StorageError> {
    fs::OpenOptions::new()
        .write(true)
        .open(file)
        .and_then(|f| f.set_len(n))
        .map_err(|source| StorageError::Io {
            what: format!("resizing {}", file.display()),
            source,
        })
}

fn grow_mounted(file: &Path, bytes: u64, target: &Path) -> Result<(), StorageError> {
    let dev = mounted_device(target).ok_or_else(|| StorageError::Tool {
        what: "finding the loop device".into(),
        stderr: format!("{} is not mounted", target.display()),
    })?;
    set_len(file, bytes)?;
    tool(Command::new("losetup").args(["-c", &dev]), "losetup -c")?;
    tool(Command::new("xfs_growfs").arg(target), "xfs_growfs").map(|_| ())
}

/// Resizes an image to `bytes`. Mounted at `mounted`: grows online (shrinking is refused).
/// Unmounted: grows through a temporary mount, or shrinks by copying the tree into a new image
/// of the new size (refused, and nothing changed, if the data does not fit).
pub fn resize_image(file: &Path, bytes: u64, mounted: Option<&Path>) -> Result<(), StorageError> {
    if bytes < MIN_IMAGE {
        return Err(StorageError::TooSmall(bytes));
    }
    let cur = fs::metadata(file)
        .map_err(|source| StorageError::Io {
            what: format!("reading {}", file.display()),
            source,
        })?
        .len();
    if bytes == cur {
        return Ok(());
    }
    if let Some(target) = mounted {
        if bytes < cur {
            return Err(StorageError::ShrinkMounted);
        }
        return grow_mounted(file, bytes, target);
    }
    let tmp_mnt = file.with_extension("resize-mnt");
    fs::create_dir_all(&tmp_mnt).map_err(|source| StorageError::Io {
        what: format!("mkdir {}", tmp_mnt.display()),
        source,
    })?;
    let r = if bytes > cur {
        mount_image(file, &tmp_mnt).and_then(|_| {
            let g = grow_mounted(file, bytes, &tmp_mnt);
            let u = umount(&tmp_mnt);
            g.and(u)
        })
    } else {
        shrink_by_copy(file, bytes, &tmp_mnt)
    };
    let _ = fs::remove_dir(&tmp_mnt);
    r
}

fn shrink_by_copy(file: &Path, bytes: u64, old_mnt: &Path) -> Result<(), StorageError> {
    let new = file.with_extension("shrink-new");
    let new_mnt = file.with_extension("shrink-mnt");
    let _ = fs::remove_file(&new);
    fs::create_dir_all(&new_mnt).map_err(|source| StorageError::Io {
        what: format!("mkdir {}", new_mnt.display()),
        source,
    })?;
    let r = (|| {
        create_image(&new, bytes)?;
        mount_image(file, old_mnt)?;
        let copied = mount_image(&new, &new_mnt).and_then(|_| {
            let (used, _) = usage(old_mnt, true).unwrap_or((0, 0));
            let (_, avail) = usage_free(&new_mnt).unwrap_or((0, 0));
            let c = if used > avail {
                Err(StorageError::DoesNotFit { used, size: avail })
            } else {
                let mut cmd = Command::new("sh");
                cmd.arg("-c")
                    .arg("tar --numeric-owner --xattrs --xattrs-include='*' --acls -C \"$1\" -cf - . | tar --numeric-owner --xattrs --xattrs-include='*' --acls -C \"$2\" -xpf -")
                    .arg("sh")
                    .arg(old_mnt)
                    .arg(&new_mnt);
                tool(&mut cmd, "copying into the smaller image").map(|_| ())
            };
            let u = umount(&new_mnt);
            c.and(u)
        });
        let u = umount(old_mnt);
        copied.and(u)?;
        fs::rename(&new, file).map_err(|source| StorageError::Io {
            what: format!("replacing {}", file.display()),
            source,
        })
    })();
    if r.is_err() {
        let _ = fs::remove_file(&new);
    }
    let _ = fs::remove_dir(&new_mnt);
    r
}

/// statvfs(2) of the file system holding `path`.
pub fn statvfs(path: &Path) -> Option<libc::statvfs> {
    let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str())).ok()?;
    // SAFETY: statvfs fills a local struct.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statvfs(c.as_ptr(), &mut s) } == 0).then_some(s)
}

fn usage_free(path: &Path) -> Option<(u64, u64)> {
    let s = statvfs(path)?;
    Some((s.f_blocks * s.f_frsize / 1024, s.f_bavail * s.f_frsize / 1024))
}

/// Space and inodes in use: (KiB used, inodes used), from the mounted file system for images,
/// from a walk of the tree for simfs.
pub fn usage(path: &Path, whole_fs: bool) -> Option<(u64, u64)> {
    if whole_fs {
        let s = statvfs(path)?;
        let used = (s.f_blocks - s.f_bfree) * s.f_frsize / 1024;
        return Some((used, s.f_files - s.f_ffree));
    }
    fn walk(p: &Path, kb: &mut u64, n: &mut u64) {
        use std::os::unix::fs::MetadataExt;
        let Ok(md) = fs::symlink_metadata(p) else { return };
        *kb += md.blocks() / 2;
        *n += 1;
        if md.is_dir() {
            if let Ok(rd) = fs::read_dir(p) {
                for e in rd.flatten() {
                    walk(&e.path(), kb, n);
                }
            }
        }
    }
    let (mut kb, mut n) = (0, 0);
    walk(path, &mut kb, &mut n);
    Some((kb, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts() {
        assert_eq!(Layout::parse("image").unwrap(), Layout::Image);
        assert_eq!(Layout::parse("ploop").unwrap(), Layout::Image);
        assert_eq!(Layout::parse("").unwrap(), Layout::Simfs);
        assert!(Layout::parse("zfs").is_err());
    }

    #[test]
    fn simfs_usage_walks_the_tree() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("a"), vec![1u8; 10_000]).unwrap();
        fs::create_dir(d.path().join("b")).unwrap();
        let (kb, n) = usage(d.path(), false).unwrap();
        assert_eq!(n, 3);
        assert!(kb >= 8, "{kb}");
    }
}
