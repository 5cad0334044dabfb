//! migrate-proto frames over a QUIC stream.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use migrate_proto::frame::{encode, FrameReader};
use migrate_proto::msg::Message;
use migrate_proto::DecodeError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum WireError {
    #[error("the peer sent something ferry refuses")]
    Decode(#[from] DecodeError),
    #[error("sending to the peer")]
    Write(#[from] quinn::WriteError),
    #[error("receiving from the peer")]
    Read(#[from] quinn::ReadError),
    #[error("the peer closed the connection")]
    Closed,
    #[error("no word from the peer for {0:?}")]
    Timeout(Duration),
}

/// Parses a bandwidth: bytes per second with an optional binary K, M or G suffix ("50M"), or
/// bits per second with a decimal kbit, mbit or gbit suffix as tc writes them ("100mbit").
/// 0 means no limit.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let bad = || format!("invalid rate {s:?}: bytes per second such as 50M, or bits per second such as 100mbit");
    let (num, mult, bits) = if let Some(n) = t.strip_suffix("kbit") {
        (n, 1_000u64, true)
    } else if let Some(n) = t.strip_suffix("mbit") {
        (n, 1_000_000, true)
    } else if let Some(n) = t.strip_suffix("gbit") {
        (n, 1_000_000_000, true)
    } else if let Some(n) = t.strip_suffix("bit") {
        (n, 1, true)
    } else if let Some(n) = t.strip_suffix('k') {
        (n, 1 << 10, false)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 1 << 20, false)
    } else if let Some(n) = t.strip_suffix('g') {
        (n, 1 << 30, false)
    } else {
        (t.as_str(), 1, false)
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let v = num
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(bad)?;
    Ok(if bits { v / 8 } else { v })
}

/// Where a migration's bandwidth limit comes from: a fixed rate, or a file holding the rate
/// (bytes per second, decimal), re-read every quarter second, through which `vzevacuate`
/// shares one budget among the migrations it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateSource {
    Fixed(u64),
    File(PathBuf),
}

/// A token bucket in front of the wire: sending waits while the bucket is empty. The bucket
/// holds a tenth of a second of traffic (at least 64 KiB), so short bursts pass at once.
pub struct Throttle {
    source: RateSource,
    rate: u64,
    tokens: f64,
    last: Instant,
    read_at: Option<Instant>,
}

impl Throttle {
    pub fn new(source: RateSource) -> Self {
        let rate = match &source {
            RateSource::Fixed(r) => *r,
            RateSource::File(_) => 0,
        };
        Self {
            source,
            rate,
            tokens: 0.0,
            last: Instant::now(),
            read_at: None,
        }
    }

    /// The rate in force now, in bytes per second (0: none).
    pub fn rate(&mut self) -> u64 {
        if let RateSource::File(p) = &self.source {
            if self.read_at.is_none_or(|t| t.elapsed() >= Duration::from_millis(250)) {
                self.read_at = Some(Instant::now());
                if let Some(r) = std::fs::read_to_string(p).ok().and_then(|t| t.trim().parse().ok()) {
                    self.rate = r;
                }
            }
        }
        self.rate
    }

    /// How long `n` more bytes must wait.
    fn take(&mut self, n: usize) -> Duration {
        let rate = self.rate();
        let now = Instant::now();
        if rate == 0 {
            self.last = now;
            self.tokens = 0.0;
            return Duration::ZERO;
        }
        let burst = (rate as f64 / 10.0).max(65536.0);
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * rate as f64).min(burst);
        self.last = now;
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate as f64)
        }
    }
}

pub struct Wire {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    reader: FrameReader,
    buf: Vec<u8>,
    throttle: Option<Throttle>,
    /// Bytes put on the wire so far.
    pub sent: u64,
    /// The same, for a progress display on another thread.
    shared: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

impl Wire {
    pub fn new(send: quinn::SendStream, recv: quinn::RecvStream) -> Self {
        Self {
            send,
            recv,
            reader: FrameReader::new(),
            buf: vec![0; 1 << 20],
            throttle: None,
            sent: 0,
            shared: None,
        }
    }

    /// Also counts what this wire sends into `counter`.
    pub fn counted(mut self, counter: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>) -> Self {
        self.shared = counter;
        self
    }

    /// Limits what this wire sends to a rate.
    pub fn throttled(mut self, source: RateSource) -> Self {
        self.throttle = Some(Throttle::new(source));
        self
    }

    pub async fn send(&mut self, m: &Message) -> Result<(), WireError> {
        let b = encode(m)?;
        self.sent += b.len() as u64;
        if let Some(t) = self.throttle.as_mut() {
            let wait = t.take(b.len());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        self.send.write_all(&b).await?;
        if let Some(c) = &self.shared {
            c.fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// The next message; Err(Closed) at the end of the stream.
    pub async fn recv(&mut self, timeout: Duration) -> Result<Message, WireError> {
        loop {
            if let Some(m) = self.reader.next()? {
                return Ok(m);
            }
            let n = match tokio::time::timeout(timeout, self.recv.read(&mut self.buf)).await {
                Err(_) => return Err(WireError::Timeout(timeout)),
                Ok(r) => r?,
            };
            match n {
                Some(n) => self.reader.push(&self.buf[..n]),
                None => return Err(WireError::Closed),
            }
        }
    }

    pub async fn finish(&mut self) {
        let _ = self.send.finish();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.send.stopped()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_in_bytes_and_bits() {
        assert_eq!(parse_rate("0"), Ok(0));
        assert_eq!(parse_rate("50M"), Ok(50 << 20));
        assert_eq!(parse_rate("512k"), Ok(512 << 10));
        assert_eq!(parse_rate("100mbit"), Ok(12_500_000));
        assert_eq!(parse_rate("1Gbit"), Ok(125_000_000));
        for bad in ["", "-1", "1.5M", "10 MB", "fast", "99999999999999999999G"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_bucket_paces_to_the_rate_and_follows_its_file() {
        let mut t = Throttle::new(RateSource::Fixed(1 << 20));
        // An empty bucket: a mebibyte waits about a second at 1 MiB/s.
        let w = t.take(1 << 20);
        assert!(
            w > Duration::from_millis(900) && w <= Duration::from_millis(1000),
            "{w:?}"
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("rate");
        let mut t = Throttle::new(RateSource::File(f.clone()));
        assert_eq!(t.take(10 << 20), Duration::ZERO, "no file: no limit");
        std::fs::write(&f, "2097152\n").unwrap();
        t.read_at = None;
        assert_eq!(t.rate(), 2 << 20);
        let w = t.take(4 << 20);
        assert!(
            w > Duration::from_millis(1900) && w <= Duration::from_millis(2000),
            "{w:?}"
        );
    }
}
