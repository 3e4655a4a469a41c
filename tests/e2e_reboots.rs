//! Issue 16 on real guests: every reset reaches the panel, none twice by
//! its identity, through node SIGKILLs and master kills.
//!
//! Two real QEMU guests on the machine's libvirtd are reset (`virsh reset`)
//! one after the other, with the real node and master and the recording
//! panel command. After each reset the test waits until the node has seen
//! it (its `reboot_file` names the reboot; the node writes it before it
//! queues the event) and at once SIGKILLs the node, the master, or both, then
//! starts them again. Each reset must reach the panel with the id the node
//! gave it; a reboot line the panel gets twice must carry the same id (a
//! repeat a panel drops). The figures (resets caused, reboots delivered,
//! repeats) are printed for the report.
//!
//! Uses the machine's libvirtd: `#[ignore]`d for a plain `cargo test`, run
//! by `make test` (`--include-ignored`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::common::guest::{Guest, URI};
use crate::common::*;

/// The node's reboot ids, as its file says (the node's own parser).
fn node_ids(dir: &TestDir) -> std::collections::HashMap<String, u64> {
    let path = dir.join("node.reboots");
    let bytes = std::fs::read(&path).unwrap_or_default();
    vmwatch::node::reboots::parse(&path.display().to_string(), &bytes).ids
}

/// Every (uuid, rebootid) line the panel got, in order.
fn panel_reboots(panel: &Panel) -> Vec<(String, String)> {
    panel
        .lines()
        .iter()
        .filter(|l| l.function == "vmwatch.reboot")
        .map(|l| {
            (
                l.field("uuid").to_string(),
                l.get("rebootid").unwrap_or("-").to_string(),
            )
        })
        .collect()
}

#[test]
#[ignore = "needs libvirtd: make test"]
fn every_reset_reaches_the_panel_once_by_id_through_node_and_master_kills() {
    let dir = TestDir::new("reboots-e2e");
    let panel = Panel::new(&dir);
    let (mut master, port) = start_master(&dir, &panel, "state_interval=1\n");
    let text = node_config_text(&dir, "node", port, SECRET, "r1", URI, "stats=no\n");
    let mut node = start_node(&dir, "node", &text);
    let guests: Vec<Guest> = ["reboot-a", "reboot-b"]
        .iter()
        .map(|s| Guest::new(&dir, s))
        .collect();
    for g in &guests {
        g.define();
        g.start();
    }
    for g in &guests {
        g.wait_ready(1, Duration::from_secs(60));
        wait_for(
            "the guest running at the panel",
            PANEL_DEADLINE,
            || {
                panel
                    .domain_lines(&g.uuid)
                    .iter()
                    .any(|l| l.field("state") == "running")
                    .then_some(())
            },
            || report(&[&master, &node], Some(&panel)),
        );
    }
    const ROUNDS: usize = 9;
    let mut expected: Vec<(String, String)> = Vec::new();
    let (mut node_kills, mut master_kills, mut repeats_dropped_by_masters) = (0, 0, 0u64);
    for round in 0..ROUNDS {
        let g = &guests[round % guests.len()];
        let before = node_ids(&dir).get(&g.uuid).copied().unwrap_or(0);
        g.reset();
        wait_for(
            "the node to have seen the reset (its reboot file)",
            DAEMON_DEADLINE,
            || (node_ids(&dir).get(&g.uuid).copied().unwrap_or(0) > before).then_some(()),
            || report(&[&master, &node], Some(&panel)),
        );
        // At once: the reboot may still be in the node's queue.
        let kill_node = round % 3 != 2;
        let kill_master = round % 3 != 0;
        if kill_node {
            node.signal(libc::SIGKILL);
            node.wait_exit(DAEMON_DEADLINE);
            node_kills += 1;
        }
        if kill_master {
            repeats_dropped_by_masters += counter(&dir, "reboots.repeats");
            master.signal(libc::SIGKILL);
            master.wait_exit(DAEMON_DEADLINE);
            master_kills += 1;
            master = start_master_conf(&dir, &format!("master-{round}"));
        }
        if kill_node {
            node = Daemon::spawn(
                "vmwatch-node",
                &node_bin(),
                &dir,
                &format!("node-{round}"),
                &dir.join("node.conf"),
                &dir.join("node.log"),
                &[],
            );
            node.wait_log(" watching ", DAEMON_DEADLINE);
        }
        // The id the node gave this reset (its last, once it was killed or
        // the reset's events have come).
        let id = node_ids(&dir)[&g.uuid].to_string();
        expected.push((g.uuid.clone(), id.clone()));
        wait_for(
            &format!("reset {round} (reboot id {id}) at the panel"),
            PANEL_DEADLINE,
            || {
                panel_reboots(&panel)
                    .contains(&(g.uuid.clone(), id.clone()))
                    .then_some(())
            },
            || {
                format!(
                    "node ids: {:?}\n{}",
                    node_ids(&dir),
                    report(&[&master, &node], Some(&panel))
                )
            },
        );
    }
    repeats_dropped_by_masters += counter(&dir, "reboots.repeats");
    let got = panel_reboots(&panel);
    assert!(
        got.iter().all(|(_, id)| id != "-"),
        "a reboot line without its id: {got:?}"
    );
    let mut lines_per_id: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in &got {
        *lines_per_id.entry(r.clone()).or_default() += 1;
    }
    // Every id at the panel is one the node gave, for a reset the test made:
    // the ids of a guest are at most its resets' (libvirt may report one
    // reset as two REBOOT events; both then carry ids of that reset, one
    // apart).
    let final_ids: BTreeSet<&(String, String)> = expected.iter().collect();
    let extra: Vec<&(String, String)> = lines_per_id
        .keys()
        .filter(|k| !final_ids.contains(k))
        .collect();
    for (u, id) in &extra {
        let id: u64 = id.parse().unwrap();
        assert!(
            expected
                .iter()
                .any(|(eu, eid)| eu == u && eid.parse::<u64>().unwrap().abs_diff(id) == 1),
            "reboot id {id} of {u} is not one of a reset the test made: {expected:?}, panel: {got:?}"
        );
    }
    let repeats: usize = lines_per_id.values().map(|n| n - 1).sum();
    let log = read_text(&dir.join("master.log"));
    let repaired = log.matches("delivering the missed reboot").count()
        + log
            .matches("never reached the master: delivering it")
            .count();
    eprintln!(
        "figures: {ROUNDS} resets caused ({node_kills} node SIGKILLs, {master_kills} master SIGKILLs); \
         {} reboots delivered by id ({} of them second REBOOT events of one reset), \
         {} reboot lines in all, {repeats} repeats under an id the panel had (a panel drops them); \
         {repeats_dropped_by_masters} repeat events dropped by the masters; \
         {repaired} reboots delivered from a full list or a later event (their own event lost with a killed node or master)",
        lines_per_id.len(),
        extra.len(),
        got.len(),
    );
    node.stop();
    master.stop();
}
