//! Creating a container's processes: its init at start, and commands run inside it by `exec`
//! and `enter`. Everything here forks, so it must run in a single-threaded process (checked).
//!
//! Start, as processes:
//! ```text
//! vzctl ──fork──> logger (detached, holds the console master; see console.rs)
//!   └───fork──> A: joins the cgroup, unshares mnt/uts/ipc/net/cgroup/pid
//!                └──fork──> B = pid 1 of the new pid namespace: mounts /proc, /sys (ro),
//!                           /dev, /run, the console; pivot_root; waits for "go"; setsid;
//!                           drops capabilities; exec init
//! ```
//! A exits at once, so init is reparented to the host's init and outlives vzctl. B reports
//! any failure before exec through a close-on-exec pipe: end-of-file without a message means
//! init is running.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::{caps, console, sys};
use crate::cgroup::Cgroups;
use crate::ctid::Ctid;

#[derive(Debug, Error)]
pub enum SpawnError {
    #[error("{what}")]
    Sys {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("container setup failed: {0}")]
    Setup(String),
}

fn sys_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> SpawnError {
    let what = what.into();
    move |source| SpawnError::Sys { what, source }
}

/// What a container's init needs.
pub struct InitSpec<'a> {
    pub ctid: Ctid,
    /// The mounted root file system on the host.
    pub root: &'a Path,
    pub hostname: Option<&'a str>,
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    pub cgroups: &'a Cgroups,
    pub console_log: &'a Path,
    /// Where the console logger listens for `vzctl console`.
    pub console_socket: &'a Path,
    /// /etc/resolv.conf to write inside the container, if the config sets a resolver.
    pub resolv: Option<String>,
    /// The container's user namespace mapping; `None`: a privileged container (no userns).
    pub idmap: Option<super::userns::IdMap>,
    /// The seccomp profile its processes get (`None`: `SECCOMP="no"`).
    pub seccomp: Option<super::seccomp::Profile>,
    /// Its init is systemd (the caller checked the user namespace and the cgroup v2 hierarchy
    /// it needs): it gets the cgroup v2 file system at `/sys/fs/cgroup` (its own subtree,
    /// through its cgroup namespace), `/run/lock`, `/run/systemd/container`, a machine-id if
    /// it has none, and CAP_SYS_ADMIN in its user namespace.
    pub systemd: bool,
}

/// A freshly started container.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub init_pid: i32,
}

/// Starts a container's init. On error nothing of the container is left running; the caller
/// removes the cgroup and unmounts the root.
/// `attach` runs with the init's host pid after the namespaces exist and before init runs
/// (the network is set up there); its error aborts the start.
pub fn start(spec: &InitSpec<'_>, attach: &mut dyn FnMut(i32) -> Result<(), String>) -> Result<Started, SpawnError> {
    sys::ensure_single_threaded().map_err(sys_err("cannot start the container"))?;
    let (parent_sock, logger_sock) = sys::socketpair().map_err(sys_err("socketpair for the console logger"))?;
    console::spawn_logger(logger_sock, spec.console_log, spec.console_socket, spec.ctid).map_err(sys_err(format!(
        "starting the console logger ({})",
        spec.console_log.display()
    )))?;

    let (report_r, report_w) = sys::pipe().map_err(sys_err("pipe"))?;
    let (go_r, go_w) = sys::pipe().map_err(sys_err("pipe"))?;
    let (err_r, err_w) = sys::pipe().map_err(sys_err("pipe"))?;
    // A user namespace is mapped by this process (the host's root) while A waits.
    let (ns_ready_r, ns_ready_w) = sys::pipe().map_err(sys_err("pipe"))?;
    let (ns_go_r, ns_go_w) = sys::pipe().map_err(sys_err("pipe"))?;

    let a = sys::fork().map_err(sys_err("fork"))?;
    if a == 0 {
        drop(report_r);
        drop(go_w);
        drop(err_r);
        drop(ns_ready_r);
        drop(ns_go_w);
        let fail = |msg: String| -> ! {
            let _ = sys::write_all(err_w.as_raw_fd(), msg.as_bytes());
            sys::exit_child(1)
        };
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        if let Err(e) = spec.cgroups.join(spec.ctid, me) {
            fail(format!(
                "joining the container's cgroup: {e}: {}",
                std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default()
            ));
        }
        // From here on paths are relative to the root: inside a user namespace the container's
        // root may not traverse the host's directories above it (vz/root is 0700).
        if let Err(e) = std::env::set_current_dir(spec.root) {
            fail(format!("chdir {}: {e}", spec.root.display()));
        }
        if spec.idmap.is_some() {
            // The user namespace first: every other namespace is then owned by it, so the
            // container's root has its capabilities there and nowhere else.
            // SAFETY: unshare with a namespace flag.
            if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
                fail(format!("unshare(CLONE_NEWUSER): {}", io::Error::last_os_error()));
            }
            let _ = sys::write_all(ns_ready_w.as_raw_fd(), b"u");
            if sys::read_to_end(ns_go_r.as_raw_fd(), 1).ok().as_deref() != Some(b"m") {
                fail("the user namespace was not mapped".into());
            }
            if let Err(e) = super::userns::become_root() {
                fail(format!("becoming root in the user namespace: {e}"));
            }
        }
        let flags = libc::CLONE_NEWNS
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWCGROUP
            | libc::CLONE_NEWPID;
        // SAFETY: unshare with namespace flags.
        if unsafe { libc::unshare(flags) } != 0 {
            fail(format!("unshare: {}", io::Error::last_os_error()));
        }
        match sys::fork() {
            Err(e) => fail(format!("fork of the container's init: {e}")),
            Ok(0) => {
                drop(report_w);
                let msg = match init_child(spec, &parent_sock, go_r) {
                    Err(m) => m,
                    Ok(never) => match never {},
                };
                let _ = sys::write_all(err_w.as_raw_fd(), msg.as_bytes());
                sys::exit_child(1)
            }
            Ok(b) => {
                let _ = sys::write_all(report_w.as_raw_fd(), &b.to_ne_bytes());
                sys::exit_child(0)
            }
        }
    }
    drop(report_w);
    drop(go_r);
    drop(err_w);
    drop(ns_ready_w);
    drop(ns_go_r);
    if let Some(map) = spec.idmap {
        // A's end-of-file without "u" is its failure, reported through err_r below.
        if sys::read_to_end(ns_ready_r.as_raw_fd(), 1).ok().as_deref() == Some(b"u") {
            match super::userns::write_maps(a, map) {
                Ok(()) => {
                    let _ = sys::write_all(ns_go_w.as_raw_fd(), b"m");
                }
                Err(e) => {
                    drop(ns_go_w);
                    let _ = sys::wait_exit_code(a);
                    return Err(sys_err(format!(
                        "writing the user namespace's maps (host ids {}+)",
                        map.uid
                    ))(e));
                }
            }
        }
    }
    drop(ns_go_w);
    let a_status = sys::wait_exit_code(a).map_err(sys_err("waiting for the namespace setup process"))?;
    let report = sys::read_to_end(report_r.as_raw_fd(), 4).map_err(sys_err("reading the init's pid"))?;
    if a_status != 0 || report.len() != 4 {
        drop(go_w);
        let msg = sys::read_to_end(err_r.as_raw_fd(), 4096).unwrap_or_default();
        return Err(SpawnError::Setup(String::from_utf8_lossy(&msg).into_owned()));
    }
    let init_pid = i32::from_ne_bytes(report[..4].try_into().unwrap());
    let kill_init = || {
        // SAFETY: killing the init we just created.
        unsafe { libc::kill(init_pid, libc::SIGKILL) };
    };
    match sys::pidfd_open(init_pid) {
        Ok(pidfd) => {
            let _ = sys::send_fd(parent_sock.as_raw_fd(), console::TAG_PIDFD, pidfd.as_raw_fd());
        }
        Err(e) => {
            kill_init();
            return Err(sys_err("pidfd_open of the container's init")(e));
        }
    }
    drop(parent_sock);
    if let Err(e) = attach(init_pid) {
        kill_init();
        return Err(SpawnError::Setup(e));
    }
    if let Err(e) = sys::write_all(go_w.as_raw_fd(), b"g") {
        kill_init();
        return Err(sys_err("releasing the container's init")(e));
    }
    drop(go_w);
    let msg =
        sys::read_to_end(err_r.as_raw_fd(), 4096).map_err(sys_err("waiting for the container's init to start"))?;
    if !msg.is_empty() {
        kill_init();
        return Err(SpawnError::Setup(String::from_utf8_lossy(&msg).into_owned()));
    }
    Ok(Started { init_pid })
}

/// Device nodes of a container's /dev: name, major, minor.
const DEVICES: &[(&str, u32, u32)] = &[
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// CRIU's `--external` entries for what a userns container binds from the host's /dev (its
/// device nodes, and /dev/null over the masked /proc files): external mounts, named on dump
/// (`mnt[MOUNTPOINT]:KEY`) and bound again from this host's /dev on restore (`mnt[KEY]:PATH`).
/// A privileged container makes its nodes with mknod in its own /dev and needs none.
pub fn external_mounts(restore: bool) -> Vec<String> {
    let entry = |inside: String, key: String, host: String| {
        if restore {
            format!("mnt[{key}]:{host}")
        } else {
            format!("mnt[{inside}]:{key}")
        }
    };
    let devices = DEVICES.iter().map(|(name, _, _)| {
        entry(
            format!("/dev/{name}"),
            format!("ferry-dev-{name}"),
            format!("/dev/{name}"),
        )
    });
    let masks = PROC_MASKED
        .iter()
        .map(|m| entry(format!("/proc/{m}"), format!("ferry-mask-{m}"), "/dev/null".into()));
    devices.chain(masks).collect()
}

/// /proc paths made read-only, and paths hidden behind /dev/null (as runc does).
const PROC_READONLY: &[&str] = &["sys", "sysrq-trigger", "irq", "bus"];
const PROC_MASKED: &[&str] = &["kcore", "keys", "timer_list"];

/// The container's init, between fork and exec. Returns only on failure, with a message.
fn init_child(spec: &InitSpec<'_>, parent_sock: &OwnedFd, go_r: OwnedFd) -> Result<std::convert::Infallible, String> {
    let step = |what: &str| {
        let what = what.to_string();
        move |e: io::Error| format!("{what}: {e}")
    };
    let userns = spec.idmap.is_some();
    let caps = caps::Set {
        sys_admin: spec.systemd && userns,
    };
    sys::mount(None, Path::new("/"), None, libc::MS_REC | libc::MS_PRIVATE, None)
        .map_err(step("making mounts private"))?;
    // Without a configured name the new uts namespace would keep the host's: use localhost.
    let h = spec.hostname.unwrap_or("localhost");
    // SAFETY: valid buffer and length.
    sys::check(unsafe { libc::sethostname(h.as_ptr() as *const libc::c_char, h.len()) })
        .map_err(step("sethostname"))?;
    // The root must be a mount point that is not locked for pivot_root: binding it over
    // itself makes sure (the working directory is the root, see start).
    sys::rebind_cwd().map_err(step("binding the root"))?;

    // Relative to the working directory, which is the root (see start).
    let p = |rel: &str| -> PathBuf { PathBuf::from(rel) };
    let mkdir = |rel: &str, mode: u32| -> Result<(), String> {
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::DirBuilder::new().mode(mode).create(p(rel)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(format!("mkdir /{rel}: {e}")),
        }
    };
    let nosx = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    mkdir("proc", 0o555)?;
    sys::mount(Some("proc"), &p("proc"), Some("proc"), nosx, None).map_err(step("mounting /proc"))?;
    mkdir("sys", 0o555)?;
    sys::mount(Some("sysfs"), &p("sys"), Some("sysfs"), nosx | libc::MS_RDONLY, None).map_err(step("mounting /sys"))?;
    if spec.systemd {
        // The container's own cgroup v2 subtree (its cgroup namespace's root is the container's
        // cgroup, delegated to its root): systemd runs in unified mode on any host, and on a
        // hybrid host the v1 controllers keep limiting it from outside.
        sys::mount(Some("cgroup2"), &p("sys/fs/cgroup"), Some("cgroup2"), nosx, None)
            .map_err(step("mounting the cgroup v2 file system on /sys/fs/cgroup"))?;
    }
    mkdir("dev", 0o755)?;
    sys::mount(
        Some("tmpfs"),
        &p("dev"),
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("mode=755,size=65536k"),
    )
    .map_err(step("mounting /dev"))?;
    for (name, major, minor) in DEVICES {
        let node = p(&format!("dev/{name}"));
        if userns {
            // No device nodes can be made in a user namespace: the host's are bound instead.
            std::fs::File::create(&node).map_err(step(&format!("creating /dev/{name}")))?;
            sys::bind(&Path::new("/dev").join(name), &node).map_err(step(&format!("binding /dev/{name}")))?;
        } else {
            sys::mknod(&node, 0o666, *major, *minor).map_err(step(&format!("mknod /dev/{name}")))?;
        }
    }
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, p(&format!("dev/{link}"))).map_err(step(&format!("symlink /dev/{link}")))?;
    }
    mkdir("dev/pts", 0o755)?;
    sys::mount(
        Some("devpts"),
        &p("dev/pts"),
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
    )
    .map_err(step("mounting /dev/pts"))?;
    mkdir("dev/shm", 0o1777)?;
    sys::mount(
        Some("shm"),
        &p("dev/shm"),
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=1777,size=65536k"),
    )
    .map_err(step("mounting /dev/shm"))?;
    mkdir("dev/mqueue", 0o755)?;
    sys::mount(Some("mqueue"), &p("dev/mqueue"), Some("mqueue"), nosx, None).map_err(step("mounting /dev/mqueue"))?;
    mkdir("run", 0o755)?;
    sys::mount(
        Some("tmpfs"),
        &p("run"),
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=755,size=65536k"),
    )
    .map_err(step("mounting /run"))?;
    if spec.systemd {
        mkdir("run/lock", 0o1777)?;
        sys::mount(
            Some("tmpfs"),
            &p("run/lock"),
            Some("tmpfs"),
            nosx,
            Some("mode=1777,size=5120k"),
        )
        .map_err(step("mounting /run/lock"))?;
        mkdir("run/systemd", 0o755)?;
        std::fs::write(p("run/systemd/container"), "ferry\n").map_err(step("writing /run/systemd/container"))?;
        mkdir("run/systemd/system", 0o755)?;
        mkdir("run/systemd/system/service.d", 0o755)?;
    }

    // The console: a pty of the container's own devpts; the master goes to the logger.
    let (master, n) = sys::open_pty_master(&p("dev/pts/ptmx")).map_err(step("opening the console pty"))?;
    // A symlink rather than a bind mount of the pts: CRIU cannot dump a devpts bind mount whose
    // master is held outside the container, while a descriptor it can treat as external.
    std::os::unix::fs::symlink(format!("pts/{n}"), p("dev/console")).map_err(step("creating /dev/console"))?;
    let console = sys::open_rw_noctty(&p("dev/console")).map_err(step("opening /dev/console"))?;
    sys::send_fd(parent_sock.as_raw_fd(), console::TAG_MASTER, master.as_raw_fd())
        .map_err(step("handing the console to its logger"))?;
    drop(master);

    for rel in PROC_READONLY {
        let path = p(&format!("proc/{rel}"));
        if path.exists() {
            sys::bind_readonly(&path).map_err(step(&format!("making /proc/{rel} read-only")))?;
        }
    }
    for rel in PROC_MASKED {
        let path = p(&format!("proc/{rel}"));
        if path.exists() {
            sys::bind(&p("dev/null"), &path).map_err(step(&format!("masking /proc/{rel}")))?;
        }
    }

    sys::pivot_root_here().map_err(step("pivot_root"))?;
    // Inside the new root, paths resolve as the container sees them: a symlink planted in the
    // container cannot redirect this write to the host.
    if let Some(h) = spec.hostname {
        if Path::new("/etc").is_dir() {
            std::fs::write("/etc/hostname", format!("{h}\n")).map_err(step("writing /etc/hostname"))?;
        }
    }
    if let Some(r) = &spec.resolv {
        if Path::new("/etc").is_dir() {
            std::fs::write("/etc/resolv.conf", r).map_err(step("writing /etc/resolv.conf"))?;
        }
    }
    if spec.systemd {
        ensure_machine_id().map_err(step("writing /etc/machine-id"))?;
        // After pivot_root: the tree is read as the container sees it.
        std::fs::write(
            "/run/systemd/system/service.d/ferry-checkpoint.conf",
            systemd_drop_in(systemd_version()),
        )
        .map_err(step("writing ferry's drop-in for services"))?;
    }

    // Wait until the starting command says go (it may attach the network first).
    let go = sys::read_to_end(go_r.as_raw_fd(), 1).map_err(step("waiting for go"))?;
    if go.is_empty() {
        return Err("the starting command went away before the container was released".into());
    }
    drop(go_r);
    sys::take_tty(console.as_raw_fd()).map_err(step("making /dev/console the controlling terminal"))?;
    drop(console);
    sys::cloexec_from(3).map_err(step("closing host descriptors"))?;
    // While init still holds CAP_SYS_ADMIN (in its user namespace): the filter goes in without
    // no_new_privs.
    if let Some(profile) = spec.seccomp {
        super::seccomp::install(profile).map_err(step("installing the seccomp profile"))?;
    }
    caps::drop_container_caps(caps).map_err(step("dropping capabilities"))?;
    sys::reset_signals();
    let e = sys::execve(&spec.argv, &spec.env);
    Err(format!("exec {}: {e}", sys::cstr_to_string(&spec.argv[0])))
}

/// The drop-in every service of a systemd container gets, in `/run` (the container's tree is
/// not changed; a unit's own drop-in in `/etc` overrides it), for systemd `version` (each
/// setting only where that version knows it, so none is logged as unknown; all of them when
/// the version is not known):
/// - the sandboxing options that give a service a UTS, IPC or user namespace of its own are
///   off, since CRIU cannot checkpoint a process in one below the container's (Debian 12's
///   systemd-logind has `ProtectHostname=yes`);
/// - `MemoryPressureWatch=off` (systemd >= 254): a sandboxed service otherwise gets its
///   cgroup's `memory.pressure` file bound into its mount namespace, a bind mount of one file
///   of the cgroup v2 file system that CRIU 4.2 cannot restore (Debian 13's logind).
///
/// Every other sandboxing option (private /tmp, read-only views, capability bounds, system
/// call filters) stays.
pub fn systemd_drop_in(version: Option<u32>) -> String {
    let mut s = String::from(
        "# Written by ferry at each start: CRIU cannot checkpoint a process that has a UTS, IPC or\n\
         # user namespace of its own, nor restore a bound memory.pressure file, so services get\n\
         # none. See ferry's docs/templates.md.\n[Service]\n",
    );
    for (since, line) in [
        (232, "PrivateUsers=no"),
        (242, "ProtectHostname=no"),
        (248, "PrivateIPC=no"),
        (254, "MemoryPressureWatch=off"),
    ] {
        if version.is_none_or(|v| v >= since) {
            s.push_str(line);
            s.push('\n');
        }
    }
    s
}

/// The version of the container's systemd, from the name of its shared library
/// (`libsystemd-shared-257.so`, in `/usr/lib/systemd`, `/lib/systemd` or
/// `/usr/lib/<triplet>/systemd`). Runs in the container's root.
fn systemd_version() -> Option<u32> {
    let mut dirs = vec![PathBuf::from("/usr/lib/systemd"), PathBuf::from("/lib/systemd")];
    if let Ok(rd) = std::fs::read_dir("/usr/lib") {
        dirs.extend(rd.flatten().map(|e| e.path().join("systemd")));
    }
    dirs.iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|rd| rd.flatten())
        .find_map(|e| {
            let name = e.file_name();
            let v = name.to_str()?.strip_prefix("libsystemd-shared-")?.strip_suffix(".so")?;
            v.parse().ok()
        })
}

/// A stable machine-id (machine-id(5)) for a systemd container: written once, at its first
/// start, when `/etc/machine-id` is missing, empty or "uninitialized" (the built-in recipes
/// leave it empty so that no two containers share one), and kept from then on, through
/// checkpoints and migrations, as the file is in the container's tree. Runs in the container's
/// root (after pivot_root).
fn ensure_machine_id() -> io::Result<()> {
    let path = Path::new("/etc/machine-id");
    let cur = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let cur = cur.trim();
    if !cur.is_empty() && cur != "uninitialized" {
        return Ok(());
    }
    let mut b = [0u8; 16];
    // SAFETY: getrandom into a local buffer of its length.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        return Err(io::Error::other("getrandom returned too few bytes"));
    }
    let id: String = b.iter().map(|x| format!("{x:02x}")).collect();
    // Replace, not write through: the path may be a symlink planted in the container's tree.
    let tmp = Path::new("/etc/.machine-id.ferry");
    let _ = std::fs::remove_file(tmp);
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(tmp)?;
        f.write_all(format!("{id}\n").as_bytes())?;
    }
    std::fs::rename(tmp, path)
}

/// A running container, as `exec_in` finds it: its init (pid and start time, so a reused pid
/// is noticed), its cgroups and the capabilities its processes get.
#[derive(Clone, Copy)]
pub struct Running<'a> {
    pub ctid: Ctid,
    pub init_pid: i32,
    pub init_start: u64,
    pub cgroups: &'a Cgroups,
    pub caps: caps::Set,
}

/// How a command run inside a container gets its terminal.
pub enum Stdio {
    /// The caller's standard descriptors.
    Inherit,
    /// A new pty of the container's devpts: the command sends its master over `child`, the
    /// caller receives it on `parent` and relays the caller's terminal to it.
    Pty { child: OwnedFd, parent: OwnedFd },
}

/// Namespaces a command joins, in the order they are joined (mnt last: after it, host paths are
/// gone).
const JOIN_NS: &[(&str, libc::c_int)] = &[
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("mnt", libc::CLONE_NEWNS),
];

/// Runs `argv` inside a running container: in all its namespaces and its cgroup, as a session
/// leader, with the container's reduced capabilities. Returns the command's exit code (128+N
/// when killed by signal N).
///
/// No process the container can see ever holds anything of the host. The waiter C joins the
/// container's user namespace (becoming its root, with no capability on the host), then every
/// other namespace, the mount namespace last (its root and working directory are the
/// container's from then on) and drops the capabilities the container does not get; the pid
/// and time namespaces it joined take effect for its children only, so the command D it
/// forks appears in the container already confined. (Before, D appeared with the host's
/// root, working directory and capabilities and joined the mount namespace afterwards: a
/// container process could open /proc/D/root and keep the host's `/`.)
pub fn exec_in(
    ct: &Running<'_>,
    argv: &[CString],
    env: &[CString],
    stdio: Stdio,
    seccomp: Option<super::seccomp::Profile>,
) -> Result<i32, SpawnError> {
    let Running {
        ctid,
        init_pid,
        init_start,
        cgroups,
        caps,
    } = *ct;
    sys::ensure_single_threaded().map_err(sys_err("cannot enter the container"))?;
    let open_ns = |name: &str| -> Result<OwnedFd, SpawnError> {
        let path = format!("/proc/{init_pid}/ns/{name}");
        std::fs::File::open(&path)
            .map(OwnedFd::from)
            .map_err(sys_err(format!("opening {path}")))
    };
    let user_ns =
        super::userns::foreign_userns(init_pid).map_err(sys_err(format!("opening /proc/{init_pid}/ns/user")))?;
    let pid_ns = open_ns("pid")?;
    // A restored container may live in its own time namespace (CRIU keeps the monotonic
    // clocks): commands must join it, or the next dump mixes time namespaces.
    let time_ns = open_ns("time")?;
    let others: Vec<(OwnedFd, libc::c_int)> = JOIN_NS
        .iter()
        .map(|(n, t)| Ok((open_ns(n)?, *t)))
        .collect::<Result<_, SpawnError>>()?;
    // The namespaces were opened by pid: make sure that pid was still the container's init.
    if !super::proc::is_alive(init_pid, init_start) {
        return Err(SpawnError::Setup(format!(
            "container {ctid} stopped while the command was starting"
        )));
    }
    let procs = cgroups
        .open_procs_beside(ctid, init_pid)
        .map_err(|e| SpawnError::Setup(format!("{e}")))?;
    let (err_r, err_w) = sys::pipe().map_err(sys_err("pipe"))?;

    let c = sys::fork().map_err(sys_err("fork"))?;
    if c == 0 {
        drop(err_r);
        let fail = |msg: String| -> ! {
            let _ = sys::write_all(err_w.as_raw_fd(), msg.as_bytes());
            sys::exit_child(1)
        };
        if let Err(m) = confine_waiter(user_ns.as_ref(), &others, &pid_ns, &time_ns, seccomp, caps) {
            fail(m);
        }
        match sys::fork() {
            Err(e) => fail(format!("fork: {e}")),
            Ok(0) => {
                let msg = match command_child(&procs, argv, env, &stdio) {
                    Err(m) => m,
                    Ok(never) => match never {},
                };
                let _ = sys::write_all(err_w.as_raw_fd(), msg.as_bytes());
                sys::exit_child(127)
            }
            Ok(d) => {
                drop(err_w);
                drop(stdio);
                // SAFETY: ignore terminal signals meant for the command, not for its waiter.
                unsafe {
                    libc::signal(libc::SIGINT, libc::SIG_IGN);
                    libc::signal(libc::SIGQUIT, libc::SIG_IGN);
                }
                let code = sys::wait_exit_code(d).unwrap_or(255);
                sys::exit_child(code)
            }
        }
    }
    drop(err_w);
    drop(procs);
    if let Stdio::Pty { child, parent } = stdio {
        drop(child);
        super::pty::relay(parent).map_err(sys_err("relaying the terminal"))?;
    }
    let code = sys::wait_exit_code(c).map_err(sys_err("waiting for the command"))?;
    let msg = sys::read_to_end(err_r.as_raw_fd(), 4096).unwrap_or_default();
    if !msg.is_empty() {
        return Err(SpawnError::Setup(String::from_utf8_lossy(&msg).into_owned()));
    }
    Ok(code)
}

/// The waiter of `exec_in`, before it forks the command: in the container's user namespace
/// (as its root) and every other namespace, in its root directory, with the container's
/// capabilities, the pid and time namespaces set for its children.
fn confine_waiter(
    user_ns: Option<&OwnedFd>,
    ns: &[(OwnedFd, libc::c_int)],
    pid_ns: &OwnedFd,
    time_ns: &OwnedFd,
    seccomp: Option<super::seccomp::Profile>,
    caps: caps::Set,
) -> Result<(), String> {
    // These two take effect for children only, so they come first, while this process is
    // still the host's root (a time namespace the container did not make is the host's, which
    // the container's root may not join).
    sys::setns(pid_ns, libc::CLONE_NEWPID).map_err(|e| format!("joining the pid namespace: {e}"))?;
    sys::setns(time_ns, libc::CLONE_NEWTIME).map_err(|e| format!("joining the time namespace: {e}"))?;
    if let Some(u) = user_ns {
        sys::setns(u, libc::CLONE_NEWUSER).map_err(|e| format!("joining the user namespace: {e}"))?;
        super::userns::become_root().map_err(|e| format!("becoming root in the user namespace: {e}"))?;
    }
    for (fd, t) in ns {
        sys::setns(fd, *t).map_err(|e| format!("setns: {e}"))?;
    }
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    if let Some(profile) = seccomp {
        super::seccomp::install(profile).map_err(|e| format!("installing the seccomp profile: {e}"))?;
    }
    caps::drop_container_caps(caps).map_err(|e| format!("dropping capabilities: {e}"))
}

fn command_child(
    procs: &[std::fs::File],
    argv: &[CString],
    env: &[CString],
    stdio: &Stdio,
) -> Result<std::convert::Infallible, String> {
    use std::io::Write;
    for mut f in procs {
        f.write_all(b"0")
            .map_err(|e| format!("joining the container's cgroup: {e}"))?;
    }
    match stdio {
        Stdio::Inherit => {
            // SAFETY: setsid in a fresh child.
            sys::check(unsafe { libc::setsid() }).map_err(|e| format!("setsid: {e}"))?;
        }
        Stdio::Pty { child: sock, .. } => {
            let (master, n) = sys::open_pty_master(Path::new("/dev/ptmx"))
                .map_err(|e| format!("opening a pty in the container: {e}"))?;
            let slave = sys::open_rw_noctty(Path::new(&format!("/dev/pts/{n}")))
                .map_err(|e| format!("opening /dev/pts/{n}: {e}"))?;
            sys::send_fd(sock.as_raw_fd(), b'M', master.as_raw_fd()).map_err(|e| format!("passing the pty: {e}"))?;
            drop(master);
            sys::take_tty(slave.as_raw_fd()).map_err(|e| format!("taking the pty: {e}"))?;
        }
    }
    sys::cloexec_from(3).map_err(|e| format!("closing host descriptors: {e}"))?;
    sys::reset_signals();
    let e = sys::execve(argv, env);
    Err(format!("exec {}: {e}", sys::cstr_to_string(&argv[0])))
}

/// Runs `f` in a forked child that has joined the given namespaces of a running container
/// (`("uts", CLONE_NEWUTS)`, `("mnt", CLONE_NEWNS)`, ...). After joining the mount namespace
/// the child's root is the container's, so paths resolve as the container sees them. Only
/// ferry's own code runs there, never a program from the container, so it may keep the host's
/// capabilities (sethostname needs CAP_SYS_ADMIN, which containers do not get); in a container
/// with a user namespace it joins that first and acts as the container's root.
pub fn in_container(
    init_pid: i32,
    init_start: u64,
    namespaces: &[(&str, libc::c_int)],
    f: &dyn Fn() -> Result<(), String>,
) -> Result<(), SpawnError> {
    sys::ensure_single_threaded().map_err(sys_err("cannot enter the container"))?;
    let fds: Vec<(OwnedFd, libc::c_int)> = namespaces
        .iter()
        .map(|(n, t)| {
            let path = format!("/proc/{init_pid}/ns/{n}");
            std::fs::File::open(&path)
                .map(|f| (OwnedFd::from(f), *t))
                .map_err(sys_err(format!("opening {path}")))
        })
        .collect::<Result<_, _>>()?;
    if !super::proc::is_alive(init_pid, init_start) {
        return Err(SpawnError::Setup("the container stopped meanwhile".into()));
    }
    let user_ns =
        super::userns::foreign_userns(init_pid).map_err(sys_err(format!("opening /proc/{init_pid}/ns/user")))?;
    let (err_r, err_w) = sys::pipe().map_err(sys_err("pipe"))?;
    let pid = sys::fork().map_err(sys_err("fork"))?;
    if pid == 0 {
        drop(err_r);
        // In a container with a user namespace, as its root: files it writes are the
        // container's, and its capabilities there cover the container's namespaces.
        let joined = match &user_ns {
            None => Ok(()),
            Some(u) => sys::setns(u, libc::CLONE_NEWUSER)
                .and_then(|_| super::userns::become_root())
                .map_err(|e| format!("joining the user namespace: {e}")),
        };
        let r = joined
            .and_then(|_| {
                fds.iter()
                    .try_for_each(|(fd, t)| sys::setns(fd, *t).map_err(|e| format!("setns: {e}")))
            })
            .and_then(|_| f());
        if let Err(m) = r {
            let _ = sys::write_all(err_w.as_raw_fd(), m.as_bytes());
            sys::exit_child(1);
        }
        sys::exit_child(0);
    }
    drop(err_w);
    let code = sys::wait_exit_code(pid).map_err(sys_err("waiting for the helper"))?;
    let msg = sys::read_to_end(err_r.as_raw_fd(), 4096).unwrap_or_default();
    if code != 0 || !msg.is_empty() {
        return Err(SpawnError::Setup(String::from_utf8_lossy(&msg).into_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drop_in_names_only_what_the_containers_systemd_knows() {
        let d252 = systemd_drop_in(Some(252));
        assert!(d252.contains("ProtectHostname=no\nPrivateIPC=no\n"), "{d252}");
        assert!(!d252.contains("MemoryPressureWatch"), "{d252}");
        assert!(!systemd_drop_in(Some(247)).contains("PrivateIPC"));
        let d257 = systemd_drop_in(Some(257));
        assert!(d257.contains("MemoryPressureWatch=off"));
        assert_eq!(systemd_drop_in(None), d257);
    }
}
