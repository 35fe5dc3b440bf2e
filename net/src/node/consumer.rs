//! The consumer side of a node: follows one peer's ring, reconnecting with
//! backoff and resuming from its own cursor.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::dispatch::Outbox;
use super::{ConnectOutcome, Inner, LinkError, NodeEvent, PeerStatus};
use crate::proto::{
    AckPolicy, ConsumerSession, Cursor, Decoder, Encoder, ErrorCode, Event, Frame, Name, Outcome,
};

/// Chunks taken from the stream per read, at most (a chunk is about one
/// packet's worth of frames).
const READ_CHUNKS: usize = 32;

/// Capped exponential backoff with ±50% jitter.
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
        }
    }

    /// The delay before the next attempt; doubles up to the cap.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = rand::random::<f64>() + 0.5; // 0.5 ..< 1.5
        base.mul_f64(jitter).min(self.max)
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Follows `peer` until shutdown. The cursor `(epoch, next_seq)` lives here,
/// across connections: it is what makes delivery exactly-once and gap-free.
pub(crate) async fn follow(inner: Arc<Inner>, peer: Name, addr: SocketAddr) {
    let mut cursor: Option<Cursor> = None;
    // Set when the producer refused our cursor as being from its future:
    // the next stream starts fresh, and that jump must be announced.
    let mut cursor_refused = false;
    let mut backoff = Backoff::new(inner.config.reconnect_min, inner.config.reconnect_max);
    let mut shutdown = inner.shutdown.clone();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let mut connected = false;
        let result = tokio::select! {
            r = stream(&inner, &peer, addr, &mut cursor, &mut connected, &mut backoff, &mut cursor_refused) => r,
            _ = shutdown.changed() => return,
        };
        if let Err(LinkError::Connection(quinn::ConnectionError::ApplicationClosed(close))) =
            &result
        {
            if close.error_code == quinn::VarInt::from_u32(ErrorCode::CursorFromFuture.as_u32()) {
                tracing::warn!(%peer, ?cursor, "producer refused our cursor as from its future; starting over");
                cursor = None;
                cursor_refused = true;
            }
        }
        let reason = match result {
            Ok(()) => "closed by peer".to_string(),
            Err(e) => e.to_string(),
        };
        if connected {
            tracing::info!(%peer, %reason, "disconnected");
            inner.report(PeerStatus::Disconnected {
                peer: peer.to_string(),
                reason,
            });
        } else {
            tracing::debug!(%peer, %reason, "connection attempt failed");
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// One connection: handshake, then deliver until the link breaks.
async fn stream(
    inner: &Inner,
    peer: &Name,
    addr: SocketAddr,
    cursor: &mut Option<Cursor>,
    connected: &mut bool,
    backoff: &mut Backoff,
    cursor_refused: &mut bool,
) -> Result<(), LinkError> {
    let dialed = Instant::now();
    let conn = inner
        .endpoint
        .connect_with(inner.client_config.clone(), addr, peer)?
        .await?;
    let (mut send, mut recv) = conn.open_bi().await?;
    let encoder = Encoder::new(inner.limits);
    let mut session = ConsumerSession::new(*cursor, AckPolicy::DEFAULT);
    let mut out = Vec::new();
    encoder
        .encode(&session.hello(&inner.name), &mut out)
        .map_err(|e| LinkError::Encode(e.to_string()))?;
    send.write_all(&out).await?;
    let mut decoder = Decoder::new(inner.limits);
    let mut chunks = vec![Bytes::new(); READ_CHUNKS];
    let mut local = Local {
        outbox: inner.dispatch.outbox(false),
        dialed,
    };
    loop {
        let deadline = session.next_ack_deadline();
        // Every chunk that is ready, not just one: a chunk is about one
        // packet, and the events of one read are handed over together.
        let read = tokio::select! {
            read = recv.read_chunks(&mut chunks) => match read? {
                Some(n) => n,
                // The producer finished its stream; inside a frame, that is
                // a malformed frame.
                None => {
                    return decoder
                        .finish()
                        .map_err(|e| super::close(&conn, e.code(), LinkError::Decode(e)))
                }
            },
            _ = sleep_until(deadline), if deadline.is_some() => 0,
        };
        let mut ready = chunks[..read].iter_mut();
        local.outbox.refresh(&inner.dispatch).await;
        // One clock read per read: its frames all arrived together.
        let now = Instant::now();
        let result = loop {
            let frame = match decoder.next_frame() {
                Ok(Some(frame)) => frame,
                // Each chunk once the frames before it are out, so that
                // frames are sliced from it rather than copied.
                Ok(None) => match ready.next() {
                    Some(chunk) => {
                        decoder.push_bytes(std::mem::take(chunk));
                        continue;
                    }
                    None => break Ok(()),
                },
                Err(e) => break Err((e.code(), LinkError::Decode(e))),
            };
            match frame {
                // Nearly every frame: straight to the outbox.
                Frame::Message {
                    seq,
                    topic,
                    payload,
                } => match session.handle_message(now, seq) {
                    Ok(Some(epoch)) => {
                        let message = Event::Message {
                            epoch,
                            seq,
                            topic,
                            payload,
                        };
                        take(inner, peer, message, connected, backoff, &mut local);
                    }
                    Ok(None) => {}
                    Err(e) => break Err((e.code(), LinkError::Protocol(e))),
                },
                frame => {
                    let events = match session.handle(now, frame) {
                        Ok(events) => events,
                        Err(e) => break Err((e.code(), LinkError::Protocol(e))),
                    };
                    for event in events {
                        if let (
                            true,
                            Event::Connected {
                                epoch, next_seq, ..
                            },
                        ) = (*cursor_refused, &event)
                        {
                            // How much was lost is unknowable: the
                            // producer's sequence and ours disagree. Say so
                            // rather than jump.
                            *cursor_refused = false;
                            let expired = Event::CursorExpired {
                                epoch: *epoch,
                                missed: 0,
                                resume_seq: *next_seq,
                            };
                            take(inner, peer, event, connected, backoff, &mut local);
                            take(inner, peer, expired, connected, backoff, &mut local);
                            continue;
                        }
                        take(inner, peer, event, connected, backoff, &mut local);
                    }
                }
            }
            if local.outbox.is_full() {
                local.outbox.flush().await;
                *cursor = session.cursor();
            }
        };
        // Delivered, then recorded: the cursor never moves past an event the
        // subscriptions do not have, so a break at any point resumes
        // exactly after the last delivered message, even on a frame error
        // (the session keeps the cursor of its last good frame).
        local.outbox.flush().await;
        *cursor = session.cursor();
        if let Err((code, error)) = result {
            return Err(super::close(&conn, code, error));
        }
        let ack = session.poll_ack(Instant::now());
        // The flush woke the subscriptions' tasks into this worker's
        // next-task slot. Writing the ack now would wake the connection's
        // driver into that slot instead, sending them to the back of the
        // queue or to another worker; arming the ack timer now (the next
        // pass does, when progress is newly unacknowledged) would make a
        // system call to wake a parked worker for the earlier deadline.
        // Either way the messages just delivered would wait for it. Yielding
        // once first lets the subscribers run first. Only after a read of
        // one chunk, though: that is sparse traffic, where the subscribers
        // wait for each message. A busy stream brings many chunks per read,
        // its subscribers are running or queued already, and a yield per
        // read would only cost a poll of the runtime's driver each time.
        let arms = deadline.is_none() && session.next_ack_deadline().is_some();
        if read == 1 && (ack.is_some() || arms) {
            tokio::task::yield_now().await;
        }
        if let Some(ack) = ack {
            out.clear();
            encoder
                .encode(&ack, &mut out)
                .map_err(|e| LinkError::Encode(e.to_string()))?;
            send.write_all(&out).await?;
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline.into()).await;
    }
}

/// What a connection's reader keeps between messages to hand them over
/// cheaply.
struct Local {
    /// Batches for the node's subscriptions, refreshed when one is added.
    outbox: Outbox,
    /// When this connection was dialed.
    dialed: Instant,
}

/// Turns a session event into a status report or a pending delivery.
fn take(
    inner: &Inner,
    peer: &Name,
    event: Event,
    connected: &mut bool,
    backoff: &mut Backoff,
    local: &mut Local,
) {
    let event = match event {
        Event::Connected {
            outcome,
            epoch,
            next_seq,
        } => {
            *connected = true;
            backoff.reset();
            let outcome = match outcome {
                Outcome::New => ConnectOutcome::New,
                Outcome::Resumed => ConnectOutcome::Resumed,
                Outcome::Expired => ConnectOutcome::Expired,
            };
            tracing::info!(%peer, ?outcome, epoch = format_args!("{epoch:016x}"), next_seq, "connected");
            inner.report(PeerStatus::Connected {
                peer: peer.to_string(),
                outcome,
                handshake: local.dialed.elapsed(),
            });
            return;
        }
        Event::Message {
            epoch,
            seq,
            topic,
            payload,
        } => {
            local.outbox.push_message(NodeEvent::Message {
                from: peer.clone(),
                epoch,
                seq,
                topic,
                payload,
            });
            return;
        }
        Event::CursorExpired {
            epoch,
            missed,
            resume_seq,
        } => {
            tracing::info!(%peer, missed, resume_seq, "cursor expired");
            NodeEvent::CursorExpired {
                from: peer.clone(),
                epoch,
                missed,
                resume_seq,
            }
        }
        Event::Direct { topic, payload } => NodeEvent::Direct {
            from: peer.clone(),
            topic,
            payload,
        },
    };
    local.outbox.push(event);
}
