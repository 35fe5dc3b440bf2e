//! The frame codec against arbitrary bytes.
//!
//! Input layout (so that seeds are plain encoded frames behind a short
//! prefix, and mutations of the stream stay meaningful):
//!
//! ```text
//! [u8 limits selector][4 bytes chunk pattern][byte stream ...]
//! ```
//!
//! The stream is decoded twice: by repeated one-shot [`decode_frame`] calls
//! over the whole input, and by an incremental [`Decoder`] fed in chunks
//! whose sizes cycle through the pattern (1 to 255 bytes; odd-sized chunks
//! are pushed as `Bytes`, the others as slices). What must hold:
//!
//! 1. **Never panics.**
//! 2. **Both paths agree**: the same frames, then the same error (or the
//!    same incomplete tail); once the incremental decoder has failed it keeps
//!    returning that error, ignores pushes and holds no bytes.
//! 3. **Canonical**: every decoded frame re-encodes, with the same limits, to
//!    exactly the bytes it was decoded from.
//! 4. **Early rejection** (PROTOCOL.md, "Framing"): an unknown type is
//!    rejected from its first byte alone, an oversized body length from the
//!    five header bytes alone; a complete frame minus its last byte is
//!    "incomplete", never an error.
//! 5. **Bounded memory**: after `next_frame` returned `Ok(None)` the decoder
//!    holds less than one frame of the largest allowed size; and no single
//!    allocation made inside the codec is larger than a small multiple of
//!    (largest allowed frame + one chunk), whatever length a header claims
//!    (up to 4 GiB). A counting global allocator measures that.

#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use ringcast_net::proto::{
    decode_frame, DecodeError, Decoder, Encoder, ErrorCode, FrameType, Limits, HEADER_LEN,
};

/// Forwards to the system allocator and, while `MEASURING` is set, records
/// the largest single allocation (or reallocation target) in `LARGEST`.
struct Counting;

/// Set around calls into the codec only, so the harness's own bookkeeping is
/// not counted. Relaxed: the target is single-threaded.
static MEASURING: AtomicBool = AtomicBool::new(false);
/// Largest allocation size seen while measuring, in bytes.
static LARGEST: AtomicUsize = AtomicUsize::new(0);

fn note(size: usize) {
    if MEASURING.load(Ordering::Relaxed) {
        LARGEST.fetch_max(size, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards its arguments unchanged to `System`, which
// upholds the `GlobalAlloc` contract; the bookkeeping only touches atomics
// and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's guarantees about `layout`.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's guarantees about `layout`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded with the caller's guarantees about `ptr`,
        // `layout` and `new_size`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees about `ptr` and `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` with allocation measuring on.
fn measured<R>(f: impl FnOnce() -> R) -> R {
    MEASURING.store(true, Ordering::Relaxed);
    let r = f();
    MEASURING.store(false, Ordering::Relaxed);
    r
}

const TYPES: [FrameType; 8] = [
    FrameType::Hello,
    FrameType::New,
    FrameType::Resumed,
    FrameType::Expired,
    FrameType::Message,
    FrameType::Lapped,
    FrameType::Direct,
    FrameType::Ack,
];

fn limits(selector: u8) -> Limits {
    match selector % 3 {
        0 => Limits {
            max_message_bytes: 64,
            max_topic_bytes: 16,
            max_node_name: 8,
        },
        1 => Limits::DEFAULT,
        _ => Limits {
            max_message_bytes: 0,
            max_topic_bytes: 0,
            max_node_name: 0,
        },
    }
}

/// The code each kind of decode error must close the connection with
/// (PROTOCOL.md, "Errors and connection close").
fn expected_code(error: &DecodeError) -> ErrorCode {
    match error {
        DecodeError::FrameTooLarge { .. } | DecodeError::TooLong { .. } => ErrorCode::FrameTooLarge,
        DecodeError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
        _ => ErrorCode::MalformedFrame,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&[selector, c0, c1, c2, c3], stream)) = data.split_first_chunk::<5>() else {
        return;
    };
    let limits = limits(selector);
    let pattern = [c0, c1, c2, c3].map(|c| usize::from(c.max(1)));
    let largest_body = TYPES.iter().map(|&t| limits.max_body(t)).max().unwrap_or(0);
    let frame_bound = HEADER_LEN + largest_body as usize;
    // Growth of the decoder's buffer at most doubles a capacity that was
    // below what one frame plus one chunk needs (see `BytesMut::reserve`).
    let allocation_bound = 4 * (frame_bound + 256) + 4096;
    let encoder = Encoder::new(limits);
    LARGEST.store(0, Ordering::Relaxed);

    // One-shot decoding, frame after frame.
    let mut one_shot = Vec::new();
    let mut rest = stream;
    let one_shot_error = loop {
        match measured(|| decode_frame(rest, &limits)) {
            Ok(Some((frame, used))) => {
                assert!(used >= HEADER_LEN && used <= rest.len(), "used {used}");
                let (bytes, tail) = rest.split_at(used);
                // Canonical: re-encoding gives back exactly these bytes.
                let mut again = Vec::new();
                encoder
                    .encode(&frame, &mut again)
                    .expect("a decoded frame is within the limits it was decoded with");
                assert_eq!(again, bytes, "{frame:?} does not re-encode to its bytes");
                assert_eq!(frame.body_len() as usize, used - HEADER_LEN);
                // A frame minus its last byte is incomplete, not an error.
                assert_eq!(decode_frame(&bytes[..used - 1], &limits), Ok(None));
                one_shot.push(frame);
                rest = tail;
            }
            Ok(None) => break None,
            Err(error) => {
                assert_eq!(error.code(), expected_code(&error), "{error}");
                // Rejected as soon as the offending bytes are there.
                match &error {
                    DecodeError::UnknownFrameType(_) => {
                        assert_eq!(decode_frame(&rest[..1], &limits), Err(error.clone()));
                    }
                    DecodeError::FrameTooLarge { len, max, .. } => {
                        assert!(len > max);
                        assert_eq!(
                            decode_frame(&rest[..HEADER_LEN], &limits),
                            Err(error.clone())
                        );
                    }
                    _ => {}
                }
                break Some(error);
            }
        }
    };
    let tail = rest.len();

    // Incremental decoding in chunks.
    let mut decoder = Decoder::new(limits);
    let mut incremental = Vec::new();
    let mut incremental_error = None;
    let mut input = stream;
    let mut chunk = 0;
    'feed: while !input.is_empty() {
        let n = pattern[chunk % pattern.len()].min(input.len());
        chunk += 1;
        let (piece, more) = input.split_at(n);
        input = more;
        // Odd-sized chunks go in as `Bytes` (sliced, not copied), the
        // others as slices: both ways in, mixed.
        if n % 2 == 1 {
            let piece = Bytes::copy_from_slice(piece);
            measured(|| decoder.push_bytes(piece));
        } else {
            measured(|| decoder.push(piece));
        }
        loop {
            match measured(|| decoder.next_frame()) {
                Ok(Some(frame)) => incremental.push(frame),
                Ok(None) => break,
                Err(error) => {
                    incremental_error = Some(error);
                    break 'feed;
                }
            }
        }
        // Bounded: less than one largest frame once the decoder asks for more.
        assert!(
            decoder.buffered() < frame_bound,
            "{} bytes buffered, bound {frame_bound}",
            decoder.buffered()
        );
    }

    assert_eq!(
        incremental, one_shot,
        "the two paths decode different frames"
    );
    assert_eq!(
        incremental_error, one_shot_error,
        "the two paths fail differently"
    );
    match &incremental_error {
        Some(error) => {
            // Errors are final; nothing more is buffered.
            assert_eq!(decoder.next_frame().as_ref(), Err(error));
            decoder.push(b"\x08\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x01");
            assert_eq!(decoder.next_frame().as_ref(), Err(error));
            assert_eq!(decoder.buffered(), 0);
            assert_eq!(decoder.finish().as_ref(), Err(error));
        }
        None => {
            // The incomplete tail is exactly what the one-shot path left.
            assert_eq!(decoder.buffered(), tail);
            match tail {
                0 => assert_eq!(decoder.finish(), Ok(())),
                buffered => {
                    let truncated = decoder.finish().unwrap_err();
                    assert_eq!(truncated, DecodeError::Truncated { buffered });
                    assert_eq!(truncated.code(), ErrorCode::MalformedFrame);
                }
            }
        }
    }

    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(
        largest <= allocation_bound,
        "an allocation of {largest} bytes, bound {allocation_bound} ({limits:?})"
    );
});
