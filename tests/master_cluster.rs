//! What the master keeps track of across a cluster, driven by simulated
//! nodes: hand-signed messages from the test's own ZeroMQ clients to the
//! real master binary, with the recording panel command.
//!
//! Covers issue 3's master side: a 500-update burst delivered in batches with
//! an exact final state, node liveness (down after node_timeout, up again),
//! duplicates by UUID and by name, idle warnings from stats, the state file
//! surviving a kill -9 (nothing re-announced, replays still refused,
//! undelivered updates delivered after the restart) and `--status`. The same
//! behaviour with real nodes on a real libvirtd is in e2e_cluster.rs.

use crate::common::*;
use vmwatch::protocol::{Body, DomainId, StatSample};

#[test]
fn burst_of_500_updates_reaches_the_panel_in_batches_with_the_exact_final_state() {
    let dir = TestDir::new("burst");
    let panel = Panel::new(&dir);
    let (master, port) = start_master(&dir, &panel, "panel_batch=500\n");
    let mut node = Client::connect(port, SECRET, "n1");
    let uuids: Vec<String> = (0..500).map(|_| test_uuid()).collect();
    // The node boots with 500 guests: one snapshot...
    node.send(snapshot(
        1,
        uuids
            .iter()
            .enumerate()
            .map(|(i, u)| domain_state(u, &format!("vm{i}"), "running", "booted"))
            .collect(),
    ));
    // ...then every guest changes twice in a burst, one event message each.
    for (i, u) in uuids.iter().enumerate() {
        node.send(Body::Events(vec![event(
            u,
            &format!("vm{i}"),
            "suspended",
            "paused",
        )]));
    }
    for (i, u) in uuids.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        node.send(Body::Events(vec![event(
            u,
            &format!("vm{i}"),
            "stopped",
            "destroyed",
        )]));
    }
    let ctx = || report(&[&master], Some(&panel));
    let expected = |i: usize| {
        if i.is_multiple_of(2) {
            "shutoff"
        } else {
            "paused"
        }
    };
    wait_for(
        "every domain's final state at the panel",
        PANEL_DEADLINE,
        || {
            let f = final_states(&panel);
            uuids
                .iter()
                .enumerate()
                .all(|(i, u)| f.get(u).map(String::as_str) == Some(expected(i)))
                .then_some(())
        },
        ctx,
    );
    let calls = panel.calls();
    let lines: usize = calls
        .iter()
        .map(|(_, n, _)| n.parse::<usize>().unwrap())
        .sum();
    // 500 + 500 + 250 state changes (+ node up) went in; without batching
    // and coalescing that is 1251 process spawns.
    assert!(
        calls.len() <= 60,
        "{} panel invocations for a 1250-change burst: not batched\n{}",
        calls.len(),
        panel.report()
    );
    assert!(lines <= 1251, "more lines than changes: {lines}");
    for (outcome, n, env) in &calls {
        assert_eq!(outcome, "ok");
        assert_eq!(n, env, "VMWATCH_UPDATES must equal the lines in the batch");
    }
    // In order per domain: never an older state after a newer one.
    for (i, u) in uuids.iter().enumerate() {
        let seq: Vec<String> = panel
            .domain_lines(u)
            .iter()
            .map(|l| l.field("state").to_string())
            .collect();
        let order = ["running", "paused", "shutoff"];
        let ranks: Vec<usize> = seq
            .iter()
            .map(|s| order.iter().position(|o| o == s).expect("known state"))
            .collect();
        assert!(ranks.windows(2).all(|w| w[0] < w[1]), "domain {i}: {seq:?}");
    }
    eprintln!(
        "burst: {} panel invocations carried {lines} lines for 1250 changes",
        calls.len()
    );
}

#[test]
fn a_silent_node_is_reported_down_then_up_again() {
    let dir = TestDir::new("liveness");
    let panel = Panel::new(&dir);
    let (master, port) = start_master(&dir, &panel, "node_timeout=2\n");
    let mut node = Client::connect(port, SECRET, "quiet-node");
    node.send(Body::Heartbeat);
    let ctx = || report(&[&master], Some(&panel));
    let node_lines = || -> Vec<String> {
        panel
            .lines()
            .iter()
            .filter(|l| l.function == "vmwatch.node" && l.get("node") == Some("quiet-node"))
            .map(|l| l.field("status").to_string())
            .collect()
    };
    wait_for(
        "node up",
        PANEL_DEADLINE,
        || (node_lines() == ["up"]).then_some(()),
        ctx,
    );
    wait_for(
        "node down after node_timeout",
        PANEL_DEADLINE,
        || (node_lines() == ["up", "down"]).then_some(()),
        ctx,
    );
    assert_eq!(master.log_lines("node quiet-node is down").len(), 1);
    node.send(Body::Heartbeat);
    wait_for(
        "node up again",
        PANEL_DEADLINE,
        || (node_lines() == ["up", "down", "up"]).then_some(()),
        ctx,
    );
}

fn duplicate_lines(panel: &Panel) -> Vec<(String, String, String, String)> {
    panel
        .lines()
        .iter()
        .filter(|l| l.function == "vmwatch.duplicate")
        .map(|l| {
            let by = l.field("by").to_string();
            (
                by.clone(),
                l.field(&by).to_string(),
                l.field("nodes").to_string(),
                l.field("active").to_string(),
            )
        })
        .collect()
}

#[test]
fn duplicates_by_uuid_and_by_name_are_reported_and_cleared() {
    let dir = TestDir::new("dups");
    let panel = Panel::new(&dir);
    let (master, port) = start_master(&dir, &panel, "");
    let (mut a, mut b) = (
        Client::connect(port, SECRET, "node-a"),
        Client::connect(port, SECRET, "node-b"),
    );
    let ctx = || report(&[&master], Some(&panel));
    let same = test_uuid();
    a.send(Body::Events(vec![event(&same, "db", "started", "booted")]));
    // Defined but shut off elsewhere is not a duplicate...
    b.send(Body::Events(vec![event(&same, "db", "defined", "added")]));
    // ...running on both is.
    b.send(Body::Events(vec![event(&same, "db", "started", "booted")]));
    let want_on = (
        "uuid".to_string(),
        same.clone(),
        "node-a,node-b".to_string(),
        "yes".to_string(),
    );
    wait_for(
        "duplicate uuid reported",
        PANEL_DEADLINE,
        || duplicate_lines(&panel).contains(&want_on).then_some(()),
        ctx,
    );
    a.send(Body::Events(vec![event(
        &same,
        "db",
        "stopped",
        "destroyed",
    )]));
    let want_off = (
        "uuid".to_string(),
        same.clone(),
        "node-a,node-b".to_string(),
        "no".to_string(),
    );
    wait_for(
        "duplicate uuid cleared",
        PANEL_DEADLINE,
        || duplicate_lines(&panel).contains(&want_off).then_some(()),
        ctx,
    );
    // A copy made outside the panel: same name, another UUID, another node.
    let (u1, u2) = (test_uuid(), test_uuid());
    a.send(Body::Events(vec![event(
        &u1, "web-copy", "started", "booted",
    )]));
    b.send(Body::Events(vec![event(
        &u2, "web-copy", "defined", "added",
    )]));
    let want_name = (
        "name".to_string(),
        "web-copy".to_string(),
        "node-a,node-b".to_string(),
        "yes".to_string(),
    );
    wait_for(
        "duplicate name reported",
        PANEL_DEADLINE,
        || duplicate_lines(&panel).contains(&want_name).then_some(()),
        ctx,
    );
    let dups = duplicate_lines(&panel);
    assert_eq!(dups.len(), 3, "each report exactly once: {dups:?}");
    assert!(master.log_lines("duplicate uuid").len() >= 2);
}

#[test]
fn idle_warnings_follow_stats_only_for_running_domains_over_whole_intervals() {
    let dir = TestDir::new("idle");
    let panel = Panel::new(&dir);
    let (master, port) = start_master(&dir, &panel, "check_activity=yes\nstate_interval=1\n");
    let mut node = Client::connect(port, SECRET, "n1");
    let (busy, idle, off) = (test_uuid(), test_uuid(), test_uuid());
    node.send(Body::Events(vec![
        event(&busy, "busy", "started", "booted"),
        event(&idle, "idle", "started", "booted"),
        event(&off, "off", "defined", "added"),
    ]));
    let sample = |u: &str, name: &str, whole: bool, tx: u64, wr: u64| StatSample {
        domain: DomainId {
            uuid: u.to_string(),
            name: name.to_string(),
        },
        whole,
        tx_pkts: tx,
        wr_reqs: wr,
    };
    let stats = |samples| Body::Stats {
        interval_ms: 600_000,
        samples,
    };
    node.send(stats(vec![
        sample(&busy, "busy", true, 120, 40),
        sample(&idle, "idle", true, 0, 7),
        sample(&off, "off", true, 0, 0),
        // Started during the interval: no verdict.
        sample(&test_uuid(), "new", false, 0, 0),
    ]));
    let ctx = || report(&[&master], Some(&panel));
    let idle_lines = || -> Vec<(String, String)> {
        panel
            .lines()
            .iter()
            .filter(|l| l.function == "vmwatch.idle")
            .map(|l| (l.field("name").to_string(), l.field("idle").to_string()))
            .collect()
    };
    wait_for(
        "idle warning for the domain that sent nothing",
        PANEL_DEADLINE,
        || (!idle_lines().is_empty()).then_some(()),
        ctx,
    );
    // Activity comes back: the warning is cleared, once.
    node.send(stats(vec![
        sample(&busy, "busy", true, 5, 5),
        sample(&idle, "idle", true, 3, 1),
    ]));
    wait_for(
        "idle warning cleared",
        PANEL_DEADLINE,
        || (idle_lines().len() >= 2).then_some(()),
        ctx,
    );
    // Everything sent so far has been applied once the state file counts
    // three accepted messages; anything it caused is queued before a later
    // change, so waiting for that change flushes any wrong extra line.
    let state = dir.join("master.state");
    wait_for(
        "three messages accepted",
        PANEL_DEADLINE,
        || {
            read_text(&state)
                .contains("counter accepted 3\n")
                .then_some(())
        },
        || read_text(&state),
    );
    node.send(Body::Events(vec![event(
        &busy,
        "busy",
        "suspended",
        "paused",
    )]));
    wait_for(
        "a later change at the panel",
        PANEL_DEADLINE,
        || (final_states(&panel).get(&busy).map(String::as_str) == Some("paused")).then_some(()),
        ctx,
    );
    assert_eq!(
        idle_lines(),
        vec![
            ("idle".to_string(), "yes".to_string()),
            ("idle".to_string(), "no".to_string())
        ],
        "only the running domain with a zero count is warned about, once, then cleared\n{}",
        panel.report()
    );
}

#[test]
fn a_master_killed_and_restarted_keeps_its_view_and_its_promises() {
    let dir = TestDir::new("restart");
    let panel = Panel::new(&dir);
    let (mut master, port) = start_master(&dir, &panel, "state_interval=1\n");
    let mut node = Client::connect(port, SECRET, "n1");
    let (u1, u2) = (test_uuid(), test_uuid());
    let first = node.send(Body::Events(vec![
        event(&u1, "one", "started", "booted"),
        event(&u2, "two", "started", "booted"),
    ]));
    let ctx = || report(&[], Some(&panel));
    wait_for(
        "both domains at the panel",
        PANEL_DEADLINE,
        || (final_states(&panel).len() == 2).then_some(()),
        ctx,
    );
    // The panel goes down; a change arrives and cannot be delivered.
    panel.fail(true);
    node.send(Body::Events(vec![event(&u1, "one", "suspended", "paused")]));
    let state = dir.join("master.state");
    // The file is written before the panel hears of news and again once it
    // took them: wait for the one that lists only the undelivered update.
    wait_for(
        "the undelivered update, alone, in the state file",
        PANEL_DEADLINE,
        || {
            let text = read_text(&state);
            let pending: Vec<&str> = text.lines().filter(|l| l.starts_with("pending ")).collect();
            (pending.len() == 1 && pending[0].contains("state=paused")).then_some(())
        },
        || read_text(&state),
    );
    let status = std::process::Command::new(master_bin())
        .arg("-c")
        .arg(dir.join("master.conf"))
        .arg("--status")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "--status failed: {shown}");
    assert!(
        shown.contains("Nodes (1):") && shown.contains("Domains (2):"),
        "{shown}"
    );
    let waiting = shown
        .lines()
        .find(|l| l.trim_start().starts_with("panel updates waiting"))
        .and_then(|l| l.split_whitespace().last());
    assert_eq!(waiting, Some("1"), "{shown}");

    master.signal(libc::SIGKILL);
    master.wait_exit(DAEMON_DEADLINE);
    panel.fail(false);
    let before = panel.lines().len();
    let mut master = spawn_master(&dir, "master2");
    master.wait_log(
        "restored 1 nodes, 2 domains and 1 undelivered panel updates",
        DAEMON_DEADLINE,
    );
    let ctx = || report(&[&master], Some(&panel));
    wait_for(
        "the update that was pending is delivered after the restart",
        PANEL_DEADLINE,
        || (final_states(&panel).get(&u1).map(String::as_str) == Some("paused")).then_some(()),
        ctx,
    );
    // The same node reconnects and repeats its full list: nothing is news.
    let mut node2 = Client::connect(port, SECRET, "n1");
    node2.send(snapshot(
        1,
        vec![
            domain_state(&u1, "one", "paused", "user"),
            domain_state(&u2, "two", "running", "booted"),
        ],
    ));
    // A replay of a message accepted before the kill is still refused.
    node2.send_frames(&first);
    master.wait_log("replayed message", PANEL_DEADLINE);
    let ctx = || report(&[&master], Some(&panel));
    // A real change after all that: once it is at the panel, anything the
    // snapshot or the replay wrongly caused would be there too.
    node2.send(Body::Events(vec![event(
        &u2,
        "two",
        "stopped",
        "destroyed",
    )]));
    wait_for(
        "the later change at the panel",
        PANEL_DEADLINE,
        || (final_states(&panel).get(&u2).map(String::as_str) == Some("shutoff")).then_some(()),
        ctx,
    );
    let after: Vec<(String, String)> = panel.lines()[before..]
        .iter()
        .map(|l| {
            (
                l.function.clone(),
                l.get("state").unwrap_or("-").to_string(),
            )
        })
        .collect();
    assert_eq!(
        after,
        vec![
            ("vmwatch.domain".to_string(), "paused".to_string()),
            ("vmwatch.domain".to_string(), "shutoff".to_string())
        ],
        "after the restart the panel hears the pending update and the real change, nothing else\n{}",
        panel.report()
    );
}
