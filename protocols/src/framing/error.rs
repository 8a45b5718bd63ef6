//! The framing error type.

/// What went wrong while decoding a frame from the peer, or why a frame cannot be sent.
///
/// Decoders return it from `next_*` (and `feed`); the `Protocol` adapters turn decode errors
/// into handler hooks or a close with a distinct [`DisconnectReason`]; `send_string` returns
/// the encoding errors.
///
/// [`DisconnectReason`]: torsion_reactor::DisconnectReason
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A line (not counting its delimiter) is longer than the maximum. It is reported as soon
    /// as it is known, often before its end arrives, so its full length is not known (and
    /// not reported: the same input gives the same error however it is split).
    #[error("line longer than the maximum of {max} bytes")]
    LineTooLong {
        /// The maximum in force.
        max: usize,
    },
    /// In [`LineEndings::Strict`](crate::framing::LineEndings::Strict) mode, a line feed that
    /// is not part of the delimiter.
    #[error("bare line feed (an LF that is not part of the line delimiter)")]
    BareLineFeed,
    /// A length prefix (or netstring length) announces more bytes than the maximum.
    #[error("frame length {length} exceeds the maximum of {max} bytes")]
    LengthLimitExceeded {
        /// The announced length.
        length: u64,
        /// The maximum in force.
        max: usize,
    },
    /// A string is too long for the length prefix to express (over 255 bytes for an 8-bit
    /// prefix, 65535 for 16 bits, 4294967295 for 32 bits).
    #[error("a string of {length} bytes cannot be sent with a length prefix that expresses at most {limit}")]
    TooLongForPrefix {
        /// The string's length.
        length: usize,
        /// The largest length the prefix can express.
        limit: u64,
    },
    /// Malformed netstring input; the text says what was wrong. The stream cannot be
    /// resynchronised after it.
    #[error("malformed netstring: {0}")]
    MalformedNetstring(&'static str),
}

impl FrameError {
    /// True for errors that mean "the peer broke a size limit" (as opposed to malformed input).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            FrameError::LineTooLong { .. }
                | FrameError::LengthLimitExceeded { .. }
                | FrameError::TooLongForPrefix { .. }
        )
    }
}
