//! ferry's CRIU client: CRIU's RPC (`criu swrk FD`) over a seqpacket socket pair, one CRIU
//! process per request. Only this module runs CRIU.
//!
//! A thin client of our own rather than rust-criu: rust-criu lacks the feature checks, CPU
//! description checks, network-lock notifications, the restored pid and CRIU's error text,
//! and its socket leaks into children (../shared/docs/CRATES.md). This one returns CRIU's
//! whole response, passes extra descriptors (the images directory, inherited ttys), and
//! answers notifications through a closure.

pub mod images;
pub mod page_server;
pub mod rpc;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use prost::Message as _;
use thiserror::Error;

pub use rpc::{InheritFd, Opts, VethPair};

/// The oldest CRIU that dumps TCP sockets on current kernels (ENVIRONMENT.md).
pub const MIN_VERSION: (i32, i32) = (4, 2);

#[derive(Debug, Error)]
pub enum CriuError {
    #[error("no usable CRIU (>= {}.{}) found (tried {tried}); run scripts/setup.sh or set FERRY_CRIU", MIN_VERSION.0, MIN_VERSION.1)]
    NotFound { tried: String },
    #[error("CRIU at {path} is version {version}; ferry needs {}.{} or newer", MIN_VERSION.0, MIN_VERSION.1)]
    TooOld { path: PathBuf, version: String },
    #[error("talking to CRIU ({what})")]
    Io {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("CRIU did not finish within {} s and was stopped (CRIU_TIMEOUT in vz.conf sets the limit)", .0.as_secs())]
    Timeout(Duration),
    #[error("CRIU sent a message ferry cannot decode")]
    Decode(#[source] prost::DecodeError),
    #[error("CRIU {op} failed{}{}{}", errno.map(|e| format!(" (errno {e}: {})", io::Error::from_raw_os_error(e))).unwrap_or_default(), msg.as_ref().map(|m| format!(": {m}")).unwrap_or_default(), if log_errors.is_empty() { String::new() } else { format!("\n  {}", log_errors.join("\n  ")) })]
    Failed {
        op: &'static str,
        errno: Option<i32>,
        msg: Option<String>,
        log_errors: Vec<String>,
    },
}

/// CRIU's first error on hosts whose root lacks CAP_SYS_RESOURCE (this project's machines), on
/// every run, whatever went wrong after it: never the reason anything failed.
fn harmless(line: &str) -> bool {
    line.contains("RLIMIT_NOFILE")
}

/// The first error lines of a CRIU log (CRIU's own words), without the harmless noise.
pub fn log_errors(log: &Path, max: usize) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("Error") && !harmless(l))
        .take(max)
        .map(|l| l.trim().to_string())
        .collect()
}

/// How many times in all a dump that met [`CriuError::is_fhandle_race`] is tried.
pub const DUMP_ATTEMPTS: u32 = 8;

/// A line of CRIU's saying it could not parse an inotify or fanotify watch's fdinfo because
/// the kernel printed it without its file handle. The kernel prints the handle only if it can
/// take the watched file system's superblock lock at that moment (`show_mark_fhandle`), so a
/// mount or remount of the same file system anywhere on the host (every container start mounts
/// cgroup2) fails a dump now and then through no fault of the container.
fn fhandle_race_line(line: &str) -> bool {
    line.contains("error parsing [")
        && (line.contains("inotify wd:") || line.contains("fanotify ino:"))
        && !line.contains("fhandle-bytes")
}

impl CriuError {
    /// A dump that failed only because it met a file system being mounted at that moment
    /// ([`fhandle_race_line`]): worth trying again.
    pub fn is_fhandle_race(&self) -> bool {
        match self {
            CriuError::Failed { msg, log_errors, .. } => msg.iter().chain(log_errors).any(|l| fhandle_race_line(l)),
            _ => false,
        }
    }

    /// A failed request. CRIU's own message is the first error it logged; when that is the
    /// harmless one, the log's first real error leads instead.
    pub fn failed(op: &'static str, errno: Option<i32>, msg: Option<String>, mut log_errors: Vec<String>) -> Self {
        let msg = match msg {
            Some(m) if harmless(&m) => (!log_errors.is_empty()).then(|| log_errors.remove(0)),
            m => m,
        };
        CriuError::Failed {
            op,
            errno,
            msg,
            log_errors,
        }
    }
}

/// Runs `once`, a dump into `dir`, up to `attempts` times while its error is one `retry` says
/// is worth another try (a passing race), pausing 20 ms × the tries so far between tries.
/// Before each new try, what the failed one left in `dir` is removed; what `dir` held before
/// the first try stays. The last error is returned as it came.
pub fn dump_attempts<T, E: std::fmt::Display>(
    dir: &Path,
    attempts: u32,
    mut once: impl FnMut() -> Result<T, E>,
    mut retry: impl FnMut(&E) -> bool,
) -> Result<T, E> {
    let names = || -> std::collections::HashSet<std::ffi::OsString> {
        std::fs::read_dir(dir)
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
            .unwrap_or_default()
    };
    let before = names();
    let mut tried = 0;
    loop {
        tried += 1;
        match once() {
            Err(e) if tried < attempts && retry(&e) => {
                tracing::warn!("dump try {tried} of {attempts} met a passing race, trying again: {e}");
                for n in names().difference(&before) {
                    let p = dir.join(n);
                    let _ = std::fs::remove_file(&p).or_else(|_| std::fs::remove_dir_all(&p));
                }
                std::thread::sleep(Duration::from_millis(20 * tried as u64));
            }
            r => return r,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Criu {
    pub bin: PathBuf,
    /// How long one request may take before CRIU is killed and the request fails (a dump
    /// that hangs must not hold a frozen container for ever).
    pub deadline: Duration,
    /// The version `locate` found (so asking again costs no CRIU run).
    found: Option<(i32, i32, i32)>,
}

/// [`Criu::deadline`] unless `CRIU_TIMEOUT` (seconds) in vz.conf says otherwise: generous,
/// since a dump's time grows with the container's memory, and on an emulated guest by 10-100x.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(600);

impl Criu {
    /// `$FERRY_CRIU`, scripts/setup.sh's prefix, then `criu` on PATH; the first that answers
    /// with a version >= 4.2.
    pub fn locate() -> Result<Self, CriuError> {
        Self::locate_in(None)
    }

    /// [`Criu::locate`], the version found kept in the file `cache` under the identity of the
    /// binary (for a wrapper script, also of the files it names) and of the boot: a restore
    /// then runs no CRIU only to ask its version. A changed binary is asked again.
    pub fn locate_cached(cache: &Path) -> Result<Self, CriuError> {
        Self::locate_in(Some(cache))
    }

    fn locate_in(cache: Option<&Path>) -> Result<Self, CriuError> {
        let mut tried = Vec::new();
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(p) = std::env::var_os("FERRY_CRIU").filter(|p| !p.is_empty()) {
            candidates.push(p.into());
        }
        candidates.push("/opt/ferry/criu/criu".into());
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path).map(|d| d.join("criu")));
        }
        for c in candidates {
            if !c.is_file() {
                continue;
            }
            tried.push(c.display().to_string());
            let criu = Criu {
                bin: c.clone(),
                deadline: DEFAULT_DEADLINE,
                found: None,
            };
            let key = cache.and_then(|_| binary_identity(&c));
            let cached = cache.zip(key.as_deref()).and_then(|(f, k)| cached_version(f, k));
            match cached.map(Ok).unwrap_or_else(|| criu.version()) {
                Ok(v) if (v.0, v.1) >= MIN_VERSION => {
                    if let (Some(f), Some(k), None) = (cache, &key, cached) {
                        keep_version(f, k, v);
                    }
                    return Ok(Criu { found: Some(v), ..criu });
                }
                Ok(v) => {
                    return Err(CriuError::TooOld {
                        path: c,
                        version: format!("{}.{}.{}", v.0, v.1, v.2),
                    })
                }
                Err(_) => continue,
            }
        }
        Err(CriuError::NotFound {
            tried: if tried.is_empty() {
                "FERRY_CRIU, /opt/ferry/criu/criu, PATH".into()
            } else {
                tried.join(", ")
            },
        })
    }

    /// Sends one request and returns CRIU's final response. `fds` are made available to CRIU
    /// under their numbers; `notify` answers each notification (its Err fails the operation).
    pub fn call(
        &self,
        req: &rpc::Req,
        fds: &[RawFd],
        notify: &mut dyn FnMut(&str) -> Result<(), String>,
    ) -> Result<rpc::Resp, CriuError> {
        let io = |what| move |source| CriuError::Io { what, source };
        let mut pair = [0; 2];
        // SAFETY: socketpair fills two descriptors we then own.
        if unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                pair.as_mut_ptr(),
            )
        } != 0
        {
            return Err(io("socketpair")(io::Error::last_os_error()));
        }
        // SAFETY: fresh descriptors.
        let (ours, theirs): (OwnedFd, OwnedFd) = unsafe {
            (
                std::os::fd::FromRawFd::from_raw_fd(pair[0]),
                std::os::fd::FromRawFd::from_raw_fd(pair[1]),
            )
        };
        let child_fd = theirs.as_raw_fd();
        let mut keep: Vec<RawFd> = fds.to_vec();
        keep.push(child_fd);
        let mut cmd = Command::new(&self.bin);
        cmd.arg("swrk")
            .arg(child_fd.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only fcntl between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                for fd in &keep {
                    let f = libc::fcntl(*fd, libc::F_GETFD);
                    if f >= 0 {
                        libc::fcntl(*fd, libc::F_SETFD, f & !libc::FD_CLOEXEC);
                    }
                }
                Ok(())
            });
        }
        let started = std::time::Instant::now();
        let mut child = cmd.spawn().map_err(io("starting criu swrk"))?;
        drop(theirs);
        let send = |r: &rpc::Req| -> Result<(), CriuError> {
            let b = r.encode_to_vec();
            // SAFETY: writing our buffer to our socket.
            if unsafe {
                libc::send(
                    ours.as_raw_fd(),
                    b.as_ptr() as *const libc::c_void,
                    b.len(),
                    libc::MSG_NOSIGNAL,
                )
            } < 0
            {
                return Err(io("sending a request")(io::Error::last_os_error()));
            }
            Ok(())
        };
        send(req)?;
        let mut buf = vec![0u8; 1 << 20];
        let deadline = std::time::Instant::now() + self.deadline;
        // Ends CRIU on a failed wait or read. Killed, CRIU lets go of the tasks it seized
        // (ptrace ends with its tracer); the caller thaws what it froze.
        let end = |child: &mut std::process::Child, e: CriuError| {
            let _ = child.kill();
            let _ = child.wait();
            Err(e)
        };
        let resp = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let mut p = [libc::pollfd {
                fd: ours.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            // SAFETY: a valid pollfd array of one.
            let r = unsafe { libc::poll(p.as_mut_ptr(), 1, left.as_millis().min(i32::MAX as u128) as i32) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return end(&mut child, io("waiting for a response")(e));
            }
            if r == 0 {
                return end(&mut child, CriuError::Timeout(self.deadline));
            }
            // SAFETY: reading into our buffer.
            let n = unsafe { libc::recv(ours.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return end(&mut child, io("reading a response")(e));
            }
            if n == 0 {
                let _ = child.wait();
                return Err(io("reading a response")(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "CRIU closed the connection without answering",
                )));
            }
            let resp = rpc::Resp::decode(&buf[..n as usize]).map_err(CriuError::Decode)?;
            if resp.r#type == rpc::req_type::NOTIFY {
                let script = resp.notify.as_ref().and_then(|n| n.script.clone()).unwrap_or_default();
                tracing::debug!(script, ms = started.elapsed().as_millis() as u64, "CRIU notification");
                let ok = notify(&script);
                if let Err(e) = &ok {
                    tracing::warn!(script, "notification handler failed: {e}");
                }
                send(&rpc::Req {
                    r#type: rpc::req_type::NOTIFY,
                    opts: None,
                    notify_success: Some(ok.is_ok()),
                    features: None,
                })?;
                continue;
            }
            break resp;
        };
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "CRIU answered");
        drop(ours);
        let _ = child.wait();
        Ok(resp)
    }

    fn simple(
        &self,
        r#type: i32,
        opts: Option<rpc::Opts>,
        features: Option<rpc::Features>,
        fds: &[RawFd],
    ) -> Result<rpc::Resp, CriuError> {
        self.call(
            &rpc::Req {
                r#type,
                opts,
                notify_success: None,
                features,
            },
            fds,
            &mut |_| Ok(()),
        )
    }

    /// (major, minor, sublevel).
    pub fn version(&self) -> Result<(i32, i32, i32), CriuError> {
        if let Some(v) = self.found {
            return Ok(v);
        }
        let r = self.simple(rpc::req_type::VERSION, None, None, &[])?;
        let v = r.version.ok_or(CriuError::Failed {
            op: "version",
            errno: r.cr_errno,
            msg: r.cr_errmsg,
            log_errors: vec![],
        })?;
        Ok((v.major_number, v.minor_number, v.sublevel.unwrap_or(0)))
    }

    /// CRIU's own kernel check (`criu check`).
    pub fn check(&self) -> Result<bool, CriuError> {
        Ok(self.simple(rpc::req_type::CHECK, None, None, &[])?.success)
    }

    /// (memory dirty tracking, lazy pages).
    pub fn features(&self) -> Result<(bool, bool), CriuError> {
        let r = self.simple(
            rpc::req_type::FEATURE_CHECK,
            None,
            Some(rpc::Features {
                mem_track: Some(true),
                lazy_pages: Some(true),
            }),
            &[],
        )?;
        let f = r.features.unwrap_or_default();
        Ok((f.mem_track.unwrap_or(false), f.lazy_pages.unwrap_or(false)))
    }

    fn images_fd(dir: &Path) -> Result<OwnedFd, CriuError> {
        std::fs::File::open(dir)
            .map(OwnedFd::from)
            .map_err(|source| CriuError::Io {
                what: "opening the images directory",
                source,
            })
    }

    fn base_opts(dir_fd: &OwnedFd, log: &str) -> rpc::Opts {
        rpc::Opts {
            images_dir_fd: dir_fd.as_raw_fd(),
            log_level: Some(4),
            log_file: Some(log.into()),
            ..Default::default()
        }
    }

    /// Writes the CPU description (`cpuinfo.img`) into `dir`.
    pub fn cpuinfo_dump(&self, dir: &Path) -> Result<(), CriuError> {
        self.cpuinfo(dir, rpc::req_type::CPUINFO_DUMP, "cpuinfo dump", "cpuinfo-dump.log")
    }

    /// Checks the CPU description in `dir` against this host's CPU.
    pub fn cpuinfo_check(&self, dir: &Path) -> Result<(), CriuError> {
        self.cpuinfo(dir, rpc::req_type::CPUINFO_CHECK, "cpuinfo check", "cpuinfo-check.log")
    }

    fn cpuinfo(&self, dir: &Path, req: i32, op: &'static str, log: &str) -> Result<(), CriuError> {
        let fd = Self::images_fd(dir)?;
        let r = self.simple(req, Some(Self::base_opts(&fd, log)), None, &[fd.as_raw_fd()])?;
        if r.success {
            Ok(())
        } else {
            Err(CriuError::failed(
                op,
                r.cr_errno,
                r.cr_errmsg,
                log_errors(&dir.join(log), 5),
            ))
        }
    }

    /// Dumps a process tree into `dir`; `opts` carries everything but the images directory and
    /// the log, which this fills in (the log is `dir/dump.log`).
    /// A dump that meets a file system being mounted ([`CriuError::is_fhandle_race`]) is tried
    /// again, [`DUMP_ATTEMPTS`] times in all ([`dump_attempts`]).
    pub fn dump(
        &self,
        dir: &Path,
        opts: rpc::Opts,
        notify: &mut dyn FnMut(&str) -> Result<(), String>,
    ) -> Result<(), CriuError> {
        dump_attempts(
            dir,
            DUMP_ATTEMPTS,
            || self.dump_with_fds(dir, opts.clone(), &[], notify),
            |e| e.is_fhandle_race(),
        )
    }

    /// [`Criu::dump`], with more descriptors made available to CRIU under their numbers (a
    /// page server's socket named in `opts.ps`).
    pub fn dump_with_fds(
        &self,
        dir: &Path,
        mut opts: rpc::Opts,
        fds: &[RawFd],
        notify: &mut dyn FnMut(&str) -> Result<(), String>,
    ) -> Result<(), CriuError> {
        let fd = Self::images_fd(dir)?;
        let base = Self::base_opts(&fd, "dump.log");
        opts.images_dir_fd = base.images_dir_fd;
        opts.log_level = base.log_level;
        opts.log_file = base.log_file;
        let mut all = vec![fd.as_raw_fd()];
        all.extend_from_slice(fds);
        let r = self.call(
            &rpc::Req {
                r#type: rpc::req_type::DUMP,
                opts: Some(opts),
                notify_success: None,
                features: None,
            },
            &all,
            notify,
        )?;
        if r.success {
            Ok(())
        } else {
            Err(CriuError::failed(
                "dump",
                r.cr_errno,
                r.cr_errmsg,
                log_errors(&dir.join("dump.log"), 5),
            ))
        }
    }

    /// Restores from `dir` and returns the restored tree's root pid (as the host sees it).
    pub fn restore(
        &self,
        dir: &Path,
        mut opts: rpc::Opts,
        fds: &[RawFd],
        notify: &mut dyn FnMut(&str) -> Result<(), String>,
    ) -> Result<i32, CriuError> {
        let fd = Self::images_fd(dir)?;
        let base = Self::base_opts(&fd, "restore.log");
        opts.images_dir_fd = base.images_dir_fd;
        opts.log_level = base.log_level;
        opts.log_file = base.log_file;
        let mut all = fds.to_vec();
        all.push(fd.as_raw_fd());
        let r = self.call(
            &rpc::Req {
                r#type: rpc::req_type::RESTORE,
                opts: Some(opts),
                notify_success: None,
                features: None,
            },
            &all,
            notify,
        )?;
        match (r.success, r.restore) {
            (true, Some(rr)) => Ok(rr.pid),
            _ => Err(CriuError::failed(
                "restore",
                r.cr_errno,
                r.cr_errmsg,
                log_errors(&dir.join("restore.log"), 5),
            )),
        }
    }
}

/// What identifies a CRIU binary and this boot, as a hash: the file's device, inode, size and
/// times; for a wrapper script (`#!`), also those of every absolute path it names that is a
/// file (the loader and binary it runs). None if the file cannot be read.
fn binary_identity(bin: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let mut h = blake3::Hasher::new();
    h.update(boot_id().as_bytes());
    let mut add = |p: &Path| -> Option<()> {
        let m = std::fs::metadata(p).ok()?;
        let id = [
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime() as u64,
            m.mtime_nsec() as u64,
            m.ctime() as u64,
            m.ctime_nsec() as u64,
        ];
        h.update(p.as_os_str().as_encoded_bytes());
        for n in id {
            h.update(&n.to_le_bytes());
        }
        Some(())
    };
    add(bin)?;
    let mut magic = [0u8; 2];
    let script = std::fs::File::open(bin).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic));
    if script.is_ok() && &magic == b"#!" {
        let text = crate::fsutil::read_bounded(bin, 64 << 10).ok()?;
        for word in text.split(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ':') {
            let p = Path::new(word);
            if p.is_absolute() && p.is_file() {
                add(p)?;
            }
        }
    }
    Some(h.finalize().to_hex().to_string())
}

/// The version kept for `key` in `cache`, if any.
fn cached_version(cache: &Path, key: &str) -> Option<(i32, i32, i32)> {
    let v: serde_json::Value = serde_json::from_str(&crate::fsutil::read_bounded(cache, 4096).ok()?).ok()?;
    if v["key"].as_str()? != key {
        return None;
    }
    let n = |i: usize| v["version"][i].as_i64().and_then(|x| i32::try_from(x).ok());
    Some((n(0)?, n(1)?, n(2)?))
}

fn keep_version(cache: &Path, key: &str, v: (i32, i32, i32)) {
    let body = serde_json::json!({ "key": key, "version": [v.0, v.1, v.2] });
    if let Some(dir) = cache.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = crate::fsutil::write_atomic(cache, body.to_string().as_bytes(), 0o644);
}

/// What this host's kernel and CRIU can do, as the engine's decisions need it. Cached per boot.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostCheck {
    pub boot_id: String,
    pub criu_path: String,
    pub criu_version: String,
    /// `criu check` passed.
    pub criu_check: bool,
    /// Soft-dirty tracking as CRIU's own check finds it (`criu check --feature mem_dirty_track`).
    /// ferry's pre-copy reads the bits itself and probes them itself
    /// (`migrate::pages::soft_dirty_works`, `precopy_dirty_tracking` in `vzctl check --json`).
    pub mem_dirty_track: bool,
    pub lazy_pages: bool,
    pub uffd_noncoop: bool,
    /// TCP connections in half-closed states can be dumped.
    pub tcp_half_closed: bool,
    /// CRIU can lock the network with nftables (else iptables).
    pub network_lock_nftables: bool,
    pub kernel: String,
    /// This host's root has CAP_SYS_RESOURCE. Without it CRIU cannot read the resource limits
    /// of processes running as other users, so containers with non-root processes cannot be
    /// checkpointed (seen in sandboxes that withhold the capability).
    #[serde(default)]
    pub sys_resource: bool,
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn kernel_release() -> String {
    // SAFETY: uname fills a local struct.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    // SAFETY: uname NUL-terminates release.
    unsafe { std::ffi::CStr::from_ptr(u.release.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

impl Criu {
    /// `criu check --feature NAME`.
    pub fn has_feature(&self, name: &str) -> bool {
        Command::new(&self.bin)
            .args(["check", "--feature", name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Probes everything; `cache` (if given) is reused when it is from this boot.
    pub fn host_check(&self, cache: Option<&Path>, refresh: bool) -> Result<HostCheck, CriuError> {
        let boot = boot_id();
        if let (Some(c), false) = (cache, refresh) {
            if let Ok(b) = std::fs::read(c) {
                if let Ok(h) = serde_json::from_slice::<HostCheck>(&b) {
                    if h.boot_id == boot && h.criu_path == self.bin.display().to_string() {
                        return Ok(h);
                    }
                }
            }
        }
        let v = self.version()?;
        let (mem_track, lazy) = self.features()?;
        let h = HostCheck {
            boot_id: boot,
            criu_path: self.bin.display().to_string(),
            criu_version: format!("{}.{}.{}", v.0, v.1, v.2),
            criu_check: self.check()?,
            mem_dirty_track: mem_track,
            lazy_pages: lazy,
            uffd_noncoop: self.has_feature("uffd-noncoop"),
            tcp_half_closed: self.has_feature("tcp_half_closed"),
            network_lock_nftables: self.has_feature("network_lock_nftables"),
            kernel: kernel_release(),
            sys_resource: has_cap(24),
        };
        if let Some(c) = cache {
            if let Ok(b) = serde_json::to_vec_pretty(&h) {
                let _ = crate::fsutil::write_atomic(c, &b, 0o644);
            }
        }
        Ok(h)
    }
}

/// Whether this process has a capability in its effective set.
pub fn has_cap(cap: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|mask| mask & (1 << cap) != 0)
}

/// `major.minor` of a version string (CRIU's, a kernel's), if it has them.
pub fn major_minor(v: &str) -> Option<(u32, u32)> {
    let mut it = v.split('.').map(|x| x.parse::<u32>().ok());
    Some((it.next()??, it.next()??))
}

/// The kernel release (uname -r).
pub fn kernel() -> String {
    kernel_release()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_version_holds_only_for_the_same_binary_and_the_files_its_wrapper_names() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("criu.real");
        std::fs::write(&real, b"\x7fELF one").unwrap();
        let wrapper = d.path().join("criu");
        std::fs::write(&wrapper, format!("#!/bin/sh\nexec {} \"$@\"\n", real.display())).unwrap();
        let cache = d.path().join("run/criu-version");
        let key = binary_identity(&wrapper).unwrap();
        assert_eq!(cached_version(&cache, &key), None);
        keep_version(&cache, &key, (4, 2, 1));
        assert_eq!(cached_version(&cache, &key), Some((4, 2, 1)));
        assert_eq!(binary_identity(&wrapper).unwrap(), key);
        // The binary the wrapper runs changed: another key, so CRIU is asked again.
        std::fs::remove_file(&real).unwrap();
        std::fs::write(&real, b"\x7fELF two, longer").unwrap();
        let key2 = binary_identity(&wrapper).unwrap();
        assert_ne!(key2, key);
        assert_eq!(cached_version(&cache, &key2), None);
        // A cache file that is not ours reads as nothing.
        std::fs::write(&cache, b"{\"key\": 7}").unwrap();
        assert_eq!(cached_version(&cache, &key2), None);
        assert_eq!(binary_identity(&d.path().join("missing")), None);
    }

    #[test]
    fn the_harmless_rlimit_error_never_leads() {
        let noise = "Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted";
        let real = "(00.064243) Error (criu/mount.c:753): mnt: 87:./proc/timer_list doesn't have a proper root mount";
        let e = CriuError::failed(
            "dump",
            None,
            Some(noise.into()),
            vec![real.into(), "(00.12) Error: Dumping FAILED.".into()],
        );
        let text = e.to_string();
        assert!(text.starts_with(&format!("CRIU dump failed: {real}")), "{text}");
        assert!(!text.contains("RLIMIT_NOFILE"), "{text}");
        assert!(text.contains("Dumping FAILED"), "{text}");
        // A real message stays the headline; a harmless one with no log says nothing.
        let e = CriuError::failed("restore", Some(2), Some("real trouble".into()), vec![]);
        assert!(e.to_string().contains(": real trouble"));
        let e = CriuError::failed("restore", None, Some(noise.into()), vec![]);
        assert_eq!(e.to_string(), "CRIU restore failed");
    }

    /// The line CI's failed dump logged, and its neighbours: only a watch printed without its
    /// handle is the race.
    #[test]
    fn only_a_watch_without_its_handle_is_the_race() {
        let race = "(00.41) Error (criu/proc_parse.c:1760): parse_fdinfo_pid_s: error parsing \
                    [inotify wd:16 ino:4e386 sdev:26 mask:2 ignored_mask:0 ] for 8";
        let failed = |line: &str| CriuError::failed("dump", None, None, vec![line.into()]);
        assert!(failed(race).is_fhandle_race());
        assert!(CriuError::failed("dump", None, Some(race.into()), vec![]).is_fhandle_race());
        let fan =
            "Error: parse_fdinfo_pid_s: error parsing [fanotify ino:12 sdev:26 mflags:0 mask:1 ignored_mask:0 ] for 3";
        assert!(failed(fan).is_fhandle_race());
        let whole = "Error: parse_fdinfo_pid_s: error parsing [inotify wd:1 ino:2 sdev:26 mask:2 ignored_mask:0 \
                     fhandle-bytes:8 fhandle-type:1 f_handle:0200000000000000] for 8";
        assert!(!failed(whole).is_fhandle_race());
        assert!(
            !failed("Error (criu/mount.c:753): mnt: 87:./proc/timer_list doesn't have a proper root mount")
                .is_fhandle_race()
        );
        assert!(!CriuError::Timeout(Duration::from_secs(1)).is_fhandle_race());
    }

    /// Tries again only for the race, at most `attempts` times, removing what a failed try
    /// left and keeping what was there before.
    #[test]
    fn a_dump_is_tried_again_only_for_the_race_and_cleans_between_tries() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kept.img"), b"before").unwrap();
        let mut tries = 0;
        let r: Result<(), String> = dump_attempts(
            dir.path(),
            8,
            || {
                tries += 1;
                // Each try finds only what was there before it began.
                let mut seen: Vec<_> = std::fs::read_dir(dir.path())
                    .unwrap()
                    .map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect();
                seen.sort();
                assert_eq!(seen, ["kept.img"], "try {tries}");
                std::fs::write(dir.path().join("core-1.img"), b"half").unwrap();
                std::fs::create_dir(dir.path().join("sub")).unwrap();
                if tries < 3 {
                    Err("race".into())
                } else {
                    Ok(())
                }
            },
            |e| e == "race",
        );
        assert!(r.is_ok());
        assert_eq!(tries, 3);
        assert_eq!(std::fs::read(dir.path().join("kept.img")).unwrap(), b"before");
        // Another error ends it at once, and what it left stays for the reader of its log.
        let mut tries = 0;
        let r: Result<(), String> = dump_attempts(
            dir.path(),
            8,
            || {
                tries += 1;
                Err("other".into())
            },
            |e| e == "race",
        );
        assert_eq!((r, tries), (Err("other".into()), 1));
        assert!(dir.path().join("core-1.img").exists());
        // The race for ever: `attempts` tries, then its error.
        let mut tries = 0;
        let r: Result<(), String> = dump_attempts(
            dir.path(),
            4,
            || {
                tries += 1;
                Err("race".into())
            },
            |e| e == "race",
        );
        assert_eq!((r, tries), (Err("race".into()), 4));
    }
}
