//! The typed ring: fixed-size `T` values, one seqlock slot each.

use std::marker::PhantomData;
use std::mem::{size_of, MaybeUninit};
use std::time::{Duration, Instant};

use bytemuck::NoUninit;

use crate::error::{RecvError, RecvTimeoutError, SubscribeError, TryRecvError};
use crate::recv::{self, Recv, Source};
use crate::seq::{self, round_capacity};
use crate::slot::Slots;
use crate::sync::Arc;
use crate::wait::RingState;

/// Data words a `T` occupies in a slot: `ceil(size_of::<T>() / 8)`.
/// A constant per `T`, so the copy loops below unroll.
const fn words<T>() -> usize {
    size_of::<T>().div_ceil(8)
}

/// What publisher and subscribers share.
struct Shared<T> {
    state: RingState,
    /// `capacity` slots of `words::<T>()` data words; message `seq` lives in
    /// slot `seq & mask`.
    slots: Slots,
    /// `capacity - 1`.
    mask: u64,
    /// Values of `T` cross threads by copy; the ring never holds a `&T`.
    _values: PhantomData<fn(T) -> T>,
}

impl<T: NoUninit> Shared<T> {
    #[inline]
    fn slot(&self, seq: u64) -> usize {
        // The mask keeps the result below `capacity`, which fits a usize.
        (seq & self.mask) as usize
    }
}

impl<T: NoUninit> Source for Shared<T> {
    type Buf = ();
    type Out = T;

    fn state(&self) -> &RingState {
        &self.state
    }

    #[inline]
    fn read(&self, seq: u64, _: &mut ()) -> Option<T> {
        let slot = self.slot(seq);
        if self.slots.stamp(slot) != seq::stamp_of(seq) {
            return None;
        }
        let mut value = MaybeUninit::<T>::uninit();
        let dst = value.as_mut_ptr().cast::<u8>();
        let size = size_of::<T>();
        for i in 0..words::<T>() {
            let word = self.slots.load(slot, i).to_ne_bytes();
            let n = (size - i * 8).min(8);
            // SAFETY: `i * 8 + n <= size`, so the copy stays inside `value`,
            // and `word` is a local array that cannot overlap it.
            unsafe { std::ptr::copy_nonoverlapping(word.as_ptr(), dst.add(i * 8), n) };
        }
        if !self.slots.validate(slot, seq) {
            return None;
        }
        // SAFETY:
        // - `validate` proved that every word loaded above is the word the
        //   publisher stored for message `seq` (module `slot`, read protocol);
        // - those words were the bytes of a valid `T`, all initialized
        //   because `T: NoUninit` (no padding);
        // therefore `value` now holds that valid `T`.
        Some(unsafe { value.assume_init() })
    }
}

/// Creates a typed ring of `capacity` slots (rounded up to a power of two,
/// at least 1) and returns its publisher and a first subscriber at the head.
///
/// Memory: `capacity * (8 + 8 * ceil(size_of::<T>() / 8))` bytes, allocated
/// here once; publishing never allocates.
///
/// `T: NoUninit` (from `bytemuck`: `Copy`, no padding bytes) is what lets the
/// ring copy values word by word with atomic operations, soundly, even while
/// a read races a write. Derive it with `#[derive(bytemuck::NoUninit)]` on a
/// `#[repr(C)]` struct without padding.
pub fn channel<T: NoUninit + Send>(capacity: usize) -> (Publisher<T>, Subscriber<T>) {
    with_start(capacity, 0)
}

/// Like [`channel`], with the first publish taking sequence number `start`
/// instead of 0: for tests of positions near the top of the `u64` range.
#[cfg(feature = "test-util")]
pub fn channel_starting_at<T: NoUninit + Send>(
    capacity: usize,
    start: u64,
) -> (Publisher<T>, Subscriber<T>) {
    with_start(capacity, start)
}

fn with_start<T: NoUninit + Send>(capacity: usize, start: u64) -> (Publisher<T>, Subscriber<T>) {
    let capacity = round_capacity(capacity);
    let shared = Arc::new(Shared {
        state: RingState::new(capacity as u64, start),
        slots: Slots::new(capacity, words::<T>()),
        mask: capacity as u64 - 1,
        _values: PhantomData,
    });
    let handle = RingHandle { shared };
    let subscriber = handle.subscribe();
    let publisher = Publisher {
        head: start,
        handle,
    };
    (publisher, subscriber)
}

/// The single writer of a typed ring. Dropping it closes the ring:
/// subscribers read what is held, then get `Closed`.
pub struct Publisher<T: NoUninit> {
    /// Sequence number of the next publish; mirrors `state.head`, which only
    /// this publisher writes.
    head: u64,
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
        assert!(seq < u64::MAX, "sequence numbers exhausted");
        let shared = &*self.handle.shared;
        let slot = shared.slot(seq);
        shared.slots.begin_write(slot);
        let bytes = bytemuck::bytes_of(&value);
        for i in 0..words::<T>() {
            let chunk = &bytes[i * 8..bytes.len().min(i * 8 + 8)];
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            shared.slots.store(slot, i, u64::from_ne_bytes(word));
        }
        shared.slots.end_write(slot, seq);
        self.head = seq + 1;
        shared.state.advance(self.head);
        seq
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
        seq::oldest_held(
            self.head,
            self.handle.shared.state.capacity,
            self.handle.shared.state.start,
        )
    }

    /// The number of slots (a power of two).
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
            .field("head", &self.head)
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
        Subscriber {
            cursor: self.shared.state.head(),
            shared: Arc::clone(&self.shared),
        }
    }

    /// A new subscriber whose next message is `seq`, if `seq` is held or is
    /// the head. The check is made now: a position held now may expire
    /// before the first receive, which then reports it.
    pub fn subscribe_at(&self, seq: u64) -> Result<Subscriber<T>, SubscribeError> {
        let state = &self.shared.state;
        check_subscribe_at(state, seq)?;
        Ok(Subscriber {
            cursor: seq,
            shared: Arc::clone(&self.shared),
        })
    }

    /// The sequence number the next publish takes. Stale once returned: it
    /// only grows.
    pub fn head(&self) -> u64 {
        self.shared.state.head()
    }

    /// The oldest sequence number still held. Stale once returned.
    pub fn oldest_held(&self) -> u64 {
        self.shared.state.oldest_held()
    }

    /// The number of slots (a power of two).
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

/// Shared by both rings: `subscribe_at`'s check.
pub(crate) fn check_subscribe_at(state: &RingState, seq: u64) -> Result<(), SubscribeError> {
    let head = state.head();
    if seq > head {
        return Err(SubscribeError::Future { seq, head });
    }
    let oldest = seq::oldest_held(head, state.capacity, state.start);
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
    /// Sequence number of the next message this subscriber reads.
    /// Only grows; never above the head.
    cursor: u64,
    shared: Arc<Shared<T>>,
}

impl<T: NoUninit> Subscriber<T> {
    /// Takes the next message if there is one; never blocks.
    ///
    /// On `Err(Expired { missed, resume_seq })` the cursor has moved to
    /// `resume_seq` and the next call continues from there.
    #[inline]
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        recv::try_recv(&*self.shared, &mut self.cursor, &mut ())
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
        let Self { cursor, shared } = self;
        let shared = &**shared;
        recv::recv_blocking(
            &shared.state,
            || recv::try_recv(shared, cursor, &mut ()),
            deadline,
        )
    }

    /// Waits for the next message asynchronously. The future works with any
    /// executor; dropping it before it completes loses nothing (the cursor
    /// only moves when a message or an expiry is returned).
    pub fn recv_async(&mut self) -> Recv<'_, impl FnMut() -> Result<T, TryRecvError> + Unpin + '_> {
        let Self { cursor, shared } = self;
        let shared = &**shared;
        Recv::new(&shared.state, move || {
            recv::try_recv(shared, cursor, &mut ())
        })
    }

    /// Sequence number of the next message this subscriber will read.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// How many published messages this subscriber has not read yet
    /// (more than the capacity means some are already lost). Stale once
    /// returned: it grows with every publish.
    pub fn lag(&self) -> u64 {
        self.shared.state.head().saturating_sub(self.cursor)
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
            cursor: self.cursor,
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T: NoUninit> std::fmt::Debug for Subscriber<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("cursor", &self.cursor)
            .finish()
    }
}
