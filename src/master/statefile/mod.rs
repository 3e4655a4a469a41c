//! The master's state file (docs/state-file.md): its view of the cluster,
//! written atomically every `state_interval` seconds and on shutdown.
//!
//! It serves three readers: the master itself after a restart (so the panel
//! is told only what really changed while it was down, replays stay refused,
//! and undelivered panel updates are not lost), `vmwatch-master --status`
//! for a person, and monitoring checks. One fact per line, space-separated
//! words, free text percent-encoded as on the wire, so any tool can read it
//! with `split`.
//!
//! One file a concept: [`format`] (version and title), [`write`] (render
//! and the saver; the disk is [`crate::atomic_file`]'s), [`read`] (the
//! parser), [`restore`] (into a starting master) and [`report`] (for a
//! person). The children use one another, never this file.

mod format;
mod read;
mod report;
mod restore;
mod write;

pub use format::FORMAT;
pub use read::{parse, DomainLine, NodeLine, StateFile};
pub use report::report;
pub use restore::{restore, restore_file};
pub use write::{render, StateSaver, View};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::master::panel::update::Update;
    use crate::master::panel::PanelCounters;
    use crate::master::receiver::clock::{ClockLine, Who};
    use crate::master::receiver::replay::ReplayGuard;
    use crate::master::receiver::ReceiverCounters;
    use crate::master::view::table::StateTable;
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
                host: None,
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
                rebootid: None,
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
        guard.check(&m1.header, 1000, 0).unwrap();
        table.apply(&m1, 1000);
        table.apply(&ev("1", U1, "web server", "reboot"), 1000);
        // And from a node that names its reboots.
        let mut named = ev("1", U1, "web server", "reboot");
        if let Body::Events(e) = &mut named.body {
            (e[0].reboots, e[0].rebootid) = (None, Some(7));
        }
        table.apply(&named, 1000);
        table.apply(&ev("2", U1, "web server", "started"), 1000); // duplicate
        let pending = vec![Update::Reboot {
            node: "1".into(),
            uuid: U1.into(),
            name: "web server".into(),
            time_ms: 5,
            id: Some(7),
        }];
        let aside = vec![crate::master::panel::refused::Refused {
            update: Update::Node {
                node: "9".into(),
                up: true,
                since_ms: 4,
            },
            tries: 3,
            why: "mgrctl: no such node 9".into(),
        }];
        let text = render(&View {
            table: &table,
            guard: &guard,
            counters: &ReceiverCounters::default(),
            panel: &PanelCounters::default(),
            graphite: None,
            pending: &pending,
            aside: &aside,
            clocks: &[
                ClockLine {
                    who: Who::Master,
                    offset_ms: -7_200_000,
                    since_ms: 1500,
                },
                ClockLine {
                    who: Who::Node("n2".into()),
                    offset_ms: 3_600_000,
                    since_ms: 1600,
                },
            ],
            listen: "tcp://127.0.0.1:1515",
            started_ms: 1,
            now_ms: 2000,
        });
        let (f, mut t2, mut g2, got) = restored(text.as_bytes());
        assert!(f.problems.is_empty(), "{:?}", f.problems);
        assert!(!f.damaged());
        assert_eq!(got, pending);
        assert_eq!(f.aside, aside);
        assert_eq!(t2.nodes()["1"].domains, table.nodes()["1"].domains);
        assert_eq!(t2.nodes()["1"].domains[U1].reboots.count, 1);
        assert_eq!(t2.nodes()["1"].domains[U1].rebootid, Some(7));
        assert_eq!(t2.duplicates(), table.duplicates());
        assert!(
            g2.check(&m1.header, 3000, crate::clock::mono_ms()).is_err(),
            "replay still refused"
        );
        // Nothing is news: the same event and the same reboot again.
        let again = t2.apply(&ev("1", U1, "web server", "started"), 3000);
        assert!(again.is_empty(), "{again:?}");
        let again = t2.apply(&ev("1", U1, "web server", "reboot"), 3000);
        assert!(again.is_empty(), "{again:?}");
        let again = t2.apply(&named, 3000);
        assert!(again.is_empty(), "{again:?}");
        let shown = report(&f, 2500);
        assert!(shown.contains("web server"));
        assert!(shown.contains(&format!("same uuid {U1} on nodes 1,2")));
        assert_eq!(
            f.clocks,
            vec![
                (Who::Master, -7_200_000, 1500),
                (Who::Node("n2".into()), 3_600_000, 1600)
            ]
        );
        assert!(
            shown.contains("the master's clock is 2 h 0 min behind"),
            "{shown}"
        );
        assert!(
            shown.contains("node n2's clock is 1 h 0 min ahead"),
            "{shown}"
        );
        assert!(!shown.contains("damaged"));
        assert!(
            shown.contains("WARNING: the panel refused 1 updates"),
            "{shown}"
        );
        assert!(
            shown.contains(
                "refused 3 times: node 9 is up\n    the panel said: mgrctl: no such node 9"
            ),
            "{shown}"
        );
    }

    /// With graphite export on, its counters are `counter graphite.*`
    /// lines, and `--status` shows them in a section of their own.
    #[test]
    fn graphite_counters_are_written_read_and_shown() {
        use std::sync::atomic::Ordering::Relaxed;
        let g = crate::master::graphite::channel::GraphiteCounters::default();
        g.sent_lines.store(120, Relaxed);
        g.dropped_lines.store(7, Relaxed);
        g.buffered_lines.store(50, Relaxed);
        let (table, guard) = (StateTable::new(false, 60), ReplayGuard::default());
        let (counters, panel) = (ReceiverCounters::default(), PanelCounters::default());
        let view = |graphite| View {
            table: &table,
            guard: &guard,
            counters: &counters,
            panel: &panel,
            graphite,
            clocks: &[],
            pending: &[],
            aside: &[],
            listen: "tcp://127.0.0.1:1515",
            started_ms: 1,
            now_ms: 2000,
        };
        let off = render(&view(None));
        assert!(!off.contains("graphite"), "{off}");
        assert!(!report(&parse("s", off.as_bytes()), 2000).contains("Graphite"));
        let text = render(&view(Some(&g)));
        for line in [
            "counter graphite.sent_lines 120\n",
            "counter graphite.dropped_lines 7\n",
            "counter graphite.dropped_items 0\n",
            "counter graphite.buffered_lines 50\n",
            "counter graphite.connected 0\n",
        ] {
            assert!(text.contains(line), "{line}in {text}");
        }
        let f = parse("s", text.as_bytes());
        assert!(f.problems.is_empty(), "{:?}", f.problems);
        let shown = report(&f, 2500);
        let section = &shown[shown.find("Graphite export since start:").unwrap()..];
        assert!(
            section.contains("sent_lines                   120\n"),
            "{shown}"
        );
        assert!(
            section.contains("connected                    no\n"),
            "{shown}"
        );
        g.connected.store(true, Relaxed);
        let shown = report(&parse("s", render(&view(Some(&g))).as_bytes()), 2500);
        assert!(
            shown.contains("connected                    yes\n"),
            "{shown}"
        );
        let before = &shown[..shown.find("Graphite export").unwrap()];
        assert!(
            !before.contains("graphite."),
            "not among the messages: {shown}"
        );
    }

    #[test]
    fn hosts_and_clashes_are_kept_and_shown() {
        const A: &str = "00000000-0000-0000-0000-00000000000a";
        const B: &str = "00000000-0000-0000-0000-00000000000b";
        let mut table = StateTable::new(false, 90);
        table.introduce("c", A, "tcp://10.0.0.1:5".into());
        for (host, at) in [(A, 1000), (B, 1500)] {
            let mut m = ev("c", U1, "web", "started");
            m.header.host = Some(host.into());
            table.apply(&m, at);
        }
        let text = render(&View {
            table: &table,
            guard: &ReplayGuard::new(300),
            counters: &ReceiverCounters::default(),
            panel: &PanelCounters::default(),
            graphite: None,
            pending: &[],
            aside: &[],
            clocks: &[],
            listen: "tcp://127.0.0.1:1515",
            started_ms: 1,
            now_ms: 2000,
        });
        let (f, t2, _, _) = restored(text.as_bytes());
        assert!(f.problems.is_empty(), "{:?}", f.problems);
        assert_eq!(f.hosts.len(), 2);
        assert_eq!(
            f.clashes,
            vec![("c".into(), format!("{B},{A}"), "-,tcp://10.0.0.1:5".into())]
        );
        assert_eq!(t2.clashes(2000).len(), 1, "restored");
        let shown = report(&f, 2500);
        assert!(
            shown.contains(&format!(
                "CRITICAL: node id c is used by two hosts at once (libvirt hosts {B},{A}"
            )),
            "{shown}"
        );
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
        assert!(t.nodes().contains_key("2"));
    }

    /// A file written by a newer master (downgraded with `rpm -U
    /// --oldpackage`): well-formed lines of types this version does not
    /// know are skipped and noted, not damage, so the file is not set aside
    /// and everything known in it is used.
    #[test]
    fn well_formed_lines_of_unknown_types_are_ignored_not_damage() {
        let text = format!(
            "version 1\nwritten 5\nnode 1 up 5 1\nweather 1 sunny%20day\n\
             domain 1 {U1} running 1 web booted\nfuture_line\nx.y-2 a b\nend\n"
        );
        let (f, t, _, _) = restored(text.as_bytes());
        assert_eq!(f.problems, Vec::<String>::new());
        assert!(!f.damaged(), "{:?}", f.damage());
        assert_eq!(
            f.ignored,
            vec![
                (4, "weather".into()),
                (6, "future_line".into()),
                (7, "x.y-2".into())
            ]
        );
        assert_eq!(t.nodes()["1"].domains[U1].name, "web");
        let shown = report(&f, 10_000);
        assert!(!shown.contains("damaged"), "{shown}");
        assert!(
            shown.contains("3 lines of types this version does not know were ignored (weather, future_line, x.y-2)"),
            "{shown}"
        );
    }

    /// What is not a well-formed line of some type stays damage, as does a
    /// malformed line of a known type.
    #[test]
    fn lines_that_are_not_well_formed_are_still_damage() {
        for (line, said) in [
            ("Weather 1", "s:3: unknown line type `Weather`"),
            (" node 1 up 5 0", "s:3: unknown line type ``"),
            ("9lives 1", "s:3: unknown line type `9lives`"),
            ("wea\u{7f}ther 1", "s:3: unknown line type `wea\\x7fther`"),
            ("weather\t1", "s:3: unknown line type `weather\\x091`"),
            ("node 1 up 5", "s:3: `node` line has 4 words, not 5"),
            (
                "counter accepted many",
                "s:3: counter `many` is not a number",
            ),
        ] {
            let f = parse(
                "s",
                format!("version 1\nwritten 5\n{line}\nend\n").as_bytes(),
            );
            assert!(f.damaged(), "{line:?}");
            assert!(f.ignored.is_empty(), "{line:?}: {:?}", f.ignored);
            assert_eq!(f.problems.len(), 1, "{line:?}: {:?}", f.problems);
            assert!(
                f.problems[0].starts_with(said),
                "{line:?}: {:?}",
                f.problems
            );
        }
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
                assert!(t.nodes().is_empty(), "nothing of another version is used");
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
}
