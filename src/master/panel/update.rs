//! What the master tells the panel: one [`Update`] per fact that changed.
//!
//! Each update has a coalescing key (the panel needs only the latest fact
//! per key), a line in the panel command's input (docs/panel-api.md), and a
//! line for the master's log, which registers every change.

use crate::kvline::{short, Fields, Line};
use crate::master::view::duplicate_by::DuplicateBy;
use crate::protocol::{check_node_id, is_uuid};
use crate::vocab::State;

/// A domain's state as the panel learns it: a libvirt state, or gone from
/// the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanelState {
    Is(State),
    Undefined,
}

impl PanelState {
    /// A panel word as a state; `None` outside the vocabulary.
    pub fn parse(word: &str) -> Option<PanelState> {
        match word {
            "undefined" => Some(PanelState::Undefined),
            w => State::parse(w).map(PanelState::Is),
        }
    }
}

impl std::fmt::Display for PanelState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PanelState::Is(s) => s.fmt(f),
            PanelState::Undefined => f.write_str("undefined"),
        }
    }
}

/// A change the panel must learn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// A domain's state on a node changed, or it is gone from the node.
    Domain {
        node: String,
        uuid: String,
        name: String,
        state: PanelState,
        reason: String,
        old: Option<State>,
        since_ms: u64,
    },
    /// The guest rebooted (the panel uses this to finish OS installation).
    Reboot {
        node: String,
        uuid: String,
        name: String,
        time_ms: u64,
        /// The reboot's id on its node (`rebootid=`): (node, uuid, id)
        /// names one reboot, so a panel drops a repeat; `None` from nodes
        /// that do not name reboots.
        id: Option<u64>,
    },
    /// A node went silent for `node_timeout`, or came back.
    Node {
        node: String,
        up: bool,
        since_ms: u64,
    },
    /// A node id was forgotten (retired, down for `node_forget_after`, or
    /// `vmwatch-master --forget-node`); its domains were reported
    /// `undefined` before it.
    NodeForgotten { node: String, since_ms: u64 },
    /// A running domain showed no activity over a stats interval (or
    /// activity came back).
    Idle {
        node: String,
        uuid: String,
        name: String,
        idle: bool,
        tx_pkts: u64,
        wr_reqs: u64,
    },
    /// The same domain is active on several nodes (`by` = `uuid`), or the
    /// same name is used by different UUIDs on several nodes (`by` =
    /// `name`); `active=false` clears an earlier report.
    Duplicate {
        by: DuplicateBy,
        key: String,
        nodes: Vec<String>,
        active: bool,
    },
}

/// What an update is about (its kind, node and domain or key): a newer
/// update about the same subject replaces an older one in the queue.
pub type Subject = (&'static str, String, String);

impl Update {
    pub fn subject(&self) -> Subject {
        match self {
            Update::Domain { node, uuid, .. } => ("domain", node.clone(), uuid.clone()),
            Update::Reboot { node, uuid, .. } => ("reboot", node.clone(), uuid.clone()),
            Update::Node { node, .. } | Update::NodeForgotten { node, .. } => {
                ("node", node.clone(), String::new())
            }
            Update::Idle { node, uuid, .. } => ("idle", node.clone(), uuid.clone()),
            Update::Duplicate { by, key, .. } => {
                ("duplicate", by.as_str().to_string(), key.clone())
            }
        }
    }

    /// The panel function that takes the update (docs/panel-api.md).
    fn function(&self) -> &'static str {
        match self {
            Update::Domain { .. } => "vmwatch.domain",
            Update::Reboot { .. } => "vmwatch.reboot",
            Update::Node { .. } | Update::NodeForgotten { .. } => "vmwatch.node",
            Update::Idle { .. } => "vmwatch.idle",
            Update::Duplicate { .. } => "vmwatch.duplicate",
        }
    }

    /// The domain the update is about, for the kinds that are about one:
    /// its node, UUID and name.
    fn domain(&self) -> Option<(&str, &str, &str)> {
        match self {
            Update::Domain {
                node, uuid, name, ..
            }
            | Update::Reboot {
                node, uuid, name, ..
            }
            | Update::Idle {
                node, uuid, name, ..
            } => Some((node, uuid, name)),
            Update::Node { .. } | Update::NodeForgotten { .. } | Update::Duplicate { .. } => None,
        }
    }

    /// The line the panel command reads: `FUNCTION key=value ...`, values
    /// percent-encoded as on the wire; a domain's fields come first.
    pub fn panel_line(&self) -> String {
        let mut out = String::new();
        let yes = |b: bool| if b { "yes" } else { "no" };
        let mut line = Line::new(&mut out).word(self.function());
        if let Some((node, uuid, name)) = self.domain() {
            line = line
                .field("node", node)
                .field("uuid", uuid)
                .field("name", name);
        }
        match self {
            Update::Domain {
                state,
                reason,
                old,
                since_ms,
                ..
            } => line
                .field("state", state)
                .field("reason", reason)
                .field(
                    "old",
                    old.map_or_else(|| "-".to_string(), |o| o.to_string()),
                )
                .field("since", since_ms),
            Update::Reboot { time_ms, id, .. } => {
                line.field("time", time_ms).opt("rebootid", id.as_ref())
            }
            Update::Node { node, up, since_ms } => line
                .field("node", node)
                .field("status", if *up { "up" } else { "down" })
                .field("since", since_ms),
            Update::NodeForgotten { node, since_ms } => line
                .field("node", node)
                .field("status", "forgotten")
                .field("since", since_ms),
            Update::Idle {
                idle,
                tx_pkts,
                wr_reqs,
                ..
            } => line
                .field("idle", yes(*idle))
                .field("txpkts", tx_pkts)
                .field("wrreqs", wr_reqs),
            Update::Duplicate {
                by,
                key,
                nodes,
                active,
            } => line
                .field("by", by)
                .field(by.as_str(), key)
                .field("nodes", nodes.join(","))
                .field("active", yes(*active)),
        };
        out
    }

    /// Parses a line written by [`panel_line`](Self::panel_line); used to
    /// keep undelivered updates in the state file across a restart. Every
    /// field is checked against docs/panel-api.md; `Err` says what is wrong.
    pub fn from_panel_line(line: &str) -> Result<Update, String> {
        let (func, rest) = line
            .split_once(' ')
            .ok_or("an update needs a function and fields")?;
        let f = Fields::parse(rest)?;
        let node = || -> Result<String, String> {
            let n = f.get("node")?;
            check_node_id(n).map_err(|e| format!("node id {e}"))?;
            Ok(n.to_string())
        };
        let uuid =
            || -> Result<String, String> { f.word("uuid", |u| is_uuid(u).then(|| u.to_string())) };
        let text = |k: &str| f.get(k).map(str::to_string);
        let yes = |k: &str, y: &str, n: &str| match f.get(k)? {
            v if v == y => Ok(true),
            v if v == n => Ok(false),
            v => Err(format!("`{k}` is `{}`, not `{y}` or `{n}`", short(v))),
        };
        Ok(match func {
            "vmwatch.domain" => Update::Domain {
                node: node()?,
                uuid: uuid()?,
                name: text("name")?,
                state: f.word("state", PanelState::parse)?,
                reason: text("reason")?,
                old: f.word("old", |o| match o {
                    "-" => Some(None),
                    o => State::parse(o).map(Some),
                })?,
                since_ms: f.num("since")?,
            },
            "vmwatch.reboot" => Update::Reboot {
                node: node()?,
                uuid: uuid()?,
                name: text("name")?,
                time_ms: f.num("time")?,
                id: f.opt_num("rebootid")?,
            },
            "vmwatch.node" if f.get("status") == Ok("forgotten") => Update::NodeForgotten {
                node: node()?,
                since_ms: f.num("since")?,
            },
            "vmwatch.node" => Update::Node {
                node: node()?,
                up: yes("status", "up", "down")?,
                since_ms: f.num("since")?,
            },
            "vmwatch.idle" => Update::Idle {
                node: node()?,
                uuid: uuid()?,
                name: text("name")?,
                idle: yes("idle", "yes", "no")?,
                tx_pkts: f.num("txpkts")?,
                wr_reqs: f.num("wrreqs")?,
            },
            "vmwatch.duplicate" => {
                let by = f.word("by", DuplicateBy::parse)?;
                let nodes: Vec<String> = f.get("nodes")?.split(',').map(str::to_string).collect();
                if let Some(bad) = nodes.iter().find(|n| check_node_id(n).is_err()) {
                    return Err(format!("`nodes` holds `{}`, not a node id", short(bad)));
                }
                Update::Duplicate {
                    by,
                    key: match by {
                        DuplicateBy::Uuid => uuid()?,
                        DuplicateBy::Name => text("name")?,
                    },
                    nodes,
                    active: yes("active", "yes", "no")?,
                }
            }
            other => return Err(format!("unknown function `{}`", short(other))),
        })
    }

    /// How the change is registered in the master's log (formatted where
    /// it is written: no string of its own).
    pub fn log_line(&self) -> LogLine<'_> {
        LogLine(self)
    }
}

/// An [`Update`] as the master's log says it.
pub struct LogLine<'a>(&'a Update);

impl std::fmt::Display for LogLine<'_> {
    fn fmt(&self, s: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some((node, uuid, name)) = self.0.domain() {
            write!(s, "node {node}: domain {name} ({uuid})")?;
        }
        match self.0 {
            Update::Domain {
                state, reason, old, ..
            } => {
                s.write_str(": ")?;
                match old {
                    Some(o) => write!(s, "{o}")?,
                    None => s.write_str("new")?,
                }
                write!(s, " -> {state} (reason: {reason})")
            }
            Update::Reboot { .. } => write!(s, " rebooted"),
            Update::Node { node, up: true, .. } => write!(s, "node {node} is up"),
            Update::Node {
                node, up: false, ..
            } => {
                write!(s, "node {node} is down: no message within node_timeout")
            }
            Update::NodeForgotten { node, .. } => write!(s, "node {node} is forgotten"),
            Update::Idle {
                idle: true,
                tx_pkts,
                wr_reqs,
                ..
            } => write!(
                s,
                " looks idle: {tx_pkts} packets sent, {wr_reqs} disk writes in the last interval"
            ),
            Update::Idle { .. } => write!(s, " is active again"),
            Update::Duplicate {
                by,
                key,
                nodes,
                active: true,
            } => write!(s, "duplicate {by} {key} on nodes {}", nodes.join(", ")),
            Update::Duplicate { by, key, .. } => write!(s, "duplicate {by} {key} resolved"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "4b3b2f6e-1c9a-4f8e-9d6a-2a7c1e5b9f00";

    #[test]
    fn panel_lines_are_one_line_with_encoded_values() {
        let u = Update::Domain {
            node: "3".into(),
            uuid: "4b3b2f6e-1c9a-4f8e-9d6a-2a7c1e5b9f00".into(),
            name: "my vm\n".into(),
            state: PanelState::Is(State::Running),
            reason: "booted".into(),
            old: None,
            since_ms: 17,
        };
        assert_eq!(
            u.panel_line(),
            "vmwatch.domain node=3 uuid=4b3b2f6e-1c9a-4f8e-9d6a-2a7c1e5b9f00 name=my%20vm%0A state=running reason=booted old=- since=17"
        );
        assert_eq!(
            Update::Duplicate {
                by: DuplicateBy::Uuid,
                key: U.into(),
                nodes: vec!["1".into(), "2".into()],
                active: true
            }
            .panel_line(),
            "vmwatch.duplicate by=uuid uuid=4b3b2f6e-1c9a-4f8e-9d6a-2a7c1e5b9f00 nodes=1,2 active=yes"
        );
    }

    #[test]
    fn every_kind_survives_a_trip_through_its_panel_line() {
        let all = vec![
            Update::Domain {
                node: "n-1".into(),
                uuid: U.into(),
                name: "a b%".into(),
                state: PanelState::Is(State::Paused),
                reason: "user".into(),
                old: Some(State::Running),
                since_ms: 9,
            },
            Update::Domain {
                node: "1".into(),
                uuid: U.into(),
                name: "x".into(),
                state: PanelState::Is(State::Shutoff),
                reason: "added".into(),
                old: None,
                since_ms: 1,
            },
            Update::Reboot {
                node: "1".into(),
                uuid: U.into(),
                name: "x".into(),
                time_ms: 3,
                id: None,
            },
            Update::Reboot {
                node: "1".into(),
                uuid: U.into(),
                name: "x".into(),
                time_ms: 3,
                id: Some(1795456001),
            },
            Update::Node {
                node: "2".into(),
                up: false,
                since_ms: 4,
            },
            Update::NodeForgotten {
                node: "2".into(),
                since_ms: 5,
            },
            Update::Idle {
                node: "2".into(),
                uuid: U.into(),
                name: "x".into(),
                idle: true,
                tx_pkts: 0,
                wr_reqs: 7,
            },
            Update::Duplicate {
                by: DuplicateBy::Name,
                key: "web".into(),
                nodes: vec!["1".into(), "2".into()],
                active: false,
            },
        ];
        for u in all {
            assert_eq!(Update::from_panel_line(&u.panel_line()), Ok(u.clone()));
        }
        assert!(Update::from_panel_line("vmwatch.bogus a=b").is_err());
        assert!(Update::from_panel_line("vmwatch.node node=1").is_err());
        assert!(Update::from_panel_line("pending").is_err());
        assert!(Update::from_panel_line(
            "vmwatch.domain node=1 uuid=00000000-0000-0000-0000-000000000001 name=x state=flying reason=- old=- since=1"
        )
        .is_err());
        assert!(Update::from_panel_line("vmwatch.node node=1 status=up since=+5").is_err());
    }

    #[test]
    fn log_lines_name_the_domain_then_the_change() {
        let domain = Update::Domain {
            node: "1".into(),
            uuid: U.into(),
            name: "x".into(),
            state: PanelState::Is(State::Paused),
            reason: "user".into(),
            old: Some(State::Running),
            since_ms: 9,
        };
        let reboot = Update::Reboot {
            node: "1".into(),
            uuid: U.into(),
            name: "x".into(),
            time_ms: 3,
            id: None,
        };
        let idle = Update::Idle {
            node: "1".into(),
            uuid: U.into(),
            name: "x".into(),
            idle: true,
            tx_pkts: 0,
            wr_reqs: 7,
        };
        let head = format!("node 1: domain x ({U})");
        assert_eq!(
            domain.log_line().to_string(),
            format!("{head}: running -> paused (reason: user)")
        );
        assert_eq!(reboot.log_line().to_string(), format!("{head} rebooted"));
        assert_eq!(
            idle.log_line().to_string(),
            format!("{head} looks idle: 0 packets sent, 7 disk writes in the last interval")
        );
    }

    #[test]
    fn keys_separate_kinds_nodes_and_domains() {
        let d = |node: &str, uuid: &str| Update::Domain {
            node: node.into(),
            uuid: uuid.into(),
            name: "n".into(),
            state: PanelState::Is(State::Running),
            reason: "-".into(),
            old: None,
            since_ms: 0,
        };
        assert_eq!(d("1", "a").subject(), d("1", "a").subject());
        assert_ne!(d("1", "a").subject(), d("2", "a").subject());
        assert_ne!(d("1", "a").subject(), d("1", "b").subject());
        let r = Update::Reboot {
            node: "1".into(),
            uuid: "a".into(),
            name: "n".into(),
            time_ms: 0,
            id: None,
        };
        assert_ne!(d("1", "a").subject(), r.subject());
    }
}
