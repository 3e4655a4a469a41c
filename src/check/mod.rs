//! check_vmwatch: the monitoring plugin (Nagios, Opsview, Icinga), and the
//! summary that `vmwatch-master --status` and `vmwatch-node --status` print.
//!
//! Both read the same facts ([`facts`]) and judge them with the same
//! thresholds, so a person at the console and the monitoring system see the
//! same verdict. The plugin follows the Monitoring Plugins development
//! guidelines: one status line `VMWATCH MASTER WARNING - ... | perfdata`,
//! exit 0/1/2/3, `-w`/`-c` ranges, `-t`, `-v`, `-h`, `-V`; every usage error
//! is UNKNOWN. Options and defaults: check_vmwatch(8).
//!
//! Why one file: the plugin's command line, thresholds and the one status
//! line it prints are one contract with Nagios; reading the facts is in
//! facts.rs, the range syntax in range.rs, and which daemons there are in
//! src/role.rs.

pub mod facts;
pub mod range;

use std::fmt::Write as _;
use std::sync::mpsc;
use std::time::Duration;

use crate::role::Role;
use facts::{Facts, Level};
use getopts::Options;
use range::Range;

/// The metric a bare `-w RANGE` / `-c RANGE` applies to.
fn primary(mode: Role) -> &'static str {
    match mode {
        Role::Master => "nodes_down",
        Role::Node => "send_age",
    }
}

/// A metric's name and default (warning, critical) ranges.
type Defaults = (&'static str, Option<&'static str>, Option<&'static str>);

/// Default ranges per metric of each daemon; documented in check_vmwatch(8).
/// `None`: no threshold unless one is given.
fn defaults(mode: Role) -> &'static [Defaults] {
    match mode {
        Role::Master => &[
            ("state_age", Some("60"), Some("300")),
            ("nodes_down", None, Some("0")),
            ("duplicates", None, Some("0")),
            ("idle", Some("0"), None),
            ("pending", Some("100"), Some("1000")),
            ("pending_age", Some("300"), Some("1800")),
            ("refused", Some("0"), None),
            ("rejected_rate", Some("10"), Some("100")),
            ("nodes", None, None),
            ("domains", None, None),
        ],
        Role::Node => &[
            ("status_age", Some("60"), Some("300")),
            ("send_age", Some("120"), Some("300")),
            ("queue", Some("1000"), Some("3000")),
            ("domains", None, None),
        ],
    }
}

/// What to check and against which thresholds.
#[derive(Debug, Clone)]
pub struct Check {
    pub mode: Role,
    pub file: String,
    pub pidfile: String,
    /// (metric, warning, critical), one entry per metric of the mode.
    pub thresholds: Vec<(&'static str, Option<Range>, Option<Range>)>,
    pub verbose: u8,
    /// Where the previous rejection count is kept (master mode).
    pub memory_dir: Option<String>,
}

impl Check {
    /// Default file, pidfile and thresholds for `mode`.
    pub fn new(mode: Role) -> Check {
        Check {
            mode,
            file: mode.status_file().to_string(),
            pidfile: mode.pidfile(),
            thresholds: defaults(mode)
                .iter()
                .map(|(n, w, c)| {
                    let r = |t: &Option<&str>| t.map(|t| Range::parse(t).expect("default range"));
                    (*n, r(w), r(c))
                })
                .collect(),
            verbose: 0,
            memory_dir: None,
        }
    }

    /// Applies `-w`/`-c` arguments: `[METRIC=]RANGE`, comma-separated.
    fn set(&mut self, arg: &str, critical: bool) -> Result<(), String> {
        for item in arg.split(',').filter(|s| !s.is_empty()) {
            let (name, text) = match item.split_once('=') {
                Some((n, t)) => (n, t),
                None => (primary(self.mode), item),
            };
            let names: Vec<&str> = self.thresholds.iter().map(|t| t.0).collect();
            let Some(slot) = self.thresholds.iter_mut().find(|t| t.0 == name) else {
                return Err(format!(
                    "no metric `{name}` in {} mode (metrics: {})",
                    self.mode.program(),
                    names.join(", ")
                ));
            };
            let range = Range::parse(text)?;
            if critical {
                slot.2 = Some(range);
            } else {
                slot.1 = Some(range);
            }
        }
        Ok(())
    }

    /// Reads the facts now: daemon process, then its file.
    pub fn gather(&self, now_ms: u64) -> Facts {
        let program = self.mode.program();
        let mut running = facts::daemon_running(program, &self.pidfile);
        let mut f = Facts::default();
        let text = facts::read_file(&self.file, program, &mut f);
        if let Some(text) = text {
            let mut got = match self.mode {
                Role::Master => {
                    let mem = self.memory_path();
                    let prev = mem.as_deref().and_then(read_memory);
                    let (got, now) = facts::master_facts(&text, &self.file, now_ms, prev);
                    if let (Some(path), Some(now)) = (mem, now) {
                        write_memory(&path, now, prev);
                    }
                    got
                }
                Role::Node => facts::node_facts(&text, &self.file, now_ms),
            };
            got.problems.append(&mut f.problems);
            f = got;
        }
        if let Err(why) = running.as_mut() {
            f.problems.insert(0, (Level::Critical, std::mem::take(why)));
        }
        f
    }

    fn memory_path(&self) -> Option<String> {
        let dir = self.memory_dir.as_ref()?;
        // FNV-1a of the state file's path: one memory per checked master.
        let mut h: u64 = 0xcbf29ce484222325;
        for b in self.file.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
        }
        // SAFETY: getuid has no preconditions and cannot fail.
        let uid = unsafe { libc::getuid() };
        Some(format!("{dir}/check_vmwatch.{uid}.{h:016x}"))
    }

    /// Judges the facts: the worst level, and the status line with perfdata.
    pub fn judge(&self, f: &Facts) -> (Level, String) {
        let mut level = Level::Ok;
        let mut reasons: Vec<String> = Vec::new();
        for (l, text) in &f.problems {
            level = level.max(*l);
            reasons.push(text.clone());
        }
        let mut perf = Vec::new();
        for m in &f.metrics {
            let (w, c) = self
                .thresholds
                .iter()
                .find(|t| t.0 == m.name)
                .map(|t| (t.1.as_ref(), t.2.as_ref()))
                .unwrap_or((None, None));
            let show = |r: Option<&Range>| r.map(|r| r.to_string()).unwrap_or_default();
            if let Some(c) = c.filter(|c| c.alerts(m.value)) {
                level = level.max(Level::Critical);
                reasons.push(format!("{} {}{} (critical {c})", m.name, m.value, m.uom));
            } else if let Some(w) = w.filter(|w| w.alerts(m.value)) {
                level = level.max(Level::Warning);
                reasons.push(format!("{} {}{} (warning {w})", m.name, m.value, m.uom));
            }
            perf.push(format!(
                "{}={}{};{};{};0;{}",
                m.name,
                m.value,
                m.uom,
                show(w),
                show(c),
                m.max.map(|v| v.to_string()).unwrap_or_default()
            ));
        }
        let prefix = match self.mode {
            Role::Master => "VMWATCH MASTER",
            Role::Node => "VMWATCH NODE",
        };
        // Nagios turns `;` in plugin output into `:`: separate with commas.
        let mut text = reasons;
        text.extend(f.summary.iter().cloned());
        let mut line = format!("{prefix} {} - {}", level.word(), text.join(", "));
        if !perf.is_empty() {
            let _ = write!(line, " | {}", perf.join(" "));
        }
        (level, line)
    }
}

fn read_memory(path: &str) -> Option<(u64, u64, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: Vec<u64> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match v.as_slice() {
        [s, w, r] => Some((*s, *w, *r)),
        _ => None,
    }
}

/// Keeps the reading for the next run, unless the previous reading is
/// younger than a minute: the rate is then taken over at least a minute
/// even when checks come faster (forced rechecks).
fn write_memory(path: &str, now: (u64, u64, u64), prev: Option<(u64, u64, u64)>) {
    if let Some((s, w, _)) = prev {
        if s == now.0 && now.1 >= w && now.1 - w < 60_000 {
            return;
        }
    }
    let text = format!("{} {} {}\n", now.0, now.1, now.2);
    // A memory that cannot be written only makes the rate an average since
    // the master started; not worth failing the check for.
    let _ = crate::atomic_file::write_atomic(std::path::Path::new(path), &text);
}

/// `--status` of either daemon: the plugin's verdict with the default
/// thresholds, then every detail, for a person.
pub fn status_summary(mode: Role, file: &str, pidfile: &str, now_ms: u64) -> (Level, String) {
    let mut check = Check::new(mode);
    check.file = file.to_string();
    check.pidfile = pidfile.to_string();
    let f = check.gather(now_ms);
    let (level, line) = check.judge(&f);
    let mut out = String::new();
    let program = mode.program();
    match facts::daemon_running(program, pidfile) {
        Ok(pid) => {
            let _ = writeln!(out, "{program} is running (pid {pid}, pidfile {pidfile})");
        }
        Err(why) => {
            let _ = writeln!(out, "{why}");
        }
    }
    let verdict = line.split(" | ").next().unwrap_or(&line);
    let _ = writeln!(out, "check: {verdict}");
    for d in &f.details {
        let _ = writeln!(out, "  {d}");
    }
    let _ = writeln!(out, "facts (thresholds: check_vmwatch(8)):");
    for m in &f.metrics {
        let _ = writeln!(out, "  {:<14} {}{}", m.name, m.value, m.uom);
    }
    (level, out)
}

/// Usage text for `-h`.
fn help(opts: &Options) -> String {
    let brief =
        "Usage: check_vmwatch -M master|node [-f FILE] [-p PIDFILE] [-w [METRIC=]RANGE]... \
                 [-c [METRIC=]RANGE]... [-t SECONDS] [-v]";
    format!(
        "check_vmwatch {} - checks vmwatch-master or vmwatch-node for Nagios-compatible monitoring.\n\n{}\n\
         Metrics and default thresholds (warning/critical):\n  \
         master: state_age 60/300 s, nodes_down -/0, duplicates -/0, idle 0/-, pending 100/1000,\n          \
         pending_age 300/1800 s, refused 0/-, rejected_rate 10/100 per minute, nodes, domains\n  \
         node:   status_age 60/300 s, send_age 120/300 s, queue 1000/3000, domains\n\
         A RANGE without METRIC= applies to nodes_down (master) or send_age (node).\n\
         Ranges: N (alert outside 0..N), N: (below N), ~:N (above N), N:M (outside), @N:M (inside).\n\n\
         Exit status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (also for usage errors and timeouts).\n\
         See check_vmwatch(8).\n",
        env!("CARGO_PKG_VERSION"),
        opts.usage(brief)
    )
}

/// Runs the plugin: returns the exit status and what to print.
pub fn plugin(argv: &[String], now_ms: impl FnOnce() -> u64 + Send + 'static) -> (u8, String) {
    let unknown = |msg: String| (Level::Unknown as u8, format!("VMWATCH UNKNOWN - {msg}\n"));
    let mut opts = Options::new();
    opts.optopt("M", "mode", "which daemon to check", "master|node");
    opts.optopt(
        "f",
        "file",
        "the master's state file or the node's status file (default: the daemon's default)",
        "PATH",
    );
    opts.optopt(
        "p",
        "pidfile",
        "the daemon's pidfile (default /var/run/vmwatch-MODE.pid)",
        "PATH",
    );
    opts.optmulti("w", "warning", "warning threshold", "[METRIC=]RANGE");
    opts.optmulti("c", "critical", "critical threshold", "[METRIC=]RANGE");
    opts.optopt(
        "t",
        "timeout",
        "give up after SECONDS (default 10)",
        "SECONDS",
    );
    opts.optopt(
        "m",
        "memory-dir",
        "where to keep the last rejection count for rejected_rate \
         (default $NAGIOS_PLUGIN_STATE_DIRECTORY, else /var/tmp)",
        "DIR",
    );
    opts.optflagmulti(
        "v",
        "verbose",
        "add detail lines: nodes down, duplicates, idle VMs",
    );
    opts.optflag("V", "version", "print the version and exit");
    opts.optflag("h", "help", "print this help and exit");
    let m = match opts.parse(argv) {
        Ok(m) => m,
        Err(e) => return unknown(format!("{e} (see check_vmwatch -h)")),
    };
    if m.opt_present("h") {
        return (Level::Ok as u8, help(&opts));
    }
    if m.opt_present("V") {
        return (
            Level::Ok as u8,
            format!("check_vmwatch {}\n", env!("CARGO_PKG_VERSION")),
        );
    }
    if let Some(extra) = m.free.first() {
        return unknown(format!(
            "unexpected argument `{extra}` (see check_vmwatch -h)"
        ));
    }
    let mode = match m.opt_str("M").as_deref() {
        Some("master") => Role::Master,
        Some("node") => Role::Node,
        Some(other) => return unknown(format!("-M must be master or node, not `{other}`")),
        None => return unknown("say which daemon to check: -M master or -M node".into()),
    };
    let mut check = Check::new(mode);
    if let Some(f) = m.opt_str("f") {
        check.file = f;
    }
    if let Some(p) = m.opt_str("p") {
        check.pidfile = p;
    }
    for (flag, critical) in [("w", false), ("c", true)] {
        for arg in m.opt_strs(flag) {
            if let Err(e) = check.set(&arg, critical) {
                return unknown(format!("-{flag} {arg}: {e}"));
            }
        }
    }
    let timeout = match m.opt_str("t").map(|t| t.parse::<u64>()) {
        None => 10,
        Some(Ok(t)) if (1..=3600).contains(&t) => t,
        Some(_) => return unknown("-t must be a whole number of seconds from 1 to 3600".into()),
    };
    check.memory_dir = m
        .opt_str("m")
        .or_else(|| std::env::var("NAGIOS_PLUGIN_STATE_DIRECTORY").ok())
        .or_else(|| Some("/var/tmp".to_string()));
    check.verbose = m.opt_count("v").min(3) as u8;

    // Files on a hung NFS mount or a stuck /proc read must not hang the
    // monitoring system: the work runs in a thread we stop waiting for.
    let (tx, rx) = mpsc::channel();
    let worker = check.clone();
    std::thread::spawn(move || {
        let f = worker.gather(now_ms());
        let (level, mut line) = worker.judge(&f);
        line.push('\n');
        if worker.verbose > 0 {
            for d in &f.details {
                line.push_str(d);
                line.push('\n');
            }
        }
        let _ = tx.send((level as u8, line));
    });
    match rx.recv_timeout(Duration::from_secs(timeout)) {
        Ok(done) => done,
        Err(_) => unknown(format!(
            "no answer within {timeout} s reading {} and {} (raise -t, or check the file system)",
            check.file, check.pidfile
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> (u8, String) {
        let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        plugin(&argv, || 0)
    }

    #[test]
    fn usage_errors_are_unknown_and_say_what_to_do() {
        let (rc, out) = run(&[]);
        assert_eq!(
            (rc, out.as_str()),
            (
                3,
                "VMWATCH UNKNOWN - say which daemon to check: -M master or -M node\n"
            )
        );
        let (rc, out) = run(&["-M", "node", "-w", "nodes_down=1"]);
        assert_eq!(rc, 3);
        assert!(
            out.contains("no metric `nodes_down` in vmwatch-node mode (metrics: status_age"),
            "{out}"
        );
        let (rc, out) = run(&["-M", "master", "-c", "5:1"]);
        assert_eq!(rc, 3);
        assert!(out.contains("-c 5:1: bad range"), "{out}");
        assert_eq!(run(&["--bogus"]).0, 3);
        assert_eq!(run(&["-M", "master", "-t", "0"]).0, 3);
        let (rc, out) = run(&["-h"]);
        assert!(rc == 0 && out.contains("--warning") && out.contains("rejected_rate"));
        assert_eq!(
            run(&["-V"]),
            (0, format!("check_vmwatch {}\n", env!("CARGO_PKG_VERSION")))
        );
    }

    #[test]
    fn thresholds_set_the_level_and_appear_in_the_perfdata() {
        let mut c = Check::new(Role::Master);
        c.set("duplicates=5,idle=@1:3", false).unwrap();
        c.set("2", true).unwrap(); // bare: nodes_down
        let (f, _) = facts::master_facts(
            "version 1\nwritten 1000\nstarted 0\nnode a down 0 1\nnode b down 0 1\nidle a u 0 0 x\nend\n",
            "s",
            2000,
            None,
        );
        let (level, line) = c.judge(&f);
        assert_eq!(level, Level::Warning, "{line}");
        assert!(
            line.starts_with("VMWATCH MASTER WARNING - idle 1 (warning @1:3), 0 nodes up, 2 down"),
            "{line}"
        );
        assert!(
            line.contains(
                " | state_age=1s;60;300;0; nodes_down=2;;2;0;2 duplicates=0;5;0;0; idle=1;@1:3;;0;"
            ),
            "{line}"
        );
        c.set("nodes_down=1", true).unwrap();
        let (level, line) = c.judge(&f);
        assert_eq!(level, Level::Critical);
        assert!(line.contains("nodes_down 2 (critical 1)"), "{line}");
    }
}
