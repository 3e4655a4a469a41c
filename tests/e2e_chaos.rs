//! Issue 7's faults, proven on the machine's real libvirtd with real QEMU
//! guests, the real binaries and the recording panel command: one phased
//! test drives three guests through random lifecycle operations (fixed seed)
//! while it injects one fault after another, and after each checks that
//!
//! - the panel's view equals `virsh domstate` for every guest within one
//!   `sync_interval` (10 s here), and prints how long that took;
//! - no state was reported that never happened (only the states the guests
//!   really went through: running, paused, shutdown, shutoff);
//! - every reset the test caused reached the panel as a reboot at least once
//!   (reboots waiting together are delivered as one, docs/panel-api.md). The
//!   test resets guests only while a node runs: libvirt keeps no record of a
//!   reboot, so one made while no node watches is seen by nobody.
//!
//! A separate bounded test pushes 10,000 lifecycle events of four real
//! guests (suspended and resumed through one `virsh` shell) through a real
//! node and checks the final view exact.
//!
//! Both use the machine's libvirtd, and the chaos test kills and restarts
//! it: `#[ignore]`d for a plain `cargo test`, run by `make test`
//! (`--include-ignored`).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::common::guest::{libvirtd_pid, restart_libvirtd, virsh, virsh_try, Guest, URI};
use crate::common::procfs::rss_kib;
use crate::common::*;

/// The node's snapshot period: the bound on convergence after any fault.
const SYNC: Duration = Duration::from_secs(10);
/// Slack over SYNC for a busy machine: the time to notice, send and call.
const SLACK: Duration = Duration::from_secs(20);

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `virsh domstate` in the panel's words.
fn panel_word(virsh_state: &str) -> String {
    match virsh_state {
        "shut off" => "shutoff".into(),
        "in shutdown" => "shutdown".into(),
        other => other.into(),
    }
}

/// The last state the panel got per uuid.
fn panel_view(panel: &Panel) -> HashMap<String, String> {
    let mut m = HashMap::new();
    for l in panel.lines() {
        if l.function == "vmwatch.domain" {
            m.insert(l.field("uuid").to_string(), l.field("state").to_string());
        }
    }
    m
}

struct Cluster {
    dir: TestDir,
    panel: Panel,
    master: Daemon,
    node: Daemon,
    guests: Vec<Guest>,
    rng: Rng,
    /// Resets per guest not yet seen at the panel: (uuid, reboot lines
    /// before the reset).
    owed: Vec<(String, usize)>,
    convergence: BTreeMap<usize, (String, f64)>,
}

impl Cluster {
    fn report(&self) -> String {
        report(&[&self.master, &self.node], Some(&self.panel))
    }

    fn reboot_lines(&self, uuid: &str) -> usize {
        self.panel
            .lines()
            .iter()
            .filter(|l| l.is_reboot(uuid))
            .count()
    }

    /// One random operation on one guest, as libvirt allows it. Resets only
    /// while a node watches: libvirt keeps no record of a reboot, so one
    /// made while no node runs is seen by nobody.
    fn random_op(&mut self, watched: bool) {
        let i = (self.rng.next() % self.guests.len() as u64) as usize;
        let g = &self.guests[i];
        let state = g.state();
        let roll = self.rng.next() % 10;
        match state.as_str() {
            "running" if roll < 3 => g.suspend(),
            "running" if roll < 6 && watched => {
                let before = self
                    .panel
                    .lines()
                    .iter()
                    .filter(|l| l.is_reboot(&g.uuid))
                    .count();
                g.reset();
                self.owed.push((g.uuid.clone(), before));
            }
            "running" if roll < 8 => g.destroy(),
            "running" => {}
            "paused" if roll < 7 => g.resume(),
            "paused" => g.destroy(),
            "shut off" => g.start(),
            _ => {}
        }
    }

    fn ops(&mut self, n: usize) {
        for _ in 0..n {
            self.random_op(true);
        }
    }

    /// Operations while no node watches libvirt.
    fn unwatched_ops(&mut self, n: usize) {
        for _ in 0..n {
            self.random_op(false);
        }
    }

    /// Waits until the panel agrees with libvirt on every guest, every reset
    /// was delivered, and nothing impossible was reported; records the time.
    fn converged(&mut self, fault: &str, since: Instant) {
        let deadline = SYNC + SLACK;
        let check = |c: &Cluster| -> Option<()> {
            let view = panel_view(&c.panel);
            for g in &c.guests {
                if view.get(&g.uuid) != Some(&panel_word(&g.state())) {
                    return None;
                }
            }
            c.owed
                .iter()
                .all(|(u, before)| c.reboot_lines(u) > *before)
                .then_some(())
        };
        wait_for(
            &format!("the panel to equal libvirt after: {fault}"),
            deadline,
            || check(self),
            || {
                let truth: Vec<String> = self
                    .guests
                    .iter()
                    .map(|g| format!("{} {}", g.uuid, g.state()))
                    .collect();
                format!(
                    "libvirt: {truth:?}\nowed reboots: {:?}\n{}",
                    self.owed,
                    self.report()
                )
            },
        );
        let took = since.elapsed().as_secs_f64();
        eprintln!("chaos: {fault}: the panel equals libvirt {took:.2} s after the fault ended");
        let n = self.convergence.len();
        self.convergence.insert(n, (fault.to_string(), took));
        self.owed.clear();
        for l in self.panel.lines() {
            if l.function == "vmwatch.domain" {
                let s = l.field("state");
                assert!(
                    ["running", "paused", "shutdown", "shutoff"].contains(&s),
                    "a state no guest went through: {l:?}"
                );
            }
        }
    }

    fn restart_master(&mut self, tag: &str) {
        self.master = start_master_conf(&self.dir, tag);
    }

    fn restart_node(&mut self, tag: &str) {
        self.node = Daemon::spawn(
            "vmwatch-node",
            &node_bin(),
            &self.dir,
            tag,
            &self.dir.join("node.conf"),
            &self.dir.join("node.log"),
            &[],
        );
        self.node.wait_log("watching", DAEMON_DEADLINE);
    }
}

#[test]
#[ignore = "needs libvirtd (kills and restarts it): make test"]
fn chaos_every_fault_converges_to_the_truth_with_every_reboot() {
    let dir = TestDir::new("chaos");
    let panel = Panel::new(&dir);
    let (master, port) = start_master(
        &dir,
        &panel,
        "state_interval=1\npanel_timeout=3\nnode_timeout=30\n",
    );
    let node_text = node_config_text(
        &dir,
        "node",
        port,
        SECRET,
        "c1",
        URI,
        "stats=no\nsync_interval=10\nqueue_size=16\nkeepalive_interval=1\nkeepalive_count=3\n",
    );
    let node = start_node(&dir, "node", &node_text);
    let guests: Vec<Guest> = ["a", "b", "c"]
        .iter()
        .map(|s| Guest::new(&dir, s))
        .collect();
    for g in &guests {
        g.define();
        g.start();
    }
    let mut c = Cluster {
        dir,
        panel,
        master,
        node,
        guests,
        rng: Rng(0x7e57_c4a0_5eed),
        owed: Vec::new(),
        convergence: BTreeMap::new(),
    };
    c.ops(6);
    c.converged("none (warm-up)", Instant::now());

    // 1. Master SIGKILL while guests change, then restart.
    c.master.signal(libc::SIGKILL);
    c.master.wait_exit(DAEMON_DEADLINE);
    c.ops(6);
    c.restart_master("master-k");
    c.converged("master SIGKILL and restart", Instant::now());

    // 2. Node SIGKILL, changes while it is gone, restart.
    c.node.signal(libc::SIGKILL);
    c.node.wait_exit(DAEMON_DEADLINE);
    c.unwatched_ops(6);
    c.restart_node("node-k");
    c.converged("node SIGKILL and restart", Instant::now());

    // 3. Node SIGTERM right after changes: its queue is delivered first.
    c.ops(6);
    c.node.signal(libc::SIGTERM);
    assert!(
        c.node.wait_exit(Duration::from_secs(10)).success(),
        "{}",
        c.report()
    );
    c.restart_node("node-t");
    c.converged("node SIGTERM and restart", Instant::now());

    // 4. libvirtd killed: the node exits 3 within its keepalive window.
    let pid = libvirtd_pid().expect("libvirtd's pid");
    assert!(signal(pid, libc::SIGKILL));
    let status = c.node.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(3), "{}", c.report());
    wait_for(
        "the killed libvirtd to be gone",
        DAEMON_DEADLINE,
        || (!alive(pid)).then_some(()),
        || c.report(),
    );
    assert!(restart_libvirtd(), "libvirtd restarted");
    virsh(&["version"]);
    c.unwatched_ops(4);
    c.restart_node("node-l");
    c.converged("libvirtd killed and restarted", Instant::now());

    // 5. The panel refuses every other call.
    c.panel.flaky(true);
    c.ops(8);
    c.converged("panel failing half of its calls", Instant::now());
    c.panel.flaky(false);

    // 6. The panel hangs past panel_timeout, then recovers.
    c.panel.hang(true);
    c.ops(6);
    wait_for(
        "a hung panel call",
        PANEL_DEADLINE,
        || (!c.panel.hung_pids().is_empty()).then_some(()),
        || c.report(),
    );
    c.panel.hang(false);
    let t = Instant::now();
    c.converged("panel hanging past its timeout", t);

    // 7. The master unreachable while events keep coming: the node's queue
    // overflows and its memory stays flat; the snapshot repairs it.
    c.master.signal(libc::SIGTERM);
    assert!(c.master.wait_exit(Duration::from_secs(10)).success());
    let rss_before = rss_kib(c.node.pid());
    let running: Vec<usize> = (0..c.guests.len())
        .filter(|&i| c.guests[i].state() == "running")
        .collect();
    let g = running.first().copied().unwrap_or_else(|| {
        c.guests[0].start();
        0
    });
    for _ in 0..50 {
        c.guests[g].suspend();
        c.guests[g].resume();
    }
    let before = c.reboot_lines(&c.guests[g].uuid);
    c.guests[g].reset();
    c.owed.push((c.guests[g].uuid.clone(), before));
    wait_for(
        "the node's queue to overflow",
        DAEMON_DEADLINE,
        || (!c.node.log_lines("queue to the master is full").is_empty()).then_some(()),
        || c.report(),
    );
    let rss_after = rss_kib(c.node.pid());
    eprintln!("chaos: node RSS {rss_before} KiB before the outage, {rss_after} KiB after 101 queued events");
    assert!(
        rss_after < rss_before + 4096,
        "node memory grew from {rss_before} to {rss_after} KiB while the master was away"
    );
    c.restart_master("master-u");
    c.converged("master unreachable while events came", Instant::now());

    eprintln!("chaos: convergence per fault: {:?}", c.convergence);
    let _ = virsh_try(&["list", "--all"]);
}

/// 10,000 lifecycle events from real guests through a real node: virsh in
/// shell mode (one connection, commands on its standard input) suspends and resumes four
/// guests 1,250 times each, then leaves two of them paused; the panel's
/// final view must equal libvirt's exactly.
#[test]
#[ignore = "needs libvirtd: make test"]
fn ten_thousand_events_end_in_the_exact_view() {
    let dir = TestDir::new("ten-thousand");
    let panel = Panel::new(&dir);
    let (m, port) = start_master(&dir, &panel, "panel_batch=500\n");
    let text = node_config_text(
        &dir,
        "node",
        port,
        SECRET,
        "t1",
        URI,
        "stats=no\nsync_interval=30\n",
    );
    let node = start_node(&dir, "node", &text);
    let guests: Vec<Guest> = ["p", "q", "r", "s"]
        .iter()
        .map(|s| Guest::new(&dir, s))
        .collect();
    for g in &guests {
        g.define();
        g.start();
    }
    let started = Instant::now();
    let mut commands = String::new();
    for _ in 0..1250 {
        for g in &guests {
            commands.push_str(&format!("suspend {0}\nresume {0}\n", g.name));
        }
    }
    for g in &guests[..2] {
        commands.push_str(&format!("suspend {}\n", g.name));
    }
    // Commands on standard input: one connection for all of them.
    let mut child = std::process::Command::new("timeout")
        .args(["300", "virsh", "-q", "-c", URI])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run virsh");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(commands.as_bytes()).expect("feed virsh");
    }
    let out = child.wait_with_output().expect("wait for virsh");
    assert!(
        out.status.success(),
        "virsh batch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "10,002 lifecycle events caused in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let expected: HashMap<String, String> = guests
        .iter()
        .map(|g| (g.uuid.clone(), panel_word(&g.state())))
        .collect();
    assert_eq!(
        expected.values().filter(|s| *s == "paused").count(),
        2,
        "{expected:?}"
    );
    wait_for(
        "the exact final view after 10,000 events",
        SYNC * 3 + SLACK,
        || {
            let view = panel_view(&panel);
            expected
                .iter()
                .all(|(u, s)| view.get(u) == Some(s))
                .then_some(())
        },
        || report(&[&m, &node], Some(&panel)),
    );
    eprintln!(
        "10,000 events: final view exact {:.1} s after the first; {} panel calls, {} lines",
        started.elapsed().as_secs_f64(),
        panel.calls().len(),
        panel.lines().len()
    );
}
