//! Node identity: which libvirt host speaks under which node id.
//!
//! Nodes say their libvirt host UUID in every header (`host=`,
//! docs/protocol.md). The master keeps, per node id, the hosts it heard and
//! when, and per domain the host that last reported it. From that:
//! - two hosts under one node id, both heard within `node_timeout`, are a
//!   **clash** (a cloned node): logged (rate-limited) with both hosts and
//!   their addresses, written to the state file, shown by `--status` and
//!   check_vmwatch; and their lists never erase each other's domains, as a
//!   snapshot removes only domains its own host reported (or whose host has
//!   been silent for `node_timeout`, so a reinstalled host converges);
//! - a host that speaks under a new node id while its old id is down was
//!   **re-added**: the old id is retired (the table forgets it: apply.rs,
//!   liveness.rs, forget_node.rs).
//!
//! Nodes that send no `host=` (older ones) are handled as before.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::log_limited;
use crate::ratelimit::RateLimit;

/// One host heard under a node id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSeen {
    pub host: String,
    /// The master's clock at its last accepted message (0: not yet).
    pub last_ms: u64,
    /// The address it last connected from, as ZeroMQ said (`-`: unknown).
    pub peer: String,
}

/// Two hosts sending under one node id, for the state file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clash {
    pub node: String,
    pub hosts: Vec<HostSeen>,
}

#[derive(Debug)]
pub struct Identity {
    /// node id -> the hosts heard under it, most recent first.
    nodes: BTreeMap<String, Vec<HostSeen>>,
    /// (node, uuid) -> the host that last reported the domain.
    domains: HashMap<(String, String), String>,
    limit: RateLimit,
}

impl Default for Identity {
    fn default() -> Identity {
        Identity {
            nodes: BTreeMap::new(),
            domains: HashMap::new(),
            limit: RateLimit::new(5, Duration::from_secs(60)),
        }
    }
}

impl Identity {
    /// Whether `host` was heard under `node` before (the receiver looks up
    /// the peer's address only for a new one).
    pub fn knows(&self, node: &str, host: &str) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|h| h.iter().any(|s| s.host == host))
    }

    /// Notes the address a host connects from (before its message applies).
    pub fn introduce(&mut self, node: &str, host: &str, peer: String) {
        let hosts = self.nodes.entry(node.to_string()).or_default();
        match hosts.iter_mut().find(|s| s.host == host) {
            Some(s) => s.peer = peer,
            None => hosts.push(HostSeen {
                host: host.to_string(),
                last_ms: 0,
                peer,
            }),
        }
    }

    /// An accepted message from `host` under `node`; returns the node ids
    /// whose last host is this one (candidates for retirement: the host
    /// was re-added under `node`).
    pub fn heard(&mut self, node: &str, host: &str, now_ms: u64, timeout_ms: u64) -> Vec<String> {
        let hosts = self.nodes.entry(node.to_string()).or_default();
        let at = match hosts.iter().position(|s| s.host == host) {
            Some(at) => at,
            None => {
                hosts.push(HostSeen {
                    host: host.to_string(),
                    last_ms: 0,
                    peer: "-".into(),
                });
                hosts.len() - 1
            }
        };
        // New to this id, or back after another host spoke under it.
        let first = at != 0 || hosts[at].last_ms == 0;
        hosts[at].last_ms = now_ms;
        if at != 0 {
            // Most recent first: the node id's current host.
            let s = hosts.remove(at);
            hosts.insert(0, s);
        }
        // Only the current host and those heard within node_timeout
        // matter (a reinstalled host's old UUID goes).
        hosts.retain(|s| {
            s.host == host || s.last_ms == 0 || now_ms.saturating_sub(s.last_ms) <= timeout_ms
        });
        if let Some(other) = hosts[1..]
            .iter()
            .find(|o| o.last_ms > 0 && now_ms.saturating_sub(o.last_ms) <= timeout_ms)
        {
            let me = &hosts[0];
            log_limited!(
                self.limit,
                log::Level::Error,
                "node id {node} is used by two hosts at once: libvirt host {} (from {}) and libvirt host {} (from {}); each node needs its own node_id in vmwatch-node.conf (a cloned node?)",
                me.host,
                me.peer,
                other.host,
                other.peer
            );
        }
        if !first {
            return Vec::new();
        }
        self.nodes
            .iter()
            .filter(|(n, h)| n.as_str() != node && h.first().is_some_and(|s| s.host == host))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Whether `old`'s last host has spoken since under another node id.
    pub fn moved_on(&self, old: &str) -> Option<String> {
        let host = &self.nodes.get(old)?.first()?.host;
        let last = self.nodes[old][0].last_ms;
        self.nodes
            .iter()
            .find(|(n, h)| {
                n.as_str() != old && h.iter().any(|s| &s.host == host && s.last_ms > last)
            })
            .map(|(n, _)| n.clone())
    }

    /// Current clashes: node ids with two hosts heard within `timeout_ms`.
    pub fn clashes(&self, now_ms: u64, timeout_ms: u64) -> Vec<Clash> {
        self.nodes
            .iter()
            .filter_map(|(node, hosts)| {
                let recent: Vec<HostSeen> = hosts
                    .iter()
                    .filter(|s| s.last_ms > 0 && now_ms.saturating_sub(s.last_ms) <= timeout_ms)
                    .cloned()
                    .collect();
                (recent.len() >= 2).then(|| Clash {
                    node: node.clone(),
                    hosts: recent,
                })
            })
            .collect()
    }

    /// The hosts heard under each node id, for the state file.
    pub fn hosts(&self) -> impl Iterator<Item = (&String, &HostSeen)> {
        self.nodes
            .iter()
            .flat_map(|(n, h)| h.iter().map(move |s| (n, s)))
    }

    /// Restores a host from the state file (in the file's order: most
    /// recent first).
    pub fn restore(&mut self, node: &str, seen: HostSeen) {
        let hosts = self.nodes.entry(node.to_string()).or_default();
        if !hosts.iter().any(|s| s.host == seen.host) {
            hosts.push(seen);
            hosts.sort_by_key(|s| std::cmp::Reverse(s.last_ms));
        }
    }

    /// Records the host that reported a domain (events and snapshots),
    /// while more than one host speaks under the node id: one host alone
    /// owns every domain of its id, and the table stays empty.
    pub fn reported(&mut self, node: &str, uuid: &str, host: &str) {
        if self.nodes.get(node).is_none_or(|h| h.len() < 2) {
            return;
        }
        let key = (node.to_string(), uuid.to_string());
        match self.domains.get_mut(&key) {
            Some(h) if h == host => {}
            Some(h) => *h = host.to_string(),
            None => {
                self.domains.insert(key, host.to_string());
            }
        }
    }

    /// Forgets a domain's reporter (the domain left the node).
    pub fn domain_gone(&mut self, node: &str, uuid: &str) {
        if !self.domains.is_empty() {
            self.domains.remove(&(node.to_string(), uuid.to_string()));
        }
    }

    /// Whether a complete snapshot from `host` under `node` may remove a
    /// domain it does not list: it may unless another host reported the
    /// domain and that host was heard within `timeout_ms` (a clone's
    /// domains are its own), or, while the node id clashes, the reporter is
    /// unknown (a master restarted during a clash).
    pub fn may_remove(
        &self,
        node: &str,
        uuid: &str,
        host: Option<&str>,
        now_ms: u64,
        timeout_ms: u64,
    ) -> bool {
        let Some(host) = host else {
            return true;
        };
        let recent = |h: &str| {
            self.nodes.get(node).is_some_and(|hs| {
                hs.iter().any(|s| {
                    s.host == h && s.last_ms > 0 && now_ms.saturating_sub(s.last_ms) <= timeout_ms
                })
            })
        };
        match self.domains.get(&(node.to_string(), uuid.to_string())) {
            Some(h) => h == host || !recent(h),
            None => !self.nodes.get(node).is_some_and(|hs| {
                hs.iter()
                    .filter(|s| s.host != host && recent(&s.host))
                    .count()
                    > 0
            }),
        }
    }

    /// Forgets everything about a node id.
    pub fn forget_node(&mut self, node: &str) {
        self.nodes.remove(node);
        self.domains.retain(|(n, _), _| n != node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "00000000-0000-0000-0000-00000000000a";
    const B: &str = "00000000-0000-0000-0000-00000000000b";

    #[test]
    fn two_hosts_under_one_id_clash_until_one_is_silent() {
        let mut id = Identity::default();
        id.introduce("1", A, "tcp://10.0.0.1:4000".into());
        assert!(id.heard("1", A, 1_000, 90_000).is_empty());
        assert!(id.clashes(1_000, 90_000).is_empty());
        id.introduce("1", B, "tcp://10.0.0.2:4000".into());
        id.heard("1", B, 2_000, 90_000);
        let c = id.clashes(2_000, 90_000);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].node, "1");
        let hosts: Vec<&str> = c[0].hosts.iter().map(|s| s.host.as_str()).collect();
        assert_eq!(hosts, [B, A]);
        assert_eq!(c[0].hosts[1].peer, "tcp://10.0.0.1:4000");
        assert!(id.clashes(92_000, 90_000).is_empty(), "A silent: over");
    }

    #[test]
    fn a_clone_never_removes_the_other_hosts_domains() {
        let mut id = Identity::default();
        id.heard("1", A, 1_000, 90_000);
        id.heard("1", B, 1_000, 90_000);
        id.reported("1", "ua", A);
        id.reported("1", "ub", B);
        assert!(!id.may_remove("1", "ub", Some(A), 2_000, 90_000));
        assert!(id.may_remove("1", "ua", Some(A), 2_000, 90_000));
        assert!(
            !id.may_remove("1", "unknown", Some(A), 2_000, 90_000),
            "during a clash"
        );
        assert!(
            id.may_remove("1", "ub", None, 2_000, 90_000),
            "an old node: as before"
        );
        // B silent for node_timeout (a reinstalled host): A's list wins.
        id.heard("1", A, 100_000, 90_000);
        assert!(id.may_remove("1", "ub", Some(A), 100_000, 90_000));
    }

    #[test]
    fn a_host_under_a_new_id_names_its_old_id() {
        let mut id = Identity::default();
        id.heard("1", A, 1_000, 90_000);
        assert_eq!(id.heard("2", A, 5_000, 90_000), vec!["1".to_string()]);
        assert!(id.heard("2", A, 6_000, 90_000).is_empty(), "said once");
        assert_eq!(id.moved_on("1").as_deref(), Some("2"));
        assert_eq!(id.moved_on("2"), None);
        id.forget_node("1");
        assert_eq!(id.hosts().count(), 1);
    }
}
