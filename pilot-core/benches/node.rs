//! Node benchmarks over the simulated network of `tests/sim` (no loss, 20 ms one-way):
//! a 10 MiB stream transfer between two nodes (throughput in payload bytes per second of
//! CPU: key exchange, sealing, opening, stream processing and the simulator itself) and a
//! full first contact (PILA both ways, registry lookups, session install). Also prints the
//! per-peer and per-connection state sizes.
//!
//! Medians measured on the shared 2-core build machine (release, LTO), December 2026:
//! `node/transfer_10mib_lossless` 105 ms (about 95 MiB/s of payload through both nodes and
//! the simulator), `node/first_contact_key_exchange` 536 µs. `size_of`: 1524 bytes per peer
//! (key-exchange state), 864 bytes per connection (stream state, addresses, table entry),
//! heap buffers on top (bounded by the stream `Config` and the pending queue).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "../tests/sim/mod.rs"]
mod sim;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pilot_core::node::{Event, Node};
use rand_chacha::ChaCha20Rng;
use sim::{addr, public_config, random_bytes, Sim};

const A: u32 = 0x0A;
const B: u32 = 0x0B;
const PORT: u16 = 5_000;
const TRANSFER_BYTES: usize = 10 * 1024 * 1024;

fn pair() -> Sim {
    let mut sim = Sim::new(1);
    sim.add_node(A, public_config());
    sim.add_node(B, public_config());
    sim.with(B, |n, _| n.listen(PORT)).unwrap();
    sim
}

fn transfer(data: &[u8]) {
    let mut sim = pair();
    sim.introduce(A, B);
    let conn = sim.with(A, |n, now| n.dial(now, addr(B), PORT)).unwrap();
    sim.queue_write(A, conn, data.to_vec(), true);
    let done = sim.run_until(Duration::from_secs(600), |s| !s.nodes[&B].eof.is_empty());
    assert!(done);
    let got: usize = sim.nodes[&B].sinks.values().map(Vec::len).sum();
    assert_eq!(got, data.len());
}

fn first_contact() {
    let mut sim = pair();
    sim.introduce(A, B);
    let up = sim.run_until(Duration::from_secs(10), |s| {
        s.saw(A, |e| matches!(e, Event::PeerSessionUp { .. }))
            && s.saw(B, |e| matches!(e, Event::PeerSessionUp { .. }))
    });
    assert!(up);
}

fn benches(c: &mut Criterion) {
    eprintln!(
        "node: per-peer state = {} bytes, per-connection state = {} bytes (size_of; queued \
         packets and stream buffers on the heap not included)",
        Node::<ChaCha20Rng>::per_peer_state_size(),
        Node::<ChaCha20Rng>::per_connection_state_size(),
    );

    let data = random_bytes(7, TRANSFER_BYTES);
    let mut group = c.benchmark_group("node");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(TRANSFER_BYTES as u64));
    group.bench_function("transfer_10mib_lossless", |b| b.iter(|| transfer(&data)));
    group.finish();

    c.bench_function("node/first_contact_key_exchange", |b| {
        b.iter_batched(|| (), |()| first_contact(), BatchSize::SmallInput)
    });
}

criterion_group!(node_benches, benches);
criterion_main!(node_benches);
