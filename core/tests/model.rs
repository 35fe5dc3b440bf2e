//! Property tests: random sequences of publishes, receives, subscriptions,
//! clones and a close, replayed against the rings and against a reference
//! model built on a `VecDeque` that applies the documented rules directly.
//! Every result must match the model's: values, `Expired { missed,
//! resume_seq }`, `Empty`, `Closed`, subscription errors, heads and cursors.
//!
//! The byte-ring model also tracks the arena: message `seq` occupies byte
//! positions `[pos, pos + round8(len))`, positions only grow, and the arena
//! holds the last `arena_bytes` of them (`max_bytes` rounded up to a multiple
//! of 8). A message whose index slot is held is still expired once the
//! arena has moved past its start: `pos + arena_bytes < reserved`.

use std::collections::VecDeque;

use proptest::prelude::*;
use ringcast_core::bytes::{self, ByteSubscriber, Config};
use ringcast_core::{channel_starting_at, SubscribeError, Subscriber, TryRecvError};

#[derive(Debug, Clone)]
enum Op {
    /// Publish a message: a value (typed ring) or a payload of `len` bytes
    /// derived from `value` (byte ring), written in parts if `split`.
    Publish {
        value: u64,
        len: usize,
        split: Option<(usize, usize)>,
    },
    /// `try_recv` on reader `i % readers`.
    TryRecv(usize),
    /// A new reader at the head.
    Subscribe,
    /// `subscribe_at(oldest_held + offset)`: below, inside and beyond.
    SubscribeAt(i64),
    /// Clone reader `i % readers`.
    Clone(usize),
    /// Drop the publisher (later publishes are skipped).
    Close,
}

fn op(max_len: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<u64>(), 0..=max_len, proptest::option::of((0..64usize, 0..64usize)))
            .prop_map(|(value, len, split)| Op::Publish { value, len, split }),
        6 => (0..8usize).prop_map(Op::TryRecv),
        1 => Just(Op::Subscribe),
        1 => (-3i64..12).prop_map(Op::SubscribeAt),
        1 => (0..8usize).prop_map(Op::Clone),
        // Rare: most sequences should stay open long enough to lap.
        1 => (0..40u32).prop_map(|n| if n == 0 { Op::Close } else { Op::TryRecv(n as usize) }),
    ]
}

/// The first publish's sequence number: 0, or near the top of the u64 range.
fn start() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0), Just(u64::MAX - 1000)]
}

fn round8(n: u64) -> u64 {
    n.div_ceil(8) * 8
}

/// The reference model. Readers are plain cursors.
#[derive(Debug)]
struct Model {
    /// Slot count (a power of two).
    capacity: usize,
    /// Arena size in bytes; `u64::MAX` for the typed ring (bytes never bind).
    arena_bytes: u64,
    /// Sequence number of the next publish.
    head: u64,
    /// End of the bytes written so far.
    reserved: u64,
    closed: bool,
    /// The last `capacity` messages: `(seq, pos, payload)`.
    held: VecDeque<(u64, u64, Vec<u8>)>,
    readers: Vec<u64>,
}

impl Model {
    fn new(capacity: usize, arena_bytes: u64, start: u64) -> Self {
        Self {
            capacity: capacity.max(1).next_power_of_two(),
            arena_bytes,
            head: start,
            reserved: 0,
            closed: false,
            held: VecDeque::new(),
            readers: vec![start],
        }
    }

    fn publish(&mut self, payload: Vec<u8>) -> u64 {
        let seq = self.head;
        let pos = self.reserved;
        self.reserved += round8(payload.len() as u64);
        self.held.push_back((seq, pos, payload));
        if self.held.len() > self.capacity {
            self.held.pop_front();
        }
        self.head += 1;
        seq
    }

    /// The oldest sequence number the index holds (the head when empty).
    fn oldest_held(&self) -> u64 {
        self.held.front().map_or(self.head, |m| m.0)
    }

    fn bytes_intact(&self, pos: u64) -> bool {
        self.reserved <= pos.saturating_add(self.arena_bytes)
    }

    fn subscribe_at(&mut self, seq: u64) -> Result<usize, SubscribeError> {
        if seq > self.head {
            return Err(SubscribeError::Future {
                seq,
                head: self.head,
            });
        }
        let oldest = self.oldest_held();
        if seq < oldest {
            return Err(SubscribeError::Expired {
                seq,
                oldest_held: oldest,
            });
        }
        self.readers.push(seq);
        Ok(self.readers.len() - 1)
    }

    fn try_recv(&mut self, reader: usize) -> Result<(u64, Vec<u8>), TryRecvError> {
        let cursor = self.readers[reader];
        if cursor == self.head {
            return Err(if self.closed {
                TryRecvError::Closed
            } else {
                TryRecvError::Empty
            });
        }
        let intact = |m: &&(u64, u64, Vec<u8>)| self.bytes_intact(m.1);
        if let Some(m) = self.held.iter().find(|m| m.0 == cursor).filter(intact) {
            let out = (m.0, m.2.clone());
            self.readers[reader] = cursor + 1;
            return Ok(out);
        }
        let resume = self
            .held
            .iter()
            .filter(|m| m.0 > cursor)
            .find(intact)
            .map_or(self.head, |m| m.0);
        self.readers[reader] = resume;
        Err(TryRecvError::Expired {
            missed: resume - cursor,
            resume_seq: resume,
        })
    }
}

/// What the rings under test must offer the replay loop.
trait Ring {
    type Reader: Clone;
    fn publish(&mut self, payload: &[u8], split: Option<(usize, usize)>) -> Option<u64>;
    fn close(&mut self);
    fn subscribe(&self) -> Self::Reader;
    fn subscribe_at(&self, seq: u64) -> Result<Self::Reader, SubscribeError>;
    fn try_recv(reader: &mut Self::Reader) -> Result<(u64, Vec<u8>), TryRecvError>;
    fn cursor(reader: &Self::Reader) -> u64;
    fn lag(reader: &Self::Reader) -> u64;
    /// `(head, oldest_held)` as the publisher (or, once closed, a handle) sees them.
    fn observe(&self) -> (u64, u64);
}

struct Typed {
    publisher: Option<ringcast_core::Publisher<u64>>,
    handle: ringcast_core::RingHandle<u64>,
}

impl Ring for Typed {
    type Reader = Subscriber<u64>;

    fn publish(&mut self, payload: &[u8], _: Option<(usize, usize)>) -> Option<u64> {
        let value = u64::from_le_bytes(payload.try_into().expect("typed payloads are 8 bytes"));
        self.publisher.as_mut().map(|p| p.publish(value))
    }

    fn close(&mut self) {
        self.publisher = None;
    }

    fn subscribe(&self) -> Self::Reader {
        match &self.publisher {
            Some(p) => p.subscribe(),
            None => self.handle.subscribe(),
        }
    }

    fn subscribe_at(&self, seq: u64) -> Result<Self::Reader, SubscribeError> {
        match &self.publisher {
            Some(p) => p.subscribe_at(seq),
            None => self.handle.subscribe_at(seq),
        }
    }

    fn try_recv(reader: &mut Self::Reader) -> Result<(u64, Vec<u8>), TryRecvError> {
        let seq = reader.cursor();
        reader.try_recv().map(|v| (seq, v.to_le_bytes().to_vec()))
    }

    fn cursor(reader: &Self::Reader) -> u64 {
        reader.cursor()
    }

    fn lag(reader: &Self::Reader) -> u64 {
        reader.lag()
    }

    fn observe(&self) -> (u64, u64) {
        let from_handle = (self.handle.head(), self.handle.oldest_held());
        if let Some(p) = &self.publisher {
            assert_eq!((p.head(), p.oldest_held()), from_handle);
        }
        from_handle
    }
}

struct Bytes {
    publisher: Option<bytes::BytePublisher>,
    handle: bytes::ByteHandle,
}

impl Ring for Bytes {
    type Reader = ByteSubscriber;

    fn publish(&mut self, payload: &[u8], split: Option<(usize, usize)>) -> Option<u64> {
        let publisher = self.publisher.as_mut()?;
        let result = match split {
            None => publisher.publish(payload).map_err(|e| {
                assert_eq!(e.payload, payload, "too-large payload handed back");
                (e.len, e.max)
            }),
            Some((a, b)) => {
                let a = a % (payload.len() + 1);
                let b = a + b % (payload.len() - a + 1);
                let parts = [&payload[..a], &payload[a..b], &payload[b..]];
                publisher
                    .publish_vectored(&parts)
                    .map_err(|e| (e.len, e.max))
            }
        };
        match result {
            Ok(seq) => Some(seq),
            Err((len, max)) => {
                assert_eq!(len, payload.len());
                assert!(len > max);
                assert_eq!(max, publisher.max_message_size());
                None
            }
        }
    }

    fn close(&mut self) {
        self.publisher = None;
    }

    fn subscribe(&self) -> Self::Reader {
        match &self.publisher {
            Some(p) => p.subscribe(),
            None => self.handle.subscribe(),
        }
    }

    fn subscribe_at(&self, seq: u64) -> Result<Self::Reader, SubscribeError> {
        match &self.publisher {
            Some(p) => p.subscribe_at(seq),
            None => self.handle.subscribe_at(seq),
        }
    }

    fn try_recv(reader: &mut Self::Reader) -> Result<(u64, Vec<u8>), TryRecvError> {
        // Stale contents must not leak into the result.
        let mut buf = vec![0xEE; 5];
        reader.try_recv(&mut buf).map(|seq| (seq, buf))
    }

    fn cursor(reader: &Self::Reader) -> u64 {
        reader.cursor()
    }

    fn lag(reader: &Self::Reader) -> u64 {
        reader.lag()
    }

    fn observe(&self) -> (u64, u64) {
        let from_handle = (self.handle.head(), self.handle.oldest_held());
        if let Some(p) = &self.publisher {
            assert_eq!((p.head(), p.oldest_held()), from_handle);
        }
        from_handle
    }
}

/// Replays `ops` against `ring` and `model`, comparing every result.
/// `payload_of(value, len)` makes the bytes of a publish; `max_message_size`
/// is the model's size limit.
fn replay<R: Ring>(
    mut ring: R,
    first: R::Reader,
    mut model: Model,
    ops: &[Op],
    payload_of: impl Fn(u64, usize) -> Vec<u8>,
    max_message_size: usize,
) -> Result<(), TestCaseError> {
    let mut readers = vec![first];
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Publish { value, len, split } => {
                let payload = payload_of(value, len);
                let got = ring.publish(&payload, split);
                let expected = if model.closed || payload.len() > max_message_size {
                    None
                } else {
                    Some(model.publish(payload))
                };
                prop_assert_eq!(got, expected, "step {}: {:?}", step, op);
            }
            Op::TryRecv(i) => {
                let i = i % readers.len();
                let got = R::try_recv(&mut readers[i]);
                let expected = model.try_recv(i);
                prop_assert_eq!(got, expected, "step {}: {:?} reader {}", step, op, i);
            }
            Op::Subscribe => {
                readers.push(ring.subscribe());
                model.readers.push(model.head);
            }
            Op::SubscribeAt(offset) => {
                let seq = (i128::from(model.oldest_held()) + i128::from(offset)).max(0) as u64;
                let got = ring.subscribe_at(seq);
                let expected = model.subscribe_at(seq);
                match (got, expected) {
                    (Ok(reader), Ok(_)) => readers.push(reader),
                    (Err(got), Err(expected)) => {
                        prop_assert_eq!(got, expected, "step {}: {:?}", step, op)
                    }
                    (got, expected) => prop_assert!(
                        false,
                        "step {}: subscribe_at({}): ring {:?}, model {:?}",
                        step,
                        seq,
                        got.map(|r| R::cursor(&r)),
                        expected
                    ),
                }
            }
            Op::Clone(i) => {
                let i = i % readers.len();
                readers.push(readers[i].clone());
                model.readers.push(model.readers[i]);
            }
            Op::Close => {
                ring.close();
                model.closed = true;
            }
        }
        prop_assert_eq!(
            ring.observe(),
            (model.head, model.oldest_held()),
            "step {}: head, oldest_held",
            step
        );
        for (i, reader) in readers.iter().enumerate() {
            prop_assert_eq!(R::cursor(reader), model.readers[i], "step {}: cursor", step);
            prop_assert_eq!(R::lag(reader), model.head - model.readers[i]);
        }
    }
    // Finally every reader drains to the end: delivered + missed adds up.
    ring.close();
    model.closed = true;
    for (i, reader) in readers.iter_mut().enumerate() {
        loop {
            let got = R::try_recv(reader);
            let expected = model.try_recv(i);
            prop_assert_eq!(&got, &expected, "drain reader {}", i);
            if got == Err(TryRecvError::Closed) {
                break;
            }
        }
    }
    Ok(())
}

fn byte_payload(value: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (value.rotate_left(i as u32 % 64) ^ i) as u8)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn typed_ring_matches_model(
        capacity in 1usize..=8,
        start in start(),
        ops in proptest::collection::vec(op(0), 0..200),
    ) {
        let (publisher, first) = channel_starting_at::<u64>(capacity, start);
        let handle = publisher.handle();
        let model = Model::new(capacity, u64::MAX, start);
        prop_assert_eq!(publisher.capacity(), model.capacity);
        let ring = Typed { publisher: Some(publisher), handle };
        replay(ring, first, model, &ops, |value, _| value.to_le_bytes().to_vec(), 8)?;
    }

    #[test]
    fn byte_ring_matches_model(
        capacity in 1usize..=8,
        max_bytes in 1usize..=96,
        max_message_size in 0usize..=40,
        start in start(),
        ops in proptest::collection::vec(op(44), 0..200),
    ) {
        let arena_bytes = round8(max_bytes as u64);
        let max_message_size = max_message_size.min(arena_bytes as usize);
        let config = Config::new()
            .capacity(capacity)
            .max_bytes(max_bytes)
            .max_message_size(max_message_size);
        let (publisher, first) = bytes::channel_starting_at(config, start).unwrap();
        let handle = publisher.handle();
        prop_assert_eq!(handle.capacity(), capacity.next_power_of_two());
        let model = Model::new(capacity, arena_bytes, start);
        let ring = Bytes { publisher: Some(publisher), handle };
        replay(ring, first, model, &ops, byte_payload, max_message_size)?;
    }
}
