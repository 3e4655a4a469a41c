//! The node's configuration: `/usr/local/mgr5/etc/vmwatch-node.conf`.
//!
//! The panel writes `connect`, `secret` and `node_id`; everything else is ours
//! and has a default that suits a production node.

use crate::config::{check_secret, mask_secret, yes_no, DaemonConfig, Loader, LogSettings};
use crate::protocol::check_node_id;
use crate::role::Role;

/// Effective node settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    pub path: String,
    /// Where the master listens (`tcp://IP:PORT`).
    pub connect: String,
    pub secret: String,
    pub node_id: String,
    /// libvirt connection URI.
    pub uri: String,
    pub log: LogSettings,
    /// Capacity of the channel between libvirt callbacks and the sender.
    pub queue_size: usize,
    /// Seconds between activity samples (the panel's "VM status check").
    pub stats_interval: u64,
    /// Seconds between full snapshots that repair anything lost.
    pub sync_interval: u64,
    /// Seconds of silence after which the node says it is alive.
    pub heartbeat_interval: u64,
    /// libvirt keepalive: probe every `keepalive_interval` s, give up after
    /// `keepalive_count` unanswered probes.
    pub keepalive_interval: u64,
    pub keepalive_count: u64,
    /// Whether to sample stats at all.
    pub stats: bool,
    /// `auto` (bulk API where libvirt has it) or `legacy` (per-domain calls).
    pub stats_api: String,
    /// Where the node writes its status for check_vmwatch and `--status`.
    pub status_file: String,
    /// Seconds between status file writes.
    pub status_interval: u64,
    /// Where the node keeps each domain's last reboot id across its own
    /// restarts (docs/node-status.md, "Reboot ids").
    pub reboot_file: String,
}

impl DaemonConfig for NodeConfig {
    fn log(&self) -> &LogSettings {
        &self.log
    }

    fn from_loader(path: String, l: &mut Loader) -> NodeConfig {
        NodeConfig {
            path,
            connect: l.endpoint("connect", None),
            secret: l.checked("secret", None, check_secret),
            node_id: l.checked("node_id", None, check_node_id),
            uri: l.string("uri", Some("qemu:///system")),
            log: LogSettings::load(l, "/usr/local/mgr5/var/vmwatch-node.log"),
            queue_size: l.number("queue_size", 4096, 16, 1_000_000) as usize,
            stats_interval: l.number("stats_interval", 600, 1, 86_400),
            sync_interval: l.number("sync_interval", 600, 1, 86_400),
            heartbeat_interval: l.number("heartbeat_interval", 30, 1, 3_600),
            keepalive_interval: l.number("keepalive_interval", 5, 1, 600),
            keepalive_count: l.number("keepalive_count", 3, 1, 100),
            stats: l.boolean("stats", true),
            stats_api: l.checked("stats_api", Some("auto"), |v| match v {
                "auto" | "legacy" => Ok(()),
                _ => Err(format!("must be auto or legacy, not `{v}`")),
            }),
            status_file: l.string("status_file", Some(Role::Node.status_file())),
            status_interval: l.number("status_interval", 5, 1, 3_600),
            reboot_file: l.string(
                "reboot_file",
                Some("/usr/local/mgr5/var/vmwatch-node.reboots"),
            ),
        }
    }

    fn describe(&self) -> Vec<(String, String)> {
        let mut out = vec![
            ("connect".to_string(), self.connect.clone()),
            ("secret".to_string(), mask_secret(&self.secret)),
            ("node_id".to_string(), self.node_id.clone()),
            ("uri".to_string(), self.uri.clone()),
        ];
        self.log.describe(&mut out);
        for (k, v) in [
            ("queue_size", self.queue_size as u64),
            ("stats_interval", self.stats_interval),
            ("sync_interval", self.sync_interval),
            ("heartbeat_interval", self.heartbeat_interval),
            ("keepalive_interval", self.keepalive_interval),
            ("keepalive_count", self.keepalive_count),
            ("status_interval", self.status_interval),
        ] {
            out.push((k.to_string(), v.to_string()));
        }
        out.push(("stats".to_string(), yes_no(self.stats)));
        out.push(("stats_api".to_string(), self.stats_api.clone()));
        out.push(("status_file".to_string(), self.status_file.clone()));
        out.push(("reboot_file".to_string(), self.reboot_file.clone()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_text;

    #[test]
    fn panel_written_file_loads_with_defaults() {
        let text = "connect=tcp://192.0.2.1:1515\nsecret=ABCDEF0123456789\nnode_id=3\n";
        let (c, warnings) = load_text("n.conf", text, NodeConfig::from_loader);
        assert!(warnings.unwrap().is_empty());
        assert_eq!(c.connect, "tcp://192.0.2.1:1515");
        assert_eq!(c.node_id, "3");
        assert_eq!(c.uri, "qemu:///system");
        assert_eq!(c.stats_interval, 600);
        assert_eq!(c.log.file, "/usr/local/mgr5/var/vmwatch-node.log");
        let shown = c.describe();
        assert!(!shown.iter().any(|(_, v)| v.contains("ABCDEF")));
    }

    #[test]
    fn missing_and_bad_values_are_all_reported() {
        let text = "connect=http://x\nnode_id=a b\nstats_interval=0\n";
        let (_, refused) = load_text("n.conf", text, NodeConfig::from_loader);
        let errs = refused.unwrap_err().lines();
        assert_eq!(errs.len(), 4, "{errs:?}");
        assert!(errs[0].starts_with("n.conf: missing required `secret"));
        assert!(errs[1].starts_with("n.conf:1: `connect`"));
        assert!(errs[2].starts_with("n.conf:2: `node_id`"));
        assert!(errs[3]
            .starts_with("n.conf:3: `stats_interval` must be a whole number between 1 and 86400"));
    }
}
