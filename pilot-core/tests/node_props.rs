//! Property tests of the node: arbitrary frames, and arbitrary packets authenticated by a
//! real session, never panic it and never grow it past its limits.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use pilot_core::addr::Addr;
use pilot_core::crypto::Identity;
use pilot_core::keyexchange::{KexEvent, KexOutput, KeyExchange, PathId};
use pilot_core::node::{Input, Node, NodeConfig, Output};
use pilot_core::packet::{Flags, Header, PacketRef, Protocol};
use pilot_core::time::Instant;
use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const PEER: u32 = 10;
const NODE: u32 = 11;
const NETWORK: u16 = 1;
/// Bound on frames exchanged to set up one session.
const MAX_ROUNDS: usize = 32;

fn seed(id: u32) -> [u8; 32] {
    [u8::try_from(id).unwrap(); 32]
}

fn node() -> Node<ChaCha20Rng> {
    let config = NodeConfig {
        private: false,
        max_connections: 8,
        ..NodeConfig::default()
    };
    Node::new(
        config,
        Addr::new(NETWORK, NODE),
        &seed(NODE),
        ChaCha20Rng::seed_from_u64(1),
    )
}

/// A key-exchange store posing as the peer, with a session installed at the node.
fn connected() -> (KeyExchange, Node<ChaCha20Rng>, ChaCha20Rng) {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let mut peer = KeyExchange::new(PEER, Identity::from_seed(&seed(PEER)), &mut rng);
    let mut node = node();
    let now = Instant::from_millis(10);
    peer.connect(now, NODE, PathId(u64::from(NODE))).unwrap();
    for _ in 0..MAX_ROUNDS {
        while let Some(out) = peer.poll_output() {
            match out {
                KexOutput::Transmit { frame, .. } => {
                    let input = Input::Frame {
                        path: PathId(u64::from(PEER)),
                        bytes: frame,
                        relay_sender: None,
                    };
                    let _ = node.handle_input(now, input);
                }
                KexOutput::Event(KexEvent::NeedPeerKey { node: id }) => {
                    let key = Identity::from_seed(&seed(id)).public_key();
                    let _ = peer.provide_peer_key(now, id, Some(key), &mut rng);
                }
                _ => {}
            }
        }
        while let Some(out) = node.poll_output() {
            match out {
                Output::Transmit { bytes, .. } => {
                    let _ = peer.handle_frame(now, PathId(u64::from(NODE)), &bytes, &mut rng);
                }
                Output::Event(pilot_core::node::Event::NeedPeerKey { node: id }) => {
                    let key = Identity::from_seed(&seed(id)).public_key();
                    let input = Input::PeerKey {
                        node: id,
                        key: Some(key),
                    };
                    let _ = node.handle_input(now, input);
                }
                Output::Timeout(_) => break,
                Output::Event(_) => {}
            }
        }
        if peer.has_session(NODE) && node.has_session(PEER) {
            return (peer, node, rng);
        }
    }
    panic!("no session");
}

fn drain(node: &mut Node<ChaCha20Rng>) {
    for _ in 0..10_000 {
        match node.poll_output() {
            None | Some(Output::Timeout(_)) => return,
            Some(_) => {}
        }
    }
    panic!("output queue does not drain");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_frames_never_panic(
        prefix in prop::sample::select(vec![&b"PILS"[..], b"PILA", b"PILK", b"PILF", b"PILT", b"PILP", b"\x06", b""]),
        body in prop::collection::vec(any::<u8>(), 0..1500),
        relay in prop::option::of(any::<u32>()),
    ) {
        let mut node = node();
        let mut bytes = prefix.to_vec();
        bytes.extend(body);
        let input = Input::Frame { path: PathId(1), bytes, relay_sender: relay };
        let _ = node.handle_input(Instant::from_millis(5), input);
        drain(&mut node);
        prop_assert_eq!(node.connection_count(), 0);
    }

    #[test]
    fn arbitrary_authenticated_packets_never_panic_or_exceed_limits(
        packets in prop::collection::vec(
            (0u8..16, 0u8..5, any::<u16>(), any::<u16>(), any::<u32>(), any::<u32>(), any::<u16>(),
             prop::collection::vec(any::<u8>(), 0..64), any::<bool>()),
            1..24,
        ),
    ) {
        let (mut peer, mut node, _rng) = connected();
        let mut now = Instant::from_millis(20);
        for (flags, proto, src_port, dst_port, seq, ack, window, payload, stray_dst) in packets {
            let protocol = match proto {
                0 => Protocol::Stream,
                1 => Protocol::Datagram,
                2 => Protocol::Control,
                other => Protocol::Other(other),
            };
            // Steer some packets at real ports so SYNs meet listeners and services.
            let dst_port = if dst_port % 2 == 0 { [7, 444, 1001, 1002][usize::from(dst_port % 4)] } else { dst_port };
            let header = Header {
                flags: Flags::from_bits_truncate(flags),
                protocol,
                src: Addr::new(NETWORK, PEER),
                dst: Addr::new(NETWORK, if stray_dst { 99 } else { NODE }),
                src_port,
                dst_port,
                seq,
                ack,
                window,
            };
            let mut bytes = Vec::new();
            PacketRef::new(header, &payload).encode(&mut bytes).unwrap();
            peer.send_packet(now, NODE, &bytes).unwrap();
            while let Some(out) = peer.poll_output() {
                if let KexOutput::Transmit { frame, .. } = out {
                    let input = Input::Frame {
                        path: PathId(u64::from(PEER)),
                        bytes: frame,
                        relay_sender: None,
                    };
                    let _ = node.handle_input(now, input);
                    drain(&mut node);
                }
            }
            now = now + core::time::Duration::from_millis(50);
            let _ = node.handle_input(now, Input::Tick);
            drain(&mut node);
            prop_assert!(node.connection_count() <= 8);
        }
    }
}

/// Seals `header` (empty payload) from the posing peer and hands it to the node; returns
/// the packets the node answered with, opened by the peer.
fn exchange(
    peer: &mut KeyExchange,
    node: &mut Node<ChaCha20Rng>,
    rng: &mut ChaCha20Rng,
    now: Instant,
    header: Header,
) -> Vec<Vec<u8>> {
    let mut bytes = Vec::new();
    PacketRef::new(header, &[]).encode(&mut bytes).unwrap();
    peer.send_packet(now, NODE, &bytes).unwrap();
    while let Some(out) = peer.poll_output() {
        if let KexOutput::Transmit { frame, .. } = out {
            let path = PathId(u64::from(PEER));
            let input = Input::Frame {
                path,
                bytes: frame,
                relay_sender: None,
            };
            node.handle_input(now, input).unwrap();
        }
    }
    let mut answers = Vec::new();
    while let Some(out) = node.poll_output() {
        match out {
            Output::Transmit { bytes, .. } => {
                let _ = peer.handle_frame(now, PathId(u64::from(NODE)), &bytes, rng);
            }
            Output::Timeout(_) => break,
            Output::Event(_) => {}
        }
    }
    while let Some(out) = peer.poll_output() {
        if let KexOutput::Deliver { packet, .. } = out {
            answers.push(packet);
        }
    }
    answers
}

#[test]
fn duplicate_syn_is_answered_with_the_original_syn_ack_again() {
    let (mut peer, mut node, mut rng) = connected();
    let syn = Header {
        flags: Flags::SYN,
        protocol: Protocol::Stream,
        src: Addr::new(NETWORK, PEER),
        dst: Addr::new(NETWORK, NODE),
        src_port: 50_000,
        dst_port: 7,
        seq: 0,
        ack: 0,
        window: 512,
    };
    // The second SYN comes before the 250 ms SYN-ACK retransmission timer (spec §8.3).
    for at in [20, 100] {
        let answers = exchange(
            &mut peer,
            &mut node,
            &mut rng,
            Instant::from_millis(at),
            syn,
        );
        assert_eq!(answers.len(), 1, "one SYN-ACK per SYN");
        let answer = PacketRef::decode(&answers[0]).unwrap().header;
        assert_eq!(answer.flags, Flags::SYN | Flags::ACK);
        assert_eq!((answer.seq, answer.ack), (0, 1));
        assert_eq!((answer.src_port, answer.dst_port), (7, 50_000));
    }
    assert_eq!(
        node.connection_count(),
        1,
        "the duplicate SYN made no second connection"
    );
}

#[test]
fn the_authenticated_harness_reaches_the_node() {
    // Guards the property above: a SYN sealed by the posing peer opens a connection.
    let (mut peer, mut node, _rng) = connected();
    let now = Instant::from_millis(20);
    let header = Header {
        flags: Flags::SYN,
        protocol: Protocol::Stream,
        src: Addr::new(NETWORK, PEER),
        dst: Addr::new(NETWORK, NODE),
        src_port: 50_000,
        dst_port: 7,
        seq: 0,
        ack: 0,
        window: 512,
    };
    let mut bytes = Vec::new();
    PacketRef::new(header, &[]).encode(&mut bytes).unwrap();
    peer.send_packet(now, NODE, &bytes).unwrap();
    while let Some(out) = peer.poll_output() {
        if let KexOutput::Transmit { frame, .. } = out {
            let path = PathId(u64::from(PEER));
            let input = Input::Frame {
                path,
                bytes: frame,
                relay_sender: None,
            };
            node.handle_input(now, input).unwrap();
        }
    }
    drain(&mut node);
    assert_eq!(node.connection_count(), 1);
}
