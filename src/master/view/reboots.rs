//! Reboot ids at the master: which reboots are news (docs/protocol.md,
//! "Reboots").
//!
//! A node of this version names each reboot with an id that grows per
//! domain and survives the node's restarts and kills, and says the id of a
//! domain's last reboot in every event and snapshot record. The master keeps,
//! per domain, the last id it knows (its *record*, kept in the state file):
//!
//! - a `reboot` event with an id above the record is delivered; one at or
//!   below it is a repeat and dropped; without a record it is delivered
//!   (a live event is never held back);
//! - any other record (a lifecycle event, a snapshot) with an id above the
//!   record means reboots were lost on the way (a full queue, a killed node
//!   or master): one `vmwatch.reboot` with that id is delivered for them;
//! - an id the master has **no record** of is a *baseline*: recorded, and
//!   nothing delivered. A master without its state file, or a domain it has
//!   never heard of, cannot tell a missed reboot from an old one, and
//!   telling the panel of one twice is as wrong as losing one. Except that
//!   ids are at least the reboot's time in seconds: an id above the second
//!   this master started names a reboot no earlier master can have
//!   delivered, so it is delivered (a node killed with it unsent while the
//!   master had just restarted without its file);
//! - an id below the record (the node lost its file and its clock went
//!   back) replaces it, so that the node's next reboots are delivered.
//!
//! Nodes of earlier versions send no ids; their instance-scoped counts
//! (`reboots=`) are judged in reboot_counts.rs as before, except that a count the
//! master has no record of is a baseline there too.

use crate::master::panel::update::Update;

/// What the master does with a reboot id it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A reboot to deliver, with this id.
    Deliver,
    /// A reboot the master already has: dropped.
    Repeat,
    /// Nothing to deliver (a baseline, the same id, or a lower one).
    Nothing,
}

/// Counts of how reboot ids were judged since the master started (state
/// file counters `reboots.*`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RebootStats {
    /// Reboot events dropped as repeats of a reboot already delivered.
    pub repeats: u64,
    /// Reboots delivered from a snapshot or lifecycle event that showed a
    /// higher id than the record (lost on the way).
    pub missed: u64,
    /// Ids taken as a baseline (no record): nothing delivered.
    pub baselines: u64,
}

/// Judges the id of a `reboot` event against the domain's record and
/// updates the record.
pub fn reboot_event(record: &mut Option<u64>, id: u64, stats: &mut RebootStats) -> Verdict {
    match *record {
        Some(r) if id <= r => {
            stats.repeats += 1;
            Verdict::Repeat
        }
        _ => {
            *record = Some(id);
            Verdict::Deliver
        }
    }
}

/// Judges the id a lifecycle event or snapshot record says the domain's
/// last reboot had, and updates the record. `started_s`: the second this
/// master started, if ids above it are to be taken as reboots it missed
/// even without a record.
pub fn last_reboot(
    record: &mut Option<u64>,
    id: u64,
    stats: &mut RebootStats,
    started_s: Option<u64>,
) -> Verdict {
    let before = record.replace(id);
    match before {
        None if started_s.is_some_and(|s| id > s) => {
            stats.missed += 1;
            Verdict::Deliver
        }
        None => {
            stats.baselines += 1;
            Verdict::Nothing
        }
        Some(r) if id > r => {
            stats.missed += 1;
            Verdict::Deliver
        }
        Some(r) => {
            if id < r {
                log::warn!(
                    "a node says reboot id {id} where the master had {r}: its reboot file was lost and its clock is behind; taking {id}"
                );
            }
            Verdict::Nothing
        }
    }
}

/// The update for a reboot the master delivers.
pub fn update(node: &str, uuid: &str, name: &str, time_ms: u64, id: Option<u64>) -> Update {
    Update::Reboot {
        node: node.to_string(),
        uuid: uuid.to_string(),
        name: name.to_string(),
        time_ms,
        id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reboot_event_is_delivered_once_by_its_id() {
        let mut s = RebootStats::default();
        let mut r = None;
        assert_eq!(
            reboot_event(&mut r, 100, &mut s),
            Verdict::Deliver,
            "no record: a live event is delivered"
        );
        assert_eq!(reboot_event(&mut r, 100, &mut s), Verdict::Repeat);
        assert_eq!(reboot_event(&mut r, 99, &mut s), Verdict::Repeat);
        assert_eq!(reboot_event(&mut r, 101, &mut s), Verdict::Deliver);
        assert_eq!(r, Some(101));
        assert_eq!(s.repeats, 2);
    }

    #[test]
    fn a_higher_last_id_is_a_missed_reboot_and_no_record_is_a_baseline() {
        let mut s = RebootStats::default();
        let mut r = None;
        assert_eq!(
            last_reboot(&mut r, 40, &mut s, Some(40)),
            Verdict::Nothing,
            "baseline: nothing invented"
        );
        assert_eq!(r, Some(40));
        assert_eq!(last_reboot(&mut r, 40, &mut s, None), Verdict::Nothing);
        assert_eq!(last_reboot(&mut r, 42, &mut s, None), Verdict::Deliver);
        assert_eq!(
            last_reboot(&mut r, 0, &mut s, None),
            Verdict::Nothing,
            "a node that went back"
        );
        assert_eq!(r, Some(0));
        assert_eq!(
            reboot_event(&mut r, 1, &mut s),
            Verdict::Deliver,
            "and its next reboot is news"
        );
        assert_eq!((s.baselines, s.missed, s.repeats), (1, 1, 0));
        // A reboot after the master started (its id is at least its time
        // in seconds): no earlier master can have had it.
        let mut r = None;
        assert_eq!(last_reboot(&mut r, 41, &mut s, Some(40)), Verdict::Deliver);
    }
}
