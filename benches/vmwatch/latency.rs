//! Event latency on the real pipeline: from the libvirt call that changes a
//! guest to `virsh event --loop` printing the event, to the master holding
//! the message, and to the panel command reading the update (see
//! [`crate::rig`] for how each is observed).
//!
//! Each event is a `virDomainSuspend` or `virDomainResume` made in this
//! process through the virt crate: the clock starts just before the call.
//! Suspend and resume are one libvirt event each (Suspended/Paused,
//! Resumed/Unpaused) and one state change each at the master, so the three
//! paths see the same events one to one. The next event is made 50 ms
//! after the previous one reached all three, so each finds the pipeline
//! idle (as real events, seconds apart, do): a panel call still running
//! would otherwise add its remaining time to the next event.
use std::time::{Duration, Instant};

use crate::guests::Guests;
use crate::rig::{Rig, NODE_ID};

/// How long one event may take to reach any observer.
const EVENT_DEADLINE: Duration = Duration::from_secs(10);
/// The pause between one event's arrival everywhere and the next call.
const GAP: Duration = Duration::from_millis(50);

/// Milliseconds from the call to each observer, per event.
#[derive(Default)]
pub struct Latencies {
    /// How long the libvirt call itself took to return.
    pub call: Vec<f64>,
    pub virsh: Vec<f64>,
    pub master: Vec<f64>,
    pub panel: Vec<f64>,
    /// Events made.
    pub events: usize,
}

/// `p`-th percentile by nearest rank of an unsorted sample, in its unit.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// p50, p99 and max of a sample, in ms, for a table cell.
pub fn summary(v: &[f64]) -> String {
    format!(
        "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(v, 50.0),
        percentile(v, 99.0),
        percentile(v, 100.0)
    )
}

fn ms(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1000.0
}

/// Makes `events` events (suspend, resume, suspend, ... over the guests in
/// turn) and times each to every observer. The first suspend/resume pair is
/// a warm-up (first use of the connections and code paths) and not counted.
/// `strict`: a missing event panics (the smoke run must be able to fail);
/// otherwise it is left out of that path's sample and shows as a shortfall.
pub fn measure(rig: &mut Rig, guests: &Guests, events: usize, strict: bool) -> Latencies {
    let mut out = Latencies::default();
    let n = guests.len();
    for k in 0..events + 2 {
        let (name, dom) = &guests.domains[(k / 2) % n];
        let suspend = k % 2 == 0;
        let (event, state) = if suspend {
            ("Suspended", "paused")
        } else {
            ("Resumed", "running")
        };
        let quoted = format!("'{name}'");
        let master_says = format!("node {NODE_ID}: domain {name} (");
        let master_state = format!("-> {state} ");
        let panel_name = format!(" name={name} ");
        let panel_state = format!(" state={state} ");
        let t0 = Instant::now();
        let called = if suspend { dom.suspend() } else { dom.resume() };
        let returned = Instant::now();
        if let Err(e) = called {
            panic!("bench: cannot {} {name}: {e}", state);
        }
        let deadline = t0 + EVENT_DEADLINE;
        let v = rig
            .events
            .wait(t0, deadline, |l| l.contains(&quoted) && l.contains(event));
        let m = rig.master_log.wait(t0, deadline, |l| {
            l.contains(&master_says) && l.contains(&master_state)
        });
        let p = rig.panel.wait(t0, deadline, |l| {
            l.starts_with("vmwatch.domain ") && l.contains(&panel_name) && l.contains(&panel_state)
        });
        if strict || k < 2 {
            for (what, got) in [("virsh event", &v), ("the master", &m), ("the panel", &p)] {
                assert!(
                    got.is_some(),
                    "bench: {event} of {name} never reached {what} within {} s",
                    EVENT_DEADLINE.as_secs()
                );
            }
        }
        if k >= 2 {
            out.events += 1;
            out.call.push(ms(t0, returned));
            for (got, into) in [
                (v, &mut out.virsh),
                (m, &mut out.master),
                (p, &mut out.panel),
            ] {
                if let Some((at, _)) = got {
                    into.push(ms(t0, at));
                }
            }
        }
        std::thread::sleep(GAP);
    }
    out
}
