//! Checkpoints: `vzctl chkpnt` / `restore` (and OpenVZ 4's `suspend` / `resume`).
//!
//! A checkpoint freezes the container with the cgroup freezer, dumps it with CRIU (TCP
//! connections included, the network locked by CRIU meanwhile), records the private area as
//! it was while frozen (a full copy, or a GNU tar incremental delta against the previous
//! checkpoint of the chain), and then either stops the container or thaws it
//! (`--keep-running`). The result is one archive file (archive.rs, docs/checkpoint-format.md).
//!
//! Restore verifies the archive (and its chain) before CRIU is touched, checks that the CPU,
//! CRIU and kernel fit, rolls the private area back, recreates the cgroup with the container's
//! limits, and has CRIU restore the processes into the same network links, whose host sides
//! are then routed and announced again.

pub mod archive;
pub mod directory;
pub mod links;
pub mod retention;
pub mod rollback;
pub mod stamp;

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::config::Config;
use crate::criu::{self, Criu, CriuError};
use crate::ctid::Ctid;
use crate::exitcode::ExitCode;
use crate::host::HostError;
use crate::runtime::{console, proc, state::RunState, sys, Runtime, RuntimeError};
use archive::{ArchiveError, FsSnapshot, Manifest};

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("container {0}: checkpoint failed; it keeps running (CRIU log: {1})")]
    Dump(Ctid, PathBuf, #[source] CriuError),
    #[error("container {0}: restore failed; it stays stopped and its checkpoint is intact (CRIU log: {1})")]
    Restore(Ctid, PathBuf, #[source] CriuError),
    #[error("container {0}")]
    Criu(Ctid, #[source] CriuError),
    #[error("container {0}: checkpoint archive")]
    Archive(Ctid, #[source] ArchiveError),
    #[error("container {0} has no checkpoint{1}")]
    NoCheckpoint(Ctid, String),
    #[error("container {ctid}: the checkpoint does not fit this host: {why}; use --force if you know better")]
    Incompatible { ctid: Ctid, why: String },
    #[error("container {ctid} cannot be checkpointed here: {why}; nothing was changed")]
    NotDumpable { ctid: Ctid, why: String },
    #[error("container {ctid}: {what}")]
    Io {
        ctid: Ctid,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("container {ctid}: {what} failed: {stderr}")]
    Tool { ctid: Ctid, what: String, stderr: String },
}

impl CheckpointError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CheckpointError::Runtime(e) => e.exit_code(),
            CheckpointError::Dump(..) | CheckpointError::NotDumpable { .. } => ExitCode::CheckpointFailed,
            CheckpointError::Restore(..) | CheckpointError::Incompatible { .. } | CheckpointError::Archive(..) => {
                ExitCode::RestoreFailed
            }
            CheckpointError::NoCheckpoint(..) => ExitCode::RestoreFailed,
            _ => ExitCode::SystemError,
        }
    }
}

type Result<T> = std::result::Result<T, CheckpointError>;

/// What `chkpnt` takes.
#[derive(Debug, Clone, Default)]
pub struct ChkpntOptions {
    /// A standalone archive (always a full copy) instead of the container's chain in vz/dump.
    pub dumpfile: Option<PathBuf>,
    pub keep_running: bool,
    /// Start a new chain (a full copy of the private area) instead of a delta.
    pub full: bool,
}

/// What `restore` takes.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub dumpfile: Option<PathBuf>,
    /// A checkpoint id of the container's chain (default: the newest).
    pub checkpoint: Option<String>,
    /// Restore even where the CPU, CRIU or kernel do not match.
    pub force: bool,
}

/// One checkpoint of a container, for listings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckpointInfo {
    pub id: String,
    pub path: PathBuf,
    pub created: u64,
    pub size: u64,
    pub frozen_ms: u64,
    pub level: u32,
    pub parent: Option<String>,
    pub keep_running: bool,
}

/// Deletes checkpoint `id` from the container's dump directory `dir` (a format 2 directory
/// or a format 1 file) and the snapshot list it left for the next one.
fn remove_checkpoint(dir: &Path, id: &str) {
    let p = dir.join(format!("{id}.ckpt"));
    if p.is_dir() {
        let _ = fs::remove_dir_all(&p);
    } else {
        let _ = fs::remove_file(&p);
    }
    let _ = fs::remove_file(dir.join(format!("{id}.snar")));
}

/// `YYYYMMDD-HHMMSS` (UTC) from unix seconds.
pub fn stamp(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn tar(ctid: Ctid, args: &[&str], what: &str) -> Result<()> {
    tar_output(ctid, args, what).map(|_| ())
}

/// [`tar`], returning what it printed.
fn tar_output(ctid: Ctid, args: &[&str], what: &str) -> Result<String> {
    let out = Command::new("tar")
        .args(args)
        .output()
        .map_err(|source| CheckpointError::Io {
            ctid,
            what: format!("running tar ({what})"),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(CheckpointError::Tool {
            ctid,
            what: what.into(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// The container's console pty as CRIU names external ttys (`pids`: the container's
/// processes, host pids). In order: the pty init has as its standard input; else (systemd
/// puts /dev/null there) a pty some process has as a standard descriptor that is not of the
/// container's own devpts (after a restore the console is the host's pty, which the restore
/// handed in); else the one the container's `/dev/console` leads to, as init sees it.
pub fn console_key(init_pid: i32, pids: &[i32]) -> Option<String> {
    let pts = |path: String| {
        fs::metadata(path)
            .ok()
            .filter(|md| libc::major(md.rdev()) == 136)
            .map(|md| (md.dev(), format!("tty[{:x}:{:x}]", md.rdev(), md.dev())))
    };
    if let Some((_, k)) = pts(format!("/proc/{init_pid}/fd/0")) {
        return Some(k);
    }
    let own = fs::metadata(format!("/proc/{init_pid}/root/dev/pts"))
        .map(|m| m.dev())
        .ok();
    pids.iter()
        .flat_map(|p| (0..3).map(move |fd| format!("/proc/{p}/fd/{fd}")))
        .filter_map(pts)
        .find(|(dev, _)| Some(*dev) != own)
        .or_else(|| pts(format!("/proc/{init_pid}/root/dev/console")))
        .map(|(_, k)| k)
}

/// CRIU's options for dumping a container's tree: the same for `vzctl chkpnt` and a
/// migration's final dump (which leaves it running, frozen, until the commit). `console` is
/// the init's console as `console_key` names it, which the caller also records for the
/// restore.
/// The links a restored container gets: each veth pair (the container's end, the host's). The
/// host end gets a random MAC, as when CRIU makes the pair: a bridge takes the lowest MAC of its
/// ports as its own, so a configured host MAC joining the host's bridge at the commit could
/// change the MAC of the host's own address under its live connections (the destination agent's
/// among them).
fn restore_links(ct: &crate::host::Container) -> Vec<criu::VethPair> {
    let ips = crate::net::parse_ip_list(ct.get("IP_ADDRESS").unwrap_or("")).unwrap_or_default();
    let netifs = crate::net::netif::parse_netif(ct.get("NETIF").unwrap_or("")).unwrap_or_default();
    let mut links = Vec::new();
    if !ips.is_empty() {
        let pair = criu::VethPair {
            if_in: "venet0".into(),
            if_out: crate::net::venet_host_ifname(ct.ctid.get()),
        };
        links.push(pair);
    }
    for n in &netifs {
        let pair = criu::VethPair {
            if_in: n.ifname.clone(),
            if_out: n.host_ifname.clone(),
        };
        links.push(pair);
    }
    links
}

/// How long a dump waits for a container's processes to accept the connections its kernel
/// already made ([`crate::net::drain_in_flight`]); a process that never accepts them does not
/// hold the dump up longer.
pub const IN_FLIGHT_WAIT: Duration = Duration::from_millis(500);

/// The largest file a container's process holds open after it was deleted (a log rotated
/// away, a temporary file) that a dump keeps in its images; CRIU's own default, 1 MiB, fails
/// the dump of many real services. `GHOST_LIMIT` in the container's configuration (bytes, or
/// with K/M/G) changes it.
pub const DEFAULT_GHOST_LIMIT: u32 = 512 << 20;

fn ghost_limit(ct: &crate::host::Container) -> u32 {
    ct.get("GHOST_LIMIT")
        .and_then(|v| crate::resources::parse_size(v, 1).ok())
        .map(|b| b.min(u64::from(u32::MAX)) as u32)
        .unwrap_or(DEFAULT_GHOST_LIMIT)
}

/// capability(7) number of CAP_SYS_RESOURCE.
const CAP_SYS_RESOURCE: u32 = 24;

/// The tty group inside a container (devpts is mounted with gid=5, as on every distribution).
const TTY_GID: u32 = 5;

/// After a dump of a systemd container (`systemd`: its init holds CAP_SYS_ADMIN in its user
/// namespace, [`crate::runtime::running_caps`], read before the dump: a dump that stops the
/// container leaves no init to ask): the cgroups it made in its delegated subtree, written
/// beside the images ([`crate::cgroup::TREE_FILE`]) for the restore to make again. Nothing for
/// other containers.
pub fn record_cgroup_tree(
    cg: &crate::cgroup::Cgroups,
    ct: &crate::host::Container,
    systemd: bool,
    images: &Path,
) -> std::io::Result<()> {
    if !systemd {
        return Ok(());
    }
    let list = cg.v2_subtree(ct.ctid).map_err(std::io::Error::other)?;
    let text = migrate_proto::cgroups::format_tree(&list);
    crate::fsutil::write_atomic(&images.join(crate::cgroup::TREE_FILE), text.as_bytes(), 0o600)
}

/// The external mounts of a container with a user namespace (spawn::external_mounts).
fn userns_externals(ct: &crate::host::Container, restore: bool) -> Vec<String> {
    if ct.userns() {
        crate::runtime::spawn::external_mounts(restore)
    } else {
        Vec::new()
    }
}

/// CRIU's options for dumping container `ct` (its init `init_pid`; `systemd` as for
/// [`record_cgroup_tree`]).
pub fn dump_opts(
    ct: &crate::host::Container,
    init_pid: i32,
    systemd: bool,
    console: Option<&str>,
    freezer_dir: Option<&Path>,
    leave_running: bool,
) -> criu::Opts {
    criu::Opts {
        pid: Some(init_pid),
        root: Some(ct.root.display().to_string()),
        tcp_established: Some(true),
        // A client connecting at the freeze would otherwise fail the whole dump ("in-flight
        // connection"): its half-made connection is left out, and its retransmitted SYN reaches
        // the restored listener (one whose handshake completed but was not yet accepted is
        // reset). A server under load always has some.
        tcp_skip_in_flight: Some(true),
        file_locks: Some(true),
        // A file held open after its name was removed while another name links it
        // (CRIU's zdtm unlink_fstat03) gets a link_remap.N beside it, which the restore opens
        // it by and then removes. CRIU removes it itself after a dump whose processes keep
        // running, so the file snapshot is taken at its post-dump notification.
        link_remap: Some(true),
        ghost_limit: Some(ghost_limit(ct)),
        manage_cgroups: Some(true),
        manage_cgroups_mode: Some(criu::rpc::cg_mode::SOFT),
        external: console
            .map(str::to_string)
            .into_iter()
            .chain(userns_externals(ct, false))
            .collect(),
        leave_running: Some(leave_running),
        // systemd watches /etc/localtime, a symbolic link, itself (IN_DONT_FOLLOW): CRIU finds
        // no path for that watch by its handle and needs its directory scan.
        force_irmap: systemd.then_some(true),
        freeze_cgroup: freezer_dir.map(|d| d.display().to_string()),
        notify_scripts: Some(true),
        ..Default::default()
    }
}

/// `vzctl check CTID`: one container's readiness (JSON: this object under "container").
#[derive(Debug, Clone, serde::Serialize)]
pub struct ContainerCheck {
    pub ctid: u32,
    /// "systemd", "busybox" or "other" (sysvinit and the rest).
    pub init: &'static str,
    pub running: bool,
    /// Why it would not start (empty: nothing known).
    pub start_blockers: Vec<String>,
    /// Running: what would fail a checkpoint or a live migration's dump now.
    pub dump_blockers: Vec<String>,
}

/// One process of a container as `/proc` shows it: what decides whether CRIU can dump it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcFacts {
    /// Its pid inside the container (the last of `NSpid`).
    pub pid: i32,
    pub comm: String,
    /// The scheduler state letter (`T`: stopped by a signal).
    pub state: char,
    /// Real, effective and saved user and group ids, as the host sees them.
    pub uids: [u32; 3],
    pub gids: [u32; 3],
    /// The namespaces it has of its own, below the container's, among those CRIU cannot dump
    /// nested (uts, ipc, user, pid): a systemd unit's sandbox (`ProtectHostname=`, ...).
    pub own_ns: Vec<&'static str>,
    /// The systemd unit it belongs to (its cgroup v2's last part, `lighttpd.service`), if any.
    pub unit: Option<String>,
}

impl ProcFacts {
    /// Parses `/proc/PID/status`.
    pub fn parse(status: &str) -> Option<Self> {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
        };
        let ids = |name: &str| -> Option<[u32; 3]> {
            let v: Vec<u32> = field(name)?
                .split_whitespace()
                .take(3)
                .map(|x| x.parse().ok())
                .collect::<Option<_>>()?;
            v.try_into().ok()
        };
        Some(Self {
            pid: field("NSpid:")?.split_whitespace().last()?.parse().ok()?,
            comm: field("Name:")?,
            state: field("State:")?.chars().next()?,
            uids: ids("Uid:")?,
            gids: ids("Gid:")?,
            own_ns: Vec::new(),
            unit: None,
        })
    }
}

/// The namespaces CRIU 4.2 cannot dump when a process has one below the container's.
const NESTED_NS: &[&str] = &["uts", "ipc", "user", "pid"];

/// The systemd unit of a process from its `/proc/PID/cgroup` (the v2 line's last part, when
/// it names a service or scope).
fn systemd_unit(proc_cgroup: &str) -> Option<String> {
    let path = proc_cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let last = path.trim().rsplit('/').next()?;
    (last.ends_with(".service") || last.ends_with(".scope")).then(|| last.to_string())
}

/// What would make CRIU fail, or hang, on these processes of a container, found before
/// anything is frozen: a process stopped by a signal when the dump is to use the cgroup
/// freezer (`cgroup_freezer`: CRIU blocks attaching to a stopped process inside a frozen
/// cgroup; without it CRIU stops the tree itself and records the stopped process as stopped)
/// and, in a privileged container on a host whose root lacks CAP_SYS_RESOURCE, a process with
/// another user's or group's ids (CRIU cannot read its resource limits).
pub fn dump_blockers(
    ctid: Ctid,
    procs: &[ProcFacts],
    userns: bool,
    sys_resource: bool,
    cgroup_freezer: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for p in procs.iter().filter(|p| !p.own_ns.is_empty()) {
        let unit = p.unit.as_deref().map(|u| format!(" of unit {u}")).unwrap_or_default();
        out.push(format!(
            "process {} ({}){unit} has {} namespace{} of its own, which CRIU cannot checkpoint{}",
            p.pid,
            p.comm,
            p.own_ns.join(" and "),
            if p.own_ns.len() > 1 { "s" } else { "" },
            match &p.unit {
                Some(u) => format!(
                    "; turn its sandboxing off for that (ferry's drop-in sets ProtectHostname=no, PrivateIPC=no, \
                     PrivateUsers=no for every service at start; a unit of its own overrides it: systemctl cat {u}) \
                     and restart it"
                ),
                None => "; end it first".into(),
            }
        ));
    }
    for p in procs.iter().filter(|p| cgroup_freezer && p.state == 'T') {
        out.push(format!(
            "process {} ({}) is stopped by a signal, and CRIU hangs attaching to a stopped process in a frozen cgroup; \
             continue it (vzctl exec {ctid} kill -CONT {}) or end it first",
            p.pid, p.comm, p.pid
        ));
    }
    if !userns && !sys_resource {
        if let Some(p) = procs.iter().find(|p| p.uids.iter().chain(&p.gids).any(|id| *id != 0)) {
            out.push(format!(
                "process {} ({}) runs as uid {} gid {}, and this host's root lacks CAP_SYS_RESOURCE, so CRIU cannot read \
                 its resource limits in a privileged container; give the container a user namespace \
                 (vzctl stop {ctid}; vzctl set {ctid} --userns yes --save)",
                p.pid, p.comm, p.uids[0], p.gids[0]
            ));
        }
    }
    out
}

impl Runtime {
    /// CRIU, with the deadline of one request from `CRIU_TIMEOUT` (seconds) in vz.conf.
    pub fn criu(&self) -> std::result::Result<Criu, CriuError> {
        let mut c = Criu::locate_cached(&self.host.layout.run_dir().join("criu-version"))?;
        let secs = self.host.setting("CRIU_TIMEOUT", "").trim().parse::<u64>().ok();
        if let Some(secs) = secs.filter(|s| *s > 0) {
            c.deadline = Duration::from_secs(secs);
        }
        Ok(c)
    }

    /// The processes of a running container, read from `/proc` (nothing is frozen).
    pub fn proc_facts(&self, ctid: Ctid) -> Result<Vec<ProcFacts>> {
        let cg = self.cgroups(ctid)?;
        let pids = cg.pids(ctid).map_err(|e| RuntimeError::Cgroup(ctid, e))?;
        let ns = |pid: i32, name: &str| fs::read_link(format!("/proc/{pid}/ns/{name}")).ok();
        // The container's own namespaces, read once: init's.
        let init_ns: Option<Vec<_>> = self
            .run_state(ctid)?
            .map(|s| NESTED_NS.iter().map(|n| ns(s.init_pid, n)).collect());
        Ok(pids
            .iter()
            .filter_map(|p| {
                let mut f = ProcFacts::parse(&fs::read_to_string(format!("/proc/{p}/status")).ok()?)?;
                if let Some(init_ns) = &init_ns {
                    f.own_ns = NESTED_NS
                        .iter()
                        .zip(init_ns)
                        .filter(|(n, theirs)| ns(*p, n).is_some_and(|mine| Some(mine) != **theirs))
                        .map(|(n, _)| *n)
                        .collect();
                }
                f.unit = fs::read_to_string(format!("/proc/{p}/cgroup"))
                    .ok()
                    .and_then(|c| systemd_unit(&c));
                Some(f)
            })
            .collect())
    }

    /// [`dump_blockers`] for these processes of a running container (nothing is frozen).
    fn dump_blockers_of(&self, ctid: Ctid, procs: &[ProcFacts], cgroup_freezer: bool) -> Result<Vec<String>> {
        let ct = self.existing(ctid)?;
        Ok(dump_blockers(
            ctid,
            procs,
            ct.userns(),
            criu::has_cap(CAP_SYS_RESOURCE),
            cgroup_freezer,
        ))
    }

    /// What `vzctl check CTID` says of one container: the kind of its init, what would keep it
    /// from starting (a systemd init's needs), and, running, what would fail a dump now.
    pub fn check_container(&self, ctid: Ctid) -> Result<ContainerCheck> {
        let ct = self.existing(ctid)?;
        let running = self.run_state(ctid)?.is_some();
        let mounted = crate::fsutil::is_mountpoint(&ct.root).unwrap_or(false);
        let kind = crate::runtime::init_kind_at(&ct, if mounted { &ct.root } else { ct.tree() });
        let cg = self.cgroups(ctid)?;
        let start_blockers = match kind {
            crate::runtime::InitKind::Systemd => crate::runtime::systemd_missing(&ct, cg)
                .map(|n| format!("its init is systemd, which needs {n}"))
                .into_iter()
                .collect(),
            _ => Vec::new(),
        };
        Ok(ContainerCheck {
            ctid: ctid.get(),
            init: match kind {
                crate::runtime::InitKind::Systemd => "systemd",
                crate::runtime::InitKind::Busybox => "busybox",
                crate::runtime::InitKind::Other => "other",
            },
            running,
            start_blockers,
            dump_blockers: if running { self.dump_blockers(ctid)? } else { Vec::new() },
        })
    }

    /// [`dump_blockers`] for a running container and a dump under the cgroup freezer (a live
    /// migration's), read from `/proc` (nothing is frozen).
    pub fn dump_blockers(&self, ctid: Ctid) -> Result<Vec<String>> {
        self.dump_blockers_of(ctid, &self.proc_facts(ctid)?, true)
    }

    /// CRIU's options for restoring a container: its root, its cgroup on this host (wherever
    /// the dump came from), its links recreated, the console descriptor CRIU recorded as
    /// external (`console`) standing in as `console_fd`; `leave_stopped` keeps the tasks
    /// stopped after the restore.
    pub fn restore_opts(
        &self,
        ct: &crate::host::Container,
        console: Option<&str>,
        console_fd: std::os::fd::RawFd,
        leave_stopped: bool,
    ) -> criu::Opts {
        let mut veths = restore_links(ct);
        let mut external = userns_externals(ct, true);
        if ct.userns() {
            // The pairs exist already (restore_processes): CRIU moves the container's ends in.
            for (i, v) in veths.drain(..).enumerate() {
                external.push(format!(
                    "netdev[{}]:{}",
                    v.if_in,
                    crate::net::restore_peer_ifname(ct.ctid.get(), i)
                ));
            }
        }
        criu::Opts {
            root: Some(ct.root.display().to_string()),
            tcp_established: Some(true),
            file_locks: Some(true),
            manage_cgroups: Some(true),
            manage_cgroups_mode: Some(criu::rpc::cg_mode::SOFT),
            cg_root: vec![criu::rpc::CgroupRoot {
                ctrl: None,
                path: format!("/{}/{}", self.host.cgroup_parent(), ct.ctid),
            }],
            veths,
            external,
            inherit_fd: console
                .iter()
                .map(|k| criu::InheritFd {
                    key: k.to_string(),
                    fd: console_fd,
                })
                .collect(),
            notify_scripts: Some(true),
            leave_stopped: Some(leave_stopped),
            ..Default::default()
        }
    }

    /// The dump `vzctl chkpnt` would make of a running container now, as CRIU options (to
    /// compare with CRIU run by hand: `criu::Opts::cli_args`).
    pub fn chkpnt_dump_opts(&self, ctid: Ctid) -> Result<criu::Opts> {
        let ct = self.existing(ctid)?;
        let st = self.run_state(ctid)?.ok_or(RuntimeError::NotRunning(ctid))?;
        let cg = self.cgroups(ctid)?;
        let freezer = cg.freezers(ctid).first().copied();
        let dir = freezer.and_then(|f| cg.freezer_dir(ctid, f).ok());
        let console = console_key(st.init_pid, &cg.pids(ctid).unwrap_or_default());
        let systemd = crate::runtime::running_caps(&ct, st.init_pid).sys_admin;
        Ok(dump_opts(
            &ct,
            st.init_pid,
            systemd,
            console.as_deref(),
            dir.as_deref(),
            false,
        ))
    }

    /// The restore `vzctl restore` would make of a container, as CRIU options.
    pub fn chkpnt_restore_opts(
        &self,
        ctid: Ctid,
        console: Option<&str>,
        console_fd: std::os::fd::RawFd,
    ) -> Result<criu::Opts> {
        let ct = self.existing(ctid)?;
        Ok(self.restore_opts(&ct, console, console_fd, false))
    }
}

impl Runtime {
    /// Restores from a directory of CRIU images received from a peer (live migration): the
    /// private area is already in place, so nothing is rolled back; with `attach` false the
    /// network stays detached until `attach_network` (the commit).
    pub fn restore_from_images(&self, ctid: Ctid, images: &Path, attach: bool, force: bool) -> Result<RunState> {
        let _lock = self.lock(ctid)?;
        let ct = self.existing(ctid)?;
        if self.run_state(ctid)?.is_some() {
            return Err(RuntimeError::Running(ctid).into());
        }
        let criu = self.criu().map_err(|e| CheckpointError::Criu(ctid, e))?;
        if !force && images.join("cpuinfo.img").exists() {
            self.cpuinfo_check_cached(&criu, images)
                .map_err(|e| CheckpointError::Incompatible {
                    ctid,
                    why: format!("the CPU differs ({e})"),
                })?;
        }
        let console = fs::read_to_string(images.join("ferry-console"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        let was_mounted = crate::fsutil::is_mountpoint(&ct.root).map_err(|e| RuntimeError::Io {
            ctid,
            what: "reading the mount table".into(),
            source: e,
        })?;
        if !was_mounted {
            self.mount_root(&ct)?;
        }
        // A migration's images: the destination applies the configuration's limits.
        let none = crate::resources::Limits::default();
        self.restore_processes(
            ctid,
            &ct,
            &criu,
            images,
            console.as_deref(),
            attach,
            was_mounted,
            &none,
            None,
        )
    }

    /// Brings a restored container's network up: links, routes, proxies, announcements.
    pub fn attach_network(&self, ctid: Ctid) -> Result<()> {
        let ct = self.existing(ctid)?;
        let mut st = self.run_state(ctid)?.ok_or(RuntimeError::NotRunning(ctid))?;
        let ips = crate::net::parse_ip_list(ct.get("IP_ADDRESS").unwrap_or("")).unwrap_or_default();
        let netifs = crate::net::netif::parse_netif(ct.get("NETIF").unwrap_or("")).unwrap_or_default();
        // A migration's destination: every address moved here, and is announced.
        st.net = crate::net::attach_restored(ctid.get(), &ips, &netifs, &self.host_net(), |_| false)
            .map_err(|e| RuntimeError::Net(ctid, e))?;
        // What the restored kernel tried to send while its links were down (TCP's window
        // probes at the end of the repair) left its neighbour entries unresolved, retried
        // only once a second: forgotten, the next packet resolves at once.
        let _ = crate::net::ip::inside(st.init_pid, &["neigh", "flush", "all"]);
        // The restore left the tasks stopped; with the network up, they run.
        for pid in self.cgroups(ctid)?.pids(ctid).unwrap_or_default() {
            // SAFETY: a signal to a process of this container.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        }
        st.save(&self.host.layout.state_file(ctid))
            .map_err(|e| CheckpointError::Io {
                ctid,
                what: "writing the runtime state".into(),
                source: e,
            })?;
        Ok(())
    }

    fn dump_dir(&self, ctid: Ctid) -> PathBuf {
        self.host.layout.dump_dir().join(ctid.to_string())
    }

    fn suspended_file(&self, ctid: Ctid) -> PathBuf {
        self.host.layout.run_dir().join(format!("{ctid}.suspended.json"))
    }

    /// The container's checkpoints in vz/dump, oldest first.
    pub fn checkpoints(&self, ctid: Ctid) -> std::result::Result<Vec<CheckpointInfo>, CheckpointError> {
        let dir = self.dump_dir(ctid);
        let mut out = Vec::new();
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "ckpt") {
                    let read = if p.is_dir() {
                        directory::read_manifest(&p).map(|m| (directory::size(&m), m))
                    } else {
                        archive::read_manifest(&p).map(|(m, _, _)| (fs::metadata(&p).map(|m| m.len()).unwrap_or(0), m))
                    };
                    if let Ok((size, m)) = read {
                        out.push(CheckpointInfo {
                            id: m.id.clone(),
                            size,
                            path: p,
                            created: m.created,
                            frozen_ms: m.frozen_ms,
                            level: m.fs.level,
                            parent: m.fs.parent.clone(),
                            keep_running: m.keep_running,
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(out)
    }

    /// A checkpoint under retention, as the agent's schedule and `vzctl chkpnt --keep N` take
    /// them: incremental unless the newest chain has `keep` members (then a new full chain
    /// starts), and afterwards every checkpoint beyond the newest `keep` and what they depend
    /// on is deleted. Returns the new checkpoint and the ids deleted.
    pub fn chkpnt_rotating(
        &self,
        ctid: Ctid,
        keep: usize,
        keep_running: bool,
    ) -> Result<(CheckpointInfo, Vec<String>)> {
        use crate::checkpoint::retention::{prune, start_new_chain, Entry};
        let entries = |list: Vec<CheckpointInfo>| -> Vec<Entry> {
            list.into_iter()
                .map(|c| Entry {
                    id: c.id,
                    created: c.created,
                    level: c.level,
                    parent: c.parent,
                })
                .collect()
        };
        let full = start_new_chain(&entries(self.checkpoints(ctid)?), keep);
        let c = self.chkpnt(
            ctid,
            &ChkpntOptions {
                dumpfile: None,
                keep_running,
                full,
            },
        )?;
        let dir = self.dump_dir(ctid);
        let gone = prune(&entries(self.checkpoints(ctid)?), keep);
        for id in &gone {
            remove_checkpoint(&dir, id);
        }
        Ok((c, gone))
    }

    /// Checkpoints a running container.
    pub fn chkpnt(&self, ctid: Ctid, opts: &ChkpntOptions) -> Result<CheckpointInfo> {
        let _lock = self.lock(ctid)?;
        self.clear_leftovers(ctid);
        let ct = self.existing(ctid)?;
        let st = self.run_state(ctid)?.ok_or(RuntimeError::NotRunning(ctid))?;
        let criu = self.criu().map_err(|e| CheckpointError::Criu(ctid, e))?;
        // A tree holding a process stopped by a signal is stopped by CRIU itself (ptrace), not
        // by the cgroup freezer, under which CRIU would hang attaching to it; the file
        // snapshot, taken at CRIU's post-dump notification, still sees nothing running.
        let procs = self.proc_facts(ctid)?;
        let cgroup_freezer = !procs.iter().any(|p| p.state == 'T');
        let blockers = self.dump_blockers_of(ctid, &procs, cgroup_freezer)?;
        if !blockers.is_empty() {
            return Err(CheckpointError::NotDumpable {
                ctid,
                why: blockers.join("; "),
            });
        }
        let io = |what: String| move |source| CheckpointError::Io { ctid, what, source };
        let created = crate::units::unix_now();
        let dir = self.dump_dir(ctid);
        fs::create_dir_all(&dir).map_err(io(format!("mkdir {}", dir.display())))?;
        let mut id = stamp(created);
        while dir.join(format!("{id}.ckpt")).exists() {
            id.push('a');
        }
        let work = dir.join(format!(".work-{id}"));
        let images = work.join("images");
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&images).map_err(io(format!("mkdir {}", images.display())))?;
        // The chain: a delta against the newest checkpoint that left its snapshot list behind.
        let parent = if opts.dumpfile.is_none() && !opts.full {
            self.checkpoints(ctid)?
                .into_iter()
                .rev()
                .find(|c| dir.join(format!("{}.snar", c.id)).exists())
        } else {
            None
        };
        let snar = dir.join(format!(".{id}.snar"));
        let level = match &parent {
            Some(p) => {
                fs::copy(dir.join(format!("{}.snar", p.id)), &snar)
                    .map_err(io("copying the parent's snapshot list".into()))?;
                p.level + 1
            }
            None => 0,
        };
        let cg = self.cgroups(ctid)?;
        let freezer = *cg
            .freezers(ctid)
            .first()
            .ok_or_else(|| RuntimeError::Cgroup(ctid, crate::cgroup::CgroupError::NoController("freezer".into())))?;
        let freezer_dir = cg
            .freezer_dir(ctid, freezer)
            .map_err(|e| RuntimeError::Cgroup(ctid, e))?;
        let console = console_key(st.init_pid, &cg.pids(ctid).unwrap_or_default());

        // No connection is left half made for the dump to drop: new ones are refused, those
        // made are accepted first (bounded).
        crate::net::drain_in_flight(ctid.get(), st.init_pid, IN_FLIGHT_WAIT);
        // Frozen from here until the dump and the file snapshot are done.
        let t0 = Instant::now();
        if cgroup_freezer {
            if let Err(e) = cg.freeze(ctid, freezer, Duration::from_secs(30)) {
                crate::net::unmute(ctid.get(), &st.net.netifs);
                return Err(RuntimeError::Cgroup(ctid, e).into());
            }
        }
        // Nothing reaches it while it is frozen, nor while its processes and network namespace
        // end after the dump: what its peers send is dropped (they send it again to the
        // restored copy) instead of being answered with a reset by the namespace on its way out.
        crate::net::suspend(&st.net);
        crate::net::mute(ctid.get(), &st.net);
        let systemd = crate::runtime::running_caps(&ct, st.init_pid).sys_admin;
        let dump_opts = dump_opts(
            &ct,
            st.init_pid,
            systemd,
            console.as_deref(),
            cgroup_freezer.then_some(freezer_dir.as_path()),
            opts.keep_running,
        );
        // The private area as it is at the end of the dump, while nothing in the container
        // runs (CRIU's post-dump notification: its link remaps are still there).
        let root = ct.tree().display().to_string();
        let fs_tar = work.join("fs.tar").display().to_string();
        let snar_s = snar.display().to_string();
        let mut args = crate::fsutil::TAR_KEEP.to_vec();
        args.extend(["-C", &root, "-cf", &fs_tar]);
        if opts.dumpfile.is_none() {
            args.extend(["--listed-incremental", &snar_s]);
        }
        args.push(".");
        let mut snap = None;
        // A checkpoint also records the private area's entries as the snapshot saw them
        // (fs.entries, stamp.rs), and their stamp: a restore onto the same files leaves them
        // alone, one onto changed files rolls back only what differs (rollback.rs).
        let mut fs_stamp = None;
        let tree = ct.tree().to_path_buf();
        let entries_file = work.join("fs.entries");
        let mut snapshot = |snap: &mut Option<Result<()>>| {
            let mut r = tar(ctid, &args, "snapshotting the private area");
            if r.is_ok() {
                r = stamp::walk(&tree)
                    .map(|e| stamp::encode(&e))
                    .and_then(|enc| {
                        fs::write(&entries_file, &enc)?;
                        Ok(enc)
                    })
                    .map(|enc| fs_stamp = Some(stamp::of_encoded(&enc)))
                    .map_err(|source| CheckpointError::Io {
                        ctid,
                        what: "recording the private area's entries".into(),
                        source,
                    });
            }
            *snap = Some(r);
        };
        let mut at_post_dump = |script: &str| {
            if script != "post-dump" || snap.is_some() {
                return Ok(());
            }
            snapshot(&mut snap);
            snap.as_ref()
                .expect("just taken")
                .as_ref()
                .map_err(|e| e.to_string())
                .map(|_| ())
        };
        // A checkpoint is CRIU's images as written (format 2): the pages are hashed as CRIU
        // writes them.
        let follower = Some(directory::Follower::start(&images));
        if let Err(mut e) = criu.dump(&images, dump_opts, &mut at_post_dump) {
            if let CriuError::Failed { msg, log_errors, .. } = &mut e {
                let rlimit = msg
                    .iter()
                    .chain(log_errors.iter())
                    .any(|l| l.contains("Can't get rlimit"));
                if rlimit && !criu::has_cap(CAP_SYS_RESOURCE) {
                    log_errors.push("hint: this host's root lacks CAP_SYS_RESOURCE, so CRIU cannot read the limits of processes running as other users in a privileged container; one with a user namespace can (vzctl set --userns yes --save, vzctl check)".into());
                }
            }
            let _ = cg.thaw(ctid, freezer);
            crate::net::unsuspend(ctid.get(), &st.net);
            let log = self.host.layout.log_dir().join(format!("{ctid}.dump.log"));
            let _ = fs::copy(images.join("dump.log"), &log);
            drop(follower);
            let _ = fs::remove_dir_all(&work);
            let _ = fs::remove_file(&snar);
            // The snapshot's own error, if that is what failed the dump (the container runs).
            if let Some(Err(snap_err)) = snap {
                return Err(snap_err);
            }
            return Err(CheckpointError::Dump(ctid, log, e));
        }
        // CRIU sends post-dump on every successful dump; without it, the snapshot now.
        if snap.is_none() {
            snapshot(&mut snap);
        }
        let snap = snap.expect("just taken");
        let snap = snap.and_then(|s| {
            record_cgroup_tree(cg, &ct, systemd, &images)
                .map(|_| s)
                .map_err(io("recording the container's cgroups".into()))
        });
        if opts.keep_running {
            let _ = cg.thaw(ctid, freezer);
            crate::net::unsuspend(ctid.get(), &st.net);
        }
        let frozen_ms = t0.elapsed().as_millis() as u64;
        if let Err(e) = snap {
            drop(follower);
            let _ = fs::remove_dir_all(&work);
            let _ = fs::remove_file(&snar);
            if !opts.keep_running {
                // CRIU already ended the processes; the container is stopped with no checkpoint.
                self.after_stopping_dump(&ct, &st);
            }
            return Err(e);
        }
        let cpuinfo = self.cpuinfo_dump_cached(&criu, &images);
        let mut manifest = Manifest {
            format: archive::FORMAT_VERSION,
            id: id.clone(),
            ctid: ctid.get(),
            created,
            config: fs::read_to_string(&ct.conf_path).unwrap_or_default(),
            criu_version: criu
                .version()
                .map(|v| format!("{}.{}.{}", v.0, v.1, v.2))
                .unwrap_or_default(),
            kernel: criu::kernel(),
            cpuinfo,
            keep_running: opts.keep_running,
            frozen_ms,
            console,
            fs: FsSnapshot {
                level,
                parent: parent.as_ref().map(|p| p.id.clone()),
                stamp: fs_stamp,
            },
            payload_bytes: 0,
            live_limits: st.live_limits.clone(),
            files: Vec::new(),
        };
        let (dest, written) = match &opts.dumpfile {
            // One self-contained file: the sealed directory bundled (format 2, nothing
            // compressed: the pages are CRIU's, hashed as it wrote them).
            Some(file) => (
                file.clone(),
                directory::seal(&work, &mut manifest, follower)
                    .and_then(|_| directory::write_bundle(&work, file))
                    .map_err(|e| CheckpointError::Archive(ctid, e)),
            ),
            // A directory CRIU restores from in place (format 2), with its snapshot list beside.
            None => {
                let dest = dir.join(format!("{id}.ckpt"));
                let sealed = directory::seal(&work, &mut manifest, follower)
                    .map_err(|e| CheckpointError::Archive(ctid, e))
                    .and_then(|size| {
                        // The container's file names and metadata: the host's root alone reads them.
                        use std::os::unix::fs::PermissionsExt;
                        let _ = fs::set_permissions(&snar, fs::Permissions::from_mode(0o600));
                        fs::set_permissions(&work, fs::Permissions::from_mode(0o700))
                            .and_then(|_| fs::rename(&snar, dir.join(format!("{id}.snar"))))
                            .and_then(|_| fs::rename(&work, &dest))
                            .map_err(io(format!("naming the checkpoint {}", dest.display())))?;
                        Ok(size)
                    });
                if sealed.is_err() {
                    let _ = fs::remove_file(dir.join(format!("{id}.snar")));
                }
                (dest, sealed)
            }
        };
        let _ = fs::remove_dir_all(&work);
        let _ = fs::remove_file(&snar);
        if !opts.keep_running {
            self.after_stopping_dump(&ct, &st);
        }
        let size = written?;
        Ok(CheckpointInfo {
            id,
            path: dest,
            created,
            size,
            frozen_ms,
            level,
            parent: manifest.fs.parent,
            keep_running: opts.keep_running,
        })
    }

    /// Removes what an interrupted checkpoint or restore of the container left in its dump
    /// directory (a work directory holding its memory, a snapshot list not yet named). Called
    /// with the container's lock held, so none of it is in use.
    fn clear_leftovers(&self, ctid: Ctid) {
        let Ok(rd) = fs::read_dir(self.dump_dir(ctid)) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if name.starts_with(".work-") || name.starts_with(".restore-") {
                fs::remove_dir_all(e.path())
            } else if name.starts_with('.') && name.ends_with(".snar") {
                fs::remove_file(e.path())
            } else {
                continue;
            };
            match r {
                Ok(()) => tracing::info!(ctid = %ctid, "removed {name}, left by an interrupted checkpoint or restore"),
                Err(err) => {
                    tracing::warn!(ctid = %ctid, "removing {name}, left by an interrupted checkpoint or restore: {err}")
                }
            }
        }
    }

    /// Where CRIU's word on this host's CPU is kept, and the key of this boot and this CRIU
    /// (what CRIU says of the CPU changes with neither otherwise).
    fn cpuinfo_cache(&self, criu: &Criu) -> Option<(PathBuf, String)> {
        let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let v = criu.version().ok()?;
        let dir = self.host.layout.run_dir().join("criu-cpuinfo");
        Some((dir, format!("{}-{}.{}.{}", boot.trim(), v.0, v.1, v.2)))
    }

    /// Keeps `name` (bytes `b`) in the CPU cache, and drops what an earlier boot or CRIU left.
    fn cpuinfo_keep(dir: &Path, key: &str, name: &str, b: &[u8]) {
        if fs::create_dir_all(dir).is_err() {
            return;
        }
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                if !e.file_name().to_string_lossy().contains(key) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        let _ = crate::fsutil::write_atomic(&dir.join(name), b, 0o600);
    }

    /// Writes CRIU's description of this host's CPU (`cpuinfo.img`) into a dump's `images`:
    /// CRIU makes it once per boot and CRIU version, later dumps copy it (a CRIU run less).
    fn cpuinfo_dump_cached(&self, criu: &Criu, images: &Path) -> bool {
        let target = images.join("cpuinfo.img");
        let Some((dir, key)) = self.cpuinfo_cache(criu) else {
            return criu.cpuinfo_dump(images).is_ok();
        };
        let name = format!("host-{key}.img");
        if fs::copy(dir.join(&name), &target).is_ok() {
            return true;
        }
        if criu.cpuinfo_dump(images).is_err() {
            return false;
        }
        if let Ok(b) = fs::read(&target) {
            Self::cpuinfo_keep(&dir, &key, &name, &b);
        }
        true
    }

    /// `criu cpuinfo check` of a checkpoint's `cpuinfo.img` against this host, remembered for
    /// the boot and CRIU version once it passed (a description already found to fit is not
    /// checked again; one that did not is, every time).
    fn cpuinfo_check_cached(&self, criu: &Criu, images: &Path) -> std::result::Result<(), CriuError> {
        let mark = self.cpuinfo_cache(criu).and_then(|(dir, key)| {
            let b = fs::read(images.join("cpuinfo.img")).ok()?;
            Some((dir, key.clone(), format!("fits-{key}-{}", blake3::hash(&b).to_hex())))
        });
        if mark.as_ref().is_some_and(|(dir, _, name)| dir.join(name).exists()) {
            return Ok(());
        }
        criu.cpuinfo_check(images)?;
        if let Some((dir, key, name)) = mark {
            Self::cpuinfo_keep(&dir, &key, &name, b"");
        }
        Ok(())
    }

    /// After a dump that ended the container's processes: the cgroup and mount go, the
    /// addresses stay claimed (blackholed) until the restore.
    fn after_stopping_dump(&self, ct: &crate::host::Container, st: &RunState) {
        let ctid = ct.ctid;
        if let Ok(cg) = self.cgroups(ctid) {
            let _ = cg.kill_all(ctid, Duration::from_secs(10));
            let _ = cg.remove(ctid, Duration::from_secs(10));
        }
        crate::net::suspend(&st.net);
        // The links went with the network namespace; the routed link's rules would stay.
        crate::net::unmute(ctid.get(), &[]);
        if let Ok(b) = serde_json::to_vec(&st.net) {
            let _ = crate::fsutil::write_atomic(&self.suspended_file(ctid), &b, 0o644);
        }
        let _ = fs::remove_file(self.host.layout.state_file(ctid));
        if crate::fsutil::is_mountpoint(&ct.root).unwrap_or(false) {
            let _ = self.umount_root(ct);
        }
    }

    /// The archive to restore and the chain it needs, oldest first (verified).
    fn chain(&self, ctid: Ctid, opts: &RestoreOptions) -> Result<Vec<(PathBuf, Manifest)>> {
        let arch = |e| CheckpointError::Archive(ctid, e);
        let target = match (&opts.dumpfile, &opts.checkpoint) {
            (Some(f), _) => f.clone(),
            (None, Some(id)) => {
                let p = self.dump_dir(ctid).join(format!("{id}.ckpt"));
                if !p.exists() {
                    return Err(CheckpointError::NoCheckpoint(ctid, format!(" named {id}")));
                }
                p
            }
            (None, None) => self
                .checkpoints(ctid)?
                .pop()
                .map(|c| c.path)
                .ok_or_else(|| CheckpointError::NoCheckpoint(ctid, String::new()))?,
        };
        let mut chain = Vec::new();
        let mut next = Some(target);
        while let Some(p) = next {
            // The archive restored is hashed as it is unpacked, before anything changes; the
            // ones before it in the chain are unpacked only after the private area begins to
            // roll back, so they are checked whole now.
            let m = if p.is_dir() {
                // A directory's files are checked by restore_from (the restored one's) or
                // here (an earlier one's snapshot, the only part of it the restore reads).
                directory::read_manifest(&p).and_then(|m| {
                    if !chain.is_empty() {
                        directory::verify(&p, &m, |n| n == "fs.tar")?;
                    }
                    Ok(m)
                })
            } else if chain.is_empty() {
                archive::inspect(&p)
            } else {
                archive::verify(&p)
            }
            .map_err(arch)?;
            if m.ctid != ctid.get() && opts.dumpfile.is_none() {
                return Err(CheckpointError::Incompatible {
                    ctid,
                    why: format!("{} belongs to container {}", p.display(), m.ctid),
                });
            }
            next = match &m.fs.parent {
                Some(parent) => {
                    let pp = self.dump_dir(ctid).join(format!("{parent}.ckpt"));
                    if !pp.exists() {
                        return Err(CheckpointError::NoCheckpoint(
                            ctid,
                            format!(" {parent}, which {} needs", m.id),
                        ));
                    }
                    Some(pp)
                }
                None => None,
            };
            chain.push((p, m));
            if chain.len() > 10_000 {
                return Err(CheckpointError::Incompatible {
                    ctid,
                    why: "the checkpoint chain loops".into(),
                });
            }
        }
        chain.reverse();
        Ok(chain)
    }

    /// Rolls the private area back from the entries the checkpoint recorded (`fs.entries`),
    /// changing only what differs (`rollback`), or nothing where its stamp matches. False
    /// where that cannot be done (a format 1 checkpoint in the chain, no entries) or its
    /// result does not match the entries: the caller extracts the whole chain instead. A
    /// `--dumpfile` restored onto another tree (another host's) differs in every inode: each
    /// name is made anew from it, and what the tree held beside is removed.
    #[allow(clippy::too_many_arguments)]
    fn roll_back_in_place(
        &self,
        ctid: Ctid,
        ct: &crate::host::Container,
        chain: &[(PathBuf, Manifest)],
        target: &Path,
        manifest: &Manifest,
        work: &Path,
    ) -> bool {
        let has_entries = manifest.files.iter().any(|f| f.name == "fs.entries");
        if !has_entries || chain.iter().any(|(p, _)| !p.is_dir()) {
            return false;
        }
        // Checked with the rest of the checkpoint before anything changed.
        let Ok(recorded) = fs::read(target.join("fs.entries")) else {
            return false;
        };
        let Ok(live) = stamp::walk(ct.tree()) else {
            return false;
        };
        let live_enc = stamp::encode(&live);
        if manifest.fs.stamp.as_deref() == Some(stamp::of_encoded(&live_enc).as_str()) {
            tracing::debug!(ctid = %ctid, "restore: the private area is the checkpoint's; left alone");
            return true;
        }
        let Ok(recorded) = stamp::decode(&recorded) else {
            return false;
        };
        let plan = rollback::plan(&recorded, &live);
        let archives: Vec<PathBuf> = chain.iter().map(|(p, _)| p.join("fs.tar")).collect();
        match rollback::apply(ct.tree(), &plan, &recorded, &archives, work) {
            Ok(()) => {
                tracing::debug!(
                    ctid = %ctid,
                    removed = plan.remove.len(),
                    restored = plan.extract.len(),
                    "restore: the private area rolled back where it differed"
                );
                true
            }
            Err(e) => {
                tracing::warn!(ctid = %ctid, "rolling back only what differs failed ({e}); extracting the whole snapshot");
                false
            }
        }
    }

    /// Before an archive of the chain is extracted in place (`--overwrite`): the names on
    /// disk sharing an inode otherwise than the archive links them are unlinked, for tar to
    /// make them anew (`links`). The archive is listed only when some file has several names.
    fn unlink_stale_links(&self, ctid: Ctid, tree: &Path, archive: &str) -> Result<()> {
        let io = |what: &str| {
            let what = what.to_string();
            move |source| CheckpointError::Io { ctid, what, source }
        };
        let groups = links::linked_files(tree).map_err(io("reading the private area's hard links"))?;
        if groups.is_empty() {
            return Ok(());
        }
        let listing = tar_output(
            ctid,
            &["--quoting-style=c", "-tvf", archive],
            "listing the checkpoint's files",
        )?;
        for name in links::stale_links(&groups, &links::parse_listing(&listing)) {
            let Ok(rel) = migrate_proto::path::RelPath::new(name) else {
                continue;
            };
            let p = crate::fsutil::confined(tree, &rel).map_err(io("finding a hard link to break"))?;
            fs::remove_file(&p).map_err(io(&format!("unlinking {}", p.display())))?;
        }
        Ok(())
    }

    /// `vzctl restore CTID --dumpfile FILE` on a host that does not have container `ctid`:
    /// makes it from the archive (its configuration, with this host's paths and, for a user
    /// namespace, a range of this host's ids; an empty private area of its layout), then
    /// restores it. The archive's frame and manifest, the CTID, name and addresses (free here)
    /// are checked before anything is made, the archive's hash as the restore reads it, and a
    /// failed restore removes what was made: the host is as before.
    pub fn import(&self, ctid: Ctid, dumpfile: &Path, force: bool) -> Result<RunState> {
        let arch = |e| CheckpointError::Archive(ctid, e);
        let bad = |what: String| RuntimeError::BadValue { ctid, what };
        let io = |what: String| move |source| CheckpointError::Io { ctid, what, source };
        self.host.initialize().map_err(RuntimeError::from)?;
        let made = {
            let _lock = self.lock(ctid)?;
            let conf_path = self.host.layout.ct_conf(ctid);
            if conf_path.exists() {
                return Err(RuntimeError::Exists(ctid, conf_path).into());
            }
            // Its frame and manifest now; the whole of it is hashed as the restore below
            // unpacks it, and a mismatch there removes what this made.
            let m = if directory::file_version(dumpfile) == Some(directory::FORMAT) {
                directory::read_bundle_manifest(dumpfile).map(|(m, _)| m)
            } else {
                archive::inspect(dumpfile)
            }
            .map_err(arch)?;
            if m.fs.level != 0 {
                return Err(bad(format!(
                    "{} is a delta of a checkpoint chain, not a standalone archive (vzctl chkpnt --dumpfile writes those)",
                    dumpfile.display()
                ))
                .into());
            }
            let mut config = Config::parse(&m.config, dumpfile)
                .map_err(HostError::from)
                .map_err(RuntimeError::from)?;
            // This host's paths, not the ones of the host that wrote it.
            for (k, default) in [("VE_ROOT", "/vz/root/$VEID"), ("VE_PRIVATE", "/vz/private/$VEID")] {
                config
                    .set(k, &self.host.setting(k, default))
                    .map_err(HostError::from)
                    .map_err(RuntimeError::from)?;
            }
            let ct = self.host.container_from(ctid, config.clone());
            if let Some(n) = ct.name() {
                if let Some(other) = self.host.name_owner(n).map_err(RuntimeError::from)? {
                    return Err(bad(format!("the name {n:?} is already used by container {other} here")).into());
                }
            }
            for a in ct.ip_addresses() {
                let addr = a.split('/').next().unwrap_or("").to_string();
                if let Some(other) = self.address_owner(&addr)? {
                    return Err(RuntimeError::AddressInUse { ctid, addr, other }.into());
                }
            }
            if ct.private.exists() {
                return Err(RuntimeError::Exists(ctid, ct.private.clone()).into());
            }
            let image_bytes = match ct.layout().map_err(|e| RuntimeError::Storage(ctid, e))? {
                crate::storage::Layout::Simfs => None,
                crate::storage::Layout::Image => Some(crate::resources::Limits::image_bytes(&ct.config).map_err(bad)?),
            };
            // A range of this host's ids, under the pool's lock until the configuration holds it.
            config.unset("LOCAL_UID");
            config.unset("LOCAL_GID");
            let conf = conf_path.clone();
            let write = |c: &Config| c.save(&conf).map_err(|e| RuntimeError::Host(e.into()));
            let private = ct.private.clone();
            let mut make = || -> Result<()> {
                if let Some(parent) = private.parent() {
                    fs::create_dir_all(parent).map_err(io(format!("mkdir {}", parent.display())))?;
                }
                fs::create_dir(&private).map_err(io(format!("mkdir {}", private.display())))?;
                if let Some(bytes) = image_bytes {
                    crate::storage::create_image(&crate::storage::image_path(&private), bytes)
                        .map_err(|e| RuntimeError::Storage(ctid, e))?;
                }
                if self.assign_idmap(ctid, &mut config, Some(&write))?.is_none() {
                    write(&config)?;
                }
                Ok(())
            };
            let r = make();
            if r.is_err() {
                let _ = fs::remove_dir_all(&private);
                let _ = fs::remove_file(&conf_path);
            }
            r.map(|_| (private, conf_path))?
        };
        tracing::debug!(ctid = %ctid, "import: the container made");
        let restored = self.restore(
            ctid,
            &RestoreOptions {
                dumpfile: Some(dumpfile.to_path_buf()),
                checkpoint: None,
                force,
            },
        );
        if restored.is_err() {
            // Back as it was: nothing of the container stays.
            let _ = self.destroy(ctid, false);
            let _ = fs::remove_dir_all(&made.0);
            let _ = fs::remove_file(&made.1);
            let _ = fs::remove_dir_all(self.dump_dir(ctid));
        }
        restored
    }

    /// Restores a stopped container from a checkpoint.
    pub fn restore(&self, ctid: Ctid, opts: &RestoreOptions) -> Result<RunState> {
        tracing::debug!(ctid = %ctid, "restore: begins");
        let _lock = self.lock(ctid)?;
        self.clear_leftovers(ctid);
        let ct = self.existing(ctid)?;
        if self.run_state(ctid)?.is_some() {
            return Err(RuntimeError::Running(ctid).into());
        }
        let work = self.dump_dir(ctid).join(format!(".restore-{}", std::process::id()));
        let _ = fs::remove_dir_all(&work);
        let r = self.restore_in(ctid, &ct, opts, &work);
        let _ = fs::remove_dir_all(&work);
        tracing::debug!(ctid = %ctid, "restore: work directory removed");
        r
    }

    fn restore_in(
        &self,
        ctid: Ctid,
        ct: &crate::host::Container,
        opts: &RestoreOptions,
        work: &Path,
    ) -> Result<RunState> {
        // A format 2 file (`--dumpfile`) becomes a checkpoint directory in the work directory
        // first, checked from there as any other.
        let unbundled;
        let opts = match &opts.dumpfile {
            Some(f) if !f.is_dir() && directory::file_version(f) == Some(directory::FORMAT) => {
                let dir = work.join("bundle");
                directory::unbundle(f, &dir).map_err(|e| CheckpointError::Archive(ctid, e))?;
                tracing::debug!(ctid = %ctid, "restore: the file unpacked into a checkpoint directory");
                unbundled = RestoreOptions {
                    dumpfile: Some(dir),
                    ..opts.clone()
                };
                &unbundled
            }
            _ => opts,
        };
        // Everything is checked before anything changes.
        let chain = self.chain(ctid, opts)?;
        let (target_path, manifest) = chain.last().cloned().unwrap();
        tracing::debug!(ctid = %ctid, "restore: the chain read");
        let criu = self.criu().map_err(|e| CheckpointError::Criu(ctid, e))?;
        tracing::debug!(ctid = %ctid, "restore: CRIU found");
        self.restore_from(ctid, ct, &criu, &chain, &target_path, &manifest, work, opts)
    }

    #[allow(clippy::too_many_arguments)]
    fn restore_from(
        &self,
        ctid: Ctid,
        ct: &crate::host::Container,
        criu: &Criu,
        chain: &[(PathBuf, Manifest)],
        target: &Path,
        manifest: &Manifest,
        work: &Path,
        opts: &RestoreOptions,
    ) -> Result<RunState> {
        let arch = |e| CheckpointError::Archive(ctid, e);
        let t0 = Instant::now();
        let step = |what: &str| tracing::debug!(ctid = %ctid, ms = t0.elapsed().as_millis() as u64, "restore: {what}");
        // A directory (format 2): everything but the pages checked now, the pages while CRIU
        // reads them (the restored processes run only if they match); a file (format 1):
        // unpacked, its hash checked in the same read.
        let mut pages = None;
        let target_tar = if target.is_dir() {
            directory::verify(target, manifest, |n| !directory::is_pages(n)).map_err(arch)?;
            directory::link_images(target, manifest, &work.join("images")).map_err(arch)?;
            pages = Some(directory::PageCheck::start(target, manifest));
            target.join("fs.tar")
        } else {
            archive::unpack(target, work).map_err(arch)?;
            work.join("fs.tar")
        };
        let images = work.join("images");
        step("checkpoint checked and its images in place");
        if !opts.force {
            let ours = criu.version().map_err(|e| CheckpointError::Criu(ctid, e))?;
            let theirs = criu::major_minor(&manifest.criu_version);
            if theirs.is_some_and(|t| t > (ours.0 as u32, ours.1 as u32)) {
                return Err(CheckpointError::Incompatible {
                    ctid,
                    why: format!(
                        "it was made by CRIU {}, newer than this host's {}.{}",
                        manifest.criu_version, ours.0, ours.1
                    ),
                });
            }
            let mm = |k: &str| k.split('.').take(2).collect::<Vec<_>>().join(".");
            if mm(&manifest.kernel) != mm(&criu::kernel()) {
                return Err(CheckpointError::Incompatible {
                    ctid,
                    why: format!(
                        "it was made on kernel {}, this host runs {}",
                        manifest.kernel,
                        criu::kernel()
                    ),
                });
            }
            if manifest.cpuinfo {
                self.cpuinfo_check_cached(criu, &images)
                    .map_err(|e| CheckpointError::Incompatible {
                        ctid,
                        why: format!("the CPU differs ({e})"),
                    })?;
            }
        }
        step("CPU, CRIU and kernel checked");
        // Roll the private area back: the full copy, then each delta (GNU tar's incremental
        // extraction also deletes what did not exist when the snapshot was taken).
        let was_mounted = crate::fsutil::is_mountpoint(&ct.root).map_err(|e| RuntimeError::Io {
            ctid,
            what: "reading the mount table".into(),
            source: e,
        })?;
        if !was_mounted {
            self.mount_root(ct)?;
        }
        step("root mounted");
        let chain = if self.roll_back_in_place(ctid, ct, chain, target, manifest, work) {
            &[][..]
        } else {
            chain
        };
        let root = ct.tree().display().to_string();
        let undo_mount = |e: CheckpointError| {
            if !was_mounted {
                let _ = self.umount_root(ct);
            }
            e
        };
        for (p, m) in chain {
            let part = work.join(format!("chain-{}", m.id));
            let fs_tar = if p == target {
                target_tar.clone()
            } else if p.is_dir() {
                p.join("fs.tar")
            } else {
                archive::unpack(p, &part).map_err(arch).map_err(undo_mount)?;
                part.join("fs.tar")
            };
            let f = fs_tar.display().to_string();
            self.unlink_stale_links(ctid, ct.tree(), &f).map_err(undo_mount)?;
            let mut args = rollback::extract_in_place();
            args.extend(["-C", &root, "-xf", &f]);
            if m.fs.level > 0 || chain.len() > 1 || opts.dumpfile.is_none() {
                args.push("--listed-incremental=/dev/null");
            }
            tar(ctid, &args, "rolling the private area back").map_err(undo_mount)?;
        }
        step("private area rolled back");
        self.restore_processes(
            ctid,
            ct,
            criu,
            &images,
            manifest.console.as_deref(),
            true,
            was_mounted,
            &manifest.live_limits,
            pages,
        )
    }

    /// CRIU's half of a restore, with the root mounted and rolled back: cgroup and limits, a
    /// console, the processes, the network (attached now, or later by `attach_network`).
    #[allow(clippy::too_many_arguments)]
    fn restore_processes(
        &self,
        ctid: Ctid,
        ct: &crate::host::Container,
        criu: &Criu,
        images: &Path,
        console: Option<&str>,
        attach: bool,
        was_mounted: bool,
        live_limits: &crate::resources::Limits,
        pages: Option<directory::PageCheck>,
    ) -> Result<RunState> {
        let io = |what: String| move |source| CheckpointError::Io { ctid, what, source };
        let t0 = Instant::now();
        let step = |what: &str| tracing::debug!(ctid = %ctid, ms = t0.elapsed().as_millis() as u64, "restore: {what}");
        let undo_mount = |e: CheckpointError| {
            if !was_mounted {
                let _ = self.umount_root(ct);
            }
            e
        };
        // Cgroup and limits, as at start (the parent claimed, as at start).
        self.claim_cgroup_parent().map_err(|e| undo_mount(e.into()))?;
        let cg = self.cgroups(ctid)?;
        cg.create(ctid)
            .map_err(|e| undo_mount(RuntimeError::Cgroup(ctid, e).into()))?;
        let undo = |e: CheckpointError| {
            let _ = cg.kill_all(ctid, Duration::from_secs(5));
            let _ = cg.remove(ctid, Duration::from_secs(5));
            undo_mount(e)
        };
        let mut limits = crate::resources::Limits::from_config(&ct.config).map_err(|e| {
            undo(
                RuntimeError::BadValue {
                    ctid,
                    what: e.to_string(),
                }
                .into(),
            )
        })?;
        // The limits set live and not saved when the checkpoint was taken hold again.
        limits.merge(live_limits);
        limits
            .apply(cg, ctid)
            .map_err(|e| undo(RuntimeError::Cgroup(ctid, e).into()))?;
        // A new console: a host pty whose master goes to a logger; the slave stands in for the
        // console descriptor CRIU recorded as external.
        let (master, n) =
            sys::open_pty_master(Path::new("/dev/ptmx")).map_err(|e| undo(io("opening a console pty".into())(e)))?;
        let slave = sys::open_rw_noctty(Path::new(&format!("/dev/pts/{n}")))
            .map_err(|e| undo(io("opening the console pty".into())(e)))?;
        // CRIU sets the console's owner back (root, group tty) from inside the container's user
        // namespace, where a pty owned by the host's root cannot be changed: it is handed to
        // the container's root (host ids) first.
        // The container's user namespace mapping (checked by mount_root before this).
        let idmap = crate::runtime::userns::from_config(&ct.config).ok().flatten();
        if let Some(map) = idmap {
            nix::unistd::fchown(&slave, Some(map.uid.into()), Some((map.gid + TTY_GID).into()))
                .map_err(|e| undo(io("handing the console pty to the container's root".into())(e.into())))?;
        }
        // A systemd container's cgroups, all of them (CRIU makes only those holding processes;
        // systemd watches the others too), handed to its root before its processes come back.
        let tree = images.join(crate::cgroup::TREE_FILE);
        let mut cgroup_tree = None;
        if tree.exists() {
            let text = crate::fsutil::read_bounded(&tree, 1 << 20)
                .map_err(|e| undo(io(format!("reading {}", tree.display()))(e)))?;
            let Some(map) = idmap else {
                return Err(undo(
                    RuntimeError::BadValue {
                        ctid,
                        what: "the dump is of a systemd container, which needs a user namespace, and this one has none"
                            .into(),
                    }
                    .into(),
                ));
            };
            let list = cg
                .restore_v2_subtree(ctid, &text, map.uid, map.gid)
                .map_err(|e| undo(RuntimeError::Cgroup(ctid, e).into()))?;
            cgroup_tree = Some((list, map));
        }
        step("cgroup and limits");
        let (parent_sock, logger_sock) = sys::socketpair().map_err(|e| undo(io("socketpair".into())(e)))?;
        console::spawn_logger(
            logger_sock,
            &self.host.layout.console_log(ctid),
            &self.host.layout.console_socket(ctid),
            ctid,
        )
        .map_err(|e| undo(io("starting the console logger".into())(e)))?;
        let _ = sys::send_fd(parent_sock.as_raw_fd(), console::TAG_MASTER, master.as_raw_fd());
        drop(master);
        let ips = crate::net::parse_ip_list(ct.get("IP_ADDRESS").unwrap_or("")).unwrap_or_default();
        let netifs = crate::net::netif::parse_netif(ct.get("NETIF").unwrap_or("")).unwrap_or_default();
        // The addresses were blackholed at checkpoint time; CRIU recreates the links. Those
        // the network attach below routes again, through the same uplink, keep their
        // blackhole until then (their `replace` takes over): what reaches them meanwhile is
        // dropped rather than answered with "unreachable".
        let hn = self.host_net();
        let mut stayed: Vec<std::net::IpAddr> = Vec::new();
        if let Ok(b) = fs::read(self.suspended_file(ctid)) {
            if let Ok(old) = serde_json::from_slice::<crate::net::NetState>(&b) {
                if attach && old.uplink.is_some() && old.uplink == hn.uplink {
                    stayed = old
                        .ips
                        .iter()
                        .filter_map(|s| crate::net::parse_ip(s).ok())
                        .map(|a| a.addr)
                        .filter(|a| ips.iter().any(|n| n.addr == *a))
                        .collect();
                }
                crate::net::withdraw_all_but(ctid.get(), &old, |s| {
                    crate::net::parse_ip(s).is_ok_and(|a| stayed.contains(&a.addr))
                });
            }
        }
        // Not attached yet (a migration before its commit): the tasks stay stopped until
        // `attach_network`, so nothing they do meets a link that is down (a TCP segment they
        // send now would wait for its retransmission timer after the attach).
        // The dump may come from another host, or from before the range changed: its user
        // namespace is pointed at this container's host ids.
        // A dump of the other kind (taken before `vzctl set --userns`) is refused: restored as
        // it is, a privileged dump would run as the host's root, a userns one in ids that are
        // not this container's.
        let kinds = |dumped: bool| {
            let say = |u: bool| {
                if u {
                    "with a user namespace"
                } else {
                    "without a user namespace"
                }
            };
            RuntimeError::BadValue {
                ctid,
                what: format!(
                    "the checkpoint was taken {}, and the container is now configured {} (USERNS): restore it with the setting it had, or start the container afresh",
                    say(dumped),
                    say(!dumped)
                ),
            }
        };
        match idmap {
            Some(map) => {
                let had = crate::criu::images::remap_userns(images, map.uid, map.gid, crate::runtime::userns::RANGE)
                    .map_err(|e| undo(io(format!("the dumped user namespace in {}", images.display()))(e)))?;
                if !had {
                    return Err(undo(kinds(false).into()));
                }
            }
            _ => {
                let has_userns = fs::read_dir(images)
                    .map(|rd| {
                        rd.flatten()
                            .any(|e| e.file_name().to_string_lossy().starts_with("userns-"))
                    })
                    .unwrap_or(false);
                if has_userns {
                    return Err(undo(kinds(true).into()));
                }
            }
        }
        // A container with a user namespace gets its veth pairs made here (net::precreate_veth).
        let precreated: Vec<String> = if idmap.is_none() {
            Vec::new()
        } else {
            let mut made: Vec<String> = Vec::new();
            for (i, pair) in restore_links(ct).into_iter().enumerate() {
                let tmp = crate::net::restore_peer_ifname(ctid.get(), i);
                if let Err(e) = crate::net::precreate_veth(&pair.if_out, &tmp) {
                    for m in &made {
                        let _ = crate::net::ip::host(&["link", "del", m.as_str()]);
                    }
                    return Err(undo(RuntimeError::Net(ctid, e).into()));
                }
                made.push(pair.if_out);
            }
            made
        };
        step("console logger and links");
        let ropts = self.restore_opts(ct, console, slave.as_raw_fd(), !attach);
        // The controllers a systemd container had enabled in its cgroups come back once CRIU
        // has made its cgroup namespace (Cgroups::restore_v2_controllers).
        // The pages' hashes are awaited once CRIU has restored the memory, before the
        // processes run: a mismatch fails the restore, and CRIU kills what it made.
        let mut pages = pages;
        let mut damage = None;
        let mut notify = |script: &str| match (&cgroup_tree, script) {
            (Some((list, map)), "post-setup-namespaces") => cg
                .restore_v2_controllers(ctid, list, map.uid, map.gid, Duration::from_secs(60))
                .map_err(|e| e.to_string()),
            (_, "post-restore") => match pages.take().map(directory::PageCheck::wait) {
                Some(Err(e)) => {
                    let said = e.to_string();
                    damage = Some(e);
                    Err(said)
                }
                _ => Ok(()),
            },
            _ => Ok(()),
        };
        let restored = criu.restore(images, ropts, &[slave.as_raw_fd()], &mut notify);
        // No post-restore notification came: the pages are checked now, and the restored
        // tree killed if they do not match.
        let restored = match (restored, pages.take().map(directory::PageCheck::wait)) {
            (Ok(_), Some(Err(e))) => {
                let _ = cg.kill_all(ctid, Duration::from_secs(10));
                damage = Some(e);
                Err(CriuError::failed(
                    "restore",
                    None,
                    Some("the pages images are damaged".into()),
                    Vec::new(),
                ))
            }
            (r, _) => r,
        };
        let pid = match restored {
            Ok(pid) => pid,
            Err(e) => {
                for m in &precreated {
                    let _ = crate::net::ip::host(&["link", "del", m.as_str()]);
                }
                if let Some(d) = damage {
                    return Err(undo(CheckpointError::Archive(ctid, d)));
                }
                let log = self.host.layout.log_dir().join(format!("{ctid}.restore.log"));
                let _ = fs::copy(images.join("restore.log"), &log);
                return Err(undo(CheckpointError::Restore(ctid, log, e)));
            }
        };
        step("CRIU restored the processes");
        drop(slave);
        if let Ok(pidfd) = sys::pidfd_open(pid) {
            let _ = sys::send_fd(parent_sock.as_raw_fd(), console::TAG_PIDFD, pidfd.as_raw_fd());
        }
        drop(parent_sock);
        let pending = || crate::net::NetState {
            ips: ips.iter().map(|a| a.to_string()).collect(),
            uplink: hn.uplink.clone(),
            netifs: netifs.iter().map(|n| n.host_ifname.clone()).collect(),
        };
        let net = if !attach {
            // The links exist but stay down and unrouted: nothing reaches the container, and
            // nothing from it leaves, until `attach_network`.
            pending()
        } else {
            match crate::net::attach_restored(ctid.get(), &ips, &netifs, &hn, |a| stayed.contains(a)) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(ctid = %ctid, "the restored container's network: {e}");
                    pending()
                }
            }
        };
        step("network");
        let st = RunState {
            init_pid: pid,
            init_start: proc::start_time(pid).unwrap_or(0),
            console_pid: None,
            started_at: crate::units::unix_now(),
            net,
            live_limits: live_limits.clone(),
        };
        st.save(&self.host.layout.state_file(ctid))
            .map_err(io("writing the runtime state".into()))?;
        let _ = fs::remove_file(self.suspended_file(ctid));
        Ok(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps() {
        assert_eq!(stamp(0), "19700101-000000");
        assert_eq!(stamp(1_795_430_096), "20261123-103456");
        assert_eq!(stamp(951_782_400), "20000229-000000");
    }

    fn status(state: &str, uid: u32, gid: u32) -> String {
        format!(
            "Name:\tpostgres\nUmask:\t0077\nState:\t{state}\nTgid:\t900\nNSpid:\t900\t42\n\
             Uid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{gid}\t{gid}\t{gid}\t{gid}\n"
        )
    }

    #[test]
    fn what_blocks_a_dump_is_found_from_proc() {
        let ctid = Ctid::new(101).unwrap();
        let p = ProcFacts::parse(&status("T (stopped)", 0, 0)).unwrap();
        assert_eq!((p.pid, p.comm.as_str(), p.state), (42, "postgres", 'T'));
        let b = dump_blockers(ctid, std::slice::from_ref(&p), true, false, true);
        assert!(dump_blockers(ctid, &[p], true, false, false).is_empty());
        assert_eq!(b.len(), 1);
        assert!(
            b[0].contains("process 42 (postgres) is stopped") && b[0].contains("kill -CONT 42"),
            "{b:?}"
        );
        // Another user's process: a problem only in a privileged container without the capability.
        let svc = ProcFacts::parse(&status("S (sleeping)", 0, 107)).unwrap();
        assert!(dump_blockers(ctid, std::slice::from_ref(&svc), true, false, true).is_empty());
        assert!(dump_blockers(ctid, std::slice::from_ref(&svc), false, true, true).is_empty());
        let b = dump_blockers(ctid, &[svc], false, false, true);
        assert!(
            b.len() == 1 && b[0].contains("gid 107") && b[0].contains("--userns yes"),
            "{b:?}"
        );
        let root = ProcFacts::parse(&status("R (running)", 0, 0)).unwrap();
        assert!(dump_blockers(ctid, &[root], false, false, true).is_empty());
        assert_eq!(ProcFacts::parse("Name:\tx\n"), None);
    }

    #[test]
    fn a_process_in_a_namespace_of_its_own_blocks_a_dump_and_its_unit_is_named() {
        let ctid = Ctid::new(101).unwrap();
        assert_eq!(
            systemd_unit("12:pids:/x\n0::/ferry/101/system.slice/systemd-logind.service\n").as_deref(),
            Some("systemd-logind.service")
        );
        assert_eq!(systemd_unit("0::/ferry/101\n"), None);
        let mut p = ProcFacts::parse(&status("S (sleeping)", 0, 0)).unwrap();
        assert!(dump_blockers(ctid, std::slice::from_ref(&p), true, true, true).is_empty());
        p.own_ns = vec!["uts"];
        p.unit = Some("systemd-logind.service".into());
        let b = dump_blockers(ctid, std::slice::from_ref(&p), true, true, true);
        assert!(
            b.len() == 1 && b[0].contains("of unit systemd-logind.service has uts namespace of its own"),
            "{b:?}"
        );
        p.unit = None;
        p.own_ns = vec!["uts", "ipc"];
        let b = dump_blockers(ctid, &[p], true, true, true);
        assert!(
            b[0].contains("uts and ipc namespaces") && b[0].ends_with("end it first"),
            "{b:?}"
        );
    }
}
