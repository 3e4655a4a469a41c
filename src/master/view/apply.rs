//! A message applied to the table: which node it keeps alive, which
//! domains its events move, which snapshot it lists.

use super::migration;
use super::reboots::{self, Verdict};
use super::records::NodeRecord;
use super::table::StateTable;
use crate::master::panel::update::Update;
use crate::protocol::{Body, Event, Message};
use crate::vocab::{EventKind, State};

impl StateTable {
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

    pub(super) fn lifecycle(
        &mut self,
        node: &str,
        instance: u64,
        ev: &Event,
        out: &mut Vec<Update>,
    ) {
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
}
