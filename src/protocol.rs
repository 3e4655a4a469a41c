//! The wire protocol between vmwatch-node and vmwatch-master (docs/protocol.md).
//!
//! A message is two ZeroMQ frames: a UTF-8 text payload and the lowercase hex
//! HMAC-SHA256 of exactly those payload bytes under the shared secret. The
//! payload's first line is a header (version, type, node id, node instance,
//! sequence number, send time); each following line is one record of
//! `key=value` fields with percent-encoded values. The MAC covers every byte of
//! the payload, and the payload has exactly one valid spelling per message, so
//! nothing a receiver acts on is unauthenticated.
//!
//! Why one file: the encoder and the decoder of one format stay side by
//! side, so the canonical spelling the MAC depends on cannot drift between
//! them (the doc's test vector checks both).

use hmac::{Hmac, Mac};

use crate::vocab::{Detail, EventKind, Reason, State};
use sha2::Sha256;
use std::fmt;
use std::ops::Deref;

/// Protocol version carried in every header (`vmwatch/1`).
pub const VERSION: u32 = 1;
/// The first word of every payload, `vmwatch/VERSION`.
const VERSION_WORD: &str = "vmwatch/1";
/// Largest payload frame a node sends and a master accepts, in bytes.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Length of the MAC frame: hex of a 32-byte HMAC-SHA256.
pub const MAC_HEX_LEN: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// Who sent a message and when; authenticated with the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The node's `node_id` from its configuration.
    pub node: String,
    /// Random 64-bit id chosen when the node process starts.
    pub instance: u64,
    /// Starts at 1 for each instance and grows by one per message sent.
    pub seq: u64,
    /// Sender's clock when the message was signed, ms since the Unix epoch.
    pub ts_ms: u64,
    /// The libvirt host UUID of the node (`host=`, optional: older nodes do
    /// not send it), so the master can tell a re-added host from a clone.
    pub host: Option<String>,
}

/// A domain's identity as libvirt reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainId {
    pub uuid: String,
    pub name: String,
}

/// One lifecycle or reboot event, in the order libvirt delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub domain: DomainId,
    /// What happened (docs/protocol.md, "Vocabulary").
    pub event: EventKind,
    /// libvirt's detail for the event (`booted`, `destroyed`, ...), `-` for
    /// a reboot.
    pub detail: Detail,
    /// When the node's callback ran, ms since the Unix epoch.
    pub time_ms: u64,
    /// For `reboot`: how many reboots of this domain the sending node
    /// instance has seen, this one included (`reboots=`; absent from older
    /// nodes). Lets the master tell a reboot it already has from a new one.
    /// New nodes do not send it (they send `rebootid`).
    pub reboots: Option<u64>,
    /// The domain's reboot id on the sending node (`rebootid=`; absent from
    /// older nodes): on `reboot`, the id of this reboot; on any other
    /// event, of the domain's last reboot (0: none). It survives the node's
    /// restarts, so (node, uuid, rebootid) names one reboot for ever
    /// (docs/protocol.md, "Reboots").
    pub rebootid: Option<u64>,
}

/// A domain's state in a snapshot: libvirt's virDomainGetState, as names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainState {
    pub domain: DomainId,
    pub state: State,
    pub reason: Reason,
    /// How many reboots of this domain the sending node instance has seen
    /// (`reboots=`; absent from older nodes): a master that counted fewer
    /// missed some and delivers one (docs/protocol.md, "Reboots").
    pub reboots: Option<u64>,
    /// The id of the domain's last reboot on the sending node, 0 for none
    /// (`rebootid=`; absent from older nodes, always sent by newer ones).
    pub rebootid: Option<u64>,
}

/// Activity of one domain over a stats interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatSample {
    pub domain: DomainId,
    /// Whether the domain was running at both ends of the interval and its
    /// counters did not reset in between: only then are the deltas meaningful.
    pub whole: bool,
    /// Packets the guest sent (sum of net.N.tx.pkts) during the interval.
    pub tx_pkts: u64,
    /// Disk write requests (sum of block.N.wr.reqs) during the interval.
    pub wr_reqs: u64,
}

/// What a message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Lifecycle and reboot events, oldest first.
    Events(Vec<Event>),
    /// Part `part` (1-based) of `parts` of full snapshot `id`: together the
    /// parts list every domain the node has; a domain not listed is gone.
    Snapshot {
        id: u64,
        part: u32,
        parts: u32,
        domains: Vec<DomainState>,
    },
    /// Per-domain activity over the last `interval_ms`.
    Stats {
        interval_ms: u64,
        samples: Vec<StatSample>,
    },
    /// The node is alive and has nothing else to say.
    Heartbeat,
}

impl Body {
    /// The type word in the header.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Events(_) => "event",
            Body::Snapshot { .. } => "snapshot",
            Body::Stats { .. } => "stats",
            Body::Heartbeat => "heartbeat",
        }
    }
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub body: Body,
}

/// Why a received message was rejected before any of it was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Not exactly two frames (checked before the MAC: anyone can move it).
    Frames(usize),
    /// Payload over [`MAX_PAYLOAD`].
    TooLarge(usize),
    /// The header names a protocol version we do not speak.
    Version(String),
    /// The MAC frame is not 64 hex digits, or does not match.
    BadMac,
    /// Authenticated, but not a well-formed message.
    Malformed(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Frames(n) => write!(f, "expected 2 frames, got {n}"),
            WireError::TooLarge(n) => {
                write!(f, "payload of {n} bytes exceeds the {MAX_PAYLOAD}-byte limit")
            }
            WireError::Version(v) => write!(
                f,
                "unsupported protocol `{v}` (this master speaks vmwatch/{VERSION}); upgrade the older side"
            ),
            WireError::BadMac => write!(
                f,
                "MAC does not match: the node's secret differs from the master's, or the message was altered"
            ),
            WireError::Malformed(why) => write!(f, "malformed message: {why}"),
        }
    }
}

impl std::error::Error for WireError {}

use crate::kvline::{short, Fields, Line};

/// Encodes the payload frame of a message.
pub fn encode_payload(msg: &Message) -> String {
    let h = &msg.header;
    let mut out = String::with_capacity(256);
    let mut head = Line::new(&mut out)
        .word(VERSION_WORD)
        .word(msg.body.kind())
        .field("node", &h.node)
        .field("inst", format!("{:016x}", h.instance))
        .field("seq", h.seq)
        .field("ts", h.ts_ms)
        .opt("host", h.host.as_deref());
    match &msg.body {
        Body::Snapshot {
            id, part, parts, ..
        } => {
            head = head
                .field("snap", id)
                .field("part", part)
                .field("parts", parts);
        }
        Body::Stats { interval_ms, .. } => head = head.field("interval", interval_ms),
        _ => {}
    }
    head.end();
    encode_records(&msg.body, &mut out);
    out
}

/// Appends the record lines of a body.
fn encode_records(body: &Body, out: &mut String) {
    match body {
        Body::Events(events) => {
            for e in events {
                encode_event(e, out);
            }
        }
        Body::Snapshot { domains, .. } => {
            for d in domains {
                encode_domain_state(d, out);
            }
        }
        Body::Stats { samples, .. } => {
            for s in samples {
                encode_stat(s, out);
            }
        }
        Body::Heartbeat => {}
    }
}

/// Starts a record line: every record begins with the domain it is about,
/// as [`record_domain`] reads it back.
fn record<'a>(out: &'a mut String, domain: &DomainId) -> Line<'a> {
    Line::new(out)
        .field("uuid", &domain.uuid)
        .field("name", &domain.name)
}

/// The domain a record is about, as [`record`] wrote it.
fn record_domain(f: &Fields) -> Result<DomainId, String> {
    let uuid = f.get("uuid")?;
    if !is_uuid(uuid) {
        return Err(format!("`{}` is not a UUID", short(uuid)));
    }
    Ok(DomainId {
        uuid: uuid.to_string(),
        name: f.get("name")?.to_string(),
    })
}

/// One event record line.
pub fn encode_event(e: &Event, out: &mut String) {
    record(out, &e.domain)
        .field("event", e.event)
        .field("detail", e.detail)
        .field("time", e.time_ms)
        .opt("reboots", e.reboots)
        .opt("rebootid", e.rebootid)
        .end();
}

/// One snapshot record line.
pub fn encode_domain_state(d: &DomainState, out: &mut String) {
    record(out, &d.domain)
        .field("state", d.state)
        .field("reason", d.reason)
        .opt("reboots", d.reboots)
        .opt("rebootid", d.rebootid)
        .end();
}

/// One stats record line.
pub fn encode_stat(s: &StatSample, out: &mut String) {
    let whole = if s.whole { "yes" } else { "no" };
    record(out, &s.domain)
        .field("whole", whole)
        .field("txpkts", s.tx_pkts)
        .field("wrreqs", s.wr_reqs)
        .end();
}

/// Lowercase hex digits' values; 0xff for every other byte.
const HEX: [u8; 256] = {
    let mut t = [0xff; 256];
    let mut i = 0;
    while i < 16 {
        t[b"0123456789abcdef"[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// The shared secret, keyed once: HMAC-SHA256's key schedule (two of the
/// five SHA-256 blocks a short message costs) is computed when the key is
/// made, not for every message signed or checked. Each message starts from
/// a copy of the keyed state. The daemons make one when they start (the
/// node's sender, the master's receiver and ZAP handler) and keep it.
#[derive(Clone)]
pub struct MacKey(HmacSha256);

impl MacKey {
    /// Keys HMAC-SHA256 with the shared secret: once per daemon.
    pub fn new(secret: &[u8]) -> MacKey {
        MacKey(HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length"))
    }

    /// The MAC frame for a payload: lowercase hex HMAC-SHA256.
    pub fn sign(&self, payload: &[u8]) -> String {
        let mut mac = self.0.clone();
        mac.update(payload);
        let tag = mac.finalize().into_bytes();
        let mut hex = String::with_capacity(MAC_HEX_LEN);
        for b in tag {
            hex.push(char::from(b"0123456789abcdef"[(b >> 4) as usize]));
            hex.push(char::from(b"0123456789abcdef"[(b & 15) as usize]));
        }
        hex
    }

    /// Both frames of a message, ready to send: the payload and its MAC.
    pub fn encode(&self, msg: &Message) -> [Vec<u8>; 2] {
        let payload = encode_payload(msg);
        let mac = self.sign(payload.as_bytes());
        [payload.into_bytes(), mac.into_bytes()]
    }

    /// Checks frames, size and MAC (in constant time) without reading a
    /// byte of the payload, then the version, then parses. Only `frames`,
    /// `oversized` and `bad_mac` can be provoked without the secret.
    pub fn decode<F: Deref<Target = [u8]>>(&self, frames: &[F]) -> Result<Message, WireError> {
        if frames.len() != 2 {
            return Err(WireError::Frames(frames.len()));
        }
        let (payload, mac_hex) = (&*frames[0], &*frames[1]);
        if payload.len() > MAX_PAYLOAD {
            return Err(WireError::TooLarge(payload.len()));
        }
        self.verify(payload, mac_hex)?;
        check_version(payload)?;
        parse_payload(payload)
    }

    /// Checks that `mac_hex` is the lowercase hex MAC of `payload`, in
    /// constant time (also the handshake credential's check, src/handshake.rs).
    pub fn verify(&self, payload: &[u8], mac_hex: &[u8]) -> Result<(), WireError> {
        if mac_hex.len() != MAC_HEX_LEN {
            return Err(WireError::BadMac);
        }
        let mut tag = [0u8; 32];
        // Any byte that is not a lowercase hex digit sets a high bit.
        let mut bad = 0u8;
        for (t, pair) in tag.iter_mut().zip(mac_hex.chunks_exact(2)) {
            let (h, l) = (HEX[pair[0] as usize], HEX[pair[1] as usize]);
            bad |= h | l;
            *t = h << 4 | (l & 15);
        }
        if bad > 15 {
            return Err(WireError::BadMac);
        }
        let mut mac = self.0.clone();
        mac.update(payload);
        mac.verify_slice(&tag).map_err(|_| WireError::BadMac)
    }
}

/// [`MacKey::sign`] with a key made for this one payload (tests, tools).
pub fn sign(secret: &[u8], payload: &[u8]) -> String {
    MacKey::new(secret).sign(payload)
}

/// [`MacKey::encode`] with a key made for this one message (tests, tools;
/// the node keeps one [`MacKey`]).
pub fn encode(secret: &[u8], msg: &Message) -> [Vec<u8>; 2] {
    MacKey::new(secret).encode(msg)
}

/// [`MacKey::decode`] with a key made for this one message.
pub fn decode<F: Deref<Target = [u8]>>(secret: &[u8], frames: &[F]) -> Result<Message, WireError> {
    MacKey::new(secret).decode(frames)
}

fn check_version(payload: &[u8]) -> Result<(), WireError> {
    let word_end = payload
        .iter()
        .position(|&b| b == b' ' || b == b'\n')
        .unwrap_or(payload.len());
    let word = &payload[..word_end.min(32)];
    if word == VERSION_WORD.as_bytes() {
        Ok(())
    } else if word.starts_with(b"vmwatch/") {
        Err(WireError::Version(
            String::from_utf8_lossy(word).into_owned(),
        ))
    } else {
        Err(WireError::Malformed(
            "payload does not start with `vmwatch/`".into(),
        ))
    }
}

/// A lowercase 8-4-4-4-12 hex UUID, as virDomainGetUUIDString writes it.
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}

/// Checks a node id: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn check_node_id(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 64 {
        return Err("must be 1 to 64 characters".into());
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(format!("`{}` may hold only A-Z a-z 0-9 . _ -", short(s)));
    }
    Ok(())
}

fn parse_payload(payload: &[u8]) -> Result<Message, WireError> {
    let bad = WireError::Malformed;
    let text = std::str::from_utf8(payload).map_err(|_| bad("payload is not UTF-8".into()))?;
    let body_text = text
        .strip_suffix('\n')
        .ok_or_else(|| bad("payload does not end with a newline".into()))?;
    let mut lines = body_text.split('\n');
    let first = lines.next().unwrap_or("");
    let mut words = first.splitn(3, ' ');
    let _version = words.next();
    let kind = words
        .next()
        .ok_or_else(|| bad("header has no type".into()))?;
    let head = Fields::parse(
        words
            .next()
            .ok_or_else(|| bad("header has no fields".into()))?,
    )
    .map_err(bad)?;
    let node = head.get("node").map_err(bad)?;
    check_node_id(node).map_err(|e| bad(format!("node id {e}")))?;
    let inst = head.get("inst").map_err(bad)?;
    if inst.len() != 16
        || !inst
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(bad("`inst` is not 16 lowercase hex digits".into()));
    }
    let header = Header {
        node: node.to_string(),
        instance: u64::from_str_radix(inst, 16).map_err(|e| bad(e.to_string()))?,
        seq: head.num("seq").map_err(bad)?,
        ts_ms: head.num("ts").map_err(bad)?,
        host: match head.get("host") {
            Ok(h) if is_uuid(h) => Some(h.to_string()),
            Ok(h) => {
                return Err(bad(format!(
                    "`host` is `{}`, not a lowercase UUID",
                    short(h)
                )))
            }
            Err(_) => None,
        },
    };
    if header.seq == 0 {
        return Err(bad("`seq` is 0; sequence numbers start at 1".into()));
    }
    let records: Vec<Fields> = lines
        .map(Fields::parse)
        .collect::<Result<_, _>>()
        .map_err(bad)?;
    let body = match kind {
        "event" => Body::Events(
            records
                .iter()
                .map(|f| {
                    let event = f.word("event", EventKind::parse)?;
                    let reboots = f.opt_num("reboots")?;
                    if reboots.is_some() && event != EventKind::Reboot {
                        return Err(format!("`reboots` on a `{event}` event"));
                    }
                    Ok(Event {
                        domain: record_domain(f)?,
                        detail: f.word("detail", |d| Detail::parse(event, d))?,
                        event,
                        time_ms: f.num("time")?,
                        reboots,
                        rebootid: f.opt_num("rebootid")?,
                    })
                })
                .collect::<Result<_, String>>()
                .map_err(bad)?,
        ),
        "snapshot" => {
            let (part, parts) = (
                head.num("part").map_err(bad)?,
                head.num("parts").map_err(bad)?,
            );
            if part == 0 || part > parts || parts > u32::MAX as u64 {
                return Err(bad(format!("snapshot part {part} of {parts}")));
            }
            Body::Snapshot {
                id: head.num("snap").map_err(bad)?,
                part: part as u32,
                parts: parts as u32,
                domains: records
                    .iter()
                    .map(|f| {
                        let state = f.word("state", State::parse)?;
                        Ok(DomainState {
                            domain: record_domain(f)?,
                            reason: f.word("reason", |r| Reason::parse(state, r))?,
                            state,
                            reboots: f.opt_num("reboots")?,
                            rebootid: f.opt_num("rebootid")?,
                        })
                    })
                    .collect::<Result<_, String>>()
                    .map_err(bad)?,
            }
        }
        "stats" => Body::Stats {
            interval_ms: head.num("interval").map_err(bad)?,
            samples: records
                .iter()
                .map(|f| {
                    Ok(StatSample {
                        domain: record_domain(f)?,
                        whole: match f.get("whole")? {
                            "yes" => true,
                            "no" => false,
                            other => return Err(format!("`whole` is `{}`", short(other))),
                        },
                        tx_pkts: f.num("txpkts")?,
                        wr_reqs: f.num("wrreqs")?,
                    })
                })
                .collect::<Result<_, String>>()
                .map_err(bad)?,
        },
        "heartbeat" => {
            if !records.is_empty() {
                return Err(bad("heartbeat carries records".into()));
            }
            Body::Heartbeat
        }
        other => return Err(bad(format!("unknown message type `{}`", short(other)))),
    };
    Ok(Message { header, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            node: "3".into(),
            instance: 0x0123_4567_89ab_cdef,
            seq: 42,
            ts_ms: 1_763_900_000_123,
            host: None,
        }
    }

    fn dom(name: &str) -> DomainId {
        DomainId {
            uuid: "4b3b2f6e-1c9a-4f8e-9d6a-2a7c1e5b9f00".into(),
            name: name.into(),
        }
    }

    fn roundtrip(body: Body) {
        let msg = Message {
            header: header(),
            body,
        };
        let frames = encode(b"SECRET123", &msg);
        assert_eq!(decode(b"SECRET123", frames.as_ref()).unwrap(), msg);
    }

    #[test]
    fn the_version_word_names_this_version() {
        assert_eq!(VERSION_WORD, format!("vmwatch/{VERSION}"));
    }

    #[test]
    fn every_type_roundtrips() {
        roundtrip(Body::Heartbeat);
        roundtrip(Body::Events(vec![Event {
            domain: dom("web 1/ü%=x\n"),
            event: EventKind::Started,
            detail: Detail::parse(EventKind::Started, "booted").unwrap(),
            time_ms: 5,
            reboots: None,
            rebootid: None,
        }]));
        roundtrip(Body::Events(vec![Event {
            domain: dom("r"),
            event: EventKind::Reboot,
            detail: Detail::NONE,
            time_ms: 6,
            reboots: Some(3),
            rebootid: Some(1795456001),
        }]));
        roundtrip(Body::Snapshot {
            id: 7,
            part: 2,
            parts: 3,
            domains: vec![DomainState {
                domain: dom("a"),
                state: State::Running,
                reason: Reason::parse(State::Running, "booted").unwrap(),
                reboots: Some(2),
                rebootid: Some(0),
            }],
        });
        roundtrip(Body::Stats {
            interval_ms: 600_000,
            samples: vec![StatSample {
                domain: dom("b"),
                whole: true,
                tx_pkts: 0,
                wr_reqs: u64::MAX,
            }],
        });
    }

    #[test]
    fn wrong_secret_altered_payload_and_bad_mac_frames_are_rejected() {
        let msg = Message {
            header: header(),
            body: Body::Heartbeat,
        };
        let frames = encode(b"SECRET123", &msg).to_vec();
        assert_eq!(decode(b"OTHER", &frames), Err(WireError::BadMac));
        let mut altered = frames.clone();
        altered[0] = String::from_utf8(altered[0].clone())
            .unwrap()
            .replace("seq=42", "seq=43")
            .into_bytes();
        assert_eq!(decode(b"SECRET123", &altered), Err(WireError::BadMac));
        let mut upper = frames.clone();
        upper[1] = String::from_utf8(upper[1].clone())
            .unwrap()
            .to_uppercase()
            .into_bytes();
        assert_eq!(decode(b"SECRET123", &upper), Err(WireError::BadMac));
        assert_eq!(
            decode(b"SECRET123", &frames[..1]),
            Err(WireError::Frames(1))
        );
    }

    #[test]
    fn only_frames_size_and_mac_are_judged_without_the_secret() {
        let big = vec![b'x'; MAX_PAYLOAD + 1];
        assert_eq!(
            decode(b"k", &[big, vec![b'0'; 64]]),
            Err(WireError::TooLarge(MAX_PAYLOAD + 1))
        );
        // Unsigned, a newer version, garbage or control bytes are all just
        // a bad MAC: nothing of the payload is read before the MAC passes.
        for payload in [
            &b"vmwatch/2 heartbeat node=1\n"[..],
            b"\x1b[2Jvmwatch/9\r\n",
            b"garbage",
        ] {
            assert_eq!(
                decode(b"k", &[payload.to_vec(), vec![b'0'; 64]]),
                Err(WireError::BadMac)
            );
        }
        let v2 = signed("vmwatch/2 heartbeat node=1\n");
        assert!(matches!(decode(b"k", &v2), Err(WireError::Version(_))));
    }

    /// Both frames of `payload`, signed with the secret `k`.
    fn signed(payload: &str) -> Vec<Vec<u8>> {
        let mac = sign(b"k", payload.as_bytes());
        vec![payload.as_bytes().to_vec(), mac.into_bytes()]
    }

    /// `payload`, authenticated, is refused as malformed (not a panic).
    fn assert_malformed(payload: &str) {
        match decode(b"k", &signed(payload)) {
            Err(WireError::Malformed(_)) => {}
            other => panic!("{payload:?} gave {other:?}"),
        }
    }

    #[test]
    fn values_outside_the_vocabulary_are_malformed() {
        let head = "vmwatch/1 event node=1 inst=0123456789abcdef seq=1 ts=1\n";
        let u = "uuid=4b3b2f6e-1c9a-4f8e-9d6a-2a7c1e5b9f00 name=a";
        let cases = [
            format!("{head}{u} event=exploded detail=- time=1\n"),
            format!("{head}{u} event=started detail=destroyed time=1\n"),
            format!("{head}{u} event=reboot detail=booted time=1\n"),
            format!("{head}{u} event=started detail=booted time=+5\n"),
            format!("{head}{u} event=started detail=booted time=1 reboots=1\n"),
            "vmwatch/1 heartbeat node=1 inst=0123456789abcdef seq=0 ts=1\n".to_string(),
            "vmwatch/1 heartbeat node=1 inst=0123456789abcdef seq=+5 ts=1\n".to_string(),
            "vmwatch/1 snapshot node=1 inst=0123456789abcdef seq=1 ts=1 snap=1 part=1 parts=1\nuuid=4b3b2f6e-1c9a-4f8e-9d6a-2a7c1e5b9f00 name=a state=flying reason=booted\n".to_string(),
            "vmwatch/1 snapshot node=1 inst=0123456789abcdef seq=1 ts=1 snap=1 part=1 parts=1\nuuid=4b3b2f6e-1c9a-4f8e-9d6a-2a7c1e5b9f00 name=a state=undefined reason=booted\n".to_string(),
            "vmwatch/1 snapshot node=1 inst=0123456789abcdef seq=1 ts=1 snap=1 part=1 parts=1\nuuid=4b3b2f6e-1c9a-4f8e-9d6a-2a7c1e5b9f00 name=a state=running reason=destroyed\n".to_string(),
            "vmwatch/1 stats node=1 inst=0123456789abcdef seq=1 ts=1 interval=+5\n".to_string(),
        ];
        for case in &cases {
            assert_malformed(case);
        }
        // Newer codes stay parseable; unknown keys are ignored.
        let ok = format!("{head}{u} event=event-12 detail=detail-3 time=1 colour=blue\n");
        assert!(decode(b"k", &signed(&ok)).is_ok());
    }

    #[test]
    fn authenticated_garbage_is_malformed_not_a_panic() {
        let cases: &[&str] = &[
            "vmwatch/1 heartbeat node=1 inst=0123456789abcdef seq=1 ts=1",
            "vmwatch/1 heartbeat node=1 inst=0123456789abcdef seq=01 ts=1\n",
            "vmwatch/1 heartbeat node=1 inst=0123456789ABCDEF seq=1 ts=1\n",
            "vmwatch/1 heartbeat node=1 node=2 inst=0123456789abcdef seq=1 ts=1\n",
            "vmwatch/1 bogus node=1 inst=0123456789abcdef seq=1 ts=1\n",
            "vmwatch/1 event node=1 inst=0123456789abcdef seq=1 ts=1\nuuid=x name=a event=b detail=c time=1\n",
            "vmwatch/1 event node=1 inst=0123456789abcdef seq=1 ts=1\n\n",
            "vmwatch/1 snapshot node=1 inst=0123456789abcdef seq=1 ts=1 snap=1 part=3 parts=2\n",
            "vmwatch/1 heartbeat node=a%20b inst=0123456789abcdef seq=1 ts=1\n",
            "vmwatch/1 heartbeat node=1 inst=0123456789abcdef seq=99999999999999999999 ts=1\n",
            "vmwatch/1 event node=1 inst=0123456789abcdef seq=1 ts=1\nuuid=4b3b2f6e-1c9a-4f8e-9d6a-2a7c1e5b9f00 name=a%2 event=b detail=c time=1\n",
        ];
        for case in cases {
            assert_malformed(case);
        }
    }

    /// The code block after `<!-- tag -->` in docs/protocol.md.
    fn block(tag: &str) -> String {
        crate::testing::protocol_doc_block(tag)
    }

    /// The test vector in docs/protocol.md must match this implementation, so
    /// the document a client author reads cannot drift from the code.
    #[test]
    fn documented_test_vector_verifies() {
        let secret = block("vector-secret");
        let secret = secret.trim_end_matches('\n');
        let payload = block("vector-payload");
        let mac = block("vector-mac");
        let mac = mac.trim_end_matches('\n');
        assert_eq!(sign(secret.as_bytes(), payload.as_bytes()), mac);
        let frames = vec![payload.clone().into_bytes(), mac.as_bytes().to_vec()];
        let msg = decode(secret.as_bytes(), &frames).expect("documented vector decodes");
        assert_eq!(msg.header.node, "7");
        assert_eq!(msg.header.host, None);
        assert_eq!(encode_payload(&msg), payload, "encoding is canonical");
        // The vector with `host=`.
        let payload = block("vector-host-payload");
        let mac = block("vector-host-mac");
        let mac = mac.trim_end_matches('\n');
        assert_eq!(sign(secret.as_bytes(), payload.as_bytes()), mac);
        let frames = vec![payload.clone().into_bytes(), mac.as_bytes().to_vec()];
        let msg = decode(secret.as_bytes(), &frames).expect("documented host vector decodes");
        assert_eq!(
            msg.header.host.as_deref(),
            Some("5a37d478-d7ef-4d4e-85c3-f160891d662a")
        );
        assert_eq!(encode_payload(&msg), payload, "encoding is canonical");
    }

    /// One key, made once, signs message after message with the MACs the
    /// document gives (each starts from the keyed state, none from the one
    /// before), in the frames a key made per message gives.
    #[test]
    fn a_key_made_once_signs_every_message_as_documented() {
        let secret = block("vector-secret");
        let secret = secret.trim_end_matches('\n').as_bytes();
        let key = MacKey::new(secret);
        for _ in 0..2 {
            for (payload, mac) in [
                ("vector-payload", "vector-mac"),
                ("vector-host-payload", "vector-host-mac"),
            ] {
                let (payload, mac) = (block(payload), block(mac));
                let msg = key
                    .decode(&[payload.as_bytes(), mac.trim_end().as_bytes()])
                    .unwrap();
                let frames = key.encode(&msg);
                assert_eq!(frames[0], payload.as_bytes());
                assert_eq!(frames[1], mac.trim_end().as_bytes());
                assert_eq!(frames, encode(secret, &msg));
            }
        }
    }

    #[test]
    fn a_host_that_is_not_a_uuid_makes_the_message_malformed() {
        let key = MacKey::new(b"k");
        for bad in [
            "host=x",
            "host=5A37D478-D7EF-4D4E-85C3-F160891D662A",
            "host=-",
        ] {
            let payload =
                format!("vmwatch/1 heartbeat node=1 inst=0123456789abcdef seq=1 ts=1 {bad}\n");
            let frames = vec![
                payload.clone().into_bytes(),
                sign(b"k", payload.as_bytes()).into_bytes(),
            ];
            assert!(
                matches!(key.decode(&frames), Err(WireError::Malformed(_))),
                "{bad}"
            );
        }
    }
}
