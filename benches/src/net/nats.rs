//! NATS JetStream through `async-nats`: an in-memory stream with a
//! `max_messages` limit (discard old) is the ring; each consumer is an
//! ordered consumer (the client's gap-detecting, flow-controlled reader)
//! reading from a start sequence on its own connection, as a separate node
//! would.
//!
//! The producer publishes through the JetStream context and awaits the
//! server's acknowledgements in a window of [`ACK_WINDOW`] (the client also
//! applies its own in-flight limit), so a message counts as published once
//! the stream stored it — the usual reliable way to publish to JetStream.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, stream};
use bytes::Bytes;
use futures_util::StreamExt;

use super::common::{pace, payload_buf, run_timeout, stamp, Checker};
use super::{CatchupRun, Env, LatencyRun, ThroughputRun};

/// Publish acknowledgements awaited at most this far behind.
const ACK_WINDOW: usize = 4096;

struct Stream {
    js: jetstream::Context,
    name: String,
    subject: async_nats::Subject,
    addr: String,
}

impl Stream {
    async fn create(env: &Env, capacity: u64) -> Result<Self, String> {
        let addr = env.nats.clone().ok_or("nats-server is not available")?;
        let client = async_nats::connect(addr.as_str())
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let js = jetstream::new(client);
        let id = env.next_id();
        let name = format!("RINGCAST_BENCH_{id}");
        let subject = format!("ringcast.bench.{id}");
        js.create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            max_messages: capacity as i64,
            storage: stream::StorageType::Memory,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("create stream: {e}"))?;
        Ok(Self {
            js,
            name,
            subject: subject.into(),
            addr,
        })
    }

    /// An ordered consumer on a connection of its own, from stream sequence
    /// `start` (1-based).
    async fn reader(&self, start: u64) -> Result<consumer::pull::Ordered, String> {
        let client = async_nats::connect(self.addr.as_str())
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let js = jetstream::new(client);
        let stream = js
            .get_stream(&self.name)
            .await
            .map_err(|e| format!("get stream: {e}"))?;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                ..Default::default()
            })
            .await
            .map_err(|e| format!("create consumer: {e}"))?;
        consumer
            .messages()
            .await
            .map_err(|e| format!("consume: {e}"))
    }

    /// Publishes messages `from..to` as fast as acknowledgements allow.
    async fn publish_burst(&self, size: usize, from: u64, to: u64) -> Result<Duration, String> {
        let start = Instant::now();
        let mut buf = payload_buf(size);
        let mut acks = VecDeque::with_capacity(ACK_WINDOW);
        for seq in from..to {
            stamp(&mut buf, seq);
            let ack = self
                .js
                .publish(self.subject.clone(), Bytes::copy_from_slice(&buf))
                .await
                .map_err(|e| format!("publish: {e}"))?;
            acks.push_back(ack);
            if acks.len() >= ACK_WINDOW {
                if let Some(ack) = acks.pop_front() {
                    ack.await.map_err(|e| format!("publish ack: {e}"))?;
                }
            }
        }
        for ack in acks {
            ack.await.map_err(|e| format!("publish ack: {e}"))?;
        }
        Ok(start.elapsed())
    }

    async fn delete(self) {
        let _ = self.js.delete_stream(&self.name).await;
    }
}

async fn drain(
    mut messages: consumer::pull::Ordered,
    mut checker: Checker,
    end: u64,
) -> Result<(Checker, Instant), String> {
    while !checker.done(end) {
        match messages.next().await {
            Some(Ok(m)) => checker.on_payload(&m.message.payload),
            Some(Err(e)) => return Err(format!("consumer: {e}")),
            None => break,
        }
    }
    Ok((checker, Instant::now()))
}

async fn join(
    task: tokio::task::JoinHandle<Result<(Checker, Instant), String>>,
    within: Duration,
) -> Result<(Checker, Instant), String> {
    tokio::time::timeout(within, task)
        .await
        .map_err(|_| "timed out waiting for a consumer".to_string())?
        .map_err(|e| e.to_string())?
}

pub(crate) async fn throughput(
    env: &Env,
    size: usize,
    consumers: usize,
    messages: u64,
) -> Result<ThroughputRun, String> {
    let s = Stream::create(env, messages.next_power_of_two()).await?;
    let mut readers = Vec::new();
    for _ in 0..consumers {
        let r = s.reader(1).await?;
        readers.push(tokio::spawn(drain(r, Checker::new(size, 0), messages)));
    }
    let start = Instant::now();
    let publish = s.publish_burst(size, 0, messages).await?;
    let mut checkers = Vec::new();
    let mut last = start;
    for r in readers {
        let (checker, at) = join(r, run_timeout(messages)).await?;
        last = last.max(at);
        checkers.push(checker);
    }
    s.delete().await;
    Ok(ThroughputRun {
        elapsed: last - start,
        publish,
        checkers,
    })
}

pub(crate) async fn latency(
    env: &Env,
    size: usize,
    rate: u64,
    count: u64,
    warmup: u64,
) -> Result<LatencyRun, String> {
    let s = Stream::create(env, count.next_power_of_two()).await?;
    let r = s.reader(1).await?;
    let checker = Checker::new(size, 0).record_latency_from(warmup, count as usize);
    let reader = tokio::spawn(drain(r, checker, count));
    let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel();
    // Acknowledgements are awaited apart: they concern the producer, not
    // delivery.
    let acks = tokio::spawn(async move {
        let mut failed = None;
        while let Some(ack) = ack_rx.recv().await {
            let ack: jetstream::context::PublishAckFuture = ack;
            if let Err(e) = ack.await {
                failed.get_or_insert(e.to_string());
            }
        }
        failed
    });
    let js = s.js.clone();
    let subject = s.subject.clone();
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut buf = payload_buf(size);
        pace(rate, count, |seq| {
            stamp(&mut buf, seq);
            let publish = js.publish(subject.clone(), Bytes::copy_from_slice(&buf));
            if let Ok(ack) = handle.block_on(publish) {
                let _ = ack_tx.send(ack);
            }
        });
    })
    .await
    .map_err(|e| e.to_string())?;
    let (checker, _) = join(reader, Duration::from_secs(20)).await?;
    if let Ok(Some(e)) = acks.await {
        return Err(format!("publish ack: {e}"));
    }
    s.delete().await;
    Ok(LatencyRun { checker })
}

/// Live: a consumer attached while `backlog` messages are published. Then
/// the consumer goes away, `backlog` more are stored, and a consumer comes
/// back (new connection, ordered consumer from the next stream sequence):
/// the time from its return until it has them all is the catch-up time.
pub(crate) async fn catchup(env: &Env, size: usize, backlog: u64) -> Result<CatchupRun, String> {
    let s = Stream::create(env, (2 * backlog).next_power_of_two()).await?;
    let r = s.reader(1).await?;
    let live_reader = tokio::spawn(drain(r, Checker::new(size, 0), backlog));
    let live_start = Instant::now();
    s.publish_burst(size, 0, backlog).await?;
    let (checker, live_end) = join(live_reader, run_timeout(backlog)).await?;
    checker
        .verdict(backlog)
        .map_err(|e| format!("live phase: {e}"))?;
    let live = live_end - live_start;

    s.publish_burst(size, backlog, 2 * backlog).await?;
    let back = Instant::now();
    let r = s.reader(backlog + 1).await?;
    let reconnected = Instant::now();
    let task = tokio::spawn(drain(r, Checker::new(size, backlog), 2 * backlog));
    let (checker, end) = join(task, run_timeout(backlog)).await?;
    s.delete().await;
    Ok(CatchupRun {
        live,
        catchup: end - back,
        reconnect: Some(reconnected - back),
        waited: None,
        checker,
        backlog,
    })
}
