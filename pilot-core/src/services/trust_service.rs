//! Trust handshake service, virtual port 444 (spec §9.6): the trust store, pending inbound
//! requests, our outgoing requests, and what each message or application decision leads to.
//!
//! The message checks (time window, replay cache, registry key, signature) are
//! [`HandshakeReceiver`]'s; this machine applies the policy to messages that passed them.
//! The sender's registry key is an argument: the host first runs [`TrustService::precheck`]
//! (no registry needed, so stale or replayed messages cost no lookup), looks the key up, then
//! calls [`TrustService::handle`]. [`TrustService::receive`] does both for a host that holds
//! keys already.
//!
//! Every call returns [`TrustAction`]s for the host, in order: messages to send to a peer's
//! port 444 (open a stream, write the bytes in one write, close), signed registry requests to
//! send (`report_trust`, `respond_handshake`, …), and events for the application.
//!
//! Policy for an authenticated message from `peer`:
//! * request: already trusted → answer accept; we had requested `peer` (mutual) or
//!   auto-approve is on → trust, answer accept, `report_trust`; otherwise queue as pending
//!   (at most [`MAX_PENDING`] in all, [`MAX_PENDING_PER_SOURCE`] per peer, each for
//!   [`PENDING_TTL`]) and tell the application;
//! * accept: trusted only if we had an outgoing request to `peer`; an unsolicited accept is
//!   ignored. This also covers V-NEW's post-revoke cooldown: revoking clears the outgoing
//!   request, so a late accept cannot restore trust;
//! * reject: drops our outgoing request; ignored without one;
//! * revoke: removes the trust; ignored if `peer` was not trusted.
//!
//! The spec's "same non-backbone network" auto-approval needs network membership, which this
//! machine does not know; a host that wants it sets [`TrustConfig::auto_approve`] per policy.
//!
//! Times are wall-clock Unix seconds, as in [`crate::trust`], because peers' timestamps are.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use crate::crypto::Identity;
use crate::registry::{
    PollHandshakes, PollHandshakesOk, ReportTrust, Request, RequestHandshake, RespondHandshake,
    RevokeTrust, PUBLIC_KEY_BYTES,
};
use crate::trust::{
    sanitize_text, HandshakeKind, HandshakeMessage, HandshakeReceiver, TrustError,
    UnverifiedHandshake, VerifiedHandshake, HANDSHAKE_PORT,
};

/// Most pending inbound requests held (spec §9.6).
pub const MAX_PENDING: usize = 256;
/// Most pending inbound requests held from one peer (spec §9.6, V-NEW).
pub const MAX_PENDING_PER_SOURCE: usize = 16;
/// How long a pending request waits for a decision (spec §9.6, V-NEW: 30 days).
pub const PENDING_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Most trusted nodes [`TrustService::restore_trusted`] takes back from a saved store.
pub const MAX_RESTORED_TRUSTED: usize = 4096;
/// Most outgoing requests awaiting an answer.
pub const MAX_OUTGOING: usize = 256;
/// How long an outgoing request waits for its answer; a later accept is ignored.
pub const OUTGOING_TTL: Duration = PENDING_TTL;

/// Policy switches of a [`TrustService`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrustConfig {
    /// Trust every authenticated requester at once (`-trust-auto-approve`).
    pub auto_approve: bool,
}

/// How a request reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestPath {
    /// A signed message on our port 444.
    Direct,
    /// Through the registry inbox (`poll_handshakes`); answered with `respond_handshake`.
    Relayed,
}

/// An inbound request awaiting the application's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRequest {
    /// The requesting node.
    pub node: u32,
    /// Its key: proven by signature (direct), or as the registry gave it (relayed, optional).
    pub key: Option<[u8; PUBLIC_KEY_BYTES]>,
    /// The requester's justification, sanitized ([`sanitize_text`]).
    pub justification: String,
    /// How it arrived.
    pub path: RequestPath,
    /// When we received it, Unix seconds.
    pub received_at_unix_secs: u64,
}

/// A node we trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedPeer {
    /// Its key as last proven to us; `None` when trust came through the registry relay and the
    /// registry did not include a key.
    pub key: Option<[u8; PUBLIC_KEY_BYTES]>,
    /// When trust was established, Unix seconds.
    pub since_unix_secs: u64,
}

/// Something the host must do or tell the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustAction {
    /// Open a stream to `node`:`port`, write `bytes` in one write, close it.
    SendTo {
        /// The peer.
        node: u32,
        /// Always [`HANDSHAKE_PORT`].
        port: u16,
        /// One encoded [`HandshakeMessage`].
        bytes: Vec<u8>,
    },
    /// Send this signed request to the registry (boxed: a request is large next to the
    /// other actions).
    Registry(Box<Request>),
    /// Tell the application.
    Event(TrustEvent),
}

/// What the application learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustEvent {
    /// A request was queued for approval.
    RequestPending {
        /// The requester.
        node: u32,
        /// Its sanitized justification.
        justification: String,
        /// How it arrived.
        path: RequestPath,
    },
    /// `node` is now trusted.
    Trusted {
        /// The peer.
        node: u32,
    },
    /// `node` declined our request.
    Rejected {
        /// The peer.
        node: u32,
        /// Its sanitized reason (empty for relayed answers).
        reason: String,
    },
    /// `node` withdrew its trust; we no longer trust it either.
    Revoked {
        /// The peer.
        node: u32,
        /// Its sanitized reason.
        reason: String,
    },
}

/// Why a trust service call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustServiceError {
    /// The message failed the checks of spec §9.6 (or could not be encoded).
    Message(TrustError),
    /// [`MAX_PENDING`] requests are pending already.
    PendingFull,
    /// [`MAX_PENDING_PER_SOURCE`] requests from this node are pending already.
    PendingFullForSource {
        /// The requester.
        node: u32,
    },
    /// [`MAX_OUTGOING`] of our requests await answers already.
    OutgoingFull,
    /// No request from this node is pending.
    NotPending {
        /// The node.
        node: u32,
    },
    /// This node is not trusted.
    NotTrusted {
        /// The node.
        node: u32,
    },
    /// This node is trusted already.
    AlreadyTrusted {
        /// The node.
        node: u32,
    },
    /// A handshake with ourselves.
    SelfHandshake,
    /// [`MAX_RESTORED_TRUSTED`] nodes are trusted already.
    TrustedFull,
}

impl From<TrustError> for TrustServiceError {
    fn from(error: TrustError) -> Self {
        TrustServiceError::Message(error)
    }
}

impl fmt::Display for TrustServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustServiceError::Message(error) => write!(f, "{error}"),
            TrustServiceError::PendingFull => {
                write!(f, "{MAX_PENDING} trust requests already pending")
            }
            TrustServiceError::PendingFullForSource { node } => write!(
                f,
                "{MAX_PENDING_PER_SOURCE} trust requests from node {node} already pending"
            ),
            TrustServiceError::OutgoingFull => {
                write!(f, "{MAX_OUTGOING} trust requests already await answers")
            }
            TrustServiceError::NotPending { node } => {
                write!(f, "no trust request from node {node} pending")
            }
            TrustServiceError::NotTrusted { node } => write!(f, "node {node} is not trusted"),
            TrustServiceError::AlreadyTrusted { node } => {
                write!(f, "node {node} is already trusted")
            }
            TrustServiceError::SelfHandshake => f.write_str("trust handshake with ourselves"),
            TrustServiceError::TrustedFull => {
                write!(f, "{MAX_RESTORED_TRUSTED} nodes are trusted already")
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for TrustServiceError {}

/// One of our requests awaiting an answer.
#[derive(Debug, Clone, Copy)]
struct Outgoing {
    sent_at_unix_secs: u64,
}

/// The port-444 trust handshake service of one node.
#[derive(Debug)]
pub struct TrustService {
    identity: Identity,
    config: TrustConfig,
    receiver: HandshakeReceiver,
    trusted: BTreeMap<u32, TrustedPeer>,
    /// Oldest first.
    pending: Vec<PendingRequest>,
    outgoing: BTreeMap<u32, Outgoing>,
}

impl TrustService {
    /// The service of `local_node`, signing with its identity key.
    pub fn new(local_node: u32, identity: Identity, config: TrustConfig) -> Self {
        TrustService {
            identity,
            config,
            receiver: HandshakeReceiver::new(local_node),
            trusted: BTreeMap::new(),
            pending: Vec::new(),
            outgoing: BTreeMap::new(),
        }
    }

    /// Our node ID.
    pub fn local_node(&self) -> u32 {
        self.receiver.local_node()
    }

    /// Decode, time window and replay check of a received message; needs no registry. The
    /// host then looks up the registry key of [`UnverifiedHandshake::node_id`] and calls
    /// [`handle`](Self::handle).
    pub fn precheck(
        &self,
        bytes: &[u8],
        now_unix_secs: u64,
    ) -> Result<UnverifiedHandshake, TrustServiceError> {
        Ok(self.receiver.precheck(bytes, now_unix_secs)?)
    }

    /// Authenticates a prechecked message against `registry_key` and applies the policy.
    pub fn handle(
        &mut self,
        unverified: UnverifiedHandshake,
        registry_key: &[u8; PUBLIC_KEY_BYTES],
        now_unix_secs: u64,
    ) -> Result<Vec<TrustAction>, TrustServiceError> {
        self.expire(now_unix_secs);
        let verified = self
            .receiver
            .authenticate(unverified, registry_key, now_unix_secs)?;
        self.apply(verified, now_unix_secs)
    }

    /// [`precheck`](Self::precheck) and [`handle`](Self::handle) in one, for a host that
    /// holds registry keys: `registry_key` answers the key of a node, `None` if unknown.
    pub fn receive(
        &mut self,
        bytes: &[u8],
        now_unix_secs: u64,
        registry_key: impl FnOnce(u32) -> Option<[u8; PUBLIC_KEY_BYTES]>,
    ) -> Result<Vec<TrustAction>, TrustServiceError> {
        let unverified = self.precheck(bytes, now_unix_secs)?;
        let key = registry_key(unverified.node_id()).ok_or(TrustError::UnknownNode)?;
        self.handle(unverified, &key, now_unix_secs)
    }

    fn apply(
        &mut self,
        message: VerifiedHandshake,
        now: u64,
    ) -> Result<Vec<TrustAction>, TrustServiceError> {
        let node = message.node_id;
        let mut actions = Vec::new();
        match message.kind {
            HandshakeKind::Request => {
                if let Some(peer) = self.trusted.get_mut(&node) {
                    peer.key = Some(message.public_key);
                    actions.push(self.send(HandshakeKind::Accept, node, String::new(), now)?);
                    return Ok(actions);
                }
                let mutual = self.outgoing.contains_key(&node);
                if mutual || self.config.auto_approve {
                    actions.push(self.send(HandshakeKind::Accept, node, String::new(), now)?);
                    actions.push(self.report_trust(node));
                    actions.push(self.trust(node, Some(message.public_key), now));
                    return Ok(actions);
                }
                let justification = message.justification;
                self.queue(PendingRequest {
                    node,
                    key: Some(message.public_key),
                    justification: justification.clone(),
                    path: RequestPath::Direct,
                    received_at_unix_secs: now,
                })?;
                actions.push(TrustAction::Event(TrustEvent::RequestPending {
                    node,
                    justification,
                    path: RequestPath::Direct,
                }));
            }
            HandshakeKind::Accept => {
                if self.outgoing.contains_key(&node) {
                    actions.push(self.trust(node, Some(message.public_key), now));
                }
            }
            HandshakeKind::Reject => {
                if self.outgoing.remove(&node).is_some() {
                    actions.push(TrustAction::Event(TrustEvent::Rejected {
                        node,
                        reason: message.reason,
                    }));
                }
            }
            HandshakeKind::Revoke => {
                if self.trusted.remove(&node).is_some() {
                    self.outgoing.remove(&node);
                    actions.push(TrustAction::Event(TrustEvent::Revoked {
                        node,
                        reason: message.reason,
                    }));
                }
            }
        }
        Ok(actions)
    }

    /// Asks `peer` for trust by a message to its port 444. If `peer` has a request pending
    /// with us, asking back is mutual consent: the request is approved instead.
    ///
    /// A justification that makes the message exceed [`crate::trust::SINGLE_SEGMENT_BYTES`]
    /// will not reach V-FORK peers.
    pub fn request(
        &mut self,
        peer: u32,
        justification: &str,
        now_unix_secs: u64,
    ) -> Result<Vec<TrustAction>, TrustServiceError> {
        self.check_new_request(peer, now_unix_secs)?;
        if self.pending.iter().any(|p| p.node == peer) {
            return self.approve(peer, now_unix_secs);
        }
        let send = self.send(
            HandshakeKind::Request,
            peer,
            String::from(justification),
            now_unix_secs,
        )?;
        self.outgoing.insert(
            peer,
            Outgoing {
                sent_at_unix_secs: now_unix_secs,
            },
        );
        Ok(alloc::vec![send])
    }

    /// Asks `peer` for trust through the registry inbox (for peers that cannot be dialled).
    pub fn request_relayed(
        &mut self,
        peer: u32,
        justification: &str,
        now_unix_secs: u64,
    ) -> Result<Vec<TrustAction>, TrustServiceError> {
        self.check_new_request(peer, now_unix_secs)?;
        let request = RequestHandshake::signed(
            self.local_node(),
            peer,
            String::from(justification),
            &self.identity,
        );
        self.outgoing.insert(
            peer,
            Outgoing {
                sent_at_unix_secs: now_unix_secs,
            },
        );
        Ok(alloc::vec![TrustAction::Registry(Box::new(
            Request::RequestHandshake(request)
        ))])
    }

    fn check_new_request(&mut self, peer: u32, now: u64) -> Result<(), TrustServiceError> {
        self.expire(now);
        if peer == self.local_node() {
            return Err(TrustServiceError::SelfHandshake);
        }
        if self.trusted.contains_key(&peer) {
            return Err(TrustServiceError::AlreadyTrusted { node: peer });
        }
        if !self.outgoing.contains_key(&peer) && self.outgoing.len() >= MAX_OUTGOING {
            return Err(TrustServiceError::OutgoingFull);
        }
        Ok(())
    }

    /// Approves every pending request of `peer`: trust it, answer accept on the path each
    /// request came (port 444 plus `report_trust`, or `respond_handshake`).
    pub fn approve(
        &mut self,
        peer: u32,
        now_unix_secs: u64,
    ) -> Result<Vec<TrustAction>, TrustServiceError> {
        self.expire(now_unix_secs);
        let requests = self.take_pending(peer)?;
        let mut actions = Vec::new();
        if requests.iter().any(|r| r.path == RequestPath::Direct) {
            match self.send(HandshakeKind::Accept, peer, String::new(), now_unix_secs) {
                Ok(send) => actions.push(send),
                Err(error) => {
                    // Nothing was decided: put the requests back.
                    self.pending.extend(requests);
                    return Err(error);
                }
            }
            actions.push(self.report_trust(peer));
        }
        if requests.iter().any(|r| r.path == RequestPath::Relayed) {
            actions.push(self.respond(peer, true));
        }
        // The newest request carries the key last proven.
        let key = requests.iter().rev().find_map(|r| r.key);
        actions.push(self.trust(peer, key, now_unix_secs));
        Ok(actions)
    }

    /// Declines every pending request of `peer`, telling it on the path each came.
    pub fn reject(
        &mut self,
        peer: u32,
        reason: &str,
        now_unix_secs: u64,
    ) -> Result<Vec<TrustAction>, TrustServiceError> {
        self.expire(now_unix_secs);
        let requests = self.take_pending(peer)?;
        let mut actions = Vec::new();
        if requests.iter().any(|r| r.path == RequestPath::Direct) {
            match self.send(
                HandshakeKind::Reject,
                peer,
                String::from(reason),
                now_unix_secs,
            ) {
                Ok(send) => actions.push(send),
                Err(error) => {
                    self.pending.extend(requests);
                    return Err(error);
                }
            }
        }
        if requests.iter().any(|r| r.path == RequestPath::Relayed) {
            actions.push(self.respond(peer, false));
        }
        Ok(actions)
    }

    /// Withdraws our trust in `peer`: tells it on port 444 and the registry (`revoke_trust`).
    pub fn revoke(
        &mut self,
        peer: u32,
        reason: &str,
        now_unix_secs: u64,
    ) -> Result<Vec<TrustAction>, TrustServiceError> {
        self.expire(now_unix_secs);
        if !self.trusted.contains_key(&peer) {
            return Err(TrustServiceError::NotTrusted { node: peer });
        }
        let send = self.send(
            HandshakeKind::Revoke,
            peer,
            String::from(reason),
            now_unix_secs,
        )?;
        self.trusted.remove(&peer);
        self.outgoing.remove(&peer);
        let revoke = RevokeTrust::signed(self.local_node(), peer, &self.identity);
        Ok(alloc::vec![
            send,
            TrustAction::Registry(Box::new(Request::RevokeTrust(revoke)))
        ])
    }

    /// The signed `poll_handshakes` request that fetches our registry inbox.
    pub fn poll_request(&self) -> Request {
        Request::PollHandshakes(PollHandshakes::signed(self.local_node(), &self.identity))
    }

    /// Applies a drained registry inbox: relayed requests go through the same policy as direct
    /// ones (answered with `respond_handshake`), relayed answers settle our requests.
    ///
    /// Relayed entries carry no signature of their own: the registry checked the requester's
    /// `request_handshake` signature, so they are as authentic as the registry connection.
    /// A relayed request over the pending caps is dropped; the registry has already handed it
    /// over, so the requester has to ask again.
    pub fn on_poll(&mut self, inbox: &PollHandshakesOk, now_unix_secs: u64) -> Vec<TrustAction> {
        self.expire(now_unix_secs);
        let mut actions = Vec::new();
        for request in &inbox.requests {
            let node = request.from_node_id;
            if node == self.local_node() {
                continue;
            }
            let key = request.public_key.map(|key| key.0);
            if self.trusted.contains_key(&node) {
                actions.push(self.respond(node, true));
            } else if self.outgoing.contains_key(&node) || self.config.auto_approve {
                actions.push(self.respond(node, true));
                actions.push(self.trust(node, key, now_unix_secs));
            } else {
                let justification = sanitize_text(&request.justification);
                let queued = self.queue(PendingRequest {
                    node,
                    key,
                    justification: justification.clone(),
                    path: RequestPath::Relayed,
                    received_at_unix_secs: now_unix_secs,
                });
                if queued.is_ok() {
                    actions.push(TrustAction::Event(TrustEvent::RequestPending {
                        node,
                        justification,
                        path: RequestPath::Relayed,
                    }));
                }
            }
        }
        for response in &inbox.responses {
            let node = response.from_node_id;
            if !self.outgoing.contains_key(&node) {
                continue;
            }
            if response.accept {
                actions.push(self.trust(node, None, now_unix_secs));
            } else {
                self.outgoing.remove(&node);
                actions.push(TrustAction::Event(TrustEvent::Rejected {
                    node,
                    reason: String::new(),
                }));
            }
        }
        actions
    }

    /// Requests awaiting a decision, oldest first.
    pub fn pending(&self) -> &[PendingRequest] {
        &self.pending
    }

    /// Trusted nodes, by node ID.
    pub fn trusted(&self) -> impl Iterator<Item = (u32, &TrustedPeer)> + '_ {
        self.trusted.iter().map(|(&node, peer)| (node, peer))
    }

    /// Trusts `node` again from the host's saved trust store (after a restart), without
    /// messages or events. Refused for ourselves and beyond [`MAX_RESTORED_TRUSTED`] nodes.
    pub fn restore_trusted(
        &mut self,
        node: u32,
        peer: TrustedPeer,
    ) -> Result<(), TrustServiceError> {
        if node == self.local_node() {
            return Err(TrustServiceError::SelfHandshake);
        }
        if self.trusted.len() >= MAX_RESTORED_TRUSTED && !self.trusted.contains_key(&node) {
            return Err(TrustServiceError::TrustedFull);
        }
        self.trusted.insert(node, peer);
        Ok(())
    }

    /// Whether `node` is trusted.
    pub fn is_trusted(&self, node: u32) -> bool {
        self.trusted.contains_key(&node)
    }

    /// Nodes we asked for trust that have not answered yet.
    pub fn outgoing(&self) -> impl Iterator<Item = u32> + '_ {
        self.outgoing.keys().copied()
    }

    /// Drops pending and outgoing requests past their time to live.
    pub fn expire(&mut self, now_unix_secs: u64) {
        let alive = |since: u64, ttl: Duration| now_unix_secs.saturating_sub(since) < ttl.as_secs();
        self.pending
            .retain(|p| alive(p.received_at_unix_secs, PENDING_TTL));
        self.outgoing
            .retain(|_, o| alive(o.sent_at_unix_secs, OUTGOING_TTL));
    }

    fn queue(&mut self, request: PendingRequest) -> Result<(), TrustServiceError> {
        if self.pending.len() >= MAX_PENDING {
            return Err(TrustServiceError::PendingFull);
        }
        let from_source = self
            .pending
            .iter()
            .filter(|p| p.node == request.node)
            .count();
        if from_source >= MAX_PENDING_PER_SOURCE {
            return Err(TrustServiceError::PendingFullForSource { node: request.node });
        }
        self.pending.push(request);
        Ok(())
    }

    fn take_pending(&mut self, peer: u32) -> Result<Vec<PendingRequest>, TrustServiceError> {
        let (taken, kept) = core::mem::take(&mut self.pending)
            .into_iter()
            .partition::<Vec<_>, _>(|p| p.node == peer);
        self.pending = kept;
        if taken.is_empty() {
            return Err(TrustServiceError::NotPending { node: peer });
        }
        Ok(taken)
    }

    /// Records trust in `node` and settles every request between us.
    fn trust(&mut self, node: u32, key: Option<[u8; PUBLIC_KEY_BYTES]>, now: u64) -> TrustAction {
        self.outgoing.remove(&node);
        self.pending.retain(|p| p.node != node);
        self.trusted.insert(
            node,
            TrustedPeer {
                key,
                since_unix_secs: now,
            },
        );
        TrustAction::Event(TrustEvent::Trusted { node })
    }

    /// A signed port-444 message of `kind` to `peer`; `text` is the justification of a
    /// request and the reason of the other kinds.
    fn send(
        &self,
        kind: HandshakeKind,
        peer: u32,
        text: String,
        now: u64,
    ) -> Result<TrustAction, TrustServiceError> {
        let timestamp = i64::try_from(now).unwrap_or(i64::MAX);
        let message =
            HandshakeMessage::signed(kind, self.local_node(), peer, &self.identity, timestamp);
        let message = match kind {
            HandshakeKind::Request => message.with_justification(text),
            _ => message.with_reason(text),
        };
        Ok(TrustAction::SendTo {
            node: peer,
            port: HANDSHAKE_PORT,
            bytes: message.encode()?,
        })
    }

    fn report_trust(&self, peer: u32) -> TrustAction {
        let report = ReportTrust::signed(self.local_node(), peer, &self.identity);
        TrustAction::Registry(Box::new(Request::ReportTrust(report)))
    }

    fn respond(&self, peer: u32, accept: bool) -> TrustAction {
        let respond = RespondHandshake::signed(self.local_node(), peer, accept, &self.identity);
        TrustAction::Registry(Box::new(Request::RespondHandshake(respond)))
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
    use crate::registry::{
        PublicKey, RelayedHandshakeRequest, RelayedHandshakeResponse, SignedRequest,
    };
    use alloc::format;
    use alloc::vec;

    const NOW: u64 = 1_790_000_000;
    const US: u32 = 200;
    const PEER: u32 = 100;

    fn key(seed: u8) -> Identity {
        Identity::from_seed(&[seed; 32])
    }

    fn service(auto_approve: bool) -> TrustService {
        TrustService::new(US, key(2), TrustConfig { auto_approve })
    }

    /// A message from `from` (signed with seed 1) to us.
    fn message(kind: HandshakeKind, from: u32, text: &str, at: u64) -> Vec<u8> {
        HandshakeMessage::signed(kind, from, US, &key(1), at as i64)
            .with_justification(text.into())
            .with_reason(text.into())
            .encode()
            .unwrap()
    }

    /// Every node's registry key is seed 1's.
    fn deliver(
        svc: &mut TrustService,
        bytes: &[u8],
    ) -> Result<Vec<TrustAction>, TrustServiceError> {
        svc.receive(bytes, NOW, |_| Some(key(1).public_key()))
    }

    /// Decodes the message of a `SendTo` and checks it is addressed to port 444.
    fn sent(action: &TrustAction) -> (u32, HandshakeMessage) {
        let TrustAction::SendTo { node, port, bytes } = action else {
            panic!("not a SendTo: {action:?}")
        };
        assert_eq!(*port, HANDSHAKE_PORT);
        (*node, HandshakeMessage::decode(bytes).unwrap())
    }

    fn registry(action: &TrustAction) -> &Request {
        let TrustAction::Registry(request) = action else {
            panic!("not a registry request: {action:?}")
        };
        request
    }

    fn event(node: u32) -> TrustAction {
        TrustAction::Event(TrustEvent::Trusted { node })
    }

    #[test]
    fn unsolicited_request_is_queued_for_the_application() {
        let mut svc = service(false);
        let actions = deliver(&mut svc, &message(HandshakeKind::Request, PEER, "hi", NOW)).unwrap();
        assert_eq!(
            actions,
            vec![TrustAction::Event(TrustEvent::RequestPending {
                node: PEER,
                justification: "hi".into(),
                path: RequestPath::Direct
            })]
        );
        assert_eq!(svc.pending().len(), 1);
        assert_eq!(svc.pending()[0].key, Some(key(1).public_key()));
        assert!(!svc.is_trusted(PEER));
    }

    #[test]
    fn approval_trusts_answers_accept_and_reports_to_the_registry() {
        let mut svc = service(false);
        deliver(&mut svc, &message(HandshakeKind::Request, PEER, "hi", NOW)).unwrap();
        let actions = svc.approve(PEER, NOW + 5).unwrap();
        assert_eq!(actions.len(), 3);
        let (to, accept) = sent(&actions[0]);
        assert_eq!(
            (to, accept.kind, accept.node_id),
            (PEER, HandshakeKind::Accept, US)
        );
        let Request::ReportTrust(report) = registry(&actions[1]) else {
            panic!("{:?}", actions[1])
        };
        assert_eq!((report.node_id, report.peer_id), (US, PEER));
        assert_eq!(report.verify(&key(2).public_key()), Ok(()));
        assert_eq!(actions[2], event(PEER));
        assert!(svc.is_trusted(PEER));
        assert!(svc.pending().is_empty());
        assert_eq!(
            svc.approve(PEER, NOW),
            Err(TrustServiceError::NotPending { node: PEER })
        );
    }

    #[test]
    fn our_accept_verifies_at_the_peer() {
        let mut svc = service(false);
        deliver(&mut svc, &message(HandshakeKind::Request, PEER, "", NOW)).unwrap();
        let actions = svc.approve(PEER, NOW).unwrap();
        let TrustAction::SendTo { bytes, .. } = &actions[0] else {
            panic!()
        };
        let mut peer_rx = HandshakeReceiver::new(PEER);
        let got = peer_rx.receive(bytes, NOW, |node| (node == US).then(|| key(2).public_key()));
        assert_eq!(got.unwrap().kind, HandshakeKind::Accept);
    }

    #[test]
    fn request_from_a_node_we_asked_is_mutual_and_trusted_at_once() {
        let mut svc = service(false);
        let actions = svc.request(PEER, "let me in", NOW).unwrap();
        let (to, request) = sent(&actions[0]);
        assert_eq!((to, request.kind), (PEER, HandshakeKind::Request));
        assert_eq!(request.justification, "let me in");
        assert_eq!(svc.outgoing().collect::<Vec<_>>(), vec![PEER]);

        let actions = deliver(&mut svc, &message(HandshakeKind::Request, PEER, "", NOW)).unwrap();
        assert_eq!(actions.len(), 3);
        assert_eq!(sent(&actions[0]).1.kind, HandshakeKind::Accept);
        assert!(matches!(registry(&actions[1]), Request::ReportTrust(_)));
        assert_eq!(actions[2], event(PEER));
        assert!(svc.is_trusted(PEER));
        assert_eq!(svc.outgoing().count(), 0);
    }

    #[test]
    fn auto_approve_trusts_any_authenticated_requester() {
        let mut svc = service(true);
        let actions = deliver(&mut svc, &message(HandshakeKind::Request, PEER, "", NOW)).unwrap();
        assert_eq!(actions.last(), Some(&event(PEER)));
        assert!(svc.pending().is_empty());
    }

    #[test]
    fn request_from_a_trusted_node_is_answered_with_accept_only() {
        let mut svc = service(true);
        deliver(&mut svc, &message(HandshakeKind::Request, PEER, "a", NOW)).unwrap();
        let actions = deliver(&mut svc, &message(HandshakeKind::Request, PEER, "b", NOW)).unwrap();
        assert_eq!(actions.len(), 1);
        assert_eq!(sent(&actions[0]).1.kind, HandshakeKind::Accept);
    }

    #[test]
    fn restored_node_is_trusted_silently_and_answered_like_any_trusted_node() {
        let mut svc = service(false);
        let peer = TrustedPeer {
            key: Some(key(1).public_key()),
            since_unix_secs: NOW - 10,
        };
        svc.restore_trusted(PEER, peer.clone()).unwrap();
        assert!(svc.is_trusted(PEER));
        assert_eq!(svc.trusted().collect::<Vec<_>>(), vec![(PEER, &peer)]);
        assert!(svc.pending().is_empty());
        let actions = deliver(
            &mut svc,
            &message(HandshakeKind::Request, PEER, "again", NOW),
        )
        .unwrap();
        assert_eq!(actions.len(), 1, "no new pending request, no event");
        assert_eq!(sent(&actions[0]).1.kind, HandshakeKind::Accept);
        assert_eq!(
            svc.restore_trusted(US, peer),
            Err(TrustServiceError::SelfHandshake)
        );
    }

    #[test]
    fn restoring_is_bounded() {
        let mut svc = service(false);
        let peer = TrustedPeer {
            key: None,
            since_unix_secs: NOW,
        };
        for node in 0..MAX_RESTORED_TRUSTED as u32 {
            svc.restore_trusted(1_000 + node, peer.clone()).unwrap();
        }
        assert_eq!(
            svc.restore_trusted(1, peer.clone()),
            Err(TrustServiceError::TrustedFull)
        );
        // Restoring a node already trusted is not growth.
        svc.restore_trusted(1_000, peer).unwrap();
    }

    #[test]
    fn replayed_message_is_refused() {
        let mut svc = service(false);
        let bytes = message(HandshakeKind::Request, PEER, "hi", NOW);
        deliver(&mut svc, &bytes).unwrap();
        assert_eq!(
            deliver(&mut svc, &bytes),
            Err(TrustServiceError::Message(TrustError::Replay))
        );
        assert_eq!(svc.pending().len(), 1);
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let mut svc = service(true);
        let stale = message(HandshakeKind::Request, PEER, "", NOW - 301);
        assert_eq!(
            deliver(&mut svc, &stale),
            Err(TrustServiceError::Message(TrustError::TooOld {
                age_secs: 301
            }))
        );
        let future = message(HandshakeKind::Request, PEER, "", NOW + 31);
        assert_eq!(
            deliver(&mut svc, &future),
            Err(TrustServiceError::Message(TrustError::FromFuture {
                ahead_secs: 31
            }))
        );
        assert!(!svc.is_trusted(PEER));
    }

    #[test]
    fn key_other_than_the_registrys_is_refused() {
        let mut svc = service(true);
        let bytes = message(HandshakeKind::Request, PEER, "", NOW);
        let got = svc.receive(&bytes, NOW, |_| Some(key(9).public_key()));
        assert_eq!(
            got,
            Err(TrustServiceError::Message(TrustError::KeyMismatch))
        );
        let got = svc.receive(&bytes, NOW, |_| None);
        assert_eq!(
            got,
            Err(TrustServiceError::Message(TrustError::UnknownNode))
        );
        assert!(!svc.is_trusted(PEER));
    }

    #[test]
    fn precheck_then_handle_is_the_same_as_receive() {
        let mut svc = service(true);
        let unverified = svc
            .precheck(&message(HandshakeKind::Request, PEER, "", NOW), NOW)
            .unwrap();
        assert_eq!(unverified.node_id(), PEER);
        let actions = svc
            .handle(unverified, &key(1).public_key(), NOW + 1)
            .unwrap();
        assert_eq!(actions.last(), Some(&event(PEER)));
    }

    #[test]
    fn pending_is_capped_per_source() {
        let mut svc = service(false);
        for i in 0..MAX_PENDING_PER_SOURCE {
            let text = format!("{i}");
            deliver(&mut svc, &message(HandshakeKind::Request, PEER, &text, NOW)).unwrap();
        }
        assert_eq!(
            deliver(
                &mut svc,
                &message(HandshakeKind::Request, PEER, "more", NOW)
            ),
            Err(TrustServiceError::PendingFullForSource { node: PEER })
        );
        assert_eq!(svc.pending().len(), MAX_PENDING_PER_SOURCE);
    }

    #[test]
    fn pending_is_capped_in_total() {
        let mut svc = service(false);
        for node in 0..MAX_PENDING as u32 {
            deliver(
                &mut svc,
                &message(HandshakeKind::Request, 1000 + node, "", NOW),
            )
            .unwrap();
        }
        assert_eq!(
            deliver(&mut svc, &message(HandshakeKind::Request, PEER, "", NOW)),
            Err(TrustServiceError::PendingFull)
        );
        assert_eq!(svc.pending().len(), MAX_PENDING);
    }

    #[test]
    fn pending_expires_after_its_ttl() {
        let mut svc = service(false);
        deliver(&mut svc, &message(HandshakeKind::Request, PEER, "", NOW)).unwrap();
        svc.expire(NOW + PENDING_TTL.as_secs() - 1);
        assert_eq!(svc.pending().len(), 1);
        assert_eq!(
            svc.approve(PEER, NOW + PENDING_TTL.as_secs()),
            Err(TrustServiceError::NotPending { node: PEER })
        );
    }

    #[test]
    fn accept_counts_only_for_our_own_requests() {
        let mut svc = service(false);
        let actions = deliver(&mut svc, &message(HandshakeKind::Accept, PEER, "", NOW)).unwrap();
        assert!(actions.is_empty());
        assert!(!svc.is_trusted(PEER));

        svc.request(PEER, "", NOW).unwrap();
        let actions = deliver(
            &mut svc,
            &message(HandshakeKind::Accept, PEER, "x", NOW + 1),
        )
        .unwrap();
        assert_eq!(actions, vec![event(PEER)]);
        assert!(svc.is_trusted(PEER));
    }

    #[test]
    fn reject_drops_our_outgoing_request() {
        let mut svc = service(false);
        svc.request(PEER, "", NOW).unwrap();
        let actions = deliver(&mut svc, &message(HandshakeKind::Reject, PEER, "no", NOW)).unwrap();
        assert_eq!(
            actions,
            vec![TrustAction::Event(TrustEvent::Rejected {
                node: PEER,
                reason: "no".into()
            })]
        );
        assert_eq!(svc.outgoing().count(), 0);
        // Their later accept no longer counts.
        let late = message(HandshakeKind::Accept, PEER, "", NOW + 1);
        assert!(deliver(&mut svc, &late).unwrap().is_empty());
        assert!(!svc.is_trusted(PEER));
    }

    #[test]
    fn inbound_revoke_removes_trust() {
        let mut svc = service(true);
        deliver(&mut svc, &message(HandshakeKind::Request, PEER, "", NOW)).unwrap();
        let actions = deliver(&mut svc, &message(HandshakeKind::Revoke, PEER, "bye", NOW)).unwrap();
        assert_eq!(
            actions,
            vec![TrustAction::Event(TrustEvent::Revoked {
                node: PEER,
                reason: "bye".into()
            })]
        );
        assert!(!svc.is_trusted(PEER));
    }

    #[test]
    fn our_revoke_tells_the_peer_and_the_registry() {
        let mut svc = service(true);
        assert_eq!(
            svc.revoke(PEER, "", NOW),
            Err(TrustServiceError::NotTrusted { node: PEER })
        );
        deliver(&mut svc, &message(HandshakeKind::Request, PEER, "", NOW)).unwrap();
        let actions = svc.revoke(PEER, "done", NOW).unwrap();
        let (to, revoke) = sent(&actions[0]);
        assert_eq!(
            (to, revoke.kind, revoke.reason.as_str()),
            (PEER, HandshakeKind::Revoke, "done")
        );
        assert!(
            matches!(registry(&actions[1]), Request::RevokeTrust(r) if r.peer_id == PEER
            )
        );
        assert!(!svc.is_trusted(PEER));
        // An accept arriving after the revoke does not restore trust.
        let late = message(HandshakeKind::Accept, PEER, "", NOW + 1);
        assert!(deliver(&mut svc, &late).unwrap().is_empty());
        assert!(!svc.is_trusted(PEER));
    }

    #[test]
    fn reject_answers_the_requester() {
        let mut svc = service(false);
        deliver(&mut svc, &message(HandshakeKind::Request, PEER, "", NOW)).unwrap();
        let actions = svc.reject(PEER, "not now", NOW).unwrap();
        let (to, reject) = sent(&actions[0]);
        assert_eq!(
            (to, reject.kind, reject.reason.as_str()),
            (PEER, HandshakeKind::Reject, "not now")
        );
        assert!(svc.pending().is_empty());
        assert!(!svc.is_trusted(PEER));
    }

    #[test]
    fn asking_a_node_whose_request_is_pending_approves_it() {
        let mut svc = service(false);
        deliver(&mut svc, &message(HandshakeKind::Request, PEER, "", NOW)).unwrap();
        let actions = svc.request(PEER, "", NOW).unwrap();
        assert_eq!(sent(&actions[0]).1.kind, HandshakeKind::Accept);
        assert!(svc.is_trusted(PEER));
        assert_eq!(
            svc.request(PEER, "", NOW),
            Err(TrustServiceError::AlreadyTrusted { node: PEER })
        );
        assert_eq!(
            svc.request(US, "", NOW),
            Err(TrustServiceError::SelfHandshake)
        );
    }

    fn relayed(from: u32) -> RelayedHandshakeRequest {
        RelayedHandshakeRequest {
            from_node_id: from,
            public_key: Some(PublicKey(key(1).public_key())),
            justification: "via\u{202E} registry".into(),
            timestamp: NOW as i64,
        }
    }

    #[test]
    fn relayed_request_is_pending_and_approval_responds_through_the_registry() {
        let mut svc = service(false);
        let inbox = PollHandshakesOk {
            requests: vec![relayed(PEER)],
            responses: vec![],
        };
        let actions = svc.on_poll(&inbox, NOW);
        assert_eq!(
            actions,
            vec![TrustAction::Event(TrustEvent::RequestPending {
                node: PEER,
                justification: "via registry".into(),
                path: RequestPath::Relayed
            })]
        );
        let actions = svc.approve(PEER, NOW).unwrap();
        assert!(matches!(registry(&actions[0]), Request::RespondHandshake(r)
                if r.node_id == US && r.peer_id == PEER && r.accept
        ));
        assert_eq!(actions[1], event(PEER));
        assert_eq!(
            svc.trusted().next().map(|(n, p)| (n, p.key)),
            Some((PEER, Some(key(1).public_key())))
        );
    }

    #[test]
    fn relayed_requests_follow_the_same_policy() {
        let mut svc = service(false);
        svc.request_relayed(PEER, "", NOW).unwrap();
        svc.request(PEER + 1, "", NOW).unwrap();
        let inbox = PollHandshakesOk {
            requests: vec![relayed(PEER), relayed(US)],
            responses: vec![RelayedHandshakeResponse {
                from_node_id: PEER + 1,
                accept: false,
                timestamp: 0,
            }],
        };
        let actions = svc.on_poll(&inbox, NOW);
        assert!(
            matches!(registry(&actions[0]), Request::RespondHandshake(r) if r.accept
            )
        );
        assert_eq!(actions[1], event(PEER));
        assert_eq!(
            actions[2],
            TrustAction::Event(TrustEvent::Rejected {
                node: PEER + 1,
                reason: String::new()
            })
        );
        assert_eq!(actions.len(), 3);
        assert_eq!(svc.outgoing().count(), 0);
    }

    #[test]
    fn relayed_accept_settles_our_request() {
        let mut svc = service(false);
        let actions = svc.request_relayed(PEER, "please", NOW).unwrap();
        assert!(matches!(registry(&actions[0]), Request::RequestHandshake(r)
                if r.from_node_id == US && r.to_node_id == PEER && r.justification == "please"
        ));
        let accepted = |from| PollHandshakesOk {
            requests: vec![],
            responses: vec![RelayedHandshakeResponse {
                from_node_id: from,
                accept: true,
                timestamp: 0,
            }],
        };
        assert!(svc.on_poll(&accepted(PEER + 7), NOW).is_empty());
        assert_eq!(svc.on_poll(&accepted(PEER), NOW), vec![event(PEER)]);
        assert_eq!(svc.trusted().next().map(|(_, p)| p.key), Some(None));
    }

    #[test]
    fn poll_request_is_signed_by_us() {
        let svc = service(false);
        let Request::PollHandshakes(poll) = svc.poll_request() else {
            panic!()
        };
        assert_eq!(poll.node_id, US);
        assert_eq!(poll.verify(&key(2).public_key()), Ok(()));
    }
}
