//! Every frame classifier and decoder on arbitrary bytes: must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pilot_core::frame::classify(data);
});
