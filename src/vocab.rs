//! The words of the protocol that name libvirt's facts: domain states and
//! their reasons, lifecycle events and their details (docs/protocol.md,
//! "Vocabulary").
//!
//! The node turns libvirt's numeric codes into these names; the master checks
//! every received word against the same tables, so a value no libvirt sends
//! (`state=flying`, `event=exploded`) is refused at the decoder instead of
//! reaching the panel. A code newer than this build is carried as `WHAT-N`
//! (e.g. `detail-9`): still one well-defined word, which the master accepts
//! and treats as "unknown" (see each user).

/// virDomainState, indexed by its code.
pub const STATES: [&str; 8] = [
    "nostate",
    "running",
    "blocked",
    "paused",
    "shutdown",
    "shutoff",
    "crashed",
    "pmsuspended",
];

/// virDomainEventType, indexed by its code; `reboot` is the separate
/// VIR_DOMAIN_EVENT_ID_REBOOT callback.
pub const EVENTS: [&str; 9] = [
    "defined",
    "undefined",
    "started",
    "suspended",
    "resumed",
    "stopped",
    "shutdown",
    "pmsuspended",
    "crashed",
];

/// The event word of a guest reboot.
pub const REBOOT: &str = "reboot";

/// The reasons libvirt gives for a state (virDomain*Reason), by state code.
pub fn reasons(state: usize) -> &'static [&'static str] {
    match state {
        1 => &[
            "unknown",
            "booted",
            "migrated",
            "restored",
            "from_snapshot",
            "unpaused",
            "migration_canceled",
            "save_canceled",
            "wakeup",
            "crashed",
            "postcopy",
            "postcopy_failed",
        ],
        3 => &[
            "unknown",
            "user",
            "migration",
            "save",
            "dump",
            "ioerror",
            "watchdog",
            "from_snapshot",
            "shutting_down",
            "snapshot",
            "crashed",
            "starting_up",
            "postcopy",
            "postcopy_failed",
            "api_error",
        ],
        4 => &["unknown", "user"],
        5 => &[
            "unknown",
            "shutdown",
            "destroyed",
            "crashed",
            "migrated",
            "saved",
            "failed",
            "from_snapshot",
            "daemon",
        ],
        6 => &["unknown", "panicked"],
        _ => &["unknown"],
    }
}

/// The details of a lifecycle event (virDomainEvent*DetailType), by event code.
pub fn details(event: usize) -> &'static [&'static str] {
    match event {
        0 => &["added", "updated", "renamed", "from_snapshot"],
        1 => &["removed", "renamed"],
        2 => &[
            "booted",
            "migrated",
            "restored",
            "from_snapshot",
            "wakeup",
            "recreated",
        ],
        3 => &[
            "paused",
            "migrated",
            "ioerror",
            "watchdog",
            "restored",
            "from_snapshot",
            "api_error",
            "postcopy",
            "postcopy_failed",
        ],
        4 => &[
            "unpaused",
            "migrated",
            "from_snapshot",
            "postcopy",
            "postcopy_failed",
        ],
        5 => &[
            "shutdown",
            "destroyed",
            "crashed",
            "migrated",
            "saved",
            "failed",
            "from_snapshot",
        ],
        6 => &["finished", "guest", "host"],
        7 => &["memory", "disk"],
        8 => &["panicked", "crashloaded"],
        _ => &[],
    }
}

/// A name from a table, or `WHAT-N` for a code newer than this build, so a
/// newer libvirt never produces a message the master cannot parse. libvirt's
/// codes are never negative; one that is is carried as its unsigned value.
pub fn name_or_number(names: &[&str], code: i32, what: &str) -> String {
    usize::try_from(code)
        .ok()
        .and_then(|i| names.get(i))
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("{what}-{}", code as u32))
}

/// `WHAT-N` with N a decimal number without leading zeros.
fn is_numbered(word: &str, what: &str) -> bool {
    word.strip_prefix(what)
        .and_then(|r| r.strip_prefix('-'))
        .is_some_and(is_decimal)
}

/// An unsigned decimal without sign or leading zeros (docs/protocol.md).
pub fn is_decimal(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 20
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'))
}

/// The code of a state word, `None` for `state-N` (valid but unknown here).
pub fn state_code(state: &str) -> Option<usize> {
    STATES.iter().position(|s| *s == state)
}

/// Whether `state` is a word of the vocabulary (a name or `state-N`).
pub fn is_state(state: &str) -> bool {
    state_code(state).is_some() || is_numbered(state, "state")
}

/// Whether `reason` is a reason of `state` (or `reason-N`); any known reason
/// word is accepted for a `state-N`.
pub fn is_reason(state: &str, reason: &str) -> bool {
    if is_numbered(reason, "reason") {
        return true;
    }
    match state_code(state) {
        Some(code) => reasons(code).contains(&reason),
        None => (0..STATES.len()).any(|c| reasons(c).contains(&reason)),
    }
}

/// Whether `event` is a word of the vocabulary (a name, `reboot` or `event-N`).
pub fn is_event(event: &str) -> bool {
    event == REBOOT || EVENTS.contains(&event) || is_numbered(event, "event")
}

/// Whether `detail` is a detail of `event`: `-` for a reboot, a name of the
/// event's table or `detail-N`; any detail word for an `event-N`.
pub fn is_detail(event: &str, detail: &str) -> bool {
    if event == REBOOT {
        return detail == "-";
    }
    if is_numbered(detail, "detail") {
        return true;
    }
    match EVENTS.iter().position(|e| *e == event) {
        Some(code) => details(code).contains(&detail),
        None => detail == "-" || (0..EVENTS.len()).any(|c| details(c).contains(&detail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(name_or_number(&STATES, 1, "state"), "running");
        assert_eq!(name_or_number(&STATES, 42, "state"), "state-42");
        assert_eq!(name_or_number(&EVENTS, -1, "event"), "event-4294967295");
        assert!(is_event(&name_or_number(&EVENTS, -1, "event")));
    }

    #[test]
    fn only_documented_words_pass() {
        assert!(is_state("paused") && is_state("state-9"));
        for bad in [
            "flying",
            "undefined",
            "state-",
            "state-01",
            "state-+1",
            "Running",
        ] {
            assert!(!is_state(bad), "{bad}");
        }
        assert!(is_reason("shutoff", "destroyed") && is_reason("running", "reason-77"));
        assert!(!is_reason("running", "destroyed") && !is_reason("paused", "bogus"));
        assert!(is_event("started") && is_event("reboot") && is_event("event-12"));
        assert!(!is_event("exploded") && !is_event("event-x"));
        assert!(is_detail("started", "booted") && is_detail("reboot", "-"));
        assert!(is_detail("stopped", "detail-3") && is_detail("event-12", "-"));
        assert!(!is_detail("started", "destroyed") && !is_detail("reboot", "booted"));
        assert!(is_decimal("0") && is_decimal("17") && !is_decimal("+5"));
        assert!(!is_decimal("05") && !is_decimal("") && !is_decimal("-1"));
    }
}
