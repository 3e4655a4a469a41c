//! Forgetting a node: its domains reported `undefined`, then the node
//! itself; asked by an operator (forget.rs), by time (liveness.rs) or by a
//! host that now speaks under another id (apply.rs).

use super::table::StateTable;
use crate::master::panel::update::Update;

impl StateTable {
    /// Forgets a node id: each of its domains is reported `undefined`
    /// (reason `node forgotten`), its idle warnings cleared, duplicates
    /// recomputed, then the node itself (`status=forgotten`).
    pub fn forget_node(&mut self, node: &str, why: &str, now_ms: u64, out: &mut Vec<Update>) {
        let Some(rec) = self.nodes.get(node) else {
            return;
        };
        log::warn!(
            "node {node} forgotten ({why}): its {} domains are reported undefined",
            rec.domains.len()
        );
        let uuids: Vec<String> = rec.domains.keys().cloned().collect();
        for uuid in uuids {
            self.remove(node, &uuid, "node forgotten", now_ms, out);
        }
        self.nodes.remove(node);
        self.identity.forget_node(node);
        out.push(Update::NodeForgotten {
            node: node.to_string(),
            since_ms: now_ms,
        });
    }

    /// Forgets a node at an operator's request (`--forget-node`); returns
    /// what the panel must learn, nothing for an unknown node.
    pub fn forget_now(&mut self, node: &str, now_ms: u64) -> Vec<Update> {
        let mut out = Vec::new();
        self.forget_node(
            node,
            "an operator asked: vmwatch-master --forget-node",
            now_ms,
            &mut out,
        );
        out.extend(self.duplicate_changes(now_ms));
        out
    }
}
