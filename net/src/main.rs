//! The `ringcast` command line.
fn main() {}
