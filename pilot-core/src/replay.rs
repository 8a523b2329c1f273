//! Replay protection for PILS (spec §5): window, receive epochs, fault counters, drop gates.
//!
//! (module being written; the type below fixes the contract with the PILS decoder)

/// The nonce of a PILS frame whose AEAD tag has been verified.
///
/// Only the PILS open path in this crate can create one, so replay state can only ever be
/// moved by authenticated frames (spec §5.2: authenticate before the window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthenticatedNonce {
    prefix: [u8; 4],
    counter: u64,
}

impl AuthenticatedNonce {
    /// Wraps a nonce after its frame authenticated. Crate-private on purpose.
    pub(crate) fn new(prefix: [u8; 4], counter: u64) -> Self {
        Self { prefix, counter }
    }

    /// The sender's 4-byte nonce prefix: identifies its send epoch (spec §5.4).
    pub fn prefix(&self) -> [u8; 4] {
        self.prefix
    }

    /// The send counter (spec §4.3).
    pub fn counter(&self) -> u64 {
        self.counter
    }
}
