//! Reconnect delays: exponential backoff from 250 ms to 30 s.

use core::time::Duration;

/// First delay after a failed or lost connection.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
/// Longest delay between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The delay before each reconnect attempt; doubles per failure, reset on success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: INITIAL_BACKOFF,
        }
    }
}

impl Backoff {
    /// The delay to wait now; the following one is twice as long, up to [`MAX_BACKOFF`].
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(MAX_BACKOFF);
        delay
    }

    /// A connection succeeded: start again from [`INITIAL_BACKOFF`].
    pub fn reset(&mut self) {
        self.next = INITIAL_BACKOFF;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        let mut backoff = Backoff::default();
        let delays: alloc::vec::Vec<u128> =
            (0..10).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(
            delays,
            [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        backoff.reset();
        assert_eq!(backoff.next_delay(), INITIAL_BACKOFF);
    }
}
