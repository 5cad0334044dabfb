//! `vzmigrate` run as a child process, by `vzevacuate` and by an agent giving a container back
//! (the pull call): its progress lines as they come (`--progress-lines` on stderr), then its
//! report (`--json` on stdout) or its error.
//!
//! The child starts behind a gate: it does nothing until its parent has recorded its pid (in
//! vzevacuate's journal) and opened the gate, and it exits untouched if the parent dies first.
//! So a parent killed just after starting it never leaves a vzmigrate it does not know of.

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// The environment variable naming the descriptor a child waits on.
const GATE_ENV: &str = "FERRY_START_GATE";

/// The parent's end of a child's gate. Opened, the child goes ahead; dropped unopened (the
/// parent gone, or changed its mind), the child exits without doing anything.
pub struct Gate(OwnedFd);

impl Gate {
    pub fn open(self) {
        // SAFETY: writing one byte from a local buffer to our own pipe.
        unsafe { libc::write(self.0.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
    }
}

/// In the child (vzmigrate, first thing): waits at its gate, if it was started behind one.
/// Err if the parent went away without opening it.
pub fn pass_gate() -> Result<(), String> {
    let Some(fd) = std::env::var(GATE_ENV).ok().and_then(|v| v.parse::<i32>().ok()) else {
        return Ok(());
    };
    // SAFETY: the descriptor the parent left open for us under this number, ours alone.
    let gate = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut b = [0u8; 1];
    let n = loop {
        // SAFETY: reading into a local buffer.
        let n = unsafe { libc::read(gate.as_raw_fd(), b.as_mut_ptr().cast(), 1) };
        if n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break n;
        }
    };
    if n == 1 {
        Ok(())
    } else {
        Err("the command that started this vzmigrate went away before recording it; nothing was done".into())
    }
}

/// What a finished migration reported.
#[derive(Debug, Default, Clone, Copy)]
pub struct Report {
    pub frozen_ms: u64,
    pub total_ms: u64,
    pub wire_bytes: u64,
    pub image_bytes: u64,
}

pub enum Event {
    /// Running, with this pid (the first event), waiting at its gate.
    Started(u32, Gate),
    Line(String),
    /// The report, or the error vzmigrate printed last.
    Done(Result<Report, String>),
}

/// Starts `vzmigrate --root-dir ROOT [--online] --json --progress-lines ARGS... DEST CTID`;
/// `on_event` sees its start (with the gate to open once its pid is recorded), its lines and
/// then its end, in that order, on a thread of their own.
pub fn spawn(
    vzmigrate: &Path,
    root: &Path,
    online: bool,
    args: &[String],
    dest: &str,
    ctid: u32,
    mut on_event: impl FnMut(Event) + Send + 'static,
) -> std::io::Result<()> {
    let mut cmd = Command::new(vzmigrate);
    cmd.arg("--root-dir").arg(root);
    if online {
        cmd.arg("--online");
    }
    cmd.args(["--json", "--progress-lines"])
        .args(args)
        .arg(dest)
        .arg(ctid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut fds = [0i32; 2];
    // SAFETY: a pipe into a local array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just made, and are owned here alone.
    let (wait_end, gate) = unsafe { (OwnedFd::from_raw_fd(fds[0]), Gate(OwnedFd::from_raw_fd(fds[1]))) };
    let fd = wait_end.as_raw_fd();
    cmd.env(GATE_ENV, fd.to_string());
    // SAFETY: only fcntl (async-signal-safe) between fork and exec: the child keeps its end
    // of the pipe open across exec; the parent's end is closed in it at exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let mut child = cmd.spawn()?;
    drop(wait_end);
    std::thread::spawn(move || {
        on_event(Event::Started(child.id(), gate));
        let mut last = String::new();
        if let Some(e) = child.stderr.take() {
            for line in BufReader::new(e).lines().map_while(Result::ok) {
                on_event(Event::Line(line.clone()));
                last = line;
            }
        }
        let mut out = String::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        let ok = child.wait().is_ok_and(|st| st.success());
        let r = if ok {
            let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
            let n = |k: &str| v[k].as_u64().unwrap_or(0);
            Ok(Report {
                frozen_ms: n("frozen_ms"),
                total_ms: n("total_ms"),
                wire_bytes: n("wire_bytes"),
                image_bytes: n("image_bytes"),
            })
        } else {
            Err(last.strip_prefix("vzmigrate: error: ").unwrap_or(&last).to_string())
        };
        on_event(Event::Done(r));
    });
    Ok(())
}
