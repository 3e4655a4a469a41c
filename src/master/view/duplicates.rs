//! Duplicate detection: the same VM running on two nodes, or a copy of a VM
//! (same name, another UUID) made outside the panel.
//!
//! Indices are kept incrementally as domains change, so a snapshot of
//! thousands of domains costs one index update per domain, not a scan of the
//! cluster per domain. After each message the keys it touched are checked
//! and only changed verdicts become updates.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::duplicate_by::DuplicateBy;
use crate::master::panel::update::Update;
use crate::vocab::State;

/// A duplicate the panel was told of.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duplicate {
    pub by: DuplicateBy,
    /// The UUID or name.
    pub key: String,
    pub nodes: Vec<String>,
}

/// The nodes that have a domain: sorted, nearly always just one (a
/// vector, not a tree: a tree's node costs hundreds of bytes per domain).
type Nodes = Vec<String>;

/// Adds or removes `node`; true if that changed the set.
fn change(nodes: &mut Nodes, node: &str, present: bool) -> bool {
    match (nodes.binary_search_by(|n| n.as_str().cmp(node)), present) {
        (Err(at), true) => {
            nodes.insert(at, node.to_string());
            true
        }
        (Ok(at), false) => {
            nodes.remove(at);
            true
        }
        _ => false,
    }
}

/// How one active copy of a UUID weighs in its duplicate verdict
/// (decided by the state table: see migration.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    /// An ordinary active copy: two of them are a duplicate.
    Counts,
    /// Not counted: its node is down, or it is the other end of a live
    /// migration (paused for it). Re-judged on the housekeeping tick.
    Ignored,
    /// Counted, but it arrived by migration moments ago: a duplicate it is
    /// part of is held until the other end's events arrive (the two nodes'
    /// messages reach the master in either order). Re-judged on the tick.
    Moving,
}

#[derive(Debug, Default)]
pub struct Duplicates {
    /// uuid -> nodes where it is active.
    active: HashMap<String, Nodes>,
    /// name -> (uuid, nodes defining it), by uuid.
    names: HashMap<String, Vec<(String, Nodes)>>,
    /// What the panel was last told is duplicated: (by, key) -> nodes.
    reported: HashMap<(DuplicateBy, String), Vec<String>>,
    /// Keys whose verdict may have changed: only those that had or have
    /// two or more entries (a verdict needs two), so the domains of a
    /// healthy cluster are never checked.
    dirty_uuids: HashSet<String>,
    dirty_names: HashSet<String>,
    /// UUIDs whose verdict depended on a copy that was not [`Copy::Counts`]:
    /// judged again on each housekeeping tick, as time alone changes them.
    recheck: HashSet<String>,
}

impl Duplicates {
    /// Records that `node` now has `uuid` named `name` in `state`, or no
    /// longer has it (`state` = None).
    pub fn set(&mut self, node: &str, uuid: &str, name: &str, state: Option<State>) {
        let active = state.is_some_and(State::is_active);
        match self.active.get_mut(uuid) {
            Some(nodes) => {
                let before = nodes.len();
                if change(nodes, node, active) && before.max(nodes.len()) >= 2 {
                    self.dirty_uuids.insert(uuid.to_string());
                }
                if nodes.is_empty() {
                    self.active.remove(uuid);
                }
            }
            None if active => {
                self.active.insert(uuid.to_string(), vec![node.to_string()]);
            }
            None => {}
        }
        let defined = state.is_some();
        match self.names.get_mut(name) {
            Some(by_uuid) => {
                let before = by_uuid.len();
                let changed = match by_uuid.binary_search_by(|(u, _)| u.as_str().cmp(uuid)) {
                    Ok(at) => {
                        let changed = change(&mut by_uuid[at].1, node, defined);
                        if by_uuid[at].1.is_empty() {
                            by_uuid.remove(at);
                        }
                        changed
                    }
                    Err(at) if defined => {
                        by_uuid.insert(at, (uuid.to_string(), vec![node.to_string()]));
                        true
                    }
                    Err(_) => false,
                };
                if changed && before.max(by_uuid.len()) >= 2 {
                    self.dirty_names.insert(name.to_string());
                }
                if by_uuid.is_empty() {
                    self.names.remove(name);
                }
            }
            None if defined => {
                self.names.insert(
                    name.to_string(),
                    vec![(uuid.to_string(), vec![node.to_string()])],
                );
            }
            None => {}
        }
    }

    /// Marks `uuid`'s verdict for a new look, if it has one to change: a
    /// copy's weight changed without its being active or not (a migration
    /// went on, its node went down or came back).
    pub fn touch(&mut self, uuid: &str) {
        if self.active.get(uuid).is_some_and(|n| n.len() >= 2)
            || self
                .reported
                .contains_key(&(DuplicateBy::Uuid, uuid.to_string()))
        {
            self.dirty_uuids.insert(uuid.to_string());
        }
    }

    /// Marks every UUID whose verdict may change with time for a new look
    /// (the housekeeping tick).
    pub fn recheck(&mut self) {
        let due: Vec<String> = self.recheck.drain().collect();
        self.dirty_uuids.extend(due);
    }

    /// Compares the touched keys with what was reported; returns updates.
    /// `judge(node, uuid)` says how an active copy weighs.
    pub fn changes(&mut self, judge: &dyn Fn(&str, &str) -> Copy) -> Vec<Update> {
        let mut out = Vec::new();
        if self.dirty_uuids.is_empty() && self.dirty_names.is_empty() {
            // Draining an empty set still walks its whole table.
            return out;
        }
        let mut uuids: Vec<String> = self.dirty_uuids.drain().collect();
        uuids.sort();
        for uuid in uuids {
            let all: &[String] = self.active.get(&uuid).map_or(&[], |n| n.as_slice());
            let weights: Vec<Copy> = if all.len() >= 2 {
                all.iter().map(|n| judge(n, &uuid)).collect()
            } else {
                Vec::new()
            };
            let nodes: Vec<String> = all
                .iter()
                .zip(&weights)
                .filter(|(_, w)| **w != Copy::Ignored)
                .map(|(n, _)| n.clone())
                .collect();
            if weights.iter().any(|w| *w != Copy::Counts) {
                self.recheck.insert(uuid.clone());
            }
            let reported = self
                .reported
                .contains_key(&(DuplicateBy::Uuid, uuid.clone()));
            if nodes.len() >= 2 && !reported && weights.contains(&Copy::Moving) {
                // Held: the other end's events are on their way.
                continue;
            }
            self.verdict(DuplicateBy::Uuid, uuid, nodes, &mut out);
        }
        let mut names: Vec<String> = self.dirty_names.drain().collect();
        names.sort();
        for name in names {
            let nodes: Vec<String> = match self.names.get(&name) {
                Some(by_uuid) if by_uuid.len() >= 2 => {
                    let all: BTreeSet<&String> =
                        by_uuid.iter().flat_map(|(_, nodes)| nodes).collect();
                    all.into_iter().cloned().collect()
                }
                _ => Vec::new(),
            };
            self.verdict(DuplicateBy::Name, name, nodes, &mut out);
        }
        out
    }

    fn verdict(&mut self, by: DuplicateBy, key: String, nodes: Vec<String>, out: &mut Vec<Update>) {
        let k = (by, key.clone());
        if nodes.len() >= 2 {
            if self.reported.get(&k) != Some(&nodes) {
                self.reported.insert(k, nodes.clone());
                out.push(Update::Duplicate {
                    by,
                    key,
                    nodes,
                    active: true,
                });
            }
        } else if let Some(old) = self.reported.remove(&k) {
            out.push(Update::Duplicate {
                by,
                key,
                nodes: old,
                active: false,
            });
        }
    }

    /// Current duplicates, for the state file.
    pub fn current(&self) -> Vec<Duplicate> {
        let mut v: Vec<_> = self
            .reported
            .iter()
            .map(|((by, key), nodes)| Duplicate {
                by: *by,
                key: key.clone(),
                nodes: nodes.clone(),
            })
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The change that reports `key` as a duplicate on nodes 1 and 2
    /// (`active`), or clears that report.
    fn on_nodes_1_and_2(by: DuplicateBy, key: &str, active: bool) -> Vec<Update> {
        vec![Update::Duplicate {
            by,
            key: key.into(),
            nodes: vec!["1".into(), "2".into()],
            active,
        }]
    }

    #[test]
    fn same_uuid_active_on_two_nodes_is_reported_then_cleared() {
        let mut d = Duplicates::default();
        d.set("1", "u", "vm", Some(State::Running));
        assert!(d.changes(&|_, _| Copy::Counts).is_empty());
        d.set("2", "u", "vm", Some(State::Shutoff));
        assert!(
            d.changes(&|_, _| Copy::Counts).is_empty(),
            "defined but not running elsewhere is fine"
        );
        d.set("2", "u", "vm", Some(State::Running));
        assert_eq!(
            d.changes(&|_, _| Copy::Counts),
            on_nodes_1_and_2(DuplicateBy::Uuid, "u", true)
        );
        assert!(d.changes(&|_, _| Copy::Counts).is_empty(), "reported once");
        d.set("1", "u", "vm", None);
        assert_eq!(
            d.changes(&|_, _| Copy::Counts),
            on_nodes_1_and_2(DuplicateBy::Uuid, "u", false)
        );
        assert!(d.current().is_empty());
    }

    #[test]
    fn ignored_copies_do_not_count_and_moving_ones_hold_the_verdict() {
        let mut d = Duplicates::default();
        let node1_ignored = |n: &str, _: &str| {
            if n == "1" {
                Copy::Ignored
            } else {
                Copy::Counts
            }
        };
        let node2_moving = |n: &str, _: &str| if n == "2" { Copy::Moving } else { Copy::Counts };
        d.set("1", "u", "vm", Some(State::Running));
        d.set("2", "u", "vm", Some(State::Paused));
        assert!(d.changes(&node1_ignored).is_empty(), "one counted copy");
        d.touch("u");
        assert!(d.changes(&node2_moving).is_empty(), "held while moving");
        d.recheck();
        assert!(d.changes(&node2_moving).is_empty(), "still held");
        d.recheck();
        assert_eq!(
            d.changes(&|_, _| Copy::Counts),
            on_nodes_1_and_2(DuplicateBy::Uuid, "u", true),
            "reported once the hold ends"
        );
        d.touch("u"); // node 1 went down
        assert_eq!(
            d.changes(&node1_ignored),
            on_nodes_1_and_2(DuplicateBy::Uuid, "u", false),
            "a copy that stops counting clears the report"
        );
        d.recheck();
        assert_eq!(
            d.changes(&|_, _| Copy::Counts),
            on_nodes_1_and_2(DuplicateBy::Uuid, "u", true),
            "counted again (its node came back): reported at once"
        );
        d.recheck();
        assert!(
            d.changes(&|_, _| Copy::Counts).is_empty(),
            "reported once; no recheck once every copy counts"
        );
        assert!(d.recheck.is_empty());
    }

    #[test]
    fn same_name_with_another_uuid_on_another_node_is_a_copy() {
        let mut d = Duplicates::default();
        d.set("1", "u1", "web", Some(State::Running));
        d.set("2", "u2", "web", Some(State::Shutoff));
        let ch = d.changes(&|_, _| Copy::Counts);
        assert_eq!(ch, on_nodes_1_and_2(DuplicateBy::Name, "web", true));
        d.set("2", "u2", "web", None);
        assert!(matches!(
            &d.changes(&|_, _| Copy::Counts)[..],
            [Update::Duplicate { active: false, .. }]
        ));
    }
}
