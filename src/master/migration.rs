//! Live migration is not duplication.
//!
//! During `virsh migrate --live` libvirt shows the guest on both hosts:
//! the destination announces `started`/`migrated` at the Prepare phase,
//! while its copy is still paused waiting for the memory (libvirt's
//! domstate there: paused, reason `migration`), then `resumed`/`migrated`;
//! the source pauses (`suspended`/`migrated`) and stops
//! (`stopped`/`migrated`), and with `--undefinesource` its definition goes
//! without an `undefined` event (the node sends one, node/gone.rs). The two
//! nodes' messages reach the master in either order.
//!
//! So, for the `by=uuid` duplicate verdict (duplicates.rs, [`Copy`]):
//! - a copy paused for a migration (reason `migration`, `migrated`,
//!   `postcopy`) is not counted, unless it stays so longer than
//!   [`MIGRATION_LIMIT_MS`] (a migration stuck for an hour is reported);
//! - a copy that has just arrived by migration (`running`/`migrated`, for
//!   [`ARRIVAL_GRACE_MS`] after the master learned it) holds a duplicate
//!   verdict until the source's pause arrives;
//! - a copy on a node that is down is not counted (HA restarts a dead
//!   host's VMs elsewhere): the panel was told the node is down.
//!
//! Ordinary starts (`booted`) are judged at once.

use std::collections::HashMap;

use super::duplicates::Copy;
use super::state::DomainRecord;
use crate::protocol::Event;
use crate::vocab::{EventKind, State};

/// How long a copy may stay paused for a migration before it counts toward
/// a duplicate again (docs/panel-api.md).
pub const MIGRATION_LIMIT_MS: u64 = 3_600_000;
/// How long a copy that arrived by migration holds a duplicate verdict,
/// waiting for the source's events.
pub const ARRIVAL_GRACE_MS: u64 = 10_000;

/// The state an event leaves a domain in, where migration makes it differ
/// from [`EventKind::state_after`]: `started`/`migrated` is the Prepare
/// phase, the guest is paused waiting for its memory.
pub fn event_state(ev: &Event) -> Option<(State, &'static str)> {
    (ev.event == EventKind::Started && ev.detail.to_string() == "migrated")
        .then_some((State::Paused, "migration"))
}

/// The reason the panel is given for a domain that left a node: `migrated`
/// when it was last shut off by a migration (the source of a move),
/// otherwise the node's own.
pub fn gone_reason(last: Option<&DomainRecord>, detail: String) -> String {
    match last {
        Some(d) if d.state == State::Shutoff && d.reason == "migrated" => "migrated".into(),
        _ => detail,
    }
}

/// Where a copy is in a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Paused for a migration, either end.
    Paused,
    /// Running, arrived by migration.
    Arrived,
}

fn phase(state: State, reason: &str) -> Option<Phase> {
    match (state, reason) {
        (State::Paused, "migration" | "migrated" | "postcopy") => Some(Phase::Paused),
        (State::Running, "migrated") => Some(Phase::Arrived),
        _ => None,
    }
}

/// When (the master's clock) each copy entered its migration phase.
#[derive(Debug, Default)]
pub struct Migrations {
    since: HashMap<(String, String), (Phase, u64)>,
}

impl Migrations {
    /// Records a copy's new state (called for every state change).
    pub fn note(&mut self, node: &str, uuid: &str, state: State, reason: &str, now_ms: u64) {
        match phase(state, reason) {
            Some(p) => {
                let e = self
                    .since
                    .entry((node.to_string(), uuid.to_string()))
                    .or_insert((p, now_ms));
                if e.0 != p {
                    *e = (p, now_ms);
                }
            }
            None if !self.since.is_empty() => self.forget(node, uuid),
            None => {}
        }
    }

    pub fn forget(&mut self, node: &str, uuid: &str) {
        self.since.remove(&(node.to_string(), uuid.to_string()));
    }

    /// How an active copy weighs in a duplicate verdict.
    pub fn judge(
        &self,
        node: &str,
        uuid: &str,
        d: &DomainRecord,
        node_up: bool,
        now_ms: u64,
    ) -> Copy {
        if !node_up {
            return Copy::Ignored;
        }
        let Some(p) = phase(d.state, &d.reason) else {
            return Copy::Counts;
        };
        // After a master restart the domain's own time stands in.
        let since = self
            .since
            .get(&(node.to_string(), uuid.to_string()))
            .filter(|(q, _)| *q == p)
            .map_or(d.since_ms, |(_, t)| *t);
        let age = now_ms.saturating_sub(since);
        match p {
            Phase::Paused if age < MIGRATION_LIMIT_MS => Copy::Ignored,
            Phase::Arrived if age < ARRIVAL_GRACE_MS => Copy::Moving,
            _ => Copy::Counts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::state::RebootCount;

    fn rec(state: State, reason: &str, since_ms: u64) -> DomainRecord {
        DomainRecord {
            name: "vm".into(),
            state,
            reason: reason.into(),
            since_ms,
            reboots: RebootCount::default(),
        }
    }

    #[test]
    fn copies_in_a_migration_weigh_by_phase_and_age() {
        let mut m = Migrations::default();
        let paused = rec(State::Paused, "migration", 0);
        m.note("2", "u", State::Paused, "migration", 1_000);
        assert_eq!(m.judge("2", "u", &paused, true, 2_000), Copy::Ignored);
        assert_eq!(
            m.judge("2", "u", &paused, true, 1_000 + MIGRATION_LIMIT_MS),
            Copy::Counts,
            "stuck for an hour: counted"
        );
        let arrived = rec(State::Running, "migrated", 0);
        m.note("2", "u", State::Running, "migrated", 5_000);
        assert_eq!(m.judge("2", "u", &arrived, true, 6_000), Copy::Moving);
        assert_eq!(
            m.judge("2", "u", &arrived, true, 5_000 + ARRIVAL_GRACE_MS),
            Copy::Counts
        );
        assert_eq!(
            m.judge("1", "u", &rec(State::Running, "booted", 0), true, 6_000),
            Copy::Counts
        );
        assert_eq!(
            m.judge("1", "u", &rec(State::Running, "booted", 0), false, 6_000),
            Copy::Ignored,
            "a node that is down does not count"
        );
        m.note("2", "u", State::Running, "unpaused", 7_000);
        assert!(m.since.is_empty());
    }

    #[test]
    fn the_source_of_a_move_leaves_as_migrated() {
        assert_eq!(
            gone_reason(Some(&rec(State::Shutoff, "migrated", 0)), "removed".into()),
            "migrated"
        );
        assert_eq!(
            gone_reason(Some(&rec(State::Shutoff, "destroyed", 0)), "removed".into()),
            "removed"
        );
        assert_eq!(gone_reason(None, "removed".into()), "removed");
    }
}

/// The state table through whole migrations and node changes (the
/// sequences libvirt really emits; docs/panel-api.md, "Migrations").
#[cfg(test)]
mod table_tests {
    use super::*;
    use crate::master::duplicates::DuplicateBy;
    use crate::master::state::StateTable;
    use crate::master::update::{PanelState, Update};
    use crate::protocol::{Body, DomainId, DomainState, Header, Message};
    use crate::vocab::{Detail, Reason};

    const U: &str = "00000000-0000-0000-0000-0000000000aa";
    const HOST_A: &str = "00000000-0000-0000-0000-00000000000a";
    const HOST_B: &str = "00000000-0000-0000-0000-00000000000b";

    fn msg(node: &str, host: Option<&str>, body: Body) -> Message {
        Message {
            header: Header {
                node: node.into(),
                instance: 1,
                seq: 1,
                ts_ms: 0,
                host: host.map(str::to_string),
            },
            body,
        }
    }

    fn ev(node: &str, uuid: &str, event: &str, detail: &str) -> Message {
        let kind = EventKind::parse(event).unwrap();
        msg(
            node,
            None,
            Body::Events(vec![Event {
                domain: DomainId {
                    uuid: uuid.into(),
                    name: "vm".into(),
                },
                event: kind,
                detail: Detail::parse(kind, detail).unwrap(),
                time_ms: 5,
                reboots: None,
            }]),
        )
    }

    fn snap(node: &str, host: &str, uuids: &[&str]) -> Message {
        let domains = uuids
            .iter()
            .map(|u| DomainState {
                domain: DomainId {
                    uuid: (*u).into(),
                    name: format!("vm-{u}"),
                },
                state: State::Running,
                reason: Reason::parse(State::Running, "booted").unwrap(),
                reboots: None,
            })
            .collect();
        msg(
            node,
            Some(host),
            Body::Snapshot {
                id: 1,
                part: 1,
                parts: 1,
                domains,
            },
        )
    }

    fn dups(out: &[Update]) -> Vec<(bool, Vec<String>)> {
        out.iter()
            .filter_map(|u| match u {
                Update::Duplicate {
                    by: DuplicateBy::Uuid,
                    nodes,
                    active,
                    ..
                } => Some((*active, nodes.clone())),
                _ => None,
            })
            .collect()
    }

    /// (node, state, reason) of each domain update.
    fn domain_lines(out: &[Update]) -> Vec<(String, String, String)> {
        out.iter()
            .filter_map(|u| match u {
                Update::Domain {
                    node,
                    state,
                    reason,
                    ..
                } => Some((node.clone(), state.to_string(), reason.clone())),
                _ => None,
            })
            .collect()
    }

    fn t(node: &str, state: &str, reason: &str) -> (String, String, String) {
        (node.into(), state.into(), reason.into())
    }

    /// Feeds messages at 100 ms steps from `at`, ticking after each;
    /// returns every update.
    fn run(table: &mut StateTable, at: u64, msgs: &[Message]) -> Vec<Update> {
        let mut out = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            let now = at + 100 * i as u64;
            out.extend(table.apply(m, now));
            out.extend(table.tick(now));
        }
        out
    }

    #[test]
    fn a_live_migration_is_no_duplicate_in_either_order_and_leaves_no_ghost() {
        let source_events = [
            ev("1", U, "suspended", "migrated"),
            ev("1", U, "stopped", "migrated"),
            ev("1", U, "undefined", "removed"),
        ];
        let dest_events = [
            ev("2", U, "started", "migrated"),
            ev("2", U, "resumed", "migrated"),
        ];
        // In libvirt's order, then with the destination's news first.
        let orders: [Vec<Message>; 2] = [
            vec![
                dest_events[0].clone(),
                source_events[0].clone(),
                dest_events[1].clone(),
                source_events[1].clone(),
                source_events[2].clone(),
            ],
            [dest_events.to_vec(), source_events.to_vec()].concat(),
        ];
        for order in orders {
            let mut table = StateTable::new(false, 90);
            table.apply(&ev("1", U, "started", "booted"), 1_000);
            table.apply(&msg("2", None, Body::Heartbeat), 1_000);
            let mut out = run(&mut table, 2_000, &order);
            for s in 0..30 {
                out.extend(table.tick(3_000 + s * 1_000));
            }
            assert_eq!(dups(&out), vec![], "no duplicate: {out:?}");
            let lines = domain_lines(&out);
            assert_eq!(lines[0], t("2", "paused", "migration"), "Prepare: paused");
            assert!(lines.contains(&t("2", "running", "migrated")));
            assert_eq!(
                lines.last(),
                Some(&t("1", "undefined", "migrated")),
                "the source leaves as migrated"
            );
            assert!(!table.nodes["1"].domains.contains_key(U));
            assert_eq!(table.nodes["2"].domains[U].state, State::Running);
        }
    }

    #[test]
    fn an_aborted_or_failed_incoming_migration_is_no_duplicate() {
        let mut table = StateTable::new(false, 90);
        table.apply(&ev("1", U, "started", "booted"), 1_000);
        let out = run(
            &mut table,
            2_000,
            &[
                ev("2", U, "started", "migrated"),
                ev("2", U, "stopped", "failed"),
                ev("2", U, "undefined", "removed"),
            ],
        );
        assert_eq!(dups(&out), vec![]);
        assert_eq!(
            domain_lines(&out),
            vec![
                t("2", "paused", "migration"),
                t("2", "shutoff", "failed"),
                t("2", "undefined", "removed")
            ]
        );
    }

    #[test]
    fn an_ordinary_second_start_is_reported_at_once_and_a_move_without_its_source_after_the_grace()
    {
        let mut table = StateTable::new(false, 90);
        table.apply(&ev("1", U, "started", "booted"), 1_000);
        let out = table.apply(&ev("2", U, "started", "booted"), 1_100);
        assert_eq!(dups(&out), vec![(true, vec!["1".into(), "2".into()])]);

        let mut table = StateTable::new(false, 90);
        table.apply(&ev("1", U, "started", "booted"), 1_000);
        let out = run(
            &mut table,
            2_000,
            &[
                ev("2", U, "started", "migrated"),
                ev("2", U, "resumed", "migrated"),
            ],
        );
        assert_eq!(dups(&out), vec![], "held");
        assert_eq!(
            dups(&table.tick(2_100 + ARRIVAL_GRACE_MS)),
            vec![(true, vec!["1".into(), "2".into()])],
            "the source never paused: a real duplicate"
        );
    }

    #[test]
    fn a_domain_on_a_node_that_is_down_is_no_duplicate_until_it_comes_back() {
        let mut table = StateTable::new(false, 90);
        table.apply(&ev("1", U, "started", "booted"), 1_000);
        table.apply(&msg("2", None, Body::Heartbeat), 1_000);
        table.apply(&msg("2", None, Body::Heartbeat), 91_000);
        let down = table.tick(91_500);
        assert!(down.contains(&Update::Node {
            node: "1".into(),
            up: false,
            since_ms: 91_500
        }));
        // HA restarts the VM on node 2.
        let out = table.apply(&ev("2", U, "started", "booted"), 92_000);
        assert_eq!(dups(&out), vec![]);
        // Node 1 comes back still running it: a real duplicate.
        let out = table.apply(&msg("1", None, Body::Heartbeat), 95_000);
        assert_eq!(dups(&out), vec![(true, vec!["1".into(), "2".into()])]);
    }

    #[test]
    fn two_hosts_under_one_node_id_keep_their_domains_and_clash() {
        const U2: &str = "00000000-0000-0000-0000-0000000000bb";
        let mut table = StateTable::new(false, 90);
        let mut out = Vec::new();
        for s in 0..5u64 {
            out.extend(table.apply(&snap("1", HOST_A, &[U]), 1_000 + s * 3_000));
            out.extend(table.apply(&snap("1", HOST_B, &[U2]), 1_500 + s * 3_000));
        }
        let gone: Vec<_> = domain_lines(&out)
            .into_iter()
            .filter(|l| l.1 == "undefined")
            .collect();
        assert_eq!(gone, vec![], "no list erases the other's");
        assert_eq!(table.nodes["1"].domains.len(), 2);
        let c = table.clashes(14_000);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].node, "1");
        // B goes away for good: A's list wins after node_timeout.
        let out = table.apply(&snap("1", HOST_A, &[U]), 14_000 + 91_000);
        assert_eq!(
            domain_lines(&out),
            vec![t("1", "undefined", "absent from snapshot")]
        );
        assert!(table.clashes(105_000).is_empty());
    }

    #[test]
    fn a_host_re_added_under_a_new_id_retires_the_old_one() {
        let mut table = StateTable::new(false, 90);
        table.apply(&snap("1", HOST_A, &[U]), 1_000);
        // While node 1 is up, a second id on the same host retires nothing.
        let out = table.apply(&snap("2", HOST_A, &[U]), 2_000);
        assert!(table.nodes.contains_key("1"), "{out:?}");
        // Node 1 goes down (its service was stopped): forgotten at once.
        table.apply(&snap("2", HOST_A, &[U]), 60_000);
        let out = table.tick(92_000);
        let lines: Vec<String> = out.iter().map(Update::panel_line).collect();
        assert!(
            lines.iter().any(|l| l.starts_with("vmwatch.domain node=1 ")
                && l.contains(" state=undefined reason=node%20forgotten ")),
            "{lines:?}"
        );
        assert!(lines.contains(&"vmwatch.node node=1 status=forgotten since=92000".to_string()));
        assert!(!table.nodes.contains_key("1"));
        assert_eq!(
            dups(&out),
            vec![(false, vec!["1".into(), "2".into()])],
            "the duplicate the two ids made is cleared"
        );
        // Already down when the host speaks under a new id: at once too.
        table.apply(&snap("3", HOST_B, &[]), 100_000);
        table.tick(191_000);
        let out = table.apply(&snap("4", HOST_B, &[]), 192_000);
        assert!(out.contains(&Update::NodeForgotten {
            node: "3".into(),
            since_ms: 192_000
        }));
        let _ = PanelState::Undefined;
    }

    #[test]
    fn a_node_down_for_node_forget_after_is_forgotten() {
        let mut table = StateTable::new(false, 90);
        table.forget_after_ms = 600_000;
        table.apply(&ev("1", U, "started", "booted"), 1_000);
        table.tick(92_000);
        assert!(table.tick(601_000).is_empty());
        let out = table.tick(601_001);
        assert_eq!(
            domain_lines(&out),
            vec![t("1", "undefined", "node forgotten")]
        );
        assert!(out.contains(&Update::NodeForgotten {
            node: "1".into(),
            since_ms: 601_001
        }));
        assert!(table.nodes.is_empty());
    }
}
