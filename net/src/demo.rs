//! `ringcast demo`: a producer and two consumers in one process, on
//! loopback over real QUIC with certificates made on the fly, showing live
//! delivery, catch-up, expiry, a producer restart and a flush.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use parking_lot::Mutex;
use ringcast_net::check::Checker;
use ringcast_net::fault::UdpProxy;
use ringcast_net::{ConnectOutcome, Node, NodeBuilder, NodeEvent, PeerStatus};

const TOPIC: &str = "orders";
const CAPACITY: usize = 64;
const IDLE: Duration = Duration::from_millis(600);

/// What one consumer saw, checked as it arrives.
#[derive(Default)]
struct Seen {
    checker: Checker,
    last_seq: Option<u64>,
    status: Vec<PeerStatus>,
}

struct Consumer {
    node: Node,
    proxy: UdpProxy,
    seen: Arc<Mutex<Seen>>,
}

impl Consumer {
    async fn start(
        name: &str,
        certs: &std::path::Path,
        producer: std::net::SocketAddr,
    ) -> anyhow::Result<Self> {
        let proxy = UdpProxy::start(producer, 7).await?;
        let mut node = config(name, certs)
            .peer("prod", proxy.addr())
            .start()
            .await?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut sub = node.subscribe(TOPIC);
        let s = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Some(event) = sub.recv().await {
                let mut seen = s.lock();
                seen.checker.observe(&event);
                if let NodeEvent::Message { seq, .. } = event {
                    seen.last_seq = Some(seq);
                }
            }
        });
        let mut status = node.take_status().context("status taken")?;
        let s = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Some(st) = status.recv().await {
                s.lock().status.push(st);
            }
        });
        Ok(Self { node, proxy, seen })
    }

    fn name(&self) -> &str {
        self.node.name()
    }

    fn connects(&self) -> Vec<ConnectOutcome> {
        self.seen
            .lock()
            .status
            .iter()
            .filter_map(|s| match s {
                PeerStatus::Connected { outcome, .. } => Some(*outcome),
                _ => None,
            })
            .collect()
    }

    fn disconnects(&self) -> usize {
        self.seen
            .lock()
            .status
            .iter()
            .filter(|s| matches!(s, PeerStatus::Disconnected { .. }))
            .count()
    }
}

fn config(name: &str, certs: &std::path::Path) -> NodeBuilder {
    Node::builder(name)
        .certs(certs)
        .capacity(CAPACITY)
        .max_bytes(1 << 20)
        .max_message_size(4096)
        .idle_timeout(IDLE)
        .keep_alive(Duration::from_millis(150))
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
}

async fn wait_for(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn publish(node: &Node, n: usize, label: &str) -> anyhow::Result<u64> {
    let mut last = 0;
    for i in 0..n {
        last = node.publish(TOPIC, format!("{label}-{i}").as_bytes())?;
    }
    Ok(last)
}

pub(crate) async fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = std::env::temp_dir().join(format!("ringcast-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let names = ["prod", "alpha", "beta"].map(String::from);
    ringcast_net::tls::generate(&dir, &names).context("cannot make certificates")?;
    let result = scenario(&dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let summary = result?;
    println!("\n== summary ({:.1} s)", started.elapsed().as_secs_f64());
    print!("{summary}");
    Ok(())
}

async fn scenario(dir: &std::path::Path) -> anyhow::Result<String> {
    println!("ringcast demo: producer `prod`, consumers `alpha` and `beta`, over QUIC with mutual TLS on loopback.");
    println!("The producer's ring holds {CAPACITY} messages; links go through a fault proxy we can cut.\n");
    let prod = config("prod", dir).start().await?;
    let first_epoch = prod.epoch();
    let mut own = prod.subscribe(TOPIC);
    let alpha = Consumer::start("alpha", dir, prod.local_addr()).await?;
    let beta = Consumer::start("beta", dir, prod.local_addr()).await?;
    let both = [&alpha, &beta];
    wait_for("both consumers to connect", Duration::from_secs(5), || {
        both.iter().all(|c| !c.connects().is_empty())
    })
    .await?;

    println!("== 1. live delivery");
    let last = publish(&prod, 10, "live")?;
    wait_for("live delivery", Duration::from_secs(5), || {
        both.iter().all(|c| c.seen.lock().last_seq == Some(last))
    })
    .await?;
    let mut own_count = 0;
    while own_count < 10 {
        match tokio::time::timeout(Duration::from_secs(5), own.recv()).await {
            Ok(Some(NodeEvent::Message { .. })) => own_count += 1,
            _ => bail!("the producer's own subscriber did not get its messages"),
        }
    }
    println!(
        "   published seq 0..=9; alpha, beta and prod's own subscriber each got all 10, in order."
    );

    println!("== 2. a link cut and healed: catch-up");
    alpha.proxy.cut();
    let before = alpha.disconnects();
    let last = publish(&prod, 20, "while-away")?;
    wait_for("alpha to notice the cut", Duration::from_secs(5), || {
        alpha.disconnects() > before
    })
    .await?;
    println!("   alpha's link is cut; prod published 20 more (up to seq {last}); alpha timed out the connection.");
    alpha.proxy.heal();
    wait_for("alpha to catch up", Duration::from_secs(5), || {
        alpha.seen.lock().last_seq == Some(last)
    })
    .await?;
    println!(
        "   healed: alpha reconnected ({}), resumed from its cursor and got all 20 it missed, in order.",
        alpha.connects().last().map_or("?", |o| o.as_str())
    );

    println!("== 3. a longer cut: expiry");
    alpha.proxy.cut();
    let before = alpha.disconnects();
    let expiries = alpha.seen.lock().checker.track("prod").expiries;
    let last = publish(&prod, 200, "long-away")?;
    wait_for("alpha to notice the cut", Duration::from_secs(5), || {
        alpha.disconnects() > before
    })
    .await?;
    alpha.proxy.heal();
    wait_for(
        "alpha to resume after expiry",
        Duration::from_secs(5),
        || alpha.seen.lock().last_seq == Some(last),
    )
    .await?;
    let track = alpha.seen.lock().checker.track("prod");
    println!(
        "   200 published while alpha was away, more than the ring's {CAPACITY}: alpha reconnected ({}),",
        alpha.connects().last().map_or("?", |o| o.as_str())
    );
    println!(
        "   was told CursorExpired ({} expiry, {} messages missed) and continued gap-free up to seq {last}.",
        track.expiries - expiries,
        track.missed
    );

    println!("== 4. producer restart: expiry by epoch");
    wait_for("beta to be current", Duration::from_secs(5), || {
        beta.seen.lock().last_seq == Some(last)
    })
    .await?;
    prod.shutdown().await;
    let prod = config("prod", dir).start().await?;
    alpha.proxy.set_target(prod.local_addr());
    beta.proxy.set_target(prod.local_addr());
    // Publish past the consumers' old cursors before they reconnect: only
    // the epoch tells the restart apart from a continuation.
    let last = publish(&prod, 250, "after-restart")?;
    wait_for(
        "consumers to follow the new producer",
        Duration::from_secs(10),
        || {
            both.iter().all(|c| {
                c.seen.lock().checker.track("prod").restarts == 1
                    && c.seen.lock().last_seq == Some(last)
            })
        },
    )
    .await?;
    println!(
        "   prod restarted (epoch {first_epoch:016x} -> {:016x}) and published 250 before anyone reconnected;",
        prod.epoch()
    );
    println!("   alpha and beta each got CursorExpired with the new epoch, then the held messages of the new epoch.");

    println!("== 5. flush");
    publish(&prod, 50, "flush")?;
    let report = prod.flush(Duration::from_secs(3)).await;
    println!(
        "   published 50 and flushed: ok={} lagging={:?}",
        report.ok, report.lagging
    );
    if !report.ok {
        bail!("flush failed with both consumers connected");
    }
    beta.proxy.cut();
    publish(&prod, 5, "flush-cut")?;
    let report = prod.flush(Duration::from_millis(300)).await;
    println!(
        "   cut beta, published 5 and flushed: ok={} lagging={:?}",
        report.ok, report.lagging
    );
    if report.ok || report.lagging != ["beta"] {
        bail!("flush did not report beta lagging");
    }
    beta.proxy.heal();
    let report = prod.flush(Duration::from_secs(5)).await;
    println!(
        "   healed beta and flushed again: ok={} lagging={:?}",
        report.ok, report.lagging
    );

    let mut summary = String::new();
    let mut violations = 0;
    for c in both {
        let seen = c.seen.lock();
        let t = seen.checker.track("prod");
        violations += seen.checker.violations.len();
        summary += &format!(
            "   {}: delivered {}, missed {} (in {} expiries), producer restarts detected {}, contract violations {}\n",
            c.name(),
            t.delivered,
            t.missed,
            t.expiries,
            t.restarts,
            seen.checker.violations.len()
        );
        for v in &seen.checker.violations {
            summary += &format!("     violation: {v}\n");
        }
    }
    prod.shutdown().await;
    alpha.node.shutdown().await;
    beta.node.shutdown().await;
    if violations > 0 {
        print!("{summary}");
        bail!("{violations} contract violations");
    }
    summary += "   every gap was announced; nothing was delivered twice or out of order.\n";
    Ok(summary)
}
