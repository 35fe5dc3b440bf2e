//! The two per-connection state machines against arbitrary frame sequences.
//!
//! Three parts, each replayed against a small reference model written from
//! `PROTOCOL.md` (not from the implementation):
//!
//! 1. **A hostile producer**: arbitrary frames into a [`ConsumerSession`].
//!    Every result (events or error code) must equal the model's; and,
//!    independently of the model, the cursor never moves backwards within an
//!    epoch, a message is delivered only at `seq == next_seq`, every other
//!    forward jump is a `CursorExpired` whose `missed` equals the jump, the
//!    epoch changes only through a handshake answer, and after an error the
//!    session stays failed with its cursor frozen. Acks are polled at
//!    arbitrary times and must follow the ack policy exactly.
//! 2. **A hostile consumer**: arbitrary hellos (versions, names, cursors
//!    from every region of the ring and other epochs), acks, other frames
//!    and send progress into a [`ProducerSession`]. The handshake answer and
//!    the error codes must follow the table of PROTOCOL.md; `acked <= sent`,
//!    both only grow; a failed session stays failed.
//! 3. **Honest peers**: a consumer with an arbitrary stored cursor meets a
//!    producer with an arbitrary ring; the answer must be accepted, and an
//!    honest stream (publishes, sends, laps, re-sends, directs, acks in any
//!    interleaving) must never make either side fail, with the consumer's
//!    cursor always where the sender is.
//!
//! Numbers are mostly given relative to the position that matters (the
//! cursor, the head, the skipped range), so the fuzzer reaches the edges
//! (`seq == next_seq ± 1`, `missed` off by one) without guessing 64-bit
//! values.

#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ringcast_net::proto::{
    AckPolicy, ConsumerSession, Cursor, ErrorCode, Event, Frame, Handshake, Outcome,
    ProducerSession, ProtocolError, RingView, PROTOCOL_VERSION,
};

/// The node name in the consumer's certificate.
const CERTIFIED: &str = "node-a";

/// A number relative to a base position, or an absolute one.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Num {
    Rel(i8),
    Near(i16),
    Abs(u64),
}

impl Num {
    fn at(self, base: u64) -> u64 {
        match self {
            Num::Rel(d) => base.wrapping_add_signed(d.into()),
            Num::Near(d) => base.wrapping_add_signed(d.into()),
            Num::Abs(n) => n,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum EpochSpec {
    Same,
    Other(u64),
}

impl EpochSpec {
    fn at(self, epoch: u64) -> u64 {
        match self {
            EpochSpec::Same => epoch,
            EpochSpec::Other(e) => e,
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
enum NodeSpec {
    Certified,
    Other(String),
}

/// A frame, its numbers relative to a base `(epoch, pos)`: the consumer's
/// cursor for frames to the consumer, the ring's head or sent position for
/// frames to the producer. `missed` is relative to the skipped range, so
/// `Rel(0)` is the consistent value.
#[derive(Arbitrary, Debug, Clone)]
enum FrameSpec {
    Hello {
        current_version: bool,
        version: u16,
        node: NodeSpec,
        resume: Option<(EpochSpec, Num)>,
    },
    New {
        epoch: EpochSpec,
        start: Num,
    },
    Resumed {
        epoch: EpochSpec,
        from: Num,
    },
    Expired {
        epoch: EpochSpec,
        missed: Num,
        resume: Num,
    },
    Message {
        seq: Num,
        topic: u8,
    },
    Lapped {
        missed: Num,
        resume: Num,
    },
    Direct {
        payload: u8,
    },
    Ack {
        next: Num,
    },
}

impl FrameSpec {
    fn frame(&self, epoch: u64, pos: u64) -> Frame {
        match *self {
            FrameSpec::Hello {
                current_version,
                version,
                ref node,
                resume,
            } => Frame::Hello {
                version: if current_version {
                    PROTOCOL_VERSION
                } else {
                    version
                },
                node: match node {
                    NodeSpec::Certified => CERTIFIED.to_owned(),
                    NodeSpec::Other(name) => name.clone(),
                },
                resume: resume.map(|(e, n)| Cursor {
                    epoch: e.at(epoch),
                    next_seq: n.at(pos),
                }),
            },
            FrameSpec::New { epoch: e, start } => Frame::New {
                epoch: e.at(epoch),
                start_seq: start.at(pos),
            },
            FrameSpec::Resumed { epoch: e, from } => Frame::Resumed {
                epoch: e.at(epoch),
                from_seq: from.at(pos),
            },
            FrameSpec::Expired {
                epoch: e,
                missed,
                resume,
            } => {
                let resume_seq = resume.at(pos);
                Frame::Expired {
                    epoch: e.at(epoch),
                    missed: missed.at(resume_seq.wrapping_sub(pos)),
                    resume_seq,
                }
            }
            FrameSpec::Message { seq, topic } => Frame::Message {
                seq: seq.at(pos),
                topic: "t".repeat(usize::from(topic % 4)).into(),
                payload: Bytes::from(seq.at(pos).to_be_bytes().to_vec()),
            },
            FrameSpec::Lapped { missed, resume } => {
                let resume_seq = resume.at(pos);
                Frame::Lapped {
                    missed: missed.at(resume_seq.wrapping_sub(pos)),
                    resume_seq,
                }
            }
            FrameSpec::Direct { payload } => Frame::Direct {
                topic: "d".into(),
                payload: Bytes::from(vec![payload; usize::from(payload % 8)]),
            },
            FrameSpec::Ack { next } => Frame::Ack {
                next_seq: next.at(pos),
            },
        }
    }
}

#[derive(Arbitrary, Debug)]
enum ConsumerOp {
    /// A frame from a hostile producer, after `micros` more microseconds.
    Frame { spec: FrameSpec, micros: u16 },
    /// Poll for an ack after `micros` more microseconds.
    PollAck { micros: u16 },
    /// Ask for an ack whatever the policy.
    FlushAck,
}

#[derive(Arbitrary, Debug)]
enum ProducerOp {
    /// A first (or repeated) frame through `handle_hello`.
    Hello { spec: FrameSpec, view: ViewSpec },
    /// A later frame through `handle`.
    Frame(FrameSpec),
    /// The sender handed `n` more messages to the stream.
    Sent(u16),
    /// Check the flush predicate at a barrier near the sent position.
    Flushed(Num),
}

/// A ring view: `oldest_held <= head` by construction.
#[derive(Arbitrary, Debug, Clone, Copy)]
struct ViewSpec {
    oldest: Num,
    span: u16,
}

impl ViewSpec {
    fn view(self, base: u64) -> RingView {
        let oldest_held = self.oldest.at(base);
        RingView {
            oldest_held,
            head: oldest_held.saturating_add(self.span.into()),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum HonestOp {
    Publish(u8),
    Send(u8),
    /// Re-send a message already delivered, `k` back.
    Resend(u8),
    Direct,
    PollAck(u16),
    FlushAck,
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// The consumer's stored cursor: `(same epoch as the producer?, epoch, next_seq)`.
    stored: Option<(bool, u64, Num)>,
    producer_epoch: u64,
    view: ViewSpec,
    capacity: u8,
    consumer_ops: Vec<ConsumerOp>,
    producer_ops: Vec<ProducerOp>,
    honest_ops: Vec<HonestOp>,
}

fuzz_target!(|input: Input| {
    let start = Instant::now();
    let view = input.view.view(0);
    let stored = input.stored.map(|(same, epoch, next)| Cursor {
        epoch: if same { input.producer_epoch } else { epoch },
        next_seq: next.at(view.head),
    });
    hostile_producer(stored, &input.consumer_ops, start);
    hostile_consumer(input.producer_epoch, view, &input.producer_ops);
    honest(
        stored,
        input.producer_epoch,
        view,
        u64::from(input.capacity.max(1)),
        &input.honest_ops,
        start,
    );
});

// ---------------------------------------------------------------------------
// 1. A hostile producer against the consumer session.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CState {
    Awaiting,
    Streaming,
    Failed,
}

/// The consumer's rules, from PROTOCOL.md.
struct ConsumerModel {
    requested: Option<Cursor>,
    cursor: Option<Cursor>,
    state: CState,
    acked: u64,
    unacked_since: Option<Instant>,
}

impl ConsumerModel {
    /// The events `frame` must produce, or `None` if it must be refused with
    /// code 1 (every consumer-side refusal is a protocol violation).
    fn handle(&mut self, now: Instant, frame: &Frame) -> Result<Vec<Event>, ()> {
        let result = self.dispatch(now, frame);
        if result.is_err() {
            self.state = CState::Failed;
            self.unacked_since = None;
        }
        result
    }

    fn dispatch(&mut self, now: Instant, frame: &Frame) -> Result<Vec<Event>, ()> {
        let connect = |m: &mut Self, outcome, epoch, next_seq| {
            m.cursor = Some(Cursor { epoch, next_seq });
            m.state = CState::Streaming;
            m.acked = next_seq;
            m.unacked_since = None;
            Event::Connected {
                outcome,
                epoch,
                next_seq,
            }
        };
        match (self.state, frame) {
            (CState::Failed, _) => Err(()),
            (CState::Awaiting, &Frame::New { epoch, start_seq }) => match self.requested {
                Some(_) => Err(()),
                None => Ok(vec![connect(self, Outcome::New, epoch, start_seq)]),
            },
            (CState::Awaiting, &Frame::Resumed { epoch, from_seq }) => match self.requested {
                Some(r) if r.epoch == epoch && r.next_seq == from_seq => {
                    Ok(vec![connect(self, Outcome::Resumed, epoch, from_seq)])
                }
                _ => Err(()),
            },
            (
                CState::Awaiting,
                &Frame::Expired {
                    epoch,
                    missed,
                    resume_seq,
                },
            ) => {
                let r = self.requested.ok_or(())?;
                let consistent = if r.epoch == epoch {
                    resume_seq > r.next_seq && missed == resume_seq - r.next_seq
                } else {
                    // A new epoch starts at 0: everything below the resume
                    // point is missed.
                    missed == resume_seq
                };
                if !consistent {
                    return Err(());
                }
                let connected = connect(self, Outcome::Expired, epoch, resume_seq);
                Ok(vec![
                    connected,
                    Event::CursorExpired {
                        epoch,
                        missed,
                        resume_seq,
                    },
                ])
            }
            (
                CState::Streaming,
                Frame::Message {
                    seq,
                    topic,
                    payload,
                },
            ) => {
                let cursor = self.cursor.as_mut().expect("streaming has a cursor");
                if *seq < cursor.next_seq {
                    return Ok(vec![]);
                }
                if *seq > cursor.next_seq || *seq == u64::MAX {
                    return Err(());
                }
                cursor.next_seq = seq + 1;
                let epoch = cursor.epoch;
                self.progress(now);
                Ok(vec![Event::Message {
                    epoch,
                    seq: *seq,
                    topic: topic.clone(),
                    payload: payload.clone(),
                }])
            }
            (CState::Streaming, &Frame::Lapped { missed, resume_seq }) => {
                let cursor = self.cursor.as_mut().expect("streaming has a cursor");
                if resume_seq <= cursor.next_seq || missed != resume_seq - cursor.next_seq {
                    return Err(());
                }
                cursor.next_seq = resume_seq;
                let epoch = cursor.epoch;
                self.progress(now);
                Ok(vec![Event::CursorExpired {
                    epoch,
                    missed,
                    resume_seq,
                }])
            }
            (CState::Streaming, Frame::Direct { topic, payload }) => Ok(vec![Event::Direct {
                topic: topic.clone(),
                payload: payload.clone(),
            }]),
            _ => Err(()),
        }
    }

    fn progress(&mut self, now: Instant) {
        if self.cursor.is_some_and(|c| c.next_seq > self.acked) && self.unacked_since.is_none() {
            self.unacked_since = Some(now);
        }
    }

    /// The ack due at `now` under the default policy (64 or 5 ms), if any.
    fn poll_ack(&mut self, now: Instant, force: bool) -> Option<Frame> {
        if self.state != CState::Streaming {
            return None;
        }
        let since = self.unacked_since?;
        let next_seq = self.cursor?.next_seq;
        let due = force
            || next_seq - self.acked >= AckPolicy::DEFAULT.every
            || now >= since + AckPolicy::DEFAULT.delay;
        if !due {
            return None;
        }
        self.acked = next_seq;
        self.unacked_since = None;
        Some(Frame::Ack { next_seq })
    }
}

fn hostile_producer(stored: Option<Cursor>, ops: &[ConsumerOp], start: Instant) {
    let mut session = ConsumerSession::new(stored, AckPolicy::DEFAULT);
    let mut model = ConsumerModel {
        requested: stored,
        cursor: stored,
        state: CState::Awaiting,
        acked: 0,
        unacked_since: None,
    };
    assert_eq!(
        session.hello(CERTIFIED),
        Frame::Hello {
            version: PROTOCOL_VERSION,
            node: CERTIFIED.into(),
            resume: stored,
        }
    );
    let mut now = start;
    let mut last_ack: Option<u64> = None;
    for op in ops {
        let before = session.cursor();
        let was_failed = model.state == CState::Failed;
        match op {
            ConsumerOp::Frame { spec, micros } => {
                now += Duration::from_micros((*micros).into());
                let base = before.unwrap_or(Cursor {
                    epoch: 0,
                    next_seq: 0,
                });
                let frame = spec.frame(base.epoch, base.next_seq);
                let expected = model.handle(now, &frame);
                let got = session.handle(now, frame.clone());
                match (got, expected) {
                    (Ok(events), Ok(expected)) => {
                        let events: Vec<Event> = events.collect();
                        assert_eq!(events, expected, "{frame:?} after {before:?}");
                        check_moves(before, session.cursor(), &frame, &events);
                    }
                    (Err(error), Err(())) => {
                        let want = if was_failed {
                            ProtocolError::Failed
                        } else {
                            error.clone()
                        };
                        assert_eq!(error, want, "a failed session stays failed");
                        assert_eq!(error.code(), ErrorCode::ProtocolViolation, "{error}");
                        assert_eq!(session.cursor(), before, "an error leaves the cursor");
                        assert!(!session.is_connected());
                    }
                    (got, expected) => {
                        panic!("{frame:?} after {before:?}: got {got:?}, model {expected:?}")
                    }
                }
            }
            ConsumerOp::PollAck { micros } => {
                now += Duration::from_micros((*micros).into());
                let got = session.poll_ack(now);
                assert_eq!(got, model.poll_ack(now, false), "poll_ack");
                check_ack(got, &session, &mut last_ack);
            }
            ConsumerOp::FlushAck => {
                let got = session.flush_ack();
                assert_eq!(got, model.poll_ack(now, true), "flush_ack");
                check_ack(got, &session, &mut last_ack);
            }
        }
        assert_eq!(session.cursor(), model.cursor);
        assert_eq!(session.is_connected(), model.state == CState::Streaming);
        if model.state != CState::Streaming {
            assert_eq!(session.next_ack_deadline(), None);
        }
    }
}

/// The contract, independently of the model: how the cursor may move.
fn check_moves(before: Option<Cursor>, after: Option<Cursor>, frame: &Frame, events: &[Event]) {
    let handshake = matches!(
        frame,
        Frame::New { .. } | Frame::Resumed { .. } | Frame::Expired { .. }
    );
    let Some(after) = after else {
        panic!("no cursor after {frame:?}");
    };
    match before {
        Some(b) if b.epoch == after.epoch => {
            assert!(
                after.next_seq >= b.next_seq,
                "cursor moved back: {b:?} -> {after:?}"
            )
        }
        // A new epoch is only adopted from a handshake answer.
        _ => assert!(handshake, "epoch changed by {frame:?}"),
    }
    let mut pos = before.filter(|_| !handshake);
    for event in events {
        match *event {
            Event::Connected {
                epoch, next_seq, ..
            } => pos = Some(Cursor { epoch, next_seq }),
            Event::Message { epoch, seq, .. } => {
                let p = pos.expect("a message after the handshake");
                assert_eq!(
                    (epoch, seq),
                    (p.epoch, p.next_seq),
                    "delivered out of sequence"
                );
                pos = Some(Cursor {
                    epoch,
                    next_seq: seq + 1,
                });
            }
            Event::CursorExpired {
                epoch,
                missed,
                resume_seq,
            } => {
                let p = pos.expect("an expiry after the handshake");
                assert_eq!(epoch, p.epoch);
                match (handshake, before) {
                    // A restart: the new epoch's lost messages, counted from 0.
                    (true, Some(b)) if b.epoch != epoch => assert_eq!(missed, resume_seq),
                    (true, Some(b)) => {
                        assert!(resume_seq > b.next_seq);
                        assert_eq!(missed, resume_seq - b.next_seq, "missed does not add up");
                    }
                    (true, None) => panic!("expiry without a stored cursor"),
                    (false, _) => {
                        assert!(resume_seq > p.next_seq);
                        assert_eq!(missed, resume_seq - p.next_seq, "missed does not add up");
                    }
                }
                pos = Some(Cursor {
                    epoch,
                    next_seq: resume_seq,
                });
            }
            Event::Direct { .. } => {}
        }
    }
    if let Some(p) = pos {
        assert_eq!(p, after, "the cursor moved without an event");
    } else {
        assert_eq!(before, Some(after), "the cursor moved without an event");
    }
}

fn check_ack(ack: Option<Frame>, session: &ConsumerSession, last: &mut Option<u64>) {
    let Some(ack) = ack else { return };
    let Frame::Ack { next_seq } = ack else {
        panic!("not an ack: {ack:?}");
    };
    assert_eq!(Some(next_seq), session.cursor().map(|c| c.next_seq));
    if let Some(last) = *last {
        assert!(next_seq > last, "ack {next_seq} does not follow {last}");
    }
    *last = Some(next_seq);
}

// ---------------------------------------------------------------------------
// 2. A hostile consumer against the producer session.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PState {
    AwaitingHello,
    Streaming { sent: u64, acked: u64 },
    Failed,
}

/// The producer's handshake table, from PROTOCOL.md.
fn expected_handshake(epoch: u64, frame: &Frame, view: RingView) -> Result<Handshake, ErrorCode> {
    let Frame::Hello {
        version,
        node,
        resume,
    } = frame
    else {
        return Err(ErrorCode::ProtocolViolation);
    };
    if *version != PROTOCOL_VERSION {
        return Err(ErrorCode::UnsupportedVersion);
    }
    if node != CERTIFIED {
        return Err(ErrorCode::Unauthorized);
    }
    let RingView { head, oldest_held } = view;
    let (answer, outcome, start_seq) = match *resume {
        None => (
            Frame::New {
                epoch,
                start_seq: head,
            },
            Outcome::New,
            head,
        ),
        Some(c) if c.epoch != epoch => (
            Frame::Expired {
                epoch,
                missed: oldest_held,
                resume_seq: oldest_held,
            },
            Outcome::Expired,
            oldest_held,
        ),
        Some(c) if c.next_seq < oldest_held => (
            Frame::Expired {
                epoch,
                missed: oldest_held - c.next_seq,
                resume_seq: oldest_held,
            },
            Outcome::Expired,
            oldest_held,
        ),
        Some(c) if c.next_seq <= head => (
            Frame::Resumed {
                epoch,
                from_seq: c.next_seq,
            },
            Outcome::Resumed,
            c.next_seq,
        ),
        Some(_) => return Err(ErrorCode::CursorFromFuture),
    };
    Ok(Handshake {
        answer,
        outcome,
        start_seq,
        node: CERTIFIED.into(),
    })
}

fn hostile_consumer(epoch: u64, first_view: RingView, ops: &[ProducerOp]) {
    let mut session = ProducerSession::new(epoch);
    assert_eq!(session.epoch(), epoch);
    let mut state = PState::AwaitingHello;
    for op in ops {
        let (base, sent_before, acked_before) = match state {
            PState::Streaming { sent, acked } => (sent, Some(sent), Some(acked)),
            _ => (first_view.head, None, None),
        };
        match op {
            ProducerOp::Hello { spec, view } => {
                let view = view.view(first_view.oldest_held);
                let frame = spec.frame(epoch, base);
                let got = session.handle_hello(frame.clone(), view, CERTIFIED);
                match state {
                    PState::AwaitingHello => {
                        let expected = expected_handshake(epoch, &frame, view);
                        match (&got, &expected) {
                            (Ok(h), Ok(e)) => {
                                assert_eq!(h, e, "{frame:?} with {view:?}");
                                state = PState::Streaming {
                                    sent: h.start_seq,
                                    acked: h.start_seq,
                                };
                                assert_eq!(session.node(), Some(CERTIFIED));
                            }
                            (Err(g), Err(e)) => {
                                assert_eq!(g.code(), *e, "{frame:?} with {view:?}: {g}");
                                state = PState::Failed;
                            }
                            _ => panic!("{frame:?} with {view:?}: got {got:?}, want {expected:?}"),
                        }
                    }
                    // A second hello, or one after a failure, is refused.
                    PState::Streaming { .. } | PState::Failed => {
                        let error = got.expect_err("a second hello is refused");
                        assert_eq!(error.code(), ErrorCode::ProtocolViolation, "{error}");
                        state = PState::Failed;
                    }
                }
            }
            ProducerOp::Frame(spec) => {
                let frame = spec.frame(epoch, base);
                let got = session.handle(frame.clone());
                state = match (state, &frame) {
                    (PState::Failed, _) => {
                        assert_eq!(got, Err(ProtocolError::Failed));
                        PState::Failed
                    }
                    (PState::Streaming { sent, acked }, &Frame::Ack { next_seq })
                        if (acked..=sent).contains(&next_seq) =>
                    {
                        assert_eq!(got, Ok(()), "ack {next_seq} in {acked}..={sent}");
                        PState::Streaming {
                            sent,
                            acked: next_seq,
                        }
                    }
                    _ => {
                        let error = got.expect_err("refused");
                        assert_eq!(error.code(), ErrorCode::ProtocolViolation, "{error}");
                        PState::Failed
                    }
                };
            }
            ProducerOp::Sent(n) => {
                let next = base.saturating_add((*n).into());
                session.on_sent(next);
                if let PState::Streaming { acked, .. } = state {
                    state = PState::Streaming { sent: next, acked };
                }
            }
            ProducerOp::Flushed(at) => {
                let head = at.at(base);
                let want = matches!(state, PState::Streaming { acked, .. } if acked >= head);
                assert_eq!(session.is_flushed(head), want);
            }
        }
        let (sent, acked) = match state {
            PState::Streaming { sent, acked } => (Some(sent), Some(acked)),
            _ => (None, None),
        };
        assert_eq!(session.sent(), sent);
        assert_eq!(session.acked(), acked);
        if let (Some(s), Some(a)) = (sent, acked) {
            assert!(a <= s, "acked {a} beyond sent {s}");
        }
        // Both only grow while streaming.
        if let (Some(s0), Some(s)) = (sent_before, sent) {
            assert!(s >= s0);
        }
        if let (Some(a0), Some(a)) = (acked_before, acked) {
            assert!(a >= a0);
        }
    }
}

// ---------------------------------------------------------------------------
// 3. Honest peers: nothing may fail, the cursor follows the sender.

fn honest(
    stored: Option<Cursor>,
    epoch: u64,
    view: RingView,
    capacity: u64,
    ops: &[HonestOp],
    start: Instant,
) {
    let mut consumer = ConsumerSession::new(stored, AckPolicy::DEFAULT);
    let mut producer = ProducerSession::new(epoch);
    let hello = consumer.hello(CERTIFIED);
    let handshake = match producer.handle_hello(hello, view, CERTIFIED) {
        Ok(handshake) => handshake,
        Err(error) => {
            // The only refusal of an honest consumer: a cursor of this epoch
            // beyond the head.
            let c = stored.expect("a hello without a cursor is always answered");
            assert_eq!(error.code(), ErrorCode::CursorFromFuture, "{error}");
            assert!(c.epoch == epoch && c.next_seq > view.head);
            return;
        }
    };
    let mut now = start;
    let events: Vec<Event> = consumer
        .handle(now, handshake.answer.clone())
        .expect("an honest answer is accepted")
        .collect();
    let start_seq = handshake.start_seq;
    assert_eq!(
        consumer.cursor(),
        Some(Cursor {
            epoch,
            next_seq: start_seq
        })
    );
    match (handshake.outcome, stored) {
        (Outcome::New, None) => assert_eq!(events.len(), 1),
        (Outcome::Resumed, Some(c)) => {
            assert_eq!(events.len(), 1);
            assert_eq!(
                c,
                Cursor {
                    epoch,
                    next_seq: start_seq
                }
            );
        }
        (Outcome::Expired, Some(c)) => {
            let [Event::Connected { .. }, Event::CursorExpired {
                missed, resume_seq, ..
            }] = events[..]
            else {
                panic!("expired answer gave {events:?}");
            };
            assert_eq!(resume_seq, start_seq);
            if c.epoch == epoch {
                assert_eq!(missed, start_seq - c.next_seq);
            } else {
                assert_eq!(missed, start_seq);
            }
        }
        other => panic!("outcome {other:?}"),
    }

    let mut head = view.head;
    let mut oldest = view.oldest_held;
    let mut pos = start_seq;
    for op in ops {
        match *op {
            HonestOp::Publish(n) => {
                let Some(h) = head.checked_add(n.into()).filter(|&h| h < u64::MAX) else {
                    continue;
                };
                head = h;
                oldest = oldest.max(head.saturating_sub(capacity));
            }
            HonestOp::Send(n) => {
                if pos < oldest {
                    producer.on_sent(oldest);
                    let lapped = Frame::Lapped {
                        missed: oldest - pos,
                        resume_seq: oldest,
                    };
                    let events: Vec<Event> = consumer
                        .handle(now, lapped)
                        .expect("honest lapped")
                        .collect();
                    assert_eq!(
                        events,
                        [Event::CursorExpired {
                            epoch,
                            missed: oldest - pos,
                            resume_seq: oldest
                        }]
                    );
                    pos = oldest;
                }
                let until = head.min(pos.saturating_add(n.into()));
                for seq in pos..until {
                    producer.on_sent(seq + 1);
                    let message = Frame::Message {
                        seq,
                        topic: "t".into(),
                        payload: Bytes::new(),
                    };
                    let events: Vec<Event> = consumer
                        .handle(now, message)
                        .expect("honest message")
                        .collect();
                    assert!(
                        matches!(events[..], [Event::Message { seq: s, .. }] if s == seq),
                        "{events:?}"
                    );
                }
                pos = pos.max(until);
            }
            HonestOp::Resend(k) => {
                let back = u64::from(k) + 1;
                if pos >= start_seq.saturating_add(back) {
                    let message = Frame::Message {
                        seq: pos - back,
                        topic: "t".into(),
                        payload: Bytes::new(),
                    };
                    let events = consumer.handle(now, message).expect("a re-send is dropped");
                    assert!(events.is_empty(), "a re-send was delivered again");
                }
            }
            HonestOp::Direct => {
                let direct = Frame::Direct {
                    topic: "d".into(),
                    payload: Bytes::from_static(b"x"),
                };
                let events: Vec<Event> = consumer.handle(now, direct).expect("direct").collect();
                assert_eq!(events.len(), 1);
            }
            HonestOp::PollAck(micros) => {
                now += Duration::from_micros(micros.into());
                if let Some(ack) = consumer.poll_ack(now) {
                    producer.handle(ack).expect("an honest ack is accepted");
                }
            }
            HonestOp::FlushAck => {
                if let Some(ack) = consumer.flush_ack() {
                    producer.handle(ack).expect("an honest ack is accepted");
                }
                assert_eq!(producer.acked(), Some(pos));
                assert!(producer.is_flushed(pos));
            }
        }
        assert_eq!(consumer.cursor().map(|c| c.next_seq), Some(pos));
        assert_eq!(producer.sent(), Some(pos));
        let acked = producer.acked().expect("streaming");
        assert!(acked <= pos);
    }
}
