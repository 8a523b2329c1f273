//! Cross-layer scenario: PILS open + receive state, fed forged and replayed frames.
//!
//! The V-FEB/V-FORK daemons record a counter in the replay window before the AEAD check, so a
//! single forged PILS with a huge counter pins the window and every genuine frame after it is
//! "outside window". Spec §5.2 (V-NEW) authenticates first; these tests pin that behaviour
//! through the public API, from frame bytes to verdicts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use pilot_core::addr::Addr;
use pilot_core::crypto::{derive_session_key, SendState, SessionKey, TunnelKey};
use pilot_core::frame::pils::{self, PilsError};
use pilot_core::packet::{Flags, Header, PacketRef, Protocol};
use pilot_core::replay::{GateVerdict, ReceiveState, RecvVerdict};
use pilot_core::time::Instant;

const NODE_A: u32 = 0x0001_2345;
const NODE_B: u32 = 0x0000_abcd;

/// The session key both sides derive (RFC 7748 §6.1 keys, as in the vectors).
fn session_pair() -> (SessionKey, SessionKey) {
    let alice = TunnelKey::from_bytes(&[0x77; 32]);
    let bob = TunnelKey::from_bytes(&[0x5d; 32]);
    let a = derive_session_key(&alice, &bob.public_key()).unwrap();
    let b = derive_session_key(&bob, &alice.public_key()).unwrap();
    assert!(a == b, "both sides must derive the same key");
    (a, b)
}

fn packet(seq: u32, payload: &[u8]) -> Vec<u8> {
    let header = Header {
        flags: Flags::ACK,
        protocol: Protocol::Stream,
        src: Addr::new(0, NODE_A),
        dst: Addr::new(0, NODE_B),
        src_port: 49152,
        dst_port: 7,
        seq,
        ack: 1,
        window: 512,
    };
    let mut out = Vec::new();
    PacketRef { header, payload }.encode(&mut out).unwrap();
    out
}

fn seal(key: &SessionKey, send: &mut SendState, packet: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    pils::seal(key, send, NODE_A, packet, &mut frame).unwrap();
    frame
}

/// A PILS frame with a chosen nonce and ciphertext that no key produced.
fn forged(prefix: [u8; 4], counter: u64) -> Vec<u8> {
    let mut frame = b"PILS".to_vec();
    frame.extend_from_slice(&NODE_A.to_be_bytes());
    frame.extend_from_slice(&prefix);
    frame.extend_from_slice(&counter.to_be_bytes());
    frame.extend((0..60u8).map(|i| i.wrapping_mul(37)));
    frame
}

/// Opens a frame and feeds the verdict to the receive state, as an engine would.
fn receive(
    key: &SessionKey,
    state: &mut ReceiveState,
    mut frame: Vec<u8>,
    now: Instant,
) -> Result<(RecvVerdict, Vec<u8>), GateVerdict> {
    match pils::open(key, &mut frame) {
        Ok(opened) => {
            let packet = opened.packet.to_vec();
            Ok((state.on_authenticated(opened.nonce, now), packet))
        }
        Err(PilsError::Authentication) => Err(state.on_auth_failure(now)),
        Err(other) => panic!("unexpected decode error {other}"),
    }
}

#[test]
fn forged_high_counter_does_not_move_window() {
    let (key_a, key_b) = session_pair();
    let mut send = SendState::with_fixed_prefix_for_replay([1, 2, 3, 4]);
    let mut state = ReceiveState::new(Instant::ZERO);
    let first = packet(1, b"first");
    let second = packet(6, b"second");

    let (verdict, _) = receive(
        &key_b,
        &mut state,
        seal(&key_a, &mut send, &first),
        Instant::from_millis(1),
    )
    .unwrap();
    assert!(verdict.is_deliver());
    assert_eq!(state.epochs().newest_window().unwrap().max(), 1);

    let gate = receive(
        &key_b,
        &mut state,
        forged([1, 2, 3, 4], 1 << 63),
        Instant::from_millis(2),
    )
    .unwrap_err();
    assert_eq!(gate, GateVerdict::Keep);
    assert_eq!(
        state.epochs().newest_window().unwrap().max(),
        1,
        "forged counter moved the window"
    );
    assert_eq!(state.faults().decrypt_fail_count(), 1);

    let (verdict, delivered) = receive(
        &key_b,
        &mut state,
        seal(&key_a, &mut send, &second),
        Instant::from_millis(3),
    )
    .unwrap();
    assert!(
        verdict.is_deliver(),
        "genuine frame after the forgery was refused: {verdict:?}"
    );
    assert_eq!(delivered, second);
    assert_eq!(state.epochs().newest_window().unwrap().max(), 2);
    assert_eq!(
        state.faults().decrypt_fail_count(),
        0,
        "a genuine frame resets the failure count"
    );
}

#[test]
fn forged_frame_with_unseen_prefix_does_not_begin_an_epoch() {
    let (key_a, key_b) = session_pair();
    let mut send = SendState::with_fixed_prefix_for_replay([1, 2, 3, 4]);
    let mut state = ReceiveState::new(Instant::ZERO);

    receive(
        &key_b,
        &mut state,
        seal(&key_a, &mut send, &packet(1, b"x")),
        Instant::ZERO,
    )
    .unwrap();
    receive(
        &key_b,
        &mut state,
        forged([9, 9, 9, 9], u64::MAX),
        Instant::ZERO,
    )
    .unwrap_err();

    assert_eq!(state.epochs().begun_count(), 1);
    assert_eq!(state.epochs().newest_prefix(), Some([1, 2, 3, 4]));
}

#[test]
fn replayed_genuine_frame_is_delivered_once() {
    let (key_a, key_b) = session_pair();
    let mut send = SendState::with_fixed_prefix_for_replay([1, 2, 3, 4]);
    let mut state = ReceiveState::new(Instant::ZERO);
    let frame = seal(&key_a, &mut send, &packet(1, b"once"));

    let (first, _) = receive(&key_b, &mut state, frame.clone(), Instant::ZERO).unwrap();
    let (again, _) = receive(&key_b, &mut state, frame, Instant::ZERO).unwrap();

    assert!(first.is_deliver());
    assert!(!again.is_deliver(), "replay was delivered: {again:?}");
}

#[test]
fn five_forgeries_drop_the_session_only_after_the_grace_period() {
    let (_, key_b) = session_pair();
    let mut state = ReceiveState::new(Instant::ZERO);

    // spec §5.3: 5 consecutive decrypt failures and a session at least 3 s old.
    for counter in 1..=5 {
        let gate = receive(
            &key_b,
            &mut state,
            forged([1, 1, 1, 1], counter),
            Instant::from_millis(2_000),
        )
        .unwrap_err();
        assert_eq!(
            gate,
            GateVerdict::Keep,
            "gate fired inside the grace period"
        );
    }
    let gate = receive(
        &key_b,
        &mut state,
        forged([1, 1, 1, 1], 6),
        Instant::from_millis(3_000),
    )
    .unwrap_err();
    assert!(
        matches!(gate, GateVerdict::Drop(_)),
        "gate did not fire: {gate:?}"
    );
}
