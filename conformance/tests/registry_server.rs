//! The local registry (`conformance::registry_server`) over real loopback TCP: the requests of
//! spec §9 with real signatures, the private-node rules of §6.8/§9.4, and robustness against
//! broken clients. Every server binds 127.0.0.1:0 and stops when its test ends.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use conformance::registry_server::{Config, Policy, RegistryHandle, RegistryServer};
use pilot_core::crypto::Identity;
use pilot_core::registry::{
    challenge, encode_frame, CheckTrust, Deregister, Endpoint, FrameReader, Heartbeat, ListNodes,
    Lookup, LookupOk, PollHandshakes, PublicKey, Register, RegisterOk, ReportTrust, Request,
    RequestHandshake, Resolve, RespondHandshake, Response, RevokeTrust, SetHostname, SetVisibility,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Safety net so a hung server fails the test instead of blocking the run.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
const BAD_SIGNATURE: &str = "signature verification failed";

macro_rules! expect {
    ($response:expr, $variant:path) => {
        match $response {
            $variant(ok) => ok,
            other => panic!("expected {}, got {other:?}", stringify!($variant)),
        }
    };
}

fn key(seed: u8) -> Identity {
    Identity::from_seed(&[seed; 32])
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

async fn start() -> RegistryHandle {
    start_with(Config::default().policy, Config::default().idle_timeout).await
}

async fn start_with(policy: Policy, idle_timeout: Duration) -> RegistryHandle {
    let config = Config {
        listen: SocketAddr::new(loopback(1), 0),
        idle_timeout,
        policy,
        ..Config::default()
    };
    RegistryServer::bind(config).await.unwrap().spawn()
}

/// A registry client speaking raw frames, so tests can also send broken ones.
struct Client {
    stream: TcpStream,
    reader: FrameReader,
}

impl Client {
    async fn connect(registry: &RegistryHandle) -> Client {
        Client::connect_from(loopback(1), registry).await
    }

    /// Connects from a chosen loopback source address, to show which IP the registry sees.
    async fn connect_from(source: IpAddr, registry: &RegistryHandle) -> Client {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(source, 0)).unwrap();
        let stream = socket.connect(registry.local_addr()).await.unwrap();
        Client {
            stream,
            reader: FrameReader::new(),
        }
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next response, or `None` once the registry closed the connection.
    async fn recv(&mut self) -> Option<Response> {
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(body) = self.reader.next_message().unwrap() {
                return Some(Response::decode(&body).unwrap());
            }
            let read = tokio::time::timeout(STEP_TIMEOUT, self.stream.read(&mut chunk))
                .await
                .expect("registry did not answer in time");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.reader.push(&chunk[..n]),
            }
        }
    }

    async fn call(&mut self, request: Request) -> Response {
        self.send_raw(&request.encode().unwrap()).await;
        self.recv()
            .await
            .expect("connection closed instead of an answer")
    }

    async fn register(&mut self, identity: &Identity, listen_addr: &str) -> RegisterOk {
        let request = Register::signed(listen_addr.into(), identity);
        expect!(
            self.call(Request::Register(request)).await,
            Response::RegisterOk
        )
    }

    async fn lookup(&mut self, node: u32) -> LookupOk {
        expect!(
            self.call(Request::Lookup(Lookup { node_id: node })).await,
            Response::LookupOk
        )
    }

    async fn resolve(&mut self, requester: u32, node: u32, key: &Identity) -> Response {
        self.call(Request::Resolve(Resolve::signed(requester, node, key)))
            .await
    }

    async fn set_public(&mut self, node: u32, key: &Identity) {
        let request = SetVisibility::signed(node, true, key);
        assert_eq!(
            self.call(Request::SetVisibility(request)).await,
            Response::SetVisibilityOk
        );
    }

    async fn trusted(&mut self, a: u32, b: u32) -> bool {
        let request = CheckTrust {
            node_id: a,
            peer_id: b,
        };
        expect!(
            self.call(Request::CheckTrust(request)).await,
            Response::CheckTrustOk
        )
        .trusted
    }

    /// Asserts the registry closes the connection (possibly after an error answer).
    async fn expect_closed(&mut self) {
        loop {
            match self.recv().await {
                None => return,
                Some(Response::Error { .. }) => {}
                Some(other) => panic!("expected the connection to close, got {other:?}"),
            }
        }
    }

    /// Asserts the next answer is an error and returns its text.
    async fn expect_error(&mut self) -> String {
        match self.recv().await {
            Some(Response::Error { error }) => error,
            other => panic!("expected an error response, got {other:?}"),
        }
    }
}

fn error_text(response: Response) -> String {
    match response {
        Response::Error { error } => error,
        other => panic!("expected an error response, got {other:?}"),
    }
}

/// The registry still answers a fresh connection.
async fn assert_serving(registry: &RegistryHandle) {
    let mut client = Client::connect(registry).await;
    let error = error_text(client.call(Request::Lookup(Lookup { node_id: 0 })).await);
    assert!(error.contains("not found"), "{error}");
}

// ---- registration and node IDs (spec §9.3) ----

#[tokio::test]
async fn register_assigns_sequential_ids_and_same_key_gets_same_id() {
    let registry = start().await;
    let mut client = Client::connect(&registry).await;

    let first = client.register(&key(1), ":4000").await;
    let second = client.register(&key(2), ":4000").await;
    assert_eq!(second.node_id, first.node_id + 1);
    assert_eq!(first.network_id, 0);
    assert_eq!(first.address, format!("0:0000.0000.{:04X}", first.node_id));
    assert_eq!(first.public_key, Some(PublicKey(key(1).public_key())));
    assert_eq!(first.protocol_version, Some(1));

    let again = client.register(&key(1), ":4001").await;
    assert_eq!(again.node_id, first.node_id);

    let third = client.register(&key(3), "").await;
    assert_eq!(third.node_id, second.node_id + 1);
}

#[tokio::test]
async fn first_node_id_is_configurable() {
    let policy = Policy {
        first_node_id: 1000,
        ..Config::default().policy
    };
    let registry = start_with(policy, Config::default().idle_timeout).await;
    let mut client = Client::connect(&registry).await;
    assert_eq!(client.register(&key(1), "").await.node_id, 1000);
}

#[tokio::test]
async fn known_owner_rebinds_its_node_to_a_new_key() {
    let registry = start().await;
    let mut client = Client::connect(&registry).await;

    let mut old = Register::signed(":4000".into(), &key(1));
    old.owner = Some("alice@example.com".into());
    let old = expect!(
        client.call(Request::Register(old)).await,
        Response::RegisterOk
    );

    let mut new = Register::signed(":4000".into(), &key(2));
    new.owner = Some("alice@example.com".into());
    let new = expect!(
        client.call(Request::Register(new)).await,
        Response::RegisterOk
    );
    assert_eq!(new.node_id, old.node_id);
    assert_eq!(
        client.lookup(old.node_id).await.public_key,
        PublicKey(key(2).public_key())
    );

    // The old key no longer names the node: it registers as a new one.
    let stranger = client.register(&key(1), ":4000").await;
    assert_ne!(stranger.node_id, old.node_id);

    // A registered node cannot take an owner another node holds.
    let mut claim = Register::signed(":4000".into(), &key(1));
    claim.owner = Some("alice@example.com".into());
    client.call(Request::Register(claim)).await;
    let mut recovery = Register::signed(":4000".into(), &key(3));
    recovery.owner = Some("alice@example.com".into());
    let recovered = expect!(
        client.call(Request::Register(recovery)).await,
        Response::RegisterOk
    );
    assert_eq!(recovered.node_id, old.node_id);
}

#[tokio::test]
async fn real_addr_is_connection_ip_with_listen_port() {
    let registry = start().await;
    let mut node = Client::connect_from(loopback(2), &registry).await;
    let me = node.register(&key(1), "203.0.113.7:41000").await;
    assert_eq!(me.observed_addr.as_deref(), Some("127.0.0.2:41000"));

    node.set_public(me.node_id, &key(1)).await;
    let mut other = Client::connect_from(loopback(3), &registry).await;
    let seen = other.lookup(me.node_id).await;
    assert_eq!(seen.real_addr.as_deref(), Some("127.0.0.2:41000"));

    let them = other.register(&key(2), "").await;
    assert_eq!(them.observed_addr, None);
    let resolved = expect!(
        other.resolve(them.node_id, me.node_id, &key(2)).await,
        Response::ResolveOk
    );
    assert_eq!(resolved.real_addr, "127.0.0.2:41000");
    assert_eq!(resolved.public_key, PublicKey(key(1).public_key()));
}

#[tokio::test]
async fn empty_listen_addr_gives_empty_real_addr() {
    let registry = start().await;
    let mut client = Client::connect(&registry).await;
    let me = client.register(&key(1), "").await;
    let resolved = expect!(
        client.resolve(me.node_id, me.node_id, &key(1)).await,
        Response::ResolveOk
    );
    assert_eq!(resolved.real_addr, "");
}

#[tokio::test]
async fn listen_addr_without_port_is_refused() {
    let registry = start().await;
    let mut client = Client::connect(&registry).await;
    let request = Register::signed("no-port-here".into(), &key(1));
    let error = error_text(client.call(Request::Register(request)).await);
    assert!(error.contains("listen_addr"), "{error}");
}

#[tokio::test]
async fn unsigned_register_accepted_by_default_refused_when_required() {
    let mut unsigned = Register::signed(":4000".into(), &key(1));
    unsigned.signature = None;

    let lenient = start().await;
    let mut client = Client::connect(&lenient).await;
    expect!(
        client.call(Request::Register(unsigned.clone())).await,
        Response::RegisterOk
    );

    let policy = Policy {
        require_register_signature: true,
        ..Config::default().policy
    };
    let strict = start_with(policy, Config::default().idle_timeout).await;
    let mut client = Client::connect(&strict).await;
    let error = error_text(client.call(Request::Register(unsigned)).await);
    assert!(error.contains("not signed"), "{error}");
    client.register(&key(1), ":4000").await;
}

#[tokio::test]
async fn hostnames_are_unique() {
    let registry = start().await;
    let mut client = Client::connect(&registry).await;

    let mut first = Register::signed(":4000".into(), &key(1));
    first.hostname = Some("agent".into());
    let first = expect!(
        client.call(Request::Register(first)).await,
        Response::RegisterOk
    );
    assert_eq!(first.hostname.as_deref(), Some("agent"));
    assert_eq!(first.hostname_error, None);

    let mut second = Register::signed(":4000".into(), &key(2));
    second.hostname = Some("agent".into());
    let second = expect!(
        client.call(Request::Register(second)).await,
        Response::RegisterOk
    );
    assert_eq!(second.hostname, None);
    assert!(second.hostname_error.unwrap().contains("taken"));

    let rename = SetHostname::signed(second.node_id, "agent".into(), &key(2));
    let error = error_text(client.call(Request::SetHostname(rename)).await);
    assert!(error.contains("taken"), "{error}");

    let rename = SetHostname::signed(second.node_id, "worker".into(), &key(2));
    expect!(
        client.call(Request::SetHostname(rename)).await,
        Response::SetHostnameOk
    );
    let listed = expect!(
        client
            .call(Request::ListNodes(ListNodes { network_id: 0 }))
            .await,
        Response::ListNodesOk
    );
    let names: Vec<_> = listed
        .nodes
        .iter()
        .map(|n| (n.node_id, n.hostname.as_deref()))
        .collect();
    assert_eq!(
        names,
        [
            (first.node_id, Some("agent")),
            (second.node_id, Some("worker"))
        ]
    );
}

// ---- lookup, visibility and relay-only (spec §9.4, §6.8) ----

#[tokio::test]
async fn lookup_of_private_node_hides_addresses() {
    let registry = start().await;
    let mut client = Client::connect(&registry).await;
    let mut request = Register::signed(":4000".into(), &key(1));
    request.endpoints = vec![Endpoint {
        network: "tcp".into(),
        addr: "127.0.0.1:4100".into(),
    }];
    let me = expect!(
        client.call(Request::Register(request)).await,
        Response::RegisterOk
    );

    let private = client.lookup(me.node_id).await;
    assert!(!private.public);
    assert_eq!(private.networks, [0]);
    assert_eq!(private.public_key, PublicKey(key(1).public_key()));
    assert_eq!(private.real_addr, None);
    assert!(private.endpoints.is_empty());

    client.set_public(me.node_id, &key(1)).await;
    let public = client.lookup(me.node_id).await;
    assert!(public.public);
    assert_eq!(public.real_addr.as_deref(), Some("127.0.0.1:4000"));
    assert_eq!(public.endpoints.len(), 1);
}

#[tokio::test]
async fn relay_only_hides_real_addr_from_lookup_and_resolve() {
    let registry = start().await;
    let mut client = Client::connect(&registry).await;
    let mut request = Register::signed(":4000".into(), &key(1));
    request.relay_only = true;
    request.endpoints = vec![Endpoint {
        network: "tcp".into(),
        addr: "127.0.0.1:4100".into(),
    }];
    let hidden = expect!(
        client.call(Request::Register(request)).await,
        Response::RegisterOk
    );
    client.set_public(hidden.node_id, &key(1)).await;

    let seen = client.lookup(hidden.node_id).await;
    assert!(seen.relay_only);
    assert_eq!(seen.real_addr, None);
    assert_eq!(seen.endpoints.len(), 1);

    let asker = client.register(&key(2), ":5000").await;
    let resolved = expect!(
        client.resolve(asker.node_id, hidden.node_id, &key(2)).await,
        Response::ResolveOk
    );
    assert_eq!(resolved.real_addr, "");
    assert_eq!(resolved.endpoints.len(), 1);
}

#[tokio::test]
async fn unknown_node_lookup_and_resolve_say_not_found() {
    let registry = start().await;
    let mut client = Client::connect(&registry).await;
    let me = client.register(&key(1), ":4000").await;
    let error = error_text(client.call(Request::Lookup(Lookup { node_id: 999 })).await);
    assert!(error.contains("node not found"), "{error}");
    let error = error_text(client.resolve(me.node_id, 999, &key(1)).await);
    assert!(error.contains("node not found"), "{error}");
    let error = error_text(client.resolve(999, me.node_id, &key(1)).await);
    assert!(error.contains("node not found"), "{error}");
}

// ---- heartbeat (spec §9.5) ----

#[tokio::test]
async fn heartbeat_answers_time_and_refreshes_real_addr() {
    let registry = start().await;
    let mut first = Client::connect_from(loopback(2), &registry).await;
    let me = first.register(&key(1), ":4000").await;

    let beat = Heartbeat::signed(me.node_id, None, &key(1));
    let ok = expect!(
        first.call(Request::Heartbeat(beat)).await,
        Response::HeartbeatOk
    );
    assert!(ok.time.unwrap() > 0);

    let mut moved = Client::connect_from(loopback(3), &registry).await;
    let beat = Heartbeat::signed(me.node_id, Some("198.51.100.1:5000".into()), &key(1));
    expect!(
        moved.call(Request::Heartbeat(beat)).await,
        Response::HeartbeatOk
    );
    let resolved = expect!(
        moved.resolve(me.node_id, me.node_id, &key(1)).await,
        Response::ResolveOk
    );
    assert_eq!(resolved.real_addr, "127.0.0.3:5000");
}

#[tokio::test]
async fn heartbeat_of_unknown_node_says_not_found() {
    let registry = start().await;
    let mut client = Client::connect(&registry).await;
    let beat = Heartbeat::signed(77, None, &key(1));
    let error = error_text(client.call(Request::Heartbeat(beat)).await);
    assert!(error.contains("node not found"), "{error}");
}

#[tokio::test]
async fn deregister_removes_the_node_and_its_id_is_not_reused() {
    let registry = start().await;
    let mut client = Client::connect(&registry).await;
    let me = client.register(&key(1), ":4000").await;
    assert_eq!(
        client
            .call(Request::Deregister(Deregister::signed(me.node_id, &key(1))))
            .await,
        Response::DeregisterOk
    );
    let error = error_text(
        client
            .call(Request::Lookup(Lookup {
                node_id: me.node_id,
            }))
            .await,
    );
    assert!(error.contains("node not found"), "{error}");
    let again = client.register(&key(1), ":4000").await;
    assert!(again.node_id > me.node_id);
}

// ---- trust: resolve rule, relayed handshake, report/revoke (spec §6.8, §9.4, §9.6) ----

#[tokio::test]
async fn private_resolve_denied_until_relayed_handshake_accepted() {
    let registry = start().await;
    let (alice, bob) = (key(1), key(2));
    let mut a = Client::connect_from(loopback(2), &registry).await;
    let mut b = Client::connect_from(loopback(3), &registry).await;
    let a_id = a.register(&alice, ":4000").await.node_id;
    let b_id = b.register(&bob, ":5000").await.node_id;

    let error = error_text(a.resolve(a_id, b_id, &alice).await);
    assert!(error.contains("resolve denied"), "{error}");
    assert!(!a.trusted(a_id, b_id).await);

    let ask = RequestHandshake::signed(a_id, b_id, "let me in".into(), &alice);
    assert_eq!(
        a.call(Request::RequestHandshake(ask)).await,
        Response::RequestHandshakeOk
    );

    let inbox = expect!(
        b.call(Request::PollHandshakes(PollHandshakes::signed(b_id, &bob)))
            .await,
        Response::PollHandshakesOk
    );
    assert_eq!(inbox.requests.len(), 1);
    assert_eq!(inbox.requests[0].from_node_id, a_id);
    assert_eq!(
        inbox.requests[0].public_key,
        Some(PublicKey(alice.public_key()))
    );
    assert_eq!(inbox.requests[0].justification, "let me in");
    // Still untrusted until answered.
    assert!(error_text(a.resolve(a_id, b_id, &alice).await).contains("resolve denied"));

    let accept = RespondHandshake::signed(b_id, a_id, true, &bob);
    assert_eq!(
        b.call(Request::RespondHandshake(accept)).await,
        Response::RespondHandshakeOk
    );

    let resolved = expect!(a.resolve(a_id, b_id, &alice).await, Response::ResolveOk);
    assert_eq!(resolved.real_addr, "127.0.0.3:5000");
    let resolved = expect!(b.resolve(b_id, a_id, &bob).await, Response::ResolveOk);
    assert_eq!(resolved.real_addr, "127.0.0.2:4000");
    assert!(a.trusted(a_id, b_id).await);
    assert!(b.trusted(b_id, a_id).await);

    let answers = expect!(
        a.call(Request::PollHandshakes(PollHandshakes::signed(
            a_id, &alice
        )))
        .await,
        Response::PollHandshakesOk
    );
    assert!(answers.requests.is_empty());
    assert_eq!(answers.responses.len(), 1);
    assert_eq!(answers.responses[0].from_node_id, b_id);
    assert!(answers.responses[0].accept);

    // The inbox was drained: a second poll is empty.
    let empty = expect!(
        b.call(Request::PollHandshakes(PollHandshakes::signed(b_id, &bob)))
            .await,
        Response::PollHandshakesOk
    );
    assert!(empty.requests.is_empty() && empty.responses.is_empty());
}

#[tokio::test]
async fn rejected_or_unrequested_handshake_creates_no_trust() {
    let registry = start().await;
    let (alice, bob) = (key(1), key(2));
    let mut client = Client::connect(&registry).await;
    let a_id = client.register(&alice, ":4000").await.node_id;
    let b_id = client.register(&bob, ":5000").await.node_id;

    // Bob cannot "accept" a request Alice never made.
    let accept = RespondHandshake::signed(b_id, a_id, true, &bob);
    let error = error_text(client.call(Request::RespondHandshake(accept)).await);
    assert!(error.contains("no pending handshake"), "{error}");
    assert!(!client.trusted(a_id, b_id).await);

    let ask = RequestHandshake::signed(a_id, b_id, String::new(), &alice);
    client.call(Request::RequestHandshake(ask)).await;
    let reject = RespondHandshake::signed(b_id, a_id, false, &bob);
    assert_eq!(
        client.call(Request::RespondHandshake(reject)).await,
        Response::RespondHandshakeOk
    );
    assert!(!client.trusted(a_id, b_id).await);
    let answers = expect!(
        client
            .call(Request::PollHandshakes(PollHandshakes::signed(
                a_id, &alice
            )))
            .await,
        Response::PollHandshakesOk
    );
    assert_eq!(answers.responses.len(), 1);
    assert!(!answers.responses[0].accept);
}

#[tokio::test]
async fn report_trust_allows_resolve_and_revoke_removes_it() {
    let registry = start().await;
    let (alice, bob) = (key(1), key(2));
    let mut client = Client::connect(&registry).await;
    let a_id = client.register(&alice, ":4000").await.node_id;
    let b_id = client.register(&bob, ":5000").await.node_id;

    let report = ReportTrust::signed(b_id, a_id, &bob);
    assert_eq!(
        client.call(Request::ReportTrust(report)).await,
        Response::ReportTrustOk
    );
    assert!(client.trusted(a_id, b_id).await);
    expect!(
        client.resolve(a_id, b_id, &alice).await,
        Response::ResolveOk
    );

    let revoke = RevokeTrust::signed(b_id, a_id, &bob);
    assert_eq!(
        client.call(Request::RevokeTrust(revoke)).await,
        Response::RevokeTrustOk
    );
    assert!(!client.trusted(a_id, b_id).await);
    assert!(error_text(client.resolve(a_id, b_id, &alice).await).contains("resolve denied"));
}

#[tokio::test]
async fn bad_signatures_are_refused_for_every_signed_request() {
    let registry = start().await;
    let (victim, peer, forger) = (key(1), key(2), key(9));
    let mut client = Client::connect(&registry).await;
    let v = client.register(&victim, ":4000").await.node_id;
    let p = client.register(&peer, ":5000").await.node_id;
    // A pending request from the peer, so respond_handshake fails on the signature alone.
    let ask = RequestHandshake::signed(p, v, String::new(), &peer);
    client.call(Request::RequestHandshake(ask)).await;

    let mut moved_register = Register::signed(":4000".into(), &victim);
    moved_register.listen_addr = ":4001".into();
    let mut foreign_register = Register::signed(":4000".into(), &victim);
    foreign_register.signature = Some(challenge::sign(
        &forger,
        &challenge::register(":4000", &PublicKey(victim.public_key())),
    ));

    let forged = [
        Request::Register(moved_register),
        Request::Register(foreign_register),
        Request::Resolve(Resolve::signed(v, p, &forger)),
        Request::Heartbeat(Heartbeat::signed(v, None, &forger)),
        Request::Heartbeat(Heartbeat::signed(v, Some(":1".into()), &forger)),
        Request::Deregister(Deregister::signed(v, &forger)),
        Request::SetHostname(SetHostname::signed(v, "stolen".into(), &forger)),
        Request::SetVisibility(SetVisibility::signed(v, true, &forger)),
        Request::ReportTrust(ReportTrust::signed(v, p, &forger)),
        Request::RevokeTrust(RevokeTrust::signed(v, p, &forger)),
        Request::RequestHandshake(RequestHandshake::signed(v, p, String::new(), &forger)),
        Request::PollHandshakes(PollHandshakes::signed(v, &forger)),
        Request::RespondHandshake(RespondHandshake::signed(v, p, true, &forger)),
    ];
    for request in forged {
        let kind = request.type_name();
        let error = error_text(client.call(request).await);
        assert!(error.contains(BAD_SIGNATURE), "{kind}: {error}");
    }

    // Nothing changed: still registered, private, unnamed, untrusted, request still pending.
    let seen = client.lookup(v).await;
    assert!(!seen.public);
    assert_eq!(seen.hostname, None);
    assert_eq!(seen.public_key, PublicKey(victim.public_key()));
    assert!(!client.trusted(v, p).await);
    let inbox = expect!(
        client
            .call(Request::PollHandshakes(PollHandshakes::signed(v, &victim)))
            .await,
        Response::PollHandshakesOk
    );
    assert_eq!(inbox.requests.len(), 1);
}

// ---- robustness (spec §9.1) ----

#[tokio::test]
async fn truncated_frame_then_disconnect_leaves_server_serving() {
    let registry = start().await;
    let mut client = Client::connect(&registry).await;
    let mut frame = Request::Lookup(Lookup { node_id: 1 }).encode().unwrap();
    frame.truncate(frame.len() - 3);
    client.send_raw(&frame).await;
    drop(client);
    assert_serving(&registry).await;
}

#[tokio::test]
async fn oversized_length_prefix_gets_an_error_then_close() {
    let registry = start().await;
    let mut client = Client::connect(&registry).await;
    client.send_raw(&u32::MAX.to_be_bytes()).await;
    let error = client.expect_error().await;
    assert!(error.contains("exceeds"), "{error}");
    client.expect_closed().await;

    // Just over the 4 MiB limit is refused too.
    let mut client = Client::connect(&registry).await;
    client
        .send_raw(&(4 * 1024 * 1024 + 1u32).to_be_bytes())
        .await;
    client.expect_closed().await;
    assert_serving(&registry).await;
}

#[tokio::test]
async fn malformed_bodies_get_errors_and_the_connection_stays_usable() {
    let registry = start().await;
    let mut client = Client::connect(&registry).await;
    let bodies: [(&[u8], &str); 7] = [
        (b"{not json", "malformed"),
        (b"", "malformed"),
        (b"[1,2]", "not a JSON object"),
        (br#"{"node_id":1}"#, "no \"type\""),
        (br#"{"type":"teleport"}"#, "unknown"),
        (br#"{"type":"lookup","node_id":"one"}"#, "invalid"),
        (&[0xff, 0xfe, b'{', b'}'], "malformed"),
    ];
    for (body, expected) in bodies {
        client.send_raw(&encode_frame(body).unwrap()).await;
        let error = client.expect_error().await;
        assert!(
            error.contains(expected),
            "{:?}: {error}",
            String::from_utf8_lossy(body)
        );
    }
    let me = client.register(&key(1), ":4000").await;
    assert_eq!(client.lookup(me.node_id).await.node_id, me.node_id);
}

#[tokio::test]
async fn pipelined_and_byte_by_byte_requests_are_answered_in_order() {
    let registry = start().await;
    let mut client = Client::connect(&registry).await;
    let a = client.register(&key(1), ":4000").await.node_id;
    let b = client.register(&key(2), ":4000").await.node_id;

    let mut both = Request::Lookup(Lookup { node_id: b }).encode().unwrap();
    both.extend(Request::Lookup(Lookup { node_id: a }).encode().unwrap());
    client.send_raw(&both).await;
    assert_eq!(
        expect!(client.recv().await.unwrap(), Response::LookupOk).node_id,
        b
    );
    assert_eq!(
        expect!(client.recv().await.unwrap(), Response::LookupOk).node_id,
        a
    );

    for byte in Request::Lookup(Lookup { node_id: a }).encode().unwrap() {
        client.send_raw(&[byte]).await;
    }
    assert_eq!(
        expect!(client.recv().await.unwrap(), Response::LookupOk).node_id,
        a
    );
}

#[tokio::test]
async fn idle_connection_is_closed() {
    let registry = start_with(Config::default().policy, Duration::from_millis(200)).await;
    let mut client = Client::connect(&registry).await;
    client.expect_closed().await;
    assert_serving(&registry).await;
}

#[tokio::test]
async fn thousand_registrations_then_lookup() {
    const NODES: u16 = 1000;
    const CONNECTIONS: u16 = 10;
    let registry = start().await;

    let mut tasks = Vec::new();
    for conn in 0..CONNECTIONS {
        let mut client = Client::connect(&registry).await;
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in (conn..NODES).step_by(CONNECTIONS.into()) {
                // Unsigned (accepted by default) with arbitrary key bytes: this test is about
                // the registry's bookkeeping at scale, not about signatures.
                let mut public_key = [0xA5; 32];
                public_key[..2].copy_from_slice(&i.to_be_bytes());
                let mut request = Register::signed(":4000".into(), &key(1));
                request.public_key = PublicKey(public_key);
                request.signature = None;
                let ok = expect!(
                    client.call(Request::Register(request)).await,
                    Response::RegisterOk
                );
                ids.push(ok.node_id);
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await.unwrap());
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), usize::from(NODES));

    let mut client = Client::connect(&registry).await;
    let last = *ids.last().unwrap();
    assert_eq!(client.lookup(last).await.node_id, last);
    let listed = expect!(
        client
            .call(Request::ListNodes(ListNodes { network_id: 0 }))
            .await,
        Response::ListNodesOk
    );
    assert_eq!(listed.nodes.len(), usize::from(NODES));
}

#[tokio::test]
async fn many_concurrent_connections_are_all_served() {
    const CLIENTS: u8 = 200;
    let registry = start().await;

    // Open every connection before any request, so all are live at once.
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(Client::connect(&registry).await);
    }
    let tasks: Vec<_> = clients
        .into_iter()
        .zip(0..CLIENTS)
        .map(|(mut client, seed)| {
            tokio::spawn(async move {
                let identity = key(seed);
                let id = client.register(&identity, ":4000").await.node_id;
                assert_eq!(client.lookup(id).await.node_id, id);
                id
            })
        })
        .collect();
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap());
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), usize::from(CLIENTS));
    assert_serving(&registry).await;
}

// ---- the binary ----

const BINARY: &str = env!("CARGO_BIN_EXE_pilot-registry");

#[test]
fn help_says_local_only_and_lists_flags() {
    let output = std::process::Command::new(BINARY)
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(help.contains("NOT a production registry"), "{help}");
    for flag in [
        "--listen",
        "--idle-timeout-secs",
        "--require-register-signature",
        "PILOT_REGISTRY_LISTEN",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[tokio::test]
async fn binary_prints_its_address_serves_and_stops_on_sigterm() {
    use std::io::BufRead as _;
    use std::process::{Command, Stdio};

    let mut child = Command::new(BINARY)
        .env("PILOT_REGISTRY_LISTEN", "127.0.0.1:0")
        .env("PILOT_REGISTRY_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill the child even if an assertion below fails.
    struct Reaper(std::process::Child);
    impl Drop for Reaper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let mut child = Reaper(child);

    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map(|_| line)
    });
    let line = tokio::time::timeout(STEP_TIMEOUT, line)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("pilot-registry listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap();

    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&Request::Lookup(Lookup { node_id: 1 }).encode().unwrap())
        .await
        .unwrap();
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await.unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut body).await.unwrap();
    assert!(Response::decode(&body)
        .unwrap()
        .error_text()
        .unwrap()
        .contains("not found"));

    let pid = child.0.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::task::spawn_blocking(move || {
        let status = child.0.wait();
        (child, status)
    });
    let (_child, status) = tokio::time::timeout(STEP_TIMEOUT, status)
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.unwrap().success(),
        "SIGTERM should end the registry cleanly"
    );
}

#[tokio::test]
async fn shutdown_closes_open_connections() {
    let registry = start().await;
    let mut client = Client::connect(&registry).await;
    client.register(&key(1), ":4000").await;
    registry.shutdown().await.unwrap();
    client.expect_closed().await;
}
