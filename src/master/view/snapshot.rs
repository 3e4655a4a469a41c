//! Snapshots: reassembling one from its parts, and applying a node's whole
//! list (what it lists is set, reboots it counted are judged, anything else
//! of that node is gone).

use super::reboots::{self, Verdict};
use super::records::Assembly;
use super::table::StateTable;
use crate::master::panel::update::Update;
use crate::protocol::DomainState;

impl StateTable {
    /// Collects snapshot parts; returns the whole list once the last part of
    /// an unbroken sequence arrives. A missing part drops the assembly (the
    /// next periodic snapshot repairs whatever it would have).
    pub(super) fn assemble(
        &mut self,
        node: &str,
        instance: u64,
        id: u64,
        part: u32,
        parts: u32,
        domains: &[DomainState],
    ) -> Option<Vec<DomainState>> {
        let rec = self.nodes.get_mut(node).expect("node exists");
        if part == 1 {
            rec.assembly = Some(Assembly {
                instance,
                id,
                next: 1,
                domains: Vec::new(),
            });
        }
        let a = rec.assembly.as_mut()?;
        if a.instance != instance || a.id != id || a.next != part {
            log::warn!("node {node}: snapshot {id} part {part}/{parts} out of sequence; waiting for the next snapshot");
            rec.assembly = None;
            return None;
        }
        a.domains.extend_from_slice(domains);
        a.next += 1;
        if part == parts {
            rec.assembly.take().map(|a| a.domains)
        } else {
            None
        }
    }

    pub(super) fn snapshot(
        &mut self,
        node: &str,
        instance: u64,
        domains: &[DomainState],
        now_ms: u64,
        out: &mut Vec<Update>,
    ) {
        let mut listed = std::collections::HashSet::with_capacity(domains.len());
        // What may be news: a domain the master does not have as listed, a
        // reboot count, a uuid listed twice. A periodic snapshot of an
        // unchanged node (the usual one) costs a lookup a domain.
        let known = &self.nodes[node].domains;
        let news: Vec<&DomainState> = domains
            .iter()
            .filter(|d| {
                let first = listed.insert(d.domain.uuid.as_str());
                let same = known.get(&d.domain.uuid).is_some_and(|o| {
                    o.state == d.state
                        && o.name == d.domain.name
                        && (d.rebootid.is_none() || o.rebootid == d.rebootid)
                });
                !first || !same || d.reboots.is_some()
            })
            .collect();
        for d in news {
            self.set(node, &d.domain, d.state, d.reason, now_ms, out);
            // A reboot the node counted but the master never got (lost in
            // an overflowing queue, or sent while the master was down).
            if let Some(id) = d.rebootid {
                if self.judge_rebootid(node, &d.domain.uuid, id, false) == Verdict::Deliver {
                    log::info!(
                        "node {node}: domain {} ({}): the node's last reboot is {id}, the master's record lower: delivering the missed reboot",
                        d.domain.name,
                        d.domain.uuid
                    );
                    out.push(reboots::update(
                        node,
                        &d.domain.uuid,
                        &d.domain.name,
                        now_ms,
                        Some(id),
                    ));
                }
            } else if let Some(n) = d.reboots {
                if self.new_reboots(node, &d.domain.uuid, instance, n, false) {
                    log::info!(
                        "node {node}: domain {} ({}): the node counted {n} reboots, the master fewer: delivering the missed reboot",
                        d.domain.name,
                        d.domain.uuid
                    );
                    out.push(reboots::update(
                        node,
                        &d.domain.uuid,
                        &d.domain.name,
                        now_ms,
                        None,
                    ));
                }
            }
        }
        // Every listed domain is in the table now: any other is gone.
        let domains_now = &self.nodes[node].domains;
        let (identity, host, timeout) = (
            &self.identity,
            self.msg_host.as_deref(),
            self.node_timeout_ms,
        );
        let gone: Vec<String> = if domains_now.len() > listed.len() {
            domains_now
                .keys()
                .filter(|u| !listed.contains(u.as_str()))
                // A clone's domains are its own (identity.rs).
                .filter(|u| identity.may_remove(node, u, host, now_ms, timeout))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        for uuid in gone {
            self.remove(node, &uuid, "absent from snapshot", now_ms, out);
        }
        log::debug!("node {node}: snapshot of {} domains applied", domains.len());
    }
}
