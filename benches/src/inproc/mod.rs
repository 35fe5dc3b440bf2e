//! The in-process half: ringcast-core against `tokio::sync::broadcast`,
//! `bus`, `disruptor`, `crossbeam-channel` and `std::sync::mpsc::sync_channel`,
//! each with capacity 4096, carrying `u64`, a 64-byte struct and 256-byte
//! payloads.
//!
//! The driver runs in phases:
//!
//! 1. **Check** every contender and message type (two small throughput runs,
//!    with one and two readers; idle-subscriber runs that lap lossy
//!    contenders; a short paced run). A contender that fails is not timed.
//! 2. **Throughput** with 1 and 2 readers, runs interleaved across
//!    contenders (run 1 of everyone, then run 2, …) so that background noise
//!    spreads over all of them, and for `u64` the floor under every
//!    publisher: one store per message ([`contenders::SlotStores`]).
//! 3. **Latency** at one message every 2 µs, interleaved the same way, and
//!    for `u64` the floor under every contender: one shared word
//!    ([`contenders::OneWord`]), paced and read the same way.
//! 4. **Publish cost with idle subscribers** (0, 1, 16, 1024).
//! 5. **Memory**, from a counting allocator.
//! 6. **Keep-up runs**: ringcast paced at the disruptor's measured goodput,
//!    its reader timing its own absences; short runs, and more of them.
//!
//! Every timed run checks its readers too, and reports into the same checks.

pub mod alloc;
pub mod check;
pub mod contenders;
pub mod kinds;
pub mod scenarios;

use std::time::{Duration, Instant};

use contenders::{
    BusCrate, Contender, Crossbeam, Disruptor, OneWord, Pair, Ringcast, SlotStores, StdMpsc,
    TokioBroadcast,
};
use kinds::{Bytes256, Struct64, U64};
use scenarios::{Bench, Latency, Memory, Throughput, CAPACITY};

use crate::probe;
use crate::report::{
    fmt_bytes, fmt_ns, fmt_rate, fmt_ratio, CpuMeter, CpuUse, Plot, Report, Samples, Series, Table,
    XAxis,
};
use crate::Opts;

/// Group name of this half's checks.
const GROUP: &str = "in-process";
/// Interval between publishes in the latency runs.
const PACE_NS: u64 = 2_000;
/// Idle subscriber counts measured.
const IDLE_SUBS: [usize; 4] = [0, 1, 16, 1024];

/// Every (message type, contender) pair, ringcast first within each type.
fn all_benches() -> Vec<Box<dyn Bench>> {
    macro_rules! pairs {
        ($($k:ty),*) => {
            vec![$(
                Box::new(Pair::<$k, Ringcast>::default()) as Box<dyn Bench>,
                Box::new(Pair::<$k, TokioBroadcast>::default()),
                Box::new(Pair::<$k, BusCrate>::default()),
                Box::new(Pair::<$k, Disruptor>::default()),
                Box::new(Pair::<$k, Crossbeam>::default()),
                Box::new(Pair::<$k, StdMpsc>::default()),
            )*]
        };
    }
    pairs!(U64, Struct64, Bytes256)
}

/// How much work each phase does.
#[derive(Debug, Clone)]
struct Params {
    quick: bool,
    runs: usize,
    /// Throughput messages per run; `None`: the message type's own count.
    throughput_count: Option<u64>,
    latency_count: u64,
    latency_warmup: u64,
    idle_bursts: usize,
    check_count: u64,
}

impl Params {
    fn new(opts: &Opts) -> Self {
        if opts.quick {
            Self {
                quick: true,
                runs: opts.runs.unwrap_or(1),
                throughput_count: Some(20_000),
                latency_count: 5_000,
                latency_warmup: 500,
                idle_bursts: 2,
                check_count: 3 * CAPACITY as u64 + 17,
            }
        } else {
            Self {
                quick: false,
                runs: opts.runs.unwrap_or(5),
                throughput_count: None,
                latency_count: 250_000,
                latency_warmup: 5_000,
                idle_bursts: 15,
                check_count: 10 * CAPACITY as u64 + 17,
            }
        }
    }
}

/// Everything measured for one pair.
#[derive(Default)]
struct Results {
    failed: bool,
    /// Throughput runs with 1 and 2 readers.
    tp: [Vec<Throughput>; 2],
    lat: LatResults,
    idle: [Option<Samples>; 4],
    mem: Option<Memory>,
}

#[derive(Default)]
struct LatResults {
    p50: Samples,
    p99: Samples,
    p999: Samples,
    max: Samples,
    missed: u64,
    interval: Samples,
    merged: Option<hdrhistogram::Histogram<u64>>,
}

impl LatResults {
    /// Adds one run.
    fn add(&mut self, l: Latency) {
        self.p50.push(l.hist.value_at_quantile(0.5) as f64);
        self.p99.push(l.hist.value_at_quantile(0.99) as f64);
        self.p999.push(l.hist.value_at_quantile(0.999) as f64);
        self.max.push(l.hist.max() as f64);
        self.missed += l.missed;
        self.interval.push(l.interval_ns);
        match &mut self.merged {
            Some(m) => {
                let _ = m.add(&l.hist);
            }
            None => self.merged = Some(l.hist),
        }
    }
}

impl Results {
    fn tp_samples(&self, readers: usize, f: impl Fn(&Throughput) -> f64) -> Samples {
        Samples(self.tp[readers - 1].iter().map(f).collect())
    }
}

/// Prints progress to stderr.
macro_rules! progress {
    ($($arg:tt)*) => { eprintln!("[inproc] {}", format!($($arg)*)) };
}

/// Runs the in-process half and adds its sections and checks to `report`.
pub fn run(opts: &Opts, report: &mut Report) {
    let params = Params::new(opts);
    let started = Instant::now();
    let benches: Vec<Box<dyn Bench>> = all_benches()
        .into_iter()
        .filter(|b| {
            opts.only.is_empty()
                || b.contender() == "ringcast"
                || opts.only.iter().any(|o| b.contender().contains(o.as_str()))
        })
        .filter(|b| opts.kind.is_empty() || opts.kind.iter().any(|k| b.kind().contains(k.as_str())))
        .collect();
    let phase = |name: &str| opts.phase.is_empty() || opts.phase.iter().any(|p| p == name);
    let mut results: Vec<Results> = benches.iter().map(|_| Results::default()).collect();
    let clock = quanta::Clock::new();
    let watchdog = crate::Watchdog::start();
    // Other processes' CPU use during each phase: the noise figure.
    let mut loads: Vec<PhaseLoad> = Vec::new();
    let mut meter = PhaseMeter::start();

    // Phase 1: check every pair before timing it.
    progress!("checking {} contender/message-type pairs", benches.len());
    for (b, r) in benches.iter().zip(&mut results) {
        let name = format!("{} / {}", b.contender(), b.kind());
        watchdog.arm(&format!("check {name}"), 120);
        let mut outcomes: Vec<(String, Result<(), String>)> = Vec::new();
        for readers in [1, 2] {
            outcomes.push((
                format!("{}: {readers}-reader stream check", b.kind()),
                b.throughput(readers, params.check_count, None).map(|_| ()),
            ));
        }
        let subs = [1, 16];
        for (n, res) in subs.iter().zip(b.idle_costs(&subs, 3)) {
            if let Some(res) = res {
                outcomes.push((
                    format!("{}: {n} idle subscribers lapped/drained", b.kind()),
                    res.map(|_| ()),
                ));
            }
        }
        outcomes.push((
            format!("{}: paced stream check", b.kind()),
            b.latency(2_000, PACE_NS, 0, &clock).map(|_| ()),
        ));
        for (what, outcome) in outcomes {
            r.failed |= outcome.is_err();
            report.check(GROUP, b.contender(), &what, outcome);
        }
    }

    // The two floors, not contenders: each is checked, then timed in the
    // rounds of the one phase it is a floor for, beside the u64 contenders,
    // through the same loops (and only if u64 runs at all).
    let u64_name = <U64 as kinds::Kind>::NAME;
    let no_u64 = !benches.iter().any(|b| b.kind() == u64_name);
    // One shared word, under every latency.
    let lat_floor: Box<dyn Bench> = Box::new(Pair::<U64, OneWord>::default());
    let mut lat_floor_r = Results {
        failed: no_u64,
        ..Results::default()
    };
    // One store per message, under every publisher.
    let pub_floor: Box<dyn Bench> = Box::new(Pair::<U64, SlotStores>::default());
    let mut pub_floor_r = Results {
        failed: no_u64,
        ..Results::default()
    };
    if !no_u64 {
        watchdog.arm("check the floors", 120);
        let outcome = lat_floor.latency(2_000, PACE_NS, 0, &clock).map(|_| ());
        lat_floor_r.failed = outcome.is_err();
        report.check(
            GROUP,
            lat_floor.contender(),
            &format!("{u64_name}: paced stream check"),
            outcome,
        );
        for readers in [1, 2] {
            let outcome = pub_floor
                .throughput(readers, params.check_count, None)
                .map(|_| ());
            pub_floor_r.failed |= outcome.is_err();
            report.check(
                GROUP,
                pub_floor.contender(),
                &format!("{u64_name}: {readers}-reader stream check"),
                outcome,
            );
        }
    }

    loads.push(meter.stop("check"));
    meter = PhaseMeter::start();
    // Phase 2: throughput, 1 and 2 readers.
    for run in 0..params.runs * usize::from(phase("throughput")) {
        progress!("throughput run {}/{}", run + 1, params.runs);
        let timed = benches
            .iter()
            .zip(&mut results)
            .chain([(&pub_floor, &mut pub_floor_r)]);
        for (b, r) in timed {
            if r.failed {
                continue;
            }
            let count = params.throughput_count.unwrap_or(b.throughput_count());
            for readers in [1, 2] {
                watchdog.arm(
                    &format!("throughput {} / {} / {readers}", b.contender(), b.kind()),
                    120,
                );
                match b.throughput(readers, count, None) {
                    Ok(t) => r.tp[readers - 1].push(t),
                    Err(e) => {
                        r.failed = true;
                        report.check(
                            GROUP,
                            b.contender(),
                            &format!("{}: timed {readers}-reader run", b.kind()),
                            Err(e),
                        );
                    }
                }
            }
        }
    }

    loads.push(meter.stop("throughput"));
    meter = PhaseMeter::start();
    // Phase 3: latency at a paced rate.
    for run in 0..params.runs * usize::from(phase("latency")) {
        progress!("latency run {}/{}", run + 1, params.runs);
        let mut timed: Vec<(&Box<dyn Bench>, &mut Results)> =
            benches.iter().zip(&mut results).collect();
        // The floor runs right behind the contenders it bounds, the u64
        // ones, so that it meets the machine in the state they met.
        let at = timed
            .iter()
            .rposition(|(b, _)| b.kind() == lat_floor.kind())
            .map_or(timed.len(), |i| i + 1);
        timed.insert(at, (&lat_floor, &mut lat_floor_r));
        for (b, r) in timed {
            if r.failed {
                continue;
            }
            watchdog.arm(&format!("latency {} / {}", b.contender(), b.kind()), 120);
            match b.latency(params.latency_count, PACE_NS, params.latency_warmup, &clock) {
                Ok(l) => r.lat.add(l),
                Err(e) => {
                    r.failed = true;
                    report.check(
                        GROUP,
                        b.contender(),
                        &format!("{}: timed latency run", b.kind()),
                        Err(e),
                    );
                }
            }
        }
    }

    loads.push(meter.stop("latency"));
    meter = PhaseMeter::start();
    // Phase 4: publish cost with idle subscribers.
    progress!("publish cost with idle subscribers");
    for (b, r) in benches.iter().zip(&mut results) {
        if r.failed || !phase("idle") {
            continue;
        }
        watchdog.arm(&format!("idle {} / {}", b.contender(), b.kind()), 300);
        let costs = b.idle_costs(&IDLE_SUBS, params.idle_bursts);
        for ((i, subs), cost) in IDLE_SUBS.into_iter().enumerate().zip(costs) {
            match cost {
                None => {}
                Some(Ok(s)) => r.idle[i] = Some(s),
                Some(Err(e)) => {
                    r.failed = true;
                    report.check(
                        GROUP,
                        b.contender(),
                        &format!("{}: {subs} idle subscribers, timed", b.kind()),
                        Err(e),
                    );
                }
            }
        }
    }

    loads.push(meter.stop("idle subscribers"));
    meter = PhaseMeter::start();
    // Phase 5: memory.
    progress!("memory");
    for (b, r) in benches.iter().zip(&mut results) {
        if !phase("memory") {
            continue;
        }
        watchdog.arm(&format!("memory {} / {}", b.contender(), b.kind()), 120);
        r.mem = Some(b.memory());
    }

    loads.push(meter.stop("memory"));
    meter = PhaseMeter::start();
    // Phase 6: ringcast paced at the disruptor's goodput, measured just
    // before each run: the machine's state can change between phases, and
    // with it every rate.
    let find = |name: &str, kind: &str| {
        benches
            .iter()
            .position(|b| b.contender() == name && b.kind() == kind)
    };
    let keep_up = match (find("ringcast", u64_name), find("disruptor", u64_name)) {
        (Some(rc), Some(d))
            if !results[rc].failed && !results[d].failed && !results[d].tp[0].is_empty() =>
        {
            let count = params
                .throughput_count
                .unwrap_or(benches[rc].throughput_count());
            // Short paced runs, and more of them: this machine takes any
            // spinning thread off its core for tens of microseconds every
            // few milliseconds, longer than the ring lasts at a fast pace,
            // so only runs shorter than that gap can show the reader keeping
            // up (`KeepUp::split` sets the others apart).
            let paced_count = (count / KEEP_UP_SHORTER).max(1);
            let keep_up_runs = params.runs * KEEP_UP_MORE;
            let mut runs = Vec::new();
            for run in 0..keep_up_runs {
                watchdog.arm("keep-up run", 120);
                let rate = match benches[d].throughput(1, count, None) {
                    Ok(t) => t.goodput,
                    Err(e) => {
                        report.check(GROUP, "disruptor", "u64: keep-up pace run", Err(e));
                        break;
                    }
                };
                progress!(
                    "keep-up run {}/{} at {}",
                    run + 1,
                    keep_up_runs,
                    fmt_rate(rate)
                );
                match benches[rc].throughput(1, paced_count, Some(rate)) {
                    Ok(t) => runs.push((rate, t)),
                    Err(e) => {
                        report.check(GROUP, "ringcast", "u64: paced keep-up run", Err(e));
                    }
                }
            }
            Some(KeepUp {
                count: paced_count,
                runs,
            })
        }
        _ => None,
    };
    loads.push(meter.stop("keep-up"));
    watchdog.disarm();
    progress!("done in {:.0} s", started.elapsed().as_secs_f64());

    write_sections(
        report,
        &params,
        &benches,
        &results,
        keep_up.as_ref(),
        Floors {
            latency: (!lat_floor_r.failed && !lat_floor_r.lat.p50.0.is_empty())
                .then_some(&lat_floor_r.lat),
            publish: (!pub_floor_r.failed && !pub_floor_r.tp[0].is_empty()).then_some(&pub_floor_r),
        },
        &loads,
    );
}

/// The two floors measured beside the `u64` contenders, where measured.
struct Floors<'a> {
    /// One shared word, timed in the latency rounds ([`OneWord`]).
    latency: Option<&'a LatResults>,
    /// One store per message, timed in the throughput rounds
    /// ([`SlotStores`]).
    publish: Option<&'a Results>,
}

/// Cache-line round trips the probe before and after each phase times.
const PROBE_ROUND_TRIPS: u64 = 100_000;

/// The CPU use during one phase, and the cache-line round trip just before
/// and just after it: on a virtual machine the cost of moving a line
/// between the two cores changes from minute to minute (the two virtual
/// CPUs may share a physical core's caches or not), and every figure of
/// the phase moves with it.
struct PhaseLoad {
    name: &'static str,
    cpu: CpuUse,
    /// ns, before and after.
    round_trip: [f64; 2],
}

/// Measures one phase for a [`PhaseLoad`].
struct PhaseMeter {
    cpu: CpuMeter,
    round_trip: f64,
}

impl PhaseMeter {
    fn start() -> Self {
        let round_trip = probe::core_round_trip_ns(PROBE_ROUND_TRIPS);
        Self {
            cpu: CpuMeter::start(),
            round_trip,
        }
    }

    fn stop(self, name: &'static str) -> PhaseLoad {
        let cpu = self.cpu.stop();
        PhaseLoad {
            name,
            cpu,
            round_trip: [
                self.round_trip,
                probe::core_round_trip_ns(PROBE_ROUND_TRIPS),
            ],
        }
    }
}

/// Index of the ringcast pair for a message type.
fn ringcast_of(benches: &[Box<dyn Bench>], kind: &str) -> Option<usize> {
    benches
        .iter()
        .position(|b| b.contender() == "ringcast" && b.kind() == kind)
}

fn kinds_in(benches: &[Box<dyn Bench>]) -> Vec<(&'static str, &'static str)> {
    let mut kinds: Vec<(&'static str, &'static str)> = Vec::new();
    for b in benches {
        if !kinds.iter().any(|(k, _)| *k == b.kind()) {
            kinds.push((b.kind(), b.kind_slug()));
        }
    }
    kinds
}

/// `value` or FAILED.
fn cell(r: &Results, s: Samples, fmt: impl Fn(f64) -> String) -> String {
    if r.failed {
        "FAILED".into()
    } else {
        s.show(fmt)
    }
}

/// A row of the throughput table: publish rate, goodput and loss with 1
/// and 2 readers.
fn throughput_row(name: String, r: &Results, lossy: bool) -> Vec<String> {
    let mut row = vec![name];
    for readers in [1, 2] {
        row.push(cell(r, r.tp_samples(readers, |t| t.publish_rate), fmt_rate));
        row.push(cell(r, r.tp_samples(readers, |t| t.goodput), fmt_rate));
        row.push(if r.failed {
            "FAILED".into()
        } else if lossy {
            r.tp_samples(readers, |t| t.loss_pct())
                .show_range(|v| format!("{v:.1}%"))
        } else {
            "0 (blocks)".into()
        });
    }
    row
}

/// A latency distribution as plot points: (number of nines, ns).
fn nines_points(h: &hdrhistogram::Histogram<u64>) -> Vec<(f64, f64)> {
    (0..=80)
        .map(|i| {
            let nines = i as f64 * 0.05;
            let q = 1.0 - 10f64.powf(-nines);
            (nines, h.value_at_quantile(q) as f64)
        })
        .collect()
}

/// A paced keep-up run publishes this many times fewer messages than a
/// throughput run.
const KEEP_UP_SHORTER: u64 = 8;

/// And there are this many times more of them than of throughput runs.
const KEEP_UP_MORE: usize = 3;

/// The keep-up runs: ringcast paced at the disruptor's goodput.
struct KeepUp {
    /// Messages each paced run publishes.
    count: u64,
    /// Each run's pace (the disruptor's goodput just before it, messages
    /// per second) and outcome.
    runs: Vec<(f64, Throughput)>,
}

/// How long the ring's capacity lasts at `rate` messages per second: a
/// reader away for longer than this must lose messages, whatever the ring.
fn ring_lasts(rate: f64) -> Duration {
    Duration::from_secs_f64(CAPACITY as f64 / rate)
}

impl KeepUp {
    /// The runs in which the reader was never away for as long as the ring
    /// lasts at the run's pace (those that test the ring), and the others.
    fn split(&self) -> (Vec<&Throughput>, Vec<&Throughput>) {
        let (present, away): (Vec<_>, Vec<_>) = self
            .runs
            .iter()
            .partition(|(rate, t)| t.reader_away.is_some_and(|away| away < ring_lasts(*rate)));
        fn runs(v: Vec<&(f64, Throughput)>) -> Vec<&Throughput> {
            v.into_iter().map(|(_, t)| t).collect()
        }
        (runs(present), runs(away))
    }

    /// Samples of `f` over the runs.
    fn samples(&self, f: impl Fn(f64, &Throughput) -> f64) -> Samples {
        Samples(self.runs.iter().map(|(rate, t)| f(*rate, t)).collect())
    }
}

fn write_sections(
    report: &mut Report,
    params: &Params,
    benches: &[Box<dyn Bench>],
    results: &[Results],
    keep_up: Option<&KeepUp>,
    floors: Floors,
    loads: &[PhaseLoad],
) {
    let floor = floors.latency;
    let kinds = kinds_in(benches);
    let runs = params.runs;
    let tp_counts: Vec<String> = kinds
        .iter()
        .filter_map(|(k, _)| benches.iter().find(|b| b.kind() == *k))
        .map(|b| {
            format!(
                "{} {}",
                params
                    .throughput_count
                    .unwrap_or(b.throughput_count())
                    .to_string()
                    .as_str(),
                b.kind()
            )
        })
        .collect();

    let s = report.section("In-process: method");
    s.text(format!(
        "Contenders, all with capacity {CAPACITY}: **ringcast** (ringcast-core's typed ring for \
         `u64` and the 64-byte struct, its byte ring for 256-byte payloads), \
         **tokio broadcast** (`tokio::sync::broadcast`), **bus**, **disruptor** (v4, single \
         producer, one event poller per reader, `BusySpin`), **crossbeam-channel** and \
         **std mpsc sync_channel** (one bounded channel per reader: the publisher sends each \
         reader its own copy). Peers carry `u64`, the `#[repr(C)]` 64-byte struct, or \
         `bytes::Bytes` for payloads (one allocation per message, a reference-count clone per \
         reader); the disruptor's preallocated events hold a `Vec<u8>` overwritten in place; \
         ringcast copies payloads into its arena and out into each reader's reused `Vec<u8>`."
    ));
    s.text(
        "Every reader of every contender waits the same way: it polls the non-blocking \
         receive, spinning with a spin-loop hint and yielding its core after 100 empty polls. \
         Each reads the way its API offers for many waiting messages: the disruptor's poller \
         takes every available event at once, ringcast's typed-ring readers take up to 64 in \
         one `try_recv_many` (its byte ring and the other peers, one receive per message). \
         Every reader checks every message (sequence, order, integrity) and every announced \
         loss, and each run ends with delivered + missed == published per reader. Lossy \
         contenders (ringcast, tokio broadcast) drop for readers that fall more than the \
         capacity behind and say so; blocking ones (bus, disruptor, crossbeam-channel, std \
         mpsc) make the publisher wait, so they never lose but their publish rate is bounded \
         by the slowest reader.",
    );
    s.text(format!(
        "Numbers are the **median of {runs} run(s)** with the spread as ±half the range \
         (max − min) relative to the median. Throughput runs publish {}. \
         **2 readers + 1 publisher are 3 busy threads on a 2-core machine: that \
         oversubscribes it**, and those numbers measure scheduling as much as the structures.{}",
        tp_counts.join(", "),
        if params.quick {
            " **Quick mode: tiny runs for checking only; these numbers mean nothing.**"
        } else {
            ""
        }
    ));

    let mut t = Table::new(&[
        "phase",
        "wall time",
        "this process, cores",
        "other processes, cores",
        "steal, cores",
        "cache-line round trip, before → after",
    ])
    .caption(
        "Machine load during each phase (the noise figure: with 2 cores, other work \
              above ~0.2 cores means readers and publishers were descheduled; the round \
              trip of one cache line between two threads, probed just before and after the \
              phase, is the price of every handoff between publisher and reader, and on this \
              virtual machine it changes severalfold from minute to minute)",
    );
    for PhaseLoad {
        name,
        cpu,
        round_trip: [before, after],
    } in loads
    {
        let wall = cpu.wall.as_secs_f64().max(1e-9);
        t.row(vec![
            name.to_string(),
            format!("{wall:.1} s"),
            format!("{:.2}", cpu.own_secs / wall),
            format!("{:.2}", cpu.others_secs / wall),
            format!("{:.2}", cpu.steal_secs / wall),
            format!("{before:.0} ns → {after:.0} ns"),
        ]);
    }
    s.table(t);

    // Throughput.
    let s = report.section("In-process: throughput and loss");
    s.text(
        "Publish rate: messages published per second of the publisher's own time. Goodput: \
         messages each reader received per second from the start to its end of stream, \
         averaged over readers. Loss: the share of messages readers were told they missed.",
    );
    s.text(
        "These figures also depend on memory layout that neither contender controls. Two \
         builds of this benchmark that differed only in ringcast-core's code measured the \
         disruptor's u64 publish rate with one reader at 536 M/s in one and 947 M/s in the \
         other (medians of 11 alternating runs each, in rounds where a cache line took under \
         120 ns to cross from one of the machine's cores to the other). The second build, \
         started with a longer environment, which moves the main thread's stack, measured \
         509 to 806 M/s; compiled with every loop aligned to 64 bytes \
         (`-C llvm-args=-align-loops=64`), the two builds gave 539 and 545 M/s. So a ratio \
         against a peer from one build and one start can be off by that much, in either \
         direction, with no change to either contender.",
    );
    for (kind, _) in &kinds {
        let mut t = Table::new(&[
            "contender",
            "publish, 1 reader",
            "goodput, 1 reader",
            "loss, 1 reader",
            "publish, 2 readers",
            "goodput/reader, 2 readers",
            "loss, 2 readers",
        ])
        .caption(*kind);
        for (b, r) in benches.iter().zip(results) {
            if b.kind() != *kind {
                continue;
            }
            t.row(throughput_row(b.contender().to_string(), r, b.lossy()));
        }
        let pub_floor = floors
            .publish
            .filter(|_| *kind == <U64 as kinds::Kind>::NAME);
        if let Some(f) = pub_floor {
            t.row(throughput_row(format!("*{}*", SlotStores::NAME), f, true));
        }
        s.table(t);
        if pub_floor.is_some() {
            s.text(
                "The last row is not a contender but the floor under every publisher: a ring \
                 of 4096 words in which the publisher stores each message into its slot and \
                 does nothing else (no head, no reservation, no check for waiting readers), \
                 timed in the same rounds. Its readers tell a new message from an old one by \
                 the sequence number every benchmark message carries, which no general ring \
                 can rely on. A publisher cannot do less per message than store it, so no \
                 ring's publisher is faster on the same threads, beyond the run-to-run spread. \
                 It bounds the publisher alone: its readers, checking every slot, are slower \
                 than it and lose most messages, so it says nothing of what a publisher can do \
                 while its reader keeps up.",
            );
        }
    }

    // Latency.
    let s = report.section("In-process: one-way latency at a paced rate");
    let interval = Samples(
        results
            .iter()
            .flat_map(|r| r.lat.interval.0.iter().copied())
            .collect(),
    );
    s.text(format!(
        "One reader; the publisher publishes a message every {} µs (achieved: median \
         interval {}), stamping each with the shared TSC clock (`quanta`) just before \
         publishing; the reader records receive time − stamp in an HDR histogram, reading \
         the clock only once the loads that brought it the message have completed (a load \
         fence before the TSC read: without it the processor may read the clock while the \
         message is still on its way, and a reader that learns of a message from one cache \
         line and copies it from another is timed before it has it). {} \
         messages per run, the first {} not recorded. Percentiles are medians over runs; the \
         plots merge all runs. Resolution: a clock read takes about 10 ns on this VM, so \
         sub-100 ns medians move in ~10 ns steps. Tails (p99.9, max) near a millisecond, \
         for every contender, are scheduler time slices: the publisher and the spinning \
         reader fill both cores, so any other activity preempts one of them.",
        PACE_NS / 1000,
        fmt_ns(interval.median()),
        params.latency_count,
        params.latency_warmup,
    ));
    for (kind, slug) in &kinds {
        let mut t = Table::new(&["contender", "p50", "p99", "p99.9", "max", "lost"]).caption(*kind);
        let mut series = Vec::new();
        for (b, r) in benches.iter().zip(results) {
            if b.kind() != *kind {
                continue;
            }
            t.row(vec![
                b.contender().to_string(),
                cell(r, r.lat.p50.clone(), fmt_ns),
                cell(r, r.lat.p99.clone(), fmt_ns),
                cell(r, r.lat.p999.clone(), fmt_ns),
                cell(r, r.lat.max.clone(), fmt_ns),
                if r.failed {
                    "FAILED".into()
                } else {
                    r.lat.missed.to_string()
                },
            ]);
            if let (false, Some(h)) = (r.failed, &r.lat.merged) {
                series.push(Series {
                    name: b.contender().to_string(),
                    points: nines_points(h),
                });
            }
        }
        let floor = floor.filter(|_| *kind == <U64 as kinds::Kind>::NAME);
        if let Some(f) = floor {
            t.row(vec![
                format!("*{}*", OneWord::NAME),
                f.p50.show(fmt_ns),
                f.p99.show(fmt_ns),
                f.p999.show(fmt_ns),
                f.max.show(fmt_ns),
                format!("{} (keeps only the newest)", f.missed),
            ]);
            if let Some(h) = &f.merged {
                series.push(Series {
                    name: OneWord::NAME.to_string(),
                    points: nines_points(h),
                });
            }
        }
        s.table(t);
        if floor.is_some() {
            s.text(
                "The last row is not a contender but the floor under all of them: one shared \
                 word that the publisher overwrites with each message and the reader polls, \
                 paced, stamped, polled and checked exactly as the contenders are. A message \
                 crosses as one store and one load of one cache line, the least that any \
                 structure shared by two threads can do, so no contender can be faster on the \
                 same two threads by more than the clock's steps and the run-to-run spread. It \
                 keeps only the newest message: a reader that was late \
                 skips to it and counts what it skipped as lost.",
            );
        }
        s.plot(Plot {
            file: format!("inproc-latency-{slug}.png"),
            title: format!("One-way latency, {kind}, one message every 2 µs"),
            x_label: "percentile".into(),
            y_label: "latency (ns)".into(),
            x_axis: XAxis::Nines,
            y_log: true,
            series,
        });
    }

    // Idle subscribers.
    let s = report.section("In-process: publish cost versus idle subscribers");
    s.text(format!(
        "One thread, no reader running: the contender has 0, 1, 16 or 1024 subscribers \
         attached that never read while the publisher publishes. Each sample times a burst \
         of {CAPACITY} publishes (the capacity, so that blocking contenders never block); \
         before each burst the subscribers of blocking contenders are drained (untimed, \
         checked), while those of lossy contenders stay idle and fall behind (at the end \
         every subscriber reads to the end and is checked). The four subscriber counts take \
         turns burst by burst, so drift spreads over all of them. Median of {} bursts after \
         a warm-up burst, in ns per publish. The disruptor cannot be built without a \
         consumer; tokio broadcast with no receiver refuses the send and stores nothing; \
         copy-per-reader fan-out with no reader has nothing to do.",
        params.idle_bursts
    ));
    for (kind, slug) in &kinds {
        let mut t = Table::new(&["contender", "0", "1", "16", "1024", "1024 ÷ 1"])
            .caption(format!("{kind}, ns per publish"));
        let mut series = Vec::new();
        for (b, r) in benches.iter().zip(results) {
            if b.kind() != *kind {
                continue;
            }
            let mut row = vec![b.contender().to_string()];
            let mut points = Vec::new();
            for (i, idle) in r.idle.iter().enumerate() {
                row.push(match idle {
                    _ if r.failed => "FAILED".into(),
                    // Copy-per-reader fan-out with no reader has nothing to do.
                    Some(s) if s.median() < 0.1 => "≈0 (no queue)".into(),
                    Some(s) => {
                        points.push((i as f64, s.median()));
                        s.show(fmt_ns)
                    }
                    None => "n/a".into(),
                });
            }
            row.push(match (&r.idle[1], &r.idle[3]) {
                (Some(b1), Some(b3)) if !r.failed => fmt_ratio(b3.median() / b1.median()),
                _ => "–".into(),
            });
            t.row(row);
            series.push(Series {
                name: b.contender().to_string(),
                points,
            });
        }
        s.table(t);
        s.plot(Plot {
            file: format!("inproc-idle-subscribers-{slug}.png"),
            title: format!("Publish cost vs idle subscribers, {kind}"),
            x_label: "idle subscribers".into(),
            y_label: "ns per publish".into(),
            x_axis: XAxis::Categories(IDLE_SUBS.iter().map(|n| n.to_string()).collect()),
            y_log: true,
            series,
        });
    }

    // Memory.
    let s = report.section("In-process: memory");
    s.text(format!(
        "Heap bytes counted by a counting global allocator in the benchmark binary. \
         \"Shared\": allocated by creating the contender with one reader. \"Per extra \
         subscriber\": (heap with 1025 readers − heap with 1) ÷ 1024. \"Handle\": the size of \
         one reader's handle itself. \"Holding {CAPACITY}\": live heap after publishing \
         {CAPACITY} messages that nobody read, with 1 and with 16 readers (peers carrying \
         `Bytes` hold one payload allocation per message plus a handle per queued copy). \
         A ringcast byte-ring subscriber here includes its own 256-byte receive buffer \
         (payloads are copied out into it)."
    ));
    for (kind, _) in &kinds {
        let mut t = Table::new(&[
            "contender",
            "shared (1 reader)",
            "per extra subscriber",
            "handle",
            "holding 4096, 1 reader",
            "holding 4096, 16 readers",
        ])
        .caption(*kind);
        for (b, r) in benches.iter().zip(results) {
            if b.kind() != *kind {
                continue;
            }
            if let Some(m) = &r.mem {
                t.row(vec![
                    b.contender().to_string(),
                    fmt_bytes(m.ring),
                    fmt_bytes(m.per_sub),
                    format!("{} B", m.handle),
                    fmt_bytes(m.full_1),
                    fmt_bytes(m.full_16),
                ]);
            }
        }
        s.table(t);
    }

    // Ratios and where ringcast is behind.
    let s = report.section("In-process: ringcast against each peer");
    s.text(
        "Ratios of medians, ringcast ÷ peer. Above 1 is better for ringcast in rates, below 1 \
         is better for ringcast in latency and cost.",
    );
    let mut behind: Vec<String> = Vec::new();
    let mut tied: Vec<String> = Vec::new();
    for (kind, _) in &kinds {
        let Some(rc) = ringcast_of(benches, kind) else {
            continue;
        };
        let rr = &results[rc];
        let mut t = Table::new(&[
            "peer",
            "publish 1r",
            "goodput 1r",
            "publish 2r",
            "goodput 2r",
            "p50",
            "p99",
            "publish, 1024 idle",
        ])
        .caption(format!("{kind}: ringcast ÷ peer"));
        for (b, r) in benches.iter().zip(results) {
            if b.kind() != *kind || b.contender() == "ringcast" {
                continue;
            }
            if r.failed || rr.failed {
                t.row(
                    std::iter::once(b.contender().to_string())
                        .chain((0..7).map(|_| "–".to_string()))
                        .collect(),
                );
                continue;
            }
            // (ringcast's samples, the peer's, whether higher is better, what).
            let empty = Samples::default();
            let mut cells: Vec<(Samples, Samples, bool, String)> = Vec::new();
            for readers in [1, 2] {
                cells.push((
                    rr.tp_samples(readers, |t| t.publish_rate),
                    r.tp_samples(readers, |t| t.publish_rate),
                    true,
                    format!("publish rate, {readers} reader(s)"),
                ));
                cells.push((
                    rr.tp_samples(readers, |t| t.goodput),
                    r.tp_samples(readers, |t| t.goodput),
                    true,
                    format!("goodput, {readers} reader(s)"),
                ));
            }
            cells.push((
                rr.lat.p50.clone(),
                r.lat.p50.clone(),
                false,
                "p50 latency".into(),
            ));
            cells.push((
                rr.lat.p99.clone(),
                r.lat.p99.clone(),
                false,
                "p99 latency".into(),
            ));
            cells.push((
                rr.idle[3].clone().unwrap_or_else(|| empty.clone()),
                r.idle[3].clone().unwrap_or_else(|| empty.clone()),
                false,
                "publish cost with 1024 idle subscribers".into(),
            ));
            let mut row = vec![b.contender().to_string()];
            for (ours, theirs, higher_is_better, what) in cells {
                if ours.is_empty() || theirs.is_empty() {
                    row.push("–".into());
                    continue;
                }
                let ratio = ours.median() / theirs.median();
                let (peer_better, clearly, factor, word) = if higher_is_better {
                    (
                        ratio < 1.0,
                        theirs.min() > ours.max(),
                        1.0 / ratio,
                        "higher",
                    )
                } else {
                    (ratio > 1.0, theirs.max() < ours.min(), ratio, "lower")
                };
                if peer_better {
                    let line = format!(
                        "{kind}, {what}: {} {} {word}",
                        b.contender(),
                        fmt_ratio(factor)
                    );
                    if clearly {
                        behind.push(line);
                    } else {
                        tied.push(line);
                    }
                }
                row.push(fmt_ratio(ratio));
            }
            t.row(row);
        }
        s.table(t);
    }
    let list = |lines: &[String]| {
        if lines.is_empty() {
            "- none".to_string()
        } else {
            lines
                .iter()
                .map(|l| format!("- {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    s.text(format!(
        "**Where ringcast is behind**, beyond the run-to-run spread (every run of the peer \
         beat every run of ringcast; the factor compares medians):\n\n{}",
        list(&behind)
    ));
    s.text(format!(
        "Peer medians better than ringcast's but within the spread (the runs overlap):\n\n{}",
        list(&tied)
    ));

    // Targets.
    let s = report.section("In-process targets (issue 4)");
    let u64_name = <U64 as kinds::Kind>::NAME;
    let get = |name: &str| {
        benches
            .iter()
            .position(|b| b.contender() == name && b.kind() == u64_name)
            .map(|i| &results[i])
            .filter(|r| !r.failed)
    };
    let mut t = Table::new(&["target", "measured", "verdict"]);
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "**met**".to_string(),
        Some(false) => "**missed**".to_string(),
        None => "not measured".to_string(),
    };
    let (rc, dis) = (get("ringcast"), get("disruptor"));
    if let (Some(rc), Some(dis)) = (rc, dis) {
        // Ratios round by round: a round runs the contenders back to back,
        // seconds apart, so each compares them in one state of the machine,
        // which the medians over all rounds may not.
        let per_round = |f: fn(&Throughput) -> f64| {
            Samples(
                rc.tp[0]
                    .iter()
                    .zip(&dis.tp[0])
                    .map(|(a, d)| f(a) / f(d))
                    .collect(),
            )
        };
        let show_rounds = |r: &Samples| {
            format!(
                "round by round {} [{}–{}]",
                fmt_ratio(r.median()),
                fmt_ratio(r.min()),
                fmt_ratio(r.max())
            )
        };
        let (a, d) = (
            rc.tp_samples(1, |t| t.publish_rate),
            dis.tp_samples(1, |t| t.publish_rate),
        );
        let rounds = per_round(|t| t.publish_rate);
        // Met only if the medians and the rounds both say so.
        let ratio = (a.median() / d.median()).min(rounds.median());
        // Where the disruptor's reader did not hold its publisher back, the
        // ratio is that of the two publish paths alone.
        let paths = match (&rc.idle[0], &dis.idle[1]) {
            _ if ratio >= 1.5 => String::new(),
            // The floor, where measured, says more than the publish paths.
            _ if floors.publish.is_some() => {
                let least = floors
                    .publish
                    .map_or(f64::NAN, |f| f.tp_samples(1, |t| t.publish_rate).median());
                let floor_ratio = least / d.median();
                if floor_ratio < 1.5 {
                    format!(
                        ". One store per message, the floor under any ring's publisher \
                         (throughput section), published at {} in the same rounds: {} the \
                         disruptor's. A publisher cannot do less per message than store it, \
                         so this target is out of reach on this machine",
                        fmt_rate(least),
                        fmt_ratio(floor_ratio),
                    )
                } else {
                    format!(
                        ". One store per message, the floor under any ring's publisher \
                         (throughput section), published at {} in the same rounds: {} the \
                         disruptor's, so the target is not shown to be out of reach",
                        fmt_rate(least),
                        fmt_ratio(floor_ratio),
                    )
                }
            }
            (Some(own), Some(theirs)) => {
                let pace = |rate: f64, ns: f64| 100.0 * rate * ns * 1e-9;
                format!(
                    ". Without a reader running (publish cost table), ringcast publishes in {} \
                     and the disruptor in {}, so ringcast's rate is the higher one only where \
                     the disruptor's reader holds its publisher back. Here the disruptor's \
                     publisher ran at {:.0}% of the pace its publish path allows alone \
                     (ringcast's at {:.0}%)",
                    fmt_ns(own.median()),
                    fmt_ns(theirs.median()),
                    pace(d.median(), theirs.median()),
                    pace(a.median(), own.median()),
                )
            }
            _ => String::new(),
        };
        t.row(vec![
            "u64, 1 reader: publish rate ≥ 1.5× disruptor's".into(),
            format!(
                "{} vs {}: {} ({}){paths}",
                fmt_rate(a.median()),
                fmt_rate(d.median()),
                fmt_ratio(a.median() / d.median()),
                show_rounds(&rounds),
            ),
            verdict(Some(ratio >= 1.5)),
        ]);
        let (a, d) = (
            rc.tp_samples(1, |t| t.goodput),
            dis.tp_samples(1, |t| t.goodput),
        );
        let rounds = per_round(|t| t.goodput);
        let ratio = (a.median() / d.median()).min(rounds.median());
        let sat_loss = rc.tp_samples(1, |t| t.loss_pct()).median();
        let (keep_text, keep_ok) = match keep_up {
            Some(k) if !k.runs.is_empty() => {
                let good = k.samples(|_, t| t.goodput);
                let reached = k.samples(|_, t| t.publish_rate);
                let paces = k.samples(|rate, _| rate);
                let lasts = k.samples(|rate, _| ring_lasts(rate).as_secs_f64() * 1e6);
                let (present, away) = k.split();
                let lost = |runs: &[&Throughput]| runs.iter().map(|t| t.missed).sum::<u64>();
                let longest = |runs: &[&Throughput]| {
                    let us = runs
                        .iter()
                        .filter_map(|t| t.reader_away)
                        .max()
                        .unwrap_or_default()
                        .as_secs_f64()
                        * 1e6;
                    format!("{us:.1} µs")
                };
                let mut text = format!(
                    "; paced, run by run, at the goodput a disruptor run reached just before \
                     (median {}; ringcast's publisher reached {}): goodput {}, {} lost in {} \
                     runs of {} messages. At these paces the ring's {CAPACITY} messages last \
                     {:.1}–{:.1} µs",
                    fmt_rate(paces.median()),
                    fmt_rate(reached.median()),
                    fmt_rate(good.median()),
                    lost(&present) + lost(&away),
                    k.runs.len(),
                    k.count,
                    lasts.min(),
                    lasts.max(),
                );
                if !present.is_empty() {
                    text += &format!(
                        "; in {} of them the reader never went that long between two polls \
                         (longest gap {}) and they lost {}",
                        present.len(),
                        longest(&present),
                        lost(&present),
                    );
                }
                if !away.is_empty() {
                    text += &format!(
                        "; in {} the reader was off its core for longer (up to {}: preempted, or \
                         yielded while caught up and not run again) and they lost {}: a reader \
                         away for longer than the ring lasts must lose messages, whatever the ring",
                        away.len(),
                        longest(&away),
                        lost(&away),
                    );
                }
                if present.is_empty() {
                    text += ". No run had the reader on its core throughout, so zero loss while \
                             it keeps up is not shown";
                }
                let reach = reached.median() / paces.median();
                if reach < 0.95 {
                    text += &format!(
                        ". Paced, ringcast's publisher fell short of the pace ({}): a reader \
                         that keeps up reads at the publisher's heels, and the two pull the \
                         same cache lines from each other, so where nothing may be lost, \
                         ringcast moved less than the disruptor",
                        fmt_ratio(reach),
                    );
                }
                // Met only if some run tested the ring, and every such run
                // lost nothing.
                (text, Some(!present.is_empty() && lost(&present) == 0))
            }
            _ => (String::new(), None),
        };
        t.row(vec![
            "u64, 1 reader: goodput ≥ disruptor's, zero loss while the reader keeps up".into(),
            format!(
                "saturated: {} vs {}: {} ({}; ringcast loss {sat_loss:.1}% with the \
                 publisher unthrottled){keep_text}",
                fmt_rate(a.median()),
                fmt_rate(d.median()),
                fmt_ratio(a.median() / d.median()),
                show_rounds(&rounds),
            ),
            verdict(keep_ok.map(|k| k && ratio >= 1.0)),
        ]);
    }
    if let Some(rc) = rc {
        let best = benches
            .iter()
            .zip(results)
            .filter(|(b, r)| b.kind() == u64_name && b.contender() != "ringcast" && !r.failed)
            .map(|(b, r)| (b.contender(), r.lat.p50.median()))
            .filter(|(_, v)| v.is_finite())
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((peer, p50)) = best {
            let ratio = rc.lat.p50.median() / p50;
            let goal = 0.8 * p50;
            let reach = match floor {
                Some(f) if ratio > 0.8 => {
                    let least = f.p50.median();
                    if least > p50 {
                        format!(
                            ". One shared word, the floor under any ring (latency section), \
                             took {}, more than {peer}'s {}: in this run it did not bound the \
                             contenders, so it shows nothing about whether the target ({}) is \
                             within reach",
                            fmt_ns(least),
                            fmt_ns(p50),
                            fmt_ns(goal),
                        )
                    } else if least > goal {
                        format!(
                            ". The target is {} at the median; one shared word, the floor \
                             under any ring (latency section), took {} ({} of {peer}'s): \
                             a message cannot cross between the two threads faster than one \
                             cache line does, so this target is out of reach on this machine",
                            fmt_ns(goal),
                            fmt_ns(least),
                            fmt_ratio(least / p50),
                        )
                    } else {
                        format!(
                            ". The target is {} at the median; one shared word, the floor \
                             under any ring (latency section), took {}: below the target, \
                             so the target is not shown to be out of reach",
                            fmt_ns(goal),
                            fmt_ns(least),
                        )
                    }
                }
                _ => String::new(),
            };
            t.row(vec![
                "u64: p50 one-way latency ≤ 0.8× the best peer's".into(),
                format!(
                    "{} vs {peer} {}: {}{reach}",
                    fmt_ns(rc.lat.p50.median()),
                    fmt_ns(p50),
                    fmt_ratio(ratio)
                ),
                verdict(Some(ratio <= 0.8)),
            ]);
        }
        if let (Some(none), Some(many)) = (&rc.idle[0], &rc.idle[3]) {
            let ratio = many.median() / none.median();
            t.row(vec![
                "u64: publish cost with 1024 idle subscribers within 10% of none".into(),
                format!(
                    "{} vs {}: {}",
                    fmt_ns(many.median()),
                    fmt_ns(none.median()),
                    fmt_ratio(ratio)
                ),
                verdict(Some((ratio - 1.0).abs() <= 0.10)),
            ]);
        }
    }
    if t.is_empty() {
        s.text("Not evaluated: ringcast or the disruptor was not run or failed its checks.");
    } else {
        s.text(
            "Evaluated from this run's medians; the throughput ratios are also taken round \
             by round (each round runs the contenders back to back, in one state of the \
             machine), and a target is met only if both the ratio of the medians and the \
             median of the rounds' ratios meet it. \"Keeps up\" is tested directly: before \
             each keep-up run the disruptor runs once more, unthrottled, and ringcast's \
             publisher is then paced at the goodput it reached (in groups of 64 messages, \
             catching up after a hold-up by a quarter of the ring at most), and its reader, \
             which reads the clock \
             after every poll, must lose nothing in every run where it was never away \
             between two polls for as long as the ring lasts at that pace. A run where it \
             was away that long (the scheduler gave its core to something else) tests the \
             machine, not the ring, and is reported apart.",
        );
        s.text(format!(
            "On this machine a spinning thread loses its core for tens of microseconds \
             every few milliseconds, longer than the ring lasts at the fastest paces, so the \
             keep-up runs are short (1/{KEEP_UP_SHORTER} of a throughput run) and \
             {KEEP_UP_MORE} times as many: short runs are the ones that can show a reader \
             present throughout."
        ));
        s.table(t);
    }
}
