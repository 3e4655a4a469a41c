//! One domain's state set or removed, and every index that follows it
//! (duplicates, migrations, identity, idle warnings): the only two ways a
//! domain record changes after a restore.

use super::records::{DomainRecord, RebootCount};
use super::table::StateTable;
use crate::master::panel::update::{PanelState, Update};
use crate::protocol::DomainId;
use crate::vocab::State;

impl StateTable {
    /// Sets a domain's state; an update only if state or name changed (an
    /// unchanged domain costs a lookup: nothing is copied or formatted).
    pub(super) fn set(
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

    pub(super) fn remove(
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
}
