//! Pilot addresses and virtual ports (spec §1).
//!
//! An [`Addr`] is 48 bits: a 16-bit network and a 32-bit node. On the wire it is 6 bytes
//! big-endian (spec §1.1); as text it is `N:NNNN.HHHH.LLLL` (spec §1.2). A [`SocketAddr`]
//! adds a 16-bit virtual port.

use core::fmt;
use core::str::FromStr;

/// Length of an address on the wire: u16 network ‖ u32 node (spec §1.1).
pub const ADDR_LEN: usize = 6;

/// Node ID that means "every node of the network" (spec §1.3).
pub const BROADCAST_NODE: u32 = 0xFFFF_FFFF;

/// Number of `.`-separated hex groups after the `:` (spec §1.2 rule 3).
const TEXT_GROUP_COUNT: usize = 3;

/// Characters in every hex group (spec §1.2 rule 3).
const TEXT_GROUP_LEN: usize = 4;

/// Well-known virtual ports (spec §1.4).
///
/// Port 1003 is left out on purpose: its meaning depends on the peer version (task submit in
/// V-FEB/V-FORK, verify in COMMON).
pub mod ports {
    /// Ping and tunnel keepalive, carried by Control packets.
    pub const PING: u16 = 0;
    /// Control channel; a constant only, unused on the wire.
    pub const CONTROL: u16 = 1;
    /// Echo service: every byte is sent back (spec §10.1).
    pub const ECHO: u16 = 7;
    /// Nameserver.
    pub const NAMESERVER: u16 = 53;
    /// HTTP.
    pub const HTTP: u16 = 80;
    /// Secure channel (X25519 + AES-GCM inside a stream); not implemented here.
    pub const SECURE_CHANNEL: u16 = 443;
    /// Trust handshake (spec §9.6).
    pub const TRUST_HANDSHAKE: u16 = 444;
    /// Raw standard I/O, the default port of `pilotctl connect` (spec §10.2).
    pub const STDIO: u16 = 1000;
    /// Data exchange service (spec §10.3).
    pub const DATA_EXCHANGE: u16 = 1001;
    /// Event stream broker (spec §10.4).
    pub const EVENT_STREAM: u16 = 1002;
    /// First port of the registered range (1024–49151).
    pub const REGISTERED_START: u16 = 1024;
    /// First ephemeral port; local ephemeral ports are handed out round-robin from here.
    pub const EPHEMERAL_START: u16 = 49152;
}

/// Why an address or socket address could not be decoded or parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrError {
    /// Binary form shorter than [`ADDR_LEN`] bytes.
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// Text has no `:` between network and node (spec §1.2 rule 1).
    MissingColon,
    /// Network part is not an unsigned decimal that fits 16 bits (spec §1.2 rule 2).
    InvalidNetwork,
    /// Node part does not have exactly three `.`-separated groups (spec §1.2 rule 3).
    WrongGroupCount,
    /// A hex group is not exactly four characters long (spec §1.2 rule 3).
    WrongGroupLength,
    /// A hex group contains something other than `0-9a-fA-F` (spec §1.2 rule 4).
    InvalidHexDigit,
    /// The first hex group differs from the decimal network (spec §1.2 rule 5).
    NetworkMismatch {
        /// The decimal network.
        decimal: u16,
        /// The value of the first hex group.
        hex: u16,
    },
    /// Socket address text has no `:` before the port.
    MissingPort,
    /// Port is not an unsigned decimal that fits 16 bits.
    InvalidPort,
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => {
                write!(f, "address needs {ADDR_LEN} bytes, got {len}")
            }
            Self::MissingColon => f.write_str("address has no ':' (expected N:XXXX.YYYY.YYYY)"),
            Self::InvalidNetwork => f.write_str("network is not a decimal 16-bit number"),
            Self::WrongGroupCount => f.write_str("address needs 3 dot-separated hex groups"),
            Self::WrongGroupLength => f.write_str("hex group is not exactly 4 characters"),
            Self::InvalidHexDigit => f.write_str("hex group contains a non-hex character"),
            Self::NetworkMismatch { decimal, hex } => {
                write!(f, "network mismatch: decimal {decimal} != hex 0x{hex:04X}")
            }
            Self::MissingPort => f.write_str("socket address has no ':' before the port"),
            Self::InvalidPort => f.write_str("port is not a decimal 16-bit number"),
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for AddrError {}

/// A 48-bit Pilot address: network and node (spec §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Addr {
    /// Network ID; 0 is the global backbone.
    pub network: u16,
    /// Node ID, unique within the network.
    pub node: u32,
}

impl Addr {
    /// `0:0000.0000.0000`, the unspecified address.
    pub const ZERO: Addr = Addr::new(0, 0);
    /// `0:0000.0000.0001`, the registry (symbolic; it is reached over TCP, spec §9).
    pub const REGISTRY: Addr = Addr::new(0, 1);
    /// `0:0000.0000.0002`, the beacon (symbolic).
    pub const BEACON: Addr = Addr::new(0, 2);
    /// `0:0000.0000.0003`, the nameserver.
    pub const NAMESERVER: Addr = Addr::new(0, 3);

    /// The address of `node` on `network`.
    pub const fn new(network: u16, node: u32) -> Self {
        Addr { network, node }
    }

    /// The broadcast address of `network` (node `0xFFFFFFFF`).
    ///
    /// Spec §1.3: senders must not broadcast on network 0; that policy belongs to the caller.
    pub const fn broadcast(network: u16) -> Self {
        Addr::new(network, BROADCAST_NODE)
    }

    /// Whether this is the broadcast address of its network.
    pub const fn is_broadcast(&self) -> bool {
        self.node == BROADCAST_NODE
    }

    /// The 6-byte wire form: network (u16 BE) ‖ node (u32 BE).
    pub const fn to_bytes(&self) -> [u8; ADDR_LEN] {
        let [n0, n1] = self.network.to_be_bytes();
        let [h0, h1, h2, h3] = self.node.to_be_bytes();
        [n0, n1, h0, h1, h2, h3]
    }

    /// Reads the 6-byte wire form.
    pub const fn from_bytes(bytes: [u8; ADDR_LEN]) -> Self {
        let [n0, n1, h0, h1, h2, h3] = bytes;
        Addr::new(
            u16::from_be_bytes([n0, n1]),
            u32::from_be_bytes([h0, h1, h2, h3]),
        )
    }

    /// Decodes the first [`ADDR_LEN`] bytes of `buf`; bytes after them are not read.
    pub fn decode(buf: &[u8]) -> Result<Self, AddrError> {
        let bytes = buf
            .first_chunk::<ADDR_LEN>()
            .ok_or(AddrError::TooShort { len: buf.len() })?;
        Ok(Addr::from_bytes(*bytes))
    }
}

impl fmt::Display for Addr {
    /// Canonical text form with upper-case hex (spec §1.2).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{:04X}.{:04X}.{:04X}",
            self.network,
            self.network,
            self.node >> 16,
            self.node & 0xFFFF
        )
    }
}

impl FromStr for Addr {
    type Err = AddrError;

    /// Accepts exactly the grammar of spec §1.2.
    fn from_str(s: &str) -> Result<Self, AddrError> {
        // Rule 1: the first ':' separates network from node; any later ':' stays in the node
        // part and fails the group checks.
        let (network_text, node_text) = s.split_once(':').ok_or(AddrError::MissingColon)?;
        let network = parse_decimal_u16(network_text).ok_or(AddrError::InvalidNetwork)?;

        // Rule 3: count the groups before looking inside them, so "0:..." is a count error.
        if node_text.split('.').count() != TEXT_GROUP_COUNT {
            return Err(AddrError::WrongGroupCount);
        }
        let mut groups = [0u16; TEXT_GROUP_COUNT];
        for (slot, text) in groups.iter_mut().zip(node_text.split('.')) {
            *slot = parse_hex_group(text)?;
        }
        let [net_group, high, low] = groups;

        if net_group != network {
            return Err(AddrError::NetworkMismatch {
                decimal: network,
                hex: net_group,
            });
        }
        Ok(Addr::new(network, (u32::from(high) << 16) | u32::from(low)))
    }
}

/// A Pilot address plus a virtual port, written `<addr>:<port>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SocketAddr {
    /// The node's address.
    pub addr: Addr,
    /// The virtual port (spec §1.4).
    pub port: u16,
}

impl SocketAddr {
    /// `addr` at `port`.
    pub const fn new(addr: Addr, port: u16) -> Self {
        SocketAddr { addr, port }
    }
}

impl fmt::Display for SocketAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.addr, self.port)
    }
}

impl FromStr for SocketAddr {
    type Err = AddrError;

    /// Splits at the last `:` (spec §1.2) and parses both halves.
    fn from_str(s: &str) -> Result<Self, AddrError> {
        let (addr_text, port_text) = s.rsplit_once(':').ok_or(AddrError::MissingPort)?;
        let addr = addr_text.parse()?;
        let port = parse_decimal_u16(port_text).ok_or(AddrError::InvalidPort)?;
        Ok(SocketAddr::new(addr, port))
    }
}

/// Unsigned decimal, ASCII digits only, leading zeros allowed; `None` if empty or > u16::MAX.
///
/// Hand-written because `u16::from_str` also accepts a leading `+`, which spec §1.2 rejects.
fn parse_decimal_u16(text: &str) -> Option<u16> {
    if text.is_empty() {
        return None;
    }
    text.bytes().try_fold(0u16, |acc, b| {
        let digit = char::from(b).to_digit(10)?;
        acc.checked_mul(10)?.checked_add(u16::try_from(digit).ok()?)
    })
}

/// Exactly four hex characters, either case (spec §1.2 rules 3 and 4).
fn parse_hex_group(text: &str) -> Result<u16, AddrError> {
    if text.len() != TEXT_GROUP_LEN {
        return Err(AddrError::WrongGroupLength);
    }
    text.bytes().try_fold(0u16, |acc, b| {
        let digit = char::from(b)
            .to_digit(16)
            .ok_or(AddrError::InvalidHexDigit)?;
        // Four digits of at most 0xF cannot overflow 16 bits.
        Ok((acc << 4) | u16::try_from(digit).map_err(|_| AddrError::InvalidHexDigit)?)
    })
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )]

    use super::*;
    use alloc::string::ToString;

    #[test]
    fn spec_worked_examples_print_canonically() {
        assert_eq!(Addr::new(1, 0xF291_0004).to_string(), "1:0001.F291.0004");
        assert_eq!(Addr::new(0, 1).to_string(), "0:0000.0000.0001");
        assert_eq!(Addr::new(513, 0xABCD).to_string(), "513:0201.0000.ABCD");
    }

    #[test]
    fn binary_round_trip_is_big_endian() {
        let addr = Addr::new(0x1234, 0x5678_9ABC);
        assert_eq!(addr.to_bytes(), [0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC]);
        assert_eq!(Addr::from_bytes(addr.to_bytes()), addr);
    }

    #[test]
    fn decode_rejects_short_buffers_and_ignores_extra_bytes() {
        assert_eq!(
            Addr::decode(&[0, 1, 2, 3, 4]),
            Err(AddrError::TooShort { len: 5 })
        );
        assert_eq!(Addr::decode(&[]), Err(AddrError::TooShort { len: 0 }));
        assert_eq!(Addr::decode(&[0, 1, 0, 0, 0, 2, 0xFF]), Ok(Addr::new(1, 2)));
    }

    #[test]
    fn plus_sign_is_rejected_where_rust_parsers_would_accept_it() {
        assert_eq!(
            "+1:0001.0000.0001".parse::<Addr>(),
            Err(AddrError::InvalidNetwork)
        );
        assert_eq!(
            "0:0000.+000.0001".parse::<Addr>(),
            Err(AddrError::InvalidHexDigit)
        );
        assert_eq!(
            "0:0000.0000.0001:+7".parse::<SocketAddr>(),
            Err(AddrError::InvalidPort)
        );
    }

    #[test]
    fn network_group_must_match_decimal() {
        assert_eq!(
            "1:00A3.F291.0004".parse::<Addr>(),
            Err(AddrError::NetworkMismatch {
                decimal: 1,
                hex: 0xA3
            })
        );
    }

    #[test]
    fn group_count_and_length_are_exact() {
        assert_eq!(
            "0:0000.0001".parse::<Addr>(),
            Err(AddrError::WrongGroupCount)
        );
        assert_eq!(
            "0:0000.0000.0000.0001".parse::<Addr>(),
            Err(AddrError::WrongGroupCount)
        );
        assert_eq!(
            "0:000.0000.0001".parse::<Addr>(),
            Err(AddrError::WrongGroupLength)
        );
        // Four bytes but not four ASCII characters: still not hex.
        assert_eq!(
            "0:0000.0000.00é".parse::<Addr>(),
            Err(AddrError::InvalidHexDigit)
        );
    }

    #[test]
    fn network_overflow_is_rejected() {
        assert_eq!(
            "65536:0000.0000.0001".parse::<Addr>(),
            Err(AddrError::InvalidNetwork)
        );
        assert_eq!(
            "65535:FFFF.0000.0001".parse::<Addr>(),
            Ok(Addr::new(65535, 1))
        );
    }

    #[test]
    fn socket_addr_splits_at_last_colon() {
        let sa: SocketAddr = "1:0001.F291.0004:1001".parse().unwrap();
        assert_eq!(
            sa,
            SocketAddr::new(Addr::new(1, 0xF291_0004), ports::DATA_EXCHANGE)
        );
        assert_eq!(sa.to_string(), "1:0001.F291.0004:1001");
        assert_eq!(
            "0:0000.0000.0002".parse::<SocketAddr>(),
            Err(AddrError::MissingColon)
        );
        assert_eq!("nothing".parse::<SocketAddr>(), Err(AddrError::MissingPort));
    }

    #[test]
    fn broadcast_is_all_ones_node() {
        assert!(Addr::broadcast(1).is_broadcast());
        assert_eq!(Addr::broadcast(1).to_string(), "1:0001.FFFF.FFFF");
        assert!(!Addr::REGISTRY.is_broadcast());
    }
}
