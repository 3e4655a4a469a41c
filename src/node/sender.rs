//! The sender thread: the one owner of the node's ZeroMQ PUSH socket.
//!
//! It takes queued items from the channel into its [`Outbox`] (which packs
//! them into as few messages as the size limit allows), signs each message
//! at the moment it goes out (so time spent waiting for an absent master
//! never makes a message stale), and sends a heartbeat when the
//! node has been silent for `heartbeat_interval`. The socket is set to
//! `ZMQ_IMMEDIATE`, so nothing piles up inside ZeroMQ while the master is
//! unreachable: the backlog stays in our bounded channel, whose overflow the
//! event thread repairs with a snapshot. When the connection to the master is
//! re-established, a fresh snapshot is asked for, so a master that restarted
//! or missed messages converges at once.

use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::link::{Link, LinkEvent};
use super::messages::{Flags, Outgoing};
use super::pack::Outbox;
use crate::clock::now_ms;
use crate::log_limited;
use crate::protocol::{Body, Header, MacKey, Message};
use crate::ratelimit::RateLimit;
use crate::service::{Bell, Shutdown};

/// How long a stopping node keeps trying to deliver what is queued.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// The longest wait before a new link after the master refused one (the
/// first wait is ZeroMQ's reconnect interval, then it doubles).
const FIRST_REFUSED_WAIT: Duration = Duration::from_millis(500);
const REFUSED_MAX: Duration = Duration::from_secs(5);
/// The longest wait while a stopping node drains its queue: the producers
/// end without a word (the channel closes), so the drain looks this often.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// The PUSH socket and what it needs to sign messages.
pub struct Sender {
    ctx: zmq::Context,
    /// The current connection attempt; replaced after each disconnect or
    /// refused handshake, so that no credential is offered twice.
    link: Link,
    /// When to replace the link, and the wait after the next refusal.
    relink_at: Option<Instant>,
    refused_wait: Duration,
    endpoint: String,
    /// Keyed once here: every message is signed with it.
    key: MacKey,
    node: String,
    /// The libvirt host UUID, carried as `host=` in every header.
    host: Option<String>,
    instance: u64,
    seq: u64,
    heartbeat: Duration,
    flags: Arc<Flags>,
    connected_before: bool,
    /// Bodies ready to send, holding at most `queue_size` channel items.
    outbox: Outbox,
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
        let key = MacKey::new(secret.as_bytes());
        let link = Link::open(ctx, endpoint, &key, node)?;
        Ok(Sender {
            ctx: ctx.clone(),
            link,
            relink_at: None,
            refused_wait: FIRST_REFUSED_WAIT,
            endpoint: endpoint.to_string(),
            key,
            node: node.to_string(),
            host: None,
            instance: random_instance(),
            seq: 0,
            heartbeat,
            flags,
            connected_before: false,
            outbox: Outbox::new(queue_size),
            sent: 0,
            limit: RateLimit::new(3, Duration::from_secs(60)),
        })
    }

    /// Sets the libvirt host UUID every header carries (node/host.rs).
    pub fn set_host(&mut self, host: Option<String>) {
        self.host = host;
    }

    /// This process's instance id, as carried in every header.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// Takes one item from the channel into the outbox.
    fn take(&mut self, item: Outgoing) {
        super::status::STATUS.took(&item);
        self.outbox.push(item);
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
                host: self.host.clone(),
            },
            body: body.clone(),
        };
        let frames = self.key.encode(&msg);
        self.link.socket.send_multipart(frames, zmq::DONTWAIT)
    }

    /// Reads connection events: a new connection after the first asks the
    /// event thread for a snapshot, since the master may have missed things.
    /// A closed or refused connection gets a new link (a fresh credential).
    fn watch_connection(&mut self) {
        while let Some(ev) = self.link.event() {
            match ev {
                LinkEvent::Up => {
                    log::info!("connected to the master at {}", self.endpoint);
                    super::status::STATUS.master(true);
                    if self.connected_before {
                        self.flags.want_snapshot();
                    }
                    self.connected_before = true;
                    self.refused_wait = FIRST_REFUSED_WAIT;
                }
                LinkEvent::Down => {
                    super::status::STATUS.master(false);
                    log_limited!(
                        self.limit,
                        log::Level::Warn,
                        "disconnected from the master at {}; reconnecting",
                        self.endpoint
                    );
                    self.relink_after(Duration::ZERO);
                }
                LinkEvent::Refused(code) => {
                    log_limited!(
                        self.limit,
                        log::Level::Error,
                        "the master at {} refused this node's handshake credential (ZAP status {code}): is `secret` the same as the master's, and this host's clock within the master's max_clock_skew? The master logs why",
                        self.endpoint
                    );
                    self.relink_refused();
                }
                LinkEvent::Failed(code) => {
                    log_limited!(
                        self.limit,
                        log::Level::Error,
                        "the ZeroMQ handshake with {} failed (code {code:#x}): is the master a vmwatch-master that asks for the handshake credential? Upgrade the master and the nodes together (docs/protocol.md, \"Handshake\")",
                        self.endpoint
                    );
                    self.relink_refused();
                }
            }
        }
        if self.relink_at.is_some_and(|t| Instant::now() >= t) {
            self.relink_at = None;
            match Link::open(&self.ctx, &self.endpoint, &self.key, &self.node) {
                Ok(link) => self.link = link,
                Err(e) => {
                    log_limited!(self.limit, log::Level::Error, "{e}; retrying");
                    self.relink_refused();
                }
            }
        }
    }

    /// A new link at once (or after `wait`), unless one is already due.
    fn relink_after(&mut self, wait: Duration) {
        let at = Instant::now() + wait;
        self.relink_at = Some(self.relink_at.map_or(at, |t| t.min(at)));
    }

    /// A new link after a refusal, waiting longer each time (a master that
    /// refuses is not asked ten times a second).
    fn relink_refused(&mut self) {
        if self.relink_at.is_none() {
            let wait = self.refused_wait;
            self.refused_wait = (wait * 2).min(REFUSED_MAX);
            self.relink_after(wait);
        }
    }

    /// Sleeps until there may be something to do: an item queued (`bell`,
    /// while the outbox has room), a connection event, the socket taking a
    /// message again (`blocked`: the front message could not go), the
    /// heartbeat or a new link due, or a stop. Nothing else wakes it: an
    /// idle node's sender sleeps from one heartbeat to the next.
    fn wait(
        &self,
        bell: &Bell,
        shutdown: &Shutdown,
        blocked: bool,
        take: bool,
        heartbeat_at: Option<Instant>,
        drain_deadline: Option<Instant>,
    ) {
        let now = Instant::now();
        let mut until = [heartbeat_at, self.relink_at, drain_deadline]
            .into_iter()
            .flatten()
            .min();
        if drain_deadline.is_some() {
            until = Some(until.map_or(now + DRAIN_POLL, |t| t.min(now + DRAIN_POLL)));
        }
        let timeout = until.map_or(-1, |t| {
            // Rounded up: waking a little early would only wait again.
            let left = t.saturating_duration_since(now);
            i64::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i64::MAX)
        });
        let mut items = vec![self.link.monitor_item()];
        if blocked {
            items.push(self.link.socket.as_poll_item(zmq::POLLOUT));
        }
        if take {
            items.push(zmq::PollItem::from_fd(bell.fd(), zmq::POLLIN));
        }
        if drain_deadline.is_none() {
            // Left out once stopping: it stays readable.
            items.push(zmq::PollItem::from_fd(shutdown.stop_fd(), zmq::POLLIN));
        }
        let _ = zmq::poll(&mut items, timeout);
    }

    /// Runs until the channel closes (every producer stopped) and the queue
    /// is delivered, or until [`DRAIN_LIMIT`] after a stop was requested.
    /// `bell` rings for every item the producers queue.
    pub fn run(mut self, rx: Receiver<Outgoing>, bell: &Bell, shutdown: &Shutdown) {
        let mut last_send = Instant::now();
        let mut drain_deadline: Option<Instant> = None;
        let mut producers_gone = false;
        loop {
            if drain_deadline.is_none() && shutdown.stopping() {
                drain_deadline = Some(Instant::now() + DRAIN_LIMIT);
            }
            if let Some(d) = drain_deadline {
                if Instant::now() >= d || (producers_gone && self.outbox.is_empty()) {
                    break;
                }
            }
            // Take what is queued, without holding more than a little
            // lookahead: the channel is the bounded buffer. The bell is
            // cleared first: an item queued after the look rings it again.
            if self.outbox.has_room() && !producers_gone {
                bell.clear();
            }
            while self.outbox.has_room() && !producers_gone {
                match rx.try_recv() {
                    Ok(item) => self.take(item),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => producers_gone = true,
                }
            }
            self.watch_connection();
            super::status::STATUS.backlog(self.outbox.len());
            if self.outbox.is_empty()
                && last_send.elapsed() >= self.heartbeat
                && drain_deadline.is_none()
            {
                self.outbox.push_heartbeat();
            }
            let take = self.outbox.has_room() && !producers_gone;
            let Some(body) = self.outbox.front().cloned() else {
                let heartbeat_at = drain_deadline.is_none().then(|| last_send + self.heartbeat);
                self.wait(bell, shutdown, false, take, heartbeat_at, drain_deadline);
                continue;
            };
            match self.try_send(&body) {
                Ok(()) => {
                    if let Body::Snapshot { part, parts, .. } = &body {
                        self.flags.gate.sent_part(*part, *parts, true);
                    }
                    self.outbox.pop();
                    self.sent += 1;
                    super::status::STATUS.sent();
                    last_send = Instant::now();
                    log::debug!("sent {} message (seq {})", body.kind(), self.seq);
                }
                Err(zmq::Error::EAGAIN) => {
                    // No connected master: wait until the socket can take a
                    // message, watching connection events meanwhile.
                    self.wait(bell, shutdown, true, take, None, drain_deadline);
                }
                Err(e) => {
                    log::error!(
                        "cannot send a {} message to {}: {e}; dropped",
                        body.kind(),
                        self.endpoint
                    );
                    if let Body::Snapshot { part, parts, .. } = &body {
                        // The list is incomplete at the master: another.
                        self.flags.gate.sent_part(*part, *parts, false);
                        self.flags.want_snapshot();
                    }
                    self.outbox.pop();
                }
            }
        }
        let left = self.outbox.len();
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
        let _ = self.link.socket.set_linger(linger.as_millis() as i32);
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

    #[test]
    fn instance_ids_differ() {
        assert_ne!(random_instance(), random_instance());
    }
}
