//! Duplicate detection: the same VM running on two nodes, or a copy of a VM
//! (same name, another UUID) made outside the panel.
//!
//! Indices are kept incrementally as domains change, so a snapshot of
//! thousands of domains costs one index update per domain, not a scan of the
//! cluster per domain. After each message the keys it touched are checked
//! and only changed verdicts become updates.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::update::Update;
use crate::vocab::State;

/// What makes two domains duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DuplicateBy {
    /// The same UUID active on several nodes.
    Uuid,
    /// The same name used by different UUIDs on several nodes.
    Name,
}

impl DuplicateBy {
    /// The word in panel lines and the state file (also the key's name).
    pub fn as_str(self) -> &'static str {
        match self {
            DuplicateBy::Uuid => "uuid",
            DuplicateBy::Name => "name",
        }
    }

    /// A word as a kind; `None` outside the vocabulary.
    pub fn parse(word: &str) -> Option<DuplicateBy> {
        [DuplicateBy::Uuid, DuplicateBy::Name]
            .into_iter()
            .find(|b| b.as_str() == word)
    }
}

impl std::fmt::Display for DuplicateBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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

    /// Compares the touched keys with what was reported; returns updates.
    pub fn changes(&mut self) -> Vec<Update> {
        let mut out = Vec::new();
        if self.dirty_uuids.is_empty() && self.dirty_names.is_empty() {
            // Draining an empty set still walks its whole table.
            return out;
        }
        let mut uuids: Vec<String> = self.dirty_uuids.drain().collect();
        uuids.sort();
        for uuid in uuids {
            let nodes: Vec<String> = self.active.get(&uuid).cloned().unwrap_or_default();
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
        assert!(d.changes().is_empty());
        d.set("2", "u", "vm", Some(State::Shutoff));
        assert!(
            d.changes().is_empty(),
            "defined but not running elsewhere is fine"
        );
        d.set("2", "u", "vm", Some(State::Running));
        assert_eq!(d.changes(), on_nodes_1_and_2(DuplicateBy::Uuid, "u", true));
        assert!(d.changes().is_empty(), "reported once");
        d.set("1", "u", "vm", None);
        assert_eq!(d.changes(), on_nodes_1_and_2(DuplicateBy::Uuid, "u", false));
        assert!(d.current().is_empty());
    }

    #[test]
    fn same_name_with_another_uuid_on_another_node_is_a_copy() {
        let mut d = Duplicates::default();
        d.set("1", "u1", "web", Some(State::Running));
        d.set("2", "u2", "web", Some(State::Shutoff));
        let ch = d.changes();
        assert_eq!(ch, on_nodes_1_and_2(DuplicateBy::Name, "web", true));
        d.set("2", "u2", "web", None);
        assert!(matches!(
            &d.changes()[..],
            [Update::Duplicate { active: false, .. }]
        ));
    }
}
