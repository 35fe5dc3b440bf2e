//! Loom model checks of `ringcast-core` live in `tests/`; run them with
//! `RUSTFLAGS="--cfg ringcast_loom" cargo test -p ringcast-loom-tests --release`.
