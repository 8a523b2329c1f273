//! Prometheus metrics of one relay instance.
//!
//! Each [`crate::Relay`] owns its own registry (no global state), so several relays in one
//! process (as in the tests) count separately. Hot-path counters are resolved once at
//! start-up; counting a frame is an atomic add.

use prometheus::{Encoder as _, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Which way a datagram travels through the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Client (WebSocket) → UDP peer.
    Outbound = 0,
    /// UDP peer → client (WebSocket).
    Inbound = 1,
}

impl Direction {
    /// Both directions, in index order.
    pub const ALL: [Direction; 2] = [Direction::Outbound, Direction::Inbound];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Outbound => "outbound",
            Self::Inbound => "inbound",
        }
    }
}

/// Why a datagram was not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The binary message had no valid address header.
    BadHeader = 0,
    /// The frame is longer than 65,535 bytes.
    Oversize = 1,
    /// The frame does not start with a carried tunnel magic or beacon code (spec §3.1, §7.2).
    NotPilot = 2,
    /// The peer address is in a refused range (see [`crate::policy`]).
    RefusedAddress = 3,
    /// The destination's address family differs from the session socket's.
    FamilyMismatch = 4,
    /// The session's packet or byte budget was exhausted.
    RateLimited = 5,
    /// The operating system refused the send (buffer full, message too long, unreachable).
    SendFailed = 6,
    /// A text message arrived after authentication; only binary messages carry datagrams.
    TextMessage = 7,
    /// A `PILT` plaintext frame (not carried in either direction).
    Plaintext = 8,
    /// A tunnel magic or beacon code whose frame does not decode or is too short.
    MalformedFrame = 9,
    /// A beacon message travelling a direction it never takes (or a Sync).
    BeaconDirection = 10,
    /// The address is one of the relay's own and not a live session's port.
    RelaySelf = 11,
}

impl DropReason {
    /// Every reason, in index order.
    pub const ALL: [DropReason; 12] = [
        DropReason::BadHeader,
        DropReason::Oversize,
        DropReason::NotPilot,
        DropReason::RefusedAddress,
        DropReason::FamilyMismatch,
        DropReason::RateLimited,
        DropReason::SendFailed,
        DropReason::TextMessage,
        DropReason::Plaintext,
        DropReason::MalformedFrame,
        DropReason::BeaconDirection,
        DropReason::RelaySelf,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadHeader => "bad_header",
            Self::Oversize => "oversize",
            Self::NotPilot => "not_pilot",
            Self::RefusedAddress => "refused_address",
            Self::FamilyMismatch => "family_mismatch",
            Self::RateLimited => "rate_limited",
            Self::SendFailed => "send_failed",
            Self::TextMessage => "text_message",
            Self::Plaintext => "plaintext",
            Self::MalformedFrame => "malformed_frame",
            Self::BeaconDirection => "beacon_direction",
            Self::RelaySelf => "relay_self",
        }
    }
}

/// The relay's counters and gauges.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// Sessions currently authenticated and holding a UDP socket.
    pub sessions_active: IntGauge,
    /// Sessions that completed authentication since start.
    pub sessions_total: IntCounter,
    frames: [IntCounter; 2],
    bytes: [IntCounter; 2],
    drops: [[IntCounter; 2]; DropReason::ALL.len()],
    auth_failures: IntCounterVec,
    sessions_refused: IntCounterVec,
    /// Registry pipes currently open.
    pub registry_pipes_active: IntGauge,
    /// Connections closed because a WebSocket write did not complete in time.
    pub write_timeouts: IntCounter,
    registry_bytes: [IntCounter; 2],
}

fn counter(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    registry.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(c.clone()))?;
    Ok(c)
}

fn per_direction(vec: &IntCounterVec) -> prometheus::Result<[IntCounter; 2]> {
    Ok([
        vec.get_metric_with_label_values(&[Direction::Outbound.as_str()])?,
        vec.get_metric_with_label_values(&[Direction::Inbound.as_str()])?,
    ])
}

impl Metrics {
    /// Registers every metric in a fresh registry.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let dir = &["direction"];
        let frames = counter_vec(
            &registry,
            "pilot_relay_frames_total",
            "Datagrams forwarded",
            dir,
        )?;
        let bytes = counter_vec(
            &registry,
            "pilot_relay_bytes_total",
            "Frame bytes forwarded (without address headers)",
            dir,
        )?;
        let drops_vec = counter_vec(
            &registry,
            "pilot_relay_drops_total",
            "Datagrams not forwarded, by reason",
            &["reason", "direction"],
        )?;
        let mut drops = Vec::with_capacity(DropReason::ALL.len());
        for reason in DropReason::ALL {
            let mut pair = Vec::with_capacity(2);
            for d in Direction::ALL {
                pair.push(drops_vec.get_metric_with_label_values(&[reason.as_str(), d.as_str()])?);
            }
            drops.push(
                <[IntCounter; 2]>::try_from(pair)
                    .map_err(|_| prometheus::Error::Msg("direction count".into()))?,
            );
        }
        let drops = drops
            .try_into()
            .map_err(|_| prometheus::Error::Msg("drop reason count".into()))?;
        let registry_bytes = counter_vec(
            &registry,
            "pilot_relay_registry_bytes_total",
            "Bytes piped to (outbound) and from (inbound) the registry",
            dir,
        )?;
        Ok(Self {
            sessions_active: gauge(
                &registry,
                "pilot_relay_sessions_active",
                "Authenticated sessions holding a UDP socket",
            )?,
            sessions_total: counter(
                &registry,
                "pilot_relay_sessions_total",
                "Sessions that completed authentication",
            )?,
            frames: per_direction(&frames)?,
            bytes: per_direction(&bytes)?,
            drops,
            auth_failures: counter_vec(
                &registry,
                "pilot_relay_auth_failures_total",
                "Failed authentications, by reason",
                &["reason"],
            )?,
            sessions_refused: counter_vec(
                &registry,
                "pilot_relay_sessions_refused_total",
                "Connections refused by a session limit, by reason",
                &["reason"],
            )?,
            registry_pipes_active: gauge(
                &registry,
                "pilot_relay_registry_pipes_active",
                "Open /v1/registry pipes",
            )?,
            registry_bytes: per_direction(&registry_bytes)?,
            write_timeouts: counter(
                &registry,
                "pilot_relay_write_timeouts_total",
                "Connections closed with 4012 because the client stopped reading",
            )?,
            registry,
        })
    }

    /// Counts one forwarded datagram of `len` frame bytes.
    pub fn forwarded(&self, dir: Direction, len: usize) {
        if let (Some(f), Some(b)) = (self.frames.get(dir as usize), self.bytes.get(dir as usize)) {
            f.inc();
            b.inc_by(len as u64);
        }
    }

    /// Counts one dropped datagram.
    pub fn dropped(&self, reason: DropReason, dir: Direction) {
        if let Some(c) = self
            .drops
            .get(reason as usize)
            .and_then(|pair| pair.get(dir as usize))
        {
            c.inc();
        }
    }

    /// Datagrams dropped so far for `reason` in `dir`.
    pub fn drops(&self, reason: DropReason, dir: Direction) -> u64 {
        self.drops
            .get(reason as usize)
            .and_then(|pair| pair.get(dir as usize))
            .map_or(0, IntCounter::get)
    }

    /// Datagrams forwarded so far in `dir`.
    pub fn frames(&self, dir: Direction) -> u64 {
        self.frames.get(dir as usize).map_or(0, IntCounter::get)
    }

    /// Counts one failed authentication.
    pub fn auth_failed(&self, reason: &str) {
        if let Ok(c) = self.auth_failures.get_metric_with_label_values(&[reason]) {
            c.inc();
        }
    }

    /// Failed authentications so far for `reason`.
    pub fn auth_failures(&self, reason: &str) -> u64 {
        self.auth_failures
            .get_metric_with_label_values(&[reason])
            .map_or(0, |c| c.get())
    }

    /// Counts one connection refused by a session limit.
    pub fn session_refused(&self, reason: &str) {
        if let Ok(c) = self
            .sessions_refused
            .get_metric_with_label_values(&[reason])
        {
            c.inc();
        }
    }

    /// Counts bytes piped through `/v1/registry`.
    pub fn registry_piped(&self, dir: Direction, len: usize) {
        if let Some(c) = self.registry_bytes.get(dir as usize) {
            c.inc_by(len as u64);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn drops_are_counted_per_reason_and_direction_and_rendered() {
        let m = Metrics::new().unwrap();
        m.dropped(DropReason::NotPilot, Direction::Inbound);
        m.dropped(DropReason::NotPilot, Direction::Inbound);
        m.forwarded(Direction::Outbound, 100);
        assert_eq!(m.drops(DropReason::NotPilot, Direction::Inbound), 2);
        assert_eq!(m.drops(DropReason::NotPilot, Direction::Outbound), 0);
        let text = m.render();
        assert!(
            text.contains("pilot_relay_drops_total{direction=\"inbound\",reason=\"not_pilot\"} 2")
        );
        assert!(text.contains("pilot_relay_bytes_total{direction=\"outbound\"} 100"));
    }
}
