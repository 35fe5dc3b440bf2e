//! The one synchronization facade of the crate.
//!
//! Everything that the ring shares between threads goes through these names,
//! so that `--cfg ringcast_loom` swaps in loom's model-checked versions in one
//! place. The cfg is namespaced (not a bare `cfg(loom)`) because RUSTFLAGS
//! reach every crate of a build, tokio included.

#[cfg(ringcast_loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(ringcast_loom)]
pub(crate) use loom::sync::Arc;

#[cfg(not(ringcast_loom))]
pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
#[cfg(not(ringcast_loom))]
pub(crate) use std::sync::Arc;

/// A mutex whose `lock` never reports poisoning (parking_lot's shape).
#[derive(Debug, Default)]
pub(crate) struct Mutex<T>(
    #[cfg(not(ringcast_loom))] parking_lot::Mutex<T>,
    #[cfg(ringcast_loom)] loom::sync::Mutex<T>,
);

/// The guard of [`Mutex`].
#[cfg(not(ringcast_loom))]
pub(crate) type MutexGuard<'a, T> = parking_lot::MutexGuard<'a, T>;
/// The guard of [`Mutex`].
#[cfg(ringcast_loom)]
pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    pub(crate) fn new(value: T) -> Self {
        #[cfg(not(ringcast_loom))]
        return Self(parking_lot::Mutex::new(value));
        #[cfg(ringcast_loom)]
        return Self(loom::sync::Mutex::new(value));
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        #[cfg(not(ringcast_loom))]
        return self.0.lock();
        // A panic while holding this lock leaves the guarded data (a list
        // of wakers) consistent, so a poisoned lock is still usable.
        #[cfg(ringcast_loom)]
        return self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
}

/// A condition variable paired with [`Mutex`].
#[derive(Debug, Default)]
pub(crate) struct Condvar(
    #[cfg(not(ringcast_loom))] parking_lot::Condvar,
    #[cfg(ringcast_loom)] loom::sync::Condvar,
);

impl Condvar {
    pub(crate) fn new() -> Self {
        #[cfg(not(ringcast_loom))]
        return Self(parking_lot::Condvar::new());
        #[cfg(ringcast_loom)]
        return Self(loom::sync::Condvar::new());
    }

    /// Blocks until notified (spurious wake-ups are possible) or until
    /// `deadline`, if any.
    pub(crate) fn wait<'a, T>(
        &self,
        guard: MutexGuard<'a, T>,
        deadline: Option<std::time::Instant>,
    ) -> MutexGuard<'a, T> {
        #[cfg(not(ringcast_loom))]
        {
            let mut guard = guard;
            match deadline {
                Some(deadline) => {
                    self.0.wait_until(&mut guard, deadline);
                }
                None => self.0.wait(&mut guard),
            }
            guard
        }
        #[cfg(ringcast_loom)]
        {
            // loom has no clock; a deadline is modelled as "may return early".
            let _ = deadline;
            self.0
                .wait(guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
        }
    }

    pub(crate) fn notify_all(&self) {
        self.0.notify_all();
    }
}
