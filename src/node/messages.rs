//! What the node's threads hand each other: the items producers (the event
//! and stats threads) queue for the sender, and the flags the threads share.
//!
//! Kept apart from node/mod.rs (`Node::run` starts the threads) so that
//! every thread's file imports these types from a sibling instead of from
//! the module that starts the threads.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::snapshot_gate::SnapshotGate;
use crate::protocol::{DomainState, Event, StatSample};

/// What producers hand to the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    Event(Event),
    Snapshot(Vec<DomainState>),
    Stats {
        interval_ms: u64,
        samples: Vec<StatSample>,
    },
}

/// Requests between threads.
pub struct Flags {
    /// Set by the sender (master reconnected) or at start; the event thread
    /// sends a full snapshot and clears it.
    pub snapshot_wanted: AtomicBool,
    /// At most one unsent full list in the queue ([`SnapshotGate`]).
    pub gate: SnapshotGate,
}

impl Flags {
    /// Shared by the event thread and the sender; a snapshot is wanted at
    /// start, so the master learns the full state first.
    pub fn shared() -> Arc<Flags> {
        Arc::new(Flags {
            snapshot_wanted: AtomicBool::new(true),
            gate: SnapshotGate::new(),
        })
    }
}
