//! Per-peer state: the installed session, the pending key exchange, the pending packet queue
//! and the salvage ring.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

use zeroize::Zeroize;

use super::timers::TimerTable;
use super::{PathId, PENDING_PACKETS_PER_PEER, SALVAGE_MAX_AGE, SALVAGE_PACKETS};
use crate::crypto::{SendState, SessionKey, X25519_KEY_LEN};
use crate::replay::ReceiveState;
use crate::time::Instant;

/// A plaintext packet held for later sending; its bytes are zeroed when it is dropped.
pub(crate) struct SecretPacket(Vec<u8>);

impl SecretPacket {
    /// Copies `packet` into an exactly sized buffer (so zeroing `len` bytes zeroes it all).
    pub(crate) fn copy_of(packet: &[u8]) -> Self {
        Self(packet.to_vec())
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for SecretPacket {
    fn drop(&mut self) {
        self.0.as_mut_slice().zeroize();
    }
}

impl fmt::Debug for SecretPacket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretPacket({} bytes)", self.0.len())
    }
}

/// Spec §5.5: plaintext copies of the latest sends of a session, replayed under the new
/// session after a real rekey. At most [`SALVAGE_PACKETS`], none older than
/// [`SALVAGE_MAX_AGE`]; evicted entries are zeroed.
#[derive(Debug, Default)]
pub(crate) struct Salvage {
    entries: VecDeque<(Instant, SecretPacket)>,
}

impl Salvage {
    /// Remembers a packet just sent at `now`.
    pub(crate) fn push(&mut self, now: Instant, packet: &[u8]) {
        self.expire(now);
        while self.entries.len() >= SALVAGE_PACKETS {
            self.entries.pop_front();
        }
        self.entries.push_back((now, SecretPacket::copy_of(packet)));
    }

    /// Removes and returns the entries still young enough to replay at `now`, oldest first.
    pub(crate) fn take_fresh(&mut self, now: Instant) -> VecDeque<SecretPacket> {
        self.expire(now);
        core::mem::take(&mut self.entries)
            .into_iter()
            .map(|(_, packet)| packet)
            .collect()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    fn expire(&mut self, now: Instant) {
        while self
            .entries
            .front()
            .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= SALVAGE_MAX_AGE)
        {
            self.entries.pop_front();
        }
    }
}

/// An installed session with one peer (spec §4, §5).
#[derive(Debug)]
pub(crate) struct Session {
    /// The peer's X25519 key this session was derived from.
    pub(crate) peer_x25519: [u8; X25519_KEY_LEN],
    pub(crate) key: SessionKey,
    pub(crate) send: SendState,
    pub(crate) recv: ReceiveState,
    pub(crate) installed_at: Instant,
    /// Last authenticated inbound frame; install counts as one (V-NEW post-install liveness).
    pub(crate) last_inbound: Instant,
    pub(crate) salvage: Salvage,
}

/// A key exchange we started and have not seen answered (spec §6.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Attempt {
    /// Key-exchange rounds sent so far (a round is a PILA, plus a PILK key request).
    pub(crate) sends: u32,
    pub(crate) last_send: Instant,
    /// Send the PILK key request from the first round on, not only from the second.
    pub(crate) eager_key_request: bool,
}

/// Everything known about one peer node.
#[derive(Debug, Default)]
pub(crate) struct Peer {
    /// The Ed25519 key the registry holds for the peer, once the driver supplied it.
    pub(crate) identity: Option<[u8; 32]>,
    /// When a mismatching PILA last made us fetch the registry key again (spec §6.2 step 3).
    pub(crate) identity_refetched_at: Option<Instant>,
    /// Where frames for this peer go: the path of the last authenticated frame, or the one
    /// given to `connect`.
    pub(crate) path: Option<PathId>,
    pub(crate) session: Option<Session>,
    /// The peer key and last send counter of the session we last deleted, so that a session
    /// rebuilt toward the same peer key continues the counter (spec §5.4, §6.9 rule 7).
    pub(crate) retired_send: Option<([u8; X25519_KEY_LEN], u64)>,
    pub(crate) attempt: Option<Attempt>,
    /// New key exchanges are refused until then, after one gave up (spec §6.6).
    pub(crate) cooldown_until: Option<Instant>,
    /// Last same-key reply (spec §6.4 rate limits).
    pub(crate) last_reply: Option<Instant>,
    /// Last time our PILA went to this peer, for any reason.
    pub(crate) last_pila_sent: Option<Instant>,
    /// Packets waiting for a session (spec §6.5).
    pub(crate) pending: VecDeque<SecretPacket>,
    pub(crate) timers: TimerTable,
}

impl Peer {
    /// Whether the entry holds nothing but cached facts and can be evicted.
    pub(crate) fn is_idle(&self, now: Instant) -> bool {
        self.session.is_none()
            && self.attempt.is_none()
            && self.pending.is_empty()
            && self.cooldown_until.is_none_or(|until| until <= now)
    }

    /// Whether new key exchanges are refused at `now`.
    pub(crate) fn in_cooldown(&self, now: Instant) -> bool {
        self.cooldown_until.is_some_and(|until| until > now)
    }

    /// Whether the queue can take another packet.
    pub(crate) fn pending_has_room(&self) -> bool {
        self.pending.len() < PENDING_PACKETS_PER_PEER
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]

    use super::*;
    use core::time::Duration;

    #[test]
    fn salvage_keeps_the_four_newest_and_forgets_after_five_seconds() {
        let mut ring = Salvage::default();
        for i in 0u8..6 {
            ring.push(Instant::from_millis(u64::from(i)), &[i]);
        }
        assert_eq!(ring.len(), SALVAGE_PACKETS);
        let fresh = ring.take_fresh(Instant::from_millis(10));
        let kept: Vec<u8> = fresh.iter().map(|p| p.as_slice()[0]).collect();
        assert_eq!(kept, [2, 3, 4, 5]);
        assert_eq!(ring.len(), 0);

        ring.push(Instant::ZERO, b"old");
        ring.push(Instant::ZERO + Duration::from_secs(1), b"new");
        let fresh = ring.take_fresh(Instant::ZERO + SALVAGE_MAX_AGE);
        assert_eq!(fresh.len(), 1);
        assert_eq!(fresh[0].as_slice(), b"new");
    }
}
