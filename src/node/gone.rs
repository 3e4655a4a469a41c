//! Domains that vanish without an `undefined` event.
//!
//! libvirt sends no `undefined` event when a domain's definition goes as a
//! side effect: the source of a `virsh migrate --undefinesource`, a
//! transient domain that stops, an incoming migration that was aborted.
//! Without help the master would keep a shut-off ghost until the node's next
//! full list (`sync_interval`, 10 minutes by default). So after every
//! `stopped` event the event thread looks the domain up a few times over a
//! few seconds (between callbacks, never inside one: a callback must not
//! call libvirtd), and if it is gone sends the `undefined` event itself
//! (detail `removed`), in order after every event seen before.

use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::error::ErrorNumber;

use crate::protocol::DomainId;

/// Delay before the first look, then between looks.
const FIRST: Duration = Duration::from_millis(300);
const EVERY: Duration = Duration::from_millis(700);
/// Looks per stopped domain (about 5 s in all).
const TRIES: u32 = 7;

struct Check {
    domain: DomainId,
    next: Instant,
    left: u32,
}

/// The stopped domains still being looked at.
#[derive(Default)]
pub struct GoneChecks {
    pending: Vec<Check>,
}

/// What one look found.
#[derive(Debug, PartialEq, Eq)]
enum Look {
    Exists,
    Gone,
    /// libvirt could not say (a broken connection): look again later.
    Unknown,
}

fn look(conn: &Connect, uuid: &str) -> Look {
    match conn.lookup_domain_by_uuid_string(uuid) {
        Ok(_) => Look::Exists,
        Err(e) if matches!(e.code(), virt::enumutil::Enum::Known(ErrorNumber::NoDomain)) => {
            Look::Gone
        }
        Err(_) => Look::Unknown,
    }
}

impl GoneChecks {
    /// Starts watching a domain that just stopped (a second stop restarts
    /// its count).
    pub fn stopped(&mut self, domain: DomainId, now: Instant) {
        self.pending.retain(|c| c.domain.uuid != domain.uuid);
        self.pending.push(Check {
            domain,
            next: now + FIRST,
            left: TRIES,
        });
    }

    /// Stops watching a domain (libvirt said it was undefined or started).
    pub fn forget(&mut self, uuid: &str) {
        self.pending.retain(|c| c.domain.uuid != uuid);
    }

    /// Looks at every check that is due; returns the domains found gone.
    pub fn run(&mut self, conn: &Connect, now: Instant) -> Vec<DomainId> {
        let mut gone = Vec::new();
        self.pending.retain_mut(|c| {
            if c.next > now {
                return true;
            }
            match look(conn, &c.domain.uuid) {
                Look::Gone => {
                    gone.push(c.domain.clone());
                    false
                }
                Look::Exists | Look::Unknown => {
                    c.left -= 1;
                    c.next = now + EVERY;
                    c.left > 0
                }
            }
        });
        gone
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gone_domain_is_found_and_an_existing_one_is_given_up_on() {
        crate::node::libvirt::silence_default_errors();
        let conn = Connect::open(Some("test:///default")).expect("test driver is built in");
        let test = conn.lookup_domain_by_name("test").unwrap();
        let existing = DomainId {
            uuid: test.uuid_string().unwrap(),
            name: "test".into(),
        };
        let missing = DomainId {
            uuid: "4b3b2f6e-1c9a-4f8e-9d6a-2a7c1e5b9f00".into(),
            name: "gone".into(),
        };
        let mut checks = GoneChecks::default();
        let t0 = Instant::now();
        checks.stopped(existing.clone(), t0);
        checks.stopped(missing.clone(), t0);
        assert!(checks.run(&conn, t0).is_empty(), "nothing due yet");
        assert_eq!(checks.run(&conn, t0 + FIRST), vec![missing]);
        let mut t = t0 + FIRST;
        for _ in 1..TRIES {
            assert!(!checks.is_empty());
            t += EVERY;
            assert!(checks.run(&conn, t).is_empty());
        }
        assert!(
            checks.is_empty(),
            "an existing domain is looked at {TRIES} times, then left"
        );
    }
}
