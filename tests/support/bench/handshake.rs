//! Section `handshake` (issue 17): what the PLAIN handshake with a one-time
//! credential and the ZAP handler cost against ZeroMQ's NULL mechanism (the
//! transport before it), side by side in one process over loopback, in
//! alternating rounds: the time from `connect` to the first message received
//! (a node's reconnection), and messages a second over one connection.
use std::time::Instant;

use vmwatch::handshake::Credential;
use vmwatch::master::admission::zap::{self, Zap};
use vmwatch::protocol::MacKey;
use vmwatch::service::Shutdown;

use crate::Run;

const SECRET: &str = "BENCH0SECRET0123456789";

/// A PULL socket as the master binds it (PLAIN with a ZAP thread) or as
/// before (NULL); the ZAP thread, if any, stops when `stop` is set.
struct Listener {
    ctx: zmq::Context,
    pull: zmq::Socket,
    endpoint: String,
    stop: std::sync::Arc<Shutdown>,
    zap: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    fn new(plain: bool) -> Listener {
        let ctx = zmq::Context::new();
        let stop = Shutdown::new();
        // The master's own loop: it sleeps in zmq_poll between requests.
        let zap = plain.then(|| {
            let mut z = Zap::new(zap::bind(&ctx).unwrap(), SECRET, 300, 0);
            let stop = stop.clone();
            std::thread::spawn(move || z.run(&stop))
        });
        let pull = ctx.socket(zmq::PULL).unwrap();
        if plain {
            zap::require_credential(&pull).unwrap();
        }
        pull.set_rcvhwm(0).unwrap();
        pull.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = pull.get_last_endpoint().unwrap().unwrap();
        Listener {
            ctx,
            pull,
            endpoint,
            stop,
            zap,
        }
    }

    fn push(&self, plain: bool) -> zmq::Socket {
        let push = self.ctx.socket(zmq::PUSH).unwrap();
        push.set_linger(0).unwrap();
        push.set_sndhwm(0).unwrap();
        if plain {
            Credential::fresh(&MacKey::new(SECRET.as_bytes()), "bench")
                .set_on(&push)
                .unwrap();
        }
        push.connect(&self.endpoint).unwrap();
        push
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.request_stop();
        if let Some(t) = self.zap.take() {
            let _ = t.join();
        }
    }
}

/// Median connect-to-first-message time over `n` connections, and the 95th
/// percentile, in µs.
fn connect_times(plain: bool, n: usize) -> (f64, f64) {
    let l = Listener::new(plain);
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let push = l.push(plain);
        push.send("hello", 0).unwrap();
        l.pull.recv_bytes(0).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (times[n / 2], times[n * 95 / 100])
}

/// Two-frame messages of a heartbeat's size a second over one connection.
fn throughput(plain: bool, n: u64) -> f64 {
    let l = Listener::new(plain);
    let push = l.push(plain);
    let payload = vec![b'p'; 90];
    let mac = vec![b'0'; 64];
    push.send_multipart([&payload, &mac], 0).unwrap();
    l.pull.recv_multipart(0).unwrap();
    let t = Instant::now();
    for _ in 0..n {
        push.send_multipart([&payload, &mac], 0).unwrap();
    }
    for _ in 0..n {
        l.pull.recv_multipart(0).unwrap();
    }
    n as f64 / t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

pub fn handshake(run: &Run, out: &mut String) {
    let conns = run.count(300, 20) as usize;
    let msgs = run.count(200_000, 2_000);
    let (mut null_c, mut plain_c, mut null_p95, mut plain_p95) = (vec![], vec![], vec![], vec![]);
    let (mut null_t, mut plain_t) = (vec![], vec![]);
    for _ in 0..3 {
        let (m, p) = connect_times(false, conns);
        null_c.push(m);
        null_p95.push(p);
        let (m, p) = connect_times(true, conns);
        plain_c.push(m);
        plain_p95.push(p);
        null_t.push(throughput(false, msgs));
        plain_t.push(throughput(true, msgs));
    }
    let (nc, pc) = (median(null_c), median(plain_c));
    let (nt, pt) = (median(null_t), median(plain_t));
    out.push_str(&format!(
        "| connect to first message received, loopback, NULL (before) vs PLAIN + one-time credential + ZAP (now), median of {conns} connections, median of 3 rounds | NULL {nc:.0} µs (p95 {:.0} µs); PLAIN {pc:.0} µs (p95 {:.0} µs): {:.2}× |\n\
         | two-frame messages (90 + 64 bytes) a second over one connection, NULL vs PLAIN | NULL {nt:.0}/s, PLAIN {pt:.0}/s: {:.2}× |\n",
        median(null_p95),
        median(plain_p95),
        pc / nc,
        pt / nt
    ));
}
