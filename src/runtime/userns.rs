//! User namespaces: the host ids a container's ids map to, and the idmapped mount of its root.
//!
//! A container with `USERNS="yes"` runs in a user namespace of its own: its uids and gids
//! 0..65535 are the host's `LOCAL_UID..LOCAL_UID+65535` and `LOCAL_GID..` (the keys of vzctl
//! 4.x), a range that no other container on the host has. Its root is root for its own
//! namespaces and nothing for the host's.
//!
//! The private area stays on disk in the container's own ids (a file of the container's root is
//! owned by 0), so templates, checkpoints and migrations carry it unchanged. What the container
//! sees is an idmapped mount of it (kernel >= 5.12): the mount shifts disk id N to host id
//! LOCAL_UID+N, which the container's namespace maps back to N. Host-side code that reads or
//! writes the tree with its ownership (tar, the file sync) uses the raw tree
//! (`Container::tree`: the private area, or an image's file system mounted at `private/fs`),
//! never the idmapped root.
//!
//! Ranges are handed out from the host's pool (`USERNS_ID_POOL="START:COUNT"` in vz.conf) in
//! aligned blocks of 65536, lowest free first, under a host-wide lock, and checked again at
//! every start: a range outside the pool or overlapping another container's is refused.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use super::sys;
use crate::config::Config;
use crate::ctid::Ctid;

/// How many ids a container's namespace maps (uid and gid alike): 0..65535, as LXC and Incus.
pub const RANGE: u32 = 65536;

/// The default pool of host ids for containers: above the ids of ordinary users and of the
/// subordinate ranges `useradd` hands out (100000 + 65536 per user), room for 15258 containers.
pub const DEFAULT_POOL: &str = "1000000:1000000000";

/// A container's mapping: container id 0 is host id `uid` (`gid`), for `RANGE` ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub uid: u32,
    pub gid: u32,
}

impl IdMap {
    /// The line for `/proc/PID/uid_map` (`gid` false) or `gid_map`.
    pub fn map_line(&self, gid: bool) -> String {
        format!("0 {} {RANGE}\n", if gid { self.gid } else { self.uid })
    }

    fn overlaps(a: u32, b: u32) -> bool {
        let (a, b) = (a as u64, b as u64);
        a < b + RANGE as u64 && b < a + RANGE as u64
    }
}

/// The host's pool of ids for containers: `[start, start+count)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub start: u32,
    pub count: u32,
}

impl Pool {
    pub fn parse(s: &str) -> Result<Pool, String> {
        let bad = || format!("USERNS_ID_POOL {s:?}: expected START:COUNT (host ids, e.g. {DEFAULT_POOL})");
        let (a, b) = s.trim().split_once(':').ok_or_else(bad)?;
        let start: u32 = a.trim().parse().map_err(|_| bad())?;
        let count: u32 = b.trim().parse().map_err(|_| bad())?;
        if start == 0 {
            return Err(format!(
                "USERNS_ID_POOL {s:?}: host id 0 (the host's root) cannot be given to a container"
            ));
        }
        if count < RANGE || start as u64 + count as u64 > u32::MAX as u64 {
            return Err(format!(
                "USERNS_ID_POOL {s:?}: the pool must hold at least {RANGE} ids and end below {}",
                u32::MAX
            ));
        }
        Ok(Pool { start, count })
    }

    fn contains(&self, first: u32) -> bool {
        first >= self.start && first as u64 + RANGE as u64 <= self.start as u64 + self.count as u64
    }

    /// The lowest aligned block of the pool that overlaps none of `taken` (first uids or gids).
    pub fn lowest_free(&self, taken: &[u32]) -> Option<u32> {
        let blocks = self.count / RANGE;
        (0..blocks)
            .map(|k| self.start + k * RANGE)
            .find(|&first| !taken.iter().any(|&t| IdMap::overlaps(first, t)))
    }
}

/// Parses a `USERNS` value (vz.conf's default for new containers, or a container's own).
pub fn parse_flag(v: &str) -> Result<bool, String> {
    match v {
        "yes" => Ok(true),
        "no" => Ok(false),
        other => Err(format!("USERNS {other:?}: expected yes or no")),
    }
}

/// The mapping a container's configuration records, if it asks for a user namespace. A
/// configuration without `USERNS` is a container made before user namespaces (privileged): it
/// stays so whatever vz.conf's default for new containers says.
pub fn from_config(config: &Config) -> Result<Option<IdMap>, String> {
    if !parse_flag(config.get("USERNS").filter(|v| !v.is_empty()).unwrap_or("no"))? {
        return Ok(None);
    }
    let id = |key: &str| -> Result<u32, String> {
        let v = config.get(key).filter(|v| !v.is_empty()).ok_or_else(|| {
            format!("USERNS=\"yes\" but {key} is not set (a range is allocated by vzctl create --userns yes)")
        })?;
        v.parse().map_err(|_| format!("{key} {v:?}: expected a host id"))
    };
    Ok(Some(IdMap {
        uid: id("LOCAL_UID")?,
        gid: id("LOCAL_GID")?,
    }))
}

/// Checks a container's mapping against the host's pool and the other containers' mappings
/// (`others`: CTID and mapping of every other container that has one).
pub fn check(ctid: Ctid, map: IdMap, pool: Pool, others: &[(Ctid, IdMap)]) -> Result<(), String> {
    for (what, first) in [("LOCAL_UID", map.uid), ("LOCAL_GID", map.gid)] {
        if !pool.contains(first) {
            return Err(format!(
                "{what}={first} with {RANGE} ids is outside this host's pool USERNS_ID_POOL=\"{}:{}\"",
                pool.start, pool.count
            ));
        }
    }
    for (other, m) in others {
        if *other == ctid {
            continue;
        }
        if IdMap::overlaps(map.uid, m.uid) || IdMap::overlaps(map.gid, m.gid) {
            return Err(format!(
                "its ids (LOCAL_UID={}, LOCAL_GID={}) overlap those of container {other} ({}, {})",
                map.uid, map.gid, m.uid, m.gid
            ));
        }
    }
    Ok(())
}

/// A free mapping for a new container: the lowest block free for both uids and gids.
pub fn allocate(pool: Pool, others: &[(Ctid, IdMap)]) -> Result<IdMap, String> {
    let mut taken: Vec<u32> = others.iter().map(|(_, m)| m.uid).collect();
    taken.extend(others.iter().map(|(_, m)| m.gid));
    let first = pool.lowest_free(&taken).ok_or_else(|| {
        format!(
            "no free id range left in USERNS_ID_POOL=\"{}:{}\" ({} containers have one); widen the pool in vz.conf",
            pool.start,
            pool.count,
            others.len()
        )
    })?;
    Ok(IdMap { uid: first, gid: first })
}

/// The host-wide lock under which ranges are handed out (`vz/lock/idmap.lck`, blocking: an
/// allocation takes a moment). Released when the returned file is dropped.
pub fn pool_lock(lock_dir: &Path) -> io::Result<nix::fcntl::Flock<std::fs::File>> {
    std::fs::create_dir_all(lock_dir)?;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_dir.join("idmap.lck"))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| io::Error::from(e))
}

/// Writes a process's uid and gid maps (it has just unshared its user namespace).
pub fn write_maps(pid: i32, map: IdMap) -> io::Result<()> {
    std::fs::write(format!("/proc/{pid}/uid_map"), map.map_line(false))?;
    std::fs::write(format!("/proc/{pid}/gid_map"), map.map_line(true))
}

/// In a user namespace just joined or created: become its root (uid and gid 0, no
/// supplementary groups). The capabilities held in the namespace stay.
pub fn become_root() -> io::Result<()> {
    let e = |r: nix::Result<()>| r.map_err(io::Error::from);
    e(nix::unistd::setgroups(&[]))?;
    e(nix::unistd::setresgid(0.into(), 0.into(), 0.into()))?;
    e(nix::unistd::setresuid(0.into(), 0.into(), 0.into()))
}

/// A user namespace with `map`, held by the returned descriptor (for an idmapped mount). A
/// child unshares it and waits while this process writes its maps; only async-signal-safe
/// calls run in the child, so this is safe in a multi-threaded process too.
pub fn userns_fd(map: IdMap) -> io::Result<OwnedFd> {
    let (ready_r, ready_w) = sys::pipe()?;
    let (done_r, done_w) = sys::pipe()?;
    let pid = sys::fork()?;
    if pid == 0 {
        drop(ready_r);
        drop(done_w);
        // SAFETY: unshare, write, read and _exit are async-signal-safe.
        let ok = unsafe { libc::unshare(libc::CLONE_NEWUSER) } == 0;
        let _ = sys::write_all(ready_w.as_raw_fd(), if ok { b"u" } else { b"x" });
        let _ = sys::read_to_end(done_r.as_raw_fd(), 1);
        sys::exit_child(0);
    }
    drop(ready_w);
    drop(done_r);
    let result = (|| {
        let r = sys::read_to_end(ready_r.as_raw_fd(), 1)?;
        if r != b"u" {
            return Err(io::Error::other(
                "unshare(CLONE_NEWUSER) failed: does this kernel have user namespaces?",
            ));
        }
        write_maps(pid, map)?;
        let f = std::fs::File::open(format!("/proc/{pid}/ns/user"))?;
        Ok(OwnedFd::from(f))
    })();
    drop(done_w);
    let _ = sys::wait_exit_code(pid);
    result
}

/// Mounts `src` (the raw tree: a private area, or an image's file system) on `target` as an
/// idmapped bind: disk ids shift by `map`.
pub fn idmapped_bind(src: &Path, target: &Path, map: IdMap) -> io::Result<()> {
    let userns = userns_fd(map)?;
    let tree = sys::open_tree_clone(src, false)?;
    sys::set_idmap(&tree, &userns).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "an idmapped mount of {} ({e}): the file system or kernel (>= 5.12) does not support it",
                src.display()
            ),
        )
    })?;
    sys::move_mount_to(&tree, target)
}

/// Whether this host can run a container with a user namespace whose files are below `dir`:
/// the kernel makes user namespaces, and `dir`'s file system takes an idmapped mount (a
/// detached clone, made idmapped and dropped: nothing is mounted anywhere).
pub fn probe(dir: &Path) -> Result<(), String> {
    let map = IdMap {
        uid: 1_000_000,
        gid: 1_000_000,
    };
    let userns = userns_fd(map).map_err(|e| format!("the kernel does not make user namespaces here ({e})"))?;
    let tree = sys::open_tree_clone(dir, false)
        .map_err(|e| format!("open_tree of {} ({e}): the kernel is older than 5.2", dir.display()))?;
    sys::set_idmap(&tree, &userns).map_err(|e| {
        format!(
            "{}'s file system does not take idmapped mounts ({e}; Linux >= 5.12, and a file system that supports them: ext4, xfs, btrfs, tmpfs >= 6.3, ...)",
            dir.display()
        )
    })
}

/// The user namespace of a running process, if it is not the caller's own.
pub fn foreign_userns(pid: i32) -> io::Result<Option<OwnedFd>> {
    use std::os::unix::fs::MetadataExt;
    let theirs = std::fs::metadata(format!("/proc/{pid}/ns/user"))?;
    let ours = std::fs::metadata("/proc/self/ns/user")?;
    if theirs.ino() == ours.ino() && theirs.dev() == ours.dev() {
        return Ok(None);
    }
    Ok(Some(OwnedFd::from(std::fs::File::open(format!(
        "/proc/{pid}/ns/user"
    ))?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn ct(n: u32) -> Ctid {
        Ctid::new(n).unwrap()
    }

    #[test]
    fn pool_parses_and_refuses() {
        assert_eq!(
            Pool::parse(DEFAULT_POOL).unwrap(),
            Pool {
                start: 1_000_000,
                count: 1_000_000_000
            }
        );
        for bad in ["", "1000000", "0:100000", "1000:100", "x:y", "4294000000:1000000"] {
            assert!(Pool::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn allocation_takes_the_lowest_free_block_and_runs_out() {
        let pool = Pool {
            start: 100_000,
            count: 3 * RANGE,
        };
        let a = allocate(pool, &[]).unwrap();
        assert_eq!(
            a,
            IdMap {
                uid: 100_000,
                gid: 100_000
            }
        );
        let b = allocate(pool, &[(ct(101), a)]).unwrap();
        assert_eq!(b.uid, 100_000 + RANGE);
        // A hand-written range that straddles two blocks takes both.
        let odd = IdMap {
            uid: 100_000 + RANGE + 10,
            gid: 100_000 + RANGE + 10,
        };
        let c = allocate(pool, &[(ct(101), a), (ct(102), odd)]);
        assert!(c.is_err(), "{c:?}");
        assert!(c.unwrap_err().contains("no free id range"));
        // uids and gids are both considered.
        let gid_only = IdMap {
            uid: 100_000 + 2 * RANGE,
            gid: 100_000,
        };
        assert_eq!(allocate(pool, &[(ct(101), gid_only)]).unwrap().uid, 100_000 + RANGE);
    }

    #[test]
    fn check_refuses_outside_the_pool_and_overlaps() {
        let pool = Pool {
            start: 100_000,
            count: 4 * RANGE,
        };
        let m = IdMap {
            uid: 100_000,
            gid: 100_000,
        };
        assert!(check(ct(101), m, pool, &[(ct(101), m)]).is_ok());
        let e = check(ct(102), m, pool, &[(ct(101), m)]).unwrap_err();
        assert!(e.contains("overlap") && e.contains("101"), "{e}");
        let e = check(
            ct(101),
            IdMap {
                uid: 50_000,
                gid: 100_000,
            },
            pool,
            &[],
        )
        .unwrap_err();
        assert!(e.contains("outside"), "{e}");
        let e = check(
            ct(101),
            IdMap {
                uid: 100_000 + 3 * RANGE + 1,
                gid: 100_000,
            },
            pool,
            &[],
        )
        .unwrap_err();
        assert!(e.contains("outside"), "{e}");
    }

    #[test]
    fn config_is_read_strictly() {
        let c = |s: &str| Config::parse(s, Path::new("t")).unwrap();
        assert_eq!(from_config(&c("")).unwrap(), None);
        assert!(from_config(&c("USERNS=\"yes\"\n"))
            .unwrap_err()
            .contains("LOCAL_UID is not set"));
        assert_eq!(
            from_config(&c("USERNS=\"yes\"\nLOCAL_UID=\"1000000\"\nLOCAL_GID=\"1065536\"\n")).unwrap(),
            Some(IdMap {
                uid: 1_000_000,
                gid: 1_065_536
            })
        );
        assert_eq!(from_config(&c("USERNS=\"no\"\nLOCAL_UID=\"5\"\n")).unwrap(), None);
        assert!(from_config(&c("USERNS=\"maybe\"\n")).is_err());
        assert!(from_config(&c("USERNS=\"yes\"\nLOCAL_UID=\"x\"\nLOCAL_GID=\"1\"\n")).is_err());
    }

    #[test]
    fn map_lines() {
        let m = IdMap {
            uid: 1_000_000,
            gid: 2_000_000,
        };
        assert_eq!(m.map_line(false), "0 1000000 65536\n");
        assert_eq!(m.map_line(true), "0 2000000 65536\n");
    }
}
