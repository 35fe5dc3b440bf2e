//! The three message types, and how each contender carries them.
//!
//! Every message carries the benchmark's own sequence number (0, 1, 2, …)
//! and a send timestamp (ticks of the shared clock since the run's base; 0
//! in throughput runs, which do not read the clock), plus redundancy that a
//! reader checks, so a torn, duplicated, reordered or silently dropped
//! message is caught:
//!
//! * `u64`: one word, `(seq mod 2^24) << 40 | (ts mod 2^40)`. A single word
//!   cannot tear; readers know the full sequence number they expect and
//!   compare its low 24 bits (a gap of exactly 2^24 is impossible with a
//!   4096-slot ring).
//! * 64-byte struct ([`Msg64`]): `seq`, `ts`, five body words derived from
//!   `seq`, and a check word `seq ^ ts ^ MAGIC`; readers verify the first
//!   and last body words and the check word.
//! * 256-byte payload: `[seq LE][ts LE][232 filler bytes][seq ^ ts ^ MAGIC LE]`;
//!   readers verify the length, the check word and a filler byte. Ringcast
//!   carries it in its byte ring (copied into the arena by the publisher and
//!   out into a reused `Vec<u8>` by each reader); the peers carry
//!   `bytes::Bytes` (one allocation and copy per message, a reference-count
//!   clone per reader), except the disruptor, whose preallocated events are
//!   `Vec<u8>`s the publisher overwrites in place.

use bytemuck::NoUninit;
use bytes::Bytes;
use ringcast_core::bytes::{BytePublisher, ByteSubscriber, Config};
use ringcast_core::{Publisher, Subscriber, TryRecvError};

use super::contenders::{Poll, Sink};

/// Mixed into check words so that an all-zero message never passes.
const MAGIC: u64 = 0x9E37_79B9_7F4A_7C15;

/// A message type of the benchmark, and how ringcast and the peers carry it.
pub trait Kind: 'static {
    /// Name in tables.
    const NAME: &'static str;
    /// Short name for file names.
    const SLUG: &'static str;
    /// The bits of the sequence number a message carries.
    const SEQ_MASK: u64;
    /// The bits of the timestamp a message carries.
    const TS_MASK: u64;
    /// Messages per timed throughput run (full mode).
    const THROUGHPUT_COUNT: u64;

    /// The value the peers carry.
    type Val: Clone + Send + Sync + 'static;
    /// Message `seq` stamped `ts`, as the peers carry it.
    fn make(seq: u64, ts: u64) -> Self::Val;
    /// `(seq bits, ts)` of a value, if it is intact.
    fn parse(v: &Self::Val) -> Option<(u64, u64)>;

    /// The disruptor's preallocated event.
    type Slot: Send + Sync + 'static;
    /// A fresh event (the disruptor's factory).
    fn slot_new() -> Self::Slot;
    /// Overwrites an event in place with message `seq`.
    fn slot_write(slot: &mut Self::Slot, seq: u64, ts: u64);
    /// `(seq bits, ts)` of an event, if it is intact.
    fn slot_parse(slot: &Self::Slot) -> Option<(u64, u64)>;

    /// Ringcast's publisher for this type.
    type RcTx: Send;
    /// Ringcast's subscriber for this type (with its receive buffer).
    type RcRx: Send;
    /// A ring of `capacity` messages and a first subscriber.
    fn rc_new(capacity: usize) -> (Self::RcTx, Self::RcRx);
    /// Another subscriber at the head.
    fn rc_subscribe(tx: &Self::RcTx) -> Self::RcRx;
    /// Publishes message `seq`.
    fn rc_publish(tx: &mut Self::RcTx, seq: u64, ts: u64);
    /// Hands up to `max` available messages to `sink`: the typed ring
    /// takes them in one `try_recv_many`, the byte ring (which has no batch
    /// receive) with one `try_recv` each.
    fn rc_poll(rx: &mut Self::RcRx, max: usize, sink: &mut impl Sink) -> Poll;
}

/// Ringcast's typed reader, with the buffer its batches go to.
pub struct TypedRx<T: NoUninit> {
    sub: Subscriber<T>,
    batch: Vec<T>,
}

impl<T: NoUninit> TypedRx<T> {
    fn new(sub: Subscriber<T>) -> Self {
        Self {
            sub,
            batch: Vec::new(),
        }
    }

    /// One `try_recv_many` of up to `max`, each message checked by `parse`
    /// (`(seq bits, ts)`, or `None` if not intact) and handed to `sink`.
    #[inline]
    fn poll(
        &mut self,
        max: usize,
        sink: &mut impl Sink,
        parse: impl Fn(&T) -> Option<(u64, u64)>,
    ) -> Poll {
        self.batch.clear();
        match self.sub.try_recv_many(&mut self.batch, max) {
            Ok(_) => {
                for v in &self.batch {
                    match parse(v) {
                        Some((seq, ts)) => sink.msg(seq, ts),
                        None => sink.bad(),
                    }
                }
                Poll::Progress
            }
            Err(TryRecvError::Expired { missed, resume_seq }) => {
                sink.lost(missed, Some(resume_seq));
                Poll::Progress
            }
            Err(TryRecvError::Empty) => Poll::Empty,
            Err(TryRecvError::Closed) => Poll::Closed,
        }
    }
}

/// `u64` messages.
pub struct U64;

const SEQ24: u64 = (1 << 24) - 1;
const TS40: u64 = (1 << 40) - 1;

#[inline]
fn pack_u64(seq: u64, ts: u64) -> u64 {
    (seq & SEQ24) << 40 | (ts & TS40)
}

#[inline]
fn unpack_u64(v: u64) -> (u64, u64) {
    (v >> 40, v & TS40)
}

impl Kind for U64 {
    const NAME: &'static str = "u64";
    const SLUG: &'static str = "u64";
    const SEQ_MASK: u64 = SEQ24;
    const TS_MASK: u64 = TS40;
    const THROUGHPUT_COUNT: u64 = 4_000_000;

    type Val = u64;
    #[inline]
    fn make(seq: u64, ts: u64) -> u64 {
        pack_u64(seq, ts)
    }
    #[inline]
    fn parse(v: &u64) -> Option<(u64, u64)> {
        Some(unpack_u64(*v))
    }

    type Slot = u64;
    fn slot_new() -> u64 {
        0
    }
    #[inline]
    fn slot_write(slot: &mut u64, seq: u64, ts: u64) {
        *slot = pack_u64(seq, ts);
    }
    #[inline]
    fn slot_parse(slot: &u64) -> Option<(u64, u64)> {
        Some(unpack_u64(*slot))
    }

    type RcTx = Publisher<u64>;
    type RcRx = TypedRx<u64>;
    fn rc_new(capacity: usize) -> (Self::RcTx, Self::RcRx) {
        let (tx, rx) = ringcast_core::channel(capacity);
        (tx, TypedRx::new(rx))
    }
    fn rc_subscribe(tx: &Self::RcTx) -> Self::RcRx {
        TypedRx::new(tx.subscribe())
    }
    #[inline]
    fn rc_publish(tx: &mut Self::RcTx, seq: u64, ts: u64) {
        tx.publish(pack_u64(seq, ts));
    }
    #[inline]
    fn rc_poll(rx: &mut Self::RcRx, max: usize, sink: &mut impl Sink) -> Poll {
        rx.poll(max, sink, |&v| Some(unpack_u64(v)))
    }
}

/// A 64-byte `#[repr(C)]` `Copy` message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, bytemuck::NoUninit)]
#[repr(C)]
pub struct Msg64 {
    /// Benchmark sequence number.
    pub seq: u64,
    /// Send timestamp (clock ticks since the run's base).
    pub ts: u64,
    /// `seq ^ (i + 1) * MAGIC` for each word `i`.
    pub body: [u64; 5],
    /// `seq ^ ts ^ MAGIC`.
    pub check: u64,
}

const _: () = assert!(std::mem::size_of::<Msg64>() == 64);

impl Msg64 {
    #[inline]
    fn new(seq: u64, ts: u64) -> Self {
        let mut body = [0; 5];
        for (i, w) in body.iter_mut().enumerate() {
            *w = seq ^ (i as u64 + 1).wrapping_mul(MAGIC);
        }
        Self {
            seq,
            ts,
            body,
            check: seq ^ ts ^ MAGIC,
        }
    }

    #[inline]
    fn parse(&self) -> Option<(u64, u64)> {
        let ok = self.check == self.seq ^ self.ts ^ MAGIC
            && self.body[0] == self.seq ^ MAGIC
            && self.body[4] == self.seq ^ 5u64.wrapping_mul(MAGIC);
        ok.then_some((self.seq, self.ts))
    }
}

/// 64-byte struct messages.
pub struct Struct64;

impl Kind for Struct64 {
    const NAME: &'static str = "64-byte struct";
    const SLUG: &'static str = "struct64";
    const SEQ_MASK: u64 = u64::MAX;
    const TS_MASK: u64 = u64::MAX;
    const THROUGHPUT_COUNT: u64 = 4_000_000;

    type Val = Msg64;
    #[inline]
    fn make(seq: u64, ts: u64) -> Msg64 {
        Msg64::new(seq, ts)
    }
    #[inline]
    fn parse(v: &Msg64) -> Option<(u64, u64)> {
        v.parse()
    }

    type Slot = Msg64;
    fn slot_new() -> Msg64 {
        Msg64::default()
    }
    #[inline]
    fn slot_write(slot: &mut Msg64, seq: u64, ts: u64) {
        *slot = Msg64::new(seq, ts);
    }
    #[inline]
    fn slot_parse(slot: &Msg64) -> Option<(u64, u64)> {
        slot.parse()
    }

    type RcTx = Publisher<Msg64>;
    type RcRx = TypedRx<Msg64>;
    fn rc_new(capacity: usize) -> (Self::RcTx, Self::RcRx) {
        let (tx, rx) = ringcast_core::channel(capacity);
        (tx, TypedRx::new(rx))
    }
    fn rc_subscribe(tx: &Self::RcTx) -> Self::RcRx {
        TypedRx::new(tx.subscribe())
    }
    #[inline]
    fn rc_publish(tx: &mut Self::RcTx, seq: u64, ts: u64) {
        tx.publish(Msg64::new(seq, ts));
    }
    #[inline]
    fn rc_poll(rx: &mut Self::RcRx, max: usize, sink: &mut impl Sink) -> Poll {
        rx.poll(max, sink, Msg64::parse)
    }
}

/// Size of a byte payload.
pub const PAYLOAD: usize = 256;

/// The filler every payload carries between header and check word.
const TEMPLATE: [u8; PAYLOAD] = {
    let mut t = [0u8; PAYLOAD];
    let mut i = 0;
    while i < PAYLOAD {
        t[i] = i as u8;
        i += 1;
    }
    t
};

#[inline]
fn fill_payload(buf: &mut [u8; PAYLOAD], seq: u64, ts: u64) {
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    buf[8..16].copy_from_slice(&ts.to_le_bytes());
    buf[PAYLOAD - 8..].copy_from_slice(&(seq ^ ts ^ MAGIC).to_le_bytes());
}

#[inline]
fn payload(seq: u64, ts: u64) -> [u8; PAYLOAD] {
    let mut buf = TEMPLATE;
    fill_payload(&mut buf, seq, ts);
    buf
}

#[inline]
fn parse_payload(p: &[u8]) -> Option<(u64, u64)> {
    if p.len() != PAYLOAD || p[PAYLOAD / 2] != TEMPLATE[PAYLOAD / 2] {
        return None;
    }
    let word = |i: usize| u64::from_le_bytes(p[i..i + 8].try_into().expect("8 bytes"));
    let (seq, ts) = (word(0), word(8));
    (word(PAYLOAD - 8) == seq ^ ts ^ MAGIC).then_some((seq, ts))
}

/// 256-byte byte payloads.
pub struct Bytes256;

impl Kind for Bytes256 {
    const NAME: &'static str = "256-byte payload";
    const SLUG: &'static str = "bytes256";
    const SEQ_MASK: u64 = u64::MAX;
    const TS_MASK: u64 = u64::MAX;
    const THROUGHPUT_COUNT: u64 = 1_000_000;

    type Val = Bytes;
    #[inline]
    fn make(seq: u64, ts: u64) -> Bytes {
        Bytes::copy_from_slice(&payload(seq, ts))
    }
    #[inline]
    fn parse(v: &Bytes) -> Option<(u64, u64)> {
        parse_payload(v)
    }

    type Slot = Vec<u8>;
    fn slot_new() -> Vec<u8> {
        TEMPLATE.to_vec()
    }
    #[inline]
    fn slot_write(slot: &mut Vec<u8>, seq: u64, ts: u64) {
        slot.clear();
        slot.extend_from_slice(&payload(seq, ts));
    }
    #[inline]
    fn slot_parse(slot: &Vec<u8>) -> Option<(u64, u64)> {
        parse_payload(slot)
    }

    type RcTx = BytePublisher;
    type RcRx = (ByteSubscriber, Vec<u8>);
    fn rc_new(capacity: usize) -> (Self::RcTx, Self::RcRx) {
        // The arena keeps exactly `capacity` payloads: as with the other
        // contenders, a reader is never expired while it is at most
        // `capacity` messages behind.
        let config = Config::new()
            .capacity(capacity)
            .max_bytes(capacity * PAYLOAD)
            .max_message_size(PAYLOAD);
        let (tx, rx) = ringcast_core::bytes::channel(config).expect("valid byte ring config");
        (tx, (rx, Vec::with_capacity(PAYLOAD)))
    }
    fn rc_subscribe(tx: &Self::RcTx) -> Self::RcRx {
        (tx.subscribe(), Vec::with_capacity(PAYLOAD))
    }
    #[inline]
    fn rc_publish(tx: &mut Self::RcTx, seq: u64, ts: u64) {
        let buf = payload(seq, ts);
        // PAYLOAD == max_message_size: never too large.
        let _ = tx.publish(&buf[..]);
    }
    #[inline]
    fn rc_poll(rx: &mut Self::RcRx, max: usize, sink: &mut impl Sink) -> Poll {
        let (sub, buf) = rx;
        for n in 0..max {
            match sub.try_recv(buf) {
                // The ring numbers messages from 0 like the benchmark: they
                // agree.
                Ok(ring_seq) => match parse_payload(buf).filter(|&(seq, _)| seq == ring_seq) {
                    Some((seq, ts)) => sink.msg(seq, ts),
                    None => sink.bad(),
                },
                Err(TryRecvError::Expired { missed, resume_seq }) => {
                    sink.lost(missed, Some(resume_seq));
                }
                Err(TryRecvError::Empty) if n == 0 => return Poll::Empty,
                Err(TryRecvError::Closed) if n == 0 => return Poll::Closed,
                Err(TryRecvError::Empty | TryRecvError::Closed) => return Poll::Progress,
            }
        }
        Poll::Progress
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(U64::parse(&U64::make(5, 77)), Some((5, 77)));
        assert_eq!(U64::parse(&U64::make((1 << 24) + 5, 77)), Some((5, 77)));
        assert_eq!(Struct64::parse(&Struct64::make(9, 3)), Some((9, 3)));
        let mut torn = Struct64::make(9, 3);
        torn.body[4] = Struct64::make(10, 3).body[4];
        assert_eq!(Struct64::parse(&torn), None);
        assert_eq!(Bytes256::parse(&Bytes256::make(11, 4)), Some((11, 4)));
        let mut slot = Bytes256::slot_new();
        Bytes256::slot_write(&mut slot, 12, 5);
        assert_eq!(Bytes256::slot_parse(&slot), Some((12, 5)));
        slot[PAYLOAD - 1] ^= 1;
        assert_eq!(Bytes256::slot_parse(&slot), None);
    }
}
