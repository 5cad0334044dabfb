//! The console logger: a small detached host process that holds the master side of a
//! container's console pty and appends what the container writes to `vz/log/CTID.console.log`
//! (rotated to `.1` past 1 MiB). Without it, a container writing to its console would block
//! once the pty's buffer filled.
//!
//! It receives two descriptors over a socket, each tagged with one byte: the pty master
//! (`M`) from the container's setup process, and a pidfd of the container's init (`P`) from
//! the starting command. It exits when init exits, or if either never arrives.
//!
//! It also listens on `vz/run/CTID.console` (a Unix socket, root only) for `vzctl console`:
//! one client at a time gets what the container writes to its console from then on (the log
//! gets it too), and what the client sends is typed into the console. A second client is told
//! the console is taken and turned away.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::sys;

pub const TAG_MASTER: u8 = b'M';
pub const TAG_PIDFD: u8 = b'P';
const MAX_LOG: u64 = 1 << 20;

struct Log {
    path: PathBuf,
    file: File,
    size: u64,
}

impl Log {
    fn open(path: &Path) -> io::Result<Self> {
        let file = open_log(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: path.to_path_buf(),
            file,
            size,
        })
    }

    fn write(&mut self, data: &[u8]) {
        if self.size + data.len() as u64 > MAX_LOG {
            let mut old = self.path.clone().into_os_string();
            old.push(".1");
            let _ = std::fs::rename(&self.path, &old);
            if let Ok(f) = open_log(&self.path) {
                self.file = f;
                self.size = 0;
            }
        }
        if self.file.write_all(data).is_ok() {
            self.size += data.len() as u64;
        }
    }
}

/// Opens a console log for appending, readable by the host's root alone (what a container
/// writes to its console is its own business), also when an older one was not.
fn open_log(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Forks the detached logger and returns in the parent. The logger owns `sock`'s peer end and
/// shows in `ps` as `ferry-console CTID` (not as the vzctl it was forked from).
pub fn spawn_logger(sock: OwnedFd, log_path: &Path, attach: &Path, ctid: crate::ctid::Ctid) -> io::Result<()> {
    let log = Log::open(log_path)?;
    let listener = listen(attach)?;
    let pid = sys::fork()?;
    if pid == 0 {
        // Intermediate child: fork the logger and exit, so nobody has to reap it.
        match sys::fork() {
            Ok(0) => {
                // SAFETY: setsid in a fresh child.
                unsafe { libc::setsid() };
                let _ = std::env::set_current_dir("/");
                if let Ok(null) = sys::open_rw_noctty(Path::new("/dev/null")) {
                    for fd in 0..3 {
                        // SAFETY: replacing standard descriptors.
                        unsafe { libc::dup2(null.as_raw_fd(), fd) };
                    }
                }
                sys::close_all_except(3, &[sock.as_raw_fd(), log.file.as_raw_fd(), listener.as_raw_fd()]);
                let name = sys::c("ferry-console");
                // SAFETY: PR_SET_NAME with a valid string.
                unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
                sys::set_cmdline(&["ferry-console", &ctid.to_string()]);
                run(sock, log, Attach::new(listener, attach));
                sys::exit_child(0);
            }
            _ => sys::exit_child(0),
        }
    }
    drop(listener);
    sys::wait_exit_code(pid)?;
    Ok(())
}

/// The listening socket for `vzctl console` at `path` (one a dead logger left is replaced),
/// root only, non-blocking.
fn listen(path: &Path) -> io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let l = std::os::unix::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// The console's one attached client, if any.
struct Attach {
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
    client: Option<std::os::unix::net::UnixStream>,
}

impl Attach {
    fn new(listener: std::os::unix::net::UnixListener, path: &Path) -> Self {
        Self {
            listener,
            path: path.to_path_buf(),
            client: None,
        }
    }

    /// A client knocking: taken if none is attached, else told and turned away.
    fn accept(&mut self) {
        while let Ok((mut c, _)) = self.listener.accept() {
            // The first byte answers: `+` attached, `-` refused (the reason follows).
            if self.client.is_some() {
                let _ = c.write_all(b"-the console is attached elsewhere");
                continue;
            }
            if c.write_all(b"+").is_ok() && c.set_nonblocking(true).is_ok() {
                self.client = Some(c);
            }
        }
    }

    /// What the client typed, into the console; the client dropped when it leaves.
    fn typed(&mut self, master: &OwnedFd) {
        let Some(c) = self.client.as_mut() else { return };
        let mut buf = [0u8; 4096];
        match io::Read::read(c, &mut buf) {
            Ok(0) => self.client = None,
            Ok(n) => {
                let mut left = &buf[..n];
                while !left.is_empty() {
                    // Only what the pty takes now: a console nobody inside reads must not
                    // stop the logger (what does not fit is dropped).
                    let mut p = [libc::pollfd {
                        fd: master.as_raw_fd(),
                        events: libc::POLLOUT,
                        revents: 0,
                    }];
                    // SAFETY: poll on one descriptor with no wait.
                    if unsafe { libc::poll(p.as_mut_ptr(), 1, 0) } <= 0 || p[0].revents & libc::POLLOUT == 0 {
                        break;
                    }
                    // SAFETY: writing from a valid buffer to the pty master.
                    let w =
                        unsafe { libc::write(master.as_raw_fd(), left.as_ptr() as *const libc::c_void, left.len()) };
                    if w <= 0 {
                        break;
                    }
                    left = &left[w as usize..];
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => self.client = None,
        }
    }

    /// What the container wrote, to the client (a client that cannot keep up misses what does
    /// not fit; the log has all of it).
    fn show(&mut self, data: &[u8]) {
        if let Some(c) = self.client.as_mut() {
            match c.write(data) {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => self.client = None,
                _ => {}
            }
        }
    }
}

impl Drop for Attach {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn run(sock: OwnedFd, mut log: Log, mut attach: Attach) {
    let mut master = None;
    let mut pidfd = None;
    while master.is_none() || pidfd.is_none() {
        match sys::recv_fd(sock.as_raw_fd()) {
            Ok(Some((TAG_MASTER, fd))) => master = Some(fd),
            Ok(Some((TAG_PIDFD, fd))) => pidfd = Some(fd),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return,
        }
    }
    drop(sock);
    let (master, pidfd) = (master.unwrap(), pidfd.unwrap());
    let mut buf = [0u8; 8192];
    loop {
        let client = attach.client.as_ref().map(|c| c.as_raw_fd()).unwrap_or(-1);
        let mut fds = [
            libc::pollfd {
                fd: master.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: attach.listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            // A negative descriptor is skipped by poll.
            libc::pollfd {
                fd: client,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: fds is a valid array of four pollfds.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 4, 1000) };
        if r < 0 {
            continue;
        }
        if fds[2].revents != 0 {
            attach.accept();
        }
        if client >= 0 && fds[3].revents != 0 {
            attach.typed(&master);
        }
        let init_gone = fds[1].revents != 0;
        if fds[0].revents & libc::POLLIN != 0 || init_gone {
            drain(&master, &mut buf, &mut log, &mut attach, init_gone);
        } else if fds[0].revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            // No process holds the console right now; look again shortly.
            // SAFETY: poll on the pidfd alone, as a sleep that ends early when init exits.
            let mut p = [libc::pollfd {
                fd: pidfd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            unsafe { libc::poll(p.as_mut_ptr(), 1, 200) };
        }
        if init_gone {
            return;
        }
    }
}

fn drain(master: &OwnedFd, buf: &mut [u8], log: &mut Log, attach: &mut Attach, until_empty: bool) {
    loop {
        let mut p = [libc::pollfd {
            fd: master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: poll on one descriptor with no wait.
        if unsafe { libc::poll(p.as_mut_ptr(), 1, 0) } <= 0 || p[0].revents & libc::POLLIN == 0 {
            return;
        }
        // SAFETY: reading into a valid buffer.
        let n = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n <= 0 {
            return;
        }
        log.write(&buf[..n as usize]);
        attach.show(&buf[..n as usize]);
        if !until_empty {
            return;
        }
    }
}
