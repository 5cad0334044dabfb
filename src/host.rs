//! A host: its layout, its global configuration (`vz.conf`) and its containers' configuration
//! files. Resolves what the user typed (a CTID or a name) to a container.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::config::{expand_veid, Config, ConfigError};
use crate::ctid::{CtRef, Ctid};
use crate::exitcode::ExitCode;
use crate::layout::HostLayout;

#[derive(Debug, Error)]
pub enum HostError {
    #[error("container {0} does not exist (no {1})")]
    NoSuchContainer(Ctid, PathBuf),
    #[error("no container is named {0:?}")]
    NoSuchName(String),
    #[error("the name {name:?} is used by both container {a} and container {b}; fix the NAME lines of their configuration files")]
    AmbiguousName { name: String, a: Ctid, b: Ctid },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("no ferry host at {}: {} does not exist; is --root-dir (or FERRY_ROOT) right? (vzctl create makes a host)", .0.display(), .0.join("etc/vz/vz.conf").display())]
    NoHost(PathBuf),
    #[error("the cgroup parent {parent:?} is used by the host root {} on this machine; two roots sharing it would end each other's containers of the same CTID: give this root its own CGROUP_PARENT in {}", .other.display(), .vz_conf.display())]
    ParentClaimed {
        parent: String,
        other: PathBuf,
        vz_conf: PathBuf,
    },
    #[error("cannot prepare the host directory {path}")]
    Dir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl HostError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            HostError::NoSuchContainer(..) | HostError::NoSuchName(_) => ExitCode::NoConfig,
            HostError::AmbiguousName { .. } => ExitCode::BadValue,
            HostError::Config(ConfigError::Malformed { .. } | ConfigError::Read { .. }) => ExitCode::NoConfig,
            HostError::Config(_) => ExitCode::ConfigWrite,
            HostError::Dir { .. } => ExitCode::SystemError,
            HostError::NoHost(_) | HostError::ParentClaimed { .. } => ExitCode::GlobalConfig,
        }
    }
}

/// The global configuration a new host starts with. Paths are OpenVZ's, below the host root.
pub const DEFAULT_VZ_CONF: &str = r#"## ferry global configuration (OpenVZ vz.conf keys where OpenVZ had them)
VIRTUOZZO=yes
LOCKDIR=/vz/lock
DUMPDIR=/vz/dump

## Template and container areas ($VEID is the container's id)
TEMPLATE=/vz/template
VE_ROOT=/vz/root/$VEID
VE_PRIVATE=/vz/private/$VEID

## Defaults for vzctl create
## A new container runs in a user namespace of its own: its root is root inside and a range of
## 65536 unprivileged ids on the host, taken from USERNS_ID_POOL="START:COUNT" (host ids no
## user of the host has). "no" makes privileged containers (root is the host's root, confined
## by namespaces and capabilities only); vzctl create --userns and vzctl set --userns choose
## per container.
USERNS="yes"
USERNS_ID_POOL="1000000:1000000000"
CONFIGFILE="basic"
DEF_OSTEMPLATE="busybox"
VE_LAYOUT="simfs"

## cgroup directory under which this host's containers live (unique per host on one machine)
CGROUP_PARENT="ferry"

## Seconds that vzctl stop waits for a clean shutdown before killing the container
STOP_TIMEOUT="60"

## What vzboot stop (the host's shutdown, ferry.service) does to a running container: "stop"
## (a clean shutdown) or "suspend" (a checkpoint the next vzboot start resumes from); a
## container's own VE_STOP_MODE wins
#VE_STOP_MODE="stop"

## Seconds one CRIU request (a dump, a restore) may take before CRIU is stopped and the
## operation fails, the container thawed and running (a dump that hangs must not keep it
## frozen for ever)
#CRIU_TIMEOUT="600"

## A live migration's final dump streams its pages from CRIU's page server straight to the
## destination; "no" writes them to pages images first and reads them back (slower)
#MIGRATE_PAGE_SERVER="yes"
"#;

/// The sample configuration that `vzctl create` starts from unless `--config` names another.
pub const DEFAULT_SAMPLE: &str = r#"# ferry sample configuration "basic": the limits every container starts with, as OpenVZ's
# basic sample had (vzctl set changes them; vzctl create --config picks another sample). The
# disk limit comes from DISKSPACE in vz.conf (enforced on the image layout).
ONBOOT="no"
# Memory: 1 GiB, and 1 GiB of swap beyond it (4 KiB pages, barrier:limit).
PHYSPAGES="0:262144"
SWAPPAGES="0:262144"
# Processes and threads.
NUMPROC="1024:1024"
"#;

/// One host.
#[derive(Debug, Clone)]
pub struct Host {
    pub layout: HostLayout,
    pub global: Config,
}

impl Host {
    /// Opens a host for reading: a missing `vz.conf` means the defaults.
    pub fn open(layout: HostLayout) -> Result<Self, HostError> {
        let path = layout.vz_conf();
        let global = match fs::read_to_string(&path) {
            Ok(text) => Config::parse(&text, &path)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Config::parse(DEFAULT_VZ_CONF, &path)?,
            Err(source) => return Err(ConfigError::Read { path, source }.into()),
        };
        Ok(Self { layout, global })
    }

    /// Opens a host that must exist already (every command but those that make one): a root
    /// without `vz.conf` is a mistyped `--root-dir`, refused before anything is read or made
    /// there, rather than read as a host without containers.
    pub fn open_existing(layout: HostLayout) -> Result<Self, HostError> {
        if !layout.vz_conf().exists() {
            return Err(HostError::NoHost(layout.root().to_path_buf()));
        }
        Self::open(layout)
    }

    /// Claims this host's CGROUP_PARENT for its root, machine-wide, before it creates a
    /// container's cgroup or ends a dead container's leftovers there: a second root on the same
    /// machine with the same parent is refused ([`HostError::ParentClaimed`]) rather than
    /// killing the first root's container of the same CTID. A claim whose root is gone, or no
    /// longer uses that parent, is taken over. Claims live in `claims` (`/run/ferry/cgroup-parents`:
    /// gone at reboot, as the cgroups are).
    pub fn claim_cgroup_parent(&self, claims: &Path) -> Result<(), HostError> {
        let parent = self.cgroup_parent();
        let dir_err = |source| HostError::Dir {
            path: claims.to_path_buf(),
            source,
        };
        fs::create_dir_all(claims).map_err(dir_err)?;
        let ours = fs::canonicalize(self.layout.root()).unwrap_or_else(|_| self.layout.root().to_path_buf());
        let file = claims.join(parent.replace('/', "%"));
        if let Ok(text) = fs::read_to_string(&file) {
            let other = PathBuf::from(text.trim());
            if other == ours {
                return Ok(());
            }
            let still = Host::open_existing(HostLayout::new(&other)).is_ok_and(|h| h.cgroup_parent() == parent);
            if still {
                return Err(HostError::ParentClaimed {
                    parent,
                    other,
                    vz_conf: self.layout.vz_conf(),
                });
            }
        }
        crate::fsutil::write_atomic(&file, ours.as_os_str().as_encoded_bytes(), 0o600).map_err(dir_err)
    }

    /// Creates the host's directories, `vz.conf` and the default sample if they are missing.
    pub fn initialize(&self) -> Result<(), HostError> {
        for d in self.layout.dirs() {
            fs::create_dir_all(&d).map_err(|source| HostError::Dir {
                path: d.clone(),
                source,
            })?;
        }
        // Also on hosts made before they were: a chmod is cheap.
        for d in self.layout.root_only_dirs() {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).map_err(|source| HostError::Dir {
                path: d.clone(),
                source,
            })?;
        }
        for (path, text) in [
            (self.layout.vz_conf(), DEFAULT_VZ_CONF),
            (self.layout.sample_conf("basic"), DEFAULT_SAMPLE),
        ] {
            if !path.exists() {
                crate::fsutil::write_atomic(&path, text.as_bytes(), 0o644)
                    .map_err(|source| ConfigError::Write { path, source })?;
            }
        }
        Ok(())
    }

    /// A global setting, with a default.
    pub fn setting(&self, key: &str, default: &str) -> String {
        self.global.get(key).unwrap_or(default).to_string()
    }

    pub fn cgroup_parent(&self) -> String {
        self.setting("CGROUP_PARENT", "ferry")
    }

    /// Every container with a configuration file, in CTID order. Files whose names are not
    /// `CTID.conf` (samples, editor backups) are ignored.
    pub fn ctids(&self) -> Result<Vec<Ctid>, HostError> {
        let dir = self.layout.conf_dir();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(vec![]),
            Err(source) => return Err(HostError::Dir { path: dir, source }),
        };
        let mut ids: Vec<Ctid> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".conf")?.parse().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Resolves a CTID or a name. A CTID resolves even when the container does not exist
    /// (`create` needs that); a name must belong to an existing container.
    pub fn resolve(&self, r: &CtRef) -> Result<Ctid, HostError> {
        match r {
            CtRef::Id(id) => Ok(*id),
            CtRef::Name(name) => {
                let mut found: Option<Ctid> = None;
                for id in self.ctids()? {
                    let Ok(c) = Config::load(&self.layout.ct_conf(id)) else {
                        continue;
                    };
                    if c.get("NAME") == Some(name.as_str()) {
                        if let Some(a) = found {
                            return Err(HostError::AmbiguousName {
                                name: name.clone(),
                                a,
                                b: id,
                            });
                        }
                        found = Some(id);
                    }
                }
                found.ok_or_else(|| HostError::NoSuchName(name.clone()))
            }
        }
    }

    /// Which container, if any, has this name.
    pub fn name_owner(&self, name: &str) -> Result<Option<Ctid>, HostError> {
        match self.resolve(&CtRef::Name(name.to_string())) {
            Ok(id) => Ok(Some(id)),
            Err(HostError::NoSuchName(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Loads an existing container's configuration.
    pub fn container(&self, ctid: Ctid) -> Result<Container, HostError> {
        let conf_path = self.layout.ct_conf(ctid);
        if !conf_path.exists() {
            return Err(HostError::NoSuchContainer(ctid, conf_path));
        }
        let config = Config::load(&conf_path)?;
        Ok(self.container_from(ctid, config))
    }

    /// A container record for a configuration (possibly not yet written).
    pub fn container_from(&self, ctid: Ctid, config: Config) -> Container {
        let pick = |key: &str, def: &str| {
            let v = config
                .get(key)
                .map(str::to_string)
                .unwrap_or_else(|| self.setting(key, def));
            expand_veid(&v, ctid)
        };
        let private_conf = pick("VE_PRIVATE", "/vz/private/$VEID");
        let root_conf = pick("VE_ROOT", "/vz/root/$VEID");
        let private = self.layout.resolve(&private_conf);
        let image_userns = config.get("VE_LAYOUT") == Some("image") && config.get("USERNS") == Some("yes");
        Container {
            ctid,
            conf_path: self.layout.ct_conf(ctid),
            image_fs: image_userns.then(|| private.join("fs")),
            private,
            root: self.layout.resolve(&root_conf),
            config,
        }
    }
}

/// A container as its configuration describes it.
#[derive(Debug, Clone)]
pub struct Container {
    pub ctid: Ctid,
    pub conf_path: PathBuf,
    pub config: Config,
    /// The private area (the container's files) on this host.
    pub private: PathBuf,
    /// Where the private area is mounted while the container is mounted or running.
    pub root: PathBuf,
    /// An image private area of a container with a user namespace: where its file system is
    /// mounted as it is on disk (`private/fs`), the root being an idmapped clone of that mount.
    /// `None` otherwise (a privileged container's image is mounted on the root itself).
    pub image_fs: Option<PathBuf>,
}

impl Container {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.config.get(key).filter(|v| !v.is_empty())
    }
    pub fn hostname(&self) -> Option<&str> {
        self.get("HOSTNAME")
    }
    pub fn name(&self) -> Option<&str> {
        self.get("NAME")
    }
    /// The private area's layout (VE_LAYOUT; simfs when unset).
    pub fn layout(&self) -> Result<crate::storage::Layout, crate::storage::StorageError> {
        crate::storage::Layout::parse(self.get("VE_LAYOUT").unwrap_or("simfs"))
    }
    /// Is the private area an image? (A VE_LAYOUT that does not parse reads as simfs.)
    pub fn is_image(&self) -> bool {
        self.layout().ok() == Some(crate::storage::Layout::Image)
    }
    /// The directory holding the container's files in its own ids, for host-side work that
    /// reads or writes them with their ownership (checkpoints, the migration's file passes):
    /// the private area (simfs), or the image's file system mounted on the root. Never the
    /// root of a simfs container, which for a container with a user namespace is an idmapped
    /// mount showing host ids.
    pub fn tree(&self) -> &Path {
        match (self.is_image(), self.image_fs.as_deref()) {
            (false, _) => &self.private,
            (true, Some(fs)) => fs,
            (true, None) => &self.root,
        }
    }
    /// Does the configuration ask for a user namespace (`USERNS="yes"`)?
    pub fn userns(&self) -> bool {
        self.get("USERNS") == Some("yes")
    }
    /// IP_ADDRESS holds the addresses separated by spaces.
    pub fn ip_addresses(&self) -> Vec<String> {
        self.get("IP_ADDRESS")
            .map(|v| v.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> (tempfile::TempDir, Host) {
        let d = tempfile::tempdir().unwrap();
        let h = Host::open(HostLayout::new(d.path())).unwrap();
        h.initialize().unwrap();
        (d, h)
    }

    #[test]
    fn initialize_writes_defaults_once() {
        let (_d, h) = host();
        assert!(h.layout.vz_conf().exists());
        fs::write(h.layout.vz_conf(), "CGROUP_PARENT=\"ferry-x\"\n").unwrap();
        h.initialize().unwrap();
        let h2 = Host::open(h.layout.clone()).unwrap();
        assert_eq!(h2.cgroup_parent(), "ferry-x");
    }

    #[test]
    fn names_resolve_and_collide() {
        let (_d, h) = host();
        let write = |id: u32, name: &str| {
            fs::write(h.layout.ct_conf(Ctid::new(id).unwrap()), format!("NAME=\"{name}\"\n")).unwrap()
        };
        write(101, "web");
        write(102, "db");
        fs::write(h.layout.conf_dir().join("ve-basic.conf-sample"), "NAME=\"web\"\n").unwrap();
        assert_eq!(
            h.ctids().unwrap(),
            vec![Ctid::new(101).unwrap(), Ctid::new(102).unwrap()]
        );
        assert_eq!(h.resolve(&"web".parse().unwrap()).unwrap().get(), 101);
        assert_eq!(h.resolve(&"102".parse().unwrap()).unwrap().get(), 102);
        assert!(matches!(
            h.resolve(&"nope".parse().unwrap()),
            Err(HostError::NoSuchName(_))
        ));
        write(103, "web");
        assert!(matches!(
            h.resolve(&"web".parse().unwrap()),
            Err(HostError::AmbiguousName { .. })
        ));
    }

    #[test]
    fn container_paths_follow_config_then_global() {
        let (d, h) = host();
        let id = Ctid::new(101).unwrap();
        fs::write(h.layout.ct_conf(id), "VE_PRIVATE=\"/data/ct/$VEID\"\n").unwrap();
        let c = h.container(id).unwrap();
        assert_eq!(c.private, d.path().join("data/ct/101"));
        assert_eq!(c.root, d.path().join("vz/root/101"));
        assert!(matches!(
            h.container(Ctid::new(5).unwrap()),
            Err(HostError::NoSuchContainer(..))
        ));
    }
}
