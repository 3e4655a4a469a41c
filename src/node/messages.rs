//! What the node's threads hand each other: the items producers (the event
//! and stats threads) queue for the sender, the queue itself, and the flags
//! the threads share.
//!
//! Kept apart from node/mod.rs (`Node::run` starts the threads) so that
//! every thread's file imports these types from a sibling instead of from
//! the module that starts the threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use super::snapshot_gate::SnapshotGate;
use crate::protocol::{DomainState, Event, StatSample};
use crate::service::Bell;

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

/// The producers' end of the bounded queue to the sender: each item queued
/// rings the sender's bell, so the sender sleeps in one `poll` on the bell
/// and its socket's events instead of waking to look at the channel.
#[derive(Clone)]
pub struct ToSender {
    tx: SyncSender<Outgoing>,
    bell: Arc<Bell>,
}

impl ToSender {
    /// Queues `item` without blocking, as `SyncSender::try_send` (whose
    /// error gives the item back, hence its size).
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, item: Outgoing) -> Result<(), TrySendError<Outgoing>> {
        self.tx.try_send(item)?;
        self.bell.ring();
        Ok(())
    }
}

/// The queue between the producers and the sender: `capacity` items, the
/// producers' end, the sender's end, and the bell that rings for every item
/// (the sender clears it before it looks at the channel).
pub fn queue(capacity: usize) -> (ToSender, Receiver<Outgoing>, Arc<Bell>) {
    let (tx, rx) = sync_channel(capacity);
    let bell = Arc::new(Bell::new());
    let to = ToSender {
        tx,
        bell: bell.clone(),
    };
    (to, rx, bell)
}

/// Requests between threads.
pub struct Flags {
    /// Set by the sender (master reconnected) or at start; the event thread
    /// sends a full snapshot and clears it. Set it with
    /// [`Flags::want_snapshot`], which wakes the event thread.
    pub snapshot_wanted: AtomicBool,
    /// At most one unsent full list in the queue ([`SnapshotGate`]).
    pub gate: SnapshotGate,
    /// The event thread's bell: rung when another thread wants something of
    /// it (a snapshot, a stop); its loop sleeps until then or its next timer.
    pub events_bell: Bell,
}

impl Flags {
    /// Shared by the event thread and the sender; a snapshot is wanted at
    /// start, so the master learns the full state first.
    pub fn shared() -> Arc<Flags> {
        Arc::new(Flags {
            snapshot_wanted: AtomicBool::new(true),
            gate: SnapshotGate::new(),
            events_bell: Bell::new(),
        })
    }

    /// Asks the event thread for a full snapshot, and wakes it.
    pub fn want_snapshot(&self) {
        self.snapshot_wanted.store(true, Ordering::SeqCst);
        self.events_bell.ring();
    }
}
