//! The master's state file (docs/state-file.md): its view of the cluster,
//! written atomically every `state_interval` seconds and on shutdown.
//!
//! It serves three readers: the master itself after a restart (so the panel
//! is told only what really changed while it was down, replays stay refused,
//! and undelivered panel updates are not lost), `vmwatch-master --status`
//! for a person, and monitoring checks. One fact per line, space-separated
//! words, free text percent-encoded as on the wire, so any tool can read it
//! with `split`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use super::panel::PanelCounters;
use super::receiver::Counters;
use super::replay::ReplayGuard;
use super::state::{DomainRecord, StateTable};
use super::update::Update;
use crate::protocol::{escape, unescape};

/// Version of the format, first line after the comment.
pub const FORMAT: u32 = 1;

fn enc(v: &str) -> String {
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
    for reason in [
        "bad_mac",
        "malformed",
        "oversized",
        "version",
        "stale",
        "replay",
    ] {
        let n = v.counters.rejected.get(reason).copied().unwrap_or(0);
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
    for (node, n) in &v.table.nodes {
        for (uuid, d) in &n.domains {
            let _ = writeln!(
                out,
                "domain {} {} {} {} {} {}",
                enc(node),
                uuid,
                enc(&d.state),
                d.since_ms,
                enc(&d.name),
                enc(&d.reason)
            );
        }
    }
    for (by, key, nodes) in v.table.duplicates() {
        let _ = writeln!(
            out,
            "duplicate {by} {} {}",
            enc(&key),
            enc(&nodes.join(","))
        );
    }
    for (node, uuid, name, tx, wr) in v.table.idle() {
        let _ = writeln!(out, "idle {} {uuid} {tx} {wr} {}", enc(&node), enc(&name));
    }
    for (node, inst, seq, ts) in v.guard.export() {
        let _ = writeln!(out, "seen {} {inst:016x} {seq} {ts}", enc(&node));
    }
    for u in v.pending {
        let _ = writeln!(out, "pending {}", u.panel_line());
    }
    out.push_str("end\n");
    out
}

/// Writes `text` to `path` atomically: a temporary file in the same
/// directory, flushed to disk, then renamed over the old file, so a reader
/// or a crash never sees half a file.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What a state file holds besides the table and the replay memory.
#[derive(Debug, Default)]
pub struct Loaded {
    pub written_ms: u64,
    pub pending: Vec<Update>,
    /// `file:line: what` for each line that could not be used.
    pub problems: Vec<String>,
    pub complete: bool,
}

/// Parses a state file into `table` and `guard`. Nodes that were up get
/// `now_ms` as their last sign of life, so a master that was down for a
/// while does not declare every node dead before they can speak.
pub fn load(
    path: &str,
    text: &str,
    table: &mut StateTable,
    guard: &mut ReplayGuard,
    now_ms: u64,
) -> Loaded {
    let mut l = Loaded::default();
    for (i, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let w: Vec<&str> = line.split(' ').collect();
        let ok = (|| -> Option<()> {
            let num = |s: &str| s.parse::<u64>().ok();
            match w.as_slice() {
                ["version", v] => (num(v)? == u64::from(FORMAT)).then_some(())?,
                ["written", t] => l.written_ms = num(t)?,
                ["started", _] | ["listen", _] | ["counter", _, _] => {}
                ["node", name, up, seen, _count] => {
                    let up = match *up {
                        "up" => true,
                        "down" => false,
                        _ => return None,
                    };
                    let seen = if up { now_ms } else { num(seen)? };
                    table.restore_node(&unescape(name).ok()?, seen, up);
                }
                ["domain", node, uuid, state, since, name, reason] => table.restore_domain(
                    &unescape(node).ok()?,
                    uuid,
                    DomainRecord {
                        name: unescape(name).ok()?,
                        state: unescape(state).ok()?,
                        reason: unescape(reason).ok()?,
                        since_ms: num(since)?,
                    },
                ),
                ["duplicate", _, _, _] => {} // recomputed from the domains
                ["idle", node, uuid, tx, wr, name] => table.restore_idle(
                    &unescape(node).ok()?,
                    uuid,
                    &unescape(name).ok()?,
                    num(tx)?,
                    num(wr)?,
                ),
                ["seen", node, inst, seq, ts] => guard.import(
                    &unescape(node).ok()?,
                    u64::from_str_radix(inst, 16).ok()?,
                    num(seq)?,
                    num(ts)?,
                ),
                ["pending", ..] => l
                    .pending
                    .push(Update::from_panel_line(&line["pending ".len()..])?),
                ["end"] => l.complete = true,
                _ => return None,
            }
            Some(())
        })();
        if ok.is_none() {
            l.problems
                .push(format!("{path}:{}: unreadable line ignored", i + 1));
        }
    }
    table.settle_restored();
    l
}

/// `vmwatch-master --status`: the state file for a person.
pub fn report(text: &str, now_ms: u64) -> String {
    let mut out = String::new();
    let ago = |ms: u64| -> String {
        let s = now_ms.saturating_sub(ms) / 1000;
        match s {
            0..=119 => format!("{s} s ago"),
            120..=7199 => format!("{} min ago", s / 60),
            _ => format!("{} h ago", s / 3600),
        }
    };
    let dec = |s: &str| unescape(s).unwrap_or_else(|_| s.to_string());
    let mut nodes = Vec::new();
    let mut domains = Vec::new();
    let mut dups = Vec::new();
    let mut idle = Vec::new();
    let mut counters = Vec::new();
    let mut pending = 0;
    let (mut written, mut started, mut listen) = (0, 0, String::new());
    for line in text.lines() {
        let w: Vec<&str> = line.split(' ').collect();
        match w.as_slice() {
            ["written", t] => written = t.parse().unwrap_or(0),
            ["started", t] => started = t.parse().unwrap_or(0),
            ["listen", l] => listen = dec(l),
            ["counter", k, v] => counters.push((k.to_string(), v.to_string())),
            ["node", n, up, seen, count] => nodes.push(format!(
                "  {:<12} {:<5} last message {:<12} {} domains",
                dec(n),
                if *up == "up" { "up" } else { "DOWN" },
                ago(seen.parse().unwrap_or(0)),
                count
            )),
            ["domain", node, uuid, state, since, name, reason] => domains.push(format!(
                "  {:<12} {:<24} {:<12} {:<14} {}  {}",
                dec(node),
                dec(name),
                dec(state),
                dec(reason),
                ago(since.parse().unwrap_or(0)),
                uuid
            )),
            ["duplicate", by, key, nodes] => {
                dups.push(format!("  same {by} {} on nodes {}", dec(key), dec(nodes)))
            }
            ["idle", node, uuid, tx, wr, name] => idle.push(format!(
                "  {} ({uuid}) on node {}: {tx} packets sent, {wr} disk writes",
                dec(name),
                dec(node)
            )),
            ["pending", ..] => pending += 1,
            _ => {}
        }
    }
    let _ = writeln!(
        out,
        "vmwatch-master on {listen}: state written {}, master running since {}",
        ago(written),
        ago(started)
    );
    if now_ms.saturating_sub(written) > 60_000 {
        let _ = writeln!(
            out,
            "WARNING: the state file is old: is vmwatch-master running?"
        );
    }
    let _ = writeln!(out, "\nNodes ({}):", nodes.len());
    out.push_str(&nodes.join("\n"));
    let _ = writeln!(out, "\n\nDuplicates ({}):", dups.len());
    out.push_str(&dups.join("\n"));
    let _ = writeln!(out, "\n\nIdle warnings ({}):", idle.len());
    out.push_str(&idle.join("\n"));
    let _ = writeln!(out, "\n\nMessages and panel calls since start:");
    for (k, v) in &counters {
        let _ = writeln!(out, "  {k:<28} {v}");
    }
    let _ = writeln!(out, "  {:<28} {pending}", "panel updates waiting");
    let _ = writeln!(out, "\nDomains ({}):", domains.len());
    let _ = writeln!(
        out,
        "  {:<12} {:<24} {:<12} {:<14} SINCE  UUID",
        "NODE", "NAME", "STATE", "REASON"
    );
    out.push_str(&domains.join("\n"));
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Body, DomainId, Event, Header, Message};

    fn ev(node: &str, uuid: &str, name: &str, event: &str) -> Message {
        Message {
            header: Header {
                node: node.into(),
                instance: 0xabc,
                seq: 1,
                ts_ms: 1000,
            },
            body: Body::Events(vec![Event {
                domain: DomainId {
                    uuid: uuid.into(),
                    name: name.into(),
                },
                event: event.into(),
                detail: "booted".into(),
                time_ms: 1000,
            }]),
        }
    }

    #[test]
    fn a_restarted_master_has_the_same_view_and_reports_nothing_new() {
        let mut table = StateTable::new(true, 90);
        let mut guard = ReplayGuard::new(300);
        let m1 = ev("1", "u-1", "web server", "started");
        guard.check(&m1.header, 1000).unwrap();
        table.apply(&m1, 1000);
        table.apply(&ev("2", "u-1", "web server", "started"), 1000); // duplicate
        let pending = vec![Update::Reboot {
            node: "1".into(),
            uuid: "u-1".into(),
            name: "web server".into(),
            time_ms: 5,
        }];
        let text = render(&View {
            table: &table,
            guard: &guard,
            counters: &Counters::default(),
            panel: &PanelCounters::default(),
            pending: &pending,
            listen: "tcp://127.0.0.1:1515",
            started_ms: 1,
            now_ms: 2000,
        });
        let mut t2 = StateTable::new(true, 90);
        let mut g2 = ReplayGuard::new(300);
        let l = load("s", &text, &mut t2, &mut g2, 3000);
        assert!(l.problems.is_empty(), "{:?}", l.problems);
        assert!(l.complete);
        assert_eq!(l.pending, pending);
        assert_eq!(t2.nodes["1"].domains, table.nodes["1"].domains);
        assert_eq!(t2.duplicates(), table.duplicates());
        assert!(g2.check(&m1.header, 3000).is_err(), "replay still refused");
        // Nothing is news: the same event again changes nothing.
        let again = t2.apply(&ev("1", "u-1", "web server", "started"), 3000);
        assert!(again.is_empty(), "{again:?}");
        let shown = report(&text, 2500);
        assert!(shown.contains("web server"));
        assert!(shown.contains("same uuid u-1 on nodes 1,2"));
    }

    #[test]
    fn damaged_lines_are_named_and_skipped() {
        let mut t = StateTable::new(false, 90);
        let mut g = ReplayGuard::new(300);
        let l = load(
            "s",
            "version 1\nnode 1 sideways 5 0\ndomain 1\nnode 2 up 5 0\n",
            &mut t,
            &mut g,
            9,
        );
        assert_eq!(
            l.problems,
            vec![
                "s:2: unreadable line ignored",
                "s:3: unreadable line ignored"
            ]
        );
        assert!(!l.complete);
        assert!(t.nodes.contains_key("2"));
    }

    #[test]
    fn atomic_write_replaces_the_file() {
        let dir = std::env::temp_dir().join(format!("vmwatch-sf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("state");
        write_atomic(&p, "a\n").unwrap();
        write_atomic(&p, "b\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "b\n");
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
