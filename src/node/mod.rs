//! vmwatch-node: libvirt events and stats to the master over ZeroMQ.
//!
//! Threads, each with one job:
//! - `libvirt-events` runs libvirt's event loop and turns lifecycle and
//!   reboot events (and snapshots) into [`Outgoing`] items;
//! - `stats` samples domain activity on its own libvirt connection, so a
//!   stuck domain can never delay lifecycle events;
//! - `sender` owns the PUSH socket and signs and sends.
//!
//! A bounded channel joins the producers to the sender; the main thread only
//! waits for signals. No thread wakes on a timer to look for a stop: each
//! sleeps until it has work (an event, an item, a connection event, a timer
//! with work: heartbeat, stats sample, status file, sync), and a stop rings
//! the bells they wait on (see [`crate::service::Shutdown`]).

pub mod clock_step;
pub mod config;
pub mod events;
pub mod gone;
pub mod host;
pub mod libvirt;
pub mod link;
pub mod messages;
pub mod pack;
pub mod reboots;
pub mod sample;
pub mod sender;
pub mod snapshot_gate;
pub mod stats;
pub mod status;

use std::sync::Arc;
use std::time::Duration;

use crate::service::{join_until, spawn, supervise, Readiness, Shutdown, STOP_BUDGET};
pub use config::NodeConfig;
pub use messages::{Flags, Outgoing};

/// The node daemon, as [`crate::service::run_daemon`] runs it.
pub struct Node;

impl crate::service::Daemon for Node {
    const ROLE: crate::role::Role = crate::role::Role::Node;
    type Config = NodeConfig;

    /// Runs the node until a signal or a fatal failure; `Err` says why it failed.
    fn run(
        cfg: &NodeConfig,
        shutdown: Arc<Shutdown>,
        readiness: &mut Readiness,
    ) -> Result<(), String> {
        libvirt::silence_default_errors();
        // Must come before the first connection is opened, or libvirt never
        // dispatches events for it.
        virt::event::event_register_default_impl()
            .map_err(|e| format!("cannot register libvirt's event loop: {e}"))?;
        let (tx, rx, sender_bell) = messages::queue(cfg.queue_size);
        let flags = Flags::shared();
        {
            // The event thread sleeps in libvirt's loop: a stop rings its bell.
            let flags = flags.clone();
            shutdown.on_stop(move || flags.events_bell.ring());
        }
        let source = events::EventSource::open(
            &cfg.uri,
            cfg.keepalive_interval,
            cfg.keepalive_count,
            &cfg.reboot_file,
            tx.clone(),
        )?;
        status::STATUS.libvirt(true);
        let zmq_ctx = zmq::Context::new();
        let host = source.host_uuid();
        let mut sender = sender::Sender::new(
            &zmq_ctx,
            &cfg.connect,
            &cfg.secret,
            &cfg.node_id,
            Duration::from_secs(cfg.heartbeat_interval),
            flags.clone(),
            cfg.queue_size,
        )?;
        sender.set_host(host.clone());
        log::info!(
            "node {} watching {} (libvirt host {}) and sending to {} (instance {:016x})",
            cfg.node_id,
            cfg.uri,
            host.as_deref()
                .unwrap_or("unknown: no host UUID in its capabilities or sysinfo"),
            cfg.connect,
            sender.instance()
        );

        let sync = Duration::from_secs(cfg.sync_interval);
        let events = {
            let (shutdown, flags, capacity) = (shutdown.clone(), flags.clone(), cfg.queue_size);
            spawn("libvirt-events", move || {
                source.run(&shutdown, &flags, sync, capacity)
            })
        };
        let sampling = cfg.stats.then(|| {
            let settings = stats::StatsSettings {
                uri: cfg.uri.clone(),
                interval: Duration::from_secs(cfg.stats_interval),
                force_legacy: cfg.stats_api == "legacy",
            };
            let (shutdown, tx) = (shutdown.clone(), tx.clone());
            spawn("stats", move || stats::run(settings, tx, &shutdown))
        });
        // The sender sees the channel close once every producer has stopped.
        drop(tx);
        let sending = {
            let shutdown = shutdown.clone();
            spawn("sender", move || sender.run(rx, &sender_bell, &shutdown))
        };
        let status_writer = {
            let shutdown = shutdown.clone();
            let (path, every) = (
                cfg.status_file.clone(),
                Duration::from_secs(cfg.status_interval),
            );
            let info = status::Info {
                node_id: cfg.node_id.clone(),
                connect: cfg.connect.clone(),
                uri: cfg.uri.clone(),
                started_ms: crate::clock::now_ms(),
            };
            spawn("status", move || status::run(path, every, info, &shutdown))
        };
        readiness.ready();
        supervise(&shutdown);
        // A thread blocked in libvirt (a hung libvirtd) cannot hold the stop:
        // the sender drains for at most DRAIN_LIMIT, the rest is left behind.
        // The sender's drain is the only work a stop waits for.
        let budget = STOP_BUDGET.min(sender::DRAIN_LIMIT + Duration::from_secs(1));
        let deadline = shutdown
            .deadline(budget)
            .unwrap_or_else(|| std::time::Instant::now() + budget);
        let _ = join_until(sending, deadline);
        let _ = join_until(events, deadline);
        if let Some(s) = sampling {
            let _ = join_until(s, deadline);
        }
        let failure = shutdown.failure();
        if let Some(info) = join_until(status_writer, deadline) {
            let why = failure.as_deref().unwrap_or("stopped by a signal");
            status::write_final(&cfg.status_file, &info, why);
        }
        match failure {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    fn status_file(cfg: &NodeConfig) -> &str {
        &cfg.status_file
    }
}
