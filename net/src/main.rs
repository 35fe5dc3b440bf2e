//! The `ringcast` command line: certificates, a node driven over
//! stdin/stdout, and the demo.

mod demo;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ringcast_net::{Node, NodeEvent, PeerStatus};
use serde_json::json;
use tokio::io::AsyncBufReadExt;

#[derive(Parser, Debug)]
#[command(
    name = "ringcast",
    version,
    about = "In-memory, downtime-tolerant publish/subscribe"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create the cluster CA (once) and node certificates in DIR.
    Cert {
        /// Directory for ca.crt, ca.key, NAME.crt, NAME.key.
        #[arg(long)]
        dir: PathBuf,
        /// Node names, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<String>,
    },
    /// Run a node: publish from stdin, print events to stdout as JSON lines.
    Node(NodeArgs),
    /// Run a small cluster in this process and narrate what it shows.
    Demo,
}

#[derive(clap::Args, Debug)]
struct NodeArgs {
    /// This node's name (its certificate's name).
    #[arg(long)]
    name: String,
    /// UDP address to listen on, HOST:PORT.
    #[arg(long, value_parser = parse_addr)]
    listen: SocketAddr,
    /// Directory made by `ringcast cert`.
    #[arg(long)]
    certs: PathBuf,
    /// A peer to follow, NAME@HOST:PORT. Repeatable.
    #[arg(long = "peer", value_parser = parse_peer)]
    peers: Vec<(String, SocketAddr)>,
    /// A topic to print messages of. Repeatable.
    #[arg(long = "subscribe")]
    topics: Vec<String>,
    /// Messages this node's ring holds (rounded up to a power of two).
    #[arg(long, default_value_t = 65_536)]
    capacity: usize,
    /// Payload bytes this node's ring holds.
    #[arg(long, default_value_t = 64 << 20)]
    max_bytes: usize,
    /// A silent connection is dead after this many milliseconds.
    #[arg(long, default_value_t = 10_000)]
    idle_timeout_ms: u64,
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.to_socket_addrs()
        .map_err(|e| format!("{s:?} is not HOST:PORT: {e}"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

fn parse_peer(s: &str) -> Result<(String, SocketAddr), String> {
    let (name, addr) = s
        .split_once('@')
        .ok_or_else(|| format!("{s:?} is not NAME@HOST:PORT"))?;
    ringcast_net::tls::validate_node_name(name).map_err(|e| e.to_string())?;
    Ok((name.to_string(), parse_addr(addr)?))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match cli.command {
        Command::Cert { dir, nodes } => {
            let generated = ringcast_net::tls::generate(&dir, &nodes)
                .with_context(|| format!("cannot write certificates to {}", dir.display()))?;
            eprintln!(
                "{} CA in {}; issued: {}; kept: {}",
                if generated.ca_created {
                    "created"
                } else {
                    "reused"
                },
                dir.display(),
                generated.issued.join(","),
                generated.kept.join(","),
            );
            Ok(())
        }
        Command::Node(args) => {
            let runtime = runtime()?;
            let result = runtime.block_on(run_node(args));
            // The stdin reader sits in a blocking read that nothing can
            // interrupt; do not wait for it.
            runtime.shutdown_timeout(Duration::from_millis(100));
            result
        }
        Command::Demo => runtime()?.block_on(demo::run()),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Prints one JSON object as a line on stdout.
fn emit(value: serde_json::Value) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // A closed stdout leaves nobody to tell; the node carries on.
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

fn event_json(event: &NodeEvent) -> serde_json::Value {
    match event {
        NodeEvent::Message {
            from,
            epoch,
            seq,
            topic,
            payload,
        } => json!({
            "event": "message",
            "from": &**from,
            "epoch": format!("{epoch:016x}"),
            "seq": seq,
            "topic": &**topic,
            "payload": String::from_utf8_lossy(payload),
        }),
        NodeEvent::CursorExpired {
            from,
            missed,
            resume_seq,
            ..
        } => json!({
            "event": "cursor_expired",
            "from": &**from,
            "missed": missed,
            "resume_seq": resume_seq,
        }),
        NodeEvent::Direct {
            from,
            topic,
            payload,
        } => json!({
            "event": "direct",
            "from": &**from,
            "topic": &**topic,
            "payload": String::from_utf8_lossy(payload),
        }),
        _ => json!({"event": "unknown"}),
    }
}

async fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let mut builder = Node::builder(&args.name)
        .listen(args.listen)
        .certs(&args.certs)
        .capacity(args.capacity)
        .max_bytes(args.max_bytes)
        .max_message_size(args.max_bytes.min(1 << 20))
        .idle_timeout(Duration::from_millis(args.idle_timeout_ms));
    for (name, addr) in &args.peers {
        builder = builder.peer(name, *addr);
    }
    let mut node = builder.start().await.context("cannot start the node")?;
    emit(json!({
        "event": "ready",
        "node": node.name(),
        "epoch": format!("{:016x}", node.epoch()),
        "listen": node.local_addr().to_string(),
    }));

    let mut status = node.take_status().context("status taken twice")?;
    tokio::spawn(async move {
        while let Some(s) = status.recv().await {
            emit(match s {
                PeerStatus::Connected {
                    peer,
                    outcome,
                    handshake,
                } => {
                    json!({
                        "event": "connected",
                        "peer": peer,
                        "outcome": outcome.as_str(),
                        "handshake_ms": handshake.as_secs_f64() * 1e3,
                    })
                }
                PeerStatus::Disconnected { peer, reason } => {
                    json!({"event": "disconnected", "peer": peer, "reason": reason})
                }
                _ => continue,
            });
        }
    });
    for topic in &args.topics {
        let mut sub = node.subscribe(topic);
        tokio::spawn(async move {
            while let Some(event) = sub.recv().await {
                emit(event_json(&event));
            }
        });
    }

    let node = std::sync::Arc::new(node);
    let stdin_node = std::sync::Arc::clone(&node);
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        // End of stdin does not stop the node: only a signal does.
        while let Ok(Some(line)) = lines.next_line().await {
            command(&stdin_node, &line);
        }
    });

    wait_for_signal().await?;
    node.shutdown().await;
    Ok(())
}

/// Runs one stdin command; a bad one gets an error line.
fn command(node: &std::sync::Arc<Node>, line: &str) {
    let line = line.trim_end_matches(['\r', '\n']);
    let (verb, rest) = line.split_once(' ').unwrap_or((line, ""));
    let result: anyhow::Result<()> = match verb {
        "pub" => {
            let (topic, payload) = rest.split_once(' ').unwrap_or((rest, ""));
            node.publish(topic, payload.as_bytes())
                .map(|_| ())
                .map_err(Into::into)
        }
        "direct" => (|| {
            let (to, rest) = rest.split_once(' ').context("usage: direct NODE TOPIC PAYLOAD")?;
            let (topic, payload) = rest.split_once(' ').unwrap_or((rest, ""));
            node.send_direct(to, topic, payload.as_bytes())?;
            Ok(())
        })(),
        "flush" => match rest.trim().parse::<u64>() {
            Ok(ms) => {
                let node = std::sync::Arc::clone(node);
                tokio::spawn(async move {
                    let report = node.flush(Duration::from_millis(ms)).await;
                    emit(json!({"event": "flushed", "ok": report.ok, "lagging": report.lagging}));
                });
                Ok(())
            }
            Err(_) => Err(anyhow::anyhow!("usage: flush TIMEOUT_MS")),
        },
        "" => return,
        other => Err(anyhow::anyhow!(
            "unknown command {other:?}: expected pub TOPIC PAYLOAD, flush TIMEOUT_MS or direct NODE TOPIC PAYLOAD"
        )),
    };
    if let Err(e) = result {
        emit(json!({"event": "error", "line": line, "error": e.to_string()}));
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("cannot watch SIGINT")?,
            _ = term.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c()
            .await
            .context("cannot watch ctrl-c")?;
        Ok(())
    }
}
