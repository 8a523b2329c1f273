//! The error enum of the node layer: why a command was refused or a frame dropped.

use core::fmt;

use crate::frame::fragment::FragmentError;
use crate::keyexchange::KexError;
use crate::packet::PacketError;
use crate::services::dataexchange::DataExchangeError;
use crate::services::eventstream::EventStreamError;
use crate::services::exchange_server::ExchangeError;
use crate::services::trust_service::TrustServiceError;
use crate::stream::StreamError;

/// Why the node refused a command or dropped an input.
///
/// Commands get it back at once; dropped frames return it from
/// [`Node::handle_input`](super::Node::handle_input) for logs and tests (dropping is normal);
/// failures found later (a trust message that did not verify, a message that was not
/// acknowledged) arrive as [`Event::Error`](super::Event::Error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeError {
    /// The key-exchange layer refused the frame or the packet.
    Kex(KexError),
    /// A PILF fragment was refused or could not be reassembled (spec §3.8).
    Fragment(FragmentError),
    /// The frame is not one the node takes: beacon messages (the driver strips relay
    /// envelopes), PILT plaintext (never accepted) or unknown bytes.
    UnsupportedFrame,
    /// An authenticated packet did not decode.
    MalformedPacket(PacketError),
    /// An authenticated packet was addressed to another node.
    WrongDestination,
    /// No connection has this ID (never opened, or closed and removed).
    UnknownConnection,
    /// The connection belongs to the node (a service or a client helper), not the application.
    NotApplicationConnection,
    /// The stream refused the operation (`WouldBlock` when its buffer is full, `Closed`, …).
    Stream(StreamError),
    /// Port 0 cannot be listened on or dialled.
    InvalidPort,
    /// The port is already listened on (by the application or a built-in service).
    PortInUse,
    /// The port is not listened on by the application.
    NotListening,
    /// The connection limit of the node is reached.
    TooManyConnections,
    /// Every ephemeral port is in use.
    NoFreePort,
    /// The address is our own node.
    OwnAddress,
    /// A datagram or ping needs at least one payload byte (spec §8.10, §8.11).
    EmptyPayload,
    /// The payload does not fit one packet.
    PayloadTooLarge,
    /// The built-in service this command needs is disabled in the configuration.
    ServiceDisabled,
    /// The trust service refused the action or a received trust message.
    Trust(TrustServiceError),
    /// A trust message came on a stream from another node than the one it names.
    TrustSenderMismatch {
        /// The authenticated sender of the stream.
        stream: u32,
        /// The node the message claims.
        message: u32,
    },
    /// The driver's trust set ([`MAX_EXTRA_TRUSTED`](super::MAX_EXTRA_TRUSTED)) is full.
    TrustSetFull,
    /// Too many received trust messages wait for their sender's registry key.
    TooManyParkedTrustMessages,
    /// Data exchange client: framing or reply mismatch.
    Exchange(ExchangeError),
    /// Data exchange codec error.
    DataExchange(DataExchangeError),
    /// Event stream codec error.
    EventStream(EventStreamError),
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Kex(e) => write!(f, "key exchange: {e}"),
            NodeError::Fragment(e) => write!(f, "fragment: {e}"),
            NodeError::UnsupportedFrame => f.write_str("frame kind not handled by the node"),
            NodeError::MalformedPacket(e) => write!(f, "malformed packet: {e}"),
            NodeError::WrongDestination => f.write_str("packet addressed to another node"),
            NodeError::UnknownConnection => f.write_str("unknown connection"),
            NodeError::NotApplicationConnection => {
                f.write_str("connection is owned by the node, not the application")
            }
            NodeError::Stream(e) => write!(f, "stream: {e}"),
            NodeError::InvalidPort => f.write_str("port 0 is not a stream port"),
            NodeError::PortInUse => f.write_str("port already listened on"),
            NodeError::NotListening => f.write_str("port not listened on"),
            NodeError::TooManyConnections => f.write_str("connection limit reached"),
            NodeError::NoFreePort => f.write_str("no free ephemeral port"),
            NodeError::OwnAddress => f.write_str("address is our own node"),
            NodeError::EmptyPayload => f.write_str("payload must not be empty"),
            NodeError::PayloadTooLarge => f.write_str("payload does not fit one packet"),
            NodeError::ServiceDisabled => f.write_str("built-in service disabled"),
            NodeError::Trust(e) => write!(f, "trust: {e}"),
            NodeError::TrustSenderMismatch { stream, message } => write!(
                f,
                "trust message names node {message} but came from node {stream}"
            ),
            NodeError::TrustSetFull => f.write_str("driver trust set full"),
            NodeError::TooManyParkedTrustMessages => {
                f.write_str("too many trust messages wait for a registry key")
            }
            NodeError::Exchange(e) => write!(f, "data exchange: {e}"),
            NodeError::DataExchange(e) => write!(f, "data exchange: {e}"),
            NodeError::EventStream(e) => write!(f, "event stream: {e}"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for NodeError {}

impl From<KexError> for NodeError {
    fn from(e: KexError) -> Self {
        NodeError::Kex(e)
    }
}

impl From<StreamError> for NodeError {
    fn from(e: StreamError) -> Self {
        NodeError::Stream(e)
    }
}

impl From<TrustServiceError> for NodeError {
    fn from(e: TrustServiceError) -> Self {
        NodeError::Trust(e)
    }
}
