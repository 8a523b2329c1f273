//! Property tests for addresses (spec §1): no panics, binary and text round trips, and the
//! text grammar checked against an independent model of spec §1.2.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use pilot_core::addr::{Addr, SocketAddr, ADDR_LEN};
use proptest::prelude::*;

fn any_addr() -> impl Strategy<Value = Addr> {
    (any::<u16>(), any::<u32>()).prop_map(|(network, node)| Addr::new(network, node))
}

/// Spec §1.2 restated without sharing code with the parser: the set of accepted strings.
fn model_parse(s: &str) -> Option<Addr> {
    let (net, rest) = s.split_once(':')?;
    if net.is_empty() || !net.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Digits only were checked above, so std's parser (which would take a '+') is safe here.
    let network: u16 = net.parse().ok()?;
    let groups: Vec<&str> = rest.split('.').collect();
    if groups.len() != 3 {
        return None;
    }
    let mut values = [0u16; 3];
    for (value, group) in values.iter_mut().zip(&groups) {
        if group.len() != 4 || !group.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        *value = u16::from_str_radix(group, 16).ok()?;
    }
    (values[0] == network)
        .then(|| Addr::new(network, (u32::from(values[1]) << 16) | u32::from(values[2])))
}

proptest! {
    #[test]
    fn text_round_trips_for_every_address(addr in any_addr()) {
        let text = addr.to_string();
        prop_assert_eq!(text.parse::<Addr>(), Ok(addr));
        // Lower-case hex is accepted too and means the same address.
        prop_assert_eq!(text.to_ascii_lowercase().parse::<Addr>(), Ok(addr));
        prop_assert_eq!(model_parse(&text), Some(addr));
    }

    #[test]
    fn binary_round_trips_for_every_address(addr in any_addr()) {
        prop_assert_eq!(Addr::from_bytes(addr.to_bytes()), addr);
        prop_assert_eq!(Addr::decode(&addr.to_bytes()), Ok(addr));
    }

    #[test]
    fn decode_takes_exactly_the_first_six_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
        match Addr::decode(&bytes) {
            Ok(addr) => prop_assert_eq!(&addr.to_bytes()[..], &bytes[..ADDR_LEN]),
            Err(_) => prop_assert!(bytes.len() < ADDR_LEN),
        }
    }

    #[test]
    fn parser_agrees_with_the_grammar_on_arbitrary_text(s in ".{0,24}") {
        prop_assert_eq!(s.parse::<Addr>().ok(), model_parse(&s));
    }

    #[test]
    fn parser_agrees_with_the_grammar_on_address_like_text(
        s in "[+0-9]{0,6}:[0-9a-fA-F+_x ]{0,5}(\\.[0-9a-fA-F+_x ]{0,5}){0,4}"
    ) {
        prop_assert_eq!(s.parse::<Addr>().ok(), model_parse(&s));
    }

    #[test]
    fn accepted_text_reprints_canonically(s in "[0-9]{1,6}:[0-9a-fA-F]{4}\\.[0-9a-fA-F]{4}\\.[0-9a-fA-F]{4}") {
        if let Ok(addr) = s.parse::<Addr>() {
            let canonical = addr.to_string();
            prop_assert_eq!(canonical.parse::<Addr>(), Ok(addr));
            prop_assert_eq!(canonical.to_ascii_uppercase(), canonical);
        }
    }

    #[test]
    fn socket_addr_round_trips(addr in any_addr(), port in any::<u16>()) {
        let socket = SocketAddr::new(addr, port);
        prop_assert_eq!(socket.to_string().parse::<SocketAddr>(), Ok(socket));
    }

    #[test]
    fn socket_parser_never_panics(s in ".{0,32}") {
        if let Ok(socket) = s.parse::<SocketAddr>() {
            prop_assert_eq!(socket.to_string().parse::<SocketAddr>(), Ok(socket));
        }
    }
}
