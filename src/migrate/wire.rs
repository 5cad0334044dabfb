//! migrate-proto frames over a QUIC stream.

use std::time::Duration;

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

pub struct Wire {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    reader: FrameReader,
    buf: Vec<u8>,
    /// Bytes put on the wire so far.
    pub sent: u64,
}

impl Wire {
    pub fn new(send: quinn::SendStream, recv: quinn::RecvStream) -> Self {
        Self {
            send,
            recv,
            reader: FrameReader::new(),
            buf: vec![0; 1 << 20],
            sent: 0,
        }
    }

    pub async fn send(&mut self, m: &Message) -> Result<(), WireError> {
        let b = encode(m)?;
        self.sent += b.len() as u64;
        self.send.write_all(&b).await?;
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
