//! Issue 15 end to end: live migrations and node identity on two real
//! libvirt daemons — the machine's (`qemu:///system`) and a second one this
//! test starts in a namespace of its own (tests/common/second_libvirtd.rs)
//! — each watched by a real vmwatch-node, with a real master and the
//! recording panel command.
//!
//! - guests migrated live both ways (`virsh migrate --live --persistent
//!   --undefinesource`): no `vmwatch.duplicate`, the right node at the end,
//!   no ghost on the source (the panel learns it at once, not at the next
//!   full list), and how long the panel took (printed, not asserted);
//! - a migration cancelled with `virsh domjobabort` and one failed at the
//!   destination (its QEMU killed): no duplicate, the guest stays where it
//!   was, nothing left on the destination;
//! - the same guest XML started on both daemons: `by=uuid` duplicate,
//!   cleared when one stops; a same-name copy with another UUID: `by=name`;
//! - a node re-added under a new id, a node down for `node_forget_after`,
//!   `vmwatch-master --forget-node`: the old id is forgotten with its lines;
//! - two nodes with one `node_id` on the two daemons: a clash alarm in the
//!   state file and check_vmwatch CRITICAL naming both hosts; no domain of
//!   either is erased by the other's lists.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::guest::URI;
use crate::common::second_libvirtd::{virsh_ok, Firmware, MigGuest, PanelClock, SecondLibvirtd};
use crate::common::*;

/// The two nodes of these tests, one per daemon.
const NODE_A: &str = "mig-a";
const NODE_B: &str = "mig-b";

/// A master and a node on each daemon. Fields drop in this order: the
/// daemons first, the second libvirtd, then the directory.
struct Rig {
    nodes: Vec<Daemon>,
    master: Daemon,
    panel: Panel,
    port: u16,
    b: SecondLibvirtd,
    dir: TestDir,
}

impl Rig {
    fn start(name: &str, master_extra: &str, ids: [&str; 2], node_extra: &str) -> Rig {
        let dir = TestDir::new(name);
        let b = SecondLibvirtd::start(&dir);
        let panel = Panel::new(&dir);
        let (master, port) = start_master(&dir, &panel, master_extra);
        let mut rig = Rig {
            dir,
            b,
            panel,
            master,
            port,
            nodes: Vec::new(),
        };
        let b_uri = rig.b.uri.clone();
        rig.start_node("node-a", ids[0], URI, node_extra);
        rig.start_node("node-b", ids[1], &b_uri, node_extra);
        rig
    }

    fn start_node(&mut self, tag: &str, id: &str, uri: &str, extra: &str) {
        let text = node_config_text(&self.dir, tag, self.port, SECRET, id, uri, extra);
        self.nodes.push(start_node(&self.dir, tag, &text));
    }

    fn report(&self) -> String {
        let mut all: Vec<&Daemon> = vec![&self.master];
        all.extend(self.nodes.iter());
        report(&all, Some(&self.panel))
    }

    /// Waits for a panel line matching `want`; returns it.
    fn wait_line(&self, what: &str, want: impl Fn(&PanelLine) -> bool) -> PanelLine {
        wait_for(
            what,
            PANEL_DEADLINE,
            || self.panel.lines().into_iter().find(|l| want(l)),
            || self.report(),
        )
    }

    fn duplicates(&self) -> Vec<String> {
        self.panel
            .lines()
            .into_iter()
            .filter(|l| l.function == "vmwatch.duplicate")
            .map(|l| l.raw)
            .collect()
    }
}

fn domain_on(l: &PanelLine, uuid: &str, node: &str, state: &str) -> bool {
    l.is_domain(uuid) && l.field("node") == node && l.field("state") == state
}

/// The last state the panel was told of `uuid` on `node`.
fn last_state(panel: &Panel, uuid: &str, node: &str) -> Option<(String, String)> {
    panel
        .domain_lines(uuid)
        .into_iter()
        .rev()
        .find(|l| l.field("node") == node)
        .map(|l| (l.field("state").to_string(), l.field("reason").to_string()))
}

/// `virsh migrate --live --persistent --undefinesource` from `from` to
/// `to`, over a free loopback port; returns when virsh does.
fn migrate(from: &str, to: &str, name: &str) {
    let port = free_port();
    let uri = format!("tcp://127.0.0.1:{port}");
    virsh_ok(
        from,
        &[
            "migrate",
            "--live",
            "--persistent",
            "--undefinesource",
            // The disk is one file both daemons see, which libvirt cannot
            // tell from local storage.
            "--unsafe",
            name,
            to,
            "--migrateuri",
            &uri,
        ],
    );
}

/// The panel lines about `uuid` since `from`, with their time after `t0`.
fn timeline(clock: &PanelClock, from: usize, t0: Instant, uuid: &str) -> String {
    clock
        .lines()
        .into_iter()
        .skip(from)
        .filter(|(_, l)| l.contains(uuid) || l.starts_with("vmwatch.duplicate"))
        .map(|(t, l)| {
            let ms = if t >= t0 {
                format!("+{}", (t - t0).as_millis())
            } else {
                format!("-{}", (t0 - t).as_millis())
            };
            format!("  {ms:>6} ms  {l}\n")
        })
        .collect()
}

#[test]
#[ignore = "needs libvirtd and root (a second libvirtd in a namespace): make test"]
fn live_migrations_both_ways_are_no_duplicates_and_leave_no_ghost() {
    let rig = Rig::start("mig-live", "", [NODE_A, NODE_B], "");
    let clock = PanelClock::start(&rig.panel);
    let g = MigGuest::new(&rig.dir, "mig-live", Firmware::Quiet, &rig.b.uri);
    g.start_on(URI);
    rig.wait_line("the guest running on node A", |l| {
        domain_on(l, &g.uuid, NODE_A, "running")
    });
    let mut timings = Vec::new();
    for (round, (from, to, src, dst)) in [
        (URI, rig.b.uri.as_str(), NODE_A, NODE_B),
        (rig.b.uri.as_str(), URI, NODE_B, NODE_A),
        (URI, rig.b.uri.as_str(), NODE_A, NODE_B),
    ]
    .into_iter()
    .enumerate()
    {
        let seen = clock.lines().len();
        let started = Instant::now();
        migrate(from, to, &g.name);
        let returned = Instant::now();
        assert!(g.on(to) && !g.on(from), "libvirt moved the guest");
        // The panel knows the guest runs on the destination and is gone
        // from the source: no ghost until the next full list (600 s away).
        wait_for(
            &format!("the panel to follow move {} ({src} -> {dst})", round + 1),
            PANEL_DEADLINE,
            || {
                let at_dst =
                    last_state(&rig.panel, &g.uuid, dst).is_some_and(|(s, _)| s == "running");
                let gone = last_state(&rig.panel, &g.uuid, src)
                    .is_some_and(|(s, r)| s == "undefined" && r == "migrated");
                (at_dst && gone).then_some(())
            },
            || rig.report(),
        );
        let knew = |node: &str, state: &str| {
            clock
                .lines()
                .into_iter()
                .skip(seen)
                .find(|(_, l)| {
                    let p = PanelLine::parse(l);
                    domain_on(&p, &g.uuid, node, state)
                })
                .map(|(t, _)| {
                    // Negative: the panel knew before virsh returned.
                    t.saturating_duration_since(returned).as_millis() as i64
                        - returned.saturating_duration_since(t).as_millis() as i64
                })
        };
        let (run_ms, gone_ms) = (knew(dst, "running"), knew(src, "undefined"));
        println!(
            "move {} {src} -> {dst}: virsh migrate took {} ms; after it returned the panel knew the guest runs on {dst} in {:?} ms and left {src} in {:?} ms; panel lines (ms from virsh start):\n{}",
            round + 1,
            (returned - started).as_millis(),
            run_ms,
            gone_ms,
            timeline(&clock, seen, started, &g.uuid)
        );
        timings.push((run_ms, gone_ms));
        // The destination was announced paused (waiting for its memory),
        // not running, while the migration was under way.
        let dst_lines: Vec<(String, String)> = rig
            .panel
            .domain_lines(&g.uuid)
            .into_iter()
            .filter(|l| l.field("node") == dst)
            .map(|l| (l.field("state").to_string(), l.field("reason").to_string()))
            .collect();
        assert!(
            dst_lines
                .iter()
                .rev()
                .take(2)
                .any(|l| *l == ("paused".into(), "migration".into())),
            "the destination is paused/migration first: {dst_lines:?}\n{}",
            rig.report()
        );
    }
    assert_eq!(rig.duplicates(), Vec::<String>::new(), "{}", rig.report());
    assert_eq!(
        last_state(&rig.panel, &g.uuid, NODE_B)
            .map(|s| s.0)
            .as_deref(),
        Some("running")
    );
    assert_eq!(
        last_state(&rig.panel, &g.uuid, NODE_A),
        Some(("undefined".into(), "migrated".into()))
    );
    println!(
        "timings (running on destination, gone from source) after virsh returned, ms: {timings:?}"
    );
}

/// Starts `virsh migrate` of a dirty guest that cannot converge (1 MiB/s,
/// 1 ms downtime), waits until the destination is announced; returns the
/// running virsh.
fn start_endless_migration(rig: &Rig, g: &MigGuest) -> std::process::Child {
    virsh_ok(URI, &["migrate-setmaxdowntime", &g.name, "1"]);
    let port = free_port();
    let child = Command::new("virsh")
        .args(["-q", "-c", URI, "migrate", "--live", "--persistent"])
        .args(["--undefinesource", "--unsafe", "--bandwidth", "1"])
        .args([&g.name, &rig.b.uri])
        .args(["--migrateuri", &format!("tcp://127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run virsh migrate");
    wait_for(
        "the destination to be announced paused for the migration",
        PANEL_DEADLINE,
        || {
            (last_state(&rig.panel, &g.uuid, NODE_B) == Some(("paused".into(), "migration".into())))
                .then_some(())
        },
        || rig.report(),
    );
    child
}

/// Waits for virsh to fail (the migration did not happen).
fn wait_failed(child: std::process::Child, what: &str) -> String {
    let mut child = child;
    let status = wait_for(
        what,
        Duration::from_secs(60),
        || child.try_wait().ok().flatten(),
        String::new,
    );
    let out = child.wait_with_output().expect("virsh output");
    assert!(!status.success(), "{what}: the migration succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
#[ignore = "needs libvirtd and root (a second libvirtd in a namespace): make test"]
fn cancelled_and_failed_migrations_are_no_duplicates() {
    let rig = Rig::start("mig-abort", "", [NODE_A, NODE_B], "");
    let clock = PanelClock::start(&rig.panel);
    let g = MigGuest::new(&rig.dir, "mig-abort", Firmware::Dirty, &rig.b.uri);
    g.start_on(URI);
    rig.wait_line("the guest running on node A", |l| {
        domain_on(l, &g.uuid, NODE_A, "running")
    });

    // Cancelled on the source.
    let seen = clock.lines().len();
    let t0 = Instant::now();
    let child = start_endless_migration(&rig, &g);
    virsh_ok(URI, &["domjobabort", &g.name]);
    let why = wait_failed(child, "virsh migrate to end after domjobabort");
    println!("cancelled: virsh said {why:?}");
    rig.wait_line("the destination's copy gone after the abort", |l| {
        domain_on(l, &g.uuid, NODE_B, "undefined")
    });
    assert!(g.on(URI) && !g.on(&rig.b.uri), "the guest stayed on A");
    println!(
        "cancelled migration, panel lines (ms from virsh start):\n{}",
        timeline(&clock, seen, t0, &g.uuid)
    );

    // Failed at the destination: its QEMU dies mid-migration.
    let seen = clock.lines().len();
    let t0 = Instant::now();
    let child = start_endless_migration(&rig, &g);
    let pid = wait_for(
        "the destination QEMU's pid",
        PANEL_DEADLINE,
        || rig.b.qemu_pid(&g.name),
        || rig.report(),
    );
    signal(pid, libc::SIGKILL);
    let why = wait_failed(
        child,
        "virsh migrate to fail with the destination QEMU killed",
    );
    println!("failed at the destination: virsh said {why:?}");
    rig.wait_line("the destination's copy gone after the failure", |l| {
        domain_on(l, &g.uuid, NODE_B, "undefined") && clock_after(l, seen, &clock)
    });
    assert!(g.on(URI), "the guest stayed on A");
    assert_eq!(
        virsh_ok(URI, &["domstate", &g.name]).trim(),
        "running",
        "the source runs on"
    );
    println!(
        "failed migration, panel lines (ms from virsh start):\n{}",
        timeline(&clock, seen, t0, &g.uuid)
    );
    assert_eq!(rig.duplicates(), Vec::<String>::new(), "{}", rig.report());
    assert_eq!(
        last_state(&rig.panel, &g.uuid, NODE_A)
            .map(|s| s.0)
            .as_deref(),
        Some("running"),
        "{}",
        rig.report()
    );
}

/// Whether panel line `l` came after the first `seen` lines.
fn clock_after(l: &PanelLine, seen: usize, clock: &PanelClock) -> bool {
    clock
        .lines()
        .iter()
        .skip(seen)
        .any(|(_, raw)| *raw == l.raw)
}

#[test]
#[ignore = "needs libvirtd and root (a second libvirtd in a namespace): make test"]
fn the_same_guest_on_both_daemons_is_a_duplicate_and_a_renamed_copy_by_name() {
    let rig = Rig::start("mig-dup", "", [NODE_A, NODE_B], "");
    let g = MigGuest::new(&rig.dir, "mig-dup", Firmware::Quiet, &rig.b.uri);
    // The same XML on B, with a disk and console of its own (QEMU locks
    // its disk image: two QEMUs cannot open one).
    let xml_b = rig.dir.join("mig-dup-b.xml");
    std::fs::write(
        &xml_b,
        std::fs::read_to_string(&g.xml)
            .unwrap()
            .replace("mig-dup.raw", "mig-dup-b.raw")
            .replace("mig-dup.console", "mig-dup-b.console"),
    )
    .unwrap();
    std::fs::File::create(rig.dir.join("mig-dup-b.raw"))
        .and_then(|f| f.set_len(16 << 20))
        .unwrap();
    g.start_on(URI);
    let t0 = Instant::now();
    virsh_ok(&rig.b.uri, &["define", &xml_b.display().to_string()]);
    virsh_ok(&rig.b.uri, &["start", &g.name]);
    let started = Instant::now();
    let want = format!(
        "vmwatch.duplicate by=uuid uuid={} nodes={NODE_A},{NODE_B} active=yes",
        g.uuid
    );
    rig.wait_line("the duplicate by uuid", |l| l.raw == want);
    println!(
        "duplicate by uuid reported {} ms after virsh start returned ({} ms for virsh)",
        started.elapsed().as_millis(),
        (started - t0).as_millis()
    );
    virsh_ok(&rig.b.uri, &["destroy", &g.name]);
    let cleared = want.replace("active=yes", "active=no");
    rig.wait_line("the duplicate cleared", |l| l.raw == cleared);
    virsh_ok(&rig.b.uri, &["undefine", &g.name]);

    // Same name, another UUID, on B (defined only).
    let copy = MigGuest::with_uuid(
        &rig.dir,
        "mig-dup",
        Firmware::Quiet,
        &rig.b.uri,
        &crate::common::guest::random_uuid(),
    );
    virsh_ok(&rig.b.uri, &["define", &copy.xml.display().to_string()]);
    let by_name = format!(
        "vmwatch.duplicate by=name name={} nodes={NODE_A},{NODE_B} active=yes",
        g.name
    );
    rig.wait_line("the duplicate by name", |l| l.raw == by_name);
    // Both guests share a name: drop the copy first, only from B.
    virsh_ok(&rig.b.uri, &["undefine", &copy.name]);
    std::mem::forget(copy);
}

/// The forget lines of `node`: every domain undefined with reason `node
/// forgotten`, then `vmwatch.node ... status=forgotten`.
fn wait_forgotten(rig: &Rig, node: &str, uuid: &str) {
    rig.wait_line(&format!("node {node} forgotten"), |l| {
        l.function == "vmwatch.node" && l.field("node") == node && l.field("status") == "forgotten"
    });
    let lines = rig.panel.lines();
    let undefined = lines
        .iter()
        .position(|l| {
            domain_on(l, uuid, node, "undefined") && l.field("reason") == "node forgotten"
        })
        .unwrap_or_else(|| panic!("no undefined/node forgotten line\n{}", rig.report()));
    let forgotten = lines
        .iter()
        .position(|l| {
            l.function == "vmwatch.node"
                && l.field("node") == node
                && l.get("status") == Some("forgotten")
        })
        .unwrap();
    assert!(undefined < forgotten, "domains first, then the node");
}

#[test]
#[ignore = "needs libvirtd and root (a second libvirtd in a namespace): make test"]
fn a_node_re_added_under_a_new_id_retires_the_old_id() {
    let mut rig = Rig::start(
        "mig-readd",
        "node_timeout=3\n",
        [NODE_A, "mig-b1"],
        "heartbeat_interval=1\n",
    );
    let g = MigGuest::new(&rig.dir, "mig-readd", Firmware::Quiet, &rig.b.uri);
    g.start_on(&rig.b.uri);
    rig.wait_line("the guest on mig-b1", |l| {
        domain_on(l, &g.uuid, "mig-b1", "running")
    });
    rig.nodes[1].stop();
    rig.wait_line("mig-b1 down", |l| {
        l.function == "vmwatch.node" && l.field("node") == "mig-b1" && l.field("status") == "down"
    });
    let b_uri = rig.b.uri.clone();
    rig.start_node("node-b2", "mig-b2", &b_uri, "heartbeat_interval=1\n");
    rig.wait_line("the guest on mig-b2", |l| {
        domain_on(l, &g.uuid, "mig-b2", "running")
    });
    wait_forgotten(&rig, "mig-b1", &g.uuid);
    let active: Vec<String> = rig
        .duplicates()
        .into_iter()
        .filter(|d| d.contains("active=yes"))
        .collect();
    assert_eq!(active, Vec::<String>::new(), "{}", rig.report());
    let state = master_state(&rig.dir);
    assert!(
        state.nodes.iter().all(|n| n.node != "mig-b1"),
        "mig-b1 is gone from the state file"
    );
}

#[test]
#[ignore = "needs libvirtd and root (a second libvirtd in a namespace): make test"]
fn a_node_down_for_node_forget_after_and_one_named_by_forget_node_are_forgotten() {
    let mut rig = Rig::start(
        "mig-forget",
        "node_timeout=2\nnode_forget_after=4\n",
        [NODE_A, NODE_B],
        "heartbeat_interval=1\n",
    );
    let g = MigGuest::new(&rig.dir, "mig-forget", Firmware::Quiet, &rig.b.uri);
    g.start_on(&rig.b.uri);
    rig.wait_line("the guest on B", |l| {
        domain_on(l, &g.uuid, NODE_B, "running")
    });
    rig.nodes[1].stop();
    wait_forgotten(&rig, NODE_B, &g.uuid);

    // --forget-node, with the master running: node A's guest.
    let a = MigGuest::new(&rig.dir, "mig-forget-a", Firmware::Quiet, &rig.b.uri);
    a.start_on(URI);
    rig.wait_line("the guest on A", |l| {
        domain_on(l, &a.uuid, NODE_A, "running")
    });
    rig.nodes[0].stop();
    let forget = |rig: &Rig, node: &str| {
        let out = Command::new(master_bin())
            .arg("-c")
            .arg(&rig.master.config)
            .arg("-p")
            .arg(&rig.master.pidfile)
            .args(["--forget-node", node])
            .output()
            .expect("run vmwatch-master --forget-node");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let said = forget(&rig, NODE_A);
    println!("--forget-node said: {said}");
    assert!(
        said.contains(&format!("node {NODE_A}: forgotten")),
        "{said}"
    );
    assert!(said.contains(&a.uuid), "it names the domains: {said}");
    wait_forgotten(&rig, NODE_A, &a.uuid);

    // With the master stopped, the request waits for its next start: a
    // node mig-c on B, with B's guest.
    let b_uri = rig.b.uri.clone();
    rig.start_node("node-c", "mig-c", &b_uri, "heartbeat_interval=1\n");
    rig.wait_line("the guest on mig-c", |l| {
        domain_on(l, &g.uuid, "mig-c", "running")
    });
    rig.nodes[2].stop();
    rig.master.stop();
    let said = forget(&rig, "mig-c");
    assert!(said.contains("applied when the master starts"), "{said}");
    let seen = rig.panel.lines().len();
    rig.master = spawn_master(&rig.dir, "master");
    wait_for(
        "the queued request applied at start",
        PANEL_DEADLINE,
        || {
            rig.panel
                .lines()
                .iter()
                .skip(seen)
                .any(|l| {
                    l.function == "vmwatch.node"
                        && l.get("node") == Some("mig-c")
                        && l.get("status") == Some("forgotten")
                })
                .then_some(())
        },
        || rig.report(),
    );
}

#[test]
#[ignore = "needs libvirtd and root (a second libvirtd in a namespace): make test"]
fn two_nodes_with_one_node_id_clash_and_erase_nothing() {
    let rig = Rig::start("mig-clash", "", ["mig-x", "mig-x"], "sync_interval=2\n");
    let a = MigGuest::new(&rig.dir, "mig-clash-a", Firmware::Quiet, &rig.b.uri);
    let b = MigGuest::new(&rig.dir, "mig-clash-b", Firmware::Quiet, &rig.b.uri);
    a.start_on(URI);
    b.start_on(&rig.b.uri);
    let state_file = rig.dir.join("master.state");
    let clash = wait_for(
        "the clash in the state file",
        PANEL_DEADLINE,
        || master_state(&rig.dir).clashes.first().cloned(),
        || rig.report(),
    );
    println!("clash: {clash:?}");
    let host_a = read_host(URI);
    assert!(
        clash.1.contains(&host_a) && clash.1.contains(&rig.b.host_uuid),
        "{clash:?}"
    );
    // Several full lists of each node later (sync_interval=2: nearly
    // every message the master accepts now is one), neither guest was
    // erased by the other host's lists.
    let accepted = |dir: &TestDir| counter(dir, "accepted");
    let base = accepted(&rig.dir);
    wait_for(
        "ten more lists from the two nodes",
        Duration::from_secs(60),
        || (accepted(&rig.dir) >= base + 10).then_some(()),
        || rig.report(),
    );
    for g in [&a, &b] {
        let gone: Vec<String> = rig
            .panel
            .domain_lines(&g.uuid)
            .into_iter()
            .filter(|l| l.field("state") == "undefined")
            .map(|l| l.raw)
            .collect();
        assert_eq!(gone, Vec::<String>::new(), "{}", rig.report());
        assert_eq!(saved_state(&rig.dir, &g.uuid).as_deref(), Some("running"));
    }
    assert!(rig
        .master
        .log_text()
        .contains("node id mig-x is used by two hosts at once"));
    let out = Command::new(plugin_bin())
        .args(["-M", "master", "-f"])
        .arg(&state_file)
        .arg("-p")
        .arg(&rig.master.pidfile)
        .arg("-m")
        .arg(rig.dir.join("check"))
        .output()
        .expect("run check_vmwatch");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("check_vmwatch: {text}");
    assert_eq!(out.status.code(), Some(2), "CRITICAL: {text}");
    assert!(
        text.contains("mig-x") && text.contains(&host_a) && text.contains(&rig.b.host_uuid),
        "{text}"
    );
    let status = Command::new(master_bin())
        .arg("-c")
        .arg(&rig.master.config)
        .arg("-p")
        .arg(&rig.master.pidfile)
        .arg("--status")
        .output()
        .expect("vmwatch-master --status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("node id mig-x is used by two hosts at once"),
        "{text}"
    );
}

/// The host UUID of the daemon at `uri`.
fn read_host(uri: &str) -> String {
    let caps = virsh_ok(uri, &["capabilities"]);
    vmwatch::node::host::from_capabilities(&caps).expect("a host uuid")
}
