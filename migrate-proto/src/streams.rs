//! Version 4 carries bulk data on streams of its own beside the control stream: stream 0 the
//! file passes (each pass whole, in order: its deltas, entries, data, deletions), the others
//! memory (pre-copy slots, the final dump's pages images) and the other CRIU images. Streams are
//! ordered each, not with each other, so a frame on one may arrive before an earlier frame on
//! another. Control messages that end something the bulk streams carried (a file pass, a memory
//! round, the final transfer) must not overtake that data: before each control message the
//! source sends `Flush`, the number of frames it has sent on each bulk stream, and the
//! destination handles the next control message only once it has applied that many frames from
//! each. This module is the bookkeeping of both ends; the engines move the bytes.

use crate::limits::MAX_STREAMS;
use crate::msg::Message;

/// The bulk stream of the file passes; memory and images go on the others.
pub const FILES: usize = 0;

/// The source's count of frames sent on each bulk stream, and what it last told.
#[derive(Debug, Clone, Default)]
pub struct Outgoing {
    sent: Vec<u64>,
    told: Vec<u64>,
}

impl Outgoing {
    /// `streams` bulk streams (at most [`MAX_STREAMS`]).
    pub fn new(streams: usize) -> Self {
        let n = streams.min(MAX_STREAMS);
        Self {
            sent: vec![0; n],
            told: vec![0; n],
        }
    }

    pub fn streams(&self) -> usize {
        self.sent.len()
    }

    /// One more frame went out on `stream`.
    pub fn count(&mut self, stream: usize) {
        self.sent[stream] += 1;
    }

    /// The memory stream for a key: the same key, the same stream (a file's chunks keep their
    /// order); different keys spread over the memory streams.
    pub fn memory_stream(&self, key: u64) -> usize {
        match self.sent.len() {
            0 | 1 => FILES,
            n => 1 + (key % (n as u64 - 1)) as usize,
        }
    }

    /// The `Flush` to send before the next control message, if bulk frames went out since the
    /// last one.
    pub fn flush(&mut self) -> Option<Message> {
        if self.sent == self.told {
            return None;
        }
        self.told.clone_from(&self.sent);
        Some(Message::Flush {
            frames: self.sent.clone(),
        })
    }
}

/// Why the destination refuses what arrives on the bulk streams.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("bulk stream {0} is out of range")]
    Range(u32),
    #[error("bulk stream {0} was opened twice")]
    Twice(u32),
    #[error("a bulk stream did not begin by naming itself")]
    Unnamed,
    #[error("a flush names {0} bulk streams")]
    Flush(usize),
}

/// The destination's count of frames applied from each bulk stream, and the barrier the last
/// `Flush` set.
#[derive(Debug, Clone, Default)]
pub struct Incoming {
    opened: [bool; MAX_STREAMS],
    applied: [u64; MAX_STREAMS],
    barrier: Option<Vec<u64>>,
}

impl Incoming {
    pub fn new() -> Self {
        Self::default()
    }

    /// A bulk stream named itself (its first frame, `BulkStream`).
    pub fn open(&mut self, index: u32) -> Result<usize, StreamError> {
        let i = index as usize;
        if i >= MAX_STREAMS {
            return Err(StreamError::Range(index));
        }
        if std::mem::replace(&mut self.opened[i], true) {
            return Err(StreamError::Twice(index));
        }
        Ok(i)
    }

    /// One more frame of `stream` was applied.
    pub fn applied(&mut self, stream: usize) {
        self.applied[stream] += 1;
        self.check();
    }

    /// A `Flush` arrived on the control stream: the next control message waits for it.
    pub fn flush(&mut self, frames: Vec<u64>) -> Result<(), StreamError> {
        if frames.len() > MAX_STREAMS {
            return Err(StreamError::Flush(frames.len()));
        }
        self.barrier = Some(frames);
        self.check();
        Ok(())
    }

    fn check(&mut self) {
        if let Some(b) = &self.barrier {
            if b.iter().zip(self.applied.iter()).all(|(want, have)| have >= want) {
                self.barrier = None;
            }
        }
    }

    /// May the next control message be handled?
    pub fn ready(&self) -> bool {
        self.barrier.is_none()
    }

    /// Frames applied from each stream (for logs and tests).
    pub fn applied_counts(&self) -> &[u64] {
        &self.applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flush_names_what_was_sent_since_the_last_one() {
        let mut o = Outgoing::new(3);
        assert_eq!(o.flush(), None);
        o.count(FILES);
        o.count(2);
        o.count(2);
        assert_eq!(o.flush(), Some(Message::Flush { frames: vec![1, 0, 2] }));
        assert_eq!(o.flush(), None, "nothing new");
        o.count(1);
        assert_eq!(o.flush(), Some(Message::Flush { frames: vec![1, 1, 2] }));
        // Keys keep their stream, and spread over the memory streams.
        assert_eq!(o.memory_stream(7), o.memory_stream(7));
        assert_ne!(o.memory_stream(0), o.memory_stream(1));
        assert!((1..3).contains(&o.memory_stream(12345)));
        assert_eq!(Outgoing::new(1).memory_stream(5), FILES);
    }

    #[test]
    fn control_waits_until_every_flushed_frame_is_applied() {
        let mut i = Incoming::new();
        assert!(i.ready());
        assert_eq!(i.open(0), Ok(0));
        assert_eq!(i.open(2), Ok(2));
        assert_eq!(i.open(2), Err(StreamError::Twice(2)));
        assert_eq!(i.open(8), Err(StreamError::Range(8)));
        // Stream 1 has not even named itself yet: its frames are still on their way.
        i.flush(vec![1, 1, 2]).unwrap();
        assert!(!i.ready());
        i.applied(2);
        i.applied(2);
        i.applied(0);
        assert!(!i.ready());
        i.open(1).unwrap();
        i.applied(1);
        assert!(i.ready());
        // Frames that arrived before the flush that counts them are fine.
        i.applied(2);
        i.flush(vec![1, 1, 3]).unwrap();
        assert!(i.ready());
        assert_eq!(i.flush(vec![0; 9]), Err(StreamError::Flush(9)));
        assert_eq!(i.applied_counts()[..3], [1, 1, 3]);
    }
}
