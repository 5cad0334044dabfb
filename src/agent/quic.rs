//! QUIC between agents: mutual TLS 1.3 where each side accepts the other only if its
//! certificate's fingerprint is pinned (trust.rs). A refused peer is logged and never gets a
//! stream: nothing it sends is read.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use thiserror::Error;

use super::trust::{fingerprint, Identity};

/// The ALPN of the migration protocol.
pub const ALPN: &[u8] = b"ferry-migrate";

#[derive(Debug, Error)]
pub enum QuicError {
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("QUIC configuration: {0}")]
    Config(String),
    #[error("binding {0}")]
    Bind(SocketAddr, #[source] std::io::Error),
    #[error("connecting to {0}")]
    Connect(SocketAddr, #[source] quinn::ConnectError),
    #[error("connection to {0}")]
    Connection(SocketAddr, #[source] quinn::ConnectionError),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn verify12(
    p: &CryptoProvider,
    m: &[u8],
    c: &CertificateDer<'_>,
    d: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls12_signature(m, c, d, &p.signature_verification_algorithms)
}

fn verify13(
    p: &CryptoProvider,
    m: &[u8],
    c: &CertificateDer<'_>,
    d: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(m, c, d, &p.signature_verification_algorithms)
}

/// Where a server finds the keys it accepts.
#[derive(Debug, Clone)]
pub enum Pins {
    /// A fixed list of fingerprints.
    Fixed(Vec<String>),
    /// The host's trust store, read at every handshake, so `trust add` and `trust remove`
    /// take effect at once.
    Store(crate::layout::HostLayout),
}

impl Pins {
    fn contains(&self, fp: &str) -> bool {
        match self {
            Pins::Fixed(v) => v.iter().any(|p| p == fp),
            Pins::Store(l) => super::trust::TrustStore::load(l).is_ok_and(|s| s.trusts(fp).is_some()),
        }
    }
}

/// Accepts clients whose certificate is pinned.
#[derive(Debug)]
struct PinnedClients {
    pinned: Pins,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for PinnedClients {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let fp = fingerprint(end_entity.as_ref());
        if self.pinned.contains(&fp) {
            Ok(ClientCertVerified::assertion())
        } else {
            tracing::warn!(fingerprint = %fp, "refused a peer whose key is not pinned (vzagentd trust add NAME ADDRESS {fp})");
            eprintln!("vzagentd: refused a peer whose key {fp} is not pinned");
            Err(rustls::Error::General(format!("peer key {fp} is not pinned")))
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify12(&self.provider, m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify13(&self.provider, m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Accepts a server whose certificate is the one pinned for it.
#[derive(Debug)]
struct PinnedServer {
    pinned: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = fingerprint(end_entity.as_ref());
        if fp == self.pinned {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the peer presented key {fp}, not the pinned {}",
                self.pinned
            )))
        }
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify12(&self.provider, m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify13(&self.provider, m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.stream_receive_window((64u32 << 20).into());
    t.receive_window((256u32 << 20).into());
    t.send_window(256 << 20);
    // A migration's bulk streams (protocol version 4): a peer opens no more than that.
    t.max_concurrent_uni_streams((migrate_proto::limits::MAX_STREAMS as u32).into());
    t.keep_alive_interval(Some(Duration::from_secs(2)));
    t.max_idle_timeout(Some(Duration::from_secs(15).try_into().expect("idle timeout")));
    Arc::new(t)
}

fn key(id: &Identity) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key_der.clone()))
}

/// Socket buffers of an agent's UDP socket. The kernel's default (about 200 KiB) drops
/// packets at bulk rates; 4 MiB was lossless for bulk data (CRATES.md) but dropped 13% of the
/// datagrams while a destination wrote a tree of many small files (its receive path waits for
/// the file work now and then); 32 MiB dropped none. As root the `FORCE` options set them past
/// `net.core.rmem_max`; elsewhere the plain options get what the limits allow.
const SOCKET_BUFFER: usize = 32 << 20;

/// A UDP socket for an endpoint, with large buffers.
fn udp_socket(addr: SocketAddr) -> Result<std::net::UdpSocket, QuicError> {
    use nix::sys::socket::{setsockopt, sockopt};
    let sock = std::net::UdpSocket::bind(addr).map_err(|e| QuicError::Bind(addr, e))?;
    if setsockopt(&sock, sockopt::RcvBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(&sock, sockopt::RcvBuf, &SOCKET_BUFFER);
    }
    if setsockopt(&sock, sockopt::SndBufForce, &SOCKET_BUFFER).is_err() {
        let _ = setsockopt(&sock, sockopt::SndBuf, &SOCKET_BUFFER);
    }
    Ok(sock)
}

fn endpoint(addr: SocketAddr, server: Option<quinn::ServerConfig>) -> Result<quinn::Endpoint, QuicError> {
    let runtime = quinn::default_runtime()
        .ok_or_else(|| QuicError::Config("no async runtime for QUIC (not inside tokio)".into()))?;
    quinn::Endpoint::new(quinn::EndpointConfig::default(), server, udp_socket(addr)?, runtime)
        .map_err(|e| QuicError::Bind(addr, e))
}

/// A server endpoint that accepts the pinned peers.
pub fn server(id: &Identity, pinned: Pins, addr: SocketAddr) -> Result<quinn::Endpoint, QuicError> {
    endpoint(addr, Some(server_config(id, pinned)?))
}

/// The server configuration for a set of pinned peers.
pub fn server_config(id: &Identity, pinned: Pins) -> Result<quinn::ServerConfig, QuicError> {
    let p = provider();
    let mut tls = rustls::ServerConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(PinnedClients { pinned, provider: p }))
        .with_single_cert(vec![CertificateDer::from(id.cert_der.clone())], key(id))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let q = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| QuicError::Config(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(q));
    cfg.transport_config(transport());
    Ok(cfg)
}

/// Connects to a peer whose key is `pinned`, presenting this host's identity.
pub async fn connect(id: &Identity, pinned: &str, addr: SocketAddr) -> Result<quinn::Connection, QuicError> {
    let p = provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServer {
            pinned: pinned.to_string(),
            provider: p,
        }))
        .with_client_auth_cert(vec![CertificateDer::from(id.cert_der.clone())], key(id))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let q = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(|e| QuicError::Config(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(q));
    cfg.transport_config(transport());
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let mut ep = endpoint(bind, None)?;
    ep.set_default_client_config(cfg);
    let conn = ep
        .connect(addr, "ferry")
        .map_err(|e| QuicError::Connect(addr, e))?
        .await
        .map_err(|e| QuicError::Connection(addr, e))?;
    Ok(conn)
}

/// The fingerprint of the certificate a connected peer presented.
pub fn peer_fingerprint(conn: &quinn::Connection) -> Option<String> {
    let any = conn.peer_identity()?;
    let certs = any.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    certs.first().map(|c| fingerprint(c.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::HostLayout;

    #[tokio::test]
    async fn pinned_peers_talk_and_unpinned_ones_are_refused() {
        let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let ids: Vec<Identity> = dirs
            .iter()
            .enumerate()
            .map(|(i, d)| Identity::load_or_create(&HostLayout::new(d.path()), &format!("h{i}")).unwrap())
            .collect();
        let (srv, trusted, stranger) = (&ids[0], &ids[1], &ids[2]);
        let ep = server(
            srv,
            Pins::Fixed(vec![trusted.fingerprint.clone()]),
            "127.0.0.1:0".parse().unwrap(),
        )
        .unwrap();
        let addr = ep.local_addr().unwrap();
        let accepted = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(inc) = ep.accept().await {
                let Ok(conn) = inc.await else { continue };
                if let Ok((mut s, mut r)) = conn.accept_bi().await {
                    let msg = r.read_to_end(1024).await.unwrap();
                    got.push(msg.clone());
                    s.write_all(b"pong").await.unwrap();
                    s.finish().unwrap();
                    let _ = s.stopped().await;
                    return got;
                }
            }
            got
        });
        // An unpinned peer: the handshake (or at the latest its first stream) fails.
        let refused = async {
            let c = connect(stranger, &srv.fingerprint, addr).await.ok()?;
            let (mut s, mut r) = c.open_bi().await.ok()?;
            s.write_all(b"ping from a stranger").await.ok()?;
            s.finish().ok()?;
            r.read_to_end(1024).await.ok()
        };
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(20), refused).await.unwrap(),
            None
        );
        // A client that pins the wrong server key refuses the server.
        assert!(connect(trusted, &stranger.fingerprint, addr).await.is_err());
        let c = connect(trusted, &srv.fingerprint, addr).await.unwrap();
        let (mut s, mut r) = c.open_bi().await.unwrap();
        s.write_all(b"ping").await.unwrap();
        s.finish().unwrap();
        assert_eq!(r.read_to_end(1024).await.unwrap(), b"pong");
        let got = accepted.await.unwrap();
        assert_eq!(
            got,
            vec![b"ping".to_vec()],
            "the server read something from a peer it did not trust"
        );
    }
}
