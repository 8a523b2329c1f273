//! Registry responses (spec §9.1, §9.3–§9.6): `{"type":"<request>_ok", …}` on success,
//! `{"type":"error","error":"<text>"}` on refusal.
//!
//! Optional fields default when absent and `null` lists read as empty (Go marshals nil slices
//! as `null`); unknown fields are ignored so newer registries stay readable.

use alloc::string::String;
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::json::{decode_body, message_type, null_as_default, Envelope};
use super::{framing, Endpoint, PublicKey, RegistryError};

/// `register_ok`: the node ID bound to the registered key (spec §9.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterOk {
    /// The assigned node ID (the same one again for a known key).
    pub node_id: u32,
    /// Always 0, the backbone, on registration.
    #[serde(default)]
    pub network_id: u16,
    /// The address in text form, `0:0000.HHHH.LLLL`.
    #[serde(default)]
    pub address: String,
    /// The key the node ID is now bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PublicKey>,
    /// The node's endpoint as the registry saw it: connection IP, announced port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_addr: Option<String>,
    /// Registry protocol version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<u32>,
    /// The hostname granted, when one was requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Why the requested hostname was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname_error: Option<String>,
}

/// `lookup_ok`: the registry's record of a node (spec §9.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupOk {
    /// The node looked up.
    pub node_id: u32,
    /// Its address in text form.
    #[serde(default)]
    pub address: String,
    /// Networks it belongs to (0 is the backbone).
    #[serde(default, deserialize_with = "null_as_default")]
    pub networks: Vec<u16>,
    /// Its Ed25519 identity key: what PILA verification is checked against (spec §6.2).
    pub public_key: PublicKey,
    /// Whether the node is public (endpoints visible, no trust gate).
    #[serde(default)]
    pub public: bool,
    /// Reputation score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub polo_score: Option<i64>,
    /// Hostname, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Capability tags.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<String>,
    /// Advertises task execution.
    #[serde(default, skip_serializing_if = "is_false")]
    pub task_exec: bool,
    /// Verified external identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Software version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Public nodes only: the UDP endpoint (the beacon's for a relay-only node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real_addr: Option<String>,
    /// Public nodes only (V-NEW): same as `real_addr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Public nodes only: extra transport endpoints.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub endpoints: Vec<Endpoint>,
    /// V-NEW: the node is reachable through the beacon only.
    #[serde(default, skip_serializing_if = "is_false")]
    pub relay_only: bool,
}

/// `resolve_ok`: where to reach a node (spec §9.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolveOk {
    /// The node resolved.
    pub node_id: u32,
    /// Its public UDP endpoint; empty when it registered without one.
    #[serde(default)]
    pub real_addr: String,
    /// Its Ed25519 identity key.
    pub public_key: PublicKey,
    /// Extra transport endpoints.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub endpoints: Vec<Endpoint>,
    /// LAN addresses.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub lan_addrs: Vec<String>,
    /// Age of the node's current key, in days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_age_days: Option<i64>,
}

/// `heartbeat_ok` (spec §9.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatOk {
    /// The registry's clock, Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<i64>,
    /// The node's key is close to its expiry.
    #[serde(default, skip_serializing_if = "is_false")]
    pub key_expiry_warning: bool,
}

/// `set_hostname_ok`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetHostnameOk {
    /// The node renamed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<u32>,
    /// The hostname now held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

/// `check_trust_ok`: the registry's answer for the SYN gate (spec §6.8, §9.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckTrustOk {
    /// A mutual trust pair exists, or the nodes share a non-backbone network.
    pub trusted: bool,
}

/// A trust request waiting in the registry inbox (spec §9.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayedHandshakeRequest {
    /// The requesting node.
    pub from_node_id: u32,
    /// Its key, when the registry includes it (V-FORK registries do not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<PublicKey>,
    /// The requester's free text; sanitize before showing it.
    #[serde(default)]
    pub justification: String,
    /// When the registry stored it, Unix seconds.
    #[serde(default)]
    pub timestamp: i64,
}

/// An answer to one of our relayed requests (spec §9.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayedHandshakeResponse {
    /// The node that answered.
    pub from_node_id: u32,
    /// Whether it accepted.
    pub accept: bool,
    /// When the registry stored it, Unix seconds.
    #[serde(default)]
    pub timestamp: i64,
}

/// `poll_handshakes_ok`: the drained inbox.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PollHandshakesOk {
    /// Requests addressed to us.
    #[serde(default, deserialize_with = "null_as_default")]
    pub requests: Vec<RelayedHandshakeRequest>,
    /// Answers to our requests.
    #[serde(default, deserialize_with = "null_as_default")]
    pub responses: Vec<RelayedHandshakeResponse>,
}

/// One member in `list_nodes_ok`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedNode {
    /// The member's node ID.
    pub node_id: u32,
    /// Its hostname, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

/// `list_nodes_ok`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListNodesOk {
    /// Members of the network.
    #[serde(default, deserialize_with = "null_as_default")]
    pub nodes: Vec<ListedNode>,
}

/// Any registry response, tagged by its `"type"` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// `register_ok`
    RegisterOk(RegisterOk),
    /// `lookup_ok`
    LookupOk(LookupOk),
    /// `resolve_ok`
    ResolveOk(ResolveOk),
    /// `heartbeat_ok`
    HeartbeatOk(HeartbeatOk),
    /// `deregister_ok`
    DeregisterOk,
    /// `set_hostname_ok`
    SetHostnameOk(SetHostnameOk),
    /// `set_visibility_ok`
    SetVisibilityOk,
    /// `check_trust_ok`
    CheckTrustOk(CheckTrustOk),
    /// `report_trust_ok`
    ReportTrustOk,
    /// `revoke_trust_ok`
    RevokeTrustOk,
    /// `request_handshake_ok`
    RequestHandshakeOk,
    /// `poll_handshakes_ok`
    PollHandshakesOk(PollHandshakesOk),
    /// `respond_handshake_ok`
    RespondHandshakeOk,
    /// `list_nodes_ok`
    ListNodesOk(ListNodesOk),
    /// `error`: the registry refused the request; the text says why (e.g. "node not found",
    /// which means re-register, spec §9.5).
    Error {
        /// The registry's reason.
        error: String,
    },
}

impl Response {
    /// The wire `"type"` of this response.
    pub fn type_name(&self) -> &'static str {
        match self {
            Response::RegisterOk(_) => "register_ok",
            Response::LookupOk(_) => "lookup_ok",
            Response::ResolveOk(_) => "resolve_ok",
            Response::HeartbeatOk(_) => "heartbeat_ok",
            Response::DeregisterOk => "deregister_ok",
            Response::SetHostnameOk(_) => "set_hostname_ok",
            Response::SetVisibilityOk => "set_visibility_ok",
            Response::CheckTrustOk(_) => "check_trust_ok",
            Response::ReportTrustOk => "report_trust_ok",
            Response::RevokeTrustOk => "revoke_trust_ok",
            Response::RequestHandshakeOk => "request_handshake_ok",
            Response::PollHandshakesOk(_) => "poll_handshakes_ok",
            Response::RespondHandshakeOk => "respond_handshake_ok",
            Response::ListNodesOk(_) => "list_nodes_ok",
            Response::Error { .. } => "error",
        }
    }

    /// The registry's refusal text, if this is an error response.
    pub fn error_text(&self) -> Option<&str> {
        match self {
            Response::Error { error } => Some(error),
            _ => None,
        }
    }

    /// Serializes to a length-prefixed frame (registry side).
    pub fn encode(&self) -> Result<Vec<u8>, RegistryError> {
        framing::encode_message(self)
    }

    /// Parses one JSON body (as returned by [`FrameReader`](super::FrameReader)).
    ///
    /// spec §9.1: an object without `"type"` is malformed ([`RegistryError::MissingType`]),
    /// except that, like COMMON clients, any object carrying an `"error"` string is read as
    /// an error response. Unknown types give [`RegistryError::UnknownType`].
    pub fn decode(json: &[u8]) -> Result<Response, RegistryError> {
        let Envelope { ty, error } = message_type(json)?;
        let ty: &str = match (ty.as_deref(), error) {
            (_, Some(error)) => return Ok(Response::Error { error }),
            (Some(ty), None) => ty,
            (None, None) => return Err(RegistryError::MissingType),
        };
        match ty {
            "register_ok" => decode_body(json, ty).map(Response::RegisterOk),
            "lookup_ok" => decode_body(json, ty).map(Response::LookupOk),
            "resolve_ok" => decode_body(json, ty).map(Response::ResolveOk),
            "heartbeat_ok" => decode_body(json, ty).map(Response::HeartbeatOk),
            "deregister_ok" => Ok(Response::DeregisterOk),
            "set_hostname_ok" => decode_body(json, ty).map(Response::SetHostnameOk),
            "set_visibility_ok" => Ok(Response::SetVisibilityOk),
            "check_trust_ok" => decode_body(json, ty).map(Response::CheckTrustOk),
            "report_trust_ok" => Ok(Response::ReportTrustOk),
            "revoke_trust_ok" => Ok(Response::RevokeTrustOk),
            "request_handshake_ok" => Ok(Response::RequestHandshakeOk),
            "poll_handshakes_ok" => decode_body(json, ty).map(Response::PollHandshakesOk),
            "respond_handshake_ok" => Ok(Response::RespondHandshakeOk),
            "list_nodes_ok" => decode_body(json, ty).map(Response::ListNodesOk),
            // {"type":"error"} without a string "error" field.
            "error" => Err(RegistryError::InvalidMessage {
                message_type: ty.into(),
                detail: "missing error text".into(),
            }),
            other => Err(RegistryError::UnknownType(other.into())),
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}
