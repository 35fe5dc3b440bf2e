//! The six in-process contenders behind one small interface.
//!
//! Each contender is created with a capacity (4096 for all) and a number of
//! readers, all attached before the first publish. The publisher publishes
//! message after message; a reader polls without blocking and hands every
//! message (or every loss it is told about) to a [`Sink`]. How each one fans
//! out:
//!
//! | contender | fan-out | full / slow reader |
//! | --- | --- | --- |
//! | ringcast | one ring, a cursor per reader (typed ring: batches of up to 64 per receive) | overwrites; reader told `Expired { missed }` |
//! | tokio broadcast | one ring, a position per receiver, values cloned out | overwrites; receiver told `Lagged(n)` |
//! | bus | one ring, a read count per slot, values cloned out | publisher waits |
//! | disruptor | one ring of preallocated events, a sequence per poller | publisher busy-spins |
//! | crossbeam-channel | one bounded channel per reader, a copy per reader | publisher waits |
//! | std mpsc sync_channel | one bounded channel per reader, a copy per reader | publisher waits |

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;

use disruptor::{
    BusySpin, EventPoller, MultiConsumerBarrier, Polling, Producer as _, SingleConsumerBarrier,
    SingleProducer, SingleProducerBarrier,
};

use super::kinds::{Kind, U64};

/// Where a reader hands what it receives.
pub trait Sink {
    /// A message carrying `seq_bits` (the sequence number's carried bits)
    /// and timestamp `ts`.
    fn msg(&mut self, seq_bits: u64, ts: u64);
    /// The contender said `missed` messages are gone; ringcast also says
    /// where the reader resumes.
    fn lost(&mut self, missed: u64, resume: Option<u64>);
    /// A message that failed its integrity check.
    fn bad(&mut self);
}

/// What one poll found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// Handed at least one message or loss to the sink.
    Progress,
    /// Nothing yet.
    Empty,
    /// The publisher is gone and everything was read.
    Closed,
}

/// Most messages one poll hands over before returning.
const BATCH: usize = 64;

/// One contender carrying message type `K`.
pub trait Contender<K: Kind>: 'static {
    /// Name in tables.
    const NAME: &'static str;
    /// Whether it drops messages for slow readers (and says so) instead of
    /// making the publisher wait.
    const LOSSY: bool;
    /// Fewest readers it can be built with.
    const MIN_READERS: usize = 0;
    /// The publishing side.
    type Tx: Send;
    /// One reader.
    type Rx: Send;
    /// A contender of `capacity` messages with `readers` readers attached.
    fn new(capacity: usize, readers: usize) -> (Self::Tx, Vec<Self::Rx>);
    /// Publishes message `seq`; blocking contenders wait while full.
    fn publish(tx: &mut Self::Tx, seq: u64, ts: u64);
    /// Hands up to a batch of available messages to `sink`; never blocks.
    fn poll(rx: &mut Self::Rx, sink: &mut impl Sink) -> Poll;
}

/// ringcast-core: the typed ring for `u64` and the struct, the byte ring for
/// byte payloads.
pub struct Ringcast;

impl<K: Kind> Contender<K> for Ringcast {
    const NAME: &'static str = "ringcast";
    const LOSSY: bool = true;
    type Tx = K::RcTx;
    type Rx = K::RcRx;

    fn new(capacity: usize, readers: usize) -> (Self::Tx, Vec<Self::Rx>) {
        let (tx, first) = K::rc_new(capacity);
        let mut rxs = Vec::with_capacity(readers);
        if readers > 0 {
            rxs.push(first);
        }
        while rxs.len() < readers {
            rxs.push(K::rc_subscribe(&tx));
        }
        (tx, rxs)
    }

    #[inline]
    fn publish(tx: &mut Self::Tx, seq: u64, ts: u64) {
        K::rc_publish(tx, seq, ts);
    }

    #[inline]
    fn poll(rx: &mut Self::Rx, sink: &mut impl Sink) -> Poll {
        K::rc_poll(rx, BATCH, sink)
    }
}

/// `tokio::sync::broadcast`, used from plain threads (`try_recv`).
pub struct TokioBroadcast;

impl<K: Kind> Contender<K> for TokioBroadcast {
    const NAME: &'static str = "tokio broadcast";
    const LOSSY: bool = true;
    type Tx = tokio::sync::broadcast::Sender<K::Val>;
    type Rx = tokio::sync::broadcast::Receiver<K::Val>;

    fn new(capacity: usize, readers: usize) -> (Self::Tx, Vec<Self::Rx>) {
        let (tx, first) = tokio::sync::broadcast::channel(capacity);
        let mut rxs = Vec::with_capacity(readers);
        if readers > 0 {
            rxs.push(first);
        }
        while rxs.len() < readers {
            rxs.push(tx.subscribe());
        }
        (tx, rxs)
    }

    #[inline]
    fn publish(tx: &mut Self::Tx, seq: u64, ts: u64) {
        // With no receiver at all, `send` refuses and stores nothing.
        let _ = tx.send(K::make(seq, ts));
    }

    #[inline]
    fn poll(rx: &mut Self::Rx, sink: &mut impl Sink) -> Poll {
        use tokio::sync::broadcast::error::TryRecvError as E;
        for n in 0..BATCH {
            match rx.try_recv() {
                Ok(v) => match K::parse(&v) {
                    Some((seq, ts)) => sink.msg(seq, ts),
                    None => sink.bad(),
                },
                Err(E::Lagged(missed)) => sink.lost(missed, None),
                Err(E::Empty) if n == 0 => return Poll::Empty,
                Err(E::Closed) if n == 0 => return Poll::Closed,
                Err(E::Empty | E::Closed) => return Poll::Progress,
            }
        }
        Poll::Progress
    }
}

/// `bus`: a lock-free broadcast ring whose publisher waits for the slowest
/// reader.
pub struct BusCrate;

impl<K: Kind> Contender<K> for BusCrate {
    const NAME: &'static str = "bus";
    const LOSSY: bool = false;
    type Tx = bus::Bus<K::Val>;
    type Rx = bus::BusReader<K::Val>;

    fn new(capacity: usize, readers: usize) -> (Self::Tx, Vec<Self::Rx>) {
        let mut tx = bus::Bus::new(capacity);
        let rxs = (0..readers).map(|_| tx.add_rx()).collect();
        (tx, rxs)
    }

    #[inline]
    fn publish(tx: &mut Self::Tx, seq: u64, ts: u64) {
        tx.broadcast(K::make(seq, ts));
    }

    #[inline]
    fn poll(rx: &mut Self::Rx, sink: &mut impl Sink) -> Poll {
        use std::sync::mpsc::TryRecvError as E;
        for n in 0..BATCH {
            match rx.try_recv() {
                Ok(v) => match K::parse(&v) {
                    Some((seq, ts)) => sink.msg(seq, ts),
                    None => sink.bad(),
                },
                Err(E::Empty) if n == 0 => return Poll::Empty,
                Err(E::Disconnected) if n == 0 => return Poll::Closed,
                Err(_) => return Poll::Progress,
            }
        }
        Poll::Progress
    }
}

/// `disruptor` v4: single producer, one event poller per reader (the
/// library's polling API, so that the benchmark owns the reader threads).
/// The builder's wait strategy is `BusySpin`; pollers are polled by the
/// benchmark's own loop, and a full ring makes the producer busy-spin.
pub struct Disruptor;

/// The disruptor's producer type differs between one consumer and several.
pub enum DisruptorTx<E: Send + Sync + 'static> {
    /// Exactly one poller: the single-consumer barrier.
    One(SingleProducer<E, SingleConsumerBarrier>),
    /// Several pollers: the producer waits for the slowest.
    Many(SingleProducer<E, MultiConsumerBarrier>),
}

impl<K: Kind> Contender<K> for Disruptor {
    const NAME: &'static str = "disruptor";
    const LOSSY: bool = false;
    /// The disruptor cannot be built without a consumer.
    const MIN_READERS: usize = 1;
    type Tx = DisruptorTx<K::Slot>;
    type Rx = EventPoller<K::Slot, SingleProducerBarrier>;

    fn new(capacity: usize, readers: usize) -> (Self::Tx, Vec<Self::Rx>) {
        assert!(readers >= 1, "the disruptor needs at least one consumer");
        let builder = disruptor::build_single_producer(capacity, K::slot_new, BusySpin);
        let (first, builder) = builder.new_event_poller();
        if readers == 1 {
            return (DisruptorTx::One(builder.build()), vec![first]);
        }
        let (second, mut builder) = builder.new_event_poller();
        let mut rxs = vec![first, second];
        while rxs.len() < readers {
            let (poller, next) = builder.new_event_poller();
            rxs.push(poller);
            builder = next;
        }
        (DisruptorTx::Many(builder.build()), rxs)
    }

    #[inline]
    fn publish(tx: &mut Self::Tx, seq: u64, ts: u64) {
        match tx {
            DisruptorTx::One(p) => p.publish(|e| K::slot_write(e, seq, ts)),
            DisruptorTx::Many(p) => p.publish(|e| K::slot_write(e, seq, ts)),
        }
    }

    #[inline]
    fn poll(rx: &mut Self::Rx, sink: &mut impl Sink) -> Poll {
        match rx.poll() {
            Ok(mut events) => {
                for e in &mut events {
                    match K::slot_parse(e) {
                        Some((seq, ts)) => sink.msg(seq, ts),
                        None => sink.bad(),
                    }
                }
                Poll::Progress
            }
            Err(Polling::NoEvents) => Poll::Empty,
            Err(Polling::Shutdown) => Poll::Closed,
        }
    }
}

/// `crossbeam-channel`: one bounded channel per reader; the publisher sends
/// a copy (a clone) to each.
pub struct Crossbeam;

impl<K: Kind> Contender<K> for Crossbeam {
    const NAME: &'static str = "crossbeam-channel";
    const LOSSY: bool = false;
    type Tx = Vec<crossbeam_channel::Sender<K::Val>>;
    type Rx = crossbeam_channel::Receiver<K::Val>;

    fn new(capacity: usize, readers: usize) -> (Self::Tx, Vec<Self::Rx>) {
        (0..readers)
            .map(|_| crossbeam_channel::bounded(capacity))
            .unzip()
    }

    #[inline]
    fn publish(tx: &mut Self::Tx, seq: u64, ts: u64) {
        let v = K::make(seq, ts);
        if let Some((last, rest)) = tx.split_last() {
            for s in rest {
                // A reader never hangs up before the publisher is done.
                let _ = s.send(v.clone());
            }
            let _ = last.send(v);
        }
    }

    #[inline]
    fn poll(rx: &mut Self::Rx, sink: &mut impl Sink) -> Poll {
        use crossbeam_channel::TryRecvError as E;
        for n in 0..BATCH {
            match rx.try_recv() {
                Ok(v) => match K::parse(&v) {
                    Some((seq, ts)) => sink.msg(seq, ts),
                    None => sink.bad(),
                },
                Err(E::Empty) if n == 0 => return Poll::Empty,
                Err(E::Disconnected) if n == 0 => return Poll::Closed,
                Err(_) => return Poll::Progress,
            }
        }
        Poll::Progress
    }
}

/// `std::sync::mpsc::sync_channel`: one bounded channel per reader, a copy
/// to each.
pub struct StdMpsc;

impl<K: Kind> Contender<K> for StdMpsc {
    const NAME: &'static str = "std mpsc sync_channel";
    const LOSSY: bool = false;
    type Tx = Vec<mpsc::SyncSender<K::Val>>;
    type Rx = mpsc::Receiver<K::Val>;

    fn new(capacity: usize, readers: usize) -> (Self::Tx, Vec<Self::Rx>) {
        (0..readers).map(|_| mpsc::sync_channel(capacity)).unzip()
    }

    #[inline]
    fn publish(tx: &mut Self::Tx, seq: u64, ts: u64) {
        let v = K::make(seq, ts);
        if let Some((last, rest)) = tx.split_last() {
            for s in rest {
                let _ = s.send(v.clone());
            }
            let _ = last.send(v);
        }
    }

    #[inline]
    fn poll(rx: &mut Self::Rx, sink: &mut impl Sink) -> Poll {
        use std::sync::mpsc::TryRecvError as E;
        for n in 0..BATCH {
            match rx.try_recv() {
                Ok(v) => match K::parse(&v) {
                    Some((seq, ts)) => sink.msg(seq, ts),
                    None => sink.bad(),
                },
                Err(E::Empty) if n == 0 => return Poll::Empty,
                Err(E::Disconnected) if n == 0 => return Poll::Closed,
                Err(_) => return Poll::Progress,
            }
        }
        Poll::Progress
    }
}

/// Not a contender: the floor under every contender's latency. One shared
/// word holds the newest `u64` message; the publisher overwrites it, and the
/// reader polls it and takes it when it changed. A message crosses as one
/// store and one load of one cache line, the least any structure shared
/// between two threads can do, so no ring can deliver faster than this does
/// on the same two threads. It keeps nothing: a reader that was slower than
/// the publisher skips to the newest message, and counts the skip as missed
/// from the sequence numbers messages carry.
pub struct OneWord;

/// [`OneWord`]'s word, and whether its publisher is gone.
pub struct OneWordShared {
    /// The newest message; [`ONE_WORD_EMPTY`] before the first.
    word: Padded<AtomicU64>,
    closed: AtomicBool,
}

/// A cache line (two, against the adjacent-line prefetcher) to itself.
#[repr(align(128))]
struct Padded<T>(T);

/// No message yet. No `u64` message equals it in a run of fewer than
/// `2^24 - 1` messages: its sequence bits are all ones.
const ONE_WORD_EMPTY: u64 = u64::MAX;

/// [`OneWord`]'s publisher: dropping it closes the word.
pub struct OneWordTx(Arc<OneWordShared>);

impl Drop for OneWordTx {
    fn drop(&mut self) {
        // Release: a reader that sees `closed` sees the last message too.
        self.0.closed.store(true, Ordering::Release);
    }
}

/// [`OneWord`]'s reader.
pub struct OneWordRx {
    shared: Arc<OneWordShared>,
    /// The word as last taken.
    last: u64,
    /// The full sequence number of the next message.
    next: u64,
}

impl Contender<U64> for OneWord {
    const NAME: &'static str = "one shared word (floor)";
    const LOSSY: bool = true;
    type Tx = OneWordTx;
    type Rx = OneWordRx;

    fn new(_capacity: usize, readers: usize) -> (Self::Tx, Vec<Self::Rx>) {
        let shared = Arc::new(OneWordShared {
            word: Padded(AtomicU64::new(ONE_WORD_EMPTY)),
            closed: AtomicBool::new(false),
        });
        let rxs = (0..readers)
            .map(|_| OneWordRx {
                shared: Arc::clone(&shared),
                last: ONE_WORD_EMPTY,
                next: 0,
            })
            .collect();
        (OneWordTx(shared), rxs)
    }

    #[inline]
    fn publish(tx: &mut Self::Tx, seq: u64, ts: u64) {
        // Release: the reader's Acquire load pairs with it (the message is
        // the word itself; this only orders it before `closed`).
        tx.0.word.0.store(U64::make(seq, ts), Ordering::Release);
    }

    #[inline]
    fn poll(rx: &mut Self::Rx, sink: &mut impl Sink) -> Poll {
        // `closed` first: if it reads true, the word loaded after it is the
        // last message.
        let closed = rx.shared.closed.load(Ordering::Acquire);
        let word = rx.shared.word.0.load(Ordering::Acquire);
        if word == rx.last {
            return if closed { Poll::Closed } else { Poll::Empty };
        }
        rx.last = word;
        let Some((seq_bits, ts)) = U64::parse(&word) else {
            sink.bad();
            return Poll::Progress;
        };
        let skipped = seq_bits.wrapping_sub(rx.next) & U64::SEQ_MASK;
        if skipped > 0 {
            sink.lost(skipped, None);
            rx.next += skipped;
        }
        sink.msg(seq_bits, ts);
        rx.next += 1;
        Poll::Progress
    }
}

/// Not a contender: the floor under every publisher's rate. A ring of
/// `capacity` words in which the publisher stores each `u64` message into
/// its slot and does nothing else: no head, no reservation, no check, no
/// waiting. Its readers tell a new message from an old one by the sequence
/// number each benchmark message carries, which no general ring can rely
/// on. A publisher cannot do less per message than store it, so with the
/// same readers reading behind it no ring can publish faster than this on
/// the same threads. A reader that finds its slot already rewritten
/// resumes at the oldest message that slot's content proves may still be
/// intact, and counts the rest as missed. Runs must publish fewer than
/// 2^23 messages (sequence numbers carry 24 bits).
pub struct SlotStores;

/// [`SlotStores`]' slots, and whether its publisher is gone.
pub struct SlotStoresShared {
    /// Message `seq` lives in slot `seq % slots.len()`; [`SLOT_EMPTY`]
    /// before the first message reaches it.
    slots: Box<[AtomicU64]>,
    closed: Padded<AtomicBool>,
}

/// No message yet: its sequence bits are all ones, so to a reader expecting
/// a message below 2^23 it reads as older than that message.
const SLOT_EMPTY: u64 = u64::MAX;

/// [`SlotStores`]' publisher: dropping it closes the ring.
pub struct SlotStoresTx(Arc<SlotStoresShared>);

impl Drop for SlotStoresTx {
    fn drop(&mut self) {
        // Release: a reader that sees `closed` sees every message too.
        self.0.closed.0.store(true, Ordering::Release);
    }
}

/// [`SlotStores`]' reader.
pub struct SlotStoresRx {
    shared: Arc<SlotStoresShared>,
    /// The full sequence number of the next message.
    next: u64,
}

impl SlotStoresRx {
    /// How far past the expected message is the one in `word`, found in the
    /// expected message's slot: 0 for the message itself, more for a later
    /// one; `None` for an earlier one or none yet (it is not there yet).
    fn look(&self, word: u64) -> Option<u64> {
        let (seq_bits, _) = unpack(word);
        let ahead = seq_bits.wrapping_sub(self.next) & U64::SEQ_MASK;
        (ahead <= U64::SEQ_MASK / 2).then_some(ahead)
    }

    fn slot(&self) -> &AtomicU64 {
        let slots = &self.shared.slots;
        // `slots.len()` is a power of two.
        &slots[self.next as usize & (slots.len() - 1)]
    }

    /// Hands `word`, found in the expected message's slot `ahead` messages
    /// past it ([`look`](Self::look)), to `sink`.
    fn take(&mut self, word: u64, ahead: u64, sink: &mut impl Sink) {
        match ahead {
            0 => {
                let (seq_bits, ts) = unpack(word);
                sink.msg(seq_bits, ts);
                self.next += 1;
            }
            ahead => {
                // The slot holds message `next + ahead`, so every message
                // up to `ahead - len` after `next` had its slot rewritten.
                // Resuming right after them would put the reader where the
                // publisher writes next; like ringcast's readers, it skips
                // a quarter of the ring further.
                let len = self.shared.slots.len() as u64;
                let missed = ahead - len + 1 + len / 4;
                self.next += missed;
                sink.lost(missed, Some(self.next));
            }
        }
    }
}

fn unpack(word: u64) -> (u64, u64) {
    U64::parse(&word).expect("every u64 parses")
}

impl Contender<U64> for SlotStores {
    const NAME: &'static str = "one store per message (floor)";
    const LOSSY: bool = true;
    type Tx = SlotStoresTx;
    type Rx = SlotStoresRx;

    fn new(capacity: usize, readers: usize) -> (Self::Tx, Vec<Self::Rx>) {
        let len = capacity.next_power_of_two();
        let shared = Arc::new(SlotStoresShared {
            slots: (0..len).map(|_| AtomicU64::new(SLOT_EMPTY)).collect(),
            closed: Padded(AtomicBool::new(false)),
        });
        let rxs = (0..readers)
            .map(|_| SlotStoresRx {
                shared: Arc::clone(&shared),
                next: 0,
            })
            .collect();
        (SlotStoresTx(shared), rxs)
    }

    #[inline]
    fn publish(tx: &mut Self::Tx, seq: u64, ts: u64) {
        let slots = &tx.0.slots;
        // Release: the message is the word itself; this only orders it
        // before the next messages and `closed`.
        slots[seq as usize & (slots.len() - 1)].store(U64::make(seq, ts), Ordering::Release);
    }

    #[inline]
    fn poll(rx: &mut Self::Rx, sink: &mut impl Sink) -> Poll {
        for n in 0..BATCH {
            let word = rx.slot().load(Ordering::Acquire);
            match rx.look(word) {
                Some(ahead) => rx.take(word, ahead, sink),
                None if n > 0 => return Poll::Progress,
                None => {
                    // `closed` first, then the slot once more: if `closed`
                    // read true, that load sees the last message.
                    let closed = rx.shared.closed.0.load(Ordering::Acquire);
                    let word = rx.slot().load(Ordering::Acquire);
                    match rx.look(word) {
                        Some(ahead) => rx.take(word, ahead, sink),
                        None if closed => return Poll::Closed,
                        None => return Poll::Empty,
                    }
                }
            }
        }
        Poll::Progress
    }
}

/// A contender and a message type, as a type.
pub struct Pair<K, C>(PhantomData<fn() -> (K, C)>);

impl<K, C> Default for Pair<K, C> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inproc::check::{CheckSink, Checker};

    #[test]
    fn one_word_counts_what_a_late_reader_skipped() {
        let (mut tx, mut rxs) = <OneWord as Contender<U64>>::new(4096, 1);
        let rx = &mut rxs[0];
        let mut sink = CheckSink(Checker::new(U64::SEQ_MASK));
        assert_eq!(OneWord::poll(rx, &mut sink), Poll::Empty);
        OneWord::publish(&mut tx, 0, 7);
        assert_eq!(OneWord::poll(rx, &mut sink), Poll::Progress);
        assert_eq!(OneWord::poll(rx, &mut sink), Poll::Empty);
        for seq in 1..5 {
            OneWord::publish(&mut tx, seq, 7);
        }
        assert_eq!(OneWord::poll(rx, &mut sink), Poll::Progress);
        assert_eq!((sink.0.delivered, sink.0.missed), (2, 3));
        OneWord::publish(&mut tx, 5, 7);
        drop(tx);
        assert_eq!(OneWord::poll(rx, &mut sink), Poll::Progress);
        assert_eq!(OneWord::poll(rx, &mut sink), Poll::Closed);
        assert_eq!(sink.0.verdict(6, true), Ok(()));
    }

    #[test]
    fn slot_stores_deliver_in_order_and_count_what_was_rewritten() {
        let (mut tx, mut rxs) = <SlotStores as Contender<U64>>::new(32, 2);
        let mut sinks = [(); 2].map(|()| CheckSink(Checker::new(U64::SEQ_MASK)));
        assert_eq!(SlotStores::poll(&mut rxs[0], &mut sinks[0]), Poll::Empty);
        // Reader 0 keeps up; reader 1 is lapped: after message 80 the slots
        // hold 49..=80.
        for seq in 0..81 {
            SlotStores::publish(&mut tx, seq, 7);
            assert_eq!(SlotStores::poll(&mut rxs[0], &mut sinks[0]), Poll::Progress);
        }
        assert_eq!(SlotStores::poll(&mut rxs[1], &mut sinks[1]), Poll::Progress);
        // Its slot for message 0 holds 64, which proves 0..=32 rewritten; it
        // resumes 8 (a quarter of 32) further, at 41. There it finds 73, so
        // 41 is gone too: it skips 9, to 50, which is intact, as is
        // everything after it.
        assert_eq!((sinks[1].0.delivered, sinks[1].0.missed), (31, 50));
        drop(tx);
        for (rx, sink) in rxs.iter_mut().zip(&mut sinks) {
            while SlotStores::poll(rx, sink) != Poll::Closed {}
            assert_eq!(sink.0.verdict(81, true), Ok(()));
        }
        assert_eq!(sinks[0].0.delivered, 81);
    }
}
