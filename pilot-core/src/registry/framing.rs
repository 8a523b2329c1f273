//! Registry framing (spec §9.1): every message in both directions is
//! `u32 BE length ‖ UTF-8 JSON object`.
//!
//! [`FrameReader`] reassembles messages from a byte stream however the transport splits it;
//! [`encode_frame`] and [`encode_message`] build frames.

use alloc::vec::Vec;

use serde::Serialize;

use super::RegistryError;

/// Size of the big-endian length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Largest JSON body accepted or sent, in bytes: 4 MiB.
///
/// spec §9.1: the V-FORK registry closes connections whose messages exceed 4 MiB, COMMON
/// helpers allow 64 MiB. Responses that matter to a node (`lookup_ok`, `poll_handshakes_ok`,
/// `list_nodes_ok` of a network) are far smaller, so the registry's own limit is a safe
/// ceiling: it bounds what a hostile peer can make us buffer and never refuses a message a
/// V-FORK registry would accept from us.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Prefixes a JSON body with its length.
///
/// Fails with [`RegistryError::MessageTooLarge`] above [`MAX_MESSAGE_BYTES`].
pub fn encode_frame(json: &[u8]) -> Result<Vec<u8>, RegistryError> {
    let declared = checked_len(json.len())?;
    let mut frame = Vec::with_capacity(LENGTH_PREFIX_BYTES + json.len());
    frame.extend_from_slice(&declared.to_be_bytes());
    frame.extend_from_slice(json);
    Ok(frame)
}

/// Serializes `message` to compact JSON and frames it.
pub fn encode_message<T: Serialize + ?Sized>(message: &T) -> Result<Vec<u8>, RegistryError> {
    let json = serde_json::to_vec(message).map_err(RegistryError::encode)?;
    encode_frame(&json)
}

fn checked_len(len: usize) -> Result<u32, RegistryError> {
    match u32::try_from(len) {
        Ok(declared) if len <= MAX_MESSAGE_BYTES => Ok(declared),
        _ => Err(RegistryError::MessageTooLarge {
            declared: u64::try_from(len).unwrap_or(u64::MAX),
        }),
    }
}

/// Incremental reader for the registry byte stream.
///
/// Feed it bytes as they arrive with [`push`](Self::push) and pull whole JSON bodies with
/// [`next_message`](Self::next_message). A length prefix above [`MAX_MESSAGE_BYTES`] is
/// rejected as soon as its four bytes are in, before any body is buffered, and is terminal:
/// the stream can no longer be resynchronised, so every later call returns the same error
/// and the driver should close the connection.
#[derive(Debug, Default)]
pub struct FrameReader {
    /// Received bytes; `buf[start..]` is not yet consumed.
    buf: Vec<u8>,
    /// Offset of the first unconsumed byte.
    start: usize,
    /// Set once the stream has proven unusable.
    failed: Option<RegistryError>,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes received from the transport. Ignored after a terminal error.
    ///
    /// Drain [`next_message`](Self::next_message) until it returns `Ok(None)` after each
    /// push; the reader then never holds more than one partial frame (at most
    /// [`MAX_MESSAGE_BYTES`] plus its prefix) beyond the bytes of the last push.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Number of received bytes not yet returned as a message.
    pub fn buffered(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }

    /// The next complete JSON body, `Ok(None)` while more bytes are needed.
    ///
    /// The body is not parsed here: hand it to `Request::decode` or `Response::decode`.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, RegistryError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }

        let pending = self.buf.get(self.start..).unwrap_or_default();
        let Some((prefix, rest)) = pending.split_first_chunk::<LENGTH_PREFIX_BYTES>() else {
            return Ok(None);
        };
        let declared = u32::from_be_bytes(*prefix);
        let body_len = match usize::try_from(declared) {
            Ok(len) if len <= MAX_MESSAGE_BYTES => len,
            _ => {
                return Err(self.fail(RegistryError::MessageTooLarge {
                    declared: declared.into(),
                }))
            }
        };
        let Some(body) = rest.get(..body_len) else {
            return Ok(None);
        };

        let message = body.to_vec();
        self.start = self.start.saturating_add(LENGTH_PREFIX_BYTES + body_len);
        self.compact();
        Ok(Some(message))
    }

    /// Records a terminal error and frees the buffer.
    fn fail(&mut self, err: RegistryError) -> RegistryError {
        self.buf = Vec::new();
        self.start = 0;
        self.failed = Some(err.clone());
        err
    }

    /// Drops consumed bytes once they are at least half the buffer, so each byte is moved
    /// O(1) times on average however the stream is split.
    fn compact(&mut self) {
        if self.start >= self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
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

    #[test]
    fn encode_frame_prefixes_big_endian_length() {
        let frame = encode_frame(br#"{"type":"lookup","node_id":7}"#).unwrap();
        assert_eq!(&frame[..4], &[0, 0, 0, 29]);
        assert_eq!(&frame[4..], br#"{"type":"lookup","node_id":7}"#);
    }

    #[test]
    fn reader_returns_messages_split_across_pushes() {
        let mut stream = encode_frame(b"{\"a\":1}").unwrap();
        stream.extend(encode_frame(b"{}").unwrap());
        let mut reader = FrameReader::new();
        let mut out = Vec::new();
        for byte in &stream {
            reader.push(core::slice::from_ref(byte));
            while let Some(msg) = reader.next_message().unwrap() {
                out.push(msg);
            }
        }
        assert_eq!(out, [b"{\"a\":1}".to_vec(), b"{}".to_vec()]);
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn reader_waits_for_a_whole_body() {
        let mut reader = FrameReader::new();
        reader.push(&[0, 0, 0, 5, b'{']);
        assert_eq!(reader.next_message().unwrap(), None);
        assert_eq!(reader.buffered(), 5);
        reader.push(b"}   ");
        assert_eq!(reader.next_message().unwrap(), Some(b"{}   ".to_vec()));
    }

    #[test]
    fn oversize_prefix_is_rejected_before_the_body_and_stays_rejected() {
        let mut reader = FrameReader::new();
        let too_big = u32::try_from(MAX_MESSAGE_BYTES + 1).unwrap();
        reader.push(&too_big.to_be_bytes());
        let err = RegistryError::MessageTooLarge {
            declared: too_big.into(),
        };
        assert_eq!(reader.next_message(), Err(err.clone()));
        reader.push(&encode_frame(b"{}").unwrap());
        assert_eq!(reader.next_message(), Err(err));
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn exactly_the_limit_is_accepted() {
        let mut reader = FrameReader::new();
        let limit = u32::try_from(MAX_MESSAGE_BYTES).unwrap();
        reader.push(&limit.to_be_bytes());
        assert_eq!(reader.next_message(), Ok(None));
        assert!(encode_frame(&alloc::vec![b' '; MAX_MESSAGE_BYTES]).is_ok());
        assert!(matches!(
            encode_frame(&alloc::vec![b' '; MAX_MESSAGE_BYTES + 1]),
            Err(RegistryError::MessageTooLarge { .. })
        ));
    }

    #[test]
    fn empty_body_is_passed_up_for_the_json_layer_to_reject() {
        let mut reader = FrameReader::new();
        reader.push(&[0, 0, 0, 0]);
        assert_eq!(reader.next_message(), Ok(Some(Vec::new())));
    }
}
