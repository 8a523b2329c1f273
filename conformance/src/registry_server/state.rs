//! The registry's records and the answer to each request (spec §9.3–§9.6), without any I/O.
//!
//! [`Registry::handle`] takes one decoded request plus what the connection knows (the source
//! IP, the time) and returns the response to send. Everything lives in memory.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use pilot_core::addr::Addr;
use pilot_core::registry::{
    CheckTrust, CheckTrustOk, Deregister, Endpoint, Heartbeat, ListNodes, ListNodesOk, ListedNode,
    Lookup, LookupOk, PollHandshakes, PollHandshakesOk, PublicKey, Register, RegisterOk,
    RegistryError, RelayedHandshakeRequest, RelayedHandshakeResponse, ReportTrust, Request,
    RequestHandshake, Resolve, ResolveOk, RespondHandshake, Response, RevokeTrust, SetHostname,
    SetHostnameOk, SetVisibility, SignedRequest,
};

/// Network every node joins on registration: the backbone (spec §9.3).
const BACKBONE_NETWORK: u16 = 0;
/// Registry protocol version announced in `register_ok` (spec §9.3).
const PROTOCOL_VERSION: u32 = 1;
/// Longest hostname accepted, in bytes (a DNS label).
const MAX_HOSTNAME_BYTES: usize = 63;
/// Most `endpoints` or `lan_addrs` entries kept per node.
const MAX_ADDRESS_LIST_ENTRIES: usize = 32;
/// Most relayed requests (and, separately, answers) waiting in one node's inbox
/// (spec §9.6: receivers keep at most 256 pending requests).
const MAX_INBOX_ENTRIES: usize = 256;
/// Longest justification kept, in characters (spec §9.6: V-NEW truncates to 1024).
const MAX_JUSTIFICATION_CHARS: usize = 1024;
/// Seconds in a day, for `key_age_days`.
const SECONDS_PER_DAY: i64 = 86_400;

/// How the registry assigns IDs and what it demands of registrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The node ID given to the first new key; later keys count up from it.
    pub first_node_id: u32,
    /// Refuse `register` without the proof-of-possession `signature` (spec §9.3 leaves this
    /// open). A signature that is present is always checked.
    pub require_register_signature: bool,
    /// Most nodes held at once; registrations of new keys beyond it are refused.
    pub max_nodes: usize,
}

/// What the connection adds to a request.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    /// Source IP of the TCP connection: the IP half of `real_addr` (spec §9.3).
    pub peer_ip: IpAddr,
    /// Wall-clock time, Unix seconds.
    pub now_unix: i64,
}

/// Why a request was refused; its `Display` text is the `"error"` of the response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The body is not a request this registry understands.
    Malformed(RegistryError),
    /// The named node is not registered (spec §9.5: clients re-register on this text).
    NodeNotFound(u32),
    /// A signature is missing, undecodable or does not verify against the registered key.
    Signature(RegistryError),
    /// A private target and no trust pair or shared non-backbone network (spec §9.4).
    ResolveDenied(u32),
    /// `listen_addr` has no usable port.
    InvalidListenAddr(String),
    /// `endpoints` or `lan_addrs` longer than the registry keeps.
    TooManyAddresses,
    /// `set_hostname` asked for a name that is malformed or held by another node.
    Hostname(HostnameError),
    /// A node named itself as the peer of a trust operation.
    SelfReference(u32),
    /// `respond_handshake` without a relayed request from that peer.
    NoPendingHandshake {
        /// The answering node.
        node: u32,
        /// The peer it claimed to answer.
        peer: u32,
    },
    /// The target's relay inbox is full.
    InboxFull(u32),
    /// No node ID left, or the node limit is reached.
    RegistryFull,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Malformed(err) => write!(f, "bad request: {err}"),
            Refusal::NodeNotFound(node) => write!(f, "node {node}: node not found"),
            Refusal::Signature(err) => write!(f, "{err}"),
            Refusal::ResolveDenied(node) => write!(
                f,
                "resolve denied: node {node} is private (establish mutual trust first)"
            ),
            Refusal::InvalidListenAddr(addr) => write!(f, "invalid listen_addr {addr:?}"),
            Refusal::TooManyAddresses => write!(
                f,
                "more than {MAX_ADDRESS_LIST_ENTRIES} endpoints or lan_addrs"
            ),
            Refusal::Hostname(err) => write!(f, "{err}"),
            Refusal::SelfReference(node) => write!(f, "node {node} cannot name itself as peer"),
            Refusal::NoPendingHandshake { node, peer } => {
                write!(f, "no pending handshake from node {peer} to node {node}")
            }
            Refusal::InboxFull(node) => write!(f, "handshake inbox of node {node} is full"),
            Refusal::RegistryFull => f.write_str("registry is full"),
        }
    }
}

impl std::error::Error for Refusal {}

/// Why a hostname cannot be granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostnameError {
    /// Not 1–63 bytes of lower-case letters, digits and inner hyphens.
    Invalid(String),
    /// Held by another node.
    Taken(String),
}

impl fmt::Display for HostnameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostnameError::Invalid(name) => write!(
                f,
                "invalid hostname {name:?}: use 1-{MAX_HOSTNAME_BYTES} lower-case letters, \
                 digits and inner hyphens"
            ),
            HostnameError::Taken(name) => write!(f, "hostname {name:?} is already taken"),
        }
    }
}

/// One registered node.
#[derive(Debug, Clone)]
struct Node {
    public_key: PublicKey,
    owner: Option<String>,
    hostname: Option<String>,
    /// `ip:port` from the connection's IP and the announced port; empty without a port.
    real_addr: String,
    relay_only: bool,
    endpoints: Vec<Endpoint>,
    lan_addrs: Vec<String>,
    version: Option<String>,
    /// spec §6.8: private by default.
    public: bool,
    networks: BTreeSet<u16>,
    /// When the current key was bound, Unix seconds.
    key_since_unix: i64,
}

/// The whole in-memory registry.
#[derive(Debug)]
pub struct Registry {
    policy: Policy,
    nodes: HashMap<u32, Node>,
    by_key: HashMap<PublicKey, u32>,
    by_owner: HashMap<String, u32>,
    by_hostname: HashMap<String, u32>,
    /// Unordered pairs, stored as `(min, max)`.
    trust_pairs: HashSet<(u32, u32)>,
    /// Relayed requests not yet polled, by target.
    inbox: HashMap<u32, Vec<RelayedHandshakeRequest>>,
    /// Answers not yet polled, by the original requester.
    answers: HashMap<u32, Vec<RelayedHandshakeResponse>>,
    /// `(target, requester)` of every request not yet answered; outlives polling so the
    /// target can answer after it drained its inbox.
    pending: HashSet<(u32, u32)>,
    /// The ID the next new key receives; `None` once the ID space is used up.
    next_id: Option<u32>,
}

impl Registry {
    /// An empty registry.
    pub fn new(policy: Policy) -> Self {
        let next_id = Some(policy.first_node_id);
        Registry {
            policy,
            nodes: HashMap::new(),
            by_key: HashMap::new(),
            by_owner: HashMap::new(),
            by_hostname: HashMap::new(),
            trust_pairs: HashSet::new(),
            inbox: HashMap::new(),
            answers: HashMap::new(),
            pending: HashSet::new(),
            next_id,
        }
    }

    /// Answers one request; refusals become `{"type":"error"}` responses.
    pub fn handle(&mut self, request: Request, origin: &Origin) -> Response {
        let result = match request {
            Request::Register(r) => self.register(r, origin),
            Request::Lookup(r) => self.lookup(r),
            Request::Resolve(r) => self.resolve(&r, origin),
            Request::Heartbeat(r) => self.heartbeat(r, origin),
            Request::Deregister(r) => self.deregister(&r),
            Request::SetHostname(r) => self.set_hostname(r),
            Request::SetVisibility(r) => self.set_visibility(&r),
            Request::CheckTrust(r) => Ok(self.check_trust(r)),
            Request::ReportTrust(r) => self.report_trust(&r),
            Request::RevokeTrust(r) => self.revoke_trust(&r),
            Request::RequestHandshake(r) => self.request_handshake(r, origin),
            Request::PollHandshakes(r) => self.poll_handshakes(&r),
            Request::RespondHandshake(r) => self.respond_handshake(&r, origin),
            Request::ListNodes(r) => Ok(self.list_nodes(r)),
        };
        result.unwrap_or_else(|refusal| Response::Error {
            error: refusal.to_string(),
        })
    }

    /// spec §9.3: the key is the identity; a known owner re-binds its node to a new key.
    fn register(&mut self, r: Register, origin: &Origin) -> Result<Response, Refusal> {
        if r.signature.is_some() || self.policy.require_register_signature {
            r.verify_possession().map_err(Refusal::Signature)?;
        }
        if r.endpoints.len() > MAX_ADDRESS_LIST_ENTRIES
            || r.lan_addrs.len() > MAX_ADDRESS_LIST_ENTRIES
        {
            return Err(Refusal::TooManyAddresses);
        }
        let real_addr = real_addr(&r.listen_addr, origin.peer_ip)?;

        let id = self.bind_identity(&r, origin.now_unix)?;
        let requested_hostname = r.hostname.filter(|name| !name.is_empty());
        let node = self.nodes.get_mut(&id).ok_or(Refusal::NodeNotFound(id))?;
        node.real_addr = real_addr;
        node.relay_only = r.relay_only;
        node.endpoints = r.endpoints;
        node.lan_addrs = r.lan_addrs;
        node.version = r.version;
        // An owner names one node: the first to claim it keeps it, and a node that changes
        // owner releases the old one.
        if let Some(owner) = r.owner.filter(|owner| !owner.is_empty()) {
            let holder = *self.by_owner.entry(owner.clone()).or_insert(id);
            if holder == id && node.owner.as_ref() != Some(&owner) {
                if let Some(old) = node.owner.replace(owner) {
                    self.by_owner.remove(&old);
                }
            }
        }
        let observed = Some(node.real_addr.clone()).filter(|addr| !addr.is_empty());
        let public_key = node.public_key;

        // A refused hostname does not fail the registration (spec §9.3: `hostname_error`).
        let (hostname, hostname_error) = match requested_hostname {
            None => (self.hostname_of(id), None),
            Some(name) => match self.claim_hostname(id, &name) {
                Ok(()) => (Some(name), None),
                Err(err) => (self.hostname_of(id), Some(err.to_string())),
            },
        };

        Ok(Response::RegisterOk(RegisterOk {
            node_id: id,
            network_id: BACKBONE_NETWORK,
            address: Addr::new(BACKBONE_NETWORK, id).to_string(),
            public_key: Some(public_key),
            observed_addr: observed,
            protocol_version: Some(PROTOCOL_VERSION),
            hostname,
            hostname_error,
        }))
    }

    /// Finds or creates the node bound to the registering key.
    fn bind_identity(&mut self, r: &Register, now_unix: i64) -> Result<u32, Refusal> {
        if let Some(&id) = self.by_key.get(&r.public_key) {
            return Ok(id);
        }

        // Unknown key, known owner: key recovery. As in the reference registry the owner
        // string is not authenticated; acceptable only because this registry is local.
        let owned = r
            .owner
            .as_ref()
            .and_then(|owner| self.by_owner.get(owner))
            .copied();
        if let Some(id) = owned {
            if let Some(node) = self.nodes.get_mut(&id) {
                self.by_key.remove(&node.public_key);
                node.public_key = r.public_key;
                node.key_since_unix = now_unix;
                self.by_key.insert(r.public_key, id);
                return Ok(id);
            }
        }

        if self.nodes.len() >= self.policy.max_nodes {
            return Err(Refusal::RegistryFull);
        }
        let id = self.next_id.ok_or(Refusal::RegistryFull)?;
        // The broadcast node ID (spec §1.3) is never assigned.
        self.next_id = id.checked_add(1).filter(|next| *next != u32::MAX);
        self.nodes.insert(
            id,
            Node {
                public_key: r.public_key,
                owner: None,
                hostname: None,
                real_addr: String::new(),
                relay_only: false,
                endpoints: Vec::new(),
                lan_addrs: Vec::new(),
                version: None,
                public: false,
                networks: BTreeSet::from([BACKBONE_NETWORK]),
                key_since_unix: now_unix,
            },
        );
        self.by_key.insert(r.public_key, id);
        Ok(id)
    }

    /// spec §9.4: unsigned; addresses only for public nodes.
    fn lookup(&self, r: Lookup) -> Result<Response, Refusal> {
        let node = self.node(r.node_id)?;
        let mut answer = LookupOk {
            node_id: r.node_id,
            address: Addr::new(BACKBONE_NETWORK, r.node_id).to_string(),
            networks: node.networks.iter().copied().collect(),
            public_key: node.public_key,
            public: node.public,
            polo_score: Some(0),
            hostname: node.hostname.clone(),
            tags: Vec::new(),
            task_exec: false,
            external_id: None,
            version: node.version.clone(),
            real_addr: None,
            endpoint: None,
            endpoints: Vec::new(),
            relay_only: node.relay_only,
        };
        if node.public {
            let visible = visible_real_addr(node);
            answer.real_addr = visible.clone();
            answer.endpoint = visible;
            answer.endpoints = node.endpoints.clone();
        }
        Ok(Response::LookupOk(answer))
    }

    /// spec §9.4: signed by a registered requester; private targets need trust.
    fn resolve(&self, r: &Resolve, origin: &Origin) -> Result<Response, Refusal> {
        self.verify_by(r.requester_id, r)?;
        let node = self.node(r.node_id)?;
        if !node.public && r.requester_id != r.node_id && !self.trusted(r.requester_id, r.node_id) {
            return Err(Refusal::ResolveDenied(r.node_id));
        }
        Ok(Response::ResolveOk(ResolveOk {
            node_id: r.node_id,
            real_addr: visible_real_addr(node).unwrap_or_default(),
            public_key: node.public_key,
            endpoints: node.endpoints.clone(),
            lan_addrs: node.lan_addrs.clone(),
            key_age_days: Some(
                origin.now_unix.saturating_sub(node.key_since_unix).max(0) / SECONDS_PER_DAY,
            ),
        }))
    }

    /// spec §9.5: a `listen_addr` refreshes `real_addr` from the connection's IP.
    fn heartbeat(&mut self, r: Heartbeat, origin: &Origin) -> Result<Response, Refusal> {
        self.verify_by(r.node_id, &r)?;
        let refreshed = match &r.listen_addr {
            Some(listen_addr) => Some(real_addr(listen_addr, origin.peer_ip)?),
            None => None,
        };
        // Liveness is not tracked: nodes never go stale here (see the README's limitations).
        let node = self.node_mut(r.node_id)?;
        if let Some(addr) = refreshed {
            node.real_addr = addr;
        }
        Ok(Response::HeartbeatOk(pilot_core::registry::HeartbeatOk {
            time: Some(origin.now_unix),
            key_expiry_warning: false,
        }))
    }

    /// Removes the node and everything that names it. Its ID is not reused.
    fn deregister(&mut self, r: &Deregister) -> Result<Response, Refusal> {
        self.verify_by(r.node_id, r)?;
        let id = r.node_id;
        let node = self.nodes.remove(&id).ok_or(Refusal::NodeNotFound(id))?;
        self.by_key.remove(&node.public_key);
        if let Some(owner) = &node.owner {
            if self.by_owner.get(owner) == Some(&id) {
                self.by_owner.remove(owner);
            }
        }
        if let Some(name) = &node.hostname {
            self.by_hostname.remove(name);
        }
        self.trust_pairs.retain(|&(a, b)| a != id && b != id);
        self.pending.retain(|&(to, from)| to != id && from != id);
        self.inbox.remove(&id);
        self.answers.remove(&id);
        for requests in self.inbox.values_mut() {
            requests.retain(|request| request.from_node_id != id);
        }
        Ok(Response::DeregisterOk)
    }

    /// Claims a unique hostname; an empty one drops the current name.
    fn set_hostname(&mut self, r: SetHostname) -> Result<Response, Refusal> {
        self.verify_by(r.node_id, &r)?;
        if r.hostname.is_empty() {
            self.release_hostname(r.node_id);
        } else {
            self.claim_hostname(r.node_id, &r.hostname)
                .map_err(Refusal::Hostname)?;
        }
        Ok(Response::SetHostnameOk(SetHostnameOk {
            node_id: Some(r.node_id),
            hostname: Some(r.hostname),
        }))
    }

    /// spec §6.8: public nodes skip the resolve trust rule and show their addresses.
    fn set_visibility(&mut self, r: &SetVisibility) -> Result<Response, Refusal> {
        self.verify_by(r.node_id, r)?;
        self.node_mut(r.node_id)?.public = r.public;
        Ok(Response::SetVisibilityOk)
    }

    /// spec §6.8: a trust pair or a shared non-backbone network. Unknown nodes are simply
    /// not trusted.
    fn check_trust(&self, r: CheckTrust) -> Response {
        Response::CheckTrustOk(CheckTrustOk {
            trusted: self.trusted(r.node_id, r.peer_id),
        })
    }

    /// Records the pair. As in the reference registry one signed report suffices: the
    /// reporter attests a completed (hence mutual) handshake (spec §9.6).
    fn report_trust(&mut self, r: &ReportTrust) -> Result<Response, Refusal> {
        self.verify_by(r.node_id, r)?;
        self.trust_change_target(r.node_id, r.peer_id)?;
        self.trust_pairs.insert(pair(r.node_id, r.peer_id));
        Ok(Response::ReportTrustOk)
    }

    /// Removes the pair, whichever side had reported it.
    fn revoke_trust(&mut self, r: &RevokeTrust) -> Result<Response, Refusal> {
        self.verify_by(r.node_id, r)?;
        self.trust_change_target(r.node_id, r.peer_id)?;
        self.trust_pairs.remove(&pair(r.node_id, r.peer_id));
        Ok(Response::RevokeTrustOk)
    }

    /// spec §9.6: stores the request in the target's inbox; a repeat replaces the earlier one.
    fn request_handshake(
        &mut self,
        r: RequestHandshake,
        origin: &Origin,
    ) -> Result<Response, Refusal> {
        self.verify_by(r.from_node_id, &r)?;
        let (from, to) = (r.from_node_id, r.to_node_id);
        self.trust_change_target(from, to)?;
        let public_key = self.node(from)?.public_key;

        let requests = self.inbox.entry(to).or_default();
        requests.retain(|request| request.from_node_id != from);
        let pending_total = self
            .pending
            .iter()
            .filter(|(target, _)| *target == to)
            .count();
        if requests.len() >= MAX_INBOX_ENTRIES || pending_total >= MAX_INBOX_ENTRIES {
            return Err(Refusal::InboxFull(to));
        }
        requests.push(RelayedHandshakeRequest {
            from_node_id: from,
            public_key: Some(public_key),
            justification: r
                .justification
                .chars()
                .take(MAX_JUSTIFICATION_CHARS)
                .collect(),
            timestamp: origin.now_unix,
        });
        self.pending.insert((to, from));
        Ok(Response::RequestHandshakeOk)
    }

    /// Drains the node's inbox of requests and answers.
    fn poll_handshakes(&mut self, r: &PollHandshakes) -> Result<Response, Refusal> {
        self.verify_by(r.node_id, r)?;
        Ok(Response::PollHandshakesOk(PollHandshakesOk {
            requests: self.inbox.remove(&r.node_id).unwrap_or_default(),
            responses: self.answers.remove(&r.node_id).unwrap_or_default(),
        }))
    }

    /// spec §9.6: an accepted relayed handshake creates the trust pair; either verdict is
    /// queued for the requester.
    fn respond_handshake(
        &mut self,
        r: &RespondHandshake,
        origin: &Origin,
    ) -> Result<Response, Refusal> {
        self.verify_by(r.node_id, r)?;
        let (node, peer) = (r.node_id, r.peer_id);
        if !self.pending.remove(&(node, peer)) {
            return Err(Refusal::NoPendingHandshake { node, peer });
        }
        if let Some(requests) = self.inbox.get_mut(&node) {
            requests.retain(|request| request.from_node_id != peer);
        }
        if r.accept {
            self.trust_pairs.insert(pair(node, peer));
        }
        if self.nodes.contains_key(&peer) {
            let answers = self.answers.entry(peer).or_default();
            answers.retain(|answer| answer.from_node_id != node);
            if answers.len() < MAX_INBOX_ENTRIES {
                answers.push(RelayedHandshakeResponse {
                    from_node_id: node,
                    accept: r.accept,
                    timestamp: origin.now_unix,
                });
            }
        }
        Ok(Response::RespondHandshakeOk)
    }

    /// Members of one network, by ascending node ID.
    fn list_nodes(&self, r: ListNodes) -> Response {
        let mut nodes: Vec<ListedNode> = self
            .nodes
            .iter()
            .filter(|(_, node)| node.networks.contains(&r.network_id))
            .map(|(&node_id, node)| ListedNode {
                node_id,
                hostname: node.hostname.clone(),
            })
            .collect();
        nodes.sort_unstable_by_key(|listed| listed.node_id);
        Response::ListNodesOk(ListNodesOk { nodes })
    }

    fn node(&self, id: u32) -> Result<&Node, Refusal> {
        self.nodes.get(&id).ok_or(Refusal::NodeNotFound(id))
    }

    fn node_mut(&mut self, id: u32) -> Result<&mut Node, Refusal> {
        self.nodes.get_mut(&id).ok_or(Refusal::NodeNotFound(id))
    }

    /// Checks `request`'s signature against the key registered for `signer`.
    fn verify_by(&self, signer: u32, request: &dyn SignedRequest) -> Result<(), Refusal> {
        let key = self.node(signer)?.public_key;
        request.verify(&key.0).map_err(Refusal::Signature)
    }

    /// Both ends of a trust operation must exist and differ.
    fn trust_change_target(&self, node: u32, peer: u32) -> Result<(), Refusal> {
        if node == peer {
            return Err(Refusal::SelfReference(node));
        }
        self.node(peer).map(|_| ())
    }

    /// spec §6.8: a trust pair, or a shared network other than the backbone.
    fn trusted(&self, a: u32, b: u32) -> bool {
        if self.trust_pairs.contains(&pair(a, b)) {
            return true;
        }
        match (self.nodes.get(&a), self.nodes.get(&b)) {
            (Some(x), Some(y)) => x
                .networks
                .intersection(&y.networks)
                .any(|&network| network != BACKBONE_NETWORK),
            _ => false,
        }
    }

    fn hostname_of(&self, id: u32) -> Option<String> {
        self.nodes.get(&id).and_then(|node| node.hostname.clone())
    }

    fn claim_hostname(&mut self, id: u32, name: &str) -> Result<(), HostnameError> {
        if !valid_hostname(name) {
            return Err(HostnameError::Invalid(name.to_owned()));
        }
        match self.by_hostname.get(name) {
            Some(&holder) if holder == id => return Ok(()),
            Some(_) => return Err(HostnameError::Taken(name.to_owned())),
            None => {}
        }
        self.release_hostname(id);
        if let Some(node) = self.nodes.get_mut(&id) {
            node.hostname = Some(name.to_owned());
            self.by_hostname.insert(name.to_owned(), id);
        }
        Ok(())
    }

    fn release_hostname(&mut self, id: u32) {
        if let Some(old) = self
            .nodes
            .get_mut(&id)
            .and_then(|node| node.hostname.take())
        {
            self.by_hostname.remove(&old);
        }
    }
}

/// spec §9.3: the IP of the TCP connection with the port of `listen_addr`; empty stays empty.
fn real_addr(listen_addr: &str, peer_ip: IpAddr) -> Result<String, Refusal> {
    if listen_addr.is_empty() {
        return Ok(String::new());
    }
    let port = listen_addr
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse::<u16>().ok())
        .ok_or_else(|| Refusal::InvalidListenAddr(listen_addr.to_owned()))?;
    // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
    Ok(SocketAddr::new(peer_ip.to_canonical(), port).to_string())
}

/// `real_addr` as others may see it: hidden for relay-only nodes (spec §9.3), absent when
/// the node announced no port.
fn visible_real_addr(node: &Node) -> Option<String> {
    (!node.relay_only && !node.real_addr.is_empty()).then(|| node.real_addr.clone())
}

/// A DNS label in lower case: what peers can safely use as a name.
fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HOSTNAME_BYTES
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn pair(a: u32, b: u32) -> (u32, u32) {
    (a.min(b), a.max(b))
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
    use std::net::Ipv4Addr;

    #[test]
    fn real_addr_takes_ip_from_connection_and_port_from_listen_addr() {
        let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(
            real_addr("203.0.113.7:41000", ip).unwrap(),
            "127.0.0.2:41000"
        );
        assert_eq!(real_addr(":4000", ip).unwrap(), "127.0.0.2:4000");
        assert_eq!(real_addr("", ip).unwrap(), "");
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(real_addr("[::1]:5", mapped).unwrap(), "10.0.0.1:5");
        assert!(matches!(
            real_addr("no-port", ip),
            Err(Refusal::InvalidListenAddr(_))
        ));
        assert!(matches!(
            real_addr("1.2.3.4:70000", ip),
            Err(Refusal::InvalidListenAddr(_))
        ));
    }

    #[test]
    fn hostnames_are_lower_case_dns_labels() {
        assert!(valid_hostname("agent-7"));
        assert!(!valid_hostname(""));
        assert!(!valid_hostname("-agent"));
        assert!(!valid_hostname("Agent"));
        assert!(!valid_hostname("a.b"));
        assert!(!valid_hostname(&"a".repeat(64)));
    }
}
