//! Metric names and plaintext lines (docs/graphite.md): every node id,
//! domain name and state is one path component made by
//! [`metric_component`], so any VM name makes a valid metric path.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::channel::Item;

/// Longest escaped path component; carbon makes each a file or directory
/// name, and file systems stop at 255 bytes.
pub const MAX_COMPONENT: usize = 200;
/// The libvirt states always reported, 0 included, so graphs have no gaps.
pub use crate::vocab::STATES;

/// One path component for any name: `A-Z a-z 0-9 _ -` stay, every other
/// byte (of the UTF-8) becomes `~XX`, uppercase hex. A name whose escaped form
/// is longer than [`MAX_COMPONENT`] keeps its first 180 bytes (cut before an
/// escape) followed by `~~` and 16 hex digits of the name's SHA-256, so it
/// stays unique. An empty name is `~`. Never contains `.`, space, `/`, `;`
/// or a glob character.
pub fn metric_component(name: &str) -> String {
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

/// The plaintext lines (`path value timestamp`) for one item.
pub fn render(prefix: &str, item: &Item, out: &mut Vec<String>) {
    match item {
        Item::Stats { node, ts, samples } => {
            let base = format!("{prefix}.nodes.{}.domains", metric_component(node));
            // A sample over a partial interval (the domain started, stopped
            // or its counters reset) has no meaningful deltas: not exported.
            for s in samples.iter().filter(|s| s.whole) {
                let d = metric_component(&s.domain.name);
                out.push(format!("{base}.{d}.tx_pkts {} {ts}", s.tx_pkts));
                out.push(format!("{base}.{d}.wr_reqs {} {ts}", s.wr_reqs));
            }
        }
        Item::Summary { ts, nodes } => {
            let mut total: BTreeMap<&str, u64> = STATES.iter().map(|s| (*s, 0)).collect();
            let up = nodes.iter().filter(|n| n.up).count();
            for n in nodes {
                let base = format!("{prefix}.nodes.{}", metric_component(&n.node));
                out.push(format!("{base}.up {} {ts}", u8::from(n.up)));
                let mut states: BTreeMap<&str, u64> = STATES.iter().map(|s| (*s, 0)).collect();
                for (s, c) in &n.states {
                    *states.entry(s.as_str()).or_insert(0) += c;
                    *total.entry(s.as_str()).or_insert(0) += c;
                }
                for (s, c) in states {
                    out.push(format!("{base}.states.{} {c} {ts}", metric_component(s)));
                }
            }
            let base = format!("{prefix}.cluster");
            out.push(format!("{base}.nodes_up {up} {ts}"));
            out.push(format!("{base}.nodes_down {} {ts}", nodes.len() - up));
            for (s, c) in total {
                out.push(format!("{base}.states.{} {c} {ts}", metric_component(s)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::graphite::channel::NodeSummary;
    use crate::protocol::{DomainId, StatSample};

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
            assert_eq!(metric_component(name), component);
        }
        // Long names stay unique and within the limit.
        let a = metric_component(&"é".repeat(100));
        let b = metric_component(&format!("{}x", "é".repeat(99)));
        assert!(a.len() <= MAX_COMPONENT && b.len() <= MAX_COMPONENT);
        assert_ne!(a, b);
        assert!(a.contains("~~"));
        assert!(!a[..a.find("~~").unwrap()].ends_with('~'));
        assert_eq!(metric_component(&"a".repeat(200)), "a".repeat(200));
        assert_eq!(metric_component(&"a".repeat(201)).len(), 180 + 2 + 16);
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
