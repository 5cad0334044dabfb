//! Where a host keeps its state: everything lives below one host root, so that several
//! independent hosts can share one machine (the testbed does exactly that).
//!
//! Paths in configuration files are written as OpenVZ writes them (`/vz/private/101`) and are
//! resolved below the host root, so a configuration file means the same on every host.

use std::path::{Component, Path, PathBuf};

use crate::ctid::Ctid;

/// The environment variable that sets the host root when `--root-dir` is not given.
pub const ROOT_ENV: &str = "FERRY_ROOT";

/// A host's root directory and the well-known places below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLayout {
    root: PathBuf,
}

impl HostLayout {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root given on the command line, else `$FERRY_ROOT`, else `/`.
    pub fn from_option(opt: Option<&Path>) -> Self {
        match opt {
            Some(p) => Self::new(p),
            None => match std::env::var_os(ROOT_ENV) {
                Some(v) if !v.is_empty() => Self::new(PathBuf::from(v)),
                _ => Self::new("/"),
            },
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves a path as written in a configuration file (absolute, OpenVZ style) below the
    /// host root. `..` components are dropped rather than followed, so a configuration value
    /// cannot point outside the host root.
    pub fn resolve(&self, configured: &str) -> PathBuf {
        let mut out = self.root.clone();
        for c in Path::new(configured).components() {
            if let Component::Normal(n) = c {
                out.push(n);
            }
        }
        out
    }

    pub fn vz_conf(&self) -> PathBuf {
        self.resolve("/etc/vz/vz.conf")
    }
    pub fn conf_dir(&self) -> PathBuf {
        self.resolve("/etc/vz/conf")
    }
    pub fn ct_conf(&self, ctid: Ctid) -> PathBuf {
        self.conf_dir().join(format!("{ctid}.conf"))
    }
    pub fn sample_conf(&self, sample: &str) -> PathBuf {
        self.conf_dir().join(format!("ve-{sample}.conf-sample"))
    }
    pub fn lock_dir(&self) -> PathBuf {
        self.resolve("/vz/lock")
    }
    /// Runtime state of running containers (init pid, console logger).
    pub fn run_dir(&self) -> PathBuf {
        self.resolve("/vz/run")
    }
    pub fn log_dir(&self) -> PathBuf {
        self.resolve("/vz/log")
    }
    pub fn dump_dir(&self) -> PathBuf {
        self.resolve("/vz/dump")
    }
    pub fn template_dir(&self) -> PathBuf {
        self.resolve("/vz/template")
    }
    pub fn template_cache(&self) -> PathBuf {
        self.resolve("/vz/template/cache")
    }
    pub fn private_base(&self) -> PathBuf {
        self.resolve("/vz/private")
    }
    pub fn root_base(&self) -> PathBuf {
        self.resolve("/vz/root")
    }
    pub fn console_log(&self, ctid: Ctid) -> PathBuf {
        self.log_dir().join(format!("{ctid}.console.log"))
    }
    /// Where the console logger listens for `vzctl console` (root only).
    pub fn console_socket(&self, ctid: Ctid) -> PathBuf {
        self.run_dir().join(format!("{ctid}.console"))
    }
    pub fn state_file(&self, ctid: Ctid) -> PathBuf {
        self.run_dir().join(format!("{ctid}.json"))
    }

    /// The directories that hold containers' files, memory (checkpoints, migration work
    /// directories) and output: the host's root alone may enter them (0700), so no host user
    /// reads a container's data or runs a set-uid program a container planted.
    pub fn root_only_dirs(&self) -> Vec<PathBuf> {
        vec![self.log_dir(), self.dump_dir(), self.private_base(), self.root_base()]
    }

    /// Every directory a host needs; created on demand by commands that write.
    pub fn dirs(&self) -> Vec<PathBuf> {
        vec![
            self.conf_dir(),
            self.lock_dir(),
            self.run_dir(),
            self.log_dir(),
            self.dump_dir(),
            self.template_cache(),
            self.private_base(),
            self.root_base(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_below_root_and_drops_dotdot() {
        let h = HostLayout::new("/srv/hostA");
        assert_eq!(h.resolve("/vz/private/101"), PathBuf::from("/srv/hostA/vz/private/101"));
        assert_eq!(
            h.resolve("/vz/../../etc/passwd"),
            PathBuf::from("/srv/hostA/vz/etc/passwd")
        );
        assert_eq!(h.resolve("relative/x"), PathBuf::from("/srv/hostA/relative/x"));
        let root = HostLayout::new("/");
        assert_eq!(root.vz_conf(), PathBuf::from("/etc/vz/vz.conf"));
        assert_eq!(
            root.ct_conf(Ctid::new(101).unwrap()),
            PathBuf::from("/etc/vz/conf/101.conf")
        );
    }
}
