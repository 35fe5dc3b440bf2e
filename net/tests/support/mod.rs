//! Shared support for the network tests: certificates, fast-failing node
//! configurations, event collectors and polling waits.

#![allow(dead_code)]

pub mod node_process;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ringcast_net::check::Checker;
use ringcast_net::{ConnectOutcome, Node, NodeBuilder, NodeEvent, PeerStatus};

pub const TOPIC: &str = "t";
pub const IDLE: Duration = Duration::from_millis(500);

/// A fresh directory with certificates for `names`, removed on drop.
pub struct Certs {
    pub dir: PathBuf,
}

impl Certs {
    pub fn new(names: &[&str]) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ringcast-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        ringcast_net::tls::generate(&dir, &names).expect("certificates");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A node configuration that notices cuts and reconnects quickly.
pub fn config(name: &str, certs: &Path) -> NodeBuilder {
    Node::builder(name)
        .certs(certs)
        .capacity(64)
        .max_bytes(1 << 20)
        .max_message_size(8192)
        .idle_timeout(IDLE)
        .keep_alive(Duration::from_millis(100))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
}

/// Everything one subscription and one node's status stream delivered.
#[derive(Default)]
pub struct Log {
    pub events: Vec<NodeEvent>,
    pub checker: Checker,
    pub status: Vec<PeerStatus>,
}

impl Log {
    /// `(seq, payload)` of the messages from `from`, in delivery order.
    pub fn messages(&self, from: &str) -> Vec<(u64, String)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                NodeEvent::Message {
                    from: f,
                    seq,
                    payload,
                    ..
                } if &**f == from => Some((*seq, String::from_utf8_lossy(payload).into_owned())),
                _ => None,
            })
            .collect()
    }

    pub fn expiries(&self) -> Vec<NodeEvent> {
        self.events
            .iter()
            .filter(|e| matches!(e, NodeEvent::CursorExpired { .. }))
            .cloned()
            .collect()
    }

    pub fn connects(&self) -> Vec<ConnectOutcome> {
        self.status
            .iter()
            .filter_map(|s| match s {
                PeerStatus::Connected { outcome, .. } => Some(*outcome),
                _ => None,
            })
            .collect()
    }

    pub fn disconnects(&self) -> usize {
        self.status
            .iter()
            .filter(|s| matches!(s, PeerStatus::Disconnected { .. }))
            .count()
    }
}

/// Collects a node's subscription to `topic` and its status events.
pub fn collect(node: &mut Node, topic: &str) -> Arc<Mutex<Log>> {
    let log = Arc::new(Mutex::new(Log::default()));
    let mut sub = node.subscribe(topic);
    let l = Arc::clone(&log);
    tokio::spawn(async move {
        while let Some(event) = sub.recv().await {
            let mut log = l.lock();
            log.checker.observe(&event);
            log.events.push(event);
        }
    });
    if let Some(mut status) = node.take_status() {
        let l = Arc::clone(&log);
        tokio::spawn(async move {
            while let Some(s) = status.recv().await {
                l.lock().status.push(s);
            }
        });
    }
    log
}

/// Polls `cond` until it holds, or panics with `what` after `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Publishes `label-0 .. label-(n-1)` on `TOPIC`; returns the sequence numbers.
pub fn publish(node: &Node, n: usize, label: &str) -> Vec<u64> {
    (0..n)
        .map(|i| {
            node.publish(TOPIC, format!("{label}-{i}").as_bytes())
                .expect("publish")
        })
        .collect()
}

/// Starts node `name` following the producer `p` at `addr` (directly or
/// through a proxy), collects its subscription to `TOPIC`, and waits until
/// it is connected.
pub async fn follower(
    name: &str,
    certs: &Path,
    addr: std::net::SocketAddr,
) -> (Node, Arc<Mutex<Log>>) {
    let mut node = config(name, certs)
        .peer("p", addr)
        .start()
        .await
        .expect("start a follower");
    let log = collect(&mut node, TOPIC);
    wait_for("a follower to connect", Duration::from_secs(10), || {
        !log.lock().connects().is_empty()
    })
    .await;
    (node, log)
}
