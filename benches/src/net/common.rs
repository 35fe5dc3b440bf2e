//! What every network contender shares: the payload layout, the checker a
//! consumer runs on every message, pacing, percentiles and run summaries.
//!
//! # Payload
//!
//! Every benchmark message is `size` bytes:
//!
//! ```text
//! [u64 LE seq][u64 LE send time, ns since BASE][filler: size - 16 bytes, each = seq as u8]
//! ```
//!
//! `seq` is the benchmark's own sequence number (0, 1, 2, … per producer run),
//! independent of what the contender numbers its messages, so one checker
//! judges every contender the same way. The send time is taken on the same
//! machine, from the same monotonic clock ([`now_ns`]), so a consumer computes
//! one-way latency as `now_ns() - send time`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The smallest payload: sequence number and timestamp.
pub const HEADER: usize = 16;

/// The clock every timestamp is measured from.
fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Nanoseconds since the process's benchmark clock started.
pub fn now_ns() -> u64 {
    base().elapsed().as_nanos() as u64
}

/// Writes payload `seq` (stamped now) into `buf`, which has the payload size.
pub fn stamp(buf: &mut [u8], seq: u64) {
    debug_assert!(buf.len() >= HEADER);
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    buf[8..16].copy_from_slice(&now_ns().to_le_bytes());
    let fill = seq as u8;
    // Only the last filler byte is checked; the rest is written once per
    // buffer by `payload_buf` and is the same bytes for every message.
    if let Some(last) = buf[HEADER..].last_mut() {
        *last = fill;
    }
}

/// A payload buffer of `size` bytes (at least [`HEADER`]).
pub fn payload_buf(size: usize) -> Vec<u8> {
    vec![0xA5; size.max(HEADER)]
}

/// A fresh payload `seq` of `size` bytes.
#[cfg(test)]
pub fn payload(size: usize, seq: u64) -> Vec<u8> {
    let mut buf = payload_buf(size);
    stamp(&mut buf, seq);
    buf
}

/// What one consumer saw, judged message by message.
///
/// A consumer is correct when it got every message `0..n` exactly once, in
/// order, or was told explicitly (an expiry event) about the ones it did not
/// get: `received + lost == n` and `errors == 0`.
#[derive(Debug, Clone)]
pub struct Checker {
    /// The payload size every message must have.
    size: usize,
    /// The benchmark sequence number the next message must carry.
    pub next: u64,
    /// Messages received in order.
    pub received: u64,
    /// Messages the contender said explicitly were lost (ringcast's
    /// `CursorExpired`); never silent.
    pub lost: u64,
    /// Messages out of order, duplicated, silently skipped or malformed.
    pub errors: u64,
    /// The first error, in words.
    pub first_error: Option<String>,
    /// One-way latencies (ns) of messages with `seq >= record_from`, when
    /// recording.
    pub latencies: Vec<u64>,
    /// Latencies are recorded from this sequence number on (warm-up before).
    record_from: u64,
    recording: bool,
}

impl Checker {
    /// A checker expecting messages `start..` of `size` bytes.
    pub fn new(size: usize, start: u64) -> Self {
        Self {
            size: size.max(HEADER),
            next: start,
            received: 0,
            lost: 0,
            errors: 0,
            first_error: None,
            latencies: Vec::new(),
            record_from: 0,
            recording: false,
        }
    }

    /// Also records one-way latency of messages from `seq` on.
    pub fn record_latency_from(mut self, seq: u64, expected: usize) -> Self {
        self.recording = true;
        self.record_from = seq;
        self.latencies.reserve(expected);
        self
    }

    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what);
        }
    }

    /// Judges one payload.
    #[inline]
    pub fn on_payload(&mut self, p: &[u8]) {
        if p.len() != self.size {
            let what = format!(
                "message {} has {} bytes, expected {}",
                self.next,
                p.len(),
                self.size
            );
            self.error(what);
            return;
        }
        let seq = u64::from_le_bytes(p[..8].try_into().unwrap_or_default());
        let sent = u64::from_le_bytes(p[8..16].try_into().unwrap_or_default());
        if seq != self.next {
            let what = format!("got message {seq}, expected {}", self.next);
            self.error(what);
            // Resynchronise so one gap counts once.
            if seq > self.next {
                self.next = seq + 1;
            }
            return;
        }
        if self.size > HEADER && p[self.size - 1] != seq as u8 {
            let what = format!("message {seq} is corrupt");
            self.error(what);
        }
        self.next += 1;
        self.received += 1;
        if self.recording && seq >= self.record_from {
            self.latencies.push(now_ns().saturating_sub(sent));
        }
    }

    /// An explicit loss report: `missed` messages, delivery resumes at
    /// benchmark sequence number `resume`.
    pub fn on_missed(&mut self, missed: u64, resume: u64) {
        self.lost += missed;
        self.next = resume;
    }

    /// Whether every message below `end` was handed over or reported lost.
    pub fn done(&self, end: u64) -> bool {
        self.next >= end
    }

    /// `Ok` if messages `start..end` all arrived in order or were reported
    /// lost, else what went wrong.
    pub fn verdict(&self, expected: u64) -> Result<(), String> {
        if let Some(e) = &self.first_error {
            return Err(format!("{} errors, first: {e}", self.errors));
        }
        if self.received + self.lost != expected {
            return Err(format!(
                "received {} + reported lost {} != published {expected}",
                self.received, self.lost
            ));
        }
        Ok(())
    }
}

/// Calls `send(seq)` for `seq` in `0..count` at `rate` per second, on the
/// calling thread (sleeping between sends, never spinning: the machine has
/// two cores and the contenders need them). A late send goes out at once;
/// the timestamp is taken at the actual send, so pacing jitter is not
/// counted as latency.
pub fn pace(rate: u64, count: u64, mut send: impl FnMut(u64)) {
    let interval_ns = 1_000_000_000 / rate.max(1);
    let start = Instant::now();
    for seq in 0..count {
        let due = start + Duration::from_nanos(interval_ns * seq);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        send(seq);
    }
}

/// Percentile `q` (0..=1) of sorted `v`, nearest rank.
pub fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Median, minimum and maximum of some runs' figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spread {
    /// The median (mean of the two middle values for an even count).
    pub median: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; all zero when empty.
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let mut v = values.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Self {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }

    /// `(max - min) / median` in percent, the relative spread.
    pub fn spread_pct(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.max - self.min) / self.median * 100.0
        }
    }
}

/// A per-run deadline so a stuck contender fails its run rather than the
/// benchmark.
pub fn run_timeout(messages: u64) -> Duration {
    // Generous: 20k messages per second at worst, never under 20 s.
    Duration::from_secs((messages / 20_000).max(20))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checker_accepts_in_order_and_counts_reported_loss() {
        let mut c = Checker::new(100, 0);
        c.on_payload(&payload(100, 0));
        c.on_missed(3, 4);
        c.on_payload(&payload(100, 4));
        assert!(c.done(5));
        assert_eq!(c.verdict(5), Ok(()));
    }

    #[test]
    fn checker_flags_silent_gaps_duplicates_and_size() {
        let mut c = Checker::new(100, 0);
        c.on_payload(&payload(100, 0));
        c.on_payload(&payload(100, 2));
        assert!(c.verdict(3).is_err());
        let mut c = Checker::new(100, 0);
        c.on_payload(&payload(100, 0));
        c.on_payload(&payload(100, 0));
        assert!(c.verdict(1).is_err());
        let mut c = Checker::new(100, 0);
        c.on_payload(&payload(99, 0));
        assert!(c.verdict(1).is_err());
    }

    #[test]
    fn percentiles_and_spread() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 0.5), 50);
        assert_eq!(percentile(&v, 0.99), 99);
        let s = Spread::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
    }
}
