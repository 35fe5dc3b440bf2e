//! Fault-injection schedules checked against the contract.
//!
//! Each schedule, from a seed: a producer and two consumers over QUIC on
//! loopback, each consumer behind a fault proxy. The schedule mixes
//! publishes at varying rates with faults — loss, delay, reordering,
//! duplication, cuts both ways and one way — and producer kill-and-restart
//! and consumer restart. Every delivered event of every subscriber (the
//! producer's own included) is recorded, and the histories are checked:
//! per producer epoch, consecutive sequence numbers, no duplicate, no
//! reordering, every gap covered by a `CursorExpired` whose counts add up,
//! every producer restart announced, payloads byte-identical to what was
//! published, and at the end every live subscriber caught up.
//!
//! `RINGCAST_FAULT_SCHEDULES=N` runs N schedules (default 6);
//! `RINGCAST_FAULT_SEED=S` replays the schedule with seed S. A failing
//! schedule prints its seed.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use ringcast_net::check::Checker;
use ringcast_net::fault::{Faults, UdpProxy};
use ringcast_net::{Node, NodeEvent};
use support::{config, Certs, TOPIC};

const CAPACITY: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Loss,
    Delay,
    Reorder,
    Duplicate,
    CutBoth,
    CutToProducer,
    CutToConsumer,
    ProducerRestart,
    ConsumerRestart,
    Burst,
    Paced,
}

const KINDS: [Kind; 11] = [
    Kind::Loss,
    Kind::Delay,
    Kind::Reorder,
    Kind::Duplicate,
    Kind::CutBoth,
    Kind::CutToProducer,
    Kind::CutToConsumer,
    Kind::ProducerRestart,
    Kind::ConsumerRestart,
    Kind::Burst,
    Kind::Paced,
];

/// What was published: payloads by (epoch, seq).
type Published = Arc<Mutex<HashMap<(u64, u64), Vec<u8>>>>;

/// One subscriber's history, checked as it arrives.
struct History {
    name: String,
    checker: Checker,
    events: u64,
    bad_payloads: Vec<String>,
}

fn record(node: &Node, name: String, published: Published) -> Arc<Mutex<History>> {
    let history = Arc::new(Mutex::new(History {
        name,
        checker: Checker::new(),
        events: 0,
        bad_payloads: Vec::new(),
    }));
    let mut sub = node.subscribe(TOPIC);
    let h = Arc::clone(&history);
    tokio::spawn(async move {
        while let Some(event) = sub.recv().await {
            let mut h = h.lock();
            h.events += 1;
            h.checker.observe(&event);
            if let NodeEvent::Message {
                epoch,
                seq,
                payload,
                ..
            } = &event
            {
                let ok = published
                    .lock()
                    .get(&(*epoch, *seq))
                    .is_some_and(|p| p[..] == payload[..]);
                if !ok {
                    let name = h.name.clone();
                    h.bad_payloads
                        .push(format!("{name}: payload of ({epoch:016x}, {seq}) differs"));
                }
            }
        }
    });
    history
}

struct Consumer {
    name: String,
    node: Node,
    proxy: UdpProxy,
    history: Arc<Mutex<History>>,
    incarnation: u32,
}

#[derive(Default, Debug)]
struct Tally {
    schedules: u64,
    steps: HashMap<Kind, u64>,
    datagrams_lost: u64,
    datagrams_cut: u64,
    datagrams_duplicated: u64,
    datagrams_reordered: u64,
    datagrams_delayed: u64,
    events_checked: u64,
    messages_published: u64,
    violations: Vec<String>,
}

async fn run_schedule(seed: u64, tally: &mut Tally) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let certs = Certs::new(&["p", "c1", "c2"]);
    let published: Published = Arc::default();
    let mut finished: Vec<Arc<Mutex<History>>> = Vec::new();
    let start_producer = || config("p", certs.path()).capacity(CAPACITY).start();

    let mut p = start_producer().await.unwrap();
    let mut own = record(&p, "p (own)".into(), Arc::clone(&published));
    let mut consumers = Vec::new();
    for (i, name) in ["c1", "c2"].into_iter().enumerate() {
        let proxy = UdpProxy::start(p.local_addr(), seed ^ (i as u64 + 1))
            .await
            .unwrap();
        let node = config(name, certs.path())
            .capacity(CAPACITY)
            .peer("p", proxy.addr())
            .start()
            .await
            .unwrap();
        let history = record(&node, format!("{name}#0"), Arc::clone(&published));
        consumers.push(Consumer {
            name: name.into(),
            node,
            proxy,
            history,
            incarnation: 0,
        });
    }

    // Every kind once, in a random order, plus random extra steps.
    let mut steps: Vec<Kind> = KINDS.to_vec();
    for _ in 0..rng.random_range(2..6) {
        steps.push(KINDS[rng.random_range(0..KINDS.len())]);
    }
    steps.shuffle(&mut rng);

    let mut counter = 0u64;
    let publish = |p: &Node, n: usize, rng: &mut rand::rngs::StdRng, counter: &mut u64| {
        for _ in 0..n {
            let len = rng.random_range(0..200);
            let mut payload: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            payload.extend_from_slice(&counter.to_le_bytes());
            *counter += 1;
            // Recorded before publishing: a subscriber may see it at once.
            let seq = p.head();
            published.lock().insert((p.epoch(), seq), payload.clone());
            let got = p.publish(TOPIC, &payload).unwrap();
            assert_eq!(got, seq);
        }
    };

    let verbose = std::env::var_os("RINGCAST_FAULT_SEED").is_some();
    for kind in steps {
        *tally.steps.entry(kind).or_default() += 1;
        let c = rng.random_range(0..consumers.len());
        if verbose {
            eprintln!("step {kind:?} on {} (head {})", consumers[c].name, p.head());
        }
        let hold = Duration::from_millis(rng.random_range(50..900));
        let fault = |faults: Faults| {
            consumers[c].proxy.set(faults);
        };
        match kind {
            Kind::Loss => fault(Faults {
                loss: rng.random_range(0.05..0.4),
                ..Faults::default()
            }),
            Kind::Delay => fault(Faults {
                delay: Duration::from_millis(rng.random_range(1..40)),
                ..Faults::default()
            }),
            Kind::Reorder => fault(Faults {
                reorder: rng.random_range(0.05..0.5),
                ..Faults::default()
            }),
            Kind::Duplicate => fault(Faults {
                duplicate: rng.random_range(0.05..0.5),
                ..Faults::default()
            }),
            Kind::CutBoth => fault(Faults {
                cut_to_target: true,
                cut_to_client: true,
                ..Faults::default()
            }),
            Kind::CutToProducer => fault(Faults {
                cut_to_target: true,
                ..Faults::default()
            }),
            Kind::CutToConsumer => fault(Faults {
                cut_to_client: true,
                ..Faults::default()
            }),
            Kind::ProducerRestart => {
                // Abrupt: dropping the node aborts its tasks.
                drop(p);
                finished.push(own);
                p = start_producer().await.unwrap();
                own = record(&p, "p (own, restarted)".into(), Arc::clone(&published));
                for c in &consumers {
                    c.proxy.set_target(p.local_addr());
                }
            }
            Kind::ConsumerRestart => {
                let old = &mut consumers[c];
                let node = config(&old.name, certs.path())
                    .capacity(CAPACITY)
                    .peer("p", old.proxy.addr());
                old.node.shutdown().await;
                old.incarnation += 1;
                let new = node.start().await.unwrap();
                let history = record(
                    &new,
                    format!("{}#{}", old.name, old.incarnation),
                    Arc::clone(&published),
                );
                finished.push(std::mem::replace(&mut old.history, history));
                old.node = new;
            }
            Kind::Burst => publish(&p, rng.random_range(50..400), &mut rng, &mut counter),
            Kind::Paced => {
                for _ in 0..rng.random_range(5..30) {
                    publish(&p, rng.random_range(1..10), &mut rng, &mut counter);
                    tokio::time::sleep(Duration::from_millis(rng.random_range(1..20))).await;
                }
            }
        }
        // Some traffic under every fault.
        publish(&p, rng.random_range(1..80), &mut rng, &mut counter);
        tokio::time::sleep(hold).await;
        if rng.random_bool(0.6) {
            consumers[c].proxy.heal();
        }
    }

    // Heal everything and let every subscriber catch up. A consumer that
    // (re)connects late starts at the head then, so keep publishing a little
    // until every subscriber has the current epoch up to the head.
    for c in &consumers {
        c.proxy.heal();
    }
    publish(&p, 10, &mut rng, &mut counter);
    let deadline = Instant::now() + Duration::from_secs(20);
    let caught_up = |h: &Arc<Mutex<History>>, p: &Node| {
        let t = h.lock().checker.track("p");
        t.epoch == Some(p.epoch()) && t.next == Some(p.head())
    };
    let mut last_nudge = Instant::now();
    while !(consumers.iter().all(|c| caught_up(&c.history, &p)) && caught_up(&own, &p)) {
        if Instant::now() > deadline {
            for h in consumers.iter().map(|c| &c.history).chain([&own]) {
                if !caught_up(h, &p) {
                    let h = h.lock();
                    tally.violations.push(format!(
                        "seed {seed}: {} did not catch up to ({:016x}, {}): at {:?}",
                        h.name,
                        p.epoch(),
                        p.head(),
                        h.checker.track("p")
                    ));
                }
            }
            break;
        }
        if last_nudge.elapsed() > Duration::from_millis(200) {
            publish(&p, 1, &mut rng, &mut counter);
            last_nudge = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    for c in &consumers {
        let s = c.proxy.stats();
        tally.datagrams_lost += s.lost;
        tally.datagrams_cut += s.cut;
        tally.datagrams_duplicated += s.duplicated;
        tally.datagrams_reordered += s.reordered;
        tally.datagrams_delayed += s.delayed;
    }
    for c in &consumers {
        c.node.shutdown().await;
    }
    p.shutdown().await;
    finished.extend(consumers.into_iter().map(|c| c.history));
    finished.push(own);
    for h in finished {
        let h = h.lock();
        tally.events_checked += h.events;
        for v in h.checker.violations.iter().chain(&h.bad_payloads) {
            tally
                .violations
                .push(format!("seed {seed}: {}: {v}", h.name));
        }
    }
    tally.messages_published += counter;
    tally.schedules += 1;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_schedules_keep_the_contract() {
    let seeds: Vec<u64> = match std::env::var("RINGCAST_FAULT_SEED") {
        Ok(s) => vec![s.parse().expect("RINGCAST_FAULT_SEED is a u64")],
        Err(_) => {
            let n: u64 = std::env::var("RINGCAST_FAULT_SCHEDULES")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(6);
            let base: u64 = std::env::var("RINGCAST_FAULT_BASE_SEED")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0x5eed);
            (0..n).map(|i| base + i).collect()
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut tally = Tally::default();
    let started = Instant::now();
    for seed in &seeds {
        let before = tally.violations.len();
        run_schedule(*seed, &mut tally).await;
        if tally.violations.len() > before {
            eprintln!("schedule with seed {seed} FAILED; replay with RINGCAST_FAULT_SEED={seed}");
        }
    }
    let mut kinds: Vec<_> = tally.steps.iter().collect();
    kinds.sort();
    eprintln!(
        "fault schedules: {} run in {:.1} s, {} messages published, {} events checked, {} violations",
        tally.schedules,
        started.elapsed().as_secs_f64(),
        tally.messages_published,
        tally.events_checked,
        tally.violations.len()
    );
    eprintln!("fault steps by kind: {kinds:?}");
    eprintln!(
        "datagrams: lost {}, cut {}, duplicated {}, reordered {}, delayed {}",
        tally.datagrams_lost,
        tally.datagrams_cut,
        tally.datagrams_duplicated,
        tally.datagrams_reordered,
        tally.datagrams_delayed
    );
    assert!(tally.violations.is_empty(), "{:#?}", tally.violations);
    for kind in KINDS {
        assert!(
            tally.steps.get(&kind).copied().unwrap_or(0) > 0,
            "{kind:?} never ran"
        );
    }
    assert!(tally.events_checked > 0);
}
