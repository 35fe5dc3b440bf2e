//! Local subscriptions: where events from every producer (this node
//! included) are handed to the application.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};

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
    /// that delivering takes the lock only to clone an `Arc`; and where the
    /// idle local pump is to start.
    state: Mutex<State>,
    /// Bumped under the `state` lock after every replacement of the
    /// snapshot. A [`Cached`] snapshot is current while its version equals
    /// this. Release on the bump, Acquire on the check: a reader that sees
    /// the new version then takes the lock and gets the new snapshot.
    version: AtomicU64,
    /// Wakes the idle local pump when a subscription arrives.
    subscribed: Notify,
    buffer: usize,
}

#[derive(Debug)]
struct State {
    subs: Arc<Vec<Sub>>,
    /// The lowest ring head a [`Dispatch::subscribe`] saw since the local
    /// pump last went idle; `None` if nobody subscribed since. The pump
    /// resumes reading there, so a subscription gets every local message
    /// published after it was made.
    idle_start: Option<u64>,
}

/// A delivering task's own copy of the subscriptions: checking it costs an
/// atomic load per message instead of a lock and an `Arc` clone.
#[derive(Debug)]
pub(crate) struct Cached {
    version: u64,
    subs: Arc<Vec<Sub>>,
}

impl Cached {
    /// Whether any subscription in it is still open (can go stale at once:
    /// a subscription may be dropped or added right after).
    pub(crate) fn any_live(&self) -> bool {
        self.subs.iter().any(|s| !s.tx.is_closed())
    }
}

#[derive(Debug, Clone)]
struct Sub {
    topic: Arc<str>,
    tx: mpsc::Sender<NodeEvent>,
}

impl Dispatch {
    pub(crate) fn new(buffer: usize) -> Self {
        Self {
            state: Mutex::new(State {
                subs: Arc::new(Vec::new()),
                idle_start: None,
            }),
            version: AtomicU64::new(0),
            subscribed: Notify::new(),
            buffer: buffer.max(1),
        }
    }

    /// A subscription to `topic`; `head` is the local ring's head read
    /// before the call (where local delivery must start for it).
    pub(crate) fn subscribe(&self, topic: &str, head: u64) -> Subscription {
        let (tx, rx) = mpsc::channel(self.buffer);
        let mut state = self.state.lock();
        let mut next: Vec<Sub> = state
            .subs
            .iter()
            .filter(|s| !s.tx.is_closed())
            .cloned()
            .collect();
        next.push(Sub {
            topic: topic.into(),
            tx,
        });
        state.subs = Arc::new(next);
        state.idle_start = Some(state.idle_start.map_or(head, |s| s.min(head)));
        // Release: pairs with the Acquire in `refresh`.
        self.version.fetch_add(1, Ordering::Release);
        drop(state);
        // A stored permit if the pump is not waiting yet: no lost wake-up.
        self.subscribed.notify_one();
        Subscription { rx }
    }

    fn snapshot(&self) -> Arc<Vec<Sub>> {
        Arc::clone(&self.state.lock().subs)
    }

    /// A copy of the subscriptions for a delivering task.
    pub(crate) fn cache(&self) -> Cached {
        let state = self.state.lock();
        Cached {
            // Read under the lock, which every bump holds: matches `subs`.
            version: self.version.load(Ordering::Relaxed),
            subs: Arc::clone(&state.subs),
        }
    }

    /// Brings `cache` up to date if a subscription was added since.
    pub(crate) fn refresh(&self, cache: &mut Cached) {
        // Acquire: pairs with the Release bump in `subscribe`.
        if self.version.load(Ordering::Acquire) != cache.version {
            *cache = self.cache();
        }
    }

    /// Whether any live subscription in `cache` listens to `topic`.
    pub(crate) fn cached_wants(cache: &Cached, topic: &str) -> bool {
        cache
            .subs
            .iter()
            .any(|s| &*s.topic == topic && !s.tx.is_closed())
    }

    /// For the local pump: if no live subscription exists, marks the pump
    /// idle and returns true; it must then wait in [`Self::wait_subscribed`]
    /// before reading its ring again.
    pub(crate) fn go_idle(&self) -> bool {
        let mut state = self.state.lock();
        if state.subs.iter().all(|s| s.tx.is_closed()) {
            state.idle_start = None;
            true
        } else {
            false
        }
    }

    /// Waits until a subscription exists; returns the ring position the
    /// local pump resumes at (the lowest head a subscriber saw).
    pub(crate) async fn wait_subscribed(&self) -> u64 {
        loop {
            let notified = self.subscribed.notified();
            {
                let mut state = self.state.lock();
                if let Some(start) = state.idle_start.take() {
                    return start;
                }
            }
            notified.await;
        }
    }

    /// Hands `event` to every subscription of its topic (every subscription
    /// for an expiry, which concerns all topics of its producer). Waits
    /// while a subscription is full; skips closed ones.
    pub(crate) async fn deliver(&self, event: NodeEvent) {
        let subs = self.snapshot();
        Self::deliver_to(&subs, event).await;
    }

    /// [`Self::deliver`] to the subscriptions in `cache` (kept current with
    /// [`Self::refresh`]).
    pub(crate) async fn deliver_cached(cache: &Cached, event: NodeEvent) {
        Self::deliver_to(&cache.subs, event).await;
    }

    async fn deliver_to(subs: &[Sub], event: NodeEvent) {
        // The event is cloned for every matching subscription but the last,
        // which gets it moved: one subscription, no clone.
        let mut last: Option<&Sub> = None;
        for sub in subs {
            if event.topic().is_some_and(|t| t != &*sub.topic) {
                continue;
            }
            if let Some(previous) = last.replace(sub) {
                Self::send(previous, event.clone()).await;
            }
        }
        if let Some(sub) = last {
            Self::send(sub, event).await;
        }
    }

    async fn send(sub: &Sub, event: NodeEvent) {
        match sub.tx.try_send(event) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                // A closed receiver is not an error: it unsubscribed.
                let _ = sub.tx.send(event).await;
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    fn message(topic: &str, seq: u64) -> NodeEvent {
        NodeEvent::Message {
            from: "p".into(),
            epoch: 1,
            seq,
            topic: topic.into(),
            payload: Bytes::from_static(b"x"),
        }
    }

    #[tokio::test]
    async fn the_idle_pump_resumes_at_the_lowest_head_a_subscriber_saw() {
        let d = Dispatch::new(4);
        assert!(d.go_idle());
        let _a = d.subscribe("t", 10);
        let _b = d.subscribe("t", 7);
        assert_eq!(d.wait_subscribed().await, 7);
        assert!(!d.go_idle(), "live subscriptions keep the pump reading");
    }

    #[tokio::test]
    async fn once_every_subscription_is_gone_the_pump_idles_until_a_new_one() {
        let d = Dispatch::new(4);
        let mut cache = d.cache();
        assert!(!cache.any_live());
        let s = d.subscribe("t", 0);
        d.refresh(&mut cache);
        assert!(cache.any_live());
        assert!(Dispatch::cached_wants(&cache, "t"));
        assert!(!Dispatch::cached_wants(&cache, "u"));
        drop(s);
        assert!(!cache.any_live());
        assert!(d.go_idle());
        // The permit the earlier subscription left is not a subscription.
        let waited = tokio::time::timeout(Duration::from_millis(20), d.wait_subscribed()).await;
        assert!(waited.is_err(), "nobody subscribed since going idle");
        let _s = d.subscribe("t", 42);
        assert_eq!(d.wait_subscribed().await, 42);
    }

    #[tokio::test]
    async fn a_cached_delivery_reaches_every_subscription_of_the_topic_only() {
        let d = Dispatch::new(4);
        let mut t1 = d.subscribe("t", 0);
        let mut t2 = d.subscribe("t", 0);
        let mut u = d.subscribe("u", 0);
        let cache = d.cache();
        Dispatch::deliver_cached(&cache, message("t", 5)).await;
        assert_eq!(t1.try_recv(), Some(message("t", 5)));
        assert_eq!(t2.try_recv(), Some(message("t", 5)));
        assert_eq!(u.try_recv(), None);
        // An expiry concerns every topic.
        let expired = NodeEvent::CursorExpired {
            from: "p".into(),
            epoch: 1,
            missed: 2,
            resume_seq: 8,
        };
        Dispatch::deliver_cached(&cache, expired.clone()).await;
        assert_eq!(t1.try_recv(), Some(expired.clone()));
        assert_eq!(t2.try_recv(), Some(expired.clone()));
        assert_eq!(u.try_recv(), Some(expired));
    }
}
