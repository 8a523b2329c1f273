//! Sequence numbers: RFC 1982 serial arithmetic on the 32-bit wire values (spec §8.4).
//!
//! On the wire a sequence number is a `u32` that wraps. Inside a [`Connection`] every sequence
//! number is kept as a `u64` that never wraps (the *absolute* sequence number), so that queues
//! and maps can be ordered with plain `<`. A received wire value is turned into an absolute one
//! exactly once, by `unwrap`, which is where the serial comparison `int32(a − b)` happens.
//!
//! [`Connection`]: super::Connection

use core::cmp::Ordering;

/// Compares two wire sequence numbers in serial order (RFC 1982, spec §8.4: `int32(a − b)`).
///
/// Two numbers exactly 2³¹ apart are incomparable in RFC 1982; like the Go daemons, this treats
/// `a` as the smaller one in that case (the difference reads as negative).
pub fn serial_cmp(a: u32, b: u32) -> Ordering {
    // The cast reinterprets the wrapped difference as a signed distance on purpose.
    (a.wrapping_sub(b) as i32).cmp(&0)
}

/// `a` comes strictly before `b` in serial order.
pub fn serial_lt(a: u32, b: u32) -> bool {
    serial_cmp(a, b) == Ordering::Less
}

/// `a` comes strictly after `b` in serial order.
pub fn serial_gt(a: u32, b: u32) -> bool {
    serial_cmp(a, b) == Ordering::Greater
}

/// The absolute sequence number closest to `reference` whose low 32 bits are `wire`.
///
/// Returns `None` when that number would lie before absolute zero (a value "behind" the very
/// first sequence number of the connection), which callers treat as old.
pub(crate) fn unwrap(wire: u32, reference: u64) -> Option<u64> {
    let delta = i64::from(wire.wrapping_sub(to_wire(reference)) as i32);
    reference.checked_add_signed(delta)
}

/// The wire form of an absolute sequence number: its low 32 bits.
pub(crate) fn to_wire(absolute: u64) -> u32 {
    // Truncation is the point: the wire carries the number modulo 2³².
    absolute as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_order_survives_wraparound() {
        assert!(serial_lt(0xFFFF_FFF0, 0x0000_0010));
        assert!(serial_gt(0x0000_0010, 0xFFFF_FFF0));
        assert!(serial_lt(1, 2));
        assert!(!serial_lt(2, 2));
        assert_eq!(serial_cmp(7, 7), Ordering::Equal);
    }

    #[test]
    fn serial_order_is_antisymmetric_except_at_half_range() {
        for (a, b) in [
            (0u32, 1u32),
            (5, 0x8000_0004),
            (0xFFFF_FFFF, 0),
            (0x4000_0000, 0xB000_0000),
        ] {
            assert_ne!(serial_lt(a, b), serial_lt(b, a), "{a} vs {b}");
        }
        // Exactly half the number space apart: both read as "less" (documented tie rule).
        assert!(serial_lt(0, 0x8000_0000));
        assert!(serial_lt(0x8000_0000, 0));
    }

    #[test]
    fn unwrap_picks_the_nearest_absolute_value() {
        assert_eq!(unwrap(5, 3), Some(5));
        assert_eq!(unwrap(1, 0x1_0000_0000 - 2), Some(0x1_0000_0001));
        assert_eq!(unwrap(0xFFFF_FFFE, 0x1_0000_0003), Some(0xFFFF_FFFE));
        assert_eq!(unwrap(0xFFFF_FFF0, 4), None, "behind absolute zero");
        assert_eq!(to_wire(0x1_0000_0007), 7);
    }
}
