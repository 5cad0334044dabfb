//! Container networking, in OpenVZ's two modes:
//!
//! - venet-style routed addresses (`--ipadd`): a veth pair per container, `venet0` inside with
//!   the addresses (/32, /128) and a default route through the host side `venetCTID`; on the
//!   host a route per address to that link, and proxy ARP / proxy NDP entries on the uplink so
//!   peers on the host's network reach the container directly. Announced with gratuitous ARP
//!   and unsolicited neighbour advertisements when the container appears; the routes and proxy
//!   entries are withdrawn when it leaves.
//! - bridged veth interfaces (`--netif_add`): a veth pair whose host side joins a bridge, with
//!   MACs kept in the config; addresses inside are the container's own business.
//!
//! What a running container has installed is recorded in its run state ([`NetState`]), so
//! changes applied live without `--save` are still undone at stop.

pub mod announce;
pub mod hold;
pub mod ip;
pub mod netif;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use netif::{Mac, Netif, NetifError};

#[derive(Debug, Error)]
pub enum NetError {
    #[error("{what} failed: {stderr}")]
    Command { what: String, stderr: String },
    #[error("{what} failed")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the host has no uplink: set UPLINK in vz.conf (the interface peers reach this host on)")]
    NoUplink,
    #[error(
        "the uplink {0} does not exist on this host: set UPLINK in vz.conf to the interface peers reach this host on"
    )]
    UplinkMissing(String),
    #[error("bridge {0} does not exist on this host; create it or set BRIDGE in vz.conf")]
    NoBridge(String),
    #[error("announcing {addr} on {uplink} failed")]
    Announce {
        addr: String,
        uplink: String,
        #[source]
        source: std::io::Error,
    },
}

/// The host's side of networking, from vz.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostNet {
    /// Where peers reach this host: proxy ARP/NDP entries and announcements go here.
    pub uplink: Option<String>,
    /// Default bridge for `--netif_add`.
    pub bridge: Option<String>,
}

impl HostNet {
    /// The uplink, which must exist.
    pub fn uplink(&self) -> Result<String, NetError> {
        let u = self.uplink.clone().ok_or(NetError::NoUplink)?;
        if !ip::link_exists(&u) {
            return Err(NetError::UplinkMissing(u));
        }
        Ok(u)
    }

    /// UPLINK from vz.conf, else the device of this namespace's default route.
    pub fn detect(uplink: Option<&str>, bridge: Option<&str>) -> Self {
        let uplink = uplink.filter(|u| !u.is_empty()).map(str::to_string).or_else(|| {
            let out = ip::host(&["-o", "route", "show", "default"]).ok()?;
            let mut w = out.split_whitespace();
            while let Some(t) = w.next() {
                if t == "dev" {
                    return w.next().map(str::to_string);
                }
            }
            None
        });
        Self {
            uplink,
            bridge: bridge.filter(|b| !b.is_empty()).map(str::to_string),
        }
    }
}

/// What networking a running container has on this host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetState {
    /// Addresses routed to the container, as configured (with prefix if given).
    pub ips: Vec<String>,
    /// The uplink on which proxy entries were installed.
    pub uplink: Option<String>,
    /// Host sides of bridged interfaces.
    pub netifs: Vec<String>,
}

/// The host side of a container's venet link.
pub fn venet_host_ifname(ctid: u32) -> String {
    format!("venet{ctid}")
}

fn ensure_venet(ctid: u32, pid: i32) -> Result<String, NetError> {
    let host_if = venet_host_ifname(ctid);
    if ip::link_exists(&host_if) {
        return Ok(host_if);
    }
    ip::antispoof()?;
    let netns = format!("/proc/{pid}/ns/net");
    ip::host(&[
        "link", "add", &host_if, "type", "veth", "peer", "name", "venet0", "netns", &netns,
    ])?;
    ip::sysctl(&format!("net/ipv4/conf/{host_if}/proxy_arp"), "1")?;
    // The container resolves every peer through the host side: answered at once (the kernel
    // otherwise delays a proxied answer by up to 0.8 s, which a restored container, whose
    // neighbour table starts empty, would add to its first reply after a migration).
    ip::sysctl(&format!("net/ipv4/neigh/{host_if}/proxy_delay"), "0")?;
    ip::sysctl(&format!("net/ipv6/conf/{host_if}/accept_dad"), "0")?;
    ip::host(&["link", "set", &host_if, "up"])?;
    ip::host(&["-6", "addr", "add", "fe80::1/64", "dev", &host_if, "nodad"])?;
    ip::inside(pid, &["link", "set", "lo", "up"])?;
    ip::inside(pid, &["link", "set", "venet0", "up"])?;
    ip::inside(pid, &["route", "add", "default", "dev", "venet0"])?;
    ip::inside(
        pid,
        &["-6", "route", "add", "default", "via", "fe80::1", "dev", "venet0"],
    )?;
    Ok(host_if)
}

/// Lets the uplink answer for proxied addresses, at once: by default the kernel delays proxy
/// answers to broadcast requests by a random time up to `proxy_delay` (0.8 s), which a client
/// meeting a container (or one that missed the announcement after a migration) would wait.
fn proxy_on(uplink: &str) -> Result<(), NetError> {
    ip::sysctl(&format!("net/ipv6/conf/{uplink}/proxy_ndp"), "1")?;
    ip::sysctl(&format!("net/ipv4/neigh/{uplink}/proxy_delay"), "0")?;
    ip::sysctl(&format!("net/ipv6/neigh/{uplink}/proxy_delay"), "0")
}

/// Routes addresses to a running container (init `pid`) and announces them.
pub fn add_ips(
    ctid: u32,
    pid: i32,
    addrs: &[IpWithPrefix],
    hn: &HostNet,
    state: &mut NetState,
) -> Result<(), NetError> {
    if addrs.is_empty() {
        return Ok(());
    }
    let uplink = hn.uplink()?;
    let host_if = ensure_venet(ctid, pid)?;
    ip::sysctl("net/ipv4/ip_forward", "1")?;
    ip::sysctl("net/ipv6/conf/all/forwarding", "1")?;
    proxy_on(&uplink)?;
    for a in addrs {
        let addr = a.addr.to_string();
        let (fam, host_len) = if a.addr.is_ipv4() { ("-4", 32) } else { ("-6", 128) };
        let inside_len = a.prefix.unwrap_or(host_len);
        let inside = format!("{addr}/{inside_len}");
        if a.addr.is_ipv4() {
            ip::inside(pid, &["addr", "add", &inside, "dev", "venet0"])?;
        } else {
            ip::inside(pid, &["-6", "addr", "add", &inside, "dev", "venet0", "nodad"])?;
        }
        ip::host(&[fam, "route", "replace", &format!("{addr}/{host_len}"), "dev", &host_if])?;
        ip::host(&[fam, "neigh", "replace", "proxy", &addr, "dev", &uplink])?;
        state.ips.push(a.to_string());
        state.uplink = Some(uplink.clone());
    }
    // The kernel drops the routes of a link whose last IPv4 address goes (an --ipdel of every
    // address): the container's default route comes back with its next address.
    if addrs.iter().any(|a| a.addr.is_ipv4()) && ip::inside(pid, &["-4", "route", "show", "default"])?.trim().is_empty()
    {
        ip::inside(pid, &["route", "add", "default", "dev", "venet0"])?;
    }
    announce(&uplink, addrs)
}

/// Removes addresses from a running container and withdraws them from the host.
pub fn del_ips(pid: i32, addrs: &[IpWithPrefix], state: &mut NetState) -> Result<(), NetError> {
    for a in addrs {
        let addr = a.addr.to_string();
        let host_len = if a.addr.is_ipv4() { 32 } else { 128 };
        let configured = state
            .ips
            .iter()
            .find(|s| s.split('/').next() == Some(addr.as_str()))
            .cloned();
        let inside_len = configured
            .as_deref()
            .and_then(|s| s.split_once('/'))
            .map(|(_, p)| p.to_string())
            .unwrap_or_else(|| host_len.to_string());
        let _ = ip::inside(pid, &["addr", "del", &format!("{addr}/{inside_len}"), "dev", "venet0"]);
        withdraw_host(&a.addr, state.uplink.as_deref());
        state.ips.retain(|s| s.split('/').next() != Some(addr.as_str()));
    }
    Ok(())
}

/// The host's side of one address (its route, its proxy entry on `uplink`), taken away.
pub fn withdraw_host(addr: &IpAddr, uplink: Option<&str>) {
    let _ = ip::batch(&withdraw_cmds(addr, uplink), true);
}

/// The `ip` commands that take an address's host side away: its route, its proxy entry.
fn withdraw_cmds(a: &IpAddr, uplink: Option<&str>) -> Vec<Vec<String>> {
    let (_, route) = host_route(a);
    let mut cmds = vec![ip::words(&["route", "del", &route])];
    if let Some(u) = uplink {
        cmds.push(ip::words(&["neigh", "del", "proxy", &a.to_string(), "dev", u]));
    }
    cmds
}

/// Tells the neighbours these addresses are reached through this host now.
pub fn announce(uplink: &str, addrs: &[IpWithPrefix]) -> Result<(), NetError> {
    for a in addrs {
        let r = match a.addr {
            IpAddr::V4(v4) => announce::garp(uplink, v4),
            IpAddr::V6(v6) => announce::unsolicited_na(uplink, v6),
        };
        r.map_err(|source| NetError::Announce {
            addr: a.addr.to_string(),
            uplink: uplink.to_string(),
            source,
        })?;
    }
    Ok(())
}

/// Creates a bridged veth for a running container (init `pid`).
pub fn add_netif(pid: i32, n: &Netif, hn: &HostNet, state: &mut NetState) -> Result<(), NetError> {
    let bridge = if n.bridge.is_empty() {
        hn.bridge
            .clone()
            .ok_or_else(|| NetError::NoBridge("(none: set BRIDGE in vz.conf)".into()))?
    } else {
        n.bridge.clone()
    };
    if !ip::link_exists(&bridge) {
        return Err(NetError::NoBridge(bridge));
    }
    let netns = format!("/proc/{pid}/ns/net");
    let (mac, host_mac) = (n.mac.to_string(), n.host_mac.to_string());
    ip::host(&[
        "link",
        "add",
        &n.host_ifname,
        "address",
        &host_mac,
        "type",
        "veth",
        "peer",
        "name",
        &n.ifname,
        "address",
        &mac,
        "netns",
        &netns,
    ])?;
    state.netifs.push(n.host_ifname.clone());
    ip::host(&["link", "set", &n.host_ifname, "master", &bridge])?;
    ip::host(&["link", "set", &n.host_ifname, "up"])?;
    ip::inside(pid, &["link", "set", "lo", "up"])?;
    ip::inside(pid, &["link", "set", &n.ifname, "up"])?;
    Ok(())
}

/// The temporary host name of the container's end of link `index` of a container with a user
/// namespace, made before a restore (`precreate_veth`).
pub fn restore_peer_ifname(ctid: u32, index: usize) -> String {
    format!("fr{ctid}-{index}")
}

/// Makes a veth pair on the host before CRIU restores a container with a user namespace:
/// `host_ifname` stays here, down; CRIU moves `peer_tmp` into the container under its own name
/// (`--external netdev[NAME]:peer_tmp`). CRIU cannot make the pair itself from inside the
/// container's user namespace on kernels that require CAP_NET_ADMIN over the peer's namespace
/// (Linux commit 7b735ef81286, "rtnetlink: add missing netlink_ns_capable() check for peer
/// netns"); the host's root has it.
pub fn precreate_veth(host_ifname: &str, peer_tmp: &str) -> Result<(), NetError> {
    ip::host(&["link", "add", host_ifname, "type", "veth", "peer", "name", peer_tmp]).map(|_| ())
}

pub fn del_netif(n_host_ifname: &str, state: &mut NetState) -> Result<(), NetError> {
    if ip::link_exists(n_host_ifname) {
        ip::host(&["link", "del", n_host_ifname])?;
    }
    state.netifs.retain(|h| h != n_host_ifname);
    Ok(())
}

/// Withdraws everything a container had on this host (its routes and proxy entries; its links
/// go with its network namespace, or are deleted here if it still exists).
pub fn withdraw_all(ctid: u32, state: &NetState) {
    withdraw_all_but(ctid, state, |_| false)
}

/// [`withdraw_all`] but for the addresses `kept` names (its argument: the address as
/// `state.ips` has it), whose route and proxy entry stay for a `replace` to take over. One run
/// of `ip`, errors ignored (what is gone already is fine).
pub fn withdraw_all_but(ctid: u32, state: &NetState, kept: impl Fn(&str) -> bool) {
    let mut cmds = Vec::new();
    for s in state.ips.iter().filter(|s| !kept(s)) {
        if let Ok(a) = parse_ip(s) {
            cmds.extend(withdraw_cmds(&a.addr, state.uplink.as_deref()));
        }
    }
    let v = venet_host_ifname(ctid);
    for h in state.netifs.iter().chain([&v]) {
        if ip::link_exists(h) {
            cmds.push(ip::words(&["link", "del", h]));
        }
    }
    let _ = ip::batch(&cmds, true);
}

/// Parses IP_ADDRESS (space-separated).
pub fn parse_ip_list(value: &str) -> Result<Vec<IpWithPrefix>, AddrError> {
    value.split_whitespace().map(parse_ip).collect()
}

/// The resolver configuration for NAMESERVER and SEARCHDOMAIN, or None if neither is set.
pub fn resolv_conf(nameservers: &str, searchdomains: &str) -> Option<String> {
    if nameservers.trim().is_empty() && searchdomains.trim().is_empty() {
        return None;
    }
    let mut s = String::from("# written by ferry from NAMESERVER and SEARCHDOMAIN\n");
    if !searchdomains.trim().is_empty() {
        s.push_str(&format!(
            "search {}\n",
            searchdomains.split_whitespace().collect::<Vec<_>>().join(" ")
        ));
    }
    for n in nameservers.split_whitespace() {
        s.push_str(&format!("nameserver {n}\n"));
    }
    Some(s)
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum AddrError {
    #[error("invalid IP address {0:?}: expected an IPv4 or IPv6 address, optionally with /PREFIX")]
    BadIp(String),
    #[error("invalid hostname {0:?}: use dot-separated labels of letters, digits and '-' (1 to 63 characters each, 253 in all), not starting or ending with '-'")]
    BadHostname(String),
}

/// An address with an optional prefix length, as `--ipadd` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpWithPrefix {
    pub addr: IpAddr,
    pub prefix: Option<u8>,
}

impl std::fmt::Display for IpWithPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.prefix {
            Some(p) => write!(f, "{}/{p}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

pub fn parse_ip(s: &str) -> Result<IpWithPrefix, AddrError> {
    let bad = || AddrError::BadIp(s.to_string());
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = a.parse().map_err(|_| bad())?;
    let prefix = match p {
        None => None,
        Some(p) => {
            if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let n: u8 = p.parse().map_err(|_| bad())?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            if n > max {
                return Err(bad());
            }
            Some(n)
        }
    };
    if addr.is_unspecified() || addr.is_multicast() {
        return Err(bad());
    }
    Ok(IpWithPrefix { addr, prefix })
}

pub fn validate_hostname(h: &str) -> Result<(), AddrError> {
    let bad = || AddrError::BadHostname(h.to_string());
    if h.is_empty() || h.len() > 253 {
        return Err(bad());
    }
    for label in h.strip_suffix('.').unwrap_or(h).split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

/// The `ip` family flag and the host route (/32 or /128) of an address.
pub(crate) fn host_route(addr: &IpAddr) -> (&'static str, String) {
    match addr {
        IpAddr::V4(_) => ("-4", format!("{addr}/32")),
        IpAddr::V6(_) => ("-6", format!("{addr}/128")),
    }
}

/// After a checkpoint stopped the container: its links are gone with its network namespace,
/// but its addresses stay claimed, routed to a blackhole, with their proxy entries, so peers'
/// packets are dropped silently (they retransmit) instead of being refused until the restore.
pub fn suspend(state: &NetState) {
    for s in &state.ips {
        if let Ok(a) = parse_ip(s) {
            let (fam, route) = host_route(&a.addr);
            let _ = ip::host(&[fam, "route", "replace", "blackhole", &route]);
        }
    }
}

/// Stops everything a frozen container's kernel still sends (segments queued before the
/// freeze, ACKs) at the host sides of its links, so that what its peers saw last is what the
/// dump records (a TCP timestamp they saw later than the dump's would make them refuse the
/// restored copy's segments for a while): an iptables FORWARD rule on its routed link, and its
/// bridged interfaces' ports disabled in their bridges (which then pass nothing either way,
/// the link itself untouched).
pub fn mute(ctid: u32, state: &NetState) {
    let dev = venet_host_ifname(ctid);
    for family in [false, true] {
        forward_rule(family, "-I", &cutoff_rules(&dev)[0]);
    }
    for port in &state.netifs {
        let _ = ip::bridge(&["link", "set", "dev", port, "state", "0"]);
    }
}

/// The iptables FORWARD rules of [`mute`] (what the container sends) and [`close_gate`] (new
/// connections to it) on its routed link.
fn cutoff_rules(dev: &str) -> [Vec<&str>; 2] {
    [
        vec!["-i", dev, "-j", "DROP"],
        vec!["-o", dev, "-p", "tcp", "--syn", "-j", "DROP"],
    ]
}

/// Refuses new TCP connections to a running container on its routed link (its peers' SYNs are
/// dropped: they try again later), so that none is left half-made in its kernel when it is
/// frozen. Undone by [`unmute`].
pub fn close_gate(ctid: u32) {
    let dev = venet_host_ifname(ctid);
    for family in [false, true] {
        forward_rule(family, "-I", &cutoff_rules(&dev)[1]);
    }
}

/// Inserts (`-I`) or deletes (`-D`) a rule of the host's FORWARD chain, IPv4 or IPv6; true if
/// the command succeeded.
fn forward_rule(v6: bool, op: &str, rule: &[&str]) -> bool {
    std::process::Command::new(if v6 { "ip6tables" } else { "iptables" })
        .args(["-w", op, "FORWARD"])
        .args(rule)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Connections the kernel of a container holds that none of its processes has accepted yet:
/// half-made ones (SYN_RECV) and complete ones in a listener's queue, read from the TCP tables
/// of the network namespace of `pid`. A dump leaves them out (CRIU's in-flight connections),
/// and a client whose handshake completed then waits for an answer that never comes.
pub fn in_flight(pid: i32) -> usize {
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(format!("/proc/{pid}/net/{t}")).ok())
        .map(|table| in_flight_in(&table))
        .sum()
}

/// [`in_flight`] of one table (/proc/net/tcp's format: `st` is the 4th field, `tx:rx` queue the
/// 5th; for a listener `rx` is its accept queue).
fn in_flight_in(table: &str) -> usize {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (st, queues) = (f.get(3)?, f.get(4)?);
            let rx = usize::from_str_radix(queues.split(':').nth(1)?, 16).ok()?;
            match *st {
                "03" => Some(1),
                "0A" => Some(rx),
                _ => None,
            }
        })
        .sum()
}

/// Before a container is frozen for a dump: new connections refused ([`close_gate`]), then a
/// bounded wait for its processes to accept the ones already made (none is left half-made for
/// the dump to drop). Returns how many were still in flight at the end.
pub fn drain_in_flight(ctid: u32, pid: i32, within: std::time::Duration) -> usize {
    close_gate(ctid);
    let end = std::time::Instant::now() + within;
    loop {
        let n = in_flight(pid);
        if n == 0 || std::time::Instant::now() >= end {
            return n;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Undoes [`mute`] and [`close_gate`] (every copy of their rules; the ports of `netifs` forward
/// again).
pub fn unmute(ctid: u32, netifs: &[String]) {
    let dev = venet_host_ifname(ctid);
    for rule in cutoff_rules(&dev) {
        for family in [false, true] {
            for _ in 0..8 {
                if !forward_rule(family, "-D", &rule) {
                    break;
                }
            }
        }
    }
    for port in netifs {
        let _ = ip::bridge(&["link", "set", "dev", port, "state", "3"]);
    }
}

/// The host sides of a running container's links (its venet, its bridged interfaces).
pub fn host_links(ctid: u32, state: &NetState) -> Vec<String> {
    let mut v = state.netifs.clone();
    if !state.ips.is_empty() {
        v.push(venet_host_ifname(ctid));
    }
    v
}

/// Undoes a migration's cut-off of a running container: the host sides of its links up, its
/// addresses routed to it again (no longer to a blackhole), and announced.
pub fn unsuspend(ctid: u32, state: &NetState) {
    unmute(ctid, &state.netifs);
    for link in host_links(ctid, state) {
        let _ = ip::host(&["link", "set", &link, "up"]);
    }
    let host_if = venet_host_ifname(ctid);
    let mut addrs = Vec::new();
    for s in &state.ips {
        if let Ok(a) = parse_ip(s) {
            let (fam, route) = host_route(&a.addr);
            let _ = ip::host(&[fam, "route", "replace", &route, "dev", &host_if]);
            addrs.push(a);
        }
    }
    if let Some(u) = &state.uplink {
        let _ = announce(u, &addrs);
    }
}

/// After CRIU restored a container (with its links, whose host sides CRIU created in this
/// namespace): brings the host sides up, routes and proxies the addresses, joins bridges,
/// announces the addresses but those `stayed` names (claimed by this host through the same
/// uplink all along: a checkpoint restored where it was taken).
pub fn attach_restored(
    ctid: u32,
    addrs: &[IpWithPrefix],
    netifs: &[Netif],
    hn: &HostNet,
    stayed: impl Fn(&IpAddr) -> bool,
) -> Result<NetState, NetError> {
    let mut state = NetState::default();
    if !addrs.is_empty() {
        let host_if = venet_host_ifname(ctid);
        let uplink = hn.uplink()?;
        ip::antispoof()?;
        ip::sysctl(&format!("net/ipv4/conf/{host_if}/proxy_arp"), "1")?;
        ip::sysctl(&format!("net/ipv4/neigh/{host_if}/proxy_delay"), "0")?;
        ip::sysctl(&format!("net/ipv6/conf/{host_if}/accept_dad"), "0")?;
        ip::sysctl("net/ipv4/ip_forward", "1")?;
        ip::sysctl("net/ipv6/conf/all/forwarding", "1")?;
        proxy_on(&uplink)?;
        // One run of `ip` for the link, its IPv6 link-local address (where the link has IPv6)
        // and each address's route and proxy entry (`replace`: over the blackhole route a
        // checkpoint left).
        let mut cmds = vec![ip::words(&["link", "set", &host_if, "up"])];
        let v6 = std::fs::read_to_string(format!("/proc/sys/net/ipv6/conf/{host_if}/disable_ipv6"));
        if v6.is_ok_and(|v| v.trim() == "0") {
            cmds.push(ip::words(&["addr", "replace", "fe80::1/64", "dev", &host_if, "nodad"]));
        }
        for a in addrs {
            let addr = a.addr.to_string();
            let (_, route) = host_route(&a.addr);
            cmds.push(ip::words(&["route", "replace", &route, "dev", &host_if]));
            cmds.push(ip::words(&["neigh", "replace", "proxy", &addr, "dev", &uplink]));
            state.ips.push(a.to_string());
        }
        ip::batch(&cmds, false)?;
        state.uplink = Some(uplink.clone());
        // Neighbours learn the new place of the others. (Each announcement costs a packet
        // socket, whose closing waits for an RCU grace period: about 10 ms.)
        let moved: Vec<IpWithPrefix> = addrs.iter().filter(|a| !stayed(&a.addr)).cloned().collect();
        announce(&uplink, &moved)?;
    }
    for n in netifs {
        let bridge = if n.bridge.is_empty() {
            hn.bridge.clone().unwrap_or_default()
        } else {
            n.bridge.clone()
        };
        if !bridge.is_empty() && ip::link_exists(&bridge) {
            ip::host(&["link", "set", &n.host_ifname, "master", &bridge])?;
        }
        ip::host(&["link", "set", &n.host_ifname, "up"])?;
        state.netifs.push(n.host_ifname.clone());
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips() {
        assert_eq!(parse_ip("198.18.0.10").unwrap().to_string(), "198.18.0.10");
        assert_eq!(parse_ip("198.18.0.10/24").unwrap().prefix, Some(24));
        assert_eq!(parse_ip("2001:db8::1/64").unwrap().to_string(), "2001:db8::1/64");
        for bad in [
            "",
            "1.2.3",
            "1.2.3.4/33",
            "1.2.3.4/",
            "1.2.3.4/-1",
            "::1/129",
            "0.0.0.0",
            "224.0.0.1",
            "host",
            "1.2.3.4 ",
        ] {
            assert!(parse_ip(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn in_flight_counts_half_made_connections_and_accept_queues() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1B5F 00000000:0000 0A 00000000:00000002 00:00000000 00000000  1000        0 1 1 0 100 0 0 10 0
   1: 0A0012C6:1B5F 640012C6:A1B2 03 00000000:00000000 00:00000000 00000000  1000        0 0 1 0 100 0 0 10 0
   2: 0A0012C6:1B5F 640012C6:A1B4 01 00000000:00000040 00:00000000 00000000  1000        0 2 1 0 100 0 0 10 0
   3: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
";
        // Two waiting in the first listener's queue, one half made; an established
        // connection's unread bytes and an idle listener count for nothing.
        assert_eq!(in_flight_in(table), 3);
        assert_eq!(in_flight_in(table.lines().next().unwrap()), 0);
        assert_eq!(in_flight_in("garbage\n   0: x y 0A zz\n"), 0);
    }

    #[test]
    fn resolver_text() {
        assert_eq!(resolv_conf("", ""), None);
        let r = resolv_conf("198.18.0.53 2001:2::53", "example.test lab.test").unwrap();
        assert!(r.contains("search example.test lab.test\n"));
        assert!(r.contains("nameserver 198.18.0.53\nnameserver 2001:2::53\n"));
        assert_eq!(parse_ip_list(" 198.18.0.1  2001:2::1/64 ").unwrap().len(), 2);
        assert!(parse_ip_list("198.18.0.1 bogus").is_err());
    }

    #[test]
    fn hostnames() {
        for ok in ["ct101", "web-1.example.com", "a", "x.y."] {
            validate_hostname(ok).unwrap();
        }
        for bad in ["", "-a", "a-", "a..b", "a_b", "a b", &"x".repeat(64), "é"] {
            assert!(validate_hostname(bad).is_err(), "{bad:?}");
        }
    }
}
