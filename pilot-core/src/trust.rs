//! The trust handshake on port 444 (spec §9.6, §6.8): message codec, the receiver's checks in
//! the spec's order, and the replay cache.
//!
//! One JSON object travels per stream connection. The sender builds it with
//! [`HandshakeMessage::signed`]; the receiver runs it through a [`HandshakeReceiver`]:
//!
//! 1. size and JSON shape ([`HandshakeMessage::decode`]);
//! 2. timestamp: at most [`MAX_MESSAGE_AGE`] old, at most [`MAX_CLOCK_SKEW`] ahead;
//! 3. replay: the message's digest must not be in the [`ReplayCache`];
//! 4. `public_key` must be present (V-NEW), equal the registry's key for `node_id` and the
//!    signature over `handshake:<sender>:<receiver>` must verify against it;
//! 5. only then is the digest recorded.
//!
//! Steps 1–3 need no registry: [`HandshakeReceiver::precheck`] runs them so the driver looks
//! up the sender's key only for fresh messages, then [`HandshakeReceiver::authenticate`]
//! repeats 2–3 with the time after the lookup and finishes. What to do with a verified
//! message (trust, queue as pending, answer) is the node's policy, not this module's.
//!
//! Lives beside [`crate::registry`] rather than in `services` because the message is bound to
//! the registry: the key it is checked against comes from a registry `lookup` and the
//! challenge is the one `request_handshake` signs.
//!
//! Times here are wall-clock Unix seconds supplied by the driver, because the peer's
//! `timestamp` is one.
//!
//! # Security notes
//!
//! spec §9.6 fixes what is signed: `handshake:<sender>:<receiver>`, nothing else. `type`,
//! `timestamp`, `justification` and `reason` are not covered, so the signature is a fixed
//! token per (sender, receiver) pair, valid until the sender rotates its key. A successful
//! verification proves that A once signed *for B*, not that A sent *this* message *now*.
//! Whoever holds A's token for B can forge any message "from A" to B, of any type, with any
//! timestamp and text:
//! * B itself, and anyone who saw one of A's messages to B in clear;
//! * the registry: `request_handshake` (§9.5) signs the very same string, so every relayed
//!   request hands A's token for B to the registry.
//!
//! The same holder can also mint unlimited distinct messages that pass every check here. The
//! [`ReplayCache`] therefore records at most [`REPLAY_ENTRIES_PER_SENDER`] digests per
//! sender, so one sender (or holder of its token) cannot crowd out the others.
//!
//! The service layer that acts on verified messages (not this module) should treat them as
//! claims by anyone holding the token, not as A's word:
//! * `handshake_accept`: act on it only as the answer to a request we sent to that node and
//!   still have outstanding, and never let it create trust on its own. A token from an earlier
//!   exchange still passes, so where it matters confirm through the registry (`check_trust`,
//!   which the peer's `report_trust` sets) before trusting.
//! * `handshake_revoke` / `handshake_reject`: hints. Dropping our outgoing request or trust
//!   fails closed, so obeying one costs at worst a denial of service; never let one grant
//!   anything, and do not let it start a cooldown that would block a genuine later accept
//!   without confirming the revocation with the registry.
//! * `handshake_request`: may queue a pending request; auto-approval must rest on facts
//!   independent of the message (registry-confirmed key, shared network, our own outstanding
//!   request), never on its `justification`.
//! * `justification` and `reason` are unauthenticated text; `timestamp` says nothing about
//!   when A acted.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use crate::crypto::Identity;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::registry::{challenge, PublicKey, RegistryError, Signature, PUBLIC_KEY_BYTES};

/// The virtual port of the trust handshake service.
pub const HANDSHAKE_PORT: u16 = 444;
/// Oldest acceptable `timestamp`, relative to the receiver's clock.
pub const MAX_MESSAGE_AGE: Duration = Duration::from_secs(5 * 60);
/// Furthest acceptable `timestamp` ahead of the receiver's clock.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(30);
/// How long a digest stays in the replay cache. Any message older than
/// `MAX_MESSAGE_AGE + MAX_CLOCK_SKEW` is already refused by its timestamp; the rest is margin
/// for clock steps (the reference keeps entries twice `MAX_MESSAGE_AGE`).
pub const REPLAY_RETENTION: Duration = Duration::from_secs(10 * 60);
/// Most digests the replay cache holds.
pub const REPLAY_CACHE_CAPACITY: usize = 8192;
/// Most digests the replay cache holds for one sender `node_id`. The signature does not
/// cover the message body (see the module's security notes), so one sender can mint any
/// number of valid messages; this quota keeps it from filling the cache for everyone. An
/// honest peer sends a handful of messages per [`REPLAY_RETENTION`]. Filling the whole cache
/// takes `REPLAY_CACHE_CAPACITY / REPLAY_ENTRIES_PER_SENDER` (128) senders the registry knows.
pub const REPLAY_ENTRIES_PER_SENDER: usize = 64;
/// Longest justification (and reason) kept on receive, in bytes of printable characters.
pub const MAX_JUSTIFICATION_BYTES: usize = 1024;
/// Largest message accepted: V-NEW receivers do a single read of at most 64 KiB.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Largest message a V-FORK receiver can read: it takes one stream segment only, so a message
/// meant for V-FORK peers should stay within this.
pub const SINGLE_SEGMENT_BYTES: usize = 1024;

/// The four message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HandshakeKind {
    /// `handshake_request`: asks the receiver for trust.
    #[serde(rename = "handshake_request")]
    Request,
    /// `handshake_accept`: the sender now trusts the receiver.
    #[serde(rename = "handshake_accept")]
    Accept,
    /// `handshake_reject`: the sender declined the receiver's request.
    #[serde(rename = "handshake_reject")]
    Reject,
    /// `handshake_revoke`: the sender withdrew its trust.
    #[serde(rename = "handshake_revoke")]
    Revoke,
}

impl HandshakeKind {
    /// The wire `"type"`.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeKind::Request => "handshake_request",
            HandshakeKind::Accept => "handshake_accept",
            HandshakeKind::Reject => "handshake_reject",
            HandshakeKind::Revoke => "handshake_revoke",
        }
    }

    fn from_wire(ty: &str) -> Option<Self> {
        match ty {
            "handshake_request" => Some(HandshakeKind::Request),
            "handshake_accept" => Some(HandshakeKind::Accept),
            "handshake_reject" => Some(HandshakeKind::Reject),
            "handshake_revoke" => Some(HandshakeKind::Revoke),
            _ => None,
        }
    }
}

/// A port-444 message exactly as on the wire.
///
/// spec §9.6: all seven fields are always written, empty strings included; field order
/// follows the spec. `public_key` and `signature` stay as text so that the replay digest
/// covers what the sender sent; the receiver decodes them during its checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HandshakeMessage {
    /// Message type.
    #[serde(rename = "type")]
    pub kind: HandshakeKind,
    /// The sender's node ID.
    pub node_id: u32,
    /// The sender's Ed25519 key, standard base64; empty if absent.
    pub public_key: String,
    /// Why the sender wants trust (requests); free text.
    pub justification: String,
    /// Ed25519 signature over `handshake:<sender>:<receiver>`, standard base64.
    pub signature: String,
    /// Why (rejections and revocations); free text.
    pub reason: String,
    /// When the sender built the message, Unix seconds.
    pub timestamp: i64,
}

/// The receive-side shape: `type` kept as text to tell an unknown type from bad JSON, and the
/// fields a sender might leave out defaulting to empty (the checks then refuse them by name).
#[derive(Deserialize)]
struct WireMessage {
    #[serde(rename = "type")]
    kind: String,
    node_id: u32,
    #[serde(default)]
    public_key: String,
    #[serde(default)]
    justification: String,
    #[serde(default)]
    signature: String,
    #[serde(default)]
    reason: String,
    timestamp: i64,
}

impl HandshakeMessage {
    /// A message from `sender` to `receiver`, stamped `timestamp_unix_secs` and signed with
    /// the sender's identity key. Justification and reason start empty.
    pub fn signed(
        kind: HandshakeKind,
        sender: u32,
        receiver: u32,
        key: &Identity,
        timestamp_unix_secs: i64,
    ) -> Self {
        let public_key = PublicKey(key.public_key());
        let signature = challenge::sign(key, &challenge::handshake(sender, receiver));
        HandshakeMessage {
            kind,
            node_id: sender,
            public_key: public_key.to_base64(),
            justification: String::new(),
            signature: signature.to_base64(),
            reason: String::new(),
            timestamp: timestamp_unix_secs,
        }
    }

    /// Sets the justification (not covered by the signature).
    pub fn with_justification(mut self, justification: String) -> Self {
        self.justification = justification;
        self
    }

    /// Sets the reason (not covered by the signature).
    pub fn with_reason(mut self, reason: String) -> Self {
        self.reason = reason;
        self
    }

    /// The JSON bytes to write on the port-444 stream, in a single write.
    ///
    /// Refuses messages above [`MAX_MESSAGE_BYTES`]; keep them within
    /// [`SINGLE_SEGMENT_BYTES`] to reach V-FORK peers.
    pub fn encode(&self) -> Result<Vec<u8>, TrustError> {
        let json =
            serde_json::to_vec(self).map_err(|err| TrustError::Malformed(err.to_string()))?;
        if json.len() > MAX_MESSAGE_BYTES {
            return Err(TrustError::TooLarge { len: json.len() });
        }
        Ok(json)
    }

    /// Parses one received message. Unknown fields are ignored; `type`, `node_id` and
    /// `timestamp` are required.
    pub fn decode(bytes: &[u8]) -> Result<Self, TrustError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(TrustError::TooLarge { len: bytes.len() });
        }
        // serde would also read a struct from a JSON array; the wire carries an object.
        let first = bytes
            .iter()
            .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
        if first != Some(&b'{') {
            return Err(TrustError::Malformed("message is not a JSON object".into()));
        }
        let wire: WireMessage =
            serde_json::from_slice(bytes).map_err(|err| TrustError::Malformed(err.to_string()))?;
        let kind =
            HandshakeKind::from_wire(&wire.kind).ok_or(TrustError::UnknownType(wire.kind))?;
        Ok(HandshakeMessage {
            kind,
            node_id: wire.node_id,
            public_key: wire.public_key,
            justification: wire.justification,
            signature: wire.signature,
            reason: wire.reason,
            timestamp: wire.timestamp,
        })
    }

    /// The replay-cache key: SHA-256 of the canonical re-encoding (compact JSON, spec field
    /// order), not of the received bytes, so the same message re-spaced, re-ordered or with
    /// extra fields still counts as a replay. Like the reference, which hashes its own
    /// re-marshalled struct; the bytes differ from Go's (no HTML escaping) but the cache is
    /// local, so only consistency matters.
    pub fn replay_digest(&self) -> Result<[u8; 32], TrustError> {
        let canonical =
            serde_json::to_vec(self).map_err(|err| TrustError::Malformed(err.to_string()))?;
        Ok(Sha256::digest(&canonical).into())
    }
}

/// Keeps what a receiver shows of peer-supplied text: printable characters only, at most
/// [`MAX_JUSTIFICATION_BYTES`] bytes, never cutting a character.
///
/// Printable follows Go's `unicode.IsPrint` as far as `core` allows: letters, marks, numbers,
/// punctuation, symbols and the ASCII space stay; controls, other spaces, line/paragraph
/// separators, format characters (bidi overrides, zero-width joiners …), private-use code
/// points and noncharacters go. Unassigned code points are kept (no Unicode tables in `core`).
pub fn sanitize_text(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().filter(|&c| is_printable(c)) {
        if out.len().saturating_add(c.len_utf8()) > MAX_JUSTIFICATION_BYTES {
            break;
        }
        out.push(c);
    }
    out
}

fn is_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let cp = u32::from(c);
    let format = matches!(
        cp,
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    );
    let private_use = matches!(cp, 0xE000..=0xF8FF | 0xF0000..=0x10FFFF);
    let noncharacter = matches!(cp, 0xFDD0..=0xFDEF) || cp & 0xFFFE == 0xFFFE;
    !(format || private_use || noncharacter)
}

/// A message that passed the checks that need no registry (size, shape, time, replay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnverifiedHandshake {
    message: HandshakeMessage,
    digest: [u8; 32],
}

impl UnverifiedHandshake {
    /// The claimed sender: whose registry key the driver must look up.
    pub fn node_id(&self) -> u32 {
        self.message.node_id
    }

    /// The message as received.
    pub fn message(&self) -> &HandshakeMessage {
        &self.message
    }
}

/// A message that passed every check of spec §9.6.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedHandshake {
    /// Message type.
    pub kind: HandshakeKind,
    /// The sender, proven to hold the key the registry has for it.
    pub node_id: u32,
    /// That key.
    pub public_key: [u8; PUBLIC_KEY_BYTES],
    /// The justification, through [`sanitize_text`].
    pub justification: String,
    /// The reason, through [`sanitize_text`].
    pub reason: String,
    /// The sender's timestamp, Unix seconds.
    pub timestamp: i64,
}

/// Remembers the digests of recently accepted messages (spec §9.6).
///
/// Bounded: at most [`REPLAY_CACHE_CAPACITY`] digests in total and at most
/// [`REPLAY_ENTRIES_PER_SENDER`] per sender, each kept [`REPLAY_RETENTION`]. Expired digests
/// leave in insertion order as new ones arrive, so the work per insert is amortised
/// constant; a full sweep happens only when a limit is reached.
///
/// When a limit is reached with live digests an insert fails rather than evict one:
/// forgetting a live digest would let that message replay. Only authenticated messages are
/// inserted, but authentication does not cover the body (see the module's security notes):
/// one sender, or anyone holding its signature, can produce unlimited distinct valid
/// messages. The per-sender quota confines that to the sender itself, which is then refused
/// with [`TrustError::SenderQuotaFull`] until its digests expire; other senders are
/// unaffected unless 128 distinct registered senders each fill their quota. The price: a
/// holder of A's signature can keep A's genuine messages out for up to [`REPLAY_RETENTION`]
/// (it could forge them anyway). An over-quota sender triggers a sweep per message, but
/// only after a signature verification, which costs more.
#[derive(Debug, Clone, Default)]
pub struct ReplayCache {
    seen: BTreeSet<[u8; 32]>,
    /// `(expires at, sender, digest)` in insertion order.
    order: VecDeque<(u64, u32, [u8; 32])>,
    /// Live digests per sender; senders with none are absent.
    per_sender: BTreeMap<u32, usize>,
}

impl ReplayCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Digests currently held.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no digest is held.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Whether `digest` was recorded and not yet purged.
    pub fn contains(&self, digest: &[u8; 32]) -> bool {
        self.seen.contains(digest)
    }

    /// Live digests held for `sender`.
    pub fn sender_len(&self, sender: u32) -> usize {
        self.per_sender.get(&sender).copied().unwrap_or(0)
    }

    /// Records `digest` of a message from `sender` at `now_unix_secs`.
    ///
    /// Fails with [`TrustError::Replay`] if it is already present, with
    /// [`TrustError::SenderQuotaFull`] if `sender` already has
    /// [`REPLAY_ENTRIES_PER_SENDER`] live digests, and with [`TrustError::ReplayCacheFull`] if
    /// no room can be made.
    pub fn insert(
        &mut self,
        sender: u32,
        digest: [u8; 32],
        now_unix_secs: u64,
    ) -> Result<(), TrustError> {
        self.purge_expired(now_unix_secs);
        if self.seen.contains(&digest) {
            return Err(TrustError::Replay);
        }
        // Entries can sit behind a younger one if the driver's clock stepped back, so a limit
        // is only final after a sweep.
        if self.sender_len(sender) >= REPLAY_ENTRIES_PER_SENDER {
            self.sweep(now_unix_secs);
            if self.sender_len(sender) >= REPLAY_ENTRIES_PER_SENDER {
                return Err(TrustError::SenderQuotaFull);
            }
        }
        if self.seen.len() >= REPLAY_CACHE_CAPACITY {
            self.sweep(now_unix_secs);
            if self.seen.len() >= REPLAY_CACHE_CAPACITY {
                return Err(TrustError::ReplayCacheFull);
            }
        }
        let expires = now_unix_secs.saturating_add(REPLAY_RETENTION.as_secs());
        self.seen.insert(digest);
        self.order.push_back((expires, sender, digest));
        let count = self.per_sender.entry(sender).or_insert(0);
        *count = count.saturating_add(1);
        Ok(())
    }

    /// Drops expired digests from the front of the insertion order.
    pub fn purge_expired(&mut self, now_unix_secs: u64) {
        while let Some(&(expires, sender, digest)) = self.order.front() {
            if expires > now_unix_secs {
                break;
            }
            self.order.pop_front();
            Self::forget(&mut self.seen, &mut self.per_sender, sender, &digest);
        }
    }

    /// Drops every expired digest wherever it sits.
    fn sweep(&mut self, now_unix_secs: u64) {
        let seen = &mut self.seen;
        let per_sender = &mut self.per_sender;
        self.order.retain(|&(expires, sender, digest)| {
            let live = expires > now_unix_secs;
            if !live {
                Self::forget(seen, per_sender, sender, &digest);
            }
            live
        });
    }

    fn forget(
        seen: &mut BTreeSet<[u8; 32]>,
        per_sender: &mut BTreeMap<u32, usize>,
        sender: u32,
        digest: &[u8; 32],
    ) {
        seen.remove(digest);
        if let Some(count) = per_sender.get_mut(&sender) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_sender.remove(&sender);
            }
        }
    }
}

/// Runs the receiver's checks for one local node and owns its replay cache.
#[derive(Debug, Clone)]
pub struct HandshakeReceiver {
    local_node: u32,
    replay: ReplayCache,
}

impl HandshakeReceiver {
    /// A receiver for messages addressed to `local_node`.
    pub fn new(local_node: u32) -> Self {
        HandshakeReceiver {
            local_node,
            replay: ReplayCache::new(),
        }
    }

    /// The node messages must be addressed to (the `<receiver>` of the challenge).
    pub fn local_node(&self) -> u32 {
        self.local_node
    }

    /// The replay cache, for inspection.
    pub fn replay_cache(&self) -> &ReplayCache {
        &self.replay
    }

    /// Steps 1–3: decode, timestamp window, replay lookup. Records nothing.
    pub fn precheck(
        &self,
        bytes: &[u8],
        now_unix_secs: u64,
    ) -> Result<UnverifiedHandshake, TrustError> {
        let message = HandshakeMessage::decode(bytes)?;
        let digest = message.replay_digest()?;
        let unverified = UnverifiedHandshake { message, digest };
        self.check_fresh(&unverified, now_unix_secs)?;
        Ok(unverified)
    }

    /// Steps 2–5 for a prechecked message, given the registry's key for its `node_id`.
    ///
    /// Time and replay are checked again with `now_unix_secs` (the registry lookup took time,
    /// and a copy may have been accepted meanwhile). On success the digest is recorded.
    pub fn authenticate(
        &mut self,
        unverified: UnverifiedHandshake,
        registry_key: &[u8; PUBLIC_KEY_BYTES],
        now_unix_secs: u64,
    ) -> Result<VerifiedHandshake, TrustError> {
        self.check_fresh(&unverified, now_unix_secs)?;
        let message = &unverified.message;

        // spec §9.6 (V-NEW): a message without its sender's key is refused outright. The
        // reference only does so for requests; every sender we know fills it for all four
        // types, and an unauthenticated accept or revoke would change trust on anyone's say.
        if message.public_key.is_empty() {
            return Err(TrustError::MissingPublicKey);
        }
        if message.signature.is_empty() {
            return Err(TrustError::MissingSignature);
        }
        let claimed = PublicKey::from_base64(&message.public_key)
            .map_err(|_| TrustError::InvalidPublicKey)?;
        if !bool::from(claimed.0.ct_eq(registry_key)) {
            return Err(TrustError::KeyMismatch);
        }
        let signature = Signature::from_base64(&message.signature)
            .map_err(|_| TrustError::InvalidSignatureEncoding)?;
        let challenge = challenge::handshake(message.node_id, self.local_node);
        challenge::verify(registry_key, &challenge, &signature).map_err(|err| match err {
            RegistryError::InvalidPublicKey => TrustError::InvalidPublicKey,
            _ => TrustError::BadSignature,
        })?;

        // Recorded only now: forged messages must not be able to fill the cache.
        self.replay
            .insert(message.node_id, unverified.digest, now_unix_secs)?;

        Ok(VerifiedHandshake {
            kind: message.kind,
            node_id: message.node_id,
            public_key: *registry_key,
            justification: sanitize_text(&message.justification),
            reason: sanitize_text(&message.reason),
            timestamp: message.timestamp,
        })
    }

    /// All steps at once, for a driver that already holds registry keys: `registry_key`
    /// returns the key the registry has for a node ID, `None` if it has none.
    pub fn receive(
        &mut self,
        bytes: &[u8],
        now_unix_secs: u64,
        registry_key: impl FnOnce(u32) -> Option<[u8; PUBLIC_KEY_BYTES]>,
    ) -> Result<VerifiedHandshake, TrustError> {
        let unverified = self.precheck(bytes, now_unix_secs)?;
        let key = registry_key(unverified.node_id()).ok_or(TrustError::UnknownNode)?;
        self.authenticate(unverified, &key, now_unix_secs)
    }

    fn check_fresh(
        &self,
        unverified: &UnverifiedHandshake,
        now_unix_secs: u64,
    ) -> Result<(), TrustError> {
        let now = i128::from(now_unix_secs);
        let sent = i128::from(unverified.message.timestamp);
        let age = now - sent;
        if age > i128::from(MAX_MESSAGE_AGE.as_secs()) {
            return Err(TrustError::TooOld {
                age_secs: u64::try_from(age).unwrap_or(u64::MAX),
            });
        }
        if -age > i128::from(MAX_CLOCK_SKEW.as_secs()) {
            return Err(TrustError::FromFuture {
                ahead_secs: u64::try_from(-age).unwrap_or(u64::MAX),
            });
        }
        if self.replay.contains(&unverified.digest) {
            return Err(TrustError::Replay);
        }
        Ok(())
    }
}

/// Why a port-444 message was refused. Every variant is a distinct verdict; the driver drops
/// the message (and may log the verdict) in all cases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustError {
    /// Above [`MAX_MESSAGE_BYTES`].
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// Not a JSON object of the message's shape.
    Malformed(String),
    /// `type` is not one of the four handshake types.
    UnknownType(String),
    /// `timestamp` is more than [`MAX_MESSAGE_AGE`] old.
    TooOld {
        /// How old, in seconds.
        age_secs: u64,
    },
    /// `timestamp` is more than [`MAX_CLOCK_SKEW`] ahead.
    FromFuture {
        /// How far ahead, in seconds.
        ahead_secs: u64,
    },
    /// The same message was already accepted.
    Replay,
    /// The replay cache is full of live digests; try again later.
    ReplayCacheFull,
    /// The replay cache already holds [`REPLAY_ENTRIES_PER_SENDER`] live digests from this
    /// sender; its messages are refused until some expire.
    SenderQuotaFull,
    /// `public_key` is empty (V-NEW).
    MissingPublicKey,
    /// `signature` is empty.
    MissingSignature,
    /// `public_key` is not base64 of 32 bytes, or not a usable Ed25519 key.
    InvalidPublicKey,
    /// `public_key` differs from the registry's key for `node_id`.
    KeyMismatch,
    /// `signature` is not base64 of 64 bytes.
    InvalidSignatureEncoding,
    /// The signature does not verify over `handshake:<sender>:<receiver>`.
    BadSignature,
    /// The registry has no key for the sender.
    UnknownNode,
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustError::TooLarge { len } => {
                write!(
                    f,
                    "handshake message of {len} bytes exceeds {MAX_MESSAGE_BYTES}"
                )
            }
            TrustError::Malformed(detail) => write!(f, "malformed handshake message: {detail}"),
            TrustError::UnknownType(ty) => write!(f, "unknown handshake message type {ty:?}"),
            TrustError::TooOld { age_secs } => write!(f, "handshake message {age_secs} s old"),
            TrustError::FromFuture { ahead_secs } => {
                write!(f, "handshake message {ahead_secs} s in the future")
            }
            TrustError::Replay => f.write_str("handshake message replayed"),
            TrustError::ReplayCacheFull => f.write_str("handshake replay cache full"),
            TrustError::SenderQuotaFull => {
                f.write_str("handshake replay cache holds its quota of messages from this sender")
            }
            TrustError::MissingPublicKey => f.write_str("handshake message without public key"),
            TrustError::MissingSignature => f.write_str("handshake message without signature"),
            TrustError::InvalidPublicKey => f.write_str("handshake public key invalid"),
            TrustError::KeyMismatch => f.write_str("handshake public key differs from registry"),
            TrustError::InvalidSignatureEncoding => {
                f.write_str("handshake signature is not base64 of 64 bytes")
            }
            TrustError::BadSignature => f.write_str("handshake signature verification failed"),
            TrustError::UnknownNode => f.write_str("registry has no key for handshake sender"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TrustError {}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;
    use alloc::format;
    use serde_json::{json, Value};

    const NOW: u64 = 1_790_000_000;
    const SENDER: u32 = 100;
    const RECEIVER: u32 = 200;

    fn key(seed: u8) -> Identity {
        Identity::from_seed(&[seed; 32])
    }

    fn registry_key(seed: u8) -> [u8; 32] {
        key(seed).public_key()
    }

    fn request_at(timestamp: u64) -> HandshakeMessage {
        HandshakeMessage::signed(
            HandshakeKind::Request,
            SENDER,
            RECEIVER,
            &key(1),
            i64::try_from(timestamp).unwrap(),
        )
        .with_justification("need to talk".into())
    }

    fn receive(
        rx: &mut HandshakeReceiver,
        msg: &HandshakeMessage,
    ) -> Result<VerifiedHandshake, TrustError> {
        rx.receive(&msg.encode().unwrap(), NOW, |node| {
            (node == SENDER).then(|| registry_key(1))
        })
    }

    #[test]
    fn message_has_all_seven_fields() {
        let msg = request_at(NOW);
        let value: Value = serde_json::from_slice(&msg.encode().unwrap()).unwrap();
        let expected = json!({
            "type": "handshake_request",
            "node_id": SENDER,
            "public_key": PublicKey(registry_key(1)).to_base64(),
            "justification": "need to talk",
            "signature": value["signature"].clone(),
            "reason": "",
            "timestamp": NOW,
        });
        assert_eq!(value, expected);
        // Field order on the wire follows the spec.
        let text = String::from_utf8(msg.encode().unwrap()).unwrap();
        assert!(text.starts_with("{\"type\":\"handshake_request\",\"node_id\":100,\"public_key\":"));
        assert!(text.ends_with(&format!(",\"reason\":\"\",\"timestamp\":{NOW}}}")));
    }

    #[test]
    fn every_kind_encodes_its_wire_type_and_round_trips() {
        for kind in [
            HandshakeKind::Request,
            HandshakeKind::Accept,
            HandshakeKind::Reject,
            HandshakeKind::Revoke,
        ] {
            let msg = HandshakeMessage::signed(kind, SENDER, RECEIVER, &key(1), 5)
                .with_reason("r".into());
            let bytes = msg.encode().unwrap();
            let value: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(value["type"], kind.as_str());
            assert_eq!(HandshakeMessage::decode(&bytes).unwrap(), msg);
        }
    }

    #[test]
    fn signature_covers_sender_and_receiver() {
        let msg = request_at(NOW);
        let sig = Signature::from_base64(&msg.signature).unwrap();
        assert_eq!(
            challenge::verify(&registry_key(1), "handshake:100:200", &sig),
            Ok(())
        );
        assert_eq!(
            challenge::verify(&registry_key(1), "handshake:200:100", &sig),
            Err(RegistryError::BadSignature)
        );
    }

    #[test]
    fn valid_request_is_accepted_and_recorded() {
        let mut rx = HandshakeReceiver::new(RECEIVER);
        let verified = receive(&mut rx, &request_at(NOW)).unwrap();
        assert_eq!(
            verified,
            VerifiedHandshake {
                kind: HandshakeKind::Request,
                node_id: SENDER,
                public_key: registry_key(1),
                justification: "need to talk".into(),
                reason: String::new(),
                timestamp: i64::try_from(NOW).unwrap(),
            }
        );
        assert_eq!(rx.replay_cache().len(), 1);
    }

    #[test]
    fn timestamp_window_is_five_minutes_back_and_thirty_seconds_ahead() {
        let mut rx = HandshakeReceiver::new(RECEIVER);
        assert!(receive(&mut rx, &request_at(NOW - 300)).is_ok());
        assert_eq!(
            receive(&mut rx, &request_at(NOW - 301)),
            Err(TrustError::TooOld { age_secs: 301 })
        );
        assert!(receive(&mut rx, &request_at(NOW + 30)).is_ok());
        assert_eq!(
            receive(&mut rx, &request_at(NOW + 31)),
            Err(TrustError::FromFuture { ahead_secs: 31 })
        );
        let ancient = request_at(0);
        assert!(matches!(
            receive(&mut rx, &ancient),
            Err(TrustError::TooOld { .. })
        ));
        let mut far = request_at(NOW);
        far.timestamp = i64::MIN;
        assert!(matches!(
            receive(&mut rx, &far),
            Err(TrustError::TooOld { .. })
        ));
        far.timestamp = i64::MAX;
        assert!(matches!(
            receive(&mut rx, &far),
            Err(TrustError::FromFuture { .. })
        ));
    }

    #[test]
    fn replay_is_refused_even_when_respelled() {
        let mut rx = HandshakeReceiver::new(RECEIVER);
        let msg = request_at(NOW);
        assert!(receive(&mut rx, &msg).is_ok());
        assert_eq!(receive(&mut rx, &msg), Err(TrustError::Replay));

        // Same message, different spelling: whitespace, key order, an extra field.
        let value: Value = serde_json::from_slice(&msg.encode().unwrap()).unwrap();
        let respelled = format!(
            "{{ \"timestamp\": {}, \"reason\": \"\", \"signature\": {}, \"justification\": {}, \
             \"public_key\": {}, \"node_id\": {}, \"type\": \"handshake_request\", \"x\": 1 }}",
            value["timestamp"],
            value["signature"],
            value["justification"],
            value["public_key"],
            value["node_id"]
        );
        let got = rx.receive(respelled.as_bytes(), NOW, |_| Some(registry_key(1)));
        assert_eq!(got, Err(TrustError::Replay));
    }

    #[test]
    fn forged_messages_are_not_recorded() {
        let mut rx = HandshakeReceiver::new(RECEIVER);
        let mut forged = request_at(NOW);
        forged.signature =
            HandshakeMessage::signed(HandshakeKind::Request, SENDER, 999, &key(1), 0).signature;
        assert_eq!(receive(&mut rx, &forged), Err(TrustError::BadSignature));
        assert!(rx.replay_cache().is_empty());
    }

    #[test]
    fn missing_public_key_or_signature_is_refused_for_every_kind() {
        let mut rx = HandshakeReceiver::new(RECEIVER);
        for kind in [
            HandshakeKind::Request,
            HandshakeKind::Accept,
            HandshakeKind::Reject,
            HandshakeKind::Revoke,
        ] {
            let mut no_key = HandshakeMessage::signed(kind, SENDER, RECEIVER, &key(1), NOW as i64);
            no_key.public_key.clear();
            assert_eq!(
                receive(&mut rx, &no_key),
                Err(TrustError::MissingPublicKey),
                "{kind:?}"
            );
            let mut no_sig = HandshakeMessage::signed(kind, SENDER, RECEIVER, &key(1), NOW as i64);
            no_sig.signature.clear();
            assert_eq!(
                receive(&mut rx, &no_sig),
                Err(TrustError::MissingSignature),
                "{kind:?}"
            );
        }
        // Absent fields read as empty and get the same verdicts.
        let bare = format!(r#"{{"type":"handshake_accept","node_id":{SENDER},"timestamp":{NOW}}}"#);
        assert_eq!(
            rx.receive(bare.as_bytes(), NOW, |_| Some(registry_key(1))),
            Err(TrustError::MissingPublicKey)
        );
    }

    #[test]
    fn key_must_match_the_registry() {
        let mut rx = HandshakeReceiver::new(RECEIVER);
        // An impostor signs with its own key while claiming SENDER's node ID.
        let impostor =
            HandshakeMessage::signed(HandshakeKind::Accept, SENDER, RECEIVER, &key(9), NOW as i64);
        assert_eq!(receive(&mut rx, &impostor), Err(TrustError::KeyMismatch));
        // The impostor pastes SENDER's key but cannot sign with it.
        let mut pasted = impostor;
        pasted.public_key = PublicKey(registry_key(1)).to_base64();
        assert_eq!(receive(&mut rx, &pasted), Err(TrustError::BadSignature));
    }

    #[test]
    fn tampered_fields_fail() {
        let mut rx = HandshakeReceiver::new(RECEIVER);
        // Another receiver: the challenge names RECEIVER.
        let mut elsewhere = HandshakeReceiver::new(RECEIVER + 1);
        assert_eq!(
            receive(&mut elsewhere, &request_at(NOW)),
            Err(TrustError::BadSignature)
        );
        // Re-addressed from another node that happens to use the same key.
        let mut renumbered = request_at(NOW);
        renumbered.node_id = SENDER + 1;
        let got = rx.receive(&renumbered.encode().unwrap(), NOW, |_| {
            Some(registry_key(1))
        });
        assert_eq!(got, Err(TrustError::BadSignature));
        // One flipped signature bit.
        let mut flipped = request_at(NOW);
        let mut sig = Signature::from_base64(&flipped.signature).unwrap();
        sig.0[0] ^= 0x01;
        flipped.signature = sig.to_base64();
        assert_eq!(receive(&mut rx, &flipped), Err(TrustError::BadSignature));
    }

    #[test]
    fn bad_encodings_have_their_own_verdicts() {
        let mut rx = HandshakeReceiver::new(RECEIVER);
        let mut bad_key = request_at(NOW);
        bad_key.public_key = "not base64!".into();
        assert_eq!(
            receive(&mut rx, &bad_key),
            Err(TrustError::InvalidPublicKey)
        );
        let mut bad_sig = request_at(NOW);
        bad_sig.signature = "AAAA".into();
        assert_eq!(
            receive(&mut rx, &bad_sig),
            Err(TrustError::InvalidSignatureEncoding)
        );

        assert!(matches!(
            rx.receive(b"[1]", NOW, |_| None),
            Err(TrustError::Malformed(_))
        ));
        assert!(matches!(
            rx.receive(b"{\"type\":", NOW, |_| None),
            Err(TrustError::Malformed(_))
        ));
        let no_node = format!(r#"{{"type":"handshake_request","timestamp":{NOW}}}"#);
        assert!(matches!(
            rx.receive(no_node.as_bytes(), NOW, |_| None),
            Err(TrustError::Malformed(_))
        ));
        let unknown = format!(r#"{{"type":"handshake_hello","node_id":1,"timestamp":{NOW}}}"#);
        assert_eq!(
            rx.receive(unknown.as_bytes(), NOW, |_| None),
            Err(TrustError::UnknownType("handshake_hello".into()))
        );
        let huge = alloc::vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert_eq!(
            rx.receive(&huge, NOW, |_| None),
            Err(TrustError::TooLarge {
                len: MAX_MESSAGE_BYTES + 1
            })
        );
        assert_eq!(
            receive(&mut rx, &request_at(NOW).with_reason("x".into())).map(|v| v.reason),
            Ok("x".into())
        );
    }

    #[test]
    fn unknown_sender_is_refused_after_the_cheap_checks() {
        let mut rx = HandshakeReceiver::new(RECEIVER);
        let msg = request_at(NOW);
        assert_eq!(
            rx.receive(&msg.encode().unwrap(), NOW, |_| None),
            Err(TrustError::UnknownNode)
        );
        // A stale message never reaches the lookup.
        let stale = request_at(NOW - 1000);
        let got = rx.receive(&stale.encode().unwrap(), NOW, |_| {
            panic!("looked up a stale message")
        });
        assert!(matches!(got, Err(TrustError::TooOld { .. })));
    }

    #[test]
    fn authenticate_rechecks_time_and_replay() {
        let mut rx = HandshakeReceiver::new(RECEIVER);
        let bytes = request_at(NOW).encode().unwrap();
        let first = rx.precheck(&bytes, NOW).unwrap();
        let second = rx.precheck(&bytes, NOW).unwrap();
        assert_eq!(first.node_id(), SENDER);
        assert!(rx.authenticate(first, &registry_key(1), NOW + 2).is_ok());
        assert_eq!(
            rx.authenticate(second, &registry_key(1), NOW + 2),
            Err(TrustError::Replay)
        );

        let late = rx
            .precheck(&request_at(NOW - 299).encode().unwrap(), NOW)
            .unwrap();
        assert_eq!(
            rx.authenticate(late, &registry_key(1), NOW + 5),
            Err(TrustError::TooOld { age_secs: 304 })
        );
    }

    #[test]
    fn justification_is_sanitized_on_receive() {
        let mut rx = HandshakeReceiver::new(RECEIVER);
        let msg =
            request_at(NOW).with_justification("hi\u{202E}dlrow\n\tthere\u{0}\u{200B} é 🙂".into());
        assert_eq!(
            receive(&mut rx, &msg).unwrap().justification,
            "hidlrowthere é 🙂"
        );
    }

    #[test]
    fn sanitize_caps_bytes_without_splitting_characters() {
        let long = "a".repeat(2000);
        assert_eq!(sanitize_text(&long).len(), MAX_JUSTIFICATION_BYTES);
        let edge = format!("{}é", "a".repeat(MAX_JUSTIFICATION_BYTES - 1));
        assert_eq!(
            sanitize_text(&edge),
            "a".repeat(MAX_JUSTIFICATION_BYTES - 1)
        );
        // Dropped characters do not count toward the cap.
        let noisy = format!("{}{}", "\u{7}".repeat(5000), "b".repeat(10));
        assert_eq!(sanitize_text(&noisy), "b".repeat(10));
        assert_eq!(
            sanitize_text("a\u{2028}b\u{00A0}c\u{E000}d\u{FFFF}e"),
            "abcde"
        );
    }

    /// A digest numbered `i`, from one of the senders that together fill the cache.
    fn filler(i: usize) -> (u32, [u8; 32]) {
        let mut digest = [0u8; 32];
        digest[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let sender = u32::try_from(i / REPLAY_ENTRIES_PER_SENDER).unwrap();
        (sender, digest)
    }

    #[test]
    fn replay_cache_is_bounded_and_expires() {
        let mut cache = ReplayCache::new();
        for i in 0..REPLAY_CACHE_CAPACITY {
            let (sender, digest) = filler(i);
            cache.insert(sender, digest, NOW).unwrap();
        }
        assert_eq!(cache.len(), REPLAY_CACHE_CAPACITY);
        assert_eq!(
            cache.insert(u32::MAX, [0xFF; 32], NOW + 1),
            Err(TrustError::ReplayCacheFull)
        );
        assert_eq!(
            cache.insert(u32::MAX, [0; 32], NOW + 1),
            Err(TrustError::Replay)
        );

        let later = NOW + REPLAY_RETENTION.as_secs();
        assert_eq!(cache.insert(u32::MAX, [0xFF; 32], later), Ok(()));
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.sender_len(0), 0);
        cache.purge_expired(later + REPLAY_RETENTION.as_secs());
        assert!(cache.is_empty());
        assert_eq!(cache.sender_len(u32::MAX), 0);
    }

    #[test]
    fn replay_cache_refuses_a_sender_over_its_quota_but_not_others() {
        let mut cache = ReplayCache::new();
        for i in 0..REPLAY_ENTRIES_PER_SENDER {
            let (_, digest) = filler(i);
            cache.insert(SENDER, digest, NOW).unwrap();
        }
        assert_eq!(cache.sender_len(SENDER), REPLAY_ENTRIES_PER_SENDER);
        assert_eq!(
            cache.insert(SENDER, [0xFF; 32], NOW),
            Err(TrustError::SenderQuotaFull)
        );
        // A replay is still reported as such, not as a full quota.
        assert_eq!(
            cache.insert(SENDER, filler(0).1, NOW),
            Err(TrustError::Replay)
        );
        assert_eq!(cache.insert(SENDER + 1, [0xFF; 32], NOW), Ok(()));
        let later = NOW + REPLAY_RETENTION.as_secs();
        assert_eq!(cache.insert(SENDER, [0xFE; 32], later), Ok(()));
        assert_eq!(cache.sender_len(SENDER), 1);
    }

    #[test]
    fn one_sender_minting_messages_cannot_starve_other_senders() {
        let mut rx = HandshakeReceiver::new(RECEIVER);
        // One signature, a different justification each time: every copy verifies.
        let mut accepted = 0;
        for i in 0..=REPLAY_ENTRIES_PER_SENDER {
            let msg = request_at(NOW).with_justification(format!("copy {i}"));
            match receive(&mut rx, &msg) {
                Ok(_) => accepted += 1,
                Err(err) => assert_eq!(err, TrustError::SenderQuotaFull),
            }
        }
        assert_eq!(accepted, REPLAY_ENTRIES_PER_SENDER);

        let other = HandshakeMessage::signed(
            HandshakeKind::Request,
            SENDER + 1,
            RECEIVER,
            &key(2),
            NOW as i64,
        );
        let got = rx.receive(&other.encode().unwrap(), NOW, |_| Some(registry_key(2)));
        assert!(got.is_ok(), "{got:?}");

        // The flooder gets through again once its digests expire.
        let later = NOW + REPLAY_RETENTION.as_secs();
        let again = request_at(later).with_justification("again".into());
        let got = rx.receive(&again.encode().unwrap(), later, |_| Some(registry_key(1)));
        assert!(got.is_ok(), "{got:?}");
    }

    #[test]
    fn replay_cache_sweeps_entries_stuck_behind_a_clock_step() {
        let mut cache = ReplayCache::new();
        // The clock jumps forward and back: the first entry expires last.
        cache.insert(u32::MAX, [1; 32], NOW + 1000).unwrap();
        for i in 1..REPLAY_CACHE_CAPACITY {
            let (sender, digest) = filler(i);
            cache.insert(sender, digest, NOW).unwrap();
        }
        let after = NOW + REPLAY_RETENTION.as_secs();
        assert_eq!(cache.insert(u32::MAX, [3; 32], after), Ok(()));
        assert_eq!(cache.len(), 2);
        assert!(cache.contains(&[1; 32]) && cache.contains(&[3; 32]));
        assert_eq!(cache.sender_len(u32::MAX), 2);
    }

    #[test]
    fn sender_quota_sweeps_entries_stuck_behind_a_clock_step() {
        let mut cache = ReplayCache::new();
        cache.insert(SENDER, [1; 32], NOW + 1000).unwrap();
        for i in 1..REPLAY_ENTRIES_PER_SENDER {
            cache.insert(SENDER, filler(i).1, NOW).unwrap();
        }
        let after = NOW + REPLAY_RETENTION.as_secs();
        assert_eq!(cache.insert(SENDER, [3; 32], after), Ok(()));
        assert_eq!(cache.sender_len(SENDER), 2);
    }
}
