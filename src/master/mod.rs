//! vmwatch-master: receives node messages and keeps the panel right.
//!
//! Threads, each with one job:
//! - `receiver` owns the PULL socket, authenticates every message and keeps
//!   the state table (see [`receiver`]);
//! - `panel` delivers queued updates by running the panel command.
//! The main thread only waits for signals.

pub mod activity;
pub mod config;
pub mod duplicates;
pub mod panel;
pub mod panel_queue;
pub mod receiver;
pub mod replay;
pub mod state;
pub mod update;

use std::sync::Arc;
use std::time::Duration;

pub use config::MasterConfig;
use panel::{PanelCommand, PanelCounters};
use panel_queue::PanelQueue;
use replay::ReplayGuard;
use state::StateTable;

use crate::service::{spawn, supervise, Readiness, Shutdown};

/// Runs the master until a signal; `Err` says why it could not run.
pub fn run(
    cfg: &MasterConfig,
    shutdown: Arc<Shutdown>,
    readiness: &mut Readiness,
) -> Result<(), String> {
    let ctx = zmq::Context::new();
    let socket = receiver::bind(&ctx, &cfg.listen)?;
    let queue = Arc::new(PanelQueue::new());
    let panel_counters = Arc::new(PanelCounters::default());
    let guard = ReplayGuard::new(cfg.max_clock_skew);
    let table = StateTable::new(cfg.check_activity, cfg.node_timeout);
    let mut receiver = receiver::Receiver::new(socket, &cfg.secret, guard, table, queue.clone());
    log::info!(
        "listening on {}; panel command: {}",
        cfg.listen,
        cfg.panel_command.join(" ")
    );

    let panel = {
        let cmd = PanelCommand {
            argv: cfg.panel_command.clone(),
            timeout: Duration::from_secs(cfg.panel_timeout),
        };
        let (queue, counters, shutdown, batch) = (
            queue.clone(),
            panel_counters.clone(),
            shutdown.clone(),
            cfg.panel_batch,
        );
        spawn("panel", move || {
            panel::run(queue, cmd, batch, counters, shutdown)
        })
    };
    let receiving = {
        let shutdown = shutdown.clone();
        let tick = Duration::from_secs(1);
        spawn("receiver", move || {
            receiver.run(&shutdown, tick, |_| {});
            let c = &receiver.counters;
            log::info!(
                "receiver stopped: {} messages accepted, rejected: {:?}",
                c.accepted,
                c.rejected
            );
        })
    };
    readiness.ready();
    supervise(&shutdown);
    let _ = receiving.join();
    let _ = panel.join();
    Ok(())
}

impl crate::service::Daemon for MasterConfig {
    const PROGRAM: &'static str = "vmwatch-master";

    fn load(
        path: &std::path::Path,
    ) -> Result<(Self, Vec<crate::config::Problem>), crate::config::ConfigError> {
        MasterConfig::load(path)
    }

    fn describe(&self) -> Vec<(String, String)> {
        MasterConfig::describe(self)
    }

    fn log_settings(&self) -> &crate::config::LogSettings {
        &self.log
    }

    fn disabled(&self) -> Option<String> {
        self.disabled.then(|| {
            format!(
                "disabled=yes in {}: monitoring is not enabled by the panel yet",
                self.path
            )
        })
    }

    fn run(&self, shutdown: Arc<Shutdown>, readiness: &mut Readiness) -> Result<(), String> {
        run(self, shutdown, readiness)
    }
}
