//! The `gate` thread: bounds the connections that are still in their
//! ZeroMQ handshake, per peer address and in all (docs/protocol.md, "Limits
//! on connections").
//!
//! Every connection costs the master a descriptor and libzmq's buffers
//! (about 13 KiB once the peer sent its greeting) until the handshake ends:
//! at most [`crate::master::receiver::HANDSHAKE_MS`] for a peer without the secret.
//! libzmq has no hook between `accept` and the handshake, so this thread
//! watches the PULL socket's monitor: each `ACCEPTED` event carries the new
//! connection's descriptor, whose peer address the kernel tells
//! (`getpeername`). A connection counts as young until the handshake limit
//! has passed since it was accepted (by then it is authenticated or gone).
//! When an address has more than [`PER_ADDRESS`] young connections, or the
//! master more than [`IN_ALL`], the newest is shut down (`shutdown(2)`: libzmq
//! sees the end of the stream and closes it as if the peer had). A real
//! node makes one connection; one that is turned away retries.
//!
//! Monitor events arrive after the fact: before a descriptor is shut down,
//! its peer address and port are checked again, so a descriptor libzmq
//! closed and reused meanwhile for another connection is never touched.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::log_limited;
use crate::ratelimit::RateLimit;
use crate::service::Shutdown;

/// Young connections (accepted less than the handshake limit ago) one
/// peer address may have.
pub const PER_ADDRESS: usize = 64;
/// Young connections in all: at ~15 KiB each (measured with glibc's
/// malloc) they stay about 32 MiB; 2,048 nodes reconnecting within 5 s
/// fit, a bigger cluster's reconnect storm has some nodes retry a moment
/// later.
pub const IN_ALL: usize = 2048;
/// After this many young connections at once, the memory freed when they
/// are gone is given back to the system (glibc keeps it otherwise).
const TRIM_AFTER: usize = 256;

const ENDPOINT: &str = "inproc://vmwatch-gate";

/// Connections the gate shut down, for the state file (`counter
/// rejected.gate`).
pub static CLOSED: AtomicU64 = AtomicU64::new(0);

/// Starts watching `socket` (before it binds); the returned socket is the
/// gate's end of the monitor.
pub fn watch(ctx: &zmq::Context, socket: &zmq::Socket) -> Result<zmq::Socket, String> {
    let err = |what: &str, e: zmq::Error| crate::zmq_socket::error(what, "for the gate", e);
    let events = zmq::SocketEvent::ACCEPTED as u16 | zmq::SocketEvent::DISCONNECTED as u16;
    socket
        .monitor(ENDPOINT, i32::from(events))
        .map_err(|e| err("monitor", e))?;
    let pair = ctx.socket(zmq::PAIR).map_err(|e| err("create", e))?;
    // Unbounded: libzmq's I/O thread blocks on a full monitor pipe.
    pair.set_rcvhwm(0).map_err(|e| err("configure", e))?;
    pair.connect(ENDPOINT).map_err(|e| err("connect", e))?;
    Ok(pair)
}

/// A connection the gate knows of.
#[derive(Debug, Clone, Copy)]
struct Conn {
    peer: SocketAddr,
    accepted: Instant,
}

/// The gate's view of the connections.
pub struct Gate {
    monitor: zmq::Socket,
    young_for: Duration,
    per_address: usize,
    in_all: usize,
    conns: HashMap<RawFd, Conn>,
    /// Young connections in order of acceptance (fd, peer): some may be
    /// gone already (checked against `conns`).
    young: VecDeque<(RawFd, SocketAddr, Instant)>,
    young_by_addr: HashMap<IpAddr, usize>,
    young_count: usize,
    /// The most young connections since the last trim.
    peak: usize,
    limit: RateLimit,
}

/// The peer address of descriptor `fd`, if it is a connected socket.
fn peer_of(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: sockaddr_storage is plain old data; getpeername writes at
    // most `len` bytes into it and does nothing else to the descriptor.
    unsafe {
        let mut ss: libc::sockaddr_storage = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        if libc::getpeername(fd, &mut ss as *mut _ as *mut libc::sockaddr, &mut len) != 0 {
            return None;
        }
        match i32::from(ss.ss_family) {
            libc::AF_INET => {
                let a = &*(&ss as *const _ as *const libc::sockaddr_in);
                let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
                Some(SocketAddr::from((ip, u16::from_be(a.sin_port))))
            }
            libc::AF_INET6 => {
                let a = &*(&ss as *const _ as *const libc::sockaddr_in6);
                let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
                Some(SocketAddr::from((ip, u16::from_be(a.sin6_port))))
            }
            _ => None,
        }
    }
}

impl Gate {
    pub fn new(monitor: zmq::Socket, handshake: Duration) -> Gate {
        Gate::with_limits(monitor, handshake, PER_ADDRESS, IN_ALL)
    }

    pub fn with_limits(
        monitor: zmq::Socket,
        handshake: Duration,
        per_address: usize,
        in_all: usize,
    ) -> Gate {
        Gate {
            monitor,
            young_for: handshake,
            per_address,
            in_all,
            conns: HashMap::new(),
            young: VecDeque::new(),
            young_by_addr: HashMap::new(),
            young_count: 0,
            peak: 0,
            limit: RateLimit::new(5, Duration::from_secs(60)),
        }
    }

    /// Forgets a young connection's place in the counts.
    fn unyoung(&mut self, ip: IpAddr) {
        if let Some(n) = self.young_by_addr.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.young_by_addr.remove(&ip);
            }
        }
        self.young_count = self.young_count.saturating_sub(1);
    }

    /// Connections accepted longer ago than the handshake limit are no
    /// longer young.
    fn age(&mut self, now: Instant) {
        while let Some(&(fd, peer, at)) = self.young.front() {
            if now.duration_since(at) < self.young_for {
                break;
            }
            self.young.pop_front();
            if self
                .conns
                .get(&fd)
                .is_some_and(|c| c.peer == peer && c.accepted == at)
            {
                self.unyoung(peer.ip());
            }
        }
    }

    fn accepted(&mut self, fd: RawFd, now: Instant) {
        let Some(peer) = peer_of(fd) else { return };
        if let Some(old) = self.conns.remove(&fd) {
            // Its DISCONNECTED is still on the way: the descriptor was reused.
            if now.duration_since(old.accepted) < self.young_for {
                self.unyoung(old.peer.ip());
            }
        }
        let conn = Conn {
            peer,
            accepted: now,
        };
        self.conns.insert(fd, conn);
        self.young.push_back((fd, peer, now));
        *self.young_by_addr.entry(peer.ip()).or_insert(0) += 1;
        self.young_count += 1;
        self.peak = self.peak.max(self.young_count);
        let from_addr = self.young_by_addr[&peer.ip()];
        if from_addr > self.per_address || self.young_count > self.in_all {
            // Still the same connection? Then shut it down; libzmq reports
            // the DISCONNECTED that removes it.
            if peer_of(fd) == Some(peer) {
                // SAFETY: shutdown only ends the TCP stream of a descriptor
                // libzmq owns and still has open (checked just above); it
                // stays open, and libzmq closes it on the end of stream.
                unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
                CLOSED.fetch_add(1, Relaxed);
                let young = self.young_count;
                let (per, all) = (self.per_address, self.in_all);
                log_limited!(
                    self.limit,
                    log::Level::Warn,
                    "closed a new connection from {}: {from_addr} connections from that address and {young} in all are in their ZeroMQ handshake (limits {per} and {all})",
                    peer.ip()
                );
            }
        }
    }

    fn disconnected(&mut self, fd: RawFd, now: Instant) {
        if let Some(c) = self.conns.remove(&fd) {
            if now.duration_since(c.accepted) < self.young_for {
                self.unyoung(c.peer.ip());
            }
        }
    }

    /// Handles every event waiting; false if there was none.
    pub fn serve(&mut self) -> bool {
        let mut any = false;
        while let Ok(frames) = self.monitor.recv_multipart(zmq::DONTWAIT) {
            any = true;
            let Some(ev) = frames.first().filter(|f| f.len() >= 6) else {
                continue;
            };
            let id = u16::from_le_bytes([ev[0], ev[1]]);
            let fd = i32::from_le_bytes([ev[2], ev[3], ev[4], ev[5]]);
            let now = Instant::now();
            self.age(now);
            if id == zmq::SocketEvent::ACCEPTED as u16 {
                self.accepted(fd, now);
            } else if id == zmq::SocketEvent::DISCONNECTED as u16 {
                self.disconnected(fd, now);
            }
        }
        any
    }

    /// Connections young now (for tests).
    pub fn young(&self) -> usize {
        self.young_count
    }

    /// Watches until a stop is requested.
    pub fn run(&mut self, shutdown: &Shutdown) {
        while !shutdown.stopping() {
            // Sleeps until a connection event, the next young connection
            // coming of age (its count changes) or a stop.
            let timeout = self.young.front().map_or(-1, |&(_, _, at)| {
                let left = (at + self.young_for).saturating_duration_since(Instant::now());
                i64::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i64::MAX)
            });
            let mut items = [
                self.monitor.as_poll_item(zmq::POLLIN),
                zmq::PollItem::from_fd(shutdown.stop_fd(), zmq::POLLIN),
            ];
            let _ = zmq::poll(&mut items, timeout);
            self.serve();
            self.age(Instant::now());
            if self.young_count == 0 && self.peak >= TRIM_AFTER {
                self.peak = 0;
                give_back_memory();
            }
        }
    }
}

/// Returns the free memory of every malloc arena to the system: after a
/// flood of connections, libzmq's freed buffers would otherwise stay in
/// glibc's arenas. (musl's allocator returns freed memory by itself.)
fn give_back_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real connections to a real libzmq socket: the fourth young one from
    /// the same address is shut down, the first three stay.
    #[test]
    fn connections_over_the_per_address_limit_are_shut_down() {
        let ctx = zmq::Context::new();
        let pull = ctx.socket(zmq::PULL).unwrap();
        let monitor = watch(&ctx, &pull).unwrap();
        pull.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = pull.get_last_endpoint().unwrap().unwrap();
        let port: u16 = endpoint.rsplit(':').next().unwrap().parse().unwrap();
        let mut gate = Gate::with_limits(monitor, Duration::from_secs(60), 3, 100);
        let peers: Vec<std::net::TcpStream> = (0..4)
            .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        while CLOSED.load(Relaxed) == 0 {
            assert!(Instant::now() < deadline, "nothing shut down");
            let mut items = [gate.monitor.as_poll_item(zmq::POLLIN)];
            let _ = zmq::poll(&mut items, 50);
            gate.serve();
        }
        // The last one reads the end of the stream; the others do not.
        use std::io::Read;
        let mut buf = [0u8; 64];
        let mut last = &peers[3];
        last.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        loop {
            match last.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => continue, // the greeting's signature
            }
        }
        let mut first = &peers[0];
        first.set_nonblocking(true).unwrap();
        assert!(
            !matches!(first.read(&mut buf), Ok(0)),
            "an older connection was closed"
        );
    }
}
