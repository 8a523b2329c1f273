//! Echo, virtual port 7 (spec §10.1): every chunk received is written back unchanged.
//!
//! The machine buffers nothing. [`EchoService::receive`] hands back the part of the chunk the
//! node may write now (borrowed from the input, since the reply is the input) and the part it
//! must hold back. A connection may have at most [`EchoConfig::max_unflushed_bytes`] echoed
//! but not yet taken by the transport; the node reports progress with
//! [`EchoService::written`]. While bytes are held back the node should stop reading that
//! stream, so the peer's sender sees a closed receive window instead of the echo service
//! growing a queue (backpressure rather than buffering).

use alloc::collections::BTreeMap;
use core::fmt;

use super::ConnId;
use crate::addr::ports;

/// The port the service listens on.
pub const PORT: u16 = ports::ECHO;

/// Default for [`EchoConfig::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// Default for [`EchoConfig::max_unflushed_bytes`] (64 KiB, about one stream window).
pub const DEFAULT_MAX_UNFLUSHED_BYTES: usize = 64 * 1024;

/// Limits of an [`EchoService`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoConfig {
    /// Most connections open at once; more are refused at [`EchoService::open`].
    pub max_connections: usize,
    /// Most bytes per connection handed out for writing and not yet reported written.
    pub max_unflushed_bytes: usize,
}

impl Default for EchoConfig {
    fn default() -> Self {
        EchoConfig {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_unflushed_bytes: DEFAULT_MAX_UNFLUSHED_BYTES,
        }
    }
}

/// Why the echo service refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoError {
    /// [`EchoConfig::max_connections`] connections are already open.
    TooManyConnections,
    /// The connection is already open at this service.
    AlreadyOpen,
    /// The connection is not open at this service.
    UnknownConnection,
}

impl fmt::Display for EchoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EchoError::TooManyConnections => f.write_str("echo service connection limit reached"),
            EchoError::AlreadyOpen => f.write_str("echo connection already open"),
            EchoError::UnknownConnection => f.write_str("echo connection not open"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for EchoError {}

/// What to do with one received chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echoed<'a> {
    /// Write these bytes back on the same connection now.
    pub write: &'a [u8],
    /// Not echoed yet: the connection's unflushed limit is reached. Keep them (stop reading the
    /// stream) and offer them again after [`EchoService::written`] made room.
    pub held_back: &'a [u8],
}

/// The echo service: per connection, only the count of unflushed bytes.
#[derive(Debug, Default)]
pub struct EchoService {
    config: EchoConfig,
    unflushed: BTreeMap<ConnId, usize>,
}

impl EchoService {
    /// A service with the given limits.
    pub fn new(config: EchoConfig) -> Self {
        EchoService {
            config,
            unflushed: BTreeMap::new(),
        }
    }

    /// A connection to port 7 was accepted.
    pub fn open(&mut self, conn: ConnId) -> Result<(), EchoError> {
        if self.unflushed.contains_key(&conn) {
            return Err(EchoError::AlreadyOpen);
        }
        if self.unflushed.len() >= self.config.max_connections {
            return Err(EchoError::TooManyConnections);
        }
        self.unflushed.insert(conn, 0);
        Ok(())
    }

    /// Bytes arrived on `conn`: splits them into what to write back now and what to hold.
    pub fn receive<'a>(&mut self, conn: ConnId, data: &'a [u8]) -> Result<Echoed<'a>, EchoError> {
        let unflushed = self
            .unflushed
            .get_mut(&conn)
            .ok_or(EchoError::UnknownConnection)?;
        let room = self.config.max_unflushed_bytes.saturating_sub(*unflushed);
        let (write, held_back) = data.split_at(room.min(data.len()));
        *unflushed = unflushed.saturating_add(write.len());
        Ok(Echoed { write, held_back })
    }

    /// The transport took `len` of the echoed bytes of `conn`.
    pub fn written(&mut self, conn: ConnId, len: usize) -> Result<(), EchoError> {
        let unflushed = self
            .unflushed
            .get_mut(&conn)
            .ok_or(EchoError::UnknownConnection)?;
        *unflushed = unflushed.saturating_sub(len);
        Ok(())
    }

    /// Bytes of `conn` handed out for writing and not yet reported written.
    pub fn unflushed_len(&self, conn: ConnId) -> Option<usize> {
        self.unflushed.get(&conn).copied()
    }

    /// The connection closed (either side); forgets it.
    pub fn close(&mut self, conn: ConnId) {
        self.unflushed.remove(&conn);
    }

    /// Connections currently open.
    pub fn connection_count(&self) -> usize {
        self.unflushed.len()
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

    fn small() -> EchoService {
        EchoService::new(EchoConfig {
            max_connections: 2,
            max_unflushed_bytes: 4,
        })
    }

    #[test]
    fn chunk_within_limit_is_written_back_unchanged() {
        let mut echo = EchoService::default();
        echo.open(ConnId(1)).unwrap();
        let out = echo.receive(ConnId(1), b"hello").unwrap();
        assert_eq!(out.write, b"hello");
        assert!(out.held_back.is_empty());
        assert_eq!(echo.unflushed_len(ConnId(1)), Some(5));
    }

    #[test]
    fn full_connection_holds_bytes_back_until_written() {
        let mut echo = small();
        echo.open(ConnId(1)).unwrap();
        let out = echo.receive(ConnId(1), b"abcdef").unwrap();
        assert_eq!((out.write, out.held_back), (&b"abcd"[..], &b"ef"[..]));
        let out = echo.receive(ConnId(1), b"ef").unwrap();
        assert_eq!((out.write, out.held_back), (&b""[..], &b"ef"[..]));
        echo.written(ConnId(1), 3).unwrap();
        let out = echo.receive(ConnId(1), b"ef").unwrap();
        assert_eq!((out.write, out.held_back), (&b"ef"[..], &b""[..]));
        assert_eq!(echo.unflushed_len(ConnId(1)), Some(3));
    }

    #[test]
    fn connection_limit_and_unknown_connections_are_refused() {
        let mut echo = small();
        echo.open(ConnId(1)).unwrap();
        assert_eq!(echo.open(ConnId(1)), Err(EchoError::AlreadyOpen));
        echo.open(ConnId(2)).unwrap();
        assert_eq!(echo.open(ConnId(3)), Err(EchoError::TooManyConnections));
        assert_eq!(
            echo.receive(ConnId(3), b"x"),
            Err(EchoError::UnknownConnection)
        );
        echo.close(ConnId(1));
        assert_eq!(echo.open(ConnId(3)), Ok(()));
        assert_eq!(echo.connection_count(), 2);
    }
}
