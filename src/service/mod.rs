//! The life of a daemon process: the run sequence both daemons share.
//!
//! Both daemons run the same way ([`main`]): load and check the
//! configuration, detach (SysV init) or stay in the foreground (systemd),
//! log, lock the pidfile, run until a signal or a fatal failure, and say why
//! it ended. Each step has its own file:
//!
//! - `signals.rs`: signals blocked before any thread starts, taken by the
//!   main thread with one `sigtimedwait` loop ([`supervise`]);
//! - `detach.rs`: fork/setsid/fork with a readiness pipe, so `service X
//!   start` reports a daemon that failed during start-up ([`detach`]);
//! - `pidfile.rs`: the locked pidfile ([`PidFile`]);
//! - `stop.rs`: the stop flag, the first failure, the stop budget and a join
//!   with a deadline ([`Shutdown`], [`STOP_BUDGET`], [`join_until`]);
//! - `thread.rs`: named threads ([`spawn`]); `clock.rs`: [`now_ms`].

mod clock;
mod detach;
mod pidfile;
mod signals;
mod stop;
mod thread;

use std::path::Path;
use std::sync::Arc;

pub use clock::now_ms;
pub use detach::{detach, Detached, Readiness};
pub use pidfile::PidFile;
pub use signals::{block_signals, supervise};
pub use stop::{join_until, Shutdown, STOP_BUDGET};
pub use thread::spawn;

use crate::cli::{Args, ExitStatus};
use crate::config::{ConfigError, LogSettings, Problem};

/// What a daemon provides to [`main`]: its configuration and its work.
pub trait Daemon: Sized {
    /// Program name: syslog ident, default file names.
    const PROGRAM: &'static str;
    fn load(path: &Path) -> Result<(Self, Vec<Problem>), ConfigError>;
    /// The effective configuration as `NAME=VALUE` pairs, secret masked.
    fn describe(&self) -> Vec<(String, String)>;
    fn log_settings(&self) -> &LogSettings;
    /// `Some(why)`: configured not to run (the master's `disabled=yes`).
    fn disabled(&self) -> Option<String> {
        None
    }
    /// Starts the threads, calls `readiness.ready()` once up, and returns
    /// after a stop; `Err` names a fatal failure.
    fn run(&self, shutdown: Arc<Shutdown>, readiness: &mut Readiness) -> Result<(), String>;
}

/// Everything between the command line and the exit status: load and check
/// the configuration, detach, log, lock the pidfile, run, and say why it
/// ended. Returns the exit status; when detaching, the original process
/// returns the status the daemon reported.
pub fn main<D: Daemon>(args: &Args) -> ExitStatus {
    block_signals();
    crate::logging::install_panic_hook();
    let (cfg, warnings) = match D::load(&args.config) {
        Ok(loaded) => loaded,
        Err(e) => {
            for p in e.errors.iter() {
                eprintln!("{}: error: {p}", D::PROGRAM);
            }
            for p in e.warnings.iter() {
                eprintln!("{}: warning: {p}", D::PROGRAM);
            }
            eprintln!("{}: configuration invalid, not starting", D::PROGRAM);
            return ExitStatus::Config;
        }
    };
    if args.check_config {
        for p in &warnings {
            eprintln!("{}: warning: {p}", D::PROGRAM);
        }
        println!(
            "# {} effective configuration from {}",
            D::PROGRAM,
            args.config.display()
        );
        for (k, v) in cfg.describe() {
            println!("{k}={v}");
        }
        println!("configuration OK");
        return ExitStatus::Ok;
    }
    let mut settings = cfg.log_settings().clone();
    if args.verbose {
        settings.level = log::LevelFilter::Debug;
    }
    let mut readiness = if args.foreground {
        Readiness::none()
    } else {
        match detach(D::PROGRAM) {
            Ok(Detached::Daemon(r)) => r,
            // The daemon has reported how its start-up went: pass it on.
            Ok(Detached::Parent(status)) => return status,
            Err(e) => {
                eprintln!("{}: cannot detach: {e}", D::PROGRAM);
                return ExitStatus::Runtime;
            }
        }
    };
    let syslog_warning = match crate::logging::init(D::PROGRAM, &settings, args.foreground) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("{}: {e}", D::PROGRAM);
            readiness.failed(ExitStatus::Runtime, &e.to_string());
            return ExitStatus::Runtime;
        }
    };
    if let Some(w) = syslog_warning {
        log::warn!("{w}");
    }
    for p in &warnings {
        log::warn!("{p}");
    }
    if let Some(why) = cfg.disabled() {
        log::info!("{why}; not starting");
        if args.foreground {
            eprintln!("{}: {why}; not starting", D::PROGRAM);
        }
        readiness.ready();
        return ExitStatus::Ok;
    }
    let _pidfile = match PidFile::create(&args.pidfile) {
        Ok(p) => p,
        Err(e) => {
            log::error!("{e}");
            readiness.failed(ExitStatus::Runtime, &e);
            return ExitStatus::Runtime;
        }
    };
    log::info!(
        "{} {} starting (pid {}, config {})",
        D::PROGRAM,
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        args.config.display()
    );
    let shutdown = Shutdown::new();
    let code = match cfg.run(shutdown, &mut readiness) {
        Ok(()) => {
            log::info!("exiting");
            ExitStatus::Ok
        }
        Err(why) => {
            log::error!("{why}");
            readiness.failed(ExitStatus::Runtime, &why);
            log::error!("exiting with status {}", ExitStatus::Runtime.code());
            ExitStatus::Runtime
        }
    };
    log::logger().flush();
    code
}
