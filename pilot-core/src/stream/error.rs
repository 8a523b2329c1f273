//! The one error type of the stream layer.

use core::fmt;

/// Why a stream operation or a SACK decode did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamError {
    /// The send buffer is full (write) or no data is buffered yet (read); retry after a
    /// `Writable` / `Readable` event.
    WouldBlock,
    /// This side closed the stream (`close`/`abort`), or the peer's FIN closed it for writing.
    Closed,
    /// The peer reset the connection (RST received).
    Reset,
    /// The connection gave up: SYN retries, retransmissions or keepalive probes exhausted.
    TimedOut,
    /// A SACK payload is shorter than its block count says (spec §8.5).
    SackTruncated,
    /// A payload does not start with the `SACK` magic (spec §8.5).
    SackBadMagic,
    /// A SACK block count outside 1..=4 (spec §8.5).
    SackBadCount,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StreamError::WouldBlock => "stream buffer not ready, try again later",
            StreamError::Closed => "stream closed",
            StreamError::Reset => "stream reset by peer",
            StreamError::TimedOut => "stream timed out",
            StreamError::SackTruncated => "SACK payload truncated",
            StreamError::SackBadMagic => "payload does not start with SACK magic",
            StreamError::SackBadCount => "SACK block count outside 1..=4",
        })
    }
}

#[cfg(feature = "std")]
impl std::error::Error for StreamError {}
