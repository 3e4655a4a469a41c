//! Writing the state file: what it says ([`render`]) and when
//! ([`StateSaver`]); how it reaches the disk is [`crate::atomic_file`]'s.

use std::fmt::Write as _;
use std::sync::Arc;

use super::format::{FORMAT, TITLE};
use crate::atomic_file::{head, Rewritten};
use crate::clock::now_ms;
use crate::kvline::{escape, escaped as enc};
use crate::master::panel::queue::PanelQueue;
use crate::master::panel::refused::Refused;
use crate::master::panel::update::Update;
use crate::master::panel::PanelCounters;
use crate::master::receiver::clock::{ClockLine, Who};
use crate::master::receiver::rejection::Rejection;
use crate::master::receiver::replay::ReplayGuard;
use crate::master::receiver::{Receiver, ReceiverCounters};
use crate::master::view::table::StateTable;

/// Everything the file records, as text.
pub struct View<'a> {
    pub table: &'a StateTable,
    pub guard: &'a ReplayGuard,
    pub counters: &'a ReceiverCounters,
    pub panel: &'a PanelCounters,
    /// The graphite export's counters, when it is on.
    pub graphite: Option<&'a crate::master::graphite::channel::GraphiteCounters>,
    pub pending: &'a [Update],
    /// Updates the panel refused, set aside.
    pub aside: &'a [Refused],
    /// Clocks found off ([`crate::master::receiver::clock`]).
    pub clocks: &'a [ClockLine],
    pub listen: &'a str,
    pub started_ms: u64,
    pub now_ms: u64,
}

/// Renders the file.
pub fn render(v: &View) -> String {
    let mut out = String::new();
    head(&mut out, TITLE, FORMAT, v.now_ms, v.started_ms);
    write_facts(v, &mut out).expect("a String takes any text");
    out.push_str("end\n");
    out
}

/// The lines between the head and `end`.
fn write_facts(v: &View, out: &mut String) -> std::fmt::Result {
    use std::sync::atomic::Ordering::Relaxed;
    writeln!(out, "listen {}", enc(v.listen))?;
    writeln!(out, "counter accepted {}", v.counters.accepted)?;
    for reason in Rejection::ALL {
        let n = v.counters.rejected.get(&reason).copied().unwrap_or(0);
        writeln!(out, "counter rejected.{reason} {n}")?;
    }
    // Connections turned away before any message (docs/protocol.md).
    let (h, gated) = (
        &crate::master::admission::zap::HANDSHAKES,
        &crate::master::admission::gate::CLOSED,
    );
    writeln!(
        out,
        "counter rejected.handshake {}",
        h.refused.load(Relaxed)
    )?;
    writeln!(out, "counter rejected.gate {}", gated.load(Relaxed))?;
    writeln!(
        out,
        "counter handshake.accepted {}",
        h.accepted.load(Relaxed)
    )?;
    let p = v.panel;
    for (name, n) in [
        ("calls_ok", &p.calls_ok),
        ("calls_failed", &p.calls_failed),
        ("updates_delivered", &p.updates_delivered),
        ("refused", &p.refused),
    ] {
        writeln!(out, "counter panel.{name} {}", n.load(Relaxed))?;
    }
    writeln!(out, "counter panel.pending {}", v.pending.len())?;
    if let Some(g) = v.graphite {
        for (name, n) in g.snapshot() {
            writeln!(out, "counter graphite.{name} {n}")?;
        }
    }
    writeln!(out, "counter panel.aside {}", v.aside.len())?;
    let r = v.table.reboot_stats();
    writeln!(out, "counter reboots.repeats {}", r.repeats)?;
    writeln!(out, "counter reboots.missed {}", r.missed)?;
    writeln!(out, "counter reboots.baselines {}", r.baselines)?;
    for (name, n) in v.table.nodes() {
        let up = if n.up { "up" } else { "down" };
        writeln!(
            out,
            "node {} {up} {} {}",
            enc(name),
            n.last_seen_ms,
            n.domains.len()
        )?;
    }
    // The bulk of the file (one line a domain, 100 000 on a big cluster):
    // written in place, without a string per value.
    let domains: usize = v.table.nodes().values().map(|n| n.domains.len()).sum();
    out.reserve(domains * 128);
    for (node, n) in v.table.nodes() {
        let node = enc(node);
        for (uuid, d) in &n.domains {
            write!(out, "domain {node} {uuid} {} {} ", d.state, d.since_ms)?;
            escape(&d.name, out);
            out.push(' ');
            escape(&d.reason, out);
            let r = &d.reboots;
            writeln!(out, " {:016x} {}", r.instance, r.count)?;
            if let Some(id) = d.rebootid {
                writeln!(out, "rebootid {node} {uuid} {id}")?;
            }
        }
    }
    for (node, h) in v.table.identity().hosts() {
        writeln!(
            out,
            "host {} {} {} {}",
            enc(node),
            h.host,
            h.last_ms,
            enc(&h.peer)
        )?;
    }
    for c in v.table.clashes(v.now_ms) {
        let hosts: Vec<&str> = c.hosts.iter().map(|h| h.host.as_str()).collect();
        let peers: Vec<&str> = c.hosts.iter().map(|h| h.peer.as_str()).collect();
        writeln!(
            out,
            "clash {} {} {}",
            enc(&c.node),
            hosts.join(","),
            enc(&peers.join(","))
        )?;
    }
    for d in v.table.duplicates() {
        let (key, nodes) = (enc(&d.key), enc(&d.nodes.join(",")));
        writeln!(out, "duplicate {} {key} {nodes}", d.by)?;
    }
    for i in v.table.idle() {
        let (node, name) = (enc(&i.node), enc(&i.name));
        writeln!(
            out,
            "idle {node} {} {} {} {name}",
            i.uuid, i.tx_pkts, i.wr_reqs
        )?;
    }
    for c in v.clocks {
        match &c.who {
            Who::Master => write!(out, "clock master")?,
            Who::Node(n) => write!(out, "clock node {}", enc(n))?,
        }
        writeln!(out, " {} {}", c.offset_ms, c.since_ms)?;
    }
    for s in v.guard.export() {
        let node = enc(&s.node);
        writeln!(out, "seen {node} {:016x} {} {}", s.instance, s.seq, s.ts_ms)?;
    }
    for u in v.pending {
        writeln!(out, "pending {}", u.panel_line())?;
    }
    for r in v.aside {
        let why = enc(&r.why);
        writeln!(out, "aside {} {why} {}", r.tries, r.update.panel_line())?;
    }
    Ok(())
}

/// Writes the state file from the receiver's view: periodically, at once
/// after a restore, and twice on stop (before and after the last panel call).
pub struct StateSaver {
    queue: Arc<PanelQueue>,
    panel: Arc<PanelCounters>,
    file: Rewritten,
    listen: String,
    started_ms: u64,
}

impl StateSaver {
    pub fn new(
        queue: Arc<PanelQueue>,
        panel: Arc<PanelCounters>,
        path: &str,
        listen: &str,
        started_ms: u64,
    ) -> StateSaver {
        let check = "check that its directory exists and is writable";
        StateSaver {
            queue,
            panel,
            file: Rewritten::new("state file", path, check),
            listen: listen.to_string(),
            started_ms,
        }
    }

    pub fn save(&mut self, r: &Receiver) {
        // What the receiver holds for the panel, as it will be queued.
        let pending = self.queue.pending_with(r.held());
        let aside = self.queue.aside();
        let text = render(&View {
            table: &r.table,
            guard: r.guard(),
            counters: &r.counters,
            panel: &self.panel,
            graphite: r.graphite.as_ref().map(|g| &*g.counters),
            pending: &pending,
            aside: &aside,
            clocks: &r.clocks_off,
            listen: &self.listen,
            started_ms: self.started_ms,
            now_ms: now_ms(),
        });
        self.file.write(&text);
    }
}
