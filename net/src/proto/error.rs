//! Protocol errors and the QUIC application error codes they close the
//! connection with.

use std::fmt;

use super::{DecodeError, FrameType, PROTOCOL_VERSION};

/// QUIC application error codes, sent when a connection is closed.
///
/// Each names who broke what, so the peer can log it and decide whether a
/// reconnect can help (see `PROTOCOL.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Normal close: the node shuts down or drops the subscription.
    Shutdown = 0,
    /// A well-formed frame broke the protocol: wrong state, a sequence gap,
    /// an inconsistent handshake answer, an invalid ack.
    ProtocolViolation = 1,
    /// The hello's version is not [`PROTOCOL_VERSION`].
    UnsupportedVersion = 2,
    /// A frame, topic, node name or payload exceeds the receiver's limits.
    FrameTooLarge = 3,
    /// The hello's node name is not the one in the peer's certificate.
    Unauthorized = 4,
    /// The consumer's cursor is ahead of the producer's head in the same epoch.
    CursorFromFuture = 5,
    /// Unknown frame type, truncated or invalid body, invalid UTF-8.
    MalformedFrame = 6,
}

impl ErrorCode {
    /// The code as sent on the wire.
    pub const fn as_u32(self) -> u32 {
        self as u32
    }

    /// The code for a received value (QUIC codes are varints, hence `u64`),
    /// or `None` if unknown.
    pub const fn from_u64(code: u64) -> Option<Self> {
        Some(match code {
            0 => Self::Shutdown,
            1 => Self::ProtocolViolation,
            2 => Self::UnsupportedVersion,
            3 => Self::FrameTooLarge,
            4 => Self::Unauthorized,
            5 => Self::CursorFromFuture,
            6 => Self::MalformedFrame,
            _ => return None,
        })
    }

    /// A short lower-case description, usable as the close reason.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Shutdown => "shutdown",
            Self::ProtocolViolation => "protocol violation",
            Self::UnsupportedVersion => "unsupported protocol version",
            Self::FrameTooLarge => "frame too large",
            Self::Unauthorized => "unauthorized",
            Self::CursorFromFuture => "cursor from the future",
            Self::MalformedFrame => "malformed frame",
        }
    }
}

impl From<ErrorCode> for u32 {
    fn from(code: ErrorCode) -> Self {
        code.as_u32()
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason(), self.as_u32())
    }
}

/// Why a session refuses the peer. The connection is closed with
/// [`code`](Self::code); the session is then failed and refuses every later
/// call with [`ProtocolError::Failed`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The byte stream is invalid.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A frame the peer must not send in this state (for example a message
    /// before the handshake answer, a second hello, a hello from a producer).
    #[error("unexpected {frame} frame {state}")]
    UnexpectedFrame {
        /// The frame received.
        frame: FrameType,
        /// The state it arrived in, as "before the handshake" etc.
        state: &'static str,
    },
    /// The hello's version is not [`PROTOCOL_VERSION`].
    #[error("unsupported protocol version {version} (this node speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion {
        /// The version the peer speaks.
        version: u16,
    },
    /// The hello's node name is not the one in the peer's certificate.
    #[error("peer claims node name {claimed:?} but its certificate is for {certified:?}")]
    PeerNameMismatch {
        /// The name in the hello.
        claimed: String,
        /// The name in the certificate.
        certified: String,
    },
    /// The consumer resumes the producer's epoch at a sequence number the
    /// producer has not reached.
    #[error("cursor {next_seq} of epoch {epoch:#018x} is ahead of the head {head}")]
    CursorFromFuture {
        /// The epoch (the producer's own).
        epoch: u64,
        /// The consumer's cursor.
        next_seq: u64,
        /// The producer's head.
        head: u64,
    },
    /// A message beyond the cursor: delivering it would skip messages.
    #[error("message {got} arrived while {expected} was expected")]
    Gap {
        /// The consumer's `next_seq`.
        expected: u64,
        /// The message's `seq`.
        got: u64,
    },
    /// A handshake answer or lapped frame that does not fit the cursor.
    #[error("inconsistent {frame} frame: {what}")]
    Inconsistent {
        /// The frame received.
        frame: FrameType,
        /// What does not fit.
        what: &'static str,
    },
    /// An ack below an earlier ack.
    #[error("ack {acked} is below the previous ack {previous}")]
    AckRegressed {
        /// The new ack.
        acked: u64,
        /// The previous ack.
        previous: u64,
    },
    /// An ack of messages that were never sent.
    #[error("ack {acked} is beyond what was sent ({sent})")]
    AckBeyondSent {
        /// The ack.
        acked: u64,
        /// Everything below this was sent.
        sent: u64,
    },
    /// The sequence number space of the epoch is exhausted.
    #[error("sequence number overflow")]
    SeqOverflow,
    /// The session already failed; the connection must be closed.
    #[error("session already failed")]
    Failed,
}

impl ProtocolError {
    /// The QUIC application error code to close the connection with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Decode(error) => error.code(),
            Self::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            Self::PeerNameMismatch { .. } => ErrorCode::Unauthorized,
            Self::CursorFromFuture { .. } => ErrorCode::CursorFromFuture,
            Self::UnexpectedFrame { .. }
            | Self::Gap { .. }
            | Self::Inconsistent { .. }
            | Self::AckRegressed { .. }
            | Self::AckBeyondSent { .. }
            | Self::SeqOverflow
            | Self::Failed => ErrorCode::ProtocolViolation,
        }
    }
}

impl From<&ProtocolError> for ErrorCode {
    fn from(error: &ProtocolError) -> Self {
        error.code()
    }
}

impl From<&DecodeError> for ErrorCode {
    fn from(error: &DecodeError) -> Self {
        error.code()
    }
}
