//! `vmwatch-master --forget-node` against the real master binary, with
//! hand-signed messages from the test's own ZeroMQ clients (a node's
//! libvirt host UUID set by hand) and the recording panel command.
//!
//! The panel must never be wrong about a node id that comes back after it
//! was forgotten: a node with host H and a running guest is forgotten, then
//! speaks again (a new instance, or the same one going on) under the same id
//! and host; whatever the order of the request and its messages, and however
//! the panel queue coalesces the `undefined reason=node forgotten` line with
//! the newer one, the panel ends with the guest running on that node, and so
//! does the state file. A node still speaking is not forgotten under it: its
//! guests really run (docs/panel-api.md, "Node identity").

mod common;

use std::process::Command;

use common::*;
use vmwatch::master::panel::update::Update;
use vmwatch::protocol::Body;

const HOST: &str = "6c0f2a8e-5b1d-4e7a-9c3f-0d1e2f3a4b5c";

fn snapshot(id: u64, domains: Vec<vmwatch::protocol::DomainState>) -> Body {
    Body::Snapshot {
        id,
        part: 1,
        parts: 1,
        domains,
    }
}

/// A master, its panel, and node `fgt` (host [`HOST`]) with one running
/// guest the panel has been told of.
struct Rig {
    dir: TestDir,
    panel: Panel,
    master: Daemon,
    port: u16,
    node: Client,
    uuid: String,
}

impl Rig {
    fn start(name: &str, extra: &str) -> Rig {
        let dir = TestDir::new(name);
        let panel = Panel::new(&dir);
        let (master, port) = start_master(&dir, &panel, extra);
        let uuid = test_uuid();
        let mut rig = Rig {
            node: Rig::client(port),
            dir,
            panel,
            master,
            port,
            uuid,
        };
        rig.node.send(snapshot(1, vec![rig.guest()]));
        rig.wait_domain("the guest running", 0, |l| l.field("state") == "running");
        rig
    }

    /// A new instance of node `fgt` on host [`HOST`].
    fn client(port: u16) -> Client {
        let mut c = Client::connect(port, SECRET, "fgt");
        c.host = Some(HOST.to_string());
        c
    }

    fn guest(&self) -> vmwatch::protocol::DomainState {
        domain_state(&self.uuid, "fgt-vm", "running", "booted")
    }

    fn report(&self) -> String {
        report(&[&self.master], Some(&self.panel))
    }

    /// Waits for a `vmwatch.domain` line of the guest at or after line
    /// `from` matching `pred`; returns its position among the panel's lines.
    fn wait_domain(&self, what: &str, from: usize, pred: impl Fn(&PanelLine) -> bool) -> usize {
        wait_for(
            what,
            PANEL_DEADLINE,
            || {
                self.panel
                    .lines()
                    .iter()
                    .enumerate()
                    .skip(from)
                    .find_map(|(i, l)| {
                        (l.is_domain(&self.uuid) && l.field("node") == "fgt" && pred(l))
                            .then_some(i)
                    })
            },
            || self.report(),
        )
    }

    /// Runs `vmwatch-master --forget-node fgt`; returns what it printed.
    fn forget(&self) -> String {
        let out = Command::new(master_bin())
            .arg("-c")
            .arg(&self.master.config)
            .arg("-p")
            .arg(&self.master.pidfile)
            .args(["--forget-node", "fgt"])
            .output()
            .expect("run vmwatch-master --forget-node");
        assert!(out.status.success(), "{out:?}\n{}", self.report());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn node_lines(&self) -> Vec<String> {
        self.panel
            .lines()
            .iter()
            .filter(|l| l.function == "vmwatch.node" && l.get("node") == Some("fgt"))
            .map(|l| l.field("status").to_string())
            .collect()
    }

    /// The panel got a line on the guest after its line `from` (where it
    /// was before the forget), its last word on the guest is `running` on
    /// node fgt, and the state file agrees.
    fn wait_running_at_the_end(&self, from: usize) {
        wait_for(
            "the panel's last line on the guest, after the forget: running on fgt",
            PANEL_DEADLINE,
            || {
                let lines = self.panel.lines();
                let last = lines.iter().skip(from).rfind(|l| l.is_domain(&self.uuid))?;
                (last.field("node") == "fgt" && last.field("state") == "running").then_some(())
            },
            || self.report(),
        );
        wait_for(
            "the guest running in the state file",
            PANEL_DEADLINE,
            || (saved_state(&self.dir, &self.uuid).as_deref() == Some("running")).then_some(()),
            || self.report(),
        );
        // Nothing queued that would change the panel's mind.
        let state = master_state(&self.dir);
        assert!(
            state.pending.iter().all(|p| match p {
                Update::Domain { uuid, state, .. } if *uuid == self.uuid =>
                    state.to_string() == "running",
                _ => true,
            }),
            "{:?}\n{}",
            state.pending,
            self.report()
        );
    }
}

/// The node is down, forgotten, and comes back as a new instance with the
/// same id and host, listing its guest: the panel hears the guest running
/// again, after the forget lines.
#[test]
fn a_forgotten_node_back_as_a_new_instance_has_its_guest_running_at_the_panel() {
    let mut rig = Rig::start("forget-back", "node_timeout=2\n");
    wait_for(
        "node fgt down",
        PANEL_DEADLINE,
        || (rig.node_lines() == ["up", "down"]).then_some(()),
        || rig.report(),
    );
    let mark = rig.panel.lines().len();
    let said = rig.forget();
    assert!(said.contains("node fgt: forgotten"), "{said}");
    let undefined = rig.wait_domain("undefined, node forgotten", mark, |l| {
        l.field("state") == "undefined" && l.field("reason") == "node forgotten"
    });
    rig.node = Rig::client(rig.port);
    let guest = rig.guest();
    rig.node.send(snapshot(1, vec![guest]));
    let back = rig.wait_domain("running again", undefined, |l| {
        l.field("state") == "running" && l.field("old") == "-"
    });
    assert!(undefined < back, "{}", rig.report());
    assert_eq!(
        rig.node_lines(),
        ["up", "down", "forgotten", "up"],
        "{}",
        rig.report()
    );
    rig.wait_running_at_the_end(mark);
}

/// The same, with the panel failing while the node is forgotten and comes
/// back: the `undefined` line and the newer `running` one share a key and
/// coalesce (as do `status=forgotten` and `status=up`); the newer one is
/// what the panel gets, never lost.
#[test]
fn a_forgotten_node_back_while_the_panel_fails_coalesces_to_running() {
    let mut rig = Rig::start("forget-coalesce", "node_timeout=2\n");
    wait_for(
        "node fgt down",
        PANEL_DEADLINE,
        || (rig.node_lines() == ["up", "down"]).then_some(()),
        || rig.report(),
    );
    let mark = rig.panel.lines().len();
    rig.panel.fail(true);
    let said = rig.forget();
    assert!(said.contains("node fgt: forgotten"), "{said}");
    rig.node = Rig::client(rig.port);
    let guest = rig.guest();
    rig.node.send(snapshot(1, vec![guest]));
    // The master has the guest back before the panel takes anything.
    wait_for(
        "the guest back in the master's state file",
        PANEL_DEADLINE,
        || (saved_state(&rig.dir, &rig.uuid).as_deref() == Some("running")).then_some(()),
        || rig.report(),
    );
    assert!(rig.panel.lines().len() == mark, "{}", rig.report());
    rig.panel.fail(false);
    rig.wait_running_at_the_end(mark);
    // `status=forgotten` coalesced with `status=up` (then maybe `down`):
    // the panel knows the node again.
    wait_for(
        "node fgt known at the panel again",
        PANEL_DEADLINE,
        || {
            let l = rig.node_lines();
            (l.len() > 2 && l.last().map(String::as_str) != Some("forgotten")).then_some(())
        },
        || rig.report(),
    );
}

/// The node goes on sending (the same instance) while the forget request
/// is served: its guest may run, so the panel must not be told it is gone.
/// The request waits (the command says so) until the node is down, and is
/// honoured then: the forget lines follow the node's `down`.
#[test]
fn a_node_still_speaking_is_forgotten_only_once_it_is_down() {
    let mut rig = Rig::start("forget-live", "node_timeout=3\n");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The node's heartbeats go on while the command runs.
    let beating = {
        let stop = stop.clone();
        let mut node = std::mem::replace(&mut rig.node, Rig::client(rig.port));
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                node.send(Body::Heartbeat);
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            node
        })
    };
    let said = rig.forget();
    let accepted = |dir: &TestDir| {
        master_state(dir)
            .counters
            .iter()
            .find(|(k, _)| k == "accepted")
            .map_or(0, |(_, v)| *v)
    };
    // The master served the request while the node kept speaking; more
    // heartbeats follow, and state files are written.
    let served = accepted(&rig.dir);
    wait_for(
        "more heartbeats accepted",
        PANEL_DEADLINE,
        || (accepted(&rig.dir) > served + 3).then_some(()),
        || rig.report(),
    );
    assert!(
        rig.panel
            .domain_lines(&rig.uuid)
            .iter()
            .all(|l| l.field("state") == "running"),
        "the panel was told a running guest is gone (--forget-node said: {said})\n{}",
        rig.report()
    );
    assert_eq!(saved_state(&rig.dir, &rig.uuid).as_deref(), Some("running"));
    assert!(said.contains("node fgt: waiting"), "{said}");
    assert!(
        read_text(&rig.dir.join("master.state.forget")).starts_with("wait fgt "),
        "the request waits in the request file"
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    rig.node = beating.join().expect("heartbeat thread");
    // Silent now: down, then forgotten as asked.
    let undefined = rig.wait_domain("undefined once down", 0, |l| {
        l.field("state") == "undefined" && l.field("reason") == "node forgotten"
    });
    // The domains first, then the node (docs/panel-api.md), even when
    // `status=forgotten` coalesces with a `status=down` still queued.
    let lines = rig.panel.lines();
    let forgotten = lines
        .iter()
        .position(|l| l.function == "vmwatch.node" && l.get("status") == Some("forgotten"))
        .unwrap_or_else(|| panic!("no forgotten line\n{}", rig.report()));
    assert!(undefined < forgotten, "{}", rig.report());
    let nodes = rig.node_lines();
    assert!(
        nodes == ["up", "down", "forgotten"] || nodes == ["up", "forgotten"],
        "{nodes:?}\n{}",
        rig.report()
    );
}

/// The request waits for a master that is not running; meanwhile the node
/// restarted (a new instance, same id and host) and its full list reaches
/// the master as it starts, most likely before the request is served (the
/// first housekeeping tick, a second later): the guest runs, and the panel
/// must end saying so whichever came first.
#[test]
fn a_new_instance_heard_before_a_queued_request_keeps_its_guest_running() {
    let mut rig = Rig::start("forget-queued", "node_timeout=2\n");
    rig.master.stop();
    let said = rig.forget();
    assert!(said.contains("applied when the master starts"), "{said}");
    let config = rig.master.config.clone();
    rig.master = Daemon::spawn(
        "vmwatch-master",
        &master_bin(),
        &rig.dir,
        "master",
        &config,
        &rig.dir.join("master.log"),
        &[],
    );
    rig.master.wait_log("listening on", DAEMON_DEADLINE);
    // Its first housekeeping tick (which serves the request) is a second
    // after it starts listening: the node's new instance most likely
    // comes first.
    rig.node = Rig::client(rig.port);
    let guest = rig.guest();
    rig.node.send(snapshot(1, vec![guest]));
    rig.node.send(Body::Heartbeat);
    wait_for(
        "the request served",
        PANEL_DEADLINE,
        || {
            read_text(&rig.dir.join("master.state.forgotten"))
                .contains("node fgt:")
                .then_some(())
        },
        || rig.report(),
    );
    rig.node.send(Body::Heartbeat);
    println!(
        "the master answered: {}",
        read_text(&rig.dir.join("master.state.forgotten"))
    );
    rig.wait_running_at_the_end(0);
}

/// The request waits for a master that is not running; the node did not
/// restart: the same instance goes on (reconnecting, as after any master
/// restart). It is not mistaken for a restarted node: the request waits
/// while it speaks, and it is forgotten once it is down.
#[test]
fn the_same_instance_going_on_after_a_master_restart_is_forgotten_once_down() {
    let mut rig = Rig::start("forget-same", "node_timeout=2\n");
    rig.master.stop();
    let said = rig.forget();
    assert!(said.contains("applied when the master starts"), "{said}");
    let config = rig.master.config.clone();
    rig.master = Daemon::spawn(
        "vmwatch-master",
        &master_bin(),
        &rig.dir,
        "master",
        &config,
        &rig.dir.join("master.log"),
        &[],
    );
    rig.master.wait_log("listening on", DAEMON_DEADLINE);
    rig.node.reconnect();
    rig.node.send(Body::Heartbeat);
    let answers = || read_text(&rig.dir.join("master.state.forgotten"));
    wait_for(
        "the request served",
        PANEL_DEADLINE,
        || answers().contains("node fgt:").then_some(()),
        || rig.report(),
    );
    assert!(
        !answers().contains("not forgotten"),
        "{}\n{}",
        answers(),
        rig.report()
    );
    rig.wait_domain("undefined once down", 0, |l| {
        l.field("state") == "undefined" && l.field("reason") == "node forgotten"
    });
    assert!(answers().contains("node fgt: forgotten"), "{}", answers());
    println!("the master answered:\n{}", answers());
}
