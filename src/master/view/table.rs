//! The master's view: the true state of every domain on every node.
//!
//! Lifecycle events move a domain from state to state; snapshots replace a
//! node's whole list (a domain missing from a complete snapshot is gone from
//! that node); heartbeats and every other accepted message keep the node
//! alive. Each call returns the [`Update`]s that changed, in order, and
//! nothing for a message that changed nothing, so the panel hears only news.
//!
//! Why one file of about 560 lines (tests aside): events, snapshots,
//! liveness, reboot counts and forgetting a node all change the same table
//! and must agree on what is news; the indexes and rules that follow it live
//! in duplicates.rs, activity.rs, migration.rs (how a copy weighs in a
//! duplicate) and identity.rs (which host speaks under which node id).

use std::collections::BTreeMap;

use super::activity::{Activity, IdleWarning};
use super::duplicates::{Copy, Duplicate, Duplicates};
use super::identity::Identity;
use super::migration::{self, Migrations};
use super::reboots::{self, RebootStats, Verdict};
use crate::master::panel::update::{PanelState, Update};
use crate::protocol::{Body, DomainId, DomainState, Event, Message};
use crate::vocab::{EventKind, State};

/// One domain on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRecord {
    pub name: String,
    pub state: State,
    pub reason: String,
    /// When it entered this state (ms since the epoch).
    pub since_ms: u64,
    /// The reboots of this domain the master has turned into updates.
    pub reboots: RebootCount,
    /// The id of the domain's last reboot the master knows of, from a node
    /// that names reboots (`None`: no record; see reboots.rs).
    pub rebootid: Option<u64>,
}

/// A node instance's count of a domain's reboots (docs/protocol.md,
/// "Reboots"): the node counts every reboot it sees, even one it could not
/// queue, and says the count in reboot events and snapshots; a count higher
/// than the one recorded here is a reboot the panel has not been told of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RebootCount {
    /// The node instance that counted (0: none yet).
    pub instance: u64,
    pub count: u64,
}

/// A snapshot being reassembled from its parts.
#[derive(Debug, Clone)]
struct Assembly {
    instance: u64,
    id: u64,
    next: u32,
    domains: Vec<DomainState>,
}

/// One node.
#[derive(Debug, Clone, Default)]
pub struct NodeRecord {
    pub domains: BTreeMap<String, DomainRecord>,
    /// When its last accepted message arrived (wall clock, for people).
    pub last_seen_ms: u64,
    /// The same on the monotonic clock: what `node_timeout` is judged on.
    pub heard_mono_ms: u64,
    pub up: bool,
    /// The node instance last heard (0: none yet this run) and when it was
    /// first heard (wall clock): a `--forget-node` request older than
    /// that is about a node that has restarted since (forget.rs).
    pub instance: u64,
    pub instance_ms: u64,
    assembly: Option<Assembly>,
}

/// Every node and domain the master knows.
#[derive(Debug, Default)]
pub struct StateTable {
    pub nodes: BTreeMap<String, NodeRecord>,
    duplicates: Duplicates,
    activity: Activity,
    check_activity: bool,
    node_timeout_ms: u64,
    /// How reboot ids were judged (state file counters `reboots.*`).
    pub reboot_stats: RebootStats,
    /// The second this master started: a reboot id above it, without a
    /// record, is a reboot this master missed (reboots.rs); `None`: every
    /// id without a record is a baseline.
    pub started_s: Option<u64>,
    /// Migrations in flight (migration.rs).
    migrations: Migrations,
    /// Which host speaks under which node id (identity.rs).
    pub identity: Identity,
    /// A node down this long is forgotten (0: never).
    pub forget_after_ms: u64,
    /// The host and arrival time of the message being applied.
    msg_host: Option<String>,
    msg_now_ms: u64,
}

impl StateTable {
    pub fn new(check_activity: bool, node_timeout_s: u64) -> StateTable {
        StateTable {
            check_activity,
            node_timeout_ms: node_timeout_s * 1000,
            ..StateTable::default()
        }
    }

    /// Applies an authenticated, fresh message; returns what changed.
    pub fn apply(&mut self, msg: &Message, now_ms: u64) -> Vec<Update> {
        let node = msg.header.node.as_str();
        let mut out = Vec::new();
        self.msg_host.clone_from(&msg.header.host);
        self.msg_now_ms = now_ms;
        if let Some(host) = &msg.header.host {
            for old in self
                .identity
                .heard(node, host, now_ms, self.node_timeout_ms)
            {
                if self.nodes.get(&old).is_some_and(|n| !n.up) {
                    let why = format!("its host {host} now speaks as node {node}");
                    self.forget_node(&old, &why, now_ms, &mut out);
                }
            }
        }
        if !self.nodes.contains_key(node) {
            self.nodes.insert(node.to_string(), NodeRecord::default());
        }
        let rec = self.nodes.get_mut(node).expect("just made sure");
        rec.last_seen_ms = now_ms;
        if rec.instance != msg.header.instance {
            rec.instance = msg.header.instance;
            rec.instance_ms = now_ms;
        }
        if !rec.up {
            rec.up = true;
            for uuid in rec.domains.keys() {
                self.duplicates.touch(uuid);
            }
            out.push(Update::Node {
                node: node.to_string(),
                up: true,
                since_ms: now_ms,
            });
        }
        match &msg.body {
            Body::Events(events) => {
                for ev in events {
                    self.event(node, msg.header.instance, ev, &mut out);
                }
            }
            Body::Snapshot {
                id,
                part,
                parts,
                domains,
            } => {
                if (*part, *parts) == (1, 1) {
                    // Whole in one message (up to some 600 domains): used
                    // as it is, as assembling it would leave it.
                    rec.assembly = None;
                    self.snapshot(node, msg.header.instance, domains, now_ms, &mut out);
                } else if let Some(all) =
                    self.assemble(node, msg.header.instance, *id, *part, *parts, domains)
                {
                    self.snapshot(node, msg.header.instance, &all, now_ms, &mut out);
                }
            }
            Body::Stats { samples, .. } => {
                if self.check_activity {
                    for s in samples {
                        let running = self.nodes[node]
                            .domains
                            .get(&s.domain.uuid)
                            .is_some_and(|d| d.state == State::Running);
                        if running {
                            self.activity.sample(node, s, &mut out);
                        }
                    }
                }
            }
            Body::Heartbeat => {}
        }
        self.msg_host = None;
        out.extend(self.duplicate_changes(now_ms));
        out
    }

    /// Duplicate verdicts that changed, each active copy weighed by
    /// migration.rs.
    fn duplicate_changes(&mut self, now_ms: u64) -> Vec<Update> {
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

    /// `node_timeout` in seconds (for people).
    pub fn node_timeout_s(&self) -> u64 {
        self.node_timeout_ms / 1000
    }

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

    /// Records that `instance` of `node` counted `count` reboots of `uuid`;
    /// true if that is more than the master had turned into updates (a
    /// count from another instance starts from zero: the node restarted).
    /// `event`: the count of a live reboot event, delivered even without a
    /// record; else a snapshot's, a baseline without one.
    fn new_reboots(
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
    fn judge_rebootid(&mut self, node: &str, uuid: &str, id: u64, event: bool) -> Verdict {
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

    fn event(&mut self, node: &str, instance: u64, ev: &Event, out: &mut Vec<Update>) {
        self.lifecycle(node, instance, ev, out);
        // Any other event names the domain's last reboot: a higher id than
        // the record is a reboot lost on the way.
        if let (Some(id), false) = (ev.rebootid, ev.event == EventKind::Reboot) {
            if self.judge_rebootid(node, &ev.domain.uuid, id, false) == Verdict::Deliver {
                log::info!(
                    "node {node}: domain {} ({}): reboot {id} never reached the master: delivering it",
                    ev.domain.name,
                    ev.domain.uuid
                );
                out.push(reboots::update(
                    node,
                    &ev.domain.uuid,
                    &ev.domain.name,
                    ev.time_ms,
                    Some(id),
                ));
            }
        }
    }

    fn lifecycle(&mut self, node: &str, instance: u64, ev: &Event, out: &mut Vec<Update>) {
        match ev.event {
            EventKind::Reboot => {
                // A node that names reboots says which this is; one the
                // master already has is not news (reboots.rs).
                if let Some(id) = ev.rebootid {
                    if self.judge_rebootid(node, &ev.domain.uuid, id, true) != Verdict::Deliver {
                        log::debug!(
                            "node {node}: domain {} ({}): reboot {id} is a repeat; dropped",
                            ev.domain.name,
                            ev.domain.uuid
                        );
                        return;
                    }
                } else if let Some(n) = ev.reboots {
                    if !self.new_reboots(node, &ev.domain.uuid, instance, n, true) {
                        return;
                    }
                }
                out.push(reboots::update(
                    node,
                    &ev.domain.uuid,
                    &ev.domain.name,
                    ev.time_ms,
                    ev.rebootid,
                ))
            }
            EventKind::Undefined => {
                let last = self.nodes[node].domains.get(&ev.domain.uuid);
                let reason = migration::gone_reason(last, ev.detail.to_string());
                self.remove(node, &ev.domain.uuid, &reason, ev.time_ms, out)
            }
            _ if migration::event_state(ev).is_some() => {
                let (state, reason) = migration::event_state(ev).expect("just checked");
                self.set(node, &ev.domain, state, reason, ev.time_ms, out)
            }
            EventKind::Defined => {
                // A new definition is a shut-off domain; a redefinition keeps
                // its state (only the name may change).
                let (state, reason) = match self.nodes[node].domains.get(&ev.domain.uuid) {
                    Some(d) => (d.state, d.reason.clone()),
                    None => (State::Shutoff, ev.detail.to_string()),
                };
                self.set(node, &ev.domain, state, reason, ev.time_ms, out);
            }
            // QEMU starts a domain paused and then lets it run, so libvirt
            // announces every start as Resumed/Unpaused followed by
            // Started/Booted. A resume of a domain that was not paused is
            // that prelude: skip it, and the start reports the real reason.
            EventKind::Resumed
                if matches!(
                    self.nodes[node]
                        .domains
                        .get(&ev.domain.uuid)
                        .map(|d| d.state),
                    Some(State::Shutoff | State::Shutdown | State::Crashed)
                ) => {}
            other => match other.state_after() {
                Some(state) => self.set(node, &ev.domain, state, ev.detail, ev.time_ms, out),
                None => log::warn!(
                    "node {node}: domain {}: unknown event `{other}` ignored",
                    ev.domain.name
                ),
            },
        }
    }

    /// Sets a domain's state; an update only if state or name changed (an
    /// unchanged domain costs a lookup: nothing is copied or formatted).
    fn set(
        &mut self,
        node: &str,
        id: &DomainId,
        state: State,
        reason: impl std::fmt::Display,
        since_ms: u64,
        out: &mut Vec<Update>,
    ) {
        let domains = &mut self.nodes.get_mut(node).expect("node exists").domains;
        // Whether the duplicate index must hear of it: a new domain, a new
        // name, or a change between active and inactive.
        let mut indexed = true;
        if let Some(host) = &self.msg_host {
            self.identity.reported(node, &id.uuid, host);
        }
        let (reason, old) = match domains.get_mut(&id.uuid) {
            Some(o) if o.state == state && o.name == id.name => return,
            Some(o) => {
                if o.name != id.name {
                    self.duplicates.set(node, &id.uuid, &o.name, None);
                } else {
                    indexed = o.state.is_active() != state.is_active();
                }
                let old = o.state;
                let reason = reason.to_string();
                o.name.clone_from(&id.name);
                o.state = state;
                o.reason.clone_from(&reason);
                o.since_ms = since_ms;
                (reason, Some(old))
            }
            None => {
                let reason = reason.to_string();
                domains.insert(
                    id.uuid.clone(),
                    DomainRecord {
                        name: id.name.clone(),
                        state,
                        reason: reason.clone(),
                        since_ms,
                        reboots: RebootCount::default(),
                        rebootid: None,
                    },
                );
                (reason, None)
            }
        };
        if indexed {
            self.duplicates.set(node, &id.uuid, &id.name, Some(state));
        } else {
            // Active before and after, but it may weigh otherwise now
            // (paused for a migration, then arrived).
            self.duplicates.touch(&id.uuid);
        }
        self.migrations.note(
            node,
            &id.uuid,
            state,
            &reason,
            self.msg_now_ms.max(since_ms),
        );
        if state != State::Running {
            self.activity.not_running(node, &id.uuid, out);
        }
        out.push(Update::Domain {
            node: node.to_string(),
            uuid: id.uuid.clone(),
            name: id.name.clone(),
            state: PanelState::Is(state),
            reason,
            old,
            since_ms,
        });
    }

    fn remove(
        &mut self,
        node: &str,
        uuid: &str,
        reason: &str,
        since_ms: u64,
        out: &mut Vec<Update>,
    ) {
        let Some(old) = self
            .nodes
            .get_mut(node)
            .and_then(|n| n.domains.remove(uuid))
        else {
            return;
        };
        self.duplicates.set(node, uuid, &old.name, None);
        self.migrations.forget(node, uuid);
        self.identity.domain_gone(node, uuid);
        self.activity.not_running(node, uuid, out);
        out.push(Update::Domain {
            node: node.to_string(),
            uuid: uuid.to_string(),
            name: old.name,
            state: PanelState::Undefined,
            reason: reason.to_string(),
            old: Some(old.state),
            since_ms,
        });
    }

    /// Collects snapshot parts; returns the whole list once the last part of
    /// an unbroken sequence arrives. A missing part drops the assembly (the
    /// next periodic snapshot repairs whatever it would have).
    fn assemble(
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

    fn snapshot(
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

    /// Node ids two hosts send under at once (identity.rs).
    pub fn clashes(&self, now_ms: u64) -> Vec<super::identity::Clash> {
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
        let _ = self.duplicate_changes(crate::service::now_ms());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::view::duplicates::DuplicateBy;
    use crate::protocol::{Header, StatSample};
    use crate::vocab::{Detail, Reason};

    const U1: &str = "00000000-0000-0000-0000-000000000001";
    const U2: &str = "00000000-0000-0000-0000-000000000002";

    fn msg(node: &str, body: Body) -> Message {
        Message {
            header: Header {
                node: node.into(),
                instance: 1,
                seq: 1,
                ts_ms: 0,
                host: None,
            },
            body,
        }
    }

    /// A message from `node` with one event.
    fn one_event(node: &str, e: Event) -> Message {
        msg(node, Body::Events(vec![e]))
    }

    fn ev(uuid: &str, name: &str, event: &str, detail: &str) -> Event {
        Event {
            domain: DomainId {
                uuid: uuid.into(),
                name: name.into(),
            },
            event: EventKind::parse(event).unwrap(),
            detail: Detail::parse(EventKind::parse(event).unwrap(), detail).unwrap(),
            time_ms: 5,
            reboots: None,
            rebootid: None,
        }
    }

    /// A snapshot in one part.
    fn snap(id: u64, domains: Vec<DomainState>) -> Body {
        Body::Snapshot {
            id,
            part: 1,
            parts: 1,
            domains,
        }
    }

    fn ds(uuid: &str, name: &str, state: &str) -> DomainState {
        DomainState {
            domain: DomainId {
                uuid: uuid.into(),
                name: name.into(),
            },
            state: State::parse(state).unwrap(),
            reason: Reason::parse(State::parse(state).unwrap(), "unknown").unwrap(),
            reboots: None,
            rebootid: None,
        }
    }

    /// (state, old) of every domain update, in order.
    fn states(updates: &[Update]) -> Vec<(String, Option<String>)> {
        updates
            .iter()
            .filter_map(|u| match u {
                Update::Domain { state, old, .. } => {
                    Some((state.to_string(), old.map(|o| o.to_string())))
                }
                _ => None,
            })
            .collect()
    }

    fn s(v: &str) -> String {
        v.to_string()
    }

    #[test]
    fn a_full_lifecycle_reaches_the_panel_in_order() {
        let mut t = StateTable::new(false, 90);
        let lifecycle = [
            ("defined", "added"),
            // libvirt's start: Resumed/Unpaused, then Started/Booted.
            ("resumed", "unpaused"),
            ("started", "booted"),
            ("suspended", "paused"),
            ("resumed", "unpaused"),
            ("reboot", "-"),
            ("shutdown", "finished"),
            ("stopped", "shutdown"),
            ("resumed", "unpaused"),
            ("started", "booted"),
            ("stopped", "destroyed"),
            ("undefined", "removed"),
        ]
        .map(|(event, detail)| ev(U1, "t1", event, detail));
        let out = t.apply(&msg("3", Body::Events(lifecycle.into())), 100);
        assert_eq!(
            out[0],
            Update::Node {
                node: s("3"),
                up: true,
                since_ms: 100
            }
        );
        assert_eq!(
            states(&out),
            vec![
                (s("shutoff"), None),
                (s("running"), Some(s("shutoff"))),
                (s("paused"), Some(s("running"))),
                (s("running"), Some(s("paused"))),
                (s("shutdown"), Some(s("running"))),
                (s("shutoff"), Some(s("shutdown"))),
                (s("running"), Some(s("shutoff"))),
                (s("shutoff"), Some(s("running"))),
                (s("undefined"), Some(s("shutoff"))),
            ]
        );
        assert!(out.iter().any(|u| matches!(u, Update::Reboot { .. })));
        let start_reasons: Vec<&str> = out
            .iter()
            .filter_map(|u| match u {
                Update::Domain {
                    state, old, reason, ..
                } if *state == PanelState::Is(State::Running) && *old == Some(State::Shutoff) => {
                    Some(reason.as_str())
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            start_reasons,
            ["booted", "booted"],
            "a start is reported as booted"
        );
        assert!(t.nodes["3"].domains.is_empty());
    }

    #[test]
    fn repeated_news_is_not_news() {
        let mut t = StateTable::new(false, 90);
        t.apply(&one_event("1", ev(U1, "a", "started", "booted")), 1);
        let again = t.apply(&one_event("1", ev(U1, "a", "resumed", "unpaused")), 2);
        assert!(again.is_empty(), "{again:?}");
        let redefined = t.apply(&one_event("1", ev(U1, "a", "defined", "updated")), 3);
        assert!(
            redefined.is_empty(),
            "redefining a running domain keeps it running"
        );
    }

    #[test]
    fn snapshots_add_change_and_remove_and_only_report_differences() {
        let mut t = StateTable::new(false, 90);
        let out = t.apply(
            &msg(
                "1",
                snap(1, vec![ds(U1, "a", "running"), ds(U2, "b", "shutoff")]),
            ),
            1,
        );
        assert_eq!(states(&out).len(), 2);
        let same = t.apply(
            &msg(
                "1",
                snap(2, vec![ds(U1, "a", "running"), ds(U2, "b", "shutoff")]),
            ),
            2,
        );
        assert!(same.is_empty());
        let out = t.apply(&msg("1", snap(3, vec![ds(U1, "a", "paused")])), 3);
        assert_eq!(
            states(&out),
            vec![
                (s("paused"), Some(s("running"))),
                (s("undefined"), Some(s("shutoff")))
            ]
        );
        let out = t.apply(&msg("1", snap(4, vec![])), 4);
        assert_eq!(states(&out), vec![(s("undefined"), Some(s("paused")))]);
    }

    #[test]
    fn a_domain_listed_twice_in_one_snapshot_ends_as_listed_last() {
        let mut t = StateTable::new(false, 90);
        t.apply(&msg("1", snap(1, vec![ds(U1, "a", "running")])), 1);
        // Unchanged first, changed second; then the other way round.
        let out = t.apply(
            &msg(
                "1",
                snap(2, vec![ds(U1, "a", "running"), ds(U1, "a", "paused")]),
            ),
            2,
        );
        assert_eq!(states(&out), vec![(s("paused"), Some(s("running")))]);
        let out = t.apply(
            &msg(
                "1",
                snap(3, vec![ds(U1, "a", "running"), ds(U1, "a", "paused")]),
            ),
            3,
        );
        assert_eq!(
            states(&out),
            vec![
                (s("running"), Some(s("paused"))),
                (s("paused"), Some(s("running")))
            ]
        );
        assert_eq!(t.nodes["1"].domains[U1].state, State::Paused);
    }

    #[test]
    fn multi_part_snapshots_apply_only_when_complete_and_in_sequence() {
        let mut t = StateTable::new(false, 90);
        t.apply(&one_event("1", ev(U2, "b", "started", "booted")), 1);
        let part = |id, part, domains| Body::Snapshot {
            id,
            part,
            parts: 2,
            domains,
        };
        let out = t.apply(&msg("1", part(1, 1, vec![ds(U1, "a", "running")])), 2);
        assert!(out.is_empty(), "nothing applied before the last part");
        let out = t.apply(&msg("1", part(1, 2, vec![ds(U2, "b", "running")])), 3);
        assert_eq!(states(&out), vec![(s("running"), None)]);
        // Part 2 of another snapshot without its part 1: ignored, nothing removed.
        let out = t.apply(&msg("1", part(2, 2, vec![])), 4);
        assert!(out.is_empty());
        assert_eq!(t.nodes["1"].domains.len(), 2);
    }

    #[test]
    fn silent_nodes_go_down_and_come_back() {
        let mut t = StateTable::new(false, 90);
        t.apply(&msg("1", Body::Heartbeat), 1_000);
        t.heard("1", 1_000);
        // The wall clock steps forward 2 h: nobody is silent for that.
        assert!(t.tick(7_201_000, 91_000).is_empty());
        assert_eq!(
            t.tick(91_001, 91_001),
            vec![Update::Node {
                node: s("1"),
                up: false,
                since_ms: 91_001
            }]
        );
        assert!(t.tick(200_000, 200_000).is_empty(), "reported once");
        let back = t.apply(&msg("1", Body::Heartbeat), 200_000);
        assert_eq!(
            back,
            vec![Update::Node {
                node: s("1"),
                up: true,
                since_ms: 200_000
            }]
        );
    }

    #[test]
    fn duplicates_follow_the_table() {
        let mut t = StateTable::new(false, 90);
        t.apply(&one_event("1", ev(U1, "a", "started", "booted")), 1);
        let out = t.apply(&one_event("2", ev(U1, "a", "started", "booted")), 2);
        assert!(out.iter().any(|u| matches!(
            u,
            Update::Duplicate {
                by: DuplicateBy::Uuid,
                active: true,
                ..
            }
        )));
        let out = t.apply(&one_event("2", ev(U1, "a", "stopped", "destroyed")), 3);
        assert!(out.iter().any(|u| matches!(
            u,
            Update::Duplicate {
                by: DuplicateBy::Uuid,
                active: false,
                ..
            }
        )));
    }

    #[test]
    fn idle_warnings_only_for_running_domains_when_enabled() {
        let stats = |tx, wr| Body::Stats {
            interval_ms: 600_000,
            samples: vec![StatSample {
                domain: DomainId {
                    uuid: s(U1),
                    name: s("a"),
                },
                whole: true,
                tx_pkts: tx,
                wr_reqs: wr,
            }],
        };
        let mut off = StateTable::new(false, 90);
        off.apply(&one_event("1", ev(U1, "a", "started", "booted")), 1);
        assert!(off.apply(&msg("1", stats(0, 0)), 2).is_empty());

        let mut t = StateTable::new(true, 90);
        t.apply(&one_event("1", ev(U1, "a", "defined", "added")), 1);
        assert!(
            t.apply(&msg("1", stats(0, 0)), 2).is_empty(),
            "not running: no warning"
        );
        t.apply(&one_event("1", ev(U1, "a", "started", "booted")), 3);
        let out = t.apply(&msg("1", stats(0, 0)), 4);
        assert!(matches!(&out[..], [Update::Idle { idle: true, .. }]));
        let out = t.apply(&msg("1", stats(3, 4)), 5);
        assert!(matches!(&out[..], [Update::Idle { idle: false, .. }]));
    }
}
