//! Local subscriptions: where events from every producer (this node
//! included) are handed to the application.
//!
//! Events travel in batches: a delivering task (a connection's reader, or
//! the local pump) collects the events of one network read or one ring drain
//! in an [`Outbox`] and hands each subscription one `Vec` of them, so the
//! cost of the hand-off is paid per batch, not per message.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};

use super::NodeEvent;

/// Events handed to one subscription at a time, at most.
pub(crate) const BATCH: usize = 256;

/// The subscriptions of one node, by topic.
///
/// Delivery applies backpressure: a full subscription makes the task that
/// delivers to it wait. For a peer's stream that task is the connection's
/// reader, so QUIC flow control slows the peer's sender, which falls behind
/// in the peer's ring and is eventually told it expired — the peer itself
/// never waits. Memory stays bounded by about `buffer` events per
/// subscription (`buffer / BATCH` batches of at most `BATCH`).
#[derive(Debug)]
pub(crate) struct Dispatch {
    /// A snapshot of the subscriptions, replaced (not mutated) on change, so
    /// that an [`Outbox`] only needs an `Arc` clone to catch up; and where
    /// the idle local pump is to start.
    state: Mutex<State>,
    /// Bumped under the `state` lock after every replacement of the
    /// snapshot. An [`Outbox`] is current while its version equals this.
    /// Release on the bump, Acquire on the check: a task that sees the new
    /// version then takes the lock and gets the new snapshot.
    version: AtomicU64,
    /// Wakes the idle local pump when a subscription arrives.
    subscribed: Notify,
    /// Batches queued per subscription (at least 1).
    batches: usize,
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

#[derive(Debug, Clone)]
struct Sub {
    topic: Arc<str>,
    tx: mpsc::Sender<Vec<NodeEvent>>,
    /// The local ring's head when the subscription was made: local messages
    /// below it were published before it and are not its to see.
    local_start: u64,
}

impl Sub {
    fn takes(&self, event: &NodeEvent, local: bool) -> bool {
        match event {
            NodeEvent::Message { topic, seq, .. } => {
                **topic == *self.topic && !(local && *seq < self.local_start)
            }
            NodeEvent::Direct { topic, .. } => **topic == *self.topic,
            // An expiry concerns every topic of its producer.
            NodeEvent::CursorExpired { .. } => true,
        }
    }
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
            batches: buffer.div_ceil(BATCH).max(1),
        }
    }

    /// A subscription to `topic`; `head` is the local ring's head read
    /// before the call (where local delivery must start for it).
    pub(crate) fn subscribe(&self, topic: &str, head: u64) -> Subscription {
        let (tx, rx) = mpsc::channel(self.batches);
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
            local_start: head,
        });
        state.subs = Arc::new(next);
        state.idle_start = Some(state.idle_start.map_or(head, |s| s.min(head)));
        // Release: pairs with the Acquire in `Outbox::refresh`.
        self.version.fetch_add(1, Ordering::Release);
        drop(state);
        // A stored permit if the pump is not waiting yet: no lost wake-up.
        self.subscribed.notify_one();
        Subscription {
            rx,
            ready: Vec::new().into_iter(),
        }
    }

    /// An outbox for a delivering task; `local` for the local pump (whose
    /// messages each subscription takes from its `local_start` on).
    pub(crate) fn outbox(&self, local: bool) -> Outbox {
        let state = self.state.lock();
        Outbox {
            // Read under the lock, which every bump holds: matches `subs`.
            version: self.version.load(Ordering::Relaxed),
            pending: vec![Vec::new(); state.subs.len()],
            subs: Arc::clone(&state.subs),
            queued: 0,
            local,
            takers: (None, Vec::new()),
        }
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
}

/// A delivering task's batches in the making, one per subscription, and its
/// own copy of the subscription list (checked with one atomic load).
///
/// Events pushed are not delivered until [`flush`](Self::flush): a task
/// flushes before it records progress that depends on delivery (a consumer
/// cursor), and before it waits for more input.
#[derive(Debug)]
pub(crate) struct Outbox {
    version: u64,
    subs: Arc<Vec<Sub>>,
    /// `pending[i]` is the batch for `subs[i]`.
    pending: Vec<Vec<NodeEvent>>,
    /// Events pushed since the last flush, all subscriptions together.
    queued: usize,
    local: bool,
    /// The last topic [`push_message`](Self::push_message) saw, and the
    /// subscriptions (indices in `subs`) to it.
    takers: (Option<crate::proto::Name>, Vec<usize>),
}

impl Outbox {
    /// Catches up with subscriptions added since; flushes first, as the
    /// pending batches belong to the old list.
    pub(crate) async fn refresh(&mut self, dispatch: &Dispatch) {
        // Acquire: pairs with the Release bump in `Dispatch::subscribe`.
        if dispatch.version.load(Ordering::Acquire) != self.version {
            self.flush().await;
            *self = dispatch.outbox(self.local);
        }
    }

    /// Whether any subscription in it is still open (can go stale at once).
    pub(crate) fn any_live(&self) -> bool {
        self.subs.iter().any(|s| !s.tx.is_closed())
    }

    /// Whether any live subscription listens to `topic`.
    pub(crate) fn wants(&self, topic: &str) -> bool {
        self.subs
            .iter()
            .any(|s| *s.topic == *topic && !s.tx.is_closed())
    }

    /// Adds `event` to the batch of every subscription that takes it (moved
    /// into the last one, cloned for the others).
    pub(crate) fn push(&mut self, event: NodeEvent) {
        let mut last = None;
        for (i, sub) in self.subs.iter().enumerate() {
            if !sub.takes(&event, self.local) || sub.tx.is_closed() {
                continue;
            }
            if let Some(previous) = last.replace(i) {
                self.pending[previous].push(event.clone());
            }
        }
        if let Some(i) = last {
            self.pending[i].push(event);
            self.queued += 1;
        }
    }

    /// [`push`](Self::push) for a peer's `Message`, faster while topics
    /// repeat: the subscriptions to the last topic seen are remembered, so
    /// a run of messages on one topic costs one compare each, not one per
    /// subscription and two passes.
    pub(crate) fn push_message(&mut self, event: NodeEvent) {
        let NodeEvent::Message { topic, .. } = &event else {
            return self.push(event);
        };
        let (last_topic, takers) = &mut self.takers;
        if last_topic.as_ref() != Some(topic) {
            takers.clear();
            takers.extend(
                self.subs
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| *s.topic == **topic && !s.tx.is_closed())
                    .map(|(i, _)| i),
            );
            *last_topic = Some(topic.clone());
        }
        // Moved into the last one, cloned for the others. (A subscription
        // that closed since is skipped at the flush.)
        let Some((&last, others)) = takers.split_last() else {
            return;
        };
        for &i in others {
            self.pending[i].push(event.clone());
        }
        self.pending[last].push(event);
        self.queued += 1;
    }

    /// Whether a flush is due before more is pushed.
    pub(crate) fn is_full(&self) -> bool {
        self.queued >= BATCH
    }

    /// Hands every pending batch to its subscription, waiting while one is
    /// full; a closed subscription's batch is dropped (it unsubscribed).
    pub(crate) async fn flush(&mut self) {
        if self.queued == 0 {
            return;
        }
        self.queued = 0;
        for (sub, pending) in self.subs.iter().zip(&mut self.pending) {
            if pending.is_empty() {
                continue;
            }
            let batch = std::mem::replace(pending, Vec::with_capacity(BATCH.min(64)));
            match sub.tx.try_send(batch) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                Err(mpsc::error::TrySendError::Full(batch)) => {
                    let _ = sub.tx.send(batch).await;
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
    rx: mpsc::Receiver<Vec<NodeEvent>>,
    /// The rest of the batch being read.
    ready: std::vec::IntoIter<NodeEvent>,
}

impl Subscription {
    /// The next event; `None` once the node has shut down.
    pub async fn recv(&mut self) -> Option<NodeEvent> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next event if one is ready, without waiting.
    pub fn try_recv(&mut self) -> Option<NodeEvent> {
        loop {
            if let Some(event) = self.ready.next() {
                return Some(event);
            }
            self.ready = self.rx.try_recv().ok()?.into_iter();
        }
    }

    /// Polls for the next event (the `Stream` shape).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<NodeEvent>> {
        loop {
            if let Some(event) = self.ready.next() {
                return Poll::Ready(Some(event));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(batch)) => self.ready = batch.into_iter(),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl futures_core::Stream for Subscription {
    type Item = NodeEvent;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<NodeEvent>> {
        self.get_mut().poll_recv(cx)
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
        let mut outbox = d.outbox(true);
        assert!(!outbox.any_live());
        let s = d.subscribe("t", 0);
        outbox.refresh(&d).await;
        assert!(outbox.any_live());
        assert!(outbox.wants("t"));
        assert!(!outbox.wants("u"));
        drop(s);
        assert!(!outbox.any_live());
        assert!(d.go_idle());
        // The permit the earlier subscription left is not a subscription.
        let waited = tokio::time::timeout(Duration::from_millis(20), d.wait_subscribed()).await;
        assert!(waited.is_err(), "nobody subscribed since going idle");
        let _s = d.subscribe("t", 42);
        assert_eq!(d.wait_subscribed().await, 42);
    }

    #[tokio::test]
    async fn a_batch_reaches_every_subscription_of_the_topic_only_in_order() {
        let d = Dispatch::new(4);
        let mut t1 = d.subscribe("t", 0);
        let mut t2 = d.subscribe("t", 0);
        let mut u = d.subscribe("u", 0);
        let mut outbox = d.outbox(false);
        outbox.push(message("t", 5));
        outbox.push(message("t", 6));
        // Nothing is delivered before the flush.
        assert_eq!(t1.try_recv(), None);
        outbox.flush().await;
        for t in [&mut t1, &mut t2] {
            assert_eq!(t.try_recv(), Some(message("t", 5)));
            assert_eq!(t.try_recv(), Some(message("t", 6)));
            assert_eq!(t.try_recv(), None);
        }
        assert_eq!(u.try_recv(), None);
        // An expiry concerns every topic.
        let expired = NodeEvent::CursorExpired {
            from: "p".into(),
            epoch: 1,
            missed: 2,
            resume_seq: 8,
        };
        outbox.push(expired.clone());
        outbox.flush().await;
        assert_eq!(t1.try_recv(), Some(expired.clone()));
        assert_eq!(t2.try_recv(), Some(expired.clone()));
        assert_eq!(u.try_recv(), Some(expired));
    }

    #[tokio::test]
    async fn a_peer_message_reaches_the_subscriptions_of_its_topic_as_topics_change() {
        let d = Dispatch::new(4 * BATCH);
        let mut t1 = d.subscribe("t", 100);
        let mut t2 = d.subscribe("t", 100);
        let mut u = d.subscribe("u", 100);
        let mut outbox = d.outbox(false);
        let message = |topic: &str, seq| NodeEvent::Message {
            from: "p".into(),
            epoch: 1,
            seq,
            topic: topic.into(),
            payload: Bytes::from_static(b"x"),
        };
        // Topics change between runs, back to one seen before, and to one
        // nobody takes. Sequence numbers below the local start do not
        // matter for a peer.
        for (topic, seq) in [("t", 1), ("t", 2), ("v", 3), ("u", 4), ("t", 5), ("t", 6)] {
            outbox.push_message(message(topic, seq));
        }
        outbox.flush().await;
        for sub in [&mut t1, &mut t2] {
            for seq in [1, 2, 5, 6] {
                assert_eq!(sub.try_recv(), Some(message("t", seq)));
            }
            assert_eq!(sub.try_recv(), None);
        }
        assert_eq!(u.try_recv(), Some(message("u", 4)));
        assert_eq!(u.try_recv(), None);
        // A subscription dropped meanwhile gets nothing; the others go on.
        drop(t2);
        outbox.push_message(message("t", 7));
        outbox.flush().await;
        assert_eq!(t1.try_recv(), Some(message("t", 7)));
    }

    #[tokio::test]
    async fn local_messages_from_before_a_subscription_are_not_its_own() {
        // Room for two batches per subscription: one local, one remote.
        let d = Dispatch::new(2 * BATCH);
        let mut early = d.subscribe("t", 0);
        let mut late = d.subscribe("t", 10);
        let mut local = d.outbox(true);
        let mut remote = d.outbox(false);
        local.push(message("t", 9));
        local.push(message("t", 10));
        remote.push(message("t", 3));
        local.flush().await;
        remote.flush().await;
        assert_eq!(early.try_recv(), Some(message("t", 9)));
        assert_eq!(early.try_recv(), Some(message("t", 10)));
        assert_eq!(early.try_recv(), Some(message("t", 3)));
        assert_eq!(late.try_recv(), Some(message("t", 10)));
        // Another producer's numbers are not compared with the local head.
        assert_eq!(late.try_recv(), Some(message("t", 3)));
        assert_eq!(late.try_recv(), None);
    }
}
