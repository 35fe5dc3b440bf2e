//! A ringcast node: publishes on topics through its own ring, and follows
//! every peer's ring over QUIC.
//!
//! # What a subscriber observes
//!
//! For each producer it follows (each peer, and this node itself), a
//! [`Subscription`] yields [`NodeEvent::Message`]s in sequence order, each
//! exactly once, with no silent gap: the sequence only jumps forward through
//! a [`NodeEvent::CursorExpired`] that says how many messages were missed
//! and where delivery resumed. That happens when
//!
//! * the node was disconnected (or slow) for longer than the producer's
//!   ring holds: the missed messages were overwritten;
//! * the producer restarted: its ring, and with it the messages the node had
//!   not received, is gone. The event's `epoch` is the new producer epoch.
//!
//! A link that breaks and heals within the ring's reach is caught up
//! transparently: the node resumes from its own cursor, and messages that
//! were in flight are re-sent and de-duplicated.
//!
//! A node that connects for the first time sees only messages published
//! after it connected. Publishing never waits for any consumer: a stalled
//! peer only falls behind until it expires.
//!
//! Direct messages ([`Node::send_direct`]) bypass the ring: they are
//! unbuffered and best-effort (lost if the target is not connected or not
//! keeping up), carry no sequence number, and never affect any sequence.

mod consumer;
mod dispatch;
mod endpoint;
mod producer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ringcast_core::bytes as ring;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

pub use dispatch::Subscription;

use crate::proto::{Limits, Name};
use dispatch::Dispatch;

/// An event a [`Subscription`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// A message, in order after everything before it from the same
    /// producer epoch (or after a `CursorExpired` from that producer).
    Message {
        /// The producing node's name.
        from: Name,
        /// The producer's epoch (random per producer start).
        epoch: u64,
        /// The message's sequence number in the producer's ring, from 0.
        seq: u64,
        /// The topic it was published on.
        topic: Name,
        /// The payload. From a peer, it is a slice of the buffer it was
        /// received in, not a copy: keeping it keeps that buffer (up to
        /// about 64 KiB) alive, so copy out (`Bytes::copy_from_slice`) the
        /// few payloads kept for long.
        payload: Bytes,
    },
    /// Messages from `from` were lost: `missed` of them, up to `resume_seq`,
    /// where delivery continues (in epoch `epoch`).
    CursorExpired {
        /// The producing node's name.
        from: Name,
        /// The epoch delivery continues in; differs from the previous
        /// messages' epoch when the producer restarted.
        epoch: u64,
        /// How many messages were skipped (for a restart: of the new epoch
        /// only; what the old epoch had not sent is unknowable).
        missed: u64,
        /// The sequence number delivery resumes at.
        resume_seq: u64,
    },
    /// A direct message to this node: outside any sequence, unbuffered.
    Direct {
        /// The sending node's name.
        from: Name,
        /// The topic.
        topic: Name,
        /// The payload.
        payload: Bytes,
    },
}

impl NodeEvent {
    /// The topic of a message, `None` for an expiry (it concerns every
    /// topic of its producer).
    pub fn topic(&self) -> Option<&str> {
        match self {
            NodeEvent::Message { topic, .. } | NodeEvent::Direct { topic, .. } => Some(topic),
            NodeEvent::CursorExpired { .. } => None,
        }
    }
}

/// How a connection to a peer began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectOutcome {
    /// First connection: delivery starts at the peer's head.
    New,
    /// Reconnection within the ring's reach: delivery resumes gap-free.
    Resumed,
    /// Reconnection too late, or the peer restarted: messages were missed.
    Expired,
}

impl ConnectOutcome {
    /// `"new"`, `"resumed"` or `"expired"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectOutcome::New => "new",
            ConnectOutcome::Resumed => "resumed",
            ConnectOutcome::Expired => "expired",
        }
    }
}

/// Changes in this node's links to the peers it follows.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerStatus {
    /// Connected to `peer` and streaming.
    Connected {
        /// The peer's name.
        peer: String,
        /// How the stream began.
        outcome: ConnectOutcome,
        /// How long this connection took to set up: from dialing the peer
        /// to its answer to the hello (QUIC and TLS handshakes included).
        /// The wait before the attempt, while the node backs off, is not.
        handshake: Duration,
    },
    /// The link to `peer` is down; the node keeps retrying.
    Disconnected {
        /// The peer's name.
        peer: String,
        /// Why, in a few words.
        reason: String,
    },
}

/// What a [`Node::flush`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushReport {
    /// Whether every connected consumer acknowledged everything published
    /// before the call, within the timeout.
    pub ok: bool,
    /// The connected consumers that had not, by name (sorted).
    pub lagging: Vec<String>,
}

/// Errors of node operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Certificates could not be loaded or used.
    #[error("tls setup failed: {0}")]
    Tls(String),
    /// The UDP socket could not be set up.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// A topic longer than 255 bytes, or empty.
    #[error("invalid topic: {0}")]
    Topic(String),
    /// A payload above the maximum message size; nothing was published.
    #[error("message of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The payload's length (topic included).
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A direct message to a node that is not connected to this one.
    #[error("node {0} is not connected as a consumer of this node")]
    NotConnected(String),
    /// A direct message that could not be queued: the target is not keeping
    /// up. Direct messages are unbuffered; it was dropped.
    #[error("direct message to {0} dropped: the connection is not keeping up")]
    DirectBusy(String),
    /// The node is shutting down.
    #[error("node is shut down")]
    Shutdown,
}

/// Builds a [`Node`]. Every setter states its default.
#[derive(Debug, Clone)]
pub struct NodeBuilder {
    pub(crate) name: String,
    pub(crate) listen: SocketAddr,
    pub(crate) peers: Vec<(String, SocketAddr)>,
    pub(crate) certs: Option<PathBuf>,
    pub(crate) capacity: usize,
    pub(crate) max_bytes: usize,
    pub(crate) max_message_size: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) keep_alive: Option<Duration>,
    pub(crate) cursor_ttl: Duration,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
    pub(crate) initial_rtt: Duration,
    pub(crate) subscription_buffer: usize,
}

impl NodeBuilder {
    /// A node called `name` (its certificate's name), listening on
    /// 127.0.0.1 on a port the system picks.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            peers: Vec::new(),
            certs: None,
            capacity: 65_536,
            max_bytes: 64 << 20,
            max_message_size: 1 << 20,
            idle_timeout: Duration::from_secs(10),
            keep_alive: None,
            cursor_ttl: Duration::from_secs(60),
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_secs(2),
            initial_rtt: Duration::from_millis(333),
            subscription_buffer: 4096,
        }
    }

    /// The UDP address to listen on (and dial from). Default 127.0.0.1:0.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Follows the peer `name` at `addr`. Default: no peers.
    pub fn peer(mut self, name: impl Into<String>, addr: SocketAddr) -> Self {
        self.peers.push((name.into(), addr));
        self
    }

    /// The directory made by `ringcast cert`: `ca.crt`, `NAME.crt`,
    /// `NAME.key`. Required.
    pub fn certs(mut self, dir: impl Into<PathBuf>) -> Self {
        self.certs = Some(dir.into());
        self
    }

    /// Messages the ring holds (rounded up to a power of two). Default 65536.
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Payload bytes the ring holds. Default 64 MiB.
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Largest message (topic + payload) accepted. Default 1 MiB; at most
    /// `max_bytes`.
    pub fn max_message_size(mut self, max: usize) -> Self {
        self.max_message_size = max;
        self
    }

    /// A connection silent this long is dead. Default 10 s.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Keep-alive interval. Default a third of the idle timeout.
    pub fn keep_alive(mut self, interval: Duration) -> Self {
        self.keep_alive = Some(interval);
        self
    }

    /// How long the record of a disconnected consumer is kept. Default 60 s.
    pub fn cursor_ttl(mut self, ttl: Duration) -> Self {
        self.cursor_ttl = ttl;
        self
    }

    /// Reconnect backoff: first delay and cap, doubling with ±50% jitter.
    /// Default 50 ms and 2 s.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max.max(min);
        self
    }

    /// The round-trip time assumed for a peer before one is measured. It
    /// sets how soon a lost handshake packet is resent: about three times
    /// this, then doubling. A connection attempt begun while the network
    /// was partitioned notices the heal at its next resend, so on a LAN a
    /// few milliseconds let a consumer return within milliseconds of a
    /// heal instead of a second or more. Too low for the real path costs a
    /// few spurious resends. Default 333 ms (RFC 9002); must be positive.
    pub fn initial_rtt(mut self, rtt: Duration) -> Self {
        self.initial_rtt = rtt;
        self
    }

    /// Events a subscription buffers before delivery waits. Default 4096.
    pub fn subscription_buffer(mut self, events: usize) -> Self {
        self.subscription_buffer = events;
        self
    }

    /// Starts the node: binds the socket, starts accepting consumers and
    /// dialing peers. Must run inside a tokio runtime.
    pub async fn start(self) -> Result<Node, NodeError> {
        Node::start(self).await
    }
}

/// State shared by the node's tasks.
pub(crate) struct Inner {
    pub(crate) name: Name,
    pub(crate) epoch: u64,
    pub(crate) config: NodeBuilder,
    pub(crate) limits: Limits,
    pub(crate) publisher: parking_lot::Mutex<ring::BytePublisher>,
    pub(crate) ring: ring::ByteHandle,
    pub(crate) dispatch: Dispatch,
    pub(crate) records: producer::Records,
    pub(crate) status: mpsc::Sender<PeerStatus>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) client_config: quinn::ClientConfig,
}

impl Inner {
    pub(crate) fn report(&self, status: PeerStatus) {
        if self.status.try_send(status).is_err() {
            tracing::debug!("peer status dropped: nobody is reading them");
        }
    }
}

/// A running node. Dropping it stops its tasks; [`Node::shutdown`] does so
/// gracefully.
pub struct Node {
    inner: Arc<Inner>,
    shutdown: watch::Sender<bool>,
    tasks: tokio::sync::Mutex<JoinSet<()>>,
    status: Option<mpsc::Receiver<PeerStatus>>,
    local_addr: SocketAddr,
}

impl Node {
    /// Starts building a node called `name`.
    pub fn builder(name: impl Into<String>) -> NodeBuilder {
        NodeBuilder::new(name)
    }

    async fn start(config: NodeBuilder) -> Result<Node, NodeError> {
        let certs = config
            .certs
            .clone()
            .ok_or_else(|| NodeError::Config("a certificate directory is required".into()))?;
        crate::tls::validate_node_name(&config.name)
            .map_err(|e| NodeError::Config(e.to_string()))?;
        if config.max_message_size > config.max_bytes {
            return Err(NodeError::Config(format!(
                "max message size {} exceeds max bytes {}",
                config.max_message_size, config.max_bytes
            )));
        }
        let (publisher, _) = ring::channel(
            ring::Config::new()
                .capacity(config.capacity)
                .max_bytes(config.max_bytes)
                .max_message_size(config.max_message_size),
        )
        .map_err(|e| NodeError::Config(e.to_string()))?;
        let (endpoint, client_config) = endpoint::bind(&config, &certs)?;
        let local_addr = endpoint.local_addr().map_err(|source| NodeError::Listen {
            addr: config.listen,
            source,
        })?;
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let (status_tx, status_rx) = mpsc::channel(1024);
        let epoch = rand::random::<u64>();
        let limits = Limits {
            max_message_bytes: config.max_message_size as u32,
            ..Limits::default()
        };
        let inner = Arc::new(Inner {
            name: config.name.as_str().into(),
            epoch,
            limits,
            ring: publisher.handle(),
            publisher: parking_lot::Mutex::new(publisher),
            dispatch: Dispatch::new(config.subscription_buffer),
            records: producer::Records::default(),
            status: status_tx,
            shutdown: shutdown_rx,
            endpoint,
            client_config,
            config,
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(producer::accept_loop(Arc::clone(&inner)));
        tasks.spawn(producer::local_pump(Arc::clone(&inner)));
        tasks.spawn(producer::janitor(Arc::clone(&inner)));
        for (name, addr) in inner.config.peers.clone() {
            tasks.spawn(consumer::follow(Arc::clone(&inner), name.into(), addr));
        }
        tracing::info!(node = %inner.name, epoch = format_args!("{epoch:016x}"), %local_addr, "node started");
        Ok(Node {
            inner,
            shutdown: shutdown_tx,
            tasks: tokio::sync::Mutex::new(tasks),
            status: Some(status_rx),
            local_addr,
        })
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// This node's epoch: random, drawn at start.
    pub fn epoch(&self) -> u64 {
        self.inner.epoch
    }

    /// The address the node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Publishes `payload` on `topic` and returns its sequence number.
    /// Never waits for any consumer.
    pub fn publish(&self, topic: &str, payload: &[u8]) -> Result<u64, NodeError> {
        let header = topic_header(topic)?;
        let len = 1 + topic.len() + payload.len();
        let mut publisher = self.inner.publisher.lock();
        publisher
            .publish_vectored(&[&header, topic.as_bytes(), payload])
            .map_err(|e| NodeError::TooLarge { len, max: e.max })
    }

    /// Subscribes to `topic`: messages from this node and from every peer it
    /// follows, from now on.
    pub fn subscribe(&self, topic: &str) -> Subscription {
        // Read before subscribing: local delivery starts no later than here.
        let head = self.inner.ring.head();
        self.inner.dispatch.subscribe(topic, head)
    }

    /// Sends `payload` on `topic` to the node `to` only, if it is connected
    /// as a consumer of this node. Unbuffered and outside every sequence:
    /// see the module docs.
    pub fn send_direct(&self, to: &str, topic: &str, payload: &[u8]) -> Result<(), NodeError> {
        topic_header(topic)?;
        if 1 + topic.len() + payload.len() > self.inner.config.max_message_size {
            return Err(NodeError::TooLarge {
                len: 1 + topic.len() + payload.len(),
                max: self.inner.config.max_message_size,
            });
        }
        self.inner
            .records
            .send_direct(to, topic, Bytes::copy_from_slice(payload))
    }

    /// Waits until every connected consumer has acknowledged every message
    /// published before this call, or `timeout` passes; says who lagged.
    pub async fn flush(&self, timeout: Duration) -> FlushReport {
        let head = self.inner.ring.head();
        self.inner.records.flush(head, timeout).await
    }

    /// How many consumer cursor records this node holds (connected consumers
    /// and recently disconnected ones within their time-to-live).
    pub fn cursor_records(&self) -> usize {
        self.inner.records.len()
    }

    /// The sequence number this node's next publish takes.
    pub fn head(&self) -> u64 {
        self.inner.ring.head()
    }

    /// The peer status events (connected, disconnected). Can be taken once.
    pub fn take_status(&mut self) -> Option<mpsc::Receiver<PeerStatus>> {
        self.status.take()
    }

    /// Stops accepting and dialing, closes every connection and waits for
    /// the node's tasks to end. Publishing afterwards still works locally
    /// but reaches nobody.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        self.inner.endpoint.close(
            quinn::VarInt::from_u32(crate::proto::ErrorCode::Shutdown.as_u32()),
            b"shutdown",
        );
        let mut tasks = self.tasks.lock().await;
        while tasks.join_next().await.is_some() {}
        drop(tasks);
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.endpoint.wait_idle()).await;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.inner.endpoint.close(
            quinn::VarInt::from_u32(crate::proto::ErrorCode::Shutdown.as_u32()),
            b"shutdown",
        );
        self.tasks.get_mut().abort_all();
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.inner.name)
            .field("epoch", &format_args!("{:016x}", self.inner.epoch))
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

/// The one-byte topic length that starts every ring entry.
fn topic_header(topic: &str) -> Result<[u8; 1], NodeError> {
    match u8::try_from(topic.len()) {
        Ok(0) => Err(NodeError::Topic("empty".into())),
        Ok(len) => Ok([len]),
        Err(_) => Err(NodeError::Topic(format!(
            "{} bytes, the maximum is 255",
            topic.len()
        ))),
    }
}

/// Why a link to a peer ended (internal; reported as text).
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("cannot connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("{0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("read failed: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("write failed: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("stream closed: {0}")]
    Closed(#[from] quinn::ClosedStream),
    #[error("{0}")]
    Protocol(crate::proto::ProtocolError),
    #[error("{0}")]
    Decode(crate::proto::DecodeError),
    #[error("cannot encode: {0}")]
    Encode(String),
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("the peer finished its stream")]
    Finished,
    #[error("the peer's certificate carries no node name")]
    NoPeerName,
}

/// Closes `conn` with `code`, logs why, and hands the error back.
pub(crate) fn close(
    conn: &quinn::Connection,
    code: crate::proto::ErrorCode,
    error: LinkError,
) -> LinkError {
    tracing::warn!(remote = %conn.remote_address(), code = code.as_u32(), %error, "closing connection");
    conn.close(
        quinn::VarInt::from_u32(code.as_u32()),
        code.reason().as_bytes(),
    );
    error
}
