//! Logging through the `log` facade to the log file, syslog and (in the
//! foreground) stderr.
//!
//! Operators of these clusters read `/usr/local/mgr5/var/vmwatch-*.log` and
//! forward syslog (facility daemon, ident = program name) to their monitoring,
//! so every line goes to both. File lines carry local time with milliseconds
//! and the thread name. SIGHUP calls [`reopen`] so logrotate can move the file
//! away. If syslog is unavailable the daemon says so once and carries on: a
//! missing syslogd must never stop monitoring.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Mutex, OnceLock};

use syslog::{Facility, Formatter3164, LoggerBackend};

use crate::config::LogSettings;

type Syslog = syslog::Logger<LoggerBackend, Formatter3164>;

struct Logger {
    level: log::LevelFilter,
    path: String,
    file: Mutex<Option<File>>,
    syslog: Mutex<Option<Syslog>>,
    stderr: bool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Why logging could not start.
#[derive(Debug)]
pub struct LogError {
    pub path: String,
    pub error: std::io::Error,
}

impl std::fmt::Display for LogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot open log file {}: {} (create its directory or set `log=` to a writable path)",
            self.path, self.error
        )
    }
}

impl std::error::Error for LogError {}

fn open_log(path: &str) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

/// Installs the logger. `program` is the syslog ident; `stderr` mirrors every
/// line to standard error (foreground mode). Returns a warning to log once
/// when syslog could not be reached.
pub fn init(
    program: &str,
    settings: &LogSettings,
    stderr: bool,
) -> Result<Option<String>, LogError> {
    let file = open_log(&settings.file).map_err(|error| LogError {
        path: settings.file.clone(),
        error,
    })?;
    let mut warning = None;
    let syslog = if settings.syslog {
        let formatter = Formatter3164 {
            facility: Facility::LOG_DAEMON,
            hostname: None,
            process: program.to_string(),
            pid: std::process::id(),
        };
        match syslog::unix_custom(formatter, &settings.syslog_socket) {
            Ok(s) => Some(s),
            Err(e) => {
                warning = Some(format!(
                    "syslog unavailable at {} ({e}); logging to {} only",
                    settings.syslog_socket, settings.file
                ));
                None
            }
        }
    } else {
        None
    };
    let logger = Logger {
        level: settings.level,
        path: settings.file.clone(),
        file: Mutex::new(Some(file)),
        syslog: Mutex::new(syslog),
        stderr,
    };
    if LOGGER.set(logger).is_ok() {
        let l = LOGGER.get().expect("just set");
        // A second init (tests in one process) keeps the first logger.
        let _ = log::set_logger(l);
        log::set_max_level(settings.level);
    }
    Ok(warning)
}

/// Reopens the log file after logrotate moved it (SIGHUP).
pub fn reopen() {
    let Some(l) = LOGGER.get() else { return };
    let reopened = open_log(&l.path);
    let mut guard = l.file.lock().unwrap_or_else(|p| p.into_inner());
    match reopened {
        Ok(f) => {
            *guard = Some(f);
            drop(guard);
            log::info!("log file {} reopened", l.path);
        }
        Err(e) => {
            drop(guard);
            // Keep writing to the old descriptor rather than losing lines.
            log::error!(
                "cannot reopen log file {}: {e}; still writing to the old file",
                l.path
            );
        }
    }
}

/// Local time as `YYYY-MM-DD HH:MM:SS.mmm`.
pub fn timestamp() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as libc::time_t;
    // SAFETY: `tm` is plain data that localtime_r fully initialises on
    // success; both pointers are valid for the duration of the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: see above; localtime_r is the thread-safe variant.
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    if !ok {
        return format!("{}.{:03}", now.as_secs(), now.subsec_millis());
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        now.subsec_millis()
    )
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let msg = record.args().to_string();
        let thread = std::thread::current();
        let mut line = String::with_capacity(msg.len() + 48);
        let _ = writeln!(
            line,
            "{} {:<5} [{}] {}",
            timestamp(),
            record.level(),
            thread.name().unwrap_or("?"),
            msg
        );
        if let Some(f) = self.file.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            let _ = f.write_all(line.as_bytes());
        }
        if self.stderr {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        if let Some(s) = self
            .syslog
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            let _ = match record.level() {
                log::Level::Error => s.err(&msg),
                log::Level::Warn => s.warning(&msg),
                log::Level::Info => s.info(&msg),
                log::Level::Debug | log::Level::Trace => s.debug(&msg),
            };
        }
    }

    fn flush(&self) {
        if let Some(f) = self.file.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            let _ = f.flush();
        }
    }
}
