//! The master's configuration: `/usr/local/mgr5/etc/vmwatch-master.conf`.
//!
//! The panel writes `disabled`, `listen` and `secret`; the other keys are
//! ours, with defaults for a production panel host.

use crate::config::{check_secret, mask_secret, yes_no, DaemonConfig, Loader, LogSettings};
use crate::role::Role;

/// Effective master settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterConfig {
    pub path: String,
    /// `disabled=yes`: the panel has not enabled monitoring yet.
    pub disabled: bool,
    /// Where to bind the PULL socket (`tcp://IP:PORT`).
    pub listen: String,
    pub secret: String,
    pub log: LogSettings,
    /// The panel call: program and arguments, split on spaces (no shell).
    pub panel_command: Vec<String>,
    /// Seconds a panel call may take before it is killed and retried.
    pub panel_timeout: u64,
    /// Most updates one panel call carries.
    pub panel_batch: usize,
    /// Where the master keeps its view between restarts and for `--status`.
    pub state_file: String,
    /// Seconds between state file writes.
    pub state_interval: u64,
    /// Warn the panel about running domains with no activity.
    pub check_activity: bool,
    /// Seconds of silence after which a node is reported down.
    pub node_timeout: u64,
    /// Seconds down after which a node id is forgotten (0: never).
    pub node_forget_after: u64,
    /// Seconds a message's timestamp may differ from the master's clock.
    pub max_clock_skew: u64,
    /// Graphite export (`graphite*` keys; off by default).
    pub graphite: super::graphite::settings::Settings,
}

impl DaemonConfig for MasterConfig {
    fn log(&self) -> &LogSettings {
        &self.log
    }

    fn from_loader(path: String, l: &mut Loader) -> MasterConfig {
        let disabled = l.boolean("disabled", false);
        let panel = l.string("panel_command", Some("/usr/local/mgr5/sbin/vmwatch-panel"));
        MasterConfig {
            path,
            disabled,
            listen: l.endpoint("listen", Some("tcp://0.0.0.0:1515")),
            // A disabled master needs no secret: the package's own file
            // ships without one, to keep the service off until the panel
            // writes the real configuration.
            secret: l.checked("secret", disabled.then_some(""), check_secret),
            log: LogSettings::load(l, "/usr/local/mgr5/var/vmwatch-master.log"),
            panel_command: panel.split_whitespace().map(str::to_string).collect(),
            panel_timeout: l.number("panel_timeout", 30, 1, 3_600),
            panel_batch: l.number("panel_batch", 500, 1, 100_000) as usize,
            state_file: l.string("state_file", Some(Role::Master.status_file())),
            state_interval: l.number("state_interval", 5, 1, 3_600),
            check_activity: l.boolean("check_activity", false),
            node_timeout: l.number("node_timeout", 90, 2, 86_400),
            node_forget_after: l.number("node_forget_after", 604_800, 0, 315_360_000),
            max_clock_skew: l.number("max_clock_skew", 300, 1, 86_400),
            graphite: super::graphite::settings::Settings::load(l),
        }
    }

    fn describe(&self) -> Vec<(String, String)> {
        let mut out = vec![
            ("disabled".to_string(), yes_no(self.disabled)),
            ("listen".to_string(), self.listen.clone()),
            ("secret".to_string(), mask_secret(&self.secret)),
        ];
        self.log.describe(&mut out);
        out.push(("panel_command".to_string(), self.panel_command.join(" ")));
        for (k, v) in [
            ("panel_timeout", self.panel_timeout),
            ("panel_batch", self.panel_batch as u64),
        ] {
            out.push((k.to_string(), v.to_string()));
        }
        out.push(("state_file".to_string(), self.state_file.clone()));
        out.push((
            "state_interval".to_string(),
            self.state_interval.to_string(),
        ));
        out.push(("check_activity".to_string(), yes_no(self.check_activity)));
        out.push(("node_timeout".to_string(), self.node_timeout.to_string()));
        out.push((
            "node_forget_after".to_string(),
            self.node_forget_after.to_string(),
        ));
        out.push((
            "max_clock_skew".to_string(),
            self.max_clock_skew.to_string(),
        ));
        self.graphite.describe(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_text;

    #[test]
    fn the_packaged_disabled_file_loads_without_a_secret() {
        let text = include_str!("../../packaging/conf/vmwatch-master.conf");
        let (c, warnings) = load_text("vmwatch-master.conf", text, MasterConfig::from_loader);
        assert!(warnings.unwrap().is_empty());
        assert!(c.disabled);
        // Enabled, the same file is refused for its missing secret.
        let enabled = text.replace("disabled=yes", "disabled=no");
        let (_, refused) = load_text("m.conf", &enabled, MasterConfig::from_loader);
        let errs = refused.unwrap_err().lines();
        assert_eq!(errs[0], "m.conf: missing required `secret=...`");
    }

    #[test]
    fn panel_written_file_loads_with_defaults() {
        let text = "disabled=no\nlisten=tcp://10.1.1.1:1515\nsecret=ABCDEF0123456789\n";
        let (c, warnings) = load_text("m.conf", text, MasterConfig::from_loader);
        assert!(warnings.unwrap().is_empty());
        assert!(!c.disabled);
        assert_eq!(c.listen, "tcp://10.1.1.1:1515");
        assert_eq!(c.panel_command, vec!["/usr/local/mgr5/sbin/vmwatch-panel"]);
        assert_eq!(c.node_timeout, 90);
    }

    #[test]
    fn empty_secret_is_refused_and_listen_defaults_to_port_1515() {
        let text = "listen=tcp://127.0.0.1\nsecret=\n";
        let (c, refused) = load_text("m.conf", text, MasterConfig::from_loader);
        assert_eq!(c.listen, "tcp://127.0.0.1:1515");
        assert_eq!(
            refused.unwrap_err().lines(),
            ["m.conf:2: `secret` has an empty value"]
        );
    }
}
