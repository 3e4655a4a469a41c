//! A master driven by hand, the pieces the master tests share: a one-part
//! snapshot, a master started (again) on its configuration file, what
//! the panel holds last for each domain, `--status`, and the counters of
//! the state file.

use std::collections::HashMap;
use std::process::Command;

use vmwatch::protocol::{Body, DomainState};

use super::{
    event, master_bin, master_state, test_uuid, wait_for, Client, Daemon, Panel, TestDir,
    DAEMON_DEADLINE, PANEL_DEADLINE,
};

/// A snapshot in one part.
pub fn snapshot(id: u64, domains: Vec<DomainState>) -> Body {
    Body::Snapshot {
        id,
        part: 1,
        parts: 1,
        domains,
    }
}

/// Starts `vmwatch-master` on `dir`'s `master.conf` (output in
/// `<tag>.stderr`), not waiting for anything: a first start, or the same
/// master again after a stop or a kill.
pub fn spawn_master(dir: &TestDir, tag: &str) -> Daemon {
    spawn_master_env(dir, tag, &[])
}

/// As [`spawn_master`], with `env` added to its environment (e.g.
/// libfaketime's, to step its wall clock).
pub fn spawn_master_env(dir: &TestDir, tag: &str, env: &[(String, String)]) -> Daemon {
    Daemon::spawn_env(
        "vmwatch-master",
        &master_bin(),
        dir,
        tag,
        &dir.join("master.conf"),
        &dir.join("master.log"),
        &[],
        env,
    )
}

/// As [`spawn_master`], waiting until it listens.
pub fn start_master_conf(dir: &TestDir, tag: &str) -> Daemon {
    let mut m = spawn_master(dir, tag);
    m.wait_log("listening on", DAEMON_DEADLINE);
    m
}

/// The last `vmwatch.domain` state the panel got for each uuid.
pub fn final_states(panel: &Panel) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for l in panel.lines() {
        if l.function == "vmwatch.domain" {
            m.insert(l.field("uuid").to_string(), l.field("state").to_string());
        }
    }
    m
}

/// `vmwatch-master -c DIR/master.conf --status`: (exit code, stdout).
pub fn status_of(dir: &TestDir) -> (i32, String) {
    let out = Command::new(master_bin())
        .arg("-c")
        .arg(dir.join("master.conf"))
        .arg("--status")
        .output()
        .expect("run --status");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The state file's `counter NAME`, 0 when it has none.
pub fn counter(dir: &TestDir, name: &str) -> u64 {
    master_state(dir)
        .counters
        .iter()
        .find(|(k, _)| k == name)
        .map_or(0, |(_, v)| *v)
}

/// Sends the start of a new domain after what `node` sent before and waits
/// until the panel has it: by then the master has handled all that came
/// before it. `what` names the wait in a failure.
pub fn send_marker(node: &mut Client, panel: &Panel, what: &str, ctx: impl Fn() -> String) {
    let marker = test_uuid();
    node.send(Body::Events(vec![event(
        &marker, "marker", "started", "booted",
    )]));
    wait_for(
        what,
        PANEL_DEADLINE,
        || panel.domain_lines(&marker).into_iter().next(),
        ctx,
    );
}
