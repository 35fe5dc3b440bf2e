//! The ceiling: a raw quinn stream per consumer carrying `[u32 BE len][payload]`
//! frames, with nothing else — no ring, no cursor, no acks, no resume.
//!
//! It uses ringcast's own TLS configuration (the same certificates, ring
//! provider, ALPN `ringcast/1`, mutual TLS) and the same transport settings
//! and socket buffers as a ringcast node, so that the difference is the
//! shell's own cost. The producer packs frames into batches of 256 KiB (the
//! batch a ringcast sender writes at most) and hands the same batch to every
//! consumer's stream (`write_chunk`, no copy); a consumer reads chunks,
//! splits frames and hands each payload on as `Bytes`, as a user would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use ringcast_net::tls::NodeIdentity;
use tokio::sync::mpsc;

use super::common::{pace, payload_buf, run_timeout, stamp, Checker};
use super::{Env, LatencyRun, ThroughputRun};

/// Bytes per stream write: what a ringcast sender writes at most at once.
const BATCH: usize = 256 << 10;
/// The UDP socket buffers a ringcast node asks for.
const SOCKET_BUFFER: usize = 4 << 20;

/// The transport settings of a ringcast node (`net/src/node/endpoint.rs`),
/// except that the producer opens one unidirectional stream.
fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    let idle = Duration::from_secs(10);
    t.max_idle_timeout(quinn::IdleTimeout::try_from(idle).ok());
    t.keep_alive_interval(Some(idle / 3));
    t.max_concurrent_bidi_streams(0u32.into());
    t.max_concurrent_uni_streams(1u32.into());
    t.stream_receive_window((16u32 << 20).into());
    t.receive_window((32u32 << 20).into());
    t.send_window(32 << 20);
    Arc::new(t)
}

fn endpoint(server: Option<quinn::ServerConfig>) -> Result<quinn::Endpoint, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .map_err(|e| e.to_string())?;
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&addr.into()).map_err(|e| e.to_string())?;
    let runtime = quinn::default_runtime().ok_or("no tokio runtime")?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        server,
        socket.into(),
        runtime,
    )
    .map_err(|e| e.to_string())
}

/// A connected pair set: the producer's endpoint, and per consumer its
/// endpoint, its connection, and the producer's send stream to it.
struct Links {
    server: quinn::Endpoint,
    clients: Vec<(quinn::Endpoint, quinn::Connection)>,
    sends: Vec<(quinn::Connection, quinn::SendStream)>,
}

async fn connect(env: &Env, consumers: usize) -> Result<Links, String> {
    let p = NodeIdentity::load(&env.certs, "p").map_err(|e| e.to_string())?;
    let server = endpoint(Some(
        p.server_config(transport()).map_err(|e| e.to_string())?,
    ))?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    let mut clients = Vec::new();
    let mut sends = Vec::new();
    for i in 0..consumers {
        let id = NodeIdentity::load(&env.certs, &format!("c{i}")).map_err(|e| e.to_string())?;
        let mut ep = endpoint(None)?;
        ep.set_default_client_config(id.client_config(transport()).map_err(|e| e.to_string())?);
        let connecting = ep.connect(addr, "p").map_err(|e| e.to_string())?;
        let incoming = server.accept().await.ok_or("server endpoint closed")?;
        let (client_conn, server_conn) = tokio::join!(connecting, incoming);
        let client_conn = client_conn.map_err(|e| e.to_string())?;
        let server_conn = server_conn.map_err(|e| e.to_string())?;
        let send = server_conn.open_uni().await.map_err(|e| e.to_string())?;
        clients.push((ep, client_conn));
        sends.push((server_conn, send));
    }
    Ok(Links {
        server,
        clients,
        sends,
    })
}

/// Reads frames from the next unidirectional stream of `conn` into
/// `checker` until every message below `end` is accounted for.
async fn read(
    conn: quinn::Connection,
    mut checker: Checker,
    end: u64,
) -> Result<(Checker, Instant), String> {
    let mut recv = conn.accept_uni().await.map_err(|e| e.to_string())?;
    let mut buf = BytesMut::with_capacity(1 << 20);
    while !checker.done(end) {
        let Some(chunk) = recv
            .read_chunk(1 << 20, true)
            .await
            .map_err(|e| e.to_string())?
        else {
            break;
        };
        buf.extend_from_slice(&chunk.bytes);
        while buf.len() >= 4 {
            let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if buf.len() < 4 + len {
                break;
            }
            buf.advance(4);
            let message: Bytes = buf.split_to(len).freeze();
            checker.on_payload(&message);
        }
    }
    let at = Instant::now();
    conn.close(0u32.into(), b"done");
    Ok((checker, at))
}

pub(crate) async fn throughput(
    env: &Env,
    size: usize,
    consumers: usize,
    messages: u64,
) -> Result<ThroughputRun, String> {
    let links = connect(env, consumers).await?;
    let mut readers = Vec::new();
    for (_, conn) in &links.clients {
        readers.push(tokio::spawn(read(
            conn.clone(),
            Checker::new(size, 0),
            messages,
        )));
    }
    let mut feeds = Vec::new();
    let mut writers = Vec::new();
    for (conn, mut send) in links.sends {
        let (tx, mut rx) = mpsc::channel::<Bytes>(16);
        feeds.push(tx);
        writers.push(tokio::spawn(async move {
            while let Some(batch) = rx.recv().await {
                send.write_chunk(batch).await.map_err(|e| e.to_string())?;
            }
            send.finish().map_err(|e| e.to_string())?;
            // Keep the connection until the consumer has read everything.
            let _ = send.stopped().await;
            drop(conn);
            Ok::<(), String>(())
        }));
    }
    let start = Instant::now();
    let publish = {
        let mut payload = payload_buf(size);
        let mut batch = BytesMut::with_capacity(BATCH + size + 4);
        for seq in 0..messages {
            stamp(&mut payload, seq);
            batch.put_u32(size as u32);
            batch.put_slice(&payload);
            if batch.len() >= BATCH || seq + 1 == messages {
                let b = batch.split().freeze();
                for f in &feeds {
                    // A writer that failed shows up in its result.
                    let _ = f.send(b.clone()).await;
                }
                batch.reserve(BATCH + size + 4);
            }
        }
        drop(feeds);
        start.elapsed()
    };
    let mut checkers = Vec::new();
    let mut last = start;
    for r in readers {
        let (checker, at) = tokio::time::timeout(run_timeout(messages), r)
            .await
            .map_err(|_| "timed out waiting for consumers".to_string())?
            .map_err(|e| e.to_string())??;
        last = last.max(at);
        checkers.push(checker);
    }
    for w in writers {
        let _ = tokio::time::timeout(Duration::from_secs(5), w).await;
    }
    links.server.close(0u32.into(), b"done");
    for (ep, _) in &links.clients {
        ep.close(0u32.into(), b"done");
    }
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
    let mut links = connect(env, 1).await?;
    let (_, conn) = &links.clients[0];
    let checker = Checker::new(size, 0).record_latency_from(warmup, count as usize);
    let reader = tokio::spawn(read(conn.clone(), checker, count));
    let (server_conn, mut send) = links.sends.remove(0);
    let handle = tokio::runtime::Handle::current();
    // The pacing thread drives each write itself: the write is the publish.
    let send = tokio::task::spawn_blocking(move || {
        let mut frame = vec![0u8; 4 + size];
        frame[..4].copy_from_slice(&(size as u32).to_be_bytes());
        frame[4..].copy_from_slice(&payload_buf(size));
        let mut failed = None;
        pace(rate, count, |seq| {
            stamp(&mut frame[4..], seq);
            if failed.is_none() {
                if let Err(e) = handle.block_on(send.write_all(&frame)) {
                    failed = Some(e.to_string());
                }
            }
        });
        match failed {
            Some(e) => Err(e),
            None => Ok(send),
        }
    })
    .await
    .map_err(|e| e.to_string())??;
    let (checker, _) = tokio::time::timeout(Duration::from_secs(20), reader)
        .await
        .map_err(|_| "timed out waiting for the consumer".to_string())?
        .map_err(|e| e.to_string())??;
    drop(send);
    drop(server_conn);
    links.server.close(0u32.into(), b"done");
    Ok(LatencyRun { checker })
}
