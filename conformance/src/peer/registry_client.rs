//! A registry client over TCP (spec §9.1 framing, JSON bodies from `pilot_core::registry`).
//!
//! One request at a time, answered in order; the connection is (re)opened on demand, so a
//! registry that closed an idle connection costs one reconnect.

use std::net::SocketAddr;

use pilot_core::registry::{FrameReader, Request, Response};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::PeerError;

/// Read buffer for registry responses.
const READ_CHUNK_BYTES: usize = 4096;

/// A connection to one registry.
#[derive(Debug)]
pub struct RegistryClient {
    addr: SocketAddr,
    conn: Option<(TcpStream, FrameReader)>,
}

impl RegistryClient {
    /// A client of the registry at `addr`; nothing is connected yet.
    pub fn new(addr: SocketAddr) -> Self {
        RegistryClient { addr, conn: None }
    }

    /// Sends `request` and waits for its response. A registry `error` response is returned
    /// as [`Response::Error`], not as `Err`.
    pub async fn call(&mut self, request: &Request) -> Result<Response, PeerError> {
        let result = self.try_call(request).await;
        if result.is_err() {
            // Whatever was half-read is lost: start over on the next call.
            self.conn = None;
        }
        result
    }

    async fn try_call(&mut self, request: &Request) -> Result<Response, PeerError> {
        let frame = request.encode()?;
        let (stream, reader) = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let stream = TcpStream::connect(self.addr).await.map_err(|err| {
                    PeerError::Io(std::io::Error::new(
                        err.kind(),
                        format!(
                            "cannot connect to the registry at {}: {err} (is pilot-registry \
                             running there? point --registry or PILOT_PEER_REGISTRY at it)",
                            self.addr
                        ),
                    ))
                })?;
                self.conn.insert((stream, FrameReader::new()))
            }
        };
        stream.write_all(&frame).await?;
        let mut buf = [0u8; READ_CHUNK_BYTES];
        loop {
            if let Some(body) = reader.next_message()? {
                return Ok(Response::decode(&body)?);
            }
            let n = stream.read(&mut buf).await?;
            let chunk = buf.get(..n).unwrap_or_default();
            if chunk.is_empty() {
                return Err(PeerError::RegistryClosed);
            }
            reader.push(chunk);
        }
    }
}
