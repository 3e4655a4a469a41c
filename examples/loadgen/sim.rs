//! One simulated node: its own node id, instance and sequence, and the
//! messages a real node sends, built and signed with the library's own
//! protocol code.

use vmwatch::node::pack::{snapshot_bodies, stats_bodies};
use vmwatch::protocol::{encode, Body, DomainId, DomainState, Event, Header, Message, StatSample};
use vmwatch::vocab::{Detail, EventKind, Reason, State};

/// A simulated vmwatch-node.
pub struct SimNode {
    pub index: u64,
    pub name: String,
    pub instance: u64,
    /// The sequence number of the next message.
    pub seq: u64,
    secret: Vec<u8>,
    snap_id: u64,
    /// Tells this run's marker domains from another run's.
    tag: u64,
    /// Domains and whether each is running.
    pub domains: Vec<(DomainId, bool)>,
}

/// A fixed 64-bit mix (splitmix64), so a run with the same seed simulates
/// the same instances: a second storm can be the same nodes going on.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The domain uuid of domain `j` of node `i`: random-looking, as libvirt's
/// are (keys sharing a long prefix would make every lookup slower than a
/// real cluster's), the same in every run, and unique in practice (120
/// bits of a bijective mix).
pub fn domain_uuid(i: u64, j: u64) -> String {
    let a = mix((i << 20) ^ j);
    let b = mix(a ^ 0x5bd1_e995);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | (b >> 48 & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

impl SimNode {
    /// A fresh handshake credential of this node (one per connection).
    pub fn credential(&self) -> vmwatch::handshake::Credential {
        let key = vmwatch::protocol::MacKey::new(&self.secret);
        vmwatch::handshake::Credential::fresh(&key, &self.name)
    }

    /// Node `index` of a run: named `PREFIX-INDEX`, its instance derived
    /// from `seed`, `domains` domains of which four in five run, its
    /// sequence starting at `seq`.
    pub fn new(prefix: &str, index: u64, seed: u64, domains: u64, seq: u64, secret: &[u8]) -> Self {
        let name = format!("{prefix}-{index:04}");
        SimNode {
            index,
            instance: mix(seed ^ mix(index)) | 1,
            seq,
            secret: secret.to_vec(),
            snap_id: seq,
            tag: seed & 0xffff,
            domains: (0..domains)
                .map(|j| {
                    let id = DomainId {
                        uuid: domain_uuid(index, j),
                        name: format!("{prefix}{index}-vm{j}"),
                    };
                    (id, j % 5 != 4)
                })
                .collect(),
            name,
        }
    }

    /// Signs `body` as this node's next message.
    pub fn sign(&mut self, body: Body, ts_ms: u64) -> [Vec<u8>; 2] {
        let msg = Message {
            header: Header {
                node: self.name.clone(),
                instance: self.instance,
                seq: self.seq,
                ts_ms,
                host: None,
            },
            body,
        };
        self.seq += 1;
        encode(&self.secret, &msg)
    }

    pub fn heartbeat(&mut self, ts_ms: u64) -> [Vec<u8>; 2] {
        self.sign(Body::Heartbeat, ts_ms)
    }

    /// A whole snapshot, in as many parts as the real node's packing makes
    /// (100 domains fit one part of about 9 KB).
    pub fn snapshot(&mut self, ts_ms: u64) -> Vec<[Vec<u8>; 2]> {
        let domains = self
            .domains
            .iter()
            .map(|(id, running)| {
                let (state, reason) = if *running {
                    (State::Running, "booted")
                } else {
                    (State::Shutoff, "shutdown")
                };
                DomainState {
                    domain: id.clone(),
                    state,
                    reason: Reason::parse(state, reason).expect("a libvirt reason"),
                    reboots: None,
                    rebootid: None,
                }
            })
            .collect();
        self.snap_id += 1;
        snapshot_bodies(self.snap_id, domains)
            .into_iter()
            .map(|body| self.sign(body, ts_ms))
            .collect()
    }

    /// A lifecycle event of domain `j`: a running domain is paused, a
    /// paused or stopped one resumed or started; the node's view follows,
    /// so every event is a change the master reports.
    pub fn event(&mut self, j: usize, ts_ms: u64) -> [Vec<u8>; 2] {
        let j = j % self.domains.len();
        let (id, running) = &mut self.domains[j];
        let (kind, detail) = if *running {
            (EventKind::Suspended, "paused")
        } else {
            (EventKind::Started, "booted")
        };
        *running = !*running;
        let body = Body::Events(vec![Event {
            domain: id.clone(),
            event: kind,
            detail: Detail::parse(kind, detail).expect("a libvirt detail"),
            time_ms: ts_ms,
            reboots: None,
            rebootid: None,
        }]);
        self.sign(body, ts_ms)
    }

    /// The event that marks the end of this node's run: a domain of its
    /// own appears, running; the master logs it like any change.
    pub fn marker(&mut self, ts_ms: u64) -> [Vec<u8>; 2] {
        let body = Body::Events(vec![Event {
            domain: DomainId {
                uuid: format!("ffffffff-{:04x}-4fff-8fff-{:012x}", self.tag, self.index),
                name: format!("marker-{}", self.name),
            },
            event: EventKind::Started,
            detail: Detail::parse(EventKind::Started, "booted").expect("a libvirt detail"),
            time_ms: ts_ms,
            reboots: None,
            rebootid: None,
        }]);
        self.sign(body, ts_ms)
    }

    /// One stats sample of every running domain, all active, packed as the
    /// real node packs it.
    pub fn stats(&mut self, interval_ms: u64, ts_ms: u64) -> Vec<[Vec<u8>; 2]> {
        let samples = self
            .domains
            .iter()
            .filter(|(_, running)| *running)
            .map(|(id, _)| StatSample {
                domain: id.clone(),
                whole: true,
                tx_pkts: 10,
                wr_reqs: 3,
            })
            .collect();
        stats_bodies(interval_ms, samples)
            .into_iter()
            .map(|body| self.sign(body, ts_ms))
            .collect()
    }
}
