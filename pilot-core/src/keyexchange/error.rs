//! The error enum of the key-exchange layer: why a frame was dropped or a send refused.

use core::fmt;

use crate::frame::pila::PilaError;
use crate::frame::pilk::PilkError;
use crate::frame::pils::PilsError;
use crate::packet::PacketError;
use crate::replay::RecvVerdict;

/// Why the key-exchange layer dropped a frame or refused a command.
///
/// A dropped frame is normal on the Internet; the verdict exists for logs, counters and
/// tests. Refused commands (`send_packet`, `connect`) are the caller's to handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KexError {
    /// `handle_frame` got a frame that is not PILA, PILK or PILS; those are the caller's.
    NotKeyExchangeFrame,
    /// A PILA that did not decode or verify (spec §6.2).
    Pila(PilaError),
    /// A PILK that did not decode.
    Pilk(PilkError),
    /// A PILS that did not decode or did not authenticate.
    Pils(PilsError),
    /// The frame claims to come from our own node ID.
    OwnNode,
    /// The per-path key-exchange budget is spent (spec §6.7).
    RateLimited,
    /// The registry has no key for the sender (cached for a few seconds, spec §6.2). PILK from
    /// such a node is refused too: this layer never installs unauthenticated sessions.
    UnknownPeer,
    /// Too many registry lookups are outstanding; the frame was dropped.
    TooManyLookups,
    /// The peer's X25519 key is of low order (spec §4.2).
    NonContributory,
    /// A PILS from a peer we hold no session with (answered with PILA + PILK, spec §6.5).
    NoSession,
    /// An authenticated PILS the replay layer refused (replay, outside window, stale epoch).
    Rejected(RecvVerdict),
    /// The decrypted packet did not decode.
    MalformedPacket(PacketError),
    /// The decrypted packet's `src.node` is not the authenticated sender (spec §5.6).
    SpoofedSource,
    /// `send_packet`: the packet's `src.node` is not our node ID (spec §5.6).
    ForeignSource,
    /// No path to the peer is known: call `connect` first.
    NoPath,
    /// The peer's last key exchange gave up; new ones are refused for a while (spec §6.6).
    GiveUpCooldown,
    /// The peer's pending queue is full: this (newest) packet was dropped (spec §6.5, V-NEW).
    PendingDropped,
    /// Too many peers already have queued packets: this packet was dropped (spec §6.5).
    TooManyPendingPeers,
    /// The peer table is full of active peers.
    PeerTableFull,
    /// The packet is too large for a PILS frame.
    PacketTooLarge,
}

impl fmt::Display for KexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KexError::NotKeyExchangeFrame => f.write_str("not a PILA, PILK or PILS frame"),
            KexError::Pila(e) => write!(f, "PILA dropped: {e}"),
            KexError::Pilk(e) => write!(f, "PILK dropped: {e}"),
            KexError::Pils(e) => write!(f, "PILS dropped: {e}"),
            KexError::OwnNode => f.write_str("frame claims our own node ID"),
            KexError::RateLimited => f.write_str("key-exchange rate limit for this path"),
            KexError::UnknownPeer => f.write_str("registry has no key for the sender"),
            KexError::TooManyLookups => f.write_str("too many registry lookups outstanding"),
            KexError::NonContributory => f.write_str("peer X25519 key is of low order"),
            KexError::NoSession => f.write_str("no session with the sender"),
            KexError::Rejected(v) => write!(f, "refused by the replay layer: {v:?}"),
            KexError::MalformedPacket(e) => write!(f, "decrypted packet malformed: {e}"),
            KexError::SpoofedSource => f.write_str("inner src.node is not the sender"),
            KexError::ForeignSource => f.write_str("packet src.node is not our node"),
            KexError::NoPath => f.write_str("no path to the peer"),
            KexError::GiveUpCooldown => f.write_str("key exchange with the peer gave up"),
            KexError::PendingDropped => f.write_str("pending queue full, packet dropped"),
            KexError::TooManyPendingPeers => f.write_str("too many peers with pending packets"),
            KexError::PeerTableFull => f.write_str("peer table full"),
            KexError::PacketTooLarge => f.write_str("packet too large for a PILS frame"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for KexError {}
