//! Restoring the master's view from its state file at start: what was read
//! goes into the state table and the replay guard, undelivered updates back
//! to the panel queue, and a damaged file is kept aside for a person.

use std::path::Path;

use super::read::{parse, StateFile};
use crate::clock::{mono_ms, now_ms};
use crate::master::panel::refused::Refused;
use crate::master::panel::update::Update;
use crate::master::receiver::replay::ReplayGuard;
use crate::master::view::table::StateTable;

/// Where a damaged state file is kept for a person: beside it, named by the
/// time it was set aside.
fn aside_path(path: &str) -> String {
    format!("{path}.damaged-{}", now_ms() / 1000)
}

/// Moves a state file that could not be used whole out of the way, so the
/// master can write a good one and a person can still read the bad one.
fn set_aside(path: &str, why: &str) {
    let to = aside_path(path);
    match std::fs::rename(path, &to) {
        Ok(()) => log::warn!("state file {path} {why}; kept as {to} for inspection"),
        Err(e) => log::error!(
            "state file {path} {why}, and it cannot be moved to {to}: {e}; move it away by hand"
        ),
    }
}

/// Reads the file left by the previous run, if any, into `table` and
/// `guard`, and returns the updates the panel had not taken and those it
/// refused (set aside). Whatever the
/// file holds, the master starts: every unreadable line is logged as
/// `FILE:LINE: what`, a damaged file is kept aside, and what could be read
/// is used.
pub fn restore_file(
    path: &str,
    table: &mut StateTable,
    guard: &mut ReplayGuard,
    now_ms: u64,
) -> (Vec<Update>, Vec<Refused>) {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log::info!("no state file at {path}: starting with an empty view");
            return (Vec::new(), Vec::new());
        }
        Err(e) => {
            log::error!("cannot read state file {path}: {e}; starting with an empty view");
            if Path::new(path).exists() {
                set_aside(path, "cannot be read");
            }
            return (Vec::new(), Vec::new());
        }
    };
    let f = parse(path, &bytes);
    const SHOWN: usize = 20;
    for p in f.problems.iter().take(SHOWN) {
        log::warn!("{p}");
    }
    if f.problems.len() > SHOWN {
        log::warn!(
            "{path}: {} more unreadable lines not shown",
            f.problems.len() - SHOWN
        );
    }
    for (n, kind) in &f.ignored {
        log::debug!("{path}:{n}: line type `{kind}` unknown to this version, ignored");
    }
    if let Some(note) = f.ignored_note() {
        log::info!("{path}: {note}");
    }
    let pending = restore(&f, table, guard, now_ms);
    if let Some(damage) = f.damage() {
        set_aside(path, &format!("is damaged ({damage})"));
    }
    let domains: usize = table.nodes().values().map(|n| n.domains.len()).sum();
    log::info!(
        "restored {} nodes, {domains} domains and {} undelivered panel updates from {path}",
        table.nodes().len(),
        pending.len(),
    );
    if !f.aside.is_empty() {
        log::info!(
            "{} updates the panel refused are set aside again from {path}: each is tried once now, then on its schedule",
            f.aside.len()
        );
    }
    (pending, f.aside.clone())
}

/// Puts a parsed file into `table` and `guard` and returns the updates the
/// panel has not taken yet. Nodes that were up get `now_ms` as their last
/// sign of life, so a master that was down for a while does not declare
/// every node dead before they can speak. Nothing is reported: the panel
/// was told before.
pub fn restore(
    f: &StateFile,
    table: &mut StateTable,
    guard: &mut ReplayGuard,
    now_ms: u64,
) -> Vec<Update> {
    // Liveness runs on the monotonic clock: every restored node counts as
    // heard now (one that was up gets a fresh node_timeout to speak).
    let mono = mono_ms();
    for n in &f.nodes {
        let seen = if n.up { now_ms } else { n.last_seen_ms };
        table.restore_node(&n.node, seen, n.up);
        table.heard(&n.node, mono);
    }
    for d in &f.domains {
        table.restore_domain(&d.node, &d.uuid, d.record.clone());
    }
    for i in &f.idle {
        table.restore_idle(&i.node, &i.uuid, &i.name, i.tx_pkts, i.wr_reqs);
    }
    for s in &f.seen {
        guard.import(s, mono);
    }
    // Each node's latest instance: the same node process going on after
    // the master's restart is not a node that restarted (view/forget.rs).
    let mut latest: std::collections::BTreeMap<
        &str,
        &crate::master::receiver::replay::SeenInstance,
    > = std::collections::BTreeMap::new();
    for s in &f.seen {
        let e = latest.entry(s.node.as_str()).or_insert(s);
        if s.ts_ms > e.ts_ms {
            *e = s;
        }
    }
    for (node, s) in latest {
        table.restore_instance(node, s.instance);
    }
    for (node, h) in &f.hosts {
        table.restore_host(node, h.clone());
    }
    table.settle_restored();
    f.pending.clone()
}
