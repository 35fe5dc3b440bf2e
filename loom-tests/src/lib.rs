//! Loom model checks of `ringcast-core` live in `tests/models.rs`; run them
//! with
//!
//! ```text
//! RUSTFLAGS="--cfg ringcast_loom" LOOM_MAX_PREEMPTIONS=2 \
//!     CARGO_TARGET_DIR=target/loom cargo test -p ringcast-loom-tests --release
//! ```
//!
//! (a separate target directory keeps the loom build from invalidating the
//! normal one). Without `--cfg ringcast_loom` the models compile to nothing
//! and this crate's tests pass trivially.
