//! The network half of the benchmarks: ringcast nodes over QUIC on loopback
//! against a raw quinn stream (the ceiling), NATS JetStream and Redis
//! Streams, each driven by its usual Rust client crate.
//!
//! # What is measured
//!
//! * **Throughput**: one producer publishes `messages` payloads of 100 B and
//!   1 KiB as fast as it can, to 1 and to 4 consumers. The figure is
//!   messages per second *per consumer*: `messages / (time from the first
//!   publish until the last consumer has the last message)`. Every consumer
//!   must have every message, in order, exactly once — or have been told
//!   explicitly which it lost (ringcast's `CursorExpired`); the loss is
//!   reported. A run that fails its check is not timed.
//! * **Latency**: one consumer, 100 B payloads paced at a fixed rate from a
//!   plain thread; the payload carries its send time (same machine, same
//!   monotonic clock) and the consumer records one-way latency. p50, p99,
//!   p99.9, max over the timed runs.
//! * **Catch-up**: a consumer takes `backlog` messages live (the live rate
//!   over the same path), goes away while `backlog` more are published, and
//!   comes back; the figure is the time from its return until it has them
//!   all, against the live time for the same count. ringcast's consumer is
//!   cut by a UDP proxy until its link is declared dead, and resumes from
//!   its own cursor; it returns when its backoff timer dials the producer
//!   after the heal (the wait for that timer is reported apart). NATS's
//!   and Redis's come back on a new connection and read from the sequence
//!   / id after the last they had; they return when the reader is opened.
//!   The raw quinn stream keeps nothing and has no catch-up.
//!
//! Every figure comes from runs whose answers were checked first: an
//! untimed check run per scenario and contender, then `runs` timed runs
//! (interleaved across contenders, so drift on a shared machine spreads
//! over all of them), each checked again. Medians and min–max spread are
//! over the timed runs.
//!
//! # Entry point
//!
//! [`run`] takes [`NetOpts`] ([`NetOpts::quick`] or [`NetOpts::full`]) and
//! returns [`NetResults`], which holds every figure, the check outcomes, the
//! server versions and skips, the target verdicts ([`NetResults::targets`])
//! and renders itself as Markdown ([`NetResults::to_markdown`]).

mod common;
mod nats;
mod pin;
mod raw;
mod rc;
mod redis_streams;
mod servers;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use common::Spread;
use common::{percentile, Checker};
pub use servers::ServerInfo;

/// The contenders of the network half.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Contender {
    /// ringcast: producer node and consumer nodes over QUIC (library API).
    Ringcast,
    /// A raw quinn stream of `[u32 len][payload]` frames: the ceiling.
    RawQuinn,
    /// NATS JetStream (nats-server -js, async-nats).
    Nats,
    /// Redis Streams (redis-server, redis crate).
    Redis,
}

impl Contender {
    /// Every contender, in table order.
    pub const ALL: [Contender; 4] = [
        Contender::Ringcast,
        Contender::RawQuinn,
        Contender::Nats,
        Contender::Redis,
    ];

    /// The name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Contender::Ringcast => "ringcast (QUIC nodes)",
            Contender::RawQuinn => "raw quinn stream",
            Contender::Nats => "NATS JetStream",
            Contender::Redis => "Redis Streams",
        }
    }

    /// Short name for command lines and logs.
    pub fn key(self) -> &'static str {
        match self {
            Contender::Ringcast => "ringcast",
            Contender::RawQuinn => "quinn",
            Contender::Nats => "nats",
            Contender::Redis => "redis",
        }
    }

    /// Whether it keeps messages for a returning consumer.
    fn retains(self) -> bool {
        self != Contender::RawQuinn
    }

    fn server(self) -> Option<&'static str> {
        match self {
            Contender::Nats => Some("nats"),
            Contender::Redis => Some("redis"),
            _ => None,
        }
    }
}

/// What to run. Start from [`NetOpts::quick`] or [`NetOpts::full`].
#[derive(Debug, Clone)]
pub struct NetOpts {
    /// Quick mode (for CI: small counts, one timed run, every contender).
    pub quick: bool,
    /// Timed runs per figure, after the untimed check run.
    pub runs: usize,
    /// Throughput messages per run for 100-byte payloads.
    pub messages_100b: u64,
    /// Throughput messages per run for 1 KiB payloads.
    pub messages_1k: u64,
    /// Consumer counts for throughput.
    pub consumers: Vec<usize>,
    /// Paced rate for the latency runs, messages per second.
    pub latency_rate: u64,
    /// Messages per latency run (the first tenth is warm-up, not recorded).
    pub latency_messages: u64,
    /// Timed latency runs.
    pub latency_runs: usize,
    /// Messages in the catch-up backlog.
    pub backlog: u64,
    /// Timed catch-up runs.
    pub catchup_runs: usize,
    /// Run `benches/scripts/servers.sh start` first and `stop` after (only
    /// what it started is stopped). When false, servers already listening
    /// on the addresses below are used, and missing ones are skipped.
    pub manage_servers: bool,
    /// The start/stop script (default `benches/scripts/servers.sh` of this
    /// package).
    pub servers_script: PathBuf,
    /// nats-server address.
    pub nats_addr: String,
    /// redis-server address.
    pub redis_addr: String,
    /// Which contenders run (ringcast and raw quinn always should).
    pub contenders: Vec<Contender>,
    /// Progress lines on stderr.
    pub verbose: bool,
    /// Worker threads of the tokio runtime every contender's client side
    /// (and ringcast's nodes) runs on. Default 2, the machine's cores.
    pub worker_threads: usize,
    /// Pin each worker thread to a CPU of its own for the catch-up runs
    /// (see [`pin`]). Default on.
    pub pin_workers: bool,
    /// Only these phases (`throughput`, `latency`, `catchup`); all when
    /// empty. For development and profiling.
    pub phases: Vec<String>,
}

impl NetOpts {
    /// Seconds: small counts, one timed run, answers checked, every
    /// contender runs.
    pub fn quick() -> Self {
        Self {
            quick: true,
            runs: 1,
            messages_100b: 20_000,
            messages_1k: 10_000,
            consumers: vec![1, 4],
            latency_rate: 5_000,
            latency_messages: 2_000,
            latency_runs: 1,
            backlog: 20_000,
            catchup_runs: 1,
            manage_servers: true,
            servers_script: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/servers.sh"),
            nats_addr: "127.0.0.1:14222".into(),
            redis_addr: "127.0.0.1:16379".into(),
            contenders: Contender::ALL.to_vec(),
            verbose: true,
            worker_threads: 2,
            pin_workers: true,
            phases: Vec::new(),
        }
    }

    /// Minutes: repeated runs, medians and spread, the 100,000-message
    /// backlog.
    pub fn full() -> Self {
        Self {
            quick: false,
            runs: 5,
            messages_100b: 500_000,
            messages_1k: 200_000,
            latency_messages: 20_000,
            latency_runs: 5,
            backlog: 100_000,
            catchup_runs: 5,
            ..Self::quick()
        }
    }
}

/// Throughput of one contender in one scenario.
#[derive(Debug, Clone)]
pub struct ThroughputRow {
    /// Who.
    pub contender: Contender,
    /// Payload bytes.
    pub payload: usize,
    /// Consumers.
    pub consumers: usize,
    /// Messages published per run.
    pub messages: u64,
    /// Per timed run: messages per second per consumer (end to end).
    pub rates: Vec<f64>,
    /// Median and spread of `rates`.
    pub rate: Spread,
    /// Median over timed runs of the producer's own publish rate (until
    /// its last publish call returned), messages per second.
    pub publish_rate: f64,
    /// Messages reported lost over all timed runs and consumers (explicit
    /// expiry); silent loss is a failed check instead.
    pub lost: u64,
    /// `Ok` if the check run and every timed run passed.
    pub checked: Result<(), String>,
}

/// One-way latency of one contender at a paced rate.
#[derive(Debug, Clone)]
pub struct LatencyRow {
    /// Who.
    pub contender: Contender,
    /// Payload bytes.
    pub payload: usize,
    /// Messages per second.
    pub rate: u64,
    /// Samples recorded over all timed runs.
    pub samples: usize,
    /// Per timed run: (p50, p99) in ns.
    pub runs: Vec<(u64, u64)>,
    /// Over the pooled samples of all timed runs, in ns.
    pub p50: u64,
    /// p99, ns.
    pub p99: u64,
    /// p99.9, ns.
    pub p999: u64,
    /// Max, ns.
    pub max: u64,
    /// Every recorded sample (ns), sorted, for plots.
    pub sorted_ns: Vec<u64>,
    /// `Ok` if the check run and every timed run passed.
    pub checked: Result<(), String>,
}

/// Catch-up of one contender.
#[derive(Debug, Clone)]
pub struct CatchupRow {
    /// Who.
    pub contender: Contender,
    /// Payload bytes.
    pub payload: usize,
    /// Messages in the backlog.
    pub backlog: u64,
    /// Live delivery of `backlog` messages, seconds, per timed run.
    pub live_s: Vec<f64>,
    /// Catch-up, seconds from the consumer's return (it starts to connect
    /// again) until it had the whole backlog, per timed run.
    pub catchup_s: Vec<f64>,
    /// Of which: until it was connected again (handshake, resume), per
    /// timed run.
    pub reconnect_s: Vec<f64>,
    /// Before the return, not counted: from the link's heal until the
    /// consumer's backoff timer started the attempt, per timed run
    /// (ringcast only).
    pub waited_s: Vec<f64>,
    /// Median/spread of live rates (messages/s).
    pub live_rate: Spread,
    /// Median/spread of catch-up rates (messages/s, backlog / catch-up time).
    pub catchup_rate: Spread,
    /// Median/spread of transfer rates once reconnected (messages/s,
    /// backlog / (catch-up time - reconnect time)).
    pub transfer_rate: Spread,
    /// `Ok` if every run passed its check.
    pub checked: Result<(), String>,
}

/// One check of a contender's answers.
#[derive(Debug, Clone)]
pub struct NetCheck {
    /// Who.
    pub contender: Contender,
    /// Which scenario.
    pub what: String,
    /// `Err` says what was wrong.
    pub outcome: Result<(), String>,
}

/// A target of issue 4 and whether this run met it.
#[derive(Debug, Clone)]
pub struct Target {
    /// The target in words.
    pub what: String,
    /// The measured ratio or figure, in words.
    pub measured: String,
    /// `None` when it could not be judged (a contender was skipped).
    pub met: Option<bool>,
}

/// Everything the network half produced.
#[derive(Debug, Clone, Default)]
pub struct NetResults {
    /// `"quick"` or `"full"`.
    pub mode: String,
    /// The peer servers: version, whether they ran, why not.
    pub servers: Vec<ServerInfo>,
    /// Throughput rows, by scenario then contender.
    pub throughput: Vec<ThroughputRow>,
    /// Latency rows.
    pub latency: Vec<LatencyRow>,
    /// Catch-up rows.
    pub catchup: Vec<CatchupRow>,
    /// Every check made, passed or failed.
    pub checks: Vec<NetCheck>,
    /// Skips and other remarks, in words.
    pub notes: Vec<String>,
    /// The runtime the contenders' client sides run on, for the report.
    pub runtime: String,
    /// Whether the runtime's workers were pinned, one per CPU, for the
    /// catch-up runs.
    pub catchup_pinned: bool,
    /// Wall-clock time the network half took.
    pub elapsed: Duration,
}

/// Shared by the contenders during a run.
pub(crate) struct Env {
    /// Certificates for nodes `p` (producer) and `c0`..`c3` (consumers).
    pub(crate) certs: PathBuf,
    /// nats-server address if it answers.
    pub(crate) nats: Option<String>,
    /// redis-server address if it answers.
    pub(crate) redis: Option<String>,
    ids: AtomicU64,
}

impl Env {
    /// A number unique in this process (for stream names and keys).
    pub(crate) fn next_id(&self) -> u64 {
        u64::from(std::process::id()) * 1_000_000 + self.ids.fetch_add(1, Ordering::Relaxed)
    }
}

/// One throughput run: time and what every consumer saw.
pub(crate) struct ThroughputRun {
    pub(crate) elapsed: Duration,
    pub(crate) publish: Duration,
    pub(crate) checkers: Vec<Checker>,
}

/// One latency run.
pub(crate) struct LatencyRun {
    pub(crate) checker: Checker,
}

/// One catch-up run.
pub(crate) struct CatchupRun {
    pub(crate) live: Duration,
    pub(crate) catchup: Duration,
    pub(crate) reconnect: Option<Duration>,
    /// From the heal to the consumer's next attempt (its backoff timer), not
    /// counted in `catchup`: ringcast only, the others return on demand.
    pub(crate) waited: Option<Duration>,
    pub(crate) checker: Checker,
    pub(crate) backlog: u64,
}

const SIZES: [usize; 2] = [100, 1024];
const LATENCY_SIZE: usize = 100;
const CATCHUP_SIZE: usize = 100;

/// Runs the network half. Never fails as a whole: a contender whose server
/// is missing is skipped (noted), a failed check is recorded in
/// [`NetResults::checks`] and that figure left out.
pub fn run(opts: &NetOpts) -> NetResults {
    let started = Instant::now();
    let mut results = NetResults {
        mode: if opts.quick { "quick" } else { "full" }.into(),
        ..Default::default()
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder
        .worker_threads(opts.worker_threads.max(1))
        .enable_all();
    let pins = opts.pin_workers.then(|| pin::workers(&mut builder));
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            results
                .notes
                .push(format!("cannot start a tokio runtime: {e}"));
            return results;
        }
    };
    let certs = std::env::temp_dir().join(format!("ringcast-bench-net-{}", std::process::id()));
    let names: Vec<String> = ["p", "c0", "c1", "c2", "c3"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if let Err(e) = ringcast_net::tls::generate(&certs, &names) {
        results
            .notes
            .push(format!("cannot create certificates: {e}"));
        return results;
    }

    let servers = servers::Servers::start(opts);
    results.servers = servers.info.clone();
    let env = Env {
        certs: certs.clone(),
        nats: servers.up("nats").then(|| opts.nats_addr.clone()),
        redis: servers.up("redis").then(|| opts.redis_addr.clone()),
        ids: AtomicU64::new(0),
    };
    let contenders: Vec<Contender> = opts
        .contenders
        .iter()
        .copied()
        .filter(|c| match c.server() {
            Some(s) if !servers.up(s) => {
                results
                    .notes
                    .push(format!("{} skipped: {}", c.name(), servers.why_down(s)));
                false
            }
            _ => true,
        })
        .collect();

    let phase = |name: &str| opts.phases.is_empty() || opts.phases.iter().any(|p| p == name);
    runtime.block_on(async {
        if phase("throughput") {
            throughput_all(opts, &env, &contenders, &mut results).await;
        }
        if phase("latency") {
            latency_all(opts, &env, &contenders, &mut results).await;
        }
        if phase("catchup") {
            // Pinned for the catch-up runs only: see `pin`.
            if let Some(pins) = &pins {
                pins.pin();
            }
            catchup_all(opts, &env, &contenders, &mut results).await;
            if let Some(pins) = &pins {
                pins.unpin();
            }
        }
    });
    drop(runtime);
    results.catchup_pinned = pins.as_ref().is_some_and(|p| p.pinned());
    results.runtime = format!(
        "a {}-worker tokio runtime, {}",
        opts.worker_threads.max(1),
        pins.map_or_else(|| "workers not pinned".to_string(), |p| p.describe())
    );
    servers.stop();
    let _ = std::fs::remove_dir_all(&certs);
    results.elapsed = started.elapsed();
    results
}

/// Records a timed run whose answers failed their check: logged, listed
/// among the checks, and the contender's row marked failed (its numbers are
/// then not used).
fn timed_run_failed(
    opts: &NetOpts,
    checks: &mut Vec<NetCheck>,
    checked: &mut Result<(), String>,
    contender: Contender,
    what: &str,
    round: usize,
    e: String,
) {
    progress(
        opts,
        format!("run {} {} {what}: FAILED {e}", round + 1, contender.key()),
    );
    checks.push(NetCheck {
        contender,
        what: format!("{what}, timed run {}", round + 1),
        outcome: Err(e.clone()),
    });
    *checked = Err(e);
}

fn progress(opts: &NetOpts, line: impl AsRef<str>) {
    if opts.verbose {
        eprintln!("[net] {}", line.as_ref());
    }
}

async fn throughput_one(
    env: &Env,
    c: Contender,
    size: usize,
    consumers: usize,
    messages: u64,
) -> Result<ThroughputRun, String> {
    let run = match c {
        Contender::Ringcast => rc::throughput(env, size, consumers, messages).await,
        Contender::RawQuinn => raw::throughput(env, size, consumers, messages).await,
        Contender::Nats => nats::throughput(env, size, consumers, messages).await,
        Contender::Redis => redis_streams::throughput(env, size, consumers, messages).await,
    }?;
    for (i, checker) in run.checkers.iter().enumerate() {
        checker
            .verdict(messages)
            .map_err(|e| format!("consumer {i}: {e}"))?;
    }
    if run.checkers.len() != consumers {
        return Err(format!(
            "{} consumers reported, {consumers} expected",
            run.checkers.len()
        ));
    }
    Ok(run)
}

async fn throughput_all(
    opts: &NetOpts,
    env: &Env,
    contenders: &[Contender],
    results: &mut NetResults,
) {
    for size in SIZES {
        let messages = if size <= 100 {
            opts.messages_100b
        } else {
            opts.messages_1k
        };
        for &consumers in &opts.consumers {
            let what = format!("throughput {size} B, 1 producer to {consumers} consumer(s)");
            let mut rows: Vec<ThroughputRow> = Vec::new();
            let mut publish_rates: Vec<Vec<f64>> = Vec::new();
            for &c in contenders {
                // The untimed check run: small, answers checked.
                let check = throughput_one(env, c, size, consumers, messages.min(5_000)).await;
                progress(
                    opts,
                    format!("check {} {what}: {}", c.key(), verdict_word(&check)),
                );
                results.checks.push(NetCheck {
                    contender: c,
                    what: what.clone(),
                    outcome: check.as_ref().map(|_| ()).map_err(Clone::clone),
                });
                rows.push(ThroughputRow {
                    contender: c,
                    payload: size,
                    consumers,
                    messages,
                    rates: Vec::new(),
                    rate: Spread::default(),
                    publish_rate: 0.0,
                    lost: 0,
                    checked: check.map(|_| ()),
                });
                publish_rates.push(Vec::new());
            }
            for round in 0..opts.runs {
                for (row, pubs) in rows.iter_mut().zip(&mut publish_rates) {
                    if row.checked.is_err() {
                        continue;
                    }
                    match throughput_one(env, row.contender, size, consumers, messages).await {
                        Ok(run) => {
                            let secs = run.elapsed.as_secs_f64().max(1e-9);
                            row.rates.push(messages as f64 / secs);
                            pubs.push(messages as f64 / run.publish.as_secs_f64().max(1e-9));
                            row.lost += run.checkers.iter().map(|c| c.lost).sum::<u64>();
                            progress(
                                opts,
                                format!(
                                    "run {} {} {what}: {:.0} msg/s per consumer",
                                    round + 1,
                                    row.contender.key(),
                                    messages as f64 / secs
                                ),
                            );
                        }
                        Err(e) => timed_run_failed(
                            opts,
                            &mut results.checks,
                            &mut row.checked,
                            row.contender,
                            &what,
                            round,
                            e,
                        ),
                    }
                }
            }
            for (mut row, pubs) in rows.into_iter().zip(publish_rates) {
                row.rate = Spread::of(&row.rates);
                row.publish_rate = Spread::of(&pubs).median;
                results.throughput.push(row);
            }
        }
    }
}

async fn latency_one(env: &Env, c: Contender, rate: u64, count: u64) -> Result<LatencyRun, String> {
    let warmup = count / 10;
    let run = match c {
        Contender::Ringcast => rc::latency(env, LATENCY_SIZE, rate, count, warmup).await,
        Contender::RawQuinn => raw::latency(env, LATENCY_SIZE, rate, count, warmup).await,
        Contender::Nats => nats::latency(env, LATENCY_SIZE, rate, count, warmup).await,
        Contender::Redis => redis_streams::latency(env, LATENCY_SIZE, rate, count, warmup).await,
    }?;
    run.checker.verdict(count)?;
    if run.checker.lost > 0 {
        return Err(format!(
            "{} messages lost at a paced rate",
            run.checker.lost
        ));
    }
    Ok(run)
}

async fn latency_all(
    opts: &NetOpts,
    env: &Env,
    contenders: &[Contender],
    results: &mut NetResults,
) {
    let what = format!("latency {LATENCY_SIZE} B at {} msg/s", opts.latency_rate);
    let mut rows = Vec::new();
    for &c in contenders {
        let check = latency_one(env, c, opts.latency_rate, opts.latency_messages.min(1_000)).await;
        progress(
            opts,
            format!("check {} {what}: {}", c.key(), verdict_word(&check)),
        );
        results.checks.push(NetCheck {
            contender: c,
            what: what.clone(),
            outcome: check.as_ref().map(|_| ()).map_err(Clone::clone),
        });
        rows.push(LatencyRow {
            contender: c,
            payload: LATENCY_SIZE,
            rate: opts.latency_rate,
            samples: 0,
            runs: Vec::new(),
            p50: 0,
            p99: 0,
            p999: 0,
            max: 0,
            sorted_ns: Vec::new(),
            checked: check.map(|_| ()),
        });
    }
    for round in 0..opts.latency_runs {
        for row in &mut rows {
            if row.checked.is_err() {
                continue;
            }
            match latency_one(env, row.contender, opts.latency_rate, opts.latency_messages).await {
                Ok(run) => {
                    let mut v = run.checker.latencies;
                    v.sort_unstable();
                    let (p50, p99) = (percentile(&v, 0.5), percentile(&v, 0.99));
                    progress(
                        opts,
                        format!(
                            "run {} {} {what}: p50 {:.1} us, p99 {:.1} us",
                            round + 1,
                            row.contender.key(),
                            p50 as f64 / 1e3,
                            p99 as f64 / 1e3
                        ),
                    );
                    row.runs.push((p50, p99));
                    row.sorted_ns.extend_from_slice(&v);
                }
                Err(e) => timed_run_failed(
                    opts,
                    &mut results.checks,
                    &mut row.checked,
                    row.contender,
                    &what,
                    round,
                    e,
                ),
            }
        }
    }
    for mut row in rows {
        row.sorted_ns.sort_unstable();
        let v = &row.sorted_ns;
        row.samples = v.len();
        row.p50 = percentile(v, 0.5);
        row.p99 = percentile(v, 0.99);
        row.p999 = percentile(v, 0.999);
        row.max = v.last().copied().unwrap_or(0);
        results.latency.push(row);
    }
}

async fn catchup_one(env: &Env, c: Contender, backlog: u64) -> Result<CatchupRun, String> {
    let run = match c {
        Contender::Ringcast => rc::catchup(env, CATCHUP_SIZE, backlog).await,
        Contender::Nats => nats::catchup(env, CATCHUP_SIZE, backlog).await,
        Contender::Redis => redis_streams::catchup(env, CATCHUP_SIZE, backlog).await,
        Contender::RawQuinn => return Err("keeps no messages".into()),
    }?;
    run.checker.verdict(run.backlog)?;
    if run.checker.lost > 0 {
        return Err(format!("{} backlog messages lost", run.checker.lost));
    }
    Ok(run)
}

async fn catchup_all(
    opts: &NetOpts,
    env: &Env,
    contenders: &[Contender],
    results: &mut NetResults,
) {
    let what = format!("catch-up of a {}-message backlog", opts.backlog);
    let mut rows = Vec::new();
    for &c in contenders.iter().filter(|c| c.retains()) {
        let check = catchup_one(env, c, opts.backlog.min(5_000)).await;
        progress(
            opts,
            format!("check {} {what}: {}", c.key(), verdict_word(&check)),
        );
        results.checks.push(NetCheck {
            contender: c,
            what: what.clone(),
            outcome: check.as_ref().map(|_| ()).map_err(Clone::clone),
        });
        rows.push(CatchupRow {
            contender: c,
            payload: CATCHUP_SIZE,
            backlog: opts.backlog,
            live_s: Vec::new(),
            catchup_s: Vec::new(),
            reconnect_s: Vec::new(),
            waited_s: Vec::new(),
            live_rate: Spread::default(),
            catchup_rate: Spread::default(),
            transfer_rate: Spread::default(),
            checked: check.map(|_| ()),
        });
    }
    for round in 0..opts.catchup_runs {
        for row in &mut rows {
            if row.checked.is_err() {
                continue;
            }
            match catchup_one(env, row.contender, opts.backlog).await {
                Ok(run) => {
                    progress(
                        opts,
                        format!(
                            "run {} {} {what}: live {:.3} s, catch-up {:.3} s (reconnect {:.3} s){}",
                            round + 1,
                            row.contender.key(),
                            run.live.as_secs_f64(),
                            run.catchup.as_secs_f64(),
                            run.reconnect.unwrap_or_default().as_secs_f64(),
                            run.waited
                                .map(|w| format!(", after {:.3} s of backoff", w.as_secs_f64()))
                                .unwrap_or_default()
                        ),
                    );
                    row.live_s.push(run.live.as_secs_f64());
                    row.catchup_s.push(run.catchup.as_secs_f64());
                    row.reconnect_s
                        .push(run.reconnect.unwrap_or_default().as_secs_f64());
                    if let Some(w) = run.waited {
                        row.waited_s.push(w.as_secs_f64());
                    }
                }
                Err(e) => timed_run_failed(
                    opts,
                    &mut results.checks,
                    &mut row.checked,
                    row.contender,
                    &what,
                    round,
                    e,
                ),
            }
        }
    }
    for mut row in rows {
        let b = row.backlog as f64;
        let rates = |v: &[f64]| v.iter().map(|s| b / s.max(1e-9)).collect::<Vec<_>>();
        row.live_rate = Spread::of(&rates(&row.live_s));
        row.catchup_rate = Spread::of(&rates(&row.catchup_s));
        let transfer: Vec<f64> = row
            .catchup_s
            .iter()
            .zip(&row.reconnect_s)
            .map(|(c, r)| c - r)
            .collect();
        row.transfer_rate = Spread::of(&rates(&transfer));
        results.catchup.push(row);
    }
}

fn verdict_word<T>(r: &Result<T, String>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("FAILED {e}"),
    }
}

/// `12.3k/s`-style rate.
fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k/s", r / 1e3)
    } else {
        format!("{r:.0}/s")
    }
}

fn fmt_us(ns: u64) -> String {
    format!("{:.1} µs", ns as f64 / 1e3)
}

impl NetResults {
    /// The throughput row of `c` in a scenario, if it ran and passed.
    pub fn rate(&self, c: Contender, payload: usize, consumers: usize) -> Option<f64> {
        self.throughput
            .iter()
            .find(|r| r.contender == c && r.payload == payload && r.consumers == consumers)
            .filter(|r| r.checked.is_ok() && !r.rates.is_empty())
            .map(|r| r.rate.median)
    }

    fn latency_row(&self, c: Contender) -> Option<&LatencyRow> {
        self.latency
            .iter()
            .find(|r| r.contender == c)
            .filter(|r| r.checked.is_ok() && r.samples > 0)
    }

    fn catchup_row(&self, c: Contender) -> Option<&CatchupRow> {
        self.catchup
            .iter()
            .find(|r| r.contender == c)
            .filter(|r| r.checked.is_ok() && !r.catchup_s.is_empty())
    }

    /// The network targets of issue 4, judged on this run's medians.
    pub fn targets(&self) -> Vec<Target> {
        let mut out = Vec::new();
        for &consumers in &[1usize, 4] {
            let (rc, raw) = (
                self.rate(Contender::Ringcast, 100, consumers),
                self.rate(Contender::RawQuinn, 100, consumers),
            );
            if rc.is_none() && raw.is_none() {
                continue;
            }
            out.push(match (rc, raw) {
                (Some(rc), Some(raw)) => Target {
                    what: format!(
                        "≥ 70% of the raw quinn stream's rate, 100 B, {consumers} consumer(s)"
                    ),
                    measured: format!(
                        "{:.0}% ({} vs {})",
                        rc / raw * 100.0,
                        fmt_rate(rc),
                        fmt_rate(raw)
                    ),
                    met: Some(rc >= 0.7 * raw),
                },
                _ => Target {
                    what: format!(
                        "≥ 70% of the raw quinn stream's rate, 100 B, {consumers} consumer(s)"
                    ),
                    measured: "not measured".into(),
                    met: None,
                },
            });
        }
        for size in SIZES {
            for &consumers in &[1usize, 4] {
                let Some(rc) = self.rate(Contender::Ringcast, size, consumers) else {
                    continue;
                };
                let peers: Vec<(Contender, f64)> = [Contender::Nats, Contender::Redis]
                    .into_iter()
                    .filter_map(|c| self.rate(c, size, consumers).map(|r| (c, r)))
                    .collect();
                let what = format!("≥ 5× the better of NATS JetStream and Redis Streams, {size} B, {consumers} consumer(s)");
                let best = peers.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1));
                // What the ceiling itself achieves against the same peer:
                // below 5× the target is out of reach for any QUIC shim.
                let ceiling = self
                    .rate(Contender::RawQuinn, size, consumers)
                    .zip(best)
                    .map(|(q, (_, r))| format!("; the raw quinn ceiling is {:.1}×", q / r))
                    .unwrap_or_default();
                out.push(match best {
                    Some((c, r)) => Target {
                        what,
                        measured: format!(
                            "{:.1}× ({} vs {} for {}{ceiling})",
                            rc / r,
                            fmt_rate(rc),
                            fmt_rate(r),
                            c.name()
                        ),
                        met: Some(rc >= 5.0 * r),
                    },
                    None => Target {
                        what,
                        measured: "no peer server ran".into(),
                        met: None,
                    },
                });
            }
        }
        if let Some(rc) = self.latency_row(Contender::Ringcast) {
            let peers: Vec<&LatencyRow> = [Contender::Nats, Contender::Redis]
                .into_iter()
                .filter_map(|c| self.latency_row(c))
                .collect();
            let what = "p99 latency below both NATS JetStream's and Redis Streams'".to_string();
            out.push(if peers.is_empty() {
                Target {
                    what,
                    measured: format!("ringcast p99 {}; no peer server ran", fmt_us(rc.p99)),
                    met: None,
                }
            } else {
                let list = peers
                    .iter()
                    .map(|p| format!("{} {}", p.contender.name(), fmt_us(p.p99)))
                    .collect::<Vec<_>>()
                    .join(", ");
                Target {
                    what,
                    measured: format!("ringcast {} vs {list}", fmt_us(rc.p99)),
                    met: Some(peers.iter().all(|p| rc.p99 < p.p99) && peers.len() == 2),
                }
            });
        }
        if let Some(rc) = self.catchup_row(Contender::Ringcast) {
            out.push(Target {
                what: "catch-up at least as fast as live delivery (ringcast)".into(),
                measured: format!(
                    "catch-up {} vs live {} ({:.2}×, same path through the fault proxy, timed from the consumer's return)",
                    fmt_rate(rc.catchup_rate.median),
                    fmt_rate(rc.live_rate.median),
                    rc.catchup_rate.median / rc.live_rate.median.max(1e-9)
                ),
                met: Some(rc.catchup_rate.median >= rc.live_rate.median),
            });
            out.push(Target {
                what: "the same, counting only the transfer after reconnecting (ringcast)".into(),
                measured: format!(
                    "transfer {} vs live {} ({:.2}×)",
                    fmt_rate(rc.transfer_rate.median),
                    fmt_rate(rc.live_rate.median),
                    rc.transfer_rate.median / rc.live_rate.median.max(1e-9)
                ),
                met: Some(rc.transfer_rate.median >= rc.live_rate.median),
            });
        }
        out
    }

    /// The network half as Markdown: servers, tables, targets, checks, notes.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Network half ({} mode, {:.0} s), loopback, all contenders in one process sharing {} (the peer servers are separate processes).\n", self.mode, self.elapsed.as_secs_f64(), self.runtime);
        s.push_str(CONTENDERS_DOC);
        if !self.servers.is_empty() {
            let _ = writeln!(s, "| server | version | status |\n|---|---|---|");
            for srv in &self.servers {
                let _ = writeln!(s, "| {} | {} | {} |", srv.name, srv.version, srv.status);
            }
            s.push('\n');
        }
        if !self.throughput.is_empty() {
            let _ = writeln!(s, "**Throughput** — messages/s per consumer, end to end (first publish → last consumer has the last message); median of timed runs, [min–max]; every consumer checked for every message in order.\n");
            let _ = writeln!(s, "| payload | consumers | contender | msgs/run | msgs/s per consumer | spread | vs ringcast | producer publish rate | lost | check |\n|---|---|---|---|---|---|---|---|---|---|");
            for r in &self.throughput {
                let rc = self.rate(Contender::Ringcast, r.payload, r.consumers);
                let ok = r.checked.is_ok() && !r.rates.is_empty();
                let vs = match (rc, ok) {
                    (Some(rc), true) if r.contender != Contender::Ringcast => {
                        format!("ringcast {:.2}×", rc / r.rate.median)
                    }
                    _ => "".into(),
                };
                let _ = writeln!(
                    s,
                    "| {} B | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    r.payload,
                    r.consumers,
                    r.contender.name(),
                    r.messages,
                    if ok {
                        fmt_rate(r.rate.median)
                    } else {
                        "—".into()
                    },
                    if ok {
                        format!(
                            "[{}–{}] ±{:.0}%",
                            fmt_rate(r.rate.min),
                            fmt_rate(r.rate.max),
                            r.rate.spread_pct() / 2.0
                        )
                    } else {
                        "".into()
                    },
                    vs,
                    if ok {
                        fmt_rate(r.publish_rate)
                    } else {
                        "".into()
                    },
                    r.lost,
                    check_word(&r.checked),
                );
            }
            s.push('\n');
        }
        if !self.latency.is_empty() {
            let _ = writeln!(s, "**One-way latency** — 100 B payloads paced from a plain thread, one consumer; pooled over timed runs (first 10% of each run is warm-up).\n");
            let _ = writeln!(s, "| contender | payload | rate | samples | p50 | p99 | p99.9 | max | per-run p50 / p99 | check |\n|---|---|---|---|---|---|---|---|---|---|");
            for r in &self.latency {
                let ok = r.checked.is_ok() && r.samples > 0;
                let runs = r
                    .runs
                    .iter()
                    .map(|(a, b)| format!("{:.0}/{:.0}", *a as f64 / 1e3, *b as f64 / 1e3))
                    .collect::<Vec<_>>()
                    .join(", ");
                let _ = writeln!(
                    s,
                    "| {} | {} B | {}/s | {} | {} | {} | {} | {} | {} µs | {} |",
                    r.contender.name(),
                    r.payload,
                    r.rate,
                    r.samples,
                    if ok { fmt_us(r.p50) } else { "—".into() },
                    if ok { fmt_us(r.p99) } else { "—".into() },
                    if ok { fmt_us(r.p999) } else { "—".into() },
                    if ok { fmt_us(r.max) } else { "—".into() },
                    runs,
                    check_word(&r.checked),
                );
            }
            s.push('\n');
        }
        if !self.catchup.is_empty() {
            let _ = writeln!(s, "**Catch-up** — a consumer returns to a backlog; time from its return until it has every backlog message, reconnect included, against live delivery of the same count over the same path. A consumer returns when it starts to connect again: NATS and Redis when the benchmark opens the reader, ringcast when its backoff timer dials the producer after the link heals. ringcast's wait for that timer (backoff {}–{} ms here) comes before the return and is shown apart, not counted. The raw quinn stream keeps nothing: no catch-up.{}\n", rc::CATCHUP_BACKOFF.0.as_millis(), rc::CATCHUP_BACKOFF.1.as_millis(), if self.catchup_pinned { " For these runs the runtime's workers are pinned, one per CPU: live delivery and the return follow different conditions (the return comes after the link has been quiet until declared dead), and with the workers left to the kernel, how fast each phase ran depended on what the workers had been doing just before it; `benches/src/net/pin.rs` gives the figures, and `--no-pin` runs without." } else { " The runtime's workers were not pinned for these runs." });
            let _ = writeln!(s, "| contender | payload | backlog | live (s) | live rate | catch-up (s) | of which reconnect (s) | catch-up rate | catch-up / live | transfer rate (after reconnect) | transfer / live | before: backoff wait after the heal (s) | check |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|");
            for r in &self.catchup {
                let ok = r.checked.is_ok() && !r.catchup_s.is_empty();
                let med = |v: &[f64]| Spread::of(v).median;
                let _ = writeln!(
                    s,
                    "| {} | {} B | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    r.contender.name(),
                    r.payload,
                    r.backlog,
                    if ok {
                        format!("{:.3}", med(&r.live_s))
                    } else {
                        "—".into()
                    },
                    if ok {
                        fmt_rate(r.live_rate.median)
                    } else {
                        "".into()
                    },
                    if ok {
                        format!("{:.3}", med(&r.catchup_s))
                    } else {
                        "—".into()
                    },
                    if ok {
                        format!("{:.3}", med(&r.reconnect_s))
                    } else {
                        "".into()
                    },
                    if ok {
                        format!(
                            "{} [{}–{}]",
                            fmt_rate(r.catchup_rate.median),
                            fmt_rate(r.catchup_rate.min),
                            fmt_rate(r.catchup_rate.max)
                        )
                    } else {
                        "".into()
                    },
                    if ok {
                        format!(
                            "{:.2}×",
                            r.catchup_rate.median / r.live_rate.median.max(1e-9)
                        )
                    } else {
                        "".into()
                    },
                    if ok {
                        fmt_rate(r.transfer_rate.median)
                    } else {
                        "".into()
                    },
                    if ok {
                        format!(
                            "{:.2}×",
                            r.transfer_rate.median / r.live_rate.median.max(1e-9)
                        )
                    } else {
                        "".into()
                    },
                    if ok && !r.waited_s.is_empty() {
                        let w = Spread::of(&r.waited_s);
                        format!("{:.3} [{:.3}–{:.3}]", w.median, w.min, w.max)
                    } else {
                        "—".into()
                    },
                    check_word(&r.checked),
                );
            }
            s.push('\n');
        }
        let targets = self.targets();
        if !targets.is_empty() {
            let _ = writeln!(
                s,
                "**Targets (issue 4, network)**\n\n| target | measured | met |\n|---|---|---|"
            );
            for t in targets {
                let met = match t.met {
                    Some(true) => "yes",
                    Some(false) => "**no**",
                    None => "n/a",
                };
                let _ = writeln!(s, "| {} | {} | {} |", t.what, t.measured, met);
            }
            s.push('\n');
        }
        let failed: Vec<&NetCheck> = self.checks.iter().filter(|c| c.outcome.is_err()).collect();
        let _ = writeln!(
            s,
            "Checks: {} passed, {} failed.",
            self.checks.len() - failed.len(),
            failed.len()
        );
        for c in failed {
            let _ = writeln!(
                s,
                "- FAILED {} — {}: {}",
                c.contender.name(),
                c.what,
                c.outcome.as_ref().err().map_or("", |e| e)
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "- {n}");
        }
        s
    }
}

/// How each contender is driven, for the report.
const CONTENDERS_DOC: &str = "\
How each contender is driven (`benches/src/net/`):

- **ringcast**: a producer node and one node per consumer (library API, each its own QUIC \
endpoint, mutual TLS). The producer publishes from a plain thread; each consumer node has one \
subscription read by a task. The ring holds the whole run (no expiry), and it is lapped once \
before each run so the producer is measured in its steady state (a fresh ring's first lap \
pays page faults).
- **raw quinn stream** (the ceiling): one unidirectional stream per consumer carrying \
`[u32 len][payload]` frames, with ringcast's certificates, TLS configuration, transport \
windows and socket buffers; the producer writes 256 KiB batches (a ringcast sender's largest \
write) shared by every stream; no ring, cursor, acks or resume.
- **NATS JetStream** (async-nats): an in-memory stream with `max_messages` as the ring; \
JetStream publishes with their acks awaited in a window of 4096; each consumer is an ordered \
consumer from a start sequence on its own connection.
- **Redis Streams** (redis crate): `XADD key MAXLEN ~ N * d <payload>`, pipelined 512 per \
round trip; each consumer loops on `XREAD COUNT 1000 BLOCK 100` from the last id on its own \
connection, replies walked as raw values.

";

fn check_word(r: &Result<(), String>) -> String {
    match r {
        Ok(()) => "ok".into(),
        Err(e) => format!("FAILED: {}", e.replace('|', "/")),
    }
}
