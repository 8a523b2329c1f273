//! Framing of tunnel frames on a TCP stream (spec §7.5, V-FORK `-tcp-listen`).
//!
//! Each frame travels as `u32 BE length ‖ frame`, where the frame is exactly what a UDP
//! datagram would carry. A declared length above [`MAX_TCP_FRAME`] means the peer is broken or
//! hostile; the connection must be dropped, so the deframer stops for good.
//!
//! Beacon messages have no meaning on TCP (there is no UDP source address to answer), so the
//! engine ignores frames whose first byte is a beacon code; this module does not look inside.
//!
//! A zero-length frame carries nothing to dispatch (spec §3.1 would drop it as shorter than a
//! magic), and the stream stays in step after it, so the deframer skips it rather than
//! failing the connection.

use alloc::vec::Vec;
use core::fmt;

/// Largest frame accepted or sent on a TCP stream, in bytes (spec §7.5: 1 MiB).
pub const MAX_TCP_FRAME: usize = 1_048_576;
/// Bytes of the length prefix.
pub const LENGTH_PREFIX_LEN: usize = 4;

/// Why a frame could not be framed or the stream cannot be read further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpFrameError {
    /// The frame to send is longer than [`MAX_TCP_FRAME`].
    FrameTooLarge {
        /// Frame length.
        len: usize,
    },
    /// The peer declared a frame longer than [`MAX_TCP_FRAME`]; drop the connection.
    DeclaredTooLarge {
        /// Declared length.
        declared: u32,
    },
}

impl fmt::Display for TcpFrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FrameTooLarge { len } => {
                write!(
                    f,
                    "frame of {len} bytes exceeds the TCP limit {MAX_TCP_FRAME}"
                )
            }
            Self::DeclaredTooLarge { declared } => write!(
                f,
                "peer declared a {declared}-byte frame, above the TCP limit {MAX_TCP_FRAME}"
            ),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TcpFrameError {}

/// Appends `u32 BE length ‖ frame` to `out`.
pub fn encode(frame: &[u8], out: &mut Vec<u8>) -> Result<(), TcpFrameError> {
    let len = u32::try_from(frame.len())
        .ok()
        .filter(|_| frame.len() <= MAX_TCP_FRAME)
        .ok_or(TcpFrameError::FrameTooLarge { len: frame.len() })?;
    out.reserve(LENGTH_PREFIX_LEN + frame.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(frame);
    Ok(())
}

/// Where the deframer is in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting the 4 length bytes; `have` of them are in `prefix`.
    Length {
        prefix: [u8; LENGTH_PREFIX_LEN],
        have: usize,
    },
    /// Collecting a frame body of `len` bytes into the buffer.
    Body { len: usize },
    /// A length above the limit was seen; nothing more is read.
    Failed { declared: u32 },
}

/// Turns a TCP byte stream back into frames, however the bytes were split.
///
/// It holds at most one partial frame, so its memory never exceeds [`MAX_TCP_FRAME`] bytes,
/// and it grows the buffer only as body bytes actually arrive: a peer that declares 1 MiB and
/// sends nothing costs nothing.
#[derive(Debug, Clone)]
pub struct TcpDeframer {
    state: State,
    body: Vec<u8>,
}

impl Default for TcpDeframer {
    fn default() -> Self {
        Self::new()
    }
}

impl TcpDeframer {
    /// A deframer at the start of a stream.
    pub fn new() -> Self {
        Self {
            state: State::Length {
                prefix: [0; LENGTH_PREFIX_LEN],
                have: 0,
            },
            body: Vec::new(),
        }
    }

    /// Consumes bytes from the front of `input` until a frame is complete and returns it.
    ///
    /// Returns `Ok(None)` once `input` is used up without completing a frame; the partial
    /// frame is kept for the next call. Call it again with the rest of `input` until it
    /// returns `Ok(None)`:
    ///
    /// ```
    /// # use pilot_core::frame::tcp::{encode, TcpDeframer};
    /// let mut stream = Vec::new();
    /// encode(b"PILP", &mut stream).unwrap();
    /// encode(b"PILK....", &mut stream).unwrap();
    ///
    /// let mut deframer = TcpDeframer::new();
    /// let mut input = &stream[..];
    /// let mut frames = Vec::new();
    /// while let Some(frame) = deframer.next_frame(&mut input).unwrap() {
    ///     frames.push(frame);
    /// }
    /// assert_eq!(frames, [b"PILP".to_vec(), b"PILK....".to_vec()]);
    /// ```
    ///
    /// After [`TcpFrameError::DeclaredTooLarge`] every call fails the same way and consumes
    /// nothing: the connection must be dropped.
    pub fn next_frame(&mut self, input: &mut &[u8]) -> Result<Option<Vec<u8>>, TcpFrameError> {
        loop {
            match &mut self.state {
                State::Failed { declared } => {
                    return Err(TcpFrameError::DeclaredTooLarge {
                        declared: *declared,
                    })
                }
                State::Length { prefix, have } => {
                    let Some(slot) = prefix.get_mut(*have..) else {
                        return Ok(None);
                    };
                    let take = slot.len().min(input.len());
                    let (head, rest) = input.split_at(take);
                    if let Some(dst) = slot.get_mut(..take) {
                        dst.copy_from_slice(head);
                    }
                    *input = rest;
                    *have += take;
                    if *have < LENGTH_PREFIX_LEN {
                        return Ok(None);
                    }
                    let declared = u32::from_be_bytes(*prefix);
                    self.state = Self::after_length(declared);
                }
                State::Body { len } => {
                    let len = *len;
                    let missing = len.saturating_sub(self.body.len());
                    let take = missing.min(input.len());
                    let (head, rest) = input.split_at(take);
                    grow_towards(&mut self.body, take, len);
                    self.body.extend_from_slice(head);
                    *input = rest;
                    if self.body.len() < len {
                        return Ok(None);
                    }
                    self.state = Self::start_length();
                    return Ok(Some(core::mem::take(&mut self.body)));
                }
            }
        }
    }

    /// Bytes held of the frame in progress (length prefix included).
    pub fn buffered(&self) -> usize {
        match self.state {
            State::Length { have, .. } => have,
            State::Body { .. } => LENGTH_PREFIX_LEN + self.body.len(),
            State::Failed { .. } => 0,
        }
    }

    /// Whether the stream ended cleanly here: no partial frame held and no error seen.
    pub fn is_at_frame_boundary(&self) -> bool {
        matches!(self.state, State::Length { have: 0, .. })
    }

    fn start_length() -> State {
        State::Length {
            prefix: [0; LENGTH_PREFIX_LEN],
            have: 0,
        }
    }

    /// The state after a complete length prefix: skip an empty frame, fail on a huge one.
    fn after_length(declared: u32) -> State {
        match usize::try_from(declared) {
            Ok(0) => Self::start_length(),
            Ok(len) if len <= MAX_TCP_FRAME => State::Body { len },
            _ => State::Failed { declared },
        }
    }
}

/// Makes room for `more` bytes in `body`, doubling as `Vec` would but never past `len`, so a
/// frame's buffer holds at most the declared length.
fn grow_towards(body: &mut Vec<u8>, more: usize, len: usize) {
    let needed = body.len().saturating_add(more);
    if needed <= body.capacity() {
        return;
    }
    let target = body
        .capacity()
        .saturating_mul(2)
        .max(needed)
        .min(len.max(needed));
    body.reserve_exact(target.saturating_sub(body.len()));
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

    fn frames_of(deframer: &mut TcpDeframer, mut input: &[u8]) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        while let Some(frame) = deframer.next_frame(&mut input).unwrap() {
            frames.push(frame);
        }
        assert!(input.is_empty(), "input left unread");
        frames
    }

    #[test]
    fn encode_writes_a_big_endian_length_prefix() {
        let mut out = Vec::new();
        encode(&[0xab; 0x0102], &mut out).unwrap();
        assert_eq!(&out[..4], &[0, 0, 1, 2]);
        assert_eq!(out.len(), 4 + 0x0102);
    }

    #[test]
    fn encode_refuses_a_frame_over_one_mebibyte() {
        let mut out = Vec::new();
        assert!(encode(&vec![0; MAX_TCP_FRAME], &mut out).is_ok());
        out.clear();
        assert_eq!(
            encode(&vec![0; MAX_TCP_FRAME + 1], &mut out),
            Err(TcpFrameError::FrameTooLarge {
                len: MAX_TCP_FRAME + 1
            })
        );
        assert!(out.is_empty());
    }

    #[test]
    fn frames_split_at_every_byte_come_out_whole() {
        let mut stream = Vec::new();
        encode(b"PILS-one", &mut stream).unwrap();
        encode(b"PILA-two-longer", &mut stream).unwrap();
        let mut deframer = TcpDeframer::new();
        let mut frames = Vec::new();
        for byte in &stream {
            frames.extend(frames_of(&mut deframer, core::slice::from_ref(byte)));
        }
        assert_eq!(frames, [b"PILS-one".to_vec(), b"PILA-two-longer".to_vec()]);
        assert!(deframer.is_at_frame_boundary());
    }

    #[test]
    fn a_partial_frame_waits_for_the_rest() {
        let mut stream = Vec::new();
        encode(b"PILK-frame", &mut stream).unwrap();
        let mut deframer = TcpDeframer::new();
        assert!(frames_of(&mut deframer, &stream[..6]).is_empty());
        assert_eq!(deframer.buffered(), 6);
        assert!(!deframer.is_at_frame_boundary());
        assert_eq!(
            frames_of(&mut deframer, &stream[6..]),
            [b"PILK-frame".to_vec()]
        );
    }

    #[test]
    fn a_zero_length_frame_is_skipped() {
        let mut stream = vec![0, 0, 0, 0];
        encode(b"PILP", &mut stream).unwrap();
        let mut deframer = TcpDeframer::new();
        assert_eq!(frames_of(&mut deframer, &stream), [b"PILP".to_vec()]);
    }

    #[test]
    fn a_declared_length_over_the_limit_is_terminal() {
        let too_big = u32::try_from(MAX_TCP_FRAME + 1).unwrap().to_be_bytes();
        let mut stream = too_big.to_vec();
        encode(b"PILP", &mut stream).unwrap();
        let mut deframer = TcpDeframer::new();
        let mut input = &stream[..];
        let error = TcpFrameError::DeclaredTooLarge {
            declared: u32::try_from(MAX_TCP_FRAME + 1).unwrap(),
        };
        assert_eq!(deframer.next_frame(&mut input), Err(error));
        // Later bytes are never read as frames.
        assert_eq!(deframer.next_frame(&mut input), Err(error));
        assert_eq!(input.len(), 8);
    }

    #[test]
    fn a_frame_of_exactly_the_limit_is_accepted() {
        let mut stream = Vec::new();
        encode(&vec![7; MAX_TCP_FRAME], &mut stream).unwrap();
        let mut deframer = TcpDeframer::new();
        let frames = frames_of(&mut deframer, &stream);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].len(), MAX_TCP_FRAME);
    }

    #[test]
    fn the_body_buffer_never_outgrows_the_declared_length() {
        let len = 100_000;
        let mut stream = Vec::new();
        encode(&vec![1; len], &mut stream).unwrap();
        let mut deframer = TcpDeframer::new();
        for chunk in stream[..stream.len() - 1].chunks(1000) {
            assert!(frames_of(&mut deframer, chunk).is_empty());
            assert!(deframer.body.capacity() <= len);
        }
    }
}
