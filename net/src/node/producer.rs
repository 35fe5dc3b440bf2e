//! The producer side of a node: accepts consumers, streams the ring to each
//! at its own pace, records their acknowledged positions for flush.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use ringcast_core::{RecvError, SubscribeError, TryRecvError};
use tokio::sync::{mpsc, Notify};

use super::{FlushReport, Inner, LinkError, NodeError, NodeEvent};
use crate::proto::{
    split_entry, Decoder, Encoder, Frame, ProducerSession, RingView, MESSAGE_PREFIX_LEN,
};

/// Bytes gathered from the ring before one stream write.
const WRITE_BATCH: usize = 256 << 10;
/// Direct messages queued per consumer connection before more are dropped.
const DIRECT_QUEUE: usize = 256;

/// Per-consumer cursor records, by consumer node name.
#[derive(Debug, Default)]
pub(crate) struct Records {
    map: Mutex<HashMap<Arc<str>, Record>>,
    /// Notified whenever an ack arrives or a connection comes or goes.
    changed: Notify,
    next_conn: Mutex<u64>,
}

#[derive(Debug)]
struct Record {
    /// Live connections of this consumer, by connection id.
    live: HashMap<u64, Live>,
    /// The best acknowledged position over the consumer's connections.
    acked: u64,
    /// When the last live connection ended (`None` while one is live).
    gone_since: Option<Instant>,
}

#[derive(Debug)]
struct Live {
    acked: u64,
    direct: mpsc::Sender<(Arc<str>, Bytes)>,
}

impl Records {
    fn open(&self, name: &Arc<str>, start: u64) -> (u64, mpsc::Receiver<(Arc<str>, Bytes)>) {
        let id = {
            let mut next = self.next_conn.lock();
            *next += 1;
            *next
        };
        let (tx, rx) = mpsc::channel(DIRECT_QUEUE);
        let mut map = self.map.lock();
        let record = map.entry(Arc::clone(name)).or_insert(Record {
            live: HashMap::new(),
            acked: start,
            gone_since: None,
        });
        record.live.insert(
            id,
            Live {
                acked: start,
                direct: tx,
            },
        );
        record.gone_since = None;
        drop(map);
        self.changed.notify_waiters();
        (id, rx)
    }

    fn ack(&self, name: &str, id: u64, acked: u64) {
        let mut map = self.map.lock();
        if let Some(record) = map.get_mut(name) {
            if let Some(live) = record.live.get_mut(&id) {
                live.acked = acked;
            }
            record.acked = record.acked.max(acked);
        }
        drop(map);
        self.changed.notify_waiters();
    }

    fn close(&self, name: &str, id: u64) {
        let mut map = self.map.lock();
        if let Some(record) = map.get_mut(name) {
            record.live.remove(&id);
            if record.live.is_empty() {
                record.gone_since = Some(Instant::now());
            }
        }
        drop(map);
        self.changed.notify_waiters();
    }

    /// Connected consumers that have not acknowledged everything below `head`.
    fn lagging(&self, head: u64) -> Vec<String> {
        let map = self.map.lock();
        let mut lagging: Vec<String> = map
            .iter()
            .filter(|(_, r)| !r.live.is_empty() && r.live.values().all(|l| l.acked < head))
            .map(|(name, _)| name.to_string())
            .collect();
        lagging.sort();
        lagging
    }

    pub(crate) async fn flush(&self, head: u64, timeout: Duration) -> FlushReport {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before the check, so a change right after it wakes us.
            notified.as_mut().enable();
            let lagging = self.lagging(head);
            if lagging.is_empty() {
                return FlushReport { ok: true, lagging };
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return FlushReport {
                    ok: false,
                    lagging: self.lagging(head),
                };
            }
        }
    }

    pub(crate) fn send_direct(
        &self,
        to: &str,
        topic: &str,
        payload: Bytes,
    ) -> Result<(), NodeError> {
        let map = self.map.lock();
        let live = map
            .get(to)
            .and_then(|r| r.live.values().next())
            .ok_or_else(|| NodeError::NotConnected(to.to_string()))?;
        live.direct
            .try_send((topic.into(), payload))
            .map_err(|_| NodeError::DirectBusy(to.to_string()))
    }

    /// Forgets consumers gone longer than `ttl`, or gone with a position the
    /// ring no longer holds.
    fn expire(&self, ttl: Duration, oldest_held: u64) {
        let now = Instant::now();
        self.map.lock().retain(|name, r| {
            let keep = match r.gone_since {
                None => true,
                Some(since) => now.duration_since(since) < ttl && r.acked >= oldest_held,
            };
            if !keep {
                tracing::debug!(consumer = %name, "cursor record expired");
            }
            keep
        });
    }

    /// How many consumer records are held (connected or not).
    pub(crate) fn len(&self) -> usize {
        self.map.lock().len()
    }
}

/// Accepts consumer connections until shutdown.
pub(crate) async fn accept_loop(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.clone();
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let incoming = tokio::select! {
            incoming = inner.endpoint.accept() => incoming,
            _ = shutdown.changed() => break,
        };
        let Some(incoming) = incoming else { break };
        let inner = Arc::clone(&inner);
        connections.spawn(async move {
            let remote = incoming.remote_address();
            if let Err(e) = serve(&inner, incoming).await {
                tracing::info!(%remote, error = %e, "consumer connection ended");
            }
        });
        // Reap finished connection tasks so the set stays small.
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}

/// Serves one consumer connection: handshake, then stream.
async fn serve(inner: &Arc<Inner>, incoming: quinn::Incoming) -> Result<(), LinkError> {
    let conn = incoming.await?;
    let certified = super::endpoint::peer_name(&conn).ok_or(LinkError::NoPeerName)?;
    let (mut send, mut recv) = tokio::time::timeout(inner.config.idle_timeout, conn.accept_bi())
        .await
        .map_err(|_| {
            super::close(
                &conn,
                crate::proto::ErrorCode::ProtocolViolation,
                LinkError::Timeout("waiting for the consumer's stream"),
            )
        })??;
    let mut decoder = Decoder::new(inner.limits);
    // A peer that connects but never says hello is not kept around: its
    // keep-alives alone would hold the connection open.
    let hello = tokio::time::timeout(inner.config.idle_timeout, async {
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(e) => return Err(super::close(&conn, e.code(), LinkError::Decode(e))),
            }
            match recv.read_chunk(64 << 10, true).await? {
                Some(chunk) => decoder.push_bytes(chunk.bytes),
                // The stream ended: inside a frame that is a malformed
                // frame, before any frame a consumer breaking the protocol.
                None => {
                    return Err(match decoder.finish() {
                        Err(e) => super::close(&conn, e.code(), LinkError::Decode(e)),
                        Ok(()) => super::close(
                            &conn,
                            crate::proto::ErrorCode::ProtocolViolation,
                            LinkError::Finished,
                        ),
                    })
                }
            }
        }
    })
    .await
    .map_err(|_| {
        conn.close(
            quinn::VarInt::from_u32(crate::proto::ErrorCode::ProtocolViolation.as_u32()),
            b"no hello",
        );
        LinkError::Timeout("waiting for the consumer's hello")
    })??;
    let mut session = ProducerSession::new(inner.epoch);
    // Oldest first, then head: both only grow, so oldest <= head holds.
    let oldest_held = inner.ring.oldest_held();
    let view = RingView {
        oldest_held,
        head: inner.ring.head(),
    };
    let handshake = match session.handle_hello(hello, view, &certified) {
        Ok(handshake) => handshake,
        Err(e) => return Err(super::close(&conn, e.code(), LinkError::Protocol(e))),
    };
    let encoder = Encoder::new(inner.limits);
    let mut out = Vec::with_capacity(WRITE_BATCH + 4096);
    encoder
        .encode(&handshake.answer, &mut out)
        .map_err(|e| LinkError::Encode(e.to_string()))?;
    let name: Arc<str> = handshake.node.as_str().into();
    tracing::info!(consumer = %name, outcome = ?handshake.outcome, start = handshake.start_seq, "consumer connected");

    // The answer was computed from a view that may be stale by now: if the
    // start position was overwritten meanwhile, say so in-band.
    let mut subscriber = loop {
        match inner.ring.subscribe_at(handshake.start_seq) {
            Ok(s) => break s,
            Err(SubscribeError::Expired { oldest_held, .. }) => {
                if let Ok(s) = inner.ring.subscribe_at(oldest_held) {
                    encoder
                        .encode(
                            &Frame::Lapped {
                                missed: oldest_held - handshake.start_seq,
                                resume_seq: oldest_held,
                            },
                            &mut out,
                        )
                        .map_err(|e| LinkError::Encode(e.to_string()))?;
                    break s;
                }
            }
            Err(SubscribeError::Future { .. }) => {
                // The session refuses cursors above the head it was shown,
                // and the head only grows.
                return Err(LinkError::Protocol(crate::proto::ProtocolError::Failed));
            }
        }
    };
    let (conn_id, mut direct) = inner.records.open(&name, handshake.start_seq);
    let session = Arc::new(Mutex::new(session));
    let acks = tokio::spawn(read_acks(
        Arc::clone(inner),
        conn.clone(),
        recv,
        decoder,
        Arc::clone(&session),
        Arc::clone(&name),
        conn_id,
    ));

    let mut shutdown = inner.shutdown.clone();
    let mut entry = Vec::new();
    let result: Result<(), LinkError> = async {
        loop {
            if !out.is_empty() {
                session.lock().on_sent(subscriber.cursor());
                // Handed over, not copied: the stream keeps the chunk until
                // it is acknowledged, and `out` starts a new one, sized after
                // this one (a sender writing one message at a time must not
                // allocate a full batch per message).
                let next = (out.len() * 2).clamp(4096, WRITE_BATCH + 4096);
                let batch = std::mem::replace(&mut out, Vec::with_capacity(next));
                let full = batch.len() >= WRITE_BATCH;
                send.write_chunk(Bytes::from(batch)).await?;
                if full {
                    // More is likely waiting (a backlog): let the
                    // connection's driver, which may share this worker
                    // thread, send this batch before the next is written.
                    // Neither the stream write, which returns at once while
                    // the flow-control window allows, nor the ring, which
                    // has messages, would ever make this task wait.
                    tokio::task::yield_now().await;
                }
            }
            tokio::select! {
                biased;
                _ = shutdown.changed() => return Ok(()),
                reason = conn.closed() => return Err(reason.into()),
                d = direct.recv() => {
                    if let Some((topic, payload)) = d {
                        encode_direct(&encoder, &topic, &payload, &mut out)?;
                    }
                }
                r = subscriber.recv_async(&mut entry) => match r {
                    Ok(seq) => encode_entry(&encoder, seq, &entry, &mut out),
                    Err(RecvError::Expired { missed, resume_seq }) => {
                        encoder
                            .encode(&Frame::Lapped { missed, resume_seq }, &mut out)
                            .map_err(|e| LinkError::Encode(e.to_string()))?;
                    }
                    Err(RecvError::Closed) => return Ok(()),
                },
            }
            // Gather whatever else is ready into the same write, each entry
            // copied from the ring straight into place after its frame's
            // header and sequence number.
            while out.len() < WRITE_BATCH {
                let start = out.len();
                out.resize(start + MESSAGE_PREFIX_LEN, 0);
                match subscriber.try_recv_append(&mut out) {
                    Ok(seq) => frame_entry(&encoder, seq, &mut out, start),
                    Err(TryRecvError::Expired { missed, resume_seq }) => {
                        out.truncate(start);
                        encoder
                            .encode(&Frame::Lapped { missed, resume_seq }, &mut out)
                            .map_err(|e| LinkError::Encode(e.to_string()))?;
                    }
                    Err(TryRecvError::Empty | TryRecvError::Closed) => {
                        out.truncate(start);
                        break;
                    }
                }
            }
        }
    }
    .await;
    acks.abort();
    inner.records.close(&name, conn_id);
    match &result {
        Ok(()) => conn.close(
            quinn::VarInt::from_u32(crate::proto::ErrorCode::Shutdown.as_u32()),
            b"shutdown",
        ),
        Err(e) => tracing::info!(consumer = %name, error = %e, "consumer disconnected"),
    }
    result
}

/// Encodes the ring entry `entry` (message `seq`) as a `Message` frame.
fn encode_entry(encoder: &Encoder, seq: u64, entry: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + MESSAGE_PREFIX_LEN, 0);
    out.extend_from_slice(entry);
    frame_entry(encoder, seq, out, start);
}

/// Completes the `Message` frame of message `seq` whose ring entry follows
/// [`MESSAGE_PREFIX_LEN`] bytes of room at `out[start..]`; a malformed entry
/// (a bug: only `Node::publish` writes entries) is logged and dropped.
fn frame_entry(encoder: &Encoder, seq: u64, out: &mut Vec<u8>, start: usize) {
    if let Err(e) = encoder.message_around_entry(seq, &mut out[start..]) {
        tracing::error!(seq, error = %e, "skipping a malformed ring entry");
        out.truncate(start);
    }
}

fn encode_direct(
    encoder: &Encoder,
    topic: &str,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), LinkError> {
    encoder
        .direct_header(topic, payload.len(), out)
        .map_err(|e| LinkError::Encode(e.to_string()))?;
    out.extend_from_slice(payload);
    Ok(())
}

/// Reads the consumer's acks and records them.
async fn read_acks(
    inner: Arc<Inner>,
    conn: quinn::Connection,
    mut recv: quinn::RecvStream,
    mut decoder: Decoder,
    session: Arc<Mutex<ProducerSession>>,
    name: Arc<str>,
    conn_id: u64,
) {
    loop {
        loop {
            let frame = match decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    super::close(&conn, e.code(), LinkError::Decode(e));
                    return;
                }
            };
            let acked = {
                let mut session = session.lock();
                session.handle(frame).map(|()| session.acked())
            };
            match acked {
                Ok(Some(acked)) => inner.records.ack(&name, conn_id, acked),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(consumer = %name, error = %e, "closing consumer connection");
                    super::close(&conn, e.code(), LinkError::Protocol(e));
                    return;
                }
            }
        }
        match recv.read_chunk(64 << 10, true).await {
            Ok(Some(chunk)) => decoder.push_bytes(chunk.bytes),
            Ok(None) => {
                // No more acks; ending inside a frame is a malformed frame.
                if let Err(e) = decoder.finish() {
                    super::close(&conn, e.code(), LinkError::Decode(e));
                }
                return;
            }
            Err(_) => return,
        }
    }
}

/// Delivers this node's own messages to its own subscriptions.
///
/// While the node has no subscription the pump does not read the ring (a
/// publishing node would otherwise wake it for every message, for
/// nothing): it waits for a subscription and starts at the ring head that
/// subscription saw, so it gets every local message published after it.
/// It starts that way too: a subscription made before the pump first runs
/// still gets everything published after it.
pub(crate) async fn local_pump(inner: Arc<Inner>) {
    // Replaced before the first read: the pump starts idle.
    let mut subscriber = inner.ring.subscribe();
    let mut idle = true;
    let mut shutdown = inner.shutdown.clone();
    let mut entry = Vec::new();
    let mut outbox = inner.dispatch.outbox(true);
    let expired = |missed, resume_seq| NodeEvent::CursorExpired {
        from: inner.name.clone(),
        epoch: inner.epoch,
        missed,
        resume_seq,
    };
    loop {
        outbox.refresh(&inner.dispatch).await;
        if idle || (!outbox.any_live() && inner.dispatch.go_idle()) {
            let start = tokio::select! {
                _ = shutdown.changed() => return,
                start = inner.dispatch.wait_subscribed() => start,
            };
            outbox.refresh(&inner.dispatch).await;
            subscriber = match inner.ring.subscribe_at(start) {
                Ok(s) => s,
                // Lapped between the subscription and this wake-up: say so.
                Err(SubscribeError::Expired { oldest_held, .. }) => {
                    outbox.push(expired(oldest_held.saturating_sub(start), oldest_held));
                    outbox.flush().await;
                    inner
                        .ring
                        .subscribe_at(oldest_held)
                        .unwrap_or_else(|_| inner.ring.subscribe())
                }
                // The head only grows: a head read earlier is never ahead.
                Err(SubscribeError::Future { .. }) => inner.ring.subscribe(),
            };
            idle = false;
            continue;
        }
        let first = tokio::select! {
            _ = shutdown.changed() => return,
            r = subscriber.recv_async(&mut entry) => r.map_err(|e| match e {
                RecvError::Expired { missed, resume_seq } => TryRecvError::Expired { missed, resume_seq },
                RecvError::Closed => TryRecvError::Closed,
            }),
        };
        // Then whatever else is ready, as one batch.
        let mut next = Some(first);
        while let Some(result) = next.take() {
            match result {
                Ok(seq) => {
                    if let Ok((topic, payload)) = split_entry(&entry) {
                        if outbox.wants(topic) {
                            outbox.push(NodeEvent::Message {
                                from: inner.name.clone(),
                                epoch: inner.epoch,
                                seq,
                                topic: topic.into(),
                                payload: Bytes::copy_from_slice(payload),
                            });
                        }
                    }
                }
                Err(TryRecvError::Expired { missed, resume_seq }) => {
                    outbox.push(expired(missed, resume_seq));
                }
                Err(TryRecvError::Closed) => {
                    outbox.flush().await;
                    return;
                }
                Err(TryRecvError::Empty) => break,
            }
            if !outbox.is_full() {
                next = Some(subscriber.try_recv(&mut entry));
            }
        }
        outbox.flush().await;
    }
}

/// Expires cursor records of consumers that are gone.
pub(crate) async fn janitor(inner: Arc<Inner>) {
    let ttl = inner.config.cursor_ttl;
    let period = (ttl / 4).max(Duration::from_millis(20));
    let mut shutdown = inner.shutdown.clone();
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(period) => {}
        }
        inner.records.expire(ttl, inner.ring.oldest_held());
    }
}
