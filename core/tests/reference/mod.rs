//! The reference model of a ring, shared by the property tests
//! (`core/tests/model.rs`) and the `ring_model` fuzz target: a `VecDeque` of
//! the last `capacity` messages with the documented rules, and adapters that
//! drive the typed ring and the byte ring through one trait.
//!
//! Kept free of test-framework dependencies so both can include it.

#![allow(dead_code)]

use std::collections::VecDeque;

use ringcast_core::bytes::{ByteHandle, BytePublisher, ByteSubscriber};
use ringcast_core::{Publisher, RingHandle, SubscribeError, Subscriber, TryRecvError};

pub fn round8(n: u64) -> u64 {
    n.div_ceil(8) * 8
}

/// The reference model; readers are plain cursors.
///
/// It tells the messages *kept* (still readable by a cursor that points at
/// them) from those *held* (`oldest_held`, `subscribe_at`, and where an
/// expired cursor resumes). The typed ring holds what it keeps. The byte
/// ring holds the last `capacity` messages whose bytes lie in the last
/// `held_bytes`, and keeps the last `2 * capacity` whose bytes lie in the
/// last `arena_bytes`.
pub struct Model {
    pub capacity: usize,
    /// Arena size in bytes; `u64::MAX` for the typed ring (bytes never bind).
    pub arena_bytes: u64,
    /// Bytes held: `arena_bytes` less a sixteenth in whole words, at least
    /// the largest message (byte ring).
    pub held_bytes: u64,
    /// Byte ring: index slots kept, `2 * capacity`. Typed ring: `None`, the
    /// reservation decides.
    pub kept_index: Option<u64>,
    pub head: u64,
    /// Typed ring: messages reserved at a time (1 for the byte ring).
    pub step: u64,
    /// Typed ring: writes to messages below this have begun; the ring holds
    /// the messages from `reserve_seq - (capacity + step - 1)` on. It runs
    /// `step` ahead, or less where the ring's last slot comes first.
    pub reserve_seq: u64,
    /// End of the bytes written so far.
    pub reserved: u64,
    /// Byte ring: how far the publisher may have written (its `reserved`):
    /// it reserves `arena_bytes - held_bytes` ahead at a time, or up to
    /// the end of the message if that is further.
    pub bytes_reserved: u64,
    pub closed: bool,
    /// The messages kept: `(seq, pos, payload)`.
    pub kept: VecDeque<(u64, u64, Vec<u8>)>,
    pub readers: Vec<u64>,
}

impl Model {
    pub fn new(capacity: usize, arena_bytes: u64, start: u64) -> Self {
        Self {
            capacity: capacity.max(1).next_power_of_two(),
            arena_bytes,
            held_bytes: arena_bytes,
            kept_index: None,
            head: start,
            step: 1,
            reserve_seq: start,
            reserved: 0,
            bytes_reserved: 0,
            closed: false,
            kept: VecDeque::new(),
            readers: vec![start],
        }
    }

    /// The byte ring's model: it keeps twice the index it holds, and holds
    /// a sixteenth less of the arena (in whole words) than it keeps, but
    /// room for a message of `max_message_size`.
    pub fn for_byte_ring(mut self, max_message_size: usize) -> Self {
        self.kept_index = Some(2 * self.capacity as u64);
        let largest = round8(max_message_size as u64);
        self.held_bytes = (self.arena_bytes - self.arena_bytes / 128 * 8).max(largest);
        self
    }

    /// The same model reserving `step` messages at a time, as the typed
    /// ring does: it then holds between `capacity` and
    /// `capacity + step - 1` messages.
    pub fn with_step(mut self, step: usize) -> Self {
        self.step = step.max(1) as u64;
        self
    }

    pub fn publish(&mut self, payload: Vec<u8>) -> u64 {
        let seq = self.head;
        let pos = self.reserved;
        self.reserved += round8(payload.len() as u64);
        if self.reserved > self.bytes_reserved {
            let margin = self.arena_bytes - self.held_bytes;
            self.bytes_reserved = self.reserved.max(pos.saturating_add(margin));
        }
        let slots = self.capacity as u64 + self.step - 1;
        if seq >= self.reserve_seq {
            // A reservation stops at the ring's last slot (message `s` is in
            // slot `s % slots`).
            let len = self.step.min(slots - seq % slots);
            self.reserve_seq = seq.saturating_add(len);
        }
        self.kept.push_back((seq, pos, payload));
        let oldest = match self.kept_index {
            Some(index) => (seq + 1).saturating_sub(index),
            None => self.reserve_seq.saturating_sub(slots),
        };
        while self.kept.front().is_some_and(|m| m.0 < oldest) {
            self.kept.pop_front();
        }
        self.head += 1;
        seq
    }

    /// The oldest message held, counting messages only (bytes aside).
    pub fn oldest_held(&self) -> u64 {
        let held_from = match self.kept_index {
            Some(_) => self.head.saturating_sub(self.capacity as u64),
            None => 0,
        };
        self.kept
            .iter()
            .find(|m| m.0 >= held_from)
            .map_or(self.head, |m| m.0)
    }

    /// Whether bytes from `pos` on are still in the arena.
    pub fn intact(&self, pos: u64) -> bool {
        self.bytes_reserved <= pos.saturating_add(self.arena_bytes)
    }

    /// Whether bytes from `pos` on are among those held.
    pub fn bytes_held(&self, pos: u64) -> bool {
        self.bytes_reserved <= pos.saturating_add(self.held_bytes)
    }

    pub fn subscribe_at(&mut self, seq: u64) -> Result<(), SubscribeError> {
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
        Ok(())
    }

    /// The model's answer to a `try_recv_many(max)` on reader `reader` that
    /// returned `got`. A batch may stop short of `max` at the head the
    /// reader last loaded, but must take at least one message when the model
    /// has one, and no more than `max` (checked here), and exactly the
    /// model's next ones (the caller compares `got` with the answer).
    pub fn answer_batch(&mut self, reader: usize, max: usize, got: &Batch) -> Batch {
        match got {
            Ok(batch) if max > 0 => {
                assert!(
                    (1..=max).contains(&batch.len()),
                    "a batch of {} for max {max}",
                    batch.len()
                );
                self.try_recv_many(reader, batch.len())
            }
            _ => self.try_recv_many(reader, max),
        }
    }

    /// Up to `max` receives in a row: the first one's error if it fails,
    /// else the messages up to `max` or the first `Empty` or `Closed`
    /// (none and `Ok` for `max == 0`).
    pub fn try_recv_many(&mut self, reader: usize, max: usize) -> Batch {
        let mut out = Vec::new();
        while out.len() < max {
            match self.try_recv(reader) {
                Ok(m) => out.push(m),
                Err(e) if out.is_empty() => return Err(e),
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                Err(e) => panic!("{e:?} right after a message: the model is inconsistent"),
            }
        }
        Ok(out)
    }

    pub fn try_recv(&mut self, reader: usize) -> Result<(u64, Vec<u8>), TryRecvError> {
        let cursor = self.readers[reader];
        if cursor == self.head {
            return Err(if self.closed {
                TryRecvError::Closed
            } else {
                TryRecvError::Empty
            });
        }
        if let Some(m) = self
            .kept
            .iter()
            .find(|m| m.0 == cursor)
            .filter(|m| self.intact(m.1))
        {
            let out = (m.0, m.2.clone());
            self.readers[reader] = cursor + 1;
            return Ok(out);
        }
        let oldest = self.oldest_held();
        let resume = self
            .kept
            .iter()
            .filter(|m| m.0 > cursor && m.0 >= oldest)
            .find(|m| self.bytes_held(m.1))
            .map_or(self.head, |m| m.0);
        self.readers[reader] = resume;
        Err(TryRecvError::Expired {
            missed: resume - cursor,
            resume_seq: resume,
        })
    }
}

/// What the replay needs from a ring.
/// What a batch receive returns: `(seq, payload)` per message.
pub type Batch = Result<Vec<(u64, Vec<u8>)>, TryRecvError>;

pub trait Ring {
    type Reader: Clone;
    fn publish(&mut self, payload: &[u8], split: Option<(usize, usize)>) -> Option<u64>;
    fn close(&mut self);
    fn subscribe(&self) -> Self::Reader;
    fn subscribe_at(&self, seq: u64) -> Result<Self::Reader, SubscribeError>;
    fn try_recv(reader: &mut Self::Reader) -> Result<(u64, Vec<u8>), TryRecvError>;
    /// A batch receive of up to `max` messages, for rings that have one.
    fn try_recv_many(_reader: &mut Self::Reader, _max: usize) -> Option<Batch> {
        None
    }
    fn cursor(reader: &Self::Reader) -> u64;
    fn lag(reader: &Self::Reader) -> u64;
    /// `(head, oldest_held)`, checked to agree between publisher and handle.
    fn observe(&self) -> (u64, u64);
}

pub struct Typed {
    pub publisher: Option<Publisher<u64>>,
    pub handle: RingHandle<u64>,
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

    fn try_recv_many(reader: &mut Self::Reader, max: usize) -> Option<Batch> {
        let seq = reader.cursor();
        // Something already in the buffer stays, ahead of the batch.
        let mut out = vec![u64::MAX];
        let result = reader.try_recv_many(&mut out, max).map(|n| {
            assert_eq!(out.len(), 1 + n, "returned count against appended values");
            assert_eq!(out[0], u64::MAX, "the buffer's earlier contents changed");
            (seq..)
                .zip(&out[1..])
                .map(|(seq, v)| (seq, v.to_le_bytes().to_vec()))
                .collect()
        });
        if result.is_err() {
            assert_eq!(out, [u64::MAX], "an error appended values");
        }
        Some(result)
    }

    fn cursor(reader: &Self::Reader) -> u64 {
        reader.cursor()
    }

    fn lag(reader: &Self::Reader) -> u64 {
        reader.lag()
    }

    fn observe(&self) -> (u64, u64) {
        let seen = (self.handle.head(), self.handle.oldest_held());
        if let Some(p) = &self.publisher {
            assert_eq!((p.head(), p.oldest_held()), seen);
        }
        assert_eq!(self.handle.is_closed(), self.publisher.is_none());
        seen
    }
}

pub struct Bytes {
    pub publisher: Option<BytePublisher>,
    pub handle: ByteHandle,
}

impl Ring for Bytes {
    type Reader = ByteSubscriber;

    fn publish(&mut self, payload: &[u8], split: Option<(usize, usize)>) -> Option<u64> {
        let publisher = self.publisher.as_mut()?;
        let max = publisher.max_message_size();
        let result = match split {
            None => publisher.publish(payload).map_err(|e| {
                assert_eq!(e.payload, payload, "a too-large payload is handed back");
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
            Err((len, refused_max)) => {
                assert_eq!((len, refused_max), (payload.len(), max));
                assert!(len > max);
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
        // Stale contents of the buffer must not leak into the result.
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
        let seen = (self.handle.head(), self.handle.oldest_held());
        if let Some(p) = &self.publisher {
            assert_eq!((p.head(), p.oldest_held()), seen);
        }
        assert_eq!(self.handle.is_closed(), self.publisher.is_none());
        seen
    }
}

pub fn byte_payload(value: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (value.rotate_left(i as u32 % 64) ^ i) as u8)
        .collect()
}
