//! Which peer addresses a session may exchange datagrams with.
//!
//! The relay must not become a way into networks that are not the public Internet: the
//! machine's own loopback, the operator's private networks, link-local services such as
//! cloud metadata endpoints, carrier-grade NAT space. Those ranges (and ranges that are never
//! routable or only embed one of them) are refused unless an operator lists them in
//! `--allow-dest`. The same rule is applied to the source of inbound datagrams.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

/// The kind of special-purpose range an address fell into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `0.0.0.0/8` or `::`.
    Unspecified,
    /// `127.0.0.0/8` or `::1`.
    Loopback,
    /// RFC 1918 private space or IPv6 unique-local `fc00::/7`.
    Private,
    /// `169.254.0.0/16` or `fe80::/10`.
    LinkLocal,
    /// RFC 6598 shared address space `100.64.0.0/10` (carrier-grade NAT).
    SharedCgnat,
    /// IPv4 `224.0.0.0/4` or IPv6 `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// RFC 5737 / RFC 3849 / RFC 9637 documentation ranges.
    Documentation,
    /// Other ranges that are reserved, deprecated or tunnel into another address family.
    Reserved,
    /// Port 0 cannot be a datagram destination.
    PortZero,
    /// One of the relay's own addresses, on a port that is not a live session of this relay.
    RelaySelf,
}

impl Refusal {
    /// Short label used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::LinkLocal => "link_local",
            Self::SharedCgnat => "shared_cgnat",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Documentation => "documentation",
            Self::Reserved => "reserved",
            Self::PortZero => "port_zero",
            Self::RelaySelf => "relay_self",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for Refusal {}

/// Special-purpose IPv4 ranges as (network, prefix length, verdict). Checked in order, so
/// the limited broadcast address comes before the reserved `240.0.0.0/4` that contains it.
const V4_SPECIAL: [(u32, u8, Refusal); 16] = [
    (0x0000_0000, 8, Refusal::Unspecified), // 0.0.0.0/8 "this network"
    (0x0a00_0000, 8, Refusal::Private),     // 10.0.0.0/8
    (0x6440_0000, 10, Refusal::SharedCgnat), // 100.64.0.0/10
    (0x7f00_0000, 8, Refusal::Loopback),    // 127.0.0.0/8
    (0xa9fe_0000, 16, Refusal::LinkLocal),  // 169.254.0.0/16
    (0xac10_0000, 12, Refusal::Private),    // 172.16.0.0/12
    (0xc000_0000, 24, Refusal::Reserved),   // 192.0.0.0/24 IETF protocol assignments
    (0xc000_0200, 24, Refusal::Documentation), // 192.0.2.0/24 TEST-NET-1
    (0xc058_6300, 24, Refusal::Reserved),   // 192.88.99.0/24 deprecated 6to4 anycast
    (0xc0a8_0000, 16, Refusal::Private),    // 192.168.0.0/16
    (0xc612_0000, 15, Refusal::Reserved),   // 198.18.0.0/15 benchmarking
    (0xc633_6400, 24, Refusal::Documentation), // 198.51.100.0/24 TEST-NET-2
    (0xcb00_7100, 24, Refusal::Documentation), // 203.0.113.0/24 TEST-NET-3
    (0xe000_0000, 4, Refusal::Multicast),   // 224.0.0.0/4
    (0xffff_ffff, 32, Refusal::Broadcast),  // 255.255.255.255
    (0xf000_0000, 4, Refusal::Reserved),    // 240.0.0.0/4 future use
];

/// Special-purpose IPv6 ranges, checked in order (most specific first). Ranges that embed
/// an IPv4 address (mapped, the NAT64 well-known `/96`, 6to4) are handled before this table
/// in [`classify_v6`] so the embedded address is judged instead.
const V6_SPECIAL: [(u128, u8, Refusal); 16] = [
    (0, 128, Refusal::Unspecified), // ::
    (1, 128, Refusal::Loopback),    // ::1
    (
        0x0064_ff9b_0001_0000_0000_0000_0000_0000,
        48,
        Refusal::Private,
    ), // 64:ff9b:1::/48 local-use NAT64 (RFC 8215)
    (
        0x0064_ff9b_0000_0000_0000_0000_0000_0000,
        32,
        Refusal::Reserved,
    ), // 64:ff9b::/32 outside the well-known /96: no defined meaning
    // ::/8 (RFC 4291 reserved): IPv4-compatible ::/96, SIIT ::ffff:0:0:0/96 and the rest.
    // After the NAT64 entries, which lie inside it.
    (0, 8, Refusal::Reserved),
    (
        0x0100_0000_0000_0000_0000_0000_0000_0000,
        64,
        Refusal::Reserved,
    ), // 100::/64 discard-only (RFC 6666)
    (
        0x2001_0db8_0000_0000_0000_0000_0000_0000,
        32,
        Refusal::Documentation,
    ), // 2001:db8::/32
    (
        0x2001_0000_0000_0000_0000_0000_0000_0000,
        23,
        Refusal::Reserved,
    ), // 2001::/23 IETF protocol assignments (Teredo, ORCHID, benchmarking, ...), all of it
    (
        0x2620_004f_8000_0000_0000_0000_0000_0000,
        48,
        Refusal::Reserved,
    ), // 2620:4f:8000::/48 AS112 DNS sinks (RFC 7534)
    (
        0x3fff_0000_0000_0000_0000_0000_0000_0000,
        20,
        Refusal::Documentation,
    ), // 3fff::/20
    (
        0x5f00_0000_0000_0000_0000_0000_0000_0000,
        16,
        Refusal::Reserved,
    ), // 5f00::/16 SRv6 SIDs (RFC 9602)
    (
        0xfc00_0000_0000_0000_0000_0000_0000_0000,
        7,
        Refusal::Private,
    ), // fc00::/7 unique local
    (
        0xfe80_0000_0000_0000_0000_0000_0000_0000,
        10,
        Refusal::LinkLocal,
    ), // fe80::/10
    (
        0xfec0_0000_0000_0000_0000_0000_0000_0000,
        10,
        Refusal::Reserved,
    ), // fec0::/10 deprecated site-local
    (
        0xff00_0000_0000_0000_0000_0000_0000_0000,
        8,
        Refusal::Multicast,
    ), // ff00::/8
    (
        0xfe00_0000_0000_0000_0000_0000_0000_0000,
        9,
        Refusal::Reserved,
    ), // fe00::/9 unassigned, never routed
];

/// `64:ff9b::/96`, the well-known NAT64 prefix (RFC 6052): the last 32 bits are IPv4.
const NAT64_PREFIX: u128 = 0x0064_ff9b_0000_0000_0000_0000_0000_0000;
/// `2000::/3`, the IPv6 global unicast space (RFC 4291 §2.4).
const GLOBAL_UNICAST_PREFIX: u128 = 0x2000_0000_0000_0000_0000_0000_0000_0000;
/// `2002::/16`, 6to4 (RFC 3056): bits 16..48 are an IPv4 address.
const SIX_TO_FOUR_PREFIX: u128 = 0x2002_0000_0000_0000_0000_0000_0000_0000;

fn in_prefix_v4(ip: u32, net: u32, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    ip & mask == net & mask
}

fn in_prefix_v6(ip: u128, net: u128, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    ip & mask == net & mask
}

/// The special-purpose range `ip` belongs to, if any.
pub fn classify_v4(ip: Ipv4Addr) -> Option<Refusal> {
    let bits = u32::from(ip);
    V4_SPECIAL
        .iter()
        .find(|(net, len, _)| in_prefix_v4(bits, *net, *len))
        .map(|(_, _, verdict)| *verdict)
}

/// The special-purpose range `ip` belongs to, if any; IPv4 embedded in an IPv6 address
/// (mapped, NAT64, 6to4) is judged as that IPv4 address.
pub fn classify_v6(ip: Ipv6Addr) -> Option<Refusal> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let bits = u128::from(ip);
    if in_prefix_v6(bits, NAT64_PREFIX, 96) {
        // Truncation keeps the low 32 bits, which is exactly the embedded address.
        return classify_v4(Ipv4Addr::from(bits as u32));
    }
    if in_prefix_v6(bits, SIX_TO_FOUR_PREFIX, 16) {
        return classify_v4(Ipv4Addr::from((bits >> 80) as u32));
    }
    V6_SPECIAL
        .iter()
        .find(|(net, len, _)| in_prefix_v6(bits, *net, *len))
        .map(|(_, _, verdict)| *verdict)
        .or_else(|| {
            // Everything outside 2000::/3 that the table did not name is unassigned or
            // reserved by the IETF (RFC 4291 §2.4): no public peer lives there.
            (!in_prefix_v6(bits, GLOBAL_UNICAST_PREFIX, 3)).then_some(Refusal::Reserved)
        })
}

/// The special-purpose range `ip` belongs to, if any.
pub fn classify(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Replaces an IPv4-mapped IPv6 address by the IPv4 address it carries.
pub fn normalize(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

/// Decides whether a peer address may be used: public addresses always, special-purpose ones
/// only when an operator-configured CIDR covers them, and the relay's own addresses only on
/// the ports of its live sessions.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    allow: Vec<IpNet>,
    own: Vec<IpAddr>,
}

impl AddressPolicy {
    /// A policy that additionally allows every address inside one of `allow`.
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self {
            allow,
            own: Vec::new(),
        }
    }

    /// Adds the relay's own addresses: they are refused on every port that is not a live
    /// session of this relay, whatever `allow` says. Otherwise a client could reach services
    /// on the relay host (a resolver, a metrics agent) through its public address, which no
    /// range check catches. IPv4-mapped forms are normalised.
    pub fn with_own_addresses(mut self, own: impl IntoIterator<Item = IpAddr>) -> Self {
        for ip in own {
            let ip = normalize(SocketAddr::new(ip, 0)).ip();
            if !ip.is_unspecified() && !self.own.contains(&ip) {
                self.own.push(ip);
            }
        }
        self
    }

    /// The relay's own addresses, as configured.
    pub fn own_addresses(&self) -> &[IpAddr] {
        &self.own
    }

    /// Checks `addr` (normalised first) and returns the address to use, or why it is refused.
    /// Every port of the relay's own addresses counts as not a session (see
    /// [`AddressPolicy::check_with_sessions`]).
    pub fn check(&self, addr: SocketAddr) -> Result<SocketAddr, Refusal> {
        self.check_with_sessions(addr, |_| false)
    }

    /// Like [`AddressPolicy::check`], but a relay address on a port for which
    /// `is_session_port` holds is allowed: session-to-session traffic through one relay is
    /// ordinary Pilot traffic between two clients.
    pub fn check_with_sessions(
        &self,
        addr: SocketAddr,
        is_session_port: impl FnOnce(u16) -> bool,
    ) -> Result<SocketAddr, Refusal> {
        let addr = normalize(addr);
        if addr.port() == 0 {
            return Err(Refusal::PortZero);
        }
        // Before the allow-list: `--allow-dest 127.0.0.0/8` must not open the relay's own
        // loopback public address to arbitrary ports.
        if self.own.contains(&addr.ip()) {
            return if is_session_port(addr.port()) {
                Ok(addr)
            } else {
                Err(Refusal::RelaySelf)
            };
        }
        if self.allow.iter().any(|net| net.contains(&addr.ip())) {
            return Ok(addr);
        }
        match classify(addr.ip()) {
            Some(refusal) => Err(refusal),
            None => Ok(addr),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn verdict(s: &str) -> Option<Refusal> {
        classify(s.parse().unwrap())
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "34.71.57.205",
            "2606:4700::1111",
            "100.128.0.1",
        ] {
            assert_eq!(verdict(ip), None, "{ip}");
        }
    }

    #[test]
    fn special_ipv4_ranges_are_refused() {
        let cases = [
            ("0.1.2.3", Refusal::Unspecified),
            ("10.0.0.1", Refusal::Private),
            ("100.64.0.1", Refusal::SharedCgnat),
            ("100.127.255.255", Refusal::SharedCgnat),
            ("127.0.0.1", Refusal::Loopback),
            ("169.254.169.254", Refusal::LinkLocal),
            ("172.16.0.1", Refusal::Private),
            ("172.31.255.255", Refusal::Private),
            ("192.0.2.1", Refusal::Documentation),
            ("192.168.1.1", Refusal::Private),
            ("198.51.100.1", Refusal::Documentation),
            ("203.0.113.9", Refusal::Documentation),
            ("224.0.0.251", Refusal::Multicast),
            ("239.255.255.250", Refusal::Multicast),
            ("255.255.255.255", Refusal::Broadcast),
            ("240.0.0.1", Refusal::Reserved),
            ("198.18.0.1", Refusal::Reserved),
        ];
        for (ip, want) in cases {
            assert_eq!(verdict(ip), Some(want), "{ip}");
        }
        assert_eq!(verdict("172.32.0.1"), None);
        assert_eq!(verdict("11.0.0.1"), None);
    }

    #[test]
    fn special_ipv6_ranges_are_refused() {
        let cases = [
            ("::", Refusal::Unspecified),
            ("::1", Refusal::Loopback),
            ("fd00::1", Refusal::Private),
            ("fe80::1", Refusal::LinkLocal),
            ("ff02::1", Refusal::Multicast),
            ("2001:db8::1", Refusal::Documentation),
            ("2001:0:4136:e378::1", Refusal::Reserved),
            ("::10.0.0.1", Refusal::Reserved),
        ];
        for (ip, want) in cases {
            assert_eq!(verdict(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn ipv6_forms_embedding_ipv4_or_otherwise_special_are_refused() {
        let cases = [
            // ::/8 beyond mapped: IPv4-compatible, SIIT, and anything else in it.
            ("::8.8.8.8", Some(Refusal::Reserved)),
            ("::ffff:0:8.8.8.8", Some(Refusal::Reserved)),
            ("::ffff:0:127.0.0.1", Some(Refusal::Reserved)),
            ("0:1::1", Some(Refusal::Reserved)),
            ("ff::1", Some(Refusal::Reserved)),
            // NAT64: the well-known /96 is judged by the embedded address; the rest of the
            // /32 and the local-use /48 are refused.
            ("64:ff9b::8.8.8.8", None),
            ("64:ff9b::127.0.0.1", Some(Refusal::Loopback)),
            ("64:ff9b:0:1::8.8.8.8", Some(Refusal::Reserved)),
            ("64:ff9b:ffff::1", Some(Refusal::Reserved)),
            ("64:ff9b:1::8.8.8.8", Some(Refusal::Private)),
            ("64:ff9b:1:ffff::1", Some(Refusal::Private)),
            ("64:ff9c::1", Some(Refusal::Reserved)), // still inside ::/8
            ("100::1", Some(Refusal::Reserved)),
            ("100:0:0:0:ffff::1", Some(Refusal::Reserved)),
            ("100:0:0:1::1", Some(Refusal::Reserved)), // outside 2000::/3
            ("4000::1", Some(Refusal::Reserved)),
            ("e000::1", Some(Refusal::Reserved)),
            ("2a00:1450::1", None),
            ("5f00::1", Some(Refusal::Reserved)),
            ("5f00:ffff::1", Some(Refusal::Reserved)),
            ("5f01::1", Some(Refusal::Reserved)), // outside 2000::/3
            ("2001::1", Some(Refusal::Reserved)),
            ("2001:2::1", Some(Refusal::Reserved)),
            ("2001:10::1", Some(Refusal::Reserved)),
            ("2001:1ff::1", Some(Refusal::Reserved)),
            ("2001:200::1", None),
            ("2620:4f:8000::1", Some(Refusal::Reserved)),
            ("2620:4f:8001::1", None),
            ("2002:7f00:1::1", Some(Refusal::Loopback)),
            ("fe00::1", Some(Refusal::Reserved)),
        ];
        for (ip, want) in cases {
            assert_eq!(verdict(ip), want, "{ip}");
        }
    }

    #[test]
    fn embedded_ipv4_is_judged_as_ipv4() {
        assert_eq!(verdict("::ffff:127.0.0.1"), Some(Refusal::Loopback));
        assert_eq!(verdict("::ffff:10.1.2.3"), Some(Refusal::Private));
        assert_eq!(verdict("64:ff9b::a9fe:a9fe"), Some(Refusal::LinkLocal));
        assert_eq!(verdict("2002:c0a8:0101::1"), Some(Refusal::Private));
        assert_eq!(verdict("::ffff:8.8.8.8"), None);
        assert_eq!(verdict("2002:0808:0808::1"), None);
    }

    #[test]
    fn allow_list_overrides_and_mapped_addresses_are_normalised() {
        let policy = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:9000".parse().unwrap();
        assert_eq!(policy.check(mapped), Ok("127.0.0.1:9000".parse().unwrap()));
        assert_eq!(
            policy.check("10.0.0.1:9000".parse().unwrap()),
            Err(Refusal::Private)
        );
        assert_eq!(
            policy.check("127.0.0.1:0".parse().unwrap()),
            Err(Refusal::PortZero)
        );
        assert_eq!(
            AddressPolicy::default().check("127.0.0.1:9000".parse().unwrap()),
            Err(Refusal::Loopback)
        );
    }

    #[test]
    fn own_addresses_are_refused_except_session_ports_even_when_allowed() {
        let policy = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]).with_own_addresses([
            "127.0.0.5".parse().unwrap(),
            "::ffff:198.51.100.9".parse().unwrap(),
        ]);
        let own: SocketAddr = "127.0.0.5:53".parse().unwrap();
        assert_eq!(policy.check(own), Err(Refusal::RelaySelf));
        assert_eq!(
            policy.check_with_sessions(own, |port| port == 40_000),
            Err(Refusal::RelaySelf)
        );
        let session: SocketAddr = "127.0.0.5:40000".parse().unwrap();
        assert_eq!(
            policy.check_with_sessions(session, |port| port == 40_000),
            Ok(session)
        );
        // A public own address (given mapped) is refused too, in either form.
        assert_eq!(
            policy.check("198.51.100.9:8080".parse().unwrap()),
            Err(Refusal::RelaySelf)
        );
        assert_eq!(
            policy.check("[::ffff:198.51.100.9]:8080".parse().unwrap()),
            Err(Refusal::RelaySelf)
        );
        // Other loopback addresses stay governed by the allow-list.
        let other: SocketAddr = "127.0.0.1:53".parse().unwrap();
        assert_eq!(policy.check(other), Ok(other));
    }
}
