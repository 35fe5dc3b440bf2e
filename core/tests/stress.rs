//! Multi-threaded stress of both rings: one publisher thread and several
//! readers (spinning, blocking, async, and one that sleeps so that it gets
//! lapped; on the typed ring also batch readers, spinning and sleeping). Every value a reader receives must be exactly the one published
//! under the sequence number its cursor stood at — so a torn or misplaced
//! read is caught — in strict order, and over the reader's life
//! `delivered + missed` must equal the number published.
//!
//! Bounded in time: each test publishes for [`PUBLISH_FOR`], then closes.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use ringcast_core::bytes::{self, ByteSubscriber, Config};
use ringcast_core::{channel, RecvError, Subscriber, TryRecvError};

/// How long the publisher publishes in each test with four readers.
const PUBLISH_FOR: Duration = Duration::from_millis(700);
/// How long it publishes in the tests at the overwrite edge.
const PUBLISH_AT_EDGE_FOR: Duration = Duration::from_millis(300);
/// The publisher yields after this many messages, so that readers on a
/// small machine get to run at all.
const BURST: u64 = 16;

/// A 64-byte message: its sequence number, and a checksum of it in every
/// other word, so a read mixing two messages is visible.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::NoUninit)]
struct Msg {
    seq: u64,
    check: [u64; 7],
}

impl Msg {
    fn of(seq: u64) -> Self {
        let mut check = [0; 7];
        for (i, word) in check.iter_mut().enumerate() {
            *word = mix(seq ^ ((i as u64 + 1) << 56));
        }
        Self { seq, check }
    }
}

/// A 64-bit mixer (splitmix64's finalizer).
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The payload of byte-ring message `seq`: a length from 0 to 200 and
/// bytes, both derived from `seq`.
fn payload(seq: u64) -> Vec<u8> {
    let h = mix(seq);
    let len = (h % 201) as usize;
    (0..len)
        .map(|i| (h.rotate_left((i % 64) as u32) as u8) ^ (i as u8))
        .collect()
}

/// How a reader waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `try_recv` in a loop, spinning (and yielding now and then) on `Empty`.
    Spin,
    /// Blocking `recv`.
    Blocking,
    /// `recv_async` on a minimal executor.
    Async,
    /// `try_recv`, sleeping regularly: it falls behind and gets lapped.
    Sleepy,
    /// `try_recv_many` of up to [`BATCH`] in a loop, spinning on `Empty`.
    Batch,
    /// `try_recv_many`, sleeping regularly like `Sleepy`.
    SleepyBatch,
}

impl Mode {
    /// Whether it polls (and may see `Empty`) instead of waiting.
    fn polls(self) -> bool {
        matches!(
            self,
            Mode::Spin | Mode::Sleepy | Mode::Batch | Mode::SleepyBatch
        )
    }

    /// Whether it sleeps regularly, to be lapped.
    fn sleeps(self) -> bool {
        matches!(self, Mode::Sleepy | Mode::SleepyBatch)
    }
}

/// Most messages one batch receive takes.
const BATCH: usize = 16;

/// What one reader saw.
#[derive(Debug, Default)]
struct Stats {
    delivered: u64,
    missed: u64,
    expiries: u64,
    final_cursor: u64,
}

/// One receive's outcome, normalized over the rings and the waiting modes.
enum Got {
    /// This many values, each checked.
    Values(u64),
    Empty,
    Expired {
        missed: u64,
        resume_seq: u64,
    },
    Closed,
}

/// Runs a reader to `Closed`, checking each outcome. `recv(mode, seq)`
/// performs one receive at cursor `seq`, checks any value it gets against
/// `seq`, and reports the outcome; `cursor()` reads the cursor back.
fn run_reader(
    mode: Mode,
    start: u64,
    mut recv: impl FnMut(Mode) -> Got,
    mut cursor: impl FnMut() -> u64,
) -> Stats {
    let mut stats = Stats::default();
    let mut expected = start;
    let mut empty_spins = 0u32;
    loop {
        let seq = cursor();
        assert_eq!(seq, expected, "{mode:?}: cursor moved on its own");
        match recv(mode) {
            Got::Values(n) => {
                assert!(n >= 1, "{mode:?}: an empty batch");
                let before = stats.delivered;
                stats.delivered += n;
                expected = seq + n;
                if mode.sleeps() && before / 32 != stats.delivered / 32 {
                    thread::sleep(Duration::from_millis(2));
                }
            }
            Got::Empty => {
                assert!(mode.polls());
                empty_spins += 1;
                if empty_spins.is_multiple_of(64) {
                    thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
            Got::Expired { missed, resume_seq } => {
                assert!(missed >= 1, "{mode:?}: empty expiry");
                assert_eq!(resume_seq, seq + missed, "{mode:?}: resume_seq");
                stats.missed += missed;
                stats.expiries += 1;
                expected = resume_seq;
            }
            Got::Closed => {
                stats.final_cursor = seq;
                return stats;
            }
        }
    }
}

struct ThreadWaker {
    thread: thread::Thread,
    woken: AtomicBool,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// A minimal executor; panics if a pending future is not woken in time.
fn block_on<F: Future>(fut: F) -> F::Output {
    let state = Arc::new(ThreadWaker {
        thread: thread::current(),
        woken: AtomicBool::new(false),
    });
    let waker = Waker::from(Arc::clone(&state));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !state.woken.swap(false, Ordering::SeqCst) {
            let now = Instant::now();
            assert!(now < deadline, "lost wake-up");
            thread::park_timeout(deadline - now);
        }
    }
}

fn from_recv_error(e: RecvError) -> Got {
    match e {
        RecvError::Expired { missed, resume_seq } => Got::Expired { missed, resume_seq },
        RecvError::Closed => Got::Closed,
    }
}

fn from_try_recv_error(e: TryRecvError) -> Got {
    match e {
        TryRecvError::Empty => Got::Empty,
        TryRecvError::Expired { missed, resume_seq } => Got::Expired { missed, resume_seq },
        TryRecvError::Closed => Got::Closed,
    }
}

fn typed_reader(mut sub: Subscriber<Msg>, mode: Mode) -> Stats {
    let start = sub.cursor();
    let sub = std::cell::RefCell::new(&mut sub);
    let mut batch = Vec::with_capacity(BATCH);
    run_reader(
        mode,
        start,
        |mode| {
            let mut sub = sub.borrow_mut();
            let seq = sub.cursor();
            if matches!(mode, Mode::Batch | Mode::SleepyBatch) {
                batch.clear();
                return match sub.try_recv_many(&mut batch, BATCH) {
                    Ok(n) => {
                        assert_eq!(n, batch.len(), "{mode:?}: count against values");
                        for (seq, value) in (seq..).zip(&batch) {
                            assert_eq!(*value, Msg::of(seq), "{mode:?}: torn or misplaced");
                        }
                        Got::Values(n as u64)
                    }
                    Err(e) => {
                        assert!(batch.is_empty(), "{mode:?}: an error appended values");
                        from_try_recv_error(e)
                    }
                };
            }
            let result = match mode {
                Mode::Blocking => sub.recv().map_err(from_recv_error),
                Mode::Async => block_on(sub.recv_async()).map_err(from_recv_error),
                _ => sub.try_recv().map_err(from_try_recv_error),
            };
            match result {
                Ok(value) => {
                    assert_eq!(value, Msg::of(seq), "{mode:?}: torn or misplaced value");
                    Got::Values(1)
                }
                Err(got) => got,
            }
        },
        || sub.borrow().cursor(),
    )
}

fn byte_reader(mut sub: ByteSubscriber, mode: Mode) -> Stats {
    let start = sub.cursor();
    let sub = std::cell::RefCell::new(&mut sub);
    let mut buf = Vec::new();
    run_reader(
        mode,
        start,
        |mode| {
            let mut sub = sub.borrow_mut();
            let seq = sub.cursor();
            let result = match mode {
                Mode::Blocking => sub.recv(&mut buf).map_err(from_recv_error),
                Mode::Async => block_on(sub.recv_async(&mut buf)).map_err(from_recv_error),
                _ => sub.try_recv(&mut buf).map_err(from_try_recv_error),
            };
            match result {
                Ok(got_seq) => {
                    assert_eq!(got_seq, seq, "{mode:?}: sequence number");
                    assert!(
                        buf == payload(seq),
                        "{mode:?}: torn or misplaced payload at {seq}"
                    );
                    Got::Values(1)
                }
                Err(got) => got,
            }
        },
        || sub.borrow().cursor(),
    )
}

/// Publishes with `publish(seq)` for `duration`; returns how many.
fn publish_for(duration: Duration, mut publish: impl FnMut(u64) -> u64) -> u64 {
    let begin = Instant::now();
    let mut seq = 0;
    while begin.elapsed() < duration {
        for _ in 0..BURST {
            assert_eq!(publish(seq), seq);
            seq += 1;
        }
        thread::yield_now();
    }
    seq
}

const MODES: [Mode; 4] = [Mode::Spin, Mode::Blocking, Mode::Async, Mode::Sleepy];
/// The typed ring has batch receives too.
const TYPED_MODES: [Mode; 6] = [
    Mode::Spin,
    Mode::Blocking,
    Mode::Async,
    Mode::Sleepy,
    Mode::Batch,
    Mode::SleepyBatch,
];

fn check(published: u64, results: &[(Mode, Stats)]) {
    for (mode, stats) in results {
        eprintln!("{mode:?}: {stats:?} of {published}");
        assert_eq!(
            stats.delivered + stats.missed,
            published,
            "{mode:?}: delivered + missed"
        );
        assert_eq!(stats.final_cursor, published, "{mode:?}: final cursor");
        if mode.sleeps() {
            assert!(
                stats.expiries > 0,
                "{mode:?}: the sleeping reader was never lapped"
            );
        } else {
            assert!(
                stats.delivered >= 1000.min(published),
                "{mode:?}: a reader that keeps up received only {}",
                stats.delivered
            );
        }
    }
    let sleepy = &results.iter().find(|(m, _)| *m == Mode::Sleepy).unwrap().1;
    assert!(sleepy.delivered > 0, "the sleeping reader read nothing");
}

#[test]
fn typed_ring_stress() {
    let (mut publisher, first) = channel::<Msg>(64);
    let readers: Vec<_> = TYPED_MODES
        .iter()
        .map(|&mode| {
            let sub = first.clone();
            thread::spawn(move || (mode, typed_reader(sub, mode)))
        })
        .collect();
    drop(first);
    let published = publish_for(PUBLISH_FOR, |seq| publisher.publish(Msg::of(seq)));
    drop(publisher);
    let results: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    check(published, &results);
}

#[test]
fn byte_ring_stress() {
    // About 20 average messages fit the arena and 32 the index: bytes bind
    // most of the time, the index when a run of short messages comes.
    let config = Config::new()
        .capacity(32)
        .max_bytes(2048)
        .max_message_size(200);
    let (mut publisher, first) = bytes::channel(config).unwrap();
    let readers: Vec<_> = MODES
        .iter()
        .map(|&mode| {
            let sub = first.clone();
            thread::spawn(move || (mode, byte_reader(sub, mode)))
        })
        .collect();
    drop(first);
    let published = publish_for(PUBLISH_FOR, |seq| publisher.publish(payload(seq)).unwrap());
    drop(publisher);
    let results: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    check(published, &results);
}

/// Checks readers that chase the publisher at the overwrite edge: nearly
/// every read there races the write of the same slot.
fn check_edge(published: u64, results: &[(Mode, Stats)]) {
    for (mode, stats) in results {
        eprintln!("edge {mode:?}: {stats:?} of {published}");
        assert_eq!(
            stats.delivered + stats.missed,
            published,
            "delivered + missed"
        );
        assert_eq!(stats.final_cursor, published);
        assert!(stats.delivered > 0, "nothing delivered");
    }
}

#[test]
fn typed_ring_of_one_slot_never_tears() {
    // Capacity 1: the slot a reader copies is the one being rewritten (and
    // a batch of more than one always spans a rewritten slot).
    let (mut publisher, first) = channel::<Msg>(1);
    let readers: Vec<_> = [Mode::Spin, Mode::Spin, Mode::Batch]
        .into_iter()
        .map(|mode| {
            let sub = first.clone();
            thread::spawn(move || (mode, typed_reader(sub, mode)))
        })
        .collect();
    drop(first);
    let published = publish_for(PUBLISH_AT_EDGE_FOR, |seq| publisher.publish(Msg::of(seq)));
    drop(publisher);
    let results: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    check_edge(published, &results);
}

#[test]
fn byte_ring_of_tiny_arena_never_tears() {
    // Capacity 2 and room for about two messages' bytes: every read
    // races a write of its slot or of its bytes.
    let config = Config::new()
        .capacity(2)
        .max_bytes(256)
        .max_message_size(200);
    let (mut publisher, first) = bytes::channel(config).unwrap();
    let readers: Vec<_> = [Mode::Spin, Mode::Spin]
        .into_iter()
        .map(|mode| {
            let sub = first.clone();
            thread::spawn(move || (mode, byte_reader(sub, mode)))
        })
        .collect();
    drop(first);
    let published = publish_for(PUBLISH_AT_EDGE_FOR, |seq| {
        publisher.publish(payload(seq)).unwrap()
    });
    drop(publisher);
    let results: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    check_edge(published, &results);
}
