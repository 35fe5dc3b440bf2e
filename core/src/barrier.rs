//! An asymmetric Dekker barrier: cheap on the publisher's hot path, heavy
//! on the rare side that is about to sleep.
//!
//! The waking protocol (module `wait`) is a store-buffering pattern: the
//! publisher stores `head` then loads `waiting`; a sleeper stores `waiting`
//! then loads `head`. Each side needs a full barrier between its store and
//! its load, or both loads can miss both stores and the sleeper is never
//! woken. A `fence(SeqCst)` on every publish costs more than the rest of the
//! publish together, so on Linux the barrier is split:
//!
//! * [`light`] (publisher, every publish): a compiler fence only;
//! * [`heavy`] (sleeper, once before it sleeps): the `membarrier` system
//!   call with `MEMBARRIER_CMD_PRIVATE_EXPEDITED`, which makes every thread
//!   of this process that is running execute a full memory barrier before
//!   it returns. A publisher's store and load are therefore either both
//!   before that barrier (its store is visible to the sleeper's load after
//!   the call) or its load is after it (it sees the sleeper's store, which
//!   the call ordered before the barrier).
//!
//! Where `membarrier` is unavailable (another OS, an old kernel, a sandbox
//! that forbids it) and under loom, both sides use `fence(SeqCst)`: correct
//! and slower. The choice is made once per process, at the first ring's
//! creation, before any publisher or sleeper can depend on it.

use crate::sync::{fence, Ordering};

#[cfg(all(target_os = "linux", not(ringcast_loom)))]
mod imp {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::OnceLock;

    const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

    /// Set once, by `init`, before any ring exists; read on every publish.
    static ASYMMETRIC: AtomicBool = AtomicBool::new(false);
    static INIT: OnceLock<()> = OnceLock::new();

    fn membarrier(cmd: libc::c_long) -> bool {
        // SAFETY: `membarrier(cmd, flags = 0, cpu_id = 0)` takes no pointers
        // and only affects memory ordering; an unsupported command fails
        // with an error code and no effect.
        unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                cmd,
                0 as libc::c_long,
                0 as libc::c_long,
            ) == 0
        }
    }

    pub(super) fn init() {
        INIT.get_or_init(|| {
            let ok = membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED);
            // Relaxed: `OnceLock` publishes it to every thread that passes
            // through `init`, and every ring's creation does, before the ring
            // is shared with any other thread.
            ASYMMETRIC.store(ok, Ordering::Relaxed);
        });
    }

    #[inline]
    pub(super) fn asymmetric() -> bool {
        // Relaxed: written once before any ring exists (see `init`).
        ASYMMETRIC.load(Ordering::Relaxed)
    }

    pub(super) fn heavy() -> bool {
        membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)
    }
}

#[cfg(not(all(target_os = "linux", not(ringcast_loom))))]
mod imp {
    pub(super) fn init() {}

    #[inline]
    pub(super) fn asymmetric() -> bool {
        false
    }

    pub(super) fn heavy() -> bool {
        false
    }
}

/// Chooses the barrier for this process. Called by every ring's creation.
pub(crate) fn init() {
    imp::init();
}

/// Whether the publisher's side, [`light`], is a compiler fence only.
/// Fixed once [`init`] has returned.
#[inline]
pub(crate) fn light_is_free() -> bool {
    imp::asymmetric()
}

/// The publisher's side, between its `head` store and its `waiting` load.
#[inline]
pub(crate) fn light() {
    if imp::asymmetric() {
        // The heavy side's membarrier does the hardware part; only the
        // compiler must keep the store before the load.
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
    } else {
        fence(Ordering::SeqCst);
    }
}

/// The sleeper's side, between its `waiting` store and its `head` load.
pub(crate) fn heavy() {
    if !(imp::asymmetric() && imp::heavy()) {
        // Without the asymmetric barrier, both sides fence.
        fence(Ordering::SeqCst);
    }
}
