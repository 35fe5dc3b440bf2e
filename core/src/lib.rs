//! ringcast-core: a lock-free single-producer, multi-consumer ring with
//! 64-bit cursors and explicit expiry, for in-process fan-out.
//!
//! # The contract
//!
//! A ring keeps the last `capacity` messages one publisher wrote. Messages
//! get sequence numbers 0, 1, 2, … Every [`Subscriber`] holds its own cursor:
//! the sequence number of the next message it will read.
//!
//! * **No gaps, in order.** A subscriber that is handed message `n` has been
//!   handed every message from its starting point up to `n - 1`, exactly once
//!   and in order — or an [`Expired`](TryRecvError::Expired) error in between.
//!   Nothing is skipped silently.
//! * **Expiry is explicit.** When the message at a subscriber's cursor was
//!   overwritten (the subscriber was more than `capacity` messages behind),
//!   the next receive returns `Expired { missed, resume_seq }`: the cursor has
//!   moved to `resume_seq`, the oldest message still held, and `missed`
//!   messages (`resume_seq` minus the old cursor) will never be seen. The
//!   receive after that continues from `resume_seq`. Counting
//!   `delivered + missed` over a subscriber's life always gives the number
//!   of messages published since it started.
//! * **Cursor rule.** With `head` the number the next publish takes, a cursor
//!   `c` is readable when `oldest_held <= c < head`, waiting when
//!   `c == head`, and expired once the message it points at was
//!   overwritten. Both rings hold at least the last `capacity` messages, so
//!   a cursor is never expired while it is at most `capacity` behind. The
//!   typed ring reserves slots a quarter of its capacity at a time, so it
//!   holds up to `capacity / 4 - 1` more. The byte ring holds exactly the
//!   last `capacity` (`oldest_held = head - capacity`), as far as their
//!   bytes were not reused (`max_bytes` bound first), and keeps up to as
//!   many again until they are overwritten: a cursor behind `oldest_held`
//!   still reads them, and one that expires resumes at `oldest_held`, with
//!   room ahead of the publisher (see [`bytes`]). A message overwritten
//!   *while* it is being read is expired too.
//! * **New subscribers start at the head**: they see only messages published
//!   after they were created. [`Publisher::subscribe_at`] starts elsewhere,
//!   if that position is still held.
//! * **The publisher never waits.** Publishing costs the same with 0 or 1,000
//!   subscribers, never blocks, never allocates, and — with nobody parked in
//!   a blocking or async receive — takes no lock and makes no system call. A
//!   slow subscriber only falls behind until it expires.
//! * **Closing.** Dropping the publisher closes the ring: subscribers read
//!   what is still held, then get [`Closed`](TryRecvError::Closed).
//!
//! What can go stale: `head`, `oldest_held` and `lag` are observations that
//! may change the moment they return (head only grows; oldest only grows).
//! `is_closed` stays true once true. A position that `subscribe_at` accepted
//! may expire before it is read; the first receive then says so.
//!
//! Two rings share this contract: the typed ring ([`channel`]) for
//! fixed-size `T: bytemuck::NoUninit` values, and the byte ring
//! ([`bytes::channel`]) for variable-length payloads up to a maximum
//! message size, bounded both in messages and in bytes.
//!
//! # Examples
//!
//! ```
//! let (mut publisher, mut subscriber) = ringcast_core::channel::<u64>(4);
//! publisher.publish(7);
//! publisher.publish(8);
//! assert_eq!(subscriber.try_recv(), Ok(7));
//! assert_eq!(subscriber.try_recv(), Ok(8));
//! assert_eq!(subscriber.try_recv(), Err(ringcast_core::TryRecvError::Empty));
//! ```
//!
//! Handling expiry: a subscriber that fell more than `capacity` behind is
//! told how much it missed and where it resumes; here it would rebuild its
//! state from the source of truth, then carry on.
//!
//! ```
//! use ringcast_core::TryRecvError;
//!
//! let (mut publisher, mut subscriber) = ringcast_core::channel::<u64>(4);
//! for i in 0..10 {
//!     publisher.publish(i);
//! }
//! // Messages 0..6 were overwritten; 6, 7, 8, 9 are still held.
//! assert_eq!(
//!     subscriber.try_recv(),
//!     Err(TryRecvError::Expired { missed: 6, resume_seq: 6 })
//! );
//! let rest: Vec<u64> = std::iter::from_fn(|| subscriber.try_recv().ok()).collect();
//! assert_eq!(rest, [6, 7, 8, 9]);
//! ```
//!
//! Variable-length payloads, and a thread that blocks until messages come:
//!
//! ```
//! use ringcast_core::bytes::{self, Config};
//!
//! let config = Config::new().capacity(1024).max_bytes(1 << 20).max_message_size(4096);
//! let (mut publisher, mut subscriber) = bytes::channel(config).unwrap();
//! let reader = std::thread::spawn(move || {
//!     let mut buf = Vec::new();
//!     let mut got = Vec::new();
//!     while let Ok(seq) = subscriber.recv(&mut buf) {
//!         got.push((seq, String::from_utf8(buf.clone()).unwrap()));
//!     }
//!     got // `recv` returned `Closed`: the publisher is gone, all read.
//! });
//! publisher.publish(b"hello").unwrap();
//! publisher.publish(b"world").unwrap();
//! // Too large: handed back, nothing published.
//! let err = publisher.publish(vec![0u8; 5000]).unwrap_err();
//! assert_eq!(err.payload.len(), 5000);
//! drop(publisher);
//! let got = reader.join().unwrap();
//! assert_eq!(got, [(0, "hello".to_string()), (1, "world".to_string())]);
//! ```
//!
//! # How it works
//!
//! Typed ring: the slots hold only the values' words. Two counters guard
//! them: `head` (messages below it are complete) and `reserved` (writes to
//! messages below it may have begun). To publish message `seq`:
//!
//! 1. once every `capacity / 4` messages: `reserved := seq + step`, Release
//!    fence;
//! 2. store the data words (relaxed atomics);
//! 3. head := `seq + 1` (Release); then wake parked readers, if any (an
//!    asymmetric barrier makes that check free of hardware fences on Linux:
//!    the reader about to park pays for it with a `membarrier` call).
//!
//! To read at cursor `c`: below a head it loaded earlier (Acquire), a reader
//! loads the data words (relaxed atomics, so a racing write is not undefined
//! behaviour), issues an Acquire fence and loads `reserved`: if the writes
//! under way could have reached `c`'s slot, the copy is discarded and the
//! cursor has expired — not a retry loop that could starve. Only after this
//! check do the copied words become a `T`. A reader that is behind touches
//! neither `head` nor any line the publisher is writing, and a `u64` publish
//! is two stores.
//!
//! Byte ring: every index slot is a seqlock (a stamp, `seq + 1` when it holds
//! message `seq` and 0 while being written, then position and length), and
//! the payload bytes live in a word arena guarded by a reservation mark like
//! the typed ring's.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks, missing_docs)]

mod barrier;
pub mod bytes;
mod error;
mod prefetch;
mod recv;
mod ring;
mod seq;
mod shared;
mod slot;
mod sync;
mod wait;

pub use error::{RecvError, RecvTimeoutError, SubscribeError, TooLarge, TryRecvError};
pub use recv::Recv;
pub use ring::{channel, Publisher, RingHandle, Subscriber};
#[cfg(feature = "test-util")]
pub use ring::{channel_starting_at, channel_with_step};
pub use shared::SharedPublisher;
