//! The producer's side of one consumer connection.

use super::{Cursor, Frame, Outcome, ProtocolError, PROTOCOL_VERSION};

/// The ring's state when a hello is answered.
///
/// `head` is the sequence number the next publish takes; `oldest_held` the
/// oldest message still readable (`head` when the ring is empty). Both can
/// change the moment they are read; the answer is correct for the moment of
/// the read, and a sender lapped afterwards reports it in-band (`Lapped`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RingView {
    /// Sequence number of the next publish.
    pub head: u64,
    /// Oldest sequence number still held; `<= head`.
    pub oldest_held: u64,
}

/// The result of a successful handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handshake {
    /// The frame to send first: `New`, `Resumed` or `Expired`.
    pub answer: Frame,
    /// Which answer it is.
    pub outcome: Outcome,
    /// The sequence number the sender starts reading the ring at.
    pub start_seq: u64,
    /// The consumer's node name (checked against its certificate).
    pub node: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    AwaitingHello,
    Streaming {
        /// Everything below was handed to the stream. Only grows.
        sent: u64,
        /// The consumer's last ack. `<= sent`, only grows.
        acked: u64,
    },
    Failed,
}

impl State {
    fn describe(&self) -> &'static str {
        match self {
            Self::AwaitingHello => "before the hello",
            Self::Streaming { .. } => "after the handshake",
            Self::Failed => "after a failure",
        }
    }
}

/// The producer's protocol state for one consumer connection.
///
/// Feed the first frame to [`handle_hello`](Self::handle_hello), send the
/// answer, stream from [`Handshake::start_seq`], report progress with
/// [`on_sent`](Self::on_sent) and feed later frames to
/// [`handle`](Self::handle). On error, close the connection with
/// [`ProtocolError::code`].
///
/// # Semantics
///
/// [`ProducerSession::handle_hello`] decides where the consumer's stream
/// starts, from the consumer's cursor and the ring's `oldest_held..=head`:
///
/// | hello's cursor                         | answer                                              | sender starts at |
/// |----------------------------------------|-----------------------------------------------------|------------------|
/// | none                                   | `New { epoch, start_seq: head }`                    | `head`           |
/// | another epoch (the producer restarted) | `Expired { epoch, missed: oldest, resume_seq: oldest }` | `oldest`     |
/// | same epoch, `next_seq < oldest`        | `Expired { epoch, missed: oldest - next_seq, resume_seq: oldest }` | `oldest` |
/// | same epoch, `oldest <= next_seq <= head` | `Resumed { epoch, from_seq: next_seq }`           | `next_seq`       |
/// | same epoch, `next_seq > head`          | error [`ProtocolError::CursorFromFuture`]           | —                |
///
/// Afterwards the session only accepts acks, and tracks two positions that
/// only grow: `sent` (the caller reports it with
/// [`on_sent`](ProducerSession::on_sent)) and `acked` (`<= sent`). The
/// starting position counts as both sent and acknowledged. A consumer is
/// flushed for a barrier taken at head `h` once `acked >= h`
/// ([`is_flushed`](ProducerSession::is_flushed)).
#[derive(Clone, Debug)]
pub struct ProducerSession {
    /// This producer's epoch, random per start.
    epoch: u64,
    state: State,
    /// The consumer's node name, once the hello was accepted.
    node: Option<String>,
}

impl ProducerSession {
    /// A session for a producer whose current epoch is `epoch`.
    pub fn new(epoch: u64) -> Self {
        Self {
            epoch,
            state: State::AwaitingHello,
            node: None,
        }
    }

    /// This producer's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The consumer's node name, once its hello was accepted.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// Answers the consumer's first frame, which must be a hello.
    ///
    /// `ring` is read just before the call; `certified_node` is the node name
    /// in the consumer's TLS certificate
    /// ([`tls::peer_node_name`](crate::tls::peer_node_name)).
    pub fn handle_hello(
        &mut self,
        frame: Frame,
        ring: RingView,
        certified_node: &str,
    ) -> Result<Handshake, ProtocolError> {
        let result = self.answer(frame, ring, certified_node);
        match &result {
            Ok(handshake) => {
                self.state = State::Streaming {
                    sent: handshake.start_seq,
                    acked: handshake.start_seq,
                };
                self.node = Some(handshake.node.clone());
            }
            Err(_) => self.state = State::Failed,
        }
        result
    }

    /// Records that every message below `next_seq` was handed to the stream
    /// (or skipped by a `Lapped` frame). Call it when the frames are queued
    /// for writing, before awaiting the write, so that an ack can never
    /// overtake it. Positions below the current one are ignored.
    pub fn on_sent(&mut self, next_seq: u64) {
        if let State::Streaming { sent, .. } = &mut self.state {
            debug_assert!(
                next_seq >= *sent,
                "sent position went back: {next_seq} < {sent}"
            );
            *sent = next_seq.max(*sent);
        }
    }

    /// Processes a frame after the handshake; only acks are allowed.
    pub fn handle(&mut self, frame: Frame) -> Result<(), ProtocolError> {
        let result = match (&mut self.state, frame) {
            (State::Failed, _) => Err(ProtocolError::Failed),
            (State::Streaming { sent, acked }, Frame::Ack { next_seq }) => {
                if next_seq < *acked {
                    Err(ProtocolError::AckRegressed {
                        acked: next_seq,
                        previous: *acked,
                    })
                } else if next_seq > *sent {
                    Err(ProtocolError::AckBeyondSent {
                        acked: next_seq,
                        sent: *sent,
                    })
                } else {
                    *acked = next_seq;
                    Ok(())
                }
            }
            (state, frame) => Err(ProtocolError::UnexpectedFrame {
                frame: frame.frame_type(),
                state: state.describe(),
            }),
        };
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    /// The consumer's acknowledged position: it delivered everything below.
    /// `None` before the handshake (and after a failure).
    pub fn acked(&self) -> Option<u64> {
        match self.state {
            State::Streaming { acked, .. } => Some(acked),
            _ => None,
        }
    }

    /// Everything below this was handed to the stream. `None` before the
    /// handshake (and after a failure).
    pub fn sent(&self) -> Option<u64> {
        match self.state {
            State::Streaming { sent, .. } => Some(sent),
            _ => None,
        }
    }

    /// True if the consumer acknowledged everything published before a flush
    /// barrier taken when the head was `head_at_flush`.
    pub fn is_flushed(&self, head_at_flush: u64) -> bool {
        self.acked().is_some_and(|acked| acked >= head_at_flush)
    }

    fn answer(
        &self,
        frame: Frame,
        ring: RingView,
        certified_node: &str,
    ) -> Result<Handshake, ProtocolError> {
        if self.state != State::AwaitingHello {
            return Err(ProtocolError::UnexpectedFrame {
                frame: frame.frame_type(),
                state: self.state.describe(),
            });
        }
        let Frame::Hello {
            version,
            node,
            resume,
        } = frame
        else {
            return Err(ProtocolError::UnexpectedFrame {
                frame: frame.frame_type(),
                state: self.state.describe(),
            });
        };
        if version != PROTOCOL_VERSION {
            return Err(ProtocolError::UnsupportedVersion { version });
        }
        if node != certified_node {
            return Err(ProtocolError::PeerNameMismatch {
                claimed: node,
                certified: certified_node.to_owned(),
            });
        }
        debug_assert!(ring.oldest_held <= ring.head, "{ring:?}");
        let head = ring.head;
        let oldest = ring.oldest_held.min(head);
        let epoch = self.epoch;
        let (answer, outcome, start_seq) = match resume {
            None => (
                Frame::New {
                    epoch,
                    start_seq: head,
                },
                Outcome::New,
                head,
            ),
            Some(Cursor { epoch: theirs, .. }) if theirs != epoch => (
                // The consumer's epoch is gone: the oldest message held is
                // where this epoch's stream can start; all earlier messages of
                // this epoch are missed.
                Frame::Expired {
                    epoch,
                    missed: oldest,
                    resume_seq: oldest,
                },
                Outcome::Expired,
                oldest,
            ),
            Some(Cursor { next_seq, .. }) if next_seq < oldest => (
                Frame::Expired {
                    epoch,
                    missed: oldest - next_seq,
                    resume_seq: oldest,
                },
                Outcome::Expired,
                oldest,
            ),
            Some(Cursor { next_seq, .. }) if next_seq <= head => (
                Frame::Resumed {
                    epoch,
                    from_seq: next_seq,
                },
                Outcome::Resumed,
                next_seq,
            ),
            Some(Cursor { next_seq, .. }) => {
                return Err(ProtocolError::CursorFromFuture {
                    epoch,
                    next_seq,
                    head,
                })
            }
        };
        Ok(Handshake {
            answer,
            outcome,
            start_seq,
            node,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ErrorCode, FrameType};

    const EPOCH: u64 = 0xabcd;

    fn hello(node: &str, resume: Option<(u64, u64)>) -> Frame {
        Frame::Hello {
            version: PROTOCOL_VERSION,
            node: node.into(),
            resume: resume.map(|(epoch, next_seq)| Cursor { epoch, next_seq }),
        }
    }

    fn ring(oldest_held: u64, head: u64) -> RingView {
        RingView { head, oldest_held }
    }

    fn shake(resume: Option<(u64, u64)>, view: RingView) -> Result<Handshake, ProtocolError> {
        ProducerSession::new(EPOCH).handle_hello(hello("a", resume), view, "a")
    }

    #[test]
    fn every_handshake_outcome() {
        let view = ring(100, 200);
        let cases = [
            (
                None,
                Frame::New {
                    epoch: EPOCH,
                    start_seq: 200,
                },
                Outcome::New,
                200,
            ),
            (
                Some((EPOCH + 1, 150)),
                Frame::Expired {
                    epoch: EPOCH,
                    missed: 100,
                    resume_seq: 100,
                },
                Outcome::Expired,
                100,
            ),
            (
                Some((EPOCH, 40)),
                Frame::Expired {
                    epoch: EPOCH,
                    missed: 60,
                    resume_seq: 100,
                },
                Outcome::Expired,
                100,
            ),
            (
                Some((EPOCH, 99)),
                Frame::Expired {
                    epoch: EPOCH,
                    missed: 1,
                    resume_seq: 100,
                },
                Outcome::Expired,
                100,
            ),
            (
                Some((EPOCH, 100)),
                Frame::Resumed {
                    epoch: EPOCH,
                    from_seq: 100,
                },
                Outcome::Resumed,
                100,
            ),
            (
                Some((EPOCH, 150)),
                Frame::Resumed {
                    epoch: EPOCH,
                    from_seq: 150,
                },
                Outcome::Resumed,
                150,
            ),
            (
                Some((EPOCH, 200)),
                Frame::Resumed {
                    epoch: EPOCH,
                    from_seq: 200,
                },
                Outcome::Resumed,
                200,
            ),
        ];
        for (resume, answer, outcome, start_seq) in cases {
            let mut p = ProducerSession::new(EPOCH);
            assert_eq!(p.acked(), None);
            let handshake = p.handle_hello(hello("a", resume), view, "a").unwrap();
            assert_eq!(
                handshake,
                Handshake {
                    answer,
                    outcome,
                    start_seq,
                    node: "a".into()
                },
                "{resume:?}"
            );
            assert_eq!(p.acked(), Some(start_seq));
            assert_eq!(p.sent(), Some(start_seq));
            assert_eq!(p.node(), Some("a"));
            assert_eq!(p.epoch(), EPOCH);
        }
    }

    #[test]
    fn restart_with_nothing_lost_still_expires() {
        // Another epoch with the new ring not lapped yet: missed is 0 but the
        // answer is still Expired, so the consumer learns of the restart.
        let handshake = shake(Some((EPOCH - 1, 5)), ring(0, 3)).unwrap();
        assert_eq!(
            handshake.answer,
            Frame::Expired {
                epoch: EPOCH,
                missed: 0,
                resume_seq: 0
            }
        );
    }

    #[test]
    fn empty_ring() {
        let handshake = shake(None, ring(0, 0)).unwrap();
        assert_eq!(
            handshake.answer,
            Frame::New {
                epoch: EPOCH,
                start_seq: 0
            }
        );
        let handshake = shake(Some((EPOCH, 0)), ring(0, 0)).unwrap();
        assert_eq!(
            handshake.answer,
            Frame::Resumed {
                epoch: EPOCH,
                from_seq: 0
            }
        );
    }

    #[test]
    fn cursor_from_the_future_is_refused() {
        let error = shake(Some((EPOCH, 201)), ring(100, 200)).unwrap_err();
        assert_eq!(
            error,
            ProtocolError::CursorFromFuture {
                epoch: EPOCH,
                next_seq: 201,
                head: 200
            }
        );
        assert_eq!(error.code(), ErrorCode::CursorFromFuture);
    }

    #[test]
    fn hello_checks() {
        let mut p = ProducerSession::new(EPOCH);
        let error = p
            .handle_hello(
                Frame::Hello {
                    version: 2,
                    node: "a".into(),
                    resume: None,
                },
                ring(0, 0),
                "a",
            )
            .unwrap_err();
        assert_eq!(error, ProtocolError::UnsupportedVersion { version: 2 });
        assert_eq!(error.code(), ErrorCode::UnsupportedVersion);
        assert_eq!(p.acked(), None);
        assert_eq!(
            p.handle(Frame::Ack { next_seq: 0 }),
            Err(ProtocolError::Failed)
        );

        let mut p = ProducerSession::new(EPOCH);
        let error = p
            .handle_hello(hello("mallory", None), ring(0, 0), "a")
            .unwrap_err();
        assert_eq!(
            error,
            ProtocolError::PeerNameMismatch {
                claimed: "mallory".into(),
                certified: "a".into()
            }
        );
        assert_eq!(error.code(), ErrorCode::Unauthorized);
        assert_eq!(p.node(), None);

        for frame in [
            Frame::Ack { next_seq: 0 },
            Frame::New {
                epoch: 1,
                start_seq: 0,
            },
        ] {
            let ty = frame.frame_type();
            let mut p = ProducerSession::new(EPOCH);
            let error = p.handle_hello(frame.clone(), ring(0, 0), "a").unwrap_err();
            assert_eq!(
                error,
                ProtocolError::UnexpectedFrame {
                    frame: ty,
                    state: "before the hello"
                }
            );
            let mut p = ProducerSession::new(EPOCH);
            assert_eq!(
                p.handle(frame),
                Err(ProtocolError::UnexpectedFrame {
                    frame: ty,
                    state: "before the hello"
                })
            );
        }
    }

    #[test]
    fn a_second_hello_is_refused() {
        let mut p = ProducerSession::new(EPOCH);
        p.handle_hello(hello("a", None), ring(0, 0), "a").unwrap();
        assert_eq!(
            p.handle_hello(hello("a", None), ring(0, 0), "a"),
            Err(ProtocolError::UnexpectedFrame {
                frame: FrameType::Hello,
                state: "after the handshake"
            })
        );
        let mut p = ProducerSession::new(EPOCH);
        p.handle_hello(hello("a", None), ring(0, 0), "a").unwrap();
        assert_eq!(
            p.handle(hello("a", None)),
            Err(ProtocolError::UnexpectedFrame {
                frame: FrameType::Hello,
                state: "after the handshake"
            })
        );
    }

    fn streaming(start: u64) -> ProducerSession {
        let mut p = ProducerSession::new(EPOCH);
        p.handle_hello(hello("a", None), ring(0, start), "a")
            .unwrap();
        p
    }

    #[test]
    fn acks_are_monotonic_and_bounded_by_what_was_sent() {
        let mut p = streaming(10);
        assert_eq!(p.handle(Frame::Ack { next_seq: 10 }), Ok(()));
        let error = p.handle(Frame::Ack { next_seq: 11 }).unwrap_err();
        assert_eq!(
            error,
            ProtocolError::AckBeyondSent {
                acked: 11,
                sent: 10
            }
        );
        assert_eq!(error.code(), ErrorCode::ProtocolViolation);
        assert_eq!(p.acked(), None, "a failed session has no ack");

        let mut p = streaming(10);
        p.on_sent(20);
        assert_eq!(p.sent(), Some(20));
        assert_eq!(p.handle(Frame::Ack { next_seq: 15 }), Ok(()));
        assert_eq!(p.acked(), Some(15));
        assert_eq!(
            p.handle(Frame::Ack { next_seq: 15 }),
            Ok(()),
            "a repeated ack is fine"
        );
        assert_eq!(p.handle(Frame::Ack { next_seq: 20 }), Ok(()));
        assert_eq!(p.acked(), Some(20));
        assert_eq!(
            p.handle(Frame::Ack { next_seq: 19 }),
            Err(ProtocolError::AckRegressed {
                acked: 19,
                previous: 20
            })
        );
        assert_eq!(
            p.handle(Frame::Ack { next_seq: 20 }),
            Err(ProtocolError::Failed)
        );
    }

    #[test]
    fn only_acks_after_the_handshake() {
        for frame in [
            Frame::Message {
                seq: 0,
                topic: "".into(),
                payload: bytes::Bytes::new(),
            },
            Frame::Lapped {
                missed: 1,
                resume_seq: 1,
            },
            Frame::Resumed {
                epoch: 0,
                from_seq: 0,
            },
        ] {
            let ty = frame.frame_type();
            let mut p = streaming(0);
            assert_eq!(
                p.handle(frame),
                Err(ProtocolError::UnexpectedFrame {
                    frame: ty,
                    state: "after the handshake"
                })
            );
        }
    }

    #[test]
    fn flush_waits_for_the_ack_of_the_head() {
        let mut p = ProducerSession::new(EPOCH);
        assert!(!p.is_flushed(0), "not connected: not flushed");
        p.handle_hello(hello("a", None), ring(0, 10), "a").unwrap();
        assert!(p.is_flushed(10), "nothing published since it joined");
        assert!(!p.is_flushed(12));
        p.on_sent(12);
        p.handle(Frame::Ack { next_seq: 11 }).unwrap();
        assert!(!p.is_flushed(12));
        p.handle(Frame::Ack { next_seq: 12 }).unwrap();
        assert!(p.is_flushed(12));
    }

    #[test]
    fn sent_ignores_old_positions_in_release_builds() {
        let mut p = streaming(5);
        p.on_sent(8);
        if !cfg!(debug_assertions) {
            p.on_sent(6);
        }
        assert_eq!(p.sent(), Some(8));
        let mut before = ProducerSession::new(EPOCH);
        before.on_sent(3);
        assert_eq!(before.sent(), None);
    }
}
