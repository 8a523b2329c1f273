//! Data exchange service, virtual port 1001 (spec §10.3): the server that acknowledges every
//! frame, and a client that frames what it sends and matches the acknowledgments.
//!
//! Server: per connection an incremental [`FrameDecoder`]. Every complete frame is delivered
//! to the application as [`ExchangeOutput::Received`] and answered with the TEXT frame
//! `ACK <TYPE> <n> bytes` ([`Reply::ack`]; for FILE `n` counts the bytes after the name).
//! A frame that cannot be decoded ends the connection: nothing more is written for it and
//! [`ExchangeOutput::Close`] carries the verdict. Storing the content (inbox, files) is the
//! application's business; this server never answers `ERR … save failed`.
//!
//! Memory: a connection holds at most one partial frame (≤ [`MAX_PAYLOAD_LEN`] plus header,
//! the decoder refuses larger lengths from the header alone) and at most
//! [`ExchangeConfig::max_connections`] connections are open.
//!
//! [`MAX_PAYLOAD_LEN`]: super::dataexchange::MAX_PAYLOAD_LEN

use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use super::dataexchange::{DataExchangeError, Frame, FrameDecoder, FrameType, Reply};
use super::ConnId;

/// Default for [`ExchangeConfig::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// Most frames a client may have sent without their reply.
pub const MAX_AWAITED_REPLIES: usize = 4096;

/// Limits of an [`ExchangeServer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExchangeConfig {
    /// Most connections open at once; more are refused at [`ExchangeServer::open`].
    pub max_connections: usize,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        ExchangeConfig {
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Why a data exchange server or client call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeError {
    /// [`ExchangeConfig::max_connections`] connections are already open.
    TooManyConnections,
    /// The connection is already open at this service.
    AlreadyOpen,
    /// The connection is not open at this service (never opened, closed, or ended by an
    /// earlier decode error).
    UnknownConnection,
    /// A frame could not be encoded or decoded.
    Frame(DataExchangeError),
    /// The server sent a reply that is not a TEXT frame.
    ReplyNotText {
        /// The type it had.
        frame_type: FrameType,
    },
    /// A reply arrived while no frame was awaiting one.
    UnexpectedReply,
    /// The reply names another type or length than the oldest unanswered frame.
    ReplyMismatch {
        /// Type and body length of the frame the reply should answer.
        expected: (FrameType, u64),
        /// Type and length the reply names.
        got: (FrameType, u64),
    },
    /// [`MAX_AWAITED_REPLIES`] frames are already awaiting their reply.
    TooManyAwaited,
}

impl From<DataExchangeError> for ExchangeError {
    fn from(error: DataExchangeError) -> Self {
        ExchangeError::Frame(error)
    }
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExchangeError::TooManyConnections => {
                f.write_str("data exchange connection limit reached")
            }
            ExchangeError::AlreadyOpen => f.write_str("data exchange connection already open"),
            ExchangeError::UnknownConnection => f.write_str("data exchange connection not open"),
            ExchangeError::Frame(error) => write!(f, "{error}"),
            ExchangeError::ReplyNotText { frame_type } => {
                write!(f, "data exchange reply is a {frame_type} frame, not TEXT")
            }
            ExchangeError::UnexpectedReply => f.write_str("data exchange reply to no frame"),
            ExchangeError::ReplyMismatch { expected, got } => write!(
                f,
                "data exchange reply for {} {} bytes, expected {} {} bytes",
                got.0, got.1, expected.0, expected.1
            ),
            ExchangeError::TooManyAwaited => {
                f.write_str("too many data exchange frames awaiting a reply")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for ExchangeError {}

/// What the server tells its host after a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeOutput {
    /// Write these bytes on `conn`.
    Write {
        /// The connection.
        conn: ConnId,
        /// Bytes to write (an encoded reply frame).
        bytes: Vec<u8>,
    },
    /// A frame arrived; hand it to the application.
    Received {
        /// The connection it came on.
        conn: ConnId,
        /// Its type.
        frame_type: FrameType,
        /// For FILE, the base name the sender gave (possibly empty); `None` otherwise.
        filename: Option<String>,
        /// The body: the payload, or for FILE the bytes after the name.
        payload: Vec<u8>,
    },
    /// The stream of `conn` is broken: close the connection. The server has forgotten it.
    Close {
        /// The connection.
        conn: ConnId,
        /// Why.
        error: DataExchangeError,
    },
}

/// The data exchange server: one incremental decoder per open connection.
#[derive(Debug, Default)]
pub struct ExchangeServer {
    config: ExchangeConfig,
    conns: BTreeMap<ConnId, FrameDecoder>,
}

impl ExchangeServer {
    /// A server with the given limits.
    pub fn new(config: ExchangeConfig) -> Self {
        ExchangeServer {
            config,
            conns: BTreeMap::new(),
        }
    }

    /// A connection to port 1001 was accepted.
    pub fn open(&mut self, conn: ConnId) -> Result<(), ExchangeError> {
        if self.conns.contains_key(&conn) {
            return Err(ExchangeError::AlreadyOpen);
        }
        if self.conns.len() >= self.config.max_connections {
            return Err(ExchangeError::TooManyConnections);
        }
        self.conns.insert(conn, FrameDecoder::new());
        Ok(())
    }

    /// Bytes arrived on `conn`, split anywhere. Returns, in order, a `Received` and the reply
    /// `Write` for every frame they complete, and a final `Close` if the stream is broken.
    pub fn receive(
        &mut self,
        conn: ConnId,
        data: &[u8],
    ) -> Result<Vec<ExchangeOutput>, ExchangeError> {
        let decoder = self
            .conns
            .get_mut(&conn)
            .ok_or(ExchangeError::UnknownConnection)?;
        decoder.feed(data);

        let mut out = Vec::new();
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    let mut reply = Vec::new();
                    // An ACK is a few dozen bytes, far below the frame limit: cannot fail.
                    Reply::ack(&frame).encode(&mut reply)?;
                    out.push(received(conn, &frame));
                    out.push(ExchangeOutput::Write { conn, bytes: reply });
                }
                Ok(None) => break,
                Err(error) => {
                    self.conns.remove(&conn);
                    out.push(ExchangeOutput::Close { conn, error });
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The peer closed `conn` (or the node did): forgets it. `Err` if the stream stopped
    /// inside a frame, for the host to log.
    pub fn close(&mut self, conn: ConnId) -> Result<(), DataExchangeError> {
        match self.conns.remove(&conn) {
            Some(decoder) => decoder.finish(),
            None => Ok(()),
        }
    }

    /// Connections currently open.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }
}

fn received(conn: ConnId, frame: &Frame<'_>) -> ExchangeOutput {
    let filename = match frame {
        Frame::File { name, .. } => Some(name.to_string()),
        _ => None,
    };
    ExchangeOutput::Received {
        conn,
        frame_type: frame.frame_type(),
        filename,
        payload: frame.body().to_vec(),
    }
}

/// What the server answered to one of the client's frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeReply {
    /// `ACK`: the server took the frame.
    Acked {
        /// Type of the acknowledged frame.
        frame_type: FrameType,
        /// Body length the server counted.
        len: u64,
    },
    /// `ERR … save failed`: the server received the frame but could not store it.
    Failed {
        /// Type of the frame.
        frame_type: FrameType,
        /// The server's reason, as sent (untrusted text).
        reason: String,
    },
}

/// The client side of one data exchange connection: frames what the application sends and
/// checks each reply against the oldest frame still awaiting one (the server answers in order).
#[derive(Debug, Default)]
pub struct ExchangeClient {
    replies: FrameDecoder,
    awaited: VecDeque<(FrameType, u64)>,
}

impl ExchangeClient {
    /// A client for a freshly opened connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes to write for `frame` (text, JSON, binary: `Frame::Text(..)` …; a file:
    /// `Frame::File { name, data }`); remembers the reply it expects.
    pub fn send(&mut self, frame: &Frame<'_>) -> Result<Vec<u8>, ExchangeError> {
        if self.awaited.len() >= MAX_AWAITED_REPLIES {
            return Err(ExchangeError::TooManyAwaited);
        }
        let mut bytes = Vec::new();
        frame.encode(&mut bytes)?;
        let len = u64::try_from(frame.body().len()).unwrap_or(u64::MAX);
        self.awaited.push_back((frame.frame_type(), len));
        Ok(bytes)
    }

    /// Bytes from the server, split anywhere: the replies they complete, in order. Any error
    /// means the connection is no longer usable.
    pub fn receive(&mut self, data: &[u8]) -> Result<Vec<ExchangeReply>, ExchangeError> {
        self.replies.feed(data);
        let mut out = Vec::new();
        while let Some(frame) = self.replies.next_frame()? {
            let Frame::Text(text) = frame else {
                return Err(ExchangeError::ReplyNotText {
                    frame_type: frame.frame_type(),
                });
            };
            let reply = Reply::parse(text)?;
            let expected = self
                .awaited
                .pop_front()
                .ok_or(ExchangeError::UnexpectedReply)?;
            out.push(match reply {
                Reply::Ack { frame_type, len } if (frame_type, len) == expected => {
                    ExchangeReply::Acked { frame_type, len }
                }
                Reply::Ack { frame_type, len } => {
                    return Err(ExchangeError::ReplyMismatch {
                        expected,
                        got: (frame_type, len),
                    })
                }
                Reply::Err { frame_type, reason } if frame_type == expected.0 => {
                    ExchangeReply::Failed {
                        frame_type,
                        reason: reason.to_string(),
                    }
                }
                Reply::Err { frame_type, .. } => {
                    return Err(ExchangeError::ReplyMismatch {
                        expected,
                        got: (frame_type, expected.1),
                    })
                }
            });
        }
        Ok(out)
    }

    /// Frames sent whose reply has not arrived yet.
    pub fn awaited_len(&self) -> usize {
        self.awaited.len()
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

    fn wire(frame: &Frame<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        frame.encode(&mut out).unwrap();
        out
    }

    fn ack_text(out: &ExchangeOutput) -> String {
        let ExchangeOutput::Write { bytes, .. } = out else {
            panic!("not a write: {out:?}")
        };
        let (Frame::Text(text), _) = Frame::decode(bytes).unwrap() else {
            panic!("reply not TEXT")
        };
        String::from_utf8(text.to_vec()).unwrap()
    }

    #[test]
    fn every_frame_is_delivered_and_acknowledged() {
        let mut server = ExchangeServer::default();
        server.open(ConnId(7)).unwrap();
        let mut stream = wire(&Frame::Text(b"hi"));
        stream.extend(wire(&Frame::File {
            name: "a.txt",
            data: b"xyz",
        }));
        let out = server.receive(ConnId(7), &stream).unwrap();
        assert_eq!(out.len(), 4);
        assert_eq!(
            out[0],
            ExchangeOutput::Received {
                conn: ConnId(7),
                frame_type: FrameType::Text,
                filename: None,
                payload: b"hi".to_vec()
            }
        );
        assert_eq!(ack_text(&out[1]), "ACK TEXT 2 bytes");
        assert_eq!(
            out[2],
            ExchangeOutput::Received {
                conn: ConnId(7),
                frame_type: FrameType::File,
                filename: Some("a.txt".into()),
                payload: b"xyz".to_vec()
            }
        );
        // spec §10.3: for FILE the count is of the bytes after the name.
        assert_eq!(ack_text(&out[3]), "ACK FILE 3 bytes");
        assert_eq!(server.close(ConnId(7)), Ok(()));
    }

    #[test]
    fn frame_split_byte_by_byte_is_acknowledged_once_complete() {
        let mut server = ExchangeServer::default();
        server.open(ConnId(1)).unwrap();
        let stream = wire(&Frame::Json(b"{}"));
        let (last, head) = stream.split_last().unwrap();
        for byte in head {
            assert!(server
                .receive(ConnId(1), core::slice::from_ref(byte))
                .unwrap()
                .is_empty());
        }
        let out = server.receive(ConnId(1), &[*last]).unwrap();
        assert_eq!(ack_text(&out[1]), "ACK JSON 2 bytes");
    }

    #[test]
    fn decode_error_closes_without_a_reply_and_forgets_the_connection() {
        let mut server = ExchangeServer::default();
        server.open(ConnId(1)).unwrap();
        let mut stream = wire(&Frame::Binary(b"ok"));
        // A FILE frame whose name is a path.
        stream.extend([0, 0, 0, 4, 0, 0, 0, 5, 0, 3, b'a', b'/', b'b']);
        stream.extend(wire(&Frame::Text(b"never read")));
        let out = server.receive(ConnId(1), &stream).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(ack_text(&out[1]), "ACK BINARY 2 bytes");
        assert_eq!(
            out[2],
            ExchangeOutput::Close {
                conn: ConnId(1),
                error: DataExchangeError::FileNameNotBaseName
            }
        );
        assert_eq!(
            server.receive(ConnId(1), b"x"),
            Err(ExchangeError::UnknownConnection)
        );
        assert_eq!(server.connection_count(), 0);
    }

    #[test]
    fn close_inside_a_frame_reports_truncation() {
        let mut server = ExchangeServer::default();
        server.open(ConnId(1)).unwrap();
        server.receive(ConnId(1), &[0, 0, 0, 1, 0, 0]).unwrap();
        assert_eq!(
            server.close(ConnId(1)),
            Err(DataExchangeError::Truncated { have: 6, need: 8 })
        );
    }

    #[test]
    fn connection_limit_is_enforced() {
        let mut server = ExchangeServer::new(ExchangeConfig { max_connections: 1 });
        server.open(ConnId(1)).unwrap();
        assert_eq!(server.open(ConnId(1)), Err(ExchangeError::AlreadyOpen));
        assert_eq!(
            server.open(ConnId(2)),
            Err(ExchangeError::TooManyConnections)
        );
    }

    #[test]
    fn client_and_server_round_trip_acks() {
        let mut server = ExchangeServer::default();
        let mut client = ExchangeClient::new();
        server.open(ConnId(1)).unwrap();
        let mut stream = client.send(&Frame::Text(b"hello")).unwrap();
        stream.extend(
            client
                .send(&Frame::File {
                    name: "f",
                    data: b"1234",
                })
                .unwrap(),
        );
        let mut back = Vec::new();
        for out in server.receive(ConnId(1), &stream).unwrap() {
            if let ExchangeOutput::Write { bytes, .. } = out {
                back.extend(bytes);
            }
        }
        assert_eq!(client.awaited_len(), 2);
        assert_eq!(
            client.receive(&back).unwrap(),
            vec![
                ExchangeReply::Acked {
                    frame_type: FrameType::Text,
                    len: 5
                },
                ExchangeReply::Acked {
                    frame_type: FrameType::File,
                    len: 4
                }
            ]
        );
        assert_eq!(client.awaited_len(), 0);
    }

    #[test]
    fn client_refuses_replies_that_answer_nothing_or_something_else() {
        let mut client = ExchangeClient::new();
        let ack = |text: &[u8]| wire(&Frame::Text(text));
        assert_eq!(
            client.receive(&ack(b"ACK TEXT 1 bytes")),
            Err(ExchangeError::UnexpectedReply)
        );
        let mut client = ExchangeClient::new();
        client.send(&Frame::Binary(b"ab")).unwrap();
        assert_eq!(
            client.receive(&ack(b"ACK BINARY 3 bytes")),
            Err(ExchangeError::ReplyMismatch {
                expected: (FrameType::Binary, 2),
                got: (FrameType::Binary, 3)
            })
        );
        let mut client = ExchangeClient::new();
        client.send(&Frame::Binary(b"ab")).unwrap();
        assert_eq!(
            client.receive(&wire(&Frame::Binary(b"ACK BINARY 2 bytes"))),
            Err(ExchangeError::ReplyNotText {
                frame_type: FrameType::Binary
            })
        );
        let mut client = ExchangeClient::new();
        client.send(&Frame::Json(b"{}")).unwrap();
        assert_eq!(
            client.receive(&ack(b"ERR JSON save failed: disk full")),
            Ok(vec![ExchangeReply::Failed {
                frame_type: FrameType::Json,
                reason: "disk full".into()
            }])
        );
    }
}
