//! Public-API tests of ringcast-core: every edge of the cursor rule, closing,
//! blocking and async receives, and the byte ring's own rules (size limit,
//! payload layout, expiry by reused bytes, arena wrap-around).

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use ringcast_core::bytes::{self, ByteSubscriber, Config, ConfigError};
use ringcast_core::{
    channel, channel_starting_at, RecvError, RecvTimeoutError, SharedPublisher, SubscribeError,
    Subscriber, TryRecvError,
};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Long enough for another thread to have parked; short enough for the suite.
const SETTLE: Duration = Duration::from_millis(50);
/// How long a test waits for a wake-up before calling it lost.
const LOST_WAKEUP: Duration = Duration::from_secs(10);

/// Drains a typed subscriber with `try_recv` until it stops returning values.
fn drain<T: bytemuck::NoUninit>(sub: &mut Subscriber<T>) -> (Vec<T>, TryRecvError) {
    let mut got = Vec::new();
    loop {
        match sub.try_recv() {
            Ok(v) => got.push(v),
            Err(e) => return (got, e),
        }
    }
}

/// Drains a byte subscriber: `(seq, payload)` pairs and the error that stopped it.
fn drain_bytes(sub: &mut ByteSubscriber) -> (Vec<(u64, Vec<u8>)>, TryRecvError) {
    let mut got = Vec::new();
    let mut buf = Vec::new();
    loop {
        match sub.try_recv(&mut buf) {
            Ok(seq) => got.push((seq, buf.clone())),
            Err(e) => return (got, e),
        }
    }
}

/// The payload of byte-ring message `seq` with length `len`.
fn payload(seq: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq.wrapping_mul(31).wrapping_add(i as u64 * 7) % 251) as u8)
        .collect()
}

fn byte_config(capacity: usize, max_bytes: usize, max_message_size: usize) -> Config {
    Config::new()
        .capacity(capacity)
        .max_bytes(max_bytes)
        .max_message_size(max_message_size)
}

/// A waker that records that it was woken and unparks the thread that polls.
struct ThreadWaker {
    thread: thread::Thread,
    woken: AtomicBool,
    wakes: AtomicUsize,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        self.woken.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

impl ThreadWaker {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            thread: thread::current(),
            woken: AtomicBool::new(false),
            wakes: AtomicUsize::new(0),
        })
    }
}

/// A minimal executor: polls `fut` on this thread, parking between polls.
///
/// It re-polls only after its waker was actually woken, so a lost wake-up
/// shows up as a panic after [`LOST_WAKEUP`] instead of being papered over
/// by a spurious re-poll.
fn block_on<F: Future>(fut: F) -> F::Output {
    let state = ThreadWaker::new();
    let waker = Waker::from(Arc::clone(&state));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        let deadline = Instant::now() + LOST_WAKEUP;
        while !state.woken.swap(false, Ordering::SeqCst) {
            let now = Instant::now();
            assert!(now < deadline, "lost wake-up: pending future never woken");
            thread::park_timeout(deadline - now);
        }
    }
}

/// Polls `fut` exactly once with `waker`.
fn poll_once<F: Future + Unpin>(fut: &mut F, waker: &Waker) -> Poll<F::Output> {
    std::pin::Pin::new(fut).poll(&mut Context::from_waker(waker))
}

// ---------------------------------------------------------------------------
// The cursor rule (typed ring)
// ---------------------------------------------------------------------------

#[test]
fn empty_ring_is_empty() {
    let (publisher, mut sub) = channel::<u64>(4);
    assert_eq!(publisher.head(), 0);
    assert_eq!(publisher.oldest_held(), 0);
    assert_eq!(sub.cursor(), 0);
    assert_eq!(sub.lag(), 0);
    assert_eq!(sub.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(sub.cursor(), 0);
}

#[test]
fn first_lap_nothing_overwritten() {
    let (mut publisher, mut sub) = channel::<u64>(4);
    for i in 0..3 {
        assert_eq!(publisher.publish(100 + i), i);
    }
    assert_eq!(publisher.head(), 3);
    assert_eq!(publisher.oldest_held(), 0);
    assert_eq!(sub.lag(), 3);
    assert_eq!(drain(&mut sub), (vec![100, 101, 102], TryRecvError::Empty));
    assert_eq!(sub.cursor(), 3);
    assert_eq!(sub.lag(), 0);
}

#[test]
fn exactly_capacity_behind_is_readable() {
    let (mut publisher, mut sub) = channel::<u64>(4);
    for i in 0..4 {
        publisher.publish(i);
    }
    assert_eq!(publisher.oldest_held(), 0);
    assert_eq!(sub.lag(), 4);
    assert_eq!(drain(&mut sub), (vec![0, 1, 2, 3], TryRecvError::Empty));
}

#[test]
fn capacity_plus_one_behind_expires_one() {
    let (mut publisher, mut sub) = channel::<u64>(4);
    for i in 0..5 {
        publisher.publish(i);
    }
    assert_eq!(publisher.oldest_held(), 1);
    assert_eq!(sub.lag(), 5);
    assert_eq!(
        sub.try_recv(),
        Err(TryRecvError::Expired {
            missed: 1,
            resume_seq: 1
        })
    );
    assert_eq!(sub.cursor(), 1);
    assert_eq!(drain(&mut sub), (vec![1, 2, 3, 4], TryRecvError::Empty));
}

#[test]
fn far_behind_expires_to_oldest() {
    let (mut publisher, mut sub) = channel::<u64>(4);
    for i in 0..1000 {
        publisher.publish(i);
    }
    assert_eq!(
        sub.try_recv(),
        Err(TryRecvError::Expired {
            missed: 996,
            resume_seq: 996
        })
    );
    assert_eq!(
        drain(&mut sub),
        (vec![996, 997, 998, 999], TryRecvError::Empty)
    );
}

/// A batch leaves the messages that share a cache line with the next
/// publish (at most 7 `u64`) for a later call, but never all of what there
/// is: a lone message comes at once, and nothing is lost or reordered.
#[test]
fn batch_leaves_the_line_being_written_for_later_but_never_starves() {
    let (mut publisher, mut sub) = channel::<u64>(1024);
    for i in 0..100 {
        publisher.publish(i);
    }
    let mut out = Vec::new();
    let first = sub.try_recv_many(&mut out, 1000).unwrap();
    assert!((93..=100).contains(&first), "first batch {first}");
    while out.len() < 100 {
        let n = sub.try_recv_many(&mut out, 1000).unwrap();
        assert!(n >= 1);
    }
    assert_eq!(out, (0..100).collect::<Vec<u64>>());
    assert_eq!(sub.try_recv_many(&mut out, 1000), Err(TryRecvError::Empty));
    for i in 100..120 {
        publisher.publish(i);
        assert_eq!(sub.try_recv_many(&mut out, 1000), Ok(1), "message {i}");
    }
    assert_eq!(out, (0..120).collect::<Vec<u64>>());
}

#[test]
fn batch_far_behind_expires_without_reserving_what_it_missed() {
    let (mut publisher, mut sub) = channel::<u64>(4);
    for i in 0..100_000 {
        publisher.publish(i);
    }
    // Asked for everything, a lapped reader learns of the expiry first, and
    // the buffer never had to make room for the 100,000 it missed.
    let mut batch = Vec::new();
    assert_eq!(
        sub.try_recv_many(&mut batch, usize::MAX),
        Err(TryRecvError::Expired {
            missed: 99_996,
            resume_seq: 99_996
        })
    );
    assert!(batch.is_empty());
    assert!(batch.capacity() <= 64, "reserved {}", batch.capacity());
    assert_eq!(sub.try_recv_many(&mut batch, usize::MAX), Ok(4));
    assert_eq!(batch, [99_996, 99_997, 99_998, 99_999]);
    assert_eq!(
        sub.try_recv_many(&mut batch, usize::MAX),
        Err(TryRecvError::Empty)
    );
}

#[test]
fn expiry_mid_read_after_partial_progress() {
    // A reader that has read some, then falls behind: `missed` counts from
    // its cursor, not from 0.
    let (mut publisher, mut sub) = channel::<u64>(2);
    publisher.publish(0);
    publisher.publish(1);
    assert_eq!(sub.try_recv(), Ok(0));
    for i in 2..10 {
        publisher.publish(i);
    }
    assert_eq!(
        sub.try_recv(),
        Err(TryRecvError::Expired {
            missed: 7,
            resume_seq: 8
        })
    );
    assert_eq!(drain(&mut sub), (vec![8, 9], TryRecvError::Empty));
}

#[test]
fn capacity_one() {
    let (mut publisher, mut sub) = channel::<u64>(1);
    assert_eq!(publisher.capacity(), 1);
    publisher.publish(0);
    assert_eq!(sub.try_recv(), Ok(0));
    publisher.publish(1);
    publisher.publish(2);
    assert_eq!(
        sub.try_recv(),
        Err(TryRecvError::Expired {
            missed: 1,
            resume_seq: 2
        })
    );
    assert_eq!(drain(&mut sub), (vec![2], TryRecvError::Empty));
}

#[test]
fn new_subscriber_sees_only_later_messages() {
    let (mut publisher, _first) = channel::<u64>(8);
    publisher.publish(0);
    publisher.publish(1);
    let mut sub = publisher.subscribe();
    assert_eq!(sub.cursor(), 2);
    assert_eq!(sub.try_recv(), Err(TryRecvError::Empty));
    publisher.publish(2);
    let mut from_handle = publisher.handle().subscribe();
    publisher.publish(3);
    assert_eq!(drain(&mut sub), (vec![2, 3], TryRecvError::Empty));
    assert_eq!(drain(&mut from_handle), (vec![3], TryRecvError::Empty));
}

#[test]
fn subscribe_at_held_head_expired_future() {
    let (mut publisher, _first) = channel::<u64>(4);
    for i in 0..10 {
        publisher.publish(i);
    }
    // Held: 6, 7, 8, 9; head 10.
    assert_eq!(publisher.oldest_held(), 6);
    let mut oldest = publisher.subscribe_at(6).unwrap();
    assert_eq!(oldest.cursor(), 6);
    assert_eq!(drain(&mut oldest), (vec![6, 7, 8, 9], TryRecvError::Empty));
    let mut newest = publisher.subscribe_at(9).unwrap();
    assert_eq!(drain(&mut newest), (vec![9], TryRecvError::Empty));
    let mut at_head = publisher.subscribe_at(10).unwrap();
    assert_eq!(at_head.try_recv(), Err(TryRecvError::Empty));
    assert_eq!(
        publisher.subscribe_at(5).unwrap_err(),
        SubscribeError::Expired {
            seq: 5,
            oldest_held: 6
        }
    );
    assert_eq!(
        publisher.subscribe_at(0).unwrap_err(),
        SubscribeError::Expired {
            seq: 0,
            oldest_held: 6
        }
    );
    assert_eq!(
        publisher.subscribe_at(11).unwrap_err(),
        SubscribeError::Future { seq: 11, head: 10 }
    );
    assert_eq!(
        publisher.subscribe_at(u64::MAX).unwrap_err(),
        SubscribeError::Future {
            seq: u64::MAX,
            head: 10
        }
    );
    // The handle applies the same rule.
    let handle = publisher.handle();
    assert!(handle.subscribe_at(6).is_ok());
    assert!(handle.subscribe_at(10).is_ok());
    assert!(matches!(
        handle.subscribe_at(5),
        Err(SubscribeError::Expired { .. })
    ));
    assert!(matches!(
        handle.subscribe_at(11),
        Err(SubscribeError::Future { .. })
    ));
}

#[test]
fn subscribe_at_accepted_then_expired_reports_on_first_receive() {
    let (mut publisher, _first) = channel::<u64>(2);
    publisher.publish(0);
    let mut sub = publisher.subscribe_at(0).unwrap();
    publisher.publish(1);
    publisher.publish(2);
    publisher.publish(3);
    assert_eq!(
        sub.try_recv(),
        Err(TryRecvError::Expired {
            missed: 2,
            resume_seq: 2
        })
    );
    assert_eq!(drain(&mut sub), (vec![2, 3], TryRecvError::Empty));
}

#[test]
fn capacity_rounds_to_power_of_two() {
    for (requested, actual) in [(0, 1), (1, 1), (2, 2), (3, 4), (5, 8), (8, 8), (1000, 1024)] {
        let (publisher, _sub) = channel::<u8>(requested);
        assert_eq!(publisher.capacity(), actual, "requested {requested}");
        assert_eq!(publisher.handle().capacity(), actual);
    }
    // The rounded capacity is what the cursor rule uses.
    let (mut publisher, mut sub) = channel::<u64>(3);
    for i in 0..4 {
        publisher.publish(i);
    }
    assert_eq!(drain(&mut sub), (vec![0, 1, 2, 3], TryRecvError::Empty));
    let config = Config::new().capacity(5);
    let (publisher, _sub) = bytes::channel(config).unwrap();
    assert_eq!(publisher.handle().capacity(), 8);
}

#[test]
fn values_of_odd_sizes_round_trip() {
    #[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::NoUninit)]
    #[repr(C)]
    struct Odd {
        a: [u8; 3],
        b: [u8; 10],
    }
    let (mut publisher, mut sub) = channel::<Odd>(4);
    let values: Vec<Odd> = (0..6u8)
        .map(|i| Odd {
            a: [i, i + 1, i + 2],
            b: [i.wrapping_mul(17); 10],
        })
        .collect();
    for v in &values[..4] {
        publisher.publish(*v);
    }
    assert_eq!(drain(&mut sub), (values[..4].to_vec(), TryRecvError::Empty));
    for v in &values[4..] {
        publisher.publish(*v);
    }
    assert_eq!(drain(&mut sub), (values[4..].to_vec(), TryRecvError::Empty));

    let (mut publisher, mut sub) = channel::<()>(2);
    assert_eq!(publisher.publish(()), 0);
    assert_eq!(sub.try_recv(), Ok(()));
    assert_eq!(sub.try_recv(), Err(TryRecvError::Empty));
}

#[test]
fn a_reader_waiting_at_the_head_gets_every_message_around_the_ring() {
    // Enough empty receives before each publish that the reader's head
    // reloads also load the next message's slot (after 16 in a row). Every
    // slot, across the wrap, for a value of several words, by both kinds of
    // receive.
    let (mut publisher, mut sub) = channel::<[u64; 3]>(4);
    let mut batch = Vec::new();
    for i in 0..20u64 {
        for _ in 0..20 {
            assert_eq!(sub.try_recv(), Err(TryRecvError::Empty));
        }
        let value = [i, !i, i.wrapping_mul(3)];
        publisher.publish(value);
        if i % 2 == 0 {
            assert_eq!(sub.try_recv(), Ok(value));
        } else {
            assert_eq!(sub.try_recv_many(&mut batch, 8), Ok(1));
            assert_eq!(batch.pop(), Some(value));
        }
    }
    drop(publisher);
    assert_eq!(sub.try_recv(), Err(TryRecvError::Closed));
}

// ---------------------------------------------------------------------------
// Positions near the top of the u64 range
// ---------------------------------------------------------------------------

#[test]
fn typed_positions_near_u64_max() {
    let start = u64::MAX - 100;
    let (mut publisher, mut sub) = channel_starting_at::<u64>(4, start);
    assert_eq!(publisher.head(), start);
    assert_eq!(publisher.oldest_held(), start);
    assert_eq!(sub.cursor(), start);
    assert_eq!(sub.try_recv(), Err(TryRecvError::Empty));
    // Nothing below the start was ever held.
    assert_eq!(
        publisher.subscribe_at(start - 1).unwrap_err(),
        SubscribeError::Expired {
            seq: start - 1,
            oldest_held: start
        }
    );
    // First lap from the start: exactly capacity behind is readable.
    for i in 0..4 {
        assert_eq!(publisher.publish(i), start + i);
    }
    assert_eq!(publisher.oldest_held(), start);
    let mut at_start = sub.clone();
    assert_eq!(
        drain(&mut at_start),
        (vec![0, 1, 2, 3], TryRecvError::Empty)
    );
    // One more: capacity + 1 behind.
    publisher.publish(4);
    assert_eq!(
        sub.try_recv(),
        Err(TryRecvError::Expired {
            missed: 1,
            resume_seq: start + 1
        })
    );
    // Publish up to the last number there is: head == u64::MAX.
    let mut follower = publisher.subscribe();
    for i in 5..100 {
        assert_eq!(publisher.publish(i), start + i);
    }
    assert_eq!(publisher.head(), u64::MAX);
    assert_eq!(publisher.oldest_held(), u64::MAX - 4);
    assert_eq!(sub.lag(), u64::MAX - (start + 1));
    assert_eq!(
        sub.try_recv(),
        Err(TryRecvError::Expired {
            missed: 95,
            resume_seq: u64::MAX - 4
        })
    );
    assert_eq!(drain(&mut sub), (vec![96, 97, 98, 99], TryRecvError::Empty));
    assert_eq!(sub.cursor(), u64::MAX);
    assert_eq!(
        follower.try_recv(),
        Err(TryRecvError::Expired {
            missed: 91,
            resume_seq: u64::MAX - 4
        })
    );
    assert!(publisher.subscribe_at(u64::MAX - 4).is_ok());
    assert!(publisher.subscribe_at(u64::MAX).is_ok());
    assert_eq!(
        publisher.subscribe_at(u64::MAX - 5).unwrap_err(),
        SubscribeError::Expired {
            seq: u64::MAX - 5,
            oldest_held: u64::MAX - 4
        }
    );
    drop(publisher);
    assert_eq!(sub.try_recv(), Err(TryRecvError::Closed));
}

#[test]
#[should_panic(expected = "sequence numbers exhausted")]
fn typed_publish_past_u64_max_panics() {
    let (mut publisher, _sub) = channel_starting_at::<u64>(4, u64::MAX - 1);
    assert_eq!(publisher.publish(1), u64::MAX - 1);
    publisher.publish(2);
}

#[test]
fn byte_positions_near_u64_max() {
    let start = u64::MAX - 100;
    let config = byte_config(4, 1024, 64);
    let (mut publisher, mut sub) = bytes::channel_starting_at(config, start).unwrap();
    assert_eq!(publisher.head(), start);
    assert_eq!(
        publisher.subscribe_at(start - 1).unwrap_err(),
        SubscribeError::Expired {
            seq: start - 1,
            oldest_held: start
        }
    );
    for i in 0..4 {
        assert_eq!(publisher.publish(payload(start + i, 5)).unwrap(), start + i);
    }
    let (got, end) = drain_bytes(&mut sub.clone());
    assert_eq!(end, TryRecvError::Empty);
    let expected: Vec<_> = (start..start + 4).map(|s| (s, payload(s, 5))).collect();
    assert_eq!(got, expected);
    for i in 4..100 {
        assert_eq!(publisher.publish(payload(start + i, 5)).unwrap(), start + i);
    }
    assert_eq!(publisher.head(), u64::MAX);
    assert_eq!(publisher.oldest_held(), u64::MAX - 4);
    let mut buf = Vec::new();
    assert_eq!(
        sub.try_recv(&mut buf),
        Err(TryRecvError::Expired {
            missed: 96,
            resume_seq: u64::MAX - 4
        })
    );
    let (got, end) = drain_bytes(&mut sub);
    assert_eq!(end, TryRecvError::Empty);
    let expected: Vec<_> = (u64::MAX - 4..u64::MAX)
        .map(|s| (s, payload(s, 5)))
        .collect();
    assert_eq!(got, expected);
    assert!(publisher.subscribe_at(u64::MAX).is_ok());
    assert!(matches!(
        publisher.subscribe_at(u64::MAX - 5),
        Err(SubscribeError::Expired { .. })
    ));
    drop(publisher);
    assert_eq!(sub.try_recv(&mut buf), Err(TryRecvError::Closed));
}

#[test]
#[should_panic(expected = "sequence numbers exhausted")]
fn byte_publish_past_u64_max_panics() {
    let config = byte_config(4, 64, 8);
    let (mut publisher, _sub) = bytes::channel_starting_at(config, u64::MAX - 1).unwrap();
    assert_eq!(publisher.publish(b"x").unwrap(), u64::MAX - 1);
    let _ = publisher.publish(b"y");
}

// ---------------------------------------------------------------------------
// Closing
// ---------------------------------------------------------------------------

#[test]
fn closed_only_after_everything_held_is_read() {
    let (mut publisher, mut sub) = channel::<u64>(4);
    let handle = publisher.handle();
    publisher.publish(1);
    publisher.publish(2);
    assert!(!handle.is_closed());
    drop(publisher);
    assert!(handle.is_closed());
    assert_eq!(sub.try_recv(), Ok(1));
    assert_eq!(sub.try_recv(), Ok(2));
    assert_eq!(sub.try_recv(), Err(TryRecvError::Closed));
    assert_eq!(sub.try_recv(), Err(TryRecvError::Closed));
    assert_eq!(sub.recv(), Err(RecvError::Closed));
    assert_eq!(
        sub.recv_timeout(Duration::from_secs(5)),
        Err(RecvTimeoutError::Closed)
    );
    assert_eq!(block_on(sub.recv_async()), Err(RecvError::Closed));
    // New subscribers of a closed ring start at the head: closed at once.
    assert_eq!(handle.subscribe().try_recv(), Err(TryRecvError::Closed));
    // subscribe_at still works on what is held.
    let mut late = handle.subscribe_at(0).unwrap();
    assert_eq!(drain(&mut late), (vec![1, 2], TryRecvError::Closed));
}

#[test]
fn closed_after_expiry_after_close() {
    let (mut publisher, mut sub) = channel::<u64>(2);
    for i in 0..5 {
        publisher.publish(i);
    }
    drop(publisher);
    assert_eq!(
        sub.try_recv(),
        Err(TryRecvError::Expired {
            missed: 3,
            resume_seq: 3
        })
    );
    assert_eq!(drain(&mut sub), (vec![3, 4], TryRecvError::Closed));

    // The same through the blocking receive.
    let (mut publisher, mut sub) = channel::<u64>(2);
    for i in 0..5 {
        publisher.publish(i);
    }
    drop(publisher);
    assert_eq!(
        sub.recv(),
        Err(RecvError::Expired {
            missed: 3,
            resume_seq: 3
        })
    );
    assert_eq!(sub.recv(), Ok(3));
    assert_eq!(sub.recv(), Ok(4));
    assert_eq!(sub.recv(), Err(RecvError::Closed));
}

#[test]
fn handle_does_not_keep_the_ring_open() {
    let (publisher, sub) = channel::<u64>(2);
    let handle = sub.handle();
    drop(publisher);
    assert!(handle.is_closed());
    let (publisher, sub) = bytes::channel(Config::new()).unwrap();
    let handle = sub.handle();
    assert!(!handle.is_closed());
    drop(publisher);
    assert!(handle.is_closed());
}

// ---------------------------------------------------------------------------
// Cloning
// ---------------------------------------------------------------------------

#[test]
fn clone_continues_independently() {
    let (mut publisher, mut a) = channel::<u64>(8);
    for i in 0..4 {
        publisher.publish(i);
    }
    assert_eq!(a.try_recv(), Ok(0));
    let mut b = a.clone();
    assert_eq!(b.cursor(), 1);
    assert_eq!(a.try_recv(), Ok(1));
    assert_eq!(a.try_recv(), Ok(2));
    assert_eq!(b.try_recv(), Ok(1));
    assert_eq!(a.cursor(), 3);
    assert_eq!(b.cursor(), 2);
    publisher.publish(4);
    assert_eq!(drain(&mut a), (vec![3, 4], TryRecvError::Empty));
    assert_eq!(drain(&mut b), (vec![2, 3, 4], TryRecvError::Empty));

    let (mut publisher, mut a) = bytes::channel(Config::new()).unwrap();
    publisher.publish(b"one").unwrap();
    let mut b = a.clone();
    publisher.publish(b"two").unwrap();
    let mut buf = Vec::new();
    assert_eq!(a.try_recv(&mut buf), Ok(0));
    assert_eq!(drain_bytes(&mut a).0, [(1, b"two".to_vec())]);
    assert_eq!(
        drain_bytes(&mut b).0,
        [(0, b"one".to_vec()), (1, b"two".to_vec())]
    );
}

#[test]
fn subscribers_are_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Subscriber<u64>>();
    assert_send::<ringcast_core::Publisher<u64>>();
    assert_send::<ringcast_core::RingHandle<u64>>();
    assert_send::<ByteSubscriber>();
    assert_send::<bytes::BytePublisher>();
    assert_send::<bytes::ByteHandle>();
}

// ---------------------------------------------------------------------------
// Blocking receives
// ---------------------------------------------------------------------------

#[test]
fn recv_timeout_times_out_and_keeps_the_cursor() {
    let (mut publisher, mut sub) = channel::<u64>(4);
    let begin = Instant::now();
    assert_eq!(
        sub.recv_timeout(Duration::from_millis(30)),
        Err(RecvTimeoutError::Timeout)
    );
    assert!(begin.elapsed() >= Duration::from_millis(30));
    assert_eq!(sub.cursor(), 0);
    assert_eq!(
        sub.recv_timeout(Duration::ZERO),
        Err(RecvTimeoutError::Timeout)
    );
    publisher.publish(5);
    assert_eq!(sub.recv_timeout(Duration::from_millis(30)), Ok(5));

    let (mut publisher, mut sub) = bytes::channel(Config::new()).unwrap();
    let mut buf = Vec::new();
    assert_eq!(
        sub.recv_timeout(&mut buf, Duration::from_millis(30)),
        Err(RecvTimeoutError::Timeout)
    );
    publisher.publish(b"x").unwrap();
    assert_eq!(sub.recv_timeout(&mut buf, Duration::from_millis(30)), Ok(0));
    assert_eq!(buf, b"x");
}

#[test]
fn recv_timeout_is_woken_by_publish_before_the_deadline() {
    let (mut publisher, mut sub) = channel::<u64>(4);
    let reader = thread::spawn(move || {
        let begin = Instant::now();
        let r = sub.recv_timeout(LOST_WAKEUP);
        (r, begin.elapsed())
    });
    thread::sleep(SETTLE);
    publisher.publish(9);
    let (r, elapsed) = reader.join().unwrap();
    assert_eq!(r, Ok(9));
    assert!(elapsed < LOST_WAKEUP / 2, "woken only by the deadline");
}

#[test]
fn blocking_recv_is_woken_by_publish() {
    let (mut publisher, mut sub) = channel::<u64>(4);
    let reader = thread::spawn(move || {
        let first = sub.recv();
        let second = sub.recv();
        (first, second)
    });
    thread::sleep(SETTLE);
    publisher.publish(41);
    thread::sleep(SETTLE);
    publisher.publish(42);
    assert_eq!(reader.join().unwrap(), (Ok(41), Ok(42)));
    drop(publisher);
}

#[test]
fn blocking_recv_is_woken_by_close() {
    let (publisher, mut sub) = channel::<u64>(4);
    let reader = thread::spawn(move || sub.recv());
    thread::sleep(SETTLE);
    drop(publisher);
    assert_eq!(reader.join().unwrap(), Err(RecvError::Closed));

    let (publisher, mut sub) = bytes::channel(Config::new()).unwrap();
    let reader = thread::spawn(move || sub.recv(&mut Vec::new()));
    thread::sleep(SETTLE);
    drop(publisher);
    assert_eq!(reader.join().unwrap(), Err(RecvError::Closed));
}

#[test]
fn byte_blocking_recv_is_woken_by_publish() {
    let (mut publisher, mut sub) = bytes::channel(Config::new()).unwrap();
    let reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let seq = sub.recv(&mut buf);
        (seq, buf)
    });
    thread::sleep(SETTLE);
    publisher.publish(b"wake up").unwrap();
    assert_eq!(reader.join().unwrap(), (Ok(0), b"wake up".to_vec()));
}

#[test]
fn many_parked_readers_all_woken() {
    let (mut publisher, sub) = channel::<u64>(4);
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let mut sub = sub.clone();
            thread::spawn(move || (sub.recv(), sub.recv()))
        })
        .collect();
    thread::sleep(SETTLE);
    publisher.publish(1);
    drop(publisher);
    for reader in readers {
        assert_eq!(reader.join().unwrap(), (Ok(1), Err(RecvError::Closed)));
    }
}

// ---------------------------------------------------------------------------
// Async receives (on a hand-written executor)
// ---------------------------------------------------------------------------

#[test]
fn recv_async_ready_at_once() {
    let (mut publisher, mut sub) = channel::<u64>(2);
    publisher.publish(1);
    assert_eq!(block_on(sub.recv_async()), Ok(1));
    for i in 2..6 {
        publisher.publish(i);
    }
    assert_eq!(
        block_on(sub.recv_async()),
        Err(RecvError::Expired {
            missed: 2,
            resume_seq: 3
        })
    );
    assert_eq!(block_on(sub.recv_async()), Ok(4));
}

#[test]
fn recv_async_is_woken_by_publish() {
    let (mut publisher, mut sub) = channel::<u64>(4);
    let reader = thread::spawn(move || {
        let a = block_on(sub.recv_async());
        let b = block_on(sub.recv_async());
        (a, b)
    });
    thread::sleep(SETTLE);
    publisher.publish(7);
    thread::sleep(SETTLE);
    publisher.publish(8);
    assert_eq!(reader.join().unwrap(), (Ok(7), Ok(8)));
}

#[test]
fn recv_async_is_woken_by_close() {
    let (publisher, mut sub) = channel::<u64>(4);
    let reader = thread::spawn(move || block_on(sub.recv_async()));
    thread::sleep(SETTLE);
    drop(publisher);
    assert_eq!(reader.join().unwrap(), Err(RecvError::Closed));
}

#[test]
fn byte_recv_async_is_woken_by_publish_and_close() {
    let (mut publisher, mut sub) = bytes::channel(Config::new()).unwrap();
    let reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let first = block_on(sub.recv_async(&mut buf)).map(|seq| (seq, buf.clone()));
        let second = block_on(sub.recv_async(&mut buf));
        (first, second)
    });
    thread::sleep(SETTLE);
    publisher.publish(b"async").unwrap();
    thread::sleep(SETTLE);
    drop(publisher);
    assert_eq!(
        reader.join().unwrap(),
        (Ok((0, b"async".to_vec())), Err(RecvError::Closed))
    );
}

#[test]
fn recv_async_registered_waker_is_woken_exactly_by_publish() {
    let (mut publisher, mut sub) = channel::<u64>(4);
    let state = ThreadWaker::new();
    let waker = Waker::from(Arc::clone(&state));
    let mut fut = sub.recv_async();
    assert_eq!(poll_once(&mut fut, &waker), Poll::Pending);
    // Re-polling with another waker replaces the registration.
    let other = ThreadWaker::new();
    let other_waker = Waker::from(Arc::clone(&other));
    assert_eq!(poll_once(&mut fut, &other_waker), Poll::Pending);
    assert_eq!(state.wakes.load(Ordering::SeqCst), 0);
    publisher.publish(3);
    assert_eq!(other.wakes.load(Ordering::SeqCst), 1);
    assert_eq!(state.wakes.load(Ordering::SeqCst), 0);
    assert_eq!(poll_once(&mut fut, &other_waker), Poll::Ready(Ok(3)));
}

#[test]
fn dropping_a_pending_recv_async_loses_nothing() {
    let (mut publisher, mut sub) = channel::<u64>(4);
    let state = ThreadWaker::new();
    let waker = Waker::from(Arc::clone(&state));
    {
        let mut fut = sub.recv_async();
        assert_eq!(poll_once(&mut fut, &waker), Poll::Pending);
    }
    assert_eq!(sub.cursor(), 0);
    publisher.publish(10);
    publisher.publish(11);
    // The dropped future's waker was unregistered: nobody wakes it.
    assert_eq!(state.wakes.load(Ordering::SeqCst), 0);
    assert_eq!(sub.try_recv(), Ok(10));
    assert_eq!(block_on(sub.recv_async()), Ok(11));

    let (mut publisher, mut sub) = bytes::channel(Config::new()).unwrap();
    let mut buf = Vec::new();
    {
        let mut fut = sub.recv_async(&mut buf);
        assert_eq!(poll_once(&mut fut, &waker), Poll::Pending);
    }
    publisher.publish(b"kept").unwrap();
    assert_eq!(sub.try_recv(&mut buf), Ok(0));
    assert_eq!(buf, b"kept");
}

// ---------------------------------------------------------------------------
// Byte ring
// ---------------------------------------------------------------------------

#[test]
fn config_rejects_message_larger_than_arena() {
    let err = bytes::channel(byte_config(4, 16, 17)).unwrap_err();
    assert_eq!(
        err,
        ConfigError::MessageLargerThanArena {
            max_message_size: 17,
            max_bytes: 16
        }
    );
    // max_bytes rounds up to a multiple of 8: 13 bytes make 16.
    assert!(bytes::channel(byte_config(4, 13, 16)).is_ok());
    assert!(bytes::channel(byte_config(4, 16, 16)).is_ok());
}

#[test]
fn too_large_is_handed_back_and_nothing_published() {
    let (mut publisher, mut sub) = bytes::channel(byte_config(4, 64, 10)).unwrap();
    assert_eq!(publisher.max_message_size(), 10);
    let big = payload(0, 11);
    let err = publisher.publish(big.clone()).unwrap_err();
    assert_eq!(err.len, 11);
    assert_eq!(err.max, 10);
    assert_eq!(err.payload, big);
    assert_eq!(publisher.head(), 0);
    let err = publisher.publish_vectored(&[&[1; 6], &[2; 5]]).unwrap_err();
    assert_eq!((err.len, err.max), (11, 10));
    assert_eq!(publisher.head(), 0);
    assert_eq!(sub.try_recv(&mut Vec::new()), Err(TryRecvError::Empty));
    // Exactly the maximum is accepted.
    assert_eq!(publisher.publish(payload(0, 10)).unwrap(), 0);
    assert_eq!(drain_bytes(&mut sub).0, [(0, payload(0, 10))]);
    // Through the shared publisher too.
    let shared = SharedPublisher::new(publisher);
    let err = shared.publish(&big[..]).unwrap_err();
    assert_eq!(err.payload, &big[..]);
    assert_eq!(shared.lock().head(), 1);
}

#[test]
fn empty_payloads() {
    let (mut publisher, mut sub) = bytes::channel(byte_config(4, 64, 16)).unwrap();
    assert_eq!(publisher.publish(b"").unwrap(), 0);
    assert_eq!(publisher.publish(Vec::new()).unwrap(), 1);
    assert_eq!(publisher.publish_vectored(&[]).unwrap(), 2);
    assert_eq!(publisher.publish_vectored(&[b"", b""]).unwrap(), 3);
    let mut buf = b"stale contents".to_vec();
    for seq in 0..4 {
        assert_eq!(sub.try_recv(&mut buf), Ok(seq));
        assert!(buf.is_empty());
    }
    assert_eq!(sub.try_recv(&mut buf), Err(TryRecvError::Empty));
}

#[test]
fn payloads_of_every_length_round_trip() {
    // Large arena: no wrap. Then a small one: every length at every offset.
    for max_bytes in [1 << 12, 48, 56] {
        let (mut publisher, mut sub) = bytes::channel(byte_config(64, max_bytes, 40)).unwrap();
        let mut buf = vec![0xAA; 3];
        for len in 0..=40usize {
            let seq = publisher.publish(payload(len as u64, len)).unwrap();
            assert_eq!(sub.try_recv(&mut buf), Ok(seq));
            assert_eq!(buf, payload(len as u64, len), "len {len}");
        }
        assert_eq!(sub.try_recv(&mut buf), Err(TryRecvError::Empty));
    }
}

#[test]
fn publish_vectored_equals_concatenation() {
    let (mut publisher, mut sub) = bytes::channel(byte_config(64, 96, 40)).unwrap();
    let whole = payload(7, 40);
    let mut buf = Vec::new();
    let splits: [&[usize]; 8] = [
        &[],
        &[0],
        &[40],
        &[1, 39],
        &[7, 1, 0, 9, 23],
        &[8, 8, 8, 8, 8],
        &[3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 1],
        &[0, 0, 17, 0, 23, 0],
    ];
    for split in splits {
        let total: usize = split.iter().sum();
        let mut parts = Vec::new();
        let mut at = 0;
        for &n in split {
            parts.push(&whole[at..at + n]);
            at += n;
        }
        let seq = publisher.publish_vectored(&parts).unwrap();
        assert_eq!(sub.try_recv(&mut buf), Ok(seq));
        assert_eq!(buf, &whole[..total], "split {split:?}");
    }
}

/// The byte ring keeps twice the messages it holds: a reader behind the
/// oldest held still reads what is kept, and one whose message was
/// overwritten resumes at the oldest held, not at the oldest kept (which the
/// next publish would take), so it has room to read before the publisher
/// catches it up again.
#[test]
fn byte_reader_behind_the_held_reads_what_is_kept_and_resumes_with_room() {
    let (mut publisher, mut sub) = bytes::channel(byte_config(4, 1 << 12, 16)).unwrap();
    let mut late = publisher.subscribe();
    for seq in 0..7 {
        publisher.publish(payload(seq, 16)).unwrap();
    }
    // Holds 3..7; keeps 0..7 (8 index slots).
    assert_eq!(publisher.oldest_held(), 3);
    let (got, end) = drain_bytes(&mut sub);
    assert_eq!(end, TryRecvError::Empty);
    assert_eq!(got, (0..7).map(|s| (s, payload(s, 16))).collect::<Vec<_>>());
    assert!(publisher.subscribe_at(2).is_err(), "2 is kept, not held");

    for seq in 7..9 {
        publisher.publish(payload(seq, 16)).unwrap();
    }
    // Keeps 1..9: message 0 is gone, and `late` resumes at the oldest held.
    assert_eq!(publisher.oldest_held(), 5);
    let mut buf = Vec::new();
    assert_eq!(
        late.try_recv(&mut buf),
        Err(TryRecvError::Expired {
            missed: 5,
            resume_seq: 5
        })
    );
    // Room: four more publishes and message 5 is still kept.
    for seq in 9..13 {
        publisher.publish(payload(seq, 16)).unwrap();
    }
    assert_eq!(late.try_recv(&mut buf), Ok(5));
    assert_eq!(buf, payload(5, 16));
    let (got, _) = drain_bytes(&mut late);
    assert_eq!(got.first().map(|m| m.0), Some(6));
    assert_eq!(got.last().map(|m| m.0), Some(12));
}

#[test]
fn expiry_by_bytes() {
    // Capacity 1024 but 64 arena bytes: four 16-byte messages fit.
    let (mut publisher, mut slow) = bytes::channel(byte_config(1024, 64, 24)).unwrap();
    for seq in 0..10 {
        publisher.publish(payload(seq, 16)).unwrap();
    }
    // The index still holds everything: bytes are what bind.
    assert_eq!(publisher.oldest_held(), 0);
    let mut buf = Vec::new();
    assert_eq!(
        slow.try_recv(&mut buf),
        Err(TryRecvError::Expired {
            missed: 6,
            resume_seq: 6
        })
    );
    let (got, end) = drain_bytes(&mut slow);
    assert_eq!(end, TryRecvError::Empty);
    assert_eq!(
        got,
        (6..10).map(|s| (s, payload(s, 16))).collect::<Vec<_>>()
    );
    // Variable sizes: each takes its length rounded up to 8 bytes.
    // Positions: #10 [160,169)->[160,176), #11 [176,177)->[176,184),
    // #12 [184,208), #13 [208,232). Arena end 232 holds [168, 232): #10 lost.
    let mut sub = publisher.subscribe();
    for (seq, len) in [(10, 9), (11, 1), (12, 24), (13, 24)] {
        assert_eq!(publisher.publish(payload(seq, len)).unwrap(), seq);
    }
    assert_eq!(
        sub.try_recv(&mut buf),
        Err(TryRecvError::Expired {
            missed: 1,
            resume_seq: 11
        })
    );
    let (got, _) = drain_bytes(&mut sub);
    assert_eq!(
        got,
        [
            (11, payload(11, 1)),
            (12, payload(12, 24)),
            (13, payload(13, 24))
        ]
    );
    // subscribe_at checks the index only; the first receive reports the
    // reused bytes.
    let mut late = publisher.subscribe_at(3).unwrap();
    assert_eq!(
        late.try_recv(&mut buf),
        Err(TryRecvError::Expired {
            missed: 8,
            resume_seq: 11
        })
    );
}

/// Regression: when both the index and the bytes bind, a lapped reader gets
/// one expiry that lands on a readable message — it used to get a first
/// `Expired` resuming at the oldest *index* entry, whose bytes were already
/// reused, then a second `Expired` on the next receive.
#[test]
fn expiry_by_index_and_bytes_is_reported_once() {
    let (mut publisher, mut sub) = bytes::channel(byte_config(4, 16, 8)).unwrap();
    for seq in 0..6 {
        publisher.publish(payload(seq, 8)).unwrap();
    }
    // Index holds 2..6; the 16 arena bytes hold only 4 and 5.
    assert_eq!(publisher.oldest_held(), 2);
    let mut buf = Vec::new();
    assert_eq!(
        sub.try_recv(&mut buf),
        Err(TryRecvError::Expired {
            missed: 4,
            resume_seq: 4
        })
    );
    assert_eq!(sub.try_recv(&mut buf), Ok(4));
    assert_eq!(buf, payload(4, 8));
    assert_eq!(sub.try_recv(&mut buf), Ok(5));

    // The blocking receive and the closed path agree.
    let mut sub = publisher.subscribe_at(2).unwrap();
    drop(publisher);
    assert_eq!(
        sub.recv(&mut buf),
        Err(RecvError::Expired {
            missed: 2,
            resume_seq: 4
        })
    );
    let (got, end) = drain_bytes(&mut sub);
    assert_eq!(got, [(4, payload(4, 8)), (5, payload(5, 8))]);
    assert_eq!(end, TryRecvError::Closed);
}

#[test]
fn arena_wraps_around() {
    // 40 arena bytes (5 words); 24-byte messages take 3 words, so every
    // other message straddles the arena's end.
    let (mut publisher, mut sub) = bytes::channel(byte_config(1024, 40, 24)).unwrap();
    let mut buf = Vec::new();
    for seq in 0..50u64 {
        let len = [24, 17, 20, 1, 23, 8][seq as usize % 6];
        assert_eq!(publisher.publish(payload(seq, len)).unwrap(), seq);
        assert_eq!(sub.try_recv(&mut buf), Ok(seq));
        assert_eq!(buf, payload(seq, len), "seq {seq}");
    }
    // Vectored writes wrap too.
    for seq in 50..60u64 {
        let whole = payload(seq, 21);
        let (a, b) = whole.split_at(seq as usize % 22);
        assert_eq!(publisher.publish_vectored(&[a, b]).unwrap(), seq);
        assert_eq!(sub.try_recv(&mut buf), Ok(seq));
        assert_eq!(buf, whole);
    }
}

#[test]
fn byte_subscribe_at_and_index_expiry() {
    let (mut publisher, mut first) = bytes::channel(byte_config(4, 1024, 8)).unwrap();
    for seq in 0..10 {
        publisher.publish(payload(seq, 3)).unwrap();
    }
    assert_eq!(publisher.oldest_held(), 6);
    assert!(publisher.subscribe_at(6).is_ok());
    assert!(publisher.subscribe_at(10).is_ok());
    assert_eq!(
        publisher.subscribe_at(5).unwrap_err(),
        SubscribeError::Expired {
            seq: 5,
            oldest_held: 6
        }
    );
    assert_eq!(
        publisher.subscribe_at(11).unwrap_err(),
        SubscribeError::Future { seq: 11, head: 10 }
    );
    let handle = publisher.handle();
    assert!(handle.subscribe_at(6).is_ok());
    assert_eq!(handle.head(), 10);
    assert_eq!(handle.oldest_held(), 6);
    assert_eq!(handle.max_message_size(), 8);
    let mut buf = Vec::new();
    assert_eq!(first.lag(), 10);
    assert_eq!(
        first.try_recv(&mut buf),
        Err(TryRecvError::Expired {
            missed: 6,
            resume_seq: 6
        })
    );
    assert_eq!(first.cursor(), 6);
    let mut at_head = handle.subscribe();
    assert_eq!(at_head.try_recv(&mut buf), Err(TryRecvError::Empty));
}

// ---------------------------------------------------------------------------
// SharedPublisher
// ---------------------------------------------------------------------------

#[test]
fn shared_publisher_from_four_threads() {
    const THREADS: u64 = 4;
    const EACH: u64 = 1000;
    let (publisher, mut sub) = channel::<[u64; 2]>(8192);
    let shared = SharedPublisher::new(publisher);
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let shared = shared.clone();
            thread::spawn(move || {
                (0..EACH)
                    .map(|i| (shared.publish([t, i]), [t, i]))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<(u64, [u64; 2])> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    all.sort_unstable();
    let seqs: Vec<u64> = all.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (0..THREADS * EACH).collect::<Vec<_>>());
    // The ring holds, at each sequence number, what that publish returned it for.
    drop(shared);
    let (values, end) = drain(&mut sub);
    assert_eq!(end, TryRecvError::Closed);
    assert_eq!(values, all.iter().map(|(_, v)| *v).collect::<Vec<_>>());
    // Each thread's own messages are in its program order.
    for t in 0..THREADS {
        let mine: Vec<u64> = values.iter().filter(|v| v[0] == t).map(|v| v[1]).collect();
        assert_eq!(mine, (0..EACH).collect::<Vec<_>>());
    }
}

#[test]
fn shared_byte_publisher_from_four_threads() {
    const THREADS: u64 = 4;
    const EACH: u64 = 500;
    let (publisher, mut sub) = bytes::channel(byte_config(4096, 1 << 16, 16)).unwrap();
    let shared = SharedPublisher::new(publisher);
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let shared = shared.clone();
            thread::spawn(move || {
                (0..EACH)
                    .map(|i| {
                        let msg = [t.to_le_bytes(), i.to_le_bytes()].concat();
                        (shared.publish(&msg).unwrap(), msg)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut all: Vec<(u64, Vec<u8>)> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    all.sort_unstable();
    let seqs: Vec<u64> = all.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (0..THREADS * EACH).collect::<Vec<_>>());
    drop(shared);
    let (got, end) = drain_bytes(&mut sub);
    assert_eq!(end, TryRecvError::Closed);
    assert_eq!(got, all);
}

#[test]
fn byte_try_recv_append_builds_one_buffer_and_leaves_it_alone_on_errors() {
    let (mut publisher, mut sub) = bytes::channel(byte_config(4, 64, 16)).unwrap();
    let mut buf = b"head:".to_vec();
    assert_eq!(sub.try_recv_append(&mut buf), Err(TryRecvError::Empty));
    assert_eq!(buf, b"head:");
    publisher.publish(b"one").unwrap();
    publisher.publish(b"two!").unwrap();
    assert_eq!(sub.try_recv_append(&mut buf), Ok(0));
    assert_eq!(sub.try_recv_append(&mut buf), Ok(1));
    assert_eq!(buf, b"head:onetwo!");
    // Lapped: four more messages of 16 bytes reuse the whole 64-byte arena.
    let mut late = sub.clone();
    for i in 0..4u8 {
        publisher.publish([i; 16]).unwrap();
    }
    publisher.publish(b"last").unwrap();
    let before = buf.clone();
    match late.try_recv_append(&mut buf) {
        Err(TryRecvError::Expired { missed, resume_seq }) => {
            assert_eq!(resume_seq, 2 + missed);
        }
        other => panic!("expected expiry, got {other:?}"),
    }
    assert_eq!(buf, before, "an expiry appends nothing");
    let mut rest = Vec::new();
    while let Ok(seq) = late.try_recv_append(&mut rest) {
        assert!(seq >= 3);
    }
    assert!(rest.ends_with(b"last"));
    drop(publisher);
    assert_eq!(late.try_recv_append(&mut buf), Err(TryRecvError::Closed));
    assert_eq!(buf, before);
}
