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
use std::sync::Arc;
use std::time::Duration;

use super::activity::IdleWarning;
use super::panel::PanelCounters;
use super::panel_queue::PanelQueue;
use super::receiver::{Counters, Receiver};
use super::replay::ReplayGuard;
use super::replay::SeenInstance;
use super::state::{DomainRecord, RebootCount, StateTable};
use super::update::Update;
use crate::protocol::{check_node_id, escape, is_uuid, unescape};
use crate::ratelimit::RateLimit;
use crate::service::now_ms;
use crate::vocab::State;

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
    for reason in super::rejection::Rejection::ALL {
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
    for (node, n) in &v.table.nodes {
        for (uuid, d) in &n.domains {
            let _ = writeln!(
                out,
                "domain {} {} {} {} {} {} {:016x} {}",
                enc(node),
                uuid,
                d.state,
                d.since_ms,
                enc(&d.name),
                enc(&d.reason),
                d.reboots.instance,
                d.reboots.count
            );
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
/// `guard`, and returns the updates the panel had not taken. Whatever the
/// file holds, the master starts: every unreadable line is logged as
/// `FILE:LINE: what`, a damaged file is kept aside, and what could be read
/// is used.
pub fn restore_file(
    path: &str,
    table: &mut StateTable,
    guard: &mut ReplayGuard,
    now_ms: u64,
) -> Vec<Update> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log::info!("no state file at {path}: starting with an empty view");
            return Vec::new();
        }
        Err(e) => {
            log::error!("cannot read state file {path}: {e}; starting with an empty view");
            if Path::new(path).exists() {
                set_aside(path, "cannot be read");
            }
            return Vec::new();
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
    let pending = restore(&f, table, guard, now_ms);
    if let Some(damage) = f.damage() {
        set_aside(path, &format!("is damaged ({damage})"));
    }
    let domains: usize = table.nodes.values().map(|n| n.domains.len()).sum();
    log::info!(
        "restored {} nodes, {domains} domains and {} undelivered panel updates from {path}",
        table.nodes.len(),
        pending.len(),
    );
    pending
}

/// One `node` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLine {
    pub node: String,
    pub up: bool,
    pub last_seen_ms: u64,
    pub domains: u64,
}

/// One `domain` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainLine {
    pub node: String,
    pub uuid: String,
    pub record: DomainRecord,
}

/// A state file, parsed once; what restore and `--status` both read.
#[derive(Debug, Default)]
pub struct StateFile {
    pub written_ms: Option<u64>,
    pub started_ms: Option<u64>,
    pub listen: Option<String>,
    pub counters: Vec<(String, u64)>,
    pub nodes: Vec<NodeLine>,
    pub domains: Vec<DomainLine>,
    /// Reported duplicates (recomputed from the domains on restore).
    pub duplicates: Vec<(String, String, String)>,
    pub idle: Vec<IdleWarning>,
    pub seen: Vec<SeenInstance>,
    pub pending: Vec<Update>,
    /// The `end` line was there: the file was not cut short.
    pub complete: bool,
    /// A `version` other than [`FORMAT`]: nothing after it was used.
    pub foreign_version: Option<String>,
    /// `FILE:LINE: what` for each line that could not be used.
    pub problems: Vec<String>,
}

impl StateFile {
    /// Whether anything in the file could not be used, or it was cut short.
    pub fn damaged(&self) -> bool {
        !self.problems.is_empty() || !self.complete || self.written_ms.is_none()
    }

    /// What is wrong with the file, for a person; `None` if nothing.
    pub fn damage(&self) -> Option<String> {
        if let Some(v) = &self.foreign_version {
            return Some(format!(
                "it is format version {v}, this master reads version {FORMAT}: nothing was used"
            ));
        }
        let mut what = Vec::new();
        if !self.problems.is_empty() {
            what.push(format!("{} unreadable lines", self.problems.len()));
        }
        if self.written_ms.is_none() {
            what.push("no `written` line".to_string());
        }
        if !self.complete {
            what.push("no `end` line (cut short)".to_string());
        }
        (!what.is_empty()).then(|| what.join(", "))
    }
}

/// Longest excerpt of a bad line quoted in a problem.
const EXCERPT: usize = 40;

fn excerpt(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(&line[..line.len().min(EXCERPT)]);
    crate::logging::escape_control(&text)
}

/// Parses a state file. Never fails: whatever the bytes, what could be read
/// is returned and every line that could not is named in `problems`.
pub fn parse(path: &str, bytes: &[u8]) -> StateFile {
    let mut f = StateFile::default();
    let mut body = bytes;
    if body.last() == Some(&b'\n') {
        body = &body[..body.len() - 1];
    }
    if body.is_empty() {
        f.problems.push(format!("{path}:1: the file is empty"));
        return f;
    }
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        if f.foreign_version.is_some() {
            break;
        }
        if f.complete {
            // Whatever follows `end` is not part of the file's content.
            f.complete = false;
            f.problems
                .push(format!("{path}:{n}: text after the `end` line"));
            break;
        }
        let result = match std::str::from_utf8(raw) {
            Ok(line) if line.is_empty() || line.starts_with('#') => Ok(()),
            Ok(line) => parse_line(&mut f, line),
            Err(_) => Err("not UTF-8 text".to_string()),
        };
        if let Err(what) = result {
            f.problems
                .push(format!("{path}:{n}: {what}: `{}`", excerpt(raw)));
        }
    }
    f
}

fn parse_line(f: &mut StateFile, line: &str) -> Result<(), String> {
    let w: Vec<&str> = line.split(' ').collect();
    let num = |s: &str, what: &str| -> Result<u64, String> {
        if !crate::vocab::is_decimal(s) {
            return Err(format!(
                "{what} `{}` is not a number",
                excerpt(s.as_bytes())
            ));
        }
        s.parse::<u64>().map_err(|_| format!("{what} is too large"))
    };
    let text = |s: &str, what: &str| -> Result<String, String> {
        unescape(s).map_err(|e| format!("{what}: {e}"))
    };
    let node = |s: &str| -> Result<String, String> {
        let n = text(s, "node id")?;
        check_node_id(&n).map_err(|e| format!("node id {e}"))?;
        Ok(n)
    };
    let uuid = |s: &str| -> Result<String, String> {
        if is_uuid(s) {
            Ok(s.to_string())
        } else {
            Err(format!("`{}` is not a UUID", excerpt(s.as_bytes())))
        }
    };
    let words = |n: usize| -> Result<(), String> {
        if w.len() == n {
            Ok(())
        } else {
            Err(format!("`{}` line has {} words, not {n}", w[0], w.len()))
        }
    };
    match w[0] {
        "version" => {
            words(2)?;
            if w[1] != FORMAT.to_string() {
                f.foreign_version = Some(excerpt(w[1].as_bytes()));
                return Err(format!(
                    "format version {}, this master reads version {FORMAT}",
                    excerpt(w[1].as_bytes())
                ));
            }
        }
        "written" => {
            words(2)?;
            f.written_ms = Some(num(w[1], "time")?);
        }
        "started" => {
            words(2)?;
            f.started_ms = Some(num(w[1], "time")?);
        }
        "listen" => {
            words(2)?;
            f.listen = Some(text(w[1], "address")?);
        }
        "counter" => {
            words(3)?;
            let name = w[1];
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_')
            {
                return Err(format!("bad counter name `{}`", excerpt(name.as_bytes())));
            }
            f.counters.push((name.to_string(), num(w[2], "counter")?));
        }
        "node" => {
            words(5)?;
            f.nodes.push(NodeLine {
                node: node(w[1])?,
                up: match w[2] {
                    "up" => true,
                    "down" => false,
                    _ => return Err("node status is neither `up` nor `down`".into()),
                },
                last_seen_ms: num(w[3], "time")?,
                domains: num(w[4], "domain count")?,
            });
        }
        "domain" => {
            // Files written before reboot counting have no count.
            if w.len() != 7 && w.len() != 9 {
                return Err(format!("`domain` line has {} words, not 7 or 9", w.len()));
            }
            let state = State::parse(&text(w[3], "state")?).ok_or_else(|| {
                format!("state `{}` is not a domain state", excerpt(w[3].as_bytes()))
            })?;
            let reboots = if w.len() == 9 {
                RebootCount {
                    instance: u64::from_str_radix(w[7], 16)
                        .ok()
                        .filter(|_| w[7].len() == 16)
                        .ok_or("reboot instance is not 16 hex digits")?,
                    count: num(w[8], "reboot count")?,
                }
            } else {
                RebootCount::default()
            };
            f.domains.push(DomainLine {
                node: node(w[1])?,
                uuid: uuid(w[2])?,
                record: DomainRecord {
                    name: text(w[5], "name")?,
                    state,
                    reason: text(w[6], "reason")?,
                    since_ms: num(w[4], "time")?,
                    reboots,
                },
            });
        }
        "duplicate" => {
            words(4)?;
            f.duplicates
                .push((w[1].to_string(), text(w[2], "key")?, text(w[3], "nodes")?));
        }
        "idle" => {
            words(6)?;
            f.idle.push(IdleWarning {
                node: node(w[1])?,
                uuid: uuid(w[2])?,
                tx_pkts: num(w[3], "packet count")?,
                wr_reqs: num(w[4], "write count")?,
                name: text(w[5], "name")?,
            });
        }
        "seen" => {
            words(5)?;
            f.seen.push(SeenInstance {
                node: node(w[1])?,
                instance: u64::from_str_radix(w[2], 16)
                    .ok()
                    .filter(|_| w[2].len() == 16)
                    .ok_or("instance is not 16 hex digits")?,
                seq: num(w[3], "sequence number")?,
                ts_ms: num(w[4], "time")?,
            });
        }
        "pending" => {
            let rest = line
                .strip_prefix("pending ")
                .ok_or("`pending` line without an update")?;
            f.pending
                .push(Update::from_panel_line(rest).map_err(|e| format!("pending update: {e}"))?);
        }
        "end" => {
            words(1)?;
            f.complete = true;
        }
        other => {
            return Err(format!("unknown line type `{}`", excerpt(other.as_bytes())));
        }
    }
    Ok(())
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
    for n in &f.nodes {
        let seen = if n.up { now_ms } else { n.last_seen_ms };
        table.restore_node(&n.node, seen, n.up);
    }
    for d in &f.domains {
        table.restore_domain(&d.node, &d.uuid, d.record.clone());
    }
    for i in &f.idle {
        table.restore_idle(&i.node, &i.uuid, &i.name, i.tx_pkts, i.wr_reqs);
    }
    for s in &f.seen {
        guard.import(s);
    }
    table.settle_restored();
    f.pending.clone()
}

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
    if f.written_ms
        .is_some_and(|w| now_ms.saturating_sub(w) > 60_000)
    {
        let _ = writeln!(
            out,
            "WARNING: the state file is old: is vmwatch-master running?"
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
    let _ = writeln!(out, "\nMessages and panel calls since start:");
    for (k, v) in &f.counters {
        let _ = writeln!(out, "  {k:<28} {v}");
    }
    let _ = writeln!(out, "  {:<28} {}", "panel updates waiting", f.pending.len());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Body, DomainId, Event, Header, Message};
    use crate::vocab::{Detail, EventKind};

    const U1: &str = "4b3b2f6e-1c9a-4f8e-9d6a-2a7c1e5b9f00";

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
                event: EventKind::parse(event).unwrap(),
                detail: Detail::parse(
                    EventKind::parse(event).unwrap(),
                    if event == "reboot" { "-" } else { "booted" },
                )
                .unwrap(),
                time_ms: 1000,
                reboots: (event == "reboot").then_some(1),
            }]),
        }
    }

    fn restored(text: &[u8]) -> (StateFile, StateTable, ReplayGuard, Vec<Update>) {
        let f = parse("s", text);
        let mut t = StateTable::new(true, 90);
        let mut g = ReplayGuard::new(300);
        let pending = restore(&f, &mut t, &mut g, 3000);
        (f, t, g, pending)
    }

    #[test]
    fn a_restarted_master_has_the_same_view_and_reports_nothing_new() {
        let mut table = StateTable::new(true, 90);
        let mut guard = ReplayGuard::new(300);
        let m1 = ev("1", U1, "web server", "started");
        guard.check(&m1.header, 1000).unwrap();
        table.apply(&m1, 1000);
        table.apply(&ev("1", U1, "web server", "reboot"), 1000);
        table.apply(&ev("2", U1, "web server", "started"), 1000); // duplicate
        let pending = vec![Update::Reboot {
            node: "1".into(),
            uuid: U1.into(),
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
        let (f, mut t2, mut g2, got) = restored(text.as_bytes());
        assert!(f.problems.is_empty(), "{:?}", f.problems);
        assert!(!f.damaged());
        assert_eq!(got, pending);
        assert_eq!(t2.nodes["1"].domains, table.nodes["1"].domains);
        assert_eq!(t2.nodes["1"].domains[U1].reboots.count, 1);
        assert_eq!(t2.duplicates(), table.duplicates());
        assert!(g2.check(&m1.header, 3000).is_err(), "replay still refused");
        // Nothing is news: the same event and the same reboot again.
        let again = t2.apply(&ev("1", U1, "web server", "started"), 3000);
        assert!(again.is_empty(), "{again:?}");
        let again = t2.apply(&ev("1", U1, "web server", "reboot"), 3000);
        assert!(again.is_empty(), "{again:?}");
        let shown = report(&f, 2500);
        assert!(shown.contains("web server"));
        assert!(shown.contains(&format!("same uuid {U1} on nodes 1,2")));
        assert!(!shown.contains("damaged"));
    }

    #[test]
    fn damaged_lines_are_named_and_skipped() {
        let (f, t, _, _) = restored(b"version 1\nnode 1 sideways 5 0\ndomain 1\nnode 2 up 5 0\n");
        assert_eq!(
            f.problems,
            vec![
                "s:2: node status is neither `up` nor `down`: `node 1 sideways 5 0`",
                "s:3: `domain` line has 2 words, not 7 or 9: `domain 1`",
            ]
        );
        assert!(f.damaged());
        assert!(t.nodes.contains_key("2"));
    }

    /// Whatever the bytes, parsing names the bad lines and never panics.
    #[test]
    fn any_damage_is_survived_and_said() {
        let mut long = b"version 1\nwritten 5\ndomain 1 ".to_vec();
        long.extend(std::iter::repeat_n(b'x', 1 << 20));
        long.extend(b"\nend\n");
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("bare pending", b"version 1\nwritten 5\npending\nend\n".to_vec(), "s:3: `pending` line without an update"),
            ("pending and a space", b"version 1\nwritten 5\npending \nend\n".to_vec(), "s:3: pending update: an update needs"),
            ("binary", vec![0xff, 0xfe, 0, 1, b'\n', 0x80], "s:1: not UTF-8 text"),
            ("other version", b"version 2\nwritten 5\nnode 1 up 5 0\nend\n".to_vec(), "s:1: format version 2"),
            ("truncated", b"version 1\nwritten 5\nnode 1 up 5".to_vec(), "s:3: `node` line has 4 words"),
            ("long line", long, "s:3: `domain` line has 3 words"),
            ("empty", Vec::new(), "s:1: the file is empty"),
            ("plus sign", b"version 1\nwritten +5\nend\n".to_vec(), "s:2: time `+5` is not a number"),
            ("after end", b"version 1\nwritten 5\nend\nnode 1 up 5 0\n".to_vec(), "s:4: text after the `end` line"),
            ("forged state", b"version 1\nwritten 5\ndomain 1 4b3b2f6e-1c9a-4f8e-9d6a-2a7c1e5b9f00 flying 1 a b\nend\n".to_vec(), "s:3: state `flying`"),
        ];
        for (what, bytes, first) in cases {
            let (f, t, _, _) = restored(&bytes);
            assert!(f.damaged(), "{what}");
            let all = f.problems.join("\n");
            assert!(all.starts_with(first), "{what}: {all}");
            assert!(
                report(&f, 10_000).contains("WARNING: the state file is damaged"),
                "{what}"
            );
            if what == "other version" {
                assert!(t.nodes.is_empty(), "nothing of another version is used");
            }
        }
    }

    #[test]
    fn a_file_without_written_line_says_so() {
        let f = parse("s", b"version 1\nend\n");
        let shown = report(&f, 1_000_000_000_000);
        assert!(
            shown.contains("state written at an unknown time"),
            "{shown}"
        );
        assert!(shown.contains("no `written` line"), "{shown}");
        assert!(!shown.contains(" h ago"), "{shown}");
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
