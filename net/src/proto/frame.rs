//! Frames, size limits and the encoder.
//!
//! Every frame is `[u8 type][u32 big-endian body length][body]`; the body
//! layouts are listed on [`Frame`]'s variants and in `PROTOCOL.md`. All
//! integers are big-endian. Strings are UTF-8, prefixed by a `u8` length.

use std::fmt;

use bytes::{BufMut, Bytes};

use super::{Cursor, Name};

/// Length of the frame header: one type byte and a `u32` body length.
pub const HEADER_LEN: usize = 5;

/// Largest accepted body of a [`Frame::Hello`], whatever the version.
///
/// A version-1 hello needs at most 275 bytes (`2 + 1 + 255 + 1 + 16`); the
/// slack lets a later version add fields while a version-1 node can still
/// read the version and refuse it with the right error code.
pub const HELLO_MAX_BODY: u32 = 1024;

/// Body lengths of the fixed-size frames.
const NEW_BODY: u32 = 16;
const RESUMED_BODY: u32 = 16;
const EXPIRED_BODY: u32 = 24;
const LAPPED_BODY: u32 = 16;
const ACK_BODY: u32 = 8;
/// `seq` (8) and the topic length byte (1) before a message's topic.
const MESSAGE_FIXED: u64 = 9;
/// The topic length byte before a direct message's topic.
const DIRECT_FIXED: u64 = 1;

/// The type byte of a frame. `0` is never a valid type, so a zeroed buffer
/// is rejected at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameType {
    /// Consumer → producer, first frame: version, node name, resume cursor.
    Hello = 1,
    /// Producer → consumer handshake answer: start at the head.
    New = 2,
    /// Producer → consumer handshake answer: the cursor resumes as is.
    Resumed = 3,
    /// Producer → consumer handshake answer: the cursor expired.
    Expired = 4,
    /// Producer → consumer: one sequenced message.
    Message = 5,
    /// Producer → consumer: in-band expiry, the sender was lapped.
    Lapped = 6,
    /// Producer → consumer: an unsequenced direct message.
    Direct = 7,
    /// Consumer → producer: everything below `next_seq` was delivered.
    Ack = 8,
}

impl FrameType {
    /// The frame type for a type byte, or `None` if the byte is unknown.
    pub const fn from_u8(byte: u8) -> Option<Self> {
        Some(match byte {
            1 => Self::Hello,
            2 => Self::New,
            3 => Self::Resumed,
            4 => Self::Expired,
            5 => Self::Message,
            6 => Self::Lapped,
            7 => Self::Direct,
            8 => Self::Ack,
            _ => return None,
        })
    }

    /// The type byte on the wire.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// Lower-case name, for errors and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Hello => "hello",
            Self::New => "new",
            Self::Resumed => "resumed",
            Self::Expired => "expired",
            Self::Message => "message",
            Self::Lapped => "lapped",
            Self::Direct => "direct",
            Self::Ack => "ack",
        }
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A variable-length field whose size is limited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// A message's or direct message's topic (limit [`Limits::max_topic_bytes`]).
    Topic,
    /// The node name in a hello (limit [`Limits::max_node_name`]).
    NodeName,
    /// A message's or direct message's payload (limit [`Limits::max_message_bytes`]).
    Payload,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Topic => "topic",
            Self::NodeName => "node name",
            Self::Payload => "payload",
        })
    }
}

/// Size limits, checked by the [`Decoder`](super::Decoder) before anything
/// is allocated and by the [`Encoder`] before anything is written.
///
/// Both ends of a connection are expected to use the same limits (the node's
/// configuration): a sender never emits what its own limits would refuse, and
/// a receiver closes the connection with
/// [`ErrorCode::FrameTooLarge`](super::ErrorCode::FrameTooLarge) on anything
/// larger than its limits. The field types bound each limit by what the wire
/// format can carry (a `u8` length for strings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limits {
    /// Largest payload of a `Message` or `Direct` frame, in bytes.
    /// Default: 1 MiB. Should equal the producer ring's maximum message size.
    pub max_message_bytes: u32,
    /// Largest topic, in bytes of UTF-8. Default: 255.
    pub max_topic_bytes: u8,
    /// Largest node name in a `Hello`, in bytes. Default: 63 (a DNS label,
    /// the longest name [`tls::generate`](crate::tls::generate) accepts).
    pub max_node_name: u8,
}

impl Limits {
    /// The default limits: 1 MiB payloads, 255-byte topics, 63-byte node names.
    pub const DEFAULT: Self = Self {
        max_message_bytes: 1 << 20,
        max_topic_bytes: u8::MAX,
        max_node_name: 63,
    };

    /// The largest body length accepted for a frame of type `frame_type`.
    ///
    /// Fixed-size frames accept exactly their size; `Hello` accepts
    /// [`HELLO_MAX_BODY`]; `Message` and `Direct` accept their fixed part plus
    /// the topic and payload limits (saturating at `u32::MAX`).
    pub fn max_body(&self, frame_type: FrameType) -> u32 {
        match frame_type {
            FrameType::Hello => HELLO_MAX_BODY,
            FrameType::New => NEW_BODY,
            FrameType::Resumed => RESUMED_BODY,
            FrameType::Expired => EXPIRED_BODY,
            FrameType::Lapped => LAPPED_BODY,
            FrameType::Ack => ACK_BODY,
            FrameType::Message => self.variable_body(MESSAGE_FIXED),
            FrameType::Direct => self.variable_body(DIRECT_FIXED),
        }
    }

    fn variable_body(&self, fixed: u64) -> u32 {
        let max = fixed + u64::from(self.max_topic_bytes) + u64::from(self.max_message_bytes);
        u32::try_from(max).unwrap_or(u32::MAX)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// One protocol frame.
///
/// Body layouts (after the 5-byte header; integers big-endian):
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Consumer → producer, first and only once.
    /// `[u16 version][u8 n][n bytes node][u8 0]` or
    /// `[u16 version][u8 n][n bytes node][u8 1][u64 epoch][u64 next_seq]`.
    Hello {
        /// [`PROTOCOL_VERSION`](super::PROTOCOL_VERSION) of the sender.
        version: u16,
        /// The consumer's node name; must match its certificate.
        node: String,
        /// The stored cursor to resume from, or `None` to start at the head.
        resume: Option<Cursor>,
    },
    /// Handshake answer to a hello without a cursor: `[u64 epoch][u64 start_seq]`.
    New {
        /// The producer's epoch.
        epoch: u64,
        /// The head at the time of the answer: the first message the consumer gets.
        start_seq: u64,
    },
    /// Handshake answer: the cursor is still readable. `[u64 epoch][u64 from_seq]`.
    Resumed {
        /// The producer's epoch, equal to the cursor's.
        epoch: u64,
        /// Equal to the cursor's `next_seq`: the first message the consumer gets.
        from_seq: u64,
    },
    /// Handshake answer: the cursor cannot be resumed.
    /// `[u64 epoch][u64 missed][u64 resume_seq]`.
    Expired {
        /// The producer's epoch; differs from the cursor's after a restart.
        epoch: u64,
        /// Messages skipped: `resume_seq - next_seq` in the same epoch; after
        /// a restart, the messages of the new epoch no longer held (`resume_seq`).
        missed: u64,
        /// The oldest message still held: the first message the consumer gets.
        resume_seq: u64,
    },
    /// A sequenced message. `[u64 seq][u8 n][n bytes topic][payload to the end]`.
    Message {
        /// Sequence number within the producer's epoch.
        seq: u64,
        /// Topic, UTF-8. Shared: a decoder hands out the same allocation
        /// for consecutive frames on the same topic.
        topic: Name,
        /// Payload; decoded without a second copy (it shares the decoder's buffer).
        payload: Bytes,
    },
    /// In-band expiry: the producer's sender fell behind its ring.
    /// `[u64 missed][u64 resume_seq]`.
    Lapped {
        /// Messages skipped: `resume_seq` minus the consumer's `next_seq`.
        missed: u64,
        /// The sequence number of the next `Message` frame.
        resume_seq: u64,
    },
    /// An unsequenced direct message to this node. `[u8 n][n bytes topic][payload to the end]`.
    Direct {
        /// Topic, UTF-8.
        topic: Name,
        /// Payload.
        payload: Bytes,
    },
    /// The consumer delivered every message below `next_seq`. `[u64 next_seq]`.
    Ack {
        /// The consumer's cursor position.
        next_seq: u64,
    },
}

impl Frame {
    /// This frame's type byte.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Self::Hello { .. } => FrameType::Hello,
            Self::New { .. } => FrameType::New,
            Self::Resumed { .. } => FrameType::Resumed,
            Self::Expired { .. } => FrameType::Expired,
            Self::Message { .. } => FrameType::Message,
            Self::Lapped { .. } => FrameType::Lapped,
            Self::Direct { .. } => FrameType::Direct,
            Self::Ack { .. } => FrameType::Ack,
        }
    }

    /// Length of the body this frame encodes to (without the header).
    pub fn body_len(&self) -> u64 {
        match self {
            Self::Hello { node, resume, .. } => {
                2 + 1 + node.len() as u64 + 1 + if resume.is_some() { 16 } else { 0 }
            }
            Self::New { .. } => NEW_BODY.into(),
            Self::Resumed { .. } => RESUMED_BODY.into(),
            Self::Expired { .. } => EXPIRED_BODY.into(),
            Self::Lapped { .. } => LAPPED_BODY.into(),
            Self::Ack { .. } => ACK_BODY.into(),
            Self::Message { topic, payload, .. } => {
                MESSAGE_FIXED + topic.len() as u64 + payload.len() as u64
            }
            Self::Direct { topic, payload } => {
                DIRECT_FIXED + topic.len() as u64 + payload.len() as u64
            }
        }
    }
}

/// Why a frame could not be encoded. Nothing was written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A field is longer than the encoder's [`Limits`] allow.
    #[error("{field} of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Which field.
        field: Field,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A ring entry handed to [`Encoder::message_around_entry`] is not
    /// `[u8 n][n bytes of UTF-8 topic][payload]`.
    #[error("malformed ring entry: {0}")]
    MalformedEntry(&'static str),
}

/// Splits a ring entry `[u8 n][n bytes of UTF-8 topic][payload]` (how a
/// node stores a message in its ring) into topic and payload, or says what
/// is wrong with it.
pub fn split_entry(entry: &[u8]) -> Result<(&str, &[u8]), EncodeError> {
    let Some((&topic_len, rest)) = entry.split_first() else {
        return Err(EncodeError::MalformedEntry("empty"));
    };
    if rest.len() < usize::from(topic_len) {
        return Err(EncodeError::MalformedEntry("topic cut short"));
    }
    let (topic, payload) = rest.split_at(usize::from(topic_len));
    let topic = std::str::from_utf8(topic)
        .map_err(|_| EncodeError::MalformedEntry("topic is not UTF-8"))?;
    Ok((topic, payload))
}

/// Bytes before the ring entry in a `Message` frame: the header and the
/// sequence number. The rest of the body, `[u8 n][n bytes topic][payload]`,
/// is exactly how a node stores a message in its ring, so a sender can copy
/// entries straight into its output after this much room
/// ([`Encoder::message_around_entry`]).
pub const MESSAGE_PREFIX_LEN: usize = HEADER_LEN + 8;

/// Writes frames, refusing any that its [`Limits`] would refuse on receipt.
///
/// `out` is any [`BufMut`] that grows as needed (`Vec<u8>`, `BytesMut`); on
/// error nothing is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Encoder {
    limits: Limits,
}

impl Encoder {
    /// An encoder enforcing `limits`.
    pub const fn new(limits: Limits) -> Self {
        Self { limits }
    }

    /// The limits this encoder enforces.
    pub const fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Appends `frame`, header and body, to `out`.
    pub fn encode(&self, frame: &Frame, out: &mut impl BufMut) -> Result<(), EncodeError> {
        match frame {
            Frame::Hello {
                version,
                node,
                resume,
            } => {
                check(
                    Field::NodeName,
                    node.len(),
                    self.limits.max_node_name.into(),
                )?;
                put_header(out, FrameType::Hello, frame.body_len());
                out.put_u16(*version);
                put_short_str(out, node);
                match resume {
                    None => out.put_u8(0),
                    Some(cursor) => {
                        out.put_u8(1);
                        out.put_u64(cursor.epoch);
                        out.put_u64(cursor.next_seq);
                    }
                }
            }
            Frame::New { epoch, start_seq } => {
                put_header(out, FrameType::New, NEW_BODY.into());
                out.put_u64(*epoch);
                out.put_u64(*start_seq);
            }
            Frame::Resumed { epoch, from_seq } => {
                put_header(out, FrameType::Resumed, RESUMED_BODY.into());
                out.put_u64(*epoch);
                out.put_u64(*from_seq);
            }
            Frame::Expired {
                epoch,
                missed,
                resume_seq,
            } => {
                put_header(out, FrameType::Expired, EXPIRED_BODY.into());
                out.put_u64(*epoch);
                out.put_u64(*missed);
                out.put_u64(*resume_seq);
            }
            Frame::Message {
                seq,
                topic,
                payload,
            } => {
                self.message_header(*seq, topic, payload.len(), out)?;
                out.put_slice(payload);
            }
            Frame::Lapped { missed, resume_seq } => {
                put_header(out, FrameType::Lapped, LAPPED_BODY.into());
                out.put_u64(*missed);
                out.put_u64(*resume_seq);
            }
            Frame::Direct { topic, payload } => {
                self.direct_header(topic, payload.len(), out)?;
                out.put_slice(payload);
            }
            Frame::Ack { next_seq } => {
                put_header(out, FrameType::Ack, ACK_BODY.into());
                out.put_u64(*next_seq);
            }
        }
        Ok(())
    }

    /// Appends everything of a `Message` frame but its payload: the header,
    /// `seq` and the topic. The caller then writes exactly `payload_len`
    /// payload bytes (for example as a second chunk on the stream, without
    /// copying the payload into a frame).
    pub fn message_header(
        &self,
        seq: u64,
        topic: &str,
        payload_len: usize,
        out: &mut impl BufMut,
    ) -> Result<(), EncodeError> {
        self.check_message(MESSAGE_FIXED, topic, payload_len)?;
        put_header(
            out,
            FrameType::Message,
            MESSAGE_FIXED + topic.len() as u64 + payload_len as u64,
        );
        out.put_u64(seq);
        put_short_str(out, topic);
        Ok(())
    }

    /// Completes a `Message` frame for message `seq` in `frame`:
    /// [`MESSAGE_PREFIX_LEN`] bytes of room, then a ring entry
    /// `[u8 n][n bytes topic][payload]`. Fills the room with the header and
    /// `seq` after checking the entry as [`message_header`] checks its
    /// arguments; on error `frame` is unchanged.
    ///
    /// [`message_header`]: Self::message_header
    pub fn message_around_entry(&self, seq: u64, frame: &mut [u8]) -> Result<(), EncodeError> {
        let Some((prefix, entry)) = frame.split_first_chunk_mut::<MESSAGE_PREFIX_LEN>() else {
            return Err(EncodeError::MalformedEntry("shorter than the frame prefix"));
        };
        let (topic, payload) = split_entry(entry)?;
        let payload_len = payload.len();
        self.check_message(MESSAGE_FIXED, topic, payload_len)?;
        let mut header = &mut prefix[..];
        put_header(
            &mut header,
            FrameType::Message,
            MESSAGE_FIXED + topic.len() as u64 + payload_len as u64,
        );
        header.put_u64(seq);
        Ok(())
    }

    /// Appends everything of a `Direct` frame but its payload; see
    /// [`message_header`](Self::message_header).
    pub fn direct_header(
        &self,
        topic: &str,
        payload_len: usize,
        out: &mut impl BufMut,
    ) -> Result<(), EncodeError> {
        self.check_message(DIRECT_FIXED, topic, payload_len)?;
        put_header(
            out,
            FrameType::Direct,
            DIRECT_FIXED + topic.len() as u64 + payload_len as u64,
        );
        put_short_str(out, topic);
        Ok(())
    }

    /// Checks a message's or direct message's topic and payload against the
    /// limits, and that the body length (`fixed` + topic + payload) fits the
    /// header's `u32`.
    fn check_message(
        &self,
        fixed: u64,
        topic: &str,
        payload_len: usize,
    ) -> Result<(), EncodeError> {
        check(
            Field::Topic,
            topic.len(),
            self.limits.max_topic_bytes.into(),
        )?;
        let room = u64::from(u32::MAX) - fixed - topic.len() as u64;
        let max_payload = room.min(self.limits.max_message_bytes.into());
        let max_payload = usize::try_from(max_payload).unwrap_or(usize::MAX);
        check(Field::Payload, payload_len, max_payload)
    }
}

fn check(field: Field, len: usize, max: usize) -> Result<(), EncodeError> {
    if len > max {
        Err(EncodeError::TooLong { field, len, max })
    } else {
        Ok(())
    }
}

/// Writes the header. `body_len` fits a `u32` because the callers checked the
/// fields against [`Limits`], whose largest bodies fit by construction.
fn put_header(out: &mut impl BufMut, frame_type: FrameType, body_len: u64) {
    debug_assert!(body_len <= u64::from(u32::MAX), "body length {body_len}");
    out.put_u8(frame_type.as_u8());
    out.put_u32(u32::try_from(body_len).unwrap_or(u32::MAX));
}

/// Writes a `u8`-length-prefixed string whose length was checked against a
/// `u8` limit.
fn put_short_str(out: &mut impl BufMut, s: &str) {
    debug_assert!(s.len() <= usize::from(u8::MAX));
    out.put_u8(u8::try_from(s.len()).unwrap_or(u8::MAX));
    out.put_slice(s.as_bytes());
}
