//! The address header that prefixes every binary message on `/v1/relay`.
//!
//! Client → relay it names the destination of the datagram, relay → client its source:
//! `family (1: 4 or 6) ‖ IP (4 or 16 bytes) ‖ port (u16 BE) ‖ frame`. One message is one
//! datagram; the frame bytes are passed through unchanged.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Family byte of an IPv4 header.
pub const FAMILY_V4: u8 = 4;
/// Family byte of an IPv6 header.
pub const FAMILY_V6: u8 = 6;
/// Length of a header carrying an IPv4 address: family, 4 address bytes, port.
pub const V4_HEADER_BYTES: usize = 1 + 4 + 2;
/// Length of a header carrying an IPv6 address: family, 16 address bytes, port.
pub const V6_HEADER_BYTES: usize = 1 + 16 + 2;

/// Why a binary message could not be split into address and frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// The message was empty.
    Empty,
    /// The family byte was neither 4 nor 6.
    UnknownFamily(u8),
    /// The message ended inside the address or port.
    Truncated,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty message"),
            Self::UnknownFamily(b) => write!(f, "unknown address family byte {b}"),
            Self::Truncated => f.write_str("message ends inside the address header"),
        }
    }
}

impl std::error::Error for HeaderError {}

/// Splits a binary message into the address it names and the frame that follows.
pub fn decode(message: &[u8]) -> Result<(SocketAddr, &[u8]), HeaderError> {
    let (&family, rest) = message.split_first().ok_or(HeaderError::Empty)?;
    let ip_len = match family {
        FAMILY_V4 => 4,
        FAMILY_V6 => 16,
        other => return Err(HeaderError::UnknownFamily(other)),
    };
    let (ip_bytes, rest) = rest
        .split_at_checked(ip_len)
        .ok_or(HeaderError::Truncated)?;
    let (port_bytes, frame) = rest.split_at_checked(2).ok_or(HeaderError::Truncated)?;
    let port = u16::from_be_bytes(port_bytes.try_into().map_err(|_| HeaderError::Truncated)?);
    let ip = if let Ok(v4) = <[u8; 4]>::try_from(ip_bytes) {
        IpAddr::V4(Ipv4Addr::from(v4))
    } else {
        let v6 = <[u8; 16]>::try_from(ip_bytes).map_err(|_| HeaderError::Truncated)?;
        IpAddr::V6(Ipv6Addr::from(v6))
    };
    Ok((SocketAddr::new(ip, port), frame))
}

/// Length of the header that [`encode`] writes for `addr`.
pub fn encoded_len(addr: &SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => V4_HEADER_BYTES,
        SocketAddr::V6(_) => V6_HEADER_BYTES,
    }
}

/// Builds one message: the header for `addr` followed by `frame`.
pub fn encode(addr: &SocketAddr, frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(addr) + frame.len());
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.push(FAMILY_V4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(FAMILY_V6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
    out.extend_from_slice(frame);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn v4_round_trips() {
        let addr: SocketAddr = "198.51.100.7:41000".parse().unwrap();
        let msg = encode(&addr, b"PILS1234");
        assert_eq!(msg.len(), V4_HEADER_BYTES + 8);
        assert_eq!(&msg[..V4_HEADER_BYTES], &[4, 198, 51, 100, 7, 0xa0, 0x28]);
        assert_eq!(decode(&msg).unwrap(), (addr, &b"PILS1234"[..]));
    }

    #[test]
    fn v6_round_trips() {
        let addr: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
        let msg = encode(&addr, b"");
        assert_eq!(msg.len(), V6_HEADER_BYTES);
        assert_eq!(decode(&msg).unwrap(), (addr, &b""[..]));
    }

    #[test]
    fn malformed_headers_are_errors() {
        assert_eq!(decode(&[]), Err(HeaderError::Empty));
        assert_eq!(decode(&[5, 1, 2]), Err(HeaderError::UnknownFamily(5)));
        assert_eq!(decode(&[4, 127, 0, 0, 1, 0]), Err(HeaderError::Truncated));
        assert_eq!(decode(&[6; 18]), Err(HeaderError::Truncated));
    }

    #[test]
    fn decode_never_panics_on_any_short_input() {
        for len in 0..40 {
            for fill in [0u8, 4, 6, 0xff] {
                let _ = decode(&vec![fill; len]);
            }
        }
    }
}
