//! The sending side of the load generator: one PUSH socket per simulated
//! node (as many TCP connections as real nodes would make), the bench's
//! go-ahead on standard input, and what to say on standard output.

use std::io::{BufRead, Write};

/// Sockets per ZeroMQ context (libzmq's default cap is 1023 a context).
const PER_CONTEXT: usize = 500;
/// How long closing waits for queued messages to leave.
const LINGER_MS: i32 = 5_000;

/// The PUSH sockets of a run, one per simulated node, in node order.
pub struct Fleet {
    pub sockets: Vec<zmq::Socket>,
    // Dropped after the sockets (field order): a context's drop waits for
    // its sockets' linger.
    _contexts: Vec<zmq::Context>,
}

impl Fleet {
    /// Creates a socket per node connecting to `endpoint`, each with a fresh
    /// handshake credential of its node. ZeroMQ connects in the background
    /// and queues what is sent before the connection is up. (A socket keeps
    /// its credential: after a master restart, a new fleet.)
    pub fn connect(endpoint: &str, nodes: &[crate::sim::SimNode]) -> Fleet {
        let mut contexts = Vec::new();
        let mut sockets = Vec::with_capacity(nodes.len());
        for (i, node) in nodes.iter().enumerate() {
            if i % PER_CONTEXT == 0 {
                contexts.push(zmq::Context::new());
            }
            let s = contexts
                .last()
                .expect("a context")
                .socket(zmq::PUSH)
                .unwrap_or_else(|e| die(&format!("cannot create socket {i}: {e}")));
            s.set_linger(LINGER_MS).expect("linger");
            node.credential().set_on(&s).expect("PLAIN credential");
            s.connect(endpoint)
                .unwrap_or_else(|e| die(&format!("cannot connect to {endpoint}: {e}")));
            sockets.push(s);
        }
        Fleet {
            sockets,
            _contexts: contexts,
        }
    }

    /// Sends one message on node `i`'s socket, waiting if ZeroMQ's queue
    /// for it is full.
    pub fn send(&self, i: usize, frames: &[Vec<u8>; 2]) {
        self.sockets[i]
            .send_multipart(frames.iter(), 0)
            .unwrap_or_else(|e| die(&format!("send failed on node {i}: {e}")));
    }
}

/// Ends the program with a message on standard error.
pub fn die(why: &str) -> ! {
    eprintln!("loadgen: {why}");
    std::process::exit(1)
}

/// Says `line` on standard output, at once.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Waits for the line `word` on standard input (the bench's go-ahead); the
/// end of input ends the program.
pub fn wait_for(word: &str) {
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        line.clear();
        match stdin.lock().read_line(&mut line) {
            Ok(0) | Err(_) => std::process::exit(0),
            Ok(_) if line.trim() == word => return,
            Ok(_) => {}
        }
    }
}
