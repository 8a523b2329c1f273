//! `/v1/relay` scenarios against an in-process relay, with a real WebSocket client and UDP
//! sockets on 127.0.0.1 only. Addresses outside loopback appear only as destinations that
//! must be refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use futures_util::SinkExt as _;
use pilot_relay::close;
use pilot_relay::metrics::{Direction, DropReason};
use pilot_relay::token;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn auth_success_reports_a_loopback_udp_address() {
    let relay = TestRelay::start(open_config()).await;
    let mut ws = relay.connect_relay().await;
    let udp = open_session(&mut ws, &signing_key(1), None).await;
    assert_eq!(udp.ip().to_string(), "127.0.0.1");
    assert_ne!(udp.port(), 0);
    wait_until("session gauge", || {
        relay.relay.metrics().sessions_active.get() == 1
    })
    .await;
}

#[tokio::test]
async fn valid_token_is_accepted_when_tokens_are_required() {
    let relay = TestRelay::start(token_config()).await;
    let key = signing_key(2);
    let tenant = token::mint(&token_key(), "acme", pilot_relay::unix_now() + 60).unwrap();
    let mut ws = relay.connect_relay().await;
    open_session(&mut ws, &key, Some(tenant)).await;

    let own = token::mint(
        &token_key(),
        &identity_hex(&key),
        pilot_relay::unix_now() + 60,
    )
    .unwrap();
    let mut ws2 = relay.connect_relay().await;
    open_session(&mut ws2, &key, Some(own)).await;
}

#[tokio::test]
async fn bad_signature_is_closed_with_4001() {
    let relay = TestRelay::start(open_config()).await;
    let mut ws = relay.connect_relay().await;
    let challenge = read_challenge(&mut ws).await;
    // Signs a string with the right shape but another nonce.
    let wrong = pilot_relay::auth::signed_string(&"00".repeat(32), challenge.ts);
    ws.send(auth_reply(&signing_key(1), &wrong, None))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, close::BAD_SIGNATURE);
    assert_eq!(relay.relay.metrics().auth_failures("bad_signature"), 1);
}

#[tokio::test]
async fn missing_token_is_closed_with_4002() {
    let relay = TestRelay::start(token_config()).await;
    let mut ws = relay.connect_relay().await;
    authenticate(&mut ws, &signing_key(1), None).await;
    assert_eq!(close_code(&mut ws).await, close::TOKEN_REQUIRED);
}

#[tokio::test]
async fn expired_token_is_closed_with_4004() {
    let relay = TestRelay::start(token_config()).await;
    let expired = token::mint(&token_key(), "acme", pilot_relay::unix_now() - 1).unwrap();
    let mut ws = relay.connect_relay().await;
    authenticate(&mut ws, &signing_key(1), Some(expired)).await;
    assert_eq!(close_code(&mut ws).await, close::TOKEN_EXPIRED);
    assert_eq!(relay.relay.metrics().auth_failures("token_expired"), 1);
}

#[tokio::test]
async fn forged_token_is_closed_with_4003() {
    let relay = TestRelay::start(token_config()).await;
    let other_key = token::TokenKey::new(vec![0x43; 32]).unwrap();
    let forged = token::mint(&other_key, "acme", pilot_relay::unix_now() + 60).unwrap();
    let mut ws = relay.connect_relay().await;
    authenticate(&mut ws, &signing_key(1), Some(forged)).await;
    assert_eq!(close_code(&mut ws).await, close::TOKEN_INVALID);
    assert_eq!(relay.relay.metrics().auth_failures("token_bad_mac"), 1);
}

#[tokio::test]
async fn token_for_another_identity_is_closed_with_4003() {
    let relay = TestRelay::start(token_config()).await;
    let theirs = identity_hex(&signing_key(9));
    let token = token::mint(&token_key(), &theirs, pilot_relay::unix_now() + 60).unwrap();
    let mut ws = relay.connect_relay().await;
    authenticate(&mut ws, &signing_key(1), Some(token)).await;
    assert_eq!(close_code(&mut ws).await, close::TOKEN_INVALID);
}

#[tokio::test]
async fn slow_auth_is_closed_with_4008() {
    let mut config = open_config();
    config.auth_timeout = Duration::from_millis(200);
    let relay = TestRelay::start(config).await;
    let mut ws = relay.connect_relay().await;
    read_challenge(&mut ws).await;
    // Never answer.
    assert_eq!(close_code(&mut ws).await, close::AUTH_TIMEOUT);
    assert_eq!(relay.relay.metrics().auth_failures("timeout"), 1);
}

#[tokio::test]
async fn message_above_the_limit_during_auth_closes_with_1009_and_counts() {
    let relay = TestRelay::start(open_config()).await;
    let mut ws = relay.connect_relay().await;
    read_challenge(&mut ws).await;
    ws.send(Message::Text("x".repeat(70_000).into()))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, close::MESSAGE_TOO_BIG);
    assert_eq!(relay.relay.metrics().auth_failures("message_too_big"), 1);
}

#[tokio::test]
async fn missing_subprotocol_is_refused_before_upgrade() {
    let relay = TestRelay::start(open_config()).await;
    let err = try_connect(relay.addr, "/v1/relay", "", None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("400"), "{err}");
    let (_, metrics) = http_get(relay.addr, "/metrics").await;
    assert!(
        metrics.contains("pilot_relay_sessions_refused_total{reason=\"no_subprotocol\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn datagrams_are_forwarded_both_ways() {
    let relay = TestRelay::start(open_config()).await;
    let mut ws = relay.connect_relay().await;
    let session = open_session(&mut ws, &signing_key(1), None).await;
    let peer = udp_peer().await;
    let peer_addr = peer.local_addr().unwrap();

    ws.send(to(peer_addr, &pils(1))).await.unwrap();
    let (frame, from) = recv_datagram(&peer).await;
    assert_eq!(frame, pils(1), "the frame arrives without the header");
    assert_eq!(
        from, session,
        "it leaves from the advertised session address"
    );

    let mut reply = b"PILA".to_vec();
    reply.resize(136, 0x11);
    peer.send_to(&reply, session).await.unwrap();
    match next_message(&mut ws).await {
        Some(Message::Binary(bytes)) => {
            let (source, frame) = pilot_relay::header::decode(&bytes).unwrap();
            assert_eq!(source, peer_addr);
            assert_eq!(frame, &reply[..]);
        }
        other => panic!("expected a datagram, got {other:?}"),
    }
    let m = relay.relay.metrics();
    assert_eq!(m.frames(Direction::Outbound), 1);
    assert_eq!(m.frames(Direction::Inbound), 1);
}

#[tokio::test]
async fn beacon_messages_are_forwarded() {
    let relay = TestRelay::start(open_config()).await;
    let mut ws = relay.connect_relay().await;
    open_session(&mut ws, &signing_key(1), None).await;
    let peer = udp_peer().await;
    let discover = [0x01, 0, 0, 0, 7];
    ws.send(to(peer.local_addr().unwrap(), &discover))
        .await
        .unwrap();
    assert_eq!(recv_datagram(&peer).await.0, discover);
}

#[tokio::test]
async fn non_pilot_payload_is_refused_outbound() {
    let relay = TestRelay::start(open_config()).await;
    let mut ws = relay.connect_relay().await;
    open_session(&mut ws, &signing_key(1), None).await;
    let peer = udp_peer().await;
    let peer_addr = peer.local_addr().unwrap();

    ws.send(to(peer_addr, b"GET / HTTP/1.1\r\n\r\n"))
        .await
        .unwrap();
    ws.send(to(peer_addr, &[0x00, 1, 2, 3])).await.unwrap();
    ws.send(to(peer_addr, &pils(2))).await.unwrap();

    // Messages are handled in order, so the first datagram to arrive shows the first two
    // were not sent.
    assert_eq!(recv_datagram(&peer).await.0, pils(2));
    let m = relay.relay.metrics();
    assert_eq!(m.drops(DropReason::NotPilot, Direction::Outbound), 2);
    assert_eq!(m.frames(Direction::Outbound), 1);
}

#[tokio::test]
async fn foreign_protocols_plaintext_and_wrong_way_beacons_are_refused() {
    let relay = TestRelay::start(open_config()).await;
    let mut ws = relay.connect_relay().await;
    let session = open_session(&mut ws, &signing_key(1), None).await;
    let peer = udp_peer().await;
    let peer_addr = peer.local_addr().unwrap();

    // A DNS query with ID 0x01xx, a WireGuard-like type-1 message, HTTP behind 0x01: all used
    // to pass the first-byte check.
    let dns = [
        0x01, 0x23, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 1, b'x', 0, 0, 1, 0, 1,
    ];
    let mut wireguard = vec![0x01, 0, 0, 0];
    wireguard.resize(148, 0x5a);
    let mut plaintext = b"PILT".to_vec();
    plaintext.resize(40, 0);
    let discover_reply = [0x02, 4, 8, 8, 8, 8, 0x1f, 0x90];
    for bad in [
        &dns[..],
        &wireguard,
        b"\x01GET / HTTP/1.1\r\n",
        &plaintext,
        &discover_reply,
    ] {
        ws.send(to(peer_addr, bad)).await.unwrap();
    }
    ws.send(to(peer_addr, &pils(4))).await.unwrap();
    assert_eq!(recv_datagram(&peer).await.0, pils(4));

    // Inbound: plaintext and a Discover (client-to-beacon only) are not delivered.
    peer.send_to(&plaintext, session).await.unwrap();
    peer.send_to(&[0x01, 0, 0, 0, 7], session).await.unwrap();
    peer.send_to(&pils(5), session).await.unwrap();
    match next_message(&mut ws).await {
        Some(Message::Binary(bytes)) => {
            assert_eq!(pilot_relay::header::decode(&bytes).unwrap().1, &pils(5)[..]);
        }
        other => panic!("expected the PILS datagram, got {other:?}"),
    }
    let m = relay.relay.metrics();
    assert_eq!(m.drops(DropReason::Plaintext, Direction::Outbound), 1);
    assert_eq!(m.drops(DropReason::Plaintext, Direction::Inbound), 1);
    assert_eq!(m.drops(DropReason::BeaconDirection, Direction::Outbound), 1);
    assert_eq!(m.drops(DropReason::BeaconDirection, Direction::Inbound), 1);
    // The DNS, WireGuard and 0x01-prefixed HTTP payloads decode as a Discover with trailing
    // bytes, which the relay refuses as malformed.
    assert_eq!(m.drops(DropReason::MalformedFrame, Direction::Outbound), 3);
    assert_eq!(m.frames(Direction::Outbound), 1);
    assert_eq!(m.frames(Direction::Inbound), 1);
}

#[tokio::test]
async fn relay_own_address_is_refused_except_live_session_ports() {
    // The relay's own address is 127.0.0.5 (public and bound); allow-dest covers it, yet only
    // the ports of live sessions may be reached there.
    let mut config = open_config();
    config.udp_bind_ip = "127.0.0.5".parse().unwrap();
    config.public_ip = Some("127.0.0.5".parse().unwrap());
    let relay = TestRelay::start(config).await;
    let mut a = relay.connect_relay().await;
    let a_addr = open_session(&mut a, &signing_key(1), None).await;
    let mut b = relay.connect_relay().await;
    let b_addr = open_session(&mut b, &signing_key(2), None).await;
    assert_eq!(b_addr.ip().to_string(), "127.0.0.5");

    // A service on the relay host, at the relay's address but not a session port.
    let host_service = tokio::net::UdpSocket::bind("127.0.0.5:0").await.unwrap();
    let host_addr = host_service.local_addr().unwrap();
    a.send(to(host_addr, &pils(6))).await.unwrap();
    // Session to session on the same relay is allowed.
    a.send(to(b_addr, &pils(7))).await.unwrap();
    match next_message(&mut b).await {
        Some(Message::Binary(bytes)) => {
            let (source, frame) = pilot_relay::header::decode(&bytes).unwrap();
            assert_eq!(source, a_addr);
            assert_eq!(frame, &pils(7)[..]);
        }
        other => panic!("expected the session-to-session datagram, got {other:?}"),
    }
    let m = relay.relay.metrics();
    assert_eq!(m.drops(DropReason::RelaySelf, Direction::Outbound), 1);
    assert_eq!(m.frames(Direction::Outbound), 1);
    let mut buf = [0u8; 64];
    assert!(
        host_service.try_recv_from(&mut buf).is_err(),
        "nothing reached the host service"
    );

    // Once session B is gone, its port is no longer reachable.
    drop(b);
    wait_until("session B to end", || m.sessions_active.get() == 1).await;
    a.send(to(b_addr, &pils(8))).await.unwrap();
    wait_until("the refusal", || {
        m.drops(DropReason::RelaySelf, Direction::Outbound) == 2
    })
    .await;
}

#[tokio::test]
async fn client_that_stops_reading_is_closed_with_4012_while_udp_floods_in() {
    let mut config = open_config();
    config.write_timeout = Duration::from_millis(200);
    config.packets_per_sec = 1_000_000;
    config.bytes_per_sec = 1 << 40;
    let relay = TestRelay::start(config).await;
    let mut ws = connect_relay_small_recv_buffer(relay.addr).await;
    let session = open_session(&mut ws, &signing_key(1), None).await;
    // From here on the client reads nothing.

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flooding = std::sync::Arc::clone(&stop);
    let flood = tokio::spawn(async move {
        let peer = udp_peer().await;
        let mut frame = b"PILS".to_vec();
        frame.resize(60_000, 0x77);
        while !flooding.load(std::sync::atomic::Ordering::Relaxed) {
            for _ in 0..8 {
                let _ = peer.send_to(&frame, session).await;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });

    // Filling the socket buffers takes a moment; the bound only keeps a broken relay from
    // hanging the test.
    let m = relay.relay.metrics();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while m.write_timeouts.get() == 0 || m.sessions_active.get() != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session of a client that stopped reading was never closed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flood.await.unwrap();
    assert_eq!(m.write_timeouts.get(), 1);
    drop(ws);
}

#[tokio::test]
async fn non_pilot_payload_is_refused_inbound() {
    let relay = TestRelay::start(open_config()).await;
    let mut ws = relay.connect_relay().await;
    let session = open_session(&mut ws, &signing_key(1), None).await;
    let peer = udp_peer().await;

    peer.send_to(b"\x16\x03\x01 not pilot", session)
        .await
        .unwrap();
    peer.send_to(&pils(3), session).await.unwrap();
    match next_message(&mut ws).await {
        Some(Message::Binary(bytes)) => {
            assert_eq!(pilot_relay::header::decode(&bytes).unwrap().1, &pils(3)[..]);
        }
        other => panic!("expected the Pilot datagram, got {other:?}"),
    }
    assert_eq!(
        relay
            .relay
            .metrics()
            .drops(DropReason::NotPilot, Direction::Inbound),
        1
    );
}

#[tokio::test]
async fn refused_destinations_are_never_sent() {
    let relay = TestRelay::start(open_config()).await;
    let mut ws = relay.connect_relay().await;
    open_session(&mut ws, &signing_key(1), None).await;
    let peer = udp_peer().await;

    // Only used to check refusal: the policy check happens before any send, so nothing
    // leaves the machine (the outbound frame counter below stays at the one loopback send).
    // As a second fence the session sockets are bound to 127.0.0.1, from which the kernel
    // does not route to other hosts.
    let refused: [SocketAddr; 5] = [
        "10.0.0.1:9000".parse().unwrap(),
        "[::ffff:10.0.0.1]:9000".parse().unwrap(),
        "169.254.169.254:80".parse().unwrap(),
        "100.64.0.1:9000".parse().unwrap(),
        "[fd00::1]:9000".parse().unwrap(),
    ];
    for dest in refused {
        ws.send(to(dest, &pils(4))).await.unwrap();
    }
    ws.send(to(peer.local_addr().unwrap(), &pils(5)))
        .await
        .unwrap();
    assert_eq!(recv_datagram(&peer).await.0, pils(5));

    let m = relay.relay.metrics();
    assert_eq!(m.drops(DropReason::RefusedAddress, Direction::Outbound), 5);
    assert_eq!(m.frames(Direction::Outbound), 1);
}

#[tokio::test]
async fn loopback_is_refused_without_an_allow_list() {
    let mut config = open_config();
    config.allow_dest.clear();
    let relay = TestRelay::start(config).await;
    let mut ws = relay.connect_relay().await;
    open_session(&mut ws, &signing_key(1), None).await;
    let peer = udp_peer().await;

    ws.send(to(peer.local_addr().unwrap(), &pils(6)))
        .await
        .unwrap();
    let m = relay.relay.metrics().clone();
    wait_until("the refusal to be counted", || {
        m.drops(DropReason::RefusedAddress, Direction::Outbound) == 1
    })
    .await;
    assert_eq!(m.frames(Direction::Outbound), 0);
    let mut buf = [0u8; 64];
    assert!(
        peer.try_recv_from(&mut buf).is_err(),
        "nothing reached the peer"
    );
}

#[tokio::test]
async fn rate_limit_drops_the_excess() {
    let mut config = open_config();
    config.packets_per_sec = 3;
    let relay = TestRelay::start(config).await;
    let mut ws = relay.connect_relay().await;
    open_session(&mut ws, &signing_key(1), None).await;
    let peer = udp_peer().await;
    let peer_addr = peer.local_addr().unwrap();

    const SENT: u64 = 20;
    for i in 0..SENT {
        ws.feed(to(peer_addr, &pils(i as u8))).await.unwrap();
    }
    ws.flush().await.unwrap();

    let m = relay.relay.metrics().clone();
    wait_until("every message to be handled", || {
        m.frames(Direction::Outbound) + m.drops(DropReason::RateLimited, Direction::Outbound)
            == SENT
    })
    .await;
    let forwarded = m.frames(Direction::Outbound);
    assert!(forwarded >= 3, "the burst of 3 passes, got {forwarded}");
    assert!(forwarded < SENT, "the excess is dropped, got {forwarded}");
    for _ in 0..forwarded {
        recv_datagram(&peer).await;
    }
}

#[tokio::test]
async fn oversize_frame_is_dropped_and_the_session_continues() {
    let relay = TestRelay::start(open_config()).await;
    let mut ws = relay.connect_relay().await;
    open_session(&mut ws, &signing_key(1), None).await;
    let peer = udp_peer().await;
    let peer_addr = peer.local_addr().unwrap();

    let mut big = pils(7);
    big.resize(pilot_relay::MAX_FRAME_BYTES + 1, 0);
    ws.send(to(peer_addr, &big)).await.unwrap();
    ws.send(to(peer_addr, &pils(8))).await.unwrap();
    assert_eq!(recv_datagram(&peer).await.0, pils(8));
    assert_eq!(
        relay
            .relay
            .metrics()
            .drops(DropReason::Oversize, Direction::Outbound),
        1
    );
}

#[tokio::test]
async fn frame_above_the_ipv4_udp_maximum_is_oversize_and_costs_no_budget() {
    // A budget that holds one 65,000-byte frame but not also a 65,508-byte one.
    let mut config = open_config();
    config.bytes_per_sec = 100_000;
    let relay = TestRelay::start(config).await;
    let mut ws = relay.connect_relay().await;
    open_session(&mut ws, &signing_key(1), None).await;
    let peer = udp_peer().await;
    let peer_addr = peer.local_addr().unwrap();

    let mut too_big = pils(9);
    too_big.resize(pilot_relay::config::MAX_UDP_PAYLOAD_V4_BYTES + 1, 0);
    let mut fits = pils(10);
    fits.resize(65_000, 0);
    ws.send(to(peer_addr, &too_big)).await.unwrap();
    ws.send(to(peer_addr, &fits)).await.unwrap();
    assert_eq!(recv_datagram(&peer).await.0, fits);
    let m = relay.relay.metrics();
    assert_eq!(m.drops(DropReason::Oversize, Direction::Outbound), 1);
    assert_eq!(m.drops(DropReason::SendFailed, Direction::Outbound), 0);
    assert_eq!(m.drops(DropReason::RateLimited, Direction::Outbound), 0);
}

#[tokio::test]
async fn message_above_the_websocket_limit_closes_with_1009() {
    let relay = TestRelay::start(open_config()).await;
    let mut ws = relay.connect_relay().await;
    open_session(&mut ws, &signing_key(1), None).await;
    let mut big = pils(9);
    big.resize(pilot_relay::MAX_FRAME_BYTES + 100, 0);
    let dest: SocketAddr = "[::1]:9000".parse().unwrap();
    ws.send(to(dest, &big)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, close::MESSAGE_TOO_BIG);
}

#[tokio::test]
async fn idle_session_is_closed_with_4010() {
    let mut config = open_config();
    config.idle_timeout = Duration::from_millis(300);
    let relay = TestRelay::start(config).await;
    let mut ws = relay.connect_relay().await;
    open_session(&mut ws, &signing_key(1), None).await;
    assert_eq!(close_code(&mut ws).await, close::IDLE_TIMEOUT);
    wait_until("the session gauge to drop", || {
        relay.relay.metrics().sessions_active.get() == 0
    })
    .await;
}

#[tokio::test]
async fn reconnect_gets_a_new_udp_port() {
    let relay = TestRelay::start(open_config()).await;
    let key = signing_key(1);
    let mut first = relay.connect_relay().await;
    let old = open_session(&mut first, &key, None).await;
    // The client reconnects before the relay has noticed the old connection is gone.
    let mut second = relay.connect_relay().await;
    let new = open_session(&mut second, &key, None).await;
    assert_ne!(old.port(), new.port());
    first.close(None).await.unwrap();
    wait_until("the old session to end", || {
        relay.relay.metrics().sessions_active.get() == 1
    })
    .await;
}

#[tokio::test]
async fn sessions_per_identity_are_limited() {
    let mut config = open_config();
    config.max_sessions_per_identity = 1;
    let relay = TestRelay::start(config).await;
    let mut first = relay.connect_relay().await;
    open_session(&mut first, &signing_key(1), None).await;
    let mut second = relay.connect_relay().await;
    authenticate(&mut second, &signing_key(1), None).await;
    assert_eq!(close_code(&mut second).await, close::SESSION_LIMIT);
    // Another identity is unaffected.
    let mut third = relay.connect_relay().await;
    open_session(&mut third, &signing_key(2), None).await;
}

#[tokio::test]
async fn connections_per_ip_are_limited() {
    let mut config = open_config();
    config.max_sessions_per_ip = 1;
    let relay = TestRelay::start(config).await;
    let _first = relay.connect_relay().await;
    let err = try_connect(relay.addr, "/v1/relay", "pilot-relay.v1", None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("429"), "{err}");
}

#[tokio::test]
async fn shutdown_closes_sessions_with_1012_and_drains() {
    let mut relay = TestRelay::start(open_config()).await;
    let mut a = relay.connect_relay().await;
    open_session(&mut a, &signing_key(1), None).await;
    let mut b = relay.connect_relay().await;
    read_challenge(&mut b).await; // still authenticating

    relay.shutdown();
    assert_eq!(close_code(&mut a).await, close::SERVICE_RESTART);
    assert_eq!(close_code(&mut b).await, close::SERVICE_RESTART);
    drop((a, b));
    tokio::time::timeout(WAIT, &mut relay.task)
        .await
        .expect("serve returns after draining")
        .unwrap()
        .unwrap();
    assert_eq!(relay.relay.metrics().sessions_active.get(), 0);
    assert!(
        tokio::net::TcpStream::connect(relay.addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn healthz_answers_503_and_upgrades_are_refused_while_draining() {
    let mut relay = TestRelay::start(open_config()).await;
    let mut held = relay.connect_relay().await;
    open_session(&mut held, &signing_key(1), None).await;
    // `held` is not read from now on, so the relay waits for its close reply and the drain
    // window stays open for a while.
    relay.shutdown();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = http_get(relay.addr, "/healthz").await;
        if status.contains("503") {
            assert_eq!(body, "draining\n");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never draining");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    match try_connect(relay.addr, "/v1/relay", "pilot-relay.v1", None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        other => panic!("expected a 503 refusal, got {other:?}"),
    }
    drop(held);
    tokio::time::timeout(WAIT, &mut relay.task)
        .await
        .expect("serve returns after draining")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn healthz_and_metrics_are_served() {
    let relay = TestRelay::start(open_config()).await;
    let (status, body) = http_get(relay.addr, "/healthz").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(body.trim(), "ok");

    let mut ws = relay.connect_relay().await;
    read_challenge(&mut ws).await;
    ws.send(Message::Text("{}".into())).await.unwrap();
    assert_eq!(close_code(&mut ws).await, close::PROTOCOL_ERROR);

    let (status, body) = http_get(relay.addr, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    assert!(
        body.contains("pilot_relay_auth_failures_total{reason=\"malformed\"} 1"),
        "{body}"
    );
    assert!(body.contains("pilot_relay_sessions_active 0"), "{body}");
}

#[tokio::test]
async fn client_that_never_answers_pings_is_closed_with_4011() {
    let mut config = open_config();
    config.ping_interval = Duration::from_millis(100);
    config.pong_timeout = Duration::from_millis(100);
    let relay = TestRelay::start(config).await;
    let mut ws = relay.connect_relay().await;
    open_session(&mut ws, &signing_key(1), None).await;
    // Not reading means the client's WebSocket never answers the relay's pings.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(close_code(&mut ws).await, close::PONG_TIMEOUT);
}

#[tokio::test]
async fn client_that_answers_pings_stays_connected_past_the_pong_timeout() {
    let mut config = open_config();
    config.ping_interval = Duration::from_millis(50);
    config.pong_timeout = Duration::from_millis(50);
    let relay = TestRelay::start(config).await;
    let mut ws = relay.connect_relay().await;
    let session = open_session(&mut ws, &signing_key(1), None).await;
    // Reading keeps the client answering pings; after several intervals a datagram still
    // comes through on the same session.
    let peer = udp_peer().await;
    let reader = async {
        loop {
            match next_message(&mut ws).await {
                Some(Message::Binary(bytes)) => return bytes,
                Some(Message::Close(frame)) => panic!("closed: {frame:?}"),
                _ => {}
            }
        }
    };
    let sender = async {
        tokio::time::sleep(Duration::from_millis(400)).await;
        peer.send_to(&pils(10), session).await.unwrap();
    };
    let (bytes, ()) = tokio::join!(reader, sender);
    assert_eq!(
        pilot_relay::header::decode(&bytes).unwrap().1,
        &pils(10)[..]
    );
}

#[tokio::test]
async fn ipv6_session_forwards_both_ways_on_ipv6_loopback() {
    let mut config = open_config();
    config.udp_bind_ip = "::1".parse().unwrap();
    config.allow_dest = vec!["::1/128".parse().unwrap()];
    let relay = TestRelay::start(config).await;
    let mut ws = relay.connect_relay().await;
    let session = open_session(&mut ws, &signing_key(1), None).await;
    assert_eq!(session.ip().to_string(), "::1");

    let peer = tokio::net::UdpSocket::bind("[::1]:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    ws.send(to(peer_addr, &pils(11))).await.unwrap();
    let (frame, from) = recv_datagram(&peer).await;
    assert_eq!((frame, from), (pils(11), session));

    peer.send_to(&pils(12), session).await.unwrap();
    match next_message(&mut ws).await {
        Some(Message::Binary(bytes)) => {
            assert_eq!(bytes[0], pilot_relay::header::FAMILY_V6);
            let (source, frame) = pilot_relay::header::decode(&bytes).unwrap();
            assert_eq!((source, frame), (peer_addr, &pils(12)[..]));
        }
        other => panic!("expected a datagram, got {other:?}"),
    }
}

#[tokio::test]
async fn ipv6_destination_from_an_ipv4_session_is_dropped_as_family_mismatch() {
    let mut config = open_config();
    config.allow_dest.push("::1/128".parse().unwrap());
    let relay = TestRelay::start(config).await;
    let mut ws = relay.connect_relay().await;
    open_session(&mut ws, &signing_key(1), None).await;
    let v6_peer = tokio::net::UdpSocket::bind("[::1]:0").await.unwrap();
    let v4_peer = udp_peer().await;

    ws.send(to(v6_peer.local_addr().unwrap(), &pils(13)))
        .await
        .unwrap();
    ws.send(to(v4_peer.local_addr().unwrap(), &pils(14)))
        .await
        .unwrap();
    assert_eq!(recv_datagram(&v4_peer).await.0, pils(14));
    assert_eq!(
        relay
            .relay
            .metrics()
            .drops(DropReason::FamilyMismatch, Direction::Outbound),
        1
    );
}
