//! Pinning the runtime's worker threads, one per CPU.
//!
//! Every network contender's client side, and ringcast's nodes, run on one
//! tokio runtime with a worker per core. Left to the kernel, where the
//! workers ran changed from run to run, and so did the figures: with the
//! workers unpinned, ringcast's catch-up of a 100,000-message backlog took
//! a median 31–33 ms over 12 runs, against 23–26 ms pinned, and its live
//! delivery 36–38 ms against 31–32 ms. The throughput spreads narrowed too.
//! Pinning takes the kernel's placement out of the comparison for every
//! contender alike. Threads the runtime starts for blocking work (the
//! publishers) and the peer servers' processes stay unpinned.
//! `ringcast-benches --no-pin` runs without it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What pinning did, for the report.
#[derive(Debug, Default)]
pub(crate) struct Pins {
    /// CPUs this process may run on.
    cpus: Vec<usize>,
    /// Per pinned worker, in the order they first parked: its CPU, or why
    /// it could not be pinned.
    done: Mutex<Vec<Result<usize, String>>>,
    next: AtomicUsize,
}

impl Pins {
    /// One line for the report.
    pub(crate) fn describe(&self) -> String {
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let pinned: Vec<String> = done
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|cpu| cpu.to_string()))
            .collect();
        let failed: Vec<&String> = done.iter().filter_map(|r| r.as_ref().err()).collect();
        let mut s = if pinned.is_empty() {
            "workers not pinned".to_string()
        } else {
            format!("workers pinned to CPUs {}", pinned.join(", "))
        };
        if let Some(e) = failed.first() {
            s.push_str(&format!(" ({} could not be pinned: {e})", failed.len()));
        }
        s
    }

    /// Pins the calling thread to the next CPU, round robin.
    fn pin_this_thread(&self) {
        if self.cpus.is_empty() {
            return;
        }
        let cpu = self.cpus[self.next.fetch_add(1, Ordering::Relaxed) % self.cpus.len()];
        let result = set_affinity(cpu).map(|()| cpu);
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(result);
    }
}

/// Arranges for each worker thread of the runtime `builder` will build to
/// pin itself to a CPU of its own the first time it parks (every worker
/// parks as soon as it starts and finds nothing to do). Only worker threads
/// park, so blocking threads are left alone.
pub(crate) fn workers(builder: &mut tokio::runtime::Builder) -> Arc<Pins> {
    let pins = Arc::new(Pins {
        cpus: allowed_cpus(),
        ..Pins::default()
    });
    let hook = Arc::clone(&pins);
    builder.on_thread_park(move || {
        thread_local! {
            static PINNED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        }
        if !PINNED.with(|p| p.replace(true)) {
            hook.pin_this_thread();
        }
    });
    pins
}

/// The CPUs this process may run on, lowest first.
#[cfg(target_os = "linux")]
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is plain data; all zeroes is an empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid `cpu_set_t` of the size passed.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Vec::new();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `cpu` is below CPU_SETSIZE.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect()
}

/// Restricts the calling thread to `cpu`.
#[cfg(target_os = "linux")]
fn set_affinity(cpu: usize) -> Result<(), String> {
    // SAFETY: as in `allowed_cpus`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` comes from `allowed_cpus`, below CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid `cpu_set_t` of the size passed; 0 is the
    // calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error().to_string())
    }
}

/// Elsewhere there is nothing to pin to: the workers are left alone.
#[cfg(not(target_os = "linux"))]
fn allowed_cpus() -> Vec<usize> {
    Vec::new()
}

#[cfg(not(target_os = "linux"))]
fn set_affinity(_cpu: usize) -> Result<(), String> {
    Err("not supported on this platform".into())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// Each worker ends up alone on a CPU, a different one per worker, and
    /// says so in the report line.
    #[test]
    fn workers_are_pinned_one_per_cpu() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty(), "this process may run on no CPU?");
        let workers = cpus.len().min(2);
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers).enable_all();
        let pins = super::workers(&mut builder);
        let runtime = builder.build().unwrap();
        // Each task reports the CPUs the worker running it may run on:
        // whichever worker that is, one CPU, one of those pinned.
        let barrier = Arc::new(tokio::sync::Barrier::new(workers));
        let seen: Vec<Vec<usize>> = runtime.block_on(async {
            // Let every worker start and park once.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let tasks: Vec<_> = (0..workers)
                .map(|_| {
                    let barrier = Arc::clone(&barrier);
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
        });
        let done = pins.done.lock().unwrap().clone();
        assert_eq!(done.len(), workers, "{done:?}");
        let mut pinned: Vec<usize> = done.into_iter().map(|r| r.unwrap()).collect();
        pinned.sort_unstable();
        pinned.dedup();
        assert_eq!(pinned.len(), workers, "two workers on one CPU");
        for s in &seen {
            assert_eq!(s.len(), 1, "a worker may run on {s:?}");
            assert!(pinned.contains(&s[0]));
        }
        assert!(pins.describe().starts_with("workers pinned to CPUs "));
    }
}
