//! Cost of the tunnel crypto per operation: PILA build and verify, X25519 + HKDF session key
//! derivation, and PILS seal/open of a 1 KiB packet (about the V-FORK segment size).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use pilot_core::crypto::{derive_session_key, Identity, SendState, SessionKey, TunnelKey};
use pilot_core::frame::pila::{Pila, Trailer};
use pilot_core::frame::pils;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Size of the packet sealed and opened per iteration, in bytes.
const PACKET_LEN_BYTES: usize = 1024;
const NODE: u32 = 0x0001_2345;

fn pila(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let identity = Identity::generate(&mut rng);
    let tunnel = TunnelKey::generate(&mut rng);
    let x25519_public = tunnel.public_key();
    let mut out = Vec::with_capacity(256);

    c.bench_function("pila_build", |b| {
        b.iter(|| {
            out.clear();
            Pila::sign(&identity, NODE, black_box(&x25519_public), Trailer::NONE).encode(&mut out);
            black_box(&out);
        })
    });

    let registry_key = identity.public_key();
    let frame = out.clone();
    c.bench_function("pila_verify", |b| {
        b.iter(|| {
            let pila = Pila::decode(black_box(&frame)).unwrap();
            pila.verify(&registry_key).unwrap();
        })
    });
}

fn derive(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(2);
    let own = TunnelKey::generate(&mut rng);
    let peer = TunnelKey::generate(&mut rng).public_key();
    c.bench_function("x25519_hkdf_derive", |b| {
        b.iter(|| derive_session_key(&own, black_box(&peer)).unwrap())
    });
}

fn pils_1k(c: &mut Criterion) {
    let key = SessionKey::from_bytes(&[0x42; 32]);
    let packet = vec![0xa5u8; PACKET_LEN_BYTES];
    let mut group = c.benchmark_group("pils_1KiB");
    group.throughput(Throughput::Bytes(PACKET_LEN_BYTES as u64));

    let mut send = SendState::with_fixed_prefix_for_replay([1, 2, 3, 4]);
    let mut out = Vec::with_capacity(PACKET_LEN_BYTES + 64);
    group.bench_function("seal", |b| {
        b.iter(|| {
            out.clear();
            pils::seal(&key, &mut send, NODE, black_box(&packet), &mut out).unwrap();
        })
    });

    // Open decrypts in place, so each iteration restores the frame first; the copy of
    // ~1 KiB is part of the measured time (as it would be when reading into a buffer).
    let frame = out.clone();
    let mut buffer = frame.clone();
    group.bench_function("open", |b| {
        b.iter(|| {
            buffer.copy_from_slice(&frame);
            let opened = pils::open(&key, black_box(&mut buffer)).unwrap();
            black_box(opened.packet.len());
        })
    });
    group.finish();
}

criterion_group!(benches, pila, derive, pils_1k);
criterion_main!(benches);
