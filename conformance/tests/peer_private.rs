//! Two PRIVATE in-process `pilot-peer` drivers and the in-process registry, all on 127.0.0.1:
//! trust handshakes (relayed through the registry and direct over port 444, both ways), then
//! every service between the trusted pair — over UDP, and again over TCP (spec §7.5).
//!
//! Run with `--nocapture` to see the transcript.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use conformance::peer::{
    control_call, serve_control, ControlRequest, Peer, PeerConfig, PeerError, Transport, TrustPath,
};
use conformance::registry_server::{Config, RegistryHandle, RegistryServer};
use pilot_core::services::dataexchange::FrameType;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Upper bound for each step, so a broken exchange fails the test instead of hanging it.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Inbox polling in tests: fast enough that a relayed request shows up at once.
const TEST_TRUST_POLL: Duration = Duration::from_millis(200);
/// An application port for datagrams and streams.
const APP_PORT: u16 = 4000;
/// The bulk transfer size the Worker e2e needs.
const BULK_BYTES: usize = 1024 * 1024;

async fn start_registry() -> RegistryHandle {
    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    RegistryServer::bind(config).await.unwrap().spawn()
}

fn identity_path(test: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pilot-peer-test-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.json"));
    let _ = std::fs::remove_file(&path);
    path
}

fn private_config(registry: &RegistryHandle, test: &str, name: &str) -> PeerConfig {
    let mut config = PeerConfig::new(registry.local_addr(), identity_path(test, name));
    config.trust_poll_interval = TEST_TRUST_POLL;
    config
}

async fn start_private(registry: &RegistryHandle, test: &str, name: &str) -> Peer {
    Peer::start(private_config(registry, test, name))
        .await
        .unwrap()
}

async fn step<T>(what: &str, op: impl Future<Output = Result<T, PeerError>>) -> T {
    match tokio::time::timeout(STEP_TIMEOUT, op).await {
        Ok(Ok(value)) => value,
        Ok(Err(err)) => panic!("{what}: {err}"),
        Err(_) => panic!("{what}: no answer within {STEP_TIMEOUT:?}"),
    }
}

/// Waits (bounded) until `peer` holds a pending request from `from`; returns its path.
async fn await_pending(peer: &Peer, from: &Peer) -> (TrustPath, String) {
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        let pending = step("pending", peer.pending_handshakes()).await;
        if let Some(p) = pending.iter().find(|p| p.node == from.addr().node) {
            assert_eq!(p.address, from.addr());
            return (p.path, p.justification.clone());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no request from {} reached {}",
            from.addr(),
            peer.addr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `requester` asks `approver` and the approver approves; both end up trusting each other.
async fn trust(requester: &Peer, r: &str, approver: &Peer, a: &str, expect: TrustPath) {
    let justification = format!("{r} would like to talk to {a}");
    let path = step(
        "request_trust",
        requester.request_trust(approver.addr(), &justification),
    )
    .await;
    eprintln!("{r} asks {a} for trust: sent {path:?}");
    assert_eq!(path, expect);
    let (arrived, text) = await_pending(approver, requester).await;
    eprintln!("{a} sees a pending request from {r} ({arrived:?}): {text:?}");
    assert_eq!(arrived, expect);
    assert_eq!(text, justification);
    step("approve", approver.approve(requester.addr().node)).await;
    step(
        "approver trusts",
        approver.wait_trusted(requester.addr().node, STEP_TIMEOUT),
    )
    .await;
    step(
        "requester trusts",
        requester.wait_trusted(approver.addr().node, STEP_TIMEOUT),
    )
    .await;
    assert!(step("trusted", requester.trusted())
        .await
        .contains(&approver.addr().node));
    assert!(step("trusted", approver.trusted())
        .await
        .contains(&requester.addr().node));
    assert!(step("pending", approver.pending_handshakes())
        .await
        .is_empty());
    eprintln!("{a} approved: {r} and {a} trust each other");
}

#[tokio::test]
async fn private_peers_become_trusted_through_the_registry_both_ways() {
    let registry = start_registry().await;
    let a = start_private(&registry, "relayed", "a").await;
    let b = start_private(&registry, "relayed", "b").await;
    eprintln!("A = {} (private), B = {} (private)", a.addr(), b.addr());

    // Strangers: the registry will not resolve a private node for us.
    match tokio::time::timeout(STEP_TIMEOUT, a.ping(b.addr())).await {
        Ok(Err(PeerError::RegistryRefused(why))) => eprintln!("A ping B before trust: {why}"),
        other => panic!("a private stranger must not resolve: {other:?}"),
    }

    trust(&a, "A", &b, "B", TrustPath::Relayed).await;
    let rtt = step("ping after trust", a.ping(b.addr())).await;
    eprintln!("A ping B after trust: {rtt:?}");
    step("ping back", b.ping(a.addr())).await;

    // The other direction, with a refusal first.
    let c = start_private(&registry, "relayed", "c").await;
    let d = start_private(&registry, "relayed", "d").await;
    eprintln!("C = {}, D = {}", c.addr(), d.addr());
    let path = step("request", c.request_trust(d.addr(), "let me in")).await;
    assert_eq!(path, TrustPath::Relayed);
    await_pending(&d, &c).await;
    step("reject", d.reject(c.addr().node, "not today")).await;
    match c.wait_trusted(d.addr().node, STEP_TIMEOUT).await {
        Err(PeerError::TrustRejected { node, .. }) => {
            assert_eq!(node, d.addr().node);
            eprintln!("D declined C's request; C was told");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A caller that starts waiting after the answer came still learns of it.
    assert!(matches!(
        c.wait_trusted(d.addr().node, STEP_TIMEOUT).await,
        Err(PeerError::TrustRejected { .. })
    ));
    assert!(!step("trusted", c.trusted()).await.contains(&d.addr().node));
    trust(&d, "D", &c, "C", TrustPath::Relayed).await;

    for peer in [a, b, c, d] {
        peer.shutdown().await.unwrap();
    }
    registry.shutdown().await.unwrap();
}

#[tokio::test]
async fn private_peers_become_trusted_directly_over_port_444_both_ways() {
    let registry = start_registry().await;
    let a = start_private(&registry, "direct", "a").await;
    let b = start_private(&registry, "direct", "b").await;
    eprintln!(
        "A = {} on {}, B = {} on {}",
        a.addr(),
        a.udp_addr(),
        b.addr(),
        b.udp_addr()
    );

    // Out of band, A knows where B listens; B learns A's path from A's frames.
    step("address", a.add_peer_address(b.addr().node, b.udp_addr())).await;
    trust(&a, "A", &b, "B", TrustPath::Direct).await;
    step("echo", a.exchange(b.addr(), 7, b"direct".to_vec())).await;
    step("echo back", b.exchange(a.addr(), 7, b"and back".to_vec())).await;

    let c = start_private(&registry, "direct", "c").await;
    let d = start_private(&registry, "direct", "d").await;
    step("address", d.add_peer_address(c.addr().node, c.udp_addr())).await;
    trust(&d, "D", &c, "C", TrustPath::Direct).await;
    step("ping", c.ping(d.addr())).await;

    for peer in [a, b, c, d] {
        peer.shutdown().await.unwrap();
    }
    registry.shutdown().await.unwrap();
}

#[tokio::test]
async fn auto_approving_peer_trusts_a_requester_without_a_decision() {
    let registry = start_registry().await;
    let a = start_private(&registry, "auto", "a").await;
    let mut config = private_config(&registry, "auto", "b");
    config.auto_approve = true;
    let b = Peer::start(config).await.unwrap();
    let path = step("request", a.request_trust(b.addr(), "demo")).await;
    assert_eq!(path, TrustPath::Relayed);
    step("a trusts", a.wait_trusted(b.addr().node, STEP_TIMEOUT)).await;
    step("b trusts", b.wait_trusted(a.addr().node, STEP_TIMEOUT)).await;
    assert!(step("pending", b.pending_handshakes()).await.is_empty());
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    registry.shutdown().await.unwrap();
}

#[tokio::test]
async fn control_socket_lists_and_approves_a_pending_request() {
    let registry = start_registry().await;
    let a = start_private(&registry, "control", "a").await;
    let b = std::sync::Arc::new(start_private(&registry, "control", "b").await);
    let socket = identity_path("control", "b.sock");
    let server = serve_control(&socket, std::sync::Arc::clone(&b))
        .await
        .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "only the owner may act on the trust store"
        );
    }

    step("request", a.request_trust(b.addr(), "via the CLI")).await;
    await_pending(&b, &a).await;
    let pending = control_call(&socket, &ControlRequest::Pending)
        .await
        .unwrap();
    eprintln!("control pending -> {pending}");
    let listed = pending["pending"].as_array().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["node"], a.addr().node);
    assert_eq!(listed[0]["path"], "relayed");

    let wrong = control_call(&socket, &ControlRequest::Approve { node: 999 }).await;
    assert!(wrong.is_err(), "approving a node that never asked fails");
    control_call(
        &socket,
        &ControlRequest::Approve {
            node: a.addr().node,
        },
    )
    .await
    .unwrap();
    step("a trusts", a.wait_trusted(b.addr().node, STEP_TIMEOUT)).await;
    let trusted = control_call(&socket, &ControlRequest::Trusted)
        .await
        .unwrap();
    eprintln!("control trusted -> {trusted}");
    assert_eq!(trusted["trusted"], serde_json::json!([a.addr().node]));

    drop(server);
    assert!(!socket.exists(), "the socket file goes with the server");
    a.shutdown().await.unwrap();
    // The server's tasks may still hold the handle for a moment: stop through the Arc.
    b.stop().await.unwrap();
    assert!(matches!(b.trusted().await, Err(PeerError::Stopped)));
    registry.shutdown().await.unwrap();
}

/// Everything the Worker e2e exercises, between two peers that trust each other.
async fn exercise(a: &Peer, b: &Peer) {
    for (from, f, to, t) in [(a, "A", b, "B"), (b, "B", a, "A")] {
        let rtt = step("ping", from.ping(to.addr())).await;
        eprintln!("{f} ping {t}: pong in {rtt:?}");

        let echoed = step("echo", from.exchange(to.addr(), 7, b"echo me".to_vec())).await;
        eprintln!(
            "{f} -> {t}:7 \"echo me\" -> {:?}",
            String::from_utf8_lossy(&echoed)
        );
        assert_eq!(echoed, b"echo me");

        for (frame_type, body) in [
            (FrameType::Text, b"hello".to_vec()),
            (FrameType::Json, br#"{"n":1}"#.to_vec()),
        ] {
            let reply = step(
                "send_message",
                from.send_message(to.addr(), frame_type, body.clone()),
            )
            .await;
            let got = step("next_message", to.next_message(STEP_TIMEOUT)).await;
            eprintln!(
                "{f} -> {t}:1001 {frame_type} {:?} -> {}; {t} received {} from {}",
                String::from_utf8_lossy(&body),
                conformance::peer::ack_line(&reply),
                got.frame_type,
                got.from
            );
            assert_eq!(got.from, from.addr());
            assert_eq!(got.frame_type, frame_type);
            assert_eq!(got.payload, body);
            assert_eq!(got.filename, None);
        }
        let file = vec![0xa5; 5000];
        step(
            "send_file",
            from.send_file(to.addr(), "report.bin".into(), file.clone()),
        )
        .await;
        let got = step("next_message file", to.next_message(STEP_TIMEOUT)).await;
        eprintln!(
            "{f} -> {t}:1001 FILE report.bin ({} bytes) received",
            got.payload.len()
        );
        assert_eq!(got.frame_type, FrameType::File);
        assert_eq!(got.filename.as_deref(), Some("report.bin"));
        assert_eq!(got.payload, file);

        let mut subscription = step("subscribe", to.subscribe(from.addr(), b"news".to_vec())).await;
        // The broker forwards only events published after it has read the subscription:
        // publish until one arrives (bounded).
        let mut event = None;
        for attempt in 0..20u32 {
            let payload = format!("event {attempt}").into_bytes();
            step(
                "publish",
                to.publish(from.addr(), b"news".to_vec(), payload),
            )
            .await;
            if let Ok(Some(got)) =
                tokio::time::timeout(Duration::from_millis(500), subscription.next()).await
            {
                event = Some(got);
                break;
            }
        }
        let (topic, payload) = event.expect("no event reached the subscriber");
        eprintln!(
            "{t} subscribed at {f}'s broker and received {} {:?}",
            String::from_utf8_lossy(&topic),
            String::from_utf8_lossy(&payload)
        );
        assert_eq!(topic, b"news");

        step("listen_datagrams", to.listen_datagrams(APP_PORT)).await;
        let datagram = format!("datagram from {f}").into_bytes();
        let got = {
            // Datagrams are unreliable: resend (bounded) until one arrives.
            let mut got = None;
            for _ in 0..20 {
                step(
                    "send_datagram",
                    from.send_datagram(to.addr(), APP_PORT, datagram.clone()),
                )
                .await;
                if let Ok(d) = to.next_datagram(APP_PORT, Duration::from_millis(500)).await {
                    got = Some(d);
                    break;
                }
            }
            got.expect("no datagram arrived")
        };
        eprintln!(
            "{f} -> {t}:{APP_PORT} datagram {:?} from port {}",
            String::from_utf8_lossy(&got.payload),
            got.src_port
        );
        assert_eq!(got.from, from.addr());
        assert_eq!(got.payload, datagram);
    }

    // App streams: A dials B, sends 1 MiB and closes; B hashes it and answers with the hash.
    step("listen", b.listen(APP_PORT)).await;
    let bulk: Vec<u8> = (0..BULK_BYTES).map(|i| (i % 251) as u8).collect();
    let digest = Sha256::digest(&bulk);
    let sender = async {
        let mut stream = a.dial(b.addr(), APP_PORT).await?;
        stream.write_all(&bulk).await?;
        // Half-close by convention: the receiver reads up to a 32-byte answer.
        let answer = stream.read_to_end(64, STEP_TIMEOUT).await;
        stream.close().await?;
        answer
    };
    let receiver = async {
        let mut stream = b.accept(APP_PORT, STEP_TIMEOUT).await?;
        let mut received = Vec::new();
        while received.len() < BULK_BYTES {
            match stream.read(STEP_TIMEOUT).await? {
                Some(chunk) => received.extend_from_slice(&chunk),
                None => break,
            }
        }
        let hash = Sha256::digest(&received);
        stream.write_all(&hash).await?;
        stream.close().await?;
        Ok::<_, PeerError>((received.len(), hash))
    };
    let started = std::time::Instant::now();
    let (answer, received) = tokio::join!(
        tokio::time::timeout(STEP_TIMEOUT * 4, sender),
        tokio::time::timeout(STEP_TIMEOUT * 4, receiver)
    );
    let answer = answer.expect("sender timed out").expect("sender failed");
    let (len, hash) = received
        .expect("receiver timed out")
        .expect("receiver failed");
    eprintln!(
        "A -> B:{APP_PORT} stream: {len} bytes, sha256 {} (in {:?}); B answered with the hash",
        hex::encode(hash),
        started.elapsed()
    );
    assert_eq!(len, BULK_BYTES);
    assert_eq!(hash, digest);
    assert_eq!(answer, digest.to_vec());

    // And the other way: B dials A, a short exchange.
    step("listen", a.listen(APP_PORT)).await;
    let mut out = step("dial", b.dial(a.addr(), APP_PORT)).await;
    let mut inbound = step("accept", a.accept(APP_PORT, STEP_TIMEOUT)).await;
    assert_eq!(inbound.peer(), b.addr());
    step("write", out.write_all(b"hi A")).await;
    let got = step("read", inbound.read(STEP_TIMEOUT)).await;
    eprintln!(
        "B -> A:{APP_PORT} stream: {:?}",
        got.as_deref().map(String::from_utf8_lossy)
    );
    assert_eq!(got.as_deref(), Some(&b"hi A"[..]));
    step("close", out.close()).await;
    assert_eq!(step("eof", inbound.read(STEP_TIMEOUT)).await, None);
    step("close", inbound.close()).await;
}

#[tokio::test]
async fn trusted_private_peers_use_every_service_over_udp() {
    let registry = start_registry().await;
    let a = start_private(&registry, "udp", "a").await;
    let b = start_private(&registry, "udp", "b").await;
    eprintln!(
        "A = {} (udp {}), B = {} (udp {})",
        a.addr(),
        a.udp_addr(),
        b.addr(),
        b.udp_addr()
    );
    trust(&a, "A", &b, "B", TrustPath::Relayed).await;
    exercise(&a, &b).await;
    let stats = step("stats", b.transport_stats()).await;
    eprintln!("B transport stats: {stats:?}");
    assert!(stats.udp_frames_in > 0);
    assert_eq!(stats.tcp_frames_in, 0);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    registry.shutdown().await.unwrap();
}

#[tokio::test]
async fn trusted_private_peers_use_every_service_over_tcp() {
    let registry = start_registry().await;
    let mut a_config = private_config(&registry, "tcp", "a");
    a_config.transport = Transport::Tcp;
    let a = Peer::start(a_config).await.unwrap();
    let mut b_config = private_config(&registry, "tcp", "b");
    b_config.tcp_listen = Some("127.0.0.1:0".parse().unwrap());
    let b = Peer::start(b_config).await.unwrap();
    let b_tcp = b.tcp_addr().unwrap();
    eprintln!(
        "A = {} dials over TCP; B = {} listens on tcp {b_tcp}",
        a.addr(),
        b.addr()
    );
    trust(&a, "A", &b, "B", TrustPath::Relayed).await;
    exercise(&a, &b).await;

    let a_stats = step("stats", a.transport_stats()).await;
    let b_stats = step("stats", b.transport_stats()).await;
    eprintln!("A transport stats: {a_stats:?}");
    eprintln!("B transport stats: {b_stats:?}");
    assert_eq!(a_stats.tcp_connections, 1, "one pooled connection to B");
    assert_eq!(b_stats.tcp_connections, 1);
    assert!(b_stats.tcp_frames_in > 0 && b_stats.tcp_frames_out > 0);
    assert_eq!(a_stats.udp_frames_out, 0, "A never used UDP");
    assert_eq!(b_stats.udp_frames_in, 0);
    assert_eq!(
        b_stats.udp_frames_out, 0,
        "B answered on the TCP connection"
    );
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    registry.shutdown().await.unwrap();
}

#[tokio::test]
async fn tcp_endpoint_is_advertised_in_the_registry() {
    use conformance::peer::RegistryClient;
    use pilot_core::registry::{Lookup, Request, Response};

    let registry = start_registry().await;
    let mut config = private_config(&registry, "advertise", "b");
    config.tcp_listen = Some("127.0.0.1:0".parse().unwrap());
    config.public = true;
    let b = Peer::start(config).await.unwrap();
    let mut client = RegistryClient::new(registry.local_addr());
    let answer = client
        .call(&Request::Lookup(Lookup {
            node_id: b.addr().node,
        }))
        .await
        .unwrap();
    let Response::LookupOk(ok) = answer else {
        panic!("lookup failed: {answer:?}");
    };
    eprintln!("lookup of B: endpoints {:?}", ok.endpoints);
    assert_eq!(ok.endpoints.len(), 1);
    assert_eq!(ok.endpoints[0].network, "tcp");
    assert_eq!(ok.endpoints[0].addr, b.tcp_addr().unwrap().to_string());
    b.shutdown().await.unwrap();
    registry.shutdown().await.unwrap();
}

#[tokio::test]
async fn tcp_connection_declaring_an_oversized_frame_is_dropped_and_the_peer_carries_on() {
    let registry = start_registry().await;
    let mut config = private_config(&registry, "oversized", "b");
    config.tcp_listen = Some("127.0.0.1:0".parse().unwrap());
    config.public = true;
    let b = Peer::start(config).await.unwrap();
    let tcp = b.tcp_addr().unwrap();

    // Garbage that frames correctly is dropped by the engine; the connection stays.
    let mut junk = tokio::net::TcpStream::connect(tcp).await.unwrap();
    junk.write_all(&[0, 0, 0, 4, b'J', b'U', b'N', b'K'])
        .await
        .unwrap();
    // Above 1 MiB (spec §7.5): the connection is closed.
    let mut huge = tokio::net::TcpStream::connect(tcp).await.unwrap();
    huge.write_all(&(2u32 << 20).to_be_bytes()).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(STEP_TIMEOUT, huge.read(&mut buf))
        .await
        .expect("the oversized connection was not closed")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    eprintln!("connection declaring a 2 MiB frame: closed by B");

    let stats = step("stats", b.transport_stats()).await;
    eprintln!("B after the junk: {stats:?}");
    assert_eq!(
        stats.tcp_connections, 1,
        "only the well-framed junk connection remains"
    );
    drop(junk);

    // B still serves: a TCP client peer pings it.
    let mut config = private_config(&registry, "oversized", "a");
    config.transport = Transport::Tcp;
    config.public = true;
    let a = Peer::start(config).await.unwrap();
    step("ping over tcp", a.ping(b.addr())).await;
    eprintln!("A pings B over TCP afterwards: ok");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    registry.shutdown().await.unwrap();
}

/// Polls `peer`'s transport counters until `done` holds (bounded by [`STEP_TIMEOUT`]).
async fn await_stats(
    peer: &Peer,
    what: &str,
    done: impl Fn(&conformance::peer::TransportStats) -> bool,
) -> conformance::peer::TransportStats {
    let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        let stats = step("stats", peer.transport_stats()).await;
        if done(&stats) {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn closed_tcp_connection_is_forgotten_and_the_newest_one_carries_the_peer() {
    let registry = start_registry().await;
    let mut config = private_config(&registry, "tcp-restart", "b");
    config.tcp_listen = Some("127.0.0.1:0".parse().unwrap());
    config.public = true;
    let b = Peer::start(config).await.unwrap();
    let client_config = || {
        let mut config = PeerConfig::new(
            registry.local_addr(),
            std::env::temp_dir()
                .join(format!(
                    "pilot-peer-test-{}-tcp-restart",
                    std::process::id()
                ))
                .join("a.json"),
        );
        config.transport = Transport::Tcp;
        config.public = true;
        config
    };
    let _ = std::fs::remove_file(&client_config().identity);
    std::fs::create_dir_all(client_config().identity.parent().unwrap()).unwrap();

    let a = Peer::start(client_config()).await.unwrap();
    let node = a.addr();
    step("ping over tcp", a.ping(b.addr())).await;
    assert_eq!(step("stats", b.transport_stats()).await.tcp_connections, 1);
    a.shutdown().await.unwrap();
    let stats = await_stats(&b, "connection of a stopped peer", |s| {
        s.tcp_connections == 0
    })
    .await;
    eprintln!("A stopped: B dropped its TCP connection ({stats:?})");

    // Same identity, same address, new connection: B answers on it.
    let a = Peer::start(client_config()).await.unwrap();
    assert_eq!(a.addr(), node);
    step("ping after restart", a.ping(b.addr())).await;
    step("ping back", b.ping(a.addr())).await;
    let stats = step("stats", b.transport_stats()).await;
    eprintln!("A restarted and pinged B, B pinged back over the new connection: {stats:?}");
    assert_eq!(stats.tcp_connections, 1);
    assert_eq!(stats.udp_frames_out, 0, "B never fell back to UDP");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    registry.shutdown().await.unwrap();
}

#[tokio::test]
async fn dialler_forgets_a_dead_tcp_connection_and_redials_the_new_endpoint() {
    let registry = start_registry().await;
    let server_config = || {
        let mut config = PeerConfig::new(
            registry.local_addr(),
            std::env::temp_dir()
                .join(format!("pilot-peer-test-{}-tcp-redial", std::process::id()))
                .join("b.json"),
        );
        config.tcp_listen = Some("127.0.0.1:0".parse().unwrap());
        config.public = true;
        config
    };
    let _ = std::fs::remove_file(&server_config().identity);
    std::fs::create_dir_all(server_config().identity.parent().unwrap()).unwrap();
    let b = Peer::start(server_config()).await.unwrap();
    let mut config = private_config(&registry, "tcp-redial", "a");
    config.transport = Transport::Tcp;
    config.public = true;
    let a = Peer::start(config).await.unwrap();
    step("ping", a.ping(b.addr())).await;
    let first = b.tcp_addr().unwrap();
    b.shutdown().await.unwrap();
    await_stats(&a, "connection to a stopped peer", |s| {
        s.tcp_connections == 0
    })
    .await;
    eprintln!("B at tcp {first} stopped: A dropped its pooled connection");

    let b = Peer::start(server_config()).await.unwrap();
    let second = b.tcp_addr().unwrap();
    step("ping the restarted peer", a.ping(b.addr())).await;
    let stats = step("stats", a.transport_stats()).await;
    eprintln!("B restarted at tcp {second}; A resolved and dialled it again: {stats:?}");
    assert_eq!(stats.tcp_connections, 1);
    assert_eq!(stats.udp_frames_out, 0);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    registry.shutdown().await.unwrap();
}

#[tokio::test]
async fn trust_store_keeps_admitting_a_trusted_node_after_a_restart() {
    let registry = start_registry().await;
    let mut a_config = private_config(&registry, "store", "a");
    let store = a_config.identity.with_extension("trust.json");
    let _ = std::fs::remove_file(&store);
    a_config.trust_store = Some(store.clone());
    let a = Peer::start(a_config.clone()).await.unwrap();
    let b = start_private(&registry, "store", "b").await;
    trust(&a, "A", &b, "B", TrustPath::Relayed).await;
    let saved = std::fs::read_to_string(&store).unwrap();
    eprintln!("A's trust store: {}", saved.trim());
    assert!(saved.contains(&format!("\"node\":{}", b.addr().node)));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&store).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    a.shutdown().await.unwrap();

    let a = Peer::start(a_config).await.unwrap();
    assert_eq!(step("trusted", a.trusted()).await, vec![b.addr().node]);
    step(
        "A -> B echo",
        a.exchange(b.addr(), 7, b"after restart".to_vec()),
    )
    .await;
    // B's SYN passes A's trust gate only because A restored its trust in B.
    let echoed = step(
        "B -> A echo",
        b.exchange(a.addr(), 7, b"still trusted".to_vec()),
    )
    .await;
    eprintln!(
        "A restarted; B -> A:7 -> {:?}",
        String::from_utf8_lossy(&echoed)
    );
    assert_eq!(echoed, b"still trusted");
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();
    registry.shutdown().await.unwrap();
}
