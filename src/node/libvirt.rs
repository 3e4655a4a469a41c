//! Thin, safe helpers over the libvirt C API for the node.
//!
//! The `virt` crate wraps connections, domains and the event loop, and the
//! node uses its safe calls; only what it does not wrap (domain event
//! registration, close callbacks) and the APIs looked up at run time (bulk
//! stats) go through `virt::sys`. This file holds the pieces both node
//! threads share: libvirt's numeric states, reasons and event codes turned
//! into the stable names the protocol carries, a domain's identity and state,
//! a view of a domain pointer libvirt lends us, and the full snapshot listing
//! (whole or not at all).

use std::ffi::c_int;
use std::mem::ManuallyDrop;

use virt::connect::Connect;
use virt::domain::{Domain, DomainStateReason};
use virt::sys;

use crate::protocol::{DomainId, DomainState};
use crate::vocab::{Detail, EventKind, Reason, State};

/// virDomainState as a state of the vocabulary.
pub fn state_name(state: c_int) -> State {
    State::from_code(state)
}

/// The reason libvirt gives for a state (virDomain*Reason).
pub fn reason_name(state: c_int, reason: c_int) -> Reason {
    Reason::from_code(state, reason)
}

/// virDomainEventType as an event of the vocabulary.
pub fn event_name(event: c_int) -> EventKind {
    EventKind::from_code(event)
}

/// The detail of a lifecycle event (virDomainEvent*DetailType).
pub fn detail_name(event: c_int, detail: c_int) -> Detail {
    Detail::from_code(event, detail)
}

/// `list_all_domains` flags for "every domain, active or not".
pub const ALL_DOMAINS: sys::virConnectListAllDomainsFlags = 0;

/// A domain pointer that libvirt lends us (an event callback's domain, a
/// stats record's), as a [`Domain`] for virt's safe calls. `ManuallyDrop`
/// because the reference is libvirt's: dropping a `Domain` would free it.
///
/// # Safety
/// `dom` must be a valid domain pointer for as long as the result is used,
/// and the result must not outlive the lender (the callback, the record list).
pub unsafe fn lent_domain(dom: sys::virDomainPtr) -> ManuallyDrop<Domain> {
    // SAFETY: the caller guarantees `dom`; ManuallyDrop keeps the wrapper
    // from calling virDomainFree on a reference that is not ours.
    ManuallyDrop::new(unsafe { Domain::from_ptr(dom) })
}

/// The UUID and name of a domain. Neither call talks to libvirtd: both are
/// held in the domain object, so this is safe inside event callbacks.
pub fn domain_id(dom: &Domain) -> Option<DomainId> {
    let uuid = dom.uuid_string().ok()?;
    let name = dom.name().ok()?;
    Some(DomainId { uuid, name })
}

/// A domain's state and reason as libvirt's numbers (virDomainState and the
/// state's virDomain*Reason), or `None` if libvirt could not tell.
pub fn domain_state(dom: &Domain) -> Option<(c_int, c_int)> {
    // virt 0.5 ignores a failed virDomainGetState and reports the state it
    // initialised to -1 as unknown; that is the failure we skip.
    let (state, reason) = dom.state().ok()?;
    let state = state.to_raw() as c_int;
    if state < 0 {
        return None;
    }
    let reason = match reason {
        virt::enumutil::Enum::Known(r) => match r {
            DomainStateReason::NoState(r) => r.to_raw() as c_int,
            DomainStateReason::Running(r) => r.to_raw() as c_int,
            DomainStateReason::Blocked(r) => r.to_raw() as c_int,
            DomainStateReason::Paused(r) => r.to_raw() as c_int,
            DomainStateReason::Shutdown(r) => r.to_raw() as c_int,
            DomainStateReason::Shutoff(r) => r.to_raw() as c_int,
            DomainStateReason::Crashed(r) => r.to_raw() as c_int,
            DomainStateReason::PMSuspended(r) => r.to_raw() as c_int,
        },
        virt::enumutil::Enum::Unknown(r) => r,
    };
    Some((state, reason))
}

/// What reading one listed domain gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    Got(DomainState),
    /// It vanished while we listed (libvirt: no such domain): its undefine
    /// event is on its way, so leaving it out is the truth.
    Gone,
    /// libvirt could not tell (a lookup or state failure, libvirtd dying
    /// half way): what is wrong, naming the domain.
    Failed(String),
}

/// Reads one listed domain's identity and state.
fn read(dom: &Domain) -> Read {
    let Some(id) = domain_id(dom) else {
        return Read::Failed(format!(
            "cannot read a domain's name or UUID: {}",
            virt::error::Error::last_error()
        ));
    };
    match domain_state(dom) {
        Some((state, reason)) => Read::Got(DomainState {
            domain: id,
            state: state_name(state),
            reason: reason_name(state, reason),
            reboots: None,
        }),
        None => {
            let e = virt::error::Error::last_error();
            if e.code() == virt::error::ErrorNumberEnum::from(virt::error::ErrorNumber::NoDomain) {
                Read::Gone
            } else {
                Read::Failed(format!(
                    "cannot read the state of domain {} ({}): {e}",
                    id.name, id.uuid
                ))
            }
        }
    }
}

/// A full list from what reading each domain gave: every domain read, or an
/// error naming the first that could not be. A list missing a domain that
/// still exists must never be sent: the master takes a domain missing from
/// a full list for gone, and would tell the panel it was undefined.
pub fn complete(reads: impl IntoIterator<Item = Read>) -> Result<Vec<DomainState>, String> {
    let mut out = Vec::new();
    for r in reads {
        match r {
            Read::Got(d) => out.push(d),
            Read::Gone => {}
            Read::Failed(why) => return Err(why),
        }
    }
    out.sort_by(|a, b| a.domain.cmp(&b.domain));
    Ok(out)
}

/// Every domain on the connection with its state and reason, or why the
/// list is not whole (see [`complete`]).
pub fn snapshot(conn: &Connect) -> Result<Vec<DomainState>, String> {
    let domains = conn
        .list_all_domains(ALL_DOMAINS)
        .map_err(|e| format!("cannot list domains: {e}"))?;
    complete(domains.iter().map(read))
}

/// Stops libvirt from printing its errors on stderr (a daemon's stderr is
/// /dev/null or the journal); we log what matters ourselves.
pub fn silence_default_errors() {
    virt::error::clear_error_callback();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_libvirt_and_unknown_codes_stay_parseable() {
        assert_eq!(state_name(1).to_string(), "running");
        assert_eq!(state_name(5).to_string(), "shutoff");
        assert_eq!(state_name(42).to_string(), "state-42");
        assert_eq!(reason_name(5, 2).to_string(), "destroyed");
        assert_eq!(reason_name(3, 1).to_string(), "user");
        assert_eq!(event_name(2).to_string(), "started");
        assert_eq!(detail_name(5, 1).to_string(), "destroyed");
        assert_eq!(detail_name(6, 0).to_string(), "finished");
        assert_eq!(detail_name(2, 99).to_string(), "detail-99");
        assert_eq!(event_name(-1).to_string(), "event-4294967295");
    }

    #[test]
    fn snapshot_of_the_test_driver() {
        silence_default_errors();
        let conn = Connect::open(Some("test:///default")).expect("test driver is built in");
        let snap = snapshot(&conn).unwrap();
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].domain.name, "test");
        assert_eq!(snap[0].state, State::Running);
        assert!(crate::protocol::is_uuid(&snap[0].domain.uuid));
    }

    /// Issue 16: a domain whose state could not be read was left out and
    /// the list still sent, so the master told the panel it was undefined.
    /// A stand-in for libvirt here (the reads); tests/e2e_clock.rs cuts a
    /// real libvirtd's connection half way through a list.
    #[test]
    fn a_list_missing_a_domain_that_exists_is_not_whole() {
        silence_default_errors();
        let conn = Connect::open(Some("test:///default")).unwrap();
        let got = match read(&conn.list_all_domains(ALL_DOMAINS).unwrap()[0]) {
            Read::Got(d) => d,
            other => panic!("{other:?}"),
        };
        let list = complete([Read::Got(got.clone()), Read::Gone]).unwrap();
        assert_eq!(list, vec![got.clone()], "a vanished domain is left out");
        let failed = complete([
            Read::Got(got),
            Read::Failed("cannot read the state of domain b".into()),
            Read::Gone,
        ]);
        assert_eq!(failed, Err("cannot read the state of domain b".into()));
    }
}
