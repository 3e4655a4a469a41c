//! The `graphite*` keys of vmwatch-master.conf: where carbon listens, the
//! metric prefix, how often the table is summarized, how many lines wait.

use crate::config::{split_host_port, Loader};

/// Carbon's plaintext port, used when `graphite` names none.
pub const CARBON_DEFAULT_PORT: u16 = 2003;

/// The `graphite*` keys of vmwatch-master.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `HOST:PORT` of carbon's plaintext receiver; `None`: export is off.
    pub target: Option<String>,
    /// Dot-separated path put before every metric name.
    pub prefix: String,
    /// Seconds between node and state-count samples.
    pub interval: u64,
    /// Lines kept while carbon cannot be reached; beyond, the oldest go.
    pub buffer: usize,
}

impl Settings {
    /// Reads the keys from `l`, recording problems in it.
    pub fn load(l: &mut Loader) -> Settings {
        let target = l.checked("graphite", Some(""), |v| parse_target(v).map(|_| ()));
        Settings {
            target: parse_target(&target).ok(),
            prefix: l.checked("graphite_prefix", Some("vmwatch"), check_prefix),
            interval: l.number("graphite_interval", 60, 1, 3_600),
            buffer: l.number("graphite_buffer", 100_000, 100, 10_000_000) as usize,
        }
    }

    /// The effective settings as `NAME=VALUE` pairs.
    pub fn describe(&self, out: &mut Vec<(String, String)>) {
        let target = match &self.target {
            Some(t) => format!("tcp://{t}"),
            None => "(off)".to_string(),
        };
        out.push(("graphite".to_string(), target));
        out.push(("graphite_prefix".to_string(), self.prefix.clone()));
        out.push(("graphite_interval".to_string(), self.interval.to_string()));
        out.push(("graphite_buffer".to_string(), self.buffer.to_string()));
    }
}

/// `tcp://HOST[:PORT]` (`tcp://[IPv6]:PORT`) to `HOST:PORT`; the port
/// defaults to carbon's 2003.
pub fn parse_target(value: &str) -> Result<String, String> {
    let Some(rest) = value.strip_prefix("tcp://") else {
        return Err(format!(
            "`{value}` is not tcp://HOST:PORT (for example tcp://192.0.2.20:{CARBON_DEFAULT_PORT})"
        ));
    };
    let (host, port) = split_host_port(rest, CARBON_DEFAULT_PORT, |host| {
        if host.is_empty() || host == "[]" || host.contains(['/', ' ']) {
            Err(format!("`{value}`: missing or invalid host"))
        } else {
            Ok(())
        }
    })?;
    Ok(format!("{host}:{port}"))
}

/// A prefix is one or more dot-separated components of `A-Z a-z 0-9 _ -`.
pub fn check_prefix(value: &str) -> Result<(), String> {
    let ok = value.split('.').all(|c| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{value}` must be dot-separated words of A-Z a-z 0-9 _ - (for example vmwatch or servers.panel1.vmwatch)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_text;

    #[test]
    fn targets_and_prefixes_are_checked() {
        let targets = ["tcp://carbon", "tcp://10.0.0.5:2013", "tcp://[::1]:2003"];
        let parsed = targets.map(|t| parse_target(t).unwrap());
        assert_eq!(parsed, ["carbon:2003", "10.0.0.5:2013", "[::1]:2003"]);
        for bad in ["udp://x:1", "tcp://x:0", "tcp://:2003"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
        assert!(check_prefix("servers.panel-1.vmwatch").is_ok());
        assert!(check_prefix("a..b").is_err());
        assert!(check_prefix("a b").is_err());
    }

    #[test]
    fn config_keys_default_off_and_report_file_line_errors() {
        let load = |text| load_text("m.conf", text, |_, l| Settings::load(l));
        let (s, warnings) = load("");
        assert!(warnings.unwrap().is_empty());
        assert_eq!(s.target, None);
        assert_eq!(
            (s.prefix.as_str(), s.interval, s.buffer),
            ("vmwatch", 60, 100_000)
        );

        let (s, warnings) =
            load("graphite=tcp://127.0.0.1\ngraphite_prefix=x.y\ngraphite_interval=5\n");
        assert!(warnings.unwrap().is_empty());
        assert_eq!(s.target.as_deref(), Some("127.0.0.1:2003"));
        assert_eq!(s.interval, 5);

        let (_, refused) =
            load("graphite=127.0.0.1:2003\ngraphite_prefix=a..b\ngraphite_buffer=5\n");
        let errs = refused.unwrap_err().lines();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with("m.conf:1: `graphite`: `127.0.0.1:2003` is not tcp://"));
        assert!(errs[1].starts_with("m.conf:2: `graphite_prefix`"));
        assert!(errs[2]
            .starts_with("m.conf:3: `graphite_buffer` must be a whole number between 100 and"));
    }
}
