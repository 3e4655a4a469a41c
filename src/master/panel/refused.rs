//! Updates the panel refused, set aside so that they never hold the others
//! back (docs/panel-api.md, "Refused lines").
//!
//! A panel command may say `refused K TEXT` for a line it could not take (a
//! VM the panel does not know, defined by hand on a node): the update leaves
//! the queue and waits here, to be tried again on its own slow schedule,
//! 60 s after the first refusal, then twice as long after each new one, up
//! to 15 minutes. A newer update with the same key replaces it (it goes to
//! the queue like any other); the state file keeps it (`aside` lines), so a
//! restart keeps it too. The set is bounded like the queue: one entry per
//! key at most.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::update::{Subject, Update};

/// The first wait after a refusal.
pub const FIRST_RETRY: Duration = Duration::from_secs(60);
/// The longest wait between two tries of a refused update.
pub const MAX_RETRY: Duration = Duration::from_secs(15 * 60);

/// The wait after the `tries`-th refusal (1-based): 60 s doubling to 15 min.
pub fn delay(tries: u32) -> Duration {
    let doubled = FIRST_RETRY.saturating_mul(1u32 << tries.saturating_sub(1).min(10));
    doubled.min(MAX_RETRY)
}

/// One refused update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub update: Update,
    /// How many times the panel refused it.
    pub tries: u32,
    /// What the panel said the last time (as it said it, for the log and
    /// `--status`; escaped where it is shown).
    pub why: String,
}

/// The refused updates: those waiting for their next try, and those being
/// tried again (back in the queue, remembered here so that a new refusal
/// waits longer).
#[derive(Debug, Default)]
pub struct Aside {
    waiting: HashMap<Subject, (Refused, Instant)>,
    retrying: HashMap<Subject, Refused>,
}

impl Aside {
    /// Sets `update` aside after a refusal saying `why`; returns how long it
    /// waits before its next try and how many times it was refused.
    pub fn refuse(&mut self, update: Update, why: &str, now: Instant) -> (Duration, u32) {
        let key = update.subject();
        let tries = self.retrying.remove(&key).map_or(0, |r| r.tries) + 1;
        let wait = delay(tries);
        self.waiting.insert(
            key,
            (
                Refused {
                    update,
                    tries,
                    why: why.to_string(),
                },
                now + wait,
            ),
        );
        (wait, tries)
    }

    /// Puts back an entry read from the state file: due at once (tried once
    /// after a restart), its count of refusals kept.
    pub fn restore(&mut self, r: Refused, now: Instant) {
        self.waiting.insert(r.update.subject(), (r, now));
    }

    /// A newer update with this key exists: the refused one is forgotten.
    pub fn replaced(&mut self, key: &Subject) {
        self.waiting.remove(key);
        self.retrying.remove(key);
    }

    /// The panel took the update with this key: it is no longer refused.
    pub fn taken(&mut self, key: &Subject) {
        self.retrying.remove(key);
    }

    /// Whether the update with this key is a refused one being tried again.
    pub fn is_retry(&self, key: &Subject) -> bool {
        self.retrying.contains_key(key)
    }

    /// Takes the entries due at `now`, to be queued again; they are
    /// remembered as retries.
    pub fn due(&mut self, now: Instant) -> Vec<Update> {
        if !self.waiting.values().any(|(_, at)| *at <= now) {
            return Vec::new();
        }
        let keys: Vec<Subject> = self
            .waiting
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            let (r, _) = self.waiting.remove(&k).expect("listed");
            out.push(r.update.clone());
            self.retrying.insert(k, r);
        }
        out
    }

    /// When the first waiting entry is due, if any waits.
    pub fn next_due(&self) -> Option<Instant> {
        self.waiting.values().map(|(_, at)| *at).min()
    }

    /// Every refused update (waiting or being tried again), for the state
    /// file and `--status`, in a stable order.
    pub fn all(&self) -> Vec<Refused> {
        let mut all: Vec<Refused> = self
            .waiting
            .values()
            .map(|(r, _)| r.clone())
            .chain(self.retrying.values().cloned())
            .collect();
        all.sort_by_key(|r| r.update.subject());
        all
    }

    /// How many updates are set aside (waiting or being tried again).
    pub fn len(&self) -> usize {
        self.waiting.len() + self.retrying.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: &str) -> Update {
        Update::Node {
            node: n.into(),
            up: true,
            since_ms: 1,
        }
    }

    #[test]
    fn the_schedule_is_60_s_doubling_to_15_min() {
        let secs: Vec<u64> = (1..=7).map(|t| delay(t).as_secs()).collect();
        assert_eq!(secs, [60, 120, 240, 480, 900, 900, 900]);
        assert_eq!(delay(u32::MAX), MAX_RETRY);
    }

    #[test]
    fn a_refused_update_waits_is_retried_and_waits_longer_after_a_new_refusal() {
        let mut a = Aside::default();
        let t0 = Instant::now();
        assert_eq!(a.refuse(node("1"), "no such vm", t0), (FIRST_RETRY, 1));
        assert!(a.due(t0 + Duration::from_secs(59)).is_empty());
        assert_eq!(a.due(t0 + FIRST_RETRY), vec![node("1")]);
        assert!(a.is_retry(&node("1").subject()));
        assert_eq!(a.len(), 1, "still counted while tried again");
        let t1 = t0 + FIRST_RETRY;
        assert_eq!(a.refuse(node("1"), "still no vm", t1).1, 2);
        assert!(a.due(t1 + FIRST_RETRY).is_empty(), "now 120 s");
        assert_eq!(a.all()[0].why, "still no vm");
        a.replaced(&node("1").subject());
        assert!(a.is_empty(), "a newer update replaces it");
        a.refuse(node("2"), "x", t1);
        a.due(t1 + MAX_RETRY);
        a.taken(&node("2").subject());
        assert!(a.is_empty(), "taken at last");
    }
}
