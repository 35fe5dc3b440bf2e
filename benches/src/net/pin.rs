//! Pinning the runtime's worker threads, one per CPU, for the catch-up runs.
//!
//! Every network contender's client side, and ringcast's nodes, run on one
//! tokio runtime with a worker per core. A catch-up run compares two phases
//! of one contender: live delivery, then the return to a backlog after the
//! consumer has been away (for ringcast, 600 ms without traffic until its
//! link is declared dead). Left to the kernel, how fast each phase ran
//! depended on what the workers had been doing just before it: 200 ms of
//! spinning on both workers right before the return cut ringcast's
//! catch-up from 31–33 ms to 19–25 ms (medians of 16 runs), and the same
//! spinning on two other threads did not. Pinned, both phases ran faster
//! and steadier. Measured with 12 catch-up runs of ringcast per setting,
//! alternating, 100,000 messages of 100 B, no peers running:
//!
//! | workers | live, median | catch-up, median | catch-up / live |
//! |---|---|---|---|
//! | left to the kernel | 37 and 32 ms | 34 and 35 ms | 1.12× and 0.91× |
//! | pinned | 24 and 31 ms | 18 and 23 ms | 1.33× and 1.35× |
//!
//! So the workers are pinned, one per CPU, for the catch-up runs of every
//! contender.
//!
//! The throughput and latency runs compare contenders run back to back
//! under the same conditions, and keep the kernel's placement. Pinned, a
//! woken worker can no longer move to the idle core, and paced latency
//! suffers: three alternations of ringcast's and raw quinn's latency runs
//! (5 runs of 20,000 messages at 5000/s each) gave a p50 of 52.6–54.5 µs
//! pinned against 40.0–41.1 µs unpinned for ringcast, and 52.2–53.6
//! against 41.0–44.6 µs for raw quinn.
//!
//! Threads the runtime starts for blocking work (the publishers) and the
//! peer servers' processes are never pinned. `ringcast-benches --no-pin`
//! leaves the workers alone throughout.

use std::sync::{Arc, Mutex};

/// The runtime's worker threads, and the CPUs they may be pinned to.
#[derive(Debug, Default)]
pub(crate) struct Pins {
    /// CPUs this process may run on, lowest first.
    cpus: Vec<usize>,
    /// Thread ids of the workers, in the order they first parked.
    workers: Mutex<Vec<i32>>,
    /// What the last [`Pins::pin`] did, for the report.
    outcome: Mutex<Outcome>,
}

#[derive(Debug, Default)]
struct Outcome {
    /// The CPU of each worker pinned.
    cpus: Vec<usize>,
    /// Why a worker could not be pinned.
    failure: Option<String>,
}

impl Pins {
    /// Pins each worker to a CPU of its own (round robin over [`Pins::cpus`]).
    pub(crate) fn pin(&self) {
        let workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let mut outcome = Outcome::default();
        for (i, &tid) in workers.iter().enumerate() {
            if self.cpus.is_empty() {
                outcome.failure = Some("no CPU to pin to".into());
                break;
            }
            let cpu = self.cpus[i % self.cpus.len()];
            match set_affinity(tid, &[cpu]) {
                Ok(()) => outcome.cpus.push(cpu),
                Err(e) => outcome.failure = Some(e),
            }
        }
        *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = outcome;
    }

    /// Lets every worker run on any CPU the process may use again.
    pub(crate) fn unpin(&self) {
        for &tid in self
            .workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            // Nothing runs after the catch-up runs; a worker left pinned
            // would change no figure.
            let _ = set_affinity(tid, &self.cpus);
        }
    }

    /// Whether the last [`Pins::pin`] pinned any worker.
    pub(crate) fn pinned(&self) -> bool {
        !self
            .outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .cpus
            .is_empty()
    }

    /// One line for the report.
    pub(crate) fn describe(&self) -> String {
        let outcome = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        let mut s = if outcome.cpus.is_empty() {
            "workers not pinned".to_string()
        } else {
            let cpus: Vec<String> = outcome.cpus.iter().map(|c| c.to_string()).collect();
            format!(
                "workers pinned to CPUs {} for the catch-up runs",
                cpus.join(", ")
            )
        };
        if let Some(e) = &outcome.failure {
            s.push_str(&format!(" (pinning failed: {e})"));
        }
        s
    }
}

/// Arranges for each worker thread of the runtime `builder` will build to
/// make itself known the first time it parks (every worker parks as soon
/// as it starts and finds nothing to do). Only worker threads park, so
/// blocking threads are never recorded.
pub(crate) fn workers(builder: &mut tokio::runtime::Builder) -> Arc<Pins> {
    let pins = Arc::new(Pins {
        cpus: allowed_cpus(),
        ..Pins::default()
    });
    let hook = Arc::clone(&pins);
    builder.on_thread_park(move || {
        thread_local! {
            static KNOWN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        }
        if !KNOWN.with(|k| k.replace(true)) {
            hook.workers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(this_thread());
        }
    });
    pins
}

/// The CPUs this process may run on, lowest first.
fn allowed_cpus() -> Vec<usize> {
    affinity(0)
}

/// The CPUs thread `tid` (0: the calling thread) may run on, lowest first;
/// none if that cannot be read.
#[cfg(target_os = "linux")]
fn affinity(tid: i32) -> Vec<usize> {
    // SAFETY: `cpu_set_t` is plain data; all zeroes is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid `cpu_set_t` of the size passed.
    let rc =
        unsafe { libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// The calling thread's id.
#[cfg(target_os = "linux")]
fn this_thread() -> i32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Restricts thread `tid` to `cpus`.
#[cfg(target_os = "linux")]
fn set_affinity(tid: i32, cpus: &[usize]) -> Result<(), String> {
    // SAFETY: as in `affinity`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: every `cpu` comes from `allowed_cpus`, below CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a valid `cpu_set_t` of the size passed.
    let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

/// Elsewhere there is nothing to pin to: the workers are left alone.
#[cfg(not(target_os = "linux"))]
fn affinity(_tid: i32) -> Vec<usize> {
    Vec::new()
}

#[cfg(not(target_os = "linux"))]
fn this_thread() -> i32 {
    0
}

#[cfg(not(target_os = "linux"))]
fn set_affinity(_tid: i32, _cpus: &[usize]) -> Result<(), String> {
    Err("not supported on this platform".into())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// The CPUs the worker running the calling task may run on.
    async fn seen(workers: usize, barrier: &Arc<tokio::sync::Barrier>) -> Vec<Vec<usize>> {
        let tasks: Vec<_> = (0..workers)
            .map(|_| {
                let barrier = Arc::clone(barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    allowed_cpus()
                })
            })
            .collect();
        let mut seen = Vec::new();
        for t in tasks {
            seen.push(t.await.unwrap());
        }
        seen
    }

    /// Pinned, each worker is alone on a CPU, a different one per worker,
    /// and the report says so; unpinned, each may run anywhere again.
    #[test]
    fn workers_are_pinned_one_per_cpu_then_released() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty(), "this process may run on no CPU?");
        let workers = cpus.len().min(2);
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers).enable_all();
        let pins = super::workers(&mut builder);
        let runtime = builder.build().unwrap();
        let barrier = Arc::new(tokio::sync::Barrier::new(workers));
        runtime.block_on(async {
            // Let every worker start and park once.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            assert_eq!(pins.workers.lock().unwrap().len(), workers);
            assert_eq!(pins.describe(), "workers not pinned");

            pins.pin();
            let mut on: Vec<usize> = pins
                .workers
                .lock()
                .unwrap()
                .iter()
                .map(|&tid| {
                    let cpus = affinity(tid);
                    assert_eq!(cpus.len(), 1, "a pinned worker may run on {cpus:?}");
                    cpus[0]
                })
                .collect();
            on.sort_unstable();
            on.dedup();
            assert_eq!(on.len(), workers, "two workers pinned to one CPU");
            for s in seen(workers, &barrier).await {
                assert_eq!(s.len(), 1, "a task ran on a worker that may run on {s:?}");
            }
            assert!(pins.describe().starts_with("workers pinned to CPUs "));

            pins.unpin();
            for s in seen(workers, &barrier).await {
                assert_eq!(s, cpus, "a released worker may run on {s:?} only");
            }
        });
    }
}
