//! Properties of the key-exchange and encrypted frames (spec §3.3–§3.6, §4).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use pilot_core::crypto::{derive_session_key, Identity, SendState, SessionKey, TunnelKey};
use pilot_core::frame::pila::{Pila, Trailer, PILA_LEN};
use pilot_core::frame::pilk::Pilk;
use pilot_core::frame::pils::{self, PilsError, PILS_HEADER_LEN};
use proptest::prelude::*;

const KEY: [u8; 32] = [0x3e; 32];

fn key() -> SessionKey {
    SessionKey::from_bytes(&KEY)
}

fn sealed(node: u32, prefix: [u8; 4], last: u64, packet: &[u8]) -> Vec<u8> {
    let mut send = SendState::with_fixed_prefix_and_counter_for_replay(prefix, last);
    let mut out = Vec::new();
    pils::seal(&key(), &mut send, node, packet, &mut out).unwrap();
    out
}

/// Arbitrary bytes, sometimes behind a real magic so the decoders get past the first check.
fn frame_bytes(magic: &'static [u8; 4]) -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(move |(with_magic, rest)| {
            if with_magic {
                magic.iter().copied().chain(rest).collect()
            } else {
                rest
            }
        })
}

proptest! {
    #[test]
    fn pilk_decode_never_panics(bytes in frame_bytes(b"PILK")) {
        let _ = Pilk::decode(&bytes);
    }

    #[test]
    fn pila_decode_never_panics(bytes in frame_bytes(b"PILA")) {
        if let Ok(pila) = Pila::decode(&bytes) {
            prop_assert!(bytes.len() >= PILA_LEN);
            let _ = pila.verify(&pila.ed25519_public);
        }
    }

    #[test]
    fn trailer_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
        let _ = Trailer::parse(&bytes);
    }

    #[test]
    fn pils_peek_and_open_never_panic(mut bytes in frame_bytes(b"PILS")) {
        let peeked = pils::peek(&bytes);
        let opened = pils::open(&key(), &mut bytes).map(|o| o.nonce);
        // Random bytes never authenticate; the verdicts of peek and open agree on framing.
        match peeked {
            Ok(_) => prop_assert_eq!(opened, Err(PilsError::Authentication)),
            Err(e) => prop_assert_eq!(opened, Err(e)),
        }
    }

    #[test]
    fn pilk_round_trips(node in any::<u32>(), x25519_public in any::<[u8; 32]>()) {
        let pilk = Pilk { node, x25519_public };
        prop_assert_eq!(Pilk::decode(&pilk.to_bytes()), Ok(pilk));
    }

    #[test]
    fn trailer_round_trips(caps in any::<u64>(), flags in any::<u64>()) {
        let trailer = Trailer { caps, flags };
        let mut bytes = Vec::new();
        trailer.encode(&mut bytes);
        prop_assert_eq!(bytes.is_empty(), caps == 0 && flags == 0);
        prop_assert_eq!(Trailer::parse(&bytes), trailer);
    }

    #[test]
    fn pils_seal_open_round_trips(
        node in any::<u32>(),
        prefix in any::<[u8; 4]>(),
        last in 0..u64::MAX,
        packet in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut frame = sealed(node, prefix, last, &packet);
        prop_assert_eq!(frame.len(), packet.len() + 36);
        let opened = pils::open(&key(), &mut frame).unwrap();
        prop_assert_eq!(opened.sender_node, node);
        prop_assert_eq!(opened.nonce.prefix(), prefix);
        prop_assert_eq!(opened.nonce.counter(), last + 1);
        prop_assert_eq!(opened.packet, &packet[..]);
    }

    #[test]
    fn any_single_bit_flip_after_the_magic_fails_to_open(
        node in any::<u32>(),
        packet in proptest::collection::vec(any::<u8>(), 0..256),
        bit in any::<proptest::sample::Index>(),
    ) {
        let mut frame = sealed(node, [1, 2, 3, 4], 0, &packet);
        // Header fields after the magic are authenticated too: node as AAD, nonce by GCM.
        let bits_after_magic = (frame.len() - 4) * 8;
        let flip = 4 * 8 + bit.index(bits_after_magic);
        frame[flip / 8] ^= 1 << (flip % 8);
        prop_assert_eq!(
            pils::open(&key(), &mut frame).map(|o| o.nonce),
            Err(PilsError::Authentication)
        );
    }

    #[test]
    fn any_single_bit_flip_in_the_ciphertext_or_tag_fails_to_open(
        packet in proptest::collection::vec(any::<u8>(), 0..256),
        bit in any::<proptest::sample::Index>(),
    ) {
        let mut frame = sealed(7, [9, 9, 9, 9], 41, &packet);
        let flip = PILS_HEADER_LEN * 8 + bit.index((frame.len() - PILS_HEADER_LEN) * 8);
        frame[flip / 8] ^= 1 << (flip % 8);
        prop_assert_eq!(
            pils::open(&key(), &mut frame).map(|o| o.nonce),
            Err(PilsError::Authentication)
        );
    }

    #[test]
    fn frame_claiming_another_sender_node_fails(
        node in any::<u32>(),
        other in any::<u32>(),
        packet in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        prop_assume!(node != other);
        let mut frame = sealed(node, [0xa1, 0xa2, 0xa3, 0xa4], 0, &packet);
        frame[4..8].copy_from_slice(&other.to_be_bytes());
        prop_assert_eq!(
            pils::open(&key(), &mut frame).map(|o| o.nonce),
            Err(PilsError::Authentication)
        );
    }
}

proptest! {
    // Signing and X25519 are slow in debug builds: fewer cases.
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn pila_sign_encode_decode_verify_round_trips(
        seed in any::<[u8; 32]>(),
        node in any::<u32>(),
        x25519_public in any::<[u8; 32]>(),
        caps in any::<u64>(),
        flags in any::<u64>(),
    ) {
        let identity = Identity::from_seed(&seed);
        let pila = Pila::sign(&identity, node, &x25519_public, Trailer { caps, flags });
        let mut bytes = Vec::new();
        pila.encode(&mut bytes);
        let decoded = Pila::decode(&bytes).unwrap();
        prop_assert_eq!(decoded, pila);
        prop_assert_eq!(decoded.verify(&identity.public_key()), Ok(()));
    }

    #[test]
    fn both_peers_derive_the_same_session_key(a in any::<[u8; 32]>(), b in any::<[u8; 32]>()) {
        let a = TunnelKey::from_bytes(&a);
        let b = TunnelKey::from_bytes(&b);
        let ab = derive_session_key(&a, &b.public_key()).unwrap();
        let ba = derive_session_key(&b, &a.public_key()).unwrap();
        prop_assert!(ab == ba);
    }
}
