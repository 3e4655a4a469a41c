//! The receiver thread: the one owner of the master's PULL socket, the
//! replay guard and the state table.
//!
//! Only peers that passed the handshake (`master::admission`) reach the
//! socket. Every message is then checked in this order, and nothing of it
//! is used before it passes: frame count, payload size, MAC (constant time,
//! `protocol::decode`), protocol version, syntax, then the replay guard
//! ([`replay`]): a node instance already heard must send a sequence number
//! above its last accepted one, and only an instance not heard before has
//! its timestamp judged against `max_clock_skew`. The node's clock is
//! measured ([`clock`]) from every authenticated message that is not a
//! replay. A rejected message is counted by reason ([`rejection`]) and
//! logged with its sender's address, rate-limited per reason, and the loop
//! carries on. Accepted messages update the state table
//! (`master::view`); what changed is logged and queued for the panel.
//!
//! The folder is the receiver thread: this file its loop, beside it the
//! per-message checks (replay, rejection, clock).

pub mod clock;
pub mod rejection;
pub mod replay;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::{mono_ms, now_ms};
use crate::log_limited;
use crate::master::panel::queue::PanelQueue;
use crate::master::panel::update::Update;
use crate::master::view::table::StateTable;
use crate::protocol::{MacKey, MAX_PAYLOAD};
use crate::ratelimit::RateLimit;
use crate::service::Shutdown;
use crate::zmq_socket;
use clock::{ClockLine, ClockWatch};
use rejection::Rejection;
use replay::{Accepted, Refusal, ReplayGuard};

/// Frames kept from one multipart message; a message with more is rejected
/// whatever its content, but still read to its end (only counted).
const MAX_FRAMES: usize = 2;
/// How long a connecting peer has to finish the ZeroMQ handshake, in ms.
pub const HANDSHAKE_MS: i32 = 5_000;
/// Messages handled per wake-up before housekeeping gets a turn.
const BURST: usize = 1000;
/// Connections the kernel may hold for the master before it accepts them
/// (libzmq's default is 100). After a master restart or a network flap
/// every node reconnects at once: with 1,000 nodes, a queue of 100
/// overflowed and the refused nodes retried a second later (measured:
/// 785 overflows in one bench storm). The kernel caps this at
/// `net.core.somaxconn` (128 on CentOS 6 and 7: raise it for big clusters,
/// docs/vmwatch-master.8). The same as the units' open-file limit.
pub const BACKLOG: i32 = 4096;

/// Counters of what the receiver saw, by outcome.
#[derive(Debug, Default, Clone)]
pub struct ReceiverCounters {
    pub accepted: u64,
    /// Rejections by reason.
    pub rejected: BTreeMap<Rejection, u64>,
}

/// Binds the PULL socket. ZeroMQ's own size cap keeps a hostile peer from
/// making us buffer more than a few times the protocol limit.
pub fn bind(ctx: &zmq::Context, endpoint: &str) -> Result<zmq::Socket, String> {
    let place = format!("on {endpoint}");
    let socket = zmq_socket::open(ctx, zmq::PULL, endpoint, &place, |s| {
        s.set_maxmsgsize(4 * MAX_PAYLOAD as i64)?;
        s.set_rcvhwm(10_000)?;
        s.set_linger(0)?;
        s.set_backlog(BACKLOG)?;
        // A peer that connects and never completes the ZeroMQ handshake is
        // dropped after this long (libzmq's default is 30 s), which bounds
        // what half-open connections can hold; the process's file limit
        // bounds how many there can be at once (docs/protocol.md,
        // "Transport").
        s.set_handshake_ivl(HANDSHAKE_MS)?;
        // Only holders of the secret get past the handshake (admission/zap.rs); dead
        // or silent connections are closed (zmq_socket::keep_alive).
        crate::master::admission::zap::require_credential(s)?;
        zmq_socket::keep_alive(s)
    })?;
    socket.bind(endpoint).map_err(|e| {
        format!("cannot listen on {endpoint}: {e} (is another master running, or is `listen` an address of this host?)")
    })?;
    Ok(socket)
}

/// One received multipart message, its frames as ZeroMQ delivered them
/// (not copied).
struct Received {
    /// The first [`MAX_FRAMES`] frames; `kept` of them are real.
    frames: [zmq::Message; MAX_FRAMES],
    kept: usize,
    total_frames: usize,
}

impl Received {
    /// The sender's address, looked up only for the log (rejections, new
    /// instances): a metadata lookup and a string per message otherwise.
    fn peer(&mut self) -> String {
        self.frames[0]
            .gets("Peer-Address")
            .unwrap_or("unknown")
            .to_string()
    }
}

/// The receiver's state.
pub struct Receiver {
    socket: zmq::Socket,
    key: MacKey,
    guard: ReplayGuard,
    pub table: StateTable,
    queue: Arc<PanelQueue>,
    pub counters: ReceiverCounters,
    limits: BTreeMap<Rejection, RateLimit>,
    /// Updates of this burst, not yet queued for the panel.
    held: Vec<Update>,
    /// Graphite export, when configured (see [`crate::master::graphite`]).
    pub graphite: Option<crate::master::graphite::exporter::Exporter>,
    /// Whose clock is off ([`clock`]), and what the last tick found.
    pub clock: ClockWatch,
    pub clocks_off: Vec<ClockLine>,
}

impl Receiver {
    pub fn new(
        socket: zmq::Socket,
        secret: &str,
        guard: ReplayGuard,
        table: StateTable,
        queue: Arc<PanelQueue>,
        clock: ClockWatch,
    ) -> Receiver {
        Receiver {
            socket,
            key: MacKey::new(secret.as_bytes()),
            guard,
            table,
            queue,
            counters: ReceiverCounters::default(),
            limits: BTreeMap::new(),
            held: Vec::new(),
            graphite: None,
            clock,
            clocks_off: Vec::new(),
        }
    }

    pub fn guard(&self) -> &ReplayGuard {
        &self.guard
    }

    /// Reads one whole multipart message without blocking.
    fn recv(&self) -> Option<Received> {
        let first = self.socket.recv_msg(zmq::DONTWAIT).ok()?;
        let mut more = first.get_more();
        let mut r = Received {
            frames: [first, zmq::Message::new()],
            kept: 1,
            total_frames: 1,
        };
        while more {
            let Ok(m) = self.socket.recv_msg(0) else {
                break;
            };
            more = m.get_more();
            if r.kept < MAX_FRAMES {
                r.frames[r.kept] = m;
                r.kept += 1;
            }
            r.total_frames += 1;
        }
        Some(r)
    }

    fn reject(&mut self, reason: Rejection, peer: &str, why: &dyn std::fmt::Display) {
        *self.counters.rejected.entry(reason).or_insert(0) += 1;
        let limit = self
            .limits
            .entry(reason)
            .or_insert_with(|| RateLimit::new(5, Duration::from_secs(60)));
        log_limited!(
            limit,
            log::Level::Warn,
            "rejected message from {peer}: {why}"
        );
    }

    /// Handles one message; the state table changes only if it is accepted.
    fn handle(&mut self, mut r: Received) {
        // Only the first frames were kept; the count is checked on the real
        // number, so the log says how many frames the peer really sent.
        if r.total_frames != 2 {
            let e = crate::protocol::WireError::Frames(r.total_frames);
            return self.reject(Rejection::from(&e), &r.peer(), &e);
        }
        let msg = match self.key.decode(&r.frames[..r.kept]) {
            Ok(m) => m,
            Err(e) => return self.reject(Rejection::from(&e), &r.peer(), &e),
        };
        let (now, mono) = (now_ms(), mono_ms());
        let checked = self.guard.check(&msg.header, now, mono);
        // Authenticated, and not a replay: its timestamp tells the node's
        // clock, even when it is too far off to accept a new instance.
        if matches!(checked, Ok(_) | Err(Refusal::Stale { .. })) {
            let h = &msg.header;
            self.clock.measured(&h.node, h.ts_ms, now, mono);
        }
        match checked {
            Ok(Accepted::NewInstance) => {
                log::info!(
                    "node {} (instance {:016x}) connected from {}",
                    msg.header.node,
                    msg.header.instance,
                    r.peer()
                );
            }
            Ok(Accepted::Known) => {}
            Err(refusal) => {
                let why = format!("node {}: {refusal}", msg.header.node);
                return self.reject(Rejection::from(&refusal), &r.peer(), &why);
            }
        }
        self.counters.accepted += 1;
        log::debug!(
            "accepted {} from node {} seq {}",
            msg.body.kind(),
            msg.header.node,
            msg.header.seq
        );
        if let Some(host) = &msg.header.host {
            // The address is looked up once per host and node id.
            if !self.table.identity().knows(&msg.header.node, host) {
                self.table.introduce(&msg.header.node, host, r.peer());
            }
        }
        let updates = self.table.apply(&msg, now);
        self.table.heard(&msg.header.node, mono);
        if let Some(g) = self.graphite.as_mut() {
            g.message(msg);
        }
        self.emit(updates);
    }

    /// Registers each change in the log and holds it for the panel until
    /// [`deliver`](Self::deliver), at the end of the burst.
    pub fn emit(&mut self, updates: Vec<Update>) {
        for u in &updates {
            match u {
                Update::Node { up: false, .. }
                | Update::NodeForgotten { .. }
                | Update::Duplicate { active: true, .. } => {
                    log::warn!("{}", u.log_line())
                }
                _ => log::info!("{}", u.log_line()),
            }
        }
        self.held.extend(updates);
    }

    /// What [`emit`](Self::emit) holds for the panel, not queued yet.
    pub fn held(&self) -> &[Update] {
        &self.held
    }

    /// Queues what [`emit`](Self::emit) held for the panel: one lock and at
    /// most one wake-up for a burst of up to a thousand messages.
    pub fn deliver(&mut self) {
        if !self.held.is_empty() {
            self.queue.push_all(self.held.drain(..));
        }
    }

    /// Runs until a stop is requested; the message in hand is finished
    /// first. `housekeeping` runs about every `tick` (state file, liveness,
    /// [`Wake::Tick`]), after every burst that has news for the panel,
    /// before the news is queued ([`Wake::News`]: the state file is written
    /// then, so that a kill right after loses none of it), and when the
    /// panel took updates ([`Wake::Settled`]: written again, so that it no
    /// longer lists them). Between messages it sleeps until the next tick,
    /// a settled call or a stop.
    pub fn run(
        &mut self,
        shutdown: &Shutdown,
        tick: Duration,
        mut housekeeping: impl FnMut(&mut Receiver, Wake),
    ) {
        let mut last = Instant::now();
        while !shutdown.stopping() {
            // Sleeps until a message, the next tick or a stop.
            let left = tick
                .saturating_sub(last.elapsed())
                .as_micros()
                .div_ceil(1000);
            let mut items = [
                self.socket.as_poll_item(zmq::POLLIN),
                zmq::PollItem::from_fd(shutdown.stop_fd(), zmq::POLLIN),
                zmq::PollItem::from_fd(self.queue.settled().fd(), zmq::POLLIN),
            ];
            let _ = zmq::poll(&mut items, i64::try_from(left).unwrap_or(i64::MAX));
            if items[2].is_readable() {
                self.queue.settled().clear();
                housekeeping(self, Wake::Settled);
            }
            // A burst's log lines are written together (see logging::hold).
            crate::logging::hold();
            for _ in 0..BURST {
                let Some(r) = self.recv() else { break };
                self.handle(r);
                if shutdown.stopping() {
                    break;
                }
            }
            if !self.held.is_empty() {
                housekeeping(self, Wake::News);
            }
            self.deliver();
            crate::logging::release();
            if last.elapsed() >= tick {
                last = Instant::now();
                let (now, mono) = (now_ms(), mono_ms());
                self.clocks_off = self.clock.tick(now, mono);
                let updates = self.table.tick(now, mono);
                self.emit(updates);
                if !self.held.is_empty() {
                    housekeeping(self, Wake::News);
                }
                self.deliver();
                housekeeping(self, Wake::Tick);
            }
        }
    }
}

/// Why [`Receiver::run`] calls its housekeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// About every tick.
    Tick,
    /// The burst just handled has news for the panel, still held.
    News,
    /// The panel took updates that the state file lists as pending.
    Settled,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_asks_for_an_accept_queue_of_backlog_connections() {
        let ctx = zmq::Context::new();
        let socket = bind(&ctx, "tcp://127.0.0.1:*").unwrap();
        assert_eq!(socket.get_backlog().unwrap(), BACKLOG);
    }
}
