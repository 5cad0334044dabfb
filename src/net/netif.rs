//! Bridged veth interfaces (`--netif_add`), stored in the config as OpenVZ's `NETIF` value:
//! `ifname=eth0,mac=00:18:51:..,host_ifname=veth101.0,host_mac=00:18:51:..,bridge=br0;...`.
//! MAC addresses are generated once and kept in the config, so the container keeps its link
//! identity across restarts and migrations.

use std::fmt;

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NetifError {
    #[error("invalid interface name {0:?}: 1 to 15 characters, letters, digits, '.', '-', '_'")]
    BadIfname(String),
    #[error("invalid MAC address {0:?}: expected six hex pairs separated by ':', unicast")]
    BadMac(String),
    #[error("malformed NETIF entry {0:?}: expected key=value pairs (ifname, mac, host_ifname, host_mac, bridge)")]
    Malformed(String),
    #[error("--netif_add takes IFNAME[,MAC,HOST_IFNAME,HOST_MAC,BRIDGE]; got {0:?}")]
    BadSpec(String),
}

/// An Ethernet address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub fn parse(s: &str) -> Result<Self, NetifError> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(NetifError::BadMac(s.into()));
        }
        let mut m = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            if p.len() != 2 {
                return Err(NetifError::BadMac(s.into()));
            }
            m[i] = u8::from_str_radix(p, 16).map_err(|_| NetifError::BadMac(s.into()))?;
        }
        if m[0] & 1 == 1 {
            return Err(NetifError::BadMac(s.into()));
        }
        Ok(Mac(m))
    }

    /// A new address in OpenVZ's range (00:18:51, as vzctl generated them), random below it.
    pub fn generate() -> Self {
        let mut r = [0u8; 3];
        if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
            let _ = std::io::Read::read_exact(&mut f, &mut r);
        }
        Mac([0x00, 0x18, 0x51, r[0], r[1], r[2]])
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

pub fn valid_ifname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 15
        && s != "."
        && s != ".."
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// One bridged veth of a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netif {
    pub ifname: String,
    pub mac: Mac,
    pub host_ifname: String,
    pub host_mac: Mac,
    /// Empty: the host's default bridge (BRIDGE in vz.conf).
    pub bridge: String,
}

impl Netif {
    /// From `--netif_add IFNAME[,MAC,HOST_IFNAME,HOST_MAC,BRIDGE]`; missing parts are generated.
    pub fn from_spec(spec: &str, ctid: u32, index: usize) -> Result<Self, NetifError> {
        let parts: Vec<&str> = spec.split(',').collect();
        if parts.len() > 5 || parts[0].is_empty() {
            return Err(NetifError::BadSpec(spec.into()));
        }
        let get = |i: usize| parts.get(i).copied().filter(|s| !s.is_empty());
        let ifname = parts[0].to_string();
        if !valid_ifname(&ifname) {
            return Err(NetifError::BadIfname(ifname));
        }
        let mac = get(1).map(Mac::parse).transpose()?.unwrap_or_else(Mac::generate);
        let host_ifname = match get(2) {
            Some(h) => h.to_string(),
            None => {
                let n = format!("veth{ctid}.{index}");
                if n.len() <= 15 {
                    n
                } else {
                    format!("v{ctid}.{index}")
                }
            }
        };
        if !valid_ifname(&host_ifname) {
            return Err(NetifError::BadIfname(host_ifname));
        }
        let host_mac = get(3).map(Mac::parse).transpose()?.unwrap_or_else(Mac::generate);
        let bridge = get(4).unwrap_or("").to_string();
        if !bridge.is_empty() && !valid_ifname(&bridge) {
            return Err(NetifError::BadIfname(bridge));
        }
        Ok(Self {
            ifname,
            mac,
            host_ifname,
            host_mac,
            bridge,
        })
    }
}

impl fmt::Display for Netif {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ifname={},mac={},host_ifname={},host_mac={}",
            self.ifname, self.mac, self.host_ifname, self.host_mac
        )?;
        if !self.bridge.is_empty() {
            write!(f, ",bridge={}", self.bridge)?;
        }
        Ok(())
    }
}

/// Parses a NETIF value.
pub fn parse_netif(value: &str) -> Result<Vec<Netif>, NetifError> {
    let mut out = Vec::new();
    for entry in value.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let (mut ifname, mut mac, mut host_ifname, mut host_mac, mut bridge) = (None, None, None, None, String::new());
        for kv in entry.split(',') {
            let (k, v) = kv.split_once('=').ok_or_else(|| NetifError::Malformed(entry.into()))?;
            match k.trim() {
                "ifname" => ifname = Some(v.to_string()),
                "mac" => mac = Some(Mac::parse(v)?),
                "host_ifname" => host_ifname = Some(v.to_string()),
                "host_mac" => host_mac = Some(Mac::parse(v)?),
                "bridge" => bridge = v.to_string(),
                _ => return Err(NetifError::Malformed(entry.into())),
            }
        }
        let (Some(ifname), Some(mac), Some(host_ifname), Some(host_mac)) = (ifname, mac, host_ifname, host_mac) else {
            return Err(NetifError::Malformed(entry.into()));
        };
        for n in [&ifname, &host_ifname] {
            if !valid_ifname(n) {
                return Err(NetifError::BadIfname(n.clone()));
            }
        }
        out.push(Netif {
            ifname,
            mac,
            host_ifname,
            host_mac,
            bridge,
        });
    }
    Ok(out)
}

pub fn format_netif(list: &[Netif]) -> String {
    list.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_fills_in_and_round_trips() {
        let n = Netif::from_spec("eth0", 101, 0).unwrap();
        assert_eq!(n.host_ifname, "veth101.0");
        assert_eq!(&n.mac.0[..3], &[0x00, 0x18, 0x51]);
        assert_ne!(n.mac, n.host_mac);
        let n2 = Netif::from_spec("eth1,00:18:51:AA:BB:CC,vh1,00:18:51:00:00:01,br1", 2147483647, 1).unwrap();
        assert_eq!(n2.mac.to_string(), "00:18:51:AA:BB:CC");
        assert_eq!(n2.bridge, "br1");
        let long = Netif::from_spec("eth0", 2147483647, 3).unwrap();
        assert_eq!(long.host_ifname, "v2147483647.3");
        let text = format_netif(&[n.clone(), n2.clone()]);
        assert_eq!(parse_netif(&text).unwrap(), vec![n, n2]);
    }

    #[test]
    fn bad_specs() {
        for bad in [
            "",
            "eth0,zz:00:00:00:00:00",
            "this-name-is-too-long",
            "eth0,01:00:00:00:00:00",
            "eth0,,,,,extra",
            "a/b",
        ] {
            assert!(Netif::from_spec(bad, 101, 0).is_err(), "{bad:?}");
        }
        for bad in [
            "ifname=eth0",
            "ifname=eth0,mac=00:18:51:00:00:01,host_ifname=v,host_mac=00:18:51:00:00:02,color=red",
            "garbage",
        ] {
            assert!(parse_netif(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_netif("").unwrap(), vec![]);
    }
}
