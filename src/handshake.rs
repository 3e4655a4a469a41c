//! The ZeroMQ handshake credential: only holders of the secret get past
//! the handshake (docs/protocol.md, "Handshake").
//!
//! The master's socket is a ZMTP PLAIN server; libzmq asks the master's ZAP
//! handler (src/master/admission/zap.rs) about every PLAIN HELLO before a single
//! message frame of that peer is read. The node's PLAIN username is a fresh
//! claim — `vmwatch-auth/1 node=ID ts=MS nonce=HEX32` — and its password is
//! the lowercase hex HMAC-SHA256 of the username under the shared secret
//! (the same MAC as a message's, over a text no payload can be: payloads
//! start with `vmwatch/`, usernames with `vmwatch-auth/`). The master
//! accepts a username only with a matching MAC (checked first, in constant
//! time), a `ts` within `max_clock_skew` of its clock and not before it
//! started, and a (`ts`, `nonce`) it has not accepted before: a credential
//! seen on the wire is worth nothing a second time.
//!
//! Why one-time: an eavesdropper who could replay a credential would get a
//! connection past the handshake, and libzmq buffers an unfinished
//! multipart message of an authenticated peer without bound.

use std::collections::BTreeSet;
use std::fmt;

use crate::protocol::{check_node_id, MacKey};

/// The first word of every credential's username.
pub const USER_WORD: &str = "vmwatch-auth/1";
/// The ZAP domain the master's socket asks about.
pub const ZAP_DOMAIN: &str = "vmwatch";
/// Most (`ts`, `nonce`) pairs the master remembers; past it the oldest is
/// forgotten and nothing as old is accepted any more (see [`NonceLedger`]).
pub const MAX_REMEMBERED: usize = 65_536;

/// A PLAIN username and password for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

impl Credential {
    /// The credential of `node` for a connection made at `ts_ms` with
    /// `nonce`.
    pub fn new(key: &MacKey, node: &str, ts_ms: u64, nonce: u128) -> Credential {
        let username = format!("{USER_WORD} node={node} ts={ts_ms} nonce={nonce:032x}");
        let password = key.sign(username.as_bytes());
        Credential { username, password }
    }

    /// Makes `s` offer this credential (PLAIN client); set before
    /// `connect`, which copies it.
    pub fn set_on(&self, s: &zmq::Socket) -> zmq::Result<()> {
        s.set_plain_username(Some(&self.username))?;
        s.set_plain_password(Some(&self.password))
    }

    /// A fresh credential: now, and 128 random bits from the kernel.
    pub fn fresh(key: &MacKey, node: &str) -> Credential {
        Credential::new(key, node, crate::clock::now_ms(), random_nonce())
    }
}

/// 128 bits from `/dev/urandom`; without it, time, pid and a counter (still
/// never the same twice in one process).
pub fn random_nonce() -> u128 {
    use std::io::Read;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let mut buf = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        if f.read_exact(&mut buf).is_ok() {
            return u128::from_ne_bytes(buf);
        }
    }
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    u128::from(crate::clock::now_ms()) << 64 | u128::from(std::process::id()) << 32 | u128::from(n)
}

/// What a valid credential claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub node: String,
    pub ts_ms: u64,
    pub nonce: u128,
}

/// Why the master refused a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The password is not the username's MAC (no secret, or another one).
    BadMac,
    /// The MAC matched but the username is not a credential.
    Malformed(String),
    /// `ts` is more than `max_clock_skew` behind the master's clock.
    Stale { ts_ms: u64, now_ms: u64 },
    /// `ts` is not after what the master can still tell apart from a replay
    /// (its start, or the oldest claim it had to forget).
    TooOld { ts_ms: u64, floor_ms: u64 },
    /// This credential was accepted before.
    Replay,
}

impl Denial {
    /// The counter's name (`--status`, logs).
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::BadMac => "bad_mac",
            Denial::Malformed(_) => "malformed",
            Denial::Stale { .. } => "stale",
            Denial::TooOld { .. } => "stale",
            Denial::Replay => "replay",
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Denial::BadMac => write!(
                f,
                "the handshake credential's MAC does not match (a peer without the secret, an old vmwatch-node, or another secret)"
            ),
            Denial::Malformed(why) => write!(f, "malformed handshake credential: {why}"),
            Denial::Stale { ts_ms, now_ms } => write!(
                f,
                "handshake credential made at {ts_ms} ms, {} s behind this host's clock (more than max_clock_skew: check NTP on the node and here)",
                ts_ms.abs_diff(*now_ms) / 1000
            ),
            Denial::TooOld { ts_ms, floor_ms } => write!(
                f,
                "handshake credential made at {ts_ms} ms, before {floor_ms} ms (the master's start): the node makes a fresh one"
            ),
            Denial::Replay => write!(f, "handshake credential used before (a replay)"),
        }
    }
}

/// Checks the MAC first, in constant time, then reads the username.
pub fn verify(key: &MacKey, username: &[u8], password: &[u8]) -> Result<Claim, Denial> {
    key.verify(username, password).map_err(|_| Denial::BadMac)?;
    let bad = Denial::Malformed;
    let text = std::str::from_utf8(username).map_err(|_| bad("not UTF-8".into()))?;
    let fields = text
        .strip_prefix(USER_WORD)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(|| bad(format!("does not start with `{USER_WORD} `")))?;
    let fields = crate::kvline::Fields::parse(fields).map_err(bad)?;
    let node = fields.get("node").map_err(bad)?;
    check_node_id(node).map_err(|e| bad(format!("node: {e}")))?;
    let ts_ms = fields.num("ts").map_err(bad)?;
    let nonce = fields.get("nonce").map_err(bad)?;
    if nonce.len() != 32
        || !nonce
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(bad("`nonce` is not 32 lowercase hex digits".into()));
    }
    let nonce = u128::from_str_radix(nonce, 16).map_err(|_| bad("`nonce`".into()))?;
    Ok(Claim {
        node: node.to_string(),
        ts_ms,
        nonce,
    })
}

/// The claims the master accepted, so that none is accepted twice.
///
/// A claim is remembered until its `ts` is more than the window
/// (`max_clock_skew`) behind now; older ones are refused as stale anyway. A
/// claim from a clock ahead is accepted and remembered until then. Memory is bounded by
/// [`MAX_REMEMBERED`]: when full, the oldest claim is forgotten and the
/// floor rises to its `ts`, so nothing as old is accepted any more (never a
/// replay, at worst a node retries with a fresh credential). The floor
/// starts at the master's start: claims of the previous run are unknown.
pub struct NonceLedger {
    window_ms: u64,
    floor_ms: u64,
    seen: BTreeSet<(u64, u128)>,
    cap: usize,
}

impl NonceLedger {
    pub fn new(max_clock_skew_s: u64, started_ms: u64) -> NonceLedger {
        NonceLedger::with_cap(max_clock_skew_s, started_ms, MAX_REMEMBERED)
    }

    pub fn with_cap(max_clock_skew_s: u64, started_ms: u64, cap: usize) -> NonceLedger {
        NonceLedger {
            window_ms: max_clock_skew_s.saturating_mul(1000),
            floor_ms: started_ms,
            seen: BTreeSet::new(),
            cap: cap.max(1),
        }
    }

    /// Accepts a verified claim once.
    pub fn admit(&mut self, claim: &Claim, now_ms: u64) -> Result<(), Denial> {
        // Only a credential older than the window is refused for its time:
        // one from a clock ahead is remembered until the master's clock has
        // passed it, so a node whose clock is ahead still gets in and its
        // messages tell the master about the clock (docs/protocol.md).
        if claim.ts_ms.saturating_add(self.window_ms) < now_ms {
            return Err(Denial::Stale {
                ts_ms: claim.ts_ms,
                now_ms,
            });
        }
        // Forget what the window refuses anyway.
        let oldest_fresh = now_ms.saturating_sub(self.window_ms);
        while let Some(&first) = self.seen.first() {
            if first.0 >= oldest_fresh {
                break;
            }
            self.seen.pop_first();
            self.floor_ms = self.floor_ms.max(first.0 + 1);
        }
        if claim.ts_ms < self.floor_ms {
            return Err(Denial::TooOld {
                ts_ms: claim.ts_ms,
                floor_ms: self.floor_ms,
            });
        }
        let entry = (claim.ts_ms, claim.nonce);
        if self.seen.contains(&entry) {
            return Err(Denial::Replay);
        }
        if self.seen.len() >= self.cap {
            // Forget the oldest; nothing up to its ts can be told apart
            // from a replay any more.
            if let Some((ts, _)) = self.seen.pop_first() {
                self.floor_ms = self.floor_ms.max(ts + 1);
            }
            if claim.ts_ms < self.floor_ms {
                return Err(Denial::TooOld {
                    ts_ms: claim.ts_ms,
                    floor_ms: self.floor_ms,
                });
            }
        }
        self.seen.insert(entry);
        Ok(())
    }

    /// How many claims are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MacKey {
        MacKey::new(b"K7Q2M9X4T1B8R5W3")
    }

    fn block(tag: &str) -> String {
        let block = crate::testing::protocol_doc_block(tag);
        block.trim_end_matches('\n').to_string()
    }

    #[test]
    fn documented_credential_vector_verifies() {
        let secret = block("vector-secret");
        let (user, pass) = (block("credential-username"), block("credential-password"));
        let c = Credential::new(
            &MacKey::new(secret.as_bytes()),
            "7",
            1_795_456_000_250,
            0x0123_4567_89ab_cdef_0011_2233_4455_6677,
        );
        assert_eq!(c.username, user);
        assert_eq!(c.password, pass);
        let claim = verify(
            &MacKey::new(secret.as_bytes()),
            user.as_bytes(),
            pass.as_bytes(),
        )
        .unwrap();
        assert_eq!(claim.node, "7");
        assert_eq!(claim.ts_ms, 1_795_456_000_250);
    }

    #[test]
    fn a_wrong_secret_or_an_edited_username_is_a_bad_mac() {
        let c = Credential::new(&key(), "7", 1000, 5);
        let other = MacKey::new(b"another secret");
        assert_eq!(
            verify(&other, c.username.as_bytes(), c.password.as_bytes()),
            Err(Denial::BadMac)
        );
        let edited = c.username.replace("node=7", "node=8");
        assert_eq!(
            verify(&key(), edited.as_bytes(), c.password.as_bytes()),
            Err(Denial::BadMac)
        );
        assert_eq!(verify(&key(), b"", b""), Err(Denial::BadMac));
    }

    #[test]
    fn a_signed_text_that_is_no_credential_is_malformed() {
        for user in [
            "vmwatch/1 heartbeat node=7 inst=5f3a9c2e71d04b68 seq=43 ts=1",
            "vmwatch-auth/1 node=7 ts=1",
            "vmwatch-auth/1 node=a%20b ts=1 nonce=00000000000000000000000000000001",
            "vmwatch-auth/1 node=7 ts=01 nonce=00000000000000000000000000000001",
            "vmwatch-auth/1 node=7 ts=1 ts=2 nonce=00000000000000000000000000000001",
        ] {
            let mac = key().sign(user.as_bytes());
            assert!(
                matches!(
                    verify(&key(), user.as_bytes(), mac.as_bytes()),
                    Err(Denial::Malformed(_))
                ),
                "{user}"
            );
        }
    }

    #[test]
    fn a_claim_is_accepted_once_within_the_window() {
        let mut l = NonceLedger::new(300, 1_000_000);
        let c = Claim {
            node: "7".into(),
            ts_ms: 1_000_500,
            nonce: 9,
        };
        assert_eq!(l.admit(&c, 1_001_000), Ok(()));
        assert_eq!(l.admit(&c, 1_002_000), Err(Denial::Replay));
        let fresh = Claim {
            nonce: 10,
            ..c.clone()
        };
        assert_eq!(l.admit(&fresh, 1_002_000), Ok(()));
        // Past the window it is stale, whatever the ledger remembers.
        assert!(matches!(
            l.admit(&c, 1_000_500 + 300_001),
            Err(Denial::Stale { .. })
        ));
        assert!(l.is_empty() || l.len() <= 2);
    }

    #[test]
    fn a_clock_ahead_gets_in_once() {
        let mut l = NonceLedger::new(300, 1_000_000);
        let ahead = Claim {
            node: "7".into(),
            ts_ms: 1_000_000 + 3_600_000,
            nonce: 3,
        };
        assert_eq!(l.admit(&ahead, 1_001_000), Ok(()));
        assert_eq!(l.admit(&ahead, 1_002_000), Err(Denial::Replay));
    }

    #[test]
    fn claims_from_before_the_master_started_are_refused() {
        let mut l = NonceLedger::new(300, 1_000_000);
        let c = Claim {
            node: "7".into(),
            ts_ms: 999_999,
            nonce: 1,
        };
        assert!(matches!(l.admit(&c, 1_000_100), Err(Denial::TooOld { .. })));
    }

    #[test]
    fn a_full_ledger_forgets_the_oldest_and_refuses_anything_as_old() {
        let mut l = NonceLedger::with_cap(300, 0, 3);
        let claim = |ts, nonce| Claim {
            node: "7".into(),
            ts_ms: ts,
            nonce,
        };
        for (ts, n) in [(100, 1), (200, 2), (300, 3), (400, 4)] {
            assert_eq!(l.admit(&claim(ts, n), 1000), Ok(()));
        }
        assert_eq!(l.len(), 3);
        // (100, 1) was forgotten: replaying it must still fail.
        assert!(matches!(
            l.admit(&claim(100, 1), 1000),
            Err(Denial::TooOld { .. })
        ));
        assert_eq!(l.admit(&claim(400, 4), 1000), Err(Denial::Replay));
    }
}
