//! The `zap` thread: the master's ZAP handler (ZeroMQ RFC 27), the one
//! owner of the `inproc://zeromq.zap.01` REP socket.
//!
//! The master's PULL socket is a ZMTP PLAIN server: for every PLAIN HELLO,
//! libzmq asks this thread whether to let the peer in, before it reads a
//! single message frame of that peer. The answer is yes only for a one-time
//! credential made with the shared secret (src/handshake.rs): a peer without
//! the secret, or replaying a credential it saw, is refused within the
//! handshake and disconnected, holding no message buffer. A peer speaking
//! another mechanism (NULL: an old node, or anybody) is refused by libzmq
//! itself. libzmq refuses every PLAIN handshake while no ZAP handler is bound,
//! so the socket is bound before the PULL socket listens and a master whose
//! handler is gone lets nobody in.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::clock::now_ms;
use crate::handshake::{self, Denial, NonceLedger};
use crate::log_limited;
use crate::protocol::MacKey;
use crate::ratelimit::RateLimit;
use crate::service::Shutdown;

/// Where libzmq sends its ZAP requests (fixed by RFC 27).
pub const ENDPOINT: &str = "inproc://zeromq.zap.01";

/// Binds the handler's socket; call it before the PULL socket binds.
pub fn bind(ctx: &zmq::Context) -> Result<zmq::Socket, String> {
    let s = ctx
        .socket(zmq::REP)
        .map_err(|e| crate::zmq_socket::error("create", "for ZAP", e))?;
    s.set_linger(0)
        .map_err(|e| crate::zmq_socket::error("configure", "for ZAP", e))?;
    s.bind(ENDPOINT)
        .map_err(|e| crate::zmq_socket::error("bind", "for ZAP", e))?;
    Ok(s)
}

/// The options that make a listening socket ask the ZAP handler: PLAIN
/// server, domain [`handshake::ZAP_DOMAIN`].
pub fn require_credential(s: &zmq::Socket) -> zmq::Result<()> {
    s.set_plain_server(true)?;
    s.set_zap_domain(handshake::ZAP_DOMAIN)
}

/// Handshakes of this process, for the state file: `counter
/// handshake.accepted` and `counter rejected.handshake` (every refusal,
/// whatever the reason: check_vmwatch adds it to the rejected rate).
pub struct HandshakeCounters {
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
}

/// The master's one set of handshake counters (one ZAP handler a process).
pub static HANDSHAKES: HandshakeCounters = HandshakeCounters {
    accepted: AtomicU64::new(0),
    refused: AtomicU64::new(0),
};

/// Counts of handshakes by outcome, for this handler's log line.
#[derive(Debug, Default, Clone)]
pub struct ZapCounters {
    pub accepted: u64,
    pub denied: std::collections::BTreeMap<&'static str, u64>,
}

/// The handler's state.
pub struct Zap {
    socket: zmq::Socket,
    key: MacKey,
    ledger: NonceLedger,
    pub counters: ZapCounters,
    limit: RateLimit,
}

impl Zap {
    /// `started_ms`: the master's start; credentials made before it are
    /// refused (the previous run's claims are not remembered).
    pub fn new(socket: zmq::Socket, secret: &str, max_clock_skew: u64, started_ms: u64) -> Zap {
        Zap {
            socket,
            key: MacKey::new(secret.as_bytes()),
            ledger: NonceLedger::new(max_clock_skew, started_ms),
            counters: ZapCounters::default(),
            limit: RateLimit::new(5, Duration::from_secs(60)),
        }
    }

    /// The answer to one request: status code and text.
    fn judge(&mut self, frames: &[Vec<u8>]) -> (&'static str, String, String) {
        // version, request id, domain, address, identity, mechanism,
        // then the mechanism's credentials (PLAIN: username, password).
        let address = frames
            .get(3)
            .map(|a| crate::kvline::short(&String::from_utf8_lossy(a)))
            .unwrap_or_else(|| "unknown".into());
        let verdict = match frames {
            [_, _, _, _, _, mech, user, pass] if mech.as_slice() == b"PLAIN" => {
                handshake::verify(&self.key, user, pass)
                    .and_then(|c| self.ledger.admit(&c, now_ms()).map(|()| c))
            }
            _ => Err(Denial::Malformed(
                "not a PLAIN request with a username and a password".into(),
            )),
        };
        match verdict {
            Ok(claim) => {
                self.counters.accepted += 1;
                HANDSHAKES.accepted.fetch_add(1, Relaxed);
                log::debug!("handshake of node {} from {address} accepted", claim.node);
                ("200", "OK".into(), claim.node)
            }
            Err(denial) => {
                *self.counters.denied.entry(denial.reason()).or_insert(0) += 1;
                HANDSHAKES.refused.fetch_add(1, Relaxed);
                log_limited!(
                    self.limit,
                    log::Level::Warn,
                    "refused the ZeroMQ handshake of {address}: {denial}"
                );
                ("400", denial.reason().into(), String::new())
            }
        }
    }

    /// Answers one request if one is waiting; false if none was.
    pub fn serve_one(&mut self) -> bool {
        let Ok(frames) = self.socket.recv_multipart(zmq::DONTWAIT) else {
            return false;
        };
        let (code, text, user) = self.judge(&frames);
        let request_id = frames.get(1).cloned().unwrap_or_default();
        let reply: [&[u8]; 6] = [
            b"1.0",
            &request_id,
            code.as_bytes(),
            text.as_bytes(),
            user.as_bytes(),
            b"",
        ];
        if let Err(e) = self.socket.send_multipart(reply, 0) {
            log::error!("cannot answer a ZAP request: {e}");
        }
        true
    }

    /// Answers requests until a stop is requested.
    pub fn run(&mut self, shutdown: &Shutdown) {
        while !shutdown.stopping() {
            // Sleeps until a request or a stop.
            let mut items = [
                self.socket.as_poll_item(zmq::POLLIN),
                zmq::PollItem::from_fd(shutdown.stop_fd(), zmq::POLLIN),
            ];
            let _ = zmq::poll(&mut items, -1);
            while self.serve_one() {}
        }
        log::info!(
            "zap stopped: {} handshakes accepted, refused: {:?}",
            self.counters.accepted,
            self.counters.denied
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::Credential;

    /// A real PLAIN handshake through libzmq: the right credential gets a
    /// message through, a wrong or replayed one none.
    #[test]
    fn only_a_fresh_credential_gets_a_message_through() {
        let ctx = zmq::Context::new();
        let mut zap = Zap::new(bind(&ctx).unwrap(), "s3cret", 300, now_ms() - 1000);
        let pull = ctx.socket(zmq::PULL).unwrap();
        require_credential(&pull).unwrap();
        pull.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = pull.get_last_endpoint().unwrap().unwrap();
        let key = MacKey::new(b"s3cret");
        let good = Credential::fresh(&key, "n1");
        let wrong = Credential::fresh(&MacKey::new(b"other"), "n1");
        // Sends one message with credential `c`: true once the message is
        // through, false once the handler refused the handshake.
        let try_send = |zap: &mut Zap, c: &Credential, text: &str| -> bool {
            let push = ctx.socket(zmq::PUSH).unwrap();
            push.set_plain_username(Some(&c.username)).unwrap();
            push.set_plain_password(Some(&c.password)).unwrap();
            push.set_immediate(true).unwrap();
            push.set_linger(0).unwrap();
            push.connect(&endpoint).unwrap();
            let refused = |z: &Zap| z.counters.denied.values().sum::<u64>();
            let before = refused(zap);
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            let mut sent = false;
            while std::time::Instant::now() < deadline {
                let mut items = [zap.socket.as_poll_item(zmq::POLLIN)];
                let _ = zmq::poll(&mut items, 10);
                zap.serve_one();
                if refused(zap) > before {
                    return false;
                }
                if !sent {
                    sent = push.send(text, zmq::DONTWAIT).is_ok();
                }
                if sent && pull.recv_string(zmq::DONTWAIT).is_ok() {
                    return true;
                }
            }
            panic!("neither through nor refused in 20 s");
        };
        assert!(!try_send(&mut zap, &wrong, "wrong"));
        assert!(try_send(&mut zap, &good, "good"));
        assert!(!try_send(&mut zap, &good, "replayed"));
        assert_eq!(zap.counters.accepted, 1);
        assert!(zap.counters.denied["bad_mac"] >= 1);
        assert!(zap.counters.denied["replay"] >= 1);
    }
}
