//! Event stream, virtual port 1002 (spec §10.4).
//!
//! An event is `topic_len (u16 BE) ‖ topic ‖ payload_len (u32 BE) ‖ payload`. The first event
//! a client sends on a connection is its subscription (payload normally empty, topic `*` for
//! all topics); every later event is a publish. That rule belongs to the broker or client,
//! not to this codec.
//!
//! Topics are bytes: the reference reader does not require UTF-8, so neither does this one.

use alloc::vec::Vec;
use core::fmt;

use super::{Incremental, Step};
use crate::addr::ports;

/// The port the broker listens on.
pub const PORT: u16 = ports::EVENT_STREAM;

/// Longest topic a reader accepts, in bytes.
pub const MAX_TOPIC_LEN: usize = 1024;

/// Largest payload a reader accepts, in bytes (16 MiB).
pub const MAX_PAYLOAD_LEN: usize = 16 * 1024 * 1024;

/// The topic that subscribes to every topic.
pub const WILDCARD_TOPIC: &[u8] = b"*";

/// Length of the topic length prefix (u16 BE).
const TOPIC_PREFIX_LEN: usize = 2;

/// Length of the payload length prefix (u32 BE).
const PAYLOAD_PREFIX_LEN: usize = 4;

/// Why an event could not be decoded or encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStreamError {
    /// The input ended inside an event.
    Truncated {
        /// Bytes available.
        have: usize,
        /// Bytes the event needs, as far as its length fields tell.
        need: usize,
    },
    /// The topic is longer than [`MAX_TOPIC_LEN`].
    TopicTooLong {
        /// The declared (or, when encoding, given) topic length.
        len: usize,
    },
    /// The payload is larger than [`MAX_PAYLOAD_LEN`].
    PayloadTooLarge {
        /// The declared (or, when encoding, given) payload length.
        len: u64,
    },
}

impl fmt::Display for EventStreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { have, need } => {
                write!(f, "event truncated: have {have} bytes, need {need}")
            }
            Self::TopicTooLong { len } => {
                write!(f, "event topic too long: {len} bytes (max {MAX_TOPIC_LEN})")
            }
            Self::PayloadTooLarge { len } => {
                write!(
                    f,
                    "event payload too large: {len} bytes (max {MAX_PAYLOAD_LEN})"
                )
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for EventStreamError {}

/// One event; topic and payload borrow the decoded buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event<'a> {
    /// The topic.
    pub topic: &'a [u8],
    /// The payload.
    pub payload: &'a [u8],
}

impl<'a> Event<'a> {
    /// An event on `topic` carrying `payload`.
    pub const fn new(topic: &'a [u8], payload: &'a [u8]) -> Self {
        Event { topic, payload }
    }

    /// The subscription event for `topic`: the topic with an empty payload.
    pub const fn subscription(topic: &'a [u8]) -> Self {
        Event::new(topic, &[])
    }

    /// Bytes [`encode`](Self::encode) appends.
    pub fn encoded_len(&self) -> usize {
        (TOPIC_PREFIX_LEN + PAYLOAD_PREFIX_LEN)
            .saturating_add(self.topic.len())
            .saturating_add(self.payload.len())
    }

    /// Appends the wire form to `out`. Refuses what a reader would reject; on error `out` is
    /// unchanged.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EventStreamError> {
        let topic_len = u16::try_from(self.topic.len())
            .ok()
            .filter(|_| self.topic.len() <= MAX_TOPIC_LEN)
            .ok_or(EventStreamError::TopicTooLong {
                len: self.topic.len(),
            })?;
        let payload_len = u32::try_from(self.payload.len())
            .ok()
            .filter(|_| self.payload.len() <= MAX_PAYLOAD_LEN)
            .ok_or(EventStreamError::PayloadTooLarge {
                len: u64::try_from(self.payload.len()).unwrap_or(u64::MAX),
            })?;

        out.reserve(self.encoded_len());
        out.extend_from_slice(&topic_len.to_be_bytes());
        out.extend_from_slice(self.topic);
        out.extend_from_slice(&payload_len.to_be_bytes());
        out.extend_from_slice(self.payload);
        Ok(())
    }

    /// Decodes the event at the start of `buf`; returns it and the bytes it occupied.
    /// Bytes after the event are not read.
    pub fn decode(buf: &'a [u8]) -> Result<(Event<'a>, usize), EventStreamError> {
        match parse(buf)? {
            Step::Complete(event, len) => Ok((event, len)),
            Step::Incomplete { need } => Err(EventStreamError::Truncated {
                have: buf.len(),
                need,
            }),
        }
    }
}

/// Parses one event at the start of `buf`, checking each length as soon as it is present.
fn parse(buf: &[u8]) -> Result<Step<Event<'_>>, EventStreamError> {
    let Some((topic_prefix, rest)) = buf.split_first_chunk::<TOPIC_PREFIX_LEN>() else {
        return Ok(Step::Incomplete {
            need: TOPIC_PREFIX_LEN + PAYLOAD_PREFIX_LEN,
        });
    };
    let topic_len = usize::from(u16::from_be_bytes(*topic_prefix));
    if topic_len > MAX_TOPIC_LEN {
        return Err(EventStreamError::TopicTooLong { len: topic_len });
    }
    let header_len = TOPIC_PREFIX_LEN + topic_len + PAYLOAD_PREFIX_LEN;

    let Some((topic, rest)) = rest.split_at_checked(topic_len) else {
        return Ok(Step::Incomplete { need: header_len });
    };
    let Some((payload_prefix, rest)) = rest.split_first_chunk::<PAYLOAD_PREFIX_LEN>() else {
        return Ok(Step::Incomplete { need: header_len });
    };
    let declared = u32::from_be_bytes(*payload_prefix);
    let payload_len = usize::try_from(declared)
        .ok()
        .filter(|&len| len <= MAX_PAYLOAD_LEN)
        .ok_or(EventStreamError::PayloadTooLarge {
            len: u64::from(declared),
        })?;

    let need = header_len + payload_len;
    let Some(payload) = rest.get(..payload_len) else {
        return Ok(Step::Incomplete { need });
    };
    Ok(Step::Complete(Event { topic, payload }, need))
}

/// Incremental decoder for the byte stream of an event stream connection.
///
/// See the [module contract](super) for how feeding, pulling and errors work.
#[derive(Debug)]
pub struct EventDecoder {
    inner: Incremental<EventStreamError>,
}

impl Default for EventDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl EventDecoder {
    /// An empty decoder.
    pub const fn new() -> Self {
        EventDecoder {
            inner: Incremental::new(),
        }
    }

    /// Appends bytes received on the stream; dropped once a terminal error was returned.
    pub fn feed(&mut self, data: &[u8]) {
        self.inner.feed(data);
    }

    /// The next complete event, `Ok(None)` if more bytes are needed, or the terminal error.
    pub fn next_event(&mut self) -> Result<Option<Event<'_>>, EventStreamError> {
        self.inner.next(parse)
    }

    /// Bytes held and not yet returned as events (none after a `feed` that followed a
    /// terminal error).
    pub fn pending_len(&self) -> usize {
        self.inner.pending().len()
    }

    /// At end of stream: `Err` if the stream stopped inside an event, or an earlier error.
    pub fn finish(&self) -> Result<(), EventStreamError> {
        self.inner
            .finish(parse, |have, need| EventStreamError::Truncated {
                have,
                need,
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;
    use alloc::vec;

    #[test]
    fn subscription_has_empty_payload() {
        let mut out = Vec::new();
        Event::subscription(WILDCARD_TOPIC)
            .encode(&mut out)
            .unwrap();
        assert_eq!(out, [0, 1, b'*', 0, 0, 0, 0]);
    }

    #[test]
    fn topic_limit_is_checked_before_the_topic_arrives() {
        let mut decoder = EventDecoder::new();
        decoder.feed(&[0x04, 0x01]);
        assert_eq!(
            decoder.next_event(),
            Err(EventStreamError::TopicTooLong { len: 1025 })
        );
        decoder.feed(b"more");
        assert_eq!(
            decoder.next_event(),
            Err(EventStreamError::TopicTooLong { len: 1025 })
        );
    }

    #[test]
    fn input_fed_after_a_terminal_error_is_dropped() {
        let mut decoder = EventDecoder::new();
        decoder.feed(&[0xFF, 0xFF]);
        let error = EventStreamError::TopicTooLong { len: 0xFFFF };
        assert_eq!(decoder.next_event(), Err(error));
        for _ in 0..8 {
            decoder.feed(&[0; 4096]);
        }
        assert_eq!(decoder.pending_len(), 0);
        assert_eq!(decoder.inner.bytes.capacity(), 0);
        assert_eq!(decoder.next_event(), Err(error));
        assert_eq!(decoder.finish(), Err(error));
    }

    #[test]
    fn payload_limit_is_checked_before_the_payload_arrives() {
        let mut decoder = EventDecoder::new();
        decoder.feed(&[0, 1, b't', 0x01, 0, 0]);
        assert_eq!(decoder.next_event(), Ok(None));
        decoder.feed(&[0x01]);
        assert_eq!(
            decoder.next_event(),
            Err(EventStreamError::PayloadTooLarge { len: 16_777_217 })
        );
    }

    #[test]
    fn encode_refuses_oversized_topic_and_leaves_output_alone() {
        let topic = vec![b't'; MAX_TOPIC_LEN + 1];
        let mut out = vec![9];
        assert_eq!(
            Event::subscription(&topic).encode(&mut out),
            Err(EventStreamError::TopicTooLong { len: 1025 })
        );
        assert_eq!(out, [9]);
    }

    #[test]
    fn decoder_releases_yielded_events_and_reports_cut_off_tail() {
        let mut wire = Vec::new();
        Event::new(b"a", b"1").encode(&mut wire).unwrap();
        Event::new(b"b", b"22").encode(&mut wire).unwrap();
        let mut decoder = EventDecoder::new();
        decoder.feed(&wire[..wire.len() - 1]);
        assert_eq!(decoder.next_event(), Ok(Some(Event::new(b"a", b"1"))));
        assert_eq!(decoder.next_event(), Ok(None));
        assert_eq!(decoder.pending_len(), 8);
        assert_eq!(
            decoder.finish(),
            Err(EventStreamError::Truncated { have: 8, need: 9 })
        );
        decoder.feed(&wire[wire.len() - 1..]);
        assert_eq!(decoder.next_event(), Ok(Some(Event::new(b"b", b"22"))));
        assert_eq!(decoder.next_event(), Ok(None));
        assert_eq!(decoder.finish(), Ok(()));
    }

    #[test]
    fn finish_skips_undrained_events_and_reports_the_cut_one() {
        let mut wire = Vec::new();
        Event::new(b"a", b"1").encode(&mut wire).unwrap();
        wire.extend_from_slice(&[0, 1, b'b']);
        let mut decoder = EventDecoder::new();
        decoder.feed(&wire);
        assert_eq!(
            decoder.finish(),
            Err(EventStreamError::Truncated { have: 3, need: 7 })
        );
        decoder.feed(&[0, 0, 0, 0]);
        assert_eq!(decoder.finish(), Ok(()));
    }
}
