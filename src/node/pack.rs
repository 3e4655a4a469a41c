//! Packing what producers queue into signed-message bodies that fit.
//!
//! The [`Outbox`] holds the bodies waiting for the sender, in order: events
//! join the newest events body while it has room, snapshots and stats
//! samples are split into as few bodies as the payload limit allows. It also
//! counts the channel items it holds, so the sender can stop taking from the
//! bounded channel once it holds `queue_size` of them: an absent master then
//! costs bounded memory, and the channel really overflows (which the event
//! thread repairs with a snapshot). No socket here; the sender owns that.

use std::collections::VecDeque;

use super::messages::Outgoing;
use crate::protocol::{
    encode_domain_state, encode_event, encode_stat, Body, DomainState, StatSample, MAX_PAYLOAD,
};

/// Room left in a payload for the header line.
const HEADER_ROOM: usize = 512;
/// Bytes of records one body may carry.
const BUDGET: usize = MAX_PAYLOAD - HEADER_ROOM;
/// Bodies taken from the channel ahead of the one being sent.
const LOOKAHEAD: usize = 64;

/// Splits records into bodies that each fit the payload limit. A record too
/// large for any message (a domain name of tens of kilobytes) is dropped with
/// an error rather than stalling the queue forever.
fn split<T>(items: Vec<T>, size: impl Fn(&T) -> usize, what: &str) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut cur: Vec<T> = Vec::new();
    let mut used = 0;
    for item in items {
        let n = size(&item);
        if n > BUDGET {
            log::error!("a {what} record of {n} bytes exceeds the message size limit; dropped");
            continue;
        }
        if used + n > BUDGET && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
            used = 0;
        }
        used += n;
        cur.push(item);
    }
    if !cur.is_empty() || out.is_empty() {
        out.push(cur);
    }
    out
}

fn measured<T>(f: impl Fn(&T, &mut String)) -> impl Fn(&T) -> usize {
    move |item| {
        let mut s = String::new();
        f(item, &mut s);
        s.len()
    }
}

/// Turns a snapshot into its parts; an empty node still sends one empty
/// part, which tells the master that every domain it knew is gone.
pub fn snapshot_bodies(id: u64, domains: Vec<DomainState>) -> Vec<Body> {
    let chunks = split(domains, measured(encode_domain_state), "snapshot");
    let parts = chunks.len() as u32;
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, domains)| Body::Snapshot {
            id,
            part: i as u32 + 1,
            parts,
            domains,
        })
        .collect()
}

/// Turns one stats sample into as few messages as fit.
pub fn stats_bodies(interval_ms: u64, samples: Vec<StatSample>) -> Vec<Body> {
    split(samples, measured(encode_stat), "stats")
        .into_iter()
        .map(|samples| Body::Stats {
            interval_ms,
            samples,
        })
        .collect()
}

/// One body waiting to be sent.
struct Packed {
    body: Body,
    /// Payload bytes its records use (only tracked for events bodies, the
    /// only kind that grows after it was queued).
    used: usize,
    /// Channel items it completes: popping it frees that many.
    items: usize,
}

/// The bodies waiting for the sender, with their accounting.
pub struct Outbox {
    queue: VecDeque<Packed>,
    /// Channel items held in `queue`; with the channel itself it never
    /// exceeds 2 × `queue_size`.
    held: usize,
    max_held: usize,
    next_snapshot: u64,
}

impl Outbox {
    /// An empty outbox that holds at most `max_held` channel items.
    pub fn new(max_held: usize) -> Outbox {
        Outbox {
            queue: VecDeque::new(),
            held: 0,
            max_held,
            next_snapshot: 1,
        }
    }

    /// Whether the sender may take another item from the channel: a little
    /// lookahead, and never more than `max_held` items.
    pub fn has_room(&self) -> bool {
        self.queue.len() < LOOKAHEAD && self.held < self.max_held
    }

    /// Bodies waiting.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The body to send next.
    pub fn front(&self) -> Option<&Body> {
        self.queue.front().map(|p| &p.body)
    }

    /// Forgets the front body (sent, or dropped after a hard error).
    pub fn pop(&mut self) {
        if let Some(p) = self.queue.pop_front() {
            self.held -= p.items;
        }
    }

    /// Queues a heartbeat, which holds no channel item.
    pub fn push_heartbeat(&mut self) {
        self.queue.push_back(Packed {
            body: Body::Heartbeat,
            used: 0,
            items: 0,
        });
    }

    /// Packs one item taken from the channel.
    pub fn push(&mut self, item: Outgoing) {
        self.held += 1;
        match item {
            Outgoing::Event(ev) => {
                let mut rec = String::new();
                encode_event(&ev, &mut rec);
                // Join the newest events message if it is not the one being
                // sent right now and there is room.
                if self.queue.len() > 1 {
                    if let Some(Packed {
                        body: Body::Events(list),
                        used,
                        items,
                    }) = self.queue.back_mut()
                    {
                        if *used + rec.len() <= BUDGET {
                            *used += rec.len();
                            *items += 1;
                            list.push(ev);
                            return;
                        }
                    }
                }
                self.queue.push_back(Packed {
                    body: Body::Events(vec![ev]),
                    used: rec.len(),
                    items: 1,
                });
            }
            Outgoing::Snapshot(domains) => {
                let id = self.next_snapshot;
                self.next_snapshot += 1;
                self.push_parts(snapshot_bodies(id, domains));
            }
            Outgoing::Stats {
                interval_ms,
                samples,
            } => self.push_parts(stats_bodies(interval_ms, samples)),
        }
    }

    /// Queues the parts of one item; the last part frees the item.
    fn push_parts(&mut self, bodies: Vec<Body>) {
        let last = bodies.len() - 1;
        for (i, body) in bodies.into_iter().enumerate() {
            self.queue.push_back(Packed {
                body,
                used: 0,
                items: usize::from(i == last),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{DomainId, Event, Header, Message};

    fn ds(i: usize) -> DomainState {
        DomainState {
            domain: DomainId {
                uuid: format!("00000000-0000-0000-0000-{i:012x}"),
                name: format!("vm-{i:05}-{}", "x".repeat(60)),
            },
            state: crate::vocab::State::Running,
            reason: crate::vocab::Reason::from_code(1, 1),
            reboots: None,
            rebootid: None,
        }
    }

    #[test]
    fn big_snapshots_split_into_numbered_parts_that_fit() {
        let domains: Vec<DomainState> = (0..5000).map(ds).collect();
        let bodies = snapshot_bodies(9, domains);
        assert!(bodies.len() > 1);
        let n = bodies.len() as u32;
        let mut total = 0;
        for (i, b) in bodies.iter().enumerate() {
            let Body::Snapshot {
                id,
                part,
                parts,
                domains,
            } = b
            else {
                panic!("not a snapshot")
            };
            assert_eq!((*id, *part, *parts), (9, i as u32 + 1, n));
            total += domains.len();
            let msg = Message {
                header: Header {
                    node: "node-with-a-long-id-0123456789".into(),
                    instance: u64::MAX,
                    seq: u64::MAX,
                    ts_ms: u64::MAX,
                    host: Some("ffffffff-ffff-ffff-ffff-ffffffffffff".into()),
                },
                body: b.clone(),
            };
            assert!(crate::protocol::encode_payload(&msg).len() <= MAX_PAYLOAD);
        }
        assert_eq!(total, 5000);
    }

    #[test]
    fn an_empty_node_still_sends_one_snapshot_part() {
        let bodies = snapshot_bodies(1, Vec::new());
        assert_eq!(
            bodies,
            vec![Body::Snapshot {
                id: 1,
                part: 1,
                parts: 1,
                domains: vec![]
            }]
        );
    }

    #[test]
    fn events_join_behind_the_front_and_popping_frees_what_was_held() {
        let ev = |i: usize| {
            Outgoing::Event(Event {
                domain: ds(i).domain,
                event: crate::vocab::EventKind::Started,
                detail: crate::vocab::Detail::from_code(2, 0),
                time_ms: 0,
                reboots: None,
                rebootid: None,
            })
        };
        let mut out = Outbox::new(3);
        out.push(ev(1)); // the front, being sent: never joined
        out.push(ev(2));
        out.push(ev(3)); // joins the second body
        assert_eq!(out.len(), 2);
        assert!(!out.has_room(), "3 items held of 3");
        out.pop();
        assert!(out.has_room());
        assert!(matches!(out.front(), Some(Body::Events(l)) if l.len() == 2));
        out.push_heartbeat();
        out.pop();
        out.pop();
        assert!(out.is_empty() && out.has_room());
    }
}
