//! Which reboots a node reports are news to the table: reboot ids judged
//! by reboots.rs against each domain's record, and the instance-scoped
//! counts (`reboots=`) of nodes that send no ids.

use super::reboots::{self, Verdict};
use super::records::RebootCount;
use super::table::StateTable;

impl StateTable {
    /// Records that `instance` of `node` counted `count` reboots of `uuid`;
    /// true if that is more than the master had turned into updates (a
    /// count from another instance starts from zero: the node restarted).
    /// `event`: the count of a live reboot event, delivered even without a
    /// record; else a snapshot's, a baseline without one.
    pub(super) fn new_reboots(
        &mut self,
        node: &str,
        uuid: &str,
        instance: u64,
        count: u64,
        event: bool,
    ) -> bool {
        let Some(d) = self
            .nodes
            .get_mut(node)
            .and_then(|n| n.domains.get_mut(uuid))
        else {
            return count > 0;
        };
        // No record (instance 0: a master without its state file, a domain
        // new to it): in a snapshot, a baseline, not missed reboots
        // (reboots.rs); a live reboot event is delivered.
        let known = if d.reboots.instance == instance || d.reboots.instance == 0 {
            d.reboots.count
        } else {
            0
        };
        if d.reboots.instance == 0 && !event {
            self.reboot_stats.baselines += 1;
            d.reboots = RebootCount { instance, count };
            return false;
        }
        d.reboots = RebootCount { instance, count };
        count > known
    }

    /// Judges a reboot id a node said for a domain; `event` for the id of
    /// a `reboot` event, else the id of the domain's last reboot.
    pub(super) fn judge_rebootid(
        &mut self,
        node: &str,
        uuid: &str,
        id: u64,
        event: bool,
    ) -> Verdict {
        let Some(d) = self
            .nodes
            .get_mut(node)
            .and_then(|n| n.domains.get_mut(uuid))
        else {
            // Not in the table (a reboot of a domain the master has never
            // listed): a live reboot is still delivered.
            return if event {
                Verdict::Deliver
            } else {
                Verdict::Nothing
            };
        };
        let stats = &mut self.reboot_stats;
        if event {
            reboots::reboot_event(&mut d.rebootid, id, stats)
        } else {
            reboots::last_reboot(&mut d.rebootid, id, stats, self.started_s)
        }
    }
}
