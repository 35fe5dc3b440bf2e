//! Error types, one per operation, each saying what happens next.

/// Why [`try_recv`](crate::Subscriber::try_recv) returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// Nothing new yet; the cursor stays where it is. Try again later.
    #[error("no new message yet")]
    Empty,
    /// The messages at the cursor were overwritten before they were read.
    /// The cursor has moved to `resume_seq`; the next receive continues
    /// from there, gap-free.
    #[error("cursor expired: {missed} messages missed, resuming at {resume_seq}")]
    Expired {
        /// How many messages were skipped: `resume_seq - old cursor`.
        missed: u64,
        /// Where the cursor now stands: the oldest message still held when
        /// the expiry was detected.
        resume_seq: u64,
    },
    /// The publisher is gone and every message it published from the
    /// cursor on has been read (or reported missed). Nothing more will come.
    #[error("publisher closed and every held message read")]
    Closed,
}

/// Why a blocking or async receive returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// See [`TryRecvError::Expired`]: the cursor moved to `resume_seq`.
    #[error("cursor expired: {missed} messages missed, resuming at {resume_seq}")]
    Expired {
        /// How many messages were skipped.
        missed: u64,
        /// Where the cursor now stands.
        resume_seq: u64,
    },
    /// See [`TryRecvError::Closed`].
    #[error("publisher closed and every held message read")]
    Closed,
}

/// Why [`recv_timeout`](crate::Subscriber::recv_timeout) returned no message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvTimeoutError {
    /// Nothing arrived before the timeout; the cursor stays where it is.
    #[error("timed out waiting for a message")]
    Timeout,
    /// See [`TryRecvError::Expired`]: the cursor moved to `resume_seq`.
    #[error("cursor expired: {missed} messages missed, resuming at {resume_seq}")]
    Expired {
        /// How many messages were skipped.
        missed: u64,
        /// Where the cursor now stands.
        resume_seq: u64,
    },
    /// See [`TryRecvError::Closed`].
    #[error("publisher closed and every held message read")]
    Closed,
}

/// Why [`subscribe_at`](crate::Publisher::subscribe_at) refused a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// That message is no longer held; `oldest_held` is the oldest that is.
    #[error("sequence {seq} is expired; the oldest held is {oldest_held}")]
    Expired {
        /// The requested position.
        seq: u64,
        /// The oldest message held when the request was checked.
        oldest_held: u64,
    },
    /// That message has not been published yet; `head` is the next one.
    #[error("sequence {seq} is in the future; the next to be published is {head}")]
    Future {
        /// The requested position.
        seq: u64,
        /// The head when the request was checked.
        head: u64,
    },
}

/// A byte payload longer than the ring's maximum message size. The payload is
/// handed back untouched; nothing was published.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("message of {len} bytes exceeds the maximum message size of {max} bytes")]
pub struct TooLarge<P> {
    /// The payload's length.
    pub len: usize,
    /// The ring's maximum message size.
    pub max: usize,
    /// The payload, handed back.
    pub payload: P,
}

impl<P> std::fmt::Debug for TooLarge<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TooLarge")
            .field("len", &self.len)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

impl From<TryRecvError> for Option<RecvError> {
    fn from(e: TryRecvError) -> Self {
        match e {
            TryRecvError::Empty => None,
            TryRecvError::Expired { missed, resume_seq } => {
                Some(RecvError::Expired { missed, resume_seq })
            }
            TryRecvError::Closed => Some(RecvError::Closed),
        }
    }
}

impl From<RecvError> for RecvTimeoutError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Expired { missed, resume_seq } => Self::Expired { missed, resume_seq },
            RecvError::Closed => Self::Closed,
        }
    }
}
