//! Property tests: random sequences of publishes, receives (one at a time,
//! and in batches where the ring has them), subscriptions, clones and a
//! close, replayed against the rings and against a reference
//! model built on a `VecDeque` that applies the documented rules directly.
//! Every result must match the model's: values, `Expired { missed,
//! resume_seq }`, `Empty`, `Closed`, subscription errors, heads and cursors.
//!
//! The byte-ring model also tracks the arena: message `seq` occupies byte
//! positions `[pos, pos + round8(len))`, positions only grow, and the arena
//! keeps the last `arena_bytes` of them (`max_bytes` rounded up to a multiple
//! of 8). A message whose index slot is kept is still expired once the
//! arena has moved past its start: `pos + arena_bytes < reserved`. What the
//! byte ring keeps and what it holds differ (see `reference::Model`): an
//! expired cursor resumes at the oldest message held.

use proptest::prelude::*;

mod reference;

use reference::{byte_payload, round8, Bytes, Model, Ring, Typed};
use ringcast_core::bytes::{self, Config};
use ringcast_core::{channel_with_step, TryRecvError};

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
    /// `try_recv_many(max)` on reader `i % readers`, where the ring has it
    /// (the typed ring); a no-op elsewhere.
    TryRecvMany(usize, usize),
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
        3 => (0..8usize, 0..12usize).prop_map(|(i, max)| Op::TryRecvMany(i, max)),
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
            Op::TryRecvMany(i, max) => {
                let i = i % readers.len();
                if let Some(got) = R::try_recv_many(&mut readers[i], max) {
                    let expected = model.answer_batch(i, max, &got);
                    prop_assert_eq!(got, expected, "step {}: {:?} reader {}", step, op, i);
                }
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn typed_ring_matches_model(
        capacity in 1usize..=8,
        step in 1usize..=9,
        start in start(),
        ops in proptest::collection::vec(op(0), 0..200),
    ) {
        let (publisher, first) = channel_with_step::<u64>(capacity, start, step);
        let handle = publisher.handle();
        let model = Model::new(capacity, u64::MAX, start).with_step(step);
        prop_assert_eq!(publisher.capacity(), model.capacity);
        let ring = Typed { publisher: Some(publisher), handle };
        replay(ring, first, model, &ops, |value, _| value.to_le_bytes().to_vec(), 8)?;
    }

    #[test]
    fn byte_ring_matches_model(
        capacity in 1usize..=8,
        max_bytes in 1usize..=300,
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
        let model = Model::new(capacity, arena_bytes, start).for_byte_ring(max_message_size);
        let ring = Bytes { publisher: Some(publisher), handle };
        replay(ring, first, model, &ops, byte_payload, max_message_size)?;
    }
}
