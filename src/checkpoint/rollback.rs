//! Rolling a private area back to a checkpoint's entries (`stamp.rs`), changing only what
//! differs: names made since are removed, names of another file now (another inode or type)
//! are removed for the snapshot to make them anew, and only the missing or different names are
//! extracted from the chain's snapshots, oldest first, each in place (`--overwrite`: a file
//! whose content changed is rewritten through its own inode). Everything else, and its inode
//! and times, is left as it is. The result is checked against the entries afterwards; the
//! caller falls back to extracting the whole chain where it does not match.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::stamp::{self, Entry};

/// How a snapshot is extracted over a private area: in place (an existing file rewritten
/// through its own inode), with its numeric owners, modes, extended attributes and ACLs.
pub fn extract_in_place() -> Vec<&'static str> {
    let mut args = vec!["--overwrite"];
    args.extend(crate::fsutil::TAR_EXTRACT_KEEP);
    args
}

/// What a rollback does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Names on disk the checkpoint does not have, and names on disk of another file than the
    /// checkpoint's: removed (a directory with what it holds), parents first.
    pub remove: Vec<Vec<u8>>,
    /// Names the snapshots restore: missing on disk or different, in the checkpoint's order.
    pub extract: Vec<Vec<u8>>,
}

/// Any difference at all: a change to a file moves its change time.
fn same(a: &Entry, b: &Entry) -> bool {
    a == b
}

pub fn plan(recorded: &[Entry], live: &[Entry]) -> Plan {
    let rec = stamp::by_name(recorded);
    let now = stamp::by_name(live);
    let mut remove: Vec<Vec<u8>> = Vec::new();
    for (name, l) in &now {
        match rec.get(name) {
            None => remove.push(name.to_vec()),
            Some(r) if r.kind() != l.kind() || (r.ino != l.ino && !r.is_dir()) => remove.push(name.to_vec()),
            _ => {}
        }
    }
    // Parents first (shorter names sort first within a subtree); a parent's removal takes its
    // children, whose own removal then finds nothing.
    remove.sort();
    let mut extract = Vec::new();
    for r in recorded {
        match now.get(r.name.as_slice()) {
            Some(l) if same(r, l) => {}
            _ => extract.push(r.name.clone()),
        }
    }
    Plan { remove, extract }
}

fn path_in(tree: &Path, name: &[u8]) -> Option<PathBuf> {
    let rel = name.strip_prefix(b"./")?;
    if rel.is_empty()
        || rel
            .split(|b| *b == b'/')
            .any(|c| c.is_empty() || c == b"." || c == b"..")
    {
        return None;
    }
    Some(tree.join(std::ffi::OsStr::from_bytes(rel)))
}

/// Carries out `plan` on `tree` with the chain's snapshots (`archives`, oldest first), then
/// checks the result against `recorded`. `work` holds the name list given to tar.
pub fn apply(tree: &Path, plan: &Plan, recorded: &[Entry], archives: &[PathBuf], work: &Path) -> Result<(), String> {
    for name in &plan.remove {
        let Some(p) = path_in(tree, name) else {
            return Err(format!("cannot remove {:?}", String::from_utf8_lossy(name)));
        };
        let r = match std::fs::symlink_metadata(&p) {
            Ok(md) if md.is_dir() => std::fs::remove_dir_all(&p),
            Ok(_) => std::fs::remove_file(&p),
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("removing {}: {e}", p.display())),
        }
    }
    let shown = |v: &[Vec<u8>]| {
        v.iter()
            .take(20)
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect::<Vec<_>>()
    };
    tracing::debug!(
        removed = plan.remove.len(),
        restored = plan.extract.len(),
        remove = ?shown(&plan.remove),
        extract = ?shown(&plan.extract),
        "rollback: plan (the first 20 names of each)"
    );
    if !plan.extract.is_empty() {
        let list = work.join("rollback.list");
        let mut f = std::fs::File::create(&list).map_err(|e| format!("{}: {e}", list.display()))?;
        for name in &plan.extract {
            let member: &[u8] = if name == b"." { b"./" } else { name };
            f.write_all(member)
                .and_then(|_| f.write_all(b"\0"))
                .map_err(|e| format!("{}: {e}", list.display()))?;
        }
        drop(f);
        for a in archives {
            extract(tree, a, &list)?;
        }
    }
    check(tree, recorded, plan)
}

/// Extracts the listed members `a` has; the others it lacks are not an error.
fn extract(tree: &Path, a: &Path, list: &Path) -> Result<(), String> {
    // `-C` applies to the names that follow it, those of `-T` included: it comes first (after
    // `-T` the names were taken from tar's working directory), and tar also runs in the tree.
    let out = Command::new("tar")
        .current_dir(tree)
        .arg("-C")
        .arg(tree)
        .args(extract_in_place())
        .args(["--no-recursion", "--null", "--verbatim-files-from", "-T"])
        .arg(list)
        .arg("-xf")
        .arg(a)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running tar: {e}"))?;
    tracing::debug!(
        archive = %a.display(),
        code = ?out.status.code(),
        stderr = %String::from_utf8_lossy(&out.stderr),
        "rollback: tar"
    );
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let only_missing = stderr.lines().all(|l| {
        l.ends_with(": Not found in archive") || l == "tar: Exiting with failure status due to previous errors"
    });
    if only_missing && out.status.code() == Some(2) {
        return Ok(());
    }
    Err(format!("tar extracting from {}: {}", a.display(), stderr.trim()))
}

/// The tree now holds exactly the recorded names, and each name restored has the recorded
/// type, mode, owner, node number, size (not for a directory) and modification time (whole
/// seconds, as the snapshot keeps it; not for a symbolic link).
fn check(tree: &Path, recorded: &[Entry], plan: &Plan) -> Result<(), String> {
    let live = stamp::walk(tree).map_err(|e| format!("reading {}: {e}", tree.display()))?;
    let now = stamp::by_name(&live);
    let rec: BTreeMap<&[u8], &Entry> = stamp::by_name(recorded);
    if let Some(extra) = now.keys().find(|n| !rec.contains_key(*n)) {
        return Err(format!("{} is still there", String::from_utf8_lossy(extra)));
    }
    for name in &plan.extract {
        let r = rec[name.as_slice()];
        let shown = String::from_utf8_lossy(name);
        let Some(l) = now.get(name.as_slice()) else {
            return Err(format!("{shown} was not restored"));
        };
        let link = r.kind() == libc::S_IFLNK;
        let fits = r.kind() == l.kind()
            && (link || r.mode == l.mode)
            && r.uid == l.uid
            && r.gid == l.gid
            && r.rdev == l.rdev
            && (r.is_dir() || r.size == l.size)
            && (link || r.mtime == l.mtime);
        if !fits {
            return Err(format!(
                "{shown} differs from the checkpoint's after the rollback (mode {:o} owner {}:{} size {} modified {}, not mode {:o} owner {}:{} size {} modified {})",
                l.mode, l.uid, l.gid, l.size, l.mtime, r.mode, r.uid, r.gid, r.size, r.mtime
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(name: &str, ino: u64, mode: u32, ctime: i64) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            ino,
            mode,
            uid: 0,
            gid: 0,
            size: 1,
            nlink: 1,
            rdev: 0,
            mtime: ctime,
            mtime_nsec: 0,
            ctime,
            ctime_nsec: 0,
        }
    }

    const DIR: u32 = libc::S_IFDIR | 0o755;
    const REG: u32 = libc::S_IFREG | 0o644;
    const LNK: u32 = libc::S_IFLNK | 0o777;

    #[test]
    fn only_what_differs_is_touched() {
        let rec = vec![
            e(".", 1, DIR, 10),
            e("./a", 2, REG, 10),
            e("./b", 3, REG, 10),
            e("./d", 4, DIR, 10),
            e("./d/f", 5, REG, 10),
            e("./l", 6, LNK, 10),
            e("./gone", 7, REG, 10),
        ];
        let live = vec![
            e(".", 1, DIR, 20),     // an entry added: its time moved
            e("./a", 2, REG, 10),   // untouched
            e("./b", 2, REG, 20),   // now a second name of a
            e("./d", 4, DIR, 10),   // untouched
            e("./d/f", 5, REG, 30), // written in place
            e("./l", 8, REG, 20),   // a file where a link was
            e("./new", 9, DIR, 20), // made since, with something in it
            e("./new/x", 10, REG, 20),
        ];
        let p = plan(&rec, &live);
        let s = |v: &[Vec<u8>]| {
            v.iter()
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(s(&p.remove), ["./b", "./l", "./new", "./new/x"]);
        assert_eq!(s(&p.extract), [".", "./b", "./d/f", "./l", "./gone"]);
        assert_eq!(plan(&rec, &rec), Plan::default());
    }

    /// A real tree and tar: only what differs is written, and only inside the tree (never in
    /// the working directory: tar's `-C` applies only to the names after it).
    #[test]
    fn a_rollback_writes_only_what_differs_and_only_inside_the_tree() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let tree = d.path().join("tree");
        let probe = format!("zz-rollback-probe-{}", std::process::id());
        std::fs::create_dir_all(tree.join("d")).unwrap();
        std::fs::write(tree.join(&probe), b"probe").unwrap();
        std::fs::write(tree.join("d/keep"), b"keep").unwrap();
        std::fs::write(tree.join("d/change"), b"one").unwrap();
        let archive = d.path().join("fs.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&tree)
            .arg("-cf")
            .arg(&archive)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        let recorded = stamp::walk(&tree).unwrap();
        let keep = std::fs::metadata(tree.join("d/keep")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(tree.join("d/change"), b"two, longer").unwrap();
        std::fs::remove_file(tree.join(&probe)).unwrap();
        std::fs::write(tree.join("d/new"), b"new").unwrap();
        let live = stamp::walk(&tree).unwrap();
        let p = plan(&recorded, &live);
        apply(&tree, &p, &recorded, &[archive], d.path()).unwrap();
        assert_eq!(std::fs::read(tree.join("d/change")).unwrap(), b"one");
        assert_eq!(std::fs::read(tree.join(&probe)).unwrap(), b"probe");
        assert!(!tree.join("d/new").exists());
        let kept = std::fs::metadata(tree.join("d/keep")).unwrap();
        assert_eq!(
            (kept.ino(), kept.ctime(), kept.ctime_nsec()),
            (keep.ino(), keep.ctime(), keep.ctime_nsec())
        );
        assert!(!Path::new(&probe).exists(), "tar wrote into the working directory");
        assert!(!Path::new("d").exists(), "tar wrote into the working directory");
    }

    #[test]
    fn names_outside_the_tree_are_not_removed() {
        let t = Path::new("/x");
        assert_eq!(path_in(t, b"./a/b"), Some(PathBuf::from("/x/a/b")));
        for bad in [&b"."[..], b"./", b"./../etc", b"./a/../../b", b"a", b"./a//b"] {
            assert_eq!(path_in(t, bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
