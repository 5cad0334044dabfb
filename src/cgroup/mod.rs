//! Control groups: one cgroup per container, on cgroup v1 (a hierarchy per controller) or
//! cgroup v2 (unified), chosen at run time from what is mounted.
//!
//! All kernel access goes through paths below the mount points found in
//! `/proc/self/mountinfo`, so the logic runs against fixture directories in unit tests.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::ctid::Ctid;

pub mod devfilter;
pub mod limits;
pub use limits::{Counters, Freezer};

#[derive(Debug, Error)]
pub enum CgroupError {
    #[error("no cgroup file system is mounted (looked in /proc/self/mountinfo); mount cgroup v2 on /sys/fs/cgroup or the v1 hierarchies")]
    NoCgroupFs,
    #[error("cgroup operation on {path} failed")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cgroup {path} still has processes after {waited:?}")]
    Busy { path: PathBuf, waited: Duration },
    #[error("the {0} controller is not available on this host")]
    NoController(String),
    #[error("{0}")]
    Unsupported(String),
    #[error(
        "{path} did not freeze within {waited:?} (a process in uninterruptible sleep?); the container was thawed again"
    )]
    FreezeTimeout { path: PathBuf, waited: Duration },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One mounted hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where it is mounted.
    pub mount: PathBuf,
    /// Its controllers (v1), e.g. `["cpu", "cpuacct"]`, or `["name=systemd"]`; empty for v2.
    pub controllers: Vec<String>,
    pub v2: bool,
}

/// Which cgroup version drives the resource controllers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Version {
    V1,
    V2,
}

/// The host's cgroup layout and the parent under which containers live.
#[derive(Debug, Clone)]
pub struct Cgroups {
    /// Every hierarchy a container joins; the first one is read for the process list.
    hierarchies: Vec<Hierarchy>,
    version: Version,
    parent: String,
}

impl Cgroups {
    /// Finds the mounted hierarchies of this process's mount namespace.
    pub fn detect(parent: &str) -> Result<Self, CgroupError> {
        let info = fs::read_to_string("/proc/self/mountinfo").map_err(io_err(Path::new("/proc/self/mountinfo")))?;
        Self::from_mountinfo(&info, parent)
    }

    /// Builds the layout from mountinfo text (unit-testable with fixture roots).
    pub fn from_mountinfo(info: &str, parent: &str) -> Result<Self, CgroupError> {
        let mut v1 = Vec::new();
        let mut v2 = Vec::new();
        for line in info.lines() {
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            if pre.len() < 5 || post.len() < 3 {
                continue;
            }
            // Only hierarchies mounted at their root: a bind of a sub-cgroup is not a place to
            // create containers' cgroups in.
            if pre[3] != "/" {
                continue;
            }
            let mount = PathBuf::from(crate::fsutil::unescape_mountinfo(pre[4]));
            match post[0] {
                "cgroup" => {
                    let controllers: Vec<String> = post[2]
                        .split(',')
                        .filter(|o| {
                            !matches!(
                                *o,
                                "rw" | "ro"
                                    | "relatime"
                                    | "noatime"
                                    | "nosuid"
                                    | "nodev"
                                    | "noexec"
                                    | "clone_children"
                                    | "xattr"
                            ) && !o.starts_with("release_agent")
                        })
                        .map(str::to_string)
                        .collect();
                    if !controllers.is_empty() && !v1.iter().any(|h: &Hierarchy| h.controllers == controllers) {
                        v1.push(Hierarchy {
                            mount,
                            controllers,
                            v2: false,
                        });
                    }
                }
                "cgroup2" if v2.is_empty() => v2.push(Hierarchy {
                    mount,
                    controllers: vec![],
                    v2: true,
                }),
                _ => {}
            }
        }
        let (mut hierarchies, version) = if v1.iter().any(|h| !h.controllers.iter().all(|c| c.starts_with("name="))) {
            // Hybrid or pure v1: the v1 controllers rule; the unified mount (if any) is joined
            // too, for its freezer and so that the process's membership is complete.
            let mut h = v1;
            h.extend(v2);
            (h, Version::V1)
        } else if !v2.is_empty() {
            (v2, Version::V2)
        } else {
            return Err(CgroupError::NoCgroupFs);
        };
        // Read the process list from a hierarchy every process is in: pids, freezer or v2.
        if let Some(i) = hierarchies
            .iter()
            .position(|h| h.v2 || h.controllers.iter().any(|c| c == "pids"))
        {
            let h = hierarchies.remove(i);
            hierarchies.insert(0, h);
        }
        Ok(Self {
            hierarchies,
            version,
            parent: parent.to_string(),
        })
    }

    pub fn parent_name(&self) -> &str {
        &self.parent
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn hierarchies(&self) -> &[Hierarchy] {
        &self.hierarchies
    }

    /// The container's cgroup directory in one hierarchy.
    pub fn dir(&self, h: &Hierarchy, ctid: Ctid) -> PathBuf {
        h.mount.join(&self.parent).join(ctid.to_string())
    }

    /// The container's directories in every hierarchy.
    pub fn dirs(&self, ctid: Ctid) -> Vec<PathBuf> {
        self.hierarchies.iter().map(|h| self.dir(h, ctid)).collect()
    }

    /// The container's directory in the v1 hierarchy that has `controller`, or the v2 one.
    pub fn controller_dir(&self, controller: &str, ctid: Ctid) -> Option<PathBuf> {
        self.hierarchies
            .iter()
            .find(|h| {
                if self.version == Version::V2 {
                    h.v2
                } else {
                    h.controllers.iter().any(|c| c == controller)
                }
            })
            .map(|h| self.dir(h, ctid))
    }

    /// Creates the container's cgroup in every hierarchy (and the parent), idempotently.
    pub fn create(&self, ctid: Ctid) -> Result<(), CgroupError> {
        for h in &self.hierarchies {
            let parent = h.mount.join(&self.parent);
            let dir = self.dir(h, ctid);
            for d in [&parent, &dir] {
                match fs::create_dir(d) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(io_err(d)(e)),
                }
                if d == &dir && h.controllers.iter().any(|c| c == "devices") {
                    restrict_devices(d)?;
                }
                if d == &dir && h.v2 && self.version == Version::V2 && is_cgroup2(d) {
                    devfilter::attach(d, &device_rules()).map_err(io_err(d))?;
                }
                if h.controllers.iter().any(|c| c == "cpuset") {
                    // A v1 cpuset cgroup takes no process until it has cpus and mems.
                    for f in ["cpuset.cpus", "cpuset.mems"] {
                        let cur = fs::read_to_string(d.join(f)).unwrap_or_default();
                        if cur.trim().is_empty() {
                            let from = d.parent().unwrap().join(f);
                            let v = fs::read_to_string(&from).map_err(io_err(&from))?;
                            fs::write(d.join(f), v.trim()).map_err(io_err(&d.join(f)))?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Moves a process (host pid) into the container's cgroup.
    pub fn join(&self, ctid: Ctid, pid: i32) -> Result<(), CgroupError> {
        for d in self.dirs(ctid) {
            let p = d.join("cgroup.procs");
            fs::write(&p, pid.to_string()).map_err(io_err(&p))?;
        }
        Ok(())
    }

    /// Host pids of the container's processes, in its cgroup and every cgroup below it (a
    /// container whose init is systemd makes its own in its delegated v2 subtree); empty when
    /// the cgroup does not exist.
    pub fn pids(&self, ctid: Ctid) -> Result<Vec<i32>, CgroupError> {
        let Some(h) = self.hierarchies.first() else {
            return Ok(vec![]);
        };
        let mut pids = Vec::new();
        for d in subtree(&self.dir(h, ctid))? {
            let p = d.join("cgroup.procs");
            match fs::read_to_string(&p) {
                Ok(s) => pids.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
                // A cgroup the container removed meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&p)(e)),
            }
        }
        Ok(pids)
    }

    /// Hands the container's cgroup v2 directory to its root (host ids `uid`/`gid`), as
    /// systemd's delegation does: it may make cgroups below it and move its processes between
    /// them; the limit files of the directory itself stay the host's. Nothing to do where no
    /// v2 hierarchy is mounted (the caller refuses what needs one).
    pub fn delegate(&self, ctid: Ctid, uid: u32, gid: u32) -> Result<(), CgroupError> {
        for h in self.hierarchies.iter().filter(|h| h.v2) {
            let dir = self.dir(h, ctid);
            for p in std::iter::once(dir.clone()).chain(
                ["cgroup.procs", "cgroup.threads", "cgroup.subtree_control"]
                    .iter()
                    .map(|f| dir.join(f)),
            ) {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid)).map_err(io_err(&p))?;
            }
        }
        Ok(())
    }

    /// The container's cgroup and those below it in the v2 hierarchy, relative to it
    /// (`.`, `system.slice/lighttpd.service`), parents first, each with the controllers its
    /// `cgroup.subtree_control` enables: what a systemd container made in its delegated
    /// subtree, which a dump records ([`TREE_FILE`]) because CRIU restores only the cgroups
    /// that hold processes, and systemd watches the empty ones too (and files of controllers).
    pub fn v2_subtree(&self, ctid: Ctid) -> Result<Vec<migrate_proto::cgroups::Cgroup>, CgroupError> {
        let Some(h) = self.unified() else {
            return Ok(vec![]);
        };
        let top = self.dir(h, ctid);
        let mut out = Vec::new();
        for d in subtree(&top)? {
            let Ok(rel) = d.strip_prefix(&top) else { continue };
            let rel = rel.to_string_lossy();
            let controllers = match fs::read_to_string(d.join("cgroup.subtree_control")) {
                Ok(s) => s.split_whitespace().map(String::from).collect(),
                // A cgroup the container removed meanwhile (or a directory without the file,
                // which no cgroup file system has).
                Err(e) if e.kind() == io::ErrorKind::NotFound && d.is_dir() => Vec::new(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err(&d.join("cgroup.subtree_control"))(e)),
            };
            let path = if rel.is_empty() {
                migrate_proto::cgroups::OWN.to_string()
            } else {
                rel.into_owned()
            };
            out.push(migrate_proto::cgroups::Cgroup { path, controllers });
        }
        Ok(out)
    }

    /// Before a restore: makes the cgroups a dump recorded ([`TREE_FILE`]'s text, which may
    /// come from a peer: checked, bounded, confined below the container's cgroup) in the v2
    /// hierarchy, parents first, and hands them and the container's own cgroup to its root
    /// (host ids), as [`Cgroups::delegate`] and systemd inside expect. Returns the list for
    /// [`Cgroups::restore_v2_controllers`], which the restore calls once CRIU has set up the
    /// cgroup namespace (CRIU moves the restored init into the container's own cgroup to make
    /// it, and a cgroup that enables controllers for its children takes no process).
    pub fn restore_v2_subtree(
        &self,
        ctid: Ctid,
        list: &str,
        uid: u32,
        gid: u32,
    ) -> Result<Vec<migrate_proto::cgroups::Cgroup>, CgroupError> {
        let list = migrate_proto::cgroups::parse_tree(list).map_err(CgroupError::Unsupported)?;
        let Some(h) = self.unified() else {
            return Err(CgroupError::NoController("cgroup v2 (unified)".into()));
        };
        self.delegate(ctid, uid, gid)?;
        let top = self.dir(h, ctid);
        for c in list.iter().filter(|c| c.path != migrate_proto::cgroups::OWN) {
            let d = top.join(&c.path);
            match fs::create_dir(&d) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(&d)(e)),
            }
            self.give_cgroup(&d, uid, gid)?;
        }
        Ok(list)
    }

    /// During a restore, once CRIU has made the cgroup namespace and moved the restored init
    /// on from the container's own cgroup (waited for, at most `wait`): enables the controllers
    /// each cgroup of `list` ([`Cgroups::restore_v2_subtree`]) had for its children, parents
    /// first, before CRIU reopens what systemd watched (`init.scope/memory.events`), and hands
    /// the files they make to the container's root. A controller this host does not offer
    /// there is an error naming it.
    pub fn restore_v2_controllers(
        &self,
        ctid: Ctid,
        list: &[migrate_proto::cgroups::Cgroup],
        uid: u32,
        gid: u32,
        wait: Duration,
    ) -> Result<(), CgroupError> {
        let Some(h) = self.unified() else {
            return Err(CgroupError::NoController("cgroup v2 (unified)".into()));
        };
        let top = self.dir(h, ctid);
        if list.iter().all(|c| c.controllers.is_empty()) {
            return Ok(());
        }
        // The restored init has been in the container's own cgroup and left it for its own.
        let procs = |d: &Path| fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        let deadline = Instant::now() + wait;
        loop {
            let below = subtree(&top)?.iter().skip(1).any(|d| !procs(d).trim().is_empty());
            if below && procs(&top).trim().is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(CgroupError::Unsupported(format!(
                    "the restored init did not reach its own cgroup below {} within {} s",
                    top.display(),
                    wait.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for c in list {
            let own = c.path == migrate_proto::cgroups::OWN;
            let d = if own { top.clone() } else { top.join(&c.path) };
            if !c.controllers.is_empty() {
                let offered =
                    fs::read_to_string(d.join("cgroup.controllers")).map_err(io_err(&d.join("cgroup.controllers")))?;
                if let Some(missing) = c
                    .controllers
                    .iter()
                    .find(|n| !offered.split_whitespace().any(|o| o == n.as_str()))
                {
                    return Err(CgroupError::Unsupported(format!(
                        "the dump's cgroup {} had controller {missing} enabled for its children, which this host does not offer there (it offers: {})",
                        c.path,
                        offered.trim()
                    )));
                }
                let p = d.join("cgroup.subtree_control");
                let enable: Vec<String> = c.controllers.iter().map(|n| format!("+{n}")).collect();
                fs::write(&p, enable.join(" ")).map_err(io_err(&p))?;
            }
        }
        for c in list.iter().filter(|c| c.path != migrate_proto::cgroups::OWN) {
            self.give_cgroup(&top.join(&c.path), uid, gid)?;
        }
        Ok(())
    }

    /// Below the delegation point everything is the container's: a cgroup directory and every
    /// interface file in it.
    fn give_cgroup(&self, d: &Path, uid: u32, gid: u32) -> Result<(), CgroupError> {
        std::os::unix::fs::lchown(d, Some(uid), Some(gid)).map_err(io_err(d))?;
        for e in fs::read_dir(d).map_err(io_err(d))?.flatten() {
            if e.file_type().is_ok_and(|t| t.is_file()) {
                std::os::unix::fs::lchown(e.path(), Some(uid), Some(gid)).map_err(io_err(&e.path()))?;
            }
        }
        Ok(())
    }

    /// The v2 hierarchy, if one is mounted.
    pub fn unified(&self) -> Option<&Hierarchy> {
        self.hierarchies.iter().find(|h| h.v2)
    }

    /// The `cgroup.procs` files a command run in the container joins: its cgroup in each
    /// hierarchy, except that in the v2 hierarchy it joins the cgroup `init_pid` (the
    /// container's init, a host pid) is in, when that is below the container's own: systemd
    /// moves itself into `init.scope`, and a v2 cgroup with controllers enabled below it takes
    /// no process itself.
    pub fn open_procs_beside(&self, ctid: Ctid, init_pid: i32) -> Result<Vec<fs::File>, CgroupError> {
        let own = std::fs::read_to_string(format!("/proc/{init_pid}/cgroup")).unwrap_or_default();
        self.hierarchies
            .iter()
            .map(|h| {
                let top = self.dir(h, ctid);
                let dir = if h.v2 {
                    init_v2_cgroup(&own)
                        .map(|rel| h.mount.join(rel))
                        .filter(|d| d.starts_with(&top) && d.is_dir())
                        .unwrap_or(top)
                } else {
                    top
                };
                let p = dir.join("cgroup.procs");
                fs::OpenOptions::new().write(true).open(&p).map_err(io_err(&p))
            })
            .collect()
    }

    /// Sends SIGKILL to every process of the container until none is left, or `timeout`.
    pub fn kill_all(&self, ctid: Ctid, timeout: Duration) -> Result<(), CgroupError> {
        let start = Instant::now();
        loop {
            let pids = self.pids(ctid)?;
            if pids.is_empty() {
                return Ok(());
            }
            for pid in pids {
                // SAFETY: kill(2) with a pid read from the container's cgroup; no memory involved.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            if start.elapsed() > timeout {
                return Err(CgroupError::Busy {
                    path: self.dir(&self.hierarchies[0], ctid),
                    waited: timeout,
                });
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// Removes the container's cgroup everywhere, the cgroups its processes made below it
    /// first. Processes that are exiting keep a cgroup busy for a moment, so removal is
    /// retried until `timeout`.
    pub fn remove(&self, ctid: Ctid, timeout: Duration) -> Result<(), CgroupError> {
        let start = Instant::now();
        let mut all = Vec::new();
        for top in self.dirs(ctid) {
            // Deepest first.
            all.extend(subtree(&top)?.into_iter().rev());
        }
        for d in all {
            loop {
                match fs::remove_dir(&d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && start.elapsed() < timeout => {
                        sleep(Duration::from_millis(20))
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        return Err(CgroupError::Busy {
                            path: d,
                            waited: timeout,
                        })
                    }
                    Err(e) => return Err(io_err(&d)(e)),
                }
            }
        }
        Ok(())
    }

    /// Does the container's cgroup exist in the first hierarchy?
    pub fn exists(&self, ctid: Ctid) -> bool {
        self.hierarchies.first().is_some_and(|h| self.dir(h, ctid).is_dir())
    }
}

/// The file in a dump's images that lists a systemd container's cgroups
/// ([`Cgroups::v2_subtree`]), in [`migrate_proto::cgroups::parse_tree`]'s form.
pub const TREE_FILE: &str = "ferry-cgroups";

/// A cgroup directory and every directory below it, parents before children; empty when it
/// does not exist. Symbolic links are not followed (cgroup file systems have none).
fn subtree(top: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let mut out = Vec::new();
    if !top.is_dir() {
        return Ok(out);
    }
    out.push(top.to_path_buf());
    let mut i = 0;
    while i < out.len() {
        let d = out[i].clone();
        i += 1;
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            // Removed meanwhile.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&d)(e)),
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(e.path());
            }
        }
    }
    Ok(out)
}

/// The v2 cgroup in a `/proc/PID/cgroup` text (`0::/ferry/101/init.scope`), relative, when it
/// is a plain path (no `..`, no deleted marker).
fn init_v2_cgroup(proc_cgroup: &str) -> Option<PathBuf> {
    let path = proc_cgroup.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
    let rel = path.strip_prefix('/')?;
    let p = Path::new(rel);
    p.components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
        .then(|| p.to_path_buf())
}

/// The devices a container may use (v1: its devices cgroup; v2: its device filter,
/// [`devfilter`]; OpenVZ's and LXC's default set):
/// null, zero, full, random, urandom, tty, console, ptmx and every pty, read, write and mknod;
/// and mknod of any other node, which it then cannot open. Nothing else is reachable, even
/// through a node that appears in its file system (a template's, a bind mount's).
pub const ALLOWED_DEVICES: &[&str] = &[
    "c *:* m",
    "b *:* m",
    "c 1:3 rwm",
    "c 1:5 rwm",
    "c 1:7 rwm",
    "c 1:8 rwm",
    "c 1:9 rwm",
    "c 5:0 rwm",
    "c 5:1 rwm",
    "c 5:2 rwm",
    "c 136:* rwm",
];

/// [`ALLOWED_DEVICES`] as rules for the v2 device filter.
pub fn device_rules() -> Vec<devfilter::Rule> {
    ALLOWED_DEVICES
        .iter()
        .filter_map(|s| devfilter::parse_rule(s))
        .collect()
}

/// Is `dir` on a cgroup v2 file system (not a test's fixture)?
fn is_cgroup2(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// Denies every device to a container's v1 devices cgroup `dir`, then allows
/// [`ALLOWED_DEVICES`] (idempotent: a restore or a second start writes the same).
fn restrict_devices(dir: &Path) -> Result<(), CgroupError> {
    let deny = dir.join("devices.deny");
    fs::write(&deny, "a").map_err(io_err(&deny))?;
    let allow = dir.join("devices.allow");
    for rule in ALLOWED_DEVICES {
        fs::write(&allow, rule).map_err(io_err(&allow))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inits_v2_cgroup_is_read_only_when_it_is_a_plain_path() {
        assert_eq!(
            init_v2_cgroup("12:pids:/ferry/101\n0::/ferry/101/init.scope\n"),
            Some(PathBuf::from("ferry/101/init.scope"))
        );
        assert_eq!(init_v2_cgroup("0::/ferry/101/../../x\n"), None);
        assert_eq!(
            init_v2_cgroup("0::/ferry/101 (deleted)\n").map(|p| p.is_absolute()),
            Some(false)
        );
        assert_eq!(init_v2_cgroup("3:cpu:/ferry/101\n"), None);
    }

    #[test]
    fn pids_and_removal_cover_the_cgroups_made_below() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().to_str().unwrap();
        let info = format!("1 0 0:1 / {m} rw - cgroup2 cgroup2 rw\n");
        let c = Cgroups::from_mountinfo(&info, "ferry").unwrap();
        let id = Ctid::new(101).unwrap();
        c.create(id).unwrap();
        let top = d.path().join("ferry/101");
        fs::create_dir_all(top.join("system.slice/x.service")).unwrap();
        fs::create_dir_all(top.join("init.scope")).unwrap();
        fs::write(top.join("init.scope/cgroup.procs"), "1\n").unwrap();
        fs::write(top.join("system.slice/x.service/cgroup.procs"), "7\n8\n").unwrap();
        let mut p = c.pids(id).unwrap();
        p.sort();
        assert_eq!(p, vec![1, 7, 8]);
        fs::write(top.join("cgroup.subtree_control"), "memory pids\n").unwrap();
        let listed = c.v2_subtree(id).unwrap();
        let text = migrate_proto::cgroups::format_tree(&listed);
        assert_eq!(migrate_proto::cgroups::parse_tree(&text).unwrap(), listed);
        let mut paths: Vec<&str> = listed.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths[0], ".");
        assert_eq!(listed[0].controllers, ["memory", "pids"]);
        paths.sort();
        assert_eq!(paths, [".", "init.scope", "system.slice", "system.slice/x.service"]);
        fs::remove_file(top.join("init.scope/cgroup.procs")).unwrap();
        fs::remove_file(top.join("system.slice/x.service/cgroup.procs")).unwrap();
        fs::remove_file(top.join("cgroup.subtree_control")).unwrap();
        c.remove(id, Duration::from_millis(10)).unwrap();
        assert!(!top.exists());
    }

    const HYBRID: &str = "\
25 1 0:23 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755
26 25 0:24 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
27 25 0:25 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
28 25 0:26 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
29 25 0:27 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
30 25 0:28 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
31 25 0:26 /sub /mnt/bound rw,relatime - cgroup cgroup rw,pids
";

    #[test]
    fn hybrid_is_v1_with_pids_first_and_unified_joined() {
        let c = Cgroups::from_mountinfo(HYBRID, "ferry").unwrap();
        assert_eq!(c.version(), Version::V1);
        let mounts: Vec<_> = c
            .hierarchies()
            .iter()
            .map(|h| h.mount.to_str().unwrap().to_string())
            .collect();
        assert_eq!(mounts[0], "/sys/fs/cgroup/pids");
        assert_eq!(mounts.len(), 5, "{mounts:?}");
        assert!(mounts.contains(&"/sys/fs/cgroup/unified".to_string()));
        let id = Ctid::new(101).unwrap();
        assert_eq!(
            c.controller_dir("cpu", id).unwrap(),
            PathBuf::from("/sys/fs/cgroup/cpu/ferry/101")
        );
        assert_eq!(c.controller_dir("memory", id), None);
    }

    #[test]
    fn pure_v2() {
        let info = "30 25 0:28 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n";
        let c = Cgroups::from_mountinfo(info, "ferry-hostA").unwrap();
        assert_eq!(c.version(), Version::V2);
        let id = Ctid::new(7).unwrap();
        assert_eq!(c.dirs(id), vec![PathBuf::from("/sys/fs/cgroup/ferry-hostA/7")]);
        assert_eq!(
            c.controller_dir("memory", id).unwrap(),
            PathBuf::from("/sys/fs/cgroup/ferry-hostA/7")
        );
    }

    #[test]
    fn nothing_mounted() {
        assert!(matches!(
            Cgroups::from_mountinfo("1 0 8:1 / / rw - ext4 /dev/vda rw\n", "ferry"),
            Err(CgroupError::NoCgroupFs)
        ));
    }

    #[test]
    fn create_list_remove_against_a_fixture_tree() {
        let d = tempfile::tempdir().unwrap();
        let m = d.path().to_str().unwrap();
        fs::create_dir_all(d.path().join("cpuset")).unwrap();
        fs::write(d.path().join("cpuset/cpuset.cpus"), "0-1\n").unwrap();
        fs::write(d.path().join("cpuset/cpuset.mems"), "0\n").unwrap();
        fs::create_dir_all(d.path().join("pids")).unwrap();
        let info = format!(
            "1 0 0:1 / {m}/cpuset rw - cgroup cgroup rw,cpuset\n2 0 0:2 / {m}/pids rw - cgroup cgroup rw,pids\n"
        );
        let c = Cgroups::from_mountinfo(&info, "ferry").unwrap();
        let id = Ctid::new(101).unwrap();
        c.create(id).unwrap();
        c.create(id).unwrap();
        assert_eq!(
            fs::read_to_string(d.path().join("cpuset/ferry/101/cpuset.cpus")).unwrap(),
            "0-1"
        );
        assert_eq!(
            fs::read_to_string(d.path().join("cpuset/ferry/cpuset.mems")).unwrap(),
            "0"
        );
        assert!(c.exists(id));
        fs::write(d.path().join("pids/ferry/101/cgroup.procs"), "12\n34\n").unwrap();
        assert_eq!(c.pids(id).unwrap(), vec![12, 34]);
        // A fixture directory holds files, so rmdir fails with ENOTEMPTY, which is reported.
        assert!(matches!(
            c.remove(id, Duration::from_millis(10)),
            Err(CgroupError::Io { .. })
        ));
        fs::remove_file(d.path().join("pids/ferry/101/cgroup.procs")).unwrap();
        fs::remove_file(d.path().join("cpuset/ferry/101/cpuset.cpus")).unwrap();
        fs::remove_file(d.path().join("cpuset/ferry/101/cpuset.mems")).unwrap();
        c.remove(id, Duration::from_millis(10)).unwrap();
        assert!(!c.exists(id));
        assert_eq!(c.pids(id).unwrap(), Vec::<i32>::new());
    }
}
