//! Two measurements of the machine itself, reported next to the figures
//! they explain: what a cache-line transfer between two cores costs, and how
//! often a thread that never blocks still loses its core (interrupts,
//! hypervisor exits, other processes). On a shared virtual machine both
//! change from minute to minute.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Round trip, in ns, of one cache line bounced between two threads (two
/// transfers between cores when the scheduler puts them on different
/// cores, which it does on an idle 2-core machine): the median over 20
/// batches of the mean of `round_trips / 20` round trips, so that a batch
/// the scheduler interrupted does not count.
pub fn core_round_trip_ns(round_trips: u64) -> f64 {
    const BATCHES: u64 = 20;
    let per_batch = (round_trips / BATCHES).max(1);
    let line = AtomicU64::new(0);
    let mut means = std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..BATCHES * per_batch {
                // Acquire/Release: plain ping-pong; the value is the message.
                while line.load(Ordering::Acquire) != 2 * i + 1 {
                    spin_loop();
                }
                line.store(2 * i + 2, Ordering::Release);
            }
        });
        (0..BATCHES)
            .map(|batch| {
                let start = Instant::now();
                for i in batch * per_batch..(batch + 1) * per_batch {
                    line.store(2 * i + 1, Ordering::Release);
                    while line.load(Ordering::Acquire) != 2 * i + 2 {
                        spin_loop();
                    }
                }
                start.elapsed().as_nanos() as f64 / per_batch as f64
            })
            .collect::<Vec<f64>>()
    });
    means.sort_by(f64::total_cmp);
    means[means.len() / 2]
}

/// How often a thread spinning on its own lost its core, during `run`.
#[derive(Debug, Clone, Copy)]
pub struct Stalls {
    /// How long the probe ran.
    pub run: Duration,
    /// The gap between consecutive clock reads that counts as a stall.
    pub threshold: Duration,
    /// Gaps longer than `threshold`.
    pub count: u64,
    /// The longest gap.
    pub longest: Duration,
}

impl Stalls {
    /// Stalls per second.
    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.run.as_secs_f64()
    }
}

/// Spins reading the clock for `run` and counts the gaps between
/// consecutive reads longer than `threshold`: times the thread was not
/// running although it never blocked. A second thread spins meanwhile, as a
/// publisher does next to its reader, so that other work on the machine
/// finds no idle core either.
pub fn stalls(run: Duration, threshold: Duration) -> Stalls {
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            // Relaxed: a stop flag; nothing else is published through it.
            while !done.load(Ordering::Relaxed) {
                spin_loop();
            }
        });
        let stalls = probe_stalls(run, threshold);
        done.store(true, Ordering::Relaxed);
        stalls
    })
}

fn probe_stalls(run: Duration, threshold: Duration) -> Stalls {
    let start = Instant::now();
    let mut last = start;
    let mut count = 0;
    let mut longest = Duration::ZERO;
    while last - start < run {
        let now = Instant::now();
        let gap = now - last;
        if gap > threshold {
            count += 1;
        }
        longest = longest.max(gap);
        last = now;
    }
    Stalls {
        run: last - start,
        threshold,
        count,
        longest,
    }
}
