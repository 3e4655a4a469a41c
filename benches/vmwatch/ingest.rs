//! Section: master ingest (issue 10): accepted signed messages a second,
//! one master, many simulated nodes, for heartbeats, single lifecycle
//! events and whole snapshots; side by side with a raw ZeroMQ PUSH/PULL
//! pair moving the same messages (the same bytes) without verifying them,
//! in alternating rounds. The CPU time of every thread of both processes
//! over the timed part says which side saturated.

use crate::cluster::{
    children_ms, field, lg_args, named, since, threads, Loadgen, LogTail, Master, Threads,
};
use crate::common::free_port;
use crate::Run;

/// One timed run: messages a second and how busy each side was, as
/// shares of the wall time.
struct Measured {
    rate: f64,
    /// The thread that takes the messages (the master's receiver, the raw
    /// pull's main thread): on a CPU, and runnable but waiting for one.
    rx_cpu: f64,
    rx_wait: f64,
    /// The whole receiving process, with the panel command's runs.
    rx_all: f64,
    /// The sender's sending thread, and the whole sender.
    tx_cpu: f64,
    tx_wait: f64,
    tx_all: f64,
    /// CPU µs a message: the receiving thread, the receiving process.
    rx_us: f64,
    rx_all_us: f64,
}

/// The load generator's options for one run.
fn load(kind: &str, ep: &str, count: u64, nodes: u64, tag: &str) -> Vec<String> {
    lg_args(
        "ingest",
        ep,
        &[
            ("kind", kind.to_string()),
            ("count", count.to_string()),
            ("nodes", nodes.to_string()),
            ("prefix", tag.to_string()),
            ("seed", (tag.len() as u64 * 7919 + count).to_string()),
        ],
    )
}

/// Both sides' scheduler accounts since `go`.
struct Before {
    rx: Threads,
    rx_children: f64,
    tx: Threads,
}

impl Before {
    fn take(rx_pid: u32, tx_pid: u32) -> Before {
        Before {
            rx: threads(rx_pid),
            rx_children: children_ms(rx_pid),
            tx: threads(tx_pid),
        }
    }

    /// `rx_name`: the receiving thread's name ("" for the main thread).
    fn measure(&self, rx_pid: u32, rx_name: &str, tx_pid: u32, wall_ms: u64, n: u64) -> Measured {
        let wall = wall_ms.max(1) as f64;
        let rx = since(&self.rx, &threads(rx_pid));
        let tx = since(&self.tx, &threads(tx_pid));
        let thread = if rx_name.is_empty() {
            rx.get(&rx_pid).cloned().unwrap_or_default()
        } else {
            named(&rx, rx_name)
        };
        let sending = tx.get(&tx_pid).cloned().unwrap_or_default();
        let children = children_ms(rx_pid) - self.rx_children;
        let all = named(&rx, "").cpu_ms + children;
        Measured {
            rx_us: thread.cpu_ms * 1000.0 / n.max(1) as f64,
            rx_all_us: all * 1000.0 / n.max(1) as f64,
            rate: n as f64 * 1000.0 / wall,
            rx_cpu: thread.cpu_ms / wall,
            rx_wait: thread.wait_ms / wall,
            rx_all: all / wall,
            tx_cpu: sending.cpu_ms / wall,
            tx_wait: sending.wait_ms / wall,
            tx_all: named(&tx, "").cpu_ms / wall,
        }
    }
}

/// The real master: timed from the sender's first message to the log line
/// of the last node's marker (each node's messages arrive in order).
fn master_run(run: &Run, kind: &str, count: u64, nodes: u64, round: u64) -> (Measured, u64, u64) {
    let tag = format!("{kind}{round}");
    let mut m = Master::start(&run.dir, &tag, "");
    let mut tail = LogTail::new(&m.log);
    let mut lg = Loadgen::spawn(&load(kind, &m.endpoint(), count, nodes, &tag));
    let ready = lg.expect("ready");
    tail.wait_count(
        "connected from",
        nodes,
        "every simulated node's first message",
    );
    let before = Before::take(m.pid(), lg.pid());
    lg.say("go");
    let sent = lg.expect("sent");
    let (t0, total) = (field(&sent, "t0_ms"), field(&sent, "messages"));
    let t_end = tail.wait_count("domain marker-", nodes, "every node's last message");
    let measured = before.measure(
        m.pid(),
        "receiver",
        lg.pid(),
        t_end.saturating_sub(t0),
        total,
    );
    lg.finish();
    m.stop();
    let accepted = m.counter("accepted").unwrap_or(0);
    assert_eq!(
        accepted,
        nodes + total,
        "bench: the master accepted every message of the {kind} run"
    );
    (measured, total, field(&ready, "bytes"))
}

/// The raw pair: the same sender and messages to a PULL socket set up as
/// the master's, which only counts them.
fn raw_run(kind: &str, count: u64, nodes: u64, round: u64) -> Measured {
    let ep = format!("tcp://127.0.0.1:{}", free_port());
    let expected = count + nodes;
    let mut pull = Loadgen::spawn(&[
        "raw-pull".to_string(),
        ep.clone(),
        "--secret".to_string(),
        crate::cluster::secret(),
        "--hello".to_string(),
        nodes.to_string(),
        "--count".to_string(),
        expected.to_string(),
    ]);
    pull.expect("listening");
    let mut lg = Loadgen::spawn(&load(kind, &ep, count, nodes, &format!("raw{kind}{round}")));
    lg.expect("ready");
    pull.expect("ready");
    let before = Before::take(pull.pid(), lg.pid());
    lg.say("go");
    let sent = lg.expect("sent");
    assert_eq!(field(&sent, "messages"), expected, "bench: raw run size");
    let t0 = field(&sent, "t0_ms");
    let done = pull.expect("done");
    let wall = field(&done, "last_ms").saturating_sub(t0);
    let measured = before.measure(pull.pid(), "", lg.pid(), wall, expected);
    lg.finish();
    pull.finish();
    measured
}

/// Which side ran out of CPU, and how we know: a thread on a CPU 90 % of
/// the time saturated it; one that was runnable 90 % of the time (on a
/// CPU or waiting for one) wanted more than the shared cores gave it.
fn verdict(m: &Measured, rx: &str) -> String {
    let (rx_busy, tx_busy) = (m.rx_cpu + m.rx_wait, m.tx_cpu + m.tx_wait);
    let side = if m.rx_cpu >= 0.9 {
        format!("{rx} saturated its CPU")
    } else if m.tx_cpu >= 0.9 {
        "the sender saturated its CPU".to_string()
    } else if rx_busy >= 0.9 && rx_busy >= tx_busy {
        format!("{rx} was CPU-bound, sharing the 2 cores")
    } else if tx_busy >= 0.9 {
        "the sender was CPU-bound, sharing the 2 cores".to_string()
    } else {
        "neither thread was CPU-bound".to_string()
    };
    format!(
        "{side} ({rx}: on a CPU {}, waiting for one {}; sending thread: {}, {}; processes: {} and {})",
        pct(m.rx_cpu),
        pct(m.rx_wait),
        pct(m.tx_cpu),
        pct(m.tx_wait),
        pct(m.rx_all),
        pct(m.tx_all),
    )
}

fn pct(x: f64) -> String {
    format!("{:.0} %", x * 100.0)
}

pub fn ingest(run: &Run, out: &mut String) {
    let nodes = run.count(100, 10);
    let rounds = run.count(3, 1);
    for (kind, count, what) in [
        ("heartbeat", run.count(300_000, 2_000), "heartbeats"),
        (
            "event",
            run.count(300_000, 2_000),
            "single lifecycle events (each a change: logged, queued for the panel)",
        ),
        (
            "snapshot",
            run.count(10_000, 100),
            "snapshots of 100 domains (unchanged after the first)",
        ),
    ] {
        let (mut master, mut raw) = (Vec::new(), Vec::new());
        let (mut total, mut bytes) = (0, 0);
        for round in 0..rounds {
            let (m, t, b) = master_run(run, kind, count, nodes, round);
            (total, bytes) = (t, b);
            master.push(m);
            raw.push(raw_run(kind, count, nodes, round));
        }
        // The median round of each, by rate.
        let pick = |v: &mut Vec<Measured>| {
            v.sort_by(|a, b| a.rate.partial_cmp(&b.rate).unwrap());
            v.remove(v.len() / 2)
        };
        let (m, r) = (pick(&mut master), pick(&mut raw));
        let ratio = m.rate / r.rate;
        out.push_str(&format!(
            "| master ingest, {what}: {nodes} nodes, {total} messages of {bytes} bytes (median of {rounds} rounds) | master {:.0} msg/s, raw ZeroMQ pair {:.0} msg/s: {ratio:.2}× (target ≥ 250 000 msg/s and ≥ 0.60×). CPU a message: master {:.2} µs (its receiver thread {:.2} µs), raw pulling process {:.2} µs ({:.1}× less). Master run: {}. Raw run: {} |\n",
            m.rate,
            r.rate,
            m.rx_all_us,
            m.rx_us,
            r.rx_all_us,
            m.rx_all_us / r.rx_all_us.max(0.001),
            verdict(&m, "the master's receiver thread"),
            verdict(&r, "the pulling thread"),
        ));
    }
}
