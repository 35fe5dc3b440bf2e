//! A UDP proxy on loopback that injects network faults between two nodes:
//! partitions (both ways or one way), loss, delay, duplication and
//! reordering. Used by the demo and the tests to cut and heal links
//! without touching the nodes.
//!
//! A consumer dials the proxy's address instead of its peer's; the proxy
//! forwards each client's datagrams to the target from a socket of its own
//! and the replies back.

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use quinn::udp::{RecvMeta, Transmit, UdpSocketState};
use rand::{Rng, SeedableRng};
use tokio::io::Interest;
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
        let listen = Arc::new(Batched::new(Arc::new(
            UdpSocket::bind(("127.0.0.1", 0)).await?,
        ))?);
        let addr = listen.socket.local_addr()?;
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

/// Buffers an [`Inbox`] fills per read, and the size of each.
const RECV_BATCH: usize = 8;
const RECV_BUF: usize = 65_536;
/// Socket buffer sizes asked for, each way.
const SOCKET_BUFFER: usize = 4 << 20;

/// A socket with batched I/O: datagrams arrive coalesced when the kernel
/// can (GRO) and leave coalesced (GSO). On loopback a peer's segmented send
/// then crosses the proxy as one read and one write instead of one each per
/// datagram, so the proxy does not become the slowest hop of the path.
struct Batched {
    socket: Arc<UdpSocket>,
    udp: UdpSocketState,
}

impl Batched {
    fn new(socket: Arc<UdpSocket>) -> std::io::Result<Self> {
        let udp = UdpSocketState::new((&*socket).into())?;
        // As large as the nodes' own: a burst the nodes can take must not be
        // dropped here. The kernel may cap it lower, which only costs loss.
        let _ = udp.set_recv_buffer_size((&*socket).into(), SOCKET_BUFFER);
        let _ = udp.set_send_buffer_size((&*socket).into(), SOCKET_BUFFER);
        Ok(Self { socket, udp })
    }

    /// Sends `contents` to `dest`, as datagrams of `segment` bytes (the last
    /// may be shorter) when it holds more than one.
    async fn send(&self, dest: SocketAddr, contents: &[u8], segment: usize) {
        let transmit = Transmit {
            destination: dest,
            ecn: None,
            contents,
            segment_size: (contents.len() > segment).then_some(segment),
            src_ip: None,
        };
        loop {
            if self.socket.writable().await.is_err() {
                return;
            }
            match self.socket.try_io(Interest::WRITABLE, || {
                self.udp.send((&*self.socket).into(), &transmit)
            }) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                // Any other error is a lost datagram, which UDP allows.
                _ => return,
            }
        }
    }
}

/// Receive buffers reused from read to read: each holds up to 64 KiB, several
/// datagrams when the kernel coalesced them.
struct Inbox {
    bufs: Vec<Vec<u8>>,
    meta: [RecvMeta; RECV_BATCH],
}

impl Inbox {
    fn new() -> Self {
        Self {
            bufs: vec![vec![0u8; RECV_BUF]; RECV_BATCH],
            meta: [RecvMeta::default(); RECV_BATCH],
        }
    }

    /// Waits for datagrams on `from` and reads a batch of them; returns each
    /// buffer read as its sender, its bytes and its datagram size.
    async fn recv(
        &mut self,
        from: &Batched,
    ) -> impl Iterator<Item = (SocketAddr, &[u8], usize)> + '_ {
        let n = loop {
            let mut slices: Vec<IoSliceMut<'_>> =
                self.bufs.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            if from.socket.readable().await.is_err() {
                continue;
            }
            match from.socket.try_io(Interest::READABLE, || {
                from.udp
                    .recv((&*from.socket).into(), &mut slices, &mut self.meta)
            }) {
                Ok(n) => break n,
                // Not ready after all, or an error a datagram socket reports
                // (such as an ICMP unreachable): read again.
                Err(_) => continue,
            }
        };
        self.bufs
            .iter()
            .zip(&self.meta)
            .take(n)
            .map(|(buf, meta)| (meta.addr, &buf[..meta.len], meta.stride))
    }
}

/// Judges each datagram of `data` (datagrams of `stride` bytes, the last
/// possibly shorter) and forwards what passes to `dest` through `out`, in
/// order. Datagrams forwarded unchanged go out together, as few writes as
/// the socket allows; the rest (duplicated, delayed, held back, or
/// releasing a held one) go out one by one as before.
async fn forward(
    state: &Mutex<State>,
    to_target: bool,
    out: &Batched,
    data: &[u8],
    stride: usize,
    dest: SocketAddr,
) {
    let stride = if stride == 0 {
        data.len().max(1)
    } else {
        stride
    };
    let max_run = out.udp.max_gso_segments().max(1) * stride;
    // The datagrams `data[run..end]` pass unchanged and are not sent yet.
    let mut run = 0;
    let mut end = 0;
    for start in (0..data.len()).step_by(stride) {
        let datagram = &data[start..(start + stride).min(data.len())];
        match judge(state, to_target, datagram, dest) {
            Verdict::Send {
                copies: 1,
                delay,
                released: None,
            } if delay.is_zero() => {
                // `end == start` here: the run is contiguous by construction.
                if end - run >= max_run {
                    out.send(dest, &data[run..end], stride).await;
                    run = start;
                }
                end = start + datagram.len();
            }
            verdict => {
                if run < end {
                    out.send(dest, &data[run..end], stride).await;
                }
                run = start + datagram.len();
                end = run;
                if let Verdict::Send {
                    copies,
                    delay,
                    released,
                } = verdict
                {
                    send(
                        Arc::clone(&out.socket),
                        datagram.to_vec(),
                        dest,
                        copies,
                        delay,
                        released,
                    )
                    .await;
                }
            }
        }
    }
    if run < end {
        out.send(dest, &data[run..end], stride).await;
    }
}

async fn run(listen: Arc<Batched>, target: Arc<Mutex<SocketAddr>>, state: Arc<Mutex<State>>) {
    let mut upstreams: HashMap<SocketAddr, Arc<Batched>> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut inbox = Inbox::new();
    loop {
        for (client, data, stride) in inbox.recv(&listen).await {
            let upstream = match upstreams.get(&client) {
                Some(u) => Arc::clone(u),
                None => {
                    let Ok(socket) = UdpSocket::bind(("127.0.0.1", 0)).await else {
                        continue;
                    };
                    let Ok(upstream) = Batched::new(Arc::new(socket)).map(Arc::new) else {
                        continue;
                    };
                    upstreams.insert(client, Arc::clone(&upstream));
                    tasks.spawn(back(
                        Arc::clone(&upstream),
                        Arc::clone(&listen),
                        client,
                        Arc::clone(&state),
                    ));
                    upstream
                }
            };
            let target = *target.lock();
            forward(&state, true, &upstream, data, stride, target).await;
        }
    }
}

/// Forwards the target's replies to `client`.
async fn back(
    upstream: Arc<Batched>,
    listen: Arc<Batched>,
    client: SocketAddr,
    state: Arc<Mutex<State>>,
) {
    let mut inbox = Inbox::new();
    loop {
        for (_, data, stride) in inbox.recv(&upstream).await {
            forward(&state, false, &listen, data, stride, client).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEGMENT: usize = 1_000;

    /// Sends `count` numbered datagrams of `SEGMENT` bytes to `dest` in one
    /// segmented write (several, if the platform segments less).
    async fn send_numbered(dest: SocketAddr, count: usize) {
        let client =
            Batched::new(Arc::new(UdpSocket::bind(("127.0.0.1", 0)).await.unwrap())).unwrap();
        let mut data = vec![0u8; count * SEGMENT];
        for (i, datagram) in data.chunks_mut(SEGMENT).enumerate() {
            datagram.fill(i as u8);
        }
        let per_write = client.udp.max_gso_segments().max(1) * SEGMENT;
        for write in data.chunks(per_write) {
            client.send(dest, write, SEGMENT).await;
        }
    }

    /// Receives datagrams on `socket` until none comes for 200 ms; returns
    /// the first byte of each (its number) after checking it is uniform.
    async fn received(socket: &UdpSocket) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_536];
        while let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(200), socket.recv(&mut buf)).await
        {
            assert_eq!(n, SEGMENT, "a datagram crossed the proxy resized");
            assert!(
                buf[..n].iter().all(|&b| b == buf[0]),
                "a datagram crossed the proxy torn"
            );
            got.push(buf[0]);
        }
        got
    }

    #[tokio::test]
    async fn segmented_datagrams_cross_whole_and_in_order() {
        let target = UdpSocket::bind(("127.0.0.1", 0)).await.unwrap();
        let proxy = UdpProxy::start(target.local_addr().unwrap(), 1)
            .await
            .unwrap();
        send_numbered(proxy.addr(), 40).await;
        assert_eq!(received(&target).await, (0..40).collect::<Vec<u8>>());
        assert_eq!(proxy.stats().forwarded, 40);
    }

    #[tokio::test]
    async fn faults_apply_to_each_datagram_of_a_segmented_write() {
        let target = UdpSocket::bind(("127.0.0.1", 0)).await.unwrap();
        let proxy = UdpProxy::start(target.local_addr().unwrap(), 2)
            .await
            .unwrap();

        proxy.set(Faults {
            duplicate: 1.0,
            ..Faults::default()
        });
        send_numbered(proxy.addr(), 20).await;
        let twice: Vec<u8> = (0..20).flat_map(|i| [i, i]).collect();
        assert_eq!(received(&target).await, twice);

        proxy.set(Faults {
            loss: 0.5,
            ..Faults::default()
        });
        send_numbered(proxy.addr(), 40).await;
        let got = received(&target).await;
        let stats = proxy.stats();
        assert_eq!(
            got.len() as u64 + stats.lost,
            40,
            "each datagram judged once"
        );
        assert!(
            stats.lost > 0 && !got.is_empty(),
            "one loss draw for the whole write"
        );
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "survivors out of order: {got:?}"
        );

        proxy.cut();
        send_numbered(proxy.addr(), 20).await;
        assert!(received(&target).await.is_empty());
        assert_eq!(proxy.stats().cut, 20);
    }
}
