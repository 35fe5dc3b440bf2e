//! Arbitrary publish / receive (one at a time, and in batches on the typed
//! ring) / subscribe / clone / close sequences on the rings of
//! `ringcast-core`, replayed against a reference model: a
//! `VecDeque` of the last `capacity` messages that applies the documented
//! rules directly (crate docs of `ringcast-core`, DESIGN.md "Cursor check").
//!
//! - A cursor `c` is readable when `oldest_held <= c < head`, waiting
//!   (`Empty`, or `Closed` once the publisher is gone) when `c == head`, and
//!   expired once its message was overwritten; an expired receive moves the
//!   cursor to the oldest message held and reports `missed = resume_seq - c`.
//! - The byte ring also expires a message whose bytes were reused: message
//!   `seq` occupies byte positions `[pos, pos + round8(len))`, positions only
//!   grow, and the arena keeps the last `arena_bytes` of them, so a message
//!   is lapped once `pos + arena_bytes < end of the bytes written`. It keeps
//!   more than it holds (twice the index, and a sixteenth of the arena):
//!   `reference::Model` says which is which.
//! - New subscribers start at the head; `subscribe_at` accepts exactly
//!   `oldest_held..=head`; clones continue from the same cursor.
//!
//! Every result (values, payload bytes, errors with their counts), every
//! cursor, lag, head and oldest-held must equal the model's, and at the end
//! every reader drains to `Closed` with `delivered + missed` equal to what
//! was published since it started.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ringcast_core::bytes::{self, Config};
use ringcast_core::{channel_with_step, TryRecvError};

/// Readers are capped so that one input cannot grow without bound.
const MAX_READERS: usize = 64;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Op {
    /// Publish a value (typed ring), or `len` bytes derived from it (byte
    /// ring), written in three parts split at `split` if given.
    Publish {
        value: u64,
        len: u8,
        split: Option<(u8, u8)>,
    },
    /// `try_recv` on reader `i % readers`.
    TryRecv(u8),
    /// `try_recv_many(max % 16)` on reader `i % readers`, where the ring has
    /// it (the typed ring); skipped elsewhere.
    TryRecvMany(u8, u8),
    /// A new reader at the head.
    Subscribe,
    /// `subscribe_at(oldest_held + offset)`: below, inside and beyond.
    SubscribeAt(i8),
    /// Clone reader `i % readers`.
    Clone(u8),
    /// Drop the publisher; later publishes are skipped.
    Close,
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// The byte ring if true, else the typed ring.
    bytes: bool,
    /// Requested capacity, 1 to 16 (rounded up to a power of two).
    capacity: u8,
    /// Typed ring: messages reserved at a time, 1 to 16.
    step: u8,
    /// Byte ring: `max_bytes` 1 to 256, `max_message_size` up to it.
    max_bytes: u8,
    max_message_size: u8,
    /// Start at sequence number 0, or near the top of the `u64` range.
    high_start: bool,
    ops: Vec<Op>,
}

#[path = "../../core/tests/reference/mod.rs"]
mod reference;

use reference::{byte_payload, round8, Bytes, Model, Ring, Typed};

/// Replays `ops`, comparing every observation with the model's.
fn replay<R: Ring>(
    mut ring: R,
    first: R::Reader,
    mut model: Model,
    ops: &[Op],
    payload_of: impl Fn(u64, usize) -> Vec<u8>,
    max_message_size: usize,
) {
    let start = model.head;
    let mut readers = vec![first];
    // Per reader: where it started, messages delivered, messages missed.
    let mut tally = vec![(start, 0u64, 0u64)];
    for (step, op) in ops.iter().enumerate() {
        match *op {
            Op::Publish { value, len, split } => {
                let payload = payload_of(value, len.into());
                let split = split.map(|(a, b)| (usize::from(a), usize::from(b)));
                let got = ring.publish(&payload, split);
                let expected = if model.closed || payload.len() > max_message_size {
                    None
                } else {
                    Some(model.publish(payload))
                };
                assert_eq!(got, expected, "step {step}: {op:?}");
            }
            Op::TryRecv(i) => {
                let i = usize::from(i) % readers.len();
                let got = R::try_recv(&mut readers[i]);
                let expected = model.try_recv(i);
                assert_eq!(got, expected, "step {step}: {op:?} reader {i}");
                count(&mut tally[i], &got);
            }
            Op::TryRecvMany(i, max) => {
                let i = usize::from(i) % readers.len();
                let max = usize::from(max % 16);
                let Some(got) = R::try_recv_many(&mut readers[i], max) else {
                    continue;
                };
                let expected = model.answer_batch(i, max, &got);
                assert_eq!(got, expected, "step {step}: {op:?} reader {i}");
                match &got {
                    Ok(batch) => tally[i].1 += batch.len() as u64,
                    Err(e) => count(&mut tally[i], &Err(*e)),
                }
            }
            Op::Subscribe if readers.len() < MAX_READERS => {
                readers.push(ring.subscribe());
                model.readers.push(model.head);
                tally.push((model.head, 0, 0));
            }
            Op::SubscribeAt(offset) if readers.len() < MAX_READERS => {
                let seq = model.oldest_held().saturating_add_signed(offset.into());
                let got = ring.subscribe_at(seq);
                let expected = model.subscribe_at(seq);
                match (got, expected) {
                    (Ok(reader), Ok(())) => {
                        assert_eq!(R::cursor(&reader), seq);
                        readers.push(reader);
                        tally.push((seq, 0, 0));
                    }
                    (Err(got), Err(expected)) => assert_eq!(got, expected, "step {step}: {op:?}"),
                    (got, expected) => panic!(
                        "step {step}: subscribe_at({seq}): ring {:?}, model {expected:?}",
                        got.map(|r| R::cursor(&r))
                    ),
                }
            }
            Op::Clone(i) if readers.len() < MAX_READERS => {
                let i = usize::from(i) % readers.len();
                readers.push(readers[i].clone());
                model.readers.push(model.readers[i]);
                // The clone's history so far is its original's.
                tally.push(tally[i]);
            }
            Op::Subscribe | Op::SubscribeAt(_) | Op::Clone(_) => {}
            Op::Close => {
                ring.close();
                model.closed = true;
            }
        }
        assert_eq!(
            ring.observe(),
            (model.head, model.oldest_held()),
            "step {step}: head, oldest_held"
        );
        for (i, reader) in readers.iter().enumerate() {
            assert_eq!(
                R::cursor(reader),
                model.readers[i],
                "step {step}: cursor {i}"
            );
            assert_eq!(
                R::lag(reader),
                model.head - model.readers[i],
                "step {step}: lag {i}"
            );
        }
    }
    // Every reader drains to `Closed`; delivered + missed adds up.
    ring.close();
    model.closed = true;
    for (i, reader) in readers.iter_mut().enumerate() {
        loop {
            let got = R::try_recv(reader);
            let expected = model.try_recv(i);
            assert_eq!(got, expected, "drain reader {i}");
            count(&mut tally[i], &got);
            if got == Err(TryRecvError::Closed) {
                break;
            }
        }
        let (from, delivered, missed) = tally[i];
        assert_eq!(
            delivered + missed,
            model.head - from,
            "reader {i}: delivered {delivered} + missed {missed} != published since {from}"
        );
        // Closed is final.
        assert_eq!(R::try_recv(reader), Err(TryRecvError::Closed));
    }
}

fn count(tally: &mut (u64, u64, u64), got: &Result<(u64, Vec<u8>), TryRecvError>) {
    match got {
        Ok(_) => tally.1 += 1,
        Err(TryRecvError::Expired { missed, .. }) => tally.2 += missed,
        Err(_) => {}
    }
}

fuzz_target!(|input: Input| {
    let capacity = usize::from(input.capacity % 16) + 1;
    let start = if input.high_start {
        // Room for every publish an input can hold.
        u64::MAX - 1 - (1 << 20)
    } else {
        0
    };
    if input.bytes {
        let max_bytes = usize::from(input.max_bytes) + 1;
        let arena_bytes = round8(max_bytes as u64);
        let max_message_size = usize::from(input.max_message_size).min(arena_bytes as usize);
        let config = Config::new()
            .capacity(capacity)
            .max_bytes(max_bytes)
            .max_message_size(max_message_size);
        let (publisher, first) =
            bytes::channel_starting_at(config, start).expect("max_message_size <= arena");
        let handle = publisher.handle();
        assert_eq!(handle.capacity(), capacity.next_power_of_two());
        assert_eq!(handle.max_message_size(), max_message_size);
        let model = Model::new(capacity, arena_bytes, start).for_byte_ring(max_message_size);
        let ring = Bytes {
            publisher: Some(publisher),
            handle,
        };
        // Payloads up to 255 bytes: some above the size limit.
        replay(
            ring,
            first,
            model,
            &input.ops,
            byte_payload,
            max_message_size,
        );
    } else {
        let step = usize::from(input.step % 16) + 1;
        let (publisher, first) = channel_with_step::<u64>(capacity, start, step);
        let handle = publisher.handle();
        let model = Model::new(capacity, u64::MAX, start).with_step(step);
        assert_eq!(publisher.capacity(), model.capacity);
        let ring = Typed {
            publisher: Some(publisher),
            handle,
        };
        replay(
            ring,
            first,
            model,
            &input.ops,
            |value, _| value.to_le_bytes().to_vec(),
            8,
        );
    }
});
