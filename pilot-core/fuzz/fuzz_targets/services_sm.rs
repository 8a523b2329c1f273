//! Fuzzes the service state machines (spec §10, §9.6) with arbitrary received bytes. The first
//! byte picks the machine and the chunk size; the rest is what the peer(s) sent. Checks: no
//! panic, echo returns its input exactly, closed connections stay closed, and every bound
//! (unflushed bytes, connections, pending requests) holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pilot_core::crypto::Identity;
use pilot_core::registry::Response;
use pilot_core::services::broker::{Broker, BrokerConfig, BrokerOutput};
use pilot_core::services::echo::{EchoConfig, EchoService};
use pilot_core::services::exchange_server::{ExchangeOutput, ExchangeServer};
use pilot_core::services::trust_service::{TrustConfig, TrustService, MAX_PENDING};
use pilot_core::services::ConnId;

const NOW_UNIX_SECS: u64 = 1_790_000_000;
const MAX_UNFLUSHED_BYTES: usize = 4096;

fn echo(stream: &[u8], chunk: usize) {
    let mut echo = EchoService::new(EchoConfig {
        max_connections: 1,
        max_unflushed_bytes: MAX_UNFLUSHED_BYTES,
    });
    let conn = ConnId(0);
    if echo.open(conn).is_err() {
        return;
    }
    let mut echoed = Vec::new();
    for piece in stream.chunks(chunk) {
        let mut rest = piece;
        while !rest.is_empty() {
            let Ok(out) = echo.receive(conn, rest) else {
                return;
            };
            echoed.extend_from_slice(out.write);
            assert!(echo.unflushed_len(conn).unwrap_or(0) <= MAX_UNFLUSHED_BYTES);
            rest = out.held_back;
            if echo.written(conn, out.write.len().max(1)).is_err() {
                return;
            }
        }
    }
    assert_eq!(echoed, stream);
}

fn exchange(stream: &[u8], chunk: usize) {
    let mut server = ExchangeServer::default();
    let conn = ConnId(0);
    if server.open(conn).is_err() {
        return;
    }
    for piece in stream.chunks(chunk) {
        let Ok(out) = server.receive(conn, piece) else {
            // Only after a Close: the connection must stay forgotten.
            assert_eq!(server.connection_count(), 0);
            return;
        };
        if matches!(out.last(), Some(ExchangeOutput::Close { .. })) {
            assert!(server.receive(conn, b"").is_err());
            return;
        }
    }
    let _ = server.close(conn);
}

/// Each chunk's first byte names the sending connection (0..4); the broker may drop slow
/// subscribers, since nothing is ever reported written.
fn broker(stream: &[u8], chunk: usize) {
    let mut broker = Broker::new(BrokerConfig {
        max_connections: 4,
        max_unflushed_bytes: MAX_UNFLUSHED_BYTES,
    });
    for id in 0..4 {
        let _ = broker.open(ConnId(id));
    }
    for piece in stream.chunks(chunk.saturating_add(1)) {
        let Some((&who, bytes)) = piece.split_first() else {
            continue;
        };
        let sender = ConnId(u64::from(who % 4));
        let Ok(out) = broker.receive(sender, bytes) else {
            continue;
        };
        for output in out {
            if let BrokerOutput::Write { conn, .. } = output {
                assert_ne!(conn, sender, "event echoed to its publisher");
            }
        }
        for id in 0..4 {
            if let Some(unflushed) = broker.unflushed_len(ConnId(id)) {
                // Within the limit, or one event an idle subscriber took (no event is longer
                // than the input it came from).
                assert!(unflushed <= MAX_UNFLUSHED_BYTES.max(stream.len()));
            }
        }
    }
    assert!(broker.connection_count() <= 4);
}

fn trust(bytes: &[u8]) {
    let peer_key = Identity::from_seed(&[1; 32]).public_key();
    let mut svc = TrustService::new(
        2,
        Identity::from_seed(&[2; 32]),
        TrustConfig { auto_approve: false },
    );
    let _ = svc.receive(bytes, NOW_UNIX_SECS, |_| Some(peer_key));
    if let Ok(Response::PollHandshakesOk(inbox)) = Response::decode(bytes) {
        let _ = svc.on_poll(&inbox, NOW_UNIX_SECS);
        assert!(svc.pending().len() <= MAX_PENDING);
        if let Some(first) = svc.pending().first().map(|p| p.node) {
            let _ = svc.approve(first, NOW_UNIX_SECS);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(selector >> 2).max(1);
    match selector & 3 {
        0 => echo(stream, chunk),
        1 => exchange(stream, chunk),
        2 => broker(stream, chunk),
        _ => trust(stream),
    }
});
