//! The receiving half of the raw ZeroMQ pair: the master's own PULL socket
//! settings and handshake (PLAIN, its ZAP handler, with `secret`), and
//! nothing else — no MAC, no parsing, no state. What it
//! manages is what the transport allows on this machine, the ceiling for
//! the master.

use crate::fleet::{say, wait_for};
use vmwatch::clock::now_ms;

/// Binds `endpoint`, says `ready` after `hello` messages, then receives
/// `count` more and says when the last arrived; waits for `exit`.
pub fn pull(endpoint: &str, secret: &str, hello: u64, count: u64) {
    use vmwatch::master::admission::zap;
    let ctx = zmq::Context::new();
    let zap_socket = zap::bind(&ctx).unwrap_or_else(|e| crate::fleet::die(&e));
    let stop = vmwatch::service::Shutdown::new();
    let zap_thread = {
        let stop = stop.clone();
        let mut z = zap::Zap::new(zap_socket, secret, 300, 0);
        std::thread::spawn(move || z.run(&stop))
    };
    let socket =
        vmwatch::master::receiver::bind(&ctx, endpoint).unwrap_or_else(|e| crate::fleet::die(&e));
    say("listening");
    let mut msg = zmq::Message::new();
    let mut frames = 0u64;
    let mut bytes = 0u64;
    let mut got = 0u64;
    let receive = |msg: &mut zmq::Message, frames: &mut u64, bytes: &mut u64| loop {
        socket
            .recv(msg, 0)
            .unwrap_or_else(|e| crate::fleet::die(&format!("receive failed: {e}")));
        *frames += 1;
        *bytes += msg.len() as u64;
        if !msg.get_more() {
            return;
        }
    };
    while got < hello {
        receive(&mut msg, &mut frames, &mut bytes);
        got += 1;
    }
    say("ready");
    let (frames0, bytes0) = (frames, bytes);
    for _ in 0..count {
        receive(&mut msg, &mut frames, &mut bytes);
    }
    say(&format!(
        "done last_ms={} messages={count} frames={} bytes={}",
        now_ms(),
        frames - frames0,
        bytes - bytes0
    ));
    wait_for("exit");
    stop.request_stop();
    let _ = zap_thread.join();
}
