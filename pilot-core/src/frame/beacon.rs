//! Beacon messages: discovery, hole punching and the relay envelope (spec §7.2–§7.4).
//!
//! Beacon messages share the tunnel socket with tunnel frames and are told apart by their
//! first byte, a code below 0x10 (spec §3.1). Every integer is big-endian.
//!
//! | code | message | after the code byte |
//! |---|---|---|
//! | 0x01 | Discover | node ID, optionally ‖ Ed25519 public key (32) |
//! | 0x02 | DiscoverReply | iplen (4 or 16) ‖ ip ‖ port |
//! | 0x03 | PunchRequest | requester ‖ target, optionally ‖ expiry (u64) ‖ signature (64) |
//! | 0x04 | PunchCommand | iplen ‖ ip ‖ port |
//! | 0x05 | Relay | sender ‖ destination ‖ frame |
//! | 0x06 | RelayDeliver | sender ‖ frame |
//! | 0x07 | Sync | beacon ID ‖ count (u16) ‖ node ID × count |
//!
//! Decoding borrows from the datagram. Fixed layouts check a minimum length and ignore
//! trailing bytes, as the reference readers do (an optional part is present when its bytes
//! are); Sync must match its count exactly, since the count is stated on the wire. The
//! sender of a relay envelope is whatever the sending node wrote: the beacon does not check
//! it (spec §7.3), so it is a hint until the inner frame authenticates.

use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Discover: a node announces itself and learns its public address.
pub const CODE_DISCOVER: u8 = 0x01;
/// DiscoverReply: the address the beacon observed.
pub const CODE_DISCOVER_REPLY: u8 = 0x02;
/// PunchRequest: a node asks the beacon to coordinate a hole punch.
pub const CODE_PUNCH_REQUEST: u8 = 0x03;
/// PunchCommand: the beacon tells a node where to punch.
pub const CODE_PUNCH_COMMAND: u8 = 0x04;
/// Relay: a frame for the beacon to forward.
pub const CODE_RELAY: u8 = 0x05;
/// RelayDeliver: a frame the beacon forwards to us.
pub const CODE_RELAY_DELIVER: u8 = 0x06;
/// Sync: beacon-to-beacon list of locally registered nodes.
pub const CODE_SYNC: u8 = 0x07;

/// Largest frame a beacon relays, in bytes (spec §7.3).
pub const MAX_RELAY_FRAME: usize = 65_535;
/// Bytes a Relay envelope adds in front of a frame: code, sender, destination (spec §3.9).
pub const RELAY_OVERHEAD: usize = 9;
/// Bytes a RelayDeliver envelope adds in front of a frame: code, sender (spec §3.9).
pub const RELAY_DELIVER_OVERHEAD: usize = 5;
/// Most node IDs one Sync message can carry (its count is a u16).
pub const MAX_SYNC_NODES: usize = u16::MAX as usize;

/// Length of the optional punch-grant trailer: expiry (8) ‖ Ed25519 signature (64).
const PUNCH_GRANT_LEN: usize = 8 + 64;

/// Why a beacon message was not decoded, or could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeaconError {
    /// The datagram is empty.
    Empty,
    /// The code byte is not one of 0x01..=0x07.
    UnknownCode(u8),
    /// A message of a different code than the caller asked for.
    UnexpectedCode {
        /// Code the caller expected.
        expected: u8,
        /// Code found.
        got: u8,
    },
    /// The message is shorter than its layout.
    TooShort {
        /// Message code.
        code: u8,
        /// Minimum length in bytes, code byte included.
        min: usize,
        /// Length received.
        len: usize,
    },
    /// An address whose length byte is neither 4 nor 16.
    BadIpLength(u8),
    /// A Sync whose count does not match the number of node IDs that follow.
    SyncCountMismatch {
        /// Count stated in the message.
        count: u16,
        /// Bytes of node IDs present.
        bytes: usize,
    },
    /// A frame longer than [`MAX_RELAY_FRAME`] cannot be relayed.
    RelayFrameTooLarge {
        /// Frame length.
        len: usize,
    },
}

impl fmt::Display for BeaconError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty beacon message"),
            Self::UnknownCode(code) => write!(f, "unknown beacon message code {code:#04x}"),
            Self::UnexpectedCode { expected, got } => {
                write!(
                    f,
                    "beacon message code {got:#04x}, expected {expected:#04x}"
                )
            }
            Self::TooShort { code, min, len } => write!(
                f,
                "beacon message {code:#04x} too short: {len} bytes, need at least {min}"
            ),
            Self::BadIpLength(len) => write!(f, "address length {len} is neither 4 nor 16"),
            Self::SyncCountMismatch { count, bytes } => {
                write!(
                    f,
                    "sync announces {count} node IDs but carries {bytes} bytes of them"
                )
            }
            Self::RelayFrameTooLarge { len } => {
                write!(
                    f,
                    "frame of {len} bytes exceeds the relay limit {MAX_RELAY_FRAME}"
                )
            }
        }
    }
}

#[cfg(feature = "std")]
impl std::error::Error for BeaconError {}

/// The optional trailer of a PunchRequest (V-NEW beacon punch grants, spec §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PunchGrant<'a> {
    /// Expiry of the grant, Unix seconds.
    pub expiry_unix_secs: u64,
    /// Ed25519 signature by the target over `punch-grant:<requester>:<target>:<expiry>`.
    pub signature: &'a [u8; 64],
}

/// The node IDs of a Sync message, borrowed in wire form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeIds<'a> {
    bytes: &'a [u8],
}

impl<'a> NodeIds<'a> {
    /// Wraps node IDs already laid out as consecutive u32 BE values.
    ///
    /// `None` unless the length is a multiple of 4 and at most [`MAX_SYNC_NODES`] IDs long,
    /// so that every `NodeIds` can be encoded.
    pub fn from_wire(bytes: &'a [u8]) -> Option<Self> {
        let fits = bytes.len() % 4 == 0 && bytes.len() / 4 <= MAX_SYNC_NODES;
        fits.then_some(Self { bytes })
    }

    /// Number of node IDs.
    pub fn len(&self) -> usize {
        self.bytes.len() / 4
    }

    /// Whether there are no node IDs.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The node IDs in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        // Each chunk is exactly 4 bytes; folding them big-endian avoids a fallible conversion.
        self.bytes.chunks_exact(4).map(|id| {
            id.iter()
                .fold(0u32, |acc, byte| acc << 8 | u32::from(*byte))
        })
    }

    /// The wire form: consecutive u32 BE node IDs.
    pub fn as_wire(&self) -> &'a [u8] {
        self.bytes
    }
}

/// One beacon message, borrowing variable parts from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BeaconMessage<'a> {
    /// 0x01: a node registers its observed address with the beacon.
    Discover {
        /// The node's ID (0 before registration, spec §7.1).
        node: u32,
        /// The node's Ed25519 public key, sent to enable punch grants (V-NEW).
        identity: Option<&'a [u8; 32]>,
    },
    /// 0x02: the address the beacon saw the Discover come from.
    DiscoverReply {
        /// Our public address as observed by the beacon.
        observed: SocketAddr,
    },
    /// 0x03: ask the beacon to coordinate a punch between requester and target.
    PunchRequest {
        /// The asking node.
        requester: u32,
        /// The node to punch toward.
        target: u32,
        /// Signed permission from the target, when the beacon requires one.
        grant: Option<PunchGrant<'a>>,
    },
    /// 0x04: punch toward this address (spec §7.4).
    PunchCommand {
        /// The other party's public address.
        peer: SocketAddr,
    },
    /// 0x05: forward `frame` to `dest`.
    Relay {
        /// The sending node (not verified by the beacon).
        sender: u32,
        /// The destination node.
        dest: u32,
        /// The tunnel frame.
        frame: &'a [u8],
    },
    /// 0x06: a frame relayed to us.
    RelayDeliver {
        /// The node that sent it, as claimed in its Relay message.
        sender: u32,
        /// The tunnel frame.
        frame: &'a [u8],
    },
    /// 0x07: a beacon's list of the nodes registered with it.
    Sync {
        /// The announcing beacon.
        beacon: u32,
        /// Nodes registered with it.
        nodes: NodeIds<'a>,
    },
}

impl<'a> BeaconMessage<'a> {
    /// Decodes one beacon message.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, BeaconError> {
        let (&code, body) = bytes.split_first().ok_or(BeaconError::Empty)?;
        let mut reader = Reader {
            code,
            body,
            len: bytes.len(),
        };
        match code {
            CODE_DISCOVER => {
                let node = reader.u32()?;
                let identity = reader.optional_array::<32>();
                Ok(Self::Discover { node, identity })
            }
            CODE_DISCOVER_REPLY => Ok(Self::DiscoverReply {
                observed: reader.socket_addr()?,
            }),
            CODE_PUNCH_REQUEST => {
                let requester = reader.u32()?;
                let target = reader.u32()?;
                // The grant is present exactly when its 72 bytes are (spec §7.4).
                let grant = if reader.body.len() >= PUNCH_GRANT_LEN {
                    Some(PunchGrant {
                        expiry_unix_secs: reader.u64()?,
                        signature: reader.array::<64>()?,
                    })
                } else {
                    None
                };
                Ok(Self::PunchRequest {
                    requester,
                    target,
                    grant,
                })
            }
            CODE_PUNCH_COMMAND => Ok(Self::PunchCommand {
                peer: reader.socket_addr()?,
            }),
            CODE_RELAY => {
                let sender = reader.u32()?;
                let dest = reader.u32()?;
                Ok(Self::Relay {
                    sender,
                    dest,
                    frame: reader.body,
                })
            }
            CODE_RELAY_DELIVER => {
                let sender = reader.u32()?;
                Ok(Self::RelayDeliver {
                    sender,
                    frame: reader.body,
                })
            }
            CODE_SYNC => {
                let beacon = reader.u32()?;
                let count = reader.u16()?;
                let nodes = NodeIds::from_wire(reader.body)
                    .filter(|nodes| nodes.len() == usize::from(count))
                    .ok_or(BeaconError::SyncCountMismatch {
                        count,
                        bytes: reader.body.len(),
                    })?;
                Ok(Self::Sync { beacon, nodes })
            }
            other => Err(BeaconError::UnknownCode(other)),
        }
    }

    /// The message's code byte.
    pub fn code(&self) -> u8 {
        match self {
            Self::Discover { .. } => CODE_DISCOVER,
            Self::DiscoverReply { .. } => CODE_DISCOVER_REPLY,
            Self::PunchRequest { .. } => CODE_PUNCH_REQUEST,
            Self::PunchCommand { .. } => CODE_PUNCH_COMMAND,
            Self::Relay { .. } => CODE_RELAY,
            Self::RelayDeliver { .. } => CODE_RELAY_DELIVER,
            Self::Sync { .. } => CODE_SYNC,
        }
    }

    /// Appends the wire form to `out`.
    ///
    /// Relay frames are written whatever their length; [`wrap_relay`] is the checked way to
    /// build a Relay message.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.code());
        match self {
            Self::Discover { node, identity } => {
                out.extend_from_slice(&node.to_be_bytes());
                if let Some(key) = identity {
                    out.extend_from_slice(&key[..]);
                }
            }
            Self::DiscoverReply { observed: addr } | Self::PunchCommand { peer: addr } => {
                put_socket_addr(addr, out);
            }
            Self::PunchRequest {
                requester,
                target,
                grant,
            } => {
                out.extend_from_slice(&requester.to_be_bytes());
                out.extend_from_slice(&target.to_be_bytes());
                if let Some(grant) = grant {
                    out.extend_from_slice(&grant.expiry_unix_secs.to_be_bytes());
                    out.extend_from_slice(&grant.signature[..]);
                }
            }
            Self::Relay {
                sender,
                dest,
                frame,
            } => {
                out.extend_from_slice(&sender.to_be_bytes());
                out.extend_from_slice(&dest.to_be_bytes());
                out.extend_from_slice(frame);
            }
            Self::RelayDeliver { sender, frame } => {
                out.extend_from_slice(&sender.to_be_bytes());
                out.extend_from_slice(frame);
            }
            Self::Sync { beacon, nodes } => {
                out.extend_from_slice(&beacon.to_be_bytes());
                // NodeIds guarantees at most u16::MAX entries.
                let count = u16::try_from(nodes.len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&count.to_be_bytes());
                out.extend_from_slice(nodes.as_wire());
            }
        }
    }
}

/// Appends the Relay envelope `05 ‖ sender ‖ dest ‖ frame` to `out` (spec §7.3).
pub fn wrap_relay(
    sender: u32,
    dest: u32,
    frame: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), BeaconError> {
    if frame.len() > MAX_RELAY_FRAME {
        return Err(BeaconError::RelayFrameTooLarge { len: frame.len() });
    }
    out.reserve(RELAY_OVERHEAD + frame.len());
    BeaconMessage::Relay {
        sender,
        dest,
        frame,
    }
    .encode(out);
    Ok(())
}

/// Opens a RelayDeliver envelope `06 ‖ sender ‖ frame`: returns the claimed sender and frame.
///
/// The sender is not authenticated (spec §7.3); it picks the key to try and, for fragments,
/// must match the fragment header (spec §3.8).
pub fn parse_relay_deliver(bytes: &[u8]) -> Result<(u32, &[u8]), BeaconError> {
    match BeaconMessage::decode(bytes)? {
        BeaconMessage::RelayDeliver { sender, frame } => Ok((sender, frame)),
        other => Err(BeaconError::UnexpectedCode {
            expected: CODE_RELAY_DELIVER,
            got: other.code(),
        }),
    }
}

/// Appends `iplen ‖ ip ‖ port`.
fn put_socket_addr(addr: &SocketAddr, out: &mut Vec<u8>) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(16);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// Reads fields from the front of a message body, reporting shortness against the whole
/// message.
struct Reader<'a> {
    code: u8,
    body: &'a [u8],
    /// Length of the whole message, code byte included.
    len: usize,
}

impl<'a> Reader<'a> {
    fn array<const N: usize>(&mut self) -> Result<&'a [u8; N], BeaconError> {
        let (head, rest) = self
            .body
            .split_first_chunk::<N>()
            .ok_or(BeaconError::TooShort {
                code: self.code,
                min: self.consumed() + N,
                len: self.len,
            })?;
        self.body = rest;
        Ok(head)
    }

    /// The next `N` bytes if present; otherwise nothing is consumed.
    fn optional_array<const N: usize>(&mut self) -> Option<&'a [u8; N]> {
        self.array::<N>().ok()
    }

    fn u16(&mut self) -> Result<u16, BeaconError> {
        self.array::<2>().map(|b| u16::from_be_bytes(*b))
    }

    fn u32(&mut self) -> Result<u32, BeaconError> {
        self.array::<4>().map(|b| u32::from_be_bytes(*b))
    }

    fn u64(&mut self) -> Result<u64, BeaconError> {
        self.array::<8>().map(|b| u64::from_be_bytes(*b))
    }

    fn socket_addr(&mut self) -> Result<SocketAddr, BeaconError> {
        let [iplen] = *self.array::<1>()?;
        let ip = match iplen {
            4 => IpAddr::V4(Ipv4Addr::from(*self.array::<4>()?)),
            16 => IpAddr::V6(Ipv6Addr::from(*self.array::<16>()?)),
            other => return Err(BeaconError::BadIpLength(other)),
        };
        let port = self.u16()?;
        Ok(SocketAddr::new(ip, port))
    }

    /// Bytes read so far, code byte included.
    fn consumed(&self) -> usize {
        self.len - self.body.len()
    }
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
    use alloc::vec;

    fn encoded(message: &BeaconMessage<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        message.encode(&mut out);
        out
    }

    #[test]
    fn discover_is_code_and_node_id_with_an_optional_identity() {
        let short = [0x01, 0, 0, 0x30, 0x39];
        assert_eq!(
            BeaconMessage::decode(&short),
            Ok(BeaconMessage::Discover {
                node: 12345,
                identity: None
            })
        );
        let mut long = short.to_vec();
        long.extend_from_slice(&[0xee; 32]);
        assert_eq!(long.len(), 37);
        let message = BeaconMessage::decode(&long).unwrap();
        assert_eq!(
            message,
            BeaconMessage::Discover {
                node: 12345,
                identity: Some(&[0xee; 32])
            }
        );
        assert_eq!(encoded(&message), long);
    }

    #[test]
    fn discover_reply_carries_an_ipv4_or_ipv6_address() {
        let v4 = [0x02, 4, 203, 0, 113, 7, 0x23, 0x29];
        let message = BeaconMessage::decode(&v4).unwrap();
        assert_eq!(
            message,
            BeaconMessage::DiscoverReply {
                observed: "203.0.113.7:9001".parse().unwrap()
            }
        );
        assert_eq!(encoded(&message), v4);

        let peer: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let bytes = encoded(&BeaconMessage::PunchCommand { peer });
        assert_eq!(bytes.len(), 1 + 1 + 16 + 2);
        assert_eq!(bytes[1], 16);
        assert_eq!(
            BeaconMessage::decode(&bytes),
            Ok(BeaconMessage::PunchCommand { peer })
        );
    }

    #[test]
    fn an_address_length_other_than_4_or_16_is_refused() {
        assert_eq!(
            BeaconMessage::decode(&[0x04, 6, 1, 2, 3, 4, 5, 6, 0, 1]),
            Err(BeaconError::BadIpLength(6))
        );
    }

    #[test]
    fn a_truncated_address_reports_the_length_it_needed() {
        assert_eq!(
            BeaconMessage::decode(&[0x02, 16, 0, 0]),
            Err(BeaconError::TooShort {
                code: 0x02,
                min: 18,
                len: 4
            })
        );
        assert_eq!(
            BeaconMessage::decode(&[0x02, 4, 1, 2, 3, 4, 0]),
            Err(BeaconError::TooShort {
                code: 0x02,
                min: 8,
                len: 7
            })
        );
    }

    #[test]
    fn punch_request_with_and_without_a_grant() {
        let bare = [0x03, 0, 0, 0, 1, 0, 0, 0, 2];
        assert_eq!(
            BeaconMessage::decode(&bare),
            Ok(BeaconMessage::PunchRequest {
                requester: 1,
                target: 2,
                grant: None
            })
        );
        let signature = [0x5a; 64];
        let granted = BeaconMessage::PunchRequest {
            requester: 1,
            target: 2,
            grant: Some(PunchGrant {
                expiry_unix_secs: 1_800_000_000,
                signature: &signature,
            }),
        };
        let bytes = encoded(&granted);
        assert_eq!(bytes.len(), 9 + 72);
        assert_eq!(&bytes[9..17], &1_800_000_000u64.to_be_bytes());
        assert_eq!(BeaconMessage::decode(&bytes), Ok(granted));
    }

    #[test]
    fn relay_envelopes_add_nine_and_five_bytes() {
        let frame = b"PILS-frame-bytes";
        let mut relay = Vec::new();
        wrap_relay(0x0a0b_0c0d, 0x0102_0304, frame, &mut relay).unwrap();
        assert_eq!(relay.len(), RELAY_OVERHEAD + frame.len());
        assert_eq!(&relay[..9], &[0x05, 0x0a, 0x0b, 0x0c, 0x0d, 1, 2, 3, 4]);
        assert_eq!(
            BeaconMessage::decode(&relay),
            Ok(BeaconMessage::Relay {
                sender: 0x0a0b_0c0d,
                dest: 0x0102_0304,
                frame
            })
        );

        let deliver = encoded(&BeaconMessage::RelayDeliver { sender: 77, frame });
        assert_eq!(deliver.len(), RELAY_DELIVER_OVERHEAD + frame.len());
        assert_eq!(parse_relay_deliver(&deliver), Ok((77, &frame[..])));
    }

    #[test]
    fn parse_relay_deliver_refuses_other_messages() {
        let mut relay = Vec::new();
        wrap_relay(1, 2, b"PILS", &mut relay).unwrap();
        assert_eq!(
            parse_relay_deliver(&relay),
            Err(BeaconError::UnexpectedCode {
                expected: 0x06,
                got: 0x05
            })
        );
        assert_eq!(
            parse_relay_deliver(&[0x06, 0, 0]),
            Err(BeaconError::TooShort {
                code: 0x06,
                min: 5,
                len: 3
            })
        );
    }

    #[test]
    fn wrap_relay_refuses_a_frame_the_beacon_would_not_forward() {
        let mut out = Vec::new();
        let frame = vec![0; MAX_RELAY_FRAME + 1];
        assert_eq!(
            wrap_relay(1, 2, &frame, &mut out),
            Err(BeaconError::RelayFrameTooLarge {
                len: MAX_RELAY_FRAME + 1
            })
        );
        assert!(out.is_empty());
        assert!(wrap_relay(1, 2, &frame[1..], &mut out).is_ok());
    }

    #[test]
    fn sync_count_must_match_the_node_ids_present() {
        let bytes = [0x07, 0, 0, 0, 9, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
        let message = BeaconMessage::decode(&bytes).unwrap();
        let BeaconMessage::Sync { beacon, nodes } = message else {
            panic!("not a sync: {message:?}");
        };
        assert_eq!(beacon, 9);
        assert_eq!(nodes.iter().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(encoded(&message), bytes);

        assert_eq!(
            BeaconMessage::decode(&bytes[..bytes.len() - 1]),
            Err(BeaconError::SyncCountMismatch { count: 2, bytes: 7 })
        );
        let mut extra = bytes.to_vec();
        extra.extend_from_slice(&[0, 0, 0, 3]);
        assert_eq!(
            BeaconMessage::decode(&extra),
            Err(BeaconError::SyncCountMismatch {
                count: 2,
                bytes: 12
            })
        );
    }

    #[test]
    fn node_ids_refuse_what_a_sync_could_not_carry() {
        assert!(NodeIds::from_wire(&[0; 7]).is_none());
        assert!(NodeIds::from_wire(&vec![0; 4 * (MAX_SYNC_NODES + 1)]).is_none());
        assert_eq!(
            NodeIds::from_wire(&vec![0; 4 * MAX_SYNC_NODES])
                .unwrap()
                .len(),
            MAX_SYNC_NODES
        );
    }

    #[test]
    fn empty_and_unknown_codes_are_refused() {
        assert_eq!(BeaconMessage::decode(&[]), Err(BeaconError::Empty));
        assert_eq!(
            BeaconMessage::decode(&[0x00]),
            Err(BeaconError::UnknownCode(0))
        );
        assert_eq!(
            BeaconMessage::decode(&[0x08, 0, 0, 0, 1]),
            Err(BeaconError::UnknownCode(8))
        );
        assert_eq!(
            BeaconMessage::decode(&[0x01, 0, 0]),
            Err(BeaconError::TooShort {
                code: 0x01,
                min: 5,
                len: 3
            })
        );
    }
}
