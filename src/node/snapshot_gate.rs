//! When the event thread takes a full domain list: at most one unsent list
//! waits in the node's queue, and nothing is listed while the queue is full.
//!
//! A full list is wanted at start, every `sync_interval`, after each
//! reconnection to the master and after the queue overflowed (an event was
//! lost). Listing costs a libvirt call per domain, and a list queued behind
//! another unsent one says nothing the first will not: during a long master
//! outage the node used to queue a list every `sync_interval` and, once the
//! queue was full, list every domain again every 250 ms (issue 16). So:
//!
//! - a periodic or reconnection request while a list waits unsent (no part
//!   of it sent yet) is satisfied by that list: the master gets it first
//!   thing, and every event after it;
//! - a request while a list is half sent (the master may have lost its first
//!   parts), or an overflow after a list was queued (the events it lost came
//!   after the list), waits until that list is sent, then lists again;
//! - nothing is listed while the channel has no room (the list could not be
//!   queued), nor within [`RETRY`] of a list that could not be read whole.
//!
//! The sender tells the gate when it sends a snapshot part; the event thread
//! asks [`SnapshotGate::decide`] each loop turn. The master so gets one list
//! on reconnection, not a backlog, and an idle node stays idle meanwhile.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long after a list that could not be read whole (a domain whose state
/// libvirt could not give, libvirtd dying half way) the next try waits.
pub const RETRY: Duration = Duration::from_secs(10);

/// Where the one list the gate allows is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    /// None in the queue.
    None,
    /// Queued, no part of it sent yet.
    Queued,
    /// Some parts sent, not all.
    Sending,
}

/// What the event thread should do about a wanted list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// List every domain now and queue it.
    List,
    /// The request is met by the list already queued: clear it.
    Satisfied,
    /// Not now: keep the request and ask again later.
    Wait,
}

#[derive(Debug)]
struct Gate {
    list: List,
    retry_at: Option<Instant>,
}

/// Shared by the event thread and the sender.
#[derive(Debug)]
pub struct SnapshotGate {
    inner: Mutex<Gate>,
}

impl Default for SnapshotGate {
    fn default() -> SnapshotGate {
        SnapshotGate::new()
    }
}

impl SnapshotGate {
    pub fn new() -> SnapshotGate {
        SnapshotGate {
            inner: Mutex::new(Gate {
                list: List::None,
                retry_at: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Gate> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `requested`: a periodic or reconnection request (or the first list)
    /// is pending; `overflow`: events were lost since the last list was
    /// queued; `room`: the channel can take an item now.
    pub fn decide(&self, requested: bool, overflow: bool, room: bool, now: Instant) -> Action {
        let g = self.lock();
        if !requested && !overflow {
            return Action::Wait;
        }
        match g.list {
            List::Queued if !overflow => Action::Satisfied,
            List::Queued | List::Sending => Action::Wait,
            List::None if g.retry_at.is_some_and(|t| now < t) || !room => Action::Wait,
            List::None => Action::List,
        }
    }

    /// A list is about to be queued (before the `try_send`, so the sender
    /// can never send it before the gate knows of it).
    pub fn queuing(&self) {
        let mut g = self.lock();
        g.list = List::Queued;
        g.retry_at = None;
    }

    /// The list could not be queued after all (the channel filled up).
    pub fn not_queued(&self) {
        self.lock().list = List::None;
    }

    /// Listing failed (not every domain could be read): try again after
    /// [`RETRY`].
    pub fn failed(&self, now: Instant) {
        self.lock().retry_at = Some(now + RETRY);
    }

    /// The sender handed part `part` of `parts` to ZeroMQ, or dropped it
    /// (`delivered` false): then the list is gone and another is needed.
    pub fn sent_part(&self, part: u32, parts: u32, delivered: bool) {
        let mut g = self.lock();
        g.list = if part >= parts || !delivered {
            List::None
        } else {
            List::Sending
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 16: a node whose master is away listed every domain every
    /// `sync_interval` and, once the queue was full, every 250 ms.
    #[test]
    fn one_unsent_list_at_most_and_none_while_full() {
        let g = SnapshotGate::new();
        let now = Instant::now();
        // The first list.
        assert_eq!(g.decide(true, false, true, now), Action::List);
        g.queuing();
        // The master is away: periodic and reconnection requests are met by
        // the queued list, however many come.
        for _ in 0..100 {
            assert_eq!(g.decide(true, false, true, now), Action::Satisfied);
        }
        // Events overflow: wait for the list to go, listing nothing.
        for _ in 0..100 {
            assert_eq!(g.decide(false, true, false, now), Action::Wait);
            assert_eq!(g.decide(true, true, true, now), Action::Wait);
        }
        // The master is back: the list goes in two parts; the overflow is
        // repaired by a new list once the channel has room.
        g.sent_part(1, 2, true);
        assert_eq!(g.decide(false, true, true, now), Action::Wait);
        g.sent_part(2, 2, true);
        assert_eq!(g.decide(false, true, false, now), Action::Wait, "no room");
        assert_eq!(g.decide(false, true, true, now), Action::List);
        g.queuing();
        g.sent_part(1, 1, true);
        assert_eq!(
            g.decide(false, false, true, now),
            Action::Wait,
            "nothing wanted"
        );
    }

    #[test]
    fn a_half_sent_list_does_not_satisfy_a_reconnection() {
        let g = SnapshotGate::new();
        let now = Instant::now();
        g.queuing();
        g.sent_part(1, 3, true);
        // The master restarted and lost part 1: a new list after this one.
        assert_eq!(g.decide(true, false, true, now), Action::Wait);
        g.sent_part(2, 3, true);
        g.sent_part(3, 3, true);
        assert_eq!(g.decide(true, false, true, now), Action::List);
        // A part dropped on a hard error: the list is gone.
        g.queuing();
        g.sent_part(1, 2, false);
        assert_eq!(g.decide(true, false, true, now), Action::List);
        // The channel filled before the list could be queued.
        g.queuing();
        g.not_queued();
        assert_eq!(g.decide(true, false, true, now), Action::List);
    }

    #[test]
    fn a_list_that_could_not_be_read_whole_is_retried_later() {
        let g = SnapshotGate::new();
        let now = Instant::now();
        g.failed(now);
        assert_eq!(g.decide(true, false, true, now), Action::Wait);
        assert_eq!(g.decide(true, false, true, now + RETRY / 2), Action::Wait);
        assert_eq!(g.decide(true, false, true, now + RETRY), Action::List);
    }
}
