//! Data exchange, virtual port 1001 (spec §10.3).
//!
//! A frame is `type (u32 BE) ‖ length (u32 BE) ‖ payload[length]`. A FILE payload starts with
//! `name_len (u16 BE) ‖ name`. The server answers every frame with a TEXT [`Reply`].
//!
//! Decoding follows the newer rules (V-FORK May 2026 and V-NEW): FILE names longer than 255
//! bytes, not UTF-8, equal to `.` or containing `..`, `/` or `\` are rejected. V-FEB accepted
//! any name; that behaviour is not offered.

use alloc::string::ToString;
use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

use super::{parse_decimal_u64, Incremental, Step};
use crate::addr::ports;

/// The port the service listens on.
pub const PORT: u16 = ports::DATA_EXCHANGE;

/// Length of the frame header: type and length, both u32 BE.
pub const HEADER_LEN: usize = 8;

/// Largest payload a reader accepts, in bytes (16 MiB, the V-FEB/V-FORK limit; V-NEW's
/// default of 64 MiB is configurable and not used here).
pub const MAX_PAYLOAD_LEN: usize = 16 * 1024 * 1024;

/// Longest FILE name, in bytes.
pub const MAX_FILE_NAME_LEN: usize = 255;

/// Length of the FILE name length prefix (u16 BE).
const FILE_NAME_PREFIX_LEN: usize = 2;

/// The frame type, the first u32 of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    /// 1: UTF-8 text.
    Text,
    /// 2: bytes.
    Binary,
    /// 3: JSON text.
    Json,
    /// 4: a named file.
    File,
    /// Any other value (V-NEW adds TRACE 5, FILESTREAM 7, …; not interpreted here).
    /// [`FrameType::from`] never produces `Other(1..=4)`.
    Other(u32),
}

impl From<u32> for FrameType {
    fn from(value: u32) -> Self {
        match value {
            1 => FrameType::Text,
            2 => FrameType::Binary,
            3 => FrameType::Json,
            4 => FrameType::File,
            other => FrameType::Other(other),
        }
    }
}

impl From<FrameType> for u32 {
    fn from(frame_type: FrameType) -> u32 {
        match frame_type {
            FrameType::Text => 1,
            FrameType::Binary => 2,
            FrameType::Json => 3,
            FrameType::File => 4,
            FrameType::Other(value) => value,
        }
    }
}

impl fmt::Display for FrameType {
    /// The name the service uses in replies: `TEXT`, `BINARY`, `JSON`, `FILE`, `UNKNOWN(n)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameType::Text => f.write_str("TEXT"),
            FrameType::Binary => f.write_str("BINARY"),
            FrameType::Json => f.write_str("JSON"),
            FrameType::File => f.write_str("FILE"),
            FrameType::Other(value) => write!(f, "UNKNOWN({value})"),
        }
    }
}

impl FromStr for FrameType {
    type Err = DataExchangeError;

    /// Reads a name as [`Display`](fmt::Display) prints it.
    fn from_str(name: &str) -> Result<Self, DataExchangeError> {
        match name {
            "TEXT" => Ok(FrameType::Text),
            "BINARY" => Ok(FrameType::Binary),
            "JSON" => Ok(FrameType::Json),
            "FILE" => Ok(FrameType::File),
            _ => name
                .strip_prefix("UNKNOWN(")
                .and_then(|rest| rest.strip_suffix(')'))
                .and_then(parse_decimal_u64)
                .and_then(|value| u32::try_from(value).ok())
                .map(FrameType::from)
                // `UNKNOWN(1)` is not how TEXT prints; only the canonical names are accepted.
                .filter(|frame_type| matches!(frame_type, FrameType::Other(_)))
                .ok_or(DataExchangeError::MalformedReply),
        }
    }
}

/// Why a data exchange frame or reply could not be decoded or encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataExchangeError {
    /// The input ended inside a frame.
    Truncated {
        /// Bytes available.
        have: usize,
        /// Bytes the frame needs, as far as its header tells.
        need: usize,
    },
    /// The declared payload length exceeds [`MAX_PAYLOAD_LEN`].
    FrameTooLarge {
        /// The declared (or, when encoding, requested) payload length.
        len: u64,
    },
    /// A FILE name is longer than [`MAX_FILE_NAME_LEN`] bytes.
    FileNameTooLong {
        /// The name's length in bytes.
        len: usize,
    },
    /// A FILE name is not valid UTF-8 (V-NEW rule).
    FileNameNotUtf8,
    /// A FILE name is `.` or contains `..`, `/` or `\`: a path, not a base name.
    FileNameNotBaseName,
    /// A reply text is neither `ACK <TYPE> <n> bytes` nor `ERR <TYPE> save failed: <reason>`.
    MalformedReply,
}

impl fmt::Display for DataExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { have, need } => {
                write!(
                    f,
                    "data exchange frame truncated: have {have} bytes, need {need}"
                )
            }
            Self::FrameTooLarge { len } => {
                write!(
                    f,
                    "data exchange frame too large: {len} bytes (max {MAX_PAYLOAD_LEN})"
                )
            }
            Self::FileNameTooLong { len } => {
                write!(
                    f,
                    "file name too long: {len} bytes (max {MAX_FILE_NAME_LEN})"
                )
            }
            Self::FileNameNotUtf8 => f.write_str("file name is not valid UTF-8"),
            Self::FileNameNotBaseName => {
                f.write_str("file name is a path ('.', '..', '/' or '\\' not allowed)")
            }
            Self::MalformedReply => f.write_str("malformed data exchange reply"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for DataExchangeError {}

/// One data exchange frame; the byte slices borrow the decoded buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Type 1.
    Text(&'a [u8]),
    /// Type 2.
    Binary(&'a [u8]),
    /// Type 3.
    Json(&'a [u8]),
    /// Type 4: a file name (possibly empty) and the file's bytes.
    File {
        /// Base name of the file; empty when the sender gave none.
        name: &'a str,
        /// Contents of the file.
        data: &'a [u8],
    },
    /// Any other type, payload uninterpreted.
    Other {
        /// The type value; the decoder never yields 1..=4 here.
        frame_type: u32,
        /// The payload.
        payload: &'a [u8],
    },
}

impl<'a> Frame<'a> {
    /// The frame's type.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Text(_) => FrameType::Text,
            Frame::Binary(_) => FrameType::Binary,
            Frame::Json(_) => FrameType::Json,
            Frame::File { .. } => FrameType::File,
            Frame::Other { frame_type, .. } => FrameType::Other(*frame_type),
        }
    }

    /// The content: the payload, or for FILE the bytes after the name.
    pub fn body(&self) -> &'a [u8] {
        match self {
            Frame::Text(body) | Frame::Binary(body) | Frame::Json(body) => body,
            Frame::File { data, .. } => data,
            Frame::Other { payload, .. } => payload,
        }
    }

    /// Length of the payload field this frame encodes to (for FILE: name prefix, name and
    /// data). For an unnamed FILE decoded from a payload too short for its name, this counts a
    /// prefix the wire did not have.
    pub fn payload_len(&self) -> usize {
        match self {
            Frame::File { name, data } => FILE_NAME_PREFIX_LEN
                .saturating_add(name.len())
                .saturating_add(data.len()),
            _ => self.body().len(),
        }
    }

    /// Bytes [`encode`](Self::encode) appends.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN.saturating_add(self.payload_len())
    }

    /// Appends the wire form to `out`. Refuses what a reader would reject: a payload over
    /// [`MAX_PAYLOAD_LEN`] or an invalid FILE name. On error `out` is unchanged.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), DataExchangeError> {
        if let Frame::File { name, .. } = self {
            check_file_name(name.as_bytes())?;
        }
        let payload_len = self.payload_len();
        let too_large = DataExchangeError::FrameTooLarge {
            len: u64::try_from(payload_len).unwrap_or(u64::MAX),
        };
        if payload_len > MAX_PAYLOAD_LEN {
            return Err(too_large);
        }
        let len = u32::try_from(payload_len).map_err(|_| too_large)?;

        out.reserve(self.encoded_len());
        out.extend_from_slice(&u32::from(self.frame_type()).to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        if let Frame::File { name, .. } = self {
            // check_file_name bounded the name to 255 bytes.
            let name_len = u16::try_from(name.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&name_len.to_be_bytes());
            out.extend_from_slice(name.as_bytes());
        }
        out.extend_from_slice(self.body());
        Ok(())
    }

    /// Decodes the frame at the start of `buf`; returns it and the bytes it occupied.
    /// Bytes after the frame (the next frame) are not read.
    pub fn decode(buf: &'a [u8]) -> Result<(Frame<'a>, usize), DataExchangeError> {
        match parse(buf)? {
            Step::Complete(frame, len) => Ok((frame, len)),
            Step::Incomplete { need } => Err(DataExchangeError::Truncated {
                have: buf.len(),
                need,
            }),
        }
    }
}

/// Parses one frame at the start of `buf`, checking the length limit as soon as the header
/// is present.
fn parse(buf: &[u8]) -> Result<Step<Frame<'_>>, DataExchangeError> {
    let Some((header, rest)) = buf.split_first_chunk::<HEADER_LEN>() else {
        return Ok(Step::Incomplete { need: HEADER_LEN });
    };
    let [t0, t1, t2, t3, l0, l1, l2, l3] = *header;
    let frame_type = FrameType::from(u32::from_be_bytes([t0, t1, t2, t3]));
    let declared = u32::from_be_bytes([l0, l1, l2, l3]);

    let payload_len = usize::try_from(declared)
        .ok()
        .filter(|&len| len <= MAX_PAYLOAD_LEN)
        .ok_or(DataExchangeError::FrameTooLarge {
            len: u64::from(declared),
        })?;
    let need = HEADER_LEN + payload_len;
    let Some(payload) = rest.get(..payload_len) else {
        return Ok(Step::Incomplete { need });
    };

    let frame = match frame_type {
        FrameType::Text => Frame::Text(payload),
        FrameType::Binary => Frame::Binary(payload),
        FrameType::Json => Frame::Json(payload),
        FrameType::File => parse_file(payload)?,
        FrameType::Other(frame_type) => Frame::Other {
            frame_type,
            payload,
        },
    };
    Ok(Step::Complete(frame, need))
}

/// Splits a FILE payload into name and data.
///
/// A payload too short for its own name prefix is accepted as an unnamed file holding the
/// whole payload, prefix included: that is what the reference reader does.
fn parse_file(payload: &[u8]) -> Result<Frame<'_>, DataExchangeError> {
    let unnamed = Frame::File {
        name: "",
        data: payload,
    };
    let Some((prefix, rest)) = payload.split_first_chunk::<FILE_NAME_PREFIX_LEN>() else {
        return Ok(unnamed);
    };
    let name_len = usize::from(u16::from_be_bytes(*prefix));
    let Some((name, data)) = rest.split_at_checked(name_len) else {
        return Ok(unnamed);
    };
    Ok(Frame::File {
        name: check_file_name(name)?,
        data,
    })
}

/// Applies the V-FORK/V-NEW name rules; returns the name as text.
fn check_file_name(name: &[u8]) -> Result<&str, DataExchangeError> {
    if name.len() > MAX_FILE_NAME_LEN {
        return Err(DataExchangeError::FileNameTooLong { len: name.len() });
    }
    let name = core::str::from_utf8(name).map_err(|_| DataExchangeError::FileNameNotUtf8)?;
    if name == "." || name.contains("..") || name.contains(['/', '\\']) {
        return Err(DataExchangeError::FileNameNotBaseName);
    }
    Ok(name)
}

/// Incremental decoder for the byte stream of a data exchange connection.
///
/// See the [module contract](super) for how feeding, pulling and errors work.
#[derive(Debug)]
pub struct FrameDecoder {
    inner: Incremental<DataExchangeError>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// An empty decoder.
    pub const fn new() -> Self {
        FrameDecoder {
            inner: Incremental::new(),
        }
    }

    /// Appends bytes received on the stream; dropped once a terminal error was returned.
    pub fn feed(&mut self, data: &[u8]) {
        self.inner.feed(data);
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or the terminal error.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, DataExchangeError> {
        self.inner.next(parse)
    }

    /// Bytes held and not yet returned as frames (none after a `feed` that followed a
    /// terminal error).
    pub fn pending_len(&self) -> usize {
        self.inner.pending().len()
    }

    /// At end of stream: `Err` if the stream stopped inside a frame, or an earlier error.
    pub fn finish(&self) -> Result<(), DataExchangeError> {
        self.inner
            .finish(parse, |have, need| DataExchangeError::Truncated {
                have,
                need,
            })
    }
}

/// The server's answer to a frame, sent back as a TEXT frame (spec §10.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `ACK <TYPE> <n> bytes`: the frame was stored; `n` counts the body (for FILE, the
    /// bytes after the name).
    Ack {
        /// Type of the acknowledged frame.
        frame_type: FrameType,
        /// Body length of the acknowledged frame, in bytes.
        len: u64,
    },
    /// `ERR <TYPE> save failed: <reason>`.
    Err {
        /// Type of the frame that failed.
        frame_type: FrameType,
        /// Free-form reason from the server.
        reason: &'a str,
    },
}

impl<'a> Reply<'a> {
    /// The acknowledgment of `frame`.
    pub fn ack(frame: &Frame<'_>) -> Reply<'static> {
        Reply::Ack {
            frame_type: frame.frame_type(),
            len: u64::try_from(frame.body().len()).unwrap_or(u64::MAX),
        }
    }

    /// Parses the payload of a TEXT frame as a reply.
    pub fn parse(text: &'a [u8]) -> Result<Self, DataExchangeError> {
        let text = core::str::from_utf8(text).map_err(|_| DataExchangeError::MalformedReply)?;
        let (verb, rest) = text
            .split_once(' ')
            .ok_or(DataExchangeError::MalformedReply)?;
        let (type_name, rest) = rest
            .split_once(' ')
            .ok_or(DataExchangeError::MalformedReply)?;
        let frame_type = type_name.parse()?;
        match verb {
            "ACK" => {
                let len = rest
                    .strip_suffix(" bytes")
                    .and_then(parse_decimal_u64)
                    .ok_or(DataExchangeError::MalformedReply)?;
                Ok(Reply::Ack { frame_type, len })
            }
            "ERR" => {
                let reason = rest
                    .strip_prefix("save failed: ")
                    .ok_or(DataExchangeError::MalformedReply)?;
                Ok(Reply::Err { frame_type, reason })
            }
            _ => Err(DataExchangeError::MalformedReply),
        }
    }

    /// Appends the reply as a TEXT frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), DataExchangeError> {
        Frame::Text(self.to_string().as_bytes()).encode(out)
    }
}

impl fmt::Display for Reply<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Ack { frame_type, len } => write!(f, "ACK {frame_type} {len} bytes"),
            Reply::Err { frame_type, reason } => {
                write!(f, "ERR {frame_type} save failed: {reason}")
            }
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
    use alloc::vec;

    fn encoded(frame: &Frame<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        frame.encode(&mut out).unwrap();
        out
    }

    #[test]
    fn file_frame_layout_has_name_prefix_inside_length() {
        let wire = encoded(&Frame::File {
            name: "a.txt",
            data: b"xy",
        });
        assert_eq!(hex::encode(&wire), "00000004000000090005612e7478747879");
        let (frame, used) = Frame::decode(&wire).unwrap();
        assert_eq!(used, wire.len());
        assert_eq!(frame.body(), b"xy");
        assert_eq!(Reply::ack(&frame).to_string(), "ACK FILE 2 bytes");
    }

    #[test]
    fn oversized_length_is_rejected_from_the_header_alone() {
        let mut decoder = FrameDecoder::new();
        decoder.feed(&[0, 0, 0, 2, 0x01, 0, 0, 0x01]);
        assert_eq!(
            decoder.next_frame(),
            Err(DataExchangeError::FrameTooLarge { len: 16_777_217 })
        );
        // Terminal: feeding more does not revive the decoder.
        decoder.feed(&[0; 16]);
        assert_eq!(
            decoder.next_frame(),
            Err(DataExchangeError::FrameTooLarge { len: 16_777_217 })
        );
        assert!(decoder.finish().is_err());
    }

    #[test]
    fn input_fed_after_a_terminal_error_is_dropped() {
        let mut decoder = FrameDecoder::new();
        decoder.feed(&[0, 0, 0, 1, 0xFF, 0xFF, 0xFF, 0xFF]);
        let error = DataExchangeError::FrameTooLarge { len: 0xFFFF_FFFF };
        assert_eq!(decoder.next_frame(), Err(error));
        for _ in 0..8 {
            decoder.feed(&[0; 4096]);
        }
        assert_eq!(decoder.pending_len(), 0);
        assert_eq!(decoder.inner.bytes.capacity(), 0);
        assert_eq!(decoder.next_frame(), Err(error));
        assert_eq!(decoder.finish(), Err(error));
    }

    #[test]
    fn max_length_frame_waits_for_its_body() {
        let mut decoder = FrameDecoder::new();
        decoder.feed(&[0, 0, 0, 2, 0x01, 0, 0, 0]);
        assert_eq!(decoder.next_frame(), Ok(None));
        assert_eq!(
            decoder.finish(),
            Err(DataExchangeError::Truncated {
                have: 8,
                need: 8 + MAX_PAYLOAD_LEN
            })
        );
    }

    #[test]
    fn decoder_yields_frames_split_across_feeds() {
        let mut wire = encoded(&Frame::Text(b"hello"));
        wire.extend(encoded(&Frame::Json(b"{}")));
        let mut decoder = FrameDecoder::new();
        let mut seen = Vec::new();
        for byte in &wire {
            decoder.feed(core::slice::from_ref(byte));
            while let Some(frame) = decoder.next_frame().unwrap() {
                seen.push((frame.frame_type(), frame.body().to_vec()));
            }
        }
        assert_eq!(
            seen,
            vec![
                (FrameType::Text, b"hello".to_vec()),
                (FrameType::Json, b"{}".to_vec())
            ]
        );
        assert_eq!(decoder.pending_len(), 0);
        assert_eq!(decoder.finish(), Ok(()));
    }

    #[test]
    fn unsafe_file_names_are_refused_both_ways() {
        for name in [".", "..", "a/b", "a\\b", "x..y"] {
            let mut out = Vec::new();
            assert_eq!(
                Frame::File { name, data: b"" }.encode(&mut out),
                Err(DataExchangeError::FileNameNotBaseName),
                "{name}"
            );
            assert!(out.is_empty());
        }
        // Not UTF-8: 0xFF as a one-byte name.
        let wire = [0, 0, 0, 4, 0, 0, 0, 3, 0, 1, 0xFF];
        assert_eq!(
            Frame::decode(&wire),
            Err(DataExchangeError::FileNameNotUtf8)
        );
        let long = "n".repeat(256);
        assert_eq!(
            Frame::File {
                name: &long,
                data: b""
            }
            .encode(&mut Vec::new()),
            Err(DataExchangeError::FileNameTooLong { len: 256 })
        );
    }

    #[test]
    fn replies_parse_and_print() {
        let ack = Reply::parse(b"ACK TEXT 17 bytes").unwrap();
        assert_eq!(
            ack,
            Reply::Ack {
                frame_type: FrameType::Text,
                len: 17
            }
        );
        let err = Reply::parse(b"ERR FILE save failed: disk full").unwrap();
        assert_eq!(err.to_string(), "ERR FILE save failed: disk full");
        assert_eq!(
            Reply::parse(b"ACK UNKNOWN(9) 1 bytes").unwrap(),
            Reply::Ack {
                frame_type: FrameType::Other(9),
                len: 1
            }
        );
        for bad in [
            &b"ACK TEXT +17 bytes"[..],
            b"ACK TEXT 17",
            b"NAK TEXT 1 bytes",
            b"ACK PDF 1 bytes",
            b"ERR TEXT oops",
            b"ACK UNKNOWN(1) 1 bytes",
            b"",
        ] {
            assert_eq!(Reply::parse(bad), Err(DataExchangeError::MalformedReply));
        }
    }
}
