//! Replay-window throughput (spec §5.1): in-order counters, and counters shuffled inside the
//! window as a lossy multipath link would deliver them.
#![allow(missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pilot_core::replay::{ReplayWindow, REPLAY_WINDOW_COUNTERS};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Counters judged per iteration.
const STREAM_COUNTERS: u64 = 4_096;

/// 1..=STREAM_COUNTERS, each block of one window width shuffled. Within a block no counter is
/// 256 or more below another, so every frame is accepted and the work measured is the
/// accepting path (in-window marks and slides of varying length).
fn shuffled_in_window() -> Vec<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5049_4c53);
    let mut counters: Vec<u64> = (1..=STREAM_COUNTERS).collect();
    let block_len = usize::try_from(REPLAY_WINDOW_COUNTERS).unwrap_or(256);
    for block in counters.chunks_mut(block_len) {
        // Fisher-Yates; the modulo bias of a 64-bit draw over < 256 slots is irrelevant here.
        for i in (1..block.len()).rev() {
            let bound = u64::try_from(i + 1).unwrap_or(u64::MAX);
            let j = usize::try_from(rng.next_u64() % bound).unwrap_or(0);
            block.swap(i, j);
        }
    }
    counters
}

fn accepted(counters: &[u64]) -> usize {
    let mut window = ReplayWindow::new();
    counters
        .iter()
        .filter(|&&c| window.check_and_record(c).is_accept())
        .count()
}

fn judge_all(counters: &[u64], mut window: ReplayWindow) -> ReplayWindow {
    for &counter in counters {
        black_box(window.check_and_record(black_box(counter)));
    }
    window
}

fn replay(c: &mut Criterion) {
    let in_order: Vec<u64> = (1..=STREAM_COUNTERS).collect();
    let shuffled = shuffled_in_window();
    // Not timed: both streams must be fully accepted, else the bench measures another path.
    assert_eq!(accepted(&in_order), in_order.len());
    assert_eq!(accepted(&shuffled), shuffled.len());

    let mut group = c.benchmark_group("replay_window");
    group.throughput(Throughput::Elements(STREAM_COUNTERS));
    group.bench_function("in_order", |b| {
        b.iter_batched(
            ReplayWindow::new,
            |w| judge_all(&in_order, w),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("shuffled_in_window", |b| {
        b.iter_batched(
            ReplayWindow::new,
            |w| judge_all(&shuffled, w),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, replay);
criterion_main!(benches);
