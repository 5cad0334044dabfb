//! Small file-system helpers shared by every module.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Another of ferry's programs: the one installed beside the running binary, else `name` on
/// the PATH.
pub fn sibling_binary(name: &str) -> std::path::PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| name.into())
}

/// GNU tar options that keep what a container's files carry when an archive is made of them:
/// numeric owners, extended attributes of every namespace, ACLs.
pub const TAR_KEEP: [&str; 4] = ["--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls"];

/// [`TAR_KEEP`] for extracting: also the archived owners and modes, as they were.
pub const TAR_EXTRACT_KEEP: [&str; 6] = [
    "--numeric-owner",
    "--same-owner",
    "--same-permissions",
    "--xattrs",
    "--xattrs-include=*",
    "--acls",
];

/// Writes a file atomically: a temporary file beside it, fsync, rename, fsync of the directory.
/// A crash leaves either the old or the new content, never a mix.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Reads a text file of at most `max` bytes (a larger one is an error, not a truncation):
/// for files that may come from a peer or a container.
pub fn read_bounded(path: &Path, max: u64) -> io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?.take(max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {max} bytes", path.display()),
        ));
    }
    Ok(text)
}

/// Is `path` a mount point in this process's mount namespace? Reads /proc/self/mountinfo,
/// which (unlike comparing device numbers) also sees bind mounts within one file system.
pub fn is_mountpoint(path: &Path) -> io::Result<bool> {
    MountPoints::read()?.contains(path)
}

/// The mount points of this mount namespace, read once (`/proc/self/mountinfo`): for asking
/// about many paths (vzlist's rows) without reading the table per path, which costs the square
/// of the count.
#[derive(Debug, Clone, Default)]
pub struct MountPoints(std::collections::HashSet<String>);

impl MountPoints {
    pub fn read() -> io::Result<Self> {
        Ok(Self::parse(&fs::read_to_string("/proc/self/mountinfo")?))
    }

    /// From mountinfo's text: each line's fifth field, unescaped.
    pub fn parse(mountinfo: &str) -> Self {
        MountPoints(
            mountinfo
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .map(unescape_mountinfo)
                .collect(),
        )
    }

    /// Is `path` (resolved through symbolic links; a missing path is not) a mount point?
    pub fn contains(&self, path: &Path) -> io::Result<bool> {
        let target = match fs::canonicalize(path) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        Ok(self.0.contains(target.to_string_lossy().as_ref()))
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
pub fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The host path of `rel` below `root`, refusing to go through a symlink: every existing
/// component but the last must be a real directory, so an entry the peer created earlier
/// cannot redirect a later write outside the area.
pub fn confined(root: &Path, rel: &migrate_proto::path::RelPath) -> io::Result<std::path::PathBuf> {
    let mut cur = root.to_path_buf();
    let comps: Vec<&str> = rel.components().collect();
    for c in &comps[..comps.len() - 1] {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(md) if md.file_type().is_symlink() => {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{rel} goes through the symlink {}", cur.display()),
                ));
            }
            Ok(md) if !md.is_dir() => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{rel}: {} is not a directory", cur.display()),
                ))
            }
            _ => {}
        }
    }
    cur.push(comps[comps.len() - 1]);
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table read once answers as a fresh reading would: escaped names, symbolic links
    /// resolved, a missing path not a mount point.
    #[test]
    fn mount_points_read_once_answer_like_the_table() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().canonicalize().unwrap();
        let spaced = real.join("a b");
        fs::create_dir(&spaced).unwrap();
        std::os::unix::fs::symlink(&spaced, real.join("link")).unwrap();
        let info = format!(
            "22 1 0:21 / / rw - ext4 /dev/root rw\n\
             99 22 0:50 / {} rw,relatime - tmpfs tmpfs rw\n",
            spaced.display().to_string().replace(' ', "\\040")
        );
        let m = MountPoints::parse(&info);
        assert!(m.contains(&spaced).unwrap());
        assert!(m.contains(&real.join("link")).unwrap());
        assert!(m.contains(Path::new("/")).unwrap());
        assert!(!m.contains(&real).unwrap());
        assert!(!m.contains(&real.join("missing")).unwrap());
        // And the live table agrees with is_mountpoint on /proc.
        assert!(MountPoints::read().unwrap().contains(Path::new("/proc")).unwrap());
        assert!(is_mountpoint(Path::new("/proc")).unwrap());
    }

    #[test]
    fn atomic_write_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.conf");
        write_atomic(&p, b"one", 0o644).unwrap();
        write_atomic(&p, b"two", 0o644).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "two");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1, "temporary file left behind");
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/x\\"), "/x\\");
    }
}
