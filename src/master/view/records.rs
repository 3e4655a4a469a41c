//! The table's records: what the master holds of one node and of one
//! domain on it.

use std::collections::BTreeMap;

use crate::protocol::DomainState;
use crate::vocab::State;

/// One domain on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRecord {
    pub name: String,
    pub state: State,
    pub reason: String,
    /// When it entered this state (ms since the epoch).
    pub since_ms: u64,
    /// The reboots of this domain the master has turned into updates.
    pub reboots: RebootCount,
    /// The id of the domain's last reboot the master knows of, from a node
    /// that names reboots (`None`: no record; see reboots.rs).
    pub rebootid: Option<u64>,
}

/// A node instance's count of a domain's reboots (docs/protocol.md,
/// "Reboots"): the node counts every reboot it sees, even one it could not
/// queue, and says the count in reboot events and snapshots; a count higher
/// than the one recorded here is a reboot the panel has not been told of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RebootCount {
    /// The node instance that counted (0: none yet).
    pub instance: u64,
    pub count: u64,
}

/// A snapshot being reassembled from its parts (snapshot.rs).
#[derive(Debug, Clone)]
pub(super) struct Assembly {
    pub(super) instance: u64,
    pub(super) id: u64,
    pub(super) next: u32,
    pub(super) domains: Vec<DomainState>,
}

/// One node.
#[derive(Debug, Clone, Default)]
pub struct NodeRecord {
    pub domains: BTreeMap<String, DomainRecord>,
    /// When its last accepted message arrived (wall clock, for people).
    pub last_seen_ms: u64,
    /// The same on the monotonic clock: what `node_timeout` is judged on.
    pub heard_mono_ms: u64,
    pub up: bool,
    /// The node instance last heard (0: none yet this run) and when it was
    /// first heard (wall clock): a `--forget-node` request older than
    /// that is about a node that has restarted since (forget.rs).
    pub instance: u64,
    pub instance_ms: u64,
    pub(super) assembly: Option<Assembly>,
}
