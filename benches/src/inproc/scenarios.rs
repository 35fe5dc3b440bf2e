//! The measurements, generic over a message type and a contender, each
//! checking every reader's answers before it returns a number.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::alloc;
use super::check::{CheckSink, Checker, LatencySink};
use super::contenders::{Contender, Pair, Poll, Sink};
use super::kinds::Kind;
use crate::report::Samples;

/// Every contender's capacity, in messages.
pub const CAPACITY: usize = 4096;

/// Empty polls a reader spins through (with a spin-loop hint) before it
/// starts yielding its core between polls.
const SPINS_BEFORE_YIELD: u32 = 100;

/// Lines up the threads of a run before it starts, spinning rather than
/// sleeping: a thread woken from a sleep may be placed on the core of the
/// thread that woke it and wait there for the scheduler to move it, a
/// millisecond or more into a run that lasts a few.
struct StartGate {
    arrived: AtomicUsize,
    threads: usize,
}

impl StartGate {
    fn new(threads: usize) -> Self {
        Self {
            arrived: AtomicUsize::new(0),
            threads,
        }
    }

    /// Returns once all `threads` have called it. Spins, yielding its core
    /// now and then in case another of the threads needs it to arrive.
    fn wait(&self) {
        // AcqRel/Acquire: what each thread did before it arrived is visible
        // to every thread that leaves.
        self.arrived.fetch_add(1, Ordering::AcqRel);
        let mut spins = 0u32;
        while self.arrived.load(Ordering::Acquire) < self.threads {
            spins += 1;
            if spins.is_multiple_of(1024) {
                std::thread::yield_now();
            } else {
                spin_loop();
            }
        }
    }
}

/// Polls `rx` until the contender says it is closed and drained, spinning
/// (then yielding) while it is empty. Every reader of every contender waits
/// this same way: the benchmark measures the structures, not their parking.
fn read_until_closed<K: Kind, C: Contender<K>>(rx: &mut C::Rx, sink: &mut impl Sink) {
    read_until_closed_with::<K, C>(rx, sink, || {});
}

/// [`read_until_closed`], calling `after_poll` after every poll.
fn read_until_closed_with<K: Kind, C: Contender<K>>(
    rx: &mut C::Rx,
    sink: &mut impl Sink,
    mut after_poll: impl FnMut(),
) {
    let mut idle = 0u32;
    loop {
        let poll = C::poll(rx, sink);
        after_poll();
        match poll {
            Poll::Progress => idle = 0,
            Poll::Empty => {
                idle += 1;
                if idle < SPINS_BEFORE_YIELD {
                    spin_loop();
                } else {
                    std::thread::yield_now();
                }
            }
            Poll::Closed => return,
        }
    }
}

/// Polls `rx` until it is empty (not waiting for more).
fn drain_now<K: Kind, C: Contender<K>>(rx: &mut C::Rx, sink: &mut impl Sink) {
    while C::poll(rx, sink) == Poll::Progress {}
}

/// Joins the verdicts of several readers.
fn verdicts(checkers: &[Checker], published: u64, lossy: bool) -> Result<(), String> {
    let errors: Vec<String> = checkers
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            c.verdict(published, lossy)
                .err()
                .map(|e| format!("reader {i}: {e}"))
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join(" | "))
    }
}

/// One throughput run.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Messages published per second (publisher's own elapsed time).
    pub publish_rate: f64,
    /// Messages delivered per second per reader, averaged over readers
    /// (each reader: its messages / time from start to its end of stream).
    pub goodput: f64,
    /// Messages delivered, all readers together.
    pub delivered: u64,
    /// Messages announced lost, all readers together.
    pub missed: u64,
    /// Paced runs only: the longest time any reader went between the ends
    /// of two consecutive polls. A poll hands over at most a batch of
    /// messages, so a gap much longer than that takes means the reader was
    /// off its core (preempted, or yielded while caught up and not run again
    /// for a while), and could not have read anything meanwhile.
    pub reader_away: Option<Duration>,
}

impl Throughput {
    /// Lost share of what the readers should have seen, in percent.
    pub fn loss_pct(&self) -> f64 {
        let due = self.delivered + self.missed;
        if due == 0 {
            0.0
        } else {
            100.0 * self.missed as f64 / due as f64
        }
    }
}

/// Messages a paced publisher publishes back to back between two looks at
/// the clock.
const PACE_GROUP: u64 = 64;

/// `readers` reader threads and a publisher (this thread) publish `count`
/// messages as fast as possible, or at `rate` messages per second if given.
/// Paced, the publisher publishes groups of [`PACE_GROUP`] messages, each
/// due one group's time after the one before. A publisher that was held up
/// catches up, but by at most a quarter of the ring's messages: held up
/// longer, it forgives itself the rest. So it keeps the rate where it can,
/// and no reader ever faces a burst of more than a quarter of the ring
/// above it. Paced runs also time each reader's absences
/// ([`Throughput::reader_away`]).
pub fn throughput<K: Kind, C: Contender<K>>(
    readers: usize,
    count: u64,
    rate: Option<f64>,
) -> Result<Throughput, String> {
    let (mut tx, rxs) = C::new(CAPACITY, readers);
    let start = StartGate::new(readers + 1);
    // Paced runs only: a clock cheap enough to read after every poll.
    let clock = rate.map(|_| quanta::Clock::new());
    let clock = clock.as_ref();
    let (t0, publish_time, ends) = std::thread::scope(|s| {
        let handles: Vec<_> = rxs
            .into_iter()
            .map(|mut rx| {
                let start = &start;
                s.spawn(move || {
                    let mut sink = CheckSink(Checker::new(K::SEQ_MASK));
                    start.wait();
                    let away = match clock {
                        None => {
                            read_until_closed::<K, C>(&mut rx, &mut sink);
                            None
                        }
                        Some(clock) => {
                            let (mut last, mut longest) = (clock.raw(), 0);
                            read_until_closed_with::<K, C>(&mut rx, &mut sink, || {
                                let now = clock.raw();
                                longest = longest.max(now.saturating_sub(last));
                                last = now;
                            });
                            Some(Duration::from_nanos(clock.delta_as_nanos(0, longest)))
                        }
                    };
                    (sink.0, Instant::now(), away)
                })
            })
            .collect();
        start.wait();
        let t0 = Instant::now();
        match rate {
            None => {
                for seq in 0..count {
                    C::publish(&mut tx, seq, 0);
                }
            }
            Some(rate) => {
                let group = Duration::from_secs_f64(PACE_GROUP as f64 / rate);
                let slack = Duration::from_secs_f64((CAPACITY / 4) as f64 / rate);
                let mut due = t0;
                for seq in 0..count {
                    if seq % PACE_GROUP == 0 {
                        let mut now = Instant::now();
                        while now < due {
                            spin_loop();
                            now = Instant::now();
                        }
                        due = (due + group).max(now.checked_sub(slack).unwrap_or(now));
                    }
                    C::publish(&mut tx, seq, 0);
                }
            }
        }
        let publish_time = t0.elapsed();
        drop(tx);
        let ends: Vec<(Checker, Instant, Option<Duration>)> = handles
            .into_iter()
            .map(|h| h.join().expect("reader thread panicked"))
            .collect();
        (t0, publish_time, ends)
    });
    let checkers: Vec<Checker> = ends.iter().map(|(c, _, _)| c.clone()).collect();
    verdicts(&checkers, count, C::LOSSY)?;
    let goodput = if ends.is_empty() {
        f64::NAN
    } else {
        ends.iter()
            .map(|(c, end, _)| c.delivered as f64 / end.duration_since(t0).as_secs_f64())
            .sum::<f64>()
            / ends.len() as f64
    };
    Ok(Throughput {
        publish_rate: count as f64 / publish_time.as_secs_f64(),
        goodput,
        delivered: checkers.iter().map(|c| c.delivered).sum(),
        missed: checkers.iter().map(|c| c.missed).sum(),
        reader_away: ends.iter().filter_map(|(_, _, away)| *away).max(),
    })
}

/// One latency run.
pub struct Latency {
    /// One-way latencies in nanoseconds (warm-up excluded).
    pub hist: hdrhistogram::Histogram<u64>,
    /// Messages announced lost.
    pub missed: u64,
    /// Mean interval between publishes actually achieved, ns.
    pub interval_ns: f64,
}

/// Clock ticks in `ns` nanoseconds of `clock`.
pub fn ticks_for(clock: &quanta::Clock, ns: u64) -> u64 {
    const PROBE: u64 = 1 << 32;
    let probe_ns = clock.delta_as_nanos(0, PROBE).max(1);
    (ns as u128 * PROBE as u128 / probe_ns as u128) as u64
}

/// One reader thread and a publisher (this thread) that publishes `count`
/// messages, one every `pace_ns`, each stamped with the shared clock just
/// before it is published; the reader records `receive time - stamp` for
/// every message after the first `warmup`.
pub fn latency<K: Kind, C: Contender<K>>(
    count: u64,
    pace_ns: u64,
    warmup: u64,
    clock: &quanta::Clock,
) -> Result<Latency, String> {
    let (mut tx, mut rxs) = C::new(CAPACITY, 1);
    let mut rx = rxs.pop().expect("one reader");
    let start = StartGate::new(2);
    let base = clock.raw();
    let pace = ticks_for(clock, pace_ns).max(1);
    let (sink, elapsed) = std::thread::scope(|s| {
        let start = &start;
        let reader = s.spawn(move || {
            let mut sink = LatencySink {
                checker: Checker::new(K::SEQ_MASK),
                clock,
                base,
                ts_mask: K::TS_MASK,
                record_from: warmup,
                hist: hdrhistogram::Histogram::new_with_bounds(1, 10_000_000_000, 3)
                    .expect("valid histogram bounds"),
            };
            start.wait();
            read_until_closed::<K, C>(&mut rx, &mut sink);
            sink
        });
        start.wait();
        let first = clock.raw();
        let mut next = first;
        for seq in 0..count {
            let mut now = clock.raw();
            while now < next {
                spin_loop();
                now = clock.raw();
            }
            C::publish(&mut tx, seq, now.wrapping_sub(base) & K::TS_MASK);
            // The next publish is due one pace later; a publisher that was
            // held up does not burst to catch up.
            next = (next + pace).max(now);
        }
        let elapsed = clock.delta_as_nanos(first, clock.raw());
        drop(tx);
        (reader.join().expect("reader thread panicked"), elapsed)
    });
    sink.checker.verdict(count, C::LOSSY)?;
    Ok(Latency {
        hist: sink.hist,
        missed: sink.checker.missed,
        interval_ns: elapsed as f64 / count.max(1) as f64,
    })
}

/// One contender with some idle subscribers, for [`idle_costs`].
struct IdleSetup<K: Kind, C: Contender<K>> {
    tx: C::Tx,
    rxs: Vec<C::Rx>,
    sinks: Vec<CheckSink>,
    published: u64,
    samples: Samples,
}

/// Publish cost with idle subscribers, in one thread, for each count in
/// `subs`: bursts of `CAPACITY` publishes are timed; before each burst the
/// subscribers of blocking contenders are drained (untimed, checked) so that
/// the burst fits, while those of lossy contenders stay idle and fall
/// behind. The subscriber counts take turns burst by burst, so that drift
/// (clock frequency, other work on the machine) spreads over all of them;
/// each one's first burst is a warm-up. At the end every subscriber reads to
/// the end of the stream and is checked (`delivered + missed ==
/// published`). Returns ns per publish, one sample per timed burst, per
/// count; `None` for a count the contender cannot be built with.
pub fn idle_costs<K: Kind, C: Contender<K>>(
    subs: &[usize],
    bursts: usize,
) -> Vec<Option<Result<Samples, String>>> {
    let mut setups: Vec<Option<IdleSetup<K, C>>> = subs
        .iter()
        .map(|&n| {
            (n >= C::MIN_READERS).then(|| {
                let (tx, rxs) = C::new(CAPACITY, n);
                IdleSetup {
                    tx,
                    rxs,
                    sinks: (0..n)
                        .map(|_| CheckSink(Checker::new(K::SEQ_MASK)))
                        .collect(),
                    published: 0,
                    samples: Samples::default(),
                }
            })
        })
        .collect();
    for burst in 0..=bursts {
        for setup in setups.iter_mut().flatten() {
            if !C::LOSSY {
                for (rx, sink) in setup.rxs.iter_mut().zip(&mut setup.sinks) {
                    drain_now::<K, C>(rx, sink);
                }
            }
            let t0 = Instant::now();
            for _ in 0..CAPACITY {
                C::publish(&mut setup.tx, setup.published, 0);
                setup.published += 1;
            }
            let dt = t0.elapsed();
            if burst > 0 {
                setup.samples.push(dt.as_nanos() as f64 / CAPACITY as f64);
            }
        }
    }
    setups
        .into_iter()
        .map(|setup| {
            let IdleSetup {
                tx,
                mut rxs,
                mut sinks,
                published,
                samples,
            } = setup?;
            drop(tx);
            for (rx, sink) in rxs.iter_mut().zip(&mut sinks) {
                read_until_closed::<K, C>(rx, sink);
            }
            let checkers: Vec<Checker> = sinks.into_iter().map(|s| s.0).collect();
            // With no subscriber there is no answer to check.
            Some(verdicts(&checkers, published, C::LOSSY).map(|()| samples))
        })
        .collect()
}

/// Heap use, from the counting allocator.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// Heap allocated by creating the contender with one reader.
    pub ring: f64,
    /// Extra heap per additional subscriber (from 1 to 1025 readers).
    pub per_sub: f64,
    /// Size of one reader's handle itself (`size_of`).
    pub handle: usize,
    /// Heap live once `CAPACITY` messages are held, with 1 reader.
    pub full_1: f64,
    /// The same with 16 readers.
    pub full_16: f64,
}

/// Measures [`Memory`] with the counting allocator (single thread).
pub fn memory<K: Kind, C: Contender<K>>() -> Memory {
    let created = |readers: usize| {
        alloc::measure(|| {
            let made = C::new(CAPACITY, readers);
            let bytes = alloc::live_since_enabled();
            drop(made);
            bytes
        })
    };
    let filled = |readers: usize| {
        alloc::measure(|| {
            let (mut tx, rxs) = C::new(CAPACITY, readers);
            for seq in 0..CAPACITY as u64 {
                C::publish(&mut tx, seq, 0);
            }
            let bytes = alloc::live_since_enabled();
            drop((tx, rxs));
            bytes
        })
    };
    let one = created(1) as f64;
    let many = created(1025) as f64;
    Memory {
        ring: one,
        per_sub: (many - one) / 1024.0,
        handle: std::mem::size_of::<C::Rx>(),
        full_1: filled(1) as f64,
        full_16: filled(16) as f64,
    }
}

/// A message type and contender pair, as an object the driver can iterate.
pub trait Bench {
    /// Contender name.
    fn contender(&self) -> &'static str;
    /// Message type name.
    fn kind(&self) -> &'static str;
    /// Message type short name.
    fn kind_slug(&self) -> &'static str;
    /// Whether the contender drops for slow readers.
    fn lossy(&self) -> bool;
    /// Messages per full-mode throughput run.
    fn throughput_count(&self) -> u64;
    /// See [`throughput`].
    fn throughput(
        &self,
        readers: usize,
        count: u64,
        rate: Option<f64>,
    ) -> Result<Throughput, String>;
    /// See [`latency`].
    fn latency(
        &self,
        count: u64,
        pace_ns: u64,
        warmup: u64,
        clock: &quanta::Clock,
    ) -> Result<Latency, String>;
    /// See [`idle_costs`].
    fn idle_costs(&self, subs: &[usize], bursts: usize) -> Vec<Option<Result<Samples, String>>>;
    /// See [`memory`].
    fn memory(&self) -> Memory;
}

impl<K: Kind, C: Contender<K>> Bench for Pair<K, C> {
    fn contender(&self) -> &'static str {
        C::NAME
    }
    fn kind(&self) -> &'static str {
        K::NAME
    }
    fn kind_slug(&self) -> &'static str {
        K::SLUG
    }
    fn lossy(&self) -> bool {
        C::LOSSY
    }
    fn throughput_count(&self) -> u64 {
        K::THROUGHPUT_COUNT
    }
    fn throughput(
        &self,
        readers: usize,
        count: u64,
        rate: Option<f64>,
    ) -> Result<Throughput, String> {
        throughput::<K, C>(readers, count, rate)
    }
    fn latency(
        &self,
        count: u64,
        pace_ns: u64,
        warmup: u64,
        clock: &quanta::Clock,
    ) -> Result<Latency, String> {
        latency::<K, C>(count, pace_ns, warmup, clock)
    }
    fn idle_costs(&self, subs: &[usize], bursts: usize) -> Vec<Option<Result<Samples, String>>> {
        idle_costs::<K, C>(subs, bursts)
    }
    fn memory(&self) -> Memory {
        memory::<K, C>()
    }
}
