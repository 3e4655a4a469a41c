//! Configuration files: `NAME=VALUE`, one per line, as VMmanager writes them.
//!
//! The panel creates `/usr/local/mgr5/etc/vmwatch-master.conf` and
//! `vmwatch-node.conf`; those files must load unchanged, so the syntax is
//! deliberately forgiving (blank lines, `#` comments, spaces around `=`, CRLF,
//! a UTF-8 BOM) while the values are checked strictly. Every problem in a file is
//! reported at once as `PATH:LINE: what is wrong`, so an operator fixes a file in
//! one pass. Unknown keys are warnings: a newer panel may write keys we do not
//! know yet, and refusing to start over them would stop monitoring.
//!
//! Why one file: the NAME=VALUE grammar, the typed value readers and the
//! all-errors-at-once report are one loader, shared by both daemons' key
//! lists (src/master/config.rs, src/node/config.rs).

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Default port of the master, as in the panel's `VmwatchListenPort`.
pub const DEFAULT_PORT: u16 = 1515;

/// One `NAME=VALUE` line of a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// A problem in a configuration file. `line` 0 means "the file as a whole".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.path, self.message)
        } else {
            write!(f, "{}:{}: {}", self.path, self.line, self.message)
        }
    }
}

/// Why a configuration could not be loaded: every error found, plus the
/// warnings, so the caller can print them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
impl ConfigError {
    /// The errors as `PATH:LINE: what`, in order.
    pub fn lines(&self) -> Vec<String> {
        self.errors.iter().map(|p| p.to_string()).collect()
    }
}

/// Loads `text` as the file `name` with a key list (`build`, as
/// [`DaemonConfig::from_loader`]): what it built, and what [`Loader::finish`] said.
#[cfg(test)]
pub fn load_text<T>(
    name: &str,
    text: &str,
    build: impl FnOnce(String, &mut Loader) -> T,
) -> (T, Result<Vec<Problem>, ConfigError>) {
    let mut l = Loader::from_reader(name, text.as_bytes());
    let built = build(name.to_string(), &mut l);
    (built, l.finish())
}

/// Splits a file into entries. Syntax errors (a line without `=`, an empty
/// name) are returned as problems; values are not interpreted here.
pub fn parse_entries<R: BufRead>(path: &str, reader: R) -> (Vec<Entry>, Vec<Problem>) {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (idx, line) in reader.split(b'\n').enumerate() {
        let lineno = idx + 1;
        let raw = match line {
            Ok(raw) => raw,
            Err(e) => {
                problems.push(problem(path, lineno, format!("cannot read: {e}")));
                break;
            }
        };
        let text = match String::from_utf8(raw) {
            Ok(t) => t,
            Err(_) => {
                problems.push(problem(path, lineno, "not valid UTF-8".to_string()));
                continue;
            }
        };
        let text = if lineno == 1 {
            text.trim_start_matches('\u{feff}')
        } else {
            &text
        };
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let Some((key, value)) = text.split_once('=') else {
            problems.push(problem(
                path,
                lineno,
                format!("expected NAME=VALUE, found `{}`", shorten(text)),
            ));
            continue;
        };
        let key = key.trim();
        if key.is_empty() {
            problems.push(problem(path, lineno, "missing NAME before `=`".to_string()));
            continue;
        }
        entries.push(Entry {
            key: key.to_string(),
            value: value.trim().to_string(),
            line: lineno,
        });
    }
    (entries, problems)
}

fn problem(path: &str, line: usize, message: String) -> Problem {
    Problem {
        path: path.to_string(),
        line,
        message,
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 40 {
        let head: String = s.chars().take(40).collect();
        format!("{head}...")
    } else {
        s.to_string()
    }
}

/// Typed access to the entries of one file, collecting every problem.
///
/// Each getter marks its key as known; `finish` turns the keys nobody asked
/// for into "unknown key" warnings.
pub struct Loader {
    path: String,
    values: HashMap<String, Entry>,
    known: Vec<&'static str>,
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

impl Loader {
    /// Reads and splits the file at `path`.
    pub fn open(path: &Path) -> Result<Loader, ConfigError> {
        let shown = path.display().to_string();
        let file = File::open(path).map_err(|e| ConfigError {
            errors: vec![problem(
                &shown,
                0,
                format!("cannot open: {e} (give another file with -c PATH)"),
            )],
            warnings: Vec::new(),
        })?;
        let mut loader = Loader::from_reader(&shown, BufReader::new(&file));
        if let Ok(meta) = file.metadata() {
            if meta.permissions().mode() & 0o077 != 0 {
                loader.warnings.push(problem(
                    &shown,
                    0,
                    format!(
                        "holds the shared secret but is readable by group or others (mode {:04o}); run chmod 600",
                        meta.permissions().mode() & 0o7777
                    ),
                ));
            }
        }
        Ok(loader)
    }

    /// Splits configuration text from any reader; `path` names it in messages.
    pub fn from_reader<R: BufRead>(path: &str, reader: R) -> Loader {
        let (entries, errors) = parse_entries(path, reader);
        let mut warnings = Vec::new();
        let mut values: HashMap<String, Entry> = HashMap::new();
        for e in entries {
            if let Some(prev) = values.get(&e.key) {
                warnings.push(problem(
                    path,
                    e.line,
                    format!(
                        "`{}` repeats line {}; the last value is used",
                        e.key, prev.line
                    ),
                ));
            }
            values.insert(e.key.clone(), e);
        }
        Loader {
            path: path.to_string(),
            values,
            known: Vec::new(),
            errors,
            warnings,
        }
    }

    fn take(&mut self, key: &'static str) -> Option<Entry> {
        self.known.push(key);
        self.values.get(key).cloned()
    }

    fn error(&mut self, line: usize, message: String) {
        self.errors.push(problem(&self.path, line, message));
    }

    /// A string value; `None` as default makes the key required.
    pub fn string(&mut self, key: &'static str, default: Option<&str>) -> String {
        match self.take(key) {
            Some(e) if e.value.is_empty() => {
                self.error(e.line, format!("`{key}` has an empty value"));
                String::new()
            }
            Some(e) => e.value,
            None => match default {
                Some(d) => d.to_string(),
                None => {
                    let msg = format!("missing required `{key}=...`");
                    self.error(0, msg);
                    String::new()
                }
            },
        }
    }

    /// A yes/no value (also accepts true/false, on/off, 1/0).
    pub fn boolean(&mut self, key: &'static str, default: bool) -> bool {
        let Some(e) = self.take(key) else {
            return default;
        };
        match e.value.to_ascii_lowercase().as_str() {
            "yes" | "true" | "on" | "1" => true,
            "no" | "false" | "off" | "0" | "" => false,
            _ => {
                self.error(
                    e.line,
                    format!("`{key}` must be yes or no, not `{}`", shorten(&e.value)),
                );
                default
            }
        }
    }

    /// A whole number within `min..=max`.
    pub fn number(&mut self, key: &'static str, default: u64, min: u64, max: u64) -> u64 {
        let Some(e) = self.take(key) else {
            return default;
        };
        match e.value.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => n,
            _ => {
                self.error(
                    e.line,
                    format!(
                        "`{key}` must be a whole number between {min} and {max}, not `{}`",
                        shorten(&e.value)
                    ),
                );
                default
            }
        }
    }

    /// A ZeroMQ endpoint (`tcp://HOST:PORT` or `ipc://PATH`); a tcp endpoint
    /// without a port gets the default port 1515.
    pub fn endpoint(&mut self, key: &'static str, default: Option<&str>) -> String {
        let line = self.values.get(key).map(|e| e.line).unwrap_or(0);
        let value = self.string(key, default);
        if value.is_empty() {
            return value;
        }
        match normalize_endpoint(&value) {
            Ok(v) => v,
            Err(why) => {
                self.error(line, format!("`{key}`: {why}"));
                value
            }
        }
    }

    /// A value checked by `check`, which says what is wrong.
    pub fn checked(
        &mut self,
        key: &'static str,
        default: Option<&str>,
        check: impl Fn(&str) -> Result<(), String>,
    ) -> String {
        let line = self.values.get(key).map(|e| e.line).unwrap_or(0);
        let value = self.string(key, default);
        if !value.is_empty() {
            if let Err(why) = check(&value) {
                self.error(line, format!("`{key}`: {why}"));
            }
        }
        value
    }

    /// Ends loading: unknown keys become warnings; any error fails the load.
    pub fn finish(mut self) -> Result<Vec<Problem>, ConfigError> {
        let mut unknown: Vec<&Entry> = self
            .values
            .values()
            .filter(|e| !self.known.contains(&e.key.as_str()))
            .collect();
        unknown.sort_by_key(|e| e.line);
        for e in unknown {
            self.warnings.push(problem(
                &self.path,
                e.line,
                format!("unknown key `{}` ignored", e.key),
            ));
        }
        self.errors.sort_by_key(|p| p.line);
        if self.errors.is_empty() {
            Ok(self.warnings)
        } else {
            Err(ConfigError {
                errors: self.errors,
                warnings: self.warnings,
            })
        }
    }
}

/// A daemon's configuration: its keys, as its file holds them and as
/// `-t` shows them.
pub trait DaemonConfig: Sized {
    /// Reads every key from `l`, recording problems in it; `path` names the
    /// file.
    fn from_loader(path: String, l: &mut Loader) -> Self;

    /// The effective configuration as `NAME=VALUE` pairs, secret masked.
    fn describe(&self) -> Vec<(String, String)>;

    /// Where and how the daemon logs.
    fn log(&self) -> &LogSettings;

    /// Loads and checks the file; warnings are returned for logging. A
    /// short shared secret (`secret=`) is warned about, not refused, since
    /// the panel chose it.
    fn load(path: &Path) -> Result<(Self, Vec<Problem>), ConfigError> {
        let shown = path.display().to_string();
        let mut l = Loader::open(path)?;
        let cfg = Self::from_loader(shown.clone(), &mut l);
        let secret = l.values.get("secret").map_or(0, |e| e.value.len());
        let mut warnings = l.finish()?;
        if (1..16).contains(&secret) {
            warnings.push(problem(
                &shown,
                0,
                format!(
                    "`secret` is only {secret} characters long; a longer random secret is safer"
                ),
            ));
        }
        Ok((cfg, warnings))
    }
}

/// Checks a ZeroMQ endpoint and adds the default port to a bare tcp host.
pub fn normalize_endpoint(value: &str) -> Result<String, String> {
    if let Some(path) = value.strip_prefix("ipc://") {
        if path.is_empty() {
            return Err("ipc:// needs a socket path".into());
        }
        return Ok(value.to_string());
    }
    let Some(rest) = value.strip_prefix("tcp://") else {
        return Err(format!(
            "`{}` is not tcp://IP:PORT (for example tcp://192.0.2.10:{DEFAULT_PORT})",
            shorten(value)
        ));
    };
    let (host, port) = split_host_port(rest, DEFAULT_PORT, |host| {
        if host.is_empty() || host == "[]" {
            Err("missing host or IP address".into())
        } else {
            Ok(())
        }
    })?;
    Ok(format!("tcp://{host}:{port}"))
}

/// The `HOST[:PORT]` or `[IPv6][:PORT]` of a `tcp://` address (what
/// follows the scheme): the host as written, brackets kept, after `check`
/// has accepted it, and the port, `default_port` if none is given.
pub fn split_host_port(
    rest: &str,
    default_port: u16,
    check: impl Fn(&str) -> Result<(), String>,
) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let Some((addr, tail)) = v6.split_once(']') else {
            return Err("IPv6 address lacks the closing `]`".into());
        };
        let port = match tail {
            "" => None,
            t => Some(t.strip_prefix(':').ok_or("expected `:PORT` after `]`")?),
        };
        (format!("[{addr}]"), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    check(&host)?;
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(format!("port `{p}` is not between 1 and 65535")),
        },
    };
    Ok((host, port))
}

/// Log verbosity: `error`, `warn` (or `warning`), `info`, `debug` or
/// `trace`, in any case. vmwatch logs nothing finer than debug itself:
/// `trace` logs what `debug` does.
pub fn parse_level(value: &str) -> Result<log::LevelFilter, String> {
    match value.to_ascii_lowercase().as_str() {
        "error" => Ok(log::LevelFilter::Error),
        "warn" | "warning" => Ok(log::LevelFilter::Warn),
        "info" => Ok(log::LevelFilter::Info),
        "debug" => Ok(log::LevelFilter::Debug),
        "trace" => Ok(log::LevelFilter::Trace),
        _ => Err(format!(
            "`{}` is not one of error, warn, info, debug, trace",
            shorten(value)
        )),
    }
}

/// Settings both daemons share: where and how they log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub file: String,
    pub level: log::LevelFilter,
    pub syslog: bool,
    pub syslog_socket: String,
}

impl LogSettings {
    /// Reads `log`, `log_level`, `syslog`, `syslog_socket`.
    pub fn load(l: &mut Loader, default_file: &str) -> LogSettings {
        let file = l.string("log", Some(default_file));
        let level = l.checked("log_level", Some("info"), |v| parse_level(v).map(|_| ()));
        let syslog = l.boolean("syslog", true);
        let syslog_socket = l.string("syslog_socket", Some("/dev/log"));
        LogSettings {
            file,
            level: parse_level(&level).unwrap_or(log::LevelFilter::Info),
            syslog,
            syslog_socket,
        }
    }

    /// The effective settings as `NAME=VALUE` lines.
    pub fn describe(&self, out: &mut Vec<(String, String)>) {
        out.push(("log".into(), self.file.clone()));
        out.push((
            "log_level".into(),
            self.level.to_string().to_ascii_lowercase(),
        ));
        out.push(("syslog".into(), yes_no(self.syslog)));
        out.push(("syslog_socket".into(), self.syslog_socket.clone()));
    }
}

/// Checks a shared secret: free of whitespace (emptiness is checked by the
/// loader). A short secret is only warned about, since the panel chose it.
pub fn check_secret(v: &str) -> Result<(), String> {
    if v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces or control characters".into());
    }
    Ok(())
}

/// How the secret is shown by `--check-config`.
pub fn mask_secret(v: &str) -> String {
    format!("******** ({} characters)", v.len())
}

/// `yes` or `no`.
pub fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Loader {
        Loader::from_reader("t.conf", text.as_bytes())
    }

    #[test]
    fn accepts_panel_style_files() {
        let mut l = load("\u{feff}# written by the panel\r\nlisten=tcp://10.0.0.1:1515\r\n\r\n  secret = ABC123XYZ789 \r\n");
        assert_eq!(l.endpoint("listen", None), "tcp://10.0.0.1:1515");
        assert_eq!(l.string("secret", None), "ABC123XYZ789");
        assert!(l.finish().unwrap().is_empty());
    }

    #[test]
    fn reports_every_error_with_file_and_line() {
        let mut l = load("listen\nsecret=\nport=abc\ndisabled=maybe\n");
        l.string("secret", None);
        l.number("port", 1, 1, 65535);
        l.boolean("disabled", false);
        l.string("node_id", None);
        assert_eq!(
            l.finish().unwrap_err().lines(),
            vec![
                "t.conf: missing required `node_id=...`",
                "t.conf:1: expected NAME=VALUE, found `listen`",
                "t.conf:2: `secret` has an empty value",
                "t.conf:3: `port` must be a whole number between 1 and 65535, not `abc`",
                "t.conf:4: `disabled` must be yes or no, not `maybe`",
            ]
        );
    }

    #[test]
    fn unknown_and_repeated_keys_are_warnings() {
        let mut l = load("a=1\nfuture_key=x\na=2\n");
        assert_eq!(l.number("a", 0, 0, 9), 2);
        let w: Vec<String> = l.finish().unwrap().iter().map(|p| p.to_string()).collect();
        assert_eq!(
            w,
            vec![
                "t.conf:3: `a` repeats line 1; the last value is used",
                "t.conf:2: unknown key `future_key` ignored",
            ]
        );
    }

    #[test]
    fn endpoints_get_the_default_port_and_are_checked() {
        let given = [
            "tcp://1.2.3.4",
            "tcp://[::1]:7",
            "tcp://[::1]",
            "ipc:///run/x",
        ];
        let normalized = given.map(|e| normalize_endpoint(e).unwrap());
        assert_eq!(
            normalized,
            [
                "tcp://1.2.3.4:1515",
                "tcp://[::1]:7",
                "tcp://[::1]:1515",
                "ipc:///run/x"
            ]
        );
        for bad in [
            "udp://1.2.3.4:5",
            "tcp://1.2.3.4:0",
            "tcp://1.2.3.4:99999",
            "tcp://:5",
            "tcp://[::1",
        ] {
            assert!(normalize_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_are_checked_and_masked() {
        assert!(check_secret("ABCDEF0123456789").is_ok());
        assert!(check_secret("has space inside").is_err());
        assert!(!mask_secret("ABCDEF0123456789").contains("ABC"));
    }

    #[test]
    fn invalid_utf8_is_an_error_not_a_panic() {
        let l = Loader::from_reader("t.conf", &b"a=\xff\xfe\n"[..]);
        let err = l.finish().unwrap_err();
        assert_eq!(err.errors[0].to_string(), "t.conf:1: not valid UTF-8");
    }
}
