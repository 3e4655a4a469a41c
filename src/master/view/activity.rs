//! The panel's "VM status check": running domains that show no activity.
//!
//! A node samples, per domain, the packets the guest sent and its disk write
//! requests over each stats interval. With `check_activity=yes`, a domain
//! that ran for the whole interval and has either count at zero gets an idle
//! warning; the warning is cleared when both counts are non-zero again or
//! the domain stops running.

use std::collections::BTreeMap;

use crate::master::panel::update::Update;
use crate::protocol::StatSample;

/// Last sample and warning per (node, uuid).
/// An idle warning the panel was told of, with the counts that raised it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleWarning {
    pub node: String,
    pub uuid: String,
    pub name: String,
    pub tx_pkts: u64,
    pub wr_reqs: u64,
}

#[derive(Debug, Default)]
pub struct Activity {
    idle: BTreeMap<(String, String), (String, u64, u64)>,
}

impl Activity {
    /// Applies one sample of a domain known to be `running` on `node`.
    pub fn sample(&mut self, node: &str, s: &StatSample, out: &mut Vec<Update>) {
        let key = (node.to_string(), s.domain.uuid.clone());
        if !s.whole {
            // Started, restarted or counters reset during the interval: the
            // deltas say nothing either way.
            return;
        }
        let idle = s.tx_pkts == 0 || s.wr_reqs == 0;
        let flagged = self.idle.contains_key(&key);
        if idle && !flagged {
            self.idle
                .insert(key, (s.domain.name.clone(), s.tx_pkts, s.wr_reqs));
        } else if !idle && flagged {
            self.idle.remove(&key);
        } else {
            return;
        }
        out.push(Update::Idle {
            node: node.to_string(),
            uuid: s.domain.uuid.clone(),
            name: s.domain.name.clone(),
            idle,
            tx_pkts: s.tx_pkts,
            wr_reqs: s.wr_reqs,
        });
    }

    /// The domain stopped running or is gone: clear its warning.
    pub fn not_running(&mut self, node: &str, uuid: &str, out: &mut Vec<Update>) {
        if self.idle.is_empty() {
            // The usual case (and always without check_activity): no key
            // to build for a lookup.
            return;
        }
        if let Some((name, _, _)) = self.idle.remove(&(node.to_string(), uuid.to_string())) {
            out.push(Update::Idle {
                node: node.to_string(),
                uuid: uuid.to_string(),
                name,
                idle: false,
                tx_pkts: 0,
                wr_reqs: 0,
            });
        }
    }

    /// Current warnings, for the state file.
    pub fn current(&self) -> Vec<IdleWarning> {
        self.idle
            .iter()
            .map(|((n, u), (name, tx, wr))| IdleWarning {
                node: n.clone(),
                uuid: u.clone(),
                name: name.clone(),
                tx_pkts: *tx,
                wr_reqs: *wr,
            })
            .collect()
    }

    /// Restores a warning from the state file.
    pub fn restore(&mut self, node: &str, uuid: &str, name: &str, tx: u64, wr: u64) {
        self.idle
            .insert((node.into(), uuid.into()), (name.into(), tx, wr));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::DomainId;

    fn s(whole: bool, tx: u64, wr: u64) -> StatSample {
        StatSample {
            domain: DomainId {
                uuid: "u".into(),
                name: "vm".into(),
            },
            whole,
            tx_pkts: tx,
            wr_reqs: wr,
        }
    }

    #[test]
    fn warns_once_when_either_count_is_zero_and_clears_when_both_move() {
        let mut a = Activity::default();
        let mut out = Vec::new();
        a.sample("1", &s(true, 10, 0), &mut out);
        assert!(matches!(
            &out[..],
            [Update::Idle {
                idle: true,
                wr_reqs: 0,
                ..
            }]
        ));
        out.clear();
        a.sample("1", &s(true, 0, 0), &mut out);
        assert!(out.is_empty(), "already warned");
        a.sample("1", &s(true, 5, 0), &mut out);
        assert!(out.is_empty(), "still idle on disk");
        a.sample("1", &s(true, 5, 3), &mut out);
        assert!(matches!(&out[..], [Update::Idle { idle: false, .. }]));
    }

    #[test]
    fn partial_intervals_never_warn_and_stopping_clears() {
        let mut a = Activity::default();
        let mut out = Vec::new();
        a.sample("1", &s(false, 0, 0), &mut out);
        assert!(out.is_empty());
        a.sample("1", &s(true, 0, 0), &mut out);
        out.clear();
        a.not_running("1", "u", &mut out);
        assert!(matches!(&out[..], [Update::Idle { idle: false, .. }]));
        assert!(a.current().is_empty());
    }
}
