//! A checker of the delivery contract over a history of events, as one
//! subscriber saw them.
//!
//! For every producer, per epoch: sequence numbers are consecutive from the
//! first one seen, with no duplicate and no reordering; the only jumps are
//! announced by a `CursorExpired` whose `resume_seq` equals the expected
//! position plus `missed`; a change of epoch (a producer restart) is always
//! announced by a `CursorExpired` carrying the new epoch. The checker
//! assumes the subscriber sees every topic its producers publish on (one
//! topic, or all of them), so that sequence numbers must be consecutive.

use std::collections::HashMap;

use crate::NodeEvent;

/// Per-producer tallies and the violations found.
#[derive(Debug, Default, Clone)]
pub struct Checker {
    producers: HashMap<String, Track>,
    /// Every violation, in the order found. Must stay empty.
    pub violations: Vec<String>,
}

/// What one subscriber got from one producer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Track {
    /// The current epoch, once known.
    pub epoch: Option<u64>,
    /// The next expected sequence number, once known.
    pub next: Option<u64>,
    /// Messages delivered.
    pub delivered: u64,
    /// Messages reported missed by `CursorExpired`.
    pub missed: u64,
    /// `CursorExpired` events seen.
    pub expiries: u64,
    /// Epoch changes seen (producer restarts), each announced.
    pub restarts: u64,
}

impl Checker {
    /// An empty checker.
    pub fn new() -> Self {
        Self::default()
    }

    /// The tallies for producer `from`.
    pub fn track(&self, from: &str) -> Track {
        self.producers.get(from).copied().unwrap_or_default()
    }

    /// Checks one event, in delivery order.
    pub fn observe(&mut self, event: &NodeEvent) {
        match event {
            NodeEvent::Message {
                from, epoch, seq, ..
            } => {
                let track = self.producers.entry(from.to_string()).or_default();
                match (track.epoch, track.next) {
                    (Some(e), _) if e != *epoch => self.violations.push(format!(
                        "{from}: message {seq} of epoch {epoch:016x} after epoch {e:016x} without a CursorExpired"
                    )),
                    (Some(_), Some(next)) if *seq != next => self.violations.push(format!(
                        "{from}: got seq {seq}, expected {next} (epoch {epoch:016x})"
                    )),
                    _ => {}
                }
                track.epoch = Some(*epoch);
                track.next = Some(seq + 1);
                track.delivered += 1;
            }
            NodeEvent::CursorExpired {
                from,
                epoch,
                missed,
                resume_seq,
            } => {
                let track = self.producers.entry(from.to_string()).or_default();
                track.expiries += 1;
                track.missed += missed;
                match (track.epoch, track.next) {
                    (Some(e), _) if e != *epoch => track.restarts += 1,
                    (Some(_), Some(next)) if next + missed != *resume_seq => {
                        self.violations.push(format!(
                            "{from}: expiry at {next} with missed {missed} resumes at {resume_seq}"
                        ))
                    }
                    _ => {}
                }
                track.epoch = Some(*epoch);
                track.next = Some(*resume_seq);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64, epoch: u64) -> NodeEvent {
        NodeEvent::Message {
            from: "p".into(),
            epoch,
            seq,
            topic: "t".into(),
            payload: bytes::Bytes::new(),
        }
    }

    fn expired(epoch: u64, missed: u64, resume_seq: u64) -> NodeEvent {
        NodeEvent::CursorExpired {
            from: "p".into(),
            epoch,
            missed,
            resume_seq,
        }
    }

    #[test]
    fn accepts_the_contract() {
        let mut c = Checker::new();
        for e in [
            msg(5, 1),
            msg(6, 1),
            expired(1, 3, 10),
            msg(10, 1),
            expired(2, 0, 0),
            msg(0, 2),
        ] {
            c.observe(&e);
        }
        assert!(c.violations.is_empty(), "{:?}", c.violations);
        let t = c.track("p");
        assert_eq!(
            (t.delivered, t.missed, t.expiries, t.restarts),
            (4, 3, 2, 1)
        );
    }

    #[test]
    fn catches_gap_duplicate_reorder_silent_restart_and_bad_counts() {
        for history in [
            vec![msg(0, 1), msg(2, 1)],
            vec![msg(0, 1), msg(0, 1)],
            vec![msg(1, 1), msg(0, 1)],
            vec![msg(0, 1), msg(1, 2)],
            vec![msg(0, 1), expired(1, 2, 4)],
        ] {
            let mut c = Checker::new();
            history.iter().for_each(|e| c.observe(e));
            assert_eq!(c.violations.len(), 1, "{history:?}");
        }
    }
}
