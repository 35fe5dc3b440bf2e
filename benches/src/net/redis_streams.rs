//! Redis Streams through the `redis` crate (tokio, multiplexed
//! connections): `XADD key MAXLEN ~ N * d <payload>` is the ring, each
//! consumer reads with `XREAD COUNT 1000 BLOCK 100 STREAMS key <last id>`
//! on a connection of its own, as a separate node would.
//!
//! The producer pipelines its `XADD`s ([`PIPELINE`] per round trip), as a
//! user after throughput would. Replies are walked as raw `Value`s rather
//! than through `StreamReadReply` (which clones the reply and builds a map
//! per entry): that is the client at its fastest, not at its most
//! convenient.

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::Value;

use super::common::{pace, payload_buf, run_timeout, stamp, Checker};
use super::{CatchupRun, Env, LatencyRun, ThroughputRun};

/// `XADD`s per pipelined round trip.
const PIPELINE: usize = 512;
/// Entries per `XREAD`.
const READ_COUNT: usize = 1000;

async fn connection(env: &Env) -> Result<MultiplexedConnection, String> {
    let url = env.redis.clone().ok_or("redis-server is not available")?;
    let client = redis::Client::open(format!("redis://{url}/")).map_err(|e| e.to_string())?;
    // XREAD BLOCK waits on the server: no client-side response timeout.
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| format!("connect: {e}"))
}

struct Stream {
    conn: MultiplexedConnection,
    key: String,
    capacity: u64,
}

impl Stream {
    async fn create(env: &Env, capacity: u64) -> Result<Self, String> {
        let mut conn = connection(env).await?;
        let key = format!("ringcast-bench:{}", env.next_id());
        redis::cmd("DEL")
            .arg(&key)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| format!("DEL: {e}"))?;
        Ok(Self {
            conn,
            key,
            capacity,
        })
    }

    fn xadd(&self, payload: &[u8]) -> redis::Cmd {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.key)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.capacity)
            .arg("*")
            .arg("d")
            .arg(payload);
        cmd
    }

    async fn publish_burst(&mut self, size: usize, from: u64, to: u64) -> Result<Duration, String> {
        let start = Instant::now();
        let mut buf = payload_buf(size);
        let mut seq = from;
        while seq < to {
            let mut pipe = redis::pipe();
            let end = (seq + PIPELINE as u64).min(to);
            for s in seq..end {
                stamp(&mut buf, s);
                pipe.add_command(self.xadd(&buf)).ignore();
            }
            pipe.query_async::<()>(&mut self.conn)
                .await
                .map_err(|e| format!("XADD: {e}"))?;
            seq = end;
        }
        Ok(start.elapsed())
    }

    async fn delete(mut self) {
        let _ = redis::cmd("DEL")
            .arg(&self.key)
            .query_async::<()>(&mut self.conn)
            .await;
    }
}

/// What a reader hands back: its checker, when the last message came, and
/// the id of the last entry it read.
type Drained = (Checker, Instant, Vec<u8>);

/// Reads from after entry `last` into `checker` until every message below
/// `end` is accounted for; returns the checker, when the last message came,
/// and the last entry id read.
async fn drain(
    mut conn: MultiplexedConnection,
    key: String,
    mut last: Vec<u8>,
    mut checker: Checker,
    end: u64,
) -> Result<Drained, String> {
    while !checker.done(end) {
        let reply: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(100)
            .arg("STREAMS")
            .arg(&key)
            .arg(&last)
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("XREAD: {e}"))?;
        for_each_entry(reply, |id, payload| {
            checker.on_payload(payload);
            last.clear();
            last.extend_from_slice(id);
        })?;
    }
    Ok((checker, Instant::now(), last))
}

/// Walks an `XREAD` reply for one key: `nil` (timeout), or
/// `[[key, [[id, [field, value, ...]], ...]]]` (RESP2; a map in RESP3).
fn for_each_entry(reply: Value, mut f: impl FnMut(&[u8], &[u8])) -> Result<(), String> {
    let streams: Vec<Value> = match reply {
        Value::Nil => return Ok(()),
        Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut kv) if kv.len() == 2 => kv.pop(),
                _ => None,
            })
            .collect(),
        Value::Map(kvs) => kvs.into_iter().map(|(_, v)| v).collect(),
        other => return Err(format!("unexpected XREAD reply {other:?}")),
    };
    for entries in streams {
        let Value::Array(entries) = entries else {
            return Err("XREAD: entries are not an array".into());
        };
        for entry in entries {
            let Value::Array(entry) = entry else {
                return Err("XREAD: entry is not an array".into());
            };
            let (Some(Value::BulkString(id)), Some(Value::Array(fields))) =
                (entry.first(), entry.get(1))
            else {
                return Err("XREAD: malformed entry".into());
            };
            let Some(Value::BulkString(payload)) = fields.get(1) else {
                return Err("XREAD: entry without value".into());
            };
            f(id, payload);
        }
    }
    Ok(())
}

async fn join(
    task: tokio::task::JoinHandle<Result<Drained, String>>,
    within: Duration,
) -> Result<Drained, String> {
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
    let mut s = Stream::create(env, messages.next_power_of_two()).await?;
    let mut readers = Vec::new();
    for _ in 0..consumers {
        let conn = connection(env).await?;
        readers.push(tokio::spawn(drain(
            conn,
            s.key.clone(),
            b"0-0".to_vec(),
            Checker::new(size, 0),
            messages,
        )));
    }
    let start = Instant::now();
    let publish = s.publish_burst(size, 0, messages).await?;
    let mut checkers = Vec::new();
    let mut last = start;
    for r in readers {
        let (checker, at, _) = join(r, run_timeout(messages)).await?;
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
    let checker = Checker::new(size, 0).record_latency_from(warmup, count as usize);
    let reader = tokio::spawn(drain(
        connection(env).await?,
        s.key.clone(),
        b"0-0".to_vec(),
        checker,
        count,
    ));
    let handle = tokio::runtime::Handle::current();
    let mut conn = s.conn.clone();
    let cmds_stream = Stream {
        conn: s.conn.clone(),
        key: s.key.clone(),
        capacity: s.capacity,
    };
    let failed = tokio::task::spawn_blocking(move || {
        let mut buf = payload_buf(size);
        let mut failed = None;
        pace(rate, count, |seq| {
            stamp(&mut buf, seq);
            let cmd = cmds_stream.xadd(&buf);
            if let Err(e) = handle.block_on(cmd.query_async::<Value>(&mut conn)) {
                failed.get_or_insert(e.to_string());
            }
        });
        failed
    })
    .await
    .map_err(|e| e.to_string())?;
    if let Some(e) = failed {
        return Err(format!("XADD: {e}"));
    }
    let (checker, _, _) = join(reader, Duration::from_secs(20)).await?;
    s.delete().await;
    Ok(LatencyRun { checker })
}

/// Live: a reader attached while `backlog` entries are added. Then the
/// reader goes away, `backlog` more are added, and a reader comes back (new
/// connection, `XREAD` from the last id it had): the time from its return
/// until it has them all is the catch-up time.
pub(crate) async fn catchup(env: &Env, size: usize, backlog: u64) -> Result<CatchupRun, String> {
    let mut s = Stream::create(env, (2 * backlog).next_power_of_two()).await?;
    let live_reader = tokio::spawn(drain(
        connection(env).await?,
        s.key.clone(),
        b"0-0".to_vec(),
        Checker::new(size, 0),
        backlog,
    ));
    let live_start = Instant::now();
    s.publish_burst(size, 0, backlog).await?;
    let (checker, live_end, last_id) = join(live_reader, run_timeout(backlog)).await?;
    checker
        .verdict(backlog)
        .map_err(|e| format!("live phase: {e}"))?;
    let live = live_end - live_start;

    s.publish_burst(size, backlog, 2 * backlog).await?;
    let back = Instant::now();
    let conn = connection(env).await?;
    let reconnected = Instant::now();
    let task = tokio::spawn(drain(
        conn,
        s.key.clone(),
        last_id,
        Checker::new(size, backlog),
        2 * backlog,
    ));
    let (checker, end, _) = join(task, run_timeout(backlog)).await?;
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
