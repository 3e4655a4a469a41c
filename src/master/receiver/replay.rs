//! Replay and staleness checks on authenticated message headers.
//!
//! Every node process picks a random instance id and numbers its messages
//! from 1. A message of an instance the master remembers is accepted if its
//! sequence number is above the last one accepted from that (node,
//! instance), whatever its timestamp: the sequence number is what refuses
//! replays, and a clock stepped on either side must not silence a node. The
//! timestamp only bounds how long instances must be remembered: the first
//! message of an instance not remembered is accepted only if its timestamp
//! is within `max_clock_skew` of the master's clock (a replay of a forgotten
//! instance cannot be told from a new one otherwise). An instance is
//! forgotten once it has not been heard for twice the skew on the monotonic
//! clock *and* its last timestamp is that far behind the wall clock: by then
//! any message of theirs is stale, so forgetting cannot let a replay through
//! (docs/protocol.md, "Freshness and replay rules").

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
    /// When it was last heard, on the monotonic clock (ms).
    heard_mono: u64,
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

    /// Checks a header and, if accepted, remembers it. `now_ms` is the
    /// wall clock, `mono_ms` the monotonic one.
    pub fn check(&mut self, h: &Header, now_ms: u64, mono_ms: u64) -> Result<Accepted, Refusal> {
        let window = 2 * self.skew_ms;
        let horizon = now_ms.saturating_sub(window);
        // No allocation for a node already known (every message but its
        // first).
        if !self.nodes.contains_key(&h.node) {
            self.nodes.insert(h.node.clone(), Vec::new());
        }
        let seen = self.nodes.get_mut(&h.node).expect("just made sure");
        // Forgotten only when both clocks say so: a wall clock stepped back
        // must not make the master forget what it heard a minute ago, nor
        // one stepped forward what it heard a second ago.
        seen.retain(|s| mono_ms.saturating_sub(s.heard_mono) <= window || s.last_ts >= horizon);
        if let Some(s) = seen.iter_mut().find(|s| s.instance == h.instance) {
            if h.seq <= s.last_seq {
                return Err(Refusal::Replay {
                    seq: h.seq,
                    last: s.last_seq,
                });
            }
            s.last_seq = h.seq;
            s.last_ts = s.last_ts.max(h.ts_ms);
            s.heard_mono = mono_ms;
            return Ok(Accepted::Known);
        }
        let skew = h.ts_ms as i64 - now_ms as i64;
        if skew.unsigned_abs() > self.skew_ms {
            return Err(Refusal::Stale { skew_ms: skew });
        }
        if seen.len() >= MAX_INSTANCES {
            seen.sort_by_key(|s| s.heard_mono);
            seen.remove(0);
        }
        seen.push(Seen {
            instance: h.instance,
            last_seq: h.seq,
            last_ts: h.ts_ms,
            heard_mono: mono_ms,
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

    /// Restores what [`export`](Self::export) gave (from the state file),
    /// as heard at `mono_ms`: a restarted master remembers each instance for
    /// a full window from its start.
    pub fn import(&mut self, s: &SeenInstance, mono_ms: u64) {
        self.nodes.entry(s.node.clone()).or_default().push(Seen {
            instance: s.instance,
            last_seq: s.seq,
            last_ts: s.ts_ms,
            heard_mono: mono_ms,
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
        assert_eq!(
            g.check(&h("1", 7, 1, NOW), NOW, 0),
            Ok(Accepted::NewInstance)
        );
        assert_eq!(g.check(&h("1", 7, 2, NOW), NOW, 0), Ok(Accepted::Known));
        assert_eq!(
            g.check(&h("1", 7, 2, NOW), NOW, 0),
            Err(Refusal::Replay { seq: 2, last: 2 })
        );
        assert_eq!(
            g.check(&h("1", 7, 1, NOW), NOW, 0),
            Err(Refusal::Replay { seq: 1, last: 2 })
        );
        // Gaps are fine (a send that failed used a number).
        assert_eq!(g.check(&h("1", 7, 10, NOW), NOW, 0), Ok(Accepted::Known));
        // Another node, and a restarted node, have their own sequences.
        assert_eq!(
            g.check(&h("2", 7, 1, NOW), NOW, 0),
            Ok(Accepted::NewInstance)
        );
        assert_eq!(
            g.check(&h("1", 8, 1, NOW), NOW, 0),
            Ok(Accepted::NewInstance)
        );
        // The old instance's messages are still refused after the restart.
        assert!(g.check(&h("1", 7, 3, NOW), NOW, 0).is_err());
    }

    #[test]
    fn timestamps_outside_the_skew_are_stale() {
        let mut g = ReplayGuard::new(300);
        assert_eq!(
            g.check(&h("1", 7, 1, NOW - 301_000), NOW, 0),
            Err(Refusal::Stale { skew_ms: -301_000 })
        );
        assert!(g.check(&h("1", 7, 1, NOW + 301_000), NOW, 0).is_err());
        assert!(g.check(&h("1", 7, 1, NOW - 299_000), NOW, 0).is_ok());
    }

    #[test]
    fn exported_memory_survives_a_restart() {
        let mut g = ReplayGuard::new(300);
        g.check(&h("1", 7, 5, NOW), NOW, 0).unwrap();
        let mut g2 = ReplayGuard::new(300);
        for seen in g.export() {
            g2.import(&seen, 0);
        }
        assert!(g2.check(&h("1", 7, 5, NOW), NOW + 1000, 0).is_err());
        assert!(g2.check(&h("1", 7, 6, NOW), NOW + 1000, 0).is_ok());
    }

    const SKEW: u64 = 300_000;

    /// Issue 16: a master clock stepped back 2 h refused every message as
    /// stale, and its liveness said nothing.
    #[test]
    fn a_known_instance_is_accepted_whatever_either_clock_says() {
        let mut g = ReplayGuard::new(300);
        assert_eq!(
            g.check(&h("1", 7, 1, NOW), NOW, 0),
            Ok(Accepted::NewInstance)
        );
        // The master's clock steps back 2 h, then forward 1 h from the truth.
        let back = NOW - 7_200_000;
        assert_eq!(
            g.check(&h("1", 7, 2, NOW + 1000), back + 1000, 1000),
            Ok(Accepted::Known)
        );
        let ahead = NOW + 3_600_000;
        assert_eq!(
            g.check(&h("1", 7, 3, NOW + 2000), ahead + 2000, 2000),
            Ok(Accepted::Known)
        );
        // The node's own clock steps too: still its instance, still in order.
        assert_eq!(
            g.check(&h("1", 7, 4, NOW - 3_600_000), NOW + 3000, 3000),
            Ok(Accepted::Known)
        );
        // Replays stay refused whatever the timestamps.
        assert_eq!(
            g.check(&h("1", 7, 4, NOW + 4000), NOW + 4000, 4000),
            Err(Refusal::Replay { seq: 4, last: 4 })
        );
        // A new instance with a far timestamp cannot be told from a replay
        // of a forgotten one: stale.
        assert_eq!(
            g.check(&h("1", 8, 1, NOW + 3_600_000), NOW + 5000, 5000),
            Err(Refusal::Stale { skew_ms: 3_595_000 })
        );
    }

    #[test]
    fn instances_are_forgotten_only_when_unheard_on_both_clocks() {
        let mut g = ReplayGuard::new(300);
        g.check(&h("1", 7, 5, NOW), NOW, 0).unwrap();
        // The wall clock jumps 2 h forward a second later: the instance was
        // heard a second ago, it is remembered and its replay refused.
        let later = NOW + 7_200_000;
        assert!(matches!(
            g.check(&h("1", 7, 5, later), later, 1000),
            Err(Refusal::Replay { .. })
        ));
        // The wall clock steps back 2 h: an hour of monotonic silence, yet
        // its timestamps are still recent on the wall clock: remembered.
        let mut g = ReplayGuard::new(300);
        g.check(&h("1", 7, 5, NOW), NOW, 0).unwrap();
        assert!(matches!(
            g.check(&h("1", 7, 5, NOW), NOW - 7_200_000 + 3_600_000, 3_600_000),
            Err(Refusal::Replay { .. })
        ));
        // Unheard for longer than the window on both clocks: forgotten, and
        // its old messages are stale anyway.
        let mut g = ReplayGuard::new(300);
        g.check(&h("1", 7, 5, NOW), NOW, 0).unwrap();
        let t = NOW + 2 * SKEW + 1;
        assert!(matches!(
            g.check(&h("1", 7, 5, NOW), t, 2 * SKEW + 1),
            Err(Refusal::Stale { .. })
        ));
        assert!(g.export().is_empty(), "{:?}", g.export());
    }
}
