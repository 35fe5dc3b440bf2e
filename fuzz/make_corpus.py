#!/usr/bin/env python3
"""Writes the committed seed corpus of the `frame_decoder` target.

Each seed is `[u8 limits selector][4 bytes chunk pattern][byte stream]`
(see fuzz_targets/frame_decoder.rs): selector 0 = small limits (payload 64,
topic 16, node 8), 1 = the defaults, 2 = all zero. The streams are valid
frames of every type, a few concatenations, and the hostile inputs the
network tests also send: an oversized length prefix, an unknown type, a
truncated frame, an unknown version, a bad resume flag, invalid UTF-8.

The `handshake` and `ring_model` seeds are structured (`Arbitrary`) inputs;
they come from a short fuzzing run minimised with `cargo fuzz cmin` (see
README.md), not from this script.

Usage: python3 make_corpus.py   (from the fuzz/ directory)
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "frame_decoder")


def frame(ty, body):
    return struct.pack(">BI", ty, len(body)) + body


def short_str(s):
    b = s.encode()
    return struct.pack(">B", len(b)) + b


def hello(node, resume=None, version=1):
    body = struct.pack(">H", version) + short_str(node)
    if resume is None:
        body += b"\x00"
    else:
        body += b"\x01" + struct.pack(">QQ", *resume)
    return frame(1, body)


def message(seq, topic, payload):
    return frame(5, struct.pack(">Q", seq) + short_str(topic) + payload)


def direct(topic, payload):
    return frame(7, short_str(topic) + payload)


SEEDS = {
    "hello": (0, b"\x01\x01\x01\x01", hello("node-a")),
    "hello-resume": (0, b"\x03\x05\x07\x02", hello("a", (0xDEADBEEF, 42))),
    "new": (1, b"\x10\x10\x10\x10", frame(2, struct.pack(">QQ", 7, 100))),
    "resumed": (1, b"\x02\x03\x02\x03", frame(3, struct.pack(">QQ", 7, 100))),
    "expired": (1, b"\xff\xff\xff\xff", frame(4, struct.pack(">QQQ", 7, 5, 105))),
    "lapped": (0, b"\x04\x04\x04\x04", frame(6, struct.pack(">QQ", 3, 9))),
    "ack": (0, b"\x08\x01\x08\x01", frame(8, struct.pack(">Q", 64))),
    "stream": (
        0,
        b"\x05\x0b\x01\x20",
        frame(2, struct.pack(">QQ", 1, 0))
        + b"".join(message(i, "t", b"m-%d" % i) for i in range(4))
        + frame(6, struct.pack(">QQ", 2, 6))
        + direct("d", b"direct")
        + message(6, "topic", b"x" * 40),
    ),
    "max-payload-small": (0, b"\x40\x40\x40\x40", message(1, "t" * 16, b"p" * 64)),
    "empty-topic-zero-limits": (2, b"\x01\x02\x03\x04", message(0, "", b"")),
    "oversized-length": (1, b"\x05\x05\x05\x05", struct.pack(">BI", 5, 0xFFFFFFFF)),
    "oversized-hello": (0, b"\x05\x05\x05\x05", struct.pack(">BI", 1, 1025) + b"\x00\x01"),
    "unknown-type": (0, b"\x01\x01\x01\x01", b"\x09\x00\x00\x00\x00"),
    "zero-type": (1, b"\x01\x01\x01\x01", b"\x00" * 8),
    "truncated": (0, b"\x03\x03\x03\x03", message(9, "t", b"payload")[:-3]),
    "version-2": (0, b"\x07\x07\x07\x07", frame(1, struct.pack(">H", 2) + b"\xff" * 20)),
    "bad-resume-flag": (0, b"\x06\x06\x06\x06", frame(1, struct.pack(">H", 1) + short_str("a") + b"\x02")),
    "bad-utf8-topic": (0, b"\x02\x02\x02\x02", frame(5, struct.pack(">Q", 0) + b"\x02\xc3\x28")),
    "trailing-bytes": (0, b"\x09\x09\x09\x09", frame(8, struct.pack(">Q", 1) + b"\x00")),
    "topic-too-long": (0, b"\x0c\x0c\x0c\x0c", message(0, "t" * 17, b"")),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, (selector, pattern, stream) in SEEDS.items():
        assert len(pattern) == 4
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(bytes([selector]) + pattern + stream)
    print(f"wrote {len(SEEDS)} seeds to {OUT}")


if __name__ == "__main__":
    main()
