//! Reboot ids: each reboot of a domain gets an id that names it for ever,
//! kept in `reboot_file` so that the node's next instance, after a stop, a
//! crash or a SIGKILL, goes on from where this one was (docs/protocol.md,
//! "Reboots").
//!
//! A reboot is an edge, not a state: a full list cannot show one happened,
//! so the node says, in every event and full-list record, the id of the
//! domain's last reboot; a master that has a lower one missed a reboot and
//! delivers it, and a panel that already has (node, uuid, id) drops a
//! repeat. The id of a new reboot is the previous id + 1, or the current
//! Unix time in seconds if that is higher (a domain's first reboot gets the
//! time): ids keep growing across a lost, damaged or (after a power loss)
//! older file, as long as the clock does not go back, and across a clock
//! that goes back, as long as the file is kept. Ids are never reset: a
//! domain undefined and defined again with the same UUID goes on counting.
//!
//! The file is rewritten (temporary file, rename) before the reboot's event
//! is queued, so a kill at any later moment loses nothing: the next
//! instance's first full list carries the id. It is not fsynced (a
//! reboot costs a small write, never a wait for the disk): a power loss may
//! bring back an older file, which the time part of the ids makes harmless
//! unless the same domain rebooted more than once a second just before.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::log_limited;
use crate::protocol::is_uuid;
use crate::ratelimit::RateLimit;

/// The file's format version.
const FORMAT: u32 = 1;
/// The file's first line.
const TITLE: &str =
    "# vmwatch-node reboot ids (format: docs/node-status.md, \"Reboot ids\"); do not edit";

/// The reboot ids of every domain that ever rebooted on this node.
pub struct RebootIds {
    path: String,
    ids: HashMap<String, u64>,
    limit: RateLimit,
}

/// What [`parse`] made of a file: the ids it could read, and `FILE:LINE:
/// what` for each line it could not.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    pub ids: HashMap<String, u64>,
    pub problems: Vec<String>,
}

/// Reads the text of a reboot file. Never fails: a bad line is named and
/// skipped; for a UUID listed twice the higher id wins.
pub fn parse(path: &str, text: &[u8]) -> Parsed {
    let mut p = Parsed::default();
    let Ok(text) = std::str::from_utf8(text) else {
        p.problems.push(format!("{path}:1: not UTF-8 text"));
        return p;
    };
    let mut versioned = false;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let w: Vec<&str> = line.split(' ').collect();
        let short: String = line.chars().take(60).collect();
        let short = crate::logging::escape_control(&short);
        match w.as_slice() {
            ["version", v] if *v == FORMAT.to_string() => versioned = true,
            ["version", v] => {
                p.problems.push(format!(
                    "{path}:{n}: format version `{}`, this node reads version {FORMAT}",
                    crate::logging::escape_control(v)
                ));
                return p;
            }
            [uuid, id] if is_uuid(uuid) => match id.parse::<u64>() {
                Ok(v) if crate::vocab::is_decimal(id) => {
                    let e = p.ids.entry(uuid.to_string()).or_insert(0);
                    *e = (*e).max(v);
                }
                _ => p
                    .problems
                    .push(format!("{path}:{n}: reboot id is not a number: `{short}`")),
            },
            _ => p.problems.push(format!(
                "{path}:{n}: not `UUID ID` (a domain's UUID and its last reboot id): `{short}`"
            )),
        }
    }
    if !versioned && !text.trim().is_empty() {
        p.problems
            .push(format!("{path}:1: no `version {FORMAT}` line"));
    }
    p
}

impl RebootIds {
    /// Loads `path`. A missing file is an empty one; a file that cannot be
    /// read or has bad lines is logged (`FILE:LINE: what`), set aside as
    /// `FILE.damaged-SECONDS` for a person, and what could be read is used;
    /// the next reboot writes a good file.
    pub fn load(path: &str) -> RebootIds {
        let ids = match std::fs::read(path) {
            Ok(bytes) => {
                let p = parse(path, &bytes);
                for what in p.problems.iter().take(20) {
                    log::warn!("{what}");
                }
                if !p.problems.is_empty() {
                    set_aside(path, "has unreadable lines");
                }
                log::info!("reboot ids of {} domains read from {path}", p.ids.len());
                p.ids
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log::info!("no reboot file at {path}: a new one is written at the first reboot");
                HashMap::new()
            }
            Err(e) => {
                log::error!("cannot read reboot file {path}: {e}; starting without reboot ids");
                if Path::new(path).exists() {
                    set_aside(path, "cannot be read");
                }
                HashMap::new()
            }
        };
        RebootIds {
            path: path.to_string(),
            ids,
            limit: RateLimit::new(1, Duration::from_secs(600)),
        }
    }

    /// The id of `uuid`'s last reboot on this node, 0 if none.
    pub fn last(&self, uuid: &str) -> u64 {
        self.ids.get(uuid).copied().unwrap_or(0)
    }

    /// Names a new reboot of `uuid` at `now_s` (Unix seconds) and writes the
    /// file before returning, so the id outlives this process; returns it.
    pub fn next(&mut self, uuid: &str, now_s: u64) -> u64 {
        let id = self.last(uuid).saturating_add(1).max(now_s);
        self.ids.insert(uuid.to_string(), id);
        if let Err(e) = self.write() {
            log_limited!(
                self.limit,
                log::Level::Error,
                "cannot write reboot file {}: {e} (check that its directory exists and is writable); a reboot seen now is lost if the node is killed before the master has it",
                self.path
            );
        }
        id
    }

    /// Rewrites the file: a temporary file in the same directory, then a
    /// rename; no fsync (see the module's doc).
    fn write(&self) -> std::io::Result<()> {
        let mut text = format!("{TITLE}\nversion {FORMAT}\n");
        let mut all: Vec<(&String, &u64)> = self.ids.iter().collect();
        all.sort();
        for (uuid, id) in all {
            text.push_str(&format!("{uuid} {id}\n"));
        }
        let path = Path::new(&self.path);
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
            f.write_all(text.as_bytes())?;
            std::fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

/// Moves a file that could not be used whole out of the way, for a person.
fn set_aside(path: &str, why: &str) {
    let to = format!("{path}.damaged-{}", crate::clock::now_ms() / 1000);
    match std::fs::rename(path, &to) {
        Ok(()) => log::warn!("reboot file {path} {why}; kept as {to} for inspection"),
        Err(e) => log::error!(
            "reboot file {path} {why}, and it cannot be moved to {to}: {e}; move it away by hand"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ScratchFile;

    const U1: &str = "4b3b2f6e-1c9a-4f8e-9d6a-2a7c1e5b9f00";
    const U2: &str = "7c1e5b9f-1c9a-4f8e-9d6a-2a7c4b3b2f6e";

    #[test]
    fn ids_grow_by_one_or_to_the_time_and_survive_a_new_instance() {
        let f = ScratchFile::new("reboots-grow", "ids");
        let path = f.to_str().unwrap();
        let mut r = RebootIds::load(path);
        assert_eq!(r.last(U1), 0);
        assert_eq!(r.next(U1, 1000), 1000, "a first reboot gets the time");
        assert_eq!(r.next(U1, 1000), 1001, "two in one second still differ");
        assert_eq!(r.next(U1, 900), 1002, "a clock gone back does not lower it");
        assert_eq!(r.next(U1, 5000), 5000);
        assert_eq!(r.next(U2, 7), 7);
        // The next instance (as after a SIGKILL: nothing else was written).
        let again = RebootIds::load(path);
        assert_eq!((again.last(U1), again.last(U2)), (5000, 7));
        assert_eq!(
            std::fs::read_dir(f.dir()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn a_damaged_file_is_named_set_aside_and_what_could_be_read_is_kept() {
        let f = ScratchFile::new("reboots-damaged", "ids");
        let path = f.to_str().unwrap();
        std::fs::write(
            path,
            format!("version 1\n{U1} 12\n{U2} twelve\nbogus\n{U1} 9\n"),
        )
        .unwrap();
        let p = parse("r", &std::fs::read(path).unwrap());
        assert_eq!(
            p.problems,
            vec![
                format!("r:3: reboot id is not a number: `{U2} twelve`"),
                "r:4: not `UUID ID` (a domain's UUID and its last reboot id): `bogus`".to_string(),
            ]
        );
        let mut r = RebootIds::load(path);
        assert_eq!(r.last(U1), 12, "the higher of two lines");
        assert_eq!(r.last(U2), 0);
        let names: Vec<String> = std::fs::read_dir(f.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().any(|n| n.contains(".damaged-")),
            "set aside: {names:?}"
        );
        assert_eq!(r.next(U1, 1), 13);
        assert_eq!(RebootIds::load(path).last(U1), 13, "a good file again");
    }

    #[test]
    fn any_bytes_are_survived() {
        for bytes in [
            &b"\xff\xfe"[..],
            b"version 2\nx 1\n",
            b"4b3b2f6e-1c9a-4f8e-9d6a-2a7c1e5b9f00 1\n",
            b"version 1\n4b3b2f6e-1c9a-4f8e-9d6a-2a7c1e5b9f00 +1\n",
            b"version 1\n4b3b2f6e-1c9a-4f8e-9d6a-2a7c1e5b9f00 99999999999999999999999\n",
        ] {
            let p = parse("r", bytes);
            assert!(!p.problems.is_empty(), "{bytes:?}");
        }
        assert!(
            parse("r", b"").problems.is_empty(),
            "an empty file is empty"
        );
    }

    #[test]
    fn an_unwritable_file_costs_the_file_not_the_id() {
        let mut r = RebootIds::load("/nonexistent-dir/vmwatch.reboots");
        assert_eq!(r.next(U1, 10), 10);
        assert_eq!(r.last(U1), 10);
    }
}
