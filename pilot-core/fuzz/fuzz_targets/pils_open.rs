//! PILS open under a fixed session key, plus the PILA and PILK decoders, on arbitrary bytes.
//! None may panic, and open never accepts a frame whose header peek rejects.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pilot_core::crypto::SessionKey;
use pilot_core::frame::pila::{Pila, Trailer};
use pilot_core::frame::pilk::Pilk;
use pilot_core::frame::pils;

/// The spec §4.6 session key; any fixed key works, a known one keeps crashes reproducible.
const SESSION_KEY: [u8; 32] = [
    0x3e, 0x76, 0x5a, 0x2f, 0x49, 0xfe, 0x2a, 0x91, 0x85, 0xdd, 0x5d, 0x57, 0xc0, 0x8a, 0x35, 0x25,
    0x06, 0x0d, 0x2d, 0x2c, 0x2b, 0x2a, 0x35, 0x6f, 0xad, 0xef, 0x25, 0xf6, 0x14, 0xd3, 0x86, 0x62,
];

fuzz_target!(|data: &[u8]| {
    let key = SessionKey::from_bytes(&SESSION_KEY);
    let header = pils::peek(data);
    let mut frame = data.to_vec();
    let opened = pils::open(&key, &mut frame).map(|o| o.nonce);
    assert!(opened.is_err() || header.is_ok(), "open accepted what peek rejected");

    if let Ok(pila) = Pila::decode(data) {
        let _ = pila.verify(&pila.ed25519_public);
    }
    let _ = Trailer::parse(data);
    let _ = Pilk::decode(data);
});
