//! Frames: `kind: u16 | len: u32 | crc32: u32 | payload[len]`, all big-endian. The CRC-32
//! covers kind, length and payload. QUIC already protects the bytes in transit; the checksum
//! guards the stages around it (buffers, compression, our own code) and costs little.
//!
//! A length above [`MAX_FRAME`] is refused as soon as the header is read, before any of the
//! payload is buffered.

use crate::limits::{HEADER_LEN, MAX_FRAME};
use crate::msg::{Kind, Message};
use crate::DecodeError;

fn crc(kind: u16, len: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&kind.to_be_bytes());
    h.update(&len.to_be_bytes());
    h.update(payload);
    h.finalize()
}

fn payload(msg: &Message) -> Result<Vec<u8>, postcard::Error> {
    use postcard::to_allocvec as enc;
    match msg {
        Message::Hello(m) => enc(m),
        Message::HelloAck(m) => enc(m),
        Message::Plan(m) => enc(m),
        Message::FsEntries { pass, entries } => enc(&(pass, entries)),
        Message::FsSignature(m) => enc(m),
        Message::FsDelta(m) => enc(m),
        Message::FsData(m) => enc(m),
        Message::FsDelete { pass, paths } => enc(&(pass, paths)),
        Message::FsPassDone { pass, last } => enc(&(pass, last)),
        Message::Pages(m) => enc(m),
        Message::MemRoundDone(m) => enc(m),
        Message::MemRoundAck { round } => enc(round),
        Message::Image(m) => enc(m),
        Message::ImagePages(m) => enc(m),
        Message::PageSlots(m) => enc(m),
        Message::ImageRuns(m) => enc(m),
        Message::BulkStream { index } => enc(index),
        Message::Flush { frames } => enc(frames),
        Message::FinalDone { images, bytes } => enc(&(images, bytes)),
        Message::Abort(m) => enc(m),
        Message::Progress { phase, done, total } => enc(&(phase, done, total)),
        Message::Done(m) => enc(m),
        Message::Resolve { migration_id } => enc(migration_id),
        Message::Resolved {
            migration_id,
            committed,
        } => enc(&(migration_id, committed)),
        Message::Capacity(m) => enc(m),
        Message::Pull(m) => enc(m),
        Message::PlanAccepted
        | Message::Frozen
        | Message::Restored
        | Message::Commit
        | Message::CommitAck
        | Message::CapacityQuery => Ok(Vec::new()),
    }
}

/// Encodes a message as one frame. Fails only for a message that would exceed the frame limit.
pub fn encode(msg: &Message) -> Result<Vec<u8>, DecodeError> {
    msg.validate()?;
    let body = payload(msg).map_err(|_| DecodeError::Invalid("message cannot be encoded"))?;
    if body.len() > MAX_FRAME {
        return Err(DecodeError::Limit {
            what: "frame",
            len: body.len(),
            max: MAX_FRAME,
        });
    }
    Ok(wrap(msg.kind() as u16, &body))
}

/// A frame around `payload` as it is, of kind `kind`: the header and its checksum, nothing
/// checked. [`encode`]'s last step; tests use it to build the frames a hostile peer would send,
/// which `encode` refuses.
pub fn wrap(kind: u16, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&crc(kind, len, payload).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn decode_payload(kind: Kind, p: &[u8]) -> Result<Message, postcard::Error> {
    use postcard::from_bytes as dec;
    let empty = |m: Message| {
        if p.is_empty() {
            Ok(m)
        } else {
            Err(postcard::Error::DeserializeBadEncoding)
        }
    };
    Ok(match kind {
        Kind::Hello => Message::Hello(dec(p)?),
        Kind::HelloAck => Message::HelloAck(dec(p)?),
        Kind::Plan => Message::Plan(dec(p)?),
        Kind::PlanAccepted => return empty(Message::PlanAccepted),
        Kind::FsEntries => {
            let (pass, entries) = dec(p)?;
            Message::FsEntries { pass, entries }
        }
        Kind::FsSignature => Message::FsSignature(dec(p)?),
        Kind::FsDelta => Message::FsDelta(dec(p)?),
        Kind::FsData => Message::FsData(dec(p)?),
        Kind::FsDelete => {
            let (pass, paths) = dec(p)?;
            Message::FsDelete { pass, paths }
        }
        Kind::FsPassDone => {
            let (pass, last) = dec(p)?;
            Message::FsPassDone { pass, last }
        }
        Kind::Pages => Message::Pages(dec(p)?),
        Kind::MemRoundDone => Message::MemRoundDone(dec(p)?),
        Kind::MemRoundAck => Message::MemRoundAck { round: dec(p)? },
        Kind::Frozen => return empty(Message::Frozen),
        Kind::Image => Message::Image(dec(p)?),
        Kind::ImagePages => Message::ImagePages(dec(p)?),
        Kind::PageSlots => Message::PageSlots(dec(p)?),
        Kind::ImageRuns => Message::ImageRuns(dec(p)?),
        Kind::BulkStream => Message::BulkStream { index: dec(p)? },
        Kind::Flush => Message::Flush { frames: dec(p)? },
        Kind::FinalDone => {
            let (images, bytes) = dec(p)?;
            Message::FinalDone { images, bytes }
        }
        Kind::Restored => return empty(Message::Restored),
        Kind::Commit => return empty(Message::Commit),
        Kind::CommitAck => return empty(Message::CommitAck),
        Kind::Abort => Message::Abort(dec(p)?),
        Kind::Progress => {
            let (phase, done, total) = dec(p)?;
            Message::Progress { phase, done, total }
        }
        Kind::Done => Message::Done(dec(p)?),
        Kind::Resolve => Message::Resolve { migration_id: dec(p)? },
        Kind::Resolved => {
            let (migration_id, committed) = dec(p)?;
            Message::Resolved {
                migration_id,
                committed,
            }
        }
        Kind::CapacityQuery => return empty(Message::CapacityQuery),
        Kind::Capacity => Message::Capacity(dec(p)?),
        Kind::Pull => Message::Pull(dec(p)?),
    })
}

/// Decodes one frame from the start of `buf`. Ok(None): more bytes are needed. On success,
/// returns the message and how many bytes it took.
pub fn decode(buf: &[u8]) -> Result<Option<(Message, usize)>, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let kind_code = u16::from_be_bytes([buf[0], buf[1]]);
    let len = u32::from_be_bytes([buf[2], buf[3], buf[4], buf[5]]);
    let sum = u32::from_be_bytes([buf[6], buf[7], buf[8], buf[9]]);
    let kind = Kind::from_code(kind_code).ok_or(DecodeError::UnknownKind(kind_code))?;
    if len as usize > MAX_FRAME {
        return Err(DecodeError::Limit {
            what: "frame",
            len: len as usize,
            max: MAX_FRAME,
        });
    }
    let total = HEADER_LEN + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[HEADER_LEN..total];
    if crc(kind_code, len, body) != sum {
        return Err(DecodeError::Checksum);
    }
    let msg = decode_payload(kind, body).map_err(|e| DecodeError::Payload {
        kind: kind_code,
        why: e.to_string(),
    })?;
    msg.validate()?;
    Ok(Some((msg, total)))
}

/// Accumulates bytes from a stream and yields whole messages. Its buffer never holds more than
/// one maximal frame plus what one `push` added (and the messages already taken from that,
/// dropped at the next `push`: moving what is left after every message would copy a large
/// read once per small message in it).
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// Where the first message not yet taken starts.
    start: usize,
    failed: bool,
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Nothing buffered (a stream that ends here ended between frames).
    pub fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, if there is one. After an error the stream is unusable and every
    /// later call returns the same kind of error.
    // Not an Iterator: a stream that has no whole message yet is not at its end.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<Option<Message>, DecodeError> {
        if self.failed {
            return Err(DecodeError::Invalid("stream already failed"));
        }
        match decode(&self.buf[self.start..]) {
            Ok(Some((m, used))) => {
                self.start += used;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                Ok(Some(m))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.failed = true;
                self.buf = Vec::new();
                self.start = 0;
                Err(e)
            }
        }
    }

    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}
