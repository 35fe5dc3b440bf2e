//! Seqlock slots: the one piece of shared-memory machinery both rings use.
//!
//! A [`Slots`] is a flat array of `AtomicU64` words cut into `len` slots of
//! `stride` words each. Word 0 of a slot is its *stamp*; the other words are
//! data. Stamp encoding (see [`crate::seq::stamp_of`]):
//!
//! * `WRITING` (0): never written, or a write is under way;
//! * `seq + 1`: the slot holds message `seq` completely.
//!
//! Only the single publisher writes; any number of readers read. Data words
//! are read with relaxed atomic loads, never with a plain or volatile read, so
//! a read racing a write is not undefined behaviour: it returns some mix of
//! old and new words, which the stamp check then rejects. Callers must treat
//! what they read as unvalidated until [`Slots::validate`] says otherwise.
//!
//! Write protocol (publisher):
//! 1. [`begin_write`](Slots::begin_write): stamp := `WRITING` (Relaxed),
//!    then `fence(Release)`;
//! 2. data words (Relaxed) via [`store`](Slots::store);
//! 3. [`end_write`](Slots::end_write): stamp := `seq + 1` (Release).
//!
//! Read protocol (any reader looking for message `seq`):
//! 1. [`stamp`](Slots::stamp) (Acquire) must equal `seq + 1`;
//! 2. data words (Relaxed) via [`load`](Slots::load);
//! 3. [`validate`](Slots::validate): `fence(Acquire)`, stamp (Relaxed) must
//!    still equal `seq + 1`.
//!
//! Why it works: if step 2 saw any word stored by a later write, that store
//! follows the later write's `fence(Release)`, so the reader's
//! `fence(Acquire)` synchronizes with it and step 3 sees the later write's
//! `WRITING` stamp (or a later stamp, which is never `seq + 1` again: stamps
//! only grow). If step 1 saw `seq + 1` (Acquire, pairing with the Release of
//! step 3 of that write), step 2 sees at least that write's data.

use crate::seq::{stamp_of, WRITING};
use crate::sync::{fence, AtomicU64, Ordering};

/// A flat array of seqlock slots.
pub(crate) struct Slots {
    /// `len * stride` words; word `i * stride` is slot `i`'s stamp.
    words: Box<[AtomicU64]>,
    /// Words per slot, stamp included (>= 1).
    stride: usize,
}

impl Slots {
    /// `len` slots of `data_words` data words each, all stamped `WRITING`.
    pub(crate) fn new(len: usize, data_words: usize) -> Self {
        let stride = data_words + 1;
        let total = len.checked_mul(stride).expect("ring size overflows usize");
        let words = (0..total).map(|_| AtomicU64::new(WRITING)).collect();
        Self { words, stride }
    }

    #[inline]
    fn base(&self, slot: usize) -> usize {
        debug_assert!((slot + 1) * self.stride <= self.words.len());
        slot * self.stride
    }

    /// Publisher step 1: mark `slot` as being written.
    #[inline]
    pub(crate) fn begin_write(&self, slot: usize) {
        // Relaxed: ordering comes from the fence below.
        self.words[self.base(slot)].store(WRITING, Ordering::Relaxed);
        // Release fence: every data store after this point is ordered after
        // the WRITING stamp for any reader whose Acquire fence sees one of them.
        fence(Ordering::Release);
    }

    /// Publisher step 2: store data word `i` of `slot`.
    #[inline]
    pub(crate) fn store(&self, slot: usize, i: usize, value: u64) {
        debug_assert!(i + 1 < self.stride);
        // Relaxed: published by the Release stamp store of `end_write`.
        self.words[self.base(slot) + 1 + i].store(value, Ordering::Relaxed);
    }

    /// Publisher step 3: `slot` now holds message `seq` completely.
    #[inline]
    pub(crate) fn end_write(&self, slot: usize, seq: u64) {
        // Release: a reader that Acquire-loads this stamp sees the data above.
        self.words[self.base(slot)].store(stamp_of(seq), Ordering::Release);
    }

    /// Reader step 1: the stamp of `slot`.
    #[inline]
    pub(crate) fn stamp(&self, slot: usize) -> u64 {
        // Acquire: pairs with the Release in `end_write`.
        self.words[self.base(slot)].load(Ordering::Acquire)
    }

    /// Reader step 2: data word `i` of `slot`, possibly torn.
    #[inline]
    pub(crate) fn load(&self, slot: usize, i: usize) -> u64 {
        debug_assert!(i + 1 < self.stride);
        // Relaxed: validated afterwards by `validate`.
        self.words[self.base(slot) + 1 + i].load(Ordering::Relaxed)
    }

    /// Reader step 3: whether the words loaded since [`stamp`](Self::stamp)
    /// returned `stamp_of(seq)` all belong to message `seq`.
    #[inline]
    pub(crate) fn validate(&self, slot: usize, seq: u64) -> bool {
        // Acquire fence: synchronizes with the Release fence of any later
        // `begin_write` whose data stores the loads above may have seen.
        fence(Ordering::Acquire);
        // Relaxed: ordered by the fence above.
        self.words[self.base(slot)].load(Ordering::Relaxed) == stamp_of(seq)
    }
}

impl std::fmt::Debug for Slots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slots")
            .field("slots", &(self.words.len() / self.stride))
            .field("stride", &self.stride)
            .finish()
    }
}
