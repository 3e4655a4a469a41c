//! The master's view: the true state of every domain on every node.
//!
//! Lifecycle events move a domain from state to state; snapshots replace a
//! node's whole list (a domain missing from a complete snapshot is gone from
//! that node); heartbeats and every other accepted message keep the node
//! alive. Each call returns the [`Update`]s that changed, in order, and
//! nothing for a message that changed nothing, so the panel hears only news.
//!
//! This file holds the table itself and what others may read of it; what
//! changes it is one file an idea beside it: apply.rs (a message),
//! domain.rs (one domain's state), snapshot.rs (a node's whole list),
//! reboot_counts.rs (which reboots are news), liveness.rs (silent nodes),
//! forget_node.rs, restore.rs (from the state file). The indexes and rules
//! that follow the table live in duplicates.rs, activity.rs, migration.rs
//! (how a copy weighs in a duplicate) and identity.rs (which host speaks
//! under which node id).

use std::collections::BTreeMap;

use super::activity::{Activity, IdleWarning};
use super::duplicates::{Copy, Duplicate, Duplicates};
use super::identity::{Clash, Identity};
use super::migration::Migrations;
use super::reboots::RebootStats;
use super::records::NodeRecord;
use crate::master::panel::update::Update;
use crate::vocab::State;

/// Every node and domain the master knows.
#[derive(Debug, Default)]
pub struct StateTable {
    pub(super) nodes: BTreeMap<String, NodeRecord>,
    pub(super) duplicates: Duplicates,
    pub(super) activity: Activity,
    pub(super) check_activity: bool,
    pub(super) node_timeout_ms: u64,
    /// How reboot ids were judged (state file counters `reboots.*`).
    pub(super) reboot_stats: RebootStats,
    /// The second this master started: a reboot id above it, without a
    /// record, is a reboot this master missed (reboots.rs); `None`: every
    /// id without a record is a baseline.
    pub(super) started_s: Option<u64>,
    /// Migrations in flight (migration.rs).
    pub(super) migrations: Migrations,
    /// Which host speaks under which node id (identity.rs).
    pub(super) identity: Identity,
    /// A node down this long is forgotten (0: never).
    pub(super) forget_after_ms: u64,
    /// The host and arrival time of the message being applied.
    pub(super) msg_host: Option<String>,
    pub(super) msg_now_ms: u64,
}

impl StateTable {
    pub fn new(check_activity: bool, node_timeout_s: u64) -> StateTable {
        StateTable {
            check_activity,
            node_timeout_ms: node_timeout_s * 1000,
            ..StateTable::default()
        }
    }

    /// Every node the master knows, by id (read only: the table changes
    /// through its methods).
    pub fn nodes(&self) -> &BTreeMap<String, NodeRecord> {
        &self.nodes
    }

    /// Each node's id, whether it is up, and the state of each of its
    /// domains (what graphite's summary counts).
    pub fn node_states(
        &self,
    ) -> impl Iterator<Item = (&str, bool, impl Iterator<Item = State> + '_)> + '_ {
        self.nodes
            .iter()
            .map(|(id, n)| (id.as_str(), n.up, n.domains.values().map(|d| d.state)))
    }

    /// How reboot ids were judged (state file counters `reboots.*`).
    pub fn reboot_stats(&self) -> &RebootStats {
        &self.reboot_stats
    }

    /// Which host speaks under which node id.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Notes the address `peer` that `host` speaks from as node `node`
    /// (identity.rs: looked up once per host and node id).
    pub fn introduce(&mut self, node: &str, host: &str, peer: String) {
        self.identity.introduce(node, host, peer);
    }

    /// A node down this long is forgotten (0: never).
    pub fn set_forget_after_ms(&mut self, ms: u64) {
        self.forget_after_ms = ms;
    }

    /// The second this master started (see the field).
    pub fn set_started_s(&mut self, s: u64) {
        self.started_s = Some(s);
    }

    /// `node_timeout` in seconds (for people).
    pub fn node_timeout_s(&self) -> u64 {
        self.node_timeout_ms / 1000
    }

    /// Duplicate verdicts that changed, each active copy weighed by
    /// migration.rs.
    pub(super) fn duplicate_changes(&mut self, now_ms: u64) -> Vec<Update> {
        let (nodes, migrations) = (&self.nodes, &self.migrations);
        self.duplicates.changes(&|node, uuid| {
            let Some(n) = nodes.get(node) else {
                return Copy::Counts;
            };
            match n.domains.get(uuid) {
                Some(d) => migrations.judge(node, uuid, d, n.up, now_ms),
                None => Copy::Counts,
            }
        })
    }

    /// Node ids two hosts send under at once (identity.rs).
    pub fn clashes(&self, now_ms: u64) -> Vec<Clash> {
        self.identity.clashes(now_ms, self.node_timeout_ms)
    }

    /// Duplicates currently reported, for the state file.
    pub fn duplicates(&self) -> Vec<Duplicate> {
        self.duplicates.current()
    }

    /// Idle warnings currently raised, for the state file.
    pub fn idle(&self) -> Vec<IdleWarning> {
        self.activity.current()
    }
}
