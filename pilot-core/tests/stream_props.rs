//! Property tests for the stream layer: the SACK codec and a connection fed arbitrary segments.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::time::Duration;

use pilot_core::stream::sack::{SackBlock, SackBlocks};
use pilot_core::stream::{Config, Connection, Flags, Segment, StreamError, DEFAULT_MSS_BYTES};
use pilot_core::time::Instant;
use proptest::prelude::*;

proptest! {
    #[test]
    fn sack_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = SackBlocks::decode(&bytes);
    }

    #[test]
    fn sack_decode_accepts_anything_after_a_valid_prefix(
        pairs in proptest::collection::vec((any::<u32>(), any::<u32>()), 1..=4),
        trailer in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut blocks = SackBlocks::new();
        for (left, right) in &pairs {
            let pushed = blocks.push(SackBlock { left: *left, right: *right });
            prop_assert!(pushed);
        }
        let mut bytes = Vec::new();
        blocks.encode(&mut bytes);
        prop_assert_eq!(bytes.len(), 5 + 8 * pairs.len());
        bytes.extend_from_slice(&trailer);
        prop_assert_eq!(SackBlocks::decode(&bytes).unwrap(), blocks);
    }

    #[test]
    fn sack_payload_with_a_short_tail_is_truncated_not_a_panic(
        count in 1u8..=4,
        cut in 0usize..32,
    ) {
        let mut bytes = b"SACK".to_vec();
        bytes.push(count);
        bytes.extend(std::iter::repeat_n(7u8, cut.min(8 * usize::from(count) - 1)));
        prop_assert_eq!(SackBlocks::decode(&bytes), Err(StreamError::SackTruncated));
    }

    /// Whatever arrives, an established connection neither panics nor emits a data segment
    /// larger than its MSS, and it always knows when to wake up until it is closed.
    #[test]
    fn connection_survives_arbitrary_segments(
        inputs in proptest::collection::vec(
            (0u8..16, any::<u32>(), any::<u32>(), any::<u16>(),
             proptest::collection::vec(any::<u8>(), 0..1100), 0u64..3_000),
            1..40,
        ),
        writes in 0usize..5_000,
    ) {
        let mut now = Instant::from_millis(1);
        let mut conn = Connection::connect(now, Config::default());
        conn.poll_transmit(now).unwrap();
        let syn_ack = Segment { flags: Flags::SYN | Flags::ACK, seq: 0, ack: 1, window: 8, payload: &[][..] };
        conn.handle_segment(now, syn_ack);
        conn.write(&vec![0x55; writes]).ok();

        for (flags, seq, ack, window, payload, advance_ms) in inputs {
            now = now + Duration::from_millis(advance_ms);
            let segment = Segment { flags: Flags::from_bits_truncate(flags), seq, ack, window, payload: &payload[..] };
            conn.handle_segment(now, segment);
            if conn.poll_timeout().is_some_and(|t| t <= now) {
                conn.handle_timeout(now);
            }
            while let Some(out) = conn.poll_transmit(now) {
                prop_assert!(out.payload.len() <= usize::from(DEFAULT_MSS_BYTES));
            }
            let mut buf = [0u8; 512];
            let _ = conn.read(&mut buf);
            while conn.poll_event().is_some() {}
            prop_assert!(conn.is_closed() || conn.poll_timeout().is_some());
        }
    }
}
