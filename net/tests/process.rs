//! Process-level failures and a consumer that never reads.
//!
//! - `kill -9` of a producer node process (the `ringcast` binary): its
//!   consumer process reports the disconnect; a producer restarted with the
//!   same name and port has a new epoch, and the consumer reports
//!   `cursor_expired` before any message of the new epoch, which then
//!   arrive from sequence number 0, in order.
//! - `kill -9` of a consumer node process: the producer keeps serving its
//!   other consumer gap-free, without a disconnect; the restarted consumer
//!   starts fresh (`new`) at the head, and a flush succeeds again.
//! - A consumer that completes the handshake and then never reads its
//!   stream: publishing never waits (every round of publishes takes as long
//!   as without it), another consumer receives everything gap-free, the
//!   producer's memory stays bounded while it publishes ten times its ring
//!   (tens of MiB), and once the stalled consumer reads again it is told in
//!   band how much it missed, then continues gap-free with byte-identical
//!   payloads.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ringcast_net::check::Checker;
use ringcast_net::proto::{AckPolicy, ConsumerSession, Decoder, Event, Frame, Limits, Outcome};
use ringcast_net::tls::NodeIdentity;
use ringcast_net::{ConnectOutcome, NodeEvent};
use serde_json::Value;
use support::node_process::{free_addr, NodeProc};
use support::*;

const T: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// `ringcast node` processes.

/// A `ringcast node` for these tests: dead peers noticed within a second.
fn node(name: &str, listen: &str, certs: &str, extra: &[&str]) -> NodeProc {
    let mut args = vec!["--name", name, "--listen", listen, "--certs", certs];
    args.extend(["--idle-timeout-ms", "1000"]);
    args.extend(extra);
    NodeProc::spawn(&args)
}

/// The `message` lines among `lines`, as `(epoch, seq, payload)`.
fn messages(lines: &[Value]) -> Vec<(String, u64, String)> {
    lines
        .iter()
        .filter(|v| v["event"] == "message")
        .map(|v| {
            (
                v["epoch"].as_str().unwrap().to_owned(),
                v["seq"].as_u64().unwrap(),
                v["payload"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn producer_killed_with_sigkill_and_restarted_is_reported_then_its_new_epoch_starts_at_zero() {
    let certs = Certs::new(&["p", "a"]);
    let dir = certs.path().to_str().unwrap();
    let (p_addr, a_addr) = (free_addr(), free_addr());
    let peer = format!("p@{p_addr}");

    let mut p = node("p", &p_addr, dir, &[]);
    let first_epoch = p.expect("ready", |_| true)["epoch"].clone();
    let mut a = node("a", &a_addr, dir, &["--peer", &peer, "--subscribe", "t"]);
    a.expect("connected", |v| v["peer"] == "p" && v["outcome"] == "new");
    for i in 0..5 {
        p.send(&format!("pub t before-{i}"));
    }
    for i in 0..5 {
        let m = a.expect("message", |_| true);
        assert_eq!(
            (&m["epoch"], m["seq"].as_u64(), m["payload"].as_str()),
            (&first_epoch, Some(i), Some(format!("before-{i}").as_str()))
        );
    }

    p.kill9();
    let since_kill = Instant::now();
    a.expect("disconnected", |v| v["peer"] == "p");
    // Noticed through the idle timeout (1 s): no close was ever sent.
    let noticed = since_kill.elapsed();
    assert!(
        noticed < Duration::from_secs(5),
        "disconnect noticed after {noticed:?}"
    );

    // Same name, same port: a new process, a new epoch, an empty ring.
    let mut p = node("p", &p_addr, dir, &[]);
    let second_epoch = p.expect("ready", |_| true)["epoch"].clone();
    assert_ne!(second_epoch, first_epoch, "a restart draws a new epoch");
    for i in 0..3 {
        p.send(&format!("pub t after-{i}"));
    }
    let second = second_epoch.as_str().unwrap().to_owned();
    let disconnected_at = a
        .seen
        .iter()
        .position(|v| v["event"] == "disconnected")
        .unwrap();
    // The status line and the events come from different tasks: wait for
    // both, in any order.
    a.wait("reconnection and the new epoch's messages", |seen| {
        let after = &seen[disconnected_at..];
        after
            .iter()
            .any(|v| v["event"] == "connected" && v["outcome"] == "expired")
            && messages(after).len() == 3
    });
    let after = &a.seen[disconnected_at..];
    // The restart was announced, once, before any message of the new
    // epoch; the new ring had not wrapped, so nothing of it was missed.
    let expired: Vec<usize> = (0..after.len())
        .filter(|&i| after[i]["event"] == "cursor_expired")
        .collect();
    assert_eq!(expired.len(), 1, "{after:?}");
    let e = &after[expired[0]];
    assert_eq!(
        (
            e["from"].as_str(),
            e["missed"].as_u64(),
            e["resume_seq"].as_u64()
        ),
        (Some("p"), Some(0), Some(0))
    );
    let first_message = after.iter().position(|v| v["event"] == "message").unwrap();
    assert!(expired[0] < first_message, "{after:?}");
    // Then the new epoch from 0, in order, and nothing of the old one.
    assert_eq!(
        messages(after),
        (0..3)
            .map(|i| (second.clone(), i, format!("after-{i}")))
            .collect::<Vec<_>>()
    );
}

#[test]
fn consumer_killed_with_sigkill_restarts_fresh_while_the_producer_keeps_serving_another() {
    let certs = Certs::new(&["p", "a", "b"]);
    let dir = certs.path().to_str().unwrap();
    let (p_addr, a_addr, b_addr) = (free_addr(), free_addr(), free_addr());
    let peer = format!("p@{p_addr}");
    let follow = ["--peer", peer.as_str(), "--subscribe", "t"];

    let mut p = node("p", &p_addr, dir, &[]);
    let epoch = p.expect("ready", |_| true)["epoch"].clone();
    let mut a = node("a", &a_addr, dir, &follow);
    let mut b = node("b", &b_addr, dir, &follow);
    for node in [&mut a, &mut b] {
        node.expect("connected", |v| v["outcome"] == "new");
    }
    for i in 0..5 {
        p.send(&format!("pub t m-{i}"));
    }
    for node in [&mut a, &mut b] {
        for _ in 0..5 {
            node.expect("message", |_| true);
        }
    }

    a.kill9();
    // The producer keeps serving b while a is dead and while its connection
    // to a waits for the idle timeout.
    for i in 5..10 {
        p.send(&format!("pub t m-{i}"));
    }
    for _ in 5..10 {
        b.expect("message", |_| true);
    }

    // Same name, same port: a fresh process has no cursor and starts at the head.
    let mut a = node("a", &a_addr, dir, &follow);
    a.expect("connected", |v| v["peer"] == "p" && v["outcome"] == "new");
    for i in 10..15 {
        p.send(&format!("pub t m-{i}"));
    }
    for node in [&mut a, &mut b] {
        while messages(&node.seen).last().map(|m| m.1) != Some(14) {
            node.expect("message", |_| true);
        }
    }
    let e = epoch.as_str().unwrap().to_owned();
    let expect = |range: std::ops::Range<u64>| -> Vec<(String, u64, String)> {
        range.map(|i| (e.clone(), i, format!("m-{i}"))).collect()
    };
    assert_eq!(
        messages(&a.seen),
        expect(10..15),
        "only what was published after it joined"
    );
    assert_eq!(
        messages(&b.seen),
        expect(0..15),
        "b: everything, gap-free, in order"
    );
    assert!(
        b.seen
            .iter()
            .all(|v| v["event"] != "disconnected" && v["event"] != "cursor_expired"),
        "{:?}",
        b.seen
    );
    assert!(a.seen.iter().all(|v| v["event"] != "cursor_expired"));

    // Every connected consumer acknowledges everything again.
    p.send("flush 5000");
    let f = p.expect("flushed", |_| true);
    assert_eq!(
        (&f["ok"], &f["lagging"]),
        (&Value::from(true), &serde_json::json!([]))
    );
}

// ---------------------------------------------------------------------------
// A consumer that never reads.

/// Resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// What a subscriber that keeps nothing but counts has seen.
#[derive(Default)]
struct Tally {
    checker: Checker,
    messages: u64,
    expiries: u64,
    /// Messages whose payload did not start with their own sequence number.
    corrupt: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_never_reads_slows_nobody_costs_bounded_memory_and_is_told_it_expired() {
    const PAYLOAD: usize = 8 << 10;
    const PER_ROUND: usize = 64;
    const CAPACITY: u64 = 1024;
    const ROUNDS: usize = 160; // 10 * CAPACITY messages, 80 MiB
    let certs = Certs::new(&["p", "a", "x"]);
    let p = config("p", certs.path())
        .capacity(CAPACITY as usize)
        .max_bytes(16 << 20)
        .max_message_size(16 << 10)
        .start()
        .await
        .unwrap();
    let limits = Limits {
        max_message_bytes: 16 << 10,
        ..Limits::DEFAULT
    };

    // `a` follows p and keeps only a tally: its memory does not grow.
    let mut a = config("a", certs.path())
        .peer("p", p.local_addr())
        .start()
        .await
        .unwrap();
    let mut status = a.take_status().unwrap();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut sub = a.subscribe(TOPIC);
    tokio::spawn({
        let tally = Arc::clone(&tally);
        async move {
            while let Some(event) = sub.recv().await {
                let mut t = tally.lock();
                t.checker.observe(&event);
                match &event {
                    NodeEvent::Message { seq, payload, .. } => {
                        t.messages += 1;
                        if payload.get(..8) != Some(&seq.to_be_bytes()[..]) {
                            t.corrupt += 1;
                        }
                    }
                    NodeEvent::CursorExpired { .. } => t.expiries += 1,
                    _ => {}
                }
            }
        }
    });
    let connected = tokio::time::timeout(T, status.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        connected,
        ringcast_net::PeerStatus::Connected {
            outcome: ConnectOutcome::New,
            ..
        }
    ));

    let published = AtomicU64::new(0);
    let mut payload = vec![0xA5u8; PAYLOAD];
    // One round: PER_ROUND publishes in a tight loop, timed; then wait until
    // `a` has everything, so that `a` alone can never be lapped.
    let round = |payload: &mut Vec<u8>| {
        let started = Instant::now();
        for _ in 0..PER_ROUND {
            payload[..8].copy_from_slice(&p.head().to_be_bytes());
            p.publish(TOPIC, payload).unwrap();
        }
        published.fetch_add(PER_ROUND as u64, Ordering::Relaxed);
        started.elapsed()
    };
    let caught_up = || {
        let n = published.load(Ordering::Relaxed);
        let tally = Arc::clone(&tally);
        async move { wait_for("a to catch up", T, || tally.lock().messages == n).await }
    };

    // Baseline: publish timings without the stalled consumer.
    let mut baseline = Vec::new();
    for _ in 0..16 {
        baseline.push(round(&mut payload));
        caught_up().await;
    }

    // `x`: completes the handshake, reads the answer, then stops reading.
    // Its receive windows are small, so it stalls the producer's sender for
    // it within the first round.
    let mut transport = quinn::TransportConfig::default();
    transport.stream_receive_window((64u32 << 10).into());
    transport.receive_window((128u32 << 10).into());
    transport.keep_alive_interval(Some(Duration::from_millis(100)));
    let client = NodeIdentity::load(certs.path(), "x")
        .unwrap()
        .client_config(Arc::new(transport))
        .unwrap();
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = endpoint
        .connect_with(client, p.local_addr(), "p")
        .unwrap()
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let mut hello = Vec::new();
    ringcast_net::proto::Encoder::new(limits)
        .encode(
            &ConsumerSession::new(None, AckPolicy::DEFAULT).hello("x"),
            &mut hello,
        )
        .unwrap();
    send.write_all(&hello).await.unwrap();
    let mut answer = [0u8; 21];
    recv.read_exact(&mut answer).await.unwrap();
    let mut decoder = Decoder::new(limits);
    decoder.push(&answer);
    let answer = decoder.next_frame().unwrap().expect("the handshake answer");
    let Frame::New { start_seq, .. } = answer else {
        panic!("answer {answer:?}");
    };
    assert_eq!(start_seq, p.head());

    // Publish ten times the ring while x is stalled.
    let rss_before = rss_kib();
    let mut rss_max = rss_before;
    let mut stalled = Vec::new();
    let started = Instant::now();
    for _ in 0..ROUNDS {
        stalled.push(round(&mut payload));
        caught_up().await;
        rss_max = rss_max.max(rss_kib());
    }
    let elapsed = started.elapsed();
    let head = p.head();
    assert!(head - start_seq >= 10 * CAPACITY);
    let (base, slow) = (median(baseline.clone()), median(stalled.clone()));
    let worst = *stalled.iter().max().unwrap();
    let grown_mib = (rss_max - rss_before) / 1024;
    let total_mib = (ROUNDS * PER_ROUND * PAYLOAD) >> 20;
    eprintln!(
        "published {total_mib} MiB in {elapsed:?} with x stalled; {PER_ROUND} publishes: \
         median {base:?} before, {slow:?} stalled, worst {worst:?}; RSS grew {grown_mib} MiB"
    );
    // The producer never waited for x: a round of publishes costs what it
    // did before x stalled (the slack absorbs scheduling noise on a shared
    // machine), and no round blocked.
    assert!(
        slow <= base * 3 + Duration::from_millis(2),
        "{slow:?} vs {base:?}"
    );
    assert!(
        worst < Duration::from_millis(500),
        "a round of publishes took {worst:?}"
    );
    // Bounded memory: the ring (16 MiB arena) and x's windows, not the
    // 80 MiB published while x stalled.
    assert!(
        grown_mib < 48,
        "RSS grew by {grown_mib} MiB while publishing {total_mib} MiB"
    );
    // `a` received everything, in order, never lapped, never disconnected.
    {
        let t = tally.lock();
        assert_eq!(t.messages, published.load(Ordering::Relaxed));
        assert_eq!((t.expiries, t.corrupt), (0, 0));
        assert!(
            t.checker.violations.is_empty(),
            "{:?}",
            t.checker.violations
        );
    }
    assert!(status.try_recv().is_err(), "a's link changed state");

    // x reads again: what was in its window, then an in-band expiry whose
    // counts add up, then the rest of the ring, gap-free.
    let mut session = ConsumerSession::new(None, AckPolicy::DEFAULT);
    let connected: Vec<Event> = session.handle(Instant::now(), answer).unwrap().collect();
    assert!(matches!(
        connected[..],
        [Event::Connected {
            outcome: Outcome::New,
            ..
        }]
    ));
    let (mut delivered, mut missed, mut expiries) = (0u64, 0u64, Vec::new());
    let deadline = Instant::now() + T;
    while session.cursor().unwrap().next_seq < head {
        assert!(
            Instant::now() < deadline,
            "x did not catch up: {:?}",
            session.cursor()
        );
        let chunk = tokio::time::timeout(T, recv.read_chunk(1 << 20, true))
            .await
            .unwrap()
            .unwrap()
            .expect("the stream goes on");
        decoder.push(&chunk.bytes);
        while let Some(frame) = decoder.next_frame().unwrap() {
            // The session refuses gaps and inconsistent expiries.
            for event in session.handle(Instant::now(), frame).unwrap() {
                match event {
                    Event::Message { seq, payload, .. } => {
                        assert_eq!(payload.len(), PAYLOAD);
                        assert_eq!(payload[..8], seq.to_be_bytes(), "payload of {seq}");
                        delivered += 1;
                    }
                    Event::CursorExpired {
                        missed: m,
                        resume_seq,
                        ..
                    } => {
                        missed += m;
                        expiries.push((m, resume_seq));
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
    }
    eprintln!("x: {delivered} delivered, {missed} missed, expiries {expiries:?}");
    assert!(
        !expiries.is_empty(),
        "the stalled consumer was never told it expired"
    );
    assert_eq!(
        delivered + missed,
        head - start_seq,
        "delivered + missed adds up"
    );
    // It was lapped by most of what was published while it stalled.
    assert!(missed >= head - start_seq - 2 * CAPACITY, "missed {missed}");
    conn.close(0u32.into(), b"done");
    p.shutdown().await;
    a.shutdown().await;
}
