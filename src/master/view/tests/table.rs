//! The state table fed as nodes feed it: lifecycles, snapshots (whole and
//! in parts), silent nodes, duplicates and idle warnings.

use crate::master::panel::update::{PanelState, Update};
use crate::master::view::duplicate_by::DuplicateBy;
use crate::master::view::table::StateTable;
use crate::protocol::{Body, DomainId, DomainState, Event, Header, Message, StatSample};
use crate::vocab::{Detail, EventKind, Reason, State};

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
    assert!(t.nodes()["3"].domains.is_empty());
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
    assert_eq!(t.nodes()["1"].domains[U1].state, State::Paused);
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
    assert_eq!(t.nodes()["1"].domains.len(), 2);
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
