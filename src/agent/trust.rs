//! Agent identity and trust, in the manner of ssh's known_hosts.
//!
//! Each host has a key pair and a self-signed certificate, generated at first use under
//! `etc/vz/agent/` (key 0600). Its fingerprint is `b3:` and the BLAKE3 hash of the certificate
//! (hex). Peers are pinned in `etc/vz/agent/peers`, one `NAME ADDRESS FINGERPRINT` per line: a
//! peer is trusted if and only if its certificate's fingerprint is pinned there.

use std::fs;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::layout::HostLayout;

/// The agents' default UDP port.
pub const DEFAULT_PORT: u16 = 7447;

#[derive(Debug, Error)]
pub enum TrustError {
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("generating this host's key pair failed: {0}")]
    KeyGen(String),
    #[error("invalid peer name {0:?}: letters, digits, '.', '-' and '_'")]
    BadName(String),
    #[error("invalid peer address {0:?}: an IP address with an optional :PORT (default {DEFAULT_PORT})")]
    BadAddress(String),
    #[error(
        "invalid fingerprint {0:?}: expected b3: and 64 hex digits, as `vzagentd fingerprint` prints it on the peer"
    )]
    BadFingerprint(String),
    #[error("{path}:{line}: malformed peer line; expected NAME ADDRESS FINGERPRINT")]
    Malformed { path: PathBuf, line: usize },
    #[error("a peer named {0} is already pinned; remove it first")]
    Duplicate(String),
    #[error("no peer named {0} is pinned (vzagentd trust list)")]
    NoSuchPeer(String),
}

/// A host's own identity.
#[derive(Clone)]
pub struct Identity {
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
    pub fingerprint: String,
}

pub fn agent_dir(layout: &HostLayout) -> PathBuf {
    layout.resolve("/etc/vz/agent")
}

/// The fingerprint of a certificate (DER).
pub fn fingerprint(cert_der: &[u8]) -> String {
    format!("b3:{}", blake3::hash(cert_der).to_hex())
}

pub fn valid_fingerprint(s: &str) -> bool {
    s.strip_prefix("b3:")
        .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> TrustError {
    let path = path.to_path_buf();
    move |source| TrustError::Io { what, path, source }
}

impl Identity {
    /// Loads this host's identity, generating it on first use.
    pub fn load_or_create(layout: &HostLayout, name: &str) -> Result<Self, TrustError> {
        let dir = agent_dir(layout);
        let (cert_p, key_p) = (dir.join("cert.der"), dir.join("key.der"));
        if cert_p.exists() && key_p.exists() {
            let cert_der = fs::read(&cert_p).map_err(io_err("reading", &cert_p))?;
            let key_der = fs::read(&key_p).map_err(io_err("reading", &key_p))?;
            return Ok(Self {
                fingerprint: fingerprint(&cert_der),
                cert_der,
                key_der,
            });
        }
        fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        let ck = rcgen::generate_simple_self_signed(vec![format!("{name}.ferry")])
            .map_err(|e| TrustError::KeyGen(e.to_string()))?;
        let cert_der = ck.cert.der().to_vec();
        let key_der = ck.signing_key.serialize_der();
        crate::fsutil::write_atomic(&key_p, &key_der, 0o600).map_err(io_err("writing", &key_p))?;
        crate::fsutil::write_atomic(&cert_p, &cert_der, 0o644).map_err(io_err("writing", &cert_p))?;
        Ok(Self {
            fingerprint: fingerprint(&cert_der),
            cert_der,
            key_der,
        })
    }
}

/// A pinned peer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Peer {
    pub name: String,
    pub address: SocketAddr,
    pub fingerprint: String,
}

pub fn parse_address(s: &str) -> Result<SocketAddr, TrustError> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, DEFAULT_PORT))
        .map_err(|_| TrustError::BadAddress(s.to_string()))
}

/// The pinned peers of a host.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    pub peers: Vec<Peer>,
}

impl TrustStore {
    pub fn path(layout: &HostLayout) -> PathBuf {
        agent_dir(layout).join("peers")
    }

    pub fn load(layout: &HostLayout) -> Result<Self, TrustError> {
        let path = Self::path(layout);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(io_err("reading", &path)(e)),
        };
        Self::parse(&text, &path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, TrustError> {
        let mut peers = Vec::new();
        for (i, l) in text.lines().enumerate() {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let f: Vec<&str> = l.split_whitespace().collect();
            let bad = || TrustError::Malformed {
                path: path.to_path_buf(),
                line: i + 1,
            };
            if f.len() != 3 || !valid_fingerprint(f[2]) {
                return Err(bad());
            }
            peers.push(Peer {
                name: f[0].to_string(),
                address: parse_address(f[1]).map_err(|_| bad())?,
                fingerprint: f[2].to_string(),
            });
        }
        Ok(Self { peers })
    }

    pub fn save(&self, layout: &HostLayout) -> Result<(), TrustError> {
        let path = Self::path(layout);
        fs::create_dir_all(agent_dir(layout)).map_err(io_err("creating", &agent_dir(layout)))?;
        let mut text = String::from("# ferry agent: pinned peers (vzagentd trust add NAME ADDRESS FINGERPRINT)\n");
        for p in &self.peers {
            text.push_str(&format!("{} {} {}\n", p.name, p.address, p.fingerprint));
        }
        crate::fsutil::write_atomic(&path, text.as_bytes(), 0o600).map_err(io_err("writing", &path))
    }

    pub fn add(&mut self, name: &str, address: &str, fp: &str) -> Result<(), TrustError> {
        if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(TrustError::BadName(name.to_string()));
        }
        let address = parse_address(address)?;
        if !valid_fingerprint(fp) {
            return Err(TrustError::BadFingerprint(fp.to_string()));
        }
        if self.peers.iter().any(|p| p.name == name) {
            return Err(TrustError::Duplicate(name.to_string()));
        }
        self.peers.push(Peer {
            name: name.to_string(),
            address,
            fingerprint: fp.to_string(),
        });
        Ok(())
    }

    pub fn remove(&mut self, name: &str) -> Result<(), TrustError> {
        let before = self.peers.len();
        self.peers.retain(|p| p.name != name);
        if self.peers.len() == before {
            return Err(TrustError::NoSuchPeer(name.to_string()));
        }
        Ok(())
    }

    pub fn trusts(&self, fp: &str) -> Option<&Peer> {
        self.peers.iter().find(|p| p.fingerprint == fp)
    }

    /// A peer by name or address.
    pub fn find(&self, dest: &str) -> Option<&Peer> {
        self.peers
            .iter()
            .find(|p| p.name == dest || p.address.to_string() == dest || p.address.ip().to_string() == dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_and_stable() {
        let d = tempfile::tempdir().unwrap();
        let l = HostLayout::new(d.path());
        let a = Identity::load_or_create(&l, "hostA").unwrap();
        let b = Identity::load_or_create(&l, "hostA").unwrap();
        assert_eq!(a.fingerprint, b.fingerprint);
        assert!(valid_fingerprint(&a.fingerprint), "{}", a.fingerprint);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(agent_dir(&l).join("key.der"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }

    #[test]
    fn store_round_trip_and_refusals() {
        let d = tempfile::tempdir().unwrap();
        let l = HostLayout::new(d.path());
        let fp = format!("b3:{}", "ab".repeat(32));
        let mut s = TrustStore::load(&l).unwrap();
        s.add("hostB", "198.18.0.2", &fp).unwrap();
        assert!(matches!(
            s.add("hostB", "198.18.0.3", &fp),
            Err(TrustError::Duplicate(_))
        ));
        assert!(matches!(
            s.add("bad name", "198.18.0.3", &fp),
            Err(TrustError::BadName(_))
        ));
        assert!(matches!(s.add("c", "nowhere", &fp), Err(TrustError::BadAddress(_))));
        assert!(matches!(
            s.add("c", "198.18.0.3", "b3:zz"),
            Err(TrustError::BadFingerprint(_))
        ));
        s.save(&l).unwrap();
        let back = TrustStore::load(&l).unwrap();
        assert_eq!(back.peers, s.peers);
        assert_eq!(back.peers[0].address.port(), DEFAULT_PORT);
        assert_eq!(back.find("hostB").unwrap().name, "hostB");
        assert_eq!(back.find("198.18.0.2").unwrap().name, "hostB");
        assert!(back.trusts(&fp).is_some());
        assert!(back.trusts(&format!("b3:{}", "cd".repeat(32))).is_none());
        let mut back = back;
        back.remove("hostB").unwrap();
        assert!(matches!(back.remove("hostB"), Err(TrustError::NoSuchPeer(_))));
        assert!(matches!(
            TrustStore::parse("hostB 198.18.0.2\n", Path::new("p")),
            Err(TrustError::Malformed { line: 1, .. })
        ));
    }
}
