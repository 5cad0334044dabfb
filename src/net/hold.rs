//! Holding a frozen container's inbound packets during a live migration, instead of dropping
//! them, and handing them to the destination at the commit.
//!
//! Why: a client whose segment is dropped while the container is frozen retransmits it only
//! when its backed-off timer fires (200 ms, 400 ms, 800 ms, ... after the one before), so a
//! one-second freeze costs it two or three seconds. Routed to a TUN device that nobody reads,
//! the packets wait in the device's queue (up to its txqueuelen); at the commit they are read
//! out and sent on to the destination host, where the restored container answers at once.
//!
//! IPv4 packets are sent on by a raw socket through a host route to the destination; IPv6
//! packets (Linux routes IPv6 through an IPv4 gateway only for MPLS, and the destination's IPv6
//! address is not known here) go out as Ethernet frames to the MAC of the next hop towards the
//! destination's IPv4 address, which routes them to the container like any other. Closing the
//! device (the hold dropped, or vzmigrate dying) removes its routes with it.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::ip;

/// Packets kept at most (the device's queue length).
const QUEUE: usize = 2048;

pub struct Hold {
    /// The device (it lives as long as this descriptor).
    fd: OwnedFd,
    addrs: Vec<IpAddr>,
}

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

impl Hold {
    /// Routes the container's addresses to a new TUN device (replacing their blackhole
    /// routes). `None` when there is nothing to hold.
    pub fn start(ctid: u32, addrs: &[IpAddr]) -> io::Result<Option<Hold>> {
        let addrs = addrs.to_vec();
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
            let (fam, host) = super::host_route(a);
            ip::host(&[fam, "route", "replace", &host, "dev", &name]).map_err(fail)?;
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
        let (v4, v6): (Vec<Vec<u8>>, Vec<Vec<u8>>) = packets.into_iter().partition(|p| p[0] >> 4 == 4);
        let mut sent = 0;
        if !v4.is_empty() {
            let ok = self.addrs.iter().filter(|a| a.is_ipv4()).all(|a| {
                ip::host(&[
                    "-4",
                    "route",
                    "replace",
                    &super::host_route(a).1,
                    "via",
                    &via.to_string(),
                ])
                .is_ok()
            });
            if ok {
                sent += send_raw(&v4);
            }
        }
        if !v6.is_empty() {
            sent += next_hop(via)
                .and_then(|(dev, mac)| {
                    let own = super::announce::hwaddr(&dev)?;
                    let frames: Vec<Vec<u8>> = v6.iter().map(|p| ethernet(mac, own, 0x86dd, p)).collect();
                    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
                    super::announce::send_frames(&dev, 0x86dd, mac, &refs)
                })
                .unwrap_or(0);
        }
        for a in &self.addrs {
            let (fam, host) = super::host_route(a);
            let _ = ip::host(&[fam, "route", "replace", "blackhole", &host]);
        }
        sent
    }

    /// The migration was rolled back: the container runs here again. `resume` brings it back
    /// (thaws it, puts its routes back); then the held packets are handed to it, so its
    /// clients do not wait for their backed-off retransmissions: IPv4 through a raw socket
    /// (routed like any packet this host sends, along the restored route), IPv6 written back
    /// into the device, whence the host forwards them the same way. Returns how many went.
    pub fn deliver_here(self, resume: impl FnOnce()) -> usize {
        let packets = self.drain();
        resume();
        let (v4, v6): (Vec<Vec<u8>>, Vec<Vec<u8>>) = packets.into_iter().partition(|p| p[0] >> 4 == 4);
        let mut sent = send_raw(&v4);
        for p in &v6 {
            // SAFETY: writing a buffer we own to the device we own.
            let n = unsafe { libc::write(self.fd.as_raw_fd(), p.as_ptr().cast(), p.len()) };
            if n == p.len() as isize {
                sent += 1;
            }
        }
        sent
    }
}

/// The device and the MAC of the next hop towards `to` (from the routing and neighbour
/// tables; the migration's connection has just used it, so it is known).
fn next_hop(to: Ipv4Addr) -> io::Result<(String, [u8; 6])> {
    let route = ip::host(&["-4", "route", "get", &to.to_string()]).map_err(|e| io::Error::other(e.to_string()))?;
    let words: Vec<&str> = route.split_whitespace().collect();
    let after = |key: &str| words.windows(2).find(|w| w[0] == key).map(|w| w[1].to_string());
    let dev = after("dev").ok_or_else(|| io::Error::other(format!("no device in {route:?}")))?;
    let hop = after("via").unwrap_or_else(|| to.to_string());
    let arp = std::fs::read_to_string("/proc/net/arp")?;
    arp_entry(&arp, &hop, &dev).ok_or_else(|| io::Error::other(format!("no neighbour entry for {hop} on {dev}")))
}

/// The MAC of `ip` on `dev` in /proc/net/arp's text.
fn arp_entry(text: &str, ip: &str, dev: &str) -> Option<(String, [u8; 6])> {
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 6 || f[0] != ip || f[5] != dev || f[2] == "0x0" {
            return None;
        }
        let mut mac = [0u8; 6];
        let parts: Vec<&str> = f[3].split(':').collect();
        if parts.len() != 6 {
            return None;
        }
        for (b, p) in mac.iter_mut().zip(parts) {
            *b = u8::from_str_radix(p, 16).ok()?;
        }
        (mac != [0; 6]).then(|| (dev.to_string(), mac))
    })
}

/// An Ethernet frame around `payload`.
fn ethernet(to: [u8; 6], from: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&to);
    f.extend_from_slice(&from);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_hops_mac_is_read_from_the_arp_table() {
        let text = "IP address       HW type     Flags       HW address            Mask     Device\n\
                    198.18.0.2       0x1         0x2         02:aa:bb:cc:dd:0e     *        eth0\n\
                    198.18.0.3       0x1         0x0         00:00:00:00:00:00     *        eth0\n\
                    198.18.0.2       0x1         0x2         02:00:00:00:00:99     *        eth1\n";
        assert_eq!(
            arp_entry(text, "198.18.0.2", "eth0"),
            Some(("eth0".into(), [2, 0xaa, 0xbb, 0xcc, 0xdd, 0x0e]))
        );
        assert_eq!(arp_entry(text, "198.18.0.2", "eth1").map(|e| e.1[5]), Some(0x99));
        // Incomplete entries and other addresses are not next hops.
        assert_eq!(arp_entry(text, "198.18.0.3", "eth0"), None);
        assert_eq!(arp_entry(text, "198.18.0.4", "eth0"), None);
    }

    #[test]
    fn frames_carry_the_packet_whole() {
        let f = ethernet([1; 6], [2; 6], 0x86dd, &[0x60, 0, 0, 0]);
        assert_eq!(&f[..6], &[1; 6]);
        assert_eq!(&f[6..12], &[2; 6]);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        assert_eq!(&f[14..], &[0x60, 0, 0, 0]);
    }
}
