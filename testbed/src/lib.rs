//! The multi-host lab: network namespaces on one machine standing in for hosts on a network.
//!
//! ```text
//!            [ferry-NAME-client]  eth0 198.18.0.100/24, 2001:2::100/64
//!                    |
//!   [ferry-NAME-fabric]  bridge "fab" (no address)
//!        |                      |
//!   [ferry-NAME-hostA]     [ferry-NAME-hostB]   ...
//!   uplink -> br0 198.18.0.1/24  uplink -> br0 198.18.0.2/24
//!   ferry root DIR/hostA          ferry root DIR/hostB
//! ```
//!
//! Addresses come from 198.18.0.0/15 and 2001:2::/48 (the benchmarking ranges); nothing is
//! routed to or from the machine's own namespace, so no lab traffic leaves the lab. Each host
//! has its own ferry host root (vz.conf with its own cgroup parent, UPLINK and BRIDGE = br0).
//! Optional shaping puts a tbf qdisc on both ends of each host's uplink.
//!
//! [`Lab::down`] (also on drop) stops every container of every host, kills what runs in the
//! lab's namespaces, unmounts, removes the cgroups and the namespaces, and deletes the roots;
//! [`down_all`] does it for every lab found, for cleaning up after a crash.

pub mod agents;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Moves the calling thread into a lab's network namespace (namespaces are per thread; the
/// rest of the process stays where it is).
pub fn enter_netns(netns: &str) -> std::io::Result<()> {
    let f = std::fs::File::open(format!("/run/netns/{netns}"))?;
    // SAFETY: setns of this thread only, with a descriptor we hold open.
    if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `f` on a new thread inside a lab's network namespace.
pub fn in_netns<T: Send + 'static>(netns: &str, f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
    let netns = netns.to_string();
    std::thread::spawn(move || {
        enter_netns(&netns).unwrap_or_else(|e| panic!("entering network namespace {netns}: {e}"));
        f()
    })
}

/// Container addresses the tests use start here (hosts are .1-.9, the client .100).
pub const CT_NET: &str = "198.18.0";

#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Short name: netns names are `ferry-NAME-...`.
    pub name: String,
    pub hosts: Vec<String>,
    /// tbf rate for each host's uplink, e.g. "1gbit", "100mbit".
    pub shape: Option<String>,
    /// Where the hosts' roots live.
    pub base: PathBuf,
}

impl LabConfig {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            hosts: vec!["hostA".into(), "hostB".into()],
            shape: None,
            base: PathBuf::from("/var/lib/ferry-lab"),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LabHost {
    pub name: String,
    pub netns: String,
    pub root: PathBuf,
    pub addr: String,
    pub addr6: String,
    pub cgroup_parent: String,
}

#[derive(Debug, serde::Serialize)]
pub struct Lab {
    pub name: String,
    pub base: PathBuf,
    pub fabric: String,
    pub client: String,
    pub client_addr: String,
    pub hosts: Vec<LabHost>,
    #[serde(skip)]
    keep: bool,
}

fn sh(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip -n NS ARGS`.
fn ipn(ns: &str, args: &[&str]) -> Result<String> {
    let mut v = vec!["ip", "-n", ns];
    v.extend_from_slice(args);
    sh(&v)
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the lab needs root (network namespaces, veths, bridges)");
    }
    for tool in ["ip", "nsenter", "tc"] {
        if Command::new(tool).arg("-V").output().is_err() && Command::new(tool).arg("--version").output().is_err() {
            bail!("{tool} is missing: run scripts/setup.sh (iproute2, util-linux)");
        }
    }
    Ok(())
}

impl Lab {
    /// Brings a lab up; anything left by an earlier lab of the same name is removed first.
    pub fn up(cfg: &LabConfig) -> Result<Lab> {
        require_root()?;
        if cfg.name.is_empty()
            || cfg.name.len() > 20
            || !cfg.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            bail!("lab name {:?}: 1 to 20 letters, digits or '-'", cfg.name);
        }
        if cfg.hosts.is_empty() || cfg.hosts.len() > 9 {
            bail!("a lab has 1 to 9 hosts");
        }
        down_named(&cfg.name, &cfg.base)?;
        let p = format!("ferry-{}", cfg.name);
        let base = cfg.base.join(&cfg.name);
        let mut lab = Lab {
            name: cfg.name.clone(),
            base: base.clone(),
            fabric: format!("{p}-fabric"),
            client: format!("{p}-client"),
            client_addr: format!("{CT_NET}.100"),
            hosts: Vec::new(),
            keep: false,
        };
        let r = lab.build(cfg);
        if let Err(e) = r {
            let _ = lab.down();
            return Err(e);
        }
        Ok(lab)
    }

    fn build(&mut self, cfg: &LabConfig) -> Result<()> {
        let p = format!("ferry-{}", cfg.name);
        std::fs::create_dir_all(&self.base).with_context(|| format!("creating {}", self.base.display()))?;
        sh(&["ip", "netns", "add", &self.fabric])?;
        ipn(&self.fabric, &["link", "set", "lo", "up"])?;
        ipn(&self.fabric, &["link", "add", "fab", "type", "bridge"])?;
        ipn(&self.fabric, &["link", "set", "fab", "up"])?;
        for (i, h) in cfg.hosts.iter().enumerate() {
            let n = i + 1;
            let ns = format!("{p}-{h}");
            sh(&["ip", "netns", "add", &ns])?;
            let port = format!("h{n}");
            ipn(
                &self.fabric,
                &[
                    "link", "add", &port, "type", "veth", "peer", "name", "uplink", "netns", &ns,
                ],
            )?;
            ipn(&self.fabric, &["link", "set", &port, "master", "fab", "up"])?;
            ipn(&ns, &["link", "set", "lo", "up"])?;
            ipn(&ns, &["link", "add", "br0", "type", "bridge"])?;
            ipn(&ns, &["link", "set", "uplink", "master", "br0", "up"])?;
            ipn(&ns, &["link", "set", "br0", "up"])?;
            let addr = format!("{CT_NET}.{n}");
            let addr6 = format!("2001:2::{n}");
            ipn(&ns, &["addr", "add", &format!("{addr}/24"), "dev", "br0"])?;
            ipn(
                &ns,
                &["-6", "addr", "add", &format!("{addr6}/64"), "dev", "br0", "nodad"],
            )?;
            if let Some(rate) = &cfg.shape {
                for (shape_ns, dev) in [(ns.as_str(), "uplink"), (self.fabric.as_str(), port.as_str())] {
                    sh(&[
                        "tc", "-n", shape_ns, "qdisc", "add", "dev", dev, "root", "tbf", "rate", rate, "burst", "1mb",
                        "latency", "50ms",
                    ])?;
                }
            }
            let root = self.base.join(h);
            let cgroup_parent = format!("ferry-lab-{}-{h}", cfg.name);
            std::fs::create_dir_all(root.join("etc/vz")).context("creating a host root")?;
            std::fs::write(
                root.join("etc/vz/vz.conf"),
                format!(
                    "## ferry lab host {h}\nVE_ROOT=/vz/root/$VEID\nVE_PRIVATE=/vz/private/$VEID\nTEMPLATE=/vz/template\nCONFIGFILE=\"basic\"\nDEF_OSTEMPLATE=\"busybox\"\nCGROUP_PARENT=\"{cgroup_parent}\"\nSTOP_TIMEOUT=\"20\"\nUPLINK=\"br0\"\nBRIDGE=\"br0\"\n"
                ),
            )?;
            self.hosts.push(LabHost {
                name: h.clone(),
                netns: ns,
                root,
                addr,
                addr6,
                cgroup_parent,
            });
        }
        sh(&["ip", "netns", "add", &self.client])?;
        ipn(
            &self.fabric,
            &[
                "link",
                "add",
                "cl",
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &self.client,
            ],
        )?;
        ipn(&self.fabric, &["link", "set", "cl", "master", "fab", "up"])?;
        ipn(&self.client, &["link", "set", "lo", "up"])?;
        ipn(&self.client, &["link", "set", "eth0", "up"])?;
        ipn(
            &self.client,
            &["addr", "add", &format!("{}/24", self.client_addr), "dev", "eth0"],
        )?;
        ipn(
            &self.client,
            &["-6", "addr", "add", "2001:2::100/64", "dev", "eth0", "nodad"],
        )?;
        Ok(())
    }

    pub fn host(&self, name: &str) -> &LabHost {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name} in lab {}", self.name))
    }

    /// A command run inside a namespace of the lab (only the network namespace changes).
    pub fn cmd(netns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{netns}")).arg("--").arg(program);
        c
    }

    /// Leaves the lab up when dropped (for `testbed/up`).
    pub fn keep(mut self) {
        self.keep = true;
    }

    pub fn down(&self) -> Result<()> {
        down_named(&self.name, self.base.parent().unwrap_or(Path::new("/")))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.keep {
            if let Err(e) = self.down() {
                eprintln!("lab {}: teardown: {e:#}", self.name);
            }
        }
    }
}

/// Finds the vzctl binary next to this one or in the workspace's target directory.
fn vzctl() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let mut dirs: Vec<PathBuf> = exe.ancestors().take(3).map(Path::to_path_buf).collect();
    dirs.push(PathBuf::from("target/release"));
    dirs.push(PathBuf::from("target/debug"));
    dirs.into_iter().map(|d| d.join("vzctl")).find(|p| p.is_file())
}

/// Tears down the lab `name` whose roots are below `base`: containers, processes, mounts,
/// cgroups, namespaces, files. Safe to run when (part of) it is already gone.
pub fn down_named(name: &str, base: &Path) -> Result<()> {
    let p = format!("ferry-{name}");
    let root = base.join(name);
    // 1. Containers: stop each with its host's vzctl, in its host's network namespace.
    if let (Ok(rd), Some(vz)) = (std::fs::read_dir(&root), vzctl()) {
        for host in rd.flatten() {
            let h = host.file_name().to_string_lossy().into_owned();
            let ns = format!("{p}-{h}");
            if let Ok(confs) = std::fs::read_dir(host.path().join("etc/vz/conf")) {
                for c in confs.flatten() {
                    let f = c.file_name().to_string_lossy().into_owned();
                    if let Some(id) = f.strip_suffix(".conf") {
                        let mut cmd = if netns_exists(&ns) {
                            Lab::cmd(&ns, &vz)
                        } else {
                            Command::new(&vz)
                        };
                        let _ = cmd
                            .arg("--root-dir")
                            .arg(host.path())
                            .args(["stop", "--fast", "-q", id])
                            .output();
                    }
                }
            }
        }
    }
    // 2. Whatever still runs in the lab's namespaces.
    let namespaces: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("{p}-")))
                .collect()
        })
        .unwrap_or_default();
    for ns in &namespaces {
        if let Ok(pids) = sh(&["ip", "netns", "pids", ns]) {
            for pid in pids.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
                // SAFETY: killing processes that live in the lab's namespace.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    // 3. Mounts below the lab's roots, deepest first.
    if let Ok(canon) = root.canonicalize() {
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| Path::new(m).starts_with(&canon))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let c = std::ffi::CString::new(m).unwrap();
            // SAFETY: lazy unmount of a path below the lab's root.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
    // 4. cgroups of the lab's hosts.
    let prefix = format!("ferry-lab-{name}-");
    if let Ok(hier) = std::fs::read_dir("/sys/fs/cgroup") {
        for h in hier.flatten() {
            for dir in [h.path()]
                .into_iter()
                .chain(std::iter::once(PathBuf::from("/sys/fs/cgroup")))
            {
                if let Ok(rd) = std::fs::read_dir(&dir) {
                    for parent in rd
                        .flatten()
                        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    {
                        if let Ok(children) = std::fs::read_dir(parent.path()) {
                            for c in children.flatten().filter(|c| c.path().is_dir()) {
                                let _ = std::fs::remove_dir(c.path());
                            }
                        }
                        let _ = std::fs::remove_dir(parent.path());
                    }
                }
            }
        }
    }
    // 5. Namespaces (their veths and bridges go with them), then files.
    for ns in &namespaces {
        sh(&["ip", "netns", "del", ns]).with_context(|| format!("deleting network namespace {ns}"))?;
    }
    if root.exists() {
        std::fs::remove_dir_all(&root).with_context(|| format!("removing {}", root.display()))?;
    }
    Ok(())
}

/// Every lab found: namespaces named `ferry-*-fabric`, plus roots below `base`.
pub fn down_all(base: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .strip_prefix("ferry-")?
                        .strip_suffix("-fabric")
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    if let Ok(rd) = std::fs::read_dir(base) {
        names.extend(rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()));
    }
    names.sort();
    names.dedup();
    for n in &names {
        down_named(n, base)?;
    }
    Ok(names)
}

/// What a lab leaves behind: namespaces, mounts, cgroups (empty when torn down cleanly).
pub fn leftovers(name: &str, base: &Path) -> Vec<String> {
    let p = format!("ferry-{name}-");
    let mut out: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&p))
                .map(|n| format!("netns {n}"))
                .collect()
        })
        .unwrap_or_default();
    let root = base.join(name);
    let root_s = root.to_string_lossy().into_owned();
    out.extend(
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&root_s))
            .map(|m| format!("mount {m}")),
    );
    let prefix = format!("ferry-lab-{name}-");
    if let Ok(hier) = std::fs::read_dir("/sys/fs/cgroup") {
        for h in hier.flatten() {
            if let Ok(rd) = std::fs::read_dir(h.path()) {
                out.extend(
                    rd.flatten()
                        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                        .map(|e| format!("cgroup {}", e.path().display())),
                );
            }
        }
    }
    if root.exists() {
        out.push(format!("directory {}", root.display()));
    }
    out
}
