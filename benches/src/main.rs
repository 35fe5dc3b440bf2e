//! Benchmarks of ringcast against its peers (filled in by the benchmark suite).
fn main() {}
