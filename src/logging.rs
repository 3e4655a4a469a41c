//! Logging through the `log` facade to the log file, syslog and (in the
//! foreground) stderr.
//!
//! Operators of these clusters read `/usr/local/mgr5/var/vmwatch-*.log` and
//! forward syslog (facility daemon, ident = program name) to their monitoring,
//! so every line goes to both. File lines carry local time with milliseconds
//! and the thread name. SIGHUP calls [`reopen`] so logrotate can move the file
//! away. If syslog is unavailable the daemon says so once and carries on: a
//! missing syslogd must never stop monitoring.

use std::cell::RefCell;
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

/// A thread's log lines held back for one write (see [`hold`]).
#[derive(Default)]
struct Held {
    on: bool,
    text: String,
}

thread_local! {
    static HELD: RefCell<Held> = RefCell::new(Held::default());
    /// The last timestamp written by this thread, and its millisecond.
    static STAMP: RefCell<(u128, String)> = const { RefCell::new((u128::MAX, String::new())) };
}

/// Most bytes of held lines before they are written anyway.
const HELD_MAX: usize = 64 * 1024;

/// From now until [`release`], this thread's lines reach the log file (and
/// stderr) in one write instead of one each: the master's receiver holds
/// the lines of a burst of messages (up to a thousand changes), so a resync
/// storm costs a write per burst, not per domain. Each line keeps the time
/// it was logged; syslog still gets every line at once; at most
/// 64 KiB are held; a panic writes what was held before its own line.
pub fn hold() {
    let _ = HELD.try_with(|h| h.borrow_mut().on = true);
}

/// Writes what this thread held since [`hold`] and stops holding.
pub fn release() {
    let _ = HELD.try_with(|h| {
        let mut h = h.borrow_mut();
        h.on = false;
        if let Some(l) = LOGGER.get() {
            l.write_out(&h.text);
        }
        // Cleared, not freed: the next burst reuses the buffer.
        h.text.clear();
    });
}

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

/// Whether a character could forge a log line or move a terminal: control
/// characters (C0, DEL, C1), line and paragraph separators, bidirectional
/// overrides.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every unsafe character written as `\xNN` (or `\u{NNNN}`), so a
/// value from outside is one visible run of text on one line.
pub fn escape_control(s: &str) -> String {
    if !s.chars().any(is_unsafe) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !is_unsafe(c) {
            out.push(c);
        } else if (c as u32) < 0x100 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        }
    }
    out
}

/// Makes a panic in any thread reach the log file and syslog, with the
/// thread's name and where it happened, and then end the process (a half-dead
/// daemon that still holds its pidfile is worse than one init restarts).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("?");
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let msg = escape_control(&format!(
            "panic in thread '{name}'{place}: {what}; the daemon stops (please report this)"
        ));
        emergency(&msg);
        std::process::abort();
    }));
}

/// Writes one error line to every destination without waiting for a lock
/// another thread may hold forever (the panicking thread may hold it).
fn emergency(msg: &str) {
    let line = format!(
        "{} ERROR [{}] {msg}\n",
        timestamp(),
        std::thread::current().name().unwrap_or("?")
    );
    // What this thread held back (see `hold`) comes first, in order.
    let held = HELD
        .try_with(|h| h.try_borrow_mut().map(|mut h| std::mem::take(&mut h.text)))
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let line = held + &line;
    let Some(l) = LOGGER.get() else {
        let _ = std::io::stderr().write_all(line.as_bytes());
        return;
    };
    if let Ok(mut f) = l.file.try_lock() {
        if let Some(f) = f.as_mut() {
            let _ = f.write_all(line.as_bytes());
            let _ = f.sync_data();
        }
    }
    if l.stderr {
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
    if let Ok(mut s) = l.syslog.try_lock() {
        if let Some(s) = s.as_mut() {
            let _ = s.crit(msg);
        }
    }
}

/// Local time as `YYYY-MM-DD HH:MM:SS.mmm`.
pub fn timestamp() -> String {
    timestamp_at(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

/// [`timestamp`] into `out`, formatted once a millisecond per thread.
fn stamp(out: &mut String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ms = now.as_millis();
    let cached = STAMP.try_with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != ms {
            *c = (ms, timestamp_at(now));
        }
        out.push_str(&c.1);
    });
    if cached.is_err() {
        out.push_str(&timestamp_at(now));
    }
}

fn timestamp_at(now: std::time::Duration) -> String {
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

impl Logger {
    /// Writes whole lines to the file and, in the foreground, stderr.
    fn write_out(&self, text: &str) {
        if text.is_empty() {
            return;
        }
        if let Some(f) = self.file.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            let _ = f.write_all(text.as_bytes());
        }
        if self.stderr {
            let _ = std::io::stderr().write_all(text.as_bytes());
        }
    }
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let thread = std::thread::current();
        let mut line = String::with_capacity(192);
        stamp(&mut line);
        let _ = write!(
            line,
            " {:<5} [{}] ",
            record.level(),
            thread.name().unwrap_or("?")
        );
        let at = line.len();
        let _ = write!(line, "{}", record.args());
        // Names, reasons and errors come from the network, libvirt and
        // files: no byte of them may start a line or move a terminal.
        if line[at..].chars().any(is_unsafe) {
            let safe = escape_control(&line[at..]);
            line.truncate(at);
            line.push_str(&safe);
        }
        line.push('\n');
        // Held lines (see `hold`) wait for `release`, or for enough of them.
        let held = HELD.try_with(|h| {
            let mut h = h.borrow_mut();
            if !h.on {
                return false;
            }
            h.text.push_str(&line);
            if h.text.len() >= HELD_MAX {
                self.write_out(&h.text);
                h.text.clear();
            }
            true
        });
        if held != Ok(true) {
            self.write_out(&line);
        }
        let msg = &line[at..line.len() - 1];
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
        let _ = HELD.try_with(|h| {
            let mut h = h.borrow_mut();
            self.write_out(&h.text);
            h.text.clear();
        });
        if let Some(f) = self.file.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            let _ = f.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one test of this binary that installs the global logger.
    #[test]
    fn held_lines_are_written_on_release_in_order_each_with_its_time() {
        let dir = std::env::temp_dir().join(format!("vmwatch-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("held.log");
        let settings = LogSettings {
            file: file.display().to_string(),
            level: log::LevelFilter::Info,
            syslog: false,
            syslog_socket: String::new(),
        };
        init("vmwatch-test", &settings, false).unwrap();
        // Only this test's lines: the other tests of the binary run at the
        // same time and log through the same global logger.
        let text = || {
            let all = std::fs::read_to_string(&file).unwrap_or_default();
            all.lines()
                .filter(|l| l.contains("[logging::tests::"))
                .map(|l| format!("{l}\n"))
                .collect::<String>()
        };
        log::info!("before hold");
        assert!(text().contains("before hold"), "not held: written at once");
        hold();
        log::info!("held one");
        log::warn!("held two\nforged");
        assert!(!text().contains("held one"), "held until release");
        release();
        let t = text();
        let one = t.find("INFO  [").and(t.find("held one")).unwrap();
        let two = t.find("held two\\x0aforged").unwrap();
        assert!(one < two, "in order, still escaped: {t}");
        assert_eq!(t.lines().count(), 3, "{t}");
        assert!(t.lines().all(|l| l.len() > 24 && l.as_bytes()[4] == b'-'));
        log::info!("after release");
        assert!(text().contains("after release"), "holding ended");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn control_characters_cannot_forge_a_line() {
        for (text, logged) in [
            ("plain vm-1 é", "plain vm-1 é"),
            ("a\nb\rc\u{1b}[2J", "a\\x0ab\\x0dc\\x1b[2J"),
            ("x\u{2028}y\u{202e}", "x\\u{2028}y\\u{202e}"),
        ] {
            assert_eq!(escape_control(text), logged);
        }
        assert!(!escape_control("\u{85}\u{7f}\t").chars().any(is_unsafe));
    }
}
