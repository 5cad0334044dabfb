//! Telling the neighbours where an address now lives: a gratuitous ARP request for IPv4 and an
//! unsolicited neighbour advertisement (override flag set) for IPv6, sent on the host's uplink
//! with the uplink's MAC, so peers that cached the old host's MAC switch at once.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    // SAFETY: ifreq is plain data.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in name.bytes().enumerate() {
        r.ifr_name[i] = b as libc::c_char;
    }
    Ok(r)
}

fn ctl_socket() -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: socket(2); the descriptor is owned below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// The index of an interface in this network namespace.
pub fn ifindex(name: &str) -> io::Result<i32> {
    let mut r = ifreq(name)?;
    let s = ctl_socket()?;
    // SAFETY: SIOCGIFINDEX fills ifr_ifindex of our ifreq.
    if unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&s), libc::SIOCGIFINDEX, &mut r) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the union member SIOCGIFINDEX wrote.
    Ok(unsafe { r.ifr_ifru.ifru_ifindex })
}

/// The MAC address of an interface in this network namespace.
pub fn hwaddr(name: &str) -> io::Result<[u8; 6]> {
    let mut r = ifreq(name)?;
    let s = ctl_socket()?;
    // SAFETY: SIOCGIFHWADDR fills ifr_hwaddr.
    if unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&s), libc::SIOCGIFHWADDR, &mut r) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the union member SIOCGIFHWADDR wrote.
    let sa = unsafe { r.ifr_ifru.ifru_hwaddr };
    let mut m = [0u8; 6];
    for (i, b) in m.iter_mut().enumerate() {
        *b = sa.sa_data[i] as u8;
    }
    Ok(m)
}

/// The Ethernet frame of a gratuitous ARP request for `ip` from `mac`.
pub fn garp_frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    // target hardware address stays zero
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// The ICMPv6 body of an unsolicited neighbour advertisement (checksum left to the kernel).
pub fn na_body(mac: [u8; 6], ip: Ipv6Addr) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[0] = 136; // neighbour advertisement
    b[4] = 0x20; // override
    b[8..24].copy_from_slice(&ip.octets());
    b[24] = 2; // target link-layer address option
    b[25] = 1; // 8 bytes
    b[26..32].copy_from_slice(&mac);
    b
}

pub fn garp(uplink: &str, ip: Ipv4Addr) -> io::Result<()> {
    let frame = garp_frame(hwaddr(uplink)?, ip);
    send_frames(uplink, libc::ETH_P_ARP as u16, [0xff; 6], &[&frame[..]]).map(|_| ())
}

/// Sends whole Ethernet frames (headers included) on `dev`, addressed to `to`; returns how
/// many went out.
pub fn send_frames(dev: &str, ethertype: u16, to: [u8; 6], frames: &[&[u8]]) -> io::Result<usize> {
    let idx = ifindex(dev)?;
    let proto = ethertype.to_be();
    // SAFETY: a raw packet socket, closed when the OwnedFd drops.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto as i32) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    let s: std::os::fd::OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = proto;
    sa.sll_ifindex = idx;
    sa.sll_halen = 6;
    sa.sll_addr[..6].copy_from_slice(&to);
    let mut sent = 0;
    for frame in frames {
        // SAFETY: sending our frame to a valid sockaddr_ll.
        let r = unsafe {
            libc::sendto(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
                &sa as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            if sent == 0 {
                return Err(io::Error::last_os_error());
            }
            break;
        }
        sent += 1;
    }
    Ok(sent)
}

pub fn unsolicited_na(uplink: &str, ip: Ipv6Addr) -> io::Result<()> {
    let idx = ifindex(uplink)?;
    let mac = hwaddr(uplink)?;
    let body = na_body(mac, ip);
    // SAFETY: a raw ICMPv6 socket, closed when the OwnedFd drops.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET6,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_ICMPV6,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    let s: std::os::fd::OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&s);
    let hops: libc::c_int = 255;
    // SAFETY: setsockopt with pointers to local integers.
    unsafe {
        libc::setsockopt(
            raw,
            libc::IPPROTO_IPV6,
            libc::IPV6_MULTICAST_HOPS,
            &hops as *const _ as *const libc::c_void,
            4,
        );
        libc::setsockopt(
            raw,
            libc::IPPROTO_IPV6,
            libc::IPV6_MULTICAST_IF,
            &idx as *const _ as *const libc::c_void,
            4,
        );
    }
    // SAFETY: sockaddr_in6 is plain data.
    let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    sa.sin6_family = libc::AF_INET6 as u16;
    sa.sin6_addr.s6_addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1).octets();
    sa.sin6_scope_id = idx as u32;
    // SAFETY: sending our message to a valid sockaddr_in6.
    let r = unsafe {
        libc::sendto(
            raw,
            body.as_ptr() as *const libc::c_void,
            body.len(),
            0,
            &sa as *const libc::sockaddr_in6 as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in6>() as u32,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garp_layout() {
        let f = garp_frame([2, 0, 0, 0, 0, 1], Ipv4Addr::new(198, 18, 0, 10));
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[12..14], &[0x08, 0x06]);
        assert_eq!(&f[20..22], &[0, 1]);
        assert_eq!(&f[28..32], &[198, 18, 0, 10]);
        assert_eq!(&f[38..42], &[198, 18, 0, 10]);
        assert_eq!(&f[32..38], &[0; 6]);
    }

    #[test]
    fn na_layout() {
        let b = na_body([2, 0, 0, 0, 0, 1], "2001:2::10".parse().unwrap());
        assert_eq!(b[0], 136);
        assert_eq!(b[4], 0x20);
        assert_eq!(&b[24..26], &[2, 1]);
        assert_eq!(&b[26..32], &[2, 0, 0, 0, 0, 1]);
    }
}
