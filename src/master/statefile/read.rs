//! Reading a state file: [`parse`] turns any bytes into a [`StateFile`]
//! (what could be read, and `FILE:LINE: what` for every line that could
//! not), never failing, so a damaged file never stops the master.

use super::format::FORMAT;
use crate::kvline::unescape;
use crate::master::panel::refused::Refused;
use crate::master::panel::update::Update;
use crate::master::receiver::clock::Who;
use crate::master::receiver::replay::SeenInstance;
use crate::master::view::activity::IdleWarning;
use crate::master::view::identity::HostSeen;
use crate::master::view::records::{DomainRecord, RebootCount};
use crate::protocol::{check_node_id, is_uuid};
use crate::vocab::State;

/// One `node` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLine {
    pub node: String,
    pub up: bool,
    pub last_seen_ms: u64,
    pub domains: u64,
}

/// One `domain` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainLine {
    pub node: String,
    pub uuid: String,
    pub record: DomainRecord,
}

/// A state file, parsed once; what restore and `--status` both read.
#[derive(Debug, Default)]
pub struct StateFile {
    pub written_ms: Option<u64>,
    pub started_ms: Option<u64>,
    pub listen: Option<String>,
    pub counters: Vec<(String, u64)>,
    pub nodes: Vec<NodeLine>,
    pub domains: Vec<DomainLine>,
    /// Reported duplicates (recomputed from the domains on restore).
    pub duplicates: Vec<(String, String, String)>,
    pub idle: Vec<IdleWarning>,
    /// `host` lines: the libvirt hosts heard under each node id.
    pub hosts: Vec<(String, HostSeen)>,
    /// `clash` lines: (node, hosts, peers), comma-separated.
    pub clashes: Vec<(String, String, String)>,
    pub seen: Vec<SeenInstance>,
    pub pending: Vec<Update>,
    /// Updates the panel refused, set aside (`aside` lines).
    pub aside: Vec<Refused>,
    /// Clocks found off: whose, offset (ms, + ahead), since (ms).
    pub clocks: Vec<(Who, i64, u64)>,
    /// The `end` line was there: the file was not cut short.
    pub complete: bool,
    /// A `version` other than [`FORMAT`]: nothing after it was used.
    pub foreign_version: Option<String>,
    /// `FILE:LINE: what` for each line that could not be used.
    pub problems: Vec<String>,
    /// (line number, type) of each well-formed line of a type this version
    /// does not know (written by a newer master): skipped, not damage
    /// (docs/state-file.md, "Unknown lines").
    pub ignored: Vec<(usize, String)>,
}

impl StateFile {
    /// Whether anything in the file could not be used, or it was cut short.
    pub fn damaged(&self) -> bool {
        !self.problems.is_empty() || !self.complete || self.written_ms.is_none()
    }

    /// What is wrong with the file, for a person; `None` if nothing.
    pub fn damage(&self) -> Option<String> {
        if let Some(v) = &self.foreign_version {
            return Some(format!(
                "it is format version {v}, this master reads version {FORMAT}: nothing was used"
            ));
        }
        let mut what = Vec::new();
        if !self.problems.is_empty() {
            what.push(format!("{} unreadable lines", self.problems.len()));
        }
        if self.written_ms.is_none() {
            what.push("no `written` line".to_string());
        }
        if !self.complete {
            what.push("no `end` line (cut short)".to_string());
        }
        (!what.is_empty()).then(|| what.join(", "))
    }

    /// The ignored lines, for a person: how many, and their types (each
    /// once, in file order); `None` if there were none.
    pub fn ignored_note(&self) -> Option<String> {
        if self.ignored.is_empty() {
            return None;
        }
        let mut kinds: Vec<&str> = Vec::new();
        for (_, kind) in &self.ignored {
            if !kinds.contains(&kind.as_str()) {
                kinds.push(kind);
            }
        }
        Some(format!(
            "{} lines of types this version does not know were ignored ({}): written by a newer vmwatch-master?",
            self.ignored.len(),
            kinds.join(", ")
        ))
    }
}

/// Longest excerpt of a bad line quoted in a problem.
const EXCERPT: usize = 40;

fn excerpt(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(&line[..line.len().min(EXCERPT)]);
    crate::logging::escape_control(&text)
}

/// Parses a state file. Never fails: whatever the bytes, what could be read
/// is returned and every line that could not is named in `problems`.
pub fn parse(path: &str, bytes: &[u8]) -> StateFile {
    let mut f = StateFile::default();
    let mut body = bytes;
    if body.last() == Some(&b'\n') {
        body = &body[..body.len() - 1];
    }
    if body.is_empty() {
        f.problems.push(format!("{path}:1: the file is empty"));
        return f;
    }
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        if f.foreign_version.is_some() {
            break;
        }
        if f.complete {
            // Whatever follows `end` is not part of the file's content.
            f.complete = false;
            f.problems
                .push(format!("{path}:{n}: text after the `end` line"));
            break;
        }
        let result = match std::str::from_utf8(raw) {
            Ok(line) if line.is_empty() || line.starts_with('#') => Ok(()),
            Ok(line) => match parse_line(&mut f, line) {
                Err(Unknown) if well_formed(line) => {
                    let kind = line.split(' ').next().unwrap_or_default();
                    f.ignored.push((n, excerpt(kind.as_bytes())));
                    Ok(())
                }
                Err(Unknown) => Err(format!(
                    "unknown line type `{}`",
                    excerpt(line.split(' ').next().unwrap_or_default().as_bytes())
                )),
                Err(Bad(what)) => Err(what),
                Ok(()) => Ok(()),
            },
            Err(_) => Err("not UTF-8 text".to_string()),
        };
        if let Err(what) = result {
            f.problems
                .push(format!("{path}:{n}: {what}: `{}`", excerpt(raw)));
        }
    }
    f
}

/// Why a line was not used: a line of a known type that is not as
/// docs/state-file.md says (damage), or a type this version does not know.
enum LineError {
    Bad(String),
    Unknown,
}
use LineError::{Bad, Unknown};

impl From<String> for LineError {
    fn from(what: String) -> Self {
        Bad(what)
    }
}

impl From<&str> for LineError {
    fn from(what: &str) -> Self {
        Bad(what.to_string())
    }
}

/// Whether a line of a type this version does not know is one a newer
/// master could have written (docs/state-file.md, "Unknown lines"): its
/// type word is a lowercase ASCII letter followed by lowercase letters,
/// digits, `_`, `.` or `-`, and the line holds no control character (the
/// writer percent-encodes free text). Anything else is damage.
fn well_formed(line: &str) -> bool {
    let kind = line.split(' ').next().unwrap_or_default();
    kind.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
        && !line.chars().any(char::is_control)
}

fn parse_line(f: &mut StateFile, line: &str) -> Result<(), LineError> {
    let w: Vec<&str> = line.split(' ').collect();
    let num = |s: &str, what: &str| -> Result<u64, String> {
        if !crate::vocab::is_decimal(s) {
            return Err(format!(
                "{what} `{}` is not a number",
                excerpt(s.as_bytes())
            ));
        }
        s.parse::<u64>().map_err(|_| format!("{what} is too large"))
    };
    let text = |s: &str, what: &str| -> Result<String, String> {
        unescape(s).map_err(|e| format!("{what}: {e}"))
    };
    let node = |s: &str| -> Result<String, String> {
        let n = text(s, "node id")?;
        check_node_id(&n).map_err(|e| format!("node id {e}"))?;
        Ok(n)
    };
    let uuid = |s: &str| -> Result<String, String> {
        if is_uuid(s) {
            Ok(s.to_string())
        } else {
            Err(format!("`{}` is not a UUID", excerpt(s.as_bytes())))
        }
    };
    let words = |n: usize| -> Result<(), String> {
        if w.len() == n {
            Ok(())
        } else {
            Err(format!("`{}` line has {} words, not {n}", w[0], w.len()))
        }
    };
    match w[0] {
        "version" => {
            words(2)?;
            if w[1] != FORMAT.to_string() {
                f.foreign_version = Some(excerpt(w[1].as_bytes()));
                return Err(Bad(format!(
                    "format version {}, this master reads version {FORMAT}",
                    excerpt(w[1].as_bytes())
                )));
            }
        }
        "written" => {
            words(2)?;
            f.written_ms = Some(num(w[1], "time")?);
        }
        "started" => {
            words(2)?;
            f.started_ms = Some(num(w[1], "time")?);
        }
        "listen" => {
            words(2)?;
            f.listen = Some(text(w[1], "address")?);
        }
        "counter" => {
            words(3)?;
            let name = w[1];
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'.' || b == b'_')
            {
                return Err(Bad(format!(
                    "bad counter name `{}`",
                    excerpt(name.as_bytes())
                )));
            }
            f.counters.push((name.to_string(), num(w[2], "counter")?));
        }
        "node" => {
            words(5)?;
            f.nodes.push(NodeLine {
                node: node(w[1])?,
                up: match w[2] {
                    "up" => true,
                    "down" => false,
                    _ => return Err("node status is neither `up` nor `down`".into()),
                },
                last_seen_ms: num(w[3], "time")?,
                domains: num(w[4], "domain count")?,
            });
        }
        "domain" => {
            // Files written before reboot counting have no count.
            if w.len() != 7 && w.len() != 9 {
                return Err(Bad(format!(
                    "`domain` line has {} words, not 7 or 9",
                    w.len()
                )));
            }
            let state = State::parse(&text(w[3], "state")?).ok_or_else(|| {
                format!("state `{}` is not a domain state", excerpt(w[3].as_bytes()))
            })?;
            let reboots = if w.len() == 9 {
                RebootCount {
                    instance: u64::from_str_radix(w[7], 16)
                        .ok()
                        .filter(|_| w[7].len() == 16)
                        .ok_or("reboot instance is not 16 hex digits")?,
                    count: num(w[8], "reboot count")?,
                }
            } else {
                RebootCount::default()
            };
            f.domains.push(DomainLine {
                node: node(w[1])?,
                uuid: uuid(w[2])?,
                record: DomainRecord {
                    name: text(w[5], "name")?,
                    state,
                    reason: text(w[6], "reason")?,
                    since_ms: num(w[4], "time")?,
                    reboots,
                    rebootid: None,
                },
            });
        }
        "rebootid" => {
            // Follows its domain's line (docs/state-file.md).
            words(4)?;
            let (n, u, id) = (node(w[1])?, uuid(w[2])?, num(w[3], "reboot id")?);
            match f.domains.last_mut() {
                Some(d) if d.node == n && d.uuid == u => d.record.rebootid = Some(id),
                _ => return Err("`rebootid` line not right after its domain's line".into()),
            }
        }
        "duplicate" => {
            words(4)?;
            f.duplicates
                .push((w[1].to_string(), text(w[2], "key")?, text(w[3], "nodes")?));
        }
        "idle" => {
            words(6)?;
            f.idle.push(IdleWarning {
                node: node(w[1])?,
                uuid: uuid(w[2])?,
                tx_pkts: num(w[3], "packet count")?,
                wr_reqs: num(w[4], "write count")?,
                name: text(w[5], "name")?,
            });
        }
        "host" => {
            words(5)?;
            f.hosts.push((
                node(w[1])?,
                HostSeen {
                    host: uuid(w[2])?,
                    last_ms: num(w[3], "time")?,
                    peer: text(w[4], "address")?,
                },
            ));
        }
        "clash" => {
            words(4)?;
            f.clashes
                .push((node(w[1])?, text(w[2], "hosts")?, text(w[3], "addresses")?));
        }
        "seen" => {
            words(5)?;
            f.seen.push(SeenInstance {
                node: node(w[1])?,
                instance: u64::from_str_radix(w[2], 16)
                    .ok()
                    .filter(|_| w[2].len() == 16)
                    .ok_or("instance is not 16 hex digits")?,
                seq: num(w[3], "sequence number")?,
                ts_ms: num(w[4], "time")?,
            });
        }
        "clock" => {
            // Not restored: a restarted master measures the clocks afresh.
            let (who, rest) = match w.get(1) {
                Some(&"master") if w.len() == 4 => (Who::Master, &w[2..]),
                Some(&"node") if w.len() == 5 => (Who::Node(node(w[2])?), &w[3..]),
                _ => return Err("`clock` line is neither `clock master OFFSET SINCE` nor `clock node NODE OFFSET SINCE`".into()),
            };
            let offset = match rest[0].strip_prefix('-') {
                Some(n) => -(num(n, "offset")? as i64),
                None => num(rest[0], "offset")? as i64,
            };
            f.clocks.push((who, offset, num(rest[1], "time")?));
        }
        "pending" => {
            let rest = line
                .strip_prefix("pending ")
                .ok_or("`pending` line without an update")?;
            f.pending
                .push(Update::from_panel_line(rest).map_err(|e| format!("pending update: {e}"))?);
        }
        "aside" => {
            let mut parts = line.splitn(4, ' ');
            let (_, tries, why, rest) = (parts.next(), parts.next(), parts.next(), parts.next());
            let (Some(tries), Some(why), Some(rest)) = (tries, why, rest) else {
                return Err("`aside` line without tries, reason and update".into());
            };
            let tries = num(tries, "refusal count")?;
            f.aside.push(Refused {
                update: Update::from_panel_line(rest)
                    .map_err(|e| format!("update set aside: {e}"))?,
                tries: u32::try_from(tries).unwrap_or(u32::MAX),
                why: text(why, "reason")?,
            });
        }
        "end" => {
            words(1)?;
            f.complete = true;
        }
        _ => return Err(Unknown),
    }
    Ok(())
}
