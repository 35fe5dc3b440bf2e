//! The state both rings share besides their slots: the head, the closed flag,
//! and the waiting machinery for blocking and async readers.
//!
//! Waking without costing the publisher anything when nobody waits:
//!
//! * a reader about to sleep registers itself (`waiting += 1`), issues the
//!   heavy side of a barrier and checks the head once more before sleeping;
//! * the publisher stores the new head, issues the light side of the barrier
//!   and only if `waiting != 0` takes the lock and wakes everyone.
//!
//! The barrier (module `barrier`) guarantees that either the reader's
//! re-check sees the new head or the publisher sees `waiting != 0`: no lost
//! wake-up. With nobody waiting, a publish takes no lock, makes no system
//! call and, on Linux, issues no hardware fence either.
//!
//! Where the publisher's side of the barrier is a hardware fence (no
//! `membarrier`), `waiting` carries the bit [`FENCE`] besides the count, so
//! that the one load the publisher makes after every publish also tells it
//! to fence: it then fences and looks at the count again.

use std::sync::atomic::compiler_fence;
use std::task::Waker;
use std::time::Instant;

use crossbeam_utils::CachePadded;

use crate::barrier;
use crate::seq::{self, Position};
use crate::sync::{fence, AtomicBool, AtomicU64, AtomicUsize, Condvar, Mutex, Ordering};

/// Set in `waiting` for the ring's life where the publisher's side of the
/// barrier is a hardware fence (module docs); never counted.
const FENCE: usize = 1 << (usize::BITS - 1);

/// Head, closed flag and waiters of one ring.
#[derive(Debug)]
pub(crate) struct RingState {
    /// Sequence number the next publish takes. Written only by the
    /// publisher (Release, after the slot is complete); read by everyone.
    pub(crate) head: CachePadded<AtomicU64>,
    /// Set once by the publisher's drop (Release), after its last head store.
    closed: AtomicBool,
    /// Number of registered sleepers: parked threads plus stored wakers,
    /// plus [`FENCE`] where the publisher must fence. Checked by the
    /// publisher after every publish.
    waiting: CachePadded<AtomicUsize>,
    /// Wakers of pending async receives, keyed by registration id.
    wakers: Mutex<WakerList>,
    /// Parked blocking receivers wait here, with `wakers` as the mutex.
    parked: Condvar,
    /// Slot count, a power of two.
    pub(crate) capacity: u64,
    /// The sequence number the first publish took (0 outside tests).
    pub(crate) start: u64,
}

#[derive(Debug, Default)]
struct WakerList {
    entries: Vec<(u64, Waker)>,
    next_id: u64,
}

impl RingState {
    pub(crate) fn new(capacity: u64, start: u64) -> Self {
        debug_assert!(capacity.is_power_of_two());
        barrier::init();
        let fence_bit = if barrier::light_is_free() { 0 } else { FENCE };
        Self {
            head: CachePadded::new(AtomicU64::new(start)),
            closed: AtomicBool::new(false),
            waiting: CachePadded::new(AtomicUsize::new(fence_bit)),
            wakers: Mutex::new(WakerList::default()),
            parked: Condvar::new(),
            capacity,
            start,
        }
    }

    /// Current head. Stale the moment it returns (it only grows).
    #[inline]
    pub(crate) fn head(&self) -> u64 {
        // Acquire: a reader that sees head `h` sees every slot below `h`
        // completely written (pairs with the Release in `advance`).
        self.head.load(Ordering::Acquire)
    }

    /// Oldest sequence number still held. Stale the moment it returns.
    pub(crate) fn oldest_held(&self) -> u64 {
        seq::oldest_held(self.head(), self.capacity, self.start)
    }

    /// Where `cursor` stands, and whether the publisher is gone.
    ///
    /// `closed` is loaded before `head`: if it reads true, the head loaded
    /// after it is final, so `Waiting` with `closed` means "nothing more,
    /// ever".
    #[inline]
    pub(crate) fn position(&self, cursor: u64) -> (Position, u64, bool) {
        // Acquire: pairs with the Release store in `close`, so the head
        // load below sees the publisher's last head.
        let closed = self.closed.load(Ordering::Acquire);
        let head = self.head();
        (
            seq::position(cursor, head, self.capacity, self.start),
            head,
            closed,
        )
    }

    /// Publishes `new_head` and wakes sleepers, if there are any.
    #[inline]
    pub(crate) fn advance(&self, new_head: u64) {
        // Release: the slot writes before this are visible to whoever
        // Acquire-loads the new head.
        self.head.store(new_head, Ordering::Release);
        // The light side of the barrier where it is free; where it is not,
        // `FENCE` sends the publisher to `fence_and_wake`.
        compiler_fence(Ordering::SeqCst);
        // Relaxed: ordered by the fence above.
        if self.waiting.load(Ordering::Relaxed) != 0 {
            self.fence_and_wake();
        }
    }

    /// After a publish saw `waiting != 0`: the full light side of the
    /// barrier, then a wake-up if anyone is registered.
    #[cold]
    fn fence_and_wake(&self) {
        barrier::light();
        // Relaxed: ordered by the barrier above.
        if self.waiting.load(Ordering::Relaxed) & !FENCE != 0 {
            self.wake_all();
        }
    }

    /// Whether the publisher is gone. Once true, stays true.
    #[inline]
    pub(crate) fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release store in `close`.
        self.closed.load(Ordering::Acquire)
    }

    /// Marks the ring closed (publisher dropped) and wakes everyone.
    pub(crate) fn close(&self) {
        // Release: pairs with the Acquire in `position`.
        self.closed.store(true, Ordering::Release);
        fence(Ordering::SeqCst);
        self.wake_all();
    }

    #[cold]
    fn wake_all(&self) {
        let wakers = {
            let mut list = self.wakers.lock();
            let taken = std::mem::take(&mut list.entries);
            // Relaxed: `waiting` is only a hint for the publisher; the lock
            // orders registrations against this removal.
            self.waiting.fetch_sub(taken.len(), Ordering::Relaxed);
            self.parked.notify_all();
            taken
        };
        for (_, waker) in wakers {
            waker.wake();
        }
    }

    /// Parks the calling thread until `ready()` may have changed, `deadline`
    /// passes, or a spurious wake-up. Callers loop.
    pub(crate) fn park(&self, ready: impl Fn() -> bool, deadline: Option<Instant>) {
        let guard = self.wakers.lock();
        // Relaxed increment, then the heavy side of the barrier orders it
        // before the re-check (module docs).
        self.waiting.fetch_add(1, Ordering::Relaxed);
        barrier::heavy();
        let guard = if ready() {
            guard
        } else {
            self.parked.wait(guard, deadline)
        };
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        drop(guard);
    }

    /// Registers (or refreshes) an async waker under `*id`, then runs
    /// `ready()` once more; returns its answer. The waker stays registered
    /// until the next wake-up or [`unregister`](Self::unregister).
    pub(crate) fn register(
        &self,
        id: &mut Option<u64>,
        waker: &Waker,
        ready: impl Fn() -> bool,
    ) -> bool {
        {
            let mut list = self.wakers.lock();
            let existing = id.and_then(|id| list.entries.iter().position(|(k, _)| *k == id));
            match existing {
                Some(i) => list.entries[i].1.clone_from(waker),
                None => {
                    let new_id = list.next_id;
                    list.next_id += 1;
                    list.entries.push((new_id, waker.clone()));
                    *id = Some(new_id);
                    self.waiting.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        // Heavy side of the barrier: the registration before the re-check.
        barrier::heavy();
        ready()
    }

    /// Removes the waker registered under `id`, if it is still there.
    pub(crate) fn unregister(&self, id: u64) {
        let mut list = self.wakers.lock();
        if let Some(i) = list.entries.iter().position(|(k, _)| *k == id) {
            list.entries.swap_remove(i);
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Spins briefly, then yields, before a receiver parks: a message that is a
/// few hundred nanoseconds away is cheaper to wait for than a futex round trip.
pub(crate) struct Backoff {
    step: u32,
}

impl Backoff {
    const SPIN_LIMIT: u32 = 6;
    const YIELD_LIMIT: u32 = 10;

    pub(crate) fn new() -> Self {
        Self { step: 0 }
    }

    /// Waits a little; returns false once it is time to park instead.
    pub(crate) fn snooze(&mut self) -> bool {
        // Under loom, park at once. Spinning and yielding are only a shortcut
        // past the park; and every loom `yield_now` hands the CPU to the other
        // threads, so within a preemption bound a model would never see a
        // reader park before the publish (or close) that must wake it.
        if cfg!(ringcast_loom) {
            return false;
        }
        if self.step <= Self::SPIN_LIMIT {
            for _ in 0..1u32 << self.step {
                std::hint::spin_loop();
            }
        } else if self.step <= Self::YIELD_LIMIT {
            std::thread::yield_now();
        } else {
            return false;
        }
        self.step += 1;
        true
    }
}
