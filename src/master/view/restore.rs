//! The table's restore entry points: nodes, domains, idle warnings and
//! hosts read back from the state file (statefile/restore.rs), with no
//! updates, as the panel was told before the restart.

use super::identity::HostSeen;
use super::records::DomainRecord;
use super::table::StateTable;

impl StateTable {
    /// Restores a node from the state file (no updates: the panel was told).
    pub fn restore_node(&mut self, node: &str, last_seen_ms: u64, up: bool) {
        let rec = self.nodes.entry(node.to_string()).or_default();
        rec.last_seen_ms = last_seen_ms;
        rec.up = up;
    }

    /// Restores the instance a node last spoke as (from the replay guard's
    /// `seen` lines), first heard before this run.
    pub fn restore_instance(&mut self, node: &str, instance: u64) {
        if let Some(rec) = self.nodes.get_mut(node) {
            rec.instance = instance;
            rec.instance_ms = 0;
        }
    }

    /// Restores a domain from the state file.
    /// A domain listed twice keeps its last line, as a live table would.
    pub fn restore_domain(&mut self, node: &str, uuid: &str, rec: DomainRecord) {
        let domains = &mut self.nodes.entry(node.to_string()).or_default().domains;
        if let Some(old) = domains.get(uuid) {
            if old.name != rec.name {
                self.duplicates.set(node, uuid, &old.name, None);
            }
        }
        self.duplicates.set(node, uuid, &rec.name, Some(rec.state));
        domains.insert(uuid.to_string(), rec);
    }

    /// Restores an idle warning from the state file.
    pub fn restore_idle(&mut self, node: &str, uuid: &str, name: &str, tx: u64, wr: u64) {
        self.activity.restore(node, uuid, name, tx, wr);
    }

    /// After a restore: settle duplicate verdicts silently (they were
    /// reported before the restart).
    pub fn settle_restored(&mut self) {
        let _ = self.duplicate_changes(crate::clock::now_ms());
    }

    /// Restores the host last seen under a node id.
    pub fn restore_host(&mut self, node: &str, seen: HostSeen) {
        self.identity.restore(node, seen);
    }
}
