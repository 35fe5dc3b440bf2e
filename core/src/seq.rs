//! Sequence-number arithmetic, in small named helpers.
//!
//! Every position in a ring is a `u64` sequence number. `head` is the number
//! the next publish takes; the ring holds the `capacity` numbers below it (or
//! fewer, during the first lap, or when the ring was started at a non-zero
//! number). An inline `head - capacity` underflows during the first lap, so
//! nobody writes it: they call [`oldest_held`].

/// The oldest sequence number a ring with this `head` can still hold.
///
/// `start` is the number the ring's first publish took (0 except in tests),
/// so nothing below it was ever held.
#[inline]
pub(crate) fn oldest_held(head: u64, capacity: u64, start: u64) -> u64 {
    debug_assert!(head >= start, "head {head} below start {start}");
    debug_assert!(capacity.is_power_of_two());
    head.saturating_sub(capacity).max(start)
}

/// Where a cursor stands relative to the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    /// `oldest_held <= cursor < head`: the slot may be read (it can still be
    /// overwritten while it is being read; the slot's stamp tells).
    Readable,
    /// `cursor == head`: nothing to read yet.
    Waiting,
    /// `cursor < oldest_held`: overwritten; resume at `oldest`.
    Expired {
        /// The oldest number still held, where the cursor resumes.
        oldest: u64,
    },
}

/// Classifies `cursor` against `head`.
///
/// A cursor can be above a `head` loaded a moment ago: a reader takes a
/// message as soon as its slot is complete, which is just before the
/// publisher advances `head` past it. Such a cursor is waiting, like one at
/// the head.
#[inline]
pub(crate) fn position(cursor: u64, head: u64, capacity: u64, start: u64) -> Position {
    if cursor >= head {
        return Position::Waiting;
    }
    let oldest = oldest_held(head, capacity, start);
    if cursor < oldest {
        Position::Expired { oldest }
    } else {
        Position::Readable
    }
}

/// The stamp a slot carries once it holds message `seq` completely.
///
/// Stamps are `seq + 1`, so that [`WRITING`] (0) is never a complete stamp:
/// a slot reads as 0 both before its first write and while a write is under
/// way, and a reader looking for `seq` treats either as "not `seq`".
/// `seq + 1` cannot overflow: publishing refuses to take `u64::MAX`.
#[inline]
pub(crate) fn stamp_of(seq: u64) -> u64 {
    debug_assert!(seq < u64::MAX);
    seq + 1
}

/// The stamp of a slot being written (or never written).
pub(crate) const WRITING: u64 = 0;

/// Rounds a requested capacity up to a power of two (at least 1).
pub(crate) fn round_capacity(requested: usize) -> usize {
    requested.max(1).next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_held_first_lap_and_after() {
        assert_eq!(oldest_held(0, 4, 0), 0);
        assert_eq!(oldest_held(3, 4, 0), 0);
        assert_eq!(oldest_held(4, 4, 0), 0);
        assert_eq!(oldest_held(5, 4, 0), 1);
        assert_eq!(oldest_held(u64::MAX, 4, 0), u64::MAX - 4);
        assert_eq!(oldest_held(12, 4, 10), 10);
        assert_eq!(oldest_held(15, 4, 10), 11);
    }

    #[test]
    fn position_edges() {
        // Exactly `capacity` behind is still readable; one more is expired.
        assert_eq!(position(0, 4, 4, 0), Position::Readable);
        assert_eq!(position(0, 5, 4, 0), Position::Expired { oldest: 1 });
        assert_eq!(position(5, 5, 4, 0), Position::Waiting);
        // Ahead of a head loaded just before the publisher advanced it.
        assert_eq!(position(6, 5, 4, 0), Position::Waiting);
        assert_eq!(
            position(u64::MAX - 5, u64::MAX - 1, 4, 0),
            Position::Readable
        );
        assert_eq!(
            position(u64::MAX - 6, u64::MAX - 1, 4, 0),
            Position::Expired {
                oldest: u64::MAX - 5
            }
        );
    }

    #[test]
    fn capacity_rounding() {
        assert_eq!(round_capacity(0), 1);
        assert_eq!(round_capacity(1), 1);
        assert_eq!(round_capacity(3), 4);
        assert_eq!(round_capacity(4096), 4096);
        assert_eq!(round_capacity(4097), 8192);
    }
}
