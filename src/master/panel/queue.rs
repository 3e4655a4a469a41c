//! The queue of updates waiting for the panel: coalescing, in order per
//! subject ([`Subject`]), bounded by the number of subjects (domains,
//! nodes), not by the event rate.
//!
//! A newer update replaces a pending one with the same subject in place, so
//! the panel always gets the latest fact and never a stale one after a newer
//! one. A batch that failed is put back at the front, except for subjects
//! that got a newer update meanwhile: those keep the newer one.
//!
//! A batch handed to the panel stays here, "in flight", until the call ends:
//! [`pending`](PanelQueue::pending) (what the state file keeps) includes it,
//! so a master killed during a call still has every fact the panel may not
//! have taken.
//!
//! An update the panel refused (`refused K` from the command) is set aside
//! ([`Aside`], refused.rs) under the same lock, so that a newer update with
//! its subject replaces it as it would replace a queued one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::refused::{Aside, Refused};
use super::update::{Subject, Update};
use crate::service::Bell;

#[derive(Default)]
struct Pending {
    order: VecDeque<Subject>,
    items: HashMap<Subject, Update>,
    /// The batch of the call running now, in order (shared with the panel
    /// thread, so taking a batch copies nothing under the lock).
    inflight: Arc<Vec<Update>>,
    /// Updates the panel refused, waiting for their own next try.
    aside: Aside,
}

/// An update the panel refused in the call just settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    pub update: Update,
    pub why: String,
    /// Until its next try.
    pub wait: Duration,
    /// How many times the panel refused it so far.
    pub tries: u32,
}

/// Shared by the receiver (producer) and the panel thread (consumer).
#[derive(Default)]
pub struct PanelQueue {
    inner: Mutex<Pending>,
    ready: Condvar,
    /// Rung when the panel took updates: the receiver writes the state
    /// file again, so that it no longer lists them as pending.
    settled: Bell,
}

impl PanelQueue {
    pub fn new() -> PanelQueue {
        PanelQueue::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an update, replacing a pending one with the same subject.
    pub fn push(&self, u: Update) {
        self.push_all([u]);
    }

    /// Adds updates in order, each replacing a pending one with the same
    /// subject: one lock for them all, and a wake-up only for a panel thread
    /// that found the queue empty (it waits for nothing else).
    pub fn push_all(&self, updates: impl IntoIterator<Item = Update>) {
        let mut p = self.lock();
        let was_empty = p.order.is_empty();
        for u in updates {
            let key = u.subject();
            if !p.aside.is_empty() {
                p.aside.replaced(&key);
            }
            // A node's `forgotten` follows its domains' `undefined` lines
            // (docs/panel-api.md): it does not take the place of a
            // `down`/`up` still queued ahead of them, it goes last.
            let last = matches!(u, Update::NodeForgotten { .. });
            if p.items.insert(key.clone(), u).is_none() {
                p.order.push_back(key);
            } else if last {
                p.order.retain(|k| *k != key);
                p.order.push_back(key);
            }
        }
        let wake = was_empty && !p.order.is_empty();
        drop(p);
        if wake {
            self.ready.notify_one();
        }
    }

    /// Takes up to `max` updates, oldest first, waiting up to `wait` for the
    /// first one. They stay in flight until [`settle`](Self::settle).
    pub fn take(&self, max: usize, wait: Duration) -> Arc<Vec<Update>> {
        let mut p = self.lock();
        if p.order.is_empty() {
            p = self
                .ready
                .wait_timeout(p, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let n = max.min(p.order.len());
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let key = p.order.pop_front().expect("counted");
            out.push(p.items.remove(&key).expect("order and items agree"));
        }
        p.inflight = Arc::new(out);
        p.inflight.clone()
    }

    /// Sleeps until an update is queued, a refused one is due again, or
    /// `stopping()` is true (the stop wakes it through [`wake`](Self::wake)).
    pub fn wait(&self, stopping: &dyn Fn() -> bool) {
        let p = self.lock();
        let idle = |p: &mut Pending| p.order.is_empty() && !stopping();
        match p.aside.next_due() {
            None => drop(self.ready.wait_while(p, idle)),
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                drop(self.ready.wait_timeout_while(p, left, idle));
            }
        }
    }

    /// Wakes a panel thread in [`wait`](Self::wait), to look at its
    /// `stopping()` again.
    pub fn wake(&self) {
        // Under the lock: a waiter between its look and its sleep is not
        // missed.
        let _held = self.lock();
        self.ready.notify_all();
    }

    /// Ends the call of the batch in flight: its first `delivered` updates
    /// reached the panel; the rest go back in front, in order, except subjects
    /// updated since, which keep their newer update.
    pub fn settle(&self, delivered: usize) {
        self.settle_refused(delivered, &[], Instant::now());
    }

    /// As [`settle`](Self::settle), except that the updates at the 0-based
    /// positions in `refused` (with what the panel said), among the first
    /// `delivered`, were refused: they are set aside, unless a newer update
    /// with their subject came meanwhile. Returns what was set aside.
    pub fn settle_refused(
        &self,
        delivered: usize,
        refused: &[(usize, String)],
        now: Instant,
    ) -> Vec<SetAside> {
        let mut p = self.lock();
        let p = &mut *p;
        let batch = std::mem::take(&mut p.inflight);
        let dealt = delivered.min(batch.len());
        let mut out = Vec::new();
        if dealt > 0 {
            self.settled.ring();
        }
        for (i, u) in batch[..dealt].iter().enumerate() {
            let key = u.subject();
            match refused.iter().find(|(k, _)| *k == i) {
                Some((_, why)) if !p.items.contains_key(&key) => {
                    let (wait, tries) = p.aside.refuse(u.clone(), why, now);
                    out.push(SetAside {
                        update: u.clone(),
                        why: why.clone(),
                        wait,
                        tries,
                    });
                }
                Some(_) => {} // a newer update with its subject waits already
                None => p.aside.taken(&key),
            }
        }
        let rest = &batch[dealt..];
        for u in rest.iter().rev() {
            let key = u.subject();
            if !p.items.contains_key(&key) {
                p.items.insert(key.clone(), u.clone());
                p.order.push_front(key);
            }
        }
        out
    }

    /// The bell [`settle_refused`](Self::settle_refused) rings when the
    /// panel took updates.
    pub fn settled(&self) -> &Bell {
        &self.settled
    }

    /// Queues again the refused updates whose next try is due; true if
    /// there were any.
    pub fn release_due(&self, now: Instant) -> bool {
        let mut p = self.lock();
        if p.aside.is_empty() {
            return false;
        }
        let due = p.aside.due(now);
        for u in &due {
            let key = u.subject();
            if p.items.contains_key(&key) {
                // A newer update with its subject waits already: it wins.
                p.aside.replaced(&key);
                continue;
            }
            p.items.insert(key.clone(), u.clone());
            p.order.push_back(key);
        }
        !due.is_empty()
    }

    /// Whether `key`'s update is a refused one being tried again.
    pub fn is_retry(&self, key: &Subject) -> bool {
        self.lock().aside.is_retry(key)
    }

    /// Every refused update (for the state file and `--status`).
    pub fn aside(&self) -> Vec<Refused> {
        self.lock().aside.all()
    }

    /// Puts back a refused update read from the state file.
    pub fn restore_aside(&self, r: Refused) {
        self.lock().aside.restore(r, Instant::now());
    }

    /// A copy of what the panel has not taken, oldest first: the batch in
    /// flight, then the queue (for the state file; pushing it back in this
    /// order coalesces to the newest update per key).
    pub fn pending(&self) -> Vec<Update> {
        self.pending_with(&[])
    }

    /// [`pending`](Self::pending) as it will be once `more` is pushed
    /// ([`push_all`](Self::push_all)'s coalescing, the queue unchanged):
    /// the state file the receiver writes before it queues its news.
    pub fn pending_with(&self, more: &[Update]) -> Vec<Update> {
        let p = self.lock();
        let (mut items, mut order) = (p.items.clone(), p.order.clone());
        let mut fresh = HashSet::new();
        for u in more {
            let key = u.subject();
            fresh.insert(key.clone());
            let last = matches!(u, Update::NodeForgotten { .. });
            if items.insert(key.clone(), u.clone()).is_none() {
                order.push_back(key);
            } else if last {
                order.retain(|k| *k != key);
                order.push_back(key);
            }
        }
        let mut all = (*p.inflight).clone();
        all.extend(order.iter().map(|k| items[k].clone()));
        if !p.aside.is_empty() {
            // A refused update being tried again is kept as set aside
            // (unless a newer one replaces it).
            all.retain(|u| {
                let key = u.subject();
                fresh.contains(&key) || !p.aside.is_retry(&key)
            });
        }
        all
    }

    /// Updates waiting to be taken (not counting the batch in flight).
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dom(uuid: &str, state: &str) -> Update {
        Update::Domain {
            node: "1".into(),
            uuid: uuid.into(),
            name: uuid.into(),
            state: crate::master::panel::update::PanelState::parse(state).unwrap(),
            reason: "-".into(),
            old: None,
            since_ms: 0,
        }
    }

    fn state_of(u: &Update) -> String {
        match u {
            Update::Domain { state, .. } => state.to_string(),
            _ => String::new(),
        }
    }

    /// The state file written before the receiver queues its news says
    /// what the queue says once they are queued: the same coalescing, the
    /// batch in flight kept, and the queue itself untouched.
    #[test]
    fn pending_with_news_is_pending_once_they_are_pushed() {
        let q = PanelQueue::new();
        q.push_all([dom("a", "running"), dom("b", "running")]);
        let inflight = q.take(1, Duration::ZERO);
        assert_eq!(inflight.len(), 1);
        q.push_all([dom("c", "running")]);
        let news = [dom("a", "shutoff"), dom("c", "paused"), dom("d", "running")];
        let before = q.pending();
        let predicted = q.pending_with(&news);
        assert_eq!(q.pending(), before, "the queue is untouched");
        q.push_all(news);
        assert_eq!(predicted, q.pending());
        let states: Vec<String> = predicted.iter().map(state_of).collect();
        assert_eq!(
            states,
            ["running", "running", "paused", "shutoff", "running"]
        );
    }

    /// The panel thread's sleep ends for an update, for a stop, and for a
    /// refused update coming due; with none of them it goes on sleeping.
    #[test]
    fn the_panel_sleeps_until_an_update_a_stop_or_a_refused_one_due() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let q = Arc::new(PanelQueue::new());
        let stop = Arc::new(AtomicBool::new(false));
        // Waits on another thread; says when the wait ended.
        let sleeper = |q: &Arc<PanelQueue>, stop: &Arc<AtomicBool>| {
            let (q, stop) = (q.clone(), stop.clone());
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                q.wait(&|| stop.load(Ordering::SeqCst));
                tx.send(()).unwrap();
            });
            rx
        };
        let minute = Duration::from_secs(60);
        let woke = sleeper(&q, &stop);
        assert!(
            woke.recv_timeout(Duration::from_millis(50)).is_err(),
            "nothing to do: still asleep"
        );
        q.push(dom("a", "running"));
        assert_eq!(woke.recv_timeout(minute), Ok(()), "an update wakes it");
        assert_eq!(q.take(10, Duration::ZERO).len(), 1);
        q.settle(1);
        // A refused update from the state file is due at once: no sleep.
        q.restore_aside(Refused {
            update: dom("b", "running"),
            tries: 1,
            why: "no such vm".into(),
        });
        let woke = sleeper(&q, &stop);
        assert_eq!(woke.recv_timeout(minute), Ok(()), "a refused one due");
        assert!(q.release_due(Instant::now()));
        assert_eq!(q.take(10, Duration::ZERO).len(), 1);
        q.settle(1);
        let woke = sleeper(&q, &stop);
        stop.store(true, Ordering::SeqCst);
        q.wake();
        assert_eq!(woke.recv_timeout(minute), Ok(()), "a stop wakes it");
    }

    #[test]
    fn newer_updates_replace_older_ones_in_place() {
        let q = PanelQueue::new();
        q.push(dom("a", "running"));
        q.push(dom("b", "running"));
        q.push(dom("a", "paused"));
        let got = q.take(10, Duration::ZERO);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].subject().2.as_str(), state_of(&got[0]).as_str()),
            ("a", "paused")
        );
        assert_eq!(got[1].subject().2, "b");
    }

    #[test]
    fn a_forgotten_node_goes_after_its_domains_even_over_a_queued_down() {
        let q = PanelQueue::new();
        let node = |up: Option<bool>| match up {
            Some(up) => Update::Node {
                node: "1".into(),
                up,
                since_ms: 0,
            },
            None => Update::NodeForgotten {
                node: "1".into(),
                since_ms: 0,
            },
        };
        q.push(node(Some(false)));
        q.push_all([dom("a", "undefined"), node(None)]);
        let got = q.take(10, Duration::ZERO);
        assert_eq!(got.len(), 2);
        assert_eq!(state_of(&got[0]), "undefined");
        assert!(matches!(got[1], Update::NodeForgotten { .. }), "{got:?}");
        q.settle(2);
        // An `up` replacing a queued `forgotten` keeps its place.
        q.push_all([dom("a", "undefined"), node(None)]);
        q.push_all([node(Some(true)), dom("a", "running")]);
        let got = q.take(10, Duration::ZERO);
        assert_eq!(state_of(&got[0]), "running");
        assert!(matches!(got[1], Update::Node { up: true, .. }), "{got:?}");
    }

    #[test]
    fn a_failed_batch_goes_back_in_front_unless_superseded() {
        let q = PanelQueue::new();
        q.push(dom("a", "running"));
        q.push(dom("b", "running"));
        let batch = q.take(10, Duration::ZERO);
        assert_eq!(q.pending(), *batch, "a batch in flight is still pending");
        q.push(dom("c", "running"));
        q.push(dom("a", "shutoff"));
        q.settle(0);
        let got: Vec<(String, String)> = q
            .take(10, Duration::ZERO)
            .iter()
            .map(|u| (u.subject().2, state_of(u)))
            .collect();
        assert_eq!(
            got,
            vec![
                ("b".to_string(), "running".to_string()),
                ("c".to_string(), "running".to_string()),
                ("a".to_string(), "shutoff".to_string()),
            ]
        );
    }

    #[test]
    fn what_the_panel_took_is_gone_and_the_rest_comes_back_first() {
        let q = PanelQueue::new();
        for u in ["a", "b", "c", "d"] {
            q.push(dom(u, "running"));
        }
        let batch = q.take(3, Duration::ZERO);
        assert_eq!(batch.len(), 3);
        assert_eq!(q.pending().len(), 4);
        q.settle(2); // the command said it applied a and b, then was killed
        let left: Vec<String> = q.pending().iter().map(|u| u.subject().2).collect();
        assert_eq!(left, ["c", "d"]);
        let batch = q.take(10, Duration::ZERO);
        q.settle(batch.len());
        assert!(q.pending().is_empty());
    }

    #[test]
    fn memory_is_bounded_by_keys_not_events() {
        let q = PanelQueue::new();
        for i in 0..10_000 {
            q.push(dom(
                &format!("d{}", i % 50),
                if i % 2 == 0 { "running" } else { "paused" },
            ));
        }
        assert_eq!(q.len(), 50);
        assert_eq!(q.take(20, Duration::ZERO).len(), 20);
        assert_eq!(q.len(), 30);
    }

    #[test]
    fn a_refused_update_is_set_aside_and_the_others_flow() {
        let q = PanelQueue::new();
        for u in ["a", "b", "c"] {
            q.push(dom(u, "running"));
        }
        let batch = q.take(10, Duration::ZERO);
        assert_eq!(batch.len(), 3);
        let t0 = Instant::now();
        let aside = q.settle_refused(3, &[(1, "no such vm".into())], t0);
        assert_eq!(aside.len(), 1);
        assert_eq!(aside[0].update.subject().2, "b");
        assert!(q.pending().is_empty(), "a and c taken, b aside");
        assert_eq!(q.aside().len(), 1);
        assert!(!q.release_due(t0), "not due yet");
        assert!(q.release_due(t0 + crate::master::panel::refused::FIRST_RETRY));
        let retry = q.take(10, Duration::ZERO);
        assert!(q.is_retry(&retry[0].subject()));
        assert!(q.pending().is_empty(), "kept as aside, not pending");
        let again = q.settle_refused(1, &[(0, "still".into())], t0);
        assert_eq!(again[0].tries, 2);
        // A newer update for b replaces the refused one.
        q.push(dom("b", "paused"));
        assert!(q.aside().is_empty());
        assert_eq!(q.pending().len(), 1);
    }
}
