//! Congestion window: slow start, congestion avoidance and NewReno-style recovery (spec §8.7).
//!
//! Loss accounting follows RFC 6675: bytes the peer has SACKed, or that are marked lost and
//! wait for retransmission, are not "in flight", so the window is not inflated per duplicate
//! ACK as in plain RFC 5681. What is kept from NewReno (RFC 6582) is the recovery point: one
//! window reduction per loss event, and a partial ACK inside recovery retransmits the next hole.

/// Initial congestion window in segments (spec §8.7: 10·MSS).
pub const INITIAL_WINDOW_SEGMENTS: usize = 10;
/// Largest congestion window in bytes (spec §8.7, V-FEB/V-FORK: 1 MiB).
pub const MAX_CWND_BYTES: usize = 1 << 20;
/// Slow-start threshold before the first loss: half the largest window (spec §8.7).
pub const INITIAL_SSTHRESH_BYTES: usize = MAX_CWND_BYTES / 2;
/// Most bytes one ACK may add in slow start, in segments (RFC 3465 appropriate byte counting).
const SLOW_START_ACK_LIMIT_SEGMENTS: usize = 2;

/// What kind of loss event the sender is recovering from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecoveryKind {
    /// Entered on the third duplicate ACK; the window stays at ssthresh until the point is acked.
    Fast,
    /// Entered on a retransmission timeout; slow start regrows the window meanwhile.
    Timeout,
}

/// How a cumulative ACK relates to an ongoing recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AckProgress {
    /// Not in fast recovery, or the ACK covered the recovery point.
    Normal,
    /// Fast recovery continues: the ACK stopped short of the recovery point, so the next hole
    /// is lost too (RFC 6582 §3.2 step 3).
    Partial,
}

/// Sender congestion state, in bytes.
#[derive(Debug, Clone)]
pub(crate) struct Congestion {
    mss: usize,
    cwnd: usize,
    ssthresh: usize,
    /// Recovery point (absolute sequence number one past the highest sent when loss was seen).
    recovery: Option<(u64, RecoveryKind)>,
}

impl Congestion {
    pub(crate) fn new(mss: usize) -> Self {
        let mss = mss.max(1);
        Congestion {
            mss,
            cwnd: (INITIAL_WINDOW_SEGMENTS * mss).min(MAX_CWND_BYTES),
            ssthresh: INITIAL_SSTHRESH_BYTES,
            recovery: None,
        }
    }

    /// Bytes that may be in flight.
    pub(crate) fn window(&self) -> usize {
        self.cwnd
    }

    /// Whether a loss event is being recovered from (no new fast retransmit until it ends).
    pub(crate) fn in_recovery(&self) -> bool {
        self.recovery.is_some()
    }

    /// Third duplicate ACK: halve the window based on the flight size (spec §8.7).
    pub(crate) fn on_fast_retransmit(&mut self, flight_bytes: usize, recovery_point: u64) {
        self.ssthresh = self.reduced_threshold(flight_bytes);
        self.cwnd = self.ssthresh;
        self.recovery = Some((recovery_point, RecoveryKind::Fast));
    }

    /// Retransmission timeout: restart from one segment (RFC 5681 §3.1 loss window).
    pub(crate) fn on_timeout(&mut self, flight_bytes: usize, recovery_point: u64) {
        // A timeout during a timeout recovery keeps the first threshold: the flight it would
        // be computed from is already the shrunken one.
        if !matches!(self.recovery, Some((_, RecoveryKind::Timeout))) {
            self.ssthresh = self.reduced_threshold(flight_bytes);
        }
        self.cwnd = self.mss;
        self.recovery = Some((recovery_point, RecoveryKind::Timeout));
    }

    /// New data was cumulatively acknowledged up to `ack` (`acked_bytes` of it).
    pub(crate) fn on_ack(&mut self, ack: u64, acked_bytes: usize) -> AckProgress {
        match self.recovery {
            Some((point, RecoveryKind::Fast)) if ack < point => return AckProgress::Partial,
            Some((_, RecoveryKind::Fast)) => {
                // RFC 6582 §3.2 step 3 (full ACK): leave recovery at ssthresh.
                self.recovery = None;
                self.cwnd = self.ssthresh;
                return AckProgress::Normal;
            }
            Some((point, RecoveryKind::Timeout)) if ack >= point => self.recovery = None,
            _ => {}
        }
        self.grow(acked_bytes);
        AckProgress::Normal
    }

    fn grow(&mut self, acked_bytes: usize) {
        let increase = if self.cwnd < self.ssthresh {
            acked_bytes.min(SLOW_START_ACK_LIMIT_SEGMENTS * self.mss)
        } else {
            // Congestion avoidance: about one MSS per window of ACKs.
            (self.mss.saturating_mul(acked_bytes.min(self.mss)) / self.cwnd.max(1)).max(1)
        };
        self.cwnd = self.cwnd.saturating_add(increase).min(MAX_CWND_BYTES);
    }

    fn reduced_threshold(&self, flight_bytes: usize) -> usize {
        (flight_bytes / 2).max(2 * self.mss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: usize = 1024;

    #[test]
    fn starts_with_ten_segments() {
        assert_eq!(Congestion::new(MSS).window(), 10 * MSS);
    }

    #[test]
    fn slow_start_grows_by_acked_bytes_up_to_two_segments_per_ack() {
        let mut cc = Congestion::new(MSS);
        cc.on_ack(1, MSS);
        assert_eq!(cc.window(), 11 * MSS);
        cc.on_ack(2, 5 * MSS);
        assert_eq!(cc.window(), 13 * MSS);
    }

    #[test]
    fn window_never_exceeds_one_mebibyte() {
        let mut cc = Congestion::new(MSS);
        // Slow start to ssthresh, then about one MSS per window of ACKs: 2 M ACKs is plenty.
        for i in 0..2_000_000 {
            cc.on_ack(i, MSS);
        }
        assert_eq!(cc.window(), MAX_CWND_BYTES);
    }

    #[test]
    fn fast_retransmit_halves_flight_with_a_two_segment_floor() {
        let mut cc = Congestion::new(MSS);
        cc.on_fast_retransmit(40 * MSS, 1000);
        assert_eq!(cc.window(), 20 * MSS);
        assert!(cc.in_recovery());

        let mut small = Congestion::new(MSS);
        small.on_fast_retransmit(MSS, 10);
        assert_eq!(small.window(), 2 * MSS);
    }

    #[test]
    fn partial_ack_keeps_recovery_and_full_ack_ends_it() {
        let mut cc = Congestion::new(MSS);
        cc.on_fast_retransmit(40 * MSS, 1000);
        assert_eq!(cc.on_ack(500, MSS), AckProgress::Partial);
        assert!(cc.in_recovery());
        assert_eq!(cc.window(), 20 * MSS, "no growth during recovery");
        assert_eq!(cc.on_ack(1000, MSS), AckProgress::Normal);
        assert!(!cc.in_recovery());
        assert_eq!(cc.window(), 20 * MSS);
    }

    #[test]
    fn timeout_restarts_slow_start_from_one_segment() {
        let mut cc = Congestion::new(MSS);
        cc.on_timeout(40 * MSS, 1000);
        assert_eq!(cc.window(), MSS);
        assert_eq!(cc.on_ack(100, MSS), AckProgress::Normal);
        assert_eq!(
            cc.window(),
            2 * MSS,
            "slow start continues during timeout recovery"
        );
        cc.on_ack(1000, MSS);
        assert!(!cc.in_recovery());
    }
}
