//! The two daemons by name: which program each is and which file it keeps
//! for check_vmwatch and `--status` by default.
//!
//! A neutral place both sides use: the daemons take their identity from it
//! ([`crate::service::Daemon::ROLE`]), and check_vmwatch (`-M master|node`)
//! names the daemon it checks with it.

/// One of the two daemons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// vmwatch-master, on the panel host.
    Master,
    /// vmwatch-node, on each KVM node.
    Node,
}

impl Role {
    /// The program name: syslog ident, default file names.
    pub const fn program(self) -> &'static str {
        match self {
            Role::Master => "vmwatch-master",
            Role::Node => "vmwatch-node",
        }
    }

    /// The default configuration file (`-c`).
    pub fn config_file(self) -> String {
        format!("/usr/local/mgr5/etc/{}.conf", self.program())
    }

    /// The default pid file (`-p`).
    pub fn pidfile(self) -> String {
        format!("/var/run/{}.pid", self.program())
    }

    /// The default of the file the daemon keeps for check_vmwatch: the
    /// master's `state_file` (docs/state-file.md), the node's `status_file`
    /// (docs/node-status.md).
    pub const fn status_file(self) -> &'static str {
        match self {
            Role::Master => "/usr/local/mgr5/var/vmwatch-master.state",
            Role::Node => "/usr/local/mgr5/var/vmwatch-node.status",
        }
    }
}
