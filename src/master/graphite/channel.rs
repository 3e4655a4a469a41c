//! What passes from the receiver to the graphite thread: the items on the
//! bounded channel between them, and the counters both keep.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::protocol::StatSample;

/// Items (one stats message or one summary each) between the receiver and
/// the graphite thread; beyond this the receiver drops and counts.
pub const CHANNEL_ITEMS: usize = 1024;

/// One node in a summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSummary {
    pub node: String,
    pub up: bool,
    /// Domains by state.
    pub states: BTreeMap<String, u64>,
}

/// What the receiver hands over.
#[derive(Debug)]
pub enum Item {
    /// An accepted stats message: `ts` is the node's send time (seconds).
    Stats {
        node: String,
        ts: u64,
        samples: Vec<StatSample>,
    },
    /// The state table at `ts` (the master's clock, seconds).
    Summary { ts: u64, nodes: Vec<NodeSummary> },
}

/// What was sent and lost on the way, for the thread's log lines, its own
/// metrics and the state file (`counter graphite.*`, docs/state-file.md).
#[derive(Debug, Default)]
pub struct GraphiteCounters {
    /// Items the receiver dropped because the channel was full.
    pub dropped_items: AtomicU64,
    /// Lines the graphite thread dropped, oldest first, from a full buffer.
    pub dropped_lines: AtomicU64,
    /// Lines written to carbon's socket.
    pub sent_lines: AtomicU64,
    /// Lines waiting in the buffer now.
    pub buffered_lines: AtomicU64,
    /// Whether the thread holds a connection to carbon now.
    pub connected: AtomicBool,
}

impl GraphiteCounters {
    /// `(name, value)` of each, as the state file's `counter graphite.NAME`
    /// lines have them (`connected` is 0 or 1).
    pub fn snapshot(&self) -> [(&'static str, u64); 5] {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            ("sent_lines", l(&self.sent_lines)),
            ("dropped_lines", l(&self.dropped_lines)),
            ("dropped_items", l(&self.dropped_items)),
            ("buffered_lines", l(&self.buffered_lines)),
            (
                "connected",
                u64::from(self.connected.load(Ordering::Relaxed)),
            ),
        ]
    }
}
