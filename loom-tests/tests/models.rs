//! Loom models of ringcast-core: small rings (capacity 1 or 2, one to three
//! publishes; the typed ring reserving one slot at a time, and in one model
//! two) whose every interleaving loom explores. They check that
//! nothing is lost, not only that nothing panics: every value read is the
//! one published under that sequence number (never torn), and
//! `delivered + missed == published` for each subscriber.
//!
//! Run with:
//!
//! ```text
//! RUSTFLAGS="--cfg ringcast_loom" LOOM_MAX_PREEMPTIONS=2 \
//!     CARGO_TARGET_DIR=target/loom cargo test -p ringcast-loom-tests --release
//! ```
//!
//! Without `--cfg ringcast_loom` this file is empty.

#![cfg(ringcast_loom)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use loom::thread;
use ringcast_core::bytes::{self, ByteSubscriber, Config};
use ringcast_core::{
    channel, channel_with_step, Publisher, RecvError, SubscribeError, Subscriber, TryRecvError,
};

/// The value published as message `seq`: two words, both `seq + 1`, so a
/// read mixing two messages (or a never-written slot) shows.
fn value(seq: u64) -> [u64; 2] {
    [seq + 1, seq + 1]
}

/// The byte-ring payload of message `seq` with `len` bytes.
fn payload(seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seq as u8 + 1) * 16 + i as u8).collect()
}

/// One checked receive outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// The message with this sequence number, checked against what was
    /// published under it.
    Value(u64),
    /// `Expired` at cursor `from`.
    Expired {
        from: u64,
        missed: u64,
        resume: u64,
    },
    Empty,
    Closed,
}

/// What a subscriber went through, in order.
#[derive(Debug, Default)]
struct Log {
    events: Vec<Event>,
}

impl Log {
    /// Records the outcome of a receive made at cursor `from`, after which
    /// the cursor is `to`, checking the cursor rule's bookkeeping.
    fn record(&mut self, from: u64, to: u64, outcome: Result<u64, TryRecvError>) -> Event {
        let event = match outcome {
            Ok(seq) => {
                assert_eq!(seq, from, "value from the wrong position");
                assert_eq!(to, from + 1, "cursor after a value");
                Event::Value(seq)
            }
            Err(TryRecvError::Expired { missed, resume_seq }) => {
                assert!(missed >= 1);
                assert_eq!(resume_seq, from + missed, "missed counts from the cursor");
                assert_eq!(to, resume_seq, "cursor after an expiry");
                Event::Expired {
                    from,
                    missed,
                    resume: resume_seq,
                }
            }
            Err(TryRecvError::Empty) => {
                assert_eq!(to, from, "cursor moved on Empty");
                Event::Empty
            }
            Err(TryRecvError::Closed) => {
                assert_eq!(to, from, "cursor moved on Closed");
                Event::Closed
            }
        };
        self.events.push(event);
        event
    }

    fn delivered(&self) -> Vec<u64> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Value(seq) => Some(*seq),
                _ => None,
            })
            .collect()
    }

    fn missed(&self) -> u64 {
        self.events
            .iter()
            .map(|e| match e {
                Event::Expired { missed, .. } => *missed,
                _ => 0,
            })
            .sum()
    }

    /// Checks the whole life of a subscriber that started at `start` and
    /// ended (with `Closed`) after `published` messages in all.
    fn check_complete(&self, start: u64, published: u64) {
        assert_eq!(self.events.last(), Some(&Event::Closed), "{self:?}");
        let delivered = self.delivered();
        assert!(
            delivered.windows(2).all(|w| w[0] < w[1]),
            "out of order: {self:?}"
        );
        assert_eq!(
            delivered.len() as u64 + self.missed(),
            published - start,
            "delivered + missed: {self:?}"
        );
    }
}

/// One `try_recv` on a typed subscriber, checked and logged.
fn typed_step(sub: &mut Subscriber<[u64; 2]>, log: &mut Log) -> Event {
    let from = sub.cursor();
    let outcome = sub.try_recv().map(|v| {
        assert_eq!(v, value(from), "torn or misplaced value at {from}");
        from
    });
    log.record(from, sub.cursor(), outcome)
}

/// One `try_recv_many` of up to `max` on a typed subscriber, each value
/// checked and logged as a receive of its own; returns the last event.
fn typed_batch_step(sub: &mut Subscriber<[u64; 2]>, max: usize, log: &mut Log) -> Event {
    let from = sub.cursor();
    let mut batch = Vec::new();
    match sub.try_recv_many(&mut batch, max) {
        Ok(n) => {
            assert!((1..=max).contains(&n), "batch of {n} for max {max}");
            assert_eq!(batch.len(), n);
            assert_eq!(sub.cursor(), from + n as u64, "cursor after a batch");
            let mut last = Event::Empty;
            for (seq, v) in (from..).zip(&batch) {
                assert_eq!(*v, value(seq), "torn or misplaced value at {seq}");
                last = log.record(seq, seq + 1, Ok(seq));
            }
            last
        }
        Err(e) => {
            assert!(batch.is_empty(), "an error appended values");
            log.record(from, sub.cursor(), Err(e))
        }
    }
}

/// Receives until `Closed`, yielding to loom on `Empty`.
fn typed_drain(sub: &mut Subscriber<[u64; 2]>, log: &mut Log) {
    loop {
        match typed_step(sub, log) {
            Event::Closed => return,
            Event::Empty => thread::yield_now(),
            _ => {}
        }
    }
}

/// One `try_recv` on a byte subscriber; `lens[seq]` is each message's length.
fn byte_step(sub: &mut ByteSubscriber, buf: &mut Vec<u8>, lens: &[usize], log: &mut Log) -> Event {
    let from = sub.cursor();
    let outcome = sub.try_recv(buf).inspect(|&seq| {
        assert_eq!(
            *buf,
            payload(seq, lens[seq as usize]),
            "torn or misplaced payload at {seq}"
        );
    });
    log.record(from, sub.cursor(), outcome)
}

/// A writer thread publishes messages 0, 1 and 2, then closes the ring,
/// while `sub` drains it. Returns the reader's log, checked: every message
/// delivered or missed, and the newest (never overwritten) delivered.
fn race_three_publishes(mut publisher: Publisher<[u64; 2]>, mut sub: Subscriber<[u64; 2]>) -> Log {
    let writer = thread::spawn(move || {
        for seq in 0..3 {
            assert_eq!(publisher.publish(value(seq)), seq);
        }
    });
    let mut log = Log::default();
    typed_drain(&mut sub, &mut log);
    writer.join().unwrap();
    log.check_complete(0, 3);
    assert_eq!(log.delivered().last(), Some(&2), "{log:?}");
    log
}

/// (a) A reader racing the writer on the one slot of a capacity-1 ring
/// never returns a torn or wrong value: each read is the value published
/// under its sequence number, or an expiry.
#[test]
fn read_racing_write_never_tears() {
    loom::model(|| {
        let (mut publisher, mut sub) = channel::<[u64; 2]>(1);
        publisher.publish(value(0));
        let writer = thread::spawn(move || {
            publisher.publish(value(1));
            publisher.publish(value(2));
        });
        let mut log = Log::default();
        for _ in 0..2 {
            typed_step(&mut sub, &mut log);
        }
        writer.join().unwrap();
        typed_drain(&mut sub, &mut log);
        log.check_complete(0, 3);
        // The newest message is never overwritten, so it is always read.
        assert_eq!(log.delivered().last(), Some(&2), "{log:?}");
    });
}

/// (b) Lapping is detected exactly: with capacity 1 and two publishes
/// racing a reader, each expiry skips exactly the one message that was
/// being (or had been) overwritten, and the counts add up.
#[test]
fn lapping_detected_exactly() {
    loom::model(|| {
        let (mut publisher, mut sub) = channel::<[u64; 2]>(1);
        let writer = thread::spawn(move || {
            publisher.publish(value(0));
            publisher.publish(value(1));
            // Dropping closes the ring.
        });
        let mut log = Log::default();
        typed_drain(&mut sub, &mut log);
        writer.join().unwrap();
        log.check_complete(0, 2);
        let expiries: Vec<_> = log
            .events
            .iter()
            .filter(|e| matches!(e, Event::Expired { .. }))
            .collect();
        match log.delivered()[..] {
            [0, 1] => assert!(expiries.is_empty(), "{log:?}"),
            [1] => assert_eq!(
                expiries,
                [&Event::Expired {
                    from: 0,
                    missed: 1,
                    resume: 1
                }],
                "{log:?}"
            ),
            _ => panic!("impossible outcome: {log:?}"),
        }
    });
}

/// (b2) Reservation running ahead: capacity 1 reserving two messages at a
/// time (two slots). The third publish reserves messages 2 and 3, which
/// expires 0 and 1 together while a reader may be copying either. Every
/// value read is exact, no expiry is reported for a message that was
/// delivered, and the counts add up.
#[test]
fn reservation_step_expires_exactly() {
    loom::model(|| {
        let (publisher, sub) = channel_with_step::<[u64; 2]>(1, 0, 2);
        let log = race_three_publishes(publisher, sub);
        for e in &log.events {
            if let Event::Expired { resume, .. } = e {
                assert_eq!(*resume, 2, "only the reservation at 2 expires: {log:?}");
            }
        }
    });
}

/// (b3) One check validates a whole batch: with two slots holding messages
/// 0 and 1, a writer publishes 2 and 3 (overwriting both) while the reader
/// takes up to two at once. Every value a batch returns is exact, no
/// message is both delivered and missed, and the counts add up.
#[test]
fn batch_read_racing_writes_never_tears() {
    loom::model(|| {
        let (mut publisher, mut sub) = channel::<[u64; 2]>(2);
        publisher.publish(value(0));
        publisher.publish(value(1));
        let writer = thread::spawn(move || {
            publisher.publish(value(2));
            publisher.publish(value(3));
        });
        let mut log = Log::default();
        typed_batch_step(&mut sub, 2, &mut log);
        writer.join().unwrap();
        loop {
            match typed_batch_step(&mut sub, 2, &mut log) {
                Event::Closed => break,
                Event::Empty => thread::yield_now(),
                _ => {}
            }
        }
        log.check_complete(0, 4);
        assert_eq!(log.delivered().last(), Some(&3), "{log:?}");
    });
}

/// (c) A subscriber created while a publish is under way starts at a head
/// it observed and then sees exactly the messages from there on, gap-free;
/// `subscribe_at` concurrently either refuses a future position or reads
/// exactly from it.
#[test]
fn subscribe_during_publish() {
    loom::model(|| {
        let (mut publisher, first) = channel::<[u64; 2]>(2);
        drop(first);
        let handle = publisher.handle();
        let writer = thread::spawn(move || {
            publisher.publish(value(0));
            publisher.publish(value(1));
        });
        let mut sub = handle.subscribe();
        let start = sub.cursor();
        let at_one = handle.subscribe_at(1);
        let mut log = Log::default();
        // Read concurrently with the rest of the publishes.
        typed_step(&mut sub, &mut log);
        writer.join().unwrap();
        typed_drain(&mut sub, &mut log);
        // Capacity 2 holds everything: no expiry, exactly start..2.
        log.check_complete(start, 2);
        assert_eq!(log.delivered(), (start..2).collect::<Vec<_>>(), "{log:?}");
        match at_one {
            Ok(mut sub) => {
                let mut log = Log::default();
                typed_drain(&mut sub, &mut log);
                assert_eq!(log.delivered(), [1], "{log:?}");
                log.check_complete(1, 2);
            }
            Err(SubscribeError::Future { seq: 1, head: 0 }) => {}
            Err(e) => panic!("subscribe_at(1): {e:?}"),
        }
    });
}

/// (d) Nothing lost, typed ring: a reader racing three publishes into two
/// slots accounts for every message, delivered or missed.
#[test]
fn nothing_lost_typed() {
    loom::model(|| {
        let (publisher, sub) = channel::<[u64; 2]>(2);
        race_three_publishes(publisher, sub);
    });
}

/// (d) Nothing lost, byte ring: capacity 2 and a 16-byte arena, so the
/// third message reuses the bytes of both earlier ones while they may be
/// being copied. Every payload read is exact; the counts add up.
#[test]
fn nothing_lost_bytes() {
    // Positions: #0 [0, 8), #1 [8, 16) (3 bytes, rounded to 8), #2 [16, 32).
    const LENS: [usize; 3] = [8, 3, 16];
    loom::model(|| {
        let config = Config::new().capacity(2).max_bytes(16).max_message_size(16);
        let (mut publisher, mut sub) = bytes::channel(config).unwrap();
        let writer = thread::spawn(move || {
            for (seq, len) in LENS.iter().enumerate() {
                let seq = seq as u64;
                assert_eq!(publisher.publish(payload(seq, *len)).unwrap(), seq);
            }
        });
        let mut log = Log::default();
        let mut buf = Vec::new();
        loop {
            match byte_step(&mut sub, &mut buf, &LENS, &mut log) {
                Event::Closed => break,
                Event::Empty => thread::yield_now(),
                _ => {}
            }
        }
        writer.join().unwrap();
        log.check_complete(0, 3);
        assert_eq!(log.delivered().last(), Some(&2), "{log:?}");
    });
}

/// (e) A reader blocked in `recv` is woken by a publish: no lost wake-up
/// (loom reports a deadlock if the parked reader is never notified).
#[test]
fn blocking_recv_woken_by_publish() {
    loom::model(|| {
        let (mut publisher, mut sub) = channel::<[u64; 2]>(1);
        let reader = thread::spawn(move || sub.recv());
        publisher.publish(value(0));
        assert_eq!(reader.join().unwrap(), Ok(value(0)));
    });
}

/// (e) A reader blocked in `recv` is woken by the close.
#[test]
fn blocking_recv_woken_by_close() {
    loom::model(|| {
        let (publisher, mut sub) = channel::<[u64; 2]>(1);
        let reader = thread::spawn(move || sub.recv());
        drop(publisher);
        assert_eq!(reader.join().unwrap(), Err(RecvError::Closed));
    });
}

/// (e) A pending `recv_async` is woken by a publish (loom's `block_on`
/// waits on a notification that only the waker gives).
#[test]
fn async_recv_woken_by_publish() {
    loom::model(|| {
        let (mut publisher, mut sub) = channel::<[u64; 2]>(1);
        let reader = thread::spawn(move || loom::future::block_on(sub.recv_async()));
        publisher.publish(value(0));
        assert_eq!(reader.join().unwrap(), Ok(value(0)));
    });
}

/// (e) A pending `recv_async` is woken by the close.
#[test]
fn async_recv_woken_by_close() {
    loom::model(|| {
        let (publisher, mut sub) = channel::<[u64; 2]>(1);
        let reader = thread::spawn(move || loom::future::block_on(sub.recv_async()));
        drop(publisher);
        assert_eq!(reader.join().unwrap(), Err(RecvError::Closed));
    });
}

/// (e) The byte ring's blocking `recv` is woken by a publish too.
#[test]
fn byte_blocking_recv_woken_by_publish() {
    loom::model(|| {
        let config = Config::new().capacity(1).max_bytes(8).max_message_size(8);
        let (mut publisher, mut sub) = bytes::channel(config).unwrap();
        let reader = thread::spawn(move || {
            let mut buf = Vec::new();
            sub.recv(&mut buf).map(|seq| (seq, buf))
        });
        publisher.publish(payload(0, 5)).unwrap();
        assert_eq!(reader.join().unwrap(), Ok((0, payload(0, 5))));
    });
}

/// A waker that does nothing (`Waker::noop` is newer than the MSRV).
struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

/// (e) A pending `recv_async` dropped while a publish races it loses
/// nothing: the message is there for the next receive, and the dropped
/// registration does not leave the ring in a state that wedges it (loom
/// also checks that nothing leaks).
#[test]
fn async_recv_dropped_while_publishing() {
    loom::model(|| {
        let (mut publisher, mut sub) = channel::<[u64; 2]>(1);
        let writer = thread::spawn(move || {
            publisher.publish(value(0));
            publisher
        });
        let waker = Waker::from(Arc::new(Noop));
        let first = {
            let mut fut = sub.recv_async();
            Pin::new(&mut fut).poll(&mut Context::from_waker(&waker))
        };
        let mut publisher = writer.join().unwrap();
        match first {
            Poll::Ready(got) => {
                assert_eq!(got, Ok(value(0)));
                assert_eq!(sub.try_recv(), Err(TryRecvError::Empty));
            }
            Poll::Pending => assert_eq!(sub.try_recv(), Ok(value(0))),
        }
        // The ring still works, for blocking and async readers alike.
        publisher.publish(value(1));
        assert_eq!(loom::future::block_on(sub.recv_async()), Ok(value(1)));
    });
}
