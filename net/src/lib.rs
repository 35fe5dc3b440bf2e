//! ringcast-net: carries ringcast rings between nodes over QUIC.
//!
//! A [`Node`] publishes on topics into its own ring and follows every peer's
//! ring over QUIC with mutual TLS, resuming from its own cursor after a
//! disconnect and reporting explicitly what it could not get back. See
//! [`node`] for what subscribers observe, [`proto`] for the sans-IO wire
//! protocol, and [`tls`] for the cluster's certificates.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

pub mod check;
pub mod fault;
pub mod node;
pub mod proto;
pub mod tls;

pub use node::{
    ConnectOutcome, FlushReport, Node, NodeBuilder, NodeError, NodeEvent, PeerStatus, Subscription,
};
pub use proto::Name;
