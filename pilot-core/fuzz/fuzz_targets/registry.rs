//! Registry stream and port-444 handshake decoders on arbitrary input (spec §9).
//!
//! The first byte chooses how the rest is split into transport chunks; every reassembled
//! body goes through both registry decoders, and whatever decodes must decode the same after
//! a re-encode.
//! The whole input also goes through the trust-handshake receiver.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pilot_core::registry::{FrameReader, Request, Response};
use pilot_core::trust::{HandshakeMessage, HandshakeReceiver};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);

    let mut reader = FrameReader::new();
    for piece in stream.chunks(chunk) {
        reader.push(piece);
        while let Ok(Some(body)) = reader.next_message() {
            // Re-encoding may legitimately exceed the size limit (defaults get written out),
            // so only a successful re-encode is checked.
            if let Ok(request) = Request::decode(&body) {
                if let Ok(frame) = request.encode() {
                    assert_eq!(Request::decode(&frame[4..]).as_ref(), Ok(&request));
                }
            }
            if let Ok(response) = Response::decode(&body) {
                if let Ok(frame) = response.encode() {
                    assert_eq!(Response::decode(&frame[4..]).as_ref(), Ok(&response));
                }
            }
        }
    }

    if let Ok(message) = HandshakeMessage::decode(stream) {
        if let Ok(bytes) = message.encode() {
            assert_eq!(HandshakeMessage::decode(&bytes).as_ref(), Ok(&message));
        }
    }
    let mut receiver = HandshakeReceiver::new(1);
    let _ = receiver.receive(stream, 1_790_000_000, |_| Some([0x42; 32]));
});
