//! The receiver's end of the graphite channel: offers each accepted stats
//! message and, once per `graphite_interval`, a summary of the state table,
//! with `try_send`, so carbon being slow or down never slows the receiver.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::channel::{GraphiteCounters, Item, NodeSummary};
use crate::master::view::table::StateTable;
use crate::protocol::{Body, Message};

/// The receiver's end: never blocks.
pub struct Exporter {
    tx: SyncSender<Item>,
    pub counters: Arc<GraphiteCounters>,
    interval: Duration,
    last_summary: Option<Instant>,
}

impl Exporter {
    /// The end that sends on `tx`, a summary every `interval`.
    pub fn new(
        tx: SyncSender<Item>,
        counters: Arc<GraphiteCounters>,
        interval: Duration,
    ) -> Exporter {
        Exporter {
            tx,
            counters,
            interval,
            last_summary: None,
        }
    }

    /// Offers an accepted message; only stats are exported.
    pub fn message(&mut self, msg: Message) {
        if let Body::Stats { samples, .. } = msg.body {
            self.offer(Item::Stats {
                node: msg.header.node,
                ts: msg.header.ts_ms / 1000,
                samples,
            });
        }
    }

    /// Called about every second by the receiver: once per interval, offers
    /// a summary of the table.
    pub fn tick(&mut self, table: &StateTable, now_ms: u64) {
        if self
            .last_summary
            .is_some_and(|t| t.elapsed() < self.interval)
        {
            return;
        }
        self.last_summary = Some(Instant::now());
        self.offer(Item::Summary {
            ts: now_ms / 1000,
            nodes: summarize(table),
        });
    }

    fn offer(&self, item: Item) {
        match self.tx.try_send(item) {
            Ok(()) => {}
            // Full: the graphite thread is behind; dropping here keeps the
            // receiver at full speed. Disconnected: the thread has gone.
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.dropped_items.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Counts each node's domains by state.
pub fn summarize(table: &StateTable) -> Vec<NodeSummary> {
    table
        .node_states()
        .map(|(node, up, domains)| {
            let mut states = BTreeMap::new();
            for state in domains {
                *states.entry(state.to_string()).or_insert(0) += 1;
            }
            NodeSummary {
                node: node.to_string(),
                up,
                states,
            }
        })
        .collect()
}
