//! Relays the caller's terminal to a pty master inside a container (`vzctl enter`).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::sys;

/// Puts a terminal into raw mode and restores it on drop.
struct RawMode {
    fd: RawFd,
    saved: libc::termios,
}

impl RawMode {
    fn enable(fd: RawFd) -> Option<Self> {
        // SAFETY: termios is plain data; tcgetattr fills it or fails on a non-terminal.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) != 0 {
                return None;
            }
            let saved = t;
            libc::cfmakeraw(&mut t);
            libc::tcsetattr(fd, libc::TCSANOW, &t);
            Some(Self { fd, saved })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restoring the attributes read in enable.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

fn copy_winsize(from: RawFd, to: RawFd, last: &mut (u16, u16)) {
    // SAFETY: winsize is plain data; ioctls on our descriptors.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(from, libc::TIOCGWINSZ, &mut ws) == 0 && (ws.ws_row, ws.ws_col) != *last {
            *last = (ws.ws_row, ws.ws_col);
            libc::ioctl(to, libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Receives the pty master over `sock` and copies stdin to it and it to stdout until the
/// command's side of the pty is closed.
pub fn relay(sock: OwnedFd) -> io::Result<()> {
    let Some((_, master)) = sys::recv_fd(sock.as_raw_fd())? else {
        // The command failed before it had a terminal; its error arrives through another pipe.
        return Ok(());
    };
    drop(sock);
    let m = master.as_raw_fd();
    let _raw = RawMode::enable(0);
    let mut last = (0, 0);
    copy_winsize(0, m, &mut last);
    let mut stdin_open = true;
    let mut buf = [0u8; 8192];
    loop {
        copy_winsize(0, m, &mut last);
        let mut fds = [
            libc::pollfd {
                fd: m,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: if stdin_open { 0 } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: valid pollfd array.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, 250) } < 0 {
            continue;
        }
        if fds[0].revents & libc::POLLIN != 0 {
            // SAFETY: reading into a valid buffer.
            let n = unsafe { libc::read(m, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
            if n <= 0 {
                return Ok(());
            }
            sys::write_all(1, &buf[..n as usize])?;
        } else if fds[0].revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            return Ok(());
        }
        if fds[1].revents & (libc::POLLIN | libc::POLLHUP) != 0 {
            // SAFETY: reading into a valid buffer.
            let n = unsafe { libc::read(0, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
            if n <= 0 {
                stdin_open = false;
                // End of input: tell the shell, as a terminal's ^D would.
                let _ = sys::write_all(m, &[4]);
            } else {
                sys::write_all(m, &buf[..n as usize])?;
            }
        }
    }
}

/// `vzctl console`: joins the console logger at `socket` and relays the caller's terminal to
/// the container's console (raw, where stdin is a terminal) until the user types Esc then `.`,
/// stdin ends, or the console goes (the container stopped).
pub fn attach_console(socket: &std::path::Path, hello: Option<&str>) -> io::Result<()> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket)?;
    // The logger's answer: `+` attached, or `-` and why not.
    let mut answer = [0u8; 1];
    s.read_exact(&mut answer)?;
    if answer[0] != b'+' {
        let mut why = String::new();
        let _ = s.take(256).read_to_string(&mut why);
        return Err(io::Error::new(io::ErrorKind::ResourceBusy, why));
    }
    if let Some(h) = hello {
        println!("{h}");
    }
    let _raw = RawMode::enable(0);
    // An Esc held back until the next byte says whether it starts the detach sequence.
    let mut esc = false;
    let mut buf = [0u8; 4096];
    loop {
        let mut fds = [
            libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: fds is a valid array of two pollfds.
        if unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if fds[1].revents != 0 {
            let n = s.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            let mut out = io::stdout().lock();
            out.write_all(&buf[..n])?;
            out.flush()?;
        }
        if fds[0].revents != 0 {
            // SAFETY: reading into a valid buffer from stdin.
            let n = unsafe { libc::read(0, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
            if n <= 0 {
                // Nothing more to type: what the container still writes is not waited for.
                return Ok(());
            }
            let mut send = Vec::with_capacity(n as usize + 1);
            for &b in &buf[..n as usize] {
                match (esc, b) {
                    (true, b'.') => {
                        s.write_all(&send)?;
                        return Ok(());
                    }
                    (true, _) => {
                        send.push(0x1b);
                        esc = b == 0x1b;
                        if !esc {
                            send.push(b);
                        }
                    }
                    (false, 0x1b) => esc = true,
                    (false, _) => send.push(b),
                }
            }
            s.write_all(&send)?;
        }
    }
}
