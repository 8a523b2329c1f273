//! The key-exchange layer (spec §5.5, §5.6, §6, §7.1): a sans-IO store of per-peer sessions.
//!
//! [`KeyExchange`] owns this node's identity and tunnel key and, per peer, the installed
//! session, the key exchange in progress, the packets waiting for it and the salvage ring.
//! It is driven like quinn-proto: make one mutation, then drain.
//!
//! * inputs: [`KeyExchange::handle_frame`] (PILA, PILK, PILS), [`KeyExchange::provide_peer_key`]
//!   (the answer to [`KexEvent::NeedPeerKey`]), [`KeyExchange::send_packet`],
//!   [`KeyExchange::connect`], [`KeyExchange::handle_timeout`];
//! * outputs: [`KeyExchange::poll_output`] until `None`, then [`KeyExchange::poll_timeout`]
//!   for the next wake-up. The output queue is drained by the caller, not capped: each input
//!   adds a bounded number of outputs (at most a PILA, the salvage ring and the pending queue).
//!
//! ```
//! use pilot_core::crypto::Identity;
//! use pilot_core::keyexchange::{KexOutput, KeyExchange, PathId};
//! use pilot_core::time::Instant;
//! # use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
//! # let mut rng = ChaCha20Rng::seed_from_u64(1);
//!
//! let mut kx = KeyExchange::new(7, Identity::generate(&mut rng), &mut rng);
//! kx.connect(Instant::ZERO, 9, PathId(1)).unwrap();
//! while let Some(output) = kx.poll_output() {
//!     match output {
//!         KexOutput::Transmit { path, frame } => { /* write `frame` on `path` */ }
//!         KexOutput::Deliver { node, packet } => { /* hand `packet` up */ }
//!         KexOutput::Event(event) => { /* e.g. look up a peer key */ }
//!     }
//! }
//! let wake_at = kx.poll_timeout(); // call handle_timeout then
//! # assert!(wake_at.is_some());
//! ```
//!
//! Policy choices stricter than the Go reference, on purpose:
//! * PILK never installs a session: a Worker always has an identity, so an unauthenticated
//!   session would only serve attackers (spec §6.3 allows either). A PILK from a node the
//!   registry knows is answered with our PILA; from an unknown node it is dropped.
//! * Answers to PILK and to "no key" PILS are fire-and-forget (no retransmission), so a forged
//!   frame cannot make us keep state beyond the bounded limiters.
//! * A same-key PILA moves the peer's path only when inbound traffic is stale (6 s), so a
//!   replayed PILA cannot steer a healthy session's traffic.
//! * A session rebuilt toward an unchanged peer key continues the old send counter under a
//!   new prefix: V-NEW peers see a new epoch, older peers a monotonic counter (spec §5.4).

mod error;
mod peer;
pub mod ratelimit;
mod timers;

#[cfg(test)]
mod tests;

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::time::Duration;

use rand_core::CryptoRngCore;

pub use error::KexError;
use peer::{Attempt, Peer, SecretPacket, Session};
use ratelimit::{IntervalLimiter, NegativeCache, PathLimiter};
use timers::Timer;

use crate::addr::Addr;
use crate::crypto::{
    derive_session_key, keys_equal, Identity, SendState, TunnelKey, ED25519_KEY_LEN,
};
use crate::frame::pila::{Pila, PilaError, Trailer, FLAG_RESPONSE};
use crate::frame::pilk::Pilk;
use crate::frame::pils::{self, PilsError, PILS_HEADER_LEN};
use crate::frame::{classify, FrameKind};
use crate::packet::{Flags, Header, PacketRef, Protocol};
use crate::replay::{DropReason, GateVerdict, RecvVerdict};
use crate::time::Instant;

/// Packets queued per peer while its key exchange runs (spec §6.5).
pub const PENDING_PACKETS_PER_PEER: usize = 64;
/// Peers that may have queued packets at once (spec §6.5).
pub const PENDING_PEERS: usize = 256;
/// Plaintext copies of recent sends kept per session for replay after a rekey (spec §5.5).
pub const SALVAGE_PACKETS: usize = 4;
/// Salvage entries older than this are not replayed (spec §5.5).
pub const SALVAGE_MAX_AGE: Duration = Duration::from_secs(5);
/// A same-key PILA this soon after install is ignored (direct + relay duplicate, spec §6.4).
pub const DUPLICATE_DEBOUNCE: Duration = Duration::from_millis(250);
/// Minimum spacing of replies to same-key PILAs carrying REQUEST (spec §6.4, V-FORK).
pub const REQUEST_REPLY_INTERVAL: Duration = Duration::from_secs(5);
/// Same-key PILAs get a reply when nothing authenticated came from the peer for this long.
pub const STALE_INBOUND: Duration = Duration::from_secs(6);
/// Minimum spacing of replies to same-key PILAs because inbound is stale (spec §6.4).
pub const STALE_REPLY_INTERVAL: Duration = Duration::from_secs(1);
/// A pending key exchange is sent again after this long without an answer (spec §6.6).
pub const KEY_RETRANSMIT_INTERVAL: Duration = Duration::from_secs(4);
/// Key-exchange rounds sent before giving up: the first and five retries (spec §6.6).
pub const KEY_EXCHANGE_MAX_SENDS: u32 = 6;
/// From this many unanswered rounds on, each PILA is followed by a PILK key request.
pub const KEY_REQUEST_AFTER_SENDS: u32 = 1;
/// After giving up, new key exchanges toward the peer are refused this long (spec §6.6).
pub const GIVE_UP_COOLDOWN: Duration = Duration::from_secs(5);
/// Minimum spacing of "no key" answers (PILA + PILK) per peer (spec §6.5, V-NEW).
pub const NO_KEY_ANSWER_INTERVAL: Duration = Duration::from_secs(3);
/// Peers tracked by the "no key" answer limiter (spec §6.5).
pub const NO_KEY_ANSWER_MAX_PEERS: usize = 4_096;
/// A registry miss is remembered this long (spec §6.2, V-NEW).
pub const NEGATIVE_KEY_TTL: Duration = Duration::from_secs(3);
/// Registry misses remembered at most (spec §6.2).
pub const NEGATIVE_KEY_MAX_ENTRIES: usize = 4_096;
/// A PILA whose identity differs from the cached key triggers a new lookup at most this
/// often per peer (spec §6.2 step 3: invalidate and fetch once more).
pub const IDENTITY_REFETCH_INTERVAL: Duration = Duration::from_secs(3);
/// Registry lookups outstanding at once; each parks the frames that wait for it.
pub const MAX_KEY_LOOKUPS: usize = 256;
/// A lookup not answered within this is forgotten with its parked frames.
pub const KEY_LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);
/// A session that sent nothing for this long sends a tunnel keepalive (spec §7.1, V-NEW).
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(25);
/// Peers tracked at once (sessions, key exchanges, cached identities).
pub const MAX_PEERS: usize = 4_096;

/// A path chosen by the driver: a UDP address, a relay, a TCP connection… The layer only
/// stores it and hands it back ("reply where it came from", spec §7.1, §7.3, §7.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PathId(pub u64);

/// Why a session went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionDownReason {
    /// A drop gate of the replay layer fired (spec §5.3); a key exchange was started.
    DropGate(DropReason),
    /// Our send counter reached its end (spec §4.3); a key exchange was started.
    NonceExhausted,
}

/// Something the driver or the layer above should know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KexEvent {
    /// A session with `node` was installed; `rekey` when it replaced one with another key.
    SessionUp {
        /// The peer.
        node: u32,
        /// Whether the peer's X25519 key changed (a restart of the peer).
        rekey: bool,
    },
    /// The session with `node` was deleted.
    SessionDown {
        /// The peer.
        node: u32,
        /// Why.
        reason: SessionDownReason,
    },
    /// Look up `node`'s Ed25519 key in the registry and call
    /// [`KeyExchange::provide_peer_key`] with the answer.
    NeedPeerKey {
        /// The node whose key is needed.
        node: u32,
    },
    /// The key exchange with `node` went unanswered [`KEY_EXCHANGE_MAX_SENDS`] times; its
    /// queued packets were dropped and new attempts wait [`GIVE_UP_COOLDOWN`].
    GaveUp {
        /// The peer.
        node: u32,
        /// Queued packets dropped with it.
        dropped_packets: usize,
    },
    /// A packet for `node` was dropped because its pending queue was full (spec §6.5).
    PendingDropped {
        /// The peer.
        node: u32,
    },
}

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KexOutput {
    /// Send `frame` on `path`.
    Transmit {
        /// Where to send it.
        path: PathId,
        /// A complete PILA, PILK or PILS frame.
        frame: Vec<u8>,
    },
    /// An authenticated packet from `node` (spec §2 bytes, `src.node == node` checked).
    Deliver {
        /// The authenticated sender.
        node: u32,
        /// The decrypted Pilot packet.
        packet: Vec<u8>,
    },
    /// An event.
    Event(KexEvent),
}

/// What became of a frame given to [`KeyExchange::handle_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameOutcome {
    /// A PILS was decrypted; its packet is queued as [`KexOutput::Deliver`].
    Delivered,
    /// A PILS carried a tunnel keepalive: liveness refreshed, nothing delivered (spec §8.10).
    Keepalive,
    /// A PILA or PILK was processed (installed, kept, answered or ignored by rule).
    KeyExchange,
    /// The frame waits for the sender's registry key ([`KexEvent::NeedPeerKey`]).
    AwaitingPeerKey,
}

/// What [`KeyExchange::send_packet`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendOutcome {
    /// Sealed into a PILS frame, queued as [`KexOutput::Transmit`].
    Sealed,
    /// Queued until a session with the peer exists.
    Queued,
}

/// This node's own keys and the frames it sends, built once.
struct Local {
    node: u32,
    tunnel: TunnelKey,
    /// Our PILA without trailer (spec §6.9 rule 1), signed once at start.
    pila: Vec<u8>,
    /// Our PILA with flag RESPONSE, for replies to REQUEST (spec §3.6).
    pila_response: Vec<u8>,
    /// Our PILK, used only as a key request (spec §6.6).
    pilk: Vec<u8>,
}

/// Frames parked until the registry answers for their sender.
struct Lookup {
    asked_at: Instant,
    pila: Option<(Pila, PathId)>,
    pilk: Option<PathId>,
}

/// The per-peer session store of one node (see the module documentation).
pub struct KeyExchange {
    local: Local,
    peers: BTreeMap<u32, Peer>,
    lookups: BTreeMap<u32, Lookup>,
    negative: NegativeCache,
    path_limiter: PathLimiter,
    no_key_limiter: IntervalLimiter,
    outputs: VecDeque<KexOutput>,
}

impl core::fmt::Debug for KeyExchange {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyExchange")
            .field("node", &self.local.node)
            .field("peers", &self.peers.len())
            .field("lookups", &self.lookups.len())
            .field("outputs", &self.outputs.len())
            .finish_non_exhaustive()
    }
}

impl KeyExchange {
    /// The store of node `node` with `identity`, drawing a fresh tunnel key from `rng`
    /// (spec §4.1: one per process).
    pub fn new(node: u32, identity: Identity, rng: &mut impl CryptoRngCore) -> Self {
        Self::with_tunnel_key(node, identity, TunnelKey::generate(rng))
    }

    /// The store with a given tunnel key: for tests that restart a node keeping its key.
    pub fn with_tunnel_key(node: u32, identity: Identity, tunnel: TunnelKey) -> Self {
        let public = tunnel.public_key();
        let mut pila = Vec::new();
        Pila::sign(&identity, node, &public, Trailer::NONE).encode(&mut pila);
        let mut pila_response = Vec::new();
        let response = Trailer {
            caps: 0,
            flags: FLAG_RESPONSE,
        };
        Pila::sign(&identity, node, &public, response).encode(&mut pila_response);
        let mut pilk = Vec::new();
        Pilk {
            node,
            x25519_public: public,
        }
        .encode(&mut pilk);
        // The identity is only needed to sign our two PILA forms; it is dropped (and
        // zeroized) here rather than kept in memory.
        drop(identity);
        Self {
            local: Local {
                node,
                tunnel,
                pila,
                pila_response,
                pilk,
            },
            peers: BTreeMap::new(),
            lookups: BTreeMap::new(),
            negative: NegativeCache::new(NEGATIVE_KEY_TTL, NEGATIVE_KEY_MAX_ENTRIES),
            path_limiter: PathLimiter::default(),
            no_key_limiter: IntervalLimiter::new(NO_KEY_ANSWER_INTERVAL, NO_KEY_ANSWER_MAX_PEERS),
            outputs: VecDeque::new(),
        }
    }

    /// Our node ID.
    pub fn node(&self) -> u32 {
        self.local.node
    }

    /// Our X25519 tunnel public key, as sent in PILA and PILK.
    pub fn tunnel_public_key(&self) -> [u8; 32] {
        self.local.tunnel.public_key()
    }

    /// Whether a session with `node` is installed.
    pub fn has_session(&self, node: u32) -> bool {
        self.peers.get(&node).is_some_and(|p| p.session.is_some())
    }

    /// Whether a key exchange we started toward `node` is waiting for an answer.
    pub fn is_pending(&self, node: u32) -> bool {
        self.peers.get(&node).is_some_and(|p| p.attempt.is_some())
    }

    /// Packets queued for `node` until its session exists.
    pub fn pending_len(&self, node: u32) -> usize {
        self.peers.get(&node).map_or(0, |p| p.pending.len())
    }

    /// The path frames for `node` go to.
    pub fn peer_path(&self, node: u32) -> Option<PathId> {
        self.peers.get(&node).and_then(|p| p.path)
    }

    /// Bytes of the fixed-size state kept per peer (`size_of`), for memory budgeting. Queued
    /// packets and salvage copies are on the heap on top of this, bounded by
    /// [`PENDING_PACKETS_PER_PEER`] and [`SALVAGE_PACKETS`].
    pub fn per_peer_state_size() -> usize {
        core::mem::size_of::<Peer>() + core::mem::size_of::<u32>()
    }

    /// Peers tracked.
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// The next output; call until `None` after every input.
    pub fn poll_output(&mut self) -> Option<KexOutput> {
        self.outputs.pop_front()
    }

    /// When [`KeyExchange::handle_timeout`] must be called next; `None` when nothing waits.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers.values().filter_map(|p| p.timers.next()).min()
    }

    /// Handles a PILA, PILK or PILS frame received on `path`.
    ///
    /// `rng` draws the nonce prefix of a session installed by this frame.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        path: PathId,
        frame: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Result<FrameOutcome, KexError> {
        match classify(frame) {
            Some(FrameKind::AuthKeyExchange) => self.on_pila_frame(now, path, frame, rng),
            Some(FrameKind::KeyExchange) => self.on_pilk_frame(now, path, frame),
            Some(FrameKind::Encrypted) => self.on_pils(now, path, frame),
            _ => Err(KexError::NotKeyExchangeFrame),
        }
    }

    /// The registry's answer to [`KexEvent::NeedPeerKey`]: `node`'s Ed25519 key, or `None`
    /// when the registry does not know it (the parked frames are dropped, the miss cached).
    ///
    /// Returns the outcome of the parked PILA, if any, else of the parked PILK.
    pub fn provide_peer_key(
        &mut self,
        now: Instant,
        node: u32,
        key: Option<[u8; ED25519_KEY_LEN]>,
        rng: &mut impl CryptoRngCore,
    ) -> Result<FrameOutcome, KexError> {
        let lookup = self.lookups.remove(&node);
        let Some(key) = key else {
            self.negative.insert(node, now);
            return Err(KexError::UnknownPeer);
        };
        self.negative.remove(node);
        let Some(lookup) = lookup else {
            // Unsolicited or late: refresh a known peer's cache, create nothing.
            if let Some(peer) = self.peers.get_mut(&node) {
                peer.identity = Some(key);
            }
            return Ok(FrameOutcome::KeyExchange);
        };
        peer_entry(&mut self.peers, now, node)?.identity = Some(key);

        let pila_result = lookup
            .pila
            .map(|(pila, path)| self.on_pila_with_identity(now, path, &pila, &key, rng));
        let pilk_result = lookup.pilk.map(|path| {
            self.answer_pilk(now, node, path);
            Ok(FrameOutcome::KeyExchange)
        });
        pila_result
            .or(pilk_result)
            .unwrap_or(Ok(FrameOutcome::KeyExchange))
    }

    /// Sends `packet` (a complete Pilot packet with `src.node` = our node) to `node`.
    ///
    /// Sealed at once if a session exists; otherwise queued and, unless one is pending, a key
    /// exchange is started toward the peer's path (spec §6.5).
    pub fn send_packet(
        &mut self,
        now: Instant,
        node: u32,
        packet: &[u8],
    ) -> Result<SendOutcome, KexError> {
        let decoded = PacketRef::decode(packet).map_err(KexError::MalformedPacket)?;
        // spec §5.6: V-NEW receivers drop packets whose src.node is not the sender.
        if decoded.header.src.node != self.local.node {
            return Err(KexError::ForeignSource);
        }
        if packet.len() > pils::MAX_SEALED_PACKET_LEN {
            return Err(KexError::PacketTooLarge);
        }
        let pending_peers = self
            .peers
            .values()
            .filter(|p| !p.pending.is_empty())
            .count();
        let Some(peer) = self.peers.get_mut(&node) else {
            return Err(KexError::NoPath);
        };
        if peer.session.is_some() {
            match seal_on_session(&self.local, peer, now, packet, &mut self.outputs) {
                Ok(()) => {
                    peer.session_salvage_push(now, packet);
                    return Ok(SendOutcome::Sealed);
                }
                Err(PilsError::NonceExhausted) => {
                    drop_session(
                        peer,
                        node,
                        SessionDownReason::NonceExhausted,
                        &mut self.outputs,
                    );
                }
                Err(_) => return Err(KexError::PacketTooLarge),
            }
        }
        let Some(path) = peer.path else {
            return Err(KexError::NoPath);
        };
        if peer.in_cooldown(now) {
            return Err(KexError::GiveUpCooldown);
        }
        if !peer.pending_has_room() {
            self.outputs
                .push_back(KexOutput::Event(KexEvent::PendingDropped { node }));
            return Err(KexError::PendingDropped);
        }
        if peer.pending.is_empty() && pending_peers >= PENDING_PEERS {
            self.outputs
                .push_back(KexOutput::Event(KexEvent::PendingDropped { node }));
            return Err(KexError::TooManyPendingPeers);
        }
        peer.pending.push_back(SecretPacket::copy_of(packet));
        if peer.attempt.is_none() {
            start_attempt(&self.local, peer, path, now, false, &mut self.outputs);
        }
        Ok(SendOutcome::Queued)
    }

    /// Starts a key exchange toward `node` on `path` (e.g. from a registry `resolve`).
    ///
    /// Records `path` as the peer's path. With a session already up, sends one PILA without
    /// arming retransmission (V-NEW path reset keeps the session). With a key exchange
    /// already pending, only the path changes.
    pub fn connect(&mut self, now: Instant, node: u32, path: PathId) -> Result<(), KexError> {
        if node == self.local.node {
            return Err(KexError::OwnNode);
        }
        let peer = peer_entry(&mut self.peers, now, node)?;
        peer.path = Some(path);
        if peer.session.is_some() {
            send_pila(&self.local, peer, path, now, false, &mut self.outputs);
            return Ok(());
        }
        if peer.attempt.is_some() {
            return Ok(());
        }
        if peer.in_cooldown(now) {
            return Err(KexError::GiveUpCooldown);
        }
        start_attempt(&self.local, peer, path, now, false, &mut self.outputs);
        Ok(())
    }

    /// Fires every timer due at `now`: key retransmissions, give-ups, keepalives.
    pub fn handle_timeout(&mut self, now: Instant) {
        for (&node, peer) in self.peers.iter_mut() {
            if peer.timers.take_expired(Timer::KeyRetransmit, now) {
                on_retransmit_timer(&self.local, node, peer, now, &mut self.outputs);
            }
            if peer.timers.take_expired(Timer::Keepalive, now) {
                send_keepalive(&self.local, node, peer, now, &mut self.outputs);
            }
        }
        let timeout = KEY_LOOKUP_TIMEOUT;
        self.lookups
            .retain(|_, l| now.saturating_duration_since(l.asked_at) < timeout);
    }

    // ---- PILA ---------------------------------------------------------------------------

    fn on_pila_frame(
        &mut self,
        now: Instant,
        path: PathId,
        frame: &[u8],
        rng: &mut impl CryptoRngCore,
    ) -> Result<FrameOutcome, KexError> {
        // spec §6.7: budget before any signature check or lookup.
        if !self.path_limiter.allow(path, now) {
            return Err(KexError::RateLimited);
        }
        let pila = Pila::decode(frame).map_err(KexError::Pila)?;
        if pila.node == self.local.node {
            return Err(KexError::OwnNode);
        }
        let known = self.peers.get(&pila.node).and_then(|p| p.identity);
        match known {
            Some(key) if keys_equal(&key, &pila.ed25519_public) => {
                self.on_pila_with_identity(now, path, &pila, &key, rng)
            }
            Some(_) => self.on_pila_identity_mismatch(now, path, pila),
            None => self.park(now, pila.node, Some((pila, path)), None),
        }
    }

    /// spec §6.2 step 3: a PILA whose Ed25519 key is not the cached one makes us fetch the
    /// registry key once more (at most every [`IDENTITY_REFETCH_INTERVAL`]).
    fn on_pila_identity_mismatch(
        &mut self,
        now: Instant,
        path: PathId,
        pila: Pila,
    ) -> Result<FrameOutcome, KexError> {
        let mismatch = KexError::Pila(PilaError::IdentityMismatch);
        let recently = self
            .peers
            .get(&pila.node)
            .and_then(|p| p.identity_refetched_at)
            .is_some_and(|at| now.saturating_duration_since(at) < IDENTITY_REFETCH_INTERVAL);
        if recently {
            return Err(mismatch);
        }
        let node = pila.node;
        let outcome = self.park(now, node, Some((pila, path)), None)?;
        // Only once the lookup is under way is the cached key forgotten.
        if let Some(peer) = self.peers.get_mut(&node) {
            peer.identity = None;
            peer.identity_refetched_at = Some(now);
        }
        Ok(outcome)
    }

    /// Parks a PILA or PILK until the registry answers for `node`; asks once per lookup.
    fn park(
        &mut self,
        now: Instant,
        node: u32,
        pila: Option<(Pila, PathId)>,
        pilk: Option<PathId>,
    ) -> Result<FrameOutcome, KexError> {
        if self.negative.contains(node, now) {
            return Err(KexError::UnknownPeer);
        }
        if let Some(lookup) = self.lookups.get_mut(&node) {
            if now.saturating_duration_since(lookup.asked_at) < KEY_LOOKUP_TIMEOUT {
                lookup.pila = pila.or(lookup.pila.take());
                lookup.pilk = pilk.or(lookup.pilk.take());
                return Ok(FrameOutcome::AwaitingPeerKey);
            }
        }
        if !self.lookups.contains_key(&node) && self.lookups.len() >= MAX_KEY_LOOKUPS {
            self.lookups
                .retain(|_, l| now.saturating_duration_since(l.asked_at) < KEY_LOOKUP_TIMEOUT);
            if self.lookups.len() >= MAX_KEY_LOOKUPS {
                return Err(KexError::TooManyLookups);
            }
        }
        self.lookups.insert(
            node,
            Lookup {
                asked_at: now,
                pila,
                pilk,
            },
        );
        self.outputs
            .push_back(KexOutput::Event(KexEvent::NeedPeerKey { node }));
        Ok(FrameOutcome::AwaitingPeerKey)
    }

    /// spec §6.2 steps 4–6 and §6.4, for a PILA whose claimed identity is the registry's.
    fn on_pila_with_identity(
        &mut self,
        now: Instant,
        path: PathId,
        pila: &Pila,
        registry_key: &[u8; ED25519_KEY_LEN],
        rng: &mut impl CryptoRngCore,
    ) -> Result<FrameOutcome, KexError> {
        pila.verify(registry_key).map_err(KexError::Pila)?;
        let node = pila.node;
        let same_key = self
            .peers
            .get(&node)
            .and_then(|p| p.session.as_ref())
            .map(|s| keys_equal(&s.peer_x25519, &pila.x25519_public));
        match same_key {
            Some(true) => {
                if let Some(peer) = self.peers.get_mut(&node) {
                    on_same_key_pila(
                        &self.local,
                        peer,
                        path,
                        now,
                        pila.trailer,
                        &mut self.outputs,
                    );
                }
                Ok(FrameOutcome::KeyExchange)
            }
            Some(false) | None => {
                let key = derive_session_key(&self.local.tunnel, &pila.x25519_public)
                    .map_err(|_| KexError::NonContributory)?;
                let peer = peer_entry(&mut self.peers, now, node)?;
                let send = match peer.retired_send.take() {
                    Some((x, counter)) if keys_equal(&x, &pila.x25519_public) => {
                        SendState::new_continuing(rng, counter)
                    }
                    _ => SendState::new(rng),
                };
                let session = Session {
                    peer_x25519: pila.x25519_public,
                    key,
                    send,
                    recv: crate::replay::ReceiveState::new(now),
                    installed_at: now,
                    last_inbound: now,
                    salvage: peer::Salvage::default(),
                };
                let old = peer.session.replace(session);
                let rekey = old.is_some();
                install(&self.local, peer, path, now, old, &mut self.outputs);
                self.outputs
                    .push_back(KexOutput::Event(KexEvent::SessionUp { node, rekey }));
                Ok(FrameOutcome::KeyExchange)
            }
        }
    }

    // ---- PILK ---------------------------------------------------------------------------

    fn on_pilk_frame(
        &mut self,
        now: Instant,
        path: PathId,
        frame: &[u8],
    ) -> Result<FrameOutcome, KexError> {
        if !self.path_limiter.allow(path, now) {
            return Err(KexError::RateLimited);
        }
        let pilk = Pilk::decode(frame).map_err(KexError::Pilk)?;
        if pilk.node == self.local.node {
            return Err(KexError::OwnNode);
        }
        // spec §6.3: a PILK from a registry-known node is refused and answered with our PILA.
        // From an unknown node it is refused too: no unauthenticated sessions here.
        if self
            .peers
            .get(&pilk.node)
            .is_some_and(|p| p.identity.is_some())
        {
            self.answer_pilk(now, pilk.node, path);
            return Ok(FrameOutcome::KeyExchange);
        }
        self.park(now, pilk.node, None, Some(path))
    }

    /// Answers a key request with our PILA on the path it came from, unless our PILA went to
    /// the peer within [`DUPLICATE_DEBOUNCE`] (the PILA+PILK pair of one round).
    fn answer_pilk(&mut self, now: Instant, node: u32, path: PathId) {
        if let Some(peer) = self.peers.get_mut(&node) {
            let recent = peer
                .last_pila_sent
                .is_some_and(|at| now.saturating_duration_since(at) < DUPLICATE_DEBOUNCE);
            if !recent {
                send_pila(&self.local, peer, path, now, false, &mut self.outputs);
            }
        }
    }

    // ---- PILS ---------------------------------------------------------------------------

    fn on_pils(
        &mut self,
        now: Instant,
        path: PathId,
        frame: &[u8],
    ) -> Result<FrameOutcome, KexError> {
        let header = pils::peek(frame).map_err(KexError::Pils)?;
        let node = header.sender_node;
        if node == self.local.node {
            return Err(KexError::OwnNode);
        }
        let has_session = self.peers.get(&node).is_some_and(|p| p.session.is_some());
        if !has_session {
            self.answer_no_key(now, node, path);
            return Err(KexError::NoSession);
        }
        let Some(peer) = self.peers.get_mut(&node) else {
            return Err(KexError::NoSession);
        };
        let Some(session) = peer.session.as_mut() else {
            return Err(KexError::NoSession);
        };

        let mut buf = frame.to_vec();
        let (nonce, packet_len) = match pils::open(&session.key, &mut buf) {
            Ok(opened) => (opened.nonce, opened.packet.len()),
            Err(PilsError::Authentication) => {
                if let GateVerdict::Drop(reason) = session.recv.on_auth_failure(now) {
                    self.on_drop_gate(now, node, reason);
                }
                return Err(KexError::Pils(PilsError::Authentication));
            }
            Err(e) => return Err(KexError::Pils(e)),
        };
        let verdict = session.recv.on_authenticated(nonce, now);
        if let RecvVerdict::DropSession(reason) = verdict {
            self.on_drop_gate(now, node, reason);
            return Err(KexError::Rejected(verdict));
        }
        if !verdict.is_deliver() {
            return Err(KexError::Rejected(verdict));
        }

        // The plaintext sits between the PILS header and the tag.
        buf.truncate(PILS_HEADER_LEN.saturating_add(packet_len));
        buf.drain(..PILS_HEADER_LEN.min(buf.len()));
        let outcome = classify_inner(node, &buf)?;
        // Authenticated, fresh and well-formed: the peer is alive on this path.
        session.last_inbound = now;
        peer.path = Some(path);
        if peer.attempt.take().is_some() {
            peer.timers.stop(Timer::KeyRetransmit);
        }
        if outcome == FrameOutcome::Delivered {
            self.outputs
                .push_back(KexOutput::Deliver { node, packet: buf });
        }
        Ok(outcome)
    }

    /// spec §6.5 "no key": a PILS we cannot decrypt for lack of a session is answered with
    /// PILA + PILK on its path, at most every [`NO_KEY_ANSWER_INTERVAL`] per peer.
    fn answer_no_key(&mut self, now: Instant, node: u32, path: PathId) {
        if !self.path_limiter.allow(path, now) || !self.no_key_limiter.allow(node, now) {
            return;
        }
        let pila = self.local.pila.clone();
        let pilk = self.local.pilk.clone();
        self.outputs
            .push_back(KexOutput::Transmit { path, frame: pila });
        self.outputs
            .push_back(KexOutput::Transmit { path, frame: pilk });
        if let Some(peer) = self.peers.get_mut(&node) {
            peer.last_pila_sent = Some(now);
        }
    }

    /// spec §5.3, §6.5: a drop gate fired: delete the session and start a key exchange.
    fn on_drop_gate(&mut self, now: Instant, node: u32, reason: DropReason) {
        let Some(peer) = self.peers.get_mut(&node) else {
            return;
        };
        drop_session(
            peer,
            node,
            SessionDownReason::DropGate(reason),
            &mut self.outputs,
        );
        // Counted by the "no key" limiter so the peer's next PILS does not trigger a second
        // PILA + PILK right behind this round.
        let _ = self.no_key_limiter.allow(node, now);
        if peer.attempt.is_none() && !peer.in_cooldown(now) {
            if let Some(path) = peer.path {
                start_attempt(&self.local, peer, path, now, true, &mut self.outputs);
            }
        }
    }
}

/// The entry of `node`, created if the table has room (evicting an idle entry if needed).
fn peer_entry(
    peers: &mut BTreeMap<u32, Peer>,
    now: Instant,
    node: u32,
) -> Result<&mut Peer, KexError> {
    if !peers.contains_key(&node) && peers.len() >= MAX_PEERS {
        let idle = peers.iter().find(|(_, p)| p.is_idle(now)).map(|(&n, _)| n);
        match idle {
            Some(evict) => {
                peers.remove(&evict);
            }
            None => return Err(KexError::PeerTableFull),
        }
    }
    Ok(peers.entry(node).or_default())
}

/// Judges a decrypted packet (spec §5.6, §8.10): deliver, keepalive, or drop.
fn classify_inner(node: u32, packet: &[u8]) -> Result<FrameOutcome, KexError> {
    let decoded = PacketRef::decode(packet).map_err(KexError::MalformedPacket)?;
    let h = decoded.header;
    // spec §8.10: an empty control packet to port 0 is a tunnel keepalive (V-NEW's, or
    // V-FORK's with ACK); spec §5.6: older daemons send it with src.node = 0.
    let keepalive =
        h.protocol == Protocol::Control && h.dst_port == 0 && decoded.payload.is_empty();
    if keepalive && (h.src.node == node || h.src.node == 0) {
        return Ok(FrameOutcome::Keepalive);
    }
    if h.src.node != node {
        return Err(KexError::SpoofedSource);
    }
    Ok(FrameOutcome::Delivered)
}

impl Peer {
    /// Remembers a sent packet in the current session's salvage ring (spec §5.5).
    fn session_salvage_push(&mut self, now: Instant, packet: &[u8]) {
        if let Some(session) = self.session.as_mut() {
            session.salvage.push(now, packet);
        }
    }
}

/// Seals `packet` under the peer's session and queues the frame toward its path.
fn seal_on_session(
    local: &Local,
    peer: &mut Peer,
    now: Instant,
    packet: &[u8],
    outputs: &mut VecDeque<KexOutput>,
) -> Result<(), PilsError> {
    let (Some(session), Some(path)) = (peer.session.as_mut(), peer.path) else {
        // A session always has a path (it is set at install); nothing to send on otherwise.
        return Err(PilsError::Authentication);
    };
    let mut frame = Vec::new();
    pils::seal(
        &session.key,
        &mut session.send,
        local.node,
        packet,
        &mut frame,
    )?;
    peer.timers.set(Timer::Keepalive, now + KEEPALIVE_IDLE);
    outputs.push_back(KexOutput::Transmit { path, frame });
    Ok(())
}

/// Sends our PILA on `path` (with RESPONSE when `response`).
fn send_pila(
    local: &Local,
    peer: &mut Peer,
    path: PathId,
    now: Instant,
    response: bool,
    outputs: &mut VecDeque<KexOutput>,
) {
    let frame = if response {
        local.pila_response.clone()
    } else {
        local.pila.clone()
    };
    outputs.push_back(KexOutput::Transmit { path, frame });
    peer.last_pila_sent = Some(now);
}

/// Begins a key exchange we retransmit until answered (spec §6.6).
///
/// `key_request_now` adds the PILK to the first round already: after a drop gate the peer
/// most likely still holds a session and would treat our same-key PILA as a keepalive.
fn start_attempt(
    local: &Local,
    peer: &mut Peer,
    path: PathId,
    now: Instant,
    key_request_now: bool,
    outputs: &mut VecDeque<KexOutput>,
) {
    peer.attempt = Some(Attempt {
        sends: 0,
        last_send: now,
        eager_key_request: key_request_now,
    });
    send_round(local, peer, path, now, outputs);
}

/// One key-exchange round: our PILA, then a PILK key request from the second round on while
/// no session exists (spec §6.6).
fn send_round(
    local: &Local,
    peer: &mut Peer,
    path: PathId,
    now: Instant,
    outputs: &mut VecDeque<KexOutput>,
) {
    let Some(attempt) = peer.attempt.as_mut() else {
        return;
    };
    let key_request = attempt.eager_key_request || attempt.sends >= KEY_REQUEST_AFTER_SENDS;
    attempt.sends = attempt.sends.saturating_add(1);
    attempt.last_send = now;
    peer.timers
        .set(Timer::KeyRetransmit, now + KEY_RETRANSMIT_INTERVAL);
    send_pila(local, peer, path, now, false, outputs);
    if key_request && peer.session.is_none() {
        outputs.push_back(KexOutput::Transmit {
            path,
            frame: local.pilk.clone(),
        });
    }
}

/// The retransmit timer fired: next round, or give up after the last (spec §6.6).
fn on_retransmit_timer(
    local: &Local,
    node: u32,
    peer: &mut Peer,
    now: Instant,
    outputs: &mut VecDeque<KexOutput>,
) {
    let Some(attempt) = peer.attempt else {
        return;
    };
    if attempt.sends >= KEY_EXCHANGE_MAX_SENDS {
        peer.attempt = None;
        peer.cooldown_until = Some(now + GIVE_UP_COOLDOWN);
        let dropped_packets = peer.pending.len();
        peer.pending.clear();
        outputs.push_back(KexOutput::Event(KexEvent::GaveUp {
            node,
            dropped_packets,
        }));
        return;
    }
    match peer.path {
        Some(path) => send_round(local, peer, path, now, outputs),
        None => peer.attempt = None,
    }
}

/// spec §7.1, §8.10: an encrypted empty control packet to port 0 after send idleness.
fn send_keepalive(
    local: &Local,
    node: u32,
    peer: &mut Peer,
    now: Instant,
    outputs: &mut VecDeque<KexOutput>,
) {
    if peer.session.is_none() {
        return;
    }
    let header = Header {
        flags: Flags::NONE,
        protocol: Protocol::Control,
        src: Addr::new(0, local.node),
        dst: Addr::new(0, node),
        src_port: 0,
        dst_port: 0,
        seq: 0,
        ack: 0,
        window: 0,
    };
    let mut packet = Vec::new();
    if PacketRef::new(header, &[]).encode(&mut packet).is_err() {
        return;
    }
    if seal_on_session(local, peer, now, &packet, outputs) == Err(PilsError::NonceExhausted) {
        drop_session(peer, node, SessionDownReason::NonceExhausted, outputs);
    }
}

/// spec §6.4 (V-MID/V-NEW, with V-FORK's REQUEST flag): a verified PILA with the session's
/// peer key keeps the session object untouched and is answered only by rule.
fn on_same_key_pila(
    local: &Local,
    peer: &mut Peer,
    path: PathId,
    now: Instant,
    trailer: Trailer,
    outputs: &mut VecDeque<KexOutput>,
) {
    // Receiving the peer's key exchange ends ours (spec §6.6).
    if peer.attempt.take().is_some() {
        peer.timers.stop(Timer::KeyRetransmit);
    }
    let Some(session) = peer.session.as_ref() else {
        return;
    };
    if now.saturating_duration_since(session.installed_at) < DUPLICATE_DEBOUNCE {
        return;
    }
    let stale = now.saturating_duration_since(session.last_inbound) >= STALE_INBOUND;
    let since_reply = peer
        .last_reply
        .map_or(Duration::MAX, |at| now.saturating_duration_since(at));
    if stale {
        // The peer may have moved; nothing fresher says where it is.
        peer.path = Some(path);
    }
    let reply = if trailer.is_request() && since_reply >= REQUEST_REPLY_INTERVAL {
        Some(true)
    } else if stale && since_reply >= STALE_REPLY_INTERVAL {
        Some(false)
    } else {
        None
    };
    if let Some(response) = reply {
        peer.last_reply = Some(now);
        send_pila(local, peer, path, now, response, outputs);
    }
}

/// Finishes installing a new or replaced session (spec §6.2 steps 5–6): record the path,
/// end our key exchange, reply with our PILA, replay salvage after a rekey, flush the queue.
fn install(
    local: &Local,
    peer: &mut Peer,
    path: PathId,
    now: Instant,
    old: Option<Session>,
    outputs: &mut VecDeque<KexOutput>,
) {
    peer.path = Some(path);
    peer.attempt = None;
    peer.cooldown_until = None;
    peer.timers.stop(Timer::KeyRetransmit);
    peer.timers.set(Timer::Keepalive, now + KEEPALIVE_IDLE);
    send_pila(local, peer, path, now, false, outputs);

    // spec §5.5: packets the restarted peer could not decrypt are sent again, newest session.
    let salvaged = old
        .map(|mut s| s.salvage.take_fresh(now))
        .unwrap_or_default();
    let pending = core::mem::take(&mut peer.pending);
    for packet in salvaged.iter().chain(pending.iter()) {
        if seal_on_session(local, peer, now, packet.as_slice(), outputs).is_ok() {
            peer.session_salvage_push(now, packet.as_slice());
        }
    }
}

/// Deletes the peer's session, remembering its counter for a rebuild toward the same key.
fn drop_session(
    peer: &mut Peer,
    node: u32,
    reason: SessionDownReason,
    outputs: &mut VecDeque<KexOutput>,
) {
    if let Some(session) = peer.session.take() {
        // An exhausted counter cannot continue; any other rebuild toward the same key does.
        if reason != SessionDownReason::NonceExhausted {
            peer.retired_send = Some((session.peer_x25519, session.send.last_counter()));
        }
        peer.timers.stop(Timer::Keepalive);
        outputs.push_back(KexOutput::Event(KexEvent::SessionDown { node, reason }));
    }
}
