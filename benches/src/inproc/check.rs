//! The reader-side checker every timed run goes through.
//!
//! A reader is correct when, for the messages published since it attached
//! (all readers attach before the first publish, so from sequence 0):
//!
//! * every message it is handed carries exactly the next sequence number it
//!   expects (strict order, no duplicates, no silent gaps) and is intact;
//! * every gap was announced by the contender (`missed`), and where the
//!   contender says where it resumes, that is right after the gap;
//! * at the end, `delivered + missed == published`;
//! * blocking contenders never miss anything.

use super::contenders::Sink;

/// Checks one reader's stream; see the module docs.
#[derive(Debug, Clone)]
pub struct Checker {
    /// The full sequence number the next message must carry.
    expected: u64,
    /// The bits of the sequence number messages carry.
    seq_mask: u64,
    /// Messages handed over in order.
    pub delivered: u64,
    /// Messages the contender announced as lost.
    pub missed: u64,
    /// How many things were wrong.
    pub errors: u64,
    /// The first few, in words.
    first_errors: Vec<String>,
}

impl Checker {
    /// A checker expecting sequence 0 first.
    pub fn new(seq_mask: u64) -> Self {
        Self {
            expected: 0,
            seq_mask,
            delivered: 0,
            missed: 0,
            errors: 0,
            first_errors: Vec::new(),
        }
    }

    #[cold]
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_errors.len() < 3 {
            self.first_errors.push(what);
        }
    }

    /// Whether `seq_bits` is the expected message; counts it either way.
    #[inline]
    pub fn on_msg(&mut self, seq_bits: u64) {
        if seq_bits != self.expected & self.seq_mask {
            self.error(format!(
                "expected message {} (bits {:#x}), got bits {seq_bits:#x}",
                self.expected,
                self.expected & self.seq_mask
            ));
        }
        self.delivered += 1;
        self.expected += 1;
    }

    /// A loss announced by the contender.
    pub fn on_lost(&mut self, missed: u64, resume: Option<u64>) {
        if missed == 0 {
            self.error(format!(
                "a loss of 0 messages announced at {}",
                self.expected
            ));
        }
        if let Some(r) = resume {
            if r != self.expected + missed {
                self.error(format!(
                    "at {} told {missed} missed but resume at {r}",
                    self.expected
                ));
            }
        }
        self.missed += missed;
        self.expected += missed;
    }

    /// A message that failed its integrity check.
    pub fn on_bad(&mut self) {
        self.error(format!(
            "message {} not intact (torn or corrupt)",
            self.expected
        ));
        self.delivered += 1;
        self.expected += 1;
    }

    /// The verdict once the publisher published `published` messages and the
    /// reader saw the end.
    pub fn verdict(&self, published: u64, lossy: bool) -> Result<(), String> {
        let mut problems = self.first_errors.clone();
        if self.errors > self.first_errors.len() as u64 {
            problems.push(format!("{} errors in all", self.errors));
        }
        if self.delivered + self.missed != published {
            problems.push(format!(
                "delivered {} + missed {} != published {published}",
                self.delivered, self.missed
            ));
        }
        if !lossy && self.missed > 0 {
            problems.push(format!(
                "a blocking contender lost {} messages",
                self.missed
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// A sink that only checks.
#[derive(Debug)]
pub struct CheckSink(pub Checker);

impl Sink for CheckSink {
    #[inline]
    fn msg(&mut self, seq_bits: u64, _ts: u64) {
        self.0.on_msg(seq_bits);
    }
    fn lost(&mut self, missed: u64, resume: Option<u64>) {
        self.0.on_lost(missed, resume);
    }
    fn bad(&mut self) {
        self.0.on_bad();
    }
}

/// Reads `clock` once every load before the call has completed, so that a
/// reader is timed when it has the message, not when it has only learned
/// that the message is there.
///
/// On x86-64 the clock is the TSC, and `rdtsc` on its own may execute
/// before earlier loads have completed. A reader that learns of a message
/// from one cache line (a ring's head) and copies it from another (the slot)
/// would then read the clock while the copy is still on its way, and the
/// second line's trip would go untimed; a reader that learns of a message
/// from the line that carries it could not be timed early that way. A load
/// fence in front of the read waits for both. Elsewhere the clock is read
/// as is.
#[inline]
pub fn read_after_loads(clock: &quanta::Clock) -> u64 {
    // SAFETY: `lfence` belongs to SSE2, which every x86-64 processor has.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_lfence()
    };
    clock.raw()
}

/// A sink that checks and records one-way latency from the message's
/// timestamp into a histogram.
pub struct LatencySink<'a> {
    /// The checker.
    pub checker: Checker,
    /// The clock the publisher stamped with.
    pub clock: &'a quanta::Clock,
    /// The raw clock reading timestamps are relative to.
    pub base: u64,
    /// The bits of the timestamp messages carry.
    pub ts_mask: u64,
    /// Messages below this sequence number are warm-up, not recorded.
    pub record_from: u64,
    /// Latencies in nanoseconds.
    pub hist: hdrhistogram::Histogram<u64>,
}

impl Sink for LatencySink<'_> {
    #[inline]
    fn msg(&mut self, seq_bits: u64, ts: u64) {
        let now = read_after_loads(self.clock).wrapping_sub(self.base) & self.ts_mask;
        if self.checker.delivered + self.checker.missed >= self.record_from {
            let ns = self.clock.delta_as_nanos(ts, now);
            // Values beyond the histogram's range are clamped to it.
            self.hist.saturating_record(ns.max(1));
        }
        self.checker.on_msg(seq_bits);
    }
    fn lost(&mut self, missed: u64, resume: Option<u64>) {
        self.checker.on_lost(missed, resume);
    }
    fn bad(&mut self) {
        self.checker.on_bad();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_order_and_announced_loss() {
        let mut c = Checker::new(u64::MAX);
        c.on_msg(0);
        c.on_msg(1);
        c.on_lost(3, Some(5));
        c.on_msg(5);
        assert_eq!(c.verdict(6, true), Ok(()));
        assert!(
            c.verdict(6, false).is_err(),
            "blocking contenders lose nothing"
        );
        assert!(c.verdict(7, true).is_err(), "one message unaccounted for");
    }

    #[test]
    fn rejects_gaps_duplicates_and_bad_resume() {
        let mut c = Checker::new(u64::MAX);
        c.on_msg(0);
        c.on_msg(2);
        assert!(c.verdict(2, true).is_err(), "silent gap");
        let mut c = Checker::new(u64::MAX);
        c.on_msg(0);
        c.on_msg(0);
        assert!(c.verdict(2, true).is_err(), "duplicate");
        let mut c = Checker::new(u64::MAX);
        c.on_lost(2, Some(3));
        assert!(c.verdict(2, true).is_err(), "wrong resume point");
        let mut c = Checker::new((1 << 24) - 1);
        for i in 0..3 {
            c.on_msg(i);
        }
        c.on_bad();
        assert!(c.verdict(4, true).is_err(), "torn message");
    }
}
