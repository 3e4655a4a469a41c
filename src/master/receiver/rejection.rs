//! Why the master rejects a message: one word per reason, counted by the
//! receiver and written in the state file as `counter rejected.WORD`
//! (docs/state-file.md). Only the first three can be caused by a sender that
//! does not hold the secret (docs/protocol.md).

use crate::protocol::WireError;

use super::replay::Refusal;

/// A reason for rejecting a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rejection {
    /// Not exactly two frames.
    Frames,
    /// A payload over the size limit.
    Oversized,
    /// The MAC frame is malformed or does not match.
    BadMac,
    /// Another protocol version (authenticated).
    Version,
    /// Authenticated, but not a well-formed message.
    Malformed,
    /// Its timestamp is too far from the master's clock.
    Stale,
    /// Its sequence number was seen already.
    Replay,
}

impl Rejection {
    /// Every reason, in the order the state file lists them.
    pub const ALL: [Rejection; 7] = [
        Rejection::Frames,
        Rejection::Oversized,
        Rejection::BadMac,
        Rejection::Version,
        Rejection::Malformed,
        Rejection::Stale,
        Rejection::Replay,
    ];

    /// The counter's word.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Frames => "frames",
            Rejection::Oversized => "oversized",
            Rejection::BadMac => "bad_mac",
            Rejection::Version => "version",
            Rejection::Malformed => "malformed",
            Rejection::Stale => "stale",
            Rejection::Replay => "replay",
        }
    }
}

impl From<&WireError> for Rejection {
    fn from(e: &WireError) -> Rejection {
        match e {
            WireError::Frames(_) => Rejection::Frames,
            WireError::TooLarge(_) => Rejection::Oversized,
            WireError::BadMac => Rejection::BadMac,
            WireError::Version(_) => Rejection::Version,
            WireError::Malformed(_) => Rejection::Malformed,
        }
    }
}

impl From<&Refusal> for Rejection {
    fn from(r: &Refusal) -> Rejection {
        match r {
            Refusal::Stale { .. } => Rejection::Stale,
            Refusal::Replay { .. } => Rejection::Replay,
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
