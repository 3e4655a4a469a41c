//! The words of the protocol that name libvirt's facts, as types: a domain
//! [`State`] and its [`Reason`], a lifecycle [`EventKind`] and its
//! [`Detail`] (docs/protocol.md, "Vocabulary").
//!
//! The node turns libvirt's numeric codes into these types and the decoder
//! parses received words into them, so a value no libvirt sends
//! (`state=flying`, `event=exploded`) cannot be represented: it is refused
//! at the decoder instead of reaching the panel. A code newer than this
//! build is carried as `WHAT-N` (e.g. `detail-9`), never for a code the
//! tables name, so every value has exactly one spelling.
//!
//! Why one file of about 430 lines: most of it is libvirt's name tables,
//! which are only right as a whole, next to the types that parse them.

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

/// An unsigned decimal without sign or leading zeros (docs/protocol.md).
pub fn is_decimal(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 20
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'))
}

/// A domain state (virDomainState): the only values a snapshot or the
/// master's table can hold. `Newer(N)` is `state-N`, a code this build does
/// not know (never one it does, so each state has one spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    NoState,
    Running,
    Blocked,
    Paused,
    Shutdown,
    Shutoff,
    Crashed,
    PmSuspended,
    Newer(u32),
}

impl State {
    /// The known states, indexed by their code.
    pub const ALL: [State; 8] = [
        State::NoState,
        State::Running,
        State::Blocked,
        State::Paused,
        State::Shutdown,
        State::Shutoff,
        State::Crashed,
        State::PmSuspended,
    ];

    /// libvirt's code as a state.
    pub fn from_code(code: i32) -> State {
        by_code(&State::ALL, code, State::Newer)
    }

    /// The code of a known state.
    pub fn code(self) -> Option<usize> {
        State::ALL.iter().position(|s| *s == self)
    }

    /// A wire word as a state; `None` outside the vocabulary.
    pub fn parse(word: &str) -> Option<State> {
        by_word(&STATES, &State::ALL, word, "state", State::Newer)
    }

    /// Whether the domain uses a node's resources in this state (what makes
    /// the same UUID on two nodes a duplicate).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            State::Running | State::Blocked | State::Paused | State::Shutdown | State::PmSuspended
        )
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code() {
            Some(i) => f.write_str(STATES[i]),
            None => write!(f, "state-{}", newer_code(self)),
        }
    }
}

fn newer_code(s: &State) -> u32 {
    match s {
        State::Newer(n) => *n,
        _ => 0,
    }
}

/// The entry of `table` for libvirt's `code`, or `newer(code)` for a code
/// this build does not name (libvirt's codes are never negative; one that is
/// is carried as its unsigned value).
fn by_code<T: Copy>(table: &[T], code: i32, newer: impl FnOnce(u32) -> T) -> T {
    usize::try_from(code)
        .ok()
        .and_then(|i| table.get(i).copied())
        .unwrap_or_else(|| newer(code as u32))
}

/// The entry of `all` whose name in `names` is `word`, or `WHAT-N` for a
/// code this build does not name; `None` outside the vocabulary.
fn by_word<T: Copy>(
    names: &[&str],
    all: &[T],
    word: &str,
    what: &str,
    newer_one: impl FnOnce(u32) -> T,
) -> Option<T> {
    match names.iter().position(|n| *n == word) {
        Some(i) => all.get(i).copied(),
        None => newer(word, what, names.len()).map(newer_one),
    }
}

/// `WHAT-N` with N at least `known` (a code this build does not name).
fn newer(word: &str, what: &str, known: usize) -> Option<u32> {
    let n = word.strip_prefix(what)?.strip_prefix('-')?;
    if !is_decimal(n) {
        return None;
    }
    n.parse::<u32>().ok().filter(|&n| n as usize >= known)
}

/// A lifecycle event (virDomainEventType), a reboot, or `event-N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    Defined,
    Undefined,
    Started,
    Suspended,
    Resumed,
    Stopped,
    Shutdown,
    PmSuspended,
    Crashed,
    Reboot,
    Newer(u32),
}

impl EventKind {
    /// The lifecycle events, indexed by their code.
    pub const LIFECYCLE: [EventKind; 9] = [
        EventKind::Defined,
        EventKind::Undefined,
        EventKind::Started,
        EventKind::Suspended,
        EventKind::Resumed,
        EventKind::Stopped,
        EventKind::Shutdown,
        EventKind::PmSuspended,
        EventKind::Crashed,
    ];

    /// libvirt's lifecycle event code as an event.
    pub fn from_code(code: i32) -> EventKind {
        by_code(&EventKind::LIFECYCLE, code, EventKind::Newer)
    }

    /// The code of a known lifecycle event.
    pub fn code(self) -> Option<usize> {
        EventKind::LIFECYCLE.iter().position(|e| *e == self)
    }

    /// A wire word as an event; `None` outside the vocabulary.
    pub fn parse(word: &str) -> Option<EventKind> {
        if word == REBOOT {
            return Some(EventKind::Reboot);
        }
        by_word(
            &EVENTS,
            &EventKind::LIFECYCLE,
            word,
            "event",
            EventKind::Newer,
        )
    }

    /// The state a lifecycle event leaves a domain in; `None` for events
    /// that do not set one by themselves.
    pub fn state_after(self) -> Option<State> {
        Some(match self {
            EventKind::Started | EventKind::Resumed => State::Running,
            EventKind::Suspended => State::Paused,
            EventKind::Stopped => State::Shutoff,
            EventKind::Shutdown => State::Shutdown,
            EventKind::PmSuspended => State::PmSuspended,
            EventKind::Crashed => State::Crashed,
            _ => return None,
        })
    }
}

impl std::fmt::Display for EventKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventKind::Reboot => f.write_str(REBOOT),
            EventKind::Newer(n) => write!(f, "event-{n}"),
            known => f.write_str(EVENTS[known.code().unwrap_or(0)]),
        }
    }
}

/// What libvirt says about an event (its detail) or a state (its reason):
/// a word of the table for that event or state, a newer code, or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Word {
    Named(&'static str),
    Newer(u32),
    /// `-`: a reboot's detail.
    Nothing,
}

impl Word {
    fn from_table(names: &'static [&'static str], code: i32) -> Word {
        usize::try_from(code)
            .ok()
            .and_then(|i| names.get(i).copied())
            .map_or(Word::Newer(code as u32), Word::Named)
    }

    /// `word` as a member of `names`, or `WHAT-N`; for an unknown owner any
    /// word of any table (`all`) is accepted too.
    fn parse(
        word: &str,
        what: &str,
        names: &[&'static str],
        all: &[&'static [&'static str]],
    ) -> Option<Word> {
        if let Some(n) = word.strip_prefix(what).and_then(|r| r.strip_prefix('-')) {
            // Never a code the table names: one spelling per value.
            return is_decimal(n)
                .then(|| n.parse::<u32>().ok())
                .flatten()
                .filter(|&n| n as usize >= names.len())
                .map(Word::Newer);
        }
        names
            .iter()
            .chain(all.iter().flat_map(|t| t.iter()))
            .find(|w| **w == word)
            .map(|w| Word::Named(w))
    }
}

impl std::fmt::Display for Word {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Word::Named(w) => f.write_str(w),
            Word::Newer(n) => write!(f, "{n}"),
            Word::Nothing => f.write_str("-"),
        }
    }
}

/// An event's detail (virDomainEvent*DetailType).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Detail(Word);

impl Detail {
    /// A reboot's detail: none.
    pub const NONE: Detail = Detail(Word::Nothing);

    /// libvirt's codes as a detail.
    pub fn from_code(event: i32, detail: i32) -> Detail {
        let names = usize::try_from(event).map_or(&[][..], details);
        Detail(Word::from_table(names, detail))
    }

    /// A wire word as a detail of `event`; `None` outside the vocabulary.
    pub fn parse(event: EventKind, word: &str) -> Option<Detail> {
        match event {
            EventKind::Reboot => (word == "-").then_some(Detail::NONE),
            EventKind::Newer(_) if word == "-" => Some(Detail::NONE),
            EventKind::Newer(_) => {
                let all: Vec<&'static [&'static str]> = (0..EVENTS.len()).map(details).collect();
                Word::parse(word, "detail", &[], &all).map(Detail)
            }
            known => {
                let names = details(known.code().unwrap_or(usize::MAX));
                Word::parse(word, "detail", names, &[]).map(Detail)
            }
        }
    }
}

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Word::Newer(n) => write!(f, "detail-{n}"),
            w => w.fmt(f),
        }
    }
}

/// A state's reason (virDomain*Reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reason(Word);

impl Reason {
    /// libvirt's codes as a reason.
    pub fn from_code(state: i32, reason: i32) -> Reason {
        let names = usize::try_from(state).map_or(&[][..], reasons);
        Reason(Word::from_table(names, reason))
    }

    /// A wire word as a reason for `state`; `None` outside the vocabulary.
    pub fn parse(state: State, word: &str) -> Option<Reason> {
        match state.code() {
            Some(code) => Word::parse(word, "reason", reasons(code), &[]).map(Reason),
            None => {
                let all: Vec<&'static [&'static str]> = (0..STATES.len()).map(reasons).collect();
                Word::parse(word, "reason", &[], &all).map(Reason)
            }
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Word::Newer(n) => write!(f, "reason-{n}"),
            w => w.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_become_words_and_unknown_codes_stay_parseable() {
        assert_eq!(State::from_code(1).to_string(), "running");
        assert_eq!(State::from_code(42).to_string(), "state-42");
        assert_eq!(EventKind::from_code(-1).to_string(), "event-4294967295");
        assert_eq!(Detail::from_code(5, 1).to_string(), "destroyed");
        assert_eq!(Detail::from_code(2, 99).to_string(), "detail-99");
        assert_eq!(Reason::from_code(3, 1).to_string(), "user");
        for s in ["running", "state-9", "pmsuspended"] {
            assert_eq!(State::parse(s).unwrap().to_string(), s);
        }
        for e in ["started", "reboot", "event-12"] {
            assert_eq!(EventKind::parse(e).unwrap().to_string(), e);
        }
    }

    #[test]
    fn only_documented_words_pass() {
        for bad in [
            "flying",
            "undefined",
            "state-",
            "state-01",
            "state-+1",
            "Running",
            "state-3",
        ] {
            assert!(State::parse(bad).is_none(), "{bad}");
        }
        let (running, shutoff, paused) = (State::Running, State::Shutoff, State::Paused);
        assert!(Reason::parse(shutoff, "destroyed").is_some());
        assert!(Reason::parse(running, "reason-77").is_some());
        assert!(Reason::parse(running, "destroyed").is_none());
        assert!(Reason::parse(paused, "bogus").is_none());
        assert!(Reason::parse(State::Newer(9), "destroyed").is_some());
        assert!(EventKind::parse("exploded").is_none() && EventKind::parse("event-x").is_none());
        assert!(EventKind::parse("event-2").is_none(), "2 is `started`");
        let started = EventKind::Started;
        assert!(Detail::parse(started, "booted").is_some());
        assert!(Detail::parse(EventKind::Reboot, "-").is_some());
        assert!(Detail::parse(EventKind::Stopped, "detail-30").is_some());
        assert!(
            Detail::parse(EventKind::Stopped, "detail-3").is_none(),
            "3 is `migrated`"
        );
        assert!(Detail::parse(EventKind::Newer(12), "-").is_some());
        assert!(Detail::parse(started, "destroyed").is_none());
        assert!(Detail::parse(EventKind::Reboot, "booted").is_none());
        assert!(is_decimal("0") && is_decimal("17") && !is_decimal("+5"));
        assert!(!is_decimal("05") && !is_decimal("") && !is_decimal("-1"));
    }
}
