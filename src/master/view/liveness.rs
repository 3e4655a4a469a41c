//! Liveness: a node heard keeps living; one silent past `node_timeout` goes
//! down, one down past `node_forget_after` (or whose host now speaks under
//! another id) is forgotten, and time re-judges duplicates (migration.rs).

use super::table::StateTable;
use crate::master::panel::update::Update;

impl StateTable {
    /// Notes that `node` was heard at `mono_ms` (monotonic clock); called
    /// with every accepted message and for every restored node.
    pub fn heard(&mut self, node: &str, mono_ms: u64) {
        if let Some(rec) = self.nodes.get_mut(node) {
            rec.heard_mono_ms = mono_ms;
        }
    }

    /// Marks nodes silent for longer than `node_timeout` as down, judged on
    /// the monotonic clock (`mono_ms`): a stepped wall clock neither
    /// silences nor kills a node. `now_ms` is the wall time reported.
    /// Forgets nodes retired (their host speaks under another id) or down
    /// longer than `node_forget_after`; re-judges duplicates that time
    /// changes (migration.rs).
    pub fn tick(&mut self, now_ms: u64, mono_ms: u64) -> Vec<Update> {
        let mut out = Vec::new();
        let mut went_down = Vec::new();
        for (name, rec) in self.nodes.iter_mut() {
            if rec.up && mono_ms.saturating_sub(rec.heard_mono_ms) > self.node_timeout_ms {
                rec.up = false;
                rec.assembly = None;
                for uuid in rec.domains.keys() {
                    self.duplicates.touch(uuid);
                }
                went_down.push(name.clone());
                out.push(Update::Node {
                    node: name.clone(),
                    up: false,
                    since_ms: now_ms,
                });
            }
        }
        for old in went_down {
            if let Some(new) = self.identity.moved_on(&old) {
                let why = format!("its host now speaks as node {new}");
                self.forget_node(&old, &why, now_ms, &mut out);
            }
        }
        // On the wall clock, as last_seen_ms survives master restarts (a
        // week-scale limit; the monotonic clock starts afresh each run).
        if self.forget_after_ms > 0 {
            let stale: Vec<String> = self
                .nodes
                .iter()
                .filter(|(_, r)| {
                    !r.up && now_ms.saturating_sub(r.last_seen_ms) > self.forget_after_ms
                })
                .map(|(n, _)| n.clone())
                .collect();
            for old in stale {
                let why = format!(
                    "down for more than node_forget_after={} s",
                    self.forget_after_ms / 1000
                );
                self.forget_node(&old, &why, now_ms, &mut out);
            }
        }
        self.duplicates.recheck();
        out.extend(self.duplicate_changes(now_ms));
        out
    }
}
