//! The node's status file (docs/node-status.md): what check_vmwatch and
//! `vmwatch-node --status` need to know about a running node, written
//! atomically every `status_interval` seconds and once more when it stops.
//!
//! The threads report into one process-wide [`STATUS`] of atomics, so the
//! hooks in the event, stats and sender code are one call each and never
//! block; the `status` thread turns it into text. The file holds no secret
//! and is written mode 0644, so a monitoring user can read it.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use super::messages::Outgoing;
use crate::atomic_file::{head, write_atomic, Rewritten};
use crate::clock::{mono_ms, now_ms};
use crate::kvline::escaped;
use crate::service::Shutdown;

/// Version of the format, first line after the comment.
pub const FORMAT: u32 = 1;
/// The file's first line, after `# ` and before the pid.
const TITLE: &str = "vmwatch-node status (format: docs/node-status.md)";

/// The live facts, updated by the node's threads.
pub struct NodeStatus {
    libvirt_up: AtomicBool,
    libvirt_since: AtomicU64,
    master_up: AtomicBool,
    master_since: AtomicU64,
    /// Items producers put in the channel that the sender has not taken.
    channel: AtomicI64,
    /// Messages the sender holds, waiting for the master.
    backlog: AtomicU64,
    last_send_ms: AtomicU64,
    sent: AtomicU64,
    domains: Mutex<BTreeSet<String>>,
    /// A step of this node's wall clock ([`super::clock_step`]): total ms
    /// and since when (0: none).
    clock_step: AtomicI64,
    clock_since: AtomicU64,
}

impl Default for NodeStatus {
    fn default() -> NodeStatus {
        NodeStatus::new()
    }
}

/// The node process's status.
pub static STATUS: NodeStatus = NodeStatus::new();

impl NodeStatus {
    pub const fn new() -> NodeStatus {
        NodeStatus {
            libvirt_up: AtomicBool::new(false),
            libvirt_since: AtomicU64::new(0),
            master_up: AtomicBool::new(false),
            master_since: AtomicU64::new(0),
            channel: AtomicI64::new(0),
            backlog: AtomicU64::new(0),
            last_send_ms: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            domains: Mutex::new(BTreeSet::new()),
            clock_step: AtomicI64::new(0),
            clock_since: AtomicU64::new(0),
        }
    }

    fn flip(flag: &AtomicBool, since: &AtomicU64, up: bool) {
        if flag.swap(up, Relaxed) != up || since.load(Relaxed) == 0 {
            since.store(now_ms(), Relaxed);
        }
    }

    /// The libvirt connection opened (`true`) or was lost.
    pub fn libvirt(&self, up: bool) {
        Self::flip(&self.libvirt_up, &self.libvirt_since, up);
    }

    /// The ZeroMQ connection to the master came up or went down.
    pub fn master(&self, up: bool) {
        Self::flip(&self.master_up, &self.master_since, up);
    }

    /// A producer queued one item for the sender.
    pub fn queued(&self) {
        self.channel.fetch_add(1, Relaxed);
    }

    /// The sender took `item` from the channel: one less queued, and the
    /// set of watched domains follows snapshots and events.
    pub fn took(&self, item: &Outgoing) {
        self.channel.fetch_sub(1, Relaxed);
        let mut d = self.domains.lock().unwrap_or_else(|p| p.into_inner());
        match item {
            Outgoing::Snapshot(list) => {
                *d = list.iter().map(|s| s.domain.uuid.clone()).collect();
            }
            Outgoing::Event(ev) if ev.event == crate::vocab::EventKind::Undefined => {
                d.remove(&ev.domain.uuid);
            }
            Outgoing::Event(ev) => {
                d.insert(ev.domain.uuid.clone());
            }
            Outgoing::Stats { .. } => {}
        }
    }

    /// Items in the channel now (queued by producers, not yet taken).
    pub fn in_channel(&self) -> usize {
        self.channel.load(Relaxed).max(0) as usize
    }

    /// How many messages the sender holds now.
    pub fn backlog(&self, n: usize) {
        self.backlog.store(n as u64, Relaxed);
    }

    /// What the clock watch reports now (`None`: the clock did not step).
    pub fn clock(&self, step: Option<(i64, u64)>) {
        let (ms, since) = step.unwrap_or((0, 0));
        self.clock_step.store(ms, Relaxed);
        self.clock_since.store(since, Relaxed);
    }

    /// A message was handed to a connected master.
    pub fn sent(&self) {
        self.sent.fetch_add(1, Relaxed);
        self.last_send_ms.store(now_ms(), Relaxed);
    }

    /// Renders the file; `stopped` is the reason on the last write.
    pub fn render(&self, info: &Info, now_ms: u64, stopped: Option<&str>) -> String {
        let mut out = String::new();
        head(&mut out, TITLE, FORMAT, now_ms, info.started_ms);
        self.write_facts(info, now_ms, stopped, &mut out)
            .expect("a String takes any text");
        out.push_str("end\n");
        out
    }

    /// The lines between the head and `end`.
    fn write_facts(
        &self,
        info: &Info,
        now_ms: u64,
        stopped: Option<&str>,
        out: &mut String,
    ) -> std::fmt::Result {
        for (key, value) in [
            ("node_id", &info.node_id),
            ("connect", &info.connect),
            ("uri", &info.uri),
        ] {
            writeln!(out, "{key} {}", escaped(value))?;
        }
        let updown = |b: &AtomicBool| if b.load(Relaxed) { "up" } else { "down" };
        let libvirt_since = self.libvirt_since.load(Relaxed);
        writeln!(out, "libvirt {} {libvirt_since}", updown(&self.libvirt_up))?;
        let master_since = self.master_since.load(Relaxed).max(info.started_ms);
        writeln!(out, "master {} {master_since}", updown(&self.master_up))?;
        let queue = self.channel.load(Relaxed).max(0) as u64 + self.backlog.load(Relaxed);
        writeln!(out, "queue {queue}")?;
        writeln!(out, "last_send {}", self.last_send_ms.load(Relaxed))?;
        let domains = self.domains.lock().map(|d| d.len()).unwrap_or(0);
        writeln!(out, "domains {domains}")?;
        writeln!(out, "counter sent {}", self.sent.load(Relaxed))?;
        let step = self.clock_step.load(Relaxed);
        if step != 0 {
            writeln!(out, "clock {step} {}", self.clock_since.load(Relaxed))?;
        }
        if let Some(why) = stopped {
            writeln!(out, "stopped {now_ms} {}", escaped(why))?;
        }
        Ok(())
    }
}

/// What the file says about the node besides the live facts.
pub struct Info {
    pub node_id: String,
    pub connect: String,
    pub uri: String,
    pub started_ms: u64,
}

/// The `status` thread: writes the file every `every` until a stop.
pub fn run(path: String, every: Duration, info: Info, shutdown: &Shutdown) -> Info {
    let check = "check that its directory exists and is writable, or set status_file";
    // Every `status_interval`: a report, not flushed to the disk (the last
    // write, in write_final, is).
    let mut file = Rewritten::report("status file", &path, check);
    let mut clock = super::clock_step::ClockStep::new();
    while !shutdown.stopping() {
        let now = now_ms();
        STATUS.clock(clock.look(now, mono_ms()));
        file.write(&STATUS.render(&info, now, None));
        shutdown.nap(every);
    }
    info
}

/// The last write, after every thread stopped: says why the node stopped.
pub fn write_final(path: &str, info: &Info, why: &str) {
    if let Err(e) = write_atomic(Path::new(path), &STATUS.render(info, now_ms(), Some(why))) {
        log::error!("cannot write status file {path}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{DomainId, DomainState, Event};

    fn ev(uuid: &str, event: &str) -> Outgoing {
        Outgoing::Event(Event {
            domain: DomainId {
                uuid: uuid.into(),
                name: "n".into(),
            },
            event: crate::vocab::EventKind::parse(event).unwrap(),
            detail: crate::vocab::Detail::NONE,
            time_ms: 0,
            reboots: None,
            rebootid: None,
        })
    }

    #[test]
    fn the_file_follows_the_threads_and_the_check_reads_it() {
        let s = NodeStatus::new();
        let info = Info {
            node_id: "node 3".into(),
            connect: "tcp://m:1515".into(),
            uri: "test:///default".into(),
            started_ms: 1000,
        };
        s.libvirt(true);
        for _ in 0..3 {
            s.queued();
        }
        s.took(&Outgoing::Snapshot(vec![DomainState {
            domain: DomainId {
                uuid: "a".into(),
                name: "a".into(),
            },
            state: crate::vocab::State::Running,
            reason: crate::vocab::Reason::from_code(1, 1),
            reboots: None,
            rebootid: None,
        }]));
        s.took(&ev("b", "defined"));
        s.backlog(4);
        s.sent();
        let text = s.render(&info, now_ms(), None);
        assert!(text.contains("\nnode_id node%203\n"), "{text}");
        assert!(
            text.contains("\nqueue 5\n"),
            "1 in the channel + 4 held: {text}"
        );
        assert!(text.contains("\ndomains 2\n"), "{text}");
        assert!(text.contains("\nmaster down 1000\n"), "{text}");
        let f = crate::check::facts::node_facts(&text, "st", now_ms());
        assert_eq!(f.value("domains"), Some(2.0));
        assert!(f.problems[0]
            .1
            .starts_with("not connected to the master at tcp://m:1515"));
        s.took(&ev("b", "undefined"));
        s.master(true);
        let text = s.render(&info, now_ms(), Some("lost libvirt"));
        assert!(
            text.contains("\ndomains 1\n") && text.contains(" lost%20libvirt\nend\n"),
            "{text}"
        );
        let f = crate::check::facts::node_facts(&text, "st", now_ms());
        assert!(f.problems.is_empty(), "{:?}", f.problems);
        s.clock(Some((-3_600_000, 1000)));
        let text = s.render(&info, now_ms(), None);
        assert!(text.contains("\nclock -3600000 1000\n"), "{text}");
        let f = crate::check::facts::node_facts(&text, "st", now_ms());
        assert_eq!(
            f.problems,
            vec![(
                crate::check::facts::Level::Critical,
                "this node's clock stepped: it is now 1 h 0 min behind what it was (check NTP on this node)".to_string()
            )]
        );
    }
}
