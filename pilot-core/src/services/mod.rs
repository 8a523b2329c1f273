//! The built-in stream services (spec §10): codecs for data exchange and event stream, and
//! the sans-IO state machines a node hosts on its service ports (echo, data exchange server,
//! event stream broker, trust handshake).
//!
//! Data exchange and event stream run over an ordinary stream connection, so a frame may
//! arrive split across any number of segments, or several frames in one (spec §10: framing is
//! independent of segment boundaries). Each codec therefore offers a one-shot `decode` over a
//! complete buffer and an incremental decoder that is fed bytes as they arrive and yields
//! complete frames. The codecs hold no policy: subscription and reply logic live in [`broker`] and
//! [`exchange_server`].
//!
//! Incremental decoders share one contract:
//! * `feed` appends received bytes; memory held is what was fed and not yet yielded.
//! * `next_*` returns `Ok(Some(frame))` for each complete frame, borrowing the decoder until
//!   the next call, and `Ok(None)` when more bytes are needed.
//! * A declared length over the limit is rejected as soon as its length field has arrived,
//!   before any of the body is buffered or allocated for.
//! * Errors are terminal: once an error is returned, every later call returns it again and
//!   the connection should be closed. Later `feed`s are dropped (the first one also releases
//!   the buffer), so a peer that keeps sending after the error cannot grow the decoder's
//!   memory.
//! * `finish` tells, at end of stream, whether the stream stopped inside a frame.

use alloc::vec::Vec;

pub mod broker;
pub mod dataexchange;
pub mod echo;
pub mod eventstream;
pub mod exchange_server;
pub mod trust_service;

/// An opaque handle for one stream connection, chosen by the node that owns the streams.
///
/// The service machines never look inside it; they only key their per-connection state by it.
/// The node must not reuse a value while the connection it named is still open at a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// What a parser found at the start of a buffer.
#[derive(Debug)]
enum Step<T> {
    /// A complete frame and the bytes it occupies.
    Complete(T, usize),
    /// The buffer ends inside a frame that needs `need` bytes in total.
    Incomplete {
        /// Total length of the frame, as far as the bytes present tell.
        need: usize,
    },
}

/// The shared machinery of the incremental decoders: a byte buffer, the length of the frame
/// handed out last (released on the next call), and the terminal error, if any.
#[derive(Debug)]
struct Incremental<E> {
    bytes: Vec<u8>,
    /// Bytes at the front of `bytes` already yielded as frames.
    consumed: usize,
    /// Length of the frame most recently yielded; it stays borrowed until the next call.
    lent: usize,
    failed: Option<E>,
}

impl<E: Copy> Incremental<E> {
    const fn new() -> Self {
        Incremental {
            bytes: Vec::new(),
            consumed: 0,
            lent: 0,
            failed: None,
        }
    }

    fn feed(&mut self, data: &[u8]) {
        // After a terminal error nothing more will be parsed: keeping the bytes would only let
        // the peer grow memory without bound.
        if self.failed.is_some() {
            self.bytes = Vec::new();
            self.consumed = 0;
            self.lent = 0;
            return;
        }
        self.release_lent();
        // Compact before growing so memory tracks the unread bytes, not the stream's history.
        if self.consumed == self.bytes.len() {
            self.bytes.clear();
        } else if self.consumed > 0 {
            self.bytes.drain(..self.consumed);
        }
        self.consumed = 0;
        self.bytes.extend_from_slice(data);
    }

    fn release_lent(&mut self) {
        self.consumed = self
            .consumed
            .saturating_add(core::mem::take(&mut self.lent))
            .min(self.bytes.len());
    }

    fn unread(&self) -> &[u8] {
        self.bytes.get(self.consumed..).unwrap_or_default()
    }

    /// Releases the frame lent out last, then runs `parse` over the unread bytes.
    fn next<'a, T>(
        &'a mut self,
        parse: impl FnOnce(&'a [u8]) -> Result<Step<T>, E>,
    ) -> Result<Option<T>, E> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        self.release_lent();

        let unread = self.bytes.get(self.consumed..).unwrap_or_default();
        match parse(unread) {
            Ok(Step::Complete(frame, len)) => {
                self.lent = len;
                Ok(Some(frame))
            }
            Ok(Step::Incomplete { .. }) => Ok(None),
            Err(error) => {
                // The buffer is released by the next `feed`: `parse` borrows it for `'a`.
                self.failed = Some(error);
                Err(error)
            }
        }
    }

    /// Bytes fed but not yet yielded (the frame lent out last counts as yielded).
    fn pending(&self) -> &[u8] {
        self.unread().get(self.lent..).unwrap_or_default()
    }

    /// End of stream: `Ok` if the pending bytes end on a frame boundary. Otherwise the error
    /// returned earlier, the error a pending frame would raise, or `truncated(have, need)` for
    /// the frame the stream stopped inside.
    fn finish<'a, T>(
        &'a self,
        parse: impl Fn(&'a [u8]) -> Result<Step<T>, E>,
        truncated: impl FnOnce(usize, usize) -> E,
    ) -> Result<(), E> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        // Complete frames the caller has not pulled yet are skipped, not counted as a cut.
        let mut rest = self.pending();
        while !rest.is_empty() {
            match parse(rest)? {
                Step::Complete(_, len) => rest = rest.get(len..).unwrap_or_default(),
                Step::Incomplete { need } => return Err(truncated(rest.len(), need)),
            }
        }
        Ok(())
    }
}

/// Unsigned decimal of ASCII digits only; `None` if empty or out of range.
///
/// Hand-written because Rust's integer parsers accept a leading `+`.
fn parse_decimal_u64(text: &str) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    text.bytes().try_fold(0u64, |acc, b| {
        let digit = char::from(b).to_digit(10)?;
        acc.checked_mul(10)?.checked_add(u64::from(digit))
    })
}
