//! `vmwatch-master --status`: a state file for a person.

use std::fmt::Write as _;

use super::read::StateFile;

/// `vmwatch-master --status`: the state file for a person.
pub fn report(f: &StateFile, now_ms: u64) -> String {
    let mut out = String::new();
    let ago = |ms: u64| -> String {
        let s = now_ms.saturating_sub(ms) / 1000;
        match s {
            0..=119 => format!("{s} s ago"),
            120..=7199 => format!("{} min ago", s / 60),
            _ => format!("{} h ago", s / 3600),
        }
    };
    let when = |ms: Option<u64>| ms.map_or("at an unknown time".to_string(), ago);
    let _ = writeln!(
        out,
        "vmwatch-master on {}: state written {}, master running since {}",
        f.listen.as_deref().unwrap_or("(unknown address)"),
        when(f.written_ms),
        when(f.started_ms)
    );
    if let Some(damage) = f.damage() {
        let _ = writeln!(out, "WARNING: the state file is damaged: {damage}");
        for p in f.problems.iter().take(5) {
            let _ = writeln!(out, "  {p}");
        }
    }
    if let Some(note) = f.ignored_note() {
        let _ = writeln!(out, "Note: {note}");
    }
    if f.written_ms
        .is_some_and(|w| now_ms.saturating_sub(w) > 60_000)
    {
        let _ = writeln!(
            out,
            "WARNING: the state file is old: is vmwatch-master running?"
        );
    }
    if !f.aside.is_empty() {
        let _ = writeln!(
            out,
            "WARNING: the panel refused {} updates; they are set aside and tried again every 1-15 min (below)",
            f.aside.len()
        );
    }
    for (who, offset, since) in &f.clocks {
        let whose = match who {
            crate::master::receiver::clock::Who::Master => "the master's".to_string(),
            crate::master::receiver::clock::Who::Node(n) => format!("node {}'s", esc(n)),
        };
        let _ = writeln!(
            out,
            "CRITICAL: {whose} clock is {} (found {}); check NTP",
            crate::clock::offset_text(*offset),
            ago(*since)
        );
    }
    let _ = writeln!(out, "\nNodes ({}):", f.nodes.len());
    for n in &f.nodes {
        let _ = writeln!(
            out,
            "  {:<12} {:<5} last message {:<12} {} domains",
            n.node,
            if n.up { "up" } else { "DOWN" },
            ago(n.last_seen_ms),
            n.domains
        );
    }
    for (node, hosts, peers) in &f.clashes {
        let _ = writeln!(
            out,
            "CRITICAL: node id {} is used by two hosts at once (libvirt hosts {}, from {}): give each node its own node_id",
            esc(node),
            esc(hosts),
            esc(peers)
        );
    }
    let _ = writeln!(out, "\nDuplicates ({}):", f.duplicates.len());
    for (by, key, nodes) in &f.duplicates {
        let _ = writeln!(out, "  same {by} {} on nodes {nodes}", esc(key));
    }
    let _ = writeln!(out, "\nIdle warnings ({}):", f.idle.len());
    for i in &f.idle {
        let _ = writeln!(
            out,
            "  {} ({}) on node {}: {} packets sent, {} disk writes",
            esc(&i.name),
            i.uuid,
            i.node,
            i.tx_pkts,
            i.wr_reqs
        );
    }
    let (graphite, counters): (Vec<_>, Vec<_>) = f
        .counters
        .iter()
        .partition(|(k, _)| k.starts_with("graphite."));
    let _ = writeln!(out, "\nMessages and panel calls since start:");
    for (k, v) in counters {
        let _ = writeln!(out, "  {k:<28} {v}");
    }
    let _ = writeln!(out, "  {:<28} {}", "panel updates waiting", f.pending.len());
    // Only when the export is on (the master writes these lines then).
    if !graphite.is_empty() {
        let _ = writeln!(out, "\nGraphite export since start:");
        for (k, v) in graphite {
            let name = &k["graphite.".len()..];
            match (name, v) {
                ("connected", 0) => {
                    let _ = writeln!(out, "  {name:<28} no");
                }
                ("connected", _) => {
                    let _ = writeln!(out, "  {name:<28} yes");
                }
                _ => {
                    let _ = writeln!(out, "  {name:<28} {v}");
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "\nRefused by the panel, set aside ({}):",
        f.aside.len()
    );
    for r in &f.aside {
        let _ = writeln!(
            out,
            "  refused {} times: {}\n    the panel said: {}",
            r.tries,
            esc(&r.update.log_line().to_string()),
            esc(&r.why)
        );
    }
    let _ = writeln!(out, "\nDomains ({}):", f.domains.len());
    let _ = writeln!(
        out,
        "  {:<12} {:<24} {:<12} {:<14} SINCE  UUID",
        "NODE", "NAME", "STATE", "REASON"
    );
    for d in &f.domains {
        let _ = writeln!(
            out,
            "  {:<12} {:<24} {:<12} {:<14} {}  {}",
            d.node,
            esc(&d.record.name),
            d.record.state,
            esc(&d.record.reason),
            ago(d.record.since_ms),
            d.uuid
        );
    }
    out
}

/// Free text from the file, safe to print on a terminal.
fn esc(s: &str) -> String {
    crate::logging::escape_control(s)
}
