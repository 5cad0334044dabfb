//! The console logger: a small detached host process that holds the master side of a
//! container's console pty and appends what the container writes to `vz/log/CTID.console.log`
//! (rotated to `.1` past 1 MiB). Without it, a container writing to its console would block
//! once the pty's buffer filled.
//!
//! It receives two descriptors over a socket, each tagged with one byte: the pty master
//! (`M`) from the container's setup process, and a pidfd of the container's init (`P`) from
//! the starting command. It exits when init exits, or if either never arrives.

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
pub fn spawn_logger(sock: OwnedFd, log_path: &Path, ctid: crate::ctid::Ctid) -> io::Result<()> {
    let log = Log::open(log_path)?;
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
                sys::close_all_except(3, &[sock.as_raw_fd(), log.file.as_raw_fd()]);
                let name = sys::c("ferry-console");
                // SAFETY: PR_SET_NAME with a valid string.
                unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
                sys::set_cmdline(&["ferry-console", &ctid.to_string()]);
                run(sock, log);
                sys::exit_child(0);
            }
            _ => sys::exit_child(0),
        }
    }
    sys::wait_exit_code(pid)?;
    Ok(())
}

fn run(sock: OwnedFd, mut log: Log) {
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
        ];
        // SAFETY: fds is a valid array of two pollfds.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, 1000) };
        if r < 0 {
            continue;
        }
        let init_gone = fds[1].revents != 0;
        if fds[0].revents & libc::POLLIN != 0 || init_gone {
            drain(&master, &mut buf, &mut log, init_gone);
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

fn drain(master: &OwnedFd, buf: &mut [u8], log: &mut Log, until_empty: bool) {
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
        if !until_empty {
            return;
        }
    }
}
