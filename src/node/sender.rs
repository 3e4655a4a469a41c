//! The sender thread: the one owner of the node's ZeroMQ PUSH socket.
//!
//! It packs queued items into as few messages as the size limit allows,
//! signs each message at the moment it goes out (so time spent waiting for an
//! absent master never makes a message stale), and sends a heartbeat when the
//! node has been silent for `heartbeat_interval`. The socket is set to
//! `ZMQ_IMMEDIATE`, so nothing piles up inside ZeroMQ while the master is
//! unreachable: the backlog stays in our bounded channel, whose overflow the
//! event thread repairs with a snapshot. When the connection to the master is
//! re-established, a fresh snapshot is asked for, so a master that restarted
//! or missed messages converges at once.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Flags, Outgoing};
use crate::log_limited;
use crate::protocol::{
    encode, encode_domain_state, encode_event, encode_stat, Body, DomainState, Header, Message,
    StatSample, MAX_PAYLOAD,
};
use crate::ratelimit::RateLimit;
use crate::service::{now_ms, Shutdown};

/// Room left in a payload for the header line.
const HEADER_ROOM: usize = 512;
/// How long a stopping node keeps trying to deliver what is queued.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// Bodies taken from the channel ahead of the one being sent.
const LOOKAHEAD: usize = 64;

const MONITOR_ENDPOINT: &str = "inproc://vmwatch-push-monitor";

/// Splits records into bodies that each fit the payload limit. A record too
/// large for any message (a domain name of tens of kilobytes) is dropped with
/// an error rather than stalling the queue forever.
fn split<T>(items: Vec<T>, size: impl Fn(&T) -> usize, what: &str) -> Vec<Vec<T>> {
    let budget = MAX_PAYLOAD - HEADER_ROOM;
    let mut out: Vec<Vec<T>> = Vec::new();
    let mut cur: Vec<T> = Vec::new();
    let mut used = 0;
    for item in items {
        let n = size(&item);
        if n > budget {
            log::error!("a {what} record of {n} bytes exceeds the message size limit; dropped");
            continue;
        }
        if used + n > budget && !cur.is_empty() {
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

/// The PUSH socket and what it needs to sign messages.
pub struct Sender {
    socket: zmq::Socket,
    monitor: zmq::Socket,
    endpoint: String,
    secret: Vec<u8>,
    node: String,
    instance: u64,
    seq: u64,
    next_snapshot: u64,
    heartbeat: Duration,
    flags: Arc<Flags>,
    connected_before: bool,
    /// Bodies ready to send: (body, payload bytes used, channel items in it).
    queue: VecDeque<(Body, usize, usize)>,
    /// Channel items held in `queue`; with the channel itself it never
    /// exceeds 2 × `queue_size`, so an absent master costs bounded memory
    /// and the overflow that a snapshot repairs really happens.
    held: usize,
    max_held: usize,
    sent: u64,
    limit: RateLimit,
}

impl Sender {
    /// Creates the socket and starts connecting (ZeroMQ connects in the
    /// background and keeps retrying; an absent master is not an error).
    pub fn new(
        ctx: &zmq::Context,
        endpoint: &str,
        secret: &str,
        node: &str,
        heartbeat: Duration,
        flags: Arc<Flags>,
        queue_size: usize,
    ) -> Result<Sender, String> {
        let zerr = |what: &str, e: zmq::Error| {
            format!("cannot {what} the ZeroMQ socket for {endpoint}: {e}")
        };
        let socket = ctx.socket(zmq::PUSH).map_err(|e| zerr("create", e))?;
        socket
            .set_immediate(true)
            .map_err(|e| zerr("configure", e))?;
        socket.set_sndhwm(1000).map_err(|e| zerr("configure", e))?;
        socket
            .set_reconnect_ivl(500)
            .map_err(|e| zerr("configure", e))?;
        socket
            .set_reconnect_ivl_max(5000)
            .map_err(|e| zerr("configure", e))?;
        socket
            .set_tcp_keepalive(1)
            .map_err(|e| zerr("configure", e))?;
        socket
            .set_ipv6(endpoint.contains('['))
            .map_err(|e| zerr("configure", e))?;
        socket
            .monitor(
                MONITOR_ENDPOINT,
                (zmq::SocketEvent::CONNECTED as u16 | zmq::SocketEvent::DISCONNECTED as u16) as i32,
            )
            .map_err(|e| zerr("monitor", e))?;
        let monitor = ctx.socket(zmq::PAIR).map_err(|e| zerr("create", e))?;
        monitor
            .connect(MONITOR_ENDPOINT)
            .map_err(|e| zerr("monitor", e))?;
        socket.connect(endpoint).map_err(|e| zerr("connect", e))?;
        Ok(Sender {
            socket,
            monitor,
            endpoint: endpoint.to_string(),
            secret: secret.as_bytes().to_vec(),
            node: node.to_string(),
            instance: random_instance(),
            seq: 0,
            next_snapshot: 1,
            heartbeat,
            flags,
            connected_before: false,
            queue: VecDeque::new(),
            held: 0,
            max_held: queue_size,
            sent: 0,
            limit: RateLimit::new(3, Duration::from_secs(60)),
        })
    }

    /// This process's instance id, as carried in every header.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    fn enqueue(&mut self, item: Outgoing) {
        self.held += 1;
        super::status::STATUS.took(&item);
        match item {
            Outgoing::Event(ev) => {
                let mut rec = String::new();
                encode_event(&ev, &mut rec);
                // Join the newest events message if it is not the one being
                // sent right now and there is room.
                if self.queue.len() > 1 {
                    if let Some((Body::Events(list), used, items)) = self.queue.back_mut() {
                        if *used + rec.len() <= MAX_PAYLOAD - HEADER_ROOM {
                            *used += rec.len();
                            *items += 1;
                            list.push(ev);
                            return;
                        }
                    }
                }
                self.queue.push_back((Body::Events(vec![ev]), rec.len(), 1));
            }
            Outgoing::Snapshot(domains) => {
                let id = self.next_snapshot;
                self.next_snapshot += 1;
                let bodies = snapshot_bodies(id, domains);
                let last = bodies.len() - 1;
                for (i, b) in bodies.into_iter().enumerate() {
                    self.queue.push_back((b, 0, usize::from(i == last)));
                }
            }
            Outgoing::Stats {
                interval_ms,
                samples,
            } => {
                let bodies = stats_bodies(interval_ms, samples);
                let last = bodies.len() - 1;
                for (i, b) in bodies.into_iter().enumerate() {
                    self.queue.push_back((b, 0, usize::from(i == last)));
                }
            }
        }
    }

    fn pop(&mut self) {
        if let Some((_, _, items)) = self.queue.pop_front() {
            self.held -= items;
        }
    }

    /// Signs and hands one body to ZeroMQ without blocking.
    fn try_send(&mut self, body: &Body) -> Result<(), zmq::Error> {
        self.seq += 1;
        let msg = Message {
            header: Header {
                node: self.node.clone(),
                instance: self.instance,
                seq: self.seq,
                ts_ms: now_ms(),
            },
            body: body.clone(),
        };
        let frames = encode(&self.secret, &msg);
        self.socket.send_multipart(frames, zmq::DONTWAIT)
    }

    /// Reads connection events: a new connection after the first asks the
    /// event thread for a snapshot, since the master may have missed things.
    fn watch_connection(&mut self) {
        while let Ok(frames) = self.monitor.recv_multipart(zmq::DONTWAIT) {
            let Some(ev) = frames.first().filter(|f| f.len() >= 2) else {
                continue;
            };
            let id = u16::from_le_bytes([ev[0], ev[1]]);
            if id == zmq::SocketEvent::CONNECTED as u16 {
                log::info!("connected to the master at {}", self.endpoint);
                super::status::STATUS.master(true);
                if self.connected_before {
                    self.flags.snapshot_wanted.store(true, Ordering::SeqCst);
                }
                self.connected_before = true;
            } else if id == zmq::SocketEvent::DISCONNECTED as u16 {
                super::status::STATUS.master(false);
                log_limited!(
                    self.limit,
                    log::Level::Warn,
                    "disconnected from the master at {}; reconnecting",
                    self.endpoint
                );
            }
        }
    }

    /// Runs until the channel closes (every producer stopped) and the queue
    /// is delivered, or until [`DRAIN_LIMIT`] after a stop was requested.
    pub fn run(mut self, rx: Receiver<Outgoing>, shutdown: &Shutdown) {
        let mut last_send = Instant::now();
        let mut drain_deadline: Option<Instant> = None;
        let mut producers_gone = false;
        loop {
            if drain_deadline.is_none() && shutdown.stopping() {
                drain_deadline = Some(Instant::now() + DRAIN_LIMIT);
            }
            if let Some(d) = drain_deadline {
                if Instant::now() >= d || (producers_gone && self.queue.is_empty()) {
                    break;
                }
            }
            // Take what is queued, without holding more than a little
            // lookahead: the channel is the bounded buffer.
            if self.queue.is_empty() && !producers_gone {
                let wait = self
                    .heartbeat
                    .saturating_sub(last_send.elapsed())
                    .clamp(Duration::from_millis(10), Duration::from_millis(200));
                match rx.recv_timeout(wait) {
                    Ok(item) => self.enqueue(item),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => producers_gone = true,
                }
            }
            while self.queue.len() < LOOKAHEAD && self.held < self.max_held && !producers_gone {
                match rx.try_recv() {
                    Ok(item) => self.enqueue(item),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => producers_gone = true,
                }
            }
            self.watch_connection();
            super::status::STATUS.backlog(self.queue.len());
            if self.queue.is_empty()
                && last_send.elapsed() >= self.heartbeat
                && drain_deadline.is_none()
            {
                self.queue.push_back((Body::Heartbeat, 0, 0));
            }
            let Some((body, _, _)) = self.queue.front().cloned() else {
                continue;
            };
            match self.try_send(&body) {
                Ok(()) => {
                    self.pop();
                    self.sent += 1;
                    super::status::STATUS.sent();
                    last_send = Instant::now();
                    log::debug!("sent {} message (seq {})", body.kind(), self.seq);
                }
                Err(zmq::Error::EAGAIN) => {
                    // No connected master: wait until the socket can take a
                    // message, watching connection events meanwhile.
                    let mut items = [
                        self.socket.as_poll_item(zmq::POLLOUT),
                        self.monitor.as_poll_item(zmq::POLLIN),
                    ];
                    let _ = zmq::poll(&mut items, 200);
                }
                Err(e) => {
                    log::error!(
                        "cannot send a {} message to {}: {e}; dropped",
                        body.kind(),
                        self.endpoint
                    );
                    self.pop();
                }
            }
        }
        let left = self.queue.len();
        if left > 0 {
            log::warn!(
                "stopping with {left} messages undelivered to {} (master unreachable)",
                self.endpoint
            );
        }
        log::info!("sender stopped after {} messages", self.sent);
        // Whatever ZeroMQ still holds gets the rest of the drain time.
        let linger = drain_deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
            .unwrap_or(DRAIN_LIMIT);
        let _ = self.socket.set_linger(linger.as_millis() as i32);
    }
}

/// A random 64-bit instance id from the kernel, so a restarted node never
/// reuses its predecessor's (instance, seq) pairs.
fn random_instance() -> u64 {
    let mut buf = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        if f.read_exact(&mut buf).is_ok() {
            return u64::from_ne_bytes(buf) | 1;
        }
    }
    // No /dev/urandom: time and pid still differ between restarts.
    (now_ms() << 20) ^ u64::from(std::process::id()) | 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::DomainId;

    fn ds(i: usize) -> DomainState {
        DomainState {
            domain: DomainId {
                uuid: format!("00000000-0000-0000-0000-{i:012x}"),
                name: format!("vm-{i:05}-{}", "x".repeat(60)),
            },
            state: crate::vocab::State::Running,
            reason: crate::vocab::Reason::from_code(1, 1),
            reboots: None,
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
    fn instance_ids_differ() {
        assert_ne!(random_instance(), random_instance());
    }
}
