//! Thin, safe helpers over the libvirt C API for the node.
//!
//! The `virt` crate wraps connections and the event loop; the calls it does
//! not wrap (domain event registration, close callbacks, keepalive) go through
//! `virt::sys`. This file holds the pieces both node threads share: libvirt's
//! numeric states, reasons and event codes turned into the stable names the
//! protocol carries, a domain's identity, and the full snapshot listing.

use std::ffi::{c_char, c_int, CStr};

use virt::connect::Connect;
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

/// The UUID and name of a domain. Neither call talks to libvirtd: both are
/// held in the domain object, so this is safe inside event callbacks.
///
/// # Safety
/// `dom` must be a valid domain pointer for the duration of the call.
pub unsafe fn domain_id(dom: sys::virDomainPtr) -> Option<DomainId> {
    let mut buf = [0 as c_char; sys::VIR_UUID_STRING_BUFLEN as usize];
    // SAFETY: the caller guarantees `dom`; `buf` has the documented
    // VIR_UUID_STRING_BUFLEN bytes virDomainGetUUIDString writes.
    if unsafe { sys::virDomainGetUUIDString(dom, buf.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: on success libvirt wrote a NUL-terminated string into `buf`.
    let uuid = unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: the caller guarantees `dom`; the returned string belongs to the
    // domain object and stays valid while `dom` does; we copy it at once.
    let name_ptr = unsafe { sys::virDomainGetName(dom) };
    if name_ptr.is_null() {
        return None;
    }
    // SAFETY: non-null, NUL-terminated, owned by `dom` (see above).
    let name = unsafe { CStr::from_ptr(name_ptr) }
        .to_string_lossy()
        .into_owned();
    Some(DomainId { uuid, name })
}

/// Every domain on the connection with its state and reason. A domain that
/// vanishes while we list is simply left out: the undefine event that
/// removed it is on its way.
pub fn snapshot(conn: &Connect) -> Result<Vec<DomainState>, virt::error::Error> {
    let domains = conn.list_all_domains(0)?;
    let mut out = Vec::with_capacity(domains.len());
    for dom in &domains {
        let (mut state, mut reason): (c_int, c_int) = (0, 0);
        // SAFETY: `dom` keeps its pointer valid until dropped; the out
        // pointers are valid locals.
        let rc = unsafe { sys::virDomainGetState(dom.as_ptr(), &mut state, &mut reason, 0) };
        if rc != 0 {
            continue;
        }
        // SAFETY: `dom` is alive for this call.
        if let Some(id) = unsafe { domain_id(dom.as_ptr()) } {
            out.push(DomainState {
                domain: id,
                state: state_name(state),
                reason: reason_name(state, reason),
                reboots: None,
            });
        }
    }
    out.sort_by(|a, b| a.domain.cmp(&b.domain));
    Ok(out)
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
}
