//! One connection attempt to the master: a PUSH socket carrying one fresh
//! handshake credential (src/handshake.rs), and the monitor that reports
//! what became of it.
//!
//! libzmq copies a socket's PLAIN username and password when `connect` is
//! called and offers the same ones on every reconnect; the master accepts a
//! credential only once. So the sender replaces the whole link after every
//! disconnect or refused handshake, and a new link never repeats a
//! credential (docs/protocol.md, "Handshake").

use std::sync::atomic::{AtomicU64, Ordering};

use crate::handshake::Credential;
use crate::protocol::MacKey;
use crate::zmq_socket;

/// Messages ZeroMQ may hold for a connected master before a send says
/// EAGAIN.
const SEND_HWM: i32 = 1000;
/// ZeroMQ's reconnect interval to an absent master, first and at most.
const RECONNECT_MS: i32 = 500;
const RECONNECT_MAX_MS: i32 = 5000;

/// What the monitor said about the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEvent {
    /// The handshake is done: messages flow.
    Up,
    /// The connection closed (after or during the handshake).
    Down,
    /// The master refused the credential (ZAP status code).
    Refused(u32),
    /// The handshake failed otherwise, e.g. a master without credentials
    /// (an older vmwatch-master: another security mechanism).
    Failed(u32),
}

/// A PUSH socket connecting with one credential, and its monitor.
pub struct Link {
    pub socket: zmq::Socket,
    monitor: zmq::Socket,
}

impl Link {
    /// A new socket connecting to `endpoint` with a fresh credential of
    /// `node`. ZeroMQ connects in the background and retries TCP; an absent
    /// master is not an error.
    pub fn open(
        ctx: &zmq::Context,
        endpoint: &str,
        key: &MacKey,
        node: &str,
    ) -> Result<Link, String> {
        static LINKS: AtomicU64 = AtomicU64::new(0);
        let place = format!("for {endpoint}");
        let cred = Credential::fresh(key, node);
        let socket = zmq_socket::open(ctx, zmq::PUSH, endpoint, &place, |s| {
            s.set_immediate(true)?;
            s.set_sndhwm(SEND_HWM)?;
            s.set_reconnect_ivl(RECONNECT_MS)?;
            s.set_reconnect_ivl_max(RECONNECT_MAX_MS)?;
            s.set_linger(0)?;
            cred.set_on(s)?;
            zmq_socket::keep_alive(s)
        })?;
        let zerr = |what: &str, e: zmq::Error| zmq_socket::error(what, &place, e);
        // A name per link: a closed socket's inproc name is freed later.
        let name = format!(
            "inproc://vmwatch-push-monitor-{}",
            LINKS.fetch_add(1, Ordering::Relaxed)
        );
        use zmq::SocketEvent as E;
        let events = E::HANDSHAKE_SUCCEEDED as u16
            | E::DISCONNECTED as u16
            | E::HANDSHAKE_FAILED_AUTH as u16
            | E::HANDSHAKE_FAILED_PROTOCOL as u16
            | E::HANDSHAKE_FAILED_NO_DETAIL as u16;
        socket
            .monitor(&name, events as i32)
            .map_err(|e| zerr("monitor", e))?;
        let monitor = ctx.socket(zmq::PAIR).map_err(|e| zerr("create", e))?;
        monitor.connect(&name).map_err(|e| zerr("monitor", e))?;
        socket.connect(endpoint).map_err(|e| zerr("connect", e))?;
        Ok(Link { socket, monitor })
    }

    /// The next monitor event, without waiting.
    pub fn event(&self) -> Option<LinkEvent> {
        use zmq::SocketEvent as E;
        loop {
            let frames = self.monitor.recv_multipart(zmq::DONTWAIT).ok()?;
            let Some(ev) = frames.first().filter(|f| f.len() >= 6) else {
                continue;
            };
            let id = u16::from_le_bytes([ev[0], ev[1]]);
            let value = u32::from_le_bytes([ev[2], ev[3], ev[4], ev[5]]);
            return Some(match id {
                x if x == E::HANDSHAKE_SUCCEEDED as u16 => LinkEvent::Up,
                x if x == E::DISCONNECTED as u16 => LinkEvent::Down,
                x if x == E::HANDSHAKE_FAILED_AUTH as u16 => LinkEvent::Refused(value),
                _ => LinkEvent::Failed(value),
            });
        }
    }

    /// A poll item that is ready when the monitor has something to say.
    pub fn monitor_item(&self) -> zmq::PollItem<'_> {
        self.monitor.as_poll_item(zmq::POLLIN)
    }
}
