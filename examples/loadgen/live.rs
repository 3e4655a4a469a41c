//! A cluster going about its business: every node connects and sends its
//! snapshot, then lifecycle events arrive at a given rate across the
//! nodes, each node sends a stats sample every `stats_every` seconds and a
//! heartbeat when it has been silent for `heartbeat_every`. Messages are
//! signed as they go out, as a real node signs them. Bounded by
//! `seconds`; ends with one marker event per node.

use std::time::{Duration, Instant};

use crate::fleet::{say, wait_for, Fleet};
use crate::sim::{mix, SimNode};
use vmwatch::clock::now_ms;

/// How busy the simulated cluster is.
pub struct Pace {
    /// Lifecycle events a second, over all nodes.
    pub rate: u64,
    pub seconds: u64,
    pub stats_every: u64,
    pub heartbeat_every: u64,
}

pub fn run(endpoint: &str, nodes: &mut [SimNode], pace: &Pace) {
    let fleet = Fleet::connect(endpoint, nodes);
    let start = Instant::now();
    let mut last_sent = vec![start; nodes.len()];
    let (mut snapshots, mut events, mut stats, mut heartbeats) = (0u64, 0u64, 0u64, 0u64);
    for (i, n) in nodes.iter_mut().enumerate() {
        for m in n.snapshot(now_ms()) {
            fleet.send(i, &m);
            snapshots += 1;
        }
    }
    let n = nodes.len().max(1) as u64;
    let stats_every = Duration::from_secs(pace.stats_every.max(1));
    // Each node's stats are due at its own offset within the interval.
    let mut stats_due: Vec<Instant> = (0..n)
        .map(|i| start + stats_every.mul_f64((i as f64 + 0.5) / n as f64))
        .collect();
    let heartbeat_every = Duration::from_secs(pace.heartbeat_every.max(1));
    let end = start + Duration::from_secs(pace.seconds);
    let mut x = 1u64;
    while Instant::now() < end {
        let now = Instant::now();
        let due = (now - start).as_secs_f64() * pace.rate as f64;
        while (events as f64) < due {
            x = mix(x);
            let i = (x % n) as usize;
            fleet.send(i, &nodes[i].event((x >> 32) as usize, now_ms()));
            last_sent[i] = now;
            events += 1;
        }
        for (i, node) in nodes.iter_mut().enumerate() {
            if now >= stats_due[i] {
                for m in node.stats(stats_every.as_millis() as u64, now_ms()) {
                    fleet.send(i, &m);
                    stats += 1;
                }
                stats_due[i] += stats_every;
                last_sent[i] = now;
            } else if now - last_sent[i] >= heartbeat_every {
                fleet.send(i, &node.heartbeat(now_ms()));
                last_sent[i] = now;
                heartbeats += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for (i, node) in nodes.iter_mut().enumerate() {
        fleet.send(i, &node.marker(now_ms()));
    }
    say(&format!(
        "done snapshots={snapshots} events={events} stats={stats} heartbeats={heartbeats} markers={n}"
    ));
    wait_for("exit");
}
