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
mod name;
mod producer;

pub use consumer::{AckPolicy, ConsumerSession, Event, Events, Outcome};
pub use decode::{decode_body, decode_frame, decode_header, DecodeError, Decoder};
pub use error::{ErrorCode, ProtocolError};
pub use frame::{
    split_entry, EncodeError, Encoder, Field, Frame, FrameType, Limits, HEADER_LEN, HELLO_MAX_BODY,
    MESSAGE_PREFIX_LEN,
};
pub use name::Name;
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

/// Producer and consumer sessions talking through the codec, with random
/// chunking, lost bytes, disconnects, slow senders and producer restarts,
/// checked against the contract: no gaps, duplicates never delivered, expiry
/// explicit and exact, restarts detected.
#[cfg(test)]
mod simulation {
    use std::time::{Duration, Instant};

    use bytes::Bytes;

    use super::test_util::Rng;
    use super::*;

    const NODE: &str = "consumer-1";
    const CAPACITY: u64 = 16;

    /// The producer's ring, reduced to its positions.
    struct Ring {
        epoch: u64,
        head: u64,
    }

    impl Ring {
        fn view(&self) -> RingView {
            RingView {
                head: self.head,
                oldest_held: self.head.saturating_sub(CAPACITY),
            }
        }
    }

    fn payload(epoch: u64, seq: u64) -> Bytes {
        Bytes::from([epoch.to_be_bytes(), seq.to_be_bytes()].concat())
    }

    /// What the subscriber fed from the events has seen.
    #[derive(Default)]
    struct Model {
        /// The position the next message must have.
        expect: Option<Cursor>,
        delivered: u64,
        missed: u64,
        restarts_seen: u64,
        expiries: u64,
        /// `Lapped` frames the sender emitted (not all reach the consumer).
        lapped_sent: u64,
    }

    impl Model {
        fn apply(&mut self, event: Event, ring: &Ring) {
            match event {
                Event::Connected {
                    outcome,
                    epoch,
                    next_seq,
                } => {
                    assert_eq!(epoch, ring.epoch);
                    match outcome {
                        Outcome::New => {
                            assert_eq!(self.expect, None);
                            self.expect = Some(Cursor { epoch, next_seq });
                        }
                        Outcome::Resumed => {
                            assert_eq!(self.expect, Some(Cursor { epoch, next_seq }));
                        }
                        // The CursorExpired event that follows moves the model.
                        Outcome::Expired => assert!(self.expect.is_some()),
                    }
                }
                Event::Message {
                    epoch,
                    seq,
                    payload: p,
                    ..
                } => {
                    let expect = self.expect.as_mut().unwrap();
                    assert_eq!(
                        (epoch, seq),
                        (expect.epoch, expect.next_seq),
                        "gap or duplicate"
                    );
                    assert_eq!(p, payload(epoch, seq));
                    expect.next_seq += 1;
                    self.delivered += 1;
                }
                Event::CursorExpired {
                    epoch,
                    missed,
                    resume_seq,
                } => {
                    let expect = self.expect.unwrap();
                    if expect.epoch == epoch {
                        assert_eq!(resume_seq - expect.next_seq, missed);
                    } else {
                        self.restarts_seen += 1;
                        assert_eq!(missed, resume_seq);
                    }
                    self.expect = Some(Cursor {
                        epoch,
                        next_seq: resume_seq,
                    });
                    self.missed += missed;
                    self.expiries += 1;
                }
                Event::Direct { .. } => {}
            }
        }
    }

    /// Delivers a random prefix of `wire`, in random chunks, to `decoder`,
    /// and returns the decoded frames.
    fn deliver(rng: &mut Rng, wire: &mut Vec<u8>, decoder: &mut Decoder) -> Vec<Frame> {
        let n = rng.below(wire.len() as u64 + 1) as usize;
        let mut frames = Vec::new();
        let mut delivered = &wire[..n];
        while !delivered.is_empty() {
            let k = (1 + rng.below(20) as usize).min(delivered.len());
            decoder.push(&delivered[..k]);
            delivered = &delivered[k..];
            while let Some(frame) = decoder.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        wire.drain(..n);
        frames
    }

    fn run(seed: u64) -> Model {
        let mut rng = Rng::new(seed);
        let limits = Limits::DEFAULT;
        let encoder = Encoder::new(limits);
        let mut ring = Ring {
            epoch: rng.next_u64(),
            head: rng.below(100),
        };
        let mut stored: Option<Cursor> = None;
        let mut model = Model::default();
        let mut now = Instant::now();
        let mut restarts = 0;
        for connection in 0..40 {
            let last = connection == 39;
            let mut consumer = ConsumerSession::new(stored, AckPolicy::DEFAULT);
            let mut producer = ProducerSession::new(ring.epoch);
            let mut to_producer = Vec::new();
            let mut to_consumer = Vec::new();
            let mut producer_decoder = Decoder::new(limits);
            let mut consumer_decoder = Decoder::new(limits);

            encoder
                .encode(&consumer.hello(NODE), &mut to_producer)
                .unwrap();
            let mut hello = Vec::new();
            while hello.is_empty() || !to_producer.is_empty() {
                hello.extend(deliver(&mut rng, &mut to_producer, &mut producer_decoder));
            }
            let [hello] = <[Frame; 1]>::try_from(hello).unwrap();
            let handshake = producer.handle_hello(hello, ring.view(), NODE).unwrap();
            encoder.encode(&handshake.answer, &mut to_consumer).unwrap();
            let mut pos = handshake.start_seq;

            for _ in 0..200 {
                // Publish.
                ring.head += rng.below(6);
                // Send: a slow sender is lapped and says so in-band.
                let oldest = ring.view().oldest_held;
                if pos < oldest {
                    let lapped = Frame::Lapped {
                        missed: oldest - pos,
                        resume_seq: oldest,
                    };
                    producer.on_sent(oldest);
                    encoder.encode(&lapped, &mut to_consumer).unwrap();
                    pos = oldest;
                    model.lapped_sent += 1;
                }
                let until = ring.head.min(pos + rng.below(8));
                for seq in pos..until {
                    let p = payload(ring.epoch, seq);
                    producer.on_sent(seq + 1);
                    encoder
                        .message_header(seq, "t", p.len(), &mut to_consumer)
                        .unwrap();
                    to_consumer.extend_from_slice(&p);
                }
                pos = pos.max(until);
                if rng.one_in(10) {
                    let direct = Frame::Direct {
                        topic: "d".into(),
                        payload: Bytes::from_static(b"direct"),
                    };
                    encoder.encode(&direct, &mut to_consumer).unwrap();
                }
                // Receive.
                for frame in deliver(&mut rng, &mut to_consumer, &mut consumer_decoder) {
                    for event in consumer.handle(now, frame).unwrap() {
                        model.apply(event, &ring);
                    }
                    assert_eq!(consumer.cursor(), model.expect);
                }
                // Ack.
                now += Duration::from_micros(rng.below(3_000));
                if let Some(ack) = consumer.poll_ack(now) {
                    encoder.encode(&ack, &mut to_producer).unwrap();
                }
                for frame in deliver(&mut rng, &mut to_producer, &mut producer_decoder) {
                    producer.handle(frame).unwrap();
                }
                if !last && rng.one_in(40) {
                    break;
                }
            }
            if last {
                // Drain everything and flush.
                let head = ring.head;
                let oldest = ring.view().oldest_held;
                if pos < oldest {
                    producer.on_sent(oldest);
                    let lapped = Frame::Lapped {
                        missed: oldest - pos,
                        resume_seq: oldest,
                    };
                    encoder.encode(&lapped, &mut to_consumer).unwrap();
                    pos = oldest;
                }
                for seq in pos..head {
                    producer.on_sent(seq + 1);
                    let message = Frame::Message {
                        seq,
                        topic: "t".into(),
                        payload: payload(ring.epoch, seq),
                    };
                    encoder.encode(&message, &mut to_consumer).unwrap();
                }
                consumer_decoder.push(&to_consumer);
                while let Some(frame) = consumer_decoder.next_frame().unwrap() {
                    for event in consumer.handle(now, frame).unwrap() {
                        model.apply(event, &ring);
                    }
                }
                consumer_decoder.finish().unwrap();
                if let Some(ack) = consumer.flush_ack() {
                    encoder.encode(&ack, &mut to_producer).unwrap();
                }
                producer_decoder.push(&to_producer);
                while let Some(frame) = producer_decoder.next_frame().unwrap() {
                    producer.handle(frame).unwrap();
                }
                assert_eq!(consumer.cursor().map(|c| c.next_seq), Some(head));
                assert!(producer.is_flushed(head));
            }
            // Disconnect: bytes in flight are lost; the cursor survives.
            stored = consumer.cursor();
            // While away, the producer publishes, sometimes past the ring...
            ring.head += rng.below(3 * CAPACITY);
            // ...or restarts, with a new epoch and a counter that may even
            // pass the consumer's old cursor.
            if rng.one_in(8) {
                ring.epoch = rng.next_u64();
                ring.head = rng.below(300);
                restarts += 1;
            }
        }
        assert!(model.restarts_seen <= restarts);
        model
    }

    #[test]
    fn the_contract_holds_across_reconnects_laps_and_restarts() {
        let mut totals = Model::default();
        for seed in 0..40 {
            let model = run(seed);
            totals.delivered += model.delivered;
            totals.missed += model.missed;
            totals.restarts_seen += model.restarts_seen;
            totals.expiries += model.expiries;
            totals.lapped_sent += model.lapped_sent;
        }
        // The schedule really exercised every path.
        assert!(totals.delivered > 10_000, "{}", totals.delivered);
        assert!(totals.missed > 0);
        assert!(totals.restarts_seen > 0);
        assert!(totals.expiries > totals.restarts_seen);
        assert!(totals.lapped_sent > 0);
    }
}
