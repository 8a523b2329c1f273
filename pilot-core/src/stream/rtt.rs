//! Retransmission timeout estimator (RFC 6298, spec §8.7).

use core::time::Duration;

/// RTO before the first RTT sample (RFC 6298 §2.1, spec §8.7).
pub const INITIAL_RTO: Duration = Duration::from_secs(1);
/// Smallest RTO ever used (spec §8.7 clamp).
pub const MIN_RTO: Duration = Duration::from_millis(200);
/// Largest RTO ever used, backoff included (spec §8.7 clamp).
pub const MAX_RTO: Duration = Duration::from_secs(10);
/// Clock granularity term G of RFC 6298 (spec §8.7: `max(10 ms, 4·RTTVAR)`).
const CLOCK_GRANULARITY: Duration = Duration::from_millis(10);

/// Smoothed RTT, RTT variance and the exponential backoff applied after timeouts.
#[derive(Debug, Clone)]
pub(crate) struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    /// Number of doublings since the last acknowledgement of new data.
    backoff: u32,
}

impl RttEstimator {
    pub(crate) const fn new() -> Self {
        RttEstimator {
            srtt: None,
            rttvar: Duration::ZERO,
            backoff: 0,
        }
    }

    /// Feeds one sample. Callers apply Karn's rule: only segments transmitted once are sampled.
    pub(crate) fn on_sample(&mut self, sample: Duration) {
        match self.srtt {
            None => {
                // RFC 6298 §2.2: first measurement.
                self.srtt = Some(sample);
                self.rttvar = sample / 2;
            }
            Some(srtt) => {
                // RFC 6298 §2.3 with α = 1/8, β = 1/4; RTTVAR first, from the old SRTT.
                let deviation = srtt.abs_diff(sample);
                self.rttvar = (self.rttvar * 3 + deviation) / 4;
                self.srtt = Some((srtt * 7 + sample) / 8);
            }
        }
    }

    /// The smoothed RTT, once sampled.
    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// RTO without backoff, clamped to [`MIN_RTO`, `MAX_RTO`].
    pub(crate) fn base_rto(&self) -> Duration {
        match self.srtt {
            None => INITIAL_RTO,
            Some(srtt) => (srtt + CLOCK_GRANULARITY.max(self.rttvar * 4)).clamp(MIN_RTO, MAX_RTO),
        }
    }

    /// The RTO to arm now: the base doubled once per unanswered timeout, capped at [`MAX_RTO`].
    pub(crate) fn rto(&self) -> Duration {
        let factor = 1u32.checked_shl(self.backoff).unwrap_or(u32::MAX);
        self.base_rto().saturating_mul(factor).min(MAX_RTO)
    }

    /// A retransmission timeout fired: double the RTO (RFC 6298 §5.5).
    pub(crate) fn back_off(&mut self) {
        self.backoff = self.backoff.saturating_add(1).min(16);
    }

    /// New data was acknowledged: the path works again, drop the backoff.
    pub(crate) fn reset_backoff(&mut self) {
        self.backoff = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn starts_at_one_second() {
        assert_eq!(RttEstimator::new().rto(), INITIAL_RTO);
    }

    #[test]
    fn first_sample_sets_srtt_and_half_variance() {
        let mut est = RttEstimator::new();
        est.on_sample(ms(100));
        assert_eq!(est.srtt(), Some(ms(100)));
        // 100 + 4·50 = 300 ms.
        assert_eq!(est.rto(), ms(300));
    }

    #[test]
    fn later_samples_follow_rfc6298_weights() {
        let mut est = RttEstimator::new();
        est.on_sample(ms(100));
        est.on_sample(ms(180));
        // RTTVAR = ¾·50 + ¼·80 = 57.5; SRTT = ⅞·100 + ⅛·180 = 110.
        assert_eq!(est.srtt(), Some(ms(110)));
        assert_eq!(est.rto(), ms(110) + Duration::from_micros(57_500) * 4);
    }

    #[test]
    fn rto_is_clamped_to_the_spec_bounds() {
        let mut fast = RttEstimator::new();
        for _ in 0..50 {
            fast.on_sample(ms(1));
        }
        assert_eq!(fast.rto(), MIN_RTO);

        let mut slow = RttEstimator::new();
        slow.on_sample(Duration::from_secs(30));
        assert_eq!(slow.rto(), MAX_RTO);
    }

    #[test]
    fn backoff_doubles_until_the_cap_and_resets_on_progress() {
        let mut est = RttEstimator::new();
        est.on_sample(ms(400)); // RTO = 400 + 800 = 1.2 s
        est.back_off();
        assert_eq!(est.rto(), ms(2_400));
        est.back_off();
        assert_eq!(est.rto(), ms(4_800));
        for _ in 0..40 {
            est.back_off();
        }
        assert_eq!(est.rto(), MAX_RTO);
        est.reset_backoff();
        assert_eq!(est.rto(), ms(1_200));
    }
}
