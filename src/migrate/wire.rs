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
    recv: Frames,
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
            recv: Frames::new(recv),
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

    /// A message as a frame, counted and paced: the bandwidth limit covers every stream.
    async fn frame(&mut self, m: &Message) -> Result<Vec<u8>, WireError> {
        let b = encode(m)?;
        self.sent += b.len() as u64;
        if let Some(t) = self.throttle.as_mut() {
            let wait = t.take(b.len());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        Ok(b)
    }

    pub async fn send(&mut self, m: &Message) -> Result<(), WireError> {
        let b = self.frame(m).await?;
        self.send.write_all(&b).await?;
        if let Some(c) = &self.shared {
            c.fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// The next message; Err(Closed) at the end of the stream, Err(Timeout) when no byte came
    /// for `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> Result<Message, WireError> {
        self.recv.next_within(Some(timeout)).await?.ok_or(WireError::Closed)
    }

    pub async fn finish(&mut self) {
        let _ = self.send.finish();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.send.stopped()).await;
    }
}

/// Frames arriving on a stream: a control stream's receiving side, or a bulk stream (the
/// destination's side of version 4).
pub struct Frames {
    recv: quinn::RecvStream,
    reader: FrameReader,
    buf: Vec<u8>,
}

impl Frames {
    pub fn new(recv: quinn::RecvStream) -> Self {
        Self {
            recv,
            reader: FrameReader::new(),
            buf: vec![0; 1 << 20],
        }
    }

    /// The next message; None at the end of the stream.
    pub async fn next(&mut self) -> Result<Option<Message>, WireError> {
        self.next_within(None).await
    }

    /// The next message; None at the end of the stream (Err(Closed) if it ends inside a
    /// frame), Err(Timeout) when a read waits longer than `timeout`.
    async fn next_within(&mut self, timeout: Option<Duration>) -> Result<Option<Message>, WireError> {
        loop {
            if let Some(m) = self.reader.next()? {
                return Ok(Some(m));
            }
            let read = self.recv.read(&mut self.buf);
            let n = match timeout {
                Some(t) => tokio::time::timeout(t, read)
                    .await
                    .map_err(|_| WireError::Timeout(t))??,
                None => read.await?,
            };
            match n {
                Some(n) => self.reader.push(&self.buf[..n]),
                None if self.reader.is_empty() => return Ok(None),
                None => return Err(WireError::Closed),
            }
        }
    }
}

/// Where messages go: a file pass sends through this, on the control stream (versions before 4,
/// and `vzbench`) or on the file passes' bulk stream.
pub trait Outbox {
    fn put(&mut self, m: &Message) -> impl std::future::Future<Output = Result<(), WireError>>;
    /// Bytes put on the wire so far, all streams together.
    fn sent(&self) -> u64;
}

impl Outbox for Wire {
    async fn put(&mut self, m: &Message) -> Result<(), WireError> {
        self.send(m).await
    }
    fn sent(&self) -> u64 {
        self.sent
    }
}

/// Which stream a message of the source travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Control,
    /// The file passes (version 4: bulk stream 0).
    Files,
    /// Memory and images (version 4: the other bulk streams; the same key, the same stream).
    Memory(u64),
}

/// Frames queued for one bulk stream.
const BULK_QUEUE: usize = 4;

/// One bulk stream: frames queued to a task that writes them, so a stream the peer is slow to
/// read holds back only what goes on it.
struct Bulk {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
    /// Taken when its outcome is read.
    task: Option<tokio::task::JoinHandle<Result<(), WireError>>>,
}

/// A migration's connection as its source uses it: the control stream (everything the state
/// machines say, and before version 4 everything else too) and, from version 4 on, bulk streams
/// (migrate_proto::streams): stream 0 for the file passes, the others for memory and images.
/// Before each control message that follows bulk frames it sends `Flush`, so the destination
/// handles that message only after the data it ends.
pub struct Link {
    pub control: Wire,
    conn: Option<quinn::Connection>,
    bulk: Vec<Bulk>,
    out: Option<migrate_proto::streams::Outgoing>,
}

impl Link {
    pub fn new(conn: Option<quinn::Connection>, control: Wire) -> Self {
        Self {
            control,
            conn,
            bulk: Vec::new(),
            out: None,
        }
    }

    /// Bulk streams in use?
    pub fn streams(&self) -> bool {
        self.out.is_some()
    }

    /// Version 4 was negotiated: opens `n` bulk streams (at most 8), each named by its first
    /// frame, for everything but control from now on.
    pub async fn use_streams(&mut self, n: usize) -> Result<(), WireError> {
        let Some(conn) = self.conn.clone() else {
            return Ok(());
        };
        let n = n.clamp(1, migrate_proto::limits::MAX_STREAMS);
        for index in 0..n {
            let mut send = conn
                .open_uni()
                .await
                .map_err(|e| WireError::Write(quinn::WriteError::ConnectionLost(e)))?;
            let shared = self.control.shared.clone();
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(BULK_QUEUE);
            let name = encode(&Message::BulkStream { index: index as u32 })?;
            let task = tokio::spawn(async move {
                send.write_all(&name).await?;
                while let Some(b) = rx.recv().await {
                    send.write_all(&b).await?;
                    if let Some(c) = &shared {
                        c.fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                let _ = send.finish();
                let _ = tokio::time::timeout(Duration::from_secs(5), send.stopped()).await;
                Ok(())
            });
            self.bulk.push(Bulk { tx, task: Some(task) });
        }
        self.out = Some(migrate_proto::streams::Outgoing::new(n));
        Ok(())
    }

    /// A control message (after a `Flush` if bulk frames went out since the last one).
    pub async fn send(&mut self, m: &Message) -> Result<(), WireError> {
        if let Some(f) = self.out.as_mut().and_then(|o| o.flush()) {
            self.control.send(&f).await?;
        }
        self.control.send(m).await
    }

    /// A message on its lane: control, or a bulk stream when they are in use.
    pub async fn send_on(&mut self, lane: Lane, m: &Message) -> Result<(), WireError> {
        let stream = match (&self.out, lane) {
            (None, _) | (_, Lane::Control) => return self.send(m).await,
            (Some(_), Lane::Files) => migrate_proto::streams::FILES,
            (Some(o), Lane::Memory(key)) => o.memory_stream(key),
        };
        let b = self.control.frame(m).await?;
        if let Some(o) = self.out.as_mut() {
            o.count(stream);
        }
        if self.bulk[stream].tx.send(b).await.is_err() {
            // The stream's task ended: its error says why (the peer stopped reading it).
            return Err(self.bulk_error(stream).await);
        }
        Ok(())
    }

    async fn bulk_error(&mut self, stream: usize) -> WireError {
        let Some(task) = self.bulk[stream].task.take() else {
            return WireError::Closed;
        };
        match tokio::time::timeout(Duration::from_secs(1), task).await {
            Ok(Ok(Err(e))) => e,
            _ => WireError::Closed,
        }
    }

    /// The next control message.
    pub async fn recv(&mut self, timeout: Duration) -> Result<Message, WireError> {
        self.control.recv(timeout).await
    }

    pub fn sent(&self) -> u64 {
        self.control.sent
    }

    /// Ends every stream once what was queued has gone.
    pub async fn finish(&mut self) {
        for b in self.bulk.drain(..) {
            drop(b.tx);
            if let Some(t) = b.task {
                let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
            }
        }
        self.control.finish().await;
    }

    /// A file pass's outbox: the file stream (or control).
    pub fn files(&mut self) -> LaneOf<'_> {
        LaneOf {
            link: self,
            lane: Lane::Files,
        }
    }
}

/// One lane of a [`Link`] as an [`Outbox`].
pub struct LaneOf<'a> {
    link: &'a mut Link,
    lane: Lane,
}

impl Outbox for LaneOf<'_> {
    async fn put(&mut self, m: &Message) -> Result<(), WireError> {
        self.link.send_on(self.lane, m).await
    }
    fn sent(&self) -> u64 {
        self.link.sent()
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
