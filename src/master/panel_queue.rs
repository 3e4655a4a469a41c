//! The queue of updates waiting for the panel: coalescing, in order per key,
//! bounded by the number of keys (domains, nodes), not by the event rate.
//!
//! A newer update replaces a pending one with the same key in place, so the
//! panel always gets the latest fact and never a stale one after a newer one.
//! A batch that failed is put back at the front, except for keys that got a
//! newer update meanwhile: those keep the newer one.
//!
//! A batch handed to the panel stays here, "in flight", until the call ends:
//! [`pending`](PanelQueue::pending) (what the state file keeps) includes it,
//! so a master killed during a call still has every fact the panel may not
//! have taken.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::update::{Key, Update};

#[derive(Default)]
struct Pending {
    order: VecDeque<Key>,
    items: HashMap<Key, Update>,
    /// The batch of the call running now, in order (shared with the panel
    /// thread, so taking a batch copies nothing under the lock).
    inflight: Arc<Vec<Update>>,
}

/// Shared by the receiver (producer) and the panel thread (consumer).
#[derive(Default)]
pub struct PanelQueue {
    inner: Mutex<Pending>,
    ready: Condvar,
}

impl PanelQueue {
    pub fn new() -> PanelQueue {
        PanelQueue::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an update, replacing a pending one with the same key.
    pub fn push(&self, u: Update) {
        self.push_all([u]);
    }

    /// Adds updates in order, each replacing a pending one with the same
    /// key: one lock for them all, and a wake-up only for a panel thread
    /// that found the queue empty (it waits for nothing else).
    pub fn push_all(&self, updates: impl IntoIterator<Item = Update>) {
        let mut p = self.lock();
        let was_empty = p.order.is_empty();
        for u in updates {
            let key = u.key();
            if p.items.insert(key.clone(), u).is_none() {
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

    /// Ends the call of the batch in flight: its first `delivered` updates
    /// reached the panel; the rest go back in front, in order, except keys
    /// updated since, which keep their newer update.
    pub fn settle(&self, delivered: usize) {
        let mut p = self.lock();
        let batch = std::mem::take(&mut p.inflight);
        let rest = &batch[delivered.min(batch.len())..];
        for u in rest.iter().rev() {
            let key = u.key();
            if !p.items.contains_key(&key) {
                p.items.insert(key.clone(), u.clone());
                p.order.push_front(key);
            }
        }
    }

    /// A copy of what the panel has not taken, oldest first: the batch in
    /// flight, then the queue (for the state file; pushing it back in this
    /// order coalesces to the newest update per key).
    pub fn pending(&self) -> Vec<Update> {
        let p = self.lock();
        let mut all = (*p.inflight).clone();
        all.extend(p.order.iter().map(|k| p.items[k].clone()));
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
            state: crate::master::update::PanelState::parse(state).unwrap(),
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

    #[test]
    fn newer_updates_replace_older_ones_in_place() {
        let q = PanelQueue::new();
        q.push(dom("a", "running"));
        q.push(dom("b", "running"));
        q.push(dom("a", "paused"));
        let got = q.take(10, Duration::ZERO);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].key().2.as_str(), state_of(&got[0]).as_str()),
            ("a", "paused")
        );
        assert_eq!(got[1].key().2, "b");
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
            .map(|u| (u.key().2, state_of(u)))
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
        let left: Vec<String> = q.pending().iter().map(|u| u.key().2).collect();
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
}
