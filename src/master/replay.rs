//! Replay and staleness checks on authenticated message headers.
//!
//! Every node process picks a random instance id and numbers its messages
//! from 1. A message is accepted only if its timestamp is within
//! `max_clock_skew` of the master's clock and its sequence number is above
//! the last one accepted from that (node, instance). Instances not heard from
//! for twice the skew are forgotten: any message of theirs is stale by then,
//! so forgetting them cannot let a replay through.

use std::collections::HashMap;
use std::fmt;

use crate::protocol::Header;

/// Instances remembered per node; a node restarting more often than this
/// within the skew window loses protection for its oldest instances only.
const MAX_INSTANCES: usize = 16;

/// Why a header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Timestamp too far from our clock (ms difference, signed).
    Stale { skew_ms: i64 },
    /// Sequence number not above the last accepted one.
    Replay { seq: u64, last: u64 },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Stale { skew_ms } => write!(
                f,
                "stale message: its timestamp is {:.1} s {} the master's clock (check NTP on both hosts, or raise max_clock_skew)",
                skew_ms.unsigned_abs() as f64 / 1000.0,
                if *skew_ms < 0 { "behind" } else { "ahead of" }
            ),
            Refusal::Replay { seq, last } => {
                write!(f, "replayed message: sequence {seq} already seen (last accepted {last})")
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    instance: u64,
    last_seq: u64,
    last_ts: u64,
}

/// The replay memory of one node instance, as the state file keeps it
/// (`seen` lines).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SeenInstance {
    pub node: String,
    pub instance: u64,
    /// The last accepted sequence number.
    pub seq: u64,
    pub ts_ms: u64,
}

/// Per-node memory of accepted (instance, sequence) pairs.
#[derive(Debug, Default)]
pub struct ReplayGuard {
    skew_ms: u64,
    nodes: HashMap<String, Vec<Seen>>,
}

/// Result of an accepted header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Next message of an instance we know.
    Known,
    /// First message of a new instance: the node (re)started.
    NewInstance,
}

impl ReplayGuard {
    pub fn new(max_clock_skew_s: u64) -> ReplayGuard {
        ReplayGuard {
            skew_ms: max_clock_skew_s * 1000,
            nodes: HashMap::new(),
        }
    }

    /// Checks a header and, if accepted, remembers it.
    pub fn check(&mut self, h: &Header, now_ms: u64) -> Result<Accepted, Refusal> {
        let skew = h.ts_ms as i64 - now_ms as i64;
        if skew.unsigned_abs() > self.skew_ms {
            return Err(Refusal::Stale { skew_ms: skew });
        }
        let horizon = now_ms.saturating_sub(2 * self.skew_ms);
        if !self.nodes.contains_key(&h.node) {
            self.nodes.insert(h.node.clone(), Vec::new());
        }
        let seen = self.nodes.get_mut(&h.node).expect("just made sure");
        seen.retain(|s| s.last_ts >= horizon);
        if let Some(s) = seen.iter_mut().find(|s| s.instance == h.instance) {
            if h.seq <= s.last_seq {
                return Err(Refusal::Replay {
                    seq: h.seq,
                    last: s.last_seq,
                });
            }
            s.last_seq = h.seq;
            s.last_ts = s.last_ts.max(h.ts_ms);
            return Ok(Accepted::Known);
        }
        if seen.len() >= MAX_INSTANCES {
            seen.sort_by_key(|s| s.last_ts);
            seen.remove(0);
        }
        seen.push(Seen {
            instance: h.instance,
            last_seq: h.seq,
            last_ts: h.ts_ms,
        });
        Ok(Accepted::NewInstance)
    }

    /// What the state file keeps, so a restarted master keeps refusing
    /// replays of messages it accepted before.
    pub fn export(&self) -> Vec<SeenInstance> {
        let mut out: Vec<_> = self
            .nodes
            .iter()
            .flat_map(|(n, v)| {
                v.iter().map(move |s| SeenInstance {
                    node: n.clone(),
                    instance: s.instance,
                    seq: s.last_seq,
                    ts_ms: s.last_ts,
                })
            })
            .collect();
        out.sort();
        out
    }

    /// Restores what [`export`](Self::export) gave (from the state file).
    pub fn import(&mut self, s: &SeenInstance) {
        self.nodes.entry(s.node.clone()).or_default().push(Seen {
            instance: s.instance,
            last_seq: s.seq,
            last_ts: s.ts_ms,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(node: &str, instance: u64, seq: u64, ts_ms: u64) -> Header {
        Header {
            node: node.into(),
            instance,
            seq,
            ts_ms,
            host: None,
        }
    }

    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn sequence_must_grow_per_instance() {
        let mut g = ReplayGuard::new(300);
        assert_eq!(g.check(&h("1", 7, 1, NOW), NOW), Ok(Accepted::NewInstance));
        assert_eq!(g.check(&h("1", 7, 2, NOW), NOW), Ok(Accepted::Known));
        assert_eq!(
            g.check(&h("1", 7, 2, NOW), NOW),
            Err(Refusal::Replay { seq: 2, last: 2 })
        );
        assert_eq!(
            g.check(&h("1", 7, 1, NOW), NOW),
            Err(Refusal::Replay { seq: 1, last: 2 })
        );
        // Gaps are fine (a send that failed used a number).
        assert_eq!(g.check(&h("1", 7, 10, NOW), NOW), Ok(Accepted::Known));
        // Another node, and a restarted node, have their own sequences.
        assert_eq!(g.check(&h("2", 7, 1, NOW), NOW), Ok(Accepted::NewInstance));
        assert_eq!(g.check(&h("1", 8, 1, NOW), NOW), Ok(Accepted::NewInstance));
        // The old instance's messages are still refused after the restart.
        assert!(g.check(&h("1", 7, 3, NOW), NOW).is_err());
    }

    #[test]
    fn timestamps_outside_the_skew_are_stale() {
        let mut g = ReplayGuard::new(300);
        assert_eq!(
            g.check(&h("1", 7, 1, NOW - 301_000), NOW),
            Err(Refusal::Stale { skew_ms: -301_000 })
        );
        assert!(g.check(&h("1", 7, 1, NOW + 301_000), NOW).is_err());
        assert!(g.check(&h("1", 7, 1, NOW - 299_000), NOW).is_ok());
    }

    #[test]
    fn exported_memory_survives_a_restart() {
        let mut g = ReplayGuard::new(300);
        g.check(&h("1", 7, 5, NOW), NOW).unwrap();
        let mut g2 = ReplayGuard::new(300);
        for seen in g.export() {
            g2.import(&seen);
        }
        assert!(g2.check(&h("1", 7, 5, NOW), NOW + 1000).is_err());
        assert!(g2.check(&h("1", 7, 6, NOW), NOW + 1000).is_ok());
    }
}
