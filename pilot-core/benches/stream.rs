//! Stream transport throughput: a 10 MiB loss-free transfer between two simulated connections.
//!
//! Segments are handed straight from one connection to the other (no copies beyond the ones
//! the engine makes, no delay); the clock jumps to the next `poll_timeout` whenever both sides
//! are idle. The figure is payload bytes moved per second of CPU, so it measures the engine,
//! not a network.
#![allow(missing_docs)] // criterion_group! generates an undocumented `pub fn`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pilot_core::stream::{Config, Connection, StreamError};
use pilot_core::time::Instant;

const TRANSFER_BYTES: usize = 10 << 20;
const MAX_ROUNDS: usize = 10_000_000;

/// Moves `data` from a dialer to a responder; returns the bytes read (compared with `data`
/// when `check`).
fn transfer(data: &[u8], check: bool) -> usize {
    let mut now = Instant::from_millis(1);
    let mut a = Connection::connect(now, Config::default());
    let syn = a.poll_transmit(now).unwrap();
    let mut b = Connection::accept(now, Config::default(), &syn.as_borrowed());
    let mut written = 0;
    let mut received = 0;
    let mut buf = vec![0u8; 64 * 1024];

    for _ in 0..MAX_ROUNDS {
        while written < data.len() {
            match a.write(&data[written..]) {
                Ok(n) => written += n,
                Err(StreamError::WouldBlock) => break,
                Err(e) => panic!("{e}"),
            }
        }
        let mut moved = false;
        while let Some(seg) = a.poll_transmit(now) {
            b.handle_segment(now, seg.as_borrowed());
            moved = true;
        }
        while let Some(seg) = b.poll_transmit(now) {
            a.handle_segment(now, seg.as_borrowed());
            moved = true;
        }
        while let Ok(n) = b.read(&mut buf) {
            if n == 0 {
                break;
            }
            if check {
                assert_eq!(&buf[..n], &data[received..received + n]);
            }
            received += black_box(n);
        }
        if received == data.len() {
            return received;
        }
        if !moved {
            // Both idle: jump to the earliest timer (delayed ACK, Nagle).
            let next = [a.poll_timeout(), b.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .unwrap();
            now = now.max(next).max(now + Duration::from_micros(1));
            a.handle_timeout(now);
            b.handle_timeout(now);
        }
    }
    panic!("transfer did not finish");
}

fn bench_stream(c: &mut Criterion) {
    eprintln!(
        "size_of::<Connection>() = {} bytes (heap buffers not included)",
        std::mem::size_of::<Connection>()
    );
    let data: Vec<u8> = (0..TRANSFER_BYTES)
        .map(|i| (i * 7 + i / 1024) as u8)
        .collect();
    report_cpu_throughput(&data);
    let mut group = c.benchmark_group("stream");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(TRANSFER_BYTES as u64));
    group.bench_function("transfer_10MiB_loss_free", |bench| {
        bench.iter(|| assert_eq!(transfer(&data, false), TRANSFER_BYTES));
    });
    group.finish();
}

/// On-CPU time of the calling thread (Linux `/proc/thread-self/schedstat`, nanoseconds).
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// The issue asks for payload bytes per second of CPU; criterion measures wall time, which on
/// a shared machine also counts time spent waiting for a core. Prints both views.
fn report_cpu_throughput(data: &[u8]) {
    const RUNS: u32 = 20;
    let Some(cpu_before) = thread_cpu_time() else {
        return;
    };
    let wall = std::time::Instant::now();
    for _ in 0..RUNS {
        assert_eq!(transfer(data, false), TRANSFER_BYTES);
    }
    let wall = wall.elapsed() / RUNS;
    let Some(cpu_after) = thread_cpu_time() else {
        return;
    };
    let cpu = (cpu_after - cpu_before) / RUNS;
    let mib = TRANSFER_BYTES as f64 / f64::from(1 << 20);
    eprintln!(
        "10 MiB transfer: {cpu:?} CPU ({:.0} MiB per CPU-second), {wall:?} wall",
        mib / cpu.as_secs_f64()
    );
}

criterion_group!(benches, bench_stream);
criterion_main!(benches);
