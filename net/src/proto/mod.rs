//! The ringcast wire protocol, sans-IO: frames, their codec, and the two
//! per-connection state machines.
//!
//! Nothing here touches a socket, a clock or an async runtime. The QUIC shell
//! reads bytes from a stream and pushes them into a [`Decoder`], hands the
//! frames to a [`ConsumerSession`] or [`ProducerSession`], and writes the
//! frames those return with an [`Encoder`]. Time enters only as an
//! [`Instant`](std::time::Instant) argument. Every function is deterministic,
//! so the codec and the sessions can be unit-tested, replayed and fuzzed on
//! plain byte slices. `PROTOCOL.md` at the repository root is the normative
//! description; this module implements it.
//!
//! # What a consumer observes
//!
//! One QUIC bidirectional stream carries one consumer's view of one producer.
//! The consumer keeps a [`Cursor`] `(epoch, next_seq)` per producer across
//! reconnects: `next_seq` is the sequence number of the next message it
//! expects, everything below it has been delivered. Through a
//! [`ConsumerSession`] it then observes, per producer:
//!
//! - **No gaps, in order.** A [`Event::Message`] is produced only for
//!   `seq == next_seq`. A lower `seq` is a re-send of something already
//!   delivered and is dropped silently (exactly-once); a higher `seq` would
//!   be a gap and is a protocol error ([`ProtocolError::Gap`]): the message is
//!   never delivered and the connection is closed.
//! - **Expiry is explicit.** The cursor moves forward without a message only
//!   through an [`Event::CursorExpired`] that states how many messages were
//!   skipped (`missed`) and where delivery resumes (`resume_seq`): in the
//!   handshake (`Expired`, the consumer was away too long) or in-band
//!   (`Lapped`, the consumer read too slowly and the ring overwrote its
//!   position).
//! - **Restart is detected.** A cursor from another epoch is never resumed:
//!   the producer answers `Expired` with its new epoch, the consumer reports
//!   `CursorExpired` and adopts that epoch.
//! - **Direct messages** ([`Event::Direct`]) are outside the sequence: they
//!   carry no sequence number, are not buffered by the producer, are lost if
//!   the connection is down, and never move the cursor.
//!
//! # Algorithm
//!
//! 1. The consumer connects and sends [`Frame::Hello`] with its stored cursor
//!    (or none).
//! 2. The producer ([`ProducerSession::handle_hello`]) checks the version and
//!    that the claimed node name is the one in the peer's certificate, then
//!    compares the cursor with its ring (`oldest_held..=head`) and answers
//!    `New`, `Resumed` or `Expired`, returning the sequence number its sender
//!    starts from.
//! 3. The producer streams `Message` frames from there, `Lapped` when its
//!    sender was overtaken by the ring, and `Direct` frames at any time.
//! 4. The consumer ([`ConsumerSession::handle`]) turns them into [`Event`]s
//!    and paces `Ack { next_seq }` frames back ([`ConsumerSession::poll_ack`]);
//!    the producer records the acknowledged position
//!    ([`ProducerSession::acked`]) for flush barriers and lag metrics.
//! 5. Any error closes the connection with the QUIC application error code
//!    [`ProtocolError::code`]; the consumer reconnects with its cursor, which
//!    never moved past what it delivered.

mod consumer;
mod decode;
mod error;
mod frame;
mod producer;

pub use consumer::{AckPolicy, ConsumerSession, Event, Events, Outcome};
pub use decode::{decode_body, decode_frame, decode_header, DecodeError, Decoder};
pub use error::{ErrorCode, ProtocolError};
pub use frame::{
    EncodeError, Encoder, Field, Frame, FrameType, Limits, HEADER_LEN, HELLO_MAX_BODY,
};
pub use producer::{Handshake, ProducerSession, RingView};

/// The protocol version this crate speaks, sent in [`Frame::Hello`].
///
/// The frame header (`[u8 type][u32 length]`) and the first two bytes of a
/// `Hello` body (the version) never change between versions, so a node can
/// always read a peer's version and refuse it with
/// [`ErrorCode::UnsupportedVersion`].
pub const PROTOCOL_VERSION: u16 = 1;

/// A consumer's position in one producer's stream.
///
/// Stored by the consumer per producer across reconnects, sent in
/// [`Frame::Hello`] to resume, and handed back by
/// [`ConsumerSession::cursor`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// The producer epoch the sequence numbers belong to: a random 64-bit
    /// value drawn at each producer start.
    pub epoch: u64,
    /// The sequence number of the next message to deliver; every message of
    /// `epoch` below it (from the consumer's starting point) was delivered or
    /// reported as missed.
    pub next_seq: u64,
}

/// Helpers shared by the protocol's unit tests.
#[cfg(test)]
pub(crate) mod test_util {
    /// A small deterministic xorshift generator: reproducible "random"
    /// chunkings, inputs and schedules without a dependency.
    pub(crate) struct Rng(u64);

    impl Rng {
        pub(crate) fn new(seed: u64) -> Self {
            Self(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
        }

        pub(crate) fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            x
        }

        /// Uniform in `0..n` (`n > 0`).
        pub(crate) fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n
        }

        /// True with probability `1 / n`.
        pub(crate) fn one_in(&mut self, n: u64) -> bool {
            self.below(n) == 0
        }

        pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next_u64() as u8).collect()
        }
    }
}
