//! vmwatch-master: receives node messages and keeps the panel right.
//!
//! Threads, each with one job, and the folder each lives in:
//! - `zap` lets only holders of the secret past the ZeroMQ handshake, and
//!   `gate` bounds the connections still in their handshake, per address
//!   and in all ([`admission`]);
//! - `receiver` owns the PULL socket, authenticates every message
//!   ([`receiver`]) and keeps the state table ([`view`]);
//! - `panel` delivers queued updates by running the panel command
//!   ([`panel`]);
//! - `graphite`, when configured, sends metrics to carbon ([`graphite`]).
//!
//! The main thread only waits for signals. The receiver thread also writes
//! the state file ([`statefile`]); [`config`] is the master's configuration.
//! No thread wakes on a timer to look for a stop: each sleeps until it has
//! work (a message, a request, a connection event, an update for the panel,
//! the receiver's one-second tick) or a stop, which wakes them all (see
//! [`crate::service::Shutdown`]).

pub mod admission;
pub mod config;
pub mod graphite;
pub mod panel;
pub mod receiver;
pub mod statefile;
pub mod view;

use std::sync::Arc;
use std::time::{Duration, Instant};

use admission::{gate, zap};
use config::MasterConfig;
use panel::queue::PanelQueue;
use panel::{PanelCommand, PanelCounters};
use receiver::clock;
use receiver::replay::ReplayGuard;
use view::forget;
use view::table::StateTable;

use statefile::StateSaver;

use crate::clock::now_ms;

use crate::service::{join_until, spawn, supervise, Readiness, Shutdown, STOP_BUDGET};

/// The master daemon, as [`crate::service::run_daemon`] runs it.
pub struct Master;

impl crate::service::Daemon for Master {
    const ROLE: crate::role::Role = crate::role::Role::Master;
    type Config = MasterConfig;

    fn disabled(cfg: &MasterConfig) -> Option<String> {
        cfg.disabled.then(|| {
            format!(
                "disabled=yes in {}: monitoring is not enabled by the panel yet",
                cfg.path
            )
        })
    }

    /// Runs the master until a signal; `Err` says why it could not run.
    fn run(
        cfg: &MasterConfig,
        shutdown: Arc<Shutdown>,
        readiness: &mut Readiness,
    ) -> Result<(), String> {
        let started_ms = now_ms();
        let ctx = zmq::Context::new();
        // Before the PULL socket listens: no handshake without the handler.
        let mut zap = zap::Zap::new(
            zap::bind(&ctx)?,
            &cfg.secret,
            cfg.max_clock_skew,
            started_ms,
        );
        let socket = receiver::bind(&ctx, &cfg.listen)?;
        // (A connection accepted before this is merely not counted.)
        let mut gate = gate::Gate::new(
            gate::watch(&ctx, &socket)?,
            Duration::from_millis(receiver::HANDSHAKE_MS as u64),
        );
        let queue = Arc::new(PanelQueue::new());
        let panel_counters = Arc::new(PanelCounters::default());
        let mut guard = ReplayGuard::new(cfg.max_clock_skew);
        let mut table = StateTable::new(cfg.check_activity, cfg.node_timeout);
        table.set_forget_after_ms(cfg.node_forget_after * 1000);
        table.set_started_s(started_ms / 1000);
        let (pending, aside) =
            statefile::restore_file(&cfg.state_file, &mut table, &mut guard, now_ms());
        queue.push_all(pending);
        for r in aside {
            queue.restore_aside(r);
        }
        let mut clock = clock::ClockWatch::new(cfg.max_clock_skew, cfg.node_timeout);
        clock.start(now_ms(), crate::clock::mono_ms());
        let mut receiver =
            receiver::Receiver::new(socket, &cfg.secret, guard, table, queue.clone(), clock);
        let (exporter, graphite_thread) = graphite::start(&cfg.graphite).unzip();
        receiver.graphite = exporter;
        log::info!(
            "listening on {}; panel command: {}",
            cfg.listen,
            cfg.panel_command.join(" ")
        );

        let (panel_done, panel_finished) = std::sync::mpsc::channel::<()>();
        {
            // The panel thread sleeps on the queue: a stop wakes it there.
            let queue = queue.clone();
            shutdown.on_stop(move || queue.wake());
        }
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
                panel::run(queue, cmd, batch, counters, shutdown);
                let _ = panel_done.send(());
            })
        };
        let mut saver = StateSaver::new(
            queue.clone(),
            panel_counters.clone(),
            &cfg.state_file,
            &cfg.listen,
            started_ms,
        );
        // A fresh file at once: a damaged one was set aside, and what was
        // restored must survive a kill before the first periodic save.
        saver.save(&receiver);
        let receiving = {
            let shutdown = shutdown.clone();
            let every = Duration::from_secs(cfg.state_interval);
            let state_file = cfg.state_file.clone();
            spawn("receiver", move || {
                let mut last_save = Instant::now();
                receiver.run(&shutdown, Duration::from_secs(1), |r, wake| {
                    if wake != receiver::Wake::Tick {
                        // News, before the panel hears it: what the master
                        // was told survives a kill from now on (its pending
                        // update, its reboot record). Settled: what the
                        // panel took is no longer pending.
                        last_save = Instant::now();
                        saver.save(r);
                        return;
                    }
                    let forgotten = forget::serve(&state_file, &mut r.table, now_ms());
                    if !forgotten.is_empty() {
                        r.emit(forgotten);
                        last_save = Instant::now();
                        saver.save(r);
                        r.deliver();
                    }
                    if last_save.elapsed() >= every {
                        last_save = Instant::now();
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
        let zap_thread = {
            let shutdown = shutdown.clone();
            spawn("zap", move || zap.run(&shutdown))
        };
        let gate_thread = {
            let shutdown = shutdown.clone();
            spawn("gate", move || gate.run(&shutdown))
        };
        readiness.ready();
        supervise(&shutdown);
        let deadline = shutdown
            .deadline(STOP_BUDGET)
            .unwrap_or_else(|| Instant::now() + STOP_BUDGET);
        let (receiver, mut saver) = join_until(receiving, deadline)
            .ok_or_else(|| "the receiver thread did not stop".to_string())?;
        let _ = join_until(zap_thread, deadline);
        let _ = join_until(gate_thread, deadline);
        // Saved first: whatever happens to the last panel call, the file lists
        // every update the panel has not taken (a call in flight included).
        saver.save(&receiver);
        let panel_deadline = shutdown
            .deadline(panel::LAST_CALL + Duration::from_millis(500))
            .unwrap_or(deadline);
        let waited =
            panel_finished.recv_timeout(panel_deadline.saturating_duration_since(Instant::now()));
        if waited.is_ok() {
            let _ = panel.join();
        } else {
            log::warn!("the panel thread did not finish its last call in time");
        }
        saver.save(&receiver);
        log::info!(
            "state saved to {} ({} updates kept for the panel)",
            cfg.state_file,
            queue.pending().len()
        );
        // Dropping the receiver closes the graphite channel: that thread makes
        // one last, time-bounded delivery attempt and ends.
        drop(receiver);
        if let Some(t) = graphite_thread {
            let _ = join_until(t, deadline);
        }
        Ok(())
    }

    /// `--forget-node ID` (see [`forget`]).
    fn command(cfg: &MasterConfig, args: &crate::cli::Args) -> u8 {
        let node = args.forget_node.as_deref().unwrap_or_default();
        forget::command(&cfg.state_file, &args.pidfile.to_string_lossy(), node)
    }

    fn status_file(cfg: &MasterConfig) -> &str {
        &cfg.state_file
    }

    /// After a blank line, the whole state file for a person.
    fn status_details(cfg: &MasterConfig) -> u8 {
        use crate::cli::exit;
        println!();
        match std::fs::read(&cfg.state_file) {
            Ok(bytes) => {
                let f = statefile::parse(&cfg.state_file, &bytes);
                print!("{}", statefile::report(&f, now_ms()));
                if f.damaged() {
                    exit::RUNTIME
                } else {
                    exit::OK
                }
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
}
