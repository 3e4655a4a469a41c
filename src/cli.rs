//! Command-line options shared by both daemons, and their exit codes.
//!
//! The same flags serve systemd (`-f`, foreground) and SysV init (detach and
//! write a pidfile), and `-t` lets init scripts and units check a
//! configuration before they (re)start a service.

use getopts::Options;
use std::path::PathBuf;

use crate::role::Role;

/// How a process ends: the exit statuses documented in the man pages and
/// README (`--help` lists them too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitStatus {
    /// Clean stop (SIGTERM/SIGINT), `-t` with a valid file, or a disabled master.
    Ok = 0,
    /// The configuration file is missing or invalid.
    Config = 1,
    /// Bad command line.
    Usage = 2,
    /// Runtime failure: cannot bind or connect, libvirt connection lost,
    /// already running.
    Runtime = 3,
}

impl ExitStatus {
    /// The number the process exits with.
    pub const fn code(self) -> u8 {
        self as u8
    }

    /// The status `code` stands for, if it is one of ours (the detached
    /// parent reads it from the readiness pipe).
    pub fn from_code(code: u8) -> Option<ExitStatus> {
        [
            ExitStatus::Ok,
            ExitStatus::Config,
            ExitStatus::Usage,
            ExitStatus::Runtime,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        std::process::ExitCode::from(status.code())
    }
}

/// The same statuses as plain numbers, for the `--status` commands, which
/// return a `u8`; [`ExitStatus`] is the one definition.
pub mod exit {
    use super::ExitStatus;

    pub const OK: u8 = ExitStatus::Ok.code();
    pub const CONFIG: u8 = ExitStatus::Config.code();
    pub const USAGE: u8 = ExitStatus::Usage.code();
    pub const RUNTIME: u8 = ExitStatus::Runtime.code();
}

/// What the command line asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub config: PathBuf,
    pub pidfile: PathBuf,
    pub check_config: bool,
    pub foreground: bool,
    pub verbose: bool,
    /// Print the daemon's status for a person and exit.
    pub status: bool,
    /// vmwatch-master only: forget this node id now and exit.
    pub forget_node: Option<String>,
}

/// Either options to run with, or an exit status (help, version, bad usage).
pub enum Parsed {
    Run(Args),
    Exit(ExitStatus),
}

/// Parses `argv[1..]`. `with_status` adds `--status`.
pub fn parse(role: Role, argv: &[String], with_status: bool) -> Parsed {
    let program = role.program();
    let mut opts = Options::new();
    opts.optopt(
        "c",
        "config",
        "configuration file",
        &format!("PATH (default {})", role.config_file()),
    );
    opts.optflag(
        "t",
        "check-config",
        "check the configuration, print it (secret masked) and exit",
    );
    opts.optflag(
        "f",
        "foreground",
        "stay in the foreground and log to stderr too (systemd)",
    );
    opts.optopt(
        "p",
        "pidfile",
        "pid file",
        &format!("PATH (default {})", role.pidfile()),
    );
    opts.optflag("v", "verbose", "log debug messages");
    opts.optflag("V", "version", "print the version and exit");
    opts.optflag("h", "help", "print this help and exit");
    if with_status {
        opts.optflag(
            "s",
            "status",
            "print the daemon's status (the check_vmwatch facts) for a person and exit",
        );
    }
    let forget = with_status && role == Role::Master;
    if forget {
        opts.optopt(
            "",
            "forget-node",
            "forget a retired node id now: the panel is told its domains are undefined (applied by the running master, or at its next start)",
            "ID",
        );
    }
    let m = match opts.parse(argv) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{program}: {e}\nTry `{program} --help`.");
            return Parsed::Exit(ExitStatus::Usage);
        }
    };
    if m.opt_present("h") {
        let brief = format!("Usage: {program} [options]");
        print!("{}", opts.usage(&brief));
        println!(
            "\nExit status: 0 ok, 1 configuration error, 2 usage error, 3 runtime failure.\n\
             Signals: SIGTERM/SIGINT stop cleanly, SIGHUP reopens the log file."
        );
        return Parsed::Exit(ExitStatus::Ok);
    }
    if m.opt_present("V") {
        println!("{program} {}", env!("CARGO_PKG_VERSION"));
        return Parsed::Exit(ExitStatus::Ok);
    }
    if !m.free.is_empty() {
        eprintln!(
            "{program}: unexpected argument `{}`\nTry `{program} --help`.",
            m.free[0]
        );
        return Parsed::Exit(ExitStatus::Usage);
    }
    Parsed::Run(Args {
        config: m
            .opt_str("c")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(role.config_file())),
        pidfile: m
            .opt_str("p")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(role.pidfile())),
        check_config: m.opt_present("t"),
        foreground: m.opt_present("f"),
        verbose: m.opt_present("v"),
        status: with_status && m.opt_present("s"),
        forget_node: if forget {
            m.opt_str("forget-node")
        } else {
            None
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_follow_the_program_name() {
        let Parsed::Run(a) = parse(Role::Node, &[], false) else {
            panic!("expected options")
        };
        assert_eq!(
            a.config,
            PathBuf::from("/usr/local/mgr5/etc/vmwatch-node.conf")
        );
        assert_eq!(a.pidfile, PathBuf::from("/var/run/vmwatch-node.pid"));
        assert!(!a.foreground && !a.check_config && !a.status);
    }

    #[test]
    fn short_and_long_flags() {
        let Parsed::Run(a) = parse(
            Role::Master,
            &args(&[
                "-c",
                "/x.conf",
                "--foreground",
                "-p",
                "/p",
                "-t",
                "-v",
                "--status",
            ]),
            true,
        ) else {
            panic!("expected options")
        };
        assert_eq!(a.config, PathBuf::from("/x.conf"));
        assert_eq!(a.pidfile, PathBuf::from("/p"));
        assert!(a.foreground && a.check_config && a.verbose && a.status);
    }

    #[test]
    fn only_the_master_takes_forget_node() {
        let Parsed::Run(a) = parse(Role::Master, &args(&["--forget-node", "n-7"]), true) else {
            panic!("expected options")
        };
        assert_eq!(a.forget_node.as_deref(), Some("n-7"));
        assert!(matches!(
            parse(Role::Node, &args(&["--forget-node", "n-7"]), true),
            Parsed::Exit(ExitStatus::Usage)
        ));
    }

    #[test]
    fn bad_usage_exits_2() {
        assert!(matches!(
            parse(Role::Node, &args(&["--bogus"]), false),
            Parsed::Exit(ExitStatus::Usage)
        ));
        assert!(matches!(
            parse(Role::Node, &args(&["extra"]), false),
            Parsed::Exit(ExitStatus::Usage)
        ));
        assert!(matches!(
            parse(Role::Node, &args(&["--status"]), false),
            Parsed::Exit(ExitStatus::Usage)
        ));
    }
}
