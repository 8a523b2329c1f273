//! Every transport-side frame decoder on arbitrary bytes: must never panic, and what is
//! accepted must re-encode to the bytes it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pilot_core::frame::beacon::{self, BeaconMessage};
use pilot_core::frame::fragment::Fragment;
use pilot_core::frame::tcp::{TcpDeframer, LENGTH_PREFIX_LEN, MAX_TCP_FRAME};
use pilot_core::frame::{classify, plaintext, punch};

fuzz_target!(|data: &[u8]| {
    let _ = classify(data);
    let _ = punch::decode(data);

    if let Ok(packet) = plaintext::decode(data) {
        let mut again = Vec::new();
        plaintext::encode(packet, &mut again);
        assert_eq!(again, data);
    }
    if let Ok(fragment) = Fragment::decode(data) {
        let mut again = Vec::new();
        fragment.encode(&mut again);
        assert_eq!(again, data);
    }
    if let Ok(message) = BeaconMessage::decode(data) {
        let mut again = Vec::new();
        message.encode(&mut again);
        assert!(data.starts_with(&again));
    }
    let _ = beacon::parse_relay_deliver(data);

    // The first byte picks a chunk size so that the stream is cut in many different ways.
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut deframer = TcpDeframer::new();
    for mut piece in data.chunks(step) {
        while let Ok(Some(frame)) = deframer.next_frame(&mut piece) {
            assert!(!frame.is_empty() && frame.len() <= MAX_TCP_FRAME);
        }
        assert!(deframer.buffered() <= LENGTH_PREFIX_LEN + MAX_TCP_FRAME);
    }
});
