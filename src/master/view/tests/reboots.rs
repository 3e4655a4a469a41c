//! Reboots through the state table, fed as a node would feed it: ids and
//! counts across node instances, and a master without a record.

use crate::master::panel::update::Update;
use crate::master::view::table::StateTable;
use crate::protocol::{Body, DomainId, DomainState, Event, Header, Message};
use crate::vocab::{Detail, EventKind, Reason, State};

const U: &str = "4b3b2f6e-1c9a-4f8e-9d6a-2a7c1e5b9f00";

fn msg(instance: u64, body: Body) -> Message {
    Message {
        header: Header {
            node: "3".into(),
            instance,
            seq: 1,
            ts_ms: 0,
            host: None,
        },
        body,
    }
}

fn id() -> DomainId {
    DomainId {
        uuid: U.into(),
        name: "vm".into(),
    }
}

/// A snapshot listing the domain running, with a new node's
/// `rebootid` or an old node's `reboots`.
fn snap(instance: u64, reboots: Option<u64>, rebootid: Option<u64>) -> Message {
    msg(
        instance,
        Body::Snapshot {
            id: 1,
            part: 1,
            parts: 1,
            domains: vec![DomainState {
                domain: id(),
                state: State::Running,
                reason: Reason::parse(State::Running, "booted").unwrap(),
                reboots,
                rebootid,
            }],
        },
    )
}

fn reboot(instance: u64, reboots: Option<u64>, rebootid: Option<u64>) -> Message {
    msg(
        instance,
        Body::Events(vec![Event {
            domain: id(),
            event: EventKind::Reboot,
            detail: Detail::NONE,
            time_ms: 5,
            reboots,
            rebootid,
        }]),
    )
}

fn reboots(out: &[Update]) -> Vec<Option<u64>> {
    out.iter()
        .filter_map(|u| match u {
            Update::Reboot { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

/// Finding 1 of issue 16: a master without its state file met a
/// node that had counted reboots and "delivered the missed reboot"
/// although nothing rebooted. Both kinds of node.
#[test]
fn a_master_without_a_record_invents_no_reboot() {
    let mut old_node = StateTable::new(false, 90);
    let out = old_node.apply(&snap(7, Some(4), None), 1);
    assert_eq!(reboots(&out), vec![], "old node: baseline");
    let out = old_node.apply(&snap(7, Some(5), None), 2);
    assert_eq!(reboots(&out), vec![None], "a later missed one is delivered");

    let mut live = StateTable::new(false, 90);
    live.apply(&snap(7, None, None), 1);
    let out = live.apply(&reboot(7, Some(1), None), 2);
    assert_eq!(reboots(&out), vec![None], "a live event is delivered");

    let mut new_node = StateTable::new(false, 90);
    let out = new_node.apply(&snap(7, None, Some(1_795_000_000)), 1);
    assert_eq!(reboots(&out), vec![], "new node: baseline");
    assert_eq!(new_node.reboot_stats().baselines, 1);
}

#[test]
fn each_reboot_is_delivered_once_by_id_across_node_instances() {
    let mut t = StateTable::new(false, 90);
    t.apply(&snap(1, None, Some(0)), 1);
    // A reboot, then the same again (a repeat), then from a new
    // instance of the node (killed and started) the next one.
    assert_eq!(
        reboots(&t.apply(&reboot(1, None, Some(100)), 2)),
        vec![Some(100)]
    );
    assert_eq!(reboots(&t.apply(&reboot(1, None, Some(100)), 3)), vec![]);
    assert_eq!(
        reboots(&t.apply(&snap(2, None, Some(100)), 4)),
        vec![],
        "a new instance with the same id"
    );
    assert_eq!(
        reboots(&t.apply(&reboot(2, None, Some(101)), 5)),
        vec![Some(101)]
    );
    // A reboot lost in a killed node's queue: its next instance's
    // snapshot carries the id, delivered once.
    assert_eq!(
        reboots(&t.apply(&snap(3, None, Some(102)), 6)),
        vec![Some(102)]
    );
    assert_eq!(reboots(&t.apply(&snap(3, None, Some(102)), 7)), vec![]);
    assert_eq!(t.reboot_stats().repeats, 1);
    assert_eq!(t.reboot_stats().missed, 1);
    assert_eq!(t.nodes()["3"].domains[U].rebootid, Some(102));
}

#[test]
fn a_lifecycle_event_that_shows_a_higher_id_delivers_the_lost_reboot() {
    let mut t = StateTable::new(false, 90);
    let ev = |event: &str, detail: &str, rebootid| {
        let kind = EventKind::parse(event).unwrap();
        msg(
            1,
            Body::Events(vec![Event {
                domain: id(),
                event: kind,
                detail: Detail::parse(kind, detail).unwrap(),
                time_ms: 9,
                reboots: None,
                rebootid: Some(rebootid),
            }]),
        )
    };
    // A new domain: defined with no reboot, its first reboot lost
    // (a full queue), then it shuts down.
    assert_eq!(reboots(&t.apply(&ev("defined", "added", 0), 1)), vec![]);
    assert_eq!(reboots(&t.apply(&ev("started", "booted", 0), 2)), vec![]);
    let out = t.apply(&ev("stopped", "shutdown", 50), 3);
    assert_eq!(reboots(&out), vec![Some(50)]);
}

#[test]
fn an_old_state_file_repeats_a_reboot_under_the_same_id() {
    // The master delivered reboot 100 and was killed before saving:
    // its file still says 99. The node's next snapshot repeats
    // reboot 100 under the same id, which the panel drops.
    let mut t = StateTable::new(false, 90);
    t.apply(&snap(1, None, Some(99)), 1);
    let out = t.apply(&snap(1, None, Some(100)), 2);
    assert_eq!(reboots(&out), vec![Some(100)]);
}
