//! Tests of the state table through whole migrations and node changes:
//! the sequences libvirt really emits (docs/panel-api.md, "Migrations"),
//! nodes going down, re-added, cloned and forgotten.

use crate::master::panel::update::{PanelState, Update};
use crate::master::view::duplicate_by::DuplicateBy;
use crate::master::view::migration::ARRIVAL_GRACE_MS;
use crate::master::view::table::StateTable;
use crate::protocol::{Body, DomainId, DomainState, Event, Header, Message};
use crate::vocab::{Detail, EventKind, Reason, State};

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
            rebootid: None,
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
            rebootid: None,
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

/// Applies a message as the receiver does (noting the node heard).
fn apply(table: &mut StateTable, m: &Message, now: u64) -> Vec<Update> {
    let out = table.apply(m, now);
    table.heard(&m.header.node, now);
    out
}

/// The housekeeping tick, wall and monotonic clocks alike.
fn tick(table: &mut StateTable, now: u64) -> Vec<Update> {
    table.tick(now, now)
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
        out.extend(apply(table, m, now));
        out.extend(tick(table, now));
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
        apply(&mut table, &ev("1", U, "started", "booted"), 1_000);
        apply(&mut table, &msg("2", None, Body::Heartbeat), 1_000);
        let mut out = run(&mut table, 2_000, &order);
        for s in 0..30 {
            out.extend(tick(&mut table, 3_000 + s * 1_000));
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
        assert!(!table.nodes()["1"].domains.contains_key(U));
        assert_eq!(table.nodes()["2"].domains[U].state, State::Running);
    }
}

#[test]
fn an_aborted_or_failed_incoming_migration_is_no_duplicate() {
    let mut table = StateTable::new(false, 90);
    apply(&mut table, &ev("1", U, "started", "booted"), 1_000);
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
fn an_ordinary_second_start_is_reported_at_once_and_a_move_without_its_source_after_the_grace() {
    let mut table = StateTable::new(false, 90);
    apply(&mut table, &ev("1", U, "started", "booted"), 1_000);
    let out = apply(&mut table, &ev("2", U, "started", "booted"), 1_100);
    assert_eq!(dups(&out), vec![(true, vec!["1".into(), "2".into()])]);

    let mut table = StateTable::new(false, 90);
    apply(&mut table, &ev("1", U, "started", "booted"), 1_000);
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
        dups(&tick(&mut table, 2_100 + ARRIVAL_GRACE_MS)),
        vec![(true, vec!["1".into(), "2".into()])],
        "the source never paused: a real duplicate"
    );
}

#[test]
fn a_domain_on_a_node_that_is_down_is_no_duplicate_until_it_comes_back() {
    let mut table = StateTable::new(false, 90);
    apply(&mut table, &ev("1", U, "started", "booted"), 1_000);
    apply(&mut table, &msg("2", None, Body::Heartbeat), 1_000);
    apply(&mut table, &msg("2", None, Body::Heartbeat), 91_000);
    let down = tick(&mut table, 91_500);
    assert!(down.contains(&Update::Node {
        node: "1".into(),
        up: false,
        since_ms: 91_500
    }));
    // HA restarts the VM on node 2.
    let out = apply(&mut table, &ev("2", U, "started", "booted"), 92_000);
    assert_eq!(dups(&out), vec![]);
    // Node 1 comes back still running it: a real duplicate.
    let out = apply(&mut table, &msg("1", None, Body::Heartbeat), 95_000);
    assert_eq!(dups(&out), vec![(true, vec!["1".into(), "2".into()])]);
}

#[test]
fn two_hosts_under_one_node_id_keep_their_domains_and_clash() {
    const U2: &str = "00000000-0000-0000-0000-0000000000bb";
    let mut table = StateTable::new(false, 90);
    let mut out = Vec::new();
    for s in 0..5u64 {
        out.extend(apply(
            &mut table,
            &snap("1", HOST_A, &[U]),
            1_000 + s * 3_000,
        ));
        out.extend(apply(
            &mut table,
            &snap("1", HOST_B, &[U2]),
            1_500 + s * 3_000,
        ));
    }
    let gone: Vec<_> = domain_lines(&out)
        .into_iter()
        .filter(|l| l.1 == "undefined")
        .collect();
    assert_eq!(gone, vec![], "no list erases the other's");
    assert_eq!(table.nodes()["1"].domains.len(), 2);
    let c = table.clashes(14_000);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].node, "1");
    // B goes away for good: A's list wins after node_timeout.
    let out = apply(&mut table, &snap("1", HOST_A, &[U]), 14_000 + 91_000);
    assert_eq!(
        domain_lines(&out),
        vec![t("1", "undefined", "absent from snapshot")]
    );
    assert!(table.clashes(105_000).is_empty());
}

#[test]
fn a_host_re_added_under_a_new_id_retires_the_old_one() {
    let mut table = StateTable::new(false, 90);
    apply(&mut table, &snap("1", HOST_A, &[U]), 1_000);
    // While node 1 is up, a second id on the same host retires nothing.
    let out = apply(&mut table, &snap("2", HOST_A, &[U]), 2_000);
    assert!(table.nodes().contains_key("1"), "{out:?}");
    // Node 1 goes down (its service was stopped): forgotten at once.
    apply(&mut table, &snap("2", HOST_A, &[U]), 60_000);
    let out = tick(&mut table, 92_000);
    let lines: Vec<String> = out.iter().map(Update::panel_line).collect();
    assert!(
        lines.iter().any(|l| l.starts_with("vmwatch.domain node=1 ")
            && l.contains(" state=undefined reason=node%20forgotten ")),
        "{lines:?}"
    );
    assert!(lines.contains(&"vmwatch.node node=1 status=forgotten since=92000".to_string()));
    assert!(!table.nodes().contains_key("1"));
    assert_eq!(
        dups(&out),
        vec![(false, vec!["1".into(), "2".into()])],
        "the duplicate the two ids made is cleared"
    );
    // Already down when the host speaks under a new id: at once too.
    apply(&mut table, &snap("3", HOST_B, &[]), 100_000);
    tick(&mut table, 191_000);
    let out = apply(&mut table, &snap("4", HOST_B, &[]), 192_000);
    assert!(out.contains(&Update::NodeForgotten {
        node: "3".into(),
        since_ms: 192_000
    }));
    let _ = PanelState::Undefined;
}

#[test]
fn a_node_down_for_node_forget_after_is_forgotten() {
    let mut table = StateTable::new(false, 90);
    table.set_forget_after_ms(600_000);
    apply(&mut table, &ev("1", U, "started", "booted"), 1_000);
    tick(&mut table, 92_000);
    assert!(tick(&mut table, 601_000).is_empty());
    let out = tick(&mut table, 601_001);
    assert_eq!(
        domain_lines(&out),
        vec![t("1", "undefined", "node forgotten")]
    );
    assert!(out.contains(&Update::NodeForgotten {
        node: "1".into(),
        since_ms: 601_001
    }));
    assert!(table.nodes().is_empty());
}

#[test]
fn a_forgotten_node_id_that_speaks_again_is_new_with_its_domains() {
    let mut table = StateTable::new(false, 90);
    apply(&mut table, &snap("1", HOST_A, &[U]), 1_000);
    let out = table.forget_now("1", 2_000);
    assert_eq!(
        domain_lines(&out),
        vec![t("1", "undefined", "node forgotten")]
    );
    let out = apply(&mut table, &snap("1", HOST_A, &[U]), 3_000);
    assert_eq!(
        domain_lines(&out),
        vec![t("1", "running", "booted")],
        "{out:?}"
    );
}
