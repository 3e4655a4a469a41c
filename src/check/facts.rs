//! The facts check_vmwatch and `--status` report, read from what the daemons
//! leave on disk: the pidfile, `/proc`, the master's state file
//! (docs/state-file.md) and the node's status file (docs/node-status.md).
//!
//! Reading is tolerant, as both formats ask: unknown line types are skipped,
//! so a newer daemon that adds lines still checks fine; a file without its
//! `written` or `end` line is reported as damaged instead of being trusted.
//! Nothing here needs root: the files are mode 0644 and `/proc/PID/cmdline`
//! is world-readable, so the check works as the nagios user.

use crate::kvline::unescape;

/// How bad a finding is, in plugin terms (the numbers are the exit codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok = 0,
    Warning = 1,
    Critical = 2,
    Unknown = 3,
}

impl Level {
    pub fn word(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warning => "WARNING",
            Level::Critical => "CRITICAL",
            Level::Unknown => "UNKNOWN",
        }
    }
}

/// A number the check can put thresholds on and reports as perfdata.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub value: f64,
    /// Perfdata unit: `s` or empty (a count).
    pub uom: &'static str,
    pub max: Option<f64>,
}

/// Everything read about one daemon.
#[derive(Debug, Default)]
pub struct Facts {
    /// Findings that set a state by themselves (daemon not running, file
    /// damaged, libvirt lost), with their level.
    pub problems: Vec<(Level, String)>,
    pub metrics: Vec<Metric>,
    /// A short summary for the status line.
    pub summary: Vec<String>,
    /// Longer lines for `-v` and `--status`: which nodes, which VMs.
    pub details: Vec<String>,
}

impl Facts {
    fn metric(&mut self, name: &'static str, value: f64, uom: &'static str, max: Option<f64>) {
        self.metrics.push(Metric {
            name,
            value,
            uom,
            max,
        });
    }

    /// The value of metric `name`, if it was read.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.value)
    }
}

/// A `clock` line's signed offset in ms, as a person would say it.
fn clock_offset(word: &str) -> String {
    let ms = match word.strip_prefix('-') {
        Some(n) => n.parse::<i64>().map(|v| -v),
        None => word.parse::<i64>(),
    };
    ms.map_or_else(
        |_| format!("off by `{}`", dec(word)),
        crate::clock::offset_text,
    )
}

fn dec(s: &str) -> String {
    unescape(s).unwrap_or_else(|_| s.to_string())
}

fn secs(ms: u64, now_ms: u64) -> f64 {
    (now_ms.saturating_sub(ms) / 1000) as f64
}

/// Whether the daemon `program` runs under the pid in `pidfile`: `Ok(pid)`,
/// or why not, in words that say what to look at.
pub fn daemon_running(program: &str, pidfile: &str) -> Result<u32, String> {
    let text = match std::fs::read_to_string(pidfile) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "{program} is not running (no pidfile {pidfile}, start it with `service {program} start`)"
            ))
        }
        Err(e) => {
            return Err(format!(
                "cannot read pidfile {pidfile}: {e} (give this user read access, see check_vmwatch(8))"
            ))
        }
    };
    let pid: u32 = text.trim().parse().map_err(|_| {
        format!(
            "pidfile {pidfile} holds `{}`, not a process id",
            text.trim()
        )
    })?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).map_err(|_| {
        format!("{program} is not running (pidfile {pidfile} names pid {pid}, which is gone)")
    })?;
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or(&[]);
    let argv0 = String::from_utf8_lossy(argv0);
    let base = argv0.rsplit('/').next().unwrap_or("");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if base == program || comm.trim() == program {
        Ok(pid)
    } else {
        Err(format!(
            "{program} is not running (pidfile {pidfile} names pid {pid}, which is `{argv0}`)"
        ))
    }
}

/// Reads a daemon's file; a failure becomes a CRITICAL problem naming the
/// file and the likely fix.
pub fn read_file(path: &str, writer: &str, facts: &mut Facts) -> Option<String> {
    match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            facts.problems.push((
                Level::Unknown,
                format!(
                    "cannot read {path}: permission denied (this user needs read access to it and search access to its directories, see check_vmwatch(8))"
                ),
            ));
            None
        }
        Err(e) => {
            facts.problems.push((
                Level::Critical,
                format!("cannot read {path}: {e} (is {writer} running? it writes this file)"),
            ));
            None
        }
    }
}

/// The lines of a daemon's file, each as its space-separated words.
fn word_lines(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines().map(|line| line.split(' ').collect())
}

/// The common head of both files: version, written, end, damaged markers.
fn check_frame(text: &str, path: &str, facts: &mut Facts) -> Option<u64> {
    let mut version = None;
    let mut written = None;
    let mut end = false;
    for w in word_lines(text) {
        match w.as_slice() {
            ["version", v] => version = v.parse::<u32>().ok(),
            ["written", t] => written = t.parse::<u64>().ok(),
            ["end"] => end = true,
            ["damaged", why @ ..] => facts.problems.push((
                Level::Critical,
                format!("{path} is marked damaged: {}", dec(&why.join(" "))),
            )),
            _ => {}
        }
    }
    match version {
        Some(1) => {}
        Some(v) => {
            facts.problems.push((
                Level::Unknown,
                format!("{path} has format version {v}, this check_vmwatch reads version 1 (upgrade it)"),
            ));
            return None;
        }
        None => {}
    }
    match (written, end) {
        (Some(w), true) => Some(w),
        _ => {
            facts.problems.push((
                Level::Critical,
                format!(
                    "{path} is damaged (no {} line): not written by a running daemon, or the disk is full",
                    if written.is_none() { "`written`" } else { "`end`" }
                ),
            ));
            None
        }
    }
}

/// The master's facts from its state file text. `prev` is the plugin's
/// previous reading of the rejection counter, `(started, written, rejected)`,
/// for a per-minute rate over the last interval; without it the rate is the
/// average since the master started.
pub fn master_facts(
    text: &str,
    path: &str,
    now_ms: u64,
    prev: Option<(u64, u64, u64)>,
) -> (Facts, Option<(u64, u64, u64)>) {
    let mut f = Facts::default();
    let Some(written) = check_frame(text, path, &mut f) else {
        return (f, None);
    };
    let (mut started, mut rejected, mut domains) = (0u64, 0u64, 0u64);
    let (mut up, mut down, mut dups, mut idle, mut pending) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut refused = 0u64;
    let mut oldest_pending: Option<u64> = None;
    let mut listen = String::new();
    for w in word_lines(text) {
        match w.as_slice() {
            ["started", t] => started = t.parse().unwrap_or(0),
            ["listen", l] => listen = dec(l),
            ["counter", k, v] if k.starts_with("rejected.") => {
                rejected += v.parse::<u64>().unwrap_or(0)
            }
            ["node", n, state, seen, count] => {
                domains += count.parse::<u64>().unwrap_or(0);
                if *state == "up" {
                    up += 1;
                } else {
                    down += 1;
                    f.details.push(format!(
                        "node {} is down: last message {} s ago",
                        dec(n),
                        secs(seen.parse().unwrap_or(0), now_ms)
                    ));
                }
            }
            ["duplicate", by, key, nodes] => {
                dups += 1;
                f.details.push(format!(
                    "duplicate: same {by} {} on nodes {}",
                    dec(key),
                    dec(nodes)
                ));
            }
            ["clash", node, hosts, peers] => {
                f.problems.push((
                    Level::Critical,
                    format!(
                        "node id {} is used by two hosts at once: libvirt hosts {} (from {}); give each node its own node_id",
                        dec(node),
                        dec(hosts),
                        dec(peers)
                    ),
                ));
            }
            ["idle", node, uuid, tx, wr, name] => {
                idle += 1;
                f.details.push(format!(
                    "idle: {} ({uuid}) on node {}: {tx} packets sent, {wr} disk writes",
                    dec(name),
                    dec(node)
                ));
            }
            ["aside", tries, why, rest @ ..] => {
                refused += 1;
                f.details.push(format!(
                    "refused by the panel {tries} times, set aside: {} (the panel said: {})",
                    rest.join(" "),
                    crate::logging::escape_control(&dec(why))
                ));
            }
            // docs/state-file.md: a clock found off, CRITICAL by itself.
            ["clock", "master", off, _since] => f.problems.push((
                Level::Critical,
                format!(
                    "the master's clock is {}: check NTP on the master",
                    clock_offset(off)
                ),
            )),
            ["clock", "node", n, off, _since] => f.problems.push((
                Level::Critical,
                format!(
                    "node {}'s clock is {}: check NTP on that node",
                    dec(n),
                    clock_offset(off)
                ),
            )),
            ["pending", rest @ ..] => {
                pending += 1;
                let t = rest.iter().find_map(|kv| {
                    kv.strip_prefix("since=")
                        .or_else(|| kv.strip_prefix("time="))
                        .and_then(|v| v.parse::<u64>().ok())
                });
                if let Some(t) = t {
                    oldest_pending = Some(oldest_pending.map_or(t, |o| o.min(t)));
                }
            }
            _ => {}
        }
    }
    let per_minute = match prev {
        Some((s, w, r)) if s == started && w < written && r <= rejected => {
            (rejected - r) as f64 * 60_000.0 / (written - w) as f64
        }
        _ if written > started => rejected as f64 * 60_000.0 / (written - started) as f64,
        _ => 0.0,
    };
    let nodes = up + down;
    f.metric("state_age", secs(written, now_ms), "s", None);
    f.metric("nodes_down", down as f64, "", Some(nodes as f64));
    f.metric("duplicates", dups as f64, "", None);
    f.metric("idle", idle as f64, "", None);
    f.metric("pending", pending as f64, "", None);
    f.metric("refused", refused as f64, "", None);
    f.metric(
        "pending_age",
        oldest_pending.map_or(0.0, |t| secs(t, now_ms)),
        "s",
        None,
    );
    f.metric(
        "rejected_rate",
        (per_minute * 100.0).round() / 100.0,
        "",
        None,
    );
    f.metric("nodes", nodes as f64, "", None);
    f.metric("domains", domains as f64, "", None);
    f.summary.push(format!(
        "{up} nodes up, {down} down, {domains} domains, {dups} duplicates, {idle} idle, {pending} panel updates waiting"
    ));
    if refused > 0 {
        f.summary
            .push(format!("{refused} refused by the panel and set aside"));
    }
    f.details.insert(
        0,
        format!(
            "master on {listen}: state written {} s ago, running for {} s, {rejected} messages rejected since start",
            secs(written, now_ms),
            secs(started, now_ms)
        ),
    );
    (f, Some((started, written, rejected)))
}

/// The node's facts from its status file text.
pub fn node_facts(text: &str, path: &str, now_ms: u64) -> Facts {
    let mut f = Facts::default();
    let Some(written) = check_frame(text, path, &mut f) else {
        return f;
    };
    let (mut started, mut queue, mut last_send, mut domains) = (0u64, 0u64, 0u64, 0u64);
    let (mut node_id, mut connect, mut uri) = (String::new(), String::new(), String::new());
    let mut libvirt = None;
    let mut master = None;
    let mut stopped = None;
    for w in word_lines(text) {
        match w.as_slice() {
            ["started", t] => started = t.parse().unwrap_or(0),
            ["node_id", v] => node_id = dec(v),
            ["connect", v] => connect = dec(v),
            ["uri", v] => uri = dec(v),
            ["libvirt", s, since] => libvirt = Some((*s == "up", since.parse().unwrap_or(0))),
            ["master", s, since] => master = Some((*s == "up", since.parse().unwrap_or(0))),
            ["queue", n] => queue = n.parse().unwrap_or(0),
            ["last_send", t] => last_send = t.parse().unwrap_or(0),
            ["domains", n] => domains = n.parse().unwrap_or(0),
            ["stopped", t, why] => stopped = Some((t.parse().unwrap_or(0), dec(why))),
            // docs/node-status.md: the node's own wall clock stepped.
            ["clock", step, _since] => f.problems.push((
                Level::Critical,
                format!(
                    "this node's clock stepped: it is now {} what it was (check NTP on this node)",
                    clock_offset(step)
                ),
            )),
            _ => {}
        }
    }
    if let Some((t, why)) = &stopped {
        f.details
            .push(format!("node stopped {} s ago: {why}", secs(*t, now_ms)));
    } else {
        // The node's two connections: the status file's line, whom it
        // connects to, and where.
        let links = [
            ("libvirt", libvirt, "libvirt", &uri),
            ("master", master, "the master", &connect),
        ];
        for (line, link, peer, at) in links {
            match link {
                Some((true, _)) => {}
                Some((false, since)) => {
                    let s = secs(since, now_ms);
                    let why = format!("not connected to {peer} at {at} for {s} s");
                    f.problems.push((Level::Critical, why));
                }
                None => f
                    .problems
                    .push((Level::Unknown, format!("{path} has no {line} line"))),
            }
        }
    }
    // Never sent yet: count from the start, so a node that never gets a
    // message out still ages.
    let send_age = secs(if last_send > 0 { last_send } else { started }, now_ms);
    f.metric("status_age", secs(written, now_ms), "s", None);
    f.metric("send_age", send_age, "s", None);
    f.metric("queue", queue as f64, "", None);
    f.metric("domains", domains as f64, "", None);
    f.summary.push(format!(
        "node {node_id}: libvirt {}, master {}, {domains} domains, queue {queue}, last send {send_age} s ago",
        if libvirt.is_some_and(|l| l.0) { "connected" } else { "not connected" },
        if master.is_some_and(|m| m.0) { "connected" } else { "not connected" },
    ));
    f.details.insert(
        0,
        format!(
            "node {node_id} watching {uri}, sending to {connect}: status written {} s ago, running for {} s",
            secs(written, now_ms),
            secs(started, now_ms)
        ),
    );
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATE: &str = "# c\nversion 1\nwritten 100000\nstarted 40000\nlisten tcp://x\n\
        counter accepted 9\ncounter rejected.bad_mac 3\ncounter rejected.stale 1\n\
        node 1 up 99000 2\nnode web%20x down 10000 1\n\
        duplicate uuid u-1 1,2\nidle 1 u-2 0 0 vm%202\n\
        pending vmwatch.domain node=1 uuid=u since=70000\npending vmwatch.reboot node=1 time=80000\n\
        future line of a newer master\nend\n";

    #[test]
    fn a_node_id_two_hosts_send_under_is_critical() {
        let text = STATE.replace(
            "end\n",
            "clash web%20x 00000000-0000-0000-0000-00000000000a,00000000-0000-0000-0000-00000000000b tcp://10.0.0.1:1,tcp://10.0.0.2:2\nend\n",
        );
        let (f, _) = master_facts(&text, "s", 130_000, None);
        assert_eq!(f.problems.len(), 1, "{:?}", f.problems);
        let (level, what) = &f.problems[0];
        assert_eq!(*level, Level::Critical);
        for word in [
            "node id web x",
            "00000000-0000-0000-0000-00000000000a",
            "00000000-0000-0000-0000-00000000000b",
            "tcp://10.0.0.2:2",
        ] {
            assert!(what.contains(word), "{what}");
        }
        let (clean, _) = master_facts(STATE, "s", 130_000, None);
        assert!(clean.problems.is_empty());
    }

    #[test]
    fn a_clock_found_off_is_critical_and_named() {
        let text = STATE.replace(
            "end\n",
            "clock master -7200000 99000\nclock node web%20x 3600000 99500\nend\n",
        );
        let (f, _) = master_facts(&text, "s", 130_000, None);
        let all: Vec<String> = f
            .problems
            .iter()
            .map(|p| format!("{:?} {}", p.0, p.1))
            .collect();
        assert_eq!(
            all,
            vec![
                "Critical the master's clock is 2 h 0 min behind: check NTP on the master",
                "Critical node web x's clock is 1 h 0 min ahead: check NTP on that node",
            ]
        );
    }

    #[test]
    fn master_facts_from_a_state_file() {
        let (f, mem) = master_facts(STATE, "s", 130_000, None);
        assert!(f.problems.is_empty(), "{:?}", f.problems);
        assert_eq!(f.value("state_age"), Some(30.0));
        assert_eq!(f.value("nodes_down"), Some(1.0));
        assert_eq!(f.value("duplicates"), Some(1.0));
        assert_eq!(f.value("idle"), Some(1.0));
        assert_eq!(f.value("pending"), Some(2.0));
        assert_eq!(f.value("pending_age"), Some(60.0));
        assert_eq!(f.value("domains"), Some(3.0));
        // 4 rejected in the 60 s since start.
        assert_eq!(f.value("rejected_rate"), Some(4.0));
        assert_eq!(mem, Some((40_000, 100_000, 4)));
        assert!(f
            .details
            .iter()
            .any(|d| d == "node web x is down: last message 120 s ago"));
        assert!(f.details.iter().any(|d| d.contains("idle: vm 2 (u-2)")));
        // The next run rates over the interval since the previous reading.
        let later = STATE
            .replace("written 100000", "written 130000")
            .replace("bad_mac 3", "bad_mac 13");
        let (f, _) = master_facts(&later, "s", 130_000, mem);
        assert_eq!(f.value("rejected_rate"), Some(20.0));
    }

    #[test]
    fn a_cut_short_or_foreign_file_is_a_problem_not_a_reading() {
        let (f, _) = master_facts("version 1\nwritten 5\nnode 1 up 5 0\n", "s", 9, None);
        assert_eq!(f.problems[0].0, Level::Critical);
        assert!(
            f.problems[0].1.contains("s is damaged (no `end` line)"),
            "{:?}",
            f.problems
        );
        assert!(f.metrics.is_empty());
        let (f, _) = master_facts("version 7\nwritten 5\nend\n", "s", 9, None);
        assert_eq!(f.problems[0].0, Level::Unknown);
        let (f, _) = master_facts(
            "version 1\nwritten 5\ndamaged bad%20disk\nend\n",
            "s",
            9,
            None,
        );
        assert_eq!(
            f.problems[0],
            (Level::Critical, "s is marked damaged: bad disk".into())
        );
    }

    #[test]
    fn node_facts_from_a_status_file() {
        let text = "version 1\nwritten 50000\nstarted 1000\nnode_id 3\nconnect tcp://m\nuri test:///default\n\
                    libvirt up 1000\nmaster down 20000\nqueue 12\nlast_send 0\ndomains 4\n\
                    future_line of a newer node\nend\n";
        // The line of a newer node's type is skipped (docs/node-status.md).
        let f = node_facts(text, "n", 60_000);
        assert_eq!(
            f.value("send_age"),
            Some(59.0),
            "never sent: age since start"
        );
        assert_eq!(f.value("queue"), Some(12.0));
        assert_eq!(f.value("domains"), Some(4.0));
        assert_eq!(f.value("status_age"), Some(10.0));
        assert_eq!(
            f.problems,
            vec![(
                Level::Critical,
                "not connected to the master at tcp://m for 40 s".into()
            )]
        );
    }

    #[test]
    fn this_process_runs_and_a_gone_pid_does_not() {
        let p = crate::testing::ScratchFile::new("facts", "pid");
        let me = std::env::current_exe().unwrap();
        let name = me.file_name().unwrap().to_str().unwrap().to_string();
        std::fs::write(&p, format!("{}\n", std::process::id())).unwrap();
        let ps = p.to_str().unwrap();
        assert_eq!(daemon_running(&name, ps), Ok(std::process::id()));
        let e = daemon_running("vmwatch-master", ps).unwrap_err();
        assert!(e.contains("which is `"), "{e}");
        std::fs::write(&p, "999999999\n").unwrap();
        assert!(daemon_running(&name, ps)
            .unwrap_err()
            .contains("which is gone"));
        std::fs::remove_file(&p).unwrap();
        assert!(daemon_running(&name, ps)
            .unwrap_err()
            .contains("no pidfile"));
    }
}
