//! Helpers for the root-only integration tests: each test gets its own ferry host (a host
//! root in a temporary directory and its own cgroup parent), torn down even when the test
//! fails. A missing prerequisite (not root, no CRIU, no busybox) fails the test with a message
//! that says what to install; nothing is skipped silently.
#![allow(dead_code)]

pub mod lab;
pub mod services;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "these tests need root (namespaces, cgroups, mounts, CRIU): run scripts/test.sh as root"
    );
}

/// CRIU >= 4.2, as scripts/setup.sh installs it.
pub fn criu() -> PathBuf {
    let candidates = [std::env::var("FERRY_CRIU").ok(), Some("/opt/ferry/criu/criu".into())];
    for c in candidates.into_iter().flatten() {
        let p = PathBuf::from(c);
        if p.exists() {
            return p;
        }
    }
    panic!("CRIU not found (FERRY_CRIU or /opt/ferry/criu/criu): run scripts/setup.sh");
}

#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "command failed: {self:?}");
        self
    }
}

/// Runs a command with a deadline; a command that hangs fails the test instead of CI.
pub fn run(mut cmd: Command, timeout: Duration) -> Out {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {desc}: {e}"));
    let out_pipe = child.stdout.take().unwrap();
    let err_pipe = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || std::io::read_to_string(out_pipe).unwrap_or_default());
    let t_err = std::thread::spawn(move || std::io::read_to_string(err_pipe).unwrap_or_default());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("{desc} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    use std::os::unix::process::ExitStatusExt;
    let code = status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    Out {
        code,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// One ferry host for one test.
pub struct TestHost {
    pub dir: tempfile::TempDir,
    pub cgroup_parent: String,
}

impl TestHost {
    pub fn new(tag: &str) -> Self {
        require_root();
        let dir = tempfile::Builder::new()
            .prefix(&format!("ferry-{tag}-"))
            .tempdir()
            .unwrap();
        let cgroup_parent = format!("ferry-test-{tag}-{}", std::process::id());
        let conf = dir.path().join("etc/vz/vz.conf");
        std::fs::create_dir_all(conf.parent().unwrap()).unwrap();
        let mut text = ferry::host::DEFAULT_VZ_CONF.to_string();
        text.push_str(&format!("CGROUP_PARENT=\"{cgroup_parent}\"\nSTOP_TIMEOUT=\"20\"\n"));
        std::fs::write(&conf, text).unwrap();
        Self { dir, cgroup_parent }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    fn cmd(&self, bin: &str, args: &[&str]) -> Command {
        let mut c = Command::new(bin);
        c.arg("--root-dir").arg(self.root()).args(args).env_remove("FERRY_ROOT");
        c
    }

    pub fn vzctl(&self, args: &[&str]) -> Out {
        run(self.cmd(env!("CARGO_BIN_EXE_vzctl"), args), Duration::from_secs(120))
    }
    pub fn vzlist(&self, args: &[&str]) -> Out {
        run(self.cmd(env!("CARGO_BIN_EXE_vzlist"), args), Duration::from_secs(60))
    }
    pub fn vzboot(&self, args: &[&str]) -> Out {
        run(self.cmd(env!("CARGO_BIN_EXE_vzboot"), args), Duration::from_secs(300))
    }
    pub fn vzpkg(&self, args: &[&str], timeout: Duration) -> Out {
        run(self.cmd(env!("CARGO_BIN_EXE_vzpkg"), args), timeout)
    }

    /// `vzctl exec` that must succeed; returns its stdout.
    pub fn exec(&self, ctid: &str, script: &str) -> String {
        let o = self.vzctl(&["exec", ctid, script]);
        assert_eq!(o.code, 0, "exec {script:?} in {ctid}: {o:?}");
        o.stdout
    }

    pub fn state(&self, ctid: &str) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.root().join(format!("vz/run/{ctid}.json"))).unwrap()).unwrap()
    }

    pub fn init_pid(&self, ctid: &str) -> i32 {
        self.state(ctid)["init_pid"].as_i64().unwrap() as i32
    }

    pub fn conf(&self, ctid: &str) -> PathBuf {
        self.root().join(format!("etc/vz/conf/{ctid}.conf"))
    }

    /// A file of a container's cgroup on the v1 hierarchy of `ctrl`, trimmed.
    pub fn cgroup_file(&self, ctrl: &str, ctid: &str, file: &str) -> String {
        let p = format!("/sys/fs/cgroup/{ctrl}/{}/{ctid}/{file}", self.cgroup_parent);
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .trim()
            .to_string()
    }

    pub fn private(&self, ctid: &str) -> PathBuf {
        self.root().join(format!("vz/private/{ctid}"))
    }

    /// Every mount point below this host's root, in the host's mount namespace.
    pub fn mounts_below(&self) -> Vec<String> {
        let root = self.root().canonicalize().unwrap();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| Path::new(m).starts_with(&root))
            .collect()
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        // Stop whatever a failed test left running, then make sure nothing is mounted below the
        // temporary directory before it is removed.
        if let Ok(rd) = std::fs::read_dir(self.root().join("etc/vz/conf")) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(id) = name.strip_suffix(".conf") {
                    let _ = self.vzctl(&["stop", "--fast", id, "-q"]);
                }
            }
        }
        let mut mounts = self.mounts_below();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let c = std::ffi::CString::new(m).unwrap();
            // SAFETY: lazy unmount of a path below our own temporary directory.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
        for h in [
            "pids", "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "systemd", "unified",
        ] {
            let d = Path::new("/sys/fs/cgroup").join(h).join(&self.cgroup_parent);
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    if e.path().is_dir() {
                        let _ = std::fs::remove_dir(e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(&d);
        }
    }
}

/// A tmux session for driving interactive commands, killed on drop.
pub struct Tmux {
    pub name: String,
}

impl Tmux {
    pub fn start(name: &str, command: &str) -> Self {
        let s = Self {
            name: format!("{name}-{}", std::process::id()),
        };
        let o = run(
            {
                let mut c = Command::new("tmux");
                c.args(["new-session", "-d", "-s", &s.name, "-x", "120", "-y", "40", command]);
                c
            },
            Duration::from_secs(10),
        );
        assert_eq!(o.code, 0, "tmux new-session (install tmux: scripts/setup.sh): {o:?}");
        s
    }

    pub fn send(&self, keys: &str) {
        let mut c = Command::new("tmux");
        c.args(["send-keys", "-t", &self.name, keys, "Enter"]);
        run(c, Duration::from_secs(10)).ok();
    }

    /// Keys as tmux names them (`Escape`, `.`), with no Enter after.
    pub fn keys(&self, keys: &[&str]) {
        let mut c = Command::new("tmux");
        c.args(["send-keys", "-t", &self.name]).args(keys);
        run(c, Duration::from_secs(10)).ok();
    }

    pub fn screen(&self) -> String {
        let mut c = Command::new("tmux");
        c.args(["capture-pane", "-p", "-t", &self.name]);
        run(c, Duration::from_secs(10)).stdout
    }

    /// Waits until the screen contains `text`.
    pub fn wait_for(&self, text: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            assert!(
                start.elapsed() < timeout,
                "{text:?} did not appear on the screen within {timeout:?}:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let mut c = Command::new("tmux");
        c.args(["kill-session", "-t", &self.name]);
        let _ = c.output();
    }
}

/// The lasting processes in `ps -o pid,args` output, as (pid, arguments) by pid: the lines
/// `wanted` keeps, each command line once. A shell loop forks for each command it runs; such a
/// fork shows, for a moment, with the loop's arguments under a higher pid, and is left out.
pub fn lasting_procs(ps: &str, wanted: impl Fn(&str) -> bool) -> Vec<(u32, String)> {
    let mut procs: Vec<(u32, String)> = ps
        .lines()
        .filter(|l| wanted(l))
        .filter_map(|l| {
            let (pid, args) = l.trim_start().split_once(' ')?;
            Some((pid.parse().ok()?, args.trim().to_string()))
        })
        .collect();
    procs.sort();
    let mut seen = std::collections::HashSet::new();
    procs.retain(|(_, args)| seen.insert(args.clone()));
    procs
}

/// Waits until `f` holds.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An echo session from the client namespace `netns` on its own thread (network namespaces are
/// per thread): `n` numbered lines on one connection, each echo checked, `gap` apart. Returns
/// once the first echo is back (or the session failed, which joining the thread tells): until
/// the server has accepted the connection it sits in a listening socket's queue, which is not
/// a session a checkpoint can carry.
pub fn echo_session(
    netns: String,
    addr: &'static str,
    n: usize,
    gap: Duration,
) -> std::thread::JoinHandle<Result<usize, String>> {
    let (first, first_back) = std::sync::mpsc::channel();
    let session = std::thread::spawn(move || {
        ferry_testbed::enter_netns(&netns).map_err(|e| format!("setns: {e}"))?;
        let t0 = Instant::now();
        let mut s = std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(10))
            .map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        for i in 0..n {
            let line = format!("message {i} of {n}\n");
            s.write_all(line.as_bytes()).map_err(|e| format!("write {i}: {e}"))?;
            let mut got = vec![0u8; line.len()];
            s.read_exact(&mut got)
                .map_err(|e| format!("read {i}: {e} ({} ms into the session)", t0.elapsed().as_millis()))?;
            if got != line.as_bytes() {
                return Err(format!("echo {i} came back as {:?}", String::from_utf8_lossy(&got)));
            }
            if i == 0 {
                eprintln!("echo session: first echo after {} ms", t0.elapsed().as_millis());
                let _ = first.send(());
            }
            std::thread::sleep(gap);
        }
        Ok(n)
    });
    let _ = first_back.recv_timeout(Duration::from_secs(60));
    session
}

/// The shell a test runs in a container to hold a file open after its name was removed while
/// a second name links it (CRIU's zdtm unlink_fstat03), and a deleted 4 MiB file (above CRIU's
/// default ghost-file limit), and the check of them afterwards: the first descriptor reads the
/// content and is the second name's inode, the second reads the deleted file's content (its
/// checksum kept in /root); no remap is left beside them.
pub const HOLD_UNLINKED: &str = "mkdir -p /srv; echo kept > /srv/f; ln /srv/f /srv/f.link; \
     dd if=/dev/urandom of=/srv/big bs=1M count=4 2>/dev/null; md5sum < /srv/big > /root/big.md5; \
     (exec 3</srv/f 4</srv/big; exec sleep 100000) </dev/null >/dev/null 2>&1 & sleep 0.3; rm /srv/f /srv/big";
pub const CHECK_UNLINKED: &str = "p=$(pidof sleep | tr ' ' '\\n' | head -1); cat /proc/$p/fd/3; \
     [ $(stat -L -c %i /proc/$p/fd/3) = $(stat -c %i /srv/f.link) ] && echo same-inode; \
     [ \"$(md5sum < /proc/$p/fd/4)\" = \"$(cat /root/big.md5)\" ] && echo same-content; ls -a /srv | tr '\\n' ' '";

/// The shell a test runs in a container for a counter in memory that it also writes to
/// /tmp/count every 0.05 s. Each value goes to a new file renamed over the old one, so the file
/// always holds a whole number, whenever a checkpoint freezes the loop (writing in place left
/// it empty for the moment between truncation and write, and a dump falling there read 0).
pub const COUNTER_LOOP: &str = "(i=0; while true; do i=$((i+1)); echo $i > /tmp/count.new; \
     mv /tmp/count.new /tmp/count; sleep 0.05; done) </dev/null >/dev/null 2>&1 &";

/// `tests/NAME.c` built statically (gcc and libc6-dev: setup.sh) into the test target's
/// directory, once per test binary; its path.
pub fn static_program(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, p)) = built.iter().find(|(n, _)| n == name) {
        return p.clone();
    }
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/{name}.c"));
    let o = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&out)
        .arg(&src)
        .output()
        .expect("gcc (scripts/setup.sh installs it)");
    assert!(
        o.status.success(),
        "building {name}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    built.push((name.to_string(), out.clone()));
    out
}
