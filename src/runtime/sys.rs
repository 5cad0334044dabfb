//! Thin wrappers over the system calls the runtime uses between fork and exec. Each returns
//! `io::Error` with the call's errno; callers add what was being done.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `p` for a system call; a path with a NUL byte in it is an error (no system call can name it).
pub fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{:?} has a NUL byte in it", p.display().to_string()),
        )
    })
}

pub fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Fails unless this process has exactly one thread: fork in a threaded process copies locks
/// held by other threads, and setns into a mount namespace refuses threaded callers.
pub fn ensure_single_threaded() -> io::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .map(|v| v.trim().to_string());
    if threads.as_deref() == Some("1") {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "the container runtime must be called from a single-threaded process (this one has {} threads)",
            threads.unwrap_or_else(|| "?".into())
        )))
    }
}

pub fn mount(
    src: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let src = src.map(|s| CString::new(s).unwrap());
    let fstype = fstype.map(|s| CString::new(s).unwrap());
    let data = data.map(|s| CString::new(s).unwrap());
    let t = cstr(target)?;
    // SAFETY: every pointer is a valid NUL-terminated string or null.
    check(unsafe {
        libc::mount(
            src.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            t.as_ptr(),
            fstype.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            data.as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr() as *const libc::c_void),
        )
    })
    .map(|_| ())
}

pub fn bind(src: &Path, target: &Path) -> io::Result<()> {
    let s = src.to_string_lossy().into_owned();
    mount(Some(&s), target, None, libc::MS_BIND, None)
}

/// Bind-mounts a path over itself and makes the bind read-only.
pub fn bind_readonly(path: &Path) -> io::Result<()> {
    bind(path, path)?;
    mount(
        None,
        path,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
        None,
    )
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// A detached copy of the mount at `path` (with what is mounted below it when `recursive`), as
/// `mount --bind` makes but not yet attached anywhere. Its root mount is never locked, even in
/// a user namespace whose copied mounts are.
pub fn open_tree_clone(path: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    let flags = OPEN_TREE_CLONE
        | libc::O_CLOEXEC as libc::c_uint
        | if recursive {
            libc::AT_RECURSIVE as libc::c_uint
        } else {
            0
        };
    // SAFETY: open_tree with a valid path; the result is a new descriptor we own.
    let fd = check(unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, p.as_ptr(), flags) as libc::c_int })?;
    // SAFETY: open_tree returned a descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Makes a detached mount idmapped through the mappings of a user namespace.
pub fn set_idmap(tree: &OwnedFd, userns: &OwnedFd) -> io::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr on a mount descriptor with a valid attribute struct and its size.
    check(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        ) as libc::c_int
    })
    .map(|_| ())
}

/// Attaches a detached mount (from `open_tree_clone`) at `target`.
pub fn move_mount_to(tree: &OwnedFd, target: &Path) -> io::Result<()> {
    let t = cstr(target)?;
    // SAFETY: move_mount of a mount descriptor onto a valid path.
    check(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        ) as libc::c_int
    })
    .map(|_| ())
}

/// Binds the working directory over itself (recursively) and moves into the new mount: the
/// root a container pivots into must be a mount point that is not locked. The working
/// directory moves through the mount's descriptor, so no path above it is walked (a container
/// with a user namespace may not traverse the host's 0700 directories).
pub fn rebind_cwd() -> io::Result<()> {
    let tree = open_tree_clone(Path::new("."), true)?;
    move_mount_to(&tree, Path::new("."))?;
    // SAFETY: fchdir to a descriptor we own.
    check(unsafe { libc::fchdir(tree.as_raw_fd()) }).map(|_| ())
}

pub fn umount(target: &Path) -> io::Result<()> {
    let t = cstr(target)?;
    // SAFETY: valid path string.
    check(unsafe { libc::umount2(t.as_ptr(), 0) }).map(|_| ())
}

pub fn umount_detach(target: &Path) -> io::Result<()> {
    let t = cstr(target)?;
    // SAFETY: valid path string.
    check(unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) }).map(|_| ())
}

pub fn mknod(path: &Path, mode: libc::mode_t, major: u32, minor: u32) -> io::Result<()> {
    let p = cstr(path)?;
    // SAFETY: valid path string.
    check(unsafe { libc::mknod(p.as_ptr(), libc::S_IFCHR | mode, libc::makedev(major, minor)) })?;
    // mknod honours the umask; set the mode exactly.
    check(unsafe { libc::chmod(p.as_ptr(), mode) }).map(|_| ())
}

pub fn pivot_root_here() -> io::Result<()> {
    let dot = CString::new(".").unwrap();
    // SAFETY: pivot_root(".", ".") stacks the old root on top of the new one; it is detached next.
    check(unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) as libc::c_int })?;
    umount_detach(Path::new("."))?;
    std::env::set_current_dir("/")
}

pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 returned two fresh descriptors that we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    check(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: fresh descriptors that we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub fn write_all(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: buf is a valid slice.
        let n = unsafe { libc::write(fd, buf.as_ptr() as *const libc::c_void, buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Reads until EOF (or `max` bytes).
pub fn read_to_end(fd: RawFd, max: usize) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < max {
        // SAFETY: buf is a valid buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    Ok(out)
}

/// Sends one tag byte and one descriptor over a Unix socket.
pub fn send_fd(sock: RawFd, tag: u8, fd: RawFd) -> io::Result<()> {
    let mut data = [tag];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr() as *mut libc::c_void,
        iov_len: 1,
    };
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    // SAFETY: msghdr is plain data; zeroed is a valid start.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space;
    // SAFETY: the control buffer has room for one cmsg carrying one fd.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut RawFd, fd);
        check(libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) as libc::c_int)?;
    }
    Ok(())
}

/// Receives what `send_fd` sent; Ok(None) at end of stream.
pub fn recv_fd(sock: RawFd) -> io::Result<Option<(u8, OwnedFd)>> {
    let mut data = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr() as *mut libc::c_void,
        iov_len: 1,
    };
    // SAFETY: pure computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    // SAFETY: zeroed msghdr is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space;
    loop {
        // SAFETY: msg points at valid buffers.
        let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(None);
        }
        break;
    }
    // SAFETY: the kernel filled msg; we only read a cmsg it says is there.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() || (*c).cmsg_level != libc::SOL_SOCKET || (*c).cmsg_type != libc::SCM_RIGHTS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "message without a descriptor",
            ));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const RawFd);
        Ok(Some((data[0], OwnedFd::from_raw_fd(fd))))
    }
}

/// Marks every descriptor from `from` up close-on-exec.
pub fn cloexec_from(from: u32) -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes flags.
    check(unsafe { libc::syscall(libc::SYS_close_range, from, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) as libc::c_int })
        .map(|_| ())
}

/// Closes every descriptor from `from` up except `keep`.
pub fn close_all_except(from: RawFd, keep: &[RawFd]) {
    let mut fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map(|rd| rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    fds.retain(|fd| *fd >= from && !keep.contains(fd));
    for fd in fds {
        // SAFETY: closing descriptors this process will not use again.
        unsafe { libc::close(fd) };
    }
}

pub fn setns(fd: &OwnedFd, nstype: libc::c_int) -> io::Result<()> {
    // SAFETY: fd is an open namespace descriptor.
    check(unsafe { libc::setns(fd.as_raw_fd(), nstype) }).map(|_| ())
}

pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open returns a new descriptor or -1.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) as libc::c_int })?;
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends `sig` to the process behind `pidfd` (a process that already exited is no error).
pub fn pidfd_signal(pidfd: &OwnedFd, sig: libc::c_int) {
    // SAFETY: pidfd_send_signal on a pidfd we own, no siginfo.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
}

/// Opens a new pty master from the ptmx at `ptmx`, unlocks it, and returns it with the slave's
/// number in that devpts instance.
pub fn open_pty_master(ptmx: &Path) -> io::Result<(OwnedFd, u32)> {
    let p = cstr(ptmx)?;
    // SAFETY: valid path string.
    let fd = check(unsafe { libc::open(p.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) })?;
    // SAFETY: fresh descriptor.
    let master = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut unlock: libc::c_int = 0;
    let mut n: libc::c_uint = 0;
    // SAFETY: ioctls on a pty master with pointers to local integers.
    unsafe {
        check(libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &mut unlock))?;
        check(libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n))?;
    }
    Ok((master, n))
}

pub fn open_rw_noctty(path: &Path) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    // SAFETY: valid path string.
    let fd = check(unsafe { libc::open(p.as_ptr(), libc::O_RDWR | libc::O_NOCTTY) })?;
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes `tty` the controlling terminal of a new session and the standard descriptors.
pub fn take_tty(tty: RawFd) -> io::Result<()> {
    // SAFETY: plain system calls on our own descriptors.
    unsafe {
        check(libc::setsid())?;
        check(libc::ioctl(tty, libc::TIOCSCTTY, 0))?;
        for std in 0..3 {
            check(libc::dup2(tty, std))?;
        }
    }
    Ok(())
}

/// Restores default dispositions for signals a Rust program changes (SIGPIPE is ignored by the
/// Rust runtime, and ignored signals survive exec) and clears the signal mask.
pub fn reset_signals() {
    // SAFETY: resetting dispositions and the mask in a process about to exec.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

pub fn execve(argv: &[CString], env: &[CString]) -> io::Error {
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = env.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: NUL-terminated arrays of valid strings.
    unsafe { libc::execve(argv[0].as_ptr(), a.as_ptr(), e.as_ptr()) };
    io::Error::last_os_error()
}

/// Waits for a child and returns its exit status as a shell would (128+N for signal N).
pub fn wait_exit_code(pid: libc::pid_t) -> io::Result<i32> {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        break;
    }
    if libc::WIFEXITED(status) {
        Ok(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Ok(128 + libc::WTERMSIG(status))
    } else {
        Ok(255)
    }
}

pub fn fork() -> io::Result<libc::pid_t> {
    // SAFETY: callers ensure the process is single-threaded.
    check(unsafe { libc::fork() })
}

/// Ends a forked child without running the parent's destructors or atexit handlers.
pub fn exit_child(code: i32) -> ! {
    // SAFETY: _exit never returns.
    unsafe { libc::_exit(code) }
}

/// Rewrites this process's command line as `ps` and /proc/PID/cmdline show it, within the
/// room the original arguments took (`arg_start`..`arg_end` of /proc/self/stat; longer words
/// are cut there). Setting the bounds themselves (PR_SET_MM) needs CAP_SYS_RESOURCE, which
/// root lacks on some hosts, so the bytes are overwritten in place. Best effort: a
/// /proc/self/stat that does not read leaves the command line as it was.
pub fn set_cmdline(words: &[&str]) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the parenthesised name start at field 3; arg_start and arg_end are 48, 49.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (Some(Ok(start)), Some(Ok(end))) = (
        f.get(45).map(|v| v.parse::<usize>()),
        f.get(46).map(|v| v.parse::<usize>()),
    ) else {
        return;
    };
    if end <= start || end - start > 1 << 20 {
        return;
    }
    let mut text = words.join("\0").into_bytes();
    text.truncate(end - start - 1);
    // SAFETY: [start, end) is this process's own argument area (the kernel says so), mapped and
    // writable for the life of the process; nothing in this single-threaded child reads the
    // original arguments after this point.
    unsafe {
        let area = std::slice::from_raw_parts_mut(start as *mut u8, end - start);
        area.fill(0);
        area[..text.len()].copy_from_slice(&text);
    }
}

pub fn c(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| CString::new("?").unwrap())
}

pub fn cstr_to_string(c: &CStr) -> String {
    c.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a forked child (the test harness's own arguments stay as they are): the command
    /// line reads as the words given, NUL-separated, nothing of the old one left.
    #[test]
    fn the_command_line_is_rewritten_in_place() {
        use std::io::Read;
        let (r, w) = pipe().unwrap();
        let pid = fork().unwrap();
        if pid == 0 {
            set_cmdline(&["ferry-console", "101"]);
            let cmdline = std::fs::read("/proc/self/cmdline").unwrap_or_default();
            let mut f = std::fs::File::from(w);
            let _ = std::io::Write::write_all(&mut f, &cmdline);
            exit_child(0);
        }
        drop(w);
        let mut got = Vec::new();
        std::fs::File::from(r).read_to_end(&mut got).unwrap();
        assert_eq!(wait_exit_code(pid).unwrap(), 0);
        let words: Vec<&[u8]> = got.split(|b| *b == 0).filter(|w| !w.is_empty()).collect();
        assert_eq!(
            words,
            [&b"ferry-console"[..], b"101"],
            "{:?}",
            String::from_utf8_lossy(&got)
        );
    }

    #[test]
    fn a_path_with_a_nul_byte_is_an_error_not_another_path() {
        let e = cstr(Path::new("/vz/root/1\0/etc")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("NUL"), "{e}");
        assert_eq!(cstr(Path::new("/vz/root/1")).unwrap().as_bytes(), b"/vz/root/1");
        // The wrappers say so rather than act on some other path.
        let e = open_pty_master(Path::new("/dev/pts/ptmx\0x")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
