//! A measurement of the machine itself, reported next to the figures it
//! explains: what a cache-line transfer between two cores costs. On a shared
//! virtual machine it changes from minute to minute.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

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
