//! Token buckets that bound a session's packets and bytes per second in each direction.

use std::time::{Duration, Instant};

/// A token bucket refilled continuously at `rate` tokens per second up to `capacity`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_sec: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket holding `burst` tokens, refilled at `rate_per_sec`.
    pub fn new(rate_per_sec: f64, burst: f64, now: Instant) -> Self {
        Self {
            rate_per_sec,
            capacity: burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed: Duration = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate_per_sec).min(self.capacity);
    }

    /// Whether `amount` tokens are available at `now` (after refilling); takes nothing.
    pub fn has(&mut self, amount: f64, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= amount
    }

    /// Removes `amount` tokens; call only after [`TokenBucket::has`] said yes.
    pub fn take(&mut self, amount: f64) {
        self.tokens -= amount;
    }
}

/// The packet and byte budgets of one direction of a session.
#[derive(Debug, Clone)]
pub struct RateLimit {
    packets: TokenBucket,
    bytes: TokenBucket,
}

impl RateLimit {
    /// Allows `packets_per_sec` and `bytes_per_sec` on average, with one second of burst.
    pub fn new(packets_per_sec: u32, bytes_per_sec: u64, now: Instant) -> Self {
        let pps = f64::from(packets_per_sec);
        let bps = bytes_per_sec as f64;
        Self {
            packets: TokenBucket::new(pps, pps, now),
            bytes: TokenBucket::new(bps, bps, now),
        }
    }

    /// Charges one datagram of `len` bytes; `false` (and nothing charged) if over budget.
    pub fn admit(&mut self, len: usize, now: Instant) -> bool {
        let len = len as f64;
        if self.packets.has(1.0, now) && self.bytes.has(len, now) {
            self.packets.take(1.0);
            self.bytes.take(len);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut rl = RateLimit::new(2, 1_000, t0);
        assert!(rl.admit(10, t0));
        assert!(rl.admit(10, t0));
        assert!(!rl.admit(10, t0), "third packet exceeds the 2-packet burst");
        assert!(
            rl.admit(10, t0 + Duration::from_millis(500)),
            "one token after 0.5 s"
        );
        assert!(!rl.admit(10, t0 + Duration::from_millis(500)));
    }

    #[test]
    fn byte_budget_is_independent_of_packet_budget() {
        let t0 = Instant::now();
        let mut rl = RateLimit::new(100, 1_500, t0);
        assert!(rl.admit(1_000, t0));
        assert!(!rl.admit(1_000, t0), "only 500 bytes left");
        assert!(rl.admit(500, t0), "a refused datagram charged nothing");
    }
}
