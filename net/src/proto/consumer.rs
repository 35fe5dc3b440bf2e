//! The consumer's side of one connection to a producer.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Cursor, Frame, FrameType, Name, ProtocolError, PROTOCOL_VERSION};

/// How the handshake went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// No cursor was sent; delivery starts at the producer's head.
    New,
    /// The cursor is resumed as is: nothing was missed.
    Resumed,
    /// The cursor could not be resumed; an [`Event::CursorExpired`] follows.
    Expired,
}

/// What the consumer learns from a frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The handshake is done; messages follow from `next_seq`.
    Connected {
        /// How the cursor was negotiated.
        outcome: Outcome,
        /// The producer's epoch.
        epoch: u64,
        /// The first sequence number to be delivered.
        next_seq: u64,
    },
    /// The next message in sequence; deliver it to the subscribers of `topic`.
    Message {
        /// The producer's epoch.
        epoch: u64,
        /// Its sequence number (the cursor is now `seq + 1`).
        seq: u64,
        /// Topic.
        topic: Name,
        /// Payload.
        payload: Bytes,
    },
    /// Messages were lost: the cursor jumped to `resume_seq`.
    CursorExpired {
        /// The producer's epoch (after a restart, the new one).
        epoch: u64,
        /// How many messages were skipped, as the producer counts them.
        missed: u64,
        /// The sequence number of the next message delivered.
        resume_seq: u64,
    },
    /// An unsequenced direct message; does not move the cursor.
    Direct {
        /// Topic.
        topic: Name,
        /// Payload.
        payload: Bytes,
    },
}

/// The events of one frame: none (a dropped duplicate, an ack-only state
/// change), one, or two (a handshake `Expired` gives `Connected` then
/// `CursorExpired`). An iterator, so no allocation per frame.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Events {
    first: Option<Event>,
    second: Option<Event>,
}

impl Events {
    fn none() -> Self {
        Self::default()
    }

    fn one(event: Event) -> Self {
        Self {
            first: Some(event),
            second: None,
        }
    }

    fn two(first: Event, second: Event) -> Self {
        Self {
            first: Some(first),
            second: Some(second),
        }
    }

    /// True if the frame produced no event.
    pub fn is_empty(&self) -> bool {
        self.first.is_none() && self.second.is_none()
    }
}

impl Iterator for Events {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        self.first.take().or_else(|| self.second.take())
    }
}

/// When the consumer acknowledges progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AckPolicy {
    /// Ack at once when this many sequence numbers (delivered or skipped)
    /// are unacknowledged. Default: 64. `0` acts as `1`.
    pub every: u64,
    /// Ack when the oldest unacknowledged progress is this old. Default: 5 ms.
    pub delay: Duration,
}

impl AckPolicy {
    /// Ack every 64 messages or after 5 ms.
    pub const DEFAULT: Self = Self {
        every: 64,
        delay: Duration::from_millis(5),
    };
}

impl Default for AckPolicy {
    fn default() -> Self {
        Self::DEFAULT
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Hello sent (or about to be); waiting for `New`, `Resumed` or `Expired`.
    AwaitingAnswer,
    /// Handshake done; `cursor` is `Some`.
    Streaming,
    /// A protocol error happened; every call fails.
    Failed,
}

impl State {
    fn describe(self) -> &'static str {
        match self {
            Self::AwaitingAnswer => "before the handshake answer",
            Self::Streaming => "after the handshake",
            Self::Failed => "after a failure",
        }
    }
}

/// The consumer's protocol state for one connection to one producer.
///
/// Feed it every frame received with [`handle`](Self::handle); send the
/// frames of [`hello`](Self::hello) and [`poll_ack`](Self::poll_ack). On
/// error, close the connection with [`ProtocolError::code`] and keep
/// [`cursor`](Self::cursor) for the next attempt.
///
/// # Semantics
///
/// A session starts from the consumer's stored cursor for that
/// producer (`None` the first time) and hands back the updated cursor
/// ([`ConsumerSession::cursor`]) for the next connection. The cursor only
/// moves forward, and only by one of:
///
/// - an [`Event::Message`] with `seq == next_seq` (then `next_seq = seq + 1`);
/// - an [`Event::CursorExpired`] (then `next_seq = resume_seq`, and `missed`
///   says how many messages were skipped);
/// - the handshake answer `New` (a consumer without a cursor starts at the
///   producer's head) or `Expired` after a producer restart (the consumer
///   adopts the new epoch; [`Event::CursorExpired`] is reported).
///
/// So a subscriber fed from these events sees every message of an epoch from
/// its starting point exactly once and in order, or an explicit expiry.
///
/// # Ack pacing
///
/// [`poll_ack`](ConsumerSession::poll_ack) returns an `Ack` once there is
/// unacknowledged progress and either [`AckPolicy::every`] messages passed or
/// [`AckPolicy::delay`] elapsed since the first unacknowledged one;
/// [`next_ack_deadline`](ConsumerSession::next_ack_deadline) says when to poll
/// next. Acks feed the producer's flush barrier and lag metrics only;
/// correctness never depends on them.
#[derive(Clone, Debug)]
pub struct ConsumerSession {
    /// The cursor sent in the hello; never changes.
    requested: Option<Cursor>,
    /// The consumer's position: `requested` until the handshake answer, then
    /// the negotiated cursor advanced by every delivered message or expiry.
    /// Never moves backwards within an epoch.
    cursor: Option<Cursor>,
    state: State,
    policy: AckPolicy,
    /// The `next_seq` of the last ack sent (initially the negotiated start,
    /// which the producer counts as acknowledged). `<= cursor.next_seq`.
    acked: u64,
    /// When the cursor first moved past `acked`; `Some` exactly when
    /// `cursor.next_seq > acked` in the streaming state.
    unacked_since: Option<Instant>,
}

impl ConsumerSession {
    /// A session resuming from `stored` (the cursor kept from the previous
    /// connection to this producer), or starting at the head if `None`.
    pub fn new(stored: Option<Cursor>, policy: AckPolicy) -> Self {
        Self {
            requested: stored,
            cursor: stored,
            state: State::AwaitingAnswer,
            policy,
            acked: 0,
            unacked_since: None,
        }
    }

    /// The first frame to send: a hello carrying the stored cursor.
    pub fn hello(&self, node: &str) -> Frame {
        Frame::Hello {
            version: PROTOCOL_VERSION,
            node: node.to_owned(),
            resume: self.requested,
        }
    }

    /// The cursor to store for the next connection: the stored one until the
    /// handshake answer arrives, then the position after the last delivered
    /// message or expiry. Stays valid after an error.
    pub fn cursor(&self) -> Option<Cursor> {
        self.cursor
    }

    /// True once the handshake answer arrived (and until an error).
    pub fn is_connected(&self) -> bool {
        self.state == State::Streaming
    }

    /// Processes one frame from the producer, received at `now`.
    pub fn handle(&mut self, now: Instant, frame: Frame) -> Result<Events, ProtocolError> {
        let result = self.dispatch(now, frame);
        self.settle(result)
    }

    /// Processes the `Message` frame of message `seq`, received at `now`:
    /// exactly what [`handle`](Self::handle) does with that frame, without
    /// building its event, for a caller that builds its own from the
    /// frame's fields. Returns the epoch to deliver the message in, or
    /// `None` for a re-send of a message already delivered.
    pub fn handle_message(&mut self, now: Instant, seq: u64) -> Result<Option<u64>, ProtocolError> {
        let result = self.message(now, seq);
        self.settle(result)
    }

    /// `result`, once the session is marked failed if it is an error: every
    /// later call fails too.
    fn settle<T>(&mut self, result: Result<T, ProtocolError>) -> Result<T, ProtocolError> {
        if result.is_err() {
            self.state = State::Failed;
            self.unacked_since = None;
        }
        result
    }

    /// An ack to send now, if one is due at `now` (see [`AckPolicy`]).
    pub fn poll_ack(&mut self, now: Instant) -> Option<Frame> {
        let deadline = self.next_ack_deadline()?;
        if now >= deadline {
            self.take_ack()
        } else {
            None
        }
    }

    /// An ack of all progress, if any is unacknowledged, whatever the policy
    /// (for example before closing the connection).
    pub fn flush_ack(&mut self) -> Option<Frame> {
        self.next_ack_deadline()?;
        self.take_ack()
    }

    /// When [`poll_ack`](Self::poll_ack) will next return an ack, or `None`
    /// if nothing is unacknowledged. Can be in the past: then an ack is due.
    pub fn next_ack_deadline(&self) -> Option<Instant> {
        if self.state != State::Streaming {
            return None;
        }
        let since = self.unacked_since?;
        let next_seq = self.cursor?.next_seq;
        if next_seq.saturating_sub(self.acked) >= self.policy.every.max(1) {
            Some(since)
        } else {
            Some(since.checked_add(self.policy.delay).unwrap_or(since))
        }
    }

    fn take_ack(&mut self) -> Option<Frame> {
        let next_seq = self.cursor?.next_seq;
        self.acked = next_seq;
        self.unacked_since = None;
        Some(Frame::Ack { next_seq })
    }

    fn dispatch(&mut self, now: Instant, frame: Frame) -> Result<Events, ProtocolError> {
        match (self.state, frame) {
            (State::Failed, _) => Err(ProtocolError::Failed),
            (State::AwaitingAnswer, Frame::New { epoch, start_seq }) => {
                if self.requested.is_some() {
                    return Err(inconsistent(
                        FrameType::New,
                        "answer new to a resume request",
                    ));
                }
                Ok(Events::one(self.connect(Outcome::New, epoch, start_seq)))
            }
            (State::AwaitingAnswer, Frame::Resumed { epoch, from_seq }) => {
                let Some(requested) = self.requested else {
                    return Err(inconsistent(FrameType::Resumed, "no cursor was sent"));
                };
                if requested.epoch != epoch {
                    return Err(inconsistent(
                        FrameType::Resumed,
                        "epoch differs from the cursor's",
                    ));
                }
                if requested.next_seq != from_seq {
                    return Err(inconsistent(
                        FrameType::Resumed,
                        "sequence number differs from the cursor's",
                    ));
                }
                Ok(Events::one(self.connect(Outcome::Resumed, epoch, from_seq)))
            }
            (
                State::AwaitingAnswer,
                Frame::Expired {
                    epoch,
                    missed,
                    resume_seq,
                },
            ) => {
                let Some(requested) = self.requested else {
                    return Err(inconsistent(FrameType::Expired, "no cursor was sent"));
                };
                if requested.epoch == epoch {
                    check_skip(FrameType::Expired, requested.next_seq, missed, resume_seq)?;
                } else if missed != resume_seq {
                    // Another epoch: the producer restarted. What the old
                    // epoch still had to send is unknowable; the epoch change
                    // is the signal, and `missed` counts the new epoch's lost
                    // messages: all of them below `resume_seq`, since every
                    // epoch starts at 0.
                    return Err(inconsistent(
                        FrameType::Expired,
                        "missed count of a new epoch is not its resume sequence number",
                    ));
                }
                let connected = self.connect(Outcome::Expired, epoch, resume_seq);
                self.mark_progress(now);
                let expired = Event::CursorExpired {
                    epoch,
                    missed,
                    resume_seq,
                };
                Ok(Events::two(connected, expired))
            }
            (
                State::Streaming,
                Frame::Message {
                    seq,
                    topic,
                    payload,
                },
            ) => Ok(match self.message(now, seq)? {
                Some(epoch) => Events::one(Event::Message {
                    epoch,
                    seq,
                    topic,
                    payload,
                }),
                None => Events::none(),
            }),
            (State::Streaming, Frame::Lapped { missed, resume_seq }) => {
                let Some(cursor) = self.cursor.as_mut() else {
                    return Err(ProtocolError::Failed);
                };
                check_skip(FrameType::Lapped, cursor.next_seq, missed, resume_seq)?;
                cursor.next_seq = resume_seq;
                let epoch = cursor.epoch;
                self.mark_progress(now);
                Ok(Events::one(Event::CursorExpired {
                    epoch,
                    missed,
                    resume_seq,
                }))
            }
            (State::Streaming, Frame::Direct { topic, payload }) => {
                Ok(Events::one(Event::Direct { topic, payload }))
            }
            (state, frame) => Err(ProtocolError::UnexpectedFrame {
                frame: frame.frame_type(),
                state: state.describe(),
            }),
        }
    }

    /// Enters the streaming state at `(epoch, next_seq)`, which the producer
    /// counts as acknowledged.
    fn connect(&mut self, outcome: Outcome, epoch: u64, next_seq: u64) -> Event {
        self.cursor = Some(Cursor { epoch, next_seq });
        self.state = State::Streaming;
        self.acked = next_seq;
        self.unacked_since = None;
        Event::Connected {
            outcome,
            epoch,
            next_seq,
        }
    }

    /// Message `seq` while streaming: the epoch to deliver it in, or `None`
    /// for a re-send of a message already delivered.
    fn message(&mut self, now: Instant, seq: u64) -> Result<Option<u64>, ProtocolError> {
        match self.state {
            State::Streaming => {}
            State::Failed => return Err(ProtocolError::Failed),
            state => {
                return Err(ProtocolError::UnexpectedFrame {
                    frame: FrameType::Message,
                    state: state.describe(),
                })
            }
        }
        let Some(cursor) = self.cursor.as_mut() else {
            return Err(ProtocolError::Failed);
        };
        if seq < cursor.next_seq {
            return Ok(None);
        }
        if seq > cursor.next_seq {
            return Err(ProtocolError::Gap {
                expected: cursor.next_seq,
                got: seq,
            });
        }
        cursor.next_seq = seq.checked_add(1).ok_or(ProtocolError::SeqOverflow)?;
        let epoch = cursor.epoch;
        self.mark_progress(now);
        Ok(Some(epoch))
    }

    /// Starts the ack timer if the cursor moved past the last ack.
    fn mark_progress(&mut self, now: Instant) {
        let moved = self.cursor.is_some_and(|c| c.next_seq > self.acked);
        if moved && self.unacked_since.is_none() {
            self.unacked_since = Some(now);
        }
    }
}

fn inconsistent(frame: FrameType, what: &'static str) -> ProtocolError {
    ProtocolError::Inconsistent { frame, what }
}

/// An expiry within one epoch must move the cursor forward, by `missed`.
fn check_skip(
    frame: FrameType,
    next_seq: u64,
    missed: u64,
    resume_seq: u64,
) -> Result<(), ProtocolError> {
    if resume_seq <= next_seq {
        return Err(inconsistent(
            frame,
            "resume sequence number is not ahead of the cursor",
        ));
    }
    if missed != resume_seq - next_seq {
        return Err(inconsistent(
            frame,
            "missed count does not match the skipped range",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ErrorCode;

    const EPOCH: u64 = 0x1234;

    fn cursor(epoch: u64, next_seq: u64) -> Cursor {
        Cursor { epoch, next_seq }
    }

    fn msg(seq: u64) -> Frame {
        Frame::Message {
            seq,
            topic: "t".into(),
            payload: Bytes::from(seq.to_be_bytes().to_vec()),
        }
    }

    #[test]
    fn handle_message_is_handle_without_the_event() {
        let new = |start_seq| Frame::New {
            epoch: EPOCH,
            start_seq,
        };
        let scripts: [Vec<Frame>; 4] = [
            // A message before the answer, then anything.
            vec![msg(0), new(0), msg(0)],
            // In order, a re-send, a lap, a gap, then anything.
            vec![
                new(5),
                msg(5),
                msg(6),
                msg(5),
                msg(7),
                Frame::Lapped {
                    missed: 2,
                    resume_seq: 10,
                },
                msg(10),
                msg(12),
                msg(13),
            ],
            // The last sequence number there is.
            vec![new(u64::MAX), msg(u64::MAX)],
            // A direct message between messages.
            vec![
                new(0),
                msg(0),
                Frame::Direct {
                    topic: "d".into(),
                    payload: Bytes::new(),
                },
                msg(1),
            ],
        ];
        for script in scripts {
            let now = Instant::now();
            let mut by_handle = ConsumerSession::new(None, AckPolicy::DEFAULT);
            let mut by_message = ConsumerSession::new(None, AckPolicy::DEFAULT);
            for frame in script {
                let expected = by_handle.handle(now, frame.clone());
                match frame {
                    Frame::Message { seq, .. } => {
                        let expected = expected.map(|mut events| match events.next() {
                            Some(Event::Message { epoch, .. }) => Some(epoch),
                            None => None,
                            Some(other) => panic!("not a message event: {other:?}"),
                        });
                        assert_eq!(by_message.handle_message(now, seq), expected, "{seq}");
                    }
                    other => {
                        let got = by_message.handle(now, other);
                        assert_eq!(got.map(Vec::from_iter), expected.map(Vec::from_iter));
                    }
                }
                assert_eq!(by_message.cursor(), by_handle.cursor());
                assert_eq!(by_message.is_connected(), by_handle.is_connected());
                assert_eq!(
                    by_message.next_ack_deadline(),
                    by_handle.next_ack_deadline()
                );
            }
        }
    }

    fn events(session: &mut ConsumerSession, now: Instant, frame: Frame) -> Vec<Event> {
        session.handle(now, frame).unwrap().collect()
    }

    /// A session connected as new at `start`.
    fn connected(start: u64) -> (ConsumerSession, Instant) {
        let now = Instant::now();
        let mut s = ConsumerSession::new(None, AckPolicy::DEFAULT);
        events(
            &mut s,
            now,
            Frame::New {
                epoch: EPOCH,
                start_seq: start,
            },
        );
        (s, now)
    }

    #[test]
    fn new_consumer_starts_at_the_head() {
        let now = Instant::now();
        let mut s = ConsumerSession::new(None, AckPolicy::DEFAULT);
        assert_eq!(
            s.hello("node-a"),
            Frame::Hello {
                version: PROTOCOL_VERSION,
                node: "node-a".into(),
                resume: None,
            }
        );
        assert_eq!(s.cursor(), None);
        assert!(!s.is_connected());
        let got = events(
            &mut s,
            now,
            Frame::New {
                epoch: EPOCH,
                start_seq: 10,
            },
        );
        assert_eq!(
            got,
            [Event::Connected {
                outcome: Outcome::New,
                epoch: EPOCH,
                next_seq: 10
            }]
        );
        assert!(s.is_connected());
        assert_eq!(s.cursor(), Some(cursor(EPOCH, 10)));
        for seq in 10..13 {
            let got = events(&mut s, now, msg(seq));
            assert_eq!(
                got,
                [Event::Message {
                    epoch: EPOCH,
                    seq,
                    topic: "t".into(),
                    payload: Bytes::from(seq.to_be_bytes().to_vec()),
                }]
            );
        }
        assert_eq!(s.cursor(), Some(cursor(EPOCH, 13)));
    }

    #[test]
    fn duplicates_are_dropped_silently() {
        let (mut s, now) = connected(5);
        events(&mut s, now, msg(5));
        events(&mut s, now, msg(6));
        for seq in [0, 5, 6] {
            let got = s.handle(now, msg(seq)).unwrap();
            assert!(got.is_empty());
        }
        assert_eq!(s.cursor(), Some(cursor(EPOCH, 7)));
        assert_eq!(events(&mut s, now, msg(7)).len(), 1);
    }

    #[test]
    fn a_gap_is_an_error_and_is_never_delivered() {
        let (mut s, now) = connected(5);
        events(&mut s, now, msg(5));
        let error = s.handle(now, msg(7)).unwrap_err();
        assert_eq!(
            error,
            ProtocolError::Gap {
                expected: 6,
                got: 7
            }
        );
        assert_eq!(error.code(), ErrorCode::ProtocolViolation);
        // The cursor stays after the last delivered message, for the reconnect.
        assert_eq!(s.cursor(), Some(cursor(EPOCH, 6)));
        assert!(!s.is_connected());
        assert_eq!(s.handle(now, msg(6)), Err(ProtocolError::Failed));
        assert_eq!(s.poll_ack(now), None);
        assert_eq!(s.next_ack_deadline(), None);
    }

    #[test]
    fn resumed_continues_the_cursor() {
        let now = Instant::now();
        let stored = cursor(EPOCH, 40);
        let mut s = ConsumerSession::new(Some(stored), AckPolicy::DEFAULT);
        assert_eq!(
            s.hello("b"),
            Frame::Hello {
                version: PROTOCOL_VERSION,
                node: "b".into(),
                resume: Some(stored),
            }
        );
        assert_eq!(s.cursor(), Some(stored));
        let got = events(
            &mut s,
            now,
            Frame::Resumed {
                epoch: EPOCH,
                from_seq: 40,
            },
        );
        assert_eq!(
            got,
            [Event::Connected {
                outcome: Outcome::Resumed,
                epoch: EPOCH,
                next_seq: 40
            }]
        );
        // A re-send of what was delivered before the reconnect.
        assert!(s.handle(now, msg(39)).unwrap().is_empty());
        assert_eq!(events(&mut s, now, msg(40)).len(), 1);
        assert_eq!(s.cursor(), Some(cursor(EPOCH, 41)));
    }

    fn answer_error(stored: Option<Cursor>, answer: Frame) -> ProtocolError {
        let mut s = ConsumerSession::new(stored, AckPolicy::DEFAULT);
        let error = s.handle(Instant::now(), answer).unwrap_err();
        assert_eq!(s.cursor(), stored, "a refused answer leaves the cursor");
        assert!(!s.is_connected());
        error
    }

    #[test]
    fn inconsistent_answers_are_refused() {
        let stored = Some(cursor(EPOCH, 40));
        let cases = [
            (
                stored,
                Frame::New {
                    epoch: EPOCH,
                    start_seq: 50,
                },
                FrameType::New,
                "answer new to a resume request",
            ),
            (
                None,
                Frame::Resumed {
                    epoch: EPOCH,
                    from_seq: 0,
                },
                FrameType::Resumed,
                "no cursor was sent",
            ),
            (
                stored,
                Frame::Resumed {
                    epoch: EPOCH + 1,
                    from_seq: 40,
                },
                FrameType::Resumed,
                "epoch differs from the cursor's",
            ),
            (
                stored,
                Frame::Resumed {
                    epoch: EPOCH,
                    from_seq: 41,
                },
                FrameType::Resumed,
                "sequence number differs from the cursor's",
            ),
            (
                stored,
                Frame::Resumed {
                    epoch: EPOCH,
                    from_seq: 39,
                },
                FrameType::Resumed,
                "sequence number differs from the cursor's",
            ),
            (
                None,
                Frame::Expired {
                    epoch: EPOCH,
                    missed: 1,
                    resume_seq: 1,
                },
                FrameType::Expired,
                "no cursor was sent",
            ),
            (
                stored,
                Frame::Expired {
                    epoch: EPOCH,
                    missed: 0,
                    resume_seq: 40,
                },
                FrameType::Expired,
                "resume sequence number is not ahead of the cursor",
            ),
            (
                stored,
                Frame::Expired {
                    epoch: EPOCH,
                    missed: 5,
                    resume_seq: 30,
                },
                FrameType::Expired,
                "resume sequence number is not ahead of the cursor",
            ),
            (
                stored,
                Frame::Expired {
                    epoch: EPOCH,
                    missed: 5,
                    resume_seq: 50,
                },
                FrameType::Expired,
                "missed count does not match the skipped range",
            ),
            (
                stored,
                Frame::Expired {
                    epoch: EPOCH + 1,
                    missed: 2,
                    resume_seq: 3,
                },
                FrameType::Expired,
                "missed count of a new epoch is not its resume sequence number",
            ),
            (
                stored,
                Frame::Expired {
                    epoch: EPOCH + 1,
                    missed: 4,
                    resume_seq: 3,
                },
                FrameType::Expired,
                "missed count of a new epoch is not its resume sequence number",
            ),
        ];
        for (stored, answer, frame, what) in cases {
            let error = answer_error(stored, answer);
            assert_eq!(error, ProtocolError::Inconsistent { frame, what });
            assert_eq!(error.code(), ErrorCode::ProtocolViolation);
        }
    }

    #[test]
    fn expired_in_the_same_epoch_skips_forward() {
        let now = Instant::now();
        let mut s = ConsumerSession::new(Some(cursor(EPOCH, 40)), AckPolicy::DEFAULT);
        let got = events(
            &mut s,
            now,
            Frame::Expired {
                epoch: EPOCH,
                missed: 60,
                resume_seq: 100,
            },
        );
        assert_eq!(
            got,
            [
                Event::Connected {
                    outcome: Outcome::Expired,
                    epoch: EPOCH,
                    next_seq: 100
                },
                Event::CursorExpired {
                    epoch: EPOCH,
                    missed: 60,
                    resume_seq: 100
                }
            ]
        );
        assert_eq!(s.cursor(), Some(cursor(EPOCH, 100)));
        // The producer counts the resume point as acknowledged.
        assert_eq!(s.next_ack_deadline(), None);
        assert_eq!(events(&mut s, now, msg(100)).len(), 1);
    }

    #[test]
    fn expired_in_another_epoch_adopts_it() {
        let now = Instant::now();
        let mut s = ConsumerSession::new(Some(cursor(EPOCH, 1_000)), AckPolicy::DEFAULT);
        // The restarted producer's counter is below the old cursor; it could
        // as well be above: only the epoch matters.
        let got = events(
            &mut s,
            now,
            Frame::Expired {
                epoch: 77,
                missed: 3,
                resume_seq: 3,
            },
        );
        assert_eq!(
            got,
            [
                Event::Connected {
                    outcome: Outcome::Expired,
                    epoch: 77,
                    next_seq: 3
                },
                Event::CursorExpired {
                    epoch: 77,
                    missed: 3,
                    resume_seq: 3
                }
            ]
        );
        assert_eq!(s.cursor(), Some(cursor(77, 3)));
        // Nothing held yet in the new epoch: missed 0 still reports the restart.
        let mut s = ConsumerSession::new(Some(cursor(EPOCH, 1_000)), AckPolicy::DEFAULT);
        let got = events(
            &mut s,
            now,
            Frame::Expired {
                epoch: 78,
                missed: 0,
                resume_seq: 0,
            },
        );
        assert_eq!(got.len(), 2);
        assert_eq!(s.cursor(), Some(cursor(78, 0)));
    }

    #[test]
    fn lapped_skips_forward_in_band() {
        let (mut s, now) = connected(0);
        events(&mut s, now, msg(0));
        let got = events(
            &mut s,
            now,
            Frame::Lapped {
                missed: 9,
                resume_seq: 10,
            },
        );
        assert_eq!(
            got,
            [Event::CursorExpired {
                epoch: EPOCH,
                missed: 9,
                resume_seq: 10
            }]
        );
        assert_eq!(s.cursor(), Some(cursor(EPOCH, 10)));
        assert!(s.handle(now, msg(9)).unwrap().is_empty());
        assert_eq!(events(&mut s, now, msg(10)).len(), 1);
        for (missed, resume_seq, what) in [
            (0, 11, "resume sequence number is not ahead of the cursor"),
            (1, 5, "resume sequence number is not ahead of the cursor"),
            (2, 12, "missed count does not match the skipped range"),
        ] {
            let mut s = s.clone();
            assert_eq!(
                s.handle(now, Frame::Lapped { missed, resume_seq }),
                Err(ProtocolError::Inconsistent {
                    frame: FrameType::Lapped,
                    what
                })
            );
            assert_eq!(s.cursor(), Some(cursor(EPOCH, 11)));
        }
    }

    #[test]
    fn direct_messages_do_not_touch_the_cursor() {
        let (mut s, now) = connected(3);
        let got = events(
            &mut s,
            now,
            Frame::Direct {
                topic: "rpc".into(),
                payload: Bytes::from_static(b"x"),
            },
        );
        assert_eq!(
            got,
            [Event::Direct {
                topic: "rpc".into(),
                payload: Bytes::from_static(b"x")
            }]
        );
        assert_eq!(s.cursor(), Some(cursor(EPOCH, 3)));
        assert_eq!(s.next_ack_deadline(), None);
    }

    #[test]
    fn frames_in_the_wrong_state_are_refused() {
        let now = Instant::now();
        let hello = Frame::Hello {
            version: 1,
            node: "x".into(),
            resume: None,
        };
        let before = [
            msg(0),
            Frame::Lapped {
                missed: 1,
                resume_seq: 1,
            },
            Frame::Direct {
                topic: "t".into(),
                payload: Bytes::new(),
            },
            Frame::Ack { next_seq: 0 },
            hello.clone(),
        ];
        for frame in before {
            let ty = frame.frame_type();
            let mut s = ConsumerSession::new(None, AckPolicy::DEFAULT);
            let error = s.handle(now, frame).unwrap_err();
            assert_eq!(
                error,
                ProtocolError::UnexpectedFrame {
                    frame: ty,
                    state: "before the handshake answer"
                }
            );
            assert_eq!(error.code(), ErrorCode::ProtocolViolation);
        }
        let after = [
            Frame::New {
                epoch: EPOCH,
                start_seq: 0,
            },
            Frame::Resumed {
                epoch: EPOCH,
                from_seq: 0,
            },
            Frame::Expired {
                epoch: EPOCH,
                missed: 1,
                resume_seq: 1,
            },
            Frame::Ack { next_seq: 0 },
            hello,
        ];
        for frame in after {
            let ty = frame.frame_type();
            let (mut s, now) = connected(0);
            assert_eq!(
                s.handle(now, frame),
                Err(ProtocolError::UnexpectedFrame {
                    frame: ty,
                    state: "after the handshake"
                })
            );
        }
    }

    #[test]
    fn sequence_overflow_is_an_error() {
        let now = Instant::now();
        let mut s = ConsumerSession::new(Some(cursor(EPOCH, u64::MAX)), AckPolicy::DEFAULT);
        events(
            &mut s,
            now,
            Frame::Resumed {
                epoch: EPOCH,
                from_seq: u64::MAX,
            },
        );
        assert_eq!(
            s.handle(now, msg(u64::MAX)),
            Err(ProtocolError::SeqOverflow)
        );
        assert_eq!(s.cursor(), Some(cursor(EPOCH, u64::MAX)));
    }

    #[test]
    fn acks_are_paced_by_count() {
        let (mut s, now) = connected(100);
        assert_eq!(s.poll_ack(now), None, "the start needs no ack");
        for seq in 100..163 {
            events(&mut s, now, msg(seq));
            assert_eq!(s.poll_ack(now), None, "after {seq}");
        }
        events(&mut s, now, msg(163));
        assert_eq!(s.next_ack_deadline(), Some(now), "64 messages: due at once");
        assert_eq!(s.poll_ack(now), Some(Frame::Ack { next_seq: 164 }));
        assert_eq!(s.poll_ack(now), None);
        assert_eq!(s.next_ack_deadline(), None);
    }

    #[test]
    fn acks_are_paced_by_delay() {
        let (mut s, t0) = connected(0);
        let delay = AckPolicy::DEFAULT.delay;
        events(&mut s, t0, msg(0));
        let t1 = t0 + delay / 2;
        events(&mut s, t1, msg(1));
        // The timer runs from the first unacknowledged message.
        assert_eq!(s.next_ack_deadline(), Some(t0 + delay));
        assert_eq!(s.poll_ack(t1), None);
        assert_eq!(s.poll_ack(t0 + delay), Some(Frame::Ack { next_seq: 2 }));
        events(&mut s, t1 + delay, msg(2));
        assert_eq!(s.next_ack_deadline(), Some(t1 + delay * 2));
        assert_eq!(s.flush_ack(), Some(Frame::Ack { next_seq: 3 }));
        assert_eq!(s.flush_ack(), None);
        // A big skip is acknowledged at once.
        events(
            &mut s,
            t1,
            Frame::Lapped {
                missed: 97,
                resume_seq: 100,
            },
        );
        assert_eq!(s.poll_ack(t1), Some(Frame::Ack { next_seq: 100 }));
    }

    #[test]
    fn ack_policy_zero_acts_as_one() {
        let now = Instant::now();
        let policy = AckPolicy {
            every: 0,
            delay: Duration::from_secs(3600),
        };
        let mut s = ConsumerSession::new(None, policy);
        events(
            &mut s,
            now,
            Frame::New {
                epoch: EPOCH,
                start_seq: 0,
            },
        );
        assert_eq!(s.poll_ack(now), None);
        events(&mut s, now, msg(0));
        assert_eq!(s.poll_ack(now), Some(Frame::Ack { next_seq: 1 }));
        assert_eq!(AckPolicy::default(), AckPolicy::DEFAULT);
    }

    #[test]
    fn no_ack_before_the_handshake() {
        let now = Instant::now();
        let mut s = ConsumerSession::new(Some(cursor(EPOCH, 5)), AckPolicy::DEFAULT);
        assert_eq!(s.poll_ack(now), None);
        assert_eq!(s.flush_ack(), None);
        assert_eq!(s.next_ack_deadline(), None);
    }
}
