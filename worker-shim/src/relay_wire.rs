//! The client side of the relay protocol (`relay/PROTOCOL.md`): the challenge/auth exchange
//! of §2 and the address header of §3 that prefixes every datagram.
//!
//! Pure functions over bytes and strings, so they are tested natively; the Worker's
//! transport feeds them what its WebSocket receives.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use pilot_core::crypto::Identity;
use serde::{Deserialize, Serialize};

/// WebSocket subprotocol of the datagram relay (`/v1/relay`, PROTOCOL.md §1).
pub const RELAY_SUBPROTOCOL: &str = "pilot-relay.v1";
/// WebSocket subprotocol of the registry pipe (`/v1/registry`, PROTOCOL.md §6).
pub const REGISTRY_SUBPROTOCOL: &str = "pilot-registry.v1";
/// Prefix of the signed auth string (PROTOCOL.md §2): binds the signature to the relay.
pub const AUTH_CONTEXT: &str = "pilot-relay-auth-v1";
/// Family byte of an IPv4 address header.
pub const FAMILY_V4: u8 = 4;
/// Family byte of an IPv6 address header.
pub const FAMILY_V6: u8 = 6;

/// Why a relay message was not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayWireError {
    /// A binary message was empty.
    Empty,
    /// The family byte was neither 4 nor 6.
    UnknownFamily(u8),
    /// The message ended inside the address header.
    Truncated,
    /// A text message was not the JSON the protocol defines at this point.
    UnexpectedText(String),
    /// The challenge nonce is not 64 lowercase hex digits.
    BadNonce,
}

impl fmt::Display for RelayWireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty relay message"),
            Self::UnknownFamily(b) => write!(f, "unknown address family byte {b}"),
            Self::Truncated => f.write_str("relay message ends inside the address header"),
            Self::UnexpectedText(detail) => write!(f, "unexpected relay text message: {detail}"),
            Self::BadNonce => f.write_str("relay challenge nonce is not 64 lowercase hex digits"),
        }
    }
}

/// A control message from the relay (PROTOCOL.md §2).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RelayControl {
    /// First message of a session: sign `nonce` and `ts`.
    Challenge {
        /// 64 lowercase hex digits.
        nonce: String,
        /// The relay's Unix seconds, echoed into the signed string.
        ts: u64,
    },
    /// Authentication succeeded: the session's UDP endpoint.
    Ready {
        /// `<ip>:<port>` as peers see it.
        udp_addr: String,
        /// Largest frame the relay forwards.
        #[serde(default)]
        max_frame_bytes: Option<u32>,
        /// Seconds without traffic before the relay closes the session.
        #[serde(default)]
        idle_timeout_secs: Option<u64>,
    },
}

/// Parses a text message of the relay.
pub fn parse_control(text: &str) -> Result<RelayControl, RelayWireError> {
    serde_json::from_str(text).map_err(|e| RelayWireError::UnexpectedText(e.to_string()))
}

#[derive(Serialize)]
struct AuthReply<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    public_key: String,
    sig: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
}

/// The auth reply to a challenge: the identity's key, its signature over
/// `pilot-relay-auth-v1:<nonce>:<ts>`, and the token if one is configured.
pub fn auth_reply(
    identity: &Identity,
    nonce: &str,
    ts: u64,
    token: Option<&str>,
) -> Result<String, RelayWireError> {
    let valid = nonce.len() == 64
        && nonce
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !valid {
        return Err(RelayWireError::BadNonce);
    }
    let signed = alloc::format!("{AUTH_CONTEXT}:{nonce}:{ts}");
    let reply = AuthReply {
        kind: "auth",
        public_key: BASE64.encode(identity.public_key()),
        sig: BASE64.encode(identity.sign(signed.as_bytes())),
        token,
    };
    serde_json::to_string(&reply).map_err(|e| RelayWireError::UnexpectedText(e.to_string()))
}

/// Splits a binary relay message into the peer's UDP address and the frame.
pub fn decode_datagram(message: &[u8]) -> Result<(SocketAddr, &[u8]), RelayWireError> {
    let (&family, rest) = message.split_first().ok_or(RelayWireError::Empty)?;
    let (ip, rest) = match family {
        FAMILY_V4 => {
            let (ip, rest) = split::<4>(rest)?;
            (IpAddr::V4(Ipv4Addr::from(ip)), rest)
        }
        FAMILY_V6 => {
            let (ip, rest) = split::<16>(rest)?;
            (IpAddr::V6(Ipv6Addr::from(ip)), rest)
        }
        other => return Err(RelayWireError::UnknownFamily(other)),
    };
    let (port, frame) = split::<2>(rest)?;
    Ok((SocketAddr::new(ip, u16::from_be_bytes(port)), frame))
}

fn split<const N: usize>(bytes: &[u8]) -> Result<([u8; N], &[u8]), RelayWireError> {
    let (head, rest) = bytes.split_at_checked(N).ok_or(RelayWireError::Truncated)?;
    let head = <[u8; N]>::try_from(head).map_err(|_| RelayWireError::Truncated)?;
    Ok((head, rest))
}

/// Prefixes `frame` with the destination header. IPv4-mapped IPv6 addresses go out as
/// family 4, the form the relay reports them in.
pub fn encode_datagram(to: SocketAddr, frame: &[u8]) -> Vec<u8> {
    let ip = match to.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    let mut out = Vec::with_capacity(19 + frame.len());
    match ip {
        IpAddr::V4(v4) => {
            out.push(FAMILY_V4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(FAMILY_V6);
            out.extend_from_slice(&v6.octets());
        }
    }
    out.extend_from_slice(&to.port().to_be_bytes());
    out.extend_from_slice(frame);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn datagram_header_round_trips_through_the_relays_decoder() {
        for to in [
            "198.51.100.7:41000",
            "[2001:db8::1]:9",
            "[::ffff:10.0.0.1]:5",
        ] {
            let to: SocketAddr = to.parse().unwrap();
            let encoded = encode_datagram(to, b"PILS-frame");
            let (from, frame) = pilot_relay::header::decode(&encoded).unwrap();
            assert_eq!(frame, b"PILS-frame");
            let (ours, our_frame) = decode_datagram(&encoded).unwrap();
            assert_eq!(ours, from);
            assert_eq!(our_frame, frame);
        }
    }

    #[test]
    fn mapped_ipv6_destination_is_sent_as_family_4() {
        let to: SocketAddr = "[::ffff:192.0.2.1]:7".parse().unwrap();
        assert_eq!(encode_datagram(to, b"")[..7], [4, 192, 0, 2, 1, 0, 7]);
    }

    #[test]
    fn decoding_the_relays_encoding_gives_its_address() {
        let from: SocketAddr = "203.0.113.9:4000".parse().unwrap();
        let message = pilot_relay::header::encode(&from, b"PILA");
        assert_eq!(decode_datagram(&message).unwrap(), (from, &b"PILA"[..]));
    }

    #[test]
    fn short_or_unknown_headers_are_refused_without_panicking() {
        assert_eq!(decode_datagram(&[]), Err(RelayWireError::Empty));
        assert_eq!(
            decode_datagram(&[5, 1]),
            Err(RelayWireError::UnknownFamily(5))
        );
        assert_eq!(
            decode_datagram(&[4, 1, 2, 3, 4, 0]),
            Err(RelayWireError::Truncated)
        );
        assert_eq!(decode_datagram(&[6; 18]), Err(RelayWireError::Truncated));
    }

    #[test]
    fn auth_reply_verifies_at_the_relay() {
        let identity = Identity::from_seed(&[7; 32]);
        let nonce = "ab".repeat(32);
        let text = auth_reply(&identity, &nonce, 1_700_000_000, Some("tok")).unwrap();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["type"], "auth");
        assert_eq!(json["token"], "tok");
        let signed = pilot_relay::auth::signed_string(&nonce, 1_700_000_000);
        let sig: [u8; 64] = BASE64
            .decode(json["sig"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        pilot_core::crypto::verify_signature(&identity.public_key(), signed.as_bytes(), &sig)
            .unwrap();
    }

    #[test]
    fn auth_reply_omits_an_absent_token_and_refuses_odd_nonces() {
        let identity = Identity::from_seed(&[7; 32]);
        let text = auth_reply(&identity, &"0".repeat(64), 1, None).unwrap();
        assert!(!text.contains("token"));
        assert_eq!(
            auth_reply(&identity, &"A".repeat(64), 1, None),
            Err(RelayWireError::BadNonce)
        );
        assert_eq!(
            auth_reply(&identity, "00", 1, None),
            Err(RelayWireError::BadNonce)
        );
    }

    #[test]
    fn control_messages_parse() {
        let ready = parse_control(
            r#"{"type":"ready","udp_addr":"127.0.0.1:5000","max_frame_bytes":65535,"idle_timeout_secs":300}"#,
        )
        .unwrap();
        assert!(
            matches!(ready, RelayControl::Ready { ref udp_addr, .. } if udp_addr == "127.0.0.1:5000")
        );
        let challenge = parse_control(r#"{"type":"challenge","nonce":"x","ts":3}"#).unwrap();
        assert_eq!(
            challenge,
            RelayControl::Challenge {
                nonce: "x".into(),
                ts: 3
            }
        );
        assert!(parse_control("{\"type\":\"other\"}").is_err());
        assert!(parse_control("not json").is_err());
    }
}
