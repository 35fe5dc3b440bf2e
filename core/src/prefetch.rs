//! Taking a cache line for writing before the publisher stores into it.
//!
//! A reader that keeps up has read every line of the ring once per lap, so
//! when the publisher comes round to a line again, a copy of it sits in the
//! reader's cache, and the publisher's first store to it must wait for that
//! copy to be invalidated: a round trip to the reader's core. The request
//! goes out only once the store has executed, at most a store queue's worth
//! of stores (a few dozen messages) before it must complete, and when the
//! queue is full of stores waiting on such requests, the publisher waits.
//! Where a round trip between cores is long, that wait set the publisher's
//! pace: with a reader at its heels it published about as fast as the
//! reader read.
//!
//! So the publisher asks for each line a fixed distance ahead of the one it
//! writes ([`AHEAD_BYTES`]), with a write prefetch (`prefetchw` on x86-64),
//! and the line is its own by the time it gets there. The prefetch is only
//! a hint: it reads and writes nothing the program can see, never faults,
//! and a reader that reads the line afterwards just pulls it back. Lines
//! that far ahead hold the oldest messages, which only a reader about to
//! expire still reads.
//!
//! Elsewhere (other architectures, CPUs without the instruction, loom) it
//! does nothing.

/// How far ahead of the slot it writes the publisher takes lines for
/// writing: 1 KiB, 128 `u64` messages. Measured with a reader reading as
/// fast as it can, on a machine whose cache-line round trip between cores
/// is either about 50 ns or about 450 ns: in the slow case, taking lines
/// 1 KiB ahead made the publisher about 1.4 to 1.7 times as fast as not
/// taking them, 2 KiB ahead 1.2 to 1.4 times, and 256 or 512 bytes ahead no
/// faster (too near for the request to come back in time). In the fast
/// case, builds that take lines ahead published about a seventh slower
/// than the build that does not; but there, code layout alone moves the
/// figure about as much (a build with the same address arithmetic and no
/// prefetch instruction published a fifth slower than either).
pub(crate) const AHEAD_BYTES: usize = 1024;

pub(crate) use imp::{available, for_write};

#[cfg(all(target_arch = "x86_64", not(ringcast_loom), not(miri)))]
mod imp {
    /// Whether [`for_write`] does anything on this CPU.
    pub(crate) fn available() -> bool {
        // CPUID leaf 0x8000_0001, ECX bit 8: PREFETCHW (AMD: 3DNowPrefetch).
        // Every x86-64 CPU has this leaf: it is where long mode is reported.
        let ecx = std::arch::x86_64::__cpuid(0x8000_0001).ecx;
        ecx & (1 << 8) != 0
    }

    /// Asks for the cache line holding `addr` in a state the CPU can write.
    ///
    /// # Safety
    /// The CPU must have the instruction: only call it where [`available`]
    /// returned true. Any address will do.
    #[inline(always)]
    pub(crate) unsafe fn for_write<T>(addr: *const T) {
        // SAFETY: the caller checked that the CPU has the instruction; a
        // prefetch accesses no memory the program can observe and never
        // faults, whatever the address.
        unsafe {
            std::arch::asm!(
                "prefetchw byte ptr [{0}]",
                in(reg) addr,
                options(nostack, preserves_flags, readonly)
            );
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", not(ringcast_loom), not(miri))))]
mod imp {
    /// Whether [`for_write`] does anything on this CPU: never, here.
    pub(crate) fn available() -> bool {
        false
    }

    /// Does nothing; the signature matches the x86-64 version's.
    ///
    /// # Safety
    /// None needed.
    #[inline(always)]
    pub(crate) unsafe fn for_write<T>(_addr: *const T) {}
}
