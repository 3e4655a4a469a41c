//! Graphite export: the settings, the metric names and the receiver's handle.
//!
//! Off unless `graphite=tcp://HOST[:PORT]` is set. The receiver hands every
//! accepted stats message, and once per `graphite_interval` a summary of the
//! state table, to the `graphite` thread ([`sink`]) through a
//! bounded channel with `try_send`: when the channel is full the item is
//! dropped and counted, so carbon being slow or down never slows the receiver
//! or the panel. Lines are rendered, buffered and sent in that thread.
//!
//! Names (docs/graphite.md): every node id, domain name and state is one path
//! component escaped by [`escape`], so any VM name makes a valid metric path.

pub mod sink;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::config::{split_host_port, Loader};
use crate::master::view::table::StateTable;
use crate::protocol::{Body, Message, StatSample};

/// Carbon's plaintext port, used when `graphite` names none.
pub const DEFAULT_PORT: u16 = 2003;
/// Items (one stats message or one summary each) between the receiver and
/// the graphite thread; beyond this the receiver drops and counts.
pub const CHANNEL_ITEMS: usize = 1024;
/// Longest escaped path component; carbon makes each a file or directory
/// name, and file systems stop at 255 bytes.
pub const MAX_COMPONENT: usize = 200;
/// The libvirt states always reported, 0 included, so graphs have no gaps.
pub use crate::vocab::STATES;

/// The `graphite*` keys of vmwatch-master.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `HOST:PORT` of carbon's plaintext receiver; `None`: export is off.
    pub target: Option<String>,
    /// Dot-separated path put before every metric name.
    pub prefix: String,
    /// Seconds between node and state-count samples.
    pub interval: u64,
    /// Lines kept while carbon cannot be reached; beyond, the oldest go.
    pub buffer: usize,
}

impl Settings {
    /// Reads the keys from `l`, recording problems in it.
    pub fn load(l: &mut Loader) -> Settings {
        let target = l.checked("graphite", Some(""), |v| parse_target(v).map(|_| ()));
        Settings {
            target: parse_target(&target).ok(),
            prefix: l.checked("graphite_prefix", Some("vmwatch"), check_prefix),
            interval: l.number("graphite_interval", 60, 1, 3_600),
            buffer: l.number("graphite_buffer", 100_000, 100, 10_000_000) as usize,
        }
    }

    /// The effective settings as `NAME=VALUE` pairs.
    pub fn describe(&self, out: &mut Vec<(String, String)>) {
        let target = match &self.target {
            Some(t) => format!("tcp://{t}"),
            None => "(off)".to_string(),
        };
        out.push(("graphite".to_string(), target));
        out.push(("graphite_prefix".to_string(), self.prefix.clone()));
        out.push(("graphite_interval".to_string(), self.interval.to_string()));
        out.push(("graphite_buffer".to_string(), self.buffer.to_string()));
    }
}

/// `tcp://HOST[:PORT]` (`tcp://[IPv6]:PORT`) to `HOST:PORT`; the port
/// defaults to carbon's 2003.
pub fn parse_target(value: &str) -> Result<String, String> {
    let Some(rest) = value.strip_prefix("tcp://") else {
        return Err(format!(
            "`{value}` is not tcp://HOST:PORT (for example tcp://192.0.2.20:{DEFAULT_PORT})"
        ));
    };
    let (host, port) = split_host_port(rest, DEFAULT_PORT, |host| {
        if host.is_empty() || host == "[]" || host.contains(['/', ' ']) {
            Err(format!("`{value}`: missing or invalid host"))
        } else {
            Ok(())
        }
    })?;
    Ok(format!("{host}:{port}"))
}

/// A prefix is one or more dot-separated components of `A-Z a-z 0-9 _ -`.
pub fn check_prefix(value: &str) -> Result<(), String> {
    let ok = value.split('.').all(|c| {
        !c.is_empty()
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{value}` must be dot-separated words of A-Z a-z 0-9 _ - (for example vmwatch or servers.panel1.vmwatch)"
        ))
    }
}

/// One path component for any name: `A-Z a-z 0-9 _ -` stay, every other
/// byte (of the UTF-8) becomes `~XX`, uppercase hex. A name whose escaped form
/// is longer than [`MAX_COMPONENT`] keeps its first 180 bytes (cut before an
/// escape) followed by `~~` and 16 hex digits of the name's SHA-256, so it
/// stays unique. An empty name is `~`. Never contains `.`, space, `/`, `;`
/// or a glob character.
pub fn escape(name: &str) -> String {
    if name.is_empty() {
        return "~".to_string();
    }
    let mut out = String::with_capacity(name.len());
    let mut cut = 0;
    for b in name.bytes() {
        if out.len() <= 180 {
            cut = out.len();
        }
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("~{b:02X}"));
        }
    }
    if out.len() > MAX_COMPONENT {
        let digest = Sha256::digest(name.as_bytes());
        out.truncate(cut);
        out.push_str("~~");
        for b in &digest[..8] {
            out.push_str(&format!("{b:02x}"));
        }
    }
    out
}

/// One node in a summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSummary {
    pub node: String,
    pub up: bool,
    /// Domains by state.
    pub states: BTreeMap<String, u64>,
}

/// What the receiver hands over.
#[derive(Debug)]
pub enum Item {
    /// An accepted stats message: `ts` is the node's send time (seconds).
    Stats {
        node: String,
        ts: u64,
        samples: Vec<StatSample>,
    },
    /// The state table at `ts` (the master's clock, seconds).
    Summary { ts: u64, nodes: Vec<NodeSummary> },
}

/// What was sent and lost on the way, for the thread's log lines, its own
/// metrics and the state file (`counter graphite.*`, docs/state-file.md).
#[derive(Debug, Default)]
pub struct Counters {
    /// Items the receiver dropped because the channel was full.
    pub dropped_items: AtomicU64,
    /// Lines the graphite thread dropped, oldest first, from a full buffer.
    pub dropped_lines: AtomicU64,
    /// Lines written to carbon's socket.
    pub sent_lines: AtomicU64,
    /// Lines waiting in the buffer now.
    pub buffered_lines: AtomicU64,
    /// Whether the thread holds a connection to carbon now.
    pub connected: AtomicBool,
}

impl Counters {
    /// `(name, value)` of each, as the state file's `counter graphite.NAME`
    /// lines have them (`connected` is 0 or 1).
    pub fn snapshot(&self) -> [(&'static str, u64); 5] {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            ("sent_lines", l(&self.sent_lines)),
            ("dropped_lines", l(&self.dropped_lines)),
            ("dropped_items", l(&self.dropped_items)),
            ("buffered_lines", l(&self.buffered_lines)),
            (
                "connected",
                u64::from(self.connected.load(Ordering::Relaxed)),
            ),
        ]
    }
}

/// The receiver's end: never blocks.
pub struct Exporter {
    tx: SyncSender<Item>,
    pub counters: Arc<Counters>,
    interval: Duration,
    last_summary: Option<Instant>,
}

impl Exporter {
    /// Offers an accepted message; only stats are exported.
    pub fn message(&mut self, msg: Message) {
        if let Body::Stats { samples, .. } = msg.body {
            self.offer(Item::Stats {
                node: msg.header.node,
                ts: msg.header.ts_ms / 1000,
                samples,
            });
        }
    }

    /// Called about every second by the receiver: once per interval, offers
    /// a summary of the table.
    pub fn tick(&mut self, table: &StateTable, now_ms: u64) {
        if self
            .last_summary
            .is_some_and(|t| t.elapsed() < self.interval)
        {
            return;
        }
        self.last_summary = Some(Instant::now());
        self.offer(Item::Summary {
            ts: now_ms / 1000,
            nodes: summarize(table),
        });
    }

    fn offer(&self, item: Item) {
        match self.tx.try_send(item) {
            Ok(()) => {}
            // Full: the graphite thread is behind; dropping here keeps the
            // receiver at full speed. Disconnected: the thread has gone.
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.dropped_items.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Counts each node's domains by state.
pub fn summarize(table: &StateTable) -> Vec<NodeSummary> {
    table
        .nodes()
        .iter()
        .map(|(node, rec)| {
            let mut states = BTreeMap::new();
            for d in rec.domains.values() {
                *states.entry(d.state.to_string()).or_insert(0) += 1;
            }
            NodeSummary {
                node: node.clone(),
                up: rec.up,
                states,
            }
        })
        .collect()
}

/// The plaintext lines (`path value timestamp`) for one item.
pub fn render(prefix: &str, item: &Item, out: &mut Vec<String>) {
    match item {
        Item::Stats { node, ts, samples } => {
            let base = format!("{prefix}.nodes.{}.domains", escape(node));
            // A sample over a partial interval (the domain started, stopped
            // or its counters reset) has no meaningful deltas: not exported.
            for s in samples.iter().filter(|s| s.whole) {
                let d = escape(&s.domain.name);
                out.push(format!("{base}.{d}.tx_pkts {} {ts}", s.tx_pkts));
                out.push(format!("{base}.{d}.wr_reqs {} {ts}", s.wr_reqs));
            }
        }
        Item::Summary { ts, nodes } => {
            let mut total: BTreeMap<&str, u64> = STATES.iter().map(|s| (*s, 0)).collect();
            let up = nodes.iter().filter(|n| n.up).count();
            for n in nodes {
                let base = format!("{prefix}.nodes.{}", escape(&n.node));
                out.push(format!("{base}.up {} {ts}", u8::from(n.up)));
                let mut states: BTreeMap<&str, u64> = STATES.iter().map(|s| (*s, 0)).collect();
                for (s, c) in &n.states {
                    *states.entry(s.as_str()).or_insert(0) += c;
                    *total.entry(s.as_str()).or_insert(0) += c;
                }
                for (s, c) in states {
                    out.push(format!("{base}.states.{} {c} {ts}", escape(s)));
                }
            }
            let base = format!("{prefix}.cluster");
            out.push(format!("{base}.nodes_up {up} {ts}"));
            out.push(format!("{base}.nodes_down {} {ts}", nodes.len() - up));
            for (s, c) in total {
                out.push(format!("{base}.states.{} {c} {ts}", escape(s)));
            }
        }
    }
}

/// Starts the `graphite` thread if export is on.
pub fn start(settings: &Settings) -> Option<(Exporter, JoinHandle<()>)> {
    let target = settings.target.clone()?;
    let (tx, rx) = sync_channel(CHANNEL_ITEMS);
    let counters = Arc::new(Counters::default());
    let sink = sink::Sink::new(
        target,
        settings.prefix.clone(),
        settings.buffer,
        counters.clone(),
    );
    let thread = crate::service::spawn("graphite", move || sink.run(rx));
    let exporter = Exporter {
        tx,
        counters,
        interval: Duration::from_secs(settings.interval),
        last_summary: None,
    };
    Some((exporter, thread))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_text;
    use crate::protocol::DomainId;

    #[test]
    fn escaping_keeps_words_and_hex_escapes_everything_else() {
        for (name, component) in [
            ("vm1234", "vm1234"),
            ("web-01_a", "web-01_a"),
            ("a.b c/d", "a~2Eb~20c~2Fd"),
            ("x*?[]{};,", "x~2A~3F~5B~5D~7B~7D~3B~2C"),
            ("~", "~7E"),
            ("ü", "~C3~BC"),
            ("", "~"),
        ] {
            assert_eq!(escape(name), component);
        }
        // Long names stay unique and within the limit.
        let a = escape(&"é".repeat(100));
        let b = escape(&format!("{}x", "é".repeat(99)));
        assert!(a.len() <= MAX_COMPONENT && b.len() <= MAX_COMPONENT);
        assert_ne!(a, b);
        assert!(a.contains("~~"));
        assert!(!a[..a.find("~~").unwrap()].ends_with('~'));
        assert_eq!(escape(&"a".repeat(200)), "a".repeat(200));
        assert_eq!(escape(&"a".repeat(201)).len(), 180 + 2 + 16);
    }

    #[test]
    fn targets_and_prefixes_are_checked() {
        let targets = ["tcp://carbon", "tcp://10.0.0.5:2013", "tcp://[::1]:2003"];
        let parsed = targets.map(|t| parse_target(t).unwrap());
        assert_eq!(parsed, ["carbon:2003", "10.0.0.5:2013", "[::1]:2003"]);
        for bad in ["udp://x:1", "tcp://x:0", "tcp://:2003"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
        assert!(check_prefix("servers.panel-1.vmwatch").is_ok());
        assert!(check_prefix("a..b").is_err());
        assert!(check_prefix("a b").is_err());
    }

    #[test]
    fn config_keys_default_off_and_report_file_line_errors() {
        let load = |text| load_text("m.conf", text, |_, l| Settings::load(l));
        let (s, warnings) = load("");
        assert!(warnings.unwrap().is_empty());
        assert_eq!(s.target, None);
        assert_eq!(
            (s.prefix.as_str(), s.interval, s.buffer),
            ("vmwatch", 60, 100_000)
        );

        let (s, warnings) =
            load("graphite=tcp://127.0.0.1\ngraphite_prefix=x.y\ngraphite_interval=5\n");
        assert!(warnings.unwrap().is_empty());
        assert_eq!(s.target.as_deref(), Some("127.0.0.1:2003"));
        assert_eq!(s.interval, 5);

        let (_, refused) =
            load("graphite=127.0.0.1:2003\ngraphite_prefix=a..b\ngraphite_buffer=5\n");
        let errs = refused.unwrap_err().lines();
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with("m.conf:1: `graphite`: `127.0.0.1:2003` is not tcp://"));
        assert!(errs[1].starts_with("m.conf:2: `graphite_prefix`"));
        assert!(errs[2]
            .starts_with("m.conf:3: `graphite_buffer` must be a whole number between 100 and"));
    }

    fn sample(name: &str, whole: bool, tx: u64, wr: u64) -> StatSample {
        StatSample {
            domain: DomainId {
                uuid: "u".into(),
                name: name.into(),
            },
            whole,
            tx_pkts: tx,
            wr_reqs: wr,
        }
    }

    #[test]
    fn stats_and_summaries_render_as_plaintext_lines() {
        let mut out = Vec::new();
        let item = Item::Stats {
            node: "n.1".into(),
            ts: 1_700_000_000,
            samples: vec![sample("web 1", true, 5, 7), sample("off", false, 1, 1)],
        };
        render("vmw", &item, &mut out);
        assert_eq!(
            out,
            vec![
                "vmw.nodes.n~2E1.domains.web~201.tx_pkts 5 1700000000",
                "vmw.nodes.n~2E1.domains.web~201.wr_reqs 7 1700000000",
            ]
        );
        out.clear();
        let nodes = vec![
            NodeSummary {
                node: "a".into(),
                up: true,
                states: [("running".to_string(), 2), ("weird".to_string(), 1)].into(),
            },
            NodeSummary {
                node: "b".into(),
                up: false,
                states: [("running".to_string(), 1)].into(),
            },
        ];
        render("p", &Item::Summary { ts: 9, nodes }, &mut out);
        assert!(out.contains(&"p.nodes.a.up 1 9".to_string()));
        assert!(out.contains(&"p.nodes.b.up 0 9".to_string()));
        assert!(out.contains(&"p.nodes.a.states.running 2 9".to_string()));
        assert!(out.contains(&"p.nodes.a.states.paused 0 9".to_string()));
        assert!(out.contains(&"p.nodes.a.states.weird 1 9".to_string()));
        assert!(out.contains(&"p.cluster.states.running 3 9".to_string()));
        assert!(out.contains(&"p.cluster.nodes_up 1 9".to_string()));
        assert!(out.contains(&"p.cluster.nodes_down 1 9".to_string()));
        assert_eq!(out.len(), (1 + 9) + (1 + 8) + 2 + 9);
    }
}
