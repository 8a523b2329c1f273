//! A reassembler fed a stream of fragments derived from the input, with small time steps:
//! must never panic, and its memory must stay within the documented bound.
//!
//! Input, repeated: `op ‖ step_ms ‖ source ‖ …`. When `op` is even the next bytes are
//! `sender ‖ group ‖ index ‖ count ‖ len_hi ‖ len_lo` and a well-formed-looking fragment is
//! built from them (small ID spaces so groups collide and complete); when `op` is odd the
//! next `len` bytes (`len` = one byte) are pushed raw.
#![no_main]

use core::time::Duration;

use libfuzzer_sys::fuzz_target;
use pilot_core::frame::fragment::{
    Fragment, Reassembler, FRAGMENT_CHUNK, MAX_FRAGMENTED_FRAME, MAX_GROUPS, REASSEMBLY_TIMEOUT,
};
use pilot_core::time::Instant;

fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, rest) = data.split_at_checked(n)?;
    *data = rest;
    Some(head)
}

fuzz_target!(|input: &[u8]| {
    let mut data = input;
    let mut reassembler = Reassembler::new();
    let mut now = Instant::from_millis(1);
    let filler = [0xa5u8; FRAGMENT_CHUNK + 2];

    while let Some(&[op, step_ms, source]) = take(&mut data, 3) {
        now = now + Duration::from_millis(u64::from(step_ms) * 8);
        // A third of the traffic claims to come through the relay.
        let relay = source % 3 == 0;

        let mut frame = Vec::new();
        let relay_sender = if op % 2 == 0 {
            let Some(&[sender, group, index, count, len_hi, len_lo]) = take(&mut data, 6) else {
                break;
            };
            let len = usize::from(u16::from_be_bytes([len_hi, len_lo])) % (FRAGMENT_CHUNK + 2);
            let sender = u32::from(sender % 4);
            let chunk = filler.get(..len).unwrap_or(&[]);
            Fragment {
                sender,
                group: u32::from(group % 64),
                index: index % 66,
                count: count % 66,
                chunk,
            }
            .encode(&mut frame);
            // Now and then the relay reports a different sender than the header.
            relay.then_some(if op % 7 == 0 { sender ^ 1 } else { sender })
        } else {
            let Some(&[len]) = take(&mut data, 1) else {
                break;
            };
            let Some(raw) = take(&mut data, usize::from(len)) else {
                break;
            };
            frame.extend_from_slice(raw);
            relay.then_some(0)
        };

        if let Ok(Some(whole)) = reassembler.push(source % 40, relay_sender, &frame, now) {
            assert!(whole.len() <= MAX_FRAGMENTED_FRAME);
        }
        assert!(reassembler.pending_groups() <= MAX_GROUPS);
        assert!(reassembler.buffered_bytes() <= MAX_GROUPS * MAX_FRAGMENTED_FRAME);
        if let Some(deadline) = reassembler.next_expiry() {
            assert!(deadline > now && deadline <= now + REASSEMBLY_TIMEOUT);
        }
    }

    reassembler.expire(now + REASSEMBLY_TIMEOUT);
    assert_eq!(reassembler.pending_groups(), 0);
});
