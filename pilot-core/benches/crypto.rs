//! Crypto benchmarks (being written).
fn main() {}
