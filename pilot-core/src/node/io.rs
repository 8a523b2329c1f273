//! What goes into a [`Node`](super::Node) and what comes out of it.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use super::NodeError;
use crate::addr::Addr;
use crate::keyexchange::PathId;
use crate::registry::{PollHandshakesOk, Request};
use crate::services::dataexchange::FrameType;
use crate::services::exchange_server::ExchangeReply;
use crate::services::trust_service::TrustEvent;

/// A connection of this node; never reused while the node lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub u64);

/// One input to [`Node::handle_input`](super::Node::handle_input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A frame received on `path`: a UDP datagram, a TCP frame (its 4-byte length stripped)
    /// or the inner frame of a beacon RelayDeliver.
    ///
    /// The driver strips relay envelopes (0x06, spec §7.3) because only it knows whether the
    /// datagram came from the configured beacon; it passes the envelope's sender as
    /// `relay_sender`, which the PILF reassembler checks against the fragment header.
    Frame {
        /// Where it came from; replies go back there (spec §7.1).
        path: PathId,
        /// The tunnel frame (PILA, PILK, PILS or PILF).
        bytes: Vec<u8>,
        /// Sender node ID of the relay envelope, if the frame came through the beacon.
        relay_sender: Option<u32>,
    },
    /// The registry's answer to [`Event::NeedPeerKey`]: `node`'s Ed25519 key, `None` if unknown.
    PeerKey {
        /// The node asked about.
        node: u32,
        /// Its registered key.
        key: Option<[u8; 32]>,
    },
    /// An application command.
    Command(Command),
    /// Nothing but the passage of time: fire due timers.
    Tick,
}

/// An application command; each is answered at once with a [`Completion`] or an error.
///
/// Every command also exists as a method of [`Node`](super::Node) with a typed result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Open a stream to `peer`:`port` from a fresh ephemeral port ([`Completion::Connection`]).
    Dial {
        /// The peer's address, network included (spec §8.1).
        peer: Addr,
        /// The peer's port.
        port: u16,
    },
    /// Accept streams and datagrams on `port`.
    Listen {
        /// The local port.
        port: u16,
    },
    /// Stop accepting on `port`; open connections stay.
    Unlisten {
        /// The local port.
        port: u16,
    },
    /// Queue bytes on a stream ([`Completion::Written`] with the count taken).
    Write {
        /// The connection.
        conn: ConnectionId,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// Close a stream gracefully (written data first, then FIN).
    Close {
        /// The connection.
        conn: ConnectionId,
    },
    /// Abort a stream with RST.
    Abort {
        /// The connection.
        conn: ConnectionId,
    },
    /// Send one datagram from a fresh ephemeral port (spec §8.11).
    SendTo {
        /// The peer.
        peer: Addr,
        /// Its port.
        port: u16,
        /// At least one byte.
        bytes: Vec<u8>,
    },
    /// Send a ping; the answer arrives as [`Event::Pong`] (spec §8.10).
    Ping {
        /// The peer.
        peer: Addr,
        /// At least one byte: empty port-0 control packets are keepalives.
        payload: Vec<u8>,
    },
    /// The driver learned `path` for `node` (registry resolve): start a key exchange there.
    AddPeerPath {
        /// The peer.
        node: u32,
        /// Its path.
        path: PathId,
    },
    /// The driver's verdict on `node` from outside the trust store (e.g. the registry's
    /// `check_trust`): `true` admits its SYNs and datagrams on a private node.
    SetTrusted {
        /// The peer.
        node: u32,
        /// Admit or no longer admit.
        trusted: bool,
    },
    /// Ask `node` for trust over port 444.
    TrustRequest {
        /// The peer.
        node: u32,
        /// Why (shown to the peer's operator).
        justification: String,
    },
    /// Ask `node` for trust through the registry inbox (`request_handshake`, spec §9.6), for
    /// peers that cannot be dialled (e.g. a private node we may not resolve). The request goes
    /// out as [`Event::RegistryRequest`]; the answer arrives with a later inbox poll.
    TrustRequestRelayed {
        /// The peer.
        node: u32,
        /// Why (shown to the peer's operator).
        justification: String,
    },
    /// Approve `node`'s pending trust request.
    TrustApprove {
        /// The requester.
        node: u32,
    },
    /// Decline `node`'s pending trust request.
    TrustReject {
        /// The requester.
        node: u32,
        /// Why.
        reason: String,
    },
    /// Withdraw trust in `node`.
    TrustRevoke {
        /// The peer.
        node: u32,
        /// Why.
        reason: String,
    },
    /// The registry's answer to a `poll_handshakes` request (relayed trust handshakes).
    TrustInbox(Box<PollHandshakesOk>),
}

/// What a command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// Done; nothing to report (also the result of frames, peer keys and ticks).
    Done,
    /// A connection was opened.
    Connection(ConnectionId),
    /// This many bytes were queued (possibly fewer than offered).
    Written(usize),
}

/// One output of [`Node::poll_output`](super::Node::poll_output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send `bytes` on `path` (as is: the driver adds a relay envelope or TCP length itself).
    Transmit {
        /// The path.
        path: PathId,
        /// One tunnel frame.
        bytes: Vec<u8>,
    },
    /// Something for the application or the driver.
    Event(Event),
    /// Drained: call [`Node::handle_input`](super::Node::handle_input) with
    /// [`Input::Tick`] at this instant unless another input comes first.
    Timeout(crate::time::Instant),
}

/// Events of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A tunnel session with `node` was installed; `rekey` when the peer's key changed.
    PeerSessionUp {
        /// The peer.
        node: u32,
        /// The peer restarted (new X25519 key).
        rekey: bool,
    },
    /// The session with `node` was dropped (a new key exchange is under way).
    PeerSessionDown {
        /// The peer.
        node: u32,
    },
    /// The key exchange with `node` went unanswered; queued packets were dropped.
    PeerUnreachable {
        /// The peer.
        node: u32,
    },
    /// Look up `node`'s Ed25519 key in the registry and answer with [`Input::PeerKey`].
    NeedPeerKey {
        /// The node.
        node: u32,
    },
    /// A dialled stream completed its handshake.
    StreamOpened(ConnectionId),
    /// A stream to one of our listening ports completed its handshake.
    StreamAccepted {
        /// The connection.
        conn: ConnectionId,
        /// Our port.
        port: u16,
        /// The peer.
        peer: Addr,
        /// The peer's port.
        peer_port: u16,
    },
    /// Data can be read with [`Node::read`](super::Node::read).
    StreamReadable(ConnectionId),
    /// A write that was refused or cut short can make progress.
    StreamWritable(ConnectionId),
    /// The peer finished sending: after the buffered data, reads return end of stream.
    StreamPeerClosed(ConnectionId),
    /// The stream was reset by the peer, or timed out (`timed_out`).
    StreamReset {
        /// The connection.
        conn: ConnectionId,
        /// Our side gave up (retransmissions, SYN retries, keepalive).
        timed_out: bool,
    },
    /// The stream is closed; the last event of a connection.
    StreamClosed(ConnectionId),
    /// A datagram for a listened port (spec §8.11).
    Datagram {
        /// The sender.
        from: Addr,
        /// Its port.
        src_port: u16,
        /// Our port.
        dst_port: u16,
        /// The payload.
        payload: Vec<u8>,
    },
    /// The answer to one of our pings.
    Pong {
        /// The peer.
        from: Addr,
        /// The echoed payload.
        payload: Vec<u8>,
    },
    /// Our data exchange server received a frame (it answers the ACK itself).
    MessageReceived {
        /// The sender.
        from: Addr,
        /// The frame type.
        frame_type: FrameType,
        /// For FILE, the sender's base name.
        filename: Option<String>,
        /// The body.
        payload: Vec<u8>,
    },
    /// The peer's data exchange server answered a frame sent with
    /// [`Node::send_message`](super::Node::send_message).
    MessageAcked {
        /// The client connection.
        conn: ConnectionId,
        /// The peer.
        peer: Addr,
        /// Its answer.
        reply: ExchangeReply,
    },
    /// A connection to our broker subscribed to `topic`.
    BrokerSubscribed {
        /// The subscriber.
        from: Addr,
        /// The topic (`*` for all).
        topic: Vec<u8>,
    },
    /// An event arrived on a subscription made with [`Node::subscribe`](super::Node::subscribe).
    EventReceived {
        /// The subscription.
        conn: ConnectionId,
        /// The topic.
        topic: Vec<u8>,
        /// The payload.
        payload: Vec<u8>,
    },
    /// The trust service has news for the application.
    Trust(TrustEvent),
    /// Send this signed request to the registry (trust reports, relayed handshakes).
    RegistryRequest(Box<Request>),
    /// Something failed after its command had returned.
    Error(NodeError),
}
