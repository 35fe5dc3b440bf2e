//! Hostile input against a real node over QUIC on loopback.
//!
//! What every test here checks, besides its own case: a legitimate consumer
//! node connected to the same producer keeps receiving every message,
//! gap-free and in order, without a disconnect, while the hostile peers come
//! and go; and nothing in the process panics (a panic hook counts panics on
//! every thread, the node's tasks included).
//!
//! - Peers without a valid client certificate (one from another CA, or none
//!   at all) are refused by the TLS handshake, 1,000 times in a row, before
//!   any frame is read, and leave no consumer record behind.
//! - A wrong ALPN (or none) is refused by the TLS handshake.
//! - A peer with a valid certificate that sends hostile bytes has its
//!   connection closed with exactly the application error code PROTOCOL.md
//!   documents: unknown version 2, oversized length prefixes 3 (without
//!   allocating what they claim), a stream that ends inside a frame 6, a
//!   name that is not its certificate's 4, a cursor from the future 5, an
//!   ack beyond what was sent (or below an earlier one) 1, random garbage
//!   the code the sans-IO codec assigns to it.
//! - A hostile *producer* (a fake server with the producer's certificate)
//!   that sends a gap, an inconsistent lap or handshake answer, an oversized
//!   or truncated frame, or garbage is refused by the consumer node with the
//!   documented code; the node never delivers past a gap and reconnects with
//!   its cursor still at the first missing message.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use ringcast_net::proto::{
    Cursor, Decoder, Encoder, ErrorCode, Frame, Limits, ProducerSession, RingView, PROTOCOL_VERSION,
};
use ringcast_net::tls::{NodeIdentity, ALPN};
use ringcast_net::{ConnectOutcome, Node};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use support::*;
use tokio::task::JoinHandle;

const T: Duration = Duration::from_secs(10);
/// How long a hostile connection may take to be closed.
const CLOSE: Duration = Duration::from_secs(5);
/// The limits of the nodes `support::config` builds (8 KiB messages).
const LIMITS: Limits = Limits {
    max_message_bytes: 8192,
    ..Limits::DEFAULT
};

// ---------------------------------------------------------------------------
// Panics anywhere in the process.

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts the panics of runtime worker threads, where the nodes' tasks run
/// (a test's own assertions fail on the test's thread and are not counted).
fn watch_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some("tokio-runtime-worker") {
                PANICS.fetch_add(1, Ordering::Relaxed);
            }
            previous(info);
        }));
    });
}

fn assert_no_panics() {
    assert_eq!(
        PANICS.load(Ordering::Relaxed),
        0,
        "a task panicked on a runtime worker (see stderr)"
    );
}

// ---------------------------------------------------------------------------
// A producer, a legitimate consumer, and a steady stream of messages.

struct Fixture {
    certs: Certs,
    p: Arc<Node>,
    /// The legitimate consumer; kept alive for the log.
    _a: Node,
    log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
    published: Arc<AtomicUsize>,
    ticker: JoinHandle<()>,
}

impl Fixture {
    /// Producer `p`, consumer `a` following it, and a task publishing
    /// `m-0, m-1, ...` on `TOPIC` every millisecond. `extra` names more
    /// certificates to issue from the same CA.
    async fn start(extra: &[&str]) -> Self {
        watch_panics();
        let mut names = vec!["p", "a"];
        names.extend_from_slice(extra);
        let certs = Certs::new(&names);
        // A ring far larger than what the test publishes: the legitimate
        // consumer can never be lapped, so any gap would be a real loss.
        let p = config("p", certs.path())
            .capacity(1 << 16)
            .max_bytes(16 << 20)
            .start()
            .await
            .unwrap();
        let mut a = config("a", certs.path())
            .peer("p", p.local_addr())
            .start()
            .await
            .unwrap();
        let log = collect(&mut a, TOPIC);
        wait_for("the legitimate consumer", T, || {
            log.lock().connects() == [ConnectOutcome::New]
        })
        .await;
        let p = Arc::new(p);
        let stop = Arc::new(AtomicBool::new(false));
        let published = Arc::new(AtomicUsize::new(0));
        let ticker = tokio::spawn({
            let (p, stop, published) = (Arc::clone(&p), Arc::clone(&stop), Arc::clone(&published));
            async move {
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    p.publish(TOPIC, format!("m-{i}").as_bytes()).unwrap();
                    i += 1;
                    published.store(i, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        Self {
            certs,
            p,
            _a: a,
            log,
            stop,
            published,
            ticker,
        }
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.p.local_addr()
    }

    fn delivered(&self) -> usize {
        self.log.lock().messages("p").len()
    }

    /// Waits until the consumer has received a message published after now:
    /// delivery is still flowing.
    async fn still_flowing(&self, what: &str) {
        let target = self.published.load(Ordering::Relaxed) + 1;
        wait_for(what, T, || self.delivered() >= target).await;
    }

    /// Stops publishing and checks that the legitimate consumer got every
    /// message exactly once, in order, on one unbroken connection.
    async fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.ticker.await.unwrap();
        let n = self.published.load(Ordering::Relaxed);
        assert!(n > 0);
        let log = self.log;
        wait_for("every message", T, || log.lock().messages("p").len() == n).await;
        let log = log.lock();
        let expected: Vec<(u64, String)> = (0..n).map(|i| (i as u64, format!("m-{i}"))).collect();
        assert!(log.messages("p") == expected, "gap, duplicate or reorder");
        assert!(log.expiries().is_empty(), "{:?}", log.expiries());
        assert!(
            log.checker.violations.is_empty(),
            "{:?}",
            log.checker.violations
        );
        assert_eq!(log.connects(), [ConnectOutcome::New]);
        assert_eq!(
            log.disconnects(),
            0,
            "the legitimate consumer was disconnected"
        );
        drop(log);
        assert_no_panics();
    }
}

// ---------------------------------------------------------------------------
// Raw QUIC clients.

fn client_transport() -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(5)).unwrap(),
    ));
    Arc::new(transport)
}

fn client_endpoint() -> quinn::Endpoint {
    quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap()
}

/// A client with `name`'s valid certificate from `dir`.
fn valid_client(dir: &Path, name: &str) -> quinn::ClientConfig {
    NodeIdentity::load(dir, name)
        .unwrap()
        .client_config(client_transport())
        .unwrap()
}

/// A client trusting the CA in `ca_dir`, presenting `cert` (`(dir, name)`:
/// `dir/name.crt` and `.key`) or no certificate, and offering `alpn`.
fn custom_client(
    ca_dir: &Path,
    cert: Option<(&Path, &str)>,
    alpn: &[&[u8]],
) -> quinn::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca_dir.join("ca.crt")).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots);
    let mut crypto = match cert {
        Some((dir, name)) => {
            let chain = CertificateDer::pem_file_iter(dir.join(format!("{name}.crt")))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key"))).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    crypto.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(client_transport());
    config
}

fn hello(node: &str, resume: Option<Cursor>) -> Vec<u8> {
    encode(&Frame::Hello {
        version: PROTOCOL_VERSION,
        node: node.into(),
        resume,
    })
}

fn encode(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    Encoder::new(LIMITS).encode(frame, &mut out).unwrap();
    out
}

/// How a connection attempt without valid credentials ended.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    /// The TLS handshake failed with this alert (QUIC CRYPTO_ERROR 0x100 + alert).
    Tls(u8),
    /// Anything else: a test failure.
    Other(String),
}

/// Tries to connect to the producer with `config` and, if the client side
/// of the handshake completes, to speak: returns how it was refused. Panics
/// if any frame comes back.
async fn attempt(
    endpoint: &quinn::Endpoint,
    config: quinn::ClientConfig,
    addr: std::net::SocketAddr,
) -> Refusal {
    let connecting = endpoint.connect_with(config, addr, "p").unwrap();
    let error = match tokio::time::timeout(CLOSE, connecting).await {
        Err(_) => return Refusal::Other("handshake timed out".into()),
        Ok(Err(error)) => error,
        Ok(Ok(conn)) => {
            // TLS 1.3: the client finishes its side before the server has
            // judged its certificate; the verdict arrives as a close.
            let spoke = tokio::time::timeout(CLOSE, async {
                let (mut send, mut recv) = conn.open_bi().await?;
                send.write_all(&hello("a", None)).await?;
                let chunk = recv.read_chunk(1024, true).await?;
                Ok::<_, anyhow::Error>(chunk)
            })
            .await;
            if let Ok(Ok(Some(chunk))) = spoke {
                panic!(
                    "a peer without valid credentials got {} bytes",
                    chunk.bytes.len()
                );
            }
            match conn.close_reason() {
                Some(error) => error,
                None => return Refusal::Other(format!("not closed: {spoke:?}")),
            }
        }
    };
    match error {
        quinn::ConnectionError::ConnectionClosed(close) => {
            let code = u64::from(close.error_code);
            match u8::try_from(code.wrapping_sub(0x100)) {
                Ok(alert) if code >= 0x100 => Refusal::Tls(alert),
                _ => Refusal::Other(format!("{close:?}")),
            }
        }
        other => Refusal::Other(other.to_string()),
    }
}

/// TLS alert numbers (RFC 8446).
const CERTIFICATE_REQUIRED: u8 = 116;
/// A certificate from another cluster made by `ringcast cert`: its issuer has
/// the same name as this cluster's CA, so the chain is built and its
/// signature fails to verify.
const DECRYPT_ERROR: u8 = 51;
const NO_APPLICATION_PROTOCOL: u8 = 120;

/// A connection with a valid certificate: opens its stream and writes
/// `bytes` (finishing the stream if `finish`), then returns the
/// application error code the producer closes it with.
async fn close_code(
    endpoint: &quinn::Endpoint,
    config: &quinn::ClientConfig,
    addr: std::net::SocketAddr,
    bytes: &[u8],
    finish: bool,
) -> u64 {
    let conn = endpoint
        .connect_with(config.clone(), addr, "p")
        .unwrap()
        .await
        .expect("a valid certificate is accepted");
    let (mut send, _recv) = conn.open_bi().await.unwrap();
    send.write_all(bytes).await.unwrap();
    if finish {
        send.finish().unwrap();
    }
    application_close(&conn).await
}

/// Waits for `conn` to be closed by its peer and returns the application
/// error code; panics on any other ending (an idle timeout in particular).
async fn application_close(conn: &quinn::Connection) -> u64 {
    match tokio::time::timeout(CLOSE, conn.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(close)) => close.error_code.into_inner(),
        Ok(other) => panic!("closed otherwise: {other}"),
        Err(_) => panic!("not closed within {CLOSE:?}"),
    }
}

/// Resident set size of this process, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

// ---------------------------------------------------------------------------
// Certificates and ALPN.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_peers_without_a_valid_certificate_are_refused_while_a_consumer_is_served() {
    let fx = Fixture::start(&[]).await;
    // The same node names, issued by another CA.
    let rogue = Certs::new(&["a", "x"]);
    let other_ca = custom_client(fx.certs.path(), Some((rogue.path(), "x")), &[ALPN]);
    // Impersonating the legitimate consumer changes nothing either.
    let other_ca_as_a = custom_client(fx.certs.path(), Some((rogue.path(), "a")), &[ALPN]);
    let no_cert = custom_client(fx.certs.path(), None, &[ALPN]);
    let endpoint = client_endpoint();
    let delivered_before = fx.delivered();
    let started = Instant::now();

    const ATTEMPTS: usize = 1000;
    const CONCURRENCY: usize = 50;
    let gate = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut attempts = tokio::task::JoinSet::new();
    for i in 0..ATTEMPTS {
        let (config, expected) = match i % 3 {
            0 => (other_ca.clone(), DECRYPT_ERROR),
            1 => (other_ca_as_a.clone(), DECRYPT_ERROR),
            _ => (no_cert.clone(), CERTIFICATE_REQUIRED),
        };
        let (endpoint, addr) = (endpoint.clone(), fx.addr());
        let permit = Arc::clone(&gate).acquire_owned().await.unwrap();
        attempts.spawn(async move {
            let refusal = attempt(&endpoint, config, addr).await;
            drop(permit);
            (i, refusal, expected)
        });
    }
    let mut refused = 0;
    while let Some(done) = attempts.join_next().await {
        let (i, refusal, expected) = done.unwrap();
        assert_eq!(refusal, Refusal::Tls(expected), "attempt {i}");
        refused += 1;
    }
    let elapsed = started.elapsed();
    assert_eq!(refused, ATTEMPTS);
    // Served throughout: delivery went on during the attempts, and goes on.
    assert!(
        fx.delivered() > delivered_before,
        "no delivery during the attempts"
    );
    fx.still_flowing("delivery after the attempts").await;
    // No refused peer left a consumer record: only `a` has one.
    assert_eq!(fx.p.cursor_records(), 1);
    eprintln!("{ATTEMPTS} refused connection attempts in {elapsed:?}");
    fx.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_alpn_is_refused() {
    let fx = Fixture::start(&["x"]).await;
    let endpoint = client_endpoint();
    let alpns: [&[&[u8]]; 3] = [&[b"ringcast/2"], &[b"h3"], &[]];
    for alpn in alpns {
        let config = custom_client(fx.certs.path(), Some((fx.certs.path(), "x")), alpn);
        assert_eq!(
            attempt(&endpoint, config, fx.addr()).await,
            Refusal::Tls(NO_APPLICATION_PROTOCOL),
            "ALPN {alpn:?}"
        );
    }
    // The same certificate with the right ALPN is accepted: the refusals
    // above were the ALPN's doing.
    let config = custom_client(fx.certs.path(), Some((fx.certs.path(), "x")), &[ALPN]);
    let conn = endpoint
        .connect_with(config, fx.addr(), "p")
        .unwrap()
        .await
        .unwrap();
    assert_eq!(
        conn.handshake_data().and_then(|d| {
            d.downcast::<quinn::crypto::rustls::HandshakeData>()
                .ok()?
                .protocol
        }),
        Some(ALPN.to_vec())
    );
    conn.close(0u32.into(), b"bye");
    fx.still_flowing("delivery").await;
    fx.finish().await;
}

// ---------------------------------------------------------------------------
// Hostile frames from a peer with a valid certificate.

/// The code the sans-IO protocol assigns to a consumer that sends `bytes`
/// and then finishes its stream, or `None` if they make a valid hello.
fn sans_io_code(bytes: &[u8], epoch: u64, view: RingView) -> Option<u64> {
    let mut decoder = Decoder::new(LIMITS);
    decoder.push(bytes);
    let code = match decoder.next_frame() {
        Err(e) => e.code(),
        Ok(None) => decoder.finish().err()?.code(),
        Ok(Some(frame)) => ProducerSession::new(epoch)
            .handle_hello(frame, view, "x")
            .err()?
            .code(),
    };
    Some(code.as_u32().into())
}

/// A small deterministic xorshift generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Garbage of three shapes: random bytes; a known non-hello type with a
/// consistent length and a random body; a hello header with a random body.
fn garbage(rng: &mut Rng, i: usize) -> Vec<u8> {
    let len = 1 + (rng.next() % 48) as usize;
    match i % 3 {
        0 => rng.bytes(len),
        1 => {
            let ty = 2 + (rng.next() % 7) as u8; // New ..= Ack
                                                 // Fixed-size frames get their exact size, so that they decode.
            let body = match ty {
                2 | 3 | 6 => rng.bytes(16),
                4 => rng.bytes(24),
                8 => rng.bytes(8),
                _ => rng.bytes(len),
            };
            let mut out = vec![ty];
            out.extend_from_slice(&(body.len() as u32).to_be_bytes());
            out.extend_from_slice(&body);
            out
        }
        _ => {
            let body = rng.bytes(len);
            let mut out = vec![1];
            out.extend_from_slice(&(body.len() as u32).to_be_bytes());
            out.extend_from_slice(&body);
            out
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_frames_close_only_their_connection_with_the_documented_code() {
    let fx = Fixture::start(&["x"]).await;
    let endpoint = client_endpoint();
    let x = valid_client(fx.certs.path(), "x");
    let addr = fx.addr();
    let epoch = fx.p.epoch();
    let code = |c: ErrorCode| u64::from(c.as_u32());
    let rss_before = rss_kib();

    let mut version_2 = hello("x", None);
    version_2[6] = 2; // the low byte of the version, right after the header
    let mut too_large_hello = vec![1];
    too_large_hello.extend_from_slice(&1025u32.to_be_bytes());
    let whole_hello = hello("x", None);
    let future = Cursor {
        epoch,
        next_seq: fx.p.head() + 1_000_000,
    };
    let cases: Vec<(&str, Vec<u8>, bool, ErrorCode)> = vec![
        (
            "hello of version 2",
            version_2,
            false,
            ErrorCode::UnsupportedVersion,
        ),
        (
            "length prefix 0xFFFF_FFFF on a message",
            vec![5, 0xFF, 0xFF, 0xFF, 0xFF],
            false,
            ErrorCode::FrameTooLarge,
        ),
        (
            "hello body above 1024 bytes",
            too_large_hello,
            false,
            ErrorCode::FrameTooLarge,
        ),
        (
            "hello truncated, stream finished",
            whole_hello[..whole_hello.len() - 3].to_vec(),
            true,
            ErrorCode::MalformedFrame,
        ),
        (
            "header truncated, stream finished",
            whole_hello[..3].to_vec(),
            true,
            ErrorCode::MalformedFrame,
        ),
        (
            "stream finished before any hello",
            vec![],
            true,
            ErrorCode::ProtocolViolation,
        ),
        (
            "unknown frame type",
            vec![0x42, 0, 0, 0, 0],
            false,
            ErrorCode::MalformedFrame,
        ),
        (
            "frame type 0",
            vec![0; 16],
            false,
            ErrorCode::MalformedFrame,
        ),
        (
            "resume flag 2",
            {
                let mut h = hello("x", None);
                *h.last_mut().unwrap() = 2;
                h
            },
            false,
            ErrorCode::MalformedFrame,
        ),
        (
            "an ack instead of a hello",
            encode(&Frame::Ack { next_seq: 0 }),
            false,
            ErrorCode::ProtocolViolation,
        ),
        (
            "name of another node",
            hello("a", None),
            false,
            ErrorCode::Unauthorized,
        ),
        (
            "cursor from the future in the producer's epoch",
            hello("x", Some(future)),
            false,
            ErrorCode::CursorFromFuture,
        ),
    ];
    for (what, bytes, finish, expected) in &cases {
        let got = close_code(&endpoint, &x, addr, bytes, *finish).await;
        assert_eq!(got, code(*expected), "{what}");
        fx.still_flowing(what).await;
    }

    // After a valid hello: an ack beyond what was sent, an ack below the
    // start, a second hello, a message from the consumer, an oversized frame,
    // a truncated ack.
    let after_hello: Vec<(&str, Vec<u8>, bool, ErrorCode)> = vec![
        (
            "ack beyond what was sent",
            encode(&Frame::Ack { next_seq: u64::MAX }),
            false,
            ErrorCode::ProtocolViolation,
        ),
        (
            "ack below the start",
            encode(&Frame::Ack { next_seq: 0 }),
            false,
            ErrorCode::ProtocolViolation,
        ),
        (
            "a second hello",
            hello("x", None),
            false,
            ErrorCode::ProtocolViolation,
        ),
        (
            "a message from the consumer",
            encode(&Frame::Message {
                seq: 0,
                topic: TOPIC.into(),
                payload: Bytes::from_static(b"forged"),
            }),
            false,
            ErrorCode::ProtocolViolation,
        ),
        (
            "length prefix 0xFFFF_FFFF after the hello",
            vec![8, 0xFF, 0xFF, 0xFF, 0xFF],
            false,
            ErrorCode::FrameTooLarge,
        ),
        (
            "ack truncated, stream finished",
            encode(&Frame::Ack { next_seq: 1 })[..7].to_vec(),
            true,
            ErrorCode::MalformedFrame,
        ),
    ];
    for (what, bytes, finish, expected) in &after_hello {
        let conn = endpoint
            .connect_with(x.clone(), addr, "p")
            .unwrap()
            .await
            .unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(&hello("x", None)).await.unwrap();
        // Read the answer: the producer's session is streaming now.
        let mut decoder = Decoder::new(LIMITS);
        let answer = loop {
            if let Some(frame) = decoder.next_frame().unwrap() {
                break frame;
            }
            let chunk = recv.read_chunk(64, true).await.unwrap().expect("an answer");
            decoder.push(&chunk.bytes);
        };
        let Frame::New {
            epoch: e,
            start_seq,
        } = answer
        else {
            panic!("answer {answer:?}");
        };
        assert_eq!(e, epoch);
        // "Below the start" needs a start above 0: the ticker makes sure.
        assert!(start_seq > 0);
        send.write_all(bytes).await.unwrap();
        if *finish {
            send.finish().unwrap();
        }
        assert_eq!(application_close(&conn).await, code(*expected), "{what}");
        fx.still_flowing(what).await;
    }

    // Random garbage: the node closes with the code the sans-IO codec gives.
    let view = RingView {
        oldest_held: 0,
        head: fx.p.head(),
    };
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let mut seen = std::collections::BTreeMap::<u64, usize>::new();
    let mut tried = 0;
    while tried < 30 {
        let bytes = garbage(&mut rng, tried);
        let Some(expected) = sans_io_code(&bytes, epoch, view) else {
            continue; // a valid hello by chance
        };
        let got = close_code(&endpoint, &x, addr, &bytes, true).await;
        assert_eq!(got, expected, "garbage {bytes:02x?}");
        *seen.entry(got).or_default() += 1;
        tried += 1;
    }
    // The shapes reach the decoder's and the session's refusals alike.
    for c in [
        ErrorCode::ProtocolViolation,
        ErrorCode::FrameTooLarge,
        ErrorCode::MalformedFrame,
    ] {
        assert!(
            seen.contains_key(&code(c)),
            "no garbage closed with {c}: {seen:?}"
        );
    }
    eprintln!("garbage close codes: {seen:?}");

    // Nothing was allocated for the 4 GiB length prefixes.
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(grown < 64 << 10, "RSS grew by {grown} KiB");
    fx.finish().await;
}

// ---------------------------------------------------------------------------
// A hostile producer against a consumer node.

/// A fake producer with `p`'s valid certificate: answers each connection of
/// the consumer node with a script of bytes.
struct FakeProducer {
    endpoint: quinn::Endpoint,
}

impl FakeProducer {
    fn start(certs: &Path) -> Self {
        let identity = NodeIdentity::load(certs, "p").unwrap();
        let server = identity.server_config(client_transport()).unwrap();
        let endpoint = quinn::Endpoint::server(server, "127.0.0.1:0".parse().unwrap()).unwrap();
        Self { endpoint }
    }

    /// Accepts the next connection, reads its hello, checks the cursor it
    /// resumes from, sends `script` (finishing the stream if `finish`) and
    /// returns the connection.
    async fn serve(
        &self,
        resume: Option<Cursor>,
        script: &[u8],
        finish: bool,
    ) -> (quinn::Connection, quinn::SendStream) {
        let incoming = tokio::time::timeout(T, self.endpoint.accept())
            .await
            .expect("the consumer reconnects")
            .unwrap();
        let conn = incoming.await.unwrap();
        let (mut send, mut recv) = conn.accept_bi().await.unwrap();
        let mut decoder = Decoder::new(LIMITS);
        let hello = loop {
            if let Some(frame) = decoder.next_frame().unwrap() {
                break frame;
            }
            let chunk = recv.read_chunk(1024, true).await.unwrap().expect("a hello");
            decoder.push(&chunk.bytes);
        };
        assert_eq!(
            hello,
            Frame::Hello {
                version: PROTOCOL_VERSION,
                node: "a".into(),
                resume
            },
            "the consumer resumes from its cursor"
        );
        send.write_all(script).await.unwrap();
        if finish {
            send.finish().unwrap();
        }
        (conn, send)
    }
}

/// What a fake producer does on one connection: a description, the cursor
/// the consumer must resume from, the bytes to send, whether to finish the
/// stream after them, and the code the consumer must close with.
type ProducerCase = (&'static str, Option<Cursor>, Vec<u8>, bool, ErrorCode);

fn message(seq: u64) -> Frame {
    Frame::Message {
        seq,
        topic: TOPIC.into(),
        payload: Bytes::from(format!("m-{seq}")),
    }
}

fn frames(frames: &[Frame]) -> Vec<u8> {
    frames.iter().flat_map(encode).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_producer_is_refused_and_nothing_past_a_gap_is_delivered() {
    watch_panics();
    let certs = Certs::new(&["p", "a"]);
    let fake = FakeProducer::start(certs.path());
    let mut a = config("a", certs.path())
        .peer("p", fake.endpoint.local_addr().unwrap())
        .start()
        .await
        .unwrap();
    let log = collect(&mut a, TOPIC);
    const E: u64 = 0xe90c;
    let at = |next_seq| Some(Cursor { epoch: E, next_seq });
    let resumed = |from_seq| Frame::Resumed { epoch: E, from_seq };
    let code = |c: ErrorCode| u64::from(c.as_u32());

    let cases: Vec<ProducerCase> = vec![
        (
            "message 3 after 0 and 1: a gap",
            None,
            frames(&[
                Frame::New {
                    epoch: E,
                    start_seq: 0,
                },
                message(0),
                message(1),
                message(3),
            ]),
            false,
            ErrorCode::ProtocolViolation,
        ),
        (
            "lapped whose missed count does not add up",
            at(2),
            frames(&[
                resumed(2),
                Frame::Lapped {
                    missed: 5,
                    resume_seq: 4,
                },
            ]),
            false,
            ErrorCode::ProtocolViolation,
        ),
        (
            "length prefix 0xFFFF_FFFF",
            at(2),
            [frames(&[resumed(2)]), vec![5, 0xFF, 0xFF, 0xFF, 0xFF]].concat(),
            false,
            ErrorCode::FrameTooLarge,
        ),
        (
            "garbage after a message",
            at(2),
            [frames(&[resumed(2), message(2)]), vec![0x42, 1, 2, 3, 4]].concat(),
            false,
            ErrorCode::MalformedFrame,
        ),
        (
            "stream finished inside a message",
            at(3),
            [frames(&[resumed(3)]), encode(&message(3))[..9].to_vec()].concat(),
            true,
            ErrorCode::MalformedFrame,
        ),
        (
            "expired answer whose missed count does not add up",
            at(3),
            frames(&[Frame::Expired {
                epoch: E,
                missed: 1,
                resume_seq: 5,
            }]),
            false,
            ErrorCode::ProtocolViolation,
        ),
        (
            "new in answer to a cursor",
            at(3),
            frames(&[Frame::New {
                epoch: E,
                start_seq: 3,
            }]),
            false,
            ErrorCode::ProtocolViolation,
        ),
        (
            "expired in a new epoch whose missed count is not its resume point",
            at(3),
            frames(&[Frame::Expired {
                epoch: E + 1,
                missed: 2,
                resume_seq: 3,
            }]),
            false,
            ErrorCode::ProtocolViolation,
        ),
        (
            "resumed at another position",
            at(3),
            frames(&[resumed(1)]),
            false,
            ErrorCode::ProtocolViolation,
        ),
    ];
    for (what, resume, script, finish, expected) in &cases {
        let (conn, _send) = fake.serve(*resume, script, *finish).await;
        assert_eq!(application_close(&conn).await, code(*expected), "{what}");
    }
    // An honest producer at last: delivery resumes at the first missing message.
    let (conn, _send) = fake
        .serve(at(3), &frames(&[resumed(3), message(3), message(4)]), false)
        .await;
    wait_for("messages 3 and 4", T, || {
        log.lock().messages("p").len() == 5
    })
    .await;
    conn.close(0u32.into(), b"done");

    let log = log.lock();
    let expected: Vec<(u64, String)> = (0..5).map(|i| (i, format!("m-{i}"))).collect();
    assert_eq!(
        log.messages("p"),
        expected,
        "only messages in sequence were delivered"
    );
    assert!(log.expiries().is_empty(), "{:?}", log.expiries());
    assert!(
        log.checker.violations.is_empty(),
        "{:?}",
        log.checker.violations
    );
    drop(log);
    assert_no_panics();
}
