//! The byte ring: variable-length payloads up to a maximum message size.
//!
//! Layout: an index ring of seqlock slots `{stamp, pos, len}` (module
//! `slot`) plus a byte arena of `AtomicU64` words addressed by a 64-bit byte
//! position that only grows. Message `seq` lives in index slot `seq & mask`;
//! its payload occupies `ceil(len / 8)` words from byte position `pos`
//! (always a multiple of 8), wrapping around the arena's end.
//!
//! A message is expired when its index slot was reused (stamp check)
//! **or** its bytes were reused: the publisher announces, in
//! `reserved`, how far it may write before writing there, so a reader that
//! copied a message's words and then sees `reserved > pos + arena_bytes`
//! knows some of them may have been overwritten, and reports expiry
//! instead of returning them. It reserves ahead, `arena_bytes - held_bytes`
//! (a sixteenth of the arena) at a time, as the typed ring reserves slots:
//! readers load `reserved` after every copy, and a store to it on every
//! publish would pull that cache line back from them every time.
//!
//! # Held, and kept a while longer
//!
//! The ring *holds* the last `capacity` messages, as far as their bytes lie
//! in the last `held_bytes` (`max_bytes` less a sixteenth) bytes written:
//! `oldest_held` and `subscribe_at` go by that. It *keeps* more: the index
//! has `2 * capacity` slots and the arena all of `max_bytes`, and a reader
//! further behind than the held messages still reads what is kept, until it
//! is overwritten. A reader whose message was overwritten resumes at the
//! oldest message held, which is then `capacity` messages and one
//! reservation of bytes away from being overwritten itself. Resuming at the
//! oldest message *kept* would leave it nothing: a reader slower than the
//! publisher would resume at the slot the next publish takes, lose it while
//! copying it, and so on, receiving almost nothing for as long as the
//! publisher outpaced it.

use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::error::{RecvError, RecvTimeoutError, SubscribeError, TooLarge, TryRecvError};
use crate::recv::{self, Recv, Source};
use crate::ring::check_subscribe_at;
use crate::seq::{self, round_capacity};
use crate::slot::Slots;
use crate::sync::{fence, Arc, AtomicU64, Ordering};
use crate::wait::RingState;

/// Index slot data word holding the payload's byte position.
const POS: usize = 0;
/// Index slot data word holding the payload's length in bytes.
const LEN: usize = 1;

/// Sizes of a byte ring. Every setter states its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    capacity: usize,
    max_bytes: usize,
    max_message_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            capacity: 4096,
            max_bytes: 16 << 20,
            max_message_size: 1 << 20,
        }
    }
}

impl Config {
    /// The default sizes: 4096 messages, 16 MiB of payload, 1 MiB messages.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many of the latest messages the ring holds, rounded up to a
    /// power of two (at least 1). It keeps as many again a while longer
    /// (module docs). Default 4096.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// How many payload bytes the ring keeps at most, rounded up to a
    /// multiple of 8; it holds messages whose bytes lie in the last fifteen
    /// sixteenths of them (module docs). Each message takes its length
    /// rounded up to a multiple of 8. Default 16 MiB.
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The largest payload `publish` accepts; at most `max_bytes`.
    /// Default 1 MiB.
    pub fn max_message_size(mut self, max_message_size: usize) -> Self {
        self.max_message_size = max_message_size;
        self
    }
}

/// A [`Config`] that cannot make a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A message could not fit in the byte arena.
    #[error("max message size {max_message_size} exceeds max bytes {max_bytes}")]
    MessageLargerThanArena {
        /// The requested maximum message size.
        max_message_size: usize,
        /// The requested arena size.
        max_bytes: usize,
    },
}

struct Shared {
    state: RingState,
    /// `2 * capacity` slots of `{pos, len}`; message `seq` in slot
    /// `seq & mask`.
    index: Slots,
    /// `arena_words` words; byte position `p` is in word `(p / 8) % arena_words`.
    arena: Box<[AtomicU64]>,
    /// End (exclusive) of the bytes the publisher has written or is about to
    /// write. Written only by the publisher, Relaxed, before a Release fence
    /// that precedes the payload stores. Only grows.
    reserved: CachePadded<AtomicU64>,
    /// `2 * capacity - 1`.
    mask: u64,
    arena_words: usize,
    /// `arena_words * 8`: how many bytes are kept.
    arena_bytes: u64,
    /// How many of the last bytes written are held (module docs): a
    /// sixteenth less than `arena_bytes` (in whole words), but room for the
    /// largest message.
    held_bytes: u64,
    max_message_size: usize,
}

impl Shared {
    #[inline]
    fn slot(&self, seq: u64) -> usize {
        // The mask keeps the result below `capacity`, which fits a usize.
        (seq & self.mask) as usize
    }

    #[inline]
    fn word_of(&self, pos: u64) -> usize {
        // The remainder is below `arena_words`, which fits a usize.
        ((pos / 8) % self.arena_words as u64) as usize
    }

    /// The validated `(pos, len)` of message `seq`, if its index slot still
    /// holds it.
    #[inline]
    fn locate(&self, seq: u64) -> Option<(u64, usize)> {
        let slot = self.slot(seq);
        if self.index.stamp(slot) != seq::stamp_of(seq) {
            return None;
        }
        let pos = self.index.load(slot, POS);
        let len = self.index.load(slot, LEN);
        if !self.index.validate(slot, seq) {
            return None;
        }
        // Validated: this is what the publisher stored, a length it checked
        // against `max_message_size`, so it fits a usize.
        Some((pos, len as usize))
    }

    /// Whether bytes from `pos` on may have been overwritten, judged after
    /// copying them.
    #[inline]
    fn bytes_lapped(&self, pos: u64) -> bool {
        // Acquire fence: if any word copied before this was stored by a
        // later publish, this synchronizes with that publish's Release fence,
        // so the load below sees its `reserved` (or a later one).
        fence(Ordering::Acquire);
        // Relaxed: ordered by the fence above.
        self.reserved.load(Ordering::Relaxed) > pos + self.arena_bytes
    }

    /// Appends message `seq` to `buf`; on `None` (overwritten before or
    /// while it was copied) `buf` is back to its old length.
    #[inline]
    fn append(&self, seq: u64, buf: &mut Vec<u8>) -> Option<()> {
        let (pos, len) = self.locate(seq)?;
        debug_assert!(len <= self.max_message_size);
        // Whole words, 8 bytes at a time (a fixed-size copy each), then the
        // padding of the last word cut off.
        let start = buf.len();
        buf.resize(start + len.div_ceil(8) * 8, 0);
        let mut word = self.word_of(pos);
        for dst in buf[start..].chunks_exact_mut(8) {
            // Relaxed: validated by `bytes_lapped` below.
            dst.copy_from_slice(&self.arena[word].load(Ordering::Relaxed).to_ne_bytes());
            word += 1;
            if word == self.arena_words {
                word = 0;
            }
        }
        buf.truncate(start + len);
        if self.bytes_lapped(pos) {
            buf.truncate(start);
            return None;
        }
        Some(())
    }
}

/// The byte ring seen by [`ByteSubscriber::try_recv_append`]: reads append.
struct Appending<'a>(&'a Shared);

impl Source for Appending<'_> {
    type Buf = Vec<u8>;
    type Out = ();

    fn state(&self) -> &RingState {
        &self.0.state
    }

    #[inline]
    fn read(&self, seq: u64, buf: &mut Vec<u8>) -> Option<()> {
        self.0.append(seq, buf)
    }

    fn resume_after(&self, seq: u64) -> u64 {
        self.0.resume_after(seq)
    }
}

impl Source for Shared {
    type Buf = Vec<u8>;
    type Out = ();

    fn state(&self) -> &RingState {
        &self.state
    }

    #[inline]
    fn read(&self, seq: u64, buf: &mut Vec<u8>) -> Option<()> {
        buf.clear();
        self.append(seq, buf)
    }

    /// The first message after `seq` that is held right now: among the
    /// last `capacity`, its index slot intact and its bytes among the last
    /// `held_bytes` written (or the head if none is).
    fn resume_after(&self, seq: u64) -> u64 {
        let head = self.state.head();
        // Relaxed: a hint; every read re-validates.
        let reserved = self.reserved.load(Ordering::Relaxed);
        let mut candidate =
            seq::oldest_held(head, self.state.capacity, self.state.start).max(seq + 1);
        while candidate < head {
            match self.locate(candidate) {
                Some((pos, _)) if reserved <= pos + self.held_bytes => return candidate,
                _ => candidate += 1,
            }
        }
        head
    }
}

/// The arena bytes a payload of `len` bytes takes: whole words.
#[inline]
fn arena_span(len: usize) -> u64 {
    (len as u64).div_ceil(8) * 8
}

/// Creates a byte ring and returns its publisher and a first subscriber at
/// the head.
///
/// Memory, allocated here once: `capacity * 48` bytes of index (twice the
/// capacity: see the module docs on what is held and what is kept) plus
/// `max_bytes` (rounded up to a multiple of 8) of payload arena; publishing
/// never allocates.
pub fn channel(config: Config) -> Result<(BytePublisher, ByteSubscriber), ConfigError> {
    with_start(config, 0)
}

/// Like [`channel`], with the first publish taking sequence number `start`:
/// for tests of positions near the top of the `u64` range.
#[cfg(feature = "test-util")]
pub fn channel_starting_at(
    config: Config,
    start: u64,
) -> Result<(BytePublisher, ByteSubscriber), ConfigError> {
    with_start(config, start)
}

fn with_start(config: Config, start: u64) -> Result<(BytePublisher, ByteSubscriber), ConfigError> {
    let capacity = round_capacity(config.capacity);
    let arena_words = config.max_bytes.div_ceil(8).max(1);
    if config.max_message_size > arena_words * 8 {
        return Err(ConfigError::MessageLargerThanArena {
            max_message_size: config.max_message_size,
            max_bytes: config.max_bytes,
        });
    }
    let arena_bytes = arena_words as u64 * 8;
    let largest = arena_span(config.max_message_size);
    let index_slots = capacity
        .checked_mul(2)
        .expect("byte ring capacity overflows usize");
    let shared = Arc::new(Shared {
        state: RingState::new(capacity as u64, start),
        index: Slots::new(index_slots, 2),
        arena: (0..arena_words).map(|_| AtomicU64::new(0)).collect(),
        reserved: CachePadded::new(AtomicU64::new(0)),
        mask: index_slots as u64 - 1,
        arena_words,
        arena_bytes,
        // A sixteenth in whole words: none in arenas under 128 bytes, which
        // then hold all they keep.
        held_bytes: (arena_bytes - arena_bytes / 128 * 8).max(largest),
        max_message_size: config.max_message_size,
    });
    let handle = ByteHandle { shared };
    let subscriber = handle.subscribe();
    let publisher = BytePublisher {
        head: start,
        byte_head: 0,
        reserved: 0,
        handle,
    };
    Ok((publisher, subscriber))
}

/// The single writer of a byte ring. Dropping it closes the ring.
pub struct BytePublisher {
    /// Sequence number of the next publish; mirrors `state.head`.
    head: u64,
    /// Byte position where the next payload starts. A multiple of 8.
    byte_head: u64,
    /// Mirrors `shared.reserved`, which only this publisher writes: at or
    /// above `byte_head`, and at most `arena_bytes - held_bytes` above it.
    reserved: u64,
    handle: ByteHandle,
}

impl BytePublisher {
    /// Publishes a copy of `payload` and returns its sequence number.
    ///
    /// Never blocks and never allocates; with nobody parked it takes no lock
    /// and makes no system call. A payload longer than the maximum message
    /// size is handed back in the error, and nothing is published.
    ///
    /// # Panics
    /// After `u64::MAX` messages (the sequence space is exhausted).
    #[inline]
    pub fn publish<P: AsRef<[u8]>>(&mut self, payload: P) -> Result<u64, TooLarge<P>> {
        let bytes = payload.as_ref();
        let len = bytes.len();
        if len > self.handle.shared.max_message_size {
            let max = self.handle.shared.max_message_size;
            return Err(TooLarge { len, max, payload });
        }
        Ok(self.write(len, &[bytes]))
    }

    /// Publishes the concatenation of `parts` as one message (for example a
    /// header and a body) without concatenating them first.
    pub fn publish_vectored(&mut self, parts: &[&[u8]]) -> Result<u64, TooLarge<()>> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let max = self.handle.shared.max_message_size;
        if len > max {
            return Err(TooLarge {
                len,
                max,
                payload: (),
            });
        }
        Ok(self.write(len, parts))
    }

    /// Writes a message of `len` bytes made of `parts`; `len` is checked.
    #[inline]
    fn write(&mut self, len: usize, parts: &[&[u8]]) -> u64 {
        let seq = self.head;
        assert!(seq < u64::MAX, "sequence numbers exhausted");
        let shared = &*self.handle.shared;
        let slot = shared.slot(seq);
        let pos = self.byte_head;
        let end = pos + arena_span(len);
        if end > self.reserved {
            // The next reservation: this message's bytes, or the margin
            // between what the arena keeps and what it holds if that is
            // more. `reserved - byte_head` then stays within the margin, so
            // a message whose bytes are held is never judged overwritten.
            self.reserved = end.max(pos + (shared.arena_bytes - shared.held_bytes));
            // Relaxed: published to readers by the Release fence in
            // `begin_write`, which precedes every payload store below.
            shared.reserved.store(self.reserved, Ordering::Relaxed);
        }
        shared.index.begin_write(slot);
        let mut packer = Packer {
            arena: &shared.arena,
            word: shared.word_of(pos),
            acc: 0,
            fill: 0,
        };
        for part in parts {
            packer.push(part);
        }
        packer.finish();
        shared.index.store(slot, POS, pos);
        shared.index.store(slot, LEN, len as u64);
        shared.index.end_write(slot, seq);
        self.byte_head = end;
        self.head = seq + 1;
        shared.state.advance(self.head);
        seq
    }

    /// A new subscriber at the head.
    pub fn subscribe(&self) -> ByteSubscriber {
        self.handle.subscribe()
    }

    /// A new subscriber whose next message is `seq`.
    pub fn subscribe_at(&self, seq: u64) -> Result<ByteSubscriber, SubscribeError> {
        self.handle.subscribe_at(seq)
    }

    /// The sequence number the next publish takes.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The oldest sequence number held, counting messages only: its bytes
    /// may have been reused already if `max_bytes` binds before `capacity`.
    /// Older messages may still be kept (module docs).
    pub fn oldest_held(&self) -> u64 {
        let state = &self.handle.shared.state;
        seq::oldest_held(self.head, state.capacity, state.start)
    }

    /// The largest payload `publish` accepts.
    pub fn max_message_size(&self) -> usize {
        self.handle.shared.max_message_size
    }

    /// A cheap, clonable handle for creating subscribers from elsewhere.
    pub fn handle(&self) -> ByteHandle {
        self.handle.clone()
    }
}

impl Drop for BytePublisher {
    fn drop(&mut self) {
        self.handle.shared.state.close();
    }
}

impl std::fmt::Debug for BytePublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BytePublisher")
            .field("head", &self.head)
            .field("byte_head", &self.byte_head)
            .finish()
    }
}

/// Packs byte slices into arena words, wrapping at the arena's end.
///
/// The bytes of a word not yet complete wait in a register, not in a byte
/// array: a word stored byte by byte and then loaded whole cannot be
/// forwarded from the store buffer, and the load stalls until the stores
/// land, once or twice per message.
struct Packer<'a> {
    arena: &'a [AtomicU64],
    word: usize,
    /// The first `fill` bytes of the next word, byte `i` in bits `8 * i..`.
    acc: u64,
    fill: usize,
}

/// The bytes of `bytes` (fewer than 8), byte `i` in bits `8 * i..` and the
/// rest zero, read without a loop: two overlapping reads cover any length.
#[inline]
fn low_bytes(bytes: &[u8]) -> u64 {
    let n = bytes.len();
    debug_assert!(n < 8);
    if n >= 4 {
        let first = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let last = u32::from_le_bytes([bytes[n - 4], bytes[n - 3], bytes[n - 2], bytes[n - 1]]);
        u64::from(first) | u64::from(last) << (8 * (n - 4))
    } else if n > 0 {
        u64::from(bytes[0])
            | u64::from(bytes[n / 2]) << (8 * (n / 2))
            | u64::from(bytes[n - 1]) << (8 * (n - 1))
    } else {
        0
    }
}

impl Packer<'_> {
    #[inline]
    fn emit(&mut self, value: u64) {
        // Relaxed: published by the index slot's Release stamp store; a
        // reader racing this store is caught by `bytes_lapped`.
        self.arena[self.word].store(value, Ordering::Relaxed);
        self.word += 1;
        if self.word == self.arena.len() {
            self.word = 0;
        }
    }

    /// Emits the pending bytes, byte `i` at the `i`-th byte of the word in
    /// memory, as the whole words of [`push`](Self::push) are.
    #[inline]
    fn emit_pending(&mut self) {
        self.emit(u64::from_le(self.acc));
    }

    #[inline]
    fn push(&mut self, mut bytes: &[u8]) {
        if self.fill > 0 {
            let take = (8 - self.fill).min(bytes.len());
            self.acc |= low_bytes(&bytes[..take]) << (8 * self.fill);
            self.fill += take;
            bytes = &bytes[take..];
            if self.fill < 8 {
                return;
            }
            self.emit_pending();
            self.acc = 0;
            self.fill = 0;
        }
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.emit(u64::from_ne_bytes(word));
        }
        let rest = chunks.remainder();
        self.acc = low_bytes(rest);
        self.fill = rest.len();
    }

    #[inline]
    fn finish(mut self) {
        if self.fill > 0 {
            self.emit_pending();
        }
    }
}

/// A clonable handle on a byte ring that creates subscribers and observes
/// the head. It does not keep the ring open.
#[derive(Clone)]
pub struct ByteHandle {
    shared: Arc<Shared>,
}

impl ByteHandle {
    /// A new subscriber at the head.
    pub fn subscribe(&self) -> ByteSubscriber {
        ByteSubscriber {
            cursor: self.shared.state.head(),
            shared: Arc::clone(&self.shared),
        }
    }

    /// A new subscriber whose next message is `seq`, if the index holds it
    /// or it is the head. Checked now; a later expiry is reported by the
    /// first receive.
    pub fn subscribe_at(&self, seq: u64) -> Result<ByteSubscriber, SubscribeError> {
        check_subscribe_at(
            self.shared.state.head(),
            self.shared.state.oldest_held(),
            seq,
        )?;
        Ok(ByteSubscriber {
            cursor: seq,
            shared: Arc::clone(&self.shared),
        })
    }

    /// The sequence number the next publish takes. Stale once returned.
    pub fn head(&self) -> u64 {
        self.shared.state.head()
    }

    /// The oldest sequence number held, counting messages only (see
    /// [`BytePublisher::oldest_held`]). Stale once returned.
    pub fn oldest_held(&self) -> u64 {
        self.shared.state.oldest_held()
    }

    /// How many of the latest messages the ring holds (a power of two; the
    /// index has twice as many slots).
    pub fn capacity(&self) -> usize {
        self.shared.state.capacity as usize
    }

    /// The largest payload the publisher accepts.
    pub fn max_message_size(&self) -> usize {
        self.shared.max_message_size
    }

    /// Whether the publisher is gone. Once true, stays true.
    pub fn is_closed(&self) -> bool {
        self.shared.state.is_closed()
    }
}

impl std::fmt::Debug for ByteHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteHandle")
            .field("head", &self.head())
            .field("capacity", &self.capacity())
            .finish()
    }
}

/// A reader of a byte ring with its own cursor. Cloning it clones the cursor.
///
/// Receives copy the payload into a caller's `Vec<u8>` (cleared first), so a
/// reused buffer makes receiving allocation-free too; they return the
/// message's sequence number.
#[derive(Clone)]
pub struct ByteSubscriber {
    /// Sequence number of the next message to read; only grows.
    cursor: u64,
    shared: Arc<Shared>,
}

impl ByteSubscriber {
    /// Copies the next message into `buf` if there is one; never blocks.
    #[inline]
    pub fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<u64, TryRecvError> {
        let seq = self.cursor;
        recv::try_recv(&*self.shared, &mut self.cursor, buf).map(|()| seq)
    }

    /// Like [`try_recv`](Self::try_recv), but appends the message to `buf`
    /// instead of replacing its contents: for building a batch of messages
    /// in one buffer without copying each twice. On an error `buf` is as it
    /// was.
    #[inline]
    pub fn try_recv_append(&mut self, buf: &mut Vec<u8>) -> Result<u64, TryRecvError> {
        let seq = self.cursor;
        recv::try_recv(&Appending(&self.shared), &mut self.cursor, buf).map(|()| seq)
    }

    /// Waits for the next message: spins briefly, then parks the thread.
    pub fn recv(&mut self, buf: &mut Vec<u8>) -> Result<u64, RecvError> {
        recv::without_timeout(self.recv_deadline(buf, None))
    }

    /// Like [`recv`](Self::recv), giving up after `timeout`.
    pub fn recv_timeout(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<u64, RecvTimeoutError> {
        self.recv_deadline(buf, Some(Instant::now() + timeout))
    }

    fn recv_deadline(
        &mut self,
        buf: &mut Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<u64, RecvTimeoutError> {
        let Self { cursor, shared } = self;
        let shared = &**shared;
        recv::recv_blocking(
            &shared.state,
            || {
                let seq = *cursor;
                recv::try_recv(shared, cursor, buf).map(|()| seq)
            },
            deadline,
        )
    }

    /// Waits for the next message asynchronously (any executor). Dropping
    /// the future before it completes loses nothing.
    pub fn recv_async<'a>(
        &'a mut self,
        buf: &'a mut Vec<u8>,
    ) -> Recv<'a, impl FnMut() -> Result<u64, TryRecvError> + Unpin + 'a> {
        let Self { cursor, shared } = self;
        let shared = &**shared;
        Recv::new(&shared.state, move || {
            let seq = *cursor;
            recv::try_recv(shared, cursor, buf).map(|()| seq)
        })
    }

    /// Sequence number of the next message this subscriber will read.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// How many published messages this subscriber has not read yet. Stale
    /// once returned.
    pub fn lag(&self) -> u64 {
        self.shared.state.head().saturating_sub(self.cursor)
    }

    /// A handle on the same ring.
    pub fn handle(&self) -> ByteHandle {
        ByteHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl std::fmt::Debug for ByteSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteSubscriber")
            .field("cursor", &self.cursor)
            .finish()
    }
}
