//! Writing the state file: what it says ([`render`]), how it reaches the
//! disk ([`write_atomic`]: temporary file, fsync, rename) and when
//! ([`StateSaver`]).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::master::panel::PanelCounters;
use crate::master::panel_queue::PanelQueue;
use crate::master::receiver::{Counters, Receiver};
use crate::master::replay::ReplayGuard;
use crate::master::state::StateTable;
use crate::master::update::Update;
use crate::protocol::escape;
use crate::ratelimit::RateLimit;
use crate::service::now_ms;

pub(super) fn enc(v: &str) -> String {
    let mut s = String::new();
    escape(v, &mut s);
    s
}

/// Everything the file records, as text.
pub struct View<'a> {
    pub table: &'a StateTable,
    pub guard: &'a ReplayGuard,
    pub counters: &'a Counters,
    pub panel: &'a PanelCounters,
    pub pending: &'a [Update],
    pub listen: &'a str,
    pub started_ms: u64,
    pub now_ms: u64,
}

/// Renders the file.
pub fn render(v: &View) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# vmwatch-master state (format: docs/state-file.md); pid {}",
        std::process::id()
    );
    let _ = writeln!(out, "version {FORMAT}");
    let _ = writeln!(out, "written {}", v.now_ms);
    let _ = writeln!(out, "started {}", v.started_ms);
    let _ = writeln!(out, "listen {}", enc(v.listen));
    let _ = writeln!(out, "counter accepted {}", v.counters.accepted);
    for reason in crate::master::rejection::Rejection::ALL {
        let n = v.counters.rejected.get(&reason).copied().unwrap_or(0);
        let _ = writeln!(out, "counter rejected.{reason} {n}");
    }
    let _ = writeln!(
        out,
        "counter panel.calls_ok {}",
        v.panel.calls_ok.load(Relaxed)
    );
    let _ = writeln!(
        out,
        "counter panel.calls_failed {}",
        v.panel.calls_failed.load(Relaxed)
    );
    let _ = writeln!(
        out,
        "counter panel.updates_delivered {}",
        v.panel.updates_delivered.load(Relaxed)
    );
    let _ = writeln!(out, "counter panel.pending {}", v.pending.len());
    for (name, n) in &v.table.nodes {
        let _ = writeln!(
            out,
            "node {} {} {} {}",
            enc(name),
            if n.up { "up" } else { "down" },
            n.last_seen_ms,
            n.domains.len()
        );
    }
    // The bulk of the file (one line a domain, 100 000 on a big cluster):
    // written in place, without a string per value.
    let domains: usize = v.table.nodes.values().map(|n| n.domains.len()).sum();
    out.reserve(domains * 128);
    for (node, n) in &v.table.nodes {
        let node = enc(node);
        for (uuid, d) in &n.domains {
            let _ = write!(out, "domain {node} {uuid} {} {} ", d.state, d.since_ms);
            escape(&d.name, &mut out);
            out.push(' ');
            escape(&d.reason, &mut out);
            let _ = writeln!(out, " {:016x} {}", d.reboots.instance, d.reboots.count);
        }
    }
    for d in v.table.duplicates() {
        let _ = writeln!(
            out,
            "duplicate {} {} {}",
            d.by,
            enc(&d.key),
            enc(&d.nodes.join(","))
        );
    }
    for i in v.table.idle() {
        let _ = writeln!(
            out,
            "idle {} {} {} {} {}",
            enc(&i.node),
            i.uuid,
            i.tx_pkts,
            i.wr_reqs,
            enc(&i.name)
        );
    }
    for s in v.guard.export() {
        let _ = writeln!(
            out,
            "seen {} {:016x} {} {}",
            enc(&s.node),
            s.instance,
            s.seq,
            s.ts_ms
        );
    }
    for u in v.pending {
        let _ = writeln!(out, "pending {}", u.panel_line());
    }
    out.push_str("end\n");
    out
}

pub use crate::atomic_file::write_atomic;

/// Writes the state file from the receiver's view: periodically, at once
/// after a restore, and twice on stop (before and after the last panel call).
pub struct StateSaver {
    queue: Arc<PanelQueue>,
    panel: Arc<PanelCounters>,
    path: String,
    listen: String,
    started_ms: u64,
    limit: RateLimit,
}

impl StateSaver {
    pub fn new(
        queue: Arc<PanelQueue>,
        panel: Arc<PanelCounters>,
        path: &str,
        listen: &str,
        started_ms: u64,
    ) -> StateSaver {
        StateSaver {
            queue,
            panel,
            path: path.to_string(),
            listen: listen.to_string(),
            started_ms,
            limit: RateLimit::new(1, Duration::from_secs(600)),
        }
    }

    pub fn save(&mut self, r: &Receiver) {
        let pending = self.queue.pending();
        let text = render(&View {
            table: &r.table,
            guard: r.guard(),
            counters: &r.counters,
            panel: &self.panel,
            pending: &pending,
            listen: &self.listen,
            started_ms: self.started_ms,
            now_ms: now_ms(),
        });
        if let Err(e) = write_atomic(Path::new(&self.path), &text) {
            crate::log_limited!(
                self.limit,
                log::Level::Error,
                "cannot write state file {}: {e} (check that its directory exists and is writable)",
                self.path
            );
        }
    }
}
