//! The stats thread: per-domain activity over each `stats_interval`.
//!
//! It has its own libvirt connection, so a slow stats call can never delay
//! lifecycle events. Each sample is compared with the previous one: the
//! deltas of packets sent and disk write requests go to the master. A delta
//! is only called `whole` when the domain ran at both samples with the same
//! runtime id and no counter went backwards; otherwise (a restart, a
//! hot-unplugged device, a counter reset) the sample says so instead of
//! reporting a negative or inflated number.

use std::collections::HashMap;
use std::sync::mpsc::TrySendError;
use std::time::{Duration, Instant};

use virt::connect::Connect;

use super::messages::{Outgoing, ToSender};
use super::sample::{choose, read, Api, Reading};
use crate::log_limited;
use crate::protocol::StatSample;
use crate::ratelimit::RateLimit;
use crate::service::Shutdown;

/// Previous readings, by UUID.
#[derive(Debug, Default)]
pub struct Tracker {
    prev: HashMap<String, Reading>,
    at: Option<Instant>,
}

/// Sum of increases per device; `false` if any device's counter went down.
fn delta(
    prev: &std::collections::BTreeMap<String, u64>,
    cur: &std::collections::BTreeMap<String, u64>,
) -> (u64, bool) {
    let mut sum = 0u64;
    let mut monotonic = true;
    for (dev, &now) in cur {
        match prev.get(dev) {
            Some(&before) if now >= before => sum = sum.saturating_add(now - before),
            Some(_) => monotonic = false,
            // A device that appeared (hot-plug): everything it did happened
            // during this interval.
            None => sum = sum.saturating_add(now),
        }
    }
    if prev.keys().any(|d| !cur.contains_key(d)) {
        monotonic = false; // unplugged: its part of the old sum is gone
    }
    (sum, monotonic)
}

impl Tracker {
    /// Compares `readings` with the previous sample. Returns `None` for the
    /// first sample (nothing to compare with), else the interval and the
    /// samples of every domain seen now.
    pub fn advance(
        &mut self,
        readings: Vec<Reading>,
        now: Instant,
    ) -> Option<(u64, Vec<StatSample>)> {
        let interval = self.at.map(|t| now.duration_since(t));
        self.at = Some(now);
        let mut samples = Vec::with_capacity(readings.len());
        let mut next = HashMap::with_capacity(readings.len());
        for r in readings {
            let sample = match self.prev.get(&r.domain.uuid) {
                Some(p) => {
                    let (tx, tx_ok) = delta(&p.tx_pkts, &r.tx_pkts);
                    let (wr, wr_ok) = delta(&p.wr_reqs, &r.wr_reqs);
                    let whole = p.running && r.running && p.run_id == r.run_id && tx_ok && wr_ok;
                    StatSample {
                        domain: r.domain.clone(),
                        whole,
                        tx_pkts: if whole { tx } else { 0 },
                        wr_reqs: if whole { wr } else { 0 },
                    }
                }
                None => StatSample {
                    domain: r.domain.clone(),
                    whole: false,
                    tx_pkts: 0,
                    wr_reqs: 0,
                },
            };
            samples.push(sample);
            next.insert(r.domain.uuid.clone(), r);
        }
        self.prev = next;
        interval.map(|i| (i.as_millis() as u64, samples))
    }
}

/// The stats thread's settings.
pub struct StatsSettings {
    pub uri: String,
    pub interval: Duration,
    pub force_legacy: bool,
}

/// Runs until a stop is requested. Connection failures are logged and
/// retried at the next interval: stats are not worth stopping the node for
/// (the event thread stops it if libvirtd is really gone).
pub fn run(settings: StatsSettings, tx: ToSender, shutdown: &Shutdown) {
    let mut tracker = Tracker::default();
    let mut conn: Option<(Connect, Api)> = None;
    let mut limit = RateLimit::new(3, Duration::from_secs(600));
    let mut next = Instant::now();
    while !shutdown.stopping() {
        let now = Instant::now();
        if now < next {
            shutdown.nap(next - now);
            continue;
        }
        next += settings.interval;
        if next < now {
            next = now + settings.interval; // we fell behind: don't burst
        }
        if conn.is_none() {
            match Connect::open(Some(&settings.uri)) {
                Ok(c) => {
                    let api = choose(&c, settings.force_legacy);
                    log::info!(
                        "stats: sampling every {} s with {api:?}",
                        settings.interval.as_secs()
                    );
                    conn = Some((c, api));
                }
                Err(e) => {
                    log_limited!(
                        limit,
                        log::Level::Warn,
                        "stats: cannot connect to {}: {e}",
                        settings.uri
                    );
                    continue;
                }
            }
        }
        let (c, api) = conn.as_ref().expect("just opened");
        let started = Instant::now();
        log::debug!("stats: reading domain stats");
        let readings = match read(c, *api) {
            Ok(r) => r,
            Err(e) => {
                log_limited!(
                    limit,
                    log::Level::Warn,
                    "stats: {e}; reconnecting next time"
                );
                conn = None;
                tracker = Tracker::default();
                continue;
            }
        };
        log::debug!(
            "stats: read {} domains in {} ms",
            readings.len(),
            started.elapsed().as_millis()
        );
        let Some((interval_ms, samples)) = tracker.advance(readings, started) else {
            continue;
        };
        match tx.try_send(Outgoing::Stats {
            interval_ms,
            samples,
        }) {
            Ok(()) => super::status::STATUS.queued(),
            Err(TrySendError::Full(_)) => {
                log_limited!(
                    limit,
                    log::Level::Warn,
                    "stats: queue to the master is full; this sample is dropped"
                );
            }
            Err(TrySendError::Disconnected(_)) => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::DomainId;
    use std::collections::BTreeMap;

    fn reading(run_id: u32, running: bool, tx: &[(&str, u64)], wr: &[(&str, u64)]) -> Reading {
        let m = |v: &[(&str, u64)]| {
            v.iter()
                .map(|(k, n)| (k.to_string(), *n))
                .collect::<BTreeMap<_, _>>()
        };
        Reading {
            domain: DomainId {
                uuid: "u".into(),
                name: "vm".into(),
            },
            run_id,
            running,
            tx_pkts: m(tx),
            wr_reqs: m(wr),
        }
    }

    fn one(t: &mut Tracker, r: Reading, at: Instant) -> Option<StatSample> {
        t.advance(vec![r], at).map(|(_, mut s)| s.remove(0))
    }

    #[test]
    fn deltas_over_devices_and_first_sample_is_a_baseline() {
        let mut t = Tracker::default();
        let t0 = Instant::now();
        assert!(one(
            &mut t,
            reading(1, true, &[("vnet0", 10)], &[("vda", 5)]),
            t0
        )
        .is_none());
        let s = one(
            &mut t,
            reading(1, true, &[("vnet0", 15)], &[("vda", 5)]),
            t0 + Duration::from_secs(1),
        )
        .unwrap();
        assert!(s.whole);
        assert_eq!((s.tx_pkts, s.wr_reqs), (5, 0));
        // A disk hot-plugged: its writes count, nothing goes negative.
        let s = one(
            &mut t,
            reading(1, true, &[("vnet0", 15)], &[("vda", 7), ("vdb", 3)]),
            t0 + Duration::from_secs(2),
        )
        .unwrap();
        assert_eq!((s.whole, s.tx_pkts, s.wr_reqs), (true, 0, 5));
    }

    #[test]
    fn restarts_and_resets_are_never_a_delta() {
        let mut t = Tracker::default();
        let t0 = Instant::now();
        one(
            &mut t,
            reading(1, true, &[("vnet0", 100)], &[("vda", 100)]),
            t0,
        );
        // Restarted (new runtime id) and already past the old counters.
        let s = one(
            &mut t,
            reading(2, true, &[("vnet0", 500)], &[("vda", 500)]),
            t0,
        )
        .unwrap();
        assert_eq!((s.whole, s.tx_pkts, s.wr_reqs), (false, 0, 0));
        // Counter went backwards with the same id (device re-created).
        let s = one(
            &mut t,
            reading(2, true, &[("vnet0", 3)], &[("vda", 600)]),
            t0,
        )
        .unwrap();
        assert!(!s.whole);
        // Unplugged device.
        let s = one(&mut t, reading(2, true, &[], &[("vda", 700)]), t0).unwrap();
        assert!(!s.whole);
        // Paused at one end.
        one(&mut t, reading(2, false, &[], &[("vda", 700)]), t0);
        let s = one(&mut t, reading(2, true, &[], &[("vda", 700)]), t0).unwrap();
        assert!(!s.whole);
    }
}
