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
//! Why one file of about 450 lines: most of it is libvirt's name tables,
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

/// The reasons for `shutoff` (virDomainShutoffReason). A `stopped`
/// event's details (virDomainEventStoppedDetailType) are the same words,
/// one code lower: libvirt has no `unknown` or `daemon` detail.
const SHUTOFF: &[&str] = &[
    "unknown",
    "shutdown",
    "destroyed",
    "crashed",
    "migrated",
    "saved",
    "failed",
    "from_snapshot",
    "daemon",
];

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
        5 => SHUTOFF,
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
        5 => &SHUTOFF[1..8],
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

/// `WHAT-N` with N at least `known` (a code this build does not name).
fn newer(word: &str, what: &str, known: usize) -> Option<u32> {
    let n = word.strip_prefix(what)?.strip_prefix('-')?;
    if !is_decimal(n) {
        return None;
    }
    n.parse::<u32>().ok().filter(|&n| n as usize >= known)
}

/// Gives one of libvirt's enumerations its words, from one table: `BY_CODE`
/// (the values libvirt names, in the order of their words in `$words`,
/// which is libvirt's order of codes), `from_code`, `code`, `parse` and
/// `Display`. A code this build does not name is `Newer(N)`, spelled
/// `$what-N`, never for a code the table names; `extra` lists the values
/// outside libvirt's codes, with their words.
macro_rules! libvirt_words {
    ($t:ident, $what:literal, $words:ident, [$($v:ident),+], extra: [$($x:ident = $xw:ident),*]) => {
        impl $t {
            /// The values libvirt names, indexed by their code.
            pub const BY_CODE: [$t; $words.len()] = [$($t::$v),+];
            /// The values outside libvirt's codes, with their words.
            const EXTRA: &'static [($t, &'static str)] = &[$(($t::$x, $xw)),*];

            /// libvirt's code as a value (libvirt's codes are never
            /// negative; one that is is carried as its unsigned value).
            pub fn from_code(code: i32) -> $t {
                usize::try_from(code)
                    .ok()
                    .and_then(|i| Self::BY_CODE.get(i).copied())
                    .unwrap_or($t::Newer(code as u32))
            }

            /// The code of a value libvirt names.
            pub fn code(self) -> Option<usize> {
                Self::BY_CODE.iter().position(|v| *v == self)
            }

            /// A wire word as a value; `None` outside the vocabulary.
            pub fn parse(word: &str) -> Option<$t> {
                let named = Self::EXTRA
                    .iter()
                    .map(|(v, w)| (*v, *w))
                    .chain(Self::BY_CODE.into_iter().zip($words))
                    .find(|(_, w)| *w == word);
                match named {
                    Some((v, _)) => Some(v),
                    None => newer(word, $what, $words.len()).map($t::Newer),
                }
            }
        }

        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                if let $t::Newer(n) = self {
                    return write!(f, "{}-{n}", $what);
                }
                let word = match self.code() {
                    Some(i) => $words[i],
                    None => Self::EXTRA.iter().find(|(v, _)| v == self).map_or("-", |(_, w)| w),
                };
                f.write_str(word)
            }
        }
    };
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

libvirt_words!(
    State,
    "state",
    STATES,
    [NoState, Running, Blocked, Paused, Shutdown, Shutoff, Crashed, PmSuspended],
    extra: []
);

impl State {
    /// Whether the domain uses a node's resources in this state (what makes
    /// the same UUID on two nodes a duplicate).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            State::Running | State::Blocked | State::Paused | State::Shutdown | State::PmSuspended
        )
    }
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

libvirt_words!(
    EventKind,
    "event",
    EVENTS,
    [Defined, Undefined, Started, Suspended, Resumed, Stopped, Shutdown, PmSuspended, Crashed],
    extra: [Reboot = REBOOT]
);

impl EventKind {
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

/// The words libvirt has for one event's details or one state's reasons,
/// by the event's or state's code ([`details`], [`reasons`]).
type Tables = fn(usize) -> &'static [&'static str];

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
    /// libvirt's `code` in the table of `owner` (an event or a state code).
    fn from_code(tables: Tables, owner: i32, code: i32) -> Word {
        let names = usize::try_from(owner).map_or(&[][..], tables);
        usize::try_from(code)
            .ok()
            .and_then(|i| names.get(i).copied())
            .map_or(Word::Newer(code as u32), Word::Named)
    }

    /// `word` as a member of the table of `owner`, or `WHAT-N`; for an
    /// owner this build does not know (`None`), a word of any of the tables
    /// of the `owners` it knows.
    fn parse(
        word: &str,
        what: &str,
        tables: Tables,
        owner: Option<usize>,
        owners: usize,
    ) -> Option<Word> {
        // Never a code the table names: one spelling per value.
        let known = owner.map_or(0, |o| tables(o).len());
        let searched = owner.map_or(0..owners, |o| o..o + 1);
        newer(word, what, known).map(Word::Newer).or_else(|| {
            searched
                .flat_map(tables)
                .find(|w| **w == word)
                .map(|w| Word::Named(w))
        })
    }

    /// Writes the word; a newer code as `WHAT-N`.
    fn write(self, what: &str, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Word::Named(w) => f.write_str(w),
            Word::Newer(n) => write!(f, "{what}-{n}"),
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
        Detail(Word::from_code(details, event, detail))
    }

    /// A wire word as a detail of `event`; `None` outside the vocabulary.
    pub fn parse(event: EventKind, word: &str) -> Option<Detail> {
        match event {
            EventKind::Reboot => (word == "-").then_some(Detail::NONE),
            EventKind::Newer(_) if word == "-" => Some(Detail::NONE),
            known => Word::parse(word, "detail", details, known.code(), EVENTS.len()).map(Detail),
        }
    }
}

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.write("detail", f)
    }
}

/// A state's reason (virDomain*Reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reason(Word);

impl Reason {
    /// libvirt's codes as a reason.
    pub fn from_code(state: i32, reason: i32) -> Reason {
        Reason(Word::from_code(reasons, state, reason))
    }

    /// A wire word as a reason for `state`; `None` outside the vocabulary.
    pub fn parse(state: State, word: &str) -> Option<Reason> {
        Word::parse(word, "reason", reasons, state.code(), STATES.len()).map(Reason)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.write("reason", f)
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
