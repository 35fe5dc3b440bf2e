//! ringcast over QUIC, through the library API: one producer node, one or
//! more consumer nodes following it, all in this process on loopback (each
//! node its own QUIC endpoint and UDP socket, as separate processes would
//! have).
//!
//! The producer publishes from a plain thread (`Node::publish` is
//! synchronous and never waits); each consumer node has one subscription and
//! a task that checks every event.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ringcast_net::fault::UdpProxy;
use ringcast_net::{ConnectOutcome, Node, NodeEvent, PeerStatus, Subscription};
use tokio::sync::mpsc;

use super::common::{pace, payload_buf, run_timeout, stamp, Checker};
use super::{CatchupRun, Env, LatencyRun, ThroughputRun};

const TOPIC: &str = "b";

/// Ring capacity (messages) and byte budget that hold `messages` of `size`
/// bytes without overwriting any: a throughput run measures delivery, not
/// loss. Expiry would be reported (and counted as loss), never hidden.
fn ring_for(messages: u64, size: usize) -> (usize, usize) {
    let capacity = (messages as usize).next_power_of_two().max(1024);
    // Entry = topic length byte + topic + payload, padded to 8 bytes; keep
    // headroom for the padding.
    let per = (size + 2 + TOPIC.len()).next_multiple_of(8) + 8;
    (capacity, (capacity * per).max(MAX_MESSAGE))
}

/// The largest message a benchmark node accepts: far above any payload here.
const MAX_MESSAGE: usize = 64 << 10;

/// The producer node, its ring sized by [`ring_for`] and already lapped
/// once (see [`warm`]). Returns the node and its head: the producer
/// sequence number of benchmark message 0.
async fn producer(env: &Env, messages: u64, size: usize) -> Result<(Arc<Node>, u64), String> {
    let (capacity, max_bytes) = ring_for(messages, size);
    let node = Node::builder("p")
        .certs(&env.certs)
        .capacity(capacity)
        .max_bytes(max_bytes)
        .max_message_size(MAX_MESSAGE)
        .start()
        .await
        .map_err(|e| format!("producer node: {e}"))?;
    let node = Arc::new(node);
    let head = warm(Arc::clone(&node), capacity as u64, size).await?;
    Ok((node, head))
}

/// Publishes one lap of the ring (on a topic nobody subscribes to) before
/// any consumer connects, so runs measure a producer in its steady state:
/// a fresh ring's first lap pays a page fault per 4 KiB of arena, which a
/// long-running producer never does again. Consumers connect afterwards and
/// start at the head, so they never see these messages.
async fn warm(node: Arc<Node>, messages: u64, size: usize) -> Result<u64, String> {
    tokio::task::spawn_blocking(move || {
        let buf = payload_buf(size);
        for _ in 0..messages {
            node.publish("warm-up", &buf).map_err(|e| e.to_string())?;
        }
        Ok(node.head())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// A consumer node called `name` following `p` at `addr`, subscribed, and
/// connected (its first stream answered).
async fn consumer(
    env: &Env,
    name: &str,
    addr: std::net::SocketAddr,
    tune: impl FnOnce(ringcast_net::NodeBuilder) -> ringcast_net::NodeBuilder,
) -> Result<(Node, Subscription, mpsc::Receiver<PeerStatus>), String> {
    let mut node = tune(Node::builder(name).certs(&env.certs).peer("p", addr))
        .start()
        .await
        .map_err(|e| format!("consumer node {name}: {e}"))?;
    let sub = node.subscribe(TOPIC);
    let mut status = node.take_status().ok_or("status taken")?;
    wait_connected(&mut status, Duration::from_secs(10)).await?;
    Ok((node, sub, status))
}

/// Waits for the consumer to connect; returns how the stream began and how
/// long setting up the connection took.
async fn wait_connected(
    status: &mut mpsc::Receiver<PeerStatus>,
    within: Duration,
) -> Result<(ConnectOutcome, Duration), String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, status.recv()).await {
            Ok(Some(PeerStatus::Connected {
                outcome, handshake, ..
            })) => return Ok((outcome, handshake)),
            Ok(Some(_)) => {}
            Ok(None) => return Err("node stopped".into()),
            Err(_) => return Err("consumer did not connect".into()),
        }
    }
}

async fn wait_disconnected(
    status: &mut mpsc::Receiver<PeerStatus>,
    within: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, status.recv()).await {
            Ok(Some(PeerStatus::Disconnected { .. })) => return Ok(()),
            Ok(Some(_)) => {}
            Ok(None) => return Err("node stopped".into()),
            Err(_) => return Err("consumer did not notice the cut".into()),
        }
    }
}

/// Reads `sub` into `checker` until every message below `end` is accounted
/// for; returns the checker and when the last one arrived. Benchmark
/// message `n` is producer message `base + n`.
async fn drain(
    mut sub: Subscription,
    mut checker: Checker,
    end: u64,
    base: u64,
) -> (Checker, Instant, Subscription) {
    while !checker.done(end) {
        match sub.recv().await {
            Some(NodeEvent::Message { payload, .. }) => checker.on_payload(&payload),
            Some(NodeEvent::CursorExpired {
                missed, resume_seq, ..
            }) => {
                // After the warm-up the producer publishes only benchmark
                // messages: the two numberings differ by `base`.
                checker.on_missed(missed, resume_seq.saturating_sub(base));
            }
            Some(_) => {}
            None => break,
        }
    }
    (checker, Instant::now(), sub)
}

/// Publishes messages `from..to` of `size` bytes as fast as possible from a
/// blocking thread; returns how long publishing took.
async fn publish_burst(
    node: Arc<Node>,
    size: usize,
    from: u64,
    to: u64,
) -> Result<Duration, String> {
    tokio::task::spawn_blocking(move || {
        let mut buf = payload_buf(size);
        let start = Instant::now();
        for seq in from..to {
            stamp(&mut buf, seq);
            node.publish(TOPIC, &buf).map_err(|e| e.to_string())?;
        }
        Ok(start.elapsed())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// One producer to `consumers` consumer nodes, `messages` of `size` bytes
/// published as fast as the producer can.
pub(crate) async fn throughput(
    env: &Env,
    size: usize,
    consumers: usize,
    messages: u64,
) -> Result<ThroughputRun, String> {
    let (p, base) = producer(env, messages, size).await?;
    let mut nodes = Vec::new();
    let mut drains = Vec::new();
    for i in 0..consumers {
        let (node, sub, _status) = consumer(env, &format!("c{i}"), p.local_addr(), |b| b).await?;
        drains.push(tokio::spawn(drain(
            sub,
            Checker::new(size, 0),
            messages,
            base,
        )));
        nodes.push(node);
    }
    let start = Instant::now();
    let publish = publish_burst(Arc::clone(&p), size, 0, messages).await?;
    let mut checkers = Vec::new();
    let mut last = start;
    for d in drains {
        let (checker, at, _) = tokio::time::timeout(run_timeout(messages), d)
            .await
            .map_err(|_| "timed out waiting for consumers".to_string())?
            .map_err(|e| e.to_string())?;
        last = last.max(at);
        checkers.push(checker);
    }
    for n in &nodes {
        n.shutdown().await;
    }
    p.shutdown().await;
    Ok(ThroughputRun {
        elapsed: last - start,
        publish,
        checkers,
    })
}

/// One consumer; `count` messages at `rate` per second, the first `warmup`
/// not recorded.
pub(crate) async fn latency(
    env: &Env,
    size: usize,
    rate: u64,
    count: u64,
    warmup: u64,
) -> Result<LatencyRun, String> {
    let (p, base) = producer(env, count, size).await?;
    let (c, sub, _status) = consumer(env, "c0", p.local_addr(), |b| b).await?;
    let checker = Checker::new(size, 0).record_latency_from(warmup, count as usize);
    let d = tokio::spawn(drain(sub, checker, count, base));
    let pub_node = Arc::clone(&p);
    tokio::task::spawn_blocking(move || {
        let mut buf = payload_buf(size);
        pace(rate, count, |seq| {
            stamp(&mut buf, seq);
            // The payload is within every limit.
            let _ = pub_node.publish(TOPIC, &buf);
        });
    })
    .await
    .map_err(|e| e.to_string())?;
    let (checker, _, _) = tokio::time::timeout(Duration::from_secs(20), d)
        .await
        .map_err(|_| "timed out waiting for the consumer".to_string())?
        .map_err(|e| e.to_string())?;
    c.shutdown().await;
    p.shutdown().await;
    Ok(LatencyRun { checker })
}

/// The catch-up consumer's reconnect backoff: first delay and cap.
pub(crate) const CATCHUP_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_millis(50));

/// A consumer that returns to a backlog: `backlog` messages are first
/// delivered live (timed: the live rate over the same path), then the link
/// is cut through a UDP proxy until the consumer notices, `backlog` more are
/// published, the link heals, and the time until the consumer — resuming
/// from its own cursor — has them all is the catch-up time.
pub(crate) async fn catchup(env: &Env, size: usize, backlog: u64) -> Result<CatchupRun, String> {
    let (p, base) = producer(env, 2 * backlog, size).await?;
    let mut proxy = UdpProxy::start(p.local_addr(), 7)
        .await
        .map_err(|e| format!("proxy: {e}"))?;
    let (c, sub, mut status) = consumer(env, "c0", proxy.addr(), |b| {
        // Notice the cut quickly and retry often: the figure is meant to be
        // the transfer, not the backoff (which is reported apart). An
        // attempt begun before the heal resends its lost first packet
        // after about 3 ms, as suits loopback, not after a second.
        b.idle_timeout(Duration::from_millis(600))
            .keep_alive(Duration::from_millis(100))
            .reconnect_backoff(CATCHUP_BACKOFF.0, CATCHUP_BACKOFF.1)
            .initial_rtt(Duration::from_millis(1))
    })
    .await?;

    // Live: the consumer is connected while the producer publishes.
    let live_start = Instant::now();
    let d = tokio::spawn(drain(sub, Checker::new(size, 0), backlog, base));
    publish_burst(Arc::clone(&p), size, 0, backlog).await?;
    let (checker, live_end, sub) = tokio::time::timeout(run_timeout(backlog), d)
        .await
        .map_err(|_| "timed out in the live phase".to_string())?
        .map_err(|e| e.to_string())?;
    checker
        .verdict(backlog)
        .map_err(|e| format!("live phase: {e}"))?;
    let live = live_end - live_start;

    // Away: cut, wait until the consumer's link is declared dead, publish.
    proxy.cut();
    wait_disconnected(&mut status, Duration::from_secs(10)).await?;
    publish_burst(Arc::clone(&p), size, backlog, 2 * backlog).await?;

    // Back: heal and time until the consumer has the backlog.
    let d = tokio::spawn(drain(sub, Checker::new(size, backlog), 2 * backlog, base));
    let healed = Instant::now();
    proxy.heal();
    let (outcome, handshake) = wait_connected(&mut status, Duration::from_secs(10)).await?;
    let reconnected = Instant::now();
    // The consumer comes back when it dials again, which its backoff timer
    // decides: the wait from the heal until then is reported apart. An
    // attempt begun during the cut counts from the heal.
    let dialed = reconnected
        .checked_sub(handshake)
        .unwrap_or(healed)
        .max(healed);
    let (checker, end, _) = tokio::time::timeout(run_timeout(backlog), d)
        .await
        .map_err(|_| "timed out in the catch-up phase".to_string())?
        .map_err(|e| e.to_string())?;
    if outcome != ConnectOutcome::Resumed {
        return Err(format!(
            "consumer came back {}, not resumed",
            outcome.as_str()
        ));
    }
    c.shutdown().await;
    p.shutdown().await;
    proxy.stop();
    Ok(CatchupRun {
        live,
        catchup: end - dialed,
        reconnect: Some(reconnected - dialed),
        waited: Some(dialed - healed),
        checker,
        backlog,
    })
}
