//! Local subscriptions: where events from every producer (this node
//! included) are handed to the application.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::NodeEvent;

/// The subscriptions of one node, by topic.
///
/// Delivery applies backpressure: a full subscription makes the task that
/// delivers to it wait. For a peer's stream that task is the connection's
/// reader, so QUIC flow control slows the peer's sender, which falls behind
/// in the peer's ring and is eventually told it expired — the peer itself
/// never waits. Memory stays bounded by `buffer` events per subscription.
#[derive(Debug)]
pub(crate) struct Dispatch {
    /// A snapshot of the subscriptions, replaced (not mutated) on change, so
    /// that delivering takes the lock only to clone an `Arc`.
    subs: Mutex<Arc<Vec<Sub>>>,
    buffer: usize,
}

#[derive(Debug, Clone)]
struct Sub {
    topic: Arc<str>,
    tx: mpsc::Sender<NodeEvent>,
}

impl Dispatch {
    pub(crate) fn new(buffer: usize) -> Self {
        Self {
            subs: Mutex::new(Arc::new(Vec::new())),
            buffer: buffer.max(1),
        }
    }

    pub(crate) fn subscribe(&self, topic: &str) -> Subscription {
        let (tx, rx) = mpsc::channel(self.buffer);
        let mut subs = self.subs.lock();
        let mut next: Vec<Sub> = subs.iter().filter(|s| !s.tx.is_closed()).cloned().collect();
        next.push(Sub {
            topic: topic.into(),
            tx,
        });
        *subs = Arc::new(next);
        Subscription { rx }
    }

    fn snapshot(&self) -> Arc<Vec<Sub>> {
        Arc::clone(&self.subs.lock())
    }

    /// Whether any live subscription listens to `topic`.
    pub(crate) fn wants(&self, topic: &str) -> bool {
        self.snapshot()
            .iter()
            .any(|s| &*s.topic == topic && !s.tx.is_closed())
    }

    /// Hands `event` to every subscription of its topic (every subscription
    /// for an expiry, which concerns all topics of its producer). Waits
    /// while a subscription is full; skips closed ones.
    pub(crate) async fn deliver(&self, event: NodeEvent) {
        let subs = self.snapshot();
        let topic = event.topic();
        for sub in subs.iter() {
            if topic.is_some_and(|t| t != &*sub.topic) {
                continue;
            }
            match sub.tx.try_send(event.clone()) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                Err(mpsc::error::TrySendError::Full(event)) => {
                    // A closed receiver is not an error: it unsubscribed.
                    let _ = sub.tx.send(event).await;
                }
            }
        }
    }
}

/// A stream of the events on one topic, from every producer this node
/// follows and from the node itself.
///
/// Per producer, events come in order with no silent gap: a
/// [`NodeEvent::Message`] with sequence number `n` follows message `n - 1`
/// of the same epoch, or a [`NodeEvent::CursorExpired`] from that producer.
/// Sequence numbers count every message of the producer, all topics
/// together, so messages on other topics leave gaps in the numbers one topic
/// sees; those are not losses. Dropping the subscription unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<NodeEvent>,
}

impl Subscription {
    /// The next event; `None` once the node has shut down.
    pub async fn recv(&mut self) -> Option<NodeEvent> {
        self.rx.recv().await
    }

    /// The next event if one is ready, without waiting.
    pub fn try_recv(&mut self) -> Option<NodeEvent> {
        self.rx.try_recv().ok()
    }

    /// Polls for the next event (the `Stream` shape).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<NodeEvent>> {
        self.rx.poll_recv(cx)
    }
}

impl futures_core::Stream for Subscription {
    type Item = NodeEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<NodeEvent>> {
        self.get_mut().rx.poll_recv(cx)
    }
}
