//! Holding a frozen container's inbound packets during a live migration, instead of dropping
//! them, and handing them to the destination at the commit.
//!
//! Why: a client whose segment is dropped while the container is frozen retransmits it only
//! when its backed-off timer fires (200 ms, 400 ms, 800 ms, ... after the one before), so a
//! one-second freeze costs it two or three seconds. Routed to a TUN device that nobody reads,
//! the packets wait in the device's queue (up to its txqueuelen); at the commit they are read
//! out and sent on to the destination host, where the restored container answers at once.
//!
//! IPv4 only; IPv6 addresses stay blackholed (their clients wait for their retransmission).
//! Closing the device (the hold dropped, or vzmigrate dying) removes its routes with it.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::ip;

/// Packets kept at most (the device's queue length).
const QUEUE: usize = 2048;

pub struct Hold {
    /// The device (it lives as long as this descriptor).
    fd: OwnedFd,
    addrs: Vec<Ipv4Addr>,
}

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

impl Hold {
    /// Routes the container's IPv4 addresses to a new TUN device (replacing their blackhole
    /// routes). `None` when there is nothing to hold.
    pub fn start(ctid: u32, addrs: &[IpAddr]) -> io::Result<Option<Hold>> {
        let addrs: Vec<Ipv4Addr> = addrs
            .iter()
            .filter_map(|a| match a {
                IpAddr::V4(v4) => Some(*v4),
                IpAddr::V6(_) => None,
            })
            .collect();
        if addrs.is_empty() {
            return Ok(None);
        }
        let name = format!("vzh{ctid}");
        // SAFETY: open with a constant path; the fd is owned at once.
        let raw = unsafe {
            libc::open(
                c"/dev/net/tun".as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
            _pad: [0; 22],
        };
        req.name[..name.len()].copy_from_slice(name.as_bytes());
        // SAFETY: TUNSETIFF reads an ifreq we own.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let fail = |e: super::NetError| io::Error::other(e.to_string());
        ip::host(&["link", "set", &name, "txqueuelen", &QUEUE.to_string(), "up"]).map_err(fail)?;
        for a in &addrs {
            ip::host(&["-4", "route", "replace", &format!("{a}/32"), "dev", &name]).map_err(fail)?;
        }
        Ok(Some(Hold { fd, addrs }))
    }

    /// The packets waiting in the device's queue.
    fn drain(&self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        while out.len() < QUEUE {
            // SAFETY: reading into a buffer we own, within its length.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            out.push(buf[..n as usize].to_vec());
        }
        out
    }

    /// The destination runs the container now: the held packets go to it through `via` (a
    /// host on the uplink's network), then the addresses go back to a blackhole for the
    /// source's teardown. Returns how many packets were sent on.
    pub fn release(self, via: IpAddr) -> usize {
        let packets = self.drain();
        let IpAddr::V4(via) = via else { return 0 };
        if packets.is_empty() {
            return 0;
        }
        for a in &self.addrs {
            if ip::host(&["-4", "route", "replace", &format!("{a}/32"), "via", &via.to_string()]).is_err() {
                return 0;
            }
        }
        let sent = send_raw(&packets);
        for a in &self.addrs {
            let _ = ip::host(&["-4", "route", "replace", "blackhole", &format!("{a}/32")]);
        }
        sent
    }
}

/// Sends whole IPv4 packets (headers included) as they are; the kernel routes each by its
/// destination.
fn send_raw(packets: &[Vec<u8>]) -> usize {
    // SAFETY: a plain socket call; the fd is owned at once.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_RAW) };
    if raw < 0 {
        return 0;
    }
    // SAFETY: raw is a fresh descriptor.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut sent = 0;
    for p in packets {
        if p.len() < 20 || p[0] >> 4 != 4 {
            continue;
        }
        let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(dst).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: sending a buffer we own to an address we built.
        let n = unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                p.as_ptr().cast(),
                p.len(),
                0,
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        };
        if n == p.len() as isize {
            sent += 1;
        }
    }
    sent
}
