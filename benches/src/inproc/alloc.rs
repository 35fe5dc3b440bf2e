//! A counting global allocator for the memory measurements.
//!
//! Counting is off except inside [`measure`], so the timed runs pay one
//! relaxed load of a flag that nobody writes per allocation, not a contended
//! counter update.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// The system allocator, counting live bytes while enabled.
pub struct Counting;

/// Whether allocations are being counted. Relaxed everywhere: the memory
/// measurements run in one thread, and a stray count from another thread
/// would only add a few bytes.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// Bytes allocated minus bytes freed while enabled.
static LIVE: AtomicI64 = AtomicI64::new(0);

#[inline]
fn count(delta: i64) {
    if ENABLED.load(Ordering::Relaxed) {
        LIVE.fetch_add(delta, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `Counting` upholds exactly the guarantees `System` does; the
// counting only touches atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as i64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `alloc_zeroed`'s contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is; the caller upholds `dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) };
        count(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as is; the caller upholds `realloc`'s contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

/// Runs `f` with counting enabled from zero, then disables it. Inside `f`,
/// [`live_since_enabled`] tells the heap bytes allocated and not yet freed.
pub fn measure<R>(f: impl FnOnce() -> R) -> R {
    LIVE.store(0, Ordering::Relaxed);
    ENABLED.store(true, Ordering::Relaxed);
    let r = f();
    ENABLED.store(false, Ordering::Relaxed);
    r
}

/// Heap bytes allocated and not freed since [`measure`] began.
pub fn live_since_enabled() -> i64 {
    LIVE.load(Ordering::Relaxed)
}
