//! The life of a daemon process: the run sequence both daemons share.
//!
//! Both daemons run the same way ([`run_daemon`]): load and check the
//! configuration, detach (SysV init) or stay in the foreground (systemd),
//! log, lock the pidfile, run until a signal or a fatal failure, and say why
//! it ended. Their `--status` is the same too ([`status`]), and so is a
//! binary's whole `main` ([`program`]). Each step has its own file:
//!
//! - `signals.rs`: signals blocked before any thread starts, taken by the
//!   main thread from a signalfd ([`supervise`]);
//! - `detach.rs`: fork/setsid/fork with a readiness pipe, so `service X
//!   start` reports a daemon that failed during start-up ([`detach()`]);
//! - `pidfile.rs`: the locked pidfile ([`PidFile`]);
//! - `sigpipe.rs`: SIGPIPE's default for commands that only print, ignored
//!   by the daemons ([`default_for_printing`], [`ignore_for_daemon`]);
//! - `stop.rs`: the stop flag, the first failure, the stop budget and a join
//!   with a deadline ([`Shutdown`], [`STOP_BUDGET`], [`join_until`]); a stop
//!   wakes every sleeping thread, none polls the flag;
//! - `bell.rs`: an eventfd one thread rings to wake another in `poll`
//!   ([`Bell`]);
//! - `thread.rs`: named threads ([`spawn`]).
//!
//! The clocks every part reads are not a step of a daemon's life: they are
//! `crate::clock`, which the plugin uses too.

mod bell;
mod detach;
mod pidfile;
mod signals;
mod sigpipe;
mod stop;
mod thread;

use std::sync::Arc;

pub use bell::Bell;
pub use detach::{detach, Detached, Readiness};
pub use pidfile::PidFile;
pub use signals::{block_signals, supervise};
pub use sigpipe::{default_for_printing, ignore_for_daemon};
pub use stop::{join_until, Shutdown, STOP_BUDGET};
pub use thread::spawn;

use crate::cli::{exit, Args, ExitStatus, Parsed};
use crate::config::DaemonConfig;
use crate::role::Role;

/// What a daemon provides to [`run_daemon`] and [`status`]: its configuration
/// and its work.
pub trait Daemon {
    /// Which of the two daemons it is.
    const ROLE: Role;
    /// Program name: syslog ident, default file names.
    const PROGRAM: &'static str = Self::ROLE.program();
    /// Its configuration file's keys.
    type Config: DaemonConfig;
    /// `Some(why)`: configured not to run (the master's `disabled=yes`).
    fn disabled(_cfg: &Self::Config) -> Option<String> {
        None
    }
    /// Starts the threads, calls `readiness.ready()` once up, and returns
    /// after a stop; `Err` names a fatal failure.
    fn run(
        cfg: &Self::Config,
        shutdown: Arc<Shutdown>,
        readiness: &mut Readiness,
    ) -> Result<(), String>;
    /// The file the daemon keeps for check_vmwatch and `--status`.
    fn status_file(cfg: &Self::Config) -> &str;
    /// What `--status` prints after the check's verdict; returns the exit
    /// status.
    fn status_details(_cfg: &Self::Config) -> u8 {
        exit::OK
    }
    /// An operator command other than `--status` (vmwatch-master's
    /// `--forget-node`); returns the exit status.
    fn command(_cfg: &Self::Config, _args: &Args) -> u8 {
        exit::USAGE
    }
}

/// An operator command: loads the configuration, then
/// [`Daemon::command`].
pub fn command<D: Daemon>(args: &Args) -> u8 {
    match D::Config::load(&args.config) {
        Ok((cfg, _)) => D::command(&cfg, args),
        Err(e) => {
            eprintln!("{}: {e}", D::PROGRAM);
            exit::CONFIG
        }
    }
}

/// A daemon's process, as its binary runs it: the command line, then the
/// daemon ([`run_daemon`]) or its `--status` ([`status`]).
pub fn program<D: Daemon>() -> std::process::ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // Until `run_daemon` turns it into a daemon, this process only prints.
    default_for_printing();
    match crate::cli::parse(D::ROLE, &argv, true) {
        Parsed::Exit(status) => status.into(),
        Parsed::Run(args) if args.status => status::<D>(&args).into(),
        Parsed::Run(args) if args.forget_node.is_some() => command::<D>(&args).into(),
        Parsed::Run(args) => run_daemon::<D>(&args).into(),
    }
}

/// `--status`: the check_vmwatch verdict and facts for a person, then what
/// the daemon adds ([`Daemon::status_details`]).
pub fn status<D: Daemon>(args: &Args) -> u8 {
    let cfg = match D::Config::load(&args.config) {
        Ok((c, _)) => c,
        Err(e) => {
            eprintln!("{}: {e}", D::PROGRAM);
            return exit::CONFIG;
        }
    };
    let pidfile = args.pidfile.to_string_lossy();
    let file = D::status_file(&cfg);
    let (_, summary) =
        crate::check::status_summary(D::ROLE, file, &pidfile, crate::clock::now_ms());
    print!("{summary}");
    D::status_details(&cfg)
}

/// Everything between the command line and the exit status: load and check
/// the configuration, detach, log, lock the pidfile, run, and say why it
/// ended. Returns the exit status; when detaching, the original process
/// returns the status the daemon reported.
pub fn run_daemon<D: Daemon>(args: &Args) -> ExitStatus {
    block_signals();
    crate::logging::install_panic_hook();
    let (cfg, warnings) = match D::Config::load(&args.config) {
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
    // From here on a daemon: a reader going away is never a reason to die.
    ignore_for_daemon();
    let mut settings = cfg.log().clone();
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
    if let Some(why) = D::disabled(&cfg) {
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
    let code = match D::run(&cfg, shutdown, &mut readiness) {
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
