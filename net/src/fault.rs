//! A UDP proxy on loopback that injects network faults between two nodes:
//! partitions (both ways or one way), loss, delay, duplication and
//! reordering. Used by the demo and the tests to cut and heal links
//! without touching the nodes.
//!
//! A consumer dials the proxy's address instead of its peer's; the proxy
//! forwards each client's datagrams to the target from a socket of its own
//! and the replies back.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

/// The faults a proxy applies now. The default forwards everything.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Drop every datagram from the client to the target.
    pub cut_to_target: bool,
    /// Drop every datagram from the target to the client.
    pub cut_to_client: bool,
    /// Drop each datagram with this probability (0.0 ..= 1.0).
    pub loss: f64,
    /// Delay every datagram by this much.
    pub delay: Duration,
    /// Send each datagram twice with this probability.
    pub duplicate: f64,
    /// Hold a datagram back and send it after the next one, with this
    /// probability.
    pub reorder: f64,
}

/// Counts of what a proxy did, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Datagrams forwarded.
    pub forwarded: u64,
    /// Datagrams dropped by a cut.
    pub cut: u64,
    /// Datagrams dropped by random loss.
    pub lost: u64,
    /// Datagrams sent twice.
    pub duplicated: u64,
    /// Datagrams sent out of order.
    pub reordered: u64,
    /// Datagrams delayed.
    pub delayed: u64,
}

#[derive(Debug)]
struct State {
    faults: Faults,
    stats: ProxyStats,
    rng: rand::rngs::StdRng,
    /// A datagram held back for reordering, per direction (to target, to client).
    held: [Option<(Vec<u8>, SocketAddr)>; 2],
}

/// A running fault-injecting proxy. Dropping it stops it.
#[derive(Debug)]
pub struct UdpProxy {
    addr: SocketAddr,
    target: Arc<Mutex<SocketAddr>>,
    state: Arc<Mutex<State>>,
    tasks: JoinSet<()>,
}

impl UdpProxy {
    /// Starts a proxy on 127.0.0.1 (any port) forwarding to `target`.
    /// `seed` makes the random faults reproducible.
    pub async fn start(target: SocketAddr, seed: u64) -> std::io::Result<Self> {
        let listen = Arc::new(UdpSocket::bind(("127.0.0.1", 0)).await?);
        let addr = listen.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            faults: Faults::default(),
            stats: ProxyStats::default(),
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            held: [None, None],
        }));
        let target = Arc::new(Mutex::new(target));
        let mut tasks = JoinSet::new();
        tasks.spawn(run(listen, Arc::clone(&target), Arc::clone(&state)));
        Ok(Self {
            addr,
            target,
            state,
            tasks,
        })
    }

    /// The address clients dial.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Forwards to `target` from now on (a restarted node on a new port).
    pub fn set_target(&self, target: SocketAddr) {
        *self.target.lock() = target;
    }

    /// Replaces the faults.
    pub fn set(&self, faults: Faults) {
        self.state.lock().faults = faults;
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.state.lock().faults
    }

    /// Cuts the link both ways.
    pub fn cut(&self) {
        let mut state = self.state.lock();
        state.faults.cut_to_target = true;
        state.faults.cut_to_client = true;
    }

    /// Heals everything: no cut, no loss, no delay.
    pub fn heal(&self) {
        self.state.lock().faults = Faults::default();
    }

    /// What the proxy did so far.
    pub fn stats(&self) -> ProxyStats {
        self.state.lock().stats
    }

    /// Stops forwarding.
    pub fn stop(&mut self) {
        self.tasks.abort_all();
    }
}

/// What to do with one datagram.
enum Verdict {
    Drop,
    Send {
        copies: usize,
        delay: Duration,
        /// A previously held datagram to send after this one.
        released: Option<(Vec<u8>, SocketAddr)>,
    },
    Hold,
}

fn judge(state: &Mutex<State>, to_target: bool, data: &[u8], dest: SocketAddr) -> Verdict {
    let mut state = state.lock();
    let State {
        faults,
        stats,
        rng,
        held,
    } = &mut *state;
    let cut = if to_target {
        faults.cut_to_target
    } else {
        faults.cut_to_client
    };
    if cut {
        stats.cut += 1;
        return Verdict::Drop;
    }
    if faults.loss > 0.0 && rng.random_bool(faults.loss.min(1.0)) {
        stats.lost += 1;
        return Verdict::Drop;
    }
    let slot = &mut held[usize::from(!to_target)];
    if faults.reorder > 0.0 && slot.is_none() && rng.random_bool(faults.reorder.min(1.0)) {
        stats.reordered += 1;
        *slot = Some((data.to_vec(), dest));
        return Verdict::Hold;
    }
    let copies = if faults.duplicate > 0.0 && rng.random_bool(faults.duplicate.min(1.0)) {
        stats.duplicated += 1;
        2
    } else {
        1
    };
    if !faults.delay.is_zero() {
        stats.delayed += 1;
    }
    stats.forwarded += 1;
    Verdict::Send {
        copies,
        delay: faults.delay,
        released: slot.take(),
    }
}

async fn send(
    socket: Arc<UdpSocket>,
    data: Vec<u8>,
    dest: SocketAddr,
    copies: usize,
    delay: Duration,
    released: Option<(Vec<u8>, SocketAddr)>,
) {
    let go = async move {
        for _ in 0..copies {
            // A lost datagram is what UDP promises anyway.
            let _ = socket.send_to(&data, dest).await;
        }
        if let Some((data, dest)) = released {
            let _ = socket.send_to(&data, dest).await;
        }
    };
    if delay.is_zero() {
        go.await;
    } else {
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            go.await;
        });
    }
}

async fn run(listen: Arc<UdpSocket>, target: Arc<Mutex<SocketAddr>>, state: Arc<Mutex<State>>) {
    let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, client)) = listen.recv_from(&mut buf).await else {
            continue;
        };
        let upstream = match upstreams.get(&client) {
            Some(u) => Arc::clone(u),
            None => {
                let Ok(socket) = UdpSocket::bind(("127.0.0.1", 0)).await else {
                    continue;
                };
                let socket = Arc::new(socket);
                upstreams.insert(client, Arc::clone(&socket));
                tasks.spawn(back(
                    Arc::clone(&socket),
                    Arc::clone(&listen),
                    client,
                    Arc::clone(&state),
                ));
                socket
            }
        };
        let data = buf[..n].to_vec();
        let target = *target.lock();
        if let Verdict::Send {
            copies,
            delay,
            released,
        } = judge(&state, true, &data, target)
        {
            send(upstream, data, target, copies, delay, released).await;
        }
    }
}

/// Forwards the target's replies to `client`.
async fn back(
    upstream: Arc<UdpSocket>,
    listen: Arc<UdpSocket>,
    client: SocketAddr,
    state: Arc<Mutex<State>>,
) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, _)) = upstream.recv_from(&mut buf).await else {
            continue;
        };
        let data = buf[..n].to_vec();
        if let Verdict::Send {
            copies,
            delay,
            released,
        } = judge(&state, false, &data, client)
        {
            send(Arc::clone(&listen), data, client, copies, delay, released).await;
        }
    }
}
