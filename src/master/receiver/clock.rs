//! Whose clock is wrong: the master's own steps and every node's offset.
//!
//! Liveness and replay memory run on the monotonic clock, so a stepped clock
//! no longer silences anyone; this watch makes a wrong clock *visible*. On
//! every housekeeping tick the master compares how far its wall clock and its
//! monotonic clock moved ([`StepDetector`]): a difference is a step of its own
//! clock, logged at once. Every authenticated message (accepted, or refused
//! as stale) measures its node's offset, `ts − master's wall clock`. When the
//! master's clock steps, every stored offset shifts by the step at once, so
//! the picture is right before the next message arrives.
//!
//! The verdict ([`ClockWatch::verdict`]): the master's clock is off when it
//! stepped and the nodes do not agree with it now (their median offset is
//! more than [`AGREE_MS`] from zero), or when at least two nodes that are up
//! have offsets beyond `max_clock_skew` on the same side (the offsets of all
//! nodes shifting together point at the master). A node's clock is off when
//! its offset, corrected by the master's own error, is beyond
//! `max_clock_skew`: a single node's offset points at that node. Each clock
//! found off is logged (rate-limited), written to the state file as a
//! `clock` line (docs/state-file.md), shown by `--status` and raised by
//! check_vmwatch as CRITICAL; it clears once the clocks agree again.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::clock::{offset_text, StepDetector, STEP_MS};
use crate::log_limited;
use crate::ratelimit::RateLimit;

/// Nodes agree with a stepped master when their median offset is within
/// this of zero (the transit time of a message is included in the offset).
pub const AGREE_MS: i64 = 2_000;

/// Whose clock a [`ClockLine`] is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Who {
    Master,
    Node(String),
}

/// A clock found off: by how much (ms, positive: ahead of the truth as the
/// cluster tells it) and since when (ms since the epoch, master's clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockLine {
    pub who: Who,
    pub offset_ms: i64,
    pub since_ms: u64,
}

/// One node's last measured offset.
#[derive(Debug, Clone, Copy)]
struct Offset {
    offset_ms: i64,
    /// When it was measured, monotonic ms.
    mono_ms: u64,
}

/// The master's view of every clock.
#[derive(Debug)]
pub struct ClockWatch {
    skew_ms: i64,
    /// Offsets older than this (monotonic) are not used: the node is down.
    recent_ms: u64,
    steps: StepDetector,
    /// When the clocks were last looked at (monotonic ms).
    looked_mono: u64,
    /// The master's own steps since its clock last agreed with the nodes.
    stepped_ms: i64,
    offsets: BTreeMap<String, Offset>,
    /// Clocks currently reported off: since when, and the offset last
    /// logged (a clock that moves on is logged again).
    raised: BTreeMap<Who, (u64, i64)>,
    limit: RateLimit,
}

impl ClockWatch {
    pub fn new(max_clock_skew_s: u64, node_timeout_s: u64) -> ClockWatch {
        ClockWatch {
            skew_ms: (max_clock_skew_s * 1000) as i64,
            recent_ms: node_timeout_s * 1000,
            steps: StepDetector::new(),
            looked_mono: 0,
            stepped_ms: 0,
            offsets: BTreeMap::new(),
            raised: BTreeMap::new(),
            limit: RateLimit::new(5, Duration::from_secs(60)),
        }
    }

    /// The first look at both clocks, when the master starts: a step after
    /// it is the master's own, even before the first housekeeping tick.
    pub fn start(&mut self, now_ms: u64, mono_ms: u64) {
        let _ = self.steps.look(now_ms, mono_ms);
        self.looked_mono = mono_ms;
    }

    /// Records an authenticated message's timestamp from `node`.
    pub fn measured(&mut self, node: &str, ts_ms: u64, now_ms: u64, mono_ms: u64) {
        let offset = Offset {
            offset_ms: ts_ms as i64 - now_ms as i64,
            mono_ms,
        };
        match self.offsets.get_mut(node) {
            Some(o) => *o = offset,
            None => {
                self.offsets.insert(node.to_string(), offset);
            }
        }
    }

    /// Housekeeping: detects a step of the master's own clock, settles a
    /// step the nodes agree with, and logs clocks that went off or came
    /// right. Returns the clocks off now.
    pub fn tick(&mut self, now_ms: u64, mono_ms: u64) -> Vec<ClockLine> {
        let before = std::mem::replace(&mut self.looked_mono, mono_ms);
        if let Some(step) = self.steps.look(now_ms, mono_ms) {
            self.stepped_ms += step;
            // Offsets measured before the last look were measured against
            // the clock before the step: they shift by it. Those measured
            // since may be on either side of it: the next message tells.
            self.offsets.retain(|_, o| o.mono_ms <= before);
            for o in self.offsets.values_mut() {
                o.offset_ms -= step;
            }
            log::error!(
                "the master's clock stepped {} (its wall clock moved that much more than real time): \
                 node liveness is unaffected; check NTP on the master",
                step_text(step)
            );
        }
        let median = self.median(mono_ms);
        if self.stepped_ms.abs() > STEP_MS && median.is_some_and(|m| m.abs() <= AGREE_MS) {
            log::info!(
                "the master's clock agrees with the nodes again ({} since it last did)",
                step_text(self.stepped_ms)
            );
            self.stepped_ms = 0;
        }
        let now = self.verdict(mono_ms, now_ms);
        let off: BTreeMap<&Who, &ClockLine> = now.iter().map(|l| (&l.who, l)).collect();
        let cleared: Vec<Who> = self
            .raised
            .keys()
            .filter(|w| !off.contains_key(w))
            .cloned()
            .collect();
        for w in cleared {
            self.raised.remove(&w);
            log::info!("{} clock agrees with the master's again", whose(&w));
        }
        for l in &now {
            let moved = |(_, logged): &(u64, i64)| (l.offset_ms - logged).abs() > AGREE_MS;
            if self.raised.get(&l.who).is_none_or(moved) {
                let since = self.raised.get(&l.who).map_or(now_ms, |r| r.0);
                self.raised.insert(l.who.clone(), (since, l.offset_ms));
                log_limited!(
                    self.limit,
                    log::Level::Error,
                    "{} clock is {} (check NTP on {})",
                    whose(&l.who),
                    offset_text(l.offset_ms),
                    match &l.who {
                        Who::Master => "the master".to_string(),
                        Who::Node(n) => format!("node {n}"),
                    }
                );
            }
        }
        now.into_iter()
            .map(|mut l| {
                l.since_ms = self.raised.get(&l.who).map_or(now_ms, |r| r.0);
                l
            })
            .collect()
    }

    /// Offsets of nodes heard recently, in ms.
    fn recent(&self, mono_ms: u64) -> Vec<(&str, i64)> {
        self.offsets
            .iter()
            .filter(|(_, o)| mono_ms.saturating_sub(o.mono_ms) <= self.recent_ms)
            .map(|(n, o)| (n.as_str(), o.offset_ms))
            .collect()
    }

    fn median(&self, mono_ms: u64) -> Option<i64> {
        let mut v: Vec<i64> = self.recent(mono_ms).iter().map(|r| r.1).collect();
        v.sort_unstable();
        (!v.is_empty()).then(|| v[v.len() / 2])
    }

    /// The clocks that are off now; `since_ms` is `now_ms` here
    /// ([`tick`](Self::tick) fills in when each was first found off).
    pub fn verdict(&self, mono_ms: u64, now_ms: u64) -> Vec<ClockLine> {
        let recent = self.recent(mono_ms);
        let median = self.median(mono_ms);
        // How far the master's clock is off (+: ahead), if it is.
        let master = if self.stepped_ms.abs() > STEP_MS {
            match median {
                Some(m) if m.abs() <= AGREE_MS => None,
                Some(m) => Some(-m),
                None => Some(self.stepped_ms),
            }
        } else {
            let m = median.unwrap_or(0);
            let same_side = recent
                .iter()
                .filter(|(_, o)| o.abs() > self.skew_ms && o.signum() == m.signum())
                .count();
            (recent.len() >= 2 && m.abs() > self.skew_ms && 2 * same_side > recent.len())
                .then_some(-m)
        };
        let mut out = Vec::new();
        if let Some(e) = master {
            out.push(ClockLine {
                who: Who::Master,
                offset_ms: e,
                since_ms: now_ms,
            });
        }
        let e = master.unwrap_or(0);
        for (node, o) in recent {
            // The node's own error: its offset, less the master's.
            let own = o + e;
            if own.abs() > self.skew_ms {
                out.push(ClockLine {
                    who: Who::Node(node.to_string()),
                    offset_ms: own,
                    since_ms: now_ms,
                });
            }
        }
        out
    }
}

fn whose(w: &Who) -> String {
    match w {
        Who::Master => "the master's".to_string(),
        Who::Node(n) => format!("node {n}'s"),
    }
}

fn step_text(ms: i64) -> String {
    let t = offset_text(ms);
    let amount = t.rsplit_once(' ').map_or(t.as_str(), |(a, _)| a);
    format!("{} by {amount}", if ms < 0 { "back" } else { "forward" })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;
    const H: i64 = 3_600_000;

    fn who(lines: &[ClockLine]) -> Vec<(Who, i64)> {
        lines.iter().map(|l| (l.who.clone(), l.offset_ms)).collect()
    }

    fn node(n: &str) -> Who {
        Who::Node(n.into())
    }

    /// A master whose clock steps back 2 h is reported at the next tick,
    /// nodes are not blamed, and it clears when set right.
    #[test]
    fn a_master_step_is_the_masters_until_set_right() {
        let mut w = ClockWatch::new(300, 90);
        assert!(w.tick(NOW, 0).is_empty());
        w.measured("1", NOW + 500, NOW + 500, 500);
        w.measured("2", NOW + 600, NOW + 600, 600);
        assert!(w.tick(NOW + 1000, 1000).is_empty());
        // Back 2 h: one tick later the master is off, the nodes are not.
        let back = (NOW as i64 - 2 * H) as u64;
        let off = w.tick(back + 2000, 2000);
        assert_eq!(who(&off), vec![(Who::Master, -2 * H)]);
        // Messages keep coming, offsets +2 h: still the master.
        w.measured("1", NOW + 3000, back + 3000, 3000);
        assert_eq!(who(&w.tick(back + 3500, 3500)), vec![(Who::Master, -2 * H)]);
        // Set right at 3550; messages measured after that step but before
        // the tick that finds it are not shifted by it (they would read
        // 2 h behind and blame the master).
        w.measured("1", NOW + 3600, NOW + 3600, 3600);
        w.measured("2", NOW + 3600, NOW + 3600, 3600);
        assert!(w.tick(NOW + 3700, 3700).is_empty());
        w.measured("1", NOW + 3800, NOW + 3800, 3800);
        w.measured("2", NOW + 3800, NOW + 3800, 3800);
        assert!(w.tick(NOW + 3900, 3900).is_empty());
        // Back 2 h again: this time the tick comes first.
        w.tick(NOW + 4000 - 2 * H as u64, 4000);
        // Set right: cleared at once, before any node speaks.
        assert!(w.tick(NOW + 5000, 5000).is_empty());
    }

    /// A step forward within the skew (120 s) is reported too, and a node
    /// whose clock is off alone is that node's.
    #[test]
    fn a_small_master_step_and_a_single_node_are_told_apart() {
        let mut w = ClockWatch::new(300, 90);
        w.tick(NOW, 0);
        for n in ["1", "2", "3"] {
            w.measured(n, NOW, NOW, 0);
        }
        let off = w.tick(NOW + 1000 + 120_000, 1000);
        assert_eq!(who(&off), vec![(Who::Master, 120_000)]);
        // The nodes confirm it; node 3's clock goes 1 h ahead meanwhile.
        w.measured("1", NOW + 2000, NOW + 2000 + 120_000, 2000);
        w.measured("3", NOW + 2000 + H as u64, NOW + 2000 + 120_000, 2000);
        let off = w.tick(NOW + 2500 + 120_000, 2500);
        assert_eq!(who(&off), vec![(Who::Master, 120_000), (node("3"), H)]);
        // An NTP step puts the master right: node 3 stays off alone.
        let off = w.tick(NOW + 3000, 3000);
        assert_eq!(who(&off), vec![(node("3"), H)]);
        w.measured("3", NOW + 4000, NOW + 4000, 4000);
        assert!(w.tick(NOW + 4500, 4500).is_empty());
    }

    /// Without a step of its own, the master is blamed only when most
    /// nodes' offsets moved together; one node never blames it.
    #[test]
    fn offsets_shifting_together_point_at_the_master() {
        let mut w = ClockWatch::new(300, 90);
        w.tick(NOW, 0);
        w.measured("1", NOW + H as u64, NOW, 0);
        assert_eq!(who(&w.tick(NOW + 10, 10)), vec![(node("1"), H)]);
        w.measured("2", NOW + H as u64, NOW, 20);
        w.measured("3", NOW + H as u64, NOW, 20);
        assert_eq!(who(&w.tick(NOW + 30, 30)), vec![(Who::Master, -H)]);
        // A node down for longer than node_timeout no longer counts.
        assert!(w.tick(NOW + 100_000, 100_000).is_empty());
    }

    #[test]
    fn a_stepped_master_without_nodes_reports_its_step_until_undone() {
        let mut w = ClockWatch::new(300, 90);
        w.tick(NOW, 0);
        let off = w.tick(NOW + 1000 + H as u64, 1000);
        assert_eq!(who(&off), vec![(Who::Master, H)]);
        let since = off[0].since_ms;
        assert_eq!(w.tick(NOW + 2000 + H as u64, 2000)[0].since_ms, since);
        assert!(w.tick(NOW + 3000, 3000).is_empty());
    }
}
