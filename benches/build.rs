//! Records, at build time, the versions of the crates the benchmarks compare,
//! read from the workspace's `Cargo.lock` (the versions actually compiled in),
//! so that BENCHMARKS.md can print them without guessing.

use std::path::Path;

/// Crates whose locked versions the report prints. Names missing from the
/// lock file are simply left out.
const CRATES: &[&str] = &[
    "ringcast-core",
    "ringcast-net",
    "tokio",
    "bus",
    "disruptor",
    "crossbeam-channel",
    "bytes",
    "quanta",
    "hdrhistogram",
    "plotters",
    "quinn",
    "rustls",
    "async-nats",
    "redis",
];

fn main() {
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    println!("cargo:rerun-if-changed=build.rs");
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    let mut found: Vec<String> = Vec::new();
    // Cargo.lock is a sequence of `[[package]]` tables whose first two keys
    // are `name = "..."` and `version = "..."`.
    let mut name: Option<&str> = None;
    for line in text.lines() {
        let line = line.trim();
        if line == "[[package]]" {
            name = None;
        } else if let Some(v) = line.strip_prefix("name = ") {
            name = Some(v.trim_matches('"'));
        } else if let Some(v) = line.strip_prefix("version = ") {
            if let Some(n) = name.take() {
                if CRATES.contains(&n) {
                    found.push(format!("{n} {}", v.trim_matches('"')));
                }
            }
        }
    }
    found.sort();
    found.dedup();
    println!("cargo:rustc-env=BENCH_CRATE_VERSIONS={}", found.join(";"));
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .unwrap_or_default();
    println!("cargo:rustc-env=BENCH_RUSTC_VERSION={}", version.trim());
}
