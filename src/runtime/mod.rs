//! The container lifecycle: create, mount, start, stop, exec, enter, destroy, status.
//!
//! No daemon is involved: every operation is a short-lived command that takes the container's
//! lock, does its work and leaves the container in a state that the next command can read back
//! from the host (configuration, mount table, `vz/run/CTID.json`, the cgroup).

pub mod caps;
pub mod console;
pub mod proc;
mod pty;
pub mod seccomp;
pub mod spawn;
pub mod state;
pub(crate) mod sys;
pub mod userns;

use std::ffi::CString;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::cgroup::{CgroupError, Cgroups};
use crate::config::Config;
use crate::ctid::Ctid;
use crate::exitcode::ExitCode;
use crate::host::{Container, Host, HostError};
use crate::lock::{CtLock, LockError};
use crate::template::{self, TemplateError};
use spawn::SpawnError;
use state::RunState;

#[derive(Debug, Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Host(#[from] HostError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("container {0}: cgroup")]
    Cgroup(Ctid, #[source] CgroupError),
    #[error("container {0} failed to start")]
    Start(Ctid, #[source] SpawnError),
    #[error("container {0}: network")]
    Net(Ctid, #[source] crate::net::NetError),
    #[error("container {0}: storage")]
    Storage(Ctid, #[source] crate::storage::StorageError),
    #[error("container {0}")]
    Exec(Ctid, #[source] SpawnError),
    #[error("container {0} already exists ({1}); choose another CTID or destroy it first")]
    Exists(Ctid, PathBuf),
    #[error("container {0} is not running")]
    NotRunning(Ctid),
    #[error("container {0} is running; stop it first")]
    Running(Ctid),
    #[error("container {0} is mounted; unmount it first")]
    Mounted(Ctid),
    #[error("container {0} is not mounted")]
    NotMounted(Ctid),
    #[error("container {0} has no private area at {1}")]
    NoPrivate(Ctid, PathBuf),
    #[error("container {0} cannot start: {1} not found in its root file system")]
    BadContainer(Ctid, String),
    #[error("container {ctid} cannot start: its init {init} is systemd, which needs {needs}")]
    InitNeeds { ctid: Ctid, init: String, needs: String },
    #[error("container {ctid}: {what}")]
    BadValue { ctid: Ctid, what: String },
    #[error("container {ctid}: the address {addr} is already used by container {other}")]
    AddressInUse { ctid: Ctid, addr: String, other: Ctid },
    #[error("container {0} did not stop within {1:?}")]
    StopFailed(Ctid, Duration),
    #[error("container {0} is disabled (DISABLED=\"yes\"): start it with --force, or enable it with vzctl set {0} --disabled no --save")]
    Disabled(Ctid),
    #[error("container {ctid}: {what}")]
    Io {
        ctid: Ctid,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("container {ctid}: mounting {what} failed")]
    Mount {
        ctid: Ctid,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("container {ctid}: unmounting {what} failed")]
    Umount {
        ctid: Ctid,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("container {ctid}: destroying it failed; what is left is in {path}")]
    Destroy {
        ctid: Ctid,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl RuntimeError {
    pub fn exit_code(&self) -> ExitCode {
        use RuntimeError::*;
        match self {
            Host(e) => e.exit_code(),
            Lock(LockError::Locked { .. }) => ExitCode::Locked,
            Lock(_) => ExitCode::SystemError,
            Template(e) => e.exit_code(),
            Cgroup(..) => ExitCode::SystemError,
            Start(..) => ExitCode::StartFailed,
            Net(..) => ExitCode::NetFailed,
            Storage(_, crate::storage::StorageError::BadLayout(_) | crate::storage::StorageError::TooSmall(_)) => {
                ExitCode::BadValue
            }
            Storage(_, crate::storage::StorageError::ShrinkMounted) => ExitCode::Running,
            Storage(..) => ExitCode::MountFailed,
            Exec(..) => ExitCode::SystemError,
            Exists(..) => ExitCode::Exists,
            NotRunning(_) => ExitCode::NotRunning,
            Running(_) => ExitCode::Running,
            Mounted(_) => ExitCode::Mounted,
            NotMounted(_) => ExitCode::NotMounted,
            NoPrivate(..) => ExitCode::NoPrivate,
            BadContainer(..) | InitNeeds { .. } => ExitCode::BadContainer,
            BadValue { .. } => ExitCode::BadValue,
            AddressInUse { .. } => ExitCode::AddressInUse,
            StopFailed(..) => ExitCode::StopFailed,
            Disabled(_) => ExitCode::StartFailed,
            Io { .. } => ExitCode::SystemError,
            Mount { .. } => ExitCode::MountFailed,
            Umount { .. } => ExitCode::UmountFailed,
            Destroy { .. } => ExitCode::DestroyFailed,
        }
    }
}

type Result<T> = std::result::Result<T, RuntimeError>;

/// Where the host roots of this machine claim their CGROUP_PARENT (one file per parent naming
/// its root; tmpfs, gone at reboot with the cgroups themselves).
pub const CGROUP_PARENT_CLAIMS: &str = "/run/ferry/cgroup-parents";

fn io_err(ctid: Ctid, what: impl Into<String>) -> impl FnOnce(io::Error) -> RuntimeError {
    let what = what.into();
    move |source| RuntimeError::Io { ctid, what, source }
}

/// A container's state as `vzctl status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    pub ctid: Ctid,
    /// Its configuration file exists.
    pub exist: bool,
    pub mounted: bool,
    pub running: bool,
    /// The container's init as the host sees it, while running.
    pub init_pid: Option<i32>,
}

impl Status {
    /// OpenVZ's one-line form: `CTID 101 exist mounted running`.
    pub fn line(&self) -> String {
        format!(
            "CTID {} {} {} {}",
            self.ctid,
            if self.exist { "exist" } else { "deleted" },
            if self.mounted { "mounted" } else { "unmounted" },
            if self.running { "running" } else { "down" }
        )
    }
}

/// What `vzctl create` takes.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub ostemplate: Option<String>,
    pub config_sample: Option<String>,
    pub ipadd: Vec<String>,
    pub hostname: Option<String>,
    pub name: Option<String>,
    /// simfs or image (default: VE_LAYOUT in vz.conf, else simfs).
    pub layout: Option<String>,
    /// SOFT[:HARD]; for the image layout the hard limit is the image size.
    pub diskspace: Option<String>,
    pub diskinodes: Option<String>,
    /// yes or no (default: USERNS in vz.conf, else yes).
    pub userns: Option<String>,
}

/// Stores a container's configuration (`Runtime::assign_idmap`).
pub type ConfigWriter<'a> = &'a dyn Fn(&Config) -> Result<()>;

/// Operations on the containers of one host.
pub struct Runtime {
    pub host: Host,
    cgroups: std::cell::OnceCell<Cgroups>,
    /// Containers whose lock a [`Hold`] of this runtime keeps: its operations on them do not
    /// lock again.
    held: std::cell::RefCell<Vec<Ctid>>,
}

/// A container's lock kept across several operations of one runtime (a migration: nothing else
/// may stop, set or checkpoint the container between its steps). Released on drop.
pub struct Hold<'a> {
    rt: &'a Runtime,
    ctid: Ctid,
    _lock: CtLock,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.rt.held.borrow_mut().retain(|c| *c != self.ctid);
    }
}

impl Runtime {
    pub fn new(host: Host) -> Self {
        Self {
            host,
            cgroups: std::cell::OnceCell::new(),
            held: Default::default(),
        }
    }

    pub fn cgroups(&self, ctid: Ctid) -> Result<&Cgroups> {
        if let Some(c) = self.cgroups.get() {
            return Ok(c);
        }
        let c = Cgroups::detect(&self.host.cgroup_parent()).map_err(|e| RuntimeError::Cgroup(ctid, e))?;
        Ok(self.cgroups.get_or_init(|| c))
    }

    /// [`Host::claim_cgroup_parent`] in the machine's claims directory
    /// ([`CGROUP_PARENT_CLAIMS`]).
    pub fn claim_cgroup_parent(&self) -> Result<()> {
        Ok(self.host.claim_cgroup_parent(Path::new(CGROUP_PARENT_CLAIMS))?)
    }

    /// The host's uplink and default bridge (UPLINK, BRIDGE in vz.conf).
    pub fn host_net(&self) -> crate::net::HostNet {
        crate::net::HostNet::detect(self.host.global.get("UPLINK"), self.host.global.get("BRIDGE"))
    }

    /// The container's lock for one operation (none needed while a [`Hold`] keeps it).
    pub(crate) fn lock(&self, ctid: Ctid) -> Result<Option<CtLock>> {
        if self.held.borrow().contains(&ctid) {
            return Ok(None);
        }
        Ok(Some(CtLock::acquire(&self.host.layout.lock_dir(), ctid)?))
    }

    /// Takes the container's lock until the returned guard is dropped; this runtime's own
    /// operations on it go ahead meanwhile, every other command's are refused.
    pub fn hold(&self, ctid: Ctid) -> Result<Hold<'_>> {
        let lock = CtLock::acquire(&self.host.layout.lock_dir(), ctid)?;
        self.held.borrow_mut().push(ctid);
        Ok(Hold {
            rt: self,
            ctid,
            _lock: lock,
        })
    }

    /// The running state, if the container's init is alive.
    pub fn run_state(&self, ctid: Ctid) -> Result<Option<RunState>> {
        let path = self.host.layout.state_file(ctid);
        let st = RunState::load(&path).map_err(io_err(ctid, format!("reading {}", path.display())))?;
        Ok(st.filter(|s| s.init_alive()))
    }

    pub fn status(&self, ctid: Ctid) -> Result<Status> {
        let mounts = crate::fsutil::MountPoints::read().map_err(io_err(ctid, "reading the mount table"))?;
        self.status_in(ctid, &mounts)
    }

    /// [`Runtime::status`] against a mount table read once for many containers.
    pub fn status_in(&self, ctid: Ctid, mounts: &crate::fsutil::MountPoints) -> Result<Status> {
        let exist = self.host.layout.ct_conf(ctid).exists();
        let (mounted, running, init_pid) = if exist {
            let ct = self.host.container(ctid)?;
            let st = self.run_state(ctid)?;
            let mounted = mounts
                .contains(&ct.root)
                .map_err(io_err(ctid, "reading the mount table"))?;
            (mounted, st.is_some(), st.map(|s| s.init_pid))
        } else {
            (false, false, None)
        };
        Ok(Status {
            ctid,
            exist,
            mounted,
            running,
            init_pid,
        })
    }

    /// Number of processes in the container (None when it is not running).
    pub fn nproc(&self, ctid: Ctid) -> Result<Option<usize>> {
        if self.run_state(ctid)?.is_none() {
            return Ok(None);
        }
        Ok(Some(
            self.cgroups(ctid)?
                .pids(ctid)
                .map_err(|e| RuntimeError::Cgroup(ctid, e))?
                .len(),
        ))
    }

    // ---- create / destroy -------------------------------------------------------------------

    pub fn create(&self, ctid: Ctid, opts: &CreateOptions, progress: &mut dyn FnMut(&str)) -> Result<Container> {
        self.host.initialize()?;
        let _lock = self.lock(ctid)?;
        let conf_path = self.host.layout.ct_conf(ctid);
        if conf_path.exists() {
            return Err(RuntimeError::Exists(ctid, conf_path));
        }
        let bad = |what: String| RuntimeError::BadValue { ctid, what };
        if let Some(n) = &opts.name {
            crate::ctid::validate_name(n).map_err(|e| bad(e.to_string()))?;
            if let Some(other) = self.host.name_owner(n)? {
                return Err(bad(format!("the name {n:?} is already used by container {other}")));
            }
        }
        if let Some(h) = &opts.hostname {
            crate::net::validate_hostname(h).map_err(|e| bad(e.to_string()))?;
        }
        let mut addrs = Vec::new();
        for a in &opts.ipadd {
            let ip = crate::net::parse_ip(a).map_err(|e| bad(e.to_string()))?;
            if let Some(other) = self.address_owner(&ip.addr.to_string())? {
                return Err(RuntimeError::AddressInUse {
                    ctid,
                    addr: ip.addr.to_string(),
                    other,
                });
            }
            if !addrs.contains(&ip.to_string()) {
                addrs.push(ip.to_string());
            }
        }
        let layout = crate::storage::Layout::parse(
            &opts
                .layout
                .clone()
                .unwrap_or_else(|| self.host.setting("VE_LAYOUT", "simfs")),
        )
        .map_err(|e| bad(e.to_string()))?;
        let disk = crate::resources::parse_soft_hard(
            &opts
                .diskspace
                .clone()
                .unwrap_or_else(|| self.host.setting("DISKSPACE", "2G")),
            1024,
            "--diskspace",
        )
        .map_err(|e| bad(e.to_string()))?;
        let inodes = opts
            .diskinodes
            .as_deref()
            .map(|s| crate::resources::parse_soft_hard(s, 1, "--diskinodes"))
            .transpose()
            .map_err(|e| bad(e.to_string()))?;
        if layout == crate::storage::Layout::Image && disk.1 == u64::MAX {
            return Err(bad("the image layout needs a finite --diskspace".into()));
        }
        let userns = userns::parse_flag(
            &opts
                .userns
                .clone()
                .unwrap_or_else(|| self.host.setting("USERNS", "yes")),
        )
        .map_err(bad)?;
        let ostemplate = opts
            .ostemplate
            .clone()
            .unwrap_or_else(|| self.host.setting("DEF_OSTEMPLATE", template::BUSYBOX));
        template::validate_name(&ostemplate)?;
        let sample_name = opts
            .config_sample
            .clone()
            .unwrap_or_else(|| self.host.setting("CONFIGFILE", "basic"));
        if sample_name.is_empty() || sample_name.contains('/') {
            return Err(bad(format!("invalid sample configuration name {sample_name:?}")));
        }
        let sample_path = self.host.layout.sample_conf(&sample_name);
        if !sample_path.is_file() {
            return Err(bad(format!(
                "sample configuration {sample_name:?} not found ({})",
                sample_path.display()
            )));
        }
        let mut config = Config::load(&sample_path).map_err(HostError::from)?;
        let set = |c: &mut Config, k: &str, v: &str| c.set(k, v).map_err(HostError::from);
        set(&mut config, "OSTEMPLATE", &ostemplate)?;
        set(&mut config, "VE_ROOT", &self.host.setting("VE_ROOT", "/vz/root/$VEID"))?;
        set(
            &mut config,
            "VE_PRIVATE",
            &self.host.setting("VE_PRIVATE", "/vz/private/$VEID"),
        )?;
        set(&mut config, "VE_LAYOUT", layout.name())?;
        let stored = crate::resources::Limits {
            diskspace: Some((disk.0 / 1024, disk.1 / 1024)),
            diskinodes: inodes,
            ..Default::default()
        };
        stored.store(&mut config).map_err(HostError::from)?;
        set(&mut config, "ORIGIN_SAMPLE", &sample_name)?;
        if let Some(h) = &opts.hostname {
            set(&mut config, "HOSTNAME", h)?;
        }
        if !addrs.is_empty() {
            set(&mut config, "IP_ADDRESS", &addrs.join(" "))?;
        }
        if let Some(n) = &opts.name {
            set(&mut config, "NAME", n)?;
        }
        // The range is taken under the host's id lock, held until the configuration that
        // records it is written, so two creates never pick the same one.
        let mut _pool_lock = None;
        set(&mut config, "USERNS", if userns { "yes" } else { "no" })?;
        if userns {
            let base = self.host.layout.private_base();
            fs::create_dir_all(&base).map_err(io_err(ctid, format!("mkdir {}", base.display())))?;
            userns::probe(&base).map_err(|e| {
                bad(format!(
                    "this host cannot run containers with a user namespace: {e} (vzctl create --userns no makes a privileged one)"
                ))
            })?;
            _pool_lock = Some(
                userns::pool_lock(&self.host.layout.lock_dir()).map_err(io_err(ctid, "taking the id pool's lock"))?,
            );
            let map = userns::allocate(self.id_pool(ctid)?, &self.idmaps_except(ctid)?).map_err(bad)?;
            set(&mut config, "LOCAL_UID", &map.uid.to_string())?;
            set(&mut config, "LOCAL_GID", &map.gid.to_string())?;
        }
        let ct = self.host.container_from(ctid, config);
        if ct.private.exists() {
            return Err(RuntimeError::Exists(ctid, ct.private.clone()));
        }
        let (cache, comp) = template::cache_for(&self.host.layout, &ostemplate)?;
        progress(&format!("Creating container {ctid} from {}", cache.display()));
        let parent = ct
            .private
            .parent()
            .ok_or_else(|| bad("VE_PRIVATE has no parent directory".into()))?;
        fs::create_dir_all(parent).map_err(io_err(ctid, format!("mkdir {}", parent.display())))?;
        let tmp = parent.join(format!(".{ctid}.creating-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir(&tmp).map_err(io_err(ctid, format!("mkdir {}", tmp.display())))?;
        let unpacked = match layout {
            crate::storage::Layout::Simfs => template::unpack(&cache, comp, &tmp).map_err(RuntimeError::from),
            crate::storage::Layout::Image => {
                self.unpack_into_image(ctid, &cache, comp, &tmp, disk.1, inodes.map(|i| i.1).unwrap_or(0))
            }
        };
        let result = unpacked
            .and_then(|_| {
                fs::rename(&tmp, &ct.private).map_err(io_err(
                    ctid,
                    format!("renaming {} to {}", tmp.display(), ct.private.display()),
                ))
            })
            .and_then(|_| ct.config.save(&ct.conf_path).map_err(|e| RuntimeError::Host(e.into())));
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            if !ct.conf_path.exists() {
                let _ = fs::remove_dir_all(&ct.private);
            }
            return Err(e);
        }
        progress(&format!("Container {ctid} created"));
        Ok(ct)
    }

    /// Creates the image of an image-layout private area in `dir` and unpacks a template into it.
    fn unpack_into_image(
        &self,
        ctid: Ctid,
        cache: &Path,
        comp: template::Compression,
        dir: &Path,
        bytes: u64,
        inodes: u64,
    ) -> Result<()> {
        let st = |e: crate::storage::StorageError| RuntimeError::Storage(ctid, e);
        let img = crate::storage::image_path(dir);
        let _ = inodes;
        crate::storage::create_image(&img, bytes).map_err(st)?;
        let mnt = dir.with_extension("mnt");
        fs::create_dir_all(&mnt).map_err(io_err(ctid, format!("mkdir {}", mnt.display())))?;
        crate::storage::mount_image(&img, &mnt).map_err(st)?;
        let r = template::unpack(cache, comp, &mnt).map_err(RuntimeError::from);
        let u = sys::umount_detach(&mnt);
        let _ = fs::remove_dir(&mnt);
        r?;
        u.map_err(|source| RuntimeError::Umount {
            ctid,
            what: mnt.display().to_string(),
            source,
        })
    }

    /// The container on this host that has an address, in its configuration or applied live
    /// while it runs, if any.
    pub fn address_owner(&self, addr: &str) -> Result<Option<Ctid>> {
        for id in self.host.ctids()? {
            let Ok(c) = self.host.container(id) else {
                continue;
            };
            let has = |list: &[String]| list.iter().any(|a| a.split('/').next() == Some(addr));
            // Addresses applied live without --save count too.
            if has(&c.ip_addresses()) || self.run_state(id).ok().flatten().is_some_and(|st| has(&st.net.ips)) {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Removes a stopped container: its private area, its configuration (kept as
    /// `CTID.conf.destroyed`) and, unless `keep_checkpoints`, its checkpoints in vz/dump.
    pub fn destroy(&self, ctid: Ctid, keep_checkpoints: bool) -> Result<()> {
        let _lock = self.lock(ctid)?;
        let ct = self.host.container(ctid)?;
        if self.run_state(ctid)?.is_some() {
            return Err(RuntimeError::Running(ctid));
        }
        self.cleanup_stale(ctid)?;
        if crate::fsutil::is_mountpoint(&ct.root).map_err(io_err(ctid, "reading the mount table"))? {
            self.umount_root(&ct)?;
        }
        // Refuse if anything is still mounted inside the private area: removing it would
        // follow into that mount.
        let info = fs::read_to_string("/proc/self/mountinfo").map_err(io_err(ctid, "reading the mount table"))?;
        for l in info.lines() {
            if let Some(mp) = l.split(' ').nth(4).map(crate::fsutil::unescape_mountinfo) {
                if Path::new(&mp).starts_with(&ct.private) || Path::new(&mp).starts_with(&ct.root) {
                    return Err(RuntimeError::Destroy {
                        ctid,
                        path: ct.private.clone(),
                        source: io::Error::other(format!("{mp} is still mounted")),
                    });
                }
            }
        }
        // Move everything out of the way first, so a failure halfway leaves no half-container.
        let parent = ct.private.parent().unwrap_or(Path::new("/"));
        let doomed = parent.join(format!(".{ctid}.destroyed-{}", std::process::id()));
        if ct.private.exists() {
            fs::rename(&ct.private, &doomed).map_err(|source| RuntimeError::Destroy {
                ctid,
                path: ct.private.clone(),
                source,
            })?;
        }
        let mut destroyed_conf = ct.conf_path.clone().into_os_string();
        destroyed_conf.push(".destroyed");
        fs::rename(&ct.conf_path, &destroyed_conf).map_err(|source| RuntimeError::Destroy {
            ctid,
            path: ct.conf_path.clone(),
            source,
        })?;
        if doomed.exists() {
            fs::remove_dir_all(&doomed).map_err(|source| RuntimeError::Destroy {
                ctid,
                path: doomed.clone(),
                source,
            })?;
        }
        let _ = fs::remove_dir(&ct.root);
        let _ = fs::remove_file(self.host.layout.state_file(ctid));
        let dumps = self.host.layout.dump_dir().join(ctid.to_string());
        if !keep_checkpoints && dumps.exists() {
            fs::remove_dir_all(&dumps).map_err(|source| RuntimeError::Destroy {
                ctid,
                path: dumps.clone(),
                source,
            })?;
        }
        Ok(())
    }

    // ---- mount ------------------------------------------------------------------------------

    pub(crate) fn existing(&self, ctid: Ctid) -> Result<Container> {
        let ct = self.host.container(ctid)?;
        if !ct.private.is_dir() {
            return Err(RuntimeError::NoPrivate(ctid, ct.private.clone()));
        }
        Ok(ct)
    }

    /// This host's pool of ids for user namespaces (USERNS_ID_POOL in vz.conf).
    fn id_pool(&self, ctid: Ctid) -> Result<userns::Pool> {
        userns::Pool::parse(&self.host.setting("USERNS_ID_POOL", userns::DEFAULT_POOL))
            .map_err(|what| RuntimeError::BadValue { ctid, what })
    }

    /// The id mappings of every container on this host but `ctid` (configurations that do not
    /// read are left out: they cannot start either).
    fn idmaps_except(&self, ctid: Ctid) -> Result<Vec<(Ctid, userns::IdMap)>> {
        let mut out = Vec::new();
        for id in self.host.ctids()? {
            if id == ctid {
                continue;
            }
            if let Ok(Some(m)) = self
                .host
                .container(id)
                .map(|c| userns::from_config(&c.config).ok().flatten())
            {
                out.push((id, m));
            }
        }
        Ok(out)
    }

    /// For a container arriving from another host (a migration, an imported checkpoint) whose
    /// configuration asks for a user namespace: a range of this host's ids replaces the one it
    /// had there (LOCAL_UID/LOCAL_GID in `config`), and `write` stores the configuration while
    /// the host's id lock is held, so no other container takes the same range meanwhile. With
    /// `write` None, only says whether a range is free. A configuration without a user
    /// namespace is left as it is.
    pub fn assign_idmap(
        &self,
        ctid: Ctid,
        config: &mut Config,
        write: Option<ConfigWriter<'_>>,
    ) -> Result<Option<userns::IdMap>> {
        let bad = |what: String| RuntimeError::BadValue { ctid, what };
        let wanted = userns::parse_flag(config.get("USERNS").filter(|v| !v.is_empty()).unwrap_or("no")).map_err(bad)?;
        if !wanted {
            return Ok(None);
        }
        let _pool_lock =
            userns::pool_lock(&self.host.layout.lock_dir()).map_err(io_err(ctid, "taking the id pool's lock"))?;
        let map = userns::allocate(self.id_pool(ctid)?, &self.idmaps_except(ctid)?).map_err(bad)?;
        if let Some(write) = write {
            let set = |c: &mut Config, k: &str, v: u32| c.set(k, &v.to_string()).map_err(HostError::from);
            set(config, "LOCAL_UID", map.uid)?;
            set(config, "LOCAL_GID", map.gid)?;
            write(config)?;
        }
        Ok(Some(map))
    }

    /// Converts a stopped, unmounted container to run in its own user namespace (`on`: a range
    /// is allocated, unless it has one) or privileged. Only the configuration changes: the
    /// files stay in the container's own ids on disk either way (userns.rs), so nothing is
    /// rewritten. A checkpoint taken before the change cannot be restored after it.
    pub fn set_userns(&self, ctid: Ctid, on: bool) -> Result<Option<userns::IdMap>> {
        let _lock = self.lock(ctid)?;
        let mut ct = self.existing(ctid)?;
        if self.run_state(ctid)?.is_some() {
            return Err(RuntimeError::Running(ctid));
        }
        if crate::fsutil::is_mountpoint(&ct.root).map_err(io_err(ctid, "reading the mount table"))? {
            return Err(RuntimeError::Mounted(ctid));
        }
        let bad = |what: String| RuntimeError::BadValue { ctid, what };
        if !on {
            ct.config.set("USERNS", "no").map_err(HostError::from)?;
            ct.config.unset("LOCAL_UID");
            ct.config.unset("LOCAL_GID");
            ct.config.save(&ct.conf_path).map_err(HostError::from)?;
            return Ok(None);
        }
        if let Some(map) = userns::from_config(&ct.config).map_err(bad)? {
            return Ok(Some(map));
        }
        ct.config.set("USERNS", "yes").map_err(HostError::from)?;
        let conf_path = ct.conf_path.clone();
        let write = |c: &Config| c.save(&conf_path).map_err(|e| RuntimeError::Host(e.into()));
        self.assign_idmap(ctid, &mut ct.config, Some(&write))
    }

    /// Writes settings that only the configuration holds (ONBOOT, BOOTORDER, DISABLED,
    /// DESCRIPTION: nothing to apply to a running container), all or none: every value is
    /// checked before the file is written.
    pub fn save_settings(&self, ctid: Ctid, settings: &[(&str, String)]) -> Result<()> {
        if settings.is_empty() {
            return Ok(());
        }
        Self::check_settings(ctid, settings)?;
        let _lock = self.lock(ctid)?;
        let mut ct = self.existing(ctid)?;
        for (k, v) in settings {
            ct.config.set(k, v).map_err(HostError::from)?;
        }
        ct.config.save(&ct.conf_path).map_err(HostError::from)?;
        Ok(())
    }

    /// Can these settings be written to a configuration? (Checked before anything changes.)
    pub fn check_settings(ctid: Ctid, settings: &[(&str, String)]) -> Result<()> {
        for (k, v) in settings {
            Config::new().set(k, v).map_err(|_| RuntimeError::BadValue {
                ctid,
                what: format!(
                    "{k}: {v:?} cannot be written to a configuration (no quotes, backslashes or line breaks)"
                ),
            })?;
        }
        Ok(())
    }

    /// Refuses to start a DISABLED container unless forced ([`RuntimeError::Disabled`]).
    pub fn refuse_disabled(&self, ctid: Ctid, force: bool) -> Result<()> {
        let ct = self.existing(ctid)?;
        if !force && crate::boot::yes(ct.get("DISABLED")) {
            return Err(RuntimeError::Disabled(ctid));
        }
        Ok(())
    }

    /// The container's user namespace mapping, if it has one, checked against this host's pool
    /// and every other container's range.
    pub(crate) fn idmap(&self, ct: &Container) -> Result<Option<userns::IdMap>> {
        let bad = |what: String| RuntimeError::BadValue { ctid: ct.ctid, what };
        let Some(map) = userns::from_config(&ct.config).map_err(bad)? else {
            return Ok(None);
        };
        userns::check(ct.ctid, map, self.id_pool(ct.ctid)?, &self.idmaps_except(ct.ctid)?).map_err(bad)?;
        Ok(Some(map))
    }

    pub(crate) fn mount_root(&self, ct: &Container) -> Result<()> {
        let idmap = self.idmap(ct)?;
        let ctid = ct.ctid;
        let private = |path: &Path| {
            // Nothing mounted later inside propagates back to the host.
            sys::mount(None, path, None, libc::MS_PRIVATE, None).map_err(|source| RuntimeError::Mount {
                ctid,
                what: format!("{} (making it private)", path.display()),
                source,
            })
        };
        fs::create_dir_all(&ct.root).map_err(io_err(ctid, format!("mkdir {}", ct.root.display())))?;
        let image = crate::storage::image_path(&ct.private);
        let Some(map) = idmap else {
            if ct.is_image() {
                crate::storage::mount_image(&image, &ct.root).map_err(|e| RuntimeError::Storage(ctid, e))?;
            } else {
                sys::bind(&ct.private, &ct.root).map_err(|source| RuntimeError::Mount {
                    ctid,
                    what: format!("{} on {}", ct.private.display(), ct.root.display()),
                    source,
                })?;
            }
            return private(&ct.root);
        };
        // With a user namespace the container sees its files through an idmapped mount of the
        // raw tree (userns.rs): the private area, or the image's file system mounted as it is on
        // disk at private/fs (already there when a migration's destination wrote into it).
        let mut mounted_fs = None;
        if let Some(fs_dir) = &ct.image_fs {
            if !crate::fsutil::is_mountpoint(fs_dir).map_err(io_err(ctid, "reading the mount table"))? {
                fs::create_dir_all(fs_dir).map_err(io_err(ctid, format!("mkdir {}", fs_dir.display())))?;
                crate::storage::mount_image(&image, fs_dir).map_err(|e| RuntimeError::Storage(ctid, e))?;
                mounted_fs = Some(fs_dir.clone());
                private(fs_dir)?;
            }
        }
        let tree = ct.tree();
        if let Err(source) = userns::idmapped_bind(tree, &ct.root, map) {
            if let Some(f) = &mounted_fs {
                let _ = sys::umount_detach(f);
            }
            return Err(RuntimeError::Mount {
                ctid,
                what: format!(
                    "{} on {}, idmapped to host ids {}+",
                    tree.display(),
                    ct.root.display(),
                    map.uid
                ),
                source,
            });
        }
        private(&ct.root)
    }

    pub(crate) fn umount_root(&self, ct: &Container) -> Result<()> {
        let err = |p: &Path, source| RuntimeError::Umount {
            ctid: ct.ctid,
            what: p.display().to_string(),
            source,
        };
        match sys::umount(&ct.root) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                tracing::warn!(ctid = %ct.ctid, "{} is busy; detaching it lazily", ct.root.display());
                sys::umount_detach(&ct.root).map_err(|e| err(&ct.root, e))?;
            }
            Err(e) => return Err(err(&ct.root, e)),
        }
        // A container with a user namespace and an image: its file system's raw mount too.
        if let Some(fs_dir) = &ct.image_fs {
            if crate::fsutil::is_mountpoint(fs_dir).unwrap_or(false) && sys::umount(fs_dir).is_err() {
                tracing::warn!(ctid = %ct.ctid, "{} is busy; detaching it lazily", fs_dir.display());
                sys::umount_detach(fs_dir).map_err(|e| err(fs_dir, e))?;
            }
        }
        Ok(())
    }

    pub fn mount(&self, ctid: Ctid) -> Result<()> {
        let _lock = self.lock(ctid)?;
        let ct = self.existing(ctid)?;
        if crate::fsutil::is_mountpoint(&ct.root).map_err(io_err(ctid, "reading the mount table"))? {
            return Err(RuntimeError::Mounted(ctid));
        }
        self.mount_root(&ct)
    }

    pub fn umount(&self, ctid: Ctid) -> Result<()> {
        let _lock = self.lock(ctid)?;
        let ct = self.host.container(ctid)?;
        if self.run_state(ctid)?.is_some() {
            return Err(RuntimeError::Running(ctid));
        }
        if !crate::fsutil::is_mountpoint(&ct.root).map_err(io_err(ctid, "reading the mount table"))? {
            return Err(RuntimeError::NotMounted(ctid));
        }
        self.umount_root(&ct)
    }

    // ---- start / stop -----------------------------------------------------------------------

    /// Removes what a container that died on its own left behind: state file and cgroup.
    pub(crate) fn cleanup_stale(&self, ctid: Ctid) -> Result<()> {
        let path = self.host.layout.state_file(ctid);
        let st = RunState::load(&path).map_err(io_err(ctid, format!("reading {}", path.display())))?;
        if st.as_ref().is_some_and(|s| s.init_alive()) {
            return Ok(());
        }
        if let Some(s) = &st {
            crate::net::withdraw_all(ctid.get(), &s.net);
        }
        // The cgroup below is this root's to end (and, at a start, to make) only if no other
        // root on the machine uses the same parent.
        self.claim_cgroup_parent()?;
        let cg = self.cgroups(ctid)?;
        if cg.exists(ctid) {
            cg.kill_all(ctid, Duration::from_secs(10))
                .map_err(|e| RuntimeError::Cgroup(ctid, e))?;
            cg.remove(ctid, Duration::from_secs(10))
                .map_err(|e| RuntimeError::Cgroup(ctid, e))?;
        }
        if st.is_some() {
            let _ = fs::remove_file(&path);
        }
        Ok(())
    }

    pub fn start(&self, ctid: Ctid) -> Result<RunState> {
        let _lock = self.lock(ctid)?;
        self.start_locked(ctid)
    }

    fn start_locked(&self, ctid: Ctid) -> Result<RunState> {
        self.host.initialize()?;
        let ct = self.existing(ctid)?;
        if self.run_state(ctid)?.is_some() {
            return Err(RuntimeError::Running(ctid));
        }
        let idmap = self.idmap(&ct)?;
        self.cleanup_stale(ctid)?;
        let init = ct.get("INIT").unwrap_or("/sbin/init").to_string();
        let was_mounted = crate::fsutil::is_mountpoint(&ct.root).map_err(io_err(ctid, "reading the mount table"))?;
        if !was_mounted {
            self.mount_root(&ct)?;
        }
        // Checked in the mounted root: an image's files are only visible there.
        for needed in [init.as_str(), "/bin/sh"] {
            if resolve_in_root(&ct.root, needed).is_none_or(|p| !p.is_file()) {
                if !was_mounted {
                    let _ = self.umount_root(&ct);
                }
                return Err(RuntimeError::BadContainer(ctid, needed.to_string()));
            }
        }
        let cg = self.cgroups(ctid)?;
        let systemd = init_kind(&ct) == InitKind::Systemd;
        if let Some(needs) = systemd.then(|| systemd_missing(&ct, cg)).flatten() {
            if !was_mounted {
                let _ = self.umount_root(&ct);
            }
            return Err(RuntimeError::InitNeeds {
                ctid,
                init: init.clone(),
                needs,
            });
        }
        let undo = |e: RuntimeError| -> RuntimeError {
            let _ = cg.kill_all(ctid, Duration::from_secs(5));
            let _ = cg.remove(ctid, Duration::from_secs(5));
            if !was_mounted {
                let _ = self.umount_root(&ct);
            }
            e
        };
        cg.create(ctid).map_err(|e| undo(RuntimeError::Cgroup(ctid, e)))?;
        if let (true, Some(map)) = (systemd, idmap) {
            cg.delegate(ctid, map.uid, map.gid)
                .map_err(|e| undo(RuntimeError::Cgroup(ctid, e)))?;
        }
        let limits = crate::resources::Limits::from_config(&ct.config).map_err(|e| {
            undo(RuntimeError::BadValue {
                ctid,
                what: e.to_string(),
            })
        })?;
        limits
            .apply(cg, ctid)
            .map_err(|e| undo(RuntimeError::Cgroup(ctid, e)))?;
        let env: Vec<CString> = [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "TERM=linux",
            "HOME=/root",
            "container=ferry",
        ]
        .iter()
        // systemd >= 254 watches its own cgroup's memory pressure with a PSI trigger, which a
        // restore does not bring back: the restored descriptor reports an error on every poll
        // and init spins on it, its job queue starved. /dev/null turns that watch off.
        .chain(systemd.then_some(&"MEMORY_PRESSURE_WATCH=/dev/null"))
        .map(|s| sys::c(s))
        .collect();
        let console_log = self.host.layout.console_log(ctid);
        let bad = |what: String| RuntimeError::BadValue { ctid, what };
        let ips =
            crate::net::parse_ip_list(ct.get("IP_ADDRESS").unwrap_or("")).map_err(|e| undo(bad(e.to_string())))?;
        let netifs =
            crate::net::netif::parse_netif(ct.get("NETIF").unwrap_or("")).map_err(|e| undo(bad(e.to_string())))?;
        let resolv = crate::net::resolv_conf(ct.get("NAMESERVER").unwrap_or(""), ct.get("SEARCHDOMAIN").unwrap_or(""));
        let spec = spawn::InitSpec {
            ctid,
            root: &ct.root,
            hostname: ct.hostname(),
            argv: vec![sys::c(&init)],
            env,
            cgroups: cg,
            console_log: &console_log,
            console_socket: &self.host.layout.console_socket(ctid),
            resolv,
            idmap,
            seccomp: seccomp_profile(&ct, systemd),
            systemd,
        };
        let hn = self.host_net();
        let mut net = crate::net::NetState::default();
        let mut attach = |pid: i32| -> std::result::Result<(), String> {
            let r = crate::net::add_ips(ctid.get(), pid, &ips, &hn, &mut net).and_then(|_| {
                netifs
                    .iter()
                    .try_for_each(|n| crate::net::add_netif(pid, n, &hn, &mut net))
            });
            r.map_err(|e| {
                crate::net::withdraw_all(ctid.get(), &net);
                let mut m = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(c) = src {
                    m.push_str(&format!(": {c}"));
                    src = c.source();
                }
                format!("network setup: {m}")
            })
        };
        let started = spawn::start(&spec, &mut attach).map_err(|e| undo(RuntimeError::Start(ctid, e)))?;
        let init_start = proc::start_time(started.init_pid).ok_or_else(|| {
            crate::net::withdraw_all(ctid.get(), &net);
            undo(RuntimeError::Start(
                ctid,
                SpawnError::Setup("init exited right after it started; see the console log".into()),
            ))
        })?;
        let st = RunState {
            init_pid: started.init_pid,
            init_start,
            console_pid: None,
            started_at: crate::units::unix_now(),
            net,
            live_limits: Default::default(),
        };
        st.save(&self.host.layout.state_file(ctid)).map_err(|e| {
            // SAFETY: killing the init we just started.
            unsafe { libc::kill(started.init_pid, libc::SIGKILL) };
            crate::net::withdraw_all(ctid.get(), &st.net);
            undo(io_err(ctid, "writing the runtime state")(e))
        })?;
        Ok(st)
    }

    /// Stops a container: the signal its init expects for a clean shutdown, `timeout` to
    /// finish, then SIGKILL; with `fast`, SIGKILL at once. The root is unmounted afterwards.
    pub fn stop(&self, ctid: Ctid, fast: bool, timeout: Option<Duration>) -> Result<()> {
        let _lock = self.lock(ctid)?;
        self.stop_locked(ctid, fast, timeout)
    }

    fn stop_locked(&self, ctid: Ctid, fast: bool, timeout: Option<Duration>) -> Result<()> {
        let s = match self.stop_begin(ctid, fast, timeout)? {
            StopBegun::Done => return Ok(()),
            StopBegun::Stopping(s) => s,
        };
        if !(s.killed || wait_pidfd(&s.pidfd, s.timeout)) {
            tracing::warn!(ctid = %ctid, "init did not stop within {:?}; killing the container", s.timeout);
            self.stop_kill(&s);
        }
        if !wait_pidfd(&s.pidfd, STOP_KILL_WAIT) {
            return Err(RuntimeError::StopFailed(ctid, s.timeout + STOP_KILL_WAIT));
        }
        self.stop_end(s)
    }

    /// The first step of a stop, for callers that wait in their own way (vzmigrate waits without
    /// blocking the thread that drives its connection): thaws a frozen container and signals its
    /// init (kills it, with `fast`). The caller waits until `pidfd` is readable, at most
    /// `timeout` for a clean shutdown, then [`Runtime::stop_kill`] and at most
    /// [`STOP_KILL_WAIT`] more, then [`Runtime::stop_end`]. The caller holds the lock.
    pub fn stop_begin(&self, ctid: Ctid, fast: bool, timeout: Option<Duration>) -> Result<StopBegun> {
        let ct = self.host.container(ctid)?;
        let Some(st) = self.run_state(ctid)? else {
            // A container suspended by a checkpoint still claims its addresses on this host;
            // stopping it releases them (the checkpoint stays).
            let suspended = self.host.layout.run_dir().join(format!("{ctid}.suspended.json"));
            if let Ok(b) = fs::read(&suspended) {
                if let Ok(net) = serde_json::from_slice::<crate::net::NetState>(&b) {
                    crate::net::withdraw_all(ctid.get(), &net);
                }
                let _ = fs::remove_file(&suspended);
                return Ok(StopBegun::Done);
            }
            return Err(RuntimeError::NotRunning(ctid));
        };
        let timeout = timeout
            .unwrap_or_else(|| Duration::from_secs(self.host.setting("STOP_TIMEOUT", "60").parse().unwrap_or(60)));
        let pidfd = sys::pidfd_open(st.init_pid).map_err(io_err(ctid, "pidfd_open of the container's init"))?;
        if !st.init_alive() {
            // The pid was reused between the check and pidfd_open: the container is gone.
            self.finish_stop(&ct, &st)?;
            return Ok(StopBegun::Done);
        }
        let s = Stopping {
            ct,
            st,
            pidfd,
            timeout,
            killed: false,
        };
        if fast {
            self.stop_kill(&s);
            return Ok(StopBegun::Stopping(Box::new(Stopping { killed: true, ..s })));
        }
        // A frozen container (an interrupted checkpoint or migration left it so) handles no
        // signal: thawed first.
        self.thaw_all(ctid);
        let sig = stop_signal(&s.ct);
        tracing::info!(ctid = %ctid, sig, "asking init to shut down");
        sys::pidfd_signal(&s.pidfd, sig);
        Ok(StopBegun::Stopping(Box::new(s)))
    }

    /// Kills a stopping container: SIGKILL to its init (which ends its pid namespace), then a
    /// thaw, so a frozen process wakes only to die, never running its own code again (under the
    /// v1 freezer even SIGKILL waits for the thaw; the copy a migration left frozen may run
    /// elsewhere now).
    pub fn stop_kill(&self, s: &Stopping) {
        sys::pidfd_signal(&s.pidfd, libc::SIGKILL);
        self.thaw_all(s.ct.ctid);
    }

    /// The last step of a stop, once init has exited: routes, cgroup, run state, root.
    pub fn stop_end(&self, s: Box<Stopping>) -> Result<()> {
        self.finish_stop(&s.ct, &s.st)
    }

    fn thaw_all(&self, ctid: Ctid) {
        let Ok(cg) = self.cgroups(ctid) else { return };
        for f in cg.freezers(ctid) {
            if let Err(e) = cg.thaw(ctid, f) {
                tracing::warn!(ctid = %ctid, "thawing the container to stop it: {e}");
            }
        }
    }

    pub(crate) fn finish_stop(&self, ct: &Container, st: &RunState) -> Result<()> {
        let ctid = ct.ctid;
        // The container left this host: its routes and proxy entries go too.
        crate::net::withdraw_all(ctid.get(), &st.net);
        let cg = self.cgroups(ctid)?;
        cg.kill_all(ctid, Duration::from_secs(10))
            .map_err(|e| RuntimeError::Cgroup(ctid, e))?;
        cg.remove(ctid, Duration::from_secs(10))
            .map_err(|e| RuntimeError::Cgroup(ctid, e))?;
        let _ = fs::remove_file(self.host.layout.state_file(ctid));
        if crate::fsutil::is_mountpoint(&ct.root).map_err(io_err(ctid, "reading the mount table"))? {
            self.umount_root(ct)?;
        }
        Ok(())
    }

    pub fn restart(&self, ctid: Ctid, timeout: Option<Duration>) -> Result<RunState> {
        let _lock = self.lock(ctid)?;
        if self.run_state(ctid)?.is_some() {
            self.stop_locked(ctid, false, timeout)?;
        }
        self.start_locked(ctid)
    }

    // ---- exec / enter -----------------------------------------------------------------------

    /// Runs a command inside the running container and returns its exit code.
    /// Attaches the caller's terminal to a running container's console (`vzctl console`),
    /// through its console logger, until Esc then `.` (or the end of stdin, or of the
    /// container). One attachment at a time.
    /// `hello` is printed once attached.
    pub fn console(&self, ctid: Ctid, hello: Option<&str>) -> Result<()> {
        self.existing(ctid)?;
        if self.run_state(ctid)?.is_none() {
            return Err(RuntimeError::NotRunning(ctid));
        }
        let socket = self.host.layout.console_socket(ctid);
        if !socket.exists() {
            return Err(RuntimeError::BadValue {
                ctid,
                what: format!(
                    "its console logger has no attach socket ({}): it was started by an older ferry; restart the container",
                    socket.display()
                ),
            });
        }
        pty::attach_console(&socket, hello).map_err(io_err(ctid, "attaching to the console"))
    }

    pub fn exec(&self, ctid: Ctid, argv: &[String], tty: bool) -> Result<i32> {
        let ct = self.host.container(ctid)?;
        let st = self.run_state(ctid)?.ok_or(RuntimeError::NotRunning(ctid))?;
        let cg = self.cgroups(ctid)?;
        let term = std::env::var("TERM").unwrap_or_else(|_| "dumb".into());
        let env: Vec<CString> = [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            "HOME=/root".to_string(),
            format!("TERM={term}"),
            "container=ferry".to_string(),
        ]
        .iter()
        .map(|s| sys::c(s))
        .collect();
        let argv: Vec<CString> = argv.iter().map(|s| sys::c(s)).collect();
        let stdio = if tty {
            let (parent, child) = sys::socketpair().map_err(io_err(ctid, "socketpair"))?;
            spawn::Stdio::Pty { child, parent }
        } else {
            spawn::Stdio::Inherit
        };
        let caps = running_caps(&ct, st.init_pid);
        spawn::exec_in(
            &spawn::Running {
                ctid,
                init_pid: st.init_pid,
                init_start: st.init_start,
                cgroups: cg,
                caps,
            },
            &argv,
            &env,
            stdio,
            seccomp_profile(&ct, caps.sys_admin),
        )
        .map_err(|e| RuntimeError::Exec(ctid, e))
    }
}

/// The seccomp profile of a container's processes (seccomp.rs), unless its configuration says
/// `SECCOMP="no"`. A privileged container may not make a user namespace either; a systemd
/// container (`systemd`: its init is systemd, or was given CAP_SYS_ADMIN as one) may open the
/// uevent socket.
pub fn seccomp_profile(ct: &Container, systemd: bool) -> Option<seccomp::Profile> {
    (ct.get("SECCOMP") != Some("no")).then(|| seccomp::Profile {
        no_nested_userns: !ct.userns(),
        no_uevent: !(systemd && ct.userns()),
    })
}

/// How long a killed container's init may take to be gone.
pub const STOP_KILL_WAIT: Duration = Duration::from_secs(10);

/// What [`Runtime::stop_begin`] did.
pub enum StopBegun {
    /// Nothing runs any more (it was suspended, or already gone): stopped.
    Done,
    Stopping(Box<Stopping>),
}

/// A stop under way: `pidfd` (the container's init) becomes readable when init has exited.
pub struct Stopping {
    ct: Container,
    st: RunState,
    pub pidfd: std::os::fd::OwnedFd,
    /// How long a clean shutdown may take.
    pub timeout: Duration,
    /// Killed already (a fast stop).
    pub killed: bool,
}

/// The capabilities of what `vzctl exec` runs in a container: those its init was given at
/// start (a restored init keeps its own), read from init's bounding set, which nothing in the
/// container can widen: CAP_SYS_ADMIN only where init has it, in a user namespace.
pub(crate) fn running_caps(ct: &Container, init_pid: i32) -> caps::Set {
    let bnd = fs::read_to_string(format!("/proc/{init_pid}/status"))
        .ok()
        .and_then(|s| caps::bounding_set(&s))
        .unwrap_or(0);
    caps::Set {
        sys_admin: ct.userns() && bnd & (1u64 << caps::SYS_ADMIN.0) != 0,
    }
}

/// The kind of init a container boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitKind {
    Busybox,
    Systemd,
    /// sysvinit and anything else.
    Other,
}

/// What a container whose init is systemd needs and this container or host lacks: a user
/// namespace (CAP_SYS_ADMIN in namespaces of its own), a cgroup v2 hierarchy to delegate.
pub fn systemd_missing(ct: &Container, cg: &Cgroups) -> Option<String> {
    if !ct.userns() {
        return Some(format!(
            "a user namespace (CAP_SYS_ADMIN in namespaces of its own), and this container is privileged: \
             vzctl set {} --userns yes --save",
            ct.ctid
        ));
    }
    if cg.unified().is_none() {
        return Some(
            "a cgroup v2 hierarchy to delegate, and this host mounts none (mount cgroup2, e.g. on /sys/fs/cgroup/unified)"
                .into(),
        );
    }
    None
}

/// The kind of a container's init, from where `INIT` (default `/sbin/init`) leads in its
/// mounted root.
pub fn init_kind(ct: &Container) -> InitKind {
    init_kind_at(ct, &ct.root)
}

/// [`init_kind`] in the tree at `root` (the private area of a container that is not mounted).
pub fn init_kind_at(ct: &Container, root: &Path) -> InitKind {
    let init = ct.get("INIT").unwrap_or("/sbin/init");
    let target = resolve_in_root(root, init);
    let name = target
        .as_deref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name == "busybox" {
        InitKind::Busybox
    } else if name == "systemd" {
        InitKind::Systemd
    } else {
        InitKind::Other
    }
}

/// The signal a container's init expects for a clean shutdown: STOP_SIGNAL from the
/// configuration, else by the kind of init (busybox: SIGUSR2; systemd: SIGRTMIN+3, its halt
/// request, which in a container ends it; sysvinit and others: SIGINT, the ctrl-alt-del
/// action).
pub fn stop_signal(ct: &Container) -> libc::c_int {
    if let Some(s) = ct.get("STOP_SIGNAL").and_then(parse_signal) {
        return s;
    }
    match init_kind(ct) {
        InitKind::Busybox => libc::SIGUSR2,
        InitKind::Systemd => libc::SIGRTMIN() + 3,
        InitKind::Other => libc::SIGINT,
    }
}

/// A signal by name (`USR2`, `SIGUSR2`, `RTMIN+4`) or number.
pub fn parse_signal(s: &str) -> Option<libc::c_int> {
    let s = s.trim().trim_start_matches("SIG");
    if let Ok(n) = s.parse::<libc::c_int>() {
        return (1..=64).contains(&n).then_some(n);
    }
    if let Some(off) = s.strip_prefix("RTMIN+") {
        return off
            .parse::<libc::c_int>()
            .ok()
            .map(|o| libc::SIGRTMIN() + o)
            .filter(|n| *n <= libc::SIGRTMAX());
    }
    Some(match s {
        "HUP" => libc::SIGHUP,
        "INT" => libc::SIGINT,
        "QUIT" => libc::SIGQUIT,
        "TERM" => libc::SIGTERM,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "PWR" => libc::SIGPWR,
        "KILL" => libc::SIGKILL,
        _ => return None,
    })
}

fn wait_pidfd(pidfd: &std::os::fd::OwnedFd, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut p = [libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(pidfd),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: valid pollfd array.
        let r = unsafe { libc::poll(p.as_mut_ptr(), 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if r > 0 {
            return true;
        }
        if left.is_zero() {
            return false;
        }
    }
}

/// Resolves a path inside a container's root file system as the container would see it:
/// symlinks are followed (absolute ones relative to the root) and `..` never leaves the root.
/// Returns the host path of the final file, or None if a component is missing or the links
/// loop. Used read-only, to inspect a stopped container's files from the host.
pub fn resolve_in_root(root: &Path, path: &str) -> Option<PathBuf> {
    let mut todo: Vec<String> = Path::new(path)
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut cur: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        if part == ".." {
            cur.pop();
            continue;
        }
        let mut host = root.to_path_buf();
        host.extend(&cur);
        host.push(&part);
        let md = fs::symlink_metadata(&host).ok()?;
        if md.file_type().is_symlink() {
            links += 1;
            if links > 40 {
                return None;
            }
            let target = fs::read_link(&host).ok()?;
            if target.is_absolute() {
                cur.clear();
            }
            for c in target.components().rev() {
                match c {
                    Component::Normal(n) => todo.push(n.to_string_lossy().into_owned()),
                    Component::ParentDir => todo.push("..".into()),
                    _ => {}
                }
            }
        } else {
            cur.push(part);
        }
    }
    let mut host = root.to_path_buf();
    host.extend(&cur);
    Some(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_is_told_what_it_lacks_a_user_namespace_or_cgroup_v2() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        fs::create_dir_all(root.join("lib/systemd")).unwrap();
        fs::create_dir_all(root.join("sbin")).unwrap();
        fs::write(root.join("lib/systemd/systemd"), b"x").unwrap();
        symlink("/lib/systemd/systemd", root.join("sbin/init")).unwrap();
        let mut config = Config::new();
        config.set("USERNS", "yes").unwrap();
        let mut ct = Container {
            ctid: Ctid::new(101).unwrap(),
            conf_path: d.path().join("101.conf"),
            config,
            private: root.clone(),
            root: root.clone(),
            image_fs: None,
        };
        assert_eq!(init_kind(&ct), InitKind::Systemd);
        let hybrid = Cgroups::from_mountinfo(
            "26 25 0:24 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n30 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
            "ferry",
        )
        .unwrap();
        let pure_v1 =
            Cgroups::from_mountinfo("26 25 0:24 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n", "ferry").unwrap();
        assert_eq!(systemd_missing(&ct, &hybrid), None);
        assert!(systemd_missing(&ct, &pure_v1).unwrap().contains("cgroup v2"));
        ct.config.set("USERNS", "no").unwrap();
        let m = systemd_missing(&ct, &hybrid).unwrap();
        assert!(
            m.contains("user namespace") && m.contains("vzctl set 101 --userns yes --save"),
            "{m}"
        );
        fs::remove_file(root.join("sbin/init")).unwrap();
        symlink("/bin/busybox", root.join("sbin/init")).unwrap();
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/busybox"), b"x").unwrap();
        assert_eq!(init_kind(&ct), InitKind::Busybox);
    }
    use std::os::unix::fs::symlink;

    #[test]
    fn openvz_spellings_of_limits() {
        let o = |cpulimit: Option<&str>, numproc: Option<&str>, kmemsize: Option<&str>| SetOptions {
            cpulimit: cpulimit.map(Into::into),
            numproc: numproc.map(Into::into),
            kmemsize: kmemsize.map(Into::into),
            ..Default::default()
        };
        let l = o(Some("50%"), Some("100:200"), Some("1M:2M")).limits().unwrap();
        assert_eq!(
            (l.cpulimit, l.numproc, l.kmemsize),
            (Some(50), Some(200), Some(2 << 20))
        );
        let l = o(Some("150"), Some("64"), Some("8M")).limits().unwrap();
        assert_eq!(
            (l.cpulimit, l.numproc, l.kmemsize),
            (Some(150), Some(64), Some(8 << 20))
        );
        for bad in [
            o(Some("50%%"), None, None),
            o(Some("%"), None, None),
            o(None, Some("300:200"), None),
            o(None, Some("1:2:3"), None),
            o(None, Some(":5"), None),
            o(None, None, Some("2M:1M")),
        ] {
            assert!(bad.limits().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn resolve_in_root_stays_inside() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join("bin")).unwrap();
        fs::create_dir_all(r.join("sbin")).unwrap();
        fs::write(r.join("bin/busybox"), b"x").unwrap();
        symlink("/bin/busybox", r.join("sbin/init")).unwrap();
        symlink("../../../../etc/passwd", r.join("bin/escape")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();
        assert_eq!(resolve_in_root(r, "/sbin/init").unwrap(), r.join("bin/busybox"));
        assert_eq!(
            resolve_in_root(r, "/sbin/../bin/busybox").unwrap(),
            r.join("bin/busybox")
        );
        // ../ beyond the root stays at the root: /etc/passwd of the container, which is missing.
        assert_eq!(resolve_in_root(r, "/bin/escape"), None);
        assert_eq!(resolve_in_root(r, "/loop1"), None);
        assert_eq!(resolve_in_root(r, "/missing"), None);
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("USR2"), Some(libc::SIGUSR2));
        assert_eq!(parse_signal("SIGPWR"), Some(libc::SIGPWR));
        assert_eq!(parse_signal("15"), Some(15));
        assert_eq!(parse_signal("RTMIN+4"), Some(libc::SIGRTMIN() + 4));
        assert_eq!(parse_signal("BOGUS"), None);
        assert_eq!(parse_signal("0"), None);
    }

    #[test]
    fn status_line() {
        let s = Status {
            ctid: Ctid::new(101).unwrap(),
            exist: true,
            mounted: false,
            running: false,
            init_pid: None,
        };
        assert_eq!(s.line(), "CTID 101 exist unmounted down");
    }
}

/// What `vzctl set` takes (the network part; resource limits come with their issue).
#[derive(Debug, Clone, Default)]
pub struct SetOptions {
    pub ipadd: Vec<String>,
    /// Addresses, or "all".
    pub ipdel: Vec<String>,
    pub hostname: Option<String>,
    pub nameserver: Vec<String>,
    pub searchdomain: Vec<String>,
    pub netif_add: Vec<String>,
    /// Interface names, or "all".
    pub netif_del: Vec<String>,
    pub name: Option<String>,
    /// Resource limits (the cgroup part applies live; disk limits per layout).
    pub cpuunits: Option<String>,
    pub cpulimit: Option<String>,
    pub cpus: Option<String>,
    pub cpumask: Option<String>,
    pub ram: Option<String>,
    pub swap: Option<String>,
    pub kmemsize: Option<String>,
    pub numproc: Option<String>,
    pub diskspace: Option<String>,
    pub diskinodes: Option<String>,
    /// Scheduled checkpoints (CHECKPOINT_INTERVAL, CHECKPOINT_KEEP).
    pub checkpoint_interval: Option<String>,
    pub checkpoint_keep: Option<String>,
    pub save: bool,
}

impl SetOptions {
    /// Parses and checks the resource options.
    pub fn limits(&self) -> std::result::Result<crate::resources::Limits, crate::resources::ResourceError> {
        use crate::resources::{parse_size, parse_soft_hard, validate_cpumask, Limits, ResourceError};
        let num =
            |what: &str, v: &Option<String>, lo: u64, hi: u64| -> std::result::Result<Option<u64>, ResourceError> {
                match v {
                    None => Ok(None),
                    Some(s) => match s.trim().parse::<u64>() {
                        Ok(n) if (lo..=hi).contains(&n) => Ok(Some(n)),
                        _ => Err(ResourceError::BadValue {
                            what: what.into(),
                            value: s.clone(),
                            why: format!("expected a whole number from {lo} to {hi}"),
                        }),
                    },
                }
            };
        // OpenVZ's `barrier:limit` where a resource has one limit: the limit (the barrier must
        // still be a value of its own kind, not above the limit).
        let pair = |what: &str, v: &Option<String>, parse: &dyn Fn(&str) -> Option<u64>| {
            let Some(s) = v else { return Ok(None) };
            let Some((b, l)) = s.split_once(':') else {
                return Ok(Some(s.clone()));
            };
            match (parse(b), parse(l)) {
                (Some(b), Some(l)) if b <= l => Ok(Some(l.to_string())),
                _ => Err(ResourceError::BadValue {
                    what: what.into(),
                    value: s.clone(),
                    why: "expected a value or barrier:limit with the barrier not above the limit".into(),
                }),
            }
        };
        let numproc = match &self.numproc {
            Some(s) if s == "unlimited" => Some(u64::MAX),
            v => {
                let n = pair("--numproc", v, &|x| x.trim().parse().ok())?;
                num("--numproc", &n, 1, 4_194_304)?
            }
        };
        let kmemsize = pair("--kmemsize", &self.kmemsize, &|x| parse_size(x, 1).ok())?;
        let kmemsize = kmemsize.as_deref().map(|s| parse_size(s, 1)).transpose()?;
        // OpenVZ writes the CPU cap as a percentage: `--cpulimit 50%` is `--cpulimit 50`.
        let cpulimit = self
            .cpulimit
            .as_ref()
            .map(|s| s.trim().strip_suffix('%').unwrap_or(s.trim()).to_string());
        let size = |v: &Option<String>| v.as_deref().map(|s| parse_size(s, 1)).transpose();
        if let Some(m) = &self.cpumask {
            validate_cpumask(m)?;
        }
        Ok(Limits {
            cpuunits: num("--cpuunits", &self.cpuunits, 8, 500_000)?,
            cpulimit: num("--cpulimit", &cpulimit, 0, 100 * 4096)?,
            cpus: num("--cpus", &self.cpus, 1, 4096)?,
            cpumask: self.cpumask.clone(),
            ram: size(&self.ram)?,
            swap: size(&self.swap)?,
            kmemsize,
            numproc,
            diskspace: self
                .diskspace
                .as_deref()
                .map(|s| parse_soft_hard(s, 1024, "--diskspace"))
                .transpose()?
                .map(|(a, b)| (a / 1024, b / 1024)),
            diskinodes: self
                .diskinodes
                .as_deref()
                .map(|s| parse_soft_hard(s, 1, "--diskinodes"))
                .transpose()?,
        })
    }
}

/// What `vzctl set` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetReport {
    pub applied_live: bool,
    pub saved: bool,
    /// Things the user should know (a limit recorded but not enforced, ...).
    pub notes: Vec<String>,
}

impl Runtime {
    pub fn set(&self, ctid: Ctid, opts: &SetOptions) -> Result<SetReport> {
        let _lock = self.lock(ctid)?;
        let ct = self.host.container(ctid)?;
        let bad = |what: String| RuntimeError::BadValue { ctid, what };
        let net = |e: crate::net::NetError| RuntimeError::Net(ctid, e);
        // 1. Validate everything; nothing changes until all of it is good.
        // The saved addresses (`addrs`, what --save writes) and, running, the ones it has now
        // (`live`: an address added without --save is there and not in the configuration).
        let mut addrs: Vec<crate::net::IpWithPrefix> =
            crate::net::parse_ip_list(ct.get("IP_ADDRESS").unwrap_or("")).map_err(|e| bad(e.to_string()))?;
        let running = self.run_state(ctid)?;
        let live: Option<Vec<crate::net::IpWithPrefix>> = running
            .as_ref()
            .map(|st| st.net.ips.iter().filter_map(|s| crate::net::parse_ip(s).ok()).collect());
        let known = |a: &std::net::IpAddr, addrs: &[crate::net::IpWithPrefix]| {
            addrs.iter().chain(live.iter().flatten()).any(|x| x.addr == *a)
        };
        let mut gone: Vec<std::net::IpAddr> = Vec::new();
        for d in &opts.ipdel {
            if d == "all" {
                gone.extend(addrs.iter().chain(live.iter().flatten()).map(|x| x.addr));
                continue;
            }
            let a = crate::net::parse_ip(d).map_err(|e| bad(e.to_string()))?;
            if !known(&a.addr, &addrs) {
                return Err(bad(format!("address {} is not assigned to this container", a.addr)));
            }
            gone.push(a.addr);
        }
        addrs.retain(|x| !gone.contains(&x.addr));
        let to_del: Vec<crate::net::IpWithPrefix> = live
            .iter()
            .flatten()
            .filter(|x| gone.contains(&x.addr))
            .copied()
            .collect();
        let mut to_add = Vec::new();
        for a in &opts.ipadd {
            let ip = crate::net::parse_ip(a).map_err(|e| bad(e.to_string()))?;
            if let Some(other) = self.address_owner(&ip.addr.to_string())?.filter(|o| *o != ctid) {
                return Err(RuntimeError::AddressInUse {
                    ctid,
                    addr: ip.addr.to_string(),
                    other,
                });
            }
            if !addrs.iter().any(|x| x.addr == ip.addr) {
                addrs.push(ip);
            }
            let has_now = live.iter().flatten().any(|x| x.addr == ip.addr) && !gone.contains(&ip.addr);
            if !has_now && !to_add.iter().any(|x: &crate::net::IpWithPrefix| x.addr == ip.addr) {
                to_add.push(ip);
            }
        }
        if let Some(h) = &opts.hostname {
            crate::net::validate_hostname(h).map_err(|e| bad(e.to_string()))?;
        }
        for n in &opts.nameserver {
            n.parse::<std::net::IpAddr>()
                .map_err(|_| bad(format!("invalid nameserver {n:?}: expected an IP address")))?;
        }
        for d in &opts.searchdomain {
            crate::net::validate_hostname(d).map_err(|_| bad(format!("invalid search domain {d:?}")))?;
        }
        let mut netifs =
            crate::net::netif::parse_netif(ct.get("NETIF").unwrap_or("")).map_err(|e| bad(e.to_string()))?;
        let mut netif_removed = Vec::new();
        for d in &opts.netif_del {
            if d == "all" {
                netif_removed.append(&mut netifs);
                continue;
            }
            match netifs.iter().position(|n| &n.ifname == d) {
                Some(i) => netif_removed.push(netifs.remove(i)),
                None => return Err(bad(format!("the container has no interface {d:?}"))),
            }
        }
        let mut netif_added = Vec::new();
        for spec in &opts.netif_add {
            let n = crate::net::Netif::from_spec(spec, ctid.get(), netifs.len()).map_err(|e| bad(e.to_string()))?;
            if netifs
                .iter()
                .any(|x| x.ifname == n.ifname || x.host_ifname == n.host_ifname)
            {
                return Err(bad(format!("interface {} already exists in this container", n.ifname)));
            }
            if !n.bridge.is_empty() || self.host_net().bridge.is_some() {
                let b = if n.bridge.is_empty() {
                    self.host_net().bridge.unwrap_or_default()
                } else {
                    n.bridge.clone()
                };
                if !crate::net::ip::link_exists(&b) {
                    return Err(bad(format!("bridge {b} does not exist on this host")));
                }
            } else {
                return Err(bad("no bridge given and BRIDGE is not set in vz.conf".into()));
            }
            netifs.push(n.clone());
            netif_added.push(n);
        }
        if let Some(n) = &opts.name {
            crate::ctid::validate_name(n).map_err(|e| bad(e.to_string()))?;
            if let Some(other) = self.host.name_owner(n)?.filter(|o| *o != ctid) {
                return Err(bad(format!("the name {n:?} is already used by container {other}")));
            }
        }
        let new_limits = opts.limits().map_err(|e| bad(e.to_string()))?;
        if new_limits.kmemsize.is_some() {
            let cg = self.cgroups(ctid)?;
            if cg.version() == crate::cgroup::Version::V2 {
                return Err(bad(
                    "--kmemsize is not supported on cgroup v2 (kernel memory counts toward --ram)".into(),
                ));
            }
            let probe = cg
                .controller_dir("memory", ctid)
                .map(|d| d.parent().unwrap().join("memory.kmem.limit_in_bytes"));
            if !probe.is_some_and(|p| p.exists()) {
                return Err(bad("--kmemsize is not supported by this kernel (no memory.kmem.limit_in_bytes; kernel memory counts toward --ram)".into()));
            }
        }
        // What holds now: the saved limits, then those set live since the start, then these.
        let mut limits = crate::resources::Limits::from_config(&ct.config).map_err(|e| bad(e.to_string()))?;
        if let Some(st) = &running {
            limits.merge(&st.live_limits);
        }
        limits.merge(&new_limits);
        let mut config = ct.config.clone();
        new_limits.store(&mut config).map_err(HostError::from)?;
        let set = |c: &mut Config, k: &str, v: String| c.set(k, &v).map_err(HostError::from);
        if !opts.ipadd.is_empty() || !opts.ipdel.is_empty() {
            set(
                &mut config,
                "IP_ADDRESS",
                addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(" "),
            )?;
        }
        if let Some(h) = &opts.hostname {
            set(&mut config, "HOSTNAME", h.clone())?;
        }
        if !opts.nameserver.is_empty() {
            set(&mut config, "NAMESERVER", opts.nameserver.join(" "))?;
        }
        if !opts.searchdomain.is_empty() {
            set(&mut config, "SEARCHDOMAIN", opts.searchdomain.join(" "))?;
        }
        if !opts.netif_add.is_empty() || !opts.netif_del.is_empty() {
            set(&mut config, "NETIF", crate::net::netif::format_netif(&netifs))?;
        }
        if let Some(n) = &opts.name {
            set(&mut config, "NAME", n.clone())?;
        }
        if let Some(i) = &opts.checkpoint_interval {
            let secs = crate::units::interval_secs(i).ok_or_else(|| {
                bad(format!(
                    "invalid --checkpoint-interval {i:?}: seconds, or a number with s, m, h or d"
                ))
            })?;
            set(&mut config, "CHECKPOINT_INTERVAL", secs.to_string())?;
        }
        if let Some(k) = &opts.checkpoint_keep {
            let n: u32 = k
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| bad(format!("invalid --checkpoint-keep {k:?}: a positive number")))?;
            set(&mut config, "CHECKPOINT_KEEP", n.to_string())?;
        }

        // Disk limits depend on the layout.
        let mut notes = Vec::new();
        let image = ct.is_image();
        let mounted = crate::fsutil::is_mountpoint(&ct.root).map_err(io_err(ctid, "reading the mount table"))?;
        if let Some((_, hard)) = new_limits.diskspace {
            if !image {
                notes.push("--diskspace is recorded and reported, but not enforced on the simfs layout (use --layout image at create)".into());
            } else if hard == u64::MAX {
                return Err(bad("the image layout needs a finite --diskspace".into()));
            } else if mounted || opts.save {
                let file = crate::storage::image_path(&ct.private);
                crate::storage::resize_image(&file, hard * 1024, mounted.then_some(ct.root.as_path()))
                    .map_err(|e| RuntimeError::Storage(ctid, e))?;
            }
        }
        if new_limits.diskinodes.is_some() && image {
            notes.push(
                "--diskinodes is recorded; an image's inode count is fixed when it is created and grows with the image"
                    .into(),
            );
        }
        // 2. Apply to the running container.
        let mut applied_live = false;
        // (The run state read once at the start: the lock keeps it as it was.)
        if let Some(mut st) = running {
            let pid = st.init_pid;
            let hn = self.host_net();
            let before = st.net.clone();
            let changed = (|| {
                crate::net::del_ips(pid, &to_del, &mut st.net)?;
                crate::net::add_ips(ctid.get(), pid, &to_add, &hn, &mut st.net)?;
                for n in &netif_removed {
                    crate::net::del_netif(&n.host_ifname, &mut st.net)?;
                }
                for n in &netif_added {
                    crate::net::add_netif(pid, n, &hn, &mut st.net)?;
                }
                Ok(())
            })();
            if let Err(e) = changed {
                // What the kernel refused (the values were checked above): what this set did
                // is undone, and the run state says what the container has, as before.
                self.undo_net_changes(
                    ctid,
                    pid,
                    &before,
                    &mut st,
                    (&to_del, &to_add),
                    (&netif_removed, &netif_added),
                );
                st.save(&self.host.layout.state_file(ctid))
                    .map_err(io_err(ctid, "writing the runtime state"))?;
                return Err(net(e));
            }
            if new_limits != crate::resources::Limits::default() {
                st.live_limits.merge(&crate::resources::Limits {
                    diskspace: None,
                    diskinodes: None,
                    ..new_limits.clone()
                });
            }
            st.save(&self.host.layout.state_file(ctid))
                .map_err(io_err(ctid, "writing the runtime state"))?;
            if new_limits != crate::resources::Limits::default() {
                let live = crate::resources::Limits {
                    diskspace: None,
                    diskinodes: None,
                    ..limits.clone()
                };
                live.apply(self.cgroups(ctid)?, ctid)
                    .map_err(|e| RuntimeError::Cgroup(ctid, e))?;
            }
            if let Some(h) = &opts.hostname {
                let h = h.clone();
                spawn::in_container(
                    pid,
                    st.init_start,
                    &[("uts", libc::CLONE_NEWUTS), ("mnt", libc::CLONE_NEWNS)],
                    &|| {
                        // SAFETY: valid buffer and length.
                        if unsafe { libc::sethostname(h.as_ptr() as *const libc::c_char, h.len()) } != 0 {
                            return Err(format!("sethostname: {}", io::Error::last_os_error()));
                        }
                        if std::path::Path::new("/etc").is_dir() {
                            fs::write("/etc/hostname", format!("{h}\n"))
                                .map_err(|e| format!("writing /etc/hostname: {e}"))?;
                        }
                        Ok(())
                    },
                )
                .map_err(|e| RuntimeError::Exec(ctid, e))?;
            }
            if !opts.nameserver.is_empty() || !opts.searchdomain.is_empty() {
                if let Some(r) = crate::net::resolv_conf(
                    config.get("NAMESERVER").unwrap_or(""),
                    config.get("SEARCHDOMAIN").unwrap_or(""),
                ) {
                    spawn::in_container(pid, st.init_start, &[("mnt", libc::CLONE_NEWNS)], &|| {
                        fs::write("/etc/resolv.conf", &r).map_err(|e| format!("writing /etc/resolv.conf: {e}"))
                    })
                    .map_err(|e| RuntimeError::Exec(ctid, e))?;
                }
            }
            applied_live = true;
        }
        // 3. Save.
        if opts.save {
            config.save(&ct.conf_path).map_err(HostError::from)?;
        }
        Ok(SetReport {
            applied_live,
            saved: opts.save,
            notes,
        })
    }
}

impl Runtime {
    /// Takes back a `set`'s network changes after one of them failed, in reverse order, as far
    /// as the kernel allows (each step's own errors are ignored): the interfaces it added go,
    /// the ones it removed come back, the addresses it added go (a half-added one included),
    /// the ones it removed come back. `st.net` then says what the container has.
    fn undo_net_changes(
        &self,
        ctid: Ctid,
        pid: i32,
        before: &crate::net::NetState,
        st: &mut RunState,
        (deleted, added): (&[crate::net::IpWithPrefix], &[crate::net::IpWithPrefix]),
        (netif_removed, netif_added): (&[crate::net::Netif], &[crate::net::Netif]),
    ) {
        let hn = self.host_net();
        for n in netif_added.iter().rev() {
            let _ = crate::net::del_netif(&n.host_ifname, &mut st.net);
        }
        for n in netif_removed {
            if before.netifs.contains(&n.host_ifname) && !st.net.netifs.contains(&n.host_ifname) {
                let _ = crate::net::add_netif(pid, n, &hn, &mut st.net);
            }
        }
        let had = |a: &crate::net::IpWithPrefix, ips: &[String]| {
            ips.iter()
                .any(|s| crate::net::parse_ip(s).is_ok_and(|b| b.addr == a.addr))
        };
        // Added whole by this set (recorded): taken away whole.
        let fresh: Vec<crate::net::IpWithPrefix> = added
            .iter()
            .filter(|a| !had(a, &before.ips) && had(a, &st.net.ips))
            .copied()
            .collect();
        let _ = crate::net::del_ips(pid, &fresh, &mut st.net);
        // The one whose adding failed: only its host side is withdrawn. Inside, the step that
        // failed may have been its own (an address root in the container had put there).
        if let Some(a) = added
            .iter()
            .find(|a| !had(a, &before.ips) && !fresh.iter().any(|f| f.addr == a.addr))
        {
            crate::net::withdraw_host(&a.addr, st.net.uplink.as_deref().or(hn.uplink.as_deref()));
        }
        let back: Vec<crate::net::IpWithPrefix> = deleted.iter().filter(|a| !had(a, &st.net.ips)).copied().collect();
        if let Err(e) = crate::net::add_ips(ctid.get(), pid, &back, &hn, &mut st.net) {
            tracing::warn!(ctid = %ctid, "putting back the addresses this set removed: {e}");
        }
    }
}

impl Runtime {
    /// The beancounter view of a container: the kernel's counters while it runs, its limits,
    /// its open files, its disk usage.
    pub fn ubc(&self, ctid: Ctid) -> Result<Vec<crate::resources::UbcRow>> {
        let ct = self.host.container(ctid)?;
        let limits = crate::resources::Limits::from_config(&ct.config).map_err(|e| RuntimeError::BadValue {
            ctid,
            what: e.to_string(),
        })?;
        let running = self.run_state(ctid)?.is_some();
        let cg = self.cgroups(ctid)?;
        let counters = if running {
            cg.counters(ctid)
        } else {
            crate::cgroup::Counters::default()
        };
        let numfile = running.then(|| {
            cg.pids(ctid)
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    fs::read_dir(format!("/proc/{p}/fd"))
                        .map(|rd| rd.count() as u64)
                        .unwrap_or(0)
                })
                .sum()
        });
        let image = ct.is_image();
        let mounted = crate::fsutil::is_mountpoint(&ct.root).unwrap_or(false);
        let disk = if image {
            mounted.then(|| crate::storage::usage(&ct.root, true)).flatten()
        } else {
            crate::storage::usage(&ct.private, false)
        };
        Ok(crate::resources::ubc(&counters, &limits, numfile, disk))
    }
}
