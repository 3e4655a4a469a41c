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
use super::records::DomainRecord;
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
    use crate::master::view::records::RebootCount;

    fn rec(state: State, reason: &str, since_ms: u64) -> DomainRecord {
        DomainRecord {
            name: "vm".into(),
            state,
            reason: reason.into(),
            since_ms,
            reboots: RebootCount::default(),
            rebootid: None,
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
