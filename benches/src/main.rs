//! `ringcast-benches`: ringcast side by side with the libraries and servers a
//! user would otherwise pick, in one run on one machine.
//!
//! ```text
//! cargo run --release -p ringcast-benches -- [--quick] [--no-net] [--no-pin] [--out DIR] [--runs N]
//! ```
//!
//! * Full mode (default, minutes): repeated runs, medians and spread; writes
//!   `BENCHMARKS.md` at the repository root and its plots to `benchmarks/`
//!   (or under `--out DIR`).
//! * `--quick` (seconds, for CI): checks every contender's answers and that
//!   every contender runs, with tiny timed runs whose numbers mean nothing;
//!   writes its report under `target/bench-quick/` unless `--out` is given;
//!   ends with `bench quick: N contenders checked, K failed` and a non-zero
//!   exit status if any check failed.
//!
//! Two halves fill one [`report::Report`]: the in-process half
//! ([`inproc`]) and the network half (`net`, see the marked place in
//! [`main`]).

mod inproc;
mod net;
mod probe;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;

use report::{CpuMeter, Output, Report};

/// Counts heap bytes for the memory measurements (off unless measuring).
#[global_allocator]
static ALLOC: inproc::alloc::Counting = inproc::alloc::Counting;

/// Command-line options, shared by both halves.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "ringcast-benches",
    about = "Benchmarks ringcast against its peers"
)]
pub struct Opts {
    /// Seconds instead of minutes: check every contender and run each once
    /// with tiny counts (for CI; the numbers mean nothing).
    #[arg(long)]
    pub quick: bool,
    /// Where BENCHMARKS.md goes (plots go to DIR/benchmarks/). Default: the
    /// repository root in full mode, target/bench-quick in quick mode.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Skip the network half (no QUIC nodes, no NATS or Redis servers).
    #[arg(long)]
    pub no_net: bool,
    /// Skip the in-process half.
    #[arg(long)]
    pub no_inproc: bool,
    /// Leave the network half's runtime workers unpinned (by default each is
    /// pinned to a CPU of its own for the catch-up runs; see
    /// `src/net/pin.rs`).
    #[arg(long)]
    pub no_pin: bool,
    /// Timed runs per figure (default: 5 in full mode, 1 in quick mode).
    #[arg(long, value_name = "N")]
    pub runs: Option<usize>,
    /// Only run contenders whose name contains this (repeatable; ringcast
    /// always runs): in-process by name, network by short name (`quinn`,
    /// `nats`, `redis`). For development; the report says so.
    #[arg(long, value_name = "NAME")]
    pub only: Vec<String>,
    /// Only run in-process message types whose name contains this
    /// (repeatable: `u64`, `struct`, `payload`). For development/profiling.
    #[arg(long, value_name = "NAME")]
    pub kind: Vec<String>,
    /// Only run these in-process phases (repeatable: `throughput`,
    /// `latency`, `idle`, `memory`); the check phase always runs. For
    /// development/profiling.
    #[arg(long, value_name = "PHASE")]
    pub phase: Vec<String>,
    /// Only run these network phases (repeatable: `throughput`, `latency`,
    /// `catchup`). For development/profiling.
    #[arg(long, value_name = "PHASE", value_parser = ["throughput", "latency", "catchup"])]
    pub net_phase: Vec<String>,
}

/// The command that regenerates BENCHMARKS.md, quoted in its header.
const COMMAND: &str = "cargo run --release -p ringcast-benches";

fn main() -> ExitCode {
    let opts = Opts::parse();
    // The repository root: the parent of this package's directory.
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().unwrap_or(&manifest_dir).to_path_buf();
    let out_dir = opts.out.clone().unwrap_or_else(|| {
        if opts.quick {
            root.join("target/bench-quick")
        } else {
            root.clone()
        }
    });
    let mode = if opts.quick { "quick" } else { "full" };
    let meter = CpuMeter::start();
    let mut report = Report::new();

    if !opts.no_inproc {
        inproc::run(&opts, &mut report);
    }

    // ---------------------------------------------------------------
    // Network half: benches/src/net/ (owned by the network half). It adds
    // its sections and its checks to `report`; see `network_half`.
    // ---------------------------------------------------------------
    if !opts.no_net {
        network_half(&opts, &mut report);
    }

    let cpu = meter.stop();
    let header = header(&opts, &cpu);
    report.print();
    let output = Output {
        markdown: out_dir.join("BENCHMARKS.md"),
        plots_dir: out_dir.join("benchmarks"),
        plots_link: "benchmarks/".into(),
    };
    let mut ok = true;
    match report.write(&output, &header) {
        Ok(paths) => {
            for p in paths {
                eprintln!("wrote {}", p.display());
            }
        }
        Err(e) => {
            eprintln!("error: writing the report: {e:#}");
            ok = false;
        }
    }
    eprintln!("machine load during the run: {}", cpu.describe());
    let (checked, failed) = report.contender_counts();
    let runs = report.checks().len();
    let failed_runs = report
        .checks()
        .iter()
        .filter(|c| c.outcome.is_err())
        .count();
    println!("bench {mode}: {runs} checked runs, {failed_runs} failed");
    println!("bench {mode}: {checked} contenders checked, {failed} failed");
    if ok && failed == 0 && checked > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs the network half and carries its results into `report`.
///
/// This is the one place the two halves meet: the network half exposes
/// `net::run(&net::NetOpts) -> net::NetResults`; here its markdown becomes a
/// section and each of its checks a report check.
fn network_half(opts: &Opts, report: &mut Report) {
    let mut net_opts = if opts.quick {
        net::NetOpts::quick()
    } else {
        net::NetOpts::full()
    };
    if let Some(runs) = opts.runs {
        net_opts.runs = runs;
    }
    net_opts.pin_workers = !opts.no_pin;
    net_opts.phases = opts.net_phase.clone();
    if !opts.only.is_empty() {
        net_opts.contenders.retain(|c| {
            *c == net::Contender::Ringcast || opts.only.iter().any(|o| c.key().contains(o.as_str()))
        });
    }
    let results = net::run(&net_opts);
    let section = report.section("Network (loopback)");
    section.text(results.to_markdown());
    // Latency distributions of the network contenders, from their samples.
    let series: Vec<report::Series> = results
        .latency
        .iter()
        .filter(|r| r.checked.is_ok() && !r.sorted_ns.is_empty())
        .map(|r| report::Series {
            name: r.contender.name().to_string(),
            points: (0..=60)
                .map(|i| {
                    let nines = f64::from(i) * 0.05;
                    let q = 1.0 - 10f64.powf(-nines);
                    let idx = ((r.sorted_ns.len() - 1) as f64 * q).round() as usize;
                    (nines, r.sorted_ns[idx] as f64)
                })
                .collect(),
        })
        .collect();
    if !series.is_empty() {
        section.plot(report::Plot {
            file: "net-latency.png".into(),
            title: "One-way latency over loopback, paced".into(),
            x_label: "percentile".into(),
            y_label: "latency (ns)".into(),
            x_axis: report::XAxis::Nines,
            y_log: true,
            series,
        });
    }
    for c in &results.checks {
        report.check("network", c.contender.name(), &c.what, c.outcome.clone());
    }
}

/// The top of BENCHMARKS.md: how it was made, on what, how noisy.
fn header(opts: &Opts, cpu: &report::CpuUse) -> String {
    let mut s = String::new();
    s.push_str("# Benchmarks\n\n");
    s.push_str(&format!(
        "Generated by `{COMMAND}` (both halves) or `{COMMAND} -- --no-net` (the in-process \
         half only). `-- --quick` checks every contender in seconds; its numbers mean \
         nothing. Do not edit by hand: rerun the command.\n\n"
    ));
    let mut flags = Vec::new();
    if opts.quick {
        flags.push("--quick".to_string());
    }
    if opts.no_net {
        flags.push("--no-net".to_string());
    }
    if opts.no_inproc {
        flags.push("--no-inproc".to_string());
    }
    if opts.no_pin {
        flags.push("--no-pin".to_string());
    }
    if let Some(r) = opts.runs {
        flags.push(format!("--runs {r}"));
    }
    for o in &opts.only {
        flags.push(format!("--only {o}"));
    }
    for k in &opts.kind {
        flags.push(format!("--kind {k}"));
    }
    for p in &opts.phase {
        flags.push(format!("--phase {p}"));
    }
    for p in &opts.net_phase {
        flags.push(format!("--net-phase {p}"));
    }
    s.push_str(&format!(
        "This run: `{COMMAND}{}{}`, {} UTC.\n\n",
        if flags.is_empty() { "" } else { " -- " },
        flags.join(" "),
        utc_now()
    ));
    s.push_str("| machine | |\n| --- | --- |\n");
    for (k, v) in report::machine_info() {
        s.push_str(&format!("| {k} | {v} |\n"));
    }
    s.push_str(&format!("| load during the run | {} |\n\n", cpu.describe()));
    s.push_str(
        "This is a shared 2-core virtual machine: other work on it (reported above) and \
         hypervisor steal make numbers noisy; each table gives the spread over repeated \
         runs. Compare contenders within one run, not across runs.\n\n",
    );
    s.push_str("| crate | version (Cargo.lock) |\n| --- | --- |\n");
    for (n, v) in report::crate_versions() {
        s.push_str(&format!("| {n} | {v} |\n"));
    }
    s.push('\n');
    s
}

/// Current UTC time as `YYYY-MM-DD HH:MM`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// Aborts the process when one measurement runs far past its time limit (a
/// contender that deadlocked), so that CI fails instead of hanging.
#[derive(Clone)]
pub struct Watchdog {
    armed: Arc<Mutex<Option<(String, Instant)>>>,
}

impl Watchdog {
    /// Starts the watchdog thread, disarmed.
    pub fn start() -> Self {
        let armed: Arc<Mutex<Option<(String, Instant)>>> = Arc::default();
        let watched = Arc::clone(&armed);
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(500));
            let guard = watched.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((label, deadline)) = guard.as_ref() {
                if Instant::now() > *deadline {
                    eprintln!("watchdog: `{label}` exceeded its time limit; aborting");
                    println!("bench: watchdog aborted the run during `{label}`");
                    std::process::exit(3);
                }
            }
        });
        Self { armed }
    }

    /// Allows `label` at most `secs` seconds from now.
    pub fn arm(&self, label: &str, secs: u64) {
        *self.armed.lock().unwrap_or_else(|e| e.into_inner()) = Some((
            label.to_string(),
            Instant::now() + Duration::from_secs(secs),
        ));
    }

    /// Stops watching.
    pub fn disarm(&self) {
        *self.armed.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}
