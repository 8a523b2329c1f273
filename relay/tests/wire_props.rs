//! Property tests of the relay's parsers: they return errors instead of panicking on any
//! input, and what the relay encodes it decodes back.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::net::{IpAddr, SocketAddr};

use pilot_relay::auth::{verify_reply, Challenge, TokenPolicy};
use pilot_relay::header;
use pilot_relay::policy::AddressPolicy;
use pilot_relay::token::{self, TokenKey};
use proptest::prelude::*;

fn any_socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::from(ip), port)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::from(ip), port)),
    ]
}

proptest! {
    #[test]
    fn header_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = header::decode(&bytes);
    }

    #[test]
    fn header_round_trips(addr in any_socket_addr(), frame in proptest::collection::vec(any::<u8>(), 0..256)) {
        let message = header::encode(&addr, &frame);
        prop_assert_eq!(message.len(), header::encoded_len(&addr) + frame.len());
        let (decoded, rest) = header::decode(&message).unwrap();
        prop_assert_eq!(decoded, addr);
        prop_assert_eq!(rest, &frame[..]);
    }

    #[test]
    fn policy_never_passes_an_address_its_ranges_refuse(addr in any_socket_addr()) {
        if let Ok(allowed) = AddressPolicy::default().check(addr) {
            prop_assert!(pilot_relay::policy::classify(allowed.ip()).is_none());
            prop_assert_ne!(allowed.port(), 0);
        }
    }

    #[test]
    fn token_verify_never_panics(text in "\\PC{0,300}") {
        let key = TokenKey::new(vec![7; 32]).unwrap();
        let _ = token::verify(&key, &text, 0);
    }

    #[test]
    fn token_round_trips(subject in "[A-Za-z0-9_-]{1,64}", expiry in 1u64..u64::MAX) {
        let key = TokenKey::new(vec![7; 32]).unwrap();
        let minted = token::mint(&key, &subject, expiry).unwrap();
        let claims = token::verify(&key, &minted, expiry - 1).unwrap();
        prop_assert_eq!(claims.expires_unix, expiry);
    }

    #[test]
    fn auth_reply_parse_never_panics(text in "\\PC{0,400}") {
        let challenge = Challenge { kind: "challenge".into(), nonce: "00".repeat(32), ts: 1 };
        let _ = verify_reply(&challenge, &text, &TokenPolicy::Open(None), 0);
    }
}
