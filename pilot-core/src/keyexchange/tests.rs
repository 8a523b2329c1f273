//! Unit tests of the key-exchange rules, driving two stores by hand (no network).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use alloc::vec;
use alloc::vec::Vec;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::*;
use crate::crypto::{derive_session_key, SessionKey};
use crate::frame::pila::{FLAG_REQUEST, PILA_LEN};
use crate::frame::pils::peek;
use crate::replay::{Reject, DECRYPT_FAIL_DROP_COUNT, DECRYPT_FAIL_MIN_AGE};

const A: u32 = 0xA;
const B: u32 = 0xB;
const PATH_A: PathId = PathId(1);
const PATH_B: PathId = PathId(2);

fn identity(node: u32) -> Identity {
    Identity::from_seed(&[u8::try_from(node).unwrap(); 32])
}

fn tunnel_secret(node: u32) -> [u8; 32] {
    [u8::try_from(node).unwrap() ^ 0x5a; 32]
}

fn store(node: u32) -> KeyExchange {
    KeyExchange::with_tunnel_key(
        node,
        identity(node),
        TunnelKey::from_bytes(&tunnel_secret(node)),
    )
}

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(3)
}

fn ms(millis: u64) -> Instant {
    Instant::from_millis(millis)
}

fn drain(kx: &mut KeyExchange) -> Vec<KexOutput> {
    core::iter::from_fn(|| kx.poll_output()).collect()
}

fn transmits(outputs: &[KexOutput]) -> Vec<Vec<u8>> {
    outputs
        .iter()
        .filter_map(|o| match o {
            KexOutput::Transmit { frame, .. } => Some(frame.clone()),
            _ => None,
        })
        .collect()
}

fn packet(src: u32, dst: u32, protocol: Protocol, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let header = Header {
        flags: Flags::NONE,
        protocol,
        src: Addr::new(0, src),
        dst: Addr::new(0, dst),
        src_port: 0,
        dst_port,
        seq: 0,
        ack: 0,
        window: 0,
    };
    let mut out = Vec::new();
    PacketRef::new(header, payload).encode(&mut out).unwrap();
    out
}

fn data(src: u32, dst: u32, payload: &[u8]) -> Vec<u8> {
    packet(src, dst, Protocol::Datagram, 1001, payload)
}

fn pila_of(node: u32, trailer: Trailer) -> Vec<u8> {
    let public = TunnelKey::from_bytes(&tunnel_secret(node)).public_key();
    let mut out = Vec::new();
    Pila::sign(&identity(node), node, &public, trailer).encode(&mut out);
    out
}

/// Feeds A's PILA to `b` at `now`, answering the key lookup; returns b's outputs.
fn deliver_pila_from_a(b: &mut KeyExchange, now: Instant, trailer: Trailer) -> Vec<KexOutput> {
    let mut rng = rng();
    let outcome = b.handle_frame(now, PATH_A, &pila_of(A, trailer), &mut rng);
    if outcome == Ok(FrameOutcome::AwaitingPeerKey) {
        b.provide_peer_key(now, A, Some(identity(A).public_key()), &mut rng)
            .unwrap();
    }
    drain(b)
}

/// A store B with a session installed from A's PILA at `at`.
fn b_with_session_from_a(at: Instant) -> KeyExchange {
    let mut b = store(B);
    let out = deliver_pila_from_a(&mut b, at, Trailer::NONE);
    assert!(out.contains(&KexOutput::Event(KexEvent::SessionUp {
        node: A,
        rekey: false
    })));
    b
}

/// The session key A and B share.
fn key_ab() -> SessionKey {
    let b_public = TunnelKey::from_bytes(&tunnel_secret(B)).public_key();
    derive_session_key(&TunnelKey::from_bytes(&tunnel_secret(A)), &b_public).unwrap()
}

/// A PILS from A carrying `packet`, sealed with prefix `prefix` and counter `counter`.
fn pils_from_a(packet: &[u8], prefix: [u8; 4], counter: u64) -> Vec<u8> {
    let mut send = SendState::with_fixed_prefix_and_counter_for_replay(prefix, counter - 1);
    let mut out = Vec::new();
    pils::seal(&key_ab(), &mut send, A, packet, &mut out).unwrap();
    out
}

#[test]
fn new_pila_installs_and_replies_with_a_plain_136_byte_pila() {
    let mut b = store(B);
    let out = deliver_pila_from_a(&mut b, ms(0), Trailer::NONE);
    assert!(b.has_session(A));
    assert_eq!(b.peer_path(A), Some(PATH_A));
    let frames = transmits(&out);
    assert_eq!(frames, [pila_of(B, Trailer::NONE)]);
    assert_eq!(frames[0].len(), PILA_LEN);
    assert!(out.contains(&KexOutput::Event(KexEvent::NeedPeerKey { node: A })));
}

#[test]
fn same_key_pila_keeps_the_session_object_and_debounces_for_250_ms() {
    let mut b = b_with_session_from_a(ms(0));
    b.send_packet(ms(10), A, &data(B, A, b"one")).unwrap();
    let first = transmits(&drain(&mut b)).pop().unwrap();

    // Inside the debounce: nothing at all, even when stale rules would apply later.
    assert!(deliver_pila_from_a(&mut b, ms(100), Trailer::NONE).is_empty());
    // After it, with fresh inbound and no REQUEST: still nothing.
    assert!(deliver_pila_from_a(&mut b, ms(1_000), Trailer::NONE).is_empty());

    b.send_packet(ms(1_100), A, &data(B, A, b"two")).unwrap();
    let second = transmits(&drain(&mut b)).pop().unwrap();
    let (h1, h2) = (peek(&first).unwrap(), peek(&second).unwrap());
    assert_eq!(h1.nonce.prefix, h2.nonce.prefix, "same session object");
    assert_eq!(h2.nonce.counter, h1.nonce.counter + 1, "counter not reset");
}

#[test]
fn request_flag_gets_a_response_reply_at_most_every_5_s() {
    let mut b = b_with_session_from_a(ms(0));
    let request = Trailer {
        caps: 0,
        flags: FLAG_REQUEST,
    };
    let out = deliver_pila_from_a(&mut b, ms(1_000), request);
    let reply = transmits(&out);
    assert_eq!(reply.len(), 1);
    let parsed = Pila::decode(&reply[0]).unwrap();
    assert!(parsed.trailer.is_response());
    assert_eq!(&reply[0][PILA_LEN..], [0x00, 0x02]);

    assert!(deliver_pila_from_a(&mut b, ms(3_000), request).is_empty());
    assert_eq!(
        transmits(&deliver_pila_from_a(&mut b, ms(6_000), request)).len(),
        1
    );
}

#[test]
fn stale_inbound_gets_a_reply_at_most_every_second() {
    let mut b = b_with_session_from_a(ms(0));
    // Install counts as inbound; 6 s later it is stale.
    assert!(deliver_pila_from_a(&mut b, ms(5_900), Trailer::NONE).is_empty());
    assert_eq!(
        transmits(&deliver_pila_from_a(&mut b, ms(6_000), Trailer::NONE)),
        [pila_of(B, Trailer::NONE)]
    );
    assert!(deliver_pila_from_a(&mut b, ms(6_500), Trailer::NONE).is_empty());
    assert_eq!(
        transmits(&deliver_pila_from_a(&mut b, ms(7_000), Trailer::NONE)).len(),
        1
    );

    // An authenticated PILS makes inbound fresh again: no reply.
    let mut rng = rng();
    let frame = pils_from_a(&data(A, B, b"x"), [1; 4], 1);
    assert_eq!(
        b.handle_frame(ms(7_100), PATH_A, &frame, &mut rng),
        Ok(FrameOutcome::Delivered)
    );
    drain(&mut b);
    assert!(deliver_pila_from_a(&mut b, ms(9_000), Trailer::NONE).is_empty());
}

#[test]
fn changed_key_replaces_the_session_and_replays_salvage() {
    let mut b = b_with_session_from_a(ms(0));
    for p in [b"s1", b"s2"] {
        b.send_packet(ms(100), A, &data(B, A, p)).unwrap();
    }
    drain(&mut b);

    // A restarted with another tunnel key.
    let mut rng = rng();
    let mut restarted = Vec::new();
    let new_tunnel = TunnelKey::from_bytes(&[0x77; 32]);
    Pila::sign(&identity(A), A, &new_tunnel.public_key(), Trailer::NONE).encode(&mut restarted);
    b.handle_frame(ms(2_000), PATH_A, &restarted, &mut rng)
        .unwrap();
    let out = drain(&mut b);
    assert!(out.contains(&KexOutput::Event(KexEvent::SessionUp {
        node: A,
        rekey: true
    })));
    let frames = transmits(&out);
    assert_eq!(frames.len(), 3, "PILA reply, then two salvaged packets");
    assert_eq!(&frames[0][..4], b"PILA");

    let new_key = derive_session_key(&new_tunnel, &b.tunnel_public_key()).unwrap();
    for (frame, want) in frames[1..].iter().zip([b"s1", b"s2"]) {
        let mut frame = frame.clone();
        let opened = pils::open(&new_key, &mut frame).unwrap();
        assert!(opened.nonce.counter() <= 2);
        assert_eq!(PacketRef::decode(opened.packet).unwrap().payload, want);
    }
}

#[test]
fn salvage_older_than_five_seconds_is_not_replayed() {
    let mut b = b_with_session_from_a(ms(0));
    b.send_packet(ms(100), A, &data(B, A, b"old")).unwrap();
    drain(&mut b);
    let mut rng = rng();
    let mut restarted = Vec::new();
    let new_tunnel = TunnelKey::from_bytes(&[0x77; 32]);
    Pila::sign(&identity(A), A, &new_tunnel.public_key(), Trailer::NONE).encode(&mut restarted);
    b.handle_frame(ms(100) + SALVAGE_MAX_AGE, PATH_A, &restarted, &mut rng)
        .unwrap();
    assert_eq!(transmits(&drain(&mut b)).len(), 1, "only the PILA reply");
}

#[test]
fn pilk_from_a_known_node_is_answered_with_pila_and_installs_nothing() {
    let mut b = store(B);
    let mut rng = rng();
    let pilk = Pilk {
        node: A,
        x25519_public: [7; 32],
    }
    .to_bytes();
    assert_eq!(
        b.handle_frame(ms(0), PATH_A, &pilk, &mut rng),
        Ok(FrameOutcome::AwaitingPeerKey)
    );
    b.provide_peer_key(ms(0), A, Some(identity(A).public_key()), &mut rng)
        .unwrap();
    let out = drain(&mut b);
    assert_eq!(transmits(&out), [pila_of(B, Trailer::NONE)]);
    assert!(!b.has_session(A));
    assert!(!b.is_pending(A), "the answer is fire-and-forget");
    assert_eq!(b.poll_timeout(), None);

    // Known now: answered at once.
    assert_eq!(
        b.handle_frame(ms(1_000), PATH_A, &pilk, &mut rng),
        Ok(FrameOutcome::KeyExchange)
    );
    assert_eq!(transmits(&drain(&mut b)).len(), 1);
}

#[test]
fn pilk_from_an_unknown_node_is_refused_and_the_miss_cached_for_3_s() {
    let mut b = store(B);
    let mut rng = rng();
    let pilk = Pilk {
        node: 77,
        x25519_public: [7; 32],
    }
    .to_bytes();
    b.handle_frame(ms(0), PathId(77), &pilk, &mut rng).unwrap();
    assert_eq!(
        drain(&mut b),
        [KexOutput::Event(KexEvent::NeedPeerKey { node: 77 })]
    );
    assert_eq!(
        b.provide_peer_key(ms(0), 77, None, &mut rng),
        Err(KexError::UnknownPeer)
    );
    assert_eq!(
        b.handle_frame(ms(2_999), PathId(77), &pilk, &mut rng),
        Err(KexError::UnknownPeer)
    );
    assert!(drain(&mut b).is_empty());
    assert!(!b.has_session(77));
    assert_eq!(
        b.handle_frame(ms(3_000), PathId(77), &pilk, &mut rng),
        Ok(FrameOutcome::AwaitingPeerKey)
    );
}

#[test]
fn sixth_key_exchange_frame_in_a_second_from_one_path_is_dropped() {
    let mut b = store(B);
    let mut rng = rng();
    let pila = pila_of(A, Trailer::NONE);
    for _ in 0..ratelimit::PATH_FRAMES_PER_SECOND {
        assert!(b.handle_frame(ms(0), PATH_A, &pila, &mut rng).is_ok());
    }
    assert_eq!(
        b.handle_frame(ms(0), PATH_A, &pila, &mut rng),
        Err(KexError::RateLimited)
    );
    assert!(b.handle_frame(ms(0), PATH_B, &pila, &mut rng).is_ok());
}

#[test]
fn inner_source_must_be_the_authenticated_sender() {
    let mut b = b_with_session_from_a(ms(0));
    let mut rng = rng();
    let spoofed = pils_from_a(&data(0x99, B, b"spoof"), [1; 4], 1);
    assert_eq!(
        b.handle_frame(ms(10), PATH_A, &spoofed, &mut rng),
        Err(KexError::SpoofedSource)
    );
    let genuine = pils_from_a(&data(A, B, b"ok"), [1; 4], 2);
    assert_eq!(
        b.handle_frame(ms(10), PATH_A, &genuine, &mut rng),
        Ok(FrameOutcome::Delivered)
    );
    assert_eq!(
        drain(&mut b),
        [KexOutput::Deliver {
            node: A,
            packet: data(A, B, b"ok")
        }]
    );
}

#[test]
fn empty_port_zero_control_is_liveness_only_including_the_legacy_form() {
    let mut b = b_with_session_from_a(ms(0));
    let mut rng = rng();
    let ours = pils_from_a(&packet(A, B, Protocol::Control, 0, &[]), [1; 4], 1);
    let legacy = pils_from_a(&packet(0, B, Protocol::Control, 0, &[]), [1; 4], 2);
    for frame in [ours, legacy] {
        assert_eq!(
            b.handle_frame(ms(10), PATH_A, &frame, &mut rng),
            Ok(FrameOutcome::Keepalive)
        );
    }
    assert!(drain(&mut b).is_empty(), "neither delivered nor answered");
    // A non-empty ping is not a keepalive: delivered for the layer above to answer.
    let ping = pils_from_a(&packet(A, B, Protocol::Control, 0, b"p"), [1; 4], 3);
    assert_eq!(
        b.handle_frame(ms(10), PATH_A, &ping, &mut rng),
        Ok(FrameOutcome::Delivered)
    );
}

#[test]
fn keepalive_is_an_empty_control_packet_to_port_zero_from_our_node() {
    let mut b = b_with_session_from_a(ms(0));
    assert_eq!(b.poll_timeout(), Some(ms(0) + KEEPALIVE_IDLE));
    b.handle_timeout(ms(0) + KEEPALIVE_IDLE);
    let mut frame = transmits(&drain(&mut b)).pop().unwrap();
    let opened = pils::open(&key_ab(), &mut frame).unwrap();
    assert_eq!(opened.nonce.counter(), 1);
    let inner = PacketRef::decode(opened.packet).unwrap();
    assert_eq!(inner.header.protocol, Protocol::Control);
    assert_eq!(inner.header.flags, Flags::NONE);
    assert_eq!((inner.header.src.node, inner.header.dst_port), (B, 0));
    assert!(inner.payload.is_empty());
    assert_eq!(b.poll_timeout(), Some(ms(0) + KEEPALIVE_IDLE * 2));
}

#[test]
fn no_key_pils_is_answered_with_pila_and_pilk_at_most_every_3_s() {
    let mut b = store(B);
    let mut rng = rng();
    let frame = pils_from_a(&data(A, B, b"x"), [1; 4], 1);
    assert_eq!(
        b.handle_frame(ms(0), PATH_A, &frame, &mut rng),
        Err(KexError::NoSession)
    );
    let frames = transmits(&drain(&mut b));
    assert_eq!(frames.len(), 2);
    assert_eq!(
        (&frames[0][..4], &frames[1][..4]),
        (&b"PILA"[..], &b"PILK"[..])
    );
    let _ = b.handle_frame(ms(2_999), PATH_A, &frame, &mut rng);
    assert!(drain(&mut b).is_empty());
    let _ = b.handle_frame(ms(3_000), PATH_A, &frame, &mut rng);
    assert_eq!(transmits(&drain(&mut b)).len(), 2);
}

#[test]
fn rebuilt_session_toward_the_same_key_continues_the_send_counter() {
    let mut b = b_with_session_from_a(ms(0));
    let mut rng = rng();
    for _ in 0..3 {
        b.send_packet(ms(10), A, &data(B, A, b"x")).unwrap();
    }
    let before = peek(&transmits(&drain(&mut b)).pop().unwrap()).unwrap();
    assert_eq!(before.nonce.counter, 3);

    let junk = {
        let mut f = vec![0u8; 60];
        f[..4].copy_from_slice(b"PILS");
        f[4..8].copy_from_slice(&A.to_be_bytes());
        f
    };
    let late = ms(0) + DECRYPT_FAIL_MIN_AGE;
    for _ in 0..DECRYPT_FAIL_DROP_COUNT {
        let _ = b.handle_frame(late, PATH_A, &junk, &mut rng);
    }
    let out = drain(&mut b);
    assert!(!b.has_session(A));
    assert!(out.contains(&KexOutput::Event(KexEvent::SessionDown {
        node: A,
        reason: SessionDownReason::DropGate(DropReason::DecryptFailures)
    })));
    let kinds: Vec<Vec<u8>> = transmits(&out).iter().map(|f| f[..4].to_vec()).collect();
    assert_eq!(
        kinds,
        [b"PILA".to_vec(), b"PILK".to_vec()],
        "eager key request"
    );

    // A answers the key request with its PILA: same peer key, new session object.
    let mut other_rng = ChaCha20Rng::seed_from_u64(99);
    let answer = pila_of(A, Trailer::NONE);
    b.handle_frame(late, PATH_A, &answer, &mut other_rng)
        .unwrap();
    drain(&mut b);
    assert!(b.has_session(A));
    b.send_packet(late, A, &data(B, A, b"y")).unwrap();
    let after = peek(&transmits(&drain(&mut b)).pop().unwrap()).unwrap();
    assert_eq!(after.nonce.counter, 4, "continues, never back to 1");
    assert_ne!(after.nonce.prefix, before.nonce.prefix, "a new send epoch");
}

#[test]
fn replayed_pils_is_rejected_and_frames_with_our_own_node_dropped() {
    let mut b = b_with_session_from_a(ms(0));
    let mut rng = rng();
    let frame = pils_from_a(&data(A, B, b"x"), [1; 4], 1);
    b.handle_frame(ms(1), PATH_A, &frame, &mut rng).unwrap();
    assert_eq!(
        b.handle_frame(ms(2), PATH_A, &frame, &mut rng),
        Err(KexError::Rejected(RecvVerdict::Reject(Reject::Replay)))
    );
    assert_eq!(
        b.handle_frame(ms(2), PATH_B, &pila_of(B, Trailer::NONE), &mut rng),
        Err(KexError::OwnNode)
    );
    assert_eq!(
        b.handle_frame(ms(2), PATH_B, b"PILP", &mut rng),
        Err(KexError::NotKeyExchangeFrame)
    );
}

#[test]
fn send_packet_checks_the_source_and_needs_a_path() {
    let mut a = store(A);
    assert_eq!(
        a.send_packet(ms(0), B, &data(B, A, b"x")),
        Err(KexError::ForeignSource)
    );
    assert_eq!(
        a.send_packet(ms(0), B, &data(A, B, b"x")),
        Err(KexError::NoPath)
    );
    assert!(matches!(
        a.send_packet(ms(0), B, b"short"),
        Err(KexError::MalformedPacket(_))
    ));
}

#[test]
fn retransmits_every_4_s_with_a_key_request_from_the_second_round() {
    let mut a = store(A);
    a.connect(ms(0), B, PATH_B).unwrap();
    assert_eq!(transmits(&drain(&mut a)).len(), 1);
    assert_eq!(a.poll_timeout(), Some(ms(0) + KEY_RETRANSMIT_INTERVAL));
    a.handle_timeout(ms(3_999));
    assert!(drain(&mut a).is_empty());
    a.handle_timeout(ms(4_000));
    let kinds: Vec<Vec<u8>> = transmits(&drain(&mut a))
        .iter()
        .map(|f| f[..4].to_vec())
        .collect();
    assert_eq!(kinds, [b"PILA".to_vec(), b"PILK".to_vec()]);
    // connect again while pending: nothing new is sent.
    a.connect(ms(4_100), B, PATH_A).unwrap();
    assert!(drain(&mut a).is_empty());
    assert_eq!(a.peer_path(B), Some(PATH_A));
}

#[test]
fn connect_with_a_live_session_sends_one_pila_without_retransmission() {
    let mut b = b_with_session_from_a(ms(0));
    b.connect(ms(1_000), A, PATH_B).unwrap();
    assert_eq!(transmits(&drain(&mut b)).len(), 1);
    assert!(!b.is_pending(A));
    // Only the keepalive (counted from install, PILS sends only) is armed.
    assert_eq!(b.poll_timeout(), Some(ms(0) + KEEPALIVE_IDLE));
}
