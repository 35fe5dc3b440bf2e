//! The frame decoder: bytes in any chunking in, frames out.

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};

use super::{
    Cursor, ErrorCode, Field, Frame, FrameType, Limits, Name, HEADER_LEN, PROTOCOL_VERSION,
};

/// Why the incoming byte stream is invalid. The connection is closed with
/// [`code`](Self::code).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The type byte names no frame.
    #[error("unknown frame type {0:#04x}")]
    UnknownFrameType(u8),
    /// The header announces a body longer than the limit for its type.
    #[error("{frame} frame body of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The frame's type.
        frame: FrameType,
        /// The announced body length.
        len: u32,
        /// The limit for that type.
        max: u32,
    },
    /// A topic, node name or payload inside a body exceeds its limit.
    #[error("{field} of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Which field.
        field: Field,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The body is truncated, has trailing bytes, or holds an invalid value.
    #[error("malformed {frame} frame: {what}")]
    Malformed {
        /// The frame's type.
        frame: FrameType,
        /// What is wrong.
        what: &'static str,
    },
    /// A hello of another protocol version.
    #[error("unsupported protocol version {version} (this node speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion {
        /// The version the peer speaks.
        version: u16,
    },
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame, {buffered} bytes pending")]
    Truncated {
        /// Bytes of the unfinished frame.
        buffered: usize,
    },
}

impl DecodeError {
    /// The QUIC application error code to close the connection with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::FrameTooLarge { .. } | Self::TooLong { .. } => ErrorCode::FrameTooLarge,
            Self::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            Self::UnknownFrameType(_) | Self::Malformed { .. } | Self::Truncated { .. } => {
                ErrorCode::MalformedFrame
            }
        }
    }
}

/// Validates a frame header: a known type and a body length within
/// `limits` for that type. Returns the type and the body length.
pub fn decode_header(
    header: &[u8; HEADER_LEN],
    limits: &Limits,
) -> Result<(FrameType, u32), DecodeError> {
    let [ty, l0, l1, l2, l3] = *header;
    let frame = FrameType::from_u8(ty).ok_or(DecodeError::UnknownFrameType(ty))?;
    let len = u32::from_be_bytes([l0, l1, l2, l3]);
    let max = limits.max_body(frame);
    if len > max {
        return Err(DecodeError::FrameTooLarge { frame, len, max });
    }
    Ok((frame, len))
}

/// Decodes the body of a frame of type `frame` whose header was validated by
/// [`decode_header`]. `body` must be exactly the body; payloads become
/// slices of it.
pub fn decode_body(frame: FrameType, body: Bytes, limits: &Limits) -> Result<Frame, DecodeError> {
    let mut r = Reader { frame, buf: body };
    let decoded = match frame {
        FrameType::Hello => {
            let version = r.u16("truncated version")?;
            if version != PROTOCOL_VERSION {
                // The rest of the body is in a layout this node cannot know.
                return Err(DecodeError::UnsupportedVersion { version });
            }
            let node = r.short_str(Field::NodeName, limits.max_node_name)?;
            let resume = match r.u8("missing resume flag")? {
                0 => None,
                1 => Some(Cursor {
                    epoch: r.u64("truncated resume epoch")?,
                    next_seq: r.u64("truncated resume sequence number")?,
                }),
                _ => return Err(r.malformed("resume flag is neither 0 nor 1")),
            };
            Frame::Hello {
                version,
                node,
                resume,
            }
        }
        FrameType::New => Frame::New {
            epoch: r.u64("truncated epoch")?,
            start_seq: r.u64("truncated start sequence number")?,
        },
        FrameType::Resumed => Frame::Resumed {
            epoch: r.u64("truncated epoch")?,
            from_seq: r.u64("truncated sequence number")?,
        },
        FrameType::Expired => Frame::Expired {
            epoch: r.u64("truncated epoch")?,
            missed: r.u64("truncated missed count")?,
            resume_seq: r.u64("truncated resume sequence number")?,
        },
        FrameType::Message => {
            let seq = r.u64("truncated sequence number")?;
            let topic = r.short_str(Field::Topic, limits.max_topic_bytes)?.into();
            let payload = r.payload(limits)?;
            Frame::Message {
                seq,
                topic,
                payload,
            }
        }
        FrameType::Lapped => Frame::Lapped {
            missed: r.u64("truncated missed count")?,
            resume_seq: r.u64("truncated resume sequence number")?,
        },
        FrameType::Direct => {
            let topic = r.short_str(Field::Topic, limits.max_topic_bytes)?.into();
            let payload = r.payload(limits)?;
            Frame::Direct { topic, payload }
        }
        FrameType::Ack => Frame::Ack {
            next_seq: r.u64("truncated sequence number")?,
        },
    };
    r.finish()?;
    Ok(decoded)
}

/// Decodes one frame from the start of `input`.
///
/// Returns `Ok(None)` if `input` holds only part of a valid frame, and
/// `Ok(Some((frame, consumed)))` otherwise. The payload is copied out of
/// `input`; the [`Decoder`] avoids that copy. Meant for tests and fuzzing.
pub fn decode_frame(input: &[u8], limits: &Limits) -> Result<Option<(Frame, usize)>, DecodeError> {
    // An unknown type is rejected before the rest of the header is there.
    let Some((frame, len)) = frame_header(input, limits)? else {
        return Ok(None);
    };
    let end = HEADER_LEN + body_len(len);
    let Some(body) = input.get(HEADER_LEN..end) else {
        return Ok(None);
    };
    let decoded = decode_body(frame, Bytes::copy_from_slice(body), limits)?;
    Ok(Some((decoded, end)))
}

/// Bytes reserved at least when a frame starts to span chunks: frames cut
/// by chunk boundaries then share allocations.
const STITCH_BLOCK: usize = 4096;

/// Incremental decoder: [`push`](Self::push) bytes as they arrive, in any
/// chunking, and pull frames with [`next_frame`](Self::next_frame).
///
/// # Guarantees
///
/// - **Never panics**, whatever the input.
/// - **Checks every length before allocating.** A header is validated (known
///   type, body length within [`Limits::max_body`] for that type) as soon as
///   its five bytes are there; only then is room reserved for the body. Inside
///   a body, string lengths are checked against the limits and the bytes that
///   are actually present.
/// - **Bounded memory.** The [`Decoder`] holds only the bytes pushed and not
///   yet returned as frames; once [`Decoder::next_frame`] has returned
///   `Ok(None)`, that is less than one frame of the largest allowed size.
/// - **At most one copy.** Bytes pushed as [`Bytes`]
///   ([`push_bytes`](Self::push_bytes)) are not copied at all: a message's
///   payload is a slice of the chunk it arrived in. Only a frame that spans
///   two chunks is copied, into a buffer of its own; bytes pushed as a slice
///   are copied once. (Holding on to a payload keeps the buffer it is a
///   slice of alive.)
/// - **Errors are final.** After an error the stream cannot be resynchronised;
///   the decoder keeps returning that error and the connection must be closed
///   with [`DecodeError::code`].
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    /// Bytes received and not yet returned as frames are `stitch`, then
    /// `chunk`. `stitch` holds the start of a frame that spans chunks (and
    /// bytes pushed as slices); `chunk` is the rest of the last chunk pushed
    /// as [`Bytes`], which whole frames are sliced from.
    stitch: BytesMut,
    chunk: Bytes,
    /// The topic of the last `Message` frame, handed out again while the
    /// topics repeat (no allocation, no UTF-8 check).
    last_topic: Option<Name>,
    /// The first error, returned again by every later call.
    error: Option<DecodeError>,
}

impl Decoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            stitch: BytesMut::new(),
            chunk: Bytes::new(),
            last_topic: None,
            error: None,
        }
    }

    /// The limits this decoder enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Appends received bytes (copied). Call [`next_frame`](Self::next_frame)
    /// until it returns `Ok(None)` before pushing more, to keep the buffer
    /// bounded.
    pub fn push(&mut self, data: &[u8]) {
        if self.error.is_none() {
            self.stitch_chunk();
            self.stitch.extend_from_slice(data);
        }
    }

    /// Appends received bytes without copying them: frames that lie whole in
    /// `data` are sliced from it. As with [`push`](Self::push), pull every
    /// frame before pushing more.
    pub fn push_bytes(&mut self, data: Bytes) {
        if self.error.is_none() {
            self.stitch_chunk();
            self.chunk = data;
        }
    }

    /// Moves what is left of `chunk` behind `stitch`, so that new bytes can
    /// follow it (only if frames were not pulled before the next push).
    fn stitch_chunk(&mut self) {
        if !self.chunk.is_empty() {
            self.stitch.extend_from_slice(&self.chunk);
            self.chunk = Bytes::new();
        }
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or the
    /// error that makes the stream invalid (returned again on every later
    /// call).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        let result = self.step();
        if let Err(error) = &result {
            self.error = Some(error.clone());
            self.stitch = BytesMut::new();
            self.chunk = Bytes::new();
        }
        result
    }

    /// Bytes held: the unfinished frame, and any frames not yet pulled.
    pub fn buffered(&self) -> usize {
        self.stitch.len() + self.chunk.len()
    }

    /// To call when the stream ends: an error if it ended inside a frame.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if let Some(error) = &self.error {
            return Err(error.clone());
        }
        match self.buffered() {
            0 => Ok(()),
            buffered => Err(DecodeError::Truncated { buffered }),
        }
    }

    fn step(&mut self) -> Result<Option<Frame>, DecodeError> {
        if !self.stitch.is_empty() {
            return self.stitched();
        }
        let Some(header) = frame_header(&self.chunk, &self.limits)? else {
            self.stitch_chunk();
            return Ok(None);
        };
        let (frame, len) = header;
        let end = HEADER_LEN + body_len(len);
        if self.chunk.len() < end {
            // `len` was checked against the limits: reserving it is bounded.
            // A new block also holds the next few frames that span chunks.
            if self.stitch.capacity() < end {
                self.stitch.reserve(end.max(STITCH_BLOCK));
            }
            self.stitch_chunk();
            return Ok(None);
        }
        let decoded = decode_in(
            frame,
            &self.chunk,
            HEADER_LEN..end,
            &self.limits,
            &mut self.last_topic,
        );
        self.chunk.advance(end);
        decoded.map(Some)
    }

    /// Completes the frame that starts in `stitch` with bytes from `chunk`:
    /// first its header, then (once the header is valid) its body.
    fn stitched(&mut self) -> Result<Option<Frame>, DecodeError> {
        let mut want = HEADER_LEN;
        loop {
            let take = want.saturating_sub(self.stitch.len()).min(self.chunk.len());
            self.stitch.extend_from_slice(&self.chunk[..take]);
            self.chunk.advance(take);
            match frame_header(&self.stitch, &self.limits)? {
                Some((frame, len)) => {
                    let end = HEADER_LEN + body_len(len);
                    if want < end {
                        want = end;
                        continue;
                    }
                    if self.stitch.len() < end {
                        // `len` was checked against the limits: bounded.
                        self.stitch.reserve(end - self.stitch.len());
                        return Ok(None);
                    }
                    let bytes = self.stitch.split_to(end).freeze();
                    let limits = &self.limits;
                    return decode_in(frame, &bytes, HEADER_LEN..end, limits, &mut self.last_topic)
                        .map(Some);
                }
                None => return Ok(None),
            }
        }
    }
}

/// Decodes the frame of type `frame` (header validated) whose body is
/// `source[body]`; payloads are slices of `source`. A well-formed `Message`
/// is read in place, and a topic equal to the last one is `last_topic`
/// again (no allocation, no UTF-8 check); anything else goes through
/// [`decode_body`], which decodes it or rejects it with the precise error.
fn decode_in(
    frame: FrameType,
    source: &Bytes,
    body: Range<usize>,
    limits: &Limits,
    last_topic: &mut Option<Name>,
) -> Result<Frame, DecodeError> {
    if frame == FrameType::Message {
        if let Some(message) = message_in(source, body.clone(), limits, last_topic) {
            return Ok(message);
        }
    }
    decode_body(frame, source.slice(body), limits)
}

/// The fast path of [`decode_in`]; `None` (nothing decided) for anything
/// but a well-formed `Message` body.
fn message_in(
    source: &Bytes,
    body: Range<usize>,
    limits: &Limits,
    last_topic: &mut Option<Name>,
) -> Option<Frame> {
    const SEQ: usize = 8;
    let (seq, rest) = source.get(body.clone())?.split_first_chunk::<SEQ>()?;
    let (&topic_len, rest) = rest.split_first()?;
    let topic_len = usize::from(topic_len);
    if topic_len > usize::from(limits.max_topic_bytes) {
        return None;
    }
    let topic = rest.get(..topic_len)?;
    if rest.len() - topic_len > body_len(limits.max_message_bytes) {
        return None;
    }
    let topic = match last_topic {
        Some(last) if last.as_bytes() == topic => last.clone(),
        _ => {
            let topic = Name::new(std::str::from_utf8(topic).ok()?);
            *last_topic = Some(topic.clone());
            topic
        }
    };
    Some(Frame::Message {
        seq: u64::from_be_bytes(*seq),
        topic,
        payload: source.slice(body.start + SEQ + 1 + topic_len..body.end),
    })
}

/// The validated header at the start of `bytes`; `None` if its five bytes
/// are not all there yet. An unknown type is rejected from the first byte.
fn frame_header(bytes: &[u8], limits: &Limits) -> Result<Option<(FrameType, u32)>, DecodeError> {
    let Some(&ty) = bytes.first() else {
        return Ok(None);
    };
    FrameType::from_u8(ty).ok_or(DecodeError::UnknownFrameType(ty))?;
    match bytes.first_chunk::<HEADER_LEN>() {
        Some(header) => decode_header(header, limits).map(Some),
        None => Ok(None),
    }
}

/// A body length as a `usize`. Lengths were checked against [`Limits`],
/// which are `u32`; on a 16-bit target the saturated value only makes the
/// decoder wait for bytes that cannot come.
fn body_len(len: u32) -> usize {
    usize::try_from(len).unwrap_or(usize::MAX)
}

/// Reads the fields of one body, turning every shortfall into
/// [`DecodeError::Malformed`].
struct Reader {
    frame: FrameType,
    buf: Bytes,
}

impl Reader {
    fn malformed(&self, what: &'static str) -> DecodeError {
        DecodeError::Malformed {
            frame: self.frame,
            what,
        }
    }

    /// Fails with `what` unless `n` more bytes are there.
    fn need(&self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.len() < n {
            Err(self.malformed(what))
        } else {
            Ok(())
        }
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        self.need(1, what)?;
        Ok(self.buf.get_u8())
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        self.need(2, what)?;
        Ok(self.buf.get_u16())
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        self.need(8, what)?;
        Ok(self.buf.get_u64())
    }

    /// A `u8`-length-prefixed UTF-8 string of at most `max` bytes.
    fn short_str(&mut self, field: Field, max: u8) -> Result<String, DecodeError> {
        let (truncated, not_utf8) = match field {
            Field::NodeName => ("truncated node name", "node name is not UTF-8"),
            Field::Topic | Field::Payload => ("truncated topic", "topic is not UTF-8"),
        };
        let len = usize::from(self.u8(truncated)?);
        if len > usize::from(max) {
            return Err(DecodeError::TooLong {
                field,
                len,
                max: max.into(),
            });
        }
        self.need(len, truncated)?;
        let bytes = self.buf.split_to(len);
        match std::str::from_utf8(&bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(self.malformed(not_utf8)),
        }
    }

    /// The rest of the body, at most `limits.max_message_bytes` long.
    fn payload(&mut self, limits: &Limits) -> Result<Bytes, DecodeError> {
        let max = body_len(limits.max_message_bytes);
        let len = self.buf.len();
        if len > max {
            return Err(DecodeError::TooLong {
                field: Field::Payload,
                len,
                max,
            });
        }
        Ok(std::mem::take(&mut self.buf))
    }

    fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.malformed("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::test_util::Rng;
    use crate::proto::{EncodeError, Encoder, HELLO_MAX_BODY, MESSAGE_PREFIX_LEN};

    fn limits() -> Limits {
        Limits {
            max_message_bytes: 64,
            max_topic_bytes: 16,
            max_node_name: 8,
        }
    }

    fn samples() -> Vec<Frame> {
        vec![
            Frame::Hello {
                version: PROTOCOL_VERSION,
                node: "node-a".into(),
                resume: None,
            },
            Frame::Hello {
                version: PROTOCOL_VERSION,
                node: "n".into(),
                resume: Some(Cursor {
                    epoch: u64::MAX,
                    next_seq: 42,
                }),
            },
            Frame::Hello {
                version: PROTOCOL_VERSION,
                node: String::new(),
                resume: Some(Cursor {
                    epoch: 0,
                    next_seq: 0,
                }),
            },
            Frame::New {
                epoch: 0xdead_beef,
                start_seq: 7,
            },
            Frame::Resumed {
                epoch: 1,
                from_seq: u64::MAX,
            },
            Frame::Expired {
                epoch: 2,
                missed: 3,
                resume_seq: 4,
            },
            Frame::Message {
                seq: 5,
                topic: "prices".into(),
                payload: Bytes::from_static(b"hello"),
            },
            Frame::Message {
                seq: 6,
                topic: "".into(),
                payload: Bytes::new(),
            },
            Frame::Message {
                seq: 7,
                topic: "é-byte-topic-16".into(),
                payload: Bytes::from(vec![0xab; 64]),
            },
            Frame::Lapped {
                missed: 10,
                resume_seq: 20,
            },
            Frame::Direct {
                topic: "rpc".into(),
                payload: Bytes::from_static(b"\x00\x01\x02"),
            },
            Frame::Direct {
                topic: "".into(),
                payload: Bytes::new(),
            },
            Frame::Ack { next_seq: 99 },
        ]
    }

    fn encode(frame: &Frame) -> Vec<u8> {
        let mut out = Vec::new();
        Encoder::new(limits()).encode(frame, &mut out).unwrap();
        out
    }

    fn encode_all(frames: &[Frame]) -> Vec<u8> {
        frames.iter().flat_map(encode).collect()
    }

    /// Decodes all of `stream`, pushed in chunks of the given sizes.
    fn decode_chunked(stream: &[u8], chunks: impl IntoIterator<Item = usize>) -> Vec<Frame> {
        let mut decoder = Decoder::new(limits());
        let mut frames = Vec::new();
        let mut rest = stream;
        let mut chunks = chunks.into_iter();
        while !rest.is_empty() {
            let n = chunks.next().unwrap_or(rest.len()).min(rest.len());
            decoder.push(&rest[..n]);
            rest = &rest[n..];
            while let Some(frame) = decoder.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        decoder.finish().unwrap();
        assert_eq!(decoder.buffered(), 0);
        frames
    }

    /// A stream holding `header` and `body`, decoded in one push.
    fn decode_raw(frame_type: u8, body: &[u8]) -> Result<Option<Frame>, DecodeError> {
        let mut bytes = vec![frame_type];
        bytes.extend_from_slice(&(body.len() as u32).to_be_bytes());
        bytes.extend_from_slice(body);
        let mut decoder = Decoder::new(limits());
        decoder.push(&bytes);
        decoder.next_frame()
    }

    fn malformed(frame: FrameType, what: &'static str) -> DecodeError {
        DecodeError::Malformed { frame, what }
    }

    #[test]
    fn every_frame_round_trips() {
        for frame in samples() {
            let bytes = encode(&frame);
            assert_eq!(bytes.len() as u64, HEADER_LEN as u64 + frame.body_len());
            assert_eq!(bytes[0], frame.frame_type().as_u8());
            let (decoded, used) = decode_frame(&bytes, &limits()).unwrap().unwrap();
            assert_eq!(decoded, frame);
            assert_eq!(used, bytes.len());
            assert_eq!(decode_chunked(&bytes, []), vec![frame]);
        }
    }

    #[test]
    fn a_repeated_long_topic_shares_one_allocation() {
        // Names of up to 23 bytes are inline (copied); longer ones are
        // allocated, once per run of equal topics.
        let (a, b) = ("a".repeat(30), "b".repeat(30));
        let message = |seq, topic: &str| Frame::Message {
            seq,
            topic: topic.into(),
            payload: Bytes::from_static(b"p"),
        };
        let frames = vec![
            message(0, &a),
            message(1, &a),
            message(2, &b),
            message(3, &b),
        ];
        // Topics this long need the default limits.
        let mut bytes = Vec::new();
        for frame in &frames {
            Encoder::new(Limits::DEFAULT)
                .encode(frame, &mut bytes)
                .unwrap();
        }
        let mut decoder = Decoder::new(Limits::DEFAULT);
        let mut decoded = Vec::new();
        for piece in bytes.chunks(7) {
            decoder.push(piece);
            while let Some(frame) = decoder.next_frame().unwrap() {
                decoded.push(frame);
            }
        }
        assert_eq!(decoded, frames);
        let topic = |f: &Frame| match f {
            Frame::Message { topic, .. } => topic.as_ptr(),
            other => panic!("not a message: {other:?}"),
        };
        assert_eq!(topic(&decoded[0]), topic(&decoded[1]));
        assert_eq!(topic(&decoded[2]), topic(&decoded[3]));
        assert_ne!(topic(&decoded[1]), topic(&decoded[2]));
    }

    #[test]
    fn malformed_message_bodies_get_the_precise_error_from_the_decoder() {
        // Too short for a sequence number, topic cut short, topic not UTF-8,
        // topic over the limit: each rejected as the one-shot decoder does.
        let cases: [(&[u8], DecodeError); 4] = [
            (
                &[0; 7],
                malformed(FrameType::Message, "truncated sequence number"),
            ),
            (
                &[0, 0, 0, 0, 0, 0, 0, 1, 3, b'a'],
                malformed(FrameType::Message, "truncated topic"),
            ),
            (
                &[0, 0, 0, 0, 0, 0, 0, 1, 1, 0xff],
                malformed(FrameType::Message, "topic is not UTF-8"),
            ),
            (
                &[&[0u8; 8][..], &[17], &[b'a'; 17]].concat(),
                DecodeError::TooLong {
                    field: Field::Topic,
                    len: 17,
                    max: 16,
                },
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(decode_raw(5, body), Err(expected.clone()), "{body:?}");
            assert_eq!(
                decode_body(FrameType::Message, Bytes::copy_from_slice(body), &limits()),
                Err(expected)
            );
        }
    }

    #[test]
    fn message_around_a_ring_entry_is_the_message_frame() {
        let encoder = Encoder::new(limits());
        let entry = [&[3u8][..], b"abc", b"payload"].concat();
        let mut frame = vec![0xEE; MESSAGE_PREFIX_LEN];
        frame.extend_from_slice(&entry);
        encoder.message_around_entry(7, &mut frame).unwrap();
        let expected = Frame::Message {
            seq: 7,
            topic: "abc".into(),
            payload: Bytes::from_static(b"payload"),
        };
        assert_eq!(frame, encode(&expected));
        // Malformed entries and entries over the limits: an error, and the
        // room before the entry is left as it was.
        let too_long_topic = [&[17u8][..], &[b'a'; 17]].concat();
        let too_long_payload = [&[0u8][..], &[0u8; 65]].concat();
        let cases: [(&[u8], EncodeError); 5] = [
            (&[], EncodeError::MalformedEntry("empty")),
            (&[4, b'a'], EncodeError::MalformedEntry("topic cut short")),
            (
                &[1, 0xff],
                EncodeError::MalformedEntry("topic is not UTF-8"),
            ),
            (
                &too_long_topic,
                EncodeError::TooLong {
                    field: Field::Topic,
                    len: 17,
                    max: 16,
                },
            ),
            (
                &too_long_payload,
                EncodeError::TooLong {
                    field: Field::Payload,
                    len: 65,
                    max: 64,
                },
            ),
        ];
        for (entry, expected) in cases {
            let mut frame = vec![0xEE; MESSAGE_PREFIX_LEN];
            frame.extend_from_slice(entry);
            let before = frame.clone();
            assert_eq!(encoder.message_around_entry(1, &mut frame), Err(expected));
            assert_eq!(frame, before);
        }
        assert_eq!(
            encoder.message_around_entry(1, &mut [0; MESSAGE_PREFIX_LEN - 1]),
            Err(EncodeError::MalformedEntry("shorter than the frame prefix"))
        );
    }

    #[test]
    fn byte_layouts_are_fixed() {
        assert_eq!(
            encode(&Frame::Ack { next_seq: 0x0102 }),
            [8, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 1, 2]
        );
        assert_eq!(
            encode(&Frame::Hello {
                version: 1,
                node: "ab".into(),
                resume: Some(Cursor {
                    epoch: 3,
                    next_seq: 4
                }),
            }),
            [
                1, 0, 0, 0, 22, // header
                0, 1, // version
                2, b'a', b'b', // node
                1,    // resume flag
                0, 0, 0, 0, 0, 0, 0, 3, // epoch
                0, 0, 0, 0, 0, 0, 0, 4, // next_seq
            ]
        );
        assert_eq!(
            encode(&Frame::Message {
                seq: 1,
                topic: "t".into(),
                payload: Bytes::from_static(b"xy"),
            }),
            [5, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, 1, 1, b't', b'x', b'y']
        );
        assert_eq!(
            encode(&Frame::Direct {
                topic: "t".into(),
                payload: Bytes::from_static(b"xy"),
            }),
            [7, 0, 0, 0, 4, 1, b't', b'x', b'y']
        );
    }

    #[test]
    fn any_chunking_yields_the_same_frames() {
        let frames = samples();
        let stream = encode_all(&frames);
        assert_eq!(decode_chunked(&stream, std::iter::repeat(1)), frames);
        assert_eq!(decode_chunked(&stream, [0, 0, 3, 0, 2]), frames);
        let mut rng = Rng::new(1);
        for _ in 0..500 {
            let max = 1 + rng.below(40);
            let chunks: Vec<usize> = (0..stream.len()).map(|_| rng.below(max) as usize).collect();
            assert_eq!(decode_chunked(&stream, chunks), frames);
        }
    }

    #[test]
    fn every_proper_prefix_needs_more() {
        for frame in samples() {
            let bytes = encode(&frame);
            for end in 0..bytes.len() {
                assert_eq!(
                    decode_frame(&bytes[..end], &limits()),
                    Ok(None),
                    "{frame:?} {end}"
                );
                let mut decoder = Decoder::new(limits());
                decoder.push(&bytes[..end]);
                assert_eq!(decoder.next_frame(), Ok(None));
                assert_eq!(decoder.buffered(), end);
                let truncated = decoder.finish();
                if end == 0 {
                    assert_eq!(truncated, Ok(()));
                } else {
                    assert_eq!(truncated, Err(DecodeError::Truncated { buffered: end }));
                    assert_eq!(truncated.unwrap_err().code(), ErrorCode::MalformedFrame);
                }
            }
        }
    }

    #[test]
    fn unknown_type_is_rejected_at_the_first_byte() {
        for ty in [0u8, 9, 0x7f, 0xff] {
            assert_eq!(
                decode_frame(&[ty], &limits()),
                Err(DecodeError::UnknownFrameType(ty))
            );
            let mut decoder = Decoder::new(limits());
            decoder.push(&[ty]);
            let error = decoder.next_frame().unwrap_err();
            assert_eq!(error, DecodeError::UnknownFrameType(ty));
            assert_eq!(error.code(), ErrorCode::MalformedFrame);
        }
    }

    #[test]
    fn oversized_bodies_are_rejected_from_the_header_alone() {
        let l = limits();
        let cases = [
            (FrameType::Hello, HELLO_MAX_BODY),
            (FrameType::New, 16),
            (FrameType::Resumed, 16),
            (FrameType::Expired, 24),
            (FrameType::Lapped, 16),
            (FrameType::Ack, 8),
            (FrameType::Message, 9 + 16 + 64),
            (FrameType::Direct, 1 + 16 + 64),
        ];
        for (frame, max) in cases {
            assert_eq!(l.max_body(frame), max);
            for len in [max + 1, u32::MAX] {
                let mut header = [frame.as_u8(), 0, 0, 0, 0];
                header[1..].copy_from_slice(&len.to_be_bytes());
                let expected = DecodeError::FrameTooLarge { frame, len, max };
                assert_eq!(decode_header(&header, &l), Err(expected.clone()));
                // Only the header was sent: the body is never waited for.
                let mut decoder = Decoder::new(l);
                decoder.push(&header);
                assert_eq!(decoder.next_frame(), Err(expected.clone()));
                assert_eq!(expected.code(), ErrorCode::FrameTooLarge);
                assert_eq!(decoder.buffered(), 0);
            }
            // The largest allowed length is accepted and waited for.
            let mut header = [frame.as_u8(), 0, 0, 0, 0];
            header[1..].copy_from_slice(&max.to_be_bytes());
            assert_eq!(decode_header(&header, &l), Ok((frame, max)));
        }
    }

    #[test]
    fn max_body_saturates() {
        let l = Limits {
            max_message_bytes: u32::MAX,
            ..Limits::DEFAULT
        };
        assert_eq!(l.max_body(FrameType::Message), u32::MAX);
        assert_eq!(l.max_body(FrameType::Direct), u32::MAX);
        assert_eq!(Limits::default(), Limits::DEFAULT);
    }

    #[test]
    fn short_fixed_bodies_are_malformed() {
        assert_eq!(
            decode_raw(2, &[0; 15]),
            Err(malformed(FrameType::New, "truncated start sequence number"))
        );
        assert_eq!(
            decode_raw(3, &[0; 3]),
            Err(malformed(FrameType::Resumed, "truncated epoch"))
        );
        assert_eq!(
            decode_raw(4, &[0; 16]),
            Err(malformed(
                FrameType::Expired,
                "truncated resume sequence number"
            ))
        );
        assert_eq!(
            decode_raw(6, &[0; 8]),
            Err(malformed(
                FrameType::Lapped,
                "truncated resume sequence number"
            ))
        );
        assert_eq!(
            decode_raw(8, &[]),
            Err(malformed(FrameType::Ack, "truncated sequence number"))
        );
        assert_eq!(
            decode_raw(5, &[0; 4]),
            Err(malformed(FrameType::Message, "truncated sequence number"))
        );
        assert_eq!(
            decode_raw(7, &[]),
            Err(malformed(FrameType::Direct, "truncated topic"))
        );
    }

    #[test]
    fn hello_errors() {
        let hello = FrameType::Hello;
        // Another version: refused whatever follows, even garbage.
        for version in [0u16, 2, u16::MAX] {
            let mut body = version.to_be_bytes().to_vec();
            body.extend_from_slice(&[0xff; 100]);
            let error = decode_raw(1, &body).unwrap_err();
            assert_eq!(error, DecodeError::UnsupportedVersion { version });
            assert_eq!(error.code(), ErrorCode::UnsupportedVersion);
        }
        assert_eq!(
            decode_raw(1, &[0]),
            Err(malformed(hello, "truncated version"))
        );
        assert_eq!(
            decode_raw(1, &[0, 1]),
            Err(malformed(hello, "truncated node name"))
        );
        assert_eq!(
            decode_raw(1, &[0, 1, 3, b'a']),
            Err(malformed(hello, "truncated node name"))
        );
        assert_eq!(
            decode_raw(
                1,
                &[0, 1, 9, b'a', b'b', b'c', b'd', b'e', b'f', b'g', b'h', b'i', 0]
            ),
            Err(DecodeError::TooLong {
                field: Field::NodeName,
                len: 9,
                max: 8
            })
        );
        assert_eq!(
            decode_raw(1, &[0, 1, 2, 0xc3, 0x28, 0]),
            Err(malformed(hello, "node name is not UTF-8"))
        );
        assert_eq!(
            decode_raw(1, &[0, 1, 1, b'a']),
            Err(malformed(hello, "missing resume flag"))
        );
        assert_eq!(
            decode_raw(1, &[0, 1, 1, b'a', 2]),
            Err(malformed(hello, "resume flag is neither 0 nor 1"))
        );
        assert_eq!(
            decode_raw(1, &[0, 1, 1, b'a', 1, 0, 0, 0]),
            Err(malformed(hello, "truncated resume epoch"))
        );
        assert_eq!(
            decode_raw(1, &[0, 1, 1, b'a', 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(malformed(hello, "truncated resume sequence number"))
        );
        assert_eq!(
            decode_raw(1, &[0, 1, 1, b'a', 0, 0]),
            Err(malformed(hello, "trailing bytes"))
        );
    }

    #[test]
    fn message_and_direct_errors() {
        // Message: seq, then topic.
        let seq = [0u8; 8];
        let with_seq = |rest: &[u8]| [&seq[..], rest].concat();
        assert_eq!(
            decode_raw(5, &with_seq(&[17])),
            Err(DecodeError::TooLong {
                field: Field::Topic,
                len: 17,
                max: 16
            })
        );
        assert_eq!(
            decode_raw(5, &with_seq(&[3, b'a'])),
            Err(malformed(FrameType::Message, "truncated topic"))
        );
        assert_eq!(
            decode_raw(5, &with_seq(&[1, 0xff])),
            Err(malformed(FrameType::Message, "topic is not UTF-8"))
        );
        // A short topic leaves room in the body for a payload over its limit.
        let mut body = with_seq(&[0]);
        body.extend_from_slice(&[7; 65]);
        let error = decode_raw(5, &body).unwrap_err();
        assert_eq!(
            error,
            DecodeError::TooLong {
                field: Field::Payload,
                len: 65,
                max: 64
            }
        );
        assert_eq!(error.code(), ErrorCode::FrameTooLarge);
        // Direct: topic first.
        assert_eq!(
            decode_raw(7, &[200]),
            Err(DecodeError::TooLong {
                field: Field::Topic,
                len: 200,
                max: 16
            })
        );
        assert_eq!(
            decode_raw(7, &[2, b'a']),
            Err(malformed(FrameType::Direct, "truncated topic"))
        );
        assert_eq!(
            decode_raw(7, &[1, 0x80]),
            Err(malformed(FrameType::Direct, "topic is not UTF-8"))
        );
        let mut body = vec![0];
        body.extend_from_slice(&[7; 65]);
        assert!(matches!(
            decode_raw(7, &body),
            Err(DecodeError::TooLong {
                field: Field::Payload,
                ..
            })
        ));
    }

    #[test]
    fn errors_are_final() {
        let mut decoder = Decoder::new(limits());
        decoder.push(&encode(&Frame::Ack { next_seq: 1 }));
        decoder.push(&[0x42]);
        decoder.push(&encode(&Frame::Ack { next_seq: 2 }));
        assert_eq!(decoder.next_frame(), Ok(Some(Frame::Ack { next_seq: 1 })));
        let error = DecodeError::UnknownFrameType(0x42);
        assert_eq!(decoder.next_frame(), Err(error.clone()));
        decoder.push(&encode(&Frame::Ack { next_seq: 3 }));
        assert_eq!(decoder.next_frame(), Err(error.clone()));
        assert_eq!(decoder.finish(), Err(error));
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn payload_shares_the_decoder_buffer() {
        let frame = Frame::Message {
            seq: 1,
            topic: "t".into(),
            payload: Bytes::from(vec![9; 50]),
        };
        let mut decoder = Decoder::new(limits());
        // Push the header first: the decoder reserves the whole body at once.
        let bytes = encode(&frame);
        decoder.push(&bytes[..HEADER_LEN]);
        assert_eq!(decoder.next_frame(), Ok(None));
        let reserved = decoder.stitch.capacity();
        assert!(reserved >= bytes.len());
        let start = decoder.stitch.as_ptr() as usize;
        decoder.push(&bytes[HEADER_LEN..]);
        let Some(Frame::Message { payload, .. }) = decoder.next_frame().unwrap() else {
            panic!("expected a message");
        };
        let at = payload.as_ptr() as usize;
        assert!(
            at > start && at < start + reserved,
            "payload was copied again"
        );
    }

    #[test]
    fn frames_whole_in_a_pushed_chunk_are_slices_of_it() {
        let message = |seq: u64| Frame::Message {
            seq,
            topic: "t".into(),
            payload: Bytes::from(vec![seq as u8; 40]),
        };
        let stream = [
            encode(&message(1)),
            encode(&message(2)),
            encode(&message(3)),
        ]
        .concat();
        // The second frame spans the two chunks; the first and third lie
        // whole in one.
        let cut = stream.len() / 2;
        let first = Bytes::copy_from_slice(&stream[..cut]);
        let second = Bytes::copy_from_slice(&stream[cut..]);
        let within = |payload: &Bytes, chunk: &Bytes| {
            let at = payload.as_ptr() as usize;
            let start = chunk.as_ptr() as usize;
            at >= start && at + payload.len() <= start + chunk.len()
        };
        let mut decoder = Decoder::new(limits());
        decoder.push_bytes(first.clone());
        let Ok(Some(Frame::Message { payload: p1, .. })) = decoder.next_frame() else {
            panic!("expected message 1");
        };
        assert!(within(&p1, &first), "message 1 was copied");
        assert_eq!(decoder.next_frame(), Ok(None));
        assert_eq!(decoder.buffered(), cut - encode(&message(1)).len());
        decoder.push_bytes(second.clone());
        let Ok(Some(Frame::Message { payload: p2, .. })) = decoder.next_frame() else {
            panic!("expected message 2");
        };
        assert!(!within(&p2, &first) && !within(&p2, &second));
        let Ok(Some(Frame::Message { payload: p3, .. })) = decoder.next_frame() else {
            panic!("expected message 3");
        };
        assert!(within(&p3, &second), "message 3 was copied");
        assert_eq!(
            [p1, p2, p3].map(|p| p.to_vec()),
            [1u8, 2, 3].map(|b| vec![b; 40])
        );
        assert_eq!(decoder.next_frame(), Ok(None));
        assert_eq!(decoder.finish(), Ok(()));
    }

    #[test]
    fn slices_and_chunks_mix_in_any_order() {
        let frames: Vec<Frame> = (0..20u64)
            .map(|seq| match seq % 3 {
                0 => Frame::Ack { next_seq: seq },
                1 => Frame::Message {
                    seq,
                    topic: if seq % 2 == 0 { "even" } else { "odd" }.into(),
                    payload: Bytes::from(vec![seq as u8; seq as usize]),
                },
                _ => Frame::Lapped {
                    missed: seq,
                    resume_seq: seq + 1,
                },
            })
            .collect();
        let stream: Vec<u8> = frames.iter().flat_map(encode).collect();
        for step in 1..24 {
            let mut decoder = Decoder::new(limits());
            let mut decoded = Vec::new();
            for (i, piece) in stream.chunks(step).enumerate() {
                // Alternate the two ways in, and sometimes push twice before
                // pulling: both must still give the same frames.
                if i % 2 == 0 {
                    decoder.push_bytes(Bytes::copy_from_slice(piece));
                } else {
                    decoder.push(piece);
                }
                if i % 3 != 1 {
                    while let Some(frame) = decoder.next_frame().unwrap() {
                        decoded.push(frame);
                    }
                }
            }
            while let Some(frame) = decoder.next_frame().unwrap() {
                decoded.push(frame);
            }
            assert_eq!(decoded, frames, "chunks of {step}");
            assert_eq!(decoder.finish(), Ok(()));
        }
    }

    #[test]
    fn encoder_refuses_what_the_decoder_would() {
        let encoder = Encoder::new(limits());
        let mut out = Vec::new();
        let long_topic = "t".repeat(17);
        let cases = [
            (
                Frame::Message {
                    seq: 0,
                    topic: long_topic.clone().into(),
                    payload: Bytes::new(),
                },
                Field::Topic,
                17,
                16,
            ),
            (
                Frame::Direct {
                    topic: long_topic.into(),
                    payload: Bytes::new(),
                },
                Field::Topic,
                17,
                16,
            ),
            (
                Frame::Message {
                    seq: 0,
                    topic: "".into(),
                    payload: Bytes::from(vec![0; 65]),
                },
                Field::Payload,
                65,
                64,
            ),
            (
                Frame::Direct {
                    topic: "".into(),
                    payload: Bytes::from(vec![0; 65]),
                },
                Field::Payload,
                65,
                64,
            ),
            (
                Frame::Hello {
                    version: 1,
                    node: "n".repeat(9),
                    resume: None,
                },
                Field::NodeName,
                9,
                8,
            ),
        ];
        for (frame, field, len, max) in cases {
            assert_eq!(
                encoder.encode(&frame, &mut out),
                Err(EncodeError::TooLong { field, len, max })
            );
            assert!(out.is_empty(), "nothing is written on error");
        }
        assert_eq!(encoder.limits(), &limits());
    }

    #[test]
    fn headers_plus_payload_equal_the_whole_frame() {
        let encoder = Encoder::new(limits());
        let payload = b"payload bytes";
        let mut split = bytes::BytesMut::new();
        encoder
            .message_header(77, "topic", payload.len(), &mut split)
            .unwrap();
        split.extend_from_slice(payload);
        let whole = encode(&Frame::Message {
            seq: 77,
            topic: "topic".into(),
            payload: Bytes::from_static(payload),
        });
        assert_eq!(&split[..], &whole[..]);

        let mut split = Vec::new();
        encoder
            .direct_header("topic", payload.len(), &mut split)
            .unwrap();
        split.extend_from_slice(payload);
        let whole = encode(&Frame::Direct {
            topic: "topic".into(),
            payload: Bytes::from_static(payload),
        });
        assert_eq!(split, whole);
    }

    /// Feeds `input` to both decoding paths; they must agree and not panic.
    fn check_agreement(input: &[u8], rng: &mut Rng) {
        let l = limits();
        let one_shot = decode_frame(input, &l);
        let mut decoder = Decoder::new(l);
        let mut rest = input;
        let mut incremental = Ok(None);
        while !rest.is_empty() {
            let n = (1 + rng.below(8) as usize).min(rest.len());
            decoder.push(&rest[..n]);
            rest = &rest[n..];
            incremental = decoder.next_frame();
            if !matches!(incremental, Ok(None)) {
                break;
            }
        }
        match (one_shot, incremental) {
            (Ok(Some((a, _))), Ok(Some(b))) => assert_eq!(a, b),
            (Ok(None), Ok(None)) => {}
            (Err(a), Err(b)) => assert_eq!(a, b),
            (a, b) => panic!("paths disagree on {input:?}: {a:?} vs {b:?}"),
        }
        assert!(decoder.buffered() <= input.len());
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let mut rng = Rng::new(7);
        for _ in 0..20_000 {
            let len = rng.below(48) as usize;
            let mut input = rng.bytes(len);
            // Bias towards known types and small lengths so bodies get parsed.
            if let Some(first) = input.first_mut() {
                *first = 1 + (*first % 9);
            }
            if input.len() >= HEADER_LEN && rng.one_in(2) {
                let body = rng.below(44) as u32;
                input[1..HEADER_LEN].copy_from_slice(&body.to_be_bytes());
            }
            check_agreement(&input, &mut rng);
        }
    }

    #[test]
    fn mutated_frames_never_panic() {
        let mut rng = Rng::new(11);
        let encoded: Vec<Vec<u8>> = samples().iter().map(encode).collect();
        for _ in 0..20_000 {
            let mut input = encoded[rng.below(encoded.len() as u64) as usize].clone();
            match rng.below(3) {
                0 => {
                    let at = rng.below(input.len() as u64) as usize;
                    input[at] ^= 1 << rng.below(8);
                }
                1 => {
                    let at = rng.below(input.len() as u64) as usize;
                    input[at] = rng.next_u64() as u8;
                }
                _ => input.truncate(rng.below(input.len() as u64) as usize),
            }
            check_agreement(&input, &mut rng);
        }
    }
}
