//! `loadgen`: simulated vmwatch nodes, to measure what one master holds and
//! how fast it takes a cluster's traffic (`make bench`; docs/benchmarks.md).
//! A development tool, not shipped in the packages.
//!
//! Every simulated node has its own node id, instance and increasing
//! sequence number, its own ZeroMQ connection, and its messages are built,
//! packed and signed by the library's own code (`vmwatch::protocol`,
//! `vmwatch::node::pack`), so the master sees what real nodes send.
//!
//! ```text
//! loadgen storm    ENDPOINT [--nodes 1000] [--domains 100] [--hello no]
//! loadgen ingest   ENDPOINT --kind heartbeat|event|snapshot --count N [--nodes 100]
//! loadgen live     ENDPOINT [--nodes N] [--domains M] --rate EVENTS/S --seconds S
//!                  [--stats-every S] [--heartbeat-every S]
//! loadgen raw-pull ENDPOINT --secret S --hello N --count N
//! common: --secret S  --seed N (instances)  --seq N (first sequence number)
//!         --prefix P (node ids P-0000, ...)
//! ```
//!
//! `storm` and `ingest` sign everything before the timed part (so signing
//! cannot make the sender the bottleneck), say `ready`, wait for `go` on
//! standard input, send, say `sent t0_ms=... t1_ms=... messages=...`, and
//! keep their sockets until `exit`, so the bench can read their CPU time.
//! `storm` connects after `go` (a reconnect storm) unless `--hello yes`.
//! `ingest` ends each node's run with a marker event: a new domain
//! `marker-NODE`, which the master logs once that node's messages are all
//! handled. `raw-pull` is the other half of the raw ZeroMQ pair: the
//! master's socket settings, no verification.

mod fleet;
mod live;
mod raw;
mod sim;

use std::collections::HashMap;

use fleet::{die, say, wait_for, Fleet};
use sim::SimNode;
use vmwatch::clock::now_ms;

/// The command line: a mode, an endpoint and `--key value` options.
struct Args {
    mode: String,
    endpoint: String,
    opts: HashMap<String, String>,
}

impl Args {
    fn parse() -> Args {
        let mut it = std::env::args().skip(1);
        let usage = "usage: loadgen storm|ingest|live|raw-pull ENDPOINT [--key value ...] (see examples/loadgen/main.rs)";
        let mode = it.next().unwrap_or_else(|| die(usage));
        let endpoint = it.next().unwrap_or_else(|| die(usage));
        let mut opts = HashMap::new();
        while let Some(k) = it.next() {
            let key = k
                .strip_prefix("--")
                .unwrap_or_else(|| die(&format!("`{k}` is not an option; {usage}")));
            let v = it
                .next()
                .unwrap_or_else(|| die(&format!("--{key} needs a value")));
            opts.insert(key.to_string(), v);
        }
        Args {
            mode,
            endpoint,
            opts,
        }
    }

    fn text(&self, key: &str, default: &str) -> String {
        self.opts
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    fn num(&self, key: &str, default: u64) -> u64 {
        match self.opts.get(key) {
            None => default,
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| die(&format!("--{key} {v}: not a number"))),
        }
    }

    /// The simulated nodes of this run.
    fn nodes(&self, default_nodes: u64, default_domains: u64) -> Vec<SimNode> {
        let secret = self.text("secret", "");
        if secret.is_empty() {
            die("--secret is required: the master's secret");
        }
        let (prefix, seed, seq) = (
            self.text("prefix", "sim"),
            self.num("seed", 1),
            self.num("seq", 1),
        );
        let domains = self.num("domains", default_domains);
        (0..self.num("nodes", default_nodes))
            .map(|i| SimNode::new(&prefix, i, seed, domains, seq.max(1), secret.as_bytes()))
            .collect()
    }
}

/// Process CPU time so far, in ms (user + system, from /proc/self/stat).
fn own_cpu_ms() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|w| w.parse().unwrap_or(0))
        .collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after `)`.
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) * 10
}

/// Every node's snapshot at once; connects after `go` unless `--hello yes`.
fn storm(a: &Args) {
    let mut nodes = a.nodes(1000, 100);
    let hello = a.text("hello", "no") == "yes";
    let mut fleet = None;
    if hello {
        let f = Fleet::connect(&a.endpoint, &nodes);
        for (i, n) in nodes.iter_mut().enumerate() {
            f.send(i, &n.heartbeat(now_ms()));
        }
        fleet = Some(f);
    }
    let ts = now_ms();
    let msgs: Vec<Vec<[Vec<u8>; 2]>> = nodes.iter_mut().map(|n| n.snapshot(ts)).collect();
    let all = msgs.iter().flatten();
    let (count, bytes) = (
        all.clone().count(),
        all.map(|m| m[0].len() + m[1].len()).sum::<usize>(),
    );
    say(&format!(
        "ready messages={count} bytes={}",
        bytes / count.max(1)
    ));
    wait_for("go");
    let t0 = now_ms();
    let fleet = fleet.unwrap_or_else(|| Fleet::connect(&a.endpoint, &nodes));
    let mut sent = 0;
    for (i, parts) in msgs.iter().enumerate() {
        for m in parts {
            fleet.send(i, m);
            sent += 1;
        }
    }
    say(&format!(
        "sent t0_ms={t0} t1_ms={} messages={sent} cpu_ms={}",
        now_ms(),
        own_cpu_ms()
    ));
    wait_for("exit");
}

/// `--count` messages of one kind spread over the nodes, round-robin, then
/// one marker per node.
fn ingest(a: &Args) {
    let mut nodes = a.nodes(100, 100);
    let kind = a.text("kind", "heartbeat");
    let count = a.num("count", 100_000);
    let n = nodes.len() as u64;
    if n == 0 {
        die("--nodes must be at least 1");
    }
    let fleet = Fleet::connect(&a.endpoint, &nodes);
    for (i, node) in nodes.iter_mut().enumerate() {
        fleet.send(i, &node.heartbeat(now_ms()));
    }
    let ts = now_ms();
    let encode_start = std::time::Instant::now();
    let mut per_node: Vec<Vec<[Vec<u8>; 2]>> = vec![Vec::new(); nodes.len()];
    let mut bytes = 0usize;
    for k in 0..count {
        let i = (k % n) as usize;
        let node = &mut nodes[i];
        let mut msgs = match kind.as_str() {
            "heartbeat" => vec![node.heartbeat(ts)],
            "event" => vec![node.event((k / n) as usize, ts)],
            "snapshot" => node.snapshot(ts),
            other => die(&format!("--kind {other}: not heartbeat, event or snapshot")),
        };
        bytes += msgs.iter().map(|m| m[0].len() + m[1].len()).sum::<usize>();
        per_node[i].append(&mut msgs);
    }
    for (i, node) in nodes.iter_mut().enumerate() {
        per_node[i].push(node.marker(ts));
    }
    let total: usize = per_node.iter().map(Vec::len).sum();
    say(&format!(
        "ready messages={total} bytes={} signed_ms={}",
        bytes / count.max(1) as usize,
        encode_start.elapsed().as_millis()
    ));
    wait_for("go");
    let t0 = now_ms();
    let cpu0 = own_cpu_ms();
    let rounds = per_node.iter().map(Vec::len).max().unwrap_or(0);
    for k in 0..rounds {
        for (i, msgs) in per_node.iter().enumerate() {
            if let Some(m) = msgs.get(k) {
                fleet.send(i, m);
            }
        }
    }
    say(&format!(
        "sent t0_ms={t0} t1_ms={} messages={total} cpu_ms={}",
        now_ms(),
        own_cpu_ms() - cpu0
    ));
    wait_for("exit");
}

fn main() {
    let a = Args::parse();
    match a.mode.as_str() {
        "storm" => storm(&a),
        "ingest" => ingest(&a),
        "live" => {
            let pace = live::Pace {
                rate: a.num("rate", 100),
                seconds: a.num("seconds", 5),
                stats_every: a.num("stats-every", 10),
                heartbeat_every: a.num("heartbeat-every", 30),
            };
            live::run(&a.endpoint, &mut a.nodes(10, 100), &pace)
        }
        "raw-pull" => raw::pull(
            &a.endpoint,
            &a.text("secret", ""),
            a.num("hello", 0),
            a.num("count", 0),
        ),
        other => die(&format!(
            "unknown mode `{other}`: storm, ingest, live or raw-pull"
        )),
    }
}
