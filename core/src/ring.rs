//! The typed ring: fixed-size `T` values in plain data slots, guarded by two
//! counters instead of a stamp per slot.
//!
//! # Protocol
//!
//! The ring has `slots = capacity + step - 1` slots; message `seq` lives in
//! slot `seq % slots`. Two counters, each on its own cache line:
//!
//! * `head`: the number the next publish takes. Messages below it are
//!   complete.
//! * `reserved`: writes to messages below it may have begun. Writing message
//!   `s` destroys message `s - slots`, so message `c` is intact exactly while
//!   `reserved <= c + slots`.
//!
//! Publishing message `s`:
//! 1. if `s >= reserved`: `reserved := s + n` (Relaxed), then
//!    `fence(Release)` — one store and fence per `step` messages. `n` is
//!    `step`, or less where the ring's last slot comes first: a reservation
//!    never wraps, so its messages lie in consecutive slots and the
//!    publisher finds each one's slot by a subtraction;
//! 2. store the data words (Relaxed);
//! 3. `head := s + 1` (Release), and wake parked readers if there are any.
//!
//! Reading message `c`, once an Acquire load of `head` returned more than `c`
//! (the reader caches that head and reloads it only when it catches up):
//! 1. load the data words (Relaxed: a racing write is not undefined
//!    behaviour, just garbage);
//! 2. `fence(Acquire)`, then load `reserved` (Relaxed);
//! 3. the words are message `c` iff `c + slots >= reserved`; otherwise `c`
//!    has expired and the reader resumes at `reserved - slots`, the oldest
//!    message intact.
//!
//! Why it works: a write that destroys `c` is of some `s >= c + slots`, and
//! it stored `reserved > s` before its `fence(Release)`. If step 1 saw any
//! word it stored, the reader's Acquire fence synchronizes with that release
//! fence, so step 2 sees `reserved > c + slots` and rejects the copy. If
//! step 3 accepts, every word came from the write of `c` itself, which the
//! Acquire load of `head` made visible.
//!
//! A batch of messages `c..c + n` takes step 1 for all of them, then steps 2
//! and 3 once, for `c`: a write that destroys any of them is of some
//! `s >= c + slots`, so the same check rejects the batch.
//!
//! Why `step` and the extra `step - 1` slots: reserving one message at a time
//! would rewrite `reserved` on every publish, and every reader validating a
//! copy would pull that cache line back from the publisher. Reserving `step`
//! at a time makes it one line transfer per `step` messages, and the
//! `step - 1` extra slots keep the last `capacity` messages intact however
//! far the reservation runs ahead. It also leaves a reader that expired
//! some room: it resumes up to `step` slots ahead of the slots being
//! rewritten, instead of inside them.
//!
//! Why a quarter of the capacity: readers load `reserved` after every copy,
//! so each reservation's store waits for that line to come back from them,
//! and a reader that expired needs room to read before the publisher
//! reaches it again. With a publisher publishing as fast as it can and a
//! reader reading as fast as it can, a sixteenth made the publisher about a
//! tenth slower, and the reader (lapped, so resuming again and again) about
//! half as fast, as a quarter does; a quarter costs 3/16 more slots.
//!
//! Publishing touches no per-slot metadata: a `u64` message is one data
//! store and one head store, and the slots are as dense as the values.
//!
//! Taking lines ahead: a reader that keeps up has a copy of every line the
//! publisher comes back to, left from the lap before, and the publisher's
//! first store to each line waits for that copy to be invalidated. Once per
//! line, the publisher asks for the line [`prefetch::AHEAD_BYTES`] ahead of
//! the slot it writes with a write prefetch, so that the line is its own by
//! the time it gets there (module `prefetch`). Where a round trip between
//! two cores is long, that wait was what set the publisher's pace with a
//! reader at its heels; where it is short, the hint may cost the publisher
//! some of its pace instead ([`prefetch::AHEAD_BYTES`] says what was
//! measured). It is a hint and nothing else: the protocol above neither
//! knows nor needs it.
//!
//! Waiting at the head: a reader learns of a new message from the head's
//! line and copies it from the slot's line. Loaded only once the head has
//! moved, the slot's line would set out after the head's had arrived, and
//! a message would take two line transfers to reach a waiting reader. So a
//! reader that has reloaded the head [`TOUCH_AFTER`] times in a row and
//! found nothing new, which is waiting for the publisher rather than racing
//! it, also loads the slot of the next message with every further reload,
//! right after the head and before looking at it: when a message comes,
//! both lines travel at once, and the copy finds the slot's line arrived or
//! on its way. That load is not used; the copy is still made, and checked,
//! after the head has moved. A reader racing the publisher does not do it:
//! there it would pull the line the publisher is writing away from it
//! between its stores, and with a reader at the publisher's heels that
//! slowed both.
//!
//! The publisher keeps its own copy of the head and never loads the shared
//! one. Readers poll the shared head, so its cache line keeps moving
//! between their cores and the publisher's, and a publish that began by
//! loading it could not find its slot until that load returned: with a
//! reader at its heels, such a publisher fell well short of the pace it
//! keeps now. The copy costs one store per publish to a line only the
//! publisher touches; the rest of what it keeps changes once per
//! reservation.

use std::marker::PhantomData;
use std::mem::{size_of, MaybeUninit};
use std::time::{Duration, Instant};

use bytemuck::NoUninit;
use crossbeam_utils::CachePadded;

use crate::error::{RecvError, RecvTimeoutError, SubscribeError, TryRecvError};
use crate::prefetch;
use crate::recv::{self, Recv};
use crate::seq::round_capacity;
use crate::sync::{fence, Arc, AtomicU64, Ordering};
use crate::wait::RingState;

/// Data words a `T` occupies in a slot: `ceil(size_of::<T>() / 8)`.
/// A constant per `T`, so the copy loops below unroll.
const fn words<T>() -> usize {
    size_of::<T>().div_ceil(8)
}

/// The reservation step for a ring of `capacity`: a quarter of it, at
/// least 1 (small rings then behave exactly as if every publish reserved
/// its own slot). Module docs: why a quarter.
fn default_step(capacity: usize) -> usize {
    (capacity / 4).max(1)
}

/// Slots ahead of the one it writes that the publisher takes a line for
/// writing (module docs: taking lines ahead): [`prefetch::AHEAD_BYTES`] of
/// messages of `bytes` each, at least one, at most a reservation `step`;
/// 0 where the CPU cannot prefetch for writing.
fn prefetch_distance(bytes: usize, step: usize) -> usize {
    if bytes == 0 || !prefetch::available() {
        // A zero-sized `T` has no lines to take.
        return 0;
    }
    (prefetch::AHEAD_BYTES / bytes).clamp(1, step)
}

/// The slot whose line the publisher takes for writing as it writes `slot`
/// ([`Shared::take_line_ahead`]): `ahead` slots further, wrapping, if
/// `slot` is the first of the ring's slots to start in its cache line, so
/// that each line asks once; for values of a line or more, every slot is.
/// `base` is the address of the ring's first slot, `bytes` a slot's size,
/// and `ahead` at most `slots`.
#[inline]
fn line_ahead(base: usize, bytes: usize, slot: usize, ahead: usize, slots: usize) -> Option<usize> {
    if slot != 0 && base.wrapping_add(slot * bytes) % 64 >= bytes {
        // The slot before this one starts in the same line.
        return None;
    }
    let mut at = slot + ahead;
    if at >= slots {
        // `slot < slots` and `ahead <= slots`: once is enough.
        at -= slots;
    }
    Some(at)
}

/// Head reloads in a row that found nothing new, after which a reader's
/// further reloads also load the slot the next message goes to (module docs:
/// waiting at the head). Enough that a reader racing a publisher, which
/// finds nothing now and then between two messages, does not do it; few
/// enough that a reader waiting microseconds for the next message does it
/// for most of the wait.
const TOUCH_AFTER: u32 = 16;

/// What publisher and subscribers share.
struct Shared<T> {
    /// Head, closed flag, waiters; `state.capacity` is the guaranteed hold.
    state: RingState,
    /// Writes to messages below this may have begun (module docs).
    reserved: CachePadded<AtomicU64>,
    /// `slots * words::<T>()` data words; slot `i` is words
    /// `i * words::<T>() ..`.
    data: Box<[AtomicU64]>,
    /// Number of slots: `capacity + step - 1`.
    slots: u64,
    /// Messages reserved at a time.
    step: u64,
    /// How many slots ahead of the one it writes the publisher takes a
    /// line for writing; 0 for not at all (module docs: taking lines ahead).
    ahead: usize,
    /// Values of `T` cross threads by copy; the ring never holds a `&T`.
    _values: PhantomData<fn(T) -> T>,
}

impl<T: NoUninit> Shared<T> {
    /// Slot of message `seq` (one division; the hot paths step instead).
    #[inline]
    fn slot_of(&self, seq: u64) -> usize {
        // Below `slots`, which is the length of an allocated array.
        (seq % self.slots) as usize
    }

    /// The oldest message intact while `reserved` is `reserved`.
    #[inline]
    fn oldest_given(&self, reserved: u64) -> u64 {
        reserved.saturating_sub(self.slots).max(self.state.start)
    }

    /// The oldest message still held. Stale the moment it returns.
    fn oldest_held(&self) -> u64 {
        // Relaxed: an observation for callers; every read validates its
        // copy against a fresh load of its own.
        self.oldest_given(self.reserved.load(Ordering::Relaxed))
    }

    /// Copies the words of `slot` into a `T`, unvalidated.
    #[inline]
    fn load(&self, slot: usize) -> MaybeUninit<T> {
        let mut value = MaybeUninit::<T>::uninit();
        let dst = value.as_mut_ptr().cast::<u8>();
        let size = size_of::<T>();
        let base = slot * words::<T>();
        for i in 0..words::<T>() {
            // Relaxed: validated afterwards against `reserved`.
            let word = self.data[base + i].load(Ordering::Relaxed).to_ne_bytes();
            let n = (size - i * 8).min(8);
            // SAFETY: `i * 8 + n <= size`, so the copy stays inside `value`,
            // and `word` is a local array that cannot overlap it.
            unsafe { std::ptr::copy_nonoverlapping(word.as_ptr(), dst.add(i * 8), n) };
        }
        value
    }

    /// Takes for writing the line where the slot `ahead` slots past `slot`
    /// starts, once per line (module docs: taking lines ahead).
    #[inline]
    fn take_line_ahead(&self, slot: usize) {
        if self.ahead == 0 {
            return;
        }
        let base = self.data.as_ptr();
        let bytes = words::<T>() * 8;
        if let Some(ahead) = line_ahead(base as usize, bytes, slot, self.ahead, self.slots as usize)
        {
            // SAFETY: `self.ahead` is not 0, so `prefetch::available()` was
            // true when the ring was built (`prefetch_distance`).
            unsafe { prefetch::for_write(base.wrapping_add(ahead * words::<T>())) };
        }
    }

    /// Stores `value` into `slot`.
    #[inline]
    fn store(&self, slot: usize, value: &T) {
        let bytes = bytemuck::bytes_of(value);
        let base = slot * words::<T>();
        for i in 0..words::<T>() {
            let chunk = &bytes[i * 8..bytes.len().min(i * 8 + 8)];
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            // Relaxed: published by the Release head store that follows, and
            // ordered after the reservation by its Release fence.
            self.data[base + i].store(u64::from_ne_bytes(word), Ordering::Relaxed);
        }
    }
}

/// Creates a typed ring that holds the last `capacity` messages (rounded up
/// to a power of two, at least 1) and returns its publisher and a first
/// subscriber at the head.
///
/// Memory: `(capacity + capacity / 4) * 8 * ceil(size_of::<T>() / 8)`
/// bytes, about, allocated here once; publishing never allocates. The extra
/// quarter means the ring may hold up to `capacity / 4 - 1` messages more
/// than `capacity` (never fewer): a reader expires only once it is more than
/// `capacity` messages behind, and sometimes later.
///
/// `T: NoUninit` (from `bytemuck`: `Copy`, no padding bytes) is what lets the
/// ring copy values word by word with atomic operations, soundly, even while
/// a read races a write. Derive it with `#[derive(bytemuck::NoUninit)]` on a
/// `#[repr(C)]` struct without padding.
pub fn channel<T: NoUninit + Send>(capacity: usize) -> (Publisher<T>, Subscriber<T>) {
    let capacity = round_capacity(capacity);
    build(capacity, 0, default_step(capacity))
}

/// Like [`channel`], with the first publish taking sequence number `start`
/// instead of 0: for tests of positions near the top of the `u64` range.
#[cfg(feature = "test-util")]
pub fn channel_starting_at<T: NoUninit + Send>(
    capacity: usize,
    start: u64,
) -> (Publisher<T>, Subscriber<T>) {
    let capacity = round_capacity(capacity);
    build(capacity, start, default_step(capacity))
}

/// Like [`channel_starting_at`], reserving `step` messages at a time (at
/// least 1) instead of `capacity / 4`: for tests and models that need the
/// reservation to run ahead in small rings.
#[cfg(feature = "test-util")]
pub fn channel_with_step<T: NoUninit + Send>(
    capacity: usize,
    start: u64,
    step: usize,
) -> (Publisher<T>, Subscriber<T>) {
    build(round_capacity(capacity), start, step.max(1))
}

fn build<T: NoUninit + Send>(
    capacity: usize,
    start: u64,
    step: usize,
) -> (Publisher<T>, Subscriber<T>) {
    let slots = capacity
        .checked_add(step - 1)
        .expect("ring size overflows usize");
    let total = slots
        .checked_mul(words::<T>())
        .expect("ring size overflows usize");
    let shared = Arc::new(Shared {
        state: RingState::new(capacity as u64, start),
        reserved: CachePadded::new(AtomicU64::new(start)),
        data: (0..total).map(|_| AtomicU64::new(0)).collect(),
        slots: slots as u64,
        step: step as u64,
        ahead: prefetch_distance(words::<T>() * 8, step),
        _values: PhantomData,
    });
    let handle = RingHandle { shared };
    let subscriber = handle.subscribe();
    let publisher = Publisher {
        head: start,
        reserved: start,
        offset: 0,
        next_slot: handle.shared.slot_of(start),
        handle,
    };
    (publisher, subscriber)
}

/// The single writer of a typed ring. Dropping it closes the ring:
/// subscribers read what is held, then get `Closed`.
///
/// It keeps its own copy of the head (module docs: why), and the rest of
/// what it keeps changes once per reservation, not per publish.
pub struct Publisher<T: NoUninit> {
    /// Mirrors the shared head, which only this publisher writes.
    head: u64,
    /// Mirrors `shared.reserved`, which only this publisher writes.
    reserved: u64,
    /// Maps the messages of the current reservation to their slots: message
    /// `seq` below `reserved` lives in slot `seq - offset` (wrapping).
    offset: u64,
    /// Slot of the message the next reservation starts with.
    next_slot: usize,
    handle: RingHandle<T>,
}

impl<T: NoUninit> Publisher<T> {
    /// Publishes `value` and returns its sequence number.
    ///
    /// Never blocks and never allocates; with nobody parked in a blocking or
    /// async receive it takes no lock and makes no system call. If the ring
    /// is full, the oldest message is overwritten: readers that had not read
    /// it get [`TryRecvError::Expired`].
    ///
    /// # Panics
    /// After `u64::MAX` messages (the sequence space is exhausted).
    #[inline]
    pub fn publish(&mut self, value: T) -> u64 {
        let seq = self.head;
        if seq >= self.reserved {
            self.reserve(seq);
        }
        let shared = &*self.handle.shared;
        // Below `slots`: a reservation covers consecutive slots (`reserve`).
        let slot = seq.wrapping_sub(self.offset) as usize;
        shared.store(slot, &value);
        shared.take_line_ahead(slot);
        self.head = seq + 1;
        shared.state.advance(seq + 1);
        seq
    }

    /// Reserves the messages from `seq` on: `step` of them, or fewer if the
    /// ring's last slot comes first, so that a reservation's messages lie in
    /// consecutive slots (module docs).
    #[cold]
    fn reserve(&mut self, seq: u64) {
        assert!(seq < u64::MAX, "sequence numbers exhausted");
        let shared = &*self.handle.shared;
        let slot = self.next_slot;
        debug_assert_eq!(slot, shared.slot_of(seq));
        let len = shared.step.min(shared.slots - slot as u64);
        // Saturating: the messages below `u64::MAX` still fit.
        self.reserved = seq.saturating_add(len);
        self.offset = seq.wrapping_sub(slot as u64);
        // `len` slots from `slot` end at most at `slots`, which wraps to 0.
        self.next_slot = (slot + len as usize) % shared.slots as usize;
        // Relaxed: ordered before the data stores by the fence below.
        shared.reserved.store(self.reserved, Ordering::Relaxed);
        // Release fence: a reader whose Acquire fence follows a load that saw
        // any data store after this point also sees the reservation above.
        fence(Ordering::Release);
    }

    /// A new subscriber at the head: it sees only messages published after
    /// this call.
    pub fn subscribe(&self) -> Subscriber<T> {
        self.handle.subscribe()
    }

    /// A new subscriber whose next message is `seq`.
    pub fn subscribe_at(&self, seq: u64) -> Result<Subscriber<T>, SubscribeError> {
        self.handle.subscribe_at(seq)
    }

    /// The sequence number the next publish takes.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The oldest sequence number still held (equal to `head` when empty).
    pub fn oldest_held(&self) -> u64 {
        self.handle.shared.oldest_given(self.reserved)
    }

    /// The number of most recent messages the ring always holds (a power
    /// of two; it may hold up to `capacity / 4 - 1` more).
    pub fn capacity(&self) -> usize {
        self.handle.capacity()
    }

    /// A cheap, clonable handle for creating subscribers from elsewhere.
    pub fn handle(&self) -> RingHandle<T> {
        self.handle.clone()
    }
}

impl<T: NoUninit> Drop for Publisher<T> {
    fn drop(&mut self) {
        self.handle.shared.state.close();
    }
}

impl<T: NoUninit> std::fmt::Debug for Publisher<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("head", &self.head())
            .field("capacity", &self.capacity())
            .finish()
    }
}

/// A clonable handle on a typed ring that creates subscribers and observes
/// the head, without being able to publish. It does not keep the ring open.
pub struct RingHandle<T: NoUninit> {
    shared: Arc<Shared<T>>,
}

impl<T: NoUninit> RingHandle<T> {
    /// A new subscriber at the head.
    pub fn subscribe(&self) -> Subscriber<T> {
        self.subscriber_at(self.shared.state.head())
    }

    /// A new subscriber whose next message is `seq`, if `seq` is held or is
    /// the head. The check is made now: a position held now may expire
    /// before the first receive, which then reports it.
    pub fn subscribe_at(&self, seq: u64) -> Result<Subscriber<T>, SubscribeError> {
        let head = self.shared.state.head();
        check_subscribe_at(head, self.shared.oldest_held(), seq)?;
        Ok(self.subscriber_at(seq))
    }

    fn subscriber_at(&self, seq: u64) -> Subscriber<T> {
        Subscriber {
            pos: ReadPos {
                cursor: seq,
                slot: self.shared.slot_of(seq),
                head: seq,
                empty: 0,
            },
            shared: Arc::clone(&self.shared),
        }
    }

    /// The sequence number the next publish takes. Stale once returned: it
    /// only grows.
    pub fn head(&self) -> u64 {
        self.shared.state.head()
    }

    /// The oldest sequence number still held. Stale once returned.
    pub fn oldest_held(&self) -> u64 {
        self.shared.oldest_held()
    }

    /// The number of most recent messages the ring always holds (a power
    /// of two; it may hold up to `capacity / 4 - 1` more).
    pub fn capacity(&self) -> usize {
        self.shared.state.capacity as usize
    }

    /// Whether the publisher is gone. Once true, stays true.
    pub fn is_closed(&self) -> bool {
        self.shared.state.is_closed()
    }
}

impl<T: NoUninit> Clone for RingHandle<T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T: NoUninit> std::fmt::Debug for RingHandle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingHandle")
            .field("head", &self.head())
            .field("capacity", &self.capacity())
            .finish()
    }
}

/// Shared by both rings: `subscribe_at`'s check, against a `head` and the
/// `oldest` held, both loaded just before.
pub(crate) fn check_subscribe_at(head: u64, oldest: u64, seq: u64) -> Result<(), SubscribeError> {
    if seq > head {
        return Err(SubscribeError::Future { seq, head });
    }
    if seq < oldest {
        return Err(SubscribeError::Expired {
            seq,
            oldest_held: oldest,
        });
    }
    Ok(())
}

/// A reader of a typed ring with its own cursor. Cloning it clones the
/// cursor: the clone continues from the same position, independently.
pub struct Subscriber<T: NoUninit> {
    pos: ReadPos,
    shared: Arc<Shared<T>>,
}

/// Where a subscriber stands.
#[derive(Debug, Clone, Copy)]
struct ReadPos {
    /// Sequence number of the next message this subscriber reads.
    /// Only grows; never above the head.
    cursor: u64,
    /// Slot of `cursor`, stepped instead of divided.
    slot: usize,
    /// The last head this subscriber loaded (Acquire): messages below it are
    /// complete, so reading up to it needs no further look at `head`, a
    /// cache line the publisher rewrites on every publish.
    head: u64,
    /// Head reloads in a row that found nothing new.
    empty: u32,
}

impl<T: NoUninit> Shared<T> {
    /// One receive at `pos` (module docs, reading).
    #[inline]
    fn try_recv(&self, pos: &mut ReadPos) -> Result<T, TryRecvError> {
        let seq = pos.cursor;
        if seq >= pos.head {
            self.refresh_head(pos)?;
        }
        let value = self.load(pos.slot);
        // Acquire fence: synchronizes with the Release fence of any
        // reservation whose data stores the loads above saw (module docs).
        fence(Ordering::Acquire);
        // Relaxed: ordered by the fence above.
        let oldest = self.oldest_given(self.reserved.load(Ordering::Relaxed));
        if seq < oldest {
            return Err(self.expire(pos, oldest));
        }
        pos.cursor = seq + 1;
        pos.slot += 1;
        if pos.slot as u64 == self.slots {
            pos.slot = 0;
        }
        // SAFETY:
        // - `seq < head` for a head loaded with Acquire, so the write of
        //   message `seq` is visible, and `seq >= oldest` proved that no
        //   later write touched its slot before the loads above (module
        //   docs): every word loaded is the word stored for `seq`;
        // - those words were the bytes of a valid `T`, all initialized
        //   because `T: NoUninit` (no padding);
        // therefore `value` now holds that valid `T`.
        Ok(unsafe { value.assume_init() })
    }

    /// Up to `max` receives at `pos` at once, at most up to the cached head,
    /// appended to `out`: the same steps as [`try_recv`](Self::try_recv),
    /// with one validation for all the copies. A write that destroys any
    /// message `c >= seq` of the batch stored `reserved > c + slots >= seq +
    /// slots` before its release fence, so if any load saw a word it stored,
    /// the check of `seq` fails.
    #[inline]
    fn try_recv_many(
        &self,
        pos: &mut ReadPos,
        out: &mut Vec<T>,
        max: usize,
    ) -> Result<usize, TryRecvError> {
        let seq = pos.cursor;
        if max == 0 {
            return Ok(0);
        }
        if seq >= pos.head || pos.head - seq <= self.hot(pos) {
            // Nothing cached, or only messages in the line being written:
            // look for more first.
            self.refresh_head(pos)?;
        }
        let cached = pos.head - seq;
        // No more than the ring holds: a reader lapped far behind must not
        // reserve room for everything it missed before it learns that it
        // missed it. Below `max`, so it fits a `usize`.
        let mut n = cached.min(self.slots).min(max as u64) as usize;
        if n as u64 == cached && n > 1 {
            // The batch would end at the head. Leave the messages that share
            // a cache line with the next publish for the next call, unless
            // they are all there is: reading that line now would only pull
            // it away from the publisher, which is about to write it again.
            // (One message is all there is: a reader waiting at the head
            // takes it without working out the line.)
            let hot = self.hot(pos);
            if cached > hot {
                n -= hot as usize;
            }
        }
        out.reserve(n);
        let mut slot = pos.slot;
        for dst in &mut out.spare_capacity_mut()[..n] {
            *dst = self.load(slot);
            slot += 1;
            if slot as u64 == self.slots {
                slot = 0;
            }
        }
        // Acquire fence, then `reserved`: as in `try_recv`.
        fence(Ordering::Acquire);
        let oldest = self.oldest_given(self.reserved.load(Ordering::Relaxed));
        if seq < oldest {
            return Err(self.expire(pos, oldest));
        }
        pos.cursor = seq + n as u64;
        pos.slot = slot;
        // SAFETY: the `n` elements after `out.len()` are within the capacity
        // reserved above, and each holds a valid `T`: every message
        // `seq..seq + n` is below a head loaded with Acquire and at or above
        // `oldest`, so, as in `try_recv`, its words are the ones stored for
        // it, the bytes of a `T` without padding.
        unsafe { out.set_len(out.len() + n) };
        Ok(n)
    }

    /// How many of the messages below the head `pos` last loaded share a
    /// cache line with the slot of that head, where the next publish
    /// writes: the publisher is still writing that line. Meaningful while
    /// the cursor is at most one ring behind that head.
    #[inline]
    fn hot(&self, pos: &ReadPos) -> u64 {
        let bytes = (words::<T>() * 8) as u64;
        if bytes > 64 {
            // A message spans lines of its own.
            return 0;
        }
        let behind = pos.head.saturating_sub(pos.cursor).min(self.slots);
        let mut head_slot = pos.slot as u64 + behind;
        if head_slot >= self.slots {
            head_slot -= self.slots;
        }
        let addr = self.data.as_ptr() as u64 + head_slot * bytes;
        // Messages that start below `addr` in its line, and not past the
        // ring's first slot (those before it lie at the other end).
        (addr % 64).div_ceil(bytes).min(head_slot)
    }

    /// Reloads the head once the cursor has caught up with the cached one:
    /// `Err(Empty)` or `Err(Closed)` if there is still nothing to read.
    ///
    /// Inlined, not kept out of line as rare: a reader waiting at the head
    /// runs it on every receive, and when a message comes, the steps from
    /// the head's arrival to the copy are the reader's share of the latency.
    #[inline]
    fn refresh_head(&self, pos: &mut ReadPos) -> Result<(), TryRecvError> {
        // `closed` first: if it reads true, the head loaded after it is
        // final, so "caught up and closed" means nothing more, ever.
        let closed = self.state.is_closed();
        pos.head = self.state.head();
        // Before the check, not behind it (module docs: waiting at the
        // head). The copy is dropped: only its cache lines are wanted.
        if pos.empty >= TOUCH_AFTER {
            let _ = self.load(pos.slot);
        }
        if pos.cursor < pos.head {
            pos.empty = 0;
            Ok(())
        } else if closed {
            Err(TryRecvError::Closed)
        } else {
            pos.empty = pos.empty.saturating_add(1);
            Err(TryRecvError::Empty)
        }
    }

    /// Moves the cursor to `oldest`, the oldest message intact, and says so.
    #[cold]
    fn expire(&self, pos: &mut ReadPos, oldest: u64) -> TryRecvError {
        debug_assert!(oldest > pos.cursor);
        let missed = oldest - pos.cursor;
        pos.cursor = oldest;
        pos.slot = self.slot_of(oldest);
        TryRecvError::Expired {
            missed,
            resume_seq: oldest,
        }
    }
}

impl<T: NoUninit> Subscriber<T> {
    /// Takes the next message if there is one; never blocks.
    ///
    /// On `Err(Expired { missed, resume_seq })` the cursor has moved to
    /// `resume_seq` and the next call continues from there.
    #[inline]
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.shared.try_recv(&mut self.pos)
    }

    /// Takes up to `max` messages at once, appending them to `out` in
    /// order, and returns how many; never blocks. Cheaper per message than
    /// [`try_recv`](Self::try_recv) when several are waiting: the copies are
    /// checked against expiry together, once.
    ///
    /// A batch stops short of `max` at the head this subscriber last loaded
    /// (it loads the head again only once it has read up to it, as
    /// `try_recv` does), so it may return fewer messages than are
    /// published; the next call takes the rest. It also stops before the
    /// messages that share a cache line with the next publish, unless they
    /// are all there is: the publisher is still writing that line, and a
    /// reader that read it now would pull it away from the publisher once
    /// per batch. When it returns `Ok`, it took at least one (for
    /// `max > 0`).
    ///
    /// Errors as `try_recv` does, and then appends nothing: `Empty` or
    /// `Closed` when no message is waiting, and `Expired { missed,
    /// resume_seq }` when the next message was overwritten (the cursor has
    /// moved to `resume_seq`; the next call continues from there). With
    /// `max == 0` it returns `Ok(0)` and looks at nothing.
    ///
    /// ```
    /// use ringcast_core::TryRecvError;
    ///
    /// let (mut publisher, mut subscriber) = ringcast_core::channel::<u64>(8);
    /// for i in 0..5 {
    ///     publisher.publish(i);
    /// }
    /// let mut batch = Vec::new();
    /// // Batches of 1 to 3 (where they stop depends on the cache lines).
    /// while let Ok(n) = subscriber.try_recv_many(&mut batch, 3) {
    ///     assert!((1..=3).contains(&n));
    /// }
    /// assert_eq!(batch, [0, 1, 2, 3, 4]);
    /// assert_eq!(subscriber.try_recv_many(&mut batch, 3), Err(TryRecvError::Empty));
    /// ```
    #[inline]
    pub fn try_recv_many(&mut self, out: &mut Vec<T>, max: usize) -> Result<usize, TryRecvError> {
        self.shared.try_recv_many(&mut self.pos, out, max)
    }

    /// Waits for the next message: spins briefly, then parks the thread.
    pub fn recv(&mut self) -> Result<T, RecvError> {
        recv::without_timeout(self.recv_deadline(None))
    }

    /// Like [`recv`](Self::recv), giving up after `timeout`.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_deadline(Some(Instant::now() + timeout))
    }

    fn recv_deadline(&mut self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let Self { pos, shared } = self;
        let shared = &**shared;
        recv::recv_blocking(&shared.state, || shared.try_recv(pos), deadline)
    }

    /// Waits for the next message asynchronously. The future works with any
    /// executor; dropping it before it completes loses nothing (the cursor
    /// only moves when a message or an expiry is returned).
    pub fn recv_async(&mut self) -> Recv<'_, impl FnMut() -> Result<T, TryRecvError> + Unpin + '_> {
        let Self { pos, shared } = self;
        let shared = &**shared;
        Recv::new(&shared.state, move || shared.try_recv(pos))
    }

    /// Sequence number of the next message this subscriber will read.
    pub fn cursor(&self) -> u64 {
        self.pos.cursor
    }

    /// How many published messages this subscriber has not read yet
    /// (more than the capacity means some are already lost). Stale once
    /// returned: it grows with every publish.
    pub fn lag(&self) -> u64 {
        self.shared.state.head().saturating_sub(self.pos.cursor)
    }

    /// A handle on the same ring.
    pub fn handle(&self) -> RingHandle<T> {
        RingHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T: NoUninit> Clone for Subscriber<T> {
    fn clone(&self) -> Self {
        Self {
            pos: self.pos,
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T: NoUninit> std::fmt::Debug for Subscriber<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("cursor", &self.pos.cursor)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::line_ahead;

    /// Over one lap, every cache line in which some slot starts asks for
    /// exactly one line, `ahead` slots on from the first slot starting in
    /// it, wrapping inside the ring.
    #[test]
    fn each_line_takes_one_line_ahead() {
        for bytes in [8, 16, 24, 40, 64, 72, 200] {
            for base in [0, 8, 16, 40, 56] {
                for slots in [1, 2, 3, 7, 64, 79, 1279] {
                    for ahead in [1, slots / 2, slots].into_iter().filter(|&a| a >= 1) {
                        let mut asked = std::collections::BTreeMap::new();
                        for slot in 0..slots {
                            let line = (base + slot * bytes) / 64;
                            if let Some(at) = line_ahead(base, bytes, slot, ahead, slots) {
                                assert_eq!(at, (slot + ahead) % slots);
                                assert!(
                                    asked.insert(line, slot).is_none(),
                                    "line {line} asked twice"
                                );
                            }
                        }
                        for slot in 0..slots {
                            let line = (base + slot * bytes) / 64;
                            let first = asked.get(&line).copied();
                            assert!(
                                first.is_some_and(|f| f <= slot),
                                "line {line} of slot {slot} never asked first"
                            );
                        }
                    }
                }
            }
        }
    }
}
