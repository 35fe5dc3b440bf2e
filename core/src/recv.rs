//! Receiving, generic over the two rings: the cursor rule, blocking and
//! async waiting. Each ring supplies one [`Source`]: how to copy out the
//! message at a sequence number and where to resume when it was overwritten.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::error::{RecvError, RecvTimeoutError, TryRecvError};
use crate::seq::Position;
use crate::wait::{Backoff, RingState};

/// A ring seen from a reader.
pub(crate) trait Source {
    /// Caller-provided space a message is copied into (or `()`).
    type Buf: ?Sized;
    /// What a successful read returns.
    type Out;

    /// The head, closed flag and waiters.
    fn state(&self) -> &RingState;

    /// Copies message `seq` out (into `buf` or as the result). `seq` is
    /// readable by the cursor rule; returns `None` if the message was
    /// overwritten before or while it was copied (then `buf` holds garbage
    /// the caller must not use).
    fn read(&self, seq: u64, buf: &mut Self::Buf) -> Option<Self::Out>;

    /// Where a cursor resumes after finding message `seq` overwritten: the
    /// oldest message still intact, always `> seq`.
    fn resume_after(&self, seq: u64) -> u64 {
        let oldest = self.state().oldest_held();
        oldest.max(seq + 1)
    }
}

/// One receive attempt at `*cursor`: the cursor rule of the crate docs.
///
/// Fast path first: if the slot already holds message `cursor` completely
/// (its stamp says so, and the copy validates), it is taken without looking
/// at `head`, which the publisher rewrites on every publish (one cache miss
/// saved per message). The cursor may then run ahead of a `head` loaded a
/// moment earlier; [`Position`] treats that as "waiting".
#[inline]
pub(crate) fn try_recv<S: Source>(
    src: &S,
    cursor: &mut u64,
    buf: &mut S::Buf,
) -> Result<S::Out, TryRecvError> {
    let seq = *cursor;
    // `u64::MAX` is never published (the sequence space ends below it), so
    // a cursor there has no slot to look at.
    if seq != u64::MAX {
        if let Some(out) = src.read(seq, buf) {
            *cursor = seq + 1;
            return Ok(out);
        }
    }
    let (position, _head, closed) = src.state().position(seq);
    match position {
        Position::Waiting if closed => Err(TryRecvError::Closed),
        Position::Waiting => Err(TryRecvError::Empty),
        // Not `oldest`: that is where the *index* starts, and in the byte
        // ring the bytes of the messages there may be reused already.
        // `resume_after` lands on the oldest message that is intact, so one
        // expiry is reported, not two in a row.
        Position::Expired { oldest } => {
            let resume = src.resume_after(seq);
            debug_assert!(resume >= oldest, "head went backwards");
            Err(expire(cursor, resume))
        }
        Position::Readable => {
            if let Some(out) = src.read(seq, buf) {
                *cursor = seq + 1;
                Ok(out)
            } else {
                let resume = src.resume_after(seq);
                Err(expire(cursor, resume))
            }
        }
    }
}

/// Moves the cursor forward to `resume` and says so.
#[inline]
fn expire(cursor: &mut u64, resume: u64) -> TryRecvError {
    debug_assert!(resume > *cursor);
    let missed = resume - *cursor;
    *cursor = resume;
    TryRecvError::Expired {
        missed,
        resume_seq: resume,
    }
}

/// Blocks until `attempt` returns something other than `Empty`, or until
/// `deadline`. Spins briefly, then parks.
pub(crate) fn recv_blocking<O>(
    state: &RingState,
    mut attempt: impl FnMut() -> Result<O, TryRecvError>,
    deadline: Option<Instant>,
) -> Result<O, RecvTimeoutError> {
    let mut backoff = Backoff::new();
    loop {
        // Loaded before the attempt: if the attempt finds nothing, the
        // cursor is at or above `head`, so a head different from it means
        // there may be something new.
        let head = state.head();
        match attempt() {
            Ok(value) => return Ok(value),
            Err(TryRecvError::Expired { missed, resume_seq }) => {
                return Err(RecvTimeoutError::Expired { missed, resume_seq })
            }
            Err(TryRecvError::Closed) => return Err(RecvTimeoutError::Closed),
            Err(TryRecvError::Empty) => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(RecvTimeoutError::Timeout);
        }
        if !backoff.snooze() {
            state.park(|| state.head() != head || state.is_closed(), deadline);
        }
    }
}

/// Converts a blocking result without a deadline.
pub(crate) fn without_timeout<O>(r: Result<O, RecvTimeoutError>) -> Result<O, RecvError> {
    r.map_err(|e| match e {
        RecvTimeoutError::Expired { missed, resume_seq } => {
            RecvError::Expired { missed, resume_seq }
        }
        RecvTimeoutError::Closed => RecvError::Closed,
        RecvTimeoutError::Timeout => unreachable!("no deadline was set"),
    })
}

/// The future of an async receive: polls `attempt`, and between attempts
/// keeps a waker registered with the ring. Runtime-agnostic.
#[must_use = "futures do nothing unless polled"]
pub struct Recv<'a, F> {
    state: &'a RingState,
    attempt: F,
    /// Registration id of our waker in `state`, once registered.
    id: Option<u64>,
}

impl<'a, F> Recv<'a, F> {
    pub(crate) fn new(state: &'a RingState, attempt: F) -> Self {
        Self {
            state,
            attempt,
            id: None,
        }
    }
}

impl<F, O> Future for Recv<'_, F>
where
    F: FnMut() -> Result<O, TryRecvError> + Unpin,
{
    type Output = Result<O, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            let head = this.state.head();
            match (this.attempt)() {
                Ok(value) => return Poll::Ready(Ok(value)),
                Err(TryRecvError::Expired { missed, resume_seq }) => {
                    return Poll::Ready(Err(RecvError::Expired { missed, resume_seq }))
                }
                Err(TryRecvError::Closed) => return Poll::Ready(Err(RecvError::Closed)),
                Err(TryRecvError::Empty) => {}
            }
            let state = this.state;
            let ready = state.register(&mut this.id, cx.waker(), || {
                state.head() != head || state.is_closed()
            });
            if !ready {
                return Poll::Pending;
            }
        }
    }
}

impl<F> Drop for Recv<'_, F> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.state.unregister(id);
        }
    }
}

impl<F> std::fmt::Debug for Recv<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recv")
            .field("registered", &self.id.is_some())
            .finish()
    }
}
