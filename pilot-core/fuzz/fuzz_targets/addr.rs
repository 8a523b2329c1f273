//! Fuzzes the address decoders (spec §1): the 6-byte binary form, and the input read as text
//! for both the address and the socket address parsers. Anything accepted must print and
//! parse back to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pilot_core::addr::{Addr, SocketAddr, ADDR_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(addr) = Addr::decode(data) {
        assert_eq!(&addr.to_bytes()[..], &data[..ADDR_LEN]);
    }

    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    if let Ok(addr) = text.parse::<Addr>() {
        let canonical = addr.to_string();
        assert_eq!(canonical.parse::<Addr>(), Ok(addr));
        // Only case and leading zeros of the network may differ from the canonical form.
        assert!(text.eq_ignore_ascii_case(&canonical) || text.starts_with('0'));
    }
    if let Ok(socket) = text.parse::<SocketAddr>() {
        assert_eq!(socket.to_string().parse::<SocketAddr>(), Ok(socket));
    }
});
