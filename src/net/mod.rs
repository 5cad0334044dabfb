//! Container networking. For now: validation of addresses and host names as written in
//! configuration files and on the command line.

use std::net::IpAddr;

use thiserror::Error;

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
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ips() {
        assert_eq!(parse_ip("198.18.0.10").unwrap().to_string(), "198.18.0.10");
        assert_eq!(parse_ip("198.18.0.10/24").unwrap().prefix, Some(24));
        assert_eq!(
            parse_ip("2001:db8::1/64").unwrap().to_string(),
            "2001:db8::1/64"
        );
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
    fn hostnames() {
        for ok in ["ct101", "web-1.example.com", "a", "x.y."] {
            validate_hostname(ok).unwrap();
        }
        for bad in ["", "-a", "a-", "a..b", "a_b", "a b", &"x".repeat(64), "é"] {
            assert!(validate_hostname(bad).is_err(), "{bad:?}");
        }
    }
}
