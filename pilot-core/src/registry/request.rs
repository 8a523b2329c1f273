//! Requests a node sends to the registry (spec §9.3–§9.6).
//!
//! Each request type is a struct named after its wire `"type"` and carries exactly the wire
//! fields; [`Request`] tags them. Signed requests are built with a `signed` constructor that
//! computes the signature, and checked with [`SignedRequest::verify`].

use alloc::string::String;
use alloc::vec::Vec;

use crate::crypto::Identity;
use serde::{Deserialize, Serialize};

use super::json::{decode_body, message_type, null_as_default};
use super::{challenge, framing, PublicKey, RegistryError, Signature, PUBLIC_KEY_BYTES};

/// One advertised transport endpoint, e.g. `{"network":"tcp","addr":"host:port"}` (spec §9.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Transport name (`"tcp"`, `"ws"`, …).
    pub network: String,
    /// Address on that transport.
    pub addr: String,
}

/// `register`: announce the node's key and endpoints, receive its node ID (spec §9.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    /// Public UDP endpoint `ip:port`; only the port is kept by the registry. May be empty.
    #[serde(default)]
    pub listen_addr: String,
    /// The node's Ed25519 identity key: the identity the node ID is bound to.
    pub public_key: PublicKey,
    /// Owner identifier used for key-rotation recovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Requested hostname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// LAN addresses, for same-network peer detection.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub lan_addrs: Vec<String>,
    /// Software version, informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Extra transport endpoints (V-FORK registries).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub endpoints: Vec<Endpoint>,
    /// V-NEW: hide `real_addr` from peers; the node is reached through the beacon only.
    #[serde(default, skip_serializing_if = "is_false")]
    pub relay_only: bool,
    /// Proof of possession over `register:<listen_addr>:<public_key>`; older clients omit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
}

impl Register {
    /// A registration of `key`'s public half at `listen_addr`, signed with `key`.
    ///
    /// Optional fields start empty; set them before sending (none of them is signed, so
    /// the signature stays valid).
    pub fn signed(listen_addr: String, key: &Identity) -> Self {
        let public_key = PublicKey(key.public_key());
        let signature = challenge::sign(key, &challenge::register(&listen_addr, &public_key));
        Register {
            listen_addr,
            public_key,
            owner: None,
            hostname: None,
            lan_addrs: Vec::new(),
            version: None,
            endpoints: Vec::new(),
            relay_only: false,
            signature: Some(signature),
        }
    }

    /// Registry side: checks the proof of possession against the key being registered.
    pub fn verify_possession(&self) -> Result<(), RegistryError> {
        self.verify(&self.public_key.0)
    }
}

/// `lookup`: the registry's record of a node, including its Ed25519 key (spec §9.4). Unsigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lookup {
    /// The node looked up.
    pub node_id: u32,
}

/// `resolve`: a node's reachable address, subject to trust for private nodes (spec §9.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolve {
    /// The node to resolve.
    pub node_id: u32,
    /// The asking node; signs the request.
    pub requester_id: u32,
    /// Over `resolve:<requester>:<node>`.
    pub signature: Signature,
}

impl Resolve {
    /// `requester` asks for `node`'s address.
    pub fn signed(requester: u32, node: u32, key: &Identity) -> Self {
        let signature = challenge::sign(key, &challenge::resolve(requester, node));
        Resolve {
            node_id: node,
            requester_id: requester,
            signature,
        }
    }
}

/// `heartbeat`: keeps the registration fresh (spec §9.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The node beating.
    pub node_id: u32,
    /// New public endpoint; makes the registry re-verify and refresh `real_addr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_addr: Option<String>,
    /// Over `heartbeat:<id>` or `heartbeat:<id>:<listen_addr>`.
    pub signature: Signature,
}

impl Heartbeat {
    /// A heartbeat for `node`, optionally announcing a new `listen_addr`.
    ///
    /// spec §9.5: V-FORK daemons omit `listen_addr` because some production registries did
    /// not accept the extended challenge.
    pub fn signed(node: u32, listen_addr: Option<String>, key: &Identity) -> Self {
        let signature = challenge::sign(key, &challenge::heartbeat(node, listen_addr.as_deref()));
        Heartbeat {
            node_id: node,
            listen_addr,
            signature,
        }
    }
}

/// `deregister`: remove the node's registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deregister {
    /// The node leaving.
    pub node_id: u32,
    /// Over `deregister:<id>`.
    pub signature: Signature,
}

impl Deregister {
    /// `node` deregisters itself.
    pub fn signed(node: u32, key: &Identity) -> Self {
        Deregister {
            node_id: node,
            signature: challenge::sign(key, &challenge::deregister(node)),
        }
    }
}

/// `set_hostname`: claim (or with an empty string, drop) a unique hostname.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetHostname {
    /// The node renamed.
    pub node_id: u32,
    /// The new hostname.
    pub hostname: String,
    /// Over `set_hostname:<id>` (the hostname itself is not signed).
    pub signature: Signature,
}

impl SetHostname {
    /// `node` claims `hostname`.
    pub fn signed(node: u32, hostname: String, key: &Identity) -> Self {
        let signature = challenge::sign(key, &challenge::set_hostname(node));
        SetHostname {
            node_id: node,
            hostname,
            signature,
        }
    }
}

/// `set_visibility`: make the node public (endpoints visible in `lookup`, no trust gate on
/// `resolve`) or private again (spec §6.8, §9.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetVisibility {
    /// The node changing visibility.
    pub node_id: u32,
    /// `true` for public, `false` for private (the default).
    pub public: bool,
    /// Over `set_visibility:<id>` (the flag itself is not signed).
    pub signature: Signature,
}

impl SetVisibility {
    /// `node` sets its visibility.
    pub fn signed(node: u32, public: bool, key: &Identity) -> Self {
        let signature = challenge::sign(key, &challenge::set_visibility(node));
        SetVisibility {
            node_id: node,
            public,
            signature,
        }
    }
}

/// `check_trust`: does the registry consider `node_id` and `peer_id` trusted (mutual trust
/// pair or shared non-backbone network)? Used by the SYN gate (spec §6.8). Unsigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckTrust {
    /// One side (usually the asking node).
    pub node_id: u32,
    /// The other side.
    pub peer_id: u32,
}

/// `report_trust`: record a trust pair after a completed handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportTrust {
    /// The reporting node.
    pub node_id: u32,
    /// The peer it now trusts.
    pub peer_id: u32,
    /// Over `report_trust:<id>:<peer>`.
    pub signature: Signature,
}

impl ReportTrust {
    /// `node` reports that it trusts `peer`.
    pub fn signed(node: u32, peer: u32, key: &Identity) -> Self {
        let signature = challenge::sign(key, &challenge::report_trust(node, peer));
        ReportTrust {
            node_id: node,
            peer_id: peer,
            signature,
        }
    }
}

/// `revoke_trust`: remove a trust pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeTrust {
    /// The revoking node.
    pub node_id: u32,
    /// The peer no longer trusted.
    pub peer_id: u32,
    /// Over `revoke_trust:<id>:<peer>`.
    pub signature: Signature,
}

impl RevokeTrust {
    /// `node` revokes its trust in `peer`.
    pub fn signed(node: u32, peer: u32, key: &Identity) -> Self {
        let signature = challenge::sign(key, &challenge::revoke_trust(node, peer));
        RevokeTrust {
            node_id: node,
            peer_id: peer,
            signature,
        }
    }
}

/// `request_handshake`: leave a trust request in `to_node_id`'s registry inbox, for peers that
/// cannot be dialled on port 444 (spec §9.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestHandshake {
    /// The requesting node.
    pub from_node_id: u32,
    /// The node asked for trust.
    pub to_node_id: u32,
    /// Free text shown to the other side's operator (not signed).
    #[serde(default)]
    pub justification: String,
    /// Over `handshake:<from>:<to>`.
    pub signature: Signature,
}

impl RequestHandshake {
    /// `from` asks `to` for trust.
    pub fn signed(from: u32, to: u32, justification: String, key: &Identity) -> Self {
        let signature = challenge::sign(key, &challenge::handshake(from, to));
        RequestHandshake {
            from_node_id: from,
            to_node_id: to,
            justification,
            signature,
        }
    }
}

/// `poll_handshakes`: drain the node's registry inbox of relayed requests and answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollHandshakes {
    /// The polling node.
    pub node_id: u32,
    /// Over `poll_handshakes:<id>`.
    pub signature: Signature,
}

impl PollHandshakes {
    /// `node` polls its inbox.
    pub fn signed(node: u32, key: &Identity) -> Self {
        let signature = challenge::sign(key, &challenge::poll_handshakes(node));
        PollHandshakes {
            node_id: node,
            signature,
        }
    }
}

/// `respond_handshake`: answer a relayed request; an acceptance creates the trust pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RespondHandshake {
    /// The answering node.
    pub node_id: u32,
    /// The node whose request is answered.
    pub peer_id: u32,
    /// Accept or reject.
    pub accept: bool,
    /// Over `respond:<node>:<peer>` (the verdict itself is not signed).
    pub signature: Signature,
}

impl RespondHandshake {
    /// `node` answers `peer`'s request.
    pub fn signed(node: u32, peer: u32, accept: bool, key: &Identity) -> Self {
        let signature = challenge::sign(key, &challenge::respond(node, peer));
        RespondHandshake {
            node_id: node,
            peer_id: peer,
            accept,
            signature,
        }
    }
}

/// `list_nodes`: members of a network (used for broadcast). Unsigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListNodes {
    /// The network listed.
    pub network_id: u16,
}

/// A request whose `"signature"` covers a challenge string built from its fields.
pub trait SignedRequest {
    /// The exact string the signature must cover.
    fn challenge(&self) -> String;

    /// The signature carried, if any.
    fn signature(&self) -> Option<&Signature>;

    /// Registry side: checks the signature against the signer's registered key.
    fn verify(&self, public_key: &[u8; PUBLIC_KEY_BYTES]) -> Result<(), RegistryError> {
        let signature = self.signature().ok_or(RegistryError::MissingSignature)?;
        challenge::verify(public_key, &self.challenge(), signature)
    }
}

impl SignedRequest for Register {
    fn challenge(&self) -> String {
        challenge::register(&self.listen_addr, &self.public_key)
    }
    fn signature(&self) -> Option<&Signature> {
        self.signature.as_ref()
    }
}

/// Implements [`SignedRequest`] for a request with a mandatory signature.
macro_rules! signed_request {
    ($ty:ty, |$r:ident| $challenge:expr) => {
        impl SignedRequest for $ty {
            fn challenge(&self) -> String {
                let $r = self;
                $challenge
            }
            fn signature(&self) -> Option<&Signature> {
                Some(&self.signature)
            }
        }
    };
}

signed_request!(Resolve, |r| challenge::resolve(r.requester_id, r.node_id));
signed_request!(Heartbeat, |r| challenge::heartbeat(
    r.node_id,
    r.listen_addr.as_deref()
));
signed_request!(Deregister, |r| challenge::deregister(r.node_id));
signed_request!(SetHostname, |r| challenge::set_hostname(r.node_id));
signed_request!(SetVisibility, |r| challenge::set_visibility(r.node_id));
signed_request!(ReportTrust, |r| challenge::report_trust(
    r.node_id, r.peer_id
));
signed_request!(RevokeTrust, |r| challenge::revoke_trust(
    r.node_id, r.peer_id
));
signed_request!(RequestHandshake, |r| challenge::handshake(
    r.from_node_id,
    r.to_node_id
));
signed_request!(PollHandshakes, |r| challenge::poll_handshakes(r.node_id));
signed_request!(RespondHandshake, |r| challenge::respond(
    r.node_id, r.peer_id
));

/// Any registry request, tagged by its `"type"` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// `register`
    Register(Register),
    /// `lookup`
    Lookup(Lookup),
    /// `resolve`
    Resolve(Resolve),
    /// `heartbeat`
    Heartbeat(Heartbeat),
    /// `deregister`
    Deregister(Deregister),
    /// `set_hostname`
    SetHostname(SetHostname),
    /// `set_visibility`
    SetVisibility(SetVisibility),
    /// `check_trust`
    CheckTrust(CheckTrust),
    /// `report_trust`
    ReportTrust(ReportTrust),
    /// `revoke_trust`
    RevokeTrust(RevokeTrust),
    /// `request_handshake`
    RequestHandshake(RequestHandshake),
    /// `poll_handshakes`
    PollHandshakes(PollHandshakes),
    /// `respond_handshake`
    RespondHandshake(RespondHandshake),
    /// `list_nodes`
    ListNodes(ListNodes),
}

impl Request {
    /// The wire `"type"` of this request.
    pub fn type_name(&self) -> &'static str {
        match self {
            Request::Register(_) => "register",
            Request::Lookup(_) => "lookup",
            Request::Resolve(_) => "resolve",
            Request::Heartbeat(_) => "heartbeat",
            Request::Deregister(_) => "deregister",
            Request::SetHostname(_) => "set_hostname",
            Request::SetVisibility(_) => "set_visibility",
            Request::CheckTrust(_) => "check_trust",
            Request::ReportTrust(_) => "report_trust",
            Request::RevokeTrust(_) => "revoke_trust",
            Request::RequestHandshake(_) => "request_handshake",
            Request::PollHandshakes(_) => "poll_handshakes",
            Request::RespondHandshake(_) => "respond_handshake",
            Request::ListNodes(_) => "list_nodes",
        }
    }

    /// The `"type"` of the success response this request expects (spec §9.1: `<type>_ok`).
    pub fn ok_type_name(&self) -> &'static str {
        match self {
            Request::Register(_) => "register_ok",
            Request::Lookup(_) => "lookup_ok",
            Request::Resolve(_) => "resolve_ok",
            Request::Heartbeat(_) => "heartbeat_ok",
            Request::Deregister(_) => "deregister_ok",
            Request::SetHostname(_) => "set_hostname_ok",
            Request::SetVisibility(_) => "set_visibility_ok",
            Request::CheckTrust(_) => "check_trust_ok",
            Request::ReportTrust(_) => "report_trust_ok",
            Request::RevokeTrust(_) => "revoke_trust_ok",
            Request::RequestHandshake(_) => "request_handshake_ok",
            Request::PollHandshakes(_) => "poll_handshakes_ok",
            Request::RespondHandshake(_) => "respond_handshake_ok",
            Request::ListNodes(_) => "list_nodes_ok",
        }
    }

    /// Serializes to a length-prefixed frame, ready for the registry connection.
    pub fn encode(&self) -> Result<Vec<u8>, RegistryError> {
        framing::encode_message(self)
    }

    /// Parses one JSON body (as returned by [`FrameReader`](super::FrameReader)).
    ///
    /// Distinguishes malformed JSON, a missing `"type"`, an unknown `"type"` and a known type
    /// with bad fields. Fields this codec does not know are ignored.
    pub fn decode(json: &[u8]) -> Result<Request, RegistryError> {
        let Some(ty) = message_type(json)?.ty else {
            return Err(RegistryError::MissingType);
        };
        let ty: &str = &ty;
        match ty {
            "register" => decode_body(json, ty).map(Request::Register),
            "lookup" => decode_body(json, ty).map(Request::Lookup),
            "resolve" => decode_body(json, ty).map(Request::Resolve),
            "heartbeat" => decode_body(json, ty).map(Request::Heartbeat),
            "deregister" => decode_body(json, ty).map(Request::Deregister),
            "set_hostname" => decode_body(json, ty).map(Request::SetHostname),
            "set_visibility" => decode_body(json, ty).map(Request::SetVisibility),
            "check_trust" => decode_body(json, ty).map(Request::CheckTrust),
            "report_trust" => decode_body(json, ty).map(Request::ReportTrust),
            "revoke_trust" => decode_body(json, ty).map(Request::RevokeTrust),
            "request_handshake" => decode_body(json, ty).map(Request::RequestHandshake),
            "poll_handshakes" => decode_body(json, ty).map(Request::PollHandshakes),
            "respond_handshake" => decode_body(json, ty).map(Request::RespondHandshake),
            "list_nodes" => decode_body(json, ty).map(Request::ListNodes),
            other => Err(RegistryError::UnknownType(other.into())),
        }
    }

    /// The request's signature check, or `None` for the unsigned `lookup`, `check_trust` and
    /// `list_nodes`.
    pub fn as_signed(&self) -> Option<&dyn SignedRequest> {
        match self {
            Request::Register(r) => Some(r),
            Request::Resolve(r) => Some(r),
            Request::Heartbeat(r) => Some(r),
            Request::Deregister(r) => Some(r),
            Request::SetHostname(r) => Some(r),
            Request::SetVisibility(r) => Some(r),
            Request::ReportTrust(r) => Some(r),
            Request::RevokeTrust(r) => Some(r),
            Request::RequestHandshake(r) => Some(r),
            Request::PollHandshakes(r) => Some(r),
            Request::RespondHandshake(r) => Some(r),
            Request::Lookup(_) | Request::CheckTrust(_) | Request::ListNodes(_) => None,
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}
