//! [`PeerStream`]: an application stream (spec §8) of a running peer, as an async handle.

use std::time::Duration;

use pilot_core::addr::Addr;
use pilot_core::node::ConnectionId;
use tokio::sync::{mpsc, oneshot};

use super::{within, Command, PeerError};

/// One application stream, dialled with [`Peer::dial`](super::Peer::dial) or accepted with
/// [`Peer::accept`](super::Peer::accept). The driver task holds its state; this is a handle.
///
/// Dropping it without [`close`](Self::close) closes the stream gracefully too (FIN after
/// the data written so far). Data is delivered in order, exactly once; a read that times out
/// loses nothing.
#[derive(Debug)]
pub struct PeerStream {
    conn: ConnectionId,
    peer: Addr,
    peer_port: u16,
    commands: mpsc::Sender<Command>,
    closed: bool,
}

impl PeerStream {
    pub(super) fn new(
        conn: ConnectionId,
        peer: Addr,
        peer_port: u16,
        commands: mpsc::Sender<Command>,
    ) -> Self {
        PeerStream {
            conn,
            peer,
            peer_port,
            commands,
            closed: false,
        }
    }

    /// The remote node.
    pub fn peer(&self) -> Addr {
        self.peer
    }

    /// The remote port.
    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }

    /// Drops the handle without closing the stream (the driver resets it instead).
    pub(super) fn forget(&mut self) {
        self.closed = true;
    }

    /// Writes all of `bytes`; returns once the stream has taken them (not once the peer has
    /// acknowledged them). Waits while the send buffer is full (backpressure).
    pub async fn write_all(&mut self, bytes: &[u8]) -> Result<(), PeerError> {
        let bytes = bytes.to_vec();
        let conn = self.conn;
        self.ask(|reply| Command::StreamWrite { conn, bytes, reply })
            .await
    }

    /// The next received bytes, waiting at most `timeout`; `None` at end of stream (the
    /// peer's FIN after all its data). [`PeerError::StreamFailed`] if it was reset.
    pub async fn read(&mut self, timeout: Duration) -> Result<Option<Vec<u8>>, PeerError> {
        let conn = self.conn;
        within(
            timeout,
            self.ask(|reply| Command::StreamRead { conn, reply }),
        )
        .await
    }

    /// Reads until end of stream, failing if more than `max_bytes` arrive or nothing arrives
    /// for `idle_timeout`.
    pub async fn read_to_end(
        &mut self,
        max_bytes: usize,
        idle_timeout: Duration,
    ) -> Result<Vec<u8>, PeerError> {
        let mut received = Vec::new();
        while let Some(chunk) = self.read(idle_timeout).await? {
            received.extend_from_slice(&chunk);
            if received.len() > max_bytes {
                return Err(PeerError::Io(std::io::Error::other(format!(
                    "stream sent more than {max_bytes} bytes"
                ))));
            }
        }
        Ok(received)
    }

    /// Closes our side gracefully (spec §8.9): data written so far, then FIN. Reading the
    /// peer's remaining data is no longer possible through this handle.
    pub async fn close(mut self) -> Result<(), PeerError> {
        self.closed = true;
        let conn = self.conn;
        self.ask(|reply| Command::StreamClose {
            conn,
            reply: Some(reply),
        })
        .await
    }

    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<T, PeerError>>) -> Command,
    ) -> Result<T, PeerError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| PeerError::Stopped)?;
        answer.await.map_err(|_| PeerError::Stopped)?
    }
}

impl Drop for PeerStream {
    fn drop(&mut self) {
        if !self.closed {
            // Best effort: with the command queue full the stream stays open until the peer
            // ends it or the node shuts down.
            let _ = self.commands.try_send(Command::StreamClose {
                conn: self.conn,
                reply: None,
            });
        }
    }
}
