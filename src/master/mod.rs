//! vmwatch-master: receives node messages and keeps the panel right.
//!
//! Threads, each with one job:
//! - `receiver` owns the PULL socket, authenticates every message and keeps
//!   the state table (see [`receiver`]);
//! - `panel` delivers queued updates by running the panel command;
//! - `graphite`, when configured, sends metrics to carbon (see [`graphite`]).
//!
//! The main thread only waits for signals.

pub mod activity;
pub mod config;
pub mod duplicates;
pub mod graphite;
pub mod graphite_sink;
pub mod panel;
pub mod panel_queue;
pub mod receiver;
pub mod replay;
pub mod state;
pub mod statefile;
pub mod update;

use std::sync::Arc;
use std::time::Duration;

pub use config::MasterConfig;
use panel::{PanelCommand, PanelCounters};
use panel_queue::PanelQueue;
use replay::ReplayGuard;
use state::StateTable;

use crate::service::{now_ms, spawn, supervise, Readiness, Shutdown};

/// Runs the master until a signal; `Err` says why it could not run.
pub fn run(
    cfg: &MasterConfig,
    shutdown: Arc<Shutdown>,
    readiness: &mut Readiness,
) -> Result<(), String> {
    let started_ms = now_ms();
    let ctx = zmq::Context::new();
    let socket = receiver::bind(&ctx, &cfg.listen)?;
    let queue = Arc::new(PanelQueue::new());
    let panel_counters = Arc::new(PanelCounters::default());
    let mut guard = ReplayGuard::new(cfg.max_clock_skew);
    let mut table = StateTable::new(cfg.check_activity, cfg.node_timeout);
    restore(cfg, &mut table, &mut guard, &queue);
    let mut receiver = receiver::Receiver::new(socket, &cfg.secret, guard, table, queue.clone());
    let (exporter, graphite_thread) = graphite::start(&cfg.graphite).unzip();
    receiver.graphite = exporter;
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
    let saver = StateSaver {
        queue: queue.clone(),
        panel: panel_counters.clone(),
        path: cfg.state_file.clone(),
        listen: cfg.listen.clone(),
        started_ms,
        limit: crate::ratelimit::RateLimit::new(1, Duration::from_secs(600)),
    };
    let receiving = {
        let shutdown = shutdown.clone();
        let every = Duration::from_secs(cfg.state_interval);
        spawn("receiver", move || {
            let mut saver = saver;
            let mut last_save = std::time::Instant::now();
            receiver.run(&shutdown, Duration::from_secs(1), |r| {
                if last_save.elapsed() >= every {
                    last_save = std::time::Instant::now();
                    saver.save(r);
                }
                if let Some(g) = r.graphite.as_mut() {
                    g.tick(&r.table, now_ms());
                }
            });
            let c = &receiver.counters;
            log::info!(
                "receiver stopped: {} messages accepted, rejected: {:?}",
                c.accepted,
                c.rejected
            );
            (receiver, saver)
        })
    };
    readiness.ready();
    supervise(&shutdown);
    let (receiver, mut saver) = receiving
        .join()
        .map_err(|_| "the receiver thread panicked".to_string())?;
    // The panel thread makes its last delivery attempt before the final
    // save, so the file lists exactly what is still undelivered.
    let _ = panel.join();
    saver.save(&receiver);
    log::info!("state saved to {}", cfg.state_file);
    // Dropping the receiver closes the graphite channel: that thread makes
    // one last, time-bounded delivery attempt and ends.
    drop(receiver);
    if let Some(t) = graphite_thread {
        let _ = t.join();
    }
    Ok(())
}

/// Writes the state file from the receiver's view.
struct StateSaver {
    queue: Arc<PanelQueue>,
    panel: Arc<PanelCounters>,
    path: String,
    listen: String,
    started_ms: u64,
    limit: crate::ratelimit::RateLimit,
}

impl StateSaver {
    fn save(&mut self, r: &receiver::Receiver) {
        let pending = self.queue.pending();
        let text = statefile::render(&statefile::View {
            table: &r.table,
            guard: r.guard(),
            counters: &r.counters,
            panel: &self.panel,
            pending: &pending,
            listen: &self.listen,
            started_ms: self.started_ms,
            now_ms: now_ms(),
        });
        if let Err(e) = statefile::write_atomic(std::path::Path::new(&self.path), &text) {
            crate::log_limited!(
                self.limit,
                log::Level::Error,
                "cannot write state file {}: {e} (check that its directory exists and is writable)",
                self.path
            );
        }
    }
}

/// Loads the state file left by the previous run, if any.
fn restore(
    cfg: &MasterConfig,
    table: &mut StateTable,
    guard: &mut ReplayGuard,
    queue: &PanelQueue,
) {
    let text = match std::fs::read_to_string(&cfg.state_file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log::info!(
                "no state file at {}: starting with an empty view",
                cfg.state_file
            );
            return;
        }
        Err(e) => {
            log::warn!(
                "cannot read state file {}: {e}; starting with an empty view",
                cfg.state_file
            );
            return;
        }
    };
    let loaded = statefile::load(&cfg.state_file, &text, table, guard, now_ms());
    for p in &loaded.problems {
        log::warn!("{p}");
    }
    if !loaded.complete {
        log::warn!(
            "state file {} is incomplete; what could be read was restored",
            cfg.state_file
        );
    }
    let domains: usize = table.nodes.values().map(|n| n.domains.len()).sum();
    log::info!(
        "restored {} nodes, {domains} domains and {} undelivered panel updates from {}",
        table.nodes.len(),
        loaded.pending.len(),
        cfg.state_file
    );
    for u in loaded.pending {
        queue.push(u);
    }
}

/// `vmwatch-master --status`: prints the state file for a person.
pub fn status(args: &crate::cli::Args) -> u8 {
    use crate::cli::exit;
    let cfg = match MasterConfig::load(&args.config) {
        Ok((c, _)) => c,
        Err(e) => {
            eprintln!("vmwatch-master: {e}");
            return exit::CONFIG;
        }
    };
    match std::fs::read_to_string(&cfg.state_file) {
        Ok(text) => {
            print!("{}", statefile::report(&text, now_ms()));
            exit::OK
        }
        Err(e) => {
            eprintln!(
                "vmwatch-master: cannot read state file {}: {e} (is vmwatch-master running? it writes the file every {} s)",
                cfg.state_file, cfg.state_interval
            );
            exit::RUNTIME
        }
    }
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
