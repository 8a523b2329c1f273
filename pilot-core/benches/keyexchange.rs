//! A full key exchange between two key-exchange stores (spec §6.2): A's PILA, B's registry
//! lookup, verification and install, B's PILA reply, A's verification and install. Also
//! prints the per-peer state size.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use pilot_core::crypto::{Identity, TunnelKey};
use pilot_core::keyexchange::{KexEvent, KexOutput, KeyExchange, PathId};
use pilot_core::time::Instant;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const A: u32 = 1;
const B: u32 = 2;
/// Upper bound on frames a complete exchange may take; more means a bug, not a slow run.
const MAX_FRAMES: usize = 16;

fn store(node: u32, rng: &mut ChaCha20Rng) -> KeyExchange {
    KeyExchange::with_tunnel_key(
        node,
        Identity::from_seed(&[u8::try_from(node).unwrap(); 32]),
        TunnelKey::generate(rng),
    )
}

fn registry_key(node: u32) -> [u8; 32] {
    Identity::from_seed(&[u8::try_from(node).unwrap(); 32]).public_key()
}

/// Runs outputs between the two stores until both hold a session.
fn exchange(
    mut a: KeyExchange,
    mut b: KeyExchange,
    rng: &mut ChaCha20Rng,
) -> (KeyExchange, KeyExchange) {
    let now = Instant::from_millis(1);
    a.connect(now, B, PathId(u64::from(B))).unwrap();
    for _ in 0..MAX_FRAMES {
        if a.has_session(B) && b.has_session(A) {
            return (a, b);
        }
        let moved = pump(&mut a, A, &mut b, now, rng) | pump(&mut b, B, &mut a, now, rng);
        if !moved {
            break;
        }
    }
    panic!("key exchange did not complete");
}

/// Drains `from`'s outputs into `to`; whether anything moved.
fn pump(
    from: &mut KeyExchange,
    from_node: u32,
    to: &mut KeyExchange,
    now: Instant,
    rng: &mut ChaCha20Rng,
) -> bool {
    let mut moved = false;
    while let Some(output) = from.poll_output() {
        moved = true;
        match output {
            KexOutput::Transmit { frame, .. } => {
                let _ = to.handle_frame(now, PathId(u64::from(from_node)), &frame, rng);
            }
            KexOutput::Event(KexEvent::NeedPeerKey { node }) => {
                let _ = from.provide_peer_key(now, node, Some(registry_key(node)), rng);
            }
            _ => {}
        }
    }
    moved
}

fn key_exchange(c: &mut Criterion) {
    println!(
        "keyexchange: per-peer state = {} bytes (size_of, excluding queued packets)",
        KeyExchange::per_peer_state_size()
    );
    let mut rng = ChaCha20Rng::seed_from_u64(0x5049_4c41);
    c.bench_function("keyexchange/full_exchange", |bench| {
        bench.iter_batched(
            || {
                let mut setup_rng = ChaCha20Rng::seed_from_u64(7);
                (store(A, &mut setup_rng), store(B, &mut setup_rng))
            },
            |(a, b)| black_box(exchange(a, b, &mut rng)),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, key_exchange);
criterion_main!(benches);
